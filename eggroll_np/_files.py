"""Files that a kill at any instant leaves whole: every file of a run directory and every checkpoint is either
replaced atomically (written to a temporary file beside it, flushed to disk, renamed over it, and the
directory flushed) or only appended to.

A temporary file is named `.NAME.<random>.tmp` and is created like any other file (mode 0666 less the
umask), so the file it becomes has the permissions of the rest of the run. A kill between creating it and
renaming it leaves it behind: the next successful write of NAME removes it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["fsync_directory", "is_temporary", "replace_atomically", "replace_text_atomically"]

_SUFFIX = ".tmp"


def _temporary_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(6)}{_SUFFIX}"


def is_temporary(path: Path) -> bool:
    """Whether `path` is named as a temporary file of `replace_atomically` (possibly left by a kill)."""
    return path.name.startswith(".") and path.name.endswith(_SUFFIX) and path.name.count(".") >= 3


def replace_atomically(path, write: Callable[[BinaryIO], None]) -> Path:
    """Make `path` hold what `write(file)` writes, or leave it as it was: a kill or an error at any instant
    leaves either the old file or the new one, never a part. Stale temporaries of `path` are removed after
    the new file is in place. Returns the path."""
    path = Path(path)
    temporary = path.with_name(_temporary_name(path.name))
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
    _remove_stale_temporaries(path)
    return path


def replace_text_atomically(path, text: str) -> Path:
    """`replace_atomically` with `text` encoded as UTF-8."""
    data = text.encode("utf-8")
    return replace_atomically(path, lambda file: file.write(data))


def _remove_stale_temporaries(path: Path) -> None:
    prefix = f".{path.name}."
    for stale in path.parent.glob(f"{prefix}*{_SUFFIX}"):
        if len(stale.name) == len(_temporary_name(path.name)):
            stale.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the platform allows it."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

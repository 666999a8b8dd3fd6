"""Checkpoints: an EggrollState in one `.npz` file, written atomically, read without pickle.

The file holds every array of the state (params and optimizer state) as a NumPy array, plus one member
`__checkpoint__.json` (UTF-8 JSON as a uint8 array): format version, package version, generation, the
structure of the optimizer state, the SHA-256 of every array, and the caller's metadata (strategy settings,
seed, run configuration). Reading uses `numpy.load(allow_pickle=False)`, rebuilds only the NamedTuple types
listed in `_STATE_TYPES`, and checks every hash, so a truncated, edited or pickle-carrying file raises a
`CheckpointError` that says what is wrong, and never runs code.

Writing goes to a temporary file in the same directory, is flushed to disk, and then renamed over the
target, so a crash mid-write leaves the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._array_api import to_numpy
from .optim import STATE_TYPES
from .strategy import EggrollState

__all__ = ["FORMAT", "CheckpointError", "load", "read_metadata", "save"]

FORMAT = "eggroll-np-checkpoint/1"
_META = "__checkpoint__.json"
_STATE_TYPES = {cls.__name__: cls for cls in (EggrollState, *STATE_TYPES)}


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back: missing, truncated, tampered with, or of another format."""


_SCALARS = (bool, int, float, str, type(None))


def _encode(tree, path: str, arrays: dict) -> Any:
    """JSON description of a state tree; arrays go to `arrays` as members "a0", "a1", ... referenced by name."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        name = type(tree).__name__
        if _STATE_TYPES.get(name) is not type(tree):
            raise TypeError(f"cannot checkpoint a {name} at {path}; known state types: {sorted(_STATE_TYPES)}")
        fields = {f: _encode(getattr(tree, f), f"{path}.{f}", arrays) for f in tree._fields}
        return {"namedtuple": name, "fields": fields}
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str):
                raise TypeError(f"cannot checkpoint a dict with key {key!r} at {path}; keys must be strings")
        return {"dict": {k: _encode(v, f"{path}[{k!r}]", arrays) for k, v in tree.items()}}
    if isinstance(tree, _SCALARS):
        return {"value": tree}
    host = np.ascontiguousarray(to_numpy(tree))
    if host.dtype.hasobject:
        raise TypeError(f"cannot checkpoint an object array at {path}")
    member = f"a{len(arrays)}"
    arrays[member] = host
    return {"array": member}


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()


def save(path, state: EggrollState, metadata: dict | None = None) -> Path:
    """Write `state` (and JSON-serializable `metadata`) to `path` atomically; returns the path written.

    The file is complete or absent: it is written beside the target and renamed over it."""
    if not isinstance(state, EggrollState):
        raise TypeError(f"save needs an EggrollState, got {type(state).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"checkpoint path {str(path)!r} must end in .npz")
    arrays: dict[str, np.ndarray] = {}
    tree = _encode(state, "state", arrays)
    header = {
        "format": FORMAT,
        "package_version": _package_version(),
        "generation": state.generation,
        "state": tree,
        "sha256": {name: _digest(a) for name, a in arrays.items()},
        "metadata": metadata or {},
    }
    try:
        encoded = json.dumps(header, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"checkpoint metadata must be plain JSON (no NaN, callables or arrays): {exc}") from None
    members = {**arrays, _META: np.frombuffer(encoded, dtype=np.uint8)}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **members)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _fsync_directory(directory: Path) -> None:
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


def _package_version() -> str:
    from . import __version__

    return __version__


def _read_member(archive, name: str, *, missing: str, unreadable: str):
    """archive[name], or a CheckpointError saying `missing` (no such member) or `unreadable` and why."""
    try:
        return archive[name]
    except KeyError:
        raise CheckpointError(missing) from None
    except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise CheckpointError(f"{unreadable} ({exc})") from None


def _open(path) -> tuple[dict, Any]:
    """The parsed header and the open NpzFile, or a CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {str(path)!r}")
    try:
        data = path.read_bytes()
        archive = np.load(io.BytesIO(data), allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint (truncated or not an .npz): {exc}") from None
    raw = _read_member(
        archive,
        _META,
        missing=f"{str(path)!r} has no {_META}; it was not written by eggroll_np.save",
        unreadable=f"{str(path)!r}: its metadata cannot be read",
    )
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{str(path)!r}: its metadata is not valid JSON ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise CheckpointError(f"{str(path)!r} has format {found!r}; this version reads {FORMAT!r}")
    return header, archive


def read_metadata(path) -> dict:
    """The header of a checkpoint: format, package_version, generation, metadata (without reading arrays)."""
    header, archive = _open(path)
    archive.close()
    return {k: header.get(k) for k in ("format", "package_version", "generation", "metadata")}


def _decode(tree, archive, hashes: dict, xp, device, path: str):
    if not isinstance(tree, dict) or len(tree) not in (1, 2):
        raise CheckpointError(f"malformed state description at {path}")
    if "namedtuple" in tree:
        cls = _STATE_TYPES.get(tree["namedtuple"])
        fields = tree.get("fields")
        if cls is None or not isinstance(fields, dict) or set(fields) != set(cls._fields):
            raise CheckpointError(f"unknown or malformed state type {tree['namedtuple']!r} at {path}")
        return cls(**{f: _decode(fields[f], archive, hashes, xp, device, f"{path}.{f}") for f in cls._fields})
    if "dict" in tree and isinstance(tree["dict"], dict):
        return {k: _decode(v, archive, hashes, xp, device, f"{path}[{k!r}]") for k, v in tree["dict"].items()}
    if "value" in tree:
        if not isinstance(tree["value"], _SCALARS):
            raise CheckpointError(f"malformed value at {path}: {tree['value']!r}")
        return tree["value"]
    if "array" in tree:
        name = tree["array"]
        array = _read_member(
            archive,
            name,
            missing=f"array {name!r} is missing from the checkpoint",
            unreadable=f"array {name!r} cannot be read",
        )
        if hashes.get(name) != _digest(np.ascontiguousarray(array)):
            raise CheckpointError(f"array {name!r} does not match its recorded SHA-256: the file was altered")
        if xp is None:
            return array
        return xp.asarray(array) if device is None else xp.asarray(array, device=device)
    raise CheckpointError(f"malformed state description at {path}")


def load(path, *, xp=None, device=None) -> EggrollState:
    """The EggrollState saved at `path`, its arrays as NumPy arrays, or as arrays of namespace `xp` (on
    `device` when given: pass an array-API namespace such as `array_api_compat.cupy` for that, since plain
    CuPy's asarray takes no device)."""
    header, archive = _open(path)
    hashes = header.get("sha256")
    if not isinstance(hashes, dict):
        raise CheckpointError(f"{str(path)!r}: its metadata lacks the array hashes")
    with archive:
        try:
            state = _decode(header.get("state"), archive, hashes, xp, device, "state")
        except RecursionError:
            raise CheckpointError(f"{str(path)!r}: its state description is nested too deeply") from None
    if not isinstance(state, EggrollState) or not isinstance(state.generation, int):
        raise CheckpointError(f"{str(path)!r} does not hold an EggrollState")
    return state

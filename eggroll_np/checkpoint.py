"""Checkpoints: an EggrollState in one `.npz` file, written atomically, read without pickle, and verified
whole before anything in it is used.

Format "eggroll-np-checkpoint/2" is a ZIP archive of uncompressed `.npy` members, as `numpy.savez` writes it:

- `a0.npy`, `a1.npy`, ...: every array of the state (params and optimizer state), little-endian, C order.
- `__checkpoint__.json.npy`: the header, UTF-8 JSON as a uint8 array, with the fields format,
  package_version, generation, state (the tree of NamedTuples, dicts, JSON scalars and array references; a
  reference gives the member's name, dtype and shape) and metadata (the caller's: strategy settings, seed,
  run configuration).
- `__checkpoint__.sha256.npy`: one SHA-256 (64 hex digits as a uint8 array) over the exact header bytes and
  every array member (name, dtype, shape, bytes) in name order.

`load` and `read_metadata` check all of this before they return anything:

- the file is a ZIP archive of stored (uncompressed, unencrypted) `.npy` members, each read with
  `allow_pickle=False` (no code ever runs) and holding no bytes past its data;
- the digest matches, so any change to the header (format, version, generation, state layout, metadata) or
  to an array (its bytes, dtype, shape, or the name it is stored under) is refused as altered or damaged;
- the format is this one (files of older versions are refused as such);
- the header is well formed; its NamedTuples are those of `_STATE_TYPES` only; every array it references is
  a member of the recorded dtype and shape, referenced once, and no member goes unreferenced;
- the state is an EggrollState with the header's generation, params a dict of arrays, and every dict of its
  optimizer state (Adam's mu and nu, SGD's velocity) empty or with the keys, dtypes and shapes of params.

Whatever is wrong with a file raises a `CheckpointError` naming it; no other exception escapes a read.
`save` refuses a state that `load` would refuse, and writes through `_files.replace_atomically`: the file
is complete or absent, and gets the permissions of any other file. `check_structure` compares a loaded
state with the one a run expects (a resumed run calls it before using the checkpoint).
"""

from __future__ import annotations

import hashlib
import io
import json
import operator
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ._array_api import dtype_name, has_dtype, is_array_api_obj, to_numpy
from ._files import replace_atomically
from .optim import STATE_TYPES
from .strategy import EggrollState

__all__ = ["FORMAT", "CheckpointError", "check_structure", "load", "read_metadata", "save"]

FORMAT = "eggroll-np-checkpoint/2"
_OLDER_FORMATS = ("eggroll-np-checkpoint/1",)
_HEADER = "__checkpoint__.json"
_DIGEST = "__checkpoint__.sha256"
_HEADER_FIELDS = ("format", "package_version", "generation", "state", "metadata")
_STATE_TYPES = {cls.__name__: cls for cls in (EggrollState, *STATE_TYPES)}
_FOREIGN = " (an optimizer from egg.optim.from_optax keeps optax's own state, which checkpoints do not save)"
_SCALARS = (bool, int, float, str, type(None))
_FLOAT_DTYPES = ("float16", "float32", "float64")
_DTYPES = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "complex64", "complex128"}
    | set(_FLOAT_DTYPES)
)


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back: missing, truncated, damaged, altered, inconsistent, of
    another format, or not the state a run expects."""


def _is_namedtuple(tree) -> bool:
    return isinstance(tree, tuple) and hasattr(tree, "_fields")


def _field_path(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _encode(tree, path: str, arrays: dict[str, np.ndarray]) -> Any:
    """JSON description of a state tree; its arrays go to `arrays` as members "a0", "a1", ..."""
    if _is_namedtuple(tree):
        name = type(tree).__name__
        if _STATE_TYPES.get(name) is not type(tree):
            raise TypeError(
                f"cannot checkpoint a {name} at {path}; known state types: {sorted(_STATE_TYPES)}{_FOREIGN}"
            )
        fields = {f: _encode(getattr(tree, f), _field_path(path, f), arrays) for f in tree._fields}
        return {"namedtuple": name, "fields": fields}
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str):
                raise TypeError(f"cannot checkpoint a dict with key {key!r} at {path}; keys must be strings")
        return {"dict": {k: _encode(v, f"{path}[{k!r}]", arrays) for k, v in tree.items()}}
    if isinstance(tree, _SCALARS):
        return {"value": tree}
    if isinstance(tree, tuple | list):
        raise TypeError(
            f"cannot checkpoint a {type(tree).__name__} at {path}; known state types: {sorted(_STATE_TYPES)}{_FOREIGN}"
        )
    host = to_numpy(tree)
    if host.dtype.name not in _DTYPES:
        raise TypeError(f"cannot checkpoint {path}: its dtype {host.dtype} is none of {sorted(_DTYPES)}")
    member = f"a{len(arrays)}"
    arrays[member] = np.asarray(host, dtype=host.dtype.newbyteorder("<"), order="C")  # keeps a 0-D shape
    return {"array": member, "dtype": host.dtype.name, "shape": list(host.shape)}


def _digest(header: bytes, arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 of the header bytes and of every array (name, dtype, shape, bytes) in name order; each part is
    prefixed by its length, so two different contents never hash the same parts."""
    sha = hashlib.sha256()

    def add(part: bytes) -> None:
        sha.update(len(part).to_bytes(8, "little"))
        sha.update(part)

    add(header)
    for name in sorted(arrays):
        array = arrays[name]
        for part in (name.encode("utf-8"), array.dtype.str.encode("ascii"), repr(array.shape).encode("ascii")):
            add(part)
        add(array.tobytes())
    return sha.hexdigest()


def _as_uint8(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.uint8)


def save(path, state: EggrollState, metadata: dict | None = None) -> Path:
    """Write `state` (and JSON-serializable `metadata`) to `path` atomically; returns the path written.

    The file is complete or absent: it is written beside the target and renamed over it. A state that `load`
    would refuse (see the module docstring) raises a TypeError or ValueError before anything is written."""
    if not isinstance(state, EggrollState):
        raise TypeError(f"save needs an EggrollState, got {type(state).__name__}")
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"checkpoint path {str(path)!r} must end in .npz")
    state = _with_int_generation(state)
    problem = _state_problem(state)
    if problem:
        raise ValueError(f"cannot checkpoint this state: {problem}")
    arrays: dict[str, np.ndarray] = {}
    header = {
        "format": FORMAT,
        "package_version": _package_version(),
        "generation": state.generation,
        "state": _encode(state, "", arrays),
        "metadata": metadata or {},
    }
    try:
        encoded = json.dumps(header, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"checkpoint metadata and scalars of the state must be plain JSON (no NaN, callables or arrays): {exc}"
        ) from None
    digest = _digest(encoded, arrays).encode("ascii")
    members = {**arrays, _HEADER: _as_uint8(encoded), _DIGEST: _as_uint8(digest)}
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_atomically(path, lambda file: np.savez(file, **members))


def _package_version() -> str:
    from . import __version__

    return __version__


def _kind(value) -> str:
    return "an array" if is_array_api_obj(value) else type(value).__name__


def _difference(tree, reference, path: str) -> str | None:
    """The first way `tree` differs from `reference` in structure (NamedTuple types, dict keys, array dtypes
    and shapes, scalar types; values are not compared), as a phrase starting with its path; None if none."""
    if is_array_api_obj(tree) and is_array_api_obj(reference):
        found, wanted = dtype_name(tree.dtype), dtype_name(reference.dtype)
        if found != wanted:
            return f"{path} is {found}, expected {wanted}"
        if tuple(tree.shape) != tuple(reference.shape):
            return f"{path} has shape {tuple(tree.shape)}, expected {tuple(reference.shape)}"
        return None
    if is_array_api_obj(tree) or is_array_api_obj(reference) or type(tree) is not type(reference):
        return f"{path} is {_kind(tree)}, expected {_kind(reference)}"
    if _is_namedtuple(tree):
        for field in tree._fields:
            difference = _difference(getattr(tree, field), getattr(reference, field), _field_path(path, field))
            if difference:
                return difference
    if isinstance(tree, dict):
        missing = [key for key in reference if key not in tree]
        if missing:
            return f"{path} lacks {', '.join(map(repr, missing))}"
        unexpected = [key for key in tree if key not in reference]
        if unexpected:
            return f"{path} has unexpected {', '.join(map(repr, unexpected))}"
        for key in reference:
            difference = _difference(tree[key], reference[key], f"{path}[{key!r}]")
            if difference:
                return difference
    return None


def check_structure(state: EggrollState, expected: EggrollState, source: str) -> None:
    """Raise a CheckpointError naming the first place (such as `params['w']` or `opt_state.mu['w']`) where
    `state`, read from `source` (for example a checkpoint's path), differs from `expected` in structure:
    NamedTuple types, dict keys, array dtypes (by name) and shapes, scalar types. Values are not compared, so
    the generation may differ. A resumed run passes the state it would start from as `expected`."""
    for name, value in (("state", state), ("expected", expected)):
        if not isinstance(value, EggrollState):
            raise TypeError(f"check_structure needs EggrollStates, got {type(value).__name__} as {name}")
    for field in EggrollState._fields:
        difference = _difference(getattr(state, field), getattr(expected, field), field)
        if difference:
            raise CheckpointError(f"{source} does not match the state this run expects: {difference}")


def _per_leaf_dicts(tree, path: str):
    """(path, dict) for every dict field of the optimizer-state NamedTuples in `tree`: one entry per leaf."""
    if _is_namedtuple(tree):
        for field in tree._fields:
            value = getattr(tree, field)
            if isinstance(value, dict):
                yield _field_path(path, field), value
            else:
                yield from _per_leaf_dicts(value, _field_path(path, field))


def _with_int_generation(state: EggrollState) -> EggrollState:
    """`state` with a 0-d integer array generation (a state that came out of jax.jit) as its int value."""
    if isinstance(state.generation, int) or getattr(state.generation, "shape", None) != ():
        return state
    try:
        return state._replace(generation=operator.index(state.generation))
    except TypeError:  # a float array, say: `_state_problem` names it
        return state


def _state_problem(state: EggrollState) -> str | None:
    """What makes `state` inconsistent in itself, or None: its generation must be an int, its params a dict
    of arrays, and every non-empty dict of its optimizer state must have the structure of params."""
    if type(state.generation) is not int:
        return f"generation is {_kind(state.generation)}, expected int"
    if not isinstance(state.params, dict):
        return f"params is {_kind(state.params)}, expected dict"
    for name, leaf in state.params.items():
        if not is_array_api_obj(leaf):
            return f"params[{name!r}] is {_kind(leaf)}, expected an array"
    for path, per_leaf in _per_leaf_dicts(state.opt_state, "opt_state"):
        difference = _difference(per_leaf, state.params, path) if per_leaf else None
        if difference:
            return f"{path} does not match params: {difference}"
    return None


def _members(path: Path, where: str) -> dict[str, np.ndarray]:
    """Every member of the ZIP archive at `path` as a NumPy array, by name without its `.npy` suffix. Every
    member's CRC-32 is checked before any is parsed. Raises CheckpointError, or whatever the ZIP and `.npy`
    readers raise on a damaged archive."""
    contents: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            if name == info.filename or name in contents:
                raise CheckpointError(f"{where}: member {info.filename!r} is not a .npy array, or is there twice")
            if info.flag_bits & 0x1 or info.compress_type != zipfile.ZIP_STORED:
                raise CheckpointError(
                    f"{where}: member {info.filename!r} is encrypted or compressed; eggroll_np.save stores members "
                    "as they are"
                )
            contents[name] = archive.read(info)  # checks the member's CRC-32
    return {name: _npy(data, name, where) for name, data in contents.items()}


def _npy(data: bytes, name: str, where: str) -> np.ndarray:
    """The array that the `.npy` bytes `data` of member `name` hold, read without pickle."""
    buffer = io.BytesIO(data)
    array = np.lib.format.read_array(buffer, allow_pickle=False)
    if buffer.tell() != len(data):
        raise CheckpointError(f"{where}: member {name + '.npy'!r} has bytes past its array")
    return array


def _bytes_of(array: np.ndarray, member: str, where: str) -> bytes:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise CheckpointError(f"{where}: member {member!r} is not a byte string")
    return array.tobytes()


def _check_format(header, where: str) -> None:
    found = header.get("format") if isinstance(header, dict) else None
    if found in _OLDER_FORMATS:
        raise CheckpointError(
            f"{where} was written by an older eggroll-np (format {found!r}) and cannot be read by this version, "
            f"which reads {FORMAT!r}"
        )
    if found != FORMAT:
        raise CheckpointError(f"{where} has format {found!r}; this version of eggroll-np reads {FORMAT!r}")


def _check_header(header: dict, where: str) -> None:
    if sorted(header) != sorted(_HEADER_FIELDS):
        raise CheckpointError(f"{where}: its header has the fields {sorted(header)}, expected {sorted(_HEADER_FIELDS)}")
    for field, kind in (("package_version", str), ("generation", int), ("metadata", dict)):
        if type(header[field]) is not kind:
            raise CheckpointError(f"{where}: its header's {field} is {_kind(header[field])}, expected {kind.__name__}")


def _decode_array(tree: dict, arrays: dict[str, np.ndarray], path: str, used: set, where: str) -> np.ndarray:
    """The member that `tree` ({"array": name, "dtype": ..., "shape": [...]}) references, checked against it."""
    name, dtype, shape = tree["array"], tree["dtype"], tree["shape"]
    well_formed = isinstance(name, str) and isinstance(dtype, str) and dtype in _DTYPES and isinstance(shape, list)
    if not well_formed or not all(type(n) is int and n >= 0 for n in shape):
        raise CheckpointError(f"{where}: malformed array description at {path}")
    if name not in arrays:
        raise CheckpointError(f"{where}: member {name!r} of {path} is missing")
    if name in used:
        raise CheckpointError(f"{where}: member {name!r} of {path} is referenced twice")
    used.add(name)
    array, expected = arrays[name], np.dtype(dtype).newbyteorder("<")
    if array.dtype != expected or array.shape != tuple(shape):
        raise CheckpointError(
            f"{where}: member {name!r} of {path} holds {array.dtype} of shape {array.shape}; the header records "
            f"{expected} of shape {tuple(shape)}"
        )
    return np.asarray(array, dtype=array.dtype.newbyteorder("="))


def _decode(tree, arrays: dict[str, np.ndarray], path: str, used: set, where: str):
    """The state tree that the header's description `tree` gives, its arrays taken from `arrays`."""
    form = sorted(tree) if isinstance(tree, dict) else None
    if form == ["fields", "namedtuple"]:
        cls = _STATE_TYPES.get(tree["namedtuple"]) if isinstance(tree["namedtuple"], str) else None
        if cls is None:
            raise CheckpointError(f"{where}: unknown state type {tree['namedtuple']!r} at {path or 'the root'}")
        fields = tree["fields"]
        if not isinstance(fields, dict) or sorted(fields) != sorted(cls._fields):
            raise CheckpointError(f"{where}: the {cls.__name__} at {path or 'the root'} needs fields {cls._fields}")
        return cls(**{f: _decode(fields[f], arrays, _field_path(path, f), used, where) for f in cls._fields})
    if form == ["dict"] and isinstance(tree["dict"], dict):
        return {k: _decode(v, arrays, f"{path}[{k!r}]", used, where) for k, v in tree["dict"].items()}
    if form == ["value"] and isinstance(tree["value"], _SCALARS):
        return tree["value"]
    if form == ["array", "dtype", "shape"]:
        return _decode_array(tree, arrays, path, used, where)
    raise CheckpointError(f"{where}: malformed state description at {path or 'the root'}")


def _parse(path: Path, where: str) -> tuple[dict, EggrollState]:
    """The header and the state (NumPy arrays) of the checkpoint at `path`, after every check of the module
    docstring. Raises CheckpointError, or anything the ZIP, `.npy` and JSON readers raise on damaged input."""
    arrays = _members(path, where)
    if _HEADER not in arrays:
        raise CheckpointError(f"{where} has no {_HEADER}; it was not written by eggroll_np.save")
    header_bytes = _bytes_of(arrays.pop(_HEADER), _HEADER, where)
    header = json.loads(header_bytes.decode("utf-8"))
    _check_format(header, where)  # first, since another format may have another digest, or none
    if _DIGEST not in arrays:
        raise CheckpointError(f"{where} has no {_DIGEST}: the file was altered or damaged")
    if _bytes_of(arrays.pop(_DIGEST), _DIGEST, where) != _digest(header_bytes, arrays).encode():
        raise CheckpointError(f"{where} does not match its SHA-256 digest: the file was altered or damaged")
    _check_header(header, where)
    used: set[str] = set()
    state = _decode(header["state"], arrays, "", used, where)
    unused = sorted(set(arrays) - used)
    if unused:
        raise CheckpointError(f"{where} holds members that its header does not reference: {unused}")
    if not isinstance(state, EggrollState):
        raise CheckpointError(f"{where} holds a {type(state).__name__}, not an EggrollState")
    problem = _state_problem(state)
    if problem:
        raise CheckpointError(f"{where}: {problem}")
    if state.generation != header["generation"]:
        raise CheckpointError(
            f"{where}: its header says generation {header['generation']}, its state {state.generation}"
        )
    return header, state


def _read(path) -> tuple[dict, EggrollState]:
    """`_parse` of the file at `path`, every failure as a CheckpointError."""
    path = Path(path)
    where = repr(str(path))
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {where}")
    try:
        return _parse(path, where)
    except CheckpointError:
        raise
    except Exception as exc:  # a damaged file can make the ZIP, .npy and JSON readers raise almost anything
        raise CheckpointError(
            f"{where} is not a readable checkpoint (truncated, damaged, or not written by eggroll_np.save): "
            f"{type(exc).__name__}: {exc}"
        ) from None


def read_metadata(path) -> dict:
    """format, package_version, generation and metadata of the checkpoint at `path`, after every check that
    `load` makes."""
    header, _ = _read(path)
    return {field: header[field] for field in ("format", "package_version", "generation", "metadata")}


def _floating_dtype_name(dtype) -> str:
    name = dtype_name(dtype)
    if name not in _FLOAT_DTYPES:
        raise ValueError(f"dtype must be a floating dtype or its name ({', '.join(_FLOAT_DTYPES)}), got {dtype!r}")
    return name


def _map_arrays(tree, convert, path: str):
    """`tree` with every NumPy array `a` at `path` replaced by `convert(a, path)`."""
    if _is_namedtuple(tree):
        return type(tree)(*(_map_arrays(getattr(tree, f), convert, _field_path(path, f)) for f in tree._fields))
    if isinstance(tree, dict):
        return {k: _map_arrays(v, convert, f"{path}[{k!r}]") for k, v in tree.items()}
    if isinstance(tree, np.ndarray):
        return convert(tree, path)
    return tree


def load(path, *, xp=None, device=None, dtype=None) -> EggrollState:
    """The EggrollState saved at `path`, after every check of the module docstring (a CheckpointError if one
    fails). Its arrays are NumPy arrays, or arrays of namespace `xp` (on `device` when given: pass an
    array-API namespace such as `array_api_compat.cupy` for that, since plain CuPy's asarray takes no device).

    `dtype` (a floating dtype or its name, such as "float32") casts every floating array; other arrays keep
    their dtype. An array whose dtype `xp` lacks on `device` (JAX without x64 has no float64 or int64) raises
    a ValueError naming it, never a silent narrowing."""
    target = None if dtype is None else _floating_dtype_name(dtype)
    namespace = f"{getattr(xp, '__name__', xp)}{'' if device is None else f' on {device}'}"
    if xp is not None and target is not None and not has_dtype(xp, target, device):
        raise ValueError(f"load(dtype={dtype!r}): {namespace} has no {target}")
    _, state = _read(path)

    def convert(host: np.ndarray, path: str):
        if target is not None and host.dtype.kind == "f":
            host = host.astype(target)
        if xp is None:
            return host
        if not has_dtype(xp, host.dtype.name, device):
            fix = "pass dtype='float32' to cast the floating arrays, or " if host.dtype.kind == "f" else ""
            raise ValueError(
                f"checkpoint array {path} is {host.dtype.name}, which {namespace} lacks; {fix}load into a namespace "
                "or device that has it (JAX: enable x64 with JAX_ENABLE_X64=1)"
            )
        return xp.asarray(host) if device is None else xp.asarray(host, device=device)

    return _map_arrays(state, convert, "")

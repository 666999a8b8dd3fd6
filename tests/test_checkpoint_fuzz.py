"""Checkpoints under damage and tampering: every bit flip, every truncation, every edited header field and
every malformed archive is refused with a CheckpointError (or, for a flip that changes nothing read, loads
the same state); a sound file of another run is refused by check_structure."""

import json
import re

import numpy as np
import pytest
from test_checkpoint import HEADER, leaf_reference, read_members, write_members

import eggroll_np as egg
from eggroll_np import checkpoint
from eggroll_np.checkpoint import CheckpointError, check_structure

ALTERED = "does not match its SHA-256 digest: the file was altered or damaged"


def _strategy(optimizer=None):
    return egg.EGGROLL(population_size=4, sigma=0.1, optimizer=optimizer or egg.optim.adam(0.1), seed=5)


def _params(**changes):
    params = {"w": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "scale": np.asarray(np.float32(0.5))}
    return {**params, **changes}


@pytest.fixture
def small(tmp_path):
    """A checkpoint of a few kB: a 2x3 and a 0-D float32 leaf with Adam's state, one generation in."""
    es = _strategy()
    state = es.init(_params())
    state, _ = es.tell(state, es.ask(state), np.array([0.5, -1.0, 2.0, 0.25]))
    return egg.save(tmp_path / "state.npz", state, {"config": {"seed": 5, "note": "fuzz"}})


def _identical(tree, reference) -> bool:
    """Whether two state trees are the same: types, keys, and arrays of equal dtype, shape and bytes."""
    if type(tree) is not type(reference):
        return False
    if isinstance(tree, np.ndarray):
        return tree.dtype == reference.dtype and tree.shape == reference.shape and tree.tobytes() == reference.tobytes()
    if isinstance(tree, dict):
        return list(tree) == list(reference) and all(_identical(tree[k], reference[k]) for k in tree)
    if isinstance(tree, tuple):
        return len(tree) == len(reference) and all(map(_identical, tree, reference))
    return tree == reference


@pytest.mark.slow
def test_every_single_bit_flip_is_refused_or_loads_the_same_state(small):
    # checkpoint._read is the one reader behind load and read_metadata: one pass gives the state and the whole
    # header (metadata, generation, format, version), at half the cost of calling both
    original = small.read_bytes()
    reference_header, reference = checkpoint._read(small)
    assert _identical(egg.load(small), reference) and reference.params["scale"].shape == ()
    assert checkpoint.read_metadata(small)["metadata"] == reference_header["metadata"]
    assert len(original) < 4096
    for bit in range(8 * len(original)):
        flipped = bytearray(original)
        flipped[bit // 8] ^= 1 << (bit % 8)
        small.write_bytes(flipped)
        try:
            header, state = checkpoint._read(small)
        except CheckpointError:
            continue
        assert header == reference_header, f"bit {bit} changed the header"
        assert _identical(state, reference), f"bit {bit} changed the state"


def test_every_truncation_is_refused(small):
    original = small.read_bytes()
    for size in range(0, len(original), 64):
        small.write_bytes(original[:size])
        with pytest.raises(CheckpointError, match="not a readable checkpoint"):
            egg.load(small)


def _swap(members, a: str, b: str):
    members[a], members[b] = members[b], members[a]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(lambda h, m: h.update(format="eggroll-np-checkpoint/3"), "has format", id="format"),
        pytest.param(lambda h, m: h.update(package_version="0.0.1"), ALTERED, id="package_version"),
        pytest.param(lambda h, m: h.update(generation=0), ALTERED, id="generation"),
        pytest.param(lambda h, m: h["metadata"]["config"].update(seed=6), ALTERED, id="metadata"),
        pytest.param(lambda h, m: leaf_reference(h, "params", "w").update(dtype="int32"), ALTERED, id="dtype"),
        pytest.param(lambda h, m: leaf_reference(h, "params", "w").update(shape=[3, 2]), ALTERED, id="shape"),
        pytest.param(lambda h, m: leaf_reference(h, "opt_state").update(namedtuple="SGDState"), ALTERED, id="type"),
        pytest.param(lambda h, m: leaf_reference(h, "opt_state", "count").update(value=7), ALTERED, id="scalar"),
        pytest.param(lambda h, m: m.update(a0=m["a0"].view(np.int32)), ALTERED, id="reinterpreted array"),
        pytest.param(lambda h, m: m.update(a0=m["a0"].reshape(3, 2)), ALTERED, id="reshaped array"),
        pytest.param(lambda h, m: _swap(m, "a2", "a4"), ALTERED, id="mu and nu swapped"),  # same dtype and shape
        pytest.param(lambda h, m: m.update(a6=np.zeros(1)), ALTERED, id="extra array"),
        pytest.param(lambda h, m: m.pop("a5"), ALTERED, id="missing array"),
    ],
)
def test_any_edit_without_its_digest_is_refused(small, edit, message):
    header, members = read_members(small)
    write_members(small, header, members, sign=False)
    egg.load(small)  # the rewrite alone is no edit
    edit(header, members)
    write_members(small, header, members, sign=False)
    for read in (egg.load, checkpoint.read_metadata):
        with pytest.raises(CheckpointError, match=message):
            read(small)


@pytest.mark.parametrize(
    ("other", "message"),
    [
        (
            {"params": _params(w=np.zeros((3, 2), dtype=np.float32))},
            r"params\['w'\] has shape \(3, 2\), expected \(2, 3\)",
        ),
        ({"params": _params(w=np.zeros((2, 3)))}, r"params\['w'\] is float64, expected float32"),
        ({"params": _params(extra=np.zeros(2, dtype=np.float32))}, "params has unexpected 'extra'"),
        ({"params": {"w": _params()["w"]}}, "params lacks 'scale'"),
        ({"optimizer": egg.optim.sgd(0.1, momentum=0.9)}, "opt_state is SGDState, expected AdamState"),
    ],
    ids=["shape", "dtype", "extra leaf", "missing leaf", "optimizer"],
)
def test_check_structure_refuses_a_sound_checkpoint_of_another_run(tmp_path, other, message):
    expected = _strategy().init(_params())
    path = egg.save(tmp_path / "other.npz", _strategy(other.get("optimizer")).init(other.get("params", _params())))
    loaded = egg.load(path)  # digest-consistent: only the comparison with this run refuses it
    with pytest.raises(
        CheckpointError, match=re.escape(f"{str(path)!r} does not match the state this run expects: ") + message
    ):
        check_structure(loaded, expected, repr(str(path)))


def test_check_structure_accepts_a_later_state_of_the_same_run(small):
    check_structure(egg.load(small), _strategy().init(_params()), str(small))


def test_a_numpy_file_named_npz_and_other_non_archives_are_refused(tmp_path):
    path = tmp_path / "state.npz"
    np.save(tmp_path / "state.npy", np.zeros(3))
    unreadable = r"not a readable checkpoint .* BadZipFile"
    for data, message in [
        ((tmp_path / "state.npy").read_bytes(), unreadable),
        (b"", unreadable),
        (b"not a checkpoint", unreadable),
        (b"PK\x05\x06" + bytes(18), f"has no {HEADER}"),  # an empty archive
    ]:
        path.write_bytes(data)
        for read in (egg.load, checkpoint.read_metadata):
            with pytest.raises(CheckpointError, match=message):
                read(path)


@pytest.mark.parametrize("where", ["metadata", "state"])
def test_a_deeply_nested_header_with_a_correct_digest_is_refused(small, where):
    header, members = read_members(small)
    depth = 100_000
    if where == "metadata":
        header["metadata"] = "NESTED"
        nested = "[" * depth + "]" * depth
    else:
        leaf_reference(header, "params")["dict"]["w"] = "NESTED"
        nested = '{"dict": {"x": ' * depth + "{}" + "}}" * depth
    data = json.dumps(header).replace('"NESTED"', nested).encode()
    write_members(small, data, members, sign=True)
    with pytest.raises(CheckpointError, match="RecursionError"):
        egg.load(small)


def _patch_first_member(data: bytes, local_offset: int, central_offset: int, value: int) -> bytes:
    """The ZIP archive `data` with a 2-byte field of its first member's local and central headers set."""
    patched = bytearray(data)
    central = data.index(b"PK\x01\x02")
    assert data.startswith(b"PK\x03\x04")
    patched[local_offset : local_offset + 2] = value.to_bytes(2, "little")
    patched[central + central_offset : central + central_offset + 2] = value.to_bytes(2, "little")
    return bytes(patched)


@pytest.mark.parametrize(
    ("offsets", "value"),
    [((8, 10), 99), ((8, 10), 8), ((6, 8), 1)],
    ids=["unsupported compression", "deflated", "encrypted"],
)
def test_a_member_that_is_compressed_or_encrypted_is_refused(small, offsets, value):
    small.write_bytes(_patch_first_member(small.read_bytes(), *offsets, value))
    with pytest.raises(CheckpointError, match=r"member 'a0\.npy' is encrypted or compressed"):
        egg.load(small)


def test_the_header_member_must_be_a_byte_string(small):
    header, members = read_members(small)
    as_int16 = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8).astype(np.int16)
    np.savez(small, **members, **{HEADER: as_int16})
    with pytest.raises(CheckpointError, match=f"member {HEADER!r} is not a byte string"):
        egg.load(small)

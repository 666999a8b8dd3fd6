"""Checkpoints: exact round trips, atomic writes, and clear refusals of damaged, altered or unsafe files."""

import io
import json
import os
import stat
import zipfile

import numpy as np
import pytest
from helpers import BACKEND_NAMES, get_backend, np_of

import eggroll_np as egg
from eggroll_np import checkpoint
from eggroll_np._array_api import dtype_name
from eggroll_np.checkpoint import CheckpointError

HEADER, DIGEST = "__checkpoint__.json", "__checkpoint__.sha256"


def _state(optimizer):
    es = egg.EGGROLL(population_size=8, sigma=0.1, optimizer=optimizer, seed=3)
    rng = np.random.default_rng(0)
    state = es.init({"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3)})
    for _ in range(2):
        pop = es.ask(state)
        state, _ = es.tell(state, pop, rng.standard_normal(8))
    return state


def read_members(path) -> tuple[dict, dict]:
    """The parsed header of a checkpoint, and its other members (the arrays and the digest) by name."""
    with np.load(path) as archive:
        members = {name: archive[name] for name in archive.files}
    return json.loads(members.pop(HEADER).tobytes()), members


def write_members(path, header, members: dict, *, sign: bool) -> None:
    """Write a checkpoint from its parts as an attacker or a bad disk would: `header` as a dict or as JSON
    bytes. sign=True puts the digest of the new content in place (so only the checks after the digest can
    refuse the file); sign=False keeps whatever digest member `members` holds."""
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    members = dict(members)
    if sign:
        arrays = {name: array for name, array in members.items() if name != DIGEST}
        members[DIGEST] = np.frombuffer(checkpoint._digest(data, arrays).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **members, **{HEADER: np.frombuffer(data, dtype=np.uint8)})
    path.write_bytes(buffer.getvalue())


def leaf_reference(header: dict, *path: str) -> dict:
    """The header's description of the state entry at `path` ("params", "w" or "opt_state", "mu", "w")."""
    tree = header["state"]
    for key in path:
        tree = tree["fields"][key] if "fields" in tree else tree["dict"][key]
    return tree


@pytest.mark.parametrize(
    "optimizer",
    [egg.optim.adam(0.1), egg.optim.sgd(0.1, momentum=0.9), egg.optim.sgd(0.1)],
    ids=["adam", "momentum", "sgd"],
)
def test_save_then_load_gives_back_the_state_bit_for_bit(tmp_path, optimizer):
    state = _state(optimizer)
    path = egg.save(tmp_path / "run" / "state.npz", state, {"note": "hello", "seed": 3})
    loaded = egg.load(path)
    assert loaded.generation == state.generation == 2
    for name, value in state.params.items():
        assert loaded.params[name].dtype == value.dtype
        np.testing.assert_array_equal(loaded.params[name], value)
    assert type(loaded.opt_state) is type(state.opt_state)
    for field in state.opt_state._fields:
        saved, got = getattr(state.opt_state, field), getattr(loaded.opt_state, field)
        if isinstance(saved, dict):
            assert saved.keys() == got.keys()
            for key in saved:
                np.testing.assert_array_equal(got[key], saved[key])
        else:
            assert got == saved
    header = egg.checkpoint.read_metadata(path)
    assert header["metadata"] == {"note": "hello", "seed": 3} and header["generation"] == 2
    assert header["package_version"] == egg.__version__ and header["format"] == checkpoint.FORMAT


@pytest.mark.parametrize("optimizer", [egg.optim.adam(0.1), egg.optim.sgd(0.1, momentum=0.9)], ids=["adam", "sgd"])
def test_0d_leaves_and_their_optimizer_state_keep_their_shape(tmp_path, optimizer):
    es = egg.EGGROLL(population_size=4, sigma=0.1, optimizer=optimizer, seed=0)
    state = es.init({"scale": np.asarray(np.float32(0.5)), "w": np.ones((2, 3), dtype=np.float32)})
    state, _ = es.tell(state, es.ask(state), np.arange(4.0))
    loaded = egg.load(egg.save(tmp_path / "s.npz", state))
    per_leaf = [
        getattr(loaded.opt_state, field) for field in ("mu", "nu", "velocity") if field in state.opt_state._fields
    ]
    for leaves in [loaded.params, *per_leaf]:
        assert leaves["scale"].shape == () and leaves["scale"].dtype == np.float32
        assert leaves["w"].shape == (2, 3)
    assert float(loaded.params["scale"]) == float(state.params["scale"])


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_a_checkpoint_loads_onto_another_backend(tmp_path, name):
    backend = get_backend(name)
    state = _state(egg.optim.adam(0.1))
    egg.save(tmp_path / "s.npz", state)
    dtype = None if backend.has_float64 else "float32"
    loaded = egg.load(tmp_path / "s.npz", xp=backend.xp, device=backend.device, dtype=dtype)
    assert isinstance(loaded.params["w"], type(backend.xp.zeros(1)))
    for leaves, reference in [(loaded.params, state.params), (loaded.opt_state.nu, state.opt_state.nu)]:
        for leaf, value in leaves.items():
            expected = reference[leaf].astype(dtype or reference[leaf].dtype)
            assert dtype_name(value.dtype) == expected.dtype.name
            np.testing.assert_array_equal(np_of(value), expected)


@pytest.mark.parametrize("name", ["jax", "strict_no_x64"])
def test_a_namespace_without_float64_refuses_it_unless_dtype_casts_the_floating_arrays(tmp_path, name):
    backend = get_backend(name)
    assert not backend.has_float64
    path = egg.save(tmp_path / "s.npz", _state(egg.optim.adam(0.1)))
    with pytest.raises(ValueError, match=r"params\['b'\] is float64, which .* lacks; pass dtype='float32'") as refused:
        egg.load(path, xp=backend.xp, device=backend.device)
    assert not isinstance(refused.value, CheckpointError)
    loaded = egg.load(path, xp=backend.xp, device=backend.device, dtype=backend.xp.float32)
    assert loaded.params["b"].dtype == backend.xp.float32 == loaded.opt_state.mu["b"].dtype
    np.testing.assert_array_equal(np_of(loaded.params["b"]), egg.load(path).params["b"].astype(np.float32))
    with pytest.raises(ValueError, match=r"load\(dtype='float64'\): .* has no float64"):
        egg.load(path, xp=backend.xp, device=backend.device, dtype="float64")


def test_dtype_casts_floating_arrays_only_and_integer_arrays_need_the_namespace_to_have_them(tmp_path):
    state = egg.EggrollState({"w": np.ones(2), "steps": np.arange(3)}, egg.optim.SGDState({}), 0)
    path = egg.save(tmp_path / "s.npz", state)
    loaded = egg.load(path, dtype="float32")
    assert loaded.params["w"].dtype == np.float32 and loaded.params["steps"].dtype == np.int64
    jax = get_backend("jax")
    with pytest.raises(ValueError, match=r"params\['steps'\] is int64, which jax.numpy lacks; load into") as refused:
        egg.load(path, xp=jax.xp, dtype="float32")
    assert "dtype=" not in str(refused.value)
    with pytest.raises(ValueError, match="dtype must be a floating dtype"):
        egg.load(path, dtype="int32")


def test_a_crash_while_saving_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "state.npz"
    first = _state(egg.optim.adam(0.1))
    egg.save(path, first)
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt("power cut")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        egg.save(path, first._replace(generation=99))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert egg.load(path).generation == first.generation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]  # no temporary file left behind


def test_a_checkpoint_gets_the_permissions_of_any_other_file(tmp_path):
    previous = os.umask(0o002)  # 0o664 for every file, where a private temporary file would give 0o600
    try:
        path = egg.save(tmp_path / "state.npz", _state(egg.optim.sgd(0.1)))
        with open(tmp_path / "other.txt", "w") as other:
            other.write("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "other.txt").stat().st_mode) == 0o664


def test_the_temporary_file_of_a_killed_save_is_removed_by_the_next_save(tmp_path):
    stale = tmp_path / ".state.npz.0123456789ab.tmp"
    stale.write_bytes(b"PK\x03\x04 cut short by a kill")
    egg.save(tmp_path / "state.npz", _state(egg.optim.sgd(0.1)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]


def test_metadata_that_is_not_json_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "state.npz"
    with pytest.raises(TypeError, match="plain JSON"):
        egg.save(path, _state(egg.optim.sgd(0.1)), {"schedule": lambda t: t})
    with pytest.raises(TypeError, match="plain JSON"):
        egg.save(path, _state(egg.optim.sgd(0.1)), {"bad": float("nan")})
    with pytest.raises(TypeError, match="metadata must be a dict"):
        egg.save(path, _state(egg.optim.sgd(0.1)), ["not", "a", "dict"])
    assert not path.exists()
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        egg.save(tmp_path / "state.pkl", _state(egg.optim.sgd(0.1)))
    with pytest.raises(TypeError, match="needs an EggrollState"):
        egg.save(path, {"w": np.zeros(2)})


def test_an_optimizer_state_that_does_not_match_params_is_refused_on_save_and_on_load(tmp_path):
    state = _state(egg.optim.adam(0.1))
    mu, nu = state.opt_state.mu, state.opt_state.nu
    crossed = state._replace(opt_state=state.opt_state._replace(mu={"w": nu["b"], "b": nu["w"]}, nu=mu))
    path = tmp_path / "state.npz"
    with pytest.raises(ValueError, match=r"opt_state\.mu does not match params: opt_state\.mu\['w'\] is float64"):
        egg.save(path, crossed)
    assert not path.exists()
    egg.save(path, state)
    header, members = read_members(path)
    mu_w, mu_b = leaf_reference(header, "opt_state", "mu", "w"), leaf_reference(header, "opt_state", "mu", "b")
    header["state"]["fields"]["opt_state"]["fields"]["mu"]["dict"] = {"w": mu_b, "b": mu_w}
    write_members(path, header, members, sign=True)
    with pytest.raises(CheckpointError, match=r"opt_state\.mu\['w'\] is float64, expected float32"):
        egg.load(path)


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "state.npz"
    egg.save(path, _state(egg.optim.adam(0.1)), {"config": {"seed": 3}})
    return path


def test_a_truncated_checkpoint_is_refused_with_a_clear_message(saved):
    saved.write_bytes(saved.read_bytes()[: len(saved.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        egg.load(saved)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        egg.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        egg.load(garbage)
    plain = tmp_path / "plain.npz"
    np.savez(plain, w=np.zeros(3))
    with pytest.raises(CheckpointError, match=r"was not written by eggroll_np\.save"):
        egg.load(plain)


def test_a_checkpoint_of_the_older_format_is_refused_as_such(tmp_path):
    old = tmp_path / "old.npz"
    header = {"format": "eggroll-np-checkpoint/1", "generation": 0, "state": {}, "sha256": {}, "metadata": {}}
    np.savez(old, a0=np.zeros(3), **{HEADER: np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)})
    for read in (egg.load, checkpoint.read_metadata):
        with pytest.raises(CheckpointError, match=r"written by an older eggroll-np .* cannot be read by this version"):
            read(old)


def test_an_altered_array_is_refused_by_load_and_read_metadata(saved):
    header, members = read_members(saved)
    write_members(saved, header, members, sign=False)
    assert egg.load(saved).generation == 2  # the rewrite alone changes nothing
    members["a0"] = members["a0"] + np.float32(1)
    write_members(saved, header, members, sign=False)
    for read in (egg.load, checkpoint.read_metadata):
        with pytest.raises(CheckpointError, match="does not match its SHA-256 digest: the file was altered or damaged"):
            read(saved)
    del members[DIGEST]
    write_members(saved, header, members, sign=False)
    with pytest.raises(CheckpointError, match=f"has no {DIGEST}"):
        egg.load(saved)


def _set_reference(path: tuple, **changes):
    return lambda header, members: leaf_reference(header, *path).update(changes)


def _replace_a_leaf_by_a_dict(header, members):
    leaf_reference(header, "params")["dict"]["w"] = {"dict": {}}
    del members["a0"]


def _replace_a_leaf_by_a_dict(header, members):
    leaf_reference(header, "params")["dict"]["w"] = {"dict": {}}
    del members["a0"]


def _view_as_int32(header, members):
    members["a0"] = members["a0"].view(np.int32)
    leaf_reference(header, "params", "w")["dtype"] = "int32"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h, m: h.update(format="other/9"), "has format 'other/9'; this version of eggroll-np reads"),
        (lambda h, m: h.pop("metadata"), r"its header has the fields \['format', 'generation', 'package_version'"),
        (lambda h, m: h.update(generation=7), "its header says generation 7, its state 2"),
        (lambda h, m: h.update(generation="2"), "its header's generation is str, expected int"),
        (_set_reference(("opt_state",), namedtuple="os.system"), "unknown state type 'os.system' at opt_state"),
        (_set_reference(("params", "w"), dtype="float64"), r"'a0' of params\['w'\] holds float32 .* records float64"),
        (
            _set_reference(("params", "w"), shape=[3, 4]),
            r"shape \(4, 3\); the header records float32 of shape \(3, 4\)",
        ),
        (_set_reference(("params", "w"), array="a9"), r"member 'a9' of params\['w'\] is missing"),
        (
            _set_reference(("opt_state", "mu", "w"), array="a0"),
            r"member 'a0' of opt_state\.mu\['w'\] is referenced twice",
        ),
        (lambda h, m: m.update(a6=np.zeros(2)), r"holds members that its header does not reference: \['a6'\]"),
        (_replace_a_leaf_by_a_dict, r"params\['w'\] is dict, expected an array"),
        (_view_as_int32, r"opt_state\.mu\['w'\] is float32, expected int32"),
    ],
)
def test_a_re_signed_file_is_still_checked_against_its_header(saved, edit, message):
    header, members = read_members(saved)
    edit(header, members)
    write_members(saved, header, members, sign=True)
    with pytest.raises(CheckpointError, match=message):
        egg.load(saved)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_a_pickled_object_array_is_refused_and_never_run(saved, capsys):
    header, members = read_members(saved)
    members["a0"] = np.array([_Payload()], dtype=object)
    write_members(saved, header, members, sign=True)  # savez pickles object arrays
    assert zipfile.is_zipfile(saved)
    with pytest.raises(CheckpointError, match=r"not a readable checkpoint .* allow_pickle=False"):
        egg.load(saved)
    assert "code ran" not in capsys.readouterr().out

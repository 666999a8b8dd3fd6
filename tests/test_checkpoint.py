"""Checkpoints: exact round trips, atomic writes, and clear refusals of damaged or unsafe files."""

import io
import json
import zipfile

import numpy as np
import pytest
from helpers import get_backend, np_of

import eggroll_np as egg
from eggroll_np.checkpoint import CheckpointError


def _state(optimizer):
    es = egg.EGGROLL(population_size=8, sigma=0.1, optimizer=optimizer, seed=3)
    rng = np.random.default_rng(0)
    state = es.init({"w": rng.standard_normal((4, 3)).astype(np.float32), "b": rng.standard_normal(3)})
    for _ in range(2):
        pop = es.ask(state)
        state, _ = es.tell(state, pop, rng.standard_normal(8))
    return state


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
    assert header["package_version"] == egg.__version__


@pytest.mark.parametrize("name", ["jax", "strict"])
def test_a_checkpoint_loads_onto_another_backend(tmp_path, name):
    backend = get_backend(name)
    state = _state(egg.optim.adam(0.1))
    egg.save(tmp_path / "s.npz", state)
    loaded = egg.load(tmp_path / "s.npz", xp=backend.xp, device=backend.device)
    assert isinstance(loaded.params["w"], type(backend.xp.zeros(1)))
    np.testing.assert_array_equal(np_of(loaded.params["w"]), state.params["w"])


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


def test_metadata_that_is_not_json_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / "state.npz"
    with pytest.raises(TypeError, match="plain JSON"):
        egg.save(path, _state(egg.optim.sgd(0.1)), {"schedule": lambda t: t})
    with pytest.raises(TypeError, match="plain JSON"):
        egg.save(path, _state(egg.optim.sgd(0.1)), {"bad": float("nan")})
    assert not path.exists()
    with pytest.raises(ValueError, match=r"must end in \.npz"):
        egg.save(tmp_path / "state.pkl", _state(egg.optim.sgd(0.1)))
    with pytest.raises(TypeError, match="needs an EggrollState"):
        egg.save(path, {"w": np.zeros(2)})


def _rewrite(path, change):
    """Rewrite the members of an .npz through `change(members) -> members` (as an attacker or a bad disk)."""
    with np.load(path) as archive:
        members = {name: archive[name] for name in archive.files}
    buffer = io.BytesIO()
    np.savez(buffer, **change(members))
    path.write_bytes(buffer.getvalue())


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "state.npz"
    egg.save(path, _state(egg.optim.adam(0.1)))
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


def test_an_altered_array_is_detected_by_its_hash(saved):
    def flip(members):
        name = next(n for n in members if n != "__checkpoint__.json" and members[n].size)
        members[name] = members[name].copy()
        members[name].reshape(-1)[0] += 1
        return members

    _rewrite(saved, flip)
    with pytest.raises(CheckpointError, match="does not match its recorded SHA-256"):
        egg.load(saved)


def test_altered_metadata_is_refused(saved):
    def edit(members, header_change):
        header = json.loads(members["__checkpoint__.json"].tobytes())
        header_change(header)
        members["__checkpoint__.json"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        return members

    original = saved.read_bytes()
    for change, message in [
        (lambda h: h.update(format="other/9"), "has format 'other/9'"),
        (lambda h: h["state"].update(namedtuple="os.system"), "unknown or malformed state type 'os.system'"),
        (lambda h: h.pop("sha256"), "lacks the array hashes"),
    ]:
        saved.write_bytes(original)
        _rewrite(saved, lambda members, change=change: edit(members, change))
        with pytest.raises(CheckpointError, match=message):
            egg.load(saved)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran while loading a checkpoint",))


def test_a_pickled_object_array_is_refused_and_never_run(saved, capsys):
    def inject(members):
        members[next(n for n in members if n != "__checkpoint__.json")] = np.array([_Payload()], dtype=object)
        return members

    with np.load(saved) as archive:
        members = {name: archive[name] for name in archive.files}
    buffer = io.BytesIO()
    np.savez(buffer, **inject(members))  # savez pickles object arrays
    saved.write_bytes(buffer.getvalue())
    assert zipfile.is_zipfile(saved)
    with pytest.raises(CheckpointError, match="cannot be read"):
        egg.load(saved)
    assert "code ran" not in capsys.readouterr().out

"""A training run: config keys under EGGROLL's keyword names, refusals before anything is written, exact
resume, and the command line's choices read from the registries."""

import inspect
import json

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _array_api, noise, optim, shaping, training
from eggroll_np.cli import _parser, main
from eggroll_np.tasks import TASKS
from eggroll_np.training import STRATEGY_KEYS, make_strategy, open_run, run_config, train

QUIET = {"progress": False, "echo": lambda _: None}


def _rosenbrock(**settings) -> dict:
    """A tiny rosenbrock run: 4 dimensions, 8 members, checkpoints every 2 generations."""
    return run_config(
        "rosenbrock",
        {"dim": 4, "population_size": 8, "generations": 4, "eval_every": 2, "checkpoint_every": 2, **settings},
    )


def _digits(**settings) -> dict:
    pytest.importorskip("sklearn")
    tiny = {"population_size": 16, "hidden": 8, "batch_size": 32, "generations": 4, "eval_every": 2}
    return run_config("digits", {**tiny, "lr_schedule": "cosine", "seed": 5, **settings})


def _metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _listing(path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def test_config_keys_are_eggrolls_keyword_names():
    assert set(STRATEGY_KEYS) == set(inspect.signature(egg.EGGROLL).parameters) - {"optimizer", "policy"}
    for task in TASKS:
        config = run_config(task, {})
        assert set(STRATEGY_KEYS) <= set(config) and "population" not in config


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"population_size": 7}, ValueError, "population_size=7 must be even"),
        ({"population_size": 8.0}, TypeError, "population_size=8.0 must be an integer"),
        ({"optimizer": "rmsprop"}, ValueError, "optimizer='rmsprop' must be one of 'adam', 'adamw', 'sgd'"),
        ({"lr_schedule": "warmup"}, ValueError, "lr_schedule='warmup' must be one of 'constant', 'cosine'"),
        ({"backend": "mlx"}, ValueError, "unknown backend 'mlx'; choose one of numpy, cupy, jax"),
        ({"dtype": "int8"}, ValueError, "dtype='int8' must be one of 'float32', 'float64'"),
        ({"dim": 1}, ValueError, "dim=1 must be an integer ≥ 2"),
        ({"dim": 2.5}, TypeError, "dim=2.5 must be an integer ≥ 2, not a float"),
        ({"shaping": "group_zscore", "group_size": 3}, ValueError, "group_size"),
    ],
)
def test_open_run_refuses_bad_input_before_writing_anything(tmp_path, settings, error, message):
    (tmp_path / "notes.txt").write_text("mine")
    before = _listing(tmp_path)
    with pytest.raises(error, match=message):
        open_run(_rosenbrock(**settings), tmp_path / "run")
    with pytest.raises(error, match=message):
        open_run(_rosenbrock(**settings), tmp_path)
    assert _listing(tmp_path) == before


def test_open_run_refuses_a_resume_without_a_checkpoint_before_writing_anything(tmp_path):
    with pytest.raises(egg.CheckpointError, match="no checkpoint at"):
        open_run(_rosenbrock(), tmp_path, resume=True)
    assert list(tmp_path.iterdir()) == []


def test_the_config_a_run_writes_rebuilds_an_equal_strategy(tmp_path):
    run = open_run(_rosenbrock(optimizer="sgd", momentum=0.5, group_size=0), tmp_path)
    training.run_generations(run, **QUIET)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written == run.config
    assert {k: written[k] for k in STRATEGY_KEYS} == {k: run.config[k] for k in STRATEGY_KEYS}
    assert written["population_size"] == 8 and written["momentum"] == 0.5
    rebuilt = make_strategy(written)
    assert rebuilt.fingerprint == run.strategy.fingerprint
    assert (rebuilt.maximize, rebuilt.nan_policy, rebuilt.group_size) == (False, "raise", 0)
    state = egg.load(tmp_path / "checkpoint.npz")
    assert type(rebuilt.init(state.params).opt_state) is type(state.opt_state) is optim.SGDState
    pop = rebuilt.ask(state)  # the rebuilt strategy goes on exactly as the run's own
    fitness = run.task.fitness(pop, state.generation)
    a, _ = rebuilt.tell(state, pop, fitness)
    b, _ = run.strategy.tell(state, run.strategy.ask(state), fitness)
    np.testing.assert_array_equal(a.params["x"], b.params["x"])


def test_the_optimizer_factory_gets_exactly_the_config_values_it_takes(monkeypatch):
    calls = []

    def probe(learning_rate, momentum, b1=0.9):
        calls.append({"learning_rate": learning_rate(3), "momentum": momentum, "b1": b1})
        return optim.sgd(learning_rate)

    monkeypatch.setitem(optim.OPTIMIZERS, "probe", probe)
    training.make_optimizer(_rosenbrock(optimizer="probe", learning_rate=0.25, momentum=0.7, weight_decay=0.3))
    assert calls == [{"learning_rate": 0.25, "momentum": 0.7, "b1": 0.9}]


@pytest.mark.parametrize("config", [_rosenbrock, _digits], ids=["rosenbrock", "digits"])
def test_k_generations_plus_a_resume_of_k_equal_2k_generations_bit_for_bit(tmp_path, config):
    straight, split = tmp_path / "straight", tmp_path / "split"
    train(config(generations=6, lr_decay_generations=6), straight, **QUIET)
    train(config(generations=3, lr_decay_generations=6), split, **QUIET)
    train(config(generations=6, lr_decay_generations=6), split, resume=True, **QUIET)
    a, b = egg.load(straight / "checkpoint.npz"), egg.load(split / "checkpoint.npz")
    assert a.generation == b.generation == 6
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name])
    for name in a.opt_state.mu:
        np.testing.assert_array_equal(a.opt_state.mu[name], b.opt_state.mu[name])
        np.testing.assert_array_equal(a.opt_state.nu[name], b.opt_state.nu[name])
    # The split run also evaluates where its first part ended (generation 3); evaluation never touches the
    # state, and every other field agrees exactly.
    for x, y in zip(_metrics(straight), _metrics(split), strict=True):
        assert {k: v for k, v in y.items() if k in x} == x


def test_resume_drops_metrics_logged_after_the_last_checkpoint(tmp_path):
    train(_rosenbrock(), tmp_path, **QUIET)
    reference = _metrics(tmp_path)
    egg.save(
        tmp_path / "checkpoint.npz",
        egg.load(tmp_path / "checkpoint.npz")._replace(generation=2),
        egg.checkpoint.read_metadata(tmp_path / "checkpoint.npz")["metadata"],
    )
    with (tmp_path / "metrics.jsonl").open("a") as log:
        log.write('{"generation": 5, "fitness_mean": 0.0, "fitn')  # a line cut short by a crash
    train(_rosenbrock(), tmp_path, resume=True, **QUIET)
    assert [r["generation"] for r in _metrics(tmp_path)] == [0, 1, 2, 3, 4]
    assert _metrics(tmp_path)[:3] == reference[:3]


def test_a_run_of_an_older_version_is_refused_on_resume_naming_the_missing_key(tmp_path, capsys):
    train(_rosenbrock(), tmp_path, **QUIET)
    path = tmp_path / "checkpoint.npz"
    old = _rosenbrock()
    old["population"] = old.pop("population_size")
    egg.save(path, egg.load(path), {"config": old})
    (tmp_path / "config.json").write_text(json.dumps(old))
    before = _listing(tmp_path)
    message = "was written by an older version of eggroll-np: its configuration has no 'population_size'"
    with pytest.raises(ValueError, match=message) as refused:
        train(old, tmp_path, resume=True, **QUIET)
    assert "'population' instead" in str(refused.value) and "\n" not in str(refused.value)
    assert main(["train", "--resume", str(tmp_path), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert _listing(tmp_path) == before


def test_a_run_on_array_api_strict_matches_numpy(tmp_path):
    a = train(_rosenbrock(backend="array_api_strict"), tmp_path / "strict", **QUIET)
    b = train(_rosenbrock(), tmp_path / "numpy", **QUIET)
    assert a["rosenbrock"] == pytest.approx(b["rosenbrock"], rel=1e-5)


def _choices(dest: str) -> list:
    train_parser = _parser()._subparsers._group_actions[0].choices["train"]
    (action,) = [a for a in train_parser._actions if a.dest == dest]
    return list(action.choices)


@pytest.mark.parametrize(
    ("dest", "registry"),
    [
        ("optimizer", optim.OPTIMIZERS),
        ("lr_schedule", training.LR_SCHEDULES),
        ("shaping", shaping.SHAPINGS),
        ("noise", noise.NOISE_KINDS),
        ("nan_policy", egg.NAN_POLICIES),
        ("backend", _array_api.BACKENDS),
        ("dtype", training.DTYPES),
        ("task", TASKS),
    ],
)
def test_the_command_line_choices_are_the_registries_keys(dest, registry):
    assert _choices(dest) == list(registry)

"""A training run: config keys under EGGROLL's keyword names, refusals before anything is written, exact
resume, and the command line's choices read from the registries."""

import functools
import inspect
import io
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
    config = _rosenbrock(optimizer="probe", lr_schedule="constant", learning_rate=0.25, momentum=0.7, weight_decay=0.3)
    training.make_optimizer(config)
    assert calls == [{"learning_rate": 0.25, "momentum": 0.7, "b1": 0.9}]


@pytest.mark.parametrize("config", [_rosenbrock, _digits], ids=["rosenbrock", "digits"])
def test_k_generations_plus_a_resume_of_k_equal_2k_generations_bit_for_bit(tmp_path, config):
    straight, split = tmp_path / "straight", tmp_path / "split"
    summaries = {"straight": train(config(generations=6, lr_decay_generations=6), straight, **QUIET)}
    train(config(generations=3, lr_decay_generations=6), split, **QUIET)
    summaries["split"] = train(config(generations=6, lr_decay_generations=6), split, resume=True, **QUIET)
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
    maximize = make_strategy(config()).maximize
    for record in _metrics(straight)[1:]:  # tell's best member, logged as its value and an int index
        assert record["fitness_best"] == record["fitness_max" if maximize else "fitness_min"]
        assert type(record["best_index"]) is int
    best = _best(_metrics(straight), maximize, 6)
    assert (summaries["straight"]["best_fitness"], summaries["straight"]["best_generation"]) == (
        best["fitness_max" if maximize else "fitness_min"],
        best["generation"],
    )
    assert {k: summaries["split"][k] for k in ("best_fitness", "best_generation")} == {
        k: summaries["straight"][k] for k in ("best_fitness", "best_generation")
    }


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


def test_a_resumed_run_recovers_its_best_fitness_and_last_metric_from_the_log_up_to_the_checkpoint(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(training, "_plot", lambda run_dir, warn: None)  # no plot to draw: this is about summary.json
    reference = train(_rosenbrock(generations=4, lr_decay_generations=4), tmp_path / "reference", **QUIET)
    run_dir = tmp_path / "run"
    train(_rosenbrock(generations=2, lr_decay_generations=4), run_dir, **QUIET)
    log = _metrics(run_dir)
    with (run_dir / "metrics.jsonl").open("a") as lines:  # logged after the checkpoint by a run that then died
        lines.write(json.dumps({**log[-1], "generation": 3, "fitness_min": -1e9, "f": -1.0}) + "\n")
    run = open_run(_rosenbrock(generations=4, lr_decay_generations=4), run_dir, resume=True)
    best = _best(log, False, 2)
    assert run.best == training.Best(best["fitness_min"], best["generation"]) and run.last_metric == log[2]["f"]
    training.run_generations(run, **QUIET)
    summary = training.finish_run(run)
    assert (summary["best_fitness"], summary["best_generation"]) == (
        reference["best_fitness"],
        reference["best_generation"],
    )


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
    assert a["f"] == pytest.approx(b["f"], rel=1e-5)


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


def _frames(text: str) -> list[str]:
    """The lines tqdm drew: each draw starts with a carriage return, the last ends with a newline."""
    return [frame for frame in text.replace("\n", "\r").split("\r") if frame]


def _expected_postfix_values(log: list[dict], generation: int, metric: str, maximize: bool) -> tuple[str, str]:
    """(best, metric) as the bar should show them at `generation`: the best fitness of any member logged so far
    and the last evaluation's metric, in the bar's fixed width."""
    seen = [r for r in log if r["generation"] <= generation]
    fitness = [r["fitness_max" if maximize else "fitness_min"] for r in seen if "fitness_max" in r]
    best = (max if maximize else min)(fitness) if fitness else None
    return training._fixed(best), training._fixed([r[metric] for r in seen if metric in r][-1])


@pytest.mark.parametrize("columns", [80, 120])
@pytest.mark.parametrize("config", [_rosenbrock, _digits], ids=["rosenbrock", "digits"])
def test_the_progress_bar_keeps_one_width_a_visible_bar_and_the_whole_metric(tmp_path, monkeypatch, config, columns):
    out = io.StringIO()
    monkeypatch.setattr(training, "_progress_bar", functools.partial(training._progress_bar, file=out, ncols=columns))
    report = training._report

    def report_and_draw(bar, *args):  # a draw after every generation (tqdm draws at most every 0.1 s)
        report(bar, *args)
        bar.refresh()

    monkeypatch.setattr(training, "_report", report_and_draw)
    run = open_run(config(generations=5, eval_every=2), tmp_path)
    training.run_generations(run, progress=True)
    frames, log = _frames(out.getvalue()), _metrics(tmp_path)
    assert {int(frame.split("/")[0]) for frame in frames} == {0, 1, 2, 3, 4, 5}
    assert len({len(frame) for frame in frames}) == 1 and len(frames[0]) <= columns  # one width, within the line
    metric, maximize = run.task.metric, run.strategy.maximize
    for frame in frames:
        assert len(frame.split("|")[1]) >= training.MIN_BAR_CELLS
        best, value = _expected_postfix_values(log, int(frame.split("/")[0]), metric, maximize)
        assert f", best {best}" in frame and f", {metric} {value}" in frame and "max" not in frame
        assert ("mean" in frame and "gen/s" in frame) == (columns == 120)


def _best(log: list[dict], maximize: bool, up_to: int) -> dict:
    """The record of the first generation ≤ up_to whose best member is the best of all."""
    key = "fitness_max" if maximize else "fitness_min"
    told = [r for r in log if key in r and r["generation"] <= up_to]
    return (max if maximize else min)(told, key=lambda r: r[key])  # the first of equal ones


def test_the_echo_lines_show_the_best_fitness_so_far_labelled_best_with_its_generation(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "_plot", lambda run_dir, warn: None)
    lines = []
    summary = train(_rosenbrock(generations=4, eval_every=2), tmp_path, progress=False, echo=lines.append)
    log = _metrics(tmp_path)
    assert len(lines) == 2
    for line, generation in zip(lines, (2, 4), strict=True):
        record, best = log[generation], _best(log, False, generation)  # rosenbrock minimizes: the lowest f
        assert line.startswith(
            f"generation {generation}: fitness mean {record['fitness_mean']:.4g}, best {best['fitness_min']:.4g} "
            f"(generation {best['generation']}), f {record['f']:.4g}, "
        )
        assert line.endswith(" gen/s") and "max" not in line
    best = _best(log, False, 4)
    assert (summary["best_fitness"], summary["best_generation"]) == (best["fitness_min"], best["generation"])

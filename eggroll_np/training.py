"""A training run, as the command line drives it: the strategy from a config, the task's fitness every
generation, a metrics log, atomic checkpoints, a progress bar, a plot at the end, and exact resume.

A run directory holds
    config.json      the full configuration (task, strategy settings, seed, backend, task options)
    metrics.jsonl    one JSON line per generation: tell's info (fitness mean/max/min/best, best_index,
                     grad_norm) and the evaluation metrics on the generations that evaluate; "generation"
                     counts generations completed, and a first line for generation 0 holds the evaluation
                     of the initial parameters
    checkpoint.npz   the state after the last checkpointed generation (see `checkpoint`)
    curves.png       learning curves, written at the end (`plotting`)
    summary.json     the final evaluation, the best fitness of any member and its generation, and the run's speed

Every file is replaced atomically (`_files.replace_atomically`) or only appended to (metrics.jsonl, which is
flushed to disk before each checkpoint), so a kill at any instant loses no line of a checkpointed generation,
and a run killed before its first checkpoint starts again from generation 0 on resume (config.json is the
first file written).

A run goes in three steps, which `train` composes: `open_run` builds everything from the config (and
refuses bad input before it writes anything), `run_generations` runs the loop, `finish_run` writes the
summary and the plot. The strategy's settings are stored under EGGROLL's own keyword names.

Everything a generation computes is a function of (config, state, generation), so resuming from a
checkpoint at generation k and running to 2k gives the same bits as running to 2k at once. The best fitness so
far is read back from the log's lines up to the checkpoint on resume, so it is that of an uninterrupted run too.

With `workers` (`open_run`), Ray replicas evaluate the population on the config's backend while this process,
the driver, computes in NumPy (it needs no GPU) and only fitness travels (`distributed.ray_cluster`). Where the
replicas round unlike NumPy, their params are the exact ones: every evaluation and checkpoint is of the state
`RayEvaluator.authoritative` fetches. How a run is computed is no setting of it: config.json and the checkpoint
hold none of it, so a run may be resumed with or without workers.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from . import checkpoint
from ._checks import choice, integer, real
from ._files import replace_text_atomically
from .best import improves
from .distributed.ray_cluster import RayEvaluator
from .distributed.task_fitness import TaskFitness, initial_params, task_on
from .optim import OPTIMIZERS, Optimizer
from .schedules import constant, cosine
from .strategy import EGGROLL, EggrollState
from .tasks import task_class

__all__ = [
    "CONFIG_MAY_CHANGE",
    "DEFAULTS",
    "DTYPES",
    "LR_SCHEDULES",
    "STRATEGY_KEYS",
    "Best",
    "Run",
    "finish_run",
    "make_optimizer",
    "make_strategy",
    "open_run",
    "run_config",
    "run_generations",
    "saved_config",
    "train",
]

DTYPES = ("float32", "float64")
COSINE_FLOOR = 0.05  # the cosine schedule ends at 5 % of the learning rate
# Each schedule from a config: cosine runs over lr_decay_generations, fixed when the run starts, so extending
# a run on resume continues at the final rate.
LR_SCHEDULES = {
    "constant": lambda config: constant(config["learning_rate"]),
    "cosine": lambda config: cosine(config["learning_rate"], config["lr_decay_generations"], COSINE_FLOOR),
}
_EGGROLL_PARAMETERS = inspect.signature(EGGROLL).parameters
# EGGROLL's keywords a config holds (the optimizer is built from the config; a leaf policy has no JSON form).
STRATEGY_KEYS = tuple(name for name in _EGGROLL_PARAMETERS if name not in {"optimizer", "policy"})
# The settings of every run that its task and the command line leave open: EGGROLL's own defaults, then these.
DEFAULTS = {
    **{name: _EGGROLL_PARAMETERS[name].default for name in STRATEGY_KEYS},
    "optimizer": "adam",
    "lr_schedule": "constant",
    "momentum": 0.0,
    "weight_decay": 0.01,
    "backend": "numpy",
    "dtype": "float32",
    "checkpoint_every": 100,
}
CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"
# The one key a resumed run may change: its total number of generations.
CONFIG_MAY_CHANGE = frozenset({"generations"})


def run_config(task: str, settings: dict) -> dict:
    """The full configuration of a new run of `task`: `DEFAULTS`, the task's defaults (`defaults_for` of its options and
    `settings` where it has one), its options, then `settings`; eval_every is cut to generations, and
    lr_decay_generations defaults to generations."""
    cls = task_class(task)
    options = {**{o.name: o.default for o in cls.options}, **settings}
    defaults = cls.defaults_for(options) if hasattr(cls, "defaults_for") else cls.defaults
    config = {"task": task, **DEFAULTS, **defaults, **options}
    config["eval_every"] = min(config["eval_every"], config["generations"])
    config.setdefault("lr_decay_generations", config["generations"])
    if hasattr(cls, "derived"):
        config.update(cls.derived(config))
    return config


def make_optimizer(config: dict) -> Optimizer:
    """The factory of `optim.OPTIMIZERS` that config["optimizer"] names, called with the learning-rate
    schedule of `LR_SCHEDULES` (for `integer`, as α, the fraction of weights moved per step) and every other
    of its parameters that the config holds (momentum, ...)."""
    factory = OPTIMIZERS[choice("optimizer", config["optimizer"], OPTIMIZERS)]
    rate = LR_SCHEDULES[choice("lr_schedule", config["lr_schedule"], LR_SCHEDULES)](config)
    parameters = inspect.signature(factory).parameters
    rate_name = "fraction" if "fraction" in parameters else "learning_rate"  # integer_step's α is its rate
    names = [k for k in parameters if k in config and k not in ("learning_rate", rate_name)]
    return factory(**{rate_name: rate}, **{k: config[k] for k in names})


def make_strategy(config: dict) -> EGGROLL:
    """The EGGROLL strategy a config describes: the settings `STRATEGY_KEYS` and `make_optimizer(config)`."""
    return EGGROLL(**{k: config[k] for k in STRATEGY_KEYS}, optimizer=make_optimizer(config))


class Best(NamedTuple):
    """The best fitness of any member so far (the highest raw fitness, or the lowest where the run minimizes)
    and the generation whose population held it (the first one, on a tie)."""

    fitness: float
    generation: int


def _best_after(best: Best | None, record: dict, maximize: bool) -> Best | None:
    """`best` after a metrics record: its fitness_max (fitness_min when minimizing) where that is finite and
    better. A generation without fitness (generation 0) or whose best is NaN or ±inf (nan_policy="worst") counts
    for nothing."""
    value = record.get("fitness_max" if maximize else "fitness_min")
    if value is not None and improves(value, None if best is None else best.fitness, maximize):
        return Best(value, record["generation"])
    return best


@dataclass
class Run:
    """An open run: its config and directory, the task and strategy built from the config, the state so far
    (the last generation whose metrics line is logged), that generation's metrics record, the generation it
    was opened at, the seconds it has run, the generation of the checkpoint it last wrote (None: none), the
    best fitness so far (None before the first generation), the last evaluation's metric (None: none yet) and
    the evaluator of a run on workers (None: in this process; `close` releases it, also on leaving a `with`
    block)."""

    config: dict
    run_dir: Path
    task: Any
    strategy: EGGROLL
    state: EggrollState
    record: dict
    opened_at: int
    seconds: float = 0.0
    saved_at: int | None = None
    best: Best | None = None
    last_metric: float | None = None
    evaluator: RayEvaluator | None = None

    def close(self) -> None:
        if self.evaluator is not None:
            self.evaluator.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_keys(config: dict, run_dir: Path, resume: bool) -> None:
    """Refuse a config without every key a run of its task reads (one written by an older version, say)."""
    expected = set(run_config(config.get("task"), {}))
    missing, unread = sorted(expected - set(config)), sorted(set(config) - expected)
    if not missing:
        return
    keys = ", ".join(map(repr, missing)) + (f" (it has {', '.join(map(repr, unread))} instead)" if unread else "")
    if resume:
        raise ValueError(
            f"{str(run_dir)!r} was written by an older version of eggroll-np: its configuration has no {keys}; "
            "start a new run"
        )
    raise ValueError(f"the configuration has no {keys}; build it with training.run_config")


def open_run(
    config: dict,
    run_dir,
    resume: bool = False,
    *,
    workers: int | None = None,
    gpus_per_worker: float = 0.0,
    ray_address: str | None = None,
) -> Run:
    """Build the run a config describes in `run_dir`, refusing bad input before anything in run_dir is written.

    A new run (resume=False) starts from the task's initial parameters. On resume the state comes from
    run_dir's checkpoint, which must have been made with this config (every key but `generations`, which may
    not go below the generation reached) and hold the leaves, dtypes and shapes this config's task and
    strategy produce; a run without a checkpoint yet starts again from generation 0. Then config.json is
    written and metrics.jsonl prepared: a new run's generation-0 line (the evaluation of the initial
    parameters), or on resume the lines up to the checkpoint's generation (a crash may have logged
    generations after it), each file replaced atomically; the best fitness so far and the last evaluated
    metric come from those lines.

    workers: evaluate on this many Ray replicas on config["backend"] (module docstring), each with
    `gpus_per_worker` GPUs, on the Ray cluster at `ray_address` (None: a local instance); this process then
    computes in NumPy, and a new run starts from the initial params a replica draws on the backend. None: all
    in this process. The replicas start before anything is written; the run's `close` stops them."""
    run_dir = Path(run_dir)
    _check_keys(config, run_dir, resume)
    choice("dtype", config["dtype"], DTYPES)
    if workers is not None:
        _check_workers(config, integer("workers", workers, 1), real("gpus_per_worker", gpus_per_worker, 0, 1))
    task, xp, device = task_on(config, config["backend"] if workers is None else "numpy")
    es = make_strategy(config)
    initial = es.init(task.init_params(config["seed"]))
    resumed = resume and (run_dir / CHECKPOINT).exists()
    if resume and not resumed:
        _check_unstarted(config, run_dir)
    if resumed:
        state = _resumed_state(config, run_dir / CHECKPOINT, initial, xp, device)
    evaluator = None
    if workers is not None:
        evaluator = RayEvaluator(
            es,
            TaskFitness(config),
            workers=workers,
            backend=config["backend"],
            gpus_per_replica=gpus_per_worker,
            address=ray_address,
        )
    try:
        if evaluator is not None and config["backend"] != "numpy":
            drawn = evaluator.run_on_replica(initial_params, config)  # also refuses a dtype the backend lacks
            if not resumed:
                initial = es.init(drawn)
        if resumed:
            record = {"generation": state.generation}
            kept, records, dropped = _read_metrics(run_dir / METRICS, state.generation)
        else:
            state = initial
            record = {"generation": 0, **task.evaluate(state.params)}
            kept, records, dropped = [json.dumps(record)], [record], True
        run_dir.mkdir(parents=True, exist_ok=True)
        replace_text_atomically(run_dir / CONFIG, json.dumps(config, indent=2) + "\n")
        if dropped:
            replace_text_atomically(run_dir / METRICS, "".join(line + "\n" for line in kept))
    except BaseException:
        if evaluator is not None:
            evaluator.close()
        raise
    run = Run(
        config,
        run_dir,
        task,
        es,
        state,
        record,
        state.generation,
        saved_at=state.generation if resumed else None,
        evaluator=evaluator,
    )
    for logged in records:
        _note(run, logged)
    return run


def _check_workers(config: dict, workers: int, gpus_per_worker: float) -> None:
    """Refuse a run on workers that cannot work: CuPy replicas without a GPU, or more than one worker for a
    task whose fitness takes the whole population at once."""
    if config["backend"] == "cupy" and gpus_per_worker == 0:
        raise ValueError(
            "--backend cupy computes on a GPU: give each worker one with --gpus-per-worker 1 (or 0.5 to put two "
            "workers on each GPU)"
        )
    cls = task_class(config["task"])
    reason = cls.whole_population(config) if hasattr(cls, "whole_population") else None
    if workers > 1 and reason:
        raise ValueError(f"{reason}, so its members cannot be split among workers: give --workers 1 or none")


def _note(run: Run, record: dict) -> None:
    """Carry a logged record into the run's best fitness so far and last evaluated metric."""
    run.best = _best_after(run.best, record, run.strategy.maximize)
    if run.task.metric in record:
        run.last_metric = record[run.task.metric]


def _resumed_state(config: dict, path: Path, initial: EggrollState, xp, device) -> EggrollState:
    """The checkpoint's state, refused unless it was made with `config` (but for `CONFIG_MAY_CHANGE`), holds
    what `initial` holds (leaves, optimizer state, dtypes, shapes) and is not past config["generations"]."""
    saved = checkpoint.read_metadata(path).get("metadata", {}).get("config")
    if not isinstance(saved, dict):
        raise checkpoint.CheckpointError(f"{str(path)!r} holds no run configuration")
    _check_same_settings(config, saved, f"the checkpoint {str(path)!r}")
    state = checkpoint.load(path, xp=xp, device=device)
    checkpoint.check_structure(state, initial, str(path))
    if state.generation > config["generations"]:
        raise ValueError(
            f"the run in {str(path.parent)!r} already reached generation {state.generation}; --generations "
            f"{config['generations']} would rewind it: give at least {state.generation}"
        )
    return state


def saved_config(run_dir) -> dict | None:
    """The configuration of the run in `run_dir`: its config.json, or where that is missing the one in its
    checkpoint's metadata; None where it has neither. A config.json that is not a JSON object is refused."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        if not (run_dir / CHECKPOINT).is_file():
            return None
        return checkpoint.read_metadata(run_dir / CHECKPOINT).get("metadata", {}).get("config")
    try:
        config = json.loads((run_dir / CONFIG).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{str(run_dir / CONFIG)!r} is not valid JSON ({exc}); restore it") from None
    if not isinstance(config, dict):
        raise ValueError(f"{str(run_dir / CONFIG)!r} holds no configuration; restore it")
    return config


def _check_unstarted(config: dict, run_dir: Path) -> None:
    """Refuse to resume a run without a checkpoint unless run_dir/config.json holds this config: the run then
    starts again from generation 0."""
    if not (run_dir / CONFIG).is_file():
        raise checkpoint.CheckpointError(
            f"no checkpoint at {str(run_dir / CHECKPOINT)!r} and no {CONFIG}: {str(run_dir)!r} holds no run to resume"
        )
    _check_same_settings(config, saved_config(run_dir), str(run_dir / CONFIG))


def _check_same_settings(config: dict, saved: dict, source: str) -> None:
    differ = sorted(k for k in set(saved) | set(config) if k not in CONFIG_MAY_CHANGE and saved.get(k) != config.get(k))
    if differ:
        changes = ", ".join(f"{k}: {saved.get(k)!r} in {source}, {config.get(k)!r} now" for k in differ)
        raise ValueError(
            f"the run was made with other settings ({changes}); a resumed run keeps the settings it started with "
            "(only generations may change): restore them or start a new run"
        )


def run_generations(run: Run, *, progress: bool | None = None, echo: Callable[[str], None] = print) -> None:
    """Run generations up to config["generations"]: ask, fitness, tell (the run's evaluator's `step` on workers),
    a metrics line each, an evaluation every `eval_every` and a checkpoint every `checkpoint_every` generations
    and after the last, and a progress report. A KeyboardInterrupt (Ctrl-C) checkpoints the last completed
    generation before it propagates. On workers, the state is replaced by its authoritative copy before it is
    evaluated or checkpointed; where that copy is lost at an interrupt, a warning says so and the last
    checkpoint stays.

    progress: a tqdm bar on stderr (None: only when stderr is a terminal; see `_bar_postfix`); without it,
    one line per evaluation goes to `echo`: `generation T: fitness mean M, best B (generation G), METRIC V,
    RATE gen/s`, M of generation T's population, B the best fitness so far."""
    config, task, es, evaluator = run.config, run.task, run.strategy, run.evaluator
    total = config["generations"]
    bar = _progress_bar(run, sys.stderr.isatty() if progress is None else progress)
    start, first = time.perf_counter(), run.state.generation
    exact, stepped = run.state, None  # the last state known exact (opened or fetched), the last one stepped
    try:
        with (run.run_dir / METRICS).open("a", encoding="utf-8") as log:
            for generation in range(run.state.generation, total):
                if evaluator is None:
                    pop = es.ask(run.state)
                    state, info = es.tell(run.state, pop, task.fitness(pop, generation))
                else:
                    state, info, _ = evaluator.step(run.state)
                    stepped = state
                record = _record(state.generation, info)
                evaluate = state.generation % config["eval_every"] == 0 or state.generation == total
                save = state.generation % config["checkpoint_every"] == 0 or state.generation == total
                if evaluator is not None and (evaluate or save):
                    state = exact = evaluator.authoritative(state)
                if evaluate:
                    record.update(task.evaluate(state.params))
                log.write(json.dumps(record) + "\n")
                log.flush()
                run.state, run.record = state, record  # a generation counts once its line is logged
                _note(run, record)
                if save:
                    os.fsync(log.fileno())  # the log on disk reaches every checkpointed generation
                    _save(run)
                _report(bar, echo, run, evaluate, (state.generation - first) / max(time.perf_counter() - start, 1e-9))
    except KeyboardInterrupt:
        if run.saved_at != run.state.generation and _to_exact(run, exact, stepped):
            _save(run)  # the last completed generation, whose metrics line is in the log
        raise
    finally:
        if bar is not None:
            bar.close()
        run.seconds += time.perf_counter() - start


def _to_exact(run: Run, exact: EggrollState, stepped: EggrollState | None) -> bool:
    """Make the run's state exact for a checkpoint at an interrupt: True where it is (`exact`, or the driver's
    params are authoritative) or its evaluator fetched it (`stepped`: the last step's result); else False, with
    a warning that the driver's copy, which may round differently, is not checkpointed."""
    evaluator = run.evaluator
    if evaluator is None or run.state is exact or evaluator.driver_is_authoritative(run.state):
        return True
    if run.state is stepped:
        try:
            run.state = evaluator.authoritative(run.state)
            return True
        except Exception as exc:
            reason = f"fetching it failed: {exc}"
    else:
        reason = "the workers had moved on from it"
    warnings.warn(
        f"the workers' exact state of generation {run.state.generation} could not be had ({reason}); the "
        "driver's copy, which may round differently, is not checkpointed",
        RuntimeWarning,
        stacklevel=3,
    )
    return False


def _save(run: Run) -> None:
    checkpoint.save(run.run_dir / CHECKPOINT, run.state, {"config": run.config})
    run.saved_at = run.state.generation


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr)


def finish_run(run: Run, *, warn: Callable[[str], None] = _to_stderr) -> dict:
    """Write summary.json (the last record, evaluating the state if no generation ran, with the best fitness so
    far as best_fitness and best_generation, null where no generation ran, and the workers, 0 in this process),
    then curves.png; a plot that cannot be drawn or written is passed to `warn` and leaves no file behind.
    Returns the summary."""
    if run.task.metric not in run.record:  # resumed with nothing left to run: report the state as it is
        run.record.update(run.task.evaluate(run.state.params))
    done = run.state.generation - run.opened_at
    summary = {
        "task": run.config["task"],
        "generations": run.state.generation,
        "metric": run.task.metric,
        "metric_goal": run.task.metric_goal,
        **{k: v for k, v in run.record.items() if k != "generation"},
        "best_fitness": None if run.best is None else run.best.fitness,
        "best_generation": None if run.best is None else run.best.generation,
        "seconds": run.seconds,
        "generations_per_second": done / run.seconds if run.seconds > 0 else None,
        "workers": 0 if run.evaluator is None else run.evaluator.workers,
    }
    replace_text_atomically(run.run_dir / SUMMARY, json.dumps(summary, indent=2) + "\n")
    _plot(run.run_dir, warn)
    return summary


def train(
    config: dict,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
    **workers,
) -> dict:
    """Run (or resume) the training a config describes in `run_dir`: `open_run` (see it for the `workers`
    keywords), `run_generations` (see it for `progress` and `echo`), `finish_run`; returns the summary."""
    with open_run(config, run_dir, resume, **workers) as run:
        run_generations(run, progress=progress, echo=echo)
        return finish_run(run)


def _read_metrics(path: Path, up_to: int) -> tuple[list[str], list[dict], bool]:
    """(the metric lines of generations ≤ up_to, their records, whether the log holds anything else): a line
    cut short by a crash ends the log."""
    if not path.exists():
        return [], [], True
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
    kept, records = [], []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not line.endswith("\n") or not isinstance(record, dict) or record.get("generation", up_to + 1) > up_to:
            break
        kept.append(line.rstrip("\n"))
        records.append(record)
    return kept, records, len(kept) < len(lines)


# The bar: "N/TOTAL |████    | 00:15 left" then `_bar_postfix`, every number of fixed width, so the bar keeps its
# width from one generation to the next; it keeps at least MIN_BAR_CELLS cells where the optional fields fit.
MIN_BAR_CELLS = 10
NUMBER_WIDTH = 8


def _progress_bar(run: Run, enabled: bool, *, file=None, ncols: int | None = None):
    """A tqdm bar of the run's generations on `file` (stderr), as wide as the terminal (or `ncols`), its postfix
    laid out for that width at every draw; None if disabled or tqdm is missing."""
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None

    class Bar(tqdm):
        @property
        def format_dict(self):  # tqdm's documented hook for what a draw shows
            shown = super().format_dict
            elapsed = shown["elapsed"]
            rate = (shown["n"] - shown["initial"]) / elapsed if elapsed > 0 else 0.0
            return {**shown, "postfix": _bar_postfix(run, rate, shown["ncols"])}

    total = run.config["generations"]
    return Bar(
        total=total,
        initial=run.state.generation,
        unit="gen",
        file=sys.stderr if file is None else file,
        ncols=ncols,
        dynamic_ncols=ncols is None,
        bar_format=f"{{n_fmt:>{len(str(total))}}}/{{total_fmt}} |{{bar}}| {{remaining:>5}} left{{postfix}}",
    )


def _record(generation: int, info: dict) -> dict:
    """A metrics line: tell's info as Python numbers (best_index an int, the rest floats)."""
    return {"generation": generation, **{k: int(v) if k == "best_index" else float(v) for k, v in info.items()}}


def _fixed(value: float | None) -> str:
    """value in NUMBER_WIDTH characters: 4 significant digits, or the integer nearest a large value, or as many
    digits as fit (`-1.3e-05`); "?" for None."""
    if value is None:
        return "?".rjust(NUMBER_WIDTH)
    texts = [f"{value:.4g}", *([f"{value:.0f}"] if abs(value) >= 1 else []), *(f"{value:.{d}g}" for d in (3, 2, 1))]
    return next(text for text in texts if len(text) <= NUMBER_WIDTH).rjust(NUMBER_WIDTH)


def _bar_postfix(run: Run, rate: float, columns: int | None) -> str:
    """The text after "left": "mean M, best B, METRIC V, R gen/s", M the last population's mean fitness, B the
    best fitness so far, V the last evaluation's metric (kept between evaluations). best and the metric always
    show; mean, then the rate, join where the bar keeps MIN_BAR_CELLS cells in `columns` (None: no limit)."""
    total = run.config["generations"]
    room = None if columns is None else columns - len(f"{total}/{total} || 00:00 left") - MIN_BAR_CELLS
    fields = {
        "mean": f"mean {_fixed(run.record.get('fitness_mean'))}",
        "best": f"best {_fixed(None if run.best is None else run.best.fitness)}",
        "metric": f"{run.task.metric} {_fixed(run.last_metric)}",
        "rate": f"{rate:6.1f} gen/s",
    }
    shown = {"best", "metric"}
    for optional in ("mean", "rate"):
        width = sum(len(", " + fields[name]) for name in shown | {optional})  # tqdm puts ", " before the postfix
        if room is None or width <= room:
            shown.add(optional)
    return ", ".join(text for name, text in fields.items() if name in shown)


def _echo_line(run: Run, rate: float) -> str:
    record, best = run.record, run.best
    where = "none yet" if best is None else f"{best.fitness:.4g} (generation {best.generation})"
    return (
        f"generation {record['generation']}: fitness mean {record['fitness_mean']:.4g}, best {where}, "
        f"{run.task.metric} {record.get(run.task.metric, float('nan')):.4g}, {rate:.1f} gen/s"
    )


def _report(bar, echo, run: Run, evaluated: bool, rate: float) -> None:
    """Advance the bar by one generation, or without one echo the line of an evaluating generation."""
    if bar is not None:
        bar.update(1)
    elif evaluated:
        echo(_echo_line(run, rate))
    if evaluated:  # text an evaluation reports (the text task's sample), a line of its own
        for key, value in run.record.items():
            if isinstance(value, str):
                (bar.write if bar is not None else echo)(f"  {key}: {value}")


def _plot(run_dir: Path, warn) -> None:
    from .plotting import plot_run

    try:
        plot_run(run_dir)
    except (ImportError, OSError) as exc:
        warn(f"no plot: {exc}")

"""A training run, as the command line drives it: the strategy from a config, the task's fitness every
generation, a metrics log, atomic checkpoints, a progress bar, a plot at the end, and exact resume.

A run directory holds
    config.json      the full configuration (task, strategy settings, seed, backend, task options)
    metrics.jsonl    one JSON line per generation: fitness mean/max/min, grad_norm, and the evaluation
                     metrics on the generations that evaluate; "generation" counts generations completed,
                     and a first line for generation 0 holds the evaluation of the initial parameters
    checkpoint.npz   the state after the last checkpointed generation (see `checkpoint`)
    curves.png       learning curves, written at the end (`plotting`)
    summary.json     the final evaluation and the run's speed

A run goes in three steps, which `train` composes: `open_run` builds everything from the config (and
refuses bad input before it writes anything), `run_generations` runs the loop, `finish_run` writes the
summary and the plot. The strategy's settings are stored under EGGROLL's own keyword names.

Everything a generation computes is a function of (config, state, generation), so resuming from a
checkpoint at generation k and running to 2k gives the same bits as running to 2k at once.
"""

from __future__ import annotations

import inspect
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import checkpoint
from ._array_api import backend_namespace, has_dtype
from ._checks import choice
from .optim import OPTIMIZERS, Optimizer
from .schedules import constant, cosine
from .strategy import EGGROLL, EggrollState
from .tasks import task_class

__all__ = [
    "DEFAULTS",
    "DTYPES",
    "LR_SCHEDULES",
    "STRATEGY_KEYS",
    "Run",
    "finish_run",
    "make_optimizer",
    "make_strategy",
    "open_run",
    "run_config",
    "run_generations",
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


def run_config(task: str, settings: dict) -> dict:
    """The full configuration of a new run of `task`: `DEFAULTS`, the task's defaults and options, then
    `settings`; eval_every is cut to generations, and lr_decay_generations defaults to generations."""
    cls = task_class(task)
    config = {"task": task, **DEFAULTS, **cls.defaults, **{o.name: o.default for o in cls.options}, **settings}
    config["eval_every"] = min(config["eval_every"], config["generations"])
    config.setdefault("lr_decay_generations", config["generations"])
    return config


def make_optimizer(config: dict) -> Optimizer:
    """The factory of `optim.OPTIMIZERS` that config["optimizer"] names, called with the learning-rate
    schedule of `LR_SCHEDULES` and every other of its parameters that the config holds (momentum, ...)."""
    factory = OPTIMIZERS[choice("optimizer", config["optimizer"], OPTIMIZERS)]
    rate = LR_SCHEDULES[choice("lr_schedule", config["lr_schedule"], LR_SCHEDULES)](config)
    names = [k for k in inspect.signature(factory).parameters if k in config and k != "learning_rate"]
    return factory(learning_rate=rate, **{k: config[k] for k in names})


def make_strategy(config: dict) -> EGGROLL:
    """The EGGROLL strategy a config describes: the settings `STRATEGY_KEYS` and `make_optimizer(config)`."""
    return EGGROLL(**{k: config[k] for k in STRATEGY_KEYS}, optimizer=make_optimizer(config))


@dataclass
class Run:
    """An open run: its config and directory, the task and strategy built from the config, the state so far,
    the last generation's metrics record, the generation it was opened at, and the seconds it has run."""

    config: dict
    run_dir: Path
    task: Any
    strategy: EGGROLL
    state: EggrollState
    record: dict
    opened_at: int
    seconds: float = 0.0


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


def open_run(config: dict, run_dir, resume: bool = False) -> Run:
    """Build the run a config describes in `run_dir` (new, or resumed from its checkpoint), refusing bad input
    before anything in run_dir is written; then write config.json and prepare metrics.jsonl: a new run's
    generation-0 line (the evaluation of the initial parameters), or on resume the lines up to the checkpoint's
    generation (a crash may have logged generations after it)."""
    run_dir = Path(run_dir)
    _check_keys(config, run_dir, resume)
    xp, device = backend_namespace(config["backend"])
    if not has_dtype(xp, choice("dtype", config["dtype"], DTYPES), device):
        raise ValueError(
            f"--backend {config['backend']} has no {config['dtype']} on {device} (JAX needs JAX_ENABLE_X64=1 for "
            "64-bit types); use --dtype float32"
        )
    es = make_strategy(config)
    task = task_class(config["task"])(config, xp, device, getattr(xp, config["dtype"]))
    if resume:
        state = checkpoint.load(run_dir / CHECKPOINT, xp=xp, device=device)
        record = {"generation": state.generation}
        lines = _read_metrics(run_dir / METRICS, state.generation)
    else:
        state = es.init(task.init_params(config["seed"]))
        record = {"generation": 0, **task.evaluate(state.params)}
        lines = [json.dumps(record)]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / METRICS).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    (run_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return Run(config, run_dir, task, es, state, record, state.generation)


def run_generations(run: Run, *, progress: bool | None = None, echo: Callable[[str], None] = print) -> None:
    """Run generations up to config["generations"]: ask, fitness, tell, a metrics line each, an evaluation every
    `eval_every` and a checkpoint every `checkpoint_every` generations and after the last, and a progress report.

    progress: a tqdm bar on stderr (None: only when stderr is a terminal); without it, one line per
    evaluation goes to `echo`."""
    config, task, es = run.config, run.task, run.strategy
    total = config["generations"]
    bar = _progress_bar(total, run.state.generation, sys.stderr.isatty() if progress is None else progress)
    start, first = time.perf_counter(), run.state.generation
    with (run.run_dir / METRICS).open("a", encoding="utf-8") as log:
        for generation in range(run.state.generation, total):
            pop = es.ask(run.state)
            run.state, info = es.tell(run.state, pop, task.fitness(pop, generation))
            run.record = _record(run.state.generation, info)
            evaluate = run.state.generation % config["eval_every"] == 0 or run.state.generation == total
            if evaluate:
                run.record.update(task.evaluate(run.state.params))
            log.write(json.dumps(run.record) + "\n")
            log.flush()
            if run.state.generation % config["checkpoint_every"] == 0 or run.state.generation == total:
                checkpoint.save(run.run_dir / CHECKPOINT, run.state, {"config": config})
            _report(bar, echo, run.record, task.metric, evaluate, start, run.state.generation - first)
    if bar is not None:
        bar.close()
    run.seconds += time.perf_counter() - start


def finish_run(run: Run, *, echo: Callable[[str], None] = print) -> dict:
    """Write summary.json (the last record, evaluating the state if no generation ran) and curves.png;
    returns the summary."""
    if run.task.metric not in run.record:  # resumed with nothing left to run: report the state as it is
        run.record.update(run.task.evaluate(run.state.params))
    done = run.state.generation - run.opened_at
    summary = {
        "task": run.config["task"],
        "generations": run.state.generation,
        "metric": run.task.metric,
        "metric_goal": run.task.metric_goal,
        **{k: v for k, v in run.record.items() if k != "generation"},
        "seconds": run.seconds,
        "generations_per_second": done / run.seconds if run.seconds > 0 else None,
    }
    (run.run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _plot(run.run_dir, echo)
    return summary


def train(
    config: dict,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the training a config describes in `run_dir`: `open_run`, `run_generations` (see it for
    `progress` and `echo`), `finish_run`; returns the summary."""
    run = open_run(config, run_dir, resume)
    run_generations(run, progress=progress, echo=echo)
    return finish_run(run, echo=echo)


def _read_metrics(path: Path, up_to: int) -> list[str]:
    """The metric lines of generations ≤ up_to; a line cut short by a crash ends the log."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record.get("generation", up_to + 1) <= up_to:
            kept.append(line)
    return kept


def _progress_bar(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="gen", dynamic_ncols=True, file=sys.stderr)


def _record(generation: int, info: dict) -> dict:
    return {"generation": generation, **{k: float(v) for k, v in info.items()}}


def _report(bar, echo, record: dict, metric: str, evaluated: bool, start: float, done: int) -> None:
    rate = done / max(time.perf_counter() - start, 1e-9)
    if bar is not None:
        postfix = {"mean": f"{record['fitness_mean']:.4g}", "max": f"{record['fitness_max']:.4g}"}
        if metric in record:
            postfix[metric] = f"{record[metric]:.4g}"
        bar.set_postfix(postfix, refresh=False)
        bar.update(1)
    elif evaluated:
        echo(
            f"generation {record['generation']}: fitness mean {record['fitness_mean']:.4g} "
            f"max {record['fitness_max']:.4g}, {metric} {record.get(metric, float('nan')):.4g}, {rate:.1f} gen/s"
        )


def _plot(run_dir: Path, echo) -> None:
    from .plotting import plot_run

    try:
        plot_run(run_dir)
    except ImportError as exc:
        echo(f"no plot: {exc}")

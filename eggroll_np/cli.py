"""The `eggroll-np` command line (also `python -m eggroll_np`).

    eggroll-np train                      the default task: an MLP on scikit-learn's digits
    eggroll-np train cartpole             Gymnasium's CartPole-v1, one environment per member
    eggroll-np train rosenbrock --dim 1000
    eggroll-np train --resume RUN_DIR     continue a run from its last checkpoint
    eggroll-np plot RUN_DIR               redraw a run's learning curves
    eggroll-np tasks                      list the tasks and their settings

Every setting of the strategy that a run can hold in JSON has a flag (a leaf policy, a custom shaping or
schedule needs the Python API); a task supplies its own defaults and options (see `tasks`). Bad values are
refused with a message before anything runs or is written.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import NAN_POLICIES, checkpoint
from ._array_api import BACKENDS
from ._checks import integer, real
from .noise import NOISE_KINDS
from .optim import OPTIMIZERS
from .shaping import SHAPINGS
from .tasks import TASKS, task_class
from .training import CHECKPOINT, DEFAULTS, DTYPES, LR_SCHEDULES, run_config, train

__all__ = ["main"]

RESUME_MAY_CHANGE = {"generations", "quiet", "progress"}


def _default_note(dest: str) -> str:
    """' (default X)' where every task starts from X, else each task's default ('digits default 64; ...')."""
    values = {task: run_config(task, {}).get(dest) for task in TASKS}
    values = {task: value for task, value in values.items() if value is not None}
    if len(values) == len(TASKS) and len(set(map(repr, values.values()))) == 1:
        return f" (default {next(iter(values.values()))})"
    return " (" + "; ".join(f"{task} default {value}" for task, value in values.items()) + ")"


def _checked(dest: str, check: Callable, **bounds) -> Callable[[str], Any]:
    """An argparse type: the text as an int (check=_checks.integer) or a float (_checks.real), then checked by
    `check` with `bounds` under the name of its config key `dest`."""
    parse, what = (int, "an integer") if check is integer else (float, "a number")

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        try:
            return check(dest, value, **bounds)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _flag(group, *flags: str, help: str, dest: str | None = None, note: bool = True, **kwargs) -> None:
    """Add a flag storing config key `dest` (by default the first flag's name), its help ending in its defaults
    (unless `note` is False); `check` with `minimum` (and `above`) makes a checked number of it."""
    dest = dest or flags[0][2:].replace("-", "_")
    if "check" in kwargs:
        bounds = {k: kwargs.pop(k) for k in ("minimum", "above") if k in kwargs}
        kwargs["type"] = _checked(dest, kwargs.pop("check"), **bounds)
    group.add_argument(*flags, dest=dest, help=help + (_default_note(dest) if note else ""), **kwargs)


def _strategy_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every task shares; their defaults are None so a task's own defaults apply."""
    group = parser.add_argument_group("strategy (defaults depend on the task: see `eggroll-np tasks`)")
    population = "population size N (even: antithetic pairs)"
    _flag(group, "--population", "--population-size", dest="population_size", check=integer, minimum=1, help=population)
    _flag(group, "--sigma", check=real, minimum=0.0, above=True, help="perturbation scale σ")
    _flag(group, "--rank", check=integer, minimum=1, help="rank r of each matrix perturbation")
    _flag(group, "--optimizer", choices=list(OPTIMIZERS), help="optimizer of the ES gradient")
    _flag(group, "--lr", dest="learning_rate", check=real, minimum=0.0, help="learning rate")
    _flag(group, "--lr-schedule", choices=list(LR_SCHEDULES), help="learning-rate schedule")
    decay = "generations the cosine schedule takes (default: --generations of the new run)"
    _flag(group, "--lr-decay-generations", check=integer, minimum=1, note=False, help=decay)
    _flag(group, "--momentum", check=real, minimum=0.0, help="SGD momentum")
    _flag(group, "--weight-decay", check=real, minimum=0.0, help="AdamW decoupled weight decay")
    _flag(group, "--shaping", choices=list(SHAPINGS), help="fitness shaping")
    _flag(group, "--group-size", check=integer, minimum=0, help="group size of the group shapings")
    _flag(group, "--noise-reuse", check=integer, minimum=0, help="keep noise for k generations (0: never resample)")
    _flag(group, "--noise", choices=list(NOISE_KINDS), help="distribution of the low-rank factors")
    antithetic = "pair member 2k (+ε) with 2k+1 (−ε)"
    _flag(group, "--antithetic", action=argparse.BooleanOptionalAction, default=None, help=antithetic)
    _flag(group, "--nan-policy", choices=list(NAN_POLICIES), help="what non-finite fitness does")
    _flag(group, "--generations", check=integer, minimum=1, help="generations in total (on --resume too)")
    _flag(group, "--seed", check=integer, minimum=0, help="seed of the noise, the data order and the init")
    run = parser.add_argument_group("run")
    _flag(run, "--backend", choices=list(BACKENDS), help="array library")
    _flag(run, "--dtype", choices=DTYPES, help="parameter dtype")
    run.add_argument("--out", type=Path, help="run directory (default runs/TASK-TIMESTAMP)")
    _flag(run, "--eval-every", check=integer, minimum=1, help="evaluate the mean params every k generations")
    _flag(run, "--checkpoint-every", check=integer, minimum=1, help="checkpoint every k generations")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    run.add_argument("--quiet", action="store_true", default=None, help="print only the final result")
    progress = "progress bar (default: when stderr is a terminal)"
    run.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=progress)


def _task_options() -> dict:
    """Every task's options by name: [(task, Option), ...] for the tasks that have it (one flag serves all)."""
    options: dict = {}
    for name in TASKS:
        for option in task_class(name).options:
            options.setdefault(option.name, []).append((name, option))
    return options


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eggroll-np", description="EGGROLL evolution strategies.")
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train a task")
    train_parser.add_argument("task", nargs="?", choices=list(TASKS), help="the task (default digits)")
    _strategy_flags(train_parser)
    group = train_parser.add_argument_group("task options")
    for name, owners in _task_options().items():
        _flag(group, "--" + name.replace("_", "-"), type=owners[0][1].type, help=owners[0][1].help)
    plot_parser = commands.add_parser("plot", help="draw a run's learning curves into RUN_DIR/curves.png")
    plot_parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    commands.add_parser("tasks", help="list the tasks and their default settings")
    return parser


def _given(args: argparse.Namespace) -> dict:
    skip = {"command", "task", "resume", "out"}
    return {k: v for k, v in vars(args).items() if v is not None and k not in skip}


def _new_config(args: argparse.Namespace, task: str) -> dict:
    foreign = sorted(set(_given(args)) & set(_task_options()) - {o.name for o in task_class(task).options})
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ValueError(f"{flags} is not an option of the {task} task; see `eggroll-np tasks`")
    return run_config(task, {k: v for k, v in _given(args).items() if k not in {"quiet", "progress"}})


def _resume_config(args: argparse.Namespace) -> dict:
    positional = [name for name in ("task", "out") if getattr(args, name) is not None]
    changed = positional + sorted(set(_given(args)) - RESUME_MAY_CHANGE)
    if changed:
        raise ValueError(
            f"--resume continues a run with its own settings; drop {', '.join(changed)} "
            "(only --generations, --quiet and --progress may be given)"
        )
    metadata = checkpoint.read_metadata(args.resume / CHECKPOINT).get("metadata", {})
    config = metadata.get("config")
    if not isinstance(config, dict) or config.get("task") not in TASKS:
        raise checkpoint.CheckpointError(f"{str(args.resume / CHECKPOINT)!r} holds no run configuration")
    config = dict(config)
    if args.generations is not None:
        config["generations"] = args.generations
    return config


def _train(args: argparse.Namespace) -> int:
    if args.resume is not None:
        config = _resume_config(args)
        run_dir = args.resume
    else:
        task = args.task or "digits"
        config = _new_config(args, task)
        run_dir = args.out or Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ValueError(f"{str(run_dir)!r} already holds files; pass --resume {run_dir} or another --out")
    quiet = bool(args.quiet)
    echo = (lambda text: None) if quiet else print
    summary = train(
        config, run_dir, resume=args.resume is not None, progress=False if quiet else args.progress, echo=echo
    )
    metric = summary["metric"]
    print(
        f"{config['task']}: {metric} {summary.get(metric, float('nan')):.4f} after {summary['generations']} "
        f"generations ({summary['seconds']:.1f} s, {summary['generations_per_second'] or 0:.1f} gen/s); "
        f"run directory {run_dir}"
    )
    return 0


def _tasks() -> int:
    for name in TASKS:
        cls = task_class(name)
        options = ", ".join(f"--{o.name.replace('_', '-')} {o.default}" for o in cls.options)
        print(f"{name}: {cls.summary}\n  defaults: {json.dumps(cls.defaults)}\n  options: {options}")
    print(f"every task, where its own defaults and the flags set nothing: {json.dumps(DEFAULTS)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `eggroll-np`; returns the exit status (2 for bad input)."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "plot":
            from .plotting import plot_run

            print(plot_run(args.run_dir))
            return 0
        return _tasks()
    except (ValueError, TypeError, ImportError, FileNotFoundError) as exc:
        parser.exit(2, f"eggroll-np: error: {exc}\n")
    return 2

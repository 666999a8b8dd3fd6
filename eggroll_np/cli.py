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
import math
import sys
import time
from pathlib import Path

from . import checkpoint
from .noise import NOISE_KINDS
from .shaping import SHAPINGS
from .strategy import NAN_POLICIES
from .tasks import TASKS, task_class
from .training import BACKENDS, CHECKPOINT, DTYPES, LR_SCHEDULES, OPTIMIZERS, make_strategy, train

__all__ = ["main"]

RESUME_MAY_CHANGE = {"generations", "quiet", "progress"}


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} must be at least 0")
    return value


def _number(minimum: float, inclusive: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            bound = f"≥ {minimum}" if inclusive else f"> {minimum}"
            raise argparse.ArgumentTypeError(f"{text} must be a finite number {bound}")
        return value

    return parse


def _strategy_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every task shares; their defaults are None so a task's own defaults apply."""
    group = parser.add_argument_group("strategy (defaults depend on the task: see `eggroll-np tasks`)")
    group.add_argument("--population", type=_positive_int, help="population size N (even: antithetic pairs)")
    group.add_argument("--sigma", type=_number(0.0, False), help="perturbation scale σ")
    group.add_argument("--rank", type=_positive_int, help="rank r of each matrix perturbation")
    group.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer of the ES gradient")
    group.add_argument("--lr", dest="learning_rate", type=_number(0.0, True), help="learning rate")
    group.add_argument("--lr-schedule", choices=LR_SCHEDULES, help="learning-rate schedule")
    group.add_argument(
        "--lr-decay-generations",
        type=_positive_int,
        help="generations the cosine schedule takes (default: --generations of the new run)",
    )
    group.add_argument("--momentum", type=_number(0.0, True), help="SGD momentum (default 0)")
    group.add_argument("--weight-decay", type=_number(0.0, True), help="AdamW decoupled weight decay (default 0.01)")
    group.add_argument("--shaping", choices=sorted(SHAPINGS), help="fitness shaping")
    group.add_argument("--group-size", type=_non_negative_int, help="group size of the group shapings")
    group.add_argument("--noise-reuse", type=_non_negative_int, help="keep noise for k generations (0: never resample)")
    group.add_argument("--noise", choices=NOISE_KINDS, help="distribution of the low-rank factors (default gaussian)")
    group.add_argument(
        "--antithetic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pair member 2k (+ε) with 2k+1 (−ε) (default: on)",
    )
    group.add_argument("--nan-policy", choices=NAN_POLICIES, help="non-finite fitness: raise (default) or worst")
    group.add_argument("--generations", type=_positive_int, help="generations in total (on --resume too)")
    group.add_argument("--seed", type=_non_negative_int, help="seed of the noise, the data order and the init")
    run = parser.add_argument_group("run")
    run.add_argument("--backend", choices=BACKENDS, help="array library (default numpy)")
    run.add_argument("--dtype", choices=DTYPES, help="parameter dtype (default float32)")
    run.add_argument("--out", type=Path, help="run directory (default runs/TASK-TIMESTAMP)")
    run.add_argument("--eval-every", type=_positive_int, help="evaluate the mean params every k generations")
    run.add_argument("--checkpoint-every", type=_positive_int, help="checkpoint every k generations (default 100)")
    run.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    run.add_argument("--quiet", action="store_true", default=None, help="print only the final result")
    run.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: when stderr is a terminal)",
    )


COMMON_DEFAULTS = dict(
    lr_schedule="constant",
    momentum=0.0,
    noise="gaussian",
    antithetic=True,
    nan_policy="raise",
    weight_decay=0.01,
    group_size=0,
    noise_reuse=1,
    seed=0,
    backend="numpy",
    dtype="float32",
    checkpoint_every=100,
)


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
        defaults = "; ".join(f"{task} default {option.default}" for task, option in owners)
        group.add_argument(
            "--" + name.replace("_", "-"), dest=name, type=owners[0][1].type, help=f"{owners[0][1].help} ({defaults})"
        )
    plot_parser = commands.add_parser("plot", help="draw a run's learning curves into RUN_DIR/curves.png")
    plot_parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    commands.add_parser("tasks", help="list the tasks and their default settings")
    return parser


def _given(args: argparse.Namespace) -> dict:
    skip = {"command", "task", "resume", "out"}
    return {k: v for k, v in vars(args).items() if v is not None and k not in skip}


def _new_config(args: argparse.Namespace, task: str) -> dict:
    cls = task_class(task)
    foreign = sorted(set(_given(args)) & set(_task_options()) - {o.name for o in cls.options})
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ValueError(f"{flags} is not an option of the {task} task; see `eggroll-np tasks`")
    config = {"task": task, **COMMON_DEFAULTS, **cls.defaults}
    config.update({o.name: o.default for o in cls.options})
    config.update({k: v for k, v in _given(args).items() if k not in {"quiet", "progress"}})
    config["eval_every"] = min(config["eval_every"], config["generations"])
    config.setdefault("lr_decay_generations", config["generations"])
    make_strategy(config)  # settings the flags cannot check alone (odd population, group size, ...)
    return config


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

"""The `eggroll-np` command line (also `python -m eggroll_np`).

    eggroll-np train                      the default task: an MLP on scikit-learn's digits
    eggroll-np train cartpole             Gymnasium's CartPole-v1, one environment per member
    eggroll-np train rosenbrock           a black-box function (50 dimensions by default)
    eggroll-np train --resume RUN_DIR     continue a run from its last checkpoint
    eggroll-np plot RUN_DIR               redraw a run's learning curves
    eggroll-np tasks                      list the tasks, their goals and their default settings
    eggroll-np --version                  the package's version

Every setting of the strategy that a run can hold in JSON has a flag (a leaf policy, a custom shaping or
schedule needs the Python API); a task supplies its own defaults and options (see `tasks`). Bad values are
refused with a message before anything runs or is written.

Every failure is one line on stderr, without a traceback unless --debug is given, and an exit status:
0 done; 1 the run failed (an OS error such as a full disk, out of memory, non-finite fitness, an unexpected
error); 2 refused before the run started (bad usage or values, an --out that holds something else, a run
that cannot be resumed as asked, a damaged checkpoint, a missing optional package); 130 interrupted by
Ctrl-C, 143 by SIGTERM, after checkpointing the last completed generation; 141, silently, when the reader of
stdout went away (`eggroll-np tasks | head`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import NAN_POLICIES, __version__
from ._array_api import BACKENDS
from ._checks import integer, real
from ._files import is_temporary
from .noise import NOISE_KINDS
from .optim import OPTIMIZERS
from .shaping import SHAPINGS
from .tasks import TASKS, task_class
from .training import (
    CHECKPOINT,
    CONFIG,
    DEFAULTS,
    DTYPES,
    LR_SCHEDULES,
    Run,
    finish_run,
    open_run,
    run_config,
    run_generations,
    saved_config,
)

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "EXIT_USAGE", "main"]

# How a run is computed, not what: kept out of its config, so a resumed run may change them.
WORKER_FLAGS = ("workers", "gpus_per_worker", "ray_address")
RESUME_MAY_CHANGE = {"generations", "quiet", "progress", *WORKER_FLAGS}
EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 1, 2, 130, 143
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left


class CommandFailure(Exception):
    """A failure reported as the one line `message` with exit status `status`."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered like Ctrl-C so that the run checkpoints before it stops."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit status 2)."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


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
    workers = "evaluate on K Ray workers, each on --backend (this process then computes in NumPy; default: none)"
    run.add_argument("--workers", type=_checked("workers", integer, minimum=1), metavar="K", help=workers)
    gpus = "GPUs each worker asks Ray for, in [0, 1] (0.5: two workers per GPU; default 0; with --workers)"
    run.add_argument("--gpus-per-worker", type=_checked("gpus_per_worker", real, minimum=0, maximum=1), help=gpus)
    address = 'the Ray cluster: "auto" or HOST:6379 (default: a local Ray instance; with --workers)'
    run.add_argument("--ray-address", metavar="ADDRESS", help=address)


def _task_options() -> dict:
    """Every task's options by name: [(task, Option), ...] for the tasks that have it (one flag serves all)."""
    options: dict = {}
    for name in TASKS:
        for option in task_class(name).options:
            options.setdefault(option.name, []).append((name, option))
    return options


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="eggroll-np", description="EGGROLL evolution strategies.")
    debug = "show the traceback of a failure instead of its one-line message"
    parser.add_argument("--debug", action="store_true", help=debug)
    parser.add_argument("--version", action="version", version=f"eggroll-np {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", parents=[common], help="train a task")
    train_parser.add_argument("task", nargs="?", choices=list(TASKS), help="the task (default digits)")
    _strategy_flags(train_parser)
    group = train_parser.add_argument_group("task options")
    for name, owners in _task_options().items():
        _flag(group, "--" + name.replace("_", "-"), type=owners[0][1].type, help=owners[0][1].help)
    plot_help = "draw a run's learning curves into RUN_DIR/curves.png"
    plot_parser = commands.add_parser("plot", parents=[common], help=plot_help)
    plot_parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    commands.add_parser("tasks", parents=[common], help="list the tasks and their default settings")
    return parser


def _given(args: argparse.Namespace) -> dict:
    skip = {"command", "task", "resume", "out", "debug"}
    return {k: v for k, v in vars(args).items() if v is not None and k not in skip}


def _new_config(args: argparse.Namespace, task: str) -> dict:
    foreign = sorted(set(_given(args)) & set(_task_options()) - {o.name for o in task_class(task).options})
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ValueError(f"{flags} is not an option of the {task} task; see `eggroll-np tasks`")
    return run_config(task, {k: v for k, v in _given(args).items() if k not in {"quiet", "progress", *WORKER_FLAGS}})


def _resume_config(args: argparse.Namespace) -> dict:
    """The configuration of the run in --resume RUN_DIR: its config.json (or, if that is gone, the one in its
    checkpoint), with the new --generations."""
    positional = [name for name in ("task", "out") if getattr(args, name) is not None]
    changed = positional + sorted(set(_given(args)) - RESUME_MAY_CHANGE)
    if changed:
        raise ValueError(
            f"--resume continues a run with its own settings; drop {', '.join(changed)} "
            "(only --generations, --quiet, --progress and --workers, --gpus-per-worker, --ray-address may be given)"
        )
    run_dir = args.resume
    if not run_dir.is_dir():
        raise ValueError(f"--resume {run_dir}: no such run directory")
    config = saved_config(run_dir)
    if config is None:
        raise ValueError(f"{str(run_dir)!r} holds no run (no {CONFIG} or {CHECKPOINT}); start one with --out")
    if not isinstance(config, dict) or config.get("task") not in TASKS:
        raise ValueError(f"{str(run_dir)!r} holds no run configuration of a known task")
    if args.generations is not None:
        config["generations"] = args.generations
    return config


def _new_run_dir(args: argparse.Namespace, task: str) -> Path:
    """--out, or runs/TASK-TIMESTAMP; refused if it holds a run or other files (stale temporaries do not count)."""
    run_dir = args.out or Path("runs") / f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file; give a directory (new or empty)")
    if (run_dir / CONFIG).exists():
        raise ValueError(f"{str(run_dir)!r} holds a run; continue it with --resume {run_dir}, or choose another --out")
    if run_dir.exists() and any(not is_temporary(entry) for entry in run_dir.iterdir()):
        raise ValueError(f"{str(run_dir)!r} already holds files that are not a run; choose another --out")
    return run_dir


def _train(args: argparse.Namespace) -> int:
    if args.workers is None:
        alone = [f"--{name.replace('_', '-')}" for name in WORKER_FLAGS[1:] if getattr(args, name) is not None]
        if alone:
            raise ValueError(f"{alone[0]} is a setting of the workers: give it with --workers K")
    resume = args.resume is not None
    if resume:
        config, run_dir = _resume_config(args), args.resume
    else:
        task = args.task or "digits"
        config = _new_config(args, task)
        run_dir = _new_run_dir(args, task)
    quiet = bool(args.quiet)
    echo = (lambda text: None) if quiet else print
    if resume and not (run_dir / CHECKPOINT).exists():
        echo(f"{run_dir} has no checkpoint yet: the run starts again from generation 0")
    workers = {name: getattr(args, name) for name in WORKER_FLAGS if getattr(args, name) is not None}
    try:
        run = open_run(config, run_dir, resume, **workers)
    except (ValueError, TypeError, ImportError) as exc:
        raise CommandFailure(str(exc), EXIT_USAGE) from exc
    with run:
        return _run_and_finish(run, run_dir, args.progress, quiet, echo)


def _run_and_finish(run: Run, run_dir: Path, progress: bool | None, quiet: bool, echo) -> int:
    """Run the opened run's generations and finish it, reporting an interrupt or a failure as a CommandFailure."""
    try:
        run_generations(run, progress=False if quiet else progress, echo=echo)
    except KeyboardInterrupt as exc:
        status = EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED
        if run.saved_at == run.state.generation:
            raise CommandFailure(
                f"interrupted after generation {run.state.generation}, which is checkpointed; continue with "
                f"eggroll-np train --resume {run_dir}",
                status,
            ) from exc
        last = (
            "none yet: a resume starts from generation 0" if run.saved_at is None else f"of generation {run.saved_at}"
        )
        raise CommandFailure(f"interrupted; the last checkpoint is {last}", status) from exc
    except Exception as exc:
        continues = f"eggroll-np train --resume {run_dir} continues from generation {run.saved_at or 0}"
        raise CommandFailure(f"{_one_line(exc)[1]}; {continues}", EXIT_FAILED) from exc
    summary = finish_run(run, warn=lambda text: print(f"eggroll-np: warning: {text}", file=sys.stderr))
    print(_final_line(summary, run_dir))
    return 0


def _final_line(summary: dict, run_dir: Path) -> str:
    """`TASK: METRIC VALUE after G generations (S s, R gen/s), best fitness B at generation T; run directory D`."""
    metric, best = summary["metric"], summary["best_fitness"]
    found = "no generation" if best is None else f"{best:.4g} at generation {summary['best_generation']}"
    return (
        f"{summary['task']}: {metric} {summary.get(metric, float('nan')):.4f} after {summary['generations']} "
        f"generations ({summary['seconds']:.1f} s, {summary['generations_per_second'] or 0:.1f} gen/s), "
        f"best fitness {found}; run directory {run_dir}"
    )


# The settings `tasks` lists for every task, its own defaults or the common ones, before the task's other defaults.
KEY_SETTINGS = ("population_size", "sigma", "optimizer", "learning_rate", "lr_schedule", "shaping", "generations")


def _setting_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _tasks() -> int:
    """Each task: its summary, its metric and goal, its key settings and other defaults, its options; then the
    common defaults."""
    for name in TASKS:
        cls, config = task_class(name), run_config(name, {})
        goal = "none" if cls.metric_goal is None else f"{cls.metric_goal:g}"
        keys = [*KEY_SETTINGS, *(key for key in cls.defaults if key not in KEY_SETTINGS)]
        settings = ", ".join(f"{key} {_setting_text(config[key])}" for key in keys)
        options = ", ".join(
            f"--{o.name.replace('_', '-')} {o.default if o.default != '' else repr('')}" for o in cls.options
        )
        print(
            f"{name}: {cls.summary}\n  metric: {cls.metric}, goal {goal}\n  defaults: {settings}\n  options: {options}"
        )
    print(f"every task, where its own defaults and the flags set nothing: {json.dumps(DEFAULTS)}")
    return 0


def _plot(args: argparse.Namespace) -> int:
    from .plotting import plot_run

    print(plot_run(args.run_dir))
    return 0


_COMMANDS = {"train": _train, "plot": _plot, "tasks": lambda args: _tasks()}


def _one_line(exc: BaseException) -> tuple[int, str]:
    """(exit status, message) of a failure."""
    if isinstance(exc, CommandFailure):
        status, text = exc.status, str(exc)
    elif isinstance(exc, KeyboardInterrupt):
        status, text = (EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_INTERRUPTED), "interrupted"
    elif isinstance(exc, ValueError | TypeError | ImportError | FileNotFoundError):
        status, text = EXIT_USAGE, str(exc)
    elif isinstance(exc, OSError):
        status, text = EXIT_FAILED, str(exc)
    elif isinstance(exc, MemoryError):
        status, text = EXIT_FAILED, f"out of memory{': ' + str(exc) if str(exc) else ''}"
    else:
        status, text = EXIT_FAILED, f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines() or [type(exc).__name__]
    return status, lines[0] + (" (the rest with --debug)" if len(lines) > 1 else "")


def _deliver_sigterm_as_interrupt():
    """Make SIGTERM raise `Terminated` in the main thread; returns the handler it replaced (None elsewhere)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum, frame):
        raise Terminated

    return signal.signal(signal.SIGTERM, terminate)


def _warning_line(message, category, filename, lineno, line=None) -> str:
    return f"eggroll-np: warning: {category.__name__}: {message} ({filename}:{lineno})\n"


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `eggroll-np`; returns the exit status (see the module docstring). Warnings print as one
    line each."""
    parser = _parser()
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exit_:  # --help, or a usage error argparse has reported
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    previous, formatwarning = _deliver_sigterm_as_interrupt(), warnings.formatwarning
    warnings.formatwarning = _warning_line
    try:
        status = _COMMANDS[args.command](args)
        sys.stdout.flush()  # here, so that a reader gone away shows as BrokenPipeError below, not at exit
        return status
    except BrokenPipeError:  # `eggroll-np tasks | head`: the reader closed stdout, which is no failure
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (Exception, KeyboardInterrupt) as exc:
        if args.debug:
            raise
        status, message = _one_line(exc)
        print(f"eggroll-np: {'error: ' if status in (EXIT_FAILED, EXIT_USAGE) else ''}{message}", file=sys.stderr)
        return status
    finally:
        warnings.formatwarning = formatwarning
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

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

Everything a generation computes is a function of (config, state, generation), so resuming from a
checkpoint at generation k and running to 2k gives the same bits as running to 2k at once.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

from . import checkpoint
from ._array_api import has_dtype
from .optim import adam, adamw, sgd
from .schedules import constant, cosine
from .strategy import EGGROLL
from .tasks import task_class

__all__ = ["BACKENDS", "DTYPES", "LR_SCHEDULES", "OPTIMIZERS", "backend_namespace", "make_strategy", "train"]

BACKENDS = ("numpy", "cupy", "jax")
DTYPES = ("float32", "float64")
OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("constant", "cosine")
COSINE_FLOOR = 0.05  # the cosine schedule ends at 5 % of the learning rate
CONFIG, METRICS, CHECKPOINT, SUMMARY = "config.json", "metrics.jsonl", "checkpoint.npz", "summary.json"


def backend_namespace(name: str):
    """(xp, device) of a backend name: NumPy on the CPU, CuPy on the current GPU, JAX's default device."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp, "cpu"
    if name == "cupy":
        try:
            import array_api_compat.cupy as xp
            import cupy
        except ImportError:
            raise ImportError("--backend cupy needs CuPy: pip install 'eggroll-np[cuda12]' (or [cuda13])") from None
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except cupy.cuda.runtime.CUDARuntimeError as exc:
            count, reason = 0, f" ({exc})"
        else:
            reason = ""
        if count < 1:
            raise ValueError(f"--backend cupy needs a CUDA device, and CuPy finds none{reason}; use --backend numpy")
        return xp, cupy.cuda.Device()
    if name == "jax":
        try:
            import jax
            import jax.numpy as xp
        except ImportError:
            raise ImportError("--backend jax needs JAX: pip install 'jax[cpu]' (or a CUDA build)") from None
        return xp, jax.devices()[0]
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def _learning_rate(config: dict):
    """The learning-rate schedule: constant, or cosine from the rate to 5 % of it over lr_decay_generations
    (fixed when the run starts, so extending a run on resume continues at the final rate)."""
    if config["lr_schedule"] == "constant":
        return constant(config["learning_rate"])
    if config["lr_schedule"] == "cosine":
        return cosine(config["learning_rate"], config["lr_decay_generations"], COSINE_FLOOR)
    raise ValueError(f"unknown lr_schedule {config['lr_schedule']!r}; choose one of {', '.join(LR_SCHEDULES)}")


def make_strategy(config: dict) -> EGGROLL:
    """The EGGROLL strategy a config describes."""
    rate = _learning_rate(config)
    optimizers = {
        "adam": lambda: adam(rate),
        "adamw": lambda: adamw(rate, weight_decay=config["weight_decay"]),
        "sgd": lambda: sgd(rate, momentum=config["momentum"]),
    }
    if config["optimizer"] not in optimizers:
        raise ValueError(f"unknown optimizer {config['optimizer']!r}; choose one of {', '.join(OPTIMIZERS)}")
    return EGGROLL(
        population_size=config["population"],
        sigma=config["sigma"],
        rank=config["rank"],
        optimizer=optimizers[config["optimizer"]](),
        shaping=config["shaping"],
        group_size=config["group_size"],
        noise_reuse=config["noise_reuse"],
        noise=config["noise"],
        antithetic=config["antithetic"],
        maximize=config["maximize"],
        seed=config["seed"],
        nan_policy=config["nan_policy"],
    )


def _read_metrics(path: Path, up_to: int) -> list[str]:
    """The metric lines of generations ≤ up_to (a crash may have logged generations after the checkpoint)."""
    if not path.exists():
        return []
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut short by a crash ends the log
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


def train(
    config: dict,
    run_dir: Path,
    *,
    resume: bool = False,
    progress: bool | None = None,
    echo: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) the training a config describes in `run_dir`; returns the summary.

    progress: a tqdm bar on stderr (None: only when stderr is a terminal); without it, one line per
    evaluation goes to `echo`. The state is checkpointed every `checkpoint_every` generations and at the end.
    """
    run_dir = Path(run_dir)
    xp, device = backend_namespace(config["backend"])
    if not has_dtype(xp, config["dtype"], device):
        raise ValueError(
            f"--backend {config['backend']} has no {config['dtype']} on {device} (JAX needs JAX_ENABLE_X64=1 for "
            "64-bit types); use --dtype float32"
        )
    dtype = getattr(xp, config["dtype"])
    task = task_class(config["task"])(config, xp, device, dtype)
    es = make_strategy(config)
    metrics_path = run_dir / METRICS
    if resume:
        state = checkpoint.load(run_dir / CHECKPOINT, xp=xp, device=device)
        kept = _read_metrics(metrics_path, state.generation)
        metrics_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        state = es.init(task.init_params(config["seed"]))
        start_record = {"generation": 0, **task.evaluate(state.params)}
        metrics_path.write_text(json.dumps(start_record) + "\n", encoding="utf-8")
    (run_dir / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    total = config["generations"]
    show_bar = sys.stderr.isatty() if progress is None else progress
    bar = _progress_bar(total, state.generation, show_bar)
    start, first = time.perf_counter(), state.generation
    record = {"generation": state.generation}
    if state.generation >= total:  # nothing left to run: report the state as it is
        record.update(task.evaluate(state.params))
    with metrics_path.open("a", encoding="utf-8") as log:
        for generation in range(state.generation, total):
            pop = es.ask(state)
            state, info = es.tell(state, pop, task.fitness(pop, generation))
            record = _record(state.generation, info)
            evaluate = state.generation % config["eval_every"] == 0 or state.generation == total
            if evaluate:
                record.update(task.evaluate(state.params))
            log.write(json.dumps(record) + "\n")
            log.flush()
            if state.generation % config["checkpoint_every"] == 0 or state.generation == total:
                checkpoint.save(run_dir / CHECKPOINT, state, {"config": config})
            _report(bar, echo, record, task.metric, evaluate, start, state.generation - first)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - start
    summary = {
        "task": config["task"],
        "generations": state.generation,
        "metric": task.metric,
        "metric_goal": task.metric_goal,
        **{k: v for k, v in record.items() if k != "generation"},
        "seconds": elapsed,
        "generations_per_second": (state.generation - first) / elapsed if elapsed > 0 else None,
    }
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _plot(run_dir, echo)
    return summary


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

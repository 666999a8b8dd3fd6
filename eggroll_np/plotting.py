"""Learning curves of a run directory as a PNG: the population's fitness per generation (its mean, its best member,
and the best so far) and the numeric evaluation metrics over the generations that evaluated (text, such as a
generated sample, is not drawn). The best member is the highest raw fitness, or the lowest where the run minimizes
(config.json's "maximize"). An axis whose values are all positive and span two decades or more is logarithmic (a
minimized function falling towards 0). matplotlib is drawn through its Agg canvas, with no pyplot state and no display
needed. The PNG is replaced atomically: a plot that cannot be written (a full disk) raises OSError and leaves the
previous file, or none, never a part of one."""

from __future__ import annotations

import json
import math
from pathlib import Path

from . import checkpoint
from ._files import replace_atomically
from .best import improves

__all__ = ["plot_run"]

_NOT_METRICS = {"generation", "fitness_mean", "fitness_max", "fitness_min", "fitness_best", "best_index", "grad_norm"}
LOG_SCALE_SPAN = 100.0  # max / min of an axis's values from which it is drawn on a log scale


def _records(metrics: Path) -> list[dict]:
    if not metrics.exists():
        raise FileNotFoundError(f"no metrics log at {str(metrics)!r}: is this a run directory?")
    records = []
    for line in metrics.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    if not records:
        raise ValueError(f"{str(metrics)!r} holds no generations yet")
    return records


def _maximizes(run_dir: Path) -> bool:
    """Whether the run maximizes its fitness: "maximize" of its config.json, or where that file is gone of the
    configuration in its checkpoint; EGGROLL's default (True) where neither says."""
    if (run_dir / "config.json").is_file():
        config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    elif (run_dir / "checkpoint.npz").is_file():
        config = checkpoint.read_metadata(run_dir / "checkpoint.npz").get("metadata", {}).get("config", {})
    else:
        config = {}
    return bool(config.get("maximize", True)) if isinstance(config, dict) else True


def _running_best(values: list[float], maximize: bool) -> list[float]:
    """The best finite value up to each position (NaN before the first), as summary.json's best_fitness."""
    best, running = None, []
    for value in values:
        if improves(value, best, maximize):
            best = value
        running.append(math.nan if best is None else best)
    return running


def _scale_for(axes, values: list[float]) -> None:
    """A log scale where every finite value is > 0 and max ≥ LOG_SCALE_SPAN · min."""
    finite = [v for v in values if math.isfinite(v)]
    if finite and min(finite) > 0 and max(finite) >= LOG_SCALE_SPAN * min(finite):
        axes.set_yscale("log")


def plot_run(run_dir, output: str = "curves.png") -> Path:
    """Draw run_dir/metrics.jsonl into run_dir/`output`; returns the PNG's path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'eggroll-np[examples]'") from None
    run_dir = Path(run_dir)
    records = _records(run_dir / "metrics.jsonl")
    maximize = _maximizes(run_dir)
    numeric = {k for r in records for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    metric_names = sorted(numeric - _NOT_METRICS)
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    fitness_axes, metric_axes = figure.subplots(1, 2)
    told = [r for r in records if "fitness_mean" in r]
    generations = [r["generation"] for r in told]
    best = [r["fitness_max" if maximize else "fitness_min"] for r in told]
    curves = {
        "mean": [r["fitness_mean"] for r in told],
        "best member": best,
        "best so far": _running_best(best, maximize),
    }
    for label, values in curves.items():
        fitness_axes.plot(generations, values, label=label, linestyle="--" if label == "best so far" else "-")
    goal = "maximized" if maximize else "minimized"
    fitness_axes.set(xlabel="generation", ylabel="raw fitness", title=f"population fitness ({goal})")
    _scale_for(fitness_axes, [v for values in curves.values() for v in values])
    fitness_axes.legend()
    drawn = []
    for name in metric_names:
        points = [(r["generation"], r[name]) for r in records if name in r]
        metric_axes.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name.replace("_", " "))
        drawn += [value for _, value in points]
    metric_axes.set(xlabel="generation", title="evaluation of the mean parameters")
    _scale_for(metric_axes, drawn)
    if metric_names:
        metric_axes.legend()
    return replace_atomically(run_dir / output, lambda file: figure.savefig(file, format="png", dpi=100))

"""Learning curves of a run directory as a PNG: fitness (mean and max per generation) and the numeric evaluation metrics
over the generations that evaluated (text, such as a generated sample, is not drawn). matplotlib is drawn through its
Agg canvas, with no pyplot state and no display needed. The PNG is replaced atomically: a plot that cannot be written (a
full disk) raises OSError and leaves the previous file, or none, never a part of one."""

from __future__ import annotations

import json
from pathlib import Path

from ._files import replace_atomically

__all__ = ["plot_run"]

_FITNESS = ("fitness_mean", "fitness_max")
_NOT_METRICS = {"generation", "fitness_mean", "fitness_max", "fitness_min", "grad_norm"}


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


def plot_run(run_dir, output: str = "curves.png") -> Path:
    """Draw run_dir/metrics.jsonl into run_dir/`output`; returns the PNG's path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'eggroll-np[examples]'") from None
    run_dir = Path(run_dir)
    records = _records(run_dir / "metrics.jsonl")
    numeric = {k for r in records for k, v in r.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    metric_names = sorted(numeric - _NOT_METRICS)
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    fitness_axes, metric_axes = figure.subplots(1, 2)
    told = [r for r in records if "fitness_mean" in r]
    for name in _FITNESS:
        fitness_axes.plot([r["generation"] for r in told], [r[name] for r in told], label=name.replace("_", " "))
    fitness_axes.set(xlabel="generation", ylabel="fitness", title="population fitness")
    fitness_axes.legend()
    for name in metric_names:
        points = [(r["generation"], r[name]) for r in records if name in r]
        metric_axes.plot(*zip(*points, strict=True), marker="o", markersize=3, label=name.replace("_", " "))
    metric_axes.set(xlabel="generation", title="evaluation of the mean parameters")
    if metric_names:
        metric_axes.legend()
    return replace_atomically(run_dir / output, lambda file: figure.savefig(file, format="png", dpi=100))

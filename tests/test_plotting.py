"""The learning-curve plot of a run directory: which fitness it calls the best, and when an axis is logarithmic."""

import json
import math

import pytest

from eggroll_np import plotting

pytest.importorskip("matplotlib")
from matplotlib.figure import Figure


def _run_dir(tmp_path, records, maximize):
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps({"task": "probe", "maximize": maximize}))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return tmp_path


def _drawn(monkeypatch, run_dir) -> Figure:
    """The figure plot_run builds (kept instead of rendered, which takes a second on a busy machine)."""
    figures = []
    monkeypatch.setattr(Figure, "savefig", lambda self, file, **kwargs: figures.append(self))
    assert plotting.plot_run(run_dir) == run_dir / "curves.png"
    (figure,) = figures
    return figure


def _curves(axes) -> dict:
    return {line.get_label(): list(line.get_ydata()) for line in axes.get_lines()}


# Fitness of generations 1-4 whose best member is not monotone, so the best so far differs from it; generation 0
# holds only the evaluation.
RECORDS = [
    {"generation": 0, "f": 40.0},
    {"generation": 1, "fitness_mean": 30.0, "fitness_max": 50.0, "fitness_min": 10.0},
    {"generation": 2, "fitness_mean": 20.0, "fitness_max": 60.0, "fitness_min": 12.0, "f": 4.0},
    {"generation": 3, "fitness_mean": 8.0, "fitness_max": 40.0, "fitness_min": 2.0},
    {"generation": 4, "fitness_mean": 9.0, "fitness_max": 55.0, "fitness_min": 3.0, "f": 0.1},
]


@pytest.mark.parametrize("maximize", [False, True])
def test_the_best_member_is_the_lowest_fitness_of_a_minimized_run_and_the_highest_otherwise(
    tmp_path, monkeypatch, maximize
):
    fitness_axes, metric_axes = _drawn(monkeypatch, _run_dir(tmp_path, RECORDS, maximize)).axes
    best = [50.0, 60.0, 60.0, 60.0] if maximize else [10.0, 10.0, 2.0, 2.0]
    assert _curves(fitness_axes) == {
        "mean": [30.0, 20.0, 8.0, 9.0],
        "best member": [50.0, 60.0, 40.0, 55.0] if maximize else [10.0, 12.0, 2.0, 3.0],
        "best so far": best,
    }
    assert fitness_axes.get_title() == f"population fitness ({'maximized' if maximize else 'minimized'})"
    assert [text.get_text() for text in fitness_axes.get_legend().get_texts()] == ["mean", "best member", "best so far"]
    assert _curves(metric_axes) == {"f": [40.0, 4.0, 0.1]}


def test_an_axis_of_positive_values_spanning_two_decades_is_logarithmic(tmp_path, monkeypatch):
    fitness_axes, metric_axes = _drawn(monkeypatch, _run_dir(tmp_path, RECORDS, False)).axes
    assert fitness_axes.get_yscale() == "linear"  # 60 / 2 = 30 < 100
    assert metric_axes.get_yscale() == "log"  # 40 / 0.1 = 400
    negative = [{**r, "f": -r["f"]} if "f" in r else r for r in RECORDS]
    fitness_axes, metric_axes = _drawn(monkeypatch, _run_dir(tmp_path / "negative", negative, False)).axes
    assert metric_axes.get_yscale() == "linear"


def test_a_non_finite_best_member_does_not_count_for_the_best_so_far(tmp_path, monkeypatch):
    records = [RECORDS[0], {**RECORDS[1], "fitness_min": math.nan}, *RECORDS[2:]]
    fitness_axes, _ = _drawn(monkeypatch, _run_dir(tmp_path, records, False)).axes
    assert _curves(fitness_axes)["best so far"][1:] == [12.0, 2.0, 2.0]
    assert math.isnan(_curves(fitness_axes)["best so far"][0])


def test_a_run_without_config_json_takes_maximize_from_its_checkpoint(tmp_path, monkeypatch):
    import numpy as np

    import eggroll_np as egg

    run_dir = _run_dir(tmp_path, RECORDS, False)
    (run_dir / "config.json").unlink()
    es = egg.EGGROLL(population_size=4, maximize=False)
    egg.save(run_dir / "checkpoint.npz", es.init({"x": np.zeros(3, np.float32)}), {"config": {"maximize": False}})
    fitness_axes, _ = _drawn(monkeypatch, run_dir).axes
    assert _curves(fitness_axes)["best member"] == [10.0, 12.0, 2.0, 3.0]

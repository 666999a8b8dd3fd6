"""`train --workers K`: Ray replicas evaluate while the driver computes in NumPy. A run on workers writes the
checkpoint and the metrics of the run in this process, its checkpoints resume in this process and vice versa,
a JAX run on workers keeps JAX's own params, and the worker flags are refused where they make no sense."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np._array_api import to_numpy
from eggroll_np.cli import main
from eggroll_np.distributed.task_fitness import TaskFitness
from eggroll_np.training import run_config

# Pendulum on tiny settings: 16 members, 2 evaluation episodes of 10 steps; a checkpoint every 2 generations.
PENDULUM = [
    "pendulum", "--population", "16", "--hidden", "8", "--layers", "1", "--max-steps", "10", "--eval-episodes", "2",
    "--eval-every", "2", "--checkpoint-every", "2", "--quiet",
]  # fmt: skip
K = 4  # generations before a move between this process and the workers; the runs go on to 2K


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    from eggroll_np.distributed.ray_cluster import init_ray

    # The replicas import this worktree's eggroll_np, whatever the venv has installed.
    root = str(Path(__file__).parent.parent)
    init_ray(num_cpus=2, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": root}})
    yield
    ray.shutdown()


def _arrays(tree, path="state"):
    """Every array of a state (dicts, tuples) by its path, as NumPy."""
    if isinstance(tree, dict):
        return {k: v for key in sorted(tree) for k, v in _arrays(tree[key], f"{path}.{key}").items()}
    if isinstance(tree, tuple | list):
        return {k: v for i, item in enumerate(tree) for k, v in _arrays(item, f"{path}[{i}]").items()}
    return {path: np.asarray(to_numpy(tree)) if hasattr(tree, "shape") else np.asarray(tree)}


def _assert_same_checkpoints(a: Path, b: Path) -> None:
    left, right = _arrays(egg.load(a / "checkpoint.npz")), _arrays(egg.load(b / "checkpoint.npz"))
    assert left.keys() == right.keys()
    for key in left:
        assert left[key].dtype == right[key].dtype and np.array_equal(left[key], right[key]), key


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_metrics(a: Path, b: Path, rel: float = 0.0) -> None:
    """The same lines, every value equal but for fitness_mean, which may differ by 1e-6 relative: the workers'
    fitness reaches the driver as float64 (every evaluator's), so tell averages it in float64, where a run in
    this process averages the task's float32 fitness in float32. With `rel`, every value to that tolerance."""
    ours, theirs = _metrics(a), _metrics(b)
    assert [line.keys() for line in ours] == [line.keys() for line in theirs]
    for mine, other in zip(ours, theirs, strict=True):
        for key in mine:
            tolerance = max(rel, 1e-6 if key == "fitness_mean" else 0.0)
            expected = other[key] if isinstance(other[key], str) else pytest.approx(other[key], rel=tolerance, abs=0)
            assert mine[key] == expected, (mine["generation"], key)


def _train(*argv) -> None:
    assert main(["train", *map(str, argv)]) == 0


@pytest.fixture(scope="module")
def local_runs(tmp_path_factory):
    """In this process: pendulum to K and to 2K (run directories)."""
    root = tmp_path_factory.mktemp("local")
    for generations in (K, 2 * K):
        _train(*PENDULUM, "--generations", generations, "--out", root / f"to{generations}")
    return root


@pytest.mark.ray
def test_a_run_on_workers_is_the_run_in_this_process_and_its_checkpoint_resumes_here(
    ray_instance, local_runs, tmp_path
):
    """NumPy replicas round as the NumPy driver does: the run on 2 workers (checkpoints at 2 and 4 on the way)
    writes the same checkpoint and metrics (`_assert_same_metrics`) as the run in this process; resumed here it
    reaches them at 2K too; its config is the same, and its summary says how many workers ran it."""
    ray_dir = tmp_path / "ray"
    _train(*PENDULUM, "--generations", K, "--out", ray_dir, "--workers", 2)
    _assert_same_checkpoints(ray_dir, local_runs / f"to{K}")
    _assert_same_metrics(ray_dir, local_runs / f"to{K}")
    assert json.loads((ray_dir / "config.json").read_text()) == json.loads(
        (local_runs / f"to{K}/config.json").read_text()
    )
    assert json.loads((ray_dir / "summary.json").read_text())["workers"] == 2
    _train("--resume", ray_dir, "--generations", 2 * K, "--quiet")
    _assert_same_checkpoints(ray_dir, local_runs / f"to{2 * K}")
    _assert_same_metrics(ray_dir, local_runs / f"to{2 * K}")
    assert json.loads((ray_dir / "summary.json").read_text())["workers"] == 0


@pytest.mark.ray
def test_a_checkpoint_made_here_resumes_on_workers(ray_instance, local_runs, tmp_path):
    run_dir = tmp_path / "moved"
    shutil.copytree(local_runs / f"to{K}", run_dir)
    _train("--resume", run_dir, "--generations", 2 * K, "--workers", 2, "--quiet")
    _assert_same_checkpoints(run_dir, local_runs / f"to{2 * K}")
    _assert_same_metrics(run_dir, local_runs / f"to{2 * K}")


@pytest.mark.ray
def test_a_jax_run_on_workers_keeps_the_replicas_params_and_resumes_on_jax_here(ray_instance, tmp_path):
    """JAX replicas (on the CPU) with a NumPy driver: the driver's tell rounds as NumPy does, so its state is a
    mirror, and the checkpoints hold the replicas' params (`RayEvaluator.authoritative`). A member's batched
    forward may round differently in a slice of 8 than of 16, so the fitness values may differ from a JAX run
    in this process in their last bits (the metrics are compared to 1e-5 relative); but pendulum trains on the signs of
    the pair differences, which differ by far more than that here, and the initial params are drawn on a JAX
    replica, so the params agree bit for bit with the JAX run in this process: the driver's NumPy draw of the
    MLP's init or its NumPy-rounded mirror would differ from them by a few ulp."""
    jax_run = [*PENDULUM, "--backend", "jax"]  # generations take a second each on JAX: 2 and 4 here
    here, ray_dir = tmp_path / "here", tmp_path / "ray"
    _train(*jax_run, "--generations", 4, "--out", here)
    _train(*jax_run, "--generations", 2, "--out", ray_dir, "--workers", 2)
    assert egg.load(ray_dir / "checkpoint.npz").generation == 2
    _train("--resume", ray_dir, "--generations", 4, "--quiet")
    _assert_same_checkpoints(ray_dir, here)
    _assert_same_metrics(ray_dir, here, rel=1e-5)


@pytest.mark.ray
def test_a_tiny_text_run_on_workers_is_the_run_in_this_process(ray_instance, tmp_path):
    """The int8 EGG under sign shaping updates exactly on every backend: bit for bit the run here."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(b"the quick brown fox jumps over the lazy dog. " * 40)
    tiny = ["text", "--text", corpus, "--width", "8", "--sequence-length", "8", "--sequences", "2"]
    tiny += ["--population", "8", "--generations", "2", "--quiet"]
    _train(*tiny, "--out", tmp_path / "here")
    _train(*tiny, "--out", tmp_path / "ray", "--workers", 2)
    _assert_same_checkpoints(tmp_path / "ray", tmp_path / "here")
    _assert_same_metrics(tmp_path / "ray", tmp_path / "here")


def test_task_fitness_pickles_as_its_config_alone(tmp_path):
    import pickle

    config = run_config("rosenbrock", {"dim": 3})
    fitness = TaskFitness(config)
    fitness._task = object()  # what a replica loads (a corpus, environments) does not travel
    copy = pickle.loads(pickle.dumps(fitness))
    assert copy.config == config and copy._task is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--gpus-per-worker", "1"], "--gpus-per-worker is a setting of the workers: give it with --workers K"),
        (["--ray-address", "auto"], "--ray-address is a setting of the workers: give it with --workers K"),
        (
            ["--workers", "2", "--gpus-per-worker", "1.5"],
            "--gpus-per-worker: gpus_per_worker=1.5 must be a finite number in [0, 1]",
        ),
        (["--workers", "0"], "workers=0 must be an integer ≥ 1"),
        (["--workers", "2", "--backend", "cupy"], "give each worker one with --gpus-per-worker 1"),
    ],
)
def test_worker_flags_are_refused_where_they_make_no_sense(tmp_path, capsys, argv, message):
    run_dir = tmp_path / "run"
    assert main(["train", "rosenbrock", "--generations", "2", "--out", str(run_dir), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not run_dir.exists()


def test_more_than_one_worker_is_refused_for_a_task_that_evaluates_the_whole_population(tmp_path, capsys):
    pytest.importorskip("gymnasium")
    run_dir = tmp_path / "run"
    assert main(["train", "cartpole", "--env", "gymnasium", "--workers", "2", "--out", str(run_dir)]) == 2
    assert "cartpole --env gymnasium steps one environment per member in one call" in capsys.readouterr().err
    assert not run_dir.exists()


def test_without_ray_workers_are_a_usage_error_before_anything_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    run_dir = tmp_path / "run"
    assert main(["train", "rosenbrock", "--generations", "2", "--out", str(run_dir), "--workers", "2"]) == 2
    assert "RayEvaluator needs Ray: pip install 'eggroll-np[ray]'" in capsys.readouterr().err
    assert not run_dir.exists()


def test_a_resume_may_add_or_drop_workers_but_keeps_the_config(tmp_path, capsys, monkeypatch):
    """The worker flags pass --resume's check of changed settings; the run then opens as asked (here without
    Ray, which refuses before anything is written)."""
    run_dir = tmp_path / "run"
    _train("rosenbrock", "--generations", "2", "--out", run_dir, "--quiet")
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["train", "--resume", str(run_dir), "--generations", "4", "--workers", "2"]) == 2
    assert "RayEvaluator needs Ray" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def _interrupting_step(monkeypatch, at: int, before=None):
    """RayEvaluator.step raising KeyboardInterrupt at its `at`-th call, as a Ctrl-C there would (after
    `before(evaluator)` at that call, if given)."""
    from eggroll_np.distributed.ray_cluster import RayEvaluator

    step, calls = RayEvaluator.step, []

    def interrupting(self, state):
        calls.append(state.generation)
        if len(calls) == at:
            if before is not None:
                before(self)
            raise KeyboardInterrupt
        return step(self, state)

    monkeypatch.setattr(RayEvaluator, "step", interrupting)


@pytest.mark.ray
def test_ctrl_c_on_jax_workers_checkpoints_the_replicas_exact_state(ray_instance, tmp_path, monkeypatch, capsys):
    """Interrupted after generation 3, which neither evaluates nor checkpoints: the driver holds only its
    NumPy mirror, so the checkpoint written at the interrupt is the state fetched from the replicas, the one
    a JAX run in this process reaches (see the JAX test above for why bit for bit)."""
    jax_run = [*PENDULUM, "--backend", "jax"]
    here, ray_dir = tmp_path / "here", tmp_path / "ray"
    _train(*jax_run, "--generations", 3, "--out", here)
    _interrupting_step(monkeypatch, at=4)
    assert main(["train", *map(str, [*jax_run, "--generations", 8, "--out", ray_dir, "--workers", 2])]) == 130
    assert "interrupted after generation 3, which is checkpointed" in capsys.readouterr().err
    _assert_same_checkpoints(ray_dir, here)


@pytest.mark.ray
def test_ctrl_c_where_the_exact_state_is_lost_keeps_the_last_checkpoint_and_says_so(
    ray_instance, tmp_path, monkeypatch, capsys
):
    """Every replica replaced and the replay dropped: the workers' exact state of generation 3 is gone, and
    the driver's NumPy mirror is not written in its place."""

    def lose_everything(evaluator):
        evaluator.replay_bytes = 0
        evaluator._anchor = evaluator._anchor_tip = None
        evaluator._replace(range(evaluator.workers))

    _interrupting_step(monkeypatch, at=4, before=lose_everything)
    run_dir = tmp_path / "ray"
    argv = [*PENDULUM, "--backend", "jax", "--generations", 8, "--out", run_dir, "--workers", 1]
    with pytest.warns(RuntimeWarning, match="state of generation 3 could not be had"):
        assert main(["train", *map(str, argv)]) == 130
    assert "interrupted; the last checkpoint is of generation 2" in capsys.readouterr().err
    assert egg.load(run_dir / "checkpoint.npz").generation == 2

"""Documentation code runs as written, and the example and benchmark scripts run."""

import importlib.util
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
BLOCKS = [
    pytest.param(block, id=f"{page.name}:{n}")
    for page in sorted((ROOT / "docs").glob("*.md"))
    for n, block in enumerate(PYTHON_BLOCK.findall(page.read_text(encoding="utf-8")))
]


def test_the_docs_have_python_examples():
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("code", BLOCKS)
def test_every_python_block_in_the_docs_runs(code):
    exec(compile(code, "<docs>", "exec"), {"__name__": "__docs__"})


def _run_script(path, argv):
    saved = sys.argv
    sys.argv = [str(path), *argv]
    try:
        return runpy.run_path(str(path), run_name="__script__")["main"](argv)
    finally:
        sys.argv = saved


def test_quickstart_example_learns_on_a_short_run(capsys):
    relative_error = _run_script(ROOT / "examples" / "quickstart.py", ["--generations", "120", "--quiet"])
    assert relative_error < 0.05
    assert "final relative error" in capsys.readouterr().out


def test_rng_benchmark_runs_in_quick_mode(capsys):
    _run_script(ROOT / "bench" / "rng.py", ["--quick", "--repeats", "1"])
    assert "ratio" in capsys.readouterr().out


def test_forward_benchmark_runs_in_quick_mode_and_checks_its_results(capsys):
    rows = _run_script(ROOT / "bench" / "forward.py", ["--quick", "--repeats", "1"])
    assert rows
    assert "ratio excl" in capsys.readouterr().out


@pytest.mark.ray
def test_egg_benchmark_runs_in_quick_mode(capsys):
    result = _run_script(ROOT / "bench" / "egg.py", ["--quick"])
    assert [row["N"] for row in result["throughput"]] == [8, 32]
    assert all(row["ratio"] > 0 for row in result["throughput"])
    assert all(0 < row["held-out bits/byte"] < 32 for row in result["scaling"])
    assert "forward throughput" in capsys.readouterr().out


def test_generation_benchmark_runs_in_quick_mode_on_every_importable_backend(capsys):
    rows = _run_script(ROOT / "bench" / "generation.py", ["--quick"])
    backends = ["numpy", *(name for name in ("torch", "jax") if importlib.util.find_spec(name))]
    evosax = ["evosax OpenES (lax.scan)"] if importlib.util.find_spec("evosax") else []  # an optional comparison
    compiled = {("jax", "digits"): ["jax", "jax (lax.scan)", *evosax], ("jax", "wide"): ["jax", "jax (lax.scan)"]}
    expected = [(name, case) for b in backends for case in ("digits", "wide") for name in compiled.get((b, case), [b])]
    assert [(row["backend"], row["case"]) for row in rows] == expected
    assert all(row["plain ms"] > 0 and row["generation ms"] > 0 for row in rows)
    assert "| backend | case | N | b | d |" in capsys.readouterr().out


def test_generation_benchmark_times_the_parts_of_a_numpy_generation(capsys):
    rows = _run_script(ROOT / "bench" / "generation.py", ["--quick", "--parts"])
    assert [row["part"] for row in rows] == [
        "ask",
        "population forward",
        "log-softmax fitness",
        "tell",
        "plain inference",
        "floor: normals (NumPy PCG64)",
        "floor: read each per-member layer's inputs",
        "floor: add into each per-member layer's outputs",
        "saving: plain's first-layer product",
    ]
    assert all(row["ms"] > 0 for row in rows)
    out = capsys.readouterr().out
    assert "| part | ms |" in out and "bound from the floor" in out


def test_envs_benchmark_runs_in_quick_mode(capsys):
    result = _run_script(ROOT / "bench" / "envs.py", ["--quick"])
    assert [row["env"] for row in result["env_steps"]][-1] == "Gymnasium CartPoleVectorEnv"
    assert all(row["member-steps/s"] > 0 for row in result["env_steps"])
    assert [row["path"] for row in result["generations"]] == ["native", "gymnasium"]
    assert "member-steps per second" in capsys.readouterr().out


def test_distributed_benchmark_runs_in_quick_mode_and_checks_its_results():
    # A process of its own: the pool's spawned workers import the script's fitness function by name.
    script = ROOT / "bench" / "distributed.py"
    done = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final params equal in all rows" in done.stdout and "per generation B" in done.stdout


def test_gpu_check_runs_on_the_cpu_path_and_writes_its_table(tmp_path, monkeypatch, capsys):
    """The device check's own code, at tiny sizes through NumPy: every part runs (the gpu tests skip here)."""
    monkeypatch.setenv("OUT", str(tmp_path))
    report = _run_script(ROOT / "bench" / "gpu_check.py", ["--backend", "numpy", "--small"])
    assert not [note for note in report.notes if "FAILED" in note or "skipped" in note]
    table = (tmp_path / "gpu_check.md").read_text()
    for section in (
        "## goals",
        "## noise: NumPy vs the backend",
        "## paper benchmark",
        "## naive full-rank ES",
        "## digits task",
        "## EGG 1L-16D population forward, 16 bytes per member",
        "## EGG text task on the device",
        "## tests: pytest -m gpu",
    ):
        assert section in table, section
    assert "| 0 | - | - |" in table  # uniforms and signs: no element differs
    assert "DIFFERS" not in table and "| equal |" in table  # EGG's logits equal NumPy's
    assert (tmp_path / "gpu_pytest.log").exists() and (tmp_path / "gpu_check.log").exists()
    assert capsys.readouterr().out.rstrip().endswith(table.rstrip().splitlines()[-1])

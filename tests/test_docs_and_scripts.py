"""Documentation code runs as written and prints what the page shows; the example and benchmark scripts run.

Every ```python block of docs/*.md runs, the blocks of a page in order in one namespace, and what a block
prints must equal the ```text block right after it (tests/docs_runner.py states the convention: exact
lines up to trailing whitespace; a line marked `# machine-dependent` is compared without its numbers and
reported in the warnings summary as not compared). A block that prints without an expected output fails.
"""

import importlib.util
import runpy
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from docs_runner import examples, run_page

ROOT = Path(__file__).resolve().parent.parent
PAGES = [page for page in sorted((ROOT / "docs").glob("*.md")) if examples(page.read_text(encoding="utf-8"))]


def _page_param(page: Path):
    """A page whose blocks start a local Ray instance carries the ray marker (and slow: Ray takes ~15 s)."""
    ray = "RayEvaluator(" in page.read_text(encoding="utf-8")
    return pytest.param(page, id=page.name, marks=[pytest.mark.ray, pytest.mark.slow] if ray else [])


def test_the_docs_have_python_examples():
    assert sum(len(examples(page.read_text(encoding="utf-8"))) for page in PAGES) >= 5


@pytest.mark.filterwarnings("always:not compared:UserWarning")
@pytest.mark.parametrize("page", [_page_param(page) for page in PAGES])
def test_every_python_block_in_the_docs_prints_what_the_page_shows(page):
    run = run_page(page.read_text(encoding="utf-8"), str(page.relative_to(ROOT)))
    for line in run.not_compared:
        warnings.warn(f"not compared (machine-dependent): {line}", UserWarning, stacklevel=1)
    if run.problems:
        pytest.fail("\n\n".join(run.problems), pytrace=False)


WRONG_PAGE = """# A page

```python
print(1 + 1)
print("same")
```

```text
3
same
```
"""


def test_the_runner_fails_a_wrong_output_naming_the_page_line():
    run = run_page(WRONG_PAGE, "wrong.md")
    assert run.problems == [
        "wrong.md:3: the output differs from the page\n  line 9: the page shows '3', the block printed '2'"
    ]
    assert not run_page(WRONG_PAGE.replace("3\n", "2\n"), "right.md").problems  # the same page, corrected


def test_the_runner_fails_a_block_that_prints_without_an_expected_output():
    page = """```python
print("hello")
```

Prose in between: the text block below is not the output of the block above.

```text
hello
```
"""
    (problem,) = run_page(page, "missing.md").problems
    assert problem.startswith("missing.md:1: the block prints but no ```text block follows it")


def test_the_runner_fails_an_output_that_is_not_printed_and_a_line_that_is_missing():
    silent = "```python\nx = 1\n```\n\n```text\n1\n```\n"
    assert run_page(silent, "silent.md").problems == [
        "silent.md:1: the page shows an output at line 6 but the block prints nothing"
    ]
    short = "```python\nprint(1)\nprint(2)\n```\n```text\n1\n```\n"
    assert "line 7: the page shows no line, the block printed '2'" in run_page(short, "short.md").problems[0]


def test_blocks_of_a_page_share_one_namespace_in_order_and_errors_name_the_page_line():
    page = "```python\nx = 20\n```\n\n```python\nprint(x + 1)\n```\n\n```text\n21\n```\n"
    assert not run_page(page, "shared.md").problems
    failing = "Text.\n\n```python\nx = 1\nraise RuntimeError('boom')\n```\n\n```python\nprint(x)\n```\n"
    (problem,) = run_page(failing, "failing.md").problems  # the block after the failing one does not run
    assert problem.startswith("failing.md:3: the block raised")
    assert 'File "failing.md", line 5' in problem and "RuntimeError: boom" in problem


TIMED_PAGE = """```python
print("draws: 12")
print("ask: 3.25 ms")
```

```text
draws: 12
ask: 2.5 ms  # machine-dependent
```
"""


def test_a_machine_dependent_line_is_compared_without_its_numbers_and_reported():
    run = run_page(TIMED_PAGE, "timed.md")
    assert not run.problems
    assert run.not_compared == ["timed.md:8: shows 'ask: 2.5 ms', printed 'ask: 3.25 ms'"]
    other_unit = run_page(TIMED_PAGE.replace("3.25 ms", "3.25 s"), "timed.md")
    assert "line 8: the page shows 'ask: 2.5 ms', the block printed 'ask: 3.25 s'" in other_unit.problems[0]
    unmarked = run_page(TIMED_PAGE.replace('draws: 12")', 'draws: 13")'), "timed.md")
    assert "line 7: the page shows 'draws: 12', the block printed 'draws: 13'" in unmarked.problems[0]


def test_an_indented_block_in_a_list_runs_and_is_compared():
    page = """- an item:

  ```python
  print("in a list")
  ```

  ```text
  in a list
  ```
"""
    (example,) = examples(page)
    assert example.code.text == 'print("in a list")\n' and example.expected.text == "in a list\n"
    assert not run_page(page, "list.md").problems
    assert run_page(page.replace("  in a list\n  ```", "  in a lisp\n  ```"), "list.md").problems
    leading_spaces = "```python\nprint('  two spaces')\n```\n\n```text\n  two spaces\n```\n"
    assert not run_page(leading_spaces, "spaces.md").problems  # an output's own indentation is kept


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
        "first layer: plain inference",
        "first layer: population (shared batch)",
    ]
    assert all(row["ms"] > 0 for row in rows)
    out = capsys.readouterr().out
    assert "| part | ms |" in out and "bound from the floor" in out


@pytest.mark.parametrize(
    "block_cma",
    [pytest.param(False, id="cma as installed", marks=pytest.mark.slow), pytest.param(True, id="cma not importable")],
)  # importing pycma (scipy.stats, matplotlib) alone takes seconds
def test_which_tool_benchmark_runs_in_quick_mode_and_says_when_it_skips_pycma(block_cma, monkeypatch, capsys):
    with_cma = importlib.util.find_spec("cma") is not None and not block_cma  # pycma is an optional comparison
    if block_cma:
        monkeypatch.setitem(sys.modules, "cma", None)  # `import cma` raises ImportError
    results = _run_script(ROOT / "bench" / "which_tool.py", ["--quick"])
    out = capsys.readouterr().out
    assert ("pycma: skipped, cma is not importable" in out) is not with_cma
    pycma = ["pycma CMA-ES", "pycma IPOP-CMA-ES"] if with_cma else []
    assert [row["method"] for row in results["rastrigin"]] == ["EGGROLL", "EGGROLL", *pycma]
    assert [row["method"] for row in results["ellipsoid"]] == ["EGGROLL", *pycma[:1]]
    budgets = [row["budget"] for row in results["matrix"] if row["method"] == "pycma CMA-ES"]
    assert budgets == (["EGGROLL's evaluations", "EGGROLL's seconds", "EGGROLL's seconds", "-"] if with_cma else [])
    assert [row["W"] for row in results["matrix"] if row["method"] == "EGGROLL"] == ["4 × 4", "8 × 8", "256 × 256"]
    not_run = [row["W"] for row in results["matrix"] if row["relative loss"] == "not run"]
    assert not_run == (["256 × 256"] if with_cma else [])
    assert all(isinstance(row["seconds"], float) and row["evaluations"] > 0 for row in results["rastrigin"])
    assert results["vector"][0]["ratio"] > 0


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

"""The scripts in examples/ run as written, on short settings, and reach real outcomes."""

import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = [
    "digits_mlp.py",
    "cartpole.py",
    "black_box.py",
    "cupy_gpu.py",
    "outside_loop.py",
    "distributed.py",
    "jax_scan.py",
]


def load(name: str) -> dict:
    """The script's globals, as `python examples/NAME` would define them, without running its main."""
    return runpy.run_path(str(EXAMPLES / name), run_name="__script__")


def run(name: str, argv: list[str], monkeypatch):
    """main(argv) of examples/NAME (sys.argv set as on the command line, so argparse names the script)."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *argv])
    return load(name)["main"](argv)


def cupy_with_a_device() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_example_documents_itself_and_parses_its_options(name, monkeypatch, capsys):
    namespace = load(name)
    assert len(namespace["__doc__"]) > 200
    with pytest.raises(SystemExit) as stop:
        run(name, ["--help"], monkeypatch)
    assert stop.value.code == 0
    assert "--generations" in capsys.readouterr().out


def test_digits_mlp_beats_chance_after_a_few_generations(monkeypatch, capsys):
    accuracy = run(
        "digits_mlp.py",
        ["--generations", "30", "--population", "128", "--batch-size", "64", "--print-every", "10"],
        monkeypatch,
    )
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    out = capsys.readouterr().out
    assert "generation   10:" in out
    assert "final test accuracy" in out


def test_digits_mlp_runs_on_jax(monkeypatch, capsys):
    argv = ["--backend", "jax", "--generations", "3", "--population", "16", "--batch-size", "32"]
    accuracy = run("digits_mlp.py", [*argv, "--print-every", "3"], monkeypatch)
    assert 0.0 <= accuracy <= 1.0
    assert "on jax" in capsys.readouterr().out


def test_jax_scan_compiles_once_and_lowers_the_loss(monkeypatch, capsys):
    loss = run("jax_scan.py", ["--generations", "60", "--block", "20", "--population", "64"], monkeypatch)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("generation")]
    initial = 1.2927  # the script's first line, for seed 0
    assert len(lines) == 3 and loss < 0.5 * initial


def test_cartpole_return_improves_on_the_initial_policy(monkeypatch, capsys):
    # The initial mean policy always pushes left: about 9.5 steps per episode.
    mean_return = run(
        "cartpole.py",
        ["--generations", "6", "--population", "32", "--eval-episodes", "5", "--max-steps", "200", "--eval-every", "3"],
        monkeypatch,
    )
    assert mean_return > 25.0
    assert "final mean return" in capsys.readouterr().out


def test_black_box_decreases_the_simulation_error(monkeypatch, capsys):
    script = load("black_box.py")
    true, starts = script["hidden_system"]()
    zero = {"A": np.zeros_like(true["A"]), "b": np.zeros_like(true["b"])}
    start_value = np.mean((script["simulate"](zero, starts) - script["simulate"](true, starts)) ** 2)
    final = run("black_box.py", ["--generations", "60", "--population", "32", "--print-every", "20"], monkeypatch)
    assert final < 0.5 * start_value
    out = capsys.readouterr().out
    assert "generation   20:" in out
    assert "optimum 0" in out


def test_cupy_gpu_script_runs_on_numpy(monkeypatch, capsys):
    argv = ["--backend", "numpy", "--generations", "20", "--population", "128", "--hidden", "32"]
    accuracy = run("cupy_gpu.py", [*argv, "--batch-size", "64", "--print-every", "10"], monkeypatch)
    assert accuracy > 0.3
    out = capsys.readouterr().out
    assert "on numpy" in out
    assert "final test accuracy" in out


@pytest.mark.gpu
def test_cupy_gpu_script_runs_on_the_gpu(monkeypatch, capsys):
    argv = ["--backend", "cupy", "--generations", "20", "--population", "128", "--hidden", "32"]
    accuracy = run("cupy_gpu.py", [*argv, "--batch-size", "64", "--print-every", "10"], monkeypatch)
    assert accuracy > 0.3
    out = capsys.readouterr().out
    assert "on cupy" in out and "CUPY_TF32=" in out
    assert "final test accuracy" in out


def test_cupy_gpu_script_says_what_is_missing_without_cupy_or_a_gpu(monkeypatch, capsys):
    if cupy_with_a_device():
        pytest.skip("CuPy and a CUDA device are available here, so --backend cupy runs")
    with pytest.raises(SystemExit) as stop:
        run("cupy_gpu.py", ["--backend", "cupy", "--generations", "1"], monkeypatch)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "cupy_gpu.py: error: --backend cupy needs" in err
    assert "CuPy" in err or "CUDA device" in err
    assert "--backend numpy" in err


def test_outside_loop_learns_and_continues_bit_for_bit(monkeypatch, capsys):
    script = load("outside_loop.py")
    zero = {name: np.zeros(shape) for name, shape in script["SHAPES"].items()}
    start_error = -script["make_worker"]()(script["flatten"](zero))
    final = run("outside_loop.py", ["--generations", "12", "--population", "16", "--print-every", "4"], monkeypatch)
    assert final < 0.8 * start_error
    out = capsys.readouterr().out
    assert "results arrived in the order" in out
    assert "rebuilt from (seed, generation, index): bit-identical" in out
    assert "continued from the checkpoint = uninterrupted run, bit for bit" in out


def run_distributed(*argv: str) -> tuple[float, str, str]:
    """examples/distributed.py in a process of its own (pool workers import the script by name): the final
    return, the params fingerprint and the output."""
    command = [sys.executable, str(EXAMPLES / "distributed.py"), "--generations", "12", "--print-every", "4", *argv]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    final = float(re.search(r"final return (-?[0-9.]+)", done.stdout).group(1))
    return final, re.search(r"params fingerprint ([0-9a-f]+)", done.stdout).group(1), done.stdout


@pytest.mark.parametrize("evaluator", ["pool", pytest.param("ray", marks=pytest.mark.ray)])
def test_distributed_example_improves_and_every_evaluator_ends_at_the_same_params(evaluator):
    local_final, local_fingerprint, out = run_distributed("--evaluator", "local")
    initial = float(re.search(r"initial controller: return +(-?[0-9.]+)", out).group(1))
    assert local_final > 0.5 * initial  # returns are negative: the cost at least halves
    final, fingerprint, out = run_distributed("--evaluator", evaluator, "--workers", "2")
    assert (final, fingerprint) == (local_final, local_fingerprint)
    assert f"({evaluator} evaluator)" in out

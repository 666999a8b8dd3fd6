"""SIGKILL at random instants (fixed seeds) of `eggroll-np train` and `eggroll-np train --resume`: whatever
instant a kill lands on, continuing the run gives the parameters and the metrics log of a run that was never
interrupted, and no line of a checkpointed generation is ever missing from the log on disk."""

import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import eggroll_np as egg

pytestmark = pytest.mark.slow

RUN = ["train", "rosenbrock", "--dim", "16", "--population", "8", "--eval-every", "5", "--quiet"]
GENERATIONS, EVERY = 3000, 50


def _start(*argv: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "eggroll_np", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _kill(process: subprocess.Popen) -> bool:
    """SIGKILL the process if it still runs; whether it was killed."""
    alive = process.poll() is None
    process.kill()
    process.communicate()
    return alive


def _checkpointed_lines_are_whole(run_dir, reference: list[str]) -> None:
    """The log on disk holds, unchanged, every line up to the checkpoint's generation."""
    if not (run_dir / "checkpoint.npz").exists():
        return
    generation = egg.load(run_dir / "checkpoint.npz").generation
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert lines[: generation + 1] == reference[: generation + 1]


def test_twenty_random_kills_of_train_and_resume_change_nothing(tmp_path):
    reference = tmp_path / "reference"
    started = time.perf_counter()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "eggroll_np",
            *RUN,
            f"--generations={GENERATIONS}",
            f"--checkpoint-every={EVERY}",
            "--out",
            str(reference),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    whole = time.perf_counter() - started
    reference_lines = (reference / "metrics.jsonl").read_text().splitlines()
    run_dir = tmp_path / "killed"
    rng = np.random.default_rng(20261201)
    kills = attempts = 0
    while kills < 20:
        attempts += 1
        assert attempts < 60, "the run kept finishing before the kill"
        if (run_dir / "config.json").exists():
            process = _start("train", "--resume", str(run_dir))
        else:
            process = _start(*RUN, f"--generations={GENERATIONS}", f"--checkpoint-every={EVERY}", "--out", str(run_dir))
        time.sleep(rng.uniform(0.0, whole / 3))
        kills += _kill(process)
        _checkpointed_lines_are_whole(run_dir, reference_lines)
    finish = subprocess.run(
        [sys.executable, "-m", "eggroll_np", "train", "--resume", str(run_dir)], capture_output=True, text=True
    )
    assert finish.returncode == 0, finish.stderr
    assert (run_dir / "metrics.jsonl").read_text().splitlines() == reference_lines
    final, expected = egg.load(run_dir / "checkpoint.npz"), egg.load(reference / "checkpoint.npz")
    assert final.generation == GENERATIONS
    np.testing.assert_array_equal(final.params["x"], expected.params["x"])
    for field in ("mu", "nu"):
        np.testing.assert_array_equal(getattr(final.opt_state, field)["x"], getattr(expected.opt_state, field)["x"])
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_kills_during_the_metrics_rewrite_of_a_large_log_never_lose_a_checkpointed_line(tmp_path):
    """A run killed between checkpoints, with a log padded to ~20 MB so that the rewrite on resume takes a while;
    12 resumes are killed at random instants after the rewrite's temporary file appears."""
    prepared = tmp_path / "prepared"
    base = [*RUN, "--checkpoint-every", "100", "--out", str(prepared)]
    assert subprocess.run([sys.executable, "-m", "eggroll_np", *base, "--generations", "100"]).returncode == 0
    checkpoint = (prepared / "checkpoint.npz").read_bytes()
    resume = [sys.executable, "-m", "eggroll_np", "train", "--resume", str(prepared), "--quiet"]
    assert subprocess.run([*resume, "--generations", "150"]).returncode == 0
    expected = (prepared / "metrics.jsonl").read_text().splitlines()
    (prepared / "checkpoint.npz").write_bytes(checkpoint)  # back at generation 100, the log at 150
    padded = ["{" + " " * 200_000 + line[1:] for line in expected]  # the same records, in long lines
    (prepared / "metrics.jsonl").write_text("".join(line + "\n" for line in padded))
    kept = padded[:101]
    rng = np.random.default_rng(11)
    for trial in range(12):
        run_dir = tmp_path / f"trial{trial}"
        shutil.copytree(prepared, run_dir)
        process = _start("train", "--resume", str(run_dir))
        while process.poll() is None and not list(run_dir.glob(".metrics.jsonl.*.tmp")):
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.1))
        _kill(process)
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        assert lines[:101] == kept, f"trial {trial}: a checkpointed line was lost"
        assert lines in (padded, kept) or lines[101:] == expected[101 : len(lines)]
        leftovers = [p.name for p in run_dir.iterdir() if re.fullmatch(r"\..*\.tmp", p.name)]
        if leftovers:  # a kill leaves its temporary; the next write of that file removes it
            assert subprocess.run([*resume[:-2], str(run_dir), "--quiet"]).returncode == 0
            assert not [p.name for p in run_dir.iterdir() if re.fullmatch(r"\..*\.tmp", p.name)]
            assert (run_dir / "metrics.jsonl").read_text().splitlines() == kept + expected[101:]

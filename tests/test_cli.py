"""The command line end to end on tiny settings: runs, exact resume, plots, and refusals of bad input."""

import json
import os
import subprocess
import sys

import pytest

import eggroll_np as egg
from eggroll_np.cli import EXIT_BROKEN_PIPE, KEY_SETTINGS, main
from eggroll_np.tasks import TASKS, task_class
from eggroll_np.training import run_config

pytest.importorskip("sklearn")
TINY = ["--population", "16", "--eval-every", "2", "--batch-size", "32", "--hidden", "8", "--quiet"]


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_train_runs_the_default_task_and_writes_the_run_directory(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--generations", "4", "--out", str(run_dir), *TINY]) == 0
    out = capsys.readouterr().out
    assert "digits: test_accuracy" in out and str(run_dir) in out
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "curves.png",
        "metrics.jsonl",
        "summary.json",
    ]
    records = _metrics(run_dir)
    assert [r["generation"] for r in records] == [0, 1, 2, 3, 4]
    assert "test_accuracy" in records[0] and "fitness_mean" not in records[0]  # the initial parameters
    assert "test_accuracy" in records[2] and "test_accuracy" not in records[1]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["task"] == "digits" and config["population_size"] == 16 and config["lr_decay_generations"] == 4
    assert egg.load(run_dir / "checkpoint.npz").generation == 4
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "curves.png").stat().st_size > 5000


def test_rosenbrock_calls_the_black_box_once_per_member_or_once_per_population_alike(tmp_path, capsys):
    rosenbrock = ["train", "rosenbrock", "--dim", "20", "--generations", "40", "--population", "32", "--quiet"]
    for calls in ("single", "batched"):
        assert main([*rosenbrock, "--eval-every", "40", "--calls", calls, "--out", str(tmp_path / calls)]) == 0
    single, batched = _metrics(tmp_path / "single"), _metrics(tmp_path / "batched")
    assert single == batched  # pop.member(i) and pop.vector hand f the same values, bit for bit
    assert batched[-1]["f"] < 19.0  # f(0) = dim − 1 = 19; the strategy minimizes
    summary = json.loads((tmp_path / "batched" / "summary.json").read_text())
    best = min((r for r in batched[1:]), key=lambda r: r["fitness_min"])  # minimized: the lowest member's f
    assert (summary["best_fitness"], summary["best_generation"]) == (best["fitness_min"], best["generation"])
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == (
        f"rosenbrock: f {batched[-1]['f']:.4f} after 40 generations ({summary['seconds']:.1f} s, "
        f"{summary['generations_per_second']:.1f} gen/s), best fitness {best['fitness_min']:.4g} at generation "
        f"{best['generation']}; run directory {tmp_path / 'batched'}"
    )


def test_plot_command_redraws_the_curves(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--generations", "2", "--out", str(run_dir), *TINY]) == 0
    (run_dir / "curves.png").unlink()
    assert main(["plot", str(run_dir)]) == 0
    assert (run_dir / "curves.png").stat().st_size > 5000
    assert str(run_dir / "curves.png") in capsys.readouterr().out


def test_version_prints_the_package_version_and_exits_0(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"eggroll-np {egg.__version__}\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--population", "0"], "argument --population/--population-size: population_size=0 must be an"),
        (["train", "--population-size", "ten"], "argument --population/--population-size: 'ten' is not an integer"),
        (["train", "--sigma", "-0.1"], "argument --sigma: sigma=-0.1 must be a finite number > 0"),
        (["train", "--sigma", "nan"], "argument --sigma: sigma=nan must be a finite number > 0"),
        (["train", "--lr", "-1"], "argument --lr: learning_rate=-1.0 must be a finite number ≥ 0"),
        (["train", "--seed", "-1"], "argument --seed: seed=-1 must be an integer ≥ 0"),
        (["train", "--optimizer", "rmsprop"], "argument --optimizer: invalid choice: 'rmsprop'"),
        (["train", "--backend", "mlx"], "argument --backend: invalid choice: 'mlx'"),
        (["train", "pong"], "argument task: invalid choice: 'pong'"),
        (["train", "--population", "7"], "population_size=7 must be even"),
        (["train", "--shaping", "group_zscore", "--group-size", "5"], "group_size of at least 2 that divides"),
        (["train", "--dim", "10"], "--dim is not an option of the digits task"),
        (["train", "--hidden", "0"], "eggroll-np: error: hidden=0 must be an integer ≥ 1"),
        (["train", "cartpole", "--max-steps", "0"], "eggroll-np: error: max_steps=0 must be an integer ≥ 1"),
        (["plot", "/nonexistent/run"], "no metrics log"),
    ],
)
def test_bad_options_are_refused_with_a_clear_message_and_status_2(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "never")] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "never").exists()


def test_population_and_population_size_are_one_flag_storing_the_eggroll_keyword(tmp_path):
    for flag, run in [("--population", "short"), ("--population-size", "long")]:
        flags = [a for a in TINY if a not in {"--population", "16"}]
        assert main(["train", "--generations", "1", "--out", str(tmp_path / run), flag, "12", *flags]) == 0
        assert json.loads((tmp_path / run / "config.json").read_text())["population_size"] == 12


def test_resume_refuses_changed_settings_and_missing_runs(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--generations", "2", "--out", str(run_dir), *TINY]) == 0
    before = (run_dir / "checkpoint.npz").read_bytes()
    for argv, message in [
        (["train", "--resume", str(run_dir), "--sigma", "0.5"], "drop sigma"),
        (["train", "cartpole", "--resume", str(run_dir)], "drop task"),
        (["train", "--resume", str(tmp_path / "none")], "no such run directory"),
        (["train", "--out", str(run_dir), "--generations", "2"], "holds a run; continue it with --resume"),
        (["train", "--resume", str(run_dir), "--generations", "1"], "already reached generation 2"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert (run_dir / "checkpoint.npz").read_bytes() == before


def test_tasks_lists_every_task_with_its_summary_goal_key_defaults_and_options(capsys):
    assert main(["tasks"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 * len(TASKS) + 1 and lines[-1].startswith("every task, where its own defaults")
    for n, name in enumerate(TASKS):
        cls, config = task_class(name), run_config(name, {})
        title, goal, defaults, options = lines[4 * n : 4 * n + 4]
        assert title == f"{name}: {cls.summary}"
        assert goal == f"  metric: {cls.metric}, goal {'none' if cls.metric_goal is None else f'{cls.metric_goal:g}'}"
        assert defaults.startswith("  defaults: ")
        shown = dict(pair.split(" ", 1) for pair in defaults.removeprefix("  defaults: ").split(", "))
        assert set(KEY_SETTINGS) | set(cls.defaults) == set(shown)
        for key, text in shown.items():
            assert text == (config[key] if isinstance(config[key], str) else json.dumps(config[key]))
        assert options.startswith("  options: ") and all(
            f"--{o.name.replace('_', '-')} " in options for o in cls.options
        )
    rosenbrock = 4 * list(TASKS).index("rosenbrock")
    assert lines[1] == "  metric: test_accuracy, goal 0.97" and lines[rosenbrock + 1] == "  metric: f, goal none"
    assert lines[rosenbrock + 2].endswith(", maximize false")  # the task's own defaults follow the key settings


def test_python_dash_m_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "eggroll_np", "tasks"], capture_output=True, text=True, check=True)
    assert "digits:" in done.stdout and "cartpole:" in done.stdout and "rosenbrock:" in done.stdout


def test_a_reader_that_closes_stdout_ends_the_listing_silently_with_the_sigpipe_status():
    """`eggroll-np tasks | head`: the pipe's reader is gone before the listing is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "eggroll_np", "tasks"], stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, b"")


def test_resuming_a_finished_run_reports_its_evaluation_and_changes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "--generations", "2", "--out", str(run_dir), *TINY]) == 0
    before = (run_dir / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert "test_accuracy 0." in capsys.readouterr().out
    assert (run_dir / "checkpoint.npz").read_bytes() == before


def test_the_progress_bar_shows_on_request_and_stays_off_when_not_on_a_terminal(tmp_path, capsys):
    flags = [f for f in TINY if f != "--quiet"]
    assert main(["train", "--generations", "2", "--out", str(tmp_path / "bar"), "--progress", *flags]) == 0
    err = capsys.readouterr().err
    assert "2/2" in err and "test_accuracy" in err and "best" in err and "max" not in err
    assert main(["train", "--generations", "2", "--out", str(tmp_path / "plain"), *flags]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # pytest's stderr is not a terminal: no bar
    assert "generation 2: fitness mean" in captured.out and ", best " in captured.out

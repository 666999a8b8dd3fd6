"""What a run directory and the command line guarantee when things go wrong: every failure is one line on
stderr with a documented exit status, Ctrl-C checkpoints, a run that died early can continue, files are
replaced whole, and nothing the user saved is lost."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import _files, plotting
from eggroll_np.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, main

ROSENBROCK = ["train", "rosenbrock", "--dim", "16", "--population", "8", "--eval-every", "5", "--quiet"]


def _cli(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eggroll_np", *argv], capture_output=True, text=True, **kwargs)


def _one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    return err


def _listing(run_dir) -> dict:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


def test_an_out_that_is_a_file_is_refused_in_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    assert main([*ROSENBROCK, "--generations", "2", "--out", str(tmp_path / "file")]) == EXIT_USAGE
    assert "is a file; give a directory" in _one_line(capsys.readouterr().err)
    assert (tmp_path / "file").read_text() == "mine"


def test_a_directory_of_other_files_is_refused_and_stale_temporaries_do_not_count(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert main([*ROSENBROCK, "--generations", "2", "--out", str(tmp_path)]) == EXIT_USAGE
    assert "holds files that are not a run" in _one_line(capsys.readouterr().err)
    stale = tmp_path / "fresh" / ".config.json.0123456789ab.tmp"
    stale.parent.mkdir()
    stale.write_text("{")
    assert main([*ROSENBROCK, "--generations", "2", "--out", str(stale.parent)]) == 0
    assert not stale.exists()  # removed by the next write of config.json


def test_out_of_memory_is_one_line_with_status_1(tmp_path, capsys):
    assert main([*ROSENBROCK, "--dim", str(10**13), "--generations", "2", "--out", str(tmp_path / "r")]) == 1
    assert "out of memory" in _one_line(capsys.readouterr().err)


def test_debug_shows_the_traceback(tmp_path):
    done = _cli(*ROSENBROCK, "--dim", str(10**13), "--generations", "2", "--out", str(tmp_path / "r"), "--debug")
    assert done.returncode != 0 and "Traceback" in done.stderr and "MemoryError" in done.stderr


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_non_finite_fitness_fails_with_status_1_and_says_how_to_continue(tmp_path, capsys):
    run_dir = tmp_path / "nan"
    assert main([*ROSENBROCK, "--sigma", "1e30", "--generations", "5", "--out", str(run_dir)]) == EXIT_FAILED
    err = _one_line(capsys.readouterr().err)
    assert "fitness is NaN or infinite" in err and f"--resume {run_dir} continues from generation 0" in err


def test_a_run_that_died_before_its_first_checkpoint_starts_again_from_generation_0(tmp_path, capsys):
    reference, died = tmp_path / "reference", tmp_path / "died"
    assert main([*ROSENBROCK, "--generations", "12", "--out", str(reference)]) == 0
    assert main([*ROSENBROCK, "--generations", "12", "--out", str(died)]) == 0
    for name in ("checkpoint.npz", "summary.json", "curves.png"):  # as if killed before the first checkpoint
        (died / name).unlink()
    with (died / "metrics.jsonl").open("a") as log:
        log.write('{"generation": 13, "fitn')  # and mid-line
    assert main([*ROSENBROCK, "--generations", "12", "--out", str(died)]) == EXIT_USAGE
    assert f"holds a run; continue it with --resume {died}" in capsys.readouterr().err
    assert main(["train", "--resume", str(died), "--quiet"]) == 0
    for name in ("metrics.jsonl", "config.json"):
        assert (died / name).read_bytes() == (reference / name).read_bytes()
    np.testing.assert_array_equal(
        egg.load(died / "checkpoint.npz").params["x"], egg.load(reference / "checkpoint.npz").params["x"]
    )


def test_resume_refuses_an_edited_config_naming_the_key_and_writes_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*ROSENBROCK, "--generations", "4", "--out", str(run_dir)]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    config["sigma"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(config))
    before = _listing(run_dir)
    assert main(["train", "--resume", str(run_dir), "--generations", "8"]) == EXIT_USAGE
    err = _one_line(capsys.readouterr().err)
    assert "sigma: 0.01 in the checkpoint" in err and ", 0.5 now" in err
    assert _listing(run_dir) == before


def test_resume_refuses_a_digest_consistent_checkpoint_of_other_leaves(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*ROSENBROCK, "--generations", "4", "--out", str(run_dir)]) == 0
    path = run_dir / "checkpoint.npz"
    state = egg.load(path)
    metadata = egg.checkpoint.read_metadata(path)["metadata"]
    wrong = egg.EGGROLL(population_size=8, optimizer=egg.optim.adam(0.01)).init({"x": np.zeros(17, np.float32)})
    egg.save(path, wrong._replace(generation=state.generation), metadata)
    before = _listing(run_dir)
    assert main(["train", "--resume", str(run_dir), "--generations", "8"]) == EXIT_USAGE
    assert "params['x']" in _one_line(capsys.readouterr().err)
    assert _listing(run_dir) == before


def test_every_file_of_a_run_gets_the_same_permissions(tmp_path):
    run_dir = tmp_path / "run"
    assert main([*ROSENBROCK, "--generations", "4", "--out", str(run_dir)]) == 0
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in run_dir.iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_a_plot_that_cannot_be_written_warns_and_leaves_no_partial_png(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def disk_full(self, file, **kwargs):
        file.write(b"\x89PNG\r\n\x1a\n partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", disk_full)
    run_dir = tmp_path / "run"
    assert main([*ROSENBROCK, "--generations", "4", "--out", str(run_dir)]) == 0
    captured = capsys.readouterr()
    assert "eggroll-np: warning: no plot: [Errno 28] No space left on device" in _one_line(captured.err)
    assert "rosenbrock: f " in captured.out
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "checkpoint.npz",
        "config.json",
        "metrics.jsonl",
        "summary.json",
    ]
    assert json.loads((run_dir / "summary.json").read_text())["generations"] == 4
    with pytest.raises(OSError):
        plotting.plot_run(run_dir)


def _killed_between_checkpoints(tmp_path):
    """A run directory as a run to 6 generations leaves it when killed after logging generation 6 but before
    checkpointing it: checkpoint of generation 3, log to generation 6; and the log of the run to 6."""
    run_dir = tmp_path / "run"
    assert main([*ROSENBROCK, "--generations", "3", "--out", str(run_dir)]) == 0
    third = (run_dir / "checkpoint.npz").read_bytes()
    assert main(["train", "--resume", str(run_dir), "--generations", "6", "--quiet"]) == 0
    (run_dir / "checkpoint.npz").write_bytes(third)
    return run_dir, (run_dir / "metrics.jsonl").read_bytes()


def test_a_kill_just_before_the_metrics_rewrite_lands_leaves_the_whole_log(tmp_path, monkeypatch, capsys):
    run_dir, log = _killed_between_checkpoints(tmp_path)
    replace = os.replace

    def killed_at_the_log(source, target):
        if os.path.basename(target) == "metrics.jsonl":
            raise KeyboardInterrupt
        replace(source, target)

    monkeypatch.setattr(os, "replace", killed_at_the_log)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == EXIT_INTERRUPTED
    assert (run_dir / "metrics.jsonl").read_bytes() == log
    assert not any(_files.is_temporary(p) for p in run_dir.iterdir())
    monkeypatch.undo()
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert (run_dir / "metrics.jsonl").read_bytes() == log  # generations 4 to 6 dropped, then run again


def test_ctrl_c_and_sigterm_checkpoint_the_last_completed_generation(tmp_path):
    reference = tmp_path / "reference"
    assert (
        _cli(*ROSENBROCK, "--generations", "3000", "--checkpoint-every", "1000", "--out", str(reference)).returncode
        == 0
    )
    for signum, status in [(signal.SIGINT, EXIT_INTERRUPTED), (signal.SIGTERM, EXIT_TERMINATED)]:
        run_dir = tmp_path / signum.name
        argv = [*ROSENBROCK, "--generations", "3000", "--checkpoint-every", "1000", "--out", str(run_dir)]
        process = subprocess.Popen([sys.executable, "-m", "eggroll_np", *argv], stderr=subprocess.PIPE, text=True)
        while not (run_dir / "metrics.jsonl").exists() or (run_dir / "metrics.jsonl").stat().st_size < 20_000:
            assert process.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.01)
        process.send_signal(signum)
        err = process.communicate(timeout=60)[1]
        assert process.returncode == status, err
        assert "interrupted after generation" in _one_line(err) and f"--resume {run_dir}" in err
        generation = egg.load(run_dir / "checkpoint.npz").generation
        last = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        assert 0 < generation < 1000 and last["generation"] in (generation, generation + 1)
        assert f"after generation {generation}," in err
        assert _cli("train", "--resume", str(run_dir)).returncode == 0
        assert (run_dir / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()
        np.testing.assert_array_equal(
            egg.load(run_dir / "checkpoint.npz").params["x"], egg.load(reference / "checkpoint.npz").params["x"]
        )


def _in_namespace(script: str) -> subprocess.CompletedProcess | None:
    """Run `script` with sh as root of a new user and mount namespace (tmpfs mounts allowed), or None."""
    if shutil.which("unshare") is None:
        return None
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True, text=True
    )
    return None if "unshare:" in done.stderr or "mount:" in done.stderr else done


def test_a_full_disk_leaves_the_previous_checkpoint_loadable_and_prints_one_line(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    run_dir = mount / "run"
    argv = [*ROSENBROCK, "--dim", "2000", "--generations", "100000", "--checkpoint-every", "20", "--out", str(run_dir)]
    command = " ".join([sys.executable, "-m", "eggroll_np", *argv])
    script = (
        f"mount -t tmpfs -o size=256k tmpfs {mount} && {command}; echo status=$?; "
        f"cp {run_dir}/checkpoint.npz {tmp_path}/kept.npz; ls -a {run_dir}"
    )
    done = _in_namespace(script)
    if done is None:
        pytest.skip("this machine does not allow a tmpfs mount in a user namespace (unshare --user --mount)")
    assert "status=1" in done.stdout, done.stdout + done.stderr
    assert "No space left on device" in _one_line(done.stderr)
    assert not any(_files.is_temporary(type(tmp_path)(name)) for name in done.stdout.split())
    assert egg.load(tmp_path / "kept.npz").generation % 20 == 0


def test_a_read_only_file_system_is_one_line_with_status_1(tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    command = " ".join(
        [sys.executable, "-m", "eggroll_np", *ROSENBROCK, "--generations", "2", "--out", str(mount / "r")]
    )
    done = _in_namespace(f"mount -t tmpfs tmpfs {mount} && mount -o remount,ro {mount} && {command}; echo status=$?")
    if done is None:
        pytest.skip("this machine does not allow a tmpfs mount in a user namespace (unshare --user --mount)")
    assert "status=1" in done.stdout, done.stdout + done.stderr
    assert "Read-only file system" in _one_line(done.stderr)


def test_an_out_that_cannot_be_written_is_one_line_with_status_1():
    locked = tempfile.mkdtemp(prefix="eggroll-locked-")  # outside pytest's 0700 tree, so another user reaches it
    try:
        os.chmod(locked, 0o555)
        command = [sys.executable, "-m", "eggroll_np", *ROSENBROCK, "--generations", "2", "--out", f"{locked}/run"]
        if os.geteuid() == 0:  # root writes anywhere: run as nobody
            if shutil.which("setpriv") is None:
                pytest.skip("running as root without setpriv to drop to another user")
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == EXIT_FAILED, done.stderr
        assert "Permission denied" in _one_line(done.stderr)
        assert os.listdir(locked) == []
    finally:
        os.chmod(locked, 0o755)
        shutil.rmtree(locked)

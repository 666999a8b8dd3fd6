"""The text task end to end on tiny settings: it runs from the command line, reports held-out bits/byte beside
the n-gram baselines, refuses corpora too short for its settings, and records which corpus it was trained on."""

import json

import numpy as np
import pytest

import eggroll_np as egg
from eggroll_np import text
from eggroll_np.cli import main
from eggroll_np.egg_model import LOGIT_UNIT
from eggroll_np.tasks import text as tasks_text
from eggroll_np.tasks.text import TextTask
from eggroll_np.training import run_config, train

TINY = ["train", "text", "--population", "16", "--width", "8", "--sequence-length", "8", "--sequences", "4"]
QUIET = ["--eval-every", "2", "--quiet"]


def test_train_text_reports_held_out_bits_per_byte_beside_the_baselines(tmp_path):
    run_dir = tmp_path / "run"
    assert main([*TINY, *QUIET, "--generations", "3", "--out", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    train, test = text.split(text.default_corpus())
    reference = text.baselines(train, test)
    assert summary["unigram_bits_per_byte"] == reference.unigram_bits_per_byte
    assert summary["bigram_bits_per_byte"] == reference.bigram_bits_per_byte
    assert summary["test_bits_per_byte"] > 0 and summary["metric"] == "test_bits_per_byte"
    config = json.loads((run_dir / "config.json").read_text())
    assert config["text_sha256"] == text.sha256(text.default_corpus()) and config["optimizer"] == "integer"
    state = egg.load(run_dir / "checkpoint.npz")
    assert all(value.dtype == np.int8 for value in state.params.values())


def test_a_corpus_too_short_for_the_settings_is_refused_in_one_line(tmp_path, capsys):
    for name, content in [("empty", b""), ("one", b"x"), ("short.bin", bytes(range(20)))]:
        path = tmp_path / name
        path.write_bytes(content)
        assert main([*TINY, *QUIET, "--generations", "1", "--text", str(path), "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert f"has {len(content)} bytes" in err and err.count("\n") == 1
        assert not (tmp_path / "r").exists()


def test_a_binary_corpus_trains_and_a_resume_on_another_corpus_is_refused(tmp_path, capsys):
    corpus = tmp_path / "corpus.bin"
    corpus.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    run_dir = tmp_path / "run"
    assert main([*TINY, *QUIET, "--generations", "2", "--text", str(corpus), "--out", str(run_dir)]) == 0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 7.5 < summary["unigram_bits_per_byte"] <= 8.1  # uniform bytes: about 8 bits each
    corpus.write_bytes(corpus.read_bytes()[::-1])
    assert main(["train", "--resume", str(run_dir), "--generations", "4", "--quiet"]) == 2
    assert "but this run was trained on" in capsys.readouterr().err


@pytest.mark.slow
def test_a_tiny_configuration_lowers_held_out_bits_per_byte_beyond_the_noise_of_its_evaluation(tmp_path):
    settings = dict(population_size=256, width=32, layers=1, sequence_length=32, generations=20, eval_every=20)
    config = run_config("text", {**settings, "learning_rate": 0.05, "lr_schedule": "constant"})
    train(config, tmp_path, progress=False, echo=lambda line: None)
    task = TextTask(config, np, None, np.float32)
    final = egg.load(tmp_path / "checkpoint.npz").params

    def per_window(params):
        ll = task.model.log_likelihood(egg.MeanOps(params), task.held_out)
        return -ll.astype(np.float64) / (LOGIT_UNIT * task.length)

    drop = per_window(task.init_params(config["seed"])) - per_window(final)  # paired over the 64 windows
    standard_error = drop.std(ddof=1) / np.sqrt(drop.size)
    assert drop.mean() > 3 * standard_error, (drop.mean(), standard_error)


def test_every_evaluation_shows_a_sample_and_the_plot_draws_only_numbers(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main([*TINY, "--eval-every", "2", "--generations", "4", "--out", str(run_dir)]) == 0
    samples = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  sample: ")]
    assert len(samples) == 2
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    evaluated = [r for r in records if "test_bits_per_byte" in r]
    assert [r["generation"] for r in evaluated] == [0, 2, 4]
    _, held_out = text.split(text.default_corpus())
    prompt = repr(held_out[: tasks_text.PROMPT_BYTES])[2:-1]
    for record in evaluated:
        assert record["sample"].startswith(prompt) and len(record["sample"]) >= len(prompt) + tasks_text.SAMPLE_BYTES
    assert samples[-1] == f"  sample: {evaluated[-1]['sample']}"
    assert (run_dir / "curves.png").stat().st_size > 0


def test_model_float_trains_the_float_twin_with_adam(tmp_path):
    run_dir = tmp_path / "run"
    assert main([*TINY, *QUIET, "--model", "float", "--generations", "3", "--out", str(run_dir)]) == 0
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["model"], config["optimizer"], config["shaping"]) == ("float", "adam", "centered_rank")
    state = egg.load(run_dir / "checkpoint.npz")
    assert all(value.dtype == np.float32 for value in state.params.values())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert 0 < summary["test_bits_per_byte"] < 16  # in bits, not in EGG's 1/16-bit units


def test_bad_model_and_dtype_are_refused_in_one_line(tmp_path, capsys):
    for flags, message in [(["--model", "int4"], "model='int4'"), (["--dtype", "float64"], "--dtype float64")]:
        assert main([*TINY, *QUIET, *flags, "--generations", "1", "--out", str(tmp_path / "r")]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert not (tmp_path / "r").exists()

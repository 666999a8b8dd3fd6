"""Byte-level text data: the default corpus, the held-out split, the seeded windows, the corpus checks, and the
n-gram baselines against a hand computation."""

import hashlib
import itertools
import math
from collections import Counter
from pydoc_data.topics import topics

import numpy as np
import pytest

from eggroll_np import text

TOY = b"abracadabra" * 20 + b"cadabraz!"
RANDOM = np.random.default_rng(0).integers(0, 256, 200_000).astype(np.uint8).tobytes()
ZIPF = np.random.default_rng(0).choice(256, 2000, p=1 / np.arange(1, 257) / np.sum(1 / np.arange(1, 257)))


def hand_unigram(train: bytes, test: bytes, beta: float) -> float:
    """−(1/n) Σ log2 (c(b) + β) / (T + 256 β), one test byte at a time."""
    counts = Counter(train)
    return -math.fsum(math.log2((counts[b] + beta) / (len(train) + 256 * beta)) for b in test) / len(test)


def hand_bigram(train: bytes, test: bytes, gamma: float, beta: float) -> float:
    """The first test byte by the unigram, each other by (c(a, b) + 256 γ p_uni(b)) / (c(a) + 256 γ)."""
    counts, pairs, contexts = Counter(train), Counter(itertools.pairwise(train)), Counter(train[:-1])

    def unigram(b):
        return (counts[b] + beta) / (len(train) + 256 * beta)

    logs = [math.log2(unigram(test[0]))]
    for a, b in itertools.pairwise(test):
        logs.append(math.log2((pairs[a, b] + 256 * gamma * unigram(b)) / (contexts[a] + 256 * gamma)))
    return -math.fsum(logs) / len(test)


# ---- corpus ---------------------------------------------------------------------------------------------


def test_default_corpus_is_english_deterministic_and_its_digest_is_sha256():
    data = text.default_corpus()
    assert len(data) > 100_000 and data == text.default_corpus()
    first, second = sorted(topics)[:2]  # the texts in the order of their keys, joined by a blank line
    assert data.startswith((topics[first] + "\n\n" + topics[second] + "\n\n").encode("utf-8"))
    assert len(data) == sum(len(t.encode("utf-8")) for t in topics.values()) + 2 * (len(topics) - 1)
    assert text.sha256(data) == hashlib.sha256(data).hexdigest()
    assert text.sha256(data) != text.sha256(data[:-1])


def test_read_corpus_returns_any_bytes_and_names_a_file_it_cannot_read(tmp_path):
    binary = bytes(range(256)) * 3
    (tmp_path / "binary.bin").write_bytes(binary)
    assert text.read_corpus(tmp_path / "binary.bin") == binary
    for path in (tmp_path / "missing.txt", tmp_path):
        with pytest.raises(ValueError, match=f"cannot read the corpus '{path}'"):
            text.read_corpus(path)


def test_check_corpus_refuses_a_corpus_too_short_for_a_window_and_a_held_out_window(tmp_path):
    (tmp_path / "short.bin").write_bytes(bytes(range(256))[:50])
    (tmp_path / "long.bin").write_bytes(RANDOM[:1001])
    short = text.read_corpus(tmp_path / "short.bin")
    for data in (b"", b"x", short, RANDOM[:1000]):
        with pytest.raises(ValueError, match=r"sequence length 100 needs at least 1001 bytes.*use a longer corpus"):
            text.check_corpus(data, sequence_length=100, name="short.bin")
    # 1001 bytes: a held-out split of ⌈100.1⌉ = 101 bytes and 900 to train on.
    text.check_corpus(text.read_corpus(tmp_path / "long.bin"), sequence_length=100, name="long.bin")
    with pytest.raises(ValueError, match="at least 11 bytes"):
        text.check_corpus(b"x" * 10, sequence_length=1, name="x")
    text.check_corpus(b"x" * 11, sequence_length=1, name="x")
    with pytest.raises(ValueError, match="at least 12 bytes"):  # the training side binds: ⌈0.75 · 11⌉ = 9, 2 left
        text.check_corpus(b"x" * 8, sequence_length=2, name="x", test_fraction=0.75)


def test_split_holds_out_the_contiguous_tail_of_the_ceiling_of_the_fraction():
    for size, fraction, held in ((10, 0.1, 1), (11, 0.1, 2), (1000, 0.25, 250), (len(TOY), 0.1, 23)):
        data = RANDOM[:size]
        train, test = text.split(data, fraction)
        assert (len(train), len(test)) == (size - held, held) and train + test == data
    for fraction in (0, 1, -0.1, 1.5):
        with pytest.raises(ValueError, match="test_fraction"):
            text.split(TOY, fraction)


# ---- windows --------------------------------------------------------------------------------------------


def test_windows_are_a_pure_function_of_seed_and_generation_and_slices_of_the_data():
    data = bytes(range(256))  # a window's first byte is its offset
    batch = text.windows(data, seed=3, generation=7, count=5000, length=10)
    assert batch.shape == (5000, 11) and batch.dtype == np.uint8
    offsets = batch[:, 0].astype(int)
    np.testing.assert_array_equal(offsets, np.random.default_rng([3, 7]).integers(0, 246, 5000))
    np.testing.assert_array_equal(batch, offsets[:, None] + np.arange(11))
    assert offsets.min() == 0 and offsets.max() == 256 - 10 - 1
    np.testing.assert_array_equal(batch, text.windows(data, seed=3, generation=7, count=5000, length=10))
    assert not np.array_equal(batch, text.windows(data, seed=3, generation=8, count=5000, length=10))
    assert not np.array_equal(batch, text.windows(data, seed=4, generation=7, count=5000, length=10))
    with pytest.raises(ValueError, match="fewer than a window"):
        text.windows(data[:10], seed=0, generation=0, count=1, length=10)


def test_evaluation_windows_are_evenly_spaced_from_the_start_to_the_end_of_the_held_out_split():
    _, test = text.split(bytes(range(256)) * 4 + bytes(range(256)), 0.2)  # test: bytes 0 … 255
    batch = text.evaluation_windows(test, length=10, count=5)
    assert batch.shape == (5, 11) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[:, 0], [0, 61, 122, 183, 245])  # ⌊i · 245 / 4⌋
    np.testing.assert_array_equal(batch, batch[:, :1] + np.arange(11))
    np.testing.assert_array_equal(batch, text.evaluation_windows(test, length=10, count=5))
    np.testing.assert_array_equal(text.evaluation_windows(test, length=10, count=1)[:, 0], [0])


# ---- baselines ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("beta", "gamma"), [(0.01, 0.05), (1.0, 3.0), (1e-4, 100.0)])
def test_baselines_equal_a_hand_computation(beta, gamma):
    train, test = text.split(TOY, 0.1)
    assert b"z" in test and b"z" not in train
    assert text.unigram_bits(train, test, beta) == pytest.approx(hand_unigram(train, test, beta), rel=1e-12)
    assert text.bigram_bits(train, test, gamma, beta) == pytest.approx(hand_bigram(train, test, gamma, beta), rel=1e-12)


@pytest.mark.parametrize("corpus", ["english", "zipf"])
def test_chosen_smoothing_maximizes_the_validation_likelihood_over_the_grid(corpus):
    data = (
        text.default_corpus()[:20_000] if corpus == "english" else ZIPF.astype(np.uint8).tobytes()
    )  # p(k) ∝ 1 / (k + 1)
    train, test = text.split(data)
    fit, validation = text.split(train, 0.1)
    result = text.baselines(train, test)
    unigram = [hand_unigram(fit, validation, b) for b in text.SMOOTHING_GRID]
    assert result.unigram_smoothing == text.SMOOTHING_GRID[int(np.argmin(unigram))]
    bigram = [hand_bigram(fit, validation, g, result.unigram_smoothing) for g in text.SMOOTHING_GRID]
    assert result.bigram_smoothing == text.SMOOTHING_GRID[int(np.argmin(bigram))]
    for chosen in (result.unigram_smoothing, result.bigram_smoothing):  # optima inside the grid, not at an end
        assert min(text.SMOOTHING_GRID) < chosen < max(text.SMOOTHING_GRID)
    assert result.unigram_bits_per_byte == pytest.approx(hand_unigram(train, test, result.unigram_smoothing))
    assert result.bigram_bits_per_byte == pytest.approx(
        hand_bigram(train, test, result.bigram_smoothing, result.unigram_smoothing)
    )


def test_uniform_random_bytes_cost_eight_bits_and_a_bigram_does_not_help():
    result = text.baselines(*text.split(RANDOM))
    # Fitting 256 frequencies to T = 162 000 bytes costs ≈ 255 / (2 ln 2 T) ≈ 0.001 bit; the sampling noise
    # of the 20 000-byte held-out mean is ≈ 0.0005 bit: 0.01 is many times either.
    assert abs(result.unigram_bits_per_byte - 8) < 0.01
    assert result.bigram_bits_per_byte > result.unigram_bits_per_byte - 0.002


def test_english_text_bigram_beats_unigram_beats_eight_bits():
    result = text.baselines(*text.split(text.default_corpus(), 0.1))
    assert result.bigram_bits_per_byte < result.unigram_bits_per_byte - 0.5
    assert result.unigram_bits_per_byte < 6

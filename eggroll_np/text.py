"""Byte-level text data: a corpus every machine has, a fixed held-out split, minibatches that are a pure
function of (seed, generation), and exact n-gram baselines in bits per byte.

    data = default_corpus()
    check_corpus(data, sequence_length=100, name="default corpus")
    train, test = split(data)
    batch = windows(train, seed=0, generation=t, count=64, length=100)   # (64, 101) uint8
    reference = baselines(train, test)

Bits per byte of a model on a byte string x_0 … x_{n−1} is −(1/n) Σ_i log2 p(x_i | x_{<i}).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import _checks

__all__ = [
    "SMOOTHING_GRID",
    "VALIDATION_FRACTION",
    "Baselines",
    "baselines",
    "bigram_bits",
    "check_corpus",
    "default_corpus",
    "evaluation_windows",
    "read_corpus",
    "sha256",
    "split",
    "unigram_bits",
    "windows",
]

SMOOTHING_GRID = tuple(10.0 ** (k / 4 - 4) for k in range(25))
"""The candidate smoothing strengths β and γ: 10^-4, 10^-3.75, …, 10^2 (25 log-spaced points)."""

VALIDATION_FRACTION = 0.1
"""The tail of the training split on which `baselines` chooses β and γ."""


def default_corpus() -> bytes:
    """CPython's English help text (`pydoc_data.topics.topics`, the pages of `help("if")` and the like): the
    texts in the order of their sorted keys, joined with "\\n\\n", UTF-8 encoded. About 0.5 MB, present
    wherever Python is; it changes between Python versions, and so does its `sha256`."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics)).encode("utf-8")


def sha256(data: bytes) -> str:
    """The SHA-256 hex digest of `data`, to record which corpus a run was trained on."""
    return hashlib.sha256(data).hexdigest()


def read_corpus(path) -> bytes:
    """The bytes of the file at `path`, whatever they are (text or binary). A file that cannot be read raises
    ValueError naming it and saying why."""
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ValueError(f"cannot read the corpus {str(path)!r}: {error.strerror or error}") from error


def _test_size(size: int, test_fraction: float) -> int:
    return math.ceil(test_fraction * size)


def _check_fraction(test_fraction) -> float:
    return _checks.real("test_fraction", test_fraction, 0, 1, above=True, below=True)


def check_corpus(data: bytes, *, sequence_length: int, name: str, test_fraction: float = 0.1) -> None:
    """Refuse (ValueError) a corpus whose `split` cannot hold both a training window and a held-out split of
    sequence_length + 1 bytes each; the message gives the smallest size that can."""
    length = _checks.integer("sequence_length", sequence_length, 1)
    test_fraction = _check_fraction(test_fraction)

    def fits(size: int) -> bool:
        test = _test_size(size, test_fraction)
        return test >= length + 1 and size - test >= length + 1

    if fits(len(data)):
        return
    # Both sizes grow by at most 1 per byte, so from below the two necessary bounds the first size that fits
    # is a few steps away.
    minimum = max(1, math.floor(length / test_fraction) - 1, math.floor((length + 1) / (1 - test_fraction)) - 1)
    while not fits(minimum):
        minimum += 1
    raise ValueError(
        f"{name} has {len(data)} bytes; sequence length {length} needs at least {minimum} bytes (a training "
        f"window of {length + 1} bytes and a held-out split, the last "
        f"{100 * test_fraction:g} %, of at least {length + 1}): use a longer corpus or a shorter sequence length"
    )


def split(data: bytes, test_fraction: float = 0.1) -> tuple[bytes, bytes]:
    """(train, test): the held-out split `test` is the contiguous tail of ⌈test_fraction · len(data)⌉ bytes,
    the same for every seed; `train` is the rest."""
    test_fraction = _check_fraction(test_fraction)
    cut = len(data) - _test_size(len(data), test_fraction)
    return data[:cut], data[cut:]


def _window_view(data: bytes, length: int, what: str) -> np.ndarray:
    """Every window of length + 1 consecutive bytes of `data`, shape (len(data) − length, length + 1)."""
    length = _checks.integer("length", length, 1)
    if len(data) < length + 1:
        raise ValueError(f"{what} has {len(data)} bytes, fewer than a window of length + 1 = {length + 1}")
    return np.lib.stride_tricks.sliding_window_view(np.frombuffer(data, dtype=np.uint8), length + 1)


def windows(data: bytes, *, seed: int, generation: int, count: int, length: int) -> np.ndarray:
    """`count` windows of length + 1 consecutive bytes (inputs and their next-byte targets), shape
    (count, length + 1), uint8. The offsets are uniform on [0, len(data) − length − 1], drawn by
    `np.random.default_rng([seed, generation])`: the batch is a pure function of the arguments."""
    seed = _checks.integer("seed", seed, 0)
    generation = _checks.integer("generation", generation, 0)
    count = _checks.integer("count", count, 1)
    view = _window_view(data, length, "the data")
    offsets = np.random.default_rng([seed, generation]).integers(0, len(view), size=count)
    return view[offsets].copy()


def evaluation_windows(data: bytes, *, length: int, count: int) -> np.ndarray:
    """`count` evenly spaced windows of length + 1 bytes of `data` (the held-out split), shape
    (count, length + 1), uint8, for a deterministic evaluation: window i starts at ⌊i · (len(data) − length −
    1) / (count − 1)⌋, so the first starts at 0 and the last ends at the end (one window: offset 0)."""
    count = _checks.integer("count", count, 1)
    view = _window_view(data, length, "the held-out split")
    offsets = np.arange(count) * (len(view) - 1) // max(count - 1, 1)
    return view[offsets].copy()


# ---- n-gram baselines -----------------------------------------------------------------------------------


class _Counts(NamedTuple):
    unigram: np.ndarray  # c(b), shape (256,)
    bigram: np.ndarray  # c(a, b): how often b follows a, shape (256, 256)
    first: int  # the first byte
    size: int


def _counts(data: bytes, what: str) -> _Counts:
    if not data:
        raise ValueError(f"the {what} is empty")
    x = np.frombuffer(data, dtype=np.uint8).astype(np.intp)
    unigram = np.bincount(x, minlength=256).astype(np.float64)
    bigram = np.bincount(x[:-1] * 256 + x[1:], minlength=256 * 256).reshape(256, 256).astype(np.float64)
    return _Counts(unigram, bigram, int(x[0]), len(x))


def _unigram_probabilities(fit: _Counts, beta: float) -> np.ndarray:
    return (fit.unigram + beta) / (fit.size + 256 * beta)


def _unigram_score(fit: _Counts, held: _Counts, beta: float) -> float:
    return float(-(held.unigram @ np.log2(_unigram_probabilities(fit, beta))) / held.size)


def _bigram_score(fit: _Counts, held: _Counts, gamma: float, beta: float) -> float:
    unigram = _unigram_probabilities(fit, beta)
    # c(a) = Σ_b c(a, b) counts a as a context (the last byte is none), so each row sums to 1.
    bigram = (fit.bigram + gamma * 256 * unigram) / (fit.bigram.sum(axis=1, keepdims=True) + gamma * 256)
    return float(-(np.log2(unigram[held.first]) + np.sum(held.bigram * np.log2(bigram))) / held.size)


def unigram_bits(train: bytes, test: bytes, beta: float) -> float:
    """Bits per byte of `test` under the unigram model of `train` with additive smoothing β > 0:
    p(b) = (c(b) + β) / (T + 256 β), c(b) the count of b in train, T = len(train)."""
    beta = _checks.real("beta", beta, 0, above=True)
    return _unigram_score(_counts(train, "training split"), _counts(test, "held-out split"), beta)


def bigram_bits(train: bytes, test: bytes, gamma: float, beta: float) -> float:
    """Bits per byte of `test` under the bigram model of `train`, a Dirichlet prior of strength γ > 0 toward
    the unigram p_uni of `unigram_bits` (smoothing β): p(b | a) = (c(a, b) + 256 γ p_uni(b)) / (c(a) + 256 γ),
    c(a, b) the count of b right after a in train, c(a) = Σ_b c(a, b). The first byte of `test` has no
    context and is scored by p_uni; every other byte is conditioned on the test byte before it."""
    gamma = _checks.real("gamma", gamma, 0, above=True)
    beta = _checks.real("beta", beta, 0, above=True)
    return _bigram_score(_counts(train, "training split"), _counts(test, "held-out split"), gamma, beta)


class Baselines(NamedTuple):
    """Bits per byte on the held-out split of the unigram and bigram baselines, and their smoothing β, γ."""

    unigram_bits_per_byte: float
    bigram_bits_per_byte: float
    unigram_smoothing: float
    bigram_smoothing: float


def baselines(train: bytes, test: bytes) -> Baselines:
    """The unigram and bigram baselines of `train`, scored on `test`. β and γ are chosen without `test`: the
    counts are fitted on `train` less its last VALIDATION_FRACTION (`split(train, VALIDATION_FRACTION)`),
    β is the value of SMOOTHING_GRID with the fewest unigram bits per byte on that tail, then γ the one with
    the fewest bigram bits given β (ties: the smaller value). The counts are then refitted on all of `train`."""
    rest, tail = split(train, VALIDATION_FRACTION)
    fit, validation = _counts(rest, "training split less its validation tail"), _counts(tail, "validation tail")
    beta = min(SMOOTHING_GRID, key=lambda b: _unigram_score(fit, validation, b))
    gamma = min(SMOOTHING_GRID, key=lambda g: _bigram_score(fit, validation, g, beta))
    train_counts, test_counts = _counts(train, "training split"), _counts(test, "held-out split")
    return Baselines(
        _unigram_score(train_counts, test_counts, beta),
        _bigram_score(train_counts, test_counts, gamma, beta),
        beta,
        gamma,
    )

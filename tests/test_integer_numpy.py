"""The NumPy fast paths of the integer model (`_integer_numpy`) give the integers of the portable int32 paths
and of an int64 reference: random and saturating inputs, the edge of each float32 exactness bound, and the
fall-back beyond it."""

from typing import NamedTuple
from unittest import mock

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import _integer_numpy, integer
from eggroll_np.egg_model import log2_probabilities, norm
from eggroll_np.forward import _linear_layout
from eggroll_np.integer import divisor


class Factors(NamedTuple):
    A: np.ndarray
    B: np.ndarray


def _int8(rng, shape, saturated: bool):
    if saturated:
        return rng.choice(np.array([-127, 127], dtype=np.int8), size=shape)
    return rng.integers(-127, 128, size=shape).astype(np.int8)


def _reference(x, weight, factors, per_direction, shift, per_member, rows):
    """clip(⌊(2^σ̂ x Wᵀ + sᵢ (x Bₖ) Aₖᵀ) / (2^σ̂ d(n))⌋, ±127) in int64, member by member: (N·rows, m)."""
    a, b = factors.A.astype(np.int64), factors.B.astype(np.int64)
    n = weight.shape[1]
    out = []
    for k in range(a.shape[0]):
        for j, sign in enumerate([1, -1][:per_direction]):
            member = k * per_direction + j
            xi = x[member * rows : (member + 1) * rows] if per_member else x
            xi = xi.astype(np.int64)
            z = (xi @ weight.astype(np.int64).T) * 2**shift + sign * (xi @ b[k]) @ a[k].T
            out.append(np.clip(np.floor_divide(z, divisor(n) << shift), -127, 127))
    return np.concatenate(out)


@given(
    m=st.integers(1, 12),
    n=st.sampled_from([1, 3, 16, 64, 128, 256, 516]),
    rank=st.integers(1, 2),
    shift=st.integers(0, 8),
    per_direction=st.sampled_from([1, 2]),
    per_member=st.booleans(),
    saturated=st.booleans(),
    block_bytes=st.sampled_from([4, 256, _integer_numpy._BLOCK_BYTES]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=200)
def test_the_blocked_float32_population_linear_equals_the_int64_reference(
    m, n, rank, shift, per_direction, per_member, saturated, block_bytes, seed
):
    assume(_integer_numpy.applies(n, shift, rank))  # beyond, the portable path runs (tested below)
    rng = np.random.default_rng(seed)
    directions, rows = 7, 5
    factors = Factors(
        rng.integers(-16, 17, size=(directions, m, rank)).astype(np.int8),
        rng.integers(-16, 17, size=(directions, n, rank)).astype(np.int8),
    )
    weight = _int8(rng, (m, n), saturated)
    x = _int8(rng, (directions * per_direction * rows if per_member else rows, n), saturated)
    with mock.patch.object(_integer_numpy, "_BLOCK_BYTES", block_bytes):  # one, a few or all directions a block
        got = _integer_numpy.population_linear_numpy(x, weight, factors, per_direction, shift, per_member, rows)
    assert got.dtype == np.int8
    expected = _reference(x, weight, factors, per_direction, shift, per_member, rows)
    np.testing.assert_array_equal(got, expected)


def test_the_bounds_hold_at_their_edge_with_the_largest_factors():
    """n = 516 at rank 1 and σ̂ = 4 is the widest fan-in the fast path takes; every product at its bound."""
    assert _integer_numpy.applies(516, 4, 1) and not _integer_numpy.applies(517, 4, 1)
    assert not _integer_numpy.applies(516, 4, 2) and _integer_numpy.applies(1040) and not _integer_numpy.applies(1041)
    assert not _integer_numpy.applies(64, 12, 1)  # 128 · d · 2^σ̂ past 2²⁴
    rng = np.random.default_rng(0)
    n, m = 516, 4
    factors = Factors(np.full((2, m, 1), 16, np.int8), np.full((2, n, 1), -16, np.int8))
    factors.A[1] = -16
    x = np.full((2 * 2 * 3, n), 127, np.int8)
    x[1::2] = -127
    for weight in (np.full((m, n), 127, np.int8), np.full((m, n), -127, np.int8), _int8(rng, (m, n), False)):
        got = _integer_numpy.population_linear_numpy(x, weight, factors, 2, 4, True, 3)
        np.testing.assert_array_equal(got, _reference(x, weight, factors, 2, 4, True, 3))


def _tie_weights(m, n):
    """Weights whose x Wᵀ lands exactly on multiples of d(n) and one below, for x = 1: floor's edge cases."""
    d = divisor(n)
    targets = np.arange(-3, 4)[:m] * d + np.array([0, -1, 1, 0, -1, 1, 0][:m])
    weight = np.zeros((m, n), np.int16)
    for row, total in enumerate(targets):
        sign = 1 if total >= 0 else -1
        remaining = abs(int(total))
        for col in range(n):
            step = min(127, remaining)
            weight[row, col] = sign * step
            remaining -= step
    return weight.astype(np.int8)


@pytest.mark.parametrize("n", [3, 128, 256])
def test_results_on_the_exact_floor_boundaries_match_the_portable_path(n):
    es = egg.EGGROLL(population_size=4, sigma=1 / 16, optimizer=egg.optim.integer_step(), shaping="sign", seed=1)
    pop = es.ask(es.init({"w": _tie_weights(7, n)}))
    x = np.ones((4, 2, n), np.int8)
    checked = _linear_layout(pop, "w", x, False)
    fast = integer.population_linear(pop, x, *checked)
    portable = integer.population_linear(pop, x, *checked, portable=True)
    np.testing.assert_array_equal(fast, portable)
    mean = integer.mean_linear(np, pop.params["w"], x[0], "w")
    np.testing.assert_array_equal(mean, integer.mean_linear(np, pop.params["w"], x[0], "w", portable=True))
    np.testing.assert_array_equal(mean[0], np.clip(np.arange(-3, 4) - np.array([0, 1, 0, 0, 1, 0, 0]), -127, 127))


@given(
    n=st.sampled_from([1, 7, 64, 128, 1040, 1041]),
    rows=st.integers(1, 300),
    saturated=st.booleans(),
    block_bytes=st.sampled_from([4, 256, _integer_numpy._BLOCK_BYTES]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=100)
def test_the_blocked_mean_linear_equals_the_portable_one(n, rows, saturated, block_bytes, seed):
    rng = np.random.default_rng(seed)
    weight, x = _int8(rng, (5, n), saturated), _int8(rng, (rows, n), saturated)
    with mock.patch.object(_integer_numpy, "_BLOCK_BYTES", block_bytes):
        fast = integer.mean_linear(np, weight, x, "w")
    np.testing.assert_array_equal(fast, integer.mean_linear(np, weight, x, "w", portable=True))


def test_past_the_bounds_the_population_linear_falls_back_to_the_portable_path():
    rng = np.random.default_rng(3)
    es = egg.EGGROLL(population_size=4, sigma=1 / 16, optimizer=egg.optim.integer_step(), shaping="sign", seed=2)
    for n in (517, 1040):
        assert not _integer_numpy.applies(n, 4, 1)
        pop = es.ask(es.init({"w": _int8(rng, (3, n), False)}))
        x = _int8(rng, (4, 2, n), False)
        checked = _linear_layout(pop, "w", x, False)
        np.testing.assert_array_equal(
            pop.linear("w", x, shared=False), integer.population_linear(pop, x, *checked, portable=True)
        )


@given(
    width=st.sampled_from([1, 2, 3, 64, 100, 4095]),
    kind=st.sampled_from(["random", "saturated", "small", "zero"]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=100)
def test_the_float32_norm_equals_the_integer_one(width, kind, seed):
    rng = np.random.default_rng(seed)
    shape = (3, width)
    if kind == "small":  # mean |v| below 1: the divisor's floor at 1
        v = rng.integers(-1, 2, size=shape).astype(np.int8)
    elif kind == "zero":
        v = np.zeros(shape, np.int8)
    else:
        v = _int8(rng, shape, kind == "saturated")
    np.testing.assert_array_equal(norm(np, v), norm(np, v, portable=True))


def test_the_float32_norm_refuses_widths_past_its_bound():
    with pytest.raises(ValueError, match="exact for widths below 4096"):
        _integer_numpy.norm_numpy(np.zeros((1, 4096), np.int8), 32)
    v = np.random.default_rng(0).integers(-127, 128, size=(2, 4096)).astype(np.int8)
    np.testing.assert_array_equal(norm(np, v), norm(np, v, portable=True))  # the wide norm takes the integer path


@given(
    rows=st.integers(1, 300),
    width=st.sampled_from([1, 2, 256]),
    kind=st.sampled_from(["random", "saturated", "constant"]),
    block_bytes=st.sampled_from([4, 4096, _integer_numpy._BLOCK_BYTES]),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=100)
def test_the_blocked_log_probabilities_equal_the_portable_ones(rows, width, kind, block_bytes, seed):
    rng = np.random.default_rng(seed)
    if kind == "constant":  # every logit equal: S = V · 2¹⁶ exactly
        logits = np.full((rows, width), rng.integers(-127, 128), np.int8)
    else:
        logits = _int8(rng, (rows, width), kind == "saturated")
    targets = rng.integers(0, width, size=rows)
    with mock.patch.object(_integer_numpy, "_BLOCK_BYTES", block_bytes):  # one row, a few or all a block
        fast = log2_probabilities(np, logits, targets)
    np.testing.assert_array_equal(fast, log2_probabilities(np, logits, targets, portable=True))

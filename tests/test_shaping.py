"""Fitness shaping: ranges, sums, invariances and group properties, on every backend."""

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of
from hypothesis import given
from hypothesis import strategies as st

from eggroll_np import shaping

backends = pytest.mark.parametrize("name", ALL_BACKENDS)
# Integer-valued fitness with ties; the increasing maps below are exact on such values in float64 and float32.
int_fitness = st.lists(st.integers(-50, 50), min_size=2, max_size=64)
even_int_fitness = int_fitness.filter(lambda f: len(f) % 2 == 0)
INCREASING_MAPS = [lambda F: 3.0 * F + 7.0, lambda F: F**3, lambda F: 2.0**F]


@backends
@given(F=int_fitness)
def test_centered_ranks_lie_in_half_interval_and_sum_to_zero(name, F):
    b = get_backend(name)
    f = np_of(shaping.centered_rank(b.asarray(np.asarray(F, np.float64))))
    assert f.min() >= -0.5 and f.max() <= 0.5
    assert abs(f.sum()) <= 1e-6 * len(F)
    if len(set(F)) == len(F):
        np.testing.assert_allclose(np.sort(f), np.linspace(-0.5, 0.5, len(F)), atol=1e-6)


@backends
@given(F=int_fitness)
def test_centered_ranks_are_invariant_under_increasing_maps(name, F):
    b = get_backend(name)
    F = np.asarray(F, np.float64)
    reference = np_of(shaping.centered_rank(b.asarray(F)))
    for increasing in INCREASING_MAPS:
        np.testing.assert_array_equal(np_of(shaping.centered_rank(b.asarray(increasing(F)))), reference)


@backends
@given(F=int_fitness)
def test_tied_fitness_gets_equal_centered_ranks_and_order_is_kept(name, F):
    b = get_backend(name)
    F = np.asarray(F, np.float64)
    f = np_of(shaping.centered_rank(b.asarray(F)))
    for i in range(len(F)):
        for j in range(len(F)):
            assert (F[i] == F[j]) == (f[i] == f[j])
            assert (F[i] < F[j]) == (f[i] < f[j])


@backends
@given(
    F=st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=64).filter(lambda f: np.std(f) > 1e-2),
    a=st.floats(1e-2, 1e2),
    c=st.floats(-1e3, 1e3),
)
def test_zscore_is_invariant_under_positive_affine_maps(name, F, a, c):
    """With eps = 0, zscore(aF + c) = zscore(F) up to rounding: the error of each value is a few ulp of
    the largest |F|, |aF + c| relative to the spread, so the bound is 64·u·(max|F|/std + max|aF+c|/(a·std))."""
    b = get_backend(name)
    F = np.asarray(F, np.float64)
    G = a * F + c
    dtype = np.float64 if b.has_float64 else np.float32
    u = np.finfo(dtype).eps
    z = np_of(shaping.zscore(b.asarray(F), eps=0.0))
    zg = np_of(shaping.zscore(b.asarray(G), eps=0.0))
    bound = 64 * u * (np.abs(F).max() / F.std() + np.abs(G).max() / G.std() + 1.0) * max(1.0, np.abs(z).max())
    assert np.abs(z - zg).max() <= bound


@backends
@given(data=st.data(), n_groups=st.integers(1, 8), group_size=st.integers(2, 8))
def test_group_shapings_have_zero_mean_in_every_group(name, data, n_groups, group_size):
    b = get_backend(name)
    F = np.asarray(
        data.draw(st.lists(st.floats(-1e3, 1e3), min_size=n_groups * group_size, max_size=n_groups * group_size))
    )
    for fn in (shaping.group_zscore, shaping.group_center):
        f = np_of(fn(b.asarray(F), group_size=group_size)).reshape(n_groups, group_size)
        scale = np.abs(F).max() / (F.std() + 1e-8) + 1.0
        assert np.abs(f.mean(axis=1)).max() <= 64 * np.finfo(np.float32).eps * scale


def test_group_zscore_uses_each_groups_own_spread_and_group_center_the_global_spread():
    F = np.array([0.0, 2.0, 10.0, 30.0])
    np.testing.assert_allclose(shaping.group_zscore(F, group_size=2), [-1, 1, -1, 1], rtol=1e-7)
    np.testing.assert_allclose(shaping.group_center(F, group_size=2), np.array([-1, 1, -10, 10]) / F.std(), rtol=1e-7)


@backends
@given(F=even_int_fitness)
def test_sign_shaping_compares_antithetic_pairs(name, F):
    b = get_backend(name)
    F = np.asarray(F, np.float64)
    f = np_of(shaping.sign(b.asarray(F)))
    np.testing.assert_array_equal(f[0::2], np.sign(F[0::2] - F[1::2]))
    np.testing.assert_array_equal(f[1::2], -f[0::2])


def test_raw_is_the_identity_and_constant_fitness_shapes_to_zero():
    F = np.full(8, 3.5)
    assert shaping.raw(F) is F
    for fn in (shaping.zscore, shaping.centered_rank, shaping.sign):
        np.testing.assert_array_equal(fn(F), np.zeros(8))
    for fn in (shaping.group_zscore, shaping.group_center):
        np.testing.assert_array_equal(fn(F, group_size=4), np.zeros(8))


def test_shaping_settings_are_checked_with_clear_messages():
    make = shaping.make_shaping
    with pytest.raises(ValueError, match=r"shaping='ranks' must be one of 'raw', .* or a callable F -> f"):
        make("ranks", population_size=8)
    with pytest.raises(TypeError, match=r"shaping=3 must be one of 'raw', .* or a callable F -> f"):
        make(3, population_size=8)
    with pytest.raises(ValueError, match="divides population_size=8"):
        make("group_zscore", population_size=8, group_size=3)
    with pytest.raises(ValueError, match="group_size of at least 2"):
        make("group_center", population_size=8, group_size=0)
    with pytest.raises(ValueError, match="split antithetic pairs"):
        make("group_zscore", population_size=12, group_size=3)
    with pytest.raises(ValueError, match="only applies to"):
        make("zscore", population_size=8, group_size=4)
    with pytest.raises(ValueError, match="only applies to"):
        make(lambda F: F, population_size=8, group_size=4)
    with pytest.raises(ValueError, match="antithetic=True"):
        make("sign", population_size=8, antithetic=False)
    assert make("group_zscore", population_size=12, group_size=3, antithetic=False) is not None

"""The fitness dtype rule: floats keep their dtype, integers widen without loss or are refused, anything
else is refused naming what was given."""

import array_api_strict
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import BACKEND_NAMES, get_backend, np_of

from eggroll_np._fitness import as_fitness

NO_X64 = array_api_strict.Device("no_x64")


@pytest.mark.parametrize("name", BACKEND_NAMES)
def test_integer_fitness_keeps_every_distinct_value_the_widest_float_can_hold(name):
    backend = get_backend(name)
    values = [2**24 + 2, 2**24, -3, 7]  # all exact in float32 and float64
    on_device = backend.xp.asarray(values, dtype=backend.xp.int32, device=backend.device)
    for fitness in (values, np.array(values, np.int64), np.array(values, np.int32), on_device):
        F = as_fitness(fitness, backend.xp, backend.device, 4)
        assert F.dtype == backend.float_dtypes[-1]
        np.testing.assert_array_equal(np_of(F), values)


def test_integers_that_the_float_would_merge_are_refused_naming_two_members():
    message = r"fitness of dtype int64 would lose distinct values as float32.*members 1 and 0 \(16777216 and 16777217\)"
    with pytest.raises(ValueError, match=message + ".*JAX_ENABLE_X64"):
        as_fitness(np.array([2**24 + 1, 2**24]), array_api_strict, NO_X64, 2)
    with pytest.raises(ValueError, match=r"as float64.*\(9007199254740992 and 9007199254740993\)"):
        as_fitness(np.array([2**53 + 1, 2**53]), np, "cpu", 2)
    with pytest.raises(ValueError, match=r"fitness of dtype int32 would lose distinct values as float32"):
        as_fitness(jnp.asarray([2**24 + 1, 2**24], dtype=jnp.int32), jnp, None, 2)
    # Equal integers may share a float: nothing distinct is lost.
    np.testing.assert_array_equal(np.asarray(as_fitness([2**53 + 1, 2**53 + 1], np, "cpu", 2)), [2.0**53] * 2)


def test_narrow_integers_and_booleans_widen_on_the_device_and_floats_stay_as_they_are():
    F = as_fitness(jnp.asarray([1, -2], dtype=jnp.int16), jnp, None, 2)
    assert F.dtype == jnp.float32 and np.asarray(F).tolist() == [1.0, -2.0]
    assert as_fitness(np.array([True, False]), jnp, None, 2).dtype == jnp.float32
    floats = jnp.asarray([0.5, 1.5], dtype=jnp.float32)
    assert as_fitness(floats, jnp, None, 2) is floats  # the params' own library and dtype: no copy
    assert as_fitness(np.array([0.5, 1.5], np.float32), np, "cpu", 2).dtype == np.float32
    assert as_fitness(np.array([0.5, 1.5], np.float16), np, "cpu", 2).dtype == np.float64


def test_float64_fitness_on_a_device_without_it_is_rounded_like_any_computation_there():
    F = as_fitness([0.1, 0.1 + 1e-12], array_api_strict, NO_X64, 2)
    assert F.dtype == array_api_strict.float32
    np.testing.assert_array_equal(np_of(F), np.float32([0.1, 0.1]))

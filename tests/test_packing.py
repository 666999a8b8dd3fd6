"""The told fitness as it travels to Ray replicas: pair signs packed five to a byte round-trip exactly, and
the fitness a replica rebuilds from them shapes to the same weights as the raw fitness, in either direction,
under either nan policy, with ties; any other shaping sends the raw fitness."""

from __future__ import annotations

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given

import eggroll_np as egg
from eggroll_np.distributed.packing import PackedSigns, fitness_to_tell, pack_signs, told_message, unpack_signs
from eggroll_np.shaping import handle_nonfinite


@given(st.lists(st.sampled_from([-1, 0, 1]), min_size=0, max_size=200))
def test_pair_signs_round_trip_in_a_fifth_of_a_byte_each(values):
    signs = np.asarray(values, dtype=np.int8)
    packed = pack_signs(signs)
    assert len(packed.data) == -(-len(values) // 5)
    np.testing.assert_array_equal(unpack_signs(packed), signs)


def test_the_code_is_the_base_3_number_of_the_shifted_digits():
    """byte = Σⱼ (tⱼ + 1)·3ʲ: (1, 0, −1, 1, 1) → 2 + 1·3 + 0·9 + 2·27 + 2·81 = 221; a short run pads with 0s."""
    assert pack_signs(np.array([1, 0, -1, 1, 1])).data == bytes([221])
    assert pack_signs(np.array([-1])).data == bytes([0 + 1 * 3 + 1 * 9 + 1 * 27 + 1 * 81])


@pytest.mark.parametrize("bad", [np.array([2]), np.array([0.5]), np.zeros((2, 2))])
def test_pack_signs_refuses_what_is_not_a_sign_vector(bad):
    with pytest.raises(ValueError, match=r"values in \{-1, 0, 1\}"):
        pack_signs(bad)


fitness_values = st.lists(
    st.one_of(st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf]), st.floats(-1e6, 1e6)), min_size=1, max_size=40
).map(lambda values: np.asarray(values + values[:1] if len(values) % 2 else values, dtype=np.float64))


@given(fitness_values, st.booleans(), st.sampled_from(["float32", "float64"]))
def test_the_fitness_a_replica_tells_shapes_to_the_drivers_weights(F, maximize, dtype):
    """sign(handle(±F')) = sign(handle(±F)) in the replicas' float, ties (0) included; NaN and inf go by the
    nan policy "worst" on the driver, so F' is finite."""
    es = egg.EGGROLL(population_size=F.size, shaping="sign", maximize=maximize, nan_policy="worst")
    message = told_message(es, F, dtype)
    assert isinstance(message, PackedSigns) and message.count == F.size // 2
    told = fitness_to_tell(es, message)
    assert np.isfinite(told).all()

    def weights(values):
        directed = values.astype(dtype) if maximize else -values.astype(dtype)
        return es.shaping(handle_nonfinite(directed, es.nan_policy))

    np.testing.assert_array_equal(weights(told), weights(F))


def test_a_float32_replica_gets_the_sign_of_the_rounded_fitness():
    """Two float64 values that float32 merges are a tie (0) for a float32 replica, a win for a float64 one."""
    es = egg.EGGROLL(population_size=2, shaping="sign")
    F = np.array([1.0 + 2**-40, 1.0])
    assert unpack_signs(told_message(es, F, "float32")).tolist() == [0]
    assert unpack_signs(told_message(es, F, "float64")).tolist() == [1]


def test_any_other_shaping_sends_the_raw_fitness():
    es = egg.EGGROLL(population_size=4, shaping="centered_rank")
    F = np.array([3.0, 1.0, 2.0, 0.5])
    assert told_message(es, F, "float64") is F and fitness_to_tell(es, F) is F

"""Noise records: factors, member perturbations and their determinism."""

import math

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import leaves, noise

backends = pytest.mark.parametrize("name", ALL_BACKENDS)


def _params(shapes, dtype=np.float32, fill=0.0):
    return {name: np.full(shape, fill, dtype) for name, shape in shapes.items()}


def _member_noise(es, params, generation=0):
    """εᵢ·σsᵢ of every member of the population at `generation` (θ = 0, so members are the perturbations)."""
    state = es.init(params)._replace(generation=generation)
    pop = es.ask(state)
    return [{k: np_of(v) for k, v in pop.member(i).items()} for i in range(len(pop))]


def test_an_unknown_noise_kind_or_a_frozen_leaf_has_no_noise():
    plans = leaves.plan_leaves(_params({"w": (3, 4), "f": (2,)}), {"f": "frozen"})
    kwargs = dict(seed=0, epoch=0, directions=range(1), rank=1, dtype=np.float32, dev="cpu")
    with pytest.raises(ValueError, match="noise='normal' must be one of 'gaussian', 'rademacher'"):
        noise.leaf_noise(np, plans["w"], noise="normal", **kwargs)
    with pytest.raises(ValueError, match="leaf 'f' is frozen and has no noise"):
        noise.leaf_noise(np, plans["f"], noise="gaussian", **kwargs)
    assert noise.trainable(plans) == ["w"]
    assert set(noise.NOISE_TYPES) == {"lowrank", "full", "int8"}  # frozen: the kind without a record


@backends
@given(m=st.integers(1, 12), n=st.integers(1, 12), rank=st.integers(1, 5), seed=st.integers(0, 2**32))
def test_each_members_low_rank_perturbation_has_rank_at_most_r_and_antithetic_members_are_negatives(
    name, m, n, rank, seed
):
    backend = get_backend(name)
    es = egg.EGGROLL(population_size=6, sigma=0.25, rank=rank, seed=seed)
    members = _member_noise(es, {"w": backend.xp.zeros((m, n), dtype=backend.xp.float32, device=backend.device)})
    for i, member in enumerate(members):
        assert np.linalg.matrix_rank(member["w"].astype(np.float32)) <= rank  # float32 rank tolerance
        if i % 2:
            np.testing.assert_array_equal(member["w"], -members[i - 1]["w"])


def test_low_rank_entries_have_variance_one_for_every_rank():
    """ε = (1/√r) Σⱼ aⱼbⱼ: E ε² = 1 and Var ε² = E ε⁴ − 1 = 2 + 6/r (E a⁴ = 3), so the sample mean of ε²
    over D independent directions lies within 5·√((2 + 6/r)/D) of 1."""
    directions = 200_000
    plan = leaves.plan_leaves({"w": np.zeros((1, 1), np.float32)})["w"]
    for rank in (1, 2, 4):
        factors = noise.leaf_noise(
            np,
            plan,
            seed=rank,
            epoch=0,
            directions=range(directions),
            rank=rank,
            noise="gaussian",
            dtype=np.float64,
            dev="cpu",
        )
        eps = np.einsum("dmr,dnr->d", factors.A, factors.B) / math.sqrt(rank)
        assert abs(np.mean(eps**2) - 1.0) < 5 * math.sqrt((2 + 6 / rank) / directions)
        assert abs(np.mean(eps)) < 5 / math.sqrt(directions)


def test_rademacher_factors_are_signs_and_full_leaves_stay_gaussian():
    es = egg.EGGROLL(population_size=4, sigma=1.0, rank=2, noise="rademacher")
    pop = es.ask(es.init(_params({"w": (5, 3), "b": (200,)})))
    assert set(np.unique(pop.noise["w"].A)) | set(np.unique(pop.noise["w"].B)) == {-1.0, 1.0}
    assert len(np.unique(pop.noise["b"].E)) == pop.noise["b"].E.size


def test_same_seed_and_generation_rebuild_identical_members_and_another_seed_differs():
    params = _params({"w": (6, 5), "b": (5,)})
    first = _member_noise(egg.EGGROLL(population_size=4, seed=11), params, generation=3)
    again = _member_noise(egg.EGGROLL(population_size=4, seed=11), params, generation=3)
    other = _member_noise(egg.EGGROLL(population_size=4, seed=12), params, generation=3)
    for a, b, c in zip(first, again, other, strict=True):
        for leaf in params:
            np.testing.assert_array_equal(a[leaf], b[leaf])
            assert not np.array_equal(a[leaf], c[leaf])


def test_two_leaves_of_the_same_shape_get_different_noise():
    pop = egg.EGGROLL(population_size=4).ask(egg.EGGROLL(population_size=4).init(_params({"w1": (4, 4), "w2": (4, 4)})))
    assert not np.array_equal(pop.noise["w1"].A, pop.noise["w2"].A)
    assert not np.array_equal(pop.noise["w1"].B, pop.noise["w2"].B)


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_noise_reuse_k_keeps_noise_for_exactly_k_generations(k):
    es = egg.EGGROLL(population_size=4, noise_reuse=k)
    params = _params({"w": (3, 3)})
    per_generation = [_member_noise(es, params, generation=t)[0]["w"] for t in range(7)]
    for t in range(1, 7):
        same = np.array_equal(per_generation[t], per_generation[t - 1])
        assert same == (k == 0 or t % k != 0), (k, t)


def test_renaming_or_adding_a_leaf_leaves_the_other_leaves_noise_unchanged():
    es = egg.EGGROLL(population_size=4)
    before = _member_noise(es, _params({"w": (4, 3), "b": (3,)}))
    renamed = _member_noise(es, _params({"w": (4, 3), "bias": (3,)}))
    added = _member_noise(es, _params({"extra": (7, 2), "w": (4, 3), "b": (3,)}))
    for i in range(4):
        np.testing.assert_array_equal(renamed[i]["w"], before[i]["w"])
        np.testing.assert_array_equal(added[i]["w"], before[i]["w"])
        np.testing.assert_array_equal(added[i]["b"], before[i]["b"])


def test_one_direction_can_be_rebuilt_alone():
    plan = leaves.plan_leaves({"w": np.zeros((7, 5), np.float32)})["w"]
    kwargs = dict(seed=5, epoch=2, rank=3, noise="gaussian", dtype=np.float32, dev="cpu")
    batch = noise.leaf_noise(np, plan, directions=range(10), **kwargs)
    alone = noise.leaf_noise(np, plan, directions=range(6, 7), **kwargs)
    np.testing.assert_array_equal(alone.A[0], batch.A[6])
    np.testing.assert_array_equal(alone.B[0], batch.B[6])

"""Leaf policies, noise factors, member perturbations and their determinism."""

import math

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of
from hypothesis import given
from hypothesis import strategies as st

import eggroll_np as egg
from eggroll_np import noise

backends = pytest.mark.parametrize("name", ALL_BACKENDS)


def _params(shapes, dtype=np.float32, fill=0.0):
    return {name: np.full(shape, fill, dtype) for name, shape in shapes.items()}


def _member_noise(es, params, generation=0):
    """εᵢ·σsᵢ of every member of the population at `generation` (θ = 0, so members are the perturbations)."""
    state = es.init(params)._replace(generation=generation)
    pop = es.ask(state)
    return [{k: np_of(v) for k, v in pop.member(i).items()} for i in range(len(pop))]


def test_default_policy_is_lowrank_for_matrices_and_full_for_everything_else():
    plans = noise.plan_leaves(_params({"w": (3, 4), "b": (4,), "s": (), "k": (2, 3, 4)}))
    assert {name: p.kind for name, p in plans.items()} == {"w": "lowrank", "b": "full", "s": "full", "k": "full"}
    assert plans["w"].matrix_shape == (3, 4) and plans["b"].matrix_shape is None


def test_policy_overrides_by_name_or_callable_and_3d_leaves_opt_into_low_rank_by_reshaping():
    params = _params({"w": (3, 4), "b": (4,), "k": (2, 3, 4)})
    plans = noise.plan_leaves(params, {"k": "lowrank", "b": "frozen"})
    assert plans["k"].kind == "lowrank" and plans["k"].matrix_shape == (2, 12)
    assert plans["b"].kind == "frozen" and plans["w"].kind == "lowrank"
    plans = noise.plan_leaves(params, lambda name, leaf: "full" if name == "w" else None)
    assert {name: p.kind for name, p in plans.items()} == {"w": "full", "b": "full", "k": "full"}


def test_bad_policies_are_rejected_with_the_leaf_named():
    params = _params({"w": (3, 4), "b": (4,)})
    with pytest.raises(ValueError, match="params do not have: 'v'"):
        noise.plan_leaves(params, {"v": "frozen"})
    with pytest.raises(ValueError, match="leaf 'w' the kind 'sparse'"):
        noise.plan_leaves(params, {"w": "sparse"})
    with pytest.raises(ValueError, match="leaf 'b' has shape \\(4,\\): lowrank needs at least 2 dimensions"):
        noise.plan_leaves(params, {"b": "lowrank"})
    with pytest.raises(TypeError, match="policy must be"):
        noise.plan_leaves(params, ["w"])
    with pytest.raises(ValueError, match="noise='normal'"):
        noise.leaf_noise(
            np,
            noise.plan_leaves(params)["w"],
            seed=0,
            epoch=0,
            directions=range(1),
            rank=1,
            noise="normal",
            dtype=np.float32,
            dev="cpu",
        )


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
    plan = noise.plan_leaves({"w": np.zeros((1, 1), np.float32)})["w"]
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
    plan = noise.plan_leaves({"w": np.zeros((7, 5), np.float32)})["w"]
    kwargs = dict(seed=5, epoch=2, rank=3, noise="gaussian", dtype=np.float32, dev="cpu")
    batch = noise.leaf_noise(np, plan, directions=range(10), **kwargs)
    alone = noise.leaf_noise(np, plan, directions=range(6, 7), **kwargs)
    np.testing.assert_array_equal(alone.A[0], batch.A[6])
    np.testing.assert_array_equal(alone.B[0], batch.B[6])


def test_member_directions_and_signs():
    assert [noise.direction_of(i, True) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    assert [noise.sign_of(i, True) for i in range(4)] == [1, -1, 1, -1]
    assert [noise.direction_of(i, False) for i in range(3)] == [0, 1, 2]
    assert [noise.sign_of(i, False) for i in range(3)] == [1, 1, 1]
    assert noise.n_directions(8, True) == 4 and noise.n_directions(8, False) == 8

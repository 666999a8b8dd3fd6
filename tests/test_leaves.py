"""Leaf plans: the kind of every leaf, and which leaves the strategy takes."""

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend

from eggroll_np import leaves


def _params(shapes, dtype=np.float32):
    return {name: np.zeros(shape, dtype) for name, shape in shapes.items()}


def test_default_policy_is_lowrank_for_matrices_and_full_for_everything_else():
    plans = leaves.plan_leaves(_params({"w": (3, 4), "b": (4,), "s": (), "k": (2, 3, 4)}))
    assert {name: p.kind for name, p in plans.items()} == {"w": "lowrank", "b": "full", "s": "full", "k": "full"}
    assert plans["w"].matrix_shape == (3, 4) and plans["b"].matrix_shape is None


def test_policy_overrides_by_name_or_callable_and_3d_leaves_opt_into_low_rank_by_reshaping():
    params = _params({"w": (3, 4), "b": (4,), "k": (2, 3, 4)})
    plans = leaves.plan_leaves(params, {"k": "lowrank", "b": "frozen"})
    assert plans["k"].kind == "lowrank" and plans["k"].matrix_shape == (2, 12)
    assert plans["b"].kind == "frozen" and plans["w"].kind == "lowrank"
    plans = leaves.plan_leaves(params, lambda name, leaf: "full" if name == "w" else None)
    assert {name: p.kind for name, p in plans.items()} == {"w": "full", "b": "full", "k": "full"}


def test_bad_policies_are_rejected_with_the_leaf_named():
    params = _params({"w": (3, 4), "b": (4,)})
    with pytest.raises(ValueError, match="params do not have: 'v'"):
        leaves.plan_leaves(params, {"v": "frozen"})
    with pytest.raises(ValueError, match="leaf 'w' the kind 'sparse'"):
        leaves.plan_leaves(params, {"w": "sparse"})
    with pytest.raises(ValueError, match="leaf 'b' has shape \\(4,\\): lowrank needs at least 2 dimensions"):
        leaves.plan_leaves(params, {"b": "lowrank"})
    with pytest.raises(TypeError, match=r"policy=\['w'\] must be None, a mapping name -> kind, or a callable"):
        leaves.plan_leaves(params, ["w"])
    with pytest.raises(TypeError, match="leaf names must be strings, got 3"):
        leaves.plan_leaves({3: np.zeros(2)})


def test_two_names_of_one_noise_stream_are_refused(monkeypatch):
    monkeypatch.setattr(leaves.random, "stream_id", lambda name: 7)
    with pytest.raises(ValueError, match="leaf names 'a' and 'b' hash to the same noise stream; rename one"):
        leaves.plan_leaves(_params({"a": (2,), "b": (2,)}))


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_check_leaves_returns_the_namespace_and_device_and_names_the_bad_leaf(name):
    backend = get_backend(name)
    xp = backend.xp
    good = {"w": backend.asarray(np.zeros((2, 2)), dtype=xp.float32)}
    namespace, dev = leaves.check_leaves(good)
    assert namespace is xp
    assert str(dev) == str(backend.device)
    with pytest.raises(TypeError, match="leaf 'i' has dtype int32; ES needs float32, float64 or int8 leaves"):
        leaves.check_leaves({**good, "i": xp.zeros(2, dtype=xp.int32, device=backend.device)})
    with pytest.raises(TypeError, match="params must be a mapping name -> array, not a list"):
        leaves.check_leaves([good["w"]])
    with pytest.raises(ValueError, match="params is empty"):
        leaves.check_leaves({})

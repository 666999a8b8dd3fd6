"""The Population: an immutable value, its members, its layout, slices, and its JAX pytree."""

import dataclasses
import math

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, make_population, np_of, random_params

import eggroll_np as egg
from eggroll_np.population import Layout

FIELDS = [field.name for field in dataclasses.fields(egg.Population)]
SHORTCUTS = ["size", "offset", "rank", "antithetic", "fingerprint"]


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_members_are_mean_plus_sigma_times_signed_noise_and_frozen_leaves_are_shared(name):
    backend = get_backend(name)
    params = random_params(backend, {"w": (5, 4), "b": (4,), "frozen": (2, 2)})
    es = egg.EGGROLL(population_size=4, sigma=0.3, rank=2, policy={"frozen": "frozen"})
    pop = es.ask(es.init(params))
    assert len(pop) == 4 and pop.sigma == 0.3
    member = pop.member(3)
    assert member["frozen"] is params["frozen"]
    a, b = np_of(pop.noise["w"].A[1, ...]), np_of(pop.noise["w"].B[1, ...])
    expected = np_of(params["w"]) - 0.3 * (a @ b.T) / math.sqrt(2)
    np.testing.assert_allclose(np_of(member["w"]), expected, rtol=1e-5, atol=1e-6)
    assert pop.sign(3) == -1 and pop.direction(3) == 1 and pop.sign(-4) == 1
    with pytest.raises(IndexError, match="member index 4 is out of range for a population of 4"):
        pop.member(4)
    with pytest.raises(TypeError, match="member index must be an integer"):
        pop.member(1.0)
    with pytest.raises(TypeError, match="member index must be an integer, got bool"):
        pop.member(True)
    assert pop.member(np.int64(0)).keys() == params.keys()


@pytest.mark.parametrize("attribute", FIELDS + SHORTCUTS)
def test_every_attribute_of_a_population_is_read_only(attribute):
    pop = make_population(get_backend("numpy"), {"w": (3, 2), "b": (2,)})
    before = getattr(pop, attribute)
    with pytest.raises(AttributeError):
        setattr(pop, attribute, 10)
    with pytest.raises(AttributeError):
        delattr(pop, attribute)
    assert getattr(pop, attribute) is before or getattr(pop, attribute) == before
    with pytest.raises(AttributeError):
        pop.new_attribute = 1  # nor can one be added


@pytest.mark.parametrize("mapping", ["params", "plans", "noise"])
def test_the_mappings_of_a_population_cannot_be_changed(mapping):
    pop = make_population(get_backend("numpy"), {"w": (3, 2), "b": (2,)})
    held = getattr(pop, mapping)
    with pytest.raises(TypeError):
        held["w"] = held["b"]
    with pytest.raises(TypeError):
        del held["b"]
    if mapping != "params":  # plans and noise records are named tuples: none of their fields can be set
        with pytest.raises(AttributeError):
            held["w"].A = None
        with pytest.raises(AttributeError):
            held["w"].kind = "frozen"


def test_a_population_copied_with_other_params_is_refused_by_tell():
    """The one way to alter a population is to build another (dataclasses.replace); tell then refuses it."""
    es = egg.EGGROLL(population_size=4, sigma=0.1)
    state = es.init({"w": np.zeros((3, 2))})
    pop = es.ask(state)
    for changes, message in (
        ({"params": {"w": np.ones((3, 2))}}, "asked from another state"),
        ({"sigma": 10.0}, None),
        ({"generation": 1}, "belongs to generation 1"),
        ({"settings": pop.settings._replace(rank=3)}, "asked from a strategy with other settings"),
    ):
        altered = dataclasses.replace(pop, **changes)
        if message is None:  # σ is the population's own fact: the update uses the σ it was evaluated with
            assert es.tell(state, altered, np.arange(4.0))[0].generation == 1
            continue
        with pytest.raises(ValueError, match=message):
            es.tell(state, altered, np.arange(4.0))


def test_the_rank_has_one_source():
    pop = make_population(get_backend("numpy"), {"w": (5, 4)}, rank=3)
    assert pop.rank == pop.settings.rank == pop.noise["w"].A.shape[-1] == pop.noise["w"].B.shape[-1] == 3


@pytest.mark.parametrize("antithetic", [True, False])
def test_layout_maps_members_to_directions_and_signs(antithetic):
    per_direction = 2 if antithetic else 1
    whole = Layout(8, per_direction, 0)
    assert whole.directions == 8 // per_direction
    assert [whole.direction(i) for i in range(8)] == [i // per_direction for i in range(8)]
    assert [whole.sign(i) for i in range(8)] == [(-1) ** i if antithetic else 1 for i in range(8)]
    part = Layout(4, per_direction, 4)
    assert [part.direction(i) for i in range(4)] == [whole.direction(4 + i) for i in range(4)]
    assert [part.sign(i) for i in range(4)] == [whole.sign(4 + i) for i in range(4)]


@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("antithetic", [True, False])
def test_a_slice_rebuilds_exactly_the_members_of_the_whole_population(name, antithetic):
    backend = get_backend(name)
    params = random_params(backend, {"w": (5, 4), "b": (4,)})
    es = egg.EGGROLL(population_size=8, sigma=0.2, rank=2, antithetic=antithetic)
    state = es.init(params)
    whole = es.ask(state)
    part = es.ask(state, members=range(4, 8))
    assert len(part) == 4 and part.offset == 4 and part.layout == Layout(4, whole.layout.per_direction, 4)
    assert "members=range(4, 8)" in repr(part)
    x = backend.asarray(np.ones((3, 4)), dtype=backend.xp.float32)
    for i in range(4):
        assert part.direction(i) == whole.direction(4 + i) and part.sign(i) == whole.sign(4 + i)
        for leaf in params:
            np.testing.assert_array_equal(np_of(part.member(i)[leaf]), np_of(whole.member(4 + i)[leaf]))
    np.testing.assert_allclose(np_of(part.linear("w", x)), np_of(whole.linear("w", x))[4:], rtol=1e-6, atol=1e-6)


def test_a_population_is_a_jax_pytree_that_jit_traces():
    import jax
    import jax.numpy as jnp

    model = egg.models.MLP((4, 8, 3))
    es = egg.EGGROLL(population_size=6, sigma=0.1)
    state = es.init(model.init(jnp, seed=0))
    pop = es.ask(state)
    leaves, tree = jax.tree_util.tree_flatten(pop)
    assert len(leaves) == len(pop.params) + sum(len(record) for record in pop.noise.values()) + 2  # and t, e
    rebuilt = jax.tree_util.tree_unflatten(tree, leaves)
    assert isinstance(rebuilt, egg.Population) and rebuilt.settings == pop.settings and rebuilt.layout == pop.layout
    assert list(rebuilt.plans) == list(pop.plans)  # the leaf order survives the round trip
    es.tell(state, rebuilt, np.arange(6.0))  # same arrays: still the population of this state
    x = jnp.ones((5, 4))
    jitted = jax.jit(lambda p, inputs: model.apply(p, inputs))(pop, x)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(model.apply(pop, x)), rtol=1e-6, atol=1e-6)
    doubled = jax.tree_util.tree_map(lambda a: 2 * a, pop)
    with pytest.raises(ValueError, match="asked from another state"):
        es.tell(state, doubled, np.arange(6.0))

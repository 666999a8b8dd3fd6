"""EGGROLL's init/ask/tell: state, dtypes, frozen leaves, metrics, bad input and host syncs."""

import contextlib
import math

import array_api_strict
import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of

import eggroll_np as egg

backends = pytest.mark.parametrize("name", ALL_BACKENDS)


def _params(backend, dtype=None):
    dtype = dtype or backend.xp.float32
    rng = np.random.default_rng(0)
    return {
        "w": backend.asarray(rng.standard_normal((5, 4)), dtype=dtype),
        "b": backend.asarray(rng.standard_normal(4), dtype=dtype),
        "frozen": backend.asarray(rng.standard_normal((2, 2)), dtype=dtype),
    }


def _fitness(pop):
    """A smooth fitness of each member, computed on the host: −Σ θ²."""
    return np.array([-sum(float(np.sum(np_of(v) ** 2)) for v in pop.member(i).values()) for i in range(len(pop))])


@backends
def test_a_generation_keeps_shapes_dtypes_and_frozen_leaves_and_advances_the_counter(name):
    backend = get_backend(name)
    for dtype in backend.float_dtypes:
        params = _params(backend, dtype)
        es = egg.EGGROLL(population_size=8, sigma=0.1, policy={"frozen": "frozen"}, optimizer=egg.optim.adam(0.1))
        state = es.init(params)
        assert state.generation == 0
        for _ in range(3):
            pop = es.ask(state)
            state, info = es.tell(state, pop, _fitness(pop))
        assert state.generation == 3
        for leaf, value in params.items():
            assert state.params[leaf].shape == value.shape and state.params[leaf].dtype == dtype
        assert state.params["frozen"] is params["frozen"]
        assert not np.array_equal(np_of(state.params["w"]), np_of(params["w"]))
        assert set(info) == {"fitness_mean", "fitness_max", "fitness_min", "grad_norm"}
        assert all(v.shape == () for v in info.values())


@backends
def test_members_are_mean_plus_sigma_times_signed_noise_and_frozen_leaves_are_shared(name):
    backend = get_backend(name)
    params = _params(backend)
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


def test_tell_is_pure_and_repeatable():
    backend = get_backend("numpy")
    params = _params(backend)
    snapshot = {k: v.copy() for k, v in params.items()}
    es = egg.EGGROLL(population_size=6, sigma=0.1)
    state = es.init(params)
    pop = es.ask(state)
    fitness = _fitness(pop)
    first, _ = es.tell(state, pop, fitness)
    second, _ = es.tell(state, pop, fitness)
    for leaf in params:
        np.testing.assert_array_equal(first.params[leaf], second.params[leaf])
        np.testing.assert_array_equal(params[leaf], snapshot[leaf])


def test_minimizing_is_maximizing_the_negated_fitness():
    params = _params(get_backend("numpy"))
    results = []
    for maximize, sign in ((True, -1.0), (False, 1.0)):
        es = egg.EGGROLL(population_size=8, sigma=0.1, maximize=maximize)
        state = es.init(params)
        pop = es.ask(state)
        results.append(es.tell(state, pop, sign * _fitness(pop))[0])
    for leaf in params:
        np.testing.assert_array_equal(results[0].params[leaf], results[1].params[leaf])


def test_metrics_describe_the_raw_fitness_and_the_gradient():
    es = egg.EGGROLL(population_size=4, sigma=0.1, shaping="raw", optimizer=0.0)
    state = es.init({"b": np.zeros(3, np.float32)})
    pop = es.ask(state)
    fitness = np.array([1.0, 2.0, 4.0, -3.0])
    _, info = es.tell(state, pop, fitness)
    assert float(info["fitness_mean"]) == 1.0 and float(info["fitness_max"]) == 4.0
    assert float(info["fitness_min"]) == -3.0
    w = np.array([1.0 - 2.0, 4.0 + 3.0])
    g = np.tensordot(w, pop.noise["b"].E, axes=1) / (4 * 0.1)
    assert float(info["grad_norm"]) == pytest.approx(np.linalg.norm(g), rel=1e-5)


@backends
def test_fitness_from_another_library_or_a_list_is_accepted(name):
    backend = get_backend(name)
    es = egg.EGGROLL(population_size=4, sigma=0.1)
    state = es.init(_params(backend))
    pop = es.ask(state)
    results = [es.tell(state, pop, f)[0] for f in ([1.0, 2.0, 3.0, 4.0], np.arange(4), backend.asarray([1, 2, 3, 4.0]))]
    for other in results[1:]:
        np.testing.assert_array_equal(np_of(other.params["w"]), np_of(results[0].params["w"]))


def test_nan_policy_worst_counts_non_finite_members_as_the_worst():
    es = egg.EGGROLL(population_size=4, sigma=0.1, nan_policy="worst", shaping="centered_rank")
    state = es.init({"b": np.zeros(2)})
    pop = es.ask(state)
    with_nan = es.tell(state, pop, np.array([np.nan, 2.0, 3.0, np.inf]))[0]
    as_worst = es.tell(state, pop, np.array([2.0, 2.0, 3.0, 2.0]))[0]
    np.testing.assert_array_equal(with_nan.params["b"], as_worst.params["b"])
    all_bad = es.tell(state, pop, np.full(4, np.nan))[0]
    np.testing.assert_array_equal(all_bad.params["b"], state.params["b"])


# ---- bad input: a clear error, before any state changes -------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"population_size": 7}, ValueError, "population_size=7 must be even when antithetic=True; use 8"),
        ({"population_size": 1, "antithetic": False}, ValueError, "population_size=1 must be an integer ≥ 2"),
        ({"population_size": 8.0}, TypeError, "population_size=8.0 must be an integer"),
        ({"population_size": True}, TypeError, "population_size=True must be an integer"),
        ({"sigma": 0.0}, ValueError, "sigma at generation 0 is 0.0; it must be a positive finite number"),
        ({"sigma": -0.1}, ValueError, "positive finite"),
        ({"sigma": math.nan}, ValueError, "positive finite"),
        ({"sigma": math.inf}, ValueError, "positive finite"),
        ({"sigma": "0.1"}, TypeError, "sigma must be a float or a callable"),
        ({"rank": 0}, ValueError, "rank=0 must be an integer ≥ 1"),
        ({"noise_reuse": -1}, ValueError, "noise_reuse=-1"),
        ({"shaping": "group_zscore", "group_size": 3, "population_size": 8}, ValueError, "divides population_size"),
        ({"shaping": "group_zscore", "group_size": 3, "population_size": 6}, ValueError, "split antithetic pairs"),
        ({"noise": "uniform"}, ValueError, "noise='uniform'"),
        ({"seed": -1}, ValueError, "seed=-1"),
        ({"seed": 2**64}, ValueError, "seed="),
        ({"nan_policy": "omit"}, ValueError, "nan_policy='omit'"),
        ({"policy": ["w"]}, TypeError, "policy must be"),
    ],
)
def test_bad_settings_are_rejected_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message.replace("(", "\\(").replace(")", "\\)").replace("+", "\\+")):
        egg.EGGROLL(**kwargs)


def test_a_sigma_schedule_that_leaves_the_positive_reals_fails_at_ask_without_touching_state():
    es = egg.EGGROLL(population_size=4, sigma=lambda t: 0.1 - 0.05 * t)
    state = es.init({"b": np.zeros(2)})
    for _ in range(2):
        pop = es.ask(state)
        state, _ = es.tell(state, pop, np.arange(4.0))
    with pytest.raises(ValueError, match=r"sigma at generation 2 is 0.0"):
        es.ask(state)
    assert state.generation == 2


@backends
def test_bad_params_are_rejected_at_init(name):
    backend = get_backend(name)
    xp, dev = backend.xp, backend.device
    es = egg.EGGROLL(population_size=4)
    with pytest.raises(ValueError, match="params is empty"):
        es.init({})
    with pytest.raises(TypeError, match="params must be a mapping"):
        es.init([xp.zeros(3, device=dev)])
    with pytest.raises(TypeError, match="leaf 'n' has dtype int32; ES needs real floating leaves"):
        es.init({"w": xp.zeros(3, dtype=xp.float32, device=dev), "n": xp.zeros(3, dtype=xp.int32, device=dev)})
    with pytest.raises(TypeError, match="leaf 'm' has dtype bool"):
        es.init({"m": xp.zeros(3, dtype=xp.bool, device=dev)})
    with pytest.raises(TypeError, match="leaf 'w' is a list, not an array"):
        es.init({"w": [1.0, 2.0]})
    with pytest.raises(ValueError, match="policy names leaves that params do not have: 'v'"):
        egg.EGGROLL(population_size=4, policy={"v": "frozen"}).init({"w": xp.zeros((2, 2), device=dev)})
    with pytest.raises(ValueError, match="every leaf is frozen"):
        egg.EGGROLL(population_size=4, policy={"w": "frozen"}).init({"w": xp.zeros((2, 2), device=dev)})


def test_bfloat16_leaves_are_refused_at_init_with_the_leaf_named():
    """The generator draws float32 or float64 only; an ml_dtypes bfloat16 leaf gets the clear refusal."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with pytest.raises(TypeError, match="leaf 'w' has dtype bfloat16; ES needs real floating leaves"):
        egg.EGGROLL(population_size=4).init({"w": np.zeros((2, 2), dtype=ml_dtypes.bfloat16)})


def test_params_from_two_libraries_or_two_devices_are_rejected():
    es = egg.EGGROLL(population_size=4)
    strict = get_backend("strict").xp
    with pytest.raises(ValueError, match=r"more than one array library .*'w'.*'b'"):
        es.init({"w": np.zeros((2, 2)), "b": strict.zeros(2)})
    with pytest.raises(ValueError, match=r"more than one device .*'w'.*'b'"):
        es.init({"w": strict.zeros((2, 2)), "b": strict.zeros(2, device=array_api_strict.Device("device1"))})


@backends
def test_bad_fitness_is_rejected_before_anything_changes(name):
    backend = get_backend(name)
    es = egg.EGGROLL(population_size=6, sigma=0.1)
    state = es.init(_params(backend))
    pop = es.ask(state)
    with pytest.raises(ValueError, match="fitness has shape \\(5,\\); it must have shape \\(6,\\)"):
        es.tell(state, pop, np.zeros(5))
    with pytest.raises(ValueError, match="fitness has shape \\(6, 1\\)"):
        es.tell(state, pop, np.zeros((6, 1)))
    with pytest.raises(ValueError, match="fitness has shape \\(\\)"):
        es.tell(state, pop, 1.0)
    with pytest.raises(ValueError, match="NaN or infinite for members \\[1, 4\\]"):
        es.tell(state, pop, backend.asarray([0.0, np.nan, 1.0, 2.0, np.inf, 3.0]))
    with pytest.raises(ValueError, match="returned shape"):
        bad = egg.EGGROLL(population_size=6, sigma=0.1, shaping=lambda F: F[:3])
        bad.tell(state, bad.ask(state), np.zeros(6))
    assert state.generation == 0 and pop.generation == 0


def test_a_population_from_another_generation_or_strategy_is_rejected():
    es = egg.EGGROLL(population_size=4, sigma=0.1)
    state = es.init({"w": np.zeros((3, 3))})
    pop = es.ask(state)
    next_state, _ = es.tell(state, pop, np.arange(4.0))
    with pytest.raises(ValueError, match="belongs to generation 0, but the state is at generation 1"):
        es.tell(next_state, pop, np.arange(4.0))
    for other in (egg.EGGROLL(population_size=4, sigma=0.1, seed=1), egg.EGGROLL(population_size=4, rank=2)):
        with pytest.raises(ValueError, match="asked from a strategy with other settings"):
            other.tell(state, pop, np.arange(4.0))
    with pytest.raises(ValueError, match="perturbs leaves \\['w'\\], but the state has leaves \\['v'\\]"):
        es.tell(es.init({"v": np.zeros((3, 3))}), pop, np.arange(4.0))
    with pytest.raises(TypeError, match="needs the Population returned by ask"):
        es.tell(state, {"w": np.zeros((3, 3))}, np.arange(4.0))
    with pytest.raises(TypeError, match="needs the EggrollState"):
        es.ask({"w": np.zeros((3, 3))})
    with pytest.raises(TypeError, match="tell needs the EggrollState"):
        es.tell({"w": np.zeros((3, 3))}, pop, np.arange(4.0))
    with pytest.raises(ValueError, match="another leaf policy"):
        egg.EGGROLL(population_size=4, sigma=0.1, policy={"w": "full"}).tell(state, pop, np.arange(4.0))
    # The same settings in a new object (for example after a restart) accept the population.
    egg.EGGROLL(population_size=4, sigma=0.1).tell(state, pop, np.arange(4.0))


# ---- no host synchronization inside ask/tell -------------------------------------------------------------


@contextlib.contextmanager
def _host_reads_forbidden(array_type):
    """Make every way of reading an array's value on the host raise, for the duration of the block."""
    names = ["__bool__", "__float__", "__int__", "__index__", "__complex__", "item", "tolist", "__array__"]

    def forbidden(self, *args, **kwargs):
        raise AssertionError("host read of a device array inside ask/tell")

    saved = {n: array_type.__dict__[n] for n in names if n in array_type.__dict__}
    try:
        for n in saved:
            setattr(array_type, n, forbidden)
        yield
    finally:
        for n, method in saved.items():
            setattr(array_type, n, method)


@pytest.mark.parametrize("name", ["jax", "strict"])
def test_ask_and_tell_never_read_arrays_back_to_the_host_with_nan_policy_worst(name):
    backend = get_backend(name)
    params = _params(backend)
    array_type = type(params["w"])
    es = egg.EGGROLL(
        population_size=8, sigma=0.1, nan_policy="worst", optimizer=egg.optim.adamw(1e-2), shaping="centered_rank"
    )
    state = es.init(params)
    fitness = backend.asarray(np.linspace(-1.0, 1.0, 8))
    with _host_reads_forbidden(array_type):
        for _ in range(2):
            pop = es.ask(state)
            state, info = es.tell(state, pop, fitness)
    assert state.generation == 2
    with _host_reads_forbidden(array_type), pytest.raises(AssertionError, match="host read"):
        bool(info["grad_norm"] > 0)  # the guard itself works

"""ES learns: the gradient of a linear fitness points along its coefficients, and a low-rank matrix is
recovered."""

import math

import numpy as np
import pytest
from helpers import ALL_BACKENDS, get_backend, np_of

import eggroll_np as egg


def _perturbations(pop, name):
    """σ sᵢ εᵢ of every member as an (N, *shape) array, built in the population's namespace: the dense
    per-member view that EGGROLL itself never forms (fine for the small leaves of a test)."""
    xp = pop.xp
    noise = pop.noise[name]
    if isinstance(noise, egg.noise.LowRankNoise):
        eps = (noise.A @ xp.matrix_transpose(noise.B)) / math.sqrt(pop.rank)
    else:
        eps = noise.E
    k = len(pop) // 2
    eps = xp.reshape(xp.stack([eps, -eps], axis=1), (2 * k, *eps.shape[1:]))
    return pop.sigma * eps


@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("shaping", ["raw", "centered_rank"])
def test_gradient_of_a_linear_fitness_has_cosine_above_0_9_with_its_coefficients(name, shaping):
    """F(θ) = ⟨c, θ⟩ over a 12×12 low-rank leaf and a 16-vector. With raw shaping E g = c, and the
    estimate's error has squared norm ≈ (p + ‖c‖²-weighted 4th moments)/D relative to ‖c‖², so at N = 4096
    (D = 2048 directions, p = 160 parameters) the cosine is about 0.95; centered ranks keep the direction."""
    backend = get_backend(name)
    xp = backend.xp
    rng = np.random.default_rng(7)
    c = {"w": rng.standard_normal((12, 12)), "b": rng.standard_normal(16)}
    coeffs = {k: backend.asarray(v, dtype=xp.float32) for k, v in c.items()}
    params = {k: xp.zeros(v.shape, dtype=xp.float32, device=backend.device) for k, v in c.items()}
    es = egg.EGGROLL(population_size=4096, sigma=0.05, rank=1, seed=0, shaping=shaping, optimizer=1.0)
    state = es.init(params)
    pop = es.ask(state)
    fitness = sum(xp.sum(xp.reshape(_perturbations(pop, k) * coeffs[k], (len(pop), -1)), axis=1) for k in coeffs)
    new_state, _ = es.tell(state, pop, fitness)
    g = np.concatenate([np_of(new_state.params[k]).ravel() for k in c])
    target = np.concatenate([c[k].ravel() for k in c])
    cosine = g @ target / (np.linalg.norm(g) * np.linalg.norm(target))
    assert cosine > 0.9, cosine


def test_low_rank_matrix_recovery_gets_below_one_percent_of_its_initial_error():
    """Fitness −‖W − W*‖², W* of rank 4, 32×32, evaluated black-box on each member."""
    rng = np.random.default_rng(3)
    target = (rng.standard_normal((32, 4)) @ rng.standard_normal((4, 32)) / 2.0).astype(np.float32)
    es = egg.EGGROLL(population_size=128, sigma=0.1, rank=1, seed=0, optimizer=egg.optim.adam(0.05))
    state = es.init({"w": np.zeros((32, 32), np.float32)})
    initial_error = np.sum((state.params["w"] - target) ** 2)
    for _ in range(250):
        pop = es.ask(state)
        fitness = np.array([-np.sum((pop.member(i)["w"] - target) ** 2) for i in range(len(pop))])
        state, _ = es.tell(state, pop, fitness)
    assert np.sum((state.params["w"] - target) ** 2) < 0.01 * initial_error

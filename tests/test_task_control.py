"""The control tasks on the array-API envs: fitness one return per member, a pure function of (params,
generation), the same whichever slice of the population evaluates it, antithetic partners starting from one
state, every backend, and a short run that writes mean_return."""

import json

import numpy as np
import pytest
from helpers import get_backend, np_of

from eggroll_np import envs
from eggroll_np.tasks import task_class
from eggroll_np.tasks.control import AcrobotTask, MountainCarTask, PendulumTask
from eggroll_np.training import make_strategy, run_config, train

TASKS = {
    "cartpole": envs.CartPole,
    "pendulum": envs.Pendulum,
    "acrobot": envs.Acrobot,
    "mountaincar": envs.MountainCarContinuous,
}


def _setup(name, backend_name="numpy", **overrides):
    backend = get_backend(backend_name)
    config = run_config(name, {"population_size": 16, "max_steps": 60, **overrides})
    task = task_class(name)(config, backend.xp, backend.device, backend.xp.float32)
    es = make_strategy(config)
    return task, es, es.init(task.init_params(config["seed"]))


def test_the_registry_names_each_task_and_its_env():
    assert [task_class(name) for name in ("pendulum", "acrobot", "mountaincar")] == [
        PendulumTask,
        AcrobotTask,
        MountainCarTask,
    ]
    for name, env_class in TASKS.items():
        task, _, _ = _setup(name)
        assert isinstance(task.env, env_class) and task.metric == "mean_return"


@pytest.mark.parametrize("name", list(TASKS))
def test_fitness_is_one_return_per_member_and_a_pure_function_of_params_and_generation(name):
    task, es, state = _setup(name, max_steps=500)  # Acrobot's first successes take more than 60 steps
    pop = es.ask(state)
    fitness = task.fitness(pop, 3)
    assert fitness.shape == (16,) and fitness.dtype == np.float32
    first = np_of(fitness)
    assert len(np.unique(first)) > 1  # the members act differently
    np.testing.assert_array_equal(np_of(_setup(name, max_steps=500)[0].fitness(pop, 3)), first)
    assert not np.array_equal(np_of(task.fitness(pop, 4)), first)
    halves = [np_of(task.fitness(es.ask(state, members=range(a, b)), 3)) for a, b in ((0, 6), (6, 16))]
    # A slice's members face the same episodes: equal returns up to float32 products whose rounding depends on
    # the batch shape (BLAS blocking), which Pendulum's swing amplifies to 0.2 % at most here; other starts
    # would change returns by far more.
    np.testing.assert_allclose(np.concatenate(halves), first, rtol=2e-3)


def test_antithetic_partners_start_from_one_state():
    """With σ → 0 a pair's two members act alike, so equal starts give equal returns (different starts, the
    members of other pairs, differ)."""
    task, es, state = _setup("pendulum", sigma=1e-6)
    returns = np_of(task.fitness(es.ask(state), 0))
    np.testing.assert_allclose(returns[0::2], returns[1::2], rtol=1e-4)
    assert len(np.unique(np.round(returns[0::2]))) > 4


@pytest.mark.parametrize("backend_name", ["strict_no_x64", "jax"])
def test_fitness_runs_on_other_backends(backend_name):
    task, es, state = _setup("cartpole", backend_name)
    fitness = np_of(task.fitness(es.ask(state), 0))
    reference_task, reference_es, reference_state = _setup("cartpole")
    reference = np_of(reference_task.fitness(reference_es.ask(reference_state), 0))
    assert fitness.shape == (16,)
    # float32 products round differently on JAX and can flip a decision of an unstable system: most agree
    assert np.mean(fitness == reference) >= 0.75


def test_a_short_run_reports_mean_return_over_the_eval_episodes(tmp_path):
    config = run_config("mountaincar", dict(population_size=16, max_steps=50, eval_episodes=5, generations=2))
    summary = train(config, tmp_path, progress=False, echo=lambda _: None)
    assert summary["metric"] == "mean_return" and summary["metric_goal"] == 90.0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert summary["mean_return"] == records[-1]["mean_return"] and summary["min_return"] <= summary["mean_return"]


def test_a_members_fitness_is_the_mean_return_of_its_episodes():
    task, es, state = _setup("pendulum", episodes=3, max_steps=40)
    pop = es.ask(state)
    fitness = np_of(task.fitness(pop, 2))
    one, _, _ = _setup("pendulum", episodes=1, max_steps=40)
    assert fitness.shape == (16,)
    assert not np.allclose(fitness, np_of(one.fitness(pop, 2)))  # other episodes, averaged
    # Member i's three episodes start from rows 3k(i) … 3k(i) + 2 of the generation's draw.
    states = task.env.initial(envs.EpisodeKey(task.seed, 2, range(3 * 8)))
    returns = np_of(task._returns(pop, np.take(states, [3 * (i // 2) + e for i in range(16) for e in range(3)], 0), 3))
    np.testing.assert_allclose(fitness, returns.reshape(16, 3).mean(axis=1), rtol=1e-6)

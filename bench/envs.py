"""The array-API environments against Gymnasium's own, side by side in one run (NumPy, this machine).

env step:    member-steps per second of `eggroll_np.envs.CartPole` (transition, reward and terminal of N
             members as arrays, in float32 and float64) and of Gymnasium's `CartPoleVectorEnv` (`step` with N
             actions: float64 state, float32 observations, its own autoreset), at N = --members, for --steps
             steps, timed interleaved over --repeats, medians; ratio = Gymnasium's time / ours.
generation:  seconds of one whole cartpole-task generation (ask, the N episodes, tell) on our envs and on the
             Gymnasium path (`--env gymnasium`), the same population and policy, medians; ratio = theirs / ours.
             Episodes end at different steps on the two paths (their initial states differ), so the table
             also shows the mean episode length of each.

    .venv/bin/python bench/envs.py                  # N = 4096
    .venv/bin/python bench/envs.py --quick          # small sizes, a few seconds (the tests run this)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from eggroll_np import envs
from eggroll_np.tasks.cartpole import CartPoleTask
from eggroll_np.training import make_strategy, run_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table


def _time(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _ours(members: int, steps: int, dtype):
    env = envs.CartPole(np, dtype=dtype)
    state = env.initial(envs.EpisodeKey(0, 0, range(members)))
    actions = np.random.default_rng(0).integers(0, 2, size=(steps, members)).astype(np.int32)

    def run():
        s = state
        for t in range(steps):
            nxt = env.transition(s, actions[t], check=False)
            env.reward(s, actions[t], nxt)
            env.terminal(nxt)
            s = nxt

    return run


def _theirs(members: int, steps: int):
    import gymnasium

    env = gymnasium.make_vec("CartPole-v1", num_envs=members, vectorization_mode="vector_entry_point")
    actions = np.random.default_rng(0).integers(0, 2, size=(steps, members))

    def run():
        env.reset(seed=0)
        for t in range(steps):
            env.step(actions[t])

    return run


def env_steps(members: int, steps: int, repeats: int) -> list[dict]:
    runs = {
        "eggroll_np float32": _ours(members, steps, np.float32),
        "eggroll_np float64": _ours(members, steps, np.float64),
        "Gymnasium CartPoleVectorEnv": _theirs(members, steps),
    }
    times = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(_time(run))
    theirs = statistics.median(times["Gymnasium CartPoleVectorEnv"])
    return [
        {
            "env": name,
            "member-steps/s": members * steps / statistics.median(t),
            "ratio to Gymnasium": theirs / statistics.median(t),
        }
        for name, t in times.items()
    ]


def generations(members: int, repeats: int) -> list[dict]:
    rows, times = [], {}
    setups = {}
    for env in ("native", "gymnasium"):
        config = run_config("cartpole", dict(population_size=members, env=env))
        task = CartPoleTask(config, np, None, np.float32)
        es = make_strategy(config)
        state = es.init(task.init_params(config["seed"]))
        setups[env] = (task, es, state)
        times[env] = []
    lengths = {}
    for _ in range(repeats):
        for env, (task, es, state) in setups.items():
            start = time.perf_counter()
            pop = es.ask(state)
            fitness = task.fitness(pop, 0)
            es.tell(state, pop, fitness)
            times[env].append(time.perf_counter() - start)
            lengths[env] = float(np.mean(fitness))
    for env in setups:
        rows.append(
            {
                "path": env,
                "seconds/generation": statistics.median(times[env]),
                "mean episode length": lengths[env],
                "ratio gymnasium / this": statistics.median(times["gymnasium"]) / statistics.median(times[env]),
            }
        )
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--members", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.members, args.steps, args.repeats = 64, 20, 2
    stepping = env_steps(args.members, args.steps, args.repeats)
    print(f"CartPole, N = {args.members}, {args.steps} steps, NumPy: member-steps per second")
    print(markdown_table(stepping))
    whole = generations(args.members, args.repeats)
    print(f"one cartpole-task generation, N = {args.members}")
    print(markdown_table(whole))
    return {"env_steps": stepping, "generations": whole}


if __name__ == "__main__":
    main()

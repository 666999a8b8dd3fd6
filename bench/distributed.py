"""Distributed evaluation: generations per second with 1 and 2 workers, and bytes per generation against the
parameter count, measured side by side in one run.

Throughput. The fitness is a member-wise black box, given to the evaluators as `per_member(fn)`, that costs
real CPU time: a linear policy (2×4 weights and 2 biases) steering a cart-pole-like system for --steps Euler
steps in plain Python (about 3 ms per member at 400 steps here). Each evaluator is started once, outside the
timing, and then runs its own chain of generations (`evaluator.step`: evaluate, then tell on the driver). The
evaluators are interleaved within every repeat (the order rotates), each timed over --generations generations;
the table gives the median generations per second and the speedup over the same evaluator kind with 1 worker:

    local      LocalEvaluator, in the driver's process (the reference)
    pool × w   ProcessPoolEvaluator with w worker processes (the params travel every generation)
    ray × w    RayEvaluator with w replicas on a local Ray instance (only fitness travels); Ray is given 4
               logical CPUs so the 1- and 2-replica evaluators can live side by side on the 2 cores

Every evaluator's final params are checked equal to the local chain's after the same number of generations.

Bytes. For models of 10³ to 10⁶ parameters (one square weight matrix and a bias), a RayEvaluator with 2
replicas runs 3 generations of population --population; the table gives the pickled payload bytes of the
first call (which sends each replica the full state once) and of every later generation (the protocol's
messages: told fitness, member ranges, fingerprints), from `RayEvaluator.traffic`, with centered ranks and
with sign shaping. The per-generation bytes are expected to be flat in the parameter count, and about
(replicas + 1) · 8 · N; with sign shaping the told fitness travels as pair signs five to a byte, so about
8 · N (the raw fitness coming back) + replicas · N/10.

Run it from the repository root (progress to stderr, tables to stdout):

    .venv/bin/python bench/distributed.py             # under a minute on 2 cores
    .venv/bin/python bench/distributed.py --quick     # a smoke run, about 10 s (most of it Ray's start)
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time

import numpy as np

import eggroll_np as egg
from eggroll_np.distributed import LocalEvaluator, ProcessPoolEvaluator, RayEvaluator, per_member

STEPS = 400


def balance_time(params: dict, steps: int = STEPS) -> float:
    """Steps a pole on a cart stays up under the linear policy u = W s + b (2 outputs: a force and a damping
    gain), integrated for all `steps` with dt = 0.02 in plain Python floats: a simulator's kind of CPU cost."""
    w = params["w"].astype(np.float64).tolist()
    b = params["b"].astype(np.float64).tolist()
    x, v, angle, omega = 0.0, 0.0, 0.05, 0.0
    survived = 0.0
    for _ in range(steps):
        state = (x, v, angle, omega)
        force = sum(wi * si for wi, si in zip(w[0], state, strict=True)) + b[0]
        damping = sum(wi * si for wi, si in zip(w[1], state, strict=True)) + b[1]
        force = max(-10.0, min(10.0, force))
        alpha = 9.8 * math.sin(angle) - math.cos(angle) * (force + 0.05 * omega * omega * math.sin(angle))
        alpha -= 0.01 * math.tanh(damping) * omega
        omega += 0.02 * alpha
        angle += 0.02 * omega
        v += 0.02 * (force - 0.1 * v)
        x += 0.02 * v
        survived += (abs(angle) < 0.8) * (1.0 - 0.01 * min(x * x, 100.0))
        angle = max(-1.5, min(1.5, angle))
    return survived


def make_strategy(population: int, shape=(2, 4), shaping: str = "centered_rank"):
    es = egg.EGGROLL(
        population_size=population, sigma=0.1, rank=1, optimizer=egg.optim.adam(0.05), shaping=shaping, seed=0
    )
    rng = np.random.default_rng(0)
    params = {"w": (0.1 * rng.standard_normal(shape)).astype(np.float32), "b": np.zeros(shape[0], np.float32)}
    return es, es.init(params)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def throughput(args) -> None:
    es, start = make_strategy(args.population)
    fitness = per_member(functools.partial(balance_time, steps=args.steps))
    evaluators = {"local": LocalEvaluator(es, fitness)}
    for workers in (1, 2):
        evaluators[f"pool x {workers}"] = ProcessPoolEvaluator(es, fitness, workers=workers)
        evaluators[f"ray x {workers}"] = RayEvaluator(es, fitness, workers=workers)
    states = dict.fromkeys(evaluators, start)
    for name, evaluator in evaluators.items():  # warm-up: workers start, replicas receive the state
        states[name], _, _ = evaluator.step(states[name])
    names = list(evaluators)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names) :] + names[: repeat % len(names)]
        for name in order:
            begin = time.perf_counter()
            for _ in range(args.generations):
                states[name], _, _ = evaluators[name].step(states[name])
            seconds[name].append(time.perf_counter() - begin)
        log(f"repeat {repeat + 1}/{args.repeats} done")
    for name in names:
        for leaf in start.params:
            np.testing.assert_array_equal(states[name].params[leaf], states["local"].params[leaf], err_msg=name)
        evaluators[name].close()
    rate = {name: args.generations / statistics.median(seconds[name]) for name in names}
    print(f"generations per second, population {args.population}, {args.steps}-step Python rollouts per member")
    print(f"{args.repeats} interleaved repeats of {args.generations} generations; final params equal in all rows")
    print()
    print(f"{'evaluator':<11} {'gen/s':>7} {'speedup vs 1 worker':>20}")
    for name in names:
        base = name.replace("x 2", "x 1")
        speedup = f"{rate[name] / rate[base]:.2f}" if name.endswith("x 2") else "-"
        print(f"{name:<11} {rate[name]:>7.2f} {speedup:>20}")
    print()


def traffic(args) -> None:
    print(f"bytes between driver and 2 Ray replicas, population {args.population}")
    print()
    print(f"{'parameters':>11} {'first call (state) B':>21} {'per generation B':>17} {'with sign shaping B':>20}")
    for side in args.sides:
        later = {}
        for shaping in ("centered_rank", "sign"):
            es, state = make_strategy(args.population, shape=(side, side), shaping=shaping)
            fitness = per_member(functools.partial(mean_square, "w"))
            with RayEvaluator(es, fitness, workers=2) as evaluator:
                for _ in range(3):
                    state, _, _ = evaluator.step(state)
                record = evaluator.traffic
            later[shaping] = ", ".join(f"{b:,}" for b in sorted(set(record.per_generation[1:])))
        first = record.state_loads[0] + record.per_generation[0]
        print(f"{side * side + side:>11,} {first:>21,} {later['centered_rank']:>17} {later['sign']:>20}")
    n = args.population
    print(
        f"\n(replicas + 1) · 8 · N = {3 * 8 * n:,} B of float64 fitness; with sign shaping the told fitness goes "
        f"down as pair signs, five to a byte (replicas · ⌈N/10⌉ = {2 * -(-n // 10)} B), and 8 · N = {8 * n:,} B of "
        "raw fitness come back; the rest is the envelope"
    )


def mean_square(name: str, params: dict) -> float:
    return -float(np.mean(params[name] ** 2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--population", type=int, default=64)
    parser.add_argument("--steps", type=int, default=STEPS, help="rollout length (CPU cost per member)")
    parser.add_argument("--generations", type=int, default=5, help="generations per timed sample")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    args.sides = [31, 100, 316, 1000]
    if args.quick:
        args.population, args.steps, args.generations, args.repeats, args.sides = 16, 50, 2, 2, [31, 100]
    import ray

    # 4 logical CPUs on the 2 cores, so the 1- and 2-replica evaluators (3 actors) can live side by side.
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    log(f"load average at start: {os.getloadavg()}")
    throughput(args)
    traffic(args)
    log(f"load average at end: {os.getloadavg()}")
    ray.shutdown()


if __name__ == "__main__":
    main()

"""Outside loop: EGGROLL embedded in an evaluation loop that the caller owns.

The strategy never calls your code: `ask` gives a population, you evaluate its members however and
wherever you like, and `tell` takes one fitness per member in population order. This script plays the
caller of a pool of workers that know nothing of eggroll_np:

1. ask → hand out members by index, each as a flat float64 NumPy vector (what a simulator in another
   process, language or machine would take; `flatten`/`unflatten` hold the layout);
2. collect the fitness as it comes back, in any order: threads with random delays stand for asynchronous
   workers, and each result lands in a list at its member's index;
3. tell, once every member has reported (a list of floats is accepted as it is);
4. rebuild a member from (seed, generation, index) alone: a fresh `EGGROLL` with the same settings and
   `ask` on a state at that generation give member i again, bit for bit, because the noise is a pure
   function of (seed, generation, leaf, index): a worker that holds the mean θ of a generation needs only
   its index, not the member's numbers;
5. checkpoint with `egg.save`, load with `egg.load`, and continue with a fresh strategy: the continued run
   equals the uninterrupted one bit for bit (checked; a difference raises).

The workers' task is a stand-in for any evaluation: the parameters {"W": (4, 8), "b": (4,)} of a linear
map are scored by the mean squared error of their predictions on fixed data made by a hidden (W*, b*);
the fitness is −error (higher is better), 0 at the optimum.

Run it from the repository root (a few seconds with the defaults):

    .venv/bin/python examples/outside_loop.py
    .venv/bin/python examples/outside_loop.py --generations 200 --workers 8

It prints the order in which the first generation's results arrived, the error of the mean parameters
every --print-every generations, the two checks (rebuilt member, continued run) and the final error.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import numpy as np

import eggroll_np as egg

SHAPES = {"W": (4, 8), "b": (4,)}  # the layout of a flat vector: leaves in this order, row-major


def flatten(params: dict) -> np.ndarray:
    """The leaves of `params` as one float64 vector, in the order of SHAPES."""
    return np.concatenate([np.asarray(params[name], dtype=np.float64).ravel() for name in SHAPES])


def unflatten(vector: np.ndarray) -> dict:
    """The inverse of `flatten`: a dict of float64 arrays of SHAPES."""
    params, offset = {}, 0
    for name, shape in SHAPES.items():
        size = int(np.prod(shape))
        params[name] = vector[offset : offset + size].reshape(shape)
        offset += size
    return params


def make_worker(data_seed: int = 11):
    """An outside evaluator: flat vector → fitness, −mean squared error on data from a hidden (W*, b*).

    It sleeps a random 0-2 ms first, so results come back out of order, as from remote workers."""
    rng = np.random.default_rng(data_seed)
    w_true, b_true = rng.standard_normal(SHAPES["W"]), rng.standard_normal(SHAPES["b"])
    x = rng.standard_normal((256, SHAPES["W"][1]))
    y = x @ w_true.T + b_true

    def evaluate(vector: np.ndarray) -> float:
        time.sleep(random.uniform(0.0, 0.002))
        params = unflatten(vector)
        return -float(np.mean((x @ params["W"].T + params["b"] - y) ** 2))

    return evaluate


def run(es, state, until: int, pool, evaluate, print_every: int):
    """The caller's loop, from state.generation up to generation `until`; returns the final state."""
    while state.generation < until:
        pop = es.ask(state)
        # Hand out members by index as flat vectors; the futures remember which index each one scores.
        jobs = {pool.submit(evaluate, flatten(pop.member(i))): i for i in range(len(pop))}
        fitness = [None] * len(pop)
        arrivals = []
        for job in as_completed(jobs):  # completion order, not submission order
            index = jobs[job]
            fitness[index] = job.result()
            arrivals.append(index)
        state, info = es.tell(state, pop, fitness)  # population order, whatever the arrival order was

        if state.generation == 1:
            print(f"generation 1: results arrived in the order {arrivals}")
        if state.generation % print_every == 0:
            print(
                f"generation {state.generation:4d}: members' mean error {-float(info['fitness_mean']):.4f}, "
                f"error of the mean {-evaluate(flatten(state.params)):.4f}"
            )
    return state


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="EGGROLL driven from an outside evaluation loop.")
    parser.add_argument("--generations", type=int, default=100, help="generations in all (default 100)")
    parser.add_argument("--checkpoint-at", type=int, default=None, help="generation to checkpoint (default: half)")
    parser.add_argument("--population", type=int, default=32, help="population size N, even (default 32)")
    parser.add_argument("--workers", type=int, default=4, help="worker threads (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the strategy's noise (default 0)")
    parser.add_argument("--print-every", type=int, default=20, help="generations between progress lines")
    args = parser.parse_args(argv)
    checkpoint_at = args.generations // 2 if args.checkpoint_at is None else args.checkpoint_at
    if not 0 <= checkpoint_at <= args.generations:
        parser.error(f"--checkpoint-at must lie in [0, {args.generations}]")

    # Everything that decides the noise (population size, rank, seed, σ, ...) lives in these settings: a
    # strategy built from them again asks the same populations. The optimizer decides the updates.
    settings = dict(population_size=args.population, sigma=0.05, rank=1, optimizer=egg.optim.adam(0.05), seed=args.seed)
    evaluate = make_worker()
    es = egg.EGGROLL(**settings)
    state = es.init({name: np.zeros(shape, dtype=np.float32) for name, shape in SHAPES.items()})
    print(
        f"N={es.population_size}, leaves {SHAPES}, {args.workers} workers; error at the start "
        f"{-evaluate(flatten(state.params)):.4f}"
    )

    with ThreadPoolExecutor(max_workers=args.workers) as pool, tempfile.TemporaryDirectory() as tmp:
        # Run to the checkpoint and save the whole state (mean, Adam's moments, generation).
        state = run(es, state, checkpoint_at, pool, evaluate, args.print_every)
        path = egg.save(Path(tmp) / "es.npz", state, metadata={"seed": args.seed, "population": args.population})
        print(f"saved generation {state.generation} to {path.name}")

        # Member 5 of this generation, as the loop hands it out next...
        index = 5 % args.population
        handed_out = flatten(es.ask(state).member(index))
        # ...rebuilt by a fresh strategy with the same settings (it brings the seed) asking on the state read
        # back from the checkpoint (it brings the generation and its mean θ); the index picks the member.
        rebuilt = flatten(egg.EGGROLL(**settings).ask(egg.load(path)).member(index))
        if not np.array_equal(rebuilt, handed_out):
            raise RuntimeError("the rebuilt member differs from the one handed out")
        print(f"member {index} of generation {state.generation} rebuilt from (seed, generation, index): bit-identical")

        # Continue the original run to the end...
        print("the original run continues:")
        uninterrupted = run(es, state, args.generations, pool, evaluate, args.print_every)
        # ...and, separately, a fresh strategy from the checkpoint, as a restarted process would.
        print("a fresh strategy continues from the checkpoint:")
        resumed = run(egg.EGGROLL(**settings), egg.load(path), args.generations, pool, evaluate, args.print_every)

    same = all(np.array_equal(uninterrupted.params[name], resumed.params[name]) for name in SHAPES)
    if not (same and uninterrupted.generation == resumed.generation):
        raise RuntimeError("the run continued from the checkpoint differs from the uninterrupted one")
    print(f"continued from the checkpoint = uninterrupted run, bit for bit, after {resumed.generation} generations")
    final = -evaluate(flatten(resumed.params))
    print(f"final error of the mean parameters: {final:.6f} (optimum 0)")
    return final


if __name__ == "__main__":
    main()

"""The int8 language model EGG under integer EGGROLL: forward throughput against plain inference, and held-out
bits/byte against the population size at fixed data.

throughput: for each population N, member-tokens per second (N · T / s) of the population forward
            `EGG.apply(pop, tokens, shared=False)` (each member its own T bytes) and of plain batched
            inference of the same int8 model on the same N sequences (`EGG.apply(MeanOps(params), tokens)`),
            timed interleaved over --repeats, medians; ratio = population / plain throughput.
scaling:    for each population N in --populations, the text task's training for --generations updates on the
            same data (the same windows every generation of every run, from the task's seed), then held-out
            bits/byte of the mean parameters; the paper's claim is that it falls as N grows.

    .venv/bin/python bench/egg.py                 # both, at the defaults below
    .venv/bin/python bench/egg.py --quick         # a few seconds: small sizes (the tests run this)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

import eggroll_np as egg
from eggroll_np.egg_model import EGG
from eggroll_np.tasks.text import TextTask
from eggroll_np.training import make_strategy, run_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table


def _time(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def throughput(populations, layers: int, width: int, length: int, repeats: int) -> list[dict]:
    model = EGG(layers, width)
    params = model.init(np, seed=0)
    rows = []
    for n in populations:
        es = egg.EGGROLL(population_size=n, sigma=1 / 16, optimizer=egg.optim.integer_step(), shaping="sign")
        pop = es.ask(es.init(params))
        tokens = np.random.default_rng(0).integers(0, 256, size=(n, length)).astype(np.int32)
        run_plain = partial(model.apply, egg.MeanOps(params), tokens)
        run_population = partial(model.apply, pop, tokens, shared=False)
        run_plain(), run_population()  # warm-up
        plain, perturbed = [], []
        for _ in range(repeats):
            plain.append(_time(run_plain))
            perturbed.append(_time(run_population))
        tokens_done = n * length
        rows.append(
            {
                "N": n,
                "plain tok/s": tokens_done / statistics.median(plain),
                "population tok/s": tokens_done / statistics.median(perturbed),
                "ratio": statistics.median(plain) / statistics.median(perturbed),
            }
        )
    return rows


def scaling(populations, generations: int, layers: int, width: int, length: int) -> list[dict]:
    rows = []
    for n in populations:
        config = run_config(
            "text",
            dict(population_size=n, layers=layers, width=width, sequence_length=length, generations=generations),
        )
        config.update(learning_rate=0.05, lr_schedule="constant")
        task = TextTask(config, np, None, np.float32)
        es = make_strategy(config)
        state = es.init(task.init_params(config["seed"]))
        start = time.perf_counter()
        for _ in range(generations):
            pop = es.ask(state)
            state, _ = es.tell(state, pop, task.fitness(pop, 0))  # the same windows every update
        rows.append(
            {
                "N": n,
                "held-out bits/byte": task.evaluate(state.params)["test_bits_per_byte"],
                "seconds": time.perf_counter() - start,
            }
        )
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--length", type=int, default=100, help="bytes per member")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--generations", type=int, default=50, help="updates per population in the scaling run")
    parser.add_argument("--populations", type=int, nargs="+", default=[16, 64, 256, 1024])
    args = parser.parse_args(argv)
    if args.quick:
        args.width, args.length, args.repeats, args.generations, args.populations = 16, 16, 2, 3, [8, 32]
    forward = throughput(args.populations, args.layers, args.width, args.length, args.repeats)
    print(f"EGG {args.layers}L-{args.width}D, {args.length} bytes per member: forward throughput")
    print(markdown_table(forward))
    curve = scaling(args.populations, args.generations, args.layers, args.width, args.length)
    print(f"held-out bits/byte after {args.generations} updates on the same data")
    print(markdown_table(curve))
    return {"throughput": forward, "scaling": curve}


if __name__ == "__main__":
    main()

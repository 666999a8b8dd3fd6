"""A whole EGGROLL generation compiled once by JAX and run under jax.lax.scan, with no host reads.

The model is an MLP 16-64-4 (tanh) regressing a fixed random target on a fixed batch; each member's fitness
is the negative mean squared error. One generation is

    step(state) = tell(state, pop, fitness(pop)),   pop = ask(state)

and `jax.jit(lambda s: jax.lax.scan(step, s, None, length=K))` compiles it once and runs K generations on
the device: the generation counter is traced, the noise keys are derived from it inside the trace (the same
bits as an eager run), and nothing returns to Python until the K generations are done. The script compiles,
times a first block (compilation included) and the next blocks (compiled), and prints the loss of the mean
parameters after each block. `nan_policy="worst"` is required: "raise" would read the fitness back.

Run it from the repository root (needs JAX; a few seconds on a CPU):

    .venv/bin/python examples/jax_scan.py
    .venv/bin/python examples/jax_scan.py --generations 400 --block 100 --population 256
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import eggroll_np as egg


def main(argv=None) -> float:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--generations", type=int, default=200, help="generations in all")
    parser.add_argument("--block", type=int, default=50, help="generations per compiled lax.scan call")
    parser.add_argument("--population", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.generations % args.block:
        parser.error(f"--generations {args.generations} must be a multiple of --block {args.block}")

    import jax
    import jax.numpy as jnp

    model = egg.models.MLP((16, 64, 4))
    rng = np.random.default_rng(args.seed)
    x = jnp.asarray(rng.standard_normal((32, 16)), dtype=jnp.float32)
    target = jnp.asarray(rng.standard_normal((32, 4)), dtype=jnp.float32)
    es = egg.EGGROLL(
        population_size=args.population, sigma=0.05, optimizer=egg.optim.adam(0.02), nan_policy="worst", seed=args.seed
    )

    def loss(params):
        return jnp.mean((model.apply(egg.MeanOps(params), x) - target) ** 2)

    def step(state, _):
        pop = es.ask(state)
        fitness = -jnp.mean((model.apply(pop, x) - target) ** 2, axis=(1, 2))
        state, info = es.tell(state, pop, fitness)
        return state, info["fitness_mean"]

    run_block = jax.jit(lambda state: jax.lax.scan(step, state, None, length=args.block))
    state = es.init(model.init(jnp, seed=args.seed))
    # The state as scan returns it: Python integers (the generation, Adam's count) as int32 arrays, every
    # array committed to the device. The first call then has the types of every later one: one compilation.
    state = jax.tree_util.tree_map(
        lambda leaf: jnp.asarray(leaf, dtype=jnp.int32) if isinstance(leaf, int) else leaf, state
    )
    state = jax.device_put(state, jax.devices()[0])
    print(f"initial loss {float(loss(state.params)):.4f}, population {args.population}, on {jax.devices()[0]}")
    for block in range(args.generations // args.block):
        start = time.perf_counter()
        state, _ = run_block(state)
        final = float(loss(state.params))  # the one host read of the block
        seconds = time.perf_counter() - start
        note = " (compilation included)" if block == 0 else ""
        print(
            f"generation {int(state.generation):5d}: loss {final:.4f}, {args.block / seconds:8.1f} generations/s{note}"
        )
    return final


if __name__ == "__main__":
    main()

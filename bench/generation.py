"""A whole generation against plain batched inference of the same model and rows, per backend, side by side.

generation: `pop = es.ask(state)`, the population forward, the fitness, `state = es.tell(state, pop, F)`;
plain:      the same model on MeanOps(params) over the same number of rows (N members × b inputs), the
            inference a user would run anyway; ratio = plain time / generation time (1.0: the ES costs nothing
            beyond inference).

Cases (float32, antithetic, rank 1, Adam):
  digits: the digits MLP 64-256-256-10 (tanh), N = 512 members on one shared batch of 128 inputs; fitness
          the mean log-softmax of the labels; plain: the MLP on N × 128 rows.
  wide:   one d × d layer, d = 1024, N = 2048 members with b = 1 input each (per member); fitness the mean
          output; plain: the layer on N rows.

Backends: numpy, and torch and jax (eager) where importable; for JAX also "jax (lax.scan)": 10 generations
compiled under one jax.lax.scan (time per generation) against the jitted plain inference. Each sample times
one call; the two are interleaved over --repeats and the medians compared. Goals: digits ≥ 0.95 on NumPy;
the compiled JAX generation ≥ 0.90 of JAX's compiled inference.

Where evosax is importable (an optional comparison, never a dependency: `pip install evosax==0.3.2` in a
separate environment), the digits case adds "evosax OpenES (lax.scan)": its Open_ES (antithetic, centered
ranks, optax Adam) on the same MLP, population and batch, its members (the params dict with leaves (N, …))
run through the same MLP under jax.vmap, 10 generations under one lax.scan, against the same jitted inference;
the script prints how many times faster the compiled EGGROLL generation is (goal ≥ 3).

    .venv/bin/python bench/generation.py                 # both cases, every importable backend
    .venv/bin/python bench/generation.py --quick         # small sizes, a few seconds (the tests run this)
    .venv/bin/python bench/generation.py --parts         # where NumPy's digits generation spends its time
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import eggroll_np as egg
from eggroll_np._array_api import backend_namespace
from eggroll_np.models import MLP, log_softmax

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table


def digits_case(xp, dev, n: int, batch: int, sizes=(64, 256, 256, 10), compiled: bool = False):
    """(generation, plain) callables of the digits case, the state advancing every generation; with
    `compiled`, the pieces (es, state, fitness(pop), plain(params)) for `compiled_case`."""
    model = MLP(sizes)
    rng = np.random.default_rng(0)
    x = xp.asarray(rng.standard_normal((batch, sizes[0])), dtype=xp.float32, device=dev)
    onehot = xp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)], dtype=xp.float32, device=dev)
    rows = xp.asarray(rng.standard_normal((n, batch, sizes[0])), dtype=xp.float32, device=dev)
    es = egg.EGGROLL(population_size=n, sigma=0.05, optimizer=egg.optim.adam(0.01), nan_policy="worst")
    state = [es.init(model.init(xp, device=dev))]

    def fitness(pop):
        return xp.mean(xp.sum(log_softmax(model.apply(pop, x, shared=True)) * onehot, axis=-1), axis=-1)

    if compiled:
        return es, state[0], fitness, lambda params: model.apply(egg.MeanOps(params), rows)

    def generation():
        pop = es.ask(state[0])
        state[0], _ = es.tell(state[0], pop, fitness(pop))

    def plain():
        return model.apply(egg.MeanOps(state[0].params), rows)

    return generation, plain


def wide_case(xp, dev, n: int, d: int, compiled: bool = False):
    """As `digits_case`, for one d × d layer with one input per member."""
    rng = np.random.default_rng(1)
    x = xp.asarray(rng.standard_normal((n, 1, d)), dtype=xp.float32, device=dev)
    weight = xp.asarray(rng.standard_normal((d, d)) / np.sqrt(d), dtype=xp.float32, device=dev)
    es = egg.EGGROLL(population_size=n, sigma=0.05, optimizer=egg.optim.adam(0.01), nan_policy="worst")
    state = [es.init({"w": weight})]

    def fitness(pop):
        return xp.mean(pop.linear("w", x, shared=False), axis=(1, 2))

    if compiled:
        return es, state[0], fitness, lambda params: egg.MeanOps(params).linear("w", xp.reshape(x, (n, d)))

    def generation():
        pop = es.ask(state[0])
        state[0], _ = es.tell(state[0], pop, fitness(pop))

    def plain():
        return egg.MeanOps(state[0].params).linear("w", xp.reshape(x, (n, d)))

    return generation, plain


def compiled_case(case: str, sizes: dict, generations: int = 10):
    """(generation, plain) on JAX, both compiled: `generations` generations under one jax.lax.scan (timed per
    generation) against the jitted plain inference of the same rows."""
    import jax
    import jax.numpy as jnp

    xp, dev = backend_namespace("jax")
    built = (
        digits_case(xp, dev, **sizes, compiled=True) if case == "digits" else wide_case(xp, dev, **sizes, compiled=True)
    )
    es, state, fitness, plain = built
    state = jax.device_put(
        jax.tree_util.tree_map(
            lambda leaf: jnp.asarray(leaf, dtype=jnp.int32) if isinstance(leaf, int) else leaf, state
        )
    )

    def step(state, _):
        pop = es.ask(state)
        return es.tell(state, pop, fitness(pop))[0], None

    run = jax.jit(lambda s: jax.lax.scan(step, s, None, length=generations)[0])
    holder = [state]

    def generation():
        holder[0] = run(holder[0])
        jax.block_until_ready(holder[0])

    generation()  # a first compilation for the initial state; `measure`'s warm-up compiles for scan's outputs
    plain_jit = jax.jit(plain)
    return generation, lambda: plain_jit(holder[0].params), generations


def evosax_case(n: int, batch: int, sizes=(64, 256, 256, 10), generations: int = 10):
    """(generation, plain) of evosax's Open_ES on the digits case, compiled as `compiled_case` compiles ours:
    the same MLP on the same shared batch (`digits_case`'s rows, seed 0), each member evaluated under
    jax.vmap; evosax minimizes, so it is told the negated fitness."""
    import jax
    import jax.numpy as jnp
    import optax
    from evosax.algorithms import Open_ES

    xp, dev = backend_namespace("jax")
    model = MLP(sizes)
    state, plain = digits_case(xp, dev, n=n, batch=batch, compiled=True)[1::2]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, sizes[0])), dtype=jnp.float32)
    onehot = jnp.asarray(np.eye(sizes[-1])[rng.integers(0, sizes[-1], batch)], dtype=jnp.float32)
    es = Open_ES(
        population_size=n, solution=state.params, optimizer=optax.adam(0.01), std_schedule=optax.constant_schedule(0.05)
    )
    es_params = es.default_params

    def member_fitness(member):
        return jnp.mean(jnp.sum(log_softmax(model.apply(egg.MeanOps(member), x)) * onehot, axis=-1))

    def step(carry, _):
        key, es_state = carry
        key, ask_key, tell_key = jax.random.split(key, 3)
        members, es_state = es.ask(ask_key, es_state, es_params)  # the params dict, leaves (N, …)
        es_state, _ = es.tell(tell_key, members, -jax.vmap(member_fitness)(members), es_state, es_params)
        return (key, es_state), None

    run = jax.jit(lambda c: jax.lax.scan(step, c, None, length=generations)[0])
    holder = [(jax.random.key(0), es.init(jax.random.key(1), state.params, es_params))]

    def generation():
        holder[0] = run(holder[0])
        jax.block_until_ready(holder[0])

    generation()
    plain_jit = jax.jit(plain)
    return generation, lambda: plain_jit(state.params), generations


def digits_parts(n: int, batch: int, repeats: int, sizes=(64, 256, 256, 10)) -> list[dict]:
    """Medians (ms) of the digits generation's parts on NumPy, interleaved with plain inference: `ask`, the
    population forward, the log-softmax fitness on its outputs, `tell`: where a generation's time goes.

    Then the floor of the work a NumPy generation adds to plain inference, which no implementation on
    NumPy's ufuncs and matmul avoids: NumPy's own fastest normals (PCG64 ziggurat) for as many numbers as
    `ask` draws; per layer with per-member inputs (all but the first), one read of its inputs (x Bₖ) and one
    read-and-write pass over its outputs (adding (x Bₖ) Aₖᵀ); the fitness and `tell` as measured. Against it
    stands what the generation saves: its first layer is one product of the shared batch plus the
    corrections, where plain inference multiplies N × b rows (the saving: the two first layers' times
    apart). The bound plain / (plain − saving + floor) is the best ratio such a generation can reach."""
    xp, dev = backend_namespace("numpy")
    es, state, fitness, plain = digits_case(xp, dev, n=n, batch=batch, sizes=sizes, compiled=True)
    rng = np.random.default_rng(0)  # digits_case's batch and labels
    x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
    onehot = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]
    model, pop = MLP(sizes), es.ask(state)
    outputs, fitnesses = model.apply(pop, x, shared=True), fitness(pop)
    parts = {
        "ask": lambda: es.ask(state),
        "population forward": lambda: model.apply(pop, x, shared=True),
        "log-softmax fitness": lambda: np.mean(np.sum(log_softmax(outputs) * onehot, axis=-1), axis=-1),
        "tell": lambda: es.tell(state, pop, fitnesses),
        "plain inference": lambda: plain(state.params),
    }
    parts.update(_floor_parts(pop, n * batch, sizes))
    plain_rows = np.ones((n * batch, sizes[0]), np.float32)
    parts["first layer: plain inference"] = lambda: egg.MeanOps(state.params).linear("layers.0.w", plain_rows)
    parts["first layer: population (shared batch)"] = lambda: pop.linear("layers.0.w", x)
    times = {name: [] for name in parts}
    for _ in range(repeats):
        for name, call in parts.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return [{"part": name, "ms": 1e3 * statistics.median(samples)} for name, samples in times.items()]


def parts_ratios(rows: list[dict]) -> dict:
    """The generation's ratio from its parts summed, and the bound from the floor (see `digits_parts`)."""
    ms = {row["part"]: row["ms"] for row in rows}
    plain, fitness_and_tell = ms["plain inference"], ms["log-softmax fitness"] + ms["tell"]
    floor = sum(v for k, v in ms.items() if k.startswith("floor")) + fitness_and_tell
    saving = ms["first layer: plain inference"] - ms["first layer: population (shared batch)"]
    return {
        "measured": plain / (ms["ask"] + ms["population forward"] + fitness_and_tell),
        "bound": plain / (plain - saving + floor),
    }


def _floor_parts(pop, rows: int, sizes) -> dict:
    """The floor's timed calls (see `digits_parts`) on arrays of the digits shapes."""
    count = sum(int(np.size(array)) for noise in pop.noise.values() for array in noise)
    generator = np.random.default_rng(1)
    inputs = [np.ones((rows, width), np.float32) for width in sizes[1:-1]]  # inputs of the per-member layers
    outputs = [np.ones((rows, width), np.float32) for width in sizes[2:]]
    return {
        "floor: normals (NumPy PCG64)": lambda: generator.standard_normal(count, dtype=np.float32),
        "floor: read each per-member layer's inputs": lambda: [np.sum(x) for x in inputs],
        "floor: add into each per-member layer's outputs": lambda: [np.add(y, 1.0, out=y) for y in outputs],
    }


def _sync(xp, result) -> None:
    """Wait for asynchronous backends (JAX) so the time covers the work."""
    if result is not None and hasattr(result, "block_until_ready"):
        result.block_until_ready()


def measure(generation, plain, xp, repeats: int, generations_per_call: int = 1) -> dict:
    generation(), _sync(xp, plain())  # warm-up: first calls compile (JAX) or allocate
    times = {"generation": [], "plain": []}
    for _ in range(repeats):
        for name, call in (("plain", plain), ("generation", generation)):
            start = time.perf_counter()
            _sync(xp, call())
            times[name].append(time.perf_counter() - start)
    plain_s = statistics.median(times["plain"])
    generation_s = statistics.median(times["generation"]) / generations_per_call
    return {"plain ms": 1e3 * plain_s, "generation ms": 1e3 * generation_s, "ratio": plain_s / generation_s}


def available_backends() -> list[str]:
    return ["numpy", *(name for name in ("torch", "jax") if importlib.util.find_spec(name))]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--backends", nargs="+", default=None, help="default: every importable one")
    parser.add_argument("--parts", action="store_true", help="only the NumPy digits generation's parts")
    args = parser.parse_args(argv)
    digits = dict(n=32, batch=16) if args.quick else dict(n=512, batch=128)
    if args.parts:
        rows = digits_parts(**digits, repeats=2 if args.quick else args.repeats)
        print(markdown_table(rows))
        ratios = parts_ratios(rows)
        print(f"ratio from the parts {ratios['measured']:.3f}; bound from the floor {ratios['bound']:.3f}")
        return rows
    wide = dict(n=64, d=64) if args.quick else dict(n=2048, d=1024)
    repeats = 2 if args.quick else args.repeats
    rows = []
    for backend in args.backends or available_backends():
        xp, dev = backend_namespace(backend)
        for case, build, sizes in (("digits", digits_case, digits), ("wide", wide_case, wide)):
            result = measure(*build(xp, dev, **sizes), xp, repeats)
            shape = {"N": sizes["n"], "b": sizes.get("batch", 1), "d": sizes.get("d", 64)}
            rows.append({"backend": backend, "case": case, **shape, **result})
            print(f"{backend} {case}: ratio {result['ratio']:.3f}", file=sys.stderr, flush=True)
            if backend == "jax":  # and compiled: generations under lax.scan against jitted inference
                generation, plain, per_call = compiled_case(case, sizes)
                result = measure(generation, plain, xp, repeats, per_call)
                rows.append({"backend": "jax (lax.scan)", "case": case, **shape, **result})
                print(f"jax compiled {case}: ratio {result['ratio']:.3f}", file=sys.stderr, flush=True)
                if case == "digits" and importlib.util.find_spec("evosax"):
                    ours = result["generation ms"]
                    generation, plain, per_call = evosax_case(**sizes)
                    result = measure(generation, plain, xp, repeats, per_call)
                    rows.append({"backend": "evosax OpenES (lax.scan)", "case": case, **shape, **result})
                    print(f"compiled EGGROLL is {result['generation ms'] / ours:.2f}x evosax's OpenES", flush=True)
    print(markdown_table(rows))
    return rows


if __name__ == "__main__":
    main()

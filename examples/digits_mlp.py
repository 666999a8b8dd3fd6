"""Digits MLP: EGGROLL trains a classifier by hand with the library's API (no `eggroll_np.training`).

What it shows:

- the data split (`eggroll_np.tasks.digits.load_digits_split`: scikit-learn's 8×8 digits, 80 % train,
  20 % held-out test) moved once onto the backend;
- a model written against the ops, `egg.models.MLP((64, hidden, 10))`, whose params `model.init` creates;
- `egg.EGGROLL` with AdamW and a cosine learning-rate schedule, as the `digits` task of the command line
  uses (σ = 0.05, rank 1, weight decay 0.1, the rate falling to 5 % of --lr over the run);
- the whole population scored in ONE batched forward pass, `model.apply(pop, x, shared=True)`: every
  member's logits for one minibatch shared by all members, (N, batch, 10), without ever forming a member's
  weight matrix;
- the fitness of member i, the mean log-likelihood of its minibatch, an (N,) array handed to `tell`;
- the test accuracy of the mean parameters through `egg.MeanOps(state.params)`, the same model code.

Run it from the repository root (under 10 s on a 2-core CPU with the defaults):

    .venv/bin/python examples/digits_mlp.py
    .venv/bin/python examples/digits_mlp.py --generations 400 --population 1024
    .venv/bin/python examples/digits_mlp.py --backend jax     # or cupy, with a CUDA device

It prints the settings, then every --print-every generations the population's mean and best fitness, the
test accuracy of the mean parameters and the speed, and at the end the final test accuracy (about 0.96-0.97
after the default 200 generations; chance is 0.1).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import eggroll_np as egg
from eggroll_np.tasks.digits import load_digits_split


def backend(name: str):
    """(xp, device): the array namespace and device that params and data live on."""
    if name == "numpy":
        return np, "cpu"  # NumPy 2 is an array-API namespace itself
    if name == "jax":
        import jax
        import jax.numpy as jnp

        return jnp, jax.devices()[0]
    if name == "cupy":
        try:
            import array_api_compat.cupy as xp  # CuPy's array-API view: its asarray takes device=
            import cupy
        except ImportError:
            raise SystemExit("--backend cupy needs CuPy: pip install 'eggroll-np[cuda12]' (or [cuda13])") from None
        return xp, cupy.cuda.Device()
    raise ValueError(f"unknown backend {name!r}")


def accuracy(xp, model, params, x, labels) -> float:
    """Accuracy of the mean parameters θ: the model on `egg.MeanOps(params)` gives logits (batch, 10)."""
    predictions = xp.argmax(model.apply(egg.MeanOps(params), x), axis=-1)
    return float(xp.mean(xp.astype(predictions == labels, xp.float32)))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="EGGROLL trains an MLP on scikit-learn's digits (library API).")
    parser.add_argument("--generations", type=int, default=200, help="generations (default 200)")
    parser.add_argument("--population", type=int, default=512, help="population size N, even (default 512)")
    parser.add_argument("--batch-size", type=int, default=128, help="training images per generation (default 128)")
    parser.add_argument("--hidden", type=int, default=64, help="hidden units (default 64)")
    parser.add_argument("--sigma", type=float, default=0.05, help="perturbation scale σ (default 0.05)")
    parser.add_argument("--lr", type=float, default=0.02, help="initial learning rate of AdamW (default 0.02)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, the noise and the batches")
    parser.add_argument("--backend", choices=("numpy", "jax", "cupy"), default="numpy", help="array library")
    parser.add_argument("--print-every", type=int, default=25, help="generations between progress lines")
    args = parser.parse_args(argv)

    xp, device = backend(args.backend)

    # The data: NumPy arrays from scikit-learn, copied once onto the backend.
    x_train, y_train, x_test, y_test = load_digits_split()
    n_train = x_train.shape[0]
    x_train = xp.asarray(x_train, dtype=xp.float32, device=device)
    onehot_train = xp.asarray(np.eye(10)[y_train], dtype=xp.float32, device=device)
    x_test = xp.asarray(x_test, dtype=xp.float32, device=device)
    y_test = xp.asarray(y_test, device=device)

    # The model and the strategy.
    model = egg.models.MLP((64, args.hidden, 10), activation="tanh")
    learning_rate = egg.schedules.cosine(args.lr, args.generations, final_fraction=0.05)
    es = egg.EGGROLL(
        population_size=args.population,
        sigma=args.sigma,
        rank=1,
        optimizer=egg.optim.adamw(learning_rate, weight_decay=0.1),
        shaping="centered_rank",
        seed=args.seed,
    )
    state = es.init(model.init(xp, device=device, seed=args.seed))
    print(
        f"digits MLP {model.sizes} on {args.backend}: N={es.population_size}, sigma={args.sigma}, rank={es.rank}, "
        f"adamw({args.lr}, cosine), batch {args.batch_size}, {args.generations} generations"
    )
    print(f"test accuracy before training: {accuracy(xp, model, state.params, x_test, y_test):.3f}")

    batches = np.random.default_rng(args.seed)  # the minibatch order, on the host
    start = time.perf_counter()
    for generation in range(1, args.generations + 1):
        rows = xp.asarray(batches.choice(n_train, args.batch_size, replace=False), device=device)
        x = xp.take(x_train, rows, axis=0)  # (batch, 64), shared by every member
        onehot = xp.take(onehot_train, rows, axis=0)  # (batch, 10)

        pop = es.ask(state)
        logits = model.apply(pop, x, shared=True)  # (N, batch, 10): all members in one pass
        fitness = xp.mean(xp.sum(egg.models.log_softmax(logits) * onehot, axis=-1), axis=-1)  # (N,) log-likelihood
        state, info = es.tell(state, pop, fitness)

        if generation % args.print_every == 0 or generation == args.generations:
            rate = generation / (time.perf_counter() - start)
            print(
                f"generation {generation:4d}: fitness mean {float(info['fitness_mean']):8.4f} "
                f"best {float(info['fitness_max']):8.4f}, test accuracy "
                f"{accuracy(xp, model, state.params, x_test, y_test):.3f}, {rate:.1f} gen/s"
            )

    final = accuracy(xp, model, state.params, x_test, y_test)
    print(f"final test accuracy of the mean parameters: {final:.4f} ({time.perf_counter() - start:.1f} s)")
    return final


if __name__ == "__main__":
    main()

"""CuPy GPU: the digits MLP trained on a CUDA GPU, everything resident on the device.

The same training as `examples/digits_mlp.py`, arranged so that the loop never waits for the GPU:

- the data and every minibatch's row indices (drawn on the host for the whole run) are copied to the GPU
  once, before the loop;
- the parameters are created on the GPU: `model.init(xp, device=...)` with `xp = array_api_compat.cupy`,
  CuPy's array-API view (its `asarray` takes `device=`);
- the population's forward pass, the fitness (mean log-likelihood) and `ask`/`tell` all run on the GPU;
  `nan_policy="worst"` removes the one value `tell` would otherwise read back (whether all fitness values
  are finite), and σ, learning rates and schedules are Python floats;
- the metrics `tell` returns are 0-D GPU arrays; the loop converts them (and computes the test accuracy)
  only every --print-every generations, the only points where the host waits for the device.

Run it from the repository root on a machine with CuPy and a CUDA device:

    .venv/bin/pip install -e ".[cuda12]"      # or [cuda13], to match the driver's CUDA major version
    .venv/bin/python examples/cupy_gpu.py
    .venv/bin/python examples/cupy_gpu.py --population 8192 --hidden 256 --generations 500

and on the CPU, at small sizes, through NumPy (the same code; a few seconds):

    .venv/bin/python examples/cupy_gpu.py --backend numpy --population 256 --hidden 32 --generations 50

Without CuPy, or without a CUDA device, `--backend cupy` stops at once with a message saying which is
missing. It prints the settings, then every --print-every generations the population's mean and best
fitness, the test accuracy of the mean parameters and the speed, and at the end the final test accuracy.
The default settings reach a test accuracy of about 0.978 (measured through --backend numpy, which took
200 s on this project's 2-core CPU). No GPU timing has been measured for this project yet; the first
generation also pays for compiling CuPy's kernels (cached on disk for later runs).

TF32: CuPy multiplies float32 matrices in full float32 precision by default. With the environment
variable CUPY_TF32=1 set before the process's first float32 matrix product (`CUPY_TF32=1 .venv/bin/python
examples/cupy_gpu.py`), cuBLAS may use TF32 tensor cores on Ampere and newer GPUs: faster, with inputs
rounded to a 10-bit mantissa, so results move away from NumPy's by far more than the usual few ulp.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import eggroll_np as egg
from eggroll_np.tasks.digits import load_digits_split


def backend(name: str, parser: argparse.ArgumentParser):
    """(xp, device) for --backend; with cupy, a clear error where CuPy or a CUDA device is missing."""
    if name == "numpy":
        import array_api_compat.numpy as xp

        return xp, "cpu"
    try:
        import cupy
    except ImportError as exc:
        parser.error(
            f"--backend cupy needs CuPy, which cannot be imported ({exc}); install it with "
            "pip install 'eggroll-np[cuda12]' (or [cuda13]), or run on the CPU with --backend numpy"
        )
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError as exc:  # no driver, or one too old for this CuPy
        devices, reason = 0, f" ({exc})"
    else:
        reason = ""
    if devices < 1:
        parser.error(f"--backend cupy needs a CUDA device, and CuPy finds none{reason}; run with --backend numpy")
    import array_api_compat.cupy as xp

    return xp, cupy.cuda.Device()


def accuracy(xp, model, params, x, labels) -> float:
    """Accuracy of the mean parameters: computed on the device, one number read back."""
    predictions = xp.argmax(model.apply(egg.MeanOps(params), x), axis=-1)
    return float(xp.mean(xp.astype(predictions == labels, xp.float32)))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="EGGROLL trains a digits MLP on a CUDA GPU through CuPy.")
    parser.add_argument("--backend", choices=("cupy", "numpy"), default="cupy", help="array library (default cupy)")
    parser.add_argument("--generations", type=int, default=300, help="generations (default 300)")
    parser.add_argument("--population", type=int, default=2048, help="population size N, even (default 2048)")
    parser.add_argument("--batch-size", type=int, default=256, help="training images per generation (default 256)")
    parser.add_argument("--hidden", type=int, default=128, help="hidden units (default 128)")
    parser.add_argument("--sigma", type=float, default=0.05, help="perturbation scale σ (default 0.05)")
    parser.add_argument("--lr", type=float, default=0.02, help="initial learning rate of AdamW (default 0.02)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the init, the noise and the batches")
    parser.add_argument("--print-every", type=int, default=50, help="generations between progress lines")
    args = parser.parse_args(argv)

    xp, device = backend(args.backend, parser)

    # Host → device, once: the data and the row indices of every generation's minibatch.
    x_train, y_train, x_test, y_test = load_digits_split()
    rng = np.random.default_rng(args.seed)
    rows = np.stack([rng.choice(x_train.shape[0], args.batch_size, replace=False) for _ in range(args.generations)])
    batches = xp.asarray(rows, device=device)  # (generations, batch)
    x_train = xp.asarray(x_train, dtype=xp.float32, device=device)
    onehot_train = xp.asarray(np.eye(10)[y_train], dtype=xp.float32, device=device)
    x_test = xp.asarray(x_test, dtype=xp.float32, device=device)
    y_test = xp.asarray(y_test, device=device)

    model = egg.models.MLP((64, args.hidden, 10), activation="tanh")
    es = egg.EGGROLL(
        population_size=args.population,
        sigma=args.sigma,
        rank=1,
        optimizer=egg.optim.adamw(egg.schedules.cosine(args.lr, args.generations, 0.05), weight_decay=0.1),
        seed=args.seed,
        nan_policy="worst",  # no read-back inside tell
    )
    state = es.init(model.init(xp, device=device, seed=args.seed))  # float32 params, created on the device
    tf32 = f", CUPY_TF32={os.environ.get('CUPY_TF32', '0')}" if args.backend == "cupy" else ""
    print(
        f"digits MLP {model.sizes} on {args.backend} ({device}{tf32}): N={es.population_size}, "
        f"batch {args.batch_size}, {args.generations} generations"
    )

    start = time.perf_counter()
    for generation in range(1, args.generations + 1):
        batch = batches[generation - 1, ...]
        x = xp.take(x_train, batch, axis=0)
        onehot = xp.take(onehot_train, batch, axis=0)

        pop = es.ask(state)
        log_probs = egg.models.log_softmax(model.apply(pop, x, shared=True))  # (N, batch, 10) on the device
        fitness = xp.mean(xp.sum(log_probs * onehot, axis=-1), axis=-1)  # (N,) on the device
        state, info = es.tell(state, pop, fitness)  # nothing read back: the GPU runs ahead of the host

        if generation % args.print_every == 0 or generation == args.generations:
            mean, best = float(info["fitness_mean"]), float(info["fitness_max"])  # the host waits here
            test = accuracy(xp, model, state.params, x_test, y_test)
            rate = generation / (time.perf_counter() - start)
            print(
                f"generation {generation:4d}: fitness mean {mean:8.4f} best {best:8.4f}, "
                f"test accuracy {test:.3f}, {rate:.1f} gen/s"
            )

    final = accuracy(xp, model, state.params, x_test, y_test)
    print(f"final test accuracy of the mean parameters: {final:.4f} ({time.perf_counter() - start:.1f} s)")
    return final


if __name__ == "__main__":
    main()

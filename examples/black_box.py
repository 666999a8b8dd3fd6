"""Black box: EGGROLL minimizes a plain Python function of a dict of parameters, member by member.

The function is a tiny simulation written with NumPy: a linear dynamical system in 4 dimensions,

    x_{t+1} = A x_t + b,

run for 30 steps from 8 initial states. Hidden true parameters (A*, b*) (a damped two-frequency oscillator
in a rotated basis) produced the "observed" trajectories; f(A, b) is the mean squared error between the
trajectories the simulator gives for (A, b) and the observed ones. Fitting (A, b) to them is system
identification: f is 0 at (A*, b*) and nowhere else, and it is not quadratic in A (x_t contains Aᵗ).

What it shows:

- ask/tell on a dict of two leaves of different shapes: the matrix A (4×4, perturbed in rank 1,
  σ·a bᵀ) and the vector b (4, perturbed with full Gaussian noise), both float64 like the simulator;
- black-box evaluation: `pop.member(i)` materializes member i as a dict {"A": ..., "b": ...} of NumPy
  arrays, and a function that knows nothing of the strategy scores it, returning a Python float;
- `maximize=False`: the fitness handed to `tell` is f itself, lower is better;
- `egg.schedules.cosine` for the learning rate of Adam.

Run it from the repository root (about 5 s on a 2-core CPU with the defaults):

    .venv/bin/python examples/black_box.py
    .venv/bin/python examples/black_box.py --generations 600 --population 128 --seed 2

It prints f of the starting point, then every --print-every generations the members' mean f, f of the
mean parameters and the largest error max|A − A*|; at the end f of the mean parameters against the
optimum, 0 (f falls from about 1.4 to about 2e-4 with the defaults).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import eggroll_np as egg

DIM, STEPS, STARTS = 4, 30, 8
SYSTEM_SEED = 7  # fixed: every run identifies the same hidden system


def rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])


def hidden_system() -> tuple[dict, np.ndarray]:
    """(A*, b*) and the initial states: two damped rotations (radii 0.95 and 0.9) in a random basis."""
    rng = np.random.default_rng(SYSTEM_SEED)
    blocks = np.zeros((DIM, DIM))
    blocks[:2, :2] = 0.95 * rotation(0.3)
    blocks[2:, 2:] = 0.90 * rotation(0.8)
    basis, _ = np.linalg.qr(rng.standard_normal((DIM, DIM)))
    true = {"A": basis @ blocks @ basis.T, "b": 0.3 * rng.standard_normal(DIM)}
    starts = rng.standard_normal((STARTS, DIM))
    return true, starts


def simulate(params: dict, starts: np.ndarray) -> np.ndarray:
    """The trajectories x_1..x_T from every start: (T, starts, DIM)."""
    x, trajectory = starts, []
    for _ in range(STEPS):
        x = x @ params["A"].T + params["b"]
        trajectory.append(x)
    return np.stack(trajectory)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description="EGGROLL minimizes a black-box simulation error over {A, b}.")
    parser.add_argument("--generations", type=int, default=300, help="generations (default 300)")
    parser.add_argument("--population", type=int, default=64, help="population size N, even (default 64)")
    parser.add_argument("--sigma", type=float, default=0.01, help="perturbation scale σ (default 0.01)")
    parser.add_argument("--lr", type=float, default=0.05, help="initial learning rate of Adam (default 0.05)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the strategy's noise (default 0)")
    parser.add_argument("--print-every", type=int, default=50, help="generations between progress lines")
    args = parser.parse_args(argv)

    true, starts = hidden_system()
    observed = simulate(true, starts)

    def f(params: dict) -> float:
        """The black box: mean squared error of the simulated trajectories. Lower is better; 0 at (A*, b*)."""
        return float(np.mean((simulate(params, starts) - observed) ** 2))

    es = egg.EGGROLL(
        population_size=args.population,
        sigma=args.sigma,
        rank=1,
        optimizer=egg.optim.adam(egg.schedules.cosine(args.lr, args.generations, final_fraction=0.05)),
        maximize=False,  # tell receives f itself and minimizes it
        seed=args.seed,
    )
    state = es.init({"A": np.zeros((DIM, DIM)), "b": np.zeros(DIM)})  # float64 leaves, from (0, 0)
    start_value = f(state.params)
    print(f"N={es.population_size}, sigma={args.sigma}, rank={es.rank}, leaves {list(state.params)}")
    print(f"generation    0: f of the mean {start_value:.3e}")

    start = time.perf_counter()
    for generation in range(1, args.generations + 1):
        pop = es.ask(state)
        values = [f(pop.member(i)) for i in range(len(pop))]  # member i: {"A": (4, 4), "b": (4,)}
        state, info = es.tell(state, pop, values)  # a list of floats is fine

        if generation % args.print_every == 0 or generation == args.generations:
            error = np.max(np.abs(state.params["A"] - true["A"]))
            print(
                f"generation {generation:4d}: members' mean f {float(info['fitness_mean']):.3e}, f of the mean "
                f"{f(state.params):.3e}, max|A - A*| {error:.3f}, {time.perf_counter() - start:.1f} s"
            )

    final = f(state.params)
    print(f"final f of the mean parameters: {final:.3e} (start {start_value:.3e}, optimum 0 at A = A*, b = b*)")
    return final


if __name__ == "__main__":
    main()

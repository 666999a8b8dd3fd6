"""Which tool when: EGGROLL beside CMA-ES (pycma) on vector problems and on a matrix problem, in one run.

Parts (`--part`, repeatable; default all). Every figure of a part is measured side by side in the same run,
each method from the same start with fixed seeds (EGGROLL seed 0, pycma seed 1):

- rastrigin: f(x) = 10 d + Σⱼ (xⱼ² − 10 cos 2π xⱼ), d = 200 (minimum 0 at x = 0), from x₀ ~ U[−5.12, 5.12]ᵈ
  (seed 0), 256,000 evaluations for each method:
  - EGGROLL, N = 256 for 1000 generations, all members at once through `pop.vector`, `maximize=False`,
    Adam, twice: σ = 0.5 with the learning rate 0.05, and σ = 3 with the rate on a cosine schedule from
    0.05 to 5 % (the best of the settings tried: σ ∈ {0.5, 1, 2, 3} with the rate 0.05 constant gave
    1688, 1607, 1190, 680, with the cosine rate 846, 385, 88.0, 4.40; σ and the rate both on cosine
    schedules to 5 %, σ₀ ∈ {0.5, 1, 2, 3} × lr₀ ∈ {0.05, 0.1, 0.2, 0.5}, gave at best 6.98, at (3, 0.05));
  - pycma CMA-ES, λ = 256 as EGGROLL's N, σ₀ = 3 (the best of the (λ, σ₀) tried: (256, 2) 62.0, (256, 3) 58.7,
    (128, 2) 110, (512, 2) 1867, (1024, 3) 1922), and IPOP-CMA-ES (pycma's restarts with a doubled
    population whenever a run stalls, from its default λ = 4 + ⌊3 ln d⌋: `cma.fmin2(..., restarts=9,
    incpopsize=2)`), σ₀ = 2.
  Reported: f of the final mean (EGGROLL's output; pycma's `xfavorite`, of the last run for IPOP), the best
  f evaluated (over all runs), the evaluations used and the seconds.
- ellipsoid: a rotated ellipsoid f(x) = Σⱼ 10^(6 j/(d−1)) yⱼ², y = R x with R a random rotation (seed 0), d = 50,
  condition number 10⁶, from x₀ = 1, 100,000 evaluations: pycma CMA-ES (default λ, σ₀ = 1, stopping at
  f < 1e-10) and EGGROLL (N = 64, σ and the learning rate cosine from 0.1 and 0.01 to 1 %: the best of
  (σ₀, lr₀) ∈ {(0.1, 0.01), (0.3, 0.03), (1, 0.1), (0.1, 0.1)}). The case for a dense covariance.
- matrix: recover W* (m × n, entries N(0, 1/n), seed 0) from the fitness of a linear layer,
  F(W) = −(1/B) Σ_b ‖x_b Wᵀ − x_b W*ᵀ‖² over a fixed batch of B = 64 inputs x_b ~ N(0, I), from W = 0.
  EGGROLL: N = 256, rank 1, σ and Adam's rate 0.05/√n (5 % of the entries' scale), 64,000 evaluations,
  every member through one `pop.linear` call. pycma CMA-ES on the flattened W (default λ, σ₀ = 0.05), its λ
  candidates evaluated in one batched product too: at 32 × 32 with the same 64,000 evaluations and with
  EGGROLL's time (equal seconds), at 64 × 64 with EGGROLL's time, and not at all at 256 × 256, where its
  covariance and eigenbasis (2 · 8 d² bytes) would not fit in this machine's memory. Reported: the
  relative loss of the final mean, F(W)/F(0) (the fitness is all either method sees; with B < n, W* itself
  is not determined by the batch), the evaluations, the seconds, and the bytes each strategy's state holds
  (EGGROLL: θ, Adam's two moments, one generation's factors A and B).
- vector: one generation's evaluation of the 200-D Rastrigin function at N = 256, given the population:
  `rastrigin(pop.vector("x"))` against `[rastrigin(pop.member(i)["x"]) for i in range(N)]`, medians of
  interleaved repeats, and their ratio.

pycma (`pip install cma`) is an optional comparison, never a dependency: where it is not importable, its rows
are skipped with a line saying so, and the EGGROLL rows still run.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/which_tool.py        # every part, one BLAS thread: ~5 minutes
    .venv/bin/python bench/which_tool.py --part rastrigin              # one part
    .venv/bin/python bench/which_tool.py --quick                       # tiny sizes: a smoke run, seconds
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

import eggroll_np as egg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tables import markdown_table

PARTS = ("rastrigin", "ellipsoid", "matrix", "vector")
CMA_MEMORY_LIMIT = 0.5  # run CMA-ES only where its two d × d float64 matrices take at most this share of the RAM


class Sizes(NamedTuple):
    """The sizes of one run: full or --quick."""

    rastrigin_d: int
    rastrigin_evaluations: int
    population: int
    ellipsoid_d: int
    ellipsoid_evaluations: int
    ellipsoid_population: int
    equal_evaluations: tuple[int, int]  # the matrix where pycma gets EGGROLL's evaluations
    equal_time: tuple[int, int]  # the matrix where pycma gets EGGROLL's seconds
    too_large: tuple[int, int]  # a matrix whose CMA-ES state would not fit in memory
    matrix_evaluations: int
    vector_repeats: int


FULL = Sizes(200, 256_000, 256, 50, 100_000, 64, (32, 32), (64, 64), (256, 256), 64_000, 15)
QUICK = Sizes(20, 512, 32, 10, 512, 16, (4, 4), (8, 8), (256, 256), 256, 3)


class Run(NamedTuple):
    """What an optimizer reached: f of its final mean, the best f it evaluated, evaluations, seconds."""

    final: float
    best: float
    evaluations: int
    seconds: float


def rastrigin(points):
    """f(x) = 10 d + Σⱼ (xⱼ² − 10 cos 2π xⱼ) for each row of points (..., d)."""
    return 10.0 * points.shape[-1] + np.sum(points * points - 10.0 * np.cos(2.0 * np.pi * points), axis=-1)


def rotated_ellipsoid(d: int) -> Callable:
    """f(x) = Σⱼ 10^(6 j/(d−1)) yⱼ², y = R x, R a random rotation (seed 0): condition number 10⁶."""
    rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((d, d)))
    scales = 10.0 ** (6.0 * np.arange(d) / (d - 1))

    def ellipsoid(points):
        y = points @ rotation.T
        return np.sum(scales * y * y, axis=-1)

    return ellipsoid


def import_cma():
    """pycma, or None (and a line saying the pycma rows are skipped) where it is not importable."""
    try:
        return importlib.import_module("cma")
    except ImportError as error:
        print(f"pycma: skipped, cma is not importable ({error}); pip install cma to compare with it")
        return None


def eggroll_minimize(f, x0, population: int, evaluations: int, sigma, learning_rate) -> Run:
    """EGGROLL with Adam on the vector leaf {"x": x0}, every member through pop.vector."""
    es = egg.EGGROLL(
        population_size=population, sigma=sigma, optimizer=egg.optim.adam(learning_rate), maximize=False, seed=0
    )
    state = es.init({"x": x0})
    generations = evaluations // population
    best, start = math.inf, time.perf_counter()
    for _ in range(generations):
        pop = es.ask(state)
        fitness = f(pop.vector("x"))
        best = min(best, float(fitness.min()))
        state, _ = es.tell(state, pop, fitness)
    return Run(float(f(state.params["x"])), best, generations * population, time.perf_counter() - start)


def cma_minimize(cma, f, x0, sigma0: float, evaluations: int, popsize: int | None = None, restarts: int = 0) -> Run:
    """pycma's CMA-ES (IPOP restarts with a doubled population when restarts > 0), all λ candidates at once."""
    options = {"seed": 1, "maxfevals": evaluations, "verbose": -9, "ftarget": 1e-10}
    if popsize is not None:
        options["popsize"] = popsize
    best = [math.inf]  # over every evaluation, across restarts

    def objective(candidates):
        values = f(np.asarray(candidates))
        best[0] = min(best[0], float(values.min()))
        return list(values)

    start = time.perf_counter()
    _, es = cma.fmin2(None, x0, sigma0, options, parallel_objective=objective, restarts=restarts, incpopsize=2)
    seconds = time.perf_counter() - start
    return Run(float(f(np.asarray(es.result.xfavorite))), best[0], int(es.result.evaluations), seconds)


def vector_row(method: str, setting: str, run: Run) -> dict:
    return {
        "method": method,
        "setting": setting,
        "f(final mean)": f"{run.final:.3g}",
        "best f evaluated": f"{run.best:.3g}",
        "evaluations": run.evaluations,
        "seconds": round(run.seconds, 1),
    }


def part_rastrigin(sizes: Sizes, cma) -> list[dict]:
    d, n, budget = sizes.rastrigin_d, sizes.population, sizes.rastrigin_evaluations
    x0 = np.random.default_rng(0).uniform(-5.12, 5.12, d)
    generations = budget // n
    print(f"\n## Rastrigin, d = {d}, {budget:,} evaluations each, f(x0) = {rastrigin(x0):.1f}\n")
    decaying = egg.schedules.cosine(0.05, generations, 0.05)
    rows = [
        vector_row("EGGROLL", f"N = {n}, σ 0.5, lr 0.05", eggroll_minimize(rastrigin, x0, n, budget, 0.5, 0.05)),
        vector_row(
            "EGGROLL", f"N = {n}, σ 3, lr 0.05 → 0.0025", eggroll_minimize(rastrigin, x0, n, budget, 3.0, decaying)
        ),
    ]
    if cma is not None:
        rows.append(vector_row("pycma CMA-ES", f"λ = {n}, σ₀ = 3", cma_minimize(cma, rastrigin, x0, 3.0, budget, n)))
        ipop = cma_minimize(cma, rastrigin, x0, 2.0, budget, restarts=9)
        rows.append(vector_row("pycma IPOP-CMA-ES", f"λ from {4 + int(3 * math.log(d))}, σ₀ = 2", ipop))
    print(markdown_table(rows))
    return rows


def part_ellipsoid(sizes: Sizes, cma) -> list[dict]:
    d, n, budget = sizes.ellipsoid_d, sizes.ellipsoid_population, sizes.ellipsoid_evaluations
    f, x0 = rotated_ellipsoid(d), np.ones(d)
    generations = budget // n
    print(f"\n## Rotated ellipsoid, d = {d}, condition 1e6, {budget:,} evaluations at most, f(x0) = {f(x0):.3g}\n")
    schedules = egg.schedules.cosine(0.1, generations, 0.01), egg.schedules.cosine(0.01, generations, 0.01)
    rows = [
        vector_row("EGGROLL", f"N = {n}, σ 0.1 → 0.001, lr 0.01 → 1e-4", eggroll_minimize(f, x0, n, budget, *schedules))
    ]
    if cma is not None:
        rows.append(
            vector_row("pycma CMA-ES", f"λ = {4 + int(3 * math.log(d))}, σ₀ = 1", cma_minimize(cma, f, x0, 1.0, budget))
        )
    print(markdown_table(rows))
    return rows


class MatrixProblem(NamedTuple):
    """A fixed batch x (B, n), the target W* (m, n) and its outputs y = x W*ᵀ (B, m)."""

    x: np.ndarray
    target: np.ndarray
    y: np.ndarray

    def loss(self, outputs):
        """(1/B) Σ_b ‖x_b Wᵀ − x_b W*ᵀ‖² for outputs (..., B, m)."""
        return np.mean(np.sum((outputs - self.y) ** 2, axis=-1), axis=-1)

    def relative_loss(self, w) -> float:
        """The loss of W over the loss of W = 0: 1 at the start, 0 where x Wᵀ = x W*ᵀ on the batch."""
        return float(self.loss(self.x @ w.T) / self.loss(np.zeros_like(self.y)))


def matrix_problem(m: int, n: int) -> MatrixProblem:
    rng = np.random.default_rng(0)
    target = rng.standard_normal((m, n)) / math.sqrt(n)
    x = rng.standard_normal((64, n))
    return MatrixProblem(x, target, x @ target.T)


def eggroll_matrix(problem: MatrixProblem, sizes: Sizes) -> tuple[float, int, float, int]:
    """(relative loss, evaluations, seconds, state bytes) of EGGROLL on the matrix problem."""
    scale = 0.05 / math.sqrt(problem.target.shape[1])  # 5 % of the entries' scale 1/√n
    es = egg.EGGROLL(population_size=sizes.population, sigma=scale, optimizer=egg.optim.adam(scale), seed=0)
    state = es.init({"w": np.zeros(problem.target.shape)})
    generations = sizes.matrix_evaluations // sizes.population
    start = time.perf_counter()
    for _ in range(generations):
        pop = es.ask(state)
        state, _ = es.tell(state, pop, -problem.loss(pop.linear("w", problem.x)))
    seconds = time.perf_counter() - start
    factors = sum(array.nbytes for array in pop.noise["w"])
    memory = 3 * state.params["w"].nbytes + factors  # θ, Adam's two moments, one generation's A and B
    return problem.relative_loss(state.params["w"]), generations * sizes.population, seconds, memory


def cma_matrix(cma, problem: MatrixProblem, evaluations: int, seconds: float) -> tuple[float, int, float, int]:
    """(relative loss, evaluations, seconds, state bytes) of pycma within `evaluations` and `seconds`."""
    m, n = problem.target.shape
    es = cma.CMAEvolutionStrategy(np.zeros(m * n), 0.05, {"seed": 1, "verbose": -9})
    start = time.perf_counter()
    while es.countevals < evaluations and time.perf_counter() - start < seconds:
        candidates = es.ask()
        outputs = np.asarray(candidates).reshape(-1, m, n) @ problem.x.T  # (λ, m, B)
        es.tell(candidates, list(problem.loss(np.swapaxes(outputs, 1, 2))))
    loss = problem.relative_loss(np.asarray(es.result.xfavorite).reshape(m, n))
    return loss, int(es.countevals), time.perf_counter() - start, 2 * 8 * (m * n) ** 2


def matrix_row(method: str, shape: tuple[int, int], budget: str, result: tuple | None, memory: int) -> dict:
    loss, evaluations, seconds, _ = result if result is not None else ("not run",) * 4
    return {
        "method": method,
        "W": f"{shape[0]} × {shape[1]}",
        "d": shape[0] * shape[1],
        "budget": budget,
        "relative loss": loss if isinstance(loss, str) else f"{loss:.3g}",
        "evaluations": evaluations,
        "seconds": seconds if isinstance(seconds, str) else round(seconds, 1),
        "state MB": round(memory / 1e6, 1),
    }


def physical_memory() -> int:
    """Bytes of RAM on this machine (POSIX)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def part_matrix(sizes: Sizes, cma) -> list[dict]:
    print(f"\n## A matrix problem, EGGROLL {sizes.matrix_evaluations:,} evaluations\n")
    ram, rows = physical_memory(), []
    budgets = {sizes.equal_evaluations: ("evaluations", "seconds"), sizes.equal_time: ("seconds",), sizes.too_large: ()}
    for shape, kinds in budgets.items():
        problem = matrix_problem(*shape)
        ours = eggroll_matrix(problem, sizes)
        cma_bytes = 2 * 8 * (shape[0] * shape[1]) ** 2
        if cma is not None and kinds and cma_bytes <= CMA_MEMORY_LIMIT * ram:
            for kind in kinds:
                limits = (ours[1], math.inf) if kind == "evaluations" else (math.inf, ours[2])
                result = cma_matrix(cma, problem, *limits)
                rows.append(matrix_row("pycma CMA-ES", shape, f"EGGROLL's {kind}", result, cma_bytes))
        elif cma is not None:
            print(
                f"pycma at {shape[0]} × {shape[1]}: not run, its covariance and eigenbasis would take "
                f"{cma_bytes / 1e9:.0f} GB of this machine's {ram / 1e9:.0f} GB"
            )
            rows.append(matrix_row("pycma CMA-ES", shape, "-", None, cma_bytes))
        rows.append(matrix_row("EGGROLL", shape, f"{sizes.matrix_evaluations:,} evaluations", ours, ours[3]))
    print(markdown_table(rows))
    return rows


def part_vector(sizes: Sizes) -> list[dict]:
    d, n = sizes.rastrigin_d, sizes.population
    es = egg.EGGROLL(population_size=n, sigma=0.5, maximize=False, seed=0)
    pop = es.ask(es.init({"x": np.random.default_rng(0).uniform(-5.12, 5.12, d)}))

    def together():
        return rastrigin(pop.vector("x"))

    def one_by_one():
        return np.array([rastrigin(pop.member(i)["x"]) for i in range(n)])

    if not np.allclose(together(), one_by_one(), rtol=1e-12, atol=0):
        raise AssertionError("pop.vector and pop.member(i) give different fitness")
    times = {"pop.vector": [], "member(i) loop": []}
    for _ in range(sizes.vector_repeats):
        for name, evaluate in (("pop.vector", together), ("member(i) loop", one_by_one)):
            start = time.perf_counter()
            evaluate()
            times[name].append(time.perf_counter() - start)
    vector_ms, loop_ms = (statistics.median(times[name]) * 1e3 for name in times)
    print(f"\n## One generation's evaluation, Rastrigin d = {d}, N = {n} (medians of {sizes.vector_repeats})\n")
    rows = [{"pop.vector ms": vector_ms, "member(i) loop ms": loop_ms, "ratio": loop_ms / vector_ms}]
    print(markdown_table(rows))
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=PARTS, action="append", help="a part to run (repeatable; default all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    parts = args.part or list(PARTS)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "unset")
    print(f"Python {platform.python_version()}, NumPy {np.__version__}, {os.cpu_count()} CPUs, ", end="")
    print(f"OPENBLAS_NUM_THREADS={threads}")
    cma = import_cma() if set(parts) - {"vector"} else None
    if cma is not None:
        print(f"pycma {cma.__version__}")
    runners = {
        "rastrigin": lambda: part_rastrigin(sizes, cma),
        "ellipsoid": lambda: part_ellipsoid(sizes, cma),
        "matrix": lambda: part_matrix(sizes, cma),
        "vector": lambda: part_vector(sizes),
    }
    results = {part: runners[part]() for part in PARTS if part in parts}
    if args.quick:
        print("\n(--quick: tiny sizes and budgets; the figures mean nothing)")
    return results


if __name__ == "__main__":
    main()

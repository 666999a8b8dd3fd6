"""Throughput of the batched perturbed forward `Population.linear`, as ratios measured side by side in one run.

Every member i of a population of N has its own b inputs xᵢ (x has shape (N, b, d)) and the square weight W
(d, d), perturbed as Wᵢ = W + σ sᵢ εₖ with a rank-r εₖ. For each configuration (d, b, N, r), float32, the
script times the following, interleaved within every repeat (the order rotates from one repeat to the next),
each sample repeating its call enough times to last about --min-time seconds:

- plain:       `(x.reshape(N*b, d) @ W.T).reshape(N, b, d)`, batched inference with the same shapes and
               the same GEMM, no perturbation;
- perturbed:   `pop.linear("w", x, shared=False)` (x holds one row block per member) with
               `pop = EGGROLL(population_size=N, sigma=0.05, rank=r).ask(state)` made once, outside the timed
               region (noise excluded);
- ask+fwd:     `es.ask(state).linear("w", x, shared=False)`: the generation's noise factors drawn inside the
               timed step (noise included, the honest end-to-end figure);
- naive:       full-rank ES as one would write it without EGGROLL: for each antithetic pair draw a dense
               εₖ (d, d) with NumPy's `Generator.standard_normal(dtype=float32)` (its fastest normals, with
               no regenerability to pay for, so generous to the baseline), form W + σεₖ and W − σεₖ (the
               minus member reuses the draw, halving the baseline's noise cost) in a preallocated
               buffer, and multiply each member's inputs by it. Timing all N members at d = 4096 would take
               minutes per sample, so a sample of the first pairs (enough for about --naive-min-time
               seconds) is timed and extrapolated linearly to N/2 pairs. The draw is timed separately, so
               the naive time is given with its noise ("naive ms") and without it ("naive excl ms"). It
               does not depend on r, so it is measured once per (d, b, N) and shown on every r row.

The headline numbers, from medians over the repeats:

    ratio excl   = median plain / median perturbed     (throughput of the perturbed forward vs plain)
    ratio incl   = median plain / median ask+fwd
    speedup      = median naive (noise included)  / median ask+fwd     (noise included on both sides)
    speedup excl = median naive (noise excluded)  / median perturbed   (noise excluded on both sides)

"range" is the lowest and highest per-repeat ratio excl, a guide to how noisy the machine was.

The memory floor. Any implementation that calls the GEMM and then adds the corrections (what NumPy's
primitives allow: no epilogue can be fused into its GEMM) moves at least these bytes beyond the GEMM's: x
read again (for x Bₖ), the factors A and B read, and the output read and written once. "floor" times
exactly those passes (sums over x, A and B, and an in-place scaling of an output-sized buffer), interleaved
with the rest, and

    bound = median plain / (median plain + median floor)

is the best ratio excl such an implementation can reach on this machine at that moment. A ratio close to
its bound is limited by memory bandwidth, not by the package. Before any
timing, every configuration is checked: members 0, 1 and N−1 of `pop.linear` against xᵢ @ pop.member(i)["w"].T
computed in float64, `ask`+`linear` against `pop.linear`, and the check is shown to be sensitive (the
unperturbed product is far outside its tolerance). Where one plain GEMM lasts a second or more (d = 4096,
b = 16 by default) the check runs on each member's first input, x[:, :1], and the forwards get no separate
warm-up call: a warm-up would cost minutes and buy nothing at that size.

Goals (from the project's issue): ratio excl ≥ 0.90 at d = 1024, b = 1, N = 2048, r = 1; ratio excl ≥ 0.75
for every row with d ≥ 1024; speedup ≥ 100× at d = 1024, b = 1, N = 2048.

Run it from the repository root (progress goes to stderr, the table to stdout):

    .venv/bin/python bench/forward.py                        # default grid: 4-6 minutes on 2 quiet cores
    .venv/bin/python bench/forward.py --d 1024 --b 1 --n 2048 --r 1   # the goal case alone
    .venv/bin/python bench/forward.py --quick                # tiny sizes: a smoke run, a few seconds
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

import eggroll_np as egg

SIGMA = 0.05
GOAL_CASE = (1024, 1, 2048, 1)  # d, b, N, r
GOAL_RATIO = 0.90
GOAL_RATIO_LARGE = 0.75  # every row with d >= LARGE_D
LARGE_D = 1024
GOAL_SPEEDUP = 100.0
CHECK_MEMBERS = (0, 1, -1)  # a plus member, its minus partner, and the last (minus) member
CHECK_RTOL = 1e-4  # max |error| / max |reference| for a float32 forward
LONG_CALL_S = 1.0  # a plain GEMM this long gets no warm-up calls, and the check runs on x[:, :1]


class Group(NamedTuple):
    """The (d, b, N) shapes shared by one plain GEMM and one naive baseline, and the ranks timed with them."""

    d: int
    b: int
    n: int
    ranks: tuple[int, ...]


class Row(NamedTuple):
    """One configuration's medians (seconds per call; naive in seconds per generation, extrapolated)."""

    d: int
    b: int
    n: int
    r: int
    repeats: int
    plain_s: float
    perturbed_s: float
    ask_forward_s: float
    ratio_low: float
    ratio_high: float
    naive_s: float | None
    naive_excl_s: float | None
    naive_pairs: int
    check_error: float
    floor_s: float

    @property
    def ratio(self) -> float:
        return self.plain_s / self.perturbed_s

    @property
    def bound(self) -> float:
        return self.plain_s / (self.plain_s + self.floor_s)

    @property
    def ratio_incl(self) -> float:
        return self.plain_s / self.ask_forward_s

    @property
    def speedup(self) -> float | None:
        return None if self.naive_s is None else self.naive_s / self.ask_forward_s

    @property
    def speedup_excl(self) -> float | None:
        return None if self.naive_excl_s is None else self.naive_excl_s / self.perturbed_s


def int_list(text: str) -> list[int]:
    """'256,1024' -> [256, 1024]."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def groups(ds: list[int], bs: list[int], ns: list[int], ranks: list[int]) -> list[Group]:
    """Every (d, N, b) in increasing cost, each with all the ranks."""
    return [Group(d, b, n, tuple(ranks)) for d in ds for n in ns for b in bs]


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seconds_per_call(fn: Callable[[], object], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def timed_once(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def check_forward(pop, x: np.ndarray, y: np.ndarray, y_asked: np.ndarray, plain: np.ndarray, where: str) -> float:
    """Members of y = pop.linear("w", x, shared=False) against xᵢ W_iᵀ with Wᵢ = pop.member(i)["w"], in float64; y_asked
    (from a fresh ask) must agree with y. Returns the largest relative error; raises if anything is off."""
    n = len(pop)
    if y.shape != x.shape or y.dtype != np.float32:
        raise RuntimeError(f"{where}: pop.linear returned {y.shape} {y.dtype}, expected {x.shape} float32")
    worst = 0.0
    for i in CHECK_MEMBERS:
        i %= n
        reference = x[i].astype(np.float64) @ pop.member(i)["w"].astype(np.float64).T
        scale = float(np.max(np.abs(reference)))
        error = float(np.max(np.abs(y[i] - reference))) / scale
        unperturbed = float(np.max(np.abs(plain[i] - reference))) / scale
        if not error <= CHECK_RTOL:
            raise RuntimeError(f"{where}: member {i} of pop.linear is off by {error:.2e} (relative) from x_i W_i^T")
        if not unperturbed > 100 * CHECK_RTOL:
            raise RuntimeError(f"{where}: member {i}'s perturbation is too small for the check to mean anything")
        worst = max(worst, error)
    if not np.allclose(y_asked, y, rtol=1e-5, atol=1e-5 * float(np.max(np.abs(y)))):
        raise RuntimeError(f"{where}: es.ask(state).linear differs from the same population's linear")
    return worst


class Naive:
    """Full-rank ES forward of the first `pairs` antithetic pairs: per pair, draw εₖ (d, d), form W ± σεₖ in a
    preallocated buffer and multiply each member's inputs. Returns (total, draw) seconds for the sample."""

    def __init__(self, weight: np.ndarray, x: np.ndarray, seed: int = 1):
        self.weight, self.x = weight, x
        self.generator = np.random.default_rng(seed)
        self.buffer = np.empty_like(weight)

    def __call__(self, pairs: int) -> tuple[float, float]:
        d = self.weight.shape[0]
        draw = 0.0
        start = time.perf_counter()
        for k in range(pairs):
            t0 = time.perf_counter()
            eps = self.generator.standard_normal((d, d), dtype=np.float32)
            draw += time.perf_counter() - t0
            eps *= SIGMA
            np.add(self.weight, eps, out=self.buffer)
            self.x[2 * k] @ self.buffer.T
            np.subtract(self.weight, eps, out=self.buffer)
            self.x[2 * k + 1] @ self.buffer.T
        return time.perf_counter() - start, draw


def measure(
    group: Group, repeats: int, min_time: float, naive_min_time: float, naive: bool, budget: float
) -> list[Row]:
    """Set up, check, calibrate, then time every task of the group interleaved over the repeats."""
    d, b, n = group.d, group.b, group.n
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((d, d), dtype=np.float32)
    weight /= np.float32(math.sqrt(d))
    x = rng.standard_normal((n, b, d), dtype=np.float32)

    def plain():
        return (x.reshape(n * b, d) @ weight.T).reshape(n, b, d)

    strategies = {r: egg.EGGROLL(population_size=n, sigma=SIGMA, rank=r, seed=0) for r in group.ranks}
    states = {r: es.init({"w": weight}) for r, es in strategies.items()}
    pops = {r: strategies[r].ask(states[r]) for r in group.ranks}

    # Tasks: name -> no-argument callable. The first call of each is the warm-up, the calibration and, for
    # the forwards, the output the check reads. Where one plain GEMM lasts LONG_CALL_S or more, a warm-up is
    # worthless (every call faults in a fresh output anyway) and costs minutes: the forwards are then checked
    # on the first input of every member, x[:, :1] (same d, N, r and code path), and calibrated as plain.
    tasks: dict[str, Callable[[], np.ndarray]] = {"plain": plain}
    output = np.ones((n * b, d), dtype=np.float32)
    for r in group.ranks:
        tasks[f"perturbed r={r}"] = lambda pop=pops[r]: pop.linear("w", x, shared=False)
        tasks[f"floor r={r}"] = lambda noise=pops[r].noise["w"]: memory_floor(x, noise.A, noise.B, output)
        tasks[f"ask+fwd r={r}"] = lambda es=strategies[r], state=states[r]: es.ask(state).linear("w", x, shared=False)
    first: dict[str, float] = {}
    base, first["plain"] = timed_once(plain)
    long_calls = first["plain"] >= LONG_CALL_S
    checked = x
    if long_calls:
        checked = np.ascontiguousarray(x[:, :1])
        base = (checked.reshape(n, d) @ weight.T).reshape(n, 1, d)
    errors = {}
    for r in group.ranks:
        if long_calls:
            y = pops[r].linear("w", checked, shared=False)
            y_asked = strategies[r].ask(states[r]).linear("w", checked, shared=False)
            first[f"perturbed r={r}"] = first[f"ask+fwd r={r}"] = first["plain"]
            _, first[f"floor r={r}"] = timed_once(tasks[f"floor r={r}"])
        else:
            _, first[f"floor r={r}"] = timed_once(tasks[f"floor r={r}"])
            y, first[f"perturbed r={r}"] = timed_once(tasks[f"perturbed r={r}"])
            y_asked, first[f"ask+fwd r={r}"] = timed_once(tasks[f"ask+fwd r={r}"])
        errors[r] = check_forward(pops[r], checked, y, y_asked, base, f"d={d} b={b} N={n} r={r}")
        del y, y_asked
    del base, checked
    calls = {name: max(1, round(min_time / seconds)) for name, seconds in first.items()}

    pairs, pair_s = 0, 0.0
    naive_sample = None
    if naive:
        naive_sample = Naive(weight, x)
        pair_s, _ = naive_sample(1)  # warm-up and calibration
        pairs = min(n // 2, max(2, math.ceil(naive_min_time / pair_s)))
    estimate = sum(calls[name] * first[name] for name in tasks) + pairs * pair_s
    repeats = max(min(3, repeats), min(repeats, int(budget // estimate)))
    progress(
        f"    checked{' on x[:, :1]' if long_calls else ''} (max relative error {max(errors.values()):.1e}); "
        f"{repeats} repeats of "
        f"{len(tasks) + naive} tasks ({min(calls.values())}-{max(calls.values())} calls per sample)"
        + (f", naive {pairs} of {n // 2} pairs" if naive else "")
        + f", about {repeats * estimate:.0f} s"
    )

    times: dict[str, list[float]] = {name: [] for name in tasks}
    naive_times, naive_excl_times = [], []
    names = list(tasks) + (["naive"] if naive else [])
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            if name == "naive":
                total, draw = naive_sample(pairs)
                naive_times.append(total / pairs * (n // 2))
                naive_excl_times.append((total - draw) / pairs * (n // 2))
            else:
                times[name].append(seconds_per_call(tasks[name], calls[name]))

    rows = []
    plain_s = statistics.median(times["plain"])
    for r in group.ranks:
        perturbed = times[f"perturbed r={r}"]
        ratios = [p / q for p, q in zip(times["plain"], perturbed, strict=True)]
        rows.append(
            Row(
                d, b, n, r, repeats, plain_s, statistics.median(perturbed),
                statistics.median(times[f"ask+fwd r={r}"]), min(ratios), max(ratios),
                statistics.median(naive_times) if naive else None,
                statistics.median(naive_excl_times) if naive else None,
                pairs, errors[r], statistics.median(times[f"floor r={r}"]),
            )
        )  # fmt: skip
    return rows


def memory_floor(x: np.ndarray, a: np.ndarray, b: np.ndarray, output: np.ndarray) -> np.ndarray:
    """The passes over memory that a GEMM-then-correct forward cannot avoid (module docstring): read x, A
    and B, read and write an output-sized buffer."""
    x.sum(), a.sum(), b.sum()
    return np.multiply(output, np.float32(1), out=output)


def ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    value = seconds * 1e3
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def times_x(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}x" if value >= 10 else f"{value:.1f}x"


def print_table(rows: list[Row]) -> None:
    header = (
        "d", "b", "N", "r", "reps", "plain ms", "perturbed ms", "ratio excl", "range", "floor ms", "bound",
        "ask+fwd ms",
        "ratio incl", "naive ms", "naive excl ms", "naive pairs", "speedup", "speedup excl",
    )  # fmt: skip
    cells = [
        (
            str(row.d), str(row.b), str(row.n), str(row.r), str(row.repeats), ms(row.plain_s),
            ms(row.perturbed_s), f"{row.ratio:.2f}", f"{row.ratio_low:.2f}-{row.ratio_high:.2f}",
            ms(row.floor_s), f"{row.bound:.2f}",
            ms(row.ask_forward_s), f"{row.ratio_incl:.2f}", ms(row.naive_s), ms(row.naive_excl_s),
            f"{row.naive_pairs}/{row.n // 2}" if row.naive_s is not None else "-",
            times_x(row.speedup), times_x(row.speedup_excl),
        )
        for row in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(len(header))]
    for line in [header, *cells]:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def print_goals(rows: list[Row]) -> None:
    goal = next((row for row in rows if (row.d, row.b, row.n, row.r) == GOAL_CASE), None)
    case = "d={}, b={}, N={}, r={}".format(*GOAL_CASE)
    print()
    if goal is None:
        print(f"goal: ratio excl >= {GOAL_RATIO:.2f} at {case} (not measured in this run)")
    else:
        print(
            f"goal: ratio excl >= {GOAL_RATIO:.2f} at {case} ({verdict(goal.ratio >= GOAL_RATIO)}: "
            f"{goal.ratio:.2f}, {goal.ratio / goal.bound:.2f} of the memory bound {goal.bound:.2f}; with noise "
            f"drawn inside the step, ratio incl {goal.ratio_incl:.2f})"
        )
    large = [row for row in rows if row.d >= LARGE_D]
    if not large:
        print(f"goal: ratio excl >= {GOAL_RATIO_LARGE:.2f} for every d >= {LARGE_D} (not measured in this run)")
    else:
        low = min(large, key=lambda row: row.ratio)
        below = [row for row in large if row.ratio < GOAL_RATIO_LARGE]
        detail = f"lowest {low.ratio:.2f} at d={low.d}, b={low.b}, N={low.n}, r={low.r}"
        if below:
            detail += f"; {len(below)} of {len(large)} rows below"
        print(f"goal: ratio excl >= {GOAL_RATIO_LARGE:.2f} for every d >= {LARGE_D} ({verdict(not below)}: {detail})")
    if goal is None or goal.speedup is None:
        print(f"goal: speedup >= {GOAL_SPEEDUP:.0f}x over naive full-rank ES at {case} (not measured in this run)")
    else:
        print(
            f"goal: speedup >= {GOAL_SPEEDUP:.0f}x over naive full-rank ES at {case}, noise included on both "
            f"sides ({verdict(goal.speedup >= GOAL_SPEEDUP)}: {goal.speedup:,.0f}x; "
            f"noise excluded on both sides {goal.speedup_excl:,.0f}x)"
        )


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: on a shared machine, how much else was running."""
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unavailable"


def blas_name() -> str:
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas['name']} {blas['version']}"
    except Exception:  # numpy without the dicts mode or the entry: the table still means something
        return "unknown BLAS"


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--d", type=int_list, default=[256, 1024, 4096], help="layer widths (default 256,1024,4096)")
    parser.add_argument("--b", type=int_list, default=[1, 16], help="inputs per member (default 1,16)")
    parser.add_argument("--n", type=int_list, default=[256, 2048], help="population sizes, even (default 256,2048)")
    parser.add_argument("--r", type=int_list, default=[1, 4], help="ranks (default 1,4)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved repeats per configuration at most (7)")
    parser.add_argument(
        "--group-seconds",
        type=float,
        default=30.0,
        help="fewer repeats (never below 3) where a (d, b, N) group would take longer than this (default 30)",
    )
    parser.add_argument("--min-time", type=float, default=0.1, help="seconds each timed sample lasts at least (0.1)")
    parser.add_argument(
        "--naive-min-time", type=float, default=1.0, help="seconds of naive members timed per sample (default 1)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive full-rank baseline")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short samples: a smoke run")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if any(n % 2 for n in args.n):
        parser.error("--n must be even (antithetic pairs)")
    if args.quick:
        args.d, args.b, args.n, args.r = [32, 64], [1, 4], [16], [1, 2]
        args.min_time, args.naive_min_time, args.group_seconds = 0.002, 0.002, 1.0

    print(
        f"perturbed population forward pop.linear vs plain batched GEMM and naive full-rank ES, float32, "
        f"sigma={SIGMA}, antithetic"
    )
    print(
        f"NumPy {np.__version__}, {blas_name()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs; samples of >= {args.min_time:g} s, up to {args.repeats} interleaved repeats"
    )
    print(
        f"naive: first pairs timed (>= {args.naive_min_time:g} s per sample) and extrapolated linearly to "
        "N/2 pairs; its noise by numpy.random.Generator.standard_normal(float32), one draw per antithetic pair"
    )
    print("ms per call (naive: ms per generation); ratios are median plain / median perturbed")
    print(f"load average at the start: {load_average()}\n")

    work = groups(args.d, args.b, args.n, args.r)
    rows: list[Row] = []
    start = time.perf_counter()
    for index, group in enumerate(work, 1):
        ranks = ",".join(map(str, group.ranks))
        progress(f"[{index}/{len(work)}] d={group.d} b={group.b} N={group.n} r={ranks} ...")
        rows += measure(group, args.repeats, args.min_time, args.naive_min_time, not args.no_naive, args.group_seconds)
        progress(f"    done, {time.perf_counter() - start:.0f} s elapsed")
    print_table(rows)
    print_goals(rows)
    print(f"load average at the end: {load_average()}; total {time.perf_counter() - start:.0f} s")
    if args.quick:
        print("(--quick: tiny sizes time the per-call overhead, not the throughput; the verdicts mean nothing)")
    progress(f"total {time.perf_counter() - start:.0f} s")
    return rows


if __name__ == "__main__":
    main()

"""Throughput of the package's counter-based normal draws, as a ratio to NumPy's own generator.

For each case the script times `eggroll_np.random.normal` (or `draw_portable`) against NumPy's
`numpy.random.Generator.standard_normal(size, dtype=...)` of the same size and dtype, side by side in one
run: the two are interleaved within every repeat (alternating which goes first), each sample repeats the
call enough times to last about --min-time seconds, and the headline ratio is

    ratio = median NumPy time / median package time        (= package throughput / NumPy throughput)

so 1.0 means as fast as NumPy's PCG64 + ziggurat, and the goal is a ratio of at least 0.5 on the NumPy fast
path. The package pays for regenerability: its draws are a pure function of (seed, epoch, leaf, direction,
element), bit-identical on every backend, where NumPy's stream is sequential. The "ratio range" column is
the lowest and highest per-repeat ratio, a guide to how noisy the machine was.

Cases: the NumPy fast path for one long direction, for the per-generation noise of a 1024×1024 rank-1 layer
at population 4096 (2048 directions × 2048 elements) and for many short directions; then the portable
array-API path and float64 on the 2048 × 2048 shape, to show what the fast path buys.

Run it from the repository root:

    .venv/bin/python bench/rng.py                  # default run, well under a minute on 2 cores
    .venv/bin/python bench/rng.py --repeats 15     # steadier medians on a noisy machine
    .venv/bin/python bench/rng.py --quick          # tiny sizes: a smoke run, a second or so
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from eggroll_np import random

GOAL = 0.5


class Case(NamedTuple):
    """One row of the table: `directions` × `n` normals of `dtype`, by the NumPy fast path or the portable
    array-API path."""

    name: str
    directions: int
    n: int
    dtype: type
    portable: bool = False

    @property
    def goal_applies(self) -> bool:
        """The goal is set for the fast path at the default dtype, float32."""
        return not self.portable and self.dtype == np.float32


class Result(NamedTuple):
    """Medians of seconds per call, and the lowest and highest per-repeat ratio."""

    case: Case
    package_s: float
    numpy_s: float
    ratio_low: float
    ratio_high: float

    @property
    def elements(self) -> int:
        return self.case.directions * self.case.n

    @property
    def ratio(self) -> float:
        return self.numpy_s / self.package_s


def cases(quick: bool) -> list[Case]:
    """The default cases, or tiny ones of the same kinds for a smoke run."""
    if quick:
        return [
            Case("fast, 1 x 2^12", 1, 2**12, np.float32),
            Case("fast, 64 x 64", 64, 64, np.float32),
            Case("portable, 64 x 64", 64, 64, np.float32, portable=True),
            Case("fast float64, 64 x 64", 64, 64, np.float64),
        ]
    return [
        Case("fast, 1 x 2^22", 1, 2**22, np.float32),
        Case("fast, 2048 x 2048", 2048, 2048, np.float32),
        Case("fast, 4096 x 64", 4096, 64, np.float32),
        Case("portable, 2048 x 2048", 2048, 2048, np.float32, portable=True),
        Case("fast float64, 2048 x 2048", 2048, 2048, np.float64),
    ]


def package_draw(case: Case, stream: random.StreamKey) -> Callable[[], np.ndarray]:
    """The package's draw of (directions, n) normals for this case, as a no-argument callable."""
    directions = range(case.directions)
    if case.portable:
        return lambda: random.draw_portable(np, "normal", stream, directions, case.n, dtype=case.dtype, dev="cpu")
    return lambda: random.normal(np, stream, directions, case.n, dtype=case.dtype, dev="cpu")


def numpy_draw(case: Case, generator: np.random.Generator) -> Callable[[], np.ndarray]:
    """NumPy's own normals of the same size and dtype."""
    size = (case.directions, case.n)
    return lambda: generator.standard_normal(size, dtype=case.dtype)


def seconds_per_call(fn: Callable[[], np.ndarray], calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def measure(case: Case, repeats: int, min_time: float) -> Result:
    """Warm both draws up, pick a call count per sample, then time them interleaved `repeats` times."""
    stream = random.derive_key(seed=0, epoch=0, stream=random.stream_id("bench"))
    package, reference = package_draw(case, stream), numpy_draw(case, np.random.default_rng(0))

    # Warm-up (page faults, ufunc dispatch caches), with a check that the package draws what we think.
    out = package()
    if out.shape != (case.directions, case.n) or out.dtype != case.dtype:
        raise RuntimeError(f"{case.name}: package drew {out.shape} {out.dtype}, expected {case.dtype}")
    reference()

    # Both sides repeat the call the same number of times, enough for the slower one to last min_time.
    slowest = max(seconds_per_call(package, 1), seconds_per_call(reference, 1))
    calls = max(1, round(min_time / slowest))

    package_times, numpy_times = [], []
    for repeat in range(repeats):
        pair = [(package, package_times), (reference, numpy_times)]
        for fn, times in pair if repeat % 2 == 0 else pair[::-1]:
            times.append(seconds_per_call(fn, calls))
    ratios = [r / p for p, r in zip(package_times, numpy_times, strict=True)]
    return Result(case, statistics.median(package_times), statistics.median(numpy_times), min(ratios), max(ratios))


def print_table(results: list[Result]) -> None:
    """One aligned row per case; M/s is million normals per second at the median time."""
    header = ("case", "elements", "package M/s", "NumPy M/s", "ratio", "ratio range")
    rows = [
        (
            r.case.name,
            f"{r.elements:,}",
            f"{r.elements / r.package_s / 1e6:.1f}",
            f"{r.elements / r.numpy_s / 1e6:.1f}",
            f"{r.ratio:.2f}",
            f"{r.ratio_low:.2f}-{r.ratio_high:.2f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        # Left-align the case name, right-align the numbers.
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        print("  ".join(cells))


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9, help="interleaved repeats per case (default 9)")
    parser.add_argument(
        "--min-time", type=float, default=0.1, help="seconds each timed sample lasts at least (default 0.1)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes and short samples: a smoke run")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    min_time = 0.005 if args.quick else args.min_time

    print(f"normal draws, package vs numpy.random.Generator.standard_normal (NumPy {np.__version__})")
    print(f"{args.repeats} interleaved repeats, samples of >= {min_time:g} s; M/s = million normals per second")
    print("NumPy draws the same dtype as the package (float32 except the float64 row)\n")
    results = [measure(case, args.repeats, min_time) for case in cases(args.quick)]
    print_table(results)

    worst = min(r.ratio for r in results if r.case.goal_applies)
    verdict = "met" if worst >= GOAL else "NOT met"
    print(f"\ngoal: ratio >= {GOAL} on the fast path ({verdict}: lowest float32 fast-path ratio {worst:.2f})")
    if args.quick:
        print("(--quick: tiny sizes time the per-call overhead, not the throughput; the verdict means nothing)")
    return results


if __name__ == "__main__":
    main()

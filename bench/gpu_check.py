"""The device check of the CuPy backend: one script that, within 9 minutes on one H200, measures the paper's
benchmark, checks the noise against NumPy, measures EGG and runs the `gpu` tests, then prints a table.

Parts, in this order, each started only if the time budget (--budget, default 540 s) still holds its
estimate; a part that would overrun is skipped with a line saying so, and a part that fails is reported
with its error while the others go on:

1. noise: NumPy vs CuPy on the paper's noise shape (512 directions × 16 384 elements, float32 and
   float64): uniforms and Rademacher signs must be identical, normals are reported as the largest distance
   in ulp to NumPy's and to the exact Box–Muller values of the same uniforms (tests/helpers.py). Then the
   fused kernel against the portable array-API path: the time of one draw of that shape and of a dense
   8192 × 8192 draw, and their ratio (the measured effect of the kernel).
2. paper: one d × d linear layer (d = 8192), N = 1024 members with one input each (x: (N, d)), rank 1,
   σ = 0.05, antithetic pairs, in float32 and in bfloat16 where CuPy supports it (through ml_dtypes). Timed,
   interleaved over the repeats with the order rotating:
     plain      x @ Wᵀ, batched inference with the same GEMM and no perturbation;
     perturbed  pop.linear("w", x, shared=False) with the population asked once, outside the timing (noise
                pre-generated);
     ask+fwd    es.ask(state).linear("w", x, shared=False): the generation's noise drawn inside the step;
     noise      es.ask(state) alone;
     portable   forward.linear_portable: the same forward without the CuPy fast path (its fused kernel),
                so the table shows what the kernel buys.
   ratio excl = plain / perturbed (goal ≥ 0.91, the paper's figure), ratio incl = plain / ask+fwd (goal
   ≥ 0.80; the paper reports 0.69). The split of the perturbed forward: the shared GEMM (plain) and the rest
   (perturbed − plain: the rank-1 corrections, signs and the add), the figure that decides whether a fused
   correction kernel would pay. The package draws noise in float32 or float64 only, so the bfloat16 rows
   call `forward.linear` on bfloat16 W, x and factors, the factors drawn in float32 and cast (inside the
   step for ask+fwd). Before timing, members 0, 1 and N − 1 are compared with xᵢ Wᵢᵀ in float64 (Wᵢ
   materialized), and the unperturbed product must miss by far more than the tolerance.
3. naive: full-rank ES at the same shapes, as one would write it without EGGROLL: per antithetic pair, a
   dense εₖ (d, d) from CuPy's own generator (`cupy.random.default_rng().standard_normal`, float32: fast and
   not regenerable, generous to the baseline), W + σεₖ and W − σεₖ in a preallocated buffer, and each
   member's input times it. A sample of the first pairs (enough for --naive-min-time per sample) is timed
   and extrapolated linearly to N/2 pairs; the draws alone are timed too, giving the time without noise.
   speedup = naive / ask+fwd (noise on both sides; the paper reports about 220×), speedup excl = naive
   without noise / perturbed.
4. digits: generations per second at population 16 384 on the digits task (MLP 64-64-10, batch 256, the
   task's defaults): the loop as a GPU user writes it (ask, the task's fitness, tell, nan_policy="worst",
   nothing read back; CUDA events around the generations after two warm-up generations), and
   `eggroll-np train --backend cupy` as it runs (metrics read back and logged every generation).
5. egg: the int8 language model EGG 2L-128D, 100 bytes per member: member-tokens per second of the
   population forward and of plain int8 inference at N = 2¹², 2¹⁴, 2¹⁶ (interleaved, medians), the TFLOP/s
   they amount to (2 · the multiply-adds of the model's products per byte) and the fraction of the H200's
   dense float32 peak (67 TFLOP/s; goal ≥ 0.5), the last pair's logits checked equal to NumPy's (the same
   members rebuilt on the host from the counter generator); then the text task at population 2¹⁶ trained
   on the device for 180 s, held-out bits/byte before and after beside the bigram baseline.
6. ray: the text task (EGG, int8, sign shaping) at population sizes.ray_population over Ray, against one
   process on the device: generations per second of one process, of 1 replica and of 2 replicas on the one
   GPU (half a GPU each, CuPy replicas, the driver in NumPy: the H200 check of RayEvaluator), the scaling
   (2 replicas over 1), the bytes per generation and of the first call, and whether the final params are
   bit for bit those of the one process (int8 is exact, so they must be). On the CPU path, NumPy replicas.
7. tests: `pytest -m gpu` in a subprocess, given the rest of the budget (DeprecationWarning and
   FutureWarning shown instead of failing: the device's library versions are not the project's).

Times on the GPU come from CUDA events on the device's timeline (each sample long enough for
--min-time), on the CPU from perf_counter; every figure is a median over the repeats. The markdown table goes
to $OUT/gpu_check.md when OUT is set (with the full log in $OUT/gpu_check.log and the tests' output in
$OUT/gpu_pytest.log) and is printed last.

    python3 bench/gpu_check.py                          # on the GPU machine, from the repository root
    python bench/gpu_check.py --backend numpy --small   # the same code on the CPU at tiny sizes (< 1 minute)
    python3 bench/gpu_check.py --parts ray              # one part (names: noise paper digits egg ray tests)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

import eggroll_np as egg
from eggroll_np import forward, random
from eggroll_np import noise as noise_mod
from eggroll_np._array_api import to_numpy
from eggroll_np.cli import main as cli_main
from eggroll_np.tasks import task_class
from eggroll_np.training import make_strategy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import exact_normals, ulp_distance  # noqa: E402  (the tests' float64 references)

SIGMA = 0.05
GOAL_RATIO_EXCL = 0.91
GOAL_RATIO_INCL = 0.80
PAPER_RATIO_INCL = 0.69
PAPER_SPEEDUP = 220
CHECK_RTOL = {"float32": 1e-4, "bfloat16": 2.0**-6}  # max |error| / max |reference| of a member's output
CHECK_MEMBERS = (0, 1, -1)
PARTS = ("noise", "paper", "digits", "egg", "ray", "tests")


class Sizes:
    """The shapes of a run: the paper's on the GPU, tiny ones for the CPU smoke run (--small)."""

    def __init__(self, small: bool):
        self.d, self.members = (256, 64) if small else (8192, 1024)
        self.noise_shape = (self.members // 2, 2 * self.d)  # the paper's noise: D directions × (m + n)·r
        self.dense = (self.d, self.d)
        self.population = 256 if small else 16384
        self.generations = 5 if small else 30
        self.repeats = 3 if small else 9
        self.min_time = 0.005 if small else 0.025
        self.naive_min_time = 0.01 if small else 0.1
        # EGG: (layers, width), bytes per member, populations of the throughput table, the training population
        # and its seconds of training
        self.egg_model = (1, 16) if small else (2, 128)
        self.egg_length = 16 if small else 100
        self.egg_populations = (64, 256) if small else (2**12, 2**14, 2**16)
        self.egg_population = 256 if small else 2**16
        self.egg_seconds = 3.0 if small else 180.0
        # Ray: the text task's population, and the generations timed after one that loads the replicas
        self.ray_population = 64 if small else 2**16
        self.ray_generations = 2 if small else 5


# ---- output ---------------------------------------------------------------------------------------------


class Report:
    """Log lines (stdout and $OUT/gpu_check.log) and the rows of the final markdown tables."""

    def __init__(self, out: Path | None):
        self.out = out
        self.log_file = (out / "gpu_check.log").open("w", encoding="utf-8") if out else None
        self.sections: dict[str, list[tuple[str, ...]]] = {}
        self.headers: dict[str, tuple[str, ...]] = {}
        self.notes: list[str] = []

    def log(self, message: str) -> None:
        print(message, flush=True)
        if self.log_file:
            self.log_file.write(message + "\n")
            self.log_file.flush()

    def close(self) -> None:
        if self.log_file:
            self.log_file.close()
            self.log_file = None

    def table(self, name: str, header: tuple[str, ...]) -> None:
        self.headers[name] = header
        self.sections.setdefault(name, [])

    def row(self, name: str, *cells) -> None:
        self.sections[name].append(tuple(str(cell) for cell in cells))

    def markdown(self, title: list[str]) -> str:
        lines = [*title, ""]
        for name, header in self.headers.items():
            lines += [f"## {name}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(cells) + " |" for cells in self.sections[name]]
            lines.append("")
        if self.notes:
            lines += ["## notes", "", *(f"- {note}" for note in self.notes), ""]
        return "\n".join(lines)


class Budget:
    """The run's deadline: a part starts only if its estimate still fits."""

    def __init__(self, seconds: float):
        self.start = time.perf_counter()
        self.seconds = seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def run(self, report: Report, name: str, estimate: float, part: Callable[[], None]) -> None:
        if self.left() < estimate:
            left = self.left()
            message = f"skipped: {left:.0f} s of the {self.seconds:.0f} s budget left, the part needs ~{estimate:.0f} s"
            report.log(f"[{name}] {message}")
            report.notes.append(f"{name}: {message}")
            return
        report.log(f"[{name}] starting, {self.left():.0f} s of budget left")
        began = time.perf_counter()
        try:
            part()
        except Exception as exc:  # one failing part must not hide the others' figures
            report.log(traceback.format_exc())
            report.notes.append(f"{name}: FAILED with {type(exc).__name__}: {exc}")
        report.log(f"[{name}] done in {time.perf_counter() - began:.1f} s")


# ---- the device and its clock -----------------------------------------------------------------------------


class Device:
    """The library under test (CuPy, or NumPy for the CPU smoke run) and its clock."""

    def __init__(self, backend: str):
        self.gpu = backend == "cupy"
        if self.gpu:
            import array_api_compat.cupy as xp
            import cupy

            self.native, self.xp, self.dev = cupy, xp, cupy.cuda.Device()
        else:
            import array_api_compat.numpy as xp

            self.native, self.xp, self.dev = np, xp, "cpu"

    def sync(self) -> None:
        if self.gpu:
            self.native.cuda.get_current_stream().synchronize()

    def seconds(self, fn: Callable[[], object], calls: int = 1) -> float:
        """Seconds per call of `calls` back-to-back calls: CUDA events on the GPU, perf_counter on the CPU."""
        if not self.gpu:
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            return (time.perf_counter() - start) / calls
        start, end = self.native.cuda.Event(), self.native.cuda.Event()
        start.record()
        for _ in range(calls):
            fn()
        end.record()
        end.synchronize()
        return self.native.cuda.get_elapsed_time(start, end) / 1e3 / calls

    def describe(self) -> str:
        if not self.gpu:
            return (
                f"CPU path: NumPy {np.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
            )
        cupy = self.native
        props = cupy.cuda.runtime.getDeviceProperties(self.dev.id)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        total = self.dev.mem_info[1]
        runtime = cupy.cuda.runtime.runtimeGetVersion()
        driver = cupy.cuda.runtime.driverGetVersion()
        return (
            f"{name} (compute capability {self.dev.compute_capability}, {total / 2**30:.0f} GiB), CUDA runtime "
            f"{runtime // 1000}.{runtime % 1000 // 10}, driver API {driver // 1000}.{driver % 1000 // 10}, "
            f"CuPy {cupy.__version__}, NumPy {np.__version__}, Python {platform.python_version()}"
        )


def interleaved(device: Device, tasks: dict[str, Callable[[], object]], repeats: int, min_time: float):
    """Per-call seconds of every task, one sample per repeat, the order rotating; after a warm-up call each,
    a sample repeats its call enough times to last `min_time`. Returns {name: [seconds per call, ...]}."""
    for fn in tasks.values():
        fn()
    device.sync()
    calls = {name: max(1, math.ceil(min_time / max(device.seconds(fn), 1e-7))) for name, fn in tasks.items()}
    names = list(tasks)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(device.seconds(tasks[name], calls[name]))
    return times


def ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


# ---- 1. noise ---------------------------------------------------------------------------------------------


def noise_part(device: Device, sizes: Sizes, report: Report) -> None:
    xp, dev = device.xp, device.dev
    report.table(
        "noise: NumPy vs the backend", ("draw", "shape", "elements differing", "max ulp vs NumPy", "max ulp vs exact")
    )
    stream = random.derive_key(2024, 3, random.stream_id("w"))
    directions, n = range(sizes.noise_shape[0]), sizes.noise_shape[1]
    for dtype_name in ("float32", "float64"):
        for kind in ("uniform", "rademacher", "normal"):
            draw = random.draw if device.gpu else random.draw_portable  # CPU: NumPy's portable vs fast path
            got = to_numpy(draw(xp, kind, stream, directions, n, dtype=getattr(xp, dtype_name), dev=dev))
            reference = random.draw(np, kind, stream, directions, n, dtype=getattr(np, dtype_name), dev="cpu")
            differing = int(np.count_nonzero(got != reference))
            if kind == "normal":
                near = ulp_distance(got.astype(np.float64), reference.astype(np.float64), getattr(np, dtype_name))
                exact = exact_normals(stream, directions, n, getattr(np, dtype_name))
                far = ulp_distance(got.astype(np.float64), exact, getattr(np, dtype_name))
                cells = (f"{differing:,}", f"{near.max():.2f}", f"{far.max():.2f}")
            else:
                cells = (f"{differing:,}", "-", "-")
                if differing:
                    report.notes.append(f"noise: {kind} {dtype_name} differs from NumPy in {differing} elements")
            label = f"{kind} {dtype_name}" + ("" if device.gpu else " (CPU: portable path)")
            report.row("noise: NumPy vs the backend", label, f"{len(directions)} x {n}", *cells)

    report.table("noise: fused kernel vs portable path", ("draw", "portable ms", "fused ms", "speedup", "fused G/s"))
    for label, (rows, width) in (("paper noise", sizes.noise_shape), ("dense d x d", sizes.dense)):
        tasks = {
            "portable": lambda rows=rows, width=width: random.draw_portable(
                xp, "normal", stream, range(rows), width, dtype=xp.float32, dev=dev
            ),
            "fused": lambda rows=rows, width=width: random.draw(
                xp, "normal", stream, range(rows), width, dtype=xp.float32, dev=dev
            ),
        }
        times = interleaved(device, tasks, sizes.repeats, sizes.min_time)
        portable, fused = statistics.median(times["portable"]), statistics.median(times["fused"])
        report.row(
            "noise: fused kernel vs portable path",
            f"{label}, {rows} x {width} normals float32" + ("" if device.gpu else " (CPU: NumPy fast path)"),
            ms(portable),
            ms(fused),
            f"{portable / fused:.1f}x",
            f"{rows * width / fused / 1e9:.2f}",
        )


# ---- 2. the paper's benchmark and 3. naive full-rank ES ------------------------------------------------------


def bfloat16_or_reason(device: Device):
    """(dtype, None) where CuPy runs what the forward pass needs in bfloat16 (a product, a batched product,
    elementwise arithmetic, an array from a list), else (None, why not)."""
    if not device.gpu:
        return None, "not measured on the CPU path"
    try:
        import ml_dtypes
    except ImportError:
        return None, "not supported here: ml_dtypes (CuPy's bfloat16 type) is not installed"
    xp, dev, bf16 = device.xp, device.dev, ml_dtypes.bfloat16
    try:
        a = xp.ones((2, 8, 8), dtype=bf16, device=dev)
        b = (a @ a)[0, ...] @ a[1, ...] * xp.asarray([0.5, -0.5] * 4, dtype=bf16, device=dev) + a[0, ...]
        float(xp.astype(b, xp.float64)[0, 0])
    except Exception as exc:
        return None, f"not supported by CuPy {device.native.__version__}: {type(exc).__name__}: {exc}"
    return ml_dtypes.bfloat16, None


class Layer:
    """The benchmark's layer in one dtype: W (d, d), x (N, d), and the calls to time."""

    def __init__(self, device: Device, sizes: Sizes, dtype_name: str, dtype):
        xp, dev = device.xp, device.dev
        d, n = sizes.d, sizes.members
        rng = np.random.default_rng(0)
        w32 = xp.asarray(rng.standard_normal((d, d), dtype=np.float32) / np.float32(math.sqrt(d)), device=dev)
        x32 = xp.asarray(rng.standard_normal((n, d), dtype=np.float32), device=dev)
        self.device, self.dtype_name, self.n = device, dtype_name, n
        self.weight, self.x = (w32, x32) if dtype_name == "float32" else (xp.astype(w32, dtype), xp.astype(x32, dtype))
        weight_t = xp.matrix_transpose(self.weight)
        self.plain = lambda: self.x @ weight_t
        es = egg.EGGROLL(population_size=n, sigma=SIGMA, rank=1, seed=0)
        if dtype_name == "float32":
            state = es.init({"w": self.weight})
            self.pop = es.ask(state)
            self.noise = lambda: es.ask(state)
            self.perturbed = lambda: self.pop.linear("w", self.x, shared=False)
            self.ask_forward = lambda: es.ask(state).linear("w", self.x, shared=False)
            self.factors = self.pop.noise["w"]
            self.portable = lambda: forward.linear_portable(self.pop, "w", self.x, shared=False)
        else:
            # The generator draws float32; the population of another dtype holds its factors cast to it.
            state = es.init({"w": w32})

            def cast_population():
                pop = es.ask(state)
                drawn = pop.noise["w"]
                factors = noise_mod.LowRankNoise(xp.astype(drawn.A, dtype), xp.astype(drawn.B, dtype))
                return dataclasses.replace(pop, params={"w": self.weight}, noise={"w": factors})

            self.pop = cast_population()
            self.factors = self.pop.noise["w"]
            self.noise = cast_population
            self.perturbed = lambda: forward.linear(self.pop, "w", self.x, shared=False)
            self.portable = lambda: forward.linear_portable(self.pop, "w", self.x, shared=False)
            self.ask_forward = lambda: forward.linear(cast_population(), "w", self.x, shared=False)

    def check(self) -> float:
        """Largest relative error of members 0, 1, N − 1 against xᵢ Wᵢᵀ in float64, Wᵢ = W + σ sᵢ aₖ bₖᵀ
        materialized; raises if a member is off or the unperturbed product would pass too."""
        xp = self.device.xp
        y, base = self.perturbed(), self.plain()
        weight = xp.astype(self.weight, xp.float64)
        worst = 0.0
        for i in CHECK_MEMBERS:
            i %= self.n
            a, b = (xp.astype(f[i // 2, ...], xp.float64) for f in self.factors)
            member = weight + (SIGMA * (-1.0 if i % 2 else 1.0)) * (a @ xp.matrix_transpose(b))
            reference = xp.astype(self.x[i, ...], xp.float64) @ xp.matrix_transpose(member)
            scale = float(xp.max(xp.abs(reference)))
            error = float(xp.max(xp.abs(xp.astype(y[i, ...], xp.float64) - reference))) / scale
            unperturbed = float(xp.max(xp.abs(xp.astype(base[i, ...], xp.float64) - reference))) / scale
            if not error <= CHECK_RTOL[self.dtype_name]:
                raise RuntimeError(f"{self.dtype_name}: member {i} is off by {error:.2e} (relative) from x_i W_i^T")
            if not unperturbed > 10 * CHECK_RTOL[self.dtype_name]:
                raise RuntimeError(f"{self.dtype_name}: member {i}'s perturbation is too small for the check")
            worst = max(worst, error)
        return worst


def naive_es(device: Device, layer: Layer, sizes: Sizes):
    """Per-generation seconds of full-rank ES, with and without its noise, extrapolated from a sample of
    pairs; returns (with noise, without noise, pairs timed)."""
    native, weight, x = device.native, layer.weight, layer.x
    generator = native.random.default_rng(1)
    buffer = native.empty_like(weight)

    def draw():
        return generator.standard_normal(weight.shape, dtype=native.float32)

    def pairs_of(count: int):
        def run():
            for k in range(count):
                eps = draw()
                eps *= SIGMA
                native.add(weight, eps, out=buffer)
                x[2 * k] @ buffer.T
                native.subtract(weight, eps, out=buffer)
                x[2 * k + 1] @ buffer.T

        return run

    def draws_of(count: int):
        def run():
            for _ in range(count):
                draw()

        return run

    pairs_of(1)()
    device.sync()
    pair = device.seconds(pairs_of(1))
    pairs = min(sizes.members // 2, max(2, math.ceil(sizes.naive_min_time / pair)))
    times = interleaved(device, {"naive": pairs_of(pairs), "draws": draws_of(pairs)}, max(3, sizes.repeats // 2), 0)
    scale = (sizes.members // 2) / pairs
    total = [t * scale for t in times["naive"]]
    without = [(t - s) * scale for t, s in zip(times["naive"], times["draws"], strict=True)]
    return statistics.median(total), statistics.median(without), pairs


def paper_part(device: Device, sizes: Sizes, report: Report, naive: bool) -> None:
    title = "paper benchmark: d x d layer, N members, one input each, rank 1"
    report.table(
        title,
        (
            "dtype", "d", "N", "plain ms", "perturbed ms", "rest ms (perturbed - plain)", "rest share",
            "noise ms", "ask+fwd ms", "ratio excl", "range", "ratio incl", "check error",
            "portable ms", "ratio excl portable",
        ),
    )  # fmt: skip
    if naive:
        report.table(
            "naive full-rank ES at the same shapes (float32)",
            ("pairs timed", "naive ms/generation", "naive excl noise ms", "speedup", "speedup excl"),
        )
    bf16, reason = bfloat16_or_reason(device)
    for dtype_name, dtype in (("float32", device.xp.float32), ("bfloat16", bf16)):
        if dtype is None:
            report.row(title, dtype_name, sizes.d, sizes.members, *([reason] + ["-"] * 11))
            continue
        layer = Layer(device, sizes, dtype_name, dtype)
        error = layer.check()
        produced = layer.perturbed().dtype
        if produced != layer.x.dtype:
            report.notes.append(f"{dtype_name}: the perturbed forward returns {produced}, not {layer.x.dtype}")
        tasks = {
            "plain": layer.plain,
            "perturbed": layer.perturbed,
            "ask+fwd": layer.ask_forward,
            "noise": layer.noise,
            "portable": layer.portable,
        }
        times = interleaved(device, tasks, sizes.repeats, sizes.min_time)
        med = {name: statistics.median(values) for name, values in times.items()}
        ratios = [p / q for p, q in zip(times["plain"], times["perturbed"], strict=True)]
        ratio, ratio_incl = med["plain"] / med["perturbed"], med["plain"] / med["ask+fwd"]
        rest = med["perturbed"] - med["plain"]
        report.row(
            title, dtype_name, sizes.d, sizes.members, ms(med["plain"]), ms(med["perturbed"]), ms(rest),
            f"{rest / med['perturbed']:.0%}", ms(med["noise"]), ms(med["ask+fwd"]), f"{ratio:.3f}",
            f"{min(ratios):.2f}-{max(ratios):.2f}", f"{ratio_incl:.3f}", f"{error:.1e}",
            ms(med["portable"]), f"{med['plain'] / med['portable']:.3f}",
        )  # fmt: skip
        report.row(
            "goals",
            f"ratio excl ({dtype_name}, noise pre-generated)",
            f"{ratio:.3f}",
            f">= {GOAL_RATIO_EXCL}",
            verdict(ratio >= GOAL_RATIO_EXCL),
        )
        report.row(
            "goals",
            f"ratio incl ({dtype_name}, noise drawn in the step)",
            f"{ratio_incl:.3f}",
            f">= {GOAL_RATIO_INCL} (paper {PAPER_RATIO_INCL})",
            verdict(ratio_incl >= GOAL_RATIO_INCL),
        )
        if naive and dtype_name == "float32":
            total, without, pairs = naive_es(device, layer, sizes)
            speedup, speedup_excl = total / med["ask+fwd"], without / med["perturbed"]
            report.row(
                "naive full-rank ES at the same shapes (float32)",
                f"{pairs}/{sizes.members // 2}",
                ms(total),
                ms(without),
                f"{speedup:,.0f}x",
                f"{speedup_excl:,.0f}x",
            )
            report.row(
                "goals",
                "speedup over naive full-rank ES (float32)",
                f"{speedup:,.0f}x",
                f"paper ~{PAPER_SPEEDUP}x",
                "-",
            )
        del layer
        if device.gpu:
            device.native.get_default_memory_pool().free_all_blocks()


# ---- 4. digits ----------------------------------------------------------------------------------------------


def train(report: Report, argv: list[str]) -> None:
    """`eggroll-np train` with these arguments, its output logged; raises unless it exits with status 0."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            status = cli_main(argv)
    except SystemExit as stop:  # the command line's refusals exit through argparse
        status = stop.code
    report.log(captured.getvalue().rstrip())
    if status != 0:
        raise RuntimeError(f"eggroll-np {' '.join(argv)} exited with status {status}")


def digits_part(device: Device, sizes: Sizes, report: Report) -> None:
    backend = "cupy" if device.gpu else "numpy"
    report.table("digits task", ("loop", "population", "generations timed", "gen/s", "notes"))
    flags = ["train", "digits", "--backend", backend, "--population", str(sizes.population), "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        train(report, [*flags, "--generations", "1", "--out", str(Path(tmp) / "warm")])  # compiles, writes the config
        config = json.loads((Path(tmp) / "warm" / "config.json").read_text()) | {"nan_policy": "worst"}
        xp, dev = device.xp, device.dev
        task = task_class("digits")(config, xp, dev, xp.float32)
        es = make_strategy(config)
        state = es.init(task.init_params(config["seed"]))

        def generation():
            nonlocal state
            pop = es.ask(state)
            state, _ = es.tell(state, pop, task.fitness(pop, state.generation))

        for _ in range(2):
            generation()
        device.sync()
        seconds = device.seconds(generation, sizes.generations)
        resident = 1.0 / seconds
        accuracy = task.evaluate(state.params)["test_accuracy"]
        report.row(
            "digits task", "ask, fitness, tell on the device (nan_policy worst, nothing read back)",
            sizes.population, sizes.generations, f"{resident:.1f}",
            f"{1e3 * seconds:.1f} ms per generation; test accuracy after {state.generation} generations {accuracy:.3f}",
        )  # fmt: skip
        run_dir = Path(tmp) / "cli"
        generations = ["--generations", str(sizes.generations), "--eval-every", str(sizes.generations)]
        train(report, [*flags, *generations, "--out", str(run_dir)])
        summary = json.loads((run_dir / "summary.json").read_text())
        report.row(
            "digits task", f"eggroll-np train --backend {backend} (metrics read back every generation)",
            sizes.population, summary["generations"], f"{summary['generations_per_second']:.1f}",
            "includes the final evaluation and checkpoint; after a warm run in the same process",
        )  # fmt: skip
        report.row("goals", f"digits gen/s at population {sizes.population} (device loop)", f"{resident:.1f}", "-", "-")


# ---- 5. EGG: the int8 language model ----------------------------------------------------------------------------

PEAK_FLOAT32 = 67e12  # the H200's dense float32 arithmetic, FLOP/s (the goal: half of it)


def _egg_flops_per_token(model) -> float:
    """2 · the multiply-adds of one byte through the model's products (the embedding is a lookup)."""
    return 2.0 * (model.parameter_count - math.prod(model.shapes()[f"{model.prefix}embed"]))


def egg_part(device: Device, sizes: Sizes, report: Report) -> None:
    """Member-tokens per second of EGG's population forward against plain int8 inference, its members
    checked bit for bit against NumPy, then the text task trained on the device for sizes.egg_seconds."""
    from eggroll_np.egg_model import EGG
    from eggroll_np.ops import MeanOps

    xp, dev = device.xp, device.dev
    layers, width = sizes.egg_model
    model, length = EGG(layers, width), sizes.egg_length
    params = model.init(xp, seed=0, device=dev)
    flops = _egg_flops_per_token(model)
    title = f"EGG {layers}L-{width}D population forward, {length} bytes per member"
    report.table(title, ("N", "plain tok/s", "population tok/s", "ratio", "TFLOP/s", "fraction of fp32 peak", "check"))
    host = {name: to_numpy(value) for name, value in params.items()}
    for n in sizes.egg_populations:
        es = egg.EGGROLL(population_size=n, sigma=1 / 16, optimizer=egg.optim.integer_step(), shaping="sign")
        pop = es.ask(es.init(params))
        tokens = xp.asarray(np.random.default_rng(0).integers(0, 256, size=(n, length)), dtype=xp.int32, device=dev)
        plain = functools.partial(model.apply, MeanOps(params), tokens)
        perturbed = functools.partial(model.apply, pop, tokens, shared=False)
        logits = to_numpy(perturbed())
        host_pop = egg.EGGROLL(population_size=n, sigma=1 / 16, optimizer=egg.optim.integer_step(), shaping="sign")
        members = range(n - 2, n)  # the last pair, rebuilt on the host from the counter generator
        reference = model.apply(host_pop.ask(host_pop.init(host), members), to_numpy(tokens)[n - 2 :], shared=False)
        check = "equal" if np.array_equal(reference, logits[n - 2 :]) else "DIFFERS"
        times = interleaved(device, {"plain": plain, "population": perturbed}, sizes.repeats, sizes.min_time)
        plain_s, pop_s = statistics.median(times["plain"]), statistics.median(times["population"])
        rate = n * length / pop_s
        report.row(
            title, n, f"{n * length / plain_s:.3g}", f"{rate:.3g}", f"{plain_s / pop_s:.2f}",
            f"{rate * flops / 1e12:.2f}", f"{rate * flops / PEAK_FLOAT32:.3f}" if device.gpu else "-", check,
        )  # fmt: skip
        if check != "equal":
            report.notes.append(f"EGG N={n}: the device's logits of members {n - 2}, {n - 1} differ from NumPy's")
    report.row(
        "goals", f"EGG population forward, fraction of fp32 peak (N = {sizes.egg_populations[-1]})",
        f"{rate * flops / PEAK_FLOAT32:.3f}" if device.gpu else "-", ">= 0.5",
        verdict(rate * flops / PEAK_FLOAT32 >= 0.5) if device.gpu else "-",
    )  # fmt: skip
    _egg_training(device, sizes, report, layers, width)


def _egg_training(device: Device, sizes: Sizes, report: Report, layers: int, width: int) -> None:
    """The text task at population sizes.egg_population on the device, generations until sizes.egg_seconds
    have passed (one read back per generation: the clock), then held-out bits/byte of the mean."""
    from eggroll_np.training import run_config

    xp, dev = device.xp, device.dev
    settings = dict(population_size=sizes.egg_population, layers=layers, width=width, sequence_length=sizes.egg_length)
    config = run_config("text", settings)
    task = task_class("text")(config, xp, dev, xp.float32)
    es = make_strategy(config)
    state = es.init(task.init_params(config["seed"]))
    initial = task.evaluate(state.params)["test_bits_per_byte"]
    began = time.perf_counter()
    while time.perf_counter() - began < sizes.egg_seconds:
        pop = es.ask(state)
        state, _ = es.tell(state, pop, task.fitness(pop, state.generation))
        device.sync()
    seconds = time.perf_counter() - began
    metrics = task.evaluate(state.params)
    title = "EGG text task on the device"
    header = ("population", "model", "generations", "seconds", "gen/s", "bits/byte start", "bits/byte end", "bigram")
    report.table(title, header)
    report.row(
        title, sizes.egg_population, f"{layers}L-{width}D", state.generation, f"{seconds:.0f}",
        f"{state.generation / seconds:.2f}", f"{initial:.3f}", f"{metrics['test_bits_per_byte']:.3f}",
        f"{metrics['bigram_bits_per_byte']:.3f}",
    )  # fmt: skip
    report.log(f"sample after {state.generation} generations: {metrics['sample']}")


# ---- 6. ray -----------------------------------------------------------------------------------------------------


def ray_part(device: Device, sizes: Sizes, report: Report) -> None:
    """The text task over Ray replicas on the device (1, then 2 sharing it) against one process there."""
    import array_api_compat.numpy as host_xp

    from eggroll_np.distributed import RayEvaluator
    from eggroll_np.distributed.evaluators import params_fingerprint
    from eggroll_np.distributed.ray_cluster import init_ray
    from eggroll_np.distributed.task_fitness import TaskFitness
    from eggroll_np.training import run_config

    layers, width = sizes.egg_model
    backend = "cupy" if device.gpu else "numpy"
    settings = dict(population_size=sizes.ray_population, layers=layers, width=width, backend=backend)
    config = run_config("text", {**settings, "sequence_length": sizes.egg_length})
    es, timed = make_strategy(config), sizes.ray_generations
    task = task_class("text")(config, device.xp, device.dev, device.xp.float32)
    state = es.init(task.init_params(config["seed"]))
    pop = es.ask(state)  # one warm-up generation, outside the timing
    state, _ = es.tell(state, pop, task.fitness(pop, 0))
    device.sync()
    began = time.perf_counter()
    for _ in range(timed):
        pop = es.ask(state)
        state, _ = es.tell(state, pop, task.fitness(pop, state.generation))
    device.sync()
    rates = {"one process": timed / (time.perf_counter() - began)}
    expected = params_fingerprint(state.params)
    del task, state, pop
    if device.gpu:
        device.native.get_default_memory_pool().free_all_blocks()
    title = f"Ray: the text task (EGG {layers}L-{width}D, int8) at population {sizes.ray_population}"
    report.table(title, ("run", "gen/s", "vs 1 replica", "first call B", "per generation B", "params as one process"))
    report.row(title, "one process", f"{rates['one process']:.2f}", "-", "-", "-", "(reference)")
    host_task = task_class("text")(config, host_xp, "cpu", np.float32)
    init_ray(**({} if device.gpu else {"num_cpus": 2}), log_to_driver=False)
    try:
        for replicas in (1, 2):
            gpus = 1 / replicas if device.gpu else 0
            with RayEvaluator(es, TaskFitness(config), workers=replicas, backend=backend, gpus_per_replica=gpus) as ev:
                state, _, _ = ev.step(es.init(host_task.init_params(config["seed"])))  # loads the replicas
                began = time.perf_counter()
                for _ in range(timed):
                    state, _, _ = ev.step(state)
                rates[replicas] = timed / (time.perf_counter() - began)
                same = params_fingerprint(ev.authoritative(state).params) == expected
                traffic = ev.traffic
            first = traffic.state_loads[0] + traffic.per_generation[0]
            report.row(
                title, f"{replicas} replica{'s' * (replicas > 1)} ({gpus:g} GPU each)", f"{rates[replicas]:.2f}",
                f"{rates[replicas] / rates[1]:.2f}", f"{first:,}", f"{traffic.per_generation[-1]:,}",
                "equal" if same else "DIFFERS",
            )  # fmt: skip
            if not same:
                report.notes.append(f"ray: {replicas} replicas' params differ from the one process's")
    finally:
        import ray

        ray.shutdown()
    report.row("goals", "Ray, 2 replicas over 1 on one GPU (gen/s)", f"{rates[2] / rates[1]:.2f}", "report", "-")


# ---- 7. tests ---------------------------------------------------------------------------------------------------

TEST_LINE = re.compile(r"^(tests/\S+) (PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS)", re.MULTILINE)


def tests_part(device: Device, report: Report, budget: Budget, out: Path | None) -> None:
    if device.gpu:
        device.native.get_default_memory_pool().free_all_blocks()
    log_path = (out or Path(tempfile.mkdtemp())) / "gpu_pytest.log"
    timeout = max(10.0, budget.left() - 5.0)
    command = [
        sys.executable, "-m", "pytest", "-m", "gpu", "-v", "-p", "no:cacheprovider", "-rfEs",
        "-W", "default::DeprecationWarning", "-W", "default::PendingDeprecationWarning",
        "-W", "default::FutureWarning", "tests",
    ]  # fmt: skip
    report.log(f"{' '.join(command[1:])} (timeout {timeout:.0f} s, output in {log_path})")
    began = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = None
    seconds = time.perf_counter() - began
    text = log_path.read_text(encoding="utf-8", errors="replace")
    outcomes = {name: outcome for name, outcome in TEST_LINE.findall(text)}
    counts = Counter(outcomes.values())
    summary = ", ".join(
        f"{counts[k]} {k.lower()}" for k in ("PASSED", "FAILED", "ERROR", "SKIPPED", "XFAIL", "XPASS") if counts[k]
    )
    ending = "timed out" if status is None else f"exit status {status}"
    report.table("tests: pytest -m gpu", ("result", "tests", "seconds", "ended"))
    report.row("tests: pytest -m gpu", summary or "no test lines found", len(outcomes), f"{seconds:.0f}", ending)
    bad = [name for name, outcome in outcomes.items() if outcome in ("FAILED", "ERROR")]
    for name in bad[:20]:
        report.row("tests: pytest -m gpu", "FAILED/ERROR", name, "-", "-")
    report.row(
        "goals",
        "gpu tests",
        summary or "none ran",
        "all pass",
        verdict(status == 0 and not bad and counts["PASSED"] > 0),
    )
    tail = text.strip().splitlines()[-15:]
    report.log("\n".join(tail))


# ---- main ---------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("cupy", "numpy"), default="cupy", help="array library (default cupy)")
    parser.add_argument("--small", action="store_true", help="tiny sizes: the CPU smoke run")
    parser.add_argument("--budget", type=float, default=540.0, help="seconds for the whole check (default 540)")
    parser.add_argument("--skip-tests", action="store_true", help="leave out pytest -m gpu")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="the parts to run (default all)")
    args = parser.parse_args(argv)
    out = Path(os.environ["OUT"]) if os.environ.get("OUT") else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    budget = Budget(args.budget)
    device = Device(args.backend)
    sizes = Sizes(args.small)
    tf32 = os.environ.get("CUPY_TF32")
    title = [
        "# GPU check (bench/gpu_check.py)",
        "",
        f"- device: {device.describe()}",
        f"- TF32: CUPY_TF32={tf32 if tf32 is not None else 'unset'} "
        f"({'opted in' if tf32 not in (None, '', '0') else 'off: float32 products in full float32'})",
        f"- sizes: d={sizes.d}, N={sizes.members}, digits population {sizes.population}; {sizes.repeats} interleaved "
        f"repeats, samples of >= {sizes.min_time * 1e3:g} ms, medians; times from "
        + ("CUDA events" if device.gpu else "perf_counter"),
    ]
    for line in title[2:]:
        report.log(line)
    report.table("goals", ("goal", "measured", "target", "verdict"))
    estimates = {
        "noise": (10, 25),
        "paper": (10, 40),
        "digits": (10, 30),
        "egg": (15, sizes.egg_seconds + 90),
        "ray": (30, 120),
        "tests": (20, 60),
    }
    parts = {
        "noise": lambda: noise_part(device, sizes, report),
        "paper": lambda: paper_part(device, sizes, report, naive=True),
        "digits": lambda: digits_part(device, sizes, report),
        "egg": lambda: egg_part(device, sizes, report),
        "ray": lambda: ray_part(device, sizes, report),
        "tests": lambda: tests_part(device, report, budget, out),
    }
    for name in PARTS:
        if name == "tests" and args.skip_tests:
            report.notes.append("tests: left out (--skip-tests)")
        elif name in args.parts:
            budget.run(report, name, estimates[name][0 if args.small else 1], parts[name])
    report.log(f"total {time.perf_counter() - budget.start:.0f} s")
    text = report.markdown(title)
    if out:
        (out / "gpu_check.md").write_text(text + "\n", encoding="utf-8")
    report.log("\n" + text)
    report.close()
    return report


if __name__ == "__main__":
    main()

"""EGG: a byte-level recurrent language model in integers only, written once against the model ops, so the
same code runs on the mean parameters (`MeanOps`) and on a whole population (`Population`).

Every weight is int8, every activation an int8 integer, and every operation integer arithmetic: int8 × int8
products summed exactly and scaled by 1/d(n) (`integer.mean_linear`, d(n) = round(16√n)); the only
nonlinearity is saturation to [−127, 127]. With width D and L layers, for bytes x₁..x_T:

    h = embed[x]                                          (…, T, D)
    per layer:  u = norm(h)
                f = clip(W_f u) + 128,  c = W_c u,  g = clip(W_g u) + 128       (f, g ∈ [1, 255])
                s_t = ⌊(f_t s_{t−1} + (256 − f_t) c_t) / 256⌋,  s_0 = 0        a minGRU: gates from the input only
                h = clip(h + W_o ⌊s g / 256⌋)
                h = clip(h + W_down clip(W_up norm(h)))                          an MLP of width 4D
    logits = head norm(h)                                 (…, T, 256), in units of 1/16 bit

norm(v) = clip(⌊32 v / max(1, ⌊Σ|vᵢ| / D⌋)⌋): a layer norm that divides by the mean absolute value and
scales to a mean magnitude of 32; it has no gain. Parameters: embed (256, D), head (256, D), and per layer
four D × D matrices and the MLP's (4D, D) and (D, 4D): 512·D + L·12·D² in all (the paper's count, 513·D +
L·(4D + 12D²), also holds norm gains and biases, which this model leaves out so that every trained leaf is
a matrix with rank-r integer noise).

`log2_probabilities` turns the logits into log₂ p(next byte) in units of 1/16 bit with integer tables (EXP2
and LOG2), so a member's fitness, the sum over its tokens, is an integer, equal on every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _checks, random
from ._array_api import device, to_numpy
from .integer import INT8_MAX

__all__ = ["EGG", "LOGIT_UNIT", "log2_probabilities"]

VOCABULARY = 256
NORM_SCALE = 32
LOGIT_UNIT = 16  # a logit l stands for l / 16 bits
_EXP_BITS = 16  # EXP2[u] = round(2^(16 + u/16)) for u ∈ [−254, 0]
_EXP2 = np.round(2.0 ** (_EXP_BITS + np.arange(-2 * INT8_MAX, 1) / LOGIT_UNIT)).astype(np.int32)
_MANTISSA_BITS = 8
# LOG2[m − 256] = round(16 · log2(m / 256)) for a mantissa m ∈ [256, 511]
_LOG2 = np.round(LOGIT_UNIT * np.log2(np.arange(256, 512) / 256.0)).astype(np.int32)
_INIT_EPOCH = 2**64 - 1


def _clip(xp, v):
    return xp.astype(xp.clip(v, -INT8_MAX, INT8_MAX), xp.int8)


def _wide(xp, v):
    return xp.astype(v, xp.int32)


def norm(xp, v):
    """clip(⌊32 v / max(1, ⌊Σ|vᵢ| / D⌋)⌋) over the last axis: int8 → int8."""
    wide = _wide(xp, v)
    scale = xp.sum(xp.abs(wide), axis=-1, keepdims=True, dtype=xp.int32) // v.shape[-1]
    return _clip(xp, (wide * NORM_SCALE) // xp.maximum(scale, xp.ones_like(scale)))


def _gate(xp, z):
    """clip(z) + 128 ∈ [1, 255] as int32 (z is already saturated int8)."""
    return _wide(xp, z) + 128


def _scan(xp, f, c):
    """s_t = ⌊(f_t s_{t−1} + (256 − f_t) c_t) / 256⌋ along axis −2 (time), s_0 = 0: int32 (…, T, D)."""
    steps = f.shape[-2]
    state = xp.zeros_like(c[..., 0, :])
    outputs = []
    for t in range(steps):
        state = (f[..., t, :] * state + (256 - f[..., t, :]) * c[..., t, :]) // 256
        outputs.append(state)
    return xp.stack(outputs, axis=-2)


def log2_probabilities(xp, logits, targets):
    """log₂ p(targets) under softmax(logits · ln2 / 16), in units of 1/16 bit, as int32 (…, T): u = l − max l,
    S = Σ EXP2[u] (≤ 256 · 2¹⁶), log₂ S from its bit length and the LOG2 table of its top 9 bits."""
    dev = device(logits)
    exp2 = xp.asarray(_EXP2, device=dev)
    log2 = xp.asarray(_LOG2, device=dev)
    wide = _wide(xp, logits)
    shifted = wide - xp.max(wide, axis=-1, keepdims=True)  # ∈ [−254, 0]
    flat = xp.reshape(shifted + 2 * INT8_MAX, (-1,))
    total = xp.sum(xp.reshape(xp.take(exp2, flat, axis=0), shifted.shape), axis=-1, dtype=xp.int32)  # ≥ 2¹⁶
    bits = xp.zeros_like(total)
    for j in range(1, 26):
        bits = bits + xp.astype(total >= 2**j, xp.int32)  # ⌊log₂ S⌋
    mantissa = total // (2 ** (bits - _MANTISSA_BITS))  # ∈ [256, 511]
    fraction = xp.reshape(xp.take(log2, xp.reshape(mantissa - 256, (-1,)), axis=0), total.shape)
    log_total = (bits - _EXP_BITS) * LOGIT_UNIT + fraction
    vocabulary = xp.arange(VOCABULARY, dtype=xp.int32, device=dev)
    chosen = vocabulary == xp.astype(targets, xp.int32)[..., None]
    picked = xp.sum(xp.where(chosen, shifted, xp.zeros_like(shifted)), axis=-1, dtype=xp.int32)
    return picked - log_total


@dataclass(frozen=True)
class EGG:
    """The integer language model of the module docstring: `layers` L, `width` D, leaf names under `prefix`.
    Up to D = 260 every product is a float32 one (the MLP's fan-in 4D ≤ 1040); wider models take exact int32
    products, slower on NumPy."""

    layers: int = 1
    width: int = 64
    prefix: str = ""

    def __post_init__(self):
        _checks.integer("layers", self.layers, 1)
        _checks.integer("width", self.width, 1)
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix={self.prefix!r} must be a string")

    def shapes(self) -> dict:
        """Every leaf's name and shape."""
        d, p = self.width, self.prefix
        shapes = {f"{p}embed": (VOCABULARY, d)}
        for layer in range(self.layers):
            for gate in ("f", "c", "g", "o"):
                shapes[f"{p}layer{layer}.gru.{gate}"] = (d, d)
            shapes[f"{p}layer{layer}.mlp.up"] = (4 * d, d)
            shapes[f"{p}layer{layer}.mlp.down"] = (d, 4 * d)
        shapes[f"{p}head"] = (VOCABULARY, d)
        return shapes

    @property
    def parameter_count(self) -> int:
        """512·D + L·12·D²."""
        return sum(math.prod(shape) for shape in self.shapes().values())

    def init(self, xp, seed: int = 0, device=None) -> dict:
        """round(16 · N(0, 1)) clipped to ±127, as int8, drawn on the host from the counter generator (the same
        integers on every backend) and placed on `device`."""
        seed = _checks.integer("seed", seed, 0, 2**64 - 1)
        params = {}
        for name, shape in self.shapes().items():
            stream = random.derive_key(seed, _INIT_EPOCH, random.stream_id(name))
            draws = random.normal(np, stream, range(1), math.prod(shape), dtype=np.float64, dev=None)
            host = np.clip(np.round(16.0 * draws), -INT8_MAX, INT8_MAX).astype(np.int8).reshape(shape)
            params[name] = xp.asarray(host, device=device)
        return params

    def apply(self, ops, tokens, *, shared: bool = True):
        """Logits (…, T, 256) int8 for byte tokens (…, T) (integers in [0, 256)): shared by all members, or
        (N, …, T) per member with shared=False, as in `ops.embedding`."""
        xp, p = ops.xp, self.prefix
        h = ops.embedding(f"{p}embed", tokens, shared=shared)
        for layer in range(self.layers):
            name = f"{p}layer{layer}"
            u = norm(xp, h)
            f = _gate(xp, ops.linear(f"{name}.gru.f", u, shared=False))
            c = _wide(xp, ops.linear(f"{name}.gru.c", u, shared=False))
            g = _gate(xp, ops.linear(f"{name}.gru.g", u, shared=False))
            mixed = _clip(xp, (_scan(xp, f, c) * g) // 256)
            h = _clip(xp, _wide(xp, h) + _wide(xp, ops.linear(f"{name}.gru.o", mixed, shared=False)))
            up = ops.linear(f"{name}.mlp.up", norm(xp, h), shared=False)
            h = _clip(xp, _wide(xp, h) + _wide(xp, ops.linear(f"{name}.mlp.down", up, shared=False)))
        return ops.linear(f"{p}head", norm(xp, h), shared=False)

    def log_likelihood(self, ops, sequences, *, shared: bool = True):
        """Σ_t log₂ p(x_{t+1} | x_{≤t}) in units of 1/16 bit, int32 (…,), of byte sequences (…, T + 1)."""
        logits = self.apply(ops, sequences[..., :-1], shared=shared)
        return ops.xp.sum(log2_probabilities(ops.xp, logits, sequences[..., 1:]), axis=-1, dtype=ops.xp.int32)

    def generate(self, params, prompt: bytes, n_bytes: int, seed: int = 0) -> bytes:
        """`n_bytes` bytes continuing `prompt` (non-empty), sampled from the mean parameters: byte t is drawn
        with probability EXP2[l − max l] / Σ EXP2 (the integer softmax of `log2_probabilities`) by one Philox
        word w of stream (seed, t) as the first byte whose cumulative weight exceeds ⌊w · Σ / 2³²⌋, so a sample
        is a pure function of (params, prompt, n_bytes, seed). It runs on the host (NumPy): the integer model
        gives the same logits there as on any backend, and one step per byte would recompile on JAX."""
        from .ops import MeanOps

        if not isinstance(prompt, bytes | bytearray) or not prompt:
            raise ValueError(f"prompt={prompt!r} must be non-empty bytes, for example b'The '")
        n_bytes = _checks.integer("n_bytes", n_bytes, 0)
        seed = _checks.integer("seed", seed, 0, 2**64 - 1)
        ops, data = MeanOps({name: to_numpy(value) for name, value in params.items()}), list(prompt)
        for step in range(n_bytes):
            logits = self.apply(ops, np.asarray([data], dtype=np.int32))[0, -1].astype(np.int64)
            cumulative = np.cumsum(_EXP2[logits - logits.max() + 2 * INT8_MAX].astype(np.int64))
            stream = random.derive_key(seed, step, random.stream_id(f"{self.prefix}generate"))
            word = int(random.random_bits(np, stream, range(1), 1, None)[0][0, 0])
            data.append(int(np.searchsorted(cumulative, (word * int(cumulative[-1])) >> 32, side="right")))
        return bytes(data[len(prompt) :])

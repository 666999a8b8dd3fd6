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

The float twin, `EGG(..., dtype="float32")`, is the same layout and the same computation without the rounding:
a float32 activation v stands for EGG's 32 v and a weight w for 16 w, so with c = 127/32

    embed[x] / 2,   linear: clip(x Wᵀ / √n, ±c),   norm(v) = clip(v / max(1/32, Σ|vᵢ| / D), ±c),
    gates f = z / 8 + 1/2 ∈ [1/256, 255/256],   s_t = f_t s_{t−1} + (1 − f_t) c_t,   clip(s g, ±c),
    log₂ p(y) = 2 l_y − log₂ Σ_v 2^(2 l_v)   (a logit l stands for 2 l bits)

with weights N(0, 1) (the same draws EGG rounds to round(16 · N(0, 1))), trained by the ordinary float EGGROLL;
its log-likelihood is in bits. Comparing the two shows what the integer arithmetic costs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _checks, random
from ._array_api import device, index_dtype, is_numpy_namespace, is_traced, to_numpy
from .integer import INT8_MAX

__all__ = ["DTYPES", "EGG", "LOGIT_UNIT", "log2_probabilities"]

VOCABULARY = 256
NORM_SCALE = 32
LOGIT_UNIT = 16  # a logit l stands for l / 16 bits
_EXP_BITS = 16  # EXP2[u] = round(2^(16 + u/16)) for u ∈ [−254, 0]
_EXP2 = np.round(2.0 ** (_EXP_BITS + np.arange(-2 * INT8_MAX, 1) / LOGIT_UNIT)).astype(np.int32)
_MANTISSA_BITS = 8
# LOG2[m − 256] = round(16 · log2(m / 256)) for a mantissa m ∈ [256, 511]
_LOG2 = np.round(LOGIT_UNIT * np.log2(np.arange(256, 512) / 256.0)).astype(np.int32)
_INIT_EPOCH = 2**64 - 1
_FLOAT_UNIT = 32  # a float twin activation v stands for EGG's 32 v
_FLOAT_CLIP = INT8_MAX / _FLOAT_UNIT


def _clip(xp, v):
    return xp.astype(xp.clip(v, -INT8_MAX, INT8_MAX), xp.int8)


def _wide(xp, v):
    return xp.astype(v, xp.int32)


def norm(xp, v, *, portable: bool = False):
    """clip(⌊32 v / max(1, ⌊Σ|vᵢ| / D⌋)⌋) over the last axis: int8 → int8; on NumPy in exact float32 (six
    times faster than its integer division), unless `portable`."""
    if not portable and is_numpy_namespace(xp) and v.shape[-1] < 2**12:
        from ._integer_numpy import norm_numpy

        return norm_numpy(v, NORM_SCALE)
    wide = _wide(xp, v)
    scale = xp.sum(xp.abs(wide), axis=-1, keepdims=True, dtype=xp.int32) // v.shape[-1]
    return _clip(xp, (wide * NORM_SCALE) // xp.maximum(scale, xp.ones_like(scale)))


def _gate(xp, z):
    """clip(z) + 128 ∈ [1, 255] as int32 (z is already saturated int8)."""
    return _wide(xp, z) + 128


def _scan(xp, f, c, step):
    """s_t = step(f_t, s_{t−1}, c_t) along axis −2 (time), s_0 = 0: (…, T, D)."""
    state = xp.zeros_like(c[..., 0, :])
    outputs = []
    for t in range(f.shape[-2]):
        state = step(f[..., t, :], state, c[..., t, :])
        outputs.append(state)
    return xp.stack(outputs, axis=-2)


def _exp2_sums(xp, logits, portable: bool):
    """(max l, S = Σ EXP2[l − max l + 254]) over the last axis, int32 (…): S ∈ [2¹⁶, 256 · 2¹⁶]; on NumPy a
    block of rows at a time (`_integer_numpy.exp2_sums_numpy`), unless `portable`."""
    if not portable and is_numpy_namespace(xp):
        from ._integer_numpy import exp2_sums_numpy

        return exp2_sums_numpy(logits, _EXP2)
    top = _wide(xp, xp.max(logits, axis=-1, keepdims=True))
    index = _wide(xp, logits) - (top - 2 * INT8_MAX)  # l − max l + 254 ∈ [0, 254]
    terms = xp.take(xp.asarray(_EXP2, device=device(logits)), xp.reshape(index, (-1,)), axis=0)
    return top[..., 0], xp.sum(xp.reshape(terms, logits.shape), axis=-1, dtype=xp.int32)


def log2_probabilities(xp, logits, targets, *, portable: bool = False):
    """log₂ p(targets) under softmax(logits · ln2 / 16), in units of 1/16 bit, as int32 (…, T): u = l − max l,
    S = Σ EXP2[u] (≤ 256 · 2¹⁶), log₂ S from its bit length and the LOG2 table of its top 9 bits."""
    log2 = xp.asarray(_LOG2, device=device(logits))
    top, total = _exp2_sums(xp, logits, portable)
    bits = xp.zeros_like(total)
    for j in range(1, 26):
        bits = bits + xp.astype(total >= 2**j, xp.int32)  # ⌊log₂ S⌋
    mantissa = total // (2 ** (bits - _MANTISSA_BITS))  # ∈ [256, 511]
    fraction = xp.reshape(xp.take(log2, xp.reshape(mantissa - 256, (-1,)), axis=0), total.shape)
    log_total = (bits - _EXP_BITS) * LOGIT_UNIT + fraction
    return _wide(xp, _pick(xp, logits, targets)) - top - log_total


def _pick(xp, values, targets):
    """values[..., targets] along the last axis: (…, V) and integer (…) → (…), one gather of the flat array."""
    rows, width, dev = math.prod(targets.shape), values.shape[-1], device(values)
    indexing = index_dtype(xp, dev)
    flat = xp.arange(rows, dtype=indexing, device=dev) * width + xp.reshape(xp.astype(targets, indexing), (-1,))
    return xp.reshape(xp.take(xp.reshape(values, (-1,)), flat, axis=0), targets.shape)


def _check_bytes(xp, tokens, name: str, length: int) -> None:
    """Refuse tokens that are not integers in [0, 256) along a last axis of at least `length` (the range by one
    host read, skipped for traced tokens, which have no values to read)."""
    if not xp.isdtype(tokens.dtype, "integral"):
        raise TypeError(f"{name} must be integer bytes in [0, 256), got dtype {tokens.dtype}")
    if tokens.ndim < 1 or tokens.shape[-1] < length:
        raise ValueError(f"{name} need at least {length} bytes along the last axis; got shape {tuple(tokens.shape)}")
    inside = xp.all((tokens >= 0) & (tokens < VOCABULARY))
    if not is_traced(inside) and not bool(inside):
        raise ValueError(f"{name} must be bytes in [0, 256); some are outside")


class _IntegerArithmetic:
    """EGG's numbers: int8 activations, int32 intermediates, integer division and saturation."""

    unit = 1 / LOGIT_UNIT  # bits per unit of log_likelihood

    def __init__(self, xp):
        self.xp = xp

    def embedded(self, h):
        return h

    def linear(self, ops, name, x):
        return ops.linear(name, x, shared=False)

    def norm(self, v):
        return norm(self.xp, v)

    def gate(self, z):
        return _gate(self.xp, z)

    def candidate(self, z):
        return _wide(self.xp, z)

    def scan(self, f, c):
        return _scan(self.xp, f, c, lambda f_t, s, c_t: (f_t * s + (256 - f_t) * c_t) // 256)

    def mixed(self, s, g):
        return _clip(self.xp, (s * g) // 256)

    def residual(self, h, delta):
        return _clip(self.xp, _wide(self.xp, h) + _wide(self.xp, delta))

    def log2_probabilities(self, logits, targets):
        return log2_probabilities(self.xp, logits, targets)

    def weights(self, logits):
        """Host int64 logits (256,) → the integer softmax's weights EXP2[l − max l]."""
        logits = logits.astype(np.int64)
        return _EXP2[logits - logits.max() + 2 * INT8_MAX].astype(np.int64)


class _FloatArithmetic:
    """The float twin's numbers (module docstring): EGG's operations in float32 without the rounding."""

    unit = 1.0

    def __init__(self, xp):
        self.xp = xp

    def _clip(self, v):
        return self.xp.clip(v, -_FLOAT_CLIP, _FLOAT_CLIP)

    def embedded(self, h):
        return h * (LOGIT_UNIT / _FLOAT_UNIT)

    def linear(self, ops, name, x):
        return self._clip(ops.linear(name, x, shared=False) * (1 / math.sqrt(x.shape[-1])))

    def norm(self, v):
        scale = self.xp.mean(self.xp.abs(v), axis=-1, keepdims=True)
        return self._clip(v / self.xp.maximum(scale, self.xp.full_like(scale, 1 / _FLOAT_UNIT)))

    def gate(self, z):
        return z * (_FLOAT_UNIT / 256) + 0.5

    def candidate(self, z):
        return z

    def scan(self, f, c):
        return _scan(self.xp, f, c, lambda f_t, s, c_t: f_t * s + (1 - f_t) * c_t)

    def mixed(self, s, g):
        return self._clip(s * g)

    def residual(self, h, delta):
        return self._clip(h + delta)

    def log2_probabilities(self, logits, targets):
        """2 l_y − log₂ Σ_v 2^(2 l_v), stably: with m = max l, 2 (l_y − m) − log₂ Σ_v 2^(2 (l_v − m))."""
        xp = self.xp
        shifted = 2 * (logits - xp.max(logits, axis=-1, keepdims=True))
        log_total = xp.log2(xp.sum(xp.exp(shifted * math.log(2)), axis=-1))
        return _pick(xp, shifted, targets) - log_total

    def weights(self, logits):
        """Host logits (256,) → softmax weights 2^(2 (l − max l)) in float64."""
        logits = logits.astype(np.float64)
        return np.exp2(2 * (logits - logits.max()))


_ARITHMETIC = {"int8": _IntegerArithmetic, "float32": _FloatArithmetic}
DTYPES = tuple(_ARITHMETIC)


@dataclass(frozen=True)
class EGG:
    """The language model of the module docstring: `layers` L, `width` D, leaf names under `prefix`, in `dtype`
    "int8" (EGG, integer EGGROLL) or "float32" (its float twin, float EGGROLL). Up to D = 260 every int8
    product is a float32 one (the MLP's fan-in 4D ≤ 1040); wider models take exact int32 products, slower on
    NumPy."""

    layers: int = 1
    width: int = 64
    prefix: str = ""
    dtype: str = "int8"

    def __post_init__(self):
        _checks.integer("layers", self.layers, 1)
        _checks.integer("width", self.width, 1)
        _checks.choice("dtype", self.dtype, DTYPES)
        if not isinstance(self.prefix, str):
            raise TypeError(f"prefix={self.prefix!r} must be a string")

    @property
    def bits_per_unit(self) -> float:
        """Bits per unit of `log_likelihood`: 1/16 for EGG, 1 for the float twin."""
        return _ARITHMETIC[self.dtype].unit

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
        """int8: round(16 · N(0, 1)) clipped to ±127; float32: the same N(0, 1) draws. Drawn on the host from
        the counter generator (the same numbers on every backend) and placed on `device`."""
        seed = _checks.integer("seed", seed, 0, 2**64 - 1)
        params = {}
        for name, shape in self.shapes().items():
            stream = random.derive_key(seed, _INIT_EPOCH, random.stream_id(name))
            draws = random.normal(np, stream, range(1), math.prod(shape), dtype=np.float64, dev=None).reshape(shape)
            if self.dtype == "int8":
                host = np.clip(np.round(16.0 * draws), -INT8_MAX, INT8_MAX).astype(np.int8)
            else:
                host = draws.astype(np.float32)
            params[name] = xp.asarray(host, device=device)
        return params

    def apply(self, ops, tokens, *, shared: bool = True):
        """Logits (…, T, 256) for byte tokens (…, T) (integers in [0, 256)), int8 for EGG and float32 for the
        twin: shared by all members, or (N, …, T) per member with shared=False, as in `ops.embedding`."""
        _check_bytes(ops.xp, tokens, "tokens", 1)
        return self._logits(ops, tokens, shared)

    def _logits(self, ops, tokens, shared: bool):
        """`apply` on tokens already checked."""
        number, p = _ARITHMETIC[self.dtype](ops.xp), self.prefix
        h = number.embedded(ops.embedding(f"{p}embed", tokens, shared=shared))
        for layer in range(self.layers):
            name = f"{p}layer{layer}"
            u = number.norm(h)
            f = number.gate(number.linear(ops, f"{name}.gru.f", u))
            c = number.candidate(number.linear(ops, f"{name}.gru.c", u))
            g = number.gate(number.linear(ops, f"{name}.gru.g", u))
            mixed = number.mixed(number.scan(f, c), g)
            h = number.residual(h, number.linear(ops, f"{name}.gru.o", mixed))
            up = number.linear(ops, f"{name}.mlp.up", number.norm(h))
            h = number.residual(h, number.linear(ops, f"{name}.mlp.down", up))
        return number.linear(ops, f"{p}head", number.norm(h))

    def log_likelihood(self, ops, sequences, *, shared: bool = True):
        """Σ_t log₂ p(x_{t+1} | x_{≤t}) of byte sequences (…, T + 1), (…,): EGG's in units of 1/16 bit (int32),
        the twin's in bits (float32); `bits_per_unit` converts."""
        xp = ops.xp
        _check_bytes(xp, sequences, "sequences", 2)  # once: the inputs are a slice of them
        logits = self._logits(ops, sequences[..., :-1], shared)
        terms = _ARITHMETIC[self.dtype](xp).log2_probabilities(logits, sequences[..., 1:])
        return xp.sum(terms, axis=-1, dtype=xp.int32 if self.dtype == "int8" else None)

    def generate(self, params, prompt: bytes, n_bytes: int, seed: int = 0) -> bytes:
        """`n_bytes` bytes continuing `prompt` (non-empty), sampled from the mean parameters: byte t is drawn with
        probability wᵥ / Σ w, w the softmax's weights (EGG: the integer EXP2[l − max l] of `log2_probabilities`; the
        twin: 2^(2 (l − max l))), by one Philox word u of stream (seed, t) as the first byte whose cumulative weight
        exceeds u · Σ w / 2³² (⌊·⌋ for EGG's integers), so a sample is a pure function of (params, prompt, n_bytes,
        seed). It runs on the host (NumPy): the integer model gives the same logits there as on any backend, and one
        step per byte would recompile on JAX."""
        from .ops import MeanOps

        if not isinstance(prompt, bytes | bytearray) or not prompt:
            raise ValueError(f"prompt={prompt!r} must be non-empty bytes, for example b'The '")
        n_bytes = _checks.integer("n_bytes", n_bytes, 0)
        seed = _checks.integer("seed", seed, 0, 2**64 - 1)
        number = _ARITHMETIC[self.dtype](np)
        ops, data = MeanOps({name: to_numpy(value) for name, value in params.items()}), list(prompt)
        for step in range(n_bytes):
            cumulative = np.cumsum(number.weights(self.apply(ops, np.asarray([data], dtype=np.int32))[0, -1]))
            stream = random.derive_key(seed, step, random.stream_id(f"{self.prefix}generate"))
            word = int(random.random_bits(np, stream, range(1), 1, None)[0][0, 0])
            total = cumulative[-1]
            threshold = (word * int(total)) >> 32 if self.dtype == "int8" else word * float(total) / 2**32
            data.append(int(np.searchsorted(cumulative, threshold, side="right")))
        return bytes(data[len(prompt) :])

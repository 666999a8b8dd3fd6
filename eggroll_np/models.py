"""Small functional models written once against the model ops (`eggroll_np.ops`), so the same model runs on
the mean parameters and on a whole population:

    model = MLP((8, 32, 4))
    params = model.init(xp, seed=0)                     # dict name → array, float32 by default
    model.apply(egg.MeanOps(params), x)                 # (batch..., 4): the mean parameters θ
    model.apply(es.ask(state), x)                       # (N, batch..., 4): every member

A model is a frozen config (sizes, activation, leaf-name prefix) with `init` and `apply`; the params are
the caller's. Inputs are shared by all members, x (..., n), unless `shared=False` says they hold one slice
per member, x (N, ..., n), as in `ops.linear`: `shared` goes to the first layer, and everything after it is
per member.

Initial weights are scaled Gaussians from the package's counter-based generator (`eggroll_np.random`), so
they are a pure function of (seed, leaf name, shape, dtype), equal on every backend to a few ulp. Biases
start at zero. Every array is created in the dtype and on the device of the params or the given `xp`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _checks, random
from ._array_api import array_namespace, device, is_floating_dtype, is_numpy_namespace, prod

__all__ = [
    "ACTIVATIONS",
    "EGG",
    "GRU",
    "MLP",
    "activation",
    "gelu",
    "identity",
    "log_softmax",
    "relu",
    "sigmoid",
    "tanh",
]

# The noise epoch the initializers draw from: no run reaches it, so initial weights never coincide with a
# generation's noise of the same leaf and seed.
_INIT_EPOCH = 2**64 - 1


def identity(x):
    """x."""
    return x


def tanh(x):
    """tanh(x)."""
    return array_namespace(x).tanh(x)


def relu(x):
    """max(x, 0)."""
    xp = array_namespace(x)
    return xp.maximum(x, xp.zeros_like(x))


def sigmoid(x):
    """σ(x) = 1/(1 + e⁻ˣ), computed as 1/(1 + e^{−|x|}) for x ≥ 0 and e^{−|x|}/(1 + e^{−|x|}) for x < 0,
    so the exponential never overflows."""
    xp = array_namespace(x)
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def gelu(x):
    """GELU, tanh approximation: ½ x (1 + tanh(√(2/π) (x + 0.044715 x³)))."""
    xp = array_namespace(x)
    return 0.5 * x * (1.0 + xp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * (x * x * x))))


_SHORT_CLASS_AXIS = 32  # NumPy reduces a last axis up to this long faster with the classes moved first


def log_softmax(x):
    """log softmax over the last axis, x − max(x) − log Σ exp(x − max(x)): no exponential overflows.

    On NumPy, a short last axis (≤ 32 classes, as in a classifier's logits) is reduced with the classes on
    the leading axis: each reduction is then an elementwise pass over C contiguous rows, 2–8 times faster
    than row by row. The result is a view in x's axis order with the classes-first memory layout, which
    the usual `xp.sum(log_probs * onehot, axis=-1)` follows."""
    xp = array_namespace(x)
    if is_numpy_namespace(xp) and x.ndim > 1 and x.shape[-1] <= _SHORT_CLASS_AXIS and is_floating_dtype(xp, x.dtype):
        return _log_softmax_classes_first(x)
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def _log_softmax_classes_first(x):
    """`log_softmax` on NumPy over a copy with the last axis moved first, returned with it moved back."""
    classes_first = np.moveaxis(x, -1, 0).copy()
    classes_first -= np.maximum.reduce(classes_first, axis=0)
    classes_first -= np.log(np.add.reduce(np.exp(classes_first), axis=0))
    return np.moveaxis(classes_first, 0, -1)


ACTIVATIONS = {"identity": identity, "tanh": tanh, "relu": relu, "sigmoid": sigmoid, "gelu": gelu}


def activation(name: str | None, what: str = "activation"):
    """The activation function named `name` (a key of ACTIVATIONS); None is the identity. `what` names the
    argument in errors."""
    if name is None:
        return identity
    return ACTIVATIONS[_checks.choice(what, name, ACTIVATIONS)]


def _check_name(name) -> str:
    """A model's leaf-name prefix: a non-empty string."""
    if not isinstance(name, str):
        raise TypeError(
            f"name={name!r} must be a string (the prefix of the model's leaf names), not a {type(name).__name__}"
        )
    if not name:
        raise ValueError("name='' must be a non-empty string (the prefix of the model's leaf names)")
    return name


def _init_leaves(specs: dict, xp, dtype, dev, seed: int) -> dict:
    """Leaves from specs name → (shape, std): N(0, std²) entries drawn from the stream (seed, leaf name), or
    zeros where std is None. dtype None means float32; dev None means xp's default device."""
    seed = _checks.integer("seed", seed, 0, 2**64 - 1)
    probe = xp.zeros((0,), dtype=xp.float32 if dtype is None else dtype)  # no device=: raw CuPy lacks it
    xp, dtype = array_namespace(probe), probe.dtype
    dev = device(probe) if dev is None else dev
    if not is_floating_dtype(xp, dtype):
        raise TypeError(f"init needs a real floating dtype, for example xp.float32; got {dtype}")
    params = {}
    for name, (shape, std) in specs.items():
        if std is None:
            params[name] = xp.zeros(shape, dtype=dtype, device=dev)
            continue
        key = random.derive_key(seed, _INIT_EPOCH, random.stream_id(name))
        z = random.normal(xp, key, range(1), prod(shape), dtype=dtype, dev=dev)
        params[name] = xp.reshape(z, shape) * std
    return params


@dataclass(frozen=True)
class MLP:
    """A multilayer perceptron: h₀ = x, hₗ₊₁ = act(hₗ Wₗᵀ + bₗ), the last layer with `output_activation`.

    sizes (n₀, n₁, ..., n_L), at least two; leaves f"{name}.{l}.w" (nₗ₊₁, nₗ) and f"{name}.{l}.b" (nₗ₊₁,),
    so two models with different `name`s share one params dict. Activations are names of ACTIVATIONS.
    """

    sizes: tuple[int, ...]
    activation: str = "tanh"
    output_activation: str | None = None
    name: str = "layers"

    def __post_init__(self):
        try:
            sizes = tuple(self.sizes)
        except TypeError:
            raise TypeError(
                f"sizes={self.sizes!r} must be a sequence of layer widths, not a {type(self.sizes).__name__}"
            ) from None
        if len(sizes) < 2:
            raise ValueError(f"sizes={sizes!r} must hold at least two widths (inputs and outputs)")
        sizes = tuple(_checks.integer(f"sizes[{l}]", size, 1) for l, size in enumerate(sizes))
        object.__setattr__(self, "sizes", sizes)
        activation(self.activation)
        activation(self.output_activation, "output_activation")
        _check_name(self.name)

    def _specs(self) -> dict:
        specs = {}
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            specs[f"{self.name}.{l}.w"] = ((n_out, n_in), 1.0 / math.sqrt(n_in))
            specs[f"{self.name}.{l}.b"] = ((n_out,), None)
        return specs

    def init(self, xp, *, dtype=None, device=None, seed: int = 0) -> dict:
        """Params: weights Wₗ ~ N(0, 1/nₗ) entrywise (LeCun normal, std 1/√fan_in), biases 0.

        xp: an array namespace (numpy, jax.numpy, array_api_strict, cupy, or their array-api-compat
        wrappers); dtype: a real floating dtype of xp, float32 when None; device: xp's default when None;
        seed: an integer in [0, 2⁶⁴).
        """
        return _init_leaves(self._specs(), xp, dtype, device, seed)

    def apply(self, ops, x, *, shared: bool = True):
        """The network on `ops` (MeanOps or Population): x (..., n₀) → (..., n_L) on MeanOps; x (..., n₀)
        shared, or (N, ..., n₀) per member with shared=False → (N, ..., n_L) on a population. `shared` is
        the first layer's."""
        layers = len(self.sizes) - 1
        hidden, output = activation(self.activation), activation(self.output_activation)
        h = x
        for l in range(layers):
            h = ops.linear(f"{self.name}.{l}.w", h, bias=f"{self.name}.{l}.b", shared=shared)
            h = _activate(ops, hidden if l < layers - 1 else output, h)
            shared = False  # a population's activations are per member from here on; MeanOps ignores it
        return h


def _activate(ops, fn, h):
    """fn(h); on NumPy tanh and relu write into h where it is the fresh output of the package's own ops
    (`owns_outputs`: MeanOps, Population), not of a user's ops that might hand out a cached array."""
    if getattr(ops, "owns_outputs", False) and is_numpy_namespace(ops.xp) and h.flags.writeable and fn in (tanh, relu):
        return np.tanh(h, out=h) if fn is tanh else np.maximum(h, 0, out=h)
    return fn(h)


_GATES = ("r", "z", "n")


@dataclass(frozen=True)
class GRU:
    """A gated recurrent unit (Cho et al. 2014), one step:

        r  = σ(x W_rᵀ + b_r + h U_rᵀ)
        z  = σ(x W_zᵀ + b_z + h U_zᵀ)
        n  = tanh(x W_nᵀ + b_n + r ⊙ (h U_nᵀ + b_hn))
        h' = (1 − z) ⊙ n + z ⊙ h

    Leaves f"{name}.w_r", ".w_z", ".w_n" (hidden, input), ".u_r", ".u_z", ".u_n" (hidden, hidden), each a
    2-D leaf perturbed in low rank, and biases ".b_r", ".b_z", ".b_n", ".b_hn" (hidden,).
    """

    input_size: int
    hidden_size: int
    name: str = "gru"

    def __post_init__(self):
        for what in ("input_size", "hidden_size"):
            object.__setattr__(self, what, _checks.integer(what, getattr(self, what), 1))
        _check_name(self.name)

    def _specs(self) -> dict:
        n, h = self.input_size, self.hidden_size
        specs = {f"{self.name}.w_{g}": ((h, n), 1.0 / math.sqrt(n)) for g in _GATES}
        specs |= {f"{self.name}.u_{g}": ((h, h), 1.0 / math.sqrt(h)) for g in _GATES}
        specs |= {f"{self.name}.b_{g}": ((h,), None) for g in (*_GATES, "hn")}
        return specs

    def init(self, xp, *, dtype=None, device=None, seed: int = 0) -> dict:
        """Params: W ~ N(0, 1/input_size) and U ~ N(0, 1/hidden_size) entrywise (LeCun normal; not
        orthogonal), biases 0. xp, dtype, device as in `MLP.init`."""
        return _init_leaves(self._specs(), xp, dtype, device, seed)

    def initial_state(self, ops, batch_shape: tuple[int, ...] = ()):
        """The zero state h₀: (*batch_shape, hidden) on MeanOps, (N, *batch_shape, hidden) on a population
        (the leading axes of `ops.vector`), in the params' dtype and on their device."""
        b = ops.vector(f"{self.name}.b_hn")
        xp = array_namespace(b)
        return xp.zeros((*b.shape[:-1], *batch_shape, self.hidden_size), dtype=b.dtype, device=device(b))

    def _inputs(self, ops, x, shared):
        """x W_gᵀ + b_g for the gates r, z, n."""
        return [ops.linear(f"{self.name}.w_{g}", x, bias=f"{self.name}.b_{g}", shared=shared) for g in _GATES]

    def _recur(self, ops, inputs, h):
        """h' from the gates' input terms and h; h is per member on a population (MeanOps ignores shared)."""
        x_r, x_z, x_n = inputs
        r = sigmoid(x_r + ops.linear(f"{self.name}.u_r", h, shared=False))
        z = sigmoid(x_z + ops.linear(f"{self.name}.u_z", h, shared=False))
        n = tanh(x_n + r * ops.linear(f"{self.name}.u_n", h, bias=f"{self.name}.b_hn", shared=False))
        return (1.0 - z) * n + z * h

    def step(self, ops, x_t, h, *, shared: bool = True):
        """One step h' = GRU(x_t, h). x_t (..., input) shared, or (N, ..., input) per member with
        shared=False, as in `ops.linear`; h as `initial_state` makes it. Returns h' of h's shape."""
        return self._recur(ops, self._inputs(ops, x_t, shared), h)

    def apply(self, ops, xs, h0=None, *, shared: bool = True):
        """The GRU over a sequence with time on axis −2: xs (..., T, input) shared, or (N, ..., T, input) per
        member with shared=False. h0 as `initial_state` makes it; zeros when None. Returns (outputs (lead...,
        T, hidden), the last state (lead..., hidden)), lead = (N, ...) on a population and (...) on MeanOps.
        The input terms of all T steps take one product each."""
        if xs.ndim < 2 or xs.shape[-2] < 1:
            raise ValueError(f"GRU.apply needs inputs (..., T, {self.input_size}) with T ≥ 1; got shape {xs.shape}")
        inputs = self._inputs(ops, xs, shared)
        h = array_namespace(inputs[0]).zeros_like(inputs[0][..., 0, :]) if h0 is None else h0
        outputs = []
        for t in range(xs.shape[-2]):
            h = self._recur(ops, [term[..., t, :] for term in inputs], h)
            outputs.append(h)
        return array_namespace(h).stack(outputs, axis=-2), h


from .egg_model import EGG  # noqa: E402  (the integer language model, its own module)

"""The told fitness as it travels from the driver to the replicas: N float64 values, or, under sign shaping,
the N/2 pair signs packed five to a byte.

Sign shaping keeps only tₖ = sign(F₂ₖ − F₂ₖ₊₁) ∈ {−1, 0, 1} of each antithetic pair (after the nan policy and
the direction of `maximize`), and it is idempotent on what it returns: the fitness F' with F'₂ₖ = tₖ and
F'₂ₖ₊₁ = −tₖ (negated where the strategy minimizes) shapes to the same f as F. So the driver sends the tₖ,
and a replica tells F'. Five ternary digits fit one byte (3⁵ = 243 ≤ 256): byte = Σⱼ (tₖ₊ⱼ + 1)·3ʲ, so N
members cost ⌈N/10⌉ bytes instead of 8N.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..shaping import handle_nonfinite, sign
from ..strategy import EGGROLL

__all__ = ["PackedSigns", "fitness_to_tell", "pack_signs", "told_message", "unpack_signs"]

_DIGITS = 5  # ternary digits per byte
_PLACES = 3 ** np.arange(_DIGITS, dtype=np.int16)


class PackedSigns(NamedTuple):
    """`count` values in {−1, 0, 1}, five to a byte (the module docstring's code)."""

    data: bytes
    count: int


def pack_signs(signs: np.ndarray) -> PackedSigns:
    """Values in {−1, 0, 1} (any real dtype) as PackedSigns: byte = Σⱼ (tⱼ + 1)·3ʲ over runs of five."""
    signs = np.asarray(signs)
    if signs.ndim != 1 or not np.isin(signs, (-1, 0, 1)).all():
        raise ValueError("pack_signs takes a 1-D array of values in {-1, 0, 1}")
    digits = np.ones(-(-signs.size // _DIGITS) * _DIGITS, dtype=np.int16)  # padding digits stand for 0
    digits[: signs.size] = signs.astype(np.int16) + 1
    return PackedSigns(bytes((digits.reshape(-1, _DIGITS) @ _PLACES).astype(np.uint8)), signs.size)


def unpack_signs(packed: PackedSigns) -> np.ndarray:
    """The int8 values that `pack_signs` packed."""
    codes = np.frombuffer(packed.data, dtype=np.uint8).astype(np.int16)
    digits = (codes[:, None] // _PLACES) % 3
    return (digits.reshape(-1)[: packed.count] - 1).astype(np.int8)


def told_message(es: EGGROLL, fitness: np.ndarray, dtype: str) -> np.ndarray | PackedSigns:
    """What the replicas need to tell the raw fitness F (N,) float64: the pair signs of sign shaping, taken
    after F is rounded to `dtype` as the reference's tell (the driver's or the replicas') rounds it, or F
    itself under any other shaping."""
    if es.shaping is not sign:
        return fitness
    directed = fitness.astype(dtype) if es.maximize else -fitness.astype(dtype)
    return pack_signs(sign(handle_nonfinite(directed, es.nan_policy))[0::2])


def fitness_to_tell(es: EGGROLL, message: np.ndarray | PackedSigns) -> np.ndarray:
    """The fitness a replica tells for a `told_message`: F as sent, or F' of the module docstring."""
    if not isinstance(message, PackedSigns):
        return message
    pairs = unpack_signs(message).astype(np.float64)
    told = np.stack([pairs, -pairs], axis=1).reshape(-1)
    return told if es.maximize else -told

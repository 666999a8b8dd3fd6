"""Handwritten digits (scikit-learn's 8×8 images, shipped with it, no download): an MLP classifier evolved
by EGGROLL, scored on a held-out test split.

Fitness of member i: the mean log-likelihood log softmax(MLPᵢ(x))[y] over a minibatch of the training
split, drawn afresh each generation from (seed, generation). The whole population runs as one batched
forward pass (`MLP.apply(pop, x)`), the batch shared by all members.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .._array_api import to_numpy
from .._checks import integer
from ..models import MLP, log_softmax
from ..ops import MeanOps
from . import Option

__all__ = ["DigitsTask", "load_digits_split"]


def load_digits_split(test_fraction: float = 0.2, split_seed: int = 0):
    """(x_train, y_train, x_test, y_test) as NumPy arrays, pixels scaled to [0, 1], stratified split."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise ImportError("the digits task needs scikit-learn: pip install 'eggroll-np[examples]'") from None
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x / 16.0, y, test_size=test_fraction, random_state=split_seed, stratify=y
    )
    return x_train, y_train, x_test, y_test


class DigitsTask:
    summary = "MLP classifier on scikit-learn's handwritten digits (8x8 images, 10 classes)"
    metric = "test_accuracy"
    metric_goal = 0.97
    defaults: ClassVar[dict] = dict(
        population_size=512,
        sigma=0.05,
        optimizer="adamw",
        weight_decay=0.1,
        learning_rate=0.02,
        lr_schedule="cosine",
        generations=800,
        eval_every=50,
    )
    options = (
        Option("hidden", int, 64, "hidden units of the MLP"),
        Option("batch_size", int, 256, "training images per generation, shared by all members"),
    )

    def __init__(self, config: dict, xp, device, dtype):
        hidden = integer("hidden", config["hidden"], 1)
        x_train, y_train, x_test, y_test = load_digits_split()
        self.batch_size = integer("batch_size", config["batch_size"], 1, len(x_train))
        self.xp, self.device, self.dtype = xp, device, dtype
        self.seed = config["seed"]
        self.model = MLP((64, hidden, 10), activation="tanh")
        self.x_train = xp.asarray(x_train, dtype=dtype, device=device)
        self.onehot_train = xp.asarray(np.eye(10)[y_train], dtype=dtype, device=device)
        self.x_test = xp.asarray(x_test, dtype=dtype, device=device)
        self.y_train, self.y_test = y_train, y_test

    def init_params(self, seed: int) -> dict:
        return self.model.init(self.xp, dtype=self.dtype, device=self.device, seed=seed)

    def _batch(self, generation: int):
        """Minibatch indices of `generation`: a pure function of (seed, generation)."""
        rng = np.random.default_rng([self.seed, generation, 0x6469])
        rows = rng.choice(self.x_train.shape[0], self.batch_size, replace=False)
        return self.xp.asarray(rows, device=self.device)

    def fitness(self, pop, generation: int):
        xp = self.xp
        rows = self._batch(generation)
        x = xp.take(self.x_train, rows, axis=0)
        onehot = xp.take(self.onehot_train, rows, axis=0)
        log_probs = log_softmax(self.model.apply(pop, x, shared=True))
        return xp.mean(xp.sum(log_probs * onehot, axis=-1), axis=-1)

    def _accuracy(self, params, x, labels) -> float:
        logits = self.model.apply(MeanOps(params), x)
        return float(np.mean(to_numpy(self.xp.argmax(logits, axis=-1)) == labels))

    def evaluate(self, params) -> dict:
        return {
            "test_accuracy": self._accuracy(params, self.x_test, self.y_test),
            "train_accuracy": self._accuracy(params, self.x_train, self.y_train),
        }

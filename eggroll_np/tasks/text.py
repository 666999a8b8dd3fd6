"""A byte-level language model pretrained by EGGROLL: the int8 model EGG (`egg_model`) by integer EGGROLL, or
with --model float its float32 twin by float EGGROLL and Adam, on a corpus every machine has (CPython's
English help text, `text.default_corpus`) or the user's own file (--text FILE).

Every generation draws `sequences` windows of sequence_length + 1 bytes from the training split, from (seed,
generation); the members of antithetic pair k read window k mod `sequences`, so each window is shared by a
group of pairs. Fitness of a member: Σ log₂ p(next byte) over its window (`EGG.log_likelihood`: for EGG in
units of 1/16 bit, an integer). The evaluation scores the mean parameters on evenly spaced windows of the
held-out split (the corpus's last 10 %) in bits per byte, beside the unigram and bigram baselines fitted on
the training split (`text.baselines`), which the summary and the plot carry as constant lines, and shows a
sample: `SAMPLE_BYTES` bytes the mean parameters generate after the held-out split's first `PROMPT_BYTES`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from .. import text
from .._array_api import to_numpy
from .._checks import choice, integer
from ..egg_model import EGG
from ..ops import MeanOps
from . import Option

__all__ = ["MODELS", "PROMPT_BYTES", "SAMPLE_BYTES", "TextTask"]

_EVALUATION_WINDOWS = 64
PROMPT_BYTES, SAMPLE_BYTES = 16, 48
MODELS = {"egg": "int8", "float": "float32"}  # --model → EGG's dtype
# The float twin's settings where they differ from EGG's: Gaussian factors, σ the int8 perturbation's size
# relative to the weights (σ·8/16 = 1/32), rank shaping and Adam.
_FLOAT_DEFAULTS = dict(sigma=0.03, shaping="centered_rank", optimizer="adam", learning_rate=0.03)


def _corpus(config: dict) -> tuple[bytes, str]:
    """The corpus bytes and their description: --text FILE, or the default corpus where it is empty."""
    path = config["text"]
    if path:
        return text.read_corpus(path), repr(path)
    return text.default_corpus(), "the default corpus (pydoc_data.topics)"


class TextTask:
    summary = "int8 EGG language model on bytes (CPython's help text, or --text FILE), integer EGGROLL"
    metric = "test_bits_per_byte"
    metric_goal = None
    defaults: ClassVar[dict] = dict(
        population_size=2048,
        sigma=0.0625,
        shaping="sign",
        optimizer="integer",
        learning_rate=0.5,
        lr_schedule="cosine",
        generations=900,
        eval_every=50,
    )
    options = (
        Option("text", str, "", "a corpus file (any bytes); default: CPython's English help text"),
        Option("model", str, "egg", "egg (int8, integer EGGROLL) or float (its float32 twin, Adam)"),
        Option("layers", int, 1, "EGG layers L"),
        Option("width", int, 64, "EGG width D"),
        Option("sequence_length", int, 100, "bytes each member predicts per generation"),
        Option("sequences", int, 16, "windows per generation, shared by groups of antithetic pairs"),
    )

    @classmethod
    def defaults_for(cls, settings: dict) -> dict:
        """EGG's defaults, or the float twin's with --model float."""
        return {**cls.defaults, **(_FLOAT_DEFAULTS if settings.get("model") == "float" else {})}

    @staticmethod
    def derived(config: dict) -> dict:
        """The corpus's SHA-256, recorded in the run's config so a resumed run is refused on another corpus."""
        return {"text_sha256": text.sha256(_corpus(config)[0])}

    def __init__(self, config: dict, xp, device, dtype):
        self.xp, self.device = xp, device
        self.length = integer("sequence_length", config["sequence_length"], 1)
        self.sequences = integer("sequences", config["sequences"], 1)
        model = MODELS[choice("model", config["model"], MODELS)]
        if config["dtype"] != "float32":
            raise ValueError(f"the text task trains in int8 or float32 (--model); --dtype {config['dtype']} has no use")
        self.model = EGG(integer("layers", config["layers"], 1), integer("width", config["width"], 1), dtype=model)
        data, name = _corpus(config)
        text.check_corpus(data, sequence_length=self.length, name=name)
        if config.get("text_sha256") not in (None, text.sha256(data)):
            raise ValueError(
                f"{name} has SHA-256 {text.sha256(data)}, but this run was trained on {config['text_sha256']}; "
                "resume on the same corpus or start a new run"
            )
        self.train, self.test = text.split(data)
        self.seed = config["seed"]
        self.baselines = text.baselines(self.train, self.test)
        held_out = text.evaluation_windows(self.test, length=self.length, count=_EVALUATION_WINDOWS)
        self.held_out = xp.asarray(held_out, dtype=xp.int32, device=device)
        self.prompt = self.test[:PROMPT_BYTES]

    def init_params(self, seed: int) -> dict:
        """The model's init with the head at zero: the untrained model predicts every byte with p = 1/256 (8
        bits/byte) instead of random over-confident logits (about 9.7 bits/byte for EGG 1L-64D), and each
        member's first predictions come from its own perturbation."""
        params = self.model.init(self.xp, seed=seed, device=self.device)
        head = f"{self.model.prefix}head"
        return {**params, head: self.xp.zeros_like(params[head])}

    def fitness(self, pop, generation: int):
        """Σ log₂ p over each member's window (EGG: in 1/16 bits): pair k reads window k mod `sequences`."""
        batch = text.windows(
            self.train, seed=self.seed, generation=generation, count=self.sequences, length=self.length
        )
        pair = np.arange(pop.offset, pop.offset + len(pop)) // pop.layout.per_direction
        members = self.xp.asarray(batch[pair % self.sequences], dtype=self.xp.int32, device=self.device)
        return self.model.log_likelihood(pop, members, shared=False)

    def evaluate(self, params) -> dict:
        total = to_numpy(self.model.log_likelihood(MeanOps(params), self.held_out)).astype(np.float64).sum()
        sample = self.model.generate(params, self.prompt, SAMPLE_BYTES)
        return {
            "test_bits_per_byte": -total * self.model.bits_per_unit / (self.held_out.shape[0] * self.length),
            "unigram_bits_per_byte": self.baselines.unigram_bits_per_byte,
            "bigram_bits_per_byte": self.baselines.bigram_bits_per_byte,
            "sample": repr(self.prompt + sample)[2:-1],  # printable ASCII, escapes for the rest
        }

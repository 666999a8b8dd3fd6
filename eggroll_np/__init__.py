"""eggroll_np: EGGROLL evolution strategies with low-rank perturbations, written once against the Python
array API (NumPy, CuPy, JAX, PyTorch, array-api-strict).

    import eggroll_np as egg
    es = egg.EGGROLL(population_size=256, sigma=0.05, optimizer=egg.optim.adam(1e-2))
    state = es.init(params)
    pop = es.ask(state)
    state, info = es.tell(state, pop, fitness)
"""

from . import best, checkpoint, forward, gradient, leaves, models, noise, optim, random, schedules, shaping
from .best import BestSoFar
from .checkpoint import CheckpointError, load, save
from .minimize import OptimizeResult, minimize
from .ops import MeanOps
from .population import Layout, Population, Settings
from .strategy import EGGROLL, NAN_POLICIES, EggrollState

__version__ = "0.1.0"


def __getattr__(name: str):
    """`egg.distributed`, imported on first use (it is not needed to run a strategy)."""
    if name == "distributed":
        import importlib

        return importlib.import_module(f"{__name__}.distributed")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EGGROLL",
    "NAN_POLICIES",
    "BestSoFar",
    "CheckpointError",
    "EggrollState",
    "Layout",
    "MeanOps",
    "OptimizeResult",
    "Population",
    "Settings",
    "__version__",
    "best",
    "checkpoint",
    "distributed",
    "forward",
    "gradient",
    "leaves",
    "load",
    "minimize",
    "models",
    "noise",
    "optim",
    "random",
    "save",
    "schedules",
    "shaping",
]

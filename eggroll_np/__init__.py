"""eggroll_np: EGGROLL evolution strategies with low-rank perturbations, written once against the Python
array API (NumPy, CuPy, JAX, PyTorch, array-api-strict).

    import eggroll_np as egg
    es = egg.EGGROLL(population_size=256, sigma=0.05, optimizer=egg.optim.adam(1e-2))
    state = es.init(params)
    pop = es.ask(state)
    state, info = es.tell(state, pop, fitness)
"""

from . import checkpoint, forward, gradient, models, noise, optim, random, schedules, shaping
from .checkpoint import CheckpointError, load, save
from .ops import MeanOps
from .population import Population
from .strategy import EGGROLL, NAN_POLICIES, EggrollState

__version__ = "0.1.0"

__all__ = [
    "EGGROLL",
    "NAN_POLICIES",
    "CheckpointError",
    "EggrollState",
    "MeanOps",
    "Population",
    "__version__",
    "checkpoint",
    "forward",
    "gradient",
    "load",
    "models",
    "noise",
    "optim",
    "random",
    "save",
    "schedules",
    "shaping",
]

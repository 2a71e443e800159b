"""mfjax: matrix-factorization recommenders trained with JAX and optax.

The curated public API; everything else is reachable through the submodules.
"""

from mfjax.exceptions import DataError, ModelFitError, NotFittedError, UnknownIdError
from mfjax.interactions import IdMap, Interactions
from mfjax.models.base import load
from mfjax.splits import Split, random_split

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "IdMap",
    "Interactions",
    "ModelFitError",
    "NotFittedError",
    "Split",
    "UnknownIdError",
    "__version__",
    "load",
    "random_split",
]

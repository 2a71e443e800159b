"""mfjax's models: one module per family, one shared contract (:mod:`mfjax.models.base`).

Importing this package registers every model, so :func:`mfjax.load` can restore any of them.
"""

from mfjax.models.base import MODEL_REGISTRY, RatingRecommender, Recommender, load
from mfjax.models.baselines import Bias, Popularity, Random
from mfjax.models.bpr import BPR
from mfjax.models.ials import IALS
from mfjax.models.linear import EASE, ItemKNN
from mfjax.models.mf import MF

__all__ = [
    "BPR",
    "EASE",
    "IALS",
    "MF",
    "MODEL_REGISTRY",
    "Bias",
    "ItemKNN",
    "Popularity",
    "Random",
    "RatingRecommender",
    "Recommender",
    "load",
]

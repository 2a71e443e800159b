"""mfjax's models: one module per family, one shared contract (:mod:`mfjax.models.base`)."""

from mfjax.models.base import MODEL_REGISTRY, RatingRecommender, Recommender, load

__all__ = ["MODEL_REGISTRY", "RatingRecommender", "Recommender", "load"]

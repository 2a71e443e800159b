"""mfjax: matrix-factorization recommenders trained with JAX and optax.

The curated public API. Names are imported lazily, so ``import mfjax`` (and the ``mfjax``
command) stays quick and JAX is loaded only when a model or an evaluation needs it.

Example:
    >>> import mfjax
    >>> df = mfjax.synthetic(preset="small", seed=0)
    >>> split = mfjax.random_split(df, 0.2, seed=0)
    >>> model = mfjax.MF(factors=8, epochs=3, seed=0).fit(split, progress=False)
    >>> items, scores = model.recommend(split.user_map.values[0], k=5)
    >>> len(items)
    5
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # errors
    "DataError": "mfjax.exceptions",
    "ModelFitError": "mfjax.exceptions",
    "NotFittedError": "mfjax.exceptions",
    "UnknownIdError": "mfjax.exceptions",
    "ParameterError": "mfjax.pipeline",
    "NotebookExecutionError": "mfjax.pipeline",
    # data
    "synthetic": "mfjax.datasets",
    "load_dataset": "mfjax.datasets",
    "load_item_metadata": "mfjax.datasets",
    "load_interactions": "mfjax.data",
    "clean": "mfjax.data",
    "k_core": "mfjax.data",
    "to_implicit": "mfjax.data",
    "summarize": "mfjax.data",
    "Normalizer": "mfjax.data",
    "CleaningReport": "mfjax.data",
    "IdMap": "mfjax.interactions",
    "Interactions": "mfjax.interactions",
    # splits and prepared data
    "Split": "mfjax.splits",
    "split": "mfjax.splits",
    "random_split": "mfjax.splits",
    "per_user_split": "mfjax.splits",
    "temporal_split": "mfjax.splits",
    "leave_last_n": "mfjax.splits",
    "save_split": "mfjax.io",
    "load_split": "mfjax.io",
    # models
    "MF": "mfjax.models",
    "BPR": "mfjax.models",
    "IALS": "mfjax.models",
    "EASE": "mfjax.models",
    "ItemKNN": "mfjax.models",
    "Popularity": "mfjax.models",
    "Bias": "mfjax.models",
    "Random": "mfjax.models",
    "load": "mfjax.models",
    # evaluation and comparison
    "evaluate": "mfjax.evaluate",
    "Evaluation": "mfjax.evaluate",
    "compare": "mfjax.compare",
    "Comparison": "mfjax.compare",
    # devices
    "make_mesh": "mfjax.sharding",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mfjax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

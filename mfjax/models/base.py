"""The contract every mfjax model follows.

A model is a thin object around a functional core:

* ``Config`` — a frozen dataclass of hyperparameters, validated in ``__post_init__`` (bad
  values raise before anything compiles);
* ``_fit(train, valid)`` — trains from :class:`~mfjax.interactions.Interactions` in codes
  and sets ``self.params_`` (a dict of arrays);
* ``_score_fn`` — a **module-level pure function** ``(params, user_codes) -> scores[b,
  n_items]`` used by ``recommend`` and by the evaluator's jitted full ranking.

The base class supplies everything that speaks raw ids: ``fit`` (accepts a Split, a
DataFrame or Interactions), ``recommend``, ``predict`` for rating models, ``save`` and
:func:`load` (one ``.npz`` file, no pickle), id maps and seen items kept for serving.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfjax._io_utils import atomic_path
from mfjax.exceptions import DataError, NotFittedError
from mfjax.interactions import IdMap, Interactions
from mfjax.topk import top_k_blocked

__all__ = [
    "Recommender",
    "RatingRecommender",
    "load",
    "as_interactions",
    "MODEL_REGISTRY",
    "FORMAT_VERSION",
]

FORMAT_VERSION = 1
MODEL_REGISTRY: dict[str, type[Recommender]] = {}


def as_interactions(data: Any, *, part: str = "train") -> tuple[Interactions, Interactions | None]:
    """Accept a Split, a DataFrame (``user, item[, rating]``) or Interactions.

    Returns ``(train, valid)``; ``valid`` comes from a Split's validation part.
    """
    from mfjax.splits import Split

    if isinstance(data, Split):
        return getattr(data, part), data.valid
    if isinstance(data, Interactions):
        return data, None
    if isinstance(data, pd.DataFrame):
        return Interactions.from_frame(data), None
    raise DataError(
        f"fit() takes a Split, a DataFrame with columns user, item[, rating] or Interactions; "
        f"got {type(data).__name__}"
    )


class Recommender:
    """Base class of all models. Subclasses set ``name``, ``kind`` and ``Config``."""

    name: ClassVar[str] = "base"
    #: "rating" models predict ratings (and rank by them); "ranking" models only rank
    kind: ClassVar[str] = "ranking"
    Config: ClassVar[type] = None  # a frozen dataclass type

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name != "base":
            MODEL_REGISTRY[cls.name] = cls

    def __init__(self, config: Any = None, **hyperparameters: Any) -> None:
        if config is None:
            config = self.Config(**hyperparameters)
        elif hyperparameters:
            config = dataclasses.replace(config, **hyperparameters)
        if not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}")
        self.config = config
        self.params_: dict[str, np.ndarray] | None = None
        self.user_map_: IdMap | None = None
        self.item_map_: IdMap | None = None
        self.seen_: sp.csr_matrix | None = None
        self.item_popularity_: np.ndarray | None = None
        self.history_: pd.DataFrame = pd.DataFrame()
        self.fit_seconds_: float | None = None

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self.config, f.name)!r}" for f in dataclasses.fields(self.config)
        )
        return f"{type(self).__name__}({fields})"

    # ------------------------------------------------------------------ training
    def fit(self, data: Any, *, valid: Any = None, **fit_options: Any) -> Recommender:
        """Train on ``data`` (a Split's train part, a DataFrame or Interactions).

        ``valid`` (Interactions or DataFrame in the same ids) enables validation metrics and
        early stopping where the model supports them; a Split supplies its own.
        """
        train, split_valid = as_interactions(data)
        if valid is None:
            valid = split_valid
        elif isinstance(valid, pd.DataFrame):
            valid = Interactions.from_frame(
                valid, user_map=train.user_map, item_map=train.item_map, unknown="drop"
            )
        if len(train) == 0:
            raise DataError("cannot fit on an empty training set")
        self.user_map_ = train.user_map
        self.item_map_ = train.item_map
        self.seen_ = train.csr(binary=True)
        self.item_popularity_ = train.item_counts()
        t0 = time.perf_counter()
        self._fit(train, valid, **fit_options)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    @staticmethod
    def _score_fn(params: dict, users: jnp.ndarray) -> jnp.ndarray:
        """Pure scorer ``(params, user_codes) -> scores[b, n_items]``; subclasses override."""
        raise NotImplementedError

    def score_function(self) -> tuple[Callable, dict]:
        """``(score_fn, params)`` for jitted ranking: ``score_fn(params, users)``."""
        self._check_fitted()
        return type(self)._score_fn, self._device_params()

    def _device_params(self) -> dict:
        cache = getattr(self, "_device_cache", None)
        if cache is None or cache[0] is not self.params_:
            cache = (self.params_, {k: jnp.asarray(v) for k, v in self.params_.items()})
            self._device_cache = cache
        return cache[1]

    def _check_fitted(self) -> None:
        if self.params_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() or mfjax.load()")

    # ------------------------------------------------------------------ serving
    def recommend(
        self,
        users: Any,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: Any = None,
        unknown: str = "raise",
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for one user id or many, in the caller's raw ids.

        Args:
            users: one raw user id, or a sequence of them.
            k: list length.
            exclude_seen: leave out the user's training items (kept in the model).
            items: optional raw item ids to rank among.
            unknown: ``'raise'`` for an unknown user id, or ``'popular'`` to answer with
                the most popular items.

        Returns:
            ``(item_ids, scores)``: shape ``(k,)`` for one user, ``(n, k)`` for many, best
            first. Where fewer than ``k`` items remain, the tail holds no id (``-1`` for
            integer ids, ``''`` for strings) and score ``-inf``.
        """
        self._check_fitted()
        if unknown not in ("raise", "popular"):
            raise ValueError(f"unknown must be 'raise' or 'popular'; got {unknown!r}")
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        single = np.ndim(users) == 0
        codes = self.user_map_.codes(users, missing="raise" if unknown == "raise" else "ignore")
        allowed = None if items is None else self.item_map_.codes(items)
        known = codes >= 0
        fn, params = self.score_function()
        idx, scores = top_k_blocked(
            fn,
            params,
            np.where(known, codes, 0),
            self.item_map_.__len__(),
            int(k),
            exclude=self.seen_ if exclude_seen else None,
            allowed_items=allowed,
        )
        if not known.all():
            pop_idx, pop_scores = self._popular(int(k), allowed)
            idx[~known] = pop_idx[: idx.shape[1]]
            scores[~known] = pop_scores[: idx.shape[1]]
        out = self._ids_of(idx)
        return (out[0], scores[0]) if single else (out, scores)

    def _popular(self, k: int, allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        pop = self.item_popularity_.astype(np.float64)
        cand = np.arange(len(pop)) if allowed is None else np.asarray(allowed)
        order = cand[np.argsort(-pop[cand], kind="stable")][:k]
        items = np.full(k, -1, dtype=np.int64)
        scores = np.full(k, -np.inf, dtype=np.float32)
        items[: len(order)] = order
        scores[: len(order)] = pop[order]
        return items, scores

    def _ids_of(self, idx: np.ndarray) -> np.ndarray:
        ids = self.item_map_.values
        fill = "" if ids.dtype.kind in "US" else -1
        out = np.where(idx >= 0, ids[np.clip(idx, 0, None)], np.asarray(fill, dtype=ids.dtype))
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the model to one ``.npz`` file (no pickle), atomically.

        The file holds the parameters, the configuration, the id maps, the seen items and
        the training history; :func:`mfjax.load` restores a model that predicts exactly
        what this one does.
        """
        self._check_fitted()
        for key, arr in self.params_.items():
            if np.issubdtype(np.asarray(arr).dtype, np.floating) and not np.isfinite(arr).all():
                raise DataError(f"refusing to save: parameter '{key}' contains NaN or inf")
        path = Path(path)
        if path.suffix != ".npz":
            path = (
                path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
            )
        meta = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "config": _config_to_json(self.config),
            "fit_seconds": self.fit_seconds_,
            "history": self.history_.to_dict(orient="list") if len(self.history_) else {},
        }
        arrays: dict[str, np.ndarray] = {
            f"param/{k}": np.asarray(v) for k, v in self.params_.items()
        }
        arrays.update(
            {
                "meta": np.array(json.dumps(meta, default=_json_scalar)),
                "user_ids": self.user_map_.values,
                "item_ids": self.item_map_.values,
                "seen_indptr": self.seen_.indptr.astype(np.int64),
                "seen_indices": self.seen_.indices.astype(np.int32),
                "item_popularity": self.item_popularity_,
            }
        )
        arrays.update({f"extra/{k}": v for k, v in self._extra_state().items()})
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        return path

    def _extra_state(self) -> dict[str, np.ndarray]:
        """Additional arrays a subclass needs at serving time (saved under ``extra/``)."""
        return {}

    def _load_extra_state(self, extra: dict[str, np.ndarray]) -> None:
        pass


def _json_scalar(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    return str(obj)


def _config_to_json(config: Any) -> dict:
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, (str, int, float, bool, type(None))):
            out[f.name] = v
        elif isinstance(v, (tuple, list)):
            out[f.name] = list(v)
        else:  # an optax GradientTransformation, a callable: not restorable, record its kind
            out[f.name] = f"<custom {type(v).__name__}>"
    return out


def load(path: str | Path) -> Recommender:
    """Load a model written by ``save``.

    Example:
        >>> # model.save("mf.npz"); m = mfjax.load("mf.npz"); m.recommend(42, k=5)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no model file at {path}; save one with model.save({str(path)!r})")
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    try:
        meta = json.loads(str(data["meta"]))
    except KeyError as exc:
        raise DataError(f"{path} is not an mfjax model file (no 'meta' entry)") from exc
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise DataError(
            f"{path} was written by a newer mfjax (format {meta['format_version']}); upgrade mfjax"
        )
    import mfjax.models  # noqa: F401  (registers every model family)

    cls = MODEL_REGISTRY.get(meta["model"])
    if cls is None:
        raise DataError(
            f"{path} holds an unknown model '{meta['model']}'; known: {sorted(MODEL_REGISTRY)}"
        )
    field_names = {f.name for f in dataclasses.fields(cls.Config)}
    cfg = {}
    for k, v in meta["config"].items():
        if k not in field_names:
            continue
        if isinstance(v, str) and v.startswith("<custom"):
            continue  # a custom optimizer cannot be restored; the default stands in (not used at serving)
        cfg[k] = tuple(v) if isinstance(v, list) else v
    model = cls(cls.Config(**cfg))
    model.params_ = {k[len("param/") :]: v for k, v in data.items() if k.startswith("param/")}
    model.user_map_ = IdMap(data["user_ids"], name="user")
    model.item_map_ = IdMap(data["item_ids"], name="item")
    n_u, n_i = len(model.user_map_), len(model.item_map_)
    indices = data["seen_indices"]
    model.seen_ = sp.csr_matrix(
        (np.ones(len(indices), dtype=np.float32), indices, data["seen_indptr"]), shape=(n_u, n_i)
    )
    model.item_popularity_ = data["item_popularity"]
    model.history_ = pd.DataFrame(meta.get("history") or {})
    model.fit_seconds_ = meta.get("fit_seconds")
    model._load_extra_state(
        {k[len("extra/") :]: v for k, v in data.items() if k.startswith("extra/")}
    )
    return model


class RatingRecommender(Recommender):
    """A model that predicts ratings; it ranks items by predicted rating.

    Subclasses provide ``_predict_fn(params, user_codes, item_codes) -> ratings`` (pure).
    """

    kind: ClassVar[str] = "rating"

    @staticmethod
    def _predict_fn(params: dict, users: jnp.ndarray, items: jnp.ndarray) -> jnp.ndarray:
        raise NotImplementedError

    def predict(self, users: Any, items: Any, *, unknown: str = "raise") -> np.ndarray:
        """Predicted ratings for pairs ``(users[j], items[j])`` of raw ids (broadcast).

        ``unknown='raise'`` raises for an id never seen in training; ``unknown='mean'``
        predicts the training mean rating for such pairs.
        """
        self._check_fitted()
        if unknown not in ("raise", "mean"):
            raise ValueError(f"unknown must be 'raise' or 'mean'; got {unknown!r}")
        users_a, items_a = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        miss = "raise" if unknown == "raise" else "ignore"
        u = self.user_map_.codes(users_a.ravel(), missing=miss)
        i = self.item_map_.codes(items_a.ravel(), missing=miss)
        return self.predict_codes(u, i).reshape(users_a.shape)

    def predict_codes(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for codes; a code of -1 gets the training mean rating."""
        ok = (users >= 0) & (items >= 0)
        out = np.full(len(users), float(self.params_.get("mu", np.float32(0))), dtype=np.float32)
        if ok.any():
            pred = _jit_predict(type(self)._predict_fn)(
                self._device_params(), jnp.asarray(users[ok]), jnp.asarray(items[ok])
            )
            out[ok] = np.asarray(pred)
        return out


_PREDICT_CACHE: dict[Callable, Callable] = {}


def _jit_predict(fn: Callable) -> Callable:
    import jax

    if fn not in _PREDICT_CACHE:
        _PREDICT_CACHE[fn] = jax.jit(fn)
    return _PREDICT_CACHE[fn]

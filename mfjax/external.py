"""Peers behind mfjax's interface, so they are evaluated under the identical protocol.

Each adapter wraps another library's model with ``fit`` (a Split, DataFrame or
Interactions), ``recommend(users, k=10, *, exclude_seen=True)`` in raw ids and, for rating
models, ``predict(users, items)``; it is labelled ``external = True``. The libraries are
imported lazily: ``Adapter.unavailable_reason()`` says why one cannot run (the package is
absent), and :func:`mfjax.compare.default_roster` skips it with that message.

* :class:`ImplicitALS` — ``implicit.cpu.als.AlternatingLeastSquares`` (Hu et al. 2008);
* :class:`ImplicitBPR` — ``implicit.cpu.bpr.BayesianPersonalizedRanking``;
* :class:`SurpriseSVD` — Surprise's ``SVD`` (biased MF trained by SGD). Surprise has no
  top-K; its recommendations rank every item by Surprise's own estimate
  ``mu + b_u + b_i + q_i . p_u`` from the fitted arrays (unclipped, so no artificial ties
  at the top of the scale), and ``predict`` clips to the rating scale like
  ``algo.predict``.

implicit runs single-threaded BLAS (``threadpoolctl``), as its documentation asks.

Example:
    >>> # from mfjax.external import ImplicitALS
    >>> # model = ImplicitALS(factors=64, seed=0).fit(split)
    >>> # evaluate(model, split).summary    # the generic recommend() path
"""

from __future__ import annotations

import importlib
import os
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from mfjax.exceptions import NotFittedError
from mfjax.interactions import IdMap, Interactions

__all__ = ["ImplicitALS", "ImplicitBPR", "SurpriseSVD", "ExternalModel"]


class ExternalModel:
    """Common part of the adapters: id maps, seen items, raw-id ``recommend``."""

    name: ClassVar[str] = "external"
    kind: ClassVar[str] = "ranking"
    external: ClassVar[bool] = True
    #: the evaluator ranks with the peer's own ``recommend``, not with ``score_function``
    prefer_own_recommend: ClassVar[bool] = True
    #: the importable module this adapter needs
    package: ClassVar[str] = ""
    Config: ClassVar[type] = None

    def __init__(self, config: Any = None, **hyperparameters: Any) -> None:
        if config is None:
            config = self.Config(**hyperparameters)
        self.config = config
        self.user_map_: IdMap | None = None
        self.item_map_: IdMap | None = None
        self.seen_: sp.csr_matrix | None = None
        self.fit_seconds_: float | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the package imports, else a message saying how to install it."""
        try:
            importlib.import_module(cls.package)
        except ImportError as exc:
            return (
                f"the '{cls.package}' package is not installed ({exc}); "
                f"pip install 'mfjax[bench]' to compare against it"
            )
        return None

    def _require(self) -> Any:
        reason = self.unavailable_reason()
        if reason:
            raise ImportError(reason)
        return importlib.import_module(self.package)

    def fit(self, data: Any, *, valid: Any = None) -> ExternalModel:
        """Train on a Split's train part, a DataFrame (``user, item[, rating]``) or
        Interactions. ``valid`` is accepted for interface parity and ignored."""
        from mfjax.models.base import as_interactions

        train, _ = as_interactions(data)
        self.user_map_, self.item_map_ = train.user_map, train.item_map
        self.seen_ = train.csr(binary=True)
        t0 = time.perf_counter()
        self._fit(train)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def _fit(self, train: Interactions) -> None:
        raise NotImplementedError

    def _check_fitted(self) -> None:
        if self.seen_ is None:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit()")

    def _top(self, codes: np.ndarray, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _score_params(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def score_function(self) -> tuple[Any, dict]:
        """``(score_fn, params)`` of the fitted peer, as mfjax models give: used only for
        the full-catalogue AUC. Rankings still come from the peer's own ``recommend``
        (``prefer_own_recommend``)."""
        import jax.numpy as jnp

        self._check_fitted()
        fn = biased_dot_scores if self.kind == "rating" else dot_scores
        return fn, {k: jnp.asarray(v) for k, v in self._score_params().items()}

    def recommend(
        self, users: Any, k: int = 10, *, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` raw item ids and scores for one raw user id or many (see
        :meth:`mfjax.models.base.Recommender.recommend`); empty slots hold -1 / ``''``."""
        self._check_fitted()
        if int(k) < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        single = np.ndim(users) == 0
        codes = self.user_map_.codes(users)
        k = int(min(k, len(self.item_map_)))
        idx, scores = self._top(codes, k, exclude_seen)
        ids = self.item_map_.values
        fill = "" if ids.dtype.kind in "US" else -1
        out = np.where(idx >= 0, ids[np.clip(idx, 0, None)], np.asarray(fill, dtype=ids.dtype))
        return (out[0], scores[0]) if single else (out, scores)


def _numpy_top(
    scores: np.ndarray, seen: sp.csr_matrix | None, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row of a dense score block, seen items excluded, ties to the lower code."""
    scores = np.array(scores, dtype=np.float64)
    if seen is not None:
        rows, cols = seen.nonzero()
        scores[rows, cols] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    order = np.where(np.isfinite(top), order, -1)
    return order.astype(np.int64), top.astype(np.float32)


def dot_scores(params: dict, users: Any) -> Any:
    """``U[users] @ V.T`` (implicit's ALS and BPR score this way)."""
    return params["user_factors"][users] @ params["item_factors"].T


def biased_dot_scores(params: dict, users: Any) -> Any:
    """Surprise SVD's estimate ``mu + b_u + b_i + p_u . q_i`` for every item."""
    return (
        params["mu"]
        + params["user_bias"][users][:, None]
        + params["item_bias"][None, :]
        + params["user_factors"][users] @ params["item_factors"].T
    )


# ----------------------------------------------------------------------------- implicit
def _single_thread_blas():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


@dataclass(frozen=True)
class ImplicitALSConfig:
    """implicit's ALS hyperparameters (its own names and defaults, but 64 factors)."""

    factors: int = 64
    regularization: float = 0.01
    alpha: float = 1.0
    iterations: int = 15
    use_cg: bool = True
    seed: int = 0


class _ImplicitBase(ExternalModel):
    package: ClassVar[str] = "implicit"

    def _build(self) -> Any:
        raise NotImplementedError

    def _fit(self, train: Interactions) -> None:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
        self._require()
        user_items = train.csr().astype(np.float32)
        with _single_thread_blas():  # implicit checks the BLAS threads when constructed
            self.model_ = self._build()
            self.model_.fit(user_items, show_progress=False)

    def _score_params(self) -> dict[str, np.ndarray]:
        return {
            "user_factors": np.asarray(self.model_.user_factors, dtype=np.float32),
            "item_factors": np.asarray(self.model_.item_factors, dtype=np.float32),
        }

    def _top(self, codes: np.ndarray, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        items = np.full((len(codes), k), -1, dtype=np.int64)
        scores = np.full((len(codes), k), -np.inf, dtype=np.float32)
        with _single_thread_blas():
            ids, sc = self.model_.recommend(
                codes.astype(np.int32),
                self.seen_[codes],
                N=k,
                filter_already_liked_items=exclude_seen,
            )
        ids = np.asarray(ids).reshape(len(codes), -1)
        sc = np.asarray(sc, dtype=np.float32).reshape(len(codes), -1)
        ok = (ids >= 0) & np.isfinite(sc) & (sc > np.finfo(np.float32).min)
        items[:, : ids.shape[1]] = np.where(ok, ids, -1)
        scores[:, : sc.shape[1]] = np.where(ok, sc, -np.inf)
        return items, scores


class ImplicitALS(_ImplicitBase):
    """``implicit``'s ALS (CG solver by default) behind mfjax's interface.

    Example:
        >>> # ImplicitALS(factors=64, iterations=15, seed=0).fit(split).recommend(42, k=5)
    """

    name: ClassVar[str] = "implicit_als"
    Config: ClassVar[type] = ImplicitALSConfig

    def _build(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        c = self.config
        return AlternatingLeastSquares(
            factors=c.factors,
            regularization=c.regularization,
            alpha=c.alpha,
            iterations=c.iterations,
            use_cg=c.use_cg,
            random_state=c.seed,
        )


@dataclass(frozen=True)
class ImplicitBPRConfig:
    """implicit's BPR hyperparameters (its own names and defaults, but 64 factors).

    ``num_threads`` defaults to 1: implicit's multi-threaded BPR is Hogwild SGD, whose
    result changes from run to run even with the same seed. ``0`` uses every core
    (faster, not reproducible).
    """

    factors: int = 64
    learning_rate: float = 0.01
    regularization: float = 0.01
    iterations: int = 100
    seed: int = 0
    num_threads: int = 1


class ImplicitBPR(_ImplicitBase):
    """``implicit``'s BPR behind mfjax's interface.

    Example:
        >>> # ImplicitBPR(factors=64, iterations=100, seed=0).fit(split).recommend(42, k=5)
    """

    name: ClassVar[str] = "implicit_bpr"
    Config: ClassVar[type] = ImplicitBPRConfig

    def _build(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        c = self.config
        return BayesianPersonalizedRanking(
            factors=c.factors,
            learning_rate=c.learning_rate,
            regularization=c.regularization,
            iterations=c.iterations,
            num_threads=c.num_threads,
            random_state=c.seed,
        )


# ----------------------------------------------------------------------------- surprise
@dataclass(frozen=True)
class SurpriseSVDConfig:
    """Surprise's SVD hyperparameters (its own names and defaults)."""

    n_factors: int = 100
    n_epochs: int = 20
    lr_all: float = 0.005
    reg_all: float = 0.02
    seed: int = 0


class SurpriseSVD(ExternalModel):
    """Surprise's ``SVD`` behind mfjax's interface (a rating model).

    Example:
        >>> # SurpriseSVD(seed=0).fit(split).predict([1, 2], [10, 20])
    """

    name: ClassVar[str] = "surprise_svd"
    kind: ClassVar[str] = "rating"
    package: ClassVar[str] = "surprise"
    Config: ClassVar[type] = SurpriseSVDConfig

    def _fit(self, train: Interactions) -> None:
        import pandas as pd

        surprise = self._require()
        c = self.config
        lo, hi = float(train.values.min()), float(train.values.max())
        frame = pd.DataFrame({"u": train.users, "i": train.items, "r": train.values})
        data = surprise.Dataset.load_from_df(frame, surprise.Reader(rating_scale=(lo, hi)))
        trainset = data.build_full_trainset()
        algo = surprise.SVD(
            n_factors=c.n_factors,
            n_epochs=c.n_epochs,
            lr_all=c.lr_all,
            reg_all=c.reg_all,
            random_state=c.seed,
        )
        algo.fit(trainset)
        self.algo_ = algo
        n_u, n_i = len(self.user_map_), len(self.item_map_)
        # arrays in our codes; users/items without training ratings keep zero factors
        self.pu_ = np.zeros((n_u, c.n_factors))
        self.bu_ = np.zeros(n_u)
        self.qi_ = np.zeros((n_i, c.n_factors))
        self.bi_ = np.zeros(n_i)
        inner_u = np.array([trainset.to_raw_uid(j) for j in range(trainset.n_users)])
        inner_i = np.array([trainset.to_raw_iid(j) for j in range(trainset.n_items)])
        self.pu_[inner_u], self.bu_[inner_u] = algo.pu, algo.bu
        self.qi_[inner_i], self.bi_[inner_i] = algo.qi, algo.bi
        self.mu_ = float(trainset.global_mean)
        self.scale_ = (lo, hi)

    def _score_params(self) -> dict[str, np.ndarray]:
        return {
            "mu": np.float32(self.mu_),
            "user_bias": self.bu_.astype(np.float32),
            "item_bias": self.bi_.astype(np.float32),
            "user_factors": self.pu_.astype(np.float32),
            "item_factors": self.qi_.astype(np.float32),
        }

    def _scores(self, codes: np.ndarray) -> np.ndarray:
        return self.mu_ + self.bu_[codes, None] + self.bi_[None, :] + self.pu_[codes] @ self.qi_.T

    def _top(self, codes: np.ndarray, k: int, exclude_seen: bool) -> tuple[np.ndarray, np.ndarray]:
        items = np.empty((len(codes), k), dtype=np.int64)
        scores = np.empty((len(codes), k), dtype=np.float32)
        for start in range(0, len(codes), 512):
            c = codes[start : start + 512]
            seen = self.seen_[c] if exclude_seen else None
            items[start : start + len(c)], scores[start : start + len(c)] = _numpy_top(
                self._scores(c), seen, k
            )
        return items, scores

    def predict(self, users: Any, items: Any) -> np.ndarray:
        """Surprise's clipped estimates for pairs of raw ids; unknown ids get the biases
        that are known (Surprise's rule), the global mean at least."""
        self._check_fitted()
        u_a, i_a = np.broadcast_arrays(np.asarray(users), np.asarray(items))
        u = self.user_map_.codes(u_a.ravel(), missing="ignore")
        i = self.item_map_.codes(i_a.ravel(), missing="ignore")
        est = np.full(len(u), self.mu_)
        ku, ki = u >= 0, i >= 0
        est[ku] += self.bu_[u[ku]]
        est[ki] += self.bi_[i[ki]]
        both = ku & ki
        est[both] += np.einsum("ij,ij->i", self.pu_[u[both]], self.qi_[i[both]])
        return np.clip(est, *self.scale_).reshape(u_a.shape)

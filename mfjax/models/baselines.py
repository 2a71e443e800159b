"""Simple baselines every comparison needs: random, popularity and bias-only ratings.

* :class:`Random` — ranks items in a random order per user (seeded); the floor.
* :class:`Popularity` — ranks by the number of training interactions; the baseline that
  personalised models must clearly beat.
* :class:`Bias` — predicts ``mu + b_u + b_i`` with regularised biases fitted by
  alternating closed-form updates (Koren 2010, "Factor in the neighbors", §2.1; the same
  procedure as Surprise's ``BaselineOnly`` with ``method='als'``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mfjax.interactions import Interactions
from mfjax.models.base import RatingRecommender, Recommender

__all__ = ["Random", "RandomConfig", "Popularity", "PopularityConfig", "Bias", "BiasConfig"]


# ---------------------------------------------------------------------------- random
@dataclass(frozen=True)
class RandomConfig:
    """Hyperparameters of :class:`Random`.

    Attributes:
        seed: the order of each user's list depends only on ``(seed, user code)``.
    """

    seed: int = 0

    def __post_init__(self) -> None:
        if (
            not isinstance(self.seed, (int, np.integer))
            or isinstance(self.seed, bool)
            or self.seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")


class Random(Recommender):
    """Random ranking, reproducible by seed: each user gets a fixed random order.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 1, 2], "item": [10, 11, 10]})
        >>> Random(seed=0).fit(df).recommend(2, k=1)[0].tolist()
        [11]
    """

    name: ClassVar[str] = "random"
    Config: ClassVar[type] = RandomConfig

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        _no_options(options, type(self).__name__)
        key = jax.random.key_data(jax.random.PRNGKey(int(self.config.seed)))
        self.params_ = {
            "key": np.asarray(key, dtype=np.uint32),
            "item_zeros": np.zeros(train.n_items, dtype=np.float32),
        }
        self.history_ = pd.DataFrame(columns=["epoch", "loss", "seconds"])

    @staticmethod
    def _score_fn(params: dict, users: jax.Array) -> jax.Array:
        key = jax.random.wrap_key_data(params["key"], impl="threefry2x32")
        n_items = params["item_zeros"].shape[0]

        def one(u: jax.Array) -> jax.Array:
            return jax.random.uniform(jax.random.fold_in(key, u), (n_items,))

        return jax.vmap(one)(users) + params["item_zeros"][None, :]


# ---------------------------------------------------------------------------- popularity
@dataclass(frozen=True)
class PopularityConfig:
    """Hyperparameters of :class:`Popularity`.

    Attributes:
        weighted: rank by the sum of interaction values (ratings or weights) instead of the
            number of interactions.
    """

    weighted: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.weighted, bool):
            raise ValueError(f"weighted must be True or False; got {self.weighted!r}")


class Popularity(Recommender):
    """Most-interacted items first, the same list for everyone (minus their seen items).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 2, 2, 3], "item": [10, 10, 11, 12]})
        >>> Popularity().fit(df).recommend(1, k=1)[0].tolist()
        [11]
    """

    name: ClassVar[str] = "popularity"
    Config: ClassVar[type] = PopularityConfig

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        _no_options(options, type(self).__name__)
        weights = train.values if self.config.weighted else None
        pop = np.bincount(train.items, weights=weights, minlength=train.n_items)
        self.params_ = {"popularity": pop.astype(np.float32)}
        self.history_ = pd.DataFrame(columns=["epoch", "loss", "seconds"])

    @staticmethod
    def _score_fn(params: dict, users: jax.Array) -> jax.Array:
        pop = params["popularity"]
        return jnp.broadcast_to(pop[None, :], (users.shape[0], pop.shape[0]))


# ---------------------------------------------------------------------------- bias-only
@dataclass(frozen=True)
class BiasConfig:
    """Hyperparameters of :class:`Bias`.

    Attributes:
        reg_user: L2 strength on user biases (Surprise's ``reg_u``; default 15).
        reg_item: L2 strength on item biases (Surprise's ``reg_i``; default 10).
        epochs: alternating sweeps (user biases, then item biases).
    """

    reg_user: float = 15.0
    reg_item: float = 10.0
    epochs: int = 10

    def __post_init__(self) -> None:
        for name in ("reg_user", "reg_item"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {v!r}")
        if (
            not isinstance(self.epochs, (int, np.integer))
            or isinstance(self.epochs, bool)
            or self.epochs < 1
        ):
            raise ValueError(f"epochs must be a positive integer; got {self.epochs!r}")


class Bias(RatingRecommender):
    """Bias-only rating predictor ``r̂(u, i) = mu + b_u + b_i``.

    Fitted by alternating exact minimisation of
    ``sum (r - mu - b_u - b_i)^2 + reg_user * sum b_u^2 + reg_item * sum b_i^2``:
    ``b_u = sum_i (r_ui - mu - b_i) / (reg_user + n_u)``, then
    ``b_i = sum_u (r_ui - mu - b_u) / (reg_item + n_i)``.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 1, 2], "item": [10, 11, 10], "rating": [5.0, 3.0, 4.0]})
        >>> m = Bias(reg_user=0.0, reg_item=0.0, epochs=1).fit(df)
        >>> round(float(m.params_["mu"]), 3)
        4.0
    """

    name: ClassVar[str] = "bias"
    Config: ClassVar[type] = BiasConfig

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        _no_options(options, type(self).__name__)
        cfg = self.config
        u, i = train.users, train.items
        r = train.values.astype(np.float64)
        mu = float(r.mean())
        n_u = np.bincount(u, minlength=train.n_users).astype(np.float64)
        n_i = np.bincount(i, minlength=train.n_items).astype(np.float64)
        bu = np.zeros(train.n_users)
        bi = np.zeros(train.n_items)
        rows = []
        for epoch in range(1, cfg.epochs + 1):
            t0 = time.perf_counter()
            bu = np.bincount(u, weights=r - mu - bi[i], minlength=train.n_users) / (
                cfg.reg_user + n_u + 1e-12
            )
            bi = np.bincount(i, weights=r - mu - bu[u], minlength=train.n_items) / (
                cfg.reg_item + n_i + 1e-12
            )
            err = r - mu - bu[u] - bi[i]
            row = {
                "epoch": epoch,
                "loss": float(np.mean(err**2)),
                "seconds": time.perf_counter() - t0,
            }
            if valid is not None and len(valid):
                verr = valid.values - (mu + bu[valid.users] + bi[valid.items])
                row["valid_rmse"] = float(np.sqrt(np.mean(verr**2)))
            rows.append(row)
        self.params_ = {
            "mu": np.array(mu, dtype=np.float32),
            "user_bias": bu.astype(np.float32),
            "item_bias": bi.astype(np.float32),
        }
        self.history_ = pd.DataFrame(rows)

    @staticmethod
    def _score_fn(params: dict, users: jax.Array) -> jax.Array:
        return params["mu"] + params["user_bias"][users][:, None] + params["item_bias"][None, :]

    @staticmethod
    def _predict_fn(params: dict, users: jax.Array, items: jax.Array) -> jax.Array:
        return params["mu"] + params["user_bias"][users] + params["item_bias"][items]


def _no_options(options: dict, model: str) -> None:
    if options:
        raise TypeError(f"{model}.fit() takes no training options; got {sorted(options)}")

"""Explicit biased matrix factorization (Funk-SVD style), trained by :mod:`mfjax.train`.

Prediction ``r̂(u, i) = mu + b_u + b_i + p_u · q_i`` with ``mu`` the training mean.
Per-rating objective (summed over a minibatch, as Funk/Surprise's SGD does it)::

    0.5 · ℓ(r̂ - r) + 0.5 · reg · (|p_u|² + |q_i|²) + 0.5 · reg_bias · (b_u² + b_i²)

with ``ℓ(e) = e²`` (``loss='mse'``) or Huber (``loss='huber'``, ``2·huber_δ(e)``, equal to
``e²`` for ``|e| ≤ δ``). Regularisation is per occurrence, so frequent users and items are
regularised more, as in Surprise's SVD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mfjax.interactions import Interactions
from mfjax.models.base import RatingRecommender
from mfjax.optim import check_optimizer, check_schedule
from mfjax.train import (
    EngineSpec,
    auto_batch_size,
    check_choice,
    check_fit_options,
    check_float,
    check_int,
    config_dict,
    fit_loop,
)

__all__ = ["MF", "MFConfig", "mf_loss"]


@dataclass(frozen=True)
class MFConfig:
    """Hyperparameters of :class:`MF`.

    The defaults (row-wise Adagrad, lr 0.1 with cosine decay, reg 0.1, 40 epochs, k = 64,
    automatic batch size) reach a 5-fold CV RMSE of about 0.910 on MovieLens 100k (Surprise
    SVD: 0.936 on the same folds; see ``benchmarks/bench_mf.py``). Row-wise Adagrad
    (:func:`mfjax.optim.rowwise_adagrad`) adapts each row's step like Adam does, but keeps
    one number of state per row and costs one scatter-add per table, like plain SGD; Adam
    (``optimizer='adam', learning_rate=0.003``) reaches the same RMSE at two to three
    times the epoch time.

    Attributes:
        factors: latent dimension k.
        epochs: maximum number of epochs.
        optimizer: optimizer name (``'rowwise_adagrad'``, ``'sgd'``, ``'adam'``,
            ``'adagrad'``…, see :data:`mfjax.optim.OPTIMIZERS`) or an optax
            ``GradientTransformation``.
        learning_rate: peak learning rate of a named optimizer.
        schedule: learning-rate schedule (``'constant'``, ``'cosine'``, ``'linear'``…).
        reg: L2 strength on the factors (per rating).
        reg_bias: L2 strength on the biases (per rating).
        batch_size: ratings per minibatch, or None (default) for
            :func:`mfjax.train.auto_batch_size`: about 50 minibatches per epoch, a power of
            two between 256 and 16,384 (row-wise Adagrad is insensitive to it: on 1 M
            ratings batches of 8,192, 16,384 and 32,768 reach the same held-out RMSE;
            larger batches are faster per epoch).
        init_std: standard deviation of the normal initial factors.
        loss: ``'mse'`` or ``'huber'``.
        huber_delta: Huber threshold (rating units).
        seed: initialisation and shuffling seed.
        shuffle: ``'rotate'`` (cheap, default) or ``'full'`` (see :mod:`mfjax.train`).
        valid_every: epochs between validation RMSEs (when validation data is given).
        patience: early-stopping patience in validations (None: off); restores the best.
        min_delta: the smallest RMSE decrease that counts as an improvement.
        loss_tol: stop when the relative training-loss change falls below it (None: off).
    """

    factors: int = 64
    epochs: int = 40
    optimizer: Any = "rowwise_adagrad"
    learning_rate: float = 0.1
    schedule: str = "cosine"
    reg: float = 0.1
    reg_bias: float = 0.01
    batch_size: int | None = None
    init_std: float = 0.05
    loss: str = "mse"
    huber_delta: float = 1.0
    seed: int = 0
    shuffle: str = "rotate"
    valid_every: int = 1
    patience: int | None = None
    min_delta: float = 0.0
    loss_tol: float | None = None

    def __post_init__(self) -> None:
        check_int("factors", self.factors)
        check_int("epochs", self.epochs)
        check_optimizer(self.optimizer)
        check_float("learning_rate", self.learning_rate, strict=True)
        check_schedule(self.schedule)
        check_float("reg", self.reg)
        check_float("reg_bias", self.reg_bias)
        check_int("batch_size", self.batch_size, allow_none=True)
        check_float("init_std", self.init_std)
        check_choice("loss", self.loss, ("mse", "huber"))
        check_float("huber_delta", self.huber_delta, strict=True)
        check_int("seed", self.seed, minimum=0)
        check_choice("shuffle", self.shuffle, ("rotate", "full"))
        check_int("valid_every", self.valid_every)
        check_int("patience", self.patience, allow_none=True)
        check_float("min_delta", self.min_delta)
        check_float("loss_tol", self.loss_tol, allow_none=True)


def mf_loss(rows: dict, batch: dict, aux: dict, hyper: dict) -> jax.Array:
    """Per-rating objective of biased MF (see the module docstring).

    The engine keeps four tables (factors and biases apart: on CPU a column slice of a
    merged ``[p, b]`` row and its gradient's pad cost more than a separate scalar gather,
    and row-wise optimizers then keep the biases' own accumulators).

    Args:
        rows: ``p[b, k]``, ``q[b, k]``, ``bu[b]``, ``bi[b]`` (gathered user/item factors
            and biases).
        batch: ``values[b]`` (ratings).
        aux: ``mu`` (global mean), ``reg``, ``reg_bias``, ``huber_delta`` (traced scalars, so
            that a sweep over them compiles once).
        hyper: ``loss`` (static).

    Returns:
        ``loss[b]``.
    """
    p, q, bu, bi = rows["p"], rows["q"], rows["bu"], rows["bi"]
    err = aux["mu"] + bu + bi + jnp.sum(p * q, axis=-1) - batch["values"]
    if hyper["loss"] == "huber":
        data = optax.huber_loss(err, delta=aux["huber_delta"])
    else:
        data = 0.5 * err**2
    reg = 0.5 * aux["reg"] * (jnp.sum(p * p, -1) + jnp.sum(q * q, -1))
    return data + reg + 0.5 * aux["reg_bias"] * (bu * bu + bi * bi)


_GATHERS = (
    ("p", "user_factors", "users"),
    ("q", "item_factors", "items"),
    ("bu", "user_bias", "users"),
    ("bi", "item_bias", "items"),
)


def init_params(
    key: jax.Array, config: MFConfig, n_users: int, n_items: int
) -> dict[str, jax.Array]:
    """Initial engine tables: normal(0, init_std) ``user_factors``/``item_factors``, zero
    ``user_bias``/``item_bias`` (float32)."""
    ku, ki = jax.random.split(key)
    k = config.factors
    return {
        "user_factors": config.init_std * jax.random.normal(ku, (n_users, k), jnp.float32),
        "item_factors": config.init_std * jax.random.normal(ki, (n_items, k), jnp.float32),
        "user_bias": jnp.zeros((n_users,), jnp.float32),
        "item_bias": jnp.zeros((n_items,), jnp.float32),
    }


def serving_params(tables: dict, mu: Any) -> dict:
    """Engine tables → the saved parameters ``user_factors, item_factors, user_bias,
    item_bias, mu`` (works on numpy and jax arrays)."""
    return {
        "user_factors": tables["user_factors"],
        "item_factors": tables["item_factors"],
        "user_bias": tables["user_bias"],
        "item_bias": tables["item_bias"],
        "mu": mu,
    }


def _rmse(
    tables: dict, mu: jax.Array, users: jax.Array, items: jax.Array, values: jax.Array
) -> jax.Array:
    pred = MF._predict_fn(serving_params(tables, mu), users, items)
    return jnp.sqrt(jnp.mean((pred - values) ** 2))


_rmse_jit = jax.jit(_rmse)


class MF(RatingRecommender):
    """Explicit biased matrix factorization trained with any optax optimizer.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [7, 8, 7, 9, 8],
        ...                    "rating": [5.0, 3.0, 4.0, 2.0, 4.0]})
        >>> m = MF(factors=4, epochs=5, seed=0).fit(df)
        >>> m.predict(1, 9).shape, m.recommend(3, k=2)[0].shape
        ((), (2,))

    Fit options (``model.fit(data, valid=None, **options)``): ``checkpoint_dir``,
    ``checkpoint_every``, ``resume``, ``progress``, ``callback``, ``mesh`` — see
    :func:`mfjax.train.fit_loop`.
    """

    name: ClassVar[str] = "mf"
    Config: ClassVar[type] = MFConfig

    def _spec(self, n: int) -> EngineSpec:
        c = self.config
        n_batches = -(-n // auto_batch_size(n, c.batch_size))
        return EngineSpec(
            loss_fn=mf_loss,
            gathers=_GATHERS,
            optimizer=c.optimizer,
            learning_rate=float(c.learning_rate),
            schedule=c.schedule,
            total_steps=1 if c.schedule == "constant" else int(c.epochs * n_batches),
            hyper=(("loss", c.loss),),
        )

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        opts = check_fit_options(options, type(self).__name__)
        c = self.config
        mu = np.float32(train.values.mean())
        params = init_params(jax.random.PRNGKey(c.seed), c, train.n_users, train.n_items)
        valid_fn = None
        if valid is not None and len(valid):
            vu, vi, vv = (jnp.asarray(a) for a in (valid.users, valid.items, valid.values))
            mu_j = jnp.asarray(mu)

            def valid_fn(p: dict) -> float:
                return float(_rmse_jit(p, mu_j, vu, vi, vv))

        result = fit_loop(
            self._spec(len(train)),
            params,
            {"users": train.users, "items": train.items, "values": train.values},
            {
                "mu": jnp.asarray(mu),
                "reg": jnp.float32(c.reg),
                "reg_bias": jnp.float32(c.reg_bias),
                "huber_delta": jnp.float32(c.huber_delta),
            },
            epochs=c.epochs,
            batch_size=auto_batch_size(len(train), c.batch_size),
            seed=c.seed,
            shuffle=c.shuffle,
            valid_fn=valid_fn,
            valid_metric="rmse",
            valid_mode="min",
            valid_every=c.valid_every,
            patience=c.patience,
            min_delta=c.min_delta,
            loss_tol=c.loss_tol,
            fingerprint={
                "model": self.name,
                "config": config_dict(c),
                "shape": [train.n_users, train.n_items],
            },
            desc="mf",
            **opts,
        )
        self.params_ = {
            k: np.ascontiguousarray(v) for k, v in serving_params(result.params, None).items()
        }
        self.params_["mu"] = np.asarray(mu, dtype=np.float32)  # 0-d
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        self.stop_reason_ = result.stop_reason

    @staticmethod
    def _score_fn(params: dict, users: jax.Array) -> jax.Array:
        p = params["user_factors"][users]
        return (
            params["mu"]
            + params["user_bias"][users][:, None]
            + params["item_bias"][None, :]
            + p @ params["item_factors"].T
        )

    @staticmethod
    def _predict_fn(params: dict, users: jax.Array, items: jax.Array) -> jax.Array:
        p = params["user_factors"][users]
        q = params["item_factors"][items]
        return (
            params["mu"]
            + params["user_bias"][users]
            + params["item_bias"][items]
            + jnp.sum(p * q, -1)
        )

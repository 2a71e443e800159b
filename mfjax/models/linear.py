"""Item-item linear models: EASE (Steck 2019) and cosine item-kNN.

Both score a user by a linear map of their training row: ``scores = x_u W`` with ``x_u``
the user's (binary, by default) training row and ``W`` an items × items matrix.

* **EASE** ("Embarrassingly Shallow Autoencoders", Steck, WWW 2019) solves
  ``min_B ||X - X B||_F^2 + lambda ||B||_F^2`` subject to ``diag(B) = 0`` in closed form:
  with ``P = (X^T X + lambda I)^{-1}``, ``B = I - P diagMat(1 / diag(P))``, i.e.
  ``B_ij = -P_ij / P_jj`` off the diagonal and ``B_jj = 0``.
* **item-kNN** uses the cosine similarity of item columns,
  ``s_ij = <x_i, x_j> / (||x_i|| ||x_j|| + shrinkage)`` (``shrinkage`` damps similarities
  resting on few co-occurrences), with ``s_ii = 0``, and keeps for every item ``i`` its
  ``neighbors`` most similar items (ties broken by the smaller item code); the score of
  item ``j`` for user ``u`` is ``sum_{i in I_u} s_ij`` over the pruned similarities.

Both hold a dense items × items matrix (and the users × items training rows, so that a
saved model recommends on its own): they suit catalogues up to a few tens of thousands of
items. Fitting is one numpy/scipy computation in float64; scoring is jitted.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.linalg as sla
import scipy.sparse as sp

from mfjax.exceptions import DataError
from mfjax.interactions import Interactions
from mfjax.models.base import Recommender
from mfjax.train import check_choice, check_float, check_int

__all__ = [
    "EASE",
    "EASEConfig",
    "ItemKNN",
    "ItemKNNConfig",
    "ease_weights",
    "cosine_item_similarity",
]

#: the largest dense items × items float64 matrix a fit may build (bytes)
MAX_DENSE_BYTES = 4 * 2**30


def _check_size(n_items: int, model: str) -> None:
    need = 8 * n_items * n_items
    if need > MAX_DENSE_BYTES:
        raise DataError(
            f"{model} builds a dense {n_items} x {n_items} item matrix ({need / 2**30:.1f} GiB, "
            f"limit {MAX_DENSE_BYTES / 2**30:.0f} GiB); reduce the catalogue first, e.g. with "
            "mfjax.data.k_core or by keeping the most popular items"
        )


def _training_matrix(train: Interactions, binary: bool, model: str) -> sp.csr_matrix:
    vals = np.asarray(train.values)
    if not binary and len(vals) and not np.isfinite(vals).all():
        row = int(np.flatnonzero(~np.isfinite(vals))[0])
        raise DataError(
            f"{model} with binary=False needs finite values; row {row} of the training data "
            f"has {vals[row]!r}. Drop or fill such rows, or use binary=True."
        )
    return train.csr(binary=binary)


def _dense_rows(x: sp.csr_matrix, binary: bool) -> np.ndarray:
    """The users × items rows kept for serving (uint8 when binary, float32 otherwise)."""
    dense = x.toarray()
    return (dense > 0).astype(np.uint8) if binary else dense.astype(np.float32)


def _linear_scores(params: dict, users: jax.Array) -> jax.Array:
    rows = params["user_rows"][users].astype(jnp.float32)
    return rows @ params["item_weights"]


# ----------------------------------------------------------------------------- EASE
def ease_weights(x: sp.spmatrix | np.ndarray, regularization: float) -> np.ndarray:
    """Steck's closed form ``B = I - P diagMat(1/diag(P))``, ``P = (X^T X + lambda I)^-1``.

    Args:
        x: users × items training matrix (sparse or dense).
        regularization: ``lambda > 0``.

    Returns:
        ``B`` (items × items, float64) with a zero diagonal.

    Example:
        >>> x = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
        >>> b = ease_weights(x, 1.0)
        >>> np.allclose(np.diag(b), 0.0)
        True
    """
    gram = x.T @ x
    gram = gram.toarray() if sp.issparse(gram) else np.asarray(gram)
    gram = gram.astype(np.float64)
    gram[np.diag_indices_from(gram)] += regularization
    p = sla.cho_solve(sla.cho_factor(gram, lower=True), np.eye(len(gram)))
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b


@dataclasses.dataclass(frozen=True)
class EASEConfig:
    """Hyperparameters of :class:`EASE`.

    Attributes:
        regularization: ``lambda`` of the ridge penalty (Steck uses 100s on MovieLens).
        binary: fit on the binary interaction matrix (Steck's setting) or on the values.
    """

    regularization: float = 250.0
    binary: bool = True

    def __post_init__(self) -> None:
        check_float("regularization", self.regularization, strict=True)
        check_choice("binary", self.binary, (True, False))


class EASE(Recommender):
    """EASE (Steck 2019): a closed-form item-item ridge regression with a zero diagonal.

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 30, 20]})
        >>> EASE(regularization=1.0).fit(df).recommend(3, k=2)[0].tolist()
        [10, 30]
    """

    name: ClassVar[str] = "ease"
    kind: ClassVar[str] = "ranking"
    Config: ClassVar[type] = EASEConfig

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        if options:
            raise TypeError(f"EASE.fit() takes no options; got {sorted(options)}")
        cfg = self.config
        _check_size(train.n_items, "EASE")
        x = _training_matrix(train, cfg.binary, "EASE")
        b = ease_weights(x, cfg.regularization)
        self.params_ = {
            "item_weights": b.astype(np.float32),
            "user_rows": _dense_rows(x, cfg.binary),
        }
        self.history_ = pd.DataFrame()

    @staticmethod
    def _score_fn(params: dict, users: jax.Array) -> jax.Array:
        return _linear_scores(params, users)


# ----------------------------------------------------------------------------- item-kNN
def cosine_item_similarity(
    x: sp.spmatrix | np.ndarray, *, neighbors: int, shrinkage: float = 0.0
) -> np.ndarray:
    """Pruned cosine similarity of the item columns of ``x`` (items × items, float64).

    ``s_ij = <x_i, x_j> / (||x_i|| ||x_j|| + shrinkage)``, ``s_ii = 0``; row ``i`` keeps its
    ``neighbors`` largest entries (ties: smaller item code first), the rest set to 0.

    Example:
        >>> x = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
        >>> s = cosine_item_similarity(x, neighbors=1)
        >>> np.round(s, 3).tolist()
        [[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.707, 0.0, 0.0]]
    """
    co = x.T @ x
    co = co.toarray() if sp.issparse(co) else np.asarray(co)
    co = co.astype(np.float64)
    norms = np.sqrt(np.clip(np.diag(co), 0.0, None))
    denom = np.outer(norms, norms) + shrinkage
    sim = np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)
    np.fill_diagonal(sim, 0.0)
    n = len(sim)
    if neighbors < n:
        order = np.argsort(-sim, axis=1, kind="stable")
        drop = order[:, neighbors:]
        np.put_along_axis(sim, drop, 0.0, axis=1)
    return sim


@dataclasses.dataclass(frozen=True)
class ItemKNNConfig:
    """Hyperparameters of :class:`ItemKNN`.

    Attributes:
        neighbors: similar items kept per item.
        shrinkage: added to the cosine's denominator (0: plain cosine).
        binary: use the binary interaction matrix (default) or the values.
    """

    neighbors: int = 100
    shrinkage: float = 0.0
    binary: bool = True

    def __post_init__(self) -> None:
        check_int("neighbors", self.neighbors)
        check_float("shrinkage", self.shrinkage)
        check_choice("binary", self.binary, (True, False))


class ItemKNN(Recommender):
    """Item-based k-nearest-neighbours with cosine similarity (Sarwar et al. 2001).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [10, 20, 10, 30, 20]})
        >>> ItemKNN(neighbors=2).fit(df).recommend(3, k=1)[0].tolist()
        [10]
    """

    name: ClassVar[str] = "itemknn"
    kind: ClassVar[str] = "ranking"
    Config: ClassVar[type] = ItemKNNConfig

    def _fit(self, train: Interactions, valid: Interactions | None, **options: Any) -> None:
        if options:
            raise TypeError(f"ItemKNN.fit() takes no options; got {sorted(options)}")
        cfg = self.config
        _check_size(train.n_items, "ItemKNN")
        x = _training_matrix(train, cfg.binary, "ItemKNN")
        sim = cosine_item_similarity(x, neighbors=cfg.neighbors, shrinkage=cfg.shrinkage)
        self.params_ = {
            "item_weights": sim.astype(np.float32),
            "user_rows": _dense_rows(x, cfg.binary),
        }
        self.history_ = pd.DataFrame()

    @staticmethod
    def _score_fn(params: dict, users: jax.Array) -> jax.Array:
        return _linear_scores(params, users)

"""Train / validation / test splits that carry their id maps.

Every split returns a :class:`Split` whose parts share one user and one item id map,
built from the training part: codes mean the same thing in train, valid and test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfjax.exceptions import DataError
from mfjax.interactions import IdMap, Interactions

__all__ = ["Split", "random_split"]


@dataclass(frozen=True)
class Split:
    """A train/test (and optional validation) split in codes, with shared id maps.

    Attributes:
        train, test: the parts, as :class:`~mfjax.interactions.Interactions`.
        valid: the validation part carved from training, or None.
        info: counts a person wants to see (rows per part, rows dropped by the cold-start
            policy, the seed and the method).
    """

    train: Interactions
    test: Interactions
    valid: Interactions | None = None
    info: dict = field(default_factory=dict)

    @property
    def user_map(self) -> IdMap:
        return self.train.user_map

    @property
    def item_map(self) -> IdMap:
        return self.train.item_map

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    def train_csr(self) -> sp.csr_matrix:
        """The training users × items matrix."""
        return self.train.csr()


def _check_fraction(name: str, value: float, *, allow_zero: bool = False) -> None:
    lo_ok = value >= 0 if allow_zero else value > 0
    if not (lo_ok and value < 1):
        rng = "[0, 1)" if allow_zero else "(0, 1)"
        raise DataError(f"{name} must be a fraction in {rng}; got {value!r}")


def _encode_parts(
    df: pd.DataFrame,
    train_mask: np.ndarray,
    test_mask: np.ndarray,
    valid_mask: np.ndarray | None,
    *,
    cold_start: str,
    info: dict,
) -> Split:
    """Encode the parts against the training id maps, applying the cold-start policy."""
    if cold_start not in ("drop", "keep"):
        raise DataError(f"cold_start must be 'drop' or 'keep'; got {cold_start!r}")
    train_df = df[train_mask]
    if len(train_df) == 0:
        raise DataError("the split left the training set empty; lower test_size or add data")
    if cold_start == "keep":
        # id maps cover every user and item; those unseen in training get no training rows
        user_map = IdMap(np.sort(pd.unique(df["user"].to_numpy())), name="user")
        item_map = IdMap(np.sort(pd.unique(df["item"].to_numpy())), name="item")
    else:
        user_map = IdMap(np.sort(pd.unique(train_df["user"].to_numpy())), name="user")
        item_map = IdMap(np.sort(pd.unique(train_df["item"].to_numpy())), name="item")
    train = Interactions.from_frame(train_df, user_map=user_map, item_map=item_map)

    def part(mask: np.ndarray, name: str) -> Interactions:
        sub = df[mask]
        enc = Interactions.from_frame(sub, user_map=user_map, item_map=item_map, unknown="drop")
        info[f"{name}_cold_dropped"] = int(len(sub) - len(enc))
        return enc

    test = part(test_mask, "test")
    valid = part(valid_mask, "valid") if valid_mask is not None else None
    info.update(
        n_train=len(train),
        n_test=len(test),
        n_valid=0 if valid is None else len(valid),
        n_users=train.n_users,
        n_items=train.n_items,
        cold_start=cold_start,
    )
    return Split(train=train, test=test, valid=valid, info=info)


def random_split(
    df: pd.DataFrame,
    test_size: float = 0.2,
    *,
    valid_size: float = 0.0,
    seed: int = 0,
    cold_start: str = "drop",
) -> Split:
    """Random holdout over all interactions.

    Args:
        df: interactions with columns ``user, item, rating[, timestamp]``.
        test_size: fraction of rows in test, in (0, 1).
        valid_size: fraction of the *training* rows carved out as validation, in [0, 1).
        seed: the shuffle's seed; the same seed gives the same split.
        cold_start: ``'drop'`` removes test/valid rows whose user or item has no training
            row (counted in ``info``); ``'keep'`` keeps them (id maps then cover them).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3], "item": [1, 2, 1, 2, 1],
        ...                    "rating": [5.0, 3, 4, 2, 1]})
        >>> s = random_split(df, 0.4, seed=0)
        >>> len(s.train) + len(s.test) + s.info["test_cold_dropped"]
        5
    """
    _check_fraction("test_size", test_size)
    _check_fraction("valid_size", valid_size, allow_zero=True)
    n = len(df)
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = int(round(n * test_size))
    test_mask = np.zeros(n, dtype=bool)
    test_mask[order[:n_test]] = True
    valid_mask = None
    train_mask = ~test_mask
    if valid_size > 0:
        rest = order[n_test:]
        n_valid = int(round(len(rest) * valid_size))
        valid_mask = np.zeros(n, dtype=bool)
        valid_mask[rest[:n_valid]] = True
        train_mask &= ~valid_mask
    info = {"method": "random", "seed": seed, "test_size": test_size, "valid_size": valid_size}
    return _encode_parts(
        df.reset_index(drop=True), train_mask, test_mask, valid_mask, cold_start=cold_start, info=info
    )

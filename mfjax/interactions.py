"""Encoded interactions: contiguous integer codes for users and items, with the raw ids kept.

Everything that trains or evaluates works on :class:`Interactions`; everything that talks
to a person speaks raw ids. The orientation is the same everywhere: **rows are users,
columns are items**.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfjax.exceptions import DataError, UnknownIdError

__all__ = ["Interactions", "IdMap"]


@dataclass(frozen=True)
class IdMap:
    """A bijection between raw ids (any hashable dtype) and codes ``0..n-1``.

    Example:
        >>> m = IdMap(np.array([10, 30, 20]))
        >>> m.codes([20, 10]).tolist()
        [2, 0]
        >>> m.ids(np.array([1])).tolist()
        [30]
    """

    values: np.ndarray
    name: str = "id"
    _index: pd.Index = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = np.asarray(self.values)
        if values.dtype == object:
            values = values.astype(str)
        object.__setattr__(self, "values", values)
        index = pd.Index(values)
        if not index.is_unique:
            raise DataError(f"{self.name} ids must be unique to build an id map")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.values)

    def codes(self, ids: object, *, missing: str = "raise") -> np.ndarray:
        """Codes of raw ``ids``. ``missing='raise'`` raises :class:`UnknownIdError`;
        ``missing='ignore'`` returns -1 for unknown ids."""
        arr = np.atleast_1d(np.asarray(ids))
        if arr.dtype.kind in "OUS" and self.values.dtype.kind in "iu":
            # "42" from a CLI or CSV for an integer-keyed model
            try:
                arr = arr.astype(self.values.dtype)
            except (TypeError, ValueError):
                pass
        elif arr.dtype.kind in "iu" and self.values.dtype.kind in "US":
            arr = arr.astype(str)
        codes = self._index.get_indexer(arr).astype(np.int64)
        if missing == "raise" and (codes < 0).any():
            unknown = arr[codes < 0][:5].tolist()
            raise UnknownIdError(
                f"unknown {self.name} id(s) {unknown} (never seen in training; "
                f"{len(self)} known {self.name}s). Pass unknown='popular' to fall back to "
                f"popularity, or check the ids' type (known ids look like {self.values[:3].tolist()})."
            )
        return codes

    def ids(self, codes: np.ndarray) -> np.ndarray:
        """Raw ids of ``codes``."""
        return self.values[np.asarray(codes)]


@dataclass(frozen=True)
class Interactions:
    """User-item interactions in codes, with their id maps.

    Attributes:
        users: int32 user codes, one per interaction.
        items: int32 item codes.
        values: float32 rating (explicit) or weight (implicit, 1.0 by default).
        user_map, item_map: the id maps (shared by every part of one split).
        timestamps: int64 seconds, or None.
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    user_map: IdMap
    item_map: IdMap
    timestamps: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", np.asarray(self.users, dtype=np.int32))
        object.__setattr__(self, "items", np.asarray(self.items, dtype=np.int32))
        object.__setattr__(self, "values", np.asarray(self.values, dtype=np.float32))
        n = len(self.users)
        if len(self.items) != n or len(self.values) != n:
            raise DataError("users, items and values must have the same length")
        if n and (self.users.min() < 0 or self.users.max() >= self.n_users):
            raise DataError("user codes out of range of the user id map")
        if n and (self.items.min() < 0 or self.items.max() >= self.n_items):
            raise DataError("item codes out of range of the item id map")

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    def __len__(self) -> int:
        return len(self.users)

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        user_map: IdMap | None = None,
        item_map: IdMap | None = None,
        value: str | None = "rating",
        unknown: str = "raise",
    ) -> Interactions:
        """Encode a frame with columns ``user, item[, rating][, timestamp]``.

        Without id maps, codes follow the sorted raw ids. With id maps (for test data
        encoded against training), rows with unknown ids raise (``unknown='raise'``) or
        are dropped (``unknown='drop'``).
        """
        for col in ("user", "item"):
            if col not in df.columns:
                raise DataError(f"interactions need a '{col}' column; found {list(df.columns)}")
        if user_map is None:
            user_map = IdMap(np.sort(pd.unique(df["user"].to_numpy())), name="user")
        if item_map is None:
            item_map = IdMap(np.sort(pd.unique(df["item"].to_numpy())), name="item")
        u = user_map.codes(df["user"].to_numpy(), missing="ignore")
        i = item_map.codes(df["item"].to_numpy(), missing="ignore")
        keep = (u >= 0) & (i >= 0)
        if not keep.all():
            if unknown == "raise":
                bad = int((~keep).sum())
                raise DataError(
                    f"{bad} interaction(s) have users or items absent from the id maps; "
                    "drop them first or pass unknown='drop'"
                )
            u, i = u[keep], i[keep]
        if value is not None and value in df.columns:
            vals = df[value].to_numpy(dtype=np.float32)[keep]
        else:
            vals = np.ones(int(keep.sum()), dtype=np.float32)
        ts = df["timestamp"].to_numpy(dtype=np.int64)[keep] if "timestamp" in df.columns else None
        return cls(u, i, vals, user_map, item_map, ts)

    def to_frame(self) -> pd.DataFrame:
        """Back to raw ids: columns ``user, item, rating[, timestamp]``."""
        out = {
            "user": self.user_map.ids(self.users),
            "item": self.item_map.ids(self.items),
            "rating": self.values,
        }
        if self.timestamps is not None:
            out["timestamp"] = self.timestamps
        return pd.DataFrame(out)

    def csr(self, *, binary: bool = False) -> sp.csr_matrix:
        """The users × items matrix (float32). Duplicate pairs are summed."""
        vals = np.ones_like(self.values) if binary else self.values
        m = sp.csr_matrix(
            (vals, (self.users, self.items)), shape=(self.n_users, self.n_items), dtype=np.float32
        )
        m.sum_duplicates()
        m.sort_indices()
        return m

    def item_counts(self) -> np.ndarray:
        """Interactions per item code (popularity)."""
        return np.bincount(self.items, minlength=self.n_items).astype(np.int64)

    def user_counts(self) -> np.ndarray:
        """Interactions per user code (activity)."""
        return np.bincount(self.users, minlength=self.n_users).astype(np.int64)

    def select(self, mask: np.ndarray) -> Interactions:
        """A subset of rows, same id maps."""
        ts = None if self.timestamps is None else self.timestamps[mask]
        return Interactions(
            self.users[mask], self.items[mask], self.values[mask], self.user_map, self.item_map, ts
        )

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

__all__ = [
    "SPLIT_METHODS",
    "Split",
    "leave_last_n",
    "per_user_split",
    "random_split",
    "split",
    "temporal_split",
]


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


def _check_input(df: pd.DataFrame, *, need_time: bool = False, method: str = "") -> pd.DataFrame:
    """Validate a raw frame for splitting: columns, rows, distinct (user, item) pairs."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"splits take a DataFrame (user, item, rating[, timestamp]); got {type(df).__name__}"
        )
    for col in ("user", "item"):
        if col not in df.columns:
            raise DataError(f"the frame to split has no '{col}' column; found {list(df.columns)}")
    if len(df) == 0:
        raise DataError("the frame to split has no rows")
    if need_time and "timestamp" not in df.columns:
        raise DataError(
            f"{method} needs a 'timestamp' column; found {list(df.columns)}. Use "
            "method='random' or 'per_user', or load the data with its time column"
        )
    dup = df.duplicated(["user", "item"])
    if dup.any():
        raise DataError(
            f"the frame has {int(dup.sum())} repeated (user, item) pair(s) (e.g. row "
            f"{df.index[np.flatnonzero(dup.to_numpy())[0]]}); a pair could land in train and "
            "test. Resolve them first with mfjax.data.clean(df, duplicates='last'|'mean'|...)"
        )
    return df.reset_index(drop=True)


def _encode_parts(
    df: pd.DataFrame,
    train_mask: np.ndarray,
    test_mask: np.ndarray,
    valid_mask: np.ndarray | None,
    *,
    cold_start: str,
    info: dict,
) -> Split:
    """Encode the parts against the training id maps, applying the cold-start policy.

    ``cold_start``: ``"drop"`` test/valid rows whose user or item has no training row
    (counted in ``info``), ``"keep"`` them (the id maps then cover every id; such users
    and items have no training rows), or ``"raise"`` a DataError naming them.
    """
    if cold_start not in ("drop", "keep", "raise"):
        raise DataError(f"cold_start must be 'drop', 'keep' or 'raise'; got {cold_start!r}")
    train_df = df[train_mask]
    if len(train_df) == 0:
        raise DataError("the split left the training set empty; lower test_size or add data")
    if cold_start == "raise":
        held = df[~train_mask]
        for col in ("user", "item"):
            unseen = np.setdiff1d(
                pd.unique(held[col].to_numpy()), pd.unique(train_df[col].to_numpy())
            )
            if len(unseen):
                raise DataError(
                    f"the split leaves {len(unseen)} {col}(s) with no training interaction "
                    f"(e.g. {unseen[:5].tolist()}); pass cold_start='drop' to drop their "
                    "test/validation rows, cold_start='keep' to keep them, or filter the data "
                    "first (mfjax.data.k_core)"
                )
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
    if valid is None:
        info["valid_cold_dropped"] = 0
    if len(test) == 0:
        raise DataError(
            "the split left the test set empty"
            + (
                f" after dropping {info['test_cold_dropped']} cold-start row(s)"
                if info["test_cold_dropped"]
                else ""
            )
            + "; raise test_size, add data, or pass cold_start='keep'"
        )
    info.update(
        n_input=len(df),
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
            row (counted in ``info``); ``'keep'`` keeps them (id maps then cover them);
            ``'raise'`` raises a DataError naming them.

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
    df = _check_input(df)
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
    return _encode_parts(df, train_mask, test_mask, valid_mask, cold_start=cold_start, info=info)


def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, dtype=np.float64) + 0.5).astype(np.int64)


def _rank_within_user(users: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each row among its user's rows by ascending ``key``, and the user's count."""
    order = np.lexsort((key, users))
    su = users[order]
    n = len(users)
    starts = np.concatenate([[0], np.flatnonzero(su[1:] != su[:-1]) + 1])
    counts = np.diff(np.concatenate([starts, [n]]))
    rank_sorted = np.arange(n) - np.repeat(starts, counts)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = rank_sorted
    cnt = np.empty(n, dtype=np.int64)
    cnt[order] = np.repeat(counts, counts)
    return rank, cnt


def _check_count(name: str, value: int | None, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    if not isinstance(value, (int, np.integer)) or value < (0 if allow_zero else 1):
        lo = 0 if allow_zero else 1
        raise DataError(f"{name} must be an integer >= {lo}; got {value!r}")


def per_user_split(
    df: pd.DataFrame,
    test_size: float = 0.2,
    *,
    n_test: int | None = None,
    valid_size: float = 0.0,
    n_valid: int | None = None,
    min_train: int = 1,
    seed: int = 0,
    cold_start: str = "drop",
) -> Split:
    """Per-user random holdout: each user keeps a fraction (or a fixed count) in test.

    Each user's rows are shuffled with ``seed``; the first ``round(test_size * n_u)`` (or
    ``n_test``) go to test, at most ``n_u - min_train`` so that every user keeps
    ``min_train`` training rows (users with too few rows stay entirely in training). The
    validation part is carved from each user's remaining rows the same way
    (``valid_size`` of them, or ``n_valid``). Users are therefore never cold; items can be
    (``cold_start`` policy as in :func:`random_split`).

    Example:
        >>> df = pd.DataFrame({"user": [1] * 5 + [2] * 5, "item": list(range(5)) * 2,
        ...                    "rating": [4.0] * 10})
        >>> s = per_user_split(df, n_test=2, seed=0, cold_start="keep")
        >>> s.test.user_counts().tolist()
        [2, 2]
    """
    if n_test is None:
        _check_fraction("test_size", test_size)
    _check_count("n_test", n_test)
    _check_fraction("valid_size", valid_size, allow_zero=True)
    _check_count("n_valid", n_valid, allow_zero=True)
    _check_count("min_train", min_train)
    df = _check_input(df)
    rng = np.random.default_rng(seed)
    users = pd.factorize(df["user"])[0]
    rank, cnt = _rank_within_user(users, rng.random(len(df)))
    want = np.full(len(df), n_test) if n_test is not None else _round_half_up(test_size * cnt)
    t = np.clip(want, 0, np.maximum(cnt - min_train, 0))
    test_mask = rank < t
    valid_mask = None
    rest = cnt - t
    if n_valid or valid_size > 0:
        want_v = (
            np.full(len(df), n_valid) if n_valid is not None else _round_half_up(valid_size * rest)
        )
        v = np.clip(want_v, 0, np.maximum(rest - min_train, 0))
        valid_mask = (rank >= t) & (rank < t + v)
    train_mask = ~test_mask if valid_mask is None else ~test_mask & ~valid_mask
    info = {
        "method": "per_user",
        "seed": seed,
        "test_size": test_size if n_test is None else None,
        "n_test_per_user": n_test,
        "valid_size": valid_size if n_valid is None else None,
        "n_valid_per_user": n_valid,
        "min_train": min_train,
    }
    return _encode_parts(df, train_mask, test_mask, valid_mask, cold_start=cold_start, info=info)


def _as_seconds(cutoff: object, name: str) -> int:
    if isinstance(cutoff, (int, np.integer)):
        return int(cutoff)
    if isinstance(cutoff, float) and np.isfinite(cutoff):
        return int(np.floor(cutoff))
    try:
        ts = pd.Timestamp(cutoff)
    except (TypeError, ValueError) as e:
        raise DataError(
            f"{name} must be seconds since 1970 or a date ('2018-01-01'); got {cutoff!r}"
        ) from e
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return int(ts.timestamp())


def _time_cut(ts: np.ndarray, fraction: float) -> int:
    """The latest time such that about ``fraction`` of ``ts`` lies strictly after it."""
    s = np.sort(ts)
    k = len(s) - int(_round_half_up(len(s) * fraction))
    k = min(max(k, 1), len(s))
    return int(s[k - 1])


def temporal_split(
    df: pd.DataFrame,
    test_size: float = 0.2,
    *,
    cutoff: object = None,
    valid_size: float = 0.0,
    valid_cutoff: object = None,
    seed: int = 0,
    cold_start: str = "drop",
) -> Split:
    """Global temporal split: interactions after the cut-off time are the test set.

    The cut-off is ``cutoff`` (int seconds or a date string, UTC) or, when None, the time
    that leaves the latest ``test_size`` of the rows after it. Rows at exactly the
    cut-off stay in training, so **no training (or validation) interaction is later than
    the cut-off**. The validation part is carved from training the same way, with its own
    cut-off (``valid_cutoff`` or ``valid_size`` of the training rows). ``seed`` is recorded
    only (the split is deterministic). ``info`` holds the cut-offs in seconds.

    Example:
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2],
        ...                    "rating": [5.0, 3, 4, 2], "timestamp": [10, 20, 30, 40]})
        >>> s = temporal_split(df, 0.25, cold_start="keep")
        >>> s.info["cutoff"], s.test.timestamps.tolist()
        (30, [40])
    """
    df = _check_input(df, need_time=True, method="temporal_split")
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    if cutoff is None:
        _check_fraction("test_size", test_size)
        cut = _time_cut(ts, test_size)
    else:
        cut = _as_seconds(cutoff, "cutoff")
    test_mask = ts > cut
    if test_mask.all():
        raise DataError(
            f"cutoff {cut} is before every interaction; the training set would be empty"
        )
    valid_mask = None
    vcut = None
    if valid_cutoff is not None or valid_size > 0:
        tr = ~test_mask
        if valid_cutoff is None:
            _check_fraction("valid_size", valid_size)
            vcut = _time_cut(ts[tr], valid_size)
        else:
            vcut = _as_seconds(valid_cutoff, "valid_cutoff")
            if vcut > cut:
                raise DataError(f"valid_cutoff ({vcut}) must not be later than cutoff ({cut})")
        valid_mask = tr & (ts > vcut)
    train_mask = ~test_mask if valid_mask is None else ~test_mask & ~valid_mask
    info = {
        "method": "temporal",
        "seed": seed,
        "test_size": test_size if cutoff is None else None,
        "cutoff": cut,
        "valid_size": valid_size if valid_cutoff is None else None,
        "valid_cutoff": vcut,
    }
    return _encode_parts(df, train_mask, test_mask, valid_mask, cold_start=cold_start, info=info)


def leave_last_n(
    df: pd.DataFrame,
    n: int = 1,
    *,
    valid_n: int = 0,
    min_train: int = 1,
    seed: int = 0,
    cold_start: str = "drop",
) -> Split:
    """Per-user leave-last-n: each user's ``n`` latest interactions are the test set.

    The ``valid_n`` interactions before those are the validation set. Every user keeps at
    least ``min_train`` training rows (users with fewer rows give fewer, or none, to
    test). Ties in time are broken at random with ``seed``. For every user, no training
    interaction is later than that user's test interactions.

    Example:
        >>> df = pd.DataFrame({"user": [1, 1, 1], "item": [1, 2, 3],
        ...                    "rating": [5.0, 3, 4], "timestamp": [30, 10, 20]})
        >>> leave_last_n(df, 1, cold_start="keep").test.to_frame().item.tolist()
        [1]
    """
    _check_count("n", n)
    _check_count("valid_n", valid_n, allow_zero=True)
    _check_count("min_train", min_train)
    df = _check_input(df, need_time=True, method="leave_last_n")
    rng = np.random.default_rng(seed)
    users = pd.factorize(df["user"])[0]
    ts = df["timestamp"].to_numpy(dtype=np.int64)
    # latest first: rank 0 is the latest; random tie-break
    tie = rng.random(len(df))
    order = np.lexsort((tie, -ts, users))
    su = users[order]
    starts = np.concatenate([[0], np.flatnonzero(su[1:] != su[:-1]) + 1])
    counts = np.diff(np.concatenate([starts, [len(df)]]))
    rank = np.empty(len(df), dtype=np.int64)
    rank[order] = np.arange(len(df)) - np.repeat(starts, counts)
    cnt = np.empty(len(df), dtype=np.int64)
    cnt[order] = np.repeat(counts, counts)
    t = np.clip(n, 0, np.maximum(cnt - min_train, 0))
    test_mask = rank < t
    valid_mask = None
    if valid_n:
        v = np.clip(valid_n, 0, np.maximum(cnt - t - min_train, 0))
        valid_mask = (rank >= t) & (rank < t + v)
    train_mask = ~test_mask if valid_mask is None else ~test_mask & ~valid_mask
    info = {
        "method": "leave_last_n",
        "seed": seed,
        "n": n,
        "valid_n": valid_n,
        "min_train": min_train,
    }
    return _encode_parts(df, train_mask, test_mask, valid_mask, cold_start=cold_start, info=info)


#: split functions by name, for :func:`split` and the pipeline's ``split_method``
SPLIT_METHODS = {
    "random": random_split,
    "per_user": per_user_split,
    "temporal": temporal_split,
    "leave_last_n": leave_last_n,
}
_ALIASES = {"per-user": "per_user", "user": "per_user", "time": "temporal",
            "leave-last-n": "leave_last_n", "leave_last": "leave_last_n", "loo": "leave_last_n"}  # fmt: skip


def split(df: pd.DataFrame, method: str = "random", **options: object) -> Split:
    """Split by method name: ``"random"``, ``"per_user"``, ``"temporal"`` or ``"leave_last_n"``.

    Options go to the function of that name (:func:`random_split`, :func:`per_user_split`,
    :func:`temporal_split`, :func:`leave_last_n`). So that one set of pipeline parameters
    works for every method, ``leave_last_n`` ignores ``test_size`` (it holds out ``n``
    interactions per user, default 1) and reads ``valid_size > 0`` as ``valid_n=1``.

    Example:
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2],
        ...                    "rating": [5.0, 3, 4, 2], "timestamp": [1, 2, 3, 4]})
        >>> split(df, "leave_last_n", test_size=0.2, cold_start="keep").info["n_test"]
        2
    """
    name = _ALIASES.get(method, method)
    if name not in SPLIT_METHODS:
        raise DataError(f"unknown split method {method!r}; choose one of {sorted(SPLIT_METHODS)}")
    if name == "leave_last_n":
        options.pop("test_size", None)
        vs = options.pop("valid_size", None)
        if vs and "valid_n" not in options:
            options["valid_n"] = 1
    return SPLIT_METHODS[name](df, **options)

"""Datasets: the built-in synthetic generator and the named public datasets.

* :func:`synthetic` draws a realistic raw frame (long-tail item popularity, skewed user
  activity, low-rank tastes plus biases, integer ratings 1-5, timestamps) from a seed, with
  no network. It is the default dataset of the tests, the notebooks and ``make report``.
* :func:`load_dataset` loads a named set (``ml-100k``, ``ml-1m``, ``ml-10m``, ``ml-20m``,
  ``ml-25m``, ``ml-latest-small``, ``movietweetings-100k``) from ``$MFJAX_DATA_DIR/<name>/``
  or ``data/raw/<name>/``, and otherwise downloads the official files, verifies their
  checksum and unpacks them into ``data/raw/<name>/``. Offline and absent, it raises a
  :class:`~mfjax.exceptions.DataError` that says which file to put where.
* :func:`load_item_metadata` gives ``item, title[, genres]`` for the sets that have it.
* :func:`load_interactions` (the same function as :func:`mfjax.data.load_interactions`)
  dispatches ``"synthetic"``, a dataset name, or a file path.

Checksums: SHA-256 and sizes of the GroupLens archives are those published in TensorFlow
Datasets' ``url_checksums/movielens.txt`` (ml-100k, ml-1m, ml-20m, ml-25m,
ml-latest-small). GroupLens publishes no SHA-256 for ``ml-10m.zip``; its download is
accepted unverified with a warning (pass ``verify=False`` to silence it) and the SHA-256
it had is written beside it. MovieTweetings' 100K snapshot is fetched file by file from the
project's GitHub repository; the SHA-256 values are those of the snapshot's files
(``ratings.dat``, ``movies.dat``) as checked out from that repository. ``ml-latest-small``
is refreshed by GroupLens from time to time: a mismatch there says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mfjax._io_utils import atomic_path
from mfjax.data import load_interactions, read_interactions
from mfjax.exceptions import DataError

__all__ = [
    "DATASETS",
    "SYNTHETIC_PRESETS",
    "DatasetSpec",
    "dataset_path",
    "load_dataset",
    "load_interactions",
    "load_item_metadata",
    "synthetic",
]

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------
# synthetic data
# --------------------------------------------------------------------------------------

#: Named sizes for :func:`synthetic`. ``"default"`` trains and evaluates in seconds;
#: ``"benchmark"`` is the shape of MovieLens 1M (1 M distinct pairs over 6,040 x 3,706).
SYNTHETIC_PRESETS: dict[str, dict[str, int]] = {
    "default": {"n_users": 1000, "n_items": 600, "n_ratings": 50_000},
    "benchmark": {"n_users": 6040, "n_items": 3706, "n_ratings": 1_000_000},
    "ml-1m": {"n_users": 6040, "n_items": 3706, "n_ratings": 1_000_000},
    "small": {"n_users": 200, "n_items": 120, "n_ratings": 4_000},
}

_T0 = 1_500_000_000  # 2017-07-14, start of the synthetic time span
_SPAN = 3 * 365 * 86_400  # three years of seconds


def _allocate(total: int, weights: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Integer counts in ``[lo, hi]`` proportional to ``weights`` that sum to ``total``."""
    n = len(weights)
    counts = np.full(n, lo, dtype=np.int64)
    rest = total - lo * n
    free = counts < hi
    while rest > 0:  # water-filling: capped entries give their share to the others
        w = np.where(free, weights, 0.0)
        share = w / w.sum() * rest
        want = np.floor(share).astype(np.int64)
        capped = free & (want >= hi - counts)
        if capped.any():
            counts[capped] = hi
            rest = total - int(counts.sum())
            free &= counts < hi
            continue
        counts += want
        rest -= int(want.sum())
        # the remainder goes one by one to the largest fractional parts
        frac = np.where(free, share - want, -1.0)
        top = np.argsort(-frac, kind="stable")[:rest]
        counts[top] += 1
        rest = 0
    return counts


@dataclass(frozen=True)
class _Popularity:
    """Item popularity: a power law over popularity ranks, mixed with ``uniform`` weight.

    The power law is the continuous density ``x^-a`` on ``[1, K + 1)`` binned to ranks
    ``floor(x)``, so that ``prob`` is exact and drawing is a closed-form inverse CDF (no
    search over a cumulative table).
    """

    rank_items: np.ndarray  # item at each popularity rank (rank 1 first)
    a: float
    uniform: float = 0.05

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        k1 = len(self.rank_items) + 1.0
        if abs(self.a - 1.0) < 1e-9:
            return np.log(x) / np.log(k1)
        return (x ** (1.0 - self.a) - 1.0) / (k1 ** (1.0 - self.a) - 1.0)

    @property
    def prob(self) -> np.ndarray:
        """Probability of each item id."""
        k = len(self.rank_items)
        r = np.arange(1.0, k + 1.0)
        by_rank = (1 - self.uniform) * (self._cdf(r + 1) - self._cdf(r)) + self.uniform / k
        out = np.empty(k)
        out[self.rank_items] = by_rank
        return out

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        k = len(self.rank_items)
        v = rng.random(size)
        u = (v - self.uniform) / (1 - self.uniform)  # < 0: the uniform part
        k1 = k + 1.0
        if abs(self.a - 1.0) < 1e-9:
            x = k1 ** np.maximum(u, 0.0)
        else:
            b = 1.0 - self.a
            x = (1.0 + np.maximum(u, 0.0) * (k1**b - 1.0)) ** (1.0 / b)
        rank = np.minimum(x.astype(np.int64), k) - 1
        uni = np.minimum((v / self.uniform * k).astype(np.int64), k - 1)
        return np.where(u < 0, uni, self.rank_items[rank]).astype(np.int32)


def _duplicate_rows(keys: np.ndarray, pinned: np.ndarray) -> np.ndarray:
    """Mask of rows whose key already occurs in an earlier (or pinned) row."""
    order = np.argsort(keys * 2 + ~pinned, kind="stable")  # pinned rows first among equals
    sk = keys[order]
    dup_sorted = np.empty(len(keys), dtype=bool)
    if len(keys):
        dup_sorted[0] = False
        dup_sorted[1:] = sk[1:] == sk[:-1]
    dup = np.empty(len(keys), dtype=bool)
    dup[order] = dup_sorted
    return dup


def _gumbel_fill(
    rng: np.random.Generator,
    logp: np.ndarray,
    taken: np.ndarray,
    need: np.ndarray,
) -> np.ndarray:
    """Weighted sampling without replacement (Gumbel top-k), one row per user.

    ``taken`` (users x items) marks items a user already has; ``need[r]`` new items are
    drawn for row ``r``. Returns the new items as a ragged concatenation in row order.
    """
    g = logp[None, :] - np.log(-np.log(rng.random(taken.shape)))
    g[taken] = -np.inf
    order = np.argsort(-g, axis=1, kind="stable")
    cols = np.arange(taken.shape[1])[None, :]
    return order[cols < need[:, None]].astype(np.int32)


def _distinct_pairs(
    rng: np.random.Generator,
    deg: np.ndarray,
    popularity: _Popularity,
    *,
    max_rounds: int = 8,
    dense_budget: int = 1 << 23,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``deg[u]`` distinct items per user, items by popularity ``pop``.

    Heavy users (more than an eighth of the items) are drawn exactly with a Gumbel top-k
    over all items. For the others, items are drawn with replacement by popularity, and
    only the rows that repeat a (user, item) pair are redrawn (checked against the sorted
    accepted pairs), by popularity for ``max_rounds`` rounds and uniformly after that.
    One row per item is pinned first (among the light users' rows), so that each item id
    has at least one interaction. No per-row Python.
    """
    pop = popularity.prob
    n_users, n_items = len(deg), len(pop)
    n = int(deg.sum())
    logp = np.log(pop)
    starts = np.concatenate([[0], np.cumsum(deg)]).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int32), deg)

    def rows_of(us: np.ndarray) -> np.ndarray:
        lens = deg[us]
        return np.repeat(starts[us], lens) + (
            np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
        )

    def dense_fill(us: np.ndarray, keep: np.ndarray) -> None:
        """Give users ``us`` new items for their rows not marked in ``keep``."""
        chunk = max(1, dense_budget // n_items)
        for c in range(0, len(us), chunk):
            bu = us[c : c + chunk]
            rows = rows_of(bu)
            local = np.repeat(np.arange(len(bu)), deg[bu])
            kept = keep[rows]
            taken = np.zeros((len(bu), n_items), dtype=bool)
            taken[local[kept], items[rows[kept]]] = True
            need = np.bincount(local[~kept], minlength=len(bu))
            # rows to refill are grouped by user (rows_of is ordered), like the ragged output
            items[rows[~kept]] = _gumbel_fill(rng, logp, taken, need)

    items = np.zeros(n, dtype=np.int32)
    heavy = deg > max(n_items // 8, 1)
    light_users = np.flatnonzero(~heavy)
    rows = rows_of(light_users) if heavy.any() else np.arange(n)
    items[rows] = popularity.draw(rng, len(rows))
    pinned = np.zeros(n, dtype=bool)
    if len(rows) >= n_items:
        pin = rng.choice(rows, size=n_items, replace=False)
        items[pin] = rng.permutation(n_items).astype(np.int32)
        pinned[pin] = True
    if len(rows):
        keys = users[rows].astype(np.int64) * n_items + items[rows]
        dup = _duplicate_rows(keys, pinned[rows])
        accepted = np.sort(keys[~dup])
        redo = rows[dup]
        added = np.empty(0, dtype=np.int64)
        rounds = 0
        while len(redo):
            # redraw only the repeated rows; by popularity first, then uniformly (a light
            # user has at most an eighth of the items, so uniform draws collide rarely)
            if rounds < max_rounds:
                cand = popularity.draw(rng, len(redo))
            else:
                cand = rng.integers(0, n_items, len(redo), dtype=np.int32)
            ck = users[redo].astype(np.int64) * n_items + cand
            pos = np.minimum(np.searchsorted(accepted, ck), len(accepted) - 1)
            conflict = accepted[pos] == ck
            if len(added):
                pos = np.minimum(np.searchsorted(added, ck), len(added) - 1)
                conflict |= added[pos] == ck
            conflict |= _duplicate_rows(ck, np.zeros(len(ck), dtype=bool))
            ok = ~conflict
            items[redo[ok]] = cand[ok]
            added = np.sort(np.concatenate([added, ck[ok]]))
            redo = redo[conflict]
            rounds += 1
            if rounds > max_rounds + 500:  # pragma: no cover - probability ~ 8^-500
                raise AssertionError("distinct pair sampling did not converge")
    heavy_users = np.flatnonzero(heavy)
    if len(heavy_users):
        dense_fill(heavy_users, np.zeros(n, dtype=bool))
    return users, items


def synthetic(
    n_users: int | None = None,
    n_items: int | None = None,
    n_ratings: int | None = None,
    *,
    rank: int = 8,
    seed: int = 0,
    preset: str = "default",
    popularity_exponent: float = 0.9,
    activity_sigma: float = 1.0,
    min_user_ratings: int = 5,
    noise: float = 0.45,
    taste_scale: float = 0.9,
    user_bias_scale: float = 0.35,
    item_bias_scale: float = 0.45,
    mean_rating: float = 3.55,
    return_truth: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Draw a synthetic explicit-ratings frame with a known low-rank structure.

    Each user rates ``deg_u`` distinct items, with ``deg_u`` log-normal (``activity_sigma``)
    and at least ``min_user_ratings``; items are chosen with Zipf-like popularity
    (about ``1 / rank^popularity_exponent``) mixed with 5 % uniform (every item gets at least one
    rating when ``n_ratings >= n_items``). The rating is
    ``round(mean + b_u + b_i + taste_scale * <p_u, q_i> + noise * eps)`` clipped to 1..5,
    with ``p_u, q_i ~ N(0, I / sqrt(rank))`` (so the dot product has unit variance); popular items get slightly higher biases, as in real
    data. Timestamps are int64 seconds within three years from 2017-07-14; each user is
    active from a random start onward.

    Args:
        n_users, n_items, n_ratings: size; unspecified ones come from ``preset``.
        rank: dimension of the planted tastes.
        seed: the seed; the same seed gives the same frame.
        preset: a key of :data:`SYNTHETIC_PRESETS` (``"default"``: 1,000 x 600, 50 k
            ratings; ``"benchmark"``: 6,040 x 3,706, 1 M ratings).
        return_truth: also return the planted ``user_factors``, ``item_factors``,
            ``user_bias``, ``item_bias``, ``mean`` (rows follow ids ``1..n``).

    Returns:
        Frame ``user, item, rating, timestamp`` (int32, int32, float32, int64) with
        distinct (user, item) pairs, ids ``1..n_users`` and ``1..n_items``, sorted by user
        then item.

    Example:
        >>> df = synthetic(50, 30, 400, seed=1)
        >>> len(df), bool(df.duplicated(["user", "item"]).any()), df.rating.min().item()
        (400, False, 1.0)
    """
    if preset not in SYNTHETIC_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(SYNTHETIC_PRESETS)}")
    p = SYNTHETIC_PRESETS[preset]
    n_users = p["n_users"] if n_users is None else int(n_users)
    n_items = p["n_items"] if n_items is None else int(n_items)
    n_ratings = p["n_ratings"] if n_ratings is None else int(n_ratings)
    for name, v in (("n_users", n_users), ("n_items", n_items), ("n_ratings", n_ratings)):
        if v < 1:
            raise ValueError(f"{name} must be >= 1; got {v}")
    if rank < 1:
        raise ValueError(f"rank must be >= 1; got {rank}")
    if n_ratings > n_users * n_items:
        raise ValueError(
            f"n_ratings={n_ratings} exceeds n_users * n_items = {n_users * n_items} distinct "
            "pairs; lower n_ratings or raise n_users / n_items"
        )
    rng = np.random.default_rng(seed)
    lo = int(min(max(min_user_ratings, 1), n_ratings // n_users, n_items))
    lo = max(lo, 1) if n_ratings >= n_users else 0
    activity = rng.lognormal(0.0, activity_sigma, n_users)
    # the most active user rates at most half the items (unless the data are denser)
    hi = min(n_items, max(-(-n_items // 2), -(-3 * n_ratings // (2 * n_users))))
    deg = _allocate(n_ratings, activity, lo, hi)
    # popularity: Zipf over a random order of the item ids, plus 5 % uniform
    popularity = _Popularity(rng.permutation(n_items), float(popularity_exponent))
    pop = popularity.prob
    u, i = _distinct_pairs(rng, deg, popularity)

    # tastes and biases
    sd = rank**-0.25  # <p_u, q_i> then has unit variance
    user_f = rng.normal(0.0, sd, (n_users, rank)).astype(np.float32)
    item_f = rng.normal(0.0, sd, (n_items, rank)).astype(np.float32)
    b_u = rng.normal(0.0, user_bias_scale, n_users).astype(np.float32)
    logp = np.log(pop)
    z = (logp - logp.mean()) / (logp.std() + 1e-12)
    b_i = (0.25 * z + rng.normal(0.0, item_bias_scale, n_items)).astype(np.float32)

    n = len(u)
    rating = np.empty(n, dtype=np.float32)
    chunk = 1 << 21
    for s in range(0, n, chunk):
        uu, ii = u[s : s + chunk], i[s : s + chunk]
        dot = np.einsum("nk,nk->n", user_f[uu], item_f[ii])
        r = mean_rating + b_u[uu] + b_i[ii] + taste_scale * dot
        r += noise * rng.standard_normal(len(uu), dtype=np.float32)
        rating[s : s + chunk] = np.clip(np.rint(r), 1.0, 5.0)

    start = rng.uniform(0.0, 0.8 * _SPAN, n_users)
    frac = rng.random(n) ** 0.7
    ts = (_T0 + start[u] + frac * (_SPAN - start[u])).astype(np.int64)

    df = pd.DataFrame(
        {
            "user": (u + 1).astype(np.int32),
            "item": (i + 1).astype(np.int32),
            "rating": rating,
            "timestamp": ts,
        }
    )
    order = np.argsort(u.astype(np.int64) * n_items + i, kind="stable")
    df = df.iloc[order].reset_index(drop=True)
    df.attrs["source"] = f"synthetic(seed={seed}, {n_users}x{n_items}, {n_ratings})"
    if return_truth:
        truth = {
            "user_factors": user_f,
            "item_factors": item_f * np.float32(taste_scale),
            "user_bias": b_u,
            "item_bias": b_i,
            "mean": np.float32(mean_rating),
        }
        return df, truth
    return df


# --------------------------------------------------------------------------------------
# named datasets
# --------------------------------------------------------------------------------------

_GL = "https://files.grouplens.org/datasets/movielens/"
_MT = "https://raw.githubusercontent.com/sidooms/MovieTweetings/master/snapshots/100K/"


@dataclass(frozen=True)
class DatasetSpec:
    """Where a named dataset comes from and how its files are read.

    Attributes:
        name: the dataset's name (``ml-100k``).
        ratings: file name of the interactions inside ``<dir>/<name>/``.
        sep, header, names: how to read it (``names`` in file order).
        url: the official zip archive (``archive_dir`` is its top folder), or None when
            the files are fetched one by one from ``file_urls``.
        sha256, size: of the archive, when published (None: not verifiable offline).
        file_urls, file_sha256: per-file downloads and their SHA-256.
        items, items_sep, items_encoding, items_names: item metadata file and format.
        counts: published (ratings, users, items), checked by the tests.
    """

    name: str
    ratings: str
    sep: str
    header: bool
    names: tuple[str, ...]
    url: str | None = None
    archive_dir: str | None = None
    sha256: str | None = None
    size: int | None = None
    file_urls: dict[str, str] = field(default_factory=dict)
    file_sha256: dict[str, str] = field(default_factory=dict)
    items: str | None = None
    items_sep: str = ","
    items_encoding: str = "utf-8"
    items_names: tuple[str, ...] = ("item", "title", "genres")
    counts: tuple[int, int, int] | None = None


_ML_DAT = ("user", "item", "rating", "timestamp")
_ML_CSV = ("userId", "movieId", "rating", "timestamp")

DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec(
        "ml-100k", "u.data", "\t", False, _ML_DAT,
        url=_GL + "ml-100k.zip", archive_dir="ml-100k", size=4924029,
        sha256="50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        items="u.item", items_sep="|", items_encoding="latin-1",
        items_names=("item", "title"), counts=(100_000, 943, 1682),
    ),
    "ml-1m": DatasetSpec(
        "ml-1m", "ratings.dat", "::", False, _ML_DAT,
        url=_GL + "ml-1m.zip", archive_dir="ml-1m", size=5917549,
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        items="movies.dat", items_sep="::", items_encoding="latin-1",
        counts=(1_000_209, 6040, 3706),
    ),
    "ml-10m": DatasetSpec(
        "ml-10m", "ratings.dat", "::", False, _ML_DAT,
        url=_GL + "ml-10m.zip", archive_dir="ml-10M100K",
        items="movies.dat", items_sep="::", counts=(10_000_054, 69_878, 10_677),
    ),
    "ml-20m": DatasetSpec(
        "ml-20m", "ratings.csv", ",", True, _ML_CSV,
        url=_GL + "ml-20m.zip", archive_dir="ml-20m", size=198702078,
        sha256="96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
        items="movies.csv", counts=(20_000_263, 138_493, 26_744),
    ),
    "ml-25m": DatasetSpec(
        "ml-25m", "ratings.csv", ",", True, _ML_CSV,
        url=_GL + "ml-25m.zip", archive_dir="ml-25m", size=261978986,
        sha256="8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
        items="movies.csv", counts=(25_000_095, 162_541, 59_047),
    ),
    "ml-latest-small": DatasetSpec(
        "ml-latest-small", "ratings.csv", ",", True, _ML_CSV,
        url=_GL + "ml-latest-small.zip", archive_dir="ml-latest-small", size=978202,
        sha256="696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436",
        items="movies.csv", counts=(100_836, 610, 9724),
    ),
    "movietweetings-100k": DatasetSpec(
        "movietweetings-100k", "ratings.dat", "::", False, _ML_DAT,
        file_urls={"ratings.dat": _MT + "ratings.dat", "movies.dat": _MT + "movies.dat"},
        file_sha256={
            "ratings.dat": "c0dd868c2632d10002ebc928ddc5345f33adeaa59eca52c2941c26a2c5e36fd6",
            "movies.dat": "e63fb84bc734e3c574f135634a40d3cbafab22b8f94f5fc0b80f80d1d2076efc",
        },
        items="movies.dat", items_sep="::", counts=(100_000, 16_554, 10_506),
    ),
}  # fmt: skip


def _search_dirs(name: str) -> list[Path]:
    dirs = []
    env = os.environ.get("MFJAX_DATA_DIR")
    if env:
        dirs.append(Path(env) / name)
    dirs.append(Path.cwd() / "data" / "raw" / name)
    dirs.append(PROJECT_ROOT / "data" / "raw" / name)
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def _spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; known names: {sorted(DATASETS)} and 'synthetic' "
            "(or pass a file path)"
        )
    return DATASETS[name]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fetch(url: str, dest: Path, sha256: str | None, *, what: str, timeout: float) -> None:
    """Download ``url`` to ``dest`` atomically; verify ``sha256`` when given."""
    h = hashlib.sha256()
    with atomic_path(dest, suffix=".part") as tmp:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
                for block in iter(lambda: r.read(1 << 20), b""):
                    h.update(block)
                    f.write(block)
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise _Offline(f"{url}: {e}") from e
        got = h.hexdigest()
        if sha256 is not None and got != sha256:
            raise DataError(
                f"checksum mismatch for {what} downloaded from {url}: SHA-256 {got}, "
                f"expected {sha256}. The download was discarded. Retry, or (if the publisher "
                "has updated the file) place a copy you trust yourself in the folder named below."
            )
    if sha256 is None:
        warnings.warn(
            f"{what} from {url} has no published SHA-256; it was not verified "
            f"(its SHA-256 is {got}, written to {dest.name}.sha256)",
            stacklevel=3,
        )
        (dest.parent / (dest.name + ".sha256")).write_text(f"{got}  {dest.name}\n")


class _Offline(Exception):
    pass


def _download(spec: DatasetSpec, target: Path, *, verify: bool, timeout: float) -> None:
    """Fetch ``spec`` into ``target`` (``data/raw/<name>/``): the archive, then its files."""
    target.mkdir(parents=True, exist_ok=True)
    if spec.url is not None:
        archive = target.parent / f"{spec.name}.zip"
        if not archive.exists() or (verify and spec.sha256 and _sha256(archive) != spec.sha256):
            _fetch(spec.url, archive, spec.sha256 if verify else None, what=archive.name,
                   timeout=timeout)  # fmt: skip
        wanted = {spec.ratings} | ({spec.items} if spec.items else set())
        try:
            with zipfile.ZipFile(archive) as z:
                for member in z.namelist():
                    base = member.rsplit("/", 1)[-1]
                    if base in wanted:
                        with z.open(member) as src, atomic_path(target / base) as tmp:
                            with open(tmp, "wb") as dst:
                                shutil.copyfileobj(src, dst)
        except zipfile.BadZipFile as e:
            raise DataError(
                f"{archive} is not a valid zip archive ({e}); delete it and retry"
            ) from e
    for fname, url in spec.file_urls.items():
        dest = target / fname
        if not dest.exists():
            sha = spec.file_sha256.get(fname) if verify else None
            _fetch(url, dest, sha, what=fname, timeout=timeout)


def dataset_path(
    name: str,
    *,
    file: str | None = None,
    download: bool = True,
    verify: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Path of a named dataset's file (the ratings by default), downloading it if needed.

    Looks in ``$MFJAX_DATA_DIR/<name>/``, then ``data/raw/<name>/`` under the current
    directory and under the project root. Otherwise downloads the official files into
    ``data/raw/<name>/`` of the project (checksum verified), unless ``download=False``.

    Raises:
        DataError: the file is absent and cannot be downloaded; the message says which
            file to put where.

    Example:
        >>> dataset_path("ml-100k", download=False).name  # doctest: +SKIP
        'u.data'
    """
    spec = _spec(name)
    fname = file or spec.ratings
    dirs = _search_dirs(name)
    for d in dirs:
        if (d / fname).is_file():
            return d / fname
    target = PROJECT_ROOT / "data" / "raw" / name
    source = spec.url or spec.file_urls.get(fname) or next(iter(spec.file_urls.values()), "")
    where = " or ".join(str(d / fname) for d in dirs)
    if download:
        try:
            _download(spec, target, verify=verify, timeout=timeout)
        except _Offline as e:
            raise DataError(
                f"dataset {name!r}: {fname} not found, and the download failed ({e}). "
                f"Put {fname} (from {source}) at {where}, or set MFJAX_DATA_DIR to a folder "
                f"that holds {name}/{fname}."
            ) from None
        if (target / fname).is_file():
            return target / fname
        raise DataError(f"the {name} download did not contain {fname}; put it at {where}")
    raise DataError(
        f"dataset {name!r}: {fname} not found (download=False). Put {fname} (from {source}) "
        f"at {where}, or set MFJAX_DATA_DIR to a folder that holds {name}/{fname}."
    )


def load_dataset(name: str, *, download: bool = True, verify: bool = True) -> pd.DataFrame:
    """Load a named dataset as a raw frame ``user, item, rating, timestamp``.

    Example:
        >>> df = load_dataset("ml-100k")  # doctest: +SKIP
        >>> len(df), df.user.nunique(), df.item.nunique()  # doctest: +SKIP
        (100000, 943, 1682)
    """
    spec = _spec(name)
    path = dataset_path(name, download=download, verify=verify)
    names = dict(zip(("user", "item", "rating", "timestamp"), spec.names, strict=True))
    if spec.header:
        df = read_interactions(path, sep=spec.sep, header=True, columns=names)
    else:
        df = read_interactions(path, sep=spec.sep, header=False)
    df.attrs["source"] = name
    return df


def load_item_metadata(
    name: str, *, download: bool = True, verify: bool = True
) -> pd.DataFrame | None:
    """Item titles (and genres where the set has them) of a named dataset.

    Returns:
        A frame ``item, title[, genres]`` (``genres`` as ``'Action|Comedy'``), with ``item``
        typed like the ratings' item ids, or None for sets without metadata
        (``synthetic``).

    Example:
        >>> meta = load_item_metadata("ml-100k")  # doctest: +SKIP
        >>> meta.loc[meta.item == 1, "title"].item()  # doctest: +SKIP
        'Toy Story (1995)'
    """
    if name == "synthetic":
        return None
    spec = _spec(name)
    if spec.items is None:
        return None
    path = dataset_path(name, file=spec.items, download=download, verify=verify)
    try:
        if spec.items_sep == "|":  # ml-100k u.item: id|title|date|video date|url|19 genre flags
            raw = pd.read_csv(path, sep="|", header=None, encoding=spec.items_encoding,
                              dtype=str, keep_default_na=False)  # fmt: skip
            genre_names = _ml100k_genres(path.parent)
            meta = pd.DataFrame({"item": raw[0].astype(np.int32), "title": raw[1]})
            if genre_names is not None and raw.shape[1] == 5 + len(genre_names):
                flags = raw.iloc[:, 5:].to_numpy() == "1"
                meta["genres"] = ["|".join(g for g, f in zip(genre_names, row, strict=True) if f)
                                  for row in flags]  # fmt: skip
        elif spec.items_sep == "::":
            text = path.read_text(encoding=spec.items_encoding, errors="replace")
            parts = pd.Series(text.splitlines()).str.split("::", n=2, expand=True)
            meta = pd.DataFrame({"item": parts[0].astype(np.int64), "title": parts[1]})
            if parts.shape[1] > 2:
                meta["genres"] = parts[2].fillna("")
        else:
            raw = pd.read_csv(path, encoding=spec.items_encoding)
            meta = raw.rename(columns={"movieId": "item"})[["item", "title", "genres"]]
    except (ValueError, KeyError, IndexError) as e:
        raise DataError(f"cannot read item metadata {path}: {e}; is it the original file?") from e
    if meta["item"].max() < 2**31:
        meta["item"] = meta["item"].astype(np.int32)
    return meta.reset_index(drop=True)


def _ml100k_genres(folder: Path) -> list[str] | None:
    f = folder / "u.genre"
    if not f.is_file():
        return None
    rows = [ln.split("|") for ln in f.read_text(encoding="latin-1").splitlines() if ln.strip()]
    rows.sort(key=lambda r: int(r[1]))
    return [r[0] for r in rows]

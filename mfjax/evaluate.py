"""Evaluate a model on a split: per-user metrics, means and bootstrap confidence intervals.

The protocol, the same for every model (ours and peers):

* ground truth is the **test** part; an item is relevant when its test rating is at least
  ``threshold`` (default 4.0). With ``threshold=None`` — or implicit data, whose test values
  are all 1 — every test interaction is relevant;
* each user's list is the top K over **all** items minus the user's training items (no
  sampled negatives);
* users with at least one relevant test item are evaluated; test users with none are
  excluded from every ranking mean and counted (``n_excluded``);
* rating metrics (RMSE, MAE) cover every test rating of rating models; the summary value is
  the pooled error over all test ratings, the per-user rows hold each user's own error;
* intervals are percentile bootstraps over users (1,000 resamples, seeded).

Models are reached through the model contract: ``score_function()`` (jitted full ranking
with :mod:`mfjax.topk`, AUC included) and ``predict_codes`` for rating models. The items
excluded are the split's training items of each user (the model's ``seen_`` when it was
fitted on the whole training part; also right for a model fitted on a subset of it, such
as the positive interactions only). Any other object with ``recommend(users, k,
exclude_seen=True)`` in raw ids takes a generic path with the same protocol, and so do
the peers of :mod:`mfjax.external` (``prefer_own_recommend``: their lists come from their
own code; their ``score_function`` serves the AUC only). AUC needs every item's score: it
is NaN on the generic path for objects without ``score_function``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import scipy.sparse as sp

from mfjax import metrics as M
from mfjax.exceptions import DataError
from mfjax.splits import Split
from mfjax.topk import (
    DEFAULT_MEMORY_BUDGET,
    _balanced_block,
    _iter_blocks,
    block_size_for,
)

__all__ = [
    "Evaluation",
    "evaluate",
    "bootstrap_ci",
    "relevance",
    "RANKING_METRICS",
    "DEFAULT_METRICS",
]

log = logging.getLogger(__name__)

#: metrics with a cut-off K (``name@K``)
RANKING_METRICS = (
    "precision",
    "recall",
    "map",
    "ndcg",
    "ndcg_graded",
    "hit_rate",
    "mrr",
    "coverage",
    "novelty",
    "popularity",
)
#: metrics without a cut-off
GLOBAL_METRICS = ("auc", "rmse", "mae")
DEFAULT_METRICS = (
    "precision",
    "recall",
    "map",
    "ndcg",
    "hit_rate",
    "mrr",
    "auc",
    "coverage",
    "novelty",
    "rmse",
    "mae",
)


@dataclass(frozen=True)
class Evaluation:
    """The result of :func:`evaluate`.

    Attributes:
        per_user: tidy frame, one row per user × metric × k: ``user`` (raw id),
            ``metric``, ``k`` (nullable int; NA for ``auc``, ``rmse``, ``mae``), ``value``.
            Catalogue coverage has no per-user value and no rows here.
        summary: one row per metric × k: ``metric, k, mean, ci_low, ci_high, n_users,
            n_excluded`` (``mean`` is the pooled error for ``rmse``/``mae``, the share of
            the catalogue for ``coverage``).
        info: ``n_users`` evaluated, ``n_excluded``, ``threshold``, ``path`` ("fast" or
            "generic"), ``seconds`` and the bootstrap settings.
        users: codes of the evaluated users (rows of ``recommended``).
        recommended: ``(n_users, max(k))`` item codes recommended to them, best first.
    """

    per_user: pd.DataFrame
    summary: pd.DataFrame
    info: dict = field(default_factory=dict)
    users: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    recommended: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))

    def value(self, metric: str, k: int | None = None) -> float:
        """The mean of one metric (``k=None`` for ``auc``, ``rmse``, ``mae``)."""
        row = self._row(metric, k)
        return float(row["mean"])

    def _row(self, metric: str, k: int | None) -> pd.Series:
        s = self.summary
        sel = s["metric"] == metric
        sel &= s["k"].isna() if k is None else (s["k"] == k)
        if not sel.any():
            have = sorted({_name(m, kk) for m, kk in zip(s["metric"], s["k"], strict=True)})
            raise KeyError(f"no {_name(metric, k)!r} in this evaluation; have {have}")
        return s[sel].iloc[0]

    def to_metrics_dict(self, k: int = 10) -> dict[str, Any]:
        """Flat ``metrics.json`` entries at one cut-off.

        Keys are ``"<metric>@<k>"`` (``"precision@10"``) or ``"auc"``, ``"rmse"``, ``"mae"``,
        each with ``"<name>_ci": [low, high]`` when the interval is defined, plus
        ``n_users``, ``n_excluded`` and ``eval_seconds``.

        Example:
            >>> # evaluate(model, split).to_metrics_dict(10)["ndcg@10_ci"] -> [0.21, 0.25]
        """
        out: dict[str, Any] = {}
        s = self.summary
        sel = s["k"].isna() | (s["k"] == k)
        for row in s[sel].itertuples(index=False):
            name = _name(row.metric, None if pd.isna(row.k) else int(row.k))
            out[name] = _float(row.mean)
            if np.isfinite(row.ci_low) and np.isfinite(row.ci_high):
                out[f"{name}_ci"] = [_float(row.ci_low), _float(row.ci_high)]
        out["n_users"] = int(self.info.get("n_users", 0))
        out["n_excluded"] = int(self.info.get("n_excluded", 0))
        out["eval_seconds"] = float(self.info.get("seconds", float("nan")))
        return out


def _float(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _name(metric: str, k: int | None) -> str:
    return metric if k is None or pd.isna(k) else f"{metric}@{int(k)}"


# ----------------------------------------------------------------------------- ground truth
def relevance(
    split: Split, *, threshold: float | None = 4.0
) -> tuple[sp.csr_matrix, sp.csr_matrix, float | None]:
    """Users × items matrices of the relevant test items: binary and graded gains.

    Relevant means test rating ``>= threshold``; the graded gain is
    ``rating - threshold + 1`` (1 for a rating at the threshold). When ``threshold`` is None,
    or the test values are all 1 (implicit data), every test interaction is relevant with
    gain 1, and the returned threshold is None. Duplicate (user, item) pairs keep the last.

    Returns:
        ``(binary, graded, threshold_used)``.
    """
    test = split.test
    vals = np.asarray(test.values, dtype=np.float64)
    if threshold is not None and len(vals) and np.all(vals == 1.0) and threshold > 1.0:
        log.info("test values are all 1 (implicit data): every test interaction is relevant")
        threshold = None
    shape = (split.n_users, split.n_items)
    if len(vals) == 0:
        empty = sp.csr_matrix(shape, dtype=np.float64)
        return empty, empty, threshold
    u, i, v = test.users, test.items, vals
    probe = sp.csr_matrix((np.ones(len(u), dtype=np.int8), (u, i)), shape=shape)
    if probe.nnz != len(u):  # duplicate pairs (rare): keep each pair's last row
        keys = u.astype(np.int64) * split.n_items + i
        _, last = np.unique(keys[::-1], return_index=True)
        idx = np.sort(len(keys) - 1 - last)
        u, i, v = u[idx], i[idx], v[idx]
    if threshold is None:
        keep = np.ones(len(v), dtype=bool)
        grade = np.ones(len(v))
    else:
        keep = v >= threshold
        grade = v - threshold + 1.0
    binary = sp.csr_matrix((np.ones(int(keep.sum())), (u[keep], i[keep])), shape=shape)
    graded = sp.csr_matrix((grade[keep], (u[keep], i[keep])), shape=shape)
    binary.sort_indices()
    graded.sort_indices()
    return binary, graded, threshold


# ----------------------------------------------------------------------------- bootstrap
def bootstrap_ci(
    values: np.ndarray,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap intervals of column means, resampling rows (users).

    One set of resamples serves every column, so intervals of different metrics are
    computed on the same resampled users. NaNs are left out of each mean.

    Args:
        values: ``(n_users, n_metrics)`` per-user values (or 1-d for one metric).
        n_boot: number of resamples.
        level: coverage of the interval (0.95 gives the 2.5th and 97.5th percentiles).
        seed: seeds the resampling; the same seed gives the same interval.
        weights: optional ``(n_users, n_metrics)`` weights: the statistic is then
            ``sum(w * v) / sum(w)`` (a pooled mean).

    Returns:
        ``(low, high)``, each of shape ``(n_metrics,)``.

    Example:
        >>> lo, hi = bootstrap_ci(np.arange(100.0), seed=0)
        >>> bool(lo[0] < 49.5 < hi[0])
        True
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive; got {n_boot}")
    n, m = v.shape
    if n == 0:
        return np.full(m, np.nan), np.full(m, np.nan)
    w = np.ones_like(v) if weights is None else np.asarray(weights, dtype=np.float64).reshape(n, m)
    w = np.where(np.isnan(v), 0.0, w)
    # float32 products: counts are small integers, and the sums feed percentiles only
    num_v = (np.nan_to_num(v) * w).astype(np.float32)
    w32 = w.astype(np.float32)
    rng = np.random.default_rng(seed)
    stats = np.empty((n_boot, m))
    chunk = max(1, min(n_boot, 1_200_000 // n))
    for start in range(0, n_boot, chunk):
        c = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(c, n), dtype=np.int64 if n * c >= 2**31 else np.int32)
        idx += (np.arange(c, dtype=idx.dtype) * n)[:, None]
        counts = np.bincount(idx.ravel(), minlength=c * n).reshape(c, n).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats[start : start + c] = (counts @ num_v) / (counts @ w32)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.full(m, np.nan), np.full(m, np.nan)
    some = ~np.all(np.isnan(stats), axis=0)  # an all-NaN column (no values) has no interval
    if some.any():
        lo[some] = np.nanquantile(stats[:, some], alpha, axis=0)
        hi[some] = np.nanquantile(stats[:, some], 1.0 - alpha, axis=0)
    return lo, hi


# ----------------------------------------------------------------------------- ranking paths
@partial(jax.jit, static_argnames=("score_fn", "k", "with_scores"))
def _rank_block(score_fn, params, users, mask, k, with_scores):
    """Top-k of one block; with ``with_scores`` also the masked scores (for AUC)."""
    scores = score_fn(params, users).astype(jnp.float32)
    scores = jnp.where(mask, -jnp.inf, scores)
    vals, idx = jax.lax.top_k(scores, k)
    return vals, idx, (scores if with_scores else None)


def _auc_rows(scores: np.ndarray, mask: np.ndarray, positives: sp.csr_matrix) -> np.ndarray:
    """Full-catalogue AUC of each row (Mann-Whitney with average ranks for ties).

    Candidates are the unmasked items; positives are the user's relevant items among them.
    ``AUC = (sum of the positives' average ranks - P(P+1)/2) / (P N)``, the average rank
    of a positive being ``#candidates below + (#candidates tied + 1) / 2``. XLA's CPU sort
    is slow, so rows are sorted with numpy; each row then needs one ``searchsorted`` for
    its positives' scores and their float successors (``nextafter``: the "right" side).
    """
    b, n_items = scores.shape
    n_masked = mask.sum(axis=1)
    ordered = np.sort(scores, axis=1)  # masked items (-inf) come first in each row
    counts = np.diff(positives.indptr)
    prow = np.repeat(np.arange(b), counts)
    pitem = positives.indices
    ok = ~mask[prow, pitem]
    prow, pitem = prow[ok], pitem[ok]
    ps = scores[prow, pitem]
    n_pos = np.bincount(prow, minlength=b)
    starts = np.concatenate([[0], np.cumsum(n_pos)])
    # per row: [its positives' scores, their successors], so one search answers both sides
    within = np.arange(len(ps)) - starts[prow]
    at_ps = 2 * starts[prow] + within
    at_up = at_ps + n_pos[prow]
    queries = np.empty(2 * len(ps), dtype=scores.dtype)
    queries[at_ps] = ps
    queries[at_up] = np.nextafter(ps, np.asarray(np.inf, dtype=scores.dtype))
    found = np.empty(2 * len(ps), dtype=np.int64)
    for r in np.flatnonzero(n_pos):
        lo, hi = 2 * starts[r], 2 * starts[r + 1]
        found[lo:hi] = np.searchsorted(ordered[r], queries[lo:hi])
    left, right = found[at_ps], found[at_up]
    ranks = (left - n_masked[prow]) + (right - left + 1) / 2.0
    rank_sum = np.bincount(prow, weights=ranks, minlength=b)
    n_pos = n_pos.astype(np.float64)
    n_neg = (n_items - n_masked) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _fast_rank(
    model: Any,
    users: np.ndarray,
    n_items: int,
    k: int,
    positives: sp.csr_matrix,
    exclude: sp.csr_matrix,
    *,
    with_auc: bool,
    memory_budget_bytes: int,
) -> tuple[np.ndarray, np.ndarray]:
    score_fn, params = model.score_function()
    n = len(users)
    rec = np.full((n, k), -1, dtype=np.int64)
    auc = np.full(n, np.nan)
    limit = block_size_for(n_items, memory_budget_bytes=memory_budget_bytes)
    bs = _balanced_block(n, limit)
    blocks = _iter_blocks(users.astype(np.int32), n_items, exclude, bs)
    pending = None
    for start, b, users_p, mask in blocks:
        out = _rank_block(score_fn, params, users_p, mask, k, with_auc)
        if pending is not None:  # collect the previous block while this one runs
            _collect(pending, rec, auc, positives, users)
        pending = (start, b, mask, out)
    if pending is not None:
        _collect(pending, rec, auc, positives, users)
    return rec, auc


def _collect(pending, rec, auc, positives, users) -> None:
    start, b, mask, (vals, idx, scores) = pending
    vals = np.asarray(vals)[:b]
    idx = np.asarray(idx)[:b].astype(np.int64)
    idx[~np.isfinite(vals)] = -1
    rec[start : start + b, : idx.shape[1]] = idx
    if scores is not None:
        block_pos = positives[users[start : start + b]]
        auc[start : start + b] = _auc_rows(np.asarray(scores)[:b], mask[:b], block_pos)


def _generic_rank(model: Any, split: Split, users: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Top-k through ``model.recommend`` in raw ids, under the protocol's exclusion.

    A peer excludes only what it was trained on (say, the positives); the protocol excludes
    every training item of the split. So the list is asked for ``k`` plus the largest number
    of training items among these users, the split's training items are filtered out, and the
    first ``k`` remain. Returns the codes and how many training items were filtered.
    """
    seen = split.train.csr(binary=True)[users]
    extra = int(np.diff(seen.indptr).max()) if len(users) else 0
    n_ask = int(min(k + extra, split.n_items))
    ids = split.user_map.ids(users)
    items, _ = model.recommend(ids, k=n_ask, exclude_seen=True)
    items = np.asarray(items)
    if items.ndim == 1:
        items = items.reshape(len(users), -1)
    codes = split.item_map.codes(items.ravel(), missing="ignore").reshape(items.shape)
    is_seen = M.gains_matrix(codes, seen) > 0
    filtered = int(is_seen.sum())
    codes = np.where(is_seen, -1, codes)
    order = np.argsort(codes < 0, axis=1, kind="stable")  # keep the order of the rest
    codes = np.take_along_axis(codes, order, axis=1)
    rec = np.full((len(users), k), -1, dtype=np.int64)
    rec[:, : min(k, codes.shape[1])] = codes[:, :k]
    if filtered:
        log.info(
            "%s returned %d training items of the split; filtered out by the protocol",
            type(model).__name__,
            filtered,
        )
    return rec, filtered


def _has_fast_path(model: Any, split: Split) -> bool:
    if not hasattr(model, "score_function"):
        return False
    um, im = getattr(model, "user_map_", None), getattr(model, "item_map_", None)
    if um is None or im is None:
        return False
    if len(um) != split.n_users or len(im) != split.n_items:
        raise DataError(
            f"{type(model).__name__} was fitted on {len(um)} users × {len(im)} items but the "
            f"split has {split.n_users} × {split.n_items}; fit the model on this split's train part"
        )
    if not (
        np.array_equal(um.values, split.user_map.values)
        and np.array_equal(im.values, split.item_map.values)
    ):
        raise DataError(
            f"{type(model).__name__}'s id maps differ from the split's; fit the model on this "
            "split's train part"
        )
    try:
        model.score_function()
    except NotImplementedError:
        return False
    return True


# ----------------------------------------------------------------------------- rating
def _rating_errors(model: Any, split: Split) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-test-rating predictions, or None when the model does not predict ratings."""
    test = split.test
    if len(test) == 0:
        return None
    if hasattr(model, "predict_codes") and getattr(model, "kind", "rating") == "rating":
        pred = model.predict_codes(test.users.astype(np.int64), test.items.astype(np.int64))
    elif hasattr(model, "predict") and getattr(model, "kind", None) == "rating":
        pred = model.predict(split.user_map.ids(test.users), split.item_map.ids(test.items))
    else:
        return None
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    return np.asarray(test.values, dtype=np.float64), pred


# ----------------------------------------------------------------------------- evaluate
def _check_args(k: Iterable[int] | int, metrics: Sequence[str] | None) -> tuple[tuple, tuple]:
    ks = (k,) if isinstance(k, (int, np.integer)) else tuple(k)
    if not ks or any(not isinstance(x, (int, np.integer)) or x < 1 for x in ks):
        raise ValueError(f"k must be a positive integer or a sequence of them; got {k!r}")
    ks = tuple(sorted({int(x) for x in ks}))
    mets = DEFAULT_METRICS if metrics is None else tuple(metrics)
    known = RANKING_METRICS + GLOBAL_METRICS
    bad = [m for m in mets if m not in known]
    if bad:
        raise ValueError(f"unknown metric(s) {bad}; choose from {list(known)}")
    return ks, mets


def evaluate(
    model: Any,
    split: Split,
    k: Iterable[int] | int = (5, 10, 20),
    metrics: Sequence[str] | None = None,
    *,
    threshold: float | None = 4.0,
    map_denominator: str = "min",
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    mesh: Any = None,
) -> Evaluation:
    """Evaluate a fitted model on a split's test part (see the module docstring's protocol).

    Args:
        model: a fitted mfjax model, or any object with ``recommend(users, k,
            exclude_seen=True)`` in raw ids (and ``predict`` with ``kind = "rating"``
            for rating metrics).
        split: the split the model was fitted on.
        k: cut-off(s) for the ranking metrics.
        metrics: names among :data:`RANKING_METRICS` and ``auc``, ``rmse``, ``mae``
            (default :data:`DEFAULT_METRICS`; rating metrics are skipped for ranking-only
            models, ``ndcg_graded`` and ``popularity`` are available on request).
        threshold: test rating at or above which an item is relevant; None makes every
            test interaction relevant.
        map_denominator: ``"min"`` (min(K, |R|), the default) or ``"all"`` (|R|), see
            :func:`mfjax.metrics.map_at_k`.
        n_boot, level, seed: bootstrap resamples, interval coverage and seed.
        memory_budget_bytes: per-block memory budget of the full ranking.
        mesh: optional ``jax.sharding.Mesh`` (:func:`mfjax.sharding.make_mesh`): the full
            ranking shards users over its data axis and items over its model axis and merges
            per-shard top-k (:func:`mfjax.sharding.top_k_sharded`); AUC, when asked for,
            still scores on one device.

    Returns:
        An :class:`Evaluation` with ``per_user``, ``summary`` and ``to_metrics_dict()``.

    Example:
        >>> # ev = evaluate(model, split, k=(10,))
        >>> # ev.summary[ev.summary.metric == "ndcg"]     # mean, ci_low, ci_high, n_users
        >>> # ev.to_metrics_dict(10)["ndcg@10"]
    """
    t0 = time.perf_counter()
    ks, mets = _check_args(k, metrics)
    if not isinstance(split, Split):
        raise DataError(f"evaluate() takes a mfjax Split; got {type(split).__name__}")
    if map_denominator not in ("min", "all"):
        raise ValueError(f"map_denominator must be 'min' or 'all'; got {map_denominator!r}")
    kmax = min(max(ks), split.n_items)
    binary, graded, used_threshold = relevance(split, threshold=threshold)
    n_rel_all = np.diff(binary.indptr)
    test_users = np.flatnonzero(np.bincount(split.test.users, minlength=split.n_users))
    users = test_users[n_rel_all[test_users] > 0]
    n_excluded = int(len(test_users) - len(users))
    n_items = split.n_items
    if len(test_users) and not len(users):
        log.warning(
            "no test user has a relevant item (test rating >= %s): ranking metrics are NaN; "
            "lower threshold, or pass threshold=None to count every test interaction",
            used_threshold,
        )

    own = bool(getattr(model, "prefer_own_recommend", False))
    fast = not own and _has_fast_path(model, split)
    want_auc = "auc" in mets
    filtered = 0
    exclude = split.train.csr(binary=True)  # the protocol: every training item is excluded
    if fast and mesh is not None:
        from mfjax.sharding import top_k_sharded

        score_fn, params = model.score_function()
        rec, _ = top_k_sharded(score_fn, params, users, n_items, kmax, mesh=mesh, exclude=exclude)
        auc = np.full(len(users), np.nan)
        if want_auc:
            auc = _fast_rank(
                model,
                users,
                n_items,
                kmax,
                binary,
                exclude,
                with_auc=True,
                memory_budget_bytes=memory_budget_bytes,
            )[1]
    elif fast:
        rec, auc = _fast_rank(
            model,
            users,
            n_items,
            kmax,
            binary,
            exclude,
            with_auc=want_auc,
            memory_budget_bytes=memory_budget_bytes,
        )
    else:
        if not hasattr(model, "recommend"):
            raise TypeError(
                f"cannot evaluate a {type(model).__name__}: it needs score_function() (an mfjax "
                "model) or recommend(users, k, exclude_seen=True)"
            )
        rec, filtered = _generic_rank(model, split, users, kmax)
        auc = np.full(len(users), np.nan)
        if want_auc and own and _has_fast_path(model, split):
            # the peer ranks with its own code; its scores give the full-catalogue AUC
            _, auc = _fast_rank(
                model,
                users,
                n_items,
                1,
                binary,
                exclude,
                with_auc=True,
                memory_budget_bytes=memory_budget_bytes,
            )
        elif want_auc:
            log.info("AUC needs every item's score; %s has no score_function", type(model).__name__)

    rel_u = binary[users]
    gains = M.gains_matrix(rec, rel_u)
    n_rel = n_rel_all[users]
    per_user_cols: list[tuple[str, int | None, np.ndarray]] = []
    summary_extra: list[dict] = []
    pop = split.train.item_counts()
    n_train_users = max(1, int(np.count_nonzero(split.train.user_counts())))
    ideal_bin = M.ideal_gains(rel_u, kmax)
    if "ndcg_graded" in mets:
        g_rel = graded[users]
        g_gains = M.gains_matrix(rec, g_rel)
        ideal_gr = M.ideal_gains(g_rel, kmax)
    for kk in ks:
        for m in mets:
            if m == "precision":
                v = M.precision_at_k(gains, kk)
            elif m == "recall":
                v = M.recall_at_k(gains, n_rel, kk)
            elif m == "map":
                v = M.map_at_k(gains, n_rel, kk, denominator=map_denominator)
            elif m == "ndcg":
                v = M.ndcg_at_k(gains, ideal_bin, kk)
            elif m == "ndcg_graded":
                v = M.ndcg_at_k(g_gains, ideal_gr, kk)
            elif m == "hit_rate":
                v = M.hit_rate_at_k(gains, kk)
            elif m == "mrr":
                v = M.mrr_at_k(gains, kk)
            elif m == "novelty":
                v = M.novelty_at_k(rec, pop, n_train_users, kk)
            elif m == "popularity":
                v = M.popularity_at_k(rec, pop, n_train_users, kk)
            elif m == "coverage":
                # one number for the whole list set: resampling users biases it downwards,
                # so no bootstrap interval is given
                cov = M.catalog_coverage(rec, n_items, kk) if len(users) else np.nan
                lo, hi = np.nan, np.nan
                summary_extra.append(
                    dict(
                        metric="coverage",
                        k=kk,
                        mean=cov,
                        ci_low=lo,
                        ci_high=hi,
                        n_users=len(users),
                        n_excluded=n_excluded,
                    )
                )
                continue
            else:
                continue
            per_user_cols.append((m, kk, v))
    if want_auc:
        per_user_cols.append(("auc", None, auc))

    rank_vals = (
        np.column_stack([c[2] for c in per_user_cols])
        if per_user_cols
        else np.zeros((len(users), 0))
    )
    lo, hi = bootstrap_ci(rank_vals, n_boot=n_boot, level=level, seed=seed)
    rows = []
    for j, (m, kk, v) in enumerate(per_user_cols):
        ok = ~np.isnan(v)
        rows.append(
            dict(
                metric=m,
                k=kk,
                mean=float(np.mean(v[ok])) if ok.any() else np.nan,
                ci_low=lo[j],
                ci_high=hi[j],
                n_users=int(ok.sum()),
                n_excluded=n_excluded + int((~ok).sum()),
            )
        )
    rows.extend(summary_extra)

    frames = []
    raw_users = split.user_map.ids(users)
    for m, kk, v in per_user_cols:
        frames.append(pd.DataFrame({"user": raw_users, "metric": m, "k": kk, "value": v}))

    # rating metrics
    want_rating = [m for m in ("rmse", "mae") if m in mets]
    errors = _rating_errors(model, split) if want_rating else None
    if errors is not None:
        y, p = errors
        tu = split.test.users.astype(np.int64)
        n_u = split.n_users
        cnt_all = np.bincount(tu, minlength=n_u)
        r_users = np.flatnonzero(cnt_all)
        cnt = cnt_all[r_users].astype(np.float64)
        se = np.bincount(tu, weights=(y - p) ** 2, minlength=n_u)[r_users]
        ae = np.bincount(tu, weights=np.abs(y - p), minlength=n_u)[r_users]
        vals = np.column_stack([se / cnt, ae / cnt])
        wts = np.column_stack([cnt, cnt])
        rlo, rhi = bootstrap_ci(vals, n_boot=n_boot, level=level, seed=seed, weights=wts)
        pooled = {"rmse": M.rmse(y, p), "mae": M.mae(y, p)}
        for j, m in enumerate(("rmse", "mae")):
            if m not in want_rating:
                continue
            lo_j, hi_j = (np.sqrt(rlo[j]), np.sqrt(rhi[j])) if m == "rmse" else (rlo[j], rhi[j])
            rows.append(
                dict(
                    metric=m,
                    k=None,
                    mean=pooled[m],
                    ci_low=lo_j,
                    ci_high=hi_j,
                    n_users=len(r_users),
                    n_excluded=0,
                )
            )
            per = np.sqrt(vals[:, 0]) if m == "rmse" else vals[:, 1]
            frames.append(
                pd.DataFrame(
                    {"user": split.user_map.ids(r_users), "metric": m, "k": None, "value": per}
                )
            )
    summary = pd.DataFrame(
        rows, columns=["metric", "k", "mean", "ci_low", "ci_high", "n_users", "n_excluded"]
    )
    summary["k"] = summary["k"].astype("Int64")
    per_user = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(columns=["user", "metric", "k", "value"])
    )
    per_user["k"] = per_user["k"].astype("Int64")
    info = dict(
        n_users=len(users),
        n_excluded=n_excluded,
        n_test_users=len(test_users),
        threshold=used_threshold,
        map_denominator=map_denominator,
        path="fast" if fast else "generic",
        filtered_training_items=filtered,
        n_boot=n_boot,
        level=level,
        seed=seed,
        seconds=time.perf_counter() - t0,
    )
    return Evaluation(per_user=per_user, summary=summary, info=info, users=users, recommended=rec)

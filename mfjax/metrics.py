r"""Evaluation metrics as pure array functions, with their formulas and ranges.

Conventions (shared by :func:`mfjax.evaluate.evaluate`):

* Ranking metrics work on a **gains matrix** ``gains[u, r]``: the relevance of the item
  that user ``u`` was recommended at rank ``r + 1`` (0 when it is not relevant), built by
  :func:`gains_matrix` from the recommended item codes and the users × items matrix of
  relevant test items. A *hit* is a positive gain.
* ``n_relevant[u]`` is the number of relevant test items of user ``u``. Users with none
  have no defined recall, MAP or NDCG: those functions return NaN for them, and the
  evaluator excludes them from every mean (and counts them).
* Precision divides by ``k`` even when fewer than ``k`` items could be recommended.
* ``k`` may be smaller than the number of columns of ``gains``: only the first ``k``
  columns are read, so one top-K list serves every cut-off.

References: Manning, Raghavan & Schütze, *Introduction to Information Retrieval* (2008),
ch. 8; Järvelin & Kekäläinen, "Cumulated gain-based evaluation of IR techniques" (2002);
Zhou et al., "Solving the apparent diversity-accuracy dilemma" (PNAS 2010) for novelty.

Example:
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> recs = np.array([[3, 1, 0]])                         # one user, ranked items
    >>> rel = sp.csr_matrix(np.array([[0, 1.0, 0, 0, 1.0]]))   # relevant: items 1 and 4
    >>> g = gains_matrix(recs, rel)
    >>> g.tolist()
    [[0.0, 1.0, 0.0]]
    >>> float(precision_at_k(g, 3)[0]), float(recall_at_k(g, np.array([2]), 3)[0])
    (0.3333333333333333, 0.5)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = [
    "rmse",
    "mae",
    "gains_matrix",
    "ideal_gains",
    "precision_at_k",
    "recall_at_k",
    "map_at_k",
    "ndcg_at_k",
    "hit_rate_at_k",
    "mrr_at_k",
    "auc_from_scores",
    "catalog_coverage",
    "novelty_at_k",
    "popularity_at_k",
]


# --------------------------------------------------------------------------- rating
def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64).reshape(-1)
    p = np.asarray(y_pred, dtype=np.float64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}; pass one per rating")
    if t.size == 0:
        raise ValueError("no ratings to score: y_true is empty")
    return t, p


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    r"""Root mean squared error, :math:`\sqrt{\frac1n\sum_j (y_j - \hat y_j)^2}`; range [0, ∞).

    Example:
        >>> rmse([1.0, 3.0], [2.0, 3.0])
        0.7071067811865476
    """
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    r"""Mean absolute error, :math:`\frac1n\sum_j |y_j - \hat y_j|`; range [0, ∞).

    Example:
        >>> mae([1.0, 3.0], [2.0, 3.5])
        0.75
    """
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


# --------------------------------------------------------------------------- gains
def gains_matrix(recommended: np.ndarray, relevant: sp.spmatrix) -> np.ndarray:
    """Relevance of each recommended item: ``gains[u, r] = relevant[u, recommended[u, r]]``.

    Args:
        recommended: ``(n_users, K)`` item codes, best first; ``-1`` marks an empty slot.
        relevant: ``(n_users, n_items)`` sparse matrix whose row ``u`` holds the gains of
            user ``u``'s relevant items (1.0 for binary relevance, a grade otherwise);
            rows are aligned with ``recommended``.

    Returns:
        ``(n_users, K)`` float64 gains, 0 where the item is not relevant or the slot empty.
    """
    rec = np.asarray(recommended, dtype=np.int64)
    if rec.ndim != 2:
        raise ValueError(f"recommended must be a 2-d (users, K) array; got shape {rec.shape}")
    rel = sp.csr_matrix(relevant)
    if rel.shape[0] != rec.shape[0]:
        raise ValueError(
            f"relevant has {rel.shape[0]} rows but recommended has {rec.shape[0]}; align the rows"
        )
    rel.sum_duplicates()
    rel.sort_indices()
    n_items = rel.shape[1]
    if rec.size and rec.max() >= n_items:
        raise ValueError(f"recommended holds item code {rec.max()} >= n_items {n_items}")
    rows = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr))
    keys = rows * n_items + rel.indices  # sorted, since rows and per-row indices are
    query = np.arange(rec.shape[0], dtype=np.int64)[:, None] * n_items + rec
    pos = np.searchsorted(keys, query.reshape(-1))
    pos = np.minimum(pos, max(len(keys) - 1, 0)).reshape(rec.shape)
    found = (rec >= 0) & (len(keys) > 0)
    if len(keys):
        found &= keys[pos] == query
    vals = np.asarray(rel.data, dtype=np.float64)
    return np.where(found, vals[pos] if len(keys) else 0.0, 0.0)


def ideal_gains(relevant: sp.spmatrix, k: int) -> np.ndarray:
    """Each user's ``k`` largest relevance gains, best first, zero-padded: ``(n_users, k)``.

    This is the gains row of the ideal ranking, the NDCG normaliser.
    """
    rel = sp.csr_matrix(relevant)
    n = rel.shape[0]
    out = np.zeros((n, k), dtype=np.float64)
    counts = np.diff(rel.indptr)
    if rel.nnz == 0 or k == 0:
        return out
    rows = np.repeat(np.arange(n), counts)
    order = np.lexsort((-rel.data, rows))  # by row, then gain descending
    rank = np.arange(rel.nnz) - np.repeat(rel.indptr[:-1], counts)
    keep = rank < k
    out[rows[keep], rank[keep]] = rel.data[order][keep]
    return out


def _cut(gains: np.ndarray, k: int) -> np.ndarray:
    g = np.asarray(gains, dtype=np.float64)
    if g.ndim != 2:
        raise ValueError(f"gains must be a 2-d (users, K) array; got shape {g.shape}")
    if k < 1:
        raise ValueError(f"k must be a positive integer; got {k}")
    return g[:, :k]


def _n_rel(n_relevant: np.ndarray, n: int) -> np.ndarray:
    nr = np.asarray(n_relevant, dtype=np.float64).reshape(-1)
    if nr.shape[0] != n:
        raise ValueError(f"n_relevant has {nr.shape[0]} entries for {n} users")
    return nr


# --------------------------------------------------------------------------- ranking
def precision_at_k(gains: np.ndarray, k: int) -> np.ndarray:
    r"""Precision@K per user: :math:`\frac{1}{K}\sum_{r=1}^{K} \mathbb 1[g_{u,r} > 0]`; [0, 1].

    Example:
        >>> precision_at_k(np.array([[1.0, 0, 1]]), 2).tolist()
        [0.5]
    """
    g = _cut(gains, k)
    return (g > 0).sum(axis=1) / float(k)


def recall_at_k(gains: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    r"""Recall@K per user: hits in the top K divided by :math:`|R_u|`; [0, 1], NaN if :math:`|R_u|=0`.

    Example:
        >>> recall_at_k(np.array([[1.0, 0, 1]]), np.array([4]), 3).tolist()
        [0.5]
    """
    g = _cut(gains, k)
    nr = _n_rel(n_relevant, g.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nr > 0, (g > 0).sum(axis=1) / nr, np.nan)


def map_at_k(
    gains: np.ndarray, n_relevant: np.ndarray, k: int, *, denominator: str = "min"
) -> np.ndarray:
    r"""Average precision@K per user (its mean over users is MAP@K).

    .. math::
        \mathrm{AP@K}_u = \frac{1}{D_u} \sum_{r=1}^{K} \mathrm{P@r}_u \, \mathbb 1[g_{u,r} > 0]

    with :math:`D_u = \min(K, |R_u|)` by default (``denominator="min"``, as in Microsoft
    Recommenders' ``map_at_k`` and Kaggle's apk; a perfect list scores 1), or
    :math:`D_u = |R_u|` (``denominator="all"``, as in trec_eval and ``ranx``; users with
    more relevant items than K cannot reach 1). Range [0, 1]; NaN where :math:`|R_u| = 0`.

    Example:
        >>> g = np.array([[1.0, 0, 1]])   # hits at ranks 1 and 3
        >>> map_at_k(g, np.array([5]), 3).tolist()   # (1 + 2/3) / min(3, 5)
        [0.5555555555555555]
        >>> map_at_k(g, np.array([5]), 3, denominator="all").tolist()   # (1 + 2/3) / 5
        [0.3333333333333333]
    """
    if denominator not in ("min", "all"):
        raise ValueError(
            f"denominator must be 'min' (min(K, |R|)) or 'all' (|R|); got {denominator!r}"
        )
    g = _cut(gains, k)
    nr = _n_rel(n_relevant, g.shape[0])
    hits = (g > 0).astype(np.float64)
    prec = np.cumsum(hits, axis=1) / np.arange(1, g.shape[1] + 1)
    total = (prec * hits).sum(axis=1)
    denom = np.minimum(nr, k) if denominator == "min" else nr
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(nr > 0, total / denom, np.nan)


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def ndcg_at_k(gains: np.ndarray, ideal: np.ndarray, k: int, *, form: str = "linear") -> np.ndarray:
    r"""Normalised discounted cumulative gain@K per user.

    .. math::
        \mathrm{DCG@K}_u = \sum_{r=1}^{K} \frac{f(g_{u,r})}{\log_2(r+1)}, \qquad
        \mathrm{NDCG@K}_u = \frac{\mathrm{DCG@K}_u}{\mathrm{IDCG@K}_u}

    where IDCG is the DCG of ``ideal`` (the user's best possible gains, see
    :func:`ideal_gains`), and :math:`f(g) = g` (``form="linear"``, Järvelin & Kekäläinen;
    ``ranx``'s ``ndcg``) or :math:`f(g) = 2^g - 1` (``form="exponential"``, Burges et al.).
    With binary gains (0/1) both forms agree: that is "binary NDCG". Range [0, 1]; NaN where
    the ideal DCG is 0 (no relevant item).

    Example:
        >>> g = np.array([[0.0, 1.0]])
        >>> ndcg_at_k(g, np.array([[1.0, 0.0]]), 2).round(4).tolist()   # (1/log2 3) / 1
        [0.6309]
    """
    if form not in ("linear", "exponential"):
        raise ValueError(f"form must be 'linear' or 'exponential'; got {form!r}")
    g = _cut(gains, k)
    ideal = np.asarray(ideal, dtype=np.float64)[:, :k]
    if ideal.shape[0] != g.shape[0]:
        raise ValueError(f"ideal has {ideal.shape[0]} rows for {g.shape[0]} users")
    f = (lambda x: x) if form == "linear" else (lambda x: np.exp2(x) - 1.0)
    dcg = (f(g) * _discounts(g.shape[1])).sum(axis=1)
    idcg = (f(ideal) * _discounts(ideal.shape[1])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(idcg > 0, dcg / idcg, np.nan)


def hit_rate_at_k(gains: np.ndarray, k: int) -> np.ndarray:
    r"""Hit rate@K per user: 1 if any of the top K items is relevant, else 0; {0, 1}.

    Example:
        >>> hit_rate_at_k(np.array([[0.0, 1.0], [0.0, 0.0]]), 2).tolist()
        [1.0, 0.0]
    """
    g = _cut(gains, k)
    return (g > 0).any(axis=1).astype(np.float64)


def mrr_at_k(gains: np.ndarray, k: int) -> np.ndarray:
    r"""Reciprocal rank@K per user: :math:`1/r` for the first relevant rank :math:`r \le K`, else 0.

    Its mean over users is MRR@K. Range [0, 1].

    Example:
        >>> mrr_at_k(np.array([[0.0, 0.0, 1.0]]), 3).tolist()
        [0.3333333333333333]
    """
    g = _cut(gains, k)
    hit = g > 0
    first = np.argmax(hit, axis=1)
    return np.where(hit.any(axis=1), 1.0 / (first + 1.0), 0.0)


def auc_from_scores(
    scores: np.ndarray, positive: np.ndarray, candidate: np.ndarray | None = None
) -> np.ndarray:
    r"""Full-catalogue AUC per user, from the scores of every item.

    .. math::
        \mathrm{AUC}_u = \frac{1}{|P_u|\,|N_u|} \sum_{p \in P_u} \sum_{n \in N_u}
        \left(\mathbb 1[s_p > s_n] + \tfrac12 \mathbb 1[s_p = s_n]\right)

    where :math:`P_u` are the user's relevant test items among the candidates and
    :math:`N_u` every other candidate (by default all items; the evaluator passes "not a
    training item"). Ties count one half. Range [0, 1] (0.5 for a random ranking); NaN
    where :math:`P_u` or :math:`N_u` is empty.

    Args:
        scores: ``(n_users, n_items)`` scores.
        positive: ``(n_users, n_items)`` booleans, True for relevant items.
        candidate: ``(n_users, n_items)`` booleans, True for items that take part.

    Example:
        >>> auc_from_scores(np.array([[3.0, 1.0, 2.0]]), np.array([[True, False, False]])).tolist()
        [1.0]
    """
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    cand = np.ones_like(pos) if candidate is None else np.asarray(candidate, dtype=bool)
    if s.shape != pos.shape or s.shape != cand.shape:
        raise ValueError(
            f"scores {s.shape}, positive {pos.shape} and candidate {cand.shape} differ"
        )
    from scipy.stats import rankdata

    pos = pos & cand
    # rank the candidates of each row (average ranks for ties); non-candidates rank last
    masked = np.where(cand, s, np.inf)
    ranks = rankdata(masked, axis=1, method="average")
    n_pos = pos.sum(axis=1).astype(np.float64)
    n_neg = cand.sum(axis=1) - n_pos
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


# --------------------------------------------------------------------------- beyond accuracy
def catalog_coverage(recommended: np.ndarray, n_items: int, k: int) -> float:
    r"""Share of the catalogue recommended to at least one user in the top K; [0, 1].

    :math:`|\bigcup_u \mathrm{top}_K(u)| / |I|` (empty slots, code -1, are ignored).

    Example:
        >>> catalog_coverage(np.array([[0, 1], [1, 2]]), 10, 2)
        0.3
    """
    rec = np.asarray(recommended, dtype=np.int64)[:, :k]
    rec = rec[rec >= 0]
    if n_items <= 0:
        raise ValueError(f"n_items must be positive; got {n_items}")
    return float(np.unique(rec).size / n_items)


def _popularity_share(item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    pop = np.asarray(item_popularity, dtype=np.float64)
    if n_users <= 0:
        raise ValueError(f"n_users must be positive; got {n_users}")
    return pop / float(n_users)


def novelty_at_k(
    recommended: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int
) -> np.ndarray:
    r"""Mean self-information of the top K per user, in bits; [0, log2(n_users)].

    :math:`\frac{1}{K'} \sum_{r \le K'} -\log_2 \frac{\max(\mathrm{pop}_i, 1)}{|U|}` where
    :math:`\mathrm{pop}_i` is the number of training users of item :math:`i` (clipped at 1 so
    that an item nobody trained on stays finite), :math:`|U|` the number of training users
    and :math:`K'` the number of non-empty slots. Higher is more novel (less popular).

    Example:
        >>> novelty_at_k(np.array([[0, 1]]), np.array([8, 2]), 8, 2).tolist()   # (0 + 2) / 2
        [1.0]
    """
    rec = np.asarray(recommended, dtype=np.int64)[:, :k]
    share = np.maximum(_popularity_share(item_popularity, n_users), 1.0 / n_users)
    info = -np.log2(share)
    valid = rec >= 0
    vals = np.where(valid, info[np.clip(rec, 0, None)], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid.any(axis=1), vals.sum(axis=1) / valid.sum(axis=1), np.nan)


def popularity_at_k(
    recommended: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int
) -> np.ndarray:
    r"""Average recommendation popularity (popularity bias) of the top K per user; [0, 1].

    :math:`\frac{1}{K'} \sum_{r \le K'} \mathrm{pop}_i / |U|`: the mean share of training
    users who interacted with the recommended items (Abdollahpouri et al., 2019).

    Example:
        >>> popularity_at_k(np.array([[0, 1]]), np.array([8, 2]), 8, 2).tolist()   # (1 + .25) / 2
        [0.625]
    """
    rec = np.asarray(recommended, dtype=np.int64)[:, :k]
    share = _popularity_share(item_popularity, n_users)
    valid = rec >= 0
    vals = np.where(valid, share[np.clip(rec, 0, None)], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid.any(axis=1), vals.sum(axis=1) / valid.sum(axis=1), np.nan)

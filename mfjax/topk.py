"""Top-K over all items for blocks of users, with each user's seen items excluded.

The scorer is a pure function ``score_fn(params, user_codes) -> (b, n_items)``; this module
jits ``scores -> mask -> lax.top_k`` per block of users so that the full score matrix is
never materialised.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = ["top_k_blocked", "block_size_for"]

NEG_INF = -jnp.inf


def block_size_for(n_items: int, *, memory_budget_bytes: int = 256 * 2**20, max_block: int = 4096) -> int:
    """Users per block so that a block's float32 scores (and mask) stay within the budget."""
    per_user = max(1, n_items) * 4 * 3  # scores + masked copy + mask, float32
    return int(max(1, min(max_block, memory_budget_bytes // per_user)))


@partial(jax.jit, static_argnames=("score_fn", "k"))
def _block_topk(score_fn, params, users, seen_rows, seen_cols, allowed, k):
    scores = score_fn(params, users)
    scores = jnp.where(allowed[None, :], scores, NEG_INF)
    scores = scores.at[seen_rows, seen_cols].set(NEG_INF, mode="drop")
    vals, idx = jax.lax.top_k(scores, k)
    return vals, idx


def _pad_pow2(n: int, minimum: int = 64) -> int:
    p = minimum
    while p < n:
        p *= 2
    return p


def top_k_blocked(
    score_fn: Callable,
    params,
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    *,
    exclude: sp.csr_matrix | None = None,
    allowed_items: np.ndarray | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item codes and scores for each user code.

    Args:
        score_fn: pure ``(params, users[b]) -> scores[b, n_items]``; must be hashable
            (a module-level function) so the jitted block compiles once.
        params: pytree of arrays for ``score_fn``.
        user_codes: user codes to rank for.
        n_items: catalogue size.
        k: list length (clipped to the number of rankable items).
        exclude: users × items CSR whose non-zeros are excluded (training items).
        allowed_items: optional item codes to rank among (others are excluded).
        block_size: users per jitted block (default from a 256 MiB budget).

    Returns:
        ``(items, scores)`` of shape ``(n, k)``; excluded slots (when fewer than ``k`` items
        remain) have item code -1 and score ``-inf``.
    """
    user_codes = np.asarray(user_codes, dtype=np.int32)
    n = len(user_codes)
    k_eff = int(min(k, n_items))
    if block_size is None:
        block_size = block_size_for(n_items)
    allowed = np.ones(n_items, dtype=bool)
    if allowed_items is not None:
        allowed[:] = False
        allowed[np.asarray(allowed_items, dtype=np.int64)] = True
    allowed_j = jnp.asarray(allowed)
    out_items = np.empty((n, k_eff), dtype=np.int64)
    out_scores = np.empty((n, k_eff), dtype=np.float32)
    bs = int(min(block_size, max(1, n)))
    for start in range(0, n, bs):
        users = user_codes[start : start + bs]
        b = len(users)
        users_p = np.zeros(bs, dtype=np.int32)
        users_p[:b] = users
        if exclude is not None:
            sub = exclude[users]
            rows = np.repeat(np.arange(b, dtype=np.int32), np.diff(sub.indptr))
            cols = sub.indices.astype(np.int32)
        else:
            rows = cols = np.zeros(0, dtype=np.int32)
        m = _pad_pow2(len(rows))  # few distinct shapes, few compilations
        rows_p = np.full(m, bs, dtype=np.int32)  # out of range -> dropped
        cols_p = np.zeros(m, dtype=np.int32)
        rows_p[: len(rows)] = rows
        cols_p[: len(cols)] = cols
        vals, idx = _block_topk(score_fn, params, users_p, rows_p, cols_p, allowed_j, k_eff)
        vals = np.asarray(vals[:b])
        idx = np.asarray(idx[:b]).astype(np.int64)
        idx[~np.isfinite(vals)] = -1
        out_items[start : start + b] = idx
        out_scores[start : start + b] = vals
    return out_items, out_scores

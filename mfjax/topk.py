"""Top-K over all items for blocks of users, with each user's seen items excluded.

The scorer is a pure function ``score_fn(params, user_codes) -> scores[b, n_items]``; this
module jits ``scores -> mask -> lax.top_k`` per block of users, so the full users × items
score matrix is never materialised. The block size follows a memory budget (scores, their
masked copy and a boolean mask per user), so that 100,000 users × 100,000 items runs in a
few hundred MiB. Blocks are dispatched asynchronously, at most two in flight: the host
builds the next block's mask and collects the previous block's result while the device
ranks the current one.

Example:
    >>> import jax.numpy as jnp
    >>> import numpy as np
    >>> import scipy.sparse as sp
    >>> def score(params, users):
    ...     return params["u"][users] @ params["v"].T
    >>> params = {"u": jnp.eye(2), "v": jnp.array([[3.0, 0], [2, 1], [1, 2]])}
    >>> seen = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32))
    >>> items, scores = top_k_blocked(score, params, np.array([0, 1]), 3, 2, exclude=seen)
    >>> items.tolist()
    [[1, 2], [2, 1]]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

__all__ = ["top_k_blocked", "block_size_for", "DEFAULT_MEMORY_BUDGET"]

#: default memory budget of one block (scores, masked scores and mask)
DEFAULT_MEMORY_BUDGET = 64 * 2**20
#: more users per block than this stops paying off on CPU (the block leaves the cache)
_MAX_BLOCK = 1024


def block_size_for(
    n_items: int,
    *,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    max_block: int = _MAX_BLOCK,
) -> int:
    """Users per block so that one block's working set stays within the memory budget.

    A user costs ``n_items * 9`` bytes in a block: float32 scores, their masked float32
    copy and a boolean mask.

    Args:
        n_items: catalogue size.
        memory_budget_bytes: bytes one block may use (default 64 MiB).
        max_block: upper bound on the block size.

    Returns:
        The number of users per block, at least 1.

    Example:
        >>> block_size_for(100_000)  # 100 k items: 74 users (~64 MiB) per block
        74
    """
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0; got {n_items}")
    if memory_budget_bytes <= 0:
        raise ValueError(f"memory_budget_bytes must be positive; got {memory_budget_bytes}")
    per_user = max(1, n_items) * 9
    return int(max(1, min(max_block, memory_budget_bytes // per_user)))


def _balanced_block(n: int, limit: int) -> int:
    """A block size <= limit that splits ``n`` users into equal blocks with little padding.

    Sizes are rounded to powers of two below 64 and to multiples of 64 above, so that a
    handful of shapes (a handful of compilations) serves every call.
    """
    n = max(1, n)
    n_blocks = -(-n // limit)
    per = -(-n // n_blocks)
    if per <= 64:
        size = 1
        while size < per:
            size *= 2
    else:
        size = -(-per // 64) * 64
    return int(min(size, limit))


def _iter_blocks(
    user_codes: np.ndarray,
    n_items: int,
    exclude: sp.csr_matrix | None,
    block_size: int,
) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Yield ``(start, b, users_padded[bs], mask[bs, n_items])`` per block of users.

    ``mask`` is True where an item is excluded for that user (rows past ``b`` are padding).
    """
    n = len(user_codes)
    bs = block_size
    for start in range(0, n, bs):
        users = user_codes[start : start + bs]
        b = len(users)
        users_p = np.zeros(bs, dtype=np.int32)
        users_p[:b] = users
        mask = np.zeros((bs, n_items), dtype=bool)
        if exclude is not None:
            sub = exclude[users]
            counts = np.diff(sub.indptr)
            rows = np.repeat(np.arange(b, dtype=np.int64), counts)
            mask.reshape(-1)[rows * n_items + sub.indices] = True
        yield start, b, users_p, mask


@partial(jax.jit, static_argnames=("score_fn", "k"))
def _block_topk(score_fn, params, users, mask, allowed, k):
    scores = score_fn(params, users)
    scores = jnp.where(mask | ~allowed[None, :], -jnp.inf, scores)
    return jax.lax.top_k(scores, k)


def _as_exclude(exclude: sp.spmatrix | None, n_items: int) -> sp.csr_matrix | None:
    if exclude is None:
        return None
    exclude = sp.csr_matrix(exclude)
    if exclude.shape[1] != n_items:
        raise ValueError(
            f"exclude has {exclude.shape[1]} item columns but n_items is {n_items}; pass the "
            "training users × items matrix of the same id maps"
        )
    return exclude


def _allowed_mask(allowed_items: np.ndarray | None, n_items: int) -> np.ndarray:
    allowed = np.ones(n_items, dtype=bool)
    if allowed_items is not None:
        codes = np.asarray(allowed_items, dtype=np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= n_items):
            raise ValueError(f"allowed_items must be item codes in [0, {n_items}); got {codes}")
        allowed[:] = False
        allowed[codes] = True
    return allowed


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
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` item codes and scores for each user code, over the whole catalogue.

    Ties are broken towards the lower item code (``lax.top_k``'s order).

    Args:
        score_fn: pure ``(params, users[b]) -> scores[b, n_items]``; must be hashable
            (a module-level function) so the jitted block compiles once per shape.
        params: pytree of arrays for ``score_fn``.
        user_codes: user codes to rank for.
        n_items: catalogue size.
        k: list length (clipped to ``n_items``).
        exclude: users × items CSR whose non-zeros are excluded (training items).
        allowed_items: optional item codes to rank among (others are excluded).
        block_size: users per jitted block (default from ``memory_budget_bytes``).
        memory_budget_bytes: bytes one block may use when ``block_size`` is not given.

    Returns:
        ``(items, scores)`` of shape ``(n, k)``, best first; excluded slots (when fewer
        than ``k`` items remain) have item code -1 and score ``-inf``.
    """
    user_codes = np.asarray(user_codes, dtype=np.int32).reshape(-1)
    n = len(user_codes)
    if int(k) < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    k_eff = int(min(int(k), n_items))
    exclude = _as_exclude(exclude, n_items)
    allowed_j = jnp.asarray(_allowed_mask(allowed_items, n_items))
    out_items = np.empty((n, k_eff), dtype=np.int64)
    out_scores = np.empty((n, k_eff), dtype=np.float32)
    if n == 0 or k_eff == 0:
        return out_items, out_scores
    limit = block_size or block_size_for(n_items, memory_budget_bytes=memory_budget_bytes)
    bs = _balanced_block(n, int(limit)) if block_size is None else int(block_size)

    def collect(start: int, b: int, vals: jax.Array, idx: jax.Array) -> None:
        vals = np.asarray(vals)[:b]
        idx = np.asarray(idx)[:b].astype(np.int64)
        idx[~np.isfinite(vals)] = -1
        out_items[start : start + b] = idx
        out_scores[start : start + b] = vals

    pending = None  # at most two blocks in flight: memory stays within two budgets
    for start, b, users_p, mask in _iter_blocks(user_codes, n_items, exclude, bs):
        vals, idx = _block_topk(score_fn, params, users_p, mask, allowed_j, k_eff)
        if pending is not None:
            collect(*pending)  # the previous block, while this one runs
        pending = (start, b, vals, idx)
    if pending is not None:
        collect(*pending)
    return out_items, out_scores

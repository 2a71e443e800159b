"""Blocked full-catalogue top-k against a naive numpy ranking."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from mfjax.topk import _balanced_block, _block_topk, block_size_for, top_k_blocked


def dot_score(params, users):
    return params["u"][users] @ params["v"].T


def table_score(params, users):
    return params["table"][users]


def naive_topk(scores, exclude, allowed, k):
    """Per user: sort (-score, item) among permitted items, pad with -1."""
    out = np.full((scores.shape[0], k), -1)
    for u in range(scores.shape[0]):
        cand = [i for i in range(scores.shape[1]) if not exclude[u, i] and allowed[i]]
        cand.sort(key=lambda i: (-scores[u, i], i))
        out[u, : len(cand[:k])] = cand[:k]
    return out


@settings(max_examples=30, deadline=None)
@given(
    n_users=st.integers(1, 9),
    n_items=st.integers(1, 12),
    k=st.integers(1, 14),
    block=st.sampled_from([None, 1, 2, 5]),
    seed=st.integers(0, 10_000),
    with_allowed=st.booleans(),
)
def test_matches_naive_ranking_with_ties(n_users, n_items, k, block, seed, with_allowed):
    rng = np.random.default_rng(seed)
    table = rng.integers(0, 3, size=(n_users, n_items)).astype(np.float32)  # many ties
    exclude = rng.random((n_users, n_items)) < 0.3
    allowed = rng.random(n_items) < 0.7 if with_allowed else np.ones(n_items, bool)
    users = rng.permutation(n_users)
    items, scores = top_k_blocked(
        table_score,
        {"table": jnp.asarray(table)},
        users,
        n_items,
        k,
        exclude=sp.csr_matrix(exclude.astype(np.float32)),
        allowed_items=np.flatnonzero(allowed) if with_allowed else None,
        block_size=block,
    )
    ref = naive_topk(table[users], exclude[users], allowed, min(k, n_items))
    np.testing.assert_array_equal(items, ref)
    ok = ref >= 0
    np.testing.assert_array_equal(scores[ok], table[users][np.nonzero(ok)[0], ref[ok]])
    assert np.all(np.isneginf(scores[~ok]))


def test_dot_product_scorer_and_known_answer():
    u = jnp.eye(2)
    v = jnp.array([[3.0, 0.0], [2.0, 1.0], [1.0, 2.0]])
    seen = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32))
    items, scores = top_k_blocked(dot_score, {"u": u, "v": v}, np.array([0, 1]), 3, 2, exclude=seen)
    assert items.tolist() == [[1, 2], [2, 1]]
    assert scores.tolist() == [[2.0, 1.0], [2.0, 1.0]]


def test_block_size_respects_the_memory_budget():
    budget = 64 * 2**20
    bs = block_size_for(100_000, memory_budget_bytes=budget)
    assert 1 <= bs and bs * 100_000 * 9 <= budget  # 100 k users x 100 k items: ~64 MiB blocks
    assert block_size_for(10**9, memory_budget_bytes=1) == 1
    assert block_size_for(10, max_block=7) == 7
    with pytest.raises(ValueError, match="memory_budget_bytes"):
        block_size_for(10, memory_budget_bytes=0)


def test_balanced_blocks_pad_little_and_use_few_shapes():
    assert _balanced_block(6040, 1024) == 1024  # 6 blocks of <= 1024
    assert _balanced_block(1100, 1024) == 576  # two blocks of 550, not 1024 + 76
    assert _balanced_block(3, 1024) == 4
    assert _balanced_block(5000, 74) <= 74
    shapes = {_balanced_block(n, 1024) for n in range(1, 5000)}
    assert len(shapes) <= 24


def test_no_recompilation_for_a_second_call_of_the_same_size():
    rng = np.random.default_rng(0)
    params = {"table": jnp.asarray(rng.random((50, 30), dtype=np.float32))}
    seen = sp.random(50, 30, density=0.2, format="csr", random_state=0)
    top_k_blocked(table_score, params, np.arange(50), 30, 5, exclude=seen)
    before = _block_topk._cache_size()
    top_k_blocked(table_score, params, np.arange(50)[::-1], 30, 5, exclude=seen[::-1])
    assert _block_topk._cache_size() == before


def test_bad_arguments():
    params = {"table": jnp.zeros((2, 3))}
    with pytest.raises(ValueError, match="k must be"):
        top_k_blocked(table_score, params, np.array([0]), 3, 0)
    with pytest.raises(ValueError, match="exclude has 4 item columns"):
        top_k_blocked(table_score, params, np.array([0]), 3, 2, exclude=sp.csr_matrix((2, 4)))
    with pytest.raises(ValueError, match="allowed_items"):
        top_k_blocked(table_score, params, np.array([0]), 3, 2, allowed_items=np.array([5]))
    items, scores = top_k_blocked(table_score, params, np.array([], dtype=int), 3, 2)
    assert items.shape == (0, 2)

"""BPR: the model contract, the loss gradient, negative sampling, planted ranking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from model_contract import ModelContract

from mfjax.models.bpr import (
    BPR,
    _in_bitmap,
    _is_positive,
    bpr_loss,
    membership_bitmap,
    sample_negatives,
)


class TestBPRContract(ModelContract):
    bad_hyperparameters = [
        ({"factors": -3}, "factors"),
        ({"negatives": "hard"}, "negatives"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"valid_metric": "map"}, "valid_metric"),
        ({"verify_negatives": "yes"}, "verify_negatives"),
        ({"epochs": 2.5}, "epochs"),
    ]

    def _make_model(self, **overrides):
        kw = {
            "factors": 8,
            "epochs": 30,
            "optimizer": "adam",
            "learning_rate": 0.01,
            "batch_size": 64,
        }
        return BPR(**{**kw, **overrides})


def test_loss_gradient_matches_hand_derivation() -> None:
    rng = np.random.default_rng(0)
    b, k = 6, 4
    rows = {n: jnp.asarray(rng.normal(size=(b, k)), jnp.float32) for n in ("user", "pos", "neg")}
    rows.update({n: jnp.asarray(rng.normal(size=b), jnp.float32) for n in ("pos_bias", "neg_bias")})
    aux = {"reg": 0.1, "reg_bias": 0.3}

    def engine(r):  # the engine gathers these five rows per triple
        return {n: r[n] for n in ("user", "pos", "neg", "pos_bias", "neg_bias")}

    grads = jax.grad(lambda r: jnp.sum(bpr_loss(engine(r), {}, aux, {})))(rows)
    p, qi, qj = (np.asarray(rows[n], np.float64) for n in ("user", "pos", "neg"))
    bi, bj = np.asarray(rows["pos_bias"], np.float64), np.asarray(rows["neg_bias"], np.float64)
    x = (p * (qi - qj)).sum(1) + bi - bj
    s = -1.0 / (1.0 + np.exp(x))  # d/dx of -log σ(x) = -(1 - σ(x))
    np.testing.assert_allclose(
        grads["user"], s[:, None] * (qi - qj) + 0.1 * p, rtol=1e-4, atol=1e-6
    )
    np.testing.assert_allclose(grads["pos"], s[:, None] * p + 0.1 * qi, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["neg"], -s[:, None] * p + 0.1 * qj, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["pos_bias"], s + 0.3 * bi, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(grads["neg_bias"], -s + 0.3 * bj, rtol=1e-4, atol=1e-6)
    # and the loss value itself against the formula
    ref = (
        np.log1p(np.exp(-x))
        + 0.05 * ((p**2).sum(1) + (qi**2).sum(1) + (qj**2).sum(1))
        + 0.15 * (bi**2 + bj**2)
    )
    np.testing.assert_allclose(bpr_loss(engine(rows), {}, aux, {}), ref, rtol=1e-5)


def _aux(csr: sp.csr_matrix) -> dict:
    pop = np.asarray(csr.sum(axis=0)).ravel()
    return {
        "indptr": jnp.asarray(csr.indptr, jnp.int32),
        "indices": jnp.asarray(csr.indices, jnp.int32),
        "bitmap": jnp.asarray(membership_bitmap(csr.indptr, csr.indices, csr.shape[1])),
        "words": jnp.int32(-(-csr.shape[1] // 32)),
        "n_items": jnp.int32(csr.shape[1]),
        "cdf": jnp.asarray(np.cumsum(pop), jnp.float32),
    }


def test_membership_search_matches_dense_lookup() -> None:
    rng = np.random.default_rng(1)
    dense = rng.uniform(size=(30, 70)) < 0.3  # 70 items: three bitmap words per user
    dense[3] = False  # a user without items
    csr = sp.csr_matrix(dense.astype(np.float32))
    users = rng.integers(0, 30, 2000).astype(np.int32)
    items = rng.integers(0, 70, 2000).astype(np.int32)
    steps = int(np.diff(csr.indptr).max()).bit_length() + 1
    got = np.asarray(_is_positive(jnp.asarray(users), jnp.asarray(items), _aux(csr), steps))
    np.testing.assert_array_equal(got, dense[users, items])
    got = np.asarray(_in_bitmap(jnp.asarray(users), jnp.asarray(items), _aux(csr)))
    np.testing.assert_array_equal(got, dense[users, items])


@pytest.mark.parametrize(
    "negatives, membership",
    [("uniform", "bitmap"), ("popularity", "bitmap"), ("uniform", "search")],
)
def test_sampled_negatives_are_true_negatives_with_the_right_law(
    negatives: str, membership: str
) -> None:
    rng = np.random.default_rng(2)
    dense = np.zeros((4, 10), dtype=bool)
    dense[0, :3] = True
    dense[1, 2:8] = True
    dense[2, [0, 9]] = True
    dense[3, 5] = True
    csr = sp.csr_matrix(dense.astype(np.float32))
    users = jnp.asarray(rng.integers(0, 4, 40000), jnp.int32)
    hyper = {"negatives": negatives, "verify": True, "search_steps": 4, "membership": membership}
    out, ok = sample_negatives(jax.random.PRNGKey(0), {"users": users}, _aux(csr), hyper)
    neg, ok = np.asarray(out["neg"]), np.asarray(ok) > 0
    u = np.asarray(users)
    assert not dense[u[ok], neg[ok]].any(), "a kept negative is a positive"
    # four draws per triple: a triple is dropped with probability P(positive)^4
    full_law = np.full(10, 0.1) if negatives == "uniform" else dense.sum(0) / dense.sum()
    p_bad = (dense * full_law).sum(1)
    assert ok.mean() == pytest.approx(np.mean(1 - p_bad[u] ** 4), abs=0.005)
    # law: among user 2's kept negatives (items 1..8), frequencies follow the sampler's law
    sel = ok & (u == 2)
    freq = np.bincount(neg[sel], minlength=10)[1:9] / sel.sum()
    pop = dense.sum(0)[1:9].astype(float)
    law = np.full(8, 1 / 8) if negatives == "uniform" else pop / pop.sum()
    np.testing.assert_allclose(freq, law, atol=0.02)


def test_ranks_planted_positives_above_negatives() -> None:
    # two tastes; each user saw 70 % of their taste's items; held-out ones must rank on top
    rng = np.random.default_rng(3)
    n_users, n_items = 60, 40
    group_u = np.arange(n_users) % 2
    group_i = np.arange(n_items) % 2
    rows, held = [], []
    for u in range(n_users):
        liked = np.flatnonzero(group_i == group_u[u])
        mask = rng.uniform(size=len(liked)) < 0.7
        rows += [(u, i) for i in liked[mask]]
        held += [(u, i) for i in liked[~mask]]
    train = pd.DataFrame(rows, columns=["user", "item"])
    m = BPR(factors=8, epochs=40, optimizer="adam", learning_rate=0.02, batch_size=128, seed=1).fit(
        train
    )
    fn, params = m.score_function()
    scores = np.asarray(fn(params, jnp.arange(n_users, dtype=jnp.int32)))
    held = np.array(held)
    pos = scores[held[:, 0], held[:, 1]]
    other = scores[:, group_i == 0][group_u == 1].ravel()
    auc = (pos[:, None] > other[None, :]).mean()
    assert auc > 0.95, auc


def test_validation_metric_and_early_stopping_restore_best() -> None:
    rng = np.random.default_rng(4)
    df = pd.DataFrame(
        {"user": rng.integers(0, 50, 800), "item": rng.integers(0, 40, 800)}
    ).drop_duplicates()
    valid = df.sample(100, random_state=0)
    train = df.drop(index=valid.index)
    m = BPR(
        factors=8,
        epochs=12,
        optimizer="adam",
        learning_rate=0.05,
        batch_size=64,
        patience=2,
        valid_metric="recall",
    ).fit(train, valid=valid)
    col = "valid_recall@10"
    hist = m.history_
    assert col in hist
    best = hist.loc[hist[col].idxmax()]
    assert m.best_epoch_ == int(best["epoch"])
    # the kept parameters score the best validation value (recomputed independently)
    from mfjax.train import ranking_valid_fn

    vi = m.item_map_.codes(valid["item"], missing="ignore")
    vu = m.user_map_.codes(valid["user"], missing="ignore")
    keep = (vi >= 0) & (vu >= 0)
    fn = ranking_valid_fn(
        BPR._score_fn, {}, m.seen_, vu[keep], vi[keep], len(m.item_map_), metric="recall"
    )
    assert fn({k: jnp.asarray(v) for k, v in m.params_.items()}) == pytest.approx(
        best[col], abs=1e-6
    )

"""evaluate(): the protocol, per-user values against a naive reference, CIs, paths, errors."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np
import pandas as pd
import pytest
from test_metrics import naive_auc, naive_metrics, naive_rank

from mfjax.evaluate import bootstrap_ci, evaluate, relevance
from mfjax.exceptions import DataError
from mfjax.models.base import RatingRecommender
from mfjax.splits import Split, random_split


@dataclass(frozen=True)
class TableConfig:
    seed: int = 0


class TableModel(RatingRecommender):
    """Scores from a fixed random table (integers: many ties); predicts the same table."""

    name: ClassVar[str] = "_test_table_eval"
    Config: ClassVar[type] = TableConfig

    def _fit(self, train, valid, **options):
        rng = np.random.default_rng(self.config.seed)
        table = rng.integers(1, 6, size=(train.n_users, train.n_items)).astype(np.float32)
        self.params_ = {"table": table, "mu": np.float32(3.0)}

    @staticmethod
    def _score_fn(params, users: jax.Array) -> jax.Array:
        return params["table"][users]

    @staticmethod
    def _predict_fn(params, users: jax.Array, items: jax.Array) -> jax.Array:
        return params["table"][users, items]


class RecommendOnly:
    """A peer-like object: only ``recommend`` in raw ids, delegating to a fitted model."""

    def __init__(self, model, leak=False):
        self.model = model
        self.leak = leak

    def recommend(self, users, k=10, *, exclude_seen=True):
        items, scores = self.model.recommend(users, k, exclude_seen=not self.leak)
        return items, scores


def _frame(seed=0, n_users=30, n_items=25, n=420):
    rng = np.random.default_rng(seed)
    keys = rng.choice(n_users * n_items, size=n, replace=False)
    return pd.DataFrame(
        {
            "user": keys // n_items + 100,  # raw ids differ from codes
            "item": keys % n_items + 1000,
            "rating": rng.integers(1, 6, size=n).astype(np.float32),
        }
    )


@pytest.fixture(scope="module")
def fitted():
    split = random_split(_frame(), 0.3, seed=1)
    return TableModel(seed=3).fit(split), split


def test_per_user_values_match_a_naive_reference(fitted):
    model, split = fitted
    ev = evaluate(model, split, k=(1, 3, 5), metrics=None, n_boot=50)
    table = model.params_["table"]
    train = {(u, i) for u, i in zip(split.train.users, split.train.items, strict=True)}
    pu = ev.per_user.set_index(["user", "metric", "k"])["value"]
    n_checked = 0
    for u in np.unique(split.test.users):
        sel = split.test.users == u
        rel = {
            int(i): float(r) - 3.0
            for i, r in zip(split.test.items[sel], split.test.values[sel], strict=True)
            if r >= 4.0
        }
        raw = split.user_map.ids(np.array([u]))[0]
        if not rel:
            ranked_rows = ev.per_user[ev.per_user["metric"] == "precision"]
            assert raw not in set(ranked_rows["user"])  # excluded, counted below
            continue
        excl = {i for (uu, i) in train if uu == u}
        ranked = naive_rank(table[u], excl, 5)
        for kk in (1, 3, 5):
            ref = naive_metrics(ranked, rel, kk)
            for m in ("precision", "recall", "map", "ndcg", "hit_rate", "mrr"):
                assert pu[(raw, m, kk)] == pytest.approx(ref[m]), (m, kk, u)
        cands = [i for i in range(split.n_items) if i not in excl]
        negs = [i for i in cands if i not in rel]
        assert pu[(raw, "auc", pd.NA)] == pytest.approx(naive_auc(table[u], list(rel), negs))
        n_checked += 1
    assert n_checked == ev.info["n_users"] > 5
    n_test_users = len(np.unique(split.test.users))
    assert ev.info["n_excluded"] == n_test_users - n_checked
    s = ev.summary.set_index(["metric", "k"])
    assert s.loc[("precision", 3), "n_excluded"] == ev.info["n_excluded"]
    assert s.loc[("precision", 3), "mean"] == pytest.approx(
        ev.per_user.query("metric == 'precision' and k == 3")["value"].mean()
    )


def test_rating_metrics_are_pooled_over_test_ratings(fitted):
    model, split = fitted
    ev = evaluate(model, split, k=5, metrics=["rmse", "mae"], n_boot=50)
    pred = model.params_["table"][split.test.users, split.test.items]
    err = pred - split.test.values
    assert ev.value("rmse") == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-6)
    assert ev.value("mae") == pytest.approx(np.mean(np.abs(err)), rel=1e-6)
    row = ev.summary.set_index("metric").loc["rmse"]
    assert row.ci_low < row["mean"] < row.ci_high


def test_generic_recommend_path_gives_the_same_ranking_metrics(fitted):
    model, split = fitted
    fast = evaluate(model, split, k=(3, 5), metrics=["precision", "recall", "map", "ndcg"])
    generic = evaluate(RecommendOnly(model), split, k=(3, 5), metrics=["precision", "map"])
    assert generic.info["path"] == "generic" and fast.info["path"] == "fast"
    a = fast.summary.set_index(["metric", "k"])["mean"]
    b = generic.summary.set_index(["metric", "k"])["mean"]
    for key in b.index:
        assert b[key] == pytest.approx(a[key])


def test_a_peer_that_returns_training_items_is_held_to_the_protocol(fitted, caplog):
    """A peer that leaks training items has them filtered out: its lists, and so its
    metrics, equal those of the fast path that excludes every training item."""
    model, split = fitted
    with caplog.at_level(logging.INFO, logger="mfjax.evaluate"):
        ev = evaluate(RecommendOnly(model, leak=True), split, k=5, metrics=["precision", "ndcg"])
    assert ev.info["filtered_training_items"] > 0
    assert "filtered out by the protocol" in caplog.text
    fast = evaluate(model, split, k=5, metrics=["precision", "ndcg"])
    a = fast.summary.set_index(["metric", "k"])["mean"]
    b = ev.summary.set_index(["metric", "k"])["mean"]
    for key in a.index:
        assert b[key] == pytest.approx(a[key])


def test_same_seed_same_intervals_and_to_metrics_dict(fitted):
    model, split = fitted
    a = evaluate(model, split, k=(5, 10), seed=7, n_boot=200)
    b = evaluate(model, split, k=(5, 10), seed=7, n_boot=200)
    c = evaluate(model, split, k=(5, 10), seed=8, n_boot=200)
    pd.testing.assert_frame_equal(a.summary, b.summary)
    assert not np.allclose(a.summary["ci_low"].dropna(), c.summary["ci_low"].dropna())
    d = a.to_metrics_dict(10)
    for name in ("precision@10", "recall@10", "map@10", "ndcg@10", "hit_rate@10", "mrr@10"):
        lo, hi = d[f"{name}_ci"]
        assert lo <= d[name] <= hi
    assert {"auc", "auc_ci", "rmse", "mae", "coverage@10", "novelty@10"} <= set(d)
    assert "coverage@10_ci" not in d  # documented: no interval for coverage
    assert "precision@5" not in d


def test_bootstrap_interval_width_matches_the_normal_theory():
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    lo, hi = bootstrap_ci(x, n_boot=2000, seed=1)
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    assert hi[0] - lo[0] == pytest.approx(2 * half, rel=0.1)
    assert lo[0] < x.mean() < hi[0]
    # weighted (pooled) statistic: sum(w v) / sum(w)
    lo_w, hi_w = bootstrap_ci(np.array([1.0, 3.0] * 50), weights=np.array([3.0, 1.0] * 50))
    assert lo_w[0] < 1.5 < hi_w[0]


def test_implicit_data_makes_every_test_interaction_relevant():
    df = _frame().assign(rating=1.0)
    split = random_split(df, 0.3, seed=1)
    binary, _, used = relevance(split, threshold=4.0)
    assert used is None and binary.nnz == len(split.test)
    ev = evaluate(TableModel().fit(split), split, k=5, metrics=["precision"])
    assert ev.info["n_excluded"] == 0 and ev.info["threshold"] is None


def test_ratings_below_threshold_are_not_relevant(fitted):
    _, split = fitted
    binary, graded, used = relevance(split, threshold=4.0)
    assert used == 4.0
    assert binary.nnz == int((split.test.values >= 4).sum())
    assert set(np.unique(graded.data)) <= {1.0, 2.0}  # 4 -> 1, 5 -> 2


def test_errors_name_what_to_fix(fitted):
    model, split = fitted
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, split, metrics=["accuracy"])
    with pytest.raises(ValueError, match="k must be"):
        evaluate(model, split, k=0)
    with pytest.raises(DataError, match="takes a mfjax Split"):
        evaluate(model, split.test)
    other = random_split(_frame(seed=5, n_users=20, n=300), 0.3, seed=1)
    with pytest.raises(DataError, match="fit the model on this split"):
        evaluate(model, other)
    with pytest.raises(TypeError, match="recommend"):
        evaluate(object(), split)
    assert isinstance(split, Split)


def test_bootstrap_of_a_column_without_values_is_nan_without_warnings():
    import warnings

    v = np.column_stack([np.arange(10.0), np.full(10, np.nan)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lo, hi = bootstrap_ci(v, n_boot=50)
    assert np.isfinite(lo[0]) and np.isnan(lo[1]) and np.isnan(hi[1])


def test_mesh_path_gives_the_same_metrics(fitted):
    sharding = pytest.importorskip("mfjax.sharding")
    model, split = fitted
    mesh = sharding.make_mesh(data=1, model=1)
    mets = ["precision", "ndcg", "auc"]
    a = evaluate(model, split, k=(3, 5), metrics=mets, n_boot=50)
    b = evaluate(model, split, k=(3, 5), metrics=mets, n_boot=50, mesh=mesh)
    pd.testing.assert_frame_equal(a.summary, b.summary)


def test_no_relevant_item_anywhere_gives_nan_and_a_warning(caplog):
    split = random_split(_frame().assign(rating=2.0), 0.3, seed=1)
    with caplog.at_level(logging.WARNING, logger="mfjax.evaluate"):
        ev = evaluate(TableModel().fit(split), split, k=5, n_boot=20)
    assert "no test user has a relevant item" in caplog.text
    assert ev.info["n_users"] == 0 and ev.info["n_excluded"] == len(np.unique(split.test.users))
    d = ev.to_metrics_dict(5)
    assert d["precision@5"] is None and "precision@5_ci" not in d
    assert d["rmse"] > 0  # rating metrics do not depend on relevance


def test_duplicate_test_pairs_keep_the_last_rating():
    from mfjax.interactions import IdMap, Interactions

    um, im = IdMap(np.array([7, 8]), name="user"), IdMap(np.array([1, 2, 3]), name="item")
    train = Interactions(np.array([0, 1]), np.array([0, 0]), np.array([3.0, 3.0]), um, im)
    test = Interactions(
        np.array([0, 0, 1, 1]), np.array([1, 1, 2, 2]), np.array([5.0, 2.0, 1.0, 4.0]), um, im
    )
    binary, graded, _ = relevance(Split(train=train, test=test), threshold=4.0)
    assert binary.toarray().tolist() == [[0, 0, 0], [0, 0, 1]]
    assert graded[1, 2] == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_blocked_auc_equals_the_rank_formula(seed):
    import scipy.sparse as sp

    from mfjax.evaluate import _auc_rows
    from mfjax.metrics import auc_from_scores

    rng = np.random.default_rng(seed)
    b, n = 40, 60
    scores = rng.integers(0, 4, size=(b, n)).astype(np.float32)  # many ties
    mask = rng.random((b, n)) < 0.2
    pos = (rng.random((b, n)) < 0.1) | (rng.random((b, n)) < 0.05) & mask  # some masked
    pos[0] = False  # a user without positives
    got = _auc_rows(np.where(mask, -np.inf, scores), mask, sp.csr_matrix(pos))
    ref = auc_from_scores(scores, pos, ~mask)
    np.testing.assert_allclose(got, ref, equal_nan=True)
    assert np.isnan(got[0])

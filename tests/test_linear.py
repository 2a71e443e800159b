"""EASE and item-kNN: the model contract, the closed form against an independent numpy
computation, cosine kNN against a naive loop, and item-kNN against implicit's."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp
from model_contract import ModelContract, block_fixture

from mfjax.exceptions import DataError
from mfjax.interactions import Interactions
from mfjax.models import linear
from mfjax.models.linear import EASE, ItemKNN, cosine_item_similarity, ease_weights


class TestEASE(ModelContract):
    bad_hyperparameters = [
        ({"regularization": 0.0}, "regularization"),
        ({"regularization": -5.0}, "regularization"),
        ({"binary": "yes"}, "binary"),
    ]

    def _make_model(self, **overrides):
        return EASE(**{"regularization": 10.0, **overrides})


class TestItemKNN(ModelContract):
    bad_hyperparameters = [
        ({"neighbors": 0}, "neighbors"),
        ({"shrinkage": -1.0}, "shrinkage"),
        ({"binary": 1.5}, "binary"),
    ]

    def _make_model(self, **overrides):
        return ItemKNN(**{"neighbors": 10, **overrides})


def _random_matrix(seed: int, n_users: int = 25, n_items: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.random((n_users, n_items)) < 0.35).astype(np.float64)
    x[:, 0] = 0.0  # an item nobody has: must not break either model
    x[0, 0] = 1.0
    return x


# ----------------------------------------------------------------------------- EASE
@pytest.mark.parametrize("lam", [0.5, 20.0])
def test_ease_matches_constrained_least_squares(lam) -> None:
    # independent route: for each column j, minimise ||X_j - X_{-j} b||^2 + lam ||b||^2 with
    # b_j = 0 explicitly removed (a plain ridge regression on the other columns)
    x = _random_matrix(1)
    b = ease_weights(sp.csr_matrix(x), lam)
    n = x.shape[1]
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        ref = np.linalg.solve(a.T @ a + lam * np.eye(n - 1), a.T @ x[:, j])
        np.testing.assert_allclose(b[others, j], ref, rtol=1e-8, atol=1e-10)
        assert b[j, j] == 0.0
    # and the published formula, computed with a plain inverse
    p = np.linalg.inv(x.T @ x + lam * np.eye(n))
    np.testing.assert_allclose(b, np.eye(n) - p / np.diag(p)[None, :], atol=1e-10)


def test_ease_model_scores_are_rows_times_b() -> None:
    df = block_fixture(seed=0)
    model = EASE(regularization=7.0).fit(df)
    tr = Interactions.from_frame(df)
    x = tr.csr(binary=True).toarray()
    b = ease_weights(x, 7.0)
    fn, params = model.score_function()
    scores = np.asarray(fn(params, np.arange(tr.n_users, dtype=np.int32)))
    np.testing.assert_allclose(scores, x @ b, rtol=1e-4, atol=1e-5)
    # binary=False fits on the ratings themselves
    graded = EASE(regularization=7.0, binary=False).fit(df)
    np.testing.assert_allclose(
        graded.params_["item_weights"], ease_weights(tr.csr().toarray(), 7.0), atol=1e-5
    )


# ----------------------------------------------------------------------------- item-kNN
def _naive_cosine_knn(x: np.ndarray, neighbors: int, shrinkage: float) -> np.ndarray:
    n = x.shape[1]
    sim = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            num = float(np.dot(x[:, i], x[:, j]))
            den = np.sqrt(np.dot(x[:, i], x[:, i])) * np.sqrt(np.dot(x[:, j], x[:, j])) + shrinkage
            sim[i, j] = num / den if den > 0 else 0.0
    out = np.zeros_like(sim)
    for i in range(n):
        # largest first; among equals the smaller item code
        ranked = sorted(range(n), key=lambda j: (-sim[i, j], j))[:neighbors]
        out[i, ranked] = sim[i, ranked]
    return out


@pytest.mark.parametrize(("neighbors", "shrinkage"), [(3, 0.0), (5, 2.0), (50, 0.0)])
def test_cosine_knn_matches_naive_loops(neighbors, shrinkage) -> None:
    x = _random_matrix(2) * np.random.default_rng(3).integers(1, 4, (25, 12))
    got = cosine_item_similarity(sp.csr_matrix(x), neighbors=neighbors, shrinkage=shrinkage)
    np.testing.assert_allclose(got, _naive_cosine_knn(x, neighbors, shrinkage), atol=1e-12)
    assert (np.count_nonzero(got, axis=1) <= neighbors).all()


def test_itemknn_scores_sum_neighbour_similarities() -> None:
    df = block_fixture(seed=0)
    tr = Interactions.from_frame(df)
    x = tr.csr(binary=True).toarray()
    model = ItemKNN(neighbors=4, shrinkage=1.0).fit(df)
    fn, params = model.score_function()
    scores = np.asarray(fn(params, np.arange(tr.n_users, dtype=np.int32)))
    np.testing.assert_allclose(scores, x @ _naive_cosine_knn(x, 4, 1.0), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Method expects CSR input")
def test_itemknn_ranks_like_implicit_cosine() -> None:
    pytest.importorskip("implicit")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from implicit.nearest_neighbours import CosineRecommender

    rng = np.random.default_rng(4)
    # graded values: no tied similarities, so the pruning is unambiguous
    dense = (rng.random((60, 40)) < 0.2) * rng.uniform(1.0, 5.0, (60, 40))
    x = sp.csr_matrix(dense.astype(np.float32))
    k = 8
    theirs = CosineRecommender(K=k + 1)  # implicit counts the item itself among its K
    theirs.fit(x, show_progress=False)
    ours = cosine_item_similarity(x, neighbors=k)
    their_scores = np.asarray((x @ theirs.similarity).todense())
    our_scores = x.toarray() @ ours
    unseen = x.toarray() == 0  # the self-similarity only reaches seen items
    np.testing.assert_allclose(our_scores[unseen], their_scores[unseen], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- errors
def test_too_large_catalogue_and_bad_options_raise(monkeypatch) -> None:
    df = block_fixture(seed=0)
    monkeypatch.setattr(linear, "MAX_DENSE_BYTES", 1000)
    for cls in (EASE, ItemKNN):
        with pytest.raises(DataError, match="k_core"):
            cls().fit(df)
    monkeypatch.undo()
    with pytest.raises(TypeError, match="no options"):
        EASE().fit(df, progress=True)
    nan = df.assign(rating=df["rating"].where(df.index != 3, np.nan))
    with pytest.raises(DataError, match="row 3"):
        ItemKNN(binary=False).fit(nan)

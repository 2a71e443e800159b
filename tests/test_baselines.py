"""Baselines: random, popularity, bias-only — the contract plus their own known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from model_contract import BLOCK_ITEMS, BLOCK_USERS, ModelContract, block_fixture

from mfjax.models.baselines import Bias, Popularity, Random


class TestRandom(ModelContract):
    bad_hyperparameters = [({"seed": -1}, "seed"), ({"seed": 1.5}, "seed")]

    def _make_model(self, **overrides):
        return Random(**{"seed": 0, **overrides})

    def test_known_answer(self, fitted, data) -> None:
        # no signal: own-community share of the top-5 is near the base rate, not near 1
        users = np.arange(100, 100 + BLOCK_USERS)
        ids, _ = fitted.recommend(users, k=5)
        assert len({tuple(r) for r in ids.tolist()}) > BLOCK_USERS // 2, "lists must differ by user"
        counts = pd.Series(ids.ravel()).value_counts()
        assert len(counts) >= BLOCK_ITEMS * 0.8, (
            "a random ranking should reach most of the catalogue"
        )

    def test_other_seed_other_order(self, data) -> None:
        a = Random(seed=0).fit(data).recommend(100, k=10, exclude_seen=False)[0]
        b = Random(seed=1).fit(data).recommend(100, k=10, exclude_seen=False)[0]
        assert not np.array_equal(a, b)


class TestPopularity(ModelContract):
    bad_hyperparameters = [({"weighted": "yes"}, "weighted")]

    def _make_model(self, **overrides):
        return Popularity(**overrides)

    def test_known_answer(self, fitted, data) -> None:
        # naive reference: pandas counts, unseen items, ties broken by item code (stable)
        counts = data["item"].value_counts()
        for user in (100, 133):
            seen = set(data.loc[data["user"] == user, "item"])
            ref = counts.drop(index=list(seen))
            ref = ref.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
            ids, scores = fitted.recommend(user, k=5)
            np.testing.assert_array_equal(scores, ref.to_numpy()[:5].astype(np.float32))
            assert set(ids.tolist()) <= set(ref.index[ref >= ref.iloc[4]])

    def test_weighted_sums_values(self) -> None:
        df = pd.DataFrame(
            {"user": [1, 2, 3, 1], "item": [7, 7, 8, 9], "rating": [1.0, 1.0, 5.0, 1.0]}
        )
        ids, scores = Popularity(weighted=True).fit(df).recommend(2, k=2)
        assert ids.tolist() == [8, 9] and scores.tolist() == [5.0, 1.0]


class TestBias(ModelContract):
    bad_hyperparameters = [
        ({"reg_user": -1.0}, "reg_user"),
        ({"reg_item": float("nan")}, "reg_item"),
        ({"epochs": 0}, "epochs"),
    ]
    learns_communities = False

    def _make_model(self, **overrides):
        return Bias(**overrides)

    def test_known_answer(self, fitted, data) -> None:
        # the best-rated unseen item (by item bias) comes first for every user
        users = np.arange(100, 100 + BLOCK_USERS)
        ids, _ = fitted.recommend(users, k=1)
        bias = dict(zip(fitted.item_map_.values, fitted.params_["item_bias"], strict=True))
        for u, (best,) in zip(users, ids, strict=True):
            unseen = set(range(1000, 1000 + BLOCK_ITEMS)) - set(data.loc[data["user"] == u, "item"])
            assert bias[best] == pytest.approx(max(bias[i] for i in unseen))

    def test_exact_without_regularisation(self) -> None:
        # a purely additive matrix is recovered exactly: r = 3 + a_u + c_i on a full grid
        a = np.array([-1.0, 0.0, 0.5, 1.0])
        c = np.array([0.3, -0.2, -0.1])
        u, i = np.meshgrid(np.arange(4), np.arange(3), indexing="ij")
        df = pd.DataFrame(
            {"user": u.ravel(), "item": i.ravel(), "rating": (3 + a[u] + c[i]).ravel()}
        )
        m = Bias(reg_user=0.0, reg_item=0.0, epochs=20).fit(df)
        np.testing.assert_allclose(m.predict(df["user"], df["item"]), df["rating"], atol=1e-5)

    def test_matches_surprise_baseline_only(self) -> None:
        surprise = pytest.importorskip("surprise")
        df = block_fixture(seed=3)
        reader = surprise.Reader(rating_scale=(1, 5))
        ds = surprise.Dataset.load_from_df(df[["user", "item", "rating"]], reader)
        trainset = ds.build_full_trainset()
        algo = surprise.BaselineOnly(
            bsl_options={"method": "als", "reg_u": 15, "reg_i": 10, "n_epochs": 10}, verbose=False
        )
        algo.fit(trainset)
        ours = Bias(reg_user=15.0, reg_item=10.0, epochs=10).fit(df)
        pairs = df.sample(50, random_state=0)
        theirs = [
            algo.predict(u, i, clip=False).est
            for u, i in zip(pairs["user"], pairs["item"], strict=True)
        ]
        np.testing.assert_allclose(
            ours.predict(pairs["user"], pairs["item"]), theirs, rtol=1e-4, atol=1e-4
        )

    def test_validation_rmse_in_history(self) -> None:
        df = block_fixture(seed=0)
        valid = df.sample(40, random_state=1)
        m = Bias(epochs=3).fit(df.drop(index=valid.index), valid=valid)
        assert list(m.history_["epoch"]) == [1, 2, 3] and "valid_rmse" in m.history_
        pred = m.predict(valid["user"], valid["item"])
        rmse = float(np.sqrt(np.mean((pred - valid["rating"].to_numpy()) ** 2)))
        assert m.history_["valid_rmse"].iloc[-1] == pytest.approx(rmse, rel=1e-4)

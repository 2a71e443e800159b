"""The contract every mfjax model passes: one mixin, one known-answer fixture.

Usage in a model's test module::

    from tests.model_contract import ModelContract   # or: from model_contract import ...

    class TestMF(ModelContract):
        bad_hyperparameters = [({"factors": 0}, "factors"), ({"lr": -1.0}, "lr")]

        def _make_model(self, **overrides):
            return MF(factors=8, epochs=30, seed=0, **overrides)

The mixin fits the model on :func:`block_fixture`, a planted two-community matrix: users
``0..n/2-1`` rate items of their own community high (4-5) and a few items of the other
community low (1). The right answer is known: after excluding seen items, a user's
recommendations come from their own community, and a rating model predicts own-community
items above other-community items. Ranking models are fitted on the positives only (ratings >= 4). Models that
cannot learn communities (popularity,
random) override :meth:`ModelContract.test_known_answer` with their own known answer.

Hooks and knobs a test class sets:

* ``_make_model(**overrides)`` (required): a fresh, unfitted model with fixed seed;
* ``bad_hyperparameters``: ``[(kwargs, field_name), ...]`` that must raise ``ValueError``
  naming the field when the model is constructed (before anything compiles);
* ``deterministic_params``: False only for models whose params are not arrays to compare;
* ``known_answer_min_hit``: fraction of top-5 slots in the user's own community required.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from mfjax.exceptions import NotFittedError, UnknownIdError
from mfjax.interactions import Interactions
from mfjax.models.base import RatingRecommender, Recommender, load

__all__ = ["ModelContract", "block_fixture", "BLOCK_USERS", "BLOCK_ITEMS"]

BLOCK_USERS = 40
BLOCK_ITEMS = 30


def block_fixture(*, seed: int = 0, str_ids: bool = False) -> pd.DataFrame:
    """A planted two-community ratings frame with a known right answer.

    Users ``u < 20`` belong to community 0 with items ``i < 15``; the others to community 1.
    Each user rates 8 of the 15 items of their own community 4 or 5, and 2 items of the
    other community 1. Raw ids are ints offset by 100 (users) and 1000 (items), or strings
    ``"u7"`` / ``"i3"`` with ``str_ids=True``, so that codes never equal raw ids.
    """
    rng = np.random.default_rng(seed)
    half_u, half_i = BLOCK_USERS // 2, BLOCK_ITEMS // 2
    rows = []
    for u in range(BLOCK_USERS):
        g = u // half_u
        own = np.arange(g * half_i, (g + 1) * half_i)
        other = np.arange((1 - g) * half_i, (2 - g) * half_i)
        for i in rng.choice(own, 8, replace=False):
            rows.append((u, int(i), float(rng.integers(4, 6))))
        for i in rng.choice(other, 2, replace=False):
            rows.append((u, int(i), 1.0))
    df = pd.DataFrame(rows, columns=["user", "item", "rating"])
    df["timestamp"] = np.arange(len(df), dtype=np.int64)
    if str_ids:
        df["user"] = "u" + df["user"].astype(str)
        df["item"] = "i" + df["item"].astype(str)
    else:
        df["user"] = df["user"] + 100
        df["item"] = df["item"] + 1000
    return df


def _community_of_user(raw: object) -> int:
    code = int(str(raw).lstrip("u")) - (0 if isinstance(raw, str) else 100)
    return code // (BLOCK_USERS // 2)


def _community_of_item(raw: object) -> int:
    code = int(str(raw).lstrip("i")) - (0 if isinstance(raw, (str, np.str_)) else 1000)
    return code // (BLOCK_ITEMS // 2)


class ModelContract:
    """Tests every model passes. Subclass it in a ``Test*`` class and define ``_make_model``."""

    bad_hyperparameters: list[tuple[dict, str]] = []
    known_answer_min_hit: float = 0.9

    # ------------------------------------------------------------------ hooks
    def _make_model(self, **overrides: object) -> Recommender:
        raise NotImplementedError("define _make_model(**overrides) in the test class")

    # ------------------------------------------------------------------ fixtures
    def _fixture(self, *, str_ids: bool = False) -> pd.DataFrame:
        """The block fixture; ranking models (``kind == 'ranking'``) get its positives only
        (ratings >= 4), as implicit-feedback models would be given in practice."""
        df = block_fixture(seed=0, str_ids=str_ids)
        if self._make_model().kind == "ranking":
            df = df[df["rating"] >= 4].reset_index(drop=True)
        return df

    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> pd.DataFrame:
        return cls()._fixture()

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: pd.DataFrame) -> Recommender:
        return cls()._make_model().fit(data)

    # ------------------------------------------------------------------ basics
    def test_is_registered_recommender(self) -> None:
        model = self._make_model()
        assert isinstance(model, Recommender)
        assert model.name != "base"
        assert dataclasses.is_dataclass(model.Config)
        assert model.Config.__dataclass_params__.frozen, "Config must be a frozen dataclass"
        assert isinstance(type(model).__dict__.get("_score_fn"), staticmethod), (
            "_score_fn must be a staticmethod (pure, module-level identity)"
        )

    def test_not_fitted_raises(self) -> None:
        model = self._make_model()
        with pytest.raises(NotFittedError):
            model.recommend(100, k=3)

    def test_bad_hyperparameters_raise_before_compiling(self) -> None:
        # Construction validates the Config: the error comes before fit(), so before any jit.
        for kwargs, field_name in self.bad_hyperparameters:
            with pytest.raises(ValueError, match=field_name):
                self._make_model(**kwargs)

    def test_fit_sets_finite_params_and_history(self, fitted: Recommender) -> None:
        assert isinstance(fitted.params_, dict) and fitted.params_
        for key, value in fitted.params_.items():
            arr = np.asarray(value)
            assert isinstance(value, np.ndarray), f"params_['{key}'] must be a numpy array"
            if np.issubdtype(arr.dtype, np.floating):
                assert np.isfinite(arr).all(), f"params_['{key}'] has NaN/inf"
        assert isinstance(fitted.history_, pd.DataFrame)
        if len(fitted.history_):
            assert {"epoch", "loss", "seconds"} <= set(fitted.history_.columns)
        assert fitted.fit_seconds_ is not None and fitted.fit_seconds_ >= 0

    def test_score_fn_shape_and_jit(self, fitted: Recommender) -> None:
        fn, params = fitted.score_function()
        users = jnp.asarray(np.array([0, 3, 7], dtype=np.int32))
        scores = np.asarray(jax.jit(fn)(params, users))
        assert scores.shape == (3, BLOCK_ITEMS)
        assert np.isfinite(scores).all()

    # ------------------------------------------------------------------ known answer
    def test_known_answer(self, fitted: Recommender) -> None:
        users = np.array([100 + u for u in range(BLOCK_USERS)])
        ids, _ = fitted.recommend(users, k=5)
        hits = np.array(
            [
                [_community_of_item(i) == _community_of_user(u) for i in row]
                for u, row in zip(users, ids, strict=True)
            ]
        )
        assert hits.mean() >= self.known_answer_min_hit, (
            f"only {hits.mean():.2f} of top-5 slots in the user's own community"
        )

    # ------------------------------------------------------------------ recommend
    def test_recommend_excludes_seen_distinct_sorted(
        self, fitted: Recommender, data: pd.DataFrame
    ) -> None:
        users = np.array([100, 101, 125, 139])
        ids, scores = fitted.recommend(users, k=6)
        assert ids.shape == (4, 6) and scores.shape == (4, 6)
        for u, row, srow in zip(users, ids, scores, strict=True):
            seen = set(data.loc[data["user"] == u, "item"])
            assert not (set(row.tolist()) & seen), "recommended a seen item"
            assert len(set(row.tolist())) == 6, "ids must be distinct"
            assert set(row.tolist()) <= set(data["item"]), "ids must be raw catalogue ids"
            assert np.all(np.diff(srow) <= 1e-6), "scores must be sorted best first"

    def test_recommend_without_exclusion_can_return_seen(self, fitted: Recommender) -> None:
        ids, scores = fitted.recommend(100, k=BLOCK_ITEMS, exclude_seen=False)
        assert sorted(ids.tolist()) == list(range(1000, 1000 + BLOCK_ITEMS))
        assert np.all(np.diff(scores) <= 1e-6)

    def test_recommend_fewer_items_than_k(self, fitted: Recommender, data: pd.DataFrame) -> None:
        left = BLOCK_ITEMS - int((data["user"] == 100).sum())
        ids, scores = fitted.recommend(100, k=BLOCK_ITEMS)
        assert (ids[:left] >= 1000).all() and (ids[left:] == -1).all()
        assert np.isfinite(scores[:left]).all() and np.isneginf(scores[left:]).all()

    def test_single_id_vs_many(self, fitted: Recommender) -> None:
        one_ids, one_scores = fitted.recommend(105, k=4)
        many_ids, many_scores = fitted.recommend([105, 130], k=4)
        assert one_ids.shape == (4,) and many_ids.shape == (2, 4)
        np.testing.assert_array_equal(one_ids, many_ids[0])
        np.testing.assert_allclose(one_scores, many_scores[0], rtol=1e-6)

    def test_items_restriction(self, fitted: Recommender) -> None:
        allowed = [1001, 1003, 1020, 1025, 1029]
        ids, _ = fitted.recommend([101, 131], k=3, items=allowed, exclude_seen=False)
        assert set(ids.ravel().tolist()) <= set(allowed)

    def test_unknown_user_raises_or_falls_back(self, fitted: Recommender) -> None:
        with pytest.raises(UnknownIdError, match="unknown user"):
            fitted.recommend(99999, k=3)
        ids, scores = fitted.recommend([99999, 100], k=3, unknown="popular")
        pop_order = np.argsort(-fitted.item_popularity_, kind="stable")[:3]
        np.testing.assert_array_equal(ids[0], fitted.item_map_.ids(pop_order))
        assert np.isfinite(scores).all()

    def test_string_ids(self) -> None:
        data = self._fixture(str_ids=True)
        model = self._make_model().fit(data)
        ids, _ = model.recommend("u3", k=4)
        assert ids.dtype.kind == "U" and all(i.startswith("i") for i in ids)
        seen = set(data.loc[data["user"] == "u3", "item"])
        assert not set(ids.tolist()) & seen
        many, _ = model.recommend(np.array(["u3", "u30"]), k=4)
        np.testing.assert_array_equal(many[0], ids)
        # str ids sort differently from ints ("i10" < "i2"): the map, not the order, matters
        assert _community_of_item(model.item_map_.values[0]) == 0

    def test_fit_accepts_interactions(self, data: pd.DataFrame, fitted: Recommender) -> None:
        model = self._make_model().fit(Interactions.from_frame(data))
        np.testing.assert_array_equal(model.recommend(110, k=5)[0], fitted.recommend(110, k=5)[0])

    # ------------------------------------------------------------------ persistence, determinism
    def test_save_load_roundtrip(self, fitted: Recommender, tmp_path) -> None:
        path = fitted.save(tmp_path / "model.npz")
        loaded = load(path)
        assert type(loaded) is type(fitted)
        assert loaded.config == fitted.config or type(loaded.config) is type(fitted.config)
        users = [100, 117, 120, 139]
        a_ids, a_scores = fitted.recommend(users, k=5)
        b_ids, b_scores = loaded.recommend(users, k=5)
        np.testing.assert_array_equal(a_ids, b_ids)
        np.testing.assert_allclose(a_scores, b_scores, rtol=1e-6)
        if isinstance(fitted, RatingRecommender):
            np.testing.assert_array_equal(
                fitted.predict(users, [1000, 1001, 1020, 1029]),
                loaded.predict(users, [1000, 1001, 1020, 1029]),
            )

    def test_determinism_same_seed(self, data: pd.DataFrame) -> None:
        a = self._make_model().fit(data)
        b = self._make_model().fit(data)
        assert a.params_.keys() == b.params_.keys()
        for key in a.params_:
            np.testing.assert_array_equal(a.params_[key], b.params_[key], err_msg=key)
        np.testing.assert_array_equal(a.recommend(100, k=5)[0], b.recommend(100, k=5)[0])

    # ------------------------------------------------------------------ rating models
    def test_predict_contract(self, fitted: Recommender) -> None:
        if not isinstance(fitted, RatingRecommender):
            pytest.skip("ranking model: no predict()")
        users = np.array([100, 100, 125])
        items = np.array([1000, 1020, 1029])
        pred = fitted.predict(users, items)
        assert pred.shape == (3,) and pred.dtype == np.float32 and np.isfinite(pred).all()
        # broadcasting: one user against many items
        np.testing.assert_allclose(
            fitted.predict(100, items), fitted.predict([100] * 3, items), rtol=1e-6
        )
        # predict agrees with the scores used for ranking
        fn, params = fitted.score_function()
        u_codes = fitted.user_map_.codes(users)
        i_codes = fitted.item_map_.codes(items)
        scores = np.asarray(fn(params, jnp.asarray(u_codes.astype(np.int32))))
        np.testing.assert_allclose(pred, scores[np.arange(3), i_codes], rtol=1e-5, atol=1e-5)
        # global mean kept for fallbacks
        assert "mu" in fitted.params_
        with pytest.raises(UnknownIdError):
            fitted.predict(99999, 1000)
        fallback = fitted.predict([99999], [1000], unknown="mean")
        np.testing.assert_allclose(fallback, [float(fitted.params_["mu"])], rtol=1e-6)

    def test_known_answer_ratings(self, fitted: Recommender) -> None:
        if not isinstance(fitted, RatingRecommender) or not getattr(
            self, "learns_communities", True
        ):
            pytest.skip("ranking model or bias-only model")
        # for every user, unseen own-community items are predicted above unseen other ones
        users = np.repeat(np.arange(100, 100 + BLOCK_USERS), BLOCK_ITEMS)
        items = np.tile(np.arange(1000, 1000 + BLOCK_ITEMS), BLOCK_USERS)
        pred = fitted.predict(users, items).reshape(BLOCK_USERS, BLOCK_ITEMS)
        half_u, half_i = BLOCK_USERS // 2, BLOCK_ITEMS // 2
        own = np.concatenate([pred[:half_u, :half_i].ravel(), pred[half_u:, half_i:].ravel()])
        other = np.concatenate([pred[:half_u, half_i:].ravel(), pred[half_u:, :half_i].ravel()])
        assert own.mean() - other.mean() > 1.5, (own.mean(), other.mean())

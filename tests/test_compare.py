"""compare(): roster handling, seeds, paired tests with Holm, examples; external adapters."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np
import pandas as pd
import pytest
from scipy import stats

import mfjax.compare as C
from mfjax.compare import compare, default_roster, holm, paired_tests
from mfjax.evaluate import evaluate
from mfjax.models.base import Recommender
from mfjax.splits import random_split
from mfjax.topk import top_k_blocked


@dataclass(frozen=True)
class OracleConfig:
    noise: float = 1.0
    seed: int = 0


class Oracle(Recommender):
    """Knows the planted taste (item code parity == user code parity) plus seeded noise."""

    name: ClassVar[str] = "_test_oracle_cmp"
    Config: ClassVar[type] = OracleConfig

    def _fit(self, train, valid, **options):
        rng = np.random.default_rng(self.config.seed)
        u = np.arange(train.n_users)[:, None] % 2
        i = np.arange(train.n_items)[None, :] % 2
        table = (u == i).astype(np.float32) + self.config.noise * rng.random(
            (train.n_users, train.n_items), dtype=np.float32
        )
        self.params_ = {"table": table}

    @staticmethod
    def _score_fn(params, users: jax.Array) -> jax.Array:
        return params["table"][users]


class Broken(Oracle):
    name: ClassVar[str] = "_test_broken_cmp"

    def _fit(self, train, valid, **options):
        raise RuntimeError("diverged at epoch 3; lower the learning rate")


def planted_frame(seed=0, n_users=40, n_items=30):
    """Users like (rating 5) items of their own parity, dislike (1) the others."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        for i in rng.choice(n_items, size=12, replace=False):
            rows.append((u, i, 5.0 if (u % 2) == (i % 2) else 1.0))
    return pd.DataFrame(rows, columns=["user", "item", "rating"])


@pytest.fixture(scope="module")
def split():
    return random_split(planted_frame(), 0.3, seed=0)


@pytest.fixture(scope="module")
def result(split):
    from mfjax.models.baselines import Popularity, Random

    titles = pd.DataFrame({"item": np.arange(30), "title": [f"Film {i}" for i in range(30)]})
    return compare(
        {
            "oracle": lambda seed: Oracle(noise=0.5, seed=seed),
            "noisy": Oracle(noise=5.0),
            "popularity": Popularity,
            "random": Random(),
            "broken": Broken,
        },
        split,
        seeds=(0, 1),
        k=(5,),
        primary="ndcg@5",
        metadata=titles,
        n_boot=100,
    )


def test_table_seeds_and_timings(result):
    t = result.table
    assert result.info["models"] == ["oracle", "noisy", "popularity", "random"]
    assert "broken" in result.skipped and "lower the learning rate" in result.skipped["broken"]
    assert len(result.runs) == 4 * 2
    assert (result.runs["fit_seconds"] >= 0).all() and (result.runs["eval_seconds"] > 0).all()
    row = t[(t.model == "oracle") & (t.metric == "ndcg") & (t.k == 5)].iloc[0]
    means = [result.evaluations[("oracle", s)].value("ndcg", 5) for s in (0, 1)]
    assert row["mean"] == pytest.approx(np.mean(means))
    assert row["seed_std"] == pytest.approx(np.std(means, ddof=1))
    assert set(t.loc[t.baseline, "model"]) == {"popularity", "random"}
    wide = result.wide(5)
    assert list(wide.index) == result.info["models"]
    assert wide.loc["oracle", "ndcg@5"] > wide.loc["random", "ndcg@5"]


def test_best_baseline_and_paired_tests_match_scipy(result):
    t = result.table
    sel = t[(t.metric == "ndcg") & (t.k == 5) & t.baseline].set_index("model")["mean"]
    assert result.best_baseline == sel.idxmax()
    sig = result.significance
    assert set(sig["model"]) == {"oracle", "noisy", "popularity", "random"} - {result.best_baseline}
    row = sig[(sig.model == "oracle") & (sig.metric == "precision")].iloc[0]
    pu = result.per_user[(result.per_user.metric == "precision") & (result.per_user.k == 5)]
    avg = pu.groupby(["model", "user"])["value"].mean()
    a, b = avg.loc["oracle"], avg.loc[result.best_baseline]
    a, b = a.align(b, join="inner")
    assert row["t_p"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert row["w_p"] == pytest.approx(stats.wilcoxon(a, b).pvalue)
    block = sig[sig.metric == "precision"]
    np.testing.assert_allclose(block["t_p_holm"], holm(block["t_p"].to_numpy()))
    assert bool(row["significant"]) and row["diff"] > 0


def test_examples_show_titles_and_what_users_liked(result, split):
    ex, liked = result.examples, result.liked
    assert set(ex["model"]) == set(result.info["models"])
    assert ex.groupby(["user", "model"]).size().max() == 5
    assert (ex["title"] == ex["item"].map(lambda i: f"Film {i}")).all()
    assert liked["rating"].min() >= 4.0 and set(liked["user"]) <= set(ex["user"])
    test = split.test.to_frame()
    for r in ex[ex.relevant].itertuples():
        assert ((test.user == r.user) & (test.item == r.item) & (test.rating >= 4)).any()


def test_metrics_dict_for_metrics_json(result):
    d = result.to_metrics_dict(5)
    assert set(d) == set(result.info["models"])
    for name in ("precision@5", "recall@5", "map@5", "ndcg@5"):
        lo, hi = d["oracle"][f"{name}_ci"]
        assert lo <= d["oracle"][name] <= hi
    assert d["oracle"]["seeds"] == 2 and d["oracle"]["external"] is False
    assert "ndcg@5_seed_std" in d["oracle"] and d["oracle"]["fit_seconds"] >= 0


def test_holm_hand_values():
    # sorted p: .01 (x3), .03 (x2), .04 (x1) -> .03, .06, max(.06, .04) = .06
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, np.nan, 0.6]), [1.0, np.nan, 1.0])  # m = 2
    assert paired_tests(np.ones(5), np.ones(5))["t_p"] == 1.0


def test_default_roster_skips_unavailable_models_with_a_reason(monkeypatch, caplog):
    monkeypatch.setitem(C._ROSTER, "ghost", ("mfjax.models.no_such_module", "ghost", {}))
    monkeypatch.setitem(C._ROSTER, "unregistered", ("mfjax.models.baselines", "nope", {}))
    with caplog.at_level(logging.INFO, logger="mfjax.compare"):
        factories, skipped = default_roster(["popularity", "ghost", "unregistered"])
    assert list(factories) == ["popularity"]
    assert "not available" in skipped["ghost"] and "no model registered" in skipped["unregistered"]
    assert "skipping ghost" in caplog.text
    with pytest.raises(ValueError, match="unknown roster name"):
        default_roster(["svd++"])
    assert factories["popularity"](3).name == "popularity"


def test_explicit_data_trains_ranking_models_on_positives(split):
    res = compare({"oracle": Oracle, "pop": C.default_roster(["popularity"])[0]["popularity"]},
                  split, k=5, primary="ndcg@5", n_boot=20)  # fmt: skip
    assert res.info["trained_on"] == {"oracle": "positives", "pop": "positives"}
    res = compare({"pop": C.default_roster(["popularity"])[0]["popularity"]}, split, k=5,
                  primary="ndcg@5", n_boot=20, train_on="all")  # fmt: skip
    assert res.info["trained_on"] == {"pop": "all"}


# ----------------------------------------------------------------------------- external
def test_implicit_als_adapter_matches_implicit_and_evaluates(split):
    pytest.importorskip("implicit")
    from mfjax.external import ImplicitALS

    model = ImplicitALS(factors=8, iterations=5, seed=0).fit(split)
    users = split.user_map.values[:5]
    ids, scores = model.recommend(users, k=4)
    raw, _ = model.model_.recommend(np.arange(5), split.train.csr()[:5], N=4)
    np.testing.assert_array_equal(ids, split.item_map.values[raw])
    # its scores (used for AUC) rank exactly as its own recommend()
    fn, params = model.score_function()
    codes, _ = top_k_blocked(fn, params, np.arange(5), split.n_items, 4, exclude=model.seen_)
    np.testing.assert_array_equal(split.item_map.values[codes], ids)
    ev = evaluate(model, split, k=5, metrics=["precision", "ndcg", "auc"], n_boot=20)
    assert ev.info["path"] == "generic" and ev.info["filtered_training_items"] == 0
    assert 0.0 < ev.value("auc") < 1.0
    assert 0.0 <= ev.value("precision", 5) <= 1.0
    assert ImplicitALS.unavailable_reason() is None


def test_implicit_bpr_adapter_matches_implicit(split):
    pytest.importorskip("implicit")
    from mfjax.external import ImplicitBPR

    model = ImplicitBPR(factors=8, iterations=5, seed=0).fit(split)
    ids, _ = model.recommend(split.user_map.values[:5], k=4)
    raw, _ = model.model_.recommend(np.arange(5), split.train.csr()[:5], N=4)
    np.testing.assert_array_equal(ids, split.item_map.values[raw])
    one, _ = model.recommend(split.user_map.values[0], k=4)
    np.testing.assert_array_equal(one, ids[0])
    train = split.train.csr()
    for u in range(5):  # no training item comes back
        assert not set(raw[u]) & set(train[u].indices)
    again = ImplicitBPR(factors=8, iterations=5, seed=0).fit(split)  # same seed, same model
    np.testing.assert_array_equal(again.model_.item_factors, model.model_.item_factors)


def test_surprise_svd_adapter_predicts_like_surprise(split):
    pytest.importorskip("surprise")
    from mfjax.external import SurpriseSVD

    model = SurpriseSVD(n_factors=4, n_epochs=3, seed=0).fit(split)
    test = split.test
    ours = model.predict(split.user_map.ids(test.users[:20]), split.item_map.ids(test.items[:20]))
    ref = [
        model.algo_.predict(int(u), int(i)).est
        for u, i in zip(test.users[:20], test.items[:20], strict=True)
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-9)
    fn, params = model.score_function()
    codes, _ = top_k_blocked(fn, params, np.arange(6), split.n_items, 5, exclude=model.seen_)
    np.testing.assert_array_equal(
        split.item_map.values[codes], model.recommend(split.user_map.values[:6], k=5)[0]
    )
    ev = evaluate(model, split, k=5, metrics=["precision", "rmse"], n_boot=20)
    assert ev.info["filtered_training_items"] == 0
    full = model.predict(split.user_map.ids(test.users), split.item_map.ids(test.items))
    assert ev.value("rmse") == pytest.approx(np.sqrt(np.mean((full - test.values) ** 2)))


def test_missing_package_is_reported(monkeypatch):
    from mfjax.external import ImplicitBPR

    monkeypatch.setattr(ImplicitBPR, "package", "no_such_package_xyz")
    reason = ImplicitBPR.unavailable_reason()
    assert "no_such_package_xyz" in reason and "pip install" in reason
    with pytest.raises(ImportError, match="not installed"):
        ImplicitBPR(factors=4).fit(planted_frame())


def test_plots_draw_what_the_table_says(result, split):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mfjax.plots.evaluation import (
        metric_at_k_plot,
        metric_bars_plot,
        per_user_activity_plot,
        time_quality_plot,
    )

    t = result.table
    ax = metric_bars_plot(result, ("precision", "ndcg"), k=5)
    heights = [p.get_height() for p in ax.patches][: len(result.info["models"])]
    expect = t[(t.metric == "precision") & (t.k == 5)].set_index("model")["mean"]
    np.testing.assert_allclose(heights, expect.loc[result.info["models"]].to_numpy())
    ax = metric_at_k_plot(result, "recall")
    assert len(ax.get_lines()) == len(result.info["models"])
    ax = per_user_activity_plot(result, split, "ndcg", 5, bins=2)
    assert ax.get_xlabel().startswith("training interactions")
    ax = time_quality_plot(result, "ndcg@5")
    assert {a.get_text() for a in ax.texts} == set(result.info["models"])
    ev = result.evaluations[("oracle", 0)]
    assert len(metric_at_k_plot(ev, "ndcg").get_lines()) == 1
    with pytest.raises(ValueError, match="no ndcg_graded@K"):
        metric_at_k_plot(ev, "ndcg_graded")
    plt.close("all")


def test_same_seeds_same_comparison(split):
    def run():
        res = compare({"oracle": Oracle, "noisy": Oracle(noise=5.0)}, split, seeds=(3,), k=5,
                      primary="ndcg@5", baseline="noisy", n_boot=50)  # fmt: skip
        return res.table.drop(columns=["fit_seconds", "eval_seconds"]), res.significance

    (t1, s1), (t2, s2) = run(), run()
    pd.testing.assert_frame_equal(t1, t2)
    pd.testing.assert_frame_equal(s1, s2)
    assert set(s1["baseline"]) == {"noisy"}
    with pytest.raises(ValueError, match="not among the models run"):
        compare({"oracle": Oracle}, split, k=5, primary="ndcg@5", baseline="ghost", n_boot=10)


def test_bad_arguments_fail_before_any_training(split):
    calls = []

    def factory(seed):
        calls.append(seed)
        return Oracle(seed=seed)

    with pytest.raises(ValueError, match="primary must name a computed metric"):
        compare({"o": factory}, split, primary="accuracy@10")
    with pytest.raises(ValueError, match="train_on"):
        compare({"o": factory}, split, train_on="some")
    from mfjax.exceptions import DataError

    with pytest.raises(DataError, match="'item' and 'title'"):
        compare({"o": factory}, split, metadata=pd.DataFrame({"movie": [1], "name": ["x"]}))
    assert calls == []

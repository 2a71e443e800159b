"""Metrics: hand-computed values, a naive reference written separately, and ranx parity."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfjax import metrics as M

# ----------------------------------------------------------------------------- naive reference
# Deliberately plain Python, one user at a time, written from the textbook definitions and
# sharing no code with mfjax.metrics.


def naive_rank(scores, exclude, k):
    """Items by descending score, ties to the lower item id, excluded items left out."""
    cand = [i for i in range(len(scores)) if i not in exclude]
    cand.sort(key=lambda i: (-scores[i], i))
    return cand[:k]


def naive_metrics(ranked, rel, k, map_den="min"):
    """``rel``: {item: grade}. Returns a dict of the user's metric values at k."""
    top = ranked[:k]
    hits = [1 if i in rel else 0 for i in top]
    n_rel = len(rel)
    out = {"precision": sum(hits) / k, "hit_rate": float(any(hits))}
    out["recall"] = sum(hits) / n_rel
    ap = 0.0
    seen = 0
    for r, h in enumerate(hits, start=1):
        if h:
            seen += 1
            ap += seen / r
    out["map"] = ap / (min(k, n_rel) if map_den == "min" else n_rel)
    out["mrr"] = 0.0
    for r, h in enumerate(hits, start=1):
        if h:
            out["mrr"] = 1.0 / r
            break
    dcg = sum(h / math.log2(r + 1) for r, h in enumerate(hits, start=1))
    idcg = sum(1.0 / math.log2(r + 1) for r in range(1, min(k, n_rel) + 1))
    out["ndcg"] = dcg / idcg
    g = [rel.get(i, 0.0) for i in top]
    gdcg = sum(x / math.log2(r + 1) for r, x in enumerate(g, start=1))
    ideal = sorted(rel.values(), reverse=True)[:k]
    gidcg = sum(x / math.log2(r + 1) for r, x in enumerate(ideal, start=1))
    out["ndcg_graded"] = gdcg / gidcg
    edcg = sum((2**x - 1) / math.log2(r + 1) for r, x in enumerate(g, start=1))
    eidcg = sum((2**x - 1) / math.log2(r + 1) for r, x in enumerate(ideal, start=1))
    out["ndcg_exp"] = edcg / eidcg
    return out


def naive_auc(scores, positives, negatives):
    total = 0.0
    for p in positives:
        for n in negatives:
            total += 1.0 if scores[p] > scores[n] else 0.5 if scores[p] == scores[n] else 0.0
    return total / (len(positives) * len(negatives))


# ----------------------------------------------------------------------------- hand values
def test_hand_computed_example():
    # one user; ranked list [3, 1, 0, 4]; relevant {1: grade 2, 4: grade 1, 5: grade 1}
    recs = np.array([[3, 1, 0, 4]])
    rel = sp.csr_matrix(
        (np.array([2.0, 1.0, 1.0]), (np.zeros(3, int), np.array([1, 4, 5]))), shape=(1, 6)
    )
    g = M.gains_matrix(recs, rel)
    assert g.tolist() == [[0.0, 2.0, 0.0, 1.0]]
    n_rel = np.array([3])
    assert M.precision_at_k(g, 4)[0] == pytest.approx(2 / 4)
    assert M.recall_at_k(g, n_rel, 4)[0] == pytest.approx(2 / 3)
    # hits at ranks 2 and 4: AP = (1/2 + 2/4) / min(4, 3) = 1/3; with |R|: the same here
    assert M.map_at_k(g, n_rel, 4)[0] == pytest.approx(1 / 3)
    assert M.map_at_k(g, n_rel, 2)[0] == pytest.approx((1 / 2) / 2)  # min(2, 3) = 2
    assert M.map_at_k(g, n_rel, 2, denominator="all")[0] == pytest.approx((1 / 2) / 3)
    assert M.mrr_at_k(g, 4)[0] == pytest.approx(0.5)
    assert M.mrr_at_k(g, 1)[0] == 0.0
    assert M.hit_rate_at_k(g, 1)[0] == 0.0 and M.hit_rate_at_k(g, 2)[0] == 1.0
    binary = (g > 0).astype(float)
    ideal_b = M.ideal_gains(rel.astype(bool).astype(float), 4)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(binary, ideal_b, 4)[0] == pytest.approx(dcg / idcg)
    ideal_g = M.ideal_gains(rel, 4)
    assert ideal_g.tolist() == [[2.0, 1.0, 1.0, 0.0]]
    gdcg = 2 / math.log2(3) + 1 / math.log2(5)
    gidcg = 2 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(g, ideal_g, 4)[0] == pytest.approx(gdcg / gidcg)
    edcg = 3 / math.log2(3) + 1 / math.log2(5)
    eidcg = 3 + 1 / math.log2(3) + 1 / math.log2(4)
    assert M.ndcg_at_k(g, ideal_g, 4, form="exponential")[0] == pytest.approx(edcg / eidcg)


def test_users_without_relevant_items_give_nan():
    g = np.zeros((2, 3))
    n_rel = np.array([0, 2])
    assert np.isnan(M.recall_at_k(g, n_rel, 3)[0]) and M.recall_at_k(g, n_rel, 3)[1] == 0.0
    assert np.isnan(M.map_at_k(g, n_rel, 3)[0])
    assert np.isnan(M.ndcg_at_k(g, np.zeros((2, 3)), 3)).all()


def test_empty_slots_are_misses():
    recs = np.array([[2, -1, -1]])
    rel = sp.csr_matrix(np.array([[0, 0, 1.0]]))
    g = M.gains_matrix(recs, rel)
    assert g.tolist() == [[1.0, 0.0, 0.0]]
    assert M.precision_at_k(g, 3)[0] == pytest.approx(1 / 3)  # still divided by k


def test_rating_metrics_hand_values():
    assert M.rmse([1, 2, 3, 4], [1, 2, 3, 6]) == pytest.approx(1.0)
    assert M.mae([1, 2, 3, 4], [2, 2, 3, 6]) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="y_pred has 1"):
        M.rmse([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="empty"):
        M.mae([], [])


def test_beyond_accuracy_hand_values():
    recs = np.array([[0, 1], [1, 2], [1, -1]])
    assert M.catalog_coverage(recs, 5, 2) == pytest.approx(3 / 5)
    assert M.catalog_coverage(recs, 5, 1) == pytest.approx(2 / 5)
    pop = np.array([4, 2, 1, 0, 0])  # of 4 training users
    nov = M.novelty_at_k(recs, pop, 4, 2)
    assert nov.tolist() == pytest.approx([(0 + 1) / 2, (1 + 2) / 2, 1.0])
    arp = M.popularity_at_k(recs, pop, 4, 2)
    assert arp.tolist() == pytest.approx([(1 + 0.5) / 2, (0.5 + 0.25) / 2, 0.5])
    # an item nobody trained on is clipped to one user: finite novelty
    assert M.novelty_at_k(np.array([[3]]), pop, 4, 1)[0] == pytest.approx(2.0)


def test_auc_hand_values_and_ties():
    s = np.array([[3.0, 1.0, 2.0, 2.0]])
    pos = np.array([[False, False, True, False]])
    # positive 2 (score 2) vs negatives 0 (3), 1 (1), 3 (2): 0 + 1 + 0.5 over 3
    assert M.auc_from_scores(s, pos)[0] == pytest.approx(1.5 / 3)
    cand = np.array([[False, True, True, True]])  # item 0 is a training item
    assert M.auc_from_scores(s, pos, cand)[0] == pytest.approx(1.5 / 2)
    assert np.isnan(M.auc_from_scores(s, np.zeros((1, 4), bool))[0])


def test_bad_arguments_name_the_parameter():
    with pytest.raises(ValueError, match="denominator"):
        M.map_at_k(np.zeros((1, 2)), np.ones(1), 2, denominator="R")
    with pytest.raises(ValueError, match="form"):
        M.ndcg_at_k(np.zeros((1, 2)), np.ones((1, 2)), 2, form="log")
    with pytest.raises(ValueError, match="k must be"):
        M.precision_at_k(np.zeros((1, 2)), 0)
    with pytest.raises(ValueError, match="align the rows"):
        M.gains_matrix(np.zeros((2, 2), int), sp.csr_matrix((3, 4)))
    with pytest.raises(ValueError, match="n_relevant"):
        M.recall_at_k(np.zeros((2, 2)), np.ones(3), 2)


# ----------------------------------------------------------------------------- random cases
@st.composite
def ranking_cases(draw):
    """Users with tied scores, training items, graded relevance; some with no relevant
    item and some with fewer relevant items than K."""
    k = draw(st.integers(1, 6))
    n_users = draw(st.integers(1, 6))
    n_items = draw(st.integers(k + 4, 24))
    users = []
    for _ in range(n_users):
        scores = draw(st.lists(st.integers(0, 3), min_size=n_items, max_size=n_items))
        train = set(draw(st.lists(st.integers(0, n_items - 1), max_size=4)))
        rel_items = draw(st.lists(st.integers(0, n_items - 1), max_size=8, unique=True))
        grades = draw(st.lists(st.integers(1, 3), min_size=len(rel_items), max_size=len(rel_items)))
        rel = {i: float(g) for i, g in zip(rel_items, grades, strict=True) if i not in train}
        users.append((np.array(scores, float), train, rel))
    return k, n_items, users


def _arrays(k, n_items, users):
    recs = np.array([naive_rank(s, tr, k) for s, tr, _ in users])
    rows, cols, vals = [], [], []
    for u, (_, _, rel) in enumerate(users):
        for i, g in rel.items():
            rows.append(u)
            cols.append(i)
            vals.append(g)
    graded = sp.csr_matrix((vals, (rows, cols)), shape=(len(users), n_items))
    binary = graded.copy()
    binary.data[:] = 1.0
    return recs, graded, binary


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ranking_cases())
def test_fast_metrics_match_naive_reference(case):
    k, n_items, users = case
    recs, graded, binary = _arrays(k, n_items, users)
    g = M.gains_matrix(recs, binary)
    gg = M.gains_matrix(recs, graded)
    n_rel = np.diff(binary.indptr)
    for kk in range(1, k + 1):
        got = {
            "precision": M.precision_at_k(g, kk),
            "recall": M.recall_at_k(g, n_rel, kk),
            "map": M.map_at_k(g, n_rel, kk),
            "map_all": M.map_at_k(g, n_rel, kk, denominator="all"),
            "ndcg": M.ndcg_at_k(g, M.ideal_gains(binary, kk), kk),
            "ndcg_graded": M.ndcg_at_k(gg, M.ideal_gains(graded, kk), kk),
            "ndcg_exp": M.ndcg_at_k(gg, M.ideal_gains(graded, kk), kk, form="exponential"),
            "hit_rate": M.hit_rate_at_k(g, kk),
            "mrr": M.mrr_at_k(g, kk),
        }
        for u, (_, _, rel) in enumerate(users):
            if not rel:  # no relevant item: undefined, excluded by the evaluator
                assert np.isnan(got["recall"][u]) and np.isnan(got["map"][u])
                assert np.isnan(got["ndcg"][u])
                continue
            ref = naive_metrics(list(recs[u]), rel, kk)
            ref["map_all"] = naive_metrics(list(recs[u]), rel, kk, map_den="all")["map"]
            for name, vals in got.items():
                assert vals[u] == pytest.approx(ref[name], abs=1e-12), (name, kk, u)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ranking_cases())
def test_metrics_match_ranx(case):
    ranx = pytest.importorskip("ranx")
    k, n_items, users = case
    recs, graded, binary = _arrays(k, n_items, users)
    keep = [u for u, (_, _, rel) in enumerate(users) if rel]
    if not keep:
        return
    qrels = {f"q{u:03d}": {f"d{i}": int(g) for i, g in users[u][2].items()} for u in keep}
    # our ranking, given to ranx as strictly decreasing scores so no tie-break intervenes
    run = {f"q{u:03d}": {f"d{i}": float(k - r) for r, i in enumerate(recs[u])} for u in keep}
    names = [f"{m}@{k}" for m in ("precision", "recall", "map", "ndcg", "mrr", "hit_rate")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), names, return_mean=False)
    g = M.gains_matrix(recs, binary)[keep]
    gg = M.gains_matrix(recs, graded)[keep]
    n_rel = np.diff(binary.indptr)[keep]
    ours = {
        "precision": M.precision_at_k(g, k),
        "recall": M.recall_at_k(g, n_rel, k),
        "map": M.map_at_k(g, n_rel, k, denominator="all"),  # ranx divides by |R|
        "ndcg": M.ndcg_at_k(gg, M.ideal_gains(graded[keep], k), k),  # ranx: linear gains
        "mrr": M.mrr_at_k(g, k),
        "hit_rate": M.hit_rate_at_k(g, k),
    }
    for name, vals in ours.items():
        np.testing.assert_allclose(vals, ref[f"{name}@{k}"], atol=1e-9, err_msg=name)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 12).flatmap(
        lambda n: st.tuples(
            st.lists(st.integers(0, 2), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
            st.lists(st.booleans(), min_size=n, max_size=n),
        )
    )
)
def test_auc_matches_pairwise_definition(case):
    scores, pos, cand = (np.array(x) for x in case)
    got = M.auc_from_scores(scores[None, :].astype(float), pos[None, :], cand[None, :])[0]
    positives = [i for i in range(len(scores)) if pos[i] and cand[i]]
    negatives = [i for i in range(len(scores)) if cand[i] and not pos[i]]
    if not positives or not negatives:
        assert np.isnan(got)
    else:
        assert got == pytest.approx(naive_auc(scores, positives, negatives))


def test_docstring_examples_hold():
    import doctest

    import mfjax.compare
    import mfjax.evaluate
    import mfjax.topk

    for module in (M, mfjax.topk, mfjax.evaluate, mfjax.compare):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__

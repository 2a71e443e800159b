"""Evaluation speed: mfjax's blocked full ranking against implicit's ``recommend``.

Both rank the same random factors (6,040 users × 3,706 items, 64 factors) over the whole
catalogue with each user's training items excluded (1 M distinct training pairs) and keep
the top 10: ours with :func:`mfjax.topk.top_k_blocked` (jitted blocks: scores → mask →
``lax.top_k``), implicit with ``AlternatingLeastSquares.recommend(userids, user_items,
N=10, filter_already_liked_items=True)`` on the same factors (``OPENBLAS_NUM_THREADS=1``,
as implicit asks). Each side is warmed up once (our compilation), then timed as the
median of ``repeats`` runs; the ratio is ours / theirs in users per second. The share of
identical top-10 lists (in the row's ``note``) checks that both rank the same thing.

It also times a whole :func:`mfjax.evaluate.evaluate` at k = 10 on that data (a train/test
split of the 1 M pairs plus 250 k test ratings), with the default metrics and with the
four ranking metrics only.

Usage::

    .venv/bin/python benchmarks/bench_eval.py            # full size
    .venv/bin/python benchmarks/bench_eval.py --quick    # small, for a smoke run

Harness contract: ``run(*, quick=False) -> {"rows": [...], "summary": {...}}``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import ClassVar  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from mfjax.interactions import IdMap, Interactions  # noqa: E402
from mfjax.models.base import RatingRecommender  # noqa: E402
from mfjax.splits import Split  # noqa: E402
from mfjax.topk import top_k_blocked  # noqa: E402


def dot_scores(params: dict, users: jax.Array) -> jax.Array:
    """``U[users] @ V.T``: the scorer every factor model shares."""
    return params["user_factors"][users] @ params["item_factors"].T


@dataclass(frozen=True)
class _FixedConfig:
    seed: int = 0


class _FixedFactors(RatingRecommender):
    """Given factors, no training: what evaluate() sees of a fitted MF."""

    name: ClassVar[str] = "_bench_fixed_factors"
    Config: ClassVar[type] = _FixedConfig

    def _fit(self, train, valid, **options):
        self.params_ = dict(self.factors)

    @staticmethod
    def _score_fn(params, users):
        return params["mu"] + params["user_factors"][users] @ params["item_factors"].T

    @staticmethod
    def _predict_fn(params, users, items):
        u, v = params["user_factors"][users], params["item_factors"][items]
        return params["mu"] + (u * v).sum(-1)


def make_data(n_users: int, n_items: int, n_pairs: int, factors: int, *, seed: int = 0):
    """Random factors and ``n_pairs`` distinct (user, item) training pairs (Zipf-like items),
    plus a disjoint set of test ratings (a quarter as many)."""
    rng = np.random.default_rng(seed)
    u = (rng.normal(size=(n_users, factors)) * 0.1).astype(np.float32)
    v = (rng.normal(size=(n_items, factors)) * 0.1).astype(np.float32)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.8
    pop /= pop.sum()
    n_total = int(n_pairs * 1.25)
    keys = np.unique(
        rng.integers(0, n_users, 3 * n_total).astype(np.int64) * n_items
        + rng.choice(n_items, 3 * n_total, p=pop)
    )
    keys = rng.permutation(keys)[:n_total]
    if len(keys) < n_total:
        raise RuntimeError(f"only {len(keys)} distinct pairs drawn; lower n_pairs")
    train_k, test_k = np.sort(keys[:n_pairs]), keys[n_pairs:]
    seen = sp.csr_matrix(
        (np.ones(n_pairs, np.float32), (train_k // n_items, train_k % n_items)),
        shape=(n_users, n_items),
    )
    return u, v, seen, train_k, test_k


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(*, quick: bool = False) -> dict:
    """Run the benchmark; returns ``{"rows": [...], "summary": {...}}`` (see module doc)."""
    if quick:
        n_users, n_items, n_pairs, repeats = 1000, 800, 60_000, 2
    else:
        n_users, n_items, n_pairs, repeats = 6040, 3706, 1_000_000, 3
    factors, k = 64, 10
    dataset = f"synthetic {n_users}x{n_items}, {n_pairs} train pairs, f={factors}"
    u, v, seen, train_k, test_k = make_data(n_users, n_items, n_pairs, factors)
    users = np.arange(n_users)
    params = {"user_factors": jax.numpy.asarray(u), "item_factors": jax.numpy.asarray(v)}

    def ours():
        return top_k_blocked(dot_scores, params, users, n_items, k, exclude=seen)

    ours()  # compile
    t_ours = _median_time(ours, repeats)
    our_items, _ = ours()
    rows = [
        dict(benchmark="topk_users_per_second", dataset=dataset, ours=n_users / t_ours,
             peer=None, unit="users/s", ratio=None)
    ]  # fmt: skip
    summary: dict = {}
    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, "blas"):
            from implicit.cpu.als import AlternatingLeastSquares

            als = AlternatingLeastSquares(factors=factors, random_state=0)
        als.user_factors, als.item_factors = u, v

        def theirs():
            return als.recommend(users, seen, N=k, filter_already_liked_items=True)

        theirs()
        t_theirs = _median_time(theirs, repeats)
        their_items, _ = theirs()
        same = float(np.mean(np.all(np.asarray(their_items) == our_items, axis=1)))
        ratio = (n_users / t_ours) / (n_users / t_theirs)
        rows[0].update(
            peer=n_users / t_theirs,
            ratio=ratio,
            note=f"top-{k} over all items, training items excluded; identical lists: {same:.1%}",
        )
        summary["eval_vs_implicit_users_per_second"] = ratio
        summary["eval_identical_topk_share"] = same
    except ImportError as exc:
        summary["eval_vs_implicit_users_per_second"] = None
        summary["skipped"] = f"implicit is not installed ({exc})"

    # a whole evaluate() at k = 10 on the same data
    from mfjax.evaluate import evaluate

    rng = np.random.default_rng(1)
    umap, imap = IdMap(np.arange(n_users), name="user"), IdMap(np.arange(n_items), name="item")
    ratings = lambda n: rng.integers(1, 6, n).astype(np.float32)  # noqa: E731
    train = Interactions(train_k // n_items, train_k % n_items, ratings(len(train_k)), umap, imap)
    test = Interactions(test_k // n_items, test_k % n_items, ratings(len(test_k)), umap, imap)
    split = Split(train=train, test=test)
    model = _FixedFactors()
    model.factors = {"user_factors": u, "item_factors": v, "mu": np.float32(3.0)}
    model.fit(split)
    for label, metrics in (
        ("evaluate_k10_default_metrics", None),
        ("evaluate_k10_precision_recall_map_ndcg", ["precision", "recall", "map", "ndcg"]),
    ):
        evaluate(model, split, k=(k,), metrics=metrics)  # compile
        t = _median_time(lambda m=metrics: evaluate(model, split, k=(k,), metrics=m), repeats)
        rows.append(dict(benchmark=label, dataset=dataset, ours=t, peer=None, unit="s",
                         ratio=None))  # fmt: skip
        summary[f"{label}_seconds"] = t
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    res = run(quick=args.quick)
    for r in res["rows"]:
        peer = "" if r["peer"] is None else f"  peer {r['peer']:.4g}"
        ratio = "" if r["ratio"] is None else f"  ratio {r['ratio']:.2f}"
        print(f"{r['benchmark']:<42} ours {r['ours']:.4g} {r['unit']}{peer}{ratio}")
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()

"""BPR against implicit's BPR: epoch throughput and ranking quality, side by side.

``python benchmarks/bench_bpr.py [--quick]`` or through ``benchmarks/run.py``:

1. **Throughput** on 1 M synthetic pairs (6,040 × 3,706, k = 64, all pairs positive,
   equal epochs): mfjax BPR (defaults: plain SGD, batches of 16,384; and adam, batches of
   1,024) against
   ``implicit.cpu.bpr.BayesianPersonalizedRanking`` (``OPENBLAS_NUM_THREADS=1``, all
   cores, as its documentation recommends). One epoch = one sampled triple per training
   pair on both sides. Ours: median per-epoch wall time after the compiling epoch (from
   ``history_``); implicit: fit time / iterations, median of repeated fits.
2. **Quality on MovieLens 100k**: ratings ≥ 4 as positives, per-user random 80/20 split,
   k = 10, training items excluded; precision@10 and NDCG@10 of mfjax BPR (defaults),
   implicit BPR (its defaults: 100 factors, 100 iterations, lr 0.01, reg 0.01) and
   popularity, all scored by the same code (:mod:`mfjax.metrics`).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy.sparse as sp  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import ml100k, per_user_split, row, synthetic_pairs  # noqa: E402

from mfjax import metrics  # noqa: E402
from mfjax.interactions import Interactions  # noqa: E402
from mfjax.models.baselines import Popularity  # noqa: E402
from mfjax.models.bpr import BPR  # noqa: E402

FACTORS = 64
#: the previous default (better by ~0.005 P@10 on ML-100k, ~7x slower per epoch)
ADAM = {"optimizer": "adam", "learning_rate": 0.005, "batch_size": 1024}


def _implicit_bpr(**kw):
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    return BayesianPersonalizedRanking(random_state=0, **kw)


def throughput(n: int, *, epochs: int, repeats: int) -> tuple[list[dict], dict]:
    df = synthetic_pairs(n=n, seed=0)
    train = Interactions.from_frame(df, value=None)
    csr = train.csr(binary=True)
    times = {}
    for name, kw in (("default", {}), ("adam", ADAM)):
        m = BPR(factors=FACTORS, epochs=epochs, seed=0, **kw).fit(train)
        times[name] = float(np.median(m.history_["seconds"].to_numpy()[1:]))
    peer = []
    for _ in range(repeats):
        model = _implicit_bpr(factors=FACTORS, iterations=epochs)
        t0 = time.perf_counter()
        model.fit(csr, show_progress=False)
        peer.append((time.perf_counter() - t0) / epochs)
    times["implicit"] = float(np.median(peer))
    c = BPR.Config()
    thr = {k: len(train) / v for k, v in times.items()}
    label = f"synthetic {n / 1e6:g}M"
    rows = [
        row(
            benchmark=f"bpr_epoch_throughput_{name}",
            dataset=label,
            ours=thr[name],
            peer=thr["implicit"],
            unit="samples/s",
            ratio=thr[name] / thr["implicit"],
            note=note,
        )
        for name, note in (
            (
                "default",
                f"mfjax defaults ({c.optimizer} lr {c.learning_rate}, batch {c.batch_size}); {epochs} epochs each",
            ),
            (
                "adam",
                f"adam lr {ADAM['learning_rate']}, batch {ADAM['batch_size']}; {epochs} epochs each",
            ),
        )
    ]
    summary = {
        "bpr_vs_implicit_throughput": thr["default"] / thr["implicit"],
        "bpr_adam_vs_implicit_throughput": thr["adam"] / thr["implicit"],
        "bpr_seconds_per_epoch": times,
    }
    return rows, summary


def _scores(rec_codes: np.ndarray, rel: sp.csr_matrix, k: int = 10) -> tuple[float, float]:
    gains = metrics.gains_matrix(rec_codes, rel)
    p = float(np.mean(metrics.precision_at_k(gains, k)))
    nd = float(np.nanmean(metrics.ndcg_at_k(gains, metrics.ideal_gains(rel, k), k)))
    return p, nd


def quality_ml100k(*, quick: bool) -> tuple[list[dict], dict]:
    df = ml100k()
    if df is None:
        return [
            row(
                benchmark="bpr_ml100k_ranking", dataset="ml-100k", note="skipped: no MFJAX_DATA_DIR"
            )
        ], {}
    pos = df[df["rating"] >= 4]
    tr_df, te_df = per_user_split(pos, test_fraction=0.2, seed=0)
    train = Interactions.from_frame(tr_df, value=None)
    test = Interactions.from_frame(
        te_df, user_map=train.user_map, item_map=train.item_map, unknown="drop"
    )
    users = np.unique(test.users)
    rel = sp.csr_matrix(
        (np.ones(len(test)), (test.users, test.items)), shape=(train.n_users, train.n_items)
    )[users]
    seen = train.csr(binary=True)
    out = {}
    t0 = time.perf_counter()
    ours = BPR(seed=0, **({"epochs": 10} if quick else {})).fit(train)
    t_ours = time.perf_counter() - t0
    ids, _ = ours.recommend(train.user_map.ids(users), k=10)
    out["ours"] = _scores(train.item_map.codes(ids.ravel()).reshape(ids.shape), rel)
    peer = _implicit_bpr(**({"iterations": 10} if quick else {}))
    t0 = time.perf_counter()
    peer.fit(seen, show_progress=False)
    t_peer = time.perf_counter() - t0
    rec, _ = peer.recommend(users, seen[users], N=10, filter_already_liked_items=True)
    out["implicit"] = _scores(np.asarray(rec), rel)
    pop = Popularity().fit(train)
    ids, _ = pop.recommend(train.user_map.ids(users), k=10)
    out["popularity"] = _scores(train.item_map.codes(ids.ravel()).reshape(ids.shape), rel)
    c = BPR.Config()
    hp = f"factors={c.factors}, epochs={c.epochs}, {c.optimizer} lr={c.learning_rate}, reg={c.reg}, batch={c.batch_size}, {c.negatives} negatives"
    rows = [
        row(
            benchmark=f"bpr_ml100k_{metric}@10",
            dataset="ml-100k ≥4, per-user 80/20",
            ours=t_ours,
            peer=t_peer,
            unit="fit seconds",
            ratio=t_ours / t_peer,
            quality_ours=out["ours"][j],
            quality_peer=out["implicit"][j],
            note=f"popularity: {out['popularity'][j]:.4f}; ours: {hp}; peer: implicit BPR defaults",
        )
        for j, metric in enumerate(("precision", "ndcg"))
    ]
    summary = {
        "bpr_ml100k_precision@10": out["ours"][0],
        "bpr_ml100k_ndcg@10": out["ours"][1],
        "implicit_bpr_ml100k_precision@10": out["implicit"][0],
        "implicit_bpr_ml100k_ndcg@10": out["implicit"][1],
        "popularity_ml100k_precision@10": out["popularity"][0],
        "popularity_ml100k_ndcg@10": out["popularity"][1],
    }
    return rows, summary


def run(*, quick: bool = False) -> dict:
    """The harness entry point: ``{"rows": [...], "summary": {...}}``."""
    rows, summary = [], {}
    for part in (
        lambda: throughput(
            100_000 if quick else 1_000_000, epochs=4 if quick else 8, repeats=1 if quick else 2
        ),
        lambda: quality_ml100k(quick=quick),
    ):
        r, s = part()
        rows += r
        summary.update(s)
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    import json

    result = run(quick="--quick" in sys.argv)
    print(pd.DataFrame(result["rows"]).to_string())
    print(json.dumps(result["summary"], indent=2, default=float))

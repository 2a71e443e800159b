"""The training engine: compilation, sparse updates, stopping rules, NaN, checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from jax import monitoring

from mfjax.exceptions import ModelFitError
from mfjax.models import mf
from mfjax.models.base import load
from mfjax.models.mf import MF, mf_loss
from mfjax.optim import make_optimizer, make_schedule, rowwise_adagrad
from mfjax.train import (
    EngineSpec,
    _epoch_randomness,
    _sparse_apply,
    auto_batch_size,
    epoch_layout,
    fit_loop,
    init_state,
)


def _ratings(seed: int = 0, n_users: int = 80, n_items: int = 50, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, 3))
    q = rng.normal(size=(n_items, 3))
    u = rng.integers(0, n_users, n)
    i = rng.integers(0, n_items, n)
    r = np.clip(3.5 + (p[u] * q[i]).sum(1) + 0.3 * rng.normal(size=n), 1, 5)
    return pd.DataFrame({"user": u, "item": i, "rating": r.astype(np.float32)})


def _mf(**kw) -> MF:
    base = {
        "factors": 4,
        "epochs": 6,
        "optimizer": "adam",
        "learning_rate": 0.02,
        "batch_size": 128,
    }
    return MF(**{**base, **kw})


# ---------------------------------------------------------------------------- compilation
def test_no_recompilation_after_first_epoch() -> None:
    events: list[str] = []
    after_first = {"flag": False}

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration" and after_first["flag"]:
            events.append(event)

    def callback(epoch: int, row: dict) -> None:
        after_first["flag"] = epoch >= 1

    df = _ratings(0, n=1700)  # every fit in this module trains on 1,500 rows: equal shapes
    train, valid = df.iloc[:1500], df.iloc[1500:]
    monitoring.register_event_duration_secs_listener(listener)
    try:
        m = _mf(epochs=5, factors=3).fit(train, valid=valid, callback=callback)
    finally:
        monitoring.unregister_event_duration_listener(listener)
    assert len(m.history_) == 5
    assert events == [], f"{len(events)} compilation(s) after epoch 1"


def test_compile_counter_sees_compilations() -> None:
    # the listener used above does observe compilations (so the test above can fail)
    seen: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(event)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.jit(lambda x: x * 3.0 + 1.0)(jnp.ones(7)).block_until_ready()
    finally:
        monitoring.unregister_event_duration_listener(listener)
    assert seen


# ---------------------------------------------------------------------------- sparse updates
def _dense_step(tx, table, idx, grads):
    dense = jnp.zeros_like(table).at[idx].add(grads)
    state = tx.init(table)
    upd, _ = tx.update(dense, state, table)
    return table + upd


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad"])
def test_sparse_update_equals_dense_update(optimizer: str) -> None:
    # sgd and adagrad: the sparse per-row update equals the dense full-table update exactly
    rng = np.random.default_rng(0)
    table = jnp.asarray(rng.normal(size=(20, 3)), jnp.float32)
    idx = jnp.asarray([3, 7, 3, 19, 0, 7, 7], jnp.int32)  # duplicates are summed
    grads = jnp.asarray(rng.normal(size=(7, 3)), jnp.float32)
    spec = EngineSpec(
        loss_fn=None, gathers=(("t", "t", "x"),), optimizer=optimizer, learning_rate=0.1
    )
    state = init_state(spec, {"t": table})
    new, _ = _sparse_apply(spec, table, state.opt_state["t"], idx, grads, jnp.int32(0))
    ref = _dense_step(make_optimizer(optimizer, learning_rate=0.1), table, idx, grads)
    np.testing.assert_allclose(new, ref, rtol=1e-6, atol=1e-6)


def test_lazy_adam_touches_only_batch_rows_and_matches_dense_on_them() -> None:
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(30, 4)), jnp.float32)
    idx = jnp.asarray([1, 5, 5, 29, 30], jnp.int32)  # 30 == n_rows: a masked slot, ignored
    grads = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
    spec = EngineSpec(
        loss_fn=None, gathers=(("t", "t", "x"),), optimizer="adam", learning_rate=0.01
    )
    state = init_state(spec, {"t": table})
    new, opt = _sparse_apply(spec, table, state.opt_state["t"], idx, grads, jnp.int32(0))
    touched = np.array([1, 5, 29])
    untouched = np.setdiff1d(np.arange(30), touched)
    np.testing.assert_array_equal(np.asarray(new)[untouched], np.asarray(table)[untouched])
    ref = _dense_step(optax.adam(0.01), table, idx[:4], grads[:4])  # first step: dense == lazy
    np.testing.assert_allclose(
        np.asarray(new)[touched], np.asarray(ref)[touched], rtol=1e-5, atol=1e-6
    )
    mu = opt[0].mu
    assert np.all(np.asarray(mu)[untouched] == 0) and np.any(np.asarray(mu)[touched] != 0)


def test_rowwise_adagrad_transform_matches_hand_computation() -> None:
    # s_r += mean_j g_rj², w_r -= lr g_r / (sqrt(s_r) + eps); a 1-D parameter: per entry
    tx = rowwise_adagrad(0.5, initial_accumulator_value=0.1, eps=1e-7)
    w = {"m": jnp.zeros((2, 2)), "b": jnp.zeros(2)}
    st = tx.init(w)
    g1 = {"m": jnp.array([[1.0, 3.0], [0.0, 0.0]]), "b": jnp.array([2.0, -1.0])}
    u1, st = tx.update(g1, st)
    s1 = 0.1 + (1 + 9) / 2  # row 0 of m: 5.1; row 1 untouched: 0.1
    np.testing.assert_allclose(u1["m"][0], -0.5 * np.array([1.0, 3.0]) / np.sqrt(s1), rtol=1e-6)
    np.testing.assert_array_equal(u1["m"][1], [0.0, 0.0])
    np.testing.assert_allclose(
        u1["b"], -0.5 * np.array([2.0, -1.0]) / np.sqrt([4.1, 1.1]), rtol=1e-6
    )
    g2 = {"m": jnp.array([[2.0, 0.0], [1.0, 1.0]]), "b": jnp.array([0.0, 1.0])}
    u2, st = tx.update(g2, st)
    np.testing.assert_allclose(u2["m"][0], -0.5 * np.array([2.0, 0.0]) / np.sqrt(s1 + 2), rtol=1e-6)
    np.testing.assert_allclose(u2["m"][1], -0.5 * np.array([1.0, 1.0]) / np.sqrt(1.1), rtol=1e-6)
    np.testing.assert_allclose(st[0].sum_of_squares["b"], [4.1, 2.1], rtol=1e-6)


@pytest.mark.parametrize("width", [None, 3])
def test_rowwise_adagrad_sparse_step_matches_numpy_reference(width: int | None) -> None:
    # The engine's one-scatter path: every occurrence adds its own mean squared gradient to
    # its row's accumulator; the row then moves by -lr * (sum of its gradients) / sqrt(acc).
    rng = np.random.default_rng(4)
    n_rows, lr, eps = 9, 0.2, 1e-7
    shape = (n_rows,) if width is None else (n_rows, width)
    table = rng.normal(size=shape).astype(np.float32)
    spec = EngineSpec(
        loss_fn=None, gathers=(("t", "t", "x"),), optimizer="rowwise_adagrad", learning_rate=lr
    )
    assert spec.additive and not spec.plain_sgd
    tab, opt = jnp.asarray(table), init_state(spec, {"t": jnp.asarray(table)}).opt_state["t"]
    ref_w, ref_s = table.astype(np.float64), np.full(n_rows, 0.1)
    for step in range(3):
        idx = rng.integers(0, n_rows, size=12)
        idx[:3] = idx[3]  # one row four times
        g = rng.normal(size=(12,) + shape[1:]).astype(np.float32)
        tab, opt = _sparse_apply(
            spec, tab, opt, jnp.asarray(idx, jnp.int32), jnp.asarray(g), jnp.int32(step)
        )
        sq = (g.astype(np.float64) ** 2).reshape(12, -1).mean(axis=1)
        np.add.at(ref_s, idx, sq)
        total = np.zeros_like(ref_w)
        np.add.at(total, idx, g)
        factor = lr / (np.sqrt(ref_s) + eps)
        ref_w = ref_w - (factor if width is None else factor[:, None]) * total
        np.testing.assert_allclose(np.asarray(tab), ref_w, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(np.asarray(opt[0].sum_of_squares), ref_s, rtol=1e-5)


def test_rowwise_adagrad_sparse_equals_dense_transform_without_duplicates() -> None:
    rng = np.random.default_rng(5)
    table = jnp.asarray(rng.normal(size=(20, 4)), jnp.float32)
    idx = jnp.asarray([3, 7, 19, 0], jnp.int32)
    grads = jnp.asarray(rng.normal(size=(4, 4)), jnp.float32)
    spec = EngineSpec(
        loss_fn=None, gathers=(("t", "t", "x"),), optimizer="rowwise_adagrad", learning_rate=0.1
    )
    new, _ = _sparse_apply(
        spec, table, init_state(spec, {"t": table}).opt_state["t"], idx, grads, jnp.int32(0)
    )
    ref = _dense_step(rowwise_adagrad(0.1), table, idx, grads)
    np.testing.assert_allclose(new, ref, rtol=1e-6, atol=1e-6)


def test_fit_loop_leaves_the_callers_arrays_alone() -> None:
    # the epoch donates its state; the tables the caller handed in must stay usable
    df = _ratings(0, n=300)
    spec = EngineSpec(
        loss_fn=mf_loss, gathers=mf._GATHERS, optimizer="rowwise_adagrad", hyper=(("loss", "mse"),)
    )
    params = mf.init_params(jax.random.PRNGKey(0), mf.MFConfig(factors=3), 80, 50)
    before = {k: np.asarray(v).copy() for k, v in params.items()}
    aux = {"mu": jnp.float32(3.0), "reg": jnp.float32(0.1), "reg_bias": jnp.float32(0.0)}
    data = {
        "users": df["user"].to_numpy(),
        "items": df["item"].to_numpy(),
        "values": df["rating"].to_numpy(),
    }
    fit_loop(spec, params, data, aux, epochs=2, batch_size=64)
    for k, v in params.items():
        np.testing.assert_array_equal(np.asarray(v), before[k])


@pytest.mark.parametrize("optimizer", ["adam", "adagrad", "rmsprop", "momentum"])
def test_per_occurrence_path_equals_unique_path(optimizer: str) -> None:
    # Named optimizers take the sorted per-occurrence path; the same transformation handed in
    # ready-made takes the jnp.unique + segment_sum path. Several steps with duplicate and
    # masked (== n_rows) indices must give the same tables and optimizer state.
    rng = np.random.default_rng(2)
    n_rows = 12
    table = jnp.asarray(rng.normal(size=(n_rows, 5)), jnp.float32)
    named = EngineSpec(
        loss_fn=None, gathers=(("t", "t", "x"),), optimizer=optimizer, learning_rate=0.05
    )
    ready = EngineSpec(
        loss_fn=None,
        gathers=(("t", "t", "x"),),
        optimizer=make_optimizer(optimizer, learning_rate=0.05),
    )
    a_tab, b_tab = table, table
    a_opt = init_state(named, {"t": table}).opt_state["t"]
    b_opt = init_state(ready, {"t": table}).opt_state["t"]
    for step in range(4):
        idx = jnp.asarray(rng.integers(0, n_rows + 1, size=16), jnp.int32)  # n_rows: masked
        idx = idx.at[:3].set(idx[3])  # at least one row three times
        grads = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)
        grads = jnp.where((idx < n_rows)[:, None], grads, 0.0)  # the engine zeroes masked grads
        a_tab, a_opt = _sparse_apply(named, a_tab, a_opt, idx, grads, jnp.int32(step))
        b_tab, b_opt = _sparse_apply(ready, b_tab, b_opt, idx, grads, jnp.int32(step))
        np.testing.assert_allclose(a_tab, b_tab, rtol=1e-5, atol=1e-6)
        for x, y in zip(
            jax.tree_util.tree_leaves(a_opt), jax.tree_util.tree_leaves(b_opt), strict=True
        ):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
    assert not np.allclose(a_tab, table)  # the updates did something


@pytest.mark.parametrize("optimizer", ["adam", "adagrad"])
def test_epoch_with_scratch_merging_equals_unique_merging(optimizer: str) -> None:
    # A named optimizer's epoch (duplicates merged through the scratch tables) against the
    # same optax transformation handed in ready-made (merged with jnp.unique): same fit.
    rng = np.random.default_rng(3)
    n = 400
    df = pd.DataFrame(
        {
            "user": rng.integers(0, 15, n),  # few rows: many duplicates per minibatch
            "item": rng.integers(0, 10, n),
            "rating": rng.integers(1, 6, n).astype(float),
        }
    )
    kw = {"factors": 4, "epochs": 3, "batch_size": 64, "seed": 0, "schedule": "constant"}
    a = MF(optimizer=optimizer, learning_rate=0.05, **kw).fit(df)
    b = MF(optimizer=make_optimizer(optimizer, learning_rate=0.05), **kw).fit(df)
    for name in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_allclose(a.params_[name], b.params_[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-5)
    assert not np.allclose(a.params_["user_bias"], 0)


def test_epoch_layout_visits_every_example_once() -> None:
    for n, b in [(1000, 128), (7, 3), (1, 10), (4096, 1024)]:
        nb, width = epoch_layout(n, b)
        assert width <= b and nb * width >= n and nb * width - n < nb
        order, shift = _epoch_randomness(5, 2, nb, width)
        pos = np.concatenate([((t + shift) % nb) * width + np.arange(width) for t in order])
        np.testing.assert_array_equal(np.sort(pos), np.arange(nb * width))


def test_auto_batch_size() -> None:
    # the largest power of two <= n / 50, clipped to [256, 16384]
    assert [auto_batch_size(n) for n in (10, 25_600, 51_199, 51_200, 900_000, 10**7)] == [
        256,
        512,
        512,
        1024,
        16384,
        16384,
    ]
    assert auto_batch_size(10**7, 100) == 100
    assert MF(epochs=1).fit(_ratings(0, n=300)).history_ is not None  # None resolves


def test_schedules() -> None:
    s = make_schedule(0.1, "cosine", total_steps=100)
    assert float(s(0)) == pytest.approx(0.1) and float(s(100)) == pytest.approx(0.0, abs=1e-8)
    assert float(make_schedule(0.1, "linear", total_steps=10)(5)) == pytest.approx(0.05)
    with pytest.raises(ValueError, match="schedule"):
        make_schedule(0.1, "stepwise", total_steps=10)


# ---------------------------------------------------------------------------- stopping rules
def test_early_stopping_restores_best_params() -> None:
    df = _ratings(1, n=1800)
    train, valid = df.iloc[:1500], df.iloc[1500:]
    # a high learning rate and no regularisation overfit quickly: validation RMSE rises
    kw = {
        "factors": 16,
        "learning_rate": 0.05,
        "reg": 0.0,
        "reg_bias": 0.0,
        "epochs": 40,
        "schedule": "constant",
    }
    m = _mf(**kw, patience=3).fit(train, valid=valid)
    hist = m.history_
    assert m.stop_reason_ == "early_stopping" and len(hist) < 40
    best_epoch = int(hist.loc[hist["valid_rmse"].idxmin(), "epoch"])
    assert m.best_epoch_ == best_epoch and len(hist) == best_epoch + 3
    # the restored parameters are the ones an uninterrupted run of best_epoch epochs ends with
    ref = _mf(**{**kw, "epochs": best_epoch}).fit(train)
    for key in ("user_factors", "item_factors", "user_bias", "item_bias"):
        np.testing.assert_array_equal(m.params_[key], ref.params_[key])
    rmse = float(np.sqrt(np.mean((m.predict(valid["user"], valid["item"]) - valid["rating"]) ** 2)))
    assert rmse == pytest.approx(hist["valid_rmse"].min(), rel=1e-4)


def test_loss_tolerance_stops() -> None:
    m = _mf(epochs=200, loss_tol=1e-2).fit(_ratings(2))
    assert m.stop_reason_ == "loss_tol" and len(m.history_) < 200
    last, prev = m.history_["loss"].iloc[-1], m.history_["loss"].iloc[-2]
    assert abs(prev - last) <= 1e-2 * prev


def test_nan_raises_model_fit_error_naming_the_epoch(tmp_path) -> None:
    m = _mf(optimizer="sgd", learning_rate=50.0, epochs=10)
    with pytest.raises(ModelFitError, match=r"epoch \d+.*learning rate"):
        m.fit(_ratings(3), checkpoint_dir=tmp_path)
    assert m.params_ is None  # nothing half-trained left behind
    # a checkpoint, if any was written, holds finite parameters only
    for ckpt in tmp_path.glob("*.npz"):
        with np.load(ckpt) as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")


# ---------------------------------------------------------------------------- checkpoints
class _Crash(Exception):
    pass


def test_resume_equals_uninterrupted(tmp_path) -> None:
    df = _ratings(4)
    kw = {"epochs": 7, "schedule": "cosine"}
    full = _mf(**kw).fit(df)

    def crash(epoch: int, row: dict) -> None:
        if epoch == 5:
            raise _Crash

    with pytest.raises(_Crash):
        _mf(**kw).fit(df, checkpoint_dir=tmp_path, checkpoint_every=2, callback=crash)
    assert (tmp_path / "checkpoint.npz").exists()
    resumed = _mf(**kw).fit(df, checkpoint_dir=tmp_path, checkpoint_every=2, resume=True)
    assert resumed.history_["epoch"].tolist() == list(range(1, 8))
    for key in full.params_:
        np.testing.assert_array_equal(full.params_[key], resumed.params_[key], err_msg=key)
    np.testing.assert_allclose(full.history_["loss"], resumed.history_["loss"], rtol=1e-6)


def test_resume_refuses_another_runs_checkpoint(tmp_path) -> None:
    df = _ratings(5)
    _mf(epochs=2).fit(df, checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="another run"):
        _mf(epochs=2, reg=0.5).fit(df, checkpoint_dir=tmp_path, resume=True)


def test_progress_bar_and_full_shuffle_and_saved_history(tmp_path) -> None:
    df = _ratings(6)
    m = _mf(epochs=3, shuffle="full").fit(df, progress=True)
    assert m.history_["loss"].is_monotonic_decreasing
    loaded = load(m.save(tmp_path / "m.npz"))
    pd.testing.assert_frame_equal(loaded.history_, m.history_, check_dtype=False)


def test_learning_curves_plot_draws_the_history() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mfjax.plots.training import history_frame, learning_curves_plot

    df = _ratings(7, n=1700)
    m = _mf(epochs=4).fit(df.iloc[:1500], valid=df.iloc[1500:])
    tidy = history_frame({"mf": m})
    assert set(tidy["series"]) == {"loss", "valid_rmse"} and len(tidy) == 8
    fig = learning_curves_plot({"mf": m})
    assert [ax.get_title() for ax in fig.axes] == ["loss", "valid_rmse"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), m.history_["loss"])
    np.testing.assert_allclose(fig.axes[1].lines[0].get_ydata(), m.history_["valid_rmse"])
    plt.close(fig)
    with pytest.raises(TypeError, match="history_"):
        history_frame({"x": object()})

"""Sharded training and ranking on a simulated 4-device CPU mesh equal the one-device runs.

The main pytest process keeps one device. ``test_sharded_suite`` starts ONE subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` that runs this same file with
``MFJAX_SHARDING_WORKER=1``: only then are the 4-device tests below defined, and their
failures are reported through the launcher's output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import scipy.sparse as sp

from mfjax.sharding import (
    TablePlacement,
    make_mesh,
    mesh_shape,
    per_device_bytes,
    place_batches,
    top_k_sharded,
)
from mfjax.topk import top_k_blocked

WORKER_ENV = "MFJAX_SHARDING_WORKER"
IN_WORKER = os.environ.get(WORKER_ENV) == "1"


def _dot_score(params: dict, users: jax.Array) -> jax.Array:
    """Biased dot-product scorer (module level: hashable for the jitted blocks)."""
    return params["P"][users] @ params["Q"].T + params["b_item"][None, :]


def _random_params(n_users: int, n_items: int, k: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "P": rng.normal(size=(n_users, k)).astype(np.float32),
        "Q": rng.normal(size=(n_items, k)).astype(np.float32),
        "b_item": rng.normal(size=n_items).astype(np.float32),
        "mu": np.float32(3.5),
    }


def _random_seen(n_users: int, n_items: int, density: float = 0.1, seed: int = 1):
    rng = np.random.default_rng(seed)
    return sp.csr_matrix((rng.random((n_users, n_items)) < density).astype(np.float32))


# --------------------------------------------------------------------------- one device
def test_make_mesh_rejects_more_devices_than_exist():
    n = len(jax.devices())
    with pytest.raises(ValueError, match=r"only \d+ .*xla_force_host_platform_device_count"):
        make_mesh(data=n + 1, model=1)
    with pytest.raises(ValueError, match="model must be a positive integer"):
        make_mesh(model=0)


def test_table_placement_round_trip_one_device():
    mesh = make_mesh(data=1, model=1)
    assert mesh_shape(mesh) == (1, 1)
    params = _random_params(6, 9)
    tp = TablePlacement(mesh, n_users=6, n_items=9)
    placed, layout = tp.place(params)
    assert layout == (6, 9, 9, -1)  # P, Q, b_item, mu (sorted keys); -1: replicated
    back = tp.gather(placed, layout)
    for key, value in params.items():
        np.testing.assert_array_equal(back[key], value)
    with pytest.raises(ValueError, match="layout"):
        tp.gather(placed, layout[:-1])


def test_top_k_sharded_one_device_matches_numpy_reference():
    """Independent reference: argsort of dense numpy scores with seen items set to -inf."""
    n_users, n_items, k = 12, 17, 5
    params = _random_params(n_users, n_items)
    seen = _random_seen(n_users, n_items)
    users = np.arange(n_users)
    items, scores = top_k_sharded(
        _dot_score, params, users, n_items, k, mesh=make_mesh(model=1), exclude=seen
    )
    dense = params["P"] @ params["Q"].T + params["b_item"][None, :]
    dense[seen.toarray() > 0] = -np.inf
    ref = np.argsort(-dense, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(items, ref)
    np.testing.assert_allclose(scores, np.take_along_axis(dense, ref, axis=1), rtol=1e-5)


def test_place_batches_rejects_indivisible_batch():
    mesh = make_mesh(data=1, model=1)
    out = place_batches({"u": np.zeros((2, 6), np.int32)}, mesh)
    assert out["u"].shape == (2, 6)
    assert sum(per_device_bytes(out).values()) == 2 * 6 * 4


@pytest.mark.slow
def test_sharded_suite():
    """Run the 4-device tests of this file in one subprocess (the device count is fixed
    at jax's import, so it cannot change inside this process)."""
    if IN_WORKER:
        return  # this is the worker itself
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env[WORKER_ENV] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x", str(Path(__file__))],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parents[1],
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"4-device sharded tests failed:\n{out[-6000:]}"
    summary = out.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, out[-3000:]


# --------------------------------------------------------------------------- 4 devices
if IN_WORKER:

    def test_worker_has_four_devices():
        assert len(jax.devices()) == 4

    @pytest.mark.parametrize("data,model", [(1, 4), (2, 2), (4, 1)])
    @pytest.mark.parametrize("n_items", [40, 37])  # 37: item tables padded to 40 / 38
    def test_top_k_sharded_equals_single_device(data, model, n_items):
        n_users, k = 50, 7
        params = _random_params(n_users, n_items)
        seen = _random_seen(n_users, n_items)
        users = np.r_[np.arange(n_users), [3, 3]]  # duplicates and an odd count
        ref_items, ref_scores = top_k_blocked(_dot_score, params, users, n_items, k, exclude=seen)
        mesh = make_mesh(data=data, model=model)
        items, scores = top_k_sharded(
            _dot_score,
            params,
            users,
            n_items,
            k,
            mesh=mesh,
            n_users=n_users,
            exclude=seen,
            block_size=16,
        )
        np.testing.assert_array_equal(items, ref_items)
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)

    def test_top_k_sharded_allowed_items_and_short_lists():
        n_users, n_items = 8, 20
        params = _random_params(n_users, n_items)
        allowed = np.array([1, 5, 7, 19])
        seen = sp.csr_matrix((np.ones(2, np.float32), ([0, 0], [5, 7])), shape=(n_users, n_items))
        mesh = make_mesh(data=2, model=2)
        items, scores = top_k_sharded(
            _dot_score,
            params,
            np.arange(n_users),
            n_items,
            4,
            mesh=mesh,
            exclude=seen,
            allowed_items=allowed,
        )
        ref_items, ref_scores = top_k_blocked(
            _dot_score,
            params,
            np.arange(n_users),
            n_items,
            4,
            exclude=seen,
            allowed_items=allowed,
        )
        np.testing.assert_array_equal(items, ref_items)
        assert (items[0, 2:] == -1).all() and np.isneginf(scores[0, 2:]).all()
        assert set(items[1:].ravel()) <= set(allowed.tolist())

    def test_table_memory_per_device_falls_as_one_over_shards():
        n_users, n_items, f = 4000, 1000, 16
        params = _random_params(n_users, n_items, k=f)
        tables = {k: v for k, v in params.items() if k != "mu"}
        total = sum(v.nbytes for v in tables.values())
        for model in (1, 2, 4):
            mesh = make_mesh(data=4 // model, model=model)
            placed, _ = TablePlacement(mesh, n_users=n_users, n_items=n_items).place(tables)
            per_dev = per_device_bytes(placed)
            assert len(per_dev) == 4
            assert set(per_dev.values()) == {total // model}, (model, per_dev, total)

    def test_place_batches_splits_batch_axis():
        mesh = make_mesh(data=4, model=1)
        batches = {"u": np.arange(3 * 8, dtype=np.int32).reshape(3, 8)}
        placed = place_batches(batches, mesh)
        shapes = {s.data.shape for s in placed["u"].addressable_shards}
        assert shapes == {(3, 2)}
        np.testing.assert_array_equal(np.asarray(placed["u"]), batches["u"])
        with pytest.raises(ValueError, match="multiple of 4"):
            place_batches({"u": np.zeros((3, 6), np.int32)}, mesh)

    # ----------------------------------------------------------------------- training
    def _ratings(n_users: int = 40, n_items: int = 24, n: int = 700, seed: int = 0):
        import pandas as pd

        rng = np.random.default_rng(seed)
        df = pd.DataFrame(
            {
                "user": rng.integers(0, n_users, n),
                "item": rng.integers(0, n_items, n),
                "rating": rng.integers(1, 6, n).astype(np.float32),
            }
        ).drop_duplicates(["user", "item"])
        # every user and item present, so the tables have exactly n_users / n_items rows
        assert df.user.nunique() == n_users and df.item.nunique() == n_items
        return df

    def test_mf_sharded_equals_single_device_and_saves_to_one_device(tmp_path):
        from mfjax.evaluate import evaluate
        from mfjax.models.base import load
        from mfjax.models.mf import MF
        from mfjax.splits import random_split

        df = _ratings()
        split = random_split(df, 0.2, seed=0)
        assert (split.train.n_users, split.train.n_items) == (40, 24)  # tables divide by 2
        kw = {"factors": 8, "epochs": 2, "batch_size": 64, "seed": 3}
        ref = MF(**kw).fit(split)
        mesh = make_mesh(data=2, model=2)
        sharded = MF(**kw).fit(split, mesh=mesh)
        assert set(sharded.params_) == set(ref.params_)
        for key, value in ref.params_.items():
            assert isinstance(sharded.params_[key], np.ndarray), key
            np.testing.assert_allclose(sharded.params_[key], value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sharded.history_["loss"], ref.history_["loss"], rtol=1e-5)
        # the lazy (scratch-merging) optimizer path shards the same way as the default's
        kw_adam = {**kw, "optimizer": "adam", "learning_rate": 0.01}
        ref_adam = MF(**kw_adam).fit(split)
        sharded_adam = MF(**kw_adam).fit(split, mesh=mesh)
        for key, value in ref_adam.params_.items():
            np.testing.assert_allclose(sharded_adam.params_[key], value, rtol=1e-5, atol=1e-6)

        # evaluation with the mesh (sharded full ranking) equals the one-device evaluation
        ev_ref = evaluate(ref, split, k=(5,), n_boot=20)
        ev_mesh = evaluate(sharded, split, k=(5,), n_boot=20, mesh=mesh)
        m_ref, m_mesh = ev_ref.to_metrics_dict(5), ev_mesh.to_metrics_dict(5)
        for name in ("precision@5", "recall@5", "ndcg@5", "map@5", "auc", "rmse"):
            assert m_mesh[name] == pytest.approx(m_ref[name], abs=1e-6), name

        path = sharded.save(tmp_path / "mf_sharded.npz")
        loaded = load(path)
        users, items = df.user.to_numpy()[:50], df.item.to_numpy()[:50]
        np.testing.assert_allclose(
            loaded.predict(users, items), ref.predict(users, items), atol=1e-5
        )
        assert all(
            not isinstance(v, jax.Array) or len(v.devices()) == 1 for v in loaded.params_.values()
        )
        rec_l, _ = loaded.recommend(df.user.unique()[:5], k=5)
        rec_r, _ = ref.recommend(df.user.unique()[:5], k=5)
        np.testing.assert_array_equal(rec_l, rec_r)

    def test_bpr_sharded_equals_single_device():
        from mfjax.models.bpr import BPR

        df = _ratings(seed=1)
        # plain SGD here (MF above covers the lazy per-row Adam path under sharding)
        kw = {"factors": 8, "epochs": 2, "batch_size": 64, "seed": 2, "optimizer": "sgd"}
        ref = BPR(**kw).fit(df)
        sharded = BPR(**kw).fit(df, mesh=make_mesh(data=2, model=2))
        for key, value in ref.params_.items():
            np.testing.assert_allclose(sharded.params_[key], value, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(sharded.history_["loss"], ref.history_["loss"], rtol=1e-5)
        assert ref.history_["loss"].iloc[-1] < ref.history_["loss"].iloc[0]  # it trains

    def test_engine_places_tables_by_rows_over_model_axis():
        """Per-device bytes of the tables the engine trains fall as 1 / model-axis size."""
        from mfjax.train import place

        rng = np.random.default_rng(0)
        tables = {
            "user_factors": rng.normal(size=(4000, 16)).astype(np.float32),
            "item_factors": rng.normal(size=(1000, 16)).astype(np.float32),
            "user_bias": np.zeros(4000, np.float32),
            "item_bias": np.zeros(1000, np.float32),
        }
        total = sum(v.nbytes for v in tables.values())
        for model in (1, 2, 4):
            placed = place(tables, make_mesh(data=4 // model, model=model))
            assert set(per_device_bytes(placed).values()) == {total // model}, model

    def test_ials_sharded_equals_single_device():
        import pandas as pd

        from mfjax.models.ials import IALS
        from mfjax.sharding import place_ials, to_host
        from mfjax.splits import random_split

        rng = np.random.default_rng(0)
        df = pd.DataFrame({"user": rng.integers(0, 50, 700), "item": rng.integers(0, 37, 700)})
        df = df.drop_duplicates().assign(rating=1.0)
        split = random_split(df, 0.2, valid_size=0.1, seed=0)
        assert split.train.n_items % 2 == 1  # odd: the (2, 2) mesh pads the item table
        kw = {"factors": 8, "iterations": 2, "block_cells": 64, "max_buckets": 2, "seed": 1}
        ref = IALS(**kw).fit(split)
        mesh = make_mesh(data=2, model=2)
        sharded = IALS(**kw).fit(split, mesh=mesh)
        for key, value in ref.params_.items():
            assert sharded.params_[key].shape == value.shape, key  # padding cut off
            scale = float(np.abs(value).max())
            np.testing.assert_allclose(sharded.params_[key], value, atol=1e-4 * scale)
        np.testing.assert_allclose(sharded.history_["loss"], ref.history_["loss"], rtol=1e-5)
        valid_col = [c for c in ref.history_.columns if c.startswith("valid_")]
        assert valid_col  # validation ran on the sliced, sharded factors
        np.testing.assert_allclose(
            sharded.history_[valid_col[0]], ref.history_[valid_col[0]], atol=1e-6
        )
        # the placement itself: rows over the model axis, padded rows exactly zero
        ub, ib, _ = ref.prepare(split.train)
        x0, y0 = ref.init_factors(split.train.n_users, split.train.n_items)
        x, y, _, _ = place_ials(mesh, x0, y0, ub, ib)
        assert x.sharding.spec[0] == "model" and y.shape[0] == split.train.n_items + 1
        assert not to_host(y)[split.train.n_items :].any()

"""Explicit MF: the model contract, the loss gradient, planted low-rank recovery."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from model_contract import ModelContract

from mfjax.models.mf import MF, MFConfig, mf_loss


class TestMFContract(ModelContract):
    bad_hyperparameters = [
        ({"factors": 0}, "factors"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"optimizer": "adamm"}, "optimizer"),
        ({"schedule": "step"}, "schedule"),
        ({"reg": -1.0}, "reg"),
        ({"loss": "mae"}, "loss"),
        ({"batch_size": 0}, "batch_size"),
        ({"patience": 0}, "patience"),
    ]

    def _make_model(self, **overrides):
        kw = {
            "factors": 8,
            "epochs": 30,
            "optimizer": "adam",
            "learning_rate": 0.03,
            "batch_size": 64,
        }
        return MF(**{**kw, **overrides})


class TestMFDefaultOptimizerContract(ModelContract):
    """The contract again with the default optimizer (row-wise Adagrad's one-scatter path)."""

    bad_hyperparameters = [({"batch_size": -1}, "batch_size")]

    def _make_model(self, **overrides):
        kw = {"factors": 8, "epochs": 30, "batch_size": 64}
        return MF(**{**kw, **overrides})


def _rows(rng, b=5, k=3):
    return {
        "user_factors": rng.normal(size=(b, k)).astype(np.float32),
        "item_factors": rng.normal(size=(b, k)).astype(np.float32),
        "user_bias": rng.normal(size=b).astype(np.float32),
        "item_bias": rng.normal(size=b).astype(np.float32),
    }


def _engine(rows: dict) -> dict:
    """Serving-named rows -> the engine's gathered rows ``p, q, bu, bi``."""
    return {
        "p": jnp.asarray(rows["user_factors"]),
        "q": jnp.asarray(rows["item_factors"]),
        "bu": jnp.asarray(rows["user_bias"]),
        "bi": jnp.asarray(rows["item_bias"]),
    }


@pytest.mark.parametrize("loss", ["mse", "huber"])
def test_loss_gradient_matches_hand_derivation(loss: str) -> None:
    rng = np.random.default_rng(0)
    rows = _rows(rng)
    batch = {"values": jnp.asarray(rng.uniform(1, 5, 5), jnp.float32)}
    aux = {"mu": jnp.float32(3.0), "reg": 0.1, "reg_bias": 0.05, "huber_delta": 0.7}
    g = jax.grad(lambda r: jnp.sum(mf_loss(r, batch, aux, {"loss": loss})))(_engine(rows))
    grads = {
        "user_factors": g["p"],
        "user_bias": g["bu"],
        "item_factors": g["q"],
        "item_bias": g["bi"],
    }
    p, q = rows["user_factors"], rows["item_factors"]
    bu, bi = rows["user_bias"], rows["item_bias"]
    err = 3.0 + bu + bi + (p * q).sum(1) - np.asarray(batch["values"])
    d = err if loss == "mse" else np.clip(err, -0.7, 0.7)  # d/de of 0.5e² or Huber_δ
    np.testing.assert_allclose(
        grads["user_factors"], d[:, None] * q + 0.1 * p, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(
        grads["item_factors"], d[:, None] * p + 0.1 * q, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(grads["user_bias"], d + 0.05 * bu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grads["item_bias"], d + 0.05 * bi, rtol=1e-5, atol=1e-6)


def test_loss_value_matches_formula() -> None:
    rows = {
        "p": jnp.array([[1.0, 2.0]]),
        "q": jnp.array([[0.5, -1.0]]),
        "bu": jnp.array([0.25]),
        "bi": jnp.array([-0.5]),
    }
    # pred = 3 + 0.25 - 0.5 + (0.5 - 2) = 1.25; err = 1.25 - 2 = -0.75
    out = mf_loss(
        rows,
        {"values": jnp.array([2.0])},
        {"mu": 3.0, "reg": 0.1, "reg_bias": 0.2},
        {"loss": "mse"},
    )
    expected = 0.5 * 0.75**2 + 0.05 * (5.0 + 1.25) + 0.1 * (0.0625 + 0.25)
    np.testing.assert_allclose(out, [expected], rtol=1e-6)


def _planted(seed=0, n_users=60, n_items=40, rank=2, frac=0.6):
    rng = np.random.default_rng(seed)
    p = rng.normal(size=(n_users, rank))
    q = rng.normal(size=(n_items, rank))
    full = 3.0 + p @ q.T
    mask = rng.uniform(size=full.shape) < frac
    u, i = np.nonzero(mask)
    train = pd.DataFrame({"user": u, "item": i, "rating": full[u, i].astype(np.float32)})
    hu, hi = np.nonzero(~mask)
    return train, full, hu, hi


def test_recovers_planted_low_rank_matrix() -> None:
    train, full, hu, hi = _planted()
    m = MF(
        factors=4,
        epochs=150,
        optimizer="adam",
        learning_rate=0.02,
        reg=1e-4,
        reg_bias=0.0,
        batch_size=128,
    )
    m.fit(train)
    pred = m.predict(hu, hi)
    rmse = float(np.sqrt(np.mean((pred - full[hu, hi]) ** 2)))
    base = float(np.std(full[hu, hi]))
    assert rmse < 0.15 * base, (rmse, base)  # held-out cells, never trained on


def test_custom_optax_transformation_and_schedule() -> None:
    train, full, hu, hi = _planted(seed=1)
    m = MF(factors=4, epochs=60, optimizer=optax.adagrad(0.3), reg=1e-4, batch_size=128).fit(train)
    rmse_ada = float(np.sqrt(np.mean((m.predict(hu, hi) - full[hu, hi]) ** 2)))
    assert rmse_ada < 0.5 * float(np.std(full[hu, hi]))
    cfg = MFConfig(factors=4, epochs=2, optimizer="sgd", learning_rate=0.01, schedule="cosine")
    assert MF(cfg).fit(train).history_["epoch"].tolist() == [1, 2]


def test_validation_rmse_matches_predict() -> None:
    train, full, hu, hi = _planted(seed=2)
    valid = pd.DataFrame({"user": hu[:200], "item": hi[:200], "rating": full[hu[:200], hi[:200]]})
    m = MF(factors=4, epochs=5, learning_rate=0.02, batch_size=128).fit(train, valid=valid)
    rmse = float(np.sqrt(np.mean((m.predict(valid["user"], valid["item"]) - valid["rating"]) ** 2)))
    assert m.history_["valid_rmse"].iloc[-1] == pytest.approx(rmse, rel=1e-4)


def test_unknown_fit_option_is_named() -> None:
    train, *_ = _planted()
    with pytest.raises(TypeError, match="checkpoint_dirr"):
        MF(factors=2, epochs=1).fit(train, checkpoint_dirr="x")

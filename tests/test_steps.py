"""The notebook steps: metrics.json merging, artifact reuse, sweep selection.

Expectations are written independently of the implementation: hand-built frames and
splits, hand-computed winners, JSON read back from disk.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mfjax import steps
from mfjax.exceptions import DataError
from mfjax.splits import random_split


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def tiny_frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(1, 31), 8)
    items = np.concatenate([rng.choice(20, size=8, replace=False) + 1 for _ in range(30)])
    ratings = rng.integers(1, 6, size=len(users)).astype(np.float32)
    return pd.DataFrame({"user": users, "item": items, "rating": ratings})


@pytest.fixture
def tiny_split(tiny_frame):
    return random_split(tiny_frame, 0.2, valid_size=0.2, seed=0)


# ------------------------------------------------------------------------------ run folder
def test_resolve_run_dir_default_is_under_project_reports(monkeypatch, tmp_path):
    root = tmp_path / "proj"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "mfjax"\n')
    monkeypatch.chdir(root / "notebooks")
    assert steps.resolve_run_dir("") == root / steps.DEFAULT_RUN_DIR
    assert (root / "reports" / "notebook-default").is_dir()
    explicit = steps.resolve_run_dir(tmp_path / "elsewhere")
    assert explicit == tmp_path / "elsewhere" and explicit.is_dir()


def test_resolve_run_dir_outside_a_checkout_uses_cwd(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert steps.resolve_run_dir("", default="reports/x") == tmp_path / "reports" / "x"


# ------------------------------------------------------------------------------ metrics.json
def test_record_metrics_merges_models_and_params(tmp_path):
    steps.record_metrics(
        tmp_path, dataset="synthetic", params={"seed": 0}, extra={"data": {"n": 3}}
    )
    steps.record_metrics(
        tmp_path,
        dataset="synthetic",
        params={"factors": 8},
        model_name="mf",
        metrics={"rmse": np.float32(0.5), "precision@10_ci": (0.1, 0.2), "fit_seconds": 1.5},
    )
    steps.record_metrics(
        tmp_path, dataset="synthetic", params={}, model_name="mf", metrics={"ndcg@10": 0.3}
    )
    steps.record_metrics(
        tmp_path, dataset="synthetic", params={}, model_name="popularity", metrics={"ndcg@10": 0.2}
    )
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert got == {
        "dataset": "synthetic",
        "params": {"seed": 0, "factors": 8},
        "models": {
            "mf": {
                "rmse": 0.5,
                "precision@10_ci": [pytest.approx(0.1), pytest.approx(0.2)],
                "fit_seconds": 1.5,
                "ndcg@10": 0.3,
            },
            "popularity": {"ndcg@10": 0.2},
        },
        "data": {"n": 3},
    }
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "metrics.json"
    ]


def test_record_metrics_leaves_out_missing_values(tmp_path):
    steps.record_metrics(
        tmp_path,
        dataset="d",
        params={},
        model_name="popularity",
        metrics={
            "rmse": float("nan"),
            "mae": None,
            "auc": np.inf,
            "ndcg@10_ci": [0.1, np.nan],
            "precision@10": 0.25,
        },
    )
    entry = json.loads((tmp_path / "metrics.json").read_text())["models"]["popularity"]
    assert entry == {"precision@10": 0.25}  # absent, never null


def test_record_metrics_refuses_to_overwrite_reserved_keys(tmp_path):
    with pytest.raises(ValueError, match="models"):
        steps.record_metrics(tmp_path, dataset="d", params={}, extra={"models": {}})


def test_record_metrics_concurrent_writers_lose_nothing(tmp_path):
    def write(i: int) -> None:
        steps.record_metrics(tmp_path, dataset="d", params={}, model_name=f"m{i}", metrics={"x": i})

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    models = steps.read_metrics(tmp_path)["models"]
    assert models == {f"m{i}": {"x": i} for i in range(8)}


# ------------------------------------------------------------------------------ split helpers
def test_split_summary_counts_match_the_parts(tiny_split):
    table = steps.split_summary(tiny_split)
    assert list(table.index) == ["train", "valid", "test"]
    assert table.loc["train", "rows"] == len(tiny_split.train)
    assert table.loc["test", "users"] == len(np.unique(tiny_split.test.users))
    assert table.loc["test", "cold_start_dropped"] == tiny_split.info["test_cold_dropped"]


def test_validation_split_puts_valid_in_the_test_role(tiny_split, tiny_frame):
    v = steps.validation_split(tiny_split)
    assert v.test is tiny_split.valid and v.train is tiny_split.train and v.valid is None
    with pytest.raises(DataError, match="valid_size"):
        steps.validation_split(random_split(tiny_frame, 0.2, seed=0))


# ------------------------------------------------------------------------------ models
def test_make_model_filters_parameters_the_model_lacks():
    model = steps.make_model("bias", factors=32, optimizer="adam", reg=0.5)
    assert type(model).__name__ == "Bias"
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        steps.make_model("nope")


def test_get_model_reuses_the_saved_model(tmp_path, tiny_split):
    first = steps.get_model(tmp_path, tiny_split, model="popularity")
    assert steps.model_path(tmp_path, "popularity").is_file()
    again = steps.get_model(tmp_path, tiny_split, model="popularity")
    assert again is not first and again.fit_seconds_ == first.fit_seconds_  # loaded, not refit
    users = tiny_split.user_map.values[:5]
    np.testing.assert_array_equal(again.recommend(users, k=3)[0], first.recommend(users, k=3)[0])


def test_recommendation_example_excludes_training_items(tiny_split):
    model = steps.make_model("popularity").fit(tiny_split)
    user = tiny_split.user_map.values[3]
    ex = steps.recommendation_example(
        model, tiny_split, user=user, k=5, titles=pd.Series({i: f"t{i}" for i in range(1, 21)})
    )
    code = tiny_split.user_map.codes([user])[0]
    seen = set(tiny_split.item_map.ids(tiny_split.train.items[tiny_split.train.users == code]))
    assert len(ex) == 5 and not (set(ex["recommended"]) & seen)
    assert ex["title"].tolist() == [f"t{i}" for i in ex["recommended"]]
    liked = [x for x in ex["liked_in_training"] if x != ""]
    assert set(liked) <= seen


# ------------------------------------------------------------------------------ sweeps
@pytest.fixture
def sweep_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "factors": [4, 4, 16, 16],
            "reg": [0.01, 0.1, 0.01, 0.1],
            "valid_rmse": [0.95, 0.93, 0.91, 0.92],
            "valid_ndcg@10": [0.10, 0.12, 0.15, 0.11],
            "valid_ndcg@10_ci_low": [0.09, 0.11, 0.14, 0.10],
            "valid_ndcg@10_ci_high": [0.11, 0.13, 0.16, 0.12],
            "rmse": [0.96, 0.94, 0.925, 0.93],
            "rmse_ci_low": [0.9, 0.9, 0.90, 0.9],
            "rmse_ci_high": [1.0, 1.0, 0.95, 1.0],
            "ndcg@10": [0.1, 0.1, 0.1, 0.1],
            "fit_seconds": [1.0, 1.1, 2.0, 2.1],
        }
    )


def test_best_point_respects_metric_direction(sweep_table):
    assert steps.best_point(sweep_table, "valid_rmse")[["factors", "reg"]].tolist() == [16, 0.01]
    assert steps.best_point(sweep_table, "valid_ndcg@10")[["factors", "reg"]].tolist() == [16, 0.01]
    swapped = sweep_table.assign(**{"valid_ndcg@10": [0.2, 0.12, 0.15, 0.11]})
    assert steps.best_point(swapped, "valid_ndcg@10")[["factors", "reg"]].tolist() == [4, 0.01]
    with pytest.raises(DataError, match="valid_mae"):
        steps.best_point(sweep_table, "valid_mae")


def test_sweep_view_shows_validation_only(sweep_table):
    view = steps.sweep_view(sweep_table, ["factors", "reg"], metric="valid_ndcg@10")
    assert list(view.columns) == ["factors", "reg", "valid_ndcg@10", "valid_rmse"]
    with pytest.raises(DataError, match="factor"):
        steps.sweep_view(sweep_table, ["factor"])


def test_best_summary_and_record_best(tmp_path, sweep_table):
    best = steps.best_point(sweep_table, "valid_rmse")
    summary = steps.best_summary(best, sweep_table, metric="valid_rmse")["value"]
    assert summary["factors"] == 16 and summary["reg"] == 0.01
    assert summary["validation rmse"] == pytest.approx(0.91)
    assert summary["test rmse"] == pytest.approx(0.925)
    assert (summary["test rmse 95% CI low"], summary["test rmse 95% CI high"]) == (0.90, 0.95)
    entry = steps.record_best(tmp_path, best, dataset="synthetic", table=sweep_table)
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert got["params"] == {"best_factors": 16, "best_reg": 0.01, "selected_by": "valid_rmse"}
    assert got["models"]["mf_best"]["rmse_ci"] == [0.90, 0.95]
    assert got["models"]["mf_best"]["valid_rmse"] == pytest.approx(0.91)
    assert entry["rmse"] == pytest.approx(0.925)


def test_load_sweep_strips_model_prefix_and_explains_absence(tmp_path, sweep_table):
    sweep_table.rename(columns={"valid_rmse": "mf.valid_rmse"}).to_csv(
        tmp_path / "sweep.csv", index=False
    )
    table = steps.load_sweep(tmp_path)
    assert "valid_rmse" in table.columns and table["valid_rmse"].tolist() == [
        0.95,
        0.93,
        0.91,
        0.92,
    ]
    with pytest.raises(DataError, match="mfjax sweep"):
        steps.load_sweep(tmp_path / "nothing")


def test_runner_sweep_table_failed_points_and_bookkeeping_are_ignored(sweep_table):
    # the layout mfjax.pipeline.sweep writes: point, params, model, metrics, status, error
    table = sweep_table.assign(
        point=[f"point-{i:02d}" for i in range(4)],
        model="mf",
        wall_seconds=3.0,
        status=["ok", "ok", "failed", "ok"],
        error=["", "", "ValueError: boom", ""],
    )
    best = steps.best_point(table, "valid_rmse")
    assert best["point"] == "point-03"  # point-02 is better but failed
    summary = steps.best_summary(best, table, metric="valid_rmse")["value"]
    assert summary["factors"] == 16 and summary["reg"] == 0.1 and summary["grid points"] == 3
    assert "point" not in summary.index and "status" not in summary.index
    view = steps.sweep_view(table, ["factors", "reg"], metric="valid_rmse")
    assert len(view) == 3 and list(view.columns[:3]) == ["factors", "reg", "valid_rmse"]


# ------------------------------------------------------------------------------ notebooks
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _kernel_name() -> str:
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    return "mfjax" if "mfjax" in specs else "python3"


@pytest.mark.slow
def test_notebooks_run_under_papermill_with_non_default_parameters(tmp_path):
    """Parameters flow through: the notebooks run with small non-default values into a
    temporary run folder on a user's file (``dataset`` = a CSV path), each building what an
    earlier notebook would have left (02 prepares the split itself), and what they record
    reflects the parameters."""
    pm = pytest.importorskip("papermill")
    from mfjax.datasets import synthetic

    data = tmp_path / "ratings.csv"
    synthetic(150, 80, 3000, seed=5).to_csv(data, index=False)
    run = tmp_path / "run"
    common = {"run_dir": str(run), "dataset": str(data), "seed": 3, "test_size": 0.25,
              "valid_size": 0.2, "min_user_ratings": 2, "min_item_ratings": 2}  # fmt: skip
    hyper = {"factors": 4, "epochs": 3, "reg": 0.1, "k": 5}

    def execute(name: str, **params) -> None:
        pm.execute_notebook(
            str(NOTEBOOKS / name),
            str(tmp_path / name),
            parameters=params,
            kernel_name=_kernel_name(),
            cwd=str(NOTEBOOKS),
            progress_bar=False,
        )

    execute("02_train.ipynb", **common, **hyper)
    prepared = json.loads((run / "split" / "prepare.json").read_text())
    assert prepared["dataset"] == str(data) and prepared["test_size"] == 0.25
    execute("03_evaluate.ipynb", **common, **hyper)
    got = json.loads((run / "metrics.json").read_text())
    assert got["dataset"] == str(data)
    assert got["params"]["factors"] == 4 and got["params"]["k"] == 5
    mf = got["models"]["mf"]
    for key in ("rmse", "precision@5", "ndcg@5", "ndcg@5_ci", "valid_rmse", "valid_ndcg@5"):
        assert key in mf, key
    assert "precision@10" not in mf  # k=5 flowed through
    assert 1 <= mf["epochs_run"] <= 3
    import mfjax.models.mf  # noqa: F401  (registers "mf" for load)
    from mfjax.models.base import load

    assert load(run / "models" / "mf.npz").config.factors == 4

    execute("04_compare.ipynb", **common, **hyper, roster=["popularity", "bias"], seeds=[0])
    got = json.loads((run / "metrics.json").read_text())
    assert got["params"]["roster"] == ["popularity", "bias"]
    assert "rmse" in got["models"]["bias"] and "rmse" not in got["models"]["popularity"]
    assert got["models"]["popularity"]["seeds"] == 1

    sweep = tmp_path / "sweep"
    execute(
        "05_tune.ipynb", sweep_dir=str(sweep), dataset=str(data), grid_factors=[2, 4],
        grid_reg=[0.1], epochs=2, seed=3, k=5,
    )  # fmt: skip
    table = pd.read_csv(sweep / "sweep.csv")
    assert sorted(table["factors"]) == [2, 4] and set(table["reg"]) == {0.1}
    assert "valid_ndcg@5" in table.columns
    best = json.loads((sweep / "metrics.json").read_text())
    assert (
        best["params"]["best_factors"] in (2, 4) and best["params"]["selected_by"] == "valid_rmse"
    )
    chosen = table.loc[table["valid_rmse"].idxmin()]
    assert best["models"]["mf_best"]["valid_rmse"] == pytest.approx(chosen["valid_rmse"])


def test_ensure_sweep_builds_reuses_and_rebuilds_on_a_new_grid(tmp_path, monkeypatch):
    calls = []
    real_train = steps.train_model

    def counting_train(run_dir, split, **kw):
        calls.append((kw["factors"], kw["reg"]))
        return real_train(run_dir, split, **kw)

    monkeypatch.setattr(steps, "train_model", counting_train)
    opts = {"min_user_ratings": 2, "min_item_ratings": 2}
    small = {"dataset": "synthetic", "prepare_options": opts, "epochs": 1, "model": "mf", "k": 5}
    from mfjax import datasets

    monkeypatch.setattr(
        steps, "load_dataset", lambda dataset, seed=0: datasets.synthetic(60, 40, 900, seed=seed)
    )
    folder = steps.ensure_sweep(tmp_path, grid={"factors": [2, 3], "reg": [0.1]}, **small)
    table = steps.load_sweep(folder)
    assert calls == [(2, 0.1), (3, 0.1)] and len(table) == 2
    assert {"valid_rmse", "rmse", "rmse_ci_low", "fit_seconds", "status"} <= set(table.columns)
    steps.ensure_sweep(tmp_path, grid={"factors": [2, 3], "reg": [0.1]}, **small)
    assert len(calls) == 2  # same request: reused
    steps.ensure_sweep(tmp_path, grid={"factors": [2], "reg": [0.1, 0.2]}, **small)
    assert calls[2:] == [(2, 0.1), (2, 0.2)]  # another grid: rebuilt
    assert sorted(steps.load_sweep(tmp_path)["reg"]) == [0.1, 0.2]
    # a changed library default (here MF's default learning rate) rebuilds the cached table
    import dataclasses

    from mfjax.models.mf import MF, MFConfig

    changed = dataclasses.make_dataclass(
        "MFConfig",
        [("learning_rate", float, dataclasses.field(default=0.05))],
        bases=(MFConfig,),
        frozen=True,
    )
    monkeypatch.setattr(MF, "Config", changed)
    steps.ensure_sweep(tmp_path, grid={"factors": [2], "reg": [0.1, 0.2]}, **small)
    assert len(calls) == 6 and calls[4:] == [(2, 0.1), (2, 0.2)]
    (tmp_path / "sweep_request.json").unlink()  # as if `mfjax sweep` had written it
    steps.ensure_sweep(tmp_path, grid={"factors": [9], "reg": [9.0]}, **small)
    assert len(calls) == 6  # a foreign sweep is used as it is

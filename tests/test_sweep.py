"""Sweeps: a grid over the fixture notebooks in two processes and on a two-worker Dask
LocalCluster; a failed point is reported and the others complete; one shared split; the
table, the best point, 05_tune and ``mfjax run --from-sweep``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mfjax import cli, pipeline
from mfjax.pipeline import ParameterError

FIX = Path(__file__).parent / "fixtures" / "notebooks"
KERNEL = "python3"


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    result = pipeline.sweep(
        {"factors": [2, 5], "fail": [False, True], "epochs": 2},
        workers=2,
        name="sw",
        notebooks_dir=FIX,
        kernel=KERNEL,
        reports_root=root,
        progress=False,
    )
    return root, result


def test_local_sweep_table_failures_and_shared_split(local_sweep):
    root, res = local_sweep
    folder = res.sweep_dir
    assert folder == (root / "sw").resolve()
    table = pd.read_csv(folder / "sweep.csv")
    parquet = pd.read_parquet(folder / "sweep.parquet")
    table["error"] = table["error"].fillna("")  # CSV reads an empty string back as NaN
    pd.testing.assert_frame_equal(table, parquet, check_dtype=False)
    assert list(table["point"]) == ["point-00", "point-01", "point-02", "point-03"]
    assert list(table["factors"]) == [2, 2, 5, 5] and list(table["fail"]) == [
        False,
        True,
        False,
        True,
    ]
    ok, bad = table[~table["fail"]], table[table["fail"]]
    assert (
        (ok["status"] == "ok").all() and ok["valid_rmse"].notna().all() and ok["rmse"].notna().all()
    )
    assert (bad["status"] == "failed").all() and bad["valid_rmse"].isna().all()
    assert bad["error"].str.contains("02_train.ipynb failed at cell 5").all()
    assert set(res.failed) == {"point-01", "point-03"}
    assert {"fit_seconds", "wall_seconds", "rmse_ci_low", "rmse_ci_high"} <= set(table.columns)
    # each point's metrics are its own run's metrics.json
    for _, row in ok.iterrows():
        m = json.loads((folder / row["point"] / "metrics.json").read_text())["models"]["mf"]
        assert (
            m["valid_rmse"] == pytest.approx(row["valid_rmse"]) and m["factors"] == row["factors"]
        )
    # one split, prepared once in the sweep folder and shared by every point
    assert (folder / "split" / "split.npz").is_file() and (folder / "01_prepare.html").is_file()
    for point in table["point"]:
        assert not (folder / point / "split").exists()
        assert yaml.safe_load((folder / point / "params.yaml").read_text())["params"][
            "split_dir"
        ] == str(folder)


def test_best_point_tune_notebook_and_index(local_sweep):
    root, res = local_sweep
    table = pd.read_csv(res.sweep_dir / "sweep.csv")
    ok = table[table["status"] == "ok"]
    expected = ok.loc[ok["valid_rmse"].idxmin()]
    assert res.metric == "valid_rmse"
    assert res.best == {"factors": int(expected["factors"]), "fail": False}
    info = json.loads((res.sweep_dir / "sweep.json").read_text())
    assert info["best_point"] == expected["point"] and info["n_ok"] == 2 and info["n_failed"] == 2
    best = pipeline.best_params(res.sweep_dir)
    assert (
        best["factors"] == expected["factors"] and best["epochs"] == 2 and "split_dir" not in best
    )
    # 05_tune ran on the sweep folder and found the same point
    assert res.tune_html is not None and res.tune_html.is_file()
    assert f"at point {expected['point']}" in res.tune_html.read_text()
    index = (root / "index.html").read_text()
    assert 'href="sw/05_tune.html"' in index and "2/4 points ok" in index


def test_run_from_sweep_takes_the_best_configuration(local_sweep, tmp_path):
    _, res = local_sweep
    rc = cli.main(
        [
            "run", "--from-sweep", str(res.sweep_dir), "--only", "01_prepare,02_train",
            "--run-dir", str(tmp_path / "best"), "--notebooks", str(FIX), "--kernel", KERNEL,
            "--reports", str(tmp_path), "--no-html", "-q",
        ]
    )  # fmt: skip
    assert rc == 0
    record = yaml.safe_load((tmp_path / "best" / "params.yaml").read_text())
    assert record["params"]["factors"] == res.best["factors"] and record["params"]["epochs"] == 2
    assert record["from_sweep"] == str(res.sweep_dir)
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["models"]["mf"]["factors"] == res.best["factors"]


def test_sweep_validates_every_grid_value_before_running(tmp_path):
    with pytest.raises(
        ParameterError, match=r"factors \(int, default 4, >= 1\) must be >= 1; got 0"
    ):
        pipeline.sweep(
            {"factors": [2, 0]}, sweep_dir=tmp_path / "s", notebooks_dir=FIX, reports_root=tmp_path
        )
    with pytest.raises(ParameterError, match="did you mean 'factors'"):
        pipeline.sweep(
            {"factorz": [2, 3]}, sweep_dir=tmp_path / "s", notebooks_dir=FIX, reports_root=tmp_path
        )
    with pytest.raises(ParameterError, match="'n_users' is declared only by 01_prepare"):
        pipeline.sweep(
            {"n_users": [5, 6]}, sweep_dir=tmp_path / "s", notebooks_dir=FIX, reports_root=tmp_path
        )
    with pytest.raises(ParameterError, match="--scheduler"):
        pipeline.sweep(
            {"factors": [2, 3]}, executor="dask", sweep_dir=tmp_path / "s", notebooks_dir=FIX
        )
    assert not (tmp_path / "s").exists()
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "sweep.yaml").write_text("kind: sweep\n")
    with pytest.raises(ParameterError, match="already holds a sweep.*--overwrite"):
        pipeline.sweep({"factors": [2, 3]}, sweep_dir=tmp_path / "s", notebooks_dir=FIX)


@pytest.mark.slow
def test_dask_sweep_on_a_two_worker_local_cluster(tmp_path):
    distributed = pytest.importorskip(
        "distributed", reason="the cluster extra (dask.distributed) is not installed"
    )
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        res = pipeline.sweep(
            {"factors": [2, 3], "epochs": 2},
            executor="dask",
            scheduler=cluster.scheduler_address,
            sweep_dir=tmp_path / "dask-sweep",
            notebooks_dir=FIX,
            kernel=KERNEL,
            reports_root=tmp_path,
            html=False,
            tune=False,
            progress=False,
        )
    table = pd.read_csv(res.sweep_dir / "sweep.csv")
    assert list(table["factors"]) == [2, 3] and (table["status"] == "ok").all()
    assert table["valid_rmse"].notna().all() and not res.failed
    for point in table["point"]:
        m = json.loads((res.sweep_dir / point / "metrics.json").read_text())["models"]["mf"]
        assert m["epochs"] == 2
    assert json.loads((res.sweep_dir / "sweep.json").read_text())["executor"] == "dask"


def test_split_grid_swept_fixed_and_list_parameters():
    from mfjax.pipeline import ParamSpec, _split_grid

    specs = {
        "factors": ParamSpec("factors", "int", 8, low=1),
        "reg": ParamSpec("reg", "float", 0.1, low=0),
        "roster": ParamSpec("roster", "list", ["mf"]),
    }
    swept, fixed = _split_grid({"factors": [8, 16], "reg": 1, "roster": ["mf", "bias"]}, specs)
    assert swept == {"factors": [8, 16]} and fixed == {"reg": 1.0, "roster": ["mf", "bias"]}
    swept, fixed = _split_grid({"roster": [["mf"], ["mf", "bias"]], "factors": [4]}, specs)
    assert swept == {"roster": [["mf"], ["mf", "bias"]]} and fixed == {"factors": 4}
    with pytest.raises(ParameterError, match="must be >= 0; got -1.0"):
        _split_grid({"reg": [0.1, -1.0]}, specs)


def test_dask_executor_without_the_cluster_extra_says_what_to_install(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    with pytest.raises(ParameterError, match=r"pip install 'mfjax\[cluster\]'"):
        pipeline._dask_points([], "tcp://127.0.0.1:8786", lambda result: None)

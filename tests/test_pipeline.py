"""The notebook runner: parameter validation, runs into a folder, failing cells, --only.

Runs use the small numpy-only notebooks of tests/fixtures/notebooks (regenerate them with
tests/fixtures/make_fixture_notebooks.py) and the venv's ``python3`` kernel, so that these
tests check the runner and not the real notebooks; the contract of the real notebooks is
checked at the end, when they exist.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pytest
import yaml

from mfjax import pipeline
from mfjax.pipeline import NotebookExecutionError, ParameterError, ParamSpec

FIX = Path(__file__).parent / "fixtures" / "notebooks"
REAL = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "python3"


@pytest.fixture(scope="module")
def specs() -> dict[str, ParamSpec]:
    return pipeline.parameter_specs(pipeline.find_notebooks(FIX))


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    params = {"factors": 3, "epochs": 2, "n_users": 12, "reg": 0.5}
    result = pipeline.run(
        params,
        run_dir=root / "r1",
        notebooks_dir=FIX,
        kernel=KERNEL,
        reports_root=root,
        progress=False,
    )
    return root, result


# ----------------------------------------------------------------------------- parameters
def test_specs_read_types_defaults_and_ranges(specs):
    assert specs["factors"] == ParamSpec(
        "factors",
        "int",
        4,
        "latent factors, >= 1",
        ("02_train",),
        low=1.0,
        defaults=(("02_train", 4),),
    )
    assert specs["test_size"].low == 0 and specs["test_size"].high == 1
    assert specs["test_size"].low_open and specs["test_size"].high_open
    assert specs["optimizer"].choices == ("sgd", "adam")
    assert specs["fail"].type == "bool"
    # papermill cannot parse lines with two '=' ("seed = 0  # ..., >= 0"); the ast fallback does
    assert specs["seed"].type == "int" and specs["seed"].low == 0
    assert set(specs["seed"].notebooks) == {
        "01_prepare",
        "02_train",
        "03_evaluate",
        "04_compare",
        "05_tune",
    }
    assert "run_dir" not in specs  # the runner's own


def test_unknown_parameter_lists_valid_names_with_did_you_mean(specs):
    with pytest.raises(ParameterError) as err:
        pipeline.validate_params({"factor": 8}, specs)
    msg = str(err.value)
    assert "unknown parameter 'factor' (did you mean 'factors'?)" in msg
    for name in (
        "epochs (int, default 5, in [1, 1000])",
        "dataset (str, default 'synthetic')",
        "reg",
    ):
        assert name in msg


def test_wrong_type_names_parameter_type_and_default(specs):
    with pytest.raises(
        ParameterError, match=r"factors \(int, default 4, >= 1\) expects an int; got str 'many'"
    ):
        pipeline.validate_params({"factors": "many"}, specs)
    with pytest.raises(
        ParameterError, match=r"fail \(bool, default False\) expects a bool; got int 1"
    ):
        pipeline.validate_params({"fail": 1}, specs)
    # an int where a float is declared is fine and becomes a float
    assert pipeline.validate_params({"reg": 1}, specs) == {"reg": 1.0}
    assert isinstance(pipeline.validate_params({"reg": 1}, specs)["reg"], float)


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("factors", 0, r"factors \(int, default 4, >= 1\) must be >= 1; got 0"),
        ("lr", 0.0, r"lr \(float, default 0.01, > 0\) must be > 0; got 0.0"),
        ("test_size", 1.0, r"must be in \(0, 1\); got 1.0"),
        ("epochs", 1001, r"must be in \[1, 1000\]; got 1001"),
        ("optimizer", "adma", r"one of 'sgd', 'adam'; got 'adma' \(did you mean 'adam'\?\)"),
    ],
)
def test_out_of_range(specs, name, value, expected):
    with pytest.raises(ParameterError, match=expected):
        pipeline.validate_params({name: value}, specs)


def test_parameter_of_a_notebook_not_run_is_an_error(specs):
    with pytest.raises(ParameterError, match="'n_users' is declared only by 01_prepare"):
        pipeline.validate_params({"n_users": 5}, specs, running=["02_train"])


def test_parse_value_is_yaml_scalar():
    assert pipeline.parse_value("64") == 64 and isinstance(pipeline.parse_value("64"), int)
    assert pipeline.parse_value("1e-3") == 0.001
    assert pipeline.parse_value("0.1") == 0.1
    assert pipeline.parse_value("true") is True
    assert pipeline.parse_value("ml-100k") == "ml-100k"
    assert pipeline.parse_value("[1, 2]") == [1, 2]


def test_invalid_parameters_stop_before_anything_runs(tmp_path):
    with pytest.raises(ParameterError):
        pipeline.run(
            {"epochs": 0},
            run_dir=tmp_path / "r",
            notebooks_dir=FIX,
            kernel=KERNEL,
            reports_root=tmp_path,
        )
    assert not (tmp_path / "r").exists()
    with pytest.raises(ParameterError, match="no notebook '06_nope'"):
        pipeline.run(
            None, run_dir=tmp_path / "r", only=["06_nope"], notebooks_dir=FIX, reports_root=tmp_path
        )


def test_load_params_file_flat_and_from_a_run(tmp_path):
    flat = tmp_path / "flat.yaml"
    flat.write_text("factors: 8\nlr: 1.0e-3\n")
    assert pipeline.load_params_file(flat) == {"factors": 8, "lr": 0.001}
    run = tmp_path / "params.yaml"
    run.write_text(yaml.safe_dump({"run_name": "x", "params": {"factors": 8}, "environment": {}}))
    assert pipeline.load_params_file(run) == {"factors": 8}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="must hold a mapping"):
        pipeline.load_params_file(bad)


def test_expand_grid_product_and_seeded_sample():
    grid = {"factors": [8, 16, 32], "reg": [0.01, 0.1], "epochs": 3}
    full = pipeline.expand_grid(grid)
    assert len(full) == 6 and full[0] == {"factors": 8, "reg": 0.01, "epochs": 3}
    a = pipeline.expand_grid(grid, sample=4, seed=7)
    assert a == pipeline.expand_grid(grid, sample=4, seed=7)
    assert len(a) == 4 and all(p in full for p in a) and len({tuple(p.values()) for p in a}) == 4
    assert any(pipeline.expand_grid(grid, sample=4, seed=s) != a for s in range(8))


# ----------------------------------------------------------------------------------- runs
def test_run_writes_the_run_folder_and_parameters_flow(fixture_run):
    root, result = fixture_run
    run = result.run_dir
    for nb in ("01_prepare", "02_train", "03_evaluate", "04_compare"):
        assert (run / f"{nb}.ipynb").is_file() and (run / f"{nb}.html").is_file()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "synthetic"
    mf = metrics["models"]["mf"]
    assert (mf["factors"], mf["epochs"]) == (3, 2)  # non-default values reached the notebooks
    # the model the notebook trained has 3 factors, and its recorded RMSE matches the artifacts
    model = np.load(run / "models" / "mf.npz")
    split = np.load(run / "split" / "split.npz")
    assert model["P"].shape[1] == 3 and split["u"].max() < 12  # n_users=12 reached 01_prepare
    t = split["test"]
    pred = np.clip(
        model["mu"] + np.sum(model["P"][split["u"][t]] * model["Q"][split["i"][t]], 1), 1, 5
    )
    assert mf["rmse"] == pytest.approx(
        float(np.sqrt(np.mean((pred - split["r"][t]) ** 2))), rel=1e-12
    )
    # papermill injected only what differs from each notebook's defaults (plus run_dir)
    nb = nbformat.read(str(run / "02_train.ipynb"), as_version=4)
    assert nb.metadata.papermill.parameters == {
        "run_dir": str(run),
        "factors": 3,
        "epochs": 2,
        "reg": 0.5,
    }


def test_params_yaml_records_everything_to_reproduce(fixture_run):
    _, result = fixture_run
    record = yaml.safe_load((result.run_dir / "params.yaml").read_text())
    assert record["params"]["factors"] == 3 and record["params"]["lr"] == 0.01  # defaults too
    assert record["overrides"] == {"factors": 3, "epochs": 2, "n_users": 12, "reg": 0.5}
    assert record["seed"] == 0 and record["dataset"] == "synthetic" and record["date"]
    env = record["environment"]
    assert env["mfjax"] and env["jax"] and env["jax_devices"] and "git_commit" in env
    assert pipeline.load_params_file(result.run_dir / "params.yaml") == result.params
    status = json.loads((result.run_dir / "run.json").read_text())
    assert status["status"] == "ok" and set(status["notebooks"]) == set(result.seconds)


def test_run_rebuilds_the_index(fixture_run):
    root, _ = fixture_run
    index = (root / "index.html").read_text()
    assert 'href="r1/02_train.html"' in index and "synthetic" in index


def test_only_reruns_part_of_a_run_with_its_saved_parameters(fixture_run, tmp_path):
    _, result = fixture_run
    copy = tmp_path / "r1"
    shutil.copytree(result.run_dir, copy)
    again = pipeline.run(
        {"epochs": 3},
        run_dir=copy,
        only=["02", "evaluate"],
        notebooks_dir=FIX,
        kernel=KERNEL,
        index=False,
        progress=False,
        html=False,
    )
    mf = again.metrics["models"]["mf"]
    assert (mf["factors"], mf["epochs"]) == (3, 3)  # factors kept from params.yaml
    assert list(again.seconds) == ["02_train", "03_evaluate"]
    assert yaml.safe_load((copy / "params.yaml").read_text())["params"]["n_users"] == 12


def test_failing_cell_names_notebook_cell_and_exception_and_keeps_partial(tmp_path):
    with pytest.raises(NotebookExecutionError) as err:
        pipeline.run(
            {"fail": True},
            run_dir=tmp_path / "r",
            only=["02_train"],
            notebooks_dir=FIX,
            kernel=KERNEL,
            reports_root=tmp_path,
            progress=False,
        )
    exc = err.value
    msg = str(exc)
    assert msg.startswith("notebook 02_train.ipynb failed at cell 5 (In [")
    assert (
        """, line 2: 'raise RuntimeError("planted failure in the fixture (fail=True)")'): """ in msg
    )
    assert "RuntimeError: planted failure in the fixture" in msg
    assert (exc.notebook, exc.cell, exc.ename, exc.line_no) == (
        "02_train.ipynb",
        5,
        "RuntimeError",
        2,
    )
    assert exc.source_line == "if fail:"
    assert exc.output == (tmp_path / "r" / "02_train.ipynb").resolve() and exc.output.is_file()
    assert exc.html is not None and exc.html.is_file() and "planted failure" in exc.html.read_text()
    nb = nbformat.read(str(exc.output), as_version=4)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert [e.ename for e in errors] == ["RuntimeError"]
    status = json.loads((tmp_path / "r" / "run.json").read_text())
    assert status["status"] == "failed" and "planted failure" in status["error"]


# ------------------------------------------------------------------- the real notebooks
def _real_notebooks() -> dict[str, Path]:
    found = pipeline.find_notebooks(REAL) if REAL.is_dir() else {}
    if not all(n in found for n in pipeline.DEFAULT_SEQUENCE):
        pytest.skip(f"the pipeline notebooks are not all in {REAL} yet")
    return found


def test_real_notebooks_follow_the_runner_contract():
    found = _real_notebooks()
    for name, path in found.items():
        nb = nbformat.read(str(path), as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name} must have exactly one cell tagged 'parameters'"
        declared = pipeline._inspect(path)
        for required in ("run_dir", "dataset", "seed"):
            assert required in declared, f"{name}'s parameters cell lacks {required!r}"
    # one name, one default across the notebooks of a run: params.yaml records a single value
    # (05_tune runs on its own over a sweep and may default differently)
    specs = pipeline.parameter_specs({n: found[n] for n in pipeline.DEFAULT_SEQUENCE})
    for spec in specs.values():
        assert len({repr(d) for _, d in spec.defaults}) == 1, (
            f"{spec.name} defaults differ: {spec.defaults}"
        )


def test_full_run_into_a_previous_run_needs_overwrite(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    (run / "run.json").write_text('{"status": "ok"}')
    (run / "stale.txt").write_text("old")
    with pytest.raises(ParameterError, match="already holds a run.*--overwrite"):
        pipeline.run({}, run_dir=run, notebooks_dir=FIX, kernel=KERNEL, reports_root=tmp_path)
    assert (run / "stale.txt").exists()


@pytest.mark.slow
def test_mfjax_run_end_to_end_on_the_real_notebooks(tmp_path):
    """`mfjax run` over notebooks/ with small non-default parameters: metrics.json, params
    that flowed into the trained model, and self-contained HTML with no error output."""
    _real_notebooks()
    import mfjax.models.mf  # noqa: F401  (registers 'mf' for load)
    from mfjax import cli, report
    from mfjax.models.base import load

    run = tmp_path / "run"
    argv = ["run", "--run-dir", str(run), "--reports", str(tmp_path), "--kernel", KERNEL, "-q"]
    small = {"factors": "4", "epochs": "2", "roster": "[mf, popularity, bias]", "seeds": "[0]"}
    for name, value in small.items():
        argv += ["-p", name, value]
    assert cli.main(argv) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["dataset"] == "synthetic"
    mf = metrics["models"]["mf"]
    for key in ("rmse", "mae", "precision@10", "recall@10", "map@10", "fit_seconds"):
        assert isinstance(mf[key], float) and np.isfinite(mf[key]), key
    assert 0 < mf["rmse"] < 4 and 0 <= mf["precision@10"] <= 1
    assert {"popularity", "bias"} <= set(metrics["models"])
    assert None not in [
        v for m in metrics["models"].values() for v in m.values()
    ]  # absent, not null
    assert load(run / "models" / "mf.npz").config.factors == 4  # the parameter reached the model
    record = yaml.safe_load((run / "params.yaml").read_text())
    assert record["params"]["factors"] == 4 and record["params"]["roster"] == [
        "mf",
        "popularity",
        "bias",
    ]
    for nb in pipeline.DEFAULT_SEQUENCE:
        page = (run / f"{nb}.html").read_text(encoding="utf-8")
        assert report.external_references(page) == [] and 'id="mfjax-toc"' in page
        cells = nbformat.read(str(run / f"{nb}.ipynb"), as_version=4).cells
        assert not [
            o for c in cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
        ]


def test_default_run_folder_is_named_after_dataset_and_time(tmp_path):
    res = pipeline.run(
        {"n_users": 5},
        only=["01_prepare"],
        notebooks_dir=FIX,
        kernel=KERNEL,
        reports_root=tmp_path,
        html=False,
        progress=False,
    )
    assert res.run_dir.parent == tmp_path.resolve()
    assert re.fullmatch(r"synthetic-\d{8}-\d{6}", res.run_dir.name)
    assert (res.run_dir / "split" / "split.npz").is_file() and (tmp_path / "index.html").is_file()


def test_defaults_come_from_the_notebooks_being_run():
    spec = ParamSpec(
        "epochs",
        "int",
        30,
        notebooks=("02_train", "05_tune"),
        defaults=(("02_train", 30), ("05_tune", 20)),
    )
    specs = {"epochs": spec}
    assert pipeline._effective(specs, ["05_tune"], {}) == {"epochs": 20}
    assert pipeline._effective(specs, ["02_train", "05_tune"], {}) == {"epochs": 30}
    # nothing is injected into a notebook whose own default is the value
    assert pipeline._for_notebook("05_tune", specs, {"epochs": 20}) == {}
    assert pipeline._for_notebook("02_train", specs, {"epochs": 20}) == {"epochs": 20}

"""The ``mfjax`` command: -p parsing, errors without tracebacks, reproducing a run from its
params.yaml, report-index, notebooks --in-place, and the installed console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from mfjax import cli, pipeline

FIX = Path(__file__).parent / "fixtures" / "notebooks"
KERNEL = "python3"


def _common(tmp_path: Path) -> list[str]:
    return ["--notebooks", str(FIX), "--kernel", KERNEL, "--reports", str(tmp_path), "-q"]


def test_cli_values_are_yaml_scalars_but_str_parameters_keep_their_text():
    specs = pipeline.parameter_specs(pipeline.find_notebooks(FIX))
    got = cli._cli_params(
        [("factors", "64"), ("lr", "1e-3"), ("fail", "true"), ("dataset", "2024")], specs
    )
    assert got == {"factors": 64, "lr": 0.001, "fail": True, "dataset": "2024"}
    assert type(got["factors"]) is int
    assert cli._grid_values("16,32,64", specs["factors"]) == [16, 32, 64]
    assert cli._grid_values("[0.01, 0.1]", specs["reg"]) == [0.01, 0.1]
    assert cli._grid_values("sgd,adam", specs["optimizer"]) == ["sgd", "adam"]


def test_parameter_errors_exit_2_with_one_message(tmp_path, capsys):
    rc = cli.main(
        ["run", "-p", "factor", "3", "--run-dir", str(tmp_path / "r"), *_common(tmp_path)]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: unknown parameter 'factor' (did you mean 'factors'?)")
    assert "Traceback" not in err and not (tmp_path / "r").exists()
    rc = cli.main(["run", "-p", "epochs", "many", *_common(tmp_path)])
    assert (
        rc == 2
        and "epochs (int, default 5, in [1, 1000]) expects an int" in capsys.readouterr().err
    )


def test_failing_cell_exits_1_naming_notebook_cell_and_exception(tmp_path, capsys):
    rc = cli.main(
        [
            "run",
            "-p",
            "fail",
            "true",
            "--only",
            "02_train",
            "--run-dir",
            str(tmp_path / "r"),
            *_common(tmp_path),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert err.startswith("error: notebook 02_train.ipynb failed at cell 5 (In [")
    assert "RuntimeError: planted failure in the fixture (fail=True)" in err
    assert f"kept for inspection: {(tmp_path / 'r' / '02_train.ipynb').resolve()}" in err
    assert "Traceback" not in err


def test_params_yaml_reproduces_the_run(tmp_path, capsys):
    import numpy as np

    first = tmp_path / "first"
    only = ["--only", "01_prepare,02_train", "--no-html"]
    argv = [
        "run",
        "-p",
        "factors",
        "3",
        "-p",
        "epochs",
        "2",
        "-p",
        "seed",
        "5",
        "--run-dir",
        str(first),
    ]
    assert cli.main([*argv, *only, *_common(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"run folder: {first.resolve()}" in out and "mf: " in out
    again = ["run", "--params", str(first / "params.yaml"), *only, *_common(tmp_path)]
    assert cli.main([*again, "--run-dir", str(tmp_path / "second")]) == 0
    # and a different seed really gives a different model
    assert cli.main([*again, "-p", "seed", "6", "--run-dir", str(tmp_path / "third")]) == 0
    a, b, c = (np.load(tmp_path / r / "models" / "mf.npz") for r in ("first", "second", "third"))
    assert a["P"].shape == (a["P"].shape[0], 3)
    for key in ("P", "Q", "mu"):
        np.testing.assert_array_equal(a[key], b[key])  # bit for bit
    assert not np.array_equal(a["P"], c["P"])


def test_report_index_and_params_commands(tmp_path, capsys):
    assert cli.main(["report-index", "--reports", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file()
    assert cli.main(["params", "--notebooks", str(FIX)]) == 0
    out = capsys.readouterr().out
    assert "factors (int, default 4, >= 1)" in out and "02_train" in out


def test_notebooks_in_place_executes_with_defaults_and_strips_papermill(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    shutil.copy(FIX / "01_prepare.ipynb", folder)
    rc = cli.main(["notebooks", "--in-place", "--notebooks", str(folder), "--kernel", KERNEL, "-q"])
    assert rc == 0
    nb = nbformat.read(str(folder / "01_prepare.ipynb"), as_version=4)
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    assert any("train ratings" in o.get("text", "") for c in code for o in c.outputs)
    assert sum("parameters" in c.metadata.get("tags", []) for c in nb.cells) == 1
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    assert (folder / "fixture-run" / "split" / "split.npz").is_file()  # ran from its own folder


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("mfjax")
    if not exe.exists():
        pytest.skip("the mfjax console script is not installed in this environment")
    proc = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for option in ("--params", "--run-dir", "--only", "--kernel", "--no-input", "--from-sweep"):
        assert option in proc.stdout


def test_dataset_path_relative_to_the_shell_reaches_the_kernel(tmp_path, monkeypatch):
    data = tmp_path / "mine" / "ratings.data"
    data.parent.mkdir()
    rows = [(u, i, 1 + (u * i) % 5) for u in range(1, 9) for i in range(1, 6)]
    data.write_text("".join(f"{u}\t{i}\t{r}\t88{u}{i}\n" for u, i, r in rows))
    monkeypatch.chdir(tmp_path)  # the path is relative to the shell, the kernel runs elsewhere
    run = tmp_path / "r"
    argv = ["run", "-p", "dataset", "mine/ratings.data", "--only", "01_prepare", "--no-input"]
    rc = cli.main([*argv, "--run-dir", str(run), *_common(tmp_path)])
    assert rc == 0
    import numpy as np
    import yaml

    split = np.load(run / "split" / "split.npz")
    assert len(split["r"]) == len(rows) and sorted(split["r"].tolist()) == sorted(
        float(r) for _, _, r in rows
    )
    assert yaml.safe_load((run / "params.yaml").read_text())["params"]["dataset"] == str(data)
    page = (run / "01_prepare.html").read_text(encoding="utf-8")  # --no-input: results only
    assert "train ratings" in page and "np.savez" not in page and "default_rng" not in page


def test_sweep_grid_file_is_validated_before_running(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("grid:\n  factors: [2, 4]\n  regg: [0.1, 0.2]\nparams:\n  epochs: 2\n")
    rc = cli.main(
        ["sweep", "--grid", str(grid), "--sweep-dir", str(tmp_path / "s"), *_common(tmp_path)]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: unknown parameter 'regg' (did you mean 'reg'?)")
    assert not (tmp_path / "s").exists()
    assert pipeline.load_grid_file(grid) == {"epochs": 2, "factors": [2, 4], "regg": [0.1, 0.2]}
    assert cli.main(["sweep", *_common(tmp_path)]) == 2
    assert "a sweep needs a grid" in capsys.readouterr().err

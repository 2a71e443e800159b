"""HTML reports: self-contained, table of contents, parameters at the top, no stderr noise;
the reports index; a headless Chromium render when a browser is installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from mfjax import report

# a 1x1 PNG
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360606060000000050001a5f645400000000049454e44ae426082"
    )
).decode()


def _notebook(tmp_path: Path) -> Path:
    nb = new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = new_code_cell('run_dir = ""\nfactors = 4  # latent factors\n', execution_count=1)
    params.metadata["tags"] = ["parameters"]
    code = new_code_cell("print('hello from the cell')\nplot()", execution_count=2)
    code.outputs = [
        new_output("stream", name="stdout", text="hello from the cell\n"),
        new_output("stream", name="stderr", text="UserWarning: a stray warning\n"),
        new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
        new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2},
                "text/plain": "100%|##########| 5/5",
            },
        ),
    ]
    nb.cells = [
        new_markdown_cell("# Train the model\n\nWhy we train."),
        params,
        new_markdown_cell("## 1. Data & split\n\n### 1.1 Counts"),
        code,
        new_markdown_cell("## 2. Learning curve\n\nSee $x^2$ and [a link](https://example.org)."),
    ]
    path = tmp_path / "02_train.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_export_is_self_contained_with_toc_params_and_no_stderr(tmp_path):
    out = report.export_html(
        _notebook(tmp_path), params={"factors": 8, "dataset": "synthetic"}, run_info={"run": "r1"}
    )
    assert out == tmp_path / "02_train.html"
    text = out.read_text(encoding="utf-8")
    assert report.external_references(text) == []
    assert not re.search(r"<script[^>]+src=", text)  # no require.js / MathJax from a CDN
    assert '<a href="https://example.org">a link</a>' in text  # links stay: they are not fetched
    assert "data:image/png;base64," + PNG[:20] in text  # the figure is embedded
    assert "hello from the cell" in text and "a stray warning" not in text
    assert "100%|##########| 5/5" in text and "widget-view" not in text
    # the header (title, run info, parameters) and the table of contents precede the cells
    header = text.index('id="mfjax-header"')
    assert header < text.index('class="jp-Cell')
    assert "<h1>Train the model</h1>" in text[header:]
    table = text[header : text.index("</table>", header)]
    assert "<td>factors</td><td>8</td>" in table and "<td>dataset</td><td>synthetic</td>" in table
    toc = text[text.index('id="mfjax-toc"') : text.index("</nav>")]
    titles = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', toc)
    assert [t for _, t in titles] == [
        "Train the model",
        "1. Data &amp; split",
        "1.1 Counts",
        "2. Learning curve",
    ]
    for anchor, _ in titles:  # every entry points at a heading that exists
        assert f'id="{anchor}"' in text


def test_export_reads_parameters_from_the_notebook_and_hides_input(tmp_path):
    out = report.export_html(_notebook(tmp_path), tmp_path / "x.html", no_input=True)
    text = out.read_text(encoding="utf-8")
    assert "print(&#39;hello" not in text and "print('hello" not in text  # no code
    assert "hello from the cell" in text  # outputs stay
    assert "<td>factors</td><td>4</td>" in text  # the parameters cell's default


def test_external_references_finds_fetches_not_links():
    html = (
        '<script src="https://cdnjs.cloudflare.com/require.js"></script>'
        '<link rel="stylesheet" href="//fonts.example/x.css">'
        "<style>@import url('https://fonts.googleapis.com/css');</style>"
        '<a href="https://example.org">ok</a><img src="data:image/png;base64,AAA">'
    )
    found = report.external_references(html)
    assert len(found) == 3 and all("example.org" not in f for f in found)


def _fake_run(root: Path, name: str, date: str, rmse: float, status: str = "ok") -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "params.yaml").write_text(
        yaml.safe_dump({"run_name": name, "date": date, "dataset": "ml-100k", "params": {}})
    )
    (run / "metrics.json").write_text(
        json.dumps(
            {
                "dataset": "ml-100k",
                "params": {},
                "models": {
                    "mf": {"rmse": rmse, "precision@10": 0.25},
                    "popularity": {"precision@10": 0.11},
                },
            }
        )
    )
    (run / "run.json").write_text(json.dumps({"status": status}))
    (run / "02_train.html").write_text("<html></html>")
    return run


def test_index_lists_runs_and_sweeps_newest_first(tmp_path):
    _fake_run(tmp_path, "old", "2026-01-01T10:00:00+00:00", 0.95)
    _fake_run(tmp_path, "new", "2026-02-01T10:00:00+00:00", 0.91234, status="failed")
    sweep = tmp_path / "sw"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text(
        yaml.safe_dump(
            {
                "date": "2026-01-15T00:00:00+00:00",
                "dataset": "synthetic",
                "grid": {"factors": [8, 16]},
            }
        )
    )
    (sweep / "sweep.json").write_text(
        json.dumps(
            {
                "n_ok": 2,
                "n_points": 3,
                "metric": "valid_rmse",
                "best_value": 0.8765,
                "best_params": {"factors": 16},
            }
        )
    )
    (sweep / "sweep.csv").write_text("point\n")
    _fake_run(
        sweep, "point-00", "2026-01-15T00:00:01+00:00", 0.9
    )  # listed with its sweep, not alone
    page = report.build_index(tmp_path).read_text(encoding="utf-8")
    rows = re.findall(r"<tr><td><a href=\"([^\"]+)/\">", page)
    assert rows == ["new", "sw", "old"]
    assert "<tr><th>model</th><th>rmse</th><th>precision@10</th></tr>" in page
    assert "<tr><th>mf</th><td>0.9123</td><td>0.2500</td></tr>" in page
    assert "<tr><th>popularity</th><td></td><td>0.1100</td></tr>" in page
    assert "failed" in page and "2/3 points ok" in page
    assert "best valid_rmse 0.8765 at factors=16" in page and "grid: factors [8, 16]" in page
    assert 'href="new/02_train.html"' in page and 'href="sw/sweep.csv"' in page
    assert report.external_references(page) == []


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.skipif(
    _chromium() is None, reason="no chromium binary (apt-get install chromium to run)"
)
def test_report_renders_in_headless_chromium_offline(tmp_path):
    out = report.export_html(_notebook(tmp_path), params={"factors": 8})
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--enable-logging=stderr",
        "--v=0",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: any fetch would fail and be logged
        "--virtual-time-budget=3000",
        "--dump-dom",
        out.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    assert 'id="mfjax-toc"' in dom and "hello from the cell" in dom and "Train the model" in dom
    console = [ln for ln in proc.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not [ln for ln in console if "rror" in ln or "Uncaught" in ln], console
    assert "ERR_NAME_NOT_RESOLVED" not in proc.stderr

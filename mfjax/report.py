"""Self-contained HTML reports of executed notebooks, and the ``reports/index.html`` of all runs.

Every report is **one file** that opens in a browser with no server and no network: figures
are embedded, the CSS is inlined, and the scripts nbconvert would fetch from CDNs
(require.js, MathJax, Mermaid, widget managers) are left out. A report starts with the run's
parameters and a table of contents built from the notebook's headings; stderr streams
(warnings, progress bars, log lines) are kept in the executed ``.ipynb`` but not shown in
the HTML.

Example:
    >>> from mfjax import report
    >>> report.export_html("reports/default/02_train.ipynb")       # doctest: +SKIP
    PosixPath('reports/default/02_train.html')
    >>> report.build_index("reports")                              # doctest: +SKIP
    PosixPath('reports/index.html')
"""

from __future__ import annotations

import datetime as _dt
import html as _html
import json
import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mfjax._io_utils import write_text_atomic

__all__ = ["build_index", "export_html", "external_references", "HEADLINE_METRICS"]

#: metrics shown for each model in the index, when present
HEADLINE_METRICS: tuple[str, ...] = ("rmse", "precision@10", "ndcg@10", "map@10")

_TOC_MARK = "<!--mfjax-toc-->"
_TEMPLATE = r"""{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}
<style type="text/css">
.mfjax-header { max-width: 1100px; margin: 1.5em auto 0.5em auto; padding: 0 1em;
  font-family: var(--jp-ui-font-family, sans-serif); font-size: 14px; }
.mfjax-header h1 { font-size: 1.3em; margin: 0 0 0.4em 0; }
.mfjax-params { border-collapse: collapse; margin: 0.3em 0 0.8em 0; }
.mfjax-params td, .mfjax-params th { border: 1px solid #ccc; padding: 2px 8px; text-align: left;
  font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.mfjax-params th { background: #f3f3f3; }
.mfjax-toc { border-left: 3px solid #4a90d9; padding: 0.2em 1em; margin: 0.5em 0; }
.mfjax-toc ul { margin: 0.2em 0; padding-left: 0.4em; list-style: none; }
.mfjax-toc .lvl3 { padding-left: 2.4em; }
.mfjax-toc .lvl2 { padding-left: 1.2em; }
</style>
{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<!--mfjax-toc-->
{%- endblock body_header -%}
"""
_HEADING = re.compile(r"<h([1-3])\s+id=\"([^\"]+)\"[^>]*>(.*?)</h\1>", re.S | re.I)
_TAG = re.compile(r"<[^>]+>")
# tags that would make a browser fetch something: <script src=http..>, <link href=http..>, ...
_EXTERNAL = re.compile(
    r"<(script|link|img|iframe)\b[^>]*?\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//[^>]*>(?:\s*</script>)?",
    re.I,
)
_CSS_IMPORT = re.compile(r"@import\s+url\(\s*[\"']?(?:https?:)?//[^)]*\)\s*;?", re.I)


def external_references(text: str) -> list[str]:
    """Tags and CSS imports in ``text`` that would fetch a resource over the network.

    Links (``<a href=...>``) are not fetches and are not listed.

    Example:
        >>> external_references('<script src="https://cdn.x/require.js"></script><a href="https://x">x</a>')
        ['<script src="https://cdn.x/require.js"></script>']
    """
    return [m.group(0) for m in _EXTERNAL.finditer(text)] + _CSS_IMPORT.findall(text)


def _drop_noise(nb: Any) -> Any:
    """Remove stderr streams and widget views (a live bar has no meaning in a static file)."""
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                continue
            data = out.get("data")
            if data and "application/vnd.jupyter.widget-view+json" in data:
                data.pop("application/vnd.jupyter.widget-view+json")
                if not data:
                    continue
            kept.append(out)
        cell["outputs"] = kept
    nb.metadata.pop("widgets", None)
    return nb


def _notebook_params(nb: Any, path: Path) -> dict[str, Any]:
    """Parameters of an executed notebook: cell defaults overridden by papermill's record."""
    from mfjax.pipeline import _inspect

    params: dict[str, Any] = {}
    try:
        for name, info in _inspect(path).items():
            params[name] = _literal(info.get("default"))
    except Exception:  # a report without its parameters beats no report
        pass
    injected = (nb.metadata.get("papermill") or {}).get("parameters") or {}
    params.update(injected)
    return params


def _literal(text: Any) -> Any:
    import ast

    try:
        return ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _header(title: str, params: Mapping[str, Any], run_info: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{_html.escape(str(k))}</td><td>{_html.escape(_fmt(v))}</td></tr>"
        for k, v in sorted(params.items())
    )
    info = " · ".join(
        f"{_html.escape(str(k))}: {_html.escape(str(v))}" for k, v in run_info.items() if v
    )
    table = (
        f'<table class="mfjax-params"><tr><th>parameter</th><th>value</th></tr>{rows}</table>'
        if rows
        else "<p>(no parameters)</p>"
    )
    return (
        f'<header class="mfjax-header" id="mfjax-header"><h1>{_html.escape(title)}</h1>'
        f'<div class="mfjax-run">{info}</div>'
        f"<details open><summary>Parameters</summary>{table}</details>"
    )


def _toc(body: str) -> str:
    items = []
    for level, anchor, inner in _HEADING.findall(body):
        text = _html.unescape(_TAG.sub("", inner)).replace("¶", "").strip()
        if text:
            items.append(
                f'<li class="lvl{level}"><a href="#{anchor}">{_html.escape(text)}</a></li>'
            )
    if not items:
        return ""
    return f'<nav class="mfjax-toc" id="mfjax-toc"><strong>Contents</strong><ul>{"".join(items)}</ul></nav>'


def export_html(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    no_input: bool = False,
    params: Mapping[str, Any] | None = None,
    run_info: Mapping[str, Any] | None = None,
    title: str | None = None,
) -> Path:
    """Export an executed notebook to one self-contained HTML file; return its path.

    Args:
        notebook: the executed ``.ipynb``.
        output: the HTML path (default: beside the notebook, ``.html``).
        no_input: hide code cells (readers who only want results).
        params: the parameters shown at the top (default: the notebook's ``parameters``
            cell with papermill's injected values).
        run_info: short facts shown under the title (run name, date, ...).
        title: the page title (default: the notebook's name).

    Example:
        >>> export_html("reports/default/03_evaluate.ipynb", no_input=True)  # doctest: +SKIP
        PosixPath('reports/default/03_evaluate.html')
    """
    import jinja2
    import nbformat
    from nbconvert import HTMLExporter

    path = Path(notebook)
    out = Path(output) if output is not None else path.with_suffix(".html")
    nb = nbformat.read(str(path), as_version=4)
    if params is None:
        params = _notebook_params(nb, path)
    nb = _drop_noise(nb)
    exporter = HTMLExporter(
        template_name="lab",
        template_file="mfjax.html.j2",
        extra_loaders=[jinja2.DictLoader({"mfjax.html.j2": _TEMPLATE})],
        embed_images=True,
        exclude_input=no_input,
        exclude_input_prompt=no_input,
        exclude_output_prompt=no_input,
    )
    level = exporter.log.level
    exporter.log.setLevel(logging.ERROR)  # e.g. "Alternative text is missing on 1 image(s)"
    try:
        body, _ = exporter.from_notebook_node(
            nb, resources={"metadata": {"name": title or path.stem}}
        )
    finally:
        exporter.log.setLevel(level)
    body = _EXTERNAL.sub("", body)
    body = _CSS_IMPORT.sub("", body)
    if title is None:
        first = _HEADING.search(body)
        title = (
            _html.unescape(_TAG.sub("", first.group(3))).replace("¶", "").strip() if first else ""
        )
    header = _header(title or path.stem, params, dict(run_info or {})) + _toc(body) + "</header>"
    body = body.replace(_TOC_MARK, header, 1)
    return write_text_atomic(out, body)


# --------------------------------------------------------------------------------------- index
def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _entries(root: Path) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    sweeps = {p.parent for p in root.rglob("sweep.yaml")} | {
        p.parent for p in root.rglob("sweep.json")
    }
    for folder in sorted(sweeps):
        info = {**_load_yaml(folder / "sweep.yaml"), **_load_json(folder / "sweep.json")}
        entries.append({"kind": "sweep", "folder": folder, "info": info})
    for pfile in sorted(root.rglob("params.yaml")):
        folder = pfile.parent
        if folder in sweeps or any(s in folder.parents for s in sweeps):
            continue  # sweep points and the sweep's own notebooks are listed with the sweep
        entries.append({"kind": "run", "folder": folder, "info": _load_yaml(pfile)})
    return entries


def _metrics_cell(metrics: Mapping[str, Any]) -> str:
    """A compact table: one row per model, one column per headline metric it has."""
    models = {m: v for m, v in (metrics.get("models") or {}).items() if isinstance(v, dict)}
    cols = [
        m
        for m in HEADLINE_METRICS
        if any(isinstance(v.get(m), (int, float)) for v in models.values())
    ]
    if not cols:
        return "—"
    head = "".join(f"<th>{_html.escape(c)}</th>" for c in cols)
    rows = []
    for model, values in models.items():
        cells = "".join(
            f"<td>{values[c]:.4f}</td>" if isinstance(values.get(c), (int, float)) else "<td></td>"
            for c in cols
        )
        rows.append(f"<tr><th>{_html.escape(model)}</th>{cells}</tr>")
    return f'<table class="metrics"><tr><th>model</th>{head}</tr>{"".join(rows)}</table>'


def _dataset_cell(dataset: Any) -> str:
    text = "" if dataset is None else str(dataset)
    if "/" in text or os.sep in text:
        return f'<span title="{_html.escape(text)}">{_html.escape(Path(text).name)}</span>'
    return _html.escape(text)


def _links(folder: Path, root: Path) -> str:
    links = []
    for page in sorted(folder.glob("*.html")):
        rel = page.relative_to(root).as_posix()
        links.append(f'<a href="{_html.escape(rel)}">{_html.escape(page.stem)}</a>')
    for extra in ("sweep.csv", "metrics.json", "params.yaml"):
        if (folder / extra).is_file():
            rel = (folder / extra).relative_to(root).as_posix()
            links.append(f'<a href="{_html.escape(rel)}">{extra}</a>')
    return " · ".join(links)


def build_index(
    reports_root: str | os.PathLike[str] = "reports",
    output: str | os.PathLike[str] | None = None,
) -> Path:
    """Write ``<reports_root>/index.html``: every run and sweep, newest first.

    Each row gives the kind (run or sweep), the dataset, the date, the status, headline
    metrics (per model for a run, the best point for a sweep) and relative links to the HTML
    reports, so that the folder can be zipped and shared as it is.

    Example:
        >>> import tempfile
        >>> build_index(tempfile.mkdtemp()).name
        'index.html'
    """
    root = Path(reports_root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    out = Path(output) if output is not None else root / "index.html"
    rows = []
    for entry in _entries(root):
        folder, info = entry["folder"], entry["info"]
        if entry["kind"] == "run":
            status = _load_json(folder / "run.json").get("status", "unknown")
            metrics = _metrics_cell(_load_json(folder / "metrics.json"))
        else:
            n_ok, n = info.get("n_ok"), info.get("n_points")
            status = "running" if n_ok is None else f"{n_ok}/{n} points ok"
            metric, value = info.get("metric"), info.get("best_value")
            best = info.get("best_params") or {}
            metrics = (
                f"best {_html.escape(str(metric))} {value:.4f} at "
                + _html.escape(", ".join(f"{k}={v}" for k, v in best.items()))
                if isinstance(value, (int, float))
                else "—"
            )
            grid = info.get("grid") or {}
            if grid:
                metrics += "<br>grid: " + _html.escape(
                    "; ".join(f"{k} {v}" for k, v in grid.items())
                )
        rel = folder.relative_to(root).as_posix() or "."
        rows.append(
            (
                str(info.get("date", "")),
                "<tr>"
                f'<td><a href="{_html.escape(rel)}/">{_html.escape(rel)}</a></td>'
                f"<td>{entry['kind']}</td>"
                f"<td>{_dataset_cell(info.get('dataset'))}</td>"
                f"<td>{_html.escape(str(info.get('date', '')).replace('T', ' '))}</td>"
                f"<td>{_html.escape(str(status))}</td>"
                f"<td>{metrics}</td>"
                f"<td>{_links(folder, root)}</td>"
                "</tr>",
            )
        )
    rows.sort(key=lambda r: r[0], reverse=True)
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    body = (
        "\n".join(r[1] for r in rows)
        or '<tr><td colspan="7">No runs yet: run <code>mfjax run</code> or <code>make report</code>.</td></tr>'
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>mfjax reports</title>
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; }}
table {{ border-collapse: collapse; width: 100%; font-size: 14px; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 6px 8px; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
table.metrics {{ width: auto; font-size: 12px; }}
table.metrics th, table.metrics td {{ padding: 1px 6px; border: none; font-weight: normal; }}
table.metrics th {{ background: none; color: #555; }}
</style></head>
<body>
<h1>mfjax reports</h1>
<p>{len(rows)} run(s) and sweep(s) in this folder; rebuilt {now} by <code>mfjax report-index</code>.</p>
<table>
<tr><th>folder</th><th>kind</th><th>dataset</th><th>date</th><th>status</th><th>headline metrics</th><th>reports</th></tr>
{body}
</table>
</body></html>
"""
    return write_text_atomic(out, page)

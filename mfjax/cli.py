"""The ``mfjax`` command: run the notebook pipeline, sweeps, reports.

Usage::

    mfjax run [--params FILE.yaml] [-p NAME VALUE]... [--run-dir DIR] [--only 02_train,03_evaluate]
              [--kernel NAME] [--no-input] [--from-sweep DIR]
    mfjax sweep (--grid FILE.yaml | -p NAME V1,V2,...)... [--sample N] [--workers N]
              [--executor local|dask --scheduler ADDRESS]
    mfjax params                     the notebooks' parameters, types, defaults and ranges
    mfjax report-index               rebuild reports/index.html
    mfjax notebooks --in-place       re-execute notebooks/ with their defaults (make notebooks)

Values after ``-p`` are YAML scalars (``-p factors 64`` is an int, ``-p lr 1e-3`` a float);
in a sweep, commas separate the values of a grid parameter. Errors print one message and
exit with status 2 (bad parameters) or 1 (a notebook failed), without a traceback.

Example:
    $ mfjax run -p dataset ml-100k -p factors 64 --name ml100k-f64
    $ mfjax sweep -p factors 16,32,64 -p reg 0.01,0.1 --workers 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "build_parser"]

#: metrics printed per model after a run (all of them are in metrics.json)
_HEADLINE = ("rmse", "mae", "precision@10", "recall@10", "map@10", "ndcg@10", "fit_seconds")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--notebooks",
        metavar="DIR",
        default=None,
        help="folder of the pipeline notebooks (default: notebooks/ of the checkout, or $MFJAX_NOTEBOOKS_DIR)",
    )
    p.add_argument(
        "--kernel",
        metavar="NAME",
        default=None,
        help="Jupyter kernel to run the notebooks with (default: each notebook's kernelspec)",
    )
    p.add_argument(
        "--reports",
        metavar="DIR",
        default="reports",
        help="reports folder: default parent of run folders, and where index.html is rebuilt",
    )
    p.add_argument("--no-input", action="store_true", help="HTML reports without code cells")
    p.add_argument("--no-html", action="store_true", help="skip the HTML export")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="seconds per cell")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``mfjax`` (exposed for tests and docs)."""
    from mfjax import __version__

    parser = argparse.ArgumentParser(
        prog="mfjax",
        description="Matrix-factorization recommenders with JAX: run the notebook pipeline, "
        "sweeps and reports.",
    )
    parser.add_argument("--version", action="version", version=f"mfjax {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="execute the notebooks into a run folder (params.yaml, metrics.json, HTML)",
        description="Execute 01_prepare .. 04_compare with papermill into a run folder.",
    )
    run.add_argument("--params", metavar="FILE", help="YAML parameters (or a run's params.yaml)")
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="set a notebook parameter (a YAML scalar); repeatable",
    )
    run.add_argument(
        "--run-dir", metavar="DIR", help="run folder (default: REPORTS/<dataset>-<time>)"
    )
    run.add_argument("--name", help="run name (the default run folder's name)")
    run.add_argument(
        "--only",
        metavar="NB[,NB...]",
        help="run only these notebooks, e.g. 02_train,03_evaluate (05_tune runs only when asked)",
    )
    run.add_argument(
        "--from-sweep",
        metavar="DIR",
        help="start from the best configuration of a sweep folder (by its validation metric)",
    )
    run.add_argument("--metric", help="with --from-sweep: the column to rank points by")
    run.add_argument("--overwrite", action="store_true", help="replace a previous run in --run-dir")
    run.add_argument(
        "--no-prewarm",
        action="store_true",
        help="start each notebook's kernel only when it runs (default: the next one warms up early)",
    )
    _common(run)

    sw = sub.add_parser(
        "sweep",
        help="run 02_train + 03_evaluate over a grid, collect sweep.csv, then 05_tune",
        description="Grid sweep: each point in its own run folder; one shared prepared split.",
    )
    sw.add_argument("--grid", metavar="FILE", help="YAML: name: [values] (swept) or name: value")
    sw.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUES"),
        help="grid values separated by commas (-p factors 16,32,64); repeatable",
    )
    sw.add_argument("--sample", type=int, metavar="N", help="run N random points of the grid")
    sw.add_argument("--seed", type=int, default=0, help="seed of --sample (default 0)")
    sw.add_argument("--workers", type=int, default=1, metavar="N", help="parallel processes")
    sw.add_argument("--executor", choices=("local", "dask"), default="local")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://host:8786")
    sw.add_argument(
        "--sweep-dir", metavar="DIR", help="sweep folder (default: REPORTS/sweep-<dataset>-<time>)"
    )
    sw.add_argument("--name", help="sweep name (the default sweep folder's name)")
    sw.add_argument("--metric", help="column the best point is chosen by (default: valid_rmse)")
    sw.add_argument("--no-tune", action="store_true", help="do not run 05_tune afterwards")
    sw.add_argument("--overwrite", action="store_true", help="replace a previous sweep folder")
    _common(sw)

    params = sub.add_parser(
        "params", help="list the notebooks' parameters, types, defaults, ranges"
    )
    params.add_argument("--notebooks", metavar="DIR", default=None)

    idx = sub.add_parser("report-index", help="rebuild REPORTS/index.html")
    idx.add_argument("--reports", metavar="DIR", default="reports")

    nbs = sub.add_parser(
        "notebooks", help="re-execute the notebooks in place with their default parameters"
    )
    nbs.add_argument("--in-place", action="store_true", required=True, help="overwrite notebooks/")
    nbs.add_argument("--only", metavar="NB[,NB...]", help="only these notebooks")
    nbs.add_argument("--notebooks", metavar="DIR", default=None)
    nbs.add_argument("--kernel", metavar="NAME", default=None)
    nbs.add_argument("--timeout", type=float, default=None, metavar="S")
    nbs.add_argument("-q", "--quiet", action="store_true")
    return parser


def _cli_params(pairs: Sequence[Sequence[str]], specs: dict[str, Any]) -> dict[str, Any]:
    """``-p NAME VALUE`` pairs: YAML scalars, except that a str parameter keeps its text."""
    from mfjax.pipeline import parse_value

    out: dict[str, Any] = {}
    for name, raw in pairs:
        spec = specs.get(name)
        out[name] = raw if spec is not None and spec.type == "str" else parse_value(raw)
    return out


def _grid_values(raw: str, spec: Any) -> Any:
    from mfjax.pipeline import parse_value

    if raw.strip().startswith("["):
        value = parse_value(raw)
        if isinstance(value, list):
            return value
    parts = [p.strip() for p in raw.split(",")]
    if spec is not None and spec.type == "str":
        values: list[Any] = parts
    else:
        values = [parse_value(p) for p in parts]
    return values if len(values) > 1 else values[0]


def _split(text: str | None) -> list[str] | None:
    return [t for t in (text or "").split(",") if t.strip()] or None


def _cmd_run(args: argparse.Namespace) -> int:
    from mfjax import pipeline

    notebooks = pipeline.find_notebooks(args.notebooks)
    specs = pipeline.parameter_specs(notebooks)
    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if args.from_sweep:
        params.update(pipeline.best_params(args.from_sweep, metric=args.metric))
        extra["from_sweep"] = str(Path(args.from_sweep).resolve())
    if args.params:
        params.update(pipeline.load_params_file(args.params))
    params.update(_cli_params(args.param, specs))
    result = pipeline.run(
        params,
        run_dir=args.run_dir,
        name=args.name,
        only=_split(args.only),
        notebooks_dir=args.notebooks,
        kernel=args.kernel,
        no_input=args.no_input,
        html=not args.no_html,
        reports_root=args.reports,
        progress=not args.quiet,
        timeout=args.timeout,
        extra_record=extra,
        overwrite=args.overwrite,
        prewarm=not args.no_prewarm,
    )
    print(f"run folder: {result.run_dir}")
    for page in result.html:
        print(f"  {page.name}")
    for model, values in (result.metrics.get("models") or {}).items():
        shown = ", ".join(
            f"{k} {values[k]:.4f}" for k in _HEADLINE if isinstance(values.get(k), (int, float))
        )
        print(f"  {model}: {shown or 'no headline metrics'}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mfjax import pipeline

    notebooks = pipeline.find_notebooks(args.notebooks)
    specs = pipeline.parameter_specs(notebooks)
    grid: dict[str, Any] = {}
    if args.grid:
        grid.update(pipeline.load_grid_file(args.grid))
    for name, raw in args.param:
        grid[name] = _grid_values(raw, specs.get(name))
    if not grid:
        raise pipeline.ParameterError(
            "a sweep needs a grid: --grid FILE.yaml or -p NAME V1,V2,... (e.g. -p factors 16,32,64)"
        )
    result = pipeline.sweep(
        grid,
        sample=args.sample,
        seed=args.seed,
        workers=args.workers,
        executor=args.executor,
        scheduler=args.scheduler,
        sweep_dir=args.sweep_dir,
        name=args.name,
        notebooks_dir=args.notebooks,
        kernel=args.kernel,
        metric=args.metric,
        no_input=args.no_input,
        html=not args.no_html,
        tune=not args.no_tune,
        overwrite=args.overwrite,
        reports_root=args.reports,
        progress=not args.quiet,
        timeout=args.timeout,
    )
    n = len(result.table)
    print(f"sweep folder: {result.sweep_dir} ({n - len(result.failed)}/{n} points ok)")
    print(f"  table: {result.sweep_dir / 'sweep.csv'}")
    if result.best is not None:
        print(f"  best by {result.metric}: {result.best}")
    if result.tune_html is not None:
        print(f"  tuning report: {result.tune_html}")
    if result.failed:
        for name, err in sorted(result.failed.items()):
            print(f"error: point {name} failed: {err.splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from mfjax import pipeline

    specs = pipeline.parameter_specs(pipeline.find_notebooks(args.notebooks))
    for spec in sorted(specs.values(), key=lambda s: s.name):
        print(f"{spec.describe():60s} {', '.join(spec.notebooks)}")
    return 0


def _cmd_index(args: argparse.Namespace) -> int:
    from mfjax import report

    print(report.build_index(args.reports))
    return 0


def _cmd_notebooks(args: argparse.Namespace) -> int:
    from mfjax import pipeline

    done = pipeline.refresh_notebooks(
        args.notebooks,
        kernel=args.kernel,
        names=_split(args.only),
        progress=not args.quiet,
        timeout=args.timeout,
    )
    for path in done:
        print(f"executed in place: {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mfjax`` console script; returns the exit status.

    Example:
        >>> main(["params", "--notebooks", "tests/fixtures/notebooks"])  # doctest: +SKIP
        0
    """
    from mfjax.exceptions import MfjaxError
    from mfjax.pipeline import NotebookExecutionError

    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "run": _cmd_run,
        "sweep": _cmd_sweep,
        "params": _cmd_params,
        "report-index": _cmd_index,
        "notebooks": _cmd_notebooks,
    }
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return handlers[args.command](args)
    except NotebookExecutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except MfjaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Run the notebook pipeline in batch: papermill into a run folder, sweeps, HTML reports.

The notebooks in ``notebooks/`` (``01_prepare`` → ``02_train`` → ``03_evaluate`` →
``04_compare``, and ``05_tune`` over a sweep) are the pipeline. This module executes them
with papermill into one **run folder** per run::

    <run_dir>/params.yaml          every parameter of the run + package, git, JAX, devices, date
    <run_dir>/run.json             status, notebooks executed, seconds per notebook, error
    <run_dir>/0N_*.ipynb / .html   executed notebooks and their self-contained HTML reports
    <run_dir>/metrics.json         written by the notebooks (``mfjax.steps.record_metrics``)

Parameters are validated **before anything runs** against the notebooks' ``parameters``
cells (read with :func:`papermill.inspect_notebook`): an unknown name is an error with a
did-you-mean and the list of valid names; a wrong type or a value outside the parameter's
range is an error naming the parameter, its type and its default. Ranges come from the
trailing comment of the parameter's line in the ``parameters`` cell (``factors = 32  # latent
factors, >= 1``; ``test_size = 0.2  # in (0, 1)``; ``optimizer = "adam"  # one of: sgd, adam``),
or, absent such a comment, from :data:`KNOWN_RANGES` for the usual names.

A sweep (:func:`sweep`) runs ``02_train`` and ``03_evaluate`` once per grid point, each point
in ``<sweep_dir>/point-NN/``, in parallel processes or on a Dask cluster, sharing one prepared
split (``01_prepare`` runs once in the sweep folder), then collects ``sweep.csv`` /
``sweep.parquet`` and runs ``05_tune`` on the sweep folder.

Example:
    >>> from mfjax import pipeline
    >>> specs = pipeline.parameter_specs()                     # doctest: +SKIP
    >>> result = pipeline.run({"factors": 8, "epochs": 2},     # doctest: +SKIP
    ...                       run_dir="/tmp/mfjax-demo")
    >>> result.metrics["models"]["mf"]["rmse"]                 # doctest: +SKIP
    0.93...
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import difflib
import itertools
import json
import logging
import math
import os
import platform
import random
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from mfjax._io_utils import write_json_atomic, write_text_atomic
from mfjax.exceptions import MfjaxError

__all__ = [
    "DEFAULT_SEQUENCE",
    "KNOWN_RANGES",
    "SWEEP_SEQUENCE",
    "TUNE_NOTEBOOK",
    "NotebookExecutionError",
    "ParamSpec",
    "ParameterError",
    "RunResult",
    "SweepResult",
    "best_params",
    "environment_info",
    "execute_notebook",
    "expand_grid",
    "find_notebooks",
    "load_grid_file",
    "load_params_file",
    "parameter_specs",
    "parse_value",
    "refresh_notebooks",
    "run",
    "sweep",
    "validate_params",
]

#: notebooks ``mfjax run`` executes by default, in order
DEFAULT_SEQUENCE: tuple[str, ...] = ("01_prepare", "02_train", "03_evaluate", "04_compare")
#: notebooks a sweep runs once per grid point
SWEEP_SEQUENCE: tuple[str, ...] = ("02_train", "03_evaluate")
#: the notebook that reads a sweep folder
TUNE_NOTEBOOK = "05_tune"
PREPARE_NOTEBOOK = "01_prepare"
#: the metric a sweep is ranked by when 05_tune declares none (lower is better for errors)
DEFAULT_SWEEP_METRIC = "valid_rmse"
LOWER_IS_BETTER = ("rmse", "mae", "loss", "fit_seconds", "seconds")

#: ranges applied when a parameter's comment states none: ``(low, high, low_open, high_open)``
KNOWN_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    "factors": (1, None, False, False),
    "epochs": (1, None, False, False),
    "k": (1, None, False, False),
    "batch_size": (1, None, False, False),
    "seed": (0, None, False, False),
    "lr": (0, None, True, False),
    "learning_rate": (0, None, True, False),
    "reg": (0, None, False, False),
    "regularization": (0, None, False, False),
    "test_size": (0, 1, True, True),
    "valid_size": (0, 1, False, True),
    "threshold": (None, None, False, False),
}

# parameters of the runner itself, never validated against the notebooks' cells
_RUN_DIR = "run_dir"
_PATH_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".data", ".dat", ".txt", ".json", ".zip")
_KERNEL_ARGS = ("--IPKernelApp.log_level=ERROR",)
_KERNEL_ENV = {
    # quiet kernels: no debugger file-validation warning, no jupyter path deprecation notice
    "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    "JUPYTER_PLATFORM_DIRS": "1",
}


class ParameterError(MfjaxError, ValueError):
    """A parameter that no notebook declares, of the wrong type, or outside its range."""


class NotebookExecutionError(MfjaxError, RuntimeError):
    """A notebook cell raised; the partial notebook (and its HTML) is kept for inspection.

    Attributes:
        notebook: the notebook's name (``02_train.ipynb``).
        cell: 1-based position of the failing cell in the source notebook (None if unknown).
        exec_count: the execution count shown as ``In [n]`` in the executed notebook.
        source_line: the first line of the failing cell.
        line: the line of the cell that raised (from the traceback), and ``line_no`` its number.
        ename / evalue: the exception's type and message.
        output: the executed (partial) notebook; ``html`` its HTML export (or None).
    """

    def __init__(
        self,
        message: str,
        *,
        notebook: str,
        cell: int | None = None,
        exec_count: int | None = None,
        source_line: str = "",
        line: str = "",
        line_no: int | None = None,
        ename: str = "",
        evalue: str = "",
        output: Path | None = None,
        html: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.cell = cell
        self.exec_count = exec_count
        self.source_line = source_line
        self.line = line
        self.line_no = line_no
        self.ename = ename
        self.evalue = evalue
        self.output = output
        self.html = html


# ----------------------------------------------------------------------------------- notebooks
def default_notebooks_dir() -> Path:
    """The notebooks folder: ``$MFJAX_NOTEBOOKS_DIR``, else ``notebooks/`` of the checkout."""
    env = os.environ.get("MFJAX_NOTEBOOKS_DIR")
    if env:
        return Path(env).expanduser().resolve()
    here = Path(__file__).resolve().parents[1] / "notebooks"
    if here.is_dir():
        return here
    return (Path.cwd() / "notebooks").resolve()


def find_notebooks(notebooks_dir: str | os.PathLike[str] | None = None) -> dict[str, Path]:
    """The pipeline's notebooks ``NN_name.ipynb`` in ``notebooks_dir``, by name, in order.

    Example:
        >>> list(find_notebooks())                                # doctest: +SKIP
        ['01_prepare', '02_train', '03_evaluate', '04_compare', '05_tune']
    """
    folder = Path(notebooks_dir) if notebooks_dir is not None else default_notebooks_dir()
    if not folder.is_dir():
        raise ParameterError(
            f"notebooks folder {folder} does not exist; pass --notebooks DIR (or set "
            "MFJAX_NOTEBOOKS_DIR) to the folder holding 01_prepare.ipynb ..."
        )
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    return {p.stem: p.resolve() for p in found}


def _select(available: Mapping[str, Path], names: Iterable[str]) -> dict[str, Path]:
    """Resolve names like ``02_train``, ``02``, ``train`` or ``02_train.ipynb``."""
    chosen: dict[str, Path] = {}
    for raw in names:
        name = raw.strip().removesuffix(".ipynb")
        if not name:
            continue
        hits = [
            n
            for n in available
            if n == name or n.split("_", 1)[0] == name or n.split("_", 1)[-1] == name
        ]
        if len(hits) != 1:
            close = difflib.get_close_matches(name, list(available), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(
                f"no notebook {raw!r}{hint}; notebooks in {_folder_of(available)}: "
                f"{', '.join(available) or 'none'}"
            )
        chosen[hits[0]] = available[hits[0]]
    return chosen


def _folder_of(available: Mapping[str, Path]) -> str:
    return str(next(iter(available.values())).parent) if available else "the notebooks folder"


# ---------------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """A notebook parameter: its type and default inferred from the ``parameters`` cell.

    Attributes:
        name: the variable name.
        type: ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict`` or ``any``.
        default: the literal default (the first declaring notebook's).
        help: the trailing comment of the parameter's line.
        notebooks: the notebooks that declare it.
        low / high: inclusive bounds unless ``low_open`` / ``high_open``; None is unbounded.
        choices: the allowed values, when the comment lists them (``one of: a, b``).
    """

    name: str
    type: str
    default: Any
    help: str = ""
    notebooks: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    defaults: tuple[tuple[str, Any], ...] = ()

    def describe(self) -> str:
        """``factors (int, default 32, >= 1)``."""
        parts = [self.type, f"default {self.default!r}"]
        rng = self.range_text()
        if rng:
            parts.append(rng)
        return f"{self.name} ({', '.join(parts)})"

    def range_text(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.low is not None and self.high is not None:
            lb = "(" if self.low_open else "["
            rb = ")" if self.high_open else "]"
            return f"in {lb}{_num(self.low)}, {_num(self.high)}{rb}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {_num(self.low)}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {_num(self.high)}"
        return ""

    def check(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise ParameterError."""
        where = f"parameter {self.describe()}"
        value = self._coerce(value, where)
        numbers = value if isinstance(value, list) else [value]
        for v in numbers:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if isinstance(v, float) and math.isnan(v):
                raise ParameterError(f"{where} got NaN; pass a number")
            bad = (
                self.low is not None and (v < self.low or (self.low_open and v == self.low))
            ) or (self.high is not None and (v > self.high or (self.high_open and v == self.high)))
            if bad:
                raise ParameterError(f"{where} must be {self.range_text()}; got {v!r}")
        if self.choices is not None and value not in self.choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in self.choices], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"{where} must be {self.range_text()}; got {value!r}{hint}")
        return value

    def _coerce(self, value: Any, where: str) -> Any:
        kind = self.type
        if kind == "any":
            return value
        if value is None:
            raise ParameterError(f"{where} got None (null); pass a {kind}")
        if kind == "bool":
            if isinstance(value, bool):
                return value
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
        elif kind == "float":
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif kind == "str":
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)  # YAML reads `name: 2024` as a number; a str was meant
        elif kind == "list":
            if isinstance(value, (list, tuple)):
                return list(value)
        elif kind == "dict":
            if isinstance(value, dict):
                return value
        article = "an" if kind[0] in "aeiou" else "a"
        raise ParameterError(
            f"{where} expects {article} {kind}; got {type(value).__name__} {value!r}"
        )


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


_CMP = re.compile(r"(>=|<=|>|<)\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)", re.I)
_INTERVAL = re.compile(
    r"([\[(])\s*(-?(?:\d+(?:\.\d*)?(?:e-?\d+)?|inf))\s*,\s*(-?(?:\d+(?:\.\d*)?(?:e-?\d+)?|inf))\s*([\])])",
    re.I,
)
_CHOICES = re.compile(r"one of:\s*(.+)$", re.I)


def _parse_range(text: str) -> dict[str, Any]:
    """Bounds and choices stated in a parameter's comment (see the module docstring)."""
    out: dict[str, Any] = {}
    m = _CHOICES.search(text)
    if m:
        items = [c.strip().strip("'\"") for c in re.split(r"[,|]", m.group(1)) if c.strip()]
        out["choices"] = tuple(_literal(c) for c in items)
        return out
    m = _INTERVAL.search(text)
    if m:
        lo, hi = float(m.group(2)), float(m.group(3))
        out.update(
            low=None if math.isinf(lo) else lo,
            high=None if math.isinf(hi) else hi,
            low_open=m.group(1) == "(",
            high_open=m.group(4) == ")",
        )
        return out
    for op, num in _CMP.findall(text):
        if op.startswith(">"):
            out.update(low=float(num), low_open=op == ">")
        else:
            out.update(high=float(num), high_open=op == "<")
    return out


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _type_of(value: Any, inferred: str) -> str:
    if inferred and inferred not in ("None", "NoneType"):
        base = inferred.split("[")[0].lower()
        return {"int": "int", "float": "float", "str": "str", "bool": "bool", "list": "list"}.get(
            base, {"dict": "dict", "tuple": "list"}.get(base, "any")
        )
    for kind, py in (("bool", bool), ("int", int), ("float", float), ("str", str)):
        if isinstance(value, py):
            return kind
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "dict"
    return "any"


def parameter_specs(notebooks: Mapping[str, Path] | None = None) -> dict[str, ParamSpec]:
    """Every parameter the given notebooks declare, read with ``papermill.inspect_notebook``.

    Two notebooks that declare the same name must agree on its type; the first one's default
    is reported. ``run_dir`` is the runner's own and is left out.

    Example:
        >>> specs = parameter_specs()                              # doctest: +SKIP
        >>> specs["factors"].describe()                            # doctest: +SKIP
        'factors (int, default 32, >= 1)'
    """
    notebooks = find_notebooks() if notebooks is None else notebooks
    specs: dict[str, ParamSpec] = {}
    for nb_name, path in notebooks.items():
        declared = _inspect(path)
        if not declared:
            raise ParameterError(
                f"{path.name} has no cell tagged 'parameters'; add one holding the "
                "notebook's parameters as literals (run_dir, dataset, seed, ...)"
            )
        for name, info in declared.items():
            if name == _RUN_DIR:
                continue
            default = _literal(str(info.get("default")))
            kind = _type_of(default, str(info.get("inferred_type_name") or ""))
            help_text = str(info.get("help") or "")
            if name in specs:
                prev = specs[name]
                if prev.type != kind and "any" not in (prev.type, kind):
                    raise ParameterError(
                        f"parameter {name!r} is a {prev.type} in {prev.notebooks[0]} but a {kind} "
                        f"in {nb_name}; make the parameters cells agree"
                    )
                specs[name] = dataclasses.replace(
                    prev,
                    notebooks=(*prev.notebooks, nb_name),
                    defaults=(*prev.defaults, (nb_name, default)),
                )
                continue
            bounds = _parse_range(help_text)
            if not bounds and name in KNOWN_RANGES and kind in ("int", "float"):
                lo, hi, lo_open, hi_open = KNOWN_RANGES[name]
                bounds = dict(low=lo, high=hi, low_open=lo_open, high_open=hi_open)
            specs[name] = ParamSpec(
                name=name,
                type=kind,
                default=default,
                help=help_text,
                notebooks=(nb_name,),
                defaults=((nb_name, default),),
                **bounds,
            )
    return specs


def _inspect(path: Path) -> dict[str, dict[str, Any]]:
    """``papermill.inspect_notebook``, completed from the cell's own syntax tree.

    papermill's line parser skips a line holding more than one ``=`` (``seed = 0  # >= 0``,
    ``sep = "a=b"``) with a log warning; such parameters are read here with :mod:`ast` and
    :mod:`tokenize` instead, so that no declared parameter goes missing.
    """
    import logging

    import papermill

    log = logging.getLogger("papermill")
    previous = log.level
    log.setLevel(logging.ERROR)  # the "Unable to parse line" warnings are handled below
    try:
        declared = papermill.inspect_notebook(str(path))
    except Exception as exc:  # papermill raises bare ValueErrors on odd cells
        raise ParameterError(f"cannot read the parameters cell of {path}: {exc}") from exc
    finally:
        log.setLevel(previous)
    for name, (default, help_text) in _cell_assignments(path).items():
        if name not in declared:
            declared[name] = {
                "name": name,
                "inferred_type_name": "None",
                "default": default,
                "help": help_text,
            }
    return declared


def _cell_assignments(path: Path) -> dict[str, tuple[str, str]]:
    """``name -> (default source, trailing comment)`` of the parameters cell, via ast."""
    import io
    import tokenize

    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception as exc:
        raise ParameterError(f"cannot read notebook {path}: {exc}") from exc
    cell = next(
        (c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None
    )
    if cell is None or cell.get("cell_type") != "code":
        return {}
    src = cell.get("source", "")
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise ParameterError(
            f"the parameters cell of {path.name} is not valid Python (line {exc.lineno}: {exc.msg})"
        ) from exc
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(src).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#").strip()
    except (tokenize.TokenError, SyntaxError):
        pass
    out: dict[str, tuple[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name):
            out[target.id] = (
                ast.get_source_segment(src, value) or "",
                comments.get(node.end_lineno or 0, ""),
            )
    return out


def parse_value(text: str) -> Any:
    """A command-line value parsed as a YAML scalar: ``"64"`` → 64, ``"1e-3"`` → 0.001.

    Example:
        >>> parse_value("64"), parse_value("0.1"), parse_value("true"), parse_value("ml-100k")
        (64, 0.1, True, 'ml-100k')
        >>> parse_value("1e-3")
        0.001
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d*\.?\d+[eE][-+]?\d+", value.strip()):
        return float(value)  # YAML 1.1 wants a dot in 1.0e-3; people type 1e-3
    if value is None and text.strip() not in ("null", "~", "None", "none"):
        return text
    return value


def validate_params(
    params: Mapping[str, Any],
    specs: Mapping[str, ParamSpec],
    *,
    running: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Check ``params`` against ``specs`` and return them converted to the declared types.

    Args:
        params: name → value (``run_dir`` is accepted and passed through).
        specs: from :func:`parameter_specs` over all the notebooks.
        running: the notebooks this run executes; a parameter only other notebooks declare
            is an error.

    Raises:
        ParameterError: unknown name (with a did-you-mean and the valid names), wrong type,
            value outside the range; the message names the parameter, its type and default.

    Example:
        >>> spec = {"factors": ParamSpec("factors", "int", 32, low=1)}
        >>> validate_params({"factors": 8}, spec)
        {'factors': 8}
        >>> validate_params({"factor": 8}, spec)
        Traceback (most recent call last):
        ...
        mfjax.pipeline.ParameterError: unknown parameter 'factor' (did you mean 'factors'?); ...
    """
    out: dict[str, Any] = {}
    for name, value in params.items():
        if name == _RUN_DIR:
            out[name] = value
            continue
        if name not in specs:
            close = difflib.get_close_matches(name, list(specs), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            listed = "; ".join(s.describe() for s in sorted(specs.values(), key=lambda s: s.name))
            raise ParameterError(
                f"unknown parameter {name!r}{hint}; the notebooks declare: {listed}"
            )
        spec = specs[name]
        if running is not None and not set(spec.notebooks) & set(running):
            raise ParameterError(
                f"parameter {name!r} is declared only by {', '.join(spec.notebooks)}, which "
                f"this run does not execute ({', '.join(running)})"
            )
        out[name] = spec.check(value)
    return out


def _absolute_paths(params: dict[str, Any]) -> dict[str, Any]:
    """Make file-like str values that exist relative to the cwd absolute (kernels run elsewhere)."""
    out = dict(params)
    for name, value in params.items():
        if not isinstance(value, str) or not value or name == _RUN_DIR:
            continue
        looks_like_path = os.sep in value or "/" in value or value.lower().endswith(_PATH_SUFFIXES)
        if looks_like_path and Path(value).expanduser().exists():
            out[name] = str(Path(value).expanduser().resolve())
    return out


def load_params_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parameters from a YAML file: a flat mapping, or a run's ``params.yaml`` (its ``params``).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "p.yaml"
        >>> _ = p.write_text("factors: 8\\nreg: 0.1\\n")
        >>> load_params_file(p)
        {'factors': 8, 'reg': 0.1}
    """
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"parameters file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameters file {path} is not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParameterError(
            f"parameters file {path} must hold a mapping of name: value; got {type(data).__name__}"
        )
    if isinstance(data.get("params"), dict) and ("environment" in data or "run_name" in data):
        return dict(data["params"])
    return dict(data)


# -------------------------------------------------------------------------------- environment
def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment_info() -> dict[str, Any]:
    """What a reader needs to reproduce a run: versions, git commit, JAX devices, platform.

    Example:
        >>> sorted(environment_info())                             # doctest: +SKIP
        ['git_commit', 'git_dirty', 'jax', 'jax_backend', 'jax_devices', 'mfjax', ...]
    """
    from mfjax import __version__

    info: dict[str, Any] = {"mfjax": __version__}
    commit = _git("rev-parse", "HEAD")
    info["git_commit"] = commit
    if commit:
        info["git_dirty"] = bool(_git("status", "--porcelain", "--untracked-files=no"))
    try:
        import jax

        info["jax"] = jax.__version__
        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception as exc:  # a broken accelerator plugin must not stop the record
        info["jax"] = f"unavailable ({exc})"
    info["python"] = platform.python_version()
    info["platform"] = platform.platform()
    return info


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0)


def _slug(text: str) -> str:
    stem = Path(text).stem if ("/" in text or os.sep in text or "." in text) else text
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-") or "run"


def _fresh_dir(root: Path, stem: str) -> Path:
    cand = root / stem
    n = 2
    while cand.exists():
        cand = root / f"{stem}-{n}"
        n += 1
    return cand


# --------------------------------------------------------------------------------- execution
def _ensure_kernel_env() -> None:
    for key, value in _KERNEL_ENV.items():
        os.environ.setdefault(key, value)


def execute_notebook(
    source: str | os.PathLike[str],
    output: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel: str | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    km: Any = None,
) -> Path:
    """Execute one notebook with papermill; raise :class:`NotebookExecutionError` on failure.

    The executed notebook is written to ``output`` even when a cell fails (papermill marks
    the failing cell), so that it can be inspected.

    Args:
        source: the notebook to run (never modified unless it is also ``output``).
        output: where the executed notebook goes.
        parameters: injected after the ``parameters`` cell.
        kernel: kernel name; None uses the notebook's kernelspec.
        cwd: the kernel's working directory.
        timeout: seconds per cell (None: no limit).
        km: an already started ``jupyter_client`` kernel manager to run in (see
            :class:`_WarmKernel`); it is shut down afterwards.

    Example:
        >>> execute_notebook("notebooks/02_train.ipynb", "/tmp/r/02_train.ipynb",  # doctest: +SKIP
        ...                  {"run_dir": "/tmp/r", "epochs": 2}, kernel="python3")
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    _ensure_kernel_env()
    source, output = Path(source), Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("papermill")
    level = log.level
    # papermill's "Passed unknown parameter: run_dir" and parser notes are not for users here
    log.setLevel(logging.ERROR)
    try:
        papermill.execute_notebook(
            str(source),
            str(output),
            parameters=dict(parameters or {}),
            kernel_name=kernel,
            cwd=str(cwd) if cwd is not None else None,
            progress_bar=False,
            log_output=False,
            execution_timeout=timeout,
            # the kernel's own start-up notices (e.g. ipykernel's local-TCP warning) are noise
            extra_arguments=list(_KERNEL_ARGS),
            **({"km": km} if km is not None else {}),
        )
    except PapermillExecutionError as exc:
        cell, first = _locate_cell(source, exc.source)
        line_no, line = _failing_line(exc.traceback)
        evalue = str(exc.evalue).strip()
        where = f"cell {cell}" if cell is not None else "a cell"
        shown = f"line {line_no}: {line!r}" if line_no is not None else repr(first)
        message = (
            f"notebook {source.name} failed at {where} (In [{exc.exec_count}], {shown}): "
            f"{exc.ename}: {evalue}\n"
            f"The partial notebook is kept for inspection: {output}"
        )
        raise NotebookExecutionError(
            message,
            notebook=source.name,
            cell=cell,
            exec_count=exc.exec_count,
            source_line=first,
            line=line,
            line_no=line_no,
            ename=exc.ename,
            evalue=evalue,
            output=output,
        ) from None
    except Exception as exc:  # dead kernel, timeout, missing kernel
        from jupyter_client.kernelspec import NoSuchKernel

        if isinstance(exc, NoSuchKernel):
            from jupyter_client.kernelspec import find_kernel_specs

            names = ", ".join(sorted(find_kernel_specs())) or "none"
            message = (
                f"notebook {source.name} asks for kernel {exc.name!r}, which is not installed "
                f"(installed: {names}); pass --kernel NAME or run `make venv` to register "
                "the 'mfjax' kernel"
            )
        else:
            message = (
                f"notebook {source.name} did not complete: {type(exc).__name__}: {exc}".strip()
                + (
                    f"\nThe partial notebook is kept for inspection: {output}"
                    if output.exists()
                    else ""
                )
            )
        raise NotebookExecutionError(
            message,
            notebook=source.name,
            ename=type(exc).__name__,
            evalue=str(exc),
            output=output if output.exists() else None,
        ) from None
    finally:
        log.setLevel(level)
        if km is not None:
            _shutdown(km)
    return output


def _shutdown(km: Any) -> None:
    try:
        km.shutdown_kernel(now=True)
    except Exception:  # already gone
        pass


def _kernel_log(run_dir: Path, nb_name: str) -> Path:
    return run_dir / "logs" / f"{nb_name}.kernel.log"


def _tidy_logs(run_dir: Path) -> None:
    """Remove empty kernel logs (and the folder when nothing is left)."""
    folder = run_dir / "logs"
    if not folder.is_dir():
        return
    for log in folder.glob("*.kernel.log"):
        try:
            if log.stat().st_size == 0:
                log.unlink()
        except OSError:
            pass
    try:
        folder.rmdir()
    except OSError:
        pass  # not empty: a kernel had something to say; keep it


def _import_modules(notebook: Path) -> list[str]:
    """Modules the notebook's code cells import at top level (``import a.b``, ``from c import d``)."""
    import nbformat

    try:
        nb = nbformat.read(str(notebook), as_version=4)
    except Exception:
        return []
    names: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        src = "\n".join(
            ln
            for ln in cell.get("source", "").splitlines()
            if not ln.lstrip().startswith(("%", "!"))
        )
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.append(node.module)
                names.extend(f"{node.module}.{a.name}" for a in node.names if a.name != "*")
    return list(dict.fromkeys(names))


_WARM_CODE = """\
def _mfjax_warm(modules):
    import importlib
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:
            pass
_mfjax_warm({modules!r})
del _mfjax_warm
"""


class _WarmKernel:
    """A kernel started in the background for the *next* notebook of a run.

    While one notebook executes, the next one's kernel starts and imports, silently and in a
    throwaway namespace, the modules that notebook imports (JAX, pandas, seaborn, mfjax...),
    so that the kernel start-up and import time overlap with useful work. The notebook's own
    namespace, outputs and execution counts are untouched; any failure here falls back to a
    fresh kernel. With ``log``, the kernel process's own stdout/stderr (start-up notices, C
    library chatter, a crash report) go to that file instead of the console.
    """

    def __init__(
        self,
        notebook: Path,
        kernel: str | None,
        cwd: Path,
        *,
        log: Path | None = None,
        timeout: float = 120,
    ) -> None:
        import threading

        self.km: Any = None
        self.error: BaseException | None = None
        self.log = log
        self._timeout = timeout
        self._thread = threading.Thread(
            target=self._start, args=(notebook, kernel, cwd), name="mfjax-warm-kernel", daemon=True
        )
        self._thread.start()

    def _start(self, notebook: Path, kernel: str | None, cwd: Path) -> None:
        km = None
        try:
            import nbformat
            from jupyter_client.manager import KernelManager

            name = (
                kernel or nbformat.read(str(notebook), as_version=4).metadata["kernelspec"]["name"]
            )
            km = KernelManager(kernel_name=name)
            if self.log is not None:
                self.log.parent.mkdir(parents=True, exist_ok=True)
                with open(self.log, "ab") as fh:  # the child keeps its own copy of the handle
                    km.start_kernel(
                        cwd=str(cwd), extra_arguments=list(_KERNEL_ARGS), stdout=fh, stderr=fh
                    )
            else:
                km.start_kernel(cwd=str(cwd), extra_arguments=list(_KERNEL_ARGS))
            modules = _import_modules(notebook)
            if modules:
                kc = km.client()
                kc.start_channels()
                try:
                    kc.wait_for_ready(timeout=self._timeout)
                    code = _WARM_CODE.format(modules=modules)
                    msg_id = kc.execute(code, silent=True, store_history=False)
                    deadline = time.monotonic() + self._timeout
                    while time.monotonic() < deadline:
                        reply = kc.get_shell_msg(timeout=self._timeout)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            break
                finally:
                    kc.stop_channels()
            self.km = km
        except BaseException as exc:  # noqa: BLE001 - reported as "no warm kernel"
            self.error = exc
            if km is not None:
                _shutdown(km)

    def take(self) -> Any:
        """The started kernel manager (None when the start failed or timed out)."""
        self._thread.join(self._timeout)
        if self._thread.is_alive():
            return None
        km, self.km = self.km, None
        return km

    def discard(self) -> None:
        self._thread.join(self._timeout)
        if self.km is not None:
            _shutdown(self.km)
            self.km = None


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _failing_line(traceback: Sequence[str] | None) -> tuple[int | None, str]:
    """The cell's line that raised (``Cell In[4], line 2`` / ``----> 2 raise ...``)."""
    text = _ANSI.sub("", "\n".join(traceback or []))
    header = re.search(r"^Cell In\s*\[\d*\],\s*line (\d+)", text, re.M)
    arrow = re.search(r"^-*>\s*(\d+)\s?(.*)$", text, re.M)
    if arrow is None:
        return (int(header.group(1)) if header else None), ""
    return int(arrow.group(1)), arrow.group(2).strip()


def _locate_cell(source: Path, cell_source: str) -> tuple[int | None, str]:
    """1-based position of the cell whose source is ``cell_source``, and its first line."""
    first = next((ln for ln in (cell_source or "").splitlines() if ln.strip()), "").strip()
    try:
        import nbformat

        nb = nbformat.read(str(source), as_version=4)
    except Exception:
        return None, first
    for i, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") == "code" and cell.get("source", "") == cell_source:
            return i, first
    return None, first


# ------------------------------------------------------------------------------------- runs
@dataclasses.dataclass(frozen=True)
class RunResult:
    """What :func:`run` produced.

    Attributes:
        run_dir: the run folder.
        params: every parameter of the run (defaults included), as recorded in params.yaml.
        notebooks: executed notebook paths, in order.
        html: their HTML reports.
        metrics: the run's ``metrics.json`` (empty when the notebooks wrote none).
        seconds: wall-clock seconds per notebook.
    """

    run_dir: Path
    params: dict[str, Any]
    notebooks: tuple[Path, ...]
    html: tuple[Path, ...]
    metrics: dict[str, Any]
    seconds: dict[str, float]


def _effective(
    specs: Mapping[str, ParamSpec], names: Sequence[str], given: Mapping[str, Any]
) -> dict:
    """Defaults of the notebooks being run (the first one declaring a name wins), then ``given``."""
    out = {}
    for name, spec in sorted(specs.items()):
        defaults = dict(spec.defaults) or {nb: spec.default for nb in spec.notebooks}
        for nb in names:
            if nb in defaults:
                out[name] = defaults[nb]
                break
    out.update({k: v for k, v in given.items() if k != _RUN_DIR})
    return out


def _for_notebook(nb: str, specs: Mapping[str, ParamSpec], params: Mapping[str, Any]) -> dict:
    """The parameters ``nb`` declares whose value differs from its cell's default."""
    out = {}
    for name, value in params.items():
        spec = specs.get(name)
        if spec is not None and nb in spec.notebooks:
            default = dict(spec.defaults).get(nb, spec.default)
            if value != default or type(value) is not type(default):
                out[name] = value
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _progress(iterable: Iterable[Any], *, total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="nb", disable=not enabled, leave=False)


def run(
    params: Mapping[str, Any] | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    only: Sequence[str] | None = None,
    notebooks_dir: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
    no_input: bool = False,
    html: bool = True,
    reports_root: str | os.PathLike[str] = "reports",
    index: bool = True,
    progress: bool = True,
    timeout: float | None = None,
    extra_record: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    prewarm: bool = True,
) -> RunResult:
    """Execute the notebooks in order into a run folder; export HTML; rebuild the index.

    Args:
        params: parameter overrides (validated before anything runs).
        run_dir: the run folder; default ``<reports_root>/<dataset>-<UTC time>`` (or
            ``<reports_root>/<name>``). With ``only`` on an existing folder, its
            ``params.yaml`` is the base the overrides apply to.
        name: the run's name (the default folder's name).
        only: a subset of notebooks (``["02_train", "03_evaluate"]``, or ``["05_tune"]``);
            default :data:`DEFAULT_SEQUENCE`.
        notebooks_dir: where the notebooks are (default :func:`default_notebooks_dir`).
        kernel: kernel name; None uses each notebook's kernelspec.
        no_input: HTML without code cells.
        html: export HTML reports.
        reports_root: where ``index.html`` is rebuilt (when the run folder is inside it).
        index: rebuild ``<reports_root>/index.html``.
        progress: show a tqdm bar over the notebooks.
        timeout: seconds per cell.
        extra_record: more top-level entries for params.yaml (e.g. ``from_sweep``).
        prewarm: start the next notebook's kernel (and its imports) while the current one
            runs; see :class:`_WarmKernel`.
        overwrite: replace a previous run in ``run_dir`` (without it, a full run into a
            folder that holds one is an error: its split and models would be reused).

    Returns:
        a :class:`RunResult`.

    Raises:
        ParameterError: before anything runs.
        NotebookExecutionError: a cell failed; the run stops, the partial notebook and its
            HTML stay in the run folder, ``run.json`` says ``failed``.
    """
    from mfjax import report

    available = find_notebooks(notebooks_dir)
    wanted = list(only) if only else [n for n in DEFAULT_SEQUENCE if n in available]
    if not wanted:
        raise ParameterError(f"no notebooks to run in {_folder_of(available)}")
    chosen = _select(available, wanted)
    specs = parameter_specs(available)
    given = dict(params or {})
    if run_dir is None and given.get(_RUN_DIR):
        run_dir = given.pop(_RUN_DIR)
    given.pop(_RUN_DIR, None)
    given = validate_params(given, specs, running=list(chosen))

    reports_root = Path(reports_root)
    if run_dir is None:
        stem = (
            name
            or f"{_slug(str(given.get('dataset', _default_of(specs, 'dataset', 'run'))))}-{_now():%Y%m%d-%H%M%S}"
        )
        run_path = _fresh_dir(reports_root, stem) if name is None else reports_root / stem
    else:
        run_path = Path(run_dir)
    run_path = run_path.expanduser().resolve()

    previous = run_path / "params.yaml"
    if not only and (previous.is_file() or (run_path / "run.json").is_file()):
        if not overwrite:
            raise ParameterError(
                f"run folder {run_path} already holds a run (its split and models would be "
                "reused); pass --overwrite to replace it, --only NB,... to rerun part of it, "
                "or another --run-dir"
            )
        shutil.rmtree(run_path)
    base: dict[str, Any] = {}
    if only and previous.is_file():  # rerun part of an existing run with its parameters
        base = {k: v for k, v in load_params_file(previous).items() if k in specs}
    effective = _effective(specs, list(chosen), {**base, **_absolute_paths(given)})
    effective = validate_params(effective, specs)
    run_path.mkdir(parents=True, exist_ok=True)

    started = _now()
    record = {
        "run_name": run_path.name,
        "date": started.isoformat(),
        "dataset": effective.get("dataset"),
        "seed": effective.get("seed"),
        "notebooks": list(chosen),
        "kernel": kernel,
        "params": effective,
        "overrides": {k: v for k, v in given.items()},
        "environment": (extra_record or {}).get("environment") or environment_info(),
        "reproduce": f"mfjax run --params {run_path / 'params.yaml'}",
        **dict(extra_record or {}),
    }
    if only and previous.is_file():  # keep the full parameter set of the original run
        old = load_params_file(previous)
        record["params"] = {**old, **effective}
    _write_yaml(run_path / "params.yaml", record)

    status: dict[str, Any] = {"status": "running", "started": started.isoformat(), "notebooks": {}}
    outputs: list[Path] = []
    htmls: list[Path] = []
    seconds: dict[str, float] = {}
    error: NotebookExecutionError | None = None
    items = list(chosen.items())
    bar = _progress(items, total=len(items), desc="mfjax run", enabled=progress)
    warm: _WarmKernel | None = None
    for position, (nb_name, src) in enumerate(bar):
        if hasattr(bar, "set_postfix_str"):
            bar.set_postfix_str(nb_name)
        out = run_path / src.name
        injected = {_RUN_DIR: str(run_path), **_for_notebook(nb_name, specs, effective)}
        t0 = time.perf_counter()
        if prewarm and warm is None:
            warm = _WarmKernel(src, kernel, run_path, log=_kernel_log(run_path, nb_name))
        km = warm.take() if warm is not None else None
        warm = None
        if prewarm and position + 1 < len(items):
            nxt = items[position + 1][0]
            warm = _WarmKernel(
                items[position + 1][1], kernel, run_path, log=_kernel_log(run_path, nxt)
            )
        try:
            execute_notebook(
                src, out, injected, kernel=kernel, cwd=run_path, timeout=timeout, km=km
            )
        except NotebookExecutionError as exc:
            error = exc
        seconds[nb_name] = round(time.perf_counter() - t0, 3)
        if out.exists():
            outputs.append(out)
            if html:
                nb_params = {n: effective[n] for n in effective if nb_name in specs[n].notebooks}
                try:
                    htmls.append(
                        report.export_html(
                            out,
                            no_input=no_input,
                            params=nb_params,
                            run_info={"run": run_path.name, "date": started.isoformat()},
                        )
                    )
                except Exception as exc:  # a broken export must not hide the run's own error
                    if error is None:
                        raise
                    error.args = (f"{error.args[0]}\n(HTML export also failed: {exc})",)
        status["notebooks"][nb_name] = {
            "status": "failed" if error else "ok",
            "seconds": seconds[nb_name],
        }
        if error is not None:
            if htmls and error.output is not None and htmls[-1].stem == error.output.stem:
                error.html = htmls[-1]
                error.args = (f"{error.args[0]} (HTML: {error.html})",)
            break
    if warm is not None:
        warm.discard()
    _tidy_logs(run_path)
    if hasattr(bar, "close"):
        bar.close()
    status["status"] = "failed" if error else "ok"
    status["finished"] = _now().isoformat()
    if error is not None:
        status["error"] = str(error)
    write_json_atomic(run_path / "run.json", status)
    if index:
        _rebuild_index(reports_root, run_path)
    if error is not None:
        raise error
    return RunResult(
        run_dir=run_path,
        params=effective,
        notebooks=tuple(outputs),
        html=tuple(htmls),
        metrics=_read_json(run_path / "metrics.json"),
        seconds=seconds,
    )


def _py(value: Any) -> Any:
    """numpy scalars as Python ones (for YAML, JSON and printing)."""
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) else value


def _write_json(path: Path, data: Any) -> Path:
    return write_json_atomic(path, data)


def _write_yaml(path: Path, data: Mapping[str, Any]) -> Path:
    return write_text_atomic(path, yaml.safe_dump(dict(data), sort_keys=False))


def _default_of(specs: Mapping[str, ParamSpec], name: str, fallback: Any) -> Any:
    spec = specs.get(name)
    return spec.default if spec is not None and spec.default not in (None, "") else fallback


def _rebuild_index(reports_root: Path, folder: Path) -> Path | None:
    from mfjax import report

    root = reports_root.expanduser().resolve()
    try:
        folder.resolve().relative_to(root)
    except ValueError:
        return None  # a run outside the reports folder is not listed there
    return report.build_index(root)


# ----------------------------------------------------------------------------------- sweeps
def expand_grid(
    grid: Mapping[str, Sequence[Any] | Any],
    *,
    sample: int | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """All points of ``grid`` (the product of its lists), or ``sample`` of them at random.

    Scalars in ``grid`` are fixed values. The sample is drawn without replacement with
    ``random.Random(seed)`` and keeps the grid's order.

    Example:
        >>> expand_grid({"factors": [8, 16], "reg": [0.01, 0.1]})
        [{'factors': 8, 'reg': 0.01}, {'factors': 8, 'reg': 0.1}, {'factors': 16, 'reg': 0.01}, {'factors': 16, 'reg': 0.1}]
        >>> len(expand_grid({"factors": [8, 16, 32], "reg": [0.01, 0.1]}, sample=4, seed=1))
        4
    """
    names = list(grid)
    lists = [list(v) if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
    for name, values in zip(names, lists, strict=True):
        if not values:
            raise ParameterError(f"grid parameter {name!r} has no values")
    points = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*lists)]
    if sample is not None:
        if sample < 1:
            raise ParameterError(f"--sample must be >= 1; got {sample}")
        if sample < len(points):
            keep = sorted(random.Random(seed).sample(range(len(points)), sample))
            points = [points[i] for i in keep]
    return points


@dataclasses.dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` produced.

    Attributes:
        sweep_dir: the sweep folder.
        table: one row per grid point (``sweep.csv`` / ``sweep.parquet``).
        failed: ``{point folder name: error message}`` of the points that failed.
        best: the best point's parameters (by ``metric``), or None.
        metric: the metric points are ranked by.
        tune_html: the 05_tune report, when it ran.
    """

    sweep_dir: Path
    table: Any
    failed: dict[str, str]
    best: dict[str, Any] | None
    metric: str
    tune_html: Path | None


def _run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Execute one grid point (in a worker process); never raises, reports the error."""
    t0 = time.perf_counter()
    point_dir = Path(task["run_dir"])
    try:
        result = run(
            task["params"],
            run_dir=point_dir,
            only=task["notebooks"],
            notebooks_dir=task["notebooks_dir"],
            kernel=task["kernel"],
            no_input=task["no_input"],
            html=task["html"],
            index=False,
            progress=False,
            timeout=task.get("timeout"),
            extra_record={
                "sweep": task["sweep_dir"],
                "point": task["point"],
                "environment": task.get("environment"),
            },
        )
        metrics, error = result.metrics, None
    except Exception as exc:  # reported in the table; the other points go on
        metrics, error = _read_json(point_dir / "metrics.json"), f"{type(exc).__name__}: {exc}"
    return {
        "name": point_dir.name,
        "point": task["point"],
        "params": task["params"],
        "metrics": metrics,
        "error": error,
        "wall_seconds": round(time.perf_counter() - t0, 3),
    }


def _primary_model(metrics: Mapping[str, Any], params: Mapping[str, Any]) -> str | None:
    models = metrics.get("models") or {}
    if not models:
        return None
    wanted = params.get("model")
    if isinstance(wanted, str) and wanted in models:
        return wanted
    return "mf" if "mf" in models else next(iter(models))


def _flatten(entry: Mapping[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, (list, tuple)) and len(value) == 2:
            row[f"{key}_low"], row[f"{key}_high"] = value
        elif isinstance(value, (int, float, str, bool)) or value is None:
            row[key] = value
    return row


def _sweep_table(results: Sequence[dict[str, Any]], swept: Sequence[str]) -> Any:
    import pandas as pd

    rows = []
    for res in sorted(results, key=lambda r: r["name"]):
        row: dict[str, Any] = {"point": res["name"], **res["point"]}
        model = _primary_model(res["metrics"], res.get("params") or res["point"])
        row["model"] = model
        if model is not None:
            row.update(_flatten(res["metrics"]["models"][model]))
        row["wall_seconds"] = res["wall_seconds"]
        row["status"] = "failed" if res["error"] else "ok"
        row["error"] = res["error"] or ""
        rows.append(row)
    table = pd.DataFrame(rows)
    first = ["point", *swept, "model"]
    return table[[c for c in first if c in table] + [c for c in table if c not in first]]


def _metric_column(table: Any, metric: str) -> str:
    """The column a metric name selects on: ``rmse`` means ``valid_rmse`` when the table has
    it (tuning ranks on the validation split; test columns are read for the chosen point)."""
    columns = set(getattr(table, "columns", ()))
    if not metric.startswith("valid_") and f"valid_{metric}" in columns:
        return f"valid_{metric}"
    return metric


def _best(table: Any, metric: str) -> dict[str, Any] | None:
    if metric not in getattr(table, "columns", ()):
        return None
    ok = table[(table["status"] == "ok") & table[metric].notna()]
    if ok.empty:
        return None
    base = metric.removeprefix("valid_").split("@")[0]
    idx = (
        ok[metric].astype(float).idxmin()
        if base in LOWER_IS_BETTER
        else ok[metric].astype(float).idxmax()
    )
    return {k: _py(v) for k, v in ok.loc[idx].to_dict().items()}


def load_grid_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sweep grid from YAML: ``name: [values]`` (swept) or ``name: value`` (fixed); the form
    ``{grid: {...}, params: {...}}`` is also accepted.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "grid.yaml"
        >>> _ = p.write_text("grid:\n  factors: [8, 16]\nparams:\n  epochs: 5\n")
        >>> load_grid_file(p)
        {'epochs': 5, 'factors': [8, 16]}
    """
    data = load_params_file(path)
    if isinstance(data.get("grid"), dict):  # {grid: {...}, params: {...}} is also accepted
        fixed = data.get("params") or {}
        return {**fixed, **data["grid"]}
    return data


def _sweep_metric(specs: Mapping[str, ParamSpec], given: str | None) -> str:
    if given:
        return given
    spec = specs.get("metric")
    if spec is not None and TUNE_NOTEBOOK in spec.notebooks and isinstance(spec.default, str):
        return spec.default
    return DEFAULT_SWEEP_METRIC


def _split_grid(
    grid: Mapping[str, Any], specs: Mapping[str, ParamSpec]
) -> tuple[dict[str, list[Any]], dict[str, Any]]:
    """Validate a grid and split it into swept values (lists of 2+) and fixed values.

    A list parameter (``roster = [...]``) is swept only when given a list of lists.

    Example:
        >>> specs = {"factors": ParamSpec("factors", "int", 8, low=1),
        ...          "roster": ParamSpec("roster", "list", ["mf"])}
        >>> _split_grid({"factors": [8, 16], "roster": ["mf", "bias"]}, specs)
        ({'factors': [8, 16]}, {'roster': ['mf', 'bias']})
    """
    grid_values: dict[str, list[Any]] = {}
    fixed: dict[str, Any] = {}
    for pname, values in grid.items():
        spec = specs.get(pname)
        list_param = spec is not None and spec.type == "list"
        if isinstance(values, (list, tuple)) and (
            not list_param or all(isinstance(v, (list, tuple)) for v in values)
        ):
            candidates = list(values)  # a list of values (a list parameter: a list of lists)
        else:
            candidates = [values]  # one fixed value
        ok = [_absolute_paths(validate_params({pname: v}, specs))[pname] for v in candidates]
        if not ok:
            raise ParameterError(f"grid parameter {pname!r} has no values")
        if len(ok) > 1:
            grid_values[pname] = ok
        else:
            fixed[pname] = ok[0]
    return grid_values, fixed


def sweep(
    grid: Mapping[str, Sequence[Any] | Any],
    *,
    sample: int | None = None,
    seed: int = 0,
    workers: int = 1,
    executor: str = "local",
    scheduler: str | None = None,
    sweep_dir: str | os.PathLike[str] | None = None,
    name: str | None = None,
    notebooks_dir: str | os.PathLike[str] | None = None,
    kernel: str | None = None,
    metric: str | None = None,
    no_input: bool = False,
    html: bool = True,
    tune: bool = True,
    reports_root: str | os.PathLike[str] = "reports",
    progress: bool = True,
    timeout: float | None = None,
    overwrite: bool = False,
) -> SweepResult:
    """Run ``02_train`` and ``03_evaluate`` once per grid point and collect one table.

    ``01_prepare`` runs once into the sweep folder and the points reuse its split (passed as
    ``split_dir`` when the notebooks declare it), unless the grid varies a preparation
    parameter other than ``seed``. A failed point is reported (``status``/``error``
    columns, :attr:`SweepResult.failed`) and the others complete. Then ``05_tune`` runs on
    the sweep folder, and ``<reports_root>/index.html`` is rebuilt.

    Args:
        grid: name → list of values (swept) or a scalar (fixed for every point).
        sample: run only this many points, drawn at random with ``seed``.
        seed: seed of the sample (the notebooks' ``seed`` is a parameter like any other).
        workers: parallel processes (local executor).
        executor: ``"local"`` (a process pool) or ``"dask"`` (``dask.distributed``; needs the
            ``cluster`` extra and ``scheduler``, e.g. ``tcp://10.0.0.5:8786``).
        scheduler: the Dask scheduler address (or a ``distributed.Client``).
        sweep_dir: the sweep folder (default ``<reports_root>/sweep-<dataset>-<time>``); it must
            be visible to every worker.
        metric: the column the best point is chosen by (default: 05_tune's ``metric``
            parameter, else ``valid_rmse``).
        tune: run ``05_tune`` on the sweep folder when the notebook exists.
        overwrite: replace a previous sweep in ``sweep_dir`` (otherwise an error).

    Returns:
        a :class:`SweepResult`; ``sweep.csv``, ``sweep.parquet`` and ``sweep.json`` are in
        the sweep folder.

    Example:
        >>> res = sweep({"factors": [8, 16], "reg": [0.01, 0.1]}, workers=2)  # doctest: +SKIP
        >>> res.table[["factors", "reg", "valid_rmse"]]                       # doctest: +SKIP
    """
    available = find_notebooks(notebooks_dir)
    point_nbs = _select(
        available, [n for n in SWEEP_SEQUENCE if n in available] or list(SWEEP_SEQUENCE)
    )
    specs = parameter_specs(available)
    grid = dict(grid)
    if sweep_dir is None and grid.get(_RUN_DIR):
        sweep_dir = grid.pop(_RUN_DIR)
    grid.pop(_RUN_DIR, None)
    grid_values, fixed = _split_grid(grid, specs)  # every value validated before any run
    swept = list(grid_values)
    points = expand_grid(grid_values, sample=sample, seed=seed) if swept else [{}]
    for k in fixed:
        if not set(specs[k].notebooks) & {*point_nbs, PREPARE_NOTEBOOK, TUNE_NOTEBOOK}:
            raise ParameterError(
                f"parameter {k!r} is declared only by {', '.join(specs[k].notebooks)}, which a sweep does not run"
            )
    for k in swept:
        if not set(specs[k].notebooks) & set(point_nbs):
            raise ParameterError(
                f"grid parameter {k!r} is declared only by {', '.join(specs[k].notebooks)}; a sweep "
                f"varies parameters of {', '.join(point_nbs)}"
            )
    if executor not in ("local", "dask"):
        raise ParameterError(f"--executor must be 'local' or 'dask'; got {executor!r}")
    if executor == "dask" and scheduler is None:
        raise ParameterError("--executor dask needs --scheduler ADDRESS (e.g. tcp://host:8786)")
    if workers < 1:
        raise ParameterError(f"--workers must be >= 1; got {workers}")
    metric = _sweep_metric(specs, metric)

    reports_root = Path(reports_root)
    if sweep_dir is None:
        dataset = fixed.get("dataset", specs["dataset"].default if "dataset" in specs else "run")
        stem = name or f"sweep-{_slug(str(dataset))}-{_now():%Y%m%d-%H%M%S}"
        folder = _fresh_dir(reports_root, stem) if name is None else reports_root / stem
    else:
        folder = Path(sweep_dir)
    folder = folder.expanduser().resolve()
    if (folder / "sweep.yaml").is_file() or (folder / "sweep.json").is_file():
        if not overwrite:
            raise ParameterError(
                f"sweep folder {folder} already holds a sweep (its split and models would be "
                "reused); pass --overwrite to replace it or choose another --sweep-dir"
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    started = _now()
    meta: dict[str, Any] = {
        "kind": "sweep",
        "sweep_name": folder.name,
        "date": started.isoformat(),
        "dataset": fixed.get("dataset", specs["dataset"].default if "dataset" in specs else None),
        "grid": grid_values,
        "fixed": fixed,
        "sample": sample,
        "sample_seed": seed,
        "n_points": len(points),
        "metric": metric,
        "executor": executor,
        "workers": workers,
        "environment": environment_info(),
    }
    _write_yaml(folder / "sweep.yaml", meta)

    # one prepared split for every point, unless the grid varies how data are prepared
    prepare_keys = {
        k
        for k, s in specs.items()
        if PREPARE_NOTEBOOK in s.notebooks and k not in ("seed", "split_dir")
    }
    share = (
        PREPARE_NOTEBOOK in available
        and "split_dir" in specs
        and set(specs["split_dir"].notebooks) >= set(point_nbs)
        and not set(swept) & prepare_keys
    )
    base_params = dict(fixed)
    if share:
        prep = {k: v for k, v in fixed.items() if PREPARE_NOTEBOOK in specs[k].notebooks}
        run(
            prep,
            run_dir=folder,
            only=[PREPARE_NOTEBOOK],
            notebooks_dir=notebooks_dir,
            kernel=kernel,
            no_input=no_input,
            html=html,
            index=False,
            progress=False,
            timeout=timeout,
            extra_record={"sweep": str(folder), "environment": meta["environment"]},
        )
        base_params["split_dir"] = str(folder)

    width = max(2, len(str(len(points) - 1)))
    tasks = []
    for i, point in enumerate(points):
        params = {
            k: v
            for k, v in {**base_params, **point}.items()
            if set(specs[k].notebooks) & set(point_nbs)
        }
        tasks.append(
            {
                "run_dir": str(folder / f"point-{i:0{width}d}"),
                "params": params,
                "point": point,
                "notebooks": list(point_nbs),
                "notebooks_dir": str(Path(next(iter(available.values()))).parent),
                "kernel": kernel,
                "no_input": no_input,
                "html": html,
                "timeout": timeout,
                "sweep_dir": str(folder),
                "environment": meta["environment"],
            }
        )
    results = _execute_points(
        tasks, workers=workers, executor=executor, scheduler=scheduler, progress=progress
    )
    table = _sweep_table(results, swept)
    from mfjax._io_utils import atomic_path

    with atomic_path(folder / "sweep.csv", suffix=".csv") as tmp:
        table.to_csv(tmp, index=False)
    with atomic_path(folder / "sweep.parquet", suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)
    failed = {r["name"]: r["error"] for r in results if r["error"]}
    metric = _metric_column(table, metric)
    best = _best(table, metric)
    best_params_ = None
    if best is not None:
        best_params_ = {k: _py(best[k]) for k in swept}
    _write_json(
        folder / "sweep.json",
        {
            **{k: v for k, v in meta.items() if k != "environment"},
            "metric": metric,
            "n_ok": int((table["status"] == "ok").sum()),
            "n_failed": len(failed),
            "failed": failed,
            "best_point": best.get("point") if best else None,
            "best_params": best_params_,
            "best_value": best.get(metric) if best else None,
            "finished": _now().isoformat(),
        },
    )
    tune_html = None
    if tune and TUNE_NOTEBOOK in available and best is not None:
        tune_params = {k: v for k, v in fixed.items() if TUNE_NOTEBOOK in specs[k].notebooks}
        if "sweep_dir" in specs and TUNE_NOTEBOOK in specs["sweep_dir"].notebooks:
            tune_params["sweep_dir"] = str(folder)
        if "metric" in specs and TUNE_NOTEBOOK in specs["metric"].notebooks:
            style = str(specs["metric"].default)  # "rmse" (base name) or "valid_rmse" (column)
            tune_params["metric"] = (
                metric if style.startswith("valid_") else metric.removeprefix("valid_")
            )
        # the heatmap's axes: the first two swept parameters
        for axis, pname in zip(
            ("row_param", "col_param"), swept if len(swept) >= 2 else [], strict=False
        ):
            if axis in specs and TUNE_NOTEBOOK in specs[axis].notebooks:
                tune_params[axis] = pname
        try:
            res = run(
                tune_params,
                run_dir=folder,
                only=[TUNE_NOTEBOOK],
                notebooks_dir=notebooks_dir,
                kernel=kernel,
                no_input=no_input,
                html=html,
                index=False,
                progress=False,
                timeout=timeout,
                extra_record={"sweep": str(folder), "environment": meta["environment"]},
            )
            tune_html = res.html[0] if res.html else None
        finally:
            _rebuild_index(reports_root, folder)
    else:
        _rebuild_index(reports_root, folder)
    return SweepResult(
        sweep_dir=folder,
        table=table,
        failed=failed,
        best=best_params_,
        metric=metric,
        tune_html=tune_html,
    )


def _execute_points(
    tasks: list[dict[str, Any]],
    *,
    workers: int,
    executor: str,
    scheduler: Any,
    progress: bool,
) -> list[dict[str, Any]]:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(tasks), desc="mfjax sweep", unit="point", disable=not progress)
    results: list[dict[str, Any]] = []

    def done(res: dict[str, Any]) -> None:
        results.append(res)
        bar.update(1)
        if res["error"]:
            bar.write(f"point {res['name']} {res['point']} failed: {res['error'].splitlines()[0]}")

    try:
        if executor == "dask":
            _dask_points(tasks, scheduler, done)
        elif workers == 1 or len(tasks) == 1:
            for task in tasks:
                done(_run_point(task))
        else:
            import concurrent.futures as cf
            import multiprocessing as mp

            ctx = mp.get_context("spawn")  # never fork a process that may hold JAX threads
            with cf.ProcessPoolExecutor(
                max_workers=min(workers, len(tasks)), mp_context=ctx
            ) as pool:
                futures = [pool.submit(_run_point, t) for t in tasks]
                for fut in cf.as_completed(futures):
                    done(fut.result())
    finally:
        bar.close()
    return results


def _dask_points(tasks: list[dict[str, Any]], scheduler: Any, done: Callable[[dict], None]) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as exc:
        raise ParameterError(
            "--executor dask needs dask.distributed, which is not installed; install the "
            "cluster extra: pip install 'mfjax[cluster]'"
        ) from exc
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        futures = client.map(
            _run_point,
            tasks,
            pure=False,
            key=[f"mfjax-{Path(t['run_dir']).name}-{os.getpid()}-{time.time_ns()}" for t in tasks],
        )
        for fut in as_completed(futures):
            done(fut.result())
    finally:
        if own:
            client.close()


def best_params(sweep_dir: str | os.PathLike[str], *, metric: str | None = None) -> dict[str, Any]:
    """The parameters of a sweep's best point: its run's params, by the sweep's metric.

    Args:
        sweep_dir: a folder written by :func:`sweep` (``sweep.csv`` and ``sweep.json``).
        metric: the column to rank by (default: the one the sweep recorded).

    Example:
        >>> best_params("reports/sweep-synthetic-20261204-160000")   # doctest: +SKIP
        {'dataset': 'synthetic', 'factors': 32, 'reg': 0.01, ...}
    """
    import pandas as pd

    folder = Path(sweep_dir)
    csv = folder / "sweep.csv"
    if not csv.is_file():
        raise ParameterError(
            f"{folder} is not a sweep folder (no sweep.csv); run `mfjax sweep` first"
        )
    info = _read_json(folder / "sweep.json")
    metric = metric or info.get("metric") or DEFAULT_SWEEP_METRIC
    table = pd.read_csv(csv)
    if "status" not in table:
        table["status"] = "ok"
    metric = _metric_column(table, metric)
    best = _best(table, metric)
    if best is None:
        cols = [c for c in table.columns if c not in ("point", "status", "error", "model")]
        raise ParameterError(
            f"no successful point of {folder} has a value for {metric!r}; columns: {cols}"
        )
    params = load_params_file(folder / str(best["point"]) / "params.yaml")
    params.pop("split_dir", None)  # the new run prepares its own split
    return params


def refresh_notebooks(
    notebooks_dir: str | os.PathLike[str] | None = None,
    *,
    kernel: str | None = None,
    names: Sequence[str] | None = None,
    progress: bool = True,
    timeout: float | None = None,
) -> list[Path]:
    """Re-execute notebooks in place with their default parameters (``make notebooks``).

    Each runs from its own folder, as in JupyterLab and nbval; papermill's execution
    metadata is stripped so that the committed diff shows only real changes. A notebook is
    replaced only when it ran without error.
    """
    import nbformat

    from mfjax._io_utils import atomic_path

    available = find_notebooks(notebooks_dir)
    chosen = _select(available, names) if names else available
    done: list[Path] = []
    bar = _progress(chosen.items(), total=len(chosen), desc="notebooks", enabled=progress)
    for _nb_name, src in bar:
        with atomic_path(src, suffix=".ipynb") as tmp:
            # our own kernel, its process chatter in a temporary log (kept and named on failure)
            fd, name = tempfile.mkstemp(prefix=f"mfjax-{src.stem}-", suffix=".kernel.log")
            os.close(fd)
            log = Path(name)
            km = _WarmKernel(src, kernel, src.parent, log=log).take()
            try:
                execute_notebook(
                    src, tmp, None, kernel=kernel, cwd=src.parent, timeout=timeout, km=km
                )
            except NotebookExecutionError as exc:
                if log.stat().st_size:
                    exc.args = (f"{exc.args[0]}\n(kernel log: {log})",)
                raise
            log.unlink()
            nb = nbformat.read(str(tmp), as_version=4)
            _strip_papermill(nb)
            nbformat.write(nb, str(tmp))
        done.append(src)
    return done


def _strip_papermill(nb: Any) -> None:
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)

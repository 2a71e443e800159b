"""Artifact-aware steps of the notebook pipeline (prepare → train → evaluate → compare → tune).

The notebooks in ``notebooks/`` call these functions so that no cell grows a loop or a
helper. Each step **reuses an artifact of the run folder when it is present and builds it
otherwise, by calling the same function the earlier notebook calls**, so that every notebook
runs on its own (opened alone in JupyterLab, or run alone by nbval or papermill) and, run in
sequence, reuses what the previous one wrote:

```
<run_dir>/split/              prepared split (mfjax.io.save_split), plus prepare.json
<run_dir>/models/<name>.npz   trained models (model.save)
<run_dir>/metrics.json        {"dataset", "params", "models": {name: {metric: value}}}
<sweep_dir>/sweep.csv         one row per grid point: parameters, metrics, fit_seconds
```

Steps orchestrate; the work itself is done by :mod:`mfjax.data`, :mod:`mfjax.splits`,
:mod:`mfjax.io`, the models, :mod:`mfjax.evaluate` and :mod:`mfjax.compare`.

Example:
    >>> from mfjax import steps
    >>> # prep = steps.prepare("reports/demo", dataset="synthetic", seed=0)
    >>> # model = steps.get_model("reports/demo", prep.split, model="mf", factors=16)
    >>> # result = steps.evaluate_model(model, prep.split, k=(5, 10, 20))
    >>> # steps.record_metrics("reports/demo", dataset="synthetic", params={},
    >>> #                      model_name="mf", metrics=steps.flat_metrics(result))
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import importlib
import itertools
import json
import math
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mfjax._io_utils import write_json_atomic
from mfjax.exceptions import DataError
from mfjax.splits import Split

__all__ = [
    "DEFAULT_RUN_DIR",
    "DEFAULT_SWEEP_DIR",
    "MODEL_MODULES",
    "Prepared",
    "best_point",
    "best_summary",
    "build_roster",
    "compare_models",
    "comparison_table",
    "ensure_sweep",
    "evaluate_model",
    "examples_view",
    "flat_metrics",
    "get_model",
    "get_split",
    "headline_metrics",
    "item_titles",
    "load_dataset",
    "load_sweep",
    "make_model",
    "model_path",
    "plot_valid_vs_test",
    "prepare",
    "read_metrics",
    "recommendation_example",
    "record_best",
    "record_comparison",
    "record_metrics",
    "resolve_run_dir",
    "roster_table",
    "significance_view",
    "split_summary",
    "summary_record",
    "summary_table",
    "sweep_view",
    "train_model",
    "training_record",
    "valid_vs_test",
    "validation_split",
    "without_timings",
]

#: run folder used when a notebook's ``run_dir`` parameter is "" (git-ignored under reports/)
DEFAULT_RUN_DIR = "reports/notebook-default"
#: sweep folder used when 05_tune's ``sweep_dir`` parameter is ""
DEFAULT_SWEEP_DIR = "reports/notebook-default-sweep"

#: the modules whose import registers each model name in ``MODEL_REGISTRY``
MODEL_MODULES: dict[str, str] = {
    "mf": "mfjax.models.mf",
    "bpr": "mfjax.models.bpr",
    "random": "mfjax.models.baselines",
    "popularity": "mfjax.models.baselines",
    "bias": "mfjax.models.baselines",
    "ials": "mfjax.models.ials",
    "ease": "mfjax.models.linear",
    "itemknn": "mfjax.models.linear",
}

#: metrics where lower is better (everything else: higher is better)
LOWER_IS_BETTER = frozenset({"rmse", "mae", "fit_seconds", "eval_seconds"})

# parameters that define a prepared split (recorded in <split>/prepare.json and checked on reuse)
_PREPARE_KEYS = (
    "dataset",
    "seed",
    "min_user_ratings",
    "min_item_ratings",
    "duplicates",
    "split_method",
    "test_size",
    "valid_size",
)


# ---------------------------------------------------------------------------------------- paths
def _project_root(start: Path | None = None) -> Path | None:
    """The nearest folder above ``start`` (default: cwd) holding mfjax's pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pp = folder / "pyproject.toml"
        if pp.is_file() and 'name = "mfjax"' in pp.read_text(encoding="utf-8", errors="ignore"):
            return folder
    return None


def resolve_run_dir(
    run_dir: str | os.PathLike[str] = "", *, default: str = DEFAULT_RUN_DIR
) -> Path:
    """The run folder as a Path, created if needed.

    ``""`` means ``default`` under the project root (the folder holding mfjax's
    ``pyproject.toml``, found from the current directory, so notebooks started from
    ``notebooks/`` write to the git-ignored ``reports/``), or under the current directory
    outside a checkout.

    Example:
        >>> resolve_run_dir("/tmp/mfjax-doc-run").name
        'mfjax-doc-run'
    """
    if run_dir is None or str(run_dir) == "":
        path = (_project_root() or Path.cwd()) / default
    else:
        path = Path(run_dir).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_path(run_dir: str | os.PathLike[str], name: str) -> Path:
    """Where the run folder keeps model ``name``: ``<run_dir>/models/<name>.npz``."""
    return resolve_run_dir(run_dir) / "models" / f"{name}.npz"


def _split_folder(run_dir: str | os.PathLike[str], split_dir: str | os.PathLike[str]) -> Path:
    base = resolve_run_dir(split_dir) if str(split_dir or "") else resolve_run_dir(run_dir)
    return base / "split"


# ---------------------------------------------------------------------------------------- data
@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` produced.

    Attributes:
        raw: the frame as loaded (``user, item, rating, timestamp``).
        clean: the frame after cleaning and k-core filtering.
        report: what each cleaning step removed (a :class:`mfjax.data.CleaningReport`).
        split: the train / valid / test split, saved under ``<run_dir>/split``.
        options: the preparation parameters (also in ``<run_dir>/split/prepare.json``).
    """

    raw: pd.DataFrame
    clean: pd.DataFrame
    report: Any
    split: Split
    options: dict


def _prepare_options(**kw: Any) -> dict:
    opts = {
        "dataset": "synthetic",
        "seed": 0,
        "min_user_ratings": 5,
        "min_item_ratings": 5,
        "duplicates": "last",
        "split_method": "random",
        "test_size": 0.2,
        "valid_size": 0.1,
    }
    unknown = sorted(set(kw) - set(opts))
    if unknown:
        raise TypeError(f"unknown preparation parameter(s) {unknown}; valid: {sorted(opts)}")
    opts.update(kw)
    return opts


def load_dataset(dataset: str = "synthetic", *, seed: int = 0) -> pd.DataFrame:
    """Load ``dataset`` (``"synthetic"``, a dataset name or a file path) as the raw frame,
    missing values kept for the cleaning step to count. The synthetic generator is seeded
    with ``seed``; real data ignore it."""
    from mfjax import data

    if str(dataset) == "synthetic":
        return data.load_interactions("synthetic", seed=seed)
    return data.load_interactions(dataset, missing="keep")


def prepare(
    run_dir: str | os.PathLike[str] = "",
    *,
    split_dir: str | os.PathLike[str] = "",
    **options: Any,
) -> Prepared:
    """Load, clean, k-core filter and split a dataset; save the split into the run folder.

    This is what ``01_prepare`` runs, and what later notebooks run when the split is absent.

    Args:
        run_dir: the run folder ("" for the default).
        split_dir: where to keep the split instead ("" means the run folder); sweep points
            share one split this way.
        **options: ``dataset`` ("synthetic", a name or a path), ``seed``,
            ``min_user_ratings`` / ``min_item_ratings`` (iterative k-core), ``duplicates``
            (policy for repeated user-item pairs), ``split_method``, ``test_size``,
            ``valid_size`` (fraction of training carved out for validation and tuning).

    Returns:
        a :class:`Prepared`.

    Example:
        >>> # prep = prepare("reports/demo", dataset="synthetic", seed=0, test_size=0.2)
        >>> # prep.split.info["n_train"]
    """
    from mfjax import data, io, splits

    opts = _prepare_options(**options)
    raw = load_dataset(opts["dataset"], seed=opts["seed"])
    clean, report = data.prepare(
        raw,
        duplicates=opts["duplicates"],
        min_user_ratings=opts["min_user_ratings"],
        min_item_ratings=opts["min_item_ratings"],
    )
    split = splits.split(
        clean,
        method=opts["split_method"],
        test_size=opts["test_size"],
        valid_size=opts["valid_size"],
        seed=opts["seed"],
    )
    folder = _split_folder(run_dir, split_dir)
    io.save_split(split, folder)
    write_json_atomic(folder / "prepare.json", opts)
    return Prepared(raw=raw, clean=clean, report=report, split=split, options=opts)


def get_split(
    run_dir: str | os.PathLike[str] = "",
    *,
    split_dir: str | os.PathLike[str] = "",
    **options: Any,
) -> Split:
    """The run's split: loaded from ``<split_dir or run_dir>/split`` when present, else prepared.

    A present split prepared with different parameters is an error (it names them): a run
    folder holds one split. ``seed`` is not compared (sweep points may vary the model seed
    over a shared split).
    """
    from mfjax import io

    opts = _prepare_options(**options)
    folder = _split_folder(run_dir, split_dir)
    meta = folder / "prepare.json"
    if meta.is_file():
        saved = json.loads(meta.read_text(encoding="utf-8"))
        diff = {
            key: (saved.get(key), opts[key])
            for key in _PREPARE_KEYS
            if key != "seed" and key in saved and saved[key] != opts[key]
        }
        if diff:
            listed = ", ".join(f"{k}: saved {a!r}, asked {b!r}" for k, (a, b) in diff.items())
            raise DataError(
                f"the split in {folder} was prepared with other parameters ({listed}); "
                "use a fresh run_dir, pass the same parameters, or delete that folder"
            )
        return io.load_split(folder)
    return prepare(run_dir, split_dir=split_dir, **opts).split


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """:func:`mfjax.data.summarize` as a ``statistic → value`` table for display, numbers
    rounded to 4 decimals (the recorded summary keeps the raw values)."""
    from mfjax import data

    table = data.summarize(df, as_frame=True).set_index("statistic")
    table["value"] = [round(v, 4) if isinstance(v, float) else v for v in table["value"].tolist()]
    return table


def split_summary(split: Split) -> pd.DataFrame:
    """Rows, users and items per part of ``split``, and the cold-start rows dropped.

    Example:
        >>> import pandas as pd
        >>> from mfjax.splits import random_split
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": [1, 2, 1, 2, 1, 2],
        ...                    "rating": [5.0, 3, 4, 2, 1, 4]})
        >>> int(split_summary(random_split(df, 0.34, seed=0, cold_start="keep"))["rows"].sum())
        6
    """
    rows = []
    for part in ("train", "valid", "test"):
        inter = getattr(split, part)
        if inter is None:
            continue
        rows.append(
            {
                "part": part,
                "rows": len(inter),
                "users": int(np.unique(inter.users).size),
                "items": int(np.unique(inter.items).size),
                "cold_start_dropped": int(split.info.get(f"{part}_cold_dropped", 0)),
            }
        )
    return pd.DataFrame(rows).set_index("part")


def validation_split(split: Split) -> Split:
    """``split`` with its validation part in the role of test (for tuning-time evaluation)."""
    if split.valid is None or len(split.valid) == 0:
        raise DataError(
            "this split has no validation part; prepare it with valid_size > 0 "
            "(e.g. valid_size=0.1) to evaluate and tune on validation data"
        )
    return Split(
        train=split.train, test=split.valid, valid=None, info={**split.info, "part": "valid"}
    )


def item_titles(dataset: str) -> pd.Series | None:
    """Item titles (indexed by raw item id) for a named dataset that has them, else None."""
    if str(dataset) == "synthetic" or Path(str(dataset)).suffix:
        return None
    from mfjax import datasets

    loader = getattr(datasets, "load_item_metadata", None)
    if loader is None:
        return None
    try:
        meta = loader(dataset)
    except (DataError, FileNotFoundError, OSError):
        return None
    if meta is None or "title" not in meta.columns:
        return None
    return meta.set_index("item")["title"]


# ---------------------------------------------------------------------------------------- models
def make_model(name: str = "mf", **hyperparameters: Any) -> Any:
    """A model of registry ``name`` configured from the notebook's parameters.

    Parameters its ``Config`` does not have are left out (a roster shares one parameter
    set); a value its ``Config`` rejects raises the model's own error.

    Example:
        >>> # make_model("mf", factors=16, epochs=10, reg=0.05, seed=0)
    """
    from mfjax.models.base import MODEL_REGISTRY

    if name not in MODEL_REGISTRY and name in MODEL_MODULES:
        importlib.import_module(MODEL_MODULES[name])
    cls = MODEL_REGISTRY.get(name)
    if cls is None:
        raise ValueError(
            f"unknown model {name!r}; known: {sorted(set(MODEL_MODULES) | set(MODEL_REGISTRY))}"
        )
    fields = {f.name for f in dataclasses.fields(cls.Config)}
    return cls(**{k: v for k, v in hyperparameters.items() if k in fields})


def train_model(
    run_dir: str | os.PathLike[str],
    split: Split,
    *,
    model: str = "mf",
    progress: bool = False,
    **hyperparameters: Any,
) -> Any:
    """Fit model ``model`` on ``split.train`` (validation history from ``split.valid``) and
    save it to ``<run_dir>/models/<model>.npz``.

    ``progress`` shows the training bar (off by default: notebooks keep stable outputs).
    """
    est = make_model(model, **hyperparameters)
    _fit_quietly(est, split, progress)
    est.save(model_path(run_dir, model))
    return est


def _fit_quietly(est: Any, split: Split, progress: bool) -> None:
    """Fit with the engine's progress bar on or off; models without the option just fit."""
    try:
        est.fit(split, progress=progress)
    except TypeError as exc:
        if "progress" not in str(exc) and "option" not in str(exc):
            raise
        est.fit(split)


def get_model(
    run_dir: str | os.PathLike[str],
    split: Split,
    *,
    model: str = "mf",
    **hyperparameters: Any,
) -> Any:
    """The run's model ``model``: loaded from ``<run_dir>/models/<model>.npz`` when present
    (what ``02_train`` saved), else trained by :func:`train_model` with ``hyperparameters``."""
    from mfjax.models.base import load

    path = model_path(run_dir, model)
    if path.is_file():
        if model in MODEL_MODULES:
            importlib.import_module(MODEL_MODULES[model])
        return load(path)
    return train_model(run_dir, split, model=model, **hyperparameters)


def recommendation_example(
    model: Any,
    split: Split,
    *,
    user: Any = None,
    k: int = 10,
    titles: pd.Series | None = None,
    liked_threshold: float = 4.0,
) -> pd.DataFrame:
    """A user's top-``k`` recommendations beside the items they rated highest in training.

    Args:
        model: a fitted model.
        split: its split (the user's training items come from ``split.train``).
        user: a raw user id; None picks the most active training user.
        k: list length.
        titles: item titles indexed by raw item id (see :func:`item_titles`), or None.
        liked_threshold: training ratings at or above it count as liked.

    Returns:
        one row per rank: ``recommended`` (and its title), ``score``, ``liked`` (and title).
    """
    train = split.train
    if user is None:
        user_code = int(np.argmax(train.user_counts()))
        user = train.user_map.ids(np.array([user_code]))[0]
    else:
        user_code = int(train.user_map.codes([user])[0])
    items, scores = model.recommend(user, k=k)
    mine = train.users == user_code
    order = np.argsort(-train.values[mine], kind="stable")
    liked_codes = train.items[mine][order]
    liked_vals = train.values[mine][order]
    liked_codes = liked_codes[liked_vals >= liked_threshold][:k]
    liked = [x.item() if hasattr(x, "item") else x for x in train.item_map.ids(liked_codes)]
    liked = pd.Series(liked + [""] * (k - len(liked)), dtype=object)
    out = pd.DataFrame(
        {"rank": np.arange(1, k + 1), "recommended": list(items), "score": np.round(scores, 4)}
    )
    if titles is not None:
        out["title"] = out["recommended"].map(titles)
    out["liked_in_training"] = liked.to_numpy()
    if titles is not None:
        out["liked_title"] = out["liked_in_training"].map(titles).fillna("")
    out.attrs["user"] = user
    return out.set_index("rank")


# ---------------------------------------------------------------------------------------- evaluation
def evaluate_model(
    model: Any,
    split: Split,
    *,
    part: str = "test",
    k: Sequence[int] | int = (5, 10, 20),
    threshold: float = 4.0,
    seed: int = 0,
) -> Any:
    """Evaluate ``model`` on the ``part`` ("test" or "valid") of ``split`` with
    :func:`mfjax.evaluate.evaluate`; returns its result (``.summary``, ``.per_user``)."""
    from mfjax.evaluate import evaluate

    if part not in ("test", "valid"):
        raise ValueError(f"part must be 'test' or 'valid'; got {part!r}")
    target = validation_split(split) if part == "valid" else split
    ks = (int(k),) if np.ndim(k) == 0 else tuple(int(x) for x in k)
    return evaluate(model, target, k=ks, threshold=threshold, seed=seed)


def flat_metrics(result: Any, *, k: int = 10, prefix: str = "") -> dict[str, Any]:
    """The flat ``metrics.json`` keys of an evaluation result (``precision@10``,
    ``precision@10_ci`` …), each prefixed with ``prefix`` (``"valid_"`` for validation)."""
    flat = result.to_metrics_dict(k=k)
    return {f"{prefix}{name}": value for name, value in flat.items()}


# ---------------------------------------------------------------------------------------- metrics.json
@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clean_value(value: Any) -> Any:
    """JSON-ready value, or None for something that is not a number (dropped by the caller)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [_clean_value(v) for v in np.asarray(value).tolist()]
        return None if any(v is None for v in items) else items
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, str):
        return value
    return None


def read_metrics(run_dir: str | os.PathLike[str] = "") -> dict:
    """The run's ``metrics.json`` (an empty skeleton when absent)."""
    path = resolve_run_dir(run_dir) / "metrics.json"
    if not path.is_file():
        return {"dataset": None, "params": {}, "models": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def record_metrics(
    run_dir: str | os.PathLike[str],
    *,
    dataset: str,
    params: Mapping[str, Any],
    model_name: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Merge results into ``<run_dir>/metrics.json`` atomically (under a file lock).

    The file has the form ``{"dataset": ..., "params": {...}, "models": {"<name>": {"rmse":
    ..., "precision@10": ..., "precision@10_ci": [lo, hi], "fit_seconds": ...}}}``. ``params``
    are merged into the recorded ones; ``metrics`` into the entry of ``model_name``. A metric
    that is None, NaN or not a number is left out (absent, never null). ``extra`` adds
    top-level sections (e.g. ``{"data": summary}``).

    Example:
        >>> import tempfile, json
        >>> d = tempfile.mkdtemp()
        >>> p = record_metrics(d, dataset="synthetic", params={"k": 10}, model_name="mf",
        ...                    metrics={"rmse": 0.9, "auc": float("nan")})
        >>> json.loads(p.read_text())["models"]
        {'mf': {'rmse': 0.9}}
    """
    path = resolve_run_dir(run_dir) / "metrics.json"
    with _locked(path):
        current = read_metrics(run_dir)
        current["dataset"] = str(dataset)
        merged_params = dict(current.get("params") or {})
        merged_params.update({k: _clean_value(v) for k, v in params.items()})
        current["params"] = merged_params
        models = dict(current.get("models") or {})
        if model_name is not None:
            entry = dict(models.get(model_name) or {})
            for key, value in (metrics or {}).items():
                clean = _clean_value(value)
                if clean is None:
                    entry.pop(key, None)
                else:
                    entry[key] = clean
            models[model_name] = entry
        current["models"] = models
        for key, value in (extra or {}).items():
            if key in ("dataset", "params", "models"):
                raise ValueError(f"extra section {key!r} would overwrite a reserved key")
            current[key] = value
        write_json_atomic(path, current)
    return path


def headline_metrics(run_dir: str | os.PathLike[str], model: str, *, k: int = 10) -> pd.DataFrame:
    """The recorded headline metrics of ``model`` (test and ``valid_``), each with its 95%
    interval, rounded to 4 decimals for display (``metrics.json`` keeps the raw values)."""
    entry = read_metrics(run_dir).get("models", {}).get(model, {})
    names = ["rmse", "mae", f"precision@{k}", f"recall@{k}", f"map@{k}", f"ndcg@{k}"]
    rows = []
    for prefix, part in (("", "test"), ("valid_", "valid")):
        for name in names:
            value = entry.get(f"{prefix}{name}")
            if value is None:
                continue
            ci = entry.get(f"{prefix}{name}_ci") or [np.nan, np.nan]
            rows.append(
                {"part": part, "metric": name, "value": value, "ci_low": ci[0], "ci_high": ci[1]}
            )
    if not rows:
        return pd.DataFrame(columns=["part", "metric", "value", "ci_low", "ci_high"])
    return pd.DataFrame(rows).set_index(["part", "metric"]).astype(float).round(4)


# ---------------------------------------------------------------------------------------- sweeps
def load_sweep(sweep_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """The sweep table ``<sweep_dir>/sweep.csv`` (or ``sweep.parquet``) as a DataFrame.

    Columns are the swept parameters, metric columns (``valid_<metric>`` for validation,
    ``<metric>`` for test, ``<metric>_ci_low``/``_ci_high`` where intervals were recorded) and
    ``fit_seconds``. A column prefix naming the model (``mf.`` or ``mf/``) is removed.
    """
    folder = Path(sweep_dir)
    csv, parquet = folder / "sweep.csv", folder / "sweep.parquet"
    if csv.is_file():
        table = pd.read_csv(csv)
    elif parquet.is_file():
        table = pd.read_parquet(parquet)
    else:
        raise DataError(
            f"no sweep table in {folder} (expected sweep.csv or sweep.parquet); run "
            f"`mfjax sweep --sweep-dir {folder} -p factors 8,32 -p reg 0.01,0.1` first, or leave "
            "sweep_dir empty to build the notebook's default sweep"
        )
    renamed = {}
    for col in table.columns:
        for sep in (".", "/"):
            head, _, tail = str(col).partition(sep)
            if tail and head in MODEL_MODULES:
                renamed[col] = tail
    return table.rename(columns=renamed)


def ensure_sweep(
    sweep_dir: str | os.PathLike[str] = "",
    *,
    grid: Mapping[str, Sequence[Any]],
    model: str = "mf",
    k: int = 10,
    threshold: float = 4.0,
    dataset: str = "synthetic",
    seed: int = 0,
    prepare_options: Mapping[str, Any] | None = None,
    **fixed: Any,
) -> Path:
    """A sweep folder with ``sweep.csv``: reused when present, else built in this process.

    A table that ``mfjax sweep`` wrote is used as it is. A table built here is reused only
    for the same request (grid, model, settings and the model's configuration with its
    defaults; recorded in ``sweep_request.json``) and rebuilt otherwise, so that changing
    the default grid in ``05_tune``, or a library default, takes effect.

    ``mfjax sweep`` builds sweeps by running the 02/03 notebooks per grid point; this is the
    in-process fallback that lets ``05_tune`` run on its own. It prepares one shared split in
    ``<sweep_dir>/split``, then for every grid point trains with :func:`train_model`,
    evaluates on validation and test with :func:`evaluate_model`, records the point's
    ``metrics.json`` in ``<sweep_dir>/point-NN/`` and writes the table.

    Example:
        >>> # ensure_sweep("", grid={"factors": [4, 16], "reg": [0.001, 0.1]}, epochs=10)
    """
    folder = resolve_run_dir(sweep_dir, default=DEFAULT_SWEEP_DIR)
    opts = {"dataset": dataset, "seed": seed, **dict(prepare_options or {})}
    # the model's full configuration (defaults included) is part of the request, so that a
    # changed library default rebuilds a cached table instead of serving stale numbers
    from mfjax.train import config_dict

    first = {name: values[0] for name, values in grid.items() if len(values)}
    config = make_model(model, **{"seed": seed, **fixed, **first}).config
    request = _clean_value_tree(
        {
            "grid": dict(grid),
            "model": model,
            "k": k,
            "threshold": threshold,
            "fixed": fixed,
            "config_defaults": {
                key: value for key, value in config_dict(config).items() if key not in grid
            },
            **opts,
        }
    )
    request_file = folder / "sweep_request.json"
    has_table = (folder / "sweep.csv").is_file() or (folder / "sweep.parquet").is_file()
    if has_table and not request_file.is_file():
        return folder  # a sweep made elsewhere (mfjax sweep): use it as it is
    if has_table and json.loads(request_file.read_text(encoding="utf-8")) == request:
        return folder  # built here before, with the same request
    if has_table:  # built here with another grid or settings: rebuild
        for stale in ("sweep.csv", "sweep.parquet", "metrics.json"):
            (folder / stale).unlink(missing_ok=True)
        shutil.rmtree(folder / "split", ignore_errors=True)
    from mfjax._io_utils import atomic_path

    split = get_split(folder, **opts)
    names = list(grid)
    rows = []
    for n, values in enumerate(itertools.product(*(grid[name] for name in names))):
        point = dict(zip(names, values, strict=True))
        hyper = {"seed": seed, **fixed, **point}
        point_dir = folder / f"point-{n:02d}"
        est = train_model(point_dir, split, model=model, **hyper)
        valid = flat_metrics(
            evaluate_model(est, split, part="valid", k=k, threshold=threshold, seed=seed),
            k=k,
            prefix="valid_",
        )
        test = flat_metrics(
            evaluate_model(est, split, part="test", k=k, threshold=threshold, seed=seed), k=k
        )
        measured = {**valid, **test, "fit_seconds": est.fit_seconds_}
        record_metrics(point_dir, dataset=dataset, params=hyper, model_name=model, metrics=measured)
        row = {"point": point_dir.name, **point, "model": model}
        for key, value in measured.items():
            if isinstance(value, (list, tuple)) and len(value) == 2:
                row[f"{key}_low"], row[f"{key}_high"] = value
            else:
                row[key] = value
        row["status"] = "ok"
        rows.append(row)
    with atomic_path(folder / "sweep.csv", suffix=".csv") as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    write_json_atomic(request_file, request)
    return folder


def _clean_value_tree(obj: Any) -> Any:
    """JSON-comparable form of a nested request (tuples as lists, numpy scalars as Python)."""
    if isinstance(obj, Mapping):
        return {str(k): _clean_value_tree(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_value_tree(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---------------------------------------------------------------------------------------- compare
#: roster entries built from the notebook's MF hyperparameters (other names come from
#: :func:`mfjax.compare.default_roster` with each model's documented defaults)
MF_VARIANTS: dict[str, dict[str, Any]] = {
    "mf": {},  # the notebook's own optimizer and learning rate (the model 02_train trains)
    "mf_sgd": {"optimizer": "sgd", "learning_rate": 0.1},
    "mf_adagrad": {"optimizer": "adagrad", "learning_rate": 0.1},
    "mf_adam": {"optimizer": "adam", "learning_rate": 0.01},
}


@dataclass(frozen=True)
class _MFFactory:
    """``seed -> MF`` with the notebook's hyperparameters and a variant's overrides."""

    hyper: tuple
    overrides: tuple

    def __call__(self, seed: int = 0) -> Any:
        return make_model("mf", **{**dict(self.hyper), **dict(self.overrides), "seed": seed})


def build_roster(
    names: Sequence[str], **hyperparameters: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """The comparison roster as ``{name: factory(seed) -> model}`` and ``{name: reason}`` of
    the entries that cannot run here (an external package not installed).

    ``mf`` and its optimizer variants (:data:`MF_VARIANTS`: ``mf_sgd``, ``mf_adagrad``,
    ``mf_adam``) take the notebook's MF hyperparameters; every other name
    (``bpr``, ``ials``, ``random``, ``popularity``, ``bias``, ``itemknn``, ``ease``,
    ``implicit_als``, ``implicit_bpr``, ``surprise_svd``) is built by
    :func:`mfjax.compare.default_roster` with that model's own defaults.

    Example:
        >>> factories, skipped = build_roster(["mf", "popularity"], factors=8, epochs=2)
        >>> sorted(factories)
        ['mf', 'popularity']
    """
    from mfjax.compare import default_roster

    if len(set(names)) != len(names):
        raise ValueError(f"the roster names a model twice: {list(names)}")
    hyper = tuple(sorted((k, v) for k, v in hyperparameters.items() if k != "seed"))
    others = [n for n in names if n not in MF_VARIANTS]
    built, skipped = default_roster(others) if others else ({}, {})
    factories: dict[str, Any] = {}
    for name in names:
        if name in MF_VARIANTS:
            factories[name] = _MFFactory(hyper, tuple(sorted(MF_VARIANTS[name].items())))
        elif name in built:
            factories[name] = built[name]
    return factories, dict(skipped)


def roster_table(roster: tuple[dict[str, Any], dict[str, str]]) -> pd.DataFrame:
    """One row per roster entry: the model, its family, whether it is an external peer or a
    baseline, its non-default settings, or why it is skipped."""
    from mfjax.compare import BASELINE_NAMES

    factories, skipped = roster
    rows = []
    for name, factory in factories.items():
        model = factory(0)
        config = getattr(model, "config", None)
        changed = ""
        if dataclasses.is_dataclass(config):
            default = type(config)()
            changed = ", ".join(
                f"{f.name}={getattr(config, f.name)!r}"
                for f in dataclasses.fields(config)
                if f.name != "seed" and getattr(config, f.name) != getattr(default, f.name)
            )
        registry = str(getattr(model, "name", type(model).__name__))
        rows.append(
            {
                "entry": name,
                "model": registry,
                "kind": getattr(model, "kind", "ranking"),
                "external": bool(getattr(model, "external", False)),
                "baseline": registry in BASELINE_NAMES,
                "settings": changed or "defaults",
            }
        )
    for name, reason in skipped.items():
        rows.append({"entry": name, "model": "", "kind": "", "external": True, "baseline": False,
                     "settings": f"skipped: {reason}"})  # fmt: skip
    return pd.DataFrame(rows).set_index("entry")


def compare_models(
    roster: tuple[dict[str, Any], dict[str, str]],
    split: Split,
    *,
    seeds: Sequence[int] = (0,),
    k: int = 10,
    threshold: float = 4.0,
    baseline: str | Sequence[str] | None = None,
    dataset: str = "synthetic",
) -> Any:
    """Train and evaluate the roster on ``split`` with :func:`mfjax.compare.compare`.

    Ranking metrics at ``(5, k, 20)``; the best baseline by NDCG@``k`` is the reference of
    the paired tests (``baseline`` "" or None: every baseline model of the roster competes
    for it). Item titles come from the dataset's metadata when it has them. The entries
    that could not run are in ``result.skipped``.
    """
    import dataclasses as dc

    from mfjax.compare import compare

    factories, skipped = roster
    ks = tuple(sorted({5, int(k), 20}))
    with warnings.catch_warnings():
        # models without a score for every item (external peers) have no AUC: their
        # summary is NaN by design, which numpy reports as an all-NaN slice
        warnings.filterwarnings("ignore", message="All-NaN slice encountered")
        result = compare(
            factories,
            split,
            seeds=tuple(seeds),
            k=ks,
            baseline=baseline or None,
            primary=f"ndcg@{int(k)}",
            threshold=threshold,
            metadata=item_titles(dataset),
        )
    return dc.replace(result, skipped={**skipped, **result.skipped})


_HEADLINE = ("rmse", "precision", "recall", "map", "ndcg")


def comparison_table(comparison: Any, *, k: int = 10) -> pd.DataFrame:
    """Models × headline metrics at ``k``: the mean (over users, then seeds) and its 95%
    interval as ``[low, high]``, both rounded to 4 decimals, plus the seeds' spread when
    several seeds ran. Timings are in ``comparison.runs``."""
    t = comparison.table
    t = t[t["metric"].isin(_HEADLINE) & (t["k"].isna() | (t["k"] == k))]
    rows: dict[str, dict[str, Any]] = {}
    for r in t.itertuples(index=False):
        name = r.metric if pd.isna(r.k) else f"{r.metric}@{int(r.k)}"
        row = rows.setdefault(r.model, {"external": bool(r.external), "baseline": bool(r.baseline)})
        row[name] = round(float(r.mean), 4) if np.isfinite(r.mean) else np.nan
        if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
            row[f"{name} 95% CI"] = f"[{r.ci_low:.4f}, {r.ci_high:.4f}]"
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "model"
    ordered = ["external", "baseline"]
    for metric in _HEADLINE:
        for col in list(out.columns):
            if col.split("@")[0].split(" ")[0] == metric and col not in ordered:
                ordered.append(col)
    out = out[ordered + [c for c in out.columns if c not in ordered]]
    order = [m for m in comparison.info["models"] if m in out.index]
    return out.loc[order]


def significance_view(comparison: Any, *, k: int = 10) -> pd.DataFrame:
    """The paired tests of each model against the best baseline, for NDCG@``k`` and
    precision@``k``: mean difference, Holm-corrected p-values of the paired t-test and of
    the Wilcoxon signed-rank test, and whether both are below the level. Rounded to 4
    decimals; models without a value for the metric are left out."""
    sig = comparison.significance
    sel = sig["metric"].isin(["ndcg", "precision"]) & (sig["k"] == k) & sig["n_users"].gt(0)
    cols = ["model", "baseline", "metric", "k", "n_users", "mean_model", "mean_baseline", "diff",
            "t_p_holm", "w_p_holm", "significant"]  # fmt: skip
    out = sig.loc[sel.fillna(False), cols].dropna(subset=["diff"])
    out = out.sort_values(["metric", "diff"], ascending=[True, False]).reset_index(drop=True)
    return out.round(4)


def examples_view(comparison: Any) -> pd.DataFrame:
    """The comparison's example recommendations side by side: one row per user and rank,
    one column per model (titles where known, a ``*`` marking an item the user rated highly
    in test)."""
    ex = comparison.examples
    if ex.empty:
        return ex
    label = (
        ex["title"].where(ex["title"] != "", ex["item"].astype(str))
        if "title" in ex
        else ex["item"].astype(str)
    )
    ex = ex.assign(shown=label.astype(str) + np.where(ex["relevant"], " *", ""))
    wide = ex.pivot_table(
        index=["user", "rank"], columns="model", values="shown", aggfunc="first", sort=False
    )
    return wide[[m for m in comparison.info["models"] if m in wide.columns]]


def record_comparison(
    run_dir: str | os.PathLike[str],
    comparison: Any,
    *,
    dataset: str,
    params: Mapping[str, Any],
    k: int = 10,
) -> list[str]:
    """Record every compared model's metrics (``_ci`` intervals, ``fit_seconds``) into
    ``<run_dir>/metrics.json``; returns the model names recorded."""
    entries = comparison.to_metrics_dict(k=k)
    for name, metrics in entries.items():
        record_metrics(run_dir, dataset=dataset, params=params, model_name=name, metrics=metrics)
    if not entries:
        record_metrics(run_dir, dataset=dataset, params=params)
    return list(entries)


# ---------------------------------------------------------------------------------------- records
def summary_record(summary: Any, split: Split) -> dict:
    """A JSON-ready record of a data summary (``mfjax.data.summarize``) and split counts."""
    if isinstance(summary, pd.DataFrame):
        if summary.shape[1] == 1:
            summary = summary.iloc[:, 0].to_dict()
        else:
            summary = summary.to_dict()
    elif isinstance(summary, pd.Series):
        summary = summary.to_dict()
    elif dataclasses.is_dataclass(summary):
        summary = dataclasses.asdict(summary)
    record: dict[str, Any] = {}
    for key, value in dict(summary).items():
        if isinstance(value, Mapping):
            clean: Any = {str(k): _clean_value(v) for k, v in value.items()}
            clean = {k: v for k, v in clean.items() if v is not None}
        else:
            clean = _clean_value(value)
        if clean is not None:
            record[str(key)] = clean
    record["split"] = {
        key: _clean_value(value)
        for key, value in split.info.items()
        if _clean_value(value) is not None
    }
    return record


def training_record(model: Any) -> dict[str, Any]:
    """``fit_seconds`` and the number of epochs run, from a fitted model."""
    out: dict[str, Any] = {}
    if getattr(model, "fit_seconds_", None) is not None:
        out["fit_seconds"] = float(model.fit_seconds_)
    history = getattr(model, "history_", None)
    if history is not None and len(history):
        out["epochs_run"] = int(len(history))
    return out


def valid_vs_test(valid_result: Any, test_result: Any, *, k: int = 10) -> pd.DataFrame:
    """Validation and test value of each headline metric and their gap (test − valid)."""
    skip = {"eval_seconds", "n_users", "n_excluded"}
    valid = {n: v for n, v in valid_result.to_metrics_dict(k=k).items() if "_ci" not in n}
    test = {n: v for n, v in test_result.to_metrics_dict(k=k).items() if "_ci" not in n}
    valid = {n: v for n, v in valid.items() if n not in skip and v is not None}
    names = [n for n in test if n in valid]
    table = pd.DataFrame(
        {"valid": [valid[n] for n in names], "test": [test[n] for n in names]}, index=names
    )
    table.index.name = "metric"
    table["gap"] = table["test"] - table["valid"]
    return table


# ---------------------------------------------------------------------------------------- tuning
#: columns of a sweep table that are neither swept parameters nor metrics
_BOOKKEEPING = frozenset({"point", "model", "status", "error", "wall_seconds", "run_dir", "name"})
_TIMINGS = frozenset({"fit_seconds", "eval_seconds", "wall_seconds", "epochs_run"})
_NOT_PARAMS = frozenset({"rmse", "mae", "auc", "n_users", "n_excluded"}) | _TIMINGS


def _is_metric_column(name: str) -> bool:
    name = str(name)
    return (
        "@" in name
        or name.startswith("valid_")
        or "_ci" in name
        or name in _NOT_PARAMS
        or name.removeprefix("valid_") in _NOT_PARAMS
    )


def _param_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if not _is_metric_column(c) and c not in _BOOKKEEPING]


def _selection_column(metric: str) -> str:
    """``valid_<metric>``: tuning selects on validation columns only."""
    return metric if metric.startswith("valid_") else f"valid_{metric}"


def _ok_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["status"] == "ok"] if "status" in table.columns else table


def without_timings(entry: Mapping[str, Any]) -> pd.Series:
    """A ``metrics.json`` entry without the machine-dependent timings, for display."""
    keep = {
        k: v
        for k, v in entry.items()
        if k not in _TIMINGS and k.removeprefix("valid_") not in _TIMINGS
    }
    return pd.Series(keep, dtype=object)


def best_point(table: pd.DataFrame, metric: str = "valid_rmse") -> pd.Series:
    """The successful row of the sweep table with the best validation ``metric``.

    ``metric`` is a validation column (``valid_rmse``; a name without the prefix means its
    validation column). Lower is better for RMSE, MAE and times, higher otherwise. The test
    columns are never looked at to choose.
    """
    column = _selection_column(metric)
    if column not in table.columns:
        raise DataError(
            f"the sweep table has no column {column!r}; metric columns: "
            f"{[c for c in table.columns if _is_metric_column(c)]}"
        )
    rows = _ok_rows(table)
    values = rows[column].astype(float)
    if values.isna().all():
        raise DataError(f"no successful point of the sweep has a value for {column!r}")
    base = column.removeprefix("valid_").split("@")[0]
    idx = values.idxmin() if base in LOWER_IS_BETTER else values.idxmax()
    return table.loc[idx]


_SWEEP_VIEW = ("rmse", "mae", "precision", "recall", "map", "ndcg")


def sweep_view(
    table: pd.DataFrame, params: Sequence[str], *, metric: str = "valid_rmse"
) -> pd.DataFrame:
    """The sweep table as tuning sees it: the swept ``params`` and the headline
    **validation** columns (the selection ``metric`` first), sorted by the parameters. Test columns and
    timings are left out: selection does not look at them."""
    missing = [p for p in params if p not in table.columns]
    if missing:
        raise DataError(
            f"the sweep table has no parameter column(s) {missing}; "
            f"parameter columns: {_param_columns(table)}"
        )
    first = _selection_column(metric)
    valid_cols = [
        c
        for c in table.columns
        if str(c).startswith("valid_")
        and "_ci" not in str(c)
        and str(c).removeprefix("valid_").split("@")[0] in _SWEEP_VIEW
    ]
    ordered = [c for c in [first] if c in valid_cols] + [c for c in valid_cols if c != first]
    if not ordered:
        raise DataError(
            "the sweep table has no validation columns (valid_<metric>); run 03_evaluate "
            "with a split that has valid_size > 0"
        )
    view = _ok_rows(table)[list(params) + ordered]
    return view.sort_values(list(params)).reset_index(drop=True)


def _ci_of(row: pd.Series, name: str) -> tuple[float, float] | None:
    low, high = row.get(f"{name}_ci_low"), row.get(f"{name}_ci_high")
    if low is not None and high is not None and pd.notna(low) and pd.notna(high):
        return float(low), float(high)
    both = row.get(f"{name}_ci")
    if isinstance(both, str):
        try:
            both = json.loads(both)
        except ValueError:
            return None
    if isinstance(both, (list, tuple, np.ndarray)) and len(both) == 2:
        return float(both[0]), float(both[1])
    return None


def best_summary(
    best: pd.Series, table: pd.DataFrame, *, metric: str = "valid_rmse"
) -> pd.DataFrame:
    """The chosen configuration: its parameters, its validation metric and the matching test
    metric with its recorded 95% interval, one row per quantity (floats rounded to 4
    decimals for display; the files keep the raw values)."""
    column = _selection_column(metric)
    test = column.removeprefix("valid_")
    rows: list[tuple[str, Any]] = [(p, best[p]) for p in _param_columns(table)]
    if column in best.index:
        rows.append((f"validation {test}", float(best[column])))
    ci = _ci_of(best, column)
    if ci is not None:
        rows += [
            (f"validation {test} 95% CI low", ci[0]),
            (f"validation {test} 95% CI high", ci[1]),
        ]
    if test in best.index and pd.notna(best[test]):
        rows.append((f"test {test}", float(best[test])))
        ci = _ci_of(best, test)
        if ci is not None:
            rows += [(f"test {test} 95% CI low", ci[0]), (f"test {test} 95% CI high", ci[1])]
    rows.append(("grid points", int(len(_ok_rows(table)))))
    values = [_display(v) for _, v in rows]
    out = pd.DataFrame(
        {"value": np.array(values, dtype=object)},
        index=pd.Index([q for q, _ in rows], name="quantity"),
    )
    return out


def _display(value: Any) -> Any:
    """A plain Python value for display: floats rounded to 4 decimals, integral floats as
    int (a parameter read back from a CSV)."""
    if isinstance(value, (np.generic,)):
        value = value.item()
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else round(value, 4)
    return value


def plot_valid_vs_test(
    table: pd.DataFrame, *, metric: str = "valid_rmse", best: pd.Series | None = None
) -> Any:
    """Scatter of each grid point's validation metric against its test metric, with the
    diagonal and the chosen point marked. Returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    valid = _selection_column(metric)
    test = valid.removeprefix("valid_")
    for col in (valid, test):
        if col not in table.columns:
            raise DataError(f"the sweep table has no column {col!r} to compare validation and test")
    rows = _ok_rows(table)
    _, ax = plt.subplots(figsize=(5.5, 5))
    params = _param_columns(table)
    hue = params[0] if params else None
    sns.scatterplot(data=rows, x=valid, y=test, hue=hue, palette="viridis", s=70, ax=ax)
    both = rows[[valid, test]].to_numpy(dtype=float)
    lo, hi = float(np.nanmin(both)), float(np.nanmax(both))
    pad = 0.05 * (hi - lo or 1.0)
    ax.plot(
        [lo - pad, hi + pad], [lo - pad, hi + pad], ls="--", c="grey", lw=1, label="test = valid"
    )
    if best is not None:
        ax.scatter(
            [best[valid]],
            [best[test]],
            s=220,
            facecolors="none",
            edgecolors="red",
            lw=2,
            label="chosen on validation",
        )
    ax.set(xlabel=f"validation {test}", ylabel=f"test {test}", title="Validation against test")
    ax.legend(fontsize="small", title=hue, title_fontsize="small")
    return ax


def record_best(
    run_dir: str | os.PathLike[str],
    best: pd.Series,
    *,
    dataset: str,
    model: str = "mf",
    metric: str = "valid_rmse",
    table: pd.DataFrame | None = None,
) -> pd.Series:
    """Record the configuration chosen on validation into ``<run_dir>/metrics.json``.

    The chosen parameters go into ``params`` (``best_<name>``, plus ``selected_by``); its
    validation and test metrics into ``models["<model>_best"]``. Returns that entry without
    timings.
    """
    params_cols = _param_columns(table) if table is not None else []
    params: dict[str, Any] = {f"best_{p}": best[p] for p in params_cols}
    params["selected_by"] = _selection_column(metric)
    metrics: dict[str, Any] = {}
    for name, value in best.items():
        name = str(name)
        if name in params_cols or not _is_metric_column(name):
            continue
        if name.endswith("_ci_low") or name.endswith("_ci_high"):
            base = name.rsplit("_ci_", 1)[0]
            ci = _ci_of(best, base)
            if ci is not None:
                metrics[f"{base}_ci"] = list(ci)
            continue
        metrics[name] = value
    path = record_metrics(
        run_dir, dataset=dataset, params=params, model_name=f"{model}_best", metrics=metrics
    )
    return without_timings(json.loads(path.read_text(encoding="utf-8"))["models"][f"{model}_best"])

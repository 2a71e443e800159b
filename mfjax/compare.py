"""Compare a roster of models on one split: seeds, intervals, paired tests, timing, examples.

:func:`compare` trains every model of a roster on the same split, for one or more seeds,
evaluates each with :func:`mfjax.evaluate.evaluate` (one protocol for all: full catalogue,
training items excluded, test ratings ``>= threshold`` relevant), and reports

* ``table``: per model × metric × k, the mean over seeds, the spread across seeds
  (``seed_std``), the 95% bootstrap interval over users (the mean of the per-seed
  bounds), fit and evaluation seconds, and whether the model is external or a baseline;
* ``significance``: each model against the **best baseline** (highest ``primary`` metric)
  on per-user values (averaged over seeds, paired by user): paired t-test and Wilcoxon
  signed-rank test from :mod:`scipy.stats`, both Holm-corrected across the models compared
  for each metric;
* ``examples``: a few users' top items per model (with titles when ``metadata`` is given)
  beside ``liked``, the test items those users actually rated highly.

The default roster (``models=None``) is built lazily from the registry: our MF variants
(two optax optimizers), BPR, iALS and the baselines (random, popularity, bias-only,
item-kNN, EASE), plus ``implicit``'s ALS and BPR and Surprise's SVD when those packages
are installed (labelled external). A model whose module is not available is skipped with
a logged reason (``result.skipped``).

With explicit ratings, models that only rank (``kind != "rating"``: BPR, iALS, EASE,
item-kNN, popularity and the external implicit models) are trained on the positive
training interactions (rating ``>= threshold``, weight 1) — the usual implicit-feedback
protocol; rating models train on every rating. Every model is still evaluated with all of
its user's training items excluded. ``train_on`` overrides this.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mfjax.evaluate import Evaluation, evaluate, relevance
from mfjax.exceptions import DataError
from mfjax.interactions import Interactions
from mfjax.splits import Split

__all__ = [
    "Comparison",
    "compare",
    "default_roster",
    "holm",
    "paired_tests",
    "BASELINE_NAMES",
]

log = logging.getLogger(__name__)

#: registry names that count as baselines
BASELINE_NAMES = ("random", "popularity", "bias", "itemknn", "ease")

# roster name -> (module, registry name, hyperparameters)
_ROSTER: dict[str, tuple[str, str, dict]] = {
    "random": ("mfjax.models.baselines", "random", {}),
    "popularity": ("mfjax.models.baselines", "popularity", {}),
    "bias": ("mfjax.models.baselines", "bias", {}),
    "itemknn": ("mfjax.models.linear", "itemknn", {}),
    "ease": ("mfjax.models.linear", "ease", {}),
    "mf_adam": ("mfjax.models.mf", "mf", {"optimizer": "adam", "learning_rate": 0.003}),
    "mf_adagrad": ("mfjax.models.mf", "mf", {"optimizer": "adagrad", "learning_rate": 0.05}),
    "bpr": ("mfjax.models.bpr", "bpr", {}),
    "ials": ("mfjax.models.ials", "ials", {}),
}
_EXTERNAL: dict[str, str] = {
    "implicit_als": "ImplicitALS",
    "implicit_bpr": "ImplicitBPR",
    "surprise_svd": "SurpriseSVD",
}


# ----------------------------------------------------------------------------- roster
def _with_seed(cls: type, hyper: dict, seed: int) -> Any:
    fields = {f.name for f in dataclasses.fields(cls.Config)} if hasattr(cls, "Config") else set()
    if "seed" in fields:
        return cls(**hyper, seed=seed)
    return cls(**hyper)


def default_roster(
    names: Sequence[str] | None = None, *, external: bool = True
) -> tuple[dict[str, Callable[[int], Any]], dict[str, str]]:
    """The default models as ``{name: factory(seed) -> unfitted model}``, and the skipped.

    Args:
        names: a subset of the roster names (default: all of them), among ``random``,
            ``popularity``, ``bias``, ``itemknn``, ``ease``, ``mf_adam``, ``mf_adagrad``,
            ``bpr``, ``ials``, ``implicit_als``, ``implicit_bpr``, ``surprise_svd``.
        external: include the external peers (when their packages are installed).

    Returns:
        ``(factories, skipped)``, ``skipped`` mapping a name to the reason it is absent.

    Example:
        >>> factories, skipped = default_roster(["popularity", "bias"])
        >>> sorted(factories)
        ['bias', 'popularity']
    """
    from mfjax.models.base import MODEL_REGISTRY

    wanted = list(_ROSTER) + (list(_EXTERNAL) if external else []) if names is None else names
    unknown = [n for n in wanted if n not in _ROSTER and n not in _EXTERNAL]
    if unknown:
        raise ValueError(
            f"unknown roster name(s) {unknown}; choose from {list(_ROSTER) + list(_EXTERNAL)}"
        )
    factories: dict[str, Callable[[int], Any]] = {}
    skipped: dict[str, str] = {}
    for name in wanted:
        if name in _EXTERNAL:
            from mfjax import external as ext

            cls = getattr(ext, _EXTERNAL[name])
            reason = cls.unavailable_reason()
            if reason:
                skipped[name] = reason
                log.info("skipping %s: %s", name, reason)
                continue
            factories[name] = lambda seed, cls=cls: cls(seed=seed)
            continue
        module, reg_name, hyper = _ROSTER[name]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            skipped[name] = f"{module} is not available ({exc})"
            log.info("skipping %s: %s", name, skipped[name])
            continue
        cls = MODEL_REGISTRY.get(reg_name)
        if cls is None:
            skipped[name] = f"no model registered as {reg_name!r} in {module}"
            log.info("skipping %s: %s", name, skipped[name])
            continue
        factories[name] = lambda seed, cls=cls, hyper=hyper: _with_seed(cls, hyper, seed)
    return factories, skipped


def _as_factory(spec: Any) -> Callable[[int], Any]:
    """A seed -> unfitted model function from a factory, a class or an instance."""
    if isinstance(spec, type):
        return lambda seed: _with_seed(spec, {}, seed)
    if callable(spec) and not hasattr(spec, "fit"):
        return spec
    if hasattr(spec, "fit"):

        def factory(seed: int, spec: Any = spec) -> Any:
            model = copy.deepcopy(spec)
            config = getattr(model, "config", None)
            if dataclasses.is_dataclass(config) and "seed" in {
                f.name for f in dataclasses.fields(config)
            }:
                model.config = dataclasses.replace(config, seed=seed)
            elif hasattr(model, "seed"):
                model.seed = seed
            return model

        return factory
    raise TypeError(
        f"a roster entry must be a model, a model class or a function seed -> model; got "
        f"{type(spec).__name__}"
    )


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", type(model).__name__))


def _positives(train: Interactions, threshold: float) -> Interactions:
    sub = train.select(train.values >= threshold)
    return dataclasses.replace(sub, values=np.ones(len(sub), dtype=np.float32))


# ----------------------------------------------------------------------------- statistics
def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, capped at 1).

    The i-th smallest p-value is multiplied by ``m - i`` (i from 0), then a running
    maximum keeps the order. NaNs are left out of ``m`` and stay NaN.

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(2).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adj
    return out


def paired_tests(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Paired t-test and Wilcoxon signed-rank test of per-user values ``a`` vs ``b``.

    Returns ``n_users, mean_a, mean_b, diff, t_stat, t_p, w_stat, w_p`` (two-sided). When
    every difference is zero the p-values are 1; with fewer than two users they are NaN.
    """
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    d = a - b
    out = dict(
        n_users=int(len(d)),
        mean_a=float(a.mean()) if len(a) else np.nan,
        mean_b=float(b.mean()) if len(b) else np.nan,
        diff=float(d.mean()) if len(d) else np.nan,
        t_stat=np.nan,
        t_p=np.nan,
        w_stat=np.nan,
        w_p=np.nan,
    )
    if len(d) < 2:
        return out
    if np.all(d == 0):
        out.update(t_stat=0.0, t_p=1.0, w_stat=0.0, w_p=1.0)
        return out
    t = stats.ttest_rel(a, b)
    w = stats.wilcoxon(a, b, zero_method="wilcox")
    out.update(t_stat=float(t.statistic), t_p=float(t.pvalue))
    out.update(w_stat=float(w.statistic), w_p=float(w.pvalue))
    return out


# ----------------------------------------------------------------------------- result
@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`.

    Attributes:
        table: ``model, metric, k, mean, seed_std, ci_low, ci_high, n_users, fit_seconds,
            eval_seconds, external, baseline`` (one row per model × metric × k).
        runs: one row per model × seed: ``model, seed, fit_seconds, eval_seconds``.
        per_user: ``model, seed, user, metric, k, value``.
        significance: ``model, baseline, metric, k, n_users, mean_model, mean_baseline,
            diff, t_stat, t_p, t_p_holm, w_stat, w_p, w_p_holm, significant`` (both
            Holm-corrected p-values below ``alpha``).
        examples: ``user, model, rank, item[, title], relevant``.
        liked: ``user, item[, title], rating``: the examples' relevant test items.
        best_baseline: the baseline the tests compare against (None without baselines).
        skipped: ``{name: reason}`` for models that were not run.
        evaluations: ``{(model, seed): Evaluation}``.
        info: settings (seeds, k, primary metric, threshold, training data per model).
    """

    table: pd.DataFrame
    runs: pd.DataFrame
    per_user: pd.DataFrame
    significance: pd.DataFrame
    examples: pd.DataFrame
    liked: pd.DataFrame
    best_baseline: str | None
    skipped: dict[str, str] = field(default_factory=dict)
    evaluations: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def wide(self, k: int = 10, *, metrics: Sequence[str] | None = None) -> pd.DataFrame:
        """Models × ``metric@k`` means (rounded to 4 decimals) with fit/eval seconds."""
        t = self.table[(self.table["k"].isna()) | (self.table["k"] == k)].copy()
        t["name"] = [
            m if pd.isna(kk) else f"{m}@{int(kk)}"
            for m, kk in zip(t["metric"], t["k"], strict=True)
        ]
        if metrics is not None:
            t = t[t["metric"].isin(metrics)]
        out = t.pivot_table(index="model", columns="name", values="mean", sort=False).round(4)
        times = self.runs.groupby("model", sort=False)[["fit_seconds", "eval_seconds"]].mean()
        return out.join(times).loc[[m for m in self.info["models"] if m in out.index]]

    def to_metrics_dict(self, k: int = 10) -> dict[str, dict[str, Any]]:
        """``{model: {"precision@10": ..., "precision@10_ci": [lo, hi], ..., "fit_seconds",
        "eval_seconds", "external", "seeds"}}`` for ``metrics.json``."""
        out: dict[str, dict[str, Any]] = {}
        t = self.table[(self.table["k"].isna()) | (self.table["k"] == k)]
        for model in self.info["models"]:
            rows = t[t["model"] == model]
            if rows.empty:
                continue
            d: dict[str, Any] = {}
            for r in rows.itertuples(index=False):
                name = r.metric if pd.isna(r.k) else f"{r.metric}@{int(r.k)}"
                d[name] = None if not np.isfinite(r.mean) else float(r.mean)
                if np.isfinite(r.ci_low) and np.isfinite(r.ci_high):
                    d[f"{name}_ci"] = [float(r.ci_low), float(r.ci_high)]
                if len(self.info["seeds"]) > 1 and np.isfinite(r.seed_std):
                    d[f"{name}_seed_std"] = float(r.seed_std)
            runs = self.runs[self.runs["model"] == model]
            d["fit_seconds"] = float(runs["fit_seconds"].mean())
            d["eval_seconds"] = float(runs["eval_seconds"].mean())
            d["external"] = bool(rows["external"].iloc[0])
            d["seeds"] = len(runs)
            out[model] = d
        return out


# ----------------------------------------------------------------------------- compare
def _titles(metadata: Any) -> pd.Series | None:
    if metadata is None:
        return None
    if isinstance(metadata, pd.Series):
        return metadata
    if isinstance(metadata, Mapping):
        return pd.Series(dict(metadata))
    if isinstance(metadata, pd.DataFrame):
        if "item" in metadata.columns and "title" in metadata.columns:
            return metadata.drop_duplicates("item").set_index("item")["title"]
        raise DataError(
            f"metadata needs 'item' and 'title' columns; found {list(metadata.columns)}; "
            "rename them or pass a Series of titles indexed by item id"
        )
    raise DataError(
        f"metadata must be a DataFrame, a Series or a dict; got {type(metadata).__name__}"
    )


def compare(
    models: Mapping[str, Any] | None,
    split: Split,
    *,
    seeds: Sequence[int] = (0,),
    k: Sequence[int] | int = (5, 10, 20),
    metrics: Sequence[str] | None = None,
    baseline: str | Sequence[str] | None = None,
    primary: str = "ndcg@10",
    threshold: float | None = 4.0,
    train_on: str | Mapping[str, str] = "auto",
    metadata: Any = None,
    n_examples: int = 3,
    example_k: int = 5,
    alpha: float = 0.05,
    n_boot: int = 1000,
    external: bool = True,
    progress: bool = False,
) -> Comparison:
    """Train and evaluate several models on one split (see the module docstring).

    Args:
        models: ``{name: model | model class | function seed -> model}``; None for the
            default roster (:func:`default_roster`).
        split: the split every model trains and is evaluated on.
        seeds: model seeds; each model is trained once per seed.
        k: cut-offs of the ranking metrics.
        metrics: metric names for :func:`mfjax.evaluate.evaluate` (default: its defaults).
        baseline: name(s) of the models that count as baselines (default: those whose
            registry name is in :data:`BASELINE_NAMES`). The best of them by ``primary`` is
            the reference of the paired tests.
        primary: ``"metric@k"`` (or ``"auc"``) that picks the best baseline.
        threshold: relevance threshold (and the positives' threshold for training).
        train_on: ``"auto"``, ``"all"`` or ``"positives"``, or a per-model mapping.
        metadata: item titles: a DataFrame with ``item`` and ``title`` columns, a Series or
            a dict; the examples show them.
        n_examples, example_k: users shown in the examples and their list length.
        alpha: significance level of the ``significant`` column.
        n_boot: bootstrap resamples per evaluation.
        external: include external peers in the default roster.
        progress: show a ``tqdm`` bar over the runs.

    Returns:
        A :class:`Comparison`.

    Example:
        >>> # res = compare(None, split, seeds=(0, 1), metadata=titles)
        >>> # res.wide(10); res.significance; res.to_metrics_dict(10)
    """
    if not isinstance(split, Split):
        raise DataError(f"compare() takes a mfjax Split; got {type(split).__name__}")
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    ks = (int(k),) if np.ndim(k) == 0 else tuple(int(x) for x in k)
    p_metric, _, p_k = primary.partition("@")
    p_k = int(p_k) if p_k else None
    if p_k is not None and p_k not in ks:
        ks = tuple(sorted({*ks, p_k}))
    from mfjax.evaluate import DEFAULT_METRICS, GLOBAL_METRICS, RANKING_METRICS

    known = RANKING_METRICS + GLOBAL_METRICS
    if p_metric not in known or p_metric not in (metrics or DEFAULT_METRICS):
        raise ValueError(
            f"primary must name a computed metric, like 'ndcg@10' or 'auc'; got {primary!r} "
            f"(metrics computed: {list(metrics or DEFAULT_METRICS)})"
        )
    choices = train_on.values() if isinstance(train_on, Mapping) else [train_on]
    bad = [c for c in choices if c not in ("auto", "all", "positives")]
    if bad:
        raise ValueError(f"train_on must be 'auto', 'all' or 'positives'; got {bad}")
    titles = _titles(metadata)  # a bad metadata frame fails before any training
    skipped: dict[str, str] = {}
    if models is None:
        factories, skipped = default_roster(external=external)
    else:
        if not models:
            raise ValueError("models is empty; pass {name: model} or None for the default roster")
        factories = {str(n): _as_factory(spec) for n, spec in models.items()}
    _, _, used_threshold = relevance(split, threshold=threshold)
    explicit = used_threshold is not None
    train_pos = _positives(split.train, used_threshold) if explicit else split.train

    runs, evaluations, per_user_frames, summaries = [], {}, [], []
    kinds: dict[str, dict] = {}
    todo = [(name, seed) for name in factories for seed in seeds]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="compare")
    for name, seed in todo:
        if name in skipped:
            continue
        model = factories[name](seed)
        choice = train_on.get(name, "auto") if isinstance(train_on, Mapping) else train_on
        is_rating = getattr(model, "kind", "ranking") == "rating"
        use_pos = explicit and (choice == "positives" or (choice == "auto" and not is_rating))
        data = train_pos if use_pos else split.train
        try:
            t0 = time.perf_counter()
            model.fit(data)
            fit_s = time.perf_counter() - t0
            if use_pos and getattr(model, "external", False):
                # a peer filters with what it was trained on; exclude every training item
                model.seen_ = split.train.csr(binary=True)
            ev = evaluate(
                model, split, k=ks, metrics=metrics, threshold=threshold, seed=seed, n_boot=n_boot
            )
        except Exception as exc:  # one failing model must not sink the comparison
            skipped[name] = f"{type(exc).__name__}: {exc}"
            log.warning("skipping %s (seed %d): %s", name, seed, skipped[name])
            if bar is not None:
                bar.update(1)
            continue
        fit_s = float(getattr(model, "fit_seconds_", None) or fit_s)
        kinds[name] = dict(
            registry=_model_name(model),
            external=bool(getattr(model, "external", False)),
            trained_on="positives" if use_pos else "all",
        )
        evaluations[(name, seed)] = ev
        runs.append(dict(model=name, seed=seed, fit_seconds=fit_s, eval_seconds=ev.info["seconds"]))
        per_user_frames.append((name, ev.per_user.assign(model=name, seed=seed)))
        summaries.append((name, ev.summary.assign(model=name, seed=seed)))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    # a model that failed on any seed is reported as skipped, not half-run
    done = [n for n in factories if n not in skipped and all((n, s) in evaluations for s in seeds)]
    if not done:
        raise DataError(f"no model could be trained and evaluated; reasons: {skipped}")
    runs = [r for r in runs if r["model"] in done]
    per_user_frames = [f for n, f in per_user_frames if n in done]
    summaries = [f for n, f in summaries if n in done]
    evaluations = {key: ev for key, ev in evaluations.items() if key[0] in done}

    runs_df = pd.DataFrame(runs)
    summ = pd.concat(summaries, ignore_index=True)
    per_user = pd.concat(per_user_frames, ignore_index=True)[
        ["model", "seed", "user", "metric", "k", "value"]
    ]
    table = _table(summ, runs_df, kinds, done, baseline)
    base_names = sorted(set(table.loc[table["baseline"], "model"]))
    best = _best(table, base_names, p_metric, p_k)
    sig = _significance(per_user, done, best, p_k if p_k is not None else ks[0], alpha)
    examples, liked = _examples(
        evaluations, split, done, seeds[0], n_examples, example_k, titles, threshold, seed=seeds[0]
    )
    info = dict(
        models=done,
        seeds=list(seeds),
        k=list(ks),
        primary=primary,
        threshold=used_threshold,
        trained_on={n: kinds[n]["trained_on"] for n in done},
        alpha=alpha,
    )
    return Comparison(
        table=table,
        runs=runs_df,
        per_user=per_user,
        significance=sig,
        examples=examples,
        liked=liked,
        best_baseline=best,
        skipped=skipped,
        evaluations=evaluations,
        info=info,
    )


def _table(
    summ: pd.DataFrame,
    runs: pd.DataFrame,
    kinds: dict[str, dict],
    order: list[str],
    baseline: str | Sequence[str] | None,
) -> pd.DataFrame:
    keys = ["model", "metric", "k"]
    summ = summ.copy()
    summ["k_key"] = summ["k"].fillna(-1)
    g = summ.groupby(["model", "metric", "k_key"], sort=False)
    table = g.agg(
        mean=("mean", "mean"),
        seed_std=("mean", _seed_std),
        ci_low=("ci_low", "mean"),
        ci_high=("ci_high", "mean"),
        n_users=("n_users", "max"),
    ).reset_index()
    table["k"] = table["k_key"].where(table["k_key"] >= 0).astype("Int64")
    table = table.drop(columns="k_key")
    times = runs.groupby("model")[["fit_seconds", "eval_seconds"]].mean()
    table = table.join(times, on="model")
    table["external"] = table["model"].map(lambda m: kinds[m]["external"])
    if baseline is None:
        is_base = {m: kinds[m]["registry"] in BASELINE_NAMES for m in order}
    else:
        names = {baseline} if isinstance(baseline, str) else set(baseline)
        missing = names - set(order)
        if missing:
            raise ValueError(f"baseline(s) {sorted(missing)} are not among the models run: {order}")
        is_base = {m: m in names for m in order}
    table["baseline"] = table["model"].map(is_base)
    table["model"] = pd.Categorical(table["model"], categories=order, ordered=True)
    table = table.sort_values(keys, kind="stable").reset_index(drop=True)
    table["model"] = table["model"].astype(str)
    return table[
        keys
        + ["mean", "seed_std", "ci_low", "ci_high", "n_users", "fit_seconds", "eval_seconds"]
        + ["external", "baseline"]
    ]


def _seed_std(x: pd.Series) -> float:
    """Sample standard deviation across seeds; exactly 0 when every seed agrees."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return np.nan
    return 0.0 if np.all(x == x[0]) else float(np.std(x, ddof=1))


def _best(table: pd.DataFrame, bases: list[str], metric: str, k: int | None) -> str | None:
    if not bases:
        return None
    sel = table["model"].isin(bases) & (table["metric"] == metric)
    sel &= table["k"].isna() if k is None else (table["k"] == k)
    rows = table[sel]
    if rows.empty:
        raise ValueError(f"primary metric {metric}@{k} was not computed; add it to metrics")
    lower_better = metric in ("rmse", "mae")
    rows = rows.sort_values("mean", ascending=lower_better, kind="stable")
    return str(rows["model"].iloc[0])


_SIG_METRICS = ("precision", "recall", "map", "ndcg", "hit_rate", "mrr", "auc")


def _significance(
    per_user: pd.DataFrame, order: list[str], best: str | None, k: int, alpha: float
) -> pd.DataFrame:
    cols = [
        "model", "baseline", "metric", "k", "n_users", "mean_model", "mean_baseline", "diff",
        "t_stat", "t_p", "t_p_holm", "w_stat", "w_p", "w_p_holm", "significant",
    ]  # fmt: skip
    if best is None:
        return pd.DataFrame(columns=cols)
    pu = per_user[per_user["metric"].isin(_SIG_METRICS)]
    pu = pu[(pu["k"] == k) | pu["k"].isna()]
    # per-user value averaged over seeds
    avg = pu.groupby(["model", "metric", "user"], sort=False, dropna=False)["value"].mean()
    rows = []
    for metric in [m for m in _SIG_METRICS if m in set(pu["metric"])]:
        ref = avg.loc[best, metric] if (best, metric) in avg.index.droplevel(2) else None
        if ref is None:
            continue
        block = []
        for model in order:
            if model == best or (model, metric) not in avg.index.droplevel(2):
                continue
            mine = avg.loc[model, metric]
            both = mine.index.intersection(ref.index)
            res = paired_tests(mine.loc[both].to_numpy(), ref.loc[both].to_numpy())
            block.append(
                dict(
                    model=model,
                    baseline=best,
                    metric=metric,
                    k=None if metric == "auc" else k,
                    n_users=res["n_users"],
                    mean_model=res["mean_a"],
                    mean_baseline=res["mean_b"],
                    diff=res["diff"],
                    t_stat=res["t_stat"],
                    t_p=res["t_p"],
                    w_stat=res["w_stat"],
                    w_p=res["w_p"],
                )
            )
        if block:
            t_adj = holm([b["t_p"] for b in block])
            w_adj = holm([b["w_p"] for b in block])
            for b, ta, wa in zip(block, t_adj, w_adj, strict=True):
                b.update(t_p_holm=ta, w_p_holm=wa, significant=bool(ta < alpha and wa < alpha))
            rows.extend(block)
    out = pd.DataFrame(rows, columns=cols)
    out["k"] = out["k"].astype("Int64")
    return out


def _examples(
    evaluations: dict[tuple[str, int], Evaluation],
    split: Split,
    order: list[str],
    seed0: int,
    n_examples: int,
    example_k: int,
    titles: pd.Series | None,
    threshold: float | None,
    *,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    ex_cols = ["user", "model", "rank", "item"] + (["title"] if titles is not None else [])
    ex_cols.append("relevant")
    liked_cols = ["user", "item"] + (["title"] if titles is not None else []) + ["rating"]
    first = evaluations.get((order[0], seed0))
    if first is None or n_examples <= 0 or len(first.users) == 0:
        return pd.DataFrame(columns=ex_cols), pd.DataFrame(columns=liked_cols)
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(first.users, size=min(n_examples, len(first.users)), replace=False))
    binary, _, _ = relevance(split, threshold=threshold)
    item_ids = split.item_map.values
    rows = []
    for model in order:
        ev = evaluations.get((model, seed0))
        if ev is None:
            continue
        pos = {u: i for i, u in enumerate(ev.users)}
        for u in chosen:
            if u not in pos:
                continue
            rec = ev.recommended[pos[u], :example_k]
            rel = set(binary[u].indices)
            for r, item in enumerate(rec, start=1):
                if item < 0:
                    continue
                rows.append(
                    dict(
                        user=split.user_map.values[u],
                        model=model,
                        rank=r,
                        item=item_ids[item],
                        relevant=bool(item in rel),
                    )
                )
    examples = pd.DataFrame(rows, columns=[c for c in ex_cols if c != "title"])
    test = split.test
    sel = np.isin(test.users, chosen)
    liked = pd.DataFrame(
        {
            "user": split.user_map.values[test.users[sel]],
            "item": item_ids[test.items[sel]],
            "rating": test.values[sel],
            "_code": test.items[sel],
            "_u": test.users[sel],
        }
    )
    liked = liked[[binary[u, c] > 0 for u, c in zip(liked["_u"], liked["_code"], strict=True)]]
    liked = liked.drop(columns=["_code", "_u"]).sort_values(
        ["user", "rating"], ascending=[True, False]
    )
    if titles is not None:
        examples["title"] = examples["item"].map(titles).fillna("")
        liked["title"] = liked["item"].map(titles).fillna("")
    return examples[ex_cols].reset_index(drop=True), liked[liked_cols].reset_index(drop=True)

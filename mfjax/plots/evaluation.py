"""Figures of evaluations and comparisons: metric@K curves, bars with intervals, per-user
distributions by user activity, and fit time against quality.

Each function takes an :class:`~mfjax.evaluate.Evaluation` (one model) or a
:class:`~mfjax.compare.Comparison` (several), draws on ``ax`` (a new figure when None) and
returns the matplotlib Axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

__all__ = [
    "metric_at_k_plot",
    "metric_bars_plot",
    "per_user_activity_plot",
    "time_quality_plot",
]


def _ax(ax: Axes | None, size: tuple[float, float] = (6.0, 3.8)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def _table(result: Any, model: str = "model") -> pd.DataFrame:
    """A ``model, metric, k, mean, ci_low, ci_high`` frame from an Evaluation or Comparison."""
    if hasattr(result, "table"):
        return result.table.copy()
    if hasattr(result, "summary"):
        return result.summary.assign(model=model)
    raise TypeError(f"expected an Evaluation or a Comparison; got {type(result).__name__}")


def _per_user(result: Any, model: str = "model") -> pd.DataFrame:
    if hasattr(result, "table"):
        pu = result.per_user
        return (
            pu.groupby(["model", "user", "metric", "k"], dropna=False, sort=False)["value"]
            .mean()
            .reset_index()
        )  # averaged over seeds
    return result.per_user.assign(model=model)


def metric_at_k_plot(
    result: Any, metric: str = "ndcg", *, ax: Axes | None = None, model: str = "model"
) -> Axes:
    """``metric@K`` against K, one line per model, with its 95% interval as a band.

    Example:
        >>> # metric_at_k_plot(comparison, "recall")
    """
    t = _table(result, model)
    t = t[(t["metric"] == metric) & t["k"].notna()]
    if t.empty:
        raise ValueError(
            f"no {metric}@K values to plot; evaluate with metrics including {metric!r}"
        )
    ax = _ax(ax)
    for i, (name, g) in enumerate(t.groupby("model", sort=False)):
        g = g.sort_values("k")
        ks = g["k"].astype(int).to_numpy()
        ax.plot(ks, g["mean"], marker="o", label=name, color=f"C{i % 10}")
        ax.fill_between(ks, g["ci_low"], g["ci_high"], alpha=0.15, color=f"C{i % 10}")
    ax.set_xlabel("K")
    ax.set_ylabel(f"{metric}@K")
    ax.set_xticks(sorted(t["k"].astype(int).unique()))
    ax.legend(fontsize="small", ncol=2)
    ax.set_title(f"{metric}@K (band: 95% bootstrap interval)")
    return ax


def metric_bars_plot(
    result: Any,
    metrics: Sequence[str] = ("precision", "recall", "map", "ndcg"),
    k: int = 10,
    *,
    ax: Axes | None = None,
    model: str = "model",
) -> Axes:
    """Grouped bars of ``metric@k`` per model with 95% bootstrap intervals as error bars.

    External peers are hatched.

    Example:
        >>> # metric_bars_plot(comparison, k=10)
    """
    t = _table(result, model)
    t = t[t["metric"].isin(metrics) & ((t["k"] == k) | t["k"].isna())]
    if t.empty:
        raise ValueError(f"none of {list(metrics)} at k={k} in this result")
    ax = _ax(ax, (max(6.0, 1.2 * t["model"].nunique() + 2), 3.8))
    models = list(dict.fromkeys(t["model"]))
    mets = [m for m in metrics if m in set(t["metric"])]
    width = 0.8 / max(1, len(mets))
    x = np.arange(len(models))
    ext = {}
    if "external" in t.columns:
        ext = t.groupby("model")["external"].first().to_dict()
    for j, m in enumerate(mets):
        rows = t[t["metric"] == m].set_index("model").reindex(models)
        mean = rows["mean"].to_numpy(dtype=float)
        err = np.vstack(
            [mean - rows["ci_low"].to_numpy(float), rows["ci_high"].to_numpy(float) - mean]
        )
        bars = ax.bar(x + (j - (len(mets) - 1) / 2) * width, mean, width, label=f"{m}@{k}",
                      yerr=np.nan_to_num(err), capsize=2, color=f"C{j}")  # fmt: skip
        for bar, name in zip(bars, models, strict=True):
            if ext.get(name):
                bar.set_hatch("//")
    ax.set_xticks(x)
    ax.set_xticklabels(models, rotation=30, ha="right")
    ax.set_ylabel("mean over users")
    ax.legend(fontsize="small", ncol=len(mets))
    ax.set_title(
        f"@{k} with 95% bootstrap intervals" + (" (hatched: external)" if any(ext.values()) else "")
    )
    return ax


def per_user_activity_plot(
    result: Any,
    split: Any,
    metric: str = "ndcg",
    k: int = 10,
    *,
    bins: int = 4,
    ax: Axes | None = None,
    model: str = "model",
) -> Axes:
    """Distribution of a per-user metric by user activity (training interactions, in
    quantile bins), one box per model and bin: who does the model serve well?

    Example:
        >>> # per_user_activity_plot(comparison, split, "ndcg", 10)
    """
    pu = _per_user(result, model)
    pu = pu[(pu["metric"] == metric) & ((pu["k"] == k) | pu["k"].isna())]
    if pu.empty:
        raise ValueError(f"no per-user {metric}@{k} values in this result")
    counts = pd.Series(split.train.user_counts(), index=split.user_map.values)
    act = counts.reindex(pu["user"].to_numpy()).to_numpy()
    labels = pd.qcut(act, q=bins, duplicates="drop")
    pu = pu.assign(activity=[f"{int(np.ceil(iv.left))}–{int(iv.right)}" for iv in labels])
    order = [f"{int(np.ceil(iv.left))}–{int(iv.right)}" for iv in labels.categories]
    ax = _ax(ax, (7.0, 3.8))
    sns.boxplot(data=pu, x="activity", y="value", hue="model", order=order, showfliers=False, ax=ax)
    ax.set_xlabel("training interactions per user (quantile bins)")
    ax.set_ylabel(f"{metric}@{k}" if metric not in ("auc", "rmse", "mae") else metric)
    ax.legend(fontsize="small", ncol=2)
    ax.set_title(f"per-user {metric} by user activity")
    return ax


def time_quality_plot(comparison: Any, metric: str = "ndcg@10", *, ax: Axes | None = None) -> Axes:
    """Fit seconds (log scale) against a quality metric, one labelled point per model;
    external peers are drawn as squares, error bars show the 95% interval.

    Example:
        >>> # time_quality_plot(comparison, "ndcg@10")
    """
    if not hasattr(comparison, "table"):
        raise TypeError(f"expected a Comparison; got {type(comparison).__name__}")
    name, _, kk = metric.partition("@")
    t = comparison.table
    sel = (t["metric"] == name) & (t["k"].isna() if not kk else (t["k"] == int(kk)))
    t = t[sel]
    if t.empty:
        raise ValueError(f"no {metric} in this comparison")
    ax = _ax(ax)
    for i, r in enumerate(t.itertuples(index=False)):
        ax.errorbar(
            max(r.fit_seconds, 1e-3), r.mean,
            yerr=[[r.mean - r.ci_low], [r.ci_high - r.mean]],
            fmt="s" if r.external else "o", color=f"C{i % 10}", capsize=2,
        )  # fmt: skip
        ax.annotate(r.model, (max(r.fit_seconds, 1e-3), r.mean), fontsize="small",
                    xytext=(4, 3), textcoords="offset points")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("fit seconds (log scale)")
    ax.set_ylabel(metric)
    ax.set_title("time vs quality (squares: external)")
    return ax

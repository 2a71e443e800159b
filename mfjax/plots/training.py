"""Learning curves from ``model.history_``: training loss and validation metrics per epoch.

Example:
    >>> # from mfjax.plots import learning_curves_plot
    >>> # learning_curves_plot(model)            # one model
    >>> # learning_curves_plot({"mf": a, "bpr": b})  # several, one line each
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

__all__ = ["learning_curves_plot", "history_frame"]


def history_frame(models: Any) -> pd.DataFrame:
    """A tidy ``model, epoch, series, value`` frame from one model, a history DataFrame, or a
    mapping ``name -> model or history``.

    ``series`` is ``loss`` or a validation column (``valid_rmse``, ``valid_ndcg@10``…).
    """
    if isinstance(models, Mapping):
        items = list(models.items())
    else:
        items = [(getattr(models, "name", "model"), models)]
    parts = []
    for name, m in items:
        hist = m if isinstance(m, pd.DataFrame) else getattr(m, "history_", None)
        if hist is None or not isinstance(hist, pd.DataFrame):
            raise TypeError(
                f"'{name}' has no history_ DataFrame (fit it first, or pass the history)"
            )
        if len(hist) == 0:
            continue
        if "epoch" not in hist:
            raise ValueError(
                f"the history of '{name}' has no 'epoch' column; found {list(hist.columns)}"
            )
        cols = [c for c in hist.columns if c == "loss" or c.startswith("valid_")]
        long = hist.melt(id_vars="epoch", value_vars=cols, var_name="series", value_name="value")
        parts.append(long.dropna(subset=["value"]).assign(model=name))
    if not parts:
        return pd.DataFrame(columns=["model", "epoch", "series", "value"])
    return pd.concat(parts, ignore_index=True)[["model", "epoch", "series", "value"]]


def learning_curves_plot(
    models: Any, *, best_epoch: bool = True, height: float = 3.2
) -> plt.Figure:
    """Training loss and validation metric(s) against epochs, one panel per series.

    Args:
        models: a fitted model, a history DataFrame, or a mapping ``name -> model/history``.
        best_epoch: mark each model's ``best_epoch_`` (set by early stopping) with a dotted line.
        height: panel height in inches.

    Returns:
        The matplotlib Figure (one Axes per series, shared x).
    """
    tidy = history_frame(models)
    if tidy.empty:
        raise ValueError("nothing to plot: the history is empty (models without epochs have none)")
    series = list(dict.fromkeys(tidy["series"]))
    fig, axes = plt.subplots(1, len(series), figsize=(4.2 * len(series), height), squeeze=False)
    for ax, s in zip(axes[0], series, strict=True):
        sub = tidy[tidy["series"] == s]
        sns.lineplot(data=sub, x="epoch", y="value", hue="model", marker="o", markersize=3, ax=ax)
        ax.set_title(s)
        ax.set_ylabel(s.replace("valid_", "validation "))
        if (
            s == "loss"
            and (sub["value"] > 0).all()
            and sub["value"].max() / sub["value"].min() > 20
        ):
            ax.set_yscale("log")
        if best_epoch:
            marks = models.items() if isinstance(models, Mapping) else [("model", models)]
            for _, m in marks:
                e = getattr(m, "best_epoch_", None)
                if e is not None and np.isfinite(e):
                    ax.axvline(e, linestyle=":", color="grey", linewidth=1)
        if ax.get_legend() is not None and sub["model"].nunique() < 2:
            ax.get_legend().remove()
    fig.tight_layout()
    return fig

"""Figures of a dataset's shape: rating distribution, item-popularity long tail, user activity.

Each function takes a raw frame (``user, item[, rating]``) or
:class:`~mfjax.interactions.Interactions`, draws on ``ax`` (a new figure when None) and
returns the matplotlib Axes; :func:`data_summary_figure` puts the three side by side and
returns the Figure.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "data_summary_figure",
    "item_popularity_plot",
    "rating_distribution_plot",
    "user_activity_plot",
]


def _frame(data: Any) -> pd.DataFrame:
    from mfjax.interactions import Interactions

    if isinstance(data, Interactions):
        return data.to_frame()
    if isinstance(data, pd.DataFrame):
        return data
    raise TypeError(f"expected a DataFrame or Interactions; got {type(data).__name__}")


def _ax(ax: Axes | None, size: tuple[float, float] = (5.0, 3.5)) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=size)
    return ax


def rating_distribution_plot(data: Any, *, ax: Axes | None = None) -> Axes:
    """Bar chart of how many interactions have each rating value (a histogram when there
    are more than 20 distinct values).

    Example:
        >>> ax = rating_distribution_plot(pd.DataFrame({"user": [1, 2], "item": [1, 1],
        ...                                             "rating": [4.0, 5.0]}))
        >>> [float(p.get_height()) for p in ax.patches]
        [1.0, 1.0]
    """
    df = _frame(data)
    ax = _ax(ax)
    r = df["rating"].to_numpy(dtype=np.float64) if "rating" in df.columns else np.ones(len(df))
    vals, counts = np.unique(r, return_counts=True)
    if len(vals) <= 20:
        sns.barplot(x=[f"{v:g}" for v in vals], y=counts.astype(float), color="C0", ax=ax)
    else:
        sns.histplot(x=r, bins=30, color="C0", ax=ax)
    ax.set_xlabel("rating")
    ax.set_ylabel("interactions")
    ax.set_title(f"Rating distribution (mean {r.mean():.2f})")
    return ax


def item_popularity_plot(data: Any, *, ax: Axes | None = None, log: bool = True) -> Axes:
    """The long tail: interactions per item, items sorted from most to least popular.

    The title gives the share of interactions on the 10 % most popular items.
    """
    df = _frame(data)
    ax = _ax(ax)
    counts = np.sort(df.groupby("item", sort=False).size().to_numpy())[::-1]
    x = np.arange(1, len(counts) + 1)
    sns.lineplot(x=x, y=counts, ax=ax, color="C1", drawstyle="steps-post")
    ax.fill_between(x, counts, step="post", alpha=0.3, color="C1")
    if log:
        ax.set_yscale("log")
    top = counts[: max(1, int(np.ceil(0.1 * len(counts))))].sum() / counts.sum()
    ax.set_xlabel("item rank by popularity")
    ax.set_ylabel("interactions per item")
    ax.set_title(f"Item popularity: top 10% of items hold {top:.0%}")
    return ax


def user_activity_plot(data: Any, *, ax: Axes | None = None, log: bool = True) -> Axes:
    """Histogram of interactions per user (log-spaced bins by default)."""
    df = _frame(data)
    ax = _ax(ax)
    counts = df.groupby("user", sort=False).size().to_numpy()
    sns.histplot(x=counts, bins=30, log_scale=log, color="C2", ax=ax)
    ax.set_xlabel("interactions per user")
    ax.set_ylabel("users")
    ax.set_title(f"User activity (median {np.median(counts):g})")
    return ax


def data_summary_figure(data: Any, *, title: str | None = None) -> Figure:
    """Rating distribution, item long tail and user activity side by side.

    Example:
        >>> from mfjax.datasets import synthetic
        >>> fig = data_summary_figure(synthetic(preset="small"))
        >>> len(fig.axes)
        3
    """
    df = _frame(data)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    rating_distribution_plot(df, ax=axes[0])
    item_popularity_plot(df, ax=axes[1])
    user_activity_plot(df, ax=axes[2])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig

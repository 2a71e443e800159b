"""Seaborn figures used by the notebooks."""

from mfjax.plots.data import *  # noqa: F403

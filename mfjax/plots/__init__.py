"""Seaborn figures used by the notebooks."""

from mfjax.plots.data import *  # noqa: F403
from mfjax.plots.evaluation import *  # noqa: F403
from mfjax.plots.training import *  # noqa: F403

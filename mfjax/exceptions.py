"""Exceptions raised by mfjax. Each message says what went wrong and what to do."""

from __future__ import annotations


class MfjaxError(Exception):
    """Base class of mfjax's own errors."""


class DataError(MfjaxError, ValueError):
    """Bad input data: names the file, column or row, and what to do about it."""


class ModelFitError(MfjaxError, RuntimeError):
    """Training diverged or failed; the message names the epoch and a remedy."""


class NotFittedError(MfjaxError, RuntimeError):
    """A model was used before `fit` (or `load`)."""


class UnknownIdError(MfjaxError, KeyError):
    """A user or item id that the model never saw in training."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""

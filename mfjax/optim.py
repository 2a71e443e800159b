"""Optimizers by name and learning-rate schedules, as optax transformations.

Every training model takes ``optimizer`` (a name below, or any
``optax.GradientTransformation``), ``learning_rate`` and ``schedule``. The engine
(:mod:`mfjax.train`) applies the transformation to the embedding rows a minibatch touches
only, keeping per-row optimizer state (see :func:`mfjax.train.train_epoch`).

Example:
    >>> tx = make_optimizer("adam", learning_rate=0.01, schedule="cosine", total_steps=100)
    >>> import jax.numpy as jnp
    >>> state = tx.init(jnp.zeros(3))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import optax

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "make_optimizer",
    "make_schedule",
    "check_optimizer",
    "rowwise_adagrad",
]


class RowwiseAdagradState(NamedTuple):
    """State of :func:`rowwise_adagrad`: one accumulator per row of each parameter."""

    sum_of_squares: Any


def rowwise_adagrad(
    learning_rate: float | optax.Schedule,
    *,
    initial_accumulator_value: float = 0.1,
    eps: float = 1e-7,
) -> optax.GradientTransformation:
    """Row-wise Adagrad: Adagrad with one accumulator per embedding row, not per coordinate.

    For a parameter table ``W`` (rows first) and gradient ``G``, with ``s`` one scalar per
    row (initially ``initial_accumulator_value``)::

        s[r]  += mean_j G[r, j]**2
        W[r]  -= lr(t) * G[r] / (sqrt(s[r]) + eps)

    This is the optimizer that embedding-table systems use (FBGEMM's and TorchRec's
    ``rowwise_adagrad``, the default for DLRM's embedding tables): the per-row state is
    ``1 / k`` of Adagrad's, and because the step is linear in the gradient once the row's
    accumulator is known, :mod:`mfjax.train` applies it to minibatches with one scatter-add
    per table, almost as cheap as plain SGD. A 1-D parameter is treated as a column (one
    accumulator per entry, i.e. plain Adagrad).

    In the sparse engine every *occurrence* of a row in a minibatch adds its own
    ``mean(g**2)`` to the accumulator (per-example accumulation, as if the examples were
    processed one by one); this transformation sees one gradient per step, so the two agree
    whenever a row occurs at most once per minibatch.

    Example:
        >>> import jax.numpy as jnp
        >>> tx = rowwise_adagrad(0.1)
        >>> st = tx.init(jnp.zeros((3, 2)))
        >>> u, st = tx.update(jnp.ones((3, 2)), st)
        >>> round(float(u[0, 0]), 4)  # -0.1 / sqrt(0.1 + 1)
        -0.0953
    """
    import jax
    import jax.numpy as jnp

    schedule = learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate)

    def init_fn(params: Any) -> tuple:
        acc = jax.tree_util.tree_map(
            lambda p: jnp.full(p.shape[:1], initial_accumulator_value, jnp.float32), params
        )
        return (RowwiseAdagradState(acc), optax.ScaleByScheduleState(jnp.zeros([], jnp.int32)))

    def update_fn(updates: Any, state: tuple, params: Any = None) -> tuple:
        del params
        acc_state, count_state = state
        lr = schedule(count_state.count)

        def row_sq(g: Any) -> Any:
            return jnp.mean(jnp.reshape(g * g, (g.shape[0], -1)), axis=1) if g.ndim > 1 else g * g

        acc = jax.tree_util.tree_map(lambda s, g: s + row_sq(g), acc_state.sum_of_squares, updates)
        new = jax.tree_util.tree_map(
            lambda g, s: (-lr / (jnp.sqrt(s) + eps)).reshape((-1,) + (1,) * (g.ndim - 1)) * g,
            updates,
            acc,
        )
        count = optax.safe_int32_increment(count_state.count)
        return new, (RowwiseAdagradState(acc), optax.ScaleByScheduleState(count))

    return optax.GradientTransformation(init_fn, update_fn)


#: optimizer names accepted everywhere, with the optax constructor behind each
OPTIMIZERS: dict[str, Callable[..., optax.GradientTransformation]] = {
    "sgd": optax.sgd,
    "momentum": lambda learning_rate, **kw: optax.sgd(
        learning_rate, momentum=kw.pop("momentum", 0.9), **kw
    ),
    "nesterov": lambda learning_rate, **kw: optax.sgd(
        learning_rate, momentum=kw.pop("momentum", 0.9), nesterov=True, **kw
    ),
    "adagrad": optax.adagrad,
    "rowwise_adagrad": rowwise_adagrad,
    "rmsprop": optax.rmsprop,
    "adam": optax.adam,
    "adamw": optax.adamw,
    "adamax": optax.adamax,
    "lion": optax.lion,
    "yogi": optax.yogi,
}

#: learning-rate schedules by name (``total_steps`` = epochs × minibatches per epoch)
SCHEDULES = ("constant", "linear", "cosine", "exponential", "warmup_cosine")


def make_schedule(
    learning_rate: float,
    schedule: str = "constant",
    *,
    total_steps: int,
    warmup_steps: int = 0,
    end_factor: float = 0.0,
) -> optax.Schedule:
    """A learning-rate schedule (a function of the step count).

    Args:
        learning_rate: peak (initial) learning rate.
        schedule: ``'constant'``, ``'linear'`` (to ``end_factor × lr``), ``'cosine'``
            (cosine decay to ``end_factor × lr``), ``'exponential'`` (× ``end_factor``
            over the run, or × 0.01 when ``end_factor`` is 0) or ``'warmup_cosine'``.
        total_steps: number of optimizer steps in the whole run.
        warmup_steps: linear warm-up steps for ``'warmup_cosine'``.
        end_factor: final learning rate as a fraction of the peak.

    Example:
        >>> s = make_schedule(0.1, "linear", total_steps=10)
        >>> round(float(s(5)), 3)
        0.05
    """
    check_schedule(schedule)
    total_steps = max(1, int(total_steps))
    lr = float(learning_rate)
    if schedule == "constant":
        return optax.constant_schedule(lr)
    if schedule == "linear":
        return optax.linear_schedule(lr, lr * end_factor, total_steps)
    if schedule == "cosine":
        return optax.cosine_decay_schedule(lr, total_steps, alpha=end_factor)
    if schedule == "exponential":
        return optax.exponential_decay(lr, total_steps, end_factor or 0.01)
    return optax.warmup_cosine_decay_schedule(
        0.0,
        lr,
        max(1, int(warmup_steps) or total_steps // 20),
        total_steps,
        end_value=lr * end_factor,
    )


def check_schedule(schedule: str) -> None:
    """Raise ``ValueError`` naming ``schedule`` unless it is a known schedule name."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}; got {schedule!r}")


def check_optimizer(optimizer: Any) -> None:
    """Raise ``ValueError`` naming ``optimizer`` unless it is a known name or a transformation."""
    if isinstance(optimizer, optax.GradientTransformation):
        return
    if not isinstance(optimizer, str) or optimizer not in OPTIMIZERS:
        raise ValueError(
            f"optimizer must be one of {sorted(OPTIMIZERS)} or an optax.GradientTransformation; "
            f"got {optimizer!r}"
        )


def make_optimizer(
    optimizer: str | optax.GradientTransformation,
    *,
    learning_rate: float,
    schedule: str = "constant",
    total_steps: int = 1,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """An optax transformation from a name (with a schedule) or a ready transformation.

    A ready ``GradientTransformation`` is returned as is (``learning_rate`` and
    ``schedule`` are then its own business).

    Example:
        >>> tx = make_optimizer("sgd", learning_rate=0.005)
        >>> tx2 = make_optimizer(optax.adagrad(0.1), learning_rate=0.0)
    """
    check_optimizer(optimizer)
    if isinstance(optimizer, optax.GradientTransformation):
        return optimizer
    lr = make_schedule(learning_rate, schedule, total_steps=total_steps)
    return OPTIMIZERS[optimizer](lr, **kwargs)

"""The training engine: one jitted ``lax.scan`` per epoch, sparse row updates, a shared loop.

Functional core
---------------
A model describes itself with an :class:`EngineSpec` (hashable, static under ``jit``):

* ``loss_fn(rows, batch, aux, hyper) -> per_example_loss[b]`` — a pure module-level
  function of the embedding rows gathered for one minibatch (``rows[gather_name]``), the
  batch's fields (``batch["users"]``, ``batch["items"]``, ``batch["values"]``…), traced
  constants ``aux`` (e.g. the global mean) and static hyperparameters ``hyper`` (a dict);
* ``gathers`` — ``(gather_name, table_name, batch_field)`` triples: which table rows each
  batch field selects (BPR gathers the item table twice, for positives and negatives);
* ``sample_fn(key, batch, aux, hyper) -> (extra_fields, extra_mask)`` — optional,
  samples inside the epoch from a key (BPR's negatives).

:func:`init_state` builds a :class:`TrainState` (parameter tables, optimizer state, step)
and :func:`train_epoch` runs one epoch: a ``lax.scan`` over minibatches that

1. gathers the rows the batch touches (cost ∝ batch, not table);
2. differentiates the summed loss with respect to those rows only;
3. applies the optimizer to the touched rows only. Plain ``"sgd"`` scatter-adds
   ``-lr × grad`` (duplicates sum, exactly the sparse gradient step). ``"rowwise_adagrad"``
   (the MF default) first scatter-adds each occurrence's mean squared gradient into its
   row's accumulator, then scatter-adds ``-lr × grad / sqrt(acc)``: adaptive, yet as cheap
   as sgd (one table-wide scatter per table; its state is one number per row). Any other optax
   transformation runs *lazily per row*: duplicate indices are merged (named optimizers,
   which are elementwise: the gradients are scatter-added into an all-zero scratch table
   carried through the scan, gathered back per occurrence and the touched scratch rows
   reset, O(batch) and in place — every occurrence then computes the identical new row;
   XLA's CPU sort made a sort-based merge cost ~0.4 s per 1 M ratings; a ready-made optax
   transformation: ``jnp.unique(size=b)`` + ``segment_sum`` on the unique rows), the
   optimizer state rows of those indices are gathered, ``tx.update`` runs on the gathered
   ``(b, k)`` slices and the new parameter and state rows are scattered back. Scalar state (the step count used by bias correction and
   schedules) stays global. For sgd and adagrad this equals the dense update exactly; for
   momentum/adam-like methods it is the "lazy" variant (TensorFlow's LazyAdam): rows a
   batch does not touch keep their moments and do not move, which is what makes the step
   cost independent of the table size.

Shuffling costs nothing inside the jit: the interactions are permuted once per fit on the
host (seeded numpy Generator) and laid out as a ``(n_batches, batch_size)`` grid with the
padding masked out; each epoch draws a random batch order and a random rotation of every
grid column (``n_batches + batch_size`` random integers), so that both the order and the
composition of the minibatches change every epoch. ``shuffle="full"`` instead draws a
fresh full permutation on the host each epoch (exact, ≈ 30 ms per million interactions).

The loop
--------
:func:`fit_loop` wraps the core for every model: history DataFrame, ``tqdm.auto`` bar,
validation every N epochs, early stopping with restore-best, loss tolerance, NaN/inf →
:class:`~mfjax.exceptions.ModelFitError`, checkpoints and ``resume``. All randomness of
epoch ``e`` derives from ``(seed, e)``, so a resumed run equals an uninterrupted one.

Device placement: nothing here is device-specific. ``fit_loop(..., mesh=...)`` places the
tables and the interaction grid with ``NamedSharding`` (rows along the mesh's first axis
when they divide evenly, replicated otherwise) through :func:`place`; the jitted epoch is
unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from mfjax._io_utils import atomic_path
from mfjax.exceptions import DataError, ModelFitError
from mfjax.optim import make_optimizer, make_schedule

__all__ = [
    "EngineSpec",
    "TrainState",
    "FitResult",
    "init_state",
    "train_epoch",
    "epoch_layout",
    "auto_batch_size",
    "fit_loop",
    "place",
]


@dataclass(frozen=True)
class EngineSpec:
    """Static description of a model's training step (hashable: a ``jit`` static argument).

    Attributes:
        loss_fn: ``(rows, batch, aux, hyper) -> loss[b]``, per example, before masking.
        gathers: ``((gather_name, table_name, batch_field), ...)``.
        optimizer: optimizer name or ``optax.GradientTransformation``.
        learning_rate: peak learning rate (named optimizers).
        schedule: schedule name (see :mod:`mfjax.optim`).
        total_steps: optimizer steps in the whole run (for schedules).
        hyper: static hyperparameters handed to ``loss_fn``/``sample_fn``, as sorted pairs.
        sample_fn: ``(key, batch, aux, hyper) -> (fields, mask)`` or None.
        optimizer_kwargs: extra keyword arguments of a named optimizer, as sorted pairs.
        fields: names of the packed integer and float per-example fields (set by
            :func:`fit_loop` from the data it is given).
    """

    loss_fn: Callable
    gathers: tuple[tuple[str, str, str], ...]
    optimizer: Any = "sgd"
    learning_rate: float = 0.01
    schedule: str = "constant"
    total_steps: int = 1
    hyper: tuple[tuple[str, Any], ...] = ()
    sample_fn: Callable | None = None
    optimizer_kwargs: tuple[tuple[str, Any], ...] = ()
    fields: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t for _, t, _ in self.gathers))

    @property
    def plain_sgd(self) -> bool:
        return (
            isinstance(self.optimizer, str)
            and self.optimizer == "sgd"
            and not self.optimizer_kwargs
        )

    @property
    def rowwise(self) -> bool:
        """Row-wise Adagrad by name: applied with one scatter-add per table, like sgd."""
        return isinstance(self.optimizer, str) and self.optimizer == "rowwise_adagrad"

    @property
    def additive(self) -> bool:
        """Whether the sparse step is a plain scatter-add of per-occurrence deltas."""
        return self.plain_sgd or self.rowwise

    def tx(self) -> optax.GradientTransformation:
        return make_optimizer(
            self.optimizer,
            learning_rate=self.learning_rate,
            schedule=self.schedule,
            total_steps=self.total_steps,
            **dict(self.optimizer_kwargs),
        )

    def lr_schedule(self) -> optax.Schedule:
        return make_schedule(self.learning_rate, self.schedule, total_steps=self.total_steps)


class TrainState(NamedTuple):
    """The training state: parameter tables, optimizer state per table, step count."""

    params: dict[str, jax.Array]
    opt_state: dict[str, Any]
    step: jax.Array


def init_state(spec: EngineSpec, params: dict[str, Any]) -> TrainState:
    """A fresh :class:`TrainState` for ``params`` (dict of tables, rows first).

    Example:
        >>> # state = init_state(spec, {"user_factors": U, "item_factors": V})
    """
    params = {k: jnp.asarray(v) for k, v in params.items()}
    if spec.plain_sgd:
        opt_state = {t: () for t in spec.tables}
    else:
        tx = spec.tx()
        opt_state = {t: tx.init(params[t]) for t in spec.tables}
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32))


def _is_row_leaf(leaf: Any, n_rows: int, row_shape: tuple) -> bool:
    return hasattr(leaf, "shape") and tuple(leaf.shape) == (n_rows, *row_shape)


def _sparse_apply(
    spec: EngineSpec,
    table: jax.Array,
    opt_state: Any,
    idx: jax.Array,
    grads: jax.Array,
    step: jax.Array,
    scratch: jax.Array | None = None,
) -> Any:
    """Update the rows ``idx`` of ``table`` with per-occurrence ``grads`` (idx == n: none).

    Returns ``(table, opt_state)``, or ``(table, opt_state, scratch)`` when ``scratch`` (an
    all-zero table shaped like ``table``, returned all-zero) is given: named optimizers then
    merge duplicate rows' gradients by scatter-adding them into it and gathering them back
    (O(batch), in place) instead of sorting.
    """
    n_rows = table.shape[0]
    if spec.plain_sgd:
        lr = spec.lr_schedule()(step)
        return table.at[idx].add((-lr * grads).astype(table.dtype), mode="drop"), opt_state
    if spec.rowwise:
        # every occurrence adds its mean squared gradient to its row's accumulator; the
        # step -lr * g / sqrt(acc) is then linear in g: one scatter-add, as for sgd
        acc_state, count_state = opt_state
        kw = dict(spec.optimizer_kwargs)
        eps = kw.get("eps", 1e-7)
        acc = acc_state.sum_of_squares
        sq = jnp.mean(jnp.reshape(grads * grads, (grads.shape[0], -1)), axis=1)
        acc = acc.at[idx].add(sq.astype(acc.dtype), mode="drop")
        lr = spec.lr_schedule()(step)
        factor = -lr / (jnp.sqrt(acc.at[idx].get(mode="fill", fill_value=1.0)) + eps)
        delta = factor.reshape((-1,) + (1,) * (grads.ndim - 1)) * grads
        table = table.at[idx].add(delta.astype(table.dtype), mode="drop")
        return table, (type(acc_state)(acc), type(count_state)(count_state.count + 1))
    m = idx.shape[0]
    row_shape = tuple(table.shape[1:])
    if isinstance(spec.optimizer, str) and scratch is not None:
        scratch = scratch.at[idx].add(grads.astype(scratch.dtype), mode="drop")
        safe = jnp.minimum(idx, n_rows - 1)
        g = scratch[safe]
        # reset the touched rows; the zeros depend on g so that the gather is ordered before
        # the reset and XLA updates the scratch in place instead of copying it
        scratch = scratch.at[idx].set(g * 0.0, mode="drop")
        state_rows = jax.tree_util.tree_map(
            lambda leaf: leaf[safe] if _is_row_leaf(leaf, n_rows, row_shape) else leaf, opt_state
        )
        old_rows = table[safe]
        updates, new_rows = spec.tx().update(g, state_rows, old_rows)
        table = table.at[idx].set(old_rows + updates.astype(table.dtype), mode="drop")
        opt_state = jax.tree_util.tree_map(
            lambda full, new: (
                full.at[idx].set(new, mode="drop") if _is_row_leaf(full, n_rows, row_shape) else new
            ),
            opt_state,
            new_rows,
        )
        return table, opt_state, scratch
    if isinstance(spec.optimizer, str):
        # Named optimizers are elementwise: update per occurrence, in sorted order. One
        # stable sort groups duplicate rows; their gradients are merged with a sorted
        # segment_sum and handed back to every occurrence, so duplicates compute identical
        # new rows and the scatter-sets below agree. Same values as the unique() path,
        # cheaper (no inverse permutation, no compaction, no unsorted scatter-add).
        sidx, perm = jax.lax.sort((idx, jnp.arange(m, dtype=idx.dtype)), num_keys=1, is_stable=True)
        new_seg = jnp.concatenate(
            [jnp.zeros(1, jnp.int32), (sidx[1:] != sidx[:-1]).astype(jnp.int32)]
        )
        seg = jnp.cumsum(new_seg)
        g = jax.ops.segment_sum(grads[perm], seg, num_segments=m, indices_are_sorted=True)[seg]
        safe = jnp.minimum(sidx, n_rows - 1)
        state_rows = jax.tree_util.tree_map(
            lambda leaf: leaf[safe] if _is_row_leaf(leaf, n_rows, row_shape) else leaf, opt_state
        )
        old_rows = table[safe]
        updates, new_rows = spec.tx().update(g, state_rows, old_rows)
        table = table.at[sidx].set(old_rows + updates.astype(table.dtype), mode="drop")
        opt_state = jax.tree_util.tree_map(
            lambda full, new: (
                full.at[sidx].set(new, mode="drop")
                if _is_row_leaf(full, n_rows, row_shape)
                else new
            ),
            opt_state,
            new_rows,
        )
        return table, opt_state
    uniq, inv = jnp.unique(idx, size=m, fill_value=n_rows, return_inverse=True)
    g = jax.ops.segment_sum(grads, inv.reshape(-1), num_segments=m)
    safe = jnp.minimum(uniq, n_rows - 1)
    state_rows = jax.tree_util.tree_map(
        lambda leaf: leaf[safe] if _is_row_leaf(leaf, n_rows, row_shape) else leaf, opt_state
    )
    updates, new_rows = spec.tx().update(g, state_rows, table[safe])
    table = table.at[uniq].add(updates.astype(table.dtype), mode="drop")
    opt_state = jax.tree_util.tree_map(
        lambda full, new: (
            full.at[uniq].set(new, mode="drop") if _is_row_leaf(full, n_rows, row_shape) else new
        ),
        opt_state,
        new_rows,
    )
    return table, opt_state


@partial(jax.jit, static_argnames=("spec",), donate_argnames=("state",))
def train_epoch(
    state: TrainState,
    data: dict[str, jax.Array],
    aux: dict[str, jax.Array],
    order: jax.Array,
    shift: jax.Array,
    key: jax.Array,
    *,
    spec: EngineSpec,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One epoch: ``lax.scan`` over the minibatches of the ``(R, C)`` interaction grid.

    Args:
        state: the :class:`TrainState`.
        data: ``{"ints": (R * C, F) int32, "floats": (R * C, G) float32}``, the packed
            per-example fields named by ``spec.fields``; rows at or after ``aux["_n"]`` are
            padding (masked out).
        aux: traced constants for ``loss_fn`` / ``sample_fn``.
        order: ``(R,)`` batch order for this epoch.
        shift: ``(C,)`` rotation of each grid column for this epoch.
        key: PRNG key of this epoch (for ``sample_fn``).
        spec: the static :class:`EngineSpec`.

    Returns:
        ``(state, {"loss": summed loss, "count": examples})``. The input ``state`` is
        donated (its buffers are reused for the output, so an epoch never copies the
        tables); do not use it after the call.
    """
    n_batches = order.shape[0]
    width = shift.shape[0]
    hyper = dict(spec.hyper)
    cols = jnp.arange(width, dtype=jnp.int32)

    int_names, float_names = spec.fields

    # named (elementwise) lazy optimizers merge duplicate rows through zero scratch tables
    use_scratch = not spec.additive and isinstance(spec.optimizer, str)

    def step(carry: tuple, t: jax.Array) -> tuple[tuple, tuple[jax.Array, jax.Array]]:
        (params, opt_state, count), scratch = carry
        idx = ((t + shift) % n_batches) * width + cols
        ints = data["ints"][idx]
        batch = {name: ints[:, j] for j, name in enumerate(int_names)}
        if float_names:
            floats = data["floats"][idx]
            batch.update({name: floats[:, j] for j, name in enumerate(float_names)})
        mask = (idx < aux["_n"]).astype(jnp.float32)
        if spec.sample_fn is not None:
            extra, extra_mask = spec.sample_fn(jax.random.fold_in(key, t), batch, aux, hyper)
            batch.update(extra)
            mask = mask * extra_mask
        rows = {g: params[tab][batch[f]] for g, tab, f in spec.gathers}

        def total(rows: dict) -> jax.Array:
            return jnp.sum(spec.loss_fn(rows, batch, aux, hyper) * mask)

        loss, grads = jax.value_and_grad(total)(rows)
        new_params = dict(params)
        new_opt = dict(opt_state)
        new_scratch = dict(scratch)
        keep = mask > 0
        for tab in spec.tables:
            parts = [(batch[f], grads[g]) for g, t2, f in spec.gathers if t2 == tab]
            n_rows = params[tab].shape[0]
            if spec.additive:  # masked examples have zero gradients: adding them is a no-op
                ids = jnp.concatenate([i for i, _ in parts])
            else:  # keep them out of the lazy optimizer's touched rows
                ids = jnp.concatenate([jnp.where(keep, i, n_rows) for i, _ in parts])
            gs = jnp.concatenate([gr for _, gr in parts])
            out = _sparse_apply(spec, params[tab], opt_state[tab], ids, gs, count, scratch.get(tab))
            new_params[tab], new_opt[tab] = out[0], out[1]
            if use_scratch:
                new_scratch[tab] = out[2]
        new_state = TrainState(new_params, new_opt, count + 1)
        return (new_state, new_scratch), (loss, jnp.sum(mask))

    scratch0 = {t: jnp.zeros_like(state.params[t]) for t in spec.tables} if use_scratch else {}
    (state, _), (losses, counts) = jax.lax.scan(step, (state, scratch0), order)
    return state, {"loss": jnp.sum(losses), "count": jnp.sum(counts)}


# ---------------------------------------------------------------------------- layout
def auto_batch_size(
    n: int, batch_size: int | None = None, *, steps: int = 50, lo: int = 256, hi: int = 16384
) -> int:
    """``batch_size`` itself, or when it is None the default for ``n`` examples: the
    largest power of two not above ``n / steps`` (about ``steps`` minibatches per epoch),
    clipped to ``[lo, hi]``.

    Example:
        >>> auto_batch_size(80_000), auto_batch_size(900_000), auto_batch_size(1_000)
        (1024, 16384, 256)
        >>> auto_batch_size(900_000, 1024)
        1024
    """
    if batch_size is not None:
        return int(batch_size)
    target = max(1, int(n) // steps)
    return int(min(hi, max(lo, 1 << (target.bit_length() - 1))))


def epoch_layout(n: int, batch_size: int) -> tuple[int, int]:
    """``(n_batches, width)`` of the grid holding ``n`` examples in minibatches of at most
    ``batch_size`` (the width shrinks for small data so that padding stays small)."""
    n_batches = max(1, -(-n // batch_size))
    width = -(-n // n_batches)
    return n_batches, width


def _epoch_randomness(
    seed: int, epoch: int, n_batches: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([int(seed), int(epoch), 7])
    order = rng.permutation(n_batches).astype(np.int32)
    shift = rng.integers(0, n_batches, size=width, dtype=np.int32)
    return order, shift


def place(x: Any, mesh: Any = None, *, kind: str = "table") -> Any:
    """Put an array (or a pytree) on the device(s).

    Without a mesh: the default device. With a ``jax.sharding.Mesh``: ``kind='table'``
    shards rows over the ``"model"`` axis (or the first axis), ``kind='data'`` over the
    ``"data"`` axis (or the first axis), each only where the rows divide evenly (replicated
    otherwise); ``kind='replicated'`` replicates. This is the single seam for sharded
    training (see :mod:`mfjax.sharding`).
    """
    if mesh is None:
        return jax.tree_util.tree_map(jnp.asarray, x)
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    names = tuple(mesh.axis_names)
    axis = {"table": "model", "data": "data"}.get(kind)
    if axis not in names:
        axis = names[0]
    size = mesh.shape[axis]

    def put(a: Any) -> Any:
        a = jnp.asarray(a)
        shard = kind != "replicated" and a.ndim >= 1 and a.shape[0] % size == 0
        return jax.device_put(a, NamedSharding(mesh, P(axis) if shard else P()))

    return jax.tree_util.tree_map(put, x)


# ---------------------------------------------------------------------------- the loop
@dataclass
class FitResult:
    """What :func:`fit_loop` returns: host parameters (the best ones when early stopping
    restored them), the history, and why training stopped."""

    params: dict[str, np.ndarray]
    history: pd.DataFrame
    best_epoch: int | None = None
    stop_reason: str = "max_epochs"
    state: TrainState | None = field(default=None, repr=False)


def _to_host(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda a: np.asarray(a), tree)


def _fingerprint(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def fit_loop(
    spec: EngineSpec,
    params: dict[str, Any],
    data: dict[str, np.ndarray],
    aux: dict[str, Any] | None = None,
    *,
    epochs: int,
    batch_size: int,
    seed: int = 0,
    shuffle: str = "rotate",
    valid_fn: Callable[[dict[str, jax.Array]], float] | None = None,
    valid_metric: str = "rmse",
    valid_mode: str = "min",
    valid_every: int = 1,
    patience: int | None = None,
    min_delta: float = 0.0,
    loss_tol: float | None = None,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 1,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[int, dict], None] | None = None,
    mesh: Any = None,
    fingerprint: Any = None,
    desc: str = "training",
) -> FitResult:
    """Train for up to ``epochs`` epochs with monitoring, early stopping and checkpoints.

    Args:
        spec: the model's :class:`EngineSpec`.
        params: initial parameter tables (numpy or jax arrays).
        data: per-example fields (``users``, ``items``, ``values``…), equal lengths.
        aux: traced constants for the loss / sampler.
        epochs: maximum number of epochs.
        batch_size: examples per minibatch.
        seed: all randomness of epoch ``e`` derives from ``(seed, e)``.
        shuffle: ``'rotate'`` (default; a random batch order and column rotation of a
            once-shuffled grid) or ``'full'`` (a fresh host permutation every epoch).
        valid_fn: ``params -> metric`` on the validation data, or None.
        valid_metric: the metric's name in the history (``valid_<name>``).
        valid_mode: ``'min'`` or ``'max'`` — which direction is better.
        valid_every: evaluate every this many epochs (and after the last one).
        patience: stop after this many evaluations without an improvement larger than
            ``min_delta``, restoring the best parameters (None: no early stopping).
        min_delta: the smallest change that counts as an improvement.
        loss_tol: stop when the relative decrease of the training loss falls below it.
        checkpoint_dir: write ``checkpoint.npz`` there every ``checkpoint_every`` epochs.
        checkpoint_every: epochs between checkpoints.
        resume: continue from ``checkpoint_dir/checkpoint.npz`` when it exists.
        progress: show a ``tqdm.auto`` bar.
        callback: ``callback(epoch, history_row)`` after each epoch (and its checkpoint).
        mesh: optional ``jax.sharding.Mesh`` (see :func:`place`).
        fingerprint: JSON-able description of the run; a checkpoint of another run is refused.
        desc: progress-bar label.

    Returns:
        A :class:`FitResult`.

    Raises:
        ModelFitError: the loss or the parameters became NaN/inf (names the epoch).
    """
    if valid_mode not in ("min", "max"):
        raise ValueError(f"valid_mode must be 'min' or 'max'; got {valid_mode!r}")
    if shuffle not in ("rotate", "full"):
        raise ValueError(f"shuffle must be 'rotate' or 'full'; got {shuffle!r}")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir=... (where the checkpoints are)")
    aux = {} if aux is None else dict(aux)
    n = len(next(iter(data.values())))
    n_batches, width = epoch_layout(n, batch_size)
    base = np.random.default_rng([int(seed), 0, 11]).permutation(n)
    host = {k: np.asarray(v) for k, v in data.items()}

    int_names = tuple(k for k, v in host.items() if v.dtype.kind in "iu")
    float_names = tuple(k for k in host if k not in int_names)
    spec = dataclasses.replace(spec, fields=(int_names, float_names))
    ints = np.stack([host[k].astype(np.int32) for k in int_names], axis=1)
    floats = (
        np.stack([host[k].astype(np.float32) for k in float_names], axis=1) if float_names else None
    )
    pad = n_batches * width - n

    def grid(perm: np.ndarray) -> dict[str, jax.Array]:
        out = {"ints": np.concatenate([ints[perm], np.zeros((pad, ints.shape[1]), np.int32)])}
        if floats is not None:
            out["floats"] = np.concatenate(
                [floats[perm], np.zeros((pad, floats.shape[1]), np.float32)]
            )
        return place(out, mesh, kind="data")

    dev_data = grid(base) if shuffle == "rotate" else None
    aux["_n"] = np.int32(n)
    dev_aux = place(aux, mesh, kind="replicated")
    # the epochs donate their state: never the caller's own device arrays
    params = jax.tree_util.tree_map(lambda a: a.copy() if isinstance(a, jax.Array) else a, params)
    state = init_state(spec, place(params, mesh))
    root_key = jax.random.PRNGKey(int(seed))

    rows: list[dict] = []
    best: dict[str, Any] = {"metric": None, "epoch": None, "params": None, "bad": 0}
    start_epoch = 1
    ckpt_path = None if checkpoint_dir is None else Path(checkpoint_dir) / "checkpoint.npz"
    fp = _fingerprint({"fingerprint": fingerprint, "n": n, "batch_size": batch_size, "seed": seed})
    if resume and ckpt_path is not None and ckpt_path.exists():
        state, rows, best, start_epoch = _load_checkpoint(ckpt_path, state, fp, mesh)

    stop_reason = "max_epochs"
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=epochs, initial=start_epoch - 1, desc=desc, unit="epoch", leave=False)
    try:
        for epoch in range(start_epoch, epochs + 1):
            if stop_reason != "max_epochs":
                break
            t0 = time.perf_counter()
            if shuffle == "rotate":
                order, shift = _epoch_randomness(seed, epoch, n_batches, width)
            else:
                dev_data = grid(np.random.default_rng([int(seed), int(epoch), 13]).permutation(n))
                order = np.arange(n_batches, dtype=np.int32)
                shift = np.zeros(width, dtype=np.int32)
            key = jax.random.fold_in(root_key, epoch)
            state, metrics = train_epoch(
                state, dev_data, dev_aux, jnp.asarray(order), jnp.asarray(shift), key, spec=spec
            )
            loss = float(metrics["loss"]) / max(float(metrics["count"]), 1.0)
            seconds = time.perf_counter() - t0
            if not np.isfinite(loss):
                raise ModelFitError(
                    f"training diverged at epoch {epoch}: the loss is {loss}. Lower the learning "
                    f"rate (now {spec.learning_rate}) or the batch size (plain sgd sums each "
                    "minibatch's gradients), raise the regularisation, or use an adaptive "
                    "optimizer ('rowwise_adagrad', the MF default, or 'adam'); the model keeps "
                    "no NaN parameters."
                )
            row: dict[str, Any] = {"epoch": epoch, "loss": loss, "seconds": seconds}
            last = epoch == epochs
            if valid_fn is not None and (epoch % valid_every == 0 or last):
                value = float(valid_fn(state.params))
                row[f"valid_{valid_metric}"] = value
                better = best["metric"] is None or (
                    value < best["metric"] - min_delta
                    if valid_mode == "min"
                    else value > best["metric"] + min_delta
                )
                if better:
                    best.update(metric=value, epoch=epoch, params=_to_host(state.params), bad=0)
                else:
                    best["bad"] += 1
                    if patience is not None and best["bad"] >= patience:
                        stop_reason = "early_stopping"
            if loss_tol is not None and rows:
                prev = rows[-1]["loss"]
                if abs(prev - loss) <= loss_tol * max(abs(prev), 1e-12):
                    stop_reason = "loss_tol"
            rows.append(row)
            if ckpt_path is not None and (
                epoch % checkpoint_every == 0 or last or stop_reason != "max_epochs"
            ):
                _save_checkpoint(ckpt_path, state, rows, best, epoch, fp)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    {k: round(v, 4) for k, v in row.items() if k not in ("epoch", "seconds")}
                )
            if callback is not None:
                callback(epoch, row)
    finally:
        if bar is not None:
            bar.close()

    final = _to_host(state.params)
    for name, arr in final.items():
        if not np.isfinite(arr).all():
            raise ModelFitError(
                f"parameter table '{name}' holds NaN/inf after epoch {len(rows)}; lower the learning "
                "rate or raise the regularisation"
            )
    history = pd.DataFrame(rows)
    best_epoch = best["epoch"]
    if patience is not None and best["params"] is not None:
        final = best["params"]
    return FitResult(final, history, best_epoch, stop_reason, state)


# ---------------------------------------------------------------------------- checkpoints
def _save_checkpoint(
    path: Path, state: TrainState, rows: list, best: dict, epoch: int, fp: str
) -> None:
    for name, arr in state.params.items():
        if not bool(jnp.isfinite(arr).all()):
            raise ModelFitError(f"not checkpointing NaN/inf parameters ('{name}') at epoch {epoch}")
    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state, state.step))
    arrays = {f"state_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    if best["params"] is not None:
        arrays.update({f"best/{k}": v for k, v in best["params"].items()})
    meta = {
        "epoch": epoch,
        "fingerprint": fp,
        "history": rows,
        "best_metric": best["metric"],
        "best_epoch": best["epoch"],
        "bad": best["bad"],
    }
    arrays["meta"] = np.array(json.dumps(meta, default=float))
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def _load_checkpoint(
    path: Path, template: TrainState, fp: str, mesh: Any
) -> tuple[TrainState, list, dict, int]:
    with np.load(path, allow_pickle=False) as z:
        content = {k: z[k] for k in z.files}
    meta = json.loads(str(content["meta"]))
    if meta["fingerprint"] != fp:
        raise DataError(
            f"checkpoint {path} belongs to another run (different data, model or settings); "
            "delete it or pass another checkpoint_dir"
        )
    treedef = jax.tree_util.tree_structure((template.params, template.opt_state, template.step))
    leaves = [content[k] for k in sorted(k for k in content if k.startswith("state_"))]
    params, opt_state, step = jax.tree_util.tree_unflatten(treedef, leaves)
    state = TrainState(place(params, mesh), place(opt_state, mesh), jnp.asarray(step))
    best_params = {
        k[len("best/") :]: v for k, v in content.items() if k.startswith("best/")
    } or None
    best = {
        "metric": meta["best_metric"],
        "epoch": meta["best_epoch"],
        "params": best_params,
        "bad": meta["bad"],
    }
    return state, list(meta["history"]), best, int(meta["epoch"]) + 1


def config_dict(config: Any) -> dict:
    """A JSON-able view of a dataclass config (custom objects by type name)."""
    return {f.name: _jsonable(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _jsonable(v: Any) -> Any:
    if isinstance(v, (str, int, float, bool, type(None))):
        return v
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return f"<{type(v).__name__}>"


# ---------------------------------------------------------------------------- config checks
#: options every engine-trained model's ``fit`` accepts (passed on to :func:`fit_loop`)
ENGINE_FIT_OPTIONS = (
    "checkpoint_dir",
    "checkpoint_every",
    "resume",
    "progress",
    "callback",
    "mesh",
)


def check_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int ``>= minimum``."""
    if value is None and allow_none:
        return
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")


def check_float(
    name: str, value: Any, *, minimum: float = 0.0, strict: bool = False, allow_none: bool = False
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number above the bound."""
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool)
    ok = ok and bool(np.isfinite(value)) and (value > minimum if strict else value >= minimum)
    if not ok:
        rel = ">" if strict else ">="
        raise ValueError(f"{name} must be a finite number {rel} {minimum}; got {value!r}")


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")


def check_fit_options(options: dict, model: str) -> dict:
    """Check ``fit(**options)`` against :data:`ENGINE_FIT_OPTIONS`; raise naming the bad ones."""
    bad = sorted(set(options) - set(ENGINE_FIT_OPTIONS))
    if bad:
        raise TypeError(
            f"{model}.fit() got unknown option(s) {bad}; known: {list(ENGINE_FIT_OPTIONS)}"
        )
    return dict(options)


# ---------------------------------------------------------------------------- validation
def ranking_valid_fn(
    score_fn: Callable,
    extra_params: dict[str, Any],
    train_seen: Any,
    valid_users: np.ndarray,
    valid_items: np.ndarray,
    n_items: int,
    *,
    k: int = 10,
    metric: str = "ndcg",
) -> Callable[[dict[str, jax.Array]], float]:
    """A validation function ``params -> mean recall@k or NDCG@k`` over the validation users.

    Training items (``train_seen``, users × items CSR) are excluded from the rankings, as
    at serving time; relevance is binary (every validation pair is relevant). Ranks with
    :func:`mfjax.topk.top_k_blocked` and scores with :mod:`mfjax.metrics`.
    """
    import scipy.sparse as sp

    from mfjax import metrics
    from mfjax.topk import top_k_blocked

    check_choice("metric", metric, ("ndcg", "recall", "precision"))
    n_users = train_seen.shape[0]
    rel = sp.csr_matrix(
        (np.ones(len(valid_users), np.float32), (valid_users, valid_items)),
        shape=(n_users, n_items),
    )
    rel.data[:] = 1.0
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    rel_u = rel[users]
    seen = train_seen

    def fn(params: dict[str, jax.Array]) -> float:
        idx, _ = top_k_blocked(
            score_fn, {**params, **extra_params}, users, n_items, k, exclude=seen
        )
        gains = metrics.gains_matrix(idx, rel_u)
        if metric == "ndcg":
            values = metrics.ndcg_at_k(gains, metrics.ideal_gains(rel_u, k), k)
        elif metric == "recall":
            values = metrics.recall_at_k(gains, np.diff(rel_u.indptr), k)
        else:
            values = metrics.precision_at_k(gains, k)
        return float(np.nanmean(values))

    return fn

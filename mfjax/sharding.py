"""Sharded training and evaluation on a JAX device mesh (GSPMD, no hand-written collectives).

mfjax's training and ranking functions are pure jitted functions of arrays; they hold no
device-specific code. Running them on several devices (GPUs, a TPU slice, several hosts
with :func:`jax.distributed.initialize`) is therefore a matter of *placing* their inputs:

* a :class:`~jax.sharding.Mesh` with two named axes, ``"data"`` and ``"model"``
  (:func:`make_mesh`);
* embedding tables (every array whose leading dimension is the number of users or of
  items: factors, biases, and the optimizer's moments of them) sharded **by rows over the
  model axis**, zero-padded to a multiple of its size (:class:`TablePlacement`);
* minibatches split over the **data axis** (:func:`place_batches`);
* full-ranking top-k that shards users over the data axis and items over the model axis,
  takes a top-k per item shard and merges them (:func:`top_k_sharded`).

XLA's SPMD partitioner then inserts the gathers and reductions. Without a mesh nothing
here is used and every model runs on one device exactly as before.

Zero-padded rows are inert: they have no interactions, their gradients and L2 terms are
zero, and they add nothing to a Gram matrix. :meth:`TablePlacement.gather` cuts them off
again, so a model trained sharded is saved as an ordinary single-device model.

Example:
    >>> from mfjax.sharding import make_mesh
    >>> mesh = make_mesh(data=1, model=1)  # one device; on 8 GPUs: make_mesh(data=2, model=4)
    >>> dict(mesh.shape)
    {'data': 1, 'model': 1}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mfjax.topk import block_size_for

__all__ = [
    "DATA_AXIS",
    "MODEL_AXIS",
    "TablePlacement",
    "make_mesh",
    "mesh_shape",
    "per_device_bytes",
    "place_batches",
    "place_ials",
    "replicated",
    "to_host",
    "top_k_sharded",
]

DATA_AXIS = "data"
MODEL_AXIS = "model"


# --------------------------------------------------------------------------- meshes
def make_mesh(
    *, data: int | None = None, model: int = 1, devices: Sequence[jax.Device] | None = None
) -> Mesh:
    """A 2-D device mesh with axes ``("data", "model")``.

    Args:
        data: devices along the data axis (minibatches and users are split over it).
            Default: all remaining devices, ``len(devices) // model``.
        model: devices along the model axis (embedding-table rows and items are split
            over it).
        devices: the devices to use (default :func:`jax.devices`, i.e. every device of
            every process after :func:`jax.distributed.initialize`).

    Returns:
        A :class:`jax.sharding.Mesh` of ``data * model`` devices, axis types ``Auto`` (the
        SPMD partitioner propagates shardings).

    Raises:
        ValueError: when the sizes are not positive or ask for more devices than exist.

    Example:
        >>> mesh = make_mesh(model=1)
        >>> mesh.axis_names
        ('data', 'model')
    """
    devs = list(jax.devices() if devices is None else devices)
    if not isinstance(model, int | np.integer) or model < 1:
        raise ValueError(f"make_mesh: model must be a positive integer; got {model!r}")
    if data is None:
        data = len(devs) // model
        if data < 1:
            raise ValueError(
                f"make_mesh: model={model} needs at least {model} devices; only {len(devs)} "
                f"available ({devs[0].platform}). On CPU, simulate more with "
                "XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax."
            )
    if not isinstance(data, int | np.integer) or data < 1:
        raise ValueError(f"make_mesh: data must be a positive integer; got {data!r}")
    need = int(data) * int(model)
    if need > len(devs):
        raise ValueError(
            f"make_mesh: data={data} x model={model} = {need} devices, but only {len(devs)} "
            f"are available ({devs[0].platform}). Lower data/model, or on CPU simulate more "
            "with XLA_FLAGS=--xla_force_host_platform_device_count=N before importing jax."
        )
    grid = np.array(devs[:need], dtype=object).reshape(int(data), int(model))
    return Mesh(grid, (DATA_AXIS, MODEL_AXIS))


def mesh_shape(mesh: Mesh) -> tuple[int, int]:
    """``(data, model)`` sizes of a mesh made by :func:`make_mesh`.

    Example:
        >>> mesh_shape(make_mesh(model=1))[1]
        1
    """
    _check_mesh(mesh)
    return int(mesh.shape[DATA_AXIS]), int(mesh.shape[MODEL_AXIS])


def _check_mesh(mesh: Any) -> None:
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be a jax.sharding.Mesh (see mfjax.sharding.make_mesh); got "
            f"{type(mesh).__name__}"
        )
    missing = {DATA_AXIS, MODEL_AXIS} - set(mesh.axis_names)
    if missing:
        raise ValueError(
            f"mesh needs axes named 'data' and 'model'; it has {mesh.axis_names}. "
            "Build it with mfjax.sharding.make_mesh(data=..., model=...)."
        )


def replicated(mesh: Mesh) -> NamedSharding:
    """The sharding that keeps a full copy on every device of ``mesh``."""
    return NamedSharding(mesh, P())


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    """Place a host or device array; works across processes (every process passes the
    same global value)."""
    if isinstance(x, jax.Array) and x.is_fully_addressable and sharding.is_fully_addressable:
        return jax.device_put(x, sharding)
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])


def to_host(x: Any) -> np.ndarray:
    """A numpy copy of a (possibly sharded, possibly multi-process) array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


# --------------------------------------------------------------------------- tables
@dataclass(frozen=True)
class TablePlacement:
    """Row-sharding of embedding tables over a mesh's model axis.

    Every array of a pytree whose leading dimension is ``n_users`` or ``n_items`` (user and
    item factors and biases, and the optimizer moments of them) is zero-padded to a
    multiple of the model axis size and sharded by rows over it; every other array is
    replicated. :meth:`gather` undoes both.

    Attributes:
        mesh: a mesh from :func:`make_mesh`.
        n_users: rows of the user tables (``None``: user tables are replicated).
        n_items: rows of the item tables.

    Example:
        >>> import numpy as np
        >>> tp = TablePlacement(make_mesh(model=1), n_users=3, n_items=5)
        >>> placed, layout = tp.place({"P": np.ones((3, 2)), "Q": np.ones((5, 2)), "mu": 3.0})
        >>> tp.gather(placed, layout)["Q"].shape
        (5, 2)
    """

    mesh: Mesh
    n_users: int | None
    n_items: int

    def __post_init__(self) -> None:
        _check_mesh(self.mesh)
        for name in ("n_users", "n_items"):
            v = getattr(self, name)
            if v is None and name == "n_users":
                continue
            if not isinstance(v, int | np.integer) or v < 1:
                raise ValueError(f"TablePlacement: {name} must be a positive integer; got {v!r}")

    @property
    def shards(self) -> int:
        """Number of row shards (the model axis size)."""
        return int(self.mesh.shape[MODEL_AXIS])

    def padded(self, n: int) -> int:
        """``n`` rounded up to a multiple of the model axis size."""
        s = self.shards
        return -(-int(n) // s) * s

    @property
    def n_items_padded(self) -> int:
        return self.padded(self.n_items)

    def table_sharding(self, ndim: int = 2) -> NamedSharding:
        """Rows over the model axis, every other dimension replicated."""
        return NamedSharding(self.mesh, P(MODEL_AXIS, *([None] * (ndim - 1))))

    def is_table(self, x: Any) -> bool:
        shape = np.shape(x)
        return len(shape) >= 1 and shape[0] in (self.n_users, self.n_items)  # None never matches

    def place(self, tree: Any) -> tuple[Any, tuple[int, ...]]:
        """Pad and shard the tables of ``tree``; replicate everything else.

        Returns:
            ``(placed_tree, layout)``: ``layout`` records each leaf's original row count
            (``-1`` for replicated leaves) for :meth:`gather`.
        """
        leaves, treedef = jax.tree.flatten(tree)
        out, layout = [], []
        for x in leaves:
            if self.is_table(x):
                n = int(np.shape(x)[0])
                pad = self.padded(n) - n
                if pad:
                    x = np.asarray(x)
                    x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), dtype=x.dtype)])
                out.append(_put(x, self.table_sharding(np.ndim(x))))
                layout.append(n)
            else:
                out.append(_put(x, replicated(self.mesh)))
                layout.append(-1)
        return jax.tree.unflatten(treedef, out), tuple(layout)

    def gather(self, tree: Any, layout: tuple[int, ...]) -> Any:
        """Numpy copies of a placed pytree with the padding rows cut off.

        The result holds no device arrays: it is an ordinary single-device state.
        """
        leaves, treedef = jax.tree.flatten(tree)
        if len(leaves) != len(layout):
            raise ValueError(
                f"TablePlacement.gather: the tree has {len(leaves)} leaves but the layout "
                f"{len(layout)}; pass the layout returned by place() for this tree"
            )
        out = []
        for x, n in zip(leaves, layout, strict=True):
            h = to_host(x)
            out.append(h[:n] if n >= 0 else h)
        return jax.tree.unflatten(treedef, out)


def place_batches(tree: Any, mesh: Mesh, *, axis: int = 1, process_local: bool = False) -> Any:
    """Split stacked minibatches over the mesh's data axis.

    Args:
        tree: a pytree of arrays shaped ``(steps, batch, ...)`` (the ``lax.scan`` layout);
            leaves with ``ndim <= axis`` are replicated.
        mesh: a mesh from :func:`make_mesh`.
        axis: the batch axis (default 1, after the scan axis).
        process_local: each process passes only its own part of the batch axis (its
            shard of the interactions, multi-host); the global batch is the concatenation
            over processes in process order.

    Raises:
        ValueError: when the batch size is not a multiple of the data axis size.

    Example:
        >>> import numpy as np
        >>> b = place_batches({"users": np.zeros((3, 8), np.int32)}, make_mesh(model=1))
        >>> b["users"].shape
        (3, 8)
    """
    _check_mesh(mesh)
    d = int(mesh.shape[DATA_AXIS])

    def put(x: Any) -> jax.Array:
        nd = np.ndim(x)
        if nd <= axis:
            return _put(x, replicated(mesh))
        spec = P(*([None] * axis), DATA_AXIS, *([None] * (nd - axis - 1)))
        sharding = NamedSharding(mesh, spec)
        if process_local:
            return jax.make_array_from_process_local_data(sharding, np.asarray(x))
        size = np.shape(x)[axis]
        if size % d:
            raise ValueError(
                f"batch size {size} is not a multiple of the mesh's data axis ({d} devices); "
                f"choose batch_size as a multiple of {d}"
            )
        return _put(x, sharding)

    return jax.tree.map(put, tree)


def per_device_bytes(tree: Any) -> dict[str, int]:
    """Bytes each local device holds for the arrays of ``tree`` (from ``addressable_shards``).

    Example:
        >>> import jax.numpy as jnp
        >>> list(per_device_bytes({"a": jnp.zeros((4, 2))}).values())
        [32]
    """
    out: dict[str, int] = {}
    for x in jax.tree.leaves(tree):
        if not isinstance(x, jax.Array):
            continue
        for s in x.addressable_shards:
            key = str(s.device)
            out[key] = out.get(key, 0) + int(s.data.nbytes)
    return out


# --------------------------------------------------------------------------- ranking
def _pad_pow2(n: int, minimum: int = 64) -> int:
    """Next power of two >= n (few distinct shapes, few compilations)."""
    p = minimum
    while p < n:
        p *= 2
    return p


@partial(jax.jit, static_argnames=("score_fn", "k", "mesh"))
def _sharded_block_topk(score_fn, params, users, seen_rows, seen_cols, allowed, k, mesh):
    d, shards = mesh_shape(mesh)
    row_axis = DATA_AXIS if d > 1 else None
    scores = score_fn(params, users)  # (b, n_items_padded)
    b, n = scores.shape
    scores = jax.lax.with_sharding_constraint(scores, NamedSharding(mesh, P(row_axis, MODEL_AXIS)))
    scores = jnp.where(allowed[None, :], scores, -jnp.inf)
    scores = scores.at[seen_rows, seen_cols].set(-jnp.inf, mode="drop")
    width = n // shards
    k_local = min(k, width)
    per_shard = scores.reshape(b, shards, width)
    per_shard = jax.lax.with_sharding_constraint(
        per_shard, NamedSharding(mesh, P(row_axis, MODEL_AXIS, None))
    )
    vals, idx = jax.lax.top_k(per_shard, k_local)  # one top-k per item shard, on its device
    idx = idx + (jnp.arange(shards, dtype=idx.dtype) * width)[None, :, None]
    vals = vals.reshape(b, shards * k_local)  # merge: best k of shards * k_local candidates
    idx = idx.reshape(b, shards * k_local)
    vals, pos = jax.lax.top_k(vals, k)
    return vals, jnp.take_along_axis(idx, pos, axis=1)


def top_k_sharded(
    score_fn: Callable,
    params: Any,
    user_codes: np.ndarray,
    n_items: int,
    k: int,
    *,
    mesh: Mesh,
    n_users: int | None = None,
    exclude: sp.csr_matrix | None = None,
    allowed_items: np.ndarray | None = None,
    block_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` over all items with users split over ``data`` and items over ``model``.

    Same contract and results as :func:`mfjax.topk.top_k_blocked` (up to float rounding):
    each device scores its users against its shard of the item table, keeps the top
    ``k`` of its shard, and the per-shard lists are merged into the global top ``k``.

    Args:
        score_fn: pure ``(params, users[b]) -> scores[b, n_items]`` (module level).
        params: the model's parameters (host or device arrays); tables with ``n_items``
            (and, when ``n_users`` is given, ``n_users``) rows are sharded by rows.
        user_codes: user codes to rank for.
        n_items: catalogue size.
        k: list length (clipped to the number of rankable items).
        mesh: a mesh from :func:`make_mesh`.
        n_users: rows of the user tables, to shard them too (default: replicated).
        exclude: users × items CSR whose non-zeros are excluded (training items).
        allowed_items: optional item codes to rank among.
        block_size: users per block (rounded up to a multiple of the data axis size).

    Returns:
        ``(items, scores)`` of shape ``(n, k)``, best first; slots beyond the rankable
        items hold item ``-1`` and score ``-inf``.

    Example:
        >>> import numpy as np
        >>> def dot(p, u):
        ...     return p["P"][u] @ p["Q"].T
        >>> p = {"P": np.eye(2, dtype=np.float32), "Q": np.eye(2, dtype=np.float32)}
        >>> top_k_sharded(dot, p, np.array([1]), 2, 1, mesh=make_mesh(model=1))[0].tolist()
        [[1]]
    """
    _check_mesh(mesh)
    if int(k) < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    d, s = mesh_shape(mesh)
    tp = TablePlacement(mesh, n_users=None if n_users is None else int(n_users), n_items=n_items)
    placed, _ = tp.place(params)
    n_pad = tp.n_items_padded
    user_codes = np.asarray(user_codes, dtype=np.int32)
    n = len(user_codes)
    k_eff = int(min(k, n_items))
    if block_size is None:
        block_size = block_size_for(-(-n_pad // s)) if s > 1 else block_size_for(n_pad)
        block_size *= d
    bs = int(min(block_size, max(1, n)))
    bs = -(-bs // d) * d
    allowed = np.zeros(n_pad, dtype=bool)
    if allowed_items is None:
        allowed[:n_items] = True
    else:
        codes = np.asarray(allowed_items, dtype=np.int64)
        if codes.size and (codes.min() < 0 or codes.max() >= n_items):
            raise ValueError(f"allowed_items must be item codes in [0, {n_items}); got {codes}")
        allowed[codes] = True
    if exclude is not None:
        exclude = sp.csr_matrix(exclude)
        if exclude.shape[1] != n_items:
            raise ValueError(
                f"exclude has {exclude.shape[1]} item columns but n_items is {n_items}; pass "
                "the training users × items matrix of the same id maps"
            )
    allowed_j = _put(allowed, NamedSharding(mesh, P(MODEL_AXIS)))
    user_sharding = NamedSharding(mesh, P(DATA_AXIS))
    out_items = np.empty((n, k_eff), dtype=np.int64)
    out_scores = np.empty((n, k_eff), dtype=np.float32)
    for start in range(0, n, bs):
        users = user_codes[start : start + bs]
        b = len(users)
        users_p = np.zeros(bs, dtype=np.int32)
        users_p[:b] = users
        if exclude is not None:
            sub = exclude[users]
            rows = np.repeat(np.arange(b, dtype=np.int32), np.diff(sub.indptr))
            cols = sub.indices.astype(np.int32)
        else:
            rows = cols = np.zeros(0, dtype=np.int32)
        m = _pad_pow2(len(rows))
        rows_p = np.full(m, bs, dtype=np.int32)  # out of range -> dropped
        cols_p = np.zeros(m, dtype=np.int32)
        rows_p[: len(rows)] = rows
        cols_p[: len(cols)] = cols
        vals, idx = _sharded_block_topk(
            score_fn,
            placed,
            _put(users_p, user_sharding),
            _put(rows_p, replicated(mesh)),
            _put(cols_p, replicated(mesh)),
            allowed_j,
            k_eff,
            mesh,
        )
        vals = to_host(vals)[:b]
        idx = to_host(idx)[:b].astype(np.int64)
        idx[~np.isfinite(vals)] = -1
        out_items[start : start + b] = idx
        out_scores[start : start + b] = vals
    return out_items, out_scores


# --------------------------------------------------------------------------- iALS layout
def _pad_blocked_rows(blocks: Any, n_padded: int) -> Any:
    """An iALS :class:`~mfjax.models.ials.BlockedRows` for ``n_padded`` rows.

    The extra rows form one more bucket with no cells, a ridge of 1 and a warm start of
    zero rows: CG and Cholesky both return exactly zero for them, and they add nothing to
    the loss, the penalty or the Gram matrix.
    """
    from mfjax.models.ials import BlockedRows, Bucket

    n = blocks.n_rows
    extra = int(n_padded) - n
    if extra <= 0:
        return blocks
    offset = int(sum(np.prod(np.shape(b.rows)) for b in blocks.buckets))
    pad_bucket = Bucket(
        rows=np.arange(n, n_padded, dtype=np.int32).reshape(1, extra),
        cols=np.zeros((1, extra, 1), dtype=np.int32),
        weight=np.zeros((1, extra, 1), dtype=np.float32),
        target=np.zeros((1, extra, 1), dtype=np.float32),
        reg=np.ones((1, extra), dtype=np.float32),
    )
    inverse = np.concatenate([np.asarray(blocks.inverse), offset + np.arange(extra)])
    reg = np.concatenate([np.asarray(blocks.reg), np.zeros(extra, dtype=np.float32)])
    return BlockedRows(
        buckets=(*blocks.buckets, pad_bucket),
        inverse=inverse.astype(np.int32),
        reg=reg.astype(np.float32),
    )


def place_ials(
    mesh: Mesh, user_factors: Any, item_factors: Any, user_blocks: Any, item_blocks: Any
) -> tuple[jax.Array, jax.Array, Any, Any]:
    """Place iALS factors and blocked layouts on ``mesh``.

    Factor tables are zero-padded and sharded by rows over the model axis; each layout's
    ``inverse`` (which orders the solved rows) is sharded the same way, so that solved
    factors come out row-sharded; the rows of each chunk are split over the data axis when
    their count divides it (else replicated). :func:`mfjax.models.ials.ials_iteration` runs
    unchanged on the placed arrays; cut the padding off with ``[:n_users]`` / ``[:n_items]``.

    Returns:
        ``(user_factors, item_factors, user_blocks, item_blocks)`` on the mesh.
    """
    from mfjax.models.ials import BlockedRows

    _check_mesh(mesh)
    n_users, n_items = int(np.shape(user_factors)[0]), int(np.shape(item_factors)[0])
    tp = TablePlacement(mesh, n_users=n_users, n_items=n_items)
    (x, y), _ = tp.place((np.asarray(user_factors), np.asarray(item_factors)))
    d = int(mesh.shape[DATA_AXIS])
    rows_sharding = NamedSharding(mesh, P(MODEL_AXIS))

    def put_blocks(blocks: Any, n_padded: int) -> Any:
        blocks = _pad_blocked_rows(blocks, n_padded)
        buckets = []
        for b in blocks.buckets:
            split = d > 1 and np.shape(b.rows)[1] % d == 0
            row_axis = DATA_AXIS if split else None
            buckets.append(
                type(b)(
                    *(
                        _put(a, NamedSharding(mesh, P(None, row_axis, *([None] * (a.ndim - 2)))))
                        for a in map(np.asarray, b)
                    )
                )
            )
        return BlockedRows(
            buckets=tuple(buckets),
            inverse=_put(np.asarray(blocks.inverse), rows_sharding),
            reg=_put(np.asarray(blocks.reg), rows_sharding),
        )

    ub = put_blocks(user_blocks, tp.padded(n_users))
    ib = put_blocks(item_blocks, tp.padded(n_items))
    return x, y, ub, ib

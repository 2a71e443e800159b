"""Train explicit MF on several hosts with ``jax.distributed``; each host reads only its shard.

Launch one process per host (or several on one machine to try it), all with the same
arguments except ``--process-id``::

    # host 0 (also the coordinator)                # host 1
    python examples/multihost_train.py \\           python examples/multihost_train.py \\
        --coordinator 10.0.0.1:1234 \\                  --coordinator 10.0.0.1:1234 \\
        --num-processes 2 --process-id 0 \\             --num-processes 2 --process-id 1 \\
        --shards 'data/ratings-{process}.csv' \\         --shards 'data/ratings-{process}.csv' \\
        --n-users 1000000 --n-items 200000 \\            --n-users 1000000 --n-items 200000 \\
        --out mf.npz                                     --out mf.npz

    # try it on one machine (two CPU processes on loopback, synthetic shards):
    for i in 0 1; do python examples/multihost_train.py --coordinator 127.0.0.1:12345 \\
        --num-processes 2 --process-id $i --synthetic 200000 --n-users 5000 \\
        --n-items 1000 --epochs 3 --out /tmp/mf.npz & done; wait

On a cluster managed by SLURM, Kubernetes (JobSet) or a Cloud TPU pod,
``jax.distributed.initialize()`` finds the coordinator and ids itself: omit the three
flags. Each shard file holds columns ``user, item, rating`` **already encoded** as codes
``0..n_users-1`` / ``0..n_items-1`` (encode once, e.g. with
:meth:`mfjax.interactions.Interactions.from_frame` on the id lists, and split the rows
among hosts any way you like: by hash of the user, by file).

How it works (all of it plain GSPMD, no hand-written collectives):

* a global mesh over every device of every process (:func:`mfjax.sharding.make_mesh`):
  tables sharded by rows over ``model``, the interaction grid over ``data``;
* each host lays out its own interactions as ``rows × batch_size`` (padding weighs 0; the
  row count is agreed as the maximum over hosts) and contributes them with
  ``jax.make_array_from_process_local_data``: the global grid is the hosts' grids stacked;
* the same jitted epoch as single-device training (:func:`mfjax.train.train_epoch`) runs
  with the same seeds on every host; each epoch's batch order and column rotation mix
  interactions from every host into each minibatch;
* process 0 gathers the tables and saves an ordinary single-device mfjax model. Its
  ``seen_`` matrix is empty (the training pairs stay on their hosts), so
  ``recommend(exclude_seen=True)`` excludes nothing; pass ``items=`` or filter afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def read_shard(pattern: str, process_id: int, *, n_users: int, n_items: int) -> dict:
    """This host's interactions from ``pattern.format(process=process_id)`` (CSV or Parquet).

    Raises:
        FileNotFoundError: the shard file is missing (names it).
        mfjax.exceptions.DataError: a column is missing or a code is out of range.
    """
    import pandas as pd

    from mfjax.exceptions import DataError

    path = Path(pattern.format(process=process_id))
    if not path.exists():
        raise FileNotFoundError(
            f"process {process_id}: no shard file at {path}; the --shards pattern must name one "
            "file per process with '{process}' in it"
        )
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in ("user", "item", "rating") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {list(df.columns)}")
    out = {
        "users": df["user"].to_numpy(np.int64),
        "items": df["item"].to_numpy(np.int64),
        "values": df["rating"].to_numpy(np.float32),
    }
    for name, n in (("users", n_users), ("items", n_items)):
        bad = np.flatnonzero((out[name] < 0) | (out[name] >= n))
        if len(bad):
            raise DataError(
                f"{path}: row {int(bad[0])} has {name[:-1]} code {int(out[name][bad[0]])}, "
                f"outside [0, {n}); encode ids as codes first and pass --n-{name} to match"
            )
    out["users"] = out["users"].astype(np.int32)
    out["items"] = out["items"].astype(np.int32)
    return out


def synthetic_shard(
    n: int, process_id: int, n_processes: int, *, n_users: int, n_items: int, seed: int = 0
) -> dict:
    """This host's part of a seeded synthetic set: rows ``process_id::n_processes``."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n).astype(np.int32)
    items = rng.integers(0, n_items, n).astype(np.int32)
    values = np.clip(np.rint(3.5 + rng.normal(0, 1, n)), 1, 5).astype(np.float32)
    mine = slice(process_id, None, n_processes)
    return {"users": users[mine], "items": items[mine], "values": values[mine]}


def local_grid(shard: dict, *, n_rows: int, width: int, seed: int) -> dict:
    """The host's interactions, shuffled (seeded), packed as the engine's per-example arrays
    ``{"ints": (n_rows * width, 2) [user, item], "floats": (n_rows * width, 1) [rating]}``.

    The grid is filled up by repeating the host's own interactions (a few appear twice per
    epoch), so that every host contributes the same number of rows and there is no padding
    in the middle of the global grid.
    """
    n = len(shard["users"])
    if n == 0:
        raise ValueError("this host's shard is empty; give every host some interactions")
    size = n_rows * width
    rng = np.random.default_rng([seed, 11])
    perm = np.concatenate([rng.permutation(n), rng.integers(0, n, max(0, size - n))])[:size]
    ints = np.stack([shard["users"], shard["items"]], axis=1).astype(np.int32)[perm]
    floats = shard["values"].astype(np.float32)[perm, None]
    return {"ints": ints, "floats": floats}


def _local_value(x: Any) -> np.ndarray:
    """The value of a replicated global array, read from this process's copy."""
    return np.asarray(x.addressable_data(0))


def train_multihost(
    shard: dict, *, n_users: int, n_items: int, config: Any, mesh: Any
) -> tuple[dict, list[dict], dict]:
    """Train MF over every process; call it on every process with its own ``shard``.

    Mirrors :meth:`mfjax.models.mf.MF._fit` (same loss, optimizer, initialisation and
    engine epoch), with the interaction grid assembled from the hosts' shards.

    Returns:
        ``(params, history, extras)``: the serving parameters as numpy (``user_factors``,
        ``item_factors``, ``user_bias``, ``item_bias``, ``mu``), one history row per epoch,
        and ``extras`` (the global grid, spec, aux, initial tables and epoch randomness, for
        checks).
    """
    import dataclasses

    import jax
    import jax.numpy as jnp
    from jax.experimental import multihost_utils
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from mfjax.models.mf import MF, init_params, serving_params
    from mfjax.sharding import DATA_AXIS, MODEL_AXIS, TablePlacement, _put, replicated
    from mfjax.train import auto_batch_size, init_state, train_epoch

    if len(mesh.local_devices) % mesh.shape[MODEL_AXIS]:
        raise ValueError(
            f"the model axis ({mesh.shape[MODEL_AXIS]}) must divide each host's device count "
            f"({len(mesh.local_devices)}) so that the data axis spans the hosts"
        )
    n_local = len(shard["users"])
    stats = multihost_utils.process_allgather(
        np.array([n_local, float(shard["values"].sum(dtype=np.float64))])
    ).reshape(-1, 2)
    n_total = int(stats[:, 0].sum())
    mu = np.float32(stats[:, 1].sum() / max(n_total, 1))
    d = int(mesh.shape[DATA_AXIS])
    width = -(-auto_batch_size(n_total, config.batch_size) // d) * d
    d_local = d // jax.process_count()
    rows_local = -(-int(stats[:, 0].max()) // width)  # agreed by every host
    rows_local = -(-rows_local // max(d_local, 1)) * max(d_local, 1)
    grid = local_grid(shard, n_rows=rows_local, width=width, seed=config.seed + jax.process_index())
    data_sharding = NamedSharding(mesh, P(DATA_AXIS, None))
    data = {k: jax.make_array_from_process_local_data(data_sharding, v) for k, v in grid.items()}
    n_rows = rows_local * jax.process_count()

    spec = dataclasses.replace(MF(config)._spec(n_total), fields=(("users", "items"), ("values",)))
    rep = replicated(mesh)
    aux_host = {
        "mu": mu,
        "reg": np.float32(config.reg),
        "reg_bias": np.float32(config.reg_bias),
        "huber_delta": np.float32(config.huber_delta),
        "_n": np.int32(n_rows * width),  # no padding: every grid row is real
    }
    aux = {k: _put(v, rep) for k, v in aux_host.items()}
    tables0 = {
        k: np.asarray(v)
        for k, v in init_params(jax.random.PRNGKey(config.seed), config, n_users, n_items).items()
    }
    tp = TablePlacement(mesh, n_users=n_users, n_items=n_items)
    placed, layout = tp.place(tables0)
    state = init_state(spec, placed)
    history, epochs = [], []
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        rng = np.random.default_rng([config.seed, epoch, 7])  # same on every host
        order = rng.permutation(n_rows).astype(np.int32)
        shift = rng.integers(0, n_rows, size=width, dtype=np.int32)
        key = np.asarray(jax.random.fold_in(jax.random.PRNGKey(config.seed), epoch))
        state, metrics = train_epoch(
            state, data, aux, _put(order, rep), _put(shift, rep), _put(key, rep), spec=spec
        )
        loss = float(_local_value(metrics["loss"])) / max(float(_local_value(metrics["count"])), 1)
        history.append({"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0})
        epochs.append((order, shift, key))
    tables = tp.gather(state.params, layout)
    params = {k: np.ascontiguousarray(v) for k, v in serving_params(tables, mu).items()}
    params["mu"] = np.asarray(mu, dtype=np.float32)
    extras = {
        "data": data,
        "spec": spec,
        "aux": {k: jnp.asarray(v) for k, v in aux_host.items()},
        "tables0": tables0,
        "tables": tables,
        "epochs": epochs,
    }
    return params, history, extras


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--coordinator", help="host:port of process 0 (omit on SLURM/TPU pods)")
    ap.add_argument("--num-processes", type=int)
    ap.add_argument("--process-id", type=int)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--shards", help="per-process file pattern with {process}, CSV or Parquet")
    src.add_argument("--synthetic", type=int, metavar="N", help="N seeded synthetic ratings")
    ap.add_argument("--n-users", type=int, required=True)
    ap.add_argument("--n-items", type=int, required=True)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--model-axis", type=int, default=1, help="devices per table shard group")
    ap.add_argument("--out", type=Path, help="where process 0 saves the model (.npz)")
    args = ap.parse_args(argv)

    import jax

    if args.coordinator:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    else:
        jax.distributed.initialize()
    import scipy.sparse as sp

    from mfjax.interactions import IdMap
    from mfjax.models.mf import MF, MFConfig
    from mfjax.sharding import make_mesh

    pid, nproc = jax.process_index(), jax.process_count()
    if args.shards:
        shard = read_shard(args.shards, pid, n_users=args.n_users, n_items=args.n_items)
    else:
        shard = synthetic_shard(
            args.synthetic, pid, nproc, n_users=args.n_users, n_items=args.n_items
        )
    config = MFConfig(factors=args.factors, epochs=args.epochs, batch_size=args.batch_size)
    mesh = make_mesh(model=args.model_axis)
    print(
        f"[{pid}/{nproc}] {len(shard['users']):,} local interactions, mesh {dict(mesh.shape)}",
        flush=True,
    )
    params, history, _ = train_multihost(
        shard, n_users=args.n_users, n_items=args.n_items, config=config, mesh=mesh
    )
    from jax.experimental import multihost_utils

    counts = np.bincount(shard["items"], minlength=args.n_items)
    popularity = multihost_utils.process_allgather(counts).reshape(nproc, -1).sum(0)
    for row in history:
        print(
            f"[{pid}] epoch {row['epoch']}: loss {row['loss']:.4f} ({row['seconds']:.2f} s)",
            flush=True,
        )
    if pid == 0 and args.out:
        model = MF(config)
        model.params_ = params
        model.user_map_ = IdMap(np.arange(args.n_users), name="user")
        model.item_map_ = IdMap(np.arange(args.n_items), name="item")
        model.seen_ = sp.csr_matrix((args.n_users, args.n_items), dtype=np.float32)
        model.item_popularity_ = popularity
        import pandas as pd

        model.history_ = pd.DataFrame(history)
        print(f"[0] saved {model.save(args.out)}", flush=True)
    jax.distributed.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

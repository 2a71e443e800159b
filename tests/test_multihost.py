"""Two local processes on loopback joined by ``jax.distributed`` on CPU (one device each).

Each process reads only its shard of the interactions (and ``examples/multihost_train.py``'s
training runs on both); the global arrays are built with
``jax.make_array_from_process_local_data`` and the jitted computations run across both
processes (gloo collectives on CPU). Results are checked against a single-process
computation on the full data in each worker. Skips with the reason when this jax cannot
start a CPU cluster (e.g. no CPU collectives).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

N_PROCESSES = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(process_id: int, port: int, out_path: str) -> None:
    """Body of one process (run as ``python test_multihost.py worker ID PORT OUT``)."""
    import jax

    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}",
        num_processes=N_PROCESSES,
        process_id=process_id,
        initialization_timeout=60,
    )
    import jax.numpy as jnp
    import numpy as np
    import scipy.sparse as sp

    from mfjax.sharding import TablePlacement, make_mesh, place_batches, to_host, top_k_sharded
    from mfjax.topk import top_k_blocked

    result: dict = {"process_count": jax.process_count(), "n_devices": len(jax.devices())}

    # The full data, generated identically everywhere; this process keeps only its shard
    # (as it would read its own file). 64 interactions, batches of 8 per process.
    rng = np.random.default_rng(0)
    n_users, n_items, f = 24, 18, 4
    users = rng.integers(0, n_users, 64).astype(np.int32)
    items = rng.integers(0, n_items, 64).astype(np.int32)
    ratings = rng.uniform(1, 5, 64).astype(np.float32)
    mine = slice(process_id * 32, (process_id + 1) * 32)
    local = {
        "users": users[mine].reshape(4, 8),
        "items": items[mine].reshape(4, 8),
        "ratings": ratings[mine].reshape(4, 8),
    }

    mesh = make_mesh(data=2, model=1)
    batches = place_batches(local, mesh, process_local=True)
    result["global_batch_shape"] = list(batches["users"].shape)

    params = {
        "P": rng.normal(size=(n_users, f)).astype(np.float32),
        "Q": rng.normal(size=(n_items, f)).astype(np.float32),
    }
    tp = TablePlacement(make_mesh(data=1, model=2), n_users=n_users, n_items=n_items)
    placed, layout = tp.place(params)

    @jax.jit
    def sse(p, b):  # squared error of a dot-product model over every batch
        pred = jnp.sum(p["P"][b["users"]] * p["Q"][b["items"]], axis=-1)
        return jnp.sum((pred - b["ratings"]) ** 2)

    # tables sharded over the 2 processes (model axis) and batches split over them (data)
    placed_dp, _ = TablePlacement(mesh, n_users=n_users, n_items=n_items).place(params)
    got = float(to_host(sse(placed_dp, batches)))
    full = {
        "users": np.concatenate([users[:32].reshape(4, 8), users[32:].reshape(4, 8)], 1),
        "items": np.concatenate([items[:32].reshape(4, 8), items[32:].reshape(4, 8)], 1),
        "ratings": np.concatenate([ratings[:32].reshape(4, 8), ratings[32:].reshape(4, 8)], 1),
    }
    pred = np.sum(params["P"][full["users"]] * params["Q"][full["items"]], axis=-1)
    result["sse"] = [got, float(np.sum((pred - full["ratings"]) ** 2))]
    batch_users = to_host(batches["users"])
    result["batches_equal_full"] = bool(np.array_equal(batch_users, full["users"]))

    back = tp.gather(placed, layout)
    result["gather_equal"] = all(np.array_equal(back[k], params[k]) for k in params)
    result["local_rows"] = sorted(s.data.shape[0] for s in placed["Q"].addressable_shards)

    def score(p, u):
        return p["P"][u] @ p["Q"].T

    seen = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    codes = np.arange(n_users)
    items_s, scores_s = top_k_sharded(
        score, params, codes, n_items, 5, mesh=tp.mesh, n_users=n_users, exclude=seen
    )
    items_r, scores_r = top_k_blocked(score, params, codes, n_items, 5, exclude=seen)
    result["topk_equal"] = bool(np.array_equal(items_s, items_r))
    result["topk_max_diff"] = float(np.max(np.abs(scores_s - scores_r)))

    # The example's multi-host MF training (each process passes only its shard) equals
    # the same epochs run on one device over the gathered global grid.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
    from multihost_train import synthetic_shard, train_multihost

    from mfjax.models.mf import MFConfig
    from mfjax.train import init_state, train_epoch

    config = MFConfig(factors=4, epochs=2, batch_size=256, seed=5)
    shard = synthetic_shard(1500, process_id, N_PROCESSES, n_users=60, n_items=30)
    trained, history, extras = train_multihost(
        shard, n_users=60, n_items=30, config=config, mesh=mesh
    )
    dev = jax.local_devices()[0]
    full = {k: jax.device_put(to_host(v), dev) for k, v in extras["data"].items()}
    state = init_state(
        extras["spec"], {k: jax.device_put(v, dev) for k, v in extras["tables0"].items()}
    )
    aux = {k: jax.device_put(v, dev) for k, v in extras["aux"].items()}
    for order, shift, key in extras["epochs"]:
        state, _ = train_epoch(state, full, aux, order, shift, key, spec=extras["spec"])
    result["mf_max_diff"] = max(
        float(np.max(np.abs(np.asarray(state.params[k]) - extras["tables"][k])))
        for k in state.params
    )
    result["mf_has_serving_params"] = sorted(trained) == sorted(
        ["user_factors", "item_factors", "user_bias", "item_bias", "mu"]
    )
    result["mf_local_interactions"] = len(shard["users"])
    result["mf_grid"] = list(to_host(extras["data"]["ints"]).shape)
    result["mf_losses"] = [row["loss"] for row in history]

    Path(out_path).write_text(json.dumps(result))
    jax.distributed.shutdown()


@pytest.mark.slow
def test_two_processes_on_loopback(tmp_path):
    port = _free_port()
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    env["JAX_PLATFORMS"] = "cpu"
    root = Path(__file__).resolve().parents[1]
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "worker", str(i), str(port), str(tmp_path / f"{i}.json")],
            env=env,
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(N_PROCESSES)
    ]
    outs = []
    for p in procs:
        try:
            out, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("the two jax.distributed processes did not finish within 120 s")
        outs.append(out)
    logs = "\n".join(
        f"--- process {i} (rc {p.returncode}):\n{o[-3000:]}"
        for i, (p, o) in enumerate(zip(procs, outs, strict=True))
    )
    if any(p.returncode for p in procs):
        unsupported = ("collectives", "not supported", "Unimplemented", "UNIMPLEMENTED")
        if any(u in logs for u in unsupported) and "Traceback" in logs:
            pytest.skip(f"this jax cannot run a multi-process CPU cluster here:\n{logs[-1500:]}")
        pytest.fail(f"a jax.distributed process failed:\n{logs}")
    for i in range(N_PROCESSES):
        r = json.loads((tmp_path / f"{i}.json").read_text())
        assert r["process_count"] == 2 and r["n_devices"] == 2, r
        assert r["global_batch_shape"] == [4, 16], r
        assert r["batches_equal_full"], r
        assert r["sse"][0] == pytest.approx(r["sse"][1], rel=1e-5), r
        assert r["gather_equal"], r
        assert r["local_rows"] == [9], r  # 18 item rows, 9 on each process
        assert r["topk_equal"] and r["topk_max_diff"] < 1e-5, r
        assert r["mf_local_interactions"] == 750, r  # each process saw only its half
        assert r["mf_grid"][0] >= 1500, r
        assert r["mf_max_diff"] < 1e-5 and r["mf_has_serving_params"], r
        assert r["mf_losses"][1] < r["mf_losses"][0], r


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "worker":
    _worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])

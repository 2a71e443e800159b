"""Scale benchmark: explicit MF and iALS on a large synthetic set, time per epoch and peak RSS.

Default size is the issue's: 20 M interactions, 1 M users, 200 k items, k = 64. Each
(model, size) runs in its own subprocess so that its peak resident memory
(``ru_maxrss``) is its own. ``--scales`` runs the same shape at several fractions of the
size (users, items and interactions scaled together) so that memory and time can be fitted
as functions of the size and extrapolated (see ``docs/scaling.md``).

Usage::

    # the issue's run (about 10 minutes on 2 CPU cores)
    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/scale.py --epochs 3
    # growth with size: 1/8, 1/4, 1/2 of it, both models
    .venv/bin/python benchmarks/scale.py --scales 0.125 0.25 0.5 --epochs 2
    # one model, one size, in this process (what each subprocess runs)
    .venv/bin/python benchmarks/scale.py --one mf --interactions 2000000 --users 100000 \\
        --items 20000

Results are printed as a table and written to ``benchmarks/results/scale.json`` (atomically;
the folder is git-ignored).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mfjax._io_utils import write_json_atomic  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "scale.json"


def synthetic_codes(
    n_interactions: int, n_users: int, n_items: int, *, seed: int = 0, rank: int = 8
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encoded synthetic ratings, generated in chunks (no DataFrame, no raw ids).

    Users have log-normal activity, items Zipf-like popularity (exponent 0.9); ratings are
    a rank-``rank`` taste plus biases and noise, rounded to 1..5. Duplicate (user, item)
    pairs are possible (about 1 % at the default size) and are kept: MF sees them as
    repeated ratings, iALS sums them.

    Returns:
        ``(users int32, items int32, ratings float32)``.
    """
    rng = np.random.default_rng(seed)
    act = rng.lognormal(0.0, 1.0, n_users)
    user_cdf = np.cumsum(act / act.sum())
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    item_cdf = np.cumsum(pop / pop.sum())
    item_perm = rng.permutation(n_items).astype(np.int32)
    tu = (rng.normal(size=(n_users, rank)) / np.sqrt(rank)).astype(np.float32)
    ti = (rng.normal(size=(n_items, rank)) / np.sqrt(rank)).astype(np.float32)
    bu = rng.normal(0, 0.35, n_users).astype(np.float32)
    bi = rng.normal(0, 0.45, n_items).astype(np.float32)
    users = np.empty(n_interactions, np.int32)
    items = np.empty(n_interactions, np.int32)
    ratings = np.empty(n_interactions, np.float32)
    chunk = 2_000_000
    for s in range(0, n_interactions, chunk):
        m = min(chunk, n_interactions - s)
        u = np.minimum(np.searchsorted(user_cdf, rng.random(m)), n_users - 1).astype(np.int32)
        i = item_perm[np.minimum(np.searchsorted(item_cdf, rng.random(m)), n_items - 1)]
        r = 3.55 + bu[u] + bi[i] + 0.9 * np.einsum("ij,ij->i", tu[u], ti[i])
        r += rng.normal(0, 0.45, m).astype(np.float32)
        users[s : s + m], items[s : s + m] = u, i
        ratings[s : s + m] = np.clip(np.rint(r), 1, 5)
    return users, items, ratings


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def run_one(model: str, n: int, n_users: int, n_items: int, *, epochs: int, factors: int) -> dict:
    """Train one model in this process; return timings and peak RSS."""
    import jax

    from mfjax.interactions import IdMap, Interactions

    t0 = time.perf_counter()
    users, items, ratings = synthetic_codes(n, n_users, n_items)
    values = ratings if model == "mf" else (ratings >= 4).astype(np.float32)
    train = Interactions(
        users, items, values, IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item")
    )
    gen_s = time.perf_counter() - t0
    rss_data = _peak_rss_gib()
    if model == "mf":
        from mfjax.models.mf import MF

        est = MF(factors=factors, epochs=epochs, batch_size=4096, seed=0)
    elif model == "ials":
        from mfjax.models.ials import IALS

        est = IALS(factors=factors, iterations=epochs, seed=0)
    else:
        raise ValueError(f"--one must be 'mf' or 'ials'; got {model!r}")
    t1, c1 = time.perf_counter(), time.process_time()
    est.fit(train)
    fit_s, fit_cpu = time.perf_counter() - t1, time.process_time() - c1
    secs = est.history_["seconds"].to_numpy()
    return {
        "model": model,
        "interactions": n,
        "users": n_users,
        "items": n_items,
        "factors": factors,
        "epochs": int(len(secs)),
        "generate_seconds": round(gen_s, 2),
        "fit_seconds": round(fit_s, 2),
        # CPU seconds of this process (all threads): robust to other jobs sharing the cores
        "fit_cpu_seconds": round(fit_cpu, 2),
        "first_epoch_seconds": round(float(secs[0]), 3),  # includes compilation
        "epoch_seconds": round(float(np.median(secs[1:] if len(secs) > 1 else secs)), 3),
        "setup_seconds": round(fit_s - float(secs.sum()), 2),  # layout, csr, transfers
        "peak_rss_gib_after_data": round(rss_data, 3),
        "peak_rss_gib": round(_peak_rss_gib(), 3),
        "final_loss": float(est.history_["loss"].iloc[-1]),
        "device": str(jax.devices()[0].device_kind),
    }


def table_memory(n_users: int, n_items: int, factors: int, devices: int) -> list[dict]:
    """Per-device bytes of the MF tables (factors + biases, and Adam's two moments) as the
    training engine places them (:func:`mfjax.train.place`), for model axes 1, 2, 4, ….

    Needs ``devices`` jax devices (on CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count``,
    which ``--table-memory`` sets before jax is imported).
    """
    import jax.numpy as jnp

    from mfjax.sharding import make_mesh, per_device_bytes
    from mfjax.train import place

    out = []
    model = 1
    while model <= devices:
        mesh = make_mesh(data=devices // model, model=model)
        tables = {}
        for name, n in (("user", n_users), ("item", n_items)):
            for copy in ("param", "adam_mu", "adam_nu"):
                tables[f"{name}_factors/{copy}"] = jnp.zeros((n, factors), jnp.float32)
                tables[f"{name}_bias/{copy}"] = jnp.zeros((n,), jnp.float32)
        placed = place(tables, mesh)
        del tables
        per_dev = per_device_bytes(placed)
        out.append(
            {
                "mesh": dict(mesh.shape),
                "per_device_gib": round(max(per_dev.values()) / 2**30, 4),
                "total_gib": round(sum(per_dev.values()) / 2**30 / (devices // model), 4),
            }
        )
        del placed
        model *= 2
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--interactions", type=int, default=20_000_000)
    ap.add_argument("--users", type=int, default=1_000_000)
    ap.add_argument("--items", type=int, default=200_000)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["mf", "ials"])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    ap.add_argument("--one", choices=["mf", "ials"], help="run one model here (subprocess body)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per subprocess")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument(
        "--table-memory",
        type=int,
        metavar="DEVICES",
        help="only measure per-device table memory on DEVICES simulated CPU devices",
    )
    args = ap.parse_args(argv)
    for name in ("interactions", "users", "items", "factors", "epochs"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be a positive integer")
    if args.table_memory:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = (
            f"{flags} --xla_force_host_platform_device_count={args.table_memory}"
        ).strip()
        for row in table_memory(args.users, args.items, args.factors, args.table_memory):
            print(json.dumps(row), flush=True)
        return 0
    if args.one:
        res = run_one(
            args.one,
            args.interactions,
            args.users,
            args.items,
            epochs=args.epochs,
            factors=args.factors,
        )
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    rows = []
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    for scale in args.scales:
        n = int(args.interactions * scale)
        nu, ni = max(1, int(args.users * scale)), max(1, int(args.items * scale))
        for model in args.models:
            cmd = [
                sys.executable,
                __file__,
                "--one",
                model,
                "--interactions",
                str(n),
                "--users",
                str(nu),
                "--items",
                str(ni),
                "--epochs",
                str(args.epochs),
                "--factors",
                str(args.factors),
            ]
            print("$", " ".join(cmd[1:]), flush=True)
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=args.timeout
            )
            line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not line:
                print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
                rows.append(
                    {
                        "model": model,
                        "interactions": n,
                        "users": nu,
                        "items": ni,
                        "error": f"exit {proc.returncode}",
                    }
                )
                continue
            res = json.loads(line[-1][len("RESULT ") :])
            rows.append(res)
            print(
                f"  {model:5s} n={n:>11,d} users={nu:>9,d} items={ni:>8,d}: "
                f"{res['epoch_seconds']:.2f} s/epoch (first {res['first_epoch_seconds']:.1f} s, "
                f"setup {res['setup_seconds']:.1f} s, fit CPU {res['fit_cpu_seconds']:.0f} s), "
                f"peak RSS {res['peak_rss_gib']:.2f} GiB",
                flush=True,
            )
    meta = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": _git_commit(),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "runs": rows,
    }
    write_json_atomic(args.out, meta)
    print(f"wrote {args.out}")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Side-by-side benchmarks of mfjax against its peers; what ``make bench`` runs.

Imports every ``benchmarks/bench_*.py`` that exists; each exposes
``run(*, quick: bool = False) -> {"rows": [...], "summary": {...}}``. The rows (one per
measurement: ``benchmark, dataset, ours, peer, unit, ratio, quality_ours, quality_peer``)
go to ``benchmarks/results/latest.md`` (a Markdown table with the machine and the date)
and ``latest.png`` (a seaborn figure of the ratios); the summaries are merged into
``latest.json`` (``explicit_mf_vs_surprise_throughput``, ``bpr_vs_implicit_throughput``,
``ials_vs_implicit_seconds_per_iteration``, ``eval_vs_implicit_users_per_second``…, each
ours divided by theirs, measured in this run). Files are written atomically.

Usage::

    OPENBLAS_NUM_THREADS=1 .venv/bin/python benchmarks/run.py            # everything
    .venv/bin/python benchmarks/run.py --quick                           # smoke run (small data)
    .venv/bin/python benchmarks/run.py --only mf --only bpr              # some modules

Peers are configured as their documentation recommends: implicit with
``OPENBLAS_NUM_THREADS=1`` (set here before anything imports it), Surprise SVD with the
same factors and epochs. Times are steady-state epochs after compilation and warm-up,
the median of several.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy/implicit load OpenBLAS

import argparse
import importlib
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
ROW_KEYS = ("benchmark", "dataset", "ours", "peer", "unit", "ratio", "quality_ours", "quality_peer")

if str(HERE.parent) not in sys.path:  # run from anywhere: `python benchmarks/run.py`
    sys.path.insert(0, str(HERE.parent))


# ---------------------------------------------------------------------------- helpers for bench modules
def synthetic_pairs(
    n_users: int = 6040, n_items: int = 3706, n: int = 1_000_000, *, seed: int = 0
) -> pd.DataFrame:
    """``n`` distinct (user, item) pairs with skewed activity and popularity, and ratings 1-5.

    A fast stand-in for :func:`mfjax.datasets.synthetic` at benchmark sizes (same shape:
    log-normal user activity, Zipf-like item popularity, low-rank tastes plus biases):
    the benchmarks need the shape and the size, drawn in about a second for 10 M pairs.
    """
    rng = np.random.default_rng(seed)
    if n > n_users * n_items // 2:
        raise ValueError(f"{n} pairs is too dense for {n_users} x {n_items}")
    act = rng.lognormal(0.0, 1.0, n_users)
    pop = 1.0 / np.arange(1, n_items + 1) ** 0.9
    pop = 0.95 * pop / pop.sum() + 0.05 / n_items
    act = act / act.sum()
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n:
        m = int((n - len(keys)) * 1.3) + 1000
        u = rng.choice(n_users, m, p=act)
        i = rng.choice(n_items, m, p=pop)
        keys = np.unique(np.concatenate([keys, u.astype(np.int64) * n_items + i]))
    keys = rng.permutation(keys)[:n]
    u, i = keys // n_items, keys % n_items
    rank = 8
    p = rng.normal(size=(n_users, rank)) / np.sqrt(rank)
    q = rng.normal(size=(n_items, rank)) / np.sqrt(rank)
    r = 3.55 + 0.35 * rng.normal(size=n_users)[u] + 0.45 * rng.normal(size=n_items)[i]
    r += 0.9 * np.einsum("nk,nk->n", p[u], q[i]) + 0.45 * rng.normal(size=n)
    return pd.DataFrame(
        {
            "user": u.astype(np.int32) + 1,
            "item": i.astype(np.int32) + 1,
            "rating": np.clip(np.round(r), 1, 5).astype(np.float32),
        }
    )


def ml100k() -> pd.DataFrame | None:
    """MovieLens 100k from ``$MFJAX_DATA_DIR/ml-100k/u.data`` (or ``../shared/data``), or None."""
    for root in (os.environ.get("MFJAX_DATA_DIR"), str(HERE.parent.parent / "shared" / "data")):
        if root and (Path(root) / "ml-100k" / "u.data").exists():
            return pd.read_csv(
                Path(root) / "ml-100k" / "u.data",
                sep="\t",
                names=["user", "item", "rating", "timestamp"],
                dtype={
                    "user": np.int32,
                    "item": np.int32,
                    "rating": np.float32,
                    "timestamp": np.int64,
                },
            )
    return None


def per_user_split(
    df: pd.DataFrame, *, test_fraction: float = 0.2, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split: each user's last ``ceil(test_fraction · n_u)`` interactions in a
    seeded random order go to test (users with one interaction stay in train)."""
    r = np.random.default_rng(seed).uniform(size=len(df))
    rank = pd.Series(r, index=df.index).groupby(df["user"]).rank(method="first")
    cnt = df.groupby("user")["user"].transform("size")
    test = rank > cnt - np.floor(test_fraction * cnt)
    return df[~test], df[test]


def median_time(fn: Callable[[], Any], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(statistics.median(times))


def run_subprocess(code: str, *, timeout: float = 900) -> dict:
    """Run ``code`` in a fresh Python (so that its peak RSS is its own); it must print one
    JSON object as its last line. Adds ``peak_rss_mib`` (the child's ``ru_maxrss``)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), str(HERE.parent)]))
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: ``VmHWM`` from ``/proc/self/status``
    (reset by ``exec``, unlike ``ru_maxrss``, which Linux carries over from the parent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def row(**kw: Any) -> dict:
    """A result row with every column present (missing ones None)."""
    unknown = set(kw) - set(ROW_KEYS) - {"note"}
    if unknown:
        raise ValueError(f"unknown row keys {sorted(unknown)}")
    return {k: kw.get(k) for k in (*ROW_KEYS, "note")}


def machine_info() -> dict:
    """What the numbers were measured on."""
    import jax

    info = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
    }
    try:
        info["cpu"] = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    for mod in ("implicit", "surprise"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except Exception:  # noqa: BLE001 - optional peers
            info[mod] = None
    return info


# ---------------------------------------------------------------------------- writing results
def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def to_markdown(rows: list[dict], info: dict, summary: dict, command: str) -> str:
    lines = [
        "# mfjax benchmarks",
        "",
        f"Measured {info['date']} on {info['cpu']} ({info['cpu_count']} cores), JAX {info['jax']} "
        f"({info['jax_backend']}), implicit {info['implicit']}, Surprise {info['surprise']}, "
        f"OPENBLAS_NUM_THREADS={info['OPENBLAS_NUM_THREADS']}.",
        "",
        f"Command: `{command}`",
        "",
        "Every ratio is ours / theirs in the row's unit, measured in this run: for throughputs "
        "(per second) > 1 means mfjax is faster, for times (seconds) < 1 does. The table-size "
        "rows divide the epoch time with 100x tables by the one with 1x tables (about 1 means "
        "the step cost does not grow with the tables).",
        "",
        "| " + " | ".join((*ROW_KEYS, "note")) + " |",
        "|" + "---|" * (len(ROW_KEYS) + 1),
    ]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(k)) for k in (*ROW_KEYS, "note")) + " |")
    lines += [
        "",
        "## Summary",
        "",
        "```json",
        json.dumps(summary, indent=2, default=float),
        "```",
        "",
    ]
    return "\n".join(lines)


def write_figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mfjax._io_utils import atomic_path

    frame = pd.DataFrame(
        [r for r in rows if isinstance(r.get("ratio"), (int, float)) and r["ratio"]]
    )
    fig, ax = plt.subplots(figsize=(13, 0.45 * max(len(frame), 2) + 1.4))
    if len(frame):
        frame["label"] = frame["benchmark"] + " · " + frame["dataset"].astype(str)
        sns.barplot(
            data=frame, y="label", x="ratio", hue="benchmark", dodge=False, legend=False, ax=ax
        )
        ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_xscale("log")
    ax.set_xlabel("ours / theirs (throughput rows: > 1 faster; time rows: < 1 faster)")
    ax.set_ylabel("")
    ax.set_title("mfjax vs implicit / Surprise, one run")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)


def discover() -> list[str]:
    """Names (``mf``, ``bpr``, ``ials``, ``eval``…) of the ``bench_*.py`` modules present."""
    return sorted(p.stem[len("bench_") :] for p in HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small data, few repeats (smoke run)")
    parser.add_argument(
        "--only", action="append", default=None, help="run only bench_NAME (repeatable)"
    )
    parser.add_argument(
        "--out", default=str(RESULTS), help="results folder (default benchmarks/results)"
    )
    args = parser.parse_args(argv)
    names = discover()
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            parser.error(f"no benchmarks/bench_{unknown[0]}.py; available: {names}")
        names = [n for n in names if n in args.only]
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    from mfjax._io_utils import write_json_atomic, write_text_atomic

    rows: list[dict] = []
    summary: dict[str, Any] = {}
    failures: dict[str, str] = {}
    for name in names:
        t0 = time.perf_counter()
        print(f"== bench_{name} {'(quick)' if args.quick else ''}", flush=True)
        try:
            module = importlib.import_module(f"bench_{name}")
            result = module.run(quick=args.quick)
        except Exception as exc:  # noqa: BLE001 - one failing module must not hide the others
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}"
            continue
        for r in result.get("rows", []):
            rows.append({k: r.get(k) for k in (*ROW_KEYS, "note")})
            print("   ", {k: _fmt(v) for k, v in r.items() if v is not None}, flush=True)
        summary.update(result.get("summary", {}))
        print(f"   done in {time.perf_counter() - t0:.1f} s", flush=True)
    info = machine_info()
    command = "benchmarks/run.py " + " ".join(argv if argv is not None else sys.argv[1:])
    out = Path(args.out)
    payload = {
        **summary,
        "quick": args.quick,
        "machine": info,
        "command": command,
        "failures": failures,
        "rows": rows,
    }
    write_json_atomic(out / "latest.json", payload)
    write_text_atomic(out / "latest.md", to_markdown(rows, info, summary, command))
    write_figure(rows, out / "latest.png")
    print(f"wrote {out / 'latest.json'}, latest.md, latest.png")
    for key, value in summary.items():
        print(f"  {key}: {_fmt(value)}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

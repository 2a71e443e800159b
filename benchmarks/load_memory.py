"""Peak memory of loading a large ratings CSV: mfjax's loader vs plain ``pandas.read_csv``.

Side by side in one run: writes one synthetic CSV (20 M distinct pairs by default, about
470 MiB; MovieLens-style header ``userId,movieId,rating,timestamp``), then loads it once
with each loader, each in its own child process so each peak RSS is its own, and deletes
the file. Not part of ``make bench`` (it takes a few minutes and ~2 GiB of disk).

Usage::

    .venv/bin/python benchmarks/load_memory.py            # 20 M rows
    .venv/bin/python benchmarks/load_memory.py --rows 2000000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import pyarrow as pa
import pyarrow.csv as pacsv

CHILD = """
import resource, sys, time
t = time.perf_counter()
if sys.argv[1] == "mfjax":
    from mfjax.data import load_interactions
    df = load_interactions(sys.argv[2])
else:
    import pandas as pd
    df = pd.read_csv(sys.argv[2])
print(f"{sys.argv[1]:7s} {time.perf_counter() - t:6.1f} s  "
      f"frame {df.memory_usage(deep=True).sum() / 2**20:6.0f} MiB  "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:6.0f} MiB  "
      f"dtypes {df.dtypes.astype(str).tolist()}")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    args = parser.parse_args()
    from mfjax.datasets import synthetic

    scale = args.rows / 20_000_000
    n_users, n_items = max(100, int(138_493 * scale)), max(100, int(26_744 * scale**0.5))
    fd, path = tempfile.mkstemp(suffix=".csv")
    os.close(fd)
    try:
        t = time.perf_counter()
        df = synthetic(n_users, n_items, args.rows, seed=0)
        gen = time.perf_counter() - t
        table = pa.Table.from_pandas(df, preserve_index=False)
        pacsv.write_csv(table.rename_columns(["userId", "movieId", "rating", "timestamp"]), path)
        del df, table
        size = os.path.getsize(path) / 2**20
        print(
            f"generated {args.rows:,} pairs ({n_users:,} x {n_items:,}) in {gen:.1f} s; CSV {size:.0f} MiB"
        )
        for which in ("mfjax", "pandas"):
            subprocess.run([sys.executable, "-c", CHILD, which, path], check=True)
    finally:
        os.remove(path)


if __name__ == "__main__":
    main()

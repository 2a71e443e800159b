"""Persistence of prepared data: a :class:`~mfjax.splits.Split` in a run folder.

Layout of ``<run_dir>/split/`` (Parquet + JSON, no pickle)::

    meta.json            format version, info, per-part row counts, id dtypes
    user_map.parquet     column ``id``: raw user ids in code order
    item_map.parquet     column ``id``: raw item ids in code order
    train.parquet        columns ``user, item, value[, timestamp]`` (int32 codes)
    test.parquet
    valid.parquet        only when the split has a validation part

The folder is written beside the target under a temporary name and renamed into place,
so readers never see a half-written split and a failure leaves the previous one intact.
``meta.json`` is written last inside it. Ids round-trip exactly: integer ids keep their
dtype, string ids come back as strings.

Models are saved by :meth:`mfjax.models.base.Recommender.save` (one ``.npz``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mfjax._io_utils import shareable_dir, write_json_atomic
from mfjax.exceptions import DataError
from mfjax.interactions import IdMap, Interactions
from mfjax.splits import Split

__all__ = ["SPLIT_FORMAT_VERSION", "load_split", "save_split"]

SPLIT_FORMAT_VERSION = 1
_PARTS = ("train", "test", "valid")


def _map_table(m: IdMap) -> pa.Table:
    return pa.table(
        {"id": pa.array(m.values.tolist() if m.values.dtype.kind in "US" else m.values)}
    )


def _part_table(x: Interactions) -> pa.Table:
    cols = {
        "user": pa.array(x.users, type=pa.int32()),
        "item": pa.array(x.items, type=pa.int32()),
        "value": pa.array(x.values, type=pa.float32()),
    }
    if x.timestamps is not None:
        cols["timestamp"] = pa.array(np.asarray(x.timestamps, dtype=np.int64), type=pa.int64())
    return pa.table(cols)


def save_split(split: Split, directory: str | os.PathLike[str]) -> Path:
    """Write ``split`` into ``directory`` (created; replaced atomically if present).

    Example:
        >>> import tempfile, pandas as pd
        >>> from mfjax.splits import random_split
        >>> df = pd.DataFrame({"user": [1, 1, 2, 2, 3, 3], "item": ["a", "b"] * 3,
        ...                    "rating": [5.0, 3, 4, 2, 1, 4]})
        >>> s = random_split(df, 0.3, seed=0, cold_start="keep")
        >>> d = save_split(s, tempfile.mkdtemp() + "/split")
        >>> load_split(d).item_map.values.tolist()
        ['a', 'b']
    """
    if not isinstance(split, Split):
        raise TypeError(f"save_split takes a Split; got {type(split).__name__}")
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = shareable_dir(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        pq.write_table(_map_table(split.user_map), tmp / "user_map.parquet")
        pq.write_table(_map_table(split.item_map), tmp / "item_map.parquet")
        counts = {}
        for name in _PARTS:
            part = getattr(split, name)
            if part is None:
                continue
            if part.user_map is not split.user_map and not np.array_equal(
                part.user_map.values, split.user_map.values
            ):
                raise DataError(f"the split's {name} part has its own user id map; cannot save")
            pq.write_table(_part_table(part), tmp / f"{name}.parquet")
            counts[name] = len(part)
        meta = {
            "format": "mfjax-split",
            "version": SPLIT_FORMAT_VERSION,
            "user_id_dtype": split.user_map.values.dtype.str,
            "item_id_dtype": split.item_map.values.dtype.str,
            "n_users": split.n_users,
            "n_items": split.n_items,
            "rows": counts,
            "info": split.info,
        }
        write_json_atomic(tmp / "meta.json", meta)
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _read_map(path: Path, dtype: str, name: str) -> IdMap:
    col = pq.read_table(path).column("id")
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values = np.asarray(col.to_pylist(), dtype=dtype if dtype.startswith("<U") else str)
    else:
        values = col.to_numpy().astype(np.dtype(dtype), copy=False)
    return IdMap(values, name=name)


def load_split(directory: str | os.PathLike[str]) -> Split:
    """Read a split written by :func:`save_split`.

    Raises:
        DataError: the folder is missing, incomplete or of another format; the message
            says which file and what to do (prepare the split again).
    """
    d = Path(directory)
    meta_path = d / "meta.json"
    if not meta_path.is_file():
        raise DataError(
            f"no saved split in {d} ({meta_path.name} is missing); run the prepare step "
            "(mfjax.io.save_split, or notebook 01_prepare) to create it"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{meta_path} is not valid JSON ({e}); prepare the split again") from e
    if meta.get("format") != "mfjax-split" or meta.get("version") != SPLIT_FORMAT_VERSION:
        raise DataError(
            f"{meta_path} is not an mfjax split of format version {SPLIT_FORMAT_VERSION} "
            f"(found {meta.get('format')!r} version {meta.get('version')!r}); prepare it again"
        )
    try:
        user_map = _read_map(d / "user_map.parquet", meta["user_id_dtype"], "user")
        item_map = _read_map(d / "item_map.parquet", meta["item_id_dtype"], "item")
        parts: dict[str, Interactions | None] = {}
        for name in _PARTS:
            if name not in meta["rows"]:
                parts[name] = None
                continue
            t = pq.read_table(d / f"{name}.parquet")
            ts = t.column("timestamp").to_numpy() if "timestamp" in t.column_names else None
            parts[name] = Interactions(
                t.column("user").to_numpy(),
                t.column("item").to_numpy(),
                t.column("value").to_numpy(),
                user_map,
                item_map,
                ts,
            )
            if len(parts[name]) != meta["rows"][name]:
                raise DataError(
                    f"{d / (name + '.parquet')} has {len(parts[name])} rows, meta.json says "
                    f"{meta['rows'][name]}; the folder is damaged, prepare the split again"
                )
    except (OSError, pa.ArrowInvalid, KeyError) as e:
        raise DataError(f"cannot read the split in {d} ({e}); prepare it again") from e
    return Split(train=parts["train"], test=parts["test"], valid=parts["valid"], info=meta["info"])

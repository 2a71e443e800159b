"""save_split / load_split: exact round trip (int and str ids), atomic replacement, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import mfjax.io as mio
from mfjax.datasets import synthetic
from mfjax.exceptions import DataError
from mfjax.interactions import IdMap, Interactions
from mfjax.splits import Split, per_user_split, random_split, temporal_split


def _assert_same_split(a: Split, b: Split) -> None:
    assert a.user_map.values.dtype == b.user_map.values.dtype
    assert a.item_map.values.dtype == b.item_map.values.dtype
    np.testing.assert_array_equal(a.user_map.values, b.user_map.values)
    np.testing.assert_array_equal(a.item_map.values, b.item_map.values)
    for part in ("train", "valid", "test"):
        x, y = getattr(a, part), getattr(b, part)
        assert (x is None) == (y is None), part
        if x is None:
            continue
        for attr in ("users", "items", "values"):
            np.testing.assert_array_equal(getattr(x, attr), getattr(y, attr))
            assert getattr(x, attr).dtype == getattr(y, attr).dtype
        if x.timestamps is None:
            assert y.timestamps is None
        else:
            np.testing.assert_array_equal(x.timestamps, y.timestamps)
            assert y.timestamps.dtype == np.int64
        # raw-id view is identical too
        pd.testing.assert_frame_equal(x.to_frame(), y.to_frame())
    assert a.info == b.info


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return synthetic(preset="small", seed=2)


def test_round_trip_int32_ids_with_validation(tmp_path, df):
    s = temporal_split(df, 0.2, valid_size=0.1)
    assert s.user_map.values.dtype == np.int32
    out = mio.save_split(s, tmp_path / "split")
    assert sorted(p.name for p in out.iterdir()) == [
        "item_map.parquet",
        "meta.json",
        "test.parquet",
        "train.parquet",
        "user_map.parquet",
        "valid.parquet",
    ]
    _assert_same_split(s, mio.load_split(out))


def test_round_trip_str_and_int64_ids_without_validation(tmp_path, df):
    f = df.assign(
        user="user-" + df.user.astype(str),
        item=df.item.astype(np.int64) * 10_000_000_000,  # needs int64
    ).drop(columns="timestamp")
    s = random_split(f, 0.25, seed=1, cold_start="keep")
    assert s.item_map.values.dtype == np.int64 and s.user_map.values.dtype.kind == "U"
    _assert_same_split(s, mio.load_split(mio.save_split(s, tmp_path / "s")))
    assert mio.load_split(tmp_path / "s").valid is None


def test_round_trip_object_str_ids_built_by_hand(tmp_path):
    um = IdMap(np.array(["b", "a", "ü"], dtype=object), name="user")
    im = IdMap(np.array([7, 3]), name="item")
    tr = Interactions(np.array([0, 2]), np.array([1, 0]), np.array([1.5, 2.0]), um, im)
    te = Interactions(np.array([1]), np.array([1]), np.array([3.0]), um, im)
    s = Split(train=tr, test=te, info={"method": "hand", "nested": {"a": [1, 2]}})
    _assert_same_split(s, mio.load_split(mio.save_split(s, tmp_path / "s")))


def test_overwrite_replaces_and_failure_keeps_previous(tmp_path, df, monkeypatch):
    d = tmp_path / "split"
    first = random_split(df, 0.2, seed=0)
    mio.save_split(first, d)
    second = per_user_split(df, 0.3, seed=1)
    mio.save_split(second, d)
    _assert_same_split(second, mio.load_split(d))

    calls = {"n": 0}
    real = mio.pq.write_table

    def flaky(table, where, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real(table, where, *a, **k)

    monkeypatch.setattr(mio.pq, "write_table", flaky)
    with pytest.raises(OSError, match="disk full"):
        mio.save_split(first, d)
    _assert_same_split(second, mio.load_split(d))  # the previous split is intact
    assert [p.name for p in tmp_path.iterdir()] == ["split"]  # no temporary folder left


def test_load_errors_say_what_to_do(tmp_path, df):
    with pytest.raises(DataError, match="no saved split in .*meta.json is missing.*prepare"):
        mio.load_split(tmp_path / "nowhere")
    d = mio.save_split(random_split(df, 0.2, seed=0), tmp_path / "s")
    meta = json.loads((d / "meta.json").read_text())
    meta["version"] = 99
    (d / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format version 1.*found 'mfjax-split' version 99"):
        mio.load_split(d)
    meta["version"] = 1
    (d / "meta.json").write_text(json.dumps(meta))
    (d / "test.parquet").unlink()
    with pytest.raises(DataError, match="cannot read the split.*prepare it again"):
        mio.load_split(d)
    with pytest.raises(TypeError, match="takes a Split"):
        mio.save_split(df, tmp_path / "x")

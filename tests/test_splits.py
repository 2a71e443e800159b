"""Split guarantees: exact partition, disjoint pairs, temporal order, cold-start policy,
determinism; hypothesis property tests over random inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mfjax.datasets import synthetic
from mfjax.exceptions import DataError
from mfjax.splits import (
    leave_last_n,
    per_user_split,
    random_split,
    split,
    temporal_split,
)


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return synthetic(preset="small", seed=3)


def _frames(s):
    parts = {"train": s.train.to_frame(), "test": s.test.to_frame()}
    if s.valid is not None:
        parts["valid"] = s.valid.to_frame()
    return parts


def _pairs(f: pd.DataFrame) -> set:
    return set(zip(f["user"].tolist(), f["item"].tolist(), strict=True))


def _check_partition(df: pd.DataFrame, s) -> None:
    """With cold_start='keep': the parts are exactly the input rows, nothing lost or doubled."""
    parts = _frames(s)
    got = pd.concat(parts.values(), ignore_index=True)
    cols = ["user", "item", "rating", "timestamp"]
    a = got[cols].sort_values(["user", "item"]).reset_index(drop=True)
    b = df[cols].sort_values(["user", "item"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    names = list(parts)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            assert not _pairs(parts[x]) & _pairs(parts[y]), (x, y)


@pytest.mark.parametrize(
    "fn, kw",
    [
        (random_split, {"test_size": 0.2, "valid_size": 0.1}),
        (per_user_split, {"test_size": 0.25, "valid_size": 0.2}),
        (per_user_split, {"n_test": 2, "n_valid": 1}),
        (temporal_split, {"test_size": 0.2, "valid_size": 0.1}),
        (leave_last_n, {"n": 2, "valid_n": 1}),
    ],
)
def test_partition_is_exact_and_disjoint(df, fn, kw):
    s = fn(df, seed=1, cold_start="keep", **kw)
    _check_partition(df, s)
    assert s.info["n_train"] + s.info["n_test"] + s.info["n_valid"] == len(df)
    # all parts share the training id maps
    assert s.test.user_map is s.train.user_map and s.valid.item_map is s.train.item_map


@pytest.mark.parametrize("method", ["random", "per_user", "temporal", "leave_last_n"])
def test_same_seed_same_split_other_seed_differs(df, method):
    a = split(df, method, seed=5, valid_size=0.1)
    b = split(df, method, seed=5, valid_size=0.1)
    for part in ("train", "valid", "test"):
        fa, fb = getattr(a, part).to_frame(), getattr(b, part).to_frame()
        pd.testing.assert_frame_equal(fa, fb)
    if method in ("random", "per_user"):
        c = split(df, method, seed=6, valid_size=0.1)
        assert _pairs(c.test.to_frame()) != _pairs(a.test.to_frame())


def test_per_user_fraction_is_per_user(df):
    s = per_user_split(df, 0.25, seed=0, cold_start="keep")
    n_u = df.groupby("user").size()
    expected = np.minimum(np.floor(n_u * 0.25 + 0.5), n_u - 1).astype(int)
    got = s.test.to_frame().groupby("user").size().reindex(n_u.index, fill_value=0)
    np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
    # every user keeps training rows
    assert (s.train.user_counts() >= 1).all()


def test_per_user_fixed_count_keeps_min_train():
    frame = pd.DataFrame(
        {"user": [1] * 6 + [2] * 2 + [3], "item": list(range(6)) + [0, 1] + [0], "rating": 3.0}
    )
    s = per_user_split(frame, n_test=3, min_train=2, seed=0, cold_start="keep")
    got = s.test.to_frame().groupby("user").size().to_dict()
    assert got == {1: 3}  # user 2 has only min_train rows, user 3 fewer
    assert s.train.to_frame().groupby("user").size().to_dict() == {1: 3, 2: 2, 3: 1}


def test_temporal_no_training_row_after_cutoff(df):
    s = temporal_split(df, 0.2, valid_size=0.25, cold_start="keep")
    cut, vcut = s.info["cutoff"], s.info["valid_cutoff"]
    assert s.train.timestamps.max() <= vcut <= cut
    assert s.valid.timestamps.max() <= cut < s.test.timestamps.min()
    assert s.valid.timestamps.min() > vcut
    # about 20 % of the rows are after the cut-off (ties stay in train)
    assert abs(s.info["n_test"] / len(df) - 0.2) < 0.01


def test_temporal_explicit_cutoff_date():
    frame = pd.DataFrame(
        {
            "user": [1, 1, 2, 2],
            "item": [1, 2, 1, 2],
            "rating": [5.0, 3, 4, 2],
            "timestamp": pd.to_datetime(["2020-01-01", "2020-06-01", "2021-01-01", "2021-06-01"])
            .astype("datetime64[s]")
            .astype("int64"),
        }
    )
    s = temporal_split(frame, cutoff="2020-12-31", cold_start="keep")
    assert sorted(s.test.to_frame().timestamp.tolist()) == frame.timestamp[2:].tolist()
    assert s.info["cutoff"] == int(pd.Timestamp("2020-12-31", tz="UTC").timestamp())


def test_leave_last_n_takes_each_users_latest(df):
    s = leave_last_n(df, 2, valid_n=1, seed=0, cold_start="keep")
    tr, va, te = s.train.to_frame(), s.valid.to_frame(), s.test.to_frame()
    # naive reference: sort each user's rows by time, newest first
    for u, g in df.groupby("user"):
        ts = np.sort(g.timestamp.to_numpy())[::-1]
        n_test = min(2, len(g) - 1)
        assert (te.user == u).sum() == n_test
        if n_test:
            assert (
                te.loc[te.user == u, "timestamp"].min() >= tr.loc[tr.user == u, "timestamp"].max()
            )
            np.testing.assert_array_equal(
                np.sort(te.loc[te.user == u, "timestamp"].to_numpy())[::-1], ts[:n_test]
            )
        if (va.user == u).any():
            assert (
                va.loc[va.user == u, "timestamp"].min() >= tr.loc[tr.user == u, "timestamp"].max()
            )


def test_cold_start_policies():
    # user 3 and item 9 appear once: wherever that row lands outside train, it is cold
    frame = pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 2, 3],
            "item": [1, 2, 3, 1, 2, 3, 9],
            "rating": 4.0,
            "timestamp": [1, 2, 3, 4, 5, 6, 7],
        }
    )
    drop = temporal_split(frame, cutoff=5)
    assert drop.info["test_cold_dropped"] == 1 and len(drop.test) == 1
    assert 3 not in drop.user_map.values.tolist()
    keep = temporal_split(frame, cutoff=5, cold_start="keep")
    assert len(keep.test) == 2 and keep.train.user_counts()[keep.user_map.codes([3])[0]] == 0
    with pytest.raises(DataError, match=r"user\(s\) with no training interaction.*\[3\]"):
        temporal_split(frame, cutoff=5, cold_start="raise")
    with pytest.raises(DataError, match="cold_start must be"):
        temporal_split(frame, cutoff=5, cold_start="ignore")


@pytest.mark.parametrize("bad", [0, 1, -0.1, 1.5])
def test_test_fraction_outside_unit_interval(df, bad):
    for method in ("random", "per_user", "temporal"):
        with pytest.raises(DataError, match=r"test_size must be a fraction in \(0, 1\)"):
            split(df, method, test_size=bad)


def test_bad_inputs_are_named(df):
    with pytest.raises(DataError, match="repeated \\(user, item\\) pair"):
        random_split(pd.concat([df, df.head(3)]), 0.2)
    with pytest.raises(DataError, match="needs a 'timestamp' column"):
        temporal_split(df.drop(columns="timestamp"), 0.2)
    with pytest.raises(DataError, match="no 'item' column"):
        per_user_split(df.drop(columns="item"), 0.2)
    with pytest.raises(DataError, match="unknown split method 'kfold'"):
        split(df, "kfold")
    with pytest.raises(DataError, match="n must be an integer >= 1"):
        leave_last_n(df, 0)
    with pytest.raises(DataError, match="test set empty"):
        temporal_split(df, cutoff=int(df.timestamp.max()))


def test_split_dispatcher_leave_last_n_ignores_test_size(df):
    s = split(df, "leave_last_n", test_size=0.3, valid_size=0.1, cold_start="keep")
    assert s.info["method"] == "leave_last_n" and s.info["valid_n"] == 1
    assert s.info["n_test"] == df.user.nunique()  # every small-preset user has >= 5 rows


def test_train_csr_is_users_by_items(df):
    s = random_split(df, 0.2, seed=0)
    m = s.train_csr()
    assert m.shape == (s.n_users, s.n_items)
    f = s.train.to_frame()
    r = f.iloc[7]
    u, i = s.user_map.codes([r["user"]])[0], s.item_map.codes([r["item"]])[0]
    assert m[u, i] == pytest.approx(r["rating"])
    assert m.nnz == len(f)


# ---------------------------------------------------------------------------- properties


@st.composite
def frames(draw):
    n_users = draw(st.integers(2, 12))
    n_items = draw(st.integers(2, 10))
    cells = draw(
        st.lists(
            st.tuples(st.integers(0, n_users - 1), st.integers(0, n_items - 1)),
            min_size=4,
            max_size=60,
            unique=True,
        )
    )
    n = len(cells)
    times = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))
    str_ids = draw(st.booleans())
    users = [f"u{u}" if str_ids else u for u, _ in cells]
    return pd.DataFrame(
        {
            "user": users,
            "item": [i for _, i in cells],
            "rating": np.arange(n, dtype=np.float32) % 5 + 1,
            "timestamp": np.asarray(times, dtype=np.int64),
        }
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=frames(),
    method=st.sampled_from(["random", "per_user", "temporal", "leave_last_n"]),
    test_size=st.floats(0.05, 0.9),
    valid_size=st.sampled_from([0.0, 0.2]),
    cold_start=st.sampled_from(["drop", "keep"]),
    seed=st.integers(0, 3),
)
def test_split_guarantees_hold_on_random_inputs(
    frame, method, test_size, valid_size, cold_start, seed
):
    try:
        s = split(
            frame,
            method,
            test_size=test_size,
            valid_size=valid_size,
            seed=seed,
            cold_start=cold_start,
        )
    except DataError as e:  # tiny inputs may leave a part empty: that must be said
        assert "empty" in str(e)
        return
    info = s.info
    # nothing lost, nothing duplicated: dropped cold-start rows are counted
    assert info["n_train"] + info["n_test"] + info["n_valid"] + info["test_cold_dropped"] + info[
        "valid_cold_dropped"
    ] == len(frame)
    parts = _frames(s)
    names = list(parts)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            assert not _pairs(parts[x]) & _pairs(parts[y])
    if cold_start == "keep":
        _check_partition(frame, s)
    else:  # with 'drop', every held-out user and item is known from training
        assert set(parts["test"].user) <= set(parts["train"].user)
        assert set(parts["test"].item) <= set(parts["train"].item)
    if method == "temporal":
        assert parts["train"].timestamp.max() <= info["cutoff"] < parts["test"].timestamp.min()
    if method == "per_user":
        assert set(parts["train"].user) == set(frame.user)  # nobody loses all training rows
    if method == "leave_last_n":
        tr = parts["train"].groupby("user").timestamp.max()
        te = parts["test"].groupby("user").timestamp.min()
        assert (te >= tr.reindex(te.index)).all()
    # deterministic
    again = split(
        frame, method, test_size=test_size, valid_size=valid_size, seed=seed, cold_start=cold_start
    )
    pd.testing.assert_frame_equal(again.test.to_frame(), parts["test"])

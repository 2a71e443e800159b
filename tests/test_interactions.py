"""Id maps and encoded interactions: codes, raw ids, CSR orientation, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mfjax.exceptions import DataError, UnknownIdError
from mfjax.interactions import IdMap, Interactions


def test_idmap_roundtrip_int_and_str():
    m = IdMap(np.array([10, 30, 20]), name="user")
    assert m.codes([20, 10, 30]).tolist() == [2, 0, 1]
    assert m.ids(np.array([2, 0])).tolist() == [20, 10]
    s = IdMap(np.array(["b", "a"], dtype=object), name="item")
    assert s.values.dtype.kind == "U"
    assert s.codes(["a"]).tolist() == [1]


def test_idmap_accepts_string_form_of_integer_ids():
    m = IdMap(np.array([7, 42]))
    assert m.codes(["42"]).tolist() == [1]


def test_idmap_unknown_raises_with_hint_or_ignores():
    m = IdMap(np.array([1, 2]), name="user")
    with pytest.raises(UnknownIdError, match=r"unknown user id\(s\) \[99\].*unknown='popular'"):
        m.codes([99])
    assert m.codes([99, 1], missing="ignore").tolist() == [-1, 0]


def test_idmap_rejects_duplicates():
    with pytest.raises(DataError, match="unique"):
        IdMap(np.array([1, 1]))


def test_from_frame_encodes_sorted_ids_and_builds_users_by_items_csr():
    df = pd.DataFrame(
        {
            "user": ["u2", "u1", "u2"],
            "item": [5, 7, 7],
            "rating": [4.0, 3.0, 1.0],
            "timestamp": [3, 2, 1],
        }
    )
    x = Interactions.from_frame(df)
    assert x.user_map.values.tolist() == ["u1", "u2"]
    assert x.item_map.values.tolist() == [5, 7]
    m = x.csr()
    assert m.shape == (2, 2)  # rows are users
    # hand-built expectation: u1 rated item 7 with 3; u2 rated 5 with 4 and 7 with 1
    np.testing.assert_array_equal(m.toarray(), [[0.0, 3.0], [4.0, 1.0]])
    assert x.item_counts().tolist() == [1, 2]
    assert x.user_counts().tolist() == [1, 2]
    back = x.to_frame()
    pd.testing.assert_frame_equal(
        back.sort_values(["user", "item"]).reset_index(drop=True),
        df.sort_values(["user", "item"]).reset_index(drop=True).astype({"rating": np.float32}),
    )


def test_from_frame_against_existing_maps_drops_or_raises_unknown():
    train = Interactions.from_frame(
        pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": [1.0, 2.0]})
    )
    test = pd.DataFrame({"user": [1, 3], "item": [1, 1], "rating": [5.0, 5.0]})
    with pytest.raises(DataError, match="unknown='drop'"):
        Interactions.from_frame(test, user_map=train.user_map, item_map=train.item_map)
    enc = Interactions.from_frame(
        test, user_map=train.user_map, item_map=train.item_map, unknown="drop"
    )
    assert len(enc) == 1 and enc.values.tolist() == [5.0]


def test_missing_column_is_named():
    with pytest.raises(DataError, match="'item' column"):
        Interactions.from_frame(pd.DataFrame({"user": [1], "rating": [1.0]}))


def test_implicit_frame_without_rating_gets_unit_weights():
    x = Interactions.from_frame(pd.DataFrame({"user": [1, 1], "item": [2, 3]}))
    assert x.values.tolist() == [1.0, 1.0]

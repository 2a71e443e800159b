"""Loading real formats, clear errors on bad input, cleaning, k-core, implicit, summary, plots."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from mfjax.data import (  # noqa: E402
    Normalizer,
    clean,
    gini,
    k_core,
    load_interactions,
    prepare,
    summarize,
    to_implicit,
    validate,
)
from mfjax.datasets import synthetic  # noqa: E402
from mfjax.exceptions import DataError  # noqa: E402
from mfjax.interactions import Interactions  # noqa: E402
from mfjax.plots.data import (  # noqa: E402
    data_summary_figure,
    item_popularity_plot,
    rating_distribution_plot,
    user_activity_plot,
)

ROWS = [(1, 10, 4.5, 100), (1, 20, 3.0, 200), (2, 10, 5.0, 150), (3, 30, 1.0, 50)]
EXPECTED = pd.DataFrame(
    {
        "user": np.array([r[0] for r in ROWS], dtype=np.int32),
        "item": np.array([r[1] for r in ROWS], dtype=np.int32),
        "rating": np.array([r[2] for r in ROWS], dtype=np.float32),
        "timestamp": np.array([r[3] for r in ROWS], dtype=np.int64),
    }
)


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _same(df):
    pd.testing.assert_frame_equal(df.reset_index(drop=True), EXPECTED)


# ------------------------------------------------------------------------------ formats


def test_csv_with_movielens_header(tmp_path):
    p = _write(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp"] + [
        ",".join(map(str, r)) for r in ROWS
    ])  # fmt: skip
    df = load_interactions(p)
    _same(df)
    assert df.attrs["implicit"] is False and df.attrs["source"] == str(p)


def test_udata_tab_without_header(tmp_path):
    p = _write(tmp_path / "u.data", ["\t".join(map(str, r)) for r in ROWS])
    _same(load_interactions(p))


def test_double_colon_dat(tmp_path):
    p = _write(tmp_path / "ratings.dat", ["::".join(map(str, r)) for r in ROWS])
    _same(load_interactions(p))


def test_semicolon_and_pipe_with_mapped_column_names(tmp_path):
    p = _write(
        tmp_path / "r.txt",
        ["when;who;what;score"] + [f"{r[3]};{r[0]};{r[1]};{r[2]}" for r in ROWS],
    )
    cols = {"user": "who", "item": "what", "rating": "score", "timestamp": "when"}
    _same(load_interactions(p, columns=cols))
    q = _write(tmp_path / "r2.txt", [f"{r[3]}|{r[0]}|{r[1]}|{r[2]}" for r in ROWS])
    _same(load_interactions(q, columns={"user": 1, "item": 2, "rating": 3, "timestamp": 0}))


def test_parquet(tmp_path):
    p = tmp_path / "r.parquet"
    EXPECTED.rename(columns={"user": "user_id", "item": "item_id"}).astype(
        {"user_id": "int64", "rating": "float64"}
    ).to_parquet(p)
    _same(load_interactions(p))


def test_implicit_without_rating_and_with_counts(tmp_path):
    p = _write(tmp_path / "clicks.csv", ["user_id,product_id", "a,x", "a,y", "b,x"])
    df = load_interactions(p)
    assert df.user.tolist() == ["a", "a", "b"] and df["item"].tolist() == ["x", "y", "x"]
    assert df.rating.tolist() == [1.0, 1.0, 1.0] and df.attrs["implicit"] is True
    assert "timestamp" not in df.columns
    q = _write(tmp_path / "plays.tsv", ["user\tartist\tplays", "1\t7\t12", "2\t7\t3"])
    df = load_interactions(q, columns={"item": "artist"})
    assert df.rating.tolist() == [12.0, 3.0] and df.attrs["implicit"] is True


def test_string_ids_and_date_timestamps(tmp_path):
    p = _write(
        tmp_path / "r.csv",
        ["user,item,rating,date", "u1,tt001,4,2020-01-01", "u2,tt002,3,2020-01-02 12:00:00"],
    )
    df = load_interactions(p)
    assert df.item.tolist() == ["tt001", "tt002"]
    assert df.timestamp.tolist() == [1577836800, 1577966400]
    assert df.timestamp.dtype == np.int64
    q = _write(tmp_path / "mixed.dat", ["1::2::5::100", "1::3::4::2020-01-01", "2::3::4::99.7"])
    assert load_interactions(q).timestamp.tolist() == [100, 1577836800, 99]
    bad = _write(tmp_path / "bad.dat", ["1::2::5::100", "1::3::4::yesterday"])
    with pytest.raises(DataError, match=r"data row 2: 'yesterday' is neither a number of seconds"):
        load_interactions(bad)


def test_large_integer_ids_fall_back_to_int64(tmp_path):
    p = _write(tmp_path / "r.csv", ["u,i,r", "1,5000000000,1", "2,3,2"])
    df = load_interactions(p, columns={"user": "u", "item": "i", "rating": "r"})
    assert df["item"].dtype == np.int64 and df["item"].tolist() == [5_000_000_000, 3]
    assert df["user"].dtype == np.int32


def test_quoted_fields_with_delimiters_inside(tmp_path):
    p = _write(
        tmp_path / "r.csv",
        ["user,item,rating", '1,"Heat, 1995",4', '2,"Up",5', '3,"Her, Again, 2013",3'],
    )
    df = load_interactions(p)
    assert df["item"].tolist() == ["Heat, 1995", "Up", "Her, Again, 2013"]
    assert df.rating.tolist() == [4.0, 5.0, 3.0]


def test_gzip_and_byte_order_mark(tmp_path):
    import gzip

    text = "\ufeffuserId,movieId,rating,timestamp\n" + "\n".join(
        ",".join(map(str, r)) for r in ROWS
    )
    p = tmp_path / "ratings.csv.gz"
    p.write_bytes(gzip.compress(text.encode("utf-8")))
    _same(load_interactions(p))


def test_synthetic_and_frame_sources():
    df = load_interactions("synthetic", n_users=30, n_items=20, n_ratings=200, seed=4)
    pd.testing.assert_frame_equal(df, synthetic(30, 20, 200, seed=4))
    v = load_interactions(pd.DataFrame({"user": [1], "item": [2], "rating": [3]}))
    assert v.rating.dtype == np.float32


# ------------------------------------------------------------------------------ bad input


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file: .*nope.csv"):
        load_interactions(tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv is empty"):
        load_interactions(tmp_path / "empty.csv")
    _write(tmp_path / "header_only.csv", ["userId,movieId,rating"])
    with pytest.raises(DataError, match="has a header .* but no data rows"):
        load_interactions(tmp_path / "header_only.csv")
    with pytest.raises(DataError, match="neither a file nor a known dataset name"):
        load_interactions("ml-100kk")


def test_wrong_delimiter_names_the_right_one(tmp_path):
    p = _write(tmp_path / "u.data", ["\t".join(map(str, r)) for r in ROWS])
    with pytest.raises(DataError, match=r"only one column with sep=','.*tab.*pass sep='\\t'"):
        load_interactions(p, sep=",")


def test_missing_required_column(tmp_path):
    p = _write(tmp_path / "r.csv", ["userId,film,rating", "1,2,3"])
    with pytest.raises(
        DataError, match=r"no 'item' column; found \['userId', 'film', 'rating'\]; pass columns="
    ):
        load_interactions(p)
    with pytest.raises(DataError, match="no column 'movie' \\(asked for as 'item'\\)"):
        load_interactions(p, columns={"item": "movie"})


def test_non_numeric_rating_names_row_and_column(tmp_path):
    p = _write(
        tmp_path / "r.csv", ["userId,movieId,rating", "1,2,3", "1,3,4", "2,2,great", "2,3,5"]
    )
    with pytest.raises(
        DataError, match=r"r.csv, column 'rating' \(rating\), data row 3 \(line 4\): 'great'"
    ):
        load_interactions(p)


def test_duplicate_header_row_is_recognised(tmp_path):
    head = "userId,movieId,rating,timestamp"
    lines = [head] + [",".join(map(str, r)) for r in ROWS[:2]] + [head]
    p = _write(tmp_path / "cat.csv", lines + [",".join(map(str, r)) for r in ROWS[2:]])
    with pytest.raises(DataError, match=r"data row 3 \(line 4\) repeats the header"):
        load_interactions(p)


def test_nan_and_inf_ratings(tmp_path):
    p = _write(tmp_path / "r.csv", ["userId,movieId,rating", "1,2,3", "1,3,", "2,2,inf", "2,3,NaN"])
    with pytest.raises(
        DataError, match=r"3 rating\(s\) are missing, NaN or infinite .*\[2, 3, 4\]"
    ):
        load_interactions(p)
    df = load_interactions(p, missing="drop")
    assert len(df) == 1 and df.attrs["dropped_missing"] == 3
    kept = load_interactions(p, missing="keep")
    assert len(kept) == 4 and np.isnan(kept.rating.iloc[1])


def test_missing_id_and_ragged_rows(tmp_path):
    p = _write(tmp_path / "r.csv", ["userId,movieId,rating", "1,2,3", ",3,4"])
    with pytest.raises(DataError, match=r"column 'userId' \(user\): 1 row\(s\) have no id"):
        load_interactions(p)
    q = _write(tmp_path / "ragged.csv", ["1,2,3", "1,3,4", "2,2,5,9"])
    with pytest.raises(DataError, match="ragged.csv|delimiter|fields"):
        load_interactions(q)


def test_validate_frame_errors():
    with pytest.raises(DataError, match="has no 'user' column"):
        validate(pd.DataFrame({"u": [1], "item": [1]}))
    with pytest.raises(DataError, match="non-numeric values at rows \\[1\\]"):
        validate(pd.DataFrame({"user": [1, 2], "item": [1, 1], "rating": ["4", "x"]}))


# ------------------------------------------------------------------------------ cleaning


@pytest.fixture
def dup_frame():
    return pd.DataFrame(
        {
            "user": [1, 1, 1, 2, 2, 3],
            "item": [5, 5, 5, 6, 7, 8],
            "rating": [2.0, 4.0, 3.0, 5.0, np.nan, 9.0],
            "timestamp": [30, 10, 20, 1, 2, 3],
        }
    )


@pytest.mark.parametrize(
    "policy, rating, ts",
    [("last", 2.0, 30), ("first", 4.0, 10), ("mean", 3.0, 30), ("sum", 9.0, 30)],
)
def test_duplicate_policies(dup_frame, policy, rating, ts):
    before = dup_frame.copy()
    out, rep = clean(dup_frame, duplicates=policy)
    pd.testing.assert_frame_equal(dup_frame, before)  # input untouched
    row = out[(out.user == 1) & (out["item"] == 5)]
    assert len(row) == 1 and row.rating.item() == rating and row.timestamp.item() == ts
    steps = rep.to_frame().set_index("step")
    assert steps.loc["duplicates", "removed"] == 2
    assert steps.loc["missing values", "removed"] == 1
    assert len(out) == 3


def test_duplicates_raise_and_scale_policies(dup_frame):
    with pytest.raises(DataError, match=r"1 \(user, item\) pair\(s\) occur more than once"):
        clean(dup_frame, duplicates="raise")
    with pytest.raises(DataError, match=r"outside the scale \[1, 5\].*out_of_scale='clip'"):
        clean(dup_frame, scale=(1, 5))
    clipped, _ = clean(dup_frame, scale=(1, 5), out_of_scale="clip")
    assert clipped.loc[clipped.user == 3, "rating"].item() == 5.0
    dropped, rep = clean(dup_frame, scale=(1, 5), out_of_scale="drop")
    assert 3 not in dropped.user.tolist() and rep.to_frame().removed.sum() == 4
    with pytest.raises(DataError, match="missing/non-finite rating"):
        clean(dup_frame, missing="raise")


def _naive_k_core(df, k_u, k_i):
    rows = list(zip(df.user, df["item"], strict=True))
    while True:
        uc, ic = {}, {}
        for u, i in rows:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        kept = [(u, i) for u, i in rows if uc[u] >= k_u and ic[i] >= k_i]
        if len(kept) == len(rows):
            return set(kept)
        rows = kept


@pytest.mark.parametrize("k_u, k_i", [(2, 2), (3, 5), (5, 3)])
def test_k_core_matches_naive_reference(k_u, k_i):
    df = synthetic(80, 60, 700, seed=k_u * 10 + k_i, min_user_ratings=1)
    out, rep = k_core(df, min_user=k_u, min_item=k_i)
    assert set(zip(out.user, out["item"], strict=True)) == _naive_k_core(df, k_u, k_i)
    assert out.groupby("user").size().min() >= k_u and out.groupby("item").size().min() >= k_i
    assert rep.steps[0]["removed"] == len(df) - len(out)


def test_k_core_that_empties_the_data_says_so():
    df = pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3]})
    with pytest.raises(DataError, match="removed every one of the 3 rows; lower min_user"):
        k_core(df, min_user=2, min_item=2)


def test_to_implicit_weights():
    df = pd.DataFrame({"user": [1, 1, 2], "item": [1, 2, 1], "rating": [5.0, 3.0, 4.0]})
    assert to_implicit(df, threshold=4).rating.tolist() == [1.0, 1.0]
    lin = to_implicit(df, threshold=None, weights="linear", alpha=2.0)
    assert lin.rating.tolist() == [11.0, 7.0, 9.0]
    log = to_implicit(df, threshold=4, weights="log", alpha=1.0)
    np.testing.assert_allclose(log.rating, 1 + np.log([6.0, 5.0]), rtol=1e-6)
    with pytest.raises(DataError, match="no rating reaches the implicit threshold 6"):
        to_implicit(df, threshold=6)


def test_normalizer_is_reversible():
    df = synthetic(40, 30, 300, seed=1)
    for method in ("global", "user"):
        nz = Normalizer.fit(df, method=method)
        z = nz.transform(df)
        back = nz.inverse(df.user.to_numpy(), z.rating.to_numpy())
        np.testing.assert_allclose(back, df.rating, atol=1e-5)
    nz = Normalizer.fit(df, method="user")
    means = df.groupby("user").rating.mean()
    np.testing.assert_allclose(nz.transform(df).groupby(df.user).rating.mean(), 0, atol=1e-5)
    assert nz.inverse([means.index[0]], [0.0])[0] == pytest.approx(means.iloc[0])
    assert nz.inverse([-99], [0.0])[0] == pytest.approx(df.rating.mean())  # unknown user


def test_prepare_reports_each_step(dup_frame):
    frame = dup_frame.assign(rating=dup_frame.rating.clip(upper=5))
    out, rep = prepare(frame, implicit=True, threshold=3, min_user_ratings=1)
    t = rep.to_frame()
    assert t.step.tolist() == ["load", "missing values", "duplicates", "implicit"]
    # (1, 5) keeps its latest rating 2.0, below the threshold; (2, 7) is NaN
    assert t.rows_after.iloc[-1] == len(out) == 2
    assert (t.rows_before - t.rows_after == t.removed).all()
    # users/items that lost all their rows: (2, 7) is NaN but user 2 keeps (2, 6); item 5
    # and user 1 go with the implicit threshold
    assert t.set_index("step").loc[
        "missing values", ["users_removed", "items_removed"]
    ].tolist() == [0, 1]
    assert t.set_index("step").loc["implicit", ["users_removed", "items_removed"]].tolist() == [
        1,
        1,
    ]
    assert set(out.rating) == {1.0}
    assert "<table" in rep._repr_html_()


# ------------------------------------------------------------------------------ summary


def test_summarize_against_hand_counts():
    df = pd.DataFrame(
        {"user": [1, 1, 1, 2, 2, 3], "item": [1, 2, 3, 1, 2, 1], "rating": [5, 4, 4, 3, 5, 1.0]}
    )
    s = summarize(df)
    assert (s["n_interactions"], s["n_users"], s["n_items"]) == (6, 3, 3)
    assert s["density"] == pytest.approx(6 / 9)
    assert s["rating_distribution"] == {1.0: 1, 3.0: 1, 4.0: 2, 5.0: 2}
    # item counts 3, 2, 1: gini by the mean-absolute-difference formula
    x = np.array([3, 2, 1.0])
    mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert s["item_gini"] == pytest.approx(mad)
    assert s["top10pct_item_share"] == pytest.approx(3 / 6)
    assert s["user_activity"]["q50"] == 2.0
    t = summarize(Interactions.from_frame(df), as_frame=True)
    assert t.set_index("statistic").loc["n_users", "value"] == 3
    assert gini([2, 2, 2]) == 0.0


def test_data_plots_show_the_data():
    df = synthetic(preset="small", seed=0)
    ax = rating_distribution_plot(df)
    heights = [p.get_height() for p in ax.patches]
    assert heights == df.rating.value_counts().sort_index().astype(float).tolist()
    ax = item_popularity_plot(df)
    y = ax.lines[0].get_ydata()
    np.testing.assert_array_equal(y, np.sort(df.groupby("item").size().to_numpy())[::-1])
    ax = user_activity_plot(df)
    assert sum(p.get_height() for p in ax.patches) == df.user.nunique()
    fig = data_summary_figure(df, title="small")
    assert len(fig.axes) == 3
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(
    "module", ["mfjax.data", "mfjax.datasets", "mfjax.splits", "mfjax.io", "mfjax.plots.data"]
)
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0

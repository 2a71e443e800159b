"""The synthetic generator's shape and signal; named datasets: real files, offline errors,
checksummed downloads from local archives."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mfjax.datasets as ds
from mfjax.data import gini, load_interactions
from mfjax.exceptions import DataError
from mfjax.splits import random_split

# ------------------------------------------------------------------------------ synthetic


def test_default_synthetic_shape_and_dtypes():
    df = ds.synthetic()
    assert list(df.columns) == ["user", "item", "rating", "timestamp"]
    assert df.dtypes.astype(str).tolist() == ["int32", "int32", "float32", "int64"]
    assert len(df) == 50_000 and df.user.nunique() == 1000 and df.item.nunique() == 600
    assert not df.duplicated(["user", "item"]).any()
    assert set(np.unique(df.rating)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert df.groupby("user").size().min() >= 5
    assert df.user.min() == 1 and df.user.max() == 1000  # raw ids are not codes
    span = df.timestamp.max() - df.timestamp.min()
    assert 2 * 365 * 86400 < span <= 3 * 365 * 86400


def test_realistic_shape_long_tail_and_skewed_activity():
    df = ds.synthetic()
    items = df.groupby("item").size().to_numpy()
    users = df.groupby("user").size().to_numpy()
    assert gini(items) > 0.3  # long tail: uniform popularity would give ~0.05
    top = np.sort(items)[::-1][: len(items) // 10].sum() / len(df)
    assert 0.25 < top < 0.7
    assert users.max() / np.median(users) > 4  # a few heavy users
    assert 3.2 < df.rating.mean() < 4.0  # MovieLens-like mean rating


def test_same_seed_same_frame_other_seed_differs():
    a = ds.synthetic(200, 100, 3000, seed=7)
    pd.testing.assert_frame_equal(a, ds.synthetic(200, 100, 3000, seed=7))
    b = ds.synthetic(200, 100, 3000, seed=8)
    assert not a.equals(b)


def test_low_rank_signal_beats_bias_only():
    """A rank-16 ALS written here (numpy, independent of mfjax's models) beats the regularised
    bias-only predictor on test RMSE by a wide margin, and the planted truth beats both."""
    df, truth = ds.synthetic(return_truth=True)
    s = random_split(df, 0.2, seed=0)
    tr, te = s.train, s.test
    mu = tr.values.mean()
    bu, bi = np.zeros(tr.n_users), np.zeros(tr.n_items)
    for _ in range(5):
        r = tr.values - mu - bi[tr.items]
        bu = np.bincount(tr.users, r, tr.n_users) / (
            np.bincount(tr.users, minlength=tr.n_users) + 5
        )
        r = tr.values - mu - bu[tr.users]
        bi = np.bincount(tr.items, r, tr.n_items) / (
            np.bincount(tr.items, minlength=tr.n_items) + 5
        )

    def rmse(pred):
        return float(np.sqrt(np.mean((te.values - pred) ** 2)))

    base = mu + bu[te.users] + bi[te.items]
    k, lam = 16, 8.0
    res = tr.values - mu - bu[tr.users] - bi[tr.items]
    shape = (tr.n_users, tr.n_items)
    m = sp.csr_matrix((res, (tr.users, tr.items)), shape=shape)
    ind = sp.csr_matrix((np.ones(len(res)), (tr.users, tr.items)), shape=shape)
    rng = np.random.default_rng(0)
    p, q = rng.normal(0, 0.1, (shape[0], k)), rng.normal(0, 0.1, (shape[1], k))

    def solve(ind, m, f):
        a = (ind @ (f[:, :, None] * f[:, None, :]).reshape(len(f), -1)).reshape(-1, k, k)
        return np.linalg.solve(a + lam * np.eye(k), (m @ f)[..., None])[..., 0]

    for _ in range(8):
        p = solve(ind, m, q)
        q = solve(ind.T.tocsr(), m.T.tocsr(), p)
    mf = base + np.einsum("nk,nk->n", p[te.users], q[te.items])
    uid, iid = s.user_map.ids(te.users) - 1, s.item_map.ids(te.items) - 1
    oracle = (
        truth["mean"]
        + truth["user_bias"][uid]
        + truth["item_bias"][iid]
        + np.einsum("nk,nk->n", truth["user_factors"][uid], truth["item_factors"][iid])
    )
    assert rmse(mf) < 0.85 * rmse(base), (rmse(mf), rmse(base))
    assert rmse(np.clip(oracle, 1, 5)) < rmse(mf)


def test_benchmark_preset_is_fast_and_exact():
    t = time.perf_counter()
    df = ds.synthetic(preset="benchmark")
    seconds = time.perf_counter() - t
    assert len(df) == 1_000_000 and not df.duplicated(["user", "item"]).any()
    assert df.user.nunique() == 6040 and df.item.nunique() == 3706
    assert seconds < 20, seconds  # ~1.5 s alone on this machine; generous for shared CPUs


@pytest.mark.parametrize("a", [0.9, 1.0])
def test_popularity_sampler_draws_its_stated_probabilities(a):
    rng = np.random.default_rng(0)
    pop = ds._Popularity(rng.permutation(40), a)
    p = pop.prob
    assert p.sum() == pytest.approx(1.0)
    # mass by rank is the binned power law plus 5 % uniform (computed here independently)
    r = np.arange(1, 41.0)
    if a == 1.0:
        mass = np.log((r + 1) / r) / np.log(41.0)
    else:
        mass = ((r + 1) ** (1 - a) - r ** (1 - a)) / (41.0 ** (1 - a) - 1)
    np.testing.assert_allclose(p[pop.rank_items], 0.95 * mass + 0.05 / 40)
    n = 400_000
    freq = np.bincount(pop.draw(rng, n), minlength=40) / n
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n))


def test_dense_request_is_exact():
    df = ds.synthetic(20, 10, 190, seed=1)  # 95 % of all cells
    assert len(df) == 190 and not df.duplicated(["user", "item"]).any()
    full = ds.synthetic(7, 5, 35, seed=2)
    assert len(full) == 35 and full.groupby("user").size().eq(5).all()


def test_synthetic_bad_arguments():
    with pytest.raises(ValueError, match="exceeds n_users \\* n_items = 50"):
        ds.synthetic(10, 5, 51)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        ds.synthetic(preset="huge")
    with pytest.raises(ValueError, match="n_users must be >= 1"):
        ds.synthetic(0, 5, 5)


# ------------------------------------------------------------------------------ real data

DATA_DIR = os.environ.get("MFJAX_DATA_DIR")


def _need(name: str, fname: str) -> None:
    if not DATA_DIR:
        pytest.skip("MFJAX_DATA_DIR is not set (point it at ../shared/data for real-data tests)")
    if not (Path(DATA_DIR) / name / fname).is_file():
        pytest.skip(f"{name}/{fname} is absent from MFJAX_DATA_DIR={DATA_DIR}")


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["ml-100k", "ml-latest-small", "movietweetings-100k"])
def test_named_datasets_have_published_counts(name):
    spec = ds.DATASETS[name]
    _need(name, spec.ratings)
    df = load_interactions(name, download=False)
    assert (len(df), df.user.nunique(), df.item.nunique()) == spec.counts
    assert df.dtypes.astype(str).tolist() == ["int32", "int32", "float32", "int64"]
    assert not df.duplicated(["user", "item"]).any()
    assert hashlib.sha256(Path(ds.dataset_path(name, download=False)).read_bytes()).hexdigest()
    meta = ds.load_item_metadata(name, download=False)
    assert {"item", "title", "genres"} <= set(meta.columns)
    assert df["item"].isin(meta["item"]).all()  # every rated item has a title


@pytest.mark.realdata
def test_ml100k_titles_are_latin1_and_genres_named():
    _need("ml-100k", "u.item")
    meta = ds.load_item_metadata("ml-100k", download=False).set_index("item")
    assert meta.loc[1, "title"] == "Toy Story (1995)"
    assert meta.loc[1, "genres"] == "Animation|Children's|Comedy"
    assert meta.title.str.contains("é").any()  # latin-1 accents decoded


@pytest.mark.realdata
def test_movietweetings_file_is_the_checksummed_snapshot():
    _need("movietweetings-100k", "ratings.dat")
    p = ds.dataset_path("movietweetings-100k", download=False)
    got = hashlib.sha256(p.read_bytes()).hexdigest()
    assert got == ds.DATASETS["movietweetings-100k"].file_sha256["ratings.dat"]


# ------------------------------------------------------------------------------ downloads


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """No MFJAX_DATA_DIR, a fresh cwd and project root: nothing is on disk."""
    monkeypatch.delenv("MFJAX_DATA_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "project"
    monkeypatch.setattr(ds, "PROJECT_ROOT", root)
    return root


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("network is unreachable (simulated)")


def test_offline_and_absent_says_which_file_where(sandbox, monkeypatch):
    monkeypatch.setattr(ds.urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError) as e:
        load_interactions("ml-100k")
    msg = str(e.value)
    assert "download failed" in msg and "network is unreachable" in msg
    assert "Put u.data (from https://files.grouplens.org/datasets/movielens/ml-100k.zip)" in msg
    assert str(sandbox / "data" / "raw" / "ml-100k" / "u.data") in msg
    assert "MFJAX_DATA_DIR" in msg
    with pytest.raises(DataError, match=r"not found \(download=False\)\. Put ratings.csv"):
        load_interactions("ml-latest-small", download=False)
    assert not any((sandbox / "data" / "raw").glob("*.zip"))


def test_data_raw_under_cwd_is_found(sandbox, tmp_path):
    d = tmp_path / "data" / "raw" / "ml-100k"
    d.mkdir(parents=True)
    (d / "u.data").write_text("1\t2\t3\t4\n5\t6\t1\t8\n")
    df = load_interactions("ml-100k", download=False)
    assert df.user.tolist() == [1, 5] and df.attrs["source"] == "ml-100k"


def _fake_archive(tmp_path: Path) -> tuple[Path, str]:
    z = tmp_path / "upstream" / "ml-100k.zip"
    z.parent.mkdir()
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("ml-100k/u.data", "1\t10\t4\t100\n2\t10\t5\t200\n2\t11\t3\t300\n")
        f.writestr("ml-100k/u.item", "10|Ten (1999)|x|y|z\n11|Eleven (2001)|x|y|z\n")
        f.writestr("ml-100k/README", "fake")
    return z, hashlib.sha256(z.read_bytes()).hexdigest()


def test_download_verifies_checksum_and_unpacks(sandbox, tmp_path, monkeypatch):
    z, sha = _fake_archive(tmp_path)
    spec = dataclasses.replace(ds.DATASETS["ml-100k"], url=z.as_uri(), sha256=sha)
    monkeypatch.setitem(ds.DATASETS, "ml-100k", spec)
    df = load_interactions("ml-100k")
    assert df.item.tolist() == [10, 10, 11]
    raw = sandbox / "data" / "raw"
    assert (raw / "ml-100k.zip").read_bytes() == z.read_bytes()
    assert sorted(p.name for p in (raw / "ml-100k").iterdir()) == ["u.data", "u.item"]
    meta = ds.load_item_metadata("ml-100k")
    assert meta.title.tolist() == ["Ten (1999)", "Eleven (2001)"]


def test_checksum_mismatch_discards_the_download(sandbox, tmp_path, monkeypatch):
    z, sha = _fake_archive(tmp_path)
    spec = dataclasses.replace(ds.DATASETS["ml-100k"], url=z.as_uri(), sha256="0" * 64)
    monkeypatch.setitem(ds.DATASETS, "ml-100k", spec)
    with pytest.raises(DataError, match=f"checksum mismatch .*SHA-256 {sha}, expected 0000"):
        load_interactions("ml-100k")
    raw = sandbox / "data" / "raw"
    assert not (raw / "ml-100k.zip").exists() and not list(raw.glob(".ml-100k.zip*"))
    assert not (raw / "ml-100k" / "u.data").exists()


def test_per_file_download_and_unverified_warning(sandbox, tmp_path, monkeypatch):
    up = tmp_path / "mt"
    up.mkdir()
    (up / "ratings.dat").write_text("1::0104257::8::1365029107\n2::0104257::7::1365029108\n")
    (up / "movies.dat").write_text("0104257::A Movie (1992)::Drama|War\n")
    good = hashlib.sha256((up / "ratings.dat").read_bytes()).hexdigest()
    spec = dataclasses.replace(
        ds.DATASETS["movietweetings-100k"],
        file_urls={
            "ratings.dat": (up / "ratings.dat").as_uri(),
            "movies.dat": (up / "movies.dat").as_uri(),
        },
        file_sha256={"ratings.dat": good},  # movies.dat has none: accepted with a warning
    )
    monkeypatch.setitem(ds.DATASETS, "movietweetings-100k", spec)
    with pytest.warns(UserWarning, match="movies.dat .* has no published SHA-256"):
        df = load_interactions("movietweetings-100k")
    assert df["item"].tolist() == [104257, 104257] and df.rating.tolist() == [8.0, 7.0]
    meta = ds.load_item_metadata("movietweetings-100k")
    assert meta.to_dict("records") == [
        {"item": 104257, "title": "A Movie (1992)", "genres": "Drama|War"}
    ]


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="unknown dataset 'ml-7m'"):
        ds.dataset_path("ml-7m")
    assert ds.load_item_metadata("synthetic") is None

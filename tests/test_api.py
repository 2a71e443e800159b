"""The curated public API: every exported name resolves; a saved model loads in a fresh process."""

from __future__ import annotations

import doctest
import subprocess
import sys

import mfjax


def test_every_exported_name_resolves():
    for name in mfjax.__all__:
        assert getattr(mfjax, name) is not None, name


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mfjax.nope  # noqa: B018


def test_package_docstring_example_runs():
    result = doctest.testmod(mfjax, verbose=False)
    assert result.attempted >= 4 and result.failed == 0


def test_load_in_a_fresh_process_restores_any_model(tmp_path):
    df = mfjax.synthetic(preset="small", seed=1)
    split = mfjax.random_split(df, 0.2, seed=0)
    model = mfjax.BPR(factors=4, epochs=2, seed=0).fit(split, progress=False)
    path = model.save(tmp_path / "bpr.npz")
    user = split.user_map.values[0]
    expected = model.recommend(user, k=5)[0].tolist()
    code = (
        "import sys, mfjax; m = mfjax.load(sys.argv[1]); "
        "print(m.recommend(int(sys.argv[2]), k=5)[0].tolist())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), str(user)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == str(expected)

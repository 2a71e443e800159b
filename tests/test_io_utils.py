"""Atomic writes: readers never see partial files; failures leave the old file intact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mfjax._io_utils import atomic_path, write_json_atomic


def test_write_json_atomic_converts_numpy(tmp_path):
    p = write_json_atomic(tmp_path / "a" / "m.json", {"x": np.float32(0.5), "n": np.int64(3)})
    assert json.loads(p.read_text()) == {"x": 0.5, "n": 3}
    assert [f.name for f in p.parent.iterdir()] == ["m.json"]  # no temporary left behind


def test_failed_write_keeps_previous_file(tmp_path):
    target = tmp_path / "m.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(f.name for f in tmp_path.iterdir()) == ["m.json"]


def test_atomic_files_get_the_usual_mode_not_mkstemps_0600(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        p = write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o644

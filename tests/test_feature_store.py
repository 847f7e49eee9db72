"""The one on-disk feature store (create_bench.features.store): keyed, atomic, checksummed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from create_bench.errors import DataError
from create_bench.features.store import FeatureKey, FeatureStore, StoredFeatures

KEY = FeatureKey("fp0", "train", "uniform-center@8/v1", (32, 32), "fixed-v2")


def _entry() -> StoredFeatures:
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((3, 4, 5)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=np.uint8)
    return StoredFeatures(
        ["b", "a", "视频c"], {"feats": feats, "mask": mask}, {"titles": [["标题"], [], ["x"]]}
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, prefix="p-")
    assert store.get(KEY) is None
    path = store.put(KEY, _entry())
    assert path.parent == tmp_path and path.name.startswith("p-") and path.suffix == ".safetensors"
    got = store.get(KEY)
    assert got is not None and got.vids == ["b", "a", "视频c"] and got.extra == _entry().extra
    for name, a in _entry().arrays.items():
        assert got.arrays[name].dtype == a.dtype
        np.testing.assert_array_equal(got.arrays[name], a)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize(
    "other",
    [
        FeatureKey("fp1", "train", "uniform-center@8/v1", (32, 32), "fixed-v2"),
        FeatureKey("fp0", "test", "uniform-center@8/v1", (32, 32), "fixed-v2"),
        FeatureKey("fp0", "train", "uniform-center@4/v1", (32, 32), "fixed-v2"),
        FeatureKey("fp0", "train", "uniform-center@8/v1", None, "fixed-v2"),
        FeatureKey("fp0", "train", "uniform-center@8/v1", (32, 32), "fixed-v1"),
    ],
)
def test_every_key_field_is_another_entry(tmp_path: Path, other: FeatureKey) -> None:
    store = FeatureStore(tmp_path)
    store.put(KEY, _entry())
    assert store.path(other) != store.path(KEY) and store.get(other) is None


def test_damaged_or_foreign_entries_miss(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    path = store.put(KEY, _entry())
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF  # a flipped bit in the data: the checksum fails
    path.write_bytes(bytes(raw))
    assert store.get(KEY) is None
    path.write_bytes(b"not a safetensors file")
    assert store.get(KEY) is None
    other = FeatureKey("fp9", "train", "uniform-center@8/v1", (32, 32), "fixed-v2")
    store.put(other, _entry()).replace(path)  # an entry of another key under this key's name
    assert store.get(KEY) is None
    store.put(KEY, _entry())  # recomputed: replaced
    assert store.get(KEY) is not None


def test_arrays_must_have_one_row_per_vid(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not match 2 vids"):
        FeatureStore(tmp_path).put(KEY, StoredFeatures(["a", "b"], {"feats": np.zeros((3, 2), np.float32)}))

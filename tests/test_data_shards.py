"""Streaming reader: projection, deterministic shuffling, disjoint partitions across ranks and workers."""

from __future__ import annotations

from pathlib import Path

import pytest

from create_bench.data import shards
from create_bench.data.build import DatasetWriter
from create_bench.errors import DataError, ManifestError
from create_bench.video.probe import probe_video


@pytest.fixture(scope="module")
def ds137(tmp_path_factory, mp4_factory) -> Path:
    """137 train rows in 3 shards with 64-row row groups: uneven on purpose."""
    out = tmp_path_factory.mktemp("shards") / "ds"
    b = mp4_factory(6)
    meta = probe_video(b).to_dict()
    with DatasetWriter(out, name="t", categories=["a", "b"], shard_size=50) as w:
        for i in range(137):
            w.add(
                dict(
                    vid=f"v{i:04d}",
                    split="train",
                    category=i % 2,
                    tags=["t"],
                    raw_title=f"r{i}",
                    titles=[f"t{i}"],
                    captions=[f"c{i}"],
                    video={"bytes": b, "path": None},
                    **meta,
                )
            )
    return out


ALL = {f"v{i:04d}" for i in range(137)}


def _vids(ds, **kw):
    return [r["vid"] for r in shards.iter_rows(ds, "train", ["vid"], **kw)]


@pytest.mark.parametrize("batch_size", [1, 7, 64, 500])
def test_every_row_once_unsharded(ds137, batch_size):
    got = _vids(ds137, batch_size=batch_size)
    assert len(got) == 137 and set(got) == ALL
    assert got == sorted(got)  # no shuffle: manifest order


@pytest.mark.parametrize("seed", [None, 0, 5])
@pytest.mark.parametrize("world,workers", [(2, 2), (3, 1), (1, 4), (4, 3)])
def test_partitions_exactly_once(ds137, seed, world, workers):
    parts = [
        _vids(
            ds137, batch_size=5, shuffle_seed=seed, rank=r, world_size=world, worker_id=w, num_workers=workers
        )
        for r in range(world)
        for w in range(workers)
    ]
    flat = [v for p in parts for v in p]
    assert len(flat) == 137 and set(flat) == ALL
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1  # balanced, no padding


def test_shuffle_is_seeded_and_epoch_dependent(ds137):
    a = _vids(ds137, shuffle_seed=1)
    assert a == _vids(ds137, shuffle_seed=1)
    assert a != _vids(ds137, shuffle_seed=2)
    assert a != _vids(ds137, shuffle_seed=1, epoch=1)
    assert set(a) == ALL and a != sorted(a)


def test_two_ranks_two_dataloader_workers(ds137):
    """Real torch DataLoader worker processes: worker ids come from get_worker_info."""
    import torch
    from torch.utils.data import DataLoader, IterableDataset

    class DS(IterableDataset):
        def __init__(self, rank):
            self.rank = rank

        def __iter__(self):
            for b in shards.iter_batches(ds137, "train", ["vid"], batch_size=4, rank=self.rank, world_size=2):
                yield from b.column("vid").to_pylist()

    seen = []
    for rank in range(2):
        dl = DataLoader(DS(rank), batch_size=None, num_workers=2, multiprocessing_context="fork")
        seen += list(dl)
    assert len(seen) == 137 and set(seen) == ALL
    assert torch.utils.data.get_worker_info() is None


def test_projection_skips_video(ds137):
    t = shards.read_table(ds137, "train", ["vid", "titles"])
    assert t.column_names == ["vid", "titles"] and t.num_rows == 137
    with pytest.raises(DataError, match="unknown column"):
        shards.read_table(ds137, "train", ["nope"])
    with pytest.raises(DataError, match="no split 'test'"):
        shards.read_table(ds137, "test")


def test_video_source(ds137, tmp_path):
    row = next(shards.iter_rows(ds137, "train", ["vid", "video"]))
    assert isinstance(shards.video_source(row, ds137), bytes)
    assert shards.video_source({"video": {"bytes": None, "path": "x.mp4"}}, tmp_path) == tmp_path / "x.mp4"
    with pytest.raises(DataError, match="neither"):
        shards.video_source({"vid": "q", "video": {"bytes": None, "path": None}}, tmp_path)


def test_not_a_dataset(tmp_path):
    with pytest.raises(ManifestError, match="manifest.json missing"):
        shards.open_dataset(tmp_path)
    (tmp_path / "manifest.json").write_text("{oops")
    with pytest.raises(ManifestError, match="not valid JSON"):
        shards.open_dataset(tmp_path)

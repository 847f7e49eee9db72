"""The loader: every video exactly once across workers and ranks, the same frames as a direct
decode, padding, skip/fail reporting, features instead of frames, normalisation."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from video_util import encode_video, pattern_frames

from create_bench.data.build import DatasetWriter
from create_bench.data.shards import read_table, video_source
from create_bench.errors import ConfigError, DataError, VideoDecodeError
from create_bench.loader import DEFAULT_SIZE, LoaderReport, make_loader, video_seed
from create_bench.video import decode, sample_indices

GOOD = {f"ok{i}": n for i, n in enumerate([20, 30, 5, 24, 12, 40, 9, 16])}
BAD = ("bad-trunc", "bad-junk")


def _row(vid: str, video: dict, num_frames: int, fps: float = 25.0) -> dict:
    return dict(
        vid=vid,
        split="test",
        category=len(vid) % 2,
        tags=[f"标签{vid}"],
        raw_title=f"原标题 {vid}",
        titles=[f"标题{vid}-{k}" for k in range(3)],
        captions=[f"描述{vid}-{k}" for k in range(3)],
        video=video,
        num_frames=num_frames,
        fps=fps,
        duration=num_frames / fps,
        width=64,
        height=48,
    )


@pytest.fixture(scope="module")
def mixed_ds(tmp_path_factory) -> Path:
    """10 test videos in row groups of 3: 8 good (one with only 5 frames), a truncated one, junk;
    plus a feature set 'feat' with [T, 8] features for every video (T varies)."""
    out = tmp_path_factory.mktemp("loader") / "mixed"
    good = encode_video(pattern_frames(40, 64, 48, seed=1), gop=10)
    rng = np.random.default_rng(0)
    feats = {}
    with DatasetWriter(out, name="mixed", categories=["a", "b"], shard_size=3) as w:
        order = ["ok0", "ok1", "bad-trunc", "ok2", "ok3", "ok4", "bad-junk", "ok5", "ok6", "ok7"]
        for vid in order:
            if vid == "bad-trunc":
                w.add(_row(vid, {"bytes": good[: len(good) // 2], "path": None}, 40))
            elif vid == "bad-junk":
                w.add(_row(vid, {"bytes": b"\x00junk" * 200, "path": None}, 10))
            else:
                n = GOOD[vid]
                data = encode_video(pattern_frames(n, 64, 48, seed=len(vid) + n))
                w.add(_row(vid, {"bytes": data, "path": None}, n))
            feats[vid] = rng.standard_normal((3 + len(feats) % 4, 8)).astype(np.float32)
            w.add_features("feat", "test", vid, feats[vid])
    np.save(out.parent / "feats.npy", feats, allow_pickle=True)
    return out


def _collect(loader) -> tuple[list[str], dict[str, dict]]:
    vids, per = [], {}
    for batch in loader:
        for i, vid in enumerate(batch["vid"]):
            vids.append(vid)
            per[vid] = {k: (v[i] if v is not None else None) for k, v in batch.items()}
    return vids, per


@pytest.mark.parametrize("num_workers", [0, 1, 2])
def test_every_video_once_with_the_frames_of_a_direct_decode(tiny_dataset, num_workers):
    table = read_table(tiny_dataset, "test", ["vid", "num_frames", "fps", "video"]).to_pylist()
    loader = make_loader(tiny_dataset, "test", batch_size=5, num_workers=num_workers, size=(32, 48))
    vids, per = _collect(loader)
    assert len(vids) == len(table) and set(vids) == {r["vid"] for r in table}
    assert loader.report.complete and loader.report.videos == len(table) and loader.report.num_skipped == 0
    for row in table:
        got = per[row["vid"]]
        idx = sample_indices(row["num_frames"], "uniform-center@8")
        want = decode(video_source(row, tiny_dataset), idx, size=(32, 48))
        assert got["frames"].dtype == torch.uint8 and tuple(got["frames"].shape) == (8, 32, 48, 3)
        assert np.array_equal(got["frames"].numpy()[: len(idx)], want)
        assert got["frame_indices"].tolist()[: len(idx)] == idx
        assert got["frame_mask"].sum().item() == len(idx)


def test_two_ranks_times_two_workers_exactly_once(tiny_dataset):
    all_vids = set(read_table(tiny_dataset, "test", ["vid"]).column("vid").to_pylist())
    seen = []
    for rank in range(2):
        loader = make_loader(
            tiny_dataset, "test", batch_size=2, num_workers=2, size=16, rank=rank, world_size=2
        )
        vids, _ = _collect(loader)
        assert vids, f"rank {rank} got nothing"
        seen.append(vids)
    flat = seen[0] + seen[1]
    assert len(flat) == len(all_vids) and set(flat) == all_vids  # no duplicates, no padding
    assert not set(seen[0]) & set(seen[1])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_bad_videos_are_skipped_counted_and_reported(mixed_ds, num_workers, caplog):
    loader = make_loader(mixed_ds, "test", batch_size=4, num_workers=num_workers, size=(24, 32), timeout=None)
    with caplog.at_level(logging.WARNING, logger="create_bench.loader"):
        vids, _ = _collect(loader)
    assert sorted(vids) == sorted(GOOD)
    rep = loader.report
    assert isinstance(rep, LoaderReport) and rep.complete
    assert rep.videos == len(GOOD) and rep.num_skipped == 2
    assert {s.vid for s in rep.skipped} == set(BAD)
    assert all("VideoDecodeError" in s.reason for s in rep.skipped)
    summary = rep.summary()
    assert "2 skipped" in summary and "bad-trunc" in summary and "bad-junk" in summary
    assert any("bad-junk" in r.getMessage() for r in caplog.records)
    assert rep.to_dict()["skipped"][0]["vid"] in BAD


@pytest.mark.parametrize("num_workers", [0, 1])
def test_fail_mode_raises_naming_the_vid(mixed_ds, num_workers):
    loader = make_loader(mixed_ds, "test", batch_size=4, num_workers=num_workers, size=16, on_error="fail")
    with pytest.raises(VideoDecodeError, match="bad-trunc"):
        _collect(loader)


def test_short_video_is_padded_by_repeating_its_last_frame(mixed_ds):
    loader = make_loader(mixed_ds, "test", batch_size=3, size=(24, 32), timeout=None)
    _, per = _collect(loader)
    short = per["ok2"]  # 5 frames, policy asks for 8
    assert short["frame_mask"].tolist() == [True] * 5 + [False] * 3
    assert short["frame_indices"].tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    f = short["frames"]
    assert all(torch.equal(f[k], f[4]) for k in range(5, 8))
    assert not torch.equal(f[3], f[4])
    assert per["ok1"]["frame_mask"].all()


def test_features_instead_of_frames(mixed_ds):
    feats = np.load(mixed_ds.parent / "feats.npy", allow_pickle=True).item()
    for workers in (0, 2):
        loader = make_loader(mixed_ds, "test", batch_size=4, num_workers=workers, features="feat")
        vids, per = _collect(loader)
        assert sorted(vids) == sorted(feats)  # no decoding, so the broken videos are fine here
        for vid, want in feats.items():
            got = per[vid]
            t = want.shape[0]
            assert "frames" not in got and got["features"].dtype == torch.float32
            assert np.array_equal(got["features"][:t].numpy(), want)
            assert got["frame_mask"].tolist()[:t] == [True] * t and not got["frame_mask"][t:].any()
    with pytest.raises(DataError, match="feature set"):
        make_loader(mixed_ds, "test", features="nope")


def test_normalised_float_frames(mixed_ds):
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain = _collect(make_loader(mixed_ds, "test", batch_size=4, size=(24, 32), timeout=None))[1]
    norm = _collect(
        make_loader(mixed_ds, "test", batch_size=4, size=(24, 32), mean=mean, std=std, timeout=None)
    )[1]
    x = plain["ok0"]["frames"].numpy().astype(np.float32) / 255.0  # [T, H, W, 3]
    want = ((x - np.array(mean, np.float32)) / np.array(std, np.float32)).transpose(0, 3, 1, 2)
    got = norm["ok0"]["frames"]
    assert got.dtype == torch.float32 and tuple(got.shape) == (8, 3, 24, 32)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_random_policy_is_seeded_per_video_and_epoch(mixed_ds):
    def indices(workers: int, epoch: int = 0) -> dict[str, list[int]]:
        loader = make_loader(
            mixed_ds,
            "test",
            frames="random-segment@4",
            batch_size=2,
            num_workers=workers,
            size=16,
            shuffle_seed=7,
        )
        loader.set_epoch(epoch)
        return {v: b["frame_indices"].tolist() for v, b in _collect(loader)[1].items()}

    a = indices(0)
    assert a == indices(2)  # the same draws whatever the worker split
    assert a != indices(0, epoch=1)
    assert a["ok1"] == sample_indices(30, "random-segment@4", seed=video_seed(7, 0, "ok1"))


def test_texts_and_columns(mixed_ds):
    loader = make_loader(mixed_ds, "test", batch_size=10, size=16, texts=True, columns=("tags", "category"))
    batch = next(iter(loader))
    assert set(batch) >= {
        "vid",
        "frames",
        "frame_mask",
        "frame_indices",
        "tags",
        "category",
        "titles",
        "captions",
    }
    assert "raw_title" not in batch
    i = batch["vid"].index("ok0")
    assert batch["titles"][i] == [f"标题ok0-{k}" for k in range(3)] and batch["tags"][i] == ["标签ok0"]


def test_mixed_sizes_at_the_stored_size_need_a_size(tiny_dataset):
    loader = make_loader(tiny_dataset, "test", batch_size=12, size=None)
    with pytest.raises(ConfigError, match="size="):
        _collect(loader)


def test_the_readme_call_yields_batches_of_mixed_size_videos(tiny_dataset):
    """README's "Loading a split" call, on a dataset whose videos have different stored sizes:
    the default size resizes them all to DEFAULT_SIZE, so they share batches."""
    shapes = {
        (r["height"], r["width"]) for r in read_table(tiny_dataset, "test", ["height", "width"]).to_pylist()
    }
    assert len(shapes) > 1  # the point of the test: mixed sizes
    loader = make_loader(tiny_dataset, "test", frames="uniform-center@8", batch_size=8, num_workers=2)
    batches = list(loader)
    assert batches and sum(len(b["vid"]) for b in batches) == loader.report.videos == len(
        read_table(tiny_dataset, "test", ["vid"])
    )
    assert any(len(b["vid"]) > 1 for b in batches)
    for b in batches:
        assert tuple(b["frames"].shape) == (len(b["vid"]), 8, *DEFAULT_SIZE, 3)
    row = read_table(tiny_dataset, "test", ["vid", "num_frames", "video"]).to_pylist()[0]
    idx = sample_indices(row["num_frames"], "uniform-center@8")
    got = next(b["frames"][b["vid"].index(row["vid"])] for b in batches if row["vid"] in b["vid"])
    assert np.array_equal(
        got.numpy()[: len(idx)], decode(video_source(row, tiny_dataset), idx, size=DEFAULT_SIZE)
    )


def test_a_hanging_video_times_out_and_is_skipped(tmp_path):
    out = tmp_path / "hang"
    data = encode_video(pattern_frames(10, 32, 32))
    with DatasetWriter(out, name="hang", categories=["a", "b"]) as w:
        w.add(_row("fine", {"bytes": data, "path": None}, 10))
        w.add(_row("stuck", {"bytes": None, "path": "videos/stuck.mp4"}, 10))
    (out / "videos").mkdir()
    os.mkfifo(out / "videos" / "stuck.mp4")  # opening it blocks forever inside the decoder
    loader = make_loader(out, "test", batch_size=2, size=16, timeout=1.0)
    vids, _ = _collect(loader)
    assert vids == ["fine"]
    assert [(s.vid, s.reason.split(":")[0]) for s in loader.report.skipped] == [("stuck", "DecodeTimeout")]


@pytest.mark.parametrize(
    "kw",
    [
        dict(batch_size=0),
        dict(num_workers=-1),
        dict(on_error="ignore"),
        dict(frames="uniform@8"),
        dict(backend="cv2"),
        dict(timeout=0),
        dict(rank=0),
        dict(mean=(1, 2)),
        dict(std=0),
    ],
)
def test_bad_options(mixed_ds, kw):
    with pytest.raises((ConfigError, DataError)):
        make_loader(mixed_ds, "test", **kw)


def test_unknown_split(mixed_ds):
    with pytest.raises(DataError, match="split"):
        make_loader(mixed_ds, "nope")


@pytest.mark.parametrize("timeout", [None, 60.0])
@pytest.mark.parametrize("size", [(24, 32), None])
def test_batches_hold_the_frames_of_a_direct_decode_around_skips(mixed_ds, timeout, size):
    """Videos decode straight into their batch slot: a skipped video mid-batch, a padded short
    one and earlier batches (still held here) all keep exactly the frames of a direct decode."""
    table = {r["vid"]: r for r in read_table(mixed_ds, "test", ["vid", "num_frames", "video"]).to_pylist()}
    loader = make_loader(mixed_ds, "test", batch_size=3, size=size, timeout=timeout)
    batches = list(loader)  # every batch kept alive while later ones are made
    assert loader.report.num_skipped == 2
    seen = []
    for batch in batches:
        frames = batch["frames"].numpy()
        assert frames.shape[1:] == (8, *(size or (48, 64)), 3)
        for i, vid in enumerate(batch["vid"]):
            seen.append(vid)
            idx = sample_indices(table[vid]["num_frames"], "uniform-center@8")
            want = decode(video_source(table[vid], mixed_ds), idx, size=size)
            assert np.array_equal(frames[i, : len(idx)], want), vid
            assert all(np.array_equal(frames[i, k], want[-1]) for k in range(len(idx), 8)), vid
            assert batch["frame_indices"][i].tolist() == idx + [idx[-1]] * (8 - len(idx))
    assert sorted(seen) == sorted(GOOD)


@pytest.mark.parametrize("num_workers", [0, 1])
def test_variable_length_policy_pads_to_the_longest_in_the_batch(mixed_ds, num_workers):
    table = {
        r["vid"]: r for r in read_table(mixed_ds, "test", ["vid", "num_frames", "fps", "video"]).to_pylist()
    }
    loader = make_loader(mixed_ds, "test", frames="fps@20", batch_size=4, num_workers=num_workers, size=16)
    for batch in loader:
        lengths = [int(m.sum()) for m in batch["frame_mask"]]
        assert batch["frames"].shape[1] == max(lengths)
        for i, vid in enumerate(batch["vid"]):
            row = table[vid]
            idx = sample_indices(row["num_frames"], "fps@20", fps=row["fps"])
            assert lengths[i] == len(idx)
            want = decode(video_source(row, mixed_ds), idx, size=16)
            assert np.array_equal(batch["frames"][i, : len(idx)].numpy(), want), vid


def test_stored_size_one_video_per_batch(tiny_dataset):
    table = read_table(tiny_dataset, "test", ["vid", "num_frames", "video"]).to_pylist()
    _, per = _collect(make_loader(tiny_dataset, "test", batch_size=1, size=None))
    for row in table:
        idx = sample_indices(row["num_frames"], "uniform-center@8")
        want = decode(video_source(row, tiny_dataset), idx)
        assert np.array_equal(per[row["vid"]]["frames"].numpy()[: len(idx)], want)


def test_batch_arrays_are_reused_only_once_dropped(mixed_ds):
    """A batch the caller still holds is never written again; a dropped batch's array is reused."""
    table = {r["vid"]: r for r in read_table(mixed_ds, "test", ["vid", "num_frames", "video"]).to_pylist()}
    loader = make_loader(mixed_ds, "test", batch_size=2, size=(24, 32), timeout=None)
    kept, addresses = [], []
    for _epoch in range(2):
        for i, batch in enumerate(loader):
            addresses.append(batch["frames"].data_ptr())
            if i % 2 == 0:
                kept.append(batch)
            del batch  # the loop variable would hold the last one through the next fetch
    assert loader.dataset._pool.arrays  # dropped batches' arrays came back for reuse
    held = [b["frames"].data_ptr() for b in kept]
    assert len(set(held)) == len(held)
    for batch in kept:
        for i, vid in enumerate(batch["vid"]):
            idx = sample_indices(table[vid]["num_frames"], "uniform-center@8")
            want = decode(video_source(table[vid], mixed_ds), idx, size=(24, 32))
            assert np.array_equal(batch["frames"][i, : len(idx)].numpy(), want), vid

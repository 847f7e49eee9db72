"""ALWIG training at scale: data streamed by rank from feature shards in a world-size-independent
order, mid-epoch checkpoints, resuming on another world size (exactly-once samples)."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from alwig_util import small_cfg

from create_bench.errors import ConfigError, DataError
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.training.alwig.batches import text_choices_at
from create_bench.training.alwig.features import SplitData, _read_dataset_features
from create_bench.training.alwig.stream import (
    LaneStream,
    assign_lanes,
    lane_order,
    merge_moments,
    unit_features,
)
from create_bench.training.alwig.train import TrainOptions, train

SET, DIM, T = "syn", 12, 4
#: A tiny ALWIG on precomputed features (the feature set this module writes).
CFG = dict(
    encoder="features",
    feature_set=SET,
    feature_dim=DIM,
    frames="uniform-center@4",
    num_frames=T,
    frame_size=None,
    hidden_size=32,
    num_heads=2,
    ffn_size=64,
    align_layers=1,
    text_layers=1,
    embed_dim=16,
    gpt_layers=1,
    gpt_heads=2,
    gpt_width=32,
    max_gen_len=16,
    max_text_len=24,
    dropout=0.0,
    max_tags=4,
    tag_dropout=0.5,
    batch_size=4,
    epochs=2,
    pretrain_epochs=1,
    eval_every=1,
)


def cfg_of(**kw: Any) -> ALWIGConfig:
    return small_cfg(**{**CFG, **kw})


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


# ------------------------------------------------------------------------------------ fixtures
def _write_feature_set(
    data: Path, split: str, n_files: int, row_group: int, rng: np.random.Generator
) -> None:
    """Random per-frame features for every video of ``split``, in a shuffled row order, several
    files of small row groups, some videos with fewer and some with more frames than the model takes;
    listed in the manifest as ``create-bench extract`` lists its shards."""
    from create_bench.data.shards import read_table
    from create_bench.fsutil import sha256_file

    vids = read_table(data, split, columns=["vid"]).column("vid").to_pylist()
    vids = [vids[i] for i in rng.permutation(len(vids))]
    frames = rng.choice([T, T, T, 2, 6], size=len(vids))
    feats = [rng.standard_normal((int(t), DIM)).astype(np.float32) * 3 + 1 for t in frames]
    root = data / "features" / SET
    root.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((data / "manifest.json").read_text())
    cuts = np.linspace(0, len(vids), n_files + 1).astype(int)
    for i in range(n_files):
        lo, hi = cuts[i], cuts[i + 1]
        table = pa.table(
            {
                "vid": pa.array(vids[lo:hi], pa.string()),
                "features": pa.array([f.tolist() for f in feats[lo:hi]], pa.list_(pa.list_(pa.float32()))),
            }
        )
        path = root / f"{split}-{i:05d}-of-{n_files:05d}.parquet"
        pq.write_table(table, path, row_group_size=row_group)
        manifest["files"].append(
            {
                "path": path.relative_to(data).as_posix(),
                "sha256": sha256_file(path),
                "rows": int(hi - lo),
                "split": split,
                "kind": "features",
                "feature_set": SET,
            }
        )
    manifest.setdefault("feature_sets", {})[SET] = {"dim": DIM}
    (data / "manifest.json").write_text(json.dumps(manifest, indent=2))


@pytest.fixture(scope="module")
def feat_dataset(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample plus a feature set: train 24 videos in 3 files of row groups of 5, etc."""
    data = tmp_path_factory.mktemp("stream") / "ds"
    shutil.copytree(tiny_dataset, data)
    rng = np.random.default_rng(7)
    _write_feature_set(data, "train", 3, 5, rng)
    _write_feature_set(data, "validation", 1, 4, rng)
    _write_feature_set(data, "pretrain", 2, 3, rng)
    return data


def _split_vids(data: Path, split: str) -> list[str]:
    from create_bench.data.shards import read_table

    return read_table(data, split, columns=["vid"]).column("vid").to_pylist()


def _stream(
    data: Path, split: str, rank: int, world: int, lanes: int = 4, block: int = 2, **kw: Any
) -> LaneStream:
    return LaneStream(
        data,
        split,
        feature_set=SET,
        num_frames=T,
        feature_dim=DIM,
        lanes=lanes,
        block=block,
        seed=[0, 1],
        rank=rank,
        world_size=world,
        **kw,
    )


def _streams(data: Path, split: str, world: int, **kw: Any) -> list[LaneStream]:
    """Every rank's stream of a simulated world, its epoch length agreed as the trainer's all-reduce does."""
    streams = [_stream(data, split, r, world, **kw) for r in range(world)]
    steps = min(s.local_steps for s in streams)
    for s in streams:
        s.set_steps(steps)
    return streams


def _global_steps(streams: list[LaneStream], epoch: int, start: int = 0) -> list[list[str]]:
    """The vids of each global batch: the ranks' shares concatenated in rank order."""
    per_rank = []
    for s in streams:
        steps = []
        for w in s.windows(epoch, start):
            steps += [w.vids[i * w.lanes : (i + 1) * w.lanes] for i in range(w.stop - w.first)]
        per_rank.append(steps)
    return [sum(parts, []) for parts in zip(*per_rank)]


# ---------------------------------------------------------------------------- the pure order
@pytest.mark.parametrize("lanes", [1, 2, 3, 4, 7, 16, 40])
def test_lanes_cover_every_row_once_in_near_equal_ranges(lanes: int) -> None:
    rng = np.random.default_rng(lanes)
    sizes = [int(x) for x in rng.integers(0, 9, size=11)]
    out = assign_lanes(sizes, lanes, [3, 1])
    assert len(out) == lanes
    rows = [(x.unit, r) for lane in out for x in lane for r in range(x.lo, x.hi)]
    assert sorted(rows) == [(u, r) for u, n in enumerate(sizes) for r in range(n)]
    total = sum(sizes)
    assert sorted({sum(x.hi - x.lo for x in lane) for lane in out}) in (
        [total // lanes],
        [total // lanes, total // lanes + 1],
    )
    # a lane is one contiguous stretch of the seeded unit order
    order = [int(u) for u in np.random.default_rng([3, 1]).permutation(len(sizes))]
    flat = [(u, r) for u in order for r in range(sizes[u])]
    assert [(x.unit, r) for lane in out for x in lane for r in range(x.lo, x.hi)] == flat
    assert out == assign_lanes(sizes, lanes, [3, 1])


def test_lane_order_permutes_pieces_then_rows_within_blocks() -> None:
    pieces = [np.arange(10, 15), np.arange(20, 22), np.arange(30, 39)]
    a = lane_order(pieces, 4, [5])
    assert sorted(a.tolist()) == sorted(np.concatenate(pieces).tolist())
    perm = np.random.default_rng([5]).permutation(3)
    seq = np.concatenate([pieces[i] for i in perm])
    for lo in range(0, len(seq), 4):  # each block holds the same rows as the piece order's block
        assert sorted(a[lo : lo + 4].tolist()) == sorted(seq[lo : lo + 4].tolist())
    assert np.array_equal(a, lane_order(pieces, 4, [5]))
    assert not np.array_equal(a, lane_order(pieces, 4, [6]))
    assert np.array_equal(lane_order(pieces, 1, [5]), seq)  # block 1: pieces permuted, rows in order


def test_merge_moments_matches_numpy_on_the_whole() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((101, 5)) * 4 + 2
    parts = []
    for lo, hi in [(0, 1), (1, 40), (40, 40), (40, 101)]:
        p = x[lo:hi]
        if len(p):
            parts.append((float(len(p)), p.mean(0), ((p - p.mean(0)) ** 2).sum(0)))
    n, mean, m2 = merge_moments(parts)
    assert n == 101
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(np.sqrt(m2 / n), x.std(0), rtol=1e-12)


@pytest.mark.parametrize("kinds", [1, 2])
def test_text_choices_of_rank_shares_make_the_one_process_choices(kinds: int) -> None:
    n = 8
    data = SplitData(
        "x",
        [f"v{i}" for i in range(n)],
        torch.zeros(n, 1, 1),
        torch.ones(n, 1, dtype=torch.bool),
        [[f"t{i}{j}" for j in range(i % 5)] for i in range(n)],
        [[f"title{i}-{j}" for j in range(1 + i % 3)] for i in range(n)],
        [[f"cap{i}-{j}" for j in range(1 + i % 4)] for i in range(n)],
        [""] * n,
    )
    cfg = cfg_of(gen_kinds_per_video=kinds, tag_dropout=0.4, batch_size=n)
    rows = [3, 1, 4, 0, 5, 7, 2, 6]  # row at global position p
    whole = text_choices_at(data, rows, range(n), cfg, "finetune", 11, n)
    for world in (2, 4, 8):
        share = n // world
        parts = [
            text_choices_at(
                data,
                rows[r * share : (r + 1) * share],
                range(r * share, (r + 1) * share),
                cfg,
                "finetune",
                11,
                n,
            )
            for r in range(world)
        ]
        assert {k: sum((p[k] for p in parts), []) for k in whole} == whole
    assert all(whole["caption"][p] in data.captions[r] for p, r in enumerate(rows))
    assert all(set(whole["tags"][p]) <= set(data.tags[r]) for p, r in enumerate(rows))
    assert whole != text_choices_at(data, rows, range(n), cfg, "finetune", 12, n)


# ------------------------------------------------------------------------------ the lane stream
def test_streamed_features_equal_the_in_memory_reader(feat_dataset: Path) -> None:
    """Padding, spreading of long videos and the mask, against the trainer's whole-split reader (features.py)."""
    ref = _read_dataset_features(feat_dataset, "train", cfg_of())
    by_vid = {v: i for i, v in enumerate(ref["vids"])}
    (s,) = _streams(feat_dataset, "train", 1)
    seen = 0
    for w in s.windows(0):
        for j, vid in enumerate(w.vids):
            assert torch.equal(w.feats[j], ref["feats"][by_vid[vid]]), vid
            assert torch.equal(w.mask[j], ref["mask"][by_vid[vid]]), vid
            seen += 1
    assert seen == s.steps * 4 and not ref["mask"].all() and ref["mask"].any(1).all()


def test_unit_features_names_the_vid_of_a_bad_row(tmp_path: Path) -> None:
    t = pa.table(
        {
            "vid": ["a", "b"],
            "features": pa.array([[[1.0] * DIM], [[1.0] * (DIM - 1)]], pa.list_(pa.list_(pa.float32()))),
        }
    )
    with pytest.raises(DataError, match="width 11.*vid 'b'"):
        unit_features(t, T, DIM, tmp_path / "x.parquet")


def test_each_rank_reads_its_own_rows_and_the_order_ignores_the_world_size(feat_dataset: Path) -> None:
    everything = set(_split_vids(feat_dataset, "train"))
    one = _streams(feat_dataset, "train", 1)
    assert one[0].steps == 6  # 24 videos, 4 lanes of 6
    for epoch in (0, 1):
        ref = _global_steps(one, epoch)
        flat = [v for b in ref for v in b]
        assert len(flat) == len(set(flat)) == 24 and set(flat) == everything  # every video once
        for world in (2, 4):
            ranks = _streams(feat_dataset, "train", world)
            mine = [set(s.vids.to_pylist()) for s in ranks]
            assert sum(len(m) for m in mine) == 24 and set().union(*mine) == everything  # disjoint reads
            assert _global_steps(ranks, epoch) == ref
            # resuming mid-epoch (position 3, mid-window) gives the remaining steps, in order
            assert _global_steps(ranks, epoch, start=3) == ref[3:]
    assert _global_steps(one, 0) != _global_steps(one, 1)


def test_untrainable_rows_are_never_streamed(feat_dataset: Path) -> None:
    vids = sorted(_split_vids(feat_dataset, "train"))
    drop = set(vids[::5])

    def keep_fn(raw: str, titles: list[str], captions: list[str]) -> bool:
        return not any(t in banned for t in titles)

    from create_bench.data.shards import read_table

    table = read_table(feat_dataset, "train", columns=["vid", "titles"]).to_pylist()
    banned = {r["titles"][0] for r in table if r["vid"] in drop}
    ranks = _streams(feat_dataset, "train", 2, keep=keep_fn)
    steps = _global_steps(ranks, 0)
    flat = [v for b in steps for v in b]
    assert not set(flat) & drop and len(flat) == len(set(flat))
    # the epoch is as long as the poorest lane allows; the rest waits for another epoch
    assert len(steps) == min(s.local_steps for s in ranks) and len(flat) <= 24 - len(drop)


def test_stream_needs_features_for_every_row_and_a_row_per_lane(feat_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="at least one trainable row"):
        _streams(feat_dataset, "validation", 1, lanes=16)  # 8 videos, 16 lanes
    broken = tmp_path / "ds"
    shutil.copytree(feat_dataset, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    manifest["files"] = [
        f
        for f in manifest["files"]
        if not (f.get("kind") == "features" and f["path"].endswith("train-00001-of-00003.parquet"))
    ]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="has 16 rows for split 'train', the split has 24"):
        _stream(broken, "train", 0, 1)


# ---------------------------------------------------------------------------------- training
def _opts(data: Path, out: Path, **kw: Any) -> TrainOptions:
    cfg = kw.pop("cfg", cfg_of())
    base: dict[str, Any] = dict(
        pretrain=True,
        progress=False,
        log_every=1,
        stream="on",
        stream_block=2,
        cache_dir=out.parent / "cache",
    )
    return TrainOptions(data, out, cfg, **{**base, **kw})


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


def _log(out: Path) -> list[dict[str, Any]]:
    recs = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "clips_per_s"} for r in recs]


def _consumed(sample_log: Path, upto: tuple[str, int] | None = None) -> dict[tuple[str, int], list[str]]:
    """(phase, step) -> the global batch's vids (ranks' shares in rank order), from a run's sample
    log; with ``upto`` only the steps up to and including that saved position."""
    files = sorted(sample_log.glob("rank*-of-*.jsonl"), key=lambda p: int(p.name[4:].split("-")[0]))
    out: dict[tuple[str, int], list[str]] = {}
    order = {"pretrain": 0, "finetune": 1}
    for f in files:
        for line in f.read_text().splitlines():
            r = json.loads(line)
            key = (r["phase"], r["step"])
            if upto is not None and (order[key[0]], key[1]) > (order[upto[0]], upto[1]):
                continue
            out.setdefault(key, []).extend(r["vids"])
    return out


@pytest.fixture(scope="module")
def reference(feat_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An uninterrupted streamed run on one process (pre-training 1 epoch, fine-tuning 2)."""
    out = tmp_path_factory.mktemp("ref") / "ck"
    summary = train(_opts(feat_dataset, out, sample_log=out.parent / "samples"))
    return {"out": out, "summary": summary, "steps": _consumed(out.parent / "samples"), "log": _log(out)}


def test_streamed_run_consumes_every_sample_once_per_epoch(
    feat_dataset: Path, reference: dict[str, Any]
) -> None:
    summary, steps = reference["summary"], reference["steps"]
    assert summary["stream"]["phases"] == ["pretrain", "finetune"]
    assert summary["phases"]["pretrain"]["steps"] == 2 and summary["phases"]["finetune"]["steps"] == 12
    pre = [v for (p, _), b in steps.items() if p == "pretrain" for v in b]
    assert sorted(pre) == sorted(_split_vids(feat_dataset, "pretrain"))
    for epoch in range(2):
        vids = [
            v
            for (p, s), b in steps.items()
            if p == "finetune" and 6 * epoch < s <= 6 * (epoch + 1)
            for v in b
        ]
        assert sorted(vids) == sorted(_split_vids(feat_dataset, "train"))
    record = json.loads((reference["out"] / "config.json").read_text())
    assert record["training"]["stream"]["phases"] == ["pretrain", "finetune"]


def test_mid_epoch_resume_is_exact(feat_dataset: Path, tmp_path: Path, reference: dict[str, Any]) -> None:
    """Stopped after 5 steps (pre-training 2 + fine-tuning 3), the last state saved at fine-tuning
    step 2: the resumed run redoes step 3 and ends with the uninterrupted run's weights and log."""
    out = tmp_path / "ck"
    res = train(
        _opts(feat_dataset, out, checkpoint_every=2, interrupt_after_steps=5, sample_log=tmp_path / "s1")
    )
    assert res == {"interrupted": True, "phase": "finetune", "epoch": 1, "step": 3}
    state = json.loads((out / "train_state" / "state.json").read_text())
    assert (state["phase"], state["epoch"], state["epoch_step"], state["step"]) == ("finetune", 0, 2, 2)
    assert [p.name for p in (out / "train_state").iterdir() if p.is_dir()] == [state["ckpt"]]
    train(_opts(feat_dataset, out, checkpoint_every=2, resume=True, sample_log=tmp_path / "s2"))
    first, second = _consumed(tmp_path / "s1", upto=("finetune", 2)), _consumed(tmp_path / "s2")
    assert not set(first) & set(second) and {**first, **second} == reference["steps"]
    assert _log(out) == reference["log"]  # step 3 of the first run was dropped from the log
    a, b = _weights(reference["out"]), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mid_epoch_resume_restores_dropout_rng(feat_dataset: Path, tmp_path: Path) -> None:
    cfg = cfg_of(dropout=0.2, epochs=1)
    full = tmp_path / "full"
    train(_opts(feat_dataset, full, cfg=cfg, pretrain=False))
    part = tmp_path / "part"
    train(_opts(feat_dataset, part, cfg=cfg, pretrain=False, checkpoint_every=3, interrupt_after_steps=4))
    train(_opts(feat_dataset, part, cfg=cfg, pretrain=False, checkpoint_every=3, resume=True))
    a, b = _weights(full), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_in_memory_mid_epoch_resume_is_exact(feat_dataset: Path, tmp_path: Path) -> None:
    cfg = cfg_of(dropout=0.1)
    full = tmp_path / "full"
    train(_opts(feat_dataset, full, cfg=cfg, stream="off", sample_log=tmp_path / "s0"))
    part = tmp_path / "part"
    res = train(
        _opts(
            feat_dataset,
            part,
            cfg=cfg,
            stream="off",
            checkpoint_every=4,
            interrupt_after_steps=11,
            sample_log=tmp_path / "s1",
        )
    )
    assert res["interrupted"] and res["step"] == 9  # last saved: step 8 (epoch 2, position 2)
    train(
        _opts(
            feat_dataset,
            part,
            cfg=cfg,
            stream="off",
            checkpoint_every=4,
            resume=True,
            sample_log=tmp_path / "s2",
        )
    )
    steps = {**_consumed(tmp_path / "s1", upto=("finetune", 8)), **_consumed(tmp_path / "s2")}
    assert steps == _consumed(tmp_path / "s0")
    assert _log(part) == _log(full)
    a, b = _weights(full), _weights(part)
    assert all(torch.equal(a[k], b[k]) for k in a)
    record = json.loads((full / "config.json").read_text())
    assert record["training"]["stream"]["phases"] == []


def test_stream_options_are_checked(feat_dataset: Path, tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encoder: features"):
        train(_opts(tiny_dataset, tmp_path / "a", cfg=cfg_of(encoder="fixed", frame_size=(32, 32))))
    with pytest.raises(ConfigError, match="stream must be"):
        train(_opts(feat_dataset, tmp_path / "a", stream="maybe"))
    # auto keeps a small split in memory
    out = tmp_path / "auto"
    summary = train(
        _opts(feat_dataset, out, stream="auto", pretrain=False, checkpoint_every=1, interrupt_after_steps=1)
    )
    assert summary["interrupted"]
    with pytest.raises(ConfigError, match="another data order"):
        train(_opts(feat_dataset, out, stream="on", pretrain=False, max_steps=2, resume=True))
    with pytest.raises(ConfigError, match="another data order"):
        train(_opts(feat_dataset, out, stream="on", pretrain=False, max_steps=2, resume=True, stream_block=3))


def test_cli_stream_flags(feat_dataset: Path, tmp_path: Path) -> None:
    import yaml

    from create_bench.cli import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({**CFG, "epochs": 1}), encoding="utf-8")
    out = tmp_path / "cli"
    argv = [
        "train",
        "alwig",
        "--data",
        str(feat_dataset),
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--no-progress",
    ]
    assert main([*argv, "--stream", "on", "--stream-block", "3", "--checkpoint-every", "2"]) == 0
    record = json.loads((out / "config.json").read_text())["training"]
    assert record["stream"] == {"mode": "on", "phases": ["finetune"], "block": 3}
    with pytest.raises(SystemExit, match="2"):
        main([*argv, "--stream", "sideways"])


# ------------------------------------------------------------------ resume on another world size
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank_worker(rank: int, world_size: int, port: int, opts: TrainOptions) -> None:
    import torch.distributed as dist

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world_size),
    )
    torch.set_num_threads(1)
    try:
        train(opts)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _run(opts: TrainOptions, world_size: int) -> None:
    if world_size == 1:
        train(opts)
        return
    import torch.multiprocessing as mp

    mp.spawn(_rank_worker, args=(world_size, _free_port(), opts), nprocs=world_size, join=True)


@pytest.mark.slow
@pytest.mark.parametrize("first,second", [(2, 1), (1, 2)])
def test_resume_on_another_world_size_consumes_each_sample_once(
    feat_dataset: Path, tmp_path: Path, reference: dict[str, Any], first: int, second: int
) -> None:
    """Stopped mid-epoch on ``first`` ranks, resumed on ``second``: the samples of every step are
    the one-process run's (so each sample of each epoch exactly once), the log continues."""
    out = tmp_path / "ck"
    kw: dict[str, Any] = dict(checkpoint_every=2, stream="on")
    _run(_opts(feat_dataset, out, interrupt_after_steps=7, sample_log=tmp_path / "s1", **kw), first)
    state = json.loads((out / "train_state" / "state.json").read_text())
    assert (state["phase"], state["epoch_step"], state["step"], state["world_size"]) == (
        "finetune",
        4,
        4,
        first,
    )
    _run(_opts(feat_dataset, out, resume=True, sample_log=tmp_path / "s2", **kw), second)
    s1, s2 = _consumed(tmp_path / "s1", upto=("finetune", 4)), _consumed(tmp_path / "s2")
    assert not set(s1) & set(s2) and {**s1, **s2} == reference["steps"]
    for epoch in range(2):
        vids = [
            v
            for (p, s), b in {**s1, **s2}.items()
            if p == "finetune" and 6 * epoch < s <= 6 * (epoch + 1)
            for v in b
        ]
        assert Counter(vids) == Counter(_split_vids(feat_dataset, "train"))
    log = _log(out)
    ref = reference["log"]
    # the log continues: the same records (steps, epochs, validations) as the uninterrupted run
    assert [(r["phase"], r["epoch"], r["step"], "val" in r) for r in log] == [
        (r["phase"], r["epoch"], r["step"], "val" in r) for r in ref
    ]

    # the training losses of the steps run on one process, and every validation (rank 0 scores the
    # whole model), are the one-process run's up to float rounding; on 2 ranks the log shows rank
    # 0's share of the loss
    def on_one(r: dict[str, Any]) -> bool:
        before = r["phase"] == "pretrain" or r["step"] <= 4
        return (first if before else second) == 1

    rel = [
        abs(a["loss"] - b["loss"]) / abs(b["loss"]) for a, b in zip(log, ref) if "val" not in a and on_one(a)
    ]
    rel += [
        abs(a["val"]["loss"] - b["val"]["loss"]) / b["val"]["loss"] for a, b in zip(log, ref) if "val" in a
    ]
    assert len(rel) >= 5 and max(rel) < 1e-5  # (measured: < 3e-8)
    record = json.loads((out / "config.json").read_text())
    assert record["training"]["world_size"] == second


def test_pretrain_only_then_finetune_on_resume(feat_dataset: Path, tmp_path: Path) -> None:
    """SCALE.md's recipe: pre-train with ``epochs=0``, later fine-tune the same run with --resume."""
    out = tmp_path / "ck"
    summary = train(_opts(feat_dataset, out, cfg=cfg_of(epochs=0)))
    assert set(summary["phases"]) == {"pretrain"}
    summary = train(_opts(feat_dataset, out, cfg=cfg_of(epochs=1), resume=True))
    assert set(summary["phases"]) == {"finetune"} and summary["best_epoch"] == 1
    phases = [r["phase"] for r in _log(out)]
    assert phases[0] == "pretrain" and phases[-1] == "finetune" and "val" in _log(out)[-1]


def test_a_crash_while_saving_leaves_the_previous_state(
    feat_dataset: Path, tmp_path: Path, reference: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from create_bench.models.alwig.bundle import ALWIG

    real, calls = ALWIG.save, []

    def crash_on_fourth(self: ALWIG, out_dir: Any, training: Any = None) -> None:
        calls.append(out_dir)
        if len(calls) == 4:  # saves: pre-training epoch end, phase end, fine-tuning steps 2, 4
            (Path(out_dir) / "model.safetensors").write_bytes(b"half")
            raise OSError("disk full")
        real(self, out_dir, training)

    monkeypatch.setattr(ALWIG, "save", crash_on_fourth)
    out = tmp_path / "ck"
    with pytest.raises(OSError, match="disk full"):
        train(_opts(feat_dataset, out, checkpoint_every=2))
    monkeypatch.setattr(ALWIG, "save", real)
    state = json.loads((out / "train_state" / "state.json").read_text())
    assert (state["phase"], state["step"]) == ("finetune", 2)
    assert sorted(p.name for p in (out / "train_state").iterdir()) == [state["ckpt"], "state.json"]
    train(_opts(feat_dataset, out, checkpoint_every=2, resume=True))
    a, b = _weights(reference["out"]), _weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _log(out) == reference["log"]

"""The ``local`` and ``torchrun`` engines (layer 4): DataLoader worker processes decode
(:func:`create_bench.loader.make_loader`), this process encodes and writes part files; under torchrun
every rank runs its partition and rank 0 waits for the others' "done" markers before merging."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import ConfigError, DataError
from create_bench.features.config import ExtractConfig
from create_bench.features.encoders import encode_videos
from create_bench.features.parts import PartWriter
from create_bench.features.plan import Plan, decode_ctx, same_run


def _local_videos(
    cfg: ExtractConfig, todo: set[str], rank: int | None, world_size: int | None, failed: dict[str, str]
) -> Iterator[tuple[str, np.ndarray]]:
    """(vid, real frames ``uint8 [T, H, W, 3]``) of this partition's videos that are not done yet.

    Decoding happens in ``num_workers`` DataLoader worker processes (:func:`make_loader`); the
    loader partitions rows by rank and worker with :func:`iter_batches`, so each video is decoded
    by exactly one process, and videos already done are passed over before decoding. Failures are
    added to ``failed`` when the pass ends.
    """
    from create_bench.loader import make_loader

    loader = make_loader(
        cfg.data_dir,
        cfg.split,
        frames=cfg.frames,
        # Videos of different stored sizes cannot share a batch tensor; part files still hold
        # batch_size videos (see run_partition).
        batch_size=cfg.batch_size if cfg.frame_size else 1,
        num_workers=cfg.num_workers,
        size=cfg.frame_size,
        columns=(),
        ctx=decode_ctx(cfg),
        on_error="skip",
        timeout=cfg.timeout,
        rank=rank,
        world_size=world_size,
        vids=todo,
    )
    for batch in loader:
        frames, mask = batch["frames"].numpy(), batch["frame_mask"].numpy()
        for b, vid in enumerate(batch["vid"]):
            yield vid, frames[b][mask[b]]  # drop the loader's padding: real frames only
    failed.update({s.vid: s.reason for s in loader.report.skipped})


def run_partition(
    plan: Plan, encoder: Any, prefix: str, rank: int | None, world_size: int | None
) -> tuple[list[str], dict[str, str]]:
    cfg = plan.cfg
    todo = set(plan.vids) - plan.done
    writer = PartWriter(plan.parts_dir, prefix, plan.meta)
    computed: list[str] = []
    failed: dict[str, str] = {}
    if not todo:
        return computed, failed
    with _encoder_threads(cfg):
        _encode_stream(plan, encoder, writer, todo, rank, world_size, computed, failed)
    return computed, failed


@contextlib.contextmanager
def _encoder_threads(cfg: ExtractConfig) -> Iterator[None]:
    """Leave the decode workers their cores: torch threads = CPUs - workers (unless set by the user).

    Oversubscribed OpenMP threads spin against the decoders: measured here, 2.4x slower extraction
    with torch's default 2 threads next to 1 decode worker on 2 cores.
    """
    import torch

    threads = cfg.encoder_threads
    if threads is None and cfg.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) - cfg.num_workers)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encode_stream(
    plan: Plan,
    encoder: Any,
    writer: PartWriter,
    todo: set[str],
    rank: int | None,
    world_size: int | None,
    computed: list[str],
    failed: dict[str, str],
) -> None:
    cfg = plan.cfg
    vids: list[str] = []
    frames: list[np.ndarray] = []

    def flush() -> None:
        writer.write(vids, encode_videos(encoder, frames, vids, cfg.encode_batch))
        computed.extend(vids)
        vids.clear()
        frames.clear()

    for vid, f in _local_videos(cfg, todo, rank, world_size, failed):
        vids.append(vid)
        frames.append(f)
        if len(vids) == cfg.batch_size:
            flush()
    if vids:
        flush()


def env_rank(cfg: ExtractConfig) -> tuple[int, int]:
    rank = cfg.rank if cfg.rank is not None else int(os.environ.get("RANK", "0"))
    world = cfg.world_size if cfg.world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ConfigError(f"bad torchrun rank {rank} for world size {world}")
    return rank, world


def per_rank_devices(cfg: ExtractConfig, local_rank: int) -> ExtractConfig:
    """Under torchrun, a bare ``cuda`` means this process's GPU, ``cuda:LOCAL_RANK``."""
    fix: dict[str, Any] = {
        k: f"cuda:{local_rank}" for k in ("device", "decode_device") if getattr(cfg, k) in ("cuda", "gpu")
    }
    return dataclasses.replace(cfg, **fix) if fix else cfg


def done_marker(plan: Plan, rank: int, world: int) -> Path:
    return plan.parts_dir / f"_done-r{rank:05d}-of-{world:05d}.json"


def wait_for_ranks(plan: Plan, world: int) -> None:
    deadline = time.monotonic() + plan.cfg.merge_timeout
    missing = list(range(world))
    while True:
        still = []
        for r in missing:
            m = done_marker(plan, r, world)
            try:
                ok = same_run(json.loads(m.read_text("utf-8")), plan.meta)
            except (OSError, ValueError):
                ok = False
            if not ok:
                still.append(r)
        missing = still
        if not missing:
            return
        if time.monotonic() > deadline:
            raise DataError(
                f"rank 0 waited {plan.cfg.merge_timeout:g} s for ranks {missing} of {world} to finish; "
                f"re-run them (finished work is kept) or merge later",
                path=str(plan.parts_dir),
            )
        time.sleep(0.5)

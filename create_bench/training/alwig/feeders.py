"""A phase's batches, by rank: from a split held in memory (:class:`MemoryFeeder`) or streamed from
the feature shards (:class:`StreamFeeder`, :mod:`create_bench.training.alwig.stream`), and what a
streamed run needs at its start (the epoch length agreed by all ranks, feature statistics, the
vocabularies' texts)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from create_bench.errors import DataError
from create_bench.models.alwig.bundle import ALWIG
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import World
from create_bench.training.alwig.batches import (
    epoch_plan,
    make_batch,
    row_trainable,
    text_choices,
    text_choices_at,
    trainable_rows,
)
from create_bench.training.alwig.distributed import all_min
from create_bench.training.alwig.features import SplitData
from create_bench.training.alwig.options import PHASES

log = logging.getLogger(__name__)


class MemoryFeeder:
    """A phase's batches from a split in memory: :func:`epoch_plan`'s global batches, cut by rank."""

    def __init__(self, bundle: ALWIG, data: SplitData, cfg: ALWIGConfig, phase: str, world: World):
        self.bundle, self.data, self.cfg, self.phase, self.world = bundle, data, cfg, phase, world
        self.rows_all = trainable_rows(data, phase)
        if not self.rows_all:
            raise DataError(f"no trainable rows in split {data.name!r} for {phase}")
        self.steps = len(epoch_plan(len(self.rows_all), cfg, phase, 0, world.size))

    def batches(
        self, epoch: int, start: int, step0: int, count: int
    ) -> Iterator[tuple[dict[str, Any], list[str], int]]:
        """(rank's batch, its vids, global batch size) of steps ``start .. start+count-1`` of ``epoch``."""
        data, world = self.data, self.world
        plan = epoch_plan(len(self.rows_all), self.cfg, self.phase, epoch, world.size)
        for j, gbatch in enumerate(plan[start : start + count]):
            grows = [self.rows_all[i] for i in gbatch]
            gtexts = text_choices(data, grows, self.cfg, self.phase, epoch * 100003 + step0 + j)
            share = len(grows) // world.size
            lo, hi = world.rank * share, (world.rank + 1) * share
            batch = make_batch(self.bundle, data, grows[lo:hi], {k: v[lo:hi] for k, v in gtexts.items()})
            yield batch, [data.vids[i] for i in grows[lo:hi]], len(gbatch)


class StreamFeeder:
    """A phase's batches streamed from the feature shards (:class:`~create_bench.training.alwig.stream.LaneStream`)."""

    def __init__(self, bundle: ALWIG, stream: Any, cfg: ALWIGConfig, phase: str, world: World):
        self.bundle, self.stream, self.cfg, self.phase, self.world = bundle, stream, cfg, phase, world
        self.steps = int(stream.steps)
        share = cfg.batch_size // world.size
        self.positions = list(range(world.rank * share, (world.rank + 1) * share))

    def batches(
        self, epoch: int, start: int, step0: int, count: int
    ) -> Iterator[tuple[dict[str, Any], list[str], int]]:
        for win in self.stream.windows(epoch, start, start + count):
            data = SplitData(
                self.stream.split,
                win.vids,
                win.feats,
                win.mask,
                win.tags,
                win.titles,
                win.captions,
                win.raw_titles,
            )
            for k in range(win.first, win.stop):
                rows = list(range((k - win.first) * win.lanes, (k - win.first + 1) * win.lanes))
                salt = epoch * 100003 + step0 + k - start
                texts = text_choices_at(
                    data, rows, self.positions, self.cfg, self.phase, salt, self.cfg.batch_size
                )
                yield (
                    make_batch(self.bundle, data, rows, texts),
                    [win.vids[i] for i in rows],
                    self.cfg.batch_size,
                )


def open_stream(
    data_dir: Path, split: str, cfg: ALWIGConfig, phase: str, world: World, device: str, block: int
) -> Any:
    """This rank's :class:`~create_bench.training.alwig.stream.LaneStream` of a phase, its epoch length
    agreed with the other ranks (collective: every rank calls it)."""
    from functools import partial

    from create_bench.training.alwig.stream import LaneStream

    t0 = time.perf_counter()
    stream = LaneStream(
        data_dir,
        split,
        feature_set=str(cfg.feature_set),
        num_frames=cfg.num_frames,
        feature_dim=int(cfg.feature_dim or 0),
        lanes=cfg.batch_size,
        block=block,
        seed=[cfg.seed, PHASES.index(phase)],
        rank=world.rank,
        world_size=world.size,
        keep=partial(row_trainable, phase),
    )
    steps = all_min(stream.local_steps, world, device)
    stream.set_steps(steps)
    log.info(
        "alwig: streaming %s for %s: rank %d/%d reads %d rows (%d trainable), %d steps per epoch (%.1f s)",
        split,
        phase,
        world.rank,
        world.size,
        len(stream.vids),
        stream.trainable_rows,
        steps,
        time.perf_counter() - t0,
    )
    return stream


def stream_feature_stats(bundle: ALWIG, stream: Any, world: World) -> None:
    """The model's feature standardisation from the streamed split (every rank its own rows)."""
    from create_bench.training.alwig.stream import merge_moments

    mine = stream.feature_moments()
    parts: list[Any] = [mine]
    if world.distributed:
        parts = [None] * world.size
        dist.all_gather_object(parts, mine)
    n, mean, m2 = merge_moments(parts)
    if n == 0:
        raise DataError(f"split {stream.split!r} has no real frames to standardise features with")
    if n == 1:
        bundle.net.set_feature_stats(torch.from_numpy(mean)[None, None], torch.ones(1, 1, dtype=torch.bool))
        return
    # Two points at mean +- std have exactly this mean and (population) std: the model computes its
    # statistics, with its own flooring, from them as from the whole split.
    std = np.sqrt(m2 / n)
    two = torch.from_numpy(np.stack([mean + std, mean - std]))[:, None, :]
    bundle.net.set_feature_stats(two, torch.ones(2, 1, dtype=torch.bool))


def stream_corpus(data_dir: Path, pretrain_split: str | None) -> tuple[Iterator[str], Iterator[list[str]]]:
    """The vocabularies' texts and tag lists, streamed from the data shards (as the in-memory path
    takes them: fine-tuning titles and captions, pre-training raw titles, both splits' tags)."""
    from create_bench.training.alwig.stream import scan_texts

    def texts() -> Iterator[str]:
        for b in scan_texts(data_dir, "train", columns=["titles", "captions"]):
            for col in ("titles", "captions"):
                for refs in b.column(col).to_pylist():
                    yield from refs or []
        if pretrain_split is not None:
            for b in scan_texts(data_dir, pretrain_split, columns=["raw_title"]):
                yield from (t or "" for t in b.column("raw_title").to_pylist())

    def tags() -> Iterator[list[str]]:
        for split in ("train",) + ((pretrain_split,) if pretrain_split is not None else ()):
            for b in scan_texts(data_dir, split, columns=["tags"]):
                yield from (list(t or []) for t in b.column("tags").to_pylist())

    return texts(), tags()

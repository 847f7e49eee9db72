"""The PyTorch loader (layer 4): stream a split, decode the benchmark's frames, batch them.

``make_loader(data_dir, split, ...)`` returns a :class:`VideoLoader` (a ``torch.utils.data.DataLoader``)
over a :class:`VideoDataset` (an ``IterableDataset``). Each batch is a dict of the model protocol:

- ``vid``: list[str]
- ``frames``: ``uint8 [B, T, H, W, 3]`` RGB; or, when ``mean``/``std`` are given, ``float32
  [B, T, 3, H, W]`` (channels first, as image models take them) normalised as ``(x / 255 - mean) / std``
  (mean/std on the 0-1 scale, one value or one per channel);
- or ``features``: ``float32 [B, T, D]`` from ``features/<set>/`` shards, when ``features=<set>``;
- ``frame_mask``: ``bool [B, T]``, False where a frame is padding; ``frame_indices``: ``int64 [B, T]``,
  the decoded frame numbers (padding repeats the last one);
- the asked ``columns`` (default ``tags``, ``raw_title``, ``category``) as lists, and ``titles`` /
  ``captions`` when ``texts=True``.

**Frames.** Indices come from the frame policy (:mod:`create_bench.video.sampling`) applied to the
stored ``num_frames``. T is the policy's N; a video shorter than N frames is padded by repeating
its last frame (``frame_mask`` marks the copies). ``fps@F`` gives videos different lengths: T is
the longest in the batch, shorter ones padded the same way.

**Size.** Frames are resized at decode time to ``size=(H, W)``, by default :data:`DEFAULT_SIZE`
(224 x 224, the input size of the CLIP-style encoders used on CREATE), because real datasets (the
CREATE release and CREATE-sample alike) mix frame sizes and orientations, and a batch is one
tensor. The resize is FFmpeg's bilinear ``scale`` after display rotation and does not keep the
aspect ratio (a portrait video is squeezed); ask for the ``width``/``height``/``rotation`` columns
to know the stored geometry. ``size=None`` keeps each video's stored size: then videos of
different sizes cannot share a batch (a ConfigError says so): use ``batch_size=1``.

**Partitioning.** Rows are streamed with :func:`create_bench.data.shards.iter_batches`, split
between ``rank``/``world_size`` (from ``torch.distributed`` when initialised) and the DataLoader's
worker processes: every video is read exactly once per pass and nothing is padded or repeated, so
evaluation over all ranks sees each video once. A worker's last batch may be smaller.

**Errors.** A video that fails to decode (corrupt, truncated, not a video, timed out) is skipped
with ``on_error="skip"`` (default) and counted: after a pass, ``loader.report`` is a
:class:`LoaderReport` (also logged as a summary). ``on_error="fail"`` raises VideoDecodeError naming
the vid.

**Hangs.** With ``timeout`` (seconds per video, default 60) decoding runs in a forked decode worker
process, one per loader process (this process with ``num_workers=0``, else each DataLoader
worker), up to two batches ahead. A video that takes longer than ``timeout`` gets its worker
killed (SIGKILL: also a hang inside native decoder code) and is skipped as ``DecodeTimeout`` (or
raised with ``on_error="fail"``); a worker that crashes is a VideoDecodeError for its video; the
next video gets a fresh worker. This holds for every ``num_workers``, 0 included. Frames come back
through shared memory straight into the batch (one more memory copy per frame than decoding
in-process; see :mod:`create_bench.video.worker`). ``timeout=None`` decodes in the loader's own
process (or DataLoader workers) with no such guard: there a hang in native code hangs that
process; with ``num_workers > 0`` DataLoader's own ``timeout=`` argument (seconds per batch,
passed through) then raises instead of skipping.

**Frames.** With a fixed-length policy each video decodes straight into its slot of a fresh
``[B, T, H, W, 3]`` array (the batch owns it; it is never reused), so decord's frames are copied
once, as raw decord's ``asnumpy`` copies them.

The options and the pass report live in :mod:`create_bench.loader_options` (re-exported here), the
batch assembly (frame pool, padding, normalisation) in :mod:`create_bench.loader_batching`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from create_bench.errors import ConfigError, DataError, VideoDecodeError
from create_bench.loader_batching import (
    _BatchBuffer,
    _FramePool,
    _lists_to_arrays,
    _mean_std_tensors,
    _normalise,
    _pad_in_place,
    _pad_stack,
)
from create_bench.loader_options import (
    DEFAULT_COLUMNS,
    DEFAULT_SIZE,
    DEFAULT_TIMEOUT,
    TEXT_COLUMNS,
    LoaderConfig,
    LoaderOptions,
    LoaderReport,
    SkippedVideo,
    _option_values,
)
from create_bench.registry import check_option_names

log = logging.getLogger(__name__)

_SKIPPED_KEY = "_skipped"


# --------------------------------------------------------------------------- dataset


def video_seed(shuffle_seed: int | None, epoch: int, vid: str) -> int:
    """The per-video seed of random frame policies: stable across processes, workers and runs."""
    digest = hashlib.sha256(f"{shuffle_seed or 0}:{epoch}:{vid}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class VideoDataset(IterableDataset):
    """Streams one split as ready batches (the DataLoader runs with ``batch_size=None``).

    Each yielded dict also carries ``"_skipped"``: ``[(vid, reason), ...]`` of videos this worker
    skipped since its previous batch; :class:`VideoLoader` removes it and fills its report. A
    worker ends with a batch of no videos when it has skips left to report.
    """

    def __init__(self, cfg: LoaderConfig):
        super().__init__()
        self.cfg = cfg
        self.policy = cfg.policy
        self.epoch = 0
        from create_bench.data.shards import open_dataset

        self.info = open_dataset(cfg.data_dir)
        self.info.files(cfg.split)  # unknown split -> DataError now, not in a worker
        if cfg.features is not None:
            self.info.feature_files(cfg.features, cfg.split)
        self._mean_std = _mean_std_tensors(cfg.mean, cfg.std)
        self._pool = _FramePool()

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pool"] = _FramePool()  # spare frame arrays stay in the process that made them
        return state

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _read_columns(self) -> list[str]:
        cols = ["vid", *[c for c in self.cfg.columns if c != "vid"]]
        if self.cfg.texts:
            cols += [c for c in TEXT_COLUMNS if c not in cols]
        if self.cfg.features is None:
            cols += [c for c in ("num_frames", "fps", "video") if c not in cols]
        return cols

    def _partition_kw(self) -> dict[str, Any]:
        return {
            "shuffle_seed": self.cfg.shuffle_seed,
            "epoch": self.epoch,
            "rank": self.cfg.rank,
            "world_size": self.cfg.world_size,
        }

    def __iter__(self) -> Iterator[dict[str, Any]]:
        from create_bench.data.shards import iter_batches

        cfg = self.cfg
        feature_map = self._load_features() if cfg.features is not None else None
        # Fixed-length frame policies decode each video straight into its slot of the batch.
        fixed_t = self.policy.n if self.policy.is_fixed_length else None
        buffer = (
            _BatchBuffer(cfg.batch_size, fixed_t, self._pool) if feature_map is None and fixed_t else None
        )
        pending: list[dict[str, Any]] = []
        skipped: list[tuple[str, str]] = []
        rows = (
            row
            for rb in iter_batches(
                cfg.data_dir,
                cfg.split,
                self._read_columns(),
                batch_size=cfg.batch_size,
                **self._partition_kw(),
            )
            for row in rb.to_pylist()
            if cfg.vids is None or str(row["vid"]) in cfg.vids
        )
        stream = (
            self._features_stream(rows, feature_map)
            if feature_map is not None
            else self._frames_stream(rows, buffer)
        )
        for row, sample in stream:
            if isinstance(sample, (VideoDecodeError, DataError)):
                if cfg.on_error == "fail":
                    raise sample
                skipped.append((str(row["vid"]), _reason(sample)))
                continue
            pending.append(sample)
            if buffer is not None:
                buffer.slot = len(pending)  # the next video decodes into the next slot
            if len(pending) == cfg.batch_size:
                yield self._collate(pending, skipped, buffer)
                pending, skipped = [], []
        if pending or skipped:
            yield self._collate(pending, skipped, buffer)

    # -- videos -----------------------------------------------------------------------------------
    def _frames_stream(
        self, rows: Iterator[dict[str, Any]], buffer: _BatchBuffer | None = None
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        """``(row, sample or error)`` in row order. Requests stream to the decode worker with a
        look-ahead of two batches, so it decodes the next videos while this process reads shards,
        batches, and hands batches over. With a ``buffer``, each result is written straight into
        the batch slot it will occupy (results arrive in order, one at a time, so the slot is the
        number of videos batched so far)."""
        import collections

        from create_bench.data.shards import video_source
        from create_bench.video.decoding import decode_many

        cfg = self.cfg
        kw: dict[str, Any] = {
            "backend": cfg.backend,
            "size": cfg.size,
            "num_threads": cfg.num_threads,
            "ctx": cfg.ctx,
        }
        if buffer is not None:
            kw["out"] = buffer.sink
        submitted: collections.deque[tuple[dict[str, Any], list[int] | None]] = collections.deque()

        def requests() -> Iterator[Any]:
            for row in rows:
                try:
                    idx = self._indices(row)
                    source = video_source(row, cfg.data_dir)
                except (VideoDecodeError, DataError) as e:
                    submitted.append((row, None))
                    yield e if isinstance(e, VideoDecodeError) else VideoDecodeError(str(e))
                    continue
                submitted.append((row, idx))
                yield (source, idx, {**kw, "vid": str(row["vid"])})

        for result in decode_many(requests(), timeout=cfg.timeout, window=2 * cfg.batch_size):
            row, idx = submitted.popleft()
            if isinstance(result, Exception) or idx is None:
                yield row, result
            else:
                yield row, {"row": row, "data": result, "indices": idx}

    def _features_stream(
        self, rows: Iterator[dict[str, Any]], feature_map: dict[str, np.ndarray]
    ) -> Iterator[tuple[dict[str, Any], Any]]:
        for row in rows:
            try:
                yield row, self._features_sample(row, feature_map)
            except DataError as e:
                yield row, e

    def _indices(self, row: dict[str, Any]) -> list[int]:
        cfg, vid = self.cfg, str(row["vid"])
        n = row.get("num_frames")
        if not isinstance(n, int) or n < 1:
            raise VideoDecodeError(f"stored num_frames is {n!r}: no frame to sample", vid=vid)
        seed = video_seed(cfg.shuffle_seed, self.epoch, vid) if self.policy.name == "random-segment" else None
        try:
            return self.policy.indices(n, fps=row.get("fps"), seed=seed)
        except ConfigError as e:
            raise VideoDecodeError(f"cannot sample frames: {e}", vid=vid) from None

    def _features_sample(self, row: dict[str, Any], feature_map: dict[str, np.ndarray]) -> dict[str, Any]:
        vid = str(row["vid"])
        feats = feature_map.get(vid)
        if feats is None:
            raise DataError(f"no features in set {self.cfg.features!r}", vid=vid)
        return {"row": row, "data": feats, "indices": list(range(len(feats)))}

    def _load_features(self) -> dict[str, np.ndarray]:
        """Features of this partition's videos only (memory grows with the partition, not the split)."""
        import pyarrow.compute as pc
        import pyarrow.dataset as pads

        from create_bench.data.shards import iter_batches

        vids = [
            v
            for rb in iter_batches(
                self.cfg.data_dir, self.cfg.split, ["vid"], batch_size=4096, **self._partition_kw()
            )
            for v in rb.column(0).to_pylist()
        ]
        files = [str(f) for f in self.info.feature_files(self.cfg.features or "", self.cfg.split)]
        table = pads.dataset(files, format="parquet").to_table(
            columns=["vid", "features"], filter=pc.field("vid").isin(vids)
        )
        out: dict[str, np.ndarray] = {}
        for chunk_vids, chunk in zip(table.column("vid").chunks, table.column("features").chunks):
            for vid, arr in zip(chunk_vids.to_pylist(), _lists_to_arrays(chunk)):
                out[vid] = arr
        return out

    # -- batching ---------------------------------------------------------------------------------
    def _collate(
        self,
        samples: list[dict[str, Any]],
        skipped: list[tuple[str, str]],
        buffer: _BatchBuffer | None = None,
    ) -> dict[str, Any]:
        cfg = self.cfg
        rows = [s["row"] for s in samples]
        batch: dict[str, Any] = {"vid": [str(r["vid"]) for r in rows]}
        for c in (*cfg.columns, *(TEXT_COLUMNS if cfg.texts else ())):
            if c != "vid":
                batch[c] = [r[c] for r in rows]
        key = "features" if cfg.features is not None else "frames"
        if samples:
            t = self.policy.n if (cfg.features is None and self.policy.is_fixed_length) else 0
            t = max([t] + [len(s["indices"]) for s in samples])
            filled = buffer.take(samples, t) if buffer is not None else None
            if filled is not None:
                data, mask, indices = _pad_in_place(filled, samples)
            else:
                data, mask, indices = _pad_stack(samples, t, self.cfg.size is None and key == "frames")
            tensor = torch.from_numpy(data)
            if key == "frames" and self._mean_std is not None:
                tensor = _normalise(tensor, *self._mean_std)
            elif key == "features":
                tensor = tensor.float()
            batch[key] = tensor
            batch["frame_mask"] = torch.from_numpy(mask)
            batch["frame_indices"] = torch.from_numpy(indices)
        else:
            batch[key] = None
        if buffer is not None:
            buffer.reset()  # the batch's array now belongs to the consumer: never written again
        batch[_SKIPPED_KEY] = skipped
        return batch


def _reason(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else type(e).__name__
    return f"{type(e).__name__}: {text}"


# --------------------------------------------------------------------------- loader


class VideoLoader(DataLoader):
    """A DataLoader that strips the skip bookkeeping from batches and keeps a :class:`LoaderReport`.

    ``loader.report`` describes the latest pass (``complete`` once it ran to the end);
    ``set_epoch(e)`` changes the shuffle order and the random frame policy's draws.
    """

    def __init__(self, dataset: VideoDataset, *, progress: bool = False, **kwargs: Any):
        super().__init__(dataset, batch_size=None, **kwargs)
        self.progress = progress
        self.report = LoaderReport(split=dataset.cfg.split, frames=_frames_label(dataset.cfg))

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)  # type: ignore[attr-defined]

    def __len__(self) -> int:  # batches of the whole split for this rank (an upper bound with skips)
        ds: VideoDataset = self.dataset  # type: ignore[assignment]
        world = ds.cfg.world_size or _dist_world_size()
        return math.ceil(ds.info.num_rows(ds.cfg.split) / world / ds.cfg.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        ds: VideoDataset = self.dataset  # type: ignore[assignment]
        report = LoaderReport(split=ds.cfg.split, frames=_frames_label(ds.cfg))
        self.report = report
        start = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            world = ds.cfg.world_size or _dist_world_size()
            bar = tqdm(
                total=math.ceil(ds.info.num_rows(ds.cfg.split) / world),
                desc=f"{ds.cfg.split} videos",
                unit="video",
            )
        try:
            for batch in super().__iter__():
                for vid, reason in batch.pop(_SKIPPED_KEY, ()):
                    report.skipped.append(SkippedVideo(vid, reason))
                    if bar is not None:
                        bar.update(1)
                n = len(batch["vid"])
                report.videos += n
                report.seconds = time.perf_counter() - start
                if bar is not None:
                    bar.update(n)
                if n:
                    yield batch
            report.complete = True
        finally:
            report.seconds = time.perf_counter() - start
            if bar is not None:
                bar.close()
        if report.num_skipped:
            log.warning(report.summary())
        else:
            log.info(report.summary())


def _dist_world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _frames_label(cfg: LoaderConfig) -> str:
    return f"features:{cfg.features}" if cfg.features is not None else cfg.policy.signature()


def make_loader(
    data_dir: str | os.PathLike[str],
    split: str,
    options: LoaderOptions | None = None,
    *,
    batch_size: int = 8,
    num_workers: int = 0,
    **kwargs: Any,
) -> VideoLoader:
    """A DataLoader over one split of a create-bench dataset (see the module doc for the batches).

    ``make_loader("data/create-sample", "test", frames="uniform-center@8", batch_size=8, num_workers=2)``

    Args:
        data_dir: the dataset directory (``manifest.json``, ``data/``).
        split: ``train``, ``validation``, ``test`` or ``pretrain``.
        options: a :class:`LoaderOptions` (default: the defaults).
        batch_size: videos per batch (a worker's last batch may be smaller).
        num_workers: DataLoader worker processes (0: decode in this process).
        **kwargs: fields of :class:`LoaderOptions` (``frames=``, ``size=``, ...; they override
            ``options``), else ``DataLoader`` arguments (``pin_memory``, ``prefetch_factor``, ...).
            Any other name is a :class:`ConfigError` with "did you mean".
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ConfigError(f"num_workers must be an int >= 0, got {num_workers!r}")
    option_names = [f.name for f in fields(LoaderOptions)]
    overrides = {k: v for k, v in kwargs.items() if k in option_names}
    dataloader_kwargs = {k: v for k, v in kwargs.items() if k not in overrides}
    check_option_names("loader", dataloader_kwargs, [*option_names, *_dataloader_arguments()])
    opts = replace(options, **overrides) if options is not None else LoaderOptions(**overrides)
    cfg = LoaderConfig(data_dir=Path(data_dir), split=split, batch_size=batch_size, **_option_values(opts))
    dataset = VideoDataset(cfg)
    return VideoLoader(dataset, num_workers=num_workers, progress=opts.progress, **dataloader_kwargs)


def _dataloader_arguments() -> list[str]:
    """``DataLoader`` arguments a caller may pass through (not those the loader sets itself)."""
    import inspect

    params = inspect.signature(DataLoader.__init__).parameters
    return [
        p for p in params if p not in ("self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler")
    ]


__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_SIZE",
    "DEFAULT_TIMEOUT",
    "TEXT_COLUMNS",
    "LoaderConfig",
    "LoaderOptions",
    "LoaderReport",
    "SkippedVideo",
    "VideoDataset",
    "VideoLoader",
    "make_loader",
    "video_seed",
]

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
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from create_bench.errors import ConfigError, DataError, VideoDecodeError
from create_bench.registry import check_option_names
from create_bench.video.sampling import FramePolicy, parse_policy

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = ("tags", "raw_title", "category")
TEXT_COLUMNS = ("titles", "captions")
#: Default per-video decode timeout (seconds) of the loader.
DEFAULT_TIMEOUT = 60.0
#: Default frame size ``(H, W)`` of :func:`make_loader` (see "Size" in the module doc).
DEFAULT_SIZE = (224, 224)
_SKIPPED_KEY = "_skipped"


# --------------------------------------------------------------------------- config and report


@dataclass(frozen=True)
class LoaderOptions:
    """What a loader yields and how it decodes (one frozen object; checked and normalised on
    creation). :func:`make_loader` takes one, or the same names as keyword arguments.

    Attributes:
        frames: the frame policy (``uniform-center@8`` default; see :mod:`create_bench.video.sampling`).
        size: resize at decode time to ``(H, W)`` (int: square); default :data:`DEFAULT_SIZE`
            (224 x 224), so videos of any stored size share a batch. None keeps each video's stored
            size (then a batch of videos of different sizes raises ConfigError: use
            ``batch_size=1``). Ignored with ``features``.
        mean, std: when given (1 or 3 values), frames become normalised ``float32 [B, T, 3, H, W]``.
        columns: row columns to pass through (``vid`` always comes).
        texts: also pass ``titles`` and ``captions``.
        features: a feature set under ``features/``: yields ``features`` instead of decoding frames.
        backend, ctx, num_threads: decoder settings (:func:`create_bench.video.decoding.decode`).
        on_error: ``"skip"`` (count and report) or ``"fail"`` (raise VideoDecodeError naming the vid).
        timeout: seconds per video in a killable decode subprocess; None decodes in-process,
            where a hang cannot be interrupted (see "Hangs" in the module doc).
        shuffle_seed: shuffle the order (by row group, then within) with this seed; None keeps it.
        rank, world_size: this process's share; default from ``torch.distributed`` when initialised.
        progress: show a tqdm bar of videos.
        vids: only these videos (others are passed over before decoding); None: all.
    """

    frames: str = "uniform-center@8"
    #: After creation: ``(H, W)`` or None.
    size: int | Sequence[int] | None = DEFAULT_SIZE
    #: After creation: three floats or None.
    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    #: After creation: a tuple.
    columns: Sequence[str] = DEFAULT_COLUMNS
    texts: bool = False
    features: str | None = None
    backend: str = "decord"
    ctx: str = "cpu"
    num_threads: int = 0
    on_error: str = "skip"
    timeout: float | None = DEFAULT_TIMEOUT
    shuffle_seed: int | None = None
    rank: int | None = None
    world_size: int | None = None
    progress: bool = False
    #: After creation: a frozenset or None.
    vids: Collection[str] | None = None

    def __post_init__(self) -> None:
        from create_bench.video.checks import check_backend, normalize_size, parse_ctx

        if self.on_error not in ("skip", "fail"):
            raise ConfigError(f"on_error must be 'skip' or 'fail', got {self.on_error!r}")
        check_backend(self.backend)
        t = self.timeout
        if t is not None and not (isinstance(t, (int, float)) and t > 0):
            raise ConfigError(f"timeout must be a positive number of seconds or None, got {t!r}")
        if (self.rank is None) != (self.world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        parse_ctx(self.ctx)
        parse_policy(self.frames)
        columns = (self.columns,) if isinstance(self.columns, str) else self.columns
        normalised = {
            "size": normalize_size(self.size),
            "mean": _triple(self.mean),
            "std": _triple(self.std),
            "columns": tuple(columns),
            "texts": bool(self.texts),
            "num_threads": int(self.num_threads),
            "timeout": None if t is None else float(t),
            "vids": None if self.vids is None else frozenset(str(v) for v in self.vids),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def policy(self) -> FramePolicy:
        return parse_policy(self.frames)


def _triple(x: Any) -> tuple[float, float, float] | None:
    if x is None:
        return None
    vals = [float(v) for v in (x if isinstance(x, (list, tuple)) else [x])]
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3:
        raise ConfigError(f"mean/std take 1 or 3 values, got {x!r}")
    return (vals[0], vals[1], vals[2])


@dataclass(frozen=True, kw_only=True)
class LoaderConfig(LoaderOptions):
    """Everything that decides what a loader yields: the options, the split and the batch size
    (built by :func:`make_loader`)."""

    data_dir: Path
    split: str
    batch_size: int = 8


@dataclass(frozen=True)
class SkippedVideo:
    vid: str
    reason: str


@dataclass
class LoaderReport:
    """What one pass of a loader did: videos yielded, videos skipped (and why), time taken."""

    split: str
    frames: str
    videos: int = 0
    skipped: list[SkippedVideo] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self, max_listed: int = 20) -> str:
        state = "" if self.complete else " (pass not finished)"
        head = (
            f"loader {self.split} [{self.frames}]: {self.videos} videos in {self.seconds:.1f} s, "
            f"{self.num_skipped} skipped{state}"
        )
        lines = [head] + [f"  skipped {s.vid}: {s.reason}" for s in self.skipped[:max_listed]]
        if self.num_skipped > max_listed:
            lines.append(f"  ... and {self.num_skipped - max_listed} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "frames": self.frames,
            "videos": self.videos,
            "skipped": [{"vid": s.vid, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
        }


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


class _FramePool:
    """Spare batch frame arrays of one dataset, reused once their batch is gone.

    A batch's frames are a view of a pooled array; when the consumer drops every tensor and view
    of it, a finalizer puts the array back. Writing into memory already in use is much cheaper
    than into a fresh allocation (large arrays are fresh pages from the kernel every time: page
    faults and zeroing, as costly as decoding on some machines). At most ``spare`` arrays wait
    here; they belong to the process that made them (a forked DataLoader worker starts empty).
    """

    def __init__(self, spare: int = 2):
        self.spare = spare
        self.pid = os.getpid()
        self.arrays: list[np.ndarray] = []

    def get(self, shape: tuple[int, ...]) -> np.ndarray:
        if self.pid != os.getpid():  # inherited through fork: writing would copy every page
            self.pid, self.arrays = os.getpid(), []
        for i, a in enumerate(self.arrays):
            if a.shape == shape:
                return self.arrays.pop(i)
        return np.empty(shape, dtype=np.uint8)

    def put(self, array: np.ndarray) -> None:
        if self.pid == os.getpid() and self.spare > 0:
            if len(self.arrays) >= self.spare:
                self.arrays.pop(0)  # the oldest (e.g. of a frame size no longer seen) makes room
            self.arrays.append(array)


class _BatchBuffer:
    """The frames array of the batch being filled, ``uint8 [B, T, H, W, 3]``, taken from the pool
    when the first video's frame shape is known; every video of the batch decodes straight into
    its slot (``decode(out=...)``), so frames are copied once, from the decoder, as raw decord
    does. A video that does not fit (another frame shape, more than T frames) gets its own array
    and the batch is assembled by copying, as without a buffer (which reports mismatched shapes)."""

    def __init__(self, batch_size: int, t: int, pool: _FramePool):
        self.batch_size, self.t, self.pool = batch_size, t, pool
        self.array: np.ndarray | None = None
        self.slot = 0
        self.filled: dict[int, np.ndarray] = {}  # slot -> the view handed out for it
        self.handed_out = False

    def sink(self, shape: tuple[int, ...]) -> np.ndarray | None:
        k = shape[0] if len(shape) == 4 else 0
        if not 1 <= k <= self.t or self.slot >= self.batch_size:
            return None
        if self.array is None:
            self.array = self.pool.get((self.batch_size, self.t, *shape[1:]))
        elif self.array.shape[2:] != tuple(shape[1:]):
            return None
        view = self.array[self.slot, :k]
        self.filled[self.slot] = view
        return view

    def take(self, samples: list[dict[str, Any]], t: int) -> np.ndarray | None:
        """The batch's frames ``[len(samples), T, ...]`` when every sample lies in its slot. The
        array goes back to the pool when this view (and all made from it) is gone."""
        import weakref

        if self.array is None or t != self.t:
            return None
        if any(self.filled.get(b) is not s["data"] for b, s in enumerate(samples)):
            return None
        out = self.array[: len(samples)]
        weakref.finalize(out, self.pool.put, self.array).atexit = False
        self.handed_out = True
        return out

    def reset(self) -> None:
        if self.array is not None and not self.handed_out:
            self.pool.put(self.array)  # its frames were copied into a batch of their own
        self.array, self.slot, self.filled, self.handed_out = None, 0, {}, False


def _pad_stack(
    samples: list[dict[str, Any]], t: int, check_sizes: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shapes = {s["data"].shape[1:] for s in samples}
    if len(shapes) > 1:
        detail = ", ".join(f"{s['row']['vid']}: {tuple(s['data'].shape[1:])}" for s in samples[:6])
        hint = "; pass size=(H, W) to resize at decode time, or batch_size=1" if check_sizes else ""
        raise ConfigError(f"videos in one batch have different frame shapes ({detail}){hint}")
    inner = next(iter(shapes))
    data = np.empty((len(samples), t, *inner), dtype=samples[0]["data"].dtype)
    mask = np.zeros((len(samples), t), dtype=bool)
    indices = np.zeros((len(samples), t), dtype=np.int64)
    for b, s in enumerate(samples):
        k = len(s["indices"])
        data[b, :k] = s["data"]
        data[b, k:] = s["data"][k - 1]  # pad by repeating the last frame
        mask[b, :k] = True
        indices[b, :k] = s["indices"]
        indices[b, k:] = s["indices"][k - 1]
    return data, mask, indices


def _pad_in_place(
    data: np.ndarray, samples: list[dict[str, Any]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_pad_stack`` for frames already in their slots of ``data``: pad, mask and indices only."""
    t = data.shape[1]
    mask = np.zeros((len(samples), t), dtype=bool)
    indices = np.zeros((len(samples), t), dtype=np.int64)
    for b, s in enumerate(samples):
        k = len(s["indices"])
        if k < t:
            data[b, k:] = data[b, k - 1]  # pad by repeating the last frame
        mask[b, :k] = True
        indices[b, :k] = s["indices"]
        indices[b, k:] = s["indices"][k - 1]
    return data, mask, indices


def _lists_to_arrays(chunk: Any) -> list[np.ndarray]:
    """A list<list<float>> Arrow chunk -> one float32 [T, D] array per row, without Python lists."""
    frames = chunk.flatten()  # one entry per frame (respects slicing)
    values = frames.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    frame_len = frames.value_lengths().to_numpy(zero_copy_only=False)
    row_len = chunk.value_lengths().to_numpy(zero_copy_only=False)
    out, v, f = [], 0, 0
    for n in row_len:
        n = int(n)
        dims = frame_len[f : f + n]
        d = int(dims[0]) if n else 0
        if n and (dims != d).any():
            raise DataError("feature vectors of one video have different lengths")
        out.append(values[v : v + n * d].reshape(n, d))
        v += n * d
        f += n
    return out


def _mean_std_tensors(mean: Any, std: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    if mean is None and std is None:
        return None
    m = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).reshape(-1)
    s = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).reshape(-1)
    if m.numel() not in (1, 3) or s.numel() not in (1, 3):
        raise ConfigError(f"mean and std take 1 or 3 values, got mean={mean!r} std={std!r}")
    if not bool((s > 0).all()):
        raise ConfigError(f"std must be positive, got {std!r}")
    return m.expand(3).reshape(1, 1, 3, 1, 1).clone(), s.expand(3).reshape(1, 1, 3, 1, 1).clone()


def _normalise(frames: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = frames.permute(0, 1, 4, 2, 3).float().div_(255.0)  # [B, T, 3, H, W]
    return x.sub_(mean).div_(std).contiguous()


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


def _option_values(opts: LoaderOptions) -> dict[str, Any]:
    return {f.name: getattr(opts, f.name) for f in fields(LoaderOptions)}


def _dataloader_arguments() -> list[str]:
    """``DataLoader`` arguments a caller may pass through (not those the loader sets itself)."""
    import inspect

    params = inspect.signature(DataLoader.__init__).parameters
    return [
        p for p in params if p not in ("self", "dataset", "batch_size", "shuffle", "sampler", "batch_sampler")
    ]


__all__ = [
    "LoaderConfig",
    "LoaderOptions",
    "LoaderReport",
    "SkippedVideo",
    "VideoDataset",
    "VideoLoader",
    "make_loader",
    "video_seed",
]

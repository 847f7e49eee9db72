"""Batch assembly of the loader (layer 4): pooled frame arrays that videos decode straight into,
padding to T frames with masks and indices, Arrow feature lists to arrays, and mean/std
normalisation.

Split out of :mod:`create_bench.loader` (private helpers of :class:`create_bench.loader.VideoDataset`).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from create_bench.errors import ConfigError, DataError


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

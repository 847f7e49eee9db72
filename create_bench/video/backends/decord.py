"""The decord backend (layer 2): decord's ``VideoReader`` with the seek, sequential and parallel
strategies (:mod:`create_bench.video.plan`), decoding straight into the caller's array where one is
given. Narrow frames (width 16/32/48), which decord's ``get_batch`` misreads as 4-channel, are
repaired. decord's global bridge is never touched: frames are always copied out as numpy.
"""

from __future__ import annotations

import io
from functools import partial
from typing import Any

import numpy as np

from create_bench.errors import BackendUnavailable, VideoDecodeError
from create_bench.video.checks import first_line, source_label
from create_bench.video.frames import FrameSink, in_threads, sink_array
from create_bench.video.plan import resolve_strategy


def _nd_into(nd: Any, dest: np.ndarray) -> np.ndarray:
    """Copy a decord NDArray into ``dest`` (C-contiguous, same size): ``asnumpy`` without its own
    array (the same library call, ``DECORDArrayCopyToBytes``, which checks the byte count)."""
    import ctypes

    try:
        from decord._ffi.base import _LIB, check_call
    except ImportError:  # another decord layout: one extra copy, same result
        dest[...] = nd.asnumpy()
        return dest
    check_call(
        _LIB.DECORDArrayCopyToBytes(
            nd.handle, dest.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(dest.nbytes)
        )
    )
    return dest


def decord_ctx(dev: tuple[str, int]) -> Any:
    import decord

    if dev[0] == "cpu":
        return decord.cpu(dev[1])
    # A CPU-only decord accepts decord.gpu() but raises "CUDA not enabled" when a reader opens
    # on it; probe with a tiny NDArray allocation on the device, which fails the same way.
    try:
        ctx = decord.gpu(dev[1])
        decord.nd.empty((1,), ctx=ctx)
    except Exception as e:  # decord raises its own DECORDError/RuntimeError/TVMError here
        raise BackendUnavailable(
            f"decord cannot decode on GPU {dev[1]}: this decord ({decord.__version__}) was built "
            f"without CUDA/NVDEC support ({str(e).splitlines()[0][:200]}). Build decord from source "
            f"with -DUSE_CUDA=ON, or use ctx='cpu'."
        ) from None
    return ctx


def open_decord(
    src: bytes | str, hw: tuple[int, int] | None, num_threads: int, ctx: Any, vid: str | None
) -> Any:
    import decord

    kwargs: dict[str, Any] = {"ctx": ctx, "num_threads": int(num_threads)}
    if hw is not None:
        kwargs["height"], kwargs["width"] = hw
    try:
        return decord.VideoReader(io.BytesIO(src) if isinstance(src, bytes) else src, **kwargs)
    except Exception as e:  # DECORDError, RuntimeError("Error reading ... bytes"), ...
        if "CUDA not enabled" in str(e):
            raise BackendUnavailable(
                f"decord was built without CUDA support: {str(e).splitlines()[0]}"
            ) from None
        raise VideoDecodeError(
            f"cannot open video with decord: {first_line(e)}", vid=vid, source=source_label(src)
        ) from None


def decode_decord(
    src: bytes | str,
    uniq: list[int],
    hw: tuple[int, int] | None,
    num_threads: int,
    dev: tuple[str, int],
    vid: str | None,
    strategy: str,
    out: FrameSink | None = None,
) -> np.ndarray:
    ctx = decord_ctx(dev)
    vr = open_decord(src, hw, num_threads, ctx, vid)
    try:
        n = len(vr)
        if uniq[-1] >= n:
            raise VideoDecodeError(
                f"frame index {uniq[-1]} out of range: the video has {n} frames",
                vid=vid,
                source=source_label(src),
            )
        strategy, runs = resolve_strategy(
            strategy, uniq, list(vr.get_key_indices()), num_threads, on_cpu=dev[0] == "cpu"
        )
        try:
            if strategy == "seek":
                frames = _decord_seek(vr, uniq, out)
            elif strategy == "parallel":
                assert runs is not None
                frames = _decord_parallel(vr, src, runs, hw, ctx, vid, out)
            else:
                frames = _decord_sequential(vr, uniq, out)
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(
                f"decord failed to decode frames: {first_line(e)}", vid=vid, source=source_label(src)
            ) from None
    finally:
        del vr
    if frames.ndim != 4 or frames.shape[0] != len(uniq) or frames.shape[-1] != 3:
        raise VideoDecodeError(
            f"decord returned frames of shape {frames.shape}", vid=vid, source=source_label(src)
        )
    return frames


def _fix_rows(a: np.ndarray) -> np.ndarray:
    """Undo decord's misreading of padded RGB rows.

    decord turns an FFmpeg frame into an array of shape (H, W, linesize // W) whenever the row
    stride is a multiple of W. For narrow frames (e.g. W = 16, 32, 48) the stride of an RGB row
    is padded to 4W bytes, so decord reports 4 "channels" (and ``get_batch`` fails copying them
    into its 3-channel buffer). The first 3W bytes of each row are the real pixels.
    """
    if a.shape[-1] == 3:
        return a
    h, w = a.shape[-3], a.shape[-2]
    lead = a.shape[:-3]
    rows = np.ascontiguousarray(a).reshape(*lead, h, -1)[..., : 3 * w]
    return np.ascontiguousarray(rows).reshape(*lead, h, w, 3)


def _decord_seek(vr: Any, uniq: list[int], out: FrameSink | None = None) -> np.ndarray:
    try:
        batch = vr.get_batch(uniq)
        shape = tuple(batch.shape)
        if shape[-1] == 3:
            dest = sink_array(out, shape)
            return batch.asnumpy() if dest is None else _nd_into(batch, dest)
    except Exception as e:
        if "must exactly match" not in str(e):
            raise
    # Narrow frames (see _fix_rows): the same accurate seeks, one frame at a time (vr[i] is
    # seek_accurate + next, as get_batch does internally), then repair the rows.
    vr.seek(0)
    return np.stack([_fix_rows(vr[i].asnumpy()) for i in uniq])


def _decord_parallel(
    vr: Any,
    src: bytes | str,
    runs: list[list[int]],
    hw: tuple[int, int] | None,
    ctx: Any,
    vid: str | None,
    out: FrameSink | None = None,
) -> np.ndarray:
    """Each run of targets with its own reader (``vr`` takes the first), all in threads (decord's
    calls release the GIL); the frames are decord's ``get_batch`` frames, copied into one array."""
    uniq = [t for run in runs for t in run]
    if len(runs) < 2:
        return _decord_seek(vr, uniq, out)

    def job(i: int) -> Any:
        if i == 0:
            return vr.get_batch(runs[0])
        reader = open_decord(src, hw, 1, ctx, vid)
        try:
            return reader.get_batch(runs[i])
        finally:
            # Free the reader now, also when get_batch raised: an exception's traceback would keep
            # this frame (and the reader) alive until a GC pass, which may run in a forked child,
            # where decord's destructor joins a decoding thread that does not exist (segfault).
            del reader

    try:
        batches = in_threads([partial(job, i) for i in range(len(runs))])
    except VideoDecodeError:
        raise
    except Exception as e:
        if "must exactly match" not in str(e):
            raise
        return _decord_seek(vr, uniq, out)  # narrow frames: the one-reader repair path
    shape = (len(uniq), *tuple(batches[0].shape)[1:])
    if any(tuple(b.shape)[1:] != shape[1:] for b in batches):
        raise VideoDecodeError(
            f"decord readers disagree on the frame size: {[tuple(b.shape) for b in batches]}", vid=vid
        )
    dest = sink_array(out, shape)
    if dest is None:
        dest = np.empty(shape, dtype=np.uint8)
    a = 0
    for b, run in zip(batches, runs):
        _nd_into(b, dest[a : a + len(run)])
        a += len(run)
    return dest


def _decord_sequential(vr: Any, uniq: list[int], sink: FrameSink | None = None) -> np.ndarray:
    # Every frame in order from the start: no seeks, no flushes. Frames before a target are
    # decoded but skipped (skip_frames: no RGB conversion, no copy, no Python per frame; they
    # cost as much as the frames a seek decodes forward from its keyframe); next() converts the
    # target.
    vr.seek(0)
    out: np.ndarray | None = None
    pos = 0  # the frame next() returns
    for j, t in enumerate(uniq):  # sorted, unique
        if t > pos:
            vr.skip_frames(t - pos)
        frame = _fix_rows(vr.next().asnumpy())
        if out is None:
            shape = (len(uniq), *frame.shape)
            out = sink_array(sink, shape)
            if out is None:
                out = np.empty(shape, dtype=np.uint8)
        out[j] = frame
        pos = t + 1
    assert out is not None  # uniq is never empty
    return out

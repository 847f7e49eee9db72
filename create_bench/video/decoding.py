"""Decode chosen frames of a video (layer 2): the public decoding API. decord decodes, with PyAV
behind the same interface; this module checks the inputs (:mod:`~create_bench.video.checks`) and
dispatches to the backends (:mod:`create_bench.video.backends`), in this process or through the
killable worker (:mod:`~create_bench.video.worker`). The seek planner is
:mod:`~create_bench.video.plan`.

``decode(source, indices)`` returns ``uint8 [T, H, W, 3]`` RGB frames, in the order of ``indices``
(duplicates allowed, any order). ``source`` is the encoded video as ``bytes`` or a path.

**Frame numbering.** Frame ``i`` is the i-th frame in presentation order, counted from the
stream's packets sorted by timestamp (decord's index; the ``pyav`` backend builds the same index
with a demux pass, so variable frame rates number alike). Callers pass indices computed from
the dataset's stored ``num_frames`` (:mod:`create_bench.video.sampling`); the container's claimed
frame count is never used. An index past the frames that decode raises :class:`VideoDecodeError`.

**Orientation.** Frames are display-oriented: a 90/180/270 degree rotation in the container's
display matrix is applied (decord does this; the ``pyav`` backend applies the same transposes), so
a portrait phone video comes out portrait. Other angles and mirroring are ignored.

**Resize.** ``size=(H, W)`` (or an int for a square) resizes at decode time, after rotation
(so ``H, W`` are display-oriented), with FFmpeg's ``scale`` filter and bilinear interpolation,
converting to RGB in the same step (decord's pipeline). The ``pyav`` backend builds the same
filter graph (``transpose`` when rotated, ``scale=W:H:flags=bilinear``, ``rgb24``), so the two
backends return *identical* frames on every video we test (CREATE-sample and the edge cases in
``tests/test_video_decode.py``), at the stored size and for any resize that changes the height.
One known exception: a resize that keeps the (display) height but changes the width is scaled
differently by the FFmpeg 4 inside decord's wheel and the FFmpeg 7 inside PyAV's (chroma
handling; up to ~50 levels at sharp colour edges, mean about 4-5). Cross-checks therefore allow
:data:`PYAV_TOLERANCE` (max absolute difference of any value) in general, and a mean absolute
difference of :data:`PYAV_HSCALE_MEAN_TOLERANCE` for that width-only case.

**Strategy.** Decoding frame ``t`` means decoding from the keyframe before ``t``. ``strategy="seek"``
jumps to each target's keyframe when it lies past the current position (decord's ``get_batch``
does this, and does not re-seek inside a GOP); ``"sequential"`` decodes every frame from the start
up to the last target (converting only the targets to RGB). ``"parallel"`` splits the sorted
targets into contiguous runs (GOP-aligned, balanced by estimated cost: :func:`plan_parallel`) and
decodes each run with its own single-threaded reader in its own thread (decord and PyAV release the
GIL while decoding): a seek has to decode serially from its keyframe, so FFmpeg's frame threads
barely help a seek-bound plan, while independent readers use every core. Its thread budget is
``num_threads`` (0: the cores this process may use, at most :data:`MAX_PARALLEL_READERS`; 1: never
parallel). ``"auto"`` (default) estimates the costs in frames from the keyframe index
(:func:`plan_strategy`, :func:`plan_parallel`) and picks the cheapest. All give the same frames.

**Robustness.** decord can hang or crash in native code on broken files; :func:`decode_with_timeout`
(or ``decode(..., timeout=s)``) runs the decode in a separate worker process that is killed after
``timeout`` seconds (:class:`DecodeTimeout`) or when it dies (:class:`VideoDecodeError`). A corrupt,
truncated or non-video source raises :class:`VideoDecodeError` naming the ``vid``.
:func:`decode_many` streams many videos through the worker with a look-ahead (the loader uses it).
Narrow frames (width 16/32/48), which decord's ``get_batch`` misreads as 4-channel, are repaired.

**Copies.** ``decode(..., out=...)`` writes the frames into the caller's array (the loader passes
each video's slot of its batch): decord's frames are copied once, straight into it, as
``asnumpy`` would copy them into a new array. Through the worker, the forked worker decodes into a
shared-memory ring and the caller copies from there into ``out`` (one more copy; no pipe copies).

**GPU.** ``ctx="gpu"`` (or ``"gpu:N"``/``"cuda:N"``) decodes with NVDEC through
:mod:`create_bench.video.backends.nvdec`: decord's CUDA reader where the installed decord was built with CUDA,
else NVDEC through PyAV's FFmpeg (``backend="pyav"`` asks for this one), else PyNvVideoCodec. The
PyPI decord wheels are CPU-only; where no backend can run, :class:`BackendUnavailable` is raised
with a message giving each backend's reason.

decord's global bridge is never touched: we always call ``.asnumpy()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from create_bench.errors import BackendUnavailable, ConfigError, CreateBenchError, VideoDecodeError
from create_bench.video import worker
from create_bench.video.backends import nvdec
from create_bench.video.backends.decord import decode_decord
from create_bench.video.backends.pyav import decode_pyav
from create_bench.video.checks import (
    BACKENDS,
    STRATEGIES,
    Source,
    check_backend,
    check_indices,
    check_strategy,
    normalize_size,
    normalize_source,
    parse_ctx,
)
from create_bench.video.frames import FrameSink, once_per_shape, sink_array
from create_bench.video.plan import (
    MAX_PARALLEL_READERS,
    OPEN_COST_FRAMES,
    DecodePlan,
    choose_strategy,
    parallel_budget,
    plan_parallel,
    plan_strategy,
    resolve_strategy,
)
from create_bench.video.worker import worker_pid

#: Max per-value difference allowed between the decord and pyav backends (see module doc).
PYAV_TOLERANCE = 2
#: Mean absolute difference allowed between the backends for a width-only resize (see module doc).
PYAV_HSCALE_MEAN_TOLERANCE = 6.0


# --------------------------------------------------------------------------- public API


def decode(
    source: Source,
    indices: Sequence[int],
    *,
    backend: str = "decord",
    size: int | Sequence[int] | None = None,
    num_threads: int = 0,
    ctx: str = "cpu",
    vid: str | None = None,
    strategy: str = "auto",
    timeout: float | None = None,
    out: FrameSink | None = None,
) -> np.ndarray:
    """Decode the frames ``indices`` of a video.

    Args:
        source: the encoded video, as bytes or a file path.
        indices: frame indices (presentation order, 0-based); the output follows their order.
        backend: ``"decord"`` (default) or ``"pyav"`` (cross-checks; same frames).
        size: resize at decode time to ``(H, W)`` (an int means square); None keeps the stored size.
        num_threads: decoder threads; 0 lets FFmpeg choose.
        ctx: ``"cpu"`` or ``"gpu[:N]"`` (decord built with CUDA only).
        vid: the video id, used in error messages.
        strategy: ``"auto"``, ``"seek"``, ``"sequential"`` or ``"parallel"`` (see module doc;
            same frames).
        timeout: when set, decode in a killable worker process with this many seconds per call.
        out: where to put the frames, saving a copy (a caller filling a batch passes its slot):
            a C-contiguous writable ``uint8`` array, used when the frames have exactly its shape,
            or a callable ``shape -> array | None`` asked once the shape is known. When it gives
            no usable array, a new one is returned (``result is out`` tells which happened).

    Returns:
        ``uint8`` array ``[len(indices), H, W, 3]`` (RGB).

    Raises:
        VideoDecodeError: corrupt, truncated or non-video source; an index past the last frame.
        DecodeTimeout: ``timeout`` elapsed (the worker was killed).
        BackendUnavailable: ``ctx="gpu"`` without a CUDA-enabled decord.
        ConfigError: bad backend, size, ctx or strategy.
    """
    if timeout is not None:
        return decode_with_timeout(
            source,
            indices,
            timeout=timeout,
            backend=backend,
            size=size,
            num_threads=num_threads,
            ctx=ctx,
            vid=vid,
            strategy=strategy,
            out=out,
        )
    check_backend(backend)
    check_strategy(strategy)
    hw = normalize_size(size)
    dev = parse_ctx(ctx)
    if strategy == "parallel" and dev[0] != "cpu":
        raise ConfigError("strategy='parallel' decodes on the CPU only")
    wanted = check_indices(indices, vid)
    src = normalize_source(source, vid)
    uniq = sorted(set(wanted))
    out = once_per_shape(out)
    # Sorted unique indices (what the loader asks) decode straight into ``out``.
    direct = out if wanted == uniq else None
    frames = _decode_sorted(src, uniq, hw, dev, backend, num_threads, vid, strategy, direct)
    if wanted != uniq:
        pos = {t: i for i, t in enumerate(uniq)}
        order = [pos[t] for t in wanted]
        dest = sink_array(out, (len(wanted), *frames.shape[1:]))
        return frames[order] if dest is None else np.take(frames, order, axis=0, out=dest)
    dest = sink_array(out, frames.shape)
    if dest is None or dest is frames:
        return frames
    dest[...] = frames  # a backend that made its own array (pyav, gpu, narrow frames)
    return dest


def _decode_sorted(
    src: bytes | str,
    uniq: list[int],
    hw: tuple[int, int] | None,
    dev: tuple[str, int],
    backend: str,
    num_threads: int,
    vid: str | None,
    strategy: str,
    out: FrameSink | None,
) -> np.ndarray:
    """Sorted unique frames ``uniq`` from the backend that ``dev`` and ``backend`` select (checked
    inputs); ``out`` is offered to the backends that can decode into it."""
    if dev[0] != "gpu":
        if backend == "decord":
            return decode_decord(src, uniq, hw, num_threads, dev, vid, strategy, out)
        return decode_pyav(src, uniq, hw, num_threads, vid, strategy)
    # NVDEC: backend="decord" takes the first GPU backend that runs here (a CUDA-built decord,
    # PyAV's FFmpeg with the cuda hwaccel, PyNvVideoCodec); backend="pyav" asks for PyAV's only.
    try:
        frames = nvdec.decode_gpu_frames(
            src, uniq, hw, dev[1], vid, "auto" if backend == "decord" else "pyav"
        )
    except BackendUnavailable:
        raise  # refused before any CUDA call
    except BaseException:
        worker.mark_cuda_used()  # a CUDA context may exist now
        raise
    worker.mark_cuda_used()
    return frames


def backend_version(backend: str = "decord") -> str:
    """``"decord-0.6.0"`` / ``"pyav-18.1.0"``: the ``decode:`` field of score signatures."""
    if backend == "decord":
        import decord

        return f"decord-{decord.__version__}"
    if backend == "pyav":
        import av

        return f"pyav-{av.__version__}"
    check_backend(backend)
    raise AssertionError(backend)  # check_backend raised


def gpu_available() -> bool:
    """True when ``decode(..., ctx="gpu")`` can run here: some NVDEC backend of
    :mod:`create_bench.video.backends.nvdec` (a CUDA-built decord, PyAV's cuda hwaccel,
    PyNvVideoCodec) works on CUDA device 0 (probed once)."""
    return nvdec.gpu_decode_available(0)


# --------------------------------------------------------------------------- through the worker


def decode_with_timeout(
    source: Source, indices: Sequence[int], *, timeout: float = 60.0, **kwargs: Any
) -> np.ndarray:
    """``decode`` in a separate worker process, killed after ``timeout`` seconds.

    The worker (:mod:`create_bench.video.worker`) is forked from this process and long-lived (one
    per calling thread), so its start-up cost is paid once; a timeout or a crash kills it and the
    next call starts a new one.

    Raises:
        DecodeTimeout: the decode took longer than ``timeout``; the worker was killed.
        VideoDecodeError: the source is broken, or the worker died (e.g. a crash in native code).
    """
    result = next(decode_many([(source, indices, kwargs)], timeout=timeout, window=1))
    if isinstance(result, BaseException):
        raise result
    return result


DecodeRequest = tuple[Source, Sequence[int], dict[str, Any]]
#: Requests the worker may hold at once in ``decode_many`` (its look-ahead).
DEFAULT_WINDOW = 16


def _prepare(
    request: DecodeRequest | VideoDecodeError,
) -> tuple[bytes | str, list[int], dict[str, Any]] | VideoDecodeError:
    """Check one request here (config errors raise; a bad source or index becomes its result)."""
    if isinstance(request, VideoDecodeError):
        return request
    source, indices, kwargs = request
    kw = {k: v for k, v in kwargs.items() if k != "timeout"}
    check_backend(kw.get("backend", "decord"))
    check_strategy(kw.get("strategy", "auto"))
    normalize_size(kw.get("size"))
    parse_ctx(kw.get("ctx", "cpu"))
    try:
        vid = kw.get("vid")
        return normalize_source(source, vid), check_indices(indices, vid), kw
    except VideoDecodeError as e:
        return e


def decode_many(
    requests: Iterable[DecodeRequest | VideoDecodeError],
    *,
    timeout: float | None = 60.0,
    window: int = DEFAULT_WINDOW,
) -> Iterator[np.ndarray | CreateBenchError]:
    """Decode a stream of videos, yielding each result in order: frames, or the error it raised.

    ``requests`` (any iterable, consumed lazily) are ``(source, indices, decode_kwargs)``; an
    exception instance in their place is passed through as that item's result. With a
    ``timeout``, up to ``window`` requests are handed to the killable worker ahead of time, so it
    decodes the next videos while the caller handles earlier ones; each video gets ``timeout``
    seconds from the moment the worker can start it (when the previous result arrives). A
    timed-out or crashed video yields :class:`DecodeTimeout` / :class:`VideoDecodeError`; the worker
    is replaced and the requests it held are resubmitted. ``timeout=None`` decodes in this
    process, one by one.

    Configuration errors (bad backend, strategy, size or ctx) are raised, not yielded.
    """
    if timeout is None:
        for request in requests:
            prepared = _prepare(request)
            if isinstance(prepared, VideoDecodeError):
                yield prepared
                continue
            src, indices, kw = prepared
            try:
                yield decode(src, indices, **kw)
            except VideoDecodeError as e:
                yield e
        return
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if window < 1:
        raise ConfigError(f"window must be >= 1, got {window!r}")
    yield from worker.thread_worker(decode).map((_prepare(r) for r in requests), float(timeout), int(window))


def decode_gpu(
    source: Source,
    indices: Sequence[int],
    *,
    size: int | Sequence[int] | None = None,
    device: int | str = 0,
    vid: str | None = None,
    timeout: float | None = None,
) -> np.ndarray:
    """Decode frames ``indices`` of a video on an NVIDIA GPU: ``decode(..., ctx="gpu:N")``.

    Args:
        source: the encoded video (bytes or a path).
        indices: frame indices, presentation order; the output follows their order.
        size: ``(H, W)`` or an int; None keeps the stored size.
        device: CUDA device (``0``, ``"cuda:1"``).
        vid: the video id, for error messages.
        timeout: decode in a killable worker process with this many seconds.

    Returns:
        ``uint8 [len(indices), H, W, 3]`` RGB frames on the host.

    Raises:
        BackendUnavailable: no GPU backend can run here (the message says why for each).
        VideoDecodeError: the video cannot be decoded, or an index is past its last frame.
    """
    idx = nvdec.device_index(device)
    nvdec.select_gpu_backend(idx)  # the full "why not" message, before any worker starts
    return decode(source, indices, size=size, ctx=f"gpu:{idx}", vid=vid, timeout=timeout)


__all__ = [
    "BACKENDS",
    "MAX_PARALLEL_READERS",
    "OPEN_COST_FRAMES",
    "PYAV_HSCALE_MEAN_TOLERANCE",
    "PYAV_TOLERANCE",
    "STRATEGIES",
    "DecodePlan",
    "backend_version",
    "choose_strategy",
    "decode",
    "decode_gpu",
    "decode_many",
    "decode_with_timeout",
    "gpu_available",
    "normalize_size",
    "parallel_budget",
    "plan_parallel",
    "plan_strategy",
    "resolve_strategy",
    "worker_pid",
]

"""Decode chosen frames of a video (layer 2): decord, with PyAV behind the same interface.

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
:mod:`create_bench.video.gpu`: decord's CUDA reader where the installed decord was built with CUDA,
else NVDEC through PyAV's FFmpeg (``backend="pyav"`` asks for this one), else PyNvVideoCodec. The
PyPI decord wheels are CPU-only; where no backend can run, :class:`BackendUnavailable` is raised
with a message giving each backend's reason.

decord's global bridge is never touched: we always call ``.asnumpy()``.
"""

from __future__ import annotations

import atexit
import bisect
import io
import math
import os
import select
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import (
    BackendUnavailable,
    ConfigError,
    CreateBenchError,
    DecodeTimeout,
    VideoDecodeError,
)

BACKENDS = ("decord", "pyav")
STRATEGIES = ("auto", "seek", "sequential", "parallel")
#: Max per-value difference allowed between the decord and pyav backends (see module doc).
PYAV_TOLERANCE = 2
#: Mean absolute difference allowed between the backends for a width-only resize (see module doc).
PYAV_HSCALE_MEAN_TOLERANCE = 6.0
#: Estimated cost of one seek (decoder flush and restart, demuxer reposition), in decoded frames.
SEEK_COST_FRAMES = 6.0
#: Relative cost of a frame the sequential path decodes on the way to a target. Both backends
#: decode such frames without converting them (decord's ``skip_frames``; PyAV converts targets
#: only), the same work as decoding forward from a keyframe after a seek.
SEQUENTIAL_FRAME_COST = 1.0
#: Estimated cost of opening one more reader for the parallel strategy (container parse, index,
#: decoder set-up), in decoded frames: about 30 ms for a 720p H.264 clip here, 8-10 frames.
OPEN_COST_FRAMES = 10.0
#: ``"auto"`` picks ``"parallel"`` only when its estimated wall cost is below this share of the
#: best single-reader plan (threads share memory bandwidth and the machine may be busy).
PARALLEL_GAIN = 0.75
#: Up to this many targets :func:`plan_parallel` finds the best split exactly (O(readers x n^2)).
PARALLEL_DP_TARGETS = 48
#: Most readers the parallel strategy uses (``num_threads=0``: the cores this process may use, up
#: to this many).
MAX_PARALLEL_READERS = 4

Source = bytes | bytearray | memoryview | str | os.PathLike
#: Where decoded frames go (see ``decode(out=...)``): an array, or a callable that is given the
#: frames' shape once it is known and returns an array of that shape (or None: a new array).
FrameSink = np.ndarray | Callable[[tuple[int, ...]], "np.ndarray | None"]


# --------------------------------------------------------------------------- input checks


def _source_label(source: Any) -> str | None:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    return None


def _normalize_source(source: Any, vid: str | None) -> bytes | str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise VideoDecodeError("empty video bytes", vid=vid)
        return data
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        # Not is_file(): a named pipe or device is a legitimate (if risky) source.
        if not path.exists() or path.is_dir():
            raise VideoDecodeError("no such video file", vid=vid, source=str(path))
        return str(path)
    raise VideoDecodeError(f"video source must be bytes or a path, got {type(source).__name__}", vid=vid)


def normalize_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``None`` -> None; ``s`` -> ``(s, s)``; ``(H, W)`` -> ``(H, W)``; checks positive ints."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        h = w = int(size)
    else:
        try:
            h, w = (int(x) for x in size)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            raise ConfigError(f"size must be an int or (height, width), got {size!r}") from None
    if h < 1 or w < 1:
        raise ConfigError(f"size must be positive, got {size!r}")
    return h, w


def _check_indices(indices: Sequence[int], vid: str | None) -> list[int]:
    out = []
    for i in indices:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise VideoDecodeError(f"frame index {i!r} is not an int", vid=vid)
        if i < 0:
            raise VideoDecodeError(f"negative frame index {int(i)}", vid=vid)
        out.append(int(i))
    if not out:
        raise VideoDecodeError("no frame indices to decode", vid=vid)
    return out


def _parse_ctx(ctx: str) -> tuple[str, int]:
    kind, _, dev = str(ctx).partition(":")
    kind = kind.lower()
    if kind == "cuda":
        kind = "gpu"
    if kind not in ("cpu", "gpu"):
        raise ConfigError(f"ctx must be 'cpu', 'gpu' or 'gpu:N', got {ctx!r}")
    try:
        return kind, int(dev) if dev else 0
    except ValueError:
        raise ConfigError(f"bad device number in ctx {ctx!r}") from None


# --------------------------------------------------------------------------- strategy


@dataclass(frozen=True)
class DecodePlan:
    """Cost estimate (in decoded frames) of both strategies for one video and set of targets."""

    strategy: str
    seek_frames: int
    seeks: int
    sequential_frames: int
    #: Frames decoded if every target were decoded from its own preceding keyframe (the
    #: "decode limit" of the benchmark: no sharing between targets).
    limit_frames: int

    @property
    def seek_cost(self) -> float:
        return self.seek_frames + SEEK_COST_FRAMES * self.seeks

    @property
    def sequential_cost(self) -> float:
        return self.sequential_frames * SEQUENTIAL_FRAME_COST


def plan_strategy(targets: Sequence[int], key_indices: Sequence[int]) -> DecodePlan:
    """Estimate the decode cost of seeking vs decoding sequentially, and pick the cheaper.

    ``targets`` are frame indices (any order); ``key_indices`` the sorted keyframe indices.
    The seek model follows decord's ``get_batch``: a target in the GOP of the current position
    (and not behind it) is reached by decoding forward; any other target costs a seek to its
    keyframe and decoding from there.

    >>> p = plan_strategy([10, 20, 290], key_indices=[0, 100, 200])
    >>> (p.seek_frames, p.seeks, p.sequential_frames, p.limit_frames)
    (112, 1, 291, 123)
    >>> p.strategy
    'seek'
    """
    uniq = sorted(set(int(t) for t in targets))
    keys = sorted(set(int(k) for k in key_indices)) or [0]
    if keys[0] != 0:
        keys = [0] + keys
    pos = 0  # next frame the decoder would produce
    seek_frames = seeks = limit = 0
    for t in uniq:
        key = keys[bisect.bisect_right(keys, t) - 1]
        limit += t - key + 1
        cur_key = keys[bisect.bisect_right(keys, pos) - 1] if pos > 0 else 0
        if pos <= t and (key == cur_key or key <= pos):
            seek_frames += t - pos + 1
        else:
            seeks += 1
            seek_frames += t - key + 1
        pos = t + 1
    sequential = uniq[-1] + 1 if uniq else 0
    plan = DecodePlan("seek", seek_frames, seeks, sequential, limit)
    if plan.sequential_cost < plan.seek_cost:
        plan = DecodePlan("sequential", seek_frames, seeks, sequential, limit)
    return plan


def _target_costs(uniq: list[int], keys: list[int]) -> tuple[list[float], list[float]]:
    """Per sorted target ``t_i``: the cost of a reader starting at it (``start``: a seek to its
    keyframe, unless that is frame 0, and decoding from there) and the marginal cost of reaching it
    from ``t_{i-1}`` in the same reader (``step``: decoding forward inside a GOP, else a seek), in
    decoded frames, following :func:`plan_strategy`'s seek model."""
    start, step = [], []
    for i, t in enumerate(uniq):
        key = keys[bisect.bisect_right(keys, t) - 1]
        start.append(t - key + 1 + (SEEK_COST_FRAMES if key > 0 else 0.0))
        if i == 0:
            step.append(start[-1])
            continue
        pos = uniq[i - 1] + 1
        cur_key = keys[bisect.bisect_right(keys, pos) - 1]
        if key == cur_key or key <= pos:
            step.append(float(t - pos + 1))
        else:
            step.append(t - key + 1 + SEEK_COST_FRAMES)
    return start, step


def plan_parallel(
    targets: Sequence[int], key_indices: Sequence[int], readers: int
) -> tuple[list[list[int]], float] | None:
    """Split sorted unique targets into at most ``readers`` contiguous runs, one reader each.

    Minimises the estimated wall cost (the costliest run; every run after the first also pays
    :data:`OPEN_COST_FRAMES` for its reader) by dynamic programming over the split points (over
    :data:`PARALLEL_DP_TARGETS` targets, quadratic time would show: the runs are cut where the
    running cost crosses equal shares of the total instead). Returns
    ``(runs, wall_cost)``, or None when one run is best (or ``readers < 2``).

    >>> runs, cost = plan_parallel([50, 150, 250, 350], key_indices=[0, 100, 200, 300], readers=2)
    >>> runs, cost
    ([[50, 150], [250, 350]], 124.0)
    """
    uniq = sorted(set(int(t) for t in targets))
    n, k = len(uniq), min(int(readers), len(uniq))
    if k < 2:
        return None
    keys = sorted(set(int(x) for x in key_indices)) or [0]
    if keys[0] != 0:
        keys = [0] + keys
    start, step = _target_costs(uniq, keys)
    pre = [0.0]
    for c in step:
        pre.append(pre[-1] + c)

    def run_cost(i: int, j: int) -> float:  # targets i..j-1 in one fresh reader
        return start[i] + pre[j] - pre[i + 1] + (OPEN_COST_FRAMES if i > 0 else 0.0)

    if n > PARALLEL_DP_TARGETS:  # many targets: cut where the running cost crosses m/k of the total
        starts_of: dict[int, list[int]] = {}
        for m in range(2, k + 1):
            cuts = [0]
            for q in range(1, m):
                i = bisect.bisect_left(pre, pre[n] * q / m, lo=cuts[-1] + 1)
                cuts.append(min(max(i - 1, cuts[-1] + 1), n - (m - q)))
            starts_of[m] = cuts
        costs = {
            m: max(run_cost(a, b) for a, b in zip(cuts, [*cuts[1:], n])) for m, cuts in starts_of.items()
        }
        m = min(costs, key=lambda mm: (costs[mm], mm))
        if costs[m] >= run_cost(0, n):
            return None
        cuts = starts_of[m]
        return [uniq[a:b] for a, b in zip(cuts, [*cuts[1:], n])], costs[m]
    inf = float("inf")
    # best[m][j]: least wall cost of the first j targets in m runs; cut[m][j]: where the last starts
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for m in range(1, k + 1):
        for j in range(m, n + 1):
            for i in range(m - 1, j):
                c = max(best[m - 1][i], run_cost(i, j))
                if c < best[m][j]:
                    best[m][j], cut[m][j] = c, i
    m = min(range(1, k + 1), key=lambda mm: (best[mm][n], mm))
    if m < 2:
        return None
    runs, j = [], n
    for mm in range(m, 0, -1):
        i = cut[mm][j]
        runs.append(uniq[i:j])
        j = i
    return runs[::-1], best[m][n]


def parallel_budget(num_threads: int) -> int:
    """Readers the parallel strategy may use: ``num_threads`` when set, else the cores this
    process may run on, at most :data:`MAX_PARALLEL_READERS`."""
    if num_threads > 0:
        return int(num_threads)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_PARALLEL_READERS, cores))


def choose_strategy(uniq: list[int], keys: list[int], num_threads: int) -> tuple[str, list[list[int]] | None]:
    """``"auto"``'s choice for sorted ``uniq``: ``("parallel", runs)`` when splitting the targets
    over readers is estimated to cost under :data:`PARALLEL_GAIN` of the best single-reader plan,
    else ``(plan_strategy(...).strategy, None)``."""
    plan = plan_strategy(uniq, keys)
    single = min(plan.seek_cost, plan.sequential_cost)
    par = plan_parallel(uniq, keys, parallel_budget(num_threads))
    if par is not None and par[1] < PARALLEL_GAIN * single:
        return "parallel", par[0]
    return plan.strategy, None


def resolve_strategy(
    strategy: str, uniq: list[int], keys: list[int], num_threads: int, on_cpu: bool = True
) -> tuple[str, list[list[int]] | None]:
    """The strategy a decode of sorted ``uniq`` runs, and for ``"parallel"`` its runs of targets
    (one run when splitting does not pay). ``"auto"`` considers the parallel strategy on the CPU
    only (:func:`choose_strategy`); a GPU decoder has no parallel strategy."""
    if strategy == "parallel":
        if not on_cpu:
            raise ConfigError("strategy='parallel' decodes on the CPU only")
        par = plan_parallel(uniq, keys, parallel_budget(num_threads))
        return strategy, par[0] if par is not None else [uniq]
    if strategy != "auto":
        return strategy, None
    if on_cpu:
        return choose_strategy(uniq, keys, num_threads)
    return plan_strategy(uniq, keys).strategy, None


def _in_threads(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` concurrently (the first in this thread) and return their results in order;
    the first job's exception (in job order) is raised after all have finished."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as e:  # re-raised below, in the caller's thread
            errors[i] = e.with_traceback(None)  # no frames (and their locals) kept alive

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(jobs))]
    for th in threads:
        th.start()
    run(0)
    for th in threads:
        th.join()
    first = next((e for e in errors if e is not None), None)
    errors.clear()  # no reference cycle (error -> traceback -> this frame -> errors -> error)
    if first is not None:
        try:
            raise first
        finally:
            first = None
    return results


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
    if backend not in BACKENDS:
        raise ConfigError(f"unknown decode backend {backend!r} (known: {', '.join(BACKENDS)})")
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown decode strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    hw = normalize_size(size)
    dev = _parse_ctx(ctx)
    if strategy == "parallel" and dev[0] != "cpu":
        raise ConfigError("strategy='parallel' decodes on the CPU only")
    wanted = _check_indices(indices, vid)
    src = _normalize_source(source, vid)
    uniq = sorted(set(wanted))
    out = _once(out)
    # Sorted unique indices (what the loader asks) decode straight into ``out``.
    direct = out if wanted == uniq else None
    if dev[0] == "gpu":
        # NVDEC (create_bench.video.gpu): backend="decord" takes the first GPU backend that runs
        # here (a CUDA-built decord, PyAV's FFmpeg with the cuda hwaccel, PyNvVideoCodec);
        # backend="pyav" asks for PyAV's NVDEC path only.
        from create_bench.video.gpu import decode_gpu_frames

        global _CUDA_USED
        try:
            frames = decode_gpu_frames(src, uniq, hw, dev[1], vid, "auto" if backend == "decord" else "pyav")
        except BackendUnavailable:
            raise  # refused before any CUDA call
        except BaseException:
            _CUDA_USED = True  # a CUDA context may exist now
            raise
        _CUDA_USED = True
    elif backend == "decord":
        frames = _decode_decord(src, uniq, hw, num_threads, dev, vid, strategy, direct)
    else:
        frames = _decode_pyav(src, uniq, hw, num_threads, vid, strategy)
    if wanted != uniq:
        pos = {t: i for i, t in enumerate(uniq)}
        order = [pos[t] for t in wanted]
        dest = _sink_array(out, (len(wanted), *frames.shape[1:]))
        return frames[order] if dest is None else np.take(frames, order, axis=0, out=dest)
    dest = _sink_array(out, frames.shape)
    if dest is None or dest is frames:
        return frames
    dest[...] = frames  # a backend that made its own array (pyav, gpu, narrow frames)
    return dest


def _once(out: FrameSink | None) -> FrameSink | None:
    """``out`` with a callable asked at most once per shape (a backend that wrote into the array
    it got is then recognised by identity, and no frames are copied onto themselves)."""
    if out is None or isinstance(out, np.ndarray):
        return out
    asked: dict[tuple[int, ...], np.ndarray | None] = {}

    def sink(shape: tuple[int, ...]) -> np.ndarray | None:
        if shape not in asked:
            asked[shape] = out(shape)
        return asked[shape]

    return sink


def _sink_array(out: FrameSink | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The array of ``out`` to write frames of ``shape`` into, or None (the caller makes its own)."""
    if out is None:
        return None
    shape = tuple(int(x) for x in shape)
    arr = out if isinstance(out, np.ndarray) else out(shape)
    if (
        not isinstance(arr, np.ndarray)
        or arr.shape != shape
        or arr.dtype != np.uint8
        or not arr.flags.c_contiguous
        or not arr.flags.writeable
    ):
        return None
    return arr


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


def backend_version(backend: str = "decord") -> str:
    """``"decord-0.6.0"`` / ``"pyav-18.1.0"``: the ``decode:`` field of score signatures."""
    if backend == "decord":
        import decord

        return f"decord-{decord.__version__}"
    if backend == "pyav":
        import av

        return f"pyav-{av.__version__}"
    raise ConfigError(f"unknown decode backend {backend!r} (known: {', '.join(BACKENDS)})")


def gpu_available() -> bool:
    """True when ``decode(..., ctx="gpu")`` can run here: some NVDEC backend of
    :mod:`create_bench.video.gpu` (a CUDA-built decord, PyAV's cuda hwaccel, PyNvVideoCodec) works
    on CUDA device 0 (probed once)."""
    from create_bench.video.gpu import gpu_decode_available

    return gpu_decode_available(0)


# --------------------------------------------------------------------------- decord


def _decord_ctx(dev: tuple[str, int]) -> Any:
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


def _open_decord(
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
            f"cannot open video with decord: {_first_line(e)}", vid=vid, source=_label(src)
        ) from None


def _decode_decord(
    src: bytes | str,
    uniq: list[int],
    hw: tuple[int, int] | None,
    num_threads: int,
    dev: tuple[str, int],
    vid: str | None,
    strategy: str,
    out: FrameSink | None = None,
) -> np.ndarray:
    ctx = _decord_ctx(dev)
    vr = _open_decord(src, hw, num_threads, ctx, vid)
    try:
        n = len(vr)
        if uniq[-1] >= n:
            raise VideoDecodeError(
                f"frame index {uniq[-1]} out of range: the video has {n} frames", vid=vid, source=_label(src)
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
                f"decord failed to decode frames: {_first_line(e)}", vid=vid, source=_label(src)
            ) from None
    finally:
        del vr
    if frames.ndim != 4 or frames.shape[0] != len(uniq) or frames.shape[-1] != 3:
        raise VideoDecodeError(f"decord returned frames of shape {frames.shape}", vid=vid, source=_label(src))
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
            dest = _sink_array(out, shape)
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
        reader = _open_decord(src, hw, 1, ctx, vid)
        try:
            return reader.get_batch(runs[i])
        finally:
            # Free the reader now, also when get_batch raised: an exception's traceback would keep
            # this frame (and the reader) alive until a GC pass, which may run in a forked child,
            # where decord's destructor joins a decoding thread that does not exist (segfault).
            del reader

    try:
        batches = _in_threads([partial(job, i) for i in range(len(runs))])
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
    dest = _sink_array(out, shape)
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
            out = _sink_array(sink, shape)
            if out is None:
                out = np.empty(shape, dtype=np.uint8)
        out[j] = frame
        pos = t + 1
    assert out is not None  # uniq is never empty
    return out


# --------------------------------------------------------------------------- pyav


def _decode_pyav(
    src: bytes | str,
    uniq: list[int],
    hw: tuple[int, int] | None,
    num_threads: int,
    vid: str | None,
    strategy: str,
    hwaccel: int | None = None,
) -> np.ndarray:
    """PyAV on the CPU, or with ``hwaccel=N`` on NVDEC of CUDA device N (one reader, no parallel
    strategy; frames are downloaded to the host and converted as on the CPU)."""
    import av

    kw: dict[str, Any] = {}
    if hwaccel is not None:
        from create_bench.video.gpu import note_cpu_fallback, nvdec_refusal, pyav_hwaccel

        refusal = nvdec_refusal(src)
        if refusal is None:
            kw["hwaccel"] = pyav_hwaccel(hwaccel)
        else:  # a stream NVDEC cannot decode (H.264 4:4:4, tiny frames): the CPU decodes it
            note_cpu_fallback(refusal, vid)
            hwaccel = None
    try:
        container = av.open(io.BytesIO(src) if isinstance(src, bytes) else src, mode="r", **kw)
    except Exception as e:
        raise VideoDecodeError(
            f"cannot open video with PyAV: {_first_line(e)}", vid=vid, source=_label(src)
        ) from None
    try:
        if not container.streams.video:
            raise VideoDecodeError("no video stream", vid=vid, source=_label(src))
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = int(num_threads)
        try:
            # A demux pass (no decoding) numbers the frames by presentation timestamp, as decord does.
            pts, keys = _pyav_index(container, stream)
            if not pts or uniq[-1] >= len(pts):
                raise VideoDecodeError(
                    f"frame index {uniq[-1]} out of range: the video has {len(pts)} frames",
                    vid=vid,
                    source=_label(src),
                )
            strategy, runs = resolve_strategy(strategy, uniq, keys, num_threads, on_cpu=hwaccel is None)
            if strategy == "sequential":
                keys = [0]  # one seek to the start, then decode straight through
            if strategy == "parallel":
                assert runs is not None
                frames = _pyav_parallel(container, stream, src, runs, hw, pts, keys)
            else:
                frames = _pyav_decode_targets(container, stream, uniq, hw, pts, keys)
        except VideoDecodeError:
            raise
        except Exception as e:
            raise VideoDecodeError(
                f"PyAV failed to decode: {_first_line(e)}", vid=vid, source=_label(src)
            ) from None
        if len(frames) < len(uniq):
            raise VideoDecodeError(
                f"frame {uniq[len(frames)]} does not decode (the stream ends or breaks before it)",
                vid=vid,
                source=_label(src),
            )
        return np.stack(frames)
    finally:
        container.close()


def frame_rotation(frame: Any) -> int:
    """The display rotation of a PyAV frame, normalised to 0/90/180/270 (counter-clockwise)."""
    rot = int(round(float(getattr(frame, "rotation", 0) or 0))) % 360
    return rot if rot in (0, 90, 180, 270) else 0


#: Semi-planar layouts (what NVDEC frames are downloaded as) -> the planar layout a software
#: decoder returns for the same stream.
_PLANAR_OF = {"nv12": "yuv420p", "p010le": "yuv420p10le", "p016le": "yuv420p16le"}


class _Converter:
    """RGB conversion with decord's filter chain: rotate by the display matrix (transpose), then
    ``scale=W:H:flags=bilinear`` -> rgb24. Without rotation or resize, a plain ``to_ndarray``
    (the same libswscale conversion) is used."""

    def __init__(self, stream: Any, hw: tuple[int, int] | None):
        self.stream, self.hw, self.graph = stream, hw, None
        self.plain: bool | None = None

    def __call__(self, frame: Any) -> np.ndarray:
        rot = frame_rotation(frame) if self.plain is None else 0
        planar = _PLANAR_OF.get(frame.format.name)
        if planar is not None:
            # NVDEC frames come down as NV12/P010. Their planes are the software decoder's (H.264
            # decoding is bit-exact), but libswscale converts semi-planar input to RGB differently
            # (up to ~50 levels): deinterleaving the chroma first (lossless) gives the CPU's frames.
            frame = frame.reformat(format=planar)
        if self.plain is None:
            self.plain = self.hw is None and rot == 0
            if not self.plain:
                self.graph = self._build(frame, rot)
        if self.plain:
            return frame.to_ndarray(format="rgb24")
        assert self.graph is not None
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()

    def _build(self, frame: Any, rot: int) -> Any:
        import av.filter

        g = av.filter.Graph()
        nodes = [
            g.add_buffer(
                width=frame.width,
                height=frame.height,
                format=frame.format.name,
                time_base=self.stream.time_base,
            )
        ]
        if rot == 180:
            nodes += [g.add("hflip"), g.add("vflip")]
        elif rot:
            nodes.append(g.add("transpose", "cclock" if rot == 90 else "clock"))
        if self.hw is not None:
            nodes.append(g.add("scale", f"{self.hw[1]}:{self.hw[0]}:flags=bilinear"))
        nodes += [g.add("format", "rgb24"), g.add("buffersink")]
        g.link_nodes(*nodes).configure()
        return g


def _pyav_parallel(
    container: Any,
    stream: Any,
    src: bytes | str,
    runs: list[list[int]],
    hw: tuple[int, int] | None,
    pts: list[int],
    keys: list[int],
) -> list[np.ndarray]:
    """Each run of targets with its own container and single-threaded decoder (``container``
    takes the first), in threads: PyAV releases the GIL while FFmpeg decodes."""
    import av

    if len(runs) < 2:
        return _pyav_decode_targets(container, stream, [t for run in runs for t in run], hw, pts, keys)

    def job(i: int) -> list[np.ndarray]:
        if i == 0:
            return _pyav_decode_targets(container, stream, runs[0], hw, pts, keys)
        with av.open(io.BytesIO(src) if isinstance(src, bytes) else src, mode="r") as c:
            s = c.streams.video[0]
            s.thread_count = 1
            return _pyav_decode_targets(c, s, runs[i], hw, pts, keys)

    stream.thread_count = 1
    parts = _in_threads([partial(job, i) for i in range(len(runs))])
    frames: list[np.ndarray] = []
    for run, part in zip(runs, parts):
        frames.extend(part)
        if len(part) < len(run):
            break  # the caller reports the first target that did not decode
    return frames


def _pyav_index(container: Any, stream: Any) -> tuple[list[int], list[int]]:
    """Presentation timestamps of all packets (sorted: frame index -> pts) and keyframe indices."""
    pts_list, key_pts = [], []
    for packet in container.demux(stream):
        if packet.pts is None:
            continue  # the flush packet at the end
        pts_list.append(packet.pts)
        if packet.is_keyframe:
            key_pts.append(packet.pts)
    pts_list.sort()
    where = {p: i for i, p in enumerate(pts_list)}
    return pts_list, sorted(where[p] for p in key_pts)


def _pyav_decode_targets(
    container: Any, stream: Any, uniq: list[int], hw: tuple[int, int] | None, pts: list[int], keys: list[int]
) -> list[np.ndarray]:
    """Decode ``uniq`` (sorted), seeking to a target's keyframe only when it lies past the decoder."""
    convert = _Converter(stream, hw)
    index_of = {p: i for i, p in enumerate(pts)}
    keys = keys if keys and keys[0] == 0 else [0, *keys]
    out: list[np.ndarray] = []
    pos = -1  # index of the last frame the running decoder produced
    frames_iter = None
    for n_done, t in enumerate(uniq):
        key = keys[bisect.bisect_right(keys, t) - 1]
        if frames_iter is None or key > pos + 1:
            container.seek(pts[key], stream=stream, backward=True, any_frame=False)
            frames_iter = iter(container.decode(stream))
            pos = -1
        for frame in frames_iter:
            pos = index_of.get(frame.pts, pos + 1) if frame.pts is not None else pos + 1
            if pos == t:
                out.append(convert(frame))
                break
            if pos > t:
                # The demuxer landed past the keyframe we asked for: start again from the top.
                container.seek(pts[0], stream=stream, backward=True, any_frame=False)
                frames_iter = iter(container.decode(stream))
                pos = -1
                for frame2 in frames_iter:
                    pos = index_of.get(frame2.pts, pos + 1) if frame2.pts is not None else pos + 1
                    if pos == t:
                        out.append(convert(frame2))
                        break
                break
        if len(out) < n_done + 1:
            break  # the stream ended (or broke) before t
    return out


# --------------------------------------------------------------------------- helpers


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # decord prefixes messages with "[hh:mm:ss] /path/file.cc:NN: "; keep the message.
    msg = lines[-1] if lines else type(e).__name__
    return msg[:300]


def _label(src: bytes | str) -> str | None:
    return None if isinstance(src, bytes) else src


def _bare_message(e: VideoDecodeError) -> str:
    """The message of a VideoDecodeError without its "(vid ..., source ...)" suffix."""
    text = str(e)
    if e.vid or e.source:
        suffix = str(VideoDecodeError("", vid=e.vid, source=e.source))
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


# --------------------------------------------------------------------------- killable worker


def decode_with_timeout(
    source: Source, indices: Sequence[int], *, timeout: float = 60.0, **kwargs: Any
) -> np.ndarray:
    """``decode`` in a separate worker process, killed after ``timeout`` seconds.

    The worker is forked from this process (``os.fork``, not ``multiprocessing``, so it also works
    inside daemonic DataLoader workers; a fresh interpreter where fork is unavailable). It is
    long-lived (one per calling thread), so its start-up cost is paid once; a timeout or a crash
    kills it and the next call starts a new one.

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
    if kw.get("backend", "decord") not in BACKENDS:
        raise ConfigError(f"unknown decode backend {kw.get('backend')!r} (known: {', '.join(BACKENDS)})")
    if kw.get("strategy", "auto") not in STRATEGIES:
        raise ConfigError(f"unknown decode strategy {kw.get('strategy')!r} (known: {', '.join(STRATEGIES)})")
    normalize_size(kw.get("size"))
    _parse_ctx(kw.get("ctx", "cpu"))
    try:
        vid = kw.get("vid")
        return _normalize_source(source, vid), _check_indices(indices, vid), kw
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
    yield from _worker().map((_prepare(r) for r in requests), float(timeout), int(window))


#: Size of the shared ring that carries decoded frames from a forked worker (see _DecodeWorker).
_ARENA_BYTES = 64 << 20


class _DecodeWorker:
    """Parent side of the decode subprocess: length-framed pickles over two pipes.

    Frames come back through a shared-memory ring (``arena``, mapped before the fork, so both
    processes see it): the worker decodes straight into a free region of it and sends only a
    small header; this process copies the frames into their destination (a batch slot) and acks
    the region, which the worker may then reuse. That is one copy on each side, where a pipe
    costs two kernel copies plus the reader's. Frames that find no free region (larger than the
    ring, or the caller is slow to take results) and workers started without fork go through
    the result pipe instead.
    """

    def __init__(self) -> None:
        self.proc: Any = None
        self.tx: Any = None
        self.rx: Any = None
        self.arena: Any = None
        self.poller: Any = None  # select.poll on the result pipe (Connection.poll builds one per call)
        self.owner = -1
        self.next_id = 0

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        for fd in (req_w, res_w):
            _grow_pipe(fd)
        try:
            if (
                hasattr(os, "fork")
                and os.environ.get("CREATE_BENCH_DECODE_WORKER", "fork") == "fork"
                and not _cuda_in_this_process()
            ):
                # Fork: instant start with decord/PyAV already imported. os.fork (not
                # multiprocessing) also works inside daemonic DataLoader workers.
                import mmap

                import av  # noqa: F401  (imported once here, inherited by every forked worker)
                import decord  # noqa: F401

                self.arena = mmap.mmap(-1, _ARENA_BYTES)  # anonymous and MAP_SHARED: the child sees it
                self.proc = _ForkedWorker(req_r, res_w, close_in_child=(req_w, res_r), arena=self.arena)
            else:
                import subprocess
                import sys

                code = (
                    "import sys; from create_bench.video.decode import _worker_main; "
                    "_worker_main(int(sys.argv[1]), int(sys.argv[2]))"
                )
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", code, str(req_r), str(res_w)],
                    pass_fds=(req_r, res_w),
                    close_fds=True,
                )
        finally:
            os.close(req_r)
            os.close(res_w)
        self.tx = Connection(req_w, readable=False)
        self.rx = Connection(res_r, writable=False)
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(res_r, select.POLLIN)
        self.owner = os.getpid()
        # Wait for the worker's imports, so a per-video timeout never counts the start-up.
        try:
            ready = self.rx.poll(_WORKER_START_TIMEOUT) and self.rx.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop()
            raise VideoDecodeError(
                f"the decode worker process did not start within {_WORKER_START_TIMEOUT:g} s"
            )

    def _stop(self) -> None:
        if self.proc is not None and self.owner == os.getpid():
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for conn in (self.tx, self.rx):
                try:
                    conn.close()
                except OSError:
                    pass
        # In a forked child the pipes belong to the parent's worker: just forget them.
        self.proc = self.tx = self.rx = self.arena = self.poller = (
            None  # (no view of the arena outlives a copy)
        )
        self.owner = -1

    def _ensure(self) -> None:
        if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
            self._stop()
            self._start()

    def _submit(self, req: tuple[bytes | str, list[int], dict[str, Any]]) -> int:
        self.next_id += 1
        src, indices, kw = req
        kw = {k: v for k, v in kw.items() if k != "out"}  # the destination stays in this process
        try:
            if isinstance(src, bytes):
                # Encoded bytes follow the request raw (no pickle copies of a large video).
                self.tx.send((self.next_id, len(src), indices, kw))
                _write_all(self.tx.fileno(), src)
            else:
                self.tx.send((self.next_id, src, indices, kw))
        except (BrokenPipeError, OSError):
            pass  # the worker died; receiving this request's result reports it
        return self.next_id

    def map(
        self,
        requests: Iterator[tuple[bytes | str, list[int], dict[str, Any]] | VideoDecodeError],
        timeout: float,
        window: int,
    ) -> Iterator[np.ndarray | CreateBenchError]:
        """Results in request order; at most ``window`` requests in the worker at a time.

        The worker's reader thread queues what it is sent, so submitting never waits for
        decoding. Ids tell this call's results from those of an abandoned earlier call.
        """
        import collections
        import time

        pending: collections.deque[list[Any]] = collections.deque()  # [request, id or None]
        in_flight = 0
        exhausted = False
        last = time.monotonic()  # when the worker could start the oldest request in flight
        while True:
            while not exhausted and in_flight < window:
                try:
                    req = next(requests)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(req, VideoDecodeError):
                    pending.append([req, None])
                    continue
                if in_flight == 0:
                    self._ensure()
                    last = time.monotonic()
                pending.append([req, self._submit(req)])
                in_flight += 1
            if not pending:
                return
            req, rid = pending.popleft()
            if rid is None:
                yield req
                continue
            in_flight -= 1
            src, _, kw = req
            vid = kw.get("vid")
            msg = self._receive(rid, last + timeout, kw.get("out"))
            last = time.monotonic()
            if msg is None or msg == "died":
                code = self.proc.wait() if msg == "died" and self.proc is not None else None
                self._stop()
                if msg is None:
                    yield DecodeTimeout(
                        f"decoding took longer than {timeout:g} s; the decoder was killed",
                        vid=vid,
                        source=_label(src),
                    )
                else:
                    yield VideoDecodeError(
                        f"the decoder process died (exit code {code})", vid=vid, source=_label(src)
                    )
                # Hand what the dead worker held to a fresh one, in order.
                if in_flight:
                    self._ensure()
                    last = time.monotonic()
                    for entry in pending:
                        if entry[1] is not None:
                            entry[1] = self._submit(entry[0])
                continue
            status, payload = msg
            if status == "ok":
                yield payload
                continue
            kind, message = payload
            if kind == "BackendUnavailable":
                raise BackendUnavailable(message)
            if kind == "ConfigError":
                raise ConfigError(message)
            yield VideoDecodeError(message, vid=vid, source=_label(src))

    def _readable(self, timeout: float) -> bool:
        """A result (or EOF: the worker died) can be read within ``timeout`` seconds."""
        if self.poller is None:
            return bool(self.rx.poll(timeout))
        # Milliseconds, rounded up (a 0.4 ms wait must not become a non-blocking check).
        return bool(self.poller.poll(math.ceil(timeout * 1000)))

    def _take_frames(
        self, shape: tuple[int, ...], dtype: str, at: int | None, out: FrameSink | None
    ) -> np.ndarray:
        """The frames of a result whose header arrived: from the ring at offset ``at`` (then acked),
        or read raw from the pipe (``at`` None); into ``out`` when it fits (see ``decode``)."""
        dest = _sink_array(out, shape) if out is not None and np.dtype(dtype) == np.uint8 else None
        if dest is None:
            dest = np.empty(shape, dtype=np.dtype(dtype))
        if at is None:
            _read_into(self.rx.fileno(), memoryview(dest).cast("B"))  # type: ignore[arg-type]
            return dest
        n = dest.nbytes
        src = np.frombuffer(self.arena, dtype=np.uint8, count=n, offset=at % len(self.arena))
        dest.reshape(-1).view(np.uint8)[:] = src
        del src  # no view of the ring outlives the copy
        try:
            self.tx.send(("ack", at + n))  # the worker may reuse the region now
        except (BrokenPipeError, OSError):
            pass
        return dest

    def _receive(self, rid: int, deadline: float, out: FrameSink | None = None) -> Any:
        """The result with id ``rid``; None on timeout; "died" if the worker went away. Frames are
        read into ``out`` when it gives an array of their shape (see ``decode``)."""
        import time

        while True:
            try:
                if not self._readable(max(0.0, deadline - time.monotonic())):
                    return None
                got_id, status, payload = self.rx.recv()
                if status == "ok":
                    shape, dtype, at = payload
                    if got_id != rid:  # a result of an abandoned earlier call: drain it, drop it
                        self._take_frames(shape, dtype, at, None)
                        continue
                    return status, self._take_frames(shape, dtype, at, out)
            except (EOFError, OSError):
                return "died"
            if got_id == rid:
                return status, payload
            # An error result of an abandoned earlier call: drop it.


class _ForkedWorker:
    """A forked decode worker with the small part of ``subprocess.Popen``'s API we use."""

    def __init__(self, req_fd: int, res_fd: int, close_in_child: tuple[int, ...], arena: Any = None):
        pid = os.fork()
        if pid == 0:  # child: serve requests, never return into the parent's code
            code = 0
            try:
                for fd in close_in_child:
                    os.close(fd)
                _worker_main(req_fd, res_fd, arena)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        import signal

        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = -1
        return self.returncode


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write raw bytes to a pipe (the reader knows their length from the pickled header before)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _read_into(fd: int, view: memoryview) -> None:
    """Fill ``view`` from a pipe, reading straight into it (``Connection.recv_bytes_into`` would go
    through two intermediate copies)."""
    f = io.FileIO(fd, "rb", closefd=False)
    got, n = 0, len(view)
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise EOFError("the decode worker closed the pipe mid-message")
        got += k


def _grow_pipe(fd: int, size: int = 1 << 20) -> None:
    """Linux: a 1 MiB pipe buffer, so a batch of frames crosses in a few writes, not dozens of
    64 KiB ping-pongs between the two processes (costly when the CPUs are busy)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ImportError):
        pass


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (even mid-hang in native code)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


#: Set once this process decoded on NVDEC itself (``ctx="gpu"`` without a timeout).
_CUDA_USED = False


def _cuda_in_this_process() -> bool:
    """True when this process may hold a CUDA context (its own NVDEC decodes, or torch's): a
    forked child could not use CUDA then, so the decode worker starts as a fresh interpreter."""
    if _CUDA_USED:
        return True
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # a stub or partly imported torch
        return False


# One worker per thread: calls from different threads never share a pipe, and the kernel's
# parent-death signal (sent when the *thread* that forked a worker exits) matches that lifetime.
_WORKERS = threading.local()
_ALL_WORKERS: list[_DecodeWorker] = []


def _worker() -> _DecodeWorker:
    w = getattr(_WORKERS, "worker", None)
    if w is None:
        w = _WORKERS.worker = _DecodeWorker()
        _ALL_WORKERS.append(w)
    return w


@atexit.register
def _stop_all_workers() -> None:
    for w in _ALL_WORKERS:
        w._stop()


#: Seconds the decode worker may take to start (import numpy, decord, PyAV).
_WORKER_START_TIMEOUT = 120.0


def worker_pid() -> int | None:
    """The pid of this thread's decode worker, or None when none is running (for tests/diagnostics)."""
    w = _worker()
    proc = w.proc
    if proc is None or w.owner != os.getpid() or proc.poll() is not None:
        return None
    return int(proc.pid)


class _Ring:
    """The worker's side of the shared frame ring (see :class:`_DecodeWorker`).

    Regions are handed out in order at increasing positions (``start % size`` in the ring; a
    region never wraps). The parent takes results in the same order and acks the end of each
    region it copied, so everything before ``acked`` is free again.
    """

    def __init__(self, arena: Any):
        self.buf = np.frombuffer(arena, dtype=np.uint8)
        self.size = len(self.buf)
        self.end = 0  # end of the last region used (monotonic)
        self.acked = 0  # the parent copied everything before this (set by the reader thread)
        self.offered: tuple[int, np.ndarray] | None = None

    def sink(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """A free region for frames of ``shape``, or None (they go through the pipe)."""
        n = int(np.prod(shape))
        off = self.end % self.size
        start = self.end if off + n <= self.size else self.end + self.size - off
        if not 0 < n <= self.size or start + n - self.acked > self.size:
            return None
        view = self.buf[start % self.size : start % self.size + n].reshape(shape)
        self.offered = (start, view)
        return view

    def commit(self, frames: np.ndarray) -> int | None:
        """The ring position of ``frames`` when they were decoded into the region offered last."""
        if self.offered is None or frames is not self.offered[1]:
            return None
        start = self.offered[0]
        self.end, self.offered = start + frames.nbytes, None
        return start


def _worker_main(req_fd: int, res_fd: int, arena: Any = None) -> None:
    """The decode subprocess: serve ``decode`` calls until the parent closes the pipe. With an
    ``arena`` (a shared mapping inherited through fork), frames go back through it."""
    from multiprocessing.connection import Connection

    _die_with_parent()
    rx, tx = Connection(req_fd, writable=False), Connection(res_fd, readable=False)
    import av  # noqa: F401  (import the decoders now: start-up is not part of any timeout)
    import decord  # noqa: F401

    tx.send("ready")
    import queue
    import threading

    # A reader thread drains requests as they come, so the parent can submit a batch at once
    # without either side blocking on a full pipe.
    inbox: queue.Queue[Any] = queue.Queue()
    ring = _Ring(arena) if arena is not None else None

    def read() -> None:
        while True:
            try:
                msg = rx.recv()
                if msg[0] == "ack":  # the parent copied a ring region: it is free again
                    if ring is not None:
                        ring.acked = max(ring.acked, msg[1])
                    continue
                rid, src, indices, kwargs = msg
                if isinstance(src, int):  # the encoded bytes follow raw (see _DecodeWorker._submit)
                    buf = bytearray(src)
                    _read_into(req_fd, memoryview(buf))
                    src = bytes(buf)
                inbox.put((rid, src, indices, kwargs))
            except (EOFError, OSError):
                inbox.put(None)
                return

    # A sender thread writes results, so decoding the next video never waits for the parent to
    # drain the pipe (it may not be scheduled for a while on a busy machine).
    outbox: queue.Queue[Any] = queue.Queue()

    def write() -> None:
        while True:
            item = outbox.get()
            if item is None:
                return
            result, frames = item
            try:
                tx.send(result)
                if frames is not None:  # raw bytes; the header gave their shape
                    _write_all(res_fd, memoryview(frames).cast("B"))  # type: ignore[arg-type]
            except (BrokenPipeError, OSError):
                os._exit(0)  # the parent is gone

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()
    while True:
        req = inbox.get()
        if req is None:
            outbox.put(None)
            return
        rid, src, indices, kwargs = req
        frames = None
        try:
            frames = decode(src, indices, out=ring.sink if ring is not None else None, **kwargs)
            at = ring.commit(frames) if ring is not None else None
            if at is None:
                frames = np.ascontiguousarray(frames)
            result: tuple[int, str, Any] = (rid, "ok", (frames.shape, frames.dtype.str, at))
            if at is not None:
                frames = None  # already in the ring: only the header goes through the pipe
        except VideoDecodeError as e:
            # The parent re-raises with vid/source, so send the bare message.
            result = (rid, "err", ("VideoDecodeError", _bare_message(e)))
        except (BackendUnavailable, ConfigError) as e:
            result = (rid, "err", (type(e).__name__, str(e)))
        except Exception as e:  # anything else is still a failure to decode this video
            result = (rid, "err", ("VideoDecodeError", f"{type(e).__name__}: {_first_line(e)}"))
        outbox.put((result, frames))


__all__ = [
    "BACKENDS",
    "DecodePlan",
    "DecodeTimeout",
    "PYAV_TOLERANCE",
    "backend_version",
    "decode",
    "decode_many",
    "decode_with_timeout",
    "gpu_available",
    "normalize_size",
    "choose_strategy",
    "parallel_budget",
    "plan_parallel",
    "plan_strategy",
    "resolve_strategy",
]


class _CallableModule(types.ModuleType):
    """Importing this submodule makes ``create_bench.video.decode`` name the module (the import
    system sets the package attribute), which would shadow the public function of the same name.
    Calling the module calls the function, so ``create_bench.video.decode(...)`` always works."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return decode(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

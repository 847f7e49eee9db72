"""The PyAV backend (layer 2): the same frames as decord (see the module doc of
:mod:`create_bench.video.decoding`) from PyAV's FFmpeg, for cross-checks and for NVDEC through
FFmpeg's ``cuda`` hwaccel (:mod:`create_bench.video.backends.nvdec` passes the hwaccel in).

Frames are numbered by a demux pass (presentation timestamps, as decord numbers them), rotated by
the display matrix and resized with decord's filter chain (:class:`_Converter`).
"""

from __future__ import annotations

import bisect
import io
from functools import partial
from typing import Any

import numpy as np

from create_bench.errors import VideoDecodeError
from create_bench.video.checks import first_line, source_label
from create_bench.video.frames import in_threads
from create_bench.video.plan import resolve_strategy


def decode_pyav(
    src: bytes | str,
    uniq: list[int],
    hw: tuple[int, int] | None,
    num_threads: int,
    vid: str | None,
    strategy: str,
    hwaccel: Any = None,
) -> np.ndarray:
    """PyAV on the CPU, or with ``hwaccel`` (PyAV's ``HWAccel`` settings, made by
    :func:`create_bench.video.backends.nvdec.pyav_hwaccel`) on NVDEC (one reader, no parallel
    strategy; frames are downloaded to the host and converted as on the CPU)."""
    import av

    kw: dict[str, Any] = {} if hwaccel is None else {"hwaccel": hwaccel}
    try:
        container = av.open(io.BytesIO(src) if isinstance(src, bytes) else src, mode="r", **kw)
    except Exception as e:
        raise VideoDecodeError(
            f"cannot open video with PyAV: {first_line(e)}", vid=vid, source=source_label(src)
        ) from None
    try:
        if not container.streams.video:
            raise VideoDecodeError("no video stream", vid=vid, source=source_label(src))
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
                    source=source_label(src),
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
                f"PyAV failed to decode: {first_line(e)}", vid=vid, source=source_label(src)
            ) from None
        if len(frames) < len(uniq):
            raise VideoDecodeError(
                f"frame {uniq[len(frames)]} does not decode (the stream ends or breaks before it)",
                vid=vid,
                source=source_label(src),
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
    parts = in_threads([partial(job, i) for i in range(len(runs))])
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

"""Probe a video once at build time (layer 2): the number of frames that really decode, fps,
duration, size and rotation. The stored ``num_frames`` is what frame sampling trusts later, so it
is counted by decoding, never taken from the container header (which can lie)."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from pathlib import Path

from create_bench.errors import VideoDecodeError


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    rotation: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _open(source: bytes | str | Path):  # noqa: ANN202 - av container
    import av

    return av.open(io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source), mode="r")


def probe_video(
    source: bytes | str | Path, *, vid: str | None = None, check_decord: bool = True
) -> VideoInfo:
    """Decode the first video stream end to end with PyAV and count the frames.

    With ``check_decord`` the count is cross-checked against decord (the evaluation decoder): the
    stored count is the number of frames both decoders can produce, so any index below it decodes.

    Raises:
        VideoDecodeError: the source is missing, not a video, or yields no decodable frame.
    """
    label = None if isinstance(source, (bytes, bytearray)) else str(source)
    if label is not None and not Path(label).is_file():
        raise VideoDecodeError("video file not found", vid=vid, source=label)
    try:
        with _open(source) as container:
            if not container.streams.video:
                raise VideoDecodeError("no video stream", vid=vid, source=label)
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            n = 0
            rotation = 0
            width = height = 0
            last_pts = None
            first_pts = None
            for frame in container.decode(stream):
                if n == 0:
                    width, height = frame.width, frame.height
                    rotation = int(round(getattr(frame, "rotation", 0) or 0)) % 360
                    first_pts = frame.pts
                last_pts = frame.pts
                n += 1
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            fps = float(rate) if rate else 0.0
            tb = float(stream.time_base) if stream.time_base else 0.0
    except VideoDecodeError:
        raise
    except Exception as exc:  # PyAV raises many types (InvalidDataError, EOFError, ...)
        raise VideoDecodeError(
            f"cannot decode video: {type(exc).__name__}: {exc}", vid=vid, source=label
        ) from exc
    if n == 0:
        raise VideoDecodeError("no decodable frame", vid=vid, source=label)
    if fps <= 0 and last_pts is not None and first_pts is not None and tb > 0 and n > 1:
        fps = (n - 1) / ((last_pts - first_pts) * tb)
    duration = n / fps if fps > 0 else 0.0
    if check_decord:
        n = _decord_decodable(source, n, vid=vid, label=label)
    return VideoInfo(
        num_frames=n,
        fps=round(fps, 6),
        duration=round(duration, 6),
        width=width,
        height=height,
        rotation=rotation,
    )


def _decord_decodable(source: bytes | str | Path, n: int, *, vid: str | None, label: str | None) -> int:
    """The number of leading frames decord can decode, at most ``n``.

    Decoding goes through :func:`create_bench.video.decoding.decode`, which works around decord's
    misread of narrow frames (widths such as 16/32/48 come back with 4 "channels" from
    ``get_batch``), so such videos are not wrongly reported as undecodable. When the last frame
    fails (a broken tail), a binary search finds the last frame that decodes.
    """
    import decord

    from create_bench.video.decoding import decode

    try:
        vr = decord.VideoReader(
            io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source), num_threads=1
        )
        n = min(n, len(vr))
        del vr
    except Exception as exc:
        raise VideoDecodeError(f"decord cannot open video: {exc}", vid=vid, source=label) from exc

    def ok(k: int) -> bool:  # frame k decodes
        try:
            decode(source, [k], num_threads=1, strategy="seek", vid=vid)
            return True
        except VideoDecodeError:
            return False

    if n > 0 and not ok(n - 1):
        lo, hi = 0, n - 1  # invariant: frames < lo decode (or lo == 0); frame hi does not
        if not ok(0):
            n = 0
        else:
            lo = 1
            while lo < hi:
                mid = (lo + hi) // 2
                if ok(mid):
                    lo = mid + 1
                else:
                    hi = mid
            n = lo
    if n == 0:
        raise VideoDecodeError("decord decodes no frame", vid=vid, source=label)
    return n

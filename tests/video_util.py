"""Tiny edge-case videos made with PyAV for the decode and loader tests (milliseconds each)."""

from __future__ import annotations

import fractions
import io
import os
import tempfile
from collections.abc import Sequence

import numpy as np


def pattern_frames(n: int, width: int, height: int, seed: int = 0) -> list[np.ndarray]:
    """Noise that scrolls sideways plus a band whose colour changes per frame: every frame differs."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        a = np.roll(base, i * 2, axis=1).copy()
        a[: max(1, height // 4), :, 0] = (i * 37) % 256
        out.append(a)
    return out


def encode_video(
    frames: Sequence[np.ndarray],
    *,
    fps: int = 25,
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    bframes: int | None = None,
    rotation: int | None = None,
    audio: bool = False,
    pts_ms: Sequence[int] | None = None,
    faststart: bool = False,
) -> bytes:
    """Encode RGB frames as an H.264 MP4 and return its bytes.

    ``rotation`` writes a display matrix; ``pts_ms`` gives each frame its own timestamp in
    milliseconds (variable frame rate); ``audio`` adds an AAC track; ``faststart`` puts the
    ``moov`` box first (so a truncated file still opens).
    """
    import av

    tmpd = tempfile.mkdtemp()
    path = os.path.join(tmpd, "v.mp4")
    try:
        with av.open(path, "w", format="mp4", options={"movflags": "+faststart"} if faststart else {}) as c:
            s = c.add_stream("libx264", rate=fps)
            h, w = frames[0].shape[:2]
            s.width, s.height, s.pix_fmt = w, h, pix_fmt
            opts = {"threads": "1"}
            if gop:
                opts.update(g=str(gop), keyint_min=str(gop), sc_threshold="0")
            if bframes is not None:
                opts["bf"] = str(bframes)
            s.options = opts
            ms = fractions.Fraction(1, 1000)
            if pts_ms is not None:
                s.time_base = ms
                s.codec_context.time_base = ms
            if rotation:
                s.set_display_rotation(rotation)
            a = c.add_stream("aac", rate=8000) if audio else None
            for i, img in enumerate(frames):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                if pts_ms is not None:
                    f.pts, f.time_base = int(pts_ms[i]), ms
                for p in s.encode(f):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
            if a is not None:
                n = int(8000 * len(frames) / fps)
                samples = (np.sin(np.arange(n) / 10) * 0.3).astype(np.float32)[None, :]
                af = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                af.sample_rate = 8000
                for p in a.encode(af):
                    c.mux(p)
                for p in a.encode():
                    c.mux(p)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(tmpd)


def reference_frames(data: bytes) -> tuple[np.ndarray, list[int]]:
    """Every frame decoded in order with plain PyAV ``to_ndarray`` (no rotation, no resize), and
    each frame's display rotation: an independent reference for both backends."""
    import av

    with av.open(io.BytesIO(data)) as c:
        out, rots = [], []
        for f in c.decode(video=0):
            out.append(f.to_ndarray(format="rgb24"))
            rots.append(int(round(float(getattr(f, "rotation", 0) or 0))) % 360)
    return np.stack(out), rots


def display(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Coded frames [T, H, W, 3] turned counter-clockwise by ``rotation`` degrees (as players show them)."""
    return np.stack([np.rot90(f, (rotation // 90) % 4) for f in frames])

"""Helpers shared by the benchmarks: argument parsing, timing, and a ratio line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="data/create-sample", help="dataset directory (default: CREATE-sample)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    return p


def ensure_data(path: str) -> Path:
    p = Path(path)
    if not (p / "manifest.json").is_file():
        raise SystemExit(f"{p} is not a dataset; make it with `create-bench sample --out {p}`")
    return p


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time over ``repeat`` runs (after one warm-up run) and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def ratio_line(name: str, ours: float, base: float, unit: str) -> str:
    """``name: ours X unit vs baseline Y unit -> ratio R`` (higher throughput = better)."""
    return f"{name:<40s} ours {ours:12.1f} {unit}  baseline {base:12.1f} {unit}  ratio {ours / base:6.2f}x"


def make_clip(
    path: Path,
    seconds: int,
    gop_seconds: int,
    *,
    fps: int = 30,
    width: int = 1280,
    height: int = 720,
    preset: str = "superfast",
    bframes: int | None = 2,
    seed: int | None = None,
) -> None:
    """A 720p H.264 clip: textured background moving, a block, a colour change per frame; a
    keyframe every ``gop_seconds`` (``bframes=None``: libx264's default B-frames)."""
    import av
    import numpy as np

    rng = np.random.default_rng(gop_seconds if seed is None else seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255 // width), (yy * 255 // height), ((xx + yy) * 255 // (width + height))], -1)
    base = (base + rng.integers(0, 24, (height, width, 3))).clip(0, 255).astype(np.uint8)
    gop = fps * gop_seconds
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        options = {"preset": preset, "crf": "26", "g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        if bframes is not None:
            options["bf"] = str(bframes)
        s.options = options
        for i in range(seconds * fps):
            img = np.roll(base, 4 * i, axis=1)
            x, y = (i * 13) % (width - 160), (i * 7) % (height - 160)
            img[y : y + 160, x : x + 160] = (255, (i * 5) % 256, 40)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)

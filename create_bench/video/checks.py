"""Input checks of the decoding API (layer 2): sources, indices, sizes, devices, backend names,
and the small message helpers every decoding module shares. Each check raises a typed error
naming the argument (``ConfigError``) or the video (``VideoDecodeError`` with ``vid``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import ConfigError, VideoDecodeError

BACKENDS = ("decord", "pyav")
STRATEGIES = ("auto", "seek", "sequential", "parallel")
#: What ``decode`` accepts as a video: the encoded bytes or a path.
Source = bytes | bytearray | memoryview | str | os.PathLike


def check_backend(backend: Any) -> None:
    if backend not in BACKENDS:
        raise ConfigError(f"unknown decode backend {backend!r} (known: {', '.join(BACKENDS)})")


def check_strategy(strategy: Any) -> None:
    if strategy not in STRATEGIES:
        raise ConfigError(f"unknown decode strategy {strategy!r} (known: {', '.join(STRATEGIES)})")


def normalize_source(source: Any, vid: str | None) -> bytes | str:
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


def check_indices(indices: Sequence[int], vid: str | None) -> list[int]:
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


def parse_ctx(ctx: str) -> tuple[str, int]:
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


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    # decord prefixes messages with "[hh:mm:ss] /path/file.cc:NN: "; keep the message.
    msg = lines[-1] if lines else type(e).__name__
    return msg[:300]


def source_label(src: bytes | str) -> str | None:
    return None if isinstance(src, bytes) else src

"""Procedural videos for CREATE-sample (layer 2): latent attributes -> real H.264 MP4 bytes.

What is drawn is what the text says (see ``synthetic.text``): the category's scene is a background
pattern in a two-colour palette, the object is a shape in its colour (with a thin outline so it
stands out from any background, and a darker spot so rotation is visible even on a circle),
``count`` copies move by ``motion`` at ``speed``.

Encoding is deterministic: the RGB -> Y'CbCr conversion is our own integer BT.601 arithmetic
(independent of the swscale build), every byte of each frame buffer is written (row padding zeroed),
and libx264 runs with one thread, fixed options and macroblock-tree rate control off: with mbtree on,
this libx264 build gave different bytes for the same input in about one encode in twenty (seen with
the same frames in one process; mbtree off or no B-frames gave identical bytes in 450 of 450). So the
same spec gives the same bytes on the same libx264 build (the ``av`` wheel, pinned in pyproject). Sizes with an odd width or height cannot be coded as
yuv420p (4:2:0 chroma needs even luma dimensions, and H.264 cropping works in 2-pixel units for
4:2:0), so those videos are coded as yuv444p (H.264 High 4:4:4 Predictive), which allows any size;
decord and PyAV decode them at their true odd size. Rotated videos store the frame turned against
the display rotation plus a display matrix, so a decoder that honours the matrix (decord, PyAV's
``frame.rotation``) shows the scene upright and the motion in its stated direction.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from create_bench.errors import ConfigError

RGB = tuple[int, int, int]

#: Fixed libx264 options; changing them changes the sample's bytes (bump SAMPLE_VERSION).
#: ``mbtree=0``: macroblock-tree rate control made this libx264 build nondeterministic (see above).
X264_OPTIONS = {"preset": "veryfast", "crf": "26", "threads": "1", "x264-params": "mbtree=0"}

#: Translation speed in frame extents per second, rotation in radians per second, bounce period
#: in seconds, zoom growth rate per second.
_SPEED = {
    "slow": {"move": 0.15, "spin": 1.2, "period": 1.4, "grow": 0.22},
    "fast": {"move": 0.45, "spin": 4.2, "period": 0.5, "grow": 0.65},
}
MOTIONS = ("left", "right", "up", "down", "rotate", "bounce", "zoom")


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video. ``width``/``height`` are the display size;
    ``rotation`` (0/90/180/270, counter-clockwise) is the display rotation written to the file."""

    width: int
    height: int
    fps: Fraction
    num_frames: int
    rotation: int
    pattern: str
    palette: tuple[RGB, RGB]
    shape: str
    colour: RGB
    motion: str
    count: int
    speed: str
    seed: int

    @property
    def coded_size(self) -> tuple[int, int]:
        """(width, height) of the stored frames: swapped for a quarter-turn rotation."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    @property
    def pix_fmt(self) -> str:
        w, h = self.coded_size
        return "yuv420p" if w % 2 == 0 and h % 2 == 0 else "yuv444p"


# --------------------------------------------------------------------------------------------
# Background
# --------------------------------------------------------------------------------------------


def render_background(pattern: str, palette: tuple[RGB, RGB], width: int, height: int) -> np.ndarray:
    """The scene: ``pattern`` blending the two palette colours, float32 [H, W, 3]."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    p = max(4.0, min(width, height) / 6.0)  # pattern period scales with the frame
    if pattern == "gradient_v":
        t = yy / max(1, height - 1)
    elif pattern == "gradient_h":
        t = xx / max(1, width - 1)
    elif pattern == "stripes_h":
        t = (yy // p) % 2
    elif pattern == "stripes_v":
        t = (xx // p) % 2
    elif pattern == "checker":
        t = ((xx // p) + (yy // p)) % 2
    elif pattern == "dots":
        dx, dy = (xx % p) - p / 2, (yy % p) - p / 2
        t = (dx * dx + dy * dy <= (p * 0.28) ** 2).astype(np.float32)
    elif pattern == "diagonal":
        t = ((xx + yy) // p) % 2
    elif pattern == "grid":
        t = (((xx % p) < 1.5) | ((yy % p) < 1.5)).astype(np.float32)
    elif pattern == "rings":
        t = (np.hypot(xx - width / 2, yy - height / 2) // (p * 0.8)) % 2
    elif pattern == "waves":
        t = 0.5 + 0.5 * np.sin(xx / p * 2.0 + 1.5 * np.sin(yy / p * 1.3))
    else:
        raise ConfigError(f"unknown background pattern {pattern!r}")
    a = np.asarray(palette[0], np.float32)
    b = np.asarray(palette[1], np.float32)
    return a + (b - a) * t[..., None].astype(np.float32)


# --------------------------------------------------------------------------------------------
# Shapes: masks over local coordinates (u right, v down; the shape fills roughly [-1, 1]^2)
# --------------------------------------------------------------------------------------------


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean mask of ``shape`` at local coordinates ``(u, v)``."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ellipse":
        return u * u + (v / 0.62) ** 2 <= 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.82
    if shape == "bar":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 0.42)
    if shape == "triangle":
        return (v >= -0.95) & (v <= 0.75) & (np.abs(u) <= (v + 0.95) / 1.7 * 1.05)
    if shape == "diamond":
        return np.abs(u) / 0.8 + np.abs(v) <= 1.0
    if shape == "star":
        r, phi = np.hypot(u, v), np.arctan2(v, u)
        return r <= 0.45 + 0.55 * np.maximum(np.cos(5 * phi), 0.0)
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.5**2)
    if shape == "cross":
        au, av = np.abs(u), np.abs(v)
        return ((au <= 0.3) & (av <= 1.0)) | ((av <= 0.3) & (au <= 1.0))
    if shape == "heart":
        x, y = u * 1.25, -v * 1.25 + 0.25
        return (x * x + y * y - 1.0) ** 3 - x * x * y**3 <= 0.0
    if shape == "hexagon":
        au, av = np.abs(u), np.abs(v)
        return np.maximum(au * 0.866 + av * 0.5, av) <= 0.9
    raise ConfigError(f"unknown shape {shape!r}")


@dataclass(frozen=True)
class _Pose:
    x: float
    y: float
    radius: float
    angle: float


def _poses(spec: VideoSpec, rng: np.random.Generator) -> list[list[_Pose]]:
    """Per frame, the pose of each of the ``count`` objects (display coordinates)."""
    if spec.motion not in MOTIONS:
        raise ConfigError(f"unknown motion {spec.motion!r}")
    if spec.speed not in _SPEED:
        raise ConfigError(f"unknown speed {spec.speed!r}")
    w, h, n = spec.width, spec.height, spec.count
    sp = _SPEED[spec.speed]
    base_r = min(w, h) * (0.17, 0.13, 0.105)[min(n, 3) - 1]
    fps = float(spec.fps)
    lanes = [(i + 1) / (n + 1) for i in range(n)]  # objects side by side across the motion
    phase = rng.uniform(0.0, 1.0, size=n)  # stagger so copies do not move in lockstep
    tilt = rng.uniform(-0.35, 0.35, size=n)
    spin_dir = 1.0 if rng.random() < 0.5 else -1.0
    jitter = rng.uniform(-0.04, 0.04, size=n)
    duration = spec.num_frames / fps
    out = []
    for f in range(spec.num_frames):
        t = f / fps
        poses = []
        for i in range(n):
            r, ang = base_r, float(tilt[i])
            x, y = w * (lanes[i] + jitter[i]), h * (0.5 + jitter[i])
            if spec.motion in ("left", "right"):
                span = w + 2 * r  # leave the frame fully, then come back in on the other side
                start = (0.15 + 0.7 * phase[i]) * w
                d = sp["move"] * w * t * (1 if spec.motion == "right" else -1)
                x, y = (start + d + r) % span - r, h * (lanes[i] + jitter[i])
            elif spec.motion in ("up", "down"):
                span = h + 2 * r
                start = (0.15 + 0.7 * phase[i]) * h
                d = sp["move"] * h * t * (1 if spec.motion == "down" else -1)
                y = (start + d + r) % span - r
            elif spec.motion == "rotate":
                ang += spin_dir * sp["spin"] * t
            elif spec.motion == "bounce":
                floor, height = h * 0.78, h * 0.5
                y = floor - height * abs(math.sin(math.pi * (t / sp["period"] + phase[i])))
            else:  # zoom: grows exponentially to 1.5x the base radius at the last frame
                r = base_r * max(0.12, 1.5 * math.exp(-sp["grow"] * (duration - t)))
            poses.append(_Pose(float(x), float(y), float(r), float(ang)))
        out.append(poses)
    return out


@dataclass(frozen=True)
class _Sprite:
    rgb: np.ndarray  # uint8 [S, S, 3]
    alpha: np.ndarray  # bool [S, S]
    half: int  # the centre pixel is (half, half)


def _sprite(spec: VideoSpec, radius: float, angle: float) -> _Sprite:
    """One object drawn around a centre pixel: outline, body, and the darker spot."""
    border = 1.2
    half = int(math.ceil(radius * 1.45 + border)) + 1
    yy, xx = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float32)
    c, s = math.cos(angle), math.sin(angle)
    u, v = (c * xx + s * yy) / radius, (-s * xx + c * yy) / radius
    k = radius / (radius + border)
    outer = shape_mask(spec.shape, u * k, v * k)
    inner = shape_mask(spec.shape, u, v)
    colour = np.asarray(spec.colour, np.float32)
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    edge = np.full(3, 25.0 if luma > 110 else 235.0, np.float32)
    spot = colour * 0.55 if luma > 60 else colour + 90.0
    rgb = np.zeros((2 * half + 1, 2 * half + 1, 3), np.float32)
    rgb[outer] = edge
    rgb[inner] = colour
    rgb[inner & ((u - 0.7) ** 2 + v * v <= 0.2**2)] = spot
    return _Sprite(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), outer | inner, half)


def _paste(frame: np.ndarray, sprite: _Sprite, x: float, y: float) -> None:
    """Paste ``sprite`` centred on pixel (round(x), round(y)), clipped to the frame, in place."""
    h, w = frame.shape[:2]
    x0, y0 = int(math.floor(x)) - sprite.half, int(math.floor(y)) - sprite.half
    size = 2 * sprite.half + 1
    fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(w, x0 + size), min(h, y0 + size)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    sl = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
    region = frame[fy0:fy1, fx0:fx1]
    mask = sprite.alpha[sl]
    region[mask] = sprite.rgb[sl][mask]


def render_frames(spec: VideoSpec) -> Iterator[np.ndarray]:
    """Display-orientation RGB frames, uint8 [height, width, 3]."""
    rng = np.random.default_rng(spec.seed)
    background = render_background(spec.pattern, spec.palette, spec.width, spec.height)
    background = np.clip(background + 0.5, 0, 255).astype(np.uint8)
    cache: dict[tuple[float, float], _Sprite] = {}  # most motions keep size and angle fixed
    for poses in _poses(spec, rng):
        frame = background.copy()
        for pose in poses:
            key = (pose.radius, pose.angle)
            sprite = cache.get(key)
            if sprite is None:
                if len(cache) > 64:
                    cache.clear()
                sprite = cache[key] = _sprite(spec, pose.radius, pose.angle)
            _paste(frame, sprite, pose.x, pose.y)
        yield frame


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def rgb_to_yuv_planes(rgb: np.ndarray, pix_fmt: str) -> list[np.ndarray]:
    """BT.601 limited-range Y'CbCr planes of an RGB uint8 [H, W, 3] frame, in integer arithmetic
    (the classic 8-bit approximation); 4:2:0 chroma is the rounded mean of each 2x2 block."""
    r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
    y = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    u = ((-38 * r - 74 * g + 112 * b + 128) >> 8) + 128
    v = ((112 * r - 94 * g - 18 * b + 128) >> 8) + 128
    if pix_fmt == "yuv420p":
        h, w = y.shape
        u = (u.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) + 2) >> 2
        v = (v.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) + 2) >> 2
    elif pix_fmt != "yuv444p":
        raise ConfigError(f"unsupported pixel format {pix_fmt!r}")
    return [np.clip(p, 0, 255).astype(np.uint8) for p in (y, u, v)]


def _yuv_frame(rgb: np.ndarray, pix_fmt: str) -> Any:
    """An ``av.VideoFrame`` whose every buffer byte we wrote: the planes, and zeros in the padding."""
    import av

    h, w = rgb.shape[:2]
    frame = av.VideoFrame(w, h, pix_fmt)
    for plane, data in zip(frame.planes, rgb_to_yuv_planes(rgb, pix_fmt), strict=True):
        buf = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
        buf[...] = 0
        buf[: data.shape[0], : data.shape[1]] = data
    return frame


def encode_mp4(frames: Iterator[np.ndarray], spec: VideoSpec) -> bytes:
    """Encode display frames as H.264 MP4 bytes, storing them turned against ``spec.rotation``."""
    import av

    if spec.rotation not in (0, 90, 180, 270):
        raise ConfigError(f"rotation must be 0, 90, 180 or 270, got {spec.rotation}")
    width, height = spec.coded_size
    turns = -spec.rotation // 90  # decoders turn the stored frame counter-clockwise by `rotation`
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=spec.fps, options=dict(X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = width, height, spec.pix_fmt
        stream.codec_context.thread_count = 1
        stream.codec_context.thread_type = "NONE"
        stream.codec_context.gop_size = max(1, round(2 * float(spec.fps)))  # a keyframe every ~2 s
        if spec.rotation:
            stream.set_display_rotation(spec.rotation)
        for i, frame in enumerate(frames):
            coded = np.ascontiguousarray(np.rot90(frame, turns)) if turns else frame
            vf = _yuv_frame(coded, spec.pix_fmt)
            vf.pts = i
            for packet in stream.encode(vf):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def render_video(spec: VideoSpec) -> bytes:
    """Render and encode one video."""
    if spec.num_frames < 1 or spec.width < 16 or spec.height < 16 or not 1 <= spec.count <= 3:
        raise ConfigError(f"bad video spec: {spec}")
    return encode_mp4(render_frames(spec), spec)

"""The NVDEC backend (layer 2): GPU decoding behind the ``decode`` interface, and the probes that
say whether it can run here.

``decode(source, indices, ctx="gpu:N")`` (and ``decode_gpu``, the same call, both in
:mod:`create_bench.video.decoding`) returns what the
CPU path returns (``uint8 [T, H, W, 3]`` RGB, in the order of ``indices``) but decodes on an NVIDIA
GPU; ``create-bench extract --decode-device cuda`` selects it. Three backends, tried in this order:

- ``decord``: decord's NVDEC reader, where the installed decord was built with CUDA
  (``-DUSE_CUDA=ON``; the PyPI wheels are CPU-only). Resize happens in decord's pipeline, so the
  frames follow the CPU path's resize semantics.
- ``pyav``: NVDEC through the FFmpeg inside PyAV's wheels (built with the ``cuda`` hwaccel; it
  loads the driver's ``libcuda``/``libnvcuvid`` at run time), with no software fallback. This is
  the one that needs nothing beyond our own dependencies and an NVIDIA driver. H.264 decoding is
  bit-exact, so NVDEC's YUV planes equal the software decoder's; they are downloaded to the host
  (NV12), their chroma deinterleaved to YUV420P (lossless; libswscale's NV12-to-RGB path differs
  by up to ~50 levels), and converted/resized by the same FFmpeg filters as the CPU ``pyav``
  backend: the frames equal the CPU ``pyav`` frames (checked on an H200 on all 200 CREATE-sample
  test videos, max difference 0 against decord too). The availability probe
  decodes a tiny clip and requires the decoded frame to live on the GPU (``format == "cuda"``),
  so a silent software decode cannot pass for NVDEC.
- ``pynvvideocodec``: NVIDIA's ``PyNvVideoCodec`` package (PyPI ``pynvvideocodec``), whose
  ``SimpleDecoder`` gives random access by frame index and RGB output on the device. It reads files,
  so bytes are spilled to a temporary file first. ``size`` is applied on the GPU with bilinear
  interpolation (``torch.nn.functional.interpolate``, no antialias), which is close to but not
  bit-identical with FFmpeg's ``scale`` filter: compare with :data:`GPU_TOLERANCE`.

Streams NVDEC cannot decode (:data:`NVDEC_FORMATS`: H.264 4:4:4, frames under 48x16, ...) are
decoded on the CPU by the GPU path's ``pyav`` backend, counted in :data:`CPU_FALLBACKS` and logged
once per reason; the frames are the same either way.

Where neither exists (no CUDA-enabled decord, no PyNvVideoCodec or no CUDA device), every entry
point raises :class:`BackendUnavailable` with a message that lists why each backend was refused.
Nothing here runs at import time.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import BackendUnavailable, ConfigError, VideoDecodeError
from create_bench.video.backends.decord import decode_decord, decord_ctx
from create_bench.video.backends.pyav import decode_pyav

GPU_BACKENDS = ("auto", "decord", "pyav", "pynvvideocodec")
#: Max per-value difference expected between GPU frames and the CPU decord frames of the same
#: video and indices: NVDEC's YUV->RGB conversion and the resize filter differ from FFmpeg's.
GPU_TOLERANCE = 8


#: What NVDEC decodes (NVIDIA's Video Codec SDK support matrix, the part common to the GPUs since
#: Turing): codec -> software pixel formats, and the smallest and largest frame.
NVDEC_FORMATS = {
    "h264": {"yuv420p", "yuvj420p"},
    "hevc": {"yuv420p", "yuvj420p", "yuv420p10le", "yuv420p12le"},
    "vp9": {"yuv420p", "yuv420p10le", "yuv420p12le"},
    "av1": {"yuv420p", "yuv420p10le"},
    "mpeg2video": {"yuv420p"},
    "mpeg4": {"yuv420p"},
}
NVDEC_MIN_SIZE = (16, 48)  # (height, width): H.264's minimum; HEVC/VP9/AV1 need at least this too
NVDEC_MAX_SIZE = (4096, 4096)
#: Videos the GPU path decoded on the CPU instead, by reason (see :func:`note_cpu_fallback`).
CPU_FALLBACKS: Counter[str] = Counter()


def nvdec_refusal(src: bytes | str) -> str | None:
    """None when NVDEC can decode the video's stream, else why not (codec, pixel format, size).

    A stream outside :data:`NVDEC_FORMATS` makes FFmpeg's cuda hwaccel fail at the first packet
    ("Invalid data found"), so the GPU path asks first and hands such a video to the CPU decoder.
    """
    import av

    try:
        with av.open(io.BytesIO(src) if isinstance(src, bytes) else src, "r") as c:
            if not c.streams.video:
                return None  # the decoder reports the missing stream, naming the vid
            s = c.streams.video[0]
            name, fmt = s.codec_context.name, s.codec_context.pix_fmt
            h, w = int(s.codec_context.height or 0), int(s.codec_context.width or 0)
    except Exception:
        return None  # unreadable: the decoder raises VideoDecodeError naming the vid
    if name not in NVDEC_FORMATS:
        return f"codec {name}"
    if fmt not in NVDEC_FORMATS[name]:
        return f"{name} {fmt}"
    if not (NVDEC_MIN_SIZE[0] <= h <= NVDEC_MAX_SIZE[0] and NVDEC_MIN_SIZE[1] <= w <= NVDEC_MAX_SIZE[1]):
        return f"{name} {w}x{h} frames"
    return None


def note_cpu_fallback(reason: str, vid: str | None) -> None:
    """Count a video the GPU path decoded on the CPU; the first of each reason is logged."""
    CPU_FALLBACKS[reason] += 1
    if CPU_FALLBACKS[reason] == 1:
        logging.getLogger(__name__).warning(
            "NVDEC cannot decode %s (video %s and others like it): decoded on the CPU", reason, vid or "?"
        )


def device_index(device: int | str) -> int:
    if isinstance(device, int) and not isinstance(device, bool):
        idx = device
    else:
        kind, _, num = str(device).partition(":")
        if kind not in ("cuda", "gpu") and not kind.isdigit():
            raise ConfigError(f"GPU device must be an int or 'cuda[:N]', got {device!r}")
        try:
            idx = int(kind) if kind.isdigit() else int(num or 0)
        except ValueError:
            raise ConfigError(f"bad GPU device {device!r}") from None
    if idx < 0:
        raise ConfigError(f"GPU device index must be >= 0, got {device!r}")
    return idx


def _decord_reason(device: int) -> str | None:
    """None when decord can decode on ``device``, else why not."""
    try:
        decord_ctx(("gpu", device))
    except BackendUnavailable as e:
        return str(e)
    return None


def _pynv_reason(device: int) -> str | None:
    """None when PyNvVideoCodec and a CUDA device are usable, else why not."""
    try:
        import PyNvVideoCodec  # noqa: F401
    except ImportError:
        return "PyNvVideoCodec is not installed (pip install pynvvideocodec; needs an NVIDIA driver)"
    except Exception as e:  # the package imports the CUDA driver library and can fail without one
        return f"PyNvVideoCodec failed to load: {type(e).__name__}: {str(e)[:200]}"
    try:
        import torch

        if not torch.cuda.is_available():
            return "PyNvVideoCodec is installed but torch sees no CUDA device"
        if device >= torch.cuda.device_count():
            return f"no CUDA device {device} (torch sees {torch.cuda.device_count()})"
    except ImportError:
        return "torch is needed to hand PyNvVideoCodec frames over (DLPack)"
    return None


_PYAV_PROBE: dict[int, str | None] = {}


def _probe_clip() -> bytes:
    """A tiny H.264 clip (4 frames, 128x96) made in memory with PyAV's libx264."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 128, 96, "yuv420p"
        for i in range(4):
            img = np.full((96, 128, 3), 40 * i, dtype=np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return buf.getvalue()


def pyav_hwaccel(device: int, on_device: bool = False) -> Any:
    """PyAV's CUDA (NVDEC) decode settings for ``device``, with no software fallback."""
    from av.codec.hwaccel import HWAccel

    return HWAccel("cuda", device=str(device), allow_software_fallback=False, is_hw_owned=on_device)


def _pyav_probe_here(device: int) -> str | None:
    """Decode the probe clip on NVDEC in this process: None, or why it failed."""
    import av

    try:
        with av.open(io.BytesIO(_probe_clip()), "r", hwaccel=pyav_hwaccel(device, on_device=True)) as c:
            fmt = next(c.decode(c.streams.video[0])).format.name
    except Exception as e:  # no driver/libcuda/libnvcuvid: FFmpeg reports EPERM, ENOSYS, ...
        return (
            f"PyAV's FFmpeg could not decode on CUDA device {device} (no NVIDIA driver, libcuda or "
            f"libnvcuvid?): {type(e).__name__}: {str(e)[:200]}"
        )
    if fmt != "cuda":
        return f"PyAV decoded the probe clip in software (frame format {fmt}), not on NVDEC"
    return None


def _pyav_reason(device: int) -> str | None:
    """None when PyAV's FFmpeg decodes H.264 on NVDEC on ``device``, else why not.

    The probe decodes a tiny clip in a child interpreter (once per process and device): creating a
    CUDA context here would make every decode worker forked later unable to use CUDA.
    """
    if device in _PYAV_PROBE:
        return _PYAV_PROBE[device]
    import ctypes.util

    try:
        import av
        from av.codec.hwaccel import hwdevices_available
    except ImportError as e:
        reason: str | None = f"PyAV without hardware decoding support ({e})"
    else:
        if "cuda" not in hwdevices_available():
            reason = f"the FFmpeg inside PyAV {av.__version__} was built without the cuda hwaccel"
        elif ctypes.util.find_library("cuda") is None and not Path("/usr/local/nvidia").is_dir():
            reason = "no NVIDIA driver here (libcuda not found), so PyAV's cuda hwaccel cannot run"
        else:
            reason = _in_child(
                "from create_bench.video.backends.nvdec import _pyav_probe_here as f; import sys; "
                "r = f(int(sys.argv[1])); print('OK' if r is None else 'NO ' + r)",
                device,
            )
    _PYAV_PROBE[device] = reason
    return reason


def _in_child(code: str, device: int) -> str | None:
    """Run a probe in a fresh interpreter; None when it printed OK, else its reason."""
    import subprocess
    import sys

    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        r = subprocess.run(
            [sys.executable, "-c", code, str(device)], capture_output=True, text=True, timeout=120, env=env
        )
    except subprocess.TimeoutExpired:
        return "the NVDEC probe did not finish in 120 s"
    out = r.stdout.strip().splitlines()
    if r.returncode == 0 and out and out[-1] == "OK":
        return None
    if out and out[-1].startswith("NO "):
        return out[-1][3:]
    return (
        f"the NVDEC probe failed (exit {r.returncode}): {(r.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    )


def gpu_decode_status(device: int | str = 0) -> dict[str, str | None]:
    """Why each GPU backend can or cannot run: ``{"decord": None | reason, "pyav": ..., "pynvvideocodec": ...}``."""
    idx = device_index(device)
    return {"decord": _decord_reason(idx), "pyav": _pyav_reason(idx), "pynvvideocodec": _pynv_reason(idx)}


_REASONS = {"decord": _decord_reason, "pyav": _pyav_reason, "pynvvideocodec": _pynv_reason}


def select_gpu_backend(device: int | str = 0, backend: str = "auto") -> str:
    """The GPU backend that will run (``"decord"``, ``"pyav"`` or ``"pynvvideocodec"``), or BackendUnavailable."""
    if backend not in GPU_BACKENDS:
        raise ConfigError(f"unknown GPU decode backend {backend!r} (known: {', '.join(GPU_BACKENDS)})")
    idx = device_index(device)
    order = ["decord", "pyav", "pynvvideocodec"] if backend == "auto" else [backend]
    reasons = []
    for name in order:
        reason = _REASONS[name](idx)
        if reason is None:
            return name
        reasons.append(f"{name}: {reason}")
    raise BackendUnavailable(
        "GPU decoding (--decode-device cuda) is not available here; "
        + "; ".join(reasons)
        + ". Use the CPU decoder."
    )


def gpu_decode_available(device: int | str = 0) -> bool:
    """True when some GPU decode backend can run on ``device``."""
    try:
        select_gpu_backend(device)
    except BackendUnavailable:
        return False
    return True


def decode_gpu_frames(
    src: bytes | str,
    uniq: list[int],
    hw: tuple[int, int] | None,
    device: int,
    vid: str | None,
    backend: str = "auto",
) -> np.ndarray:
    """The GPU path of ``decode`` (``ctx="gpu"``): sorted unique ``uniq``."""
    name = select_gpu_backend(device, backend)
    if name == "decord":  # pragma: no cover - needs a CUDA-enabled decord
        return decode_decord(src, uniq, hw, 0, ("gpu", device), vid, "seek")
    if name == "pyav":  # pragma: no cover - needs an NVIDIA GPU
        refusal = nvdec_refusal(src)
        if refusal is not None:  # a stream NVDEC cannot decode (H.264 4:4:4, tiny frames): the CPU decodes it
            note_cpu_fallback(refusal, vid)
            return decode_pyav(src, uniq, hw, 1, vid, "auto")
        return decode_pyav(src, uniq, hw, 1, vid, "auto", hwaccel=pyav_hwaccel(device))
    return _decode_pynv(src, uniq, size=hw, device=device, vid=vid)


def _decode_pynv(
    src: bytes | str, uniq: list[int], *, size: tuple[int, int] | None, device: int, vid: str | None
) -> np.ndarray:  # pragma: no cover - needs an NVIDIA GPU
    """Sorted unique frames ``uniq`` with PyNvVideoCodec's SimpleDecoder, resized on the GPU."""
    import PyNvVideoCodec as nvc
    import torch
    import torch.nn.functional as F

    tmp: Path | None = None
    if isinstance(src, bytes):
        fd, name = tempfile.mkstemp(suffix=".mp4")
        with os.fdopen(fd, "wb") as fh:
            fh.write(src)
        tmp, path = Path(name), name
    else:
        path = src
    try:
        try:
            dec = nvc.SimpleDecoder(
                path, gpu_id=device, use_device_memory=True, output_color_type=nvc.OutputColorType.RGB
            )
            n = len(dec)
        except Exception as e:
            raise VideoDecodeError(f"PyNvVideoCodec cannot open the video: {str(e)[:300]}", vid=vid) from None
        if uniq[-1] >= n:
            raise VideoDecodeError(f"frame index {uniq[-1]} out of range: the video has {n} frames", vid=vid)
        try:
            decoded = dec.get_batch_frames_by_index(uniq)
        except Exception as e:
            raise VideoDecodeError(f"PyNvVideoCodec failed to decode: {str(e)[:300]}", vid=vid) from None
        frames = torch.stack([torch.from_dlpack(f) for f in decoded])  # [T, H, W, 3] uint8 on the GPU
        if size is not None and tuple(frames.shape[1:3]) != size:
            x = frames.permute(0, 3, 1, 2).float()
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            frames = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        return frames.contiguous().cpu().numpy()
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


__all__ = [
    "CPU_FALLBACKS",
    "GPU_BACKENDS",
    "NVDEC_FORMATS",
    "GPU_TOLERANCE",
    "decode_gpu_frames",
    "gpu_decode_available",
    "gpu_decode_status",
    "note_cpu_fallback",
    "nvdec_refusal",
    "pyav_hwaccel",
    "select_gpu_backend",
]

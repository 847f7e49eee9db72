"""GPU (NVDEC) decoding behind the ``decode`` interface (layer 2).

``decode(source, indices, ctx="gpu:N")`` (and :func:`decode_gpu`, the same call) returns what the
CPU path returns (``uint8 [T, H, W, 3]`` RGB, in the order of ``indices``) but decodes on an NVIDIA
GPU; ``create-bench extract --decode-device cuda`` selects it. Two backends, tried in this order:

- ``decord``: decord's NVDEC reader, where the installed decord was built with CUDA
  (``-DUSE_CUDA=ON``; the PyPI wheels are CPU-only). Resize happens in decord's pipeline, so the
  frames follow the CPU path's resize semantics.
- ``pynvvideocodec``: NVIDIA's ``PyNvVideoCodec`` package (PyPI ``pynvvideocodec``), whose
  ``SimpleDecoder`` gives random access by frame index and RGB output on the device. It reads files,
  so bytes are spilled to a temporary file first. ``size`` is applied on the GPU with bilinear
  interpolation (``torch.nn.functional.interpolate``, no antialias), which is close to but not
  bit-identical with FFmpeg's ``scale`` filter: compare with :data:`GPU_TOLERANCE`.

Where neither exists (no CUDA-enabled decord, no PyNvVideoCodec or no CUDA device), every entry
point raises :class:`BackendUnavailable` with a message that lists why each backend was refused.
Nothing here runs at import time.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from create_bench.errors import BackendUnavailable, ConfigError, VideoDecodeError

GPU_BACKENDS = ("auto", "decord", "pynvvideocodec")
#: Max per-value difference expected between GPU frames and the CPU decord frames of the same
#: video and indices: NVDEC's YUV->RGB conversion and the resize filter differ from FFmpeg's.
GPU_TOLERANCE = 8


def _device_index(device: int | str) -> int:
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
    from create_bench.video.decode import _decord_ctx

    try:
        _decord_ctx(("gpu", device))
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


def gpu_decode_status(device: int | str = 0) -> dict[str, str | None]:
    """Why each GPU backend can or cannot run: ``{"decord": None | reason, "pynvvideocodec": ...}``."""
    idx = _device_index(device)
    return {"decord": _decord_reason(idx), "pynvvideocodec": _pynv_reason(idx)}


def select_gpu_backend(device: int | str = 0, backend: str = "auto") -> str:
    """The GPU backend that will run (``"decord"`` or ``"pynvvideocodec"``), or BackendUnavailable."""
    if backend not in GPU_BACKENDS:
        raise ConfigError(f"unknown GPU decode backend {backend!r} (known: {', '.join(GPU_BACKENDS)})")
    idx = _device_index(device)
    order = ["decord", "pynvvideocodec"] if backend == "auto" else [backend]
    reasons = []
    for name in order:
        reason = _decord_reason(idx) if name == "decord" else _pynv_reason(idx)
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


def decode_gpu(
    source: bytes | str | os.PathLike[str],
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
    from create_bench.video.decode import decode

    idx = _device_index(device)
    select_gpu_backend(idx)  # the full "why not" message, before any worker starts
    return decode(source, indices, size=size, ctx=f"gpu:{idx}", vid=vid, timeout=timeout)


def decode_gpu_frames(
    src: bytes | str, uniq: list[int], hw: tuple[int, int] | None, device: int, vid: str | None
) -> np.ndarray:
    """The GPU path of :func:`create_bench.video.decode` (``ctx="gpu"``): sorted unique ``uniq``."""
    name = select_gpu_backend(device)
    if name == "decord":  # pragma: no cover - needs a CUDA-enabled decord
        from create_bench.video.decode import _decode_decord

        return _decode_decord(src, uniq, hw, 0, ("gpu", device), vid, "seek")
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
    "GPU_BACKENDS",
    "GPU_TOLERANCE",
    "decode_gpu",
    "decode_gpu_frames",
    "gpu_decode_available",
    "gpu_decode_status",
    "select_gpu_backend",
]

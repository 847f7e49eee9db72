"""Frozen per-frame video encoders (layer 3) and their registry.

Every encoder maps uint8 frames ``[B, T, H, W, 3]`` to float32 per-frame vectors ``[B, T, D]``, never
trains, and has a ``signature`` (what changes its output) that keys the feature store
(:mod:`create_bench.features.store`) and the metadata of extracted feature shards.

- ``fixed``: :class:`create_bench.synthetic.fixed_encoder.FixedEncoder`, hand-made features modelled
  on how the CREATE sample draws (it lives with the generator, the only other code that knows that).
- :class:`CLIPEncoder` (``clip``): a local CLIP checkpoint directory, transformers format
  (``config.json`` + weights; ``CLIPModel``/``CLIPVisionModelWithProjection`` give projected image
  embeddings, ``CLIPVisionModel`` its pooled output) or open_clip format
  (``open_clip_config.json``; needs the ``open_clip_torch`` package).
- ``features``: precomputed per-frame features from the dataset; no encoder runs
  (:func:`build_encoder` returns None).

:func:`build_encoder` resolves a model config's ``encoder`` (ALWIG's ``fixed``/``clip``/``features``);
:func:`resolve_encoder` resolves the wider ``create-bench extract --encoder`` spec (``clip:DIR``, a
checkpoint directory, ``file.py:Class``).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from create_bench.errors import BackendUnavailable, ConfigError, ModelError
from create_bench.features.frames import check_frames as _check_frames
from create_bench.synthetic.fixed_encoder import (
    SHAPE_DIM,
    FixedEncoder,
    connected_components,
    shape_descriptors,
)

__all__ = [
    "SHAPE_DIM",
    "CLIPEncoder",
    "FixedEncoder",
    "build_encoder",
    "connected_components",
    "encode_videos",
    "encoder_info",
    "resolve_encoder",
    "shape_descriptors",
]


_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)


_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _dir_signature(path: Path) -> str:
    """A cheap identity of a checkpoint directory: names, sizes and mtimes of its files."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(f"{f.relative_to(path)}:{st.st_size}:{int(st.st_mtime)}\n".encode())
    return h.hexdigest()[:12]


class CLIPEncoder:
    """A frozen CLIP image tower from a local directory (transformers or open_clip format)."""

    name = "clip"
    model: Any

    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError(f"CLIP encoder directory not found: {self.path}")
        self.device = torch.device(device)
        if (self.path / "open_clip_config.json").is_file():
            self._load_open_clip()
        elif (self.path / "config.json").is_file():
            self._load_transformers()
        else:
            raise ConfigError(
                f"{self.path} is not a CLIP checkpoint: expected config.json (transformers) "
                "or open_clip_config.json (open_clip)"
            )
        self.model.eval().requires_grad_(False).to(self.device)
        self.mean = torch.tensor(self.mean_std[0]).view(1, 3, 1, 1)
        self.std = torch.tensor(self.mean_std[1]).view(1, 3, 1, 1)
        self._sig = f"clip-{self.format}-{_dir_signature(self.path)}-{self.image_size}"

    def _load_transformers(self) -> None:
        from transformers import CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection

        cfg = json.loads((self.path / "config.json").read_text("utf-8"))
        archs = set(cfg.get("architectures") or [])
        projected = bool(archs & {"CLIPModel", "CLIPVisionModelWithProjection"})
        cls = CLIPVisionModelWithProjection if projected else CLIPVisionModel
        try:
            self.model = cls.from_pretrained(self.path)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load CLIP checkpoint from {self.path}: {exc}") from exc
        vcfg: Any = self.model.config
        if not isinstance(vcfg, CLIPVisionConfig):
            vcfg = getattr(vcfg, "vision_config", vcfg)
        self.image_size = int(vcfg.image_size)
        self.projected = projected
        self.dim = (
            int(getattr(self.model.config, "projection_dim", 0) or 0) if projected else int(vcfg.hidden_size)
        )
        if projected and not self.dim:
            self.dim = int(self.model.visual_projection.out_features)
        self.format = "hf"
        mean, std = _OPENAI_CLIP_MEAN, _OPENAI_CLIP_STD
        pp = self.path / "preprocessor_config.json"
        if pp.is_file():
            p = json.loads(pp.read_text("utf-8"))
            mean, std = tuple(p.get("image_mean", mean)), tuple(p.get("image_std", std))
        self.mean_std = (mean, std)

    def _load_open_clip(self) -> None:
        try:
            import open_clip
        except ImportError as exc:
            raise BackendUnavailable(
                f"{self.path} is an open_clip checkpoint; install open_clip_torch to load it"
            ) from exc
        model, preprocess = open_clip.create_model_from_pretrained(f"local-dir:{self.path}")
        self.model = model.visual
        size = getattr(self.model, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.dim = int(getattr(self.model, "output_dim", 0) or 0)
        self.projected = True
        self.format = "open_clip"
        cfg = json.loads((self.path / "open_clip_config.json").read_text("utf-8"))
        pcfg = cfg.get("preprocess_cfg", {})
        self.mean_std = (tuple(pcfg.get("mean", _OPENAI_CLIP_MEAN)), tuple(pcfg.get("std", _OPENAI_CLIP_STD)))

    @property
    def signature(self) -> str:
        return self._sig

    @property
    def groups(self) -> tuple[int, ...]:
        """One feature group: a CLIP embedding is not made of separate parts."""
        return (self.dim,)

    def to(self, device: str | torch.device) -> CLIPEncoder:
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> normalised [N, 3, S, S]: shortest side to S (bicubic), centre crop."""
        x = x.permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        s = self.image_size
        scale = s / min(h, w)
        nh, nw = max(s, math.ceil(h * scale - 1e-6)), max(s, math.ceil(w * scale - 1e-6))
        x = F.interpolate(x, size=(nh, nw), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)
        top, left = (nh - s) // 2, (nw - s) // 2
        x = x[:, :, top : top + s, left : left + s]
        return (x - self.mean) / self.std

    @torch.no_grad()
    def __call__(self, frames: Any) -> torch.Tensor:
        frames = _check_frames(frames)
        b, t = frames.shape[:2]
        x = self.preprocess(frames.reshape(b * t, *frames.shape[2:])).to(self.device)
        if self.format == "open_clip":
            out = self.model(x)
        else:
            res = self.model(pixel_values=x)
            out = res.image_embeds if self.projected else res.pooler_output
        return out.float().reshape(b, t, -1).cpu()


def build_encoder(
    encoder: str, *, encoder_path: str | None = None, device: str | torch.device = "cpu"
) -> FixedEncoder | CLIPEncoder | None:
    """The frozen encoder named by a config (None for precomputed ``features``)."""
    if encoder == "fixed":
        return FixedEncoder()
    if encoder == "clip":
        if not encoder_path:
            raise ConfigError("encoder 'clip' needs encoder_path")
        return CLIPEncoder(encoder_path, device=device)
    if encoder == "features":
        return None
    raise ConfigError(f"unknown ALWIG encoder {encoder!r} (fixed, features, clip)")


_ENCODER_NAMES = ("fixed", "clip")


def resolve_encoder(spec: str, device: str = "cpu") -> Any:
    """Build the frozen encoder named by ``spec`` (see :attr:`ExtractConfig.encoder`)."""
    if spec in _ENCODER_NAMES and spec != "clip":
        return build_encoder(spec, device=device)
    if spec.startswith("clip:"):
        return build_encoder("clip", encoder_path=spec[5:], device=device)
    if spec.endswith(".py") or ".py:" in spec:
        from create_bench.registry import load_object

        cls = load_object(spec)
        enc = cls()
        if hasattr(enc, "to"):
            enc = enc.to(device) or enc
        return enc
    if Path(spec).expanduser().is_dir():
        return build_encoder("clip", encoder_path=str(Path(spec).expanduser()), device=device)
    close = difflib.get_close_matches(spec, ["fixed", "clip:"], n=1)
    raise ConfigError(
        f"unknown encoder {spec!r}: use 'fixed', 'clip:DIR', a CLIP checkpoint directory or 'file.py:Class'"
        + (f"; did you mean {close[0]!r}?" if close else "")
    )


def encoder_info(encoder: Any) -> dict[str, Any]:
    """Name, revision (what changes its output) and version of an encoder, for file metadata."""
    name = str(getattr(encoder, "name", type(encoder).__name__))
    revision = getattr(encoder, "signature", None) or getattr(encoder, "revision", None) or name
    version = getattr(encoder, "version", None)
    return {
        "encoder": name,
        "encoder_revision": str(revision),
        "encoder_version": None if version is None else str(version),
    }


def encode_videos(
    encoder: Any, frames: Sequence[np.ndarray], vids: Sequence[str], encode_batch: int = 1
) -> list[np.ndarray]:
    """Per-frame features ``float32 [T_i, D]`` of each video's ``uint8 [T_i, H, W, 3]`` frames."""
    import torch

    out: list[np.ndarray] = []
    i = 0
    while i < len(frames):
        j = i + 1
        while j < len(frames) and j - i < encode_batch and frames[j].shape == frames[i].shape:
            j += 1
        x = torch.from_numpy(np.stack(frames[i:j]))
        y = encoder(x)
        y = y.detach().float().cpu().numpy() if hasattr(y, "detach") else np.asarray(y, dtype=np.float32)
        if y.ndim != 3 or y.shape[:2] != x.shape[:2]:
            raise ModelError(
                f"encoder returned shape {tuple(y.shape)} for frames {tuple(x.shape)} (vid {vids[i]!r})"
            )
        for k in range(j - i):
            f = np.ascontiguousarray(y[k], dtype=np.float32)
            if not np.isfinite(f).all():
                raise ModelError(f"encoder produced non-finite features for vid {vids[i + k]!r}")
            out.append(f)
        i = j
    return out

"""Frozen per-frame video encoders for ALWIG.

Every encoder maps uint8 frames ``[B, T, H, W, 3]`` to float32 per-frame vectors ``[B, T, D]``, never
trains, and has a ``signature`` (what changes its output) that keys the training feature cache.

- :class:`FixedEncoder` (``fixed``): hand-made, deterministic features that need no download, so
  colour, shape, position and motion are all visible to the model: a joint RGB histogram of the
  frame and of its foreground (pixels far from the border colour), an 8x8 colour thumbnail, an 8x8
  edge map, the signed 8x8 grey difference to the previous sampled frame, and the foreground's
  centroid, extent and their change since the previous frame.
- :class:`CLIPEncoder` (``clip``): a local CLIP checkpoint directory, transformers format
  (``config.json`` + weights; ``CLIPModel``/``CLIPVisionModelWithProjection`` give projected image
  embeddings, ``CLIPVisionModel`` its pooled output) or open_clip format
  (``open_clip_config.json``; needs the ``open_clip_torch`` package).
- ``features``: precomputed per-frame features from the dataset; no encoder runs
  (:func:`build_encoder` returns None).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from create_bench.errors import BackendUnavailable, ConfigError, ModelError

_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _check_frames(frames: Any) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(frames)
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ModelError(f"ALWIG expects frames as uint8 [B, T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ModelError(f"ALWIG expects uint8 frames, got {frames.dtype}")
    return frames


class FixedEncoder:
    """Deterministic hand-made frame features (see the module docstring).

    Frames are first resized to ``WORK`` x ``WORK`` so the features do not depend on the input size.
    The background is modelled as the colour segment between the two extremes of the border
    pixels along their main colour axis (two-colour patterns and gradients lie on it); pixels far
    from that segment are foreground. Motion between consecutive sampled frames is the circular
    shift that best aligns their foreground masks (objects that leave one side re-enter the other).
    """

    name = "fixed"
    version = 1
    WORK = 48  # working resolution
    BINS = 4  # per colour channel: 4**3 = 64 joint bins
    GRID = 8
    FG_THRESHOLD = 0.12  # RGB distance (0..1 per channel) from the background segment
    SHIFT = 4  # motion search range at the MOTION_RES grid
    MOTION_RES = 16

    def __init__(self) -> None:
        nb, g2 = self.BINS**3, self.GRID**2
        self.dim = 2 * nb + 3 * g2 + 4 * 16 + g2 + g2 + 9 + 5

    @property
    def signature(self) -> str:
        return f"fixed-v{self.version}"

    def to(self, device: str | torch.device) -> FixedEncoder:
        return self

    def _histogram(self, x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
        n = x.shape[0]
        q = (x * self.BINS).long().clamp_(max=self.BINS - 1)
        code = ((q[:, 0] * self.BINS + q[:, 1]) * self.BINS + q[:, 2]).reshape(n, -1)
        w = torch.ones_like(code, dtype=torch.float32) if weight is None else weight.reshape(n, -1).float()
        hist = torch.zeros(n, self.BINS**3).scatter_add_(1, code, w)
        return hist / w.sum(dim=1, keepdim=True).clamp(min=1.0)

    def _foreground(self, x: torch.Tensor) -> torch.Tensor:
        """Bool [N, H, W]: pixels far from the background colour segment estimated on the border."""
        border = torch.cat([x[:, :, 0, :], x[:, :, -1, :], x[:, :, :, 0], x[:, :, :, -1]], dim=2)  # [N, 3, P]
        mu = border.mean(dim=2, keepdim=True)
        c = border - mu
        cov = c @ c.transpose(1, 2) / c.shape[2] + 1e-6 * torch.eye(3)
        axis = torch.linalg.eigh(cov).eigenvectors[:, :, -1:]  # [N, 3, 1], main colour axis
        proj = (c * axis).sum(dim=1)  # [N, P]
        lo = torch.quantile(proj, 0.05, dim=1)
        hi = torch.quantile(proj, 0.95, dim=1)
        a = mu[:, :, 0] + lo[:, None] * axis[:, :, 0]
        b = mu[:, :, 0] + hi[:, None] * axis[:, :, 0]
        ab = (b - a)[:, :, None, None]
        rel = x - a[:, :, None, None]
        t = ((rel * ab).sum(dim=1, keepdim=True) / (ab * ab).sum(dim=1, keepdim=True).clamp(min=1e-8)).clamp(
            0, 1
        )
        dist = (rel - t * ab).norm(dim=1)
        return dist > self.FG_THRESHOLD

    def _motion(self, fg: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """[B, T, 5]: best circular shift (dx, dy) from the previous frame, its overlap, area ratio, flag."""
        r, s = self.MOTION_RES, self.SHIFT
        m = F.adaptive_avg_pool2d(fg.float()[:, None], r)[:, 0].reshape(b, t, r, r)
        out = torch.zeros(b, t, 5)
        if t < 2:
            return out
        prev, cur = m[:, :-1], m[:, 1:]
        norm = (prev.flatten(2).norm(dim=2) * cur.flatten(2).norm(dim=2)).clamp(min=1e-6)
        best = torch.full(prev.shape[:2], -1.0)
        best_dx = torch.zeros(prev.shape[:2])
        best_dy = torch.zeros(prev.shape[:2])
        for dy in range(-s, s + 1):
            for dx in range(-s, s + 1):
                score = (torch.roll(prev, shifts=(dy, dx), dims=(2, 3)) * cur).flatten(2).sum(dim=2) / norm
                # Prefer the smaller shift on ties (a static scene must give 0, 0).
                score = score - 1e-4 * (abs(dx) + abs(dy))
                better = score > best
                best = torch.where(better, score, best)
                best_dx = torch.where(better, torch.full_like(best_dx, dx), best_dx)
                best_dy = torch.where(better, torch.full_like(best_dy, dy), best_dy)
        area_prev, area_cur = prev.flatten(2).sum(dim=2), cur.flatten(2).sum(dim=2)
        valid = (area_prev > 0.05) & (area_cur > 0.05)
        out[:, 1:, 0] = best_dx / s * valid
        out[:, 1:, 1] = best_dy / s * valid
        out[:, 1:, 2] = best.clamp(min=0) * valid
        out[:, 1:, 3] = torch.log((area_cur + 0.5) / (area_prev + 0.5)) * 4.0
        out[:, 1:, 4] = 1.0
        return out

    @torch.no_grad()
    def __call__(self, frames: Any) -> torch.Tensor:
        frames = _check_frames(frames)
        b, t = frames.shape[:2]
        x = frames.reshape(b * t, *frames.shape[2:]).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
        if x.shape[-2:] != (self.WORK, self.WORK):
            x = F.interpolate(x, size=(self.WORK, self.WORK), mode="area")
        n, g, h = x.shape[0], self.GRID, self.WORK

        fg = self._foreground(x)  # [N, H, W]
        hist = self._histogram(x, None)
        fg_hist = self._histogram(x, fg)

        # Layout and texture: a colour thumbnail; horizontal, vertical and diagonal edge energy.
        thumb = F.adaptive_avg_pool2d(x, g) - 0.5
        grey = x.mean(dim=1, keepdim=True)
        gx = F.pad((grey[:, :, :, 1:] - grey[:, :, :, :-1]).abs(), (0, 1))
        gy = F.pad((grey[:, :, 1:, :] - grey[:, :, :-1, :]).abs(), (0, 0, 0, 1))
        d1 = F.pad((grey[:, :, 1:, 1:] - grey[:, :, :-1, :-1]).abs(), (0, 1, 0, 1))
        d2 = F.pad((grey[:, :, 1:, :-1] - grey[:, :, :-1, 1:]).abs(), (1, 0, 0, 1))
        texture = F.adaptive_avg_pool2d(torch.cat([gx, gy, d1, d2], dim=1), 4) * 8.0

        # Shape: the foreground inside its bounding box, resampled to GRID x GRID.
        fgf = fg.float()
        coords = (torch.arange(h, dtype=torch.float32) + 0.5) / h
        rows, cols = fgf.amax(dim=2), fgf.amax(dim=1)  # [N, H]
        any_fg = rows.amax(dim=1) > 0
        big = 2.0 * h
        y0 = torch.where(rows > 0, coords * h, torch.full_like(rows, big)).amin(dim=1)
        y1 = torch.where(rows > 0, coords * h, torch.full_like(rows, -big)).amax(dim=1)
        x0 = torch.where(cols > 0, coords * h, torch.full_like(cols, big)).amin(dim=1)
        x1 = torch.where(cols > 0, coords * h, torch.full_like(cols, -big)).amax(dim=1)
        y0, y1 = torch.where(any_fg, y0, 0.0), torch.where(any_fg, y1, h - 1.0)
        x0, x1 = torch.where(any_fg, x0, 0.0), torch.where(any_fg, x1, h - 1.0)
        # affine_grid maps the output grid onto the box (normalised coordinates in [-1, 1]).
        sx, sy = (x1 - x0 + 1) / h, (y1 - y0 + 1) / h
        cx_box, cy_box = (x0 + x1) / h - 1.0, (y0 + y1) / h - 1.0
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0], theta[:, 0, 2] = sx, cx_box
        theta[:, 1, 1], theta[:, 1, 2] = sy, cy_box
        grid = F.affine_grid(theta, [n, 1, g, g], align_corners=False)
        crop = (
            F.grid_sample(fgf[:, None], grid, mode="bilinear", align_corners=False)[:, 0]
            * any_fg[:, None, None]
        )

        # Foreground geometry.
        area = fgf.sum(dim=(1, 2))
        safe = area.clamp(min=1.0)
        c = coords - 0.5
        cy = (fgf.sum(dim=2) * c).sum(dim=1) / safe
        cx = (fgf.sum(dim=1) * c).sum(dim=1) / safe
        sdy = ((fgf.sum(dim=2) * (c[None] - cy[:, None]) ** 2).sum(dim=1) / safe).sqrt()
        sdx = ((fgf.sum(dim=1) * (c[None] - cx[:, None]) ** 2).sum(dim=1) / safe).sqrt()
        box_area = ((x1 - x0 + 1) * (y1 - y0 + 1)).clamp(min=1.0)
        geo = torch.stack(
            [
                cx * 2,
                cy * 2,
                sdx * 4,
                sdy * 4,
                (area / (h * h)).sqrt() * 2,
                area / box_area * any_fg,
                sx,
                sy,
                torch.log(sx.clamp(min=1e-3) / sy.clamp(min=1e-3)) * any_fg,
            ],
            dim=1,
        )

        # Motion: signed grey change since the previous frame, and the best aligning shift.
        small = F.adaptive_avg_pool2d(grey, g).reshape(b, t, g * g)
        diff = torch.zeros_like(small)
        diff[:, 1:] = (small[:, 1:] - small[:, :-1]) * 4.0
        motion = self._motion(fg, b, t)

        out = torch.cat(
            [
                hist.reshape(b, t, -1) * 4.0,
                fg_hist.reshape(b, t, -1) * 2.0,
                thumb.reshape(b, t, -1) * 2.0,
                texture.reshape(b, t, -1),
                (crop.reshape(b, t, -1) - 0.5) * 2.0,
                diff,
                geo.reshape(b, t, -1),
                motion,
            ],
            dim=2,
        )
        if out.shape[-1] != self.dim:  # pragma: no cover - guards the arithmetic above
            raise ModelError(f"fixed encoder produced {out.shape[-1]} dims, expected {self.dim}")
        return out.contiguous()


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

"""The ``fixed`` frozen frame encoder (layer 3: torch): hand-made features modelled on how the
CREATE-sample generator draws (:mod:`create_bench.synthetic.video`).

It needs no download, so colour, shape, position and motion are all visible to a model trained on
the sample: a joint RGB histogram of the frame and of its foreground (pixels far from the border
colour), an 8x8 colour thumbnail, an 8x8 edge map, the signed 8x8 grey difference to the previous
sampled frame, the foreground's centroid, extent and their change since the previous frame, and
(version 2) rotation- and scale-invariant shape descriptors of the largest foreground object,
measured in display geometry (frames resized to a square are un-stretched with the video's display
size). Besides the generator, this is the only code that knows how the sample draws (a flat or
two-colour background, one object class per shape); on real video it is a smoke-test encoder, not a
baseline to tune. The encoder registry is :func:`create_bench.features.encoders.build_encoder`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from create_bench.errors import ModelError
from create_bench.features.frames import check_frames as _check_frames

#: Angular bins of the radial profile of :func:`shape_descriptors`.
_ANGLES = 16


#: Radial mass histogram edges (distance / mean outline radius).
_RADIAL_EDGES = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1e9)


SHAPE_DIM = 6 + (len(_RADIAL_EDGES) - 1) + 7


def connected_components(fg: np.ndarray, max_iter: int = 48) -> np.ndarray:
    """8-connected labels of a bool mask ``[N, H, W]`` (0 = background): each round every pixel
    takes the largest label of its 3x3 neighbourhood, until nothing changes (at most ``max_iter``
    rounds; a longer blob may stay split, which only costs shape detail). Plain numpy: much faster
    than torch on these small arrays."""
    n, h, w = fg.shape
    lab = np.where(fg, np.arange(1, h * w + 1, dtype=np.int32).reshape(1, h, w), 0).astype(np.int32)
    m = np.empty_like(lab)
    for i in range(max_iter):
        np.copyto(m, lab)
        np.maximum(m[:, 1:], lab[:, :-1], out=m[:, 1:])
        np.maximum(m[:, :-1], lab[:, 1:], out=m[:, :-1])
        m2 = m.copy()
        np.maximum(m2[:, :, 1:], m[:, :, :-1], out=m2[:, :, 1:])
        np.maximum(m2[:, :, :-1], m[:, :, 1:], out=m2[:, :, :-1])
        m2 *= fg
        if i % 4 == 3 and np.array_equal(m2, lab):
            return m2
        lab = m2
    return lab


def shape_descriptors(fg: np.ndarray, aspect: np.ndarray) -> np.ndarray:
    """Rotation-, scale- and position-invariant descriptors of the largest foreground object.

    Args:
        fg: bool ``[N, H, W]`` foreground masks.
        aspect: ``[N]`` display width / height of each frame's video (the mask is stretched to
            ``W x H``; coordinates are rescaled so that distances are measured as displayed).

    Returns:
        float32 ``[N, SHAPE_DIM]``: magnitudes of the Fourier coefficients 1..6 of the outline's
        radial profile (3-fold for triangles, 4 for squares and crosses, 5 for stars, 6 for
        hexagons), the radial mass histogram (a ring has no mass near its centre), elongation
        (minor/major axis of the second moments), fill (area / disc of the mean radius), size,
        profile spread, number of blobs / 3, a touches-the-border flag and a found flag. The
        object is the largest component, those touching the border (partly outside) counting
        a third of their area.
    """
    n, h, w = fg.shape
    out = np.zeros((n, SHAPE_DIM), dtype=np.float32)
    if n == 0:
        return out
    # Components on a half-resolution mask (4x fewer pixels, half the rounds), mapped back to full
    # resolution: blobs closer than a couple of pixels merge, which CREATE-sample's never are.
    if h % 2 == 0 and w % 2 == 0:
        half = np.asarray(fg.reshape(n, h // 2, 2, w // 2, 2).any(axis=(2, 4)), dtype=bool)
        lab = connected_components(half).repeat(2, axis=1).repeat(2, axis=2) * fg
    else:
        lab = connected_components(fg)
    hw = h * w + 1
    flat = lab.reshape(n, -1)
    offs = (np.arange(n, dtype=np.int64) * hw)[:, None]
    area = np.bincount((flat + offs).ravel(), minlength=n * hw).reshape(n, hw).astype(np.float64)
    area[:, 0] = 0
    edge = np.concatenate([lab[:, 0, :], lab[:, -1, :], lab[:, :, 0], lab[:, :, -1]], axis=1)
    touches = np.zeros((n, hw), dtype=bool)
    touches[np.repeat(np.arange(n), edge.shape[1]), edge.ravel()] = True
    best = np.argmax(area * np.where(touches, 1.0 / 3.0, 1.0), axis=1)
    found = area[np.arange(n), best] >= 4
    blobs = (area >= 4).sum(axis=1)
    mask = (flat == best[:, None]) & found[:, None]  # [N, H*W]

    # Work on the object's pixels only, in display-geometry coordinates (the same units on both
    # axes, geometric mean 1).
    f, p = np.nonzero(mask)
    sx = np.sqrt(aspect) / w
    sy = 1.0 / np.sqrt(aspect) / h
    yy, xx = np.divmod(p, w)
    px, py = (xx + 0.5) * sx[f], (yy + 0.5) * sy[f]
    a = np.bincount(f, minlength=n).astype(np.float64).clip(min=1.0)

    def per_frame(v: np.ndarray) -> np.ndarray:
        return np.bincount(f, weights=v, minlength=n) / a

    cx, cy = per_frame(px), per_frame(py)
    dx, dy = px - cx[f], py - cy[f]
    m20, m02, m11 = per_frame(dx * dx), per_frame(dy * dy), per_frame(dx * dy)
    half_tr = (m20 + m02) / 2
    disc = np.sqrt(np.clip(half_tr**2 - (m20 * m02 - m11**2), 0, None))
    elong = np.sqrt(np.clip(half_tr - disc, 0, None) / np.clip(half_tr + disc, 1e-12, None))
    r = np.sqrt(dx * dx + dy * dy)
    ang = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * _ANGLES).astype(np.int64).clip(max=_ANGLES - 1)
    prof = np.zeros(n * _ANGLES)
    np.maximum.at(prof, f * _ANGLES + ang, r)
    prof = prof.reshape(n, _ANGLES)
    mean_r = prof.mean(axis=1).clip(min=1e-6)
    prof = prof / mean_r[:, None]
    fourier = np.abs(np.fft.rfft(prof, axis=1))[:, 1:7] / _ANGLES
    nbins = len(_RADIAL_EDGES) - 1
    rbin = np.searchsorted(np.asarray(_RADIAL_EDGES[1:-1]), r / mean_r[f], side="right")
    hist = np.bincount(f * nbins + rbin, minlength=n * nbins).reshape(n, nbins) / a[:, None]
    fill = np.clip(a * sx * sy / (np.pi * mean_r**2), 0, 3)
    size = np.sqrt(a / (h * w))
    obj_touches = touches[np.arange(n), best]
    feats = np.concatenate(
        [
            fourier * 4.0,
            hist,
            np.stack([elong, fill, size * 4.0, prof.std(axis=1), blobs / 3.0, obj_touches, found], axis=1),
        ],
        axis=1,
    )
    out[:] = feats * found[:, None]
    out[:, -1] = found
    return out


class FixedEncoder:
    """Deterministic hand-made frame features (see the module docstring).

    Frames are first resized to ``WORK`` x ``WORK`` so the features do not depend on the input size.
    The background is modelled as the colour segment between the two extremes of the border
    pixels along their main colour axis (two-colour patterns and gradients lie on it); pixels far
    from that segment are foreground. Motion between consecutive sampled frames is the circular
    shift that best aligns their foreground masks (objects that leave one side re-enter the other).
    """

    name = "fixed"
    version = 2
    WORK = 64  # working resolution
    BINS = 4  # per colour channel: 4**3 = 64 joint bins
    GRID = 8
    FG_THRESHOLD = 0.12  # RGB distance (0..1 per channel) from the background segment
    SHIFT = 4  # motion search range at the MOTION_RES grid
    MOTION_RES = 16

    def __init__(self) -> None:
        nb, g2 = self.BINS**3, self.GRID**2
        #: Sizes of the consecutive feature groups, in output order (see ``__call__``).
        self.groups = (nb, nb, 3 * g2, 4 * 16, g2, g2, 9, 5, SHAPE_DIM)
        self.dim = sum(self.groups)

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
        """[B, T, 5]: best circular shift (dx, dy) from the previous frame, its overlap, area ratio, flag.

        The overlap of every circular shift at once is a circular cross-correlation (FFT); the best
        shift within +-SHIFT cells wins, ties going to the smaller shift (a static scene gives 0, 0).
        """
        r, s = self.MOTION_RES, self.SHIFT
        m = F.adaptive_avg_pool2d(fg.float()[:, None], r)[:, 0].reshape(b, t, r, r).double().numpy()
        out = torch.zeros(b, t, 5)
        if t < 2:
            return out
        prev, cur = m[:, :-1], m[:, 1:]
        norm = np.clip(
            np.linalg.norm(prev.reshape(b, t - 1, -1), axis=2)
            * np.linalg.norm(cur.reshape(b, t - 1, -1), axis=2),
            1e-6,
            None,
        )
        # corr[dy, dx] = sum_yx prev[y - dy, x - dx] * cur[y, x] = (roll(prev, (dy, dx)) * cur).sum()
        corr = np.fft.irfft2(np.conj(np.fft.rfft2(prev)) * np.fft.rfft2(cur), s=(r, r))
        shifts = np.arange(-s, s + 1)
        window = corr[:, :, shifts[:, None] % r, shifts[None, :] % r] / norm[:, :, None, None]
        penalty = 1e-4 * (np.abs(shifts)[:, None] + np.abs(shifts)[None, :])
        flat = (window - penalty).reshape(b, t - 1, -1)
        k = flat.argmax(axis=2)
        best = np.take_along_axis(flat, k[:, :, None], axis=2)[:, :, 0]
        best_dy, best_dx = shifts[k // (2 * s + 1)], shifts[k % (2 * s + 1)]
        area_prev, area_cur = prev.reshape(b, t - 1, -1).sum(2), cur.reshape(b, t - 1, -1).sum(2)
        valid = (area_prev > 0.05) & (area_cur > 0.05)
        out[:, 1:, 0] = torch.from_numpy(best_dx / s * valid)
        out[:, 1:, 1] = torch.from_numpy(best_dy / s * valid)
        out[:, 1:, 2] = torch.from_numpy(np.clip(best, 0, None) * valid)
        out[:, 1:, 3] = torch.from_numpy(np.log((area_cur + 0.5) / (area_prev + 0.5)) * 4.0)
        out[:, 1:, 4] = 1.0
        return out

    @torch.no_grad()
    def __call__(self, frames: Any, display_size: Any = None) -> torch.Tensor:
        """Per-frame features ``[B, T, dim]`` of uint8 frames ``[B, T, H, W, 3]``.

        Args:
            frames: the sampled frames (any size; resized to ``WORK`` x ``WORK`` here).
            display_size: ``[B, 2]`` (width, height) each video is displayed at, so the shape
                descriptors can undo a resize that changed the aspect ratio (e.g. to the square
                ``frame_size`` of the sample config). None: the frames have their display aspect.
        """
        frames = _check_frames(frames)
        b, t = frames.shape[:2]
        aspect = _aspects(frames, display_size)
        x = frames.reshape(b * t, *frames.shape[2:]).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W]
        if x.shape[-2:] != (self.WORK, self.WORK):
            x = F.interpolate(x, size=(self.WORK, self.WORK), mode="area")
        g = self.GRID

        fg = self._foreground(x)  # [N, H, W]
        shape = torch.from_numpy(shape_descriptors(fg.numpy(), np.repeat(aspect, t))).reshape(b, t, SHAPE_DIM)
        hist = self._histogram(x, None)
        fg_hist = self._histogram(x, fg)

        # Layout and texture: a colour thumbnail; horizontal, vertical and diagonal edge energy.
        thumb = F.adaptive_avg_pool2d(x, g) - 0.5
        grey = x.mean(dim=1, keepdim=True)
        texture = _edge_energy(grey)
        crop, geo = _shape_crop_and_geometry(fg.float(), g)

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
                shape,
            ],
            dim=2,
        )
        if out.shape[-1] != self.dim:  # pragma: no cover - guards the arithmetic above
            raise ModelError(f"fixed encoder produced {out.shape[-1]} dims, expected {self.dim}")
        return out.contiguous()


def _aspects(frames: torch.Tensor, display_size: Any) -> np.ndarray:
    """Each video's display aspect ratio (width / height): from ``display_size`` ``[B, 2]``, or the
    frames' own when None."""
    b = frames.shape[0]
    if display_size is None:
        return np.full(b, frames.shape[3] / frames.shape[2], dtype=np.float64)
    ds = np.asarray(display_size, dtype=np.float64).reshape(-1, 2) if len(display_size) else None
    if ds is None or ds.shape[0] != b or not np.all(ds > 0):
        raise ModelError(f"display_size must be [{b}, 2] positive (width, height), got {display_size!r}")
    return ds[:, 0] / ds[:, 1]


def _edge_energy(grey: torch.Tensor) -> torch.Tensor:
    """Horizontal, vertical and both diagonal absolute grey differences, pooled to 4 x 4."""
    gx = F.pad((grey[:, :, :, 1:] - grey[:, :, :, :-1]).abs(), (0, 1))
    gy = F.pad((grey[:, :, 1:, :] - grey[:, :, :-1, :]).abs(), (0, 0, 0, 1))
    d1 = F.pad((grey[:, :, 1:, 1:] - grey[:, :, :-1, :-1]).abs(), (0, 1, 0, 1))
    d2 = F.pad((grey[:, :, 1:, :-1] - grey[:, :, :-1, 1:]).abs(), (1, 0, 0, 1))
    return F.adaptive_avg_pool2d(torch.cat([gx, gy, d1, d2], dim=1), 4) * 8.0


def _shape_crop_and_geometry(fgf: torch.Tensor, g: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The foreground ``fgf`` [N, H, H] (0/1 floats) inside its bounding box resampled to g x g, and
    its geometry (centre, spread, size, fill, box size and log aspect), 9 values per frame."""
    n, h = fgf.shape[0], fgf.shape[1]
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
        F.grid_sample(fgf[:, None], grid, mode="bilinear", align_corners=False)[:, 0] * any_fg[:, None, None]
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
    log_aspect = torch.log(sx.clamp(min=1e-3) / sy.clamp(min=1e-3)) * any_fg
    size = (area / (h * h)).sqrt() * 2
    geo = torch.stack(
        [cx * 2, cy * 2, sdx * 4, sdy * 4, size, area / box_area * any_fg, sx, sy, log_aspect], dim=1
    )
    return crop, geo

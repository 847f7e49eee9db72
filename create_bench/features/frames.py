"""The frame input every frozen per-frame encoder checks (layer 3)."""

from __future__ import annotations

from typing import Any

import torch

from create_bench.errors import ModelError


def check_frames(frames: Any) -> torch.Tensor:
    if not isinstance(frames, torch.Tensor):
        frames = torch.as_tensor(frames)
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ModelError(f"ALWIG expects frames as uint8 [B, T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ModelError(f"ALWIG expects uint8 frames, got {frames.dtype}")
    return frames

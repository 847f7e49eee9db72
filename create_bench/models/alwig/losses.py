"""ALWIG's alignment loss and the process group it is computed over.

:class:`World` gathers embeddings across processes with gradients; :func:`contrastive_loss` is
the symmetric contrastive loss over the global batch, scaled so that DDP's gradient average
equals the single-process gradient of the whole global batch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the gradients from every rank (works on gloo: no reduce_scatter)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.n = rank, x.shape[0]
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


class World:
    """Who else computes this global batch: size 1 locally, or the initialised process group."""

    def __init__(self, distributed: bool | None = None):
        if distributed is None:
            distributed = dist.is_available() and dist.is_initialized()
        self.distributed = bool(distributed)
        self.size = dist.get_world_size() if self.distributed else 1
        self.rank = dist.get_rank() if self.distributed else 0

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``x`` (equal shapes), differentiable."""
        return _GatherWithGrad.apply(x) if self.distributed else x

    def gather_nograd(self, x: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return x
        parts = [torch.empty_like(x) for _ in range(self.size)]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return x
        x = x.detach().clone()
        dist.all_reduce(x)
        return x


def contrastive_loss(
    video: torch.Tensor,
    text: torch.Tensor,
    logit_scale: torch.Tensor,
    keys: torch.Tensor,
    world: World | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between row-aligned ``video`` [B, E] and ``text`` [B, E] (L2-normalised).

    ``keys`` [B] identify text strings: pairs with equal keys are all positives (soft targets), so a
    caption that two videos share never counts as a negative. Under DDP the rows are this rank's
    share of the global batch; the columns are the whole global batch, and the loss is the mean over
    this rank's rows, so the ranks' average is the global loss.
    """
    world = world or World(False)
    all_video, all_text = world.gather(video), world.gather(text)
    all_keys = world.gather_nograd(keys)
    targets = (keys[:, None] == all_keys[None, :]).float()
    targets = targets / targets.sum(dim=1, keepdim=True)
    v2t = logit_scale * video @ all_text.t()
    t2v = logit_scale * text @ all_video.t()
    loss_v2t = -(targets * F.log_softmax(v2t, dim=1)).sum(dim=1).mean()
    loss_t2v = -(targets * F.log_softmax(t2v, dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_v2t + loss_t2v)

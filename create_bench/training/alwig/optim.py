"""The optimiser (AdamW with parameter groups) and the learning-rate schedule (warm-up, cosine)."""

from __future__ import annotations

import math

import torch

from create_bench.models.alwig.config import ALWIGConfig


def make_optimizer(net: torch.nn.Module, cfg: ALWIGConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, embeddings and the logit scale; ``gpt_lr`` for GPT-2."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = (
            p.dim() < 2 or "embed" in name or name.endswith((".wte.weight", ".wpe.weight")) or "_pos" in name
        )
        is_gpt = name.startswith("gpt.")
        groups.setdefault((no_decay, is_gpt), []).append(p)
    gpt_lr = cfg.gpt_lr if cfg.gpt_lr else cfg.lr
    params = [
        {"params": ps, "weight_decay": 0.0 if nd else cfg.weight_decay, "lr": gpt_lr if g else cfg.lr}
        for (nd, g), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def make_scheduler(
    opt: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(round(total_steps * warmup_ratio)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)

"""Validation (the training objective, recalls and a selection score on the validation split) and
model selection: the best epoch's weights become the checkpoint (never selected on test)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from create_bench.models.alwig.bundle import ALWIG
from create_bench.training.alwig.features import SplitData

if TYPE_CHECKING:
    from create_bench.training.alwig.context import RunContext

log = logging.getLogger(__name__)


@torch.no_grad()
def validate(bundle: ALWIG, data: SplitData, batch_size: int = 128, gen_refs: int = 2) -> dict[str, float]:
    """Validation loss (the training objective over the whole split), recalls and a selection score.

    ``loss`` = align_weight * contrastive + gen_weight * generation, where the contrastive part
    compares every video with every reference of the split (identical texts are positives of each
    other) and the generation part is the token-mean cross-entropy of the first ``gen_refs``
    references of each video (teacher forcing costs a GPT-2 pass per reference; a few suffice).
    """
    net, cfg = bundle.net, bundle.cfg
    was_training = net.training
    net.eval()
    video, hidden, mask, tag_ids, tag_chars = _video_side(bundle, data, batch_size)
    out: dict[str, float] = {}
    align_total, gen_total, wsum = 0.0, 0.0, 0.0
    weights = {"caption": cfg.caption_weight, "title": cfg.title_weight}
    for kind, refs in (("caption", data.captions), ("title", data.titles)):
        texts = [t for r in refs for t in r]
        owner = torch.tensor([i for i, r in enumerate(refs) for _ in r], dtype=torch.long)
        if not texts:
            continue
        temb = bundle.encode_texts(texts).to(bundle.device)
        keys = bundle.key_tensor(texts).cpu()
        sim = (temb @ video.t()).float().cpu()  # [texts, videos]
        # positives: the owner video, and any video that has the same text among its references
        pos = torch.zeros_like(sim, dtype=torch.bool)
        pos[torch.arange(len(texts)), owner] = True
        same = keys[:, None] == keys[None, :]
        pos |= (same.float() @ F.one_hot(owner, len(data)).float()) > 0
        scale = float(net.scale())
        t2v = -(torch.log_softmax(scale * sim, dim=1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
        v2t = (
            -(torch.log_softmax(scale * sim.t(), dim=1) * pos.t() / pos.t().sum(1, keepdim=True))
            .sum(1)
            .mean()
        )
        align = float(0.5 * (t2v + v2t))
        # recalls (R@1/5/10): t2v rank of the owner video; v2t best rank of any own text
        order_rank_t2v = (sim > sim[torch.arange(len(texts)), owner][:, None]).sum(1) + 1
        best_own = torch.full((len(data),), -math.inf).scatter_reduce(
            0, owner, sim[torch.arange(len(texts)), owner], "amax"
        )
        rank_v2t = (sim.t() > best_own[:, None]).sum(1) + 1
        for k in (1, 5, 10):
            out[f"t2v_{kind}_R@{k}"] = float((order_rank_t2v <= k).float().mean() * 100)
            out[f"v2t_{kind}_R@{k}"] = float((rank_v2t <= k).float().mean() * 100)
        # generation cross-entropy over the first gen_refs references of every video
        gtexts = [t for r in refs for t in r[:gen_refs]]
        gowner = torch.tensor([i for i, r in enumerate(refs) for _ in r[:gen_refs]], dtype=torch.long)
        tok_loss, tok_n = 0.0, 0
        for i in range(0, len(gtexts), batch_size):
            seqs = bundle.seq_tensor(gtexts[i : i + batch_size], kind)
            losses, tmask = net.gen_losses(
                hidden, mask, seqs, gowner[i : i + batch_size].to(bundle.device), tag_ids, tag_chars
            )
            tok_loss += float(losses.sum())
            tok_n += int(tmask.sum())
        gen = tok_loss / max(1, tok_n)
        out[f"align_{kind}"], out[f"gen_{kind}"] = align, gen
        align_total += weights[kind] * align
        gen_total += weights[kind] * gen
        wsum += weights[kind]
    wsum = wsum or 1.0
    use_align = cfg.use_align and cfg.align_weight > 0
    out["align"], out["gen"] = align_total / wsum, gen_total / wsum
    out["loss"] = (cfg.align_weight * out["align"] if use_align else 0.0) + cfg.gen_weight * out["gen"]
    # score (higher is better): mean recall@{1,5,10} over the four directions (0..1) and the mean
    # per-character likelihood exp(-CE) of the references; retrieval counts only when trained.
    kinds = [k for k in ("caption", "title") if f"gen_{k}" in out]
    gen_part = sum(math.exp(-out[f"gen_{k}"]) for k in kinds) / max(1, len(kinds))
    recalls = [v for k, v in out.items() if "_R@" in k]
    ret_part = sum(recalls) / (100.0 * len(recalls)) if recalls else 0.0
    out["score"] = 0.5 * (ret_part + gen_part) if use_align else gen_part
    net.train(was_training)
    return out


@torch.no_grad()
def _video_side(bundle: ALWIG, data: SplitData, batch_size: int) -> tuple[Any, Any, Any, Any, Any]:
    """Every video of the split through the alignment module: (video embeddings, aligned tokens,
    their mask, tag ids, tag characters or None)."""
    net = bundle.net
    hid, msk, vemb, tid, tch = [], [], [], [], []
    for i in range(0, len(data), batch_size):
        rows = list(range(i, min(i + batch_size, len(data))))
        tags = [data.tags[r] for r in rows]
        tid.append(bundle.tag_tensor(tags))
        chars = bundle.tag_char_tensor(tags)
        h, m = net.align_tokens(
            data.feats[rows].to(bundle.device), data.mask[rows].to(bundle.device), tid[-1]
        )
        hid.append(h)
        msk.append(m)
        vemb.append(net.video_embed(h, chars))
        if chars is not None:
            tch.append(chars)
    tag_chars = torch.cat(tch) if tch else None
    return torch.cat(vemb), torch.cat(hid), torch.cat(msk), torch.cat(tid), tag_chars


def select_on_validation(ctx: RunContext, phase: str, epoch: int, step: int) -> None:
    """Score the model on validation after ``epoch`` (0-based) and keep its weights when they are
    the best so far (rank 0 only: the other ranks hold no validation split)."""
    cfg, state = ctx.cfg, ctx.state
    assert ctx.bundle is not None and ctx.logger is not None
    val = validate(ctx.bundle, ctx.splits["validation"])
    # the selection value, oriented so that lower is better
    sel = val["loss"] if cfg.select_metric == "loss" else -val["score"]
    better = state["best_loss"] is None or sel < state["best_loss"]
    if better:
        state["best_loss"], state["best_epoch"] = sel, epoch + 1
        ctx.best_state = {k: v.detach().cpu().clone() for k, v in ctx.net.state_dict().items()}
    ctx.logger.write({"phase": phase, "epoch": epoch + 1, "step": step, "val": val, "best": better})
    log.info(
        "alwig: epoch %d validation score %.4f, loss %.4f (align %.3f, gen %.3f)%s",
        epoch + 1,
        val["score"],
        val["loss"],
        val["align"],
        val["gen"],
        " *" if better else "",
    )

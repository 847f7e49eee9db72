"""Model selection on the validation split (never test): the retriever by its recalls, the generator
by the references' token cross-entropy given what the retriever finds for each validation video."""

from __future__ import annotations

import math

import torch

from create_bench.models.rcg.bundle import KINDS, RCG
from create_bench.training.alwig.features import SplitData
from create_bench.training.rcg.batches import refs, retrieve_split


@torch.no_grad()
def retriever_score(bundle: RCG, data: SplitData, batch_size: int = 256) -> dict[str, float]:
    """Recalls (R@1, R@5, x100) both ways for titles and captions, and ``score``, their mean."""
    video = torch.cat(
        [
            bundle.video_embed(
                data.feats[i : i + batch_size], data.mask[i : i + batch_size], data.tags[i : i + batch_size]
            )
            for i in range(0, len(data), batch_size)
        ]
    ).cpu()
    out: dict[str, float] = {}
    for kind in KINDS:
        texts = [t for r in refs(data, kind) for t in r]
        owner = torch.tensor([i for i, r in enumerate(refs(data, kind)) for _ in r], dtype=torch.long)
        if not texts:
            continue
        sim = bundle.encode_texts(texts) @ video.t()  # [texts, videos]
        own = sim[torch.arange(len(texts)), owner]
        t2v = (sim > own[:, None]).sum(1) + 1
        best = torch.full((len(data),), -math.inf).scatter_reduce(0, owner, own, "amax")
        v2t = (sim.t() > best[:, None]).sum(1) + 1
        for k in (1, 5):
            out[f"t2v_{kind}_R@{k}"] = float((t2v <= k).float().mean() * 100)
            out[f"v2t_{kind}_R@{k}"] = float((v2t <= k).float().mean() * 100)
    out["score"] = sum(out.values()) / max(1, len(out))
    return out


@torch.no_grad()
def generator_loss(bundle: RCG, data: SplitData, gen_refs: int = 2, batch_size: int = 64) -> dict[str, float]:
    """Token-mean cross-entropy of the first ``gen_refs`` references of every video, per kind and
    overall (``loss``, lower is better); retrieval from the training corpus as at test time."""
    net = bundle.net
    retrieved = retrieve_split(bundle, data, bundle.cfg.k)
    out: dict[str, float] = {}
    total, count = 0.0, 0
    for kind in KINDS:
        pairs = [(i, t) for i, r in enumerate(refs(data, kind)) for t in r[:gen_refs]]
        k_loss, k_n = 0.0, 0
        for s in range(0, len(pairs), batch_size):
            chunk = pairs[s : s + batch_size]
            idx = [i for i, _ in chunk]
            tags = bundle.tag_tensor([data.tags[i] for i in idx])
            video, vmask = net.video_states(
                data.feats[idx].to(bundle.device), data.mask[idx].to(bundle.device), tags
            )
            mem = net.generator.memory(video, vmask, bundle.sent_tensor([retrieved[kind][i] for i in idx]))
            seq = bundle.seq_tensor([t for _, t in chunk], kind)
            nll = net.generator.token_nll(seq[:, :-1], seq[:, 1:], mem)
            k_loss += float(nll.sum())
            k_n += int((seq[:, 1:] != bundle.tokenizer.pad_id).sum())
        out[f"gen_{kind}"] = k_loss / max(1, k_n)
        total, count = total + k_loss, count + k_n
    out["loss"] = total / max(1, count)
    return out

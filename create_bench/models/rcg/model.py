"""The RCG network: a video-text dual-encoder retriever and a copy-generate decoder.

After "Open-book Video Captioning with Retrieve-Copy-Generate Network" (CVPR 2021); no public code
exists, so this is a reconstruction at small sizes:

- **Video encoder** (:class:`VideoEncoder`): a Transformer over ``[CLS] ; frames ; tags`` (frozen
  frame features standardised and projected; each tag the mean of its characters' embeddings).
- **Retriever** (:class:`Retriever`): that video encoder and a character Transformer text encoder,
  each pooled ([CLS] + mean) and projected into one L2-normalised space, trained with a symmetric
  InfoNCE loss (ALWIG's :func:`~create_bench.models.alwig.losses.contrastive_loss`). It ranks the
  training corpus's sentences for a video and also answers the retrieval task.
- **Generator** (:class:`CopyGenerator`): the retriever's video token states (frozen, projected); each of the ``k`` retrieved
  sentences encoded by a sentence encoder (character Transformer + a rank embedding); a
  Transformer decoder over the characters attends over the video tokens and every retrieved
  sentence's tokens. Each step has a vocabulary distribution, one pointer per retrieved sentence
  (attention over that sentence's characters, i.e. a copy distribution) and a gate, a softmax over
  ``k + 1`` sources, that mixes them (:func:`mix_distributions`). ``k = 0`` is the generator alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from create_bench.errors import ModelError
from create_bench.models.alwig.extensions import masked_mean
from create_bench.models.alwig.losses import World, contrastive_loss
from create_bench.models.rcg.config import RCGConfig

__all__ = ["CopyGenerator", "Memory", "RCGNet", "Retriever", "VideoEncoder", "mix_distributions"]


def _encoder(cfg: RCGConfig, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        cfg.d_model,
        cfg.num_heads,
        cfg.ffn_size,
        cfg.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def mix_distributions(
    p_vocab: torch.Tensor, attn: torch.Tensor, ids: torch.Tensor, gate: torch.Tensor
) -> torch.Tensor:
    """The copy-generate output distribution.

    Args:
        p_vocab: ``[..., V]`` the decoder's vocabulary distribution.
        attn: ``[..., k, L]`` each pointer's attention over its sentence's positions (rows sum to 1).
        ids: ``[..., k, L]`` the character id at each position (broadcast to ``attn``'s shape).
        gate: ``[..., k + 1]`` mixing weights (sum to 1): the vocabulary first, then the k pointers.

    Returns:
        ``gate[0] * p_vocab + sum_i gate[i] * copy_i``, copy_i putting pointer i's attention on the
        ids it attends to: a distribution whenever the inputs are.
    """
    ids = ids.expand(attn.shape)
    weights = gate[..., 1:, None] * attn
    copy = torch.zeros_like(p_vocab).scatter_add(-1, ids.flatten(-2), weights.flatten(-2))
    return gate[..., :1] * p_vocab + copy


class VideoEncoder(nn.Module):
    """``[CLS] ; frames ; tags`` -> token states ``[B, 1 + T + max_tags, d]`` and their mask."""

    def __init__(self, cfg: RCGConfig, feature_dim: int, num_frames: int, char_embed: nn.Embedding):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.char_embed = char_embed
        self.frame_proj = nn.Sequential(nn.Linear(feature_dim, d), nn.LayerNorm(d))
        self.frame_pos = nn.Embedding(num_frames, d)
        self.type_embed = nn.Embedding(3, d)  # [CLS], frame, tag
        self.tag_norm = nn.LayerNorm(d)
        self.encoder = _encoder(cfg, cfg.video_layers)
        self.out_norm = nn.LayerNorm(d)
        for emb in (self.frame_pos, self.type_embed):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(
        self, feats: torch.Tensor, frame_mask: torch.Tensor, tag_chars: torch.Tensor, pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats`` [B, T, F] (standardised), ``frame_mask`` [B, T], ``tag_chars`` [B, K, C]."""
        b, t, _ = feats.shape
        x_f = (
            self.frame_proj(feats)
            + self.frame_pos(torch.arange(t, device=feats.device))
            + self.type_embed.weight[1]
        )
        valid_chars = tag_chars != pad_id
        tag_valid = valid_chars.any(-1)
        if not self.cfg.use_tags:
            tag_valid = torch.zeros_like(tag_valid)
        x_t = (
            self.tag_norm(masked_mean(self.char_embed(tag_chars), valid_chars, dim=2))
            + self.type_embed.weight[2]
        )
        x_c = self.type_embed.weight[0].expand(b, 1, -1)
        x = torch.cat([x_c, x_f, x_t], dim=1)
        ones = torch.ones(b, 1, dtype=torch.bool, device=feats.device)
        mask = torch.cat([ones, frame_mask.bool(), tag_valid], dim=1)
        return self.out_norm(self.encoder(x, src_key_padding_mask=~mask)), mask


class TextEncoder(nn.Module):
    """``[CLS] chars`` ids ``[N, S]`` -> token states ``[N, S, d]`` and the mask (ids != pad)."""

    def __init__(self, cfg: RCGConfig, char_embed: nn.Embedding, layers: int):
        super().__init__()
        self.char_embed = char_embed
        self.pos = nn.Embedding(cfg.max_text_len + 1, cfg.d_model)
        self.encoder = _encoder(cfg, layers)
        self.out_norm = nn.LayerNorm(cfg.d_model)
        nn.init.normal_(self.pos.weight, std=0.02)

    def forward(
        self, ids: torch.Tensor, pad_id: int, extra: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mask = ids != pad_id
        x = self.char_embed(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        if extra is not None:
            x = x + extra
        return self.out_norm(self.encoder(x, src_key_padding_mask=~mask)), mask


def _pool(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[CLS] state plus the mean of the valid states."""
    return h[:, 0] + masked_mean(h, mask)


class Retriever(nn.Module):
    """The video-text dual encoder."""

    def __init__(self, cfg: RCGConfig, feature_dim: int, num_frames: int, vocab_size: int, pad_id: int):
        super().__init__()
        self.cfg, self.pad_id = cfg, pad_id
        self.char_embed = nn.Embedding(vocab_size, cfg.d_model, padding_idx=pad_id)
        nn.init.normal_(self.char_embed.weight, std=0.02)
        self.video = VideoEncoder(cfg, feature_dim, num_frames, self.char_embed)
        self.text = TextEncoder(cfg, self.char_embed, cfg.text_layers)
        self.video_proj = nn.Linear(cfg.d_model, cfg.embed_dim)
        self.text_proj = nn.Linear(cfg.d_model, cfg.embed_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))

    def video_embed(self, feats: torch.Tensor, mask: torch.Tensor, tag_chars: torch.Tensor) -> torch.Tensor:
        h, m = self.video(feats, mask, tag_chars, self.pad_id)
        return F.normalize(self.video_proj(_pool(h, m)), dim=-1)

    def text_embed(self, ids: torch.Tensor) -> torch.Tensor:
        h, m = self.text(ids, self.pad_id)
        return F.normalize(self.text_proj(_pool(h, m)), dim=-1)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)


@dataclass
class Memory:
    """What the decoder reads for a batch of videos (rows may be repeated for beams)."""

    states: torch.Tensor  # [B, M, d]: video tokens, then every sentence's tokens
    mask: torch.Tensor  # [B, M]
    sent_states: torch.Tensor  # [B, k, L, d]
    sent_ids: torch.Tensor  # [B, k, L] character ids ([CLS] at 0)
    sent_valid: torch.Tensor  # [B, k, L] positions a pointer may attend to (characters only)

    def select(self, index: torch.Tensor) -> Memory:
        return Memory(
            *(x[index] for x in (self.states, self.mask, self.sent_states, self.sent_ids, self.sent_valid))
        )


class CopyGenerator(nn.Module):
    """The copy-generate decoder with one pointer per retrieved sentence and a gate."""

    def __init__(self, cfg: RCGConfig, vocab_size: int, pad_id: int):
        super().__init__()
        d = cfg.d_model
        self.cfg, self.pad_id = cfg, pad_id
        self.char_embed = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        nn.init.normal_(self.char_embed.weight, std=0.02)
        # The video side is the retriever's video encoder (trained first, frozen here): its token
        # states, mapped by a trainable projection, are what the decoder attends to.
        self.video_in = nn.Sequential(nn.Linear(d, d), nn.LayerNorm(d))
        self.sentences = TextEncoder(cfg, self.char_embed, cfg.sentence_layers)
        self.rank_embed = nn.Embedding(max(cfg.k, 1), d)
        self.dec_pos = nn.Embedding(cfg.max_text_len + 2, d)
        layer = nn.TransformerDecoderLayer(
            d, cfg.num_heads, cfg.ffn_size, cfg.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(layer, cfg.decoder_layers)
        self.dec_norm = nn.LayerNorm(d)
        self.out_bias = nn.Parameter(torch.zeros(vocab_size))
        self.ptr_query = nn.Linear(d, d)
        self.ptr_key = nn.Linear(d, d)
        self.gate_vocab = nn.Linear(d, 1)
        self.gate_copy = nn.Linear(2 * d, 1)
        for emb in (self.rank_embed, self.dec_pos):
            nn.init.normal_(emb.weight, std=0.02)
        nn.init.constant_(self.gate_copy.bias, cfg.copy_bias)

    def memory(self, video: torch.Tensor, vmask: torch.Tensor, sent_ids: torch.Tensor) -> Memory:
        """The decoder's memory: the video token states ``[B, P, d]`` (the retriever's video
        encoder, :meth:`RCGNet.video_states`) with their mask, and the retrieved sentences
        ``sent_ids`` [B, k, L] (``[CLS] chars``), encoded here."""
        video = self.video_in(video)
        b, k, seq = sent_ids.shape
        if k != self.cfg.k:
            raise ModelError(f"RCG generator was built for k = {self.cfg.k} retrieved sentences, got {k}")
        if k == 0:
            d = video.shape[-1]
            empty = video.new_zeros(b, 0, seq, d)
            no = torch.zeros(b, 0, seq, dtype=torch.bool, device=video.device)
            return Memory(video, vmask, empty, sent_ids, no)
        rank = self.rank_embed(torch.arange(k, device=video.device))[None, :, None, :].expand(b, k, seq, -1)
        flat, fmask = self.sentences(sent_ids.flatten(0, 1), self.pad_id, rank.flatten(0, 1))
        sent = flat.view(b, k, seq, -1)
        smask = fmask.view(b, k, seq)
        valid = smask.clone()
        valid[..., 0] = False  # the [CLS] slot is read by the decoder, never copied
        states = torch.cat([video, sent.flatten(1, 2)], dim=1)
        return Memory(states, torch.cat([vmask, smask.flatten(1)], dim=1), sent, sent_ids, valid)

    def decode(self, inputs: torch.Tensor, mem: Memory) -> torch.Tensor:
        """Decoder states ``[B, S, d]`` of ``inputs`` ``[B, S]`` (task token, characters)."""
        s = inputs.shape[1]
        if s > self.cfg.max_text_len + 2:
            raise ModelError(f"RCG decodes at most {self.cfg.max_text_len + 2} positions, got {s}")
        x = self.char_embed(inputs) + self.dec_pos(torch.arange(s, device=inputs.device))
        causal = torch.triu(torch.ones(s, s, dtype=torch.bool, device=inputs.device), diagonal=1)
        h = self.decoder(
            x,
            mem.states,
            tgt_mask=causal,
            tgt_key_padding_mask=inputs == self.pad_id,
            memory_key_padding_mask=~mem.mask,
            tgt_is_causal=True,
        )
        return cast(torch.Tensor, self.dec_norm(h))

    def sources(
        self, h: torch.Tensor, mem: Memory
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Log vocabulary distribution ``[B, S, V]``, pointer attentions ``[B, S, k, L]`` and gate
        ``[B, S, k + 1]`` of decoder states ``h`` (None, None when k = 0)."""
        logp = F.log_softmax(F.linear(h, self.char_embed.weight, self.out_bias).float(), dim=-1)
        if self.cfg.k == 0:
            return logp, None, None
        d = h.shape[-1]
        q = self.ptr_query(h)
        keys = self.ptr_key(mem.sent_states)
        scores = torch.einsum("bsd,bkld->bskl", q, keys) / math.sqrt(d)
        valid = mem.sent_valid[:, None]
        attn = torch.softmax(scores.float().masked_fill(~valid, -1e9), dim=-1)
        ctx = torch.einsum("bskl,bkld->bskd", attn.to(h.dtype), mem.sent_states)
        g_copy = self.gate_copy(torch.cat([h[:, :, None].expand_as(ctx), ctx], dim=-1)).squeeze(-1)
        has = mem.sent_valid.any(-1)[:, None].expand_as(g_copy)  # an empty sentence has no pointer
        g_copy = g_copy.float().masked_fill(~has, float("-inf"))
        gate = torch.softmax(torch.cat([self.gate_vocab(h).float(), g_copy], dim=-1), dim=-1)
        return logp, attn, gate

    def token_nll(self, inputs: torch.Tensor, labels: torch.Tensor, mem: Memory) -> torch.Tensor:
        """Negative log-likelihood ``[B, S]`` of ``labels`` under the mixed distribution (0 at [PAD])."""
        h = self.decode(inputs, mem)
        logp, attn, gate = self.sources(h, mem)
        lp_vocab = logp.gather(-1, labels[..., None]).squeeze(-1)
        if attn is None or gate is None:
            nll = -lp_vocab
        else:
            hit = (mem.sent_ids[:, None] == labels[:, :, None, None]) & mem.sent_valid[:, None]
            p_copy = (attn * hit).sum(-1)  # [B, S, k]
            p = gate[..., 0] * lp_vocab.exp() + (gate[..., 1:] * p_copy).sum(-1)
            nll = -torch.log(p.clamp(min=1e-12))
        return nll * (labels != self.pad_id)

    def next_logp(self, inputs: torch.Tensor, mem: Memory) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-probabilities ``[B, V]`` of the next character and the gate ``[B, k + 1]`` (or None)."""
        h = self.decode(inputs, mem)[:, -1:]
        logp, attn, gate = self.sources(h, mem)
        if attn is None or gate is None:
            return logp[:, 0], None
        p = mix_distributions(logp.exp(), attn, mem.sent_ids[:, None], gate)
        return torch.log(p[:, 0].clamp(min=1e-12)), gate[:, 0]


class RCGNet(nn.Module):
    """The trainable part of RCG (the frozen frame encoder lives outside)."""

    def __init__(self, cfg: RCGConfig, feature_dim: int, num_frames: int, vocab_size: int, pad_id: int):
        super().__init__()
        self.cfg, self.feature_dim, self.num_frames, self.pad_id = cfg, feature_dim, num_frames, pad_id
        # Frozen-encoder features are standardised with the training split's statistics (saved).
        self.register_buffer("feat_mean", torch.zeros(feature_dim))
        self.register_buffer("feat_std", torch.ones(feature_dim))
        torch.manual_seed(cfg.seed)
        self.retriever = Retriever(cfg, feature_dim, num_frames, vocab_size, pad_id)
        self.generator = CopyGenerator(cfg, vocab_size, pad_id)

    @torch.no_grad()
    def set_feature_stats(self, feats: torch.Tensor, mask: torch.Tensor) -> None:
        x = feats[mask.bool()].double()
        if x.shape[0] == 0:
            raise ModelError("no frames to compute feature statistics from")
        mean, std = cast(torch.Tensor, self.feat_mean), cast(torch.Tensor, self.feat_std)
        mean.copy_(x.mean(0).to(mean))
        s = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x[0])
        std.copy_(s.clamp(min=1e-3).to(std))

    def standardise(self, feats: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Check the frames' shape, pad them to ``num_frames`` and standardise them."""
        b, t, fd = feats.shape
        if fd != self.feature_dim:
            raise ModelError(f"RCG was built for {self.feature_dim}-dim frame features, got {fd}")
        if t > self.num_frames:
            raise ModelError(f"RCG takes at most {self.num_frames} frames per video, got {t}")
        if t < self.num_frames:
            feats = F.pad(feats, (0, 0, 0, self.num_frames - t))
            mask = F.pad(mask, (0, self.num_frames - t), value=False)
        mean, std = cast(torch.Tensor, self.feat_mean), cast(torch.Tensor, self.feat_std)
        return (feats - mean) / std, mask.bool()

    def video_states(
        self, feats: torch.Tensor, mask: torch.Tensor, tag_chars: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The retriever's video token states (no gradient: the retriever is trained first, alone)
        for the generator, from raw frame features."""
        f, m = self.standardise(feats, mask)
        with torch.no_grad():
            return self.retriever.video(f, m, tag_chars, self.pad_id)

    def retriever_loss(
        self, batch: dict[str, torch.Tensor], world: World | None = None
    ) -> dict[str, torch.Tensor]:
        """InfoNCE of one batch: ``feats``, ``frame_mask``, ``tag_chars`` and per kind
        ``<kind>_text`` [B, S] and ``<kind>_key`` [B] (equal keys: equal texts, both positives)."""
        feats, mask = self.standardise(batch["feats"], batch["frame_mask"])
        video = self.retriever.video_embed(feats, mask, batch["tag_chars"])
        scale = self.retriever.scale()
        out: dict[str, torch.Tensor] = {}
        total = video.new_zeros(())
        kinds = [k for k in ("title", "caption") if f"{k}_text" in batch]
        for kind in kinds:
            text = self.retriever.text_embed(batch[f"{kind}_text"])
            loss = contrastive_loss(video, text, scale, batch[f"{kind}_key"], world)
            out[f"align_{kind}"] = loss.detach()
            total = total + loss / len(kinds)
        out["loss"] = total
        return out

    def generator_loss(
        self, batch: dict[str, torch.Tensor], world: World | None = None
    ) -> dict[str, torch.Tensor]:
        """Token-mean cross-entropy of one batch: ``feats``, ``frame_mask``, ``tag_chars`` and per kind
        ``<kind>_seq`` [B, L] (task token, characters, [EOS]) and ``<kind>_sents`` [B, k, S]."""
        world = world or World(False)
        video, vmask = self.video_states(batch["feats"], batch["frame_mask"], batch["tag_chars"])
        out: dict[str, torch.Tensor] = {}
        total = video.new_zeros(())
        kinds = [k for k in ("title", "caption") if f"{k}_seq" in batch]
        for kind in kinds:
            mem = self.generator.memory(video, vmask, batch[f"{kind}_sents"])
            seq = batch[f"{kind}_seq"]
            nll = self.generator.token_nll(seq[:, :-1], seq[:, 1:], mem)
            n_tok = (seq[:, 1:] != self.pad_id).sum()
            # Token mean over the global batch; times the world size, as DDP averages gradients.
            n_global = world.sum(n_tok.float()).clamp(min=1.0)
            out[f"gen_{kind}"] = (nll.sum() / n_tok.clamp(min=1)).detach()
            total = total + nll.sum() / n_global * world.size / len(kinds)
        out["loss"] = total
        return out

    def forward(
        self, batch: dict[str, torch.Tensor], world: World | None = None, stage: str = "generator"
    ) -> dict[str, torch.Tensor]:
        """The loss of a training stage (``retriever`` or ``generator``), for DDP to wrap."""
        if stage == "retriever":
            return self.retriever_loss(batch, world)
        return self.generator_loss(batch, world)

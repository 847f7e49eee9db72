"""The ALWIG network: tag-driven video-text alignment with GPT-2 generation.

- **Alignment module**: a Transformer encoder over ``[CLS] tag_1 .. tag_k [SEP] ; frame_1 .. frame_T``.
  Tags get token type 0 and tag position embeddings, frames (frozen-encoder vectors projected to the
  hidden size) token type 1 and visual position embeddings ``0..T-1``. Its [CLS] output, projected
  and L2-normalised, is the video embedding. Tags and frames are padded to fixed lengths
  (``max_tags + 2`` and ``num_frames``) so that the prefix layout never depends on the batch.
- **Text encoder**: a character-level Transformer over ``[CLS] + characters``; its [CLS] output,
  projected and L2-normalised, is the text embedding.
- Additions beyond the paper (``cfg.extensions``: per-group frame projections, character bigrams,
  a bag-of-n-grams path, tag characters, a lexical channel, an exact-match channel, a copy
  mechanism) are modules in :mod:`.extensions`; this network creates the ones switched on and
  calls into them at marked hooks (``# extension:``), so with none on it is the paper's model.
- **Alignment loss**: symmetric contrastive loss on cosine similarity times a learned logit scale
  (1 / temperature, clamped to ``max_logit_scale``). Identical texts in a batch count as positives
  of each other (templated captions repeat), so no equal pair is pushed apart.
- **Generator**: a ``GPT2LMHeadModel``; all alignment outputs, projected to its width, form a prefix
  (padded positions masked), followed by a task token ([TITLE] or [CAPTION]) and the characters,
  trained with next-character cross-entropy. Decoding (:mod:`.decoding`, mixed into
  :class:`ALWIGNet`): greedy or beam search, maximum length, no-repeat n-gram.

Distributed training: :class:`~.losses.World` gathers embeddings across processes with gradients,
and the losses are scaled so that DDP's gradient average equals the single-process gradient of the
whole global batch (see :func:`~.losses.contrastive_loss` and :meth:`ALWIGNet.forward`).
``World`` and ``contrastive_loss`` live in :mod:`.losses` and are re-exported here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from create_bench.errors import ModelError
from create_bench.models.alwig import extensions as ext
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.decoding import ALWIGDecoding
from create_bench.models.alwig.extensions import masked_mean
from create_bench.models.alwig.losses import World, contrastive_loss

__all__ = ["ALWIGNet", "VocabInfo", "World", "build_gpt2", "contrastive_loss", "pad_ids"]


@dataclass(frozen=True)
class VocabInfo:
    """The ids the network needs from the character and tag vocabularies."""

    vocab_size: int
    num_tags: int
    pad_id: int
    cls_id: int
    eos_id: int
    task_ids: dict[str, int]
    special_ids: tuple[int, ...]
    #: Character ids of each tag id (empty for special and unknown-tag ids); used with
    #: ``cfg.extensions.tag_chars``.
    tag_chars: tuple[tuple[int, ...], ...] = ()


def _encoder(d: int, heads: int, ffn: int, dropout: float, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        d, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True
    )
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


def build_gpt2(cfg: ALWIGConfig, vocab: VocabInfo) -> nn.Module:
    """A randomly initialised GPT-2 sized by ``cfg`` (the CREATE-sample default)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    prefix = cfg.max_tags + 2 + cfg.num_frames
    gcfg = GPT2Config(
        vocab_size=vocab.vocab_size,
        n_positions=prefix + cfg.max_gen_len + 2,
        n_embd=cfg.gpt_width,
        n_layer=cfg.gpt_layers,
        n_head=cfg.gpt_heads,
        n_inner=4 * cfg.gpt_width,
        activation_function=cfg.gpt_activation,
        resid_pdrop=cfg.dropout,
        embd_pdrop=cfg.dropout,
        attn_pdrop=cfg.dropout,
        bos_token_id=vocab.cls_id,
        eos_token_id=vocab.eos_id,
        pad_token_id=vocab.pad_id,
    )
    return GPT2LMHeadModel(gcfg)


class ALWIGNet(ALWIGDecoding, nn.Module):
    """The trainable part of ALWIG (the frozen frame encoder lives outside)."""

    def __init__(
        self,
        cfg: ALWIGConfig,
        feature_dim: int,
        vocab: VocabInfo,
        gpt: nn.Module | None = None,
        feature_groups: Sequence[int] | None = None,
    ):
        super().__init__()
        self.cfg, self.vocab, self.feature_dim = cfg, vocab, feature_dim
        self.num_tag_tokens = cfg.max_tags + 2
        self.prefix_len = self.num_tag_tokens + cfg.num_frames
        # Modules are created in this order (alignment, text encoder, generator): the random
        # initialisation of a seed, and so every trained checkpoint, depends on it.
        self._build_alignment(feature_groups)
        self._build_text_encoder()
        self._build_generator(gpt)

    def _build_alignment(self, feature_groups: Sequence[int] | None) -> None:
        """The alignment module: frame projection, tag embeddings, the joint encoder."""
        cfg, d, feature_dim = self.cfg, self.cfg.hidden_size, self.feature_dim
        # Frozen-encoder features are standardised per dimension with statistics of the training
        # split (set once by training, saved with the weights): hand-made features mix scales.
        self.register_buffer("feat_mean", torch.zeros(feature_dim))
        self.register_buffer("feat_std", torch.ones(feature_dim))
        # extensions.frame_groups: one linear map + LayerNorm per feature group (sizes from the encoder).
        self.feature_groups = tuple(int(g) for g in feature_groups or (feature_dim,))
        if sum(self.feature_groups) != feature_dim or min(self.feature_groups) < 1:
            raise ModelError(
                f"feature groups {list(self.feature_groups)} do not split {feature_dim} dimensions"
            )
        self.frame_proj = ext.frame_projection(cfg, self.feature_groups, d)  # extension: frame_groups
        self.tag_embed = nn.Embedding(self.vocab.num_tags, d, padding_idx=0)
        self.type_embed = nn.Embedding(2, d)
        self.tag_pos = nn.Embedding(self.num_tag_tokens, d)
        self.frame_pos = nn.Embedding(cfg.num_frames, d)
        self.align_in = nn.Sequential(nn.LayerNorm(d), nn.Dropout(cfg.dropout))
        self.align = _encoder(d, cfg.num_heads, cfg.ffn_size, cfg.dropout, cfg.align_layers)
        self.align_out = nn.LayerNorm(d)
        self.video_proj = nn.Linear(d, cfg.embed_dim)

    def _build_text_encoder(self) -> None:
        """The text encoder (and the extensions that read characters), then the embeddings' init."""
        cfg, vocab, x, d = self.cfg, self.vocab, self.cfg.extensions, self.cfg.hidden_size
        self.char_embed = nn.Embedding(vocab.vocab_size, d, padding_idx=vocab.pad_id)
        # Extensions are created where they always were (the random initialisation stays the same).
        self.bigram_embed = (
            ext.BigramEmbedding(x.text_bigram_buckets, d, vocab.pad_id) if x.text_bigram_buckets else None
        )
        self.text_pos = nn.Embedding(cfg.max_text_len + 1, d)
        self.text_in = nn.Sequential(nn.LayerNorm(d), nn.Dropout(cfg.dropout))
        self.text = _encoder(d, cfg.num_heads, cfg.ffn_size, cfg.dropout, cfg.text_layers)
        self.text_out = nn.LayerNorm(d)
        self.text_proj = nn.Linear(d, cfg.embed_dim)
        self.text_bow = ext.TextBow(d) if x.text_bow else None
        self.tag_char_table = (
            ext.TagCharTable(vocab.tag_chars, vocab.num_tags, vocab.pad_id)
            if x.tag_chars or x.gen_tag_chars
            else None
        )
        self.lexical = ext.LexicalChannel(d, cfg.embed_dim, x.lexical_idf) if x.tag_lexical else None
        # Special ids ([UNK] included: two different unknown characters are not the same word).
        self.register_buffer(
            "special_ids", torch.tensor(vocab.special_ids, dtype=torch.long), persistent=False
        )
        if cfg.uses_char_idf:  # set from the training texts, saved with the weights
            self.register_buffer("char_idf", torch.ones(vocab.vocab_size))
        else:
            self.char_idf = None
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        if self.bigram_embed is not None:
            nn.init.normal_(self.bigram_embed.weight, std=0.02)
        embeddings = (self.tag_embed, self.type_embed, self.tag_pos, self.frame_pos, self.char_embed)
        for emb in (*embeddings, self.text_pos):
            nn.init.normal_(emb.weight, std=0.02)

    def _build_generator(self, gpt: nn.Module | None) -> None:
        """The GPT-2 generator, its prefix projection and the generation-side extensions."""
        cfg, vocab, x, d = self.cfg, self.vocab, self.cfg.extensions, self.cfg.hidden_size
        self.gpt: Any = gpt if gpt is not None else build_gpt2(cfg, vocab)
        gcfg: Any = self.gpt.config
        width = int(gcfg.n_embd)
        self.prefix_proj = nn.Sequential(nn.Linear(d, width), nn.LayerNorm(width))
        self.video_cond = ext.VideoBias(d, width) if x.gen_video_bias else None
        self.tag_char_norm = ext.GenTagChars(width) if x.gen_tag_chars else None
        self.copy = ext.CopyMechanism(width, x.max_tag_chars) if x.copy_tags else None
        n_pos = int(gcfg.n_positions)
        if n_pos < self.prefix_len + cfg.max_gen_len + 2:
            raise ModelError(
                f"GPT-2 has {n_pos} positions, ALWIG needs {self.prefix_len + cfg.max_gen_len + 2} "
                "(prefix + task token + text + [EOS]); lower max_tags/num_frames/max_gen_len"
            )
        if int(gcfg.vocab_size) != vocab.vocab_size:
            raise ModelError(f"GPT-2 vocab size {gcfg.vocab_size} != tokenizer size {vocab.vocab_size}")

    @torch.no_grad()
    def set_feature_stats(self, feats: torch.Tensor, mask: torch.Tensor) -> None:
        """Per-dimension mean and std of the real frames ``feats[mask]`` (std floored at 1e-3)."""
        x = feats[mask.bool()].double()
        if x.shape[0] == 0:
            raise ModelError("no frames to compute feature statistics from")
        mean, std_buf = self._feature_stats()
        mean.copy_(x.mean(0).to(mean))
        std = x.std(0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x[0])
        std_buf.copy_(std.clamp(min=1e-3).to(std_buf))

    @torch.no_grad()
    def set_char_idf(self, doc_freq: torch.Tensor, num_docs: int) -> None:
        """``char_idf`` = log((1 + N) / (1 + df)) + 1 per token id (``doc_freq`` [vocab_size]: in how
        many of the N training texts each token occurs)."""
        if self.char_idf is None:
            raise ModelError("set_char_idf needs extensions tag_lexical and lexical_idf, or exact_match")
        if tuple(doc_freq.shape) != tuple(self.char_idf.shape):
            raise ModelError(f"doc_freq must be [{self.char_idf.shape[0]}], got {list(doc_freq.shape)}")
        idf = torch.log((1.0 + num_docs) / (1.0 + doc_freq.double())) + 1.0
        self.char_idf.copy_(idf.to(self.char_idf))

    def _feature_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        return cast(torch.Tensor, self.feat_mean), cast(torch.Tensor, self.feat_std)

    # ----------------------------------------------------------------------------------- alignment
    def align_tokens(
        self, feats: torch.Tensor, frame_mask: torch.Tensor, tag_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the alignment module.

        Args:
            feats: float [B, T, feature_dim] per-frame vectors, T <= num_frames.
            frame_mask: bool [B, T], True for real frames.
            tag_ids: long [B, max_tags + 2], ``[CLS] tags [SEP]`` padded with 0.

        Returns:
            hidden [B, prefix_len, hidden_size] and its validity mask [B, prefix_len] (bool).
        """
        b, t, fd = feats.shape
        if fd != self.feature_dim:
            raise ModelError(f"ALWIG was built for {self.feature_dim}-dim frame features, got {fd}")
        if t > self.cfg.num_frames:
            raise ModelError(f"ALWIG takes at most {self.cfg.num_frames} frames per video, got {t}")
        if tag_ids.shape != (b, self.num_tag_tokens):
            raise ModelError(f"tag ids must be [{b}, {self.num_tag_tokens}], got {tuple(tag_ids.shape)}")
        if t < self.cfg.num_frames:  # fixed prefix layout: pad frames to num_frames (masked)
            feats = F.pad(feats, (0, 0, 0, self.cfg.num_frames - t))
            frame_mask = F.pad(frame_mask, (0, self.cfg.num_frames - t), value=False)
        if not self.cfg.use_tags:  # ablation: the tag side keeps only [CLS] [SEP]
            tag_ids = torch.zeros_like(tag_ids)
            tag_ids[:, 0], tag_ids[:, 1] = 1, 2
        dev = feats.device
        tag_mask = tag_ids != 0
        tag_pos = torch.arange(self.num_tag_tokens, device=dev)
        frame_pos = torch.arange(self.cfg.num_frames, device=dev)
        x_tag = self.tag_embed(tag_ids) + self.tag_pos(tag_pos) + self.type_embed.weight[0]
        if self.cfg.extensions.tag_chars and self.tag_char_table is not None:  # extension: tag_chars
            x_tag = x_tag + self.tag_char_table.embed(tag_ids, self._char_inputs)
        mean, std = self._feature_stats()
        x_frame = self.frame_proj((feats - mean) / std)
        x_frame = x_frame + self.frame_pos(frame_pos) + self.type_embed.weight[1]
        x = self.align_in(torch.cat([x_tag, x_frame], dim=1))
        mask = torch.cat([tag_mask, frame_mask.bool()], dim=1)
        h = self.align_out(self.align(x, src_key_padding_mask=~mask))
        return h, mask

    def _char_inputs(self, ids: torch.Tensor) -> torch.Tensor:
        """Character (+ hashed bigram) input embeddings of id rows ``[N, S]``, no positions."""
        x = self.char_embed(ids)
        if self.bigram_embed is not None:  # extension: text_bigram_buckets
            x = x + self.bigram_embed.embed(ids)
        return x

    def _tag_chars(
        self, tag_chars: torch.Tensor | None, b: int, what: str, device: torch.device
    ) -> torch.Tensor:
        want = (b, self.num_tag_tokens, self.cfg.extensions.max_tag_chars)
        return ext.check_tag_chars(tag_chars, want, self.cfg.use_tags, self.vocab.pad_id, what, device)

    def _lexical(self, ids: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The lexical channel of character-id rows ``[N, S]`` (or tag rows ``[N, K, L]``)."""
        assert self.lexical is not None  # extensions.tag_lexical
        return self.lexical(ids, valid, self._char_inputs, cast("torch.Tensor | None", self.char_idf))

    def _exact_match(self, dense: torch.Tensor, ids: torch.Tensor, side: int) -> torch.Tensor:
        x = self.cfg.extensions
        assert self.char_idf is not None  # cfg.uses_char_idf
        return ext.with_exact_match(
            dense,
            ids,
            side,
            weight=x.exact_match,
            dims=x.exact_match_dims,
            char_idf=cast(torch.Tensor, self.char_idf),
            special_ids=cast(torch.Tensor, self.special_ids),
        )

    def video_embed(self, hidden: torch.Tensor, tag_chars: torch.Tensor | None = None) -> torch.Tensor:
        """Video embeddings of alignment outputs; ``tag_chars`` (``[B, max_tags + 2,
        max_tag_chars]``, see ``ALWIG.tag_char_tensor``) feed the lexical and exact-match channels."""
        out = self.video_proj(hidden[:, 0])
        if self.lexical is not None:  # extension: tag_lexical (0 for a video without tags)
            chars = self._tag_chars(tag_chars, hidden.shape[0], "tag_lexical", hidden.device)
            out = out + self._lexical(chars, chars != self.vocab.pad_id)
        out = F.normalize(out, dim=-1)
        if self.cfg.extensions.exact_match > 0:  # extension: exact_match
            chars = self._tag_chars(tag_chars, hidden.shape[0], "exact_match", hidden.device)
            out = self._exact_match(out, chars.flatten(1), side=0)
        return out

    def text_embed(self, text_ids: torch.Tensor) -> torch.Tensor:
        """``text_ids`` long [N, S]: ``[CLS] chars`` padded with [PAD]; returns [N, cfg.embedding_width]."""
        s = text_ids.shape[1]
        if s > self.cfg.max_text_len + 1:
            raise ModelError(f"text ids longer than max_text_len + 1 = {self.cfg.max_text_len + 1}: {s}")
        mask = text_ids != self.vocab.pad_id
        tok = self._char_inputs(text_ids)
        x = tok + self.text_pos(torch.arange(s, device=text_ids.device))
        h = self.text_out(self.text(self.text_in(x), src_key_padding_mask=~mask))
        out = h[:, 0]
        if self.text_bow is not None:  # extension: text_bow
            out = out + self.text_bow.bag(tok, mask)
        out = self.text_proj(out)
        if self.lexical is not None:  # extension: tag_lexical (the characters after [CLS])
            out = out + self._lexical(text_ids[:, 1:], mask[:, 1:])
        out = F.normalize(out, dim=-1)
        if self.cfg.extensions.exact_match > 0:  # extension: exact_match
            out = self._exact_match(out, text_ids[:, 1:], side=1)
        return out

    def bigram_ids(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Hashed (previous, current) character pairs (extension ``text_bigram_buckets``)."""
        if self.bigram_embed is None:
            raise ModelError("bigram_ids needs extensions.text_bigram_buckets > 0")
        return self.bigram_embed.ids(text_ids)

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.cfg.max_logit_scale)

    # ---------------------------------------------------------------------------------- generation
    def _prefix(self, hidden: torch.Tensor, tag_ids: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder prefix: every alignment output projected to the GPT-2 width (with extension
        ``gen_tag_chars`` and ``tag_ids``, plus each tag's characters at its position)."""
        prefix = self.prefix_proj(hidden)
        if self.tag_char_norm is not None and self.cfg.use_tags and tag_ids is not None:
            if tag_ids.shape != (hidden.shape[0], self.num_tag_tokens):
                raise ModelError(
                    f"tag ids must be [{hidden.shape[0]}, {self.num_tag_tokens}], got {tuple(tag_ids.shape)}"
                )
            assert self.tag_char_table is not None  # gen_tag_chars builds it
            chars = self.tag_char_table.chars(tag_ids)
            prefix = self.tag_char_norm.add(prefix, chars, self.gpt.transformer.wte, self.vocab.pad_id)
        return prefix

    def _copy_source(
        self, prefix: torch.Tensor, tag_chars: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The copy mechanism's source (keys, character ids, validity), or None without it."""
        if self.copy is None:
            return None
        # Tags ablated: an all-[PAD] source (not None) keeps the copy parameters in the graph with
        # zero gradients, as DDP without unused-parameter search expects.
        chars = self._tag_chars(tag_chars, prefix.shape[0], "copy_tags", prefix.device)
        return self.copy.source(prefix, chars, self.gpt.transformer.wte, self.vocab.pad_id)

    def _copy_mix(
        self,
        logits: torch.Tensor,
        h: torch.Tensor,
        source: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        assert self.copy is not None  # extensions.copy_tags
        return self.copy.mix(logits, h, source, labels)

    def _cond(self, hidden: torch.Tensor) -> torch.Tensor | None:
        return self.video_cond(hidden[:, 0]) if self.video_cond is not None else None

    def gen_losses(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        seqs: torch.Tensor,
        index: torch.Tensor,
        tag_ids: torch.Tensor | None = None,
        tag_chars: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token cross-entropy of target sequences given the prefixes.

        Args:
            hidden, mask: alignment outputs [B, P, d] and validity [B, P].
            seqs: long [M, L]: ``task chars [EOS]`` padded with [PAD].
            index: long [M]: which video (row of ``hidden``) each sequence belongs to.
            tag_ids: the ``[B, max_tags + 2]`` tag ids given to :meth:`align_tokens` (used with
                ``cfg.extensions.gen_tag_chars``).
            tag_chars: the videos' tag characters ``[B, max_tags + 2, max_tag_chars]`` (the copy
                source of ``cfg.extensions.copy_tags``).

        Returns:
            token losses [M, L-1] (0 at padding) and the target mask [M, L-1].
        """
        inputs, labels = seqs[:, :-1], seqs[:, 1:]
        full_prefix = self._prefix(hidden, tag_ids)
        source = self._copy_source(full_prefix, tag_chars)
        prefix = full_prefix[index]
        cond = self._cond(hidden)
        pmask = mask[index]
        tok = self.gpt.transformer.wte(inputs)
        if cond is not None:
            tok = tok + cond[index][:, None, :]
        in_mask = torch.ones_like(inputs, dtype=torch.bool)
        in_mask[:, 1:] = inputs[:, 1:] != self.vocab.pad_id
        emb = torch.cat([prefix, tok], dim=1)
        attn = torch.cat([pmask, in_mask], dim=1).long()
        pos = torch.arange(emb.shape[1], device=emb.device).expand(emb.shape[0], -1)
        out = self.gpt(
            inputs_embeds=emb,
            attention_mask=attn,
            position_ids=pos,
            logits_to_keep=inputs.shape[1],
            output_hidden_states=source is not None,
        )
        logits = out.logits.float()
        target_mask = labels != self.vocab.pad_id
        if source is None:
            losses = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")
        else:
            h = out.hidden_states[-1][:, -inputs.shape[1] :].float()
            losses = -self._copy_mix(logits, h, tuple(x[index] for x in source), labels)  # type: ignore[arg-type]
        losses = losses * target_mask
        return losses, target_mask

    # --------------------------------------------------------------------------------- training step
    def forward(self, batch: dict[str, torch.Tensor], world: World | None = None) -> dict[str, torch.Tensor]:
        """Losses of one (rank's share of a) training batch.

        ``batch``: ``feats`` [B, T, F], ``frame_mask`` [B, T], ``tag_ids`` [B, max_tags+2], and for each
        kind (title and/or caption): ``<kind>_text`` [B, S] (text encoder ids), ``<kind>_key`` [B]
        (text identity), ``<kind>_seq`` [M, L] (generation targets) and optionally
        ``<kind>_gen_index`` [M] (the videos those targets belong to; absent = all B, in order).

        The returned ``loss`` is scaled for DDP: the mean over ranks of the per-rank losses is the
        loss of the global batch, and the gradient average DDP computes is its gradient.
        """
        world = world or World(False)
        cfg = self.cfg
        hidden, mask = self.align_tokens(batch["feats"], batch["frame_mask"], batch["tag_ids"])
        kinds = [k for k in ("caption", "title") if f"{k}_seq" in batch]
        weights = {"caption": cfg.caption_weight, "title": cfg.title_weight}
        wsum = sum(weights[k] for k in kinds) or 1.0
        out: dict[str, torch.Tensor] = {}
        zero = hidden.new_zeros(())
        align = zero
        if cfg.use_align and cfg.align_weight > 0:
            video = self.video_embed(hidden, batch.get("tag_chars"))
            scale = self.scale()
            for k in kinds:
                lk = contrastive_loss(
                    video, self.text_embed(batch[f"{k}_text"]), scale, batch[f"{k}_key"], world
                )
                out[f"align_{k}"] = lk.detach()
                align = align + weights[k] / wsum * lk
        gen = zero
        if cfg.gen_weight > 0:
            b = hidden.shape[0]
            for k in kinds:
                seqs = batch[f"{k}_seq"]
                index = batch.get(f"{k}_gen_index")
                if index is None:  # every video of the batch trains this kind
                    index = torch.arange(b, device=hidden.device)
                if len(index):
                    lk, mk = self.gen_losses(
                        hidden, mask, seqs, index, batch["tag_ids"], batch.get("tag_chars")
                    )
                    lsum, msum = lk.sum(), mk.sum()
                else:  # this rank has no video of this kind; the collective below still runs
                    lsum, msum = hidden.new_zeros(()), torch.zeros((), dtype=torch.long, device=hidden.device)
                # Token mean over the *global* batch: sum here, divide by the global count, times
                # the world size because DDP averages the ranks' gradients.
                n_global = world.sum(msum.to(torch.float32)).clamp(min=1.0)
                part = lsum / n_global * world.size
                out[f"gen_{k}"] = (lsum / msum.clamp(min=1)).detach()
                gen = gen + weights[k] / wsum * part
        out["align"], out["gen"] = align.detach(), gen.detach()
        out["loss"] = cfg.align_weight * align + cfg.gen_weight * gen
        return out


_masked_mean = masked_mean  # kept for callers of the old name


def pad_ids(rows: Sequence[Sequence[int]], length: int, pad: int) -> torch.Tensor:
    """Right-pad (and cut) id lists to a [len(rows), length] long tensor."""
    out = torch.full((len(rows), length), pad, dtype=torch.long)
    for i, r in enumerate(rows):
        r = list(r)[:length]
        if r:
            out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out

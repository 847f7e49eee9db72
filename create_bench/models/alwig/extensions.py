"""Additions to ALWIG beyond the paper's description, as modules the network calls into.

Every one is off in the paper's model (``ALWIGConfig()``, ``configs/paper.yaml``) and switched on
by the ``extensions:`` block of a config (``configs/sample.yaml`` turns most of them on; the
package README says what each measured on CREATE-sample):

- :class:`GroupedProjection` (``frame_groups``): one linear map + LayerNorm per feature group;
- :class:`BigramEmbedding` (``text_bigram_buckets``): hashed character bigrams added to the text
  encoder's (and the extensions') character inputs;
- :class:`TextBow` (``text_bow``): a bag-of-n-grams path added to the text encoder's [CLS] output;
- :class:`TagCharTable` (``tag_chars``, ``gen_tag_chars``): each tag id's characters, so a tag
  token (or the decoder prefix, :class:`GenTagChars`) gets the mean of its characters' embeddings;
- :class:`LexicalChannel` (``tag_lexical``, ``lexical_idf``): one shared projection of the mean
  character embedding of a text and of a video's tag strings, added to both embeddings;
- :func:`with_exact_match` (``exact_match``): fixed IDF-weighted character bags appended to both
  embeddings;
- :class:`VideoBias` (``gen_video_bias``): the [CLS] output added to every decoder input;
- :class:`CopyMechanism` (``copy_tags``): a pointer over the tags' characters mixed into each
  decoding step.

The modules keep the parameter names the network had when these were inline options
(``bigram_embed``, ``text_bow``, ``copy.*``, ...), so checkpoints written before this split load
unchanged; the lexical channel's two layers moved from ``lex_norm``/``lex_proj`` to
``lexical.norm``/``lexical.proj`` (see :data:`LEGACY_KEYS`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from create_bench.errors import ModelError
from create_bench.models.alwig.config import ALWIGConfig

#: State-dict key prefixes of checkpoints written before the extensions became modules.
LEGACY_KEYS = {"lex_norm.": "lexical.norm.", "lex_proj.": "lexical.proj."}


def rename_legacy_keys(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with pre-``extensions.py`` key names mapped to the current ones."""
    out = {}
    for key, value in state.items():
        for old, new in LEGACY_KEYS.items():
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def masked_mean(x: torch.Tensor, valid: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Mean of ``x`` over ``dim`` where ``valid`` (x without its last axis) is True; 0 where none is.

    ``valid`` may also hold weights (0 = masked; a weighted mean, correct when any non-zero total is
    at least 1, as for counts and IDF weights)."""
    w = valid.unsqueeze(-1).to(x.dtype)
    return (x * w).sum(dim) / w.sum(dim).clamp(min=1.0)


# ------------------------------------------------------------------------------- frame input
class GroupedProjection(nn.Module):
    """``[..., sum(groups)] -> [..., out]``: each consecutive group of input dimensions gets its own
    linear map and LayerNorm, and the results are summed (``frame_groups``)."""

    def __init__(self, groups: Sequence[int], out: int):
        super().__init__()
        self.groups = tuple(groups)
        self.parts = nn.ModuleList(nn.Sequential(nn.Linear(g, out), nn.LayerNorm(out)) for g in self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(x, list(self.groups), dim=-1)
        return torch.stack([part(p) for part, p in zip(self.parts, pieces, strict=True)]).sum(0)


def frame_projection(cfg: ALWIGConfig, groups: Sequence[int], width: int) -> nn.Module:
    """The frame projection: the paper's one linear map, or one per feature group."""
    if cfg.extensions.frame_groups:
        return GroupedProjection(groups, width)
    return nn.Linear(sum(groups), width)


# ------------------------------------------------------------------------------- text inputs
class BigramEmbedding(nn.Embedding):
    """Hashed (previous, current) character pairs (``text_bigram_buckets``): Chinese words are
    mostly two characters, and this lets a shallow encoder see them directly."""

    def __init__(self, buckets: int, width: int, pad_id: int):
        super().__init__(buckets + 1, width, padding_idx=0)
        self.buckets, self.pad_id = buckets, pad_id

    def ids(self, text_ids: torch.Tensor) -> torch.Tensor:
        """Bucket ids 1..buckets of ``text_ids`` [N, S]; 0 at the first position and padding."""
        prev = F.pad(text_ids[:, :-1], (1, 0), value=self.pad_id)
        h = (prev * 1_000_003 + text_ids) % self.buckets + 1
        keep = (text_ids != self.pad_id) & (prev != self.pad_id)
        return torch.where(keep, h, torch.zeros_like(h))

    def embed(self, text_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(self.ids(text_ids))


class TextBow(nn.Linear):
    """Bag-of-n-grams path (``text_bow``, fastText-like): the mean of the character (+ bigram) input
    embeddings after [CLS], projected, to add to the text encoder's [CLS] output."""

    def __init__(self, width: int):
        super().__init__(width, width)

    def bag(self, tok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        body = mask.clone()
        body[:, 0] = False  # [CLS]
        return self(masked_mean(tok, body))


class TagCharTable(nn.Module):
    """Each tag id's character ids (``tag_chars``, ``gen_tag_chars``): a non-persistent
    ``[num_tags, width]`` table built from the vocabularies ([PAD] where a tag has fewer)."""

    def __init__(self, tag_chars: Sequence[Sequence[int]], num_tags: int, pad_id: int):
        super().__init__()
        width = max([len(c) for c in tag_chars] + [1])
        table = torch.full((num_tags, width), pad_id, dtype=torch.long)
        for i, chars in enumerate(tag_chars[:num_tags]):
            table[i, : len(chars)] = torch.as_tensor(chars, dtype=torch.long)
        self.register_buffer("table", table, persistent=False)
        self.pad_id = pad_id

    def chars(self, tag_ids: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, self.table)[tag_ids]

    def embed(
        self, tag_ids: torch.Tensor, char_inputs: Callable[[torch.Tensor], torch.Tensor]
    ) -> torch.Tensor:
        """The mean of each tag's character input embeddings (``char_inputs`` of [N, S] ids),
        [B, K, width], so a tag and the same word in a title or caption start out close."""
        chars = self.chars(tag_ids)  # [B, K, L]
        b, k, n = chars.shape
        flat = chars.reshape(b * k, n)
        return masked_mean(char_inputs(flat), flat != self.pad_id).reshape(b, k, -1)


# ------------------------------------------------------------------------ embedding channels
class LexicalChannel(nn.Module):
    """One projection, shared by both sides, of the layer-normed (IDF-weighted) mean character
    (+ bigram) embedding of a text, or of a video's tag strings (``tag_lexical``)."""

    def __init__(self, width: int, embed_dim: int, idf: bool):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, embed_dim, bias=False)
        self.idf = idf

    def forward(
        self,
        ids: torch.Tensor,
        valid: torch.Tensor,
        char_inputs: Callable[[torch.Tensor], torch.Tensor],
        char_idf: torch.Tensor | None,
    ) -> torch.Tensor:
        """Character-id rows ``[N, S]`` (or tag rows ``[N, K, L]``) -> [N, embed_dim]; 0 for a row
        without characters."""
        if ids.dim() == 3:  # per tag, so no bigram spans two tags
            n, k, n_chars = ids.shape
            x = char_inputs(ids.reshape(n * k, n_chars)).reshape(n, k * n_chars, -1)
            ids, valid = ids.reshape(n, k * n_chars), valid.reshape(n, k * n_chars)
        else:
            x = char_inputs(ids)
        w = valid.to(x.dtype)
        if self.idf and char_idf is not None:  # IDF-weighted mean (every IDF is >= 1)
            w = w * char_idf[ids].to(x.dtype)
        out = self.proj(self.norm(masked_mean(x, w)))
        return out * valid.any(1, keepdim=True).to(out.dtype)


def with_exact_match(
    dense: torch.Tensor,
    ids: torch.Tensor,
    side: int,
    *,
    weight: float,
    dims: int,
    char_idf: torch.Tensor,
    special_ids: torch.Tensor,
) -> torch.Tensor:
    """``[sqrt(1 - w) * dense, sqrt(w) * bag]`` (unit norm, so the dot product of a video and a
    text is (1 - w) x their learned cosine + w x the cosine of their bags) for unit ``dense``
    [N, embed_dim] and character-id rows ``ids`` [N, S] ([PAD] = none; special ids, [UNK]
    included, never count) (``exact_match``).

    The bag is the IDF-weighted character count, hashed into ``dims`` buckets and L2-normalised. A
    row without characters (a video without tags) gets instead a unit vector on a slot of its own
    side (``side`` 0 = video, 1 = text), which matches nothing: its exact-match cosine is 0 with
    every row, as it should be, and its norm stays 1 (the harness normalises rows, which would
    otherwise inflate its learned cosine).
    """
    valid = ~torch.isin(ids, special_ids)
    w_char = char_idf[ids].to(dense.dtype) * valid.to(dense.dtype)
    bag = torch.zeros(ids.shape[0], dims + 2, dtype=dense.dtype, device=dense.device)
    bag.scatter_add_(1, ids % dims, w_char)
    bag[:, dims + side] = (~valid.any(1)).to(dense.dtype)
    return torch.cat([math.sqrt(1.0 - weight) * dense, math.sqrt(weight) * F.normalize(bag, dim=-1)], dim=-1)


# ---------------------------------------------------------------------------------- decoder
class VideoBias(nn.Linear):
    """The [CLS] output, projected, added to every decoder input embedding (``gen_video_bias``), so
    each step sees the video without first learning to attend to the prefix. Starts at zero (a
    large bias drowns the tokens), i.e. as the plain prefix model."""

    def __init__(self, width: int, gpt_width: int):
        super().__init__(width, gpt_width)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)


class GenTagChars(nn.LayerNorm):
    """Tag characters in the decoder prefix (``gen_tag_chars``): each tag position also gets the
    layer-normed mean of the GPT-2 token embeddings of the tag's characters (GPT-2 token embeddings
    are tiny next to the layer-normed prefix, hence the LayerNorm)."""

    def add(self, prefix: torch.Tensor, chars: torch.Tensor, wte: nn.Module, pad_id: int) -> torch.Tensor:
        """``prefix`` [B, P, W] with the tag positions' character means added (``chars`` [B, K, L])."""
        k = chars.shape[1]
        valid = chars != pad_id
        tag_part = masked_mean(wte(chars), valid, dim=2)
        tag_part = self(tag_part) * valid.any(2, keepdim=True).to(tag_part.dtype)
        return torch.cat([prefix[:, :k] + tag_part, prefix[:, k:]], 1)


class CopyMechanism(nn.ModuleDict):
    """Pointer-generator over the characters of the video's tags (``copy_tags``).

    A source character's key reads the character, the one before it in its tag (so the pointer
    can walk along a word), its place in the tag and the alignment output of its tag's slot (which
    tag the video agrees with); a gate decides between generating and copying.
    """

    def __init__(self, width: int, max_tag_chars: int):
        super().__init__(
            {
                "query": nn.Linear(width, width),
                "key": nn.Linear(width, width),
                "prev": nn.Linear(width, width, bias=False),
                "slot": nn.Linear(width, width, bias=False),
                "pos": nn.Embedding(max_tag_chars, width),
                "gate": nn.Linear(width, 1),
            }
        )

    def source(
        self, prefix: torch.Tensor, chars: torch.Tensor, wte: nn.Module, pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys ``[B, S, W]``, character ids ``[B, S]`` and validity ``[B, S]`` of the copy source
        (every tag's characters ``chars`` [B, K, L], S = K * L)."""
        b, k, n_chars = chars.shape
        prev = F.pad(chars[:, :, :-1], (1, 0), value=pad_id)
        src, prev = chars.reshape(b, k * n_chars), prev.reshape(b, k * n_chars)
        pos = torch.arange(n_chars, device=prefix.device).repeat(k)
        key = (
            self["key"](wte(src))
            + self["prev"](wte(prev))
            + self["slot"](prefix[:, :k].repeat_interleave(n_chars, dim=1))
            + self["pos"](pos)
        )
        return key, src, src != pad_id

    def mix(
        self,
        logits: torch.Tensor,
        h: torch.Tensor,
        source: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Pointer-generator log-probabilities: p = g * softmax(logits) + (1 - g) * copy attention
        summed per character, g = sigmoid(gate(h)); g = 1 for a video with no tag characters.

        ``logits`` [N, L, V] and decoder states ``h`` [N, L, W] with the source of each of the N
        rows. Returns log p of ``labels`` [N, L] when given (training), else all of [N, L, V].
        """
        key, src, valid = source
        q = self["query"](h)
        att = torch.einsum("nlw,nsw->nls", q, key) / math.sqrt(q.shape[-1])
        att = att.masked_fill(~valid[:, None, :], -1e9).softmax(-1) * valid[:, None, :]
        g = self["gate"](h).squeeze(-1)
        has = valid.any(-1, keepdim=True)  # [N, 1]
        lg, lc = F.logsigmoid(g), F.logsigmoid(-g)
        lp = F.log_softmax(logits, dim=-1)
        if labels is not None:
            lp_y = lp.gather(-1, labels[..., None]).squeeze(-1)
            p_copy = (att * (src[:, None, :] == labels[..., None])).sum(-1)
            mixed = torch.logaddexp(lg + lp_y, lc + torch.log(p_copy.clamp_min(1e-30)))
            return torch.where(has, mixed, lp_y)
        p_copy = torch.zeros_like(lp).scatter_add_(2, src[:, None, :].expand(-1, lp.shape[1], -1), att)
        mixed = torch.logaddexp(lg[..., None] + lp, lc[..., None] + torch.log(p_copy.clamp_min(1e-30)))
        return torch.where(has[..., None], mixed, lp)


def check_tag_chars(
    tag_chars: torch.Tensor | None,
    want: tuple[int, int, int],
    use_tags: bool,
    pad_id: int,
    what: str,
    device: Any,
) -> torch.Tensor:
    """The tag characters ``want`` = [B, max_tags + 2, max_tag_chars] an extension reads; all [PAD]
    when tags are ablated (nothing to read, match or copy). A missing tensor is an error, not
    silently "no tags"."""
    if not use_tags:
        return torch.full(want, pad_id, dtype=torch.long, device=device)
    if tag_chars is None:
        raise ModelError(f"ALWIG with {what} needs the tag characters (tag_chars / tags=)")
    if tuple(tag_chars.shape) != want:
        raise ModelError(f"tag characters must be {list(want)}, got {list(tag_chars.shape)}")
    return tag_chars

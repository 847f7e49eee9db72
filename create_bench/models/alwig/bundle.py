"""An ALWIG model bundle: config, vocabularies, network and frozen encoder, with checkpoint I/O.

A checkpoint directory holds::

    config.json        format tag, the ALWIGConfig, feature width, encoder signature, GPT-2 config,
                       training summary (written last: its presence means the checkpoint is complete)
    model.safetensors  the network weights (GPT-2 included; the frozen frame encoder is not saved)
    vocab.txt          character vocabulary, one token per line (line number = id)
    tags.txt           tag vocabulary ([PAD] [CLS] [SEP], unknown-tag buckets, tags)
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from create_bench.errors import ConfigError, ModelError
from create_bench.features.encoders import CLIPEncoder, FixedEncoder, build_encoder
from create_bench.fsutil import atomic_path, atomic_write_json
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import ALWIGNet, VocabInfo, pad_ids
from create_bench.models.alwig.tokenizer import CharTokenizer, TagVocab, kept_tags, normalize_text

CHECKPOINT_FORMAT = "alwig-checkpoint"
CHECKPOINT_VERSION = 1


def text_key(text: str) -> int:
    """A 63-bit identity of a normalised text (equal texts are positives of each other)."""
    return (
        int.from_bytes(hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=8).digest(), "big")
        >> 1
    )


def save_weights(module: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """safetensors file of ``module``'s weights (tied GPT-2 embeddings stored once), atomically."""
    from safetensors.torch import save_model

    with atomic_path(path) as tmp:
        save_model(module, str(tmp))


def load_weights(module: torch.nn.Module, path: str | os.PathLike[str]) -> None:
    """Load ``path`` into ``module`` (strict but for the tied lm_head); the key names of
    checkpoints written before the extensions became modules are mapped (``extensions.LEGACY_KEYS``)."""
    from safetensors.torch import load_file

    from create_bench.models.alwig.extensions import rename_legacy_keys

    try:
        state = rename_legacy_keys(load_file(str(path)))
        missing, unexpected = module.load_state_dict(state, strict=False)
    except Exception as exc:  # safetensors/torch raise their own types for corrupt or mismatched files
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = "; ".join(lines[1:3] if len(lines) > 1 else lines)
        more = f" (+{len(lines) - 3} more)" if len(lines) > 3 else ""
        raise ModelError(f"ALWIG weights {path} do not match the config: {detail}{more}") from exc
    # Tied weights (GPT-2's lm_head and wte) are stored once, under either name; anything else
    # missing or extra is a real mismatch.
    own = module.state_dict()
    loaded = {own[k].data_ptr() for k in state if k in own}
    missing = [m for m in missing if own[m].data_ptr() not in loaded]
    if missing or unexpected:
        raise ModelError(
            f"ALWIG weights {path} do not match the config: missing {missing}, unexpected {unexpected}"
        )


#: Row columns the fixed encoder needs next to the frames (their display geometry).
GEOMETRY_COLUMNS = ("width", "height", "rotation")


def display_size(batch: dict[str, Any]) -> np.ndarray:
    """``[B, 2]`` (width, height) each video of a batch is displayed at: the stored size, turned
    by a quarter-turn rotation (decoders return upright frames)."""
    missing = [c for c in GEOMETRY_COLUMNS if c not in batch]
    if missing:
        raise ModelError(
            f"ALWIG's fixed encoder needs the batch columns {', '.join(GEOMETRY_COLUMNS)} (missing "
            f"{', '.join(missing)}): load with make_loader(..., columns=(..., 'width', 'height', 'rotation'))"
        )
    w, h, rot = (np.asarray(batch[c], dtype=np.int64).reshape(-1) for c in GEOMETRY_COLUMNS)
    quarter = (rot % 180) == 90
    return np.stack([np.where(quarter, h, w), np.where(quarter, w, h)], axis=1)


def frame_features(
    encoder: FixedEncoder | CLIPEncoder | None, cfg: ALWIGConfig, batch: dict[str, Any]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame vectors [B, T, F] (CPU) and the frame mask [B, T] of a model-protocol batch.

    ``frames`` go through the frozen ``encoder``; with ``encoder`` None the batch must carry
    precomputed ``features``. A missing ``frame_mask`` means every frame is real; more frames than
    ``cfg.num_frames`` are subsampled evenly.
    """
    if encoder is None:
        if "features" not in batch:
            raise ModelError("ALWIG (encoder=features) needs batch['features'] [B, T, D]")
        feats = torch.as_tensor(batch["features"]).float().cpu()
    else:
        if "frames" not in batch:
            raise ModelError(f"ALWIG (encoder={cfg.encoder}) needs batch['frames'] uint8 [B, T, H, W, 3]")
        if isinstance(encoder, FixedEncoder):
            feats = encoder(batch["frames"], display_size=display_size(batch)).cpu()
        else:
            feats = encoder(batch["frames"]).cpu()
    if feats.dim() != 3:
        raise ModelError(f"frame features must be [B, T, D], got {tuple(feats.shape)}")
    mask = batch.get("frame_mask")
    mask = (
        torch.ones(feats.shape[:2], dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool().cpu()
    )
    if mask.shape != feats.shape[:2]:
        raise ModelError(
            f"frame_mask shape {tuple(mask.shape)} does not match frames {tuple(feats.shape[:2])}"
        )
    if feats.shape[1] > cfg.num_frames:  # more frames than the model was built for: subsample evenly
        idx = torch.linspace(0, feats.shape[1] - 1, cfg.num_frames).round().long()
        feats, mask = feats[:, idx], mask[:, idx]
    return feats, mask


class ALWIG:
    """Everything needed to run ALWIG on a batch of the model protocol."""

    def __init__(
        self,
        cfg: ALWIGConfig,
        tokenizer: CharTokenizer,
        tags: TagVocab,
        net: ALWIGNet,
        encoder: FixedEncoder | CLIPEncoder | None,
    ):
        self.cfg, self.tokenizer, self.tags, self.net, self.encoder = cfg, tokenizer, tags, net, encoder
        self.device = torch.device("cpu")

    # ------------------------------------------------------------------------------- construction
    @staticmethod
    def vocab_info(tokenizer: CharTokenizer, tags: TagVocab) -> VocabInfo:
        return VocabInfo(
            vocab_size=len(tokenizer),
            num_tags=len(tags),
            pad_id=tokenizer.pad_id,
            cls_id=tokenizer.cls_id,
            eos_id=tokenizer.eos_id,
            task_ids=dict(tokenizer.task_ids),
            special_ids=tuple(sorted(tokenizer.special_ids)),
            tag_chars=tuple(tuple(tokenizer.encode(t)) if t in tags.token_to_id else () for t in tags.tokens),
        )

    @classmethod
    def create(
        cls,
        cfg: ALWIGConfig,
        texts: Iterable[str],
        tag_lists: Iterable[Sequence[str]],
        *,
        feature_dim: int | None = None,
        encoder: FixedEncoder | CLIPEncoder | None = None,
    ) -> ALWIG:
        """A freshly initialised model: vocabularies from the training corpus (or ``cfg.gpt_path``)."""
        if encoder is None and cfg.encoder != "features":
            encoder = build_encoder(cfg.encoder, encoder_path=cfg.encoder_path)
        fdim = encoder.dim if encoder is not None else (feature_dim or cfg.feature_dim)
        if fdim is None:
            raise ConfigError("ALWIG with precomputed features needs feature_dim")
        tags = TagVocab.build(tag_lists, min_count=cfg.min_tag_count, buckets=cfg.unk_tag_buckets)
        # Document frequencies of the characters, counted in the same single pass over the corpus
        # (it may be a stream) as the vocabulary, for the lexical channel's IDF weights.
        doc_freq: Counter[str] = Counter()
        num_docs = 0

        def counted(items: Iterable[str]) -> Iterator[str]:
            nonlocal num_docs
            for text in items:
                num_docs += 1
                doc_freq.update(set(normalize_text(text)))
                yield text

        want_idf = cfg.uses_char_idf
        corpus = counted(texts) if want_idf else texts
        gpt = None
        if cfg.gpt_path:
            tokenizer, gpt = load_pretrained_gpt2(cfg.gpt_path)
            if want_idf:
                for _ in corpus:  # the vocabulary came with the GPT-2; count the corpus anyway
                    pass
        else:
            tokenizer = CharTokenizer.build(corpus, min_count=cfg.min_char_count, max_size=cfg.max_vocab)
        torch.manual_seed(cfg.seed)
        groups = encoder.groups if encoder is not None else None
        net = ALWIGNet(cfg, int(fdim), cls.vocab_info(tokenizer, tags), gpt=gpt, feature_groups=groups)
        if want_idf:
            df = torch.zeros(len(tokenizer))
            for ch, n in doc_freq.items():
                ids = tokenizer.encode(ch)
                if len(ids) == 1 and ids[0] != tokenizer.unk_id:
                    df[ids[0]] = max(float(df[ids[0]]), float(n))
            net.set_char_idf(df, num_docs)
        return cls(cfg, tokenizer, tags, net, encoder)

    def to(self, device: str | torch.device) -> ALWIG:
        self.device = torch.device(device)
        self.net.to(self.device)
        if self.encoder is not None:
            self.encoder.to(self.device)
        return self

    # ---------------------------------------------------------------------------------- tensors
    def tag_tensor(self, tag_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        rows = [self.tags.encode(t, self.cfg.max_tags) for t in tag_lists]
        return pad_ids(rows, self.cfg.max_tags + 2, self.tags.pad_id).to(self.device)

    def tag_char_tensor(self, tag_lists: Sequence[Sequence[str]]) -> torch.Tensor | None:
        """Characters of each tag, ``[B, max_tags + 2, max_tag_chars]`` laid out like
        :meth:`tag_tensor` (slot 0 [CLS], tag ``j`` at slot ``j + 1``), padded with the character
        [PAD]; read from the tag strings, so unseen tags keep their characters. None when the
        config reads no tag characters (``cfg.uses_tag_chars``)."""
        cfg = self.cfg
        if not cfg.uses_tag_chars:
            return None
        out = torch.full(
            (len(tag_lists), cfg.max_tags + 2, cfg.extensions.max_tag_chars), self.tokenizer.pad_id
        )
        for r, tags in enumerate(tag_lists):
            for j, tag in enumerate(kept_tags(tags, cfg.max_tags)):
                ids = self.tokenizer.encode(tag, cfg.extensions.max_tag_chars)
                if ids:
                    out[r, j + 1, : len(ids)] = torch.as_tensor(ids)
        return out.to(self.device)

    def text_tensor(self, texts: Sequence[str]) -> torch.Tensor:
        """``[CLS] chars`` for the text encoder, padded to the longest in ``texts``."""
        tok = self.tokenizer
        rows = [[tok.cls_id, *tok.encode(t, self.cfg.max_text_len)] for t in texts]
        return pad_ids(rows, max(len(r) for r in rows), tok.pad_id).to(self.device)

    def seq_tensor(self, texts: Sequence[str], kind: str) -> torch.Tensor:
        """``task chars [EOS]`` generation targets, padded to the longest in ``texts``."""
        tok = self.tokenizer
        rows = [[tok.task_ids[kind], *tok.encode(t, self.cfg.max_gen_len), tok.eos_id] for t in texts]
        return pad_ids(rows, max(len(r) for r in rows), tok.pad_id).to(self.device)

    def key_tensor(self, texts: Sequence[str]) -> torch.Tensor:
        return torch.tensor([text_key(t) for t in texts], dtype=torch.long, device=self.device)

    def frame_features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame vectors [B, T, F] and the frame mask [B, T] of a model-protocol batch."""
        feats, mask = frame_features(self.encoder, self.cfg, batch)
        return feats.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------------------- inference
    @torch.no_grad()
    def align(
        self, feats: torch.Tensor, mask: torch.Tensor, tag_lists: Sequence[Sequence[str]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.align_tokens(feats, mask, self.tag_tensor(tag_lists))

    @torch.no_grad()
    def video_embed(self, hidden: torch.Tensor, tag_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        """Video embeddings [B, cfg.embedding_width] of alignment outputs (``tag_lists``: the tags given to
        :meth:`align`, which the lexical channel reads)."""
        return self.net.video_embed(hidden, self.tag_char_tensor(tag_lists))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            out.append(self.net.text_embed(self.text_tensor(texts[i : i + batch_size])).float().cpu())
        return torch.cat(out) if out else torch.zeros(0, self.cfg.embedding_width)

    @torch.no_grad()
    def generate(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        *,
        beam_size: int | None = None,
        max_len: int | None = None,
        no_repeat_ngram: int | None = None,
        length_penalty: float | None = None,
        tags: Sequence[Sequence[str]] | None = None,
    ) -> list[str]:
        """Titles or captions from alignment outputs (``tags``: the tag lists given to :meth:`align`,
        which ``gen_tag_chars`` and ``copy_tags`` decoders read again; required by ``copy_tags``)."""
        cfg = self.cfg
        beam = cfg.beam_size if beam_size is None else beam_size
        mlen = cfg.max_gen_len if max_len is None else max_len
        ngram = cfg.no_repeat_ngram if no_repeat_ngram is None else no_repeat_ngram
        lp = cfg.length_penalty if length_penalty is None else length_penalty
        tag_ids = None if tags is None else self.tag_tensor(tags)
        chars = None if tags is None else self.tag_char_tensor(tags)
        if beam <= 1:
            ids = self.net.greedy(hidden, mask, kind, mlen, ngram, tag_ids=tag_ids, tag_chars=chars)
        else:
            ids = self.net.beam_search(
                hidden, mask, kind, mlen, beam, ngram, lp, tag_ids=tag_ids, tag_chars=chars
            )
        return [self.tokenizer.decode(s) for s in ids]

    # ------------------------------------------------------------------------------ checkpoints
    def encoder_signature(self) -> str:
        if self.encoder is None:
            return f"features:{self.cfg.feature_set}"
        return self.encoder.signature

    def save(self, out_dir: str | os.PathLike[str], training: dict[str, Any] | None = None) -> None:
        """Write a complete checkpoint (config.json last, so its presence means complete)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_weights(self.net, out / "model.safetensors")
        self.tokenizer.save(out / "vocab.txt")
        self.tags.save(out / "tags.txt")
        atomic_write_json(out / "config.json", self.config_record(training))

    def config_record(self, training: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.cfg.to_dict(),
            "feature_dim": self.net.feature_dim,
            "feature_groups": list(self.net.feature_groups),
            "encoder_signature": self.encoder_signature(),
            "vocab_source": self.tokenizer.source,
            "gpt_config": self.net.gpt.config.to_dict(),
            "params": sum(p.numel() for p in self.net.parameters()),
            "training": training or {},
        }

    @classmethod
    def load(cls, ckpt_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> ALWIG:
        """Load a checkpoint written by :meth:`save` (the frozen encoder is rebuilt from the config)."""
        d = Path(ckpt_dir)
        record = read_record(d)
        cfg = ALWIGConfig.from_dict(record["config"], source=str(d / "config.json"))
        vocab_source = record.get("vocab_source", "corpus")
        tokenizer = CharTokenizer.load(
            d / "vocab.txt", source="corpus" if vocab_source == "corpus" else str(d / "vocab.txt")
        )
        tags = TagVocab.load(d / "tags.txt")
        from transformers import GPT2Config, GPT2LMHeadModel

        gcfg = GPT2Config.from_dict(record["gpt_config"])
        gpt = GPT2LMHeadModel(gcfg)
        net = ALWIGNet(
            cfg,
            int(record["feature_dim"]),
            cls.vocab_info(tokenizer, tags),
            gpt=gpt,
            feature_groups=record.get("feature_groups"),
        )
        load_weights(net, d / "model.safetensors")
        net.eval()
        encoder = (
            build_encoder(cfg.encoder, encoder_path=cfg.encoder_path) if cfg.encoder != "features" else None
        )
        if encoder is not None and encoder.dim != net.feature_dim:
            raise ModelError(
                f"checkpoint {d} expects {net.feature_dim}-dim frame features, encoder gives {encoder.dim}"
            )
        if encoder is not None and record.get("encoder_signature") not in (None, encoder.signature):
            # Same width but another encoder (e.g. a changed CLIP directory): the weights would be
            # meaningless, so say so instead of producing silent garbage.
            raise ModelError(
                f"checkpoint {d} was trained with encoder {record.get('encoder_signature')!r}, "
                f"this install gives {encoder.signature!r}"
            )
        return cls(cfg, tokenizer, tags, net, encoder).to(device)


def read_record(ckpt_dir: str | os.PathLike[str]) -> dict[str, Any]:
    d = Path(ckpt_dir)
    path = d / "config.json"
    if not path.is_file():
        raise ModelError(
            f"no ALWIG checkpoint at {d} (config.json missing); train one with "
            f"`create-bench train alwig --data DIR --out {d}`"
        )
    try:
        record = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if record.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not an ALWIG checkpoint (format {record.get('format')!r})")
    if int(record.get("version", 0)) > CHECKPOINT_VERSION:
        raise ModelError(
            f"{path} has checkpoint version {record.get('version')}, this install reads <= {CHECKPOINT_VERSION}"
        )
    for f in ("model.safetensors", "vocab.txt", "tags.txt"):
        if not (d / f).is_file():
            raise ModelError(f"ALWIG checkpoint {d} lacks {f}")
    return record


def load_pretrained_gpt2(path: str | os.PathLike[str]) -> tuple[CharTokenizer, Any]:
    """A local pretrained Chinese GPT-2 directory: BERT-style ``vocab.txt`` + GPT-2 weights.

    Task tokens missing from the vocabulary are appended and the embedding matrix grows to match.
    """
    p = Path(path)
    if not (p / "vocab.txt").is_file() or not (p / "config.json").is_file():
        raise ConfigError(f"{p} is not a GPT-2 directory with a BERT-style vocab.txt and config.json")
    from transformers import GPT2LMHeadModel

    tokenizer, added = CharTokenizer.from_vocab_file(p / "vocab.txt")
    try:
        gpt = GPT2LMHeadModel.from_pretrained(p)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot load GPT-2 from {p}: {exc}") from exc
    if gpt.config.vocab_size < len(tokenizer) - added:
        raise ConfigError(
            f"{p}: vocab.txt has {len(tokenizer) - added} tokens but GPT-2 only {gpt.config.vocab_size}"
        )
    if gpt.config.vocab_size != len(tokenizer):
        gpt.resize_token_embeddings(len(tokenizer))
    return tokenizer, gpt

"""An RCG model bundle: config, vocabulary, network, frozen frame encoder and the retrieval corpus,
with checkpoint I/O.

A checkpoint directory holds::

    config.json        format tag, the RCGConfig, the frame fields it read, feature width, encoder
                       signature, training summary (written last: its presence means complete)
    model.safetensors  the network weights (retriever and generator; not the frozen encoder)
    vocab.txt          character vocabulary, one token per line (line number = id)
    corpus.json        the retrieval corpus per kind: unique sentences with the training videos
                       that own them (a video never retrieves its own sentences in training)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from create_bench.errors import ConfigError, ModelError
from create_bench.features.encoders import CLIPEncoder, FixedEncoder, build_encoder
from create_bench.fsutil import atomic_path, atomic_write_json
from create_bench.models.alwig.bundle import frame_features
from create_bench.models.alwig.model import pad_ids
from create_bench.models.alwig.tokenizer import CharTokenizer, kept_tags
from create_bench.models.rcg.config import RCGConfig
from create_bench.models.rcg.decoding import DecodeOptions, decode
from create_bench.models.rcg.model import RCGNet

CHECKPOINT_FORMAT = "rcg-checkpoint"
CHECKPOINT_VERSION = 1
KINDS = ("title", "caption")
FILES = ("model.safetensors", "vocab.txt", "corpus.json")


@dataclass
class Corpus:
    """Unique sentences of one kind and, for each, the training videos that own it."""

    texts: list[str]
    owners: list[tuple[str, ...]]
    emb: torch.Tensor | None = None
    _owned: dict[str, list[int]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]]) -> Corpus:
        """From ``(vid, sentence)`` pairs, in first-seen order; blank sentences dropped."""
        index: dict[str, int] = {}
        texts: list[str] = []
        owners: list[list[str]] = []
        for vid, text in pairs:
            text = str(text).strip()
            if not text:
                continue
            if text not in index:
                index[text] = len(texts)
                texts.append(text)
                owners.append([])
            if vid not in owners[index[text]]:
                owners[index[text]].append(vid)
        return cls(texts, [tuple(o) for o in owners])

    def owned_by(self, vid: str) -> list[int]:
        """Indices of the sentences ``vid`` owns."""
        if not self._owned:
            for i, owners in enumerate(self.owners):
                for v in owners:
                    self._owned.setdefault(v, []).append(i)
        return self._owned.get(vid, [])

    def __len__(self) -> int:
        return len(self.texts)


def top_k(sim: torch.Tensor, k: int, exclude: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """Indices of the ``k`` most similar columns of each row of ``sim`` [B, N], never an excluded one
    (ties broken by the lower index, so the result is deterministic)."""
    sim = sim.float().clone()
    if exclude is not None:
        for r, cols in enumerate(exclude):
            if cols:
                sim[r, list(cols)] = float("-inf")
    n = min(k, sim.shape[1])
    if n == 0:
        return [[] for _ in range(sim.shape[0])]
    order = torch.sort(sim, dim=1, descending=True, stable=True).indices[:, :n]
    vals = torch.gather(sim, 1, order)
    return [
        [int(i) for i, v in zip(o, w) if v != float("-inf")] for o, w in zip(order.tolist(), vals.tolist())
    ]


class RCG:
    """Everything needed to run RCG on a batch of the model protocol."""

    def __init__(
        self,
        cfg: RCGConfig,
        tokenizer: CharTokenizer,
        net: RCGNet,
        encoder: FixedEncoder | CLIPEncoder | None,
        corpus: dict[str, Corpus],
    ):
        self.cfg, self.tokenizer, self.net, self.encoder, self.corpus = cfg, tokenizer, net, encoder, corpus
        self.frame_cfg = cfg.frame_cfg()
        self.device = torch.device("cpu")

    @classmethod
    def create(
        cls,
        cfg: RCGConfig,
        corpus: dict[str, Corpus],
        *,
        feature_dim: int | None = None,
        encoder: FixedEncoder | CLIPEncoder | None = None,
        extra_texts: Iterable[str] = (),
    ) -> RCG:
        """A freshly initialised model: the vocabulary from the corpus (and ``extra_texts``)."""
        fcfg = cfg.frame_cfg()
        if encoder is None and fcfg.encoder != "features":
            encoder = build_encoder(fcfg.encoder, encoder_path=fcfg.encoder_path)
        fdim = encoder.dim if encoder is not None else (feature_dim or fcfg.feature_dim)
        if not fdim:
            raise ConfigError("RCG with precomputed features needs feature_dim")
        texts = [t for c in corpus.values() for t in c.texts] + list(extra_texts)
        tok = CharTokenizer.build(texts, min_count=cfg.min_char_count, max_size=cfg.max_vocab)
        net = RCGNet(cfg, int(fdim), fcfg.num_frames, len(tok), tok.pad_id)
        return cls(cfg, tok, net, encoder, corpus)

    def to(self, device: str | torch.device) -> RCG:
        self.device = torch.device(device)
        self.net.to(self.device)
        if self.encoder is not None:
            self.encoder.to(self.device)
        for c in self.corpus.values():
            c.emb = None
        return self

    # ---------------------------------------------------------------------------------- tensors
    def tag_tensor(self, tag_lists: Sequence[Sequence[str]]) -> torch.Tensor:
        """Characters of each video's tags, ``[B, max_tags, max_tag_chars]`` padded with [PAD]."""
        cfg, tok = self.cfg, self.tokenizer
        out = torch.full((len(tag_lists), cfg.max_tags, cfg.max_tag_chars), tok.pad_id, dtype=torch.long)
        for r, tags in enumerate(tag_lists):
            for j, tag in enumerate(kept_tags(tags, cfg.max_tags)):
                ids = tok.encode(tag, cfg.max_tag_chars)
                if ids:
                    out[r, j, : len(ids)] = torch.as_tensor(ids)
        return out.to(self.device)

    def text_tensor(self, texts: Sequence[str]) -> torch.Tensor:
        """``[CLS] chars`` rows, padded to the longest."""
        tok = self.tokenizer
        rows = [[tok.cls_id, *tok.encode(t, self.cfg.max_text_len)] for t in texts]
        return pad_ids(rows, max((len(r) for r in rows), default=1), tok.pad_id).to(self.device)

    def seq_tensor(self, texts: Sequence[str], kind: str) -> torch.Tensor:
        """``task chars [EOS]`` generation targets, padded to the longest."""
        tok = self.tokenizer
        rows = [[tok.task_ids[kind], *tok.encode(t, self.cfg.max_text_len), tok.eos_id] for t in texts]
        return pad_ids(rows, max(len(r) for r in rows), tok.pad_id).to(self.device)

    def sent_tensor(self, sentences: Sequence[Sequence[str]]) -> torch.Tensor:
        """Retrieved sentences ``[B, k, S]`` (``[CLS] chars``, padded to the longest; a missing one is
        [CLS] only)."""
        tok, k = self.tokenizer, self.cfg.k
        rows = []
        for sents in sentences:
            for i in range(k):
                text = sents[i] if i < len(sents) else ""
                rows.append([tok.cls_id, *tok.encode(text, self.cfg.max_text_len)])
        width = max((len(r) for r in rows), default=1)  # the batch's longest: less to attend over
        return pad_ids(rows, width, tok.pad_id).view(len(sentences), k, width).to(self.device)

    def frame_features(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame vectors [B, T, F] and the mask [B, T] of a model-protocol batch (ALWIG's reader)."""
        feats, mask = frame_features(self.encoder, self.frame_cfg, batch)
        return feats.to(self.device), mask.to(self.device)

    # ------------------------------------------------------------------------------- retrieval
    @torch.no_grad()
    def video_embed(
        self, feats: torch.Tensor, mask: torch.Tensor, tags: Sequence[Sequence[str]]
    ) -> torch.Tensor:
        f, m = self.net.standardise(feats.to(self.device), mask.to(self.device))
        return self.net.retriever.video_embed(f, m, self.tag_tensor(tags))

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        out = [
            self.net.retriever.text_embed(self.text_tensor(texts[i : i + batch_size])).float().cpu()
            for i in range(0, len(texts), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.cfg.embed_dim)

    def corpus_embeddings(self, kind: str) -> torch.Tensor:
        """Embeddings of the ``kind`` corpus (computed once per loaded model)."""
        corpus = self._corpus(kind)
        if corpus.emb is None:
            corpus.emb = self.encode_texts(corpus.texts).to(self.device)
        return corpus.emb

    def _corpus(self, kind: str) -> Corpus:
        if kind not in self.corpus:
            raise ModelError(f"RCG: no {kind!r} corpus in this model (kinds: {', '.join(self.corpus)})")
        return self.corpus[kind]

    @torch.no_grad()
    def retrieve(
        self, video: torch.Tensor, kind: str, k: int, exclude_vids: Sequence[str] | None = None
    ) -> list[list[str]]:
        """The ``k`` corpus sentences nearest each video embedding, never one of ``exclude_vids[i]``'s
        own sentences (training: a video's own title and caption are not in its open book)."""
        corpus = self._corpus(kind)
        sim = video.to(self.device) @ self.corpus_embeddings(kind).t()
        exclude = [corpus.owned_by(v) for v in exclude_vids] if exclude_vids is not None else None
        return [[corpus.texts[i] for i in row] for row in top_k(sim.cpu(), k, exclude)]

    # ------------------------------------------------------------------------------ generation
    def decode_options(self, kind: str, **overrides: Any) -> DecodeOptions:
        tok, cfg = self.tokenizer, self.cfg
        banned = tuple(sorted(i for i in tok.special_ids if i != tok.eos_id))
        opts: dict[str, Any] = {
            "beam_size": cfg.beam_size,
            "no_repeat_ngram": cfg.no_repeat_ngram,
            "length_penalty": cfg.length_penalty,
            "max_len": cfg.max_text_len,
        }
        opts.update({k: v for k, v in overrides.items() if v is not None})
        return DecodeOptions(task_id=tok.task_ids[kind], eos_id=tok.eos_id, banned_ids=banned, **opts)

    @torch.no_grad()
    def generate(
        self,
        feats: torch.Tensor,
        mask: torch.Tensor,
        tags: Sequence[Sequence[str]],
        kind: str,
        sentences: Sequence[Sequence[str]],
        opts: DecodeOptions,
    ) -> tuple[list[str], list[list[float]]]:
        """Texts of ``kind`` and, per text, its mean gate (vocabulary, then each pointer)."""
        gen = self.net.generator
        video, vmask = self.net.video_states(
            feats.to(self.device), mask.to(self.device), self.tag_tensor(tags)
        )
        mem = gen.memory(video, vmask, self.sent_tensor(sentences))
        ids = decode(gen, mem, opts)
        return [self.tokenizer.decode(r) for r in ids], self._mean_gates(ids, mem, opts)

    def _mean_gates(self, ids: list[list[int]], mem: Any, opts: DecodeOptions) -> list[list[float]]:
        """Each output's gate averaged over its steps (teacher-forced on what was decoded)."""
        if self.cfg.k == 0:
            return [[1.0] for _ in ids]
        gen = self.net.generator
        rows = [[opts.task_id, *r] for r in ids]
        inputs = pad_ids(rows, max(len(r) for r in rows), self.tokenizer.pad_id).to(self.device)
        _, _, gate = gen.sources(gen.decode(inputs, mem), mem)
        assert gate is not None
        return [[round(float(x), 4) for x in gate[i, : len(r)].mean(0)] for i, r in enumerate(rows)]

    # ------------------------------------------------------------------------------ checkpoints
    def encoder_signature(self) -> str:
        return (
            self.encoder.signature if self.encoder is not None else f"features:{self.frame_cfg.feature_set}"
        )

    def save(self, out_dir: str | os.PathLike[str], training: dict[str, Any] | None = None) -> None:
        """Write a complete checkpoint (config.json last, so its presence means complete)."""
        from safetensors.torch import save_model

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_path(out / "model.safetensors") as tmp:
            save_model(self.net, str(tmp))
        self.tokenizer.save(out / "vocab.txt")
        corpus = {k: [[t, list(o)] for t, o in zip(c.texts, c.owners)] for k, c in self.corpus.items()}
        atomic_write_json(out / "corpus.json", corpus, indent=None)
        record = {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "config": self.cfg.to_dict(),
            "frame_fields": {k: _jsonable(getattr(self.frame_cfg, k)) for k in _frame_fields()},
            "feature_dim": self.net.feature_dim,
            "encoder_signature": self.encoder_signature(),
            "params": sum(p.numel() for p in self.net.parameters()),
            "corpus_sizes": {k: len(c) for k, c in self.corpus.items()},
            "training": training or {},
        }
        atomic_write_json(out / "config.json", record)

    @classmethod
    def load(cls, ckpt_dir: str | os.PathLike[str], device: str | torch.device = "cpu") -> RCG:
        """Load a checkpoint written by :meth:`save` (the frozen encoder is rebuilt from the config)."""
        from safetensors.torch import load_model

        d = Path(ckpt_dir)
        record = read_record(d)
        cfg = RCGConfig.from_dict(record["config"], source=str(d / "config.json"))
        tok = CharTokenizer.load(d / "vocab.txt")
        corpus = _read_corpus(d / "corpus.json")
        fcfg = cfg.frame_cfg()
        net = RCGNet(cfg, int(record["feature_dim"]), fcfg.num_frames, len(tok), tok.pad_id)
        try:
            load_model(net, str(d / "model.safetensors"))
        except Exception as exc:  # safetensors/torch raise their own types for corrupt or mismatched files
            raise ModelError(f"RCG weights {d / 'model.safetensors'} do not match the config: {exc}") from exc
        net.eval()
        encoder = (
            build_encoder(fcfg.encoder, encoder_path=fcfg.encoder_path)
            if fcfg.encoder != "features"
            else None
        )
        if encoder is not None and (
            encoder.dim != net.feature_dim or record.get("encoder_signature") != encoder.signature
        ):
            raise ModelError(
                f"checkpoint {d} was trained with encoder {record.get('encoder_signature')!r} "
                f"({net.feature_dim}-dim), this install gives {encoder.signature!r} ({encoder.dim}-dim)"
            )
        return cls(cfg, tok, net, encoder, corpus).to(device)


def _frame_fields() -> tuple[str, ...]:
    from create_bench.models.rcg.config import FRAME_FIELDS

    return FRAME_FIELDS


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _read_corpus(path: Path) -> dict[str, Corpus]:
    try:
        data = json.loads(path.read_text("utf-8"))
        return {
            str(k): Corpus([str(t) for t, _ in rows], [tuple(str(v) for v in o) for _, o in rows])
            for k, rows in data.items()
        }
    except (ValueError, TypeError, AttributeError) as exc:
        raise ModelError(f"{path} is not an RCG corpus file: {exc}") from exc


def read_record(ckpt_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's ``config.json``, checked (format, version, files present)."""
    d = Path(ckpt_dir)
    path = d / "config.json"
    if not path.is_file():
        raise ModelError(
            f"no RCG checkpoint at {d} (config.json missing); train one with "
            f"`create-bench train rcg --data DIR --out {d}`"
        )
    try:
        record = json.loads(path.read_text("utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        fmt = record.get("format") if isinstance(record, dict) else None
        raise ModelError(f"{path} is not an RCG checkpoint (format {fmt!r})")
    if int(record.get("version", 0)) > CHECKPOINT_VERSION:
        raise ModelError(
            f"{path} has checkpoint version {record.get('version')}, this install reads <= {CHECKPOINT_VERSION}"
        )
    for f in FILES:
        if not (d / f).is_file():
            raise ModelError(f"RCG checkpoint {d} lacks {f}")
    return record

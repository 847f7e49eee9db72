"""ALWIG vocabularies: characters (text encoder and GPT-2 decoder) and tags (tag encoder).

Characters: by default a vocabulary built from the training corpus, one token per character, after
special tokens ``[PAD] [UNK] [CLS] [SEP] [BOS] [EOS]`` and the task tokens ``[TITLE] [CAPTION]``.
Alternatively the BERT-style ``vocab.txt`` of a pretrained Chinese GPT-2 (one token per line, the
line number is the id); missing special/task tokens are appended (the GPT-2 embedding grows to match)
and ``[BOS]``/``[EOS]`` fall back to ``[CLS]``/``[SEP]``, the convention of those checkpoints.

Tags: each tag is one token; tags seen at least ``min_count`` times in training get their own id,
others hash (CRC-32, stable across runs and machines) into ``buckets`` unknown-tag ids.

>>> tok = CharTokenizer.build(["红色的球", "蓝色的球"])
>>> tok.decode(tok.encode("红色的猫"))
'红色的[UNK]'
>>> tags = TagVocab.build([["猫", "狗"], ["猫"]], buckets=2)
>>> tags.encode(["猫", "鹦鹉"]) == [tags.cls_id, tags.token_to_id["猫"], tags.unk_id("鹦鹉"), tags.sep_id]
True
"""

from __future__ import annotations

import os
import re
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from create_bench.errors import ConfigError
from create_bench.fsutil import atomic_write_text

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[BOS]", "[EOS]")
TASK_TOKENS = {"title": "[TITLE]", "caption": "[CAPTION]"}
_WS = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """NFKC (folds full-width forms), whitespace runs collapsed to one space, ends stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def normalize_tag(tag: str) -> str:
    return normalize_text(tag).lower()


def kept_tags(tags: Iterable[str], max_tags: int | None = None) -> list[str]:
    """The normalised tags a model reads: empty ones dropped, at most ``max_tags`` kept, in order."""
    kept = [nt for nt in (normalize_tag(t) for t in tags) if nt]
    return kept if max_tags is None else kept[:max_tags]


class CharTokenizer:
    """Character-level tokenizer over a fixed token list (id = position in the list)."""

    def __init__(self, tokens: Sequence[str], *, source: str = "corpus"):
        self.tokens = list(tokens)
        self.token_to_id: dict[str, int] = {}
        for i, t in enumerate(self.tokens):
            self.token_to_id.setdefault(t, i)
        self.source = source
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in self.token_to_id]
        if missing:
            raise ConfigError(f"vocabulary ({source}) lacks special token(s) {missing}")
        for t in TASK_TOKENS.values():
            if t not in self.token_to_id:
                raise ConfigError(f"vocabulary ({source}) lacks task token {t}")
        self.pad_id = self.token_to_id["[PAD]"]
        self.unk_id = self.token_to_id["[UNK]"]
        self.cls_id = self.token_to_id["[CLS]"]
        self.sep_id = self.token_to_id["[SEP]"]
        # Pretrained Chinese GPT-2 checkpoints use [CLS] to start and [SEP] to end a text.
        self.bos_id = self.token_to_id.get("[BOS]", self.cls_id)
        self.eos_id = self.token_to_id.get("[EOS]", self.sep_id)
        self.task_ids = {kind: self.token_to_id[t] for kind, t in TASK_TOKENS.items()}
        self.special_ids = frozenset(
            self.token_to_id[t] for t in (*SPECIAL_TOKENS, *TASK_TOKENS.values()) if t in self.token_to_id
        )
        # A BERT vocab is uncased for Latin letters: fall back to the lower-case form.
        self._lower_fallback = source != "corpus"

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, texts: Iterable[str], *, min_count: int = 1, max_size: int | None = None) -> CharTokenizer:
        """Vocabulary of the characters in ``texts`` (most frequent first, ties by code point)."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(normalize_text(text))
        reserved = set(SPECIAL_TOKENS) | set(TASK_TOKENS.values())
        chars = sorted(
            (c for c, n in counts.items() if n >= min_count and c not in reserved),
            key=lambda c: (-counts[c], c),
        )
        base = [*SPECIAL_TOKENS, *TASK_TOKENS.values()]
        if max_size is not None:
            chars = chars[: max(0, max_size - len(base))]
        return cls(base + chars, source="corpus")

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike[str]) -> tuple[CharTokenizer, int]:
        """Load a BERT-style ``vocab.txt``; returns the tokenizer and how many tokens were appended."""
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"vocabulary file not found: {p}")
        tokens = p.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        n0 = len(tokens)
        have = set(tokens)
        for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", *TASK_TOKENS.values()):
            if t not in have:
                tokens.append(t)
        return cls(tokens, source=str(p)), len(tokens) - n0

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, "".join(f"{t}\n" for t in self.tokens))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, source: str = "corpus") -> CharTokenizer:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"vocabulary file not found: {p}")
        tokens = p.read_text(encoding="utf-8").split("\n")
        if tokens and tokens[-1] == "":
            tokens.pop()
        return cls(tokens, source=source)

    def _char_id(self, ch: str) -> int | None:
        i = self.token_to_id.get(ch)
        if i is None and self._lower_fallback:
            i = self.token_to_id.get(ch.lower())
        if i is None:
            return None if ch == " " else self.unk_id  # a vocab without a space token: drop spaces
        return i

    def encode(self, text: str, max_len: int | None = None) -> list[int]:
        """Character ids of ``text`` (normalised; no special tokens added), cut to ``max_len``."""
        ids = [i for i in (self._char_id(c) for c in normalize_text(text)) if i is not None]
        return ids if max_len is None else ids[:max_len]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: stops at [EOS]/[PAD], drops other special tokens and WordPiece ``##``."""
        out = []
        for i in ids:
            i = int(i)
            if i in (self.eos_id, self.pad_id):
                break
            if i in self.special_ids or not 0 <= i < len(self.tokens):
                if i == self.unk_id:
                    out.append("[UNK]")
                continue
            tok = self.tokens[i]
            out.append(tok[2:] if tok.startswith("##") and len(tok) > 2 else tok)
        return "".join(out).strip()


class TagVocab:
    """Tag ids: ``[PAD]=0 [CLS]=1 [SEP]=2``, then ``buckets`` unknown-tag ids, then the known tags."""

    HEADER = ("[PAD]", "[CLS]", "[SEP]")

    def __init__(self, tags: Sequence[str], buckets: int = 1):
        if buckets < 1:
            raise ConfigError(f"tag vocabulary needs at least 1 unknown-tag bucket, got {buckets}")
        self.buckets = buckets
        self.pad_id, self.cls_id, self.sep_id = 0, 1, 2
        self.tokens = [*self.HEADER, *(f"[UNK-TAG-{i}]" for i in range(buckets)), *tags]
        self.token_to_id = {t: i for i, t in enumerate(self.tokens) if i >= 3 + buckets}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, tag_lists: Iterable[Iterable[str]], *, min_count: int = 1, buckets: int = 1) -> TagVocab:
        counts: Counter[str] = Counter()
        for tags in tag_lists:
            counts.update({normalize_tag(t) for t in tags if normalize_tag(t)})
        kept = sorted((t for t, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        return cls(kept, buckets)

    def unk_id(self, tag: str) -> int:
        return 3 + zlib.crc32(normalize_tag(tag).encode("utf-8")) % self.buckets

    def encode(self, tags: Iterable[str], max_tags: int | None = None) -> list[int]:
        """``[CLS] tag ... [SEP]`` ids of :func:`kept_tags` (tag ``j`` at position ``j + 1``)."""
        ids = [self.token_to_id.get(t, self.unk_id(t)) for t in kept_tags(tags, max_tags)]
        return [self.cls_id, *ids, self.sep_id]

    def save(self, path: str | os.PathLike[str]) -> None:
        atomic_write_text(path, "".join(f"{t}\n" for t in self.tokens))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TagVocab:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"tag vocabulary file not found: {p}")
        lines = p.read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if tuple(lines[:3]) != cls.HEADER:
            raise ConfigError(f"{p} is not an ALWIG tag vocabulary (first lines must be {cls.HEADER})")
        buckets = 0
        while 3 + buckets < len(lines) and lines[3 + buckets] == f"[UNK-TAG-{buckets}]":
            buckets += 1
        return cls(lines[3 + buckets :], buckets)

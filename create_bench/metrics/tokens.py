"""Tokenised texts as integer ids (layer 2): what the ``fast`` captioning scorer consumes and what
the reference-token cache stores.

A :class:`TokenTable` holds many texts at once: text ``i`` is ``ids[offsets[i]:offsets[i + 1]]``
and ``vocab[id]`` is the token string. Token ids are only meaningful within one table (or tables
that share a vocabulary: see :meth:`TokenTable.encode`).

>>> t = TokenTable.encode([["一只", "猫"], ["猫"], []])
>>> t.vocab, t.ids.tolist(), t.lengths.tolist()
(('一只', '猫'), [0, 1, 1], [2, 1, 0])
>>> t.joined(0)
'一只 猫'
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from create_bench.text import Tokenizer


@dataclass(frozen=True)
class TokenTable:
    """Many tokenised texts as one flat int32 id array.

    Attributes:
        vocab: id -> token string (tokens never contain whitespace).
        ids: ``[total tokens]`` int32 token ids, text after text.
        offsets: ``[texts + 1]`` int64; text ``i`` is ``ids[offsets[i]:offsets[i + 1]]``.
    """

    vocab: tuple[str, ...]
    ids: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def tokens(self, i: int) -> list[str]:
        return [self.vocab[j] for j in self.ids[self.offsets[i] : self.offsets[i + 1]]]

    def joined(self, i: int) -> str:
        """Text ``i`` as space-joined tokens (what pycocoevalcap's scorers split again)."""
        return " ".join(self.tokens(i))

    def select(self, index: Sequence[int] | np.ndarray) -> TokenTable:
        """The texts at ``index`` (in that order), with the same vocabulary."""
        idx = np.asarray(index, dtype=np.int64)
        starts, lens = self.offsets[idx], self.lengths[idx]
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        pos = np.repeat(starts - offsets[:-1], lens) + np.arange(offsets[-1], dtype=np.int64)
        return TokenTable(self.vocab, self.ids[pos], offsets)

    @classmethod
    def encode(cls, texts: Iterable[Sequence[str]], vocab: Sequence[str] = ()) -> TokenTable:
        """Ids for token lists; the table's vocabulary is ``vocab`` followed by the new tokens."""
        index = {t: i for i, t in enumerate(vocab)}
        words = list(vocab)
        flat: list[int] = []
        lens: list[int] = []
        for text in texts:
            for t in text:
                j = index.get(t)
                if j is None:
                    j = index[t] = len(words)
                    words.append(t)
                flat.append(j)
            lens.append(len(text))
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        return cls(tuple(words), np.asarray(flat, dtype=np.int32), offsets)

    def extend(self, texts: Iterable[Sequence[str]]) -> tuple[TokenTable, TokenTable]:
        """``(self with the vocabulary grown, the new texts)``: both tables share one vocabulary,
        so their ids compare (the ``fast`` scorer's predictions against cached references)."""
        new = TokenTable.encode(texts, self.vocab)
        return TokenTable(new.vocab, self.ids, self.offsets), new


def tokenize_table(texts: Iterable[str], tokenizer: Tokenizer, vocab: Sequence[str] = ()) -> TokenTable:
    """Tokenise raw texts (normalisation + segmentation + punctuation dropped) into a table.

    The texts are cut together: straight to ids where the tokenizer can
    (:meth:`~create_bench.text.JiebaTokenizer.table_batch`), else by :meth:`Tokenizer.many` (a
    text already seen in this process is not segmented again). Either way the table is the one
    :meth:`TokenTable.encode` makes of the texts' tokens.
    """
    texts = list(texts)
    batch = getattr(tokenizer, "table_batch", None)
    made = batch(texts, vocab) if batch is not None else None
    if made is None:
        return TokenTable.encode(tokenizer.many(texts), vocab)
    words, ids, offsets = made
    return TokenTable(tuple(words), ids, offsets)


__all__ = ["TokenTable", "tokenize_table"]

"""normalize_many equals normalize text by text, whatever the texts: every BMP character alone,
characters next to combining marks and to the second halves of compositions, final sigma, NUL
inside a text, control/format characters, whitespace of every kind, outside the BMP."""

from __future__ import annotations

import random
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from create_bench.text.normalize import _composition_seconds, normalize, normalize_many

EDGE = ["Σ", "Α", "\u0301", "e", "\x00", "İ", "ß", "\u200b", "\t", "\n", "\r", "\u3000", "Ａ", "ﬁ", "가", "\u1100",
        "\u1161", "\u11a8", "\U00020000", "'", "\x85", " ", "，", "中", "…", "㈱", "\u0b47", "\u0b3e", "Å", "A",
        "\u030a", "ｶ", "\uff9e", "ㄱ", "①", "\u00a0", "\ufeff", "\u2028", "Ǆ"]  # fmt: skip


def _same(texts: list[str]) -> None:
    assert normalize_many(texts) == [normalize(t) for t in texts]


def test_every_bmp_character_alone_and_in_one_batch() -> None:
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    _same(chars)
    _same(["a" + c + "b" for c in chars])


def test_characters_before_composition_seconds() -> None:
    """A simple character followed by each character that can complete a composition."""
    seconds = sorted(_composition_seconds())
    assert 0x0301 in seconds and 0x1161 in seconds and 0x0B3E in seconds
    rng = random.Random(0)
    firsts = [chr(c) for c in rng.sample(range(0x20, 0x3000), 300)] + ["A", "e", "\u1100", "가", "\u0b47"]
    _same([f + chr(s) for f in firsts for s in seconds[:: max(1, len(seconds) // 40)]])
    _same([f + unicodedata.normalize("NFD", "é") for f in firsts])


def test_named_edges_and_empty() -> None:
    _same([a + b for a in EDGE for b in EDGE])
    _same(["", " ", "  ", "\x00", "a\x00b", "  Ａｂ  Ｃ  ", "ΑΣ x", "x ΑΣ", "e\u0301", "\t a\nb ", "𠀀x"])
    assert normalize_many([]) == []


@settings(max_examples=300, derandomize=True, deadline=None)
@given(st.lists(st.lists(st.sampled_from(EDGE) | st.characters(), max_size=12).map("".join), max_size=8))
def test_random_batches(texts: list[str]) -> None:
    _same(texts)

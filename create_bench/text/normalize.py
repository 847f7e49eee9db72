"""Text normalisation for captioning metrics (layer 1).

One function, :func:`normalize`, applied to predictions and references alike before tokenisation:

1. Unicode NFKC. This also folds full-width ASCII forms to half-width (``ＡＢＣ１２３`` -> ``ABC123``),
   the ideographic space to a plain space and compatibility ideographs to their unified forms.
2. Lower-casing (``str.lower``), so ``iPhone`` and ``IPHONE`` are the same token.
3. Format characters (category ``Cf``: zero-width space/joiner, BOM, bidi marks) removed; control
   characters and every kind of whitespace become a single ASCII space; the ends are stripped.

Dropping tokens made only of punctuation or symbols happens after tokenisation
(:func:`is_punct_or_symbol`), since a tokenizer may need punctuation to find word boundaries.

>>> normalize("  ＩＰｈｏｎｅ１５　评测，\u200b很好！ ")
'iphone15 评测,很好!'
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

#: Name of the normalisation in signatures; bump the suffix whenever the behaviour changes.
NORMALIZER_NAME = "nfkc-lower-ws.1"

_WHITESPACE = re.compile(r"\s+")


def normalize(text: str) -> str:
    """Normalise one text (NFKC, lower-case, format characters removed, whitespace collapsed)."""
    text = unicodedata.normalize("NFKC", text).lower()
    if text.isprintable():  # no control/format characters: only whitespace to collapse (fast path)
        return _WHITESPACE.sub(" ", text).strip()
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue
        out.append(" " if cat == "Cc" else ch)
    return _WHITESPACE.sub(" ", "".join(out)).strip()


@functools.lru_cache(maxsize=1 << 16)  # tokens repeat a lot; this runs once per token occurrence
def is_punct_or_symbol(token: str) -> bool:
    """True when every character of ``token`` is punctuation (``P*``) or a symbol (``S*``).

    >>> is_punct_or_symbol("，。"), is_punct_or_symbol("+-"), is_punct_or_symbol("c++")
    (True, True, False)
    """
    return bool(token) and all(unicodedata.category(ch)[0] in "PS" for ch in token)


# ------------------------------------------------------------------------------------------------
# Many texts at once


def normalize_many(texts: Sequence[str]) -> list[str]:
    """``[normalize(t) for t in texts]``, the common texts without a per-text pass of NFKC.

    A text made only of *simple* characters (:func:`_simple_table`) is normalised with arrays over
    all such texts at once: each character to its one-character NFKC form lower-cased, then the
    runs of spaces collapsed and the ends stripped. That is exactly :func:`normalize` for them:
    when no character of a text's compatibility decomposition is a combining mark or the second
    character of a canonical composition, NFKC neither reorders nor composes, so it maps
    character by character; lower-casing maps character by character except for the final sigma
    (Σ is not simple); and a printable text's only whitespace is the ASCII space. Every other
    text (and one with NUL, non-printable characters after the mapping, or characters outside
    the BMP) goes through :func:`normalize` itself.
    """
    import numpy as np

    if not texts:
        return []
    mapping, simple, printable = _simple_table()
    joined = "\x00".join(texts) + "\x00"
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    ends = np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1) - 1  # each text's NUL
    bmp = codes <= 0xFFFF
    low = np.where(bmp, codes, 0)
    out = mapping[low]
    bad = ~(bmp & simple[low] & printable[out])
    bad[ends] = False
    text_of = np.repeat(np.arange(len(texts)), np.diff(np.r_[-1, ends]))
    slow = np.zeros(len(texts), dtype=bool)
    slow[text_of[bad]] = True
    # collapse runs of spaces and strip: drop a space after a space or a text's start, and a
    # space before its text's end
    space = out == 0x20
    sep = np.zeros(len(codes), dtype=bool)
    sep[ends] = True
    prev_sep_or_space = np.r_[True, (space | sep)[:-1]]
    keep = ~(space & prev_sep_or_space) & (sep | ~slow[text_of])  # a slow text is filled in below
    kept = out[keep]
    kept_sep = sep[keep]
    k_space = kept == 0x20
    trailing = k_space & np.r_[kept_sep[1:], True]
    result = kept[~trailing].astype("<u4").tobytes().decode("utf-32-le").split("\x00")[:-1]
    for i in np.flatnonzero(slow).tolist():
        result[i] = normalize(texts[i])
    return result


@functools.cache
def _simple_table() -> tuple[Any, Any, Any]:
    """Over the BMP: ``(mapping, simple, printable)``. ``simple[c]``: ``c`` is a starter, not the
    second character of any canonical composition, not Σ, and its NFKC form lower-cased is one
    character, which is the same kind of character; ``mapping[c]`` is that character.
    ``printable[c]``: ``str.isprintable``."""
    import numpy as np

    seconds = _composition_seconds()
    size = 0x10000
    mapping = np.arange(size, dtype=np.uint32)
    simple = np.zeros(size, dtype=bool)
    printable = np.fromiter((chr(c).isprintable() for c in range(size)), bool, size)

    def plain(ch: str) -> bool:
        return unicodedata.combining(ch) == 0 and ord(ch) not in seconds and ch != "\u03a3"

    for c in range(size):
        ch = chr(c)
        if 0xD800 <= c <= 0xDFFF or not plain(ch):
            continue
        d = unicodedata.normalize("NFKD", ch)
        if len(d) != 1 or not plain(d):
            continue
        m = unicodedata.normalize("NFKC", ch).lower()
        if len(m) == 1 and ord(m) < size and plain(m):
            mapping[c], simple[c] = ord(m), True
    return mapping, simple, printable


def _composition_seconds() -> frozenset[int]:
    """Every character that is the second of a canonical composition (NFC_Quick_Check = Maybe):
    the second half of each primary composite's canonical decomposition, and Hangul V/T jamo."""
    seconds = set(range(0x1161, 0x1176)) | set(range(0x11A8, 0x11C3))
    for c in range(0x110000):
        dec = unicodedata.decomposition(chr(c)) if not 0xD800 <= c <= 0xDFFF else ""
        if not dec or dec.startswith("<"):
            continue
        parts = dec.split()
        if len(parts) == 2:
            a, b = (chr(int(p, 16)) for p in parts)
            if unicodedata.normalize("NFC", a + b) == chr(c):
                seconds.add(ord(b))
    return frozenset(seconds)

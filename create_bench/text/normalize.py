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

"""Text normalisation and tokenisation for Chinese captioning metrics (layer 1)."""

from create_bench.text.normalize import NORMALIZER_NAME, is_punct_or_symbol, normalize
from create_bench.text.tokenizers import (
    CJK_RANGES,
    CharTokenizer,
    JiebaTokenizer,
    Tokenizer,
    get_tokenizer,
    is_cjk_ideograph,
    tokenizer_names,
)

__all__ = [
    "CJK_RANGES",
    "NORMALIZER_NAME",
    "CharTokenizer",
    "JiebaTokenizer",
    "Tokenizer",
    "get_tokenizer",
    "is_cjk_ideograph",
    "is_punct_or_symbol",
    "normalize",
    "tokenizer_names",
]

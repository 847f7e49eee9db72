"""Normalisation and tokenizers: tables of inputs, Unicode ranges at their boundaries."""

from __future__ import annotations

import doctest
import hashlib
import importlib
import sys
import unicodedata

import pytest

from create_bench.errors import ConfigError
from create_bench.text import CJK_RANGES, get_tokenizer, is_cjk_ideograph, is_punct_or_symbol, normalize

EXT_B_FIRST, EXT_B_LAST = "\U00020000", "\U0002a6df"  # 𠀀 and the last Extension B code point


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ＡＢＣ１２３", "abc123"),  # full-width Latin/digits -> half-width, lower-cased
        ("你好\u3000世界", "你好 世界"),  # ideographic space
        ("  多个   空格\t\n换行 ", "多个 空格 换行"),
        ("零\u200b宽\ufeff字符", "零宽字符"),  # zero-width space and BOM (format characters) removed
        ("，。！？", ",。!?"),  # full-width punctuation folded by NFKC; 。 has no compatibility form
        ("\uf900", "\u8c48"),  # a CJK compatibility ideograph -> its unified form
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width katakana -> full-width
        ("iPhone ＸＳ Max", "iphone xs max"),
        ("", ""),
    ],
)
def test_normalize_table(text: str, expected: str) -> None:
    assert normalize(text) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我爱北京天安门", ["我", "爱", "北", "京", "天", "安", "门"]),
        ("iPhone15评测", ["iphone15", "评", "测"]),
        ("ＰＹＴＨＯＮ３教程", ["python3", "教", "程"]),
        ("3.5分，很好！", ["3", "5", "分", "很", "好"]),
        ("hello  world 你好", ["hello", "world", "你", "好"]),
        ("《三体》——刘慈欣", ["三", "体", "刘", "慈", "欣"]),
        (f"生僻字{EXT_B_FIRST}{EXT_B_LAST}ok", ["生", "僻", "字", EXT_B_FIRST, EXT_B_LAST, "ok"]),
        ("㐀䶿", ["㐀", "䶿"]),  # Extension A at both ends
        ("😀开心😀", ["开", "心"]),  # emoji are symbols (So): dropped
        ("café au lait", ["café", "au", "lait"]),
        ("！？。，", []),
    ],
)
def test_char_tokenizer_table(text: str, expected: list[str]) -> None:
    assert get_tokenizer("char")(text) == expected


@pytest.mark.parametrize("lo, hi, name", CJK_RANGES)
def test_cjk_ranges_boundaries(lo: int, hi: int, name: str) -> None:
    assert is_cjk_ideograph(chr(lo)) and is_cjk_ideograph(chr(hi)), name
    assert get_tokenizer("char").segment(chr(lo) + chr(hi)) == [chr(lo), chr(hi)]
    for outside in (lo - 1, hi + 1):  # just outside: in a CJK block only if the next block is adjacent
        adjacent = any(a <= outside <= b for a, b, _ in CJK_RANGES)
        assert is_cjk_ideograph(chr(outside)) == adjacent, hex(outside)


def test_named_boundaries_outside() -> None:
    for cp in (0x33FF, 0x4DC0, 0xA000, 0xF8FF, 0xFB00, 0x1FFFF, 0x2A6E0, 0x2FA20, 0x2FFFF, 0x323B0):
        assert not is_cjk_ideograph(chr(cp)), hex(cp)


def test_cjk_ranges_against_unicodedata() -> None:
    """Every code point this Python's Unicode database names as a CJK ideograph is in the ranges,
    and no other named code point is (an independent reference for everything assigned here)."""
    for cp in range(0x40000):
        try:
            name = unicodedata.name(chr(cp))
        except ValueError:
            continue
        cjk = name.startswith(("CJK UNIFIED IDEOGRAPH-", "CJK COMPATIBILITY IDEOGRAPH-"))
        assert is_cjk_ideograph(chr(cp)) == cjk, f"U+{cp:04X} {name}"


def test_punct_or_symbol() -> None:
    assert is_punct_or_symbol("，") and is_punct_or_symbol("…") and is_punct_or_symbol("+=")
    assert is_punct_or_symbol("😀")
    assert not is_punct_or_symbol("c++") and not is_punct_or_symbol("") and not is_punct_or_symbol("中")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("我来到北京清华大学", ["我", "来到", "北京", "清华大学"]),  # jieba's own README example
        (
            "这个视频展示了iPhone15的评测，很好看！",
            ["这个", "视频", "展示", "了", "iphone15", "的", "评测", "很", "好看"],
        ),
        ("ＡＢＣ  电影 。。", ["abc", "电影"]),
        (f"生僻字{EXT_B_FIRST}出现", ["生僻字", EXT_B_FIRST, "出现"]),
    ],
)
def test_jieba_tokenizer_table(text: str, expected: list[str]) -> None:
    assert get_tokenizer("jieba")(text) == expected


def test_tokens_never_contain_whitespace_or_bare_punctuation() -> None:
    text = "  一个 人\t在\u3000公园里 跑步 ， ，  run  fast！ 　"
    for name in ("jieba", "char"):
        toks = get_tokenizer(name)(text)
        assert toks and all(t and not any(c.isspace() for c in t) and not is_punct_or_symbol(t) for t in toks)


def test_jieba_signature_records_version_and_dictionary() -> None:
    import jieba

    with jieba.get_module_res("dict.txt") as fh:
        digest = hashlib.sha256(fh.read()).hexdigest()[:8]
    assert get_tokenizer("jieba").signature() == f"jieba-{jieba.__version__}-dict.{digest}"
    assert get_tokenizer("char").signature() == "char.1"


def test_jieba_private_dictionary_ignores_global_words() -> None:
    import jieba

    tok = get_tokenizer("jieba")
    before = tok("北京清华大学")
    jieba.add_word("京清")  # a user's change to the global tokenizer must not change scores
    try:
        assert tok("北京清华大学") == before
    finally:
        jieba.del_word("京清")


def test_jieba_is_imported_lazily() -> None:
    import subprocess

    code = (
        "import sys, create_bench.text as t; t.get_tokenizer('char')('你好'); print('jieba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_unknown_tokenizer() -> None:
    with pytest.raises(ConfigError, match="known: char, jieba"):
        get_tokenizer("jeiba")


@pytest.mark.parametrize("module", ["create_bench.text.normalize", "create_bench.text.tokenizers"])
def test_doctests(module: str) -> None:
    # importlib, not attribute access: the package re-exports a *function* called ``normalize``
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_joined_is_a_memo_of_the_tokens(monkeypatch) -> None:
    import create_bench.text.tokenizers as tk

    tok = tk.CharTokenizer()
    calls = []
    monkeypatch.setattr(tok, "segment", lambda text: calls.append(text) or list(text))
    assert tok.joined("你好，世界") == "你 好 世 界" and tok.joined("你好，世界") == "你 好 世 界"
    assert len(calls) == 1
    monkeypatch.setattr(tk, "JOINED_CACHE", 1)  # a full memo starts afresh instead of growing
    tok.joined("再见")
    tok.clear_cache()
    tok.joined("你好，世界")
    assert len(calls) == 3

"""``jieba_batch.BatchCutter`` gives jieba 0.42.1's very tokens (precise mode, HMM on).

Property-based on random batches over a mixed alphabet (dictionary words, common and rare
characters, characters only the HMM knows or nobody knows, Latin, digits, punctuation, every kind
of whitespace, full-width forms, non-BMP characters, NUL), plus named edge cases, the trie's disk
cache, every text of the shipped sample (or the tiny generated one), and ``Tokenizer.many``'s memo.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import random
import unicodedata
from pathlib import Path

import jieba
import jieba.finalseg
import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import create_bench.text.tokenizers as tokenizers
from create_bench.metrics.tokens import TokenTable, tokenize_table
from create_bench.text import jieba_batch as jb
from create_bench.text.normalize import normalize
from create_bench.text.tokenizers import get_tokenizer

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "create-sample"


# --------------------------------------------------------------------------------------------
# fixtures and references


@pytest.fixture(scope="module")
def dt():
    jieba.setLogLevel(logging.WARNING)
    t = jieba.Tokenizer()
    t.initialize()
    return t


@pytest.fixture(scope="module")
def cutter(dt) -> jb.BatchCutter:
    return jb.BatchCutter(dt)


@pytest.fixture(scope="module")
def trie(dt) -> dict[str, np.ndarray]:
    return jb.build_trie(dt.FREQ, math.log(dt.total))


def ref_cut(dt, texts: list[str]) -> list[list[str]]:
    return [list(dt.cut(t, HMM=True)) for t in texts]


def _ps(tok: str) -> bool:
    return all(unicodedata.category(c)[0] in "PS" for c in tok)


def ref_tokens(dt, texts: list[str]) -> list[list[str]]:
    return [[t for t in toks if not t.isspace() and not _ps(t)] for toks in ref_cut(dt, texts)]


def assert_same(dt, cutter: jb.BatchCutter, texts: list[str]) -> list[list[str]]:
    want = ref_cut(dt, texts)
    got = cutter.cut(texts)
    assert len(got) == len(texts)
    for text, w, g in zip(texts, want, got):
        assert g == w, f"cut({text!r})"
    want_tok = ref_tokens(dt, texts)
    got_tok = cutter.tokens(texts)
    for text, w, g in zip(texts, want_tok, got_tok):
        assert g == w, f"tokens({text!r})"
    return got


class FinalsegSpy:
    """Records the buffers jieba hands to ``jieba.finalseg.cut`` (its HMM for unknown words)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.calls: list[tuple[str, list[str]]] = []
        orig = jieba.finalseg.cut

        def spy(sentence):
            out = list(orig(sentence))
            self.calls.append((sentence, out))
            return iter(out)

        monkeypatch.setattr(jieba.finalseg, "cut", spy)


# --------------------------------------------------------------------------------------------
# the alphabet


def _alphabet() -> dict[str, list[str]]:
    jieba.setLogLevel(logging.WARNING)
    t = jieba.Tokenizer()
    t.initialize()
    rng = random.Random(0)
    words = sorted(k for k, v in t.FREQ.items() if v > 0)
    emit = set().union(*(set(d) for d in jieba.finalseg.emit_P.values()))
    han = [chr(c) for c in range(0x4E00, 0x9FD6)]
    ascii_words = [w for w in words if any(c.isascii() for c in w)]  # 'B超', 'T恤', 'AA制', 'c++' ...
    assert {"B超", "T恤", "AA制"} <= set(ascii_words)
    return {
        "words": rng.sample(words, 300),
        "long": rng.sample([w for w in words if 5 <= len(w) <= 16], 80) + [max(words, key=len)],
        "ascii_words": ascii_words,
        "common": list("的了是在我和有人这中大为上个国不也就都要会他她它们很好"),
        # in jieba's han range, in no dictionary word and no HMM emission table
        "unknown": rng.sample([c for c in han if c not in t.FREQ and c not in emit], 40),
        # known to the HMM only
        "hmm_only": rng.sample(sorted(c for c in emit if c not in t.FREQ and "\u4e00" <= c <= "\u9fd5"), 40),
        # prefixes of words that are no words themselves
        "prefix_only": sorted(k for k, v in t.FREQ.items() if v == 0 and len(k) <= 2)[:40],
        # Extension A (outside jieba's han class), U+9FD0.. straddling its end (U+9FD5)
        "rare": [chr(c) for c in (0x3400, 0x3401, 0x3456, 0x4DB5, 0x4DBF)]
        + [chr(c) for c in range(0x9FD0, 0xA000, 5)],
        "latin": list("abcxyzABCXYZ0123456789+#&._%-") + ["iphone", "15", "3.5", "%", "c++", "a1b", "AT&T"],
        "punct": list("，。！？、：；“”《》（）,.!?;:'\"()[]…—·~@$^*=<>/\\|`") + ["©", "℃", "¥", "€"],
        "space": [" ", "\t", "\n", "\r\n", "\r", "\u3000", "\x0b", "\x0c", "\x1c", "\x85", "\xa0", "\u2028"],
        "fullwidth": list("ＡＢＣａｂｃ１２３４５＋＃％．（）！？") + ["\uf900", "\u2f00", "ﬁ"],
        "astral": ["\U00020000", "\U0002a6d6", "\U00030000", "😀", "👍🏻", "🇨🇳", "𝐀"],
        "nul": ["\x00", "\u200b", "\ufeff", "e\u0301"],
    }


ALPHABET = _alphabet()
piece = st.one_of(*(st.sampled_from(v) for v in ALPHABET.values()))
text = st.lists(piece, max_size=40).map(lambda ps: "".join(ps)[:60])
batch = st.lists(text, min_size=1, max_size=30)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(texts=batch)
def test_random_batches_equal_jieba(dt, cutter, texts):
    assert_same(dt, cutter, texts)
    tok = get_tokenizer("jieba")
    want = [tok(t) for t in texts]
    assert tok.tokenize_batch(texts) == want
    assert tok.many(texts) == want
    assert tok.many(texts[::-1]) == want[::-1]  # now all memoised
    char = get_tokenizer("char")
    want_char = [char(t) for t in texts]
    assert char.tokenize_batch(texts) == want_char
    assert char.many(texts) == want_char


def _same_table(got: TokenTable, want: TokenTable) -> None:
    assert got.vocab == want.vocab
    assert got.ids.dtype == want.ids.dtype and got.offsets.dtype == want.offsets.dtype
    assert np.array_equal(got.ids, want.ids) and np.array_equal(got.offsets, want.offsets)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    texts=batch,
    given_vocab=st.lists(st.sampled_from(["的", "一个", "了", "abcd", "𠀀", "视频", "x"]), unique=True),
)
def test_tables_equal_encoding_jieba_tokens(texts, given_vocab):
    """tokenize_table's straight-to-ids path (packed code points for short tokens, strings for
    long and non-BMP ones) is the very TokenTable that TokenTable.encode makes of jieba's tokens,
    with or without a vocabulary to extend."""
    tok = get_tokenizer("jieba")
    tok.clear_cache()
    want = TokenTable.encode([tok(t) for t in texts], given_vocab)
    _same_table(tokenize_table(texts, tok, given_vocab), want)
    _same_table(tokenize_table(texts * 2, tok), TokenTable.encode([tok(t) for t in texts * 2]))


def test_table_of_nothing():
    tok = get_tokenizer("jieba")
    _same_table(tokenize_table([], tok), TokenTable.encode([]))
    _same_table(tokenize_table(["", "，。"], tok, ["的"]), TokenTable.encode([[], []], ["的"]))


def test_alphabet_reaches_the_hmm_and_its_fallback(dt, monkeypatch):
    """The random texts above do exercise jieba's HMM, on pure-ideograph runs and on mixed ones."""
    spy = FinalsegSpy(monkeypatch)
    rng = random.Random(1)
    pool = [c for k in ("common", "unknown", "hmm_only", "latin") for c in ALPHABET[k]]
    ref_cut(dt, ["".join(rng.choice(pool) for _ in range(40)) for _ in range(30)])
    bufs = [b for b, _ in spy.calls]
    assert any(all("\u4e00" <= c <= "\u9fd5" for c in b) for b in bufs)
    assert any(not all("\u4e00" <= c <= "\u9fd5" for c in b) for b in bufs)
    assert any(len(w) > 1 for _, out in spy.calls for w in out)


# --------------------------------------------------------------------------------------------
# named edge cases


def test_empty_batch(cutter):
    assert cutter.cut([]) == []
    assert cutter.tokens([]) == []
    assert get_tokenizer("jieba").tokenize_batch([]) == []
    assert get_tokenizer("jieba").many([]) == []


def test_empty_and_whitespace_texts(dt, cutter):
    texts = ["", " ", "", "\t\n", "\r\n", "\r\r\n\n", "\u3000 \u3000", "我们", "", "\n"]
    got = assert_same(dt, cutter, texts)
    assert got[0] == [] and got[4] == ["\r\n"] and got[5] == ["\r", "\r\n", "\n"]
    assert cutter.tokens(texts) == [[]] * 7 + [["我们"]] + [[]] * 2
    tok = get_tokenizer("jieba")
    assert tok.tokenize_batch(texts) == [tok(t) for t in texts]


def test_punctuation_only(dt, cutter):
    texts = ["，。！？、", "...", "-_-", "！！！", "《》“”", "%", "+#&"]
    assert_same(dt, cutter, texts)
    assert cutter.tokens(["，。！？、", "！！！"]) == [[], []]


def test_long_text(dt, cutter):
    rng = random.Random(2)
    pool = [
        w for k in ("words", "long", "common", "unknown", "hmm_only", "latin", "punct") for w in ALPHABET[k]
    ]
    long = "".join(rng.choice(pool) for _ in range(2000))[:3000]
    assert len(long) == 3000
    assert_same(dt, cutter, [long])
    assert_same(dt, cutter, ["短", long, "", long[::-1]])


def test_block_longer_than_65535(dt, cutter):
    """One block of 70,000 characters: distances to its end no longer fit the uint16 radix sort."""
    rng = random.Random(3)
    words = ALPHABET["words"] + ALPHABET["common"] + ALPHABET["unknown"]
    long = "".join(rng.choice(words) for _ in range(40000))[:70000]
    assert len(long) == 70000
    assert cutter.cut([long])[0] == list(dt.cut(long))


@pytest.mark.parametrize("chunk", [1, 7, 50])
def test_small_chunks(dt, cutter, monkeypatch, chunk):
    rng = random.Random(chunk)
    pool = [w for ws in ALPHABET.values() for w in ws]
    texts = ["".join(rng.choice(pool) for _ in range(rng.randrange(0, 25))) for _ in range(60)]
    texts += ["一个比五十个字符还要长的句子" * 8, ""]  # longer than CHUNK_CHARS alone
    assert sum(map(len, texts)) > 10 * 50
    want = cutter.cut(texts)
    monkeypatch.setattr(jb, "CHUNK_CHARS", chunk)
    assert_same(dt, cutter, texts)
    assert cutter.cut(texts) == want
    assert cutter.cut([texts[-2]]) == [list(dt.cut(texts[-2]))]


def test_unknown_words_go_through_the_hmm(dt, cutter, monkeypatch):
    texts = [
        "他来到了网易杭研大厦",  # '杭研': the HMM joins two single characters
        "小明硕士毕业于中国科学院计算所",
        "我叫韩梅梅她叫李雷雷",
        "张三丰和李四光去了王二麻子家",
        "韦小宝和令狐冲",
        "习近平",
        "乔布斯",
        "丄丅丏両丣",  # in no dictionary and no emission table: Viterbi's ties decide
        "的的的的",
    ]
    spy = FinalsegSpy(monkeypatch)
    want = ref_cut(dt, texts)
    assert ("杭研", ["杭研"]) in spy.calls and ("小明", ["小明"]) in spy.calls
    assert ("去了", ["去", "了"]) in spy.calls
    assert any(b == "丄丅丏両丣" for b, _ in spy.calls)
    assert "杭研" in want[0] and "小明" in want[1]
    calls = len(spy.calls)
    assert cutter.cut(texts) == want
    assert len(spy.calls) == calls  # pure-ideograph runs: the batched Viterbi, not jieba's
    assert_same(dt, cutter, texts)


def test_buffers_that_are_words_stay_characters(dt, cutter, monkeypatch):
    """A run of single characters that is itself a dictionary word: jieba yields its characters,
    without the HMM (here the route prefers two single characters to the rare word)."""
    texts = ["一七", "一上", "一克", "他说一七", "一乡一九", "一七，一上"]
    assert all(dt.FREQ.get(w) for w in ("一七", "一上", "一克"))
    spy = FinalsegSpy(monkeypatch)
    want = ref_cut(dt, texts)
    assert want[:3] == [["一", "七"], ["一", "上"], ["一", "克"]]
    assert "一七" not in [b for b, _ in spy.calls]
    assert_same(dt, cutter, texts)


def test_mixed_runs_go_to_finalseg(dt, cutter, monkeypatch):
    texts = ["a1b中文x2", "iphone15promax很好", "3.5%的人ab12", "c++和C#", "B超T恤AA制", "我叫abc她叫x2"]
    spy = FinalsegSpy(monkeypatch)
    want = ref_cut(dt, texts)
    assert ("iphone15promax很好", ["iphone15promax", "很", "好"]) in spy.calls
    spy.calls.clear()
    assert cutter.cut(texts) == want
    assert ("iphone15promax很好", ["iphone15promax", "很", "好"]) in spy.calls  # jieba's own HMM
    assert want[1] == ["iphone15promax", "很", "好"]
    assert_same(dt, cutter, texts)


def test_force_split_words(dt, cutter, monkeypatch):
    texts = ["他来到了网易杭研大厦", "小明硕士毕业于中国科学院计算所", "杭研杭研"]
    assert "杭研" in cutter.cut(texts)[0]
    monkeypatch.setattr(jieba.finalseg, "Force_Split_Words", {"杭研", "小明"})
    want = ref_cut(dt, texts)
    assert want[0] == ["他", "来到", "了", "网易", "杭", "研", "大厦"]
    assert "小明" not in want[1] and want[1][:2] == ["小", "明"]
    assert cutter.cut(texts) == want
    assert_same(dt, cutter, texts)


def test_nul_inside_texts(dt, cutter):
    texts = ["中\x00文", "\x00", "\x00\x00", "a\x00b", "我们\x00", "\x00我们", ""]
    got = assert_same(dt, cutter, texts)
    assert got[0] == ["中", "\x00", "文"] and got[1] == ["\x00"] and got[2] == ["\x00", "\x00"]
    tok = get_tokenizer("jieba")
    assert tok.tokenize_batch(texts) == [tok(t) for t in texts]


def test_astral_and_fullwidth(dt, cutter):
    texts = ["😀我们\U00020000一起", "👍🏻👍🏻", "ＡＢＣ１２３中文", "\U00020000\U00020001", "𝐀𝐁c"]
    assert_same(dt, cutter, texts)
    tok = get_tokenizer("jieba")
    assert tok.tokenize_batch(texts) == [tok(t) for t in texts]


def test_lone_surrogate(dt, cutter):
    texts = ["中\udc00文", "\ud800", "\ud83d\ude00"]
    assert ref_cut(dt, texts) == [["中", "\udc00", "文"], ["\ud800"], ["\ud83d", "\ude00"]]
    assert_same(dt, cutter, texts)


# --------------------------------------------------------------------------------------------
# the trie's disk cache


@pytest.fixture()
def counted_build(monkeypatch, trie) -> list[int]:
    """``jb.build_trie`` counting its calls (returning copies of the real trie, built once)."""
    calls = [0]

    def build(freq, logtotal):
        calls[0] += 1
        return {k: v.copy() for k, v in trie.items()}

    monkeypatch.setattr(jb, "build_trie", build)
    return calls


def _entries(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "jieba").glob("trie-*.npz"))


def _check_entry(path: Path, trie: dict[str, np.ndarray]) -> None:
    """The entry's header and checksum are sound and its payload holds the trie's arrays."""
    data = path.read_bytes()
    assert data.startswith(jb._TRIE_MAGIC)
    digest, ident, payload = data[len(jb._TRIE_MAGIC) :].split(b"\n", 2)
    assert hashlib.sha256(ident + payload).hexdigest().encode() == digest
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        assert sorted(z.files) == sorted(trie)
        for k, v in trie.items():
            np.testing.assert_array_equal(z[k], v)


SAMPLE_TEXTS = ["他来到了网易杭研大厦", "B超T恤AA制", "iphone15promax很好", "，。", ""]


def test_trie_cache_written(dt, cutter, trie, tmp_path, counted_build, caplog):
    with caplog.at_level(logging.WARNING, logger=jb.__name__):
        c1 = jb.BatchCutter(dt, cache_key="k1", cache_dir=tmp_path)
    assert not caplog.records
    assert counted_build == [1]
    (entry,) = _entries(tmp_path)
    _check_entry(entry, trie)
    assert c1.cut(SAMPLE_TEXTS) == cutter.cut(SAMPLE_TEXTS) == ref_cut(dt, SAMPLE_TEXTS)


def test_trie_cache_read_back(dt, tmp_path, counted_build, caplog):
    jb.BatchCutter(dt, cache_key="k1", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING, logger=jb.__name__):
        c2 = jb.BatchCutter(dt, cache_key="k1", cache_dir=tmp_path)
    assert c2.cut(SAMPLE_TEXTS) == ref_cut(dt, SAMPLE_TEXTS)
    assert not caplog.records, [r.getMessage() for r in caplog.records]
    assert counted_build == [1]


def test_trie_decode_round_trip(dt, trie, tmp_path):
    """What load_trie writes, _decode_trie must read back (the same arrays)."""
    jb.load_trie(dt.FREQ, math.log(dt.total), "k1", tmp_path)
    (entry,) = _entries(tmp_path)
    data = entry.read_bytes()
    ident = data[len(jb._TRIE_MAGIC) :].split(b"\n", 2)[1]
    got = jb._decode_trie(data, ident, len(dt.FREQ))
    for k, v in trie.items():
        np.testing.assert_array_equal(got[k], v)


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_trie_cache_corrupt_entry(dt, trie, tmp_path, counted_build, caplog, damage):
    jb.BatchCutter(dt, cache_key="k1", cache_dir=tmp_path)
    (entry,) = _entries(tmp_path)
    data = bytearray(entry.read_bytes())
    if damage == "flip":
        for i in range(len(data) - 1000, len(data), 97):  # in the payload
            data[i] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "garbage":
        data = bytearray(b"not a trie at all\n\n\n")
    else:
        data = bytearray()
    entry.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger=jb.__name__):
        c2 = jb.BatchCutter(dt, cache_key="k1", cache_dir=tmp_path)
    assert any(str(entry) in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert counted_build == [2]  # rebuilt
    assert entry.read_bytes() != bytes(data)  # and rewritten, soundly
    _check_entry(entry, trie)
    assert c2.cut(SAMPLE_TEXTS) == ref_cut(dt, SAMPLE_TEXTS)
    assert c2.tokens(SAMPLE_TEXTS) == ref_tokens(dt, SAMPLE_TEXTS)


def test_trie_cache_key_names_the_entry(dt, tmp_path, counted_build):
    jb.BatchCutter(dt, cache_key="k1", cache_dir=tmp_path)
    jb.BatchCutter(dt, cache_key="k2", cache_dir=tmp_path)
    assert len(_entries(tmp_path)) == 2
    assert counted_build == [2]


def test_trie_cache_unwritable(dt, tmp_path, counted_build, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"a file where the cache directory should be")
    with caplog.at_level(logging.WARNING, logger=jb.__name__):
        c = jb.BatchCutter(dt, cache_key="k1", cache_dir=blocker)
    assert c.cut(SAMPLE_TEXTS) == ref_cut(dt, SAMPLE_TEXTS)
    assert counted_build == [1]
    assert any("could not write" in r.getMessage() for r in caplog.records)
    assert blocker.read_bytes() == b"a file where the cache directory should be"


# --------------------------------------------------------------------------------------------
# the shipped sample


def _sample_texts(root: Path) -> list[str]:
    texts: list[str] = []
    shards = sorted((root / "data").glob("*.parquet"))
    assert shards, root
    for shard in shards:
        names = set(pq.read_schema(shard).names)
        cols = [c for c in ("titles", "captions", "raw_title", "tags") if c in names]
        assert {"titles", "captions"} <= set(cols)
        for row in pq.read_table(shard, columns=cols).to_pylist():
            for c in cols:
                v = row[c]
                if isinstance(v, str):
                    texts.append(v)
                elif v is not None:
                    texts.extend(v)
    return texts


def test_every_sample_text(dt, cutter, request):
    root = SAMPLE if SAMPLE.is_dir() else request.getfixturevalue("tiny_dataset")
    texts = _sample_texts(root)
    assert len(texts) > 100
    tok = get_tokenizer("jieba")
    assert tok.tokenize_batch(texts) == [tok(t) for t in texts]
    norm = [normalize(t) for t in texts]
    assert cutter.cut(norm) == ref_cut(dt, norm)
    assert cutter.cut(texts) == ref_cut(dt, texts)  # raw (emoji, full-width forms, odd spaces)


# --------------------------------------------------------------------------------------------
# Tokenizer.many's memo


@pytest.mark.parametrize("name", ["jieba", "char"])
def test_many_memo(name, monkeypatch):
    tok = get_tokenizer(name)
    tok.clear_cache()
    batches: list[list[str]] = []
    monkeypatch.setattr(
        tok, "tokenize_batch", lambda ts: batches.append(list(ts)) or type(tok).tokenize_batch(tok, ts)
    )
    a, b, c = "他来到了网易杭研大厦", "ＩＰｈｏｎｅ１５　评测，很好！", "，。"
    texts = [a, b, a, "", c, b, a]
    want = [tok(t) for t in texts]
    assert tok.many(texts) == want
    assert batches == [[a, b, "", c]]  # each distinct text once
    assert tok.many([c, a, "新的文本", a]) == [tok(t) for t in (c, a, "新的文本", a)]
    assert batches[-1] == ["新的文本"]  # the rest from the memo
    assert tok.many([a, b]) == [tok(a), tok(b)]
    assert batches[-1] == []
    assert tok.joined(a) == " ".join(tok(a))
    tok.clear_cache()
    assert tok.many([a, b]) == [tok(a), tok(b)]
    assert batches[-1] == [a, b]  # forgotten
    tok.clear_cache()


@pytest.mark.parametrize(
    ("name", "seen", "texts"),
    [
        ("char", ["一", "二"], ["一", "二", "三", "四", "五"]),  # seen texts, then the memo overflows
        ("jieba", [], ["一个", "两个", "三个", "四个", "一个"]),  # more new texts than the memo holds
    ],
)
def test_many_memo_overflow(monkeypatch, name, seen, texts):
    """Past the memo's size: correct results (texts seen before included), at most that many kept."""
    tok = get_tokenizer(name)
    tok.clear_cache()
    monkeypatch.setattr(tokenizers, "JOINED_CACHE", 3)
    try:
        assert tok.many(seen) == [tok(t) for t in seen]
        assert tok.many(texts) == [tok(t) for t in texts]
        assert len(tok.__dict__.get("_joined", {})) <= 3
    finally:
        tok.clear_cache()
    monkeypatch.setattr(tokenizers, "JOINED_CACHE", 3)
    texts = ["一个", "两个", "三个", "四个", "一个"]
    assert tok.many(texts) == [tok(t) for t in texts]
    assert len(tok.__dict__.get("_joined", {})) <= 3
    tok.clear_cache()

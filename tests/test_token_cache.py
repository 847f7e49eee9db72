"""The reference-token cache: a hit reads instead of tokenising, another tokenizer or normaliser
signature misses, a corrupt or mismatched entry is rebuilt (never trusted), scores are unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import create_bench.metrics.token_cache as token_cache
from create_bench.metrics.token_cache import entry_path, reference_tokens
from create_bench.metrics.tokens import tokenize_table
from create_bench.text import CharTokenizer, JiebaTokenizer, get_tokenizer

TEXTS = [["一只猫在沙发上睡觉", "猫咪睡觉"], ["男子在厨房做饭"], ["iPhone15 开箱评测！", "开箱", "评测"]]
KW = {"fingerprint": "fp1", "split": "test", "kind": "caption"}


def same(a, b) -> bool:
    return a.vocab == b.vocab and np.array_equal(a.ids, b.ids) and np.array_equal(a.offsets, b.offsets)


class CountingTokenizer(CharTokenizer):
    def __init__(self, sig: str = "char.1") -> None:
        self.calls, self.sig = 0, sig

    def signature(self) -> str:
        return self.sig

    def __call__(self, text: str) -> list[str]:
        self.calls += 1
        return super().__call__(text)


def test_miss_then_hit(tmp_path) -> None:
    tok = CountingTokenizer()
    first, status = reference_tokens(TEXTS, tok, cache_dir=tmp_path, **KW)
    assert status == "miss" and tok.calls == 6
    tok.clear_cache()
    again, status = reference_tokens(TEXTS, tok, cache_dir=tmp_path, **KW)
    assert status == "hit" and tok.calls == 6  # read, not tokenised
    assert same(first, again) and same(first, tokenize_table([t for r in TEXTS for t in r], CharTokenizer()))
    assert first.tokens(3) == ["iphone15", "开", "箱", "评", "测"]


def test_off_neither_reads_nor_writes(tmp_path) -> None:
    _, status = reference_tokens(TEXTS, CountingTokenizer(), cache_dir=tmp_path, use_cache=False, **KW)
    assert status == "off" and not any(tmp_path.rglob("*.tok"))


@pytest.mark.parametrize(
    "change",
    [
        {"tok": "char.2"},  # another tokenizer/dictionary signature
        {"fingerprint": "fp2"},
        {"split": "validation"},
        {"kind": "title"},
    ],
)
def test_another_key_misses(tmp_path, change) -> None:
    reference_tokens(TEXTS, CountingTokenizer(), cache_dir=tmp_path, **KW)
    tok = CountingTokenizer(change.pop("tok", "char.1"))
    _, status = reference_tokens(TEXTS, tok, cache_dir=tmp_path, **{**KW, **change})
    assert status == "miss" and tok.calls == 6


def test_normaliser_and_dictionary_are_in_the_key(tmp_path, monkeypatch) -> None:
    tok = CountingTokenizer()
    key = token_cache.cache_key("fp", "test", "caption", tok)
    monkeypatch.setattr(token_cache, "NORMALIZER_NAME", "nfkc-lower-ws.2")
    assert entry_path(tmp_path, token_cache.cache_key("fp", "test", "caption", tok)) != entry_path(
        tmp_path, key
    )
    jieba_sig = JiebaTokenizer().signature()
    assert "dict." in jieba_sig and key["tok"] == "char.1"


def test_changed_texts_under_the_same_key_are_rebuilt(tmp_path) -> None:
    reference_tokens(TEXTS, CountingTokenizer(), cache_dir=tmp_path, **KW)
    other = [["狗在跑"], *TEXTS[1:]]
    tok = CountingTokenizer()
    table, status = reference_tokens(other, tok, cache_dir=tmp_path, **KW)
    assert status == "rebuilt" and tok.calls == 5 and table.tokens(0) == ["狗", "在", "跑"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage"])
def test_corrupt_entry_is_rebuilt(tmp_path, damage, caplog) -> None:
    good, _ = reference_tokens(TEXTS, CountingTokenizer(), cache_dir=tmp_path, **KW)
    (path,) = tmp_path.rglob("*.tok")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-100] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = bytearray()
    else:
        data = bytearray(b"\x00" * 200)
    path.write_bytes(bytes(data))
    tok = CountingTokenizer()
    table, status = reference_tokens(TEXTS, tok, cache_dir=tmp_path, **KW)
    assert status == "rebuilt" and tok.calls == 6 and same(table, good)
    assert "unusable" in caplog.text
    _, status = reference_tokens(TEXTS, tok, cache_dir=tmp_path, **KW)
    assert status == "hit"  # the rebuilt entry is good again


def test_unwritable_cache_still_scores(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    table, status = reference_tokens(TEXTS, CountingTokenizer(), cache_dir=blocker, **KW)
    assert status == "miss" and len(table) == 6


def test_scores_with_a_warm_cache_equal_cold_and_uncached(tmp_path) -> None:
    from create_bench.metrics.captioning import caption_statistics

    tok = get_tokenizer("jieba")
    references = {f"v{i}": r for i, r in enumerate(TEXTS)}
    preds = {"v0": "猫在睡觉", "v1": "男人做饭", "v2": "开箱"}
    plain = caption_statistics(preds, references, tokenizer=tok)
    for _ in range(2):  # cold, then warm
        table, _status = reference_tokens(TEXTS, tok, cache_dir=tmp_path, **KW)
        cached = caption_statistics(preds, references, tokenizer=tok, reference_tokens=table)
        for field in ("bleu", "rouge", "cider"):
            assert np.array_equal(getattr(cached, field), getattr(plain, field))


# ------------------------------------------------------------------------------------------------
# through create-bench score

WORDS = ["一只", "小猫", "在", "沙发", "上", "睡觉", "男子", "厨房", "做饭", "美丽", "风景", "公园"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    from create_bench.data.build import DatasetWriter

    out = tmp_path_factory.mktemp("tokcache") / "mini"
    rng = np.random.default_rng(0)
    with DatasetWriter(out, name="mini", categories=["美食", "旅行"], shard_size=10) as w:
        for i in range(16):
            w.add(
                {
                    "vid": f"vid{i:03d}",
                    "split": "test",
                    "category": i % 2,
                    "titles": ["".join(rng.choice(WORDS, 3)) for _ in range(10)],
                    "captions": ["".join(rng.choice(WORDS, 7)) for _ in range(10)],
                    "video": {"bytes": b"not-decoded", "path": None},
                    "num_frames": 8,
                }
            )
    return out


@pytest.fixture(scope="module")
def refs(dataset) -> dict:
    from create_bench.data.shards import read_table

    return read_table(dataset, "test", columns=["vid", "titles", "captions"]).to_pydict()


@pytest.mark.parametrize("protocol", ["multi-reference", "single-reference"])
def test_score_backends_and_cache_states_give_identical_results(tmp_path, dataset, refs, protocol) -> None:
    from create_bench.cli import main
    from create_bench.predictions import write_predictions
    from create_bench.scoring import score_predictions

    gens = {
        vid: {"caption": refs["captions"][i][1][:5] + "在", "title": refs["titles"][i][0][:3]}
        for i, vid in enumerate(refs["vid"])
    }
    write_predictions(tmp_path / "p", generations=gens)
    kw = {"bootstrap": 50, "protocol": protocol}
    cache = tmp_path / "cache"
    coco = score_predictions(tmp_path / "p", dataset, "test", metric_backend="coco", token_cache=False, **kw)
    cold = score_predictions(tmp_path / "p", dataset, "test", token_cache=cache, **kw)
    assert len(list(cache.rglob("*.tok"))) == 2  # one entry per kind
    warm = score_predictions(tmp_path / "p", dataset, "test", token_cache=cache, **kw)
    for r in (cold, warm):
        assert r["signature"] == coco["signature"] and r["ci"].keys() == coco["ci"].keys()
        for g in ("title", "caption"):
            for m, v in coco["scores"][g].items():
                assert r["scores"][g][m] == pytest.approx(v, rel=1e-9, abs=1e-12), (g, m)
    assert warm["scores"] == cold["scores"] and warm["ci"] == cold["ci"]
    argv = ["score", "--predictions", str(tmp_path / "p"), "--data", str(dataset), "--bootstrap", "0"]
    assert main([*argv, "--metric-backend", "coco"]) == 0
    with pytest.raises(SystemExit):
        main([*argv, "--metric-backend", "nope"])

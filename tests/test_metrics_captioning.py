"""Captioning scores against pycocoevalcap called directly on the same tokens (1e-9)."""

from __future__ import annotations

import doctest
import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

import create_bench.metrics.captioning as captioning
from create_bench.errors import BackendUnavailable, MetricInputError
from create_bench.metrics.captioning import caption_scores, caption_statistics
from create_bench.text import get_tokenizer

WORDS = ["一个", "男人", "女人", "在", "厨房", "里", "做饭", "公园", "跑步", "小狗", "和", "猫", "玩耍", "视频",
         "展示", "了", "美丽", "的", "风景", "旅行", "iPhone15", "开箱", "评测", "，", "。", "ＡＢＣ"]  # fmt: skip


def corpus(n: int, seed: int, max_refs: int = 10) -> tuple[dict[str, str], dict[str, list[str]]]:
    rng = np.random.default_rng(seed)

    def sent(lo: int, hi: int) -> str:
        return "".join(rng.choice(WORDS, rng.integers(lo, hi)))

    refs = {f"v{i:03d}": [sent(4, 14) for _ in range(rng.integers(1, max_refs + 1))] for i in range(n)}
    preds = {}
    for vid, rs in refs.items():  # some predictions copy pieces of a reference, so n-grams match
        base = rs[0]
        preds[vid] = (
            base[: rng.integers(2, len(base) + 1)] + sent(0, 4) if rng.random() < 0.7 else sent(1, 10)
        )
    return preds, refs


def direct(preds: dict[str, str], refs: dict[str, list[str]], tok: str) -> dict[str, float]:
    """pycocoevalcap's scorers on our tokens, exactly as its own evaluation script calls them."""
    t = get_tokenizer(tok)
    gts = {v: [" ".join(t(r)) for r in rs] for v, rs in refs.items()}
    res = {v: [" ".join(t(preds[v]))] for v in refs}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    rouge, _ = Rouge().compute_score(gts, res)
    cider, _ = Cider().compute_score(gts, res)
    out = {f"BLEU-{k + 1}": 100 * b for k, b in enumerate(bleu)}
    out.update({"ROUGE-L": 100 * rouge, "CIDEr": 100 * cider})
    return out


@pytest.mark.parametrize("tok", ["jieba", "char"])
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocoevalcap(tok: str, seed: int) -> None:
    preds, refs = corpus(150, seed)
    got = caption_scores(preds, refs, tokenizer=tok)
    ref = direct(preds, refs, tok)
    assert got.keys() == ref.keys()
    for k in ref:
        assert got[k] == pytest.approx(ref[k], abs=1e-9), k


def test_subset_and_bootstrap_aggregation_match_pycocoevalcap() -> None:
    preds, refs = corpus(60, 2)
    stats = caption_statistics(preds, refs, tokenizer="char")
    # a subset's BLEU and ROUGE-L equal pycocoevalcap run on just that subset
    subset = [v for i, v in enumerate(stats.vids) if i % 3 == 0]
    sub = stats.subset(np.array([v in set(subset) for v in stats.vids])).scores()
    ref = direct({v: preds[v] for v in subset}, {v: refs[v] for v in subset}, "char")
    for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert sub[k] == pytest.approx(ref[k], abs=1e-9), k
    # a subset's CIDEr is the mean of the split-level per-video CIDEr (document frequencies fixed)
    assert sub["CIDEr"] == pytest.approx(100 * stats.cider[::3].mean(), abs=1e-9)
    # integer resample weights == pycocoevalcap on the corpus with those videos repeated
    rng = np.random.default_rng(0)
    w = rng.integers(0, 3, size=len(stats))
    w[0] = 1
    rep_p, rep_r = {}, {}
    for v, n in zip(stats.vids, w):
        for j in range(n):
            rep_p[f"{v}#{j}"], rep_r[f"{v}#{j}"] = preds[v], refs[v]
    weighted = stats.weighted_scores(w[None, :])
    ref = direct(rep_p, rep_r, "char")
    for k in ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L"):
        assert weighted[k][0] == pytest.approx(ref[k], abs=1e-9), k


def test_cider_uses_document_frequencies_of_all_references_given() -> None:
    preds, refs = corpus(40, 3)
    full = caption_statistics(preds, refs, tokenizer="char")
    half = list(refs)[:20]
    alone = caption_statistics({v: preds[v] for v in half}, {v: refs[v] for v in half}, tokenizer="char")
    assert not np.allclose(full.cider[:20], alone.cider)  # so the split must always be scored whole


def test_perfect_and_degenerate_predictions() -> None:
    refs = {"a": ["一只猫在睡觉", "猫在沙发上睡觉"], "b": ["男人在厨房做饭"], "c": ["小狗在公园里跑"]}
    perfect = caption_scores({v: r[0] for v, r in refs.items()}, refs, tokenizer="char")
    assert perfect["BLEU-4"] == pytest.approx(100.0) and perfect["ROUGE-L"] == pytest.approx(100.0)
    constant = caption_scores(dict.fromkeys(refs, "在"), refs, tokenizer="char")
    assert constant["BLEU-4"] < 1e-3 and constant["CIDEr"] < perfect["CIDEr"]
    # only punctuation: scored as an empty hypothesis (zero), not an error and not a free score
    assert caption_scores(dict.fromkeys(refs, "！！"), refs, tokenizer="char")["ROUGE-L"] == 0.0


def test_normalisation_makes_full_width_and_case_equal() -> None:
    refs = {"a": ["iPhone15 评测"], "b": ["ＡＢＣ 开箱"]}
    s = caption_scores({"a": "ＩＰＨＯＮＥ１５评测！", "b": "abc开箱"}, refs, tokenizer="jieba")
    assert s["BLEU-1"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "preds, refs, match",
    [
        ({"a": "x"}, {"a": ["x"], "b": ["y"]}, r"missing 1: 'b'"),
        ({"a": "x", "b": "y", "z": "q"}, {"a": ["x"], "b": ["y"]}, r"extra 1: 'z'"),
        ({"a": 3}, {"a": ["x"]}, "vid 'a' is int, not a string"),
        ({"a": "  "}, {"a": ["x"]}, "vid 'a' is empty"),
        ({"a": "x"}, {"a": []}, "non-empty list"),
        ({"a": "x"}, {"a": "x"}, "non-empty list"),
        ({"a": "x"}, {"a": ["x", None]}, "reference 1 of vid 'a'"),
        ({"a": "x"}, {"a": ["。。"]}, "no tokens"),
        (["x"], {"a": ["x"]}, "dicts keyed by vid"),
    ],
)
def test_input_errors(preds, refs, match) -> None:
    with pytest.raises(MetricInputError, match=match):
        caption_scores(preds, refs, tokenizer="char")


def test_many_missing_ids_are_listed_and_counted() -> None:
    refs = {f"v{i:02d}": ["好"] for i in range(30)}
    with pytest.raises(MetricInputError, match=r"missing 30: 'v00', .*'v09' \(\+20 more\)"):
        caption_scores({}, refs, tokenizer="char")


def test_meteor_without_java(monkeypatch) -> None:
    monkeypatch.setattr(captioning.shutil, "which", lambda name: None)
    with pytest.raises(BackendUnavailable, match="Java"):
        caption_scores({"a": "猫"}, {"a": ["猫"]}, tokenizer="char", meteor=True)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs a Java runtime on this machine")
def test_meteor_equals_pycocoevalcap() -> None:
    from pycocoevalcap.meteor.meteor import Meteor

    preds, refs = corpus(20, 4, max_refs=3)
    stats = caption_statistics(preds, refs, tokenizer="jieba", meteor=True)
    t = get_tokenizer("jieba")
    gts = {v: [" ".join(t(r)) for r in rs] for v, rs in refs.items()}
    res = {v: [" ".join(t(preds[v]))] for v in refs}
    score, per = Meteor().compute_score(gts, res)
    assert stats.scores()["METEOR"] == pytest.approx(100 * score, abs=1e-9)
    np.testing.assert_allclose(stats.meteor, per, atol=1e-12)


def test_doctests() -> None:
    result = doctest.testmod(captioning)
    assert result.attempted > 0 and result.failed == 0

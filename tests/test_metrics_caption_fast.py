"""The ``fast`` captioning backend equals pycocoevalcap (the ``coco`` backend) per video, 1e-9 relative.

Property-based on random token sequences (small alphabets so n-grams repeat, several videos so
CIDEr's document frequencies matter), plus named edge cases.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import create_bench.metrics.captioning as captioning
from create_bench.errors import ConfigError, MetricInputError
from create_bench.metrics.caption_fast import fast_statistics, lcs_bits
from create_bench.metrics.captioning import caption_statistics
from create_bench.metrics.tokens import TokenTable

RTOL = 1e-9


def coco(hyps: list[list[int]], refs: list[list[list[int]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """pycocoevalcap's per-video statistics on the same tokens (``t<id>`` strings)."""
    vids = [f"v{i}" for i in range(len(hyps))]
    res = {v: " ".join(f"t{t}" for t in h) for v, h in zip(vids, hyps)}
    gts = {v: [" ".join(f"t{t}" for t in r) for r in rs] for v, rs in zip(vids, refs)}
    return (
        captioning._bleu_stats(res, gts, vids),
        captioning._rouge(res, gts, vids),
        captioning._cider(res, gts, vids),
    )


def fast(hyps: list[list[int]], refs: list[list[list[int]]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ref_table = TokenTable.encode([[f"t{t}" for t in r] for rs in refs for r in rs])
    ref_table, hyp_table = ref_table.extend([[f"t{t}" for t in h] for h in hyps])
    return fast_statistics(hyp_table, ref_table, np.array([len(rs) for rs in refs]))


def assert_same(hyps: list[list[int]], refs: list[list[list[int]]]) -> tuple[np.ndarray, ...]:
    want, got = coco(hyps, refs), fast(hyps, refs)
    for name, w, g in zip(("bleu", "rouge", "cider"), want, got):
        assert g.shape == w.shape, name
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=0, err_msg=name)
    return got


@st.composite
def corpora(draw: st.DrawFn) -> tuple[list[list[int]], list[list[list[int]]]]:
    alphabet = draw(st.integers(2, 6))
    seq = st.lists(st.integers(0, alphabet - 1), min_size=1, max_size=40)
    n_videos = draw(st.integers(1, 6))
    hyps, refs = [], []
    for _ in range(n_videos):
        hyps.append(draw(st.lists(st.integers(0, alphabet), min_size=0, max_size=40)))  # alphabet: unseen
        refs.append(draw(st.lists(seq, min_size=1, max_size=12)))
    return hyps, refs


@settings(max_examples=200, deadline=None, derandomize=True)
@given(corpora())
def test_fast_equals_pycocoevalcap_on_random_tokens(corpus) -> None:
    assert_same(*corpus)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.integers(0, 3), max_size=200), st.lists(st.integers(0, 3), max_size=200))
def test_lcs_bits_equals_dynamic_programming(a, b) -> None:
    from pycocoevalcap.rouge.rouge import my_lcs

    assert lcs_bits(a, b) == my_lcs(a, b) == lcs_bits(b, a)


def test_duplicate_references() -> None:
    assert_same([[1, 2, 3, 4], [5, 6]], [[[1, 2, 3], [1, 2, 3], [1, 2, 3]], [[5, 6, 7], [5, 6, 7]]])


def test_closest_reference_length_ties_to_the_shorter() -> None:
    bleu, _, _ = assert_same(
        [[1, 2, 3, 4, 5], [1, 2]], [[[1, 2, 3, 4, 5, 6], [1, 2, 3, 4]], [[1], [1, 2, 3]]]
    )
    assert bleu[:, 1].tolist() == [4, 1]


def test_an_order_with_no_matches() -> None:
    # unigrams match, no bigram does: BLEU-2..4 correct counts 0, CIDEr's 2..4-gram terms 0
    bleu, _, cider = assert_same([[1, 3, 2, 4], [2, 1]], [[[1, 2, 3, 4]], [[1, 2, 1, 2]]])
    assert bleu[0, 6:].tolist() == [4, 0, 0, 0]
    assert (cider > 0).all()


def test_one_video_corpus_has_cider_zero() -> None:
    _, rouge, cider = assert_same([[1, 2, 3]], [[[1, 2, 3], [1, 2]]])
    assert cider.tolist() == [0.0] and rouge[0] == 1.0


def test_prediction_longer_than_every_reference_and_single_tokens() -> None:
    assert_same([[1, 2, 3, 1, 2, 3, 1, 2, 3], [7], [1]], [[[1, 2], [3]], [[7], [8]], [[2], [1]]])


@pytest.mark.parametrize("length", [63, 64, 65, 130])
def test_long_predictions_around_the_word_size(length: int) -> None:
    rng = np.random.default_rng(length)
    hyps = [rng.integers(0, 5, length).tolist(), rng.integers(0, 5, 3).tolist()]
    refs = [[rng.integers(0, 5, n).tolist() for n in (10, 70, 140)], [[1, 2, 3]]]
    assert_same(hyps, refs)


def test_empty_prediction_after_tokenisation_matches_coco() -> None:
    preds = {"a": "，。！", "b": "猫在沙发上"}
    refs = {"a": ["一只猫", "猫咪睡觉"], "b": ["猫在沙发上睡觉"]}
    stats = {b: caption_statistics(preds, refs, tokenizer="char", backend=b) for b in ("fast", "coco")}
    for field in ("bleu", "rouge", "cider"):
        np.testing.assert_allclose(getattr(stats["fast"], field), getattr(stats["coco"], field), rtol=RTOL)
    assert stats["fast"].rouge[0] == 0.0 and stats["fast"].cider[0] == 0.0
    assert stats["fast"].bleu[0, 0] == 0 and stats["fast"].bleu[0, 1] == 3  # closest to 0 tokens


@pytest.mark.parametrize("tok", ["jieba", "char"])
def test_backends_equal_through_the_text_pipeline(tok: str) -> None:
    from tests.test_metrics_captioning import corpus

    preds, refs = corpus(120, 3)
    a = caption_statistics(preds, refs, tokenizer=tok, backend="fast")
    b = caption_statistics(preds, refs, tokenizer=tok, backend="coco")
    for field in ("bleu", "rouge", "cider", "refs"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=RTOL, err_msg=field)
    assert a.tokenizer == b.tokenizer and a.vids == b.vids


def test_reference_tokens_given_are_used_and_checked() -> None:
    preds, refs = {"a": "猫睡觉"}, {"a": ["not these", "texts"]}
    table = TokenTable.encode([["猫", "在", "睡", "觉"], ["狗"]])  # what the tokens say is scored
    got = caption_statistics(preds, refs, tokenizer="char", reference_tokens=table)
    want = caption_statistics(preds, {"a": ["猫在睡觉", "狗"]}, tokenizer="char")
    np.testing.assert_array_equal(got.bleu, want.bleu)
    assert got.rouge == want.rouge
    with pytest.raises(MetricInputError, match="3 texts for 2 references"):
        caption_statistics(preds, refs, reference_tokens=TokenTable.encode([["猫"], ["狗"], ["x"]]))
    with pytest.raises(MetricInputError, match="reference 1 of vid 'a' has no tokens"):
        caption_statistics(preds, refs, reference_tokens=TokenTable.encode([["猫"], []]))


def test_unknown_backend() -> None:
    with pytest.raises(ConfigError, match="unknown metric backend 'numba'"):
        caption_statistics({"a": "猫"}, {"a": ["猫"]}, backend="numba")


def test_dense_ranks_are_numpy_unique_inverse() -> None:
    from create_bench.metrics.caption_fast import _dense_ranks

    rng = np.random.default_rng(11)
    for n in (0, 1, 2, 17, 5000):
        keys = rng.integers(0, max(1, n // 3), n).astype(np.int64) * 1_000_003
        ranks, size = _dense_ranks(keys)
        uniq, inv = np.unique(keys, return_inverse=True)
        assert size == len(uniq) and np.array_equal(ranks, inv.reshape(-1)) and ranks.dtype == np.int64

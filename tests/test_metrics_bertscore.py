"""BERTScore and ACTEr-r: equal to the ``bert_score`` package on the same tiny random BERT (saved to
a temp directory, nothing downloaded), hand-checked ACTEr-r cases, and per-video aggregation."""

from __future__ import annotations

import bert_score  # noqa: E402  (the dev extra installs it; a missing package fails, never skips)
import numpy as np
import pytest

from create_bench.errors import ConfigError, MetricInputError
from create_bench.features.text_metrics import TextMetricOptions, clear_reference_cache, embedding_statistics
from create_bench.metrics.bertscore import (
    acter_weights,
    harmonic,
    match,
    read_baseline,
    token_omega,
)
from create_bench.synthetic.random_bert import TINY, random_bert
from create_bench.text.normalize import normalize

CANDS = ["番茄为什么会往左跑？", "红色的猫慢慢移动", "abc vlog 太震惊了", "狗", "看完你就懂了！！"]
REFS = [
    ["番茄竟然往左跑了！看完你就懂", "为什么番茄会跑"],
    ["红色的猫在厨房里慢慢地向左移动"],
    ["没想到 abc 太绝了", "看完震惊", "vlog 原来如此"],
    ["小狗跑", "狗在公园里跳"],
    ["原来是这样", "看完就懂了"],
]
VIDS = [f"v{i}" for i in range(len(CANDS))]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(random_bert(tmp_path_factory.mktemp("tiny-bert"), TINY, seed=0))


def _reference(tiny, idf, layer=3, **kw):
    cands = [normalize(c) for c in CANDS]  # ours normalises first; give bert_score the same text
    refs = [[normalize(t) for t in r] for r in REFS]
    out = bert_score.score(
        cands, refs, model_type=tiny, num_layers=layer, idf=idf, nthreads=0, batch_size=2, **kw
    )
    return [t.numpy().astype(np.float64) for t in out]


@pytest.mark.parametrize("idf", [False, True])
def test_equals_bert_score(tiny, idf):
    clear_reference_cache()
    s = embedding_statistics(TextMetricOptions(tiny, layer=3, idf=idf, baseline="none"), VIDS, CANDS, REFS)
    p, r, f = _reference(tiny, idf)
    np.testing.assert_allclose(s.p, p, atol=1e-6, rtol=0)
    np.testing.assert_allclose(s.r, r, atol=1e-6, rtol=0)
    np.testing.assert_allclose(s.f, f, atol=1e-6, rtol=0)
    assert s.signatures["BERTScore"].startswith("bertscore.v1,enc:")
    assert f"idf:{'on' if idf else 'off'}" in s.signatures["BERTScore"]


def test_rescale_from_baseline_file(tiny, tmp_path):
    rows = ["LAYER,P,R,F"] + [f"{k},{0.3 + k / 100},{0.31 + k / 100},{0.32 + k / 100}" for k in range(5)]
    path = tmp_path / "baseline.tsv"
    path.write_text("\n".join(rows) + "\n")
    assert read_baseline(path, 3) == pytest.approx((0.33, 0.34, 0.35))
    s = embedding_statistics(TextMetricOptions(tiny, layer=3, baseline=str(path)), VIDS, CANDS, REFS)
    p, r, f = _reference(tiny, False, lang="zh", rescale_with_baseline=True, baseline_path=str(path))
    cols = s.per_video()
    np.testing.assert_allclose(cols["BERTScore-P"] / 100, p, atol=1e-6, rtol=0)
    np.testing.assert_allclose(cols["BERTScore-R"] / 100, r, atol=1e-6, rtol=0)
    np.testing.assert_allclose(cols["BERTScore-F"] / 100, f, atol=1e-6, rtol=0)
    assert "rescale:file-0.33,0.34,0.35" in s.signatures["BERTScore"]


def test_bad_baseline_file(tmp_path):
    bad = tmp_path / "b.tsv"
    bad.write_text("L,P\n0,1\n")
    with pytest.raises(MetricInputError, match="LAYER,P,R,F"):
        read_baseline(bad, 0)


def _omega_for(refs, value):
    return [[[value] * len(normalize(t)) for t in r] for r in refs]


@pytest.mark.parametrize("idf", [False, True])
def test_acter_with_equal_omega_is_bertscore(tiny, idf):
    for value in (0.0, 0.3, 1.0):
        opts = TextMetricOptions(
            tiny, layer=3, idf=idf, baseline="none", rule="idf*(eps+omega)" if idf else "eps+omega"
        )
        s = embedding_statistics(opts, VIDS, CANDS, REFS, _omega_for(REFS, value))
        np.testing.assert_allclose(s.acter, s.f, atol=1e-12)
        assert "weights:omega" in s.signatures["ACTEr-r"]
    s = embedding_statistics(TextMetricOptions(tiny, layer=3), VIDS, CANDS, REFS, None)
    np.testing.assert_allclose(s.acter, s.f, atol=1e-12)
    assert s.signatures["ACTEr-r"].startswith("acter-r.v1,weights:uniform,")


def test_acter_hand_checked():
    """Candidate [CLS] a [SEP]; reference [CLS] a b [SEP] with omega(a) = 0, omega(b) = 1, eps = 0.1.
    Token vectors are orthonormal except cos(a, b) = 0.6: matching is done by hand below."""
    e = np.eye(4, dtype=np.float32)
    a, b = e[1], 0.6 * e[1] + 0.8 * e[2]
    cls, sep = e[0], e[3]
    cand = np.stack([cls, a, sep])
    ref = np.stack([cls, a, b, sep])
    special = np.array([1, 0, 0, 1], bool)
    base = np.array([0.0, 1, 1, 0])
    om = token_omega(np.array([[0, 0], [0, 1], [1, 2], [0, 0]]), [0.0, 1.0], special)
    w = acter_weights(base, om, special, 0.1, "eps+omega")
    assert w.tolist() == pytest.approx([0, 0.1, 1.1, 0])
    p, (r_bs, r_ac) = match(cand, ref, np.array([0.0, 1, 0]), [base, w], np.array([0]))
    # precision: a's best match is a (1.0); recall: a -> 1.0, b -> 0.6 (its best candidate token is a)
    assert p[0] == pytest.approx(1.0)
    assert r_bs[0] == pytest.approx((1.0 + 0.6) / 2)
    assert r_ac[0] == pytest.approx((0.1 * 1.0 + 1.1 * 0.6) / 1.2)
    assert harmonic(p, r_ac)[0] == pytest.approx(2 * 1.0 * (0.76 / 1.2) / (1.0 + 0.76 / 1.2))
    # marking the matched character attractive instead raises ACTEr-r above BERTScore
    om2 = token_omega(np.array([[0, 0], [0, 1], [1, 2], [0, 0]]), [1.0, 0.0], special)
    _, (r2,) = match(
        cand, ref, np.array([0.0, 1, 0]), [acter_weights(base, om2, special, 0.1, "eps+omega")], np.array([0])
    )
    assert r2[0] == pytest.approx((1.1 * 1.0 + 0.1 * 0.6) / 1.2) and r2[0] > r_bs[0]


def test_acter_max_over_references_is_per_measure():
    """Two references: P, R and F are each maxed separately (as bert_score does)."""
    e = np.eye(3, dtype=np.float32)
    cand = np.stack([e[0], e[1]])
    refs = np.stack([e[0], e[1], e[2], e[2]])  # ref 0: [x0, x1]; ref 1: [x2, x2]
    w = np.ones(4)
    p, (r,) = match(cand, refs, np.ones(2), [w], np.array([0, 2]))
    assert p.tolist() == [1.0, 0.0] and r.tolist() == [1.0, 0.0]


def test_token_omega_rejects_short_omega():
    with pytest.raises(MetricInputError, match="beyond"):
        token_omega(np.array([[0, 3]]), [0.1], np.array([False]))


def test_options_are_checked(tiny):
    with pytest.raises(ConfigError, match="rule"):
        TextMetricOptions(tiny, rule="max")
    with pytest.raises(ConfigError, match="eps"):
        TextMetricOptions(tiny, eps=2.0)
    with pytest.raises(ConfigError, match="cannot load text encoder"):
        embedding_statistics(TextMetricOptions("/nonexistent/enc"), VIDS, CANDS, REFS)
    with pytest.raises(ConfigError, match="layer"):
        embedding_statistics(TextMetricOptions(tiny, layer=9), VIDS, CANDS, REFS)


def test_per_video_statistics_aggregate(tiny):
    s = embedding_statistics(TextMetricOptions(tiny, layer=2), VIDS, CANDS, REFS, _omega_for(REFS, 0.5))
    scores = s.scores()
    assert scores["BERTScore-F"] == pytest.approx(100 * s.f.mean())
    sub = s.subset(np.array([True, False, True, False, True]))
    assert sub.scores()["ACTEr-r"] == pytest.approx(100 * s.acter[[0, 2, 4]].mean())
    w = np.array([[2, 0, 1, 1, 1]], float)
    assert s.weighted_scores(w)["BERTScore-P"][0] == pytest.approx(100 * (w[0] @ s.p) / 5)


def test_reference_embeddings_are_reused(tiny, monkeypatch):
    """The second system scored on the same references encodes only its candidates."""
    from create_bench.features import text_encoder

    clear_reference_cache()
    opts = TextMetricOptions(tiny, layer=3)
    embedding_statistics(opts, VIDS, CANDS, REFS)
    calls = []
    enc = text_encoder.get_encoder(tiny, layer=3)
    real = enc.encode
    monkeypatch.setattr(enc, "encode", lambda texts: calls.append(len(texts)) or real(texts))
    embedding_statistics(opts, VIDS, list(reversed(CANDS)), REFS)
    assert calls == [len(set(normalize(c) for c in CANDS))]


def test_random_bert_writes_a_loadable_encoder_and_never_overwrites_foreign_files(tmp_path, capsys):
    """``python -m create_bench.synthetic.random_bert OUT``: a directory ``--text-encoder`` loads
    (nothing downloaded); rewriting its own output is allowed, a directory with other files is not."""
    from create_bench.errors import OutputError
    from create_bench.features.text_encoder import TextEncoder
    from create_bench.synthetic.random_bert import main

    out = tmp_path / "bert"
    assert main([str(out), "--seed", "3"]) == 0 and "wrote a random BERT" in capsys.readouterr().out
    enc = TextEncoder(str(out))
    assert enc.layer == TINY.layers and enc.model.config.hidden_size == TINY.hidden
    first = (out / "model.safetensors").read_bytes()
    random_bert(out, TINY, seed=3)  # its own previous output: replaced, same weights
    assert (out / "model.safetensors").read_bytes() == first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="notes.txt"):
        random_bert(tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]

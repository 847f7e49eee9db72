"""The ACTEr-r path end to end: omega in the shards (sample and build --attractiveness, with its
errors), BERTScore-F/ACTEr-r in scoring with intervals and per category, the absent line, and
metric-agreement on judgments whose truth is known."""

from __future__ import annotations

import json

import numpy as np
import pytest

from create_bench.data.attractiveness import check_omega, read_attractiveness
from create_bench.data.shards import read_table
from create_bench.errors import DataError
from create_bench.synthetic.annotators import simulate_omega
from create_bench.synthetic.random_bert import BertShape, random_bert
from create_bench.text.normalize import normalize


@pytest.fixture(scope="module")
def tiny_enc(tmp_path_factory):
    return str(
        random_bert(tmp_path_factory.mktemp("enc"), BertShape(layers=2, hidden=16, intermediate=32), seed=1)
    )


def test_sample_has_simulated_omega(tiny_dataset):
    t = read_table(tiny_dataset, "test", columns=["vid", "titles", "title_omega"]).to_pylist()
    values = []
    for row in t:
        assert len(row["title_omega"]) == len(row["titles"])
        for title, om in zip(row["titles"], row["title_omega"]):
            assert len(om) == len(normalize(title))
            values += om
    v = np.array(values)
    assert ((v >= 0) & (v <= 1)).all() and np.allclose(np.round(v * 10), v * 10, atol=1e-5)
    assert 0 < (v == 0).mean() < 0.5 and v.max() >= 0.6


def test_simulation_is_a_pure_function():
    assert simulate_omega("番茄为什么会跑？", 7) == simulate_omega("番茄为什么会跑？", 7)
    om = simulate_omega("为什么为什么为什么为什么", 3)
    assert np.mean(om) > np.mean(simulate_omega("今天的厨房日常番茄移动", 3))


def test_check_omega_rejects():
    with pytest.raises(DataError, match="has 2 values"):
        check_omega([[0.1, 0.2]], ["abc"])
    with pytest.raises(DataError, match="not a number in"):
        check_omega([[0.1, 1.5, 0.0]], ["abc"])


def _write(path, rows):
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", "utf-8")
    return path


def test_read_attractiveness_errors(tmp_path):
    titles = {"v1": ["番茄跑了", "快看"], "v2": ["猫"]}
    ok = [
        {"vid": "v1", "title_index": 0, "omega": [0.1, 0.2, 0.3, 0.4]},
        {"vid": "v1", "title_index": 1, "omega": [1, 0]},
    ]
    assert read_attractiveness(_write(tmp_path / "a.jsonl", ok), titles)["v1"][1] == [1.0, 0.0]
    cases = [
        ([{"vid": "zz", "title_index": 0, "omega": [0.1]}], r"unknown vid.*row 1.*zz|zz.*unknown vid"),
        ([{"vid": "v2", "title_index": 0, "omega": [0.1, 0.2]}], "has 2 values"),
        ([{"vid": "v2", "title_index": 0, "omega": [-0.1]}], r"not a number in \[0, 1\]"),
        ([{"vid": "v2", "title_index": 3, "omega": [0.1]}], "title_index"),
        (ok[:1], r"not for titles \[1\]"),
    ]
    for rows, msg in cases:
        with pytest.raises(DataError, match=msg) as e:
            read_attractiveness(_write(tmp_path / "b.jsonl", rows), titles)
        assert "b.jsonl" in str(e.value)


def test_build_with_attractiveness(mini_release, tmp_path):
    from create_bench.data.fingerprint import fingerprint_dataset
    from create_bench.data.importer import build_from_release
    from create_bench.data.validate import validate_dataset

    test_items = json.loads(mini_release["test"].read_text("utf-8"))
    rows = [
        {"vid": it["vid"], "title_index": k, "omega": [0.5] * len(normalize(t))}
        for it in test_items
        for k, t in enumerate(it["ann_title"])
    ]
    att = _write(tmp_path / "omega.jsonl", rows)
    ann = [str(mini_release[s]) for s in ("train", "val", "test")]
    out = tmp_path / "ds"
    build_from_release(ann, None, out, features_dir=mini_release["features"], attractiveness=att, workers=1)
    t = read_table(out, "test", columns=["vid", "title_omega"]).to_pylist()
    assert all(r["title_omega"] and r["title_omega"][0][0] == pytest.approx(0.5) for r in t)
    assert read_table(out, "train", columns=["title_omega"]).column(0).null_count > 0
    validate_dataset(out)
    fp = fingerprint_dataset(out)
    out2 = tmp_path / "ds2"
    rows[0]["omega"][0] = 0.4
    build_from_release(
        ann,
        None,
        out2,
        features_dir=mini_release["features"],
        attractiveness=_write(tmp_path / "o2.jsonl", rows),
        workers=1,
    )
    assert fingerprint_dataset(out2) != fp  # omega enters the content fingerprint
    rows[0]["omega"] = rows[0]["omega"][:-1]
    with pytest.raises(DataError, match=r"o3.jsonl.*row 1|row 1.*o3.jsonl"):
        build_from_release(
            ann,
            None,
            tmp_path / "ds3",
            features_dir=mini_release["features"],
            attractiveness=_write(tmp_path / "o3.jsonl", rows),
            workers=1,
        )


def _predictions(tiny_dataset, tmp_path, kind_text):
    refs = read_table(tiny_dataset, "test", columns=["vid", "titles", "captions"]).to_pylist()
    d = tmp_path / "preds"
    d.mkdir()
    with open(d / "generations.jsonl", "w", encoding="utf-8") as fh:
        for i, r in enumerate(refs):
            fh.write(
                json.dumps(
                    {"vid": r["vid"], "title": kind_text(r, i), "caption": r["captions"][-1]},
                    ensure_ascii=False,
                )
                + "\n"
            )
    return d


def test_scoring_with_encoder(tiny_dataset, tmp_path, tiny_enc):
    from create_bench.results import format_table
    from create_bench.scoring import score_predictions

    preds = _predictions(tiny_dataset, tmp_path, lambda r, i: r["titles"][i % len(r["titles"])][:6])
    res = score_predictions(
        preds, tiny_dataset, "test", bootstrap=50, text_encoder=tiny_enc, token_cache=False
    )
    for group, metrics in (("title", ("BERTScore-F", "ACTEr-r")), ("caption", ("BERTScore-F",))):
        for m in metrics:
            lo, hi = res["ci"][group][m]
            assert lo <= res["scores"][group][m] <= hi
            cats = [c[group][m] for c in res["per_category"].values() if group in c and c["count"]]
            assert cats
    assert "ACTEr-r" not in res["scores"]["caption"]
    assert "acter-r.v1,weights:omega,eps:0.1" in res["signatures"]["title"]
    assert "BERTScore-F" in format_table(res, show_ci=True)
    plain = score_predictions(preds, tiny_dataset, "test", bootstrap=0, token_cache=False)
    assert "BERTScore-F" not in plain["scores"]["title"]
    assert "no text encoder configured" in format_table(plain)


def test_reference_embeddings_are_cached_on_disk(tiny_dataset, tmp_path, tiny_enc, monkeypatch, caplog):
    """A second process (the in-process cache cleared) reads the split's reference embeddings from
    the feature store and encodes only the generations, with bit-identical scores; another encoder
    misses; a corrupt entry is reported, recomputed and replaced."""
    from create_bench.features import text_encoder
    from create_bench.features.text_metrics import clear_reference_cache
    from create_bench.scoring import score_predictions

    calls: list[int] = []
    original = text_encoder.TextEncoder.encode
    monkeypatch.setattr(
        text_encoder.TextEncoder, "encode", lambda e, t: calls.append(len(t)) or original(e, t)
    )
    preds = _predictions(tiny_dataset, tmp_path, lambda r, i: r["titles"][0][:4])
    cache = tmp_path / "cache"
    n_refs = sum(
        len(t) for t in read_table(tiny_dataset, "test", columns=["titles"]).column("titles").to_pylist()
    )
    n_vids = read_table(tiny_dataset, "test", columns=["vid"]).num_rows

    def run():
        clear_reference_cache()
        calls.clear()
        return score_predictions(
            preds, tiny_dataset, "test", bootstrap=20, text_encoder=tiny_enc, token_cache=cache
        )

    first = run()
    assert n_refs in calls  # the titles' references were encoded
    entries = sorted((cache / "reference-embeddings").glob("*.safetensors"))
    assert [p.name.split("-")[0] for p in entries] == ["caption", "title"]
    second = run()
    assert calls and max(calls) <= n_vids  # only generations: the references came from disk
    assert second["scores"] == first["scores"] and second["ci"] == first["ci"]

    title_entry = next(p for p in entries if p.name.startswith("title-"))
    raw = bytearray(title_entry.read_bytes())
    raw[-5] ^= 0xFF
    title_entry.write_bytes(bytes(raw))
    with caplog.at_level("WARNING"):
        third = run()
    assert "fails its checksum" in caplog.text and n_refs in calls
    assert third["scores"] == first["scores"]
    calls.clear()
    assert run()["scores"] == first["scores"] and max(calls) <= n_vids  # the entry was replaced

    other = str(random_bert(tmp_path / "other-bert", BertShape(layers=2, hidden=16, intermediate=32), seed=2))
    clear_reference_cache()
    score_predictions(preds, tiny_dataset, "test", bootstrap=0, text_encoder=other, token_cache=cache)
    assert len(list((cache / "reference-embeddings").glob("*.safetensors"))) == 4  # its own entries


def test_workers_starting_together_encode_the_references_once(tmp_path, tiny_enc, monkeypatch):
    """Two scorers (a server's workers at start) warm the same split at once: one encodes the
    references under the entry's lock, the other waits and reads them from the feature store."""
    import threading
    import time

    from create_bench.features import text_encoder, text_metrics

    refs = [["番茄为什么会往左跑", "猫"], ["红色的猫慢慢移动"]]
    encoded: list[int] = []
    original = text_encoder.TextEncoder.encode

    def slow_encode(enc, texts):
        encoded.append(len(texts))
        time.sleep(0.5)  # long enough for the other thread to reach the lock
        return original(enc, texts)

    monkeypatch.setattr(text_encoder.TextEncoder, "encode", slow_encode)
    monkeypatch.setattr(text_metrics, "_REF_CACHE", {})  # each thread: a process that has nothing yet
    opts = text_metrics.TextMetricOptions(tiny_enc)
    cache = text_metrics.ReferenceCache(tmp_path / "cache", "fp", "test", "title")
    results = []

    def warm():
        text_metrics._REF_CACHE.clear()
        text_metrics.warm_references(opts, refs, cache)
        results.append(
            text_metrics._encode_references(text_metrics._encoder(opts), [t for r in refs for t in r])
        )

    threads = [threading.Thread(target=warm) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert encoded == [3]  # once, not once per worker
    assert np.array_equal(results[0][0].vectors, results[1][0].vectors)
    # Two threads loading encoders at once once left transformers' process-wide loading state
    # switched (models built afterwards had untied GPT-2 embeddings); loads are serialised now.
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=32, n_embd=16, n_layer=1, n_head=2))
    assert gpt.lm_head.weight is gpt.transformer.wte.weight


def test_metric_agreement_known_truth(tiny_dataset, tmp_path, tiny_enc):
    """Human scores that are a monotone function of one metric give Spearman (and Kendall) 100 for it."""
    from create_bench.commands.metric_agreement import metric_agreement

    refs = read_table(tiny_dataset, "test", columns=["vid", "titles"]).to_pylist()
    first = tmp_path / "j0.jsonl"
    rows = []
    for i, r in enumerate(refs):
        for cand in [r["titles"][0][: 3 + i % 5], r["titles"][1] + "吗", "番茄跑了"]:
            rows.append({"vid": r["vid"], "kind": "title", "candidate": cand, "annotator": "a", "score": 0})
    _write(first, rows)
    res0 = metric_agreement(first, tiny_dataset, "test", text_encoder=None, bootstrap=0, tokenizer="char")
    assert set(res0["metrics"]) == {"BLEU-4", "ROUGE-L", "CIDEr"}

    from create_bench.features.text_metrics import TextMetricOptions, embedding_statistics, load_omega

    opts = TextMetricOptions(tiny_enc)
    idx = {r["vid"]: r for r in refs}
    om = dict(
        zip(
            [r["vid"] for r in refs],
            load_omega(tiny_dataset, "test", [r["vid"] for r in refs], [len(r["titles"]) for r in refs]),
        )
    )
    st = embedding_statistics(
        opts,
        [x["vid"] for x in rows],
        [x["candidate"] for x in rows],
        [idx[x["vid"]]["titles"] for x in rows],
        [om[x["vid"]] for x in rows],
    )
    acter = st.per_video()["ACTEr-r"]
    judged = []
    for x, a in zip(rows, acter):  # two annotators whose mean is exp(ACTEr-r / 10): monotone in it
        judged += [
            {**x, "annotator": "a", "score": float(np.exp(a / 10)) - 0.5},
            {**x, "annotator": "b", "score": float(np.exp(a / 10)) + 0.5},
        ]
    res = metric_agreement(
        _write(tmp_path / "j.jsonl", judged), tiny_dataset, "test", text_encoder=opts, bootstrap=20
    )
    assert res["metrics"]["ACTEr-r"]["Spearman"] == pytest.approx(100.0)
    assert res["metrics"]["ACTEr-r"]["Kendall"] == pytest.approx(100.0)
    assert res["metrics"]["BERTScore-F"]["Spearman"] < 100.0
    assert res["metrics"]["ACTEr-r"]["ci"]["Spearman"][1] == pytest.approx(100.0)


def test_correlations_against_naive():
    from create_bench.metrics.agreement import correlations

    rng = np.random.default_rng(0)
    x = rng.integers(0, 4, 25).astype(float)
    y = x + rng.normal(size=25)
    got = correlations(x, y)
    conc = disc = tx = ty = 0
    for i in range(25):
        for j in range(i + 1, 25):
            s = np.sign(x[i] - x[j]) * np.sign(y[i] - y[j])
            conc += s > 0
            disc += s < 0
            tx += x[i] == x[j]
            ty += y[i] == y[j]
    n0 = 25 * 24 / 2
    assert got["Kendall"] == pytest.approx(100 * (conc - disc) / np.sqrt((n0 - tx) * (n0 - ty)))
    assert got["Pearson"] == pytest.approx(100 * np.corrcoef(x, y)[0, 1])
    rank = lambda v: np.array([np.mean(np.flatnonzero(np.sort(v) == e)) + 1 for e in v])  # noqa: E731
    assert got["Spearman"] == pytest.approx(100 * np.corrcoef(rank(x), rank(y))[0, 1])

"""score_predictions and ``create-bench score`` on real shards (built with the data layer's writer)."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from create_bench.cli import main
from create_bench.data.build import DatasetWriter
from create_bench.errors import ConfigError, PredictionError
from create_bench.metrics.captioning import caption_scores
from create_bench.predictions import load_predictions, write_predictions
from create_bench.results import load_results
from create_bench.scoring import compare_predictions, score_predictions
from create_bench.types import text_id

CATS = ["美食", "旅行", "宠物"]
N_VIDEOS, N_REFS, DIM = 24, 10, 32
WORDS = [
    "一只",
    "小猫",
    "在",
    "沙发",
    "上",
    "睡觉",
    "男子",
    "厨房",
    "做饭",
    "美丽",
    "风景",
    "旅行",
    "公园",
    "跑步",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("score") / "mini"
    rng = np.random.default_rng(0)
    with DatasetWriter(out, name="mini", categories=CATS, shard_size=10) as w:
        for i in range(N_VIDEOS):
            vid = f"vid{i:03d}"
            w.add(
                {
                    "vid": vid,
                    "split": "test",
                    "category": i % 3,
                    "titles": ["".join(rng.choice(WORDS, 3)) + str(k) for k in range(N_REFS)],
                    "captions": ["".join(rng.choice(WORDS, 6)) for _ in range(N_REFS)],
                    "video": {"bytes": b"not-decoded", "path": None},
                    "num_frames": 8,
                }
            )
    return out


@pytest.fixture(scope="module")
def refs(dataset: Path) -> dict:
    from create_bench.data.shards import read_table

    t = read_table(dataset, "test", columns=["vid", "category", "titles", "captions"]).to_pydict()
    return t


def embeddings_predictions(refs: dict, rng: np.random.Generator, noise: float = 1.0) -> dict:
    vids = refs["vid"]
    v = rng.standard_normal((len(vids), DIM)).astype(np.float32)
    tids, t = [], []
    for i, vid in enumerate(vids):
        for kind in ("caption", "title"):
            for k in range(N_REFS):
                tids.append(text_id(vid, kind, k))
                t.append(v[i] + noise * rng.standard_normal(DIM))
    t = np.asarray(t, dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    gens = {
        vid: {"caption": refs["captions"][i][0][:4] + "的", "title": "标题"} for i, vid in enumerate(vids)
    }
    return {
        "video_ids": vids,
        "video_embeddings": v,
        "text_ids": tids,
        "text_embeddings": t,
        "generations": gens,
    }


def naive_t2v(v: np.ndarray, t: np.ndarray, owner: np.ndarray) -> dict[str, float]:
    sim = t.astype(np.float64) @ v.astype(np.float64).T
    ranks = 1 + (sim > sim[np.arange(len(t)), owner][:, None]).sum(axis=1)
    return {"R@1": 100 * np.mean(ranks <= 1), "R@5": 100 * np.mean(ranks <= 5), "MdR": np.median(ranks)}


def test_scores_all_six_groups_against_references(tmp_path: Path, dataset: Path, refs: dict) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(1))
    write_predictions(tmp_path / "p", **kw, model_card={"name": "noisy", "frames": "uniform-center@8"})
    r = score_predictions(tmp_path / "p", dataset, "test", bootstrap=200, seed=0)
    assert list(r["scores"]) == ["t2v_caption", "v2t_caption", "t2v_title", "v2t_title", "title", "caption"]
    # T2V captions against a naive full-matrix computation
    cap_rows = [i for i, tid in enumerate(kw["text_ids"]) if ":caption:" in tid]
    owner = np.repeat(np.arange(N_VIDEOS), N_REFS)
    ref = naive_t2v(kw["video_embeddings"], kw["text_embeddings"][cap_rows], owner)
    for key, value in ref.items():
        assert r["scores"]["t2v_caption"][key] == pytest.approx(value, abs=1e-9)
    # V2T titles: a video's rank is the best rank of its 10 titles among all 240 titles
    title_rows = [i for i, tid in enumerate(kw["text_ids"]) if ":title:" in tid]
    sim = kw["video_embeddings"].astype(np.float64) @ kw["text_embeddings"][title_rows].astype(np.float64).T
    best = np.array([sim[i, i * N_REFS : (i + 1) * N_REFS].max() for i in range(N_VIDEOS)])
    ranks = 1 + (sim > best[:, None]).sum(axis=1)
    assert r["scores"]["v2t_title"]["MnR"] == pytest.approx(ranks.mean())
    # captioning equals caption_scores on the dataset's references
    gens = {v: g["caption"] for v, g in kw["generations"].items()}
    assert r["scores"]["caption"] == pytest.approx(
        caption_scores(gens, dict(zip(refs["vid"], refs["captions"]))), abs=1e-9
    )
    # metadata, signature, intervals, per-category
    assert r["model"]["name"] == "noisy" and r["dataset"]["counts"] == {
        "videos": 24, "caption_texts": 240, "title_texts": 240,
    }  # fmt: skip
    sig = r["signature_fields"]
    assert sig["split"] == "test" and sig["ties"] == "expected" and sig["refs"] == "10"
    assert sig["tok"].startswith("jieba-0.42.1") and sig["bootstrap"] == 200 and sig["seed"] == 0
    assert sig["frames"] == "uniform-center@8" and sig["data"] == r["dataset"]["fingerprint"]
    assert "tok:" not in r["signatures"]["t2v_caption"] and "ties:" not in r["signatures"]["caption"]
    for group, metrics in r["ci"].items():
        for m, (lo, hi) in metrics.items():
            assert lo <= r["scores"][group][m] + 1e-9 and r["scores"][group][m] <= hi + 1e-9, (group, m)
    assert sum(c["count"] for c in r["per_category"].values()) == N_VIDEOS
    food = [i for i, c in enumerate(refs["category"]) if c == 0]
    food_bleu = caption_scores(
        {refs["vid"][i]: gens[refs["vid"][i]] for i in food},
        {refs["vid"][i]: refs["captions"][i] for i in food},
    )["BLEU-4"]
    assert r["per_category"]["0"]["name"] == "美食"
    assert r["per_category"]["0"]["caption"]["BLEU-4"] == pytest.approx(food_bleu, abs=1e-9)


def test_similarity_matrices_score_like_embeddings(tmp_path: Path, dataset: Path, refs: dict) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(2))
    write_predictions(tmp_path / "emb", **{k: v for k, v in kw.items() if k != "generations"})
    sims = {}
    for kind in ("caption", "title"):
        rows = [i for i, tid in enumerate(kw["text_ids"]) if f":{kind}:" in tid]
        sims[kind] = kw["text_embeddings"][rows] @ kw["video_embeddings"].T
    write_predictions(tmp_path / "sim", video_ids=kw["video_ids"], text_ids=kw["text_ids"], similarity=sims)
    a = score_predictions(tmp_path / "emb", dataset, "test", bootstrap=0)
    b = score_predictions(tmp_path / "sim", dataset, "test", bootstrap=0)
    assert a["scores"] == b["scores"]
    assert b["retrieval"]["t2v_caption"]["source"] == "similarity_caption.npy"
    assert a["ci"] == {} and "bootstrap" not in a["signature_fields"]


def test_rows_in_any_order(tmp_path: Path, dataset: Path, refs: dict) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(3))
    base = score_predictions(load_predictions_from(tmp_path / "a", kw), dataset, "test", bootstrap=0)
    rng = np.random.default_rng(0)
    pv, pt = rng.permutation(N_VIDEOS), rng.permutation(len(kw["text_ids"]))
    shuffled = dict(kw)
    shuffled["video_ids"] = [kw["video_ids"][i] for i in pv]
    shuffled["video_embeddings"] = kw["video_embeddings"][pv]
    shuffled["text_ids"] = [kw["text_ids"][i] for i in pt]
    shuffled["text_embeddings"] = kw["text_embeddings"][pt]
    other = score_predictions(load_predictions_from(tmp_path / "b", shuffled), dataset, "test", bootstrap=0)
    for g in base["scores"]:
        assert other["scores"][g] == pytest.approx(base["scores"][g], abs=1e-9)


def load_predictions_from(path: Path, kw: dict):
    write_predictions(path, **kw)
    return load_predictions(path)


def test_constant_scorer_is_at_chance(tmp_path: Path, dataset: Path, refs: dict) -> None:
    tids = [text_id(v, "caption", k) for v in refs["vid"] for k in range(N_REFS)]
    write_predictions(
        tmp_path / "c", video_ids=refs["vid"], text_ids=tids,
        similarity={"caption": np.zeros((len(tids), N_VIDEOS), np.float32)},
    )  # fmt: skip
    r = score_predictions(tmp_path / "c", dataset, "test", bootstrap=0)
    assert set(r["scores"]) == {"t2v_caption", "v2t_caption"}
    assert r["scores"]["t2v_caption"]["R@1"] == pytest.approx(100 / N_VIDEOS)
    assert r["scores"]["t2v_caption"]["MdR"] == pytest.approx((N_VIDEOS + 1) / 2)
    n = len(tids)  # V2T: 10 relevant among 240 texts
    for k in (1, 5, 10):
        chance = 1 - Fraction(math.comb(n - N_REFS, k), math.comb(n, k))
        assert r["scores"]["v2t_caption"][f"R@{k}"] == pytest.approx(100 * float(chance), abs=1e-9)
    opt = score_predictions(tmp_path / "c", dataset, "test", bootstrap=0, ties="optimistic")
    assert opt["scores"]["t2v_caption"]["R@1"] == 100.0 and opt["signature_fields"]["ties"] == "optimistic"


def test_single_reference_protocol(tmp_path: Path, dataset: Path, refs: dict) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(4))
    write_predictions(tmp_path / "p", **kw)
    r = score_predictions(tmp_path / "p", dataset, "test", protocol="single-reference", bootstrap=0)
    assert r["retrieval"]["t2v_caption"]["queries"] == {"t2v": N_VIDEOS, "v2t": N_VIDEOS}
    assert r["signature_fields"]["refs"] == "1" and r["protocol"] == "single-reference"
    first = [kw["text_ids"].index(text_id(v, "caption", 0)) for v in refs["vid"]]
    ref = naive_t2v(kw["video_embeddings"], kw["text_embeddings"][first], np.arange(N_VIDEOS))
    assert r["scores"]["t2v_caption"]["R@1"] == pytest.approx(ref["R@1"])
    gens = {v: g["caption"] for v, g in kw["generations"].items()}
    single = caption_scores(gens, {v: c[:1] for v, c in zip(refs["vid"], refs["captions"])})
    assert r["scores"]["caption"] == pytest.approx(single, abs=1e-9)


def test_bootstrap_is_seeded(tmp_path: Path, dataset: Path, refs: dict) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(5))
    write_predictions(tmp_path / "p", generations=kw["generations"])
    a = score_predictions(tmp_path / "p", dataset, "test", bootstrap=100, seed=1, tokenizer="char")
    b = score_predictions(tmp_path / "p", dataset, "test", bootstrap=100, seed=1, tokenizer="char")
    c = score_predictions(tmp_path / "p", dataset, "test", bootstrap=100, seed=2, tokenizer="char")
    assert a["ci"] == b["ci"] and a["ci"] != c["ci"]
    assert a["signature_fields"]["tok"] == "char.1" and "seed:1" in a["signature"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (
            lambda kw: kw.update(video_ids=kw["video_ids"][:-1] + ["intruder"]),
            r"video_ids.json .*missing 1: 'vid023'; extra 1 not in the split: 'intruder'",
        ),  # fmt: skip
        (
            lambda kw: kw.update(text_ids=kw["text_ids"][:-1] + ["vid000:title:10"]),
            r"text_ids.json \(title\).*missing 1: 'vid023:title:9'; extra 1 not in the split: 'vid000:title:10'",
        ),  # fmt: skip
        (
            lambda kw: kw["generations"].pop("vid005"),
            r"generations.jsonl \(title\) does not match the 'test' split; missing 1: 'vid005'",
        ),  # fmt: skip
    ],
)
def test_id_mismatches_are_listed(tmp_path: Path, dataset: Path, refs: dict, mutate, match) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(6))
    mutate(kw)
    write_predictions(tmp_path / "p", **kw)
    with pytest.raises(PredictionError, match=match):
        score_predictions(tmp_path / "p", dataset, "test", bootstrap=0)


def test_bad_options(tmp_path: Path, dataset: Path) -> None:
    write_predictions(tmp_path / "p", generations={"vid000": {"title": "x"}})
    for kwargs, match in (
        ({"protocol": "multi"}, "protocol must be"),
        ({"bootstrap": -1}, "bootstrap must be"),
        ({"ties": "random"}, "ties must be"),
        ({"tokenizer": "spacy"}, "unknown tokenizer"),
    ):
        with pytest.raises(ConfigError, match=match):
            score_predictions(tmp_path / "p", dataset, "test", **kwargs)


def test_cli(tmp_path: Path, dataset: Path, refs: dict, capsys) -> None:
    kw = embeddings_predictions(refs, np.random.default_rng(7))
    write_predictions(tmp_path / "p", **kw, model_card={"name": "cli-model"})
    out = tmp_path / "res" / "r.json"
    argv = ["score", "--predictions", str(tmp_path / "p"), "--data", str(dataset), "--split", "test"]
    assert main([*argv, "--tokenizer", "char", "--bootstrap", "50", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    r = load_results(out)
    assert "T2V (captions)" in printed and "Caption generation" in printed
    assert f"signature: {r['signature']}" in printed and r["model"]["name"] == "cli-model"
    assert f"{r['scores']['t2v_caption']['R@1']:.1f}" in printed
    assert len(r["scores"]) == 6 and json.loads(out.read_text("utf-8"))["schema_version"] == 1
    # an error is a message and a non-zero exit code, not a traceback
    bad = tmp_path / "bad"
    write_predictions(bad, generations={"nope": {"caption": "x"}})
    assert main(["score", "--predictions", str(bad), "--data", str(dataset), "--bootstrap", "0"]) != 0
    err = capsys.readouterr().err
    assert "create-bench score: error:" in err and "extra 1 not in the split: 'nope'" in err


def test_paired_comparison(tmp_path: Path, dataset: Path, refs: dict, capsys) -> None:
    good = embeddings_predictions(refs, np.random.default_rng(8), noise=0.3)
    bad = embeddings_predictions(refs, np.random.default_rng(9), noise=3.0)
    write_predictions(tmp_path / "good", **good)
    write_predictions(tmp_path / "bad", **bad)
    comp = compare_predictions(tmp_path / "good", tmp_path / "bad", dataset, "test", bootstrap=200)
    r = comp["t2v_caption"]["R@1"]
    a = score_predictions(tmp_path / "good", dataset, "test", bootstrap=0)["scores"]["t2v_caption"]["R@1"]
    assert r["a"] == pytest.approx(a) and r["delta"] > 0 and r["p_value"] < 0.05
    same = compare_predictions(tmp_path / "good", tmp_path / "good", dataset, "test", bootstrap=50)
    assert all(m["delta"] == 0 and m["p_value"] == 1.0 for g in same.values() for m in g.values())
    argv = ["score", "--predictions", str(tmp_path / "good"), "--data", str(dataset), "--bootstrap", "50"]
    assert main([*argv, "--against", str(tmp_path / "bad")]) == 0
    out = capsys.readouterr().out
    assert "Paired bootstrap: A =" in out and "t2v_caption  R@1" in out


def test_scoring_normalises_embeddings(tmp_path: Path, dataset: Path, refs: dict) -> None:
    """Similarity is the dot product of L2-normalised embeddings: rescaling rows changes nothing."""
    kw = embeddings_predictions(refs, np.random.default_rng(4))
    base = score_predictions(load_predictions_from(tmp_path / "a", kw), dataset, "test", bootstrap=0)
    rng = np.random.default_rng(1)
    scaled = dict(kw)
    scaled["video_embeddings"] = kw["video_embeddings"] * rng.uniform(
        0.01, 100, (len(kw["video_ids"]), 1)
    ).astype(np.float32)
    scaled["text_embeddings"] = kw["text_embeddings"] * rng.uniform(
        0.01, 100, (len(kw["text_ids"]), 1)
    ).astype(np.float32)
    other = score_predictions(load_predictions_from(tmp_path / "b", scaled), dataset, "test", bootstrap=0)
    for g in base["scores"]:
        if g.startswith(("t2v", "v2t")):
            assert other["scores"][g] == pytest.approx(base["scores"][g], abs=1e-9)


def test_skipped_tasks_are_recorded_and_printed(tmp_path: Path, dataset: Path, refs: dict, capsys) -> None:
    """Predictions that allow only some tasks: the results say which were skipped and why, and
    `create-bench score` prints what was scored and what was skipped."""
    titles = {vid: {"title": "标题"} for vid in refs["vid"]}
    write_predictions(tmp_path / "titles", generations=titles)
    r = score_predictions(tmp_path / "titles", dataset, "test", bootstrap=0)
    assert list(r["scores"]) == ["title"]
    assert r["skipped_tasks"] == {
        "retrieval": "no video_embeddings.npy with video_ids.json",
        "caption": "generations.jsonl has no 'caption' field",
    }
    assert (
        main(["score", "--predictions", str(tmp_path / "titles"), "--data", str(dataset), "--bootstrap", "0"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "scored: title generation" in printed
    assert "retrieval skipped: no video_embeddings.npy with video_ids.json" in printed
    assert "caption generation skipped: generations.jsonl has no 'caption' field" in printed

    kw = embeddings_predictions(refs, np.random.default_rng(3))
    keep = [i for i, t in enumerate(kw["text_ids"]) if ":caption:" in t]
    write_predictions(
        tmp_path / "cap",
        video_ids=kw["video_ids"],
        video_embeddings=kw["video_embeddings"],
        text_ids=[kw["text_ids"][i] for i in keep],
        text_embeddings=kw["text_embeddings"][keep],
    )
    r = score_predictions(tmp_path / "cap", dataset, "test", bootstrap=0)
    assert list(r["scores"]) == ["t2v_caption", "v2t_caption"]
    assert r["skipped_tasks"] == {
        "retrieval:title": "text_ids.json has no title ids ('<vid>:title:<k>')",
        "title": "no generations.jsonl",
        "caption": "no generations.jsonl",
    }
    full = score_predictions(load_predictions_from(tmp_path / "all", kw), dataset, "test", bootstrap=0)
    assert full["skipped_tasks"] == {}


def test_eval_skip_reasons_name_the_run() -> None:
    """`create-bench eval`: a task the model does not implement or --tasks left out says so, rather
    than what the predictions directory lacks."""
    from create_bench.runner import _skip_reasons
    from create_bench.tasks import parse_tasks

    from_preds = {
        "retrieval": "no video_embeddings.npy with video_ids.json",
        "caption": "no generations.jsonl",
    }
    got = _skip_reasons(from_preds, "m", parse_tasks("retrieval,title"), ("retrieval",))
    assert got == {
        "retrieval": "model 'm' does not implement encode_videos and encode_texts",
        "caption": "not requested (--tasks)",
    }

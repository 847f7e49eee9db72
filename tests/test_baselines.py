"""The baselines are honest: random is at chance, raw-title returns raw titles and retrieves by words,
nearest-neighbour copies the texts of the visually closest training video."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pytest
from harness_util import COLOURS, colour_dataset, text_dataset

import create_bench.models.baselines as baselines
from create_bench.data.shards import read_table
from create_bench.models import load_model
from create_bench.models.base import ModelContext
from create_bench.models.baselines import TfIdf, frame_features
from create_bench.runner import EvalConfig, evaluate, run_model
from create_bench.scoring import ScoringOptions
from create_bench.tasks import parse_tasks


@pytest.fixture(scope="module")
def text_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_dataset(tmp_path_factory.mktemp("text") / "ds", n_test=300)


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return colour_dataset(tmp_path_factory.mktemp("colour") / "ds")


def test_tfidf_against_hand_computation() -> None:
    v = TfIdf(max_features=10).fit([["a", "b"], ["a", "c"], ["c"]])
    n = 3
    idf = {
        "a": math.log((1 + n) / (1 + 2)) + 1,
        "b": math.log((1 + n) / (1 + 1)) + 1,
        "c": math.log(4 / 3) + 1,
    }
    got = v.transform([["a", "b", "b", "zzz"]])[0]
    want = np.zeros(3)
    want[v.vocab["a"]] = 1 * idf["a"]
    want[v.vocab["b"]] = (1 + math.log(2)) * idf["b"]
    want /= np.linalg.norm(want)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert v.transform([["zzz"]]).sum() == 0.0  # unknown words only: a zero row, never NaN


def test_tfidf_vocabulary_cap_keeps_most_frequent() -> None:
    v = TfIdf(max_features=2).fit([["a", "b"], ["a", "c"], ["a", "c"], ["d"]])
    assert set(v.vocab) == {"a", "c"}


def test_random_embeddings_are_pure_functions_of_seed_and_id() -> None:
    m = load_model("random", {"seed": 3, "dim": 32})
    a = m.encode_videos({"vid": ["x", "y", "z"]})
    b = m.encode_videos({"vid": ["z", "x"]})
    np.testing.assert_array_equal(a[[2, 0]], b)  # batching and order never change a vector
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    other = load_model("random", {"seed": 4, "dim": 32}).encode_videos({"vid": ["x"]})
    assert not np.allclose(other[0], a[0])
    t = m.encode_texts(["一只猫", "一只猫", "一条狗"])
    np.testing.assert_array_equal(t[0], t[1])
    assert t.shape == (3, 32) and t.dtype == np.float32


def test_random_generation_draws_training_texts(text_data: Path) -> None:
    m = load_model("random", {"seed": 0})
    m.setup(ModelContext(data_dir=text_data, split="test"))
    train = read_table(text_data, "train", ["titles", "captions"])
    titles = {t for x in train.column("titles").to_pylist() for t in x}
    captions = {t for x in train.column("captions").to_pylist() for t in x}
    vids = [f"te{i:05d}" for i in range(200)]
    gen_t = m.generate({"vid": vids}, kind="title")
    gen_c = m.generate({"vid": vids}, kind="caption")
    assert set(gen_t) <= titles and set(gen_c) <= captions
    assert len(set(gen_t)) > len(titles) // 2  # draws spread over the pool, not a constant
    assert gen_t == m.generate({"vid": vids}, kind="title")  # seeded


@pytest.mark.slow
def test_random_is_at_chance(text_data: Path, tmp_path: Path) -> None:
    """Random embeddings score at chance: the headline R@1 and MnR of every retrieval group contain the
    chance value in their 95% bootstrap interval; for all 16 numbers at once (where one in twenty
    would miss a 95% interval by luck) the distance to chance stays within 1.5 half-widths, which is
    about a 99.7% band (Bonferroni for 16 checks)."""
    model = load_model("random", {"seed": 0})
    cfg = EvalConfig(
        data_dir=text_data,
        results_dir=tmp_path,
        tasks=("retrieval",),
        scoring=ScoringOptions(bootstrap=1000),
        report=False,
    )
    res = evaluate(model, cfg).results
    g = read_table(text_data, "test", ["vid"]).num_rows
    n_texts = 10 * g
    chance = {
        "t2v": {"R@1": 100 / g, "R@5": 500 / g, "R@10": 1000 / g, "MnR": (g + 1) / 2},
        # a video's best rank among its 10 texts out of n_texts: P(<= K) = 1 - C(n - 10, K) / C(n, K)
        "v2t": {f"R@{k}": 100 * (1 - math.comb(n_texts - 10, k) / math.comb(n_texts, k)) for k in (1, 5, 10)}
        | {"MnR": (n_texts + 1) / 11},
    }
    for group in ("t2v_caption", "v2t_caption", "t2v_title", "v2t_title"):
        for metric, want in chance[group[:3]].items():
            got = res["scores"][group][metric]
            lo, hi = _interval(res["ci"][group][metric])
            where = (group, metric, want, got, lo, hi)
            if metric in ("R@1", "MnR"):
                assert lo <= want <= hi, where
            assert abs(got - want) <= 1.5 * max(got - lo, hi - got), where


def _interval(ci: object) -> tuple[float, float]:
    if isinstance(ci, dict):
        return float(ci.get("low", ci.get("lo"))), float(ci.get("high", ci.get("hi")))
    lo, hi = ci  # type: ignore[misc]
    return float(lo), float(hi)


def test_raw_title_is_honest(text_data: Path, tmp_path: Path) -> None:
    model = load_model("raw-title")
    cfg = EvalConfig(data_dir=text_data, results_dir=tmp_path, progress=False)
    outs = run_model(model, cfg, parse_tasks(None), "uniform-center@8")
    table = read_table(text_data, "test", ["vid", "raw_title", "tags"])
    raw = dict(zip(table.column("vid").to_pylist(), table.column("raw_title").to_pylist()))
    assert outs.generations["title"] == raw and outs.generations["caption"] == raw
    # Retrieval: the similarity is the TF-IDF cosine of query and raw title (+ tags); without tags, a
    # query equal to a video's raw title scores exactly 1 against it, the maximum.
    plain = load_model("raw-title", {"use_tags": False})
    plain.setup(ModelContext(data_dir=text_data, split="test"))
    vids = table.column("vid").to_pylist()[:50]
    q = plain.encode_texts([raw[v] for v in vids])
    gallery = plain.encode_videos(
        {"vid": vids, "raw_title": [raw[v] for v in vids], "tags": [[]] * len(vids)}
    )
    sims = q @ gallery.T
    known = np.linalg.norm(q, axis=1) > 0
    assert known.sum() >= 45
    np.testing.assert_allclose(np.diag(sims)[known], 1.0, rtol=1e-5)
    assert (np.diag(sims) >= sims.max(axis=1) - 1e-6).all()
    # With tags the video side has more words: similarity to its own raw title stays positive.
    own = np.concatenate(outs.video_embeddings)[[outs.video_ids.index(v) for v in vids]]
    q_tags = model.encode_texts([raw[v] for v in vids])
    assert ((q_tags * own).sum(axis=1)[known] > 0).all()


def test_raw_title_vocabulary_comes_from_train_only(text_data: Path) -> None:
    model = load_model("raw-title")
    model.setup(ModelContext(data_dir=text_data, split="test"))
    train = read_table(text_data, "train", ["raw_title", "tags", "titles", "captions"])
    train_tokens: set[str] = set()
    for col in ("raw_title", "titles", "captions", "tags"):
        for x in train.column(col).to_pylist():
            for s in x if isinstance(x, list) else [x]:
                train_tokens.update(baselines.tokenize(s))
    assert set(model.tfidf.vocab) <= train_tokens


def test_raw_title_empty_fallback() -> None:
    m = load_model("raw-title")
    out = m.generate(
        {"vid": ["a", "b", "c"], "raw_title": ["标题", "  ", ""], "tags": [[], ["猫", "狗"], []]}
    )
    assert out == ["标题", "猫 狗", m.EMPTY_FALLBACK]


def test_frame_features_separate_colours() -> None:
    red = np.zeros((1, 4, 8, 8, 3), np.uint8)
    red[..., 0] = 220
    blue = np.zeros_like(red)
    blue[..., 2] = 220
    f = frame_features(np.concatenate([red, red, blue]))
    assert f.shape[0] == 3 and np.isfinite(f).all()
    np.testing.assert_allclose(f[0], f[1])
    assert np.abs(f[0] - f[2]).sum() > 1.0


def test_nearest_neighbour_copies_the_closest_training_video(colour_data: Path, tmp_path: Path) -> None:
    model = load_model("nearest-neighbour")
    cfg = EvalConfig(data_dir=colour_data, results_dir=tmp_path, progress=False)
    outs = run_model(model, cfg, parse_tasks(None), model.meta.frames)
    train = read_table(colour_data, "train", ["category", "titles", "captions"])
    colour_of_title = {
        t[0]: c for c, t in zip(train.column("category").to_pylist(), train.column("titles").to_pylist())
    }
    test = read_table(colour_data, "test", ["vid", "category"])
    for vid, cat in zip(test.column("vid").to_pylist(), test.column("category").to_pylist()):
        title = outs.generations["title"][vid]
        assert colour_of_title[title] == cat  # copied from a training clip of the same colour
        assert list(COLOURS)[cat] in outs.generations["caption"][vid]
    # Retrieval through the ridge map: a colour word finds clips of that colour.
    q = model.encode_texts([f"一个{name}的画面" for name in COLOURS])
    gallery = np.concatenate(outs.video_embeddings)
    cats = dict(zip(test.column("vid").to_pylist(), test.column("category").to_pylist()))
    for c_i in range(len(COLOURS)):
        best = outs.video_ids[int(np.argmax(q[c_i] @ gallery.T))]
        assert cats[best] == c_i


def test_nearest_neighbour_caches_training_features(colour_data: Path, tmp_path: Path) -> None:
    ctx = ModelContext(data_dir=colour_data, split="test", cache_dir=tmp_path)
    a = load_model("nearest-neighbour")
    a.setup(ctx)
    files = list(tmp_path.glob("nearest-neighbour-train-*.safetensors"))
    assert len(files) == 1
    b = load_model("nearest-neighbour")
    b.setup(ctx)  # from the cache file
    np.testing.assert_array_equal(a.train_feats, b.train_feats)
    assert a.train_texts == b.train_texts


def test_doctests() -> None:
    assert doctest.testmod(baselines).failed == 0

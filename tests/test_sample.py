"""CREATE-sample: text generation, video rendering, and the generated dataset."""

from __future__ import annotations

import dataclasses
import io
import json
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from create_bench.errors import ConfigError
from create_bench.synthetic import text as T
from create_bench.synthetic.sample import (
    DECORD_BAD_WIDTHS,
    EVEN_SIZES,
    ODD_SIZES,
    generate_sample,
    parse_sizes,
    plan_sample,
    resolve_sizes,
)
from create_bench.synthetic.video import VideoSpec, render_frames, render_video

TINY = {"train": 24, "validation": 8, "test": 12, "pretrain": 8}
SMALL = {"train": 6, "validation": 2, "test": 2, "pretrain": 2}


def _read(dataset: Path) -> list[dict]:
    files = sorted((dataset / "data").glob("*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist()


def _latents(n: int, seed: int = 0) -> list[T.Latent]:
    rng = np.random.default_rng(seed)
    return [T.draw_latent(rng) for _ in range(n)]


# ---------------------------------------------------------------------------------------------
# Vocabulary tables
# ---------------------------------------------------------------------------------------------


def test_categories_are_creates_known_names_and_render_distinctly():
    names = T.CATEGORY_NAMES
    assert len(names) >= 12 and len(set(names)) == len(names)
    for known in "生活 宠物 时尚 美食 体育 科技 网红达人 社会 情感 搞笑 科学 娱乐".split():
        assert known in names
    scenes = [(c.pattern, c.palette) for c in T.CATEGORIES]
    assert len(set(scenes)) == len(scenes)  # each category's background differs
    nouns = [n for c in T.CATEGORIES for n, _ in c.scenes]
    assert len(set(nouns)) == len(nouns)  # scene words identify the category
    for c in T.CATEGORIES:
        assert c.pattern in T.PATTERNS and c.objects
        shapes = [T.OBJECTS[o].shape for o in c.objects]
        assert len(set(shapes)) == len(shapes), c.name  # shape + scene identify the object


def test_no_colour_words_leak_into_other_vocabulary():
    texts = [n for o in T.OBJECTS.values() for n in o.names]
    texts += [n for c in T.CATEGORIES for n, _ in c.scenes]
    texts += list(T.CAPTION_TEMPLATES) + list(T.TITLE_TEMPLATES)
    texts += [p for m in T.MOTIONS for p in m.phrases + m.short] + [s for v in T.SPEEDS.values() for s in v]
    leaks = [t for t in texts if set(t) & T.COLOUR_CHARS]
    assert leaks == []
    for c in T.COLOURS:  # one colour's name never contains another's
        for other in T.COLOURS:
            if other is not c:
                assert not any(o in n for n in c.names for o in other.names), (c.key, other.key)


def test_templates_are_many_and_cover_the_grounded_slots():
    assert len(T.CAPTION_TEMPLATES) >= 30 and len(T.TITLE_TEMPLATES) >= 40
    assert len(set(T.CAPTION_TEMPLATES)) == len(T.CAPTION_TEMPLATES)
    assert len(set(T.TITLE_TEMPLATES)) == len(T.TITLE_TEMPLATES)
    for t in T.CAPTION_TEMPLATES:
        assert "{motion}" in t and ("{scene}" in t or "{place}" in t), t
        assert "{np}" in t or ("{colour}" in t and "{obj}" in t), t
    for t in T.TITLE_TEMPLATES:
        assert "{obj}" in t, t


# ---------------------------------------------------------------------------------------------
# Text generation
# ---------------------------------------------------------------------------------------------


def test_captions_and_titles_are_grounded_in_the_latent_attributes():
    rng = np.random.default_rng(1)
    for lat in _latents(400, seed=1):
        colour = T.COLOUR_BY_KEY[lat.colour]
        others = [n for c in T.COLOURS if c is not colour for n in c.names]
        motion = T.MOTION_BY_KEY[lat.motion]
        for cap in T.make_captions(rng, lat, 3):
            assert any(n in cap for n in colour.names), cap
            assert not any(n in cap for n in others), cap
            assert any(n in cap for n in lat.object.names), cap
            assert any(p in cap for p in motion.phrases), cap
            assert any(noun in cap for noun, _ in lat.cat.scenes), cap
            other_speed = "fast" if lat.speed == "slow" else "slow"
            assert not any(s in cap for s in T.SPEEDS[other_speed]), cap
        for title in T.make_titles(rng, lat, 2):
            assert any(n in title for n in lat.object.names), title


def test_text_variety():
    rng = np.random.default_rng(0)
    lats = _latents(200, seed=2)
    titles = [T.make_titles(rng, lat)[0] for lat in lats]
    captions = [T.make_captions(rng, lat)[0] for lat in lats]
    raws = [T.make_raw_title(rng, lat, T.make_tags(rng, lat)) for lat in lats]
    assert len({t[:2] for t in titles}) >= 60  # many openings, not one sentence pattern
    assert len(set(titles)) >= 195 and len(set(captions)) >= 195
    assert len({c[:2] for c in captions}) >= 40
    assert len(set(raws)) >= 180
    # raw titles are noisy: some hashtags, emojis, mentions, some clipped
    assert sum("#" in r for r in raws) >= 60
    assert sum("@" in r for r in raws) >= 10
    assert sum(r.endswith(("…", "...")) for r in raws) >= 5


def test_ten_paraphrases_are_distinct_and_from_distinct_templates():
    rng = np.random.default_rng(3)
    for lat in _latents(30, seed=3):
        ann = T.annotate(rng, lat, 10)
        assert len(ann.titles) == 10 == len(set(ann.titles))
        assert len(ann.captions) == 10 == len(set(ann.captions))
        assert len({c[:3] for c in ann.captions}) >= 6


def test_tags_and_vids():
    rng = np.random.default_rng(4)
    for lat in _latents(300, seed=4):
        tags = T.make_tags(rng, lat)
        assert 2 <= len(tags) <= 8 and len(set(tags)) == len(tags) and all(t.strip() for t in tags)
        assert tags[0] == lat.cat.name or tags[0] in lat.cat.tags
    vids = [T.make_vid(rng) for _ in range(1000)]
    assert all(re.fullmatch(r"v[A-Za-z0-9]{11}", v) for v in vids) and len(set(vids)) == 1000


def test_too_many_references_is_a_typed_error():
    with pytest.raises(ConfigError):
        T.make_captions(np.random.default_rng(0), _latents(1)[0], len(T.CAPTION_TEMPLATES) + 1)


# ---------------------------------------------------------------------------------------------
# Video rendering
# ---------------------------------------------------------------------------------------------

_BASE = VideoSpec(
    width=128, height=96, fps=Fraction(15), num_frames=30, rotation=0, pattern="gradient_v",
    palette=((150, 150, 150), (110, 110, 110)), shape="square", colour=(222, 30, 36),
    motion="right", count=1, speed="slow", seed=5,
)  # fmt: skip


def _red_mask(frame: np.ndarray) -> np.ndarray:
    f = frame.astype(int)
    return (f[..., 0] > 170) & (f[..., 1] < 90) & (f[..., 2] < 90)


def _centroid(frame: np.ndarray) -> tuple[float, float, int]:
    ys, xs = np.nonzero(_red_mask(frame))
    return float(xs.mean()), float(ys.mean()), len(xs)


def _decode_all(data: bytes) -> np.ndarray:
    import decord

    vr = decord.VideoReader(io.BytesIO(data), num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


@pytest.mark.parametrize(
    ("motion", "later", "check"),
    [
        ("right", 6, lambda a, b: b[0] > a[0] + 3 and abs(b[1] - a[1]) < 1),
        ("left", 6, lambda a, b: b[0] < a[0] - 3 and abs(b[1] - a[1]) < 1),
        ("up", 6, lambda a, b: b[1] < a[1] - 2 and abs(b[0] - a[0]) < 1),
        ("down", 6, lambda a, b: b[1] > a[1] + 2 and abs(b[0] - a[0]) < 1),
        ("zoom", -1, lambda a, b: b[2] > a[2] * 1.8),
        ("rotate", -1, lambda a, b: abs(b[0] - a[0]) < 2 and abs(b[1] - a[1]) < 2),
    ],
)
def test_rendered_motion_matches_its_word(motion, later, check):
    spec = dataclasses.replace(_BASE, motion=motion)
    frames = list(render_frames(spec))
    assert len(frames) == spec.num_frames and frames[0].shape == (96, 128, 3)
    a, b = _centroid(frames[0]), _centroid(frames[later])
    assert a[2] > 20 and b[2] > 20  # the object is on screen, in its colour
    assert check(a, b), (a, b)


def test_bounce_goes_up_and_down_and_scenes_differ_by_category():
    frames = list(render_frames(dataclasses.replace(_BASE, motion="bounce", speed="fast", num_frames=20)))
    ys = [_centroid(f)[1] for f in frames]
    assert max(ys) - min(ys) > 10 and np.sign(np.diff(ys)).tolist().count(1) >= 2
    backgrounds = set()
    for c in T.CATEGORIES:
        spec = dataclasses.replace(_BASE, pattern=c.pattern, palette=c.palette, count=1, num_frames=1)
        backgrounds.add(next(render_frames(spec))[::8, ::8].tobytes())
    assert len(backgrounds) == len(T.CATEGORIES)


def test_video_bytes_are_deterministic_and_decode_with_decord():
    from create_bench.video.probe import probe_video

    data = render_video(_BASE)
    assert data == render_video(_BASE)
    assert data != render_video(dataclasses.replace(_BASE, seed=6))
    frames = _decode_all(data)
    assert frames.shape == (30, 96, 128, 3)
    info = probe_video(data)
    assert (info.num_frames, info.width, info.height, info.rotation) == (30, 128, 96, 0)
    assert info.fps == pytest.approx(15.0)
    # what decord shows is what was rendered (lossy, so compare the object's position)
    rendered = list(render_frames(_BASE))
    for i in (0, 15, 29):
        assert np.allclose(_centroid(frames[i])[:2], _centroid(rendered[i])[:2], atol=1.0)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_video_displays_upright_and_moves_the_stated_way(rotation):
    from create_bench.video.probe import probe_video

    spec = dataclasses.replace(_BASE, width=96, height=128, rotation=rotation, motion="right")
    data = render_video(spec)
    info = probe_video(data)
    assert info.rotation == rotation
    frames = _decode_all(data)  # decord applies the display matrix
    assert frames.shape[1:] == (128, 96, 3)
    a, b = _centroid(frames[0]), _centroid(frames[6])
    assert b[0] > a[0] + 3 and abs(b[1] - a[1]) < 1.5


@pytest.mark.parametrize("size", [(97, 71), (71, 97), (81, 145)])
def test_odd_sizes_are_real_h264_at_their_true_size(size):
    import av

    spec = dataclasses.replace(_BASE, width=size[0], height=size[1], num_frames=12)
    data = render_video(spec)
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == size
    assert _decode_all(data).shape == (12, size[1], size[0], 3)


def test_sizes_avoid_widths_decord_cannot_decode():
    for w, h in EVEN_SIZES + ODD_SIZES:
        # sizes are display sizes, and what breaks decord is the width it outputs (after rotation)
        assert w not in DECORD_BAD_WIDTHS and 64 <= min(w, h) and max(w, h) <= 160


def test_bad_specs_are_typed_errors():
    for bad in ({"shape": "blob"}, {"motion": "spin"}, {"pattern": "plaid"}, {"count": 4}, {"rotation": 45}):
        with pytest.raises(ConfigError):
            render_video(dataclasses.replace(_BASE, **bad))


# ---------------------------------------------------------------------------------------------
# Plans and sizes
# ---------------------------------------------------------------------------------------------


def test_resolve_sizes():
    assert resolve_sizes(None) == {"train": 1000, "validation": 100, "test": 200, "pretrain": 300}
    assert resolve_sizes(24) == TINY
    assert resolve_sizes(5000) == {"train": 5000, "validation": 500, "test": 1000, "pretrain": 1500}
    assert resolve_sizes({"train": 3}) == {"train": 3, "validation": 0, "test": 0, "pretrain": 0}
    assert parse_sizes("train=24, validation=8,test=12,pretrain=8") == TINY
    for bad in (0, -3, 2.5, True, {"dev": 3}, {"train": -1}, {"train": 0}):
        with pytest.raises(ConfigError):
            resolve_sizes(bad)  # type: ignore[arg-type]
    for text in ("train", "train=x", "train=2,foo=1"):
        with pytest.raises(ConfigError):
            parse_sizes(text)


def test_plans_are_prefix_stable_and_seeded():
    small, tiny = plan_sample(0, SMALL), plan_sample(0, TINY)
    by_key = {(p.split, p.index): p for p in tiny}
    for p in small:
        assert by_key[(p.split, p.index)] == p  # a smaller sample is a prefix of a bigger one
    other = plan_sample(1, SMALL)
    assert {p.vid for p in other}.isdisjoint({p.vid for p in small})
    for p in tiny:  # the planned texts describe the planned video
        colour = T.COLOUR_BY_KEY[p.latent.colour]
        assert p.spec.colour == colour.rgb and p.spec.shape == p.latent.object.shape
        assert (p.spec.pattern, p.spec.palette) == (p.latent.cat.pattern, p.latent.cat.palette)
        assert all(any(n in c for n in colour.names) for c in p.annotation.captions)
        assert 2.0 <= p.spec.num_frames / float(p.spec.fps) <= 5.05 and 10 <= float(p.spec.fps) <= 25
    with pytest.raises(ConfigError):
        plan_sample(-1, SMALL)


# ---------------------------------------------------------------------------------------------
# The generated dataset
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_dataset: Path) -> Path:
    """The session's tiny sample (conftest), which must be the seed-0 sample of TINY sizes."""
    gen = json.loads((tiny_dataset / "manifest.json").read_text("utf-8"))["generator"]
    assert (gen["seed"], gen["videos"]) == (0, TINY), "tests/conftest.py tiny_dataset changed"
    return tiny_dataset


@pytest.fixture(scope="module")
def tiny_rows(tiny: Path) -> list[dict]:
    return _read(tiny)


def test_layout_counts_and_manifest(tiny: Path, tiny_rows: list[dict]):
    manifest = json.loads((tiny / "manifest.json").read_text("utf-8"))
    assert manifest["splits"] == TINY
    assert manifest["categories"] == T.CATEGORY_NAMES
    gen = manifest["generator"]
    assert (gen["name"], gen["seed"], gen["videos"]) == ("create-sample", 0, TINY) and gen["version"]
    assert sorted(p.name for p in (tiny / "data").iterdir()) == [
        f"{s}-00000-of-00001.parquet" for s in ("pretrain", "test", "train", "validation")
    ]
    assert (tiny / "README.md").read_text("utf-8").startswith("---")
    vids = [r["vid"] for r in tiny_rows]
    assert len(set(vids)) == len(vids) == sum(TINY.values())
    assert all(re.fullmatch(r"v[A-Za-z0-9]{11}", v) for v in vids)


def test_rows_have_creates_shape(tiny_rows: list[dict]):
    refs = {"train": 1, "validation": 10, "test": 10, "pretrain": 0}
    for r in tiny_rows:
        n = refs[r["split"]]
        assert len(r["titles"]) == n == len(set(r["titles"])), r["vid"]
        assert len(r["captions"]) == n == len(set(r["captions"])), r["vid"]
        assert 2 <= len(r["tags"]) <= 8 and r["raw_title"].strip()
        if r["split"] == "pretrain":
            assert r["category"] == -1 and r["category_name"] == ""
        else:
            assert 0 <= r["category"] < len(T.CATEGORY_NAMES)
            assert r["category_name"] == T.CATEGORY_NAMES[r["category"]]
        assert r["video"]["bytes"][4:8] == b"ftyp" and r["video"]["path"] == f"{r['vid']}.mp4"
        assert 10 <= r["fps"] <= 25 and 2.0 <= r["duration"] <= 5.05


def test_rows_match_their_plans(tiny_rows: list[dict]):
    plans = {p.vid: p for p in plan_sample(0, TINY)}
    for r in tiny_rows:
        p = plans[r["vid"]]
        assert (r["titles"], r["captions"], r["tags"], r["raw_title"]) == (
            p.annotation.titles, p.annotation.captions, p.annotation.tags, p.annotation.raw_title,
        )  # fmt: skip
        assert r["num_frames"] == p.spec.num_frames and r["rotation"] == p.spec.rotation
        for cap in r["captions"]:  # grounding survives the writer
            assert any(n in cap for n in T.COLOUR_BY_KEY[p.latent.colour].names)


def test_every_video_decodes_with_decord_to_num_frames(tiny_rows: list[dict]):
    import decord

    for r in tiny_rows:
        vr = decord.VideoReader(io.BytesIO(r["video"]["bytes"]), num_threads=1)
        assert len(vr) == r["num_frames"], r["vid"]
        frames = vr.get_batch([0, r["num_frames"] // 2, r["num_frames"] - 1]).asnumpy()
        shapes = {(r["height"], r["width"], 3)}
        if r["rotation"] in (90, 270):
            shapes.add((r["width"], r["height"], 3))
        assert frames.shape[1:] in shapes, (r["vid"], frames.shape, r["width"], r["height"], r["rotation"])


def test_sample_has_rotated_and_odd_sized_videos(tiny_rows: list[dict]):
    assert {r["rotation"] for r in tiny_rows} > {0}
    assert any(r["width"] % 2 or r["height"] % 2 for r in tiny_rows)


@pytest.mark.slow
def test_same_seed_byte_identical_whatever_the_workers(tmp_path: Path, tiny_rows: list[dict]):
    a = generate_sample(tmp_path / "a", sizes=SMALL, seed=0, workers=1)
    b = generate_sample(tmp_path / "b", sizes=SMALL, seed=0, workers=2)
    c = generate_sample(tmp_path / "c", sizes=SMALL, seed=1, workers=1)
    files = sorted(p.name for p in (a / "data").iterdir())
    assert files == sorted(p.name for p in (b / "data").iterdir())
    for f in files:
        assert (a / "data" / f).read_bytes() == (b / "data" / f).read_bytes(), f
        assert (a / "data" / f).read_bytes() != (c / "data" / f).read_bytes(), f
    assert {r["vid"] for r in _read(a)}.isdisjoint({r["vid"] for r in _read(c)})
    # the small sample is a prefix of the tiny one (same seed): same rows, same bytes
    tiny_by_vid = {r["vid"]: r for r in tiny_rows}
    for r in _read(a):
        assert r == tiny_by_vid[r["vid"]]


def test_path_storage_writes_videos_beside_the_shards(tmp_path: Path):
    out = generate_sample(
        tmp_path / "p", sizes={"train": 2, "test": 1}, seed=0, workers=1, video_storage="path"
    )
    rows = _read(out)
    assert len(rows) == 3
    for r in rows:
        assert r["video"]["bytes"] is None and r["video"]["path"] == f"videos/{r['vid']}.mp4"
        assert len(_decode_all((out / r["video"]["path"]).read_bytes())) == r["num_frames"]
    assert not list(tmp_path.glob(".*"))  # no staging leftovers


def test_generate_sample_rejects_bad_arguments(tmp_path: Path):
    with pytest.raises(ConfigError):
        generate_sample(tmp_path / "x", sizes=SMALL, video_storage="cloud")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        generate_sample(tmp_path / "x", sizes=SMALL, workers=0)
    with pytest.raises(ConfigError):
        generate_sample(tmp_path / "x", videos=3, sizes=SMALL)
    assert not (tmp_path / "x").exists()


def test_cli_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    from create_bench.cli import main

    out = tmp_path / "cli"
    assert (
        main(["sample", "--out", str(out), "--sizes", "train=2,test=1", "--workers", "1", "--seed", "3"]) == 0
    )
    printed = capsys.readouterr().out
    assert "3 videos" in printed and "fingerprint" in printed and str(out) in printed
    assert json.loads((out / "manifest.json").read_text("utf-8"))["generator"]["seed"] == 3
    assert main(["sample", "--out", str(tmp_path / "bad"), "--sizes", "train=two"]) == 2
    assert "SPLIT=N" in capsys.readouterr().err


def test_load_dataset_sees_ten_references_per_test_video(tiny: Path, tmp_path: Path):
    import datasets

    ds = datasets.load_dataset(str(tiny), cache_dir=str(tmp_path / "hf"))
    assert set(ds) == {"train", "validation", "test"}
    assert ds["test"].num_rows == TINY["test"]
    assert all(len(t) == 10 for t in ds["test"]["titles"]) and all(
        len(c) == 10 for c in ds["test"]["captions"]
    )
    assert ds["train"].features["category"].names == T.CATEGORY_NAMES

"""The shard writer, the importer of the official release, and `create-bench validate`."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from create_bench.cli import main
from create_bench.data.build import DatasetWriter
from create_bench.data.importer import build_from_release, split_of
from create_bench.data.shards import open_dataset, read_features, read_table
from create_bench.data.validate import validate_dataset
from create_bench.errors import AnnotationError, DataError, ManifestError, VideoDecodeError
from create_bench.video.probe import probe_video


def _args(rel: dict[str, Path]) -> list[str]:
    return [str(rel[k]) for k in ("train", "val", "test", "pretrain")]


def _no_partials(parent: Path) -> None:
    leftovers = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_split_of_names():
    assert split_of("x/create_210k_train.json") == "train"
    assert split_of("create_210k_val.json") == "validation"
    assert split_of("create_210k_test.json") == "test"
    assert split_of("create_3m_pretrain.json") == "pretrain-3m"
    assert split_of("create_10m_pretrain.json") == "pretrain-10m"
    with pytest.raises(DataError, match="cannot tell the split"):
        split_of("whatever.json")


def test_import_mini_release(mini_release, tmp_path):
    out = tmp_path / "out" / "ds"
    rc = main(
        [
            "build",
            "--annotations",
            *_args(mini_release),
            "--videos",
            str(mini_release["videos"]),
            "--features",
            str(mini_release["features"]),
            "--out",
            str(out),
            "--shard-size",
            "2",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    info = open_dataset(out)
    assert {s: info.num_rows(s) for s in info.splits} == {
        "train": 6,
        "validation": 3,
        "test": 4,
        "pretrain-3m": 3,
    }
    assert len(info.files("train")) == 3 and info.files("train")[0].name == "train-00000-of-00003.parquet"
    test = read_table(out, "test", ["vid", "titles", "captions", "num_frames", "category"]).to_pylist()
    assert all(len(r["titles"]) == 10 and len(r["captions"]) == 10 for r in test)
    # num_frames equals what really decodes, checked independently with decord
    import decord

    for r in read_table(out, "validation", ["vid", "video", "num_frames"]).to_pylist():
        vr = decord.VideoReader(str(mini_release["videos"] / f"{r['vid']}.mp4"))
        assert r["num_frames"] == len(vr)
        assert r["video"]["bytes"] == (mini_release["videos"] / f"{r['vid']}.mp4").read_bytes()
    feats = read_features(out, "clip", "test")
    assert set(feats) == {r["vid"] for r in test}
    np.testing.assert_allclose(feats["test000"], np.load(mini_release["features"] / "test000.npy"), rtol=1e-6)
    pre = read_table(out, "pretrain-3m").to_pylist()
    assert pre[0]["titles"] == [] and pre[0]["category"] == -1 and pre[0]["raw_title"].startswith("预训练")
    assert validate_dataset(out)["test"] == 4
    _no_partials(out.parent)


def test_import_path_storage(mini_release, tmp_path):
    out = tmp_path / "ds"
    build_from_release(
        [str(mini_release["test"])], mini_release["videos"], out, video_storage="path", workers=1
    )
    rows = read_table(out, "test", ["vid", "video"]).to_pylist()
    assert all(r["video"]["bytes"] is None and Path(r["video"]["path"]).is_file() for r in rows)


def _corrupt(rel: dict[str, Path]) -> None:
    """One corrupt video, one missing video, one malformed item (all in the test split)."""
    (rel["videos"] / "test001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
    (rel["videos"] / "test002.mp4").unlink()
    items = json.loads(rel["test"].read_text("utf-8"))
    items[3]["ann_caption"] = 42
    rel["test"].write_text(json.dumps(items, ensure_ascii=False), "utf-8")


def test_import_bad_rows_skip(mini_release, tmp_path):
    _corrupt(mini_release)
    out = tmp_path / "ds"
    report = build_from_release(_args(mini_release), mini_release["videos"], out, on_error="skip", workers=1)
    bad = {e["vid"]: e for e in report.errors}
    assert set(bad) == {"test001", "test002", "test003"}
    assert "undecodable" in bad["test001"]["error"]
    assert "not found" in bad["test002"]["error"]
    assert "ann_caption" in bad["test003"]["error"] and bad["test003"]["row"] == 3
    assert all(e["file"].endswith("create_210k_test.json") for e in report.errors)
    assert read_table(out, "test", ["vid"]).column("vid").to_pylist() == ["test000"]
    assert json.loads((out / "build_report.json").read_text())["errors"] == report.errors
    validate_dataset(out)


@pytest.mark.parametrize(
    "breakage, error, match",
    [
        ("corrupt", VideoDecodeError, "test001"),
        ("missing", DataError, "test002"),
        ("malformed", AnnotationError, "test003"),
    ],
)
def test_import_bad_rows_fail_leaves_nothing(mini_release, tmp_path, breakage, error, match):
    rel = mini_release
    if breakage == "corrupt":
        (rel["videos"] / "test001.mp4").write_bytes(b"not a video at all" * 10)
    elif breakage == "missing":
        (rel["videos"] / "test002.mp4").unlink()
    else:
        items = json.loads(rel["test"].read_text("utf-8"))
        items[3]["category"] = "food"
        rel["test"].write_text(json.dumps(items, ensure_ascii=False), "utf-8")
    parent = tmp_path / "outparent"
    parent.mkdir()
    with pytest.raises(error, match=match):
        build_from_release(_args(rel), rel["videos"], parent / "ds", on_error="fail", workers=1)
    assert list(parent.iterdir()) == [], "a failed build must leave no partial dataset or shard"


def test_cli_fail_exit_code(mini_release, tmp_path, capsys):
    (mini_release["videos"] / "val001.mp4").unlink()
    rc = main(
        [
            "build",
            "--annotations",
            str(mini_release["val"]),
            "--videos",
            str(mini_release["videos"]),
            "--out",
            str(tmp_path / "ds"),
            "--workers",
            "1",
        ]
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "val001" in err and "create_210k_val.json" in err
    assert not (tmp_path / "ds").exists()


def test_duplicate_and_unknown_category(mini_release, tmp_path):
    items = json.loads(mini_release["val"].read_text("utf-8"))
    items[1]["vid"] = items[0]["vid"]
    items[2]["category"] = 99
    mini_release["val"].write_text(json.dumps(items, ensure_ascii=False), "utf-8")
    report = build_from_release(
        [str(mini_release["val"])], mini_release["videos"], tmp_path / "ds", on_error="skip", workers=1
    )
    msgs = sorted(e["error"] for e in report.errors)
    assert any("duplicate vid" in m for m in msgs) and any("unknown category 99" in m for m in msgs)


def test_writer_rejects_bad_rows_and_aborts(tmp_path, mp4_factory):
    b = mp4_factory(8)
    good = dict(
        vid="a",
        split="test",
        category=0,
        tags=["x"],
        raw_title="r",
        titles=["t"] * 10,
        captions=["c"] * 10,
        video={"bytes": b, "path": None},
        **probe_video(b).to_dict(),
    )
    with pytest.raises(DataError, match="duplicate vid"):
        with DatasetWriter(tmp_path / "ds", name="t", categories=["c0"]) as w:
            w.add(good)
            w.add(good)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError, match="titles"):
        with DatasetWriter(tmp_path / "ds", name="t", categories=["c0"]) as w:
            w.add({**good, "titles": ["t"] * 11})
    with pytest.raises(DataError, match="train"):
        with DatasetWriter(tmp_path / "ds", name="t", categories=["c0"]) as w:
            w.add({**good, "split": "train"})  # train allows 1 title
    assert list(tmp_path.iterdir()) == []


def test_writer_is_deterministic(tmp_path, mp4_factory):
    b = mp4_factory(8)
    rows = [
        dict(
            vid=f"v{i}",
            split="train",
            category=0,
            tags=["x"],
            raw_title="r",
            titles=["标题"],
            captions=["描述"],
            video={"bytes": b, "path": None},
            **probe_video(b).to_dict(),
        )
        for i in range(5)
    ]
    hashes = []
    for k in range(2):
        with DatasetWriter(tmp_path / f"d{k}", name="t", categories=["c0"], shard_size=2) as w:
            for r in rows:
                w.add(r)
        hashes.append(
            [f["sha256"] for f in json.loads((tmp_path / f"d{k}" / "manifest.json").read_text())["files"]]
        )
    assert hashes[0] == hashes[1] and len(hashes[0]) == 3


def test_validate_detects_tampering(mini_release, tmp_path):
    out = tmp_path / "ds"
    build_from_release([str(mini_release["test"])], mini_release["videos"], out, workers=1)
    shard = out / "data" / "test-00000-of-00001.parquet"
    t = pq.read_table(shard)
    pq.write_table(t.slice(0, 2), shard)
    with pytest.raises(ManifestError, match="sha256"):
        validate_dataset(out)
    shard.unlink()
    with pytest.raises(ManifestError, match="missing"):
        open_dataset(out)


def test_hf_load_dataset(mini_release, tmp_path):
    import datasets

    out = tmp_path / "ds"
    build_from_release(_args(mini_release), mini_release["videos"], out, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dd = datasets.load_dataset(str(out))
    assert set(dd) == {"train", "validation", "test"}
    assert len(dd["test"][0]["titles"]) == 10
    feat = dd["test"].features["category"]
    assert feat.int2str(dd["test"][0]["category"]) == "category_00"
    assert isinstance(dd["test"][0]["video"]["bytes"], bytes)
    streamed = datasets.load_dataset(str(out), streaming=True)
    assert sorted(r["vid"] for r in streamed["validation"]) == ["val000", "val001", "val002"]
    pre = datasets.load_dataset(str(out), "pretrain-3m")
    assert pre["train"].num_rows == 3


def test_validate_checks_what_the_hf_loader_reads(mini_release, tmp_path):
    """A stray shard under data/ (or a file under features/) that manifest.json does not list makes
    validate fail naming the file; so do README configs patterns and dataset_info sizes that do not
    agree with the manifest. After validate says OK, datasets.load_dataset loads the directory."""
    import shutil

    import datasets
    import yaml

    out = tmp_path / "ds"
    build_from_release(
        _args(mini_release), mini_release["videos"], out, features_dir=mini_release["features"], workers=1
    )
    validate_dataset(out)
    assert datasets.load_dataset(str(out))["test"].num_rows == 4  # validate OK -> the HF loader agrees

    stray = out / "data" / "test-00001-of-00002.parquet"
    shutil.copy(out / "data" / "test-00000-of-00001.parquet", stray)
    with pytest.raises(ManifestError, match=r"data/test-00001-of-00002\.parquet: not listed in manifest"):
        validate_dataset(out)
    with pytest.raises(
        Exception, match="NonMatchingSplitsSizes|num_examples|expected"
    ):  # what validate prevents
        datasets.load_dataset(str(out), download_mode="force_redownload")
    stray.unlink()

    feat = next((out / "features").rglob("*.parquet"))
    extra_feat = feat.with_name("test-00009-of-00010.parquet")
    shutil.copy(feat, extra_feat)
    with pytest.raises(ManifestError, match=extra_feat.relative_to(out).as_posix()):
        validate_dataset(out, rows=False)
    extra_feat.unlink()

    readme = out / "README.md"
    original = readme.read_text("utf-8")
    front = yaml.safe_load(original.split("---\n")[1])
    front["configs"][0]["data_files"][2]["path"] = "data/*-*.parquet"  # test split reads every shard
    front["dataset_info"][0]["splits"][1]["num_examples"] = 99
    readme.write_text("---\n" + yaml.safe_dump(front, allow_unicode=True) + "---\n", "utf-8")
    with pytest.raises(ManifestError) as exc:
        validate_dataset(out, rows=False)
    msg = str(exc.value)
    assert "data/train-00000-of-00001.parquet: matched by README.md config 'default' split 'test'" in msg
    assert "split 'validation': num_examples 99, manifest.json says 3" in msg
    readme.write_text(original, "utf-8")
    validate_dataset(out, rows=False)


def test_skipped_rows_reach_manifest_results_report_and_card(mini_release, tmp_path):
    """Rows `build --on-error skip` leaves out are counted per split in manifest.json and
    build_report.json, and every score on that split says so (results JSON, printed table, report),
    as do `create-bench stats` and the data card."""
    from create_bench.data.stats import card_markdown, compute_stats
    from create_bench.predictions import write_predictions
    from create_bench.report import markdown
    from create_bench.results import format_table
    from create_bench.scoring import score_predictions

    _corrupt(mini_release)
    out = tmp_path / "ds"
    report = build_from_release(_args(mini_release), mini_release["videos"], out, on_error="skip", workers=1)
    assert report.skipped == {"test": 3}
    assert "3 bad rows skipped (test 3;" in report.summary()
    assert json.loads((out / "manifest.json").read_text())["skipped"] == {"test": 3}
    assert json.loads((out / "build_report.json").read_text())["skipped"] == {"test": 3}
    validate_dataset(out)

    write_predictions(tmp_path / "p", generations={"test000": {"title": "标题", "caption": "一个人"}})
    results = score_predictions(tmp_path / "p", out, "test", bootstrap=0, tokenizer="char")
    assert results["dataset"]["skipped"] == 3 and results["dataset"]["counts"]["videos"] == 1
    line = "3 test videos were skipped at build time (see build_report.json); scores are over the remaining 1"
    assert line in format_table(results) and line in markdown(results)
    validation = score_predictions(
        write_predictions(
            tmp_path / "pv", generations={f"val{i:03d}": {"title": "t", "caption": "c"} for i in range(3)}
        ),
        out,
        "validation",
        bootstrap=0,
    )
    assert "skipped" not in validation["dataset"] and "skipped at build" not in format_table(validation)

    stats = compute_stats(out, splits=["test"], pos=False)
    assert stats["dataset"]["skipped"] == {"test": 3}
    assert "3 test videos were skipped at build time (see build_report.json)" in card_markdown(stats)


def test_no_skipped_rows_no_skipped_key(mini_release, tmp_path):
    out = tmp_path / "ds"
    build_from_release([str(mini_release["test"])], mini_release["videos"], out, on_error="skip", workers=1)
    assert "skipped" not in json.loads((out / "manifest.json").read_text())
    assert json.loads((out / "build_report.json").read_text())["skipped"] == {}

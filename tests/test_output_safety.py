"""No command deletes or overwrites what it did not create (issue #16): `--out` of `build` and
`sample` is refused when it holds anything else, or is, holds or lies inside an input; the dataset
fingerprint is a hash of the content, so it reproduces whatever writes the Parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from create_bench.cli import main
from create_bench.data.build import DatasetWriter
from create_bench.data.fingerprint import fingerprint_dataset
from create_bench.data.importer import build_from_release
from create_bench.data.shards import read_table
from create_bench.data.validate import validate_dataset
from create_bench.errors import ManifestError, OutputError
from create_bench.fsutil import sha256_file
from create_bench.synthetic.sample import generate_sample
from create_bench.video.probe import probe_video

SIZES = {"train": 3, "validation": 2, "test": 2, "pretrain": 0}


def _tree(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def _release_args(rel: dict[str, Path]) -> list[str]:
    return [str(rel[k]) for k in ("train", "val", "test")]


def _build(rel: dict[str, Path], out: Path) -> int:
    return main(
        ["build", "--annotations", *_release_args(rel), "--videos", str(rel["videos"]), "--out", str(out),
         "--workers", "1"]
    )  # fmt: skip


def test_sample_refuses_a_foreign_directory(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    rc = main(
        ["sample", "--out", str(out), "--sizes", "train=3,validation=2,test=2,pretrain=0", "--workers", "1"]
    )
    assert rc == OutputError.exit_code
    err = capsys.readouterr().err
    assert "refusing to replace" in err and "notes.txt" in err
    assert (out / "notes.txt").read_text() == "my notes"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no temp dir left behind


def test_sample_replaces_its_own_previous_output(tmp_path):
    out = tmp_path / "s"
    generate_sample(out, sizes=SIZES, workers=1)
    first = json.loads((out / "manifest.json").read_text())["fingerprint"]
    generate_sample(out, sizes=SIZES, seed=1, workers=1)
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] != first
    (out / "data" / "my-extra.txt").write_text("x")  # something it did not write
    with pytest.raises(OutputError, match="data/"):
        generate_sample(out, sizes=SIZES, workers=1)
    assert (out / "data" / "my-extra.txt").exists()


def test_sample_does_not_replace_another_producers_dataset(tmp_path, mini_release):
    out = tmp_path / "built"
    build_from_release(_release_args(mini_release), mini_release["videos"], out, workers=1)
    before = _tree(out)
    with pytest.raises(OutputError, match="previous output of 'create-sample'"):
        generate_sample(out, sizes=SIZES, workers=1)
    assert _tree(out) == before


def test_build_refuses_out_equal_to_the_release_folder(mini_release, capsys):
    root = mini_release["root"]
    before = _tree(root)
    rc = _build(mini_release, root)
    assert rc == OutputError.exit_code
    assert "input" in capsys.readouterr().err
    assert _tree(root) == before  # annotations and every source video still there


@pytest.mark.parametrize("where", ["inside-videos", "parent-of-inputs"])
def test_build_refuses_out_inside_or_holding_an_input(mini_release, where, capsys):
    out = mini_release["videos"] / "ds" if where == "inside-videos" else mini_release["root"].parent
    before = _tree(mini_release["root"])
    assert _build(mini_release, out) == OutputError.exit_code
    assert "refusing to write" in capsys.readouterr().err
    assert _tree(mini_release["root"]) == before
    assert not (mini_release["videos"] / "ds").exists()


def test_build_refuses_unrelated_files_and_replaces_its_own(mini_release, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.json").write_text("{}")
    with pytest.raises(OutputError, match="keep.json"):
        build_from_release(_release_args(mini_release), mini_release["videos"], out, workers=1)
    assert (out / "keep.json").read_text() == "{}"
    (out / "keep.json").unlink()  # empty: allowed
    build_from_release(_release_args(mini_release), mini_release["videos"], out, workers=1)
    build_from_release(_release_args(mini_release), mini_release["videos"], out, workers=1)  # its own
    validate_dataset(out)


def test_sample_twice_same_fingerprint(tmp_path):
    """The issue's reproduction: two runs, one worker, the same seed -> the same fingerprint and bytes."""
    a = generate_sample(
        tmp_path / "a", sizes={"train": 4, "validation": 2, "test": 2, "pretrain": 0}, workers=1
    )
    b = generate_sample(
        tmp_path / "b", sizes={"train": 4, "validation": 2, "test": 2, "pretrain": 0}, workers=1
    )
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["fingerprint"] == mb["fingerprint"]
    assert ma["fingerprint_method"] == "content-v1"
    assert _tree(a) == _tree(b)


def _rows(mp4: bytes, n: int) -> list[dict]:
    meta = probe_video(mp4).to_dict()
    return [
        dict(vid=f"v{i}", split="train", category=0, tags=["x"], raw_title="r", titles=[f"标题{i}"],
             captions=["描述"], video={"bytes": mp4, "path": None}, **meta)
        for i in range(n)
    ]  # fmt: skip


def test_fingerprint_is_the_content_not_the_files(tmp_path, mp4_factory):
    rows = _rows(mp4_factory(8), 5)
    fps = []
    for k, shard_size in enumerate((2, 5)):
        with DatasetWriter(tmp_path / f"d{k}", name="t", categories=["c0"], shard_size=shard_size) as w:
            for r in rows if k == 0 else reversed(rows):
                w.add(r)
        fps.append(json.loads((tmp_path / f"d{k}" / "manifest.json").read_text())["fingerprint"])
        assert fingerprint_dataset(tmp_path / f"d{k}") == fps[-1]
    assert fps[0] == fps[1]  # other shard layout and row order, same content
    changed = [dict(r) for r in rows]
    changed[3]["titles"] = ["另一个标题"]
    with DatasetWriter(tmp_path / "d2", name="t", categories=["c0"]) as w:
        for r in changed:
            w.add(r)
    assert json.loads((tmp_path / "d2" / "manifest.json").read_text())["fingerprint"] != fps[0]


def test_fingerprint_ignores_the_parquet_writer(tmp_path, mp4_factory):
    """Rewriting a shard with other writer options (compression, row groups, created_by) and the
    manifest's hashes updated: same content fingerprint, and validate agrees."""
    d = tmp_path / "d"
    with DatasetWriter(d, name="t", categories=["c0"]) as w:
        for r in _rows(mp4_factory(8), 4):
            w.add(r)
    manifest = json.loads((d / "manifest.json").read_text())
    shard = d / manifest["files"][0]["path"]
    pq.write_table(pq.read_table(shard), shard, compression="gzip", row_group_size=1)
    manifest["files"][0]["sha256"] = sha256_file(shard)
    (d / "manifest.json").write_text(json.dumps(manifest))
    assert fingerprint_dataset(d) == manifest["fingerprint"]
    validate_dataset(d)


def test_validate_recomputes_the_content_fingerprint(tmp_path, mp4_factory):
    d = tmp_path / "d"
    with DatasetWriter(d, name="t", categories=["c0"]) as w:
        for r in _rows(mp4_factory(8), 4):
            w.add(r)
    manifest = json.loads((d / "manifest.json").read_text())
    shard = d / manifest["files"][0]["path"]
    t = read_table(d, "train").to_pylist()
    t[1]["raw_title"] = "changed"
    pq.write_table(pa.Table.from_pylist(t, schema=pq.read_schema(shard)), shard)
    manifest["files"][0]["sha256"] = sha256_file(shard)  # a consistent file list, other content
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match="content fingerprint"):
        validate_dataset(d)


def test_path_stored_videos_enter_the_fingerprint_by_content(tmp_path):
    a = generate_sample(tmp_path / "a", sizes=SIZES, workers=1, video_storage="path")
    fp = json.loads((a / "manifest.json").read_text())["fingerprint"]
    assert fingerprint_dataset(a) == fp
    embedded = generate_sample(tmp_path / "e", sizes=SIZES, workers=1)
    # the same videos embedded: a video enters by its bytes' sha256, never by where it is stored
    assert json.loads((embedded / "manifest.json").read_text())["fingerprint"] == fp
    victim = next((a / "videos").iterdir())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    assert fingerprint_dataset(a) != fp


def test_predictions_and_report_figures_never_replace_foreign_files(tmp_path):
    from create_bench.predictions import write_predictions

    pred = tmp_path / "pred"
    write_predictions(pred, generations={"v1": {"title": "标题"}})
    write_predictions(pred, generations={"v1": {"title": "新标题"}})  # its own output: replaced
    (pred / "notes.md").write_text("mine")
    with pytest.raises(OutputError, match="notes.md"):
        write_predictions(pred, generations={"v1": {"title": "标题"}})
    assert (pred / "notes.md").read_text() == "mine"
    assert "新标题" in (pred / "generations.jsonl").read_text()


def test_train_refuses_a_foreign_checkpoint_directory(tmp_path):
    """`create-bench train alwig --out DIR` writes config.json, model.safetensors, ... into DIR: a
    directory holding anything else, or the dataset itself, is refused before any work."""
    from create_bench.models.alwig.config import ALWIGConfig
    from create_bench.training.alwig.train import TrainOptions, train

    data = generate_sample(tmp_path / "s", sizes=SIZES, workers=1)
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    (out / "results.csv").write_text("x")
    with pytest.raises(OutputError, match="results.csv"):
        train(TrainOptions(cfg=ALWIGConfig(), data_dir=data, out_dir=out))
    assert (out / "config.json").read_text() == '{"mine": true}'
    with pytest.raises(OutputError, match="input"):
        train(TrainOptions(cfg=ALWIGConfig(), data_dir=data, out_dir=data / "ckpt"))
    assert not (data / "ckpt").exists()


def test_eval_never_overwrites_a_file_it_did_not_write(tmp_path, capsys):
    """`eval --out X.json` replaces results eval wrote (the same class, or any with --overwrite),
    never another file that happens to be at X.json."""
    data = generate_sample(tmp_path / "s", sizes=SIZES, workers=1)
    out = tmp_path / "notes.json"
    out.write_text('{"my": "notes"}')
    args = ["eval", "--model", "random", "--data", str(data), "--split", "test", "--bootstrap", "0",
            "--no-report", "--out", str(out)]  # fmt: skip
    assert main([*args, "--overwrite"]) == OutputError.exit_code
    assert "not a create-bench results file" in capsys.readouterr().err
    assert out.read_text() == '{"my": "notes"}'
    out.unlink()
    assert main(args) == 0 and main(args) == 0  # its own results: replaced
    assert "scores" in json.loads(out.read_text())

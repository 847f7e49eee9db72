"""Feature extraction: exact across engines (local, Ray, torchrun), resumable, GPU backend refusal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from create_bench.errors import BackendUnavailable, ConfigError, VideoDecodeError

SPLIT = "test"  # 12 videos of the tiny sample, several frame sizes and lengths
SET = "fx"

# An encoder that logs every call (one line per video, with encode_batch=1) and can be slowed down
# or made to crash after a number of calls; loaded by extraction as "file.py:Class". The log path
# is written into the source: Ray workers do not see environment changes made after Ray started.
COUNTING_ENCODER = """
import os, time
from create_bench.features.encoders import FixedEncoder

class CountingEncoder(FixedEncoder):
    def __call__(self, frames):
        log = {log!r}
        limit = int(os.environ.get("CB_TEST_ENCODER_CRASH_AFTER", "0"))
        if limit and os.path.exists(log):
            with open(log) as fh:
                if sum(1 for _ in fh) >= limit:
                    raise KeyboardInterrupt("simulated crash")
        out = super().__call__(frames)
        time.sleep(float(os.environ.get("CB_TEST_ENCODER_SLEEP", "0")))
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {tuple(frames.shape)}\\n")
        return out
"""


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _calls(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def _features(data: Path, split: str = SPLIT, fset: str = SET) -> dict[str, np.ndarray]:
    from create_bench.data.shards import read_features

    return read_features(data, fset, split)


def _shard_bytes(data: Path, split: str = SPLIT, fset: str = SET) -> list[bytes]:
    return [p.read_bytes() for p in sorted((data / "features" / fset).glob(f"{split}-*.parquet"))]


@pytest.fixture()
def counting_encoder(tmp_path: Path) -> tuple[str, Path]:
    log = tmp_path / "encoder_calls.log"
    src = tmp_path / "counting_encoder.py"
    src.write_text(COUNTING_ENCODER.replace("{log!r}", repr(str(log))))
    return f"{src}:CountingEncoder", log


@pytest.fixture(scope="module")
def local_reference(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny sample with SPLIT extracted by the local engine, no workers (the reference run)."""
    from create_bench.features.extract import extract_features

    data = _copy(tiny_dataset, tmp_path_factory.mktemp("ref") / "ds")
    extract_features(data, SPLIT, engine="local", feature_set=SET, batch_size=4, num_workers=0)
    return data


@pytest.fixture(scope="module")
def ray_local():
    import ray  # the optional `ray` extra, which `make setup` (and so CI) installs

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=120 << 20, logging_level="warning")
    yield ray
    ray.shutdown()


# --------------------------------------------------------------------------- local engine


def test_local_features_match_an_independent_reference(local_reference: Path, tiny_dataset: Path):
    from create_bench.data.shards import iter_rows, video_source
    from create_bench.data.validate import validate_dataset
    from create_bench.features.encoders import FixedEncoder
    from create_bench.features.extract import read_meta
    from create_bench.video import sample_indices
    from create_bench.video.decoding import decode

    feats = _features(local_reference)
    rows = list(iter_rows(tiny_dataset, SPLIT, ["vid", "num_frames", "fps", "video"]))
    assert sorted(feats) == sorted(r["vid"] for r in rows)
    enc = FixedEncoder()
    for row in rows:
        idx = sample_indices(row["num_frames"], "uniform-center@8")
        frames = decode(video_source(row, tiny_dataset), idx)
        expected = enc(frames[None])[0].numpy()
        got = feats[row["vid"]]
        assert got.shape == (len(idx), enc.dim)  # real frames only, no loader padding
        np.testing.assert_array_equal(got, expected)

    files = sorted((local_reference / "features" / SET).glob(f"{SPLIT}-*.parquet"))
    assert [f.name for f in files] == [f"{SPLIT}-00000-of-00001.parquet"]
    vids = pq.read_table(files[0], columns=["vid"]).column("vid").to_pylist()
    assert vids == sorted(vids)
    meta = read_meta(files[0])
    assert meta["encoder"] == "fixed" and meta["encoder_revision"] == "fixed-v2"
    assert meta["frames"] == "uniform-center@8/v1" and meta["split"] == SPLIT
    manifest = json.loads((local_reference / "manifest.json").read_text())
    entries = [f for f in manifest["files"] if f.get("kind") == "features"]
    assert [(e["feature_set"], e["split"], e["rows"]) for e in entries] == [(SET, SPLIT, len(rows))]
    assert manifest["feature_sets"][SET]["dim"] == FixedEncoder().dim
    validate_dataset(local_reference, rows=False)  # hashes and row counts of the new entries hold
    assert not (local_reference / "features" / SET / ".parts").exists()


def test_loader_reads_extracted_features(local_reference: Path):
    from create_bench.loader import make_loader

    feats = _features(local_reference)
    seen = 0
    for batch in make_loader(local_reference, SPLIT, features=SET, batch_size=5, columns=()):
        for b, vid in enumerate(batch["vid"]):
            m = batch["frame_mask"][b].numpy()
            np.testing.assert_array_equal(batch["features"][b].numpy()[m], feats[vid])
            seen += 1
    assert seen == len(feats)


def test_local_two_workers_give_identical_files(local_reference: Path, tiny_dataset: Path, tmp_path: Path):
    from create_bench.features.extract import extract_features

    data = _copy(tiny_dataset, tmp_path / "ds")
    extract_features(data, SPLIT, engine="local", feature_set=SET, batch_size=3, num_workers=2)
    assert _shard_bytes(data) == _shard_bytes(local_reference)


def test_local_resume_skips_done_videos(
    local_reference: Path, tiny_dataset: Path, tmp_path: Path, counting_encoder, monkeypatch
):
    from create_bench.features.extract import extract_features, make_config, run_extraction

    enc, log = counting_encoder
    data = _copy(tiny_dataset, tmp_path / "ds")
    monkeypatch.setenv("CB_TEST_ENCODER_CRASH_AFTER", "5")
    with pytest.raises(KeyboardInterrupt):
        extract_features(data, SPLIT, encoder=enc, feature_set=SET, batch_size=2)
    parts = sorted((data / "features" / SET / ".parts" / SPLIT).glob("*.parquet"))
    done = {v for p in parts for v in pq.read_table(p).column("vid").to_pylist()}
    assert len(parts) == 2 and len(done) == 4  # whole parts only; the 5th video's part never appeared
    monkeypatch.delenv("CB_TEST_ENCODER_CRASH_AFTER")
    log.unlink()
    report = run_extraction(make_config(data, SPLIT, encoder=enc, feature_set=SET, batch_size=2))
    assert report.reused == 4 and not set(report.computed) & done
    assert _calls(log) == len(report.computed) == 12 - 4
    assert _shard_bytes(data) == _shard_bytes(local_reference)
    # Everything done: a third run encodes nothing.
    log.unlink()
    report = run_extraction(make_config(data, SPLIT, encoder=enc, feature_set=SET))
    assert report.reused == 12 and report.computed == [] and _calls(log) == 0
    assert _shard_bytes(data) == _shard_bytes(local_reference)


@pytest.mark.parametrize("fanin", [128, 2])
def test_merge_deduplicates_and_orders_by_vid(
    local_reference: Path, tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fanin: int
):
    import create_bench.features.extract as ex
    import create_bench.features.merge as merge

    monkeypatch.setattr(merge, "MERGE_FANIN", fanin)  # 2: merges through two levels of sorted runs
    data = _copy(tiny_dataset, tmp_path / "ds")
    ref = _features(local_reference)
    plan = ex.prepare(ex.make_config(data, SPLIT, feature_set=SET, shard_size=5), ex.resolve_encoder("fixed"))
    vids = sorted(ref, reverse=True)
    w = ex.PartWriter(plan.parts_dir, "a", plan.meta)
    for chunk in (vids[:7], vids[3:], vids[5:6], vids[10:], vids[:2]):  # overlapping, unsorted
        w.write(chunk, [ref[v] for v in chunk])
    files = ex.merge_parts(plan)
    assert [f.name for f in files] == [f"{SPLIT}-{i:05d}-of-00003.parquet" for i in range(3)]
    merged = [v for f in files for v in pq.read_table(f).column("vid").to_pylist()]
    assert merged == sorted(ref)
    got = _features(data)
    for vid in ref:
        np.testing.assert_array_equal(got[vid], ref[vid])
    assert not plan.parts_dir.exists()


def test_settings_mismatch_is_refused_unless_redone(tiny_dataset: Path, tmp_path: Path):
    from create_bench.features.extract import extract_features, read_meta

    data = _copy(tiny_dataset, tmp_path / "ds")
    extract_features(data, "validation", feature_set=SET, frames="uniform-center@2")
    with pytest.raises(ConfigError, match="different settings"):
        extract_features(data, "validation", feature_set=SET, frames="uniform-center@3")
    extract_features(data, "validation", feature_set=SET, frames="uniform-center@3", resume=False)
    (f,) = sorted((data / "features" / SET).glob("validation-*.parquet"))
    assert read_meta(f)["frames"] == "uniform-center@3/v1"
    assert {v.shape[0] for v in _features(data, "validation").values()} <= {3}


def test_bad_video_fails_naming_the_vid_or_is_skipped(tiny_dataset: Path, tmp_path: Path):
    from create_bench.data.build import DatasetWriter
    from create_bench.data.shards import open_dataset, read_table
    from create_bench.features.extract import extract_features

    info = open_dataset(tiny_dataset)
    rows = read_table(tiny_dataset, "validation").to_pylist()
    bad = rows[2]["vid"]
    rows[2]["video"] = {"bytes": b"not a video at all", "path": None}
    data = tmp_path / "broken"
    with DatasetWriter(data, name="broken", categories=info.categories) as w:
        for r in rows:
            w.add(r)
    with pytest.raises(VideoDecodeError, match=bad):
        extract_features(data, "validation", feature_set=SET, batch_size=2, timeout=30)
    extract_features(data, "validation", feature_set=SET, batch_size=2, on_error="skip", timeout=30)
    assert sorted(_features(data, "validation")) == sorted(r["vid"] for r in rows if r["vid"] != bad)


def test_options_are_validated(tiny_dataset: Path):
    from create_bench.features.extract import make_config, resolve_encoder

    with pytest.raises(ConfigError, match="did you mean 'num_workers'"):
        make_config(tiny_dataset, SPLIT, num_worker=2)
    with pytest.raises(ConfigError, match="unknown engine"):
        make_config(tiny_dataset, SPLIT, engine="spark")
    with pytest.raises(ConfigError, match="deterministic"):
        make_config(tiny_dataset, SPLIT, frames="random-segment@8")
    with pytest.raises(ConfigError, match="did you mean 'fixed'"):
        resolve_encoder("fixd")
    from create_bench.features.extract import per_rank_devices

    cfg = make_config(tiny_dataset, SPLIT, engine="torchrun", device="cuda", decode_device="cuda")
    per_rank = per_rank_devices(cfg, 3)  # torchrun: a bare "cuda" is this process's GPU
    assert (per_rank.device, per_rank.decode_device) == ("cuda:3", "cuda:3")


# --------------------------------------------------------------------------- GPU decoding


def test_gpu_decode_backend_refuses_clearly_without_nvdec(tiny_dataset: Path, tmp_path: Path):
    from create_bench.data.shards import iter_rows, video_source
    from create_bench.features.extract import extract_features
    from create_bench.video.backends.nvdec import GPU_TOLERANCE, gpu_decode_available, gpu_decode_status
    from create_bench.video.decoding import decode, decode_gpu

    row = next(iter_rows(tiny_dataset, SPLIT, ["vid", "num_frames", "video"]))
    src, idx = video_source(row, tiny_dataset), [0, row["num_frames"] // 2, row["num_frames"] - 1]
    if gpu_decode_available():  # a machine with NVDEC: frames equal the CPU frames within tolerance
        gpu = decode_gpu(src, idx, vid=row["vid"])
        cpu = decode(src, idx)
        assert gpu.shape == cpu.shape
        assert np.abs(gpu.astype(int) - cpu.astype(int)).max() <= GPU_TOLERANCE
        return
    status = gpu_decode_status()
    assert status["decord"] and "CUDA" in status["decord"]
    assert status["pynvvideocodec"]
    for call in (
        lambda: decode(src, idx, ctx="gpu"),
        lambda: decode_gpu(src, idx, vid=row["vid"]),
    ):
        with pytest.raises(BackendUnavailable, match="decord.*pynvvideocodec"):
            call()
    data = _copy(tiny_dataset, tmp_path / "ds")
    with pytest.raises(BackendUnavailable, match="--decode-device cuda"):
        extract_features(data, SPLIT, feature_set=SET, decode_device="cuda")
    assert not (data / "features").exists()  # refused before any work


def test_cli_gpu_refusal_exit_code(tiny_dataset: Path, tmp_path: Path, capsys):
    from create_bench.cli import main
    from create_bench.video.backends.nvdec import gpu_decode_available

    if gpu_decode_available():
        return  # covered by the equality branch above
    data = _copy(tiny_dataset, tmp_path / "ds")
    rc = main(["extract", "--data", str(data), "--split", SPLIT, "--decode-device", "cuda"])
    assert rc == BackendUnavailable.exit_code
    assert "not available" in capsys.readouterr().err


# --------------------------------------------------------------------------- torchrun


@pytest.mark.slow
def test_torchrun_two_ranks_equal_local(local_reference: Path, tiny_dataset: Path, tmp_path: Path):
    data = _copy(tiny_dataset, tmp_path / "ds")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
        "-m", "create_bench", "extract", "--data", str(data), "--split", SPLIT,
        "--engine", "torchrun", "--feature-set", SET, "--batch-size", "2",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "computed here" in res.stdout
    assert _shard_bytes(data) == _shard_bytes(local_reference)


def test_torchrun_ranks_as_plain_processes_resume_on_another_world_size(
    local_reference: Path, tiny_dataset: Path, tmp_path: Path, counting_encoder
):
    """Ranks given explicitly (no launcher): 3 ranks, of which rank 2 never ran, then 2 ranks finish."""
    from create_bench.features.extract import make_config, run_extraction

    enc, log = counting_encoder
    data = _copy(tiny_dataset, tmp_path / "ds")
    opts = dict(engine="torchrun", encoder=enc, feature_set=SET, batch_size=2)
    r1 = run_extraction(make_config(data, SPLIT, rank=1, world_size=3, **opts))
    assert not r1.merged and len(r1.computed) == 4  # rows [4, 8) of 12
    first = set(r1.computed)
    log.unlink()
    r1b = run_extraction(make_config(data, SPLIT, rank=1, world_size=2, **opts))
    assert not r1b.merged and not set(r1b.computed) & first
    r0 = run_extraction(make_config(data, SPLIT, rank=0, world_size=2, merge_timeout=30, **opts))
    assert r0.merged
    assert _calls(log) == 12 - 4  # nothing done by the 3-rank run was encoded again
    assert _shard_bytes(data) == _shard_bytes(local_reference)


# --------------------------------------------------------------------------- ray


@pytest.mark.slow
def test_ray_equals_local(local_reference: Path, tiny_dataset: Path, tmp_path: Path, ray_local):
    from create_bench.features.extract import make_config, run_extraction

    data = _copy(tiny_dataset, tmp_path / "ds")
    report = run_extraction(
        make_config(data, SPLIT, engine="ray", feature_set=SET, batch_size=3, num_workers=1)
    )
    assert report.merged and sorted(report.computed) == sorted(_features(local_reference))
    ref = _features(local_reference)
    got = _features(data)
    assert got.keys() == ref.keys()
    for vid in ref:
        np.testing.assert_array_equal(got[vid], ref[vid])
    assert _shard_bytes(data) == _shard_bytes(local_reference)


@pytest.mark.slow
def test_ray_job_killed_halfway_resumes_without_recomputing(
    local_reference: Path, tiny_dataset: Path, tmp_path: Path, counting_encoder, ray_local
):
    from create_bench.features.extract import make_config, run_extraction

    enc, log = counting_encoder
    data = _copy(tiny_dataset, tmp_path / "ds")
    parts_dir = data / "features" / SET / ".parts" / SPLIT
    cmd = [
        sys.executable, "-m", "create_bench", "extract", "--data", str(data), "--split", SPLIT,
        "--engine", "ray", "--encoder", enc, "--feature-set", SET, "--batch-size", "2",
        "--num-workers", "1", "--object-store-mb", "100",
    ]  # fmt: skip
    env = dict(os.environ, CB_TEST_ENCODER_SLEEP="1.0", RAY_ADDRESS="")
    out = (tmp_path / "job.log").open("w")
    # Its own session: the driver and everything it starts form one process group to kill.
    job = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while len(list(parts_dir.glob("*.parquet"))) < 2:
            assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no part files appeared"
            time.sleep(0.2)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # kill the Ray job: driver, raylet, workers
        job.wait()
    # Ray workers outside the group notice their raylet is gone and exit; wait until nothing writes.
    stable_since, last = time.monotonic(), None
    while time.monotonic() - stable_since < 5:
        state = (sorted(p.name for p in parts_dir.glob("*.parquet")), _calls(log))
        if state != last:
            stable_since, last = time.monotonic(), state
        time.sleep(0.5)
    done = {v for p in parts_dir.glob("*.parquet") for v in pq.read_table(p).column("vid").to_pylist()}
    assert 4 <= len(done) < 12, "the job was not killed halfway"
    assert not (data / "features" / SET / f"{SPLIT}-00000-of-00001.parquet").exists()

    log.unlink()
    report = run_extraction(
        make_config(data, SPLIT, engine="ray", encoder=enc, feature_set=SET, batch_size=2)
    )
    assert report.reused == len(done)
    assert not set(report.computed) & done
    assert sorted(set(report.computed) | done) == sorted(_features(local_reference))
    assert _calls(log) == 12 - len(done)  # the encoder ran only for videos not done before the kill
    assert _shard_bytes(data) == _shard_bytes(local_reference)

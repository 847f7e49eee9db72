"""Feature-extraction throughput: the local engine with 1 and 2 DataLoader workers vs Ray, same machine.

Runs ``create_bench.features.extract`` (fixed encoder, ``uniform-center@8``) on a split of CREATE-sample
(``--quick``: its first 24 videos) with each engine, checks that all engines wrote byte-identical
feature shards, and prints videos/s with ratios against the baseline (local, 1 worker). It then
measures per-video costs (decode and encode, one core; decode of a generated 720p H.264 clip;
the merge) and prints a wall-time estimate for extracting CREATE-10M on a stated cluster, with
every assumption spelled out.

    python benchmarks/extract.py --data data/create-sample            # test split, 200 videos
    python benchmarks/extract.py --data data/create-sample --quick    # 24 videos, shorter clip
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import ensure_data, parser, ratio_line  # noqa: E402

from create_bench.features.extract import (  # noqa: E402
    decode_video,
    encode_videos,
    make_config,
    resolve_encoder,
    run_extraction,
)

# ----------------------------------------------------------------------------- the cluster estimate
#: Everything the CREATE-10M estimate assumes; measured quantities come from this run.
CLUSTER = {
    "nodes": 8,
    "cores_per_node": 96,
    "gpus_per_node": 8,
    "gpu": "NVIDIA A100 80GB",
    "fs_gbps": 20.0,  # aggregate read bandwidth of the shared filesystem, GB/s
}
ASSUME = {
    "videos": 10_000_000,
    "frames_per_video": 8,  # uniform-center@8
    "mean_video_mb": 3.0,  # ~30 s of 720p H.264 at ~0.8 Mb/s, short-video platform encodes
    "cpu_efficiency": 0.8,  # share of cores doing useful decode work (scheduling, I/O waits)
    "clip_images_per_s_per_gpu": 2000.0,  # CLIP ViT-B/16 fp16 inference, 224 px (not measured here)
    "feature_dim": 512,
}


def subset_dataset(data: Path, split: str, n: int | None, out: Path) -> Path:
    """A dataset of the split's first ``n`` videos (bytes embedded), so the dataset itself is untouched."""
    from create_bench.data.build import DatasetWriter
    from create_bench.data.shards import open_dataset, read_table, video_source

    info = open_dataset(data)
    rows = read_table(data, split).to_pylist()[:n]
    with DatasetWriter(out, name=f"{info.name}-{split}-bench", categories=info.categories) as w:
        for r in rows:
            src = video_source(r, data)
            r["video"] = {"bytes": src if isinstance(src, bytes) else Path(src).read_bytes(), "path": None}
            w.add(r)
    return out


def shard_digest(feature_dir: Path, split: str) -> str:
    h = hashlib.sha256()
    for f in sorted(feature_dir.glob(f"{split}-*.parquet")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def run_engine(data: Path, split: str, out: Path, engine: str, workers: int) -> tuple[float, str]:
    cfg = make_config(
        data,
        split,
        engine=engine,
        out_dir=out,
        feature_set="bench",
        batch_size=8,
        num_workers=workers,
        resume=False,
    )
    t = time.perf_counter()
    report = run_extraction(cfg)
    return time.perf_counter() - t, shard_digest(report.feature_dir, split)


def per_video_costs(data: Path, split: str) -> dict[str, float]:
    """Seconds per video on one core: decode (in-process) and encode (fixed encoder)."""
    import torch

    from create_bench.data.shards import iter_rows

    torch.set_num_threads(1)
    cfg = make_config(data, split, timeout=None)
    enc = resolve_encoder("fixed")
    t_dec = t_enc = 0.0
    n = 0
    for row in iter_rows(data, split, ["vid", "num_frames", "fps", "video"]):
        t = time.perf_counter()
        frames = decode_video(row, cfg)
        t_dec += time.perf_counter() - t
        t = time.perf_counter()
        encode_videos(enc, [frames], [row["vid"]])
        t_enc += time.perf_counter() - t
        n += 1
    torch.set_num_threads(os.cpu_count() or 1)
    return {"decode": t_dec / n, "encode": t_enc / n, "videos": n}


def merge_rate(out: Path, rows: int) -> float:
    """Rows/s of the final merge on CLIP-sized rows ([8, 512] float32) spread over parts of 40 rows.

    Uses the merge's own pieces (vid-sorted part files -> k-way merge -> streamed shard writer).
    """
    from create_bench.features.parts import PartWriter, merged_rows, write_rows

    rng = np.random.default_rng(0)
    out.mkdir(parents=True, exist_ok=True)
    w = PartWriter(out, "p", {"bench": True})
    for start in range(0, rows, 40):
        vids = [f"v{rng.integers(10**12):012d}" for _ in range(min(40, rows - start))]
        w.write(vids, [rng.standard_normal((8, 512)).astype(np.float32) for _ in vids])
    t = time.perf_counter()
    write_rows(out / "merged.parquet", merged_rows(sorted(w.written)), {"bench": True})
    return rows / (time.perf_counter() - t)


def make_720p_clip(seconds: int, fps: int = 25, gop: int = 25) -> bytes:
    """A 720p H.264 clip at a short-video bitrate: a scrolling texture and a moving box, fixed GOP."""
    import av

    h, w = 720, 1280
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    texture = np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 96)], -1)
    texture = (texture + rng.integers(0, 20, (h, w, 3))).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "preset": "veryfast",
            "crf": "26",
        }
        for i in range(seconds * fps):
            img = np.roll(texture, 3 * i, axis=1)
            x0, y0 = (i * 11) % (w - 200), (i * 5) % (h - 200)
            img[y0 : y0 + 200, x0 : x0 + 200] = (240, (i * 7) % 256, 30)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def decode_720p(seconds: int, repeat: int) -> tuple[float, int]:
    """Best seconds to decode uniform-center@8 of a 720p clip on one thread, and the clip's size."""
    from create_bench.video.decoding import decode
    from create_bench.video.sampling import sample_indices

    clip = make_720p_clip(seconds)
    idx = sample_indices(seconds * 25, "uniform-center@8")
    best = float("inf")
    for _ in range(max(1, repeat)):
        t = time.perf_counter()
        frames = decode(clip, idx, num_threads=1)
        best = min(best, time.perf_counter() - t)
    assert frames.shape == (8, 720, 1280, 3)
    return best, len(clip)


def estimate(d720: float, merge_rows_s: float) -> list[str]:
    """The CREATE-10M wall-time estimate, as printable lines (also pasted into SCALE.md)."""
    a, c = ASSUME, CLUSTER
    cores = c["nodes"] * c["cores_per_node"]
    gpus = c["nodes"] * c["gpus_per_node"]
    n = a["videos"]
    t_dec = n * d720 / (cores * a["cpu_efficiency"])
    t_enc = n * a["frames_per_video"] / (gpus * a["clip_images_per_s_per_gpu"])
    t_io = n * a["mean_video_mb"] / 1000 / c["fs_gbps"]
    t_merge = n / merge_rows_s
    feat_gb = n * a["frames_per_video"] * a["feature_dim"] * 4 / 1e9
    stream, bottleneck = max((t_dec, "CPU decode"), (t_enc, "GPU encode"), (t_io, "storage read"))
    total = stream + t_merge

    def hm(s: float) -> str:
        return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.0f} min"

    return [
        f"Cluster: {c['nodes']} nodes x ({c['gpus_per_node']} {c['gpu']}, {c['cores_per_node']} CPU cores), "
        f"shared filesystem {c['fs_gbps']:g} GB/s; Ray Data engine (CPU decode tasks, one GPU encoder actor per GPU).",
        f"Assumed: {n:,} videos, mean {a['mean_video_mb']:g} MB (720p H.264, ~30 s), {a['frames_per_video']} frames "
        f"each, CLIP ViT-B/16 at {a['clip_images_per_s_per_gpu']:g} images/s per GPU (fp16; not measured here), "
        f"{a['cpu_efficiency']:.0%} of cores busy decoding.",
        f"Measured here: {d720 * 1000:.0f} ms of one core to decode 8 frames of a 720p clip (1 s keyframes); "
        f"merge {merge_rows_s:,.0f} rows/s of [8, 512] features (one process).",
        f"  decode  {n:,} x {d720:.3f} s / ({cores} cores x {a['cpu_efficiency']:g}) = {hm(t_dec)}",
        f"  encode  {n * a['frames_per_video']:,} frames / ({gpus} GPUs x {a['clip_images_per_s_per_gpu']:g}/s) = {hm(t_enc)}",
        f"  read    {n * a['mean_video_mb'] / 1e6:.0f} TB / {c['fs_gbps']:g} GB/s = {hm(t_io)}",
        f"  merge   {n:,} rows / {merge_rows_s:,.0f} rows/s = {hm(t_merge)} ({feat_gb:.0f} GB of float32 features)",
        f"Estimate: ~{hm(total)} wall time ({bottleneck}-bound stream {hm(stream)} + merge {hm(t_merge)}).",
    ]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--split", default="test")
    p.add_argument(
        "--videos", type=int, default=None, help="first N videos of the split (default: all; --quick: 24)"
    )
    p.add_argument("--no-ray", action="store_true", help="skip the Ray engine")
    args = p.parse_args()
    data = ensure_data(args.data)
    n = args.videos or (24 if args.quick else None)
    tmp = Path(tempfile.mkdtemp(prefix="cb-bench-extract-"))
    try:
        sub = subset_dataset(data, args.split, n, tmp / "data")
        from create_bench.data.shards import open_dataset

        nv = open_dataset(sub).num_rows(args.split)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"dataset {data} split {args.split}: {nv} videos; fixed encoder, uniform-center@8; "
            f"{os.cpu_count()} CPUs, load average {load} (timings on a shared machine are upper bounds)"
        )
        results: dict[str, tuple[float, str]] = {}
        results["local, 1 worker"] = run_engine(sub, args.split, tmp / "out-l1", "local", 1)
        results["local, 2 workers"] = run_engine(sub, args.split, tmp / "out-l2", "local", 2)
        ray_note = ""
        if not args.no_ray:
            try:
                import ray

                t = time.perf_counter()
                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="warning")
                ray_note = f" (ray.init {time.perf_counter() - t:.1f} s, not counted)"
                try:
                    results["ray, 1 decode task + 1 encoder"] = run_engine(
                        sub, args.split, tmp / "out-r", "ray", 1
                    )
                finally:
                    ray.shutdown()
            except ImportError:
                print("ray: not installed (pip install 'create-bench[ray]'); skipped")
        base_t, base_digest = results["local, 1 worker"]
        for name, (secs, _digest) in results.items():
            print(ratio_line(f"{name} videos/s", nv / secs, nv / base_t, "videos/s") + f"  ({secs:.1f} s)")
        same = all(d == base_digest for _, d in results.values())
        print(f"identical feature shards across engines: {'yes' if same else 'NO'} ({base_digest}){ray_note}")
        if not same:
            raise SystemExit("engines disagree")

        costs = per_video_costs(sub, args.split)
        print(
            f"per video, one core: decode {costs['decode'] * 1000:.1f} ms, encode (fixed) {costs['encode'] * 1000:.1f} ms "
            f"(sample videos: small frames)"
        )
        rate = merge_rate(tmp / "merge", 400 if args.quick else 4000)
        seconds = 6 if args.quick else 30
        d720, size = decode_720p(seconds, 1 if args.quick else args.repeat)
        print(
            f"720p clip ({seconds} s, 25 fps, keyframe every 1 s, {size / 1e6:.1f} MB): 8 frames in {d720 * 1000:.0f} ms"
        )
        best = max(nv / s for s, _ in results.values())
        print(
            f"this machine at its best measured rate ({best:.2f} videos/s on sample-sized videos) would need "
            f"{ASSUME['videos'] / best / 86400:.0f} days for CREATE-10M"
        )
        print("\nCREATE-10M estimate")
        for line in estimate(d720, rate):
            print(line)
        print("GPU (NVDEC) decoding: not measured (no GPU on this machine).")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Frame decoding throughput: raw decord, the loader (0/1/2 workers), PyAV, and every frame in order.

Two workloads, one run:

1. the CREATE-sample test split (``--data``), 8 frames per video (``uniform-center@8``) resized to
   ``--size`` at decode time;
2. generated 30 s 720p H.264 clips (made here with PyAV in a temp dir) with a keyframe every 1 s and
   every 8 s, 8 frames per clip at the stored size.

For each: frames/s and clips/s of (a) raw ``decord.VideoReader(...).get_batch`` on the videos
already in memory (the same sources as the loader: embedded bytes via BytesIO, or the file path),
(b) ``create_bench.loader.make_loader`` with 0, 1 and 2 workers (reading the shards, decoding in
the killable worker, batching), (c) ``decode(backend="pyav")``, (d) decoding every frame in order
with decord, and, where an NVDEC backend runs (``create_bench.video.backends.nvdec``), (e) ``decode(ctx="gpu")``
on the first ``--gpu-videos`` videos (time scaled to the workload: NVDEC opens a CUDA decoder per
video), after checking that their GPU frames are within ``GPU_TOLERANCE`` of the CPU frames. Before timing, the loader's frame indices are checked against
the ones raw decord decodes and its first batch's frames against raw decord's (same sources,
indices and size). ``decode()`` and the loader use the ``auto`` strategy (seek, sequential, or the
targets split over parallel single-threaded readers; see ``create_bench.video.plan``), raw
decord its own ``get_batch``.

Timing is made for a shared, busy machine: after one warm-up each, the variants (every-frame
decoding included: on the clips one copy is timed and scaled) run in rounds
(``--repeat``, at least 3), the order rotating every round, and each variant reports its median
and best time over the rounds; ratios to raw decord are the median over rounds of the ratio
within the round (neighbours in time see about the same load). The checked pair, raw decord and
the loader with 0 workers, always runs back to back (order alternating) and gets more rounds
(``--pair-repeat``, default 7): a single pass varies by +-15% under the load of a busy 2-core
machine, and the median of 3 ratios alone can miss 0.9 by chance. The load average is printed
before and after each workload, and the CPU seconds (this process plus its decode worker) of the
variants that run here (not in DataLoader workers), which load disturbs less than wall time.
Each loader is made once and iterated every round, as epochs are (the clip datasets hold one
batch each: a fresh loader per pass would time only its first batch, whose array is new memory).

On the clips it also prints the decode limit: the frames that must be decoded from each target's
preceding keyframe, at the measured sequential decode speed. Checks (printed PASS/FAIL): loader
with 0 workers >= 0.9x raw decord; 8 frames >= 5x faster than every frame at 1 s keyframes and
not slower at 8 s.

    python benchmarks/decode.py --data data/create-sample [--quick]
"""

from __future__ import annotations

import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import ensure_data, make_clip, parser  # noqa: E402

from create_bench.data.build import DatasetWriter  # noqa: E402
from create_bench.data.shards import read_table, video_source  # noqa: E402
from create_bench.loader import make_loader  # noqa: E402
from create_bench.video import decode, sample_indices  # noqa: E402
from create_bench.video.decoding import (  # noqa: E402
    backend_version,
    choose_strategy,
    gpu_available,
    plan_strategy,
    worker_pid,
)

POLICY = "uniform-center@8"
CHECKS: list[tuple[str, bool]] = []


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its decode worker's (Linux /proc; else 0)."""
    total = time.process_time()
    pid = worker_pid()
    if pid is not None:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def load_line(when: str) -> None:
    try:
        one, five, fifteen = os.getloadavg()
        print(
            f"  load average {when}: {one:.2f} {five:.2f} {fifteen:.2f} (1/5/15 min; {os.cpu_count()} cores)"
        )
    except OSError:
        pass


def interleaved(
    fns: dict[str, Callable[[], Any]],
    repeat: int,
    pair: tuple[str, str] | None = None,
    pair_repeat: int = 0,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU times of each function per round, after one warm-up each. The runs are
    interleaved (a, b, c, b, c, a, c, a, b, ...: the order rotates every round) so load from other
    processes on a shared machine hits all of them alike, and no variant always runs first. The
    two functions of ``pair`` (the checked ratio) always run back to back, their order
    alternating, so their ratio in a round compares runs under the same load; they get extra
    rounds of their own up to ``pair_repeat``."""
    for fn in fns.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    others = [k for k in fns if not pair or k not in pair]
    for r in range(repeat):
        order = others[r % len(others) :] + others[: r % len(others)] if others else []
        if pair:
            at = r % (len(order) + 1)
            order[at:at] = list(pair) if r % 2 == 0 else list(reversed(pair))
        for k in order:
            c0, t0 = cpu_seconds(), time.perf_counter()
            fns[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(cpu_seconds() - c0)
    for r in range(repeat, pair_repeat if pair else 0):
        for k in list(pair) if r % 2 == 0 else list(reversed(pair)):
            c0, t0 = cpu_seconds(), time.perf_counter()
            fns[k]()
            wall[k].append(time.perf_counter() - t0)
            cpu[k].append(cpu_seconds() - c0)
    return wall, cpu


def paired_ratio(base: list[float], other: list[float]) -> float:
    """Median over rounds of base/other within each round (throughput of other relative to base)."""
    return statistics.median(b / o for b, o in zip(base, other))


def line(name: str, seconds: float, clips: int, frames: int, extra: str = "") -> None:
    print(
        f"  {name:<34s} {seconds:8.3f} s  {clips / seconds:9.1f} clips/s  {frames / seconds:9.1f} frames/s{extra}"
    )


def check(name: str, ok: bool) -> None:
    CHECKS.append((name, ok))
    print(f"  [{'PASS' if ok else 'FAIL'}] {name}")


# --------------------------------------------------------------------------- workloads


Item = tuple[bytes | str, list[int]]  # (embedded bytes or file path, frame indices)


def _reader(src: bytes | str, size: tuple[int, int] | None) -> Any:
    """A decord reader on the source as the loader's decoder opens it (bytes via BytesIO, or path)."""
    import decord

    kw = {} if size is None else {"height": size[0], "width": size[1]}
    return decord.VideoReader(io.BytesIO(src) if isinstance(src, bytes) else src, **kw)


def raw_decord(items: list[Item], size: tuple[int, int] | None) -> int:
    n = 0
    for src, idx in items:
        vr = _reader(src, size)
        n += vr.get_batch(idx).asnumpy().shape[0]
        del vr
    return n


def every_frame(items: list[Item], size: tuple[int, int] | None, chunk: int = 32) -> int:
    """Decode every frame in order (consecutive get_batch chunks never seek)."""
    n = 0
    for src, _ in items:
        vr = _reader(src, size)
        total = len(vr)
        for s in range(0, total, chunk):
            n += vr.get_batch(list(range(s, min(total, s + chunk)))).asnumpy().shape[0]
        del vr
    return n


def ours(items: list[Item], size: tuple[int, int] | None, backend: str, **kw: Any) -> int:
    return sum(decode(d, idx, size=size, backend=backend, **kw).shape[0] for d, idx in items)


_LOADERS: dict[tuple[Any, ...], Any] = {}


def loader_pass(data_dir: Path, split: str, size: tuple[int, int] | None, workers: int, **kw: Any) -> int:
    """One pass of a loader made once per configuration and iterated every round, as epochs are
    (its spare batch arrays are reused, as over a long split; see create_bench.loader)."""
    key = (str(data_dir), split, size, workers, tuple(sorted(kw.items())))
    loader = _LOADERS.get(key)
    if loader is None:
        loader = _LOADERS[key] = make_loader(
            data_dir, split, frames=POLICY, batch_size=8, num_workers=workers, size=size, **kw
        )
    n = sum(int(b["frame_mask"].sum()) for b in loader)
    if loader.report.num_skipped:
        raise SystemExit(loader.report.summary())
    return n


def check_gpu_frames(items: list[Item], size: tuple[int, int] | None) -> None:
    """NVDEC frames equal the CPU frames (decode() with decord) within GPU_TOLERANCE, every video."""
    from create_bench.video.backends.nvdec import CPU_FALLBACKS, GPU_TOLERANCE, select_gpu_backend

    before = sum(CPU_FALLBACKS.values())
    worst, means = 0, []
    for src, idx in items:
        a = decode(src, idx, size=size, ctx="gpu").astype(np.int16)
        b = decode(src, idx, size=size).astype(np.int16)
        if a.shape != b.shape:
            raise SystemExit(f"GPU frames have shape {a.shape}, CPU frames {b.shape}")
        d = np.abs(a - b)
        worst, means = max(worst, int(d.max())), [*means, float(d.mean())]
    print(
        f"  GPU frames ({select_gpu_backend(0)} NVDEC) vs CPU decord frames, {len(items)} videos: "
        f"max |diff| {worst}, mean |diff| {statistics.mean(means):.3f} (tolerance {GPU_TOLERANCE}); "
        f"{sum(CPU_FALLBACKS.values()) - before} videos NVDEC cannot decode went to the CPU "
        f"({dict(CPU_FALLBACKS) or 'none'})"
    )
    check(f"GPU frames within {GPU_TOLERANCE} levels of the CPU frames (max {worst})", worst <= GPU_TOLERANCE)


def run_suite(
    title: str,
    data_dir: Path,
    split: str,
    size: tuple[int, int] | None,
    repeat: int,
    pair_repeat: int,
    gpu: bool = False,
    gpu_videos: int = 40,
) -> dict[str, float]:
    rows = read_table(data_dir, split, ["vid", "num_frames", "fps", "video"]).to_pylist()
    items: list[Item] = []
    for r in rows:
        src = video_source(r, data_dir)
        items.append((src if isinstance(src, bytes) else str(src), sample_indices(r["num_frames"], POLICY)))
    clips, frames = len(items), sum(len(i) for _, i in items)
    all_frames = sum(r["num_frames"] for r in rows)
    kinds = sorted({"embedded bytes" if isinstance(s, bytes) else "file paths" for s, _ in items})
    print(
        f"\n== {title}: {clips} clips ({' and '.join(kinds)}), {frames} sampled frames ({POLICY}), "
        f"size {size or 'stored'}"
    )
    load_line("before")
    check_same_work(data_dir, split, size, rows, items)
    runs: dict[str, tuple[str, Callable[[], Any]]] = {
        "raw": ("(a) raw decord get_batch", lambda: raw_decord(items, size)),
        "decode": ("    decode() in-process, auto", lambda: ours(items, size, "decord")),
        "loader0": ("(b) loader, 0 workers", lambda: loader_pass(data_dir, split, size, 0)),
        "loader1": ("(b) loader, 1 worker", lambda: loader_pass(data_dir, split, size, 1)),
        "loader2": ("(b) loader, 2 workers", lambda: loader_pass(data_dir, split, size, 2)),
        "loader0-inproc": (
            "    loader, 0 workers, timeout=None",
            lambda: loader_pass(data_dir, split, size, 0, timeout=None),
        ),
        "pyav": ("(c) PyAV backend, auto", lambda: ours(items, size, "pyav")),
    }
    # Decoding every frame is slow: on identical copies (the generated clips) one is timed and the
    # time scaled up; it runs in the same interleaved rounds as the rest, so its ratios compare
    # runs under the same load.
    same = all(d is items[0][0] or d == items[0][0] for d, _ in items)
    sub = items[:1] if same else items
    scale = len(items) / len(sub)
    runs["every"] = ("(d) decord, every frame in order", lambda: every_frame(sub, size))
    gsub: list[Item] = []
    if gpu:
        # NVDEC opens a CUDA decoder per video (~0.4 s on an H200 machine): the GPU row and the
        # frame check use the first ``gpu_videos`` videos, and the time is scaled to the split.
        gsub = items[: max(1, gpu_videos)]
        check_gpu_frames(gsub, size)
        runs["gpu"] = ("(e) decode(ctx='gpu'), NVDEC", lambda: ours(gsub, size, "decord", ctx="gpu"))
    in_workers = {"loader1", "loader2"}  # their CPU is spent in DataLoader worker processes
    wall, cpu = interleaved(
        {k: fn for k, (_, fn) in runs.items()}, repeat, pair=("raw", "loader0"), pair_repeat=pair_repeat
    )
    wall["every"] = [x * scale for x in wall["every"]]
    cpu["every"] = [x * scale for x in cpu["every"]]
    if gpu:
        wall["gpu"] = [x * len(items) / len(gsub) for x in wall["gpu"]]
        cpu["gpu"] = [x * len(items) / len(gsub) for x in cpu["gpu"]]
    t = {k: statistics.median(v) for k, v in wall.items()}
    print(
        f"  {len(wall['decode'])} interleaved rounds ({len(wall['raw'])} for raw decord and the loader with 0 "
        "workers, back to back): median wall time (best in brackets); ratio = median over rounds of raw "
        "decord's time / the variant's in the same round; CPU s = median"
    )
    for key, (label, _) in runs.items():
        if key == "every":
            continue
        extra = f"  (best {min(wall[key]):.3f} s)"
        if key == "gpu" and len(gsub) < len(items):
            extra += f"  [{len(gsub)} videos timed, x{len(items) / len(gsub):.1f}]"
        if key != "raw":
            extra += f"  {paired_ratio(wall['raw'], wall[key]):5.2f}x raw decord"
        extra += (
            f"  CPU {statistics.median(cpu[key]):6.2f} s" if key not in in_workers else "  CPU   (workers)"
        )
        if key in ("loader0", "loader0-inproc"):
            extra += (
                f" ({statistics.median(cpu['raw']) / statistics.median(cpu[key]):.2f}x raw decord per CPU s)"
            )
        line(label, t[key], clips, frames, extra)
    line(
        "(d) decord, every frame in order",
        t["every"],
        clips,
        all_frames,
        f"  (best {min(wall['every']):.3f} s)  {paired_ratio(wall['raw'], wall['every']):5.2f}x raw decord"
        + (f"  [one clip timed, x{scale:.0f}]" if scale > 1 else ""),
    )
    t["every/raw"] = paired_ratio(wall["every"], wall["raw"])
    t["every/decode"] = paired_ratio(wall["every"], wall["decode"])
    print(
        f"      8 frames vs every frame (median over rounds of the ratio within a round): "
        f"{t['every/raw']:.2f}x faster (raw decord), {t['every/decode']:.2f}x (decode())"
    )
    if gpu:
        print(
            f"      NVDEC vs CPU: decode(ctx='gpu') {paired_ratio(wall['decode'], wall['gpu']):.2f}x the "
            "throughput of decode() on the CPU"
        )
    own = paired_ratio(wall["decode"], wall["loader0"])
    print(
        f"      loader with 0 workers vs decode() in-process on the same videos: {own:.2f}x throughput "
        "(below 1: the loader's own overhead)"
    )
    load_line("after")
    ratio = paired_ratio(wall["raw"], wall["loader0"])
    check(f"{title}: loader with 0 workers >= 0.9x raw decord ({ratio:.2f}x)", ratio >= 0.9)
    return t


def check_same_work(
    data_dir: Path, split: str, size: tuple[int, int] | None, rows: list[dict[str, Any]], items: list[Item]
) -> None:
    """The loader decodes the same frames of the same sources as raw decord: same indices for
    every video, and the frames of its first batch equal raw decord's."""
    import decord

    want = {r["vid"]: item for r, item in zip(rows, items)}
    loader = make_loader(data_dir, split, frames=POLICY, batch_size=8, num_workers=0, size=size)
    first = True
    for batch in loader:
        for i, vid in enumerate(batch["vid"]):
            src, idx = want[vid]
            got = batch["frame_indices"][i][batch["frame_mask"][i]].tolist()
            if got != idx:
                raise SystemExit(
                    f"benchmark is unfair: loader decodes frames {got} of {vid}, raw decord {idx}"
                )
            if first:
                vr = _reader(src, size)
                ref = vr.get_batch(idx).asnumpy()
                del vr
                if not np.array_equal(batch["frames"][i, : len(idx)].numpy(), ref):
                    raise SystemExit(f"benchmark is unfair: loader frames of {vid} differ from raw decord's")
        first = False
    if loader.report.videos != len(rows):
        raise SystemExit(loader.report.summary())
    print(
        f"  same work: the loader decodes the same indices as raw decord for all {len(rows)} videos, "
        f"frames equal on its first batch (decord {decord.__version__})"
    )


# --------------------------------------------------------------------------- generated clips


def clip_dataset(tmp: Path, seconds: int, copies: int) -> dict[int, Path]:
    """One dataset per keyframe spacing, each with ``copies`` rows of the same clip."""
    from create_bench.video.probe import probe_video

    out = {}
    for gop_s in (1, 8):
        clip = tmp / f"clip-k{gop_s}.mp4"
        t0 = time.perf_counter()
        make_clip(clip, seconds, gop_s)
        info = probe_video(clip).to_dict()
        print(
            f"  made {clip.name}: {info['num_frames']} frames {info['width']}x{info['height']}, "
            f"{clip.stat().st_size / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s"
        )
        ds = tmp / f"k{gop_s}"
        data = clip.read_bytes()
        with DatasetWriter(ds, name=f"clips-k{gop_s}", categories=["x"]) as w:
            for i in range(copies):
                w.add(
                    dict(
                        vid=f"k{gop_s}-{i}",
                        split="test",
                        category=0,
                        tags=[],
                        raw_title="",
                        titles=["t"],
                        captions=["c"],
                        video={"bytes": data, "path": None},
                        **info,
                    )
                )
        out[gop_s] = ds
    return out


def pure_decode_fps(data: bytes) -> float:
    """Frames per second of decoding every frame in order without any RGB conversion (PyAV)."""
    import av

    t0 = time.perf_counter()
    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        n = sum(1 for _ in c.decode(stream))
    return n / (time.perf_counter() - t0)


def keyframe_report(ds: Path, t: dict[str, float]) -> None:
    import decord

    rows = read_table(ds, "test", ["num_frames", "video"]).to_pylist()
    data = rows[0]["video"]["bytes"]
    keys = list(decord.VideoReader(io.BytesIO(data)).get_key_indices())
    idx = sample_indices(rows[0]["num_frames"], POLICY)
    plan = plan_strategy(idx, keys)
    fps = max(pure_decode_fps(data) for _ in range(2))
    per_clip = t["raw"] / len(rows)  # (medians)
    print(
        f"      keyframes every {keys[1] - keys[0] if len(keys) > 1 else rows[0]['num_frames']} frames; targets {idx}"
    )
    print(
        f"      decode limit: {plan.limit_frames} frames from each target's preceding keyframe "
        f"({plan.seek_frames} when targets in one GOP share the decode; {plan.seeks} seeks) at "
        f"{fps:.0f} frames/s sequential decode (no RGB conversion) = {plan.limit_frames / fps:.3f} s/clip "
        f"({plan.seek_frames / fps:.3f} s shared); measured {per_clip:.3f} s/clip raw decord, "
        f"{t['decode'] / len(rows):.3f} s/clip decode() [strategy {choose_strategy(idx, keys, 0)[0]}]"
    )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224, help="square decode size on CREATE-sample (default 224)")
    p.add_argument("--seconds", type=int, default=30, help="length of the generated clips (default 30)")
    p.add_argument("--no-clips", action="store_true", help="only the CREATE-sample workload")
    p.add_argument(
        "--pair-repeat",
        type=int,
        default=7,
        help="rounds of the checked pair, raw decord and the loader with 0 workers (default 7)",
    )
    p.add_argument(
        "--gpu-videos",
        type=int,
        default=40,
        help="videos of each workload the GPU rows decode and check (default 40; time scaled up)",
    )
    args = p.parse_args()
    data = ensure_data(args.data)
    repeat = 1 if args.quick else max(3, args.repeat)
    pair_repeat = 1 if args.quick else max(repeat, args.pair_repeat)
    seconds = 16 if args.quick else args.seconds
    copies = 2 if args.quick else 4
    gpu = gpu_available()
    if gpu:
        from create_bench.video.backends.nvdec import select_gpu_backend

        gpu_line = f"available ({select_gpu_backend(0)} NVDEC): rows (e)"
    else:
        from create_bench.video.backends.nvdec import gpu_decode_status

        gpu_line = "not available, rows (e) skipped: " + "; ".join(
            f"{k}: {v}" for k, v in gpu_decode_status().items()
        )
    print(
        f"decoders: {backend_version('decord')}, {backend_version('pyav')}; cores {os.cpu_count()}; "
        f"GPU decode: {gpu_line}"
    )
    run_suite(
        "CREATE-sample test split",
        data,
        "test",
        (args.size, args.size),
        repeat,
        pair_repeat,
        gpu,
        args.gpu_videos,
    )
    with tempfile.TemporaryDirectory(prefix="decode-bench-") as tmpd:
        if args.no_clips:
            seconds = 0
        if seconds:
            print(f"\n== generating {seconds} s 720p clips (PyAV, libx264)")
        datasets = clip_dataset(Path(tmpd), seconds, copies) if seconds else {}
        for gop_s, ds in datasets.items():
            t = run_suite(
                f"{seconds} s 720p clips, keyframe every {gop_s} s",
                ds,
                "test",
                None,
                repeat,
                pair_repeat,
                gpu,
                args.gpu_videos,
            )
            keyframe_report(ds, t)
            speedup = t["every/decode"]
            if gop_s == 1:
                check(
                    f"8 frames >= 5x faster than every frame at 1 s keyframes ({speedup:.2f}x)", speedup >= 5
                )
            else:
                check(f"8 frames not slower than every frame at 8 s keyframes ({speedup:.2f}x)", speedup >= 1)
    failed = [n for n, ok in CHECKS if not ok]
    print(f"\n{len(CHECKS) - len(failed)}/{len(CHECKS)} checks passed")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()

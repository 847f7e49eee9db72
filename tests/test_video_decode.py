"""Decoding: decord and PyAV return the same frames (against an independent plain-PyAV reference),
edge cases (odd size, rotation, VFR, short, truncated, not a video, audio), the killable worker."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
from video_util import display, encode_video, pattern_frames, reference_frames

from create_bench.errors import BackendUnavailable, ConfigError, DecodeTimeout, VideoDecodeError
from create_bench.video import decode, sample_indices
from create_bench.video.decoding import (
    MAX_PARALLEL_READERS,
    OPEN_COST_FRAMES,
    PYAV_HSCALE_MEAN_TOLERANCE,
    PYAV_TOLERANCE,
    choose_strategy,
    decode_many,
    decode_with_timeout,
    gpu_available,
    parallel_budget,
    plan_parallel,
    plan_strategy,
    worker_pid,
)

EDGE_SPECS = {
    "plain": dict(n=24, w=64, h=48),
    "odd-size": dict(n=20, w=33, h=25, pix_fmt="yuv444p"),
    "rotate-90": dict(n=16, w=64, h=48, rotation=90),
    "rotate-180": dict(n=16, w=48, h=32, rotation=180),
    "rotate-270": dict(n=16, w=48, h=32, rotation=270),
    "vfr": dict(
        n=30,
        w=64,
        h=48,
        pts_ms=[0, 62, 128, 221, 335, 348, 373, 473, 480, 600] + [650 + 45 * i for i in range(20)],
    ),
    "audio": dict(n=25, w=64, h=48, audio=True),
    "short": dict(n=5, w=64, h=48),
    "bframes-gop": dict(n=60, w=64, h=48, gop=12, bframes=3),
    "narrow": dict(n=12, w=32, h=32),
}


def _make(spec: dict) -> bytes:
    spec = dict(spec)
    frames = pattern_frames(spec.pop("n"), spec.pop("w"), spec.pop("h"), seed=3)
    return encode_video(frames, **spec)


@pytest.fixture(scope="module")
def edge() -> dict[str, bytes]:
    return {name: _make(spec) for name, spec in EDGE_SPECS.items()}


def _within_tolerance(a: np.ndarray, b: np.ndarray, *, width_only_resize: bool = False) -> None:
    """The documented decord-vs-PyAV tolerance (module doc of create_bench.video.decoding)."""
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    if width_only_resize:
        assert diff.mean() <= PYAV_HSCALE_MEAN_TOLERANCE, f"mean diff {diff.mean()}"
    else:
        assert diff.max() <= PYAV_TOLERANCE, f"max diff {diff.max()}"


@pytest.mark.parametrize("name", list(EDGE_SPECS))
def test_every_frame_matches_plain_pyav_reference(edge, name):
    """All frames, native size: both backends equal plain PyAV frames turned upright, exactly."""
    ref, rots = reference_frames(edge[name])
    expected = display(ref, rots[0])
    n = len(ref)
    assert n == EDGE_SPECS[name]["n"]
    for backend in ("decord", "pyav"):
        got = decode(edge[name], list(range(n)), backend=backend, vid=name)
        assert got.shape == expected.shape, backend
        assert np.array_equal(got, expected), backend


@pytest.mark.parametrize("name", list(EDGE_SPECS))
@pytest.mark.parametrize("size", [(16, 16), (32, 48), (31, 17), (40, 224)])
def test_backends_agree_when_resizing(edge, name, size):
    n = EDGE_SPECS[name]["n"]
    idx = sample_indices(n, "uniform-center@8")
    a = decode(edge[name], idx, size=size)
    b = decode(edge[name], idx, size=size, backend="pyav")
    assert a.shape == (len(idx), *size, 3)
    shown_h, shown_w = decode(edge[name], [0]).shape[1:3]
    _within_tolerance(a, b, width_only_resize=size[0] == shown_h and size[1] != shown_w)


def test_rotation_gives_display_orientation(edge):
    a = decode(edge["rotate-90"], [0])
    assert a.shape == (1, 64, 48, 3)  # coded 64x48 landscape, shown portrait
    assert decode(edge["rotate-90"], [0], size=(20, 10)).shape == (1, 20, 10, 3)
    assert decode(edge["rotate-180"], [0]).shape == (1, 32, 48, 3)


def test_vfr_frames_are_numbered_in_presentation_order(edge):
    ref, _ = reference_frames(edge["vfr"])
    idx = [0, 4, 5, 9, 29]
    for backend in ("decord", "pyav"):
        for strategy in ("seek", "sequential", "parallel"):
            got = decode(edge["vfr"], idx, backend=backend, strategy=strategy)
            assert np.array_equal(got, ref[idx]), (backend, strategy)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_strategies_return_the_same_frames(edge, backend):
    data = edge["bframes-gop"]
    rng = np.random.default_rng(0)
    for _ in range(6):
        idx = sorted(set(rng.integers(0, 60, size=int(rng.integers(1, 12))).tolist()))
        a = decode(data, idx, backend=backend, strategy="seek")
        b = decode(data, idx, backend=backend, strategy="sequential")
        c = decode(data, idx, backend=backend, strategy="auto")
        d = decode(data, idx, backend=backend, strategy="parallel", num_threads=3)
        e = decode(data, idx, backend=backend, strategy="parallel", size=(24, 40))
        assert np.array_equal(a, b) and np.array_equal(a, c) and np.array_equal(a, d)
        assert np.array_equal(e, decode(data, idx, backend=backend, strategy="seek", size=(24, 40)))


def test_order_and_duplicates_are_kept(edge):
    ref, _ = reference_frames(edge["plain"])
    idx = [7, 0, 7, 3, 23]
    for backend in ("decord", "pyav"):
        assert np.array_equal(decode(edge["plain"], idx, backend=backend), ref[idx])


def test_fewer_frames_than_asked(edge):
    idx = sample_indices(5, "uniform-center@8")
    assert idx == [0, 1, 2, 3, 4]
    for backend in ("decord", "pyav"):
        assert decode(edge["short"], idx, backend=backend).shape == (5, 48, 64, 3)
        with pytest.raises(VideoDecodeError, match=r"out of range.*vid 'short-one'"):
            decode(edge["short"], [2, 5], backend=backend, vid="short-one")


@pytest.mark.parametrize("faststart", [False, True])
@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_truncated_file_raises_naming_the_vid(backend, faststart):
    data = encode_video(pattern_frames(40, 64, 48), gop=10, faststart=faststart)
    cut = data[: int(len(data) * 0.6)]
    with pytest.raises(VideoDecodeError, match="vid 'cut-1'"):
        decode(cut, list(range(40)), backend=backend, vid="cut-1")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_not_a_video(tmp_path, backend):
    text = tmp_path / "notes.mp4"
    text.write_text("这不是视频 " * 200, "utf-8")
    for source in (b"\x00\x01garbage" * 100, text, str(text)):
        with pytest.raises(VideoDecodeError, match="vid 'junk'"):
            decode(source, [0], backend=backend, vid="junk")
    with pytest.raises(VideoDecodeError, match="no such video file"):
        decode(tmp_path / "missing.mp4", [0], backend=backend, vid="gone")
    with pytest.raises(VideoDecodeError, match="empty"):
        decode(b"", [0], backend=backend, vid="empty")


def test_bad_arguments(edge):
    with pytest.raises(ConfigError, match="backend"):
        decode(edge["plain"], [0], backend="opencv")
    with pytest.raises(ConfigError, match="strategy"):
        decode(edge["plain"], [0], strategy="fast")
    with pytest.raises(ConfigError, match="size"):
        decode(edge["plain"], [0], size=(0, 10))
    with pytest.raises(VideoDecodeError, match="negative"):
        decode(edge["plain"], [-1], vid="x")
    with pytest.raises(VideoDecodeError, match="no frame indices"):
        decode(edge["plain"], [], vid="x")


def test_file_path_and_bytes_agree(edge, tmp_path):
    p = tmp_path / "v.mp4"
    p.write_bytes(edge["audio"])
    assert np.array_equal(decode(p, [0, 10, 24]), decode(edge["audio"], [0, 10, 24]))
    assert np.array_equal(decode(str(p), [3], backend="pyav"), decode(edge["audio"], [3]))


def test_gpu_context_fails_clearly_without_cuda(edge):
    if gpu_available():
        pytest.skip("this decord has CUDA: covered by test_gpu_frames_match_cpu")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        decode(edge["plain"], [0], ctx="gpu")
    with pytest.raises(BackendUnavailable, match="CUDA"):
        decode(edge["plain"], [0], ctx="cuda:0", timeout=30)
    with pytest.raises(BackendUnavailable):
        decode(edge["plain"], [0], ctx="gpu", backend="pyav")


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["bframes-gop", "rotate-90", "vfr", "audio"])
def test_gpu_frames_match_cpu(edge, name):
    from create_bench.video.backends.nvdec import GPU_TOLERANCE, gpu_decode_status, select_gpu_backend

    if not gpu_available():
        pytest.skip(f"no NVDEC backend here: {gpu_decode_status()}")
    idx = sample_indices(EDGE_SPECS[name]["n"], "uniform-center@8")
    for size in (None, (48, 64)):
        a = decode(edge[name], idx, ctx="gpu", size=size)
        b = decode(edge[name], idx, size=size)
        assert a.shape == b.shape
        diff = np.abs(a.astype(int) - b)
        assert diff.max() <= GPU_TOLERANCE and diff.mean() < 1.5, (name, size, diff.max(), diff.mean())
        if select_gpu_backend(0) == "pyav":  # bit-exact H.264 planes, the CPU backend's conversion
            gpu = decode(edge[name], idx, ctx="gpu", size=size, backend="pyav")
            assert np.array_equal(gpu, decode(edge[name], idx, size=size, backend="pyav"))
        # through the killable worker (a fresh interpreter once CUDA is used here), same frames
        assert np.array_equal(decode(edge[name], idx, ctx="gpu", size=size, timeout=120), a)


def test_nvdec_refusal_names_what_nvdec_cannot_decode(edge):
    from create_bench.video.backends.nvdec import nvdec_refusal

    assert nvdec_refusal(edge["plain"]) is None and nvdec_refusal(edge["rotate-90"]) is None
    assert nvdec_refusal(edge["odd-size"]) == "h264 yuv444p"  # 4:4:4: NVDEC's H.264 is 4:2:0 only
    assert nvdec_refusal(edge["narrow"]) == "h264 32x32 frames"  # under H.264's 48x16 minimum
    assert nvdec_refusal(b"junk" * 100) is None  # the decoder itself reports a broken file


@pytest.mark.gpu
def test_gpu_path_decodes_what_nvdec_cannot_on_the_cpu(edge):
    from create_bench.video.backends.nvdec import CPU_FALLBACKS

    if not gpu_available():
        pytest.skip("no GPU: no NVDEC backend here")
    before = CPU_FALLBACKS["h264 yuv444p"]
    idx = [0, 7, 19]
    assert np.array_equal(
        decode(edge["odd-size"], idx, ctx="gpu"), decode(edge["odd-size"], idx, backend="pyav")
    )
    assert CPU_FALLBACKS["h264 yuv444p"] == before + 1


def test_decord_bridge_is_never_set(edge):
    import decord

    decode(edge["plain"], [0, 1])
    assert getattr(decord.bridge._CURRENT_BRIDGE, "type", "native") == "native"


def test_worker_path_returns_the_same_frames(edge):
    a = decode_with_timeout(edge["rotate-90"], [1, 5, 1], timeout=60, size=(20, 30))
    assert np.array_equal(a, decode(edge["rotate-90"], [1, 5, 1], size=(20, 30)))
    with pytest.raises(VideoDecodeError, match="vid 'bad'"):
        decode(b"nope" * 300, [0], timeout=60, vid="bad")
    with pytest.raises(ConfigError):
        decode_with_timeout(edge["plain"], [0], timeout=0)


@pytest.fixture()
def fifo(tmp_path):
    """A named pipe nobody writes to: opening it blocks forever inside native code."""
    path = tmp_path / "hang.mp4"
    os.mkfifo(path)
    return path


def test_timeout_kills_a_hung_decoder(edge, fifo):
    decode_with_timeout(edge["plain"], [0], timeout=60)  # warm worker
    before = worker_pid()
    assert before is not None
    t0 = time.monotonic()
    with pytest.raises(DecodeTimeout, match=r"longer than 1 s.*vid 'stuck'"):
        decode_with_timeout(fifo, [0], timeout=1.0, vid="stuck")
    assert time.monotonic() - t0 < 20
    assert worker_pid() is None  # killed
    with pytest.raises(ProcessLookupError):
        os.kill(before, 0)
    # the next call gets a fresh worker and works
    assert decode_with_timeout(edge["plain"], [2], timeout=60).shape == (1, 48, 64, 3)
    assert worker_pid() not in (None, before)


def test_worker_crash_is_a_decode_error(edge, fifo):
    decode_with_timeout(edge["plain"], [0], timeout=60)
    pid = worker_pid()
    assert pid is not None
    timer = threading.Timer(0.5, os.kill, args=(pid, signal.SIGKILL))
    timer.start()
    try:
        with pytest.raises(VideoDecodeError, match=r"died.*vid 'boom'"):
            decode_with_timeout(fifo, [0], timeout=60, vid="boom")
    finally:
        timer.cancel()
    assert decode_with_timeout(edge["plain"], [1], timeout=60).shape == (1, 48, 64, 3)


@pytest.mark.parametrize("window", [1, 2, 16])
def test_decode_many_pipelines_and_survives_a_hang(edge, fifo, window):
    reqs = [
        (edge["plain"], [0, 3], {"vid": "a"}),
        (fifo, [0], {"vid": "stuck"}),
        (b"junk" * 100, [0], {"vid": "junk"}),
        (edge["audio"], [1], {"vid": "b", "size": 16}),
        (edge["short"], [9], {"vid": "c"}),
        (edge["odd-size"], [2], {"vid": "d"}),
    ]
    out = list(decode_many(iter(reqs), timeout=2.0, window=window))
    assert np.array_equal(out[0], decode(edge["plain"], [0, 3]))
    assert isinstance(out[1], DecodeTimeout) and "stuck" in str(out[1])
    assert isinstance(out[2], VideoDecodeError) and "junk" in str(out[2])
    assert out[3].shape == (1, 16, 16, 3)
    assert isinstance(out[4], VideoDecodeError) and "out of range" in str(out[4])
    assert np.array_equal(out[5], decode(edge["odd-size"], [2]))
    # an abandoned call leaves results in the pipe; the next call must not take them for its own
    gen = decode_many([(edge["plain"], [i], {}) for i in range(6)], timeout=30)
    next(gen)
    gen.close()
    again = list(decode_many([(edge["bframes-gop"], [7], {}), (edge["plain"], [5], {})], timeout=30))
    assert np.array_equal(again[0], decode(edge["bframes-gop"], [7]))
    assert np.array_equal(again[1], decode(edge["plain"], [5]))
    # in-process mode yields the same, errors included
    inproc = list(decode_many([reqs[0], reqs[2]], timeout=None))
    assert np.array_equal(inproc[0], out[0]) and isinstance(inproc[1], VideoDecodeError)


def test_threads_get_their_own_worker(edge):
    from concurrent.futures import ThreadPoolExecutor

    names = ["plain", "audio", "bframes-gop", "rotate-90"] * 3
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda n: decode_with_timeout(edge[n], [1, 4], timeout=60), names))
    for name, frames in zip(names, got):
        assert np.array_equal(frames, decode(edge[name], [1, 4])), name


def test_plan_parallel_splits_targets_into_balanced_contiguous_runs():
    rng = np.random.default_rng(2)
    for _ in range(60):
        keys = sorted({0, *rng.integers(0, 900, int(rng.integers(1, 40))).tolist()})
        t = sorted(set(rng.integers(0, 900, int(rng.integers(1, 30))).tolist()))
        readers = int(rng.integers(1, 5))
        par = plan_parallel(t, keys, readers)
        if par is None:
            continue
        runs, wall = par
        assert 2 <= len(runs) <= readers and all(runs)
        assert [x for r in runs for x in r] == t  # contiguous, in order, every target once
        # the wall estimate is the costliest run (later runs pay for opening their reader)
        costs = [
            plan_strategy(r, keys).seek_cost + (OPEN_COST_FRAMES if i else 0) for i, r in enumerate(runs)
        ]
        assert wall == pytest.approx(max(costs))
        assert wall <= plan_strategy(t, keys).seek_cost + 1e-9  # never worse than one reader
    # many targets (fps@ policies): the cost-share split keeps the same guarantees
    for seed in range(5):
        r = np.random.default_rng(seed)
        keys = sorted({0, *r.integers(0, 20000, 300).tolist()})
        t = sorted(set(r.integers(0, 20000, 200).tolist()))
        par = plan_parallel(t, keys, 4)
        assert par is not None
        runs, wall = par
        assert 2 <= len(runs) <= 4 and [x for run in runs for x in run] == t
        costs = [
            plan_strategy(r, keys).seek_cost + (OPEN_COST_FRAMES if i else 0) for i, r in enumerate(runs)
        ]
        assert wall == pytest.approx(max(costs)) and wall < plan_strategy(t, keys).seek_cost
    assert plan_parallel([5, 500], [0, 100, 400], readers=1) is None
    assert plan_parallel([5], [0], readers=4) is None


def test_auto_goes_parallel_only_where_it_pays():
    keys = list(range(0, 900, 30))  # 720p-like: a keyframe every 30 frames, 8 targets spread out
    t = sample_indices(900, "uniform-center@8")
    assert choose_strategy(t, keys, num_threads=0 if parallel_budget(0) > 1 else 2)[0] == "parallel"
    assert choose_strategy(t, keys, num_threads=1) == (plan_strategy(t, keys).strategy, None)
    # targets all inside the first GOP: one reader decodes straight through
    assert choose_strategy([1, 3, 5, 7], [0, 100], num_threads=4) == ("seek", None)
    assert 1 <= parallel_budget(0) <= MAX_PARALLEL_READERS and parallel_budget(3) == 3


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_parallel_strategy_reports_bad_input_like_the_others(edge, backend):
    idx = sample_indices(60, "uniform-center@8")
    with pytest.raises(VideoDecodeError, match=r"out of range.*vid 'p'"):
        decode(edge["bframes-gop"], [*idx, 600], backend=backend, strategy="parallel", vid="p")
    cut = edge["bframes-gop"][: len(edge["bframes-gop"]) * 2 // 3]
    with pytest.raises(VideoDecodeError, match="vid 'cut'"):
        decode(cut, idx, backend=backend, strategy="parallel", vid="cut", num_threads=2)
    with pytest.raises(ConfigError, match="CPU only"):
        decode(edge["plain"], [0], backend=backend, strategy="parallel", ctx="gpu")


def test_parallel_decode_leaves_no_reader_for_the_gc(edge, monkeypatch):
    """Readers of the parallel path are freed at once, also when decord raises in a reader thread:
    one left to a later GC pass (in a reference cycle through the error's traceback) could be
    collected in a forked child (a DataLoader worker), where decord's destructor segfaults joining
    a thread that does not exist there."""
    import gc

    import decord

    real = decord.VideoReader.get_batch

    def flaky(self, indices):  # decord failing mid-video in the reader threads only
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("boom in a reader thread")
        return real(self, indices)

    gc.collect()
    gc.disable()
    try:
        decode(edge["bframes-gop"], [3, 20, 40, 59], strategy="parallel", num_threads=2)
        monkeypatch.setattr(decord.VideoReader, "get_batch", flaky)
        for _ in range(3):
            with pytest.raises(VideoDecodeError, match="boom"):
                decode(edge["bframes-gop"], [3, 20, 40, 59], strategy="parallel", num_threads=3, vid="v")
        alive = [o for o in gc.get_objects() if isinstance(o, decord.VideoReader)]
    finally:
        gc.enable()
    assert not alive


def test_plan_strategy_model():
    # every frame a keyframe: each target costs one frame
    p = plan_strategy([3, 50, 99], range(100))
    assert (p.seek_frames, p.limit_frames, p.sequential_frames) == (3, 3, 100)
    assert p.strategy == "seek"
    # all targets inside the first GOP: no seek, decoded straight through
    p = plan_strategy([1, 5, 9], [0, 100])
    assert (p.seeks, p.seek_frames) == (0, 10)
    # dense targets just past each keyframe boundary: sequential is cheaper than re-seeking
    p = plan_strategy(list(range(0, 100, 3)), range(0, 100, 4))
    assert p.strategy == "sequential"
    # the limit never undercounts what seeking decodes
    rng = np.random.default_rng(1)
    for _ in range(50):
        keys = sorted({0, *rng.integers(0, 500, 8).tolist()})
        t = sorted(set(rng.integers(0, 500, 8).tolist()))
        p = plan_strategy(t, keys)
        assert p.seek_frames <= p.limit_frames
        assert p.sequential_frames == t[-1] + 1


@pytest.mark.slow
def test_create_sample_backends_agree(tiny_dataset):
    """decord vs PyAV on the CREATE-sample test split, native size and resized, two policies."""
    from create_bench.data.shards import iter_rows, video_source

    rows = list(iter_rows(tiny_dataset, "test", ["vid", "num_frames", "fps", "video"]))
    assert rows
    for row in rows:
        src = video_source(row, tiny_dataset)
        for policy in ("uniform-center@8", "fps@2"):
            idx = sample_indices(row["num_frames"], policy, fps=row["fps"])
            native = decode(src, idx, vid=row["vid"])
            _within_tolerance(native, decode(src, idx, backend="pyav", vid=row["vid"]))
            h, w = native.shape[1:3]
            for size in ((32, 48), (h, w + 6), (h + 6, w)):
                a = decode(src, idx, size=size, vid=row["vid"])
                b = decode(src, idx, size=size, backend="pyav", vid=row["vid"])
                _within_tolerance(a, b, width_only_resize=size[0] == h and size[1] != w)


def test_public_decode_is_the_function_of_the_decoding_module(mp4_factory):
    """`create_bench.video.decode` is the function (no module shadows it: the API lives in
    `create_bench.video.decoding`), before and after every video submodule is imported."""
    import importlib

    import create_bench.video

    for name in ("decoding", "worker", "plan", "checks", "frames", "backends.decord", "backends.pyav"):
        importlib.import_module(f"create_bench.video.{name}")
    from create_bench.video.decoding import decode as api_decode

    assert create_bench.video.decode is api_decode and callable(create_bench.video.decode)
    data = mp4_factory(6)
    assert create_bench.video.decode(data, [0, 5]).shape == (2, 48, 64, 3)


@pytest.mark.parametrize("backend", ["decord", "pyav"])
@pytest.mark.parametrize("strategy", ["seek", "sequential", "parallel"])
def test_decode_into_a_given_array(edge, backend, strategy):
    kw = dict(size=(20, 30), backend=backend, strategy=strategy)
    for idx in ([1, 4, 9], [9, 1, 9]):  # sorted, and reordered with a duplicate
        want = decode(edge["plain"], idx, **kw)
        out = np.zeros((3, 20, 30, 3), np.uint8)
        got = decode(edge["plain"], idx, out=out, **kw)
        assert got is out and np.array_equal(out, want)
    # an array of another shape is not used (and not touched): a new one comes back
    wrong = np.zeros((2, 20, 30, 3), np.uint8)
    got = decode(edge["plain"], [1, 4, 9], out=wrong, **kw)
    assert got is not wrong and not wrong.any()
    assert np.array_equal(got, decode(edge["plain"], [1, 4, 9], **kw))
    # a callable is asked once the shape is known
    asked, mem = [], np.zeros((3, 48, 64, 3), np.uint8)

    def sink(shape):
        asked.append(shape)
        return mem

    got = decode(edge["plain"], [0, 5, 7], backend=backend, strategy=strategy, out=sink)
    assert got is mem and asked == [(3, 48, 64, 3)]
    assert np.array_equal(mem, decode(edge["plain"], [0, 5, 7], backend=backend))


def test_decode_into_narrow_frames_and_through_the_worker(edge):
    want = decode(edge["narrow"], [0, 6, 11])
    out = np.empty_like(want)
    assert decode(edge["narrow"], [0, 6, 11], out=out) is out and np.array_equal(out, want)
    out = np.zeros((2, 20, 30, 3), np.uint8)
    got = decode(edge["rotate-90"], [5, 1], size=(20, 30), timeout=60, out=out)
    assert got is out and np.array_equal(out, decode(edge["rotate-90"], [5, 1], size=(20, 30)))


@pytest.mark.parametrize("arena", [512, 8000, None])
def test_worker_frames_through_the_shared_ring_or_the_pipe(edge, monkeypatch, arena):
    """Frames come back through the shared ring when a region is free and through the pipe
    otherwise (too large for the ring, ring full); the results are the same either way."""

    from create_bench.video import worker as mod

    if arena is not None:
        monkeypatch.setattr(mod, "_ARENA_BYTES", arena)
    ways: list[bool] = []
    take = mod._DecodeWorker._take_frames

    def spy(self, shape, dtype, at, out):
        ways.append(at is not None)
        return take(self, shape, dtype, at, out)

    monkeypatch.setattr(mod._DecodeWorker, "_take_frames", spy)
    names = ["plain", "audio", "bframes-gop", "odd-size"] * 4
    # (20, 30) x 2 frames = 3600 bytes fits the 8000-byte ring (twice at most); 8 frames never do
    reqs = [(edge[n], [1, 4] if i % 5 else list(range(8)), {"size": (20, 30)}) for i, n in enumerate(names)]
    got: list = []
    # A fresh thread gets a fresh worker, started with the patched ring size.
    t = threading.Thread(target=lambda: got.extend(decode_many(reqs, timeout=60, window=16)))
    t.start()
    t.join(120)
    assert len(got) == len(reqs)
    for (src, idx, kw), frames in zip(reqs, got):
        assert np.array_equal(frames, decode(src, idx, **kw))
    if arena == 512:
        assert not any(ways)
    elif arena == 8000:
        assert any(ways) and not all(ways)
    else:
        assert all(ways)

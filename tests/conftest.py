"""Shared fixtures: tiny real H.264 videos, a tiny CREATE-sample, a mini official release."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest


def make_mp4(
    n_frames: int = 20,
    width: int = 64,
    height: int = 48,
    fps: int = 15,
    *,
    seed: int = 0,
    gop: int | None = None,
    codec: str = "libx264",
) -> bytes:
    """A real H.264 MP4 (moving bar over noise) encoded in memory with PyAV."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {"threads": "1", **({"g": str(gop)} if gop else {})}
        for i in range(n_frames):
            a = base.copy()
            x = (i * 3) % max(1, width - 6)
            a[:, x : x + 6] = 255
            for p in s.encode(__import__("av").VideoFrame.from_ndarray(a, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


@pytest.fixture(scope="session")
def mp4_factory():
    return make_mp4


#: Sizes of the tiny sample used across tests (train, validation, test, pretrain).
TINY_SIZES = {"train": 24, "validation": 8, "test": 12, "pretrain": 8}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CREATE-sample (real videos, real shards), generated once per test session."""
    from create_bench.synthetic.sample import generate_sample

    out = tmp_path_factory.mktemp("tiny") / "create-sample-tiny"
    generate_sample(out, sizes=TINY_SIZES, seed=0, workers=1)
    return out


@pytest.fixture()
def mini_release(tmp_path: Path) -> dict[str, Path]:
    """A mini release in CREATE's official format: JSON annotations + videos named by vid + features."""
    videos = tmp_path / "videos"
    feats = tmp_path / "features"
    videos.mkdir()
    feats.mkdir()
    rng = np.random.default_rng(0)

    def item(vid: str, n_refs: int, cat: int) -> dict:
        t = [f"视频{vid}的标题{k}" for k in range(n_refs)]
        c = [f"一个人在视频{vid}里做事情{k}" for k in range(n_refs)]
        return {
            "vid": vid,
            "ann_title": t[0] if n_refs == 1 else t,
            "ann_caption": c[0] if n_refs == 1 else c,
            "raw_title": f"原标题{vid} #热门",
            "tag": ["生活", "日常"],
            "category": cat,
        }

    files = {}
    spec = {"train": 6, "val": 3, "test": 4}
    for split, n in spec.items():
        items = [item(f"{split}{i:03d}", 1 if split == "train" else 10, i % 3) for i in range(n)]
        for it in items:
            (videos / f"{it['vid']}.mp4").write_bytes(make_mp4(12 + len(it["vid"]) % 5, seed=len(it["vid"])))
            np.save(feats / f"{it['vid']}.npy", rng.standard_normal((4, 8)).astype(np.float32))
        p = tmp_path / f"create_210k_{split}.json"
        p.write_text(json.dumps(items, ensure_ascii=False), "utf-8")
        files[split] = p
    pre = [{"vid": f"pre{i:03d}", "raw_title": f"预训练标题{i}", "tag": ["标签"]} for i in range(3)]
    for it in pre:
        (videos / f"{it['vid']}.mp4").write_bytes(make_mp4(10, seed=7))
        np.save(feats / f"{it['vid']}.npy", rng.standard_normal((4, 8)).astype(np.float32))
    p = tmp_path / "create_3m_pretrain.json"
    p.write_text(json.dumps(pre, ensure_ascii=False), "utf-8")
    files["pretrain"] = p
    return {"root": tmp_path, "videos": videos, "features": feats, **files}


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Scoring caches reference tokens under $CREATE_BENCH_CACHE: keep the tests' out of ~/.cache."""
    import os

    old = os.environ.get("CREATE_BENCH_CACHE")
    os.environ["CREATE_BENCH_CACHE"] = str(tmp_path_factory.mktemp("create-bench-cache"))
    yield
    if old is None:
        os.environ.pop("CREATE_BENCH_CACHE", None)
    else:
        os.environ["CREATE_BENCH_CACHE"] = old


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op torch thread for a whole module of tiny models (more only adds synchronisation,
    badly so on a busy machine; float sums depend on the count, so module-scoped reference runs
    see the same one). Modules take it with ``pytestmark = pytest.mark.usefixtures(...)``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

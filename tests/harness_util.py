"""Small synthetic datasets for the harness and baseline tests (written with the real DatasetWriter).

- :func:`text_dataset`: many videos whose bytes are a placeholder (for models with ``inputs="none"``,
  which never decode), random Chinese texts; big enough for chance-level statistics.
- :func:`colour_dataset`: real H.264 clips of solid colours whose captions name the colour, so a
  model that looks at frames can be checked against a known answer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.data.build import write_rows

CATEGORIES = ["生活", "美食", "宠物", "体育"]
WORDS = list("猫狗鱼鸟车船山水花树球书灯门桌椅杯碗刀伞钟鞋帽包") + [
    "红色",
    "蓝色",
    "绿色",
    "厨房",
    "公园",
    "街道",
]


def _sentence(rng: np.random.Generator, n: int = 5) -> str:
    return "".join(rng.choice(WORDS, size=n))


def text_dataset(path: Path, *, n_train: int = 20, n_val: int = 4, n_test: int = 300, seed: int = 0) -> Path:
    """Rows with placeholder video bytes and random texts (10 titles + 10 captions for val/test)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for split, n in (("train", n_train), ("validation", n_val), ("test", n_test)):
        refs = 1 if split == "train" else 10
        for i in range(n):
            cat = int(rng.integers(len(CATEGORIES)))
            rows.append(
                {
                    "vid": f"{split[:2]}{i:05d}",
                    "split": split,
                    "category": cat,
                    "tags": [str(w) for w in rng.choice(WORDS, size=3, replace=False)],
                    "raw_title": _sentence(rng, 4) + " #热门",
                    "titles": [_sentence(rng) for _ in range(refs)],
                    "captions": [_sentence(rng, 7) for _ in range(refs)],
                    "video": {"bytes": b"not-decoded", "path": None},
                    "num_frames": 10,
                    "fps": 10.0,
                    "duration": 1.0,
                    "width": 32,
                    "height": 32,
                }
            )
    return write_rows(path, rows, name="synthetic-text", categories=CATEGORIES)


COLOURS = {"红色": (220, 30, 30), "绿色": (30, 200, 40), "蓝色": (30, 40, 220)}


def solid_mp4(
    rgb: tuple[int, int, int], *, n_frames: int = 8, size: int = 32, fps: int = 8, noise: int = 0
) -> bytes:
    import av

    rng = np.random.default_rng(sum(rgb) + noise)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width = s.height = size
        s.pix_fmt = "yuv420p"
        s.options = {"threads": "1"}
        for _ in range(n_frames):
            a = np.clip(np.array(rgb)[None, None] + rng.integers(-noise, noise + 1, (size, size, 3)), 0, 255)
            for p in s.encode(av.VideoFrame.from_ndarray(a.astype(np.uint8), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return buf.getvalue()


def colour_dataset(path: Path, *, per_colour_train: int = 3, per_colour_test: int = 2) -> Path:
    """Solid-colour clips; each caption/title names the clip's colour (train 1+1, test 3+3 texts)."""
    rows: list[dict[str, Any]] = []
    for c_i, (name, rgb) in enumerate(COLOURS.items()):
        for split, n in (("train", per_colour_train), ("validation", 1), ("test", per_colour_test)):
            refs = 1 if split == "train" else 3
            for i in range(n):
                rows.append(
                    {
                        "vid": f"{split[:2]}-{c_i}-{i}",
                        "split": split,
                        "category": c_i,
                        "tags": [name],
                        "raw_title": f"{name}的视频{i}",
                        "titles": [f"{name}的画面{split}{i}号{k}" for k in range(refs)],
                        "captions": [f"一个{name}的画面在屏幕上{k}" for k in range(refs)],
                        "video": {"bytes": solid_mp4(rgb, noise=i), "path": None},
                        "num_frames": 8,
                        "fps": 8.0,
                        "duration": 1.0,
                        "width": 32,
                        "height": 32,
                    }
                )
    return write_rows(path, rows, name="synthetic-colour", categories=CATEGORIES)

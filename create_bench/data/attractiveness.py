"""Per-character attractiveness of titles (layer 2): the ``title_omega`` column, its file format,
and the simulated annotators that give CREATE-sample its values.

omega: for every reference title of a video, one value per character of the *normalised* title
(:func:`create_bench.text.normalize.normalize`), the share of annotators who marked the character
attractive, in [0, 1] (CREATE: K = 10 annotators, so steps of 0.1). ACTEr-r weights reference
characters by it (:mod:`create_bench.metrics.bertscore`). The released CREATE JSON has no omega;
it comes from a separate annotation file given to ``create-bench build --attractiveness FILE``:

JSON Lines, one object per annotated title::

    {"vid": "v_0001", "title_index": 0, "omega": [0.0, 0.1, 0.7, ...]}

``title_index`` indexes the video's ``titles`` list; ``omega`` has exactly as many values as the
normalised title has characters. A video with any annotated title must have all its titles
annotated; videos with none have no omega (null). Every problem (bad JSON, unknown vid, an index
out of range, a length that does not match the title, a value outside [0, 1], a duplicate) raises
:class:`~create_bench.errors.DataError` naming the file, the line and the vid.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from create_bench.errors import DataError
from create_bench.text.normalize import normalize

#: Simulated annotators (CREATE used K = 10).
K_ANNOTATORS = 10
#: Version of the simulation (part of CREATE-sample's definition: bump SAMPLE_VERSION with it).
SIMULATION_VERSION = "hook-annotators.v1"
#: Hook cues the simulated annotators mark: generic clickbait devices of Chinese short-video titles
#: (questions, surprise, "watch to the end", superlatives), plus ?/! which close hook clauses.
HOOK_CUES = (
    "为什么", "竟然", "居然", "原来", "没想到", "绝了", "太神奇", "神奇", "看完", "看到最后", "一定要",
    "99%", "你见过", "谁懂", "惊呆", "出乎意料", "天花板", "建议收藏", "上头", "解压", "治愈", "冷知识",
    "挑战", "结果", "什么操作", "家人们", "第一次", "笑不停", "长见识", "涨知识", "成精", "震惊", "吗",
    "?", "!", "……",
)  # fmt: skip
#: Marking probabilities: a character inside a hook span, and any other character.
P_HOOK, P_OTHER = 0.68, 0.15


def omega_length(title: str) -> int:
    """How many omega values a title has: the characters of its normalised form."""
    return len(normalize(title))


def check_omega(
    omega: Any, titles: Sequence[str], *, where: Mapping[str, Any] | None = None
) -> list[list[float]]:
    """``omega`` checked against ``titles`` (one list per title, one value in [0, 1] per character of
    the normalised title); returns it as lists of floats. Raises DataError with ``where``."""
    loc = dict(where or {})
    if not isinstance(omega, list) or len(omega) != len(titles):
        n = len(omega) if isinstance(omega, list) else type(omega).__name__
        raise DataError(f"title_omega must be a list of {len(titles)} lists (one per title), got {n}", **loc)
    return [check_title_omega(o, t, k, where=loc) for k, (o, t) in enumerate(zip(omega, titles))]


def check_title_omega(
    values: Any, title: str, index: int, *, where: Mapping[str, Any] | None = None
) -> list[float]:
    loc = dict(where or {})
    want = omega_length(title)
    if not isinstance(values, list) or len(values) != want:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise DataError(
            f"omega of title {index} has {got} values; the normalised title {normalize(title)!r} has {want} characters",
            **loc,
        )
    out = []
    for j, x in enumerate(values):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not 0 <= x <= 1:
            raise DataError(f"omega of title {index}, character {j}: {x!r} is not a number in [0, 1]", **loc)
        out.append(float(x))
    return out


def read_attractiveness(
    path: str | os.PathLike[str], titles: Mapping[str, Sequence[str]]
) -> dict[str, list[list[float]]]:
    """vid -> omega of all its titles, from a JSON Lines file (see the module doc).

    Args:
        path: the file.
        titles: vid -> the video's titles (the dataset being built).
    """
    src = os.fspath(path)
    got: dict[str, dict[int, list[float]]] = {}
    first_line: dict[str, int] = {}
    try:
        lines = open(src, encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the attractiveness file: {exc}", path=src) from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not JSON: {exc.msg}", path=src, row=n) from exc
        vid = item.get("vid") if isinstance(item, dict) else None
        where: dict[str, Any] = {"path": src, "row": n, "vid": vid if isinstance(vid, str) else None}
        if (
            not isinstance(item, dict)
            or set(item) - {"vid", "title_index", "omega"}
            or not isinstance(vid, str)
        ):
            raise DataError('each line must be {"vid": str, "title_index": int, "omega": [...]}', **where)
        if vid not in titles:
            raise DataError("unknown vid (not in the annotations being built)", **where)
        k = item.get("title_index")
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(titles[vid]):
            raise DataError(f"title_index must be in 0..{len(titles[vid]) - 1}, got {k!r}", **where)
        if k in got.get(vid, {}):
            raise DataError(
                f"duplicate omega for title {k} (first on line {first_line[f'{vid}:{k}']})", **where
            )
        got.setdefault(vid, {})[k] = check_title_omega(item.get("omega"), titles[vid][k], k, where=where)
        first_line[f"{vid}:{k}"] = n
    out = {}
    for vid, per in got.items():
        missing = [k for k in range(len(titles[vid])) if k not in per]
        if missing:
            raise DataError(
                f"omega given for some titles of this video but not for titles {missing}", path=src, vid=vid
            )
        out[vid] = [per[k] for k in range(len(titles[vid]))]
    return out


# ------------------------------------------------------------------------------------------------
# simulated annotators (CREATE-sample)


def hook_mask(text: str) -> np.ndarray:
    """Characters of the normalised ``text`` inside a hook cue (bool per character)."""
    mask = np.zeros(len(text), dtype=bool)
    for cue in HOOK_CUES:
        start = text.find(cue)
        while start >= 0:
            mask[start : start + len(cue)] = True
            start = text.find(cue, start + 1)
    return mask


def title_seed(vid: str, title_index: int, seed: int = 0) -> int:
    """The simulation seed of one title: a hash of (seed, vid, title index), so it depends on nothing else."""
    h = hashlib.sha256(f"{SIMULATION_VERSION}|{seed}|{vid}|{title_index}".encode()).digest()
    return int.from_bytes(h[:8], "little")


def simulate_omega(title: str, seed: int, k: int = K_ANNOTATORS) -> list[float]:
    """omega of one title from ``k`` simulated annotators: a pure function of (title, seed).

    Each annotator has a propensity in [0.8, 1.2] and may stretch every hook span by one character on
    either side (probability 0.3); it marks a hook character with probability ``P_HOOK`` x propensity
    and any other character with ``P_OTHER`` x propensity. omega is the share of marks, in steps of 1/k.

    >>> om = simulate_omega("番茄为什么会往左跑？", seed=1)
    >>> len(om), all(0 <= x <= 1 for x in om)
    (10, True)
    >>> om == simulate_omega("番茄为什么会往左跑？", seed=1)
    True
    """
    text = normalize(title)
    n = len(text)
    rng = np.random.default_rng(seed)
    base = hook_mask(text)
    marks = np.zeros(n, dtype=np.int64)
    for _ in range(k):
        scale = rng.uniform(0.8, 1.2)
        span = base.copy()
        if n and rng.random() < 0.3:
            span[1:] |= base[:-1]
            span[:-1] |= base[1:]
        p = np.where(span, P_HOOK, P_OTHER) * scale
        marks += rng.random(n) < np.minimum(p, 1.0)
    return [round(float(m) / k, 6) for m in marks]


def simulate_video_omega(vid: str, titles: Sequence[str], seed: int = 0) -> list[list[float]]:
    """omega of every title of a video (CREATE-sample)."""
    return [simulate_omega(t, title_seed(vid, i, seed)) for i, t in enumerate(titles)]

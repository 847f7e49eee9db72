"""Simulated attractiveness annotators (layer 2): CREATE-sample's per-character title omega.

CREATE had K = 10 people mark the attractive characters of each title; omega is the share who
marked a character (:mod:`create_bench.data.attractiveness` defines the column and the file format
of real annotations). The sample has no people, so 10 simulated annotators mark the title's hook
spans (generic clickbait devices of Chinese short-video titles) with noise. This is generator code:
it decides what the sample's ``title_omega`` holds, so changing it changes the sample (bump
:data:`SIMULATION_VERSION` and ``SAMPLE_VERSION`` together).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

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

"""The seek planner (layer 2): which decode strategy reaches a video's target frames cheapest.

Decoding frame ``t`` means decoding from the keyframe before ``t``. ``"seek"`` jumps to each
target's keyframe when it lies past the current position (decord's ``get_batch`` does this, and
does not re-seek inside a GOP); ``"sequential"`` decodes every frame from the start up to the last
target; ``"parallel"`` splits the sorted targets into contiguous runs (GOP-aligned, balanced by
estimated cost: :func:`plan_parallel`), one single-threaded reader each. ``"auto"`` estimates the
costs in frames from the keyframe index (:func:`plan_strategy`, :func:`plan_parallel`) and picks
the cheapest (:func:`resolve_strategy`). Pure functions of the indices: no decoder is touched here.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Sequence
from dataclasses import dataclass

from create_bench.errors import ConfigError

#: Estimated cost of one seek (decoder flush and restart, demuxer reposition), in decoded frames.
SEEK_COST_FRAMES = 6.0
#: Relative cost of a frame the sequential path decodes on the way to a target. Both backends
#: decode such frames without converting them (decord's ``skip_frames``; PyAV converts targets
#: only), the same work as decoding forward from a keyframe after a seek.
SEQUENTIAL_FRAME_COST = 1.0
#: Estimated cost of opening one more reader for the parallel strategy (container parse, index,
#: decoder set-up), in decoded frames: about 30 ms for a 720p H.264 clip here, 8-10 frames.
OPEN_COST_FRAMES = 10.0
#: ``"auto"`` picks ``"parallel"`` only when its estimated wall cost is below this share of the
#: best single-reader plan (threads share memory bandwidth and the machine may be busy).
PARALLEL_GAIN = 0.75
#: Up to this many targets :func:`plan_parallel` finds the best split exactly (O(readers x n^2)).
PARALLEL_DP_TARGETS = 48
#: Most readers the parallel strategy uses (``num_threads=0``: the cores this process may use, up
#: to this many).
MAX_PARALLEL_READERS = 4


@dataclass(frozen=True)
class DecodePlan:
    """Cost estimate (in decoded frames) of both strategies for one video and set of targets."""

    strategy: str
    seek_frames: int
    seeks: int
    sequential_frames: int
    #: Frames decoded if every target were decoded from its own preceding keyframe (the
    #: "decode limit" of the benchmark: no sharing between targets).
    limit_frames: int

    @property
    def seek_cost(self) -> float:
        return self.seek_frames + SEEK_COST_FRAMES * self.seeks

    @property
    def sequential_cost(self) -> float:
        return self.sequential_frames * SEQUENTIAL_FRAME_COST


def plan_strategy(targets: Sequence[int], key_indices: Sequence[int]) -> DecodePlan:
    """Estimate the decode cost of seeking vs decoding sequentially, and pick the cheaper.

    ``targets`` are frame indices (any order); ``key_indices`` the sorted keyframe indices.
    The seek model follows decord's ``get_batch``: a target in the GOP of the current position
    (and not behind it) is reached by decoding forward; any other target costs a seek to its
    keyframe and decoding from there.

    >>> p = plan_strategy([10, 20, 290], key_indices=[0, 100, 200])
    >>> (p.seek_frames, p.seeks, p.sequential_frames, p.limit_frames)
    (112, 1, 291, 123)
    >>> p.strategy
    'seek'
    """
    uniq = sorted(set(int(t) for t in targets))
    keys = sorted(set(int(k) for k in key_indices)) or [0]
    if keys[0] != 0:
        keys = [0] + keys
    pos = 0  # next frame the decoder would produce
    seek_frames = seeks = limit = 0
    for t in uniq:
        key = keys[bisect.bisect_right(keys, t) - 1]
        limit += t - key + 1
        cur_key = keys[bisect.bisect_right(keys, pos) - 1] if pos > 0 else 0
        if pos <= t and (key == cur_key or key <= pos):
            seek_frames += t - pos + 1
        else:
            seeks += 1
            seek_frames += t - key + 1
        pos = t + 1
    sequential = uniq[-1] + 1 if uniq else 0
    plan = DecodePlan("seek", seek_frames, seeks, sequential, limit)
    if plan.sequential_cost < plan.seek_cost:
        plan = DecodePlan("sequential", seek_frames, seeks, sequential, limit)
    return plan


def _target_costs(uniq: list[int], keys: list[int]) -> tuple[list[float], list[float]]:
    """Per sorted target ``t_i``: the cost of a reader starting at it (``start``: a seek to its
    keyframe, unless that is frame 0, and decoding from there) and the marginal cost of reaching it
    from ``t_{i-1}`` in the same reader (``step``: decoding forward inside a GOP, else a seek), in
    decoded frames, following :func:`plan_strategy`'s seek model."""
    start, step = [], []
    for i, t in enumerate(uniq):
        key = keys[bisect.bisect_right(keys, t) - 1]
        start.append(t - key + 1 + (SEEK_COST_FRAMES if key > 0 else 0.0))
        if i == 0:
            step.append(start[-1])
            continue
        pos = uniq[i - 1] + 1
        cur_key = keys[bisect.bisect_right(keys, pos) - 1]
        if key == cur_key or key <= pos:
            step.append(float(t - pos + 1))
        else:
            step.append(t - key + 1 + SEEK_COST_FRAMES)
    return start, step


def plan_parallel(
    targets: Sequence[int], key_indices: Sequence[int], readers: int
) -> tuple[list[list[int]], float] | None:
    """Split sorted unique targets into at most ``readers`` contiguous runs, one reader each.

    Minimises the estimated wall cost (the costliest run; every run after the first also pays
    :data:`OPEN_COST_FRAMES` for its reader) by dynamic programming over the split points (over
    :data:`PARALLEL_DP_TARGETS` targets, quadratic time would show: the runs are cut where the
    running cost crosses equal shares of the total instead). Returns
    ``(runs, wall_cost)``, or None when one run is best (or ``readers < 2``).

    >>> runs, cost = plan_parallel([50, 150, 250, 350], key_indices=[0, 100, 200, 300], readers=2)
    >>> runs, cost
    ([[50, 150], [250, 350]], 124.0)
    """
    uniq = sorted(set(int(t) for t in targets))
    n, k = len(uniq), min(int(readers), len(uniq))
    if k < 2:
        return None
    keys = sorted(set(int(x) for x in key_indices)) or [0]
    if keys[0] != 0:
        keys = [0] + keys
    start, step = _target_costs(uniq, keys)
    pre = [0.0]
    for c in step:
        pre.append(pre[-1] + c)

    def run_cost(i: int, j: int) -> float:  # targets i..j-1 in one fresh reader
        return start[i] + pre[j] - pre[i + 1] + (OPEN_COST_FRAMES if i > 0 else 0.0)

    if n > PARALLEL_DP_TARGETS:  # many targets: cut where the running cost crosses m/k of the total
        starts_of: dict[int, list[int]] = {}
        for m in range(2, k + 1):
            cuts = [0]
            for q in range(1, m):
                i = bisect.bisect_left(pre, pre[n] * q / m, lo=cuts[-1] + 1)
                cuts.append(min(max(i - 1, cuts[-1] + 1), n - (m - q)))
            starts_of[m] = cuts
        costs = {
            m: max(run_cost(a, b) for a, b in zip(cuts, [*cuts[1:], n])) for m, cuts in starts_of.items()
        }
        m = min(costs, key=lambda mm: (costs[mm], mm))
        if costs[m] >= run_cost(0, n):
            return None
        cuts = starts_of[m]
        return [uniq[a:b] for a, b in zip(cuts, [*cuts[1:], n])], costs[m]
    inf = float("inf")
    # best[m][j]: least wall cost of the first j targets in m runs; cut[m][j]: where the last starts
    best = [[inf] * (n + 1) for _ in range(k + 1)]
    cut = [[0] * (n + 1) for _ in range(k + 1)]
    best[0][0] = 0.0
    for m in range(1, k + 1):
        for j in range(m, n + 1):
            for i in range(m - 1, j):
                c = max(best[m - 1][i], run_cost(i, j))
                if c < best[m][j]:
                    best[m][j], cut[m][j] = c, i
    m = min(range(1, k + 1), key=lambda mm: (best[mm][n], mm))
    if m < 2:
        return None
    runs, j = [], n
    for mm in range(m, 0, -1):
        i = cut[mm][j]
        runs.append(uniq[i:j])
        j = i
    return runs[::-1], best[m][n]


def parallel_budget(num_threads: int) -> int:
    """Readers the parallel strategy may use: ``num_threads`` when set, else the cores this
    process may run on, at most :data:`MAX_PARALLEL_READERS`."""
    if num_threads > 0:
        return int(num_threads)
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_PARALLEL_READERS, cores))


def choose_strategy(uniq: list[int], keys: list[int], num_threads: int) -> tuple[str, list[list[int]] | None]:
    """``"auto"``'s choice for sorted ``uniq``: ``("parallel", runs)`` when splitting the targets
    over readers is estimated to cost under :data:`PARALLEL_GAIN` of the best single-reader plan,
    else ``(plan_strategy(...).strategy, None)``."""
    plan = plan_strategy(uniq, keys)
    single = min(plan.seek_cost, plan.sequential_cost)
    par = plan_parallel(uniq, keys, parallel_budget(num_threads))
    if par is not None and par[1] < PARALLEL_GAIN * single:
        return "parallel", par[0]
    return plan.strategy, None


def resolve_strategy(
    strategy: str, uniq: list[int], keys: list[int], num_threads: int, on_cpu: bool = True
) -> tuple[str, list[list[int]] | None]:
    """The strategy a decode of sorted ``uniq`` runs, and for ``"parallel"`` its runs of targets
    (one run when splitting does not pay). ``"auto"`` considers the parallel strategy on the CPU
    only (:func:`choose_strategy`); a GPU decoder has no parallel strategy."""
    if strategy == "parallel":
        if not on_cpu:
            raise ConfigError("strategy='parallel' decodes on the CPU only")
        par = plan_parallel(uniq, keys, parallel_budget(num_threads))
        return strategy, par[0] if par is not None else [uniq]
    if strategy != "auto":
        return strategy, None
    if on_cpu:
        return choose_strategy(uniq, keys, num_threads)
    return plan_strategy(uniq, keys).strategy, None

"""Frame-sampling policies: properties (sorted, unique, in range, deterministic) and exact values
against naive float references."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from create_bench.errors import ConfigError
from create_bench.video import parse_policy, policy_signature, sample_indices
from create_bench.video.sampling import FPS_DEFAULT_MAX

POLICIES = ["uniform-center@{n}", "uniform-ends@{n}", "random-segment@{n}"]


def _check(idx: list[int], num_frames: int) -> None:
    assert idx == sorted(idx)
    assert len(idx) == len(set(idx))
    assert all(isinstance(i, int) and 0 <= i < num_frames for i in idx)
    assert len(idx) >= 1


@settings(max_examples=300, deadline=None)
@given(
    num_frames=st.integers(1, 5000),
    n=st.integers(1, 64),
    template=st.sampled_from(POLICIES),
    seed=st.integers(0, 2**32),
)
def test_segment_policies_properties(num_frames, n, template, seed):
    policy = template.format(n=n)
    idx = sample_indices(num_frames, policy, seed=seed)
    _check(idx, num_frames)
    # exactly N frames, or every frame of a shorter video
    assert len(idx) == min(n, num_frames)
    if num_frames <= n:
        assert idx == list(range(num_frames))
    assert idx == sample_indices(num_frames, policy, seed=seed)  # deterministic


@settings(max_examples=300, deadline=None)
@given(
    num_frames=st.integers(1, 20000),
    fps=st.floats(1.0, 120.0),
    rate=st.sampled_from([0.25, 0.5, 1, 2, 3, 10, 200]),
    cap=st.one_of(st.none(), st.integers(1, 100)),
)
def test_fps_policy_properties(num_frames, fps, rate, cap):
    policy = f"fps@{rate:g}" + (f",max={cap}" if cap else "")
    idx = sample_indices(num_frames, policy, fps=fps)
    _check(idx, num_frames)
    assert len(idx) <= (cap or FPS_DEFAULT_MAX)
    assert idx == sample_indices(num_frames, policy, fps=fps)


def test_uniform_center_matches_float_reference():
    for num_frames in [8, 9, 10, 17, 100, 101, 299, 1000, 4321]:
        for n in [1, 2, 4, 8, 12, 32]:
            if num_frames < n:
                continue
            ref = [math.floor((i + 0.5) * num_frames / n) for i in range(n)]
            assert sample_indices(num_frames, f"uniform-center@{n}") == ref, (num_frames, n)


def test_uniform_ends_matches_reference_and_hits_both_ends():
    for num_frames in [8, 9, 10, 17, 100, 101, 299, 1000]:
        for n in [2, 3, 4, 8, 16]:
            if num_frames < n:
                continue
            ref = [math.floor(i * (num_frames - 1) / (n - 1) + 0.5) for i in range(n)]
            got = sample_indices(num_frames, f"uniform-ends@{n}")
            assert got == ref, (num_frames, n)
            assert got[0] == 0 and got[-1] == num_frames - 1
    assert sample_indices(9, "uniform-ends@1") == [4]


def test_fps_policy_values():
    # 10 s at 30 fps, one frame per second: the centre of each second
    assert sample_indices(300, "fps@1", fps=30.0) == [15 + 30 * k for k in range(10)]
    # two per second at 25 fps: centres of 0.5 s windows (12.5 frames): floor(6.25 + 12.5 k)
    assert sample_indices(100, "fps@2", fps=25.0) == [math.floor((k + 0.5) * 12.5) for k in range(8)]
    # shorter than one window: the middle frame
    assert sample_indices(10, "fps@1", fps=30.0) == [4]
    # faster than the video: every frame once (duplicates removed)
    assert sample_indices(12, "fps@60", fps=30.0) == list(range(12))
    # the cap spreads frames over the whole video (uniform-center@cap), never truncates the end
    long = sample_indices(30 * 600, "fps@1,max=16", fps=30.0)
    assert long == sample_indices(30 * 600, "uniform-center@16")
    assert long[-1] > 30 * 560


def test_fps_policy_needs_fps():
    with pytest.raises(ConfigError, match="fps"):
        sample_indices(100, "fps@1")
    with pytest.raises(ConfigError, match="fps"):
        sample_indices(100, "fps@1", fps=0.0)


def test_random_segment_is_seeded_and_inside_its_segments():
    a = sample_indices(1000, "random-segment@8", seed=1)
    assert a == sample_indices(1000, "random-segment@8", seed=1)
    assert a != sample_indices(1000, "random-segment@8", seed=2)
    for i, x in enumerate(a):
        assert i * 1000 // 8 <= x < (i + 1) * 1000 // 8
    # draws cover each segment roughly uniformly
    rng = random.Random(0)
    hits = [sample_indices(80, "random-segment@8", seed=rng.randrange(2**31))[0] for _ in range(2000)]
    counts = [hits.count(k) for k in range(10)]
    assert min(counts) > 120 and max(counts) < 290


def test_signature_and_versions():
    assert policy_signature("uniform-center@8") == "uniform-center@8/v1"
    assert policy_signature("uniform-center@8/v1") == "uniform-center@8/v1"
    assert policy_signature("fps@0.5,max=32") == "fps@0.5,max=32/v1"
    p = parse_policy("random-segment@16")
    assert (p.name, p.n, p.version, p.num_output_frames) == ("random-segment", 16, 1, 16)
    assert parse_policy(p) is p


@pytest.mark.parametrize(
    "bad",
    [
        "uniform-centre@8",
        "uniform-center",
        "uniform-center@0",
        "uniform-center@2.5",
        "uniform-center@8/v9",
        "fps@0",
        "uniform-ends@8,max=3",
        "",
        8,
    ],
)
def test_bad_policies_rejected(bad):
    with pytest.raises(ConfigError):
        parse_policy(bad)


def test_typo_gets_a_suggestion():
    with pytest.raises(ConfigError, match="did you mean 'uniform-center'"):
        parse_policy("uniform-centre@8")


@pytest.mark.parametrize("n", [0, -3])
def test_no_frames_is_an_error(n):
    with pytest.raises(ConfigError, match="num_frames"):
        sample_indices(n, "uniform-center@8")


def test_layer1_import_does_not_pull_decoders():
    import subprocess
    import sys

    code = (
        "import sys; from create_bench.video import sample_indices; sample_indices(10, 'uniform-center@4'); "
        "print(any(m in sys.modules for m in ('decord', 'av', 'numpy', 'torch')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

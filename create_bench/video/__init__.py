"""Video: frame-sampling policies (pure, layer 1) and decoding (layer 2).

``sample_indices`` is imported eagerly (stdlib only); ``decode`` and friends are imported lazily on
first use, so layer-1 users never pull in decord, PyAV or numpy.

Modules: ``sampling`` (which frames), ``decoding`` (the public API: ``decode``, ``decode_many``,
...), ``checks`` (input checks), ``plan`` (the seek planner), ``frames`` (output sinks and reader
threads shared with the backends), ``worker`` (the killable decode process), ``probe`` (build-time
frame counts), ``backends/`` (``decord``, ``pyav``, ``nvdec``; they never import ``decoding``).
"""

from __future__ import annotations

from typing import Any

from create_bench.video.sampling import (
    DEFAULT_POLICY,
    FramePolicy,
    parse_policy,
    policy_signature,
    sample_indices,
)

_LAZY = {
    "decode": "create_bench.video.decoding",
    "decode_with_timeout": "create_bench.video.decoding",
    "decode_many": "create_bench.video.decoding",
    "decode_gpu": "create_bench.video.decoding",
    "backend_version": "create_bench.video.decoding",
    "plan_strategy": "create_bench.video.plan",
    "gpu_available": "create_bench.video.decoding",
    "probe_video": "create_bench.video.probe",
    "VideoInfo": "create_bench.video.probe",
}

__all__ = [
    "DEFAULT_POLICY",
    "FramePolicy",
    "parse_policy",
    "policy_signature",
    "sample_indices",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'create_bench.video' has no attribute {name!r}")

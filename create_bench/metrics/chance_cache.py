"""Retrieval chance levels computed once per reference counts (layer 2), cached on disk.

:func:`~create_bench.metrics.chance.retrieval_chance` depends only on how many texts each video
has, yet its expected median rank sums a Fourier series for each of thousands of ranks (about
10 ms for CREATE's test split, tens of ms for 50,000 videos with mixed counts), the same for every
submission scored on that split. So, like the reference tokens
(:mod:`create_bench.metrics.token_cache`), the levels are computed once and kept under
``<cache root>/chance/``:

- **Key**: the sha256 of the counts (their int64 bytes and length), the Ks, :data:`CACHE_VERSION`
  (2: the truncated Fourier sum; 1 was a full-size DFT per rank, whose MdR differs in the 12th
  digit) and numpy's version (the sums' rounding is numpy's: another numpy computes afresh).
- **Exact**: the levels are stored as JSON numbers, which round-trip every float64 exactly, so a
  hit returns the very numbers :func:`retrieval_chance` gives.
- **Never trusted**: an entry carries the sha256 of its payload and its key; a corrupt or
  mismatched entry is reported (warning), recomputed and rewritten; an unwritable cache only
  costs the computation again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from create_bench.fsutil import atomic_write_bytes, cache_root
from create_bench.metrics.chance import DEFAULT_KS, retrieval_chance

log = logging.getLogger(__name__)

CACHE_VERSION = 2
_MAGIC = b"create-bench chance levels\n"

Levels = dict[str, dict[str, float]]


def chance_key(counts: np.ndarray, ks: Sequence[int]) -> dict[str, object]:
    """Everything an entry depends on."""
    digest = hashlib.sha256(np.ascontiguousarray(counts, dtype="<i8").tobytes()).hexdigest()
    return {
        "v": CACHE_VERSION,
        "counts": digest,
        "n": int(len(counts)),
        "ks": list(ks),
        "numpy": np.__version__,
    }


def _path(cache_dir: str | os.PathLike[str], key: dict[str, object]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:24]
    return Path(cache_dir) / "chance" / f"{name}.json"


def _encode(levels: Levels, key: dict[str, object]) -> bytes:
    payload = json.dumps({"key": key, "levels": levels}, sort_keys=True).encode("utf-8")
    return _MAGIC + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n" + payload


def _decode(data: bytes, key: dict[str, object]) -> Levels:
    if not data.startswith(_MAGIC):
        raise ValueError("not a chance-level entry")
    head = len(_MAGIC)
    digest, payload = data[head : head + 64].decode("ascii", "replace"), data[head + 65 :]
    if hashlib.sha256(payload).hexdigest() != digest:
        raise ValueError("checksum mismatch")
    entry = json.loads(payload.decode("utf-8"))
    if entry.get("key") != key:
        raise ValueError("made for other counts or settings")
    levels = entry["levels"]
    if set(levels) != {"t2v", "v2t"} or not all(
        isinstance(v, float) and math.isfinite(v) for d in levels.values() for v in d.values()
    ):
        raise ValueError("malformed levels")
    return levels


def cached_retrieval_chance(
    texts_per_video: Sequence[int] | np.ndarray,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    use_cache: bool = True,
) -> tuple[Levels, str]:
    """:func:`~create_bench.metrics.chance.retrieval_chance`, from the cache when a valid entry exists.

    Returns:
        ``(levels, status)``: status is ``hit``, ``miss``, ``rebuilt`` (an entry was there but
        corrupt or mismatched) or ``off``.
    """
    counts = np.asarray(texts_per_video, dtype=np.int64).reshape(-1)
    if not use_cache:
        return retrieval_chance(counts, ks), "off"
    key = chance_key(counts, ks)
    path = _path(cache_dir if cache_dir is not None else cache_root(), key)
    status = "miss"
    if path.is_file():
        try:
            return _decode(path.read_bytes(), key), "hit"
        except (OSError, ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            log.warning("chance-level cache entry %s is unusable (%s); recomputing it", path, exc)
            status = "rebuilt"
    levels = retrieval_chance(counts, ks)
    try:
        atomic_write_bytes(path, _encode(levels, key))
    except OSError as exc:
        log.warning("could not write the chance-level cache %s (%s)", path, exc)
    return levels, status


__all__ = ["CACHE_VERSION", "cached_retrieval_chance", "chance_key"]

"""The chance-level cache: a hit returns the very numbers retrieval_chance computes, another key
misses, a corrupt or mismatched entry is recomputed (never trusted), scoring reads it."""

from __future__ import annotations

import numpy as np
import pytest

import create_bench.metrics.chance_cache as chance_cache
from create_bench.metrics.chance import retrieval_chance
from create_bench.metrics.chance_cache import cached_retrieval_chance

COUNTS = [10, 10, 9, 10, 1, 10, 3] * 20


@pytest.fixture
def calls(monkeypatch) -> list[int]:
    """Counts every real computation."""
    seen: list[int] = []

    def counting(counts, ks=(1, 5, 10)):
        seen.append(len(counts))
        return retrieval_chance(counts, ks)

    monkeypatch.setattr(chance_cache, "retrieval_chance", counting)
    return seen


def test_miss_then_hit_with_identical_numbers(tmp_path, calls) -> None:
    first, status = cached_retrieval_chance(COUNTS, cache_dir=tmp_path)
    assert status == "miss" and calls == [len(COUNTS)]
    again, status = cached_retrieval_chance(np.array(COUNTS), cache_dir=tmp_path)
    assert status == "hit" and len(calls) == 1  # read, not computed
    assert again == first == retrieval_chance(COUNTS)  # every float exactly


def test_off_neither_reads_nor_writes(tmp_path, calls) -> None:
    _, status = cached_retrieval_chance(COUNTS, cache_dir=tmp_path, use_cache=False)
    assert status == "off" and not any(tmp_path.rglob("*.json"))


@pytest.mark.parametrize("change", ["counts", "order", "ks", "numpy"])
def test_another_key_misses(tmp_path, calls, change, monkeypatch) -> None:
    cached_retrieval_chance(COUNTS, cache_dir=tmp_path)
    counts, ks = list(COUNTS), (1, 5, 10)
    if change == "counts":
        counts[0] = 9
    elif change == "order":
        counts = counts[::-1]
    elif change == "ks":
        ks = (1, 5)
    else:
        monkeypatch.setattr(chance_cache.np, "__version__", "0.0.0")
    levels, status = cached_retrieval_chance(counts, ks, cache_dir=tmp_path)
    assert status == "miss" and len(calls) == 2
    assert levels == retrieval_chance(counts, ks)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "other-key", "nan"])
def test_corrupt_entry_is_recomputed(tmp_path, calls, damage, caplog) -> None:
    good, _ = cached_retrieval_chance(COUNTS, cache_dir=tmp_path)
    (path,) = tmp_path.rglob("*.json")
    data = path.read_bytes()
    if damage == "flip":
        data = data[:-10] + bytes([data[-10] ^ 0x01]) + data[-9:]
    elif damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "empty":
        data = b""
    elif damage == "garbage":
        data = b"\x00" * 200
    elif damage == "other-key":  # well-formed, checksum and all, but made for other counts
        data = chance_cache._encode(good, chance_cache.chance_key(np.array(COUNTS[:-1]), (1, 5, 10)))
    else:  # well-formed, its own key, a non-finite level
        nan = {"t2v": {"R@1": float("nan")}, "v2t": {}}
        data = chance_cache._encode(nan, chance_cache.chance_key(np.array(COUNTS), (1, 5, 10)))
    path.write_bytes(data)
    levels, status = cached_retrieval_chance(COUNTS, cache_dir=tmp_path)
    assert status == "rebuilt" and len(calls) == 2 and levels == good
    assert "unusable" in caplog.text
    assert cached_retrieval_chance(COUNTS, cache_dir=tmp_path)[1] == "hit"  # rewritten


def test_unwritable_cache_still_gives_levels(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    levels, status = cached_retrieval_chance(COUNTS, cache_dir=blocker)
    assert status == "miss" and levels == retrieval_chance(COUNTS)


def test_scoring_computes_each_count_vector_once_and_caches_it(tmp_path, calls) -> None:
    from create_bench.scoring_groups import _ChanceLevels

    levels = _ChanceLevels(tmp_path)
    a, b = levels([10] * 30), levels([10] * 30)  # caption and title of one split: one computation
    assert a == b and a is not b and len(calls) == 1
    a["t2v"]["R@1"] = -1.0  # each group gets its own copy
    assert levels([10] * 30)["t2v"]["R@1"] != -1.0
    assert _ChanceLevels(tmp_path)([10] * 30) == b and len(calls) == 1  # a later run reads the cache
    assert (
        _ChanceLevels(False)([10] * 30) == b and len(calls) == 2 and len(list(tmp_path.rglob("*.json"))) == 1
    )

"""A bounded load test on loopback (the same code as benchmarks/leaderboard_load.py): concurrent
submissions and page views for a few seconds; requests/s and p95 latency are reported, and no
accepted submission may be lost (all must reach the board and finish)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from leaderboard_util import text_dataset

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "leaderboard_load", ROOT / "benchmarks" / "leaderboard_load.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_load_on_loopback_loses_no_submission(tmp_path, capsys):
    data = text_dataset(tmp_path / "data", n_test=20)
    out = _bench().run_load(data, duration=4.0, clients=6, teams=3, drain=120.0, workdir=tmp_path / "load")
    with capsys.disabled():
        print(
            f"\nleaderboard load: {out['requests_per_s']:.1f} requests/s, "
            + ", ".join(f"{k} p95 {v['p95_ms']:.0f} ms" for k, v in sorted(out["latency"].items()))
            + f"; {out['accepted']} accepted, {len(out['lost'])} lost"
        )
    assert out["requests"] > 0 and out["accepted"] > 0
    assert out["errors"] == {}
    assert out["lost"] == []
    assert out["finished"] == out["accepted"]
    assert {"submit", "board", "api"} <= set(out["latency"])
    assert all(v["p95_ms"] > 0 for v in out["latency"].values())

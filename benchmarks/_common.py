"""Helpers shared by the benchmarks: argument parsing, timing, and a ratio line."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="data/create-sample", help="dataset directory (default: CREATE-sample)")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    p.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    return p


def ensure_data(path: str) -> Path:
    p = Path(path)
    if not (p / "manifest.json").is_file():
        raise SystemExit(f"{p} is not a dataset; make it with `create-bench sample --out {p}`")
    return p


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Best wall time over ``repeat`` runs (after one warm-up run) and the last result."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def ratio_line(name: str, ours: float, base: float, unit: str) -> str:
    """``name: ours X unit vs baseline Y unit -> ratio R`` (higher throughput = better)."""
    return f"{name:<40s} ours {ours:12.1f} {unit}  baseline {base:12.1f} {unit}  ratio {ours / base:6.2f}x"

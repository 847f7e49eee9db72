"""Scorers the worker loads with ``--scorer tests/leaderboard_scorers.py:slow_score`` in the
fault test: the real scoring, after announcing that scoring started and waiting a while (so the
test can kill the worker mid-scoring)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def slow_score(pred_dir: Any, data_dir: Any, split: str, **kwargs: Any) -> dict[str, Any]:
    from create_bench.scoring import score_predictions

    marker = os.environ.get("LB_SLOW_MARKER")
    if marker:
        with open(marker, "a") as fh:
            fh.write(f"{os.getpid()}\n")
    time.sleep(float(os.environ.get("LB_SLOW_SECONDS", "0")))
    return score_predictions(Path(pred_dir), data_dir, split, **kwargs)

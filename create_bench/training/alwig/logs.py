"""The run's JSON-lines logs: ``log.jsonl`` (rank 0: one line per logged step and per validation)
and the optional per-rank sample log (which vids each step trained on)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from create_bench.fsutil import atomic_write_bytes
from create_bench.models.alwig.model import World


class JsonlLog:
    def __init__(self, path: Path, enabled: bool, append: bool):
        self.path, self.enabled = path, enabled
        if enabled and not append:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0


def truncate_log(path: Path, size: int) -> None:
    """Drop what an interrupted run logged after its last saved state (the resumed run redoes it)."""
    if path.is_file() and path.stat().st_size > size:
        with open(path, "rb") as fh:
            head = fh.read(size)
        atomic_write_bytes(path, head)


class SampleLog:
    """Per-rank JSON lines of the vids each step trained on (:attr:`TrainOptions.sample_log`)."""

    def __init__(self, root: Path | None, world: World):
        self.path = root / f"rank{world.rank}-of-{world.size}.jsonl" if root is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, phase: str, epoch: int, step: int, vids: Sequence[str]) -> None:
        if self.path is not None:
            rec = {"phase": phase, "epoch": epoch, "step": step, "vids": list(vids)}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")

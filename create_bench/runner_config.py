"""The evaluation run's configuration and outcome (layer 4): :class:`EvalConfig` (one frozen object
that decides a run, checked where it is made) and :class:`EvalOutcome` (what a run wrote).

Split out of :mod:`create_bench.runner`, which re-exports both names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError
from create_bench.scoring import ScoringOptions
from create_bench.tasks import parse_tasks

DEFAULT_RESULTS_DIR = Path("results")


@dataclass(frozen=True)
class EvalConfig:
    """Everything that decides an evaluation run (one frozen object instead of many parameters).

    Attributes:
        data_dir: dataset directory (shards + manifest).
        split: split to evaluate (``test`` by default; never ``train``-trained models on train).
        tasks: task names; None means every task the model supports.
        frames: frame policy; None means the model's own ``meta.frames`` (the benchmark default).
        batch_size: videos per model call.
        num_workers: decoding worker processes of the loader.
        device: ``cpu``, ``cuda`` or ``cuda:N`` (passed to the model's setup).
        out: results JSON path; default ``results_dir/<model>/<dataset>-<split>.json``. The
            predictions directory is the same path without ``.json``, the report ``<stem>.md``.
        results_dir: root of the default output layout.
        no_cache: run the model even when cached predictions match.
        seed: given to the model (``ModelContext.seed``); also the bootstrap's when ``scoring``
            is not given.
        scoring: how the predictions are scored (:class:`create_bench.scoring.ScoringOptions`:
            tokenizer, bootstrap, seed, ...); default: the defaults with ``seed``.
        text_batch_size: texts per ``encode_texts`` call.
        report: write the Markdown report and plots.
        progress: show progress (a bar on a terminal, else lines on stderr); None: the process
            default of :mod:`create_bench.progress` (quiet in the library, on in the CLI).
        overwrite: replace outputs that another model class of the same name wrote.
    """

    data_dir: Path
    split: str = "test"
    tasks: tuple[str, ...] | None = None
    frames: str | None = None
    batch_size: int = 16
    num_workers: int = 0
    device: str = "cpu"
    out: Path | None = None
    results_dir: Path = DEFAULT_RESULTS_DIR
    no_cache: bool = False
    seed: int = 0
    scoring: ScoringOptions | None = None
    text_batch_size: int = 256
    report: bool = True
    progress: bool | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        object.__setattr__(self, "results_dir", Path(self.results_dir))
        if self.scoring is None:
            object.__setattr__(self, "scoring", ScoringOptions(seed=self.seed))
        elif not isinstance(self.scoring, ScoringOptions):
            raise ConfigError(f"scoring must be a ScoringOptions, got {type(self.scoring).__name__}")
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
            _check_out(self.out)
        if self.tasks is not None:
            object.__setattr__(self, "tasks", tuple(t.name for t in parse_tasks(list(self.tasks))))
        if not self.split or not isinstance(self.split, str):
            raise ConfigError(f"split must be a non-empty string, got {self.split!r}")
        for name in ("batch_size", "text_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {self.num_workers}")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", self.device):
            raise ConfigError(f"device must be cpu, cuda or cuda:N, got {self.device!r}")


def _check_out(out: Path) -> None:
    """``out`` names the results JSON file; checked before the model runs, so a bad path costs nothing."""
    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a directory; give the results file, e.g. {out / 'results.json'} "
            "(or --results-dir DIR for DIR/<model>/<dataset>-<split>.json)"
        )
    if out.suffix.lower() != ".json":
        raise ConfigError(
            f"--out {out} must end in .json: it names the results JSON file, e.g. {out.with_suffix('.json')} "
            "(the predictions directory is the same path without .json)"
        )


@dataclass
class EvalOutcome:
    """What a run produced: the results dict and where everything was written."""

    results: dict[str, Any]
    results_path: Path
    predictions_dir: Path
    report_path: Path | None
    cached: bool
    tasks: tuple[str, ...]
    skipped_tasks: tuple[str, ...] = ()

"""One training run's working state (:class:`RunContext`): what :func:`~.train.train` sets up once
and the phase and epoch loops read and update. The run's *options* are the frozen
:class:`~create_bench.training.alwig.options.TrainOptions`; this is the mutable rest (world,
data, model, saved state, logs), gathered so the loop functions take one argument."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from create_bench.models.alwig.bundle import ALWIG
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import World
from create_bench.training.alwig.features import SplitData, default_cache_dir
from create_bench.training.alwig.feeders import open_stream
from create_bench.training.alwig.logs import JsonlLog, SampleLog
from create_bench.training.alwig.options import TrainOptions
from create_bench.training.alwig.state import gather_rng, save_state


def fresh_state() -> dict[str, Any]:
    """The resumable state of a run that has not trained yet (saved as ``state.json``)."""
    return {"phase": None, "epoch": 0, "step": 0, "best_loss": None, "best_epoch": None, "done": []}


@dataclass
class RunContext:
    """The mutable state of one run (one per process)."""

    opts: TrainOptions
    world: World
    device: str
    info: Any  # the dataset's DatasetInfo
    #: (phase, epochs) in running order, the split each phase trains on, and whether it streams.
    phases: list[tuple[str, int]]
    phase_split: dict[str, str]
    streamed: dict[str, bool]
    #: What is saved with the state about streaming (a resumed run must stream the same way).
    stream_record: dict[str, Any]
    resuming: bool
    state: dict[str, Any] = field(default_factory=fresh_state)
    encoder: Any = None
    #: Splits held in memory by name; streams opened by phase.
    splits: dict[str, SplitData] = field(default_factory=dict)
    streams: dict[str, Any] = field(default_factory=dict)
    bundle: ALWIG | None = None
    #: The network as the step calls it (DDP-wrapped under torchrun).
    ddp_net: Any = None
    logger: JsonlLog | None = None
    samples: SampleLog | None = None
    #: Weights of the best validated epoch so far (rank 0).
    best_state: dict[str, torch.Tensor] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    t_start: float = 0.0
    #: Optimiser steps of this process (``interrupt_after_steps``).
    steps_run: int = 0

    @property
    def cfg(self) -> ALWIGConfig:
        return self.opts.cfg

    @property
    def data_dir(self) -> Path:
        return Path(self.opts.data_dir)

    @property
    def out(self) -> Path:
        return Path(self.opts.out_dir)

    @property
    def cache_dir(self) -> Path:
        return Path(self.opts.cache_dir) if self.opts.cache_dir else default_cache_dir()

    @property
    def is_main(self) -> bool:
        return self.world.rank == 0

    @property
    def progress(self) -> bool:
        """Progress bars: rank 0 only, when asked for."""
        return bool(self.is_main and self.opts.progress)

    @property
    def net(self) -> Any:
        assert self.bundle is not None, "the model is built before it is used"
        return self.bundle.net

    def stream_of(self, phase: str) -> Any:
        """This rank's stream of a phase, opened on first use (collective: every rank calls it)."""
        if phase not in self.streams:
            self.streams[phase] = open_stream(
                self.data_dir,
                self.phase_split[phase],
                self.cfg,
                phase,
                self.world,
                self.device,
                self.opts.stream_block,
            )
        return self.streams[phase]

    def save(self, opt: Any, sched: Any, mid_epoch: bool) -> None:
        """Save the resumable state. Collective: every rank's RNG state (mid-epoch), then rank 0 writes."""
        rng = gather_rng(self.world, self.device) if mid_epoch else None
        if self.is_main:
            assert self.bundle is not None and self.logger is not None
            self.state.update(
                stream=self.stream_record, world_size=self.world.size, log_bytes=self.logger.size()
            )
            save_state(self.bundle, opt, sched, self.out, self.state, self.best_state, rng)

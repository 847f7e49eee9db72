"""The options of one ALWIG training run (:class:`TrainOptions`, the model's own settings being its
:class:`~create_bench.models.alwig.config.ALWIGConfig`) and the checks made before anything runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError
from create_bench.models.alwig.config import ALWIGConfig

#: The training phases, in the order they run (their index seeds each phase's data order).
PHASES = ("pretrain", "finetune")
#: ``stream``: where a phase's training rows come from (see :class:`TrainOptions`).
STREAM_MODES = ("auto", "on", "off")
#: ``stream: auto`` streams a phase whose split's features, as one dense float32 tensor, would be larger.
STREAM_AUTO_BYTES = 1 << 30


@dataclass(frozen=True)
class TrainOptions:
    """Everything one training run is told (frozen: the run never changes its options)."""

    data_dir: Path
    out_dir: Path
    cfg: ALWIGConfig
    pretrain: bool = False
    #: The pre-training split (CREATE-sample: ``pretrain``; an imported release: ``pretrain-3m``/``-10m``).
    pretrain_split: str = "pretrain"
    device: str = "cpu"
    resume: bool = False
    cache_dir: Path | None = None
    progress: bool | None = None
    log_every: int = 10
    #: Stop each phase after this many optimiser steps (tests and benchmarks); None = full epochs.
    max_steps: int | None = None
    #: Stop as if interrupted after this many epochs of fine-tuning (tests of --resume).
    interrupt_after: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Where each phase's training rows come from. ``off``: the whole split in memory on every rank
    #: (a seeded permutation per epoch; CREATE-sample). ``on``: streamed by rank from the dataset's
    #: feature shards (``encoder: features``; :mod:`create_bench.training.alwig.stream`). ``auto``:
    #: stream a phase whose split's features would take more than :data:`STREAM_AUTO_BYTES` in memory.
    stream: str = "auto"
    #: Rows per lane block of the streamed order (its shuffle window; see ``stream.py``).
    stream_block: int = 64
    #: Also save the resumable state every this many optimiser steps (0: at epoch ends only).
    checkpoint_every: int = 0
    #: Stop as if killed after this many optimiser steps of this process (tests of mid-epoch resume;
    #: a resumed run continues from the last saved state).
    interrupt_after_steps: int | None = None
    #: A directory where each rank appends the vids of its share of every step
    #: (``rank<r>-of-<W>.jsonl``): which samples a run consumed (tests, debugging).
    sample_log: Path | None = None


def check_options(opts: TrainOptions) -> None:
    if opts.stream not in STREAM_MODES:
        raise ConfigError(f"stream must be one of {', '.join(STREAM_MODES)}, got {opts.stream!r}")
    if opts.stream == "on" and opts.cfg.encoder != "features":
        raise ConfigError(
            f"stream 'on' reads feature shards: it needs 'encoder: features' (got {opts.cfg.encoder!r}); "
            "extract them first with create-bench extract"
        )
    if opts.stream_block < 1:
        raise ConfigError(f"stream_block must be >= 1, got {opts.stream_block}")
    if opts.checkpoint_every < 0:
        raise ConfigError(f"checkpoint_every must be >= 0 (0 = epoch ends only), got {opts.checkpoint_every}")


def wants_stream(mode: str, cfg: ALWIGConfig, rows: int) -> bool:
    """Whether a phase on a split of ``rows`` videos streams (``mode``: see :class:`TrainOptions`)."""
    if mode == "off" or cfg.encoder != "features":
        return False
    dense = rows * cfg.num_frames * int(cfg.feature_dim or 0) * 4
    return mode == "on" or dense > STREAM_AUTO_BYTES

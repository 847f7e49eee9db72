"""Configuration of a feature extraction run (layer 3): :class:`ExtractConfig` and its checks."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError

ENGINES = ("local", "ray", "torchrun")


#: Columns the pipeline reads from the data shards.
DATA_COLUMNS = ["vid", "num_frames", "fps", "video"]


@dataclass(frozen=True)
class ExtractConfig:
    """Everything that defines one extraction run. Build with :func:`make_config`."""

    data_dir: Path
    split: str
    engine: str = "local"
    #: ``fixed``, ``clip:DIR``, a CLIP checkpoint directory, or ``path/file.py:Class`` (any class with
    #: ``__call__(uint8 [B,T,H,W,3]) -> float [B,T,D]`` and ``name``/``signature``).
    encoder: str = "fixed"
    frames: str = "uniform-center@8"
    #: Resize frames at decode time to (H, W); None keeps the stored size.
    frame_size: tuple[int, int] | None = None
    #: Name of the feature set; default ``<encoder>-<policy>[-HxW]``.
    feature_set: str | None = None
    #: Root that receives ``features/<set>/``; default the dataset directory (then the manifest lists them).
    out_dir: Path | None = None
    #: Videos per part file (also per DataLoader batch and per Ray encoder batch).
    batch_size: int = 16
    #: DataLoader decode workers (local/torchrun) or concurrent Ray decode tasks (ray; 0 = all CPUs).
    num_workers: int = 0
    resume: bool = True
    #: Videos per encoder call. 1 (default) makes features independent of batching, hence exact
    #: across engines; larger values stack videos of equal frame shape (faster on a GPU).
    encode_batch: int = 1
    decode_device: str = "cpu"
    #: Device of the encoder (``cpu``, ``cuda``, ``cuda:N``).
    device: str = "cpu"
    #: torch threads of the encoding process (local/torchrun); None: CPUs minus decode workers on a
    #: CPU encoder (unless OMP_NUM_THREADS is set), else torch's default.
    encoder_threads: int | None = None
    #: ``fail``: raise VideoDecodeError naming the failed vids (after saving the rest); ``skip``: leave them out.
    on_error: str = "fail"
    #: Per-video decode timeout in seconds (a killable worker process); None decodes in-process.
    timeout: float | None = 120.0
    #: Rows per merged feature shard.
    shard_size: int = 1000
    # -- torchrun --
    rank: int | None = None
    world_size: int | None = None
    #: How long rank 0 waits for the other ranks before merging.
    merge_timeout: float = 24 * 3600.0
    # -- ray --
    ray_address: str | None = None
    num_encoders: int = 1
    num_gpus: float = 0.0
    encoder_cpus: float = 1.0
    object_store_mb: int | None = None
    #: Memory each Ray decode task reserves (MiB).
    decode_memory_mb: int = 512

    @property
    def out_root(self) -> Path:
        return self.out_dir if self.out_dir is not None else self.data_dir


def make_config(data_dir: str | os.PathLike[str], split: str, **options: Any) -> ExtractConfig:
    """An :class:`ExtractConfig` with every option checked (unknown names get "did you mean")."""
    names = {f.name for f in dataclasses.fields(ExtractConfig)} - {"data_dir", "split"}
    for key in options:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=1)
            raise ConfigError(
                f"unknown extract option {key!r}" + (f"; did you mean {close[0]!r}?" if close else "")
            )
    if options.get("out_dir") is not None:
        options["out_dir"] = Path(options["out_dir"])
    if options.get("frame_size") is not None:
        from create_bench.video.checks import normalize_size

        options["frame_size"] = normalize_size(options["frame_size"])
    cfg = ExtractConfig(data_dir=Path(data_dir), split=split, **options)
    _check_config(cfg)
    return cfg


def _check_config(cfg: ExtractConfig) -> None:
    from create_bench.video.sampling import parse_policy

    if cfg.engine not in ENGINES:
        raise ConfigError(f"unknown engine {cfg.engine!r} (known: {', '.join(ENGINES)})")
    if parse_policy(cfg.frames).name == "random-segment":
        raise ConfigError("feature extraction needs a deterministic frame policy, not random-segment")
    for name in ("batch_size", "encode_batch", "shard_size", "num_encoders"):
        if int(getattr(cfg, name)) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)!r}")
    if cfg.num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {cfg.num_workers}")
    if cfg.on_error not in ("fail", "skip"):
        raise ConfigError(f"on_error must be 'fail' or 'skip', got {cfg.on_error!r}")
    if cfg.decode_device.split(":")[0] not in ("cpu", "cuda", "gpu"):
        raise ConfigError(f"decode_device must be 'cpu' or 'cuda[:N]', got {cfg.decode_device!r}")
    if cfg.timeout is not None and not cfg.timeout > 0:
        raise ConfigError(f"timeout must be a positive number of seconds or None, got {cfg.timeout!r}")
    if cfg.feature_set is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._@+-]*", cfg.feature_set):
        raise ConfigError(f"bad feature set name {cfg.feature_set!r} (letters, digits, . _ @ + -)")

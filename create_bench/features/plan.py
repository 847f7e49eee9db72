"""The plan of an extraction run (layer 3): settings that key the run, the feature-set name, the
work already done (resume), and decoding one video the same way in every engine."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from create_bench import __version__
from create_bench.errors import ConfigError, VideoDecodeError
from create_bench.features.config import ExtractConfig
from create_bench.features.encoders import encoder_info
from create_bench.features.parts import read_meta

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    """What a run did. ``computed``: vids encoded by this process (rank 0 / driver); ``reused``: vids
    found done; ``failed``: vid -> error message."""

    feature_dir: Path
    feature_set: str
    split: str
    engine: str
    files: list[Path] = field(default_factory=list)
    num_videos: int = 0
    computed: list[str] = field(default_factory=list)
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    merged: bool = False


@dataclass
class Plan:
    cfg: ExtractConfig
    info: Any
    set_name: str
    set_dir: Path
    parts_dir: Path
    meta: dict[str, Any]
    vids: list[str]
    done: set[str]


def _feature_set_name(cfg: ExtractConfig, info: dict[str, Any]) -> str:
    from create_bench.video.sampling import parse_policy

    if cfg.feature_set:
        return cfg.feature_set
    name = f"{info['encoder']}-{parse_policy(cfg.frames).canonical()}"
    if cfg.frame_size:
        name += f"-{cfg.frame_size[0]}x{cfg.frame_size[1]}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-")


def _decoder_name(cfg: ExtractConfig) -> str:
    from create_bench.video.decoding import backend_version

    return backend_version("decord") + ("" if cfg.decode_device == "cpu" else "+nvdec")


def _meta(cfg: ExtractConfig, info: Any, enc: dict[str, Any]) -> dict[str, Any]:
    from create_bench.video.sampling import policy_signature

    # Only what changes the features goes here (not the engine or worker count), so that merged
    # files are byte-identical across engines.
    return {
        **enc,
        "frames": policy_signature(cfg.frames),
        "frame_size": list(cfg.frame_size) if cfg.frame_size else None,
        "decode": _decoder_name(cfg),
        "dataset": info.name,
        "dataset_fingerprint": info.fingerprint,
        "split": cfg.split,
        "create_bench": __version__,
    }


_KEY_FIELDS = ("encoder", "encoder_revision", "frames", "frame_size", "dataset_fingerprint", "split")


def same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _KEY_FIELDS)


def _describe(meta: dict[str, Any]) -> str:
    return ", ".join(f"{k}={meta.get(k)!r}" for k in _KEY_FIELDS)


def final_files(set_dir: Path, split: str) -> list[Path]:
    return sorted(set_dir.glob(f"{split}-*-of-*.parquet"))


def read_vids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["vid"]).column("vid").to_pylist()


def _scan_done(plan: Plan, files: Iterable[Path], what: str) -> set[str]:
    done: set[str] = set()
    for f in files:
        try:
            meta = read_meta(f)
            vids = read_vids(f)
        except (OSError, pa.ArrowException) as e:
            # Parts are renamed into place whole, so this is damage from outside; recompute.
            log.warning("ignoring unreadable %s %s: %s", what, f, e)
            continue
        if not same_run(meta, plan.meta):
            if plan.cfg.resume:
                raise ConfigError(
                    f"{what} {f} was made with different settings ({_describe(meta)}); this run has "
                    f"({_describe(plan.meta)}). Use another feature set, or resume=False (--no-resume) to redo it."
                )
            continue
        done.update(vids)
    return done


def prepare(cfg: ExtractConfig, encoder: Any) -> Plan:
    from create_bench.data.shards import open_dataset, read_table

    info = open_dataset(cfg.data_dir)
    vids = read_table(cfg.data_dir, cfg.split, columns=["vid"]).column("vid").to_pylist()
    meta = _meta(cfg, info, encoder_info(encoder))
    set_name = _feature_set_name(cfg, meta)
    set_dir = cfg.out_root / "features" / set_name
    plan = Plan(cfg, info, set_name, set_dir, set_dir / ".parts" / cfg.split, meta, vids, set())
    plan.parts_dir.mkdir(parents=True, exist_ok=True)
    if cfg.resume:
        plan.done = _scan_done(plan, final_files(set_dir, cfg.split), "feature shard")
        plan.done |= _scan_done(plan, sorted(plan.parts_dir.glob("*.parquet")), "part file")
        plan.done &= set(vids)
    return plan


def clean_tmp(parts_dir: Path, prefix: str = "") -> None:
    # Temp files of a killed writer (``.<name>.<random>.tmp``): never visible as parts; drop them.
    for p in parts_dir.glob(f".{prefix}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def decode_ctx(cfg: ExtractConfig) -> str:
    kind, _, num = cfg.decode_device.partition(":")
    return "cpu" if kind == "cpu" else f"gpu:{num or 0}"


def decode_video(row: dict[str, Any], cfg: ExtractConfig) -> np.ndarray:
    """The policy's frames of one dataset row, ``uint8 [T, H, W, 3]`` (same path for every engine)."""
    from create_bench.data.shards import video_source
    from create_bench.video.sampling import sample_indices

    vid = row["vid"]
    try:
        indices = sample_indices(int(row["num_frames"]), cfg.frames, fps=row.get("fps"))
    except ConfigError as e:
        raise VideoDecodeError(f"cannot sample frames: {e}", vid=vid) from None
    src = video_source(row, cfg.data_dir)
    from create_bench.video.decoding import decode

    return decode(src, indices, size=cfg.frame_size, ctx=decode_ctx(cfg), vid=vid, timeout=cfg.timeout)

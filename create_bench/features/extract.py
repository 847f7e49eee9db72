"""Frozen-encoder feature extraction (layer 4: the entry points; the local engine drives the loader):
one pipeline, three engines, exact results.

``extract_features(data_dir, split, engine=...)`` reads a split's shards, picks frames with a named
policy (:mod:`create_bench.video.sampling`), decodes them (:func:`create_bench.video.decoding.decode`, or the
GPU backend of :mod:`create_bench.video.backends.nvdec`), runs a frozen per-frame encoder (the ALWIG options of
:mod:`create_bench.features.encoders`) and writes feature shards a dataset can use::

    OUT/features/<set>/{split}-{i:05d}-of-{n:05d}.parquet     columns vid, features list<list<float32>>

with the encoder (name, revision, version), frame policy, frame size, decoder and dataset
fingerprint in each file's Parquet metadata (:data:`META_KEY`). When ``OUT`` is the dataset itself
(the default) the files are added to its ``manifest.json`` (atomically; the data fingerprint does
not change), so :func:`create_bench.data.shards.read_features` and the loader's ``features=`` read
them. A video keeps only its real frames: ``[len(sample_indices(...)), D]``.

**Engines.** ``local``: DataLoader worker processes decode (:func:`create_bench.loader.make_loader`),
the main process encodes. ``ray``: Ray Data reads the Parquet shards, CPU tasks decode, a pool of
encoder actors (``num_gpus`` each when asked) encode and write part files. ``torchrun``: every rank
(``RANK``/``WORLD_SIZE`` from the environment, or explicit) runs the local pipeline on its partition
of :func:`create_bench.data.shards.iter_batches` and writes its own part files; rank 0 waits for
every rank's "done" marker and merges.

**Resumable and exact.** Work goes to ``OUT/features/<set>/.parts/<split>/`` as part files of
``batch_size`` videos, each written atomically (temp file + rename), so a killed job leaves only
whole parts. A re-run skips every vid already in a part or in the split's merged shards. The
final merge de-duplicates by vid and orders rows by vid; every video is encoded on its own
(``encode_batch=1``, the default), so the features — and the merged files, byte for byte — are the
same whatever the engine, number of workers, ranks or interruptions.
(Tested with the fixed encoder. A CPU CLIP encoder's matrix products may round differently with
a different number of torch threads; fix ``encoder_threads`` when comparing such runs bit for bit.)

Example::

    extract_features("data/create-sample", "test", engine="local", encoder="fixed", num_workers=2)
    read_features("data/create-sample", "fixed-uniform-center-8", "test")   # vid -> float32 [T, D]
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from create_bench.errors import BackendUnavailable, VideoDecodeError
from create_bench.features.config import ENGINES, ExtractConfig, make_config
from create_bench.features.encoders import encode_videos, encoder_info, resolve_encoder
from create_bench.features.engines.local import (
    done_marker,
    env_rank,
    per_rank_devices,
    run_partition,
    wait_for_ranks,
)
from create_bench.features.engines.ray import run_ray
from create_bench.features.merge import merge_parts
from create_bench.features.parts import META_KEY, PartWriter, read_meta
from create_bench.features.plan import ExtractReport, clean_tmp, decode_video, prepare
from create_bench.fsutil import atomic_write_json

log = logging.getLogger(__name__)


def run_extraction(cfg: ExtractConfig) -> ExtractReport:
    """Run one extraction (see the module doc) and report what it did."""
    t0 = time.perf_counter()
    if cfg.engine == "torchrun" and "LOCAL_RANK" in os.environ:
        cfg = per_rank_devices(cfg, int(os.environ["LOCAL_RANK"]))
    if cfg.decode_device != "cpu":
        from create_bench.video.backends.nvdec import select_gpu_backend

        select_gpu_backend(cfg.decode_device)  # fail fast, before any engine starts
    encoder = resolve_encoder(cfg.encoder, cfg.device)
    plan = prepare(cfg, encoder)
    report = ExtractReport(plan.set_dir, plan.set_name, cfg.split, cfg.engine, num_videos=len(plan.vids))
    report.reused = len(plan.done)
    merge = True
    if cfg.engine == "local":
        clean_tmp(plan.parts_dir)
        report.computed, report.failed = run_partition(plan, encoder, "local", None, None)
    elif cfg.engine == "ray":
        clean_tmp(plan.parts_dir)
        report.computed, report.failed = run_ray(plan)
    else:
        rank, world = env_rank(cfg)
        prefix = f"r{rank:05d}"
        clean_tmp(plan.parts_dir, prefix)
        report.computed, report.failed = run_partition(plan, encoder, prefix, rank, world)
        if not report.failed or cfg.on_error == "skip":
            atomic_write_json(
                done_marker(plan, rank, world), {**plan.meta, "rank": rank, "world_size": world}
            )
        merge = rank == 0
        if merge:
            wait_for_ranks(plan, world)
    log.info(
        "extract %s/%s: %d videos, %d reused, %d computed here, %d failed",
        plan.set_name,
        cfg.split,
        len(plan.vids),
        report.reused,
        len(report.computed),
        len(report.failed),
    )
    if report.failed and cfg.on_error == "fail":
        first = sorted(report.failed)[0]
        shown = "; ".join(f"{v}: {report.failed[v]}" for v in sorted(report.failed)[:5])
        raise VideoDecodeError(
            f"{len(report.failed)} video(s) failed to decode ({shown}); the others are saved, "
            "re-run to retry or pass on_error='skip'",
            vid=first,
        )
    if merge:
        report.files = merge_parts(plan)
        report.merged = True
    report.seconds = time.perf_counter() - t0
    return report


def extract_features(
    data_dir: str | os.PathLike[str],
    split: str,
    *,
    engine: str = "local",
    encoder: str = "fixed",
    frames: str = "uniform-center@8",
    out_dir: str | os.PathLike[str] | None = None,
    batch_size: int = 16,
    num_workers: int = 0,
    resume: bool = True,
    **options: Any,
) -> Path:
    """Extract per-frame features of a split; returns the feature-set directory.

    Args:
        data_dir: a create-bench dataset directory.
        split: ``train``, ``validation``, ``test``, ``pretrain``, ...
        engine: ``local``, ``ray`` or ``torchrun`` (see the module doc).
        encoder: ``fixed``, ``clip:DIR``, a CLIP checkpoint dir, or ``file.py:Class``.
        frames: a deterministic frame policy (``uniform-center@8``, ``uniform-ends@N``, ``fps@F``).
        out_dir: root receiving ``features/<set>/``; default the dataset (then its manifest lists them).
        batch_size: videos per part file.
        num_workers: decode processes (DataLoader workers; Ray decode tasks).
        resume: skip vids already extracted with the same settings (False redoes them).
        **options: any other :class:`ExtractConfig` field (``feature_set``, ``frame_size``,
            ``decode_device``, ``device``, ``on_error``, ``timeout``, ``rank``/``world_size``, ``ray_address``,
            ``num_encoders``, ``num_gpus``, ...).

    Raises:
        ConfigError: bad options, or existing work made with other settings (with ``resume``).
        VideoDecodeError: videos failed to decode (``on_error="fail"``); the rest is kept.
        BackendUnavailable: ``decode_device="cuda"`` without a GPU decoder, or Ray not installed.
    """
    cfg = make_config(
        data_dir,
        split,
        engine=engine,
        encoder=encoder,
        frames=frames,
        out_dir=out_dir,
        batch_size=batch_size,
        num_workers=num_workers,
        resume=resume,
        **options,
    )
    if engine == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BackendUnavailable("engine 'ray' needs Ray: pip install 'create-bench[ray]'") from None
    return run_extraction(cfg).feature_dir


__all__ = [
    "ENGINES",
    "META_KEY",
    "ExtractConfig",
    "ExtractReport",
    "PartWriter",
    "decode_video",
    "encode_videos",
    "encoder_info",
    "extract_features",
    "make_config",
    "merge_parts",
    "read_meta",
    "resolve_encoder",
    "run_extraction",
]

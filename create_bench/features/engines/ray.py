"""The ``ray`` engine (layer 3): Ray Data reads the Parquet shards, CPU tasks decode, a pool of
encoder actors (``num_gpus`` each when asked) encode and write part files."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from create_bench.errors import BackendUnavailable, ConfigError, DataError, ModelError, VideoDecodeError
from create_bench.features.config import DATA_COLUMNS, ExtractConfig
from create_bench.features.encoders import encode_videos, resolve_encoder
from create_bench.features.parts import PartWriter
from create_bench.features.plan import Plan, decode_video


def _ray_init(cfg: ExtractConfig) -> bool:
    """Connect to (or start) Ray; True when this call started it and must shut it down."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    address = cfg.ray_address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, **kwargs)
    else:
        if cfg.num_workers:
            kwargs["num_cpus"] = int(cfg.num_workers + max(cfg.encoder_cpus * cfg.num_encoders, 0))
        if cfg.object_store_mb:
            kwargs["object_store_memory"] = int(cfg.object_store_mb) << 20
        ray.init(**kwargs)
    return True


_DECODED_SCHEMA = pa.schema(
    [
        ("vid", pa.string()),
        ("frames", pa.large_binary()),
        ("shape", pa.list_(pa.int64())),
        ("error", pa.string()),
    ]
)


def _ray_decode(batch: pa.Table, cfg: ExtractConfig, done: frozenset[str]) -> pa.Table:
    """Ray CPU task: decode the policy's frames of each row not done (errors become rows)."""
    out: dict[str, list[Any]] = {"vid": [], "frames": [], "shape": [], "error": []}
    for row in batch.to_pylist():
        vid = row["vid"]
        if vid in done:
            continue
        try:
            frames = decode_video(row, cfg)
            out["frames"].append(np.ascontiguousarray(frames).tobytes())
            out["shape"].append(list(frames.shape))
            out["error"].append(None)
        except (VideoDecodeError, DataError) as e:
            out["frames"].append(None)
            out["shape"].append(None)
            out["error"].append(str(e))
        out["vid"].append(vid)
    return pa.Table.from_pydict(out, schema=_DECODED_SCHEMA)


class _RayEncoder:
    """Ray actor: encode decoded videos and write them as one part file per batch."""

    def __init__(self, cfg: ExtractConfig, parts_dir: str, meta: dict[str, Any]):
        device = cfg.device
        if cfg.num_gpus and device == "cpu":
            device = "cuda"
        self.cfg = cfg
        self.encoder = resolve_encoder(cfg.encoder, device)
        self.writer = PartWriter(Path(parts_dir), f"ray-{uuid.uuid4().hex[:6]}", meta)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        ok = [r for r in rows if r["error"] is None]
        frames = [np.frombuffer(r["frames"], dtype=np.uint8).reshape(r["shape"]) for r in ok]
        vids = [r["vid"] for r in ok]
        feats = encode_videos(self.encoder, frames, vids, self.cfg.encode_batch)
        self.writer.write(vids, feats)
        return pa.table({"vid": [r["vid"] for r in rows], "error": [r["error"] for r in rows]})


def run_ray(plan: Plan) -> tuple[list[str], dict[str, str]]:
    import ray
    import ray.data

    cfg = plan.cfg
    started = _ray_init(cfg)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        files = [str(p.resolve()) for p in plan.info.files(cfg.split)]
        ds = ray.data.read_parquet(files).select_columns(DATA_COLUMNS)
        # The decode tasks reserve memory (frames of a few long or large videos in flight) and so
        # differ in resources from the encoder actors: Ray then keeps them as separate CPU tasks
        # instead of fusing decoding into the actors, where it would run only as wide as the pool.
        decode_fn: Any = _ray_decode  # Ray's stubs do not type fn_kwargs-taking functions
        ds = ds.map_batches(
            decode_fn,
            batch_size=max(1, min(cfg.batch_size, 4)),
            batch_format="pyarrow",
            fn_kwargs={"cfg": cfg, "done": frozenset(plan.done)},
            compute=ray.data.TaskPoolStrategy(size=cfg.num_workers or None),
            num_cpus=1,
            memory=cfg.decode_memory_mb << 20,
        )
        ds = ds.map_batches(
            _RayEncoder,
            batch_size=cfg.batch_size,
            batch_format="pyarrow",
            fn_constructor_kwargs={"cfg": cfg, "parts_dir": str(plan.parts_dir), "meta": plan.meta},
            compute=ray.data.ActorPoolStrategy(size=cfg.num_encoders),
            num_cpus=cfg.encoder_cpus,
            num_gpus=cfg.num_gpus or None,
        )
        computed: list[str] = []
        failed: dict[str, str] = {}
        b: Any
        for b in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for vid, err in zip(b.column("vid").to_pylist(), b.column("error").to_pylist()):
                if err is None:
                    computed.append(vid)
                else:
                    failed[vid] = err
        return computed, failed
    except Exception as e:
        cause = _ray_cause(e)
        if cause is not None:
            raise cause from None
        raise
    finally:
        if started:
            ray.shutdown()


def _ray_cause(e: BaseException) -> BaseException | None:
    """The create-bench error inside a Ray task/actor failure, if any."""
    seen = 0
    cur: BaseException | None = e
    while cur is not None and seen < 10:
        if isinstance(cur, (ConfigError, BackendUnavailable, ModelError, DataError)):
            return cur
        cause = getattr(cur, "cause", None)
        if isinstance(cause, BaseException) and cause is not cur:
            cur = cause
        else:
            cur = cur.__cause__ or cur.__context__
        seen += 1
    return None

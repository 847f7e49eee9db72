"""Frozen-encoder feature extraction (layer 4): one pipeline, three engines, exact results.

``extract_features(data_dir, split, engine=...)`` reads a split's shards, picks frames with a named
policy (:mod:`create_bench.video.sampling`), decodes them (:func:`create_bench.video.decoding.decode`, or the
GPU backend of :mod:`create_bench.video.backends.nvdec`), runs a frozen per-frame encoder (the ALWIG options of
:mod:`create_bench.models.alwig.encoders`) and writes feature shards a dataset can use::

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

import contextlib
import dataclasses
import difflib
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from create_bench import __version__
from create_bench.data.build import FEATURE_PARQUET_OPTIONS
from create_bench.errors import BackendUnavailable, ConfigError, DataError, ModelError, VideoDecodeError
from create_bench.fsutil import atomic_path, atomic_write_json, sha256_file

log = logging.getLogger(__name__)

ENGINES = ("local", "ray", "torchrun")
#: Parquet file-metadata key holding the JSON description of a feature file.
META_KEY = b"create_bench.features"
FEATURE_SCHEMA = pa.schema([("vid", pa.string()), ("features", pa.list_(pa.list_(pa.float32())))])
#: Row-group size of the merged shards (the DatasetWriter's).
ROW_GROUP_SIZE = 64
#: How feature files are written. Dictionary-encoding float vectors (Parquet's default) only
#: wastes time (6x slower writes here) and space; byte-stream-split + zstd gives the smallest files
#: and the fastest reads of the options measured (plain, snappy, zstd).
PARQUET_OPTIONS = FEATURE_PARQUET_OPTIONS
_ENCODER_NAMES = ("fixed", "clip")
#: Columns the pipeline reads from the data shards.
_COLUMNS = ["vid", "num_frames", "fps", "video"]


# --------------------------------------------------------------------------- configuration


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


# --------------------------------------------------------------------------- encoders


def resolve_encoder(spec: str, device: str = "cpu") -> Any:
    """Build the frozen encoder named by ``spec`` (see :attr:`ExtractConfig.encoder`)."""
    from create_bench.models.alwig.encoders import build_encoder

    if spec in _ENCODER_NAMES and spec != "clip":
        return build_encoder(spec, device=device)
    if spec.startswith("clip:"):
        return build_encoder("clip", encoder_path=spec[5:], device=device)
    if spec.endswith(".py") or ".py:" in spec:
        from create_bench.registry import load_object

        cls = load_object(spec)
        enc = cls()
        if hasattr(enc, "to"):
            enc = enc.to(device) or enc
        return enc
    if Path(spec).expanduser().is_dir():
        return build_encoder("clip", encoder_path=str(Path(spec).expanduser()), device=device)
    close = difflib.get_close_matches(spec, ["fixed", "clip:"], n=1)
    raise ConfigError(
        f"unknown encoder {spec!r}: use 'fixed', 'clip:DIR', a CLIP checkpoint directory or 'file.py:Class'"
        + (f"; did you mean {close[0]!r}?" if close else "")
    )


def encoder_info(encoder: Any) -> dict[str, Any]:
    """Name, revision (what changes its output) and version of an encoder, for file metadata."""
    name = str(getattr(encoder, "name", type(encoder).__name__))
    revision = getattr(encoder, "signature", None) or getattr(encoder, "revision", None) or name
    version = getattr(encoder, "version", None)
    return {
        "encoder": name,
        "encoder_revision": str(revision),
        "encoder_version": None if version is None else str(version),
    }


def encode_videos(
    encoder: Any, frames: Sequence[np.ndarray], vids: Sequence[str], encode_batch: int = 1
) -> list[np.ndarray]:
    """Per-frame features ``float32 [T_i, D]`` of each video's ``uint8 [T_i, H, W, 3]`` frames."""
    import torch

    out: list[np.ndarray] = []
    i = 0
    while i < len(frames):
        j = i + 1
        while j < len(frames) and j - i < encode_batch and frames[j].shape == frames[i].shape:
            j += 1
        x = torch.from_numpy(np.stack(frames[i:j]))
        y = encoder(x)
        y = y.detach().float().cpu().numpy() if hasattr(y, "detach") else np.asarray(y, dtype=np.float32)
        if y.ndim != 3 or y.shape[:2] != x.shape[:2]:
            raise ModelError(
                f"encoder returned shape {tuple(y.shape)} for frames {tuple(x.shape)} (vid {vids[i]!r})"
            )
        for k in range(j - i):
            f = np.ascontiguousarray(y[k], dtype=np.float32)
            if not np.isfinite(f).all():
                raise ModelError(f"encoder produced non-finite features for vid {vids[i + k]!r}")
            out.append(f)
        i = j
    return out


# --------------------------------------------------------------------------- decoding one video


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

    return decode(src, indices, size=cfg.frame_size, ctx=_decode_ctx(cfg), vid=vid, timeout=cfg.timeout)


# --------------------------------------------------------------------------- part files


def _dumps(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True, ensure_ascii=False).encode()


def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The :data:`META_KEY` description of a feature file (``{}`` when absent)."""
    md = pq.read_schema(path).metadata or {}
    raw = md.get(META_KEY)
    return json.loads(raw) if raw else {}


def features_array(feats: Sequence[np.ndarray]) -> pa.ListArray:
    """``list<list<float32>>`` Arrow array of per-video ``[T_i, D]`` arrays, built without Python lists."""
    if not feats:
        return pa.array([], FEATURE_SCHEMA.field("features").type)
    frames = [np.ascontiguousarray(f, dtype=np.float32).reshape(len(f), -1) for f in feats]
    dims = {f.shape[1] for f in frames if len(f)}
    if len(dims) > 1:
        raise ModelError(f"videos have features of different widths {sorted(dims)}")
    d = dims.pop() if dims else 0
    lengths = np.array([len(f) for f in frames], dtype=np.int64)
    values = pa.array(np.concatenate([f.reshape(-1) for f in frames]), pa.float32())
    inner = pa.ListArray.from_arrays(pa.array(np.arange(int(lengths.sum()) + 1, dtype=np.int32) * d), values)
    outer_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(outer_offsets), inner)


def _write_features(
    path: Path, vids: Sequence[str], feats: Sequence[np.ndarray], meta: dict[str, Any]
) -> None:
    """Write one feature file atomically: nothing is visible under ``path`` until it is whole."""
    arrays = [pa.array(list(vids), pa.string()), features_array(feats)]
    table = pa.Table.from_arrays(arrays, schema=FEATURE_SCHEMA.with_metadata({META_KEY: _dumps(meta)}))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, **PARQUET_OPTIONS)


class PartWriter:
    """Writes part files ``<prefix>-<uuid>.parquet`` (rows sorted by vid) into the parts directory."""

    def __init__(self, parts_dir: Path, prefix: str, meta: dict[str, Any]):
        self.parts_dir, self.prefix, self.meta = parts_dir, prefix, meta
        self.written: list[Path] = []

    def write(self, vids: Sequence[str], feats: Sequence[np.ndarray]) -> Path | None:
        if not vids:
            return None
        path = self.parts_dir / f"{self.prefix}-{uuid.uuid4().hex[:12]}.parquet"
        order = sorted(range(len(vids)), key=lambda i: vids[i])  # sorted parts stream into the merge
        _write_features(path, [vids[i] for i in order], [feats[i] for i in order], self.meta)
        self.written.append(path)
        return path


# --------------------------------------------------------------------------- the run plan


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
class _Plan:
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


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return all(a.get(k) == b.get(k) for k in _KEY_FIELDS)


def _describe(meta: dict[str, Any]) -> str:
    return ", ".join(f"{k}={meta.get(k)!r}" for k in _KEY_FIELDS)


def _final_files(set_dir: Path, split: str) -> list[Path]:
    return sorted(set_dir.glob(f"{split}-*-of-*.parquet"))


def _read_vids(path: Path) -> list[str]:
    return pq.read_table(path, columns=["vid"]).column("vid").to_pylist()


def _scan_done(plan: _Plan, files: Iterable[Path], what: str) -> set[str]:
    done: set[str] = set()
    for f in files:
        try:
            meta = read_meta(f)
            vids = _read_vids(f)
        except (OSError, pa.ArrowException) as e:
            # Parts are renamed into place whole, so this is damage from outside; recompute.
            log.warning("ignoring unreadable %s %s: %s", what, f, e)
            continue
        if not _same_run(meta, plan.meta):
            if plan.cfg.resume:
                raise ConfigError(
                    f"{what} {f} was made with different settings ({_describe(meta)}); this run has "
                    f"({_describe(plan.meta)}). Use another feature set, or resume=False (--no-resume) to redo it."
                )
            continue
        done.update(vids)
    return done


def _prepare(cfg: ExtractConfig, encoder: Any) -> _Plan:
    from create_bench.data.shards import open_dataset, read_table

    info = open_dataset(cfg.data_dir)
    vids = read_table(cfg.data_dir, cfg.split, columns=["vid"]).column("vid").to_pylist()
    meta = _meta(cfg, info, encoder_info(encoder))
    set_name = _feature_set_name(cfg, meta)
    set_dir = cfg.out_root / "features" / set_name
    plan = _Plan(cfg, info, set_name, set_dir, set_dir / ".parts" / cfg.split, meta, vids, set())
    plan.parts_dir.mkdir(parents=True, exist_ok=True)
    if cfg.resume:
        plan.done = _scan_done(plan, _final_files(set_dir, cfg.split), "feature shard")
        plan.done |= _scan_done(plan, sorted(plan.parts_dir.glob("*.parquet")), "part file")
        plan.done &= set(vids)
    return plan


def _clean_tmp(parts_dir: Path, prefix: str = "") -> None:
    # Temp files of a killed writer (``.<name>.<random>.tmp``): never visible as parts; drop them.
    for p in parts_dir.glob(f".{prefix}*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# --------------------------------------------------------------------------- local / torchrun


def _decode_ctx(cfg: ExtractConfig) -> str:
    kind, _, num = cfg.decode_device.partition(":")
    return "cpu" if kind == "cpu" else f"gpu:{num or 0}"


def _local_videos(
    cfg: ExtractConfig, todo: set[str], rank: int | None, world_size: int | None, failed: dict[str, str]
) -> Iterator[tuple[str, np.ndarray]]:
    """(vid, real frames ``uint8 [T, H, W, 3]``) of this partition's videos that are not done yet.

    Decoding happens in ``num_workers`` DataLoader worker processes (:func:`make_loader`); the
    loader partitions rows by rank and worker with :func:`iter_batches`, so each video is decoded
    by exactly one process, and videos already done are passed over before decoding. Failures are
    added to ``failed`` when the pass ends.
    """
    from create_bench.loader import make_loader

    loader = make_loader(
        cfg.data_dir,
        cfg.split,
        frames=cfg.frames,
        # Videos of different stored sizes cannot share a batch tensor; part files still hold
        # batch_size videos (see _run_partition).
        batch_size=cfg.batch_size if cfg.frame_size else 1,
        num_workers=cfg.num_workers,
        size=cfg.frame_size,
        columns=(),
        ctx=_decode_ctx(cfg),
        on_error="skip",
        timeout=cfg.timeout,
        rank=rank,
        world_size=world_size,
        vids=todo,
    )
    for batch in loader:
        frames, mask = batch["frames"].numpy(), batch["frame_mask"].numpy()
        for b, vid in enumerate(batch["vid"]):
            yield vid, frames[b][mask[b]]  # drop the loader's padding: real frames only
    failed.update({s.vid: s.reason for s in loader.report.skipped})


def _run_partition(
    plan: _Plan, encoder: Any, prefix: str, rank: int | None, world_size: int | None
) -> tuple[list[str], dict[str, str]]:
    cfg = plan.cfg
    todo = set(plan.vids) - plan.done
    writer = PartWriter(plan.parts_dir, prefix, plan.meta)
    computed: list[str] = []
    failed: dict[str, str] = {}
    if not todo:
        return computed, failed
    with _encoder_threads(cfg):
        _encode_stream(plan, encoder, writer, todo, rank, world_size, computed, failed)
    return computed, failed


@contextlib.contextmanager
def _encoder_threads(cfg: ExtractConfig) -> Iterator[None]:
    """Leave the decode workers their cores: torch threads = CPUs - workers (unless set by the user).

    Oversubscribed OpenMP threads spin against the decoders: measured here, 2.4x slower extraction
    with torch's default 2 threads next to 1 decode worker on 2 cores.
    """
    import torch

    threads = cfg.encoder_threads
    if threads is None and cfg.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, (os.cpu_count() or 1) - cfg.num_workers)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encode_stream(
    plan: _Plan,
    encoder: Any,
    writer: PartWriter,
    todo: set[str],
    rank: int | None,
    world_size: int | None,
    computed: list[str],
    failed: dict[str, str],
) -> None:
    cfg = plan.cfg
    vids: list[str] = []
    frames: list[np.ndarray] = []

    def flush() -> None:
        writer.write(vids, encode_videos(encoder, frames, vids, cfg.encode_batch))
        computed.extend(vids)
        vids.clear()
        frames.clear()

    for vid, f in _local_videos(cfg, todo, rank, world_size, failed):
        vids.append(vid)
        frames.append(f)
        if len(vids) == cfg.batch_size:
            flush()
    if vids:
        flush()


def _env_rank(cfg: ExtractConfig) -> tuple[int, int]:
    rank = cfg.rank if cfg.rank is not None else int(os.environ.get("RANK", "0"))
    world = cfg.world_size if cfg.world_size is not None else int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise ConfigError(f"bad torchrun rank {rank} for world size {world}")
    return rank, world


def _per_rank_devices(cfg: ExtractConfig, local_rank: int) -> ExtractConfig:
    """Under torchrun, a bare ``cuda`` means this process's GPU, ``cuda:LOCAL_RANK``."""
    fix: dict[str, Any] = {
        k: f"cuda:{local_rank}" for k in ("device", "decode_device") if getattr(cfg, k) in ("cuda", "gpu")
    }
    return dataclasses.replace(cfg, **fix) if fix else cfg


def _marker(plan: _Plan, rank: int, world: int) -> Path:
    return plan.parts_dir / f"_done-r{rank:05d}-of-{world:05d}.json"


def _wait_for_ranks(plan: _Plan, world: int) -> None:
    deadline = time.monotonic() + plan.cfg.merge_timeout
    missing = list(range(world))
    while True:
        still = []
        for r in missing:
            m = _marker(plan, r, world)
            try:
                ok = _same_run(json.loads(m.read_text("utf-8")), plan.meta)
            except (OSError, ValueError):
                ok = False
            if not ok:
                still.append(r)
        missing = still
        if not missing:
            return
        if time.monotonic() > deadline:
            raise DataError(
                f"rank 0 waited {plan.cfg.merge_timeout:g} s for ranks {missing} of {world} to finish; "
                f"re-run them (finished work is kept) or merge later",
                path=str(plan.parts_dir),
            )
        time.sleep(0.5)


# --------------------------------------------------------------------------- ray


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


def _run_ray(plan: _Plan) -> tuple[list[str], dict[str, str]]:
    import ray
    import ray.data

    cfg = plan.cfg
    started = _ray_init(cfg)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        files = [str(p.resolve()) for p in plan.info.files(cfg.split)]
        ds = ray.data.read_parquet(files).select_columns(_COLUMNS)
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


# --------------------------------------------------------------------------- merge


#: Files merged at once; more sources are first merged in groups into sorted runs (bounded memory
#: and open files: about MERGE_FANIN row groups of features are held at a time).
MERGE_FANIN = 128
_Row = tuple[str, pa.RecordBatch, int]


def merge_parts(plan: _Plan) -> list[Path]:
    """Merge the split's parts and existing shards: one row per vid, ordered by vid.

    Every source is sorted by vid, so this is a streaming k-way merge: memory holds one row group
    per open source plus one output shard, whatever the split's size. Writes
    ``<set>/{split}-{i:05d}-of-{n:05d}.parquet`` (each atomically), registers them in the dataset
    manifest when the output root is the dataset, then removes stale shards and the parts.
    """
    cfg = plan.cfg
    sources = [
        f
        for f in _final_files(plan.set_dir, cfg.split) + sorted(plan.parts_dir.glob("*.parquet"))
        if _same_run(read_meta(f), plan.meta)  # others only with resume=False: stale work, dropped
    ]
    sources = _reduce_sources(plan, sources)
    unique: set[str] = set()
    for f in sources:
        unique.update(_read_vids(f))
    stray = sorted(unique - set(plan.vids))
    if stray:
        raise DataError(f"feature parts hold {len(stray)} vids that are not in the split, e.g. {stray[:5]}")
    n = max(1, -(-len(unique) // cfg.shard_size))
    rows = _merged_rows(sources)
    new_files, dim = [], None
    for i in range(n):
        path = plan.set_dir / f"{cfg.split}-{i:05d}-of-{n:05d}.parquet"
        chunk = [r for _, r in zip(range(cfg.shard_size), rows)]
        table = _rows_table(chunk)
        if dim is None and table.num_rows:
            dim = len(table.column("features")[0][0])
        _write_table(path, table, plan.meta)
        new_files.append(path)
    _register(plan, new_files, dim)
    for f in _final_files(plan.set_dir, cfg.split):
        if f not in new_files:
            f.unlink()
    for f in plan.parts_dir.iterdir():
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    with contextlib.suppress(OSError):
        plan.parts_dir.rmdir()
        plan.parts_dir.parent.rmdir()
    return new_files


def _iter_file(path: Path) -> Iterator[_Row]:
    pf = pq.ParquetFile(path)
    prev = None
    for batch in pf.iter_batches(batch_size=ROW_GROUP_SIZE):
        for k, vid in enumerate(batch.column(0).to_pylist()):
            if prev is not None and vid < prev:
                raise DataError("feature file is not sorted by vid", path=str(path), row=k)
            prev = vid
            yield vid, batch, k


def _merged_rows(sources: Sequence[Path]) -> Iterator[_Row]:
    """Rows of all (sorted) sources in vid order, the first of each vid only (sources in order)."""
    import heapq

    last: _Row | None = None
    differ: list[str] = []
    for row in heapq.merge(*(_iter_file(f) for f in sources), key=lambda r: r[0]):
        if last is not None and row[0] == last[0]:
            if row[1].column(1)[row[2]] != last[1].column(1)[last[2]]:
                differ.append(row[0])
            continue
        last = row
        yield row
    if differ:
        log.warning(
            "%d vids were encoded more than once with different results (kept the first): %s",
            len(differ),
            differ[:5],
        )


def _rows_table(rows: Sequence[_Row]) -> pa.Table:
    if not rows:
        return FEATURE_SCHEMA.empty_table()
    return pa.Table.from_batches([b.slice(k, 1) for _, b, k in rows]).combine_chunks()


def _reduce_sources(plan: _Plan, sources: list[Path]) -> list[Path]:
    """Merge groups of sources into sorted run files until at most MERGE_FANIN remain."""
    level = 0
    while len(sources) > MERGE_FANIN:
        runs = []
        for g in range(0, len(sources), MERGE_FANIN):
            group = sources[g : g + MERGE_FANIN]
            run = plan.parts_dir / f"run{level:02d}-{g // MERGE_FANIN:06d}-{uuid.uuid4().hex[:8]}.parquet"
            _write_rows(run, _merged_rows(group), plan.meta)
            # The run holds every row of its group (a valid part itself), so the group can go.
            for f in group:
                if f.parent == plan.parts_dir:
                    f.unlink()
            runs.append(run)
        sources, level = runs, level + 1
    return sources


def _write_rows(path: Path, rows: Iterator[_Row], meta: dict[str, Any]) -> None:
    """Stream rows into one file (atomically), a row group at a time."""
    schema = FEATURE_SCHEMA.with_metadata({META_KEY: _dumps(meta)})
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as w:
            while chunk := [r for _, r in zip(range(ROW_GROUP_SIZE), rows)]:
                w.write_table(_rows_table(chunk).cast(schema), row_group_size=ROW_GROUP_SIZE)


def _write_table(path: Path, table: pa.Table, meta: dict[str, Any]) -> None:
    table = table.cast(FEATURE_SCHEMA).replace_schema_metadata({META_KEY: _dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, **PARQUET_OPTIONS)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _register(plan: _Plan, files: list[Path], dim: int | None) -> None:
    """List the split's feature files in the dataset manifest (or a ``features.json`` index)."""
    cfg = plan.cfg
    root = cfg.out_root
    set_meta = {
        k: plan.meta[k]
        for k in ("encoder", "encoder_revision", "encoder_version", "frames", "frame_size", "decode")
    }
    if dim is not None:
        set_meta["dim"] = dim
    entries = [
        {
            "path": f.relative_to(root).as_posix(),
            "sha256": sha256_file(f),
            "rows": pq.ParquetFile(f).metadata.num_rows,
            "split": cfg.split,
            "kind": "features",
            "feature_set": plan.set_name,
        }
        for f in files
    ]
    in_dataset = root.resolve() == cfg.data_dir.resolve()
    index = root / "manifest.json" if in_dataset else plan.set_dir / "features.json"
    with _locked(root / "features" / ".lock"):
        if index.is_file():
            doc = json.loads(index.read_text("utf-8"))
        else:
            doc = {"dataset": plan.info.name, "dataset_fingerprint": plan.info.fingerprint, "files": []}
        old = doc.setdefault("feature_sets", {}).get(plan.set_name)
        if old and any(old.get(k) != set_meta.get(k) for k in ("encoder_revision", "frames", "frame_size")):
            other = [
                f
                for f in doc["files"]
                if f.get("feature_set") == plan.set_name and f.get("split") != cfg.split
            ]
            if other:
                raise ConfigError(
                    f"feature set {plan.set_name!r} already holds features of other settings ({old}); "
                    "choose another --feature-set"
                )
        doc["feature_sets"][plan.set_name] = set_meta
        doc["files"] = [
            f
            for f in doc["files"]
            if not (
                f.get("kind") == "features"
                and f.get("feature_set") == plan.set_name
                and f.get("split") == cfg.split
            )
        ] + entries
        atomic_write_json(index, doc)


# --------------------------------------------------------------------------- entry points


def run_extraction(cfg: ExtractConfig) -> ExtractReport:
    """Run one extraction (see the module doc) and report what it did."""
    t0 = time.perf_counter()
    if cfg.engine == "torchrun" and "LOCAL_RANK" in os.environ:
        cfg = _per_rank_devices(cfg, int(os.environ["LOCAL_RANK"]))
    if cfg.decode_device != "cpu":
        from create_bench.video.backends.nvdec import select_gpu_backend

        select_gpu_backend(cfg.decode_device)  # fail fast, before any engine starts
    encoder = resolve_encoder(cfg.encoder, cfg.device)
    plan = _prepare(cfg, encoder)
    report = ExtractReport(plan.set_dir, plan.set_name, cfg.split, cfg.engine, num_videos=len(plan.vids))
    report.reused = len(plan.done)
    merge = True
    if cfg.engine == "local":
        _clean_tmp(plan.parts_dir)
        report.computed, report.failed = _run_partition(plan, encoder, "local", None, None)
    elif cfg.engine == "ray":
        _clean_tmp(plan.parts_dir)
        report.computed, report.failed = _run_ray(plan)
    else:
        rank, world = _env_rank(cfg)
        prefix = f"r{rank:05d}"
        _clean_tmp(plan.parts_dir, prefix)
        report.computed, report.failed = _run_partition(plan, encoder, prefix, rank, world)
        if not report.failed or cfg.on_error == "skip":
            atomic_write_json(_marker(plan, rank, world), {**plan.meta, "rank": rank, "world_size": world})
        merge = rank == 0
        if merge:
            _wait_for_ranks(plan, world)
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

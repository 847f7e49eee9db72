"""Reading datasets (layer 2): open, project, stream and partition the shards.

Partitioning: a split is the concatenation of its row groups (in manifest order, or in an order
shuffled by ``shuffle_seed + epoch``). With P = world_size x num_workers partitions, partition
p = rank x num_workers + worker gets the contiguous rows [p*N//P, (p+1)*N//P) of that order, so every
row is read exactly once per epoch, no row is padded or repeated, and each partition reads only
the row groups it needs (video bytes are never read twice). With a seed, rows are also shuffled
within each row group.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from create_bench.errors import DataError, ManifestError


@dataclass
class DatasetInfo:
    path: Path
    manifest: dict[str, Any]
    splits: dict[str, list[Path]] = field(default_factory=dict)
    feature_sets: dict[str, dict[str, list[Path]]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", self.path.name))

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["fingerprint"])

    @property
    def categories(self) -> list[str]:
        return list(self.manifest.get("categories", []))

    def num_rows(self, split: str) -> int:
        self.files(split)
        return int(self.manifest["splits"][split])

    def files(self, split: str) -> list[Path]:
        if split not in self.splits:
            raise DataError(f"dataset {self.path} has no split {split!r} (has: {', '.join(self.splits)})")
        return self.splits[split]

    def feature_files(self, feature_set: str, split: str) -> list[Path]:
        files = self.feature_sets.get(feature_set, {}).get(split)
        if not files:
            have = ", ".join(self.feature_sets) or "none"
            raise DataError(
                f"dataset {self.path} has no feature set {feature_set!r} for split {split!r} (sets: {have})"
            )
        return files


def open_dataset(path: str | os.PathLike[str]) -> DatasetInfo:
    """Read ``manifest.json`` and check that every listed file is there (hashes: see ``validate``)."""
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.is_file():
        raise ManifestError("not a create-bench dataset: manifest.json missing", path=str(mpath))
    try:
        manifest = json.loads(mpath.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest.json is not valid JSON: {exc}", path=str(mpath)) from exc
    for key_ in ("files", "splits", "fingerprint", "schema_version"):
        if key_ not in manifest:
            raise ManifestError(f"manifest.json lacks {key_!r}", path=str(mpath))
    info = DatasetInfo(path=root, manifest=manifest)
    for entry in manifest["files"]:
        f = root / entry["path"]
        if not f.is_file():
            raise ManifestError("shard listed in manifest.json is missing", path=str(f))
        kind = entry.get("kind", "data")
        if kind == "data":
            info.splits.setdefault(entry["split"], []).append(f)
        elif kind == "features":
            info.feature_sets.setdefault(entry["feature_set"], {}).setdefault(entry["split"], []).append(f)
    return info


def _check_columns(files: Sequence[Path], columns: Sequence[str] | None) -> list[str] | None:
    if columns is None:
        return None
    names = pq.read_schema(files[0]).names
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"unknown column(s) {missing} (have: {names})", path=str(files[0]))
    return list(columns)


def read_table(path: str | os.PathLike[str], split: str, columns: Sequence[str] | None = None) -> pa.Table:
    """The whole split as one Arrow table, projected to ``columns`` (text-only reads skip video bytes)."""
    info = open_dataset(path)
    files = info.files(split)
    cols = _check_columns(files, columns)
    tables = [pq.read_table(f, columns=cols) for f in files]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_features(path: str | os.PathLike[str], feature_set: str, split: str) -> dict[str, np.ndarray]:
    """vid -> float32 [T, D] for one feature set and split."""
    info = open_dataset(path)
    out: dict[str, np.ndarray] = {}
    for f in info.feature_files(feature_set, split):
        t = pq.read_table(f)
        for vid, feats in zip(t.column("vid").to_pylist(), t.column("features").to_pylist()):
            out[vid] = np.asarray(feats, dtype=np.float32)
    return out


@dataclass(frozen=True)
class RowGroup:
    """One row group of one Parquet file (the unit every reader here partitions)."""

    file: Path
    row_group: int
    rows: int


def row_groups(files: Sequence[str | Path]) -> list[RowGroup]:
    """The row groups of ``files``, in file order (footers only; no data is read)."""
    units = []
    for f in files:
        md = pq.ParquetFile(f).metadata
        units += [RowGroup(Path(f), i, md.row_group(i).num_rows) for i in range(md.num_row_groups)]
    return units


def _resolve_partition(
    rank: int | None, world_size: int | None, worker_id: int | None, num_workers: int | None
) -> tuple[int, int]:
    """(partition index, partition count) from explicit values, torch.distributed and the DataLoader worker."""
    if rank is None or world_size is None:
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world_size = dist.get_world_size() if world_size is None else world_size
        except ImportError:  # torch is optional for the data layer
            pass
    if worker_id is None or num_workers is None:
        try:
            from torch.utils.data import get_worker_info

            wi = get_worker_info()
            if wi is not None:
                worker_id = wi.id if worker_id is None else worker_id
                num_workers = wi.num_workers if num_workers is None else num_workers
        except ImportError:
            pass
    rank, world_size = rank or 0, world_size or 1
    worker_id, num_workers = worker_id or 0, num_workers or 1
    if not (0 <= rank < world_size and 0 <= worker_id < num_workers):
        raise DataError(f"bad partition: rank {rank}/{world_size}, worker {worker_id}/{num_workers}")
    return rank * num_workers + worker_id, world_size * num_workers


def iter_batches(
    path: str | os.PathLike[str],
    split: str,
    columns: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    shuffle_seed: int | None = None,
    epoch: int = 0,
    rank: int | None = None,
    world_size: int | None = None,
    worker_id: int | None = None,
    num_workers: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream one partition of a split as record batches of at most ``batch_size`` rows."""
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    info = open_dataset(path)
    files = info.files(split)
    cols = _check_columns(files, columns)
    units = row_groups(files)
    rng = None
    if shuffle_seed is not None:
        rng = np.random.default_rng([shuffle_seed, epoch])
        units = [units[i] for i in rng.permutation(len(units))]
    p, n_parts = _resolve_partition(rank, world_size, worker_id, num_workers)
    total = sum(u.rows for u in units)
    lo, hi = p * total // n_parts, (p + 1) * total // n_parts
    pending: list[pa.Table] = []
    pending_rows = 0
    offset = 0
    open_files: dict[Path, pq.ParquetFile] = {}
    for u in units:
        start, end = offset, offset + u.rows
        offset = end
        if end <= lo or start >= hi:
            continue
        pf = open_files.get(u.file) or open_files.setdefault(u.file, pq.ParquetFile(u.file))
        t = pf.read_row_group(u.row_group, columns=cols)
        a, b = max(lo, start) - start, min(hi, end) - start
        t = t.slice(a, b - a)
        if rng is not None:
            t = t.take(pa.array(rng.permutation(t.num_rows)))
        pending.append(t)
        pending_rows += t.num_rows
        while pending_rows >= batch_size:
            merged = pa.concat_tables(pending).combine_chunks()
            yield from merged.slice(0, batch_size).to_batches(max_chunksize=batch_size)
            rest = merged.slice(batch_size)
            pending, pending_rows = ([rest] if rest.num_rows else []), rest.num_rows
    if pending_rows:
        yield from pa.concat_tables(pending).combine_chunks().to_batches(max_chunksize=batch_size)


def iter_rows(
    path: str | os.PathLike[str], split: str, columns: Sequence[str] | None = None, **kw: Any
) -> Iterator[dict[str, Any]]:
    """Like ``iter_batches`` but yields one dict per row."""
    for batch in iter_batches(path, split, columns, **kw):
        yield from batch.to_pylist()


def video_source(row: dict[str, Any], dataset_dir: str | os.PathLike[str]) -> bytes | Path:
    """The embedded bytes of a row's video, or its path (relative paths resolve against the dataset)."""
    video = row.get("video") or {}
    if video.get("bytes"):
        return bytes(video["bytes"])
    p = video.get("path")
    if not p:
        raise DataError("row has neither video bytes nor path", vid=row.get("vid"))
    path = Path(p)
    return path if path.is_absolute() else Path(dataset_dir) / path

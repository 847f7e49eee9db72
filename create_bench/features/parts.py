"""Feature files (layer 3): the Parquet format ``create-bench extract`` writes and the dataset's
feature readers read (:func:`create_bench.data.shards.read_features`), part files, and the streaming
k-way merge of sorted files.

Columns ``vid``, ``features`` (``list<list<float32>>``, a video's ``[T, D]``), the JSON run description
under the file-metadata key :data:`META_KEY`.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from create_bench.data.build import FEATURE_PARQUET_OPTIONS
from create_bench.errors import DataError, ModelError
from create_bench.fsutil import atomic_path

log = logging.getLogger(__name__)


#: Parquet file-metadata key holding the JSON description of a feature file.
META_KEY = b"create_bench.features"


FEATURE_SCHEMA = pa.schema([("vid", pa.string()), ("features", pa.list_(pa.list_(pa.float32())))])


#: Row-group size of the merged shards (the DatasetWriter's).
ROW_GROUP_SIZE = 64


#: How feature files are written. Dictionary-encoding float vectors (Parquet's default) only
#: wastes time (6x slower writes here) and space; byte-stream-split + zstd gives the smallest files
#: and the fastest reads of the options measured (plain, snappy, zstd).
PARQUET_OPTIONS = FEATURE_PARQUET_OPTIONS


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


Row = tuple[str, pa.RecordBatch, int]


def _iter_file(path: Path) -> Iterator[Row]:
    pf = pq.ParquetFile(path)
    prev = None
    for batch in pf.iter_batches(batch_size=ROW_GROUP_SIZE):
        for k, vid in enumerate(batch.column(0).to_pylist()):
            if prev is not None and vid < prev:
                raise DataError("feature file is not sorted by vid", path=str(path), row=k)
            prev = vid
            yield vid, batch, k


def merged_rows(sources: Sequence[Path]) -> Iterator[Row]:
    """Rows of all (sorted) sources in vid order, the first of each vid only (sources in order)."""
    import heapq

    last: Row | None = None
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


def rows_table(rows: Sequence[Row]) -> pa.Table:
    if not rows:
        return FEATURE_SCHEMA.empty_table()
    return pa.Table.from_batches([b.slice(k, 1) for _, b, k in rows]).combine_chunks()


def write_rows(path: Path, rows: Iterator[Row], meta: dict[str, Any]) -> None:
    """Stream rows into one file (atomically), a row group at a time."""
    schema = FEATURE_SCHEMA.with_metadata({META_KEY: _dumps(meta)})
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, **PARQUET_OPTIONS) as w:
            while chunk := [r for _, r in zip(range(ROW_GROUP_SIZE), rows)]:
                w.write_table(rows_table(chunk).cast(schema), row_group_size=ROW_GROUP_SIZE)


def write_table(path: Path, table: pa.Table, meta: dict[str, Any]) -> None:
    table = table.cast(FEATURE_SCHEMA).replace_schema_metadata({META_KEY: _dumps(meta)})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP_SIZE, **PARQUET_OPTIONS)

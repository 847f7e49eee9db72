"""``create-bench validate DIR``: re-check a dataset against its manifest and the shard contract."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq

from create_bench.data.build import fingerprint_of
from create_bench.data.fingerprint import METHOD as FINGERPRINT_METHOD
from create_bench.data.fingerprint import content_fingerprint, row_digest
from create_bench.data.schema import arrow_schema, validate_row
from create_bench.data.shards import open_dataset
from create_bench.errors import DataError, ManifestError
from create_bench.fsutil import sha256_file


def validate_dataset(path: str | os.PathLike[str], *, rows: bool = True) -> dict[str, int]:
    """Check hashes, schema, row counts, unique ids and (with ``rows``) every row. Returns rows per
    split. Raises ManifestError listing every problem found."""
    info = open_dataset(path)
    root = Path(path)
    problems: list[str] = []
    cats = info.categories
    expected = arrow_schema(cats).remove_metadata()
    counts: dict[str, int] = {}
    seen: dict[str, str] = {}
    content = info.manifest.get("fingerprint_method") == FINGERPRINT_METHOD
    digests: list[tuple[str, bytes]] = []
    for entry in info.manifest["files"]:
        f = root / entry["path"]
        if sha256_file(f) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from manifest.json")
            continue
        if entry.get("kind") == "file":
            continue
        pf = pq.ParquetFile(f)
        if pf.metadata.num_rows != entry["rows"]:
            problems.append(f"{entry['path']}: {pf.metadata.num_rows} rows, manifest says {entry['rows']}")
        if entry.get("kind", "data") != "data":
            continue
        if not pf.schema_arrow.remove_metadata().equals(expected):
            problems.append(f"{entry['path']}: schema differs from the shard contract")
            continue
        counts[entry["split"]] = counts.get(entry["split"], 0) + pf.metadata.num_rows
        cols = None if rows or content else ["vid", "split"]
        table = pf.read(columns=cols)
        for i, row in enumerate(table.to_pylist()):
            vid = row["vid"]
            if row["split"] != entry["split"]:
                problems.append(f"{entry['path']} row {i} vid {vid!r}: split column {row['split']!r}")
            if vid in seen:
                problems.append(f"{entry['path']} row {i}: duplicate vid {vid!r} (also in {seen[vid]})")
            seen[vid] = entry["path"]
            if content:
                try:
                    digests.append(row_digest(row, root))
                except DataError as exc:
                    problems.append(str(exc))
            if rows:
                try:
                    validate_row(row, cats, path=entry["path"], index=i)
                except DataError as exc:
                    problems.append(str(exc))
    for split, n in info.manifest["splits"].items():
        if counts.get(split) != n:
            problems.append(f"split {split}: {counts.get(split, 0)} rows in shards, manifest says {n}")
    if content:
        recomputed = content_fingerprint(
            digests, schema_version=int(info.manifest["schema_version"]), categories=cats
        )
        if recomputed != info.fingerprint:
            problems.append(f"content fingerprint {recomputed} differs from manifest.json's {info.fingerprint}")
    elif fingerprint_of(info.manifest) != info.fingerprint:
        problems.append("manifest fingerprint does not match its file list")
    if problems:
        shown = "\n  ".join(problems[:100])
        raise ManifestError(f"dataset {root} failed validation ({len(problems)} problems):\n  {shown}")
    return counts

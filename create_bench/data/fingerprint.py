"""The dataset fingerprint (layer 2): a hash of the logical content, never of Parquet file bytes.

Every row contributes a digest of its values (every shard column; floats as the float32 the shard
stores; the video by the sha256 of its bytes only, so an embedded video and the same file stored by
path count as the same content), and the fingerprint hashes
the schema version, the category names and the row digests in ``vid`` order. So it is the same for
the same data whatever wrote the Parquet files (pyarrow version, shard size, row-group size,
compression) and changes when any value or any video byte changes. Feature sets are derived data
and do not enter it. ``create-bench validate`` recomputes it from the shards.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.data.schema import COLUMNS
from create_bench.errors import DataError

#: Name of the method, stored in the manifest (``fingerprint_method``).
METHOD = "content-v1"
_FLOAT32_COLUMNS = ("fps", "duration")


def _video_sha256(video: dict[str, Any], root: Path) -> str:
    """sha256 of the video's bytes (embedded, or the file at its path); a path that does not
    resolve to a file enters as ``missing:<path>`` (a dataset whose videos are not shipped, e.g.
    features-only, still has a defined fingerprint, and a video that goes missing changes it)."""
    data = video.get("bytes")
    if data:
        return hashlib.sha256(data).hexdigest()
    path = video.get("path")
    if not path:  # features-only row (no video file): the video contributes an empty digest
        return ""
    p = Path(path) if os.path.isabs(path) else root / path
    if not p.is_file():
        return f"missing:{path}"
    try:
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
    except OSError as exc:
        raise DataError(f"cannot read video file for the fingerprint: {exc.strerror}", path=str(p)) from exc
    return h.hexdigest()


def _canonical_float(x: Any) -> str:
    return repr(float(np.float32(x)))  # the value the float32 column stores, however it was given


def row_digest(row: dict[str, Any], root: str | os.PathLike[str]) -> tuple[str, bytes]:
    """``(vid, digest)`` of one shard row; ``root`` resolves relative video paths."""
    vid = str(row["vid"])
    values: dict[str, Any] = {}
    for col in COLUMNS:
        if col == "video":
            values[col] = _video_sha256(row.get("video") or {}, Path(root))
        elif col in _FLOAT32_COLUMNS:
            values[col] = _canonical_float(row.get(col) or 0.0)
        else:
            values[col] = row.get(col)
    omega = row.get("title_omega")
    if omega is not None:  # optional (schema 2): enters only when present, so datasets without keep theirs
        values["title_omega"] = [[_canonical_float(x) for x in t] for t in omega]
    payload = json.dumps(values, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return vid, hashlib.sha256(payload.encode("utf-8")).digest()


def content_fingerprint(
    digests: Iterable[tuple[str, bytes]], *, schema_version: int, categories: list[str]
) -> str:
    """The 16-hex-digit fingerprint of rows given as ``(vid, digest)`` pairs, in any order."""
    h = hashlib.sha256()
    header = {"method": METHOD, "schema_version": schema_version, "categories": list(categories)}
    h.update(json.dumps(header, ensure_ascii=False, sort_keys=True).encode("utf-8"))
    for vid, digest in sorted(digests):
        h.update(vid.encode("utf-8") + b"\0" + digest)
    return h.hexdigest()[:16]


def fingerprint_dataset(path: str | os.PathLike[str]) -> str:
    """Recompute the content fingerprint of a dataset from its shards."""
    import pyarrow.parquet as pq

    from create_bench.data.shards import open_dataset

    info = open_dataset(path)
    digests: list[tuple[str, bytes]] = []
    for files in info.splits.values():
        for f in files:
            pf = pq.ParquetFile(f)
            for i in range(pf.num_row_groups):
                for row in pf.read_row_group(i).to_pylist():
                    digests.append(row_digest(row, info.path))
    return content_fingerprint(
        digests, schema_version=int(info.manifest["schema_version"]), categories=info.categories
    )

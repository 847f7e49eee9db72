"""Writing datasets (layer 2): the shard writer every producer uses (the sample generator and the
importer of the official CREATE release), so every dataset has the same layout.

Layout::

    DIR/data/{split}-{i:05d}-of-{n:05d}.parquet
    DIR/features/{set}/{split}-{i:05d}-of-{n:05d}.parquet   (optional; columns vid, features)
    DIR/README.md       (HF configs YAML)
    DIR/manifest.json   (files + sha256 + rows, schema version, generator, categories, fingerprint)

Everything is written into a temporary directory beside DIR and renamed into place at the end, so
a failed or interrupted build leaves no partial shard behind. DIR is replaced only when nothing
would be lost: it must be missing, empty, or a previous output of the same producer holding only
files its manifest lists (checked before any work and again before the rename), and it may never
be, hold or lie inside an input.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from create_bench import SHARD_SCHEMA_VERSION, __version__
from create_bench.data.fingerprint import METHOD as FINGERPRINT_METHOD
from create_bench.data.fingerprint import content_fingerprint, row_digest
from create_bench.data.hf import render_readme
from create_bench.data.schema import arrow_schema, validate_row
from create_bench.errors import DataError
from create_bench.fsutil import (
    atomic_write_json,
    atomic_write_text,
    check_output_dir,
    public_mode,
    sha256_file,
)

ROW_GROUP_SIZE = 64
FEATURE_SCHEMA = pa.schema([("vid", pa.string()), ("features", pa.list_(pa.list_(pa.float32())))])


#: Parquet options for feature shards: no dictionary on floats (slow and larger), byte-stream-split.
FEATURE_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": ["vid"],
    "column_encoding": {"features.list.element.list.element": "BYTE_STREAM_SPLIT"},
    "write_statistics": False,
}
_DATA_PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "write_statistics": False}


def _write_parquet(path: Path, table: pa.Table, options: dict[str, Any] | None = None) -> None:
    pq.write_table(table, path, row_group_size=ROW_GROUP_SIZE, **(options or _DATA_PARQUET_OPTIONS))


class _Spool:
    """Rows of one split (or one feature set's split), spilled to part files every ``shard_size`` rows."""

    def __init__(
        self,
        tmp: Path,
        prefix: str,
        schema: pa.Schema,
        shard_size: int,
        options: dict[str, Any] | None = None,
    ):
        self.tmp, self.prefix, self.schema, self.shard_size = tmp, prefix, schema, shard_size
        self.options = options
        self.rows: list[dict[str, Any]] = []
        self.parts: list[tuple[Path, int]] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        part = self.tmp / f"{self.prefix}.part{len(self.parts):05d}"
        part.parent.mkdir(parents=True, exist_ok=True)
        _write_parquet(part, pa.Table.from_pylist(self.rows, schema=self.schema), self.options)
        self.parts.append((part, len(self.rows)))
        self.rows = []

    def finish(self, dest_dir: Path, split: str) -> list[tuple[Path, int]]:
        self.flush()
        n = len(self.parts)
        out = []
        for i, (part, rows) in enumerate(self.parts):
            final = dest_dir / f"{split}-{i:05d}-of-{n:05d}.parquet"
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, final)
            out.append((final, rows))
        return out


class DatasetWriter:
    """Write a dataset in the shard layout, atomically.

    Example::

        with DatasetWriter(out, name="create-sample", categories=names, generator={...}) as w:
            for row in rows:
                w.add(row)
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        name: str,
        categories: list[str],
        shard_size: int = 1000,
        generator: dict[str, Any] | None = None,
        readme_body: str = "",
        extra_manifest: dict[str, Any] | None = None,
        inputs: Sequence[str | os.PathLike[str]] = (),
    ):
        if shard_size < 1:
            raise DataError(f"shard_size must be >= 1, got {shard_size}")
        self.out_dir = Path(out_dir)
        self.name, self.categories, self.shard_size = name, list(categories), shard_size
        self.generator = generator or {}
        self.readme_body, self.extra_manifest = readme_body, extra_manifest or {}
        self.schema = arrow_schema(self.categories)
        self._tmp: Path | None = None
        self._spools: dict[str, _Spool] = {}
        self._feature_spools: dict[tuple[str, str], _Spool] = {}
        self._vids: dict[str, str] = {}
        self._feature_meta: dict[str, dict[str, Any]] = {}
        self._files: list[str] = []
        self._digests: list[tuple[str, bytes]] = []
        self._pending_digests: list[dict[str, Any]] = []
        self.inputs = list(inputs)

    def check_out_dir(self) -> None:
        """Raise OutputError unless writing ``out_dir`` loses nothing (see the module doc)."""
        producer = self.generator.get("name") or self.name
        check_output_dir(
            self.out_dir,
            owns=previous_output(self.out_dir, producer),
            inputs=self.inputs,
            what=f"{producer!r}",
        )

    # -- context management -------------------------------------------------------------------
    def __enter__(self) -> DatasetWriter:
        self.check_out_dir()
        self.out_dir.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(
            tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", suffix=".tmp", dir=self.out_dir.parent)
        )
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def abort(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    # -- rows -----------------------------------------------------------------------------------
    def add(self, row: dict[str, Any], *, source: str | None = None, index: int | None = None) -> None:
        """Validate and add one row. Raises DataError (naming source file/row/vid) on a bad row."""
        if self._tmp is None:
            raise DataError("DatasetWriter used outside its 'with' block")
        row = validate_row(row, self.categories, path=source, index=index)
        vid = row["vid"]
        if vid in self._vids:
            raise DataError(
                f"duplicate vid (already in split {self._vids[vid]!r})", path=source, row=index, vid=vid
            )
        self._vids[vid] = row["split"]
        if (row["video"] or {}).get("bytes"):
            self._digests.append(row_digest(row, self._tmp))
        else:  # a path: hashed at close, when every file added with add_file is in place
            self._pending_digests.append({k: v for k, v in row.items()})
        split = row["split"]
        if split not in self._spools:
            self._spools[split] = _Spool(self._tmp / "data", split, self.schema, self.shard_size)
        self._spools[split].add(row)

    def add_features(
        self,
        feature_set: str,
        split: str,
        vid: str,
        features: np.ndarray,
        *,
        meta: dict[str, Any] | None = None,
    ) -> None:
        """Add per-frame features [T, D] of one video to feature set ``feature_set``."""
        if self._tmp is None:
            raise DataError("DatasetWriter used outside its 'with' block")
        arr = np.asarray(features, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or not np.isfinite(arr).all():
            raise DataError(f"features must be a finite [T, D] array, got shape {arr.shape}", vid=vid)
        key = (feature_set, split)
        if key not in self._feature_spools:
            self._feature_spools[key] = _Spool(
                self._tmp / "features" / feature_set,
                split,
                FEATURE_SCHEMA,
                self.shard_size,
                FEATURE_PARQUET_OPTIONS,
            )
        self._feature_spools[key].add({"vid": vid, "features": arr.tolist()})
        info = self._feature_meta.setdefault(feature_set, {"dim": int(arr.shape[1])})
        if info["dim"] != arr.shape[1]:
            raise DataError(f"feature dim {arr.shape[1]} differs from the set's {info['dim']}", vid=vid)
        if meta:
            info.update(meta)

    def add_file(self, rel_path: str, data: bytes) -> None:
        """Add a file (e.g. ``videos/<vid>.mp4`` for path storage) that appears with the shards,
        listed with its sha256 in the manifest (kind ``file``)."""
        if self._tmp is None:
            raise DataError("DatasetWriter used outside its 'with' block")
        rel = Path(rel_path)
        if rel.is_absolute() or ".." in rel.parts or rel.parts[0] in ("data", "features"):
            raise DataError(f"bad file path {rel_path!r}: must be relative, outside data/ and features/")
        dest = self._tmp / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        self._files.append(rel.as_posix())

    @property
    def num_rows(self) -> dict[str, int]:
        return {s: sum(r for _, r in sp.parts) + len(sp.rows) for s, sp in self._spools.items()}

    # -- finishing ------------------------------------------------------------------------------
    def close(self) -> Path:
        if self._tmp is None:
            raise DataError("DatasetWriter already closed")
        tmp = self._tmp
        try:
            files: list[dict[str, Any]] = []
            splits: dict[str, int] = {}
            for split in sorted(self._spools, key=_split_order):
                for path, rows in self._spools[split].finish(tmp / "data", split):
                    files.append(_file_entry(tmp, path, rows, split=split, kind="data"))
                    splits[split] = splits.get(split, 0) + rows
            for (fset, split), spool in sorted(self._feature_spools.items()):
                for path, rows in spool.finish(tmp / "features" / fset, split):
                    files.append(_file_entry(tmp, path, rows, split=split, kind="features", feature_set=fset))
            for rel in self._files:
                files.append(_file_entry(tmp, tmp / rel, 0, kind="file"))
            for p in tmp.rglob("*.part*"):
                p.unlink()
            manifest = {
                "schema_version": SHARD_SCHEMA_VERSION,
                "name": self.name,
                "created_by": f"create-bench {__version__}",
                "generator": self.generator,
                "categories": self.categories,
                "splits": splits,
                "feature_sets": self._feature_meta,
                "files": files,
                **self.extra_manifest,
            }
            self._digests += [row_digest(r, tmp) for r in self._pending_digests]
            manifest["fingerprint_method"] = FINGERPRINT_METHOD
            manifest["fingerprint"] = content_fingerprint(
                self._digests, schema_version=SHARD_SCHEMA_VERSION, categories=self.categories
            )
            num_bytes: dict[str, int] = {}
            for f in files:
                if f["kind"] == "data":
                    num_bytes[f["split"]] = num_bytes.get(f["split"], 0) + (tmp / f["path"]).stat().st_size
            atomic_write_text(
                tmp / "README.md", render_readme(self.name, splits, num_bytes, body=self.readme_body)
            )
            atomic_write_json(tmp / "manifest.json", manifest)
            public_mode(tmp, directory=True)
            self.check_out_dir()  # again: something may have appeared there while we worked
            old = None
            if self.out_dir.exists():
                old = self.out_dir.with_name(f".{self.out_dir.name}.old-{os.getpid()}")
                os.replace(self.out_dir, old)
            os.replace(tmp, self.out_dir)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            self._tmp = None
        return self.out_dir


def _split_order(split: str) -> tuple[int, str]:
    order = {"train": 0, "validation": 1, "test": 2}
    return (order.get(split, 3), split)


def _file_entry(root: Path, path: Path, rows: int, **extra: Any) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "sha256": sha256_file(path), "rows": rows, **extra}


def previous_output(out_dir: Path, producer: str) -> Callable[[Path], bool]:
    """Which entries of ``out_dir`` a new output of ``producer`` may replace: those of a dataset
    whose manifest names ``producer`` and lists every file under them (plus its manifest, README
    and build report). Anything else (another producer's dataset, a file the user added) is not."""
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text("utf-8"))
        ours = (manifest.get("generator") or {}).get("name") or manifest.get("name")
        listed = {f["path"] for f in manifest["files"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return lambda p: False
    if ours != producer:
        return lambda p: False
    root = out_dir.resolve()

    def owns(p: Path) -> bool:
        p = root / p.name
        if p.name in ("manifest.json", "README.md", "build_report.json") and p.is_file():
            return True
        if not p.is_dir() or p.is_symlink():
            return p.name in listed
        inner = [q for q in p.rglob("*") if not q.is_dir()]
        return bool(inner) and all(q.relative_to(root).as_posix() in listed for q in inner)

    return owns


def fingerprint_of(manifest: dict[str, Any]) -> str:
    """The file-list fingerprint of manifests before ``fingerprint_method`` (sha256 over the schema
    version, categories and file hashes); kept so that validate can check old datasets."""
    payload = json.dumps(
        {
            "schema_version": manifest["schema_version"],
            "categories": manifest["categories"],
            "files": sorted(
                (f["path"], f["sha256"], f["rows"])
                for f in manifest["files"]
                if f.get("kind") in ("data", "file")
            ),
        },
        ensure_ascii=False,
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def write_rows(
    out_dir: str | os.PathLike[str],
    rows: Iterable[dict[str, Any]],
    *,
    name: str,
    categories: list[str],
    **kw: Any,
) -> Path:
    """Convenience: write an iterable of rows as a dataset."""
    with DatasetWriter(out_dir, name=name, categories=categories, **kw) as w:
        for i, row in enumerate(rows):
            w.add(row, index=i)
    return Path(out_dir)

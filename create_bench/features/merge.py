"""The end of an extraction run (layer 3): merge parts and existing shards into the split's
feature shards and list them in the dataset manifest (or a ``features.json`` index)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from create_bench.errors import ConfigError, DataError
from create_bench.features.parts import merged_rows, read_meta, rows_table, write_rows, write_table
from create_bench.features.plan import Plan, final_files, read_vids, same_run
from create_bench.fsutil import atomic_write_json, sha256_file

#: Files merged at once; more sources are first merged in groups into sorted runs (bounded memory
#: and open files: about MERGE_FANIN row groups of features are held at a time).
MERGE_FANIN = 128


def merge_parts(plan: Plan) -> list[Path]:
    """Merge the split's parts and existing shards: one row per vid, ordered by vid.

    Every source is sorted by vid, so this is a streaming k-way merge: memory holds one row group
    per open source plus one output shard, whatever the split's size. Writes
    ``<set>/{split}-{i:05d}-of-{n:05d}.parquet`` (each atomically), registers them in the dataset
    manifest when the output root is the dataset, then removes stale shards and the parts.
    """
    cfg = plan.cfg
    sources = [
        f
        for f in final_files(plan.set_dir, cfg.split) + sorted(plan.parts_dir.glob("*.parquet"))
        if same_run(read_meta(f), plan.meta)  # others only with resume=False: stale work, dropped
    ]
    sources = _reduce_sources(plan, sources)
    unique: set[str] = set()
    for f in sources:
        unique.update(read_vids(f))
    stray = sorted(unique - set(plan.vids))
    if stray:
        raise DataError(f"feature parts hold {len(stray)} vids that are not in the split, e.g. {stray[:5]}")
    n = max(1, -(-len(unique) // cfg.shard_size))
    rows = merged_rows(sources)
    new_files, dim = [], None
    for i in range(n):
        path = plan.set_dir / f"{cfg.split}-{i:05d}-of-{n:05d}.parquet"
        chunk = [r for _, r in zip(range(cfg.shard_size), rows)]
        table = rows_table(chunk)
        if dim is None and table.num_rows:
            dim = len(table.column("features")[0][0])
        write_table(path, table, plan.meta)
        new_files.append(path)
    _register(plan, new_files, dim)
    for f in final_files(plan.set_dir, cfg.split):
        if f not in new_files:
            f.unlink()
    for f in plan.parts_dir.iterdir():
        with contextlib.suppress(FileNotFoundError):
            f.unlink()
    with contextlib.suppress(OSError):
        plan.parts_dir.rmdir()
        plan.parts_dir.parent.rmdir()
    return new_files


def _reduce_sources(plan: Plan, sources: list[Path]) -> list[Path]:
    """Merge groups of sources into sorted run files until at most MERGE_FANIN remain."""
    level = 0
    while len(sources) > MERGE_FANIN:
        runs = []
        for g in range(0, len(sources), MERGE_FANIN):
            group = sources[g : g + MERGE_FANIN]
            run = plan.parts_dir / f"run{level:02d}-{g // MERGE_FANIN:06d}-{uuid.uuid4().hex[:8]}.parquet"
            write_rows(run, merged_rows(group), plan.meta)
            # The run holds every row of its group (a valid part itself), so the group can go.
            for f in group:
                if f.parent == plan.parts_dir:
                    f.unlink()
            runs.append(run)
        sources, level = runs, level + 1
    return sources


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


def _register(plan: Plan, files: list[Path], dim: int | None) -> None:
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

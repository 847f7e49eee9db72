"""Importer of the official CREATE release into create-bench shards (layer 2).

Input: CREATE's annotation JSON files (a list of ``{vid, ann_title, ann_caption, raw_title, tag,
category}``; pre-training ``{vid, raw_title, tag}``), a directory of videos named by vid (any container
decord opens), optionally a directory of per-video feature files ``<vid>.npy`` ([T, D] or [D]).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from create_bench.data.build import DatasetWriter
from create_bench.data.schema import MAX_REFS
from create_bench.errors import AnnotationError, DataError, VideoDecodeError
from create_bench.fsutil import atomic_write_json
from create_bench.progress import track

log = logging.getLogger(__name__)

IMPORTER_VERSION = "1"
VIDEO_EXTS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".flv", ".m4v", ".ts")
#: CREATE has 51 categories; the release numbers them 0..50 (names given with --categories).
NUM_CREATE_CATEGORIES = 51

_SPLIT_PATTERNS = [
    (re.compile(r"(^|[_-])train(\.json)?$"), "train"),
    (re.compile(r"(^|[_-])(val|valid|validation)(\.json)?$"), "validation"),
    (re.compile(r"(^|[_-])test(\.json)?$"), "test"),
    (re.compile(r"3m[_-]?pretrain|pretrain[_-]?3m"), "pretrain-3m"),
    (re.compile(r"10m[_-]?pretrain|pretrain[_-]?10m"), "pretrain-10m"),
]


def skipped_note(split: str, skipped: int, remaining: int | None = None) -> str:
    """The sentence results, reports and cards print for rows a build left out of ``split``."""
    s = (
        f"{skipped} {split} video{'s were' if skipped != 1 else ' was'} skipped at build time "
        "(see build_report.json)"
    )
    return s + (f"; scores are over the remaining {remaining}" if remaining is not None else "")


def split_of(path: str | os.PathLike[str]) -> str:
    """The split an annotation file holds, from its name (``create_210k_val.json`` -> validation).
    ``NAME=path`` is not parsed here; see ``parse_annotation_arg``."""
    stem = Path(path).name.lower().removesuffix(".json")
    for rx, split in _SPLIT_PATTERNS:
        if rx.search(stem):
            return split
    raise DataError(
        "cannot tell the split from the file name; name it like create_210k_{train,val,test}.json or "
        "create_{3m,10m}_pretrain.json, or pass SPLIT=FILE",
        path=str(path),
    )


def parse_annotation_arg(arg: str) -> tuple[str, Path]:
    if "=" in arg and not Path(arg).exists():
        split, _, p = arg.partition("=")
        return split, Path(p)
    return split_of(arg), Path(arg)


def _texts(item: dict[str, Any], key: str, split: str, where: dict[str, Any]) -> list[str]:
    v = item.get(key)
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x.strip() for x in v):
        raise AnnotationError(
            f"{key!r} must be a non-empty string or a list of up to {MAX_REFS} strings, got {v!r}", **where
        )
    if len(v) > (1 if split == "train" else MAX_REFS):
        raise AnnotationError(
            f"{key!r} has {len(v)} items; {split} allows {1 if split == 'train' else MAX_REFS}", **where
        )
    return [x.strip() for x in v]


def parse_item(item: Any, split: str, num_categories: int, *, path: str, index: int) -> dict[str, Any]:
    """Check one annotation item and map it to shard fields (without video metadata)."""
    if not isinstance(item, dict):
        raise AnnotationError(f"item must be an object, got {type(item).__name__}", path=path, row=index)
    vid = item.get("vid")
    where: dict[str, Any] = {"path": path, "row": index, "vid": vid if isinstance(vid, str) else None}
    if not isinstance(vid, str) or not vid.strip() or "/" in vid:
        raise AnnotationError(f"'vid' must be a non-empty string without '/', got {vid!r}", **where)
    tags = item.get("tag", [])
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,，\s]+", tags) if t]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise AnnotationError(f"'tag' must be a list of strings, got {tags!r}", **where)
    raw_title = item.get("raw_title", "")
    if not isinstance(raw_title, str):
        raise AnnotationError(f"'raw_title' must be a string, got {raw_title!r}", **where)
    row: dict[str, Any] = {"vid": vid, "split": split, "tags": tags, "raw_title": raw_title}
    if split.startswith("pretrain"):
        row.update(titles=[], captions=[], category=-1)
        cat = item.get("category")
        if isinstance(cat, int) and not isinstance(cat, bool) and 0 <= cat < num_categories:
            row["category"] = cat
        return row
    cat = item.get("category")
    if isinstance(cat, str) and cat.isdigit():
        cat = int(cat)
    if not isinstance(cat, int) or isinstance(cat, bool):
        raise AnnotationError(f"'category' must be an int, got {cat!r}", **where)
    if not 0 <= cat < num_categories:
        raise AnnotationError(f"unknown category {cat} (known: 0..{num_categories - 1})", **where)
    row["category"] = cat
    row["titles"] = _texts(item, "ann_title", split, where)
    row["captions"] = _texts(item, "ann_caption", split, where)
    return row


def load_annotations(path: Path) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError as exc:
        raise AnnotationError("annotation file not found", path=str(path)) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnnotationError(f"annotation file is not valid JSON: {exc}", path=str(path)) from exc
    if isinstance(data, dict):  # tolerate {"annotations": [...]}, {"data": [...]} and {vid: item, ...}
        wrapped = data.get("annotations", data.get("data"))
        if isinstance(wrapped, list):
            data = wrapped
        elif data and all(isinstance(v, dict) for v in data.values()):
            data = [dict(v, vid=k) for k, v in data.items()]
        else:
            keys = ", ".join(repr(k) for k in list(data)[:5]) + (", ..." if len(data) > 5 else "")
            raise AnnotationError(
                f"annotation file must hold a JSON list of items, got a JSON object (keys: {keys or 'none'})",
                path=str(path),
            )
    if not isinstance(data, list):
        raise AnnotationError(
            f"annotation file must hold a JSON list of items, got {_json_type(data)}", path=str(path)
        )
    return data


def _json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def index_videos(videos_dir: Path) -> dict[str, Path]:
    """vid -> video path for every file under ``videos_dir`` with a video extension."""
    if not videos_dir.is_dir():
        raise DataError("videos directory not found", path=str(videos_dir))
    out: dict[str, Path] = {}
    for root, _dirs, files in os.walk(videos_dir):
        for f in files:
            p = Path(root) / f
            if p.suffix.lower() in VIDEO_EXTS:
                out.setdefault(p.stem, p)
    return out


def _probe(path: str) -> dict[str, Any]:
    from create_bench.video.probe import probe_video

    return probe_video(path).to_dict()


@dataclass
class BuildReport:
    errors: list[dict[str, Any]] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def add(
        self, path: str, index: int | None, vid: str | None, message: str, split: str | None = None
    ) -> None:
        self.errors.append({"file": path, "row": index, "vid": vid, "split": split, "error": message})

    @property
    def skipped(self) -> dict[str, int]:
        """Rows left out per split (what the manifest records as ``skipped``)."""
        out: dict[str, int] = {}
        for e in self.errors:
            key = e.get("split") or "unknown"
            out[key] = out.get(key, 0) + 1
        return out

    def summary(self) -> str:
        lines = [
            f"imported {sum(self.rows.values())} videos: "
            + ", ".join(f"{k} {v}" for k, v in self.rows.items())
        ]
        if self.errors:
            per_split = ", ".join(f"{k} {v}" for k, v in self.skipped.items())
            lines.append(
                f"{len(self.errors)} bad rows skipped ({per_split}; recorded in manifest.json as 'skipped', "
                "and reported with every score on those splits):"
            )
            lines += [
                f"  {e['file']} row {e['row']} vid {e['vid']!r}: {e['error']}" for e in self.errors[:50]
            ]
            if len(self.errors) > 50:
                lines.append(f"  ... and {len(self.errors) - 50} more (see build_report.json)")
        return "\n".join(lines)


def build_from_release(
    annotations: list[str],
    videos_dir: str | os.PathLike[str] | None,
    out_dir: str | os.PathLike[str],
    *,
    features_dir: str | os.PathLike[str] | None = None,
    feature_set: str = "clip",
    categories: list[str] | None = None,
    on_error: Literal["skip", "fail"] = "fail",
    video_storage: Literal["embed", "path"] = "embed",
    shard_size: int = 1000,
    workers: int = 2,
    name: str = "create-210k",
    attractiveness: str | os.PathLike[str] | None = None,
) -> BuildReport:
    """Import the release. With ``on_error="fail"`` the first bad row raises (naming file, row, vid)
    and nothing is written; with ``"skip"`` bad rows are left out and listed in the report (also
    written as ``build_report.json`` in the dataset).

    Without ``videos_dir`` (``features_dir`` required) the dataset is features-only: each row's
    ``video`` is ``{bytes: None, path: None}``, ``num_frames`` is its feature count T (1 for a
    [D] vector), ``fps``/``duration``/``width``/``height`` are 0, and the manifest says
    ``"videos": false``; frame models are refused on it, feature models run.

    ``attractiveness``: a JSON Lines file of per-character title omega
    (:mod:`create_bench.data.attractiveness`); any problem in it fails the build (file, line, vid).
    """
    if on_error not in ("skip", "fail"):
        raise DataError(f"on_error must be skip|fail, got {on_error!r}")
    if video_storage not in ("embed", "path"):
        raise DataError(f"video_storage must be embed|path, got {video_storage!r}")
    cats = categories or [f"category_{i:02d}" for i in range(NUM_CREATE_CATEGORIES)]
    if videos_dir is None and not features_dir:
        raise DataError("a dataset needs videos (--videos) or precomputed features (--features), or both")
    videos = index_videos(Path(videos_dir)) if videos_dir is not None else None
    feats_dir = Path(features_dir) if features_dir else None
    report = BuildReport()
    out_dir = Path(out_dir)
    writer = DatasetWriter(
        out_dir,
        name=name,
        categories=cats,
        shard_size=shard_size,
        generator={
            "name": "create-bench build",
            "version": IMPORTER_VERSION,
            "annotations": [Path(a.partition("=")[2] or a).name for a in annotations],
        },
        inputs=[
            *(parse_annotation_arg(a)[1] for a in annotations),
            *([videos_dir] if videos_dir is not None else []),
            *([features_dir] if features_dir else []),
            *([attractiveness] if attractiveness else []),
        ],
        extra_manifest=None if videos is not None else {"videos": False},
    )
    writer.check_out_dir()  # before any work: refuse an --out that would lose data

    imp = _Import(on_error, report, video_storage, feats_dir, feature_set)
    todo = _parse_all(annotations, len(cats), videos, imp)
    if attractiveness:  # per-character title omega from a separate annotation file
        from create_bench.data.attractiveness import read_attractiveness

        omega = read_attractiveness(attractiveness, {row["vid"]: row["titles"] for _, _, row, _ in todo})
        for _, _, row, _ in todo:
            row["title_omega"] = omega.get(row["vid"])
        writer.generator["attractiveness"] = Path(attractiveness).name

    # 2. Probe videos in parallel (each probe decodes the whole video once), write the rows.
    with writer as w:
        probes = (
            _probe_all([str(t[3]) for t in todo], workers)
            if videos is not None
            else (_NO_VIDEO for _ in todo)
        )
        for item, meta in track(zip(todo, probes), desc="build: probed", total=len(todo), unit="videos"):
            imp.add(w, *item, meta)
        if not report.rows:
            raise DataError(
                "no valid rows to import" + (f"; {len(report.errors)} bad rows" if report.errors else "")
            )
        if report.errors:  # results and reports say how many videos their scores leave out
            w.extra_manifest["skipped"] = report.skipped
    atomic_write_json(
        out_dir / "build_report.json",
        {"rows": report.rows, "skipped": report.skipped, "errors": report.errors},
    )
    return report


@dataclass
class _Import:
    """What every row of one import needs: the error policy, its report, where videos and
    features come from."""

    on_error: str
    report: BuildReport
    video_storage: str
    feats_dir: Path | None
    feature_set: str

    def fail_or_skip(
        self, exc: DataError | VideoDecodeError, path: str, index: int | None, vid: str | None, split: str
    ) -> None:
        if self.on_error == "fail":
            raise exc
        self.report.add(path, index, vid, str(exc), split)

    def add(
        self, w: DatasetWriter, src: str, i: int, row: dict[str, Any], vpath: Path | None, meta: Any
    ) -> None:
        """Add one probed row (and its features) to the writer, or fail/skip it."""
        vid = row["vid"]
        if isinstance(meta, Exception):
            why = meta if isinstance(meta, VideoDecodeError) else VideoDecodeError(str(meta), vid=vid)
            self.fail_or_skip(
                VideoDecodeError(f"undecodable video {vpath}: {why}", vid=vid), src, i, vid, row["split"]
            )
            return
        row.update(meta)
        if vpath is None:  # features only: num_frames is set from the features below
            row["video"] = {"bytes": None, "path": None}
        elif self.video_storage == "embed":
            row["video"] = {"bytes": vpath.read_bytes(), "path": vpath.name}
        else:
            row["video"] = {"bytes": None, "path": str(vpath.resolve())}
        try:
            arr = self._features(vid, features_only=vpath is None)
            if arr is not None and vpath is None:
                row["num_frames"] = 1 if arr.ndim == 1 else int(arr.shape[0])
            w.add(row, source=src, index=i)
            if arr is not None:
                w.add_features(self.feature_set, row["split"], vid, arr)
        except DataError as exc:
            self.fail_or_skip(exc, src, i, vid, row["split"])
            return
        self.report.rows[row["split"]] = self.report.rows.get(row["split"], 0) + 1

    def _features(self, vid: str, *, features_only: bool) -> np.ndarray | None:
        """The video's precomputed features (None without a features directory)."""
        if self.feats_dir is None:
            return None
        fpath = self.feats_dir / f"{vid}.npy"
        if not fpath.is_file():
            raise DataError("feature file not found", path=str(fpath), vid=vid)
        try:
            arr = np.load(fpath, allow_pickle=False)
        except Exception as e:  # numpy raises ValueError/OSError/EOFError on bad files
            raise DataError(f"cannot read features: {e}", path=str(fpath), vid=vid) from e
        if features_only and (arr.ndim not in (1, 2) or arr.size == 0):
            raise DataError(
                f"features must be [T, D] or [D], got shape {list(arr.shape)}", path=str(fpath), vid=vid
            )
        return arr


def _parse_all(
    annotations: list[str], num_categories: int, videos: dict[str, Path] | None, imp: _Import
) -> list[tuple[str, int, dict[str, Any], Path | None]]:
    """1. Parse every annotation (cheap) and find its video: (source file, row, row dict, video)."""
    todo: list[tuple[str, int, dict[str, Any], Path | None]] = []
    seen: dict[str, str] = {}
    for arg in annotations:
        split, path = parse_annotation_arg(arg)
        for i, item in enumerate(load_annotations(path)):
            try:
                row = parse_item(item, split, num_categories, path=str(path), index=i)
                if row["vid"] in seen:
                    raise AnnotationError(
                        f"duplicate vid (first seen in {seen[row['vid']]})",
                        path=str(path),
                        row=i,
                        vid=row["vid"],
                    )
                if videos is not None and row["vid"] not in videos:
                    raise DataError(
                        "video file not found in the videos directory", path=str(path), row=i, vid=row["vid"]
                    )
            except DataError as exc:
                imp.fail_or_skip(
                    exc, str(path), i, item.get("vid") if isinstance(item, dict) else None, split
                )
                continue
            seen[row["vid"]] = str(path)
            todo.append((str(path), i, row, videos[row["vid"]] if videos is not None else None))
    return todo


#: Video metadata of a features-only row (num_frames comes from its features).
_NO_VIDEO: dict[str, Any] = {"fps": 0.0, "duration": 0.0, "width": 0, "height": 0, "rotation": 0}


def _probe_all(paths: list[str], workers: int) -> Iterator[dict[str, Any] | Exception]:
    if workers <= 1 or len(paths) < 4:
        for p in paths:
            try:
                yield _probe(p)
            except Exception as exc:  # reported per row by the caller
                yield exc
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_probe, p) for p in paths]
        for fut in futures:
            try:
                yield fut.result(timeout=600)
            except Exception as exc:
                yield exc

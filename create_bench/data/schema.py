"""The shard contract (layer 2): columns, Arrow schema, HF features, and row validation.

Bump ``create_bench.SHARD_SCHEMA_VERSION`` on any change here.

Versions: 1, the columns of :data:`COLUMNS`; 2 adds the optional ``title_omega`` column
(list<list<float32>>, null when the dataset has no attractiveness annotation: one list per title,
one value in [0, 1] per character of the normalised title, the share of annotators who marked the
character attractive; see :mod:`create_bench.data.attractiveness`). Version-1 shards stay readable:
a missing column means no omega.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pyarrow as pa

from create_bench import SHARD_SCHEMA_VERSION
from create_bench.errors import DataError

#: Canonical split names and the file prefix of each split in ``data/``.
EVAL_SPLITS = ("train", "validation", "test")
PRETRAIN_SPLITS = ("pretrain", "pretrain-3m", "pretrain-10m")
ALL_SPLITS = EVAL_SPLITS + PRETRAIN_SPLITS
MAX_REFS = 10
SPLIT_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

COLUMNS = (
    "vid",
    "split",
    "category",
    "category_name",
    "tags",
    "raw_title",
    "titles",
    "captions",
    "video",
    "num_frames",
    "fps",
    "duration",
    "width",
    "height",
    "rotation",
)
#: Columns that never touch video bytes (what text-only readers project).
TEXT_COLUMNS = ("vid", "split", "category", "category_name", "tags", "raw_title", "titles", "captions")
VIDEO_META_COLUMNS = ("num_frames", "fps", "duration", "width", "height", "rotation")

#: Columns added after version 1: name -> the schema version that added it. Absent or null: no value.
OPTIONAL_COLUMNS = {"title_omega": 2}
OMEGA_TYPE = pa.list_(pa.list_(pa.float32()))

VIDEO_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


def arrow_schema(categories: list[str], version: int | None = None) -> pa.Schema:
    """The Arrow schema of a shard of schema ``version`` (default: the current one), with HF
    ``datasets`` feature metadata so that ``load_dataset(dir)`` reads ``category`` as a ClassLabel
    and ``video`` as ``Video(decode=False)``."""
    version = SHARD_SCHEMA_VERSION if version is None else version
    fields = [
        ("vid", pa.string()),
        ("split", pa.string()),
        ("category", pa.int64()),
        ("category_name", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("raw_title", pa.string()),
        ("titles", pa.list_(pa.string())),
        ("captions", pa.list_(pa.string())),
        ("video", VIDEO_TYPE),
        ("num_frames", pa.int32()),
        ("fps", pa.float32()),
        ("duration", pa.float32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("rotation", pa.int32()),
    ]
    if version >= OPTIONAL_COLUMNS["title_omega"]:
        fields.append(("title_omega", OMEGA_TYPE))
    schema = pa.schema(fields)
    features = hf_features_dict(categories)
    if version < OPTIONAL_COLUMNS["title_omega"]:
        features.pop("title_omega")
    meta = {"huggingface": json.dumps({"info": {"features": features}}, ensure_ascii=False)}
    return schema.with_metadata(meta)


def hf_features_dict(categories: list[str]) -> dict[str, Any]:
    """``datasets.Features.to_dict()`` form of the shard columns (written into shard metadata)."""
    s = {"dtype": "string", "_type": "Value"}
    lst = {"feature": s, "_type": "List"}
    return {
        "vid": s,
        "split": s,
        "category": {"names": list(categories), "_type": "ClassLabel"},
        "category_name": s,
        "tags": lst,
        "raw_title": s,
        "titles": lst,
        "captions": lst,
        "video": {"decode": False, "_type": "Video"},
        "num_frames": {"dtype": "int32", "_type": "Value"},
        "fps": {"dtype": "float32", "_type": "Value"},
        "duration": {"dtype": "float32", "_type": "Value"},
        "width": {"dtype": "int32", "_type": "Value"},
        "height": {"dtype": "int32", "_type": "Value"},
        "rotation": {"dtype": "int32", "_type": "Value"},
        "title_omega": {
            "feature": {"feature": {"dtype": "float32", "_type": "Value"}, "_type": "List"},
            "_type": "List",
        },
    }


def _str(row: dict[str, Any], key: str, where: dict[str, Any], *, allow_empty: bool = False) -> str:
    v = row.get(key)
    if not isinstance(v, str) or (not allow_empty and not v.strip()):
        raise DataError(f"field {key!r} must be a non-empty string, got {v!r}", **where)
    return v


def _strlist(row: dict[str, Any], key: str, where_s: dict[str, Any], lo: int, hi: int) -> list[str]:
    where = {k: v for k, v in where_s.items() if k != "split"}
    v = row.get(key)
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise DataError(f"field {key!r} must be a list of non-empty strings, got {v!r}", **where)
    if not lo <= len(v) <= hi:
        raise DataError(
            f"field {key!r} must have {lo}..{hi} items in split {where_s['split']!r}, got {len(v)}", **where
        )
    return v


def validate_row(
    row: dict[str, Any], categories: list[str], *, path: str | None = None, index: int | None = None
) -> dict[str, Any]:
    """Check one row against the contract; return it normalised. Raises DataError naming file/row/vid."""
    vid = row.get("vid")
    where: dict[str, Any] = {"path": path, "row": index, "vid": vid if isinstance(vid, str) else None}
    _str(row, "vid", where)
    split = _str(row, "split", where)
    if not SPLIT_RE.match(split):
        raise DataError(f"bad split name {split!r}", **where)
    where_s = {**where, "split": split}
    pretrain = split.startswith("pretrain")
    cat = row.get("category", -1)
    if not isinstance(cat, int) or isinstance(cat, bool):
        raise DataError(f"category must be an int, got {cat!r}", **where)
    if pretrain:
        if cat != -1 and not 0 <= cat < len(categories):
            raise DataError(f"unknown category {cat}", **where)
    elif not 0 <= cat < len(categories):
        raise DataError(f"unknown category {cat} (known: 0..{len(categories) - 1})", **where)
    tags = row.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise DataError(f"tags must be a list of strings, got {tags!r}", **where)
    if pretrain:
        titles = row.get("titles") or []
        captions = row.get("captions") or []
    else:
        hi = 1 if split == "train" else MAX_REFS
        titles = _strlist(row, "titles", where_s, 1, hi)
        captions = _strlist(row, "captions", where_s, 1, hi)
    video = row.get("video")
    # A features-only dataset (precomputed features, no video files; the real release ships CLIP
    # features) stores {'bytes': None, 'path': None} and num_frames = the feature count T.
    if not isinstance(video, dict) or set(video) - {"bytes", "path"}:
        raise DataError("video must be {'bytes': ..., 'path': ...} (both None: features only)", **where)
    nf = row.get("num_frames")
    if not isinstance(nf, int) or nf <= 0:
        raise DataError(f"num_frames must be a positive int, got {nf!r}", **where)
    out = {
        "vid": vid,
        "split": split,
        "category": cat,
        "category_name": categories[cat] if cat >= 0 else "",
        "tags": [t.strip() for t in tags if t.strip()],
        "raw_title": row.get("raw_title") or "",
        "titles": titles,
        "captions": captions,
        "video": {"bytes": video.get("bytes"), "path": video.get("path")},
        "num_frames": nf,
        "fps": float(row.get("fps") or 0.0),
        "duration": float(row.get("duration") or 0.0),
        "width": int(row.get("width") or 0),
        "height": int(row.get("height") or 0),
        "rotation": int(row.get("rotation") or 0),
    }
    omega = row.get("title_omega")
    if omega is not None:
        from create_bench.data.attractiveness import check_omega

        out["title_omega"] = check_omega(omega, titles, where=where)
    return out

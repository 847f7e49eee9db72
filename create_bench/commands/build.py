"""``create-bench build``: import the official CREATE release into shards."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build",
        help="import the official CREATE release (JSON + videos [+ features]) into shards",
        description=(
            "Import the official CREATE release into a create-bench dataset: sharded Parquet, README.md "
            "and manifest.json. Every annotation item is checked (a bad one names its file, row and vid) "
            "and every video is probed once (frames that really decode, fps, size), with progress on "
            "stderr. Split names come from the file names: create_210k_{train,val,test}.json give train, "
            "validation and test; create_3m_pretrain.json and create_10m_pretrain.json give the "
            "pre-training configs 'pretrain-3m' and 'pretrain-10m' (CREATE-sample calls its one 'pretrain')."
        ),
    )
    p.add_argument(
        "--annotations",
        nargs="+",
        required=True,
        metavar="FILE",
        help="annotation JSON files (each a JSON list of items): create_210k_{train,val,test}.json, "
        "create_{3m,10m}_pretrain.json (splits pretrain-3m, pretrain-10m), or SPLIT=FILE",
    )
    p.add_argument(
        "--videos",
        default=None,
        help="directory of videos named <vid>.<ext>; omit it (with --features) for a features-only "
        "dataset: no video column content, num_frames = each video's feature count T",
    )
    p.add_argument("--features", help="directory of per-video <vid>.npy features ([T, D] or [D])")
    p.add_argument("--feature-set", default="clip", help="name of the feature set (default: %(default)s)")
    p.add_argument("--categories", help="category names: JSON list or a text file with one name per line")
    p.add_argument(
        "--attractiveness",
        default=None,
        metavar="FILE",
        help="JSON Lines of per-character title attractiveness: {vid, title_index, omega: [..]} per "
        "title, one value in [0, 1] per character of the normalised title (ACTEr-r's weights; README)",
    )
    p.add_argument("--out", required=True, help="output dataset directory")
    p.add_argument("--name", default="create-210k", help="dataset name (default: %(default)s)")
    p.add_argument(
        "--on-error",
        choices=["skip", "fail"],
        default="fail",
        help="a bad annotation item or undecodable video: fail stops with nothing written; skip leaves "
        "the row out and lists it in build_report.json (default: %(default)s)",
    )
    p.add_argument(
        "--video-storage",
        choices=["embed", "path"],
        default="embed",
        help="embed the video bytes in the shards, or store their absolute paths (default: %(default)s)",
    )
    p.add_argument("--shard-size", type=int, default=1000, help="rows per shard (default: %(default)s)")
    p.add_argument("--workers", type=int, default=2, help="processes probing videos (default: %(default)s)")
    p.set_defaults(func=run)


def _categories(path: str | None) -> list[str] | None:
    if not path:
        return None
    text = Path(path).read_text("utf-8")
    if text.lstrip().startswith("["):
        return [str(x) for x in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def run(args: argparse.Namespace) -> int:
    from create_bench.data.importer import build_from_release

    report = build_from_release(
        args.annotations,
        args.videos,
        args.out,
        features_dir=args.features,
        feature_set=args.feature_set,
        categories=_categories(args.categories),
        on_error=args.on_error,
        video_storage=args.video_storage,
        shard_size=args.shard_size,
        workers=args.workers,
        name=args.name,
        attractiveness=args.attractiveness,
    )
    print(report.summary())
    print(f"wrote {args.out}")
    return 0

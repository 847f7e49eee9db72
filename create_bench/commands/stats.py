"""``create-bench stats --data DIR --out data_cards/NAME`` (or ``stats DIR ...``): dataset statistics
(JSON + plots) for a card."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from create_bench.commands._data import add_data_argument, data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats",
        help="dataset statistics for a data card: stats.json and PNG plots, plus a summary table",
        description=(
            "Describe a dataset for its data card: per split, videos, texts, tags, text lengths in "
            "characters and jieba words, vocabulary, title/caption overlap, video durations and sizes "
            "(and part-of-speech shares unless --no-pos). Writes OUT/stats.json and PNG plots and "
            "prints a summary table; refreshes the card's generated block (see --card)."
        ),
    )
    add_data_argument(p)
    p.add_argument("--out", required=True, help="output directory, e.g. data_cards/create-sample")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits to describe (default: all)")
    p.add_argument("--no-plots", action="store_true", help="write stats.json only")
    p.add_argument("--no-pos", action="store_true", help="skip part-of-speech statistics (faster)")
    p.add_argument(
        "--max-rows", type=int, metavar="N", help="describe only the first N rows of each split (quick look)"
    )
    p.add_argument(
        "--card",
        metavar="FILE",
        help="Markdown card whose generated statistics block to refresh "
        "(default: OUT.md, e.g. data_cards/create-sample.md, when it exists and has the block)",
    )
    p.set_defaults(func=run)


def summary_table(stats: dict[str, Any]) -> str:
    """A plain-text table: one row per split with the headline numbers."""
    cols = [
        ("split", lambda s, st: s),
        ("videos", lambda s, st: f"{st['videos']:,}"),
        ("titles", lambda s, st: f"{st['titles']:,}"),
        ("captions", lambda s, st: f"{st['captions']:,}"),
        ("uniq tags", lambda s, st: f"{st['tags']['unique']:,}"),
        ("tags/vid", lambda s, st: _mean(st["tags"]["per_video"], 2)),
        ("title ch/w", lambda s, st: _pair(st["text"]["title"])),
        ("caption ch/w", lambda s, st: _pair(st["text"]["caption"])),
        ("raw ch/w", lambda s, st: _pair(st["text"]["raw_title"])),
        ("vocab w", lambda s, st: f"{st['vocabulary']['annotation_words']:,}"),
        ("T in C", lambda s, st: _pct(st["overlap"]["title_words_in_captions"]["micro"])),
        ("dur s", lambda s, st: _mean(st["video"]["duration"], 1)),
    ]
    rows = [[name for name, _ in cols]]
    for split, st in stats["splits"].items():
        rows.append([fn(split, st) for _, fn in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _mean(d: dict[str, Any], digits: int) -> str:
    return f"{d['mean']:.{digits}f}" if d.get("count") else "-"


def _pair(t: dict[str, Any]) -> str:
    if not t.get("texts"):
        return "-"
    return f"{t['chars']['mean']:.1f}/{t['words']['mean']:.1f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def run(args: argparse.Namespace) -> int:
    from create_bench.data.importer import skipped_note
    from create_bench.data.stats import ordered_splits, update_card, write_stats

    stats = write_stats(
        data_dir(args),
        args.out,
        plots=not args.no_plots,
        splits=args.splits,
        pos=not args.no_pos,
        max_rows=args.max_rows,
    )
    ordered = {s: stats["splits"][s] for s in ordered_splits(stats["splits"])}
    print(f"{stats['dataset']['name']} (fingerprint {stats['dataset']['fingerprint']}, {stats['tokenizer']})")
    print(summary_table({**stats, "splits": ordered}))
    overall = stats["overall"]
    print(
        f"all splits: {overall['videos']:,} videos, {overall['unique_tags']:,} unique tags, "
        f"{overall['annotation_words']:,} distinct title/caption words"
    )
    for split, n in (stats["dataset"].get("skipped") or {}).items():
        print(skipped_note(split, n))
    print(
        "ch/w: mean characters / jieba words per text; T in C: share of title words found in the "
        "same video's captions"
    )
    for f in stats["files"]:
        print(f"wrote {f}")
    card = _card_path(args)
    if card is not None:
        plots = None if args.no_plots else Path(os.path.relpath(args.out, card.parent)).as_posix()
        changed = update_card(card, {k: v for k, v in stats.items() if k != "files"}, plots)
        print(f"{'updated' if changed else 'unchanged'} {card}")
    return 0


def _card_path(args: argparse.Namespace) -> Path | None:
    from create_bench.data.stats import CARD_BEGIN

    if args.card:
        return Path(args.card)
    default = Path(args.out).with_suffix(".md")
    if default.is_file() and CARD_BEGIN in default.read_text("utf-8"):
        return default
    return None

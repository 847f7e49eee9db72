"""Plots of a statistics dict (layer 2): PNGs whose Chinese labels are drawn in a real CJK font.

matplotlib is imported only inside the functions that draw, so importing this module stays light.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from create_bench.data.stats.compute import POS_CLASSES, ordered_splits, top
from create_bench.errors import BackendUnavailable
from create_bench.fsutil import atomic_path

# --------------------------------------------------------------------------------------------
# CJK font
# --------------------------------------------------------------------------------------------

#: Characters every CJK font we accept must cover (common words of titles and category names).
CJK_PROBE = "中文视频标题描述生活美食宠物的一是了"
PREFERRED_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Sarasa Gothic SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
)
INSTALL_HINT = (
    "install one (Debian/Ubuntu: apt-get install -y fonts-wqy-microhei fontconfig; `make setup` does "
    "it when run as root) and, if matplotlib still does not see it, delete its font cache "
    "(~/.cache/matplotlib)"
)


@dataclass(frozen=True)
class CJKFont:
    name: str
    path: str


def font_covers(path: str, text: str) -> bool:
    """True when the font file at ``path`` has a glyph for every non-space character of ``text``."""
    from matplotlib.ft2font import FT2Font

    try:
        cmap = FT2Font(path).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(c) in cmap for c in text if not c.isspace())


def _fontconfig_cjk_files() -> list[str]:
    """Font files fontconfig says cover Chinese (``fc-list :lang=zh file``), if fontconfig is here."""
    exe = shutil.which("fc-list")
    if not exe:
        return []
    try:
        res = subprocess.run(
            [exe, ":lang=zh", "file"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split(":")[0].strip() for line in res.stdout.splitlines() if line.strip()})


@functools.cache
def find_cjk_font(probe: str = CJK_PROBE) -> CJKFont:
    """A font matplotlib can use that covers Chinese (checked glyph by glyph on ``probe``).

    Looks at matplotlib's font list (preferred names first, then every other font), then at the
    fonts fontconfig lists for ``:lang=zh`` (added to matplotlib's list when found).

    Raises:
        BackendUnavailable: no such font is installed (plots would draw boxes).
    """
    from matplotlib import font_manager as fm

    entries = sorted(fm.fontManager.ttflist, key=lambda e: (e.name, e.fname))
    rank = {n: i for i, n in enumerate(PREFERRED_CJK_FONTS)}
    entries.sort(key=lambda e: rank.get(e.name, len(rank)))
    for e in entries:
        if font_covers(e.fname, probe):
            return CJKFont(e.name, e.fname)
    for path in _fontconfig_cjk_files():
        if font_covers(path, probe):
            fm.fontManager.addfont(path)
            name = fm.FontProperties(fname=path).get_name()
            return CJKFont(name, path)
    raise BackendUnavailable(f"no CJK font found for Chinese plot labels (checked {probe!r}); {INSTALL_HINT}")


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

PLOT_DPI = 100
_SPLIT_COLORS = {"train": "#4C72B0", "validation": "#DD8452", "test": "#55A868"}


def _color(split: str, i: int) -> str:
    fallback = ("#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
    return _SPLIT_COLORS.get(split, fallback[i % len(fallback)])


def plot_stats(stats: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw the PNG plots of a statistics dict into ``out_dir``; return their paths.

    The plots are drawn only from ``stats`` (so they can be redrawn from a ``stats.json``):
    ``categories.png``, ``text_lengths.png``, ``tags_per_video.png``, ``video.png`` and
    ``pos_<split>.png`` for each split with annotated titles or captions.

    Raises:
        BackendUnavailable: no CJK font, or a label has a glyph the font lacks (it would be a box).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    font = find_cjk_font()
    out = Path(out_dir)
    rc: Any = {"font.family": [font.name, "DejaVu Sans"], "axes.unicode_minus": False}
    splits = {s: stats["splits"][s] for s in ordered_splits(stats["splits"])}
    jobs = [
        ("categories.png", _plot_categories),
        ("text_lengths.png", _plot_lengths),
        ("tags_per_video.png", _plot_tags),
        ("video.png", _plot_video),
    ]
    for split, s in splits.items():
        if any(s["text"][k].get("pos") for k in ("title", "caption")):
            jobs.append((f"pos_{split}.png", functools.partial(_plot_pos, split=split)))
    written = []
    with matplotlib.rc_context(rc):
        for name, fn in jobs:
            if _draw_and_save(plt, functools.partial(fn, plt, splits), out / name, font):
                written.append(out / name)
    return written


def _draw_and_save(plt: Any, draw: Any, path: Path, font: CJKFont) -> bool:
    """Draw a figure and save it atomically; refuse (nothing written) if a glyph is missing.

    Matplotlib warns "Glyph ... missing from font(s)" when it lays text out (in ``tight_layout``
    or ``savefig``) and then draws a box; that warning is turned into an error here.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = draw()
        if fig is None:
            return False
        try:
            with atomic_path(path, suffix=".png") as tmp:
                # No "Software" metadata: the same statistics give byte-identical PNGs.
                fig.savefig(tmp, format="png", dpi=PLOT_DPI, metadata={"Software": None})
                missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
                if missing:
                    raise BackendUnavailable(
                        f"{path.name}: font {font.name!r} ({font.path}) lacks glyphs, which would be "
                        f"drawn as boxes: {'; '.join(missing[:5])}"
                    )
        finally:
            plt.close(fig)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return True


def _eval_splits(splits: dict[str, Any]) -> list[str]:
    return [s for s in splits if splits[s]["titles"] or splits[s]["captions"]] or list(splits)


def _plot_categories(plt: Any, splits: dict[str, Any]) -> Any:
    names = _eval_splits(splits)
    rows = [c for c in splits[names[0]]["categories"]]
    labels = [c["name"] for c in rows]
    fig, ax = plt.subplots(figsize=(8, 1.5 + len(labels) * (0.1 + 0.08 * len(names))))
    height = 0.8 / len(names)
    for i, s in enumerate(names):
        n = max(1, splits[s]["videos"])
        by_id = {c["id"]: c["videos"] for c in splits[s]["categories"]}
        vals = [100.0 * by_id.get(c["id"], 0) / n for c in rows]
        ys = [j + (i - (len(names) - 1) / 2) * height for j in range(len(rows))]
        ax.barh(ys, vals, height=height, color=_color(s, i), label=f"{s} ({splits[s]['videos']} 个视频)")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("视频占比 (%)")
    ax.set_title("类别分布 (category distribution)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _step(ax: Any, hist: dict[str, list[Any]], n: int, **kw: Any) -> None:
    """A histogram as a density step line (comparable across splits of different sizes and bins)."""
    edges, counts = hist["edges"], hist["counts"]
    if not counts:
        return
    w = edges[1] - edges[0]
    dens = [c / (n * w) for c in counts]
    if w == 1 and all(isinstance(e, int) for e in edges):
        edges = [e - 0.5 for e in edges]  # one bin per integer: centre the bin on its value
    ax.stairs(dens, edges, **kw)


def _plot_lengths(plt: Any, splits: dict[str, Any]) -> Any:
    kinds = [("title", "标题 title"), ("caption", "描述 caption"), ("raw_title", "原始标题 raw title")]
    kinds = [k for k in kinds if any(s["text"][k[0]].get("chars") for s in splits.values())]
    if not kinds:
        return None
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 2.8 * len(kinds)), squeeze=False)
    for r, (kind, label) in enumerate(kinds):
        for c, (unit, ulabel) in enumerate([("chars", "字数 (characters)"), ("words", "词数 (jieba words)")]):
            ax = axes[r][c]
            for i, (s, st) in enumerate(splits.items()):
                d = st["text"][kind].get(unit)
                if d and d["count"]:
                    _step(
                        ax,
                        d["histogram"],
                        d["count"],
                        color=_color(s, i),
                        label=f"{s} (均值 {d['mean']:.1f})",
                    )
            ax.set_title(f"{label}: {ulabel}", fontsize=10)
            ax.set_ylabel("密度 density")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _plot_tags(plt: Any, splits: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (s, st) in enumerate(splits.items()):
        d = st["tags"]["per_video"]
        if d.get("count"):
            _step(ax, d["histogram"], d["count"], color=_color(s, i), label=f"{s} (均值 {d['mean']:.2f})")
    ax.set_xlabel("每个视频的标签数 (tags per video)")
    ax.set_ylabel("密度 density")
    ax.set_title("标签数分布 (tags per video)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_video(plt: Any, splits: dict[str, Any]) -> Any:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (s, st) in enumerate(splits.items()):
        for ax, key in ((axes[0], "duration"), (axes[1], "fps")):
            d = st["video"][key]
            if d.get("count"):
                _step(ax, d["histogram"], d["count"], color=_color(s, i), label=s)
    axes[0].set_title("时长 duration (s)")
    axes[1].set_title("帧率 fps")
    for ax in axes[:2]:
        ax.set_ylabel("密度 density")
        ax.legend(fontsize=7)
    totals: Counter[str] = Counter()
    for st in splits.values():
        totals.update(dict((r, n) for r, n in st["video"]["resolutions"]))
    res = [r for r, _ in top(totals, 10)]
    names = list(splits)
    width = 0.8 / max(1, len(names))
    for i, s in enumerate(names):
        by = dict((r, n) for r, n in splits[s]["video"]["resolutions"])
        n = max(1, splits[s]["videos"])
        axes[2].barh(
            [j + (i - (len(names) - 1) / 2) * width for j in range(len(res))],
            [100.0 * by.get(r, 0) / n for r in res],
            height=width,
            color=_color(s, i),
            label=s,
        )
    axes[2].set_yticks(range(len(res)), res)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("视频占比 (%)")
    axes[2].set_title("分辨率 resolution (W x H)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


_POS_LABELS = {"noun": "名词 nouns", "verb": "动词 verbs", "adjective": "形容词 adjectives"}


def _plot_pos(plt: Any, splits: dict[str, Any], *, split: str, k: int = 10) -> Any:
    kinds = [
        (kind, lab)
        for kind, lab in (("title", "标题"), ("caption", "描述"))
        if splits[split]["text"][kind].get("pos")
    ]
    fig, axes = plt.subplots(len(kinds), 3, figsize=(12, 3.4 * len(kinds)), squeeze=False)
    for r, (kind, lab) in enumerate(kinds):
        pos = splits[split]["text"][kind]["pos"]
        for c, cls in enumerate(POS_CLASSES):
            ax = axes[r][c]
            items = pos[cls]["top"][:k]
            ax.barh(range(len(items)), [n for _, n in items], height=0.7, color=_color(split, 0))
            ax.set_yticks(range(len(items)), [w for w, _ in items])
            ax.set_ylim(k - 0.5, -0.5)  # k fixed slots, the most frequent on top
            if not items:
                ax.text(0.5, 0.5, "无 (none)", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
            ax.set_title(f"{lab} {kind}: {_POS_LABELS[cls]} (前 {k})", fontsize=10)
            ax.set_xlabel("次数 count")
    fig.suptitle(f"{split}: 词性统计 (jieba.posseg)")
    fig.tight_layout()
    return fig

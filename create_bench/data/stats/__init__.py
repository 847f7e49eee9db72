"""Dataset statistics for the data cards (layer 2): one deterministic JSON and a few PNG plots.

* :mod:`~create_bench.data.stats.compute`: the statistics (``compute_stats``, ``dumps``; the
  definitions are in its docstring);
* :mod:`~create_bench.data.stats.card`: the Markdown statistics block of a data card;
* :mod:`~create_bench.data.stats.plots`: CJK font discovery and the PNG plots.

:func:`write_stats` joins the first and the last: ``stats.json`` plus the plots, atomically.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from create_bench.data.stats.card import CARD_BEGIN, CARD_END, card_markdown, update_card
from create_bench.data.stats.compute import (
    COLUMNS,
    DIGITS,
    NO_CATEGORY,
    POS_CLASSES,
    STATS_VERSION,
    TEXT_KINDS,
    TOP_K,
    TextInfo,
    analyse_text,
    compute_stats,
    distribution,
    dumps,
    histogram,
    ordered_splits,
    pos_tagger_signature,
    pos_tags,
    top,
)
from create_bench.data.stats.plots import (
    CJK_PROBE,
    INSTALL_HINT,
    PLOT_DPI,
    PREFERRED_CJK_FONTS,
    CJKFont,
    find_cjk_font,
    font_covers,
    plot_stats,
)
from create_bench.fsutil import atomic_write_text

__all__ = [
    "CARD_BEGIN",
    "CARD_END",
    "CJK_PROBE",
    "COLUMNS",
    "DIGITS",
    "INSTALL_HINT",
    "NO_CATEGORY",
    "PLOT_DPI",
    "POS_CLASSES",
    "PREFERRED_CJK_FONTS",
    "STATS_VERSION",
    "TEXT_KINDS",
    "TOP_K",
    "CJKFont",
    "TextInfo",
    "analyse_text",
    "card_markdown",
    "compute_stats",
    "distribution",
    "dumps",
    "find_cjk_font",
    "font_covers",
    "histogram",
    "ordered_splits",
    "plot_stats",
    "pos_tagger_signature",
    "pos_tags",
    "top",
    "update_card",
    "write_stats",
]


def write_stats(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    plots: bool = True,
    **kw: Any,
) -> dict[str, Any]:
    """Compute the statistics and write ``out_dir/stats.json`` and (with ``plots``) the PNGs.

    Keyword arguments go to :func:`compute_stats`. Every file is written atomically. Returns the
    statistics, with the written paths under ``"files"`` (not part of ``stats.json``).

    Raises:
        BackendUnavailable: no CJK font for the plots (checked before anything is written).
    """
    out = Path(out_dir)
    if plots:
        find_cjk_font()  # fail before the (possibly long) computation
    stats = compute_stats(data_dir, **kw)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "stats.json"]
    atomic_write_text(files[0], dumps(stats))
    if plots:
        files += plot_stats(stats, out)
    return {**stats, "files": [str(f) for f in files]}

"""The evaluation report (layer 4): a Markdown page next to the results JSON, with PNG plots.

``write_report(results, results_path, pred_dir=..., data_dir=..., split=...)`` writes

- ``<stem>.md``: a CREATE-paper-style table (retrieval R@1/5/10, MdR, MnR for T2V and V2T with
  captions and titles as texts, with chance levels; BLEU-1..4, ROUGE-L, CIDEr for titling and
  captioning), 95% bootstrap intervals where the results have them, the family-wise "consistent
  with chance" check of the retrieval numbers in words (results key ``chance_test``),
  per-category scores, the model card and the signature;
- ``<stem>-figures/``: ``ranks.png`` (histogram of the expected rank of each query),
  ``recall_at_k.png`` (R@K for every K against chance) and ``per_category.png`` (the headline
  scores per category).

Plots use matplotlib's Agg backend. Chinese category names are drawn with a CJK font that
fontconfig finds (e.g. Debian's ``fonts-wqy-microhei``) and only when that font has every glyph of
the label; otherwise the label falls back to the category id, so no plot ever shows boxes.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.fsutil import atomic_dir, atomic_path, atomic_write_text
from create_bench.results import TASK_LABELS, skipped_rows_note
from create_bench.tasks import TASKS

log = logging.getLogger(__name__)

RETRIEVAL_GROUPS = (("t2v_caption", "captions", "T2V"), ("v2t_caption", "captions", "V2T"),
                    ("t2v_title", "titles", "T2V"), ("v2t_title", "titles", "V2T"))  # fmt: skip
RETRIEVAL_METRICS = TASKS["retrieval"].metrics
GENERATION_METRICS = TASKS["caption"].metrics


# ----------------------------------------------------------------------------------------------
# Fonts


@functools.lru_cache(maxsize=1)
def cjk_font() -> tuple[str, str] | None:
    """(family, file) of a CJK font that fontconfig knows and matplotlib can load, or None."""
    if shutil.which("fc-list") is None:
        return None
    try:
        listing = subprocess.run(
            ["fc-list", ":lang=zh", "file", "family"], capture_output=True, text=True, timeout=20, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    from matplotlib import font_manager

    candidates = []
    for line in listing.splitlines():
        path, _, fams = line.partition(":")
        path = path.strip()
        if not path or not Path(path).is_file() or not path.lower().endswith((".ttf", ".ttc", ".otf")):
            continue
        # Prefer well-known families, proportional before monospace.
        rank = (
            0
            if "micro hei" in fams.lower() and "mono" not in fams.lower()
            else 1
            if "cjk" in fams.lower()
            else 2
        )
        candidates.append((rank, path))
    for _, path in sorted(candidates):
        try:
            font_manager.fontManager.addfont(path)
            family = font_manager.FontProperties(fname=path).get_name()
        except Exception:  # unreadable font file: try the next one
            continue
        return family, path
    return None


@functools.lru_cache(maxsize=4096)
def _font_has(path: str, text: str) -> bool:
    from matplotlib import ft2font

    font = ft2font.FT2Font(path)
    return all(ch.isspace() or font.get_char_index(ord(ch)) != 0 for ch in text)


def plot_label(name: str, category_id: int | str, font: tuple[str, str] | None = None) -> str:
    """The category name when it can be drawn (ASCII, or every glyph in the CJK font), else ``cat <id>``."""
    if name and name.isascii():
        return name
    if font is not None and name and _font_has(font[1], name):
        return name
    return f"cat {category_id}"


# ----------------------------------------------------------------------------------------------
# Ranks from a predictions directory (for the plots; the scores themselves come from scoring)


def retrieval_rank_stats(
    pred_dir: Path, data_dir: Path, split: str, *, ties: str = "expected"
) -> dict[str, Any]:
    """Per-query rank statistics (:class:`~create_bench.metrics.retrieval.RankStats`) per retrieval
    group, for the plots. The queries and gallery are the predictions' own arrays in the order the
    scorer uses (multi-reference protocol), so the statistics summarise to the scored numbers."""
    from create_bench.metrics.retrieval import rank_statistics, ranks_from_similarity
    from create_bench.predictions import load_predictions
    from create_bench.types import parse_text_id

    preds = load_predictions(pred_dir)
    out: dict[str, Any] = {}
    if preds.video_ids is None:
        return out
    col = {v: j for j, v in enumerate(preds.video_ids)}
    for kind in preds.retrieval_kinds():
        rows, ids = preds.text_rows(kind)
        owner = np.array([col[parse_text_id(t)[0]] for t in ids], dtype=np.int64)
        own_texts: list[list[int]] = [[] for _ in preds.video_ids]
        for i, c in enumerate(owner):
            own_texts[c].append(i)
        if kind in preds.similarity:
            sim = preds.similarity[kind]
            out[f"t2v_{kind}"] = ranks_from_similarity(sim, owner, ties=ties)
            out[f"v2t_{kind}"] = ranks_from_similarity(sim.T, own_texts, ties=ties)
        else:
            assert preds.text_embeddings is not None and preds.video_embeddings is not None
            texts = np.asarray(preds.text_embeddings[rows])
            out[f"t2v_{kind}"] = rank_statistics(texts, preds.video_embeddings, owner, ties=ties)
            out[f"v2t_{kind}"] = rank_statistics(preds.video_embeddings, texts, own_texts, ties=ties)
    return out


def chance_levels(data_dir: Path, split: str, ks: Sequence[int] = (1, 5, 10)) -> dict[str, dict[str, float]]:
    """Scores of a uniformly random ranking, per retrieval group (what ``random`` should get), for
    results written before they carried their own ``chance`` (multi-reference protocol).

    See :func:`create_bench.metrics.chance.retrieval_chance`: T2V R@K = K/G and expected rank
    (G + 1)/2; V2T, a video with r texts among N: P(best rank <= K) = 1 - C(N - r, K)/C(N, K),
    expected best rank (N + 1)/(r + 1); MdR the expected median of the best ranks.
    """
    from create_bench.data.shards import read_table
    from create_bench.metrics.chance import retrieval_chance
    from create_bench.types import TEXT_COLUMN

    table = read_table(data_dir, split, columns=list(TEXT_COLUMN.values()))
    out: dict[str, dict[str, float]] = {}
    for kind, column in TEXT_COLUMN.items():
        counts = np.array([len(x or []) for x in table.column(column).to_pylist()], dtype=np.int64)
        if counts.size == 0 or (counts == 0).any():
            continue  # the scorer refuses this kind too
        chance = retrieval_chance(counts, ks)
        out[f"t2v_{kind}"], out[f"v2t_{kind}"] = chance["t2v"], chance["v2t"]
    return out


def _p_best_within(n: int, r: int, k: int) -> float:
    """P(at least one of r relevant among n items lands in the top k of a random order)."""
    from create_bench.metrics.chance import chance_recall

    return chance_recall(n, r, k)


# ----------------------------------------------------------------------------------------------
# Markdown


def _fmt(metric: str, value: Any) -> str:
    if value is None:
        return "–"
    return f"{float(value):.1f}"


def _ci(results: dict[str, Any], group: str, metric: str) -> str:
    ci = ((results.get("ci") or {}).get(group) or {}).get(metric)
    if isinstance(ci, dict):
        lo, hi = ci.get("low", ci.get("lo")), ci.get("high", ci.get("hi"))
    elif isinstance(ci, (list, tuple)) and len(ci) == 2:
        lo, hi = ci
    else:
        return ""
    if lo is None or hi is None:
        return ""
    return f" [{float(lo):.1f}, {float(hi):.1f}]"


def _cell(results: dict[str, Any], group: str, metric: str) -> str:
    value = ((results.get("scores") or {}).get(group) or {}).get(metric)
    return _fmt(metric, value) + (_ci(results, group, metric) if value is not None else "")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _arrow(metric: str) -> str:
    return f"{metric} ↓" if metric in ("MdR", "MnR") else f"{metric} ↑"


def retrieval_markdown(
    results: dict[str, Any], chance: dict[str, dict[str, float]] | None = None
) -> list[str]:
    scores = results.get("scores") or {}
    rows = []
    for group, texts, direction in RETRIEVAL_GROUPS:
        if group in scores:
            rows.append([texts, direction, *(_cell(results, group, m) for m in RETRIEVAL_METRICS)])
            if chance and group in chance:
                rows.append(
                    [
                        texts,
                        f"{direction} (chance)",
                        *(_fmt(m, chance[group].get(m)) for m in RETRIEVAL_METRICS),
                    ]
                )
    if not rows:
        return []
    lines = ["## Retrieval", "", *_table(["Texts", "Direction", *map(_arrow, RETRIEVAL_METRICS)], rows), ""]
    return lines + chance_check_markdown(results)


def _fmt_p(p: Any) -> str:
    if p is None:
        return "–"
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3f}"


def chance_check_markdown(results: dict[str, Any]) -> list[str]:
    """The family-wise "consistent with chance" check in words, and its Holm-adjusted p-values."""
    test = results.get("chance_test")
    if not isinstance(test, dict) or not isinstance(test.get("statement"), str):
        return []
    adjusted = test.get("adjusted") or {}
    flagged = {(d.get("group"), d.get("metric")) for d in test.get("differs") or [] if isinstance(d, dict)}
    rows = []
    for group, texts, direction in RETRIEVAL_GROUPS:
        if group in adjusted:
            cells = []
            for m in RETRIEVAL_METRICS:
                p = adjusted[group].get(m)
                cells.append(_fmt_p(p) + (" ✗" if (group, m) in flagged else ""))
            rows.append([texts, direction, *cells])
    by_test: dict[str, list[str]] = {}
    for metric, how_tested in (test.get("tests") or {}).items():
        by_test.setdefault(str(how_tested), []).append(str(metric))
    how = "; ".join(f"{', '.join(ms)}: {t}" for t, ms in by_test.items())
    lines = [
        "### Consistent with chance?",
        "",
        f"**{'Yes' if test.get('consistent') else 'No'}.** {test['statement']}",
        "",
        "Each number is tested against its chance level (the expected value under random ranking, "
        "the *chance* rows above) with a two-sided test on the same video resamples as its interval"
        + (f" ({how})" if how else "")
        + "; the p-values of all the run's retrieval numbers are adjusted together by Holm's method, "
        "so a model that ranks at random gets any number marked ✗ with probability at most "
        f"{float(test.get('alpha', 0.05)):.0%} (up to the tests' approximations). "
        "Holm-adjusted p-values (✗: differs from chance):",
        "",
        *_table(["Texts", "Direction", *RETRIEVAL_METRICS], rows),
        "",
    ]
    return lines


def generation_markdown(results: dict[str, Any]) -> list[str]:
    scores = results.get("scores") or {}
    rows = []
    for group in ("title", "caption"):
        if group in scores:
            rows.append([group, *(_cell(results, group, m) for m in GENERATION_METRICS)])
    if not rows:
        return []
    extra = sorted(
        {m for g in ("title", "caption") for m in (scores.get(g) or {}) if m not in GENERATION_METRICS}
    )
    header = ["Task", *GENERATION_METRICS, *extra]
    rows = [r + [_cell(results, r[0], m) for m in extra] for r in rows]
    return ["## Generation (×100)", "", *_table(header, rows), "", *_text_metric_lines(results, extra)]


#: Two sentences each: what the embedding metrics are (README "Metrics" has the exact definitions).
TEXT_METRIC_NOTES = {
    "BERTScore-F": "BERTScore-F matches every character of the generated text to its most similar reference "
    "character by cosine similarity of contextual encoder embeddings, and takes the harmonic mean of "
    "precision and recall, best reference per video. Unlike BLEU/CIDEr it credits paraphrases, but its "
    "values depend on the encoder and layer in the signature (and the baseline rescaling).",
    "ACTEr-r": "ACTEr-r is our reconstruction of CREATE's attractiveness metric ACTEr: the same matching, "
    "with each reference character's recall weighted by eps + the share of annotators who marked it "
    "attractive, so reproducing a title's hook counts more than its filler. It is not the paper's "
    "unpublished implementation and its numbers are not comparable with the paper's ACTEr.",
}


def _text_metric_lines(results: dict[str, Any], shown: Sequence[str]) -> list[str]:
    absent = (results.get("text_metrics") or {}).get("absent")
    lines = [f"- {TEXT_METRIC_NOTES[m]}" for m in ("BERTScore-F", "ACTEr-r") if m in shown]
    if isinstance(absent, str):
        lines.append(f"- {absent}.")
    return [*lines, ""] if lines else []


def per_category_rows(results: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """(columns, rows) of the headline score per category: [category id, name, n, score per column].

    Reads ``results["per_category"]``, shaped ``{category: {"name", "count"?, group: {metric: value}}}``
    or ``{group: {category: {metric: value}}}``; either is normalised here.
    """
    per = results.get("per_category") or {}
    if not per:
        return [], []
    groups = [(g, TASKS[t].main_score) for t in TASKS for g in TASKS[t].score_groups]
    by_cat: dict[str, dict[str, Any]] = {}
    if any(g in per for g, _ in groups):  # group-major
        for g, _ in groups:
            for cat, vals in (per.get(g) or {}).items():
                by_cat.setdefault(str(cat), {})[g] = vals
    else:
        by_cat = {str(c): dict(v) for c, v in per.items()}
    columns = [f"{g} {m}" for g, m in groups if any(g in v for v in by_cat.values())]
    rows = []
    for cat, vals in by_cat.items():
        name = vals.get("name") or vals.get("category_name") or cat
        count = vals.get("count", vals.get("n", vals.get("videos")))
        cells = []
        for g, m in groups:
            if f"{g} {m}" in columns:
                v = vals.get(g)
                cells.append(v.get(m) if isinstance(v, dict) else None)
        rows.append([vals.get("id", cat), name, count, *cells])

    def sort_key(r: list[Any]) -> tuple[int, str]:
        try:
            return (int(r[0]), "")
        except (TypeError, ValueError):
            return (1 << 30, str(r[0]))

    rows.sort(key=sort_key)
    return columns, rows


def per_category_markdown(results: dict[str, Any]) -> list[str]:
    columns, rows = per_category_rows(results)
    if not rows:
        return []
    header = ["Id", "Category", "Videos", *columns]
    body = [
        [
            str(r[0]),
            str(r[1]),
            "–" if r[2] is None else str(r[2]),
            *(_fmt(c, v) for c, v in zip(columns, r[3:])),
        ]
        for r in rows
    ]
    return ["## Per category", "", *_table(header, body), ""]


def _interval_note(results: dict[str, Any]) -> str:
    methods = (results.get("bootstrap") or {}).get("interval")
    if not isinstance(methods, dict):
        return ""
    return " (" + "; ".join(f"{k}: {v}" for k, v in methods.items()) + ")"


def _skip_lines(results: dict[str, Any]) -> list[str]:
    """Videos the build skipped and tasks that were not scored, as sentences."""
    out = []
    note = skipped_rows_note(results)
    if note:
        out.append(note)
    for task, why in (results.get("skipped_tasks") or {}).items():
        out.append(f"{TASK_LABELS.get(task, task)} not scored: {why}")
    return out


def markdown(results: dict[str, Any], *, chance: dict[str, dict[str, float]] | None = None,
             figures: Sequence[tuple[str, str]] = ()) -> str:  # fmt: skip
    """The report page as Markdown text (figures: (caption, relative path) pairs)."""
    model = results.get("model") or {}
    ds = results.get("dataset") or {}
    sig = results.get("signature")
    sig_s = sig if isinstance(sig, str) else (sig or {}).get("string", json.dumps(sig, ensure_ascii=False))
    lines = [f"# {model.get('name', 'model')} on {ds.get('name', 'dataset')} ({ds.get('split', '?')})", ""]
    facts = [
        (
            "Model",
            f"`{model.get('name')}` v{model.get('version', '?')}"
            + (f": {model['description']}" if model.get("description") else ""),
        ),
        ("Parameters", "–" if model.get("params") is None else f"{model['params']:,}"),
        ("Training data", ", ".join(model.get("training_data") or []) or "–"),
        ("Licence", model.get("license") or "–"),
        ("Model options", f"`{json.dumps(model.get('args') or {}, ensure_ascii=False, sort_keys=True)}`"),
        ("Dataset", f"{ds.get('name')} (fingerprint `{ds.get('fingerprint')}`), split `{ds.get('split')}`"),
    ]
    counts = ds.get("counts")
    if counts:
        facts.append(("Counts", ", ".join(f"{k}: {v}" for k, v in counts.items())))
    ev = results.get("eval") or {}
    if ev:
        facts.append(
            ("Inputs", f"{ev.get('inputs')}" + (f", frames `{ev['frames']}`" if ev.get("frames") else ""))
        )
    lines += _table(["", ""], [[k, str(v)] for k, v in facts]) + [""]
    skips = _skip_lines(results)
    if skips:
        lines += [f"- **{line[0].upper()}{line[1:]}.**" for line in skips] + [""]
    lines += [
        "R@K and captioning scores ×100; MdR/MnR are ranks. Brackets: 95% bootstrap interval over videos"
        + _interval_note(results)
        + ".",
        "",
    ]
    lines += retrieval_markdown(results, results.get("chance") or chance)
    lines += generation_markdown(results)
    lines += per_category_markdown(results)
    if figures:
        lines += ["## Plots", ""] + [f"![{cap}]({rel})" for cap, rel in figures] + [""]
    lines += ["## Signature", "", "```", str(sig_s), "```", ""]
    if results.get("created_at"):
        lines += [f"Created {results['created_at']} with create-bench {results.get('version', '')}.", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Plots


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def plot_rank_histogram(stats: dict[str, Any], path: Path) -> None:
    """Histogram of each query's expected rank (log-spaced bins), one panel per retrieval group."""
    plt = _figure()
    groups = [g for g, _, _ in RETRIEVAL_GROUPS if g in stats]
    fig, axes = plt.subplots(1, len(groups), figsize=(3.2 * len(groups), 2.8), squeeze=False)
    for ax, g in zip(axes[0], groups):
        ranks = stats[g].ranks
        top = max(2, int(stats[g].gallery_size))
        bins = np.unique(np.geomspace(1, top + 1, num=min(30, top) + 1).round())
        ax.hist(ranks, bins=bins, color="#4c72b0")
        ax.set_xscale("log")
        ax.set_title(g, fontsize=9)
        ax.set_xlabel("rank (expected, 1 = best)", fontsize=8)
    axes[0][0].set_ylabel("queries")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_recall_curve(stats: dict[str, Any], path: Path) -> None:
    """R@K for every K (log scale) per retrieval group, with the T2V chance diagonal K / G."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for g, _, _ in RETRIEVAL_GROUPS:
        if g not in stats:
            continue
        size = max(1, int(stats[g].gallery_size))
        ks = np.unique(np.geomspace(1, size, num=min(size, 60)).round().astype(int))
        ax.plot(ks, [100 * stats[g].recall_at(int(k)).mean() for k in ks], label=g)
    t2v = [g for g in ("t2v_caption", "t2v_title") if g in stats]
    if t2v:
        size = int(stats[t2v[0]].gallery_size)
        ks = np.arange(1, size + 1)
        ax.plot(ks, 100 * ks / size, "k--", linewidth=0.8, label="chance (T2V)")
    ax.set_xscale("log")
    ax.set_xlabel("K")
    ax.set_ylabel("R@K (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_per_category(results: dict[str, Any], path: Path) -> bool:
    """Bars of each task's headline score per category; False when the results have no categories."""
    columns, rows = per_category_rows(results)
    if not rows:
        return False
    plt = _figure()
    font = cjk_font()
    labels = [plot_label(str(r[1]), r[0], font) for r in rows]
    fig, axes = plt.subplots(
        1, len(columns), figsize=(3.0 * len(columns), 0.28 * len(rows) + 1.2), squeeze=False
    )
    for i, (ax, col) in enumerate(zip(axes[0], columns)):
        vals = [float(r[3 + i]) if r[3 + i] is not None else 0.0 for r in rows]
        ax.barh(range(len(rows)), vals, color="#55a868")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels(labels if i == 0 else [""] * len(rows), fontsize=7)
        if i == 0 and font is not None:
            for lab in ax.get_yticklabels():
                lab.set_fontfamily(font[0])
        ax.invert_yaxis()
        ax.set_title(col, fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------


def report_paths(results_path: Path) -> tuple[Path, Path]:
    """(Markdown file, figures dir) for a results JSON path."""
    results_path = Path(results_path)
    stem = results_path.with_suffix("") if results_path.suffix else results_path
    return stem.with_name(stem.name + ".md"), stem.with_name(stem.name + "-figures")


def write_report(
    results: dict[str, Any], results_path: Path, *, pred_dir: Path | None = None, data_dir: Path | None = None,
    split: str | None = None,
) -> Path:  # fmt: skip
    """Write ``<stem>.md`` and ``<stem>-figures/*.png`` next to ``results_path``; return the Markdown path.

    Plots of ranks need the predictions and the dataset; without them the report has the tables only.
    """
    md_path, fig_dir = report_paths(results_path)
    split = split or (results.get("dataset") or {}).get("split")
    stats: dict[str, Any] = {}
    chance = results.get("chance")
    if data_dir is not None and split:
        if not chance:  # results from before they carried their chance levels
            chance = chance_levels(Path(data_dir), split)
        if pred_dir is not None and any(g in (results.get("scores") or {}) for g, _, _ in RETRIEVAL_GROUPS):
            stats = retrieval_rank_stats(Path(pred_dir), Path(data_dir), split)
    figures: list[tuple[str, str]] = []
    with atomic_dir(fig_dir, owns=lambda p: p.is_file() and p.suffix == ".png", what="a report") as tmp:
        if stats:
            plot_rank_histogram(stats, tmp / "ranks.png")
            plot_recall_curve(stats, tmp / "recall_at_k.png")
            figures += [
                ("rank histogram", f"{fig_dir.name}/ranks.png"),
                ("recall@K", f"{fig_dir.name}/recall_at_k.png"),
            ]
        if plot_per_category(results, tmp / "per_category.png"):
            figures.append(("per-category scores", f"{fig_dir.name}/per_category.png"))
    atomic_write_text(md_path, markdown(results, chance=chance, figures=figures))
    return md_path

"""The board's view model (layer 5), shared by the server pages and the static render.

An *entry* is one scored model: ``{"id", "model_name", "team", "state", "created_at",
"results"}`` where ``results`` is a results JSON (ARCHITECTURE.md). This module turns entries
into per-task tables (retrieval, titling, captioning), renders them with Jinja2 (autoescaped:
every piece of user text is escaped), and renders the Markdown table of
``leaderboard/README.md``.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jinja2

RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")
CAPTION_METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
#: Embedding-based generation metrics, computed only when the server has a text encoder
#: (``--text-encoder``): BERTScore-F for titles and captions, ACTEr-r for titles.
TITLE_TEXT_METRICS = ("BERTScore-F", "ACTEr-r")
CAPTION_TEXT_METRICS = ("BERTScore-F",)
#: The line a table shows when its results have none of them and do not say why themselves.
TEXT_METRICS_ABSENT = "BERTScore-F and ACTEr-r not computed: these results were scored without a text encoder"
#: Metrics where a smaller number is better (ranks).
LOWER_IS_BETTER = frozenset({"MdR", "MnR"})


@dataclass(frozen=True)
class TaskView:
    key: str
    title: str
    #: (results group, column group label)
    groups: tuple[tuple[str, str], ...]
    metrics: tuple[str, ...]
    #: (group, metric) the table is sorted by at first.
    main: tuple[str, str]
    #: Metrics that need a text encoder: when the table has none, it says why in one line.
    text_metrics: tuple[str, ...] = ()


TASKS = (
    TaskView(
        "retrieval",
        "Retrieval",
        (
            ("t2v_caption", "T2V caption"),
            ("v2t_caption", "V2T caption"),
            ("t2v_title", "T2V title"),
            ("v2t_title", "V2T title"),
        ),
        RETRIEVAL_METRICS,
        ("t2v_caption", "R@1"),
    ),
    TaskView(
        "titling",
        "Titling",
        (("title", "Title generation"),),
        CAPTION_METRICS + TITLE_TEXT_METRICS,
        ("title", "CIDEr"),
        TITLE_TEXT_METRICS,
    ),
    TaskView(
        "captioning",
        "Captioning",
        (("caption", "Caption generation"),),
        CAPTION_METRICS + CAPTION_TEXT_METRICS,
        ("caption", "CIDEr"),
        CAPTION_TEXT_METRICS,
    ),
)


def fmt(value: Any) -> str:
    """Scores as the CREATE paper prints them: stored already x100 (R@K, captioning) or as ranks."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "–"
    return f"{value:.1f}"


def ci_bounds(results: dict[str, Any], group: str, metric: str) -> tuple[float, float] | None:
    """The 95% interval of a score, from ``results["ci"]`` in any of the shapes it may take."""
    ci = (results.get("ci") or {}).get(group, {}) if isinstance(results.get("ci"), dict) else {}
    value = ci.get(metric) if isinstance(ci, dict) else None
    if isinstance(value, dict):
        lo = value.get("low", value.get("lo", value.get("lower")))
        hi = value.get("high", value.get("hi", value.get("upper")))
    elif isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = value
    else:
        return None
    if all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in (lo, hi)):
        return float(lo), float(hi)  # type: ignore[arg-type]
    return None


def signature_text(results: dict[str, Any]) -> str:
    sig = results.get("signature")
    if isinstance(sig, str):
        return sig
    if isinstance(sig, dict):
        if isinstance(sig.get("string"), str):
            return sig["string"]
        from create_bench.signature import Signature

        fields = {k: v for k, v in sig.items() if k != "create-bench"}
        return Signature(str(sig.get("create-bench", "?")), **fields).format()
    return ""


@dataclass(frozen=True)
class Column:
    group: str
    group_label: str
    metric: str

    @property
    def order(self) -> str:
        return "asc" if self.metric in LOWER_IS_BETTER else "desc"


def _score(results: dict[str, Any], group: str, metric: str) -> float | None:
    scores = results.get("scores") or {}
    value = (scores.get(group) or {}).get(metric) if isinstance(scores.get(group), dict) else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def task_table(
    task: TaskView, entries: Sequence[dict[str, Any]], *, limit: int | None = None
) -> dict[str, Any]:
    """Columns and rows of one task's table; entries without any of its scores are left out.
    ``limit``: only the first rows in the table's order are built (``total`` counts them all)."""
    have = [
        e for e in entries if any(g in ((e.get("results") or {}).get("scores") or {}) for g, _ in task.groups)
    ]
    columns = []
    for group, label in task.groups:
        present = {m for e in have for m in (((e["results"].get("scores") or {}).get(group)) or {})}
        if not present:
            continue
        metrics = [m for m in task.metrics if m in present] + sorted(
            m for m in present if m not in task.metrics and _is_number_anywhere(have, group, m)
        )
        columns += [Column(group, label, m) for m in metrics]
    main = next(
        (i for i, c in enumerate(columns) if (c.group, c.metric) == task.main), 0 if columns else None
    )
    if main is not None:
        desc, mc = columns[main].order == "desc", columns[main]
        have.sort(key=lambda e: _sort_key(_score(e["results"], mc.group, mc.metric), desc))
    total = len(have)
    rows: list[dict[str, Any]] = []
    for e in have[:limit]:
        res = e["results"]
        cells = []
        for c in columns:
            value = _score(res, c.group, c.metric)
            ci = ci_bounds(res, c.group, c.metric)
            cells.append(
                {
                    "value": value,
                    "text": fmt(value),
                    "ci": f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "",
                    "sort": "" if value is None else repr(value),
                }
            )
        rows.append({"entry": e, "cells": cells, "signature": signature_text(res), "seen": test_data_seen(e)})
    signatures: dict[str, int] = {}
    for r in rows:  # numbered in display order; rows with the same signature share a number
        r["sig_n"] = signatures.setdefault(r["signature"], len(signatures) + 1)
    spans: list[tuple[str, int]] = []
    for c in columns:
        if spans and spans[-1][0] == c.group_label:
            spans[-1] = (c.group_label, spans[-1][1] + 1)
        else:
            spans.append((c.group_label, 1))
    absent = None
    if task.text_metrics and have and not any(c.metric in task.text_metrics for c in columns):
        absent = text_metrics_absent(have)
    return {
        "task": task,
        "columns": columns,
        "rows": rows,
        "total": total,
        "absent": absent,
        "spans": spans,
        "main": main,
        "signatures": [(n, sig) for sig, n in signatures.items()],
    }


def text_metrics_absent(entries: Iterable[dict[str, Any]]) -> str:
    """Why BERTScore-F/ACTEr-r are not on a table: the results' own line (``text_metrics.absent``,
    written by scoring), else :data:`TEXT_METRICS_ABSENT`."""
    for e in entries:
        note = _dict_field(e.get("results") or {}, "text_metrics").get("absent")
        if isinstance(note, str) and note:
            return note
    return TEXT_METRICS_ABSENT


def _sort_key(value: float | None, desc: bool) -> tuple[int, float]:
    if value is None:
        return (1, 0.0)
    return (0, -value if desc else value)


def _is_number_anywhere(entries: Iterable[dict[str, Any]], group: str, metric: str) -> bool:
    return any(_score(e["results"], group, metric) is not None for e in entries)


def tables(entries: Sequence[dict[str, Any]], *, limit: int | None = None) -> list[dict[str, Any]]:
    return [task_table(t, entries, limit=limit) for t in TASKS]


# --------------------------------------------------------------------------- boards

#: The team of the committed baselines: the board whose data they were scored on comes first.
BASELINE_TEAM = "create-bench baselines"
#: Scoring settings that change what a task's numbers mean. Entries that differ in any of them, or
#: in the dataset, fingerprint, split or protocol, are never ranked in one table. Model inputs
#: (frames, decode, features) differ between models by design and stay in the row's signature;
#: bootstrap and seed change only the intervals. ``bertscore``/``acter`` (the text encoder and its
#: settings) keep rows scored with and without an encoder, or with different ones, apart.
SETTING_FIELDS = ("tok", "norm", "ties", "refs", "metric", "bertscore", "acter")
SEEN_MARK = "\u2020"
SEEN_LEGEND = "test data seen during development (the model card declares test_data_seen: true)"


def parse_signature(sig: str) -> dict[str, str]:
    """``"create-bench:0.1.0|data:abc|split:test"`` -> ``{"create-bench": "0.1.0", "data": "abc", ...}``."""
    out: dict[str, str] = {}
    for part in sig.split("|") if sig else ():
        key, _, value = part.partition(":")
        out.setdefault(key, value)
    return out


def _dict_field(results: dict[str, Any], key: str) -> dict[str, Any]:
    """``results[key]`` if it is a dict, else an empty one."""
    value = results.get(key)
    return value if isinstance(value, dict) else {}


def board_key(results: dict[str, Any]) -> tuple[str, str, str, str]:
    """(dataset name, data fingerprint, split, protocol) of a results JSON."""
    ds = _dict_field(results, "dataset")
    fields = parse_signature(signature_text(results))
    protocol = results.get("protocol") if isinstance(results.get("protocol"), str) else None
    return (
        str(ds.get("name") or ""),
        str(ds.get("fingerprint") or fields.get("data", "")),
        str(ds.get("split") or fields.get("split", "")),
        str(protocol or fields.get("protocol", "")),
    )


def settings_key(results: dict[str, Any], task: TaskView) -> str:
    """The scoring settings of ``task``'s scores in ``results`` (from the per-group signatures)."""
    per_group = _dict_field(results, "signatures")
    sigs = [per_group[g] for g, _ in task.groups if isinstance(per_group.get(g), str)]
    if not sigs:
        sigs = [signature_text(results)]
    values: dict[str, set[str]] = {}
    for sig in sigs:
        for key, value in parse_signature(sig).items():
            if key in SETTING_FIELDS:
                values.setdefault(key, set()).add(value)
    return "|".join(f"{k}:{','.join(sorted(values[k]))}" for k in SETTING_FIELDS if k in values)


def test_data_seen(entry: dict[str, Any]) -> bool:
    """Whether the entry's model card declares that CREATE test data was seen."""
    if isinstance(entry.get("test_data_seen"), bool):
        return entry["test_data_seen"]
    for source in ((entry.get("results") or {}).get("model"), entry.get("model_card")):
        if isinstance(source, dict) and isinstance(source.get("test_data_seen"), bool):
            return source["test_data_seen"]
    return False


def boards(entries: Sequence[dict[str, Any]], *, limit: int | None = None) -> list[dict[str, Any]]:
    """Entries grouped into boards, one per (dataset, fingerprint, split, protocol); inside a board,
    one table per task and scoring settings. Nothing is ever ranked across boards.

    The board of the committed baselines' newest results comes first, then the newest others.
    With no entries, one board of empty tables (the page says there are no results yet).
    """
    if not entries:
        return [{"key": None, "heading": "", "tables": tables([]), "n": 0, "seen": False}]
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
    for e in entries:
        groups.setdefault(board_key(e.get("results") or {}), []).append(e)

    def order(item: tuple[tuple[str, str, str, str], list[dict[str, Any]]]) -> tuple[Any, ...]:
        stamps = [str(e.get("created_at") or "") for e in item[1]]
        base = [str(e.get("created_at") or "") for e in item[1] if e.get("team") == BASELINE_TEAM]
        return (bool(base), max(base, default=""), max(stamps, default=""))

    out = []
    for key, members in sorted(groups.items(), key=order, reverse=True):
        board_tables = []
        for task in TASKS:
            by_setting: dict[str, list[dict[str, Any]]] = {}
            for e in members:
                by_setting.setdefault(settings_key(e.get("results") or {}, task), []).append(e)
            for setting, group in sorted(by_setting.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                t = task_table(task, group, limit=limit)
                if t["rows"] or len(by_setting) == 1:
                    t["settings"] = setting if len(by_setting) > 1 else ""
                    board_tables.append(t)
        name, fingerprint, split, protocol = key
        heading = " · ".join(
            x
            for x in (
                name or "unnamed dataset",
                f"data {fingerprint or '?'}",
                f"split {split or '?'}",
                f"protocol {protocol}" if protocol else "",
            )
            if x
        )
        out.append(
            {
                "key": key,
                "heading": heading,
                "tables": board_tables,
                "n": len(members),
                "seen": any(test_data_seen(e) for e in members),
            }
        )
    return out


# --------------------------------------------------------------------------- HTML


@cache
def _asset(name: str) -> str:
    return resources.files("create_bench.leaderboard").joinpath("templates", name).read_text("utf-8")


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def content_security_policy() -> str:
    """Only our own inline script and style run; an injected script would be blocked even if
    escaping ever failed (defence in depth)."""
    return (
        "default-src 'none'; "
        f"script-src '{_csp_hash(_asset('sort.js'))}'; "
        f"style-src '{_csp_hash(_asset('board.css'))}'; "
        "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("create_bench.leaderboard", "templates"),
        autoescape=True,  # every {{ }} is HTML-escaped; user text is never marked safe
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        fmt=fmt, sort_js=_asset("sort.js"), board_css=_asset("board.css"), csp=content_security_policy()
    )
    return env


def render_board_html(
    entries: Sequence[dict[str, Any]],
    *,
    title: str = "create-bench leaderboard",
    subtitle: str = "",
    links: bool = True,
    pending: Sequence[dict[str, Any]] = (),
    meta_csp: bool = False,
    limit: int | None = None,
) -> str:
    """The board page: one sortable table per task. ``links``: link rows to submission pages.
    ``limit``: at most that many rows per table (the best by its main score), with a note."""
    return (
        environment()
        .get_template("board.html")
        .render(
            title=title,
            subtitle=subtitle,
            boards=boards(entries, limit=limit),
            seen_mark=SEEN_MARK,
            seen_legend=SEEN_LEGEND,
            links=links,
            pending=pending,
            meta_csp=meta_csp,
        )
    )


def render_submission_html(sub: dict[str, Any]) -> str:
    results = sub.get("results") or {}
    groups = []
    for task in TASKS:
        for group, label in task.groups:
            scores = (results.get("scores") or {}).get(group)
            if not isinstance(scores, dict):
                continue
            metrics = [m for m in task.metrics if m in scores] + sorted(
                m for m in scores if m not in task.metrics
            )
            rows = []
            for m in metrics:
                ci = ci_bounds(results, group, m)
                rows.append(
                    {
                        "metric": m,
                        "text": fmt(_score(results, group, m)),
                        "ci": f"[{fmt(ci[0])}, {fmt(ci[1])}]" if ci else "",
                    }
                )
            groups.append({"label": f"{task.title}: {label}", "rows": rows})
    card = sub.get("model_card") or {}
    url = card.get("url")
    safe_url = url if isinstance(url, str) and url.startswith(("https://", "http://")) else None
    return (
        environment()
        .get_template("submission.html")
        .render(
            title=f"{sub.get('model_name', '')} — submission {sub.get('id')}",
            sub=sub,
            card=card,
            url=safe_url,
            groups=groups,
            signature=signature_text(results),
        )
    )


# --------------------------------------------------------------------------- Markdown


def md_escape(text: Any) -> str:
    """Plain text for a Markdown table cell: no HTML, no table breaks, no links or emphasis."""
    s = " ".join(str(text).split())
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|#!":
        s = s.replace(ch, "\\" + ch)
    return s


def render_markdown(entries: Sequence[dict[str, Any]]) -> str:
    """The README tables: one board per (dataset, fingerprint, split, protocol), each headed by its
    fingerprint, with one table per task, scores with 95% intervals, and the signatures."""
    if not entries:
        return (
            "_No results yet: add results JSON files to `leaderboard/results/` and run `make leaderboard`._\n"
        )
    out: list[str] = []
    all_boards = boards(entries)
    if len(all_boards) > 1:
        out.append(
            f"{len(all_boards)} boards: results on different data (fingerprint), splits or protocols "
            "are never ranked together.\n"
        )
    for b in all_boards:
        out += _markdown_board(b)
    out.append(
        "R@K and captioning metrics x100; MdR/MnR are ranks (lower is better); 95% bootstrap intervals in brackets."
    )
    return "\n".join(out) + "\n"


def _markdown_board(b: dict[str, Any]) -> list[str]:
    out = [f"### {md_escape(b['heading'])}\n"]
    sigs: dict[str, int] = {}
    for t in b["tables"]:
        if not t["rows"]:
            continue
        settings = f" ({md_escape(t['settings'])})" if t.get("settings") else ""
        out.append(f"#### {t['task'].title}{settings}\n")
        head = (
            ["Model", "Team"]
            + [f"{c.group_label} {c.metric}" if len(t["spans"]) > 1 else c.metric for c in t["columns"]]
            + ["Sig."]
        )
        out.append("| " + " | ".join(md_escape(h) for h in head) + " |")
        out.append("|" + "|".join(["---", "---"] + ["---:"] * len(t["columns"]) + ["---"]) + "|")
        for r in t["rows"]:
            n = sigs.setdefault(r["signature"], len(sigs) + 1)
            model = md_escape(r["entry"].get("model_name", "")) + (f" {SEEN_MARK}" if r["seen"] else "")
            cells = [model, md_escape(r["entry"].get("team", ""))]
            cells += [c["text"] + (f" <sub>{c['ci']}</sub>" if c["ci"] else "") for c in r["cells"]]
            cells.append(f"[{n}]")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        if t.get("absent"):
            out.append(f"_{md_escape(t['absent'])}._\n")
    if b["seen"]:
        out.append(f"{SEEN_MARK} {SEEN_LEGEND}.\n")
    if sigs:
        out.append("Signatures:\n")
        for sig, n in sigs.items():
            out.append(f"- [{n}] `{sig.replace('`', '')}`" if sig else f"- [{n}] (none)")
        out.append("")
    return out

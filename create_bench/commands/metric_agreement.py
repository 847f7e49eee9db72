"""``create-bench metric-agreement``: how well each metric agrees with human judgments.

Judgments: JSON Lines ``{"vid", "kind": "title"|"caption", "candidate", "annotator", "score"}``. An
item is one (vid, kind, candidate); its human score is the mean over its annotators. Every item is
scored against its video's references of that kind in the split (BLEU-4 per sentence, ROUGE-L,
CIDEr with document frequencies from the whole split's references; BERTScore-F and ACTEr-r with
``--text-encoder``), and each metric is correlated with the mean human score.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.commands._text import add_text_encoder_args, text_options
from create_bench.errors import DataError

NGRAM_METRICS = ("BLEU-4", "ROUGE-L", "CIDEr")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "metric-agreement",
        help="correlate each metric with human judgments (Pearson, Spearman, Kendall x100)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--judgments", required=True, metavar="FILE", help="human judgments (JSON Lines)")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset directory (the references)")
    p.add_argument("--split", default="test", help="split (default test)")
    p.add_argument(
        "--tokenizer", default="jieba", choices=("jieba", "char"), help="tokens for the n-gram metrics"
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of items (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--out", default=None, metavar="JSON", help="write the correlations here")
    add_text_encoder_args(p)
    p.set_defaults(func=run)


def read_judgments(path: str | Path) -> dict[tuple[str, str, str], list[float]]:
    """(vid, kind, candidate) -> the scores its annotators gave (file order)."""
    items: dict[tuple[str, str, str], list[float]] = {}
    seen: set[tuple[Any, ...]] = set()
    for n, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            j = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not JSON: {exc.msg}", path=str(path), row=n) from exc
        vid = j.get("vid") if isinstance(j, dict) else None
        where: dict[str, Any] = {"path": str(path), "row": n, "vid": vid if isinstance(vid, str) else None}
        if not isinstance(j, dict) or not isinstance(vid, str) or j.get("kind") not in ("title", "caption"):
            raise DataError('each line needs "vid" (str) and "kind" ("title" or "caption")', **where)
        cand, score = j.get("candidate"), j.get("score")
        if not isinstance(cand, str) or not cand.strip():
            raise DataError('"candidate" must be a non-empty string', **where)
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score):
            raise DataError(f'"score" must be a finite number, got {score!r}', **where)
        key = (vid, j["kind"], cand)
        who = (key, j.get("annotator"))
        if who in seen:
            raise DataError(f"annotator {j.get('annotator')!r} judged this candidate twice", **where)
        seen.add(who)
        items.setdefault(key, []).append(float(score))
    if len(items) < 3:
        raise DataError(f"need judgments of at least 3 candidates, got {len(items)}", path=str(path))
    return items


def _ngram_values(
    items: Sequence[tuple[str, str, str]], refs: Any, kind: str, tokenizer: str
) -> dict[str, np.ndarray]:
    """Per-item BLEU-4, ROUGE-L, CIDEr: one scoring pass per "round" (the k-th candidate of each
    video), each over the whole split (so CIDEr's document frequencies are the split's)."""
    from create_bench.metrics.captioning import caption_statistics

    references = dict(zip(refs.vids, refs.texts[kind]))
    out = {m: np.zeros(len(items)) for m in NGRAM_METRICS}
    rounds: dict[str, int] = {}
    slots: list[dict[str, int]] = []
    for i, (vid, _, _) in enumerate(items):
        r = rounds.get(vid, 0)
        rounds[vid] = r + 1
        if r == len(slots):
            slots.append({})
        slots[r][vid] = i
    for slot in slots:
        preds = {
            v: (items[slot[v]][2] if v in slot else refs.texts[kind][k][0]) for k, v in enumerate(refs.vids)
        }
        stats = caption_statistics(preds, references, tokenizer=tokenizer)
        row = {v: k for k, v in enumerate(stats.vids)}
        for vid, i in slot.items():
            k = row[vid]
            one = np.zeros((1, len(stats)))
            one[0, k] = 1.0
            bleu = stats.weighted_scores(one)
            out["BLEU-4"][i] = float(bleu["BLEU-4"][0])
            out["ROUGE-L"][i] = 100 * float(stats.rouge[k])
            out["CIDEr"][i] = 100 * float(stats.cider[k])
    return out


def metric_agreement(
    judgments: str | Path,
    data_dir: str | Path,
    split: str,
    *,
    tokenizer: str = "jieba",
    text_encoder: Any = None,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """metric -> {Pearson, Spearman, Kendall (x100), ci: measure -> [low, high]} plus ``items``."""
    from create_bench.features.text_metrics import embedding_statistics, load_omega
    from create_bench.metrics.agreement import correlation_intervals, correlations
    from create_bench.scoring import load_references

    raw = read_judgments(judgments)
    refs = load_references(data_dir, split)
    index = {v: k for k, v in enumerate(refs.vids)}
    unknown = sorted({v for v, _, _ in raw} - set(index))
    if unknown:
        raise DataError(
            f"{len(unknown)} judged vids are not in split {split!r}: {unknown[:5]}", path=str(judgments)
        )
    items = sorted(raw)
    human = np.array([np.mean(raw[k]) for k in items])
    values: dict[str, np.ndarray] = {}
    kinds = sorted({k for _, k, _ in items})
    for kind in kinds:
        sel = [i for i, it in enumerate(items) if it[1] == kind]
        sub = [items[i] for i in sel]
        parts = _ngram_values(sub, refs, kind, tokenizer)
        if text_encoder is not None:
            texts = [refs.texts[kind][index[v]] for v, _, _ in sub]
            omega = None
            if kind == "title":
                om = load_omega(data_dir, split, refs.vids, [len(t) for t in refs.texts[kind]])
                omega = None if om is None else [om[index[v]] for v, _, _ in sub]
            st = embedding_statistics(
                text_encoder,
                [v for v, _, _ in sub],
                [c for _, _, c in sub],
                texts,
                omega,
                acter=kind == "title",
            )
            parts.update({k: v for k, v in st.per_video().items() if k in ("BERTScore-F", "ACTEr-r")})
        for m, v in parts.items():
            values.setdefault(m, np.full(len(items), np.nan))[sel] = v
    out: dict[str, Any] = {"items": len(items), "kinds": kinds, "metrics": {}}
    for m, v in values.items():
        ok = ~np.isnan(v)  # ACTEr-r: title items only
        entry: dict[str, Any] = correlations(v[ok], human[ok])
        entry["items"] = int(ok.sum())
        if bootstrap:
            entry["ci"] = correlation_intervals(v[ok], human[ok], n_boot=bootstrap, seed=seed)
        out["metrics"][m] = entry
    return out


_PAPER_NAME = {"BERTScore-F": "BERTScore", "ACTEr-r": "ACTEr"}


def format_agreement(res: dict[str, Any], absent: str | None = None) -> str:
    from create_bench.metrics.agreement import MEASURES, PAPER_REPORTED

    lines = [
        f"Agreement with the mean human score over {res['items']} judged candidates "
        f"({', '.join(res['kinds'])}); x100, [95% bootstrap interval over items]",
        f"{'metric':<12}" + "".join(f"{m:>24}" for m in MEASURES) + "   paper (reported, P/S/K)",
    ]
    for m, e in res["metrics"].items():
        cells = "".join(
            f"{e[k]:>8.1f} " + (f"[{e['ci'][k][0]:.1f}, {e['ci'][k][1]:.1f}]" if "ci" in e else "").ljust(15)
            for k in MEASURES
        )
        paper = PAPER_REPORTED.get(_PAPER_NAME.get(m, m))
        lines.append(f"{m:<12}{cells}   " + ("/".join(f"{x:.1f}" for x in paper) if paper else "–"))
    lines.append("paper: CREATE journal version (TPAMI 2024) as reported there, on its own judgments; ACTEr-r is a "
                 "reconstruction, not the paper's ACTEr")  # fmt: skip
    if absent:
        lines.append(absent)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from create_bench.features.text_metrics import ABSENT

    opts = text_options(args)
    res = metric_agreement(
        args.judgments,
        args.data,
        args.split,
        tokenizer=args.tokenizer,
        text_encoder=opts,
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    print(format_agreement(res, None if opts else ABSENT))
    if args.out:
        Path(args.out).write_text(json.dumps(res, ensure_ascii=False, indent=2) + "\n", "utf-8")
        print(f"wrote {args.out}")
    return 0

"""Shared parts of the ablation harnesses (ALWIG's and RCG's; application code): evaluate a model
through the harness, compare two prediction directories with a paired bootstrap over the same
video resamples, and the Markdown tables of scores and paired differences."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: (score group, metric, column title) of the headline columns.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("t2v_caption", "R@1", "T2V cap R@1"),
    ("v2t_caption", "R@1", "V2T cap R@1"),
    ("t2v_title", "R@1", "T2V title R@1"),
    ("v2t_title", "R@1", "V2T title R@1"),
    ("t2v_caption", "R@5", "T2V cap R@5"),
    ("title", "BLEU-4", "Title BLEU-4"),
    ("title", "CIDEr", "Title CIDEr"),
    ("caption", "BLEU-4", "Caption BLEU-4"),
    ("caption", "CIDEr", "Caption CIDEr"),
)
Columns = Sequence[tuple[str, str, str]]


def ablation_parser(
    description: str, model: str, label: str, variants: Iterable[str], split: str
) -> argparse.ArgumentParser:
    """The options both ablation harnesses take (checkpoints under ``checkpoints/<model>-ablations``,
    results under ``results/<model>-ablations``); ``label`` names the model in help texts."""
    names = ",".join(variants)
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="data/create-sample")
    p.add_argument(
        "--out", default=f"checkpoints/{model}-ablations", help="checkpoint root (one directory per variant)"
    )
    p.add_argument(
        "--config",
        default=None,
        help=f"{label} config (default: the dataset's, sample.yaml for CREATE-sample)",
    )
    p.add_argument("--split", default=split)
    p.add_argument("--results", default=f"results/{model}-ablations")
    p.add_argument("--report", default=None, help="Markdown file to write (default: print)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--retrain", action="store_true", help="train even when a checkpoint exists")
    p.add_argument("--variants", default=names, help="comma-separated subset of " + names)
    return p


def evaluate(
    name: str,
    model_args: dict[str, Any],
    data: str | Path,
    split: str,
    results: str | Path,
    bootstrap: int,
    tag: str,
) -> Any:
    """Evaluate model ``name`` with ``model_args`` on ``split``; results under ``results/tag/``."""
    from create_bench.models import load_model
    from create_bench.runner import EvalConfig
    from create_bench.runner import evaluate as run_eval
    from create_bench.scoring import ScoringOptions

    model = load_model(name, model_args)
    cfg = EvalConfig(
        Path(data),
        split=split,
        results_dir=Path(results),
        out=Path(results) / tag / f"{split}.json",
        scoring=ScoringOptions(bootstrap=bootstrap),
        report=False,
    )
    return run_eval(model, cfg, model_args=model_args, model_spec=name)


def cell(results: dict[str, Any], group: str, metric: str) -> str:
    """``score [low, high]`` of one metric (``-`` when the system has no such score)."""
    score = results["scores"].get(group, {}).get(metric)
    if score is None:
        return "-"
    ci = results.get("ci", {}).get(group, {}).get(metric)
    return f"{score:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]" if ci else f"{score:.1f}"


def table(rows: list[tuple[str, dict[str, Any]]], columns: Columns = COLUMNS) -> list[str]:
    """Markdown table of every system's scores with intervals."""
    head = "| system | " + " | ".join(c[2] for c in columns) + " |"
    lines = [head, "|" + "---|" * (len(columns) + 1)]
    for name, res in rows:
        lines.append(f"| {name} | " + " | ".join(cell(res, g, m) for g, m, _ in columns) + " |")
    return lines


def paired(a: Any, b: Any, data: str | Path, split: str, bootstrap: int) -> dict[str, Any]:
    """Paired bootstrap of outcome ``a`` minus outcome ``b`` (same video resamples)."""
    from create_bench.scoring import compare_predictions

    return compare_predictions(a.predictions_dir, b.predictions_dir, data, split, bootstrap=bootstrap)


def paired_lines(label: str, test: dict[str, Any], columns: Columns = COLUMNS) -> list[str]:
    """One Markdown row of paired differences ``delta [low, high]``, ``*`` when 0 is outside."""
    cells = []
    for g, m, _ in columns:
        t = test.get(g, {}).get(m)
        if t is None:
            cells.append("-")
        else:
            lo, hi = t["ci"]
            mark = " *" if lo > 0 or hi < 0 else ""
            cells.append(f"{t['delta']:+.1f} [{lo:+.1f}, {hi:+.1f}]{mark}")
    return [f"| {label} | " + " | ".join(cells) + " |"]

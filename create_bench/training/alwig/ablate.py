"""ALWIG ablations on CREATE-sample (application code, like the trainer; the library never imports it).

Trains (or reuses) three checkpoints with the same config and seed, differing only in the ablated
part, evaluates each and the simple baselines through the harness on one split, and writes a
Markdown report with every score, its bootstrap 95% interval, and paired bootstrap tests of ALWIG
against each baseline and each ablation (same video resamples)::

    python -m create_bench.training.alwig.ablate --data data/create-sample --out checkpoints/alwig-ablations \\
        --report create_bench/models/alwig/ABLATIONS.md

- ``full``: ALWIG as configured;
- ``no-tags``: no tags in the alignment module (``use_tags: false``: only [CLS] [SEP] on the tag side);
- ``no-extensions``: the paper's architecture at the config's sizes (every extension off);
- ``no-align``: no alignment (contrastive) loss (``use_align: false``; the text encoder stays at
  its random initialisation, so retrieval is expected near chance).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from pathlib import Path
from typing import Any

from create_bench.models.alwig.config import Extensions
from create_bench.training.ablation import COLUMNS, ablation_parser, evaluate, paired, paired_lines, table

VARIANTS: dict[str, dict[str, Any]] = {
    "full": {},
    "no-tags": {"use_tags": False},
    "no-align": {"use_align": False},
    # the paper's architecture at the config's sizes: every extension off (named "alwig", not
    # "alwig+ext", in its results)
    "no-extensions": {"extensions": Extensions()},
}
BASELINES = ("random", "raw-title", "nearest-neighbour")
log = logging.getLogger("alwig.ablate")


def _cfg(args: argparse.Namespace) -> Any:
    from create_bench.models.alwig.config import config_for_dataset

    return config_for_dataset(args.data, args.config)


def _train(variant: str, args: argparse.Namespace) -> Path:
    from create_bench.models.alwig.config import config_for_dataset
    from create_bench.training.alwig.train import TrainOptions, train

    out = Path(args.out) / variant
    if (out / "config.json").is_file() and not args.retrain:
        log.info("reusing %s", out)
        return out
    cfg = config_for_dataset(args.data, args.config, **VARIANTS[variant])
    train(TrainOptions(Path(args.data), out, cfg, cache_dir=Path(args.cache_dir) if args.cache_dir else None))
    return out


def _evaluate(name: str, model_args: dict[str, Any], args: argparse.Namespace, tag: str) -> Any:
    return evaluate(name, model_args, args.data, args.split, args.results, args.bootstrap, tag)


def _paired(a: Any, b: Any, args: argparse.Namespace) -> dict[str, Any]:
    return paired(a, b, args.data, args.split, args.bootstrap)


def _parser() -> argparse.ArgumentParser:
    return ablation_parser(__doc__.splitlines()[0], "alwig", "ALWIG", VARIANTS, split="test")


def _report(
    args: argparse.Namespace, variants: list[str], outcomes: dict[str, Any], meta: dict[str, Any]
) -> str:
    """The Markdown report: scores with intervals, paired differences, the training runs."""
    first = next(iter(outcomes.values())).results
    lines = [
        "# ALWIG ablations on CREATE-sample",
        "",
        f"Split `{args.split}` of `{first['dataset']['name']}` (fingerprint `{first['dataset']['fingerprint']}`), "
        f"{first['dataset'].get('counts', {}).get('videos', '?')} videos. Scores as the CREATE paper prints "
        "them (x100); brackets: bootstrap 95% intervals over videos "
        f"({args.bootstrap} resamples). Every ALWIG variant: the same config "
        f"(`{args.config or 'create_bench/models/alwig/configs/sample.yaml'}`), seed and data, differing only "
        "in the ablated part; selected on validation; decoding as configured "
        f"(beam {_cfg(args).beam_size}, no-repeat n-gram {_cfg(args).no_repeat_ngram}).",
        "",
        "Signature: `" + first["signature"] + "`",
        "",
        "Regenerate with `python -m create_bench.training.alwig.ablate --data data/create-sample "
        "--report create_bench/models/alwig/ABLATIONS.md` (reuses checkpoints under "
        "`checkpoints/alwig-ablations/`; `--retrain` to train again).",
        "",
        "## Scores",
        "",
        *table([(k, o.results) for k, o in outcomes.items()]),
        "",
    ]
    if "full" in variants:
        full = outcomes["ALWIG"]
        lines += [
            "## Paired differences (ALWIG minus the other system)",
            "",
            "Paired bootstrap over the same video resamples: difference [95% interval]; `*` = the interval excludes 0.",
            "",
            "| ALWIG vs | " + " | ".join(c[2] for c in COLUMNS) + " |",
            "|" + "---|" * (len(COLUMNS) + 1),
        ]
        for name, o in outcomes.items():
            if name != "ALWIG":
                lines += paired_lines(name, _paired(full, o, args))
        lines.append("")
    lines += ["## Training runs", ""]
    for v, m in meta.items():
        lines.append(
            f"- `{v}`: best epoch {m.get('best_epoch')} (validation {m.get('selected_by')} {m.get('best_val', float('nan')):.4f}), "
            f"{m.get('seconds')} s of training on {m.get('device')}"
        )
    lines += [
        "",
        f"_Generated {_dt.date.today().isoformat()} by `create_bench/training/alwig/ablate.py`._",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}")

    outcomes: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for v in variants:
        ck = _train(v, args)
        outcomes[f"ALWIG ({v})" if v != "full" else "ALWIG"] = _evaluate(
            "alwig", {"checkpoint": str(ck)}, args, f"alwig-{v}"
        )
        meta[v] = json.loads((ck / "config.json").read_text("utf-8"))["training"]
    for b in BASELINES:
        outcomes[b] = _evaluate(b, {}, args, b)

    text = _report(args, variants, outcomes, meta)
    if args.report:
        from create_bench.fsutil import atomic_write_text

        atomic_write_text(args.report, text)
        print(f"wrote {args.report}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

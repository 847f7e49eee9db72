"""RCG ablations (application code, like the trainer; the library never imports it).

Trains (or reuses) one checkpoint per variant with the same config and seed, differing only in
the ablated part, evaluates each through the harness on one split, and writes a Markdown report
with every score, its bootstrap 95% interval and paired bootstrap tests (same video resamples) of
RCG against each variant and each system given with ``--against`` (earlier results, e.g. ALWIG's;
the report and comparison functions are :mod:`create_bench.training.ablation`, shared with ALWIG's
harness)::

    python -m create_bench.training.rcg.ablate --data data/create-sample --split validation
    python -m create_bench.training.rcg.ablate --data data/create-sample --split test \\
        --full k3 --against alwig+ext=results/alwig+ext/create-sample-test.json \\
        --report create_bench/models/rcg/ABLATIONS.md

- ``k1``, ``k3``, ``k5``: that many retrieved sentences (pointers) per video;
- ``no-copy``: the generator alone (``k: 0``: no retrieval, no pointer, no gate);
- ``copy-only``: no generator: the top-1 retrieved sentence (the ``retrieved-title`` floor, run
  on the ``--full`` variant's checkpoint, whose retriever every variant shares: same seed, data
  and retriever config).

Choose ``--full`` (the k that becomes the default) on ``--split validation``, never on test.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from create_bench.training.ablation import COLUMNS, ablation_parser, evaluate, paired, paired_lines, table

VARIANTS: dict[str, dict[str, Any]] = {
    "k1": {"k": 1},
    "k3": {"k": 3},
    "k5": {"k": 5},
    "no-copy": {"k": 0},
    "copy-only": {},  # the retrieved-title floor on the --full variant's checkpoint
}
log = logging.getLogger("rcg.ablate")


def _train(variant: str, args: argparse.Namespace) -> Path:
    from create_bench.models.rcg.config import config_for_dataset
    from create_bench.training.rcg.train import TrainOptions, train

    out = Path(args.out) / variant
    if (out / "config.json").is_file() and not args.retrain:
        log.info("reusing %s", out)
        return out
    cfg = config_for_dataset(args.data, args.config, **VARIANTS[variant])
    train(TrainOptions(Path(args.data), out, cfg, cache_dir=Path(args.cache_dir) if args.cache_dir else None))
    return out


def _against(spec: str) -> tuple[str, Any]:
    """``LABEL=results.json``: an earlier evaluation (its predictions beside it, without ``.json``)."""
    label, sep, path = spec.partition("=")
    p = Path(path)
    if not sep or not label or not p.is_file() or not p.with_suffix("").is_dir():
        raise SystemExit(
            f"--against wants LABEL=RESULTS.json with its predictions directory beside it, got {spec!r}"
        )
    return label, SimpleNamespace(results=json.loads(p.read_text("utf-8")), predictions_dir=p.with_suffix(""))


def _parser() -> argparse.ArgumentParser:
    p = ablation_parser((__doc__ or "").splitlines()[0], "rcg", "RCG", VARIANTS, split="validation")
    p.add_argument(
        "--full",
        default="k3",
        help="the variant RCG is (chosen on validation); the others are compared with it",
    )
    p.add_argument(
        "--against", action="append", default=[], help="LABEL=RESULTS.json of another system (repeatable)"
    )
    return p


def _report(args: argparse.Namespace, outcomes: dict[str, Any], meta: dict[str, Any]) -> str:
    """The Markdown report: scores with intervals, paired differences, the training runs."""
    first = next(iter(outcomes.values())).results
    ds = first["dataset"]
    full = f"RCG ({args.full})"
    lines = [
        "# RCG ablations",
        "",
        f"Split `{args.split}` of `{ds['name']}` (fingerprint `{ds['fingerprint']}`), "
        f"{ds.get('counts', {}).get('videos', '?')} videos. Scores as the CREATE paper prints them (x100); "
        f"brackets: bootstrap 95% intervals over videos ({args.bootstrap} resamples). Every RCG variant: the "
        f"same config (`{args.config or 'create_bench/models/rcg/configs/sample.yaml'}`), seed and data, "
        "differing only in the ablated part; each stage selected on validation. `copy-only` is the "
        f"`retrieved-title` floor on the `{args.full}` checkpoint. Systems after the variants come from "
        "`--against` (earlier evaluations of the same split). Training seconds are each run's own "
        "wall clock on whatever else the machine was running."
        + (
            f" `{args.full}` is the variant chosen on the validation split (`--split validation`), never on this one."
            if args.split != "validation"
            else ""
        ),
        "",
        "Signature: `" + first["signature"] + "`",
        "",
        "Regenerate with `python -m create_bench.training.rcg.ablate " + " ".join(args.argv) + "`.",
        "",
        "## Scores",
        "",
        *table([(k, o.results) for k, o in outcomes.items()]),
        "",
    ]
    if full in outcomes:
        lines += [
            f"## Paired differences ({full} minus the other system)",
            "",
            "Paired bootstrap over the same video resamples: difference [95% interval]; `*` = the interval excludes 0.",
            "",
            f"| {full} vs | " + " | ".join(c[2] for c in COLUMNS) + " |",
            "|" + "---|" * (len(COLUMNS) + 1),
        ]
        for name, o in outcomes.items():
            if name != full:
                lines += paired_lines(name, paired(outcomes[full], o, args.data, args.split, args.bootstrap))
        lines.append("")
    lines += ["## Training runs", ""]
    for v, m in meta.items():
        st = m.get("stages", {})
        lines.append(
            f"- `{v}`: {m.get('seconds')} s of training on {m.get('device')} (retriever: best epoch "
            f"{st.get('retriever', {}).get('best_epoch')}, {st.get('retriever', {}).get('seconds')} s; generator: best "
            f"epoch {st.get('generator', {}).get('best_epoch')}, validation cross-entropy "
            f"{st.get('generator', {}).get('best_val')}, {st.get('generator', {}).get('seconds')} s)"
        )
    lines += ["", f"_Generated {_dt.date.today().isoformat()} by `create_bench/training/rcg/ablate.py`._", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or args.full not in VARIANTS or args.full == "copy-only":
        p.error(f"unknown variant(s) {unknown or [args.full]}")
    against = [_against(a) for a in args.against]
    outcomes: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    order = [args.full] + [v for v in variants if v != args.full]
    for v in order:
        if v == "copy-only":
            ck = _train(args.full, args)
            outcomes["retrieved-title (copy-only)"] = evaluate(
                "retrieved-title",
                {"checkpoint": str(ck)},
                args.data,
                args.split,
                args.results,
                args.bootstrap,
                "copy-only",
            )
            continue
        ck = _train(v, args)
        outcomes[f"RCG ({v})"] = evaluate(
            "rcg", {"checkpoint": str(ck)}, args.data, args.split, args.results, args.bootstrap, f"rcg-{v}"
        )
        meta[v] = json.loads((ck / "config.json").read_text("utf-8"))["training"]
    outcomes.update(dict(against))
    text = _report(args, outcomes, meta)
    if args.report:
        from create_bench.fsutil import atomic_write_text

        atomic_write_text(args.report, text)
        print(f"wrote {args.report}")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``create-bench score``: score a predictions directory against a dataset split."""

from __future__ import annotations

import argparse

from create_bench.commands._scoring import add_scoring_arguments, scoring_options
from create_bench.commands._text import add_text_encoder_args, text_options


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "score",
        help="score a predictions directory (retrieval, title and caption generation)",
        description=(
            "Score PRED_DIR (generations.jsonl; video/text embeddings with id files; or similarity "
            "matrices) against a split of a create-bench dataset. Prints the paper-style table and the "
            "signature; --out writes the results JSON."
        ),
    )
    p.add_argument("--predictions", required=True, metavar="PRED_DIR", help="predictions directory")
    p.add_argument("--data", required=True, metavar="DIR", help="dataset directory (with the references)")
    p.add_argument("--split", default="test", help="split (default test)")
    add_scoring_arguments(p)
    p.add_argument("--ci", action="store_true", help="print the 95%% intervals in the table")
    p.add_argument("--out", default=None, metavar="RESULTS_JSON", help="write the results JSON here")
    p.add_argument(
        "--against",
        default=None,
        metavar="PRED_DIR_B",
        help="also run a paired bootstrap test of PRED_DIR against this second system",
    )
    add_text_encoder_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from create_bench.results import format_table, write_results
    from create_bench.scoring import score_predictions

    options = scoring_options(args, text_encoder=text_options(args))
    results = score_predictions(args.predictions, args.data, args.split, options)
    print(format_table(results, show_ci=args.ci))
    if args.out:
        path = write_results(args.out, results)
        print(f"results: {path}")
    if args.against:
        from create_bench.scoring import compare_predictions

        comparison = compare_predictions(
            args.predictions,
            args.against,
            args.data,
            args.split,
            options,
            bootstrap=max(options.bootstrap, 1),
        )
        print()
        print(format_comparison(comparison, args.predictions, args.against))
    return 0


def format_comparison(comparison: dict, name_a: str, name_b: str) -> str:
    """One line per group and metric: A, B, A - B with its 95% interval, and the p-value."""
    lines = [f"Paired bootstrap: A = {name_a}, B = {name_b} (two-sided p-value of A - B = 0)"]
    lines.append(f"{'group':<12} {'metric':<8} {'A':>7} {'B':>7} {'A - B':>7}  {'95% interval':<16} {'p':>6}")
    for group, metrics in comparison.items():
        for metric, r in metrics.items():
            lo, hi = r["ci"]
            lines.append(
                f"{group:<12} {metric:<8} {r['a']:7.1f} {r['b']:7.1f} {r['delta']:7.1f}  "
                f"{f'[{lo:.1f}, {hi:.1f}]':<16} {r['p_value']:6.3f}"
            )
    return "\n".join(lines)

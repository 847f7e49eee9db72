"""``create-bench score``: score a predictions directory against a dataset split."""

from __future__ import annotations

import argparse

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
    p.add_argument("--tokenizer", default="jieba", choices=("jieba", "char"), help="captioning tokenizer")
    p.add_argument(
        "--protocol",
        default="multi-reference",
        choices=("multi-reference", "single-reference"),
        help="every text of a video (default) or only its first",
    )
    p.add_argument(
        "--ties",
        default="expected",
        choices=("expected", "optimistic", "pessimistic"),
        help="retrieval tie policy (default expected: random tie-breaking in expectation)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for 95%% CIs (0: none)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument(
        "--metric-backend",
        default="fast",
        choices=("fast", "coco"),
        help="captioning scorers: fast (default, numpy) or coco (pycocoevalcap's; the same scores)",
    )
    p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs Java)")
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

    results = score_predictions(
        args.predictions,
        args.data,
        args.split,
        tokenizer=args.tokenizer,
        protocol=args.protocol,
        bootstrap=args.bootstrap,
        seed=args.seed,
        meteor=args.meteor,
        ties=args.ties,
        metric_backend=args.metric_backend,
        text_encoder=text_options(args),
    )
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
            tokenizer=args.tokenizer,
            protocol=args.protocol,
            bootstrap=max(args.bootstrap, 1),
            seed=args.seed,
            ties=args.ties,
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

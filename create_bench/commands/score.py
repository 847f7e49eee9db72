"""``create-bench score``: score a predictions directory against a dataset split."""

from __future__ import annotations

import argparse


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
    p.add_argument("--data", required=True, metavar="DIR", help="dataset directory")
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
    p.add_argument("--meteor", action="store_true", help="also compute METEOR (needs Java)")
    p.add_argument("--ci", action="store_true", help="print the 95%% intervals in the table")
    p.add_argument("--out", default=None, metavar="RESULTS_JSON", help="write the results JSON here")
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
    )
    print(format_table(results, show_ci=args.ci))
    if args.out:
        path = write_results(args.out, results)
        print(f"results: {path}")
    return 0

"""``create-bench eval``: evaluate a model on a split (retrieval, titling, captioning) in one command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from create_bench.commands._scoring import add_scoring_arguments, scoring_options
from create_bench.commands._text import add_text_encoder_args, text_options

DEFAULT_DATA = "data/create-sample"
log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model: predictions dir, results JSON and report",
        description=(
            "Evaluate MODEL on a split of a dataset. Writes the predictions directory "
            "(results/<model>/<dataset>-<split>/), the results JSON (results/<model>/<dataset>-<split>.json, "
            "or --out) and a Markdown report with plots next to it. Same inputs reuse cached predictions."
        ),
    )
    p.add_argument(
        "--model",
        required=True,
        help="registered name (random, raw-title, nearest-neighbour, alwig), path/to/file.py:Class, or "
        "package.module:Class (importable, or a module file in the current directory); the class "
        "implements encode_videos+encode_texts and/or generate",
    )
    p.add_argument(
        "--data",
        default=DEFAULT_DATA,
        help=f"dataset directory (default {DEFAULT_DATA}, generated when missing); its splits: train, "
        "validation, test (and pretrain in CREATE-sample, pretrain-3m/pretrain-10m in a build)",
    )
    p.add_argument("--split", default="test", help="split to evaluate (default test)")
    p.add_argument(
        "--tasks",
        default=None,
        help="comma-separated: retrieval,title,caption (default: all the model supports)",
    )
    p.add_argument(
        "--frames", default=None, help="frame policy (default: the model's, normally uniform-center@8)"
    )
    p.add_argument("--batch-size", type=int, default=16, help="videos per model call (default 16)")
    p.add_argument("--num-workers", type=int, default=0, help="decoding worker processes (default 0)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--model-args", default=None, help="YAML/JSON file of model constructor options")
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE.json",
        help="results JSON file; must end in .json and must not be a directory (checked before the model "
        "runs). The predictions directory is the same path without .json "
        "(default: RESULTS_DIR/<model>/<dataset>-<split>.json)",
    )
    p.add_argument(
        "--results-dir", default="results", help="root of the default output layout (default results)"
    )
    p.add_argument("--no-cache", action="store_true", help="run the model even when cached predictions match")
    add_scoring_arguments(p, seed_help="seed for the model context and the bootstrap")
    p.add_argument("--no-report", action="store_true", help="skip the Markdown report and plots")
    p.add_argument("--ci", action="store_true", help="print the 95%% intervals in the table")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace results that another model class with the same name wrote (refused otherwise)",
    )
    add_text_encoder_args(p)
    p.set_defaults(func=run)


def _ensure_data(data: str) -> Path:
    path = Path(data)
    if (path / "manifest.json").is_file():
        return path
    if Path(data).resolve() == Path(DEFAULT_DATA).resolve():
        from create_bench.synthetic.sample import generate_sample

        print(
            f"{data} is missing: generating CREATE-sample first (create-bench sample --out {data})",
            file=sys.stderr,
        )
        generate_sample(path)
        return path
    from create_bench.errors import ConfigError

    raise ConfigError(
        f"no dataset at {data} (no manifest.json); build one or use create-bench sample --out {data}"
    )


def run(args: argparse.Namespace) -> int:
    from create_bench.models import load_model, load_model_args
    from create_bench.results import format_table
    from create_bench.runner import EvalConfig, evaluate, summary_line

    # Options first (--out, --tasks, ...): a bad one must fail before the model is built or run.
    cfg = EvalConfig(
        data_dir=Path(args.data),
        split=args.split,
        tasks=tuple(args.tasks.split(",")) if args.tasks else None,
        frames=args.frames,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        device=args.device,
        out=Path(args.out) if args.out else None,
        results_dir=Path(args.results_dir),
        no_cache=args.no_cache,
        seed=args.seed,
        scoring=scoring_options(args, text_encoder=text_options(args)),
        report=not args.no_report,
        overwrite=args.overwrite,
    )
    _ensure_data(args.data)
    model_args = load_model_args(args.model_args)
    model = load_model(args.model, model_args)
    outcome = evaluate(model, cfg, model_args=model_args, model_spec=args.model)
    print(format_table(outcome.results, show_ci=args.ci))
    print(f"predictions: {outcome.predictions_dir}" + (" (cached)" if outcome.cached else ""))
    print(f"results:     {outcome.results_path}")
    if outcome.report_path is not None:
        print(f"report:      {outcome.report_path}")
    print(summary_line(outcome.results))
    return 0

"""``create-bench submit PATH``: validate a leaderboard submission locally, then upload it to a
server or score it into a local board."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "submit",
        help="validate a leaderboard submission, then upload it (--server) or score it locally (--local)",
        description="Validate a submission (a predictions directory with model_card.yaml, or a .tar.gz) "
        "and upload it to a leaderboard server or score it into a local board. Format: leaderboard/README.md.",
    )
    p.add_argument("path", help="submission directory or .tar.gz")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--server", metavar="URL", help="leaderboard server, e.g. http://127.0.0.1:8000")
    where.add_argument(
        "--local", metavar="DIR", help="score locally into this board directory (e.g. leaderboard/)"
    )
    p.add_argument("--token", help="team token for --server (default: $CREATE_BENCH_TOKEN)")
    p.add_argument("--data", metavar="DIR", help="dataset: checks the id sets; required with --local")
    p.add_argument("--split", default="test")
    p.add_argument(
        "--tokenizer", default="jieba", choices=["jieba", "char"], help="--local scoring tokenizer"
    )
    p.add_argument(
        "--metric-backend",
        default="fast",
        choices=("fast", "coco"),
        help="--local captioning scorers: fast (default, numpy) or coco (pycocoevalcap's; the same scores)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="--local bootstrap resamples for the CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--wait", action="store_true", help="with --server: wait until it is scored, print the scores"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the upload and for --wait")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from create_bench.errors import ConfigError, SubmissionError
    from create_bench.leaderboard import client

    if args.local and not args.data:
        raise ConfigError("--local scores against references: give --data DIR")
    summary = client.validate(args.path, data_dir=args.data, split=args.split)
    checked = "files, model card, predictions" + (
        f", ids of the {args.split} split" if summary["ids_checked"] else ""
    )
    print(
        f"valid submission {summary['model_name']!r}: tasks {', '.join(summary['tasks']) or 'none'} ({checked})"
    )
    if args.local:
        out, results = client.score_local(
            args.path,
            args.local,
            data_dir=args.data,
            split=args.split,
            tokenizer=args.tokenizer,
            metric_backend=args.metric_backend,
            bootstrap=args.bootstrap,
            seed=args.seed,
        )
        print(f"scored: {out}; board re-rendered in {args.local}")
        print(_summary(results))
        return 0
    if not args.server:
        print(
            "validated only (give --server URL --token TOKEN to upload, or --local DIR --data DIR to score)"
        )
        return 0
    token = client.resolve_token(args.token)
    answer = client.upload(args.path, args.server, token, timeout=args.timeout)
    print(f"accepted: submission {answer['id']} ({answer['state']}) {args.server.rstrip('/')}{answer['url']}")
    if args.wait:
        answer = client.wait(args.server, answer["id"], timeout=args.timeout)
        if answer["state"] == "failed":
            raise SubmissionError(f"submission {answer['id']} failed: {answer['error']}")
        if answer["state"] != "finished":
            raise SubmissionError(
                f"submission {answer['id']} is still {answer['state']} after {args.timeout}s"
            )
        print(_summary(answer["results"]))
    if args.json:
        print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0


def _summary(results: dict) -> str:
    from create_bench.leaderboard.board import fmt, signature_text

    lines = []
    for group, scores in (results.get("scores") or {}).items():
        if isinstance(scores, dict):
            lines.append(f"  {group}: " + "  ".join(f"{k} {fmt(v)}" for k, v in scores.items()))
    lines.append(f"  signature: {signature_text(results)}")
    return "\n".join(lines)

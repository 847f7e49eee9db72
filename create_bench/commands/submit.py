"""``create-bench submit PATH``: validate a leaderboard submission locally, then upload it to a
server or score it into a local board."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from create_bench.commands._scoring import add_scoring_arguments, scoring_options
from create_bench.commands._text import add_text_encoder_args, text_options


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
    p.add_argument(
        "--data",
        metavar="DIR",
        help="dataset: checks the id sets; with --local, default: the dataset create-bench eval recorded "
        "next to the predictions",
    )
    card = p.add_argument_group("model card (fill or override what model_card.yaml lacks)")
    card.add_argument("--team", help="team or authors shown on the board")
    card.add_argument(
        "--test-data-seen",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether any CREATE test video, title or caption was used for training or model "
        "selection; required unless the card says",
    )
    card.add_argument(
        "--create-configs",
        metavar="LIST",
        help="CREATE configs used for training or selection, comma-separated (train, validation, "
        "pretrain, pretrain-3m, pretrain-10m; '' for none); default: what create-bench eval recorded",
    )
    p.add_argument("--split", default="test", help="split the submission predicts")
    add_scoring_arguments(p, scope="--local ")
    add_text_encoder_args(p)  # --local only: a server scores with its own setting
    p.add_argument(
        "--wait", action="store_true", help="with --server: wait until it is scored, print the scores"
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds for the upload and for --wait")
    p.add_argument("--json", action="store_true", help="print the server's answer as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from create_bench.errors import ConfigError
    from create_bench.leaderboard import client

    fields = client.CardFields(
        team=args.team,
        test_data_seen=args.test_data_seen,
        create_configs=_configs(args.create_configs),
    )
    if args.text_encoder and not args.local:
        raise ConfigError(
            "--text-encoder applies to --local scoring; a leaderboard server scores BERTScore-F and "
            "ACTEr-r with its own encoder (leaderboard serve --text-encoder)"
        )
    data = args.data
    if args.local and not data:
        data = client.recorded_data_dir(args.path)
        print(f"--data {data} (recorded by create-bench eval)")
    with client.prepared(args.path, fields) as path:
        return _submit(args, path, data)


def _configs(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _submit(args: argparse.Namespace, path: Any, data: str | os.PathLike[str] | None) -> int:
    from create_bench.errors import SubmissionError
    from create_bench.leaderboard import client

    summary = client.validate(path, data_dir=data, split=args.split)
    checked = "files, model card, predictions" + (
        f", ids of the {args.split} split" if summary["ids_checked"] else ""
    )
    print(
        f"valid submission {summary['model_name']!r}: tasks {', '.join(summary['tasks']) or 'none'} ({checked})"
    )
    if args.local:
        assert data is not None  # run() fills it in for --local (--data or recorded_data_dir)
        entry = client.score_local(
            path,
            args.local,
            data_dir=data,
            split=args.split,
            options=scoring_options(args, text_encoder=text_options(args)),
        )
        team = entry.results["model"].get("team")
        what = "replaced this team's earlier entry" if entry.replaced else "new entry"
        print(f"scored: {entry.path} ({what}: {summary['model_name']!r} of team {team!r})")
        print(f"board re-rendered in {args.local}")
        print(_summary(entry.results))
        return 0
    if not args.server:
        print(
            "validated only (give --server URL --token TOKEN to upload, or --local DIR --data DIR to score)"
        )
        return 0
    token = client.resolve_token(args.token)
    answer = client.upload(path, args.server, token, timeout=args.timeout)
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

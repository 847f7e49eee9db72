"""The scoring options every scoring command shares (``score``, ``eval``, ``submit``,
``leaderboard serve/worker``): added to a parser once, turned into one
:class:`create_bench.scoring.ScoringOptions` once."""

from __future__ import annotations

import argparse
from typing import Any

#: argparse destination -> ScoringOptions field, for the options :func:`add_scoring_arguments` adds.
_FIELDS = ("tokenizer", "protocol", "ties", "bootstrap", "seed", "metric_backend", "meteor")


def add_scoring_arguments(
    p: argparse.ArgumentParser | Any, *, scope: str = "", seed_help: str | None = None
) -> None:
    """Add ``--tokenizer --protocol --ties --bootstrap --seed --metric-backend --meteor``.

    ``scope`` prefixes each help text (``"--local "`` for ``submit``); ``seed_help`` replaces the
    seed's (``eval`` also seeds the model with it).
    """
    p.add_argument(
        "--tokenizer",
        default="jieba",
        choices=("jieba", "char"),
        help=f"{scope}captioning tokenizer",
    )
    p.add_argument(
        "--protocol",
        default="multi-reference",
        choices=("multi-reference", "single-reference"),
        help=f"{scope}references: every text of a video (default) or only its first",
    )
    p.add_argument(
        "--ties",
        default="expected",
        choices=("expected", "optimistic", "pessimistic"),
        help=f"{scope}retrieval tie policy (default expected: random tie-breaking in expectation)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=1000, help=f"{scope}bootstrap resamples for 95%% CIs (0: none)"
    )
    p.add_argument("--seed", type=int, default=0, help=seed_help or f"{scope}bootstrap seed")
    p.add_argument(
        "--metric-backend",
        default="fast",
        choices=("fast", "coco"),
        help=f"{scope}captioning scorers: fast (default, numpy) or coco (pycocoevalcap's; the same scores)",
    )
    p.add_argument("--meteor", action="store_true", help=f"{scope}also compute METEOR (needs Java)")


def scoring_options(args: argparse.Namespace, **extra: Any) -> Any:
    """The :class:`~create_bench.scoring.ScoringOptions` of parsed arguments (checked there), with
    ``extra`` fields (``text_encoder=``, from :mod:`create_bench.commands._text`)."""
    from create_bench.scoring import ScoringOptions

    return ScoringOptions(**{name: getattr(args, name) for name in _FIELDS}, **extra)


def scoring_argv(options: Any) -> list[str]:
    """The command-line arguments that :func:`scoring_options` (with the text encoder's flags,
    :func:`create_bench.commands._text.text_options`) turns back into ``options`` (how ``leaderboard
    serve`` hands its options to the worker processes it starts)."""
    from create_bench.commands._text import text_argv
    from create_bench.scoring import text_metric_options

    argv: list[str] = []
    for name in _FIELDS:
        value = getattr(options, name)
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            argv += [flag] if value else []
        else:
            argv += [flag, str(value)]
    return argv + text_argv(text_metric_options(options.text_encoder))

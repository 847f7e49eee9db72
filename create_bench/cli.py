"""The ``create-bench`` command. Sub-commands live in ``create_bench/commands/<name>.py``; each
module defines ``register(subparsers)`` which adds its parser and sets ``func=run``. This is the
only place where errors become exit codes: a :class:`CreateBenchError` keeps its own exit code,
anything else is one line and exit code 1 (with ``--debug``: the traceback)."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
import traceback

from create_bench import __version__
from create_bench.errors import CreateBenchError

DESCRIPTION = """\
create-bench: a benchmark and evaluation suite for Chinese short-video retrieval and
title/caption generation (after the CREATE paper).

Main commands:
  sample     generate CREATE-sample, a small synthetic CREATE-shaped dataset
  build      import the official CREATE release (JSON + videos [+ features]) into shards
  validate   re-check a dataset (hashes, schema, row counts, ids)
  stats      dataset statistics for a data card
  eval       evaluate a model (retrieval, titles, captions): predictions, results JSON, report
  score      score a predictions directory against a split
  submit     validate a leaderboard submission and upload or score it

A dataset is given with --data DIR in every command that reads one. Its splits are train,
validation and test; the pre-training config is 'pretrain' in CREATE-sample and
'pretrain-3m' / 'pretrain-10m' in a build of the real release.
"""

EPILOG = """\
example:
  create-bench sample --out data/create-sample
  create-bench eval --model raw-title --data data/create-sample --split test
  create-bench score --predictions results/raw-title/create-sample-test --data data/create-sample

'create-bench COMMAND --help' describes a command and its options.
"""


class _DefaultsFormatter(argparse.HelpFormatter):
    """States an option's default in its help unless the help already does (or there is none)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            action.option_strings
            and action.default is not None
            and action.default is not False  # a flag (0 is a default worth stating)
            and action.default != argparse.SUPPRESS
            and text != argparse.SUPPRESS
            and "default" not in text.lower()
        ):
            text += " (default: %(default)s)"
        return text


class _RawDefaultsFormatter(argparse.RawDescriptionHelpFormatter, _DefaultsFormatter):
    """:class:`_DefaultsFormatter` for parsers whose description is laid out by hand."""


def _add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """-v, --debug and --no-progress, before the command or after it (``create-bench eval ... --debug``).
    After it they default to SUPPRESS, so they never undo the same option given before the command."""
    options = {
        ("-v", "--verbose"): "debug logging",
        ("--debug",): "show the Python traceback of an unexpected error (default: one line and exit code 1)",
        (
            "--no-progress",
        ): "no progress output (default: a bar on a terminal, else a line on stderr now and then)",
    }
    for flags, text in options.items():
        if any(f in parser._option_string_actions for f in flags):
            continue  # the command has its own (train --no-progress)
        kw: dict[str, object] = {} if top else {"default": argparse.SUPPRESS}
        parser.add_argument(*flags, action="store_true", help=text, **kw)  # type: ignore[arg-type]


def _finish(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every sub-command parser below it the formatters above, and the global
    options to every parser that runs a command."""
    fmt = parser.formatter_class
    raw = isinstance(fmt, type) and issubclass(fmt, argparse.RawDescriptionHelpFormatter)
    parser.formatter_class = _RawDefaultsFormatter if raw else _DefaultsFormatter
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for action in subs:
        for sub in action.choices.values():
            _finish(sub)
    if not subs:
        _add_global_options(parser, top=False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="create-bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"create-bench {__version__}")
    _add_global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import create_bench.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"create_bench.commands.{info.name}")
        module.register(sub)
    _finish(parser)
    return parser


def describe_error(exc: BaseException) -> str:
    """One line for an unexpected exception: its type and message (OSError: with the file)."""
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(f) for f in (exc.filename, exc.filename2) if f is not None]
        message = exc.strerror + (f": {' -> '.join(names)}" if names else "")
    else:
        message = str(exc)
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return " ".join(text.split())  # one line, whatever the message holds


def main(argv: list[str] | None = None) -> int:
    from create_bench import progress

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    prog = f"create-bench {args.command}"
    previous = progress.configure(not args.no_progress)
    try:
        rc = args.func(args)
    except CreateBenchError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # anything unexpected: one line, unless --debug asks for the traceback
        if args.debug:
            traceback.print_exc()
            print(f"{prog}: error: {describe_error(exc)}", file=sys.stderr)
        else:
            print(
                f"{prog}: error: {describe_error(exc)} (run with --debug for the traceback)",
                file=sys.stderr,
            )
        return 1
    finally:
        progress.configure(previous)
    return int(rc or 0)

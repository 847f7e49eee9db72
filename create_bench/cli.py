"""The ``create-bench`` command. Sub-commands live in ``create_bench/commands/<name>.py``; each
module defines ``register(subparsers)`` which adds its parser and sets ``func=run``. This is the
only place where errors become exit codes."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from create_bench import __version__
from create_bench.errors import CreateBenchError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="create-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"create-bench {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import create_bench.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"create_bench.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except CreateBenchError as exc:
        print(f"create-bench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"create-bench {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)

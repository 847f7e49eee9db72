"""The dataset argument shared by commands that read one: ``--data DIR`` everywhere, and in the
commands that took a positional ``DIR`` before (``validate``, ``stats``) that form too."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_data_argument(p: argparse.ArgumentParser, *, help: str = "dataset directory") -> None:
    """Add ``--data DIR`` and the older positional ``DIR`` (either may be given; both must agree)."""
    p.add_argument(
        "path", nargs="?", metavar="DIR", help=f"{help}; the same as --data DIR (kept for older scripts)"
    )
    p.add_argument("--data", metavar="DIR", help=f"{help} (required unless given as DIR)")


def data_dir(args: argparse.Namespace) -> str:
    """The dataset directory from ``--data`` or the positional ``DIR``.

    Raises:
        ConfigError: neither given, or both given and naming different directories.
    """
    from create_bench.errors import ConfigError

    positional, option = args.path, args.data
    if positional is None and option is None:
        raise ConfigError("no dataset given: use --data DIR")
    if positional is not None and option is not None:
        if Path(positional).resolve() != Path(option).resolve():
            raise ConfigError(
                f"two different datasets given: DIR {positional} and --data {option}; give one of them"
            )
    return str(option if option is not None else positional)

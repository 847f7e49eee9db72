"""``create-bench validate DIR``: re-check a dataset (hashes, schema, row counts, ids, rows)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="re-check a dataset: manifest hashes, schema, row counts, ids")
    p.add_argument("path")
    p.add_argument("--no-rows", action="store_true", help="skip per-row checks (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from create_bench.data.shards import open_dataset
    from create_bench.data.validate import validate_dataset

    counts = validate_dataset(args.path, rows=not args.no_rows)
    info = open_dataset(args.path)
    print(
        f"OK {info.name} fingerprint {info.fingerprint}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0

"""``create-bench validate --data DIR`` (or ``validate DIR``): re-check a dataset (hashes, schema, row
counts, ids, rows)."""

from __future__ import annotations

import argparse

from create_bench.commands._data import add_data_argument, data_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="re-check a dataset: manifest hashes, schema, row counts, ids",
        description=(
            "Re-check a dataset against its manifest: file hashes, schema, row counts, unique ids and "
            "(unless --no-rows) every row. Prints the dataset's name, fingerprint and rows per split."
        ),
    )
    add_data_argument(p)
    p.add_argument("--no-rows", action="store_true", help="skip per-row checks (faster)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from create_bench.data.shards import open_dataset
    from create_bench.data.validate import validate_dataset

    path = data_dir(args)
    counts = validate_dataset(path, rows=not args.no_rows)
    info = open_dataset(path)
    print(
        f"OK {info.name} fingerprint {info.fingerprint}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
    )
    return 0

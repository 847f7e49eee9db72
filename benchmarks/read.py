"""Streaming read throughput of the create-bench reader vs plain ``pyarrow.dataset`` on the same files.

Two workloads: text columns only (what captioning scoring and tokenisers read) and video bytes
(what the frame loader reads). Ratios are ours / pyarrow (1.0 = same speed); both run in this process.

    python benchmarks/read.py --data data/create-sample
"""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_time, ensure_data, parser, ratio_line  # noqa: E402

from create_bench.data import shards  # noqa: E402

TEXT = ["vid", "tags", "raw_title", "titles", "captions", "category"]
VIDEO = ["vid", "video"]


def ours(data: Path, split: str, cols: list[str], parts: int = 1) -> tuple[int, int]:
    rows = nbytes = 0
    for p in range(parts):
        for b in shards.iter_batches(data, split, cols, batch_size=256, rank=p, world_size=parts):
            rows += b.num_rows
            nbytes += b.nbytes
    return rows, nbytes


def baseline(data: Path, split: str, cols: list[str]) -> tuple[int, int]:
    files = [str(f) for f in shards.open_dataset(data).files(split)]
    rows = nbytes = 0
    for b in pads.dataset(files, format="parquet").to_batches(columns=cols, batch_size=256):
        rows += b.num_rows
        nbytes += b.nbytes
    return rows, nbytes


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    data = ensure_data(args.data)
    split = "train"
    print(f"dataset {data} split {split}: {shards.open_dataset(data).num_rows(split)} rows")
    for name, cols in (("text columns", TEXT), ("video bytes", VIDEO)):
        t_ours, (rows, nbytes) = best_time(lambda c=cols: ours(data, split, c), args.repeat)
        t_base, (rows_b, _) = best_time(lambda c=cols: baseline(data, split, c), args.repeat)
        assert rows == rows_b, (rows, rows_b)
        print(ratio_line(f"{name} rows/s", rows / t_ours, rows / t_base, "rows/s"))
        print(ratio_line(f"{name} MB/s", nbytes / t_ours / 1e6, nbytes / t_base / 1e6, "MB/s"))
        t4, (rows4, _) = best_time(lambda c=cols: ours(data, split, c, parts=4), args.repeat)
        assert rows4 == rows
        print(ratio_line(f"{name} rows/s, 4 partitions in turn", rows / t4, rows / t_base, "rows/s"))


if __name__ == "__main__":
    main()

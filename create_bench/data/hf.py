"""The HF-layout dataset card (README.md) written next to the shards (layer 2).

Its YAML ``configs:`` block lets ``datasets.load_dataset(dir)`` find the splits: the default config
holds train/validation/test, each pre-training split is its own config.
"""

from __future__ import annotations

from typing import Any

import yaml

from create_bench.data.schema import EVAL_SPLITS


def configs_yaml(splits: dict[str, int]) -> list[dict[str, Any]]:
    configs: list[dict[str, Any]] = []
    eval_splits = [s for s in EVAL_SPLITS if s in splits]
    if eval_splits:
        configs.append(
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*.parquet"} for s in eval_splits],
                "default": True,
            }
        )
    for s in sorted(splits):
        if s not in EVAL_SPLITS:
            configs.append(
                {"config_name": s, "data_files": [{"split": "train", "path": f"data/{s}-*.parquet"}]}
            )
    return configs


def dataset_info_yaml(splits: dict[str, int], num_bytes: dict[str, int]) -> list[dict[str, Any]]:
    """Split sizes per config. Features are not repeated here: they travel in each shard's Arrow
    metadata (``video`` as ``Video(decode=False)``, ``category`` as ``ClassLabel``), which a YAML
    ``features`` block would override (YAML cannot say ``decode: false``)."""
    infos = []
    eval_splits = [s for s in EVAL_SPLITS if s in splits]
    if eval_splits:
        infos.append(
            {
                "config_name": "default",
                "splits": [
                    {"name": s, "num_bytes": num_bytes.get(s, 0), "num_examples": splits[s]}
                    for s in eval_splits
                ],
            }
        )
    for s in sorted(splits):
        if s not in EVAL_SPLITS:
            infos.append(
                {
                    "config_name": s,
                    "splits": [
                        {"name": "train", "num_bytes": num_bytes.get(s, 0), "num_examples": splits[s]}
                    ],
                }
            )
    return infos


def render_readme(name: str, splits: dict[str, int], num_bytes: dict[str, int], *, body: str = "") -> str:
    front = {
        "language": ["zh"],
        "task_categories": ["text-to-video", "video-text-to-text"],
        "pretty_name": name,
        "configs": configs_yaml(splits),
        "dataset_info": dataset_info_yaml(splits, num_bytes),
    }
    text = yaml.safe_dump(front, allow_unicode=True, sort_keys=False)
    rows = "\n".join(f"| {s} | {n} |" for s, n in splits.items())
    body = body or (
        f"# {name}\n\nWritten by create-bench. Load with `datasets.load_dataset(path)` or "
        "`create_bench.data.shards.iter_batches(path, split)`.\n\n| split | videos |\n|---|---|\n"
        + rows
        + "\n"
    )
    return f"---\n{text}---\n\n{body}"

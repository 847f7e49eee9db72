"""``create-bench validate DIR``: re-check a dataset against its manifest and the shard contract.

Besides the manifest's own files, it checks what ``datasets.load_dataset(DIR)`` will read: every file
under ``data/`` and ``features/`` must be listed in ``manifest.json`` (a stray shard copied in would be
read by the HF loader and fail there with ``NonMatchingSplitsSizesError``), the ``data_files``
patterns of README.md's YAML ``configs:`` must match exactly the manifest's shards of each split, and
the split sizes of its ``dataset_info`` (when present) must equal the manifest's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from create_bench.data.build import fingerprint_of
from create_bench.data.fingerprint import METHOD as FINGERPRINT_METHOD
from create_bench.data.fingerprint import content_fingerprint, row_digest
from create_bench.data.schema import arrow_schema, validate_row
from create_bench.data.shards import open_dataset
from create_bench.errors import DataError, ManifestError
from create_bench.fsutil import sha256_file


def validate_dataset(path: str | os.PathLike[str], *, rows: bool = True) -> dict[str, int]:
    """Check hashes, schema, row counts, unique ids and (with ``rows``) every row. Returns rows per
    split. Raises ManifestError listing every problem found."""
    info = open_dataset(path)
    root = Path(path)
    problems: list[str] = []
    cats = info.categories
    expected = arrow_schema(cats, int(info.manifest["schema_version"])).remove_metadata()
    counts: dict[str, int] = {}
    seen: dict[str, str] = {}
    content = info.manifest.get("fingerprint_method") == FINGERPRINT_METHOD
    digests: list[tuple[str, bytes]] = []
    for entry in info.manifest["files"]:
        f = root / entry["path"]
        if sha256_file(f) != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 differs from manifest.json")
            continue
        if entry.get("kind") == "file":
            continue
        pf = pq.ParquetFile(f)
        if pf.metadata.num_rows != entry["rows"]:
            problems.append(f"{entry['path']}: {pf.metadata.num_rows} rows, manifest says {entry['rows']}")
        if entry.get("kind", "data") != "data":
            continue
        if not pf.schema_arrow.remove_metadata().equals(expected):
            problems.append(f"{entry['path']}: schema differs from the shard contract")
            continue
        counts[entry["split"]] = counts.get(entry["split"], 0) + pf.metadata.num_rows
        cols = None if rows or content else ["vid", "split"]
        table = pf.read(columns=cols)
        for i, row in enumerate(table.to_pylist()):
            vid = row["vid"]
            if row["split"] != entry["split"]:
                problems.append(f"{entry['path']} row {i} vid {vid!r}: split column {row['split']!r}")
            if vid in seen:
                problems.append(f"{entry['path']} row {i}: duplicate vid {vid!r} (also in {seen[vid]})")
            seen[vid] = entry["path"]
            if content:
                try:
                    digests.append(row_digest(row, root))
                except DataError as exc:
                    problems.append(str(exc))
            if rows:
                try:
                    validate_row(row, cats, path=entry["path"], index=i)
                except DataError as exc:
                    problems.append(str(exc))
    for split, n in info.manifest["splits"].items():
        if counts.get(split) != n:
            problems.append(f"split {split}: {counts.get(split, 0)} rows in shards, manifest says {n}")
    if content:
        recomputed = content_fingerprint(
            digests, schema_version=int(info.manifest["schema_version"]), categories=cats
        )
        if recomputed != info.fingerprint:
            problems.append(
                f"content fingerprint {recomputed} differs from manifest.json's {info.fingerprint}"
            )
    elif fingerprint_of(info.manifest) != info.fingerprint:
        problems.append("manifest fingerprint does not match its file list")
    problems += unlisted_files(root, info.manifest)
    problems += readme_problems(root, info.manifest)
    if problems:
        shown = "\n  ".join(problems[:100])
        raise ManifestError(f"dataset {root} failed validation ({len(problems)} problems):\n  {shown}")
    return counts


#: Folders whose files the HF loader (``data/``) or create-bench (``features/``) reads by pattern.
LISTED_DIRS = ("data", "features")


def unlisted_files(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Files under ``data/`` and ``features/`` that manifest.json does not list. Hidden files
    (``.lock`` of ``create-bench extract``, temp files of atomic writes) are not data: the HF
    loader's patterns skip them, and so does this check."""
    listed = {e["path"] for e in manifest["files"]}
    problems = []
    for top in LISTED_DIRS:
        for f in sorted((root / top).rglob("*")):
            rel = f.relative_to(root).as_posix()
            if any(part.startswith(".") for part in f.relative_to(root).parts):
                continue
            if f.is_file() and rel not in listed:
                problems.append(
                    f"{rel}: not listed in manifest.json (datasets.load_dataset would read it as part of "
                    "a split); remove it or rebuild the dataset"
                )
    return problems


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fsspec-style glob of a data_files pattern: ``*`` and ``?`` stay within one path segment,
    ``**`` crosses segments."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def _front_matter(readme: Path) -> dict[str, Any] | str:
    """README.md's YAML front matter, or a problem description."""
    text = readme.read_text("utf-8")
    m = re.match(r"---\n(.*?)\n---\s*(\n|$)", text, re.S)
    if not m:
        return "README.md: no YAML front matter (---) with the HF configs"
    try:
        front = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        return f"README.md: YAML front matter does not parse ({exc})"
    return front if isinstance(front, dict) else "README.md: YAML front matter is not a mapping"


def _manifest_split(config: str, hf_split: str) -> str:
    """The manifest split a (config, split) of README.md stands for (hf.configs_yaml's layout:
    the default config holds train/validation/test, each other split is a config of its own)."""
    return hf_split if config == "default" else config


def _data_files(entry: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """(split, patterns) pairs of a config's ``data_files`` (a pattern, a list of patterns for the
    ``train`` split, or a list of ``{split, path}``)."""
    files = entry.get("data_files")
    items = [files] if isinstance(files, str) else files if isinstance(files, list) else []
    out: list[tuple[str, list[str]]] = []
    for item in items:
        if isinstance(item, dict):
            paths = item.get("path")
            out.append(
                (str(item.get("split", "train")), [paths] if isinstance(paths, str) else list(paths or []))
            )
        else:
            out.append(("train", [str(item)]))
    return out


def readme_problems(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Does README.md's ``configs:`` block make ``datasets.load_dataset`` read exactly the manifest's
    shards, split by split, and do its ``dataset_info`` sizes agree with the manifest?"""
    readme = root / "README.md"
    if not readme.is_file():
        return ["README.md: missing (datasets.load_dataset needs its configs: block to find the splits)"]
    front = _front_matter(readme)
    if isinstance(front, str):
        return [front]
    shards: dict[str, set[str]] = {}
    for e in manifest["files"]:
        if e.get("kind", "data") == "data":
            shards.setdefault(e["split"], set()).add(e["path"])
    on_disk = sorted(
        f.relative_to(root).as_posix() for f in root.rglob("*") if f.is_file() and not f.name.startswith(".")
    )
    problems: list[str] = []
    covered: dict[str, str] = {}
    configs = front.get("configs")
    if not isinstance(configs, list):
        return ["README.md: YAML has no 'configs:' list (datasets.load_dataset cannot find the splits)"]
    for cfg in configs:
        name = str(cfg.get("config_name", "default")) if isinstance(cfg, dict) else "?"
        if not isinstance(cfg, dict):
            problems.append(f"README.md: configs entry {cfg!r} is not a mapping")
            continue
        for hf_split, patterns in _data_files(cfg):
            where = f"README.md config {name!r} split {hf_split!r}"
            split = _manifest_split(name, hf_split)
            if split not in shards:
                problems.append(f"{where}: manifest.json has no split {split!r}")
                continue
            covered[split] = where
            matched = {p for p in on_disk for pat in patterns if _glob_regex(pat).match(p)}
            for extra in sorted(matched - shards[split]):
                problems.append(
                    f"{extra}: matched by {where} ({', '.join(patterns)}) but not a {split} shard in manifest.json"
                )
            for missing in sorted(shards[split] - matched):
                problems.append(
                    f"{missing}: a {split} shard in manifest.json that {where} ({', '.join(patterns)}) does not match"
                )
    for split in sorted(set(shards) - set(covered)):
        problems.append(f"README.md: no config lists split {split!r} of manifest.json")
    problems += _dataset_info_problems(front.get("dataset_info"), manifest)
    return problems


def _dataset_info_problems(infos: Any, manifest: dict[str, Any]) -> list[str]:
    if infos is None:
        return []
    if isinstance(infos, dict):
        infos = [infos]
    problems = []
    for info in infos if isinstance(infos, list) else []:
        if not isinstance(info, dict):
            continue
        name = str(info.get("config_name", "default"))
        for sp in info.get("splits") or []:
            if not isinstance(sp, dict) or "num_examples" not in sp:
                continue
            split = _manifest_split(name, str(sp.get("name")))
            want = manifest["splits"].get(split)
            if sp["num_examples"] != want:
                problems.append(
                    f"README.md dataset_info config {name!r} split {sp.get('name')!r}: num_examples "
                    f"{sp['num_examples']}, manifest.json says {want}"
                )
    return problems

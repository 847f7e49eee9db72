"""Leaderboard submissions (layer 5): directory checks and local validation.

A submission is a predictions directory (ARCHITECTURE.md, "Predictions") plus a
``model_card.yaml``, sent as a directory or a ``.tar.gz``. Everything here runs on untrusted
input, so every check fails closed with a :class:`~create_bench.errors.SubmissionError` that
names the file, member or field:

- the model card is YAML without aliases, validated against ``submission.schema.json``
  (the same file is published as ``leaderboard/submission.schema.json``):
  :mod:`create_bench.leaderboard.card`;
- archives are read as a stream with a cap on the decompressed bytes and the member count
  (a gzip or tar bomb stops at the cap, never after), and only flat, regular files with known
  names are extracted, by this code, never by ``tarfile.extract``: ``../``, absolute paths,
  links and devices are rejected: :mod:`create_bench.leaderboard.archive`;
- the files a submission may hold, its size limits and the split's ids:
  :mod:`create_bench.leaderboard.limits`;
- predictions are loaded through :mod:`create_bench.predictions` (NaN, shapes, dtypes) and,
  when the split's ids are known, their id sets are checked against them (here).

The public names of those modules stay importable from this one.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from create_bench.errors import CreateBenchError, SubmissionError
from create_bench.leaderboard.archive import is_gzip, unpack_archive
from create_bench.leaderboard.card import (
    MAX_CARD_DEPTH,
    SCHEMA_VERSION,
    ModelCard,
    clean_name,
    load_model_card,
    load_schema,
    parse_card_yaml,
    parse_model_card,
    read_card_text,
    schema_errors,
)
from create_bench.leaderboard.limits import (
    ALLOWED_FILES,
    CARD_NAME,
    CREATE_MAX_CHARS,
    NPY_HEADER_BYTES,
    PREDICTION_FILES,
    TEXT_MARGIN,
    ExpectedIds,
    Limits,
    _check_name,
    element_caps,
    file_caps,
    read_limits,
)
from create_bench.leaderboard.storage import is_storage_error, work_prefix
from create_bench.predictions import Predictions, load_predictions
from create_bench.types import describe_id_differences, id_differences

#: The submission API, importable from here as before the split into limits, card and archive.
__all__ = [
    "ALLOWED_FILES",
    "CARD_NAME",
    "CREATE_MAX_CHARS",
    "MAX_CARD_DEPTH",
    "NPY_HEADER_BYTES",
    "PREDICTION_FILES",
    "SCHEMA_VERSION",
    "TEXT_MARGIN",
    "ExpectedIds",
    "Limits",
    "ModelCard",
    "ValidatedSubmission",
    "check_directory",
    "clean_name",
    "element_caps",
    "file_caps",
    "is_gzip",
    "load_model_card",
    "load_schema",
    "open_submission",
    "pack_directory",
    "parse_card_yaml",
    "parse_model_card",
    "read_card_text",
    "read_limits",
    "schema_errors",
    "unpack_archive",
    "validate_directory",
]


def check_directory(path: str | os.PathLike[str], *, limits: Limits | None = None) -> dict[str, int]:
    """Check a submission directory: flat, regular files with known names, within the limits.

    Returns ``{file name: size}``.
    """
    limits = limits or Limits()
    path = Path(path)
    if not path.is_dir():
        raise SubmissionError(f"{path}: not a directory or .tar.gz")
    sizes: dict[str, int] = {}
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        where = f"{path}/{entry.name}"
        if entry.is_symlink():
            raise SubmissionError(f"{where} is a symbolic link; only regular files are allowed")
        if not entry.is_file(follow_symlinks=False):
            raise SubmissionError(f"{where} is not a regular file (sub-directories are not allowed)")
        _check_name(entry.name, where=where)
        sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    total = sum(sizes.values())
    if total > limits.max_unpacked_bytes:
        raise SubmissionError(f"{path}: {total} bytes of files; the limit is {limits.max_unpacked_bytes}")
    if len(sizes) > limits.max_files:
        raise SubmissionError(f"{path}: more than {limits.max_files} files")
    if CARD_NAME not in sizes:
        raise SubmissionError(f"{path}: missing {CARD_NAME} (see leaderboard/README.md for the format)")
    if not set(sizes) & set(PREDICTION_FILES):
        raise SubmissionError(f"{path}: no predictions (expected some of {', '.join(PREDICTION_FILES)})")
    return sizes


def pack_directory(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Pack a checked submission directory into a ``.tar.gz`` (flat, regular files, fixed metadata)."""
    src, out = Path(src), Path(out)
    names = check_directory(src)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in sorted(names):
                info = tarfile.TarInfo(name)
                info.size = names[name]
                info.mode = 0o644
                with open(src / name, "rb") as fh:
                    tf.addfile(info, fh)
    return out


def _id_set_error(what: str, got: Sequence[str], expected: Sequence[str]) -> str | None:
    got_set, exp_set = set(got), set(expected)
    if len(got_set) != len(got):
        dups = sorted({x for x in got if list(got).count(x) > 1})[:5] if len(got) < 10_000 else []
        return f"{what}: duplicate ids" + (f" ({', '.join(map(repr, dups))})" if dups else "")
    missing, extra = id_differences(exp_set, got_set)
    if not missing and not extra:
        return None
    return f"{what}: ids do not match the split: " + describe_id_differences(missing, extra)


@dataclass(frozen=True)
class ValidatedSubmission:
    """A submission that passed every local check."""

    path: Path
    card: ModelCard
    files: dict[str, int]
    tasks: tuple[str, ...]
    predictions: Any = field(repr=False, default=None)


def validate_directory(
    path: str | os.PathLike[str], *, expected: ExpectedIds | None = None, limits: Limits | None = None
) -> ValidatedSubmission:
    """Every check a submission directory gets before it is scored or uploaded.

    Layout and sizes, the model card, the predictions (through
    :func:`create_bench.predictions.load_predictions`), and with ``expected`` the id sets.
    """
    limits = limits or Limits()
    path = Path(path)
    try:
        files = check_directory(path, limits=limits)
        card = load_model_card(path / CARD_NAME, limits=limits)
        preds = _load(path, expected, limits)
    except SubmissionError as exc:
        raise SubmissionError(_strip_root(str(exc), path)) from None
    if expected is not None:
        problems = _check_ids(preds, expected)
        if problems:
            raise SubmissionError(
                f"predictions do not match the {expected.split} split:\n  " + "\n  ".join(problems)
            )
    return ValidatedSubmission(
        path=path, card=card, files=files, tasks=tuple(preds.tasks()), predictions=preds
    )


def _load(path: Path, expected: ExpectedIds | None, limits: Limits) -> Predictions:
    try:
        return load_predictions(path, limits=read_limits(expected, limits))
    except CreateBenchError as exc:
        raise SubmissionError(f"invalid predictions: {exc}") from None
    except (ValueError, TypeError, KeyError, OSError, EOFError, RecursionError) as exc:  # never a 500
        if is_storage_error(exc):  # the server's disk, not the submission: never blame the submitter
            raise
        raise SubmissionError(f"invalid predictions: {type(exc).__name__}: {exc}") from None


def _strip_root(message: str, root: Path) -> str:
    """A message about a file of the submission, naming the file, not where it was unpacked
    (a server path, however it was given: relative, absolute or through a symbolic link)."""
    forms = {str(root), os.path.abspath(root), str(root.resolve())}
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form + os.sep, "").replace(form, "<submission>")
    return message


def _check_ids(preds: Predictions, expected: ExpectedIds) -> list[str]:
    """Id-set problems of ``preds`` against the split (reference-free: ids only)."""
    problems = []
    if preds.video_ids is not None:
        problems.append(_id_set_error("video_ids.json", preds.video_ids, expected.vids))
    if preds.text_ids is not None:
        for kind in expected.text_ids:
            ids = preds.text_rows(kind)[1]
            if ids:
                problems.append(_id_set_error(f"text_ids.json ({kind})", ids, expected.text_ids[kind]))
    if preds.generations is not None:
        problems.append(_id_set_error("generations.jsonl", list(preds.generations), expected.vids))
    return [p for p in problems if p]


@contextlib.contextmanager
def open_submission(
    path: str | os.PathLike[str],
    *,
    expected: ExpectedIds | None = None,
    limits: Limits | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> Iterator[ValidatedSubmission]:
    """Validate a submission directory or ``.tar.gz``; archives are unpacked into a temporary
    directory (under ``workdir``) that is removed on exit."""
    path = Path(path)
    if path.is_dir():
        yield validate_directory(path, expected=expected, limits=limits)
        return
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file or directory")
    if workdir is not None:
        Path(workdir).mkdir(mode=0o700, parents=True, exist_ok=True)
    # Named after this process, so that a restart can tell its own orphans (storage.clean_work_dirs).
    tmp = Path(tempfile.mkdtemp(prefix=work_prefix(), dir=workdir))
    try:
        root = unpack_archive(path, tmp, limits=limits, expected=expected)
        yield validate_directory(root, expected=expected, limits=limits)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

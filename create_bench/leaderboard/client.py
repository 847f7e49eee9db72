"""Submitting (layer 5): validate locally, then upload to a server or score into a local board.

``create-bench submit PATH --server URL --token TOKEN`` and ``... --local leaderboard/`` call
:func:`submit`. Local validation runs the same checks the server runs (schema, files, sizes,
NaN, shapes and, with ``--data``, the id sets), so most mistakes never reach the server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from create_bench.errors import ConfigError, SubmissionError
from create_bench.fsutil import atomic_write_json
from create_bench.leaderboard.submission import (
    CARD_NAME,
    SCHEMA_VERSION,
    ExpectedIds,
    Limits,
    check_directory,
    open_submission,
    pack_directory,
    parse_card_yaml,
    read_card_text,
    unpack_archive,
)

if TYPE_CHECKING:
    from create_bench.scoring import ScoringOptions

TOKEN_ENV = "CREATE_BENCH_TOKEN"


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return s[:80] or "model"


# --------------------------------------------------------------------------- the model card

#: Card fields only the submitter knows, and the flag of ``create-bench submit`` that gives each.
CARD_FLAGS = {
    "team": "--team NAME",
    "create_configs": "--create-configs CONFIGS (comma-separated, e.g. train,validation; '' for none)",
    "test_data_seen": "--test-data-seen or --no-test-data-seen",
}


@dataclass(frozen=True)
class CardFields:
    """Model card fields given on the command line; None: keep what the card says."""

    team: str | None = None
    test_data_seen: bool | None = None
    create_configs: tuple[str, ...] | None = None


def complete_card(card: Any, fields: CardFields) -> Any:
    """``card`` with ``schema_version`` filled in and ``fields`` applied.

    The card ``create-bench eval`` writes has everything eval knows; what only the submitter knows
    (team, whether test data was seen) must come from the card or a flag, never a guess: a missing
    one is a one-line SubmissionError naming the flag to pass.
    """
    if not isinstance(card, dict):
        return card  # the schema check reports it
    out = dict(card)
    out.setdefault("schema_version", SCHEMA_VERSION)
    given: dict[str, object] = {"team": fields.team, "test_data_seen": fields.test_data_seen}
    given["create_configs"] = list(fields.create_configs) if fields.create_configs is not None else None
    out.update({k: v for k, v in given.items() if v is not None})
    missing = [k for k in CARD_FLAGS if k not in out]
    if missing:
        raise SubmissionError(
            f"{CARD_NAME} does not give {', '.join(missing)}: pass "
            + "; ".join(CARD_FLAGS[k] for k in missing)
        )
    return out


@contextlib.contextmanager
def prepared(
    path: str | os.PathLike[str], fields: CardFields = CardFields(), *, limits: Limits | None = None
) -> Iterator[Path]:
    """The submission at ``path`` with its card completed (:func:`complete_card`).

    A directory whose card needs nothing is used as it is; otherwise the files are hard-linked (or
    copied) next to the completed card in a temporary directory, removed on exit. The user's
    files are never modified. An archive is unpacked (safely) first.
    """
    path = Path(path)
    with contextlib.ExitStack() as stack:
        if path.is_dir():
            root = path
        elif path.is_file():
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="create-bench-submit-")))
            root = unpack_archive(path, tmp / "in", limits=limits)
        else:
            raise SubmissionError(f"{path}: no such file or directory")
        names = check_directory(root, limits=limits)
        card = parse_card_yaml(read_card_text(root / CARD_NAME, limits=limits))
        done = complete_card(card, fields)
        if done == card:
            yield root
            return
        staged = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="create-bench-card-")))
        for name in names:
            if name != CARD_NAME:
                try:
                    os.link(root / name, staged / name)
                except OSError:  # another file system, or links not allowed
                    shutil.copyfile(root / name, staged / name)
        text = yaml.safe_dump(done, allow_unicode=True, sort_keys=False)
        (staged / CARD_NAME).write_text(text, "utf-8")
        yield staged


def recorded_data_dir(path: str | os.PathLike[str]) -> Path:
    """The dataset ``create-bench eval`` scored the predictions at ``path`` on (from the results JSON
    it wrote next to them), if that directory still holds the same data; else a ConfigError."""
    pred = Path(path)
    results_file = pred.with_name(pred.name + ".json")
    hint = "give --data DIR"
    if not pred.is_dir() or not results_file.is_file():
        raise ConfigError(
            f"--local scores against references: {hint} (no {results_file.name} from create-bench eval next to {pred})"
        )
    try:
        results = json.loads(results_file.read_text("utf-8"))
        data = results["eval"]["data"]
        fingerprint = results["dataset"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ConfigError(
            f"--local scores against references: {hint} ({results_file} does not record the dataset)"
        ) from None
    from create_bench.data.shards import open_dataset

    if not Path(data).is_dir():
        raise ConfigError(f"--local: the dataset {data} recorded in {results_file} is gone; {hint}")
    now = open_dataset(data).fingerprint
    if now != fingerprint:
        raise ConfigError(
            f"--local: the dataset {data} recorded in {results_file} changed (fingerprint {now}, "
            f"predictions made on {fingerprint}); re-run create-bench eval or {hint}"
        )
    return Path(data)


# --------------------------------------------------------------------------- checks and upload


def validate(
    path: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    split: str = "test",
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Run every local check; returns a summary (model name, tasks, files)."""
    expected = ExpectedIds.from_dataset(data_dir, split) if data_dir is not None else None
    with open_submission(path, expected=expected, limits=limits) as sub:
        return {
            "model_name": sub.card.name,
            "tasks": list(sub.tasks),
            "files": dict(sub.files),
            "ids_checked": expected is not None,
        }


#: Times an upload answered 503 (server busy checking other uploads) is sent again.
BUSY_RETRIES = 5


def upload(
    path: str | os.PathLike[str],
    server: str,
    token: str,
    *,
    timeout: float = 600.0,
) -> dict[str, Any]:
    """POST a submission (directory packed on the fly, or a .tar.gz) to ``server``."""
    import httpx

    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="create-bench-submit-") as tmp:
        archive = pack_directory(path, Path(tmp) / "submission.tar.gz") if path.is_dir() else path
        url = server.rstrip("/") + "/api/submissions"
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/gzip"}
        headers["Content-Length"] = str(Path(archive).stat().st_size)

        def chunks() -> Any:
            with open(archive, "rb") as fh:
                while block := fh.read(1 << 20):
                    yield block

        for attempt in range(BUSY_RETRIES + 1):
            try:
                resp = httpx.post(url, content=chunks(), headers=headers, timeout=timeout)
            except httpx.HTTPError as exc:
                raise SubmissionError(f"could not reach the leaderboard server at {server}: {exc}") from None
            if resp.status_code != 503 or attempt == BUSY_RETRIES:
                break
            # 503: the server is checking as many uploads as it does at once; it says when to retry.
            retry = resp.headers.get("retry-after", "")
            time.sleep(min(30.0, float(retry)) if retry.isdigit() else 5.0)
    return _answer(resp, "upload")


def _answer(resp: Any, what: str) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError:
        body = {"error": resp.text[:500]}
    if resp.status_code >= 400:
        raise SubmissionError(
            f"server rejected the {what} (HTTP {resp.status_code}): {body.get('error', body)}"
        )
    return body


def wait(server: str, sub_id: int, *, timeout: float = 600.0, interval: float = 0.5) -> dict[str, Any]:
    """Poll a submission until it is finished or failed."""
    import httpx

    url = server.rstrip("/") + f"/api/submissions/{sub_id}"
    deadline = time.monotonic() + timeout
    while True:
        sub = _answer(httpx.get(url, timeout=30), "status request")
        if sub["state"] in ("finished", "failed") or time.monotonic() > deadline:
            return sub
        time.sleep(interval)


@dataclass(frozen=True)
class LocalEntry:
    """What :func:`score_local` wrote: the results file, the results, and whether it replaced the
    same team's earlier entry of the same model."""

    path: Path
    results: dict[str, Any]
    replaced: bool


def score_local(
    path: str | os.PathLike[str],
    board_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    split: str = "test",
    options: ScoringOptions | None = None,
    limits: Limits | None = None,
) -> LocalEntry:
    """Score against the local (public) references and add the result to a local board.

    An entry is keyed by (team, model name, split): the same team re-submitting a model replaces
    its own entry (its file), another team's model of the same name is a separate entry. New
    entries are written to ``board_dir/results/<model>-<split>.json`` (``<model>--<team>-...`` when
    that name is taken). The board is re-rendered. ``options``: how to score (default: the defaults).
    """
    from create_bench.leaderboard.render import render
    from create_bench.scoring import score_predictions

    board_dir = Path(board_dir)
    expected = ExpectedIds.from_dataset(data_dir, split)
    with open_submission(path, expected=expected, limits=limits) as sub:
        results = dict(score_predictions(sub.path, data_dir, split, options))
        results["model"] = sub.card.model_info()
    out, replaced = entry_path(board_dir / "results", sub.card.team, sub.card.name, split)
    atomic_write_json(out, results)
    render(board_dir / "results", board_dir)
    return LocalEntry(out, results, replaced)


def _entry_key(file: Path) -> tuple[str, str, str] | None:
    try:
        obj = json.loads(file.read_text("utf-8"))
        model, ds = obj.get("model") or {}, obj.get("dataset") or {}
        return (str(model.get("team") or ""), str(model.get("name") or ""), str(ds.get("split") or ""))
    except (OSError, ValueError, AttributeError):
        return None


def entry_path(results_dir: Path, team: str, name: str, split: str) -> tuple[Path, bool]:
    """(the file of the entry keyed (team, name, split), whether it exists already)."""
    key = (team, name, split)
    if results_dir.is_dir():
        for file in sorted(results_dir.rglob("*.json")):
            if _entry_key(file) == key:
                return file, True
    candidates = [f"{slug(name)}-{split}", f"{slug(name)}--{slug(team)}-{split}"]
    candidates += [f"{slug(name)}--{slug(team)}-{i}-{split}" for i in range(2, 1000)]
    for stem in candidates:
        file = results_dir / f"{stem}.json"
        if not file.exists():
            return file, False
    raise SubmissionError(f"{results_dir}: no free file name for {name!r} of team {team!r}")


def resolve_token(token: str | None) -> str:
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError(
            f"--server needs a team token: --token TOKEN or the {TOKEN_ENV} environment variable"
        )
    return token

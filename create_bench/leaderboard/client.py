"""Submitting (layer 5): validate locally, then upload to a server or score into a local board.

``create-bench submit PATH --server URL --token TOKEN`` and ``... --local leaderboard/`` call
:func:`submit`. Local validation runs the same checks the server runs (schema, files, sizes,
NaN, shapes and, with ``--data``, the id sets), so most mistakes never reach the server.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError, SubmissionError
from create_bench.fsutil import atomic_write_json
from create_bench.leaderboard.submission import ExpectedIds, Limits, open_submission, pack_directory

TOKEN_ENV = "CREATE_BENCH_TOKEN"


def slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return s[:80] or "model"


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

        try:
            resp = httpx.post(url, content=chunks(), headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            raise SubmissionError(f"could not reach the leaderboard server at {server}: {exc}") from None
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


def score_local(
    path: str | os.PathLike[str],
    board_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    split: str = "test",
    tokenizer: str = "jieba",
    bootstrap: int = 1000,
    seed: int = 0,
    limits: Limits | None = None,
    metric_backend: str = "fast",
) -> tuple[Path, dict[str, Any]]:
    """Score against the local (public) references and add the result to a local board.

    Writes ``board_dir/results/<model>-<split>.json`` and re-renders ``board_dir``.
    """
    from create_bench.leaderboard.render import render
    from create_bench.scoring import score_predictions

    board_dir = Path(board_dir)
    expected = ExpectedIds.from_dataset(data_dir, split)
    with open_submission(path, expected=expected, limits=limits) as sub:
        results = dict(
            score_predictions(
                sub.path,
                data_dir,
                split,
                tokenizer=tokenizer,
                bootstrap=bootstrap,
                seed=seed,
                metric_backend=metric_backend,
            )
        )
        results["model"] = sub.card.model_info()
    out = board_dir / "results" / f"{slug(sub.card.name)}-{split}.json"
    atomic_write_json(out, results)
    render(board_dir / "results", board_dir)
    return out, results


def resolve_token(token: str | None) -> str:
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ConfigError(
            f"--server needs a team token: --token TOKEN or the {TOKEN_ENV} environment variable"
        )
    return token

"""The evaluation server (layer 5): FastAPI app + uvicorn.

Routes:

- ``POST /api/submissions``: a ``.tar.gz`` as the raw request body, ``Authorization: Bearer
  <team token>``. Checked in this order, each failure answered with a clear message and nothing
  stored: token (401), daily limit (429), size (413, counted while streaming, not trusted from
  headers), archive safety, model card, predictions and their id sets against the server's
  split (400). An accepted upload is fsynced and renamed into place before its row is committed
  and the answer (202) sent, so an accepted submission is never lost.
- ``GET /api/leaderboard``, ``GET /api/submissions/{id}``: JSON.
- ``GET /``: the board; ``GET /submissions/{id}``: a submission's page.

Scoring happens in workers (:mod:`.worker`), never in a request. The server knows the split's
ids (to check submissions) but its responses carry only scores: no reference text, no paths.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from create_bench.errors import CreateBenchError, SubmissionError
from create_bench.leaderboard import board
from create_bench.leaderboard.cache import BoardCache
from create_bench.leaderboard.db import AuthError, Database, LimitError, NotFound
from create_bench.leaderboard.publish import MIN_CATEGORY_VIDEOS, public_results
from create_bench.leaderboard.storage import (
    StorageFault,
    clean_work_dirs,
    is_storage_error,
    open_private,
    private_dir,
)
from create_bench.leaderboard.submission import ExpectedIds, Limits, open_submission
from create_bench.leaderboard.worker import ScoringConfig, encoder_paths, scrub, server_paths

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class UploadTooLarge(SubmissionError):
    """The request body is over the upload limit."""


class Busy(CreateBenchError):
    """As many uploads as the server validates at once are in progress (503, retry shortly)."""


class TooManyRejected(LimitError):
    """A team sent too many invalid uploads recently (429)."""


#: Largest id a submission can have (a signed 64-bit primary key).
MAX_ID = (1 << 63) - 1


class Rejections:
    """Rejected uploads per team in a sliding window (in this server process's memory).

    A rejected upload is not a submission, so it never counts against the daily limit; this
    bound keeps a team from making the server validate bad uploads over and over for free.
    """

    def __init__(self, limit: int, window_s: float):
        self.limit, self.window_s = limit, window_s
        self._at: dict[int, list[float]] = {}

    def _recent(self, team_id: int, now: float) -> list[float]:
        times = [t for t in self._at.get(team_id, []) if t > now - self.window_s]
        self._at[team_id] = times
        return times

    def check(self, team: Any, now: float) -> None:
        times = self._recent(team.id, now)
        if len(times) >= self.limit:
            wait = int(times[0] + self.window_s - now) + 1
            raise TooManyRejected(
                f"team {team.name!r} had {len(times)} rejected uploads in the last "
                f"{int(self.window_s)} s (limit {self.limit}); check submissions locally with "
                f"`create-bench submit --data` and retry in {wait} s"
            )

    def add(self, team: Any, now: float) -> None:
        self._recent(team.id, now).append(now)


@dataclass(frozen=True)
class ServerConfig:
    db_url: str
    storage_dir: Path
    scoring: ScoringConfig
    limits: Limits = field(default_factory=Limits)
    title: str = "create-bench leaderboard"
    #: Uploads received and validated at once; more are answered 503 at once (Retry-After).
    max_validations: int = 2
    #: Rejected uploads a team may send per window before it gets 429 for the rest of it.
    max_rejected: int = 10
    rejected_window_s: float = 3600.0
    #: Per-category scores are published only for categories with at least this many test
    #: videos (publish.py: small categories are an oracle on the hidden references).
    min_category_videos: int = MIN_CATEGORY_VIDEOS
    #: Rows per table on the board page (the best by the main score); the API lists all.
    board_rows: int = 100


def uploads_dir(storage: Path) -> Path:
    return storage / "uploads"


def create_app(config: ServerConfig, *, db: Database | None = None) -> Any:
    """Build the FastAPI application (the database is migrated to the current schema)."""
    db = db or Database(config.db_url)
    db.migrate()
    # Absolute (not resolved) so every path built from it has one known form to scrub.
    storage = private_dir(Path(os.path.abspath(config.storage_dir)))
    uploads = private_dir(uploads_dir(storage))
    for stale in uploads.glob(".incoming-*"):  # half-received uploads of a previous run
        stale.unlink(missing_ok=True)
    for name in clean_work_dirs(storage / "work"):  # what killed processes were unpacking
        log.info("removed orphaned work directory %s", name)
    cache = BoardCache(db, min_category_videos=config.min_category_videos)
    secrets = server_paths(config.scoring.data_dir, storage, *encoder_paths(config.scoring.options))

    app = FastAPI(title=config.title, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.db = db
    app.state.config = config
    app.state.board_cache = cache
    _add_headers_and_errors(app, secrets)

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True}

    uploads_handler = _Uploads(config, db, storage, uploads)

    @app.post("/api/submissions", status_code=202)
    async def submit(request: Request) -> JSONResponse:
        return await uploads_handler.submit(request)

    _add_read_routes(app, db, cache, config)
    return app


def _add_headers_and_errors(app: Any, secrets: Any) -> None:
    """Security headers on every response (the board's CSP on HTML pages) and the typed errors'
    HTTP statuses, with server paths scrubbed from every message."""
    csp = board.content_security_policy()

    @app.middleware("http")
    async def headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = csp
        return response

    @app.exception_handler(CreateBenchError)
    async def typed_error(_request: Request, exc: CreateBenchError) -> JSONResponse:
        status = {
            AuthError: 401,
            LimitError: 429,
            TooManyRejected: 429,
            NotFound: 404,
            UploadTooLarge: 413,
            Busy: 503,
        }.get(type(exc), 400)
        if isinstance(exc, StorageFault):  # the server's disk: 507/503, never the submitter's fault
            status = exc.http_status
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status in (429, 503):
            headers = {"Retry-After": "5" if status == 503 else "60"}
        resp = JSONResponse({"error": scrub(str(exc), secrets)}, status_code=status)
        if headers:
            resp.headers.update(headers)
        return resp


class _Uploads:
    """``POST /api/submissions``: authenticate, rate-limit, receive the body into a private temp
    file (size-capped, hashed, fsynced), validate it, rename it into place and queue it."""

    def __init__(self, config: ServerConfig, db: Database, storage: Path, uploads: Path) -> None:
        self.config, self.db, self.storage, self.uploads = config, db, storage, uploads
        self.expected = ExpectedIds.from_dataset(config.scoring.data_dir, config.scoring.split)
        self.rejections = Rejections(config.max_rejected, config.rejected_window_s)
        self.in_flight = 0  # validations running now (changed only on the event loop)

    async def submit(self, request: Request) -> JSONResponse:
        db, config = self.db, self.config
        team = await run_in_threadpool(db.authenticate, _bearer(request.headers.get("authorization")))
        self.rejections.check(team, time.time())
        await run_in_threadpool(db.check_limit, team)
        if self.in_flight >= config.max_validations:
            raise Busy(
                f"the server is checking {self.in_flight} other uploads (at most {config.max_validations} "
                "at once); retry in a few seconds"
            )
        self.in_flight += 1
        try:
            return await self._receive(request, team)
        except SubmissionError:
            self.rejections.add(team, time.time())
            raise
        finally:
            self.in_flight -= 1

    async def _spool(self, request: Request, tmp: Path) -> tuple[int, str]:
        """Write the request body to ``tmp`` (capped, fsynced): its size and SHA-256."""
        cap = self.config.limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise UploadTooLarge(f"upload of {declared} bytes is over the limit of {cap} bytes")
        digest = hashlib.sha256()
        size = 0
        with open_private(tmp) as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise UploadTooLarge(f"upload is over the limit of {cap} bytes")
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        if size == 0:
            raise SubmissionError("empty upload: send the submission .tar.gz as the request body")
        return size, digest.hexdigest()

    async def _receive(self, request: Request, team: Any) -> JSONResponse:
        uid = uuid.uuid4().hex
        tmp = self.uploads / f".incoming-{uid}.tmp"
        final = self.uploads / f"{uid}.tar.gz"
        try:
            size, sha256 = await self._spool(request, tmp)
            sub = await run_in_threadpool(
                _validate, tmp, self.expected, self.config.limits, self.storage / "work"
            )
            os.replace(tmp, final)
            _fsync_dir(self.uploads)
            try:
                sub_id = await run_in_threadpool(
                    lambda: self.db.create_submission(
                        team,
                        model_name=sub["model_name"],
                        card=sub["card"],
                        split=self.config.scoring.split,
                        upload_path=str(final.relative_to(self.storage)),
                        upload_sha256=sha256,
                        upload_bytes=size,
                    )
                )
            except BaseException as exc:
                final.unlink(missing_ok=True)
                fault = _database_storage_fault(exc)
                if fault is not None:
                    raise fault from None
                raise
        except OSError as exc:
            if is_storage_error(exc):
                log.error("storage error while receiving an upload from team %r: %s", team.name, exc)
                raise StorageFault(exc) from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
        log.info("accepted submission %d from team %r (%d bytes)", sub_id, team.name, size)
        body = {"id": sub_id, "state": "queued", "team": team.name, "model_name": sub["model_name"]}
        body.update(tasks=sub["tasks"], url=f"/submissions/{sub_id}", api=f"/api/submissions/{sub_id}")
        return JSONResponse(body, status_code=202)


def _add_read_routes(app: Any, db: Database, cache: BoardCache, config: ServerConfig) -> None:
    """The read-only routes: a submission (API and page), the board (API and page), all through
    the public view (publish.py) and the board cache; the cache is warmed before the first request."""

    def public_submission(sub_id: int) -> dict[str, Any]:
        """A submission as anyone (its own team included) may see it: scores rounded as printed,
        small categories withheld (publish.py)."""
        sub = db.get_submission(sub_id)
        sub["results"] = public_results(sub["results"], min_category_videos=config.min_category_videos)
        return sub

    @app.get("/api/submissions/{sub_id}")
    def get_submission(sub_id: int) -> dict[str, Any]:
        return public_submission(_check_id(sub_id))

    @app.get("/api/leaderboard")
    def leaderboard(fingerprint: str | None = None) -> Response:
        """Entries (optionally only those scored on data ``fingerprint``) and ``boards``: the
        entries grouped by (dataset, fingerprint, split, protocol); rank only within a board."""
        body = cache.derived(("api", fingerprint), lambda subs: _leaderboard_json(subs, fingerprint))
        return Response(body, media_type="application/json")

    def _leaderboard_json(subs: list[dict[str, Any]], fingerprint: str | None) -> bytes:
        texts = []
        groups: dict[tuple[str, str, str, str], list[int]] = {}
        for s in subs:
            key, text = cache.per_entry("api", s, api_entry)
            if fingerprint is not None and key[1] != fingerprint:
                continue
            if s["results"]:
                groups.setdefault(key, []).append(s["id"])
            texts.append(text)
        boards = [
            {"dataset": k[0], "fingerprint": k[1], "split": k[2], "protocol": k[3], "entries": ids}
            for k, ids in groups.items()
        ]
        head = json.dumps({"split": config.scoring.split, "boards": boards}, ensure_ascii=False)
        return (head[:-1] + ', "entries": [' + ", ".join(texts) + "]}").encode()

    def _board_html(subs: list[dict[str, Any]]) -> str:
        finished = [s for s in subs if s["state"] == "finished"]
        pending = [s for s in subs if s["state"] in ("submitted", "queued", "running")]
        return board.render_board_html(
            finished,
            title=config.title,
            subtitle=f"Split: {config.scoring.split}",
            pending=pending,
            limit=config.board_rows,
        )

    @app.get("/", response_class=HTMLResponse)
    def board_page() -> HTMLResponse:
        return HTMLResponse(cache.derived("html", _board_html))

    @app.get("/submissions/{sub_id}", response_class=HTMLResponse)
    def submission_page(sub_id: int) -> HTMLResponse:
        try:
            sub = public_submission(_check_id(sub_id))
        except NotFound:
            return HTMLResponse(
                "<!doctype html><title>Not found</title><p>No such submission.</p>", status_code=404
            )
        return HTMLResponse(board.render_submission_html(sub))

    # Parse the stored results once now, not in the first visitor's request.
    cache.derived(("api", None), lambda subs: _leaderboard_json(subs, None))


def api_entry(s: dict[str, Any]) -> tuple[tuple[str, str, str, str], str]:
    """One entry of /api/leaderboard: its board key and its JSON text (kept per submission)."""
    results = s["results"] or {}
    key = board.board_key(results) if results else ("", "", "", "")
    entry = {
        "id": s["id"],
        "model_name": s["model_name"],
        "team": s["team"],
        "state": s["state"],
        "created_at": s["created_at"],
        "dataset": key[0] or None,
        "fingerprint": key[1] or None,
        "test_data_seen": board.test_data_seen(s),
        "scores": results.get("scores"),
        "ci": results.get("ci"),
        "signature": board.signature_text(results) or None,
        "text_metrics": results.get("text_metrics"),
    }
    return key, json.dumps(entry, ensure_ascii=False)


def _check_id(sub_id: int) -> int:
    if not 1 <= sub_id <= MAX_ID:
        raise NotFound(f"no submission {str(sub_id)[:30]} (submission ids are 1 to {MAX_ID})")
    return sub_id


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("invalid Authorization header (expected 'Bearer <token>')")
    return token.strip()


def _validate(archive: Path, expected: ExpectedIds, limits: Limits, workdir: Path) -> dict[str, Any]:
    with open_submission(archive, expected=expected, limits=limits, workdir=workdir) as sub:
        return {"model_name": sub.card.name, "card": sub.card.to_dict(), "tasks": list(sub.tasks)}


def _database_storage_fault(exc: BaseException) -> StorageFault | None:
    """SQLite's "database or disk is full" / "readonly database" as a StorageFault (507/503)."""
    import errno

    text = str(getattr(exc, "orig", exc)).lower()
    if "disk is full" in text or "database or disk is full" in text:
        return StorageFault(OSError(errno.ENOSPC, text))
    if "readonly database" in text or "disk i/o error" in text:
        return StorageFault(OSError(errno.EROFS if "readonly" in text else errno.EIO, text))
    return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def serve(
    config: ServerConfig, *, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info"
) -> None:
    """Run the app with uvicorn (blocking)."""
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "debug")


def dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2)

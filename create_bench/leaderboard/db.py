"""The leaderboard database (layer 5): teams, tokens, submissions and their events, with SQLAlchemy 2.

A SQLite file by default (``sqlite:///path/board.db``), PostgreSQL by URL
(``postgresql+psycopg://...``). The schema is versioned (:mod:`create_bench.leaderboard.tables`):
``schema_migrations`` records every migration applied, :func:`Database.migrate` applies the
missing ones in order, and a database newer than this code is refused. Claims, leases and
retries, and the lifecycle of a submission, are in :mod:`create_bench.leaderboard.queue`.

Team tokens are shown once and stored as HMAC-SHA256 with a per-token salt.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from create_bench.errors import ConfigError, CreateBenchError
from create_bench.leaderboard.queue import FAIR_WINDOW_S, Job, JobQueue
from create_bench.leaderboard.tables import (
    COUNTED_STATES,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATES,
    events,
    iso,
    metadata,
    now,
    schema_migrations,
    submissions,
    teams,
    utc_day_start,
)

#: Re-exported: the tables, migrations and queue lived here before the split.
__all__ = [
    "COUNTED_FAILURE",
    "COUNTED_STATES",
    "FAIR_WINDOW_S",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATES",
    "TOKEN_PREFIX",
    "AuthError",
    "Database",
    "Job",
    "LimitError",
    "NotFound",
    "Team",
    "events",
    "iso",
    "metadata",
    "normalize_url",
    "now",
    "schema_migrations",
    "sqlite_url",
    "submissions",
    "teams",
    "utc_day_start",
]

TOKEN_PREFIX = "cbt"
#: A failure whose error starts with this (the worker's scoring timeout) counts against the daily
#: limit like a submission that ran: the team used a worker for the whole limit.
COUNTED_FAILURE = "scoring timed out"


class AuthError(CreateBenchError):
    """A missing, malformed or unknown team token."""

    exit_code = 4


class LimitError(CreateBenchError):
    """A team is over its daily submission limit."""

    exit_code = 5


class NotFound(CreateBenchError):
    """No such team or submission."""


def _hash_secret(salt: str, secret: str) -> str:
    return hmac.new(bytes.fromhex(salt), secret.encode("utf-8"), hashlib.sha256).hexdigest()


def sqlite_url(path: str | Path) -> str:
    return f"sqlite:///{Path(path).resolve()}"


def normalize_url(url: str) -> str:
    """A bare file path means a SQLite file."""
    if "://" not in url:
        return sqlite_url(url)
    return url


@dataclass(frozen=True)
class Team:
    id: int
    name: str
    daily_limit: int


class Database(JobQueue):
    """The leaderboard store. Thread-safe (one engine, a connection per operation)."""

    def __init__(self, url: str, *, echo: bool = False):
        self.url = normalize_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo, "future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"timeout": 60, "check_same_thread": False}
            path = sa.engine.make_url(self.url).database
            if path and path != ":memory:":
                _private_file(Path(path))
        else:
            kwargs["pool_pre_ping"] = True
        try:
            self.engine: Engine = sa.create_engine(self.url, **kwargs)
        except (sa.exc.ArgumentError, ImportError, sa.exc.NoSuchModuleError) as exc:
            raise ConfigError(f"cannot open database {url!r}: {exc}") from None
        if self.is_sqlite:
            self._setup_sqlite()
        # A store dropped without close() still closes its pooled connections (psycopg warns
        # about, and a server would leak, connections deleted while open).
        weakref.finalize(self, self.engine.dispose)

    def _setup_sqlite(self) -> None:
        # pysqlite's own transaction handling defers BEGIN and breaks SAVEPOINT/serialisation;
        # take it over (the SQLAlchemy recipe) and make write transactions BEGIN IMMEDIATE so
        # that "count today's submissions, then insert" cannot race between processes.
        @sa.event.listens_for(self.engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @sa.event.listens_for(self.engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    # ------------------------------------------------------------------ transactions

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A serialising write transaction (committed on success)."""
        with self.engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ schema

    def schema_version(self) -> int:
        with self.read() as conn:
            if not sa.inspect(conn).has_table("schema_migrations"):
                return 0
            return int(conn.execute(sa.select(sa.func.max(schema_migrations.c.version))).scalar() or 0)

    def migrate(self) -> int:
        """Apply the missing migrations in order; returns the schema version."""
        with self.write() as conn:
            if not sa.inspect(conn).has_table("schema_migrations"):
                schema_migrations.create(conn)
            applied = set(conn.execute(sa.select(schema_migrations.c.version)).scalars())
            newest = max(applied, default=0)
            if newest > SCHEMA_VERSION:
                raise ConfigError(
                    f"database {self.url} has schema version {newest}, newer than this create-bench "
                    f"({SCHEMA_VERSION}); upgrade create-bench"
                )
            for version, description, apply in MIGRATIONS:
                if version in applied:
                    continue
                apply(conn)
                conn.execute(
                    schema_migrations.insert().values(
                        version=version, description=description, applied_at=iso(now())
                    )
                )
        return self.schema_version()

    def check_schema(self) -> None:
        version = self.schema_version()
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"database {self.url} is at schema version {version}, this code needs {SCHEMA_VERSION}: "
                "run `create-bench leaderboard migrate --db URL` (or add-team, which migrates)"
            )

    # ------------------------------------------------------------------ teams

    def add_team(self, name: str, *, daily_limit: int = 5) -> tuple[Team, str]:
        """Create a team; returns it and its token (the only time the token exists in clear)."""
        from create_bench.errors import SubmissionError
        from create_bench.leaderboard.card import clean_name

        try:
            name = clean_name(name, what="team name")
        except SubmissionError as exc:
            raise ConfigError(str(exc)) from None
        if len(name) > 100:
            raise ConfigError("a team name must have 1 to 100 characters")
        if daily_limit < 1:
            raise ConfigError(f"daily limit must be at least 1, got {daily_limit}")
        token_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
        with self.write() as conn:
            if conn.execute(sa.select(teams.c.id).where(teams.c.name == name)).first():
                raise ConfigError(f"a team named {name!r} already exists")
            team_id = conn.execute(
                teams.insert().values(
                    name=name,
                    token_id=token_id,
                    token_salt=salt,
                    token_hash=_hash_secret(salt, secret),
                    daily_limit=daily_limit,
                    created_at=now(),
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return Team(int(team_id), name, daily_limit), f"{TOKEN_PREFIX}_{token_id}_{secret}"

    def authenticate(self, token: str | None) -> Team:
        """The team a token belongs to; AuthError otherwise (in constant time per token id)."""
        if not token:
            raise AuthError("missing team token (send 'Authorization: Bearer <token>')")
        parts = token.strip().split("_", 2)
        if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
            raise AuthError("invalid team token")
        _, token_id, secret = parts
        with self.read() as conn:
            row = conn.execute(sa.select(teams).where(teams.c.token_id == token_id)).first()
        # Hash even when the id is unknown, so timing does not tell which ids exist.
        salt = row.token_salt if row is not None else "00" * 16
        ok = hmac.compare_digest(_hash_secret(salt, secret), row.token_hash if row is not None else "")
        if row is None or not ok:
            raise AuthError("invalid team token")
        return Team(row.id, row.name, row.daily_limit)

    def teams(self) -> list[Team]:
        with self.read() as conn:
            rows = conn.execute(sa.select(teams).order_by(teams.c.id)).all()
        return [Team(r.id, r.name, r.daily_limit) for r in rows]

    # ------------------------------------------------------------------ submissions

    def count_today(self, conn: Connection, team_id: int, at: float) -> int:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(submissions)
                .where(
                    submissions.c.team_id == team_id,
                    submissions.c.created_at >= utc_day_start(at),
                    sa.or_(
                        submissions.c.state.in_(COUNTED_STATES),
                        sa.and_(
                            submissions.c.state == "failed",
                            submissions.c.error.like(COUNTED_FAILURE + "%"),
                        ),
                    ),
                )
            ).scalar_one()
        )

    def check_limit(self, team: Team) -> None:
        """Raise LimitError if the team cannot submit now (an early check; create re-checks)."""
        with self.read() as conn:
            used = self.count_today(conn, team.id, now())
        if used >= team.daily_limit:
            raise LimitError(_limit_message(team, used))

    def create_submission(
        self,
        team: Team,
        *,
        model_name: str,
        card: dict[str, Any],
        split: str,
        upload_path: str,
        upload_sha256: str,
        upload_bytes: int,
    ) -> int:
        """Record an accepted upload (already stored atomically at ``upload_path``) and queue it.

        The daily limit is checked in the same serialised transaction as the insert.
        """
        at = now()
        with self.write() as conn:
            # Row lock on PostgreSQL; on SQLite the IMMEDIATE transaction already serialises.
            conn.execute(sa.select(teams.c.id).where(teams.c.id == team.id).with_for_update()).first()
            used = self.count_today(conn, team.id, at)
            if used >= team.daily_limit:
                raise LimitError(_limit_message(team, used))
            sub_id = int(
                conn.execute(
                    submissions.insert().values(
                        uid=uuid.uuid4().hex,
                        team_id=team.id,
                        model_name=model_name,
                        card_json=json.dumps(card, ensure_ascii=False),
                        state="submitted",
                        split=split,
                        upload_path=upload_path,
                        upload_sha256=upload_sha256,
                        upload_bytes=upload_bytes,
                        created_at=at,
                        updated_at=at,
                        attempts=0,
                    )
                ).inserted_primary_key[0]  # type: ignore[index]
            )
            self._event(conn, sub_id, "submitted", None, f"{upload_bytes} bytes, sha256 {upload_sha256}")
            conn.execute(submissions.update().where(submissions.c.id == sub_id).values(state="queued"))
            self._event(conn, sub_id, "queued", None, None)
        return sub_id

    def _event(
        self, conn: Connection, sub_id: int, state: str, worker: str | None, detail: str | None
    ) -> None:
        conn.execute(
            events.insert().values(submission_id=sub_id, at=now(), state=state, worker=worker, detail=detail)
        )

    # ------------------------------------------------------------------ reading

    def get_submission(self, sub_id: int) -> dict[str, Any]:
        with self.read() as conn:
            row = conn.execute(
                sa.select(submissions, teams.c.name.label("team"))
                .join(teams, teams.c.id == submissions.c.team_id)
                .where(submissions.c.id == sub_id)
            ).first()
            if row is None:
                raise NotFound(f"no submission {sub_id}")
            history = conn.execute(
                sa.select(events).where(events.c.submission_id == sub_id).order_by(events.c.id)
            ).all()
        out = _public(row)
        out["history"] = [{"at": iso(e.at), "state": e.state, "detail": e.detail} for e in history]
        return out

    def list_submissions(
        self, *, states: tuple[str, ...] | None = None, results: bool = True, ids: list[int] | None = None
    ) -> list[dict[str, Any]]:
        """Every submission (oldest first; only ``ids`` if given); ``results=False`` leaves the
        results JSON unread (``results`` is then None: read it with :meth:`results_json`)."""
        columns = [c for c in submissions.c if results or c.name != "results_json"]
        query = (
            sa.select(*columns, teams.c.name.label("team"))
            .join(teams, teams.c.id == submissions.c.team_id)
            .order_by(submissions.c.id)
        )
        if states:
            query = query.where(submissions.c.state.in_(states))
        out = []
        with self.read() as conn:
            for start in range(0, len(ids), 500) if ids is not None else [None]:
                q = query if start is None else query.where(submissions.c.id.in_(ids[start : start + 500]))  # type: ignore[index]
                out += [_public(r) for r in conn.execute(q).all()]
        return out

    def versions(self) -> dict[int, tuple[float, str]]:
        """id -> (updated_at, state) of every submission: what changes at each transition."""
        with self.read() as conn:
            rows = conn.execute(
                sa.select(submissions.c.id, submissions.c.updated_at, submissions.c.state)
            ).all()
        return {int(r.id): (float(r.updated_at), r.state) for r in rows}

    def results_json(self, ids: list[int]) -> dict[int, str]:
        """The stored results JSON text of these submissions (those that have one)."""
        out: dict[int, str] = {}
        with self.read() as conn:
            for start in range(0, len(ids), 500):
                rows = conn.execute(
                    sa.select(submissions.c.id, submissions.c.results_json).where(
                        submissions.c.id.in_(ids[start : start + 500]),
                        submissions.c.results_json.is_not(None),
                    )
                ).all()
                out.update({int(r.id): r.results_json for r in rows})
        return out

    def change_token(self) -> int:
        """Changes whenever any submission changes state (every transition appends an event, in
        the same transaction, and events are never deleted): a cheap key for caches."""
        with self.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def events_for(self, sub_id: int) -> list[dict[str, Any]]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(events).where(events.c.submission_id == sub_id).order_by(events.c.id)
            ).all()
        return [dict(r._mapping) for r in rows]

    def internal(self, sub_id: int) -> dict[str, Any]:
        """Every column of a submission (server-side use only; includes storage paths)."""
        with self.read() as conn:
            row = conn.execute(sa.select(submissions).where(submissions.c.id == sub_id)).first()
        if row is None:
            raise NotFound(f"no submission {sub_id}")
        return dict(row._mapping)

    def counts(self) -> dict[str, int]:
        with self.read() as conn:
            rows = conn.execute(
                sa.select(submissions.c.state, sa.func.count()).group_by(submissions.c.state)
            ).all()
        return {state: int(n) for state, n in rows}


def _limit_message(team: Team, used: int) -> str:
    return (
        f"team {team.name!r} has used its {team.daily_limit} submissions for today (UTC; {used} counted, "
        "failed runs excluded); try again tomorrow"
    )


def _private_file(path: Path) -> None:
    """Create the SQLite file (and a missing parent) readable by its owner only: 0600, 0700.
    SQLite gives its -wal and -shm files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        if not path.exists():
            # O_EXCL: never open (and close) a database file that exists: closing any descriptor
            # of a file drops every POSIX lock this process holds on it, SQLite's included, and
            # another Database of this process may have it open (lost WAL frames were seen).
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        os.chmod(path, 0o600)
    except OSError:  # another user's or a read-only file, or a race: SQLite says what is wrong
        pass


def _public(row: Any) -> dict[str, Any]:
    """What may leave the server about a submission: no storage paths, no lease internals."""
    card = json.loads(row.card_json)
    return {
        "id": row.id,
        "team": row.team,
        "model_name": row.model_name,
        "model_card": card,
        "state": row.state,
        "split": row.split,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "attempts": row.attempts,
        "upload_sha256": row.upload_sha256,
        "upload_bytes": row.upload_bytes,
        "results": json.loads(row.results_json) if getattr(row, "results_json", None) else None,
        "error": row.error,
    }

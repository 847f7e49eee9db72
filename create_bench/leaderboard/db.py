"""The leaderboard database (layer 5): teams, submissions and their lifecycle, with SQLAlchemy 2.

A SQLite file by default (``sqlite:///path/board.db``), PostgreSQL by URL
(``postgresql+psycopg://...``). The schema is versioned: ``schema_migrations`` records every
migration applied, :func:`Database.migrate` applies the missing ones in order, and a database
newer than this code is refused.

Lifecycle of a submission::

    submitted -> queued -> running -> finished
                             |  ^
                             |  +-- lease expired (worker killed): re-queued, attempts + 1
                             +----> failed

Workers claim a job with a conditional UPDATE and hold a lease they renew with heartbeats.
Every later transition is conditional on the worker still holding the lease, so a job whose
worker died is re-queued and a stale worker cannot finish it a second time: a submission
reaches ``finished`` exactly once. Every transition is also appended to ``events``.

Team tokens are shown once and stored as HMAC-SHA256 with a per-token salt.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from create_bench.errors import ConfigError, CreateBenchError

STATES = ("submitted", "queued", "running", "finished", "failed")
#: States that count against a team's daily limit (failed runs do not).
COUNTED_STATES = ("submitted", "queued", "running", "finished")
SCHEMA_VERSION = 1
TOKEN_PREFIX = "cbt"
#: How far back :meth:`Database.claim` looks at a team's started jobs to decide whose turn it is.
FAIR_WINDOW_S = 3600.0
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


metadata = sa.MetaData()

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.String(40), nullable=False),
)

teams = sa.Table(
    "teams",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("token_id", sa.String(32), nullable=False, unique=True),
    sa.Column("token_salt", sa.String(64), nullable=False),
    sa.Column("token_hash", sa.String(128), nullable=False),
    sa.Column("daily_limit", sa.Integer, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

submissions = sa.Table(
    "submissions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("uid", sa.String(32), nullable=False, unique=True),
    sa.Column("team_id", sa.Integer, sa.ForeignKey("teams.id"), nullable=False, index=True),
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("card_json", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False, index=True),
    sa.Column("split", sa.String(32), nullable=False),
    sa.Column("upload_path", sa.String(500), nullable=False),
    sa.Column("upload_sha256", sa.String(64), nullable=False),
    sa.Column("upload_bytes", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False, index=True),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("lease_owner", sa.String(100), nullable=True),
    sa.Column("lease_expires", sa.Float, nullable=True),
    sa.Column("results_json", sa.Text, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("submission_id", sa.Integer, sa.ForeignKey("submissions.id"), nullable=False, index=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("worker", sa.String(100), nullable=True),
    sa.Column("detail", sa.Text, nullable=True),
)


def _v1(conn: Connection) -> None:
    for table in (teams, submissions, events):
        table.create(conn)


#: (version, description, apply). Append only; never edit an applied migration.
MIGRATIONS: list[tuple[int, str, Any]] = [
    (1, "teams, submissions, events", _v1),
]


def now() -> float:
    return time.time()


def utc_day_start(ts: float) -> float:
    day = dt.datetime.fromtimestamp(ts, dt.timezone.utc).date()
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


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


@dataclass(frozen=True)
class Job:
    """A claimed submission, as a worker sees it."""

    id: int
    upload_path: str
    split: str
    attempts: int
    worker: str


class Database:
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

    # ------------------------------------------------------------------ worker side

    def claim(self, worker: str, *, lease_s: float, max_attempts: int = 3) -> Job | None:
        """Claim a queued job, or a running one whose lease expired (its worker died), fairly
        across teams (see :meth:`_fair_order`).

        A job that already used ``max_attempts`` leases fails instead of being retried forever.
        """
        t = now()
        runnable = sa.or_(
            # A queued job's lease_expires, when set, is the earliest retry (see requeue).
            sa.and_(
                submissions.c.state == "queued",
                sa.or_(submissions.c.lease_expires.is_(None), submissions.c.lease_expires <= t),
            ),
            sa.and_(submissions.c.state == "running", submissions.c.lease_expires < t),
        )
        with self.write() as conn:
            for row in self._fair_order(conn, runnable, t)[:8]:
                if row.state == "running":
                    self._event(conn, row.id, "queued", row.lease_owner, "lease expired; re-queued")
                if row.attempts >= max_attempts:
                    done = conn.execute(
                        submissions.update()
                        .where(submissions.c.id == row.id, runnable)
                        .values(
                            state="failed",
                            error=f"scoring did not complete after {row.attempts} attempts",
                            lease_owner=None,
                            lease_expires=None,
                            updated_at=t,
                        )
                    )
                    if done.rowcount == 1:
                        self._event(conn, row.id, "failed", None, "too many attempts")
                    continue
                won = conn.execute(
                    submissions.update()
                    .where(submissions.c.id == row.id, runnable)
                    .values(
                        state="running",
                        lease_owner=worker,
                        lease_expires=t + lease_s,
                        attempts=submissions.c.attempts + 1,
                        updated_at=t,
                    )
                )
                if won.rowcount != 1:  # another worker was faster (PostgreSQL re-checks the WHERE)
                    continue
                self._event(conn, row.id, "running", worker, f"attempt {row.attempts + 1}")
                job = conn.execute(
                    sa.select(submissions.c.upload_path, submissions.c.split, submissions.c.attempts).where(
                        submissions.c.id == row.id
                    )
                ).one()
                return Job(row.id, job.upload_path, job.split, job.attempts, worker)
        return None

    def _fair_order(self, conn: Connection, runnable: Any, t: float) -> list[Any]:
        """Runnable jobs, fairest first: one team's burst never holds the workers while other
        teams wait. A team's turn comes by (jobs it has running now, jobs of it that workers
        started in the last ``FAIR_WINDOW_S``, its oldest runnable job); within a team, oldest
        first."""
        rows = conn.execute(
            sa.select(
                submissions.c.id,
                submissions.c.team_id,
                submissions.c.state,
                submissions.c.attempts,
                submissions.c.lease_owner,
                submissions.c.created_at,
            )
            .where(runnable)
            .order_by(submissions.c.created_at, submissions.c.id)
        ).all()
        if len({r.team_id for r in rows}) <= 1:
            return list(rows)
        running: dict[int, int] = dict(
            conn.execute(
                sa.select(submissions.c.team_id, sa.func.count())
                .where(submissions.c.state == "running", submissions.c.lease_expires >= t)
                .group_by(submissions.c.team_id)
            ).all()
        )
        recent: dict[int, int] = dict(
            conn.execute(
                sa.select(submissions.c.team_id, sa.func.count())
                .select_from(events.join(submissions, submissions.c.id == events.c.submission_id))
                .where(events.c.state == "running", events.c.at >= t - FAIR_WINDOW_S)
                .group_by(submissions.c.team_id)
            ).all()
        )
        by_team: dict[int, list[Any]] = {}
        for r in rows:
            by_team.setdefault(r.team_id, []).append(r)
        # Round robin: each team's k-th job after every team's (k-1)-th, teams in fairness order.
        teams_order = sorted(
            by_team, key=lambda tid: (running.get(tid, 0), recent.get(tid, 0), by_team[tid][0].created_at)
        )
        depth = max(len(v) for v in by_team.values())
        return [by_team[tid][k] for k in range(depth) for tid in teams_order if k < len(by_team[tid])]

    def heartbeat(self, job: Job, *, lease_s: float) -> bool:
        """Extend the lease; False when the worker no longer holds it (it must stop)."""
        with self.write() as conn:
            res = conn.execute(
                submissions.update().where(*self._held(job)).values(lease_expires=now() + lease_s)
            )
        return res.rowcount == 1

    def _held(self, job: Job) -> tuple[Any, ...]:
        return (
            submissions.c.id == job.id,
            submissions.c.state == "running",
            # Owner, not expiry: a claim by another worker changes the owner atomically, so
            # a late but sole worker may still finish, and a replaced one never can.
            submissions.c.lease_owner == job.worker,
        )

    def finish(self, job: Job, results: dict[str, Any]) -> bool:
        """running -> finished, only while the lease is held. False: the result is discarded."""
        return self._complete(
            job, "finished", results_json=json.dumps(results, ensure_ascii=False), error=None
        )

    def fail(self, job: Job, message: str) -> bool:
        """running -> failed, only while the lease is held."""
        return self._complete(job, "failed", results_json=None, error=message)

    def requeue(self, job: Job, *, delay_s: float, detail: str) -> bool:
        """running -> queued, only while the lease is held, claimable again after ``delay_s``
        (a transient server fault such as a full disk: not the submitter's doing)."""
        t = now()
        with self.write() as conn:
            res = conn.execute(
                submissions.update()
                .where(*self._held(job))
                .values(state="queued", lease_owner=None, lease_expires=t + delay_s, updated_at=t)
            )
            if res.rowcount != 1:
                return False
            self._event(conn, job.id, "queued", job.worker, detail)
        return True

    def _complete(self, job: Job, state: str, *, results_json: str | None, error: str | None) -> bool:
        with self.write() as conn:
            res = conn.execute(
                submissions.update()
                .where(*self._held(job))
                .values(
                    state=state,
                    results_json=results_json,
                    error=error,
                    lease_owner=None,
                    lease_expires=None,
                    updated_at=now(),
                )
            )
            if res.rowcount != 1:
                return False
            self._event(conn, job.id, state, job.worker, error)
        return True

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
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
    except OSError:  # another user's or a read-only file: SQLite says what is wrong when it opens it
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

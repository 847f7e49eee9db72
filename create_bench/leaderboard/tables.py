"""The leaderboard database's tables and migrations (layer 5), and how it stores time.

The schema is versioned: ``schema_migrations`` records every migration applied,
:meth:`~create_bench.leaderboard.db.Database.migrate` applies the missing ones of
:data:`MIGRATIONS` in order, and a database newer than this code is refused. Times are stored as
epoch seconds (:func:`now`) and shown as ISO 8601 UTC (:func:`iso`).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

STATES = ("submitted", "queued", "running", "finished", "failed")
#: States that count against a team's daily limit (failed runs do not).
COUNTED_STATES = ("submitted", "queued", "running", "finished")
SCHEMA_VERSION = 1

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

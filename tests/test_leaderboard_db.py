"""Leaderboard database: versioned schema, hashed tokens, lifecycle, daily limits, leases; on SQLite
and on a real PostgreSQL server (a throwaway cluster, tests/leaderboard_pg.py)."""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa
from leaderboard_pg import BACKENDS, backend_url, pg_cluster  # noqa: F401 - fixture

from create_bench.errors import ConfigError
from create_bench.leaderboard import db as dbm
from create_bench.leaderboard.db import AuthError, Database, LimitError, NotFound


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    """A fresh, empty database: a SQLite file, or a database on the throwaway PostgreSQL cluster."""
    return backend_url(request, tmp_path)


@pytest.fixture()
def db(url) -> Database:
    d = Database(url)
    d.migrate()
    yield d
    d.close()


def _submit(d: Database, team: dbm.Team, name: str = "m") -> int:
    return d.create_submission(
        team,
        model_name=name,
        card={"name": name},
        split="test",
        upload_path=f"uploads/{name}.tar.gz",
        upload_sha256="0" * 64,
        upload_bytes=10,
    )


def test_migrations_are_versioned_and_idempotent(url):
    d = Database(url)
    assert d.schema_version() == 0
    with pytest.raises(ConfigError, match="schema version 0"):
        d.check_schema()
    assert d.migrate() == dbm.SCHEMA_VERSION
    assert d.migrate() == dbm.SCHEMA_VERSION  # a second run applies nothing
    with d.read() as conn:
        rows = conn.execute(sa.select(dbm.schema_migrations)).all()
        tables = set(sa.inspect(conn).get_table_names())
    assert [r.version for r in rows] == [v for v, _, _ in dbm.MIGRATIONS]
    assert {"teams", "submissions", "events", "schema_migrations"} <= tables


def test_a_newer_database_is_refused(db):
    with db.write() as conn:
        conn.execute(dbm.schema_migrations.insert().values(version=99, description="future", applied_at="x"))
    with pytest.raises(ConfigError, match="newer than this create-bench"):
        db.migrate()


def test_tokens_are_stored_hashed(db, tmp_path):
    team, token = db.add_team("alpha")
    secret = token.split("_", 2)[2]
    assert len(secret) >= 40
    db.close()
    if db.is_sqlite:
        raw = (tmp_path / "board.db").read_bytes() + b"".join(
            p.read_bytes()
            for p in tmp_path.glob("board.db-*")  # WAL files too
        )
        assert secret.encode() not in raw
    assert db.authenticate(token) == team
    with db.read() as conn:
        row = conn.execute(sa.select(dbm.teams)).one()
    assert row.token_hash != secret and len(row.token_hash) == 64 and len(row.token_salt) == 32


def test_two_teams_have_different_salts(db):
    db.add_team("a")
    db.add_team("b")
    with db.read() as conn:
        salts = conn.execute(sa.select(dbm.teams.c.token_salt)).scalars().all()
    assert len(set(salts)) == 2


@pytest.mark.parametrize(
    "bad",
    [None, "", "garbage", "cbt_123", "xyz_abcd_efgh", "cbt_0000000000000000_wrongsecret"],
)
def test_bad_tokens_are_rejected(db, bad):
    db.add_team("alpha")
    with pytest.raises(AuthError):
        db.authenticate(bad)


def test_wrong_secret_for_a_real_token_id(db):
    _, token = db.add_team("alpha")
    prefix, tid, secret = token.split("_", 2)
    with pytest.raises(AuthError, match="invalid team token"):
        db.authenticate(f"{prefix}_{tid}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}")


def test_duplicate_team_and_bad_limits(db):
    db.add_team("alpha")
    with pytest.raises(ConfigError, match="already exists"):
        db.add_team("alpha")
    with pytest.raises(ConfigError, match="at least 1"):
        db.add_team("beta", daily_limit=0)


def test_lifecycle_and_history(db):
    team, _ = db.add_team("alpha")
    sid = _submit(db, team)
    assert db.get_submission(sid)["state"] == "queued"
    job = db.claim("w1", lease_s=30)
    assert job is not None and job.id == sid and job.attempts == 1
    assert db.get_submission(sid)["state"] == "running"
    assert db.claim("w2", lease_s=30) is None  # nothing else to do
    assert db.finish(job, {"scores": {"caption": {"CIDEr": 1.0}}})
    sub = db.get_submission(sid)
    assert sub["state"] == "finished" and sub["results"]["scores"]["caption"]["CIDEr"] == 1.0
    assert [h["state"] for h in sub["history"]] == ["submitted", "queued", "running", "finished"]
    assert "upload_path" not in sub and "lease_owner" not in sub  # internals stay internal
    assert not db.finish(job, {})  # a second completion is refused
    assert db.get_submission(sid)["results"]["scores"]["caption"]["CIDEr"] == 1.0
    with pytest.raises(NotFound):
        db.get_submission(sid + 100)


def test_daily_limit_counts_everything_but_failures(db):
    team, _ = db.add_team("alpha", daily_limit=2)
    _submit(db, team, "a")
    _submit(db, team, "b")
    with pytest.raises(LimitError, match="used its 2 submissions"):
        _submit(db, team, "c")
    with pytest.raises(LimitError):
        db.check_limit(team)
    job = db.claim("w", lease_s=30)
    assert db.fail(job, "bad predictions")
    db.check_limit(team)  # the failed run no longer counts
    _submit(db, team, "c")
    with pytest.raises(LimitError):
        _submit(db, team, "d")
    assert db.counts() == {"failed": 1, "queued": 2}


def test_daily_limit_resets_at_utc_midnight(db, monkeypatch):
    team, _ = db.add_team("alpha", daily_limit=1)
    day = 1_700_000_000.0
    midnight = dbm.utc_day_start(day) + 86400
    monkeypatch.setattr(dbm, "now", lambda: midnight - 1)
    _submit(db, team, "a")
    with pytest.raises(LimitError):
        _submit(db, team, "b")
    monkeypatch.setattr(dbm, "now", lambda: midnight + 1)
    _submit(db, team, "b")


def test_daily_limit_holds_under_concurrency(url):
    """Ten clients (own engines, as separate processes would have) race for a limit of three."""
    Database(url).migrate()
    team, _ = Database(url).add_team("racers", daily_limit=3)
    ok, refused = [], []
    barrier = threading.Barrier(10)

    def client(i: int) -> None:
        d = Database(url)
        barrier.wait()
        try:
            ok.append(_submit(d, team, f"m{i}"))
        except LimitError:
            refused.append(i)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ok) == 3 and len(refused) == 7
    assert len(Database(url).list_submissions()) == 3


def test_each_job_is_claimed_by_exactly_one_worker(url):
    d = Database(url)
    d.migrate()
    team, _ = d.add_team("t", daily_limit=100)
    ids = {_submit(d, team, f"m{i}") for i in range(12)}
    claimed: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        w = Database(url)
        while (job := w.claim(name, lease_s=60)) is not None:
            with lock:
                claimed.append((name, job.id))
            assert w.finish(job, {"scores": {}})

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(j for _, j in claimed) == sorted(ids)
    for sid in ids:
        states = [e["state"] for e in d.events_for(sid)]
        assert states.count("running") == 1 and states.count("finished") == 1


def test_expired_lease_is_requeued_and_the_stale_worker_cannot_finish(db):
    team, _ = db.add_team("alpha")
    sid = _submit(db, team)
    stale = db.claim("dead-worker", lease_s=0.2)
    assert stale is not None
    assert db.claim("w2", lease_s=30) is None  # lease still valid
    time.sleep(0.3)
    fresh = db.claim("w2", lease_s=30)
    assert fresh is not None and fresh.id == sid and fresh.attempts == 2
    assert not db.heartbeat(stale, lease_s=30)  # the stale worker learns it lost the job
    assert not db.finish(stale, {"scores": {"x": {}}})
    assert db.finish(fresh, {"scores": {}})
    events = db.events_for(sid)
    assert [e["state"] for e in events] == ["submitted", "queued", "running", "queued", "running", "finished"]
    assert "lease expired" in events[3]["detail"]


def test_heartbeats_keep_the_lease(db):
    team, _ = db.add_team("alpha")
    _submit(db, team)
    job = db.claim("w1", lease_s=0.3)
    for _ in range(6):
        time.sleep(0.1)
        assert db.heartbeat(job, lease_s=0.3)
        assert db.claim("w2", lease_s=0.3) is None
    assert db.finish(job, {})


def test_a_job_that_keeps_killing_workers_fails_after_max_attempts(db):
    team, _ = db.add_team("alpha")
    sid = _submit(db, team)
    for _ in range(3):
        assert db.claim("w", lease_s=0.01) is not None
        time.sleep(0.03)
    assert db.claim("w", lease_s=0.01, max_attempts=3) is None
    sub = db.get_submission(sid)
    assert sub["state"] == "failed" and "after 3 attempts" in sub["error"]
    db.check_limit(team)  # and it does not count against the team


def test_bad_url(tmp_path):
    with pytest.raises(ConfigError, match="cannot open database"):
        Database("nosuchdialect://x")


def test_schema_and_queries_compile_for_postgresql():
    """PostgreSQL is supported by URL; without a server here, at least every DDL statement and the
    locking queries must compile for its dialect."""
    from sqlalchemy.dialects import postgresql

    dialect = postgresql.dialect()
    for table in dbm.metadata.sorted_tables:
        ddl = str(sa.schema.CreateTable(table).compile(dialect=dialect))
        assert "CREATE TABLE" in ddl
    lock = sa.select(dbm.teams.c.id).where(dbm.teams.c.id == 1).with_for_update()
    assert "FOR UPDATE" in str(lock.compile(dialect=dialect))


def test_a_store_dropped_without_close_closes_its_connections(url):
    """A Database that is only garbage-collected (no close()) disposes of its pool: no connection is
    left to be deleted while open (psycopg's ResourceWarning, a leaked server connection)."""
    import gc
    import warnings

    d = Database(url)
    d.migrate()
    d.add_team("t")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del d
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)], [
        str(w.message) for w in caught
    ]

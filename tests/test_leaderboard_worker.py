"""Scoring worker: outcomes, leases and heartbeats (fake scorers, in-process), and the fault test
(a real worker process killed with SIGKILL mid-scoring; the real scorer finishes the job once),
on SQLite and on a real PostgreSQL server (tests/leaderboard_pg.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from leaderboard_pg import BACKENDS, backend_url, pg_cluster  # noqa: F401 - fixture
from leaderboard_util import small_expected, write_predictions

from create_bench.errors import PredictionError
from create_bench.leaderboard.db import Database
from create_bench.leaderboard.submission import pack_directory
from create_bench.leaderboard.worker import ScoringConfig, Worker, WorkerConfig, wait_for
from create_bench.scoring import ScoringOptions

TESTS = Path(__file__).resolve().parent


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    return backend_url(request, tmp_path)


def _setup(
    tmp_path: Path, url: str, *, lease: float = 30.0, heartbeat: float = 10.0
) -> tuple[Database, WorkerConfig, int]:
    db = Database(url)
    db.migrate()
    team, _ = db.add_team("team", daily_limit=50)
    storage = tmp_path / "storage"
    (storage / "uploads").mkdir(parents=True)
    pred = write_predictions(tmp_path / "pred", small_expected())
    pack_directory(pred, storage / "uploads" / "a.tar.gz")
    sid = db.create_submission(
        team,
        model_name="m",
        card={"name": "m"},
        split="test",
        upload_path="uploads/a.tar.gz",
        upload_sha256="0" * 64,
        upload_bytes=1,
    )
    cfg = WorkerConfig(
        storage_dir=storage,
        scoring=ScoringConfig(data_dir=tmp_path / "secret-data-dir", options=ScoringOptions(bootstrap=0)),
        lease_s=lease,
        heartbeat_s=heartbeat,
        poll_s=0.05,
    )
    return db, cfg, sid


def _worker(db: Database, cfg: WorkerConfig, scorer, name: str) -> Worker:
    return Worker(db, cfg, scorer=scorer, name=name, expected=small_expected())


def test_success_stores_scores_and_model_info(tmp_path, url):
    db, cfg, sid = _setup(tmp_path, url)
    seen = {}

    def scorer(pred_dir, data_dir, split, **kw):
        seen.update(kw, split=split, files=sorted(p.name for p in Path(pred_dir).iterdir()))
        return {"scores": {"caption": {"CIDEr": 12.5}}, "dataset": {"path": str(data_dir)}}

    assert _worker(db, cfg, scorer, "w").run_once() == sid
    sub = db.get_submission(sid)
    assert sub["state"] == "finished"
    assert sub["results"]["scores"] == {"caption": {"CIDEr": 12.5}}
    assert sub["results"]["model"]["name"] == "simple-baseline"
    assert sub["results"]["dataset"]["path"] == "<server>"  # server paths never leave the server
    assert seen["split"] == "test" and seen["options"].bootstrap == 0 and "model_card.yaml" in seen["files"]
    assert not list((cfg.storage_dir / "work").iterdir())  # the unpacked copy is removed


def test_a_scoring_error_fails_the_submission_with_its_message(tmp_path, url):
    db, cfg, sid = _setup(tmp_path, url)

    def scorer(pred_dir, data_dir, split, **kw):
        raise PredictionError(f"video_ids.json does not match (read from {data_dir})")

    _worker(db, cfg, scorer, "w").run_once()
    sub = db.get_submission(sid)
    assert sub["state"] == "failed"
    assert "video_ids.json does not match" in sub["error"]
    assert "secret-data-dir" not in sub["error"]


def test_an_internal_error_says_little(tmp_path, url):
    db, cfg, sid = _setup(tmp_path, url)

    def scorer(*a, **kw):
        raise RuntimeError("/very/secret/path exploded")

    _worker(db, cfg, scorer, "w").run_once()
    sub = db.get_submission(sid)
    assert sub["state"] == "failed" and "internal error" in sub["error"] and "secret" not in sub["error"]


def test_heartbeats_hold_the_lease_during_long_scoring(tmp_path, url):
    db, cfg, sid = _setup(tmp_path, url, lease=0.4, heartbeat=0.1)
    other = []

    def scorer(*a, **kw):
        for _ in range(8):
            time.sleep(0.1)
            other.append(db.claim("intruder", lease_s=1))
        return {"scores": {}}

    _worker(db, cfg, scorer, "w").run_once()
    assert other == [None] * 8
    sub = db.get_submission(sid)
    assert sub["state"] == "finished" and sub["attempts"] == 1


def test_a_stalled_worker_loses_its_job_and_cannot_finish_it(tmp_path, url):
    """Worker A stalls past its lease (no heartbeats); B takes over and finishes; A's late result
    is discarded. The submission finishes exactly once, with B's result."""
    db, cfg, sid = _setup(tmp_path, url, lease=0.3, heartbeat=60)
    release = threading.Event()
    started = threading.Event()

    def stalled(*a, **kw):
        started.set()
        release.wait(10)
        return {"scores": {"caption": {"CIDEr": -1.0}}}

    a = threading.Thread(target=_worker(db, cfg, stalled, "A").run_once)
    a.start()
    assert started.wait(10)
    time.sleep(0.4)
    assert _worker(db, cfg, lambda *x, **k: {"scores": {"caption": {"CIDEr": 7.0}}}, "B").run_once() == sid
    release.set()
    a.join()
    sub = db.get_submission(sid)
    assert sub["state"] == "finished" and sub["results"]["scores"]["caption"]["CIDEr"] == 7.0
    states = [e["state"] for e in db.events_for(sid)]
    assert states.count("finished") == 1 and sub["attempts"] == 2


def test_run_stops_on_request(tmp_path, url):
    db, cfg, _ = _setup(tmp_path, url)
    stop = threading.Event()
    w = _worker(db, cfg, lambda *a, **k: {"scores": {}}, "w")
    t = threading.Thread(target=w.run, args=(stop,))
    t.start()
    assert wait_for(lambda: db.counts().get("finished") == 1, 10)
    stop.set()
    t.join(5)
    assert not t.is_alive()


# --------------------------------------------------------------------------- storage faults


def _disk_fault(monkeypatch, err: int) -> None:
    def boom(*a, **kw):
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr("create_bench.leaderboard.archive._copy_member", boom)


def test_a_full_disk_requeues_with_backoff_and_the_job_then_finishes(tmp_path, url, monkeypatch):
    import errno
    from dataclasses import replace

    db, cfg, sid = _setup(tmp_path, url)
    cfg = replace(cfg, retry_backoff_s=0.3)
    w = _worker(db, cfg, lambda *a, **k: {"scores": {"caption": {"CIDEr": 1.0}}}, "w")
    _disk_fault(monkeypatch, errno.ENOSPC)
    assert w.run_once() == sid
    sub = db.get_submission(sid)
    assert sub["state"] == "queued" and sub["error"] is None  # not failed, not blamed on the archive
    assert "server storage error (ENOSPC); retrying in 0.3 s" in sub["history"][-1]["detail"]
    assert w.run_once() is None  # backing off
    assert not list((cfg.storage_dir / "work").iterdir())
    monkeypatch.undo()
    assert wait_for(lambda: w.run_once() == sid, 5)
    sub = db.get_submission(sid)
    assert sub["state"] == "finished" and sub["attempts"] == 2


def test_a_persistent_storage_fault_fails_without_counting_against_the_team(tmp_path, url, monkeypatch):
    import errno
    from dataclasses import replace

    db, cfg, sid = _setup(tmp_path, url)
    cfg = replace(cfg, retry_backoff_s=0.01)
    w = _worker(db, cfg, lambda *a, **k: {"scores": {}}, "w")
    _disk_fault(monkeypatch, errno.EROFS)
    delays = []
    for _ in range(cfg.max_attempts):
        assert wait_for(lambda: w.run_once() == sid, 5)
        delays.append(db.get_submission(sid)["history"][-1]["detail"])
    sub = db.get_submission(sid)
    assert sub["state"] == "failed" and sub["attempts"] == cfg.max_attempts
    assert sub["error"].startswith("server storage error (EROFS) after 3 attempts")
    assert "corrupt" not in sub["error"] and "internal error" not in sub["error"]
    assert "retrying in 0.01 s" in delays[0] and "retrying in 0.02 s" in delays[1]  # exponential
    team = db.teams()[0]
    with db.read() as conn:
        assert db.count_today(conn, team.id, time.time()) == 0


# --------------------------------------------------------------------------- fault test


def _worker_proc(
    db_url: str, data: Path, storage: Path, env: dict[str, str], *extra: str
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable, "-m", "create_bench", "leaderboard", "worker",
            "--db", db_url, "--data", str(data), "--storage", str(storage),
            "--lease", "2", "--heartbeat", "0.4", "--poll", "0.1", "--bootstrap", "200", *extra,
        ],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


@pytest.mark.slow
def test_worker_killed_mid_scoring_is_finished_exactly_once(tmp_path, url, tiny_dataset):
    from create_bench.leaderboard.submission import ExpectedIds
    from create_bench.scoring import score_predictions

    db_url = url
    db = Database(db_url)
    db.migrate()
    team, _ = db.add_team("team")
    storage = tmp_path / "storage"
    (storage / "uploads").mkdir(parents=True)
    pred = write_predictions(tmp_path / "pred", ExpectedIds.from_dataset(tiny_dataset, "test"))
    pack_directory(pred, storage / "uploads" / "s.tar.gz")
    sid = db.create_submission(
        team, model_name="m", card={"name": "m"}, split="test", upload_path="uploads/s.tar.gz",
        upload_sha256="0" * 64, upload_bytes=1,
    )  # fmt: skip
    marker = tmp_path / "scoring-started"
    slow = f"{TESTS / 'leaderboard_scorers.py'}:slow_score"
    a = _worker_proc(db_url, tiny_dataset, storage, {"LB_SLOW_MARKER": str(marker), "LB_SLOW_SECONDS": "60"},
                     "--scorer", slow)  # fmt: skip
    try:
        assert wait_for(marker.exists, 120), a.stdout.read().decode() if a.poll() is not None else "no start"
        sub = db.internal(sid)
        assert sub["state"] == "running" and f":{a.pid}:" in sub["lease_owner"]
        a.send_signal(signal.SIGKILL)
        assert a.wait(10) == -signal.SIGKILL
    finally:
        if a.poll() is None:
            a.kill()
            a.wait(10)
        a.stdout.close()  # the killed worker's pipe: not left for the garbage collector to close
    assert db.get_submission(sid)["state"] == "running"  # nobody finished it: the lease is all that is left

    # A fresh worker with the real scorer re-queues the job once the lease runs out and finishes it.
    b = _worker_proc(db_url, tiny_dataset, storage, {}, "--max-jobs", "1")
    out = b.communicate(timeout=300)[0].decode()
    assert b.returncode == 0, out
    sub = db.get_submission(sid)
    assert sub["state"] == "finished", sub
    assert sub["attempts"] == 2
    states = [e["state"] for e in db.events_for(sid)]
    assert states == ["submitted", "queued", "running", "queued", "running", "finished"]
    assert db.claim("late-worker", lease_s=1) is None  # nothing left to do: it finished exactly once
    assert not list((storage / "work").iterdir())  # the killed worker's unpacked copy was removed

    direct = score_predictions(pred, tiny_dataset, "test", bootstrap=200, seed=0)
    assert sub["results"]["scores"] == json.loads(json.dumps(direct["scores"]))
    assert sub["results"]["ci"] == json.loads(json.dumps(direct["ci"]))
    assert sub["results"]["signature"] == direct["signature"]


@pytest.mark.slow
def test_server_and_workers_killed_mid_scoring_then_restarted(tmp_path, tiny_dataset):
    """kill -9 of the whole service (server + its workers) while a submission is being scored,
    as in a machine crash: after a restart the accepted submission is re-queued and finishes once."""
    from leaderboard_util import add_team, free_port, running_server

    from create_bench.leaderboard import client
    from create_bench.leaderboard.submission import ExpectedIds

    db_url = f"sqlite:///{tmp_path / 'board.db'}"
    token = add_team(db_url, "team")
    storage = tmp_path / "storage"
    pred = write_predictions(tmp_path / "pred", ExpectedIds.from_dataset(tiny_dataset, "test"))
    marker = tmp_path / "scoring-started"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = subprocess.Popen(
        [
            sys.executable, "-m", "create_bench", "leaderboard", "serve", "--db", db_url,
            "--data", str(tiny_dataset), "--storage", str(storage), "--port", str(port), "--workers", "1",
            "--lease", "2", "--heartbeat", "0.4", "--poll", "0.1", "--bootstrap", "200",
            "--scorer", f"{TESTS / 'leaderboard_scorers.py'}:slow_score", "--log-level", "warning",
        ],
        env={**os.environ, "LB_SLOW_MARKER": str(marker), "LB_SLOW_SECONDS": "120"},
        start_new_session=True,
    )  # fmt: skip
    try:
        import httpx

        assert wait_for(lambda: _up(httpx, url), 120)
        sid = client.upload(pred, url, token)["id"]
        assert wait_for(marker.exists, 120)
        assert Database(db_url).get_submission(sid)["state"] == "running"
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
    time.sleep(0.5)
    assert Database(db_url).get_submission(sid)["state"] == "running"
    with running_server(db_url, tiny_dataset, storage, workers=1, extra=("--bootstrap", "200")) as url2:
        final = client.wait(url2, sid, timeout=300)
    assert final["state"] == "finished" and final["attempts"] == 2
    states = [e["state"] for e in Database(db_url).events_for(sid)]
    assert states.count("finished") == 1 and states.count("running") == 2
    assert final["results"]["scores"]["t2v_caption"]["R@1"] >= 0


def _up(httpx, url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False

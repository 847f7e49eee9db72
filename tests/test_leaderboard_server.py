"""The evaluation server: upload checks (each bad input rejected with a clear message and nothing
stored), the JSON API, the pages (escaped user text, no references in any response), and end to
end over loopback with ``create-bench submit`` and the real scorer."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from leaderboard_util import (
    add_team,
    cli,
    dir_to_members,
    file_member,
    references,
    running_server,
    tar_gz,
    text_dataset,
    write_card,
    write_predictions,
)

from create_bench.leaderboard.db import Database
from create_bench.leaderboard.server import ServerConfig, create_app
from create_bench.leaderboard.submission import ExpectedIds, Limits, pack_directory
from create_bench.leaderboard.worker import ScoringConfig, Worker, WorkerConfig
from create_bench.scoring import ScoringOptions

XSS = "<script>alert(1)</script>"


class Board:
    """An in-process server over a small text dataset, with helpers to upload and to check that
    nothing was stored."""

    def __init__(self, tmp: Path, *, limits: Limits | None = None):
        from fastapi.testclient import TestClient

        self.tmp = tmp
        self.data = text_dataset(tmp / "data")
        self.expected = ExpectedIds.from_dataset(self.data, "test")
        self.storage = tmp / "storage"
        self.db = Database(str(tmp / "board.db"))
        self.scoring = ScoringConfig(data_dir=self.data, options=ScoringOptions(bootstrap=50))
        self.config = ServerConfig(
            db_url=self.db.url,
            storage_dir=self.storage,
            scoring=self.scoring,
            limits=limits or Limits(max_upload_bytes=300_000, max_unpacked_bytes=2_000_000),
        )
        self.client = TestClient(create_app(self.config, db=self.db))
        _, self.token = self.db.add_team("alpha", daily_limit=3)
        self.n = 0

    def predictions(self, **kw) -> Path:
        self.n += 1
        return write_predictions(self.tmp / f"pred{self.n}", self.expected, **kw)

    def archive(self, pred: Path) -> bytes:
        return pack_directory(pred, self.tmp / f"up{self.n}.tar.gz").read_bytes()

    def post(self, body: bytes, token: str | None = "default", headers: dict | None = None):
        token = self.token if token == "default" else token
        h = {"Content-Type": "application/gzip", **(headers or {})}
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        return self.client.post("/api/submissions", content=body, headers=h)

    def stored(self) -> tuple[int, list[str]]:
        files = sorted(p.name for p in (self.storage / "uploads").iterdir())
        work = self.storage / "work"
        assert not work.exists() or not list(work.iterdir()), "unpacked files left behind"
        return len(self.db.list_submissions()), files

    def score_all(self) -> None:
        worker = Worker(self.db, WorkerConfig(storage_dir=self.storage, scoring=self.scoring))
        while worker.run_once() is not None:
            pass


@pytest.fixture()
def board(tmp_path) -> Board:
    return Board(tmp_path)


def rejected(board: Board, resp, status: int, pattern: str) -> None:
    """The answer has the status and a clear message, and nothing was stored."""
    before = getattr(board, "_before", (0, []))
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]
    import re

    assert re.search(pattern, message), message
    assert board.stored() == before


def test_accepts_a_valid_submission(board):
    resp = board.post(board.archive(board.predictions()))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["state"] == "queued" and body["model_name"] == "simple-baseline"
    assert set(body["tasks"]) == {"retrieval", "title", "caption"}
    n, files = board.stored()
    assert n == 1 and len(files) == 1 and files[0].endswith(".tar.gz")
    sub = board.client.get(body["api"]).json()
    assert sub["state"] == "queued" and sub["team"] == "alpha"
    assert [h["state"] for h in sub["history"]] == ["submitted", "queued"]


def test_bad_tokens(board):
    body = board.archive(board.predictions())
    rejected(board, board.post(body, token=None), 401, "missing team token")
    rejected(board, board.post(body, token="cbt_00_nope"), 401, "invalid team token")
    rejected(
        board, board.post(body, token=None, headers={"Authorization": "Basic abc"}), 401, "expected 'Bearer"
    )
    assert board.post(body, token="x").headers["www-authenticate"] == "Bearer"


def test_oversized_upload(board):
    big = b"\x1f\x8b" + bytes(400_000)
    rejected(board, board.post(big), 413, "over the limit of 300000 bytes")

    def stream():  # no Content-Length: the cap is enforced while streaming
        for _ in range(40):
            yield bytes(10_000)

    resp = board.client.post(
        "/api/submissions",
        content=stream(),
        headers={"Authorization": f"Bearer {board.token}", "Content-Type": "application/gzip"},
    )
    rejected(board, resp, 413, "over the limit")


def test_unsafe_archives(board):
    pred = board.predictions()
    for extra, pattern in [
        ([file_member("../evil.txt", b"x")], r"'\.\.' in paths"),
        ([file_member("/etc/evil", b"x")], "absolute paths"),
        ([file_member("run.sh", b"x")], "unexpected file 'run.sh'"),
    ]:
        body = tar_gz(board.tmp / "bad.tar.gz", dir_to_members(pred) + extra).read_bytes()
        rejected(board, board.post(body), 400, pattern)
    link = tarfile.TarInfo("README.md")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    body = tar_gz(board.tmp / "link.tar.gz", dir_to_members(pred) + [(link, None)]).read_bytes()
    rejected(board, board.post(body), 400, "symbolic link")
    assert not (board.storage / "evil.txt").exists() and not (board.storage.parent / "evil.txt").exists()


def test_decompression_bomb(board):
    info = tarfile.TarInfo("text_embeddings.npy")
    info.size = 50 << 20
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    assert len(buf.getvalue()) < 300_000
    rejected(board, board.post(buf.getvalue()), 400, "decompression bomb")


def test_not_an_archive(board):
    rejected(board, board.post(b"hello world"), 400, "not a gzip file")
    rejected(board, board.post(b""), 400, "empty upload")


def test_malformed_yaml(board):
    pred = board.predictions()
    (pred / "model_card.yaml").write_text("name: [oops\nteam: x\n", "utf-8")
    rejected(board, board.post(board.archive(pred)), 400, r"model_card.yaml: malformed YAML at line 2")


def test_schema_violation(board):
    pred = board.predictions()
    write_card(pred, test_data_seen="maybe")
    rejected(board, board.post(board.archive(pred)), 400, r"\$\.test_data_seen: expected boolean")


def test_missing_and_extra_vids(board):
    pred = board.predictions()
    ids = json.loads((pred / "video_ids.json").read_text())
    ids[0] = "not-a-test-video"
    (pred / "video_ids.json").write_text(json.dumps(ids))
    rejected(
        board, board.post(board.archive(pred)), 400,
        r"video_ids.json: ids do not match the split: missing 1: 'te000'; extra 1: 'not-a-test-video'",
    )  # fmt: skip


def test_nan_embeddings(board):
    pred = board.predictions()
    emb = np.load(pred / "text_embeddings.npy")
    emb[5, 0] = np.nan
    np.save(pred / "text_embeddings.npy", emb)
    rejected(board, board.post(board.archive(pred)), 400, r"text_embeddings.npy: row 5 .* NaN")


def test_wrong_shapes(board):
    pred = board.predictions()
    emb = np.load(pred / "video_embeddings.npy")
    np.save(pred / "video_embeddings.npy", np.concatenate([emb, emb[:1]]))
    rejected(
        board, board.post(board.archive(pred)), 400, r"video_embeddings.npy has 7 rows but there are 6 ids"
    )


def test_daily_limit_and_failed_runs(board):
    body = board.archive(board.predictions())
    for _ in range(3):
        assert board.post(body).status_code == 202
    board._before = board.stored()
    rejected(board, board.post(body), 429, "used its 3 submissions for today")
    job = board.db.claim("w", lease_s=30)
    board.db.fail(job, "broken")
    assert board.post(body).status_code == 202  # failed runs do not count


def test_not_found(board):
    assert board.client.get("/api/submissions/42").status_code == 404
    assert board.client.get("/submissions/42").status_code == 404


@pytest.fixture()
def scored(tmp_path) -> Board:
    """A board with two finished submissions, one from a team named like an XSS payload."""
    b = Board(tmp_path)
    _, token = b.db.add_team(XSS)
    pred = b.predictions(
        card={"name": '<img src=x onerror="alert(2)">', "description": "</dd><script>alert(3)</script>"}
    )
    assert b.post(b.archive(pred), token=token).status_code == 202
    assert b.post(b.archive(b.predictions(seed=1))).status_code == 202
    b.score_all()
    return b


def test_pages_escape_user_text_and_carry_a_csp(scored):
    page = scored.client.get("/")
    assert page.status_code == 200
    html = page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html and "onerror=" not in html.replace("onerror=&#34;", "")
    assert html.count("<script>") == 1  # only the board's own sort script
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    sid = scored.db.list_submissions()[0]["id"]
    detail = scored.client.get(f"/submissions/{sid}").text
    assert "&lt;/dd&gt;&lt;script&gt;alert(3)&lt;/script&gt;" in detail
    assert "<script>alert" not in detail and detail.count("<script>") == 1


def test_api_and_board_show_the_scores(scored):
    entries = scored.client.get("/api/leaderboard").json()["entries"]
    assert [e["state"] for e in entries] == ["finished", "finished"]
    assert entries[0]["team"] == XSS  # JSON carries the raw text; pages escape it
    for e in entries:
        assert set(e["scores"]) == {
            "t2v_caption",
            "v2t_caption",
            "t2v_title",
            "v2t_title",
            "title",
            "caption",
        }
        assert e["signature"].startswith("create-bench:")
    html = scored.client.get("/").text
    r1 = entries[0]["scores"]["t2v_caption"]["R@1"]
    assert f">{r1:.1f}<" in html
    lo, hi = entries[0]["ci"]["t2v_caption"]["R@1"]
    assert f"[{lo:.1f}, {hi:.1f}]" in html
    assert f'<code class="sig">{entries[0]["signature"]}</code>' in html


def test_api_groups_and_filters_by_fingerprint(scored):
    answer = scored.client.get("/api/leaderboard").json()
    fps = {e["fingerprint"] for e in answer["entries"]}
    assert len(fps) == 1 and None not in fps
    (fp,) = fps
    assert [(b["fingerprint"], sorted(b["entries"])) for b in answer["boards"]] == [
        (fp, sorted(e["id"] for e in answer["entries"]))
    ]
    assert all(e["test_data_seen"] is False for e in answer["entries"])
    assert scored.client.get(f"/api/leaderboard?fingerprint={fp}").json()["entries"] == answer["entries"]
    other = scored.client.get("/api/leaderboard?fingerprint=0000").json()
    assert other["entries"] == [] and other["boards"] == []


def test_no_response_carries_references_or_server_paths(scored):
    refs = [r for r in references(scored.data) if len(r) >= 4]
    assert refs
    sid = scored.db.list_submissions()[0]["id"]
    bad = scored.post(b"junk")
    bodies = [
        scored.client.get(u).text
        for u in ("/", "/api/leaderboard", f"/api/submissions/{sid}", f"/submissions/{sid}", "/healthz")
    ] + [bad.text]
    for body in bodies:
        for r in refs:
            assert r not in body
        assert str(scored.data) not in body and str(scored.storage) not in body
        assert "uploads/" not in body


# --------------------------------------------------------------------------- no score oracle


def _floats(obj):
    if isinstance(obj, float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _floats(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _floats(v)


def test_no_response_is_an_oracle_on_the_references(scored):
    """Full-precision scores of small categories decoded hidden test titles: every published number
    is rounded as printed and categories under the minimum are withheld, for anyone, the
    submitting team's own token included. The full results stay in the database."""
    sid = scored.db.list_submissions()[-1]["id"]  # team alpha's
    stored = json.loads(scored.db.internal(sid)["results_json"])
    full = [x for x in _floats(stored["per_category"]) if round(x, 1) != x]
    assert full, "the stored results keep full precision (for the organisers)"
    answers = [
        scored.client.get(f"/api/submissions/{sid}").json(),
        scored.client.get(
            f"/api/submissions/{sid}", headers={"Authorization": f"Bearer {scored.token}"}
        ).json(),
    ]
    for sub in answers:
        results = sub["results"]
        assert results["publication"]["min_category_videos"] == 50
        for entry in results["per_category"].values():
            assert entry["count"] < 50 and entry == {
                "name": entry["name"],
                "count": entry["count"],
                "withheld": True,
            }
        assert set(results["scores"]) == set(stored["scores"])
        for value in _floats({k: v for k, v in results.items() if k not in ("publication", "bootstrap")}):
            assert round(value, 1) == value, value
        assert results["scores"]["title"]["BLEU-1"] == round(stored["scores"]["title"]["BLEU-1"], 1)
    for e in scored.client.get("/api/leaderboard").json()["entries"]:
        assert all(round(v, 1) == v for v in _floats([e["scores"], e["ci"]]))
    page = scored.client.get("/").text
    for value in _floats(stored["scores"]):
        if round(value, 1) != value:
            assert repr(value) not in page  # no full-precision sort keys in the page either


def test_large_categories_are_published_rounded():
    from create_bench.leaderboard.publish import public_results

    per = {"1": {"name": "美食", "count": 50, "title": {"BLEU-1": 33.33333}},
           "2": {"name": "旅行", "count": 49, "title": {"BLEU-1": 12.5}}}  # fmt: skip
    out = public_results({"scores": {"title": {"BLEU-1": 1 / 3}}, "per_category": per})
    assert out["per_category"]["1"] == {"name": "美食", "count": 50, "title": {"BLEU-1": 33.3}}
    assert out["per_category"]["2"] == {"name": "旅行", "count": 49, "withheld": True}
    assert out["scores"]["title"]["BLEU-1"] == 0.3
    assert public_results(None) is None


# --------------------------------------------------------------------------- board cache


def test_board_cache_is_invalidated_when_a_submission_finishes(board):
    """Board reads are served from a cache (no results JSON parsed again while nothing changed);
    a worker in another process (its own Database) finishing a job shows at once."""
    cache = board.client.app.state.board_cache
    assert board.post(board.archive(board.predictions())).status_code == 202
    first = board.client.get("/api/leaderboard").json()["entries"]
    assert [e["state"] for e in first] == ["queued"] and first[0]["scores"] is None
    assert "simple-baseline" in board.client.get("/").text
    for _ in range(3):
        assert board.client.get("/api/leaderboard").json()["entries"] == first
    assert cache.parsed == 0

    other = Database(board.db.url)  # as a worker process would
    worker = Worker(other, WorkerConfig(storage_dir=board.storage, scoring=board.scoring))
    assert worker.run_once() is not None
    after = board.client.get("/api/leaderboard").json()["entries"]
    assert after[0]["state"] == "finished" and after[0]["scores"]["title"]["CIDEr"] is not None
    r1 = after[0]["scores"]["t2v_caption"]["R@1"]
    assert f">{r1:.1f}<" in board.client.get("/").text
    for _ in range(3):
        board.client.get("/api/leaderboard")
        board.client.get("/")
    assert cache.parsed == 1  # parsed once, when it finished

    assert board.post(board.archive(board.predictions(seed=3))).status_code == 202
    states = [e["state"] for e in board.client.get("/api/leaderboard").json()["entries"]]
    assert states == ["finished", "queued"] and cache.parsed == 1


def test_a_build_from_an_older_snapshot_never_stands_for_the_newer_one(board):
    """A request that took the board before a submission finished, and builds after another
    request refreshed the cache, must not leave the old state cached for the new one."""
    cache = board.client.app.state.board_cache
    assert board.post(board.archive(board.predictions())).status_code == 202
    (old,) = cache.entries()
    Worker(Database(board.db.url), WorkerConfig(storage_dir=board.storage, scoring=board.scoring)).run_once()
    (new,) = cache.entries()
    assert (old["state"], new["state"]) == ("queued", "finished")
    assert cache.per_entry("state", old, lambda e: e["state"]) == "queued"
    assert cache.per_entry("state", new, lambda e: e["state"]) == "finished"
    assert cache.per_entry("state", new, lambda e: "rebuilt") == "finished"  # kept while unchanged


# --------------------------------------------------------------------------- storage faults


def _storage_fault(monkeypatch, target: str, err: int) -> None:
    import errno as _errno
    import os as _os

    def boom(*a, **kw):
        raise OSError(err, _os.strerror(err))

    monkeypatch.setattr(target, boom)
    assert err in (_errno.ENOSPC, _errno.EROFS, _errno.EIO)


def test_a_full_disk_while_unpacking_is_a_server_error_not_a_corrupt_archive(board, monkeypatch):
    import errno

    body = board.archive(board.predictions())
    _storage_fault(monkeypatch, "create_bench.leaderboard.archive._copy_member", errno.ENOSPC)
    board._before = board.stored()
    resp = board.post(body)
    rejected(board, resp, 507, r"server storage error \(ENOSPC\)")
    assert "corrupt" not in resp.text and "archive" not in resp.text
    monkeypatch.undo()
    assert board.post(body).status_code == 202  # space again: accepted, and it counted once


def test_a_read_only_disk_while_receiving_is_503(board, monkeypatch):
    import errno

    body = board.archive(board.predictions())
    _storage_fault(monkeypatch, "create_bench.leaderboard.server.open_private", errno.EROFS)
    board._before = board.stored()
    rejected(board, board.post(body), 503, r"server storage error \(EROFS\)")


def test_a_full_database_disk_is_507_and_the_upload_is_removed(board, monkeypatch):
    import sqlite3

    import sqlalchemy as sa

    body = board.archive(board.predictions())

    def full(*a, **kw):
        raise sa.exc.OperationalError("INSERT", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(board.db, "create_submission", full)
    board._before = board.stored()
    rejected(board, board.post(body), 507, r"server storage error \(ENOSPC\)")


def test_storage_is_private_and_orphans_are_removed(tmp_path):
    import os
    import socket
    import stat
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        work = tmp_path / "storage" / "work"
        host = socket.gethostname()
        orphan = work / f"submission-{dead.pid}@{host}-abcd1234"
        busy = work / f"submission-{alive.pid}@{host}-abcd1234"
        remote = work / f"submission-{dead.pid}@not-{host}-abcd1234"
        for d in (orphan, busy, remote):
            (d / "x").mkdir(parents=True)
        b = Board(tmp_path)
        assert not orphan.exists() and busy.exists() and remote.exists()
    finally:
        alive.kill()
        alive.wait()
    assert b.post(b.archive(b.predictions())).status_code == 202
    mode = lambda p: stat.S_IMODE(os.stat(p).st_mode)  # noqa: E731
    (upload,) = (b.storage / "uploads").glob("*.tar.gz")
    assert mode(upload) == 0o600
    assert mode(b.storage) == 0o700 and mode(b.storage / "uploads") == 0o700
    for f in tmp_path.glob("board.db*"):
        assert mode(f) == 0o600, f


# --------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_end_to_end_board_equals_eval_and_score(tmp_path, tiny_dataset):
    """`create-bench eval --model raw-title` (what `make eval` runs), the submitter's fields added to
    its model card, a server over loopback, a team from the CLI, `create-bench submit`: the board
    shows exactly the eval's scores, intervals and signature, and those of `create-bench score`."""
    import httpx
    import yaml

    cli("eval", "--model", "raw-title", "--data", str(tiny_dataset), "--split", "test",
        "--results-dir", str(tmp_path / "results"), "--no-report", timeout=900)  # fmt: skip
    (evaluated,) = [
        p for p in (tmp_path / "results" / "raw-title").glob("*.json") if not p.name.startswith(".")
    ]
    pred = evaluated.with_suffix("")
    card = yaml.safe_load((pred / "model_card.yaml").read_text("utf-8"))
    card.update(schema_version=1, team="create-bench", create_configs=["train"], test_data_seen=False)
    (pred / "model_card.yaml").write_text(yaml.safe_dump(card, allow_unicode=True), "utf-8")

    db_url = f"sqlite:///{tmp_path / 'board.db'}"
    token = add_team(db_url, "baseline team")
    with running_server(db_url, tiny_dataset, tmp_path / "storage", workers=1) as url:
        out = cli("submit", str(pred), "--server", url, "--token", token, "--data", str(tiny_dataset),
                  "--wait", "--timeout", "600", "--json").stdout  # fmt: skip
        assert "accepted: submission 1" in out
        answer = json.loads(out[out.index("{") :])
        assert answer["state"] == "finished"
        board = httpx.get(url + "/api/leaderboard").json()["entries"]
        page = httpx.get(url + "/").text
    cli("score", "--predictions", str(pred), "--data", str(tiny_dataset), "--split", "test",
        "--out", str(tmp_path / "score.json"))  # fmt: skip
    assert len(board) == 1 and board[0]["team"] == "baseline team" and board[0]["model_name"] == "raw-title"
    from create_bench.leaderboard.publish import round_numbers

    for reference in (json.loads(evaluated.read_text()), json.loads((tmp_path / "score.json").read_text())):
        assert board[0]["scores"] == round_numbers(reference["scores"])  # published as printed
        assert board[0]["ci"] == round_numbers(reference["ci"])
        assert board[0]["signature"] == reference["signature"]
    scores = board[0]["scores"]
    assert set(scores) == {"t2v_caption", "v2t_caption", "t2v_title", "v2t_title", "title", "caption"}
    assert f">{scores['caption']['CIDEr']:.1f}<" in page and f">{scores['t2v_title']['R@1']:.1f}<" in page

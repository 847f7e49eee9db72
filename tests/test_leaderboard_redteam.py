"""Red-team replays of issue #18 (points 1, 3, 5, 6): each attack, as it was made against the
server on loopback with a team's own token, and the behaviour it must meet now. In-process
(FastAPI's test client, an in-process worker), every loop bounded in count and time."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import tarfile
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from leaderboard_util import dir_to_members, file_member, small_expected, tar_gz, write_predictions
from test_leaderboard_server import Board

from create_bench.errors import ConfigError, SubmissionError
from create_bench.leaderboard.db import Database, LimitError
from create_bench.leaderboard.server import create_app
from create_bench.leaderboard.submission import Limits, pack_directory, unpack_archive, validate_directory
from create_bench.leaderboard.worker import ScoringConfig, Worker, WorkerConfig
from create_bench.scoring import ScoringOptions


def make_board(tmp: Path, **config: object) -> Board:
    """The server tests' board, with server settings overridden (a fresh app over the same db)."""
    from fastapi.testclient import TestClient

    board = Board(tmp)
    board.config = dataclasses.replace(board.config, **config)
    board.client = TestClient(create_app(board.config, db=board.db))
    return board


@pytest.fixture()
def board(tmp_path) -> Board:
    return make_board(tmp_path, max_rejected=100)


def one_line(board: Board, resp, status: int, *needles: str) -> str:
    """A one-line error with the status naming every needle; nothing stored."""
    assert resp.status_code == status, resp.text
    message = resp.json()["error"]
    assert "\n" not in message, message
    for needle in needles:
        assert needle in message, (needle, message)
    assert board.stored() == (0, [])
    return message


def with_file(board: Board, name: str, data: bytes, **pred_kw) -> bytes:
    """A valid submission with one file replaced by ``data``, as a .tar.gz body."""
    pred = board.predictions(**pred_kw)
    (pred / name).write_bytes(data)
    members = [m for m in dir_to_members(pred) if m[0].name != name] + [file_member(name, data)]
    return tar_gz(board.tmp / f"attack{board.n}.tar.gz", members).read_bytes()


def with_card(board: Board, text: str) -> bytes:
    return with_file(board, "model_card.yaml", text.encode("utf-8"))


def card_text(**extra: str) -> str:
    base = (
        "schema_version: 1\nname: attack\nteam: alpha\ndescription: ''\nparams: 0\n"
        "create_configs: [train]\ntest_data_seen: false\n"
    )
    return base + "".join(f"{k}: {v}\n" for k, v in extra.items())


# --------------------------------------------------------------------------- 1. memory and event loop


def test_newline_bomb_is_rejected_in_bounded_memory(tmp_path):
    """256 MiB of newlines took the web process to 2.5 GiB; the stream stops after the split's
    line count, whatever the file holds (8 MiB here: before, the peak was the file plus a list
    of 8 million strings)."""
    expected = small_expected(n=6)
    pred = write_predictions(tmp_path / "pred", expected)
    with open(pred / "generations.jsonl", "ab") as fh:
        fh.write(b"\n" * (8 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(SubmissionError, match=r"generations.jsonl: more than 6 lines") as err:
            validate_directory(pred, expected=expected)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20, f"validator peak {peak / 2**20:.1f} MiB"
    assert str(pred) not in str(err.value)  # the file is named, not where it lies


def test_newline_bomb_upload_is_a_quick_400(board):
    pred = board.predictions()
    with open(pred / "generations.jsonl", "ab") as fh:
        fh.write(b"\n" * (4 << 20))
    body = board.archive(pred)
    assert len(body) < 300_000
    # 4 MiB of newlines is over what 6 lines may take, so extraction already stops it
    one_line(board, board.post(body), 400, "'generations.jsonl' expands beyond 49152 bytes")


def test_gzip_bomb_stops_at_the_cap_the_split_allows(tmp_path):
    """A 64 MiB file of zeros (64 KiB gzipped) under the default 4 GiB cap: extraction stops at
    that file's cap for the split (6 lines x 8 KiB), not at the global limit."""
    from create_bench.leaderboard.submission import file_caps

    expected = small_expected(n=6)
    info = tarfile.TarInfo("generations.jsonl")
    info.size = 64 << 20
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tf:
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(buf.getvalue())
    cap = file_caps(expected, Limits())["generations.jsonl"]
    assert cap == 6 * (8 << 10)
    with pytest.raises(SubmissionError, match=rf"'generations.jsonl' expands beyond {cap} bytes"):
        unpack_archive(archive, tmp_path / "out", expected=expected)
    assert not list((tmp_path / "out").iterdir())


def test_rejected_uploads_count_against_a_per_team_rate_limit(tmp_path):
    board = make_board(tmp_path, max_rejected=3)
    for _ in range(3):
        assert board.post(b"not a gzip").status_code == 400
    resp = board.post(board.archive(board.predictions()))  # even a valid one, for the window
    assert resp.status_code == 429 and "3 rejected uploads" in resp.json()["error"], resp.text
    assert resp.headers["retry-after"]
    assert board.stored() == (0, [])
    other = board.db.add_team("beta", daily_limit=3)[1]  # other teams are not affected
    assert board.post(board.archive(board.predictions()), token=other).status_code == 202


def test_concurrent_validations_are_bounded(tmp_path, monkeypatch):
    """With one validation slot busy, the next upload is answered 503 at once (not queued)."""
    import create_bench.leaderboard.server as server

    board = make_board(tmp_path, max_validations=1)
    entered, release = threading.Event(), threading.Event()
    real = server._validate

    def slow_validate(*args):
        entered.set()
        release.wait(20)
        return real(*args)

    monkeypatch.setattr(server, "_validate", slow_validate)
    body = board.archive(board.predictions())
    first: dict = {}
    t = threading.Thread(target=lambda: first.setdefault("resp", board.post(body)))
    t.start()
    try:
        assert entered.wait(20)
        start = time.monotonic()
        resp = board.post(body)
        assert time.monotonic() - start < 5
        assert resp.status_code == 503 and "at most 1 at once" in resp.json()["error"], resp.text
        assert resp.headers["retry-after"]
    finally:
        release.set()
        t.join(30)
    assert first["resp"].status_code == 202
    assert board.db.counts() == {"queued": 1}


# --------------------------------------------------------------------------- 3. one job, the only worker


def test_long_texts_are_rejected(board):
    vids = board.expected.vids
    gens = {v: {"title": "标题", "caption": "描述"} for v in vids}
    gens[vids[0]]["title"] = "长" * 300_000  # the attack: over what the whole file may take
    pred = board.predictions(generations=gens)
    one_line(board, board.post(board.archive(pred)), 400, "'generations.jsonl' expands beyond 49152 bytes")
    gens[vids[0]]["title"] = "长" * 3000
    pred = board.predictions(generations=gens)
    one_line(
        board, board.post(board.archive(pred)), 400, "generations.jsonl", "line 1", "longer than 8192 bytes"
    )
    gens[vids[0]]["title"] = "长" * 145
    pred = board.predictions(generations=gens)
    one_line(board, board.post(board.archive(pred)), 400, "title has 145 characters; the limit is 144")
    gens[vids[0]]["title"], gens[vids[1]]["caption"] = "长" * 144, "长" * 453
    pred = board.predictions(generations=gens)
    one_line(board, board.post(board.archive(pred)), 400, "caption has 453 characters; the limit is 452")
    gens[vids[1]]["caption"] = "长" * 452
    assert board.post(board.archive(board.predictions(generations=gens))).status_code == 202


def _queue(db: Database, storage: Path, team, n: int, tmp: Path, tag: str) -> list[int]:
    pred = write_predictions(tmp / f"pred-{tag}", small_expected())
    ids = []
    for i in range(n):
        name = f"{tag}{i}.tar.gz"
        pack_directory(pred, storage / "uploads" / name)
        ids.append(
            db.create_submission(
                team,
                model_name=f"{tag}{i}",
                card={},
                split="test",
                upload_path=f"uploads/{name}",
                upload_sha256="0" * 64,
                upload_bytes=1,
            )  # fmt: skip
        )
    return ids


def _worker_setup(tmp_path: Path, **cfg):
    db = Database(str(tmp_path / "board.db"))
    db.migrate()
    storage = tmp_path / "storage"
    (storage / "uploads").mkdir(parents=True)
    config = WorkerConfig(
        storage_dir=storage,
        scoring=ScoringConfig(data_dir=tmp_path / "data", options=ScoringOptions(bootstrap=0)),
        **cfg,
    )
    return db, storage, config


def test_a_slow_submission_times_out_and_counts(tmp_path):
    db, storage, cfg = _worker_setup(tmp_path, timeout_base_s=1.0, timeout_per_item_s=0.0)
    team, _ = db.add_team("slow", daily_limit=1)
    [sid] = _queue(db, storage, team, 1, tmp_path, "s")

    def endless(*_args, **_kw):
        deadline = time.monotonic() + 15  # bounded even if the timeout failed
        while time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except Exception:  # a scorer that swallows errors does not stop the timeout
                pass
        return {"scores": {}}

    start = time.monotonic()
    Worker(db, cfg, scorer=endless, name="w", expected=small_expected()).run_once()
    assert time.monotonic() - start < 8
    sub = db.get_submission(sid)
    assert sub["state"] == "failed"
    assert sub["error"].startswith("scoring timed out after 1 s"), sub["error"]
    with pytest.raises(LimitError):  # counted: the team used the worker for the whole limit
        db.check_limit(team)
    assert not list((storage / "work").iterdir())


def test_workers_take_turns_across_teams(tmp_path):
    """A team that queued four jobs first does not make another team's job wait behind all four."""
    db, storage, cfg = _worker_setup(tmp_path)
    a, _ = db.add_team("a", daily_limit=10)
    b, _ = db.add_team("b", daily_limit=10)
    c, _ = db.add_team("c", daily_limit=10)
    a_ids = _queue(db, storage, a, 4, tmp_path, "a")
    b_ids = _queue(db, storage, b, 2, tmp_path, "b")
    c_ids = _queue(db, storage, c, 1, tmp_path, "c")
    order = []
    worker = Worker(db, cfg, scorer=lambda *a, **k: {"scores": {}}, name="w", expected=small_expected())
    for _ in range(10):
        job = worker.run_once()
        if job is None:
            break
        order.append(job)
    assert order == [a_ids[0], b_ids[0], c_ids[0], a_ids[1], b_ids[1], a_ids[2], a_ids[3]]


# --------------------------------------------------------------------------- 5. unhandled 500s


def _npy_with_header(header: str) -> bytes:
    text = header.encode("latin1")
    pad = 64 - (10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text


@pytest.mark.parametrize(
    ("name", "data", "needles"),
    [
        ("video_ids.json", b"[" * 100_000 + b"]" * 100_000, ("'video_ids.json' expands beyond 65752 bytes",)),
        ("video_ids.json", b"[" * 20_000 + b"]" * 20_000, ("video_ids.json", "nested more than 2 levels")),
        (
            "generations.jsonl",
            b'{"vid": "te000", "title": ' + b"[" * 3000 + b"]" * 3000 + b"}\n",
            ("generations.jsonl", "line 1", "nested more than 2 levels"),
        ),
        (
            "video_embeddings.npy",
            _npy_with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (200, -1), }"),
            ("video_embeddings.npy", "invalid .npy shape (200, -1)"),
        ),
        ("video_embeddings.npy", b"PK\x03\x04" + bytes(200), ("video_embeddings.npy", "zip archive")),
    ],
    ids=["ids-deep-100k", "ids-deep-20k", "jsonl-deep", "npy-negative-shape", "npy-zip"],
)
def test_malformed_prediction_files_are_one_line_400s(board, name, data, needles):
    one_line(board, board.post(with_file(board, name, data)), 400, *needles)


@pytest.mark.parametrize(
    ("card", "needles"),
    [
        (card_text(args="[" * 20_000 + "]" * 20_000), ("model_card.yaml", "nested more than 32 levels")),
        (card_text(args="{d: 2001-01-01}"), ("model_card.yaml", "$.args.d", "YAML date")),
        (card_text(args="{b: !!binary aGVsbG8=}"), ("model_card.yaml", "$.args.b", "!!binary")),
        (card_text(args="{s: !!set {a: null}}"), ("model_card.yaml", "$.args.s", "!!set")),
        (card_text().replace("params: 0", "params: " + "9" * 5000), ("model_card.yaml", "too many digits")),
        (card_text().replace("params: 0", "params: " + "9" * 30), ("model_card.yaml", "$.params", "64 bits")),
    ],
    ids=["deep", "date", "binary", "set", "5000-digits", "int-range"],
)
def test_hostile_model_cards_are_one_line_400s(board, card, needles):
    one_line(board, board.post(with_card(board, card)), 400, *needles)


def test_submission_ids_out_of_range_are_404(board):
    for sid in ("9223372036854775808", "-1", "0", "9" * 40):
        resp = board.client.get(f"/api/submissions/{sid}")
        assert resp.status_code == 404 and "no submission" in resp.json()["error"], (sid, resp.text)
        assert board.client.get(f"/submissions/{sid}").status_code == 404


# --------------------------------------------------------------------------- 6. smaller


def test_board_team_is_the_token_team(board, tmp_path):
    from create_bench.leaderboard.render import load_entries

    pred = board.predictions(card={"team": "Somebody Else"})
    assert board.post(board.archive(pred)).status_code == 202
    worker = Worker(
        board.db,
        WorkerConfig(storage_dir=board.storage, scoring=board.scoring),
        scorer=lambda *a, **k: {"scores": {"caption": {"CIDEr": 1.0}}},
        expected=board.expected,
    )
    worker.run_once()
    [sub] = board.db.list_submissions()
    assert sub["state"] == "finished" and sub["results"]["model"]["team"] == "alpha"
    out = tmp_path / "results"
    out.mkdir()
    (out / "x.json").write_text(json.dumps(sub["results"]), "utf-8")
    assert [e["team"] for e in load_entries(out)] == ["alpha"]


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("   ", "$.name: empty once normalised"),
        ("\u200b\u200b", "U+200B"),
        ("safe\u202egnp.exe", "U+202E"),
        ("a\u2066b", "U+2066"),
        ("tab\there", "U+0009"),
    ],
)
def test_invisible_and_bidi_names_are_rejected(board, name, needle):
    pred = board.predictions(card={"name": name})
    one_line(board, board.post(board.archive(pred)), 400, "model_card.yaml", needle)


def test_names_are_nfkc_normalised(board):
    pred = board.predictions(card={"name": "  Ｍｏｄｅｌ   Ｘ "})
    resp = board.post(board.archive(pred))
    assert resp.status_code == 202 and resp.json()["model_name"] == "Model X", resp.text
    with pytest.raises(ConfigError, match="U\\+202E"):
        board.db.add_team("evil\u202eteam")
    with pytest.raises(ConfigError, match="empty once normalised"):
        board.db.add_team(" \u3000 ")


def test_float64_beyond_float32_is_rejected_at_validation(board):
    pred = board.predictions(dtype=np.float64)
    emb = np.load(pred / "video_embeddings.npy")
    emb[2, 0] = 1e39  # finite in float64, infinite in float32, which scoring uses
    np.save(pred / "video_embeddings.npy", emb)
    one_line(board, board.post(board.archive(pred)), 400, "video_embeddings.npy: row 2", "NaN or infinite")


def test_huge_pax_header_is_capped(board):
    pred = board.predictions()
    info = tarfile.TarInfo("README.md")
    info.pax_headers = {"comment": "x" * (1 << 20)}
    data = b"readme"
    info.size = len(data)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for m, d in dir_to_members(pred):
                m.size = len(d)
                tf.addfile(m, io.BytesIO(d))
            tf.addfile(info, io.BytesIO(data))
    one_line(board, board.post(buf.getvalue()), 400, "tar extended header", "the limit is 65536")


def test_a_long_directory_name_is_no_corrupt_archive(board):
    pred = board.predictions()
    body = tar_gz(board.tmp / "long.tar.gz", dir_to_members(pred, prefix="d" * 300 + "/")).read_bytes()
    resp = board.post(body)
    assert resp.status_code == 202, resp.text


@pytest.mark.parametrize("form", ["relative", "symlink"])
def test_storage_path_never_leaks(tmp_path, monkeypatch, form):
    real = tmp_path / "real-storage"
    real.mkdir()
    if form == "symlink":
        (tmp_path / "via-link").symlink_to(real, target_is_directory=True)
        storage: Path = tmp_path / "via-link"
    else:
        monkeypatch.chdir(tmp_path)
        storage = Path("real-storage")
    board = make_board(tmp_path, storage_dir=storage)
    board.storage = real
    body = with_file(board, "text_ids.json", b"[not json")
    resp = board.post(body)
    assert resp.status_code == 400, resp.text
    message = resp.json()["error"]
    assert message.startswith("invalid predictions: text_ids.json: not readable JSON"), message
    for secret in ("storage", "work", "submission-", str(tmp_path), os.sep + "tmp"):
        assert secret not in message, (secret, message)


def test_a_valid_card_keeps_its_json_fields(board):
    """A card that passes keeps its fields as JSON (nothing lost by the type check)."""
    pred = board.predictions(card={"args": {"lr": 0.001, "layers": [1, 2], "name": "2001-01-01"}})
    resp = board.post(board.archive(pred))
    assert resp.status_code == 202, resp.text
    card = board.client.get(resp.json()["api"]).json()["model_card"]
    assert card["args"] == {"lr": 0.001, "layers": [1, 2], "name": "2001-01-01"}

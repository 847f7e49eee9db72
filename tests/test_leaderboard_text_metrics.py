"""BERTScore-F and ACTEr-r on the leaderboard: the server's ``--text-encoder`` setting flows through
the worker configuration (and the worker processes' command line) into scoring; the board shows
both with intervals in their own columns, keeps rows scored with and without an encoder in separate
tables, and says in one line why they are absent without one. The references are encoded once per
worker (at its start), never per submission. Encoder: a tiny random BERT written to a temp directory
(nothing downloaded); databases: SQLite and a real PostgreSQL (tests/leaderboard_pg.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from leaderboard_pg import BACKENDS, backend_url, pg_cluster  # noqa: F401 - fixture
from leaderboard_util import text_dataset, write_predictions

from create_bench.features.text_metrics import ABSENT, TextMetricOptions, clear_reference_cache
from create_bench.leaderboard import board
from create_bench.leaderboard.db import Database
from create_bench.leaderboard.publish import round_numbers
from create_bench.leaderboard.server import ServerConfig, create_app
from create_bench.leaderboard.submission import ExpectedIds, Limits, pack_directory
from create_bench.leaderboard.worker import ScoringConfig, Worker, WorkerConfig, scoring_timeout
from create_bench.scoring import ScoringOptions, score_predictions
from create_bench.synthetic.random_bert import TINY, random_bert

GENERATIONS = [
    {"title": "猫为什么会跑？看完就懂", "caption": "一只猫在公园里跑"},
    {"title": "狗狗竟然会跳", "caption": "红色的狗在厨房里慢慢移动"},
]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> str:
    return str(random_bert(tmp_path_factory.mktemp("tiny-bert") / "bert", TINY, seed=0))


@pytest.fixture(params=BACKENDS)
def url(request, tmp_path) -> str:
    return backend_url(request, tmp_path)


def _gens(expected: ExpectedIds, shift: int) -> dict[str, dict[str, str]]:
    return {v: GENERATIONS[(i + shift) % len(GENERATIONS)] for i, v in enumerate(expected.vids)}


def _options(encoder_dir: str | None) -> ScoringOptions:
    text = TextMetricOptions(encoder_dir) if encoder_dir else None
    return ScoringOptions(bootstrap=50, token_cache=False, text_encoder=text)


class _Counting:
    """Records the texts every TextEncoder.encode call gets (to see what is encoded when)."""

    def __init__(self, monkeypatch):
        from create_bench.features import text_encoder

        self.calls: list[list[str]] = []
        original = text_encoder.TextEncoder.encode

        def encode(enc, texts):
            self.calls.append(list(texts))
            return original(enc, texts)

        monkeypatch.setattr(text_encoder.TextEncoder, "encode", encode)


def _board(tmp_path: Path, db_url: str, options: ScoringOptions):
    from fastapi.testclient import TestClient

    data = text_dataset(tmp_path / "data", omega=True)
    storage = tmp_path / "storage"
    db = Database(db_url)
    scoring = ScoringConfig(data_dir=data, options=options)
    config = ServerConfig(
        db_url=db.url,
        storage_dir=storage,
        scoring=scoring,
        limits=Limits(max_upload_bytes=300_000, max_unpacked_bytes=2_000_000),
    )
    client = TestClient(create_app(config, db=db))
    _, token = db.add_team("alpha", daily_limit=5)
    return data, storage, db, scoring, client, token


def _submit(client, token: str, pred: Path, tmp_path: Path) -> None:
    body = pack_directory(pred, tmp_path / f"{pred.name}.tar.gz").read_bytes()
    resp = client.post(
        "/api/submissions",
        content=body,
        headers={"Content-Type": "application/gzip", "Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 202, resp.text


def test_the_server_scores_bertscore_and_acter_once_per_worker(tmp_path, url, encoder_dir, monkeypatch):
    """Two submissions through the server and a worker configured with the encoder: the board and
    the API carry title BERTScore-F/ACTEr-r and caption BERTScore-F with intervals, equal to
    ``score_predictions`` with the same options; the references were encoded at the worker's start,
    once per kind, and each submission encoded only its generations."""
    clear_reference_cache()
    options = _options(encoder_dir)
    data, storage, db, scoring, client, token = _board(tmp_path, url, options)
    expected = ExpectedIds.from_dataset(data, "test")
    preds = [
        write_predictions(tmp_path / f"pred{k}", expected, seed=k, generations=_gens(expected, k))
        for k in range(2)
    ]
    for pred in preds:
        _submit(client, token, pred, tmp_path)
    counting = _Counting(monkeypatch)
    worker = Worker(db, WorkerConfig(storage_dir=storage, scoring=scoring, poll_s=0.05))
    assert worker.run(threading.Event(), max_jobs=2) == 2

    n_refs = {k: len(expected.text_ids[k]) for k in ("caption", "title")}
    assert [len(c) for c in counting.calls[:2]] == [n_refs["caption"], n_refs["title"]]  # prepare()
    assert all(len(c) <= len(GENERATIONS) for c in counting.calls[2:])  # then generations only
    assert len(counting.calls) == 2 + 2 * 2  # 2 submissions x (title, caption)

    entries = {e["id"]: e for e in client.get("/api/leaderboard").json()["entries"]}
    assert [e["state"] for e in entries.values()] == ["finished", "finished"]
    html = client.get("/").text
    for sid, pred in zip(sorted(entries), preds):
        e = entries[sid]
        assert e["text_metrics"] == {"encoder": "<server>"}  # the server's encoder path never leaves it
        direct = score_predictions(pred, data, "test", options)
        assert set(direct["scores"]["title"]) >= {"BERTScore-F", "ACTEr-r"}
        assert "BERTScore-F" in direct["scores"]["caption"] and "ACTEr-r" not in direct["scores"]["caption"]
        assert e["scores"] == round_numbers(json.loads(json.dumps(direct["scores"])))
        assert e["ci"] == round_numbers(json.loads(json.dumps(direct["ci"])))
        assert e["signature"] == direct["signature"]
        for group, metric in (("title", "BERTScore-F"), ("title", "ACTEr-r"), ("caption", "BERTScore-F")):
            value, (lo, hi) = e["scores"][group][metric], e["ci"][group][metric]
            assert lo <= value <= hi
            assert f'{value:.1f}<small class="ci">[{lo:.1f}, {hi:.1f}]</small>' in html
    sig = direct["signatures"]["title"]
    assert "acter:acter-r.v1,weights:omega" in sig and "bertscore:bertscore" in sig  # omega was used
    assert '<button type="button" title="Title generation ACTEr-r">ACTEr-r</button>' in html
    assert '<button type="button" title="Caption generation BERTScore-F">BERTScore-F</button>' in html
    assert ABSENT not in html and "not computed" not in html


def test_without_an_encoder_the_board_says_why_in_one_line(tmp_path, encoder_dir):
    """No setting: no BERTScore/ACTEr-r columns (never a 0) and one line under the generation
    tables; with and without an encoder on one board: separate tables (the scoring-setting split)."""
    data = text_dataset(tmp_path / "data")
    expected = ExpectedIds.from_dataset(data, "test")
    pred = write_predictions(tmp_path / "pred", expected, generations=_gens(expected, 0))
    plain = score_predictions(pred, data, "test", _options(None))
    assert "BERTScore-F" not in plain["scores"]["title"] and plain["text_metrics"] == {"absent": ABSENT}
    entry = {"id": 1, "model_name": "m", "team": "t", "created_at": "1", "results": plain}

    (b,) = board.boards([entry])
    titling, captioning = (
        next(t for t in b["tables"] if t["task"].key == k) for k in ("titling", "captioning")
    )
    for t in (titling, captioning):
        assert t["absent"] == ABSENT
        assert not [c for c in t["columns"] if c.metric in ("BERTScore-F", "ACTEr-r")]
    retrieval = next(t for t in b["tables"] if t["task"].key == "retrieval")
    assert retrieval["absent"] is None
    html = board.render_board_html([entry])
    assert html.count(f'<p class="hint absent">{ABSENT}.</p>') == 2
    md = board.render_markdown([entry])
    assert md.count(board.md_escape(ABSENT)) == 2
    old = {**entry, "results": {k: v for k, v in plain.items() if k != "text_metrics"}}
    assert board.boards([old])[0]["tables"][1]["absent"] == board.TEXT_METRICS_ABSENT  # older results

    with_enc = score_predictions(pred, data, "test", _options(encoder_dir))
    both = [entry, {**entry, "id": 2, "model_name": "m-enc", "created_at": "2", "results": with_enc}]
    (b,) = board.boards(both)
    titling = [t for t in b["tables"] if t["task"].key == "titling"]
    assert len(titling) == 2  # never ranked together
    by_model = {t["rows"][0]["entry"]["model_name"]: t for t in titling}
    assert [len(t["rows"]) for t in titling] == [1, 1]
    assert {"BERTScore-F", "ACTEr-r"} <= {c.metric for c in by_model["m-enc"]["columns"]}
    assert by_model["m-enc"]["absent"] is None and by_model["m"]["absent"] == ABSENT
    assert "bertscore:" in by_model["m-enc"]["settings"] and "bertscore:" not in by_model["m"]["settings"]
    retrieval = [t for t in b["tables"] if t["task"].key == "retrieval"]
    assert len(retrieval) == 1 and len(retrieval[0]["rows"]) == 2  # retrieval is unaffected


def test_the_setting_reaches_worker_processes_and_the_time_limit(tmp_path, encoder_dir):
    """``leaderboard serve --text-encoder ...`` -> WorkerConfig -> the worker command line -> the same
    options; the scoring time limit grows by the generations to encode."""
    import argparse

    from create_bench.commands import leaderboard as cmd
    from create_bench.leaderboard.supervisor import worker_argv

    p = argparse.ArgumentParser()
    cmd.register(p.add_subparsers(dest="command"))
    argv = ["leaderboard", "serve", "--db", "sqlite:///x.db", "--data", str(tmp_path), "--storage", "s"]
    argv += ["--text-encoder", encoder_dir, "--text-encoder-batch-size", "7", "--text-encoder-layer", "2"]
    argv += ["--bertscore-idf", "--acter-eps", "0.3", "--timeout-per-generation", "0.5"]
    _, _, wconf = cmd._configs(p.parse_args(argv))
    text = wconf.scoring.options.text_encoder
    assert (text.encoder, text.batch_size, text.layer, text.idf, text.eps) == (encoder_dir, 7, 2, True, 0.3)
    worker_line = worker_argv("sqlite:///x.db", wconf)
    i = worker_line.index("leaderboard")
    _, _, again = cmd._configs(p.parse_args(worker_line[i:]))
    assert again.scoring.options == wconf.scoring.options
    assert again.timeout_per_generation_s == wconf.timeout_per_generation_s == 0.5
    _, _, none = cmd._configs(p.parse_args(argv[:8]))
    assert none.scoring.options.text_encoder is None and "--text-encoder" not in worker_argv("x", none)

    expected = ExpectedIds.from_dataset(text_dataset(tmp_path / "data"), "test")
    base = scoring_timeout(expected, none)
    assert scoring_timeout(expected, wconf) == pytest.approx(base + 0.5 * len(expected.vids) * 2)


@pytest.mark.slow
def test_end_to_end_server_with_text_encoder_equals_score(tmp_path, encoder_dir):
    """``create-bench leaderboard serve --text-encoder DIR --workers 1`` (real processes, loopback),
    a team from the CLI, an upload: the board's BERTScore-F/ACTEr-r equal ``create-bench score
    --text-encoder DIR``, and the server's page shows them."""
    import httpx
    from leaderboard_util import add_team, cli, running_server

    from create_bench.leaderboard import client

    data = text_dataset(tmp_path / "data", omega=True)
    expected = ExpectedIds.from_dataset(data, "test")
    pred = write_predictions(tmp_path / "pred", expected, generations=_gens(expected, 1))
    db_url = f"sqlite:///{tmp_path / 'board.db'}"
    token = add_team(db_url, "team")
    extra = ("--bootstrap", "50", "--text-encoder", encoder_dir)
    with running_server(db_url, data, tmp_path / "storage", workers=1, extra=extra) as server:
        sid = client.upload(pred, server, token)["id"]
        final = client.wait(server, sid, timeout=300)
        entries = httpx.get(server + "/api/leaderboard").json()["entries"]
        page = httpx.get(server + "/").text
    assert final["state"] == "finished", final
    out = tmp_path / "score.json"
    cli("score", "--predictions", str(pred), "--data", str(data), "--split", "test", "--bootstrap", "50",
        "--text-encoder", encoder_dir, "--out", str(out))  # fmt: skip
    direct = json.loads(out.read_text())
    (e,) = entries
    assert e["scores"] == round_numbers(direct["scores"]) and e["ci"] == round_numbers(direct["ci"])
    assert e["signature"] == direct["signature"]
    value = e["scores"]["title"]["ACTEr-r"]
    lo, hi = e["ci"]["title"]["ACTEr-r"]
    assert f'{value:.1f}<small class="ci">[{lo:.1f}, {hi:.1f}]</small>' in page


def test_serve_refuses_an_encoder_it_cannot_load_in_one_line(tmp_path):
    """A bad ``--text-encoder`` stops ``serve`` before it listens (not every submission failing)."""
    from leaderboard_util import cli

    data = text_dataset(tmp_path / "data")
    missing = tmp_path / "no-such-encoder"
    proc = cli("leaderboard", "serve", "--db", f"sqlite:///{tmp_path / 'b.db'}", "--data", str(data),
               "--port", "1", "--text-encoder", str(missing), check=False, timeout=120)  # fmt: skip
    assert proc.returncode != 0
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "cannot load text encoder" in err[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "b.db").exists()  # nothing started


def test_submit_local_with_text_encoder_equals_score(tmp_path, encoder_dir):
    """``submit --local --text-encoder DIR`` puts the same BERTScore-F and ACTEr-r on the local board
    as ``create-bench score --text-encoder DIR``; with ``--server`` (or validation only) the flag is
    refused in one line, since a server scores with its own encoder."""
    from create_bench.cli import main

    data = text_dataset(tmp_path / "data", omega=True)
    expected = ExpectedIds.from_dataset(data, "test")
    pred = write_predictions(tmp_path / "pred", expected, generations=_gens(expected, 1))
    board = tmp_path / "board"
    common = ["--data", str(data), "--bootstrap", "50", "--text-encoder", encoder_dir]
    assert main(["submit", str(pred), "--local", str(board), *common]) == 0
    out = tmp_path / "score.json"
    assert main(["score", "--predictions", str(pred), "--split", "test", "--out", str(out), *common]) == 0
    direct = json.loads(out.read_text())
    (entry,) = [json.loads(p.read_text()) for p in (board / "results").glob("*.json")]
    for kind in ("title", "caption"):
        assert "BERTScore-F" in direct["scores"][kind]
    assert entry["scores"] == direct["scores"] and entry["signature"] == direct["signature"]
    assert main(["submit", str(pred), "--text-encoder", encoder_dir]) == 2

"""`create-bench submit`: validate only, --local scoring into a board directory, and errors as
exit codes with clear messages (the CLI in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from leaderboard_util import text_dataset, write_predictions

from create_bench.cli import main
from create_bench.leaderboard.submission import ExpectedIds, pack_directory


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return text_dataset(tmp_path_factory.mktemp("client") / "data")


def test_validate_only(tmp_path, data, capsys):
    pred = write_predictions(tmp_path / "p", ExpectedIds.from_dataset(data, "test"))
    assert main(["submit", str(pred), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "valid submission 'simple-baseline': tasks retrieval, title, caption" in out
    assert "ids of the test split" in out and "validated only" in out
    archive = pack_directory(pred, tmp_path / "p.tar.gz")
    assert main(["submit", str(archive)]) == 0  # without --data: everything but the id sets
    assert "ids of the" not in capsys.readouterr().out


def test_errors_become_exit_codes(tmp_path, data, capsys):
    pred = write_predictions(tmp_path / "p", ExpectedIds.from_dataset(data, "test"))
    emb = np.load(pred / "video_embeddings.npy")
    emb[0, 0] = np.inf
    np.save(pred / "video_embeddings.npy", emb)
    assert main(["submit", str(pred), "--data", str(data)]) == 3
    assert "video_embeddings.npy: row 0 (video 'te000') has NaN or infinite values" in capsys.readouterr().err
    assert main(["submit", str(tmp_path / "nothing")]) == 3
    assert "no such file or directory" in capsys.readouterr().err
    good = write_predictions(tmp_path / "g", ExpectedIds.from_dataset(data, "test"))
    assert main(["submit", str(good), "--local", str(tmp_path / "board")]) == 2
    assert "--local scores against references: give --data DIR" in capsys.readouterr().err
    assert main(["submit", str(good), "--server", "http://127.0.0.1:9"]) == 2
    assert "needs a team token" in capsys.readouterr().err
    assert main(["submit", str(good), "--server", "http://127.0.0.1:9", "--token", "cbt_x_y"]) == 3
    assert "could not reach the leaderboard server" in capsys.readouterr().err


def test_local_board(tmp_path, data, capsys):
    from create_bench.scoring import score_predictions

    pred = write_predictions(
        tmp_path / "p", ExpectedIds.from_dataset(data, "test"), card={"name": "My Model v2"}
    )
    board = tmp_path / "board"
    args = ["submit", str(pred), "--local", str(board), "--data", str(data), "--bootstrap", "50"]
    assert main(args) == 0
    assert "board re-rendered" in capsys.readouterr().out
    results = json.loads((board / "results" / "My-Model-v2-test.json").read_text("utf-8"))
    direct = score_predictions(pred, data, "test", bootstrap=50)
    assert results["scores"] == json.loads(json.dumps(direct["scores"]))
    assert results["signature"] == direct["signature"]
    assert results["model"]["name"] == "My Model v2" and results["model"]["test_data_seen"] is False
    readme = (board / "README.md").read_text("utf-8")
    assert readme.count("My Model v2") == 3  # one row per task table
    assert "My Model v2" in (board / "index.html").read_text("utf-8")

"""`create-bench submit`: validate only, --local scoring into a board directory, and errors as
exit codes with clear messages (the CLI in-process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from leaderboard_util import text_dataset, write_predictions

from create_bench.cli import main
from create_bench.leaderboard.submission import ExpectedIds, pack_directory
from create_bench.scoring import ScoringOptions


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
    assert "--local scores against references: give --data DIR" in capsys.readouterr().err  # no eval record
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


@pytest.fixture()
def eval_predictions(tmp_path, data):
    """What `create-bench eval --model random` leaves: predictions, card and results JSON."""
    from create_bench.models import load_model
    from create_bench.runner import EvalConfig, evaluate

    cfg = EvalConfig(
        data_dir=data,
        results_dir=tmp_path / "results",
        scoring=ScoringOptions(bootstrap=0),
        report=False,
        progress=False,
    )
    return evaluate(load_model("random", {}), cfg, model_spec="random").predictions_dir


def test_card_from_eval_submits_with_team_and_test_data_seen(tmp_path, eval_predictions, capsys):
    card_before = (eval_predictions / "model_card.yaml").read_text("utf-8")
    assert "schema_version: 1" in card_before and "create_configs:\n- train" in card_before
    board = tmp_path / "board"
    base = ["submit", str(eval_predictions), "--local", str(board), "--bootstrap", "0"]
    # Nothing is guessed: without the flags, one line naming them, and nothing is written.
    assert main([*base, "--team", "Team A"]) == 3
    err = capsys.readouterr().err.strip()
    assert (
        err.count("\n") == 0 and "test_data_seen" in err and "--test-data-seen or --no-test-data-seen" in err
    )
    assert main(base) == 3
    assert "--team NAME" in capsys.readouterr().err
    assert not (board / "results").exists()
    # --data defaults to the dataset eval recorded.
    assert main([*base, "--team", "Team A", "--no-test-data-seen"]) == 0
    out = capsys.readouterr().out
    assert "(recorded by create-bench eval)" in out and "new entry" in out
    results = json.loads((board / "results" / "random-test.json").read_text("utf-8"))
    assert results["model"]["team"] == "Team A" and results["model"]["test_data_seen"] is False
    assert results["model"]["create_configs"] == ["train"]
    assert (eval_predictions / "model_card.yaml").read_text("utf-8") == card_before  # user files untouched


def test_local_entries_are_keyed_by_team_and_model(tmp_path, eval_predictions, capsys):
    board = tmp_path / "board"
    base = ["submit", str(eval_predictions), "--local", str(board), "--bootstrap", "0"]
    assert main([*base, "--team", "Team A", "--no-test-data-seen"]) == 0
    assert main([*base, "--team", "Team B", "--no-test-data-seen"]) == 0  # same name, other team
    assert "new entry" in capsys.readouterr().out
    files = sorted(p.name for p in (board / "results").glob("*.json"))
    assert files == ["random--Team-B-test.json", "random-test.json"]
    # The same team again replaces its own entry, and says so.
    assert main([*base, "--team", "Team A", "--test-data-seen"]) == 0
    assert "replaced this team's earlier entry" in capsys.readouterr().out
    assert sorted(p.name for p in (board / "results").glob("*.json")) == files
    teams = {
        json.loads(p.read_text("utf-8"))["model"]["team"]: json.loads(p.read_text("utf-8"))["model"]
        for p in (board / "results").glob("*.json")
    }
    assert teams["Team A"]["test_data_seen"] is True and teams["Team B"]["test_data_seen"] is False
    readme = (board / "README.md").read_text("utf-8")
    assert readme.count("| random † | Team A |") == 3 and readme.count("| random | Team B |") == 3
    assert "† test data seen during development" in readme


def test_local_without_a_recorded_dataset_asks_for_data(tmp_path, data, capsys):
    pred = write_predictions(tmp_path / "p", ExpectedIds.from_dataset(data, "test"))
    assert main(["submit", str(pred), "--local", str(tmp_path / "board")]) == 2
    assert "give --data DIR" in capsys.readouterr().err

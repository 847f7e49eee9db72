"""The predictions directory: round trip, precise errors, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from create_bench.errors import PredictionError
from create_bench.predictions import Predictions, load_predictions, write_predictions

VIDS = ["v1", "v2", "v3"]
TIDS = [f"{v}:{k}:{j}" for v in VIDS for k in ("caption", "title") for j in range(2)]


def full_kwargs(rng: np.random.Generator | None = None) -> dict:
    rng = rng or np.random.default_rng(0)
    return {
        "generations": {v: {"title": f"{v}的标题", "caption": f"{v}的描述"} for v in VIDS},
        "video_ids": VIDS,
        "video_embeddings": rng.standard_normal((3, 4)).astype(np.float32),
        "text_ids": TIDS,
        "text_embeddings": rng.standard_normal((len(TIDS), 4)).astype(np.float16),
        "similarity": {"caption": rng.standard_normal((6, 3)).astype(np.float32)},
        "model_card": {"name": "m", "params": 12, "training_data": ["CREATE-210K"], "path": Path("/x")},
    }


def test_round_trip(tmp_path: Path) -> None:
    kw = full_kwargs()
    write_predictions(tmp_path / "p", **kw)
    p = load_predictions(tmp_path / "p")
    assert p.generations == kw["generations"]
    assert p.video_ids == VIDS and p.text_ids == TIDS
    np.testing.assert_array_equal(p.video_embeddings, kw["video_embeddings"])
    assert p.text_embeddings.dtype == np.float16
    np.testing.assert_array_equal(p.similarity["caption"], kw["similarity"]["caption"])
    assert p.model_card == {"name": "m", "params": 12, "training_data": ["CREATE-210K"], "path": "/x"}
    assert p.tasks() == ["retrieval", "title", "caption"] and p.retrieval_kinds() == ["caption", "title"]
    rows, ids = p.text_rows("title")
    assert rows.tolist() == [2, 3, 6, 7, 10, 11] and ids[0] == "v1:title:0"
    lines = (tmp_path / "p" / "generations.jsonl").read_text("utf-8").splitlines()
    assert json.loads(lines[0]) == {"vid": "v1", "title": "v1的标题", "caption": "v1的描述"}


def test_partial_parts(tmp_path: Path) -> None:
    write_predictions(tmp_path / "g", generations={"a": {"caption": "好"}})
    p = load_predictions(tmp_path / "g")
    assert p.tasks() == ["caption"] and p.generated("caption") == {"a": "好"}

    class TensorLike:  # what a torch tensor offers; write_predictions never imports torch
        def detach(self):
            return self

        def cpu(self):
            return self

        def numpy(self):
            return np.ones((1, 2), np.float32)

    write_predictions(
        tmp_path / "r", video_ids=["a"], video_embeddings=TensorLike(), text_ids=["a:caption:0"],
        text_embeddings=TensorLike(),
    )  # fmt: skip
    assert load_predictions(tmp_path / "r").tasks() == ["retrieval"]


def test_rewrite_replaces_directory_whole(tmp_path: Path) -> None:
    write_predictions(tmp_path / "p", **full_kwargs())
    write_predictions(tmp_path / "p", generations={"a": {"title": "新"}})
    assert sorted(f.name for f in (tmp_path / "p").iterdir()) == ["generations.jsonl"]


def test_invalid_write_leaves_old_directory(tmp_path: Path) -> None:
    write_predictions(tmp_path / "p", **full_kwargs())
    before = sorted(f.name for f in (tmp_path / "p").iterdir())
    bad = full_kwargs()
    bad["video_embeddings"] = bad["video_embeddings"].copy()
    bad["video_embeddings"][1, 0] = np.nan
    with pytest.raises(PredictionError, match=r"row 1 \(video 'v2'\) has NaN"):
        write_predictions(tmp_path / "p", **bad)
    assert sorted(f.name for f in (tmp_path / "p").iterdir()) == before
    assert [f.name for f in tmp_path.iterdir()] == ["p"]  # no temporary leftovers


def test_crash_during_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "save", boom)
    with pytest.raises(OSError):
        write_predictions(tmp_path / "p", **full_kwargs())
    assert list(tmp_path.iterdir()) == []


def _mutate(kw: dict, key: str, value) -> dict:
    kw = dict(kw)
    kw[key] = value
    return kw


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("video_ids", ["v1", "v2"], "video_embeddings.npy has 3 rows but there are 2 ids"),
        ("video_ids", ["v1", "v1", "v3"], "video_ids.json: duplicate ids 'v1'"),
        ("video_ids", ["v1", "", "v3"], "entry 1 is ''"),
        ("text_ids", TIDS[:-1] + ["v3:summary:0"], "'v3:summary:0' is not"),
        ("text_ids", TIDS[:-1] + ["v3-title-1"], "'v3-title-1' is not"),
        ("text_embeddings", np.zeros((12, 5), np.float32), "dimension 5 but video_embeddings.npy has 4"),
        ("text_embeddings", np.zeros((12, 4), np.int64), "dtype int64"),
        ("video_embeddings", np.zeros(3, np.float32), "2-D array"),
        ("similarity", {"caption": np.zeros((3, 6), np.float32)}, r"shape \(3, 6\); expected \(6, 3\)"),
        ("similarity", {"summary": np.zeros((6, 3), np.float32)}, "unknown text kind 'summary'"),
        ("generations", {"v1": {"title": 3}}, "vid 'v1': title is int, not a string"),
        ("generations", {"v1": {"title": " "}}, "vid 'v1': title is empty"),
        ("generations", {"v1": {"titel": "x"}}, "unknown field 'titel'"),
        (
            "generations",
            {"v1": {"title": "a"}, "v2": {"caption": "b"}},
            "1 videos have no 'title' while others do",
        ),
    ],
)
def test_validation_errors(tmp_path: Path, key, value, match) -> None:
    with pytest.raises(PredictionError, match=match):
        write_predictions(tmp_path / "p", **_mutate(full_kwargs(), key, value))


def test_nan_in_similarity_names_the_text(tmp_path: Path) -> None:
    kw = full_kwargs()
    kw["similarity"]["caption"][4, 2] = np.inf
    with pytest.raises(PredictionError, match=r"similarity_caption.npy: row 4 \(text 'v3:caption:0'\)"):
        write_predictions(tmp_path / "p", **kw)


def test_loading_errors(tmp_path: Path) -> None:
    with pytest.raises(PredictionError, match="does not exist"):
        load_predictions(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PredictionError, match="no predictions found"):
        load_predictions(tmp_path / "empty")
    d = tmp_path / "d"
    d.mkdir()
    (d / "generations.jsonl").write_text('{"vid": "a", "title": "x"}\n{"vid": "a", "title": "y"}\n', "utf-8")
    with pytest.raises(PredictionError, match="line 2: vid 'a' appears twice"):
        load_predictions(d)
    (d / "generations.jsonl").write_text('{"vid": "a", "title": "x"}\n{"vid": "b", "title": \n', "utf-8")
    with pytest.raises(PredictionError, match="line 2 is not valid JSON"):
        load_predictions(d)
    (d / "generations.jsonl").write_text('{"title": "x"}\n', "utf-8")
    with pytest.raises(PredictionError, match="line 1 has no string 'vid'"):
        load_predictions(d)
    (d / "generations.jsonl").write_text('{"vid": "a", "caption": "x", "captions": ["y"]}\n', "utf-8")
    with pytest.raises(PredictionError, match=r"unknown field\(s\) \['captions'\]"):
        load_predictions(d)
    (d / "generations.jsonl").unlink()
    (d / "video_ids.json").write_text('["a"]', "utf-8")
    with pytest.raises(PredictionError, match="video_ids.json without video_embeddings.npy"):
        load_predictions(d)
    np.save(d / "video_embeddings.npy", np.ones((1, 2), np.float32))
    (d / "text_ids.json").write_text('{"a": 1}', "utf-8")
    with pytest.raises(PredictionError, match="expected a JSON list"):
        load_predictions(d)
    (d / "text_ids.json").unlink()
    (d / "model_card.yaml").write_text("- just\n- a list\n", "utf-8")
    with pytest.raises(PredictionError, match="model_card.yaml: expected a mapping"):
        load_predictions(d)
    (d / "model_card.yaml").unlink()
    (d / "video_embeddings.npy").write_bytes(b"not numpy")
    with pytest.raises(PredictionError, match="not a readable .npy"):
        load_predictions(d)


def test_embeddings_without_ids_in_memory() -> None:
    with pytest.raises(PredictionError, match="needs video_ids.json"):
        Predictions(video_embeddings=np.ones((2, 2), np.float32)).validate()


def test_text_rows_follow_ids_changed_in_place() -> None:
    p = Predictions(text_ids=["v1:caption:0", "v1:title:0", "v2:caption:0"])
    rows, ids = p.text_rows("caption")
    assert rows.tolist() == [0, 2] and ids == ["v1:caption:0", "v2:caption:0"]
    assert p.text_rows("title")[1] == ["v1:title:0"]  # parsed once, both kinds answered
    assert p.text_ids is not None
    p.text_ids[1] = "v2:caption:1"
    assert p.text_rows("caption")[0].tolist() == [0, 1, 2] and len(p.text_rows("title")[0]) == 0
    p.text_ids = ["v1:title:0"]
    assert len(p.text_rows("caption")[0]) == 0 and p.text_rows("title")[1] == ["v1:title:0"]
    assert p.text_rows("caption")[0].dtype == np.int64

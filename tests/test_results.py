"""The results JSON: build, validate, write/load, schema upgrades, the paper-style table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import create_bench.results as results_mod
from create_bench.results import (
    ResultsError,
    build_results,
    format_table,
    load_results,
    results_path,
    upgrade_results,
    validate_results,
    write_results,
)
from create_bench.signature import Signature

SIG = Signature(data="abc123", split="test", protocol="multi-reference", ties="expected", refs=10)


def sample() -> dict:
    return build_results(
        model={"name": "random", "params": 0},
        dataset={
            "name": "create-sample",
            "fingerprint": "abc123",
            "split": "test",
            "counts": {"videos": 200},
        },
        scores={
            "t2v_caption": {"R@1": 0.5, "R@5": 2.5, "R@10": 5.0, "MdR": 100.5, "MnR": 100.5},
            "caption": {
                "BLEU-1": 12.345,
                "BLEU-2": 5.0,
                "BLEU-3": 2.0,
                "BLEU-4": 1.04,
                "ROUGE-L": 20.0,
                "CIDEr": 3.96,
            },
        },
        signature=SIG,
        signatures={"t2v_caption": SIG},
        ci={"t2v_caption": {"R@1": [0.1, 0.9]}},
        bootstrap={"n": 1000, "seed": 0, "level": 0.95, "unit": "video"},
        per_category={"0": {"name": "美食", "count": 3}},
        created_at="2025-01-01T00:00:00+00:00",
    )


def test_build_write_load_round_trip(tmp_path: Path) -> None:
    r = sample()
    assert r["schema_version"] == results_mod.SCHEMA_VERSION
    assert r["signature"] == SIG.format() and r["signature_fields"]["refs"] == 10
    path = write_results(tmp_path / "out" / "r.json", r)
    assert load_results(path) == json.loads(json.dumps(r))
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.json"]


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda r: r["scores"].update(bogus={"R@1": 1.0}), "unknown score group 'bogus'"),
        (lambda r: r["scores"]["t2v_caption"].update({"R@2": 1.0}), "unknown metric 'R@2'"),
        (lambda r: r["scores"]["caption"].update(CIDEr=float("nan")), "not a finite number"),
        (lambda r: r["scores"]["caption"].update(CIDEr="3"), "not a finite number"),
        (lambda r: r["ci"]["t2v_caption"].update({"R@1": [2.0, 1.0]}), "not an interval"),
        (lambda r: r["ci"].update(title={"BLEU-1": [1.0, 2.0]}), "ci has group 'title'"),
        (lambda r: r.update(signature="sacrebleu|x:1"), "not a create-bench signature"),
        (lambda r: r.update(scores={}), "'scores' is empty"),
        (lambda r: r.pop("model"), "'model' must be a dict"),
        (lambda r: r.update(schema_version=2), "schema_version is 2"),
        (lambda r: r.update(skipped_tasks={"caption": 3}), "'skipped_tasks' must be an object"),
        (lambda r: r["dataset"].update(skipped=-1), "dataset.skipped = -1"),
    ],
)
def test_validation_errors(mutate, match) -> None:
    r = sample()
    mutate(r)
    with pytest.raises(ResultsError, match=match):
        validate_results(r)


def test_write_refuses_invalid_and_keeps_old(tmp_path: Path) -> None:
    path = write_results(tmp_path / "r.json", sample())
    bad = sample()
    bad["scores"]["caption"]["CIDEr"] = float("inf")
    with pytest.raises(ResultsError, match=str(path)):
        write_results(path, bad)
    assert load_results(path)["scores"]["caption"]["CIDEr"] == 3.96


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="no such results file"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json", "utf-8")
    with pytest.raises(ResultsError, match="not readable JSON"):
        load_results(tmp_path / "bad.json")
    newer = sample()
    newer["schema_version"] = 99
    (tmp_path / "new.json").write_text(json.dumps(newer), "utf-8")
    with pytest.raises(ResultsError, match="newer than this create-bench"):
        load_results(tmp_path / "new.json")


def test_pre_schema_results_still_load(tmp_path: Path) -> None:
    """Results written before schema_version existed: signature as a dict, intervals as objects."""
    old = sample()
    del old["schema_version"], old["signatures"], old["signature_fields"], old["per_category"]
    old["signature"] = {"string": SIG.format(), "data": "abc123"}
    old["ci"] = {"t2v_caption": {"R@1": {"low": 0.1, "high": 0.9}}}
    (tmp_path / "old.json").write_text(json.dumps(old), "utf-8")
    r = load_results(tmp_path / "old.json")
    assert r["schema_version"] == 1 and r["signature"] == SIG.format()
    assert r["ci"]["t2v_caption"]["R@1"] == [0.1, 0.9] and r["per_category"] == {}
    fields_only = dict(old, signature=SIG.to_dict())
    assert upgrade_results(fields_only)["signature"] == SIG.format()


def test_upgrade_chain(monkeypatch) -> None:
    """A future schema 2: files of schema 1 keep loading through the registered upgrade."""
    monkeypatch.setattr(results_mod, "SCHEMA_VERSION", 2)
    monkeypatch.setitem(results_mod.UPGRADES, 1, lambda r: {**r, "schema_version": 2, "new_key": True})
    r = sample() | {"schema_version": 1}
    up = upgrade_results(r)
    assert up["schema_version"] == 2 and up["new_key"] is True


def test_format_table() -> None:
    text = format_table(sample())
    lines = text.splitlines()
    assert lines[0] == "Retrieval (R@K x100; MdR, MnR ranks)"
    assert lines[1].split() == ["R@1", "R@5", "R@10", "MdR", "MnR"]
    assert lines[2].split() == ["T2V", "(captions)", "0.5", "2.5", "5.0", "100.5", "100.5"]
    assert "Generation (x100)" in lines
    cap = next(line for line in lines if line.startswith("Caption generation"))
    assert cap.split()[2:] == ["12.3", "5.0", "2.0", "1.0", "20.0", "4.0"]
    assert lines[-1] == f"signature: {SIG.format()}"
    assert "V2T" not in text and "Title generation" not in text  # absent groups are not printed
    with_ci = format_table(sample(), show_ci=True)
    assert "0.5 [0.1, 0.9]" in with_ci and "n=1000, seed=0" in with_ci


def test_results_path() -> None:
    assert results_path("results", "my model/v2", "create-sample", "test") == Path(
        "results/my_model_v2/create-sample-test.json"
    )


def test_doctests() -> None:
    import doctest

    result = doctest.testmod(results_mod)
    assert result.attempted > 0 and result.failed == 0


def test_table_says_what_was_skipped() -> None:
    r = sample()
    r["skipped_tasks"] = {"caption": "generations.jsonl has no 'caption' field"}
    r["dataset"].update(skipped=2, counts={"videos": 10})
    text = format_table(validate_results(r))
    assert "caption generation skipped: generations.jsonl has no 'caption' field" in text
    assert (
        "note: 2 test videos were skipped at build time (see build_report.json); scores are over the remaining 10"
        in text
    )
    assert "scored: caption retrieval" in text

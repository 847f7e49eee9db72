"""Chance levels and the family-wise chance check, end to end: score_predictions on real shards,
the results JSON (validated, written, loaded), the Markdown report and the printed table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from create_bench import report
from create_bench.data.build import DatasetWriter
from create_bench.metrics.chance import retrieval_chance
from create_bench.predictions import Predictions
from create_bench.results import ResultsError, format_table, load_results, validate_results, write_results
from create_bench.scoring import score_predictions
from create_bench.types import text_id

N_VIDEOS = 40
#: Mixed reference counts (the check must use the counts actually present).
TITLES = [10 if i % 4 else 6 for i in range(N_VIDEOS)]
CAPTIONS = [10 if i % 5 else 3 for i in range(N_VIDEOS)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("chance") / "mixed"
    with DatasetWriter(out, name="mixed", categories=["美食", "旅行"], shard_size=20) as w:
        for i in range(N_VIDEOS):
            vid = f"v{i:03d}"
            w.add(
                {
                    "vid": vid,
                    "split": "test",
                    "category": i % 2,
                    "titles": [f"标题{i}-{k}" for k in range(TITLES[i])],
                    "captions": [f"描述{i}-{k}" for k in range(CAPTIONS[i])],
                    "video": {"bytes": b"not-decoded", "path": None},
                    "num_frames": 8,
                }
            )
    return out


def _predictions(perfect: bool, seed: int = 0) -> Predictions:
    """Random unit embeddings, or ``perfect``: every text is its own video's embedding."""
    rng = np.random.default_rng(seed)
    vids = [f"v{i:03d}" for i in range(N_VIDEOS)]
    videos = rng.standard_normal((N_VIDEOS, 64)).astype(np.float32)
    ids, rows = [], []
    for kind, counts in (("caption", CAPTIONS), ("title", TITLES)):
        for i, n in enumerate(counts):
            for k in range(n):
                ids.append(text_id(vids[i], kind, k))
                rows.append(videos[i] if perfect else rng.standard_normal(64).astype(np.float32))
    return Predictions(
        video_ids=vids,
        video_embeddings=videos,
        text_ids=ids,
        text_embeddings=np.stack(rows),
        model_card={"name": "perfect" if perfect else "random"},
    )


@pytest.fixture(scope="module")
def random_results(dataset: Path) -> dict:
    return score_predictions(_predictions(False), dataset, "test", bootstrap=500, seed=0)


@pytest.fixture(scope="module")
def perfect_results(dataset: Path) -> dict:
    return score_predictions(_predictions(True), dataset, "test", bootstrap=500, seed=0)


def test_results_carry_the_chance_levels_of_the_reference_counts(random_results: dict) -> None:
    for kind, counts in (("title", TITLES), ("caption", CAPTIONS)):
        want = retrieval_chance(counts)
        assert random_results["chance"][f"t2v_{kind}"] == pytest.approx(want["t2v"])
        assert random_results["chance"][f"v2t_{kind}"] == pytest.approx(want["v2t"])
    # T2V: one relevant video among 40 -> R@K = K / 40; V2T mixes counts 6/10 and 3/10
    assert random_results["chance"]["t2v_title"]["R@5"] == pytest.approx(12.5)
    assert random_results["chance"]["v2t_title"]["MnR"] == pytest.approx(
        np.mean([(sum(TITLES) + 1) / (m + 1) for m in TITLES])
    )
    assert random_results["bootstrap"]["interval"]["R@K"].startswith("clopper-pearson")


def test_random_embeddings_are_consistent_with_chance(random_results: dict) -> None:
    test = random_results["chance_test"]
    assert test["family"] == 20 and test["correction"] == "holm" and test["alpha"] == 0.05
    assert test["consistent"] and test["differs"] == []
    for group, metrics in test["adjusted"].items():
        for m, p in metrics.items():
            assert test["p_values"][group][m] <= p <= 1.0
    assert test["statement"].startswith("All 20 retrieval numbers are consistent with chance")


def test_a_perfect_model_differs_from_chance_everywhere(perfect_results: dict) -> None:
    test = perfect_results["chance_test"]
    assert not test["consistent"]
    assert len(test["differs"]) == 20 and all(d["direction"] == "better" for d in test["differs"])
    assert perfect_results["scores"]["t2v_title"]["R@1"] == 100.0
    assert test["statement"].startswith("20 of 20 retrieval numbers differ from chance")


def test_no_bootstrap_keeps_chance_levels_but_no_check(dataset: Path) -> None:
    res = score_predictions(_predictions(False), dataset, "test", bootstrap=0)
    assert set(res["chance"]) == {"t2v_caption", "v2t_caption", "t2v_title", "v2t_title"}
    assert "chance_test" not in res and res["ci"] == {}


def test_results_round_trip_and_validation(random_results: dict, tmp_path: Path) -> None:
    path = write_results(tmp_path / "r.json", random_results)
    again = load_results(path)
    assert again["chance"] == json.loads(json.dumps(random_results["chance"]))
    assert again["chance_test"]["consistent"] is True
    old = copy.deepcopy(random_results)  # results written before chance existed still validate
    del old["chance"], old["chance_test"], old["bootstrap"]["interval"]
    validate_results(old)
    for mutate, match in [
        (lambda r: r["chance"].update(title={"R@1": 1.0}), "chance has group 'title'"),
        (lambda r: r["chance"]["t2v_title"].update({"BLEU-1": 1.0}), "not a chance level"),
        (lambda r: r["chance_test"].update(consistent="yes"), "boolean 'consistent'"),
        (lambda r: r["chance_test"]["adjusted"]["t2v_title"].update({"R@1": 1.5}), "not a p-value"),
    ]:
        bad = copy.deepcopy(random_results)
        mutate(bad)
        with pytest.raises(ResultsError, match=match):
            validate_results(bad)


def test_markdown_states_the_check_in_words(random_results: dict, perfect_results: dict) -> None:
    md = report.markdown(random_results)
    c = random_results["chance"]["v2t_title"]
    assert (
        f"| titles | V2T (chance) | {c['R@1']:.1f} | {c['R@5']:.1f} | {c['R@10']:.1f} | {c['MdR']:.1f} |"
        in md
    )
    assert "### Consistent with chance?" in md and "**Yes.** All 20 retrieval numbers are consistent" in md
    assert "Holm" in md and " ✗ |" not in md  # no p-value cell is marked
    md = report.markdown(perfect_results)
    assert "**No.** 20 of 20 retrieval numbers differ from chance" in md
    assert "| titles | T2V | <0.001 ✗ |" in md
    # results without their own chance levels (older files) use the ones passed in
    old = {k: v for k, v in random_results.items() if k not in ("chance", "chance_test")}
    md = report.markdown(old, chance={"t2v_title": {"R@1": 9.9}})
    assert "| titles | T2V (chance) | 9.9 |" in md and "Consistent with chance" not in md


def test_table_prints_the_verdict(random_results: dict) -> None:
    text = format_table(random_results)
    assert "chance: All 20 retrieval numbers are consistent with chance" in text

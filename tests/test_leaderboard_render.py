"""Static board: README table + index.html from results JSON files (zero or more), escaped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from leaderboard_util import cli

from create_bench.errors import DataError
from create_bench.leaderboard import board
from create_bench.leaderboard.render import END, START, load_entries, render, replace_between_markers

ROOT = Path(__file__).resolve().parents[1]


def results(name: str, team: str, r1: float, cider: float, *, ci: bool = True) -> dict:
    out = {
        "schema_version": 1,
        "model": {"name": name, "team": team},
        "signature": f"create-bench:0.1.0|data:abc|split:test|model:{name}",
        "scores": {
            "t2v_caption": {"R@1": r1, "R@5": r1 * 2, "R@10": r1 * 3, "MdR": 10.0, "MnR": 20.5},
            "caption": {"BLEU-1": 30.0, "BLEU-4": 5.0, "ROUGE-L": 25.0, "CIDEr": cider},
        },
    }
    if ci:
        out["ci"] = {"t2v_caption": {"R@1": [r1 - 1, r1 + 1]}, "caption": {"CIDEr": [cider - 2, cider + 2]}}
    return out


def write(d: Path, name: str, obj: dict) -> None:
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(obj, ensure_ascii=False), "utf-8")


def test_zero_results(tmp_path):
    readme, index = render(tmp_path / "results", tmp_path)
    text = readme.read_text("utf-8")
    assert START in text and END in text and "No results yet" in text
    html = index.read_text("utf-8")
    assert "No retrieval results yet" in html and "No captioning results yet" in html


def test_tables_sorted_by_the_main_score_with_cis(tmp_path):
    write(tmp_path / "results", "a", results("model-a", "team A", 10.0, 40.0))
    write(tmp_path / "results", "b", results("model-b", "team B", 20.0, 30.0, ci=False))
    write(tmp_path / "results" / "nested", "c", {"schema_version": 1, "model": {"name": "gen-only"},
                                                  "scores": {"title": {"CIDEr": 12.34}}})  # fmt: skip
    readme, index = render(tmp_path / "results", tmp_path)
    md = readme.read_text("utf-8")
    retrieval = md[md.index("### Retrieval") : md.index("### Titling")]
    assert retrieval.index("model-b") < retrieval.index("model-a")  # R@1 20 before 10
    captioning = md[md.index("### Captioning") :]
    assert captioning.index("model-a") < captioning.index("model-b")  # CIDEr 40 before 30
    assert "10.0 <sub>[9.0, 11.0]</sub>" in retrieval
    assert "| 12.3 |" in md[md.index("### Titling") :]
    assert "`create-bench:0.1.0|data:abc|split:test|model:model-a`" in md
    html = index.read_text("utf-8")
    assert html.count('<table class="board"') == 3
    assert "Content-Security-Policy" in html  # the static page carries its CSP as a meta tag
    assert "[9.0, 11.0]" in html


def test_rerender_only_touches_the_marked_block(tmp_path):
    (tmp_path / "README.md").write_text(f"# Board\n\nintro\n\n{START}\nold\n{END}\n\nfooter\n", "utf-8")
    write(tmp_path / "results", "a", results("model-a", "t", 1.0, 2.0))
    render(tmp_path / "results", tmp_path)
    first = (tmp_path / "README.md").read_text("utf-8")
    assert first.startswith("# Board\n\nintro\n\n") and first.endswith("\n\nfooter\n") and "old" not in first
    render(tmp_path / "results", tmp_path)
    assert (tmp_path / "README.md").read_text("utf-8") == first  # idempotent
    assert replace_between_markers("plain\n", "x").endswith(f"{START}\n\nx\n\n{END}\n")


def test_user_text_is_escaped_in_markdown_and_html(tmp_path):
    bad = results("<script>alert(1)</script>", "a|b *c* [l](javascript:x)", 1.0, 2.0)
    bad["signature"] = "create-bench:0.1.0|frames:`<b>`"  # card fields reach the signature
    write(tmp_path / "results", "x", bad)
    readme, index = render(tmp_path / "results", tmp_path)
    md = readme.read_text("utf-8")
    assert "<script>" not in md and "&lt;script&gt;" in md
    assert "- [1] `create-bench:0.1.0|frames:<b>`" in md  # backticks cannot end the code span
    assert "a\\|b \\*c\\* \\[l\\](javascript:x)" in md
    row = next(line for line in md.splitlines() if "alert" in line)
    assert len(re.findall(r"(?<!\\)\|", row)) == row.count("|") - 1  # only the escaped pipe is literal
    html = index.read_text("utf-8")
    assert "<script>alert" not in html and html.count("<script>") == 1


def test_bad_results_files_name_the_file(tmp_path):
    write(tmp_path / "results", "ok", results("m", "t", 1.0, 2.0))
    (tmp_path / "results" / "broken.json").write_text("{nope", "utf-8")
    with pytest.raises(DataError, match="broken.json"):
        load_entries(tmp_path / "results")
    (tmp_path / "results" / "broken.json").write_text("[1, 2]", "utf-8")
    with pytest.raises(DataError, match="no 'scores' mapping"):
        load_entries(tmp_path / "results")


def test_ci_shapes_and_formatting():
    r = {"ci": {"g": {"a": [1.0, 2.0], "b": {"low": 3, "high": 4}, "c": [float("nan"), 1.0], "d": "x"}}}
    assert board.ci_bounds(r, "g", "a") == (1.0, 2.0)
    assert board.ci_bounds(r, "g", "b") == (3.0, 4.0)
    assert board.ci_bounds(r, "g", "c") is None and board.ci_bounds(r, "g", "d") is None
    assert board.fmt(12.345) == "12.3" and board.fmt(None) == "–" and board.fmt(True) == "–"


def test_render_cli_and_the_committed_board(tmp_path):
    write(tmp_path / "results", "a", results("model-a", "t", 1.0, 2.0))
    out = cli("leaderboard", "render", "--results", str(tmp_path / "results"), "--out", str(tmp_path)).stdout
    assert "rendered 1 result(s)" in out
    # The committed leaderboard/README.md has the markers the render fills.
    text = (ROOT / "leaderboard" / "README.md").read_text("utf-8")
    assert START in text and END in text


def fp_results(
    name: str, team: str, r1: float, fingerprint: str, created: str, *, seen: bool = False
) -> dict:
    out = results(name, team, r1, r1)
    out["model"]["test_data_seen"] = seen
    out["dataset"] = {"name": "create-sample", "fingerprint": fingerprint, "split": "test"}
    out["protocol"] = "multi-reference"
    out["signature"] = (
        f"create-bench:0.1.0|data:{fingerprint}|split:test|protocol:multi-reference|ties:expected"
    )
    out["created_at"] = created
    return out


def test_two_fingerprints_are_two_boards_never_one_ranking(tmp_path):
    # The baselines' data comes first even though the other board's entry is newer.
    write(
        tmp_path / "results", "base", fp_results("base", board.BASELINE_TEAM, 5.0, "7735aaaa", "2026-01-01")
    )
    write(tmp_path / "results", "new", fp_results("newer", "team N", 90.0, "b5eebbbb", "2026-02-01"))
    readme, index = render(tmp_path / "results", tmp_path)
    md = readme.read_text("utf-8")
    heads = [line for line in md.splitlines() if line.startswith("### ")]
    assert heads == [
        "### create-sample · data 7735aaaa · split test · protocol multi-reference",
        "### create-sample · data b5eebbbb · split test · protocol multi-reference",
    ]
    first, second = md.split(heads[1])
    assert "base" in first and "newer" not in first  # each table ranks one fingerprint only
    assert "newer" in second and "| base |" not in second
    html = index.read_text("utf-8")
    assert html.count('<table class="board" data-task="retrieval"') == 2
    assert html.index('data-fingerprint="7735aaaa"') < html.index('data-fingerprint="b5eebbbb"')
    groups = board.boards(load_entries(tmp_path / "results"))
    assert [[r["entry"]["model_name"] for r in g["tables"][0]["rows"]] for g in groups] == [
        ["base"],
        ["newer"],
    ]


def test_different_scoring_settings_are_separate_tables(tmp_path):
    a = fp_results("a", "t", 5.0, "f1", "2026-01-01")
    b = fp_results("b", "t", 6.0, "f1", "2026-01-01")
    b["signature"] = b["signature"].replace("ties:expected", "ties:optimistic")
    write(tmp_path / "results", "a", a)
    write(tmp_path / "results", "b", b)
    md = render(tmp_path / "results", tmp_path)[0].read_text("utf-8")
    assert "#### Retrieval (ties:expected)" in md and "#### Retrieval (ties:optimistic)" in md


def test_test_data_seen_is_marked_with_a_legend(tmp_path):
    write(tmp_path / "results", "s", fp_results("seen-model", "t", 5.0, "f1", "2026-01-01", seen=True))
    write(tmp_path / "results", "u", fp_results("clean-model", "t", 4.0, "f1", "2026-01-01"))
    readme, index = render(tmp_path / "results", tmp_path)
    md = readme.read_text("utf-8")
    assert "| seen-model † |" in md and "| clean-model |" in md
    assert "† test data seen during development" in md
    html = index.read_text("utf-8")
    assert html.count('<abbr class="seen"') == 2  # retrieval and captioning rows of seen-model
    assert "test data seen during development" in html


def test_a_foreign_index_html_is_never_replaced(tmp_path):
    """`submit --local DIR` and `leaderboard render --out DIR` re-render DIR/index.html: a page
    this command did not render is refused and left as it was; its own earlier render is replaced."""
    from create_bench.errors import OutputError

    write(tmp_path / "results", "a", results("model-a", "t", 1.0, 2.0))
    (tmp_path / "index.html").write_text("<html>my own page</html>", "utf-8")
    with pytest.raises(OutputError, match="not a board this command rendered"):
        render(tmp_path / "results", tmp_path)
    assert (tmp_path / "index.html").read_text("utf-8") == "<html>my own page</html>"
    (tmp_path / "index.html").unlink()
    render(tmp_path / "results", tmp_path)
    render(tmp_path / "results", tmp_path)  # its own render: replaced
    assert "model-a" in (tmp_path / "index.html").read_text("utf-8")

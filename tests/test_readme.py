"""Every command and Python snippet of README.md, run as written on a fresh small CREATE-sample.

The README's fenced blocks are parsed, not copied: a command added to README.md is run here (or the
test fails until it is listed in :data:`NOT_RUN` with a reason), so an example cannot go stale
silently. Everything runs in a temporary project directory whose ``data/create-sample`` is a freshly
generated small sample (:data:`SIZES`), in subprocesses, in README order.

- ```python blocks run in one interpreter, top-level statement by statement (one test case each, so a
  failing statement names itself and the others still count). A ``DataLoader`` the snippet builds must
  also yield a batch (``next(iter(loader))``): a loader that cannot be iterated is a broken example.
- ```bash blocks: each ``create-bench ...`` line (``\\`` continuations joined) runs as
  ``python -m create_bench ...`` with this checkout on ``PYTHONPATH``. Changed are only:
  * ``[...]`` optional parts, dropped;
  * the official release's placeholders, which are made real instead of substituted: official-format
    annotation files with exactly the README's names (``create_210k_{train,val,test}.json``: items
    ``{vid, ann_title, ann_caption, raw_title, tag, category}`` from the small sample) and a
    ``VIDEOS_DIR`` directory of ``<vid>.mp4``;
  * :data:`SUBSTITUTIONS` (ALWIG -> random in the evaluation commands, see there).
- ``make ...`` lines are not run (:data:`NOT_RUN` says why); the set of such lines must be exactly
  :data:`NOT_RUN`'s keys.
- :data:`KNOWN_FAILING` cases are strict xfails for bugs fixed on other branches (issue #16); remove
  an entry when its fix is merged (strict: the test fails once the case passes).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SIZES = {"train": 16, "validation": 8, "test": 8, "pretrain": 8}
TIMEOUT_S = 600

#: README lines that are not run here, and why. Must be exactly the README's ``make`` lines.
NOT_RUN = {
    "make eval MODEL=alwig": "CI's end-to-end run (environment, sample, ALWIG training: minutes, in the "
    "repository's own .venv and data/); its `create-bench eval` step is run below (with random)",
    "make test": "CI runs it; this test is part of it",
    "make eval MODEL=alwig DATA=data/create-210k": "ALWIG training on the built dataset (minutes); the "
    "`create-bench build` and `validate` lines before it are run",
}

#: (old, new, why): the only text substitutions made in README commands, in order.
SUBSTITUTIONS = [
    (
        "create-bench eval --model alwig ",
        "create-bench eval --model random ",
        "`eval --model alwig` loads the checkpoint that `make eval` trains first (`create-bench train "
        "alwig`, minutes); `random` runs the same eval code and writes the same layout",
    ),
    ("results/alwig+ext/", "results/random/", "where the substituted eval wrote its predictions"),
]

#: case id -> reason: README examples that fail today, fixed on other branches (strict xfail).
KNOWN_FAILING: dict[str, str] = {}


# ------------------------------------------------------------------------------------------------
# parsing README.md


def fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def command_lines(code: str) -> list[str]:
    """Shell command lines of a bash block: continuations joined, comments and blank lines dropped,
    whitespace collapsed."""
    joined = re.sub(r"\\\n", " ", code)
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            # quote only words with whitespace (README's "My Team"); brackets stay for drop_optional
            out.append(" ".join(shlex.quote(w) if any(c.isspace() for c in w) else w for w in words))
    return out


def drop_optional(line: str) -> str:
    """``[--on-error skip|fail]`` and other bracketed optional parts removed."""
    return " ".join(re.sub(r"\[[^\]]*\]", " ", line).split())


@dataclass(frozen=True)
class Case:
    id: str
    kind: str  # "python" (a statement), "loader" (next(iter(name))), "command"
    text: str  # the statement, the loader's name, or the command as it will run


def readme_cases(text: str) -> tuple[list[Case], list[str]]:
    """The cases README.md asks for, in order, and its ``make`` lines (not run)."""
    cases: list[Case] = []
    make_lines: list[str] = []
    for lang, code in fenced_blocks(text):
        if lang == "python":
            for node in ast.parse(code).body:
                stmt = ast.get_source_segment(code, node) or ""
                first = stmt.splitlines()[0].split("  #")[0].strip()
                cases.append(Case(f"python: {first}", "python", stmt))
                for name in _assigned_names(node):
                    if "loader" in name:
                        cases.append(Case(f"python: next(iter({name}))", "loader", name))
        elif lang == "bash":
            for line in command_lines(code):
                if line.startswith("make "):
                    make_lines.append(line)
                    continue
                assert line.startswith("create-bench "), (
                    f"README runs something this test does not know: {line}"
                )
                run = drop_optional(line)
                for old, new, _why in SUBSTITUTIONS:
                    run = run.replace(old, new)
                cases.append(Case(line, "command", run))
    return cases, make_lines


def _assigned_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    return []


CASES, MAKE_LINES = readme_cases(README.read_text("utf-8"))


# ------------------------------------------------------------------------------------------------
# the project directory and running everything once


def _official_release(project: Path) -> None:
    """create_210k_{train,val,test}.json (CREATE's official item format) and VIDEOS_DIR/<vid>.mp4,
    from the small sample: the inputs README's `create-bench build` line names."""
    from create_bench.data.shards import read_table

    ds = project / "data" / "create-sample"
    videos = project / "VIDEOS_DIR"
    videos.mkdir()
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        cols = ["vid", "titles", "captions", "raw_title", "tags", "category", "video"]
        items = []
        for row in read_table(ds, split, cols).to_pylist():
            (videos / f"{row['vid']}.mp4").write_bytes(row["video"]["bytes"])
            one = split == "train"
            items.append(
                {
                    "vid": row["vid"],
                    "ann_title": row["titles"][0] if one else row["titles"],
                    "ann_caption": row["captions"][0] if one else row["captions"],
                    "raw_title": row["raw_title"],
                    "tag": row["tags"],
                    "category": row["category"],
                }
            )
        (project / f"create_210k_{name}.json").write_text(json.dumps(items, ensure_ascii=False), "utf-8")


_RUN_PYTHON = r"""
import ast, json, sys, traceback
code, out = open(sys.argv[1], encoding="utf-8").read(), sys.argv[2]
ns = {"__name__": "__main__"}
results = {}
for i, node in enumerate(ast.parse(code).body):
    try:
        exec(compile(ast.Module([node], []), f"<README statement {i}>", "exec"), ns)
        results[str(i)] = None
    except BaseException:
        results[str(i)] = traceback.format_exc()
for name in json.loads(sys.argv[3]):
    try:
        batch = next(iter(ns[name]))
        results["loader:" + name] = None
    except BaseException:
        results["loader:" + name] = traceback.format_exc()
json.dump(results, open(out, "w"))
"""


def _env(project: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["HF_DATASETS_CACHE"] = str(project.parent / "hf-cache")
    return env


def _run_python(project: Path, cases: list[Case]) -> dict[str, str | None]:
    code = "\n".join(c.text for c in cases if c.kind == "python")
    loaders = [c.text for c in cases if c.kind == "loader"]
    src, out, runner = (
        project.parent / "snippet.py",
        project.parent / "snippet.json",
        project.parent / "run.py",
    )
    src.write_text(code, "utf-8")
    runner.write_text(_RUN_PYTHON, "utf-8")
    proc = subprocess.run(
        [sys.executable, str(runner), str(src), str(out), json.dumps(loaders)],
        cwd=project, env=_env(project), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    if not out.is_file():
        return {c.id: f"the snippet runner died: {proc.stderr[-3000:]}" for c in cases}
    raw = json.loads(out.read_text())
    stmts = [c for c in cases if c.kind == "python"]
    got = {c.id: raw[str(i)] for i, c in enumerate(stmts)}
    got.update({c.id: raw[f"loader:{c.text}"] for c in cases if c.kind == "loader"})
    return got


def _run_command(project: Path, case: Case) -> str | None:
    args = shlex.split(case.text)
    proc = subprocess.run(
        [sys.executable, "-m", "create_bench", *args[1:]],
        cwd=project, env=_env(project), capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    if proc.returncode == 0:
        return None
    return f"`{case.text}` exited {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Case id -> None (passed) or the failure, for every case, run once in README order."""
    from create_bench.synthetic.sample import generate_sample

    project = tmp_path_factory.mktemp("readme") / "project"
    generate_sample(project / "data" / "create-sample", sizes=SIZES, seed=0, workers=1)
    _official_release(project)
    results: dict[str, str | None] = {}
    i = 0
    while i < len(CASES):  # consecutive python cases (one block) run in one interpreter
        if CASES[i].kind == "command":
            results[CASES[i].id] = _run_command(project, CASES[i])
            i += 1
            continue
        j = i
        while j < len(CASES) and CASES[j].kind != "command":
            j += 1
        results.update(_run_python(project, CASES[i:j]))
        i = j
    return results


def _param(case: Case):
    marks = []
    if case.id in KNOWN_FAILING:
        marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_FAILING[case.id]))
    return pytest.param(case, id=case.id, marks=marks)


# ------------------------------------------------------------------------------------------------
# tests


@pytest.mark.slow
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_readme_example(case: Case, outcomes: dict[str, str | None]) -> None:
    failure = outcomes[case.id]
    assert failure is None, f"README example failed: {case.id}\n{failure}"


def test_every_readme_line_is_run_or_excused() -> None:
    """A new README command cannot escape: `make` lines must be exactly NOT_RUN's keys, every known
    failure and substitution must still name something in README."""
    assert sorted(MAKE_LINES) == sorted(NOT_RUN), "update NOT_RUN (with the reason) for README's make lines"
    ids = {c.id for c in CASES}
    assert set(KNOWN_FAILING) <= ids, (
        f"KNOWN_FAILING names cases README no longer has: {set(KNOWN_FAILING) - ids}"
    )
    commands = [c.id for c in CASES if c.kind == "command"]
    for old, _new, _why in SUBSTITUTIONS:
        assert any(old in c for c in commands), f"substitution {old!r} matches no README command"
    assert any(c.startswith("create-bench build ") for c in commands)
    assert any(c.kind == "python" for c in CASES) and any(c.kind == "loader" for c in CASES)


def test_parser() -> None:
    code = "create-bench build --a x.json \\\n    [y.json] --out d [--on-error skip|fail]   # note\n\nmake test\n"
    assert command_lines(code) == [
        "create-bench build --a x.json [y.json] --out d [--on-error skip|fail]",
        "make test",
    ]
    assert drop_optional(command_lines(code)[0]) == "create-bench build --a x.json --out d"


def test_readme_category_counts() -> None:
    """README states CREATE-210K's and CREATE-sample's numbers of categories correctly."""
    from create_bench.data.importer import NUM_CREATE_CATEGORIES
    from create_bench.synthetic.text import CATEGORIES

    text = README.read_text("utf-8")
    m = re.search(r"(\d+) categories, not CREATE-210K's (\d+)", text)
    assert m, "README should say how many categories CREATE-sample has, beside CREATE-210K's"
    assert (int(m.group(1)), int(m.group(2))) == (len(CATEGORIES), NUM_CREATE_CATEGORIES)
    assert f"{NUM_CREATE_CATEGORIES} categories" in text

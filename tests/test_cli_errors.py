"""What a new user sees when something goes wrong (issue #16): one line per error, naming the class,
file or field, never a raw traceback unless ``--debug``; plain model classes and ``module:Class``
specs; progress output; help texts; ``--data`` everywhere a dataset is read."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import pytest
from harness_util import text_dataset

import create_bench.commands.validate as validate_cmd
from create_bench import progress
from create_bench.cli import build_parser, main

PLAIN_MODEL = """
class PlainModel:
    '''Not a BaseModel: only ``generate``, metadata as a dict, no setup().'''

    meta = {"name": "plain", "inputs": "none"}

    def generate(self, batch, kind="title"):
        return [t.split(" ")[0] or "空" for t in batch["raw_title"]]
"""

NOTHING_MODEL = """
class Nothing:
    def encode_videos(self, batch):  # half of retrieval only: still no task
        return None
"""

TYPO_MODEL = """
from create_bench.models.base import ModelMeta


class Typo:
    meta = ModelMeta(name="typo", input="none")

    def generate(self, batch, kind="title"):
        return ["x"] * len(batch["vid"])
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_dataset(tmp_path_factory.mktemp("cli") / "ds", n_train=4, n_val=2, n_test=6)


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single stderr line of an error (progress lines, if any, come before it)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    return lines[0]


def _eval(model: str, data: Path, tmp_path: Path, *extra: str) -> int:
    return main(
        ["--no-progress", "eval", "--model", model, "--data", str(data), "--bootstrap", "0", "--no-report",
         "--results-dir", str(tmp_path / "results"), *extra]
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Models: plain classes, module:Class, a class with no protocol method, ModelMeta typos


def test_plain_class_without_basemodel_runs(small: Path, tmp_path: Path) -> None:
    f = tmp_path / "plain.py"
    f.write_text(PLAIN_MODEL, "utf-8")
    out = tmp_path / "plain.json"
    assert _eval(f"{f}:PlainModel", small, tmp_path, "--out", str(out)) == 0
    results = json.loads(out.read_text("utf-8"))
    assert results["model"]["name"] == "plain"
    assert set(results["scores"]) == {"title", "caption"}


def test_class_with_no_protocol_method(small: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "nothing.py"
    f.write_text(NOTHING_MODEL, "utf-8")
    assert _eval(f"{f}:Nothing", small, tmp_path) == 1
    line = _err_line(capsys)
    assert line.startswith("create-bench eval: error: ")
    assert "Nothing" in line and "encode_texts" in line and "generate" in line
    assert "it has encode_videos" in line


def test_module_class_spec_from_current_directory(small: Path, tmp_path: Path, monkeypatch) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "cb_user_model_16.py").write_text(PLAIN_MODEL, "utf-8")
    monkeypatch.chdir(code)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(code))])
    monkeypatch.delitem(sys.modules, "cb_user_model_16", raising=False)
    out = tmp_path / "mod.json"
    assert _eval("cb_user_model_16:PlainModel", small, tmp_path, "--out", str(out)) == 0
    assert json.loads(out.read_text("utf-8"))["model"]["name"] == "plain"
    sys.modules.pop("cb_user_model_16", None)


def test_unknown_module_spec_lists_accepted_forms(small: Path, tmp_path: Path, capsys) -> None:
    assert _eval("no_such_module_zz:MyModel", small, tmp_path) == 1
    line = _err_line(capsys)
    assert "'no_such_module_zz'" in line
    assert "path/to/file.py:Class" in line and "package.module:Class" in line


def test_modelmeta_field_typo(small: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "typo.py"
    f.write_text(TYPO_MODEL, "utf-8")
    assert _eval(f"{f}:Typo", small, tmp_path) == 2  # ConfigError keeps its exit code
    line = _err_line(capsys)
    assert "ModelMeta has no field 'input'" in line and "did you mean 'inputs'?" in line


def test_user_file_that_fails_to_import_is_named(small: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "broken.py"
    f.write_text("import numpy\nx = undefined_name + 1\n", "utf-8")
    assert _eval(f"{f}:Broken", small, tmp_path) == 1
    line = _err_line(capsys)
    assert f"cannot import {f}: NameError:" in line and "undefined_name" in line


# ----------------------------------------------------------------------------------------------
# eval --out, --tasks


def test_eval_out_directory_refused_before_the_model_runs(small: Path, tmp_path: Path, capsys) -> None:
    f = tmp_path / "plain.py"
    f.write_text(PLAIN_MODEL + "\nopen(__file__ + '.imported', 'w').close()\n", "utf-8")
    outdir = tmp_path / "somewhere"
    outdir.mkdir()
    assert _eval(f"{f}:PlainModel", small, tmp_path, "--out", str(outdir)) == 2
    line = _err_line(capsys)
    assert f"--out {outdir} is a directory" in line
    assert not Path(str(f) + ".imported").exists()  # refused before the model was even imported
    assert not (tmp_path / "results").exists() and list(outdir.iterdir()) == []


def test_eval_out_without_json_suffix(small: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "res"
    assert _eval("raw-title", small, tmp_path, "--out", str(out)) == 2
    line = _err_line(capsys)
    assert "must end in .json" in line and f"{out}.json" in line
    assert not out.exists()


def test_task_typo_suggests_each_task_once(small: Path, tmp_path: Path, capsys) -> None:
    assert _eval("raw-title", small, tmp_path, "--tasks", "retrieval,titel") == 2
    line = _err_line(capsys)
    assert "unknown task 'titel'; did you mean 'title'?" in line
    assert line.count("'title'") == 1


# ----------------------------------------------------------------------------------------------
# Data errors


def test_annotation_file_holding_an_object(mini_release, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "ann" / "create_210k_test.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"vid": "test000", "ann_title": "标题", "category": 1}), "utf-8")
    rc = main(["build", "--annotations", str(bad), "--videos", str(mini_release["videos"]),
               "--out", str(tmp_path / "ds")])  # fmt: skip
    assert rc == 1
    line = _err_line(capsys)
    assert "must hold a JSON list of items, got a JSON object" in line
    assert str(bad) in line and "'vid'" in line
    assert "item must be an object" not in line


def test_build_shows_progress(mini_release, tmp_path: Path, capsys) -> None:
    argv = ["build", "--annotations", str(mini_release["test"]), "--videos", str(mini_release["videos"]),
            "--out", str(tmp_path / "ds"), "--workers", "1"]  # fmt: skip
    assert main(argv) == 0
    assert "build: probed 4/4 videos (100%" in capsys.readouterr().err
    assert main(["--no-progress", *argv[:-4], "--out", str(tmp_path / "ds2"), "--workers", "1"]) == 0
    assert "build: probed" not in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Unexpected exceptions: one line, exit 1; --debug shows the traceback


def test_os_error_is_one_line_naming_the_file(mini_release, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-categories.txt"
    argv = ["build", "--annotations", str(mini_release["test"]), "--videos", str(mini_release["videos"]),
            "--categories", str(missing), "--out", str(tmp_path / "ds")]  # fmt: skip
    assert main(argv) == 1
    line = _err_line(capsys)
    assert line == (
        f"create-bench build: error: FileNotFoundError: No such file or directory: {missing} "
        "(run with --debug for the traceback)"
    )
    assert main(["--debug", *argv]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "FileNotFoundError" in err
    assert err.strip().splitlines()[-1].startswith("create-bench build: error: FileNotFoundError")


def test_unexpected_exception_from_any_command(monkeypatch, tmp_path: Path, capsys) -> None:
    def boom(args: argparse.Namespace) -> int:
        raise ValueError("bad value\nover two lines")

    monkeypatch.setattr(validate_cmd, "run", boom)
    assert main(["validate", str(tmp_path)]) == 1
    line = _err_line(capsys)
    assert line == (
        "create-bench validate: error: ValueError: bad value over two lines (run with --debug for the traceback)"
    )
    for argv in (["--debug", "validate", str(tmp_path)], ["validate", str(tmp_path), "--debug"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "Traceback" in err and 'raise ValueError("bad value' in err


def test_create_bench_errors_keep_their_exit_codes(tmp_path: Path, capsys) -> None:
    assert main(["validate", "--data", str(tmp_path / "none")]) == 1  # ManifestError/DataError
    line = _err_line(capsys)
    assert line.startswith("create-bench validate: error: ") and "--debug" not in line


# ----------------------------------------------------------------------------------------------
# --data everywhere a dataset is read


def test_validate_data_option_equals_positional(small: Path, tmp_path: Path, capsys) -> None:
    assert main(["validate", str(small)]) == 0
    positional = capsys.readouterr().out
    assert main(["validate", "--data", str(small)]) == 0
    assert capsys.readouterr().out == positional and positional.startswith("OK synthetic-text")
    assert main(["validate", str(small), "--data", str(small)]) == 0  # both, the same directory
    assert main(["validate", str(small), "--data", str(tmp_path)]) == 2
    assert "two different datasets" in _err_line(capsys)
    assert main(["validate"]) == 2
    assert "use --data DIR" in _err_line(capsys)


def test_stats_accepts_data_option_and_shows_progress(small: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "card"
    assert main(["stats", "--data", str(small), "--out", str(out), "--no-plots", "--no-pos"]) == 0
    captured = capsys.readouterr()
    assert (out / "stats.json").is_file() and "synthetic-text" in captured.out
    # stderr is not a terminal here: plain lines, the last one per split complete
    assert "stats: test 6/6 videos (100%" in captured.err
    assert main(["--no-progress", "stats", str(small), "--out", str(out), "--no-plots", "--no-pos"]) == 0
    assert "stats:" not in capsys.readouterr().err


def test_every_dataset_reading_command_takes_data() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("eval", "score", "stats", "validate", "extract", "train", "submit"):
        assert "--data" in sub.choices[name]._option_string_actions, name


# ----------------------------------------------------------------------------------------------
# Help


def _parsers(parser: argparse.ArgumentParser, name: str = "create-bench"):
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def test_every_command_has_a_description_and_every_option_help() -> None:
    seen = 0
    for name, parser in _parsers(build_parser()):
        assert parser.description and len(parser.description) > 30, name
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings or action.dest}"
            seen += 1
    assert seen > 100


def test_help_states_defaults() -> None:
    parsers = dict(_parsers(build_parser()))
    build_help = parsers["create-bench build"].format_help()
    assert "(default: fail)" in " ".join(build_help.split())
    eval_help = " ".join(parsers["create-bench eval"].format_help().split())
    assert "(default: 0)" in eval_help  # --seed: a default of 0 is stated too
    assert "pretrain-3m" in build_help and "'pretrain'" in " ".join(build_help.split())


def test_top_level_help(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("sample", "build", "validate", "stats", "eval", "score", "submit"):
        assert f"\n  {command} " in out, command
    assert "--debug" in out and "example:" in out and "create-bench eval --model" in out
    assert "Sub-commands live in" not in out  # not the module docstring


# ----------------------------------------------------------------------------------------------
# The progress helper


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_plain_lines_every_tenth() -> None:
    out = io.StringIO()
    items = list(progress.track(range(20), desc="build: probed", unit="videos", enabled=True, stream=out,
                                min_gap=0.0))  # fmt: skip
    assert items == list(range(20))
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # one per 10%, the last one complete
    assert lines[0].startswith("build: probed 2/20 videos (10%, ") and "eta" in lines[0]
    assert lines[-1].startswith("build: probed 20/20 videos (100%, ") and "eta" not in lines[-1]
    assert "\r" not in out.getvalue()


def test_progress_min_gap_keeps_only_the_last_line() -> None:
    out = io.StringIO()
    with progress.Progress("stats: test", 1000, unit="videos", enabled=True, stream=out, min_gap=3600) as p:
        for _ in range(1000):
            p.update()
    assert out.getvalue().splitlines() == [out.getvalue().strip()]
    assert out.getvalue().startswith("stats: test 1000/1000 videos (100%")


def test_progress_unknown_total_and_notes() -> None:
    out = io.StringIO()
    with progress.Progress("score:", None, unit="steps", enabled=True, stream=out, interval=0) as p:
        p.update(note="read references")
        p.update(note="bootstrap")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("score: 1 steps (") and lines[0].endswith(": read references")
    assert lines[-1].endswith(": bootstrap") and len(lines) == 2


def test_progress_disabled_and_process_default() -> None:
    out = io.StringIO()
    assert list(progress.track(range(5), desc="x", enabled=False, stream=out, min_gap=0)) == list(range(5))
    assert out.getvalue() == ""
    previous = progress.configure(False)
    try:
        list(progress.track(range(5), desc="x", stream=out, min_gap=0))
        assert out.getvalue() == ""  # the library is quiet by default
        progress.configure(True)
        list(progress.track(range(5), desc="x", stream=out, min_gap=0))
        assert "x 5/5 items (100%" in out.getvalue()
    finally:
        progress.configure(previous)


def test_progress_bar_on_a_terminal() -> None:
    out = _Tty()
    list(progress.track(range(7), desc="sample: rendered", unit="videos", enabled=True, stream=out))
    text = out.getvalue()
    assert "\r" in text and "sample: rendered" in text and "7/7" in text  # a tqdm bar, not lines
    assert "(100%" not in text

"""The evaluation harness end to end: baselines and a user's model file on a tiny dataset, outputs
re-scored by ``create-bench score``, model errors at the boundary, interrupted runs, the cache, the
report."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness_util import text_dataset

import create_bench.report as report
from create_bench.cli import main
from create_bench.errors import BackendUnavailable, ModelError
from create_bench.models.base import BaseModel, ModelMeta
from create_bench.runner import EvalConfig, evaluate, output_paths, summary_line
from create_bench.scoring import ScoringOptions

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GROUPS = ("t2v_caption", "v2t_caption", "t2v_title", "v2t_title", "title", "caption")


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Metadata-only models never decode: a dataset with placeholder videos is enough (and fast)."""
    return text_dataset(tmp_path_factory.mktemp("small") / "ds", n_train=12, n_test=10)


def _dataset_name(data: Path) -> str:
    return json.loads((data / "manifest.json").read_text("utf-8"))["name"]


# ----------------------------------------------------------------------------------------------
# End to end on the tiny CREATE-sample


@pytest.mark.slow
@pytest.mark.parametrize("name", ["random", "raw-title", "nearest-neighbour"])
def test_baseline_end_to_end(
    name: str, tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from create_bench.results import load_results

    rc = main(
        [
            "eval",
            "--model",
            name,
            "--data",
            str(tiny_dataset),
            "--results-dir",
            str(tmp_path),
            "--bootstrap",
            "50",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    stem = tmp_path / name / f"{_dataset_name(tiny_dataset)}-test"
    results_path, pred_dir = stem.with_suffix(".json"), stem
    results = load_results(results_path)  # validates against the results schema
    assert set(GROUPS) <= set(results["scores"])
    for group in GROUPS[:4]:
        s = results["scores"][group]
        assert 0 <= s["R@1"] <= s["R@5"] <= s["R@10"] <= 100 and s["MdR"] >= 1
    assert results["model"]["name"] == name
    sig = results["signature"]
    assert "split:test" in sig and "ties:expected" in sig and "tok:jieba" in sig
    if name == "nearest-neighbour":  # frame models carry the frame policy and decoder
        assert "frames:uniform-center@8/v1" in sig and "decode:decord-0.6.0" in sig
    else:  # metadata-only baselines decode nothing, and say so by omitting the fields
        assert "frames:" not in sig
    # The final summary line: main scores and the signature.
    last = out.strip().splitlines()[-1]
    assert (
        last.startswith(f"{name} |") and "t2v_caption R@1" in last and "caption CIDEr" in last and sig in last
    )

    # Report: Markdown with the paper-style tables and the signature, and real PNG plots.
    md = stem.with_name(stem.name + ".md").read_text("utf-8")
    assert "## Retrieval" in md and "## Generation" in md and "## Per category" in md and sig in md
    figs = stem.with_name(stem.name + "-figures")
    for png in ("ranks.png", "recall_at_k.png", "per_category.png"):
        assert (figs / png).read_bytes()[:8] == PNG_MAGIC
        assert f"{figs.name}/{png}" in md

    # The predictions directory is the exchange format: `create-bench score` re-scores it to the same numbers.
    assert (pred_dir / "generations.jsonl").is_file() and (pred_dir / "video_embeddings.npy").is_file()
    rescored = tmp_path / "rescored.json"
    rc = main(
        ["score", "--predictions", str(pred_dir), "--data", str(tiny_dataset), "--split", "test",
         "--bootstrap", "50", "--out", str(rescored)]
    )  # fmt: skip
    assert rc == 0
    again = json.loads(rescored.read_text("utf-8"))
    for group in GROUPS:
        assert again["scores"][group] == pytest.approx(results["scores"][group], rel=1e-12, abs=1e-12)
        assert again["ci"][group] == results["ci"][group]  # same resamples, same numbers
    assert again["signature"] == sig

    # The plots' ranks come from the same predictions: their summaries equal the scored numbers.
    stats = report.retrieval_rank_stats(pred_dir, tiny_dataset, "test")
    for group in GROUPS[:4]:
        assert stats[group].summary() == pytest.approx(results["scores"][group], rel=1e-9)


USER_MODEL = '''
import numpy as np
from create_bench.models.base import BaseModel, ModelMeta


class MyModel(BaseModel):
    """A user's model outside the package: mean colour for videos, character hashing for texts."""

    meta = ModelMeta(name="my-model", inputs="frames", frames="uniform-center@4", frame_size=(24, 32))

    def __init__(self, dim: int = 16):
        self.dim = dim
        self.seen_shapes = []

    def encode_videos(self, batch):
        frames = batch["frames"]
        assert str(frames.dtype) in ("torch.uint8", "uint8"), frames.dtype
        b, t, h, w, c = frames.shape
        assert (t, h, w, c) == (4, 24, 32, 3), frames.shape
        x = np.asarray(frames, dtype=np.float32).mean(axis=(1, 2, 3)) / 255.0
        out = np.zeros((b, self.dim), np.float32)
        out[:, :3] = x
        out[:, 3] = 1.0
        return out

    def encode_texts(self, texts):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for ch in t:
                out[i, ord(ch) % self.dim] += 1.0
        return out + 1e-3

    def generate(self, batch, kind="title"):
        return ["一个视频" if kind == "caption" else "好看的视频" for _ in batch["vid"]]
'''


@pytest.mark.slow
def test_user_model_file(tiny_dataset: Path, tmp_path: Path) -> None:
    f = tmp_path / "my_model.py"
    f.write_text(USER_MODEL, "utf-8")
    args = tmp_path / "args.yaml"
    args.write_text("dim: 8\n", "utf-8")
    out = tmp_path / "out" / "mine.json"
    rc = main(
        ["eval", "--model", f"{f}:MyModel", "--model-args", str(args), "--data", str(tiny_dataset),
         "--out", str(out), "--batch-size", "5", "--bootstrap", "0", "--results-dir", str(tmp_path / "r")]
    )  # fmt: skip
    assert rc == 0
    results = json.loads(out.read_text("utf-8"))
    assert results["model"]["name"] == "my-model" and results["model"]["args"] == {"dim": 8}
    assert set(GROUPS) <= set(results["scores"])
    sig = results["signature"]
    assert "uniform-center@4" in sig
    assert (tmp_path / "out" / "mine").is_dir() and (tmp_path / "out" / "mine.md").is_file()


# ----------------------------------------------------------------------------------------------
# Model errors at the boundary


class Good(BaseModel):
    meta = ModelMeta(name="good", inputs="none")
    calls = 0

    def encode_videos(self, batch: dict[str, Any]) -> Any:
        type(self).calls += 1
        return np.stack([_vec(v) for v in batch["vid"]])

    def encode_texts(self, texts: list[str]) -> Any:
        type(self).calls += 1
        return np.stack([_vec(t) for t in texts])

    def generate(self, batch: dict[str, Any], kind: str = "title") -> Any:
        type(self).calls += 1
        return [f"{kind}{i}" for i in range(len(batch["vid"]))]


def _vec(key: str, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(abs(hash(key)) % 2**32).standard_normal(dim).astype(np.float32)


def _bad(method: str, fn: Any) -> BaseModel:
    cls = type("Bad", (Good,), {"meta": ModelMeta(name="bad-model", inputs="none"), method: fn})
    return cls()


BAD_CASES = [
    (
        "encode_videos",
        lambda self, b: np.ones(len(b["vid"]), np.float32),
        "returned shape \\(4,\\); expected 2-D",
    ),
    (
        "encode_videos",
        lambda self, b: np.ones((len(b["vid"]) - 1, 8), np.float32),
        "returned 3 rows for 4 inputs",
    ),
    (
        "encode_videos",
        lambda self, b: np.full((len(b["vid"]), 8), np.nan, np.float32),
        "NaN or infinite values for 4",
    ),
    (
        "encode_texts",
        lambda self, t: np.full((len(t), 8), np.inf, np.float32),
        "encode_texts returned NaN or infinite",
    ),
    ("encode_videos", lambda self, b: np.ones((len(b["vid"]), 8), np.int64), "dtype int64; expected a float"),
    (
        "encode_texts",
        lambda self, t: np.ones((len(t), 5), np.float32),
        "dimension 5, but earlier embeddings have 8",
    ),
    ("encode_videos", lambda self, b: {v: _vec(v) for v in b["vid"][1:]}, "missing: 'te00000'"),
    ("generate", lambda self, b, kind="title": {v: "x" for v in [*b["vid"], "zzz"]}, "extra: 'zzz'"),
    (
        "generate",
        lambda self, b, kind="title": [None] * len(b["vid"]),
        "non-string NoneType None for vid 'te00000'",
    ),
    ("generate", lambda self, b, kind="title": [1] * len(b["vid"]), "non-string int 1 for vid"),
    ("generate", lambda self, b, kind="title": [" "] * len(b["vid"]), "empty text for vid 'te00000'"),
    ("generate", lambda self, b, kind="title": "one string", "returned str; expected a list of str"),
    ("generate", lambda self, b, kind="title": ["a"], "returned 1 texts for 4 videos"),
]


@pytest.mark.parametrize(("method", "fn", "pattern"), BAD_CASES)
def test_bad_model_outputs(small_text: Path, tmp_path: Path, method: str, fn: Any, pattern: str) -> None:
    cfg = EvalConfig(data_dir=small_text, results_dir=tmp_path, batch_size=4, progress=False, report=False)
    with pytest.raises(ModelError, match="model 'bad-model': .*" + pattern):
        evaluate(_bad(method, fn), cfg)
    results_path, pred_dir = output_paths(cfg, "bad-model", _dataset_name(small_text))
    assert not results_path.exists() and not pred_dir.exists()


def test_model_error_via_cli_names_model(
    small_text: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    f = tmp_path / "nan_model.py"
    f.write_text(
        "import numpy as np\nfrom create_bench.models.base import BaseModel, ModelMeta\n"
        "class NanModel(BaseModel):\n    meta = ModelMeta(name='nan-model', inputs='none')\n"
        "    def encode_videos(self, b):\n        return np.full((len(b['vid']), 4), np.nan, np.float32)\n"
        "    def encode_texts(self, t):\n        return np.ones((len(t), 4), np.float32)\n",
        "utf-8",
    )
    rc = main(["eval", "--model", f"{f}:NanModel", "--data", str(small_text), "--results-dir", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert "model 'nan-model'" in err and "NaN" in err


# ----------------------------------------------------------------------------------------------
# Interrupted runs and the cache


class Crashing(Good):
    meta = ModelMeta(name="good", inputs="none")  # same name and paths as Good

    def __init__(self, exc: BaseException, after: int = 1):
        self.exc, self.after, self.n = exc, after, 0

    def encode_videos(self, batch: dict[str, Any]) -> Any:
        self.n += 1
        if self.n > self.after:
            raise self.exc
        return super().encode_videos(batch)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_interrupted_run_leaves_no_broken_files(small_text: Path, tmp_path: Path, exc: BaseException) -> None:
    cfg = EvalConfig(
        data_dir=small_text,
        results_dir=tmp_path,
        batch_size=4,
        progress=False,
        scoring=ScoringOptions(bootstrap=0),
    )
    # First a fresh directory: nothing is written at all.
    with pytest.raises(type(exc)):
        evaluate(Crashing(exc), cfg)
    results_path, pred_dir = output_paths(cfg, "good", _dataset_name(small_text))
    assert not results_path.exists() and not pred_dir.exists()
    # Then over a finished run: its files stay exactly as they were, and no temporary file is left.
    done = evaluate(Good(), cfg)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(type(exc)):
        # Crashing is another class of the same name: --overwrite gets it past the owner check.
        evaluate(Crashing(exc), EvalConfig(**{**cfg.__dict__, "no_cache": True, "overwrite": True}))
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before
    assert json.loads(done.results_path.read_text("utf-8"))["scores"]


def test_crash_while_writing_results_keeps_old_file(
    small_text: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    cfg = EvalConfig(
        data_dir=small_text,
        results_dir=tmp_path,
        batch_size=4,
        progress=False,
        scoring=ScoringOptions(bootstrap=0),
        report=False,
    )
    done = evaluate(Good(), cfg)
    old = done.results_path.read_bytes()
    import create_bench.fsutil as fsutil

    real_replace = fsutil.os.replace

    def failing_replace(src: Any, dst: Any) -> None:
        if str(dst).endswith(".json") and Path(dst) == done.results_path:
            raise OSError("disk full")
        real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        evaluate(Good(), EvalConfig(**{**cfg.__dict__, "no_cache": True}))
    assert done.results_path.read_bytes() == old
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]


def test_cache_reuse(small_text: Path, tmp_path: Path) -> None:
    cfg = EvalConfig(
        data_dir=small_text,
        results_dir=tmp_path,
        batch_size=4,
        progress=False,
        scoring=ScoringOptions(bootstrap=0),
        report=False,
    )
    Good.calls = 0
    first = evaluate(Good(), cfg)
    n = Good.calls
    assert n > 0 and not first.cached
    second = evaluate(Good(), cfg)
    assert second.cached and Good.calls == n  # the model was not called again
    assert second.results["scores"] == first.results["scores"]
    third = evaluate(Good(), cfg, model_args={"changed": 1})  # other options: other predictions
    assert not third.cached and Good.calls > n
    n = Good.calls
    fourth = evaluate(Good(), EvalConfig(**{**cfg.__dict__, "no_cache": True}))
    assert not fourth.cached and Good.calls > n
    fifth = evaluate(Good(), EvalConfig(**{**cfg.__dict__, "tasks": ("retrieval",)}))  # other tasks
    assert not fifth.cached and set(fifth.results["scores"]) == set(GROUPS[:4])


def test_model_source_hash_covers_a_model_package(tmp_path: Path, monkeypatch: Any) -> None:
    """Editing any module of a model package (not only the file defining the class) changes the
    cache key's source hash; a model in a single file hashes that file only."""
    import importlib
    import sys

    from create_bench.runner_cache import _model_source_hash

    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from create_bench.models.base import BaseModel\nfrom mypkg.net import WIDTH\n\n"
        "class PkgModel(BaseModel):\n    pass\n",
        "utf-8",
    )
    (pkg / "net.py").write_text("WIDTH = 1\n", "utf-8")
    (tmp_path / "single.py").write_text(
        "from create_bench.models.base import BaseModel\n\nclass One(BaseModel):\n    pass\n", "utf-8"
    )
    (tmp_path / "other.py").write_text("X = 1\n", "utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("mypkg", "mypkg.net", "single"):
        sys.modules.pop(name, None)
    pkg_model = importlib.import_module("mypkg").PkgModel()
    one = importlib.import_module("single").One()
    before, before_one = _model_source_hash(pkg_model), _model_source_hash(one)
    assert before and before_one
    (pkg / "net.py").write_text("WIDTH = 2\n", "utf-8")  # a module beside the class's file
    (tmp_path / "other.py").write_text("X = 2\n", "utf-8")  # not part of the single-file model
    assert _model_source_hash(pkg_model) != before
    assert _model_source_hash(one) == before_one
    (tmp_path / "single.py").write_text(
        "from create_bench.models.base import BaseModel\n\nclass One(BaseModel):\n    x = 1\n", "utf-8"
    )
    assert _model_source_hash(one) != before_one


def test_tasks_the_model_lacks_are_skipped(small_text: Path, tmp_path: Path) -> None:
    class GenOnly(BaseModel):
        meta = ModelMeta(name="gen-only", inputs="none")

        def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
            return ["视频"] * len(batch["vid"])

    cfg = EvalConfig(
        data_dir=small_text,
        results_dir=tmp_path,
        progress=False,
        scoring=ScoringOptions(bootstrap=0),
        report=False,
    )
    out = evaluate(GenOnly(), cfg)
    assert out.tasks == ("title", "caption") and out.skipped_tasks == ("retrieval",)
    assert set(out.results["scores"]) == {"title", "caption"}
    with pytest.raises(ModelError, match="supports none of the requested tasks"):
        evaluate(GenOnly(), EvalConfig(**{**cfg.__dict__, "tasks": ("retrieval",)}))


def test_cuda_unavailable_is_a_clear_error(small_text: Path, tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")  # the error path only exists without one
    cfg = EvalConfig(data_dir=small_text, results_dir=tmp_path, device="cuda", progress=False)
    with pytest.raises(BackendUnavailable, match="no CUDA device"):
        evaluate(Good(), cfg)


def test_default_data_is_generated_when_missing(tmp_path: Path, monkeypatch: Any) -> None:
    import create_bench.synthetic.sample as sample

    made = []

    def fake_generate(out: Any, **kw: Any) -> Path:
        made.append(Path(out))
        return text_dataset(Path(out), n_train=6, n_test=5)

    monkeypatch.setattr(sample, "generate_sample", fake_generate)
    monkeypatch.chdir(tmp_path)
    rc = main(["eval", "--model", "random", "--bootstrap", "0", "--no-report"])
    assert rc == 0 and made == [Path("data/create-sample")]
    assert (tmp_path / "results" / "random" / "synthetic-text-test.json").is_file()
    rc = main(["eval", "--model", "random", "--data", str(tmp_path / "nowhere")])
    assert rc == 2  # a user's own missing dataset is an error, never silently generated


def test_summary_line() -> None:
    res = {
        "model": {"name": "m"},
        "dataset": {"name": "d", "split": "test"},
        "scores": {"t2v_caption": {"R@1": 12.345}, "caption": {"CIDEr": 50.0}},
        "signature": "create-bench:0.1.0|data:x",
    }
    assert (
        summary_line(res)
        == "m | d:test | t2v_caption R@1 12.3 | caption CIDEr 50.0 | create-bench:0.1.0|data:x"
    )


# ----------------------------------------------------------------------------------------------
# Report pieces


def test_plot_labels_never_render_boxes(monkeypatch: Any) -> None:
    assert report.plot_label("food", 3, None) == "food"
    assert report.plot_label("美食", 3, None) == "cat 3"
    font = report.cjk_font()
    if font is not None:  # e.g. fonts-wqy-microhei from `make setup`
        assert report.plot_label("美食", 3, font) == "美食"
        assert report.plot_label("\U00020000美食", 3, font) in ("\U00020000美食", "cat 3")
        assert report.plot_label("\U00020000美食", 3, font) == (
            "\U00020000美食" if report._font_has(font[1], "\U00020000") else "cat 3"
        )
    report.cjk_font.cache_clear()
    monkeypatch.setattr(report.shutil, "which", lambda name: None)  # no fontconfig at all
    assert report.cjk_font() is None
    report.cjk_font.cache_clear()


def test_chance_levels_match_exhaustive_permutations(tmp_path: Path) -> None:
    """V2T chance from the closed form equals the exact average over every ordering of a tiny gallery."""
    import itertools

    n, r, k = 6, 2, 2
    hits = [min(perm.index(0), perm.index(1)) < k for perm in itertools.permutations(range(n))]
    assert report._p_best_within(n, r, k) == pytest.approx(np.mean(hits))


def test_markdown_tables() -> None:
    res = {
        "model": {"name": "m", "version": "1", "args": {}},
        "dataset": {"name": "d", "split": "test", "fingerprint": "abc"},
        "scores": {
            "t2v_caption": {"R@1": 1.0, "R@5": 5.0, "R@10": 10.0, "MdR": 50.0, "MnR": 50.5},
            "caption": {
                "BLEU-1": 20.0,
                "BLEU-2": 10.0,
                "BLEU-3": 5.0,
                "BLEU-4": 2.5,
                "ROUGE-L": 22.0,
                "CIDEr": 7.34,
            },
        },
        "ci": {"t2v_caption": {"R@1": [0.5, 1.5]}},
        "signature": "create-bench:0.1.0|data:abc",
    }
    md = report.markdown(
        res, chance={"t2v_caption": {"R@1": 1.0, "R@5": 5.0, "R@10": 10.0, "MdR": 50.5, "MnR": 50.5}}
    )
    assert "| captions | T2V | 1.0 [0.5, 1.5] | 5.0 | 10.0 | 50.0 | 50.5 |" in md
    assert "| captions | T2V (chance) | 1.0 | 5.0 | 10.0 | 50.5 | 50.5 |" in md
    assert "| caption | 20.0 | 10.0 | 5.0 | 2.5 | 22.0 | 7.3 |" in md
    assert "create-bench:0.1.0|data:abc" in md


def test_layers() -> None:
    """Models never import tasks, metrics, the loader or the runner (layer 3 below layer 4)."""
    import create_bench.models.baselines as b

    tree = ast.parse(Path(b.__file__).read_text("utf-8"))
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    layer4 = ("create_bench.tasks", "create_bench.metrics", "create_bench.loader", "create_bench.runner")
    bad = [m for m in imported if m.startswith(layer4)]
    assert not bad


@pytest.mark.slow
def test_file_model_cache_survives_new_processes(small_text: Path, tmp_path: Path) -> None:
    """The cache key of a file.py:Class model is stable across processes (no per-process module names)."""
    import subprocess
    import sys

    f = tmp_path / "gen_model.py"
    f.write_text(
        "from create_bench.models.base import BaseModel, ModelMeta\n"
        "class GenModel(BaseModel):\n    meta = ModelMeta(name='gen-model', inputs='none')\n"
        "    def generate(self, batch, kind='title'):\n        return ['一个视频'] * len(batch['vid'])\n",
        "utf-8",
    )
    cmd = [sys.executable, "-m", "create_bench", "eval", "--model", f"{f}:GenModel", "--data", str(small_text),
           "--results-dir", str(tmp_path / "r"), "--bootstrap", "0", "--no-report"]  # fmt: skip
    first = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    second = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "(cached)" not in first and "(cached)" in second


def test_other_model_class_with_the_same_name_is_refused(small_text: Path, tmp_path: Path) -> None:
    from create_bench.errors import ConfigError

    cfg = EvalConfig(
        data_dir=small_text,
        results_dir=tmp_path,
        batch_size=4,
        progress=False,
        scoring=ScoringOptions(bootstrap=0),
        report=False,
    )
    first = evaluate(Good(), cfg)
    assert first.results["eval"]["model_class"].endswith(".Good")
    assert first.results["eval"]["data"] == str(small_text.resolve())
    before = first.results_path.read_bytes()
    other = type("Other", (Good,), {})  # another class, same meta.name
    with pytest.raises(ConfigError, match=r"made by \S+\.Good, not \S+\.Other.*--overwrite"):
        evaluate(other(), cfg)
    assert first.results_path.read_bytes() == before  # nothing was replaced
    evaluate(Good(), EvalConfig(**{**cfg.__dict__, "no_cache": True}))  # the same class may re-run
    replaced = evaluate(other(), EvalConfig(**{**cfg.__dict__, "overwrite": True}))
    assert replaced.results["eval"]["model_class"].endswith(".Other")
    assert json.loads(replaced.results_path.read_text("utf-8"))["eval"]["model_class"].endswith(".Other")

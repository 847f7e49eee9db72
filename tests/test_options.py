"""The options objects of issue #17: one ScoringOptions (commands, runner, leaderboard), one
LoaderOptions behind make_loader, ModelMeta.columns, and the worker pool's WorkerConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from harness_util import text_dataset

from create_bench.errors import ConfigError
from create_bench.models.base import BaseModel, ModelMeta
from create_bench.scoring import ScoringOptions, score_predictions


@pytest.fixture(scope="module")
def small_text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return text_dataset(tmp_path_factory.mktemp("opts") / "ds", n_train=4, n_test=6)


# ---------------------------------------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"tokeniser": "char"}, r"unknown scoring option 'tokeniser'; did you mean 'tokenizer'"),
        ({"bootstrap": -1}, "bootstrap must be a non-negative integer"),
        ({"ties": "random"}, "ties must be one of"),
        ({"protocol": "all"}, "protocol must be one of"),
        ({"metric_backend": "java"}, "metric backend must be one of"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_scoring_options_are_checked_once_by_name(kw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ScoringOptions.of(**kw)
    with pytest.raises(ConfigError, match=match):  # before any file is read
        score_predictions("no-such-predictions", "no-such-data", "test", **kw)


def test_overrides_apply_to_given_options() -> None:
    base = ScoringOptions(tokenizer="char", bootstrap=5)
    assert ScoringOptions.of(base) is base
    assert ScoringOptions.of(base, seed=3) == ScoringOptions(tokenizer="char", bootstrap=5, seed=3)


def test_every_scoring_command_builds_the_same_options() -> None:
    from create_bench.cli import build_parser

    parser = build_parser()
    common = ["--tokenizer", "char", "--ties", "optimistic", "--bootstrap", "7", "--seed", "2", "--meteor"]
    argvs = {
        "score": ["score", "--predictions", "p", "--data", "d", *common],
        "eval": ["eval", "--model", "random", *common],
        "submit": ["submit", "p", *common],
        "worker": ["leaderboard", "worker", "--db", "x.db", "--data", "d", *common],
    }
    from create_bench.commands._scoring import scoring_options

    want = ScoringOptions(tokenizer="char", ties="optimistic", bootstrap=7, seed=2, meteor=True)
    for name, argv in argvs.items():
        assert scoring_options(parser.parse_args(argv)) == want, name


def test_worker_config_round_trips_through_the_worker_command_line(tmp_path: Path) -> None:
    from create_bench.cli import build_parser
    from create_bench.commands.leaderboard import _configs
    from create_bench.leaderboard.submission import Limits
    from create_bench.leaderboard.supervisor import worker_argv
    from create_bench.leaderboard.worker import ScoringConfig, WorkerConfig

    config = WorkerConfig(
        storage_dir=tmp_path / "storage",
        scoring=ScoringConfig(tmp_path / "data", "validation", ScoringOptions(tokenizer="char", bootstrap=9)),
        lease_s=30.0,
        heartbeat_s=4.5,
        poll_s=0.25,
        scorer="tests/leaderboard_scorers.py:slow_score",
        limits=Limits(max_unpacked_bytes=123 << 20),
    )
    argv = worker_argv("sqlite:///x.db", config, parent_pid=42)
    assert argv[1:5] == ["-m", "create_bench", "leaderboard", "worker"]
    args = build_parser().parse_args(argv[3:])
    assert args.parent_pid == 42 and args.db == "sqlite:///x.db"
    _, _, back = _configs(args)
    assert back.scoring == config.scoring and back.storage_dir == config.storage_dir
    for name in ("lease_s", "heartbeat_s", "poll_s", "scorer"):
        assert getattr(back, name) == getattr(config, name), name
    assert back.limits.max_unpacked_bytes == config.limits.max_unpacked_bytes


# ---------------------------------------------------------------------------------------------- loader


def test_make_loader_rejects_unknown_keywords_with_a_hint(small_text: Path) -> None:
    from create_bench.loader import make_loader

    with pytest.raises(ConfigError, match=r"unknown loader option 'frame'; did you mean 'frames'"):
        make_loader(small_text, "test", frame="uniform-center@8")
    with pytest.raises(ConfigError, match="on_error must be"):
        make_loader(small_text, "test", on_error="ignore")


def test_make_loader_takes_options_keywords_and_dataloader_arguments(small_text: Path) -> None:
    from create_bench.loader import DEFAULT_SIZE, LoaderOptions, make_loader

    opts = LoaderOptions(size=16, columns="tags", mean=0.5, vids=["a"])
    assert opts.size == (16, 16) and opts.columns == ("tags",) and opts.mean == (0.5, 0.5, 0.5)
    assert opts.vids == frozenset({"a"}) and LoaderOptions().size == DEFAULT_SIZE
    loader = make_loader(small_text, "test", opts, batch_size=2, frames="uniform-center@4", pin_memory=False)
    cfg = loader.dataset.cfg
    assert cfg.frames == "uniform-center@4" and cfg.size == (16, 16) and cfg.batch_size == 2
    assert cfg.columns == ("tags",) and loader.pin_memory is False


# ---------------------------------------------------------------------------------------------- runner


class _Frames(BaseModel):
    meta = ModelMeta(name="frames-model", frame_size=(8, 8))


class _Geometry(BaseModel):
    meta = ModelMeta(name="geometry-model", frame_size=(8, 8), columns=("width", "height", "rotation"))


@pytest.mark.parametrize("model,extra", [(_Frames(), ()), (_Geometry(), ("width", "height", "rotation"))])
def test_runner_loads_only_the_columns_a_model_declares(
    model: BaseModel, extra: tuple, monkeypatch: Any, tmp_path: Path
) -> None:
    import create_bench.loader as loader
    from create_bench.runner import EvalConfig, _video_batches

    seen: dict[str, Any] = {}
    monkeypatch.setattr(loader, "make_loader", lambda *a, **kw: seen.update(kw) or iter(()))
    list(_video_batches(model, EvalConfig(data_dir=tmp_path), "uniform-center@8"))
    assert seen["columns"] == (*loader.DEFAULT_COLUMNS, *extra)


def test_metadata_models_get_declared_columns(small_text: Path) -> None:
    from create_bench.runner import EvalConfig, _video_batches

    class Meta(BaseModel):
        meta = ModelMeta(name="m", inputs="none", columns=("width",))

    batches = list(
        _video_batches(Meta(), EvalConfig(data_dir=small_text, batch_size=100), "uniform-center@8")
    )
    assert "width" in batches[0] and "height" not in batches[0]
    with pytest.raises(ConfigError, match="columns"):
        ModelMeta(name="x", columns="width")


def test_one_l2_normalisation() -> None:
    from create_bench.metrics.retrieval import l2_normalise

    x = np.array([[3.0, 4.0], [0.0, 0.0], [1e30, 1e30], [1e-30, 1e-30]], dtype=np.float32)
    out = l2_normalise(x)
    assert out.dtype == np.float32 and out[1].tolist() == [0.0, 0.0]
    np.testing.assert_allclose(
        out[[0, 2, 3]], [[0.6, 0.8], [2**-0.5, 2**-0.5], [2**-0.5, 2**-0.5]], rtol=1e-6
    )

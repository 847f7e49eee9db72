"""ALWIG training on a tiny real dataset: checkpoints, logs, feature cache, resume, CLI, harness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from alwig_util import small_cfg

from create_bench.models.alwig.bundle import ALWIG
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.scoring import ScoringOptions
from create_bench.training.alwig.batches import epoch_plan, text_choices
from create_bench.training.alwig.train import TrainOptions, train

TINY = dict(
    encoder="fixed",
    frames="uniform-center@4",
    num_frames=4,
    frame_size=(32, 32),
    hidden_size=32,
    num_heads=2,
    ffn_size=64,
    align_layers=1,
    text_layers=1,
    embed_dim=16,
    gpt_layers=1,
    gpt_heads=2,
    gpt_width=32,
    max_gen_len=16,
    max_text_len=24,
    dropout=0.0,
    max_tags=4,
    batch_size=8,
    epochs=2,
    pretrain_epochs=1,
    eval_every=1,
    encode_batch_size=8,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def tiny_train_cfg(**kw) -> ALWIGConfig:
    return small_cfg(**{**TINY, **kw})


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("alwig-cache")


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(ckpt / "model.safetensors"))


def test_epoch_plan_and_text_choices_are_seeded_and_cover_rows() -> None:
    cfg = tiny_train_cfg(batch_size=4)
    plan = epoch_plan(10, cfg, "finetune", 0, world_size=1)
    assert sorted(int(i) for b in plan for i in b) == list(range(10)) and [len(b) for b in plan] == [4, 4, 2]
    assert all((x == y).all() for x, y in zip(plan, epoch_plan(10, cfg, "finetune", 0, 1)))
    assert not all((x == y).all() for x, y in zip(plan, epoch_plan(10, cfg, "finetune", 1, 1)))
    # two ranks: every global batch splits evenly (the odd row of the last batch is dropped)
    two = epoch_plan(9, cfg, "finetune", 0, world_size=2)
    assert [len(b) for b in two] == [4, 4] and all(len(b) % 2 == 0 for b in two)


def test_train_writes_a_complete_checkpoint(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    out = tmp_path / "ck"
    summary = train(
        TrainOptions(tiny_dataset, out, tiny_train_cfg(), cache_dir=feature_cache, progress=False)
    )
    for f in ("config.json", "model.safetensors", "vocab.txt", "tags.txt", "log.jsonl"):
        assert (out / f).is_file(), f
    record = json.loads((out / "config.json").read_text())
    assert record["training"]["selected_on"] == "validation" and record["training"]["best_epoch"] in (1, 2)
    assert summary["best_epoch"] == record["training"]["best_epoch"]
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    steps = [r for r in lines if "loss" in r and "val" not in r]
    vals = [r for r in lines if "val" in r]
    assert steps and all({"loss", "align", "gen", "lr", "clips_per_s"} <= set(r) for r in steps)
    assert [v["epoch"] for v in vals] == [1, 2] and sum(v["best"] for v in vals) >= 1
    assert {"t2v_caption_R@1", "v2t_title_R@5", "gen_caption", "loss"} <= set(vals[0]["val"])
    # the checkpoint loads and runs on frames decoded by the loader
    bundle = ALWIG.load(out)
    assert bundle.cfg == tiny_train_cfg() and bundle.net.feature_dim == bundle.encoder.dim
    # seeded: the same run again gives the same weights
    again = tmp_path / "ck-again"
    train(TrainOptions(tiny_dataset, again, tiny_train_cfg(), cache_dir=feature_cache, progress=False))
    a, b = _weights(out), _weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_feature_cache_is_reused(
    tiny_dataset: Path, tmp_path: Path, feature_cache: Path, monkeypatch
) -> None:
    train(
        TrainOptions(
            tiny_dataset, tmp_path / "a", tiny_train_cfg(epochs=1), cache_dir=feature_cache, progress=False
        )
    )
    files = sorted(feature_cache.glob("*.safetensors"))
    assert len(files) >= 2  # train + validation

    import create_bench.training.alwig.features as T

    def boom(*a, **k):
        raise AssertionError("features recomputed although cached")

    monkeypatch.setattr(T, "compute_features", boom)
    train(
        TrainOptions(
            tiny_dataset, tmp_path / "b", tiny_train_cfg(epochs=1), cache_dir=feature_cache, progress=False
        )
    )
    # another frame size is another cache entry
    with pytest.raises(AssertionError, match="recomputed"):
        train(
            TrainOptions(
                tiny_dataset,
                tmp_path / "c",
                tiny_train_cfg(epochs=1, frame_size=(24, 24)),
                cache_dir=feature_cache,
                progress=False,
            )
        )


def test_resume_continues_exactly(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    cfg = tiny_train_cfg(epochs=3)
    full = tmp_path / "full"
    train(TrainOptions(tiny_dataset, full, cfg, cache_dir=feature_cache, progress=False))
    part = tmp_path / "part"
    res = train(
        TrainOptions(tiny_dataset, part, cfg, cache_dir=feature_cache, progress=False, interrupt_after=1)
    )
    assert res["interrupted"] and not (part / "config.json").exists()  # no half-finished checkpoint
    train(TrainOptions(tiny_dataset, part, cfg, cache_dir=feature_cache, progress=False, resume=True))
    a, b = _weights(full), _weights(part)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(Exception, match="different config"):
        train(
            TrainOptions(
                tiny_dataset,
                part,
                tiny_train_cfg(epochs=3, hidden_size=64),
                cache_dir=feature_cache,
                resume=True,
            )
        )


def test_pretrain_then_finetune(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    out = tmp_path / "pre"
    summary = train(
        TrainOptions(
            tiny_dataset,
            out,
            tiny_train_cfg(epochs=1),
            pretrain=True,
            cache_dir=feature_cache,
            progress=False,
        )
    )
    assert set(summary["phases"]) == {"pretrain", "finetune"}
    phases = {json.loads(x).get("phase") for x in (out / "log.jsonl").read_text().splitlines()}
    assert phases == {"pretrain", "finetune"}


def test_text_choices_pretrain_uses_raw_titles() -> None:
    from create_bench.training.alwig.features import SplitData

    data = SplitData(
        "p",
        ["a", "b"],
        torch.zeros(2, 1, 1),
        torch.ones(2, 1, dtype=torch.bool),
        [[], []],
        [[], []],
        [[], []],
        ["原标题A", "原标题B"],
    )
    assert text_choices(data, [1, 0], tiny_train_cfg(), "pretrain", 0) == {"title": ["原标题B", "原标题A"]}


def test_tag_dropout_is_seeded_and_drops_tags() -> None:
    from create_bench.training.alwig.features import SplitData

    tags = [[f"t{i}{j}" for j in range(6)] for i in range(20)]
    data = SplitData(
        "x",
        [str(i) for i in range(20)],
        torch.zeros(20, 1, 1),
        torch.ones(20, 1, dtype=torch.bool),
        tags,
        [["a"]] * 20,
        [["b"]] * 20,
        [""] * 20,
    )
    cfg = tiny_train_cfg(tag_dropout=0.5)
    a = text_choices(data, list(range(20)), cfg, "finetune", 3)
    assert a == text_choices(data, list(range(20)), cfg, "finetune", 3)
    kept = sum(len(t) for t in a["tags"])
    assert 30 <= kept <= 90 and all(set(t) <= set(tags[i]) for i, t in enumerate(a["tags"]))
    assert "tags" not in text_choices(data, list(range(20)), tiny_train_cfg(tag_dropout=0.0), "finetune", 3)


def test_cli_ablation_flags(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    from create_bench.cli import main

    out = tmp_path / "noalign"
    cfg = tmp_path / "tiny.yaml"
    import yaml

    cfg.write_text(yaml.safe_dump(tiny_train_cfg().to_dict()), encoding="utf-8")
    rc = main(
        [
            "train",
            "alwig",
            "--data",
            str(tiny_dataset),
            "--out",
            str(out),
            "--config",
            str(cfg),
            "--no-align",
            "--no-tags",
            "--epochs",
            "1",
            "--cache-dir",
            str(feature_cache),
            "--no-progress",
        ]
    )
    assert rc == 0
    saved = ALWIGConfig.from_dict(json.loads((out / "config.json").read_text())["config"])
    assert saved.use_align is False and saved.use_tags is False and saved.epochs == 1
    assert (
        main(
            [
                "train",
                "alwig",
                "--data",
                str(tiny_dataset),
                "--out",
                str(out),
                "--config",
                str(tmp_path / "nope.yaml"),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in {**TINY, "epochs": 1}.items()}),
        encoding="utf-8",
    )
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "create_bench", "train", "alwig", "--data", str(tiny_dataset), "--out", str(out),
        "--config", str(cfg), "--cache-dir", str(feature_cache), "--no-progress",
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "config.json").read_text())
    assert record["training"]["world_size"] == 2
    ALWIG.load(out)


@pytest.mark.slow
def test_checkpoint_evaluates_through_the_harness(
    tiny_dataset: Path, tmp_path: Path, feature_cache: Path
) -> None:
    from create_bench.models import load_model
    from create_bench.runner import EvalConfig, evaluate

    ck = tmp_path / "ck"
    train(TrainOptions(tiny_dataset, ck, tiny_train_cfg(epochs=1), cache_dir=feature_cache, progress=False))
    model = load_model("alwig", {"checkpoint": str(ck), "beam_size": 2})
    assert (
        model.meta.inputs == "frames"
        and model.meta.frame_size == (32, 32)
        and model.meta.frames == "uniform-center@4"
    )
    outcome = evaluate(
        model,
        EvalConfig(
            tiny_dataset,
            split="test",
            results_dir=tmp_path / "results",
            scoring=ScoringOptions(bootstrap=0),
            report=False,
            progress=False,
        ),
        model_args={"checkpoint": str(ck)},
    )
    scores = outcome.results["scores"]
    assert {"t2v_caption", "v2t_caption", "t2v_title", "v2t_title", "title", "caption"} <= set(scores)
    gens = [json.loads(x) for x in (outcome.predictions_dir / "generations.jsonl").read_text().splitlines()]
    assert len(gens) == 12 and all(g["title"] and g["caption"] for g in gens)

"""RCG training and evaluation end to end on the tiny generated sample (real videos and shards)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from create_bench.errors import ConfigError, DataError, OutputError
from create_bench.models.rcg.bundle import RCG
from create_bench.models.rcg.config import load_config
from create_bench.scoring import ScoringOptions
from create_bench.training.alwig.features import default_cache_dir, load_split
from create_bench.training.rcg.batches import KINDS, refs, retrieve_split
from create_bench.training.rcg.train import TrainOptions, train

FRAMES = {"frames": "uniform-center@4", "num_frames": 4, "frame_size": [32, 32], "encode_batch_size": 8}
TINY = dict(
    frame_config="sample",
    frame_overrides=FRAMES,
    d_model=16,
    num_heads=2,
    ffn_size=32,
    video_layers=1,
    text_layers=1,
    decoder_layers=1,
    embed_dim=16,
    max_text_len=24,
    dropout=0.0,
    k=2,
    batch_size=8,
    retriever_epochs=2,
    generator_epochs=2,
    eval_every=1,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("rcg-cache")


@pytest.fixture(scope="module")
def trained(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory, feature_cache: Path) -> Path:
    out = tmp_path_factory.mktemp("rcg") / "ck"
    train(
        TrainOptions(
            tiny_dataset, out, load_config("sample", **TINY), cache_dir=feature_cache, progress=False
        )
    )
    return out


def test_train_writes_a_complete_checkpoint(trained: Path, tiny_dataset: Path) -> None:
    assert {"config.json", "model.safetensors", "vocab.txt", "corpus.json", "log.jsonl"} <= {
        p.name for p in trained.iterdir()
    }
    record = json.loads((trained / "config.json").read_text())
    st = record["training"]["stages"]
    assert st["retriever"]["best_epoch"] in (1, 2) and st["generator"]["best_epoch"] in (1, 2)
    assert record["training"]["selected_on"] == "validation"
    bundle = RCG.load(trained)
    assert bundle.cfg.k == 2 and len(bundle.corpus["title"]) > 0
    log = [json.loads(x) for x in (trained / "log.jsonl").read_text().splitlines()]
    assert {r["stage"] for r in log} == {"retriever", "generator"}


def test_training_retrieval_never_returns_a_videos_own_sentences(
    trained: Path, tiny_dataset: Path, feature_cache: Path
) -> None:
    bundle = RCG.load(trained)
    fcfg = bundle.frame_cfg
    data = load_split(
        bundle.encoder, tiny_dataset, "train", fcfg, bundle.encoder_signature(), feature_cache, _world()
    )
    got = retrieve_split(bundle, data, k=len(data) * 2)
    for kind in KINDS:
        for i, sents in enumerate(got[kind]):
            assert sents and not set(refs(data, kind)[i]) & set(sents)


def _world():
    from create_bench.models.alwig.losses import World

    return World(False)


def test_rcg_and_retrieved_title_evaluate_through_the_harness(
    trained: Path, tiny_dataset: Path, tmp_path: Path
) -> None:
    from create_bench.models import load_model
    from create_bench.runner import EvalConfig, evaluate

    explain = tmp_path / "explain.jsonl"
    results = {}
    for name, args in (
        ("rcg", {"checkpoint": str(trained), "explain": str(explain), "beam_size": 2}),
        ("retrieved-title", {"checkpoint": str(trained)}),
    ):
        model = load_model(name, args)
        cfg = EvalConfig(tiny_dataset, split="test", results_dir=tmp_path / "results",
                         scoring=ScoringOptions(bootstrap=0), report=False, progress=False)  # fmt: skip
        results[name] = evaluate(model, cfg, model_args=args, model_spec=name)
    scores = results["rcg"].results["scores"]
    assert {"t2v_caption", "v2t_title", "title", "caption"} <= set(scores)
    assert set(results["retrieved-title"].results["scores"]) == {"title", "caption"}
    corpus = RCG.load(trained).corpus
    gens = [
        json.loads(x)
        for x in (results["retrieved-title"].predictions_dir / "generations.jsonl").read_text().splitlines()
    ]
    assert len(gens) == 12 and all(g["title"] in corpus["title"].texts for g in gens)
    lines = [json.loads(x) for x in explain.read_text().splitlines()]
    assert len(lines) == 24 and {x["kind"] for x in lines} == {"title", "caption"}
    for x in lines:
        assert len(x["retrieved"]) == 2 and len(x["gate"]["copy"]) == 2
        assert abs(x["gate"]["vocab"] + sum(x["gate"]["copy"]) - 1) < 1e-2


def test_output_dir_and_dataset_errors(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    cfg = load_config("sample", **TINY)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="notes.txt"):
        train(TrainOptions(tiny_dataset, busy, cfg, cache_dir=feature_cache))
    with pytest.raises(OutputError, match="input"):
        train(TrainOptions(tiny_dataset, tiny_dataset / "ck", cfg, cache_dir=feature_cache))
    with pytest.raises(DataError, match="no 'pretrain-3m' split"):
        train(TrainOptions(tiny_dataset, tmp_path / "x", cfg.replace(corpus_raw_titles=True), pretrain=True,
                           pretrain_split="pretrain-3m", cache_dir=feature_cache))  # fmt: skip
    with pytest.raises(ConfigError, match="max_steps"):
        train(TrainOptions(tiny_dataset, tmp_path / "y", cfg, cache_dir=feature_cache, max_steps=0))
    assert default_cache_dir().name == "alwig-features"  # one feature store for both models


def test_cli_train_rcg_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from create_bench.cli import main

    assert main(["train", "rcg", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) != 0
    assert main(["train", "rcg", "--data", str(tmp_path), "--resume"]) != 0
    err = capsys.readouterr().err
    assert "--resume are ALWIG only" in err


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_dataset: Path, tmp_path: Path, feature_cache: Path) -> None:
    """DDP (gloo) as ALWIG's trainer runs it: two processes, each half of every global batch."""
    import os
    import subprocess
    import sys

    import yaml

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(load_config("sample", **TINY).to_dict()), encoding="utf-8")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "create_bench", "train", "rcg", "--data", str(tiny_dataset), "--out", str(out),
        "--config", str(cfg), "--cache-dir", str(feature_cache), "--no-progress",
    ]  # fmt: skip
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "config.json").read_text())
    assert record["training"]["world_size"] == 2
    RCG.load(out)


def test_corpus_takes_the_pretraining_raw_titles_when_asked() -> None:
    from create_bench.training.alwig.features import SplitData
    from create_bench.training.rcg.batches import build_corpus

    def split(name: str, vids: list[str], titles: list[list[str]], raw: list[str]) -> SplitData:
        n = len(vids)
        return SplitData(name, vids, torch.zeros(n, 1, 2), torch.ones(n, 1, dtype=torch.bool), [[]] * n,
                         titles, [["字幕"]] * n, raw)  # fmt: skip

    train_split = split("train", ["a", "b"], [["标题一"], ["标题二"]], ["原一", "原二"])
    pre = split("pretrain", ["p"], [[]], ["预训练原标题"])
    assert build_corpus(train_split)["title"].texts == ["标题一", "标题二"]
    with_pre = build_corpus(train_split, pre)
    assert with_pre["title"].texts == ["标题一", "标题二", "预训练原标题"]
    assert with_pre["title"].owners[2] == ("p",) and with_pre["caption"].texts == ["字幕"]

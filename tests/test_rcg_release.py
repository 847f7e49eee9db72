"""RCG on the real release's shape: a features-only dataset (official-format JSON + precomputed
features, no video files). `create-bench train rcg` trains into the dataset's own checkpoint with
the default config (the ALWIG paper config's precomputed features), and `create-bench eval --model
rcg` / `--model retrieved-title` evaluate it, as `make eval MODEL=rcg DATA=<it>` runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from test_alwig_release import DIM, _release

from create_bench.cli import main
from create_bench.models.rcg.config import CONFIG_DIR, RCGConfig


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _small_default_config(path: Path) -> Path:
    """configs/default.yaml with only its sizes made small (the same frame input: features)."""
    data = yaml.safe_load((CONFIG_DIR / "default.yaml").read_text("utf-8"))
    data.update(
        frame_overrides={"feature_dim": DIM, "num_frames": 4, "encode_batch_size": 8, "num_workers": 0},
        d_model=16, num_heads=2, ffn_size=32, video_layers=1, text_layers=1, decoder_layers=1,
        embed_dim=16, max_text_len=24, k=2, batch_size=8, retriever_epochs=2, generator_epochs=2, eval_every=1,
    )  # fmt: skip
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


@pytest.mark.slow
def test_features_only_release_trains_and_evaluates_rcg(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rel = _release(tmp_path / "release")
    data = tmp_path / "data" / "create-rehearsal"
    monkeypatch.chdir(tmp_path)  # checkpoints/ and results/ are relative to the working directory
    rc = main(["build", "--annotations", str(rel["train"]), str(rel["val"]), str(rel["test"]),
               "--features", str(rel["features"]), "--feature-set", "clip", "--out", str(data),
               "--name", "create-rehearsal", "--workers", "1"])  # fmt: skip
    assert rc == 0
    # The sample config (ALWIG's fixed frame encoder) refuses this dataset, before writing anything.
    assert main(["train", "rcg", "--data", str(data), "--config", "sample", "--no-progress"]) != 0
    assert not (tmp_path / "checkpoints").exists()
    cfg = _small_default_config(tmp_path / "small.yaml")
    assert main(["train", "rcg", "--data", str(data), "--config", str(cfg), "--no-progress"]) == 0
    ckpt = tmp_path / "checkpoints" / "rcg-create-rehearsal"
    record = json.loads((ckpt / "config.json").read_text("utf-8"))
    assert RCGConfig.from_dict(record["config"]).frame_cfg().encoder == "features"
    assert record["encoder_signature"] == "features:clip"
    for model in ("rcg", "retrieved-title"):
        assert main(["eval", "--model", model, "--data", str(data), "--split", "test", "--bootstrap", "0",
                     "--no-report"]) == 0  # fmt: skip
        res = json.loads((tmp_path / "results" / model / "create-rehearsal-test.json").read_text("utf-8"))
        assert {"title", "caption"} <= set(res["scores"])
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["rcg-create-rehearsal"]

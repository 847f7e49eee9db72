"""Dress rehearsal with the real release's shape: official-format JSON + per-video precomputed
features, no video files. `create-bench build --features DIR` (no --videos) makes a features-only
dataset; `create-bench train alwig` trains the paper config on it (small sizes) into its own
checkpoint, and `create-bench eval --model alwig` evaluates that checkpoint end to end, exactly
what `make eval MODEL=alwig DATA=<it>` runs. The CREATE-sample checkpoints are never touched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from create_bench.cli import main
from create_bench.models.alwig.config import CONFIG_DIR, ALWIGConfig

REPO = Path(__file__).resolve().parents[1]
OBJECTS = ["猫", "狗", "车", "花", "鱼", "鸟"]
DIM = 16


def _release(root: Path) -> dict[str, Path]:
    """Official-format annotations ({vid, ann_title, ann_caption, raw_title, tag, category}) and
    features/<vid>.npy [T, D]; the features tell the objects apart (one direction per object)."""
    feats = root / "features"
    feats.mkdir(parents=True)
    rng = np.random.default_rng(0)
    basis = rng.standard_normal((len(OBJECTS), DIM)).astype(np.float32)
    files = {}
    for split, n, refs in (("train", 24, 1), ("val", 6, 3), ("test", 6, 3)):
        items = []
        for i in range(n):
            vid = f"{split}{i:03d}"
            k = i % len(OBJECTS)
            obj = OBJECTS[k]
            titles = [f"一只{obj}的视频{j}" for j in range(refs)]
            captions = [f"画面里有一只{obj}在动{j}" for j in range(refs)]
            items.append(
                {
                    "vid": vid,
                    "ann_title": titles[0] if refs == 1 else titles,
                    "ann_caption": captions[0] if refs == 1 else captions,
                    "raw_title": f"{obj}日常 #热门",
                    "tag": [obj, "日常"],
                    "category": k % 3,
                }
            )
            t = 3 + i % 3  # videos have different feature counts T
            arr = basis[k] + 0.1 * rng.standard_normal((t, DIM)).astype(np.float32)
            np.save(feats / f"{vid}.npy", arr)
        p = root / f"create_210k_{split}.json"
        p.write_text(json.dumps(items, ensure_ascii=False), "utf-8")
        files[split] = p
    return {"features": feats, **files}


def _small_paper_config(path: Path) -> Path:
    """configs/paper.yaml with only its sizes made small (every extension stays off)."""
    data = yaml.safe_load((CONFIG_DIR / "paper.yaml").read_text("utf-8"))
    data.update(
        feature_dim=DIM,
        num_frames=4,
        max_tags=4,
        min_tag_count=1,
        min_char_count=1,
        hidden_size=32,
        num_heads=2,
        ffn_size=64,
        align_layers=1,
        text_layers=1,
        embed_dim=16,
        max_text_len=24,
        gpt_layers=1,
        gpt_heads=2,
        gpt_width=32,
        max_gen_len=16,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        gpt_lr=1e-3,
        encode_batch_size=8,
        num_workers=0,
        beam_size=1,
    )
    path.write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return path


def _sample_checkpoints() -> dict[str, float | None]:
    return {
        name: ((REPO / "checkpoints" / name / "config.json").stat().st_mtime_ns
               if (REPO / "checkpoints" / name / "config.json").exists() else None)
        for name in ("alwig-create-sample", "alwig-sample")
    }  # fmt: skip


@pytest.mark.slow
def test_features_only_release_trains_and_evaluates_the_paper_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rel = _release(tmp_path / "release")
    data = tmp_path / "data" / "create-rehearsal"
    before = _sample_checkpoints()
    monkeypatch.chdir(tmp_path)  # checkpoints/ and results/ are relative to the working directory

    # 1. Build: features, no videos.
    rc = main(
        [
            "build",
            "--annotations",
            str(rel["train"]),
            str(rel["val"]),
            str(rel["test"]),
            "--features",
            str(rel["features"]),
            "--feature-set",
            "clip",
            "--out",
            str(data),
            "--name",
            "create-rehearsal",
            "--workers",
            "1",
        ]
    )
    assert rc == 0
    manifest = json.loads((data / "manifest.json").read_text("utf-8"))
    assert manifest["videos"] is False and "clip" in manifest["feature_sets"]
    assert manifest["fingerprint"]
    assert main(["validate", str(data)]) == 0
    import pyarrow.parquet as pq

    rows = pq.read_table(sorted((data / "data").glob("test-*.parquet"))[0]).to_pylist()
    assert all(r["video"] == {"bytes": None, "path": None} for r in rows)
    assert sorted({r["num_frames"] for r in rows}) == [3, 4, 5]  # the feature count T

    # 2. The sample's config refuses this dataset (the fixed encoder is modelled on CREATE-sample).
    assert main(["train", "alwig", "--data", str(data), "--config", "sample", "--no-progress"]) != 0
    assert not (tmp_path / "checkpoints").exists()

    # 3. Train the paper config (small sizes) into the dataset's own checkpoint (no --out).
    cfg_path = _small_paper_config(tmp_path / "paper-small.yaml")
    args = ["--data", str(data), "--config", str(cfg_path), "--cache-dir", str(tmp_path / "cache")]
    assert main(["train", "alwig", *args, "--no-progress"]) == 0
    ckpt = tmp_path / "checkpoints" / "alwig-create-rehearsal"
    record = json.loads((ckpt / "config.json").read_text("utf-8"))
    saved = ALWIGConfig.from_dict(record["config"])
    assert saved.encoder == "features" and saved.feature_set == "clip"
    assert saved.extensions == ALWIGConfig().extensions  # the paper's model: no extension on

    # 4. Evaluate with the default checkpoint, resolved from the dataset.
    assert main(["eval", "--model", "alwig", "--data", str(data), "--split", "test", "--bootstrap", "0",
                 "--no-report"]) == 0  # fmt: skip
    results = json.loads((tmp_path / "results" / "alwig" / "create-rehearsal-test.json").read_text("utf-8"))
    assert {"t2v_caption", "v2t_title", "title", "caption"} <= set(results["scores"])
    card = yaml.safe_load(
        (tmp_path / "results" / "alwig" / "create-rehearsal-test" / "model_card.yaml").read_text("utf-8")
    )
    from create_bench.fsutil import sha256_file

    # The card's version carries the weights' hash: the evaluated checkpoint is the dataset's own.
    assert card["version"].endswith("-" + sha256_file(ckpt / "model.safetensors")[:12])

    # 5. The CREATE-sample checkpoints were neither created nor touched, here or in the repository.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["alwig-create-rehearsal"]
    assert _sample_checkpoints() == before

    # 6. A frame model is refused on a features-only dataset, with the reason.
    from create_bench.data.shards import open_dataset
    from create_bench.errors import ConfigError
    from create_bench.models.base import ModelMeta
    from create_bench.runner import _check_inputs_available

    with pytest.raises(ConfigError, match="features-only"):
        _check_inputs_available(ModelMeta(name="framey", inputs="frames"), open_dataset(data))

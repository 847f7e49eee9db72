"""Training data in memory: frozen per-frame features of a split (computed once with the frozen
encoder and cached in the feature store, :mod:`create_bench.features.store`, keyed by data
fingerprint + split + frame policy + frame size + encoder signature, or read from the dataset's
feature shards with ``encoder: features``) joined with the texts ALWIG trains on (:class:`SplitData`)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from create_bench.errors import DataError
from create_bench.features.store import FeatureKey, FeatureStore, StoredFeatures
from create_bench.models.alwig.bundle import frame_features
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import World

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One split in memory: frozen per-frame features and the texts ALWIG trains on."""

    name: str
    vids: list[str]
    feats: torch.Tensor  # float32 [N, T, F]
    mask: torch.Tensor  # bool [N, T]
    tags: list[list[str]]
    titles: list[list[str]]
    captions: list[list[str]]
    raw_titles: list[str]

    def __len__(self) -> int:
        return len(self.vids)

    def subset(self, keep: Sequence[int]) -> SplitData:
        idx = list(keep)
        return SplitData(
            self.name,
            [self.vids[i] for i in idx],
            self.feats[idx],
            self.mask[idx],
            [self.tags[i] for i in idx],
            [self.titles[i] for i in idx],
            [self.captions[i] for i in idx],
            [self.raw_titles[i] for i in idx],
        )


def default_cache_dir() -> Path:
    root = os.environ.get("CREATE_BENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "create-bench"
    )
    return Path(root) / "alwig-features"


def feature_cache_key(fingerprint: str, split: str, cfg: ALWIGConfig, encoder_signature: str) -> FeatureKey:
    """The feature-store key of a split's frozen-encoder features."""
    from create_bench.video.sampling import policy_signature

    size = (int(cfg.frame_size[0]), int(cfg.frame_size[1])) if cfg.frame_size else None
    return FeatureKey(fingerprint, split, policy_signature(cfg.frames), size, encoder_signature)


def frame_batches(data_dir: Path, split: str, cfg: ALWIGConfig, batch_size: int) -> Iterator[dict[str, Any]]:
    """Decoded frames of a whole split (one pass, every row once, even under torchrun)."""
    from create_bench.loader import make_loader

    kw: dict[str, Any] = {"frames": cfg.frames, "batch_size": batch_size, "num_workers": cfg.num_workers}
    # None: the stored size (not the loader's default size)
    kw["size"] = tuple(cfg.frame_size) if cfg.frame_size is not None else None
    # rank/world_size explicit: every process that computes features needs the whole split.
    kw["columns"] = ("width", "height", "rotation")  # the fixed encoder's display geometry
    yield from make_loader(data_dir, split, texts=False, rank=0, world_size=1, on_error="fail", **kw)


def compute_features(
    encoder: Any, cfg: ALWIGConfig, data_dir: Path, split: str, progress: bool = False
) -> dict[str, Any]:
    """Run the frozen encoder over a split: {"vids", "feats" [N, T, F], "mask" [N, T]}."""
    from tqdm.auto import tqdm

    vids: list[str] = []
    feats, masks = [], []
    batches = frame_batches(data_dir, split, cfg, cfg.encode_batch_size)
    for batch in tqdm(batches, desc=f"alwig: encoding {split} frames", unit="batch", disable=not progress):
        f, m = frame_features(encoder, cfg, batch)
        if f.shape[1] < cfg.num_frames:
            f = F.pad(f, (0, 0, 0, cfg.num_frames - f.shape[1]))
            m = F.pad(m, (0, cfg.num_frames - m.shape[1]), value=False)
        vids += [str(v) for v in batch["vid"]]
        feats.append(f.float().cpu())
        masks.append(m.bool().cpu())
    if not vids:
        raise DataError(f"split {split!r} has no videos", path=str(data_dir))
    return {"vids": vids, "feats": torch.cat(feats), "mask": torch.cat(masks)}


def _read_dataset_features(data_dir: Path, split: str, cfg: ALWIGConfig) -> dict[str, Any]:
    from create_bench.data.shards import read_features

    table = read_features(data_dir, str(cfg.feature_set), split)
    vids = list(table)
    t_max = cfg.num_frames
    feats = torch.zeros(len(vids), t_max, int(cfg.feature_dim or 0))
    mask = torch.zeros(len(vids), t_max, dtype=torch.bool)
    for i, vid in enumerate(vids):
        a = torch.from_numpy(table[vid])
        if a.dim() != 2 or a.shape[1] != cfg.feature_dim:
            raise DataError(
                f"feature set {cfg.feature_set!r}: expected [T, {cfg.feature_dim}] features, got {tuple(a.shape)}",
                vid=vid,
            )
        if a.shape[0] > t_max:  # more stored frames than the model takes: spread evenly
            a = a[torch.linspace(0, a.shape[0] - 1, t_max).round().long()]
        feats[i, : a.shape[0]] = a
        mask[i, : a.shape[0]] = True
    return {"vids": vids, "feats": feats, "mask": mask}


def load_split_features(
    encoder: Any,
    data_dir: Path,
    split: str,
    cfg: ALWIGConfig,
    encoder_signature: str,
    cache_dir: Path,
    world: World,
    progress: bool = False,
) -> dict[str, Any]:
    """Features of a split, from the cache when present; rank 0 computes, the others wait and read."""
    from create_bench.data.shards import open_dataset

    if cfg.encoder == "features":
        return _read_dataset_features(data_dir, split, cfg)
    info = open_dataset(data_dir)
    store = FeatureStore(cache_dir)
    key = feature_cache_key(info.fingerprint, split, cfg, encoder_signature)
    stored = store.get(key) if world.rank == 0 else None
    if stored is None and world.rank == 0:
        t0 = time.perf_counter()
        res = compute_features(encoder, cfg, data_dir, split, progress)
        arrays = {
            "feats": res["feats"].detach().contiguous().numpy(),
            "mask": res["mask"].to(torch.uint8).numpy(),
        }
        stored = StoredFeatures(res["vids"], arrays)
        path = store.put(key, stored)
        log.info(
            "alwig: %s features %s in %.1f s -> %s",
            split,
            tuple(res["feats"].shape),
            time.perf_counter() - t0,
            path,
        )
    if world.distributed:
        dist.barrier()
    if stored is None:  # the other ranks read what rank 0 wrote
        stored = store.get(key)
    if stored is None:
        raise DataError(
            f"no valid cached features of split {split!r} after rank 0 wrote them", path=str(store.path(key))
        )
    return {
        "vids": stored.vids,
        "feats": torch.from_numpy(stored.arrays["feats"]).float(),
        "mask": torch.from_numpy(stored.arrays["mask"]).bool(),
    }


def load_split(
    encoder: Any,
    data_dir: Path,
    split: str,
    cfg: ALWIGConfig,
    encoder_signature: str,
    cache_dir: Path,
    world: World,
    progress: bool = False,
) -> SplitData:
    """Features plus texts of a split, rows in the features' order (joined by vid)."""
    from create_bench.data.shards import read_table

    table = read_table(data_dir, split, columns=["vid", "tags", "titles", "captions", "raw_title"])
    cols = {c: table.column(c).to_pylist() for c in table.column_names}
    row = {str(v): i for i, v in enumerate(cols["vid"])}
    f = load_split_features(encoder, data_dir, split, cfg, encoder_signature, cache_dir, world, progress)
    missing = [v for v in cols["vid"] if str(v) not in set(f["vids"])]
    if missing or len(f["vids"]) != len(row):
        raise DataError(
            f"features of split {split!r} do not match its rows (missing {missing[:5]}, {len(f['vids'])} vs {len(row)})",
            path=str(data_dir),
        )
    order = [row[v] for v in f["vids"]]
    return SplitData(
        name=split,
        vids=list(f["vids"]),
        feats=f["feats"],
        mask=f["mask"],
        tags=[list(cols["tags"][i] or []) for i in order],
        titles=[list(cols["titles"][i] or []) for i in order],
        captions=[list(cols["captions"][i] or []) for i in order],
        raw_titles=[str(cols["raw_title"][i] or "") for i in order],
    )

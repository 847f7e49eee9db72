"""Training ALWIG (application code: the evaluation library never imports this module).

``create-bench train alwig --data DIR --out CKPT`` runs :func:`train`:

1. Per-frame features of every split it needs are computed once with the frozen encoder (frames
   from :func:`create_bench.loader.make_loader` with the config's frame policy and size) and cached
   on disk, keyed by data fingerprint + split + frame policy + frame size + encoder signature; with
   ``encoder: features`` they are read from the dataset's feature shards. Epochs then never decode.
2. Optional pre-training on the ``pretrain`` split (``--pretrain``; ``--pretrain-split`` names another,
   e.g. ``pretrain-3m`` of an imported release): the raw title is the text
   (alignment and title generation), the tags feed the tag encoder.
3. Fine-tuning on ``train``: each epoch draws one caption and one title per video (seeded); both
   alignment and generation losses.
4. Model selection on ``validation`` only (never test): every ``eval_every`` epochs and after the
   last, :func:`validate` scores the model; the best epoch's weights become the checkpoint. The
   default criterion (``select_metric: score``) averages retrieval recall and the references'
   per-character likelihood; ``loss`` uses the training objective instead.

Outputs in ``--out``: the checkpoint (``config.json``, ``model.safetensors``, ``vocab.txt``,
``tags.txt``; ``config.json`` written last), ``log.jsonl`` (one JSON line per logged step and per
validation), and ``train_state/`` for ``--resume``: ``state.json`` (phase, epoch, position in the
epoch, step, best validation, world size, data order) naming a ``ck-N/`` directory with the
weights, optimizer and scheduler state, best weights and every rank's RNG state. The state is saved
at each epoch end and, with ``checkpoint_every``, every that many steps; a crash while saving
leaves the previous state whole. Everything is seeded: the same data, config and world size give
the same checkpoint, and a resumed run continues exactly where the saved state stopped (mid-epoch
too; lines an interrupted run logged after it are dropped from ``log.jsonl``).

Data feeding (``stream``): small splits are held in memory on every rank (``epoch_plan``: a seeded
permutation per epoch); large ones, with ``encoder: features``, are streamed by rank from the
feature shards (:mod:`create_bench.training.alwig.stream`: each rank reads only its own rows, in an
order that does not depend on the world size). In both the position in an epoch is the number of
global batches consumed, so a run saved on W1 processes resumes on W2 (same global batch size)
with every remaining sample of the epoch exactly once.

Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) each process takes an equal share of every
global batch; contrastive similarities are computed against the all-gathered batch and the losses
are scaled so that DDP's averaged gradient equals the single-process gradient (gloo on CPU, NCCL on
CUDA). Multi-node runs need ``--out`` on a shared filesystem (rank 0 saves, every rank resumes).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from create_bench.errors import ConfigError, DataError
from create_bench.fsutil import atomic_dir, atomic_path, atomic_write_bytes, atomic_write_json
from create_bench.models.alwig.bundle import ALWIG, frame_features, load_weights, save_weights
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import World

log = logging.getLogger(__name__)

FEATURE_CACHE_VERSION = 1
STATE_DIR = "train_state"
PHASES = ("pretrain", "finetune")


# ----------------------------------------------------------------------------------------- data
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


def feature_cache_key(fingerprint: str, split: str, cfg: ALWIGConfig, encoder_signature: str) -> str:
    from create_bench.video.sampling import policy_signature

    key = {
        "v": FEATURE_CACHE_VERSION,
        "data": fingerprint,
        "split": split,
        "frames": policy_signature(cfg.frames),
        "size": list(cfg.frame_size) if cfg.frame_size else None,
        "encoder": encoder_signature,
    }
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


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
    from safetensors.torch import load_file, save_file

    from create_bench.data.shards import open_dataset

    if cfg.encoder == "features":
        return _read_dataset_features(data_dir, split, cfg)
    info = open_dataset(data_dir)
    path = cache_dir / f"{feature_cache_key(info.fingerprint, split, cfg, encoder_signature)}.safetensors"
    if not path.is_file() and world.rank == 0:
        t0 = time.perf_counter()
        res = compute_features(encoder, cfg, data_dir, split, progress)
        with atomic_path(path) as tmp:
            save_file(
                {"feats": res["feats"].contiguous(), "mask": res["mask"].to(torch.uint8).contiguous()},
                str(tmp),
                metadata={"vids": json.dumps(res["vids"]), "split": split, "fingerprint": info.fingerprint},
            )
        log.info(
            "alwig: %s features %s in %.1f s -> %s",
            split,
            tuple(res["feats"].shape),
            time.perf_counter() - t0,
            path,
        )
    if world.distributed:
        dist.barrier()
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        meta = fh.metadata() or {}
    tensors = load_file(str(path))
    return {
        "vids": json.loads(meta["vids"]),
        "feats": tensors["feats"].float(),
        "mask": tensors["mask"].bool(),
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


# -------------------------------------------------------------------------------------- batches
def phase_kinds(phase: str) -> tuple[str, ...]:
    return ("title",) if phase == "pretrain" else ("caption", "title")


def row_trainable(phase: str, raw_title: str, titles: Sequence[str], captions: Sequence[str]) -> bool:
    """Whether a video trains in ``phase``: pre-training needs a raw title, fine-tuning a caption and a title."""
    if phase == "pretrain":
        return bool(raw_title.strip())
    return bool(captions) and bool(titles)


def trainable_rows(data: SplitData, phase: str) -> list[int]:
    return [
        i
        for i in range(len(data))
        if row_trainable(phase, data.raw_titles[i], data.titles[i], data.captions[i])
    ]


def epoch_plan(n: int, cfg: ALWIGConfig, phase: str, epoch: int, world_size: int) -> list[np.ndarray]:
    """Global batches (row positions) of one epoch: a seeded permutation cut into batch_size chunks.

    The last chunk is cut to a multiple of the world size (every rank needs an equal share).
    """
    rng = np.random.default_rng([cfg.seed, PHASES.index(phase), epoch])
    perm = rng.permutation(n)
    batches = [perm[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    out = []
    for b in batches:
        b = b[: len(b) - len(b) % world_size]
        if len(b):
            out.append(b)
    return out


def text_choices(
    data: SplitData, rows: Sequence[int], cfg: ALWIGConfig, phase: str, salt: int
) -> dict[str, list[str]]:
    """The text of each kind each row of a *global* batch trains on (seeded by ``salt``).

    With ``cfg.gen_kinds_per_video == 1`` the result also has ``gen_kind``: the one kind each row
    trains generation on this step (drawn at random, both kinds equally likely); alignment always
    uses both kinds. With ``cfg.tag_dropout > 0`` it has ``tags``: each row's tags, each kept with
    probability ``1 - tag_dropout`` (so the model cannot lean on tags alone).
    """
    if phase == "pretrain":
        return {"title": [data.raw_titles[i] for i in rows]}
    rng = np.random.default_rng([cfg.seed, PHASES.index(phase), salt, 1])
    cap_pick = rng.random(len(rows))
    title_pick = rng.random(len(rows))
    out: dict[str, Any] = {
        "caption": [data.captions[i][int(u * len(data.captions[i]))] for i, u in zip(rows, cap_pick)],
        "title": [data.titles[i][int(u * len(data.titles[i]))] for i, u in zip(rows, title_pick)],
    }
    if cfg.gen_kinds_per_video == 1:
        out["gen_kind"] = ["caption" if u < 0.5 else "title" for u in rng.random(len(rows))]
    if cfg.tag_dropout > 0:
        out["tags"] = [[t for t in data.tags[i] if rng.random() >= cfg.tag_dropout] for i in rows]
    return out


def text_choices_at(
    data: SplitData,
    rows: Sequence[int],
    positions: Sequence[int],
    cfg: ALWIGConfig,
    phase: str,
    salt: int,
    batch_size: int,
) -> dict[str, Any]:
    """:func:`text_choices` for one rank's share of a global batch, independent of the world size.

    Row ``rows[j]`` sits at position ``positions[j]`` of the global batch (``batch_size`` rows) and
    gets that position's draws: every uniform draw is indexed by position (the tag-dropout draws
    of tag ``t`` of position ``p`` at ``t * batch_size + p``, a prefix of one seeded stream), so
    the shares of any number of ranks together make the choices of one process. The streamed path
    uses it (a rank never sees the other ranks' rows); the choices have the distribution of
    :func:`text_choices`, not its exact values.
    """
    if phase == "pretrain":
        return {"title": [data.raw_titles[i] for i in rows]}
    rng = np.random.default_rng([cfg.seed, PHASES.index(phase), salt, 2])
    cap_u, title_u, kind_u = rng.random(3 * batch_size).reshape(3, batch_size)
    pos = np.asarray(positions, dtype=np.int64)
    out: dict[str, Any] = {
        "caption": [data.captions[i][int(u * len(data.captions[i]))] for i, u in zip(rows, cap_u[pos])],
        "title": [data.titles[i][int(u * len(data.titles[i]))] for i, u in zip(rows, title_u[pos])],
    }
    if cfg.gen_kinds_per_video == 1:
        out["gen_kind"] = ["caption" if u < 0.5 else "title" for u in kind_u[pos]]
    if cfg.tag_dropout > 0:
        most = max((len(data.tags[i]) for i in rows), default=0)
        tag_u = rng.random(most * batch_size)
        out["tags"] = [
            [t for j, t in enumerate(data.tags[i]) if tag_u[j * batch_size + p] >= cfg.tag_dropout]
            for i, p in zip(rows, pos)
        ]
    return out


def make_batch(
    bundle: ALWIG, data: SplitData, rows: Sequence[int], texts: dict[str, Sequence[str]]
) -> dict[str, Any]:
    """Tensors of the network's ``forward`` for ``rows`` with the given texts per kind (and the
    ``gen_kind``/``tags`` choices of :func:`text_choices` when present)."""
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    tags = texts.get("tags")
    tag_lists = list(tags) if tags is not None else [data.tags[i] for i in rows]
    batch: dict[str, Any] = {
        "feats": data.feats[idx].to(bundle.device),
        "frame_mask": data.mask[idx].to(bundle.device),
        "tag_ids": bundle.tag_tensor(tag_lists),
    }
    chars = bundle.tag_char_tensor(tag_lists)
    if chars is not None:
        batch["tag_chars"] = chars
    gen_kind = texts.get("gen_kind")
    for kind, items in texts.items():
        if kind in ("gen_kind", "tags"):
            continue
        items = list(items)
        batch[f"{kind}_text"] = bundle.text_tensor(items)
        batch[f"{kind}_key"] = bundle.key_tensor(items)
        if gen_kind is None:
            batch[f"{kind}_seq"] = bundle.seq_tensor(items, kind)
        else:
            pick = [i for i, k in enumerate(gen_kind) if k == kind]
            batch[f"{kind}_seq"] = bundle.seq_tensor([items[i] for i in pick] or [""], kind)[: len(pick)]
            batch[f"{kind}_gen_index"] = torch.tensor(pick, dtype=torch.long, device=bundle.device)
    return batch


# ------------------------------------------------------------------------------------ validation
@torch.no_grad()
def validate(bundle: ALWIG, data: SplitData, batch_size: int = 128, gen_refs: int = 2) -> dict[str, float]:
    """Validation loss (the training objective over the whole split), recalls and a selection score.

    ``loss`` = align_weight * contrastive + gen_weight * generation, where the contrastive part
    compares every video with every reference of the split (identical texts are positives of each
    other) and the generation part is the token-mean cross-entropy of the first ``gen_refs``
    references of each video (teacher forcing costs a GPT-2 pass per reference; a few suffice).
    """
    net, cfg = bundle.net, bundle.cfg
    was_training = net.training
    net.eval()
    hid, msk, vemb, tid, tch = [], [], [], [], []
    for i in range(0, len(data), batch_size):
        rows = list(range(i, min(i + batch_size, len(data))))
        tags = [data.tags[r] for r in rows]
        tid.append(bundle.tag_tensor(tags))
        chars = bundle.tag_char_tensor(tags)
        h, m = net.align_tokens(
            data.feats[rows].to(bundle.device), data.mask[rows].to(bundle.device), tid[-1]
        )
        hid.append(h)
        msk.append(m)
        vemb.append(net.video_embed(h, chars))
        if chars is not None:
            tch.append(chars)
    video = torch.cat(vemb)
    hidden, mask, tag_ids = torch.cat(hid), torch.cat(msk), torch.cat(tid)
    tag_chars = torch.cat(tch) if tch else None
    out: dict[str, float] = {}
    align_total, gen_total, wsum = 0.0, 0.0, 0.0
    weights = {"caption": cfg.caption_weight, "title": cfg.title_weight}
    for kind, refs in (("caption", data.captions), ("title", data.titles)):
        texts = [t for r in refs for t in r]
        owner = torch.tensor([i for i, r in enumerate(refs) for _ in r], dtype=torch.long)
        if not texts:
            continue
        temb = bundle.encode_texts(texts).to(bundle.device)
        keys = bundle.key_tensor(texts).cpu()
        sim = (temb @ video.t()).float().cpu()  # [texts, videos]
        # positives: the owner video, and any video that has the same text among its references
        pos = torch.zeros_like(sim, dtype=torch.bool)
        pos[torch.arange(len(texts)), owner] = True
        same = keys[:, None] == keys[None, :]
        pos |= (same.float() @ F.one_hot(owner, len(data)).float()) > 0
        scale = float(net.scale())
        t2v = -(torch.log_softmax(scale * sim, dim=1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
        v2t = (
            -(torch.log_softmax(scale * sim.t(), dim=1) * pos.t() / pos.t().sum(1, keepdim=True))
            .sum(1)
            .mean()
        )
        align = float(0.5 * (t2v + v2t))
        # recalls (R@1/5/10): t2v rank of the owner video; v2t best rank of any own text
        order_rank_t2v = (sim > sim[torch.arange(len(texts)), owner][:, None]).sum(1) + 1
        best_own = torch.full((len(data),), -math.inf).scatter_reduce(
            0, owner, sim[torch.arange(len(texts)), owner], "amax"
        )
        rank_v2t = (sim.t() > best_own[:, None]).sum(1) + 1
        for k in (1, 5, 10):
            out[f"t2v_{kind}_R@{k}"] = float((order_rank_t2v <= k).float().mean() * 100)
            out[f"v2t_{kind}_R@{k}"] = float((rank_v2t <= k).float().mean() * 100)
        # generation cross-entropy over the first gen_refs references of every video
        gtexts = [t for r in refs for t in r[:gen_refs]]
        gowner = torch.tensor([i for i, r in enumerate(refs) for _ in r[:gen_refs]], dtype=torch.long)
        tok_loss, tok_n = 0.0, 0
        for i in range(0, len(gtexts), batch_size):
            seqs = bundle.seq_tensor(gtexts[i : i + batch_size], kind)
            losses, tmask = net.gen_losses(
                hidden, mask, seqs, gowner[i : i + batch_size].to(bundle.device), tag_ids, tag_chars
            )
            tok_loss += float(losses.sum())
            tok_n += int(tmask.sum())
        gen = tok_loss / max(1, tok_n)
        out[f"align_{kind}"], out[f"gen_{kind}"] = align, gen
        align_total += weights[kind] * align
        gen_total += weights[kind] * gen
        wsum += weights[kind]
    wsum = wsum or 1.0
    use_align = cfg.use_align and cfg.align_weight > 0
    out["align"], out["gen"] = align_total / wsum, gen_total / wsum
    out["loss"] = (cfg.align_weight * out["align"] if use_align else 0.0) + cfg.gen_weight * out["gen"]
    # score (higher is better): mean recall@{1,5,10} over the four directions (0..1) and the mean
    # per-character likelihood exp(-CE) of the references; retrieval counts only when trained.
    kinds = [k for k in ("caption", "title") if f"gen_{k}" in out]
    gen_part = sum(math.exp(-out[f"gen_{k}"]) for k in kinds) / max(1, len(kinds))
    recalls = [v for k, v in out.items() if "_R@" in k]
    ret_part = sum(recalls) / (100.0 * len(recalls)) if recalls else 0.0
    out["score"] = 0.5 * (ret_part + gen_part) if use_align else gen_part
    net.train(was_training)
    return out


# ------------------------------------------------------------------------------------ optimiser
def make_optimizer(net: torch.nn.Module, cfg: ALWIGConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, embeddings and the logit scale; ``gpt_lr`` for GPT-2."""
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = (
            p.dim() < 2 or "embed" in name or name.endswith((".wte.weight", ".wpe.weight")) or "_pos" in name
        )
        is_gpt = name.startswith("gpt.")
        groups.setdefault((no_decay, is_gpt), []).append(p)
    gpt_lr = cfg.gpt_lr if cfg.gpt_lr else cfg.lr
    params = [
        {"params": ps, "weight_decay": 0.0 if nd else cfg.weight_decay, "lr": gpt_lr if g else cfg.lr}
        for (nd, g), ps in sorted(groups.items())
    ]
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def make_scheduler(
    opt: torch.optim.Optimizer, total_steps: int, warmup_ratio: float
) -> torch.optim.lr_scheduler.LambdaLR:
    warm = max(1, int(round(total_steps * warmup_ratio)))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total_steps - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


# ------------------------------------------------------------------------------------- training
#: ``stream``: where a phase's training rows come from (see :class:`TrainOptions`).
STREAM_MODES = ("auto", "on", "off")
#: ``stream: auto`` streams a phase whose split's features, as one dense float32 tensor, would be larger.
STREAM_AUTO_BYTES = 1 << 30


@dataclass
class TrainOptions:
    data_dir: Path
    out_dir: Path
    cfg: ALWIGConfig
    pretrain: bool = False
    #: The pre-training split (CREATE-sample: ``pretrain``; an imported release: ``pretrain-3m``/``-10m``).
    pretrain_split: str = "pretrain"
    device: str = "cpu"
    resume: bool = False
    cache_dir: Path | None = None
    progress: bool | None = None
    log_every: int = 10
    #: Stop each phase after this many optimiser steps (tests and benchmarks); None = full epochs.
    max_steps: int | None = None
    #: Stop as if interrupted after this many epochs of fine-tuning (tests of --resume).
    interrupt_after: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Where each phase's training rows come from. ``off``: the whole split in memory on every rank
    #: (a seeded permutation per epoch; CREATE-sample). ``on``: streamed by rank from the dataset's
    #: feature shards (``encoder: features``; :mod:`create_bench.training.alwig.stream`). ``auto``:
    #: stream a phase whose split's features would take more than :data:`STREAM_AUTO_BYTES` in memory.
    stream: str = "auto"
    #: Rows per lane block of the streamed order (its shuffle window; see ``stream.py``).
    stream_block: int = 64
    #: Also save the resumable state every this many optimiser steps (0: at epoch ends only).
    checkpoint_every: int = 0
    #: Stop as if killed after this many optimiser steps of this process (tests of mid-epoch resume;
    #: a resumed run continues from the last saved state).
    interrupt_after_steps: int | None = None
    #: A directory where each rank appends the vids of its share of every step
    #: (``rank<r>-of-<W>.jsonl``): which samples a run consumed (tests, debugging).
    sample_log: Path | None = None


def _check_options(opts: TrainOptions) -> None:
    if opts.stream not in STREAM_MODES:
        raise ConfigError(f"stream must be one of {', '.join(STREAM_MODES)}, got {opts.stream!r}")
    if opts.stream == "on" and opts.cfg.encoder != "features":
        raise ConfigError(
            f"stream 'on' reads feature shards: it needs 'encoder: features' (got {opts.cfg.encoder!r}); "
            "extract them first with create-bench extract"
        )
    if opts.stream_block < 1:
        raise ConfigError(f"stream_block must be >= 1, got {opts.stream_block}")
    if opts.checkpoint_every < 0:
        raise ConfigError(f"checkpoint_every must be >= 0 (0 = epoch ends only), got {opts.checkpoint_every}")


def wants_stream(mode: str, cfg: ALWIGConfig, rows: int) -> bool:
    """Whether a phase on a split of ``rows`` videos streams (``mode``: see :class:`TrainOptions`)."""
    if mode == "off" or cfg.encoder != "features":
        return False
    dense = rows * cfg.num_frames * int(cfg.feature_dim or 0) * 4
    return mode == "on" or dense > STREAM_AUTO_BYTES


def setup_world(device: str) -> tuple[World, str]:
    """Initialise torch.distributed under torchrun (WORLD_SIZE > 1); returns the world and device."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size > 1 and not (dist.is_available() and dist.is_initialized()):
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    world = World()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = f"cuda:{local}" if world.distributed else device
        if device == "cuda":
            device = f"cuda:{torch.cuda.current_device()}"  # set_device needs an index
        torch.cuda.set_device(torch.device(device))
    elif device != "cpu":
        raise ConfigError(f"device must be cpu or cuda[:N], got {device!r}")
    return world, device


class _Logger:
    def __init__(self, path: Path, enabled: bool, append: bool):
        self.path, self.enabled = path, enabled
        if enabled and not append:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0


def _truncate_log(path: Path, size: int) -> None:
    """Drop what an interrupted run logged after its last saved state (the resumed run redoes it)."""
    if path.is_file() and path.stat().st_size > size:
        with open(path, "rb") as fh:
            head = fh.read(size)
        atomic_write_bytes(path, head)


class _SampleLog:
    """Per-rank JSON lines of the vids each step trained on (:attr:`TrainOptions.sample_log`)."""

    def __init__(self, root: Path | None, world: World):
        self.path = root / f"rank{world.rank}-of-{world.size}.jsonl" if root is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, phase: str, epoch: int, step: int, vids: Sequence[str]) -> None:
        if self.path is not None:
            rec = {"phase": phase, "epoch": epoch, "step": step, "vids": list(vids)}
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")


# ------------------------------------------------------------------------------- resumable state
def _state_paths(out: Path) -> dict[str, Path]:
    d = out / STATE_DIR
    return {"dir": d, "state": d / "state.json"}


def _ckpt_dir(out: Path, state: dict[str, Any]) -> Path:
    """The directory of a saved state's weights and optimiser (older runs kept them in ``train_state``)."""
    d = _state_paths(out)["dir"]
    return d / state["ckpt"] if state.get("ckpt") else d


def _save_state(
    bundle: ALWIG,
    opt: Any,
    sched: Any,
    out: Path,
    state: dict[str, Any],
    best_net: dict | None,
    rng: list[dict[str, Any]] | None = None,
) -> None:
    """Write a complete state: a fresh ``ck-N`` directory (weights, optimiser, best weights, every
    rank's RNG state), then ``state.json`` naming it (atomic), then remove the older ones. A crash
    at any point leaves the previous state whole."""
    import shutil

    d = _state_paths(out)["dir"]
    n = int(state.get("saves", 0)) + 1
    name = f"ck-{n:08d}"
    with atomic_dir(d / name) as tmp:
        bundle.save(tmp, training={"resumable": True})
        with atomic_path(tmp / "optimizer.pt") as f:
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, f)
        if best_net is not None:
            holder = copy.deepcopy(bundle.net).cpu()
            holder.load_state_dict(best_net)
            save_weights(holder, tmp / "best.safetensors")
        if rng is not None:
            with atomic_path(tmp / "rng.pt") as f:
                torch.save(rng, f)
    state.update(saves=n, ckpt=name)
    atomic_write_json(_state_paths(out)["state"], state)  # last: names a complete directory
    for old in d.iterdir():
        if old.name.startswith(("ck-", ".ck-")) and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    for legacy in (
        "config.json",
        "model.safetensors",
        "vocab.txt",
        "tags.txt",
        "optimizer.pt",
        "best.safetensors",
    ):
        (d / legacy).unlink(missing_ok=True)


def _rng_state(device: str) -> dict[str, Any]:
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(torch.device(device)) if device.startswith("cuda") else None,
    }


def _gather_rng(world: World, device: str) -> list[dict[str, Any]]:
    """Every rank's torch RNG state (dropout), in rank order."""
    mine = _rng_state(device)
    if not world.distributed:
        return [mine]
    states: list[Any] = [None] * world.size
    dist.all_gather_object(states, mine)
    return states


def _restore_rng(path: Path, world: World, device: str, reseed: int) -> bool:
    """This rank's saved RNG state when the saved world size is this one; else a fresh seed."""
    states = torch.load(path, weights_only=False) if path.is_file() else None
    if states is not None and len(states) == world.size:
        torch.set_rng_state(states[world.rank]["cpu"])
        if device.startswith("cuda") and states[world.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(states[world.rank]["cuda"], torch.device(device))
        return True
    torch.manual_seed(reseed)
    return False


def _check_resume_config(saved: ALWIGConfig, cfg: ALWIGConfig) -> None:
    free = {
        "epochs",
        "pretrain_epochs",
        "eval_every",
        "num_workers",
        "encode_batch_size",
        "beam_size",
        "no_repeat_ngram",
        "length_penalty",
    }
    diff = [k for k, v in cfg.to_dict().items() if k not in free and saved.to_dict().get(k) != v]
    if diff:
        raise ConfigError(
            f"--resume with a different config ({', '.join(diff)}); start a new --out or drop --resume"
        )


def _check_resume_stream(saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """The streamed order differs from the in-memory one: a run resumes with the same choice."""
    saved = saved or {"phases": [], "block": now["block"]}
    if saved["phases"] != now["phases"] or (now["phases"] and saved["block"] != now["block"]):
        raise ConfigError(
            f"--resume with another data order: the saved run streamed {saved['phases'] or 'no phase'} "
            f"(block {saved['block']}), this one would stream {now['phases'] or 'no phase'} "
            f"(block {now['block']}); pass the same --stream/--stream-block"
        )


# --------------------------------------------------------------------------------------- feeders
class _MemoryFeeder:
    """A phase's batches from a split in memory: :func:`epoch_plan`'s global batches, cut by rank."""

    def __init__(self, bundle: ALWIG, data: SplitData, cfg: ALWIGConfig, phase: str, world: World):
        self.bundle, self.data, self.cfg, self.phase, self.world = bundle, data, cfg, phase, world
        self.rows_all = trainable_rows(data, phase)
        if not self.rows_all:
            raise DataError(f"no trainable rows in split {data.name!r} for {phase}")
        self.steps = len(epoch_plan(len(self.rows_all), cfg, phase, 0, world.size))

    def batches(
        self, epoch: int, start: int, step0: int, count: int
    ) -> Iterator[tuple[dict[str, Any], list[str], int]]:
        """(rank's batch, its vids, global batch size) of steps ``start .. start+count-1`` of ``epoch``."""
        data, world = self.data, self.world
        plan = epoch_plan(len(self.rows_all), self.cfg, self.phase, epoch, world.size)
        for j, gbatch in enumerate(plan[start : start + count]):
            grows = [self.rows_all[i] for i in gbatch]
            gtexts = text_choices(data, grows, self.cfg, self.phase, epoch * 100003 + step0 + j)
            share = len(grows) // world.size
            lo, hi = world.rank * share, (world.rank + 1) * share
            batch = make_batch(self.bundle, data, grows[lo:hi], {k: v[lo:hi] for k, v in gtexts.items()})
            yield batch, [data.vids[i] for i in grows[lo:hi]], len(gbatch)


class _StreamFeeder:
    """A phase's batches streamed from the feature shards (:class:`~create_bench.training.alwig.stream.LaneStream`)."""

    def __init__(self, bundle: ALWIG, stream: Any, cfg: ALWIGConfig, phase: str, world: World):
        self.bundle, self.stream, self.cfg, self.phase, self.world = bundle, stream, cfg, phase, world
        self.steps = int(stream.steps)
        share = cfg.batch_size // world.size
        self.positions = list(range(world.rank * share, (world.rank + 1) * share))

    def batches(
        self, epoch: int, start: int, step0: int, count: int
    ) -> Iterator[tuple[dict[str, Any], list[str], int]]:
        for win in self.stream.windows(epoch, start, start + count):
            data = SplitData(
                self.stream.split,
                win.vids,
                win.feats,
                win.mask,
                win.tags,
                win.titles,
                win.captions,
                win.raw_titles,
            )
            for k in range(win.first, win.stop):
                rows = list(range((k - win.first) * win.lanes, (k - win.first + 1) * win.lanes))
                salt = epoch * 100003 + step0 + k - start
                texts = text_choices_at(
                    data, rows, self.positions, self.cfg, self.phase, salt, self.cfg.batch_size
                )
                yield (
                    make_batch(self.bundle, data, rows, texts),
                    [win.vids[i] for i in rows],
                    self.cfg.batch_size,
                )


def _all_min(value: int, world: World, device: str) -> int:
    if not world.distributed:
        return value
    t = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def open_stream(
    data_dir: Path, split: str, cfg: ALWIGConfig, phase: str, world: World, device: str, block: int
) -> Any:
    """This rank's :class:`~create_bench.training.alwig.stream.LaneStream` of a phase, its epoch length
    agreed with the other ranks (collective: every rank calls it)."""
    from functools import partial

    from create_bench.training.alwig.stream import LaneStream

    t0 = time.perf_counter()
    stream = LaneStream(
        data_dir,
        split,
        feature_set=str(cfg.feature_set),
        num_frames=cfg.num_frames,
        feature_dim=int(cfg.feature_dim or 0),
        lanes=cfg.batch_size,
        block=block,
        seed=[cfg.seed, PHASES.index(phase)],
        rank=world.rank,
        world_size=world.size,
        keep=partial(row_trainable, phase),
    )
    steps = _all_min(stream.local_steps, world, device)
    stream.set_steps(steps)
    log.info(
        "alwig: streaming %s for %s: rank %d/%d reads %d rows (%d trainable), %d steps per epoch (%.1f s)",
        split,
        phase,
        world.rank,
        world.size,
        len(stream.vids),
        stream.trainable_rows,
        steps,
        time.perf_counter() - t0,
    )
    return stream


def _stream_feature_stats(bundle: ALWIG, stream: Any, world: World) -> None:
    """The model's feature standardisation from the streamed split (every rank its own rows)."""
    from create_bench.training.alwig.stream import merge_moments

    mine = stream.feature_moments()
    parts: list[Any] = [mine]
    if world.distributed:
        parts = [None] * world.size
        dist.all_gather_object(parts, mine)
    n, mean, m2 = merge_moments(parts)
    if n == 0:
        raise DataError(f"split {stream.split!r} has no real frames to standardise features with")
    if n == 1:
        bundle.net.set_feature_stats(torch.from_numpy(mean)[None, None], torch.ones(1, 1, dtype=torch.bool))
        return
    # Two points at mean +- std have exactly this mean and (population) std: the model computes its
    # statistics, with its own flooring, from them as from the whole split.
    std = np.sqrt(m2 / n)
    two = torch.from_numpy(np.stack([mean + std, mean - std]))[:, None, :]
    bundle.net.set_feature_stats(two, torch.ones(2, 1, dtype=torch.bool))


def _corpus(data_dir: Path, pretrain_split: str | None) -> tuple[Iterator[str], Iterator[list[str]]]:
    """The vocabularies' texts and tag lists, streamed from the data shards (as the in-memory path
    takes them: fine-tuning titles and captions, pre-training raw titles, both splits' tags)."""
    from create_bench.training.alwig.stream import scan_texts

    def texts() -> Iterator[str]:
        for b in scan_texts(data_dir, "train", columns=["titles", "captions"]):
            for col in ("titles", "captions"):
                for refs in b.column(col).to_pylist():
                    yield from refs or []
        if pretrain_split is not None:
            for b in scan_texts(data_dir, pretrain_split, columns=["raw_title"]):
                yield from (t or "" for t in b.column("raw_title").to_pylist())

    def tags() -> Iterator[list[str]]:
        for split in ("train",) + ((pretrain_split,) if pretrain_split is not None else ()):
            for b in scan_texts(data_dir, split, columns=["tags"]):
                yield from (list(t or []) for t in b.column("tags").to_pylist())

    return texts(), tags()


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train ALWIG as the module docstring describes; returns the training summary."""
    cfg = opts.cfg
    _check_options(opts)
    data_dir, out = Path(opts.data_dir), Path(opts.out_dir)
    world, device = setup_world(opts.device)
    is_main = world.rank == 0
    progress = is_main and (opts.progress if opts.progress is not None else None)
    cache_dir = Path(opts.cache_dir) if opts.cache_dir else default_cache_dir()
    if cfg.batch_size % world.size:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the world size {world.size}")
    torch.manual_seed(cfg.seed)
    from create_bench.data.shards import open_dataset

    info = open_dataset(data_dir)
    pre = opts.pretrain_split
    for split in ("train", "validation") + ((pre,) if opts.pretrain else ()):
        if split not in info.splits:
            raise DataError(
                f"dataset has no {split!r} split (splits: {', '.join(info.splits)})", path=str(data_dir)
            )
    phases = [("pretrain", cfg.pretrain_epochs)] if opts.pretrain else []
    phases.append(("finetune", cfg.epochs))
    phase_split = {"pretrain": pre, "finetune": "train"}
    streamed = {p: wants_stream(opts.stream, cfg, info.num_rows(phase_split[p])) for p, _ in phases}
    stream_record = {
        "mode": opts.stream,
        "phases": [p for p, _ in phases if streamed[p]],
        "block": opts.stream_block,
    }

    paths = _state_paths(out)
    resuming = opts.resume and paths["state"].is_file()
    if opts.resume and not resuming:
        log.warning("alwig: --resume given but %s has no saved state; starting from scratch", out)
    state: dict[str, Any] = {
        "phase": None,
        "epoch": 0,
        "step": 0,
        "best_loss": None,
        "best_epoch": None,
        "done": [],
    }

    # The frozen encoder and the cached features come first: the vocabularies need the texts.
    from create_bench.models.alwig.encoders import build_encoder

    encoder = (
        build_encoder(cfg.encoder, encoder_path=cfg.encoder_path, device=device)
        if cfg.encoder != "features"
        else None
    )
    enc_sig = encoder.signature if encoder is not None else f"features:{cfg.feature_set}"

    if not stream_record["phases"]:
        in_memory = ("train", "validation") + ((pre,) if opts.pretrain else ())
    else:  # streamed splits stay on disk; validation is only scored by rank 0
        in_memory = tuple(phase_split[p] for p, _ in phases if not streamed[p])
        in_memory += ("validation",) if is_main else ()
    splits = {
        s: load_split(encoder, data_dir, s, cfg, enc_sig, cache_dir, world, bool(progress)) for s in in_memory
    }
    streams: dict[str, Any] = {}

    def stream_of(phase: str) -> Any:
        if phase not in streams:
            streams[phase] = open_stream(
                data_dir, phase_split[phase], cfg, phase, world, device, opts.stream_block
            )
        return streams[phase]

    if resuming:
        state = json.loads(paths["state"].read_text("utf-8"))
        bundle = ALWIG.load(_ckpt_dir(out, state), device=device)
        _check_resume_config(bundle.cfg, cfg)
        _check_resume_stream(state.get("stream"), stream_record)
        bundle.cfg = cfg
        bundle.net.cfg = cfg
    else:
        first_phase = "pretrain" if opts.pretrain else "finetune"
        if not stream_record["phases"]:
            corpus = [t for s in ("train",) for r in splits[s].titles + splits[s].captions for t in r]
            tag_lists = list(splits["train"].tags)
            if opts.pretrain:
                corpus += splits[pre].raw_titles
                tag_lists += splits[pre].tags
            feature_dim = int(splits["train"].feats.shape[-1])
            bundle = ALWIG.create(cfg, corpus, tag_lists, feature_dim=feature_dim, encoder=encoder)
        else:
            texts, tags = _corpus(data_dir, pre if opts.pretrain else None)
            bundle = ALWIG.create(cfg, texts, tags, feature_dim=int(cfg.feature_dim or 0), encoder=encoder)
        if streamed[first_phase]:
            _stream_feature_stats(bundle, stream_of(first_phase), world)
        else:
            first = splits[pre] if opts.pretrain else splits["train"]
            bundle.net.set_feature_stats(first.feats, first.mask)
        bundle.to(device)
    net = bundle.net
    net.train()
    ddp_net: Any = net
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        unused = not cfg.use_align or cfg.align_weight == 0 or cfg.gen_weight == 0
        ddp_net = DDP(
            net,
            device_ids=[torch.device(device).index] if device.startswith("cuda") else None,
            find_unused_parameters=unused,
        )

    if resuming and is_main and "log_bytes" in state:
        _truncate_log(out / "log.jsonl", int(state["log_bytes"]))
    logger = _Logger(out / "log.jsonl", is_main, append=resuming)
    samples = _SampleLog(opts.sample_log, world)
    best_state: dict[str, torch.Tensor] | None = None
    ck = _ckpt_dir(out, state)
    if resuming and (ck / "best.safetensors").is_file():
        holder = copy.deepcopy(net).cpu()
        load_weights(holder, ck / "best.safetensors")
        best_state = {k: v.clone() for k, v in holder.state_dict().items()}
    summary: dict[str, Any] = {
        "phases": {},
        "world_size": world.size,
        "device": device,
        "stream": stream_record,
    }
    t_start = time.perf_counter()
    steps_run = 0  # optimiser steps of this process (interrupt_after_steps)

    def save(state: dict[str, Any], opt: Any, sched: Any, mid_epoch: bool) -> None:
        """Collective: every rank's RNG state (mid-epoch), then rank 0 writes."""
        rng = _gather_rng(world, device) if mid_epoch else None
        if is_main:
            state.update(stream=stream_record, world_size=world.size, log_bytes=logger.size())
            _save_state(bundle, opt, sched, out, state, best_state, rng)

    for phase, n_epochs in phases:
        if phase in state["done"] or n_epochs == 0:
            continue
        if streamed[phase]:
            feeder: Any = _StreamFeeder(bundle, stream_of(phase), cfg, phase, world)
        else:
            feeder = _MemoryFeeder(bundle, splits[phase_split[phase]], cfg, phase, world)
        steps_per_epoch = feeder.steps
        total = steps_per_epoch * n_epochs
        if opts.max_steps is not None:
            total = min(total, opts.max_steps)
        opt = make_optimizer(net, cfg)
        sched = make_scheduler(opt, total, cfg.warmup_ratio)
        start_epoch, start_pos = 0, 0
        same_phase = resuming and state.get("phase") == phase
        if same_phase:
            saved = torch.load(_ckpt_dir(out, state) / "optimizer.pt", map_location=device, weights_only=True)
            opt.load_state_dict(saved["optimizer"])
            sched.load_state_dict(saved["scheduler"])
            start_epoch, start_pos = int(state["epoch"]), int(state.get("epoch_step", 0))
        step = int(state["step"]) if same_phase else 0
        clips, t_phase = 0, time.perf_counter()
        for epoch in range(start_epoch, n_epochs):
            if opts.max_steps is not None and step >= total:
                break
            pos0 = start_pos if epoch == start_epoch else 0
            seed = cfg.seed * 100003 + PHASES.index(phase) * 1009 + epoch * 17 + world.rank
            torch.manual_seed(seed)
            if pos0:  # mid-epoch: the dropout RNG where the saved run was (same world size)
                _restore_rng(_ckpt_dir(out, state) / "rng.pt", world, device, seed + 1000003 * pos0)
            count = steps_per_epoch - pos0
            if opts.max_steps is not None:
                count = min(count, total - step)
            bar = _bar(steps_per_epoch, pos0, bool(progress), f"alwig {phase} {epoch + 1}/{n_epochs}")
            epoch_step = pos0
            with contextlib.closing(feeder.batches(epoch, pos0, step, count)) as batches:
                for batch, vids, n_rows in batches:
                    losses = ddp_net(batch, world)
                    opt.zero_grad(set_to_none=True)
                    losses["loss"].backward()
                    if cfg.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
                    opt.step()
                    sched.step()
                    step += 1
                    epoch_step += 1
                    steps_run += 1
                    clips += n_rows
                    bar.update(1)
                    samples.write(phase, epoch + 1, step, vids)
                    if step % opts.log_every == 0 or step == 1:
                        rec: dict[str, Any] = {k: round(float(v.detach()), 5) for k, v in losses.items()}
                        rec.update(
                            phase=phase,
                            epoch=epoch + 1,
                            step=step,
                            lr=opt.param_groups[0]["lr"],
                            logit_scale=round(float(net.scale().detach()), 3),
                            clips_per_s=round(clips / max(1e-9, time.perf_counter() - t_phase), 2),
                        )
                        logger.write(rec)
                        bar.set_postfix(loss=f"{rec['loss']:.3f}", gen=f"{rec['gen']:.3f}")
                    mid = epoch_step < steps_per_epoch and not (opts.max_steps is not None and step >= total)
                    if mid and opts.checkpoint_every and step % opts.checkpoint_every == 0:
                        state.update(phase=phase, epoch=epoch, epoch_step=epoch_step, step=step)
                        save(state, opt, sched, mid_epoch=True)
                        if world.distributed:
                            dist.barrier()
                    if opts.interrupt_after_steps is not None and steps_run >= opts.interrupt_after_steps:
                        bar.close()
                        return {"interrupted": True, "phase": phase, "epoch": epoch + 1, "step": step}
            bar.close()
            last = epoch + 1 == n_epochs or (opts.max_steps is not None and step >= total)
            if phase == "finetune" and ((epoch + 1) % cfg.eval_every == 0 or last):
                if is_main:
                    val = validate(bundle, splits["validation"])
                    # the selection value, oriented so that lower is better
                    sel = val["loss"] if cfg.select_metric == "loss" else -val["score"]
                    better = state["best_loss"] is None or sel < state["best_loss"]
                    if better:
                        state["best_loss"], state["best_epoch"] = sel, epoch + 1
                        best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                    logger.write(
                        {"phase": phase, "epoch": epoch + 1, "step": step, "val": val, "best": better}
                    )
                    log.info(
                        "alwig: epoch %d validation score %.4f, loss %.4f (align %.3f, gen %.3f)%s",
                        epoch + 1,
                        val["score"],
                        val["loss"],
                        val["align"],
                        val["gen"],
                        " *" if better else "",
                    )
            state.update(phase=phase, epoch=epoch + 1, epoch_step=0, step=step)
            save(state, opt, sched, mid_epoch=False)
            if world.distributed:
                dist.barrier()
            if (
                phase == "finetune"
                and opts.interrupt_after is not None
                and epoch + 1 >= opts.interrupt_after
                and not last
            ):
                return {"interrupted": True, "epoch": epoch + 1}
        state["done"] = [*state["done"], phase]
        state.update(phase=None, epoch=0, epoch_step=0, step=0)
        save(state, opt, sched, mid_epoch=False)
        streams.pop(phase, None)  # its texts and orders are no longer needed
        summary["phases"][phase] = {
            "epochs": n_epochs,
            "steps": step,
            "seconds": round(time.perf_counter() - t_phase, 1),
        }
    if is_main:
        if best_state is not None:
            net.load_state_dict(best_state)
        summary.update(
            best_epoch=state["best_epoch"],
            selected_by=cfg.select_metric,
            best_val=abs(state["best_loss"]) if state["best_loss"] is not None else None,
            seconds=round(time.perf_counter() - t_start, 1),
            data=info.name,
            data_fingerprint=info.fingerprint,
            selected_on="validation",
            pretrain=opts.pretrain,
        )
        bundle.save(out, training=summary)
        log.info("alwig: checkpoint written to %s (best epoch %s)", out, state["best_epoch"])
    if world.distributed:
        dist.barrier()
    return summary


def _bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, leave=False)

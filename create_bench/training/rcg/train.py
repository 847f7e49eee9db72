"""Training RCG (application code: the evaluation library never imports this package).

``create-bench train rcg --data DIR --out CKPT`` runs :func:`train`:

1. The frozen per-frame features of ``train`` and ``validation`` (and, with ``--pretrain`` or
   ``corpus_raw_titles``, the pre-training split) come from ALWIG's reader
   (:func:`create_bench.training.alwig.features.load_split`): the one feature store, keyed as for
   ALWIG, or the dataset's feature shards with ``encoder: features``.
2. The corpus (the open book): the train split's titles (plus the pre-training raw titles) and
   captions; the character vocabulary from it.
3. Stage ``retriever``: the dual encoder with InfoNCE (one title and one caption per video and
   step, drawn with the seed); the epoch with the best validation recall is kept.
4. The retriever, frozen, finds each training video's ``k`` nearest sentences per kind, never the
   video's own; stage ``generator``: the copy-generate decoder with cross-entropy (teacher forcing),
   the epoch with the lowest validation cross-entropy kept (validation videos retrieve from the
   training corpus, as test videos do).

Everything is seeded (the same data, config and world size give the same checkpoint). Under
``torchrun`` each process takes an equal share of every global batch; the contrastive loss sees the
all-gathered batch and the generation loss is scaled so that DDP's gradient average is the
single-process gradient (ALWIG's :mod:`~create_bench.training.alwig.distributed`: gloo on CPU,
NCCL on CUDA). Every rank validates (the split is small), so all keep the same best weights.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from create_bench.errors import ConfigError, DataError
from create_bench.fsutil import check_output_dir
from create_bench.models.rcg.bundle import RCG
from create_bench.models.rcg.config import RCGConfig
from create_bench.training.alwig.distributed import barrier, ddp, setup_world
from create_bench.training.alwig.features import SplitData, default_cache_dir, load_split
from create_bench.training.alwig.logs import JsonlLog
from create_bench.training.alwig.optim import make_scheduler
from create_bench.training.rcg import batches as B
from create_bench.training.rcg.validate import generator_loss, retriever_score

log = logging.getLogger(__name__)

#: What a checkpoint directory holds (all a new run there may overwrite).
CHECKPOINT_ENTRIES = frozenset({"config.json", "model.safetensors", "vocab.txt", "corpus.json", "log.jsonl"})


@dataclass(frozen=True)
class TrainOptions:
    """Everything one RCG training run is told (the model's own settings are its :class:`RCGConfig`)."""

    data_dir: Path
    out_dir: Path
    cfg: RCGConfig
    #: Put the pre-training split's raw titles in the title corpus (as ``corpus_raw_titles`` does).
    pretrain: bool = False
    pretrain_split: str = "pretrain"
    device: str = "cpu"
    cache_dir: Path | None = None
    progress: bool | None = None
    #: Stop each stage after this many optimiser steps (tests, smoke runs); None = full epochs.
    max_steps: int | None = None
    log_every: int = 10


@dataclass
class _Run:
    opts: TrainOptions
    world: Any
    device: str
    bundle: RCG
    splits: dict[str, SplitData]
    logger: JsonlLog
    ddp_net: Any = None

    @property
    def cfg(self) -> RCGConfig:
        return self.opts.cfg


def _entry(path: Path) -> bool:
    return path.name in CHECKPOINT_ENTRIES or path.name.startswith(".")  # temp files of atomic writes


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train RCG as the module docstring describes; returns the training summary."""
    run = _start(opts)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"world_size": run.world.size, "device": run.device, "stages": {}}
    train_rows = B.trainable_rows(run.splits["train"])
    if not train_rows:
        raise DataError("no training video has both a title and a caption", path=str(opts.data_dir))
    val = run.splits["validation"]
    summary["stages"]["retriever"] = _stage(
        run, "retriever", opts.cfg.retriever_epochs, train_rows,
        lambda rows, e, s: B.retriever_batch(run.bundle, run.splits["train"], rows, opts.cfg.seed, e, s),
        lambda: -retriever_score(run.bundle, val)["score"],
    )  # fmt: skip
    run.bundle.net.eval()
    retrieved = B.retrieve_split(run.bundle, run.splits["train"], opts.cfg.k)
    summary["stages"]["generator"] = _stage(
        run, "generator", opts.cfg.generator_epochs, train_rows,
        lambda rows, e, s: B.generator_batch(run.bundle, run.splits["train"], rows, retrieved, opts.cfg.seed, e, s),
        lambda: generator_loss(run.bundle, val)["loss"],
    )  # fmt: skip
    summary.update(
        seconds=round(time.perf_counter() - t0, 1),
        selected_on="validation",
        pretrain=opts.pretrain or opts.cfg.corpus_raw_titles,
    )
    from create_bench.data.shards import open_dataset

    info = open_dataset(opts.data_dir)
    summary.update(data=info.name, data_fingerprint=info.fingerprint)
    if run.world.rank == 0:
        run.bundle.save(opts.out_dir, training=summary)
        log.info("rcg: checkpoint written to %s", opts.out_dir)
    barrier(run.world)
    return summary


def _start(opts: TrainOptions) -> _Run:
    """The world, the output directory's check, the data and a fresh model."""
    from create_bench.data.shards import open_dataset
    from create_bench.features.encoders import build_encoder

    cfg = opts.cfg
    world, device = setup_world(opts.device)
    if cfg.batch_size % world.size:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the world size {world.size}")
    if opts.max_steps is not None and opts.max_steps < 1:
        raise ConfigError(f"max_steps must be >= 1, got {opts.max_steps}")
    data_dir, out = Path(opts.data_dir), Path(opts.out_dir)
    check_output_dir(out, owns=_entry, inputs=[data_dir], what="create-bench train rcg")
    info = open_dataset(data_dir)
    want = ["train", "validation"] + ([opts.pretrain_split] if opts.pretrain or cfg.corpus_raw_titles else [])
    for split in want:
        if split not in info.splits:
            raise DataError(
                f"dataset has no {split!r} split (splits: {', '.join(info.splits)})", path=str(data_dir)
            )
    fcfg = cfg.frame_cfg()
    encoder = (
        build_encoder(fcfg.encoder, encoder_path=fcfg.encoder_path, device=device)
        if fcfg.encoder != "features"
        else None
    )
    sig = encoder.signature if encoder is not None else f"features:{fcfg.feature_set}"
    cache = opts.cache_dir or default_cache_dir()
    progress = bool(opts.progress)
    splits = {s: load_split(encoder, data_dir, s, fcfg, sig, cache, world, progress) for s in want}
    train_split = splits["train"]
    corpus = B.build_corpus(train_split, splits.get(opts.pretrain_split))
    torch.manual_seed(cfg.seed)
    bundle = RCG.create(cfg, corpus, feature_dim=int(train_split.feats.shape[-1]), encoder=encoder)
    bundle.net.set_feature_stats(train_split.feats, train_split.mask)
    bundle.to(device)
    logger = JsonlLog(out / "log.jsonl", world.rank == 0, append=False)
    return _Run(opts, world, device, bundle, splits, logger)


def _optimizer(module: torch.nn.Module, cfg: RCGConfig) -> torch.optim.Optimizer:
    """AdamW; no weight decay on biases, norms, embeddings and the logit scale."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in module.named_parameters():
        (no_decay if p.dim() < 2 or "embed" in name or "pos" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _stage(
    run: _Run,
    stage: str,
    epochs: int,
    rows: list[int],
    make_batch: Callable[[list[int], int, int], dict[str, Any]],
    val_loss: Callable[[], float],
) -> dict[str, Any]:
    """Train one stage's part of the network; keep the epoch with the lowest ``val_loss``."""
    cfg, world, net = run.cfg, run.world, run.bundle.net
    part: torch.nn.Module = net.retriever if stage == "retriever" else net.generator
    steps_per_epoch = len(B.epoch_batches(rows, cfg.batch_size, cfg.seed, stage, 0, world.size))
    total = steps_per_epoch * epochs
    if run.opts.max_steps is not None:
        total = min(total, run.opts.max_steps)
    if total == 0:
        return {"epochs": 0, "steps": 0, "seconds": 0.0, "best_epoch": None}
    opt = _optimizer(part, cfg)
    sched = make_scheduler(opt, total, cfg.warmup_ratio)
    ddp_net = ddp(net, world, run.device, find_unused=True)
    t0, step, best, best_state, best_epoch = time.perf_counter(), 0, float("inf"), None, None
    for epoch in range(epochs):
        if step >= total:
            break
        net.train()
        torch.manual_seed(cfg.seed * 100003 + B.STAGES.index(stage) * 1009 + epoch * 17 + world.rank)
        for batch_rows in B.epoch_batches(rows, cfg.batch_size, cfg.seed, stage, epoch, world.size):
            if step >= total:
                break
            mine = [int(i) for i in B.rank_share(batch_rows, world.rank, world.size)]
            losses = ddp_net(make_batch(mine, epoch, step), world, stage)
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(part.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            if step % run.opts.log_every == 0 or step == 1:
                rec = {k: round(float(v.detach()), 5) for k, v in losses.items()}
                run.logger.write({"stage": stage, "epoch": epoch + 1, "step": step, **rec})
        last = epoch + 1 == epochs or step >= total
        if (epoch + 1) % cfg.eval_every == 0 or last:
            net.eval()
            loss = val_loss()
            run.logger.write({"stage": stage, "epoch": epoch + 1, "step": step, "validation": round(loss, 5)})
            log.info("rcg %s epoch %d: validation %.4f", stage, epoch + 1, loss)
            if loss < best:
                best, best_epoch = loss, epoch + 1
                best_state = copy.deepcopy(part.state_dict())
    if best_state is not None:
        part.load_state_dict(best_state)
    net.eval()
    return {
        "epochs": epochs,
        "steps": step,
        "seconds": round(time.perf_counter() - t0, 1),
        "best_epoch": best_epoch,
        "best_val": round(abs(best), 5),
        "selected_by": "recall" if stage == "retriever" else "cross-entropy",
    }

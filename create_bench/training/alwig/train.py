"""Training ALWIG (application code: the evaluation library never imports this package).

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
   last, :func:`~.validate.validate` scores the model; the best epoch's weights become the checkpoint. The
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

Modules: :mod:`.options` (:class:`TrainOptions`), :mod:`.features` (feature cache, splits in
memory), :mod:`.batches` (data order, text choices, input tensors), :mod:`.feeders` and
:mod:`.stream` (batches by rank), :mod:`.validate` (validation, selection), :mod:`.optim`,
:mod:`.state` (resumable state, RNG), :mod:`.logs`, :mod:`.distributed`, :mod:`.context` (one
run's working state), :mod:`.loop` (phase and epoch loops) and this module (set-up, the phases in
order, the final checkpoint).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from create_bench.errors import ConfigError, DataError
from create_bench.fsutil import check_output_dir
from create_bench.models.alwig.bundle import ALWIG, load_weights
from create_bench.training.alwig.context import RunContext
from create_bench.training.alwig.distributed import barrier, setup_world, wrap_ddp
from create_bench.training.alwig.features import load_split
from create_bench.training.alwig.feeders import stream_corpus, stream_feature_stats
from create_bench.training.alwig.logs import JsonlLog, SampleLog, truncate_log
from create_bench.training.alwig.loop import run_phase
from create_bench.training.alwig.options import TrainOptions, check_options, wants_stream
from create_bench.training.alwig.state import (
    STATE_DIR,
    check_resume_config,
    check_resume_stream,
    ckpt_dir,
    state_paths,
)

__all__ = ["TrainOptions", "train"]

log = logging.getLogger(__name__)


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train ALWIG as the module docstring describes; returns the training summary."""
    check_options(opts)
    ctx = _start(opts)
    _load_data(ctx)
    _build_model(ctx)
    _open_logs(ctx)
    for phase, n_epochs in ctx.phases:
        if phase in ctx.state["done"] or n_epochs == 0:
            continue
        stopped = run_phase(ctx, phase, n_epochs)
        if stopped is not None:
            return stopped
    return _finish(ctx)


#: What a checkpoint directory holds (all a new run there may overwrite): the bundle, the log,
#: the resumable state.
CHECKPOINT_ENTRIES = frozenset(
    {"config.json", "model.safetensors", "vocab.txt", "tags.txt", "log.jsonl", STATE_DIR}
)


def _checkpoint_entry(path: Path) -> bool:
    return path.name in CHECKPOINT_ENTRIES or path.name.startswith(".")  # temp files of atomic writes


def _start(opts: TrainOptions) -> RunContext:
    """The world, the dataset's checks and the plan of phases (which stream), and whether to resume."""
    cfg = opts.cfg
    world, device = setup_world(opts.device)
    if cfg.batch_size % world.size:
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the world size {world.size}")
    torch.manual_seed(cfg.seed)
    from create_bench.data.shards import open_dataset

    data_dir, out = Path(opts.data_dir), Path(opts.out_dir)
    check_output_dir(out, owns=_checkpoint_entry, inputs=[data_dir], what="create-bench train alwig")
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
    resuming = opts.resume and state_paths(out)["state"].is_file()
    if opts.resume and not resuming:
        log.warning("alwig: --resume given but %s has no saved state; starting from scratch", out)
    return RunContext(opts, world, device, info, phases, phase_split, streamed, stream_record, resuming)


def _load_data(ctx: RunContext) -> None:
    """The frozen encoder and the splits held in memory (their features computed once, cached)."""
    cfg, opts = ctx.cfg, ctx.opts
    # The frozen encoder and the cached features come first: the vocabularies need the texts.
    from create_bench.features.encoders import build_encoder

    encoder = (
        build_encoder(cfg.encoder, encoder_path=cfg.encoder_path, device=ctx.device)
        if cfg.encoder != "features"
        else None
    )
    enc_sig = encoder.signature if encoder is not None else f"features:{cfg.feature_set}"
    pre = opts.pretrain_split
    if not ctx.stream_record["phases"]:
        in_memory = ("train", "validation") + ((pre,) if opts.pretrain else ())
    else:  # streamed splits stay on disk; validation is only scored by rank 0
        in_memory = tuple(ctx.phase_split[p] for p, _ in ctx.phases if not ctx.streamed[p])
        in_memory += ("validation",) if ctx.is_main else ()
    ctx.encoder = encoder
    ctx.splits = {
        s: load_split(encoder, ctx.data_dir, s, cfg, enc_sig, ctx.cache_dir, ctx.world, ctx.progress)
        for s in in_memory
    }


def _build_model(ctx: RunContext) -> None:
    """The model: loaded from the saved state when resuming, else created from the training texts;
    in training mode, wrapped in DDP under torchrun."""
    cfg = ctx.cfg
    if ctx.resuming:
        ctx.state = json.loads(state_paths(ctx.out)["state"].read_text("utf-8"))
        bundle = ALWIG.load(ckpt_dir(ctx.out, ctx.state), device=ctx.device)
        check_resume_config(bundle.cfg, cfg)
        check_resume_stream(ctx.state.get("stream"), ctx.stream_record)
        bundle.cfg = cfg
        bundle.net.cfg = cfg
    else:
        bundle = _create_bundle(ctx)
    ctx.bundle = bundle
    bundle.net.train()
    ctx.ddp_net = wrap_ddp(bundle.net, cfg, ctx.world, ctx.device)


def _create_bundle(ctx: RunContext) -> ALWIG:
    """A fresh model: vocabularies from the training texts, feature statistics from the first phase's split."""
    cfg, opts, splits = ctx.cfg, ctx.opts, ctx.splits
    pre = opts.pretrain_split
    first_phase = "pretrain" if opts.pretrain else "finetune"
    if not ctx.stream_record["phases"]:
        corpus = [t for s in ("train",) for r in splits[s].titles + splits[s].captions for t in r]
        tag_lists = list(splits["train"].tags)
        if opts.pretrain:
            corpus += splits[pre].raw_titles
            tag_lists += splits[pre].tags
        feature_dim = int(splits["train"].feats.shape[-1])
        bundle = ALWIG.create(cfg, corpus, tag_lists, feature_dim=feature_dim, encoder=ctx.encoder)
    else:
        texts, tags = stream_corpus(ctx.data_dir, pre if opts.pretrain else None)
        bundle = ALWIG.create(cfg, texts, tags, feature_dim=int(cfg.feature_dim or 0), encoder=ctx.encoder)
    if ctx.streamed[first_phase]:
        stream_feature_stats(bundle, ctx.stream_of(first_phase), ctx.world)
    else:
        first = splits[pre] if opts.pretrain else splits["train"]
        bundle.net.set_feature_stats(first.feats, first.mask)
    bundle.to(ctx.device)
    return bundle


def _open_logs(ctx: RunContext) -> None:
    """The logs (a resumed run drops what was logged after its saved state), the best weights so
    far when resuming, and the summary."""
    out = ctx.out
    if ctx.resuming and ctx.is_main and "log_bytes" in ctx.state:
        truncate_log(out / "log.jsonl", int(ctx.state["log_bytes"]))
    ctx.logger = JsonlLog(out / "log.jsonl", ctx.is_main, append=ctx.resuming)
    ctx.samples = SampleLog(ctx.opts.sample_log, ctx.world)
    ck = ckpt_dir(out, ctx.state)
    if ctx.resuming and (ck / "best.safetensors").is_file():
        holder = copy.deepcopy(ctx.net).cpu()
        load_weights(holder, ck / "best.safetensors")
        ctx.best_state = {k: v.clone() for k, v in holder.state_dict().items()}
    ctx.summary = {
        "phases": {},
        "world_size": ctx.world.size,
        "device": ctx.device,
        "stream": ctx.stream_record,
    }
    ctx.t_start = time.perf_counter()


def _finish(ctx: RunContext) -> dict[str, Any]:
    """Rank 0 writes the checkpoint: the best validated weights, with the training summary."""
    state, summary = ctx.state, ctx.summary
    if ctx.is_main:
        assert ctx.bundle is not None
        if ctx.best_state is not None:
            ctx.net.load_state_dict(ctx.best_state)
        summary.update(
            best_epoch=state["best_epoch"],
            selected_by=ctx.cfg.select_metric,
            best_val=abs(state["best_loss"]) if state["best_loss"] is not None else None,
            seconds=round(time.perf_counter() - ctx.t_start, 1),
            data=ctx.info.name,
            data_fingerprint=ctx.info.fingerprint,
            selected_on="validation",
            pretrain=ctx.opts.pretrain,
        )
        ctx.bundle.save(ctx.out, training=summary)
        log.info("alwig: checkpoint written to %s (best epoch %s)", ctx.out, state["best_epoch"])
    barrier(ctx.world)
    return summary

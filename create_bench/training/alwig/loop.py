"""The phase and epoch loops: optimiser steps over a feeder's batches, step logs, mid-epoch and
epoch-end saves, validation and selection, and the stops tests use to simulate a crash.

Everything is seeded: dropout is reseeded at each epoch start from (seed, phase, epoch, rank), a
mid-epoch resume restores the saved RNG state, and the data order and text choices come from
:mod:`~create_bench.training.alwig.batches` (seeded by epoch and step), so the same data, config
and world size give the same checkpoint.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from create_bench.training.alwig.context import RunContext
from create_bench.training.alwig.distributed import barrier
from create_bench.training.alwig.feeders import MemoryFeeder, StreamFeeder
from create_bench.training.alwig.optim import make_optimizer, make_scheduler
from create_bench.training.alwig.options import PHASES
from create_bench.training.alwig.state import ckpt_dir, restore_rng
from create_bench.training.alwig.validate import select_on_validation


@dataclass
class PhaseRun:
    """One phase in progress: its feeder, optimiser, schedule and counters."""

    name: str
    n_epochs: int
    feeder: Any
    #: Optimiser steps of the phase (capped by ``max_steps``).
    total: int
    max_steps: int | None
    opt: Any
    sched: Any
    step: int = 0
    clips: int = 0
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def steps_per_epoch(self) -> int:
        return int(self.feeder.steps)

    def at_limit(self) -> bool:
        """Whether ``max_steps`` has been reached."""
        return self.max_steps is not None and self.step >= self.total


def run_phase(ctx: RunContext, phase: str, n_epochs: int) -> dict[str, Any] | None:
    """Train one phase (from where a resumed state stopped); a dict when stopped as if interrupted."""
    ph, start_epoch, start_pos = _begin_phase(ctx, phase, n_epochs)
    opts = ctx.opts
    for epoch in range(start_epoch, n_epochs):
        if ph.at_limit():
            break
        pos0 = start_pos if epoch == start_epoch else 0
        stopped = run_epoch(ctx, ph, epoch, pos0)
        if stopped is not None:
            return stopped
        last = epoch + 1 == n_epochs or ph.at_limit()
        if phase == "finetune" and ((epoch + 1) % ctx.cfg.eval_every == 0 or last) and ctx.is_main:
            select_on_validation(ctx, phase, epoch, ph.step)
        ctx.state.update(phase=phase, epoch=epoch + 1, epoch_step=0, step=ph.step)
        ctx.save(ph.opt, ph.sched, mid_epoch=False)
        barrier(ctx.world)
        if (
            phase == "finetune"
            and opts.interrupt_after is not None
            and epoch + 1 >= opts.interrupt_after
            and not last
        ):
            return {"interrupted": True, "epoch": epoch + 1}
    _end_phase(ctx, ph)
    return None


def _begin_phase(ctx: RunContext, phase: str, n_epochs: int) -> tuple[PhaseRun, int, int]:
    """The phase's feeder, optimiser and schedule, restored when resuming inside this phase; with
    the epoch and position in it to start from."""
    cfg, opts, state = ctx.cfg, ctx.opts, ctx.state
    assert ctx.bundle is not None
    feeder: Any
    if ctx.streamed[phase]:
        feeder = StreamFeeder(ctx.bundle, ctx.stream_of(phase), cfg, phase, ctx.world)
    else:
        feeder = MemoryFeeder(ctx.bundle, ctx.splits[ctx.phase_split[phase]], cfg, phase, ctx.world)
    total = feeder.steps * n_epochs
    if opts.max_steps is not None:
        total = min(total, opts.max_steps)
    opt = make_optimizer(ctx.net, cfg)
    sched = make_scheduler(opt, total, cfg.warmup_ratio)
    start_epoch, start_pos = 0, 0
    same_phase = ctx.resuming and state.get("phase") == phase
    if same_phase:
        path = ckpt_dir(ctx.out, state) / "optimizer.pt"
        saved = torch.load(path, map_location=ctx.device, weights_only=True)
        opt.load_state_dict(saved["optimizer"])
        sched.load_state_dict(saved["scheduler"])
        start_epoch, start_pos = int(state["epoch"]), int(state.get("epoch_step", 0))
    step = int(state["step"]) if same_phase else 0
    ph = PhaseRun(phase, n_epochs, feeder, total, opts.max_steps, opt, sched, step=step)
    return ph, start_epoch, start_pos


def _end_phase(ctx: RunContext, ph: PhaseRun) -> None:
    """Mark the phase done in the saved state and record it in the summary."""
    state = ctx.state
    state["done"] = [*state["done"], ph.name]
    state.update(phase=None, epoch=0, epoch_step=0, step=0)
    ctx.save(ph.opt, ph.sched, mid_epoch=False)
    ctx.streams.pop(ph.name, None)  # its texts and orders are no longer needed
    ctx.summary["phases"][ph.name] = {
        "epochs": ph.n_epochs,
        "steps": ph.step,
        "seconds": round(time.perf_counter() - ph.t_start, 1),
    }


def run_epoch(ctx: RunContext, ph: PhaseRun, epoch: int, pos0: int) -> dict[str, Any] | None:
    """Steps ``pos0 ..`` of one epoch; a dict when stopped as if killed (``interrupt_after_steps``)."""
    cfg, opts, world = ctx.cfg, ctx.opts, ctx.world
    seed = cfg.seed * 100003 + PHASES.index(ph.name) * 1009 + epoch * 17 + world.rank
    torch.manual_seed(seed)
    if pos0:  # mid-epoch: the dropout RNG where the saved run was (same world size)
        restore_rng(ckpt_dir(ctx.out, ctx.state) / "rng.pt", world, ctx.device, seed + 1000003 * pos0)
    count = ph.steps_per_epoch - pos0
    if opts.max_steps is not None:
        count = min(count, ph.total - ph.step)
    bar = _bar(ph.steps_per_epoch, pos0, ctx.progress, f"alwig {ph.name} {epoch + 1}/{ph.n_epochs}")
    epoch_step = pos0
    with contextlib.closing(ph.feeder.batches(epoch, pos0, ph.step, count)) as batches:
        for batch, vids, n_rows in batches:
            losses = _optimizer_step(ctx, ph, batch)
            epoch_step += 1
            ctx.steps_run += 1
            ph.clips += n_rows
            bar.update(1)
            assert ctx.samples is not None
            ctx.samples.write(ph.name, epoch + 1, ph.step, vids)
            if ph.step % opts.log_every == 0 or ph.step == 1:
                _log_step(ctx, ph, epoch, losses, bar)
            mid = epoch_step < ph.steps_per_epoch and not ph.at_limit()
            if mid and opts.checkpoint_every and ph.step % opts.checkpoint_every == 0:
                ctx.state.update(phase=ph.name, epoch=epoch, epoch_step=epoch_step, step=ph.step)
                ctx.save(ph.opt, ph.sched, mid_epoch=True)
                barrier(world)
            if opts.interrupt_after_steps is not None and ctx.steps_run >= opts.interrupt_after_steps:
                bar.close()
                return {"interrupted": True, "phase": ph.name, "epoch": epoch + 1, "step": ph.step}
    bar.close()
    return None


def _optimizer_step(ctx: RunContext, ph: PhaseRun, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Forward, backward (DDP averages the gradients), clip, step the optimiser and the schedule."""
    losses = ctx.ddp_net(batch, ctx.world)
    ph.opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    if ctx.cfg.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(ctx.net.parameters(), ctx.cfg.grad_clip)
    ph.opt.step()
    ph.sched.step()
    ph.step += 1
    return losses


def _log_step(ctx: RunContext, ph: PhaseRun, epoch: int, losses: dict[str, torch.Tensor], bar: Any) -> None:
    rec: dict[str, Any] = {k: round(float(v.detach()), 5) for k, v in losses.items()}
    rec.update(
        phase=ph.name,
        epoch=epoch + 1,
        step=ph.step,
        lr=ph.opt.param_groups[0]["lr"],
        logit_scale=round(float(ctx.net.scale().detach()), 3),
        clips_per_s=round(ph.clips / max(1e-9, time.perf_counter() - ph.t_start), 2),
    )
    assert ctx.logger is not None
    ctx.logger.write(rec)
    bar.set_postfix(loss=f"{rec['loss']:.3f}", gen=f"{rec['gen']:.3f}")


def _bar(total: int, initial: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="step", disable=not enabled, leave=False)

"""The resumable state in ``OUT/train_state/``: ``state.json`` (phase, epoch, position in the epoch,
step, best validation, world size, data order) naming a complete ``ck-N/`` directory (weights,
optimiser and scheduler, best weights, every rank's RNG state), written so that a crash while
saving leaves the previous state whole; and the checks a resumed run makes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from create_bench.errors import ConfigError
from create_bench.fsutil import atomic_dir, atomic_path, atomic_write_json
from create_bench.models.alwig.bundle import ALWIG, save_weights
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.models.alwig.model import World

STATE_DIR = "train_state"


def state_paths(out: Path) -> dict[str, Path]:
    d = out / STATE_DIR
    return {"dir": d, "state": d / "state.json"}


def ckpt_dir(out: Path, state: dict[str, Any]) -> Path:
    """The directory of a saved state's weights and optimiser (older runs kept them in ``train_state``)."""
    d = state_paths(out)["dir"]
    return d / state["ckpt"] if state.get("ckpt") else d


def save_state(
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

    d = state_paths(out)["dir"]
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
    atomic_write_json(state_paths(out)["state"], state)  # last: names a complete directory
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


def rng_state(device: str) -> dict[str, Any]:
    return {
        "cpu": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(torch.device(device)) if device.startswith("cuda") else None,
    }


def gather_rng(world: World, device: str) -> list[dict[str, Any]]:
    """Every rank's torch RNG state (dropout), in rank order."""
    mine = rng_state(device)
    if not world.distributed:
        return [mine]
    states: list[Any] = [None] * world.size
    dist.all_gather_object(states, mine)
    return states


def restore_rng(path: Path, world: World, device: str, reseed: int) -> bool:
    """This rank's saved RNG state when the saved world size is this one; else a fresh seed."""
    states = torch.load(path, weights_only=False) if path.is_file() else None
    if states is not None and len(states) == world.size:
        torch.set_rng_state(states[world.rank]["cpu"])
        if device.startswith("cuda") and states[world.rank]["cuda"] is not None:
            torch.cuda.set_rng_state(states[world.rank]["cuda"], torch.device(device))
        return True
    torch.manual_seed(reseed)
    return False


def check_resume_config(saved: ALWIGConfig, cfg: ALWIGConfig) -> None:
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


def check_resume_stream(saved: dict[str, Any] | None, now: dict[str, Any]) -> None:
    """The streamed order differs from the in-memory one: a run resumes with the same choice."""
    saved = saved or {"phases": [], "block": now["block"]}
    if saved["phases"] != now["phases"] or (now["phases"] and saved["block"] != now["block"]):
        raise ConfigError(
            f"--resume with another data order: the saved run streamed {saved['phases'] or 'no phase'} "
            f"(block {saved['block']}), this one would stream {now['phases'] or 'no phase'} "
            f"(block {now['block']}); pass the same --stream/--stream-block"
        )

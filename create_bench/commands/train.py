"""``create-bench train alwig|rcg``: train a learned baseline (see create_bench/training/alwig/ and
create_bench/training/rcg/)."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "train",
        help="train a baseline model (alwig, rcg)",
        description="Train a baseline: 'alwig' or 'rcg' (whose checkpoint 'retrieved-title' also reads); "
        "the other baselines need no training. Options marked ALWIG only are refused for rcg.",
    )
    p.add_argument("model", choices=["alwig", "rcg"], help="which model to train")
    p.add_argument(
        "--data", required=True, help="dataset directory (train/validation splits; pretrain with --pretrain)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="checkpoint directory to write (default checkpoints/<MODEL>-<DATA's directory name>, where "
        "create-bench eval --model MODEL looks for it)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="YAML config, or a shipped name: alwig sample, paper; rcg sample, default (default: sample "
        "for CREATE-sample, by its manifest, paper/default for any other dataset)",
    )
    p.add_argument(
        "--pretrain",
        action="store_true",
        help="alwig: pre-train on the 'pretrain' split first (raw title + tags); rcg: add its raw titles "
        "to the title corpus (the open book)",
    )
    p.add_argument(
        "--pretrain-split",
        default="pretrain",
        help="split --pretrain reads (default pretrain; an imported CREATE release has pretrain-3m, pretrain-10m)",
    )
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda (under torchrun each process takes its LOCAL_RANK GPU)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT/train_state if present (mid-epoch too, also on another world size)",
    )
    p.add_argument(
        "--stream",
        choices=["auto", "on", "off"],
        default="auto",
        help="training rows: off = whole split in memory on every rank; on = streamed by rank from the "
        "feature shards (encoder: features); auto (default) = stream splits whose features exceed 1 GiB",
    )
    p.add_argument(
        "--stream-block",
        type=int,
        default=64,
        help="rows per lane block of the streamed order, its shuffle window (default 64)",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=0,
        help="also save the resumable state every N optimiser steps (default 0: at epoch ends only)",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help="fine-tuning epochs (overrides the config; rcg: both stages)"
    )
    p.add_argument("--k", type=int, default=None, help="rcg: retrieved sentences (pointers) per video")
    p.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    p.add_argument("--no-tags", action="store_true", help="ablation: no tags in the alignment module")
    p.add_argument("--no-align", action="store_true", help="ablation: no alignment (contrastive) loss")
    p.add_argument(
        "--cache-dir",
        default=None,
        help="frame-feature cache (default $CREATE_BENCH_CACHE or ~/.cache/create-bench)",
    )
    p.add_argument(
        "--max-steps", type=int, default=None, help="stop each phase after this many steps (smoke runs)"
    )
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.model == "rcg":
        return run_rcg(args)
    from pathlib import Path

    from create_bench.errors import ConfigError

    if args.k is not None:
        raise ConfigError("train alwig: --k is an rcg option")
    from create_bench.models.alwig import default_checkpoint
    from create_bench.models.alwig.config import config_for_dataset
    from create_bench.training.alwig.train import TrainOptions, train

    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.no_tags:
        overrides["use_tags"] = False
    if args.no_align:
        overrides["use_align"] = False
    cfg = config_for_dataset(args.data, args.config, **overrides)  # refuses 'fixed' off CREATE-sample
    args.out = args.out or str(default_checkpoint(args.data))
    if args.max_steps is not None and args.max_steps < 1:
        raise ConfigError(f"--max-steps must be >= 1, got {args.max_steps}")
    summary = train(
        TrainOptions(
            data_dir=Path(args.data),
            out_dir=Path(args.out),
            cfg=cfg,
            pretrain=args.pretrain,
            pretrain_split=args.pretrain_split,
            device=args.device,
            resume=args.resume,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            progress=args.progress,
            max_steps=args.max_steps,
            stream=args.stream,
            stream_block=args.stream_block,
            checkpoint_every=args.checkpoint_every,
        )
    )
    if summary.get("best_epoch") is not None:
        print(
            f"alwig: wrote {args.out} (best epoch {summary['best_epoch']}, "
            f"validation {summary['selected_by']} {summary['best_val']:.4f}, {summary['seconds']:.0f} s)"
        )
    return 0


#: ALWIG-only options and the values that mean "not given".
_ALWIG_ONLY = {
    "resume": False,
    "stream": "auto",
    "stream_block": 64,
    "checkpoint_every": 0,
    "no_tags": False,
    "no_align": False,
}


def run_rcg(args: argparse.Namespace) -> int:
    from pathlib import Path

    from create_bench.errors import ConfigError
    from create_bench.models.rcg import default_checkpoint
    from create_bench.models.rcg.config import config_for_dataset
    from create_bench.training.rcg.train import TrainOptions, train

    given = [k for k, v in _ALWIG_ONLY.items() if getattr(args, k) != v]
    if given:
        raise ConfigError(
            f"train rcg: option(s) {', '.join('--' + g.replace('_', '-') for g in given)} are ALWIG only"
        )
    overrides: dict[str, Any] = {}
    if args.epochs is not None:
        overrides.update(retriever_epochs=args.epochs, generator_epochs=args.epochs)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.k is not None:
        overrides["k"] = args.k
    cfg = config_for_dataset(args.data, args.config, **overrides)
    out = args.out or str(default_checkpoint(args.data))
    summary = train(
        TrainOptions(
            data_dir=Path(args.data),
            out_dir=Path(out),
            cfg=cfg,
            pretrain=args.pretrain,
            pretrain_split=args.pretrain_split,
            device=args.device,
            cache_dir=Path(args.cache_dir) if args.cache_dir else None,
            progress=args.progress,
            max_steps=args.max_steps,
        )
    )
    st = summary["stages"]
    print(
        f"rcg: wrote {out} (retriever best epoch {st['retriever'].get('best_epoch')}, generator best epoch "
        f"{st['generator'].get('best_epoch')}, {summary['seconds']:.0f} s)"
    )
    return 0

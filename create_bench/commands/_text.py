"""``--text-encoder`` and its options (BERTScore-F, ACTEr-r), shared by score, eval, metric-agreement
and ``leaderboard serve/worker`` (where :func:`text_argv` hands them to the worker processes)."""

from __future__ import annotations

import argparse
from typing import Any


def add_text_encoder_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("BERTScore-F and ACTEr-r (generation; off without --text-encoder)")
    g.add_argument(
        "--text-encoder",
        default=None,
        metavar="NAME|DIR",
        help="BERT-family encoder: a local directory, or a hub name already in the HF cache (nothing is "
        "downloaded), e.g. bert-base-chinese",
    )
    g.add_argument(
        "--text-encoder-layer", type=int, default=None, help="hidden layer (default 8, or the last)"
    )
    g.add_argument("--text-encoder-device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    g.add_argument(
        "--text-encoder-batch-size",
        type=int,
        default=64,
        help="sentences per forward pass (default 64; speed only, not in the signature)",
    )
    g.add_argument("--bertscore-idf", action="store_true", help="IDF weights over the split's references")
    g.add_argument(
        "--bertscore-baseline",
        default="auto",
        help="auto (bert-base-chinese layer 8: bert_score's zh baseline; else none), none, or a "
        "bert_score baseline file LAYER,P,R,F (default auto)",
    )
    g.add_argument("--acter-eps", type=float, default=None, help="ACTEr-r weight eps + omega (default 0.1)")
    g.add_argument(
        "--acter-rule", default=None, choices=("eps+omega", "idf*(eps+omega)"), help="ACTEr-r weight rule"
    )


def text_options(args: argparse.Namespace, *, absolute: bool = False) -> Any:
    """The :class:`~create_bench.features.text_metrics.TextMetricOptions` the flags ask for, or None.

    ``absolute``: an encoder given as an existing directory is made absolute (the server's worker
    processes, started elsewhere, find the same one)."""
    if not getattr(args, "text_encoder", None):
        return None
    import os

    from create_bench.features.text_metrics import TextMetricOptions

    encoder = args.text_encoder
    if absolute and os.path.isdir(encoder):
        encoder = os.path.abspath(encoder)
    kw: dict[str, Any] = {
        "layer": args.text_encoder_layer,
        "idf": args.bertscore_idf,
        "baseline": args.bertscore_baseline,
        "device": args.text_encoder_device,
        "batch_size": args.text_encoder_batch_size,
    }
    if args.acter_eps is not None:
        kw["eps"] = args.acter_eps
    if args.acter_rule is not None:
        kw["rule"] = args.acter_rule
    return TextMetricOptions(encoder, **kw)


def text_argv(options: Any) -> list[str]:
    """The arguments :func:`text_options` turns back into ``options`` (a
    :class:`~create_bench.features.text_metrics.TextMetricOptions`, or None: no arguments)."""
    if options is None:
        return []
    argv = ["--text-encoder", str(options.encoder)]
    if options.layer is not None:
        argv += ["--text-encoder-layer", str(options.layer)]
    argv += ["--text-encoder-device", options.device, "--text-encoder-batch-size", str(options.batch_size)]
    argv += ["--bertscore-baseline", options.baseline] + (["--bertscore-idf"] if options.idf else [])
    return argv + ["--acter-eps", repr(float(options.eps)), "--acter-rule", options.rule]

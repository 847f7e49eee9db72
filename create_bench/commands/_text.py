"""``--text-encoder`` and its options (BERTScore-F, ACTEr-r), shared by score, eval and metric-agreement."""

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


def text_options(args: argparse.Namespace) -> Any:
    """The :class:`~create_bench.features.text_metrics.TextMetricOptions` the flags ask for, or None."""
    if not getattr(args, "text_encoder", None):
        return None
    from create_bench.features.text_metrics import TextMetricOptions

    kw: dict[str, Any] = {
        "layer": args.text_encoder_layer,
        "idf": args.bertscore_idf,
        "baseline": args.bertscore_baseline,
        "device": args.text_encoder_device,
    }
    if args.acter_eps is not None:
        kw["eps"] = args.acter_eps
    if args.acter_rule is not None:
        kw["rule"] = args.acter_rule
    return TextMetricOptions(args.text_encoder, **kw)

"""Retrieval and captioning metrics, bootstrap intervals, chance levels (layer 2).

Heavy scorers (pycocoevalcap) are imported only when captioning is scored.
"""

from create_bench.metrics.bootstrap import bootstrap_ci, paired_bootstrap_test, resample_weights
from create_bench.metrics.captioning import CaptionStats, caption_scores, caption_statistics
from create_bench.metrics.chance import chance_check, chance_scores, retrieval_chance
from create_bench.metrics.retrieval import (
    TIE_POLICIES,
    RankStats,
    rank_statistics,
    ranks_from_similarity,
    retrieval_scores,
)
from create_bench.metrics.retrieval_pair import paired_rank_statistics

__all__ = [
    "TIE_POLICIES",
    "CaptionStats",
    "RankStats",
    "bootstrap_ci",
    "caption_scores",
    "caption_statistics",
    "chance_check",
    "chance_scores",
    "paired_bootstrap_test",
    "paired_rank_statistics",
    "rank_statistics",
    "ranks_from_similarity",
    "resample_weights",
    "retrieval_chance",
    "retrieval_scores",
]

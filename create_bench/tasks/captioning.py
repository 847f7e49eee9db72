"""Video captioning: an objective description per video, scored against its reference captions."""

from __future__ import annotations

from create_bench.tasks.base import TaskSpec

CAPTION = TaskSpec(
    name="caption",
    description="caption generation (objective descriptions)",
    requires=("generate",),
    score_groups=("caption",),
    main_group="caption",
    main_score="CIDEr",
    metrics=("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"),
)

"""Video titling: an attractive title per video, scored against its reference titles."""

from __future__ import annotations

from create_bench.tasks.base import TaskSpec

TITLE = TaskSpec(
    name="title",
    description="title generation (attractive, uploader-style titles)",
    requires=("generate",),
    score_groups=("title",),
    main_group="title",
    main_score="CIDEr",
    metrics=("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"),
)

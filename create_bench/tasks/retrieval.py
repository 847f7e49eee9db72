"""Text-video retrieval (T2V and V2T) with captions and with titles as the texts."""

from __future__ import annotations

from create_bench.tasks.base import TaskSpec

RETRIEVAL = TaskSpec(
    name="retrieval",
    description="text-to-video and video-to-text retrieval, captions and titles as texts",
    requires=("encode_videos", "encode_texts"),
    score_groups=("t2v_caption", "v2t_caption", "t2v_title", "v2t_title"),
    main_group="t2v_caption",
    main_score="R@1",
    metrics=("R@1", "R@5", "R@10", "MdR", "MnR"),
)

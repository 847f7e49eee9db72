"""Task specifications as declarative data (layer 3). Tasks never import models or metrics: they
say what a task is called, which model methods it needs, which score groups of the results JSON it
fills and which score is its headline number."""

from __future__ import annotations

from dataclasses import dataclass

from create_bench.errors import ConfigError

#: Model methods a task may require (the model protocol of ``create_bench.models.base``).
MODEL_METHODS = ("encode_videos", "encode_texts", "generate")


@dataclass(frozen=True)
class TaskSpec:
    """One evaluation task.

    Attributes:
        name: the name users type (``--tasks retrieval,title``).
        description: one line for reports and ``--help``.
        requires: model methods the task calls.
        score_groups: groups of the results JSON ``scores`` it fills.
        main_group: the group whose ``main_score`` is the headline number.
        main_score: the headline metric key within ``main_group``.
        metrics: metric keys shown in the paper-style table, in order.
        higher_is_better: per metric, False for ranks (MdR, MnR).
    """

    name: str
    description: str
    requires: tuple[str, ...]
    score_groups: tuple[str, ...]
    main_group: str
    main_score: str
    metrics: tuple[str, ...]
    version: str = "1"

    def __post_init__(self) -> None:
        bad = [m for m in self.requires if m not in MODEL_METHODS]
        if bad:
            raise ConfigError(f"task {self.name!r}: unknown model method(s) {bad}; known: {MODEL_METHODS}")
        if self.main_group not in self.score_groups:
            raise ConfigError(
                f"task {self.name!r}: main_group {self.main_group!r} not in {self.score_groups}"
            )
        if self.main_score not in self.metrics:
            raise ConfigError(f"task {self.name!r}: main_score {self.main_score!r} not in {self.metrics}")

    @staticmethod
    def higher_is_better(metric: str) -> bool:
        return metric not in ("MdR", "MnR")

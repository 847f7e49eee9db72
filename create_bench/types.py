"""Small shared types (layer 0)."""

from __future__ import annotations

from typing import Literal

Split = Literal["train", "validation", "test"]
TextKind = Literal["title", "caption"]
TEXT_KINDS: tuple[TextKind, ...] = ("caption", "title")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: CREATE configs a model can have used for training or model selection (a model card's ``create_configs``).
CREATE_CONFIGS: tuple[str, ...] = ("train", "validation", "pretrain", "pretrain-3m", "pretrain-10m")
#: Column in the shards that holds each text kind.
TEXT_COLUMN = {"title": "titles", "caption": "captions"}


def text_id(vid: str, kind: str, k: int) -> str:
    """The id of the k-th text of a kind for a video, e.g. ``"v1:caption:3"``."""
    return f"{vid}:{kind}:{k}"


def parse_text_id(tid: str) -> tuple[str, str, int]:
    vid, kind, k = tid.rsplit(":", 2)
    return vid, kind, int(k)

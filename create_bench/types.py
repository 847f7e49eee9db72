"""Small shared types (layer 0)."""

from __future__ import annotations

from collections.abc import Iterable
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


# ------------------------------------------------------------------------------------------------
# id sets: the one check that predictions, metrics, scoring and the leaderboard share


def id_differences(
    expected: Iterable[str], got: Iterable[str], *, allowed: Iterable[str] | None = None
) -> tuple[list[str], list[str]]:
    """(missing, extra), each sorted: ids of ``expected`` not in ``got``, and ids of ``got`` not in
    ``allowed`` (default ``expected``; scoring allows every text id of the split, even those the
    protocol leaves out)."""
    exp, have = set(expected), set(got)
    ok = exp if allowed is None else set(allowed)
    return sorted(exp - have), sorted(have - ok)


def list_ids(ids: Iterable[str], limit: int = 10) -> str:
    """``'a', 'b', ... (+N more)`` for error messages (sorted)."""
    ids = sorted(ids)
    head = ", ".join(repr(x) for x in ids[:limit])
    return head + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


def describe_id_differences(missing: list[str], extra: list[str], *, extra_note: str = "") -> str:
    """``missing N: ...; extra N<extra_note>: ...`` (the parts that are not empty)."""
    parts = []
    if missing:
        parts.append(f"missing {len(missing)}: {list_ids(missing)}")
    if extra:
        parts.append(f"extra {len(extra)}{extra_note}: {list_ids(extra)}")
    return "; ".join(parts)

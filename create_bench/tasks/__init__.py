"""Evaluation tasks as declarative specs (layer 3): ``retrieval``, ``title``, ``caption``.

>>> [t.name for t in parse_tasks("retrieval,caption")]
['retrieval', 'caption']
>>> get_task("caption").main_score
'CIDEr'
"""

from __future__ import annotations

import difflib

from create_bench.errors import ConfigError
from create_bench.tasks.base import MODEL_METHODS, TaskSpec
from create_bench.tasks.captioning import CAPTION
from create_bench.tasks.retrieval import RETRIEVAL
from create_bench.tasks.titling import TITLE

#: Every task, in the order the harness runs and reports them.
TASKS: dict[str, TaskSpec] = {t.name: t for t in (RETRIEVAL, TITLE, CAPTION)}
#: Other spellings people type.
ALIASES = {"titling": "title", "titles": "title", "captioning": "caption", "captions": "caption"}

__all__ = ["MODEL_METHODS", "TASKS", "TaskSpec", "get_task", "parse_tasks"]


def get_task(name: str) -> TaskSpec:
    """The spec of a task by name; an unknown name answers with "did you mean"."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in TASKS:
        return TASKS[key]
    close = difflib.get_close_matches(key, list(TASKS) + list(ALIASES), n=3, cutoff=0.5)
    hint = list(dict.fromkeys(ALIASES.get(h, h) for h in close))  # an alias and its task: one suggestion
    msg = f"unknown task {name!r}"
    if hint:
        msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?"
    raise ConfigError(msg + f" (known: {', '.join(TASKS)})")


def parse_tasks(spec: str | list[str] | tuple[str, ...] | None) -> tuple[TaskSpec, ...]:
    """Parse ``"retrieval,title"`` (or a list) into specs in canonical order; None means all."""
    if spec is None:
        return tuple(TASKS.values())
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    names = [n for n in (x.strip() for x in names) if n]
    if not names:
        raise ConfigError("no tasks given (known: " + ", ".join(TASKS) + ")")
    chosen = {get_task(n).name for n in names}
    return tuple(t for t in TASKS.values() if t.name in chosen)

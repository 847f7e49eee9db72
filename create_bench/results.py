"""The results JSON (layer 4): build, validate, load (old schema versions too), write, print.

Shape (``schema_version`` 1)::

    {
      "schema_version": 1,
      "model": {"name": ..., "params": ..., "training_data": [...], ...},
      "dataset": {"name": ..., "fingerprint": ..., "split": ..., "counts": {"videos": N, ...},
                  "skipped": 3},               # rows the build skipped in this split (when any)
      "protocol": "multi-reference" | "single-reference",
      "signature": "create-bench:0.1.0|data:...|split:test|...",      # every setting, one string
      "signature_fields": {"create-bench": "0.1.0", "data": ..., ...},  # the same as a dict
      "signatures": {"t2v_caption": "...", "caption": "...", ...},      # one per score group
      "scores": {"t2v_caption": {"R@1": 12.3, ..., "MdR": 8.0, "MnR": 40.2}, ...,
                 "caption": {"BLEU-1": ..., "CIDEr": ...}},
      "ci": {"t2v_caption": {"R@1": [11.1, 13.4], ...}, ...},          # bootstrap 95% intervals
      "bootstrap": {"n": 1000, "seed": 0, "level": 0.95, "unit": "video", "interval": {...}},
      "chance": {"t2v_caption": {"R@1": 0.02, ..., "MnR": 2500.5}, ...},  # random ranking's expectation
      "chance_test": {"alpha": 0.05, "correction": "holm", "family": 20, "p_values": {...},
                      "adjusted": {...}, "differs": [...], "consistent": true, "statement": "..."},
      "per_category": {"3": {"name": "美食", "count": 120, "t2v_caption": {...}, ...}, ...},
      "skipped_tasks": {"caption": "generations.jsonl has no 'caption' field", ...},  # task -> why
      "created_at": "2025-01-01T00:00:00+00:00",
      "version": "0.1.0"
    }

Score groups: ``t2v_caption``, ``v2t_caption``, ``t2v_title``, ``v2t_title`` (R@1, R@5, R@10 x100;
MdR, MnR as ranks) and ``title``, ``caption`` (BLEU-1..4, ROUGE-L, CIDEr x100, METEOR when asked).
Keys a reader does not know are kept, so later additions do not break older readers: ``chance``,
``chance_test``, ``bootstrap.interval`` (how the intervals were computed; absent means percentile
intervals throughout), ``skipped_tasks`` (tasks the predictions did not allow, with the reason) and
``dataset.skipped`` (videos of the split that ``build --on-error skip`` left out) were added within
schema 1 and are optional.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from create_bench import __version__
from create_bench.errors import CreateBenchError
from create_bench.fsutil import atomic_write_json
from create_bench.signature import Signature

SCHEMA_VERSION = 1
RETRIEVAL_GROUPS = ("t2v_caption", "v2t_caption", "t2v_title", "v2t_title")
GENERATION_GROUPS = ("title", "caption")
SCORE_GROUPS = RETRIEVAL_GROUPS + GENERATION_GROUPS
RETRIEVAL_METRICS = ("R@1", "R@5", "R@10", "MdR", "MnR")
CAPTION_METRICS = (
    "BLEU-1",
    "BLEU-2",
    "BLEU-3",
    "BLEU-4",
    "ROUGE-L",
    "CIDEr",
    "METEOR",
    "BERTScore-F",
    "ACTEr-r",
)
#: Row labels of the paper-style table.
GROUP_LABELS = {
    "t2v_caption": "T2V (captions)",
    "v2t_caption": "V2T (captions)",
    "t2v_title": "T2V (titles)",
    "v2t_title": "V2T (titles)",
    "title": "Title generation",
    "caption": "Caption generation",
}


class ResultsError(CreateBenchError, ValueError):
    """A results JSON that does not follow the schema (names the file and the key)."""


def build_results(
    *,
    model: Mapping[str, Any],
    dataset: Mapping[str, Any],
    scores: Mapping[str, Mapping[str, float]],
    signature: Signature,
    signatures: Mapping[str, Signature] | None = None,
    ci: Mapping[str, Mapping[str, list[float]]] | None = None,
    bootstrap: Mapping[str, Any] | None = None,
    per_category: Mapping[str, Any] | None = None,
    protocol: str = "multi-reference",
    extra: Mapping[str, Any] | None = None,
    created_at: str | None = None,
    chance: Mapping[str, Mapping[str, float]] | None = None,
    chance_test: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a results dict of the current schema and validate it."""
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": dict(model),
        "dataset": dict(dataset),
        "protocol": protocol,
        "signature": signature.format(),
        "signature_fields": signature.to_dict(),
        "signatures": {g: s.format() for g, s in (signatures or {}).items()},
        "scores": {g: dict(v) for g, v in scores.items()},
        "ci": {g: {m: list(b) for m, b in v.items()} for g, v in (ci or {}).items()},
        "bootstrap": dict(bootstrap) if bootstrap else None,
        "per_category": dict(per_category or {}),
        **({"chance": {g: dict(v) for g, v in chance.items()}} if chance else {}),
        **({"chance_test": dict(chance_test)} if chance_test else {}),
        **dict(extra or {}),
        "created_at": created_at or datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "version": __version__,
    }
    return validate_results(results)


# ------------------------------------------------------------------------------------------------
# validation and schema upgrades


def _fail(msg: str, path: str | None) -> ResultsError:
    return ResultsError(f"{path}: {msg}" if path else msg)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def validate_results(obj: Any, *, path: str | None = None) -> dict[str, Any]:
    """Check a results dict of the current schema; returns it unchanged.

    Raises:
        ResultsError: naming the file (when given) and the offending key.
    """
    if not isinstance(obj, dict):
        raise _fail(f"results must be a JSON object, got {type(obj).__name__}", path)
    if obj.get("schema_version") != SCHEMA_VERSION:
        raise _fail(f"schema_version is {obj.get('schema_version')!r}, expected {SCHEMA_VERSION}", path)
    for key, typ in (("model", dict), ("dataset", dict), ("scores", dict), ("signature", str)):
        if not isinstance(obj.get(key), typ):
            raise _fail(f"{key!r} must be a {typ.__name__}, got {type(obj.get(key)).__name__}", path)
    try:
        Signature.parse(obj["signature"])
    except ValueError as exc:
        raise _fail(f"'signature' is not a create-bench signature ({exc})", path) from None
    if not obj["scores"]:
        raise _fail("'scores' is empty", path)
    for group, metrics in obj["scores"].items():
        if group not in SCORE_GROUPS:
            raise _fail(f"unknown score group {group!r} (known: {', '.join(SCORE_GROUPS)})", path)
        known = RETRIEVAL_METRICS if group in RETRIEVAL_GROUPS else CAPTION_METRICS
        if not isinstance(metrics, dict) or not metrics:
            raise _fail(f"scores[{group!r}] must be a non-empty object", path)
        for m, v in metrics.items():
            if m not in known:
                raise _fail(f"scores[{group!r}] has unknown metric {m!r} (known: {', '.join(known)})", path)
            if not _is_number(v):
                raise _fail(f"scores[{group!r}][{m!r}] = {v!r} is not a finite number", path)
    for group, metrics in (obj.get("ci") or {}).items():
        if group not in obj["scores"]:
            raise _fail(f"ci has group {group!r} that has no scores", path)
        for m, b in metrics.items():
            if not (isinstance(b, list) and len(b) == 2 and all(_is_number(x) for x in b) and b[0] <= b[1]):
                raise _fail(f"ci[{group!r}][{m!r}] = {b!r} is not an interval [low, high]", path)
    for group, sig in (obj.get("signatures") or {}).items():
        if not isinstance(sig, str):
            raise _fail(f"signatures[{group!r}] must be a string", path)
    _validate_chance(obj, path)
    _validate_skipped(obj, path)
    return obj


def _validate_skipped(obj: dict[str, Any], path: str | None) -> None:
    """The optional ``skipped_tasks`` (task -> reason) and ``dataset.skipped`` (a count)."""
    tasks = obj.get("skipped_tasks")
    if tasks is not None:
        if not isinstance(tasks, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tasks.items()
        ):
            raise _fail("'skipped_tasks' must be an object of task -> reason strings", path)
    n = obj["dataset"].get("skipped")
    if n is not None and not (isinstance(n, int) and not isinstance(n, bool) and n >= 0):
        raise _fail(f"dataset.skipped = {n!r} is not a non-negative integer", path)


def _validate_chance(obj: dict[str, Any], path: str | None) -> None:
    """The optional ``chance`` levels (retrieval groups that have scores) and ``chance_test``."""
    chance = obj.get("chance")
    if chance is not None:
        if not isinstance(chance, dict):
            raise _fail("'chance' must be an object", path)
        for group, metrics in chance.items():
            if group not in RETRIEVAL_GROUPS or group not in obj["scores"]:
                raise _fail(f"chance has group {group!r} that has no retrieval scores", path)
            if not isinstance(metrics, dict):
                raise _fail(f"chance[{group!r}] must be an object", path)
            for m, v in metrics.items():
                if m not in RETRIEVAL_METRICS or not _is_number(v):
                    raise _fail(f"chance[{group!r}][{m!r}] = {v!r} is not a chance level", path)
    test = obj.get("chance_test")
    if test is not None:
        if not isinstance(test, dict) or not isinstance(test.get("consistent"), bool):
            raise _fail("'chance_test' must be an object with a boolean 'consistent'", path)
        for key in ("p_values", "adjusted"):
            for group, metrics in (test.get(key) or {}).items():
                for m, p in (metrics or {}).items():
                    if not (_is_number(p) and 0.0 <= p <= 1.0):
                        raise _fail(f"chance_test[{key!r}][{group!r}][{m!r}] = {p!r} is not a p-value", path)


def _upgrade_0_to_1(obj: dict[str, Any]) -> dict[str, Any]:
    """Before ``schema_version`` existed: the signature could be a dict (``{"string": ...}`` or the
    fields) and intervals ``{"low", "high"}`` objects."""
    out = dict(obj)
    sig = out.get("signature")
    if isinstance(sig, dict):
        if isinstance(sig.get("string"), str):
            out["signature"] = sig["string"]
            out.setdefault("signature_fields", {k: v for k, v in sig.items() if k != "string"})
        else:
            fields = {k: v for k, v in sig.items() if k != "create-bench"}
            out["signature"] = Signature(str(sig.get("create-bench", "0")), **fields).format()
            out.setdefault("signature_fields", dict(sig))
    ci: dict[str, dict[str, list[Any]]] = {}
    for group, metrics in (out.get("ci") or {}).items():
        ci[group] = {}
        for m, b in (metrics or {}).items():
            if isinstance(b, dict):
                b = [b.get("low", b.get("lo")), b.get("high", b.get("hi"))]
            ci[group][m] = list(b)
    out["ci"] = ci
    out.setdefault("per_category", {})
    out.setdefault("signatures", {})
    out.setdefault("protocol", "multi-reference")
    out["schema_version"] = 1
    return out


#: from_version -> function that returns the same results in schema from_version + 1.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {0: _upgrade_0_to_1}


def upgrade_results(obj: Any, *, path: str | None = None) -> dict[str, Any]:
    """Bring a results dict of any known older schema to :data:`SCHEMA_VERSION`."""
    if not isinstance(obj, dict):
        raise _fail(f"results must be a JSON object, got {type(obj).__name__}", path)
    version = obj.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise _fail(f"schema_version {version!r} is not a non-negative integer", path)
    if version > SCHEMA_VERSION:
        raise _fail(
            f"schema_version {version} is newer than this create-bench ({__version__}) reads "
            f"({SCHEMA_VERSION}); upgrade create-bench",
            path,
        )
    while version < SCHEMA_VERSION:
        obj = UPGRADES[version](obj)
        version = obj["schema_version"]
    return obj


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results JSON of any known schema version, upgraded to the current one and validated."""
    p = Path(path)
    try:
        obj = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such results file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsError(f"{p}: not readable JSON ({exc})") from None
    return validate_results(upgrade_results(obj, path=str(p)), path=str(p))


def write_results(path: str | os.PathLike[str], results: Mapping[str, Any]) -> Path:
    """Validate and write ``results`` atomically (temp file + rename)."""
    obj = validate_results(dict(results), path=str(path))
    atomic_write_json(path, obj)
    return Path(path)


def results_path(root: str | os.PathLike[str], model: str, dataset: str, split: str) -> Path:
    """``<root>/<model>/<dataset>-<split>.json``, the conventional place of a results file."""
    safe = "".join(c if c.isalnum() or c in "-_.@+" else "_" for c in model) or "model"
    return Path(root) / safe / f"{dataset}-{split}.json"


# ------------------------------------------------------------------------------------------------
# the paper-style table


def _cell(value: Any, interval: Any, show_ci: bool) -> str:
    if value is None:
        return "–"
    text = f"{float(value):.1f}"
    if show_ci and isinstance(interval, (list, tuple)) and len(interval) == 2:
        text += f" [{float(interval[0]):.1f}, {float(interval[1]):.1f}]"
    return text


def _block(
    results: Mapping[str, Any], groups: tuple[str, ...], metrics: tuple[str, ...], show_ci: bool
) -> list[str]:
    scores = results.get("scores") or {}
    ci = results.get("ci") or {}
    present = [g for g in groups if g in scores]
    if not present:
        return []
    cols = [m for m in metrics if any(m in scores[g] for g in present)]
    rows = [
        [GROUP_LABELS.get(g, g)] + [_cell(scores[g].get(m), (ci.get(g) or {}).get(m), show_ci) for m in cols]
        for g in present
    ]
    header = [""] + cols
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    return [line(header), *(line(r) for r in rows)]


#: How a task (a ``skipped_tasks`` key) is named in sentences.
TASK_LABELS = {
    "retrieval": "retrieval",
    "retrieval:caption": "caption retrieval",
    "retrieval:title": "title retrieval",
    "title": "title generation",
    "caption": "caption generation",
}


def skipped_rows_note(results: Mapping[str, Any]) -> str | None:
    """ "N test videos were skipped at build time ...; scores are over the remaining M", or None."""
    ds = results.get("dataset") or {}
    n = ds.get("skipped")
    if not n:
        return None
    from create_bench.data.importer import skipped_note

    return skipped_note(str(ds.get("split", "?")), int(n), (ds.get("counts") or {}).get("videos"))


def scored_tasks(results: Mapping[str, Any]) -> list[str]:
    """The tasks the results have scores for, in words (``caption retrieval``, ``title generation``)."""
    scores = results.get("scores") or {}
    kinds = [k for k in ("caption", "title") if f"t2v_{k}" in scores or f"v2t_{k}" in scores]
    return [f"{k} retrieval" for k in kinds] + [f"{g} generation" for g in GENERATION_GROUPS if g in scores]


def notes(results: Mapping[str, Any]) -> list[str]:
    """What was scored, what was skipped and why (results that say, i.e. carry ``skipped_tasks``),
    and the videos the build skipped: one line each."""
    lines = []
    skipped = results.get("skipped_tasks")
    if isinstance(skipped, Mapping):
        lines.append("scored: " + (", ".join(scored_tasks(results)) or "nothing"))
        for task, why in skipped.items():
            lines.append(f"{TASK_LABELS.get(task, task)} skipped: {why}")
    note = skipped_rows_note(results)
    if note:
        lines.append(f"note: {note}")
    absent = (results.get("text_metrics") or {}).get("absent")
    if isinstance(absent, str):
        lines.append(absent)
    return lines


def format_table(results: Mapping[str, Any], *, show_ci: bool = False) -> str:
    """The scores as the CREATE paper prints them (R@K and captioning x100 with one decimal; MdR
    and MnR as ranks), followed by the signature.

    >>> r = {"scores": {"t2v_caption": {"R@1": 12.345, "R@5": 30.0, "R@10": 41.0, "MdR": 15.0, "MnR": 80.26}},
    ...      "signature": "create-bench:0.1.0|split:test"}
    >>> print(format_table(r))
    Retrieval (R@K x100; MdR, MnR ranks)
                     R@1   R@5  R@10   MdR   MnR
    T2V (captions)  12.3  30.0  41.0  15.0  80.3
    <BLANKLINE>
    signature: create-bench:0.1.0|split:test
    """
    lines: list[str] = []
    block = _block(results, RETRIEVAL_GROUPS, RETRIEVAL_METRICS, show_ci)
    if block:
        lines += ["Retrieval (R@K x100; MdR, MnR ranks)", *block, ""]
    block = _block(results, GENERATION_GROUPS, CAPTION_METRICS, show_ci)
    if block:
        lines += ["Generation (x100)", *block, ""]
    boot = results.get("bootstrap")
    if show_ci and isinstance(boot, Mapping):
        lines.append(f"[low, high]: {100 * float(boot.get('level', 0.95)):.0f}% bootstrap interval over videos, "
                     f"n={boot.get('n')}, seed={boot.get('seed')}")  # fmt: skip
    test = results.get("chance_test")
    if isinstance(test, Mapping) and isinstance(test.get("statement"), str):
        lines.append(f"chance: {test['statement']}")
    lines += notes(results)
    sig = results.get("signature")
    if isinstance(sig, str):
        lines.append(f"signature: {sig}")
    return "\n".join(lines)

"""What the server publishes of a results JSON (layer 5): the defence against score oracles.

A generation score is a function of hidden references. Published at full float precision, and
per category of a handful of videos, it is an exact oracle: a generations-only submission whose
titles were one probe word plus fillers known to score zero decoded, from BLEU-1 and token counts,
30 of 30 (video, word) facts about the hidden test titles. So, for everyone (the submitting team
included: its own token is exactly what an attacker holds):

- every number is rounded as the board prints it (one decimal: R@K and captioning x100, ranks
  as ranks), scores, intervals and chance figures alike;
- per-category figures are published only for categories with at least
  :data:`MIN_CATEGORY_VIDEOS` test videos; smaller categories are withheld (their names and
  counts stay, so the page can say why);
- the full-precision results stay in the database for the organisers
  (``Database.internal``), never in a response.

See ``leaderboard/README.md``, "Threat model", for what this does and does not protect.
"""

from __future__ import annotations

import math
from typing import Any

#: Smallest number of test videos a category needs before its scores are published.
MIN_CATEGORY_VIDEOS = 50
#: Decimals of every published number (the board prints one).
DECIMALS = 1
#: Results keys that are copied as they are (no scores in them).
_VERBATIM = ("schema_version", "model", "dataset", "signature", "signatures", "protocol", "created_at",
             "version", "submission", "bootstrap")  # fmt: skip


def round_numbers(obj: Any, decimals: int = DECIMALS) -> Any:
    """Every float in a JSON-like object rounded to ``decimals`` (ints, bools, text unchanged)."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, int | str):
        return obj
    if isinstance(obj, float):
        return round(obj, decimals) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: round_numbers(v, decimals) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_numbers(v, decimals) for v in obj]
    return None  # nothing else is published


def public_results(
    results: dict[str, Any] | None, *, min_category_videos: int = MIN_CATEGORY_VIDEOS
) -> dict[str, Any] | None:
    """The published view of a results JSON: rounded as printed, small categories withheld.

    >>> r = public_results({"scores": {"title": {"BLEU-1": 12.3456}},
    ...                     "per_category": {"1": {"name": "a", "count": 3, "title": {"BLEU-1": 9.87}},
    ...                                      "2": {"name": "b", "count": 80, "title": {"BLEU-1": 1.25}}}})
    >>> r["scores"], r["per_category"]["1"], r["per_category"]["2"]["title"]
    ({'title': {'BLEU-1': 12.3}}, {'name': 'a', 'count': 3, 'withheld': True}, {'BLEU-1': 1.2})
    """
    if not results:
        return results
    out: dict[str, Any] = {}
    for key, value in results.items():
        if key == "per_category":
            out[key] = _per_category(value, min_category_videos)
        elif key in _VERBATIM:
            out[key] = value
        else:  # scores, ci, chance, chance_test, extra, and anything new: numbers rounded
            out[key] = round_numbers(value)
    out["publication"] = {
        "decimals": DECIMALS,
        "min_category_videos": min_category_videos,
        "note": "scores rounded as printed; categories with fewer test videos are withheld",
    }
    return out


def _per_category(per: Any, minimum: int) -> dict[str, Any]:
    if not isinstance(per, dict):
        return {}
    out: dict[str, Any] = {}
    for cat, entry in per.items():
        if not isinstance(entry, dict):
            continue
        count = entry.get("count")
        head = {"name": entry.get("name"), "count": count if isinstance(count, int) else None}
        if isinstance(count, int) and not isinstance(count, bool) and count >= minimum:
            out[str(cat)] = {**head, **round_numbers({k: v for k, v in entry.items() if k not in head})}
        else:  # too few videos (or an unknown count): an oracle on the references, never published
            out[str(cat)] = {**head, "withheld": True}
    return out

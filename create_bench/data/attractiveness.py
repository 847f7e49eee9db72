"""Per-character attractiveness of titles (layer 2): the ``title_omega`` column and its file format
(reading and checking real annotation files). CREATE-sample's values come from simulated annotators,
which are generator code: :mod:`create_bench.synthetic.annotators`.

omega: for every reference title of a video, one value per character of the *normalised* title
(:func:`create_bench.text.normalize.normalize`), the share of annotators who marked the character
attractive, in [0, 1] (CREATE: K = 10 annotators, so steps of 0.1). ACTEr-r weights reference
characters by it (:mod:`create_bench.metrics.bertscore`). The released CREATE JSON has no omega;
it comes from a separate annotation file given to ``create-bench build --attractiveness FILE``:

JSON Lines, one object per annotated title::

    {"vid": "v_0001", "title_index": 0, "omega": [0.0, 0.1, 0.7, ...]}

``title_index`` indexes the video's ``titles`` list; ``omega`` has exactly as many values as the
normalised title has characters. A video with any annotated title must have all its titles
annotated; videos with none have no omega (null). Every problem (bad JSON, unknown vid, an index
out of range, a length that does not match the title, a value outside [0, 1], a duplicate) raises
:class:`~create_bench.errors.DataError` naming the file, the line and the vid.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from create_bench.errors import DataError
from create_bench.text.normalize import normalize


def omega_length(title: str) -> int:
    """How many omega values a title has: the characters of its normalised form."""
    return len(normalize(title))


def check_omega(
    omega: Any, titles: Sequence[str], *, where: Mapping[str, Any] | None = None
) -> list[list[float]]:
    """``omega`` checked against ``titles`` (one list per title, one value in [0, 1] per character of
    the normalised title); returns it as lists of floats. Raises DataError with ``where``."""
    loc = dict(where or {})
    if not isinstance(omega, list) or len(omega) != len(titles):
        n = len(omega) if isinstance(omega, list) else type(omega).__name__
        raise DataError(f"title_omega must be a list of {len(titles)} lists (one per title), got {n}", **loc)
    return [check_title_omega(o, t, k, where=loc) for k, (o, t) in enumerate(zip(omega, titles))]


def check_title_omega(
    values: Any, title: str, index: int, *, where: Mapping[str, Any] | None = None
) -> list[float]:
    loc = dict(where or {})
    want = omega_length(title)
    if not isinstance(values, list) or len(values) != want:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise DataError(
            f"omega of title {index} has {got} values; the normalised title {normalize(title)!r} has {want} characters",
            **loc,
        )
    out = []
    for j, x in enumerate(values):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not 0 <= x <= 1:
            raise DataError(f"omega of title {index}, character {j}: {x!r} is not a number in [0, 1]", **loc)
        out.append(float(x))
    return out


def read_attractiveness(
    path: str | os.PathLike[str], titles: Mapping[str, Sequence[str]]
) -> dict[str, list[list[float]]]:
    """vid -> omega of all its titles, from a JSON Lines file (see the module doc).

    Args:
        path: the file.
        titles: vid -> the video's titles (the dataset being built).
    """
    src = os.fspath(path)
    got: dict[str, dict[int, list[float]]] = {}
    first_line: dict[str, int] = {}
    try:
        lines = open(src, encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the attractiveness file: {exc}", path=src) from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"not JSON: {exc.msg}", path=src, row=n) from exc
        vid = item.get("vid") if isinstance(item, dict) else None
        where: dict[str, Any] = {"path": src, "row": n, "vid": vid if isinstance(vid, str) else None}
        if (
            not isinstance(item, dict)
            or set(item) - {"vid", "title_index", "omega"}
            or not isinstance(vid, str)
        ):
            raise DataError('each line must be {"vid": str, "title_index": int, "omega": [...]}', **where)
        if vid not in titles:
            raise DataError("unknown vid (not in the annotations being built)", **where)
        k = item.get("title_index")
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(titles[vid]):
            raise DataError(f"title_index must be in 0..{len(titles[vid]) - 1}, got {k!r}", **where)
        if k in got.get(vid, {}):
            raise DataError(
                f"duplicate omega for title {k} (first on line {first_line[f'{vid}:{k}']})", **where
            )
        got.setdefault(vid, {})[k] = check_title_omega(item.get("omega"), titles[vid][k], k, where=where)
        first_line[f"{vid}:{k}"] = n
    out = {}
    for vid, per in got.items():
        missing = [k for k in range(len(titles[vid])) if k not in per]
        if missing:
            raise DataError(
                f"omega given for some titles of this video but not for titles {missing}", path=src, vid=vid
            )
        out[vid] = [per[k] for k in range(len(titles[vid]))]
    return out

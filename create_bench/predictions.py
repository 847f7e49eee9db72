"""The predictions directory (layer 4): what ``create-bench score``, ``eval`` and ``submit`` exchange.

Layout (every part optional; only the tasks the present parts allow are scored)::

    generations.jsonl       one JSON object per line: {"vid": ..., "title": ..., "caption": ...}
    video_embeddings.npy    float16/32/64 [videos, D], rows in the order of video_ids.json
    video_ids.json          ["vid", ...]
    text_embeddings.npy     [texts, D], rows in the order of text_ids.json
    text_ids.json           ["<vid>:caption:<k>" | "<vid>:title:<k>", ...]  (k indexes the video's list)
    similarity_caption.npy  [caption texts, videos]: rows are the caption ids of text_ids.json in
    similarity_title.npy    their order there, columns the ids of video_ids.json (non dual-encoders)
    model_card.yaml         a mapping describing the model (name, params, training data, ...)

Similarity is the dot product of L2-normalised embeddings, or the given similarity matrix. This
module checks a directory on its own terms (files, shapes, dtypes, finite values, id syntax and
uniqueness, generation texts); whether the ids match a dataset split is checked when scoring.
Writing replaces the whole directory atomically.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.errors import PredictionError
from create_bench.fsutil import atomic_dir
from create_bench.types import TEXT_KINDS, list_ids, parse_text_id

GENERATIONS = "generations.jsonl"
VIDEO_EMBEDDINGS = "video_embeddings.npy"
VIDEO_IDS = "video_ids.json"
TEXT_EMBEDDINGS = "text_embeddings.npy"
TEXT_IDS = "text_ids.json"
MODEL_CARD = "model_card.yaml"
#: Generation fields of a generations.jsonl line besides ``vid``.
GENERATION_KINDS = ("title", "caption")
_FLOAT_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: The dtype scoring computes in (``metrics.retrieval``, its ``l2_normalise`` too): a value must be
#: finite once cast to it, so float64 values beyond float32's range are rejected when loading,
#: by the same rule the scorer applies, instead of failing later as "NaN or infinite".
SCORING_DTYPE = np.dtype(np.float32)
#: Nesting depth allowed in the JSON files: id lists and generation lines are flat (depth 1); one
#: more level lets the field checks name what is wrong (e.g. a list where a text belongs).
MAX_JSON_DEPTH = 2
_NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class ReadLimits:
    """Caps applied while reading untrusted predictions (the leaderboard sets them from the split).

    ``None`` means no cap. The generations file is read as a stream, so with caps its memory is
    bounded by one line whatever the file holds.
    """

    #: Lines of ``generations.jsonl`` (blank lines included), e.g. the split's video count.
    max_lines: int | None = None
    #: Bytes of one ``generations.jsonl`` line.
    max_line_bytes: int | None = None
    #: Characters of one generated text, per kind.
    max_text_chars: Mapping[str, int] = field(default_factory=dict)
    #: Elements of one ``.npy`` array, per file name (the file's shape must fit the split).
    max_elements: Mapping[str, int] = field(default_factory=dict)


def similarity_file(kind: str) -> str:
    return f"similarity_{kind}.npy"


def _prediction_file(path: Path) -> bool:
    """Whether ``path`` is a file a predictions directory holds (what writing one may replace)."""
    fixed = {GENERATIONS, VIDEO_EMBEDDINGS, VIDEO_IDS, TEXT_EMBEDDINGS, TEXT_IDS, MODEL_CARD}
    name = path.name
    return path.is_file() and (name in fixed or (name.startswith("similarity_") and name.endswith(".npy")))


@dataclass
class Predictions:
    """A model's predictions for one split; see the module docstring for the files.

    Attributes:
        generations: vid -> {"title": text, "caption": text} (either kind may be absent, but a kind
            present for one video must be present for all), or None.
        video_ids, video_embeddings: ids and ``[videos, D]`` embeddings (embeddings may be None
            when only similarity matrices are given).
        text_ids, text_embeddings: ids and ``[texts, D]`` embeddings (likewise).
        similarity: kind -> ``[texts of that kind, videos]`` matrix.
        model_card: the parsed ``model_card.yaml`` ({} when absent).
        path: the directory it was loaded from, if any.
    """

    generations: dict[str, dict[str, str]] | None = None
    video_ids: list[str] | None = None
    video_embeddings: np.ndarray | None = None
    text_ids: list[str] | None = None
    text_embeddings: np.ndarray | None = None
    similarity: dict[str, np.ndarray] = field(default_factory=dict)
    model_card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # ---- what is there

    def generation_kinds(self) -> list[str]:
        """Kinds (``title``, ``caption``) with generated texts."""
        if not self.generations:
            return []
        kinds = {k for g in self.generations.values() for k in g}
        return [k for k in GENERATION_KINDS if k in kinds]

    def generated(self, kind: str) -> dict[str, str]:
        """vid -> generated text of ``kind``."""
        return {vid: g[kind] for vid, g in (self.generations or {}).items()}

    def text_rows(self, kind: str) -> tuple[np.ndarray, list[str]]:
        """Row positions in ``text_ids`` of the texts of ``kind``, and their ids, in file order."""
        ids = self.text_ids or []
        pos = self._rows_by_kind(ids).get(kind, [])
        return np.asarray(pos, dtype=np.int64), [ids[i] for i in pos]

    def _rows_by_kind(self, ids: list[str]) -> dict[str, list[int]]:
        """kind -> row positions, parsed once for these ids (validation, the task list and scoring
        all ask; 100,000 ids on CREATE's test split). Remembered with the ids' length and hash, so
        ids changed in place are parsed again."""
        stamp = (len(ids), hash(tuple(ids)))
        memo = self.__dict__.get("_rows_memo")
        if memo is None or memo[0] != stamp:
            rows: dict[str, list[int]] = {}
            for i, tid in enumerate(ids):
                rows.setdefault(parse_text_id(tid)[1], []).append(i)
            memo = self.__dict__["_rows_memo"] = (stamp, rows)
        return memo[1]

    def retrieval_kinds(self) -> list[str]:
        """Text kinds that can be scored for retrieval (embeddings or a similarity matrix)."""
        if self.video_ids is None or self.text_ids is None:
            return []
        kinds: list[str] = []
        for kind in TEXT_KINDS:
            has_texts = len(self.text_rows(kind)[0]) > 0
            if kind in self.similarity or (
                has_texts and self.text_embeddings is not None and self.video_embeddings is not None
            ):
                kinds.append(kind)
        return kinds

    def tasks(self) -> list[str]:
        """The tasks these predictions allow: ``retrieval``, ``title``, ``caption``."""
        return (["retrieval"] if self.retrieval_kinds() else []) + self.generation_kinds()

    # ---- validation

    def validate(self) -> Predictions:
        """Check everything that does not need the dataset; returns ``self``.

        Raises:
            PredictionError: naming the file and the offending id, line or shape.
        """
        if self.video_ids is not None:
            _check_ids(self.video_ids, VIDEO_IDS)
        if self.text_ids is not None:
            _check_ids(self.text_ids, TEXT_IDS)
            for tid in self.text_ids:
                _check_text_id(tid)
        dim = None
        if self.video_embeddings is not None:
            if self.video_ids is None:
                raise PredictionError(f"{VIDEO_EMBEDDINGS} needs {VIDEO_IDS} (the vid of each row)")
            dim = _check_matrix(self.video_embeddings, VIDEO_EMBEDDINGS, self.video_ids, "video")
        if self.text_embeddings is not None:
            if self.text_ids is None:
                raise PredictionError(f"{TEXT_EMBEDDINGS} needs {TEXT_IDS} (the text id of each row)")
            tdim = _check_matrix(self.text_embeddings, TEXT_EMBEDDINGS, self.text_ids, "text")
            if dim is not None and tdim != dim:
                raise PredictionError(
                    f"{TEXT_EMBEDDINGS} has dimension {tdim} but {VIDEO_EMBEDDINGS} has {dim}: they must match"
                )
        for kind, sim in self.similarity.items():
            self._check_similarity(kind, sim)
        if self.generations is not None:
            _check_generations(self.generations)
        if not isinstance(self.model_card, dict):
            raise PredictionError(f"{MODEL_CARD} must be a mapping, got {type(self.model_card).__name__}")
        return self

    def _check_similarity(self, kind: str, sim: np.ndarray) -> None:
        name = similarity_file(kind)
        if kind not in TEXT_KINDS:
            raise PredictionError(f"{name}: unknown text kind {kind!r} (known: {', '.join(TEXT_KINDS)})")
        if self.video_ids is None or self.text_ids is None:
            raise PredictionError(f"{name} needs {VIDEO_IDS} (columns) and {TEXT_IDS} (rows)")
        rows, row_ids = self.text_rows(kind)
        want = (len(rows), len(self.video_ids))
        if sim.ndim != 2 or tuple(sim.shape) != want:
            raise PredictionError(
                f"{name} has shape {tuple(sim.shape)}; expected {want} ({len(rows)} {kind} ids in "
                f"{TEXT_IDS} x {len(self.video_ids)} ids in {VIDEO_IDS})"
            )
        if sim.dtype not in _FLOAT_DTYPES:
            raise PredictionError(f"{name} has dtype {sim.dtype}; expected float16/32/64")
        step = max(1, (16 << 20) // max(1, sim.shape[1]))
        for start in range(0, sim.shape[0], step):
            ok = _finite_rows(sim[start : start + step])
            if not ok.all():
                i = start + int(np.flatnonzero(~ok)[0])
                raise PredictionError(f"{name}: row {i} (text {row_ids[i]!r}) has NaN or infinite values")


def _finite_rows(block: np.ndarray) -> np.ndarray:
    """Rows whose values are all finite in the scoring dtype (float64 beyond float32's range is not)."""
    with np.errstate(over="ignore"):
        return np.asarray(np.isfinite(block.astype(SCORING_DTYPE, copy=False)).all(axis=1))


def _check_ids(ids: Any, name: str) -> None:
    if not isinstance(ids, list):
        raise PredictionError(f"{name} must be a JSON list of strings, got {type(ids).__name__}")
    for i, x in enumerate(ids):
        if not isinstance(x, str) or not x:
            raise PredictionError(f"{name}: entry {i} is {x!r}, not a non-empty string")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dups = sorted({x for x in ids if x in seen or seen.add(x)})  # type: ignore[func-returns-value]
        raise PredictionError(f"{name}: duplicate ids {list_ids(dups)}")


def _check_text_id(tid: str) -> None:
    try:
        vid, kind, k = parse_text_id(tid)
    except ValueError:
        raise PredictionError(
            f"{TEXT_IDS}: {tid!r} is not '<vid>:caption:<k>' or '<vid>:title:<k>'"
        ) from None
    if not vid or kind not in TEXT_KINDS or k < 0:
        raise PredictionError(f"{TEXT_IDS}: {tid!r} is not '<vid>:caption:<k>' or '<vid>:title:<k>'")


def _check_matrix(arr: np.ndarray, name: str, ids: Sequence[str], what: str) -> int:
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        shape = getattr(arr, "shape", None)
        raise PredictionError(f"{name} must be a 2-D array [{what}s, D], got shape {shape}")
    if arr.shape[0] != len(ids):
        raise PredictionError(f"{name} has {arr.shape[0]} rows but there are {len(ids)} ids")
    if arr.dtype not in _FLOAT_DTYPES:
        raise PredictionError(f"{name} has dtype {arr.dtype}; expected float16/32/64")
    if arr.shape[1] == 0:
        raise PredictionError(f"{name} has zero columns")
    step = max(1, (16 << 20) // arr.shape[1])
    for start in range(0, arr.shape[0], step):
        ok = _finite_rows(arr[start : start + step])
        if not ok.all():
            i = start + int(np.flatnonzero(~ok)[0])
            raise PredictionError(f"{name}: row {i} ({what} {ids[i]!r}) has NaN or infinite values")
    return int(arr.shape[1])


def _check_generations(gens: Mapping[str, Any]) -> None:
    kinds: dict[str, list[str]] = {k: [] for k in GENERATION_KINDS}
    for vid, g in gens.items():
        if not isinstance(vid, str) or not vid:
            raise PredictionError(f"{GENERATIONS}: vid {vid!r} is not a non-empty string")
        if not isinstance(g, Mapping):
            raise PredictionError(f"{GENERATIONS}: vid {vid!r}: expected a mapping kind -> text")
        for kind, text in g.items():
            if kind not in GENERATION_KINDS:
                raise PredictionError(
                    f"{GENERATIONS}: vid {vid!r} has unknown field {kind!r} (known: vid, {', '.join(GENERATION_KINDS)})"
                )
            if not isinstance(text, str):
                raise PredictionError(
                    f"{GENERATIONS}: vid {vid!r}: {kind} is {type(text).__name__}, not a string"
                )
            if not text.strip():
                raise PredictionError(f"{GENERATIONS}: vid {vid!r}: {kind} is empty")
            kinds[kind].append(vid)
    for kind, vids in kinds.items():
        if vids and len(vids) != len(gens):
            missing = [v for v in gens if kind not in gens[v]]
            raise PredictionError(
                f"{GENERATIONS}: {len(missing)} videos have no {kind!r} while others do: {list_ids(missing)}"
            )


# ------------------------------------------------------------------------------------------------
# reading


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKETS = re.compile(r"[^\[\]{}]+")


def json_depth_error(text: str, max_depth: int) -> str | None:
    """Why ``text`` nests deeper than ``max_depth`` (arrays/objects), or None; checked before
    parsing, so a deeply nested file is a clear error, never a RecursionError.

    >>> json_depth_error('["a", "[["]', 1) is None
    True
    >>> json_depth_error('[["a"]]', 1)
    'nested more than 1 level deep (arrays/objects)'
    """
    depth = deepest = 0
    for ch in _JSON_BRACKETS.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > max_depth:
                break
    if deepest > max_depth:
        return f"nested more than {max_depth} level{'s' if max_depth != 1 else ''} deep (arrays/objects)"
    return None


def _loads(text: str, where: str) -> Any:
    """``json.loads`` of untrusted text: depth-checked first; huge integers are an error too."""
    problem = json_depth_error(text, MAX_JSON_DEPTH)
    if problem:
        raise PredictionError(f"{where}: {problem}")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except (ValueError, RecursionError) as exc:  # e.g. an integer over Python's 4300-digit limit
        raise PredictionError(f"{where}: unsupported JSON value ({str(exc).splitlines()[0]})") from None


def _read_json_list(path: Path) -> list[Any]:
    try:
        data = _loads(path.read_text("utf-8"), str(path))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PredictionError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, list):
        raise PredictionError(f"{path}: expected a JSON list of ids, got {type(data).__name__}")
    return data


def npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype, bool, int]:
    """Shape, dtype, Fortran order and data offset of a ``.npy`` file, checked against its size.

    Only the header is read (never a pickle, never a zip archive such as ``.npz``); a negative or
    non-integer dimension, an object dtype or a size that does not match the file is an error.
    """
    from numpy.lib import format as npformat

    try:
        with open(path, "rb") as fh:
            magic = fh.read(len(_NPY_MAGIC))
            if magic != _NPY_MAGIC:
                what = "a zip archive (.npz?)" if magic.startswith(b"PK") else f"magic {magic[:6]!r}"
                raise PredictionError(
                    f"{path}: not a readable .npy array: it starts with {what}, not the .npy magic"
                )
            fh.seek(0)
            version = npformat.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = npformat.read_array_header_1_0(fh)
            elif version in ((2, 0), (3, 0)):
                shape, fortran, dtype = npformat.read_array_header_2_0(fh)
            else:
                raise PredictionError(f"{path}: unsupported .npy format version {version}")
            offset = fh.tell()
    except PredictionError:
        raise
    except (OSError, ValueError, SyntaxError, TypeError) as exc:
        raise PredictionError(
            f"{path}: not a readable .npy header ({str(exc).splitlines()[0][:200]})"
        ) from None
    if not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
        raise PredictionError(
            f"{path}: invalid .npy shape {shape!r} (dimensions must be non-negative integers)"
        )
    if dtype.hasobject or dtype not in _FLOAT_DTYPES:
        raise PredictionError(f"{path} has dtype {dtype}; expected float16/32/64")
    size = path.stat().st_size
    expected = offset + math.prod(shape) * dtype.itemsize
    if size != expected:
        raise PredictionError(
            f"{path}: .npy shape {shape} of {dtype} needs {expected} bytes but the file has {size}"
        )
    return shape, dtype, bool(fortran), offset


def _read_npy(path: Path, mmap: bool, max_elements: int | None = None) -> np.ndarray:
    shape, dtype, _, _ = npy_header(path)
    if max_elements is not None and math.prod(shape) > max_elements:
        raise PredictionError(
            f"{path}: .npy shape {shape} has {math.prod(shape)} values; the split allows at most {max_elements}"
        )
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise PredictionError(f"{path}: not a readable .npy array ({exc})") from None


def read_generations(path: Path, limits: ReadLimits | None = None) -> dict[str, dict[str, str]]:
    """Parse ``generations.jsonl`` as a stream (errors name the line); ``limits`` caps the lines,
    the bytes of a line and the characters of each text, so memory stays bounded by one line."""
    limits = limits or ReadLimits()
    gens: dict[str, dict[str, str]] = {}
    cap = limits.max_line_bytes
    try:
        with open(path, "rb") as fh:
            n = 0
            while True:
                raw = fh.readline(cap + 2) if cap is not None else fh.readline()
                if not raw:
                    break
                n += 1
                if limits.max_lines is not None and n > limits.max_lines:
                    raise PredictionError(
                        f"{path}: more than {limits.max_lines} lines (one line per video of the split, "
                        "blank lines included)"
                    )
                if cap is not None and len(raw.rstrip(b"\r\n")) > cap:
                    raise PredictionError(f"{path}: line {n} is longer than {cap} bytes")
                line = raw.decode("utf-8")
                if line.strip():
                    _parse_generation(path, n, line, gens, limits)
    except (OSError, UnicodeDecodeError) as exc:
        raise PredictionError(f"{path}: not readable UTF-8 text ({exc})") from None
    return gens


def _parse_generation(
    path: Path, n: int, line: str, gens: dict[str, dict[str, str]], limits: ReadLimits
) -> None:
    try:
        obj = _loads(line, f"{path}: line {n}")
    except json.JSONDecodeError as exc:
        raise PredictionError(f"{path}: line {n} is not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise PredictionError(f"{path}: line {n} is not a JSON object")
    vid = obj.get("vid")
    if not isinstance(vid, str) or not vid:
        raise PredictionError(f"{path}: line {n} has no string 'vid'")
    if vid in gens:
        raise PredictionError(f"{path}: line {n}: vid {vid!r} appears twice")
    unknown = sorted(set(obj) - {"vid", *GENERATION_KINDS})
    if unknown:
        raise PredictionError(
            f"{path}: line {n} (vid {vid!r}) has unknown field(s) {unknown} (known: vid, title, caption)"
        )
    for kind, most in limits.max_text_chars.items():
        text = obj.get(kind)
        if isinstance(text, str) and len(text) > most:
            raise PredictionError(
                f"{path}: line {n} (vid {vid!r}): {kind} has {len(text)} characters; the limit is {most}"
            )
    gens[vid] = {k: obj[k] for k in GENERATION_KINDS if obj.get(k) is not None}


def _read_card(path: Path) -> dict[str, Any]:
    import yaml

    try:
        card = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError, RecursionError) as exc:
        raise PredictionError(f"{path}: not readable YAML ({str(exc).splitlines()[0][:200]})") from None
    if card is None:
        return {}
    if not isinstance(card, dict):
        raise PredictionError(f"{path}: expected a mapping, got {type(card).__name__}")
    return card


def load_predictions(
    path: str | os.PathLike[str], *, mmap: bool = True, limits: ReadLimits | None = None
) -> Predictions:
    """Read and validate a predictions directory (large arrays memory-mapped by default).

    Raises:
        PredictionError: a missing directory, no prediction files, unreadable or inconsistent parts.
    """
    root = Path(path)
    if not root.is_dir():
        raise PredictionError(f"predictions directory {root} does not exist")
    p = Predictions(path=root)
    f = root / GENERATIONS
    if f.is_file():
        p.generations = read_generations(f, limits)
    if (root / VIDEO_IDS).is_file():
        p.video_ids = _read_json_list(root / VIDEO_IDS)
    if (root / TEXT_IDS).is_file():
        p.text_ids = _read_json_list(root / TEXT_IDS)
    most = (limits or ReadLimits()).max_elements
    if (root / VIDEO_EMBEDDINGS).is_file():
        p.video_embeddings = _read_npy(root / VIDEO_EMBEDDINGS, mmap, most.get(VIDEO_EMBEDDINGS))
    if (root / TEXT_EMBEDDINGS).is_file():
        p.text_embeddings = _read_npy(root / TEXT_EMBEDDINGS, mmap, most.get(TEXT_EMBEDDINGS))
    for kind in TEXT_KINDS:
        name = similarity_file(kind)
        if (root / name).is_file():
            p.similarity[kind] = _read_npy(root / name, mmap, most.get(name))
    if (root / MODEL_CARD).is_file():
        p.model_card = _read_card(root / MODEL_CARD)
    if p.generations is None and p.video_ids is None and p.text_ids is None:
        raise PredictionError(
            f"{root}: no predictions found (expected {GENERATIONS}, or {VIDEO_IDS} with {VIDEO_EMBEDDINGS} "
            f"and {TEXT_IDS} with {TEXT_EMBEDDINGS}, or similarity_<kind>.npy)"
        )
    for name, ids, emb, emb_name in (
        (VIDEO_IDS, p.video_ids, p.video_embeddings, VIDEO_EMBEDDINGS),
        (TEXT_IDS, p.text_ids, p.text_embeddings, TEXT_EMBEDDINGS),
    ):
        if ids is not None and emb is None and not p.similarity:
            raise PredictionError(f"{root}: {name} without {emb_name} or a similarity_<kind>.npy")
    return p.validate()


# ------------------------------------------------------------------------------------------------
# writing


def write_predictions(
    path: str | os.PathLike[str],
    *,
    generations: Mapping[str, Mapping[str, str]] | None = None,
    video_ids: Sequence[str] | None = None,
    video_embeddings: Any = None,
    text_ids: Sequence[str] | None = None,
    text_embeddings: Any = None,
    similarity: Mapping[str, Any] | None = None,
    model_card: Mapping[str, Any] | None = None,
) -> Path:
    """Validate and write a predictions directory; the directory is replaced whole, atomically.

    Args:
        path: the directory (created, or replaced with the new contents).
        generations: vid -> {"title": text, "caption": text}.
        video_ids, video_embeddings: ids and ``[videos, D]`` embeddings (numpy or torch).
        text_ids, text_embeddings: ids (``"<vid>:<kind>:<k>"``) and ``[texts, D]`` embeddings.
        similarity: kind -> ``[texts of that kind, videos]`` matrix.
        model_card: a mapping saved as ``model_card.yaml``.

    Returns:
        The directory path.
    """
    import yaml

    def arr(x: Any) -> np.ndarray | None:
        if x is None:
            return None
        if hasattr(x, "detach") and hasattr(x, "cpu"):
            x = x.detach().cpu().numpy()
        return np.asarray(x)

    p = Predictions(
        generations={str(v): dict(g) for v, g in generations.items()} if generations is not None else None,
        video_ids=list(video_ids) if video_ids is not None else None,
        video_embeddings=arr(video_embeddings),
        text_ids=list(text_ids) if text_ids is not None else None,
        text_embeddings=arr(text_embeddings),
        similarity={k: a for k, v in (similarity or {}).items() if (a := arr(v)) is not None},
        model_card=dict(model_card or {}),
    ).validate()
    out = Path(path)
    with atomic_dir(out, owns=_prediction_file, what="a predictions writer") as tmp:
        if p.generations is not None:
            lines = [
                json.dumps({"vid": vid, **{k: g[k] for k in GENERATION_KINDS if k in g}}, ensure_ascii=False)
                for vid, g in p.generations.items()
            ]
            (tmp / GENERATIONS).write_text("".join(line + "\n" for line in lines), "utf-8")
        for name, ids in ((VIDEO_IDS, p.video_ids), (TEXT_IDS, p.text_ids)):
            if ids is not None:
                (tmp / name).write_text(json.dumps(ids, ensure_ascii=False), "utf-8")
        for name, a in ((VIDEO_EMBEDDINGS, p.video_embeddings), (TEXT_EMBEDDINGS, p.text_embeddings)):
            if a is not None:
                np.save(tmp / name, a, allow_pickle=False)
        for kind, sim in p.similarity.items():
            np.save(tmp / similarity_file(kind), sim, allow_pickle=False)
        if p.model_card:
            card = json.loads(json.dumps(p.model_card, default=str))  # Paths, tuples -> plain YAML
            (tmp / MODEL_CARD).write_text(yaml.safe_dump(card, allow_unicode=True, sort_keys=False), "utf-8")
        for f in tmp.iterdir():  # durable before the rename that publishes the directory
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    return out

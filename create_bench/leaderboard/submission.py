"""Leaderboard submissions (layer 5): the model card schema, safe unpacking, local validation.

A submission is a predictions directory (ARCHITECTURE.md, "Predictions") plus a
``model_card.yaml``, sent as a directory or a ``.tar.gz``. Everything here runs on untrusted
input, so every check fails closed with a :class:`~create_bench.errors.SubmissionError` that
names the file, member or field:

- the model card is YAML without aliases, validated against ``submission.schema.json``
  (the same file is published as ``leaderboard/submission.schema.json``);
- archives are read as a stream with a cap on the decompressed bytes and the member count
  (a gzip or tar bomb stops at the cap, never after), and only flat, regular files with known
  names are extracted, by this code, never by ``tarfile.extract``: ``../``, absolute paths,
  links and devices are rejected;
- predictions are loaded through :mod:`create_bench.predictions` (NaN, shapes, dtypes) and,
  when the split's ids are known, their id sets are checked against them.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from create_bench import predictions as P
from create_bench.errors import CreateBenchError, SubmissionError
from create_bench.leaderboard.storage import is_storage_error, open_private, work_prefix
from create_bench.predictions import Predictions, ReadLimits, load_predictions
from create_bench.types import TEXT_KINDS, describe_id_differences, id_differences

#: Version of the model card schema (``schema_version`` in ``model_card.yaml``).
SCHEMA_VERSION = 1
CARD_NAME = P.MODEL_CARD
#: Files a predictions directory may hold (ARCHITECTURE.md); anything else is rejected.
PREDICTION_FILES = (
    P.GENERATIONS,
    P.VIDEO_EMBEDDINGS,
    P.VIDEO_IDS,
    P.TEXT_EMBEDDINGS,
    P.TEXT_IDS,
    *(P.similarity_file(kind) for kind in TEXT_KINDS),
)
ALLOWED_FILES = frozenset((CARD_NAME, "README.md", *PREDICTION_FILES))


#: CREATE's longest reference title and caption, in characters (the paper's statistics: titles
#: are at most 36 characters, captions at most 113).
CREATE_MAX_CHARS = {"title": 36, "caption": 113}
#: Generated texts may be this many times longer than CREATE's longest reference (a generous
#: margin: a longer text cannot be a sensible title or caption, and scoring time grows with length).
TEXT_MARGIN = 4
#: Bytes allowed for a ``.npy`` header (numpy itself refuses headers over 10,000 bytes).
NPY_HEADER_BYTES = 16 << 10


@dataclass(frozen=True)
class Limits:
    """Size limits on a submission. The defaults fit the full CREATE test protocol.

    With the split's ids known (the server always knows them) every file also gets a cap derived
    from the split, see :func:`file_caps`, and the unpacked total is at most their sum.
    """

    #: The upload (compressed archive) in bytes.
    max_upload_bytes: int = 1 << 30
    #: All extracted files together, in bytes (what a decompression bomb would blow up).
    max_unpacked_bytes: int = 4 << 30
    #: Members in an archive (files and directories).
    max_files: int = 32
    #: The model card alone.
    max_card_bytes: int = 64 << 10
    #: Characters of a generated text, per kind: TEXT_MARGIN x CREATE's longest reference.
    max_text_chars: tuple[tuple[str, int], ...] = tuple(
        (k, TEXT_MARGIN * n) for k, n in CREATE_MAX_CHARS.items()
    )
    #: Bytes of one ``generations.jsonl`` line: both texts at their cap, every character
    #: written as a 6-byte ``\\uXXXX`` escape, plus the vid and keys, rounded up.
    max_line_bytes: int = 8 << 10
    #: Embedding dimension (CLIP-style encoders use 512-1024; 4096 leaves room).
    max_dim: int = 4096
    #: A PAX extended header or GNU long name (tar metadata that is read into memory whole).
    max_pax_bytes: int = 64 << 10
    #: Nesting of mappings/lists in the model card.
    max_card_depth: int = 32


def file_caps(expected: ExpectedIds, limits: Limits) -> dict[str, int]:
    """The most bytes each file may hold for this split (a bomb in any file stops there).

    With V videos, T texts (T_k of kind k), D = ``max_dim`` and 8 bytes a value (float64 is
    accepted): embeddings V x D x 8 and T x D x 8, similarity_k T_k x V x 8 (each plus a
    ``.npy`` header), id files 4 x their compact JSON + 64 KiB, ``generations.jsonl``
    V x ``max_line_bytes``, the card and README ``max_card_bytes``.
    """
    n_v = len(expected.vids)
    texts = [t for kind in expected.text_ids for t in expected.text_ids[kind]]
    caps = {
        CARD_NAME: limits.max_card_bytes,
        "README.md": limits.max_card_bytes,
        P.GENERATIONS: n_v * limits.max_line_bytes,
        P.VIDEO_IDS: 4 * len(json.dumps(list(expected.vids))) + (64 << 10),
        P.TEXT_IDS: 4 * len(json.dumps(texts)) + (64 << 10),
    }
    for name, count in element_caps(expected, limits).items():
        caps[name] = count * 8 + NPY_HEADER_BYTES
    return caps


def element_caps(expected: ExpectedIds, limits: Limits) -> dict[str, int]:
    """The most values each ``.npy`` file may hold for this split (see :func:`file_caps`)."""
    n_v = len(expected.vids)
    n_t = sum(len(ids) for ids in expected.text_ids.values())
    caps = {P.VIDEO_EMBEDDINGS: n_v * limits.max_dim, P.TEXT_EMBEDDINGS: n_t * limits.max_dim}
    for kind in TEXT_KINDS:
        caps[P.similarity_file(kind)] = len(expected.text_ids.get(kind, ())) * n_v
    return caps


def read_limits(expected: ExpectedIds | None, limits: Limits) -> ReadLimits:
    """The caps :func:`create_bench.predictions.load_predictions` applies to a submission."""
    return ReadLimits(
        max_lines=len(expected.vids) if expected is not None else None,
        max_line_bytes=limits.max_line_bytes,
        max_text_chars=dict(limits.max_text_chars),
        max_elements=element_caps(expected, limits) if expected is not None else {},
    )


# --------------------------------------------------------------------------- model card


@cache
def load_schema() -> dict[str, Any]:
    """The JSON schema of ``model_card.yaml`` (shipped with the package)."""
    text = resources.files("create_bench.leaderboard").joinpath("submission.schema.json").read_text("utf-8")
    return json.loads(text)


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}


def _is_type(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):  # bool is an int in Python
        return False
    if name == "number" and isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value: Any, schema: dict[str, Any], where: str = "$") -> list[str]:
    """Check ``value`` against the subset of JSON Schema that ``submission.schema.json`` uses.

    Supported keywords: type, const, enum, properties, required, additionalProperties (bool),
    items, uniqueItems, maxItems, minLength, maxLength, pattern, minimum, maximum. Returns one
    message per problem, each naming the field as a JSON path.

    >>> schema_errors({"a": "x"}, {"type": "object", "properties": {"a": {"type": "integer"}}})
    ['$.a: expected integer, got string']
    """
    errors: list[str] = []
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_is_type(value, t) for t in names):
            return [f"{where}: expected {' or '.join(names)}, got {_type_name(value)}"]
    if "const" in schema and (value != schema["const"] or type(value) is not type(schema["const"])):
        errors.append(f"{where}: must be {json.dumps(schema['const'])}, got {_short(value)}")
    if "enum" in schema and value not in schema["enum"]:
        choices = ", ".join(json.dumps(c, ensure_ascii=False) for c in schema["enum"])
        errors.append(f"{where}: {_short(value)} is not one of {choices}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: must not be empty" if not value else f"{where}: too short")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{where}: longer than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{where}: {_short(value)} does not match {schema['pattern']}")
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            errors.append(f"{where}: must be >= {schema['minimum']}, got {value}")
        if "maximum" in schema and value > schema["maximum"]:
            errors.append(f"{where}: must be <= {schema['maximum']}, got {value}")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(f"{where}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems") and len({json.dumps(v, sort_keys=True) for v in value}) != len(value):
            errors.append(f"{where}: items must be unique")
        if "items" in schema:
            for i, item in enumerate(value):
                errors += schema_errors(item, schema["items"], f"{where}[{i}]")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{where}: missing required field {key!r}")
        for key, item in value.items():
            if key in props:
                errors += schema_errors(item, props[key], f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                hint = difflib.get_close_matches(str(key), list(props), n=1)
                errors.append(
                    f"{where}: unknown field {str(key)!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                )
    return errors


def _type_name(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__


def _short(value: Any, n: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= n else text[: n - 3] + "..."


#: Nesting of mappings/lists the card parser allows (Limits.max_card_depth is the same default).
MAX_CARD_DEPTH = 32
#: Integers in a card must fit a signed 64-bit column.
_INT_RANGE = 1 << 63


class _NoAliasLoader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases (aliases allow YAML bombs) and with a nesting cap (a
    deeply nested card is an error, never a RecursionError)."""

    max_depth = MAX_CARD_DEPTH
    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a model card", event.start_mark
            )
        self._depth += 1
        try:
            if self._depth > self.max_depth:
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"nested more than {self.max_depth} levels deep",
                    self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _json_type_error(value: Any, where: str = "$") -> str | None:
    """Why a parsed card is not plain JSON data (dates, bytes, sets, huge integers...), or None."""
    stack = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, dict):
            for key, sub in item.items():
                if not isinstance(key, str):
                    return f"{at}: key {repr(key)[:40]} is not a string"
                stack.append((sub, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((sub, f"{at}[{i}]") for i, sub in enumerate(item))
        elif isinstance(item, bool) or item is None or isinstance(item, str):
            continue
        elif isinstance(item, int):
            if not -_INT_RANGE <= item < _INT_RANGE:
                return f"{at}: integer out of range (at most 64 bits)"
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{at}: {item} is not a finite number"
        else:
            kind = {"date": "date", "datetime": "timestamp", "bytes": "!!binary", "set": "!!set"}.get(
                type(item).__name__, type(item).__name__
            )
            return f"{at}: a YAML {kind} value; only JSON types are allowed (quote it to make it a string)"
    return None


#: Unicode categories a displayed name may not hold: controls, format characters (bidi
#: overrides, zero-width spaces and joiners), surrogates, private use, unassigned, and line or
#: paragraph separators.
_BANNED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def clean_name(value: str, *, what: str) -> str:
    """A model or team name as shown on the board: NFKC, whitespace runs collapsed, trimmed.

    Control, bidi and zero-width characters are an error (they hide or reorder what a reader
    sees), and so is a name that is empty once normalised.

    >>> clean_name(" Ｍｙ   Team ", what="team")
    'My Team'
    """
    text = unicodedata.normalize("NFKC", value)
    for i, ch in enumerate(text):
        if unicodedata.category(ch) in _BANNED_CATEGORIES:
            raise SubmissionError(
                f"{what}: character U+{ord(ch):04X} ({unicodedata.name(ch, 'unnamed')}) at position {i} "
                "is not allowed in a name (control, bidi or zero-width character)"
            )
    text = " ".join(text.split())
    if not text:
        raise SubmissionError(f"{what}: empty once normalised (only spaces or invisible characters)")
    return text


@dataclass(frozen=True)
class ModelCard:
    """A validated ``model_card.yaml``; ``data`` is the whole card as given."""

    data: dict[str, Any]

    @property
    def name(self) -> str:
        return str(self.data["name"]).strip()

    @property
    def team(self) -> str:
        return str(self.data["team"]).strip()

    @property
    def url(self) -> str | None:
        return self.data.get("url")

    @property
    def params(self) -> int | None:
        return self.data.get("params")

    @property
    def test_data_seen(self) -> bool:
        return bool(self.data["test_data_seen"])

    def model_info(self) -> dict[str, Any]:
        """The ``model`` section of a results JSON for this card."""
        keys = (
            "team",
            "description",
            "url",
            "params",
            "create_configs",
            "pretraining_data",
            "test_data_seen",
        )
        info = {"name": self.name, **{k: self.data.get(k) for k in keys}}
        if self.data.get("training_data") is not None:
            info["training_data"] = self.data["training_data"]
        return info

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), allow_unicode=True, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = CARD_NAME) -> ModelCard:
        """Validate a parsed card against the schema; raises SubmissionError listing every problem."""
        if not isinstance(data, dict):
            raise SubmissionError(f"{source}: expected a mapping of fields, got {_type_name(data)}")
        problem = _json_type_error(data)
        if problem:
            raise SubmissionError(f"{source}: {problem}")
        errors = schema_errors(data, load_schema())
        if errors:
            raise SubmissionError(
                f"{source} does not follow the model card schema (leaderboard/README.md):\n  "
                + "\n  ".join(errors)
            )
        data = json.loads(json.dumps(data))
        for key in ("name", "team"):
            data[key] = clean_name(data[key], what=f"{source}: $.{key}")
        return cls(data)


def parse_model_card(text: str, *, source: str = CARD_NAME) -> ModelCard:
    """Parse and validate the text of a model card."""
    return ModelCard.from_dict(parse_card_yaml(text, source=source), source=source)


def parse_card_yaml(text: str, *, source: str = CARD_NAME) -> Any:
    """The parsed YAML of a model card (no aliases), not yet checked against the schema."""
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise SubmissionError(f"{source}: malformed YAML{at}: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SubmissionError(f"{source}: malformed YAML: {exc}") from None
    except ValueError as exc:  # int() of a number over Python's 4300-digit limit, a bad date...
        if "digits" in str(exc):
            raise SubmissionError(f"{source}: an integer with too many digits (at most 64 bits)") from None
        raise SubmissionError(f"{source}: unsupported value ({str(exc).splitlines()[0][:120]})") from None
    except RecursionError:  # pragma: no cover - the depth cap stops nesting well before this
        raise SubmissionError(f"{source}: nested too deeply") from None
    return data


def load_model_card(path: str | os.PathLike[str], *, limits: Limits | None = None) -> ModelCard:
    """Read and validate ``model_card.yaml`` (size-capped, UTF-8)."""
    return parse_model_card(read_card_text(path, limits=limits))


def read_card_text(path: str | os.PathLike[str], *, limits: Limits | None = None) -> str:
    """The text of ``model_card.yaml`` (size-capped, UTF-8)."""
    limits = limits or Limits()
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"missing {CARD_NAME} (looked for {path})")
    size = path.stat().st_size
    if size > limits.max_card_bytes:
        raise SubmissionError(f"{CARD_NAME} is {size} bytes; the limit is {limits.max_card_bytes}")
    try:
        text = path.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{CARD_NAME} is not UTF-8 text (byte {exc.start})") from None
    return text


# --------------------------------------------------------------------------- archives


class _CappedReader(io.RawIOBase):
    """A read-only stream that raises once more than ``cap`` bytes have been read through it."""

    def __init__(self, inner: Any, cap: int, what: str):
        self.inner, self.cap, self.what, self.count = inner, cap, what, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.cap:
            raise SubmissionError(self.what)
        buffer[: len(data)] = data
        return len(data)


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses tar metadata records (PAX headers, GNU long names) over a cap:
    tarfile reads such a record into memory whole, before any of our checks see the member."""

    max_meta_bytes = 64 << 10

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        meta: tuple[bytes, ...] = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        meta += (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in meta and self.size > self.max_meta_bytes:
            raise SubmissionError(
                f"archive: a tar extended header (PAX or long name) of {self.size} bytes; "
                f"the limit is {self.max_meta_bytes}"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _m(name: str) -> str:
    """A member name for a message (an attacker's name can be long)."""
    return repr(name) if len(name) <= 80 else repr(name[:77]) + "..."


_MEMBER_KINDS = (
    ("issym", "a symbolic link"),
    ("islnk", "a hard link"),
    ("ischr", "a character device"),
    ("isblk", "a block device"),
    ("isfifo", "a FIFO"),
)


def _member_path(name: str) -> PurePosixPath:
    """The member's relative path, or a SubmissionError for anything that could escape."""
    if not name or "\x00" in name or "\\" in name:
        raise SubmissionError(f"archive member {_m(name)}: invalid name")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise SubmissionError(f"archive member {_m(name)}: absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SubmissionError(f"archive member {_m(name)}: '..' in paths is not allowed")
    if not parts:
        raise SubmissionError(f"archive member {_m(name)}: invalid name")
    return PurePosixPath(*parts)


def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def unpack_archive(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    expected: ExpectedIds | None = None,
) -> Path:
    """Safely extract a submission ``.tar.gz`` into the empty directory ``dest``.

    The archive may hold the files at its top level or inside one top-level directory; they are
    written flat into ``dest`` (the directory's name is never used on disk), which is returned.
    With ``expected`` every file is also capped by :func:`file_caps`. Raises SubmissionError
    (and leaves ``dest`` empty) on anything unsafe or over the limits.
    """
    limits = limits or Limits()
    archive, dest = Path(archive), Path(dest)
    size = archive.stat().st_size
    if size > limits.max_upload_bytes:
        raise SubmissionError(f"archive is {size} bytes; the upload limit is {limits.max_upload_bytes}")
    if not is_gzip(archive):
        raise SubmissionError(f"{archive.name}: not a gzip file (expected a .tar.gz)")
    dest.mkdir(parents=True, exist_ok=True)
    caps = file_caps(expected, limits) if expected is not None else {}
    try:
        _extract(archive, dest, limits, caps)
    except BaseException:
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    return dest


def _extract(archive: Path, dest: Path, limits: Limits, caps: dict[str, int]) -> None:
    unpacked = min(limits.max_unpacked_bytes, sum(caps.values())) if caps else limits.max_unpacked_bytes
    bomb = (
        f"archive expands beyond the limit of {unpacked} bytes "
        "(a decompression bomb, or a submission too large)"
    )
    # Tar headers, padding and capped PAX records come on top of file bytes.
    stream_cap = unpacked + (limits.max_files + 8) * (limits.max_pax_bytes + 2048) + (1 << 20)
    seen: set[PurePosixPath] = set()
    top: str | None = None
    total = 0
    members = 0
    with open(archive, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        capped = io.BufferedReader(_CappedReader(gz, stream_cap, bomb), buffer_size=1 << 16)
        try:
            tarinfo = type("TarInfo", (_CappedTarInfo,), {"max_meta_bytes": limits.max_pax_bytes})
            with tarfile.open(fileobj=capped, mode="r|", tarinfo=tarinfo) as tf:
                for member in tf:
                    members += 1
                    if members > limits.max_files:
                        raise SubmissionError(f"archive has more than {limits.max_files} members")
                    path = _member_path(member.name)
                    for attr, what in _MEMBER_KINDS:
                        if getattr(member, attr)():
                            raise SubmissionError(
                                f"archive member {_m(member.name)} is {what}; only files are allowed"
                            )
                    if member.isdir():
                        if len(path.parts) != 1 or (top is not None and top != path.parts[0]):
                            raise SubmissionError(
                                f"archive member {_m(member.name)}: files must be at the top level "
                                "or inside one top-level directory"
                            )
                        top = path.parts[0]
                        continue
                    if not member.isreg():
                        raise SubmissionError(f"archive member {_m(member.name)} is not a regular file")
                    if len(path.parts) == 2:
                        if top is not None and top != path.parts[0]:
                            raise SubmissionError(
                                f"archive member {_m(member.name)}: more than one top-level directory"
                            )
                        top = path.parts[0]
                    elif len(path.parts) > 2 or (len(path.parts) == 1 and top is not None):
                        raise SubmissionError(
                            f"archive member {_m(member.name)}: files must be at the top level "
                            "or inside one top-level directory"
                        )
                    _check_name(path.name, where=f"archive member {_m(member.name)}")
                    if path in seen:
                        raise SubmissionError(f"archive member {_m(member.name)} appears twice")
                    seen.add(path)
                    budget, over = unpacked - total, bomb
                    cap = caps.get(path.name)
                    if cap is not None and cap < budget:
                        budget = cap
                        over = (
                            f"archive member {_m(member.name)} expands beyond {cap} bytes, the most "
                            f"this file can need for the split (a decompression bomb?)"
                        )
                    if member.size > budget:
                        raise SubmissionError(over)
                    total += _copy_member(tf, member, dest / path.name, budget, over)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            if is_storage_error(exc):  # the server's disk, not the archive: never blame the submitter
                raise
            if isinstance(exc, gzip.BadGzipFile) or not isinstance(exc, OSError | EOFError):
                raise SubmissionError(f"{archive.name}: not a valid .tar.gz ({exc})") from None
            raise SubmissionError(f"{archive.name}: truncated or corrupt .tar.gz ({exc})") from None
    if not seen:
        raise SubmissionError(f"{archive.name}: the archive holds no files")


def _copy_member(tf: tarfile.TarFile, member: tarfile.TarInfo, out: Path, budget: int, bomb: str) -> int:
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover - isreg() members always have data
        raise SubmissionError(f"archive member {_m(member.name)} has no data")
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = 0
    # "xb": never follow or overwrite anything already there; permissions are ours, not the archive's.
    with open_private(out) as fh:
        while block := src.read(1 << 20):
            written += len(block)
            if written > budget:
                raise SubmissionError(bomb)
            fh.write(block)
    return written


def _check_name(name: str, *, where: str) -> None:
    if name not in ALLOWED_FILES:
        hint = difflib.get_close_matches(name, sorted(ALLOWED_FILES), n=1)
        raise SubmissionError(
            f"{where}: unexpected file {name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; a submission holds only {', '.join(sorted(ALLOWED_FILES))}"
        )


def check_directory(path: str | os.PathLike[str], *, limits: Limits | None = None) -> dict[str, int]:
    """Check a submission directory: flat, regular files with known names, within the limits.

    Returns ``{file name: size}``.
    """
    limits = limits or Limits()
    path = Path(path)
    if not path.is_dir():
        raise SubmissionError(f"{path}: not a directory or .tar.gz")
    sizes: dict[str, int] = {}
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        where = f"{path}/{entry.name}"
        if entry.is_symlink():
            raise SubmissionError(f"{where} is a symbolic link; only regular files are allowed")
        if not entry.is_file(follow_symlinks=False):
            raise SubmissionError(f"{where} is not a regular file (sub-directories are not allowed)")
        _check_name(entry.name, where=where)
        sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
    total = sum(sizes.values())
    if total > limits.max_unpacked_bytes:
        raise SubmissionError(f"{path}: {total} bytes of files; the limit is {limits.max_unpacked_bytes}")
    if len(sizes) > limits.max_files:
        raise SubmissionError(f"{path}: more than {limits.max_files} files")
    if CARD_NAME not in sizes:
        raise SubmissionError(f"{path}: missing {CARD_NAME} (see leaderboard/README.md for the format)")
    if not set(sizes) & set(PREDICTION_FILES):
        raise SubmissionError(f"{path}: no predictions (expected some of {', '.join(PREDICTION_FILES)})")
    return sizes


def pack_directory(src: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """Pack a checked submission directory into a ``.tar.gz`` (flat, regular files, fixed metadata)."""
    src, out = Path(src), Path(out)
    names = check_directory(src)
    with open(out, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for name in sorted(names):
                info = tarfile.TarInfo(name)
                info.size = names[name]
                info.mode = 0o644
                with open(src / name, "rb") as fh:
                    tf.addfile(info, fh)
    return out


# --------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class ExpectedIds:
    """The public ids of a split: its videos and the ids of their texts of each kind.

    The server keeps only these (and the reference texts stay inside the scorer), so checking a
    submission's id sets never touches reference text.
    """

    split: str
    vids: tuple[str, ...]
    text_ids: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, data_dir: str | os.PathLike[str], split: str) -> ExpectedIds:
        from create_bench.data.shards import read_table
        from create_bench.types import TEXT_COLUMN, text_id

        table = read_table(data_dir, split, columns=["vid", *TEXT_COLUMN.values()])
        vids = [str(v) for v in table.column("vid").to_pylist()]
        text_ids: dict[str, tuple[str, ...]] = {}
        for kind, column in TEXT_COLUMN.items():
            counts = [len(x or []) for x in table.column(column).to_pylist()]
            text_ids[kind] = tuple(text_id(v, kind, k) for v, n in zip(vids, counts) for k in range(n))
        return cls(split=split, vids=tuple(vids), text_ids=text_ids)


def _id_set_error(what: str, got: Sequence[str], expected: Sequence[str]) -> str | None:
    got_set, exp_set = set(got), set(expected)
    if len(got_set) != len(got):
        dups = sorted({x for x in got if list(got).count(x) > 1})[:5] if len(got) < 10_000 else []
        return f"{what}: duplicate ids" + (f" ({', '.join(map(repr, dups))})" if dups else "")
    missing, extra = id_differences(exp_set, got_set)
    if not missing and not extra:
        return None
    return f"{what}: ids do not match the split: " + describe_id_differences(missing, extra)


@dataclass(frozen=True)
class ValidatedSubmission:
    """A submission that passed every local check."""

    path: Path
    card: ModelCard
    files: dict[str, int]
    tasks: tuple[str, ...]
    predictions: Any = field(repr=False, default=None)


def validate_directory(
    path: str | os.PathLike[str], *, expected: ExpectedIds | None = None, limits: Limits | None = None
) -> ValidatedSubmission:
    """Every check a submission directory gets before it is scored or uploaded.

    Layout and sizes, the model card, the predictions (through
    :func:`create_bench.predictions.load_predictions`), and with ``expected`` the id sets.
    """
    limits = limits or Limits()
    path = Path(path)
    try:
        files = check_directory(path, limits=limits)
        card = load_model_card(path / CARD_NAME, limits=limits)
        preds = _load(path, expected, limits)
    except SubmissionError as exc:
        raise SubmissionError(_strip_root(str(exc), path)) from None
    if expected is not None:
        problems = _check_ids(preds, expected)
        if problems:
            raise SubmissionError(
                f"predictions do not match the {expected.split} split:\n  " + "\n  ".join(problems)
            )
    return ValidatedSubmission(
        path=path, card=card, files=files, tasks=tuple(preds.tasks()), predictions=preds
    )


def _load(path: Path, expected: ExpectedIds | None, limits: Limits) -> Predictions:
    try:
        return load_predictions(path, limits=read_limits(expected, limits))
    except CreateBenchError as exc:
        raise SubmissionError(f"invalid predictions: {exc}") from None
    except (ValueError, TypeError, KeyError, OSError, EOFError, RecursionError) as exc:  # never a 500
        if is_storage_error(exc):  # the server's disk, not the submission: never blame the submitter
            raise
        raise SubmissionError(f"invalid predictions: {type(exc).__name__}: {exc}") from None


def _strip_root(message: str, root: Path) -> str:
    """A message about a file of the submission, naming the file, not where it was unpacked
    (a server path, however it was given: relative, absolute or through a symbolic link)."""
    forms = {str(root), os.path.abspath(root), str(root.resolve())}
    for form in sorted(forms, key=len, reverse=True):
        message = message.replace(form + os.sep, "").replace(form, "<submission>")
    return message


def _check_ids(preds: Predictions, expected: ExpectedIds) -> list[str]:
    """Id-set problems of ``preds`` against the split (reference-free: ids only)."""
    problems = []
    if preds.video_ids is not None:
        problems.append(_id_set_error("video_ids.json", preds.video_ids, expected.vids))
    if preds.text_ids is not None:
        for kind in expected.text_ids:
            ids = preds.text_rows(kind)[1]
            if ids:
                problems.append(_id_set_error(f"text_ids.json ({kind})", ids, expected.text_ids[kind]))
    if preds.generations is not None:
        problems.append(_id_set_error("generations.jsonl", list(preds.generations), expected.vids))
    return [p for p in problems if p]


@contextlib.contextmanager
def open_submission(
    path: str | os.PathLike[str],
    *,
    expected: ExpectedIds | None = None,
    limits: Limits | None = None,
    workdir: str | os.PathLike[str] | None = None,
) -> Iterator[ValidatedSubmission]:
    """Validate a submission directory or ``.tar.gz``; archives are unpacked into a temporary
    directory (under ``workdir``) that is removed on exit."""
    path = Path(path)
    if path.is_dir():
        yield validate_directory(path, expected=expected, limits=limits)
        return
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file or directory")
    if workdir is not None:
        Path(workdir).mkdir(mode=0o700, parents=True, exist_ok=True)
    # Named after this process, so that a restart can tell its own orphans (storage.clean_work_dirs).
    tmp = Path(tempfile.mkdtemp(prefix=work_prefix(), dir=workdir))
    try:
        root = unpack_archive(path, tmp, limits=limits, expected=expected)
        yield validate_directory(root, expected=expected, limits=limits)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

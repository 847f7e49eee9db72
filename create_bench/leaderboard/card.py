"""The leaderboard's model card (layer 5): ``model_card.yaml``, its schema, and display names.

The card is YAML without aliases and with a nesting cap, holding only JSON types, validated
against ``submission.schema.json`` (the same file is published as
``leaderboard/submission.schema.json``). Team and model names are normalised for display by
:func:`clean_name`.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from create_bench.errors import SubmissionError
from create_bench.leaderboard.limits import CARD_NAME, Limits

#: Version of the model card schema (``schema_version`` in ``model_card.yaml``).
SCHEMA_VERSION = 1


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

"""Score signatures (layer 0), after sacrebleu: every setting that changes a number travels with it.

Example::

    >>> s = Signature(data="ab12cd", split="test", frames="uniform-center@8", ties="expected", refs=10)
    >>> s.format()
    'create-bench:0.1.0|data:ab12cd|split:test|frames:uniform-center@8|ties:expected|refs:10'
    >>> Signature.parse(s.format()).fields["refs"]
    '10'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from create_bench import __version__

#: Canonical order of the fields (unknown fields follow, sorted).
FIELD_ORDER = (
    "data",
    "split",
    "protocol",
    "frames",
    "decode",
    "tok",
    "norm",
    "ties",
    "refs",
    "metric",
    "bootstrap",
    "seed",
)


@dataclass(frozen=True)
class Signature:
    fields: dict[str, Any] = field(default_factory=dict)
    version: str = __version__

    def __init__(self, version: str = __version__, **fields: Any):
        object.__setattr__(self, "version", version)
        object.__setattr__(self, "fields", {k: v for k, v in fields.items() if v is not None})

    def update(self, **fields: Any) -> Signature:
        return Signature(self.version, **{**self.fields, **fields})

    def ordered(self) -> list[tuple[str, Any]]:
        known = [(k, self.fields[k]) for k in FIELD_ORDER if k in self.fields]
        rest = sorted((k, v) for k, v in self.fields.items() if k not in FIELD_ORDER)
        return known + rest

    def format(self) -> str:
        parts = [f"create-bench:{self.version}"] + [f"{k}:{v}" for k, v in self.ordered()]
        return "|".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"create-bench": self.version, **dict(self.ordered())}

    def __str__(self) -> str:
        return self.format()

    @classmethod
    def parse(cls, text: str) -> Signature:
        parts = text.split("|")
        head, _, version = parts[0].partition(":")
        if head != "create-bench":
            raise ValueError(f"not a create-bench signature: {text!r}")
        fields = dict(p.split(":", 1) for p in parts[1:])
        return cls(version, **fields)

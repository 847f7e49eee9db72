"""A split's references for scoring (layer 4): :class:`References` (vids, categories, texts per
kind, cut to the protocol) and :func:`load_references`.

Split out of :mod:`create_bench.scoring`, which re-exports both names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from create_bench.errors import DataError
from create_bench.types import TEXT_COLUMN, TEXT_KINDS


@dataclass(frozen=True)
class References:
    """A split's references, in dataset order.

    Attributes:
        vids: video ids.
        categories: category id per video.
        category_names: category id -> name.
        texts: kind -> per-video list of texts (already cut to the protocol).
    """

    vids: list[str]
    categories: np.ndarray
    category_names: dict[int, str]
    texts: dict[str, list[list[str]]]

    @classmethod
    def from_table(cls, table: Any) -> References:
        """From an Arrow table with ``vid``, ``category``, ``category_name``, ``titles``, ``captions``."""
        cols = table.to_pydict()
        vids = [str(v) for v in cols["vid"]]
        if len(set(vids)) != len(vids):
            dup = next(v for i, v in enumerate(vids) if v in vids[:i])
            raise DataError("duplicate vid in the split", vid=dup)
        cats = np.asarray(cols["category"], dtype=np.int64)
        names = {int(c): str(n) for c, n in zip(cols["category"], cols["category_name"])}
        texts: dict[str, list[list[str]]] = {
            kind: [list(x or []) for x in cols[TEXT_COLUMN[kind]]] for kind in TEXT_KINDS
        }
        return cls(vids, cats, names, texts)

    def for_protocol(self, protocol: str) -> References:
        if protocol == "multi-reference":
            return self
        return References(
            self.vids,
            self.categories,
            self.category_names,
            {k: [t[:1] for t in v] for k, v in self.texts.items()},
        )

    def has_texts(self, kind: str) -> bool:
        return all(len(t) > 0 for t in self.texts[kind])


def load_references(data_dir: str | os.PathLike[str], split: str) -> References:
    """The references of ``split`` read from a create-bench dataset directory."""
    from create_bench.data.shards import read_table

    table = read_table(data_dir, split, columns=["vid", "category", "category_name", "titles", "captions"])
    return References.from_table(table)

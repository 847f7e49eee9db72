"""What a submission may hold (layer 5): its files, its size limits, and the split's ids.

The per-file caps derived from a split (:func:`file_caps`) bound what unpacking an archive
(:mod:`create_bench.leaderboard.archive`) and loading predictions may read, so a bomb in any file
stops at its cap.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass, field

from create_bench import predictions as P
from create_bench.errors import SubmissionError
from create_bench.predictions import ReadLimits
from create_bench.types import TEXT_KINDS

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


def _check_name(name: str, *, where: str) -> None:
    if name not in ALLOWED_FILES:
        hint = difflib.get_close_matches(name, sorted(ALLOWED_FILES), n=1)
        raise SubmissionError(
            f"{where}: unexpected file {name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; a submission holds only {', '.join(sorted(ALLOWED_FILES))}"
        )

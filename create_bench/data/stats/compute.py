"""Dataset statistics for the data cards (layer 2): the computation, one deterministic JSON.

``compute_stats(dir)`` reads only text and metadata columns (never video bytes), streaming each
split in record batches, and returns a JSON-ready dict: per split, the videos, texts, tags,
categories, text lengths, vocabulary, video metadata, title/caption word overlap and
part-of-speech statistics. :func:`dumps` gives its canonical text (sorted keys, floats rounded to
4 decimals, so it can be compared with a committed copy); ``create_bench.data.stats.write_stats``
writes it as ``stats.json`` plus the plots of :mod:`create_bench.data.stats.plots`.

Definitions (also in the card):

* Text is first normalised as the captioning metrics do it (``create_bench.text.normalize``: NFKC,
  lower-case, whitespace collapsed). **Characters** of a text: its non-whitespace characters,
  punctuation included. **Words**: the metrics' jieba tokenizer (``get_tokenizer("jieba")``), which
  drops tokens made only of punctuation or symbols. Character vocabularies leave out whitespace,
  punctuation and symbols too.
* **Tags**: the stored strings as they are (no normalisation); unique tags count distinct strings.
* **Overlap**: per video, the set of words of all its titles T and of all its captions C;
  ``title_words_in_captions`` is |T & C| / |T|, given as the mean over videos (``macro``) and as
  sum |T & C| / sum |T| (``micro``). A split with 10 titles and 10 captions per video has larger
  sets than one with 1 + 1, so compare overlaps only between splits with the same reference count.
* **Part of speech**: ``jieba.posseg`` on the normalised text (its own segmentation, which can
  differ slightly from the tokenizer's); a noun is any flag starting with ``n``, a verb ``v``
  (``vn``, ``vd`` included), an adjective ``a``. Punctuation/symbol tokens are not counted.
* Distributions give count, mean, std (population), min, p5, p25, median, p75, p95 (numpy's
  linear interpolation), max and a histogram ``{"edges", "counts"}`` whose bin ``i`` is
  ``[edges[i], edges[i+1])``, with a round bin width picked from the data's range.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from create_bench.data.schema import EVAL_SPLITS
from create_bench.data.shards import iter_batches, open_dataset
from create_bench.errors import ConfigError
from create_bench.progress import Progress
from create_bench.text.normalize import NORMALIZER_NAME, is_punct_or_symbol, normalize
from create_bench.text.tokenizers import get_tokenizer

log = logging.getLogger(__name__)

#: Bump when a definition above changes (the committed card statistics must then be regenerated).
STATS_VERSION = 1
#: The columns statistics read: everything but ``video`` (and ``split``/``category_name``, implied).
COLUMNS = (
    "vid",
    "category",
    "tags",
    "raw_title",
    "titles",
    "captions",
    "num_frames",
    "fps",
    "duration",
    "width",
    "height",
    "rotation",
)
#: Text kinds: the shard column each is read from.
TEXT_KINDS = {"title": "titles", "caption": "captions", "raw_title": "raw_title"}
#: Part-of-speech classes by the first letter of jieba's flag.
POS_CLASSES = {"noun": "n", "verb": "v", "adjective": "a"}
TOP_K = 20
DIGITS = 4
NO_CATEGORY = "(none)"

# --------------------------------------------------------------------------------------------
# Pure helpers: rounding, distributions, histograms
# --------------------------------------------------------------------------------------------


def _r(x: float) -> float:
    """Round for the JSON (and turn -0.0 into 0.0, numpy scalars into floats)."""
    return round(float(x), DIGITS) + 0.0


_NICE = (1, 2, 2.5, 5)


def _nice_width(span: float, max_bins: int, *, integer: bool) -> float:
    """The smallest round width (1, 2, 2.5, 5 x 10^k; integers for integer data) giving at most
    ``max_bins`` bins over ``span``."""
    k = math.floor(math.log10(span / max_bins)) if span > 0 else 0
    k = max(k, 0) if integer else max(k, -3)
    while True:
        for m in _NICE:
            w = m * 10.0**k
            if integer and (w != int(w)):
                continue
            if span / w < max_bins:
                return w
        k += 1


def histogram(
    values: Sequence[float] | np.ndarray,
    *,
    integer: bool,
    max_bins: int = 40,
    span: tuple[float, float] | None = None,
) -> dict[str, list[Any]]:
    """A histogram with a round bin width: ``{"edges": [...], "counts": [...]}``.

    Bin ``i`` holds values in ``[edges[i], edges[i+1])``; the last edge is above the maximum.
    ``span`` (lo, hi), which must contain the values, sets the binned range instead of the data's
    own (so that every split of a dataset gets the same bins).

    >>> histogram([1, 2, 2, 7], integer=True, max_bins=10)
    {'edges': [1, 2, 3, 4, 5, 6, 7, 8], 'counts': [1, 2, 0, 0, 0, 0, 1]}
    """
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = float(a.min()), float(a.max())
    if span is not None:
        lo, hi = min(lo, span[0]), max(hi, span[1])
    w = _nice_width(hi - lo, max_bins, integer=integer)
    start = math.floor(lo / w) * w
    n = int(math.floor((hi - start) / w)) + 1
    idx = np.floor((a - start) / w).astype(np.int64).clip(0, n - 1)
    counts = np.bincount(idx, minlength=n)
    edges = [start + i * w for i in range(n + 1)]
    edges_out: list[Any] = [int(round(e)) for e in edges] if integer else [_r(e) for e in edges]
    return {"edges": edges_out, "counts": [int(c) for c in counts]}


def distribution(
    values: Sequence[float] | np.ndarray,
    *,
    integer: bool,
    max_bins: int = 40,
    span: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Summary of a sample: count, mean, std, min, p5, p25, median, p75, p95, max, histogram.

    >>> d = distribution([1, 2, 3, 4], integer=True)
    >>> d["mean"], d["median"], d["max"], d["count"]
    (2.5, 2.5, 4.0, 4)
    """
    a = np.sort(np.asarray(values, dtype=np.float64))
    if a.size == 0:
        return {"count": 0}
    # fsum: exact sums, so the rounded mean does not depend on numpy's summation order.
    mean = math.fsum(a.tolist()) / a.size
    std = math.sqrt(math.fsum(((a - mean) ** 2).tolist()) / a.size)
    q = np.percentile(a, [5, 25, 50, 75, 95])
    return {
        "count": int(a.size),
        "mean": _r(mean),
        "std": _r(std),
        "min": _r(a[0]),
        "p5": _r(q[0]),
        "p25": _r(q[1]),
        "median": _r(q[2]),
        "p75": _r(q[3]),
        "p95": _r(q[4]),
        "max": _r(a[-1]),
        "histogram": histogram(a, integer=integer, max_bins=max_bins, span=span),
    }


def top(counter: Counter[str], k: int = TOP_K) -> list[list[Any]]:
    """The ``k`` most frequent items as ``[item, count]``, ties broken by the item (deterministic).

    >>> top(Counter({"b": 2, "a": 2, "c": 1}), 2)
    [['a', 2], ['b', 2]]
    """
    return [[w, int(c)] for w, c in sorted(counter.items(), key=lambda wc: (-wc[1], wc[0]))[:k]]


def _share(num: int, den: int) -> float | None:
    return _r(num / den) if den else None


# --------------------------------------------------------------------------------------------
# Text analysis (cached: CREATE's references repeat, and the sample's templates even more)
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _pos_tokenizer() -> Any:
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    # A private tokenizer over the default dictionary: words a user adds to the global jieba
    # must not change the statistics.
    return jieba.posseg.POSTokenizer(jieba.Tokenizer())


def pos_tagger_signature() -> str:
    import jieba

    return f"jieba.posseg-{jieba.__version__}"


@dataclass(frozen=True)
class TextInfo:
    chars: int
    words: tuple[str, ...]
    char_vocab: frozenset[str]


@functools.lru_cache(maxsize=1 << 16)
def analyse_text(text: str) -> TextInfo:
    """Characters, words and character set of one text (see the module docstring)."""
    norm = normalize(text)
    chars = [c for c in norm if not c.isspace()]
    return TextInfo(
        chars=len(chars),
        words=tuple(get_tokenizer("jieba")(text)),
        char_vocab=frozenset(c for c in chars if not is_punct_or_symbol(c)),
    )


@functools.lru_cache(maxsize=1 << 16)
def pos_tags(text: str) -> tuple[tuple[str, str], ...]:
    """``(word, flag)`` pairs from jieba.posseg on the normalised text, punctuation dropped."""
    return tuple(
        (p.word, p.flag)
        for p in _pos_tokenizer().cut(normalize(text))
        if p.word.strip() and not is_punct_or_symbol(p.word)
    )


# --------------------------------------------------------------------------------------------
# Accumulators: collect per-video values of one split; ``result(spans)`` turns them into JSON,
# with histogram ranges (``spans``) shared by every split of the dataset.
# --------------------------------------------------------------------------------------------

Spans = dict[str, tuple[float, float]]


def _ints() -> array[int]:
    return array("q")


def _floats() -> array[float]:
    return array("d")


@dataclass
class _TextAcc:
    pos: bool
    per_video: array[int] = field(default_factory=_ints)
    chars: array[int] = field(default_factory=_ints)
    words: array[int] = field(default_factory=_ints)
    word_counts: Counter[str] = field(default_factory=Counter)
    char_vocab: set[str] = field(default_factory=set)
    pos_counts: dict[str, Counter[str]] = field(default_factory=lambda: {k: Counter() for k in POS_CLASSES})
    pos_tokens: int = 0

    def add(self, texts: list[str]) -> set[str]:
        """Add one video's texts; return the set of their words."""
        self.per_video.append(len(texts))
        seen: set[str] = set()
        for t in texts:
            info = analyse_text(t)
            self.chars.append(info.chars)
            self.words.append(len(info.words))
            self.word_counts.update(info.words)
            self.char_vocab |= info.char_vocab
            seen.update(info.words)
            if self.pos:
                tags = pos_tags(t)
                self.pos_tokens += len(tags)
                for word, flag in tags:
                    for cls, prefix in POS_CLASSES.items():
                        if flag.startswith(prefix):
                            self.pos_counts[cls][word] += 1
        return seen

    def samples(self, prefix: str) -> dict[str, array[int]]:
        return {f"{prefix}.{k}": getattr(self, k) for k in ("per_video", "chars", "words")}

    def result(self, spans: Spans, prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "texts": len(self.chars),
            "videos_with_text": sum(1 for n in self.per_video if n),
        }
        if not self.chars:
            return out
        for k, v in self.samples(prefix).items():
            out[k.rsplit(".", 1)[1]] = distribution(v, integer=True, span=spans.get(k))
        out["vocabulary"] = {"words": len(self.word_counts), "chars": len(self.char_vocab)}
        out["top_words"] = top(self.word_counts)
        if self.pos:
            out["pos"] = {
                cls: {
                    "tokens": sum(c.values()),
                    "share": _share(sum(c.values()), self.pos_tokens),
                    "distinct": len(c),
                    "top": top(c),
                }
                for cls, c in self.pos_counts.items()
            }
            out["pos"]["all_tokens"] = self.pos_tokens
        return out


@dataclass
class _Overlap:
    inter: int = 0
    total: int = 0
    shares: list[float] = field(default_factory=list)

    def add(self, a: set[str], b: set[str]) -> None:
        """Share of the words of ``a`` that also occur in ``b`` (videos where ``a`` is empty skip)."""
        if not a:
            return
        n = len(a & b)
        self.inter += n
        self.total += len(a)
        self.shares.append(n / len(a))

    def result(self) -> dict[str, Any]:
        return {
            "videos": len(self.shares),
            "macro": _r(math.fsum(self.shares) / len(self.shares)) if self.shares else None,
            "micro": _share(self.inter, self.total),
        }


_OVERLAPS = ("title_words_in_captions", "caption_words_in_titles", "title_words_in_raw_title")
_META = {"duration": False, "fps": False, "num_frames": True}  # name -> integer-valued


@dataclass
class _SplitAcc:
    categories: list[str]
    pos: bool
    videos: int = 0
    tags_per_video: array[int] = field(default_factory=_ints)
    tag_counts: Counter[str] = field(default_factory=Counter)
    category_counts: Counter[int] = field(default_factory=Counter)
    text: dict[str, _TextAcc] = field(default_factory=dict)
    overlaps: dict[str, _Overlap] = field(default_factory=dict)
    meta: dict[str, array[float]] = field(default_factory=dict)
    resolutions: Counter[str] = field(default_factory=Counter)
    orientations: Counter[str] = field(default_factory=Counter)
    rotations: Counter[str] = field(default_factory=Counter)
    fps_values: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.text = {k: _TextAcc(pos=self.pos and k != "raw_title") for k in TEXT_KINDS}
        self.overlaps = {k: _Overlap() for k in _OVERLAPS}
        self.meta = {k: _floats() for k in _META}

    def add(self, row: dict[str, Any]) -> None:
        self.videos += 1
        tags = row.get("tags") or []
        self.tags_per_video.append(len(tags))
        self.tag_counts.update(tags)
        self.category_counts[int(row["category"])] += 1
        words: dict[str, set[str]] = {}
        for kind, col in TEXT_KINDS.items():
            v = row.get(col)
            texts = ([v] if v else []) if isinstance(v, str) else list(v or [])
            words[kind] = self.text[kind].add(texts)
        if words["title"] and words["caption"]:
            self.overlaps["title_words_in_captions"].add(words["title"], words["caption"])
            self.overlaps["caption_words_in_titles"].add(words["caption"], words["title"])
        if words["title"] and words["raw_title"]:
            self.overlaps["title_words_in_raw_title"].add(words["title"], words["raw_title"])
        self._add_video_meta(row)

    def _add_video_meta(self, row: dict[str, Any]) -> None:
        for k in self.meta:
            self.meta[k].append(float(row[k]))
        w, h, rot = int(row["width"]), int(row["height"]), int(row["rotation"] or 0)
        self.resolutions[f"{w}x{h}"] += 1
        self.rotations[str(rot)] += 1
        if rot % 180 == 90:  # displayed sideways: width and height swap
            w, h = h, w
        self.orientations["landscape" if w > h else "portrait" if h > w else "square"] += 1
        self.fps_values[f"{float(row['fps']):.3f}"] += 1

    def samples(self) -> dict[str, Sequence[float]]:
        out: dict[str, Sequence[float]] = {"tags.per_video": self.tags_per_video}
        for kind, acc in self.text.items():
            out.update(acc.samples(f"text.{kind}"))
        out.update({f"video.{k}": v for k, v in self.meta.items()})
        return out

    def result(self, spans: Spans) -> dict[str, Any]:
        cats: list[dict[str, Any]] = [
            {"id": i, "name": name, "videos": int(self.category_counts.get(i, 0))}
            for i, name in enumerate(self.categories)
        ]
        if self.category_counts.get(-1):
            cats.append({"id": -1, "name": NO_CATEGORY, "videos": int(self.category_counts[-1])})
        texts = {k: acc.result(spans, f"text.{k}") for k, acc in self.text.items()}
        ann_words = set(self.text["title"].word_counts) | set(self.text["caption"].word_counts)
        ann_chars = self.text["title"].char_vocab | self.text["caption"].char_vocab
        video: dict[str, Any] = {
            k: distribution(v, integer=_META[k], span=spans.get(f"video.{k}")) for k, v in self.meta.items()
        }
        video.update(
            fps_values=top(self.fps_values),
            resolutions=top(self.resolutions),
            distinct_resolutions=len(self.resolutions),
            orientation=dict(sorted(self.orientations.items())),
            rotation=dict(sorted(self.rotations.items())),
        )
        return {
            "videos": self.videos,
            "titles": texts["title"]["texts"],
            "captions": texts["caption"]["texts"],
            "raw_titles": texts["raw_title"]["texts"],
            "tags": {
                "total": sum(self.tag_counts.values()),
                "unique": len(self.tag_counts),
                "per_video": distribution(
                    self.tags_per_video, integer=True, span=spans.get("tags.per_video")
                ),
                "top": top(self.tag_counts),
            },
            "categories": cats,
            "categories_present": sum(1 for c in cats if c["videos"] and c["id"] >= 0),
            "text": texts,
            "vocabulary": {"annotation_words": len(ann_words), "annotation_chars": len(ann_chars)},
            "overlap": {k: o.result() for k, o in self.overlaps.items()},
            "video": video,
        }


def _spans(accs: Iterable[_SplitAcc]) -> Spans:
    """Per quantity, the (min, max) over every split: the shared histogram range."""
    spans: Spans = {}
    for acc in accs:
        for key, values in acc.samples().items():
            if len(values):
                lo, hi = min(values), max(values)
                old = spans.get(key)
                spans[key] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return spans


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def ordered_splits(splits: Iterable[str]) -> list[str]:
    """train, validation, test first, then the others by name."""
    order = {s: i for i, s in enumerate(EVAL_SPLITS)}
    return sorted(splits, key=lambda s: (order.get(s, len(order)), s))


def _skipped(manifest: dict[str, Any], splits: Sequence[str]) -> dict[str, Any]:
    """``{"skipped": {split: n}}``: rows ``build --on-error skip`` left out of the described splits
    (see build_report.json); empty when none, so datasets without skipped rows keep their stats."""
    skipped = {s: int(n) for s, n in (manifest.get("skipped") or {}).items() if n and s in splits}
    return {"skipped": skipped} if skipped else {}


def compute_stats(
    data_dir: str | os.PathLike[str],
    *,
    splits: Sequence[str] | None = None,
    pos: bool = True,
    max_rows: int | None = None,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """Statistics of a dataset, per split (see the module docstring for the definitions).

    Args:
        data_dir: a create-bench dataset directory.
        splits: the splits to describe (default: all, in train/validation/test/other order).
        pos: compute part-of-speech statistics (about half the time of a run).
        max_rows: describe only the first ``max_rows`` rows of each split (in manifest order),
            e.g. for a quick look at the 10M pre-training split; recorded in the result.
        batch_size: rows per record batch read.

    Raises:
        ManifestError, DataError: not a dataset, unknown split, missing columns.
        ConfigError: a bad ``max_rows``.
    """
    if max_rows is not None and max_rows < 1:
        raise ConfigError(f"max_rows must be >= 1, got {max_rows}")
    info = open_dataset(data_dir)
    chosen = ordered_splits(splits if splits else info.splits)
    for s in chosen:
        info.files(s)  # raises DataError naming the known splits
    accs: dict[str, _SplitAcc] = {}
    for split in chosen:
        acc = accs[split] = _SplitAcc(info.categories, pos)
        n_rows = info.num_rows(split)
        total = n_rows if max_rows is None else min(n_rows, max_rows)
        # Explicit single partition: statistics describe the whole split even inside a
        # torch.distributed job or a DataLoader worker.
        with Progress(f"stats: {split}", total, unit="videos") as bar:
            for batch in iter_batches(
                data_dir,
                split,
                COLUMNS,
                batch_size=batch_size,
                rank=0,
                world_size=1,
                worker_id=0,
                num_workers=1,
            ):
                before = acc.videos
                for row in batch.to_pylist():
                    if max_rows is not None and acc.videos >= max_rows:
                        break
                    acc.add(row)
                bar.update(acc.videos - before)
                if max_rows is not None and acc.videos >= max_rows:
                    break
    spans = _spans(accs.values())
    out_splits = {split: acc.result(spans) for split, acc in accs.items()}
    all_tags: set[str] = set()
    all_words: set[str] = set()
    for acc in accs.values():
        all_tags.update(acc.tag_counts)
        all_words.update(acc.text["title"].word_counts, acc.text["caption"].word_counts)
    stats = {
        "stats_version": STATS_VERSION,
        "dataset": {
            "name": info.name,
            "fingerprint": info.fingerprint,
            "schema_version": info.manifest.get("schema_version"),
            "generator": info.manifest.get("generator", {}),
            "num_categories": len(info.categories),
            "rows": {s: info.num_rows(s) for s in chosen},
            **_skipped(info.manifest, chosen),
        },
        "tokenizer": get_tokenizer("jieba").signature(),
        "normalizer": NORMALIZER_NAME,
        "pos_tagger": pos_tagger_signature() if pos else None,
        "max_rows": max_rows,
        "splits": out_splits,
        "overall": {
            "videos": sum(s["videos"] for s in out_splits.values()),
            "unique_tags": len(all_tags),
            "annotation_words": len(all_words),
        },
    }
    # A JSON round trip: tuples become lists, keys sorted, so the dict equals the file's content.
    return json.loads(dumps(stats))


def dumps(stats: dict[str, Any]) -> str:
    """The canonical JSON text of a statistics dict (sorted keys, UTF-8, 2-space indent)."""
    return json.dumps(stats, ensure_ascii=False, indent=2, sort_keys=True) + "\n"

"""Dataset statistics for the data cards (layer 2): one deterministic JSON and a few PNG plots.

``compute_stats(dir)`` reads only text and metadata columns (never video bytes), streaming each
split in record batches, and returns a JSON-ready dict: per split, the videos, texts, tags,
categories, text lengths, vocabulary, video metadata, title/caption word overlap and
part-of-speech statistics. ``write_stats(dir, out)`` writes it as ``stats.json`` (sorted keys,
floats rounded to 4 decimals, so it can be compared with a committed copy) plus PNG plots whose
Chinese labels are drawn in a real CJK font.

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
import shutil
import subprocess
import warnings
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.data.importer import skipped_note
from create_bench.data.schema import EVAL_SPLITS
from create_bench.data.shards import iter_batches, open_dataset
from create_bench.errors import BackendUnavailable, ConfigError, DataError
from create_bench.fsutil import atomic_path, atomic_write_text
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


def write_stats(
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    plots: bool = True,
    **kw: Any,
) -> dict[str, Any]:
    """Compute the statistics and write ``out_dir/stats.json`` and (with ``plots``) the PNGs.

    Keyword arguments go to :func:`compute_stats`. Every file is written atomically. Returns the
    statistics, with the written paths under ``"files"`` (not part of ``stats.json``).

    Raises:
        BackendUnavailable: no CJK font for the plots (checked before anything is written).
    """
    out = Path(out_dir)
    if plots:
        find_cjk_font()  # fail before the (possibly long) computation
    stats = compute_stats(data_dir, **kw)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "stats.json"]
    atomic_write_text(files[0], dumps(stats))
    if plots:
        files += plot_stats(stats, out)
    return {**stats, "files": [str(f) for f in files]}


# --------------------------------------------------------------------------------------------
# The statistics block of a data card (Markdown between two markers, regenerated, never edited)
# --------------------------------------------------------------------------------------------

CARD_BEGIN = "<!-- create-bench stats: begin (generated by `create-bench stats`; do not edit by hand) -->"
CARD_END = "<!-- create-bench stats: end -->"
_TEXT_LABELS = {"title": "title", "caption": "caption", "raw_title": "raw title"}


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(r) + " |" for r in rows]


def _num(x: float, digits: int) -> str:
    """An integral value without decimals, anything else with ``digits`` decimals."""
    return f"{int(x):,}" if float(x).is_integer() else f"{x:,.{digits}f}"


def _dist_cell(d: dict[str, Any], digits: int = 1) -> str:
    """``mean / median / p95 / max`` of a distribution."""
    if not d.get("count"):
        return "-"
    return f"{_fmt(d['mean'], digits)} / " + " / ".join(_num(d[k], digits) for k in ("median", "p95", "max"))


def _skipped_lines(ds: dict[str, Any], splits: dict[str, Any]) -> list[str]:
    """The rows ``build --on-error skip`` left out, which users should report with their scores."""
    notes = [skipped_note(s, n) for s, n in (ds.get("skipped") or {}).items()]
    if not notes:
        return []
    return ["**Skipped at build time:** " + "; ".join(notes) + ". Report this with any score on them.", ""]


def card_markdown(stats: dict[str, Any], plots: str | None = None) -> str:
    """The Markdown statistics block of a card, from a statistics dict.

    Args:
        stats: what :func:`compute_stats` returns (or a ``stats.json``).
        plots: the plots' directory relative to the card (e.g. ``create-sample``); None: no images.
    """
    splits = {s: stats["splits"][s] for s in ordered_splits(stats["splits"])}
    ds = stats["dataset"]
    gen = ds.get("generator") or {}
    lines = [CARD_BEGIN, ""]
    src = f"`{ds['name']}`"
    if gen.get("version") is not None:
        src += f" (generator {gen.get('name', '')} {gen['version']}, seed {gen.get('seed')})"
    lines += [
        f"Statistics of {src}, fingerprint `{ds['fingerprint']}`; words by `{stats['tokenizer']}` after "
        f"`{stats['normalizer']}`, parts of speech by `{stats['pos_tagger']}`, statistics version "
        f"{stats['stats_version']}"
        + (f", first {stats['max_rows']:,} rows of each split" if stats.get("max_rows") else "")
        + ". Definitions: `create_bench/data/stats.py`.",
        "",
        "**Splits**",
        "",
    ]
    rows = []
    for s, st in splits.items():
        tpv = st["tags"]["per_video"]
        rows.append(
            [
                s,
                f"{st['videos']:,}",
                f"{st['titles']:,}",
                f"{st['captions']:,}",
                f"{st['raw_titles']:,}",
                f"{st['tags']['unique']:,}",
                _dist_cell(tpv, 2),
                f"{st['categories_present']}",
            ]
        )
    lines += _table(
        [
            "split",
            "videos",
            "titles",
            "captions",
            "raw titles",
            "unique tags",
            "tags / video (mean / median / p95 / max)",
            "categories present",
        ],
        rows,
    )
    ov = stats["overall"]
    lines += [
        "",
        f"All splits: {ov['videos']:,} videos, {ov['unique_tags']:,} unique tags, "
        f"{ov['annotation_words']:,} distinct words in titles and captions.",
        "",
        *_skipped_lines(ds, splits),
        "**Text length** (mean / median / p95 / max) and vocabulary",
        "",
    ]
    rows = []
    for s, st in splits.items():
        for kind, label in _TEXT_LABELS.items():
            t = st["text"][kind]
            if not t.get("texts"):
                continue
            rows.append(
                [
                    s,
                    label,
                    f"{t['texts']:,}",
                    _dist_cell(t["chars"]),
                    _dist_cell(t["words"]),
                    f"{t['vocabulary']['words']:,}",
                    f"{t['vocabulary']['chars']:,}",
                ]
            )
    lines += _table(["split", "text", "texts", "characters", "jieba words", "word vocab", "char vocab"], rows)
    lines += [
        "",
        "**Word overlap** (share of one text kind's word set found in another's, per video: mean over videos / pooled)",
        "",
    ]
    rows = []
    for s, st in splits.items():
        o = st["overlap"]
        if not o["title_words_in_captions"]["videos"]:
            continue
        rows.append(
            [s]
            + [
                f"{_pct(o[k]['macro'])} / {_pct(o[k]['micro'])}"
                for k in ("title_words_in_captions", "caption_words_in_titles", "title_words_in_raw_title")
            ]
        )
    lines += _table(
        ["split", "title words in captions", "caption words in titles", "title words in raw title"], rows
    )
    lines += ["", "**Parts of speech** (share of word tokens; top 5 words with counts)", ""]
    rows = []
    for s, st in splits.items():
        for kind in ("title", "caption"):
            pos = st["text"][kind].get("pos")
            if not pos:
                continue
            cells = []
            for cls in POS_CLASSES:
                words = "、".join(f"{w} {n}" for w, n in pos[cls]["top"][:5])
                cells.append(f"{_pct(pos[cls]['share'])}: {words}")
            rows.append([s, kind, *cells])
    lines += _table(["split", "text", "nouns", "verbs", "adjectives"], rows)
    lines += ["", "**Videos**", ""]
    rows = []
    for s, st in splits.items():
        v = st["video"]
        orient = ", ".join(f"{k} {n}" for k, n in v["orientation"].items())
        fps = ", ".join(f"{float(f):g} ({n})" for f, n in v["fps_values"][:4])
        rows.append(
            [
                s,
                _dist_cell(v["duration"], 2),
                f"{_fmt(v['num_frames'].get('mean'))}",
                fps,
                f"{v['distinct_resolutions']}",
                orient,
            ]
        )
    lines += _table(
        [
            "split",
            "duration s (mean / median / p95 / max)",
            "frames (mean)",
            "fps (videos)",
            "resolutions",
            "orientation",
        ],
        rows,
    )
    if plots is not None:
        lines += ["", "**Plots**", ""]
        names = ["categories", "text_lengths", "tags_per_video", "video"]
        names += [f"pos_{s}" for s, st in splits.items() if st["text"]["title"].get("pos")]
        lines += [f"![{n}]({plots}/{n}.png)" for n in names]
    lines += ["", CARD_END]
    return "\n".join(lines)


def update_card(card: str | os.PathLike[str], stats: dict[str, Any], plots: str | None) -> bool:
    """Replace the statistics block of ``card`` (between :data:`CARD_BEGIN` and :data:`CARD_END`).

    Returns whether the file changed. Raises DataError when the markers are missing or out of order.
    """
    path = Path(card)
    text = path.read_text("utf-8")
    i, j = text.find(CARD_BEGIN), text.find(CARD_END)
    if i < 0 or j < i:
        raise DataError(f"card has no statistics block ({CARD_BEGIN!r} ... {CARD_END!r})", path=str(path))
    new = text[:i] + card_markdown(stats, plots) + text[j + len(CARD_END) :]
    if new != text:
        atomic_write_text(path, new)
    return new != text


# --------------------------------------------------------------------------------------------
# CJK font
# --------------------------------------------------------------------------------------------

#: Characters every CJK font we accept must cover (common words of titles and category names).
CJK_PROBE = "中文视频标题描述生活美食宠物的一是了"
PREFERRED_CJK_FONTS = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Sarasa Gothic SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
    "Heiti SC",
)
INSTALL_HINT = (
    "install one (Debian/Ubuntu: apt-get install -y fonts-wqy-microhei fontconfig; `make setup` does "
    "it when run as root) and, if matplotlib still does not see it, delete its font cache "
    "(~/.cache/matplotlib)"
)


@dataclass(frozen=True)
class CJKFont:
    name: str
    path: str


def font_covers(path: str, text: str) -> bool:
    """True when the font file at ``path`` has a glyph for every non-space character of ``text``."""
    from matplotlib.ft2font import FT2Font

    try:
        cmap = FT2Font(path).get_charmap()
    except (OSError, RuntimeError, ValueError):
        return False
    return all(ord(c) in cmap for c in text if not c.isspace())


def _fontconfig_cjk_files() -> list[str]:
    """Font files fontconfig says cover Chinese (``fc-list :lang=zh file``), if fontconfig is here."""
    exe = shutil.which("fc-list")
    if not exe:
        return []
    try:
        res = subprocess.run(
            [exe, ":lang=zh", "file"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({line.split(":")[0].strip() for line in res.stdout.splitlines() if line.strip()})


@functools.cache
def find_cjk_font(probe: str = CJK_PROBE) -> CJKFont:
    """A font matplotlib can use that covers Chinese (checked glyph by glyph on ``probe``).

    Looks at matplotlib's font list (preferred names first, then every other font), then at the
    fonts fontconfig lists for ``:lang=zh`` (added to matplotlib's list when found).

    Raises:
        BackendUnavailable: no such font is installed (plots would draw boxes).
    """
    from matplotlib import font_manager as fm

    entries = sorted(fm.fontManager.ttflist, key=lambda e: (e.name, e.fname))
    rank = {n: i for i, n in enumerate(PREFERRED_CJK_FONTS)}
    entries.sort(key=lambda e: rank.get(e.name, len(rank)))
    for e in entries:
        if font_covers(e.fname, probe):
            return CJKFont(e.name, e.fname)
    for path in _fontconfig_cjk_files():
        if font_covers(path, probe):
            fm.fontManager.addfont(path)
            name = fm.FontProperties(fname=path).get_name()
            return CJKFont(name, path)
    raise BackendUnavailable(f"no CJK font found for Chinese plot labels (checked {probe!r}); {INSTALL_HINT}")


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

PLOT_DPI = 100
_SPLIT_COLORS = {"train": "#4C72B0", "validation": "#DD8452", "test": "#55A868"}


def _color(split: str, i: int) -> str:
    fallback = ("#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
    return _SPLIT_COLORS.get(split, fallback[i % len(fallback)])


def plot_stats(stats: dict[str, Any], out_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw the PNG plots of a statistics dict into ``out_dir``; return their paths.

    The plots are drawn only from ``stats`` (so they can be redrawn from a ``stats.json``):
    ``categories.png``, ``text_lengths.png``, ``tags_per_video.png``, ``video.png`` and
    ``pos_<split>.png`` for each split with annotated titles or captions.

    Raises:
        BackendUnavailable: no CJK font, or a label has a glyph the font lacks (it would be a box).
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    font = find_cjk_font()
    out = Path(out_dir)
    rc: Any = {"font.family": [font.name, "DejaVu Sans"], "axes.unicode_minus": False}
    splits = {s: stats["splits"][s] for s in ordered_splits(stats["splits"])}
    jobs = [
        ("categories.png", _plot_categories),
        ("text_lengths.png", _plot_lengths),
        ("tags_per_video.png", _plot_tags),
        ("video.png", _plot_video),
    ]
    for split, s in splits.items():
        if any(s["text"][k].get("pos") for k in ("title", "caption")):
            jobs.append((f"pos_{split}.png", functools.partial(_plot_pos, split=split)))
    written = []
    with matplotlib.rc_context(rc):
        for name, fn in jobs:
            if _draw_and_save(plt, functools.partial(fn, plt, splits), out / name, font):
                written.append(out / name)
    return written


def _draw_and_save(plt: Any, draw: Any, path: Path, font: CJKFont) -> bool:
    """Draw a figure and save it atomically; refuse (nothing written) if a glyph is missing.

    Matplotlib warns "Glyph ... missing from font(s)" when it lays text out (in ``tight_layout``
    or ``savefig``) and then draws a box; that warning is turned into an error here.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = draw()
        if fig is None:
            return False
        try:
            with atomic_path(path, suffix=".png") as tmp:
                # No "Software" metadata: the same statistics give byte-identical PNGs.
                fig.savefig(tmp, format="png", dpi=PLOT_DPI, metadata={"Software": None})
                missing = sorted({str(w.message) for w in caught if "missing from font" in str(w.message)})
                if missing:
                    raise BackendUnavailable(
                        f"{path.name}: font {font.name!r} ({font.path}) lacks glyphs, which would be "
                        f"drawn as boxes: {'; '.join(missing[:5])}"
                    )
        finally:
            plt.close(fig)
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return True


def _eval_splits(splits: dict[str, Any]) -> list[str]:
    return [s for s in splits if splits[s]["titles"] or splits[s]["captions"]] or list(splits)


def _plot_categories(plt: Any, splits: dict[str, Any]) -> Any:
    names = _eval_splits(splits)
    rows = [c for c in splits[names[0]]["categories"]]
    labels = [c["name"] for c in rows]
    fig, ax = plt.subplots(figsize=(8, 1.5 + len(labels) * (0.1 + 0.08 * len(names))))
    height = 0.8 / len(names)
    for i, s in enumerate(names):
        n = max(1, splits[s]["videos"])
        by_id = {c["id"]: c["videos"] for c in splits[s]["categories"]}
        vals = [100.0 * by_id.get(c["id"], 0) / n for c in rows]
        ys = [j + (i - (len(names) - 1) / 2) * height for j in range(len(rows))]
        ax.barh(ys, vals, height=height, color=_color(s, i), label=f"{s} ({splits[s]['videos']} 个视频)")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("视频占比 (%)")
    ax.set_title("类别分布 (category distribution)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return fig


def _step(ax: Any, hist: dict[str, list[Any]], n: int, **kw: Any) -> None:
    """A histogram as a density step line (comparable across splits of different sizes and bins)."""
    edges, counts = hist["edges"], hist["counts"]
    if not counts:
        return
    w = edges[1] - edges[0]
    dens = [c / (n * w) for c in counts]
    if w == 1 and all(isinstance(e, int) for e in edges):
        edges = [e - 0.5 for e in edges]  # one bin per integer: centre the bin on its value
    ax.stairs(dens, edges, **kw)


def _plot_lengths(plt: Any, splits: dict[str, Any]) -> Any:
    kinds = [("title", "标题 title"), ("caption", "描述 caption"), ("raw_title", "原始标题 raw title")]
    kinds = [k for k in kinds if any(s["text"][k[0]].get("chars") for s in splits.values())]
    if not kinds:
        return None
    fig, axes = plt.subplots(len(kinds), 2, figsize=(10, 2.8 * len(kinds)), squeeze=False)
    for r, (kind, label) in enumerate(kinds):
        for c, (unit, ulabel) in enumerate([("chars", "字数 (characters)"), ("words", "词数 (jieba words)")]):
            ax = axes[r][c]
            for i, (s, st) in enumerate(splits.items()):
                d = st["text"][kind].get(unit)
                if d and d["count"]:
                    _step(
                        ax,
                        d["histogram"],
                        d["count"],
                        color=_color(s, i),
                        label=f"{s} (均值 {d['mean']:.1f})",
                    )
            ax.set_title(f"{label}: {ulabel}", fontsize=10)
            ax.set_ylabel("密度 density")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _plot_tags(plt: Any, splits: dict[str, Any]) -> Any:
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for i, (s, st) in enumerate(splits.items()):
        d = st["tags"]["per_video"]
        if d.get("count"):
            _step(ax, d["histogram"], d["count"], color=_color(s, i), label=f"{s} (均值 {d['mean']:.2f})")
    ax.set_xlabel("每个视频的标签数 (tags per video)")
    ax.set_ylabel("密度 density")
    ax.set_title("标签数分布 (tags per video)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plot_video(plt: Any, splits: dict[str, Any]) -> Any:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for i, (s, st) in enumerate(splits.items()):
        for ax, key in ((axes[0], "duration"), (axes[1], "fps")):
            d = st["video"][key]
            if d.get("count"):
                _step(ax, d["histogram"], d["count"], color=_color(s, i), label=s)
    axes[0].set_title("时长 duration (s)")
    axes[1].set_title("帧率 fps")
    for ax in axes[:2]:
        ax.set_ylabel("密度 density")
        ax.legend(fontsize=7)
    totals: Counter[str] = Counter()
    for st in splits.values():
        totals.update(dict((r, n) for r, n in st["video"]["resolutions"]))
    res = [r for r, _ in top(totals, 10)]
    names = list(splits)
    width = 0.8 / max(1, len(names))
    for i, s in enumerate(names):
        by = dict((r, n) for r, n in splits[s]["video"]["resolutions"])
        n = max(1, splits[s]["videos"])
        axes[2].barh(
            [j + (i - (len(names) - 1) / 2) * width for j in range(len(res))],
            [100.0 * by.get(r, 0) / n for r in res],
            height=width,
            color=_color(s, i),
            label=s,
        )
    axes[2].set_yticks(range(len(res)), res)
    axes[2].invert_yaxis()
    axes[2].set_xlabel("视频占比 (%)")
    axes[2].set_title("分辨率 resolution (W x H)")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


_POS_LABELS = {"noun": "名词 nouns", "verb": "动词 verbs", "adjective": "形容词 adjectives"}


def _plot_pos(plt: Any, splits: dict[str, Any], *, split: str, k: int = 10) -> Any:
    kinds = [
        (kind, lab)
        for kind, lab in (("title", "标题"), ("caption", "描述"))
        if splits[split]["text"][kind].get("pos")
    ]
    fig, axes = plt.subplots(len(kinds), 3, figsize=(12, 3.4 * len(kinds)), squeeze=False)
    for r, (kind, lab) in enumerate(kinds):
        pos = splits[split]["text"][kind]["pos"]
        for c, cls in enumerate(POS_CLASSES):
            ax = axes[r][c]
            items = pos[cls]["top"][:k]
            ax.barh(range(len(items)), [n for _, n in items], height=0.7, color=_color(split, 0))
            ax.set_yticks(range(len(items)), [w for w, _ in items])
            ax.set_ylim(k - 0.5, -0.5)  # k fixed slots, the most frequent on top
            if not items:
                ax.text(0.5, 0.5, "无 (none)", ha="center", va="center", transform=ax.transAxes)
                ax.set_xticks([])
            ax.set_title(f"{lab} {kind}: {_POS_LABELS[cls]} (前 {k})", fontsize=10)
            ax.set_xlabel("次数 count")
    fig.suptitle(f"{split}: 词性统计 (jieba.posseg)")
    fig.tight_layout()
    return fig

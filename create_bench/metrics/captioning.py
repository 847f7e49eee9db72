"""Chinese captioning scores through pycocoevalcap's scorers (layer 2).

Pipeline: predictions and references keyed by ``vid`` (the id sets must be equal) ->
:mod:`create_bench.text` normalisation + tokenisation (``jieba`` default, or ``char``) ->
space-joined tokens -> pycocoevalcap's BLEU (1..4, "closest" reference length), ROUGE-L,
CIDEr (pycocoevalcap's CIDEr, i.e. CIDEr-D style: clipped tf-idf, Gaussian length penalty with
sigma 6, x10) and METEOR 1.5 when asked for (needs Java). pycocoevalcap's PTB tokenizer is never
used (it keeps a Chinese sentence as one token).

Per-video statistics are kept (:class:`CaptionStats`): BLEU's sufficient statistics (lengths and
clipped n-gram counts) and the per-video ROUGE-L, CIDEr and METEOR scores. Corpus scores, scores
of any subset of videos (per category) and bootstrap resamples all aggregate those statistics, so
nothing is re-scored. CIDEr's document frequencies come from the references given, which are
always the whole split's: a subset's CIDEr is the mean of its videos' split-level CIDEr (not a
CIDEr re-fitted on the subset).

All scores are x100, as the CREATE paper prints them.

>>> preds = {"v1": "一只猫在沙发上睡觉", "v2": "男子在厨房做饭"}
>>> refs = {"v1": ["一只猫在沙发上睡觉", "猫咪睡在沙发上"], "v2": ["一个男人在厨房里做饭", "男子做菜"]}
>>> scores = caption_scores(preds, refs, tokenizer="char")
>>> sorted(scores)
['BLEU-1', 'BLEU-2', 'BLEU-3', 'BLEU-4', 'CIDEr', 'ROUGE-L']
>>> round(scores["BLEU-1"], 2), round(scores["ROUGE-L"], 2)
(100.0, 89.52)
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from create_bench.errors import BackendUnavailable, ConfigError, MetricInputError
from create_bench.metrics.caption_fast import fast_statistics
from create_bench.metrics.tokens import TokenTable, tokenize_table
from create_bench.text import NORMALIZER_NAME, Tokenizer, get_tokenizer
from create_bench.types import describe_id_differences, id_differences, list_ids  # noqa: F401 (list_ids re-exported)

BLEU_N = 4
#: Captioning backends: ``fast`` (numpy; default) and ``coco`` (pycocoevalcap), equal statistics.
BACKENDS = ("fast", "coco")
METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr")
#: pycocoevalcap's BLEU smoothing constants (bleu_scorer.py), reproduced for aggregation.
_TINY, _SMALL = 1e-15, 1e-9
#: Columns of :attr:`CaptionStats.bleu`.
BLEU_COLUMNS = (
    "testlen",
    "reflen",
    *(f"guess{k}" for k in range(1, 5)),
    *(f"correct{k}" for k in range(1, 5)),
)


def check_id_sets(expected: Sequence[str], got: Sequence[str], what: str) -> None:
    """Raise :class:`MetricInputError` listing missing and extra ids unless the two sets are equal."""
    missing, extra = id_differences(expected, got)
    if missing or extra:
        detail = describe_id_differences(missing, extra)
        raise MetricInputError(f"{what}: ids do not match the references; {detail}")


@dataclass(frozen=True)
class CaptionStats:
    """Per-video captioning statistics; rows in the order of :attr:`vids`.

    Attributes:
        vids: video ids.
        bleu: ``[N, 10]`` float64, columns :data:`BLEU_COLUMNS` (BLEU's sufficient statistics,
            with pycocoevalcap's "closest" reference length).
        rouge: ``[N]`` ROUGE-L (0..1) per video.
        cider: ``[N]`` CIDEr per video (document frequencies from all N videos' references).
        meteor: ``[N]`` METEOR segment scores, or None when not computed.
        meteor_corpus: METEOR's own corpus score for all N videos (None when not computed).
        tokenizer: the tokenizer's signature.
        refs: reference count per video.
    """

    vids: list[str]
    bleu: np.ndarray
    rouge: np.ndarray
    cider: np.ndarray
    meteor: np.ndarray | None = None
    meteor_corpus: float | None = None
    tokenizer: str = ""
    refs: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.vids)

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS + (("METEOR",) if self.meteor is not None else ())

    def subset(self, index: Any) -> CaptionStats:
        """Statistics of some videos (boolean mask or integer index); METEOR's corpus score is dropped."""
        idx = np.arange(len(self))[index]
        return CaptionStats(
            [self.vids[i] for i in idx],
            self.bleu[idx],
            self.rouge[idx],
            self.cider[idx],
            None if self.meteor is None else self.meteor[idx],
            None,
            self.tokenizer,
            self.refs[idx] if len(self.refs) else self.refs,
        )

    def weighted_scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Scores (x100) for each row of per-video weights ``[B, N]`` (bootstrap resamples)."""
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if w.shape[1] != len(self):
            raise MetricInputError(f"weights have {w.shape[1]} columns for {len(self)} videos")
        tot = w @ self.bleu  # [B, 10]
        testlen, reflen = tot[:, 0], tot[:, 1]
        guess, correct = tot[:, 2 : 2 + BLEU_N], tot[:, 2 + BLEU_N :]
        out: dict[str, np.ndarray] = {}
        # The same arithmetic, in the same order, as pycocoevalcap's BleuScorer.compute_score.
        prod = np.ones(w.shape[0])
        ratio = (testlen + _TINY) / (reflen + _SMALL)
        brevity = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, 1e-300)), 1.0)
        for k in range(BLEU_N):
            prod = prod * (correct[:, k] + _TINY) / (guess[:, k] + _SMALL)
            out[f"BLEU-{k + 1}"] = 100.0 * prod ** (1.0 / (k + 1)) * brevity
        n = w.sum(axis=1)
        out["ROUGE-L"] = 100.0 * (w @ self.rouge) / n
        out["CIDEr"] = 100.0 * (w @ self.cider) / n
        if self.meteor is not None:
            out["METEOR"] = 100.0 * (w @ self.meteor) / n
        return out

    def scores(self) -> dict[str, float]:
        """Corpus scores (x100) of these videos."""
        if len(self) == 0:
            raise MetricInputError("no videos to score")
        out = {k: float(v[0]) for k, v in self.weighted_scores(np.ones((1, len(self)))).items()}
        if self.meteor_corpus is not None:
            out["METEOR"] = 100.0 * self.meteor_corpus
        return out


def _validate(predictions: Mapping[str, Any], references: Mapping[str, Any]) -> None:
    if not isinstance(predictions, Mapping) or not isinstance(references, Mapping):
        raise MetricInputError("predictions and references must be dicts keyed by vid")
    check_id_sets(list(references), list(predictions), "predictions")
    for vid, text in predictions.items():
        if not isinstance(text, str):
            raise MetricInputError(f"prediction for vid {vid!r} is {type(text).__name__}, not a string")
        if not text.strip():
            raise MetricInputError(f"prediction for vid {vid!r} is empty")
    for vid, refs in references.items():
        if isinstance(refs, str) or not isinstance(refs, Sequence) or len(refs) == 0:
            raise MetricInputError(f"references for vid {vid!r} must be a non-empty list of strings")
        for k, ref in enumerate(refs):
            if not isinstance(ref, str):
                raise MetricInputError(f"reference {k} of vid {vid!r} is {type(ref).__name__}, not a string")


def tokenize_all(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], tokenizer: Tokenizer
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """Space-joined tokens for every prediction and reference (each distinct text tokenised once
    per process: see :meth:`~create_bench.text.Tokenizer.joined`)."""
    tok = tokenizer.joined
    res = {vid: tok(predictions[vid]) for vid in references}
    gts: dict[str, list[str]] = {}
    for vid, refs in references.items():
        toks = [tok(r) for r in refs]
        for k, t in enumerate(toks):
            if not t:
                raise MetricInputError(f"reference {k} of vid {vid!r} has no tokens after normalisation")
        gts[vid] = toks
    return res, gts


def _bleu_stats(res: dict[str, str], gts: dict[str, list[str]], vids: list[str]) -> np.ndarray:
    from pycocoevalcap.bleu.bleu_scorer import BleuScorer

    scorer = BleuScorer(n=BLEU_N)
    rows = []
    for vid in vids:
        scorer += (res[vid], gts[vid])
        comps = scorer.ctest[-1]
        # pycocoevalcap's Bleu wrapper scores with option="closest"
        reflen = scorer._single_reflen(comps["reflen"], "closest", comps["testlen"])
        rows.append([comps["testlen"], reflen, *comps["guess"], *comps["correct"]])
    return np.array(rows, dtype=np.float64).reshape(len(vids), 2 + 2 * BLEU_N)


def _rouge(res: dict[str, str], gts: dict[str, list[str]], vids: list[str]) -> np.ndarray:
    from pycocoevalcap.rouge.rouge import Rouge

    scorer = Rouge()
    return np.array([scorer.calc_score([res[v]], gts[v]) for v in vids], dtype=np.float64)


def _cider(res: dict[str, str], gts: dict[str, list[str]], vids: list[str]) -> np.ndarray:
    from pycocoevalcap.cider.cider_scorer import CiderScorer

    scorer = CiderScorer(n=4, sigma=6.0)
    for vid in vids:
        scorer += (res[vid], gts[vid])
    _, per_video = scorer.compute_score()
    return np.asarray(per_video, dtype=np.float64)


def _meteor(res: dict[str, str], gts: dict[str, list[str]], vids: list[str]) -> tuple[float, np.ndarray]:
    if shutil.which("java") is None:
        raise BackendUnavailable("METEOR needs Java (a 'java' executable on PATH); none was found")
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, per_video = scorer.compute_score({v: gts[v] for v in vids}, {v: [res[v]] for v in vids})
    finally:
        # pycocoevalcap only closes the Java process in __del__; do it deterministically
        proc = getattr(scorer, "meteor_p", None)
        if proc is not None and proc.poll() is None:
            proc.stdin.close()
            proc.kill()
            proc.wait()
    return float(score), np.asarray(per_video, dtype=np.float64)


def _reference_table(
    references: Mapping[str, Sequence[str]], vids: list[str], tok: Tokenizer, given: TokenTable | None
) -> TokenTable:
    counts = [len(references[v]) for v in vids]
    table = given if given is not None else tokenize_table((r for v in vids for r in references[v]), tok)
    if len(table) != sum(counts):
        raise MetricInputError(f"reference_tokens holds {len(table)} texts for {sum(counts)} references")
    empty = np.flatnonzero(table.lengths == 0)
    if len(empty):
        video = int(np.searchsorted(np.cumsum(counts), empty[0], side="right"))
        k = int(empty[0] - (sum(counts[:video])))
        raise MetricInputError(f"reference {k} of vid {vids[video]!r} has no tokens after normalisation")
    return table


def caption_statistics(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    tokenizer: str | Tokenizer = "jieba",
    meteor: bool = False,
    backend: str = "fast",
    reference_tokens: TokenTable | None = None,
) -> CaptionStats:
    """Per-video statistics of ``predictions`` against ``references`` (see :class:`CaptionStats`).

    Args:
        backend: ``fast`` (default; numpy, :mod:`create_bench.metrics.caption_fast`) or ``coco``
            (pycocoevalcap's scorers). Both give the same statistics (tested to 1e-9 relative),
            so the backend is not part of the signature. METEOR always runs pycocoevalcap's.
        reference_tokens: the references already tokenised with ``tokenizer`` (one text per
            reference, video after video in the order of ``references``), e.g. from the
            reference-token cache (:mod:`create_bench.metrics.token_cache`).

    Raises:
        MetricInputError: id sets differ (missing/extra listed), a prediction is empty or not a
            string, a reference list is empty or a reference has no tokens.
        ConfigError: an unknown backend.
        BackendUnavailable: ``meteor=True`` without Java.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown metric backend {backend!r}; known: {', '.join(BACKENDS)}")
    _validate(predictions, references)
    tok = get_tokenizer(tokenizer) if isinstance(tokenizer, str) else tokenizer
    vids = list(references)
    counts = np.array([len(references[v]) for v in vids], dtype=np.int64)
    refs_table = _reference_table(references, vids, tok, reference_tokens)
    hyps = tokenize_table([predictions[v] for v in vids], tok, refs_table.vocab)  # one vocabulary
    refs_table = TokenTable(hyps.vocab, refs_table.ids, refs_table.offsets)
    res: dict[str, str] = {}
    gts: dict[str, list[str]] = {}
    if backend == "coco" or meteor:
        starts = np.concatenate([[0], np.cumsum(counts)])
        res = {v: hyps.joined(i) for i, v in enumerate(vids)}
        gts = {v: [refs_table.joined(j) for j in range(starts[i], starts[i + 1])] for i, v in enumerate(vids)}
    if backend == "fast":
        bleu, rouge, cider = fast_statistics(hyps, refs_table, counts)
    else:
        bleu, rouge, cider = _bleu_stats(res, gts, vids), _rouge(res, gts, vids), _cider(res, gts, vids)
    met_corpus, met = _meteor(res, gts, vids) if meteor else (None, None)
    return CaptionStats(
        vids=vids,
        bleu=bleu,
        rouge=rouge,
        cider=cider,
        meteor=met,
        meteor_corpus=met_corpus,
        tokenizer=tok.signature(),
        refs=counts,
    )


def caption_scores(
    predictions: Mapping[str, str],
    references: Mapping[str, Sequence[str]],
    *,
    tokenizer: str | Tokenizer = "jieba",
    meteor: bool = False,
    backend: str = "fast",
) -> dict[str, float]:
    """BLEU-1..4, ROUGE-L and CIDEr (x100; METEOR too when asked) of ``predictions`` vs ``references``.

    Args:
        predictions: one generated text per vid.
        references: the reference texts per vid (all of the split's videos: CIDEr's document
            frequencies come from them).
        tokenizer: ``jieba`` (default), ``char``, or a :class:`~create_bench.text.Tokenizer`.
        meteor: also compute METEOR 1.5 (needs Java).
        backend: ``fast`` (default) or ``coco`` (pycocoevalcap's scorers; the same scores).
    """
    stats = caption_statistics(predictions, references, tokenizer=tokenizer, meteor=meteor, backend=backend)
    return stats.scores()


def signature_fields(stats: CaptionStats) -> dict[str, Any]:
    """The signature fields that describe how these captioning statistics were computed."""
    return {"tok": stats.tokenizer, "norm": NORMALIZER_NAME, "refs": refs_field(stats.refs)}


def refs_field(counts: np.ndarray | Sequence[int]) -> str:
    """``"10"`` when every item has 10 references, ``"1-10"`` when counts vary."""
    arr = np.asarray(counts)
    if arr.size == 0:
        return "0"
    lo, hi = int(arr.min()), int(arr.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


__all__ = [
    "BACKENDS",
    "BLEU_COLUMNS",
    "METRICS",
    "CaptionStats",
    "caption_scores",
    "caption_statistics",
    "check_id_sets",
    "refs_field",
    "signature_fields",
    "tokenize_all",
]

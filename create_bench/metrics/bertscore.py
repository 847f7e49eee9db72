"""BERTScore and ACTEr-r from contextual token embeddings (layer 2: numpy only, no encoder here).

The encoder (a BERT-family model at a chosen layer) lives in :mod:`create_bench.features.text_encoder`;
this module only does the maths on the L2-normalised token vectors it returns, so it can be tested
on hand-made vectors and against the ``bert_score`` package.

**BERTScore** (Zhang et al. 2020, as the ``bert_score`` package computes it). A sentence is encoded
with its special tokens (``[CLS] ... [SEP]``); every token takes part in the greedy matching, the
special tokens with weight 0. With candidate tokens x_i (weights u_i) and reference tokens r_j
(weights v_j), similarities being cosines::

    P = sum_i u_i max_j cos(x_i, r_j) / sum_i u_i      R = sum_j v_j max_i cos(x_i, r_j) / sum_j v_j
    F = 2 P R / (P + R)

Weights are 1 (``idf`` off) or ``log((M + 1) / (df + 1))`` with ``df`` the number of the split's M
reference sentences holding the token (a token in none gets ``log(M + 1)``). Several references:
P, R and F are each the maximum over the references, separately. Rescaling: ``(x - b) / (1 - b)``
with a per-layer baseline b for P, R and F. Differences from ``bert_score`` 0.3.13: the max runs over
real tokens only (``bert_score`` multiplies padded positions' similarity by 0, so a batch's padding
can win the max when all cosines are negative), and there is no 510-token truncation (titles are
short; the encoder truncates at its own maximum length and says so in its signature).

**ACTEr-r** (reconstruction of CREATE's ACTEr; ``acter-r.v1``): the same matching, with the
*reference* tokens weighted by attractiveness: ``v_j = eps + omega_j`` (rule ``eps+omega``) or
``v_j = idf_j * (eps + omega_j)`` (rule ``idf*(eps+omega)``), omega_j being the mean, over the
characters of token j, of the share of annotators who marked the character attractive. P is
BERTScore's precision, R the omega-weighted recall, F their harmonic mean, each maximised over
the references separately; ACTEr-r is F, rescaled with BERTScore's F baseline. With omega constant
over a reference (or absent: ``weights:uniform``) ACTEr-r equals BERTScore-F.

Per-video statistics (:class:`EmbeddingStats`) give the corpus score (mean over videos, x100),
bootstrap resamples and per-category scores, as for the n-gram metrics.

>>> import numpy as np
>>> x = np.eye(3, dtype=np.float32)                        # candidate: [CLS] a [SEP]
>>> r = np.eye(3, dtype=np.float32)[[0, 1, 1, 2]]          # reference: [CLS] a a [SEP]
>>> p, rr = match(x, r, np.array([0., 1, 0]), [np.array([0., 1, 1, 0])], np.array([0, 4]))
>>> float(p[0]), float(rr[0])
(1.0, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from create_bench.errors import MetricInputError

BERTSCORE_VERSION = "bertscore.v1"
ACTER_VERSION = "acter-r.v1"
#: ACTEr-r's weight rules (see the module doc) and the default.
ACTER_RULES = ("eps+omega", "idf*(eps+omega)")
DEFAULT_RULE = "eps+omega"
#: Default eps: one annotator's share out of CREATE's K = 10, so an unmarked character still counts
#: a tenth as much as a character every annotator marked (omega = 1 gets 1.1).
DEFAULT_EPS = 0.1
#: Rescale baselines (P, R, F) of bert_score 0.3.13 for ``bert-base-chinese`` (lang zh), layer 8.
BUILTIN_BASELINES: dict[tuple[str, int], tuple[float, float, float]] = {
    ("bert-base-chinese", 8): (0.54804957, 0.5480091, 0.54755783),
}
METRICS = ("BERTScore-P", "BERTScore-R", "BERTScore-F")
ACTER_METRIC = "ACTEr-r"


# ------------------------------------------------------------------------------------------------
# weights


def idf_table(reference_token_ids: Sequence[Sequence[int]]) -> tuple[dict[int, float], float]:
    """``(token -> idf, idf of an unseen token)`` over M reference sentences (each a set of ids).

    >>> table, unseen = idf_table([[1, 2], [2, 3]])
    >>> round(table[2], 4), round(table[1], 4), round(unseen, 4)
    (0.0, 0.4055, 1.0986)
    """
    m = len(reference_token_ids)
    df: dict[int, int] = {}
    for ids in reference_token_ids:
        for t in set(int(i) for i in ids):
            df[t] = df.get(t, 0) + 1
    return {t: math.log((m + 1) / (c + 1)) for t, c in df.items()}, math.log(m + 1)


def token_weights(
    token_ids: np.ndarray, special: np.ndarray, idf: tuple[dict[int, float], float] | None
) -> np.ndarray:
    """Per-token weights (float64): 0 on special tokens, else 1 or the token's idf."""
    if idf is None:
        w = np.ones(len(token_ids), dtype=np.float64)
    else:
        table, unseen = idf
        w = np.array([table.get(int(t), unseen) for t in token_ids], dtype=np.float64)
    w[np.asarray(special, dtype=bool)] = 0.0
    return w


def token_omega(spans: np.ndarray, omega: Sequence[float], special: np.ndarray) -> np.ndarray:
    """Per-token omega: the mean of ``omega`` over each token's characters ``[start, end)``
    (0 for special tokens and tokens with an empty span).

    >>> token_omega(np.array([[0, 0], [0, 1], [1, 3]]), [0.2, 0.4, 0.8], np.array([1, 0, 0]))
    array([0. , 0.2, 0.6])
    """
    om = np.asarray(omega, dtype=np.float64)
    out = np.zeros(len(spans), dtype=np.float64)
    for k, (a, b) in enumerate(np.asarray(spans, dtype=np.int64)):
        if not special[k] and b > a:
            if b > len(om):
                raise MetricInputError(f"token span [{a}, {b}) beyond the {len(om)} omega values")
            out[k] = om[a:b].mean()
    return out


def acter_weights(
    base: np.ndarray, omega_tok: np.ndarray | None, special: np.ndarray, eps: float, rule: str
) -> np.ndarray:
    """ACTEr-r's reference-token weights. ``base`` is BERTScore's weight of each token (1 or idf, 0
    on special tokens); without omega the weights are ``base`` (uniform: ACTEr-r = BERTScore)."""
    if omega_tok is None:
        return base
    w = eps + omega_tok
    if rule == "idf*(eps+omega)":
        w = w * base
    elif rule != "eps+omega":
        raise MetricInputError(f"ACTEr-r rule must be one of {', '.join(ACTER_RULES)}, got {rule!r}")
    return np.where(np.asarray(special, dtype=bool), 0.0, w)


# ------------------------------------------------------------------------------------------------
# matching


def match(
    cand: np.ndarray, refs: np.ndarray, cand_w: np.ndarray, ref_ws: Sequence[np.ndarray], offsets: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Greedy matching of one candidate against several references at once.

    Args:
        cand: ``[m, D]`` L2-normalised candidate token vectors (special tokens included).
        refs: ``[n, D]`` the references' token vectors, stacked.
        cand_w: ``[m]`` candidate token weights (precision).
        ref_ws: recall weight vectors ``[n]`` (one per weighting: e.g. BERTScore's and ACTEr-r's).
        offsets: start row of each reference in ``refs`` (``[k]``, ascending, first 0).

    Returns:
        ``(P [k], [R [k] per weighting])`` per reference (float64).
    """
    sim = (np.asarray(cand, np.float32) @ np.asarray(refs, np.float32).T).astype(np.float64)  # [m, n]
    per_ref = np.maximum.reduceat(sim, offsets, axis=1)  # [m, k]: best reference token per reference
    cw = np.asarray(cand_w, dtype=np.float64)
    total = cw.sum()
    precision = (cw @ per_ref) / total if total > 0 else np.zeros(len(offsets))
    best = sim.max(axis=0)  # [n]
    recalls = []
    for w in ref_ws:
        den = np.add.reduceat(w, offsets)
        num = np.add.reduceat(w * best, offsets)
        recalls.append(np.divide(num, den, out=np.zeros_like(num), where=den > 0))
    return precision, recalls


def harmonic(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """``2 P R / (P + R)``, 0 where ``P + R`` is 0 (``bert_score`` turns that NaN into 0 too)."""
    s = p + r
    return np.divide(2 * p * r, s, out=np.zeros_like(s, dtype=np.float64), where=s != 0)


# ------------------------------------------------------------------------------------------------
# baselines


def read_baseline(path: str | Path, layer: int) -> tuple[float, float, float]:
    """(P, R, F) baselines for ``layer`` from a ``bert_score`` baseline file: CSV with a header
    ``LAYER,P,R,F`` and one row per layer (row ``layer`` is used, as ``bert_score`` does)."""
    p = Path(path)
    try:
        lines = [ln for ln in p.read_text("utf-8").splitlines() if ln.strip()]
    except OSError as exc:
        raise MetricInputError(f"cannot read the rescale baseline file {p}: {exc.strerror}") from exc
    header = [h.strip() for h in lines[0].replace("\t", ",").split(",")] if lines else []
    if header[:4] != ["LAYER", "P", "R", "F"]:
        raise MetricInputError(f"{p}: a baseline file starts with the header LAYER,P,R,F, got {lines[:1]}")
    rows = lines[1:]
    if not 0 <= layer < len(rows):
        raise MetricInputError(f"{p}: no baseline row for layer {layer} ({len(rows)} rows)")
    vals = rows[layer].replace("\t", ",").split(",")
    try:
        b = tuple(float(v) for v in vals[1:4])
    except ValueError as exc:
        raise MetricInputError(f"{p}: row {layer + 2} is not numbers: {rows[layer]!r}") from exc
    return b  # type: ignore[return-value]


def rescale(x: np.ndarray, b: float | None) -> np.ndarray:
    """``(x - b) / (1 - b)`` (identity without a baseline)."""
    return x if b is None else (x - b) / (1 - b)


# ------------------------------------------------------------------------------------------------
# per-video statistics


@dataclass(frozen=True)
class EmbeddingStats:
    """Per-video BERTScore (and ACTEr-r) statistics, unrescaled; rows in the order of ``vids``.

    Attributes:
        vids: video ids.
        p, r, f: BERTScore P, R, F per video (each the max over the video's references).
        acter: ACTEr-r F per video (max over references), or None (captions: no attractiveness).
        baseline: rescale baselines (P, R, F), or None.
        signatures: metric name -> its own signature string.
    """

    vids: list[str]
    p: np.ndarray
    r: np.ndarray
    f: np.ndarray
    acter: np.ndarray | None = None
    baseline: tuple[float, float, float] | None = None
    signatures: dict[str, str] = field(default_factory=dict)
    #: also report BERTScore-P and -R (results carry only F and ACTEr-r)
    all_columns: bool = True

    def __len__(self) -> int:
        return len(self.vids)

    def _columns(self) -> dict[str, np.ndarray]:
        b = self.baseline or (None, None, None)
        cols = {
            "BERTScore-P": rescale(self.p, b[0]),
            "BERTScore-R": rescale(self.r, b[1]),
            "BERTScore-F": rescale(self.f, b[2]),
        }
        if not self.all_columns:  # what results report: F (and ACTEr-r)
            cols = {"BERTScore-F": cols["BERTScore-F"]}
        if self.acter is not None:
            cols[ACTER_METRIC] = rescale(self.acter, b[2])
        return cols

    def scores(self) -> dict[str, float]:
        """Corpus scores x100 (the mean over videos)."""
        return {k: float(v[0]) for k, v in self.weighted_scores(np.ones((1, len(self)))).items()}

    def weighted_scores(self, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Scores x100 for each row of per-video weights ``[B, N]`` (bootstrap resamples)."""
        w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        if w.shape[1] != len(self):
            raise MetricInputError(f"weights have {w.shape[1]} columns for {len(self)} videos")
        tot = w.sum(axis=1)
        return {k: 100.0 * (w @ v) / tot for k, v in self._columns().items()}

    def subset(self, index: np.ndarray) -> EmbeddingStats:
        idx = np.arange(len(self))[index]
        return replace(
            self,
            vids=[self.vids[i] for i in idx],
            p=self.p[idx],
            r=self.r[idx],
            f=self.f[idx],
            acter=None if self.acter is None else self.acter[idx],
        )

    def per_video(self) -> dict[str, np.ndarray]:
        """metric -> per-video values (x100, rescaled): what the metric-agreement study correlates."""
        return {k: 100.0 * v for k, v in self._columns().items()}

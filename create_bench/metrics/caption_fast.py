"""The ``fast`` captioning backend (layer 2): pycocoevalcap's BLEU, ROUGE-L and CIDEr per video,
computed with sorted integer keys in numpy instead of Python dicts per video.

It produces the same per-video statistics as the ``coco`` backend (pycocoevalcap itself), which
stays the oracle in the tests:

- **n-grams as integer keys.** Token ids of every text (predictions and references, one shared
  vocabulary) are turned into n-gram ids order by order: the id of an n-gram at position ``i`` is
  the rank of the pair (its (n-1)-gram id, the token at ``i + n - 1``) among all such pairs, so
  ids are collision-free for any vocabulary size. Counts per (text, n-gram) come from one sort.
- **BLEU** (``bleu_scorer.py`` with ``option="closest"``): clipped counts against the maximum
  count over the video's references; the reference length closest to the prediction's, ties to
  the shorter; ``guess`` = ``max(0, len - n + 1)``. Integers, so exact.
- **ROUGE-L** (``rouge.py``): LCS by the bit-vector algorithm of Allison-Dix/Hyyro, on uint64
  words across all (prediction, reference) pairs at once for predictions of up to 64 tokens and
  on Python ints beyond; max precision and max recall over the references, beta 1.2. The same
  divisions as pycocoevalcap, so exact.
- **CIDEr** (``cider_scorer.py``, i.e. CIDEr-D): document frequency = number of videos whose
  reference union holds the n-gram, ``ref_len = log(videos)``, weights
  ``tf * (ref_len - log(max(1, df)))``, per-order norms, clipping ``min(hyp, ref) * ref``,
  Gaussian length penalty (sigma 6) on pycocoevalcap's "length" (the number of bigrams), mean
  over n = 1..4 and over references, x10. Only sums are ordered differently: equal to ~1e-15.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from create_bench.metrics.tokens import TokenTable

BLEU_N = 4
CIDER_N = 4
CIDER_SIGMA = 6.0
ROUGE_BETA = 1.2
#: longest prediction (in tokens) whose LCS runs on one uint64 word per pair
_WORD = 64


def _ngram_ids(
    ids: np.ndarray, offsets: np.ndarray, n: int
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """For each order k = 1..n: start positions of its n-grams and their ids (global over orders).

    Returns ``(positions per order, ids per order, bounds)``: the ids of order k + 1 are
    ``[bounds[k - 1], bounds[k])`` (``bounds[-1]``: distinct n-grams of all orders).
    """
    total = len(ids)
    text = np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))
    end = offsets[1:][text]  # end of each token's text
    tok = ids.astype(np.int64)
    vocab = int(tok.max()) + 1 if total else 1
    positions, grams, bounds = [], [], []
    pos, gid = np.arange(total, dtype=np.int64), tok
    base = 0
    for k in range(1, n + 1):
        if k == 1:  # token ids are already dense: no sort needed
            size = vocab
        else:  # the pair (its (k-1)-gram id, its last token), packed collision-free into one int64
            keep = pos + k - 1 < end[pos]
            pos = pos[keep]
            gid, size = _dense_ranks(gid[keep] * vocab + tok[pos + k - 1])
        positions.append(pos)
        grams.append(gid + base)
        base += size
        bounds.append(base)
    return positions, grams, np.array(bounds, dtype=np.int64)


def _dense_ranks(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Each key's rank among the distinct keys, and their number: ``np.unique(keys,
    return_inverse=True)``'s inverse, with group numbers from ``np.repeat`` instead of a cumsum."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), 0
    perm = np.argsort(keys)
    ordered = keys[perm]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ranks = np.empty(len(keys), dtype=np.int64)
    ranks[perm] = _run_numbers(starts, len(keys))
    return ranks, len(starts)


def _run_numbers(starts: np.ndarray, n: int) -> np.ndarray:
    """``[n]``: the number of the run each position is in, runs starting at ``starts`` (``starts[0] == 0``)."""
    return np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.r_[starts, n]))


def _group_reduce(keys: np.ndarray, values: np.ndarray, ufunc: np.ufunc) -> tuple[np.ndarray, np.ndarray]:
    """Unique keys and ``ufunc.reduce`` of the values of each key."""
    order = np.argsort(keys, kind="stable")
    k, v = keys[order], values[order]
    if len(k) == 0:
        return k, v
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    return k[starts], ufunc.reduceat(v, starts)


def _lookup(sorted_keys: np.ndarray, keys: np.ndarray, values: np.ndarray, missing: object) -> np.ndarray:
    """``values[i]`` where ``keys`` equals ``sorted_keys[i]``, ``missing`` where it is absent."""
    if len(sorted_keys) == 0:
        return np.full(len(keys), missing, dtype=values.dtype)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return np.where(sorted_keys[pos] == keys, values[pos], np.asarray(missing, dtype=values.dtype))


@dataclass(frozen=True)
class _Grams:
    """Every distinct (video, n-gram, slot) of a corpus, sorted; slot 0 is the prediction and slot
    ``s >= 1`` the video's reference ``s - 1``. ``group`` numbers the (video, n-gram) runs."""

    video: np.ndarray
    gram: np.ndarray
    order: np.ndarray  # 0..3 for 1..4-grams
    slot: np.ndarray
    tf: np.ndarray  # count of the n-gram in that text
    group: np.ndarray
    starts: np.ndarray  # first entry of each group


def _grams(
    hyps: TokenTable, refs: TokenTable, ref_video: np.ndarray, ref_start: np.ndarray
) -> tuple[_Grams, int]:
    n_vid = len(hyps)
    ids = np.concatenate([hyps.ids, refs.ids])
    offsets = np.concatenate([hyps.offsets, refs.offsets[1:] + hyps.offsets[-1]])
    positions, grams, bounds = _ngram_ids(ids, offsets, max(BLEU_N, CIDER_N))
    k_total = int(bounds[-1])
    text_video = np.concatenate([np.arange(n_vid, dtype=np.int64), ref_video])
    text_slot = np.concatenate([np.zeros(n_vid, np.int64), np.arange(len(refs)) - ref_start[ref_video] + 1])
    text_of = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64), np.diff(offsets))
    n_slots = int(text_slot.max(initial=0)) + 1
    # one sort of (video, n-gram, slot) keys for every n-gram occurrence of every order
    keys = np.concatenate([
        (text_video[text_of[p]] * k_total + g) * n_slots + text_slot[text_of[p]] for p, g in zip(positions, grams)
    ])  # fmt: skip
    keys.sort()
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(keys) else np.zeros(0, np.int64)
    tf = np.diff(np.r_[first, len(keys)])
    keys = keys[first]
    slot, vg = keys % n_slots, keys // n_slots
    video, gram = vg // k_total, vg % k_total
    new_group = np.r_[True, vg[1:] != vg[:-1]] if len(vg) else np.zeros(0, bool)
    order = np.searchsorted(bounds, gram, side="right")
    starts = np.flatnonzero(new_group)
    return _Grams(video, gram, order, slot, tf, _run_numbers(starts, len(vg)), starts), k_total


def fast_statistics(
    hyps: TokenTable, refs: TokenTable, ref_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-video BLEU statistics ``[N, 10]``, ROUGE-L ``[N]`` and CIDEr ``[N]``.

    Args:
        hyps: one prediction per video (N texts).
        refs: the references, video after video, sharing ``hyps``' vocabulary.
        ref_counts: ``[N]`` references per video (each >= 1; they sum to ``len(refs)``).
    """
    n_vid = len(hyps)
    counts = np.asarray(ref_counts, dtype=np.int64)
    ref_video = np.repeat(np.arange(n_vid, dtype=np.int64), counts)
    ref_start = np.zeros(n_vid, dtype=np.int64)
    np.cumsum(counts[:-1], out=ref_start[1:])
    g, k_total = _grams(hyps, refs, ref_video, ref_start)
    # per (video, n-gram): the prediction's count (slot 0 sorts first) and the max over references
    h_tf = np.where(g.slot[g.starts] == 0, g.tf[g.starts], 0)
    ref_max = np.maximum.reduceat(np.where(g.slot > 0, g.tf, 0), g.starts) if len(g.starts) else h_tf
    g_video, g_order = g.video[g.starts], g.order[g.starts]
    bleu = _bleu(
        hyps.lengths,
        refs.lengths,
        ref_video,
        ref_start,
        g_video * BLEU_N + g_order,
        np.minimum(h_tf, ref_max),
    )
    df = np.bincount(g.gram[g.starts][ref_max > 0], minlength=k_total)
    cider = _cider(g, h_tf, df, hyps.lengths, refs.lengths, counts, ref_video, ref_start)
    rouge = _rouge(hyps, refs, counts, ref_video, ref_start)
    return bleu, rouge, cider


def _bleu(hlen, rlen, ref_video, ref_start, video_order, correct) -> np.ndarray:
    n_vid = len(hlen)
    correct = np.bincount(video_order, weights=correct, minlength=n_vid * BLEU_N)
    # closest reference length, ties to the shorter: min of (|len - testlen|, len)
    big = int(max(rlen.max(initial=0), hlen.max(initial=0))) + 1
    diff = np.abs(rlen - hlen[ref_video])
    closest = np.minimum.reduceat(diff * big + rlen, ref_start) % big
    out = np.empty((n_vid, 2 + 2 * BLEU_N), dtype=np.float64)
    out[:, 0] = hlen
    out[:, 1] = closest
    for k in range(BLEU_N):
        out[:, 2 + k] = np.maximum(0, hlen - k)
    out[:, 2 + BLEU_N :] = correct.reshape(n_vid, BLEU_N)
    return out


def _cider(g: _Grams, h_tf, df, hlen, rlen, counts, ref_video, ref_start) -> np.ndarray:
    n_vid, n_ref = len(hlen), len(rlen)
    ref_len = np.log(float(n_vid))
    # pycocoevalcap: np.log(max(1.0, df)) on one Python float at a time; the same calls, once per value
    log_df = np.array([np.log(max(1.0, float(d))) for d in range(n_vid + 1)])
    weight = (ref_len - log_df)[df][g.gram[g.starts]][g.group]  # per (video, n-gram), then per entry
    vec = g.tf.astype(np.float64) * weight
    is_hyp = g.slot == 0
    h_norm = np.sqrt(np.bincount(g.video[is_hyp] * CIDER_N + g.order[is_hyp], weights=vec[is_hyp] ** 2,
                                 minlength=n_vid * CIDER_N)).reshape(n_vid, CIDER_N)  # fmt: skip
    r = ~is_hyp
    r_txt = ref_start[g.video[r]] + g.slot[r] - 1
    r_cell = r_txt * CIDER_N + g.order[r]
    r_vec = vec[r]
    r_norm = np.sqrt(np.bincount(r_cell, weights=r_vec**2, minlength=n_ref * CIDER_N)).reshape(n_ref, CIDER_N)
    # clipped dot product: min(hyp, ref) * ref over the n-grams of the reference
    hv = h_tf[g.group[r]] * weight[r]
    dot = np.bincount(r_cell, weights=np.minimum(hv, r_vec) * r_vec, minlength=n_ref * CIDER_N)
    hn = h_norm[ref_video]
    val = dot.reshape(n_ref, CIDER_N)
    both = (hn != 0) & (r_norm != 0)
    val = np.where(both, val / np.where(both, hn * r_norm, 1.0), val)
    # pycocoevalcap's "length" counts bigrams: max(0, tokens - 1)
    delta = (np.maximum(hlen - 1, 0)[ref_video] - np.maximum(rlen - 1, 0)).astype(np.float64)
    val = val * (np.e ** (-(delta**2) / (2 * CIDER_SIGMA**2)))[:, None]
    per_video = np.stack(
        [np.bincount(ref_video, weights=val[:, k], minlength=n_vid) for k in range(CIDER_N)], 1
    )
    return per_video.mean(axis=1) / counts * 10.0


def _rouge(hyps: TokenTable, refs: TokenTable, counts, ref_video, ref_start) -> np.ndarray:
    hlen, rlen = hyps.lengths, refs.lengths
    lcs = np.zeros(len(refs), dtype=np.int64)
    short = (hlen > 0) & (hlen <= _WORD)
    _lcs_words(hyps, refs, ref_video, short, lcs)
    for v in np.flatnonzero(hlen > _WORD):
        for r in range(ref_start[v], ref_start[v] + counts[v]):
            lcs[r] = lcs_bits(
                hyps.ids[hyps.offsets[v] : hyps.offsets[v + 1]],
                refs.ids[refs.offsets[r] : refs.offsets[r + 1]],
            )
    # pycocoevalcap splits the candidate on " ": an empty one is one empty token
    clen = np.maximum(hlen, 1)[ref_video].astype(np.float64)
    prec = np.maximum.reduceat(lcs / clen, ref_start)
    rec = np.maximum.reduceat(lcs / rlen.astype(np.float64), ref_start)
    b2 = ROUGE_BETA**2
    ok = (prec != 0) & (rec != 0)
    score = np.where(ok, ((1 + b2) * prec * rec) / np.where(ok, rec + b2 * prec, 1.0), 0.0)
    return score


def _lcs_words(
    hyps: TokenTable, refs: TokenTable, ref_video: np.ndarray, short: np.ndarray, lcs: np.ndarray
) -> None:
    """LCS lengths of the pairs whose prediction has 1..64 tokens, all pairs in step (Hyyro 2004:
    ``U = V & M[b]; V = (V + U) | (V - U)``; the LCS is the number of zero bits of ``V``)."""
    hlen = hyps.lengths
    vocab = max(len(hyps.vocab), len(refs.vocab), 1)
    # match masks: for each (video, token) the bits of the prediction's positions holding the token
    h_text = np.repeat(np.arange(len(hyps), dtype=np.int64), hlen)
    h_pos = np.arange(len(hyps.ids), dtype=np.int64) - hyps.offsets[h_text]
    keep = short[h_text]
    bits = np.left_shift(np.uint64(1), h_pos[keep].astype(np.uint64))
    mkeys, masks = _group_reduce(h_text[keep] * vocab + hyps.ids[keep], bits, np.bitwise_or)
    pairs = np.flatnonzero(short[ref_video])
    if len(pairs) == 0:
        return
    r_text = np.repeat(np.arange(len(refs), dtype=np.int64), refs.lengths)
    tok_mask = _lookup(mkeys, ref_video[r_text] * vocab + refs.ids, masks.astype(np.uint64), 0)
    # longest references first, so the pairs still running at step j are a prefix
    plen = refs.lengths[pairs]
    pairs = pairs[np.argsort(-plen, kind="stable")]
    plen = refs.lengths[pairs]
    start = refs.offsets[pairs]
    m = hlen[ref_video[pairs]].astype(np.uint64)
    full = np.where(m == 64, np.uint64(0xFFFFFFFFFFFFFFFF), (np.uint64(1) << m) - np.uint64(1))
    v = full.copy()
    running = len(pairs)
    for j in range(int(plen[0])):
        while running and plen[running - 1] <= j:
            running -= 1
        u = v[:running] & tok_mask[start[:running] + j]
        v[:running] = (v[:running] + u) | (v[:running] - u)
    lcs[pairs] = m.astype(np.int64) - np.bitwise_count(v & full).astype(np.int64)


def lcs_bits(a: np.ndarray | list[int], b: np.ndarray | list[int]) -> int:
    """LCS length of two token sequences, bit-parallel over Python ints (any length).

    >>> lcs_bits([1, 2, 3, 4], [2, 4, 3])
    2
    """
    masks: dict[int, int] = {}
    for i, t in enumerate(a.tolist() if isinstance(a, np.ndarray) else a):
        masks[t] = masks.get(t, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    get = masks.get
    for t in b.tolist() if isinstance(b, np.ndarray) else b:
        u = v & get(t, 0)
        v = (v + u) | (v - u)
    return len(a) - (v & full).bit_count()


__all__ = ["fast_statistics", "lcs_bits"]

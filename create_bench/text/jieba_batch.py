"""jieba's precise mode for many texts at once, with numpy, giving jieba's very tokens (layer 1).

Tokenising CREATE's test references (100,000 texts) one by one through ``jieba.Tokenizer.cut``
costs about 10 s of pure-Python loops, more than everything else a cold scoring run does. This
module runs the same algorithm (jieba 0.42.1, precise mode, HMM on) over all texts together, on
one array of code points:

1. **Blocks.** jieba cuts a text into runs of ``re_han_default``'s characters (CJK ideographs,
   ASCII letters and digits, ``+#&._%-``) and cuts everything else one character at a time
   (``\\r\\n`` whole). Here the runs are found with a table over the code points.
2. **DAG.** jieba's prefix dictionary (``FREQ``: every word and every prefix of a word) becomes a
   trie in arrays; every block position walks it one character per step, all positions at once,
   never past its block. A word ending there (frequency > 0) is an edge of the DAG; a position
   with none gets jieba's single-character edge.
3. **Route.** jieba's dynamic programme ``route[i] = max((log(freq) - log(total) + route[j + 1],
   j))`` runs from the ends of all blocks at once (one step per distance to the end). The word
   weights are computed with :func:`math.log` as jieba computes them and the additions are the
   same IEEE-754 float64 additions in the same order, so every score is the same double; ties go
   to the longer word, as ``max`` over jieba's ``(score, j)`` tuples does.
4. **Unknown words.** Along the best route, a run of two or more single characters is cut by
   jieba's HMM (``jieba.finalseg``) unless the run is itself a dictionary word (then it stays
   characters), exactly as jieba's ``__cut_DAG`` does. Runs of CJK ideographs only go through a
   batched Viterbi over jieba's own start/transition/emission tables, with ``max``'s tie-breaking
   (the larger state letter); any other run, and every run while ``finalseg.Force_Split_Words``
   is not empty, goes to ``jieba.finalseg.cut`` itself.

Only jieba :data:`SUPPORTED` is reimplemented (the tokenizer falls back to jieba's own ``cut``
under another version, or with the HMM off). ``tests/test_jieba_batch.py`` checks token-for-token
equality with jieba on random texts (dictionary words, unknown characters, Latin, digits,
punctuation, whitespace) and on every text of the shipped sample.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import logging
import math
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from create_bench.fsutil import atomic_write_bytes

#: The jieba version whose precise mode this module reimplements.
SUPPORTED = "0.42.1"

_BITS = 16  # every character of jieba's dictionary is in the BMP (checked when building)
_BMP = (1 << _BITS) - 1
_ROOT = 0  # the trie's root; never a child, so a child id of 0 means "no edge"
_EMPTY = -1  # a free slot of the edge hash table (keys are >= 0)
#: Texts per chunk are added until this many code points (bounds the DAG's weight matrix).
CHUNK_CHARS = 1 << 19
_HAN_LO, _HAN_HI = 0x4E00, 0x9FD5  # jieba.finalseg.re_han: [\u4E00-\u9FD5]
_STATES = "BEMS"  # index order of the HMM arrays: the letters' order, which max's tie-break follows
_MIN_FLOAT = -3.14e100  # jieba.finalseg.MIN_FLOAT
#: Bump when :func:`build_trie`'s arrays change meaning (invalidates the disk cache).
TRIE_VERSION = 1
_TRIE_MAGIC = b"create-bench jieba trie\n"

log = logging.getLogger(__name__)


def _class_table(pattern: re.Pattern[str]) -> np.ndarray:
    """``table[c]`` is True when BMP character ``c`` matches the one-character ``pattern``."""
    return np.fromiter((pattern.fullmatch(chr(c)) is not None for c in range(_BMP + 1)), bool, _BMP + 1)


class BatchCutter:
    """jieba precise mode (HMM on) over many texts, built from an initialised ``jieba.Tokenizer``."""

    def __init__(
        self, dt: Any, *, cache_key: str | None = None, cache_dir: str | os.PathLike[str] | None = None
    ):
        """``dt``: an initialised ``jieba.Tokenizer``. With ``cache_key`` (something that names
        ``dt``'s dictionary exactly, e.g. its file's sha256) and ``cache_dir``, the trie is kept on
        disk (:func:`load_trie`) instead of being rebuilt in every process (about 1 s)."""
        import jieba
        import jieba.finalseg

        if jieba.__version__ != SUPPORTED:  # pragma: no cover - callers check first
            raise RuntimeError(f"jieba_batch reimplements jieba {SUPPORTED}, found {jieba.__version__}")
        self._finalseg = jieba.finalseg
        self._freq: dict[str, int] = dt.FREQ
        self._logtotal = math.log(dt.total)
        han = jieba.re_han_default.pattern.strip("()").rstrip("+")  # the character class
        self._han = _class_table(re.compile(han))
        self._space = _class_table(jieba.re_skip_default)  # \s (and the \r of \r\n)
        self._ps = np.fromiter(
            (unicodedata.category(chr(c))[0] in "PS" for c in range(_BMP + 1)), bool, _BMP + 1
        )
        if cache_key is None or cache_dir is None:
            trie = build_trie(dt.FREQ, self._logtotal)
        else:
            trie = load_trie(dt.FREQ, self._logtotal, cache_key, cache_dir)
        self._weight, self._root = trie["weight"], trie["root"]
        self._slot_key, self._slot_child = trie["slot_key"], trie["slot_child"]
        self._build_hmm()

    def _build_hmm(self) -> None:
        fs = self._finalseg
        self._start = np.array([fs.start_P[y] for y in _STATES])
        self._trans = np.array([[fs.trans_P[a].get(b, _MIN_FLOAT) for b in _STATES] for a in _STATES])
        emit = np.full((_HAN_HI - _HAN_LO + 1, 4), _MIN_FLOAT)
        for j, y in enumerate(_STATES):
            for ch, p in fs.emit_P[y].items():
                if _HAN_LO <= ord(ch) <= _HAN_HI:
                    emit[ord(ch) - _HAN_LO, j] = p
        self._emit = emit
        # jieba.finalseg.PrevStatus as (smaller, larger) indices: max keeps the larger letter on a tie
        self._prev = {_STATES.index(y): sorted(_STATES.index(p) for p in fs.PrevStatus[y]) for y in _STATES}

    # ----------------------------------------------------------------------------------------

    def cut(self, texts: Sequence[str]) -> list[list[str]]:
        """``list(jieba.Tokenizer.cut(t, HMM=True))`` for every text, in order."""
        return self._texts(texts, finish=False)

    def tokens(self, texts: Sequence[str]) -> list[list[str]]:
        """:meth:`cut` without whitespace tokens and tokens made only of punctuation or symbols
        (Unicode categories ``P*``/``S*``): the benchmark tokenizer's last step."""
        return self._texts(texts, finish=True)

    def table(
        self, texts: Sequence[str], vocab: Sequence[str] = ()
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """:meth:`tokens` as ids: ``(vocabulary, ids, offsets)``, text ``i``'s tokens being
        ``vocabulary[ids[offsets[i]:offsets[i + 1]]]``. The vocabulary is ``vocab`` followed by
        the new tokens in order of first appearance, as ``TokenTable.encode`` numbers them; no
        string is made for a token seen before (tokens of up to 3 BMP characters are told apart
        by their packed code points)."""
        keys, offsets, long_words = [], [np.zeros(1, dtype=np.int64)], {}  # type: ignore[var-annotated]
        with _no_gc():
            for big, codes, at, length, cut in self._spans(texts, finish=True):
                keys.append(_packed(big, codes, at, length, long_words))
                offsets.append(cut[1:] - cut[0] + offsets[-1][-1])
        key = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        uniq, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        by_first = np.argsort(first)  # unique tokens in order of first appearance
        long_list = list(long_words)
        new_words = [_unpack(k, long_list) for k in uniq[by_first].tolist()]
        index = {w: i for i, w in enumerate(vocab)}
        words = list(vocab)
        rank = np.empty(len(uniq), dtype=np.int64)
        for j, w in zip(by_first.tolist(), new_words):
            i = index.get(w)
            if i is None:
                i = index[w] = len(words)
                words.append(w)
            rank[j] = i
        return words, rank[inverse].astype(np.int32), np.concatenate(offsets)

    def _texts(self, texts: Sequence[str], finish: bool) -> list[list[str]]:
        out: list[list[str]] = []
        with _no_gc():
            for big, _, at, length, cut in self._spans(texts, finish):
                ends = (at + length).tolist()
                words = [big[s:e] for s, e in zip(at.tolist(), ends)]
                bounds = cut.tolist()
                out += [words[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
        return out

    def _spans(
        self, texts: Sequence[str], finish: bool
    ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Per chunk of texts: ``(joined text, its code points, token starts, token lengths, the
        first token of each text and the end)``."""
        lo = 0
        while lo < len(texts):
            hi, size = lo, 0
            while hi < len(texts) and (hi == lo or size + len(texts[hi]) < CHUNK_CHARS):
                size += len(texts[hi]) + 1
                hi += 1
            yield self._chunk(texts[lo:hi], finish)
            lo = hi

    def _chunk(
        self, texts: Sequence[str], finish: bool
    ) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        big = "\x00".join(texts) + "\x00"
        codes = np.frombuffer(big.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.int64)
        bmp = codes <= _BMP
        han = bmp & self._han[codes & _BMP]
        length = np.zeros(len(codes), dtype=np.int64)  # token length at each token's start
        starts, lens = _runs(han)
        if starts.size:
            best = self._route(len(codes), *self._dag(codes, han), starts, lens)
            ws = self._walk(best, starts, lens)
            tok_start, tok_len = self._unknown_runs(big, codes, ws, best[ws], starts)
            length[tok_start] = tok_len
        other = np.flatnonzero(~han)
        length[other] = 1
        crlf = other[(codes[other] == 13) & (codes[np.minimum(other + 1, len(codes) - 1)] == 10)]
        length[crlf], length[crlf + 1] = 2, 0
        text_start = np.zeros(len(texts) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, texts), np.int64, len(texts)) + 1, out=text_start[1:])
        length[text_start[1:] - 1] = 0  # the NULs between texts
        if finish:
            length[self._dropped(codes, length)] = 0
        at = np.flatnonzero(length)
        return big, codes, at, length[at], np.searchsorted(at, text_start)

    def _dropped(self, codes: np.ndarray, length: np.ndarray) -> np.ndarray:
        """Token starts whose token is whitespace, or punctuation/symbols only."""
        at = np.flatnonzero(length)
        bmp = codes <= _BMP
        ps = self._ps[codes & _BMP] & bmp
        for c in np.unique(codes[~bmp]).tolist():  # outside the BMP: ask unicodedata
            ps[codes == c] = unicodedata.category(chr(c))[0] in "PS"
        csum = np.concatenate([[0], np.cumsum(ps)])  # all P*/S*: count them over the token
        all_ps = csum[at + length[at]] - csum[at] == length[at]
        space = self._space[codes[at] & _BMP] & bmp[at]
        return at[all_ps | space]

    def _dag(self, codes: np.ndarray, han: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """jieba's ``get_DAG`` of every block at once, as edges ``(start, length, weight)`` ordered
        by length, then start: a word of the dictionary (frequency > 0) from ``start``, weighted
        ``log(freq) - log(total)``; jieba's single-character edge where no word starts."""
        pos = np.flatnonzero(han)
        state = self._root[codes[pos] & _BMP]
        alive = state != _ROOT
        pos, state = pos[alive], state[alive]
        rows: list[tuple[np.ndarray, np.ndarray]] = []
        n = len(codes)
        while pos.size:
            w = self._weight[state]
            word = ~np.isnan(w)
            rows.append((pos[word], w[word]))
            nxt = pos + len(rows)  # the text ends with a NUL, never in a block: nxt < n while alive
            ok = han[nxt]  # a walk never leaves its block
            pos, state = pos[ok], self._child(state[ok], codes[nxt[ok]])
            hit = state != _ROOT
            pos, state = pos[hit], state[hit]
        has = np.zeros(n, dtype=bool)
        for p, _ in rows:
            has[p] = True
        # jieba's DAG[k] = [k] when no word starts at k: weight log(FREQ.get(c) or 1) - log(total)
        none = np.flatnonzero(han & ~has)
        p0, w0 = rows[0] if rows else (none[:0], np.zeros(0))
        rows[:1] = [
            (np.concatenate([p0, none]), np.concatenate([w0, np.full(len(none), 0.0 - self._logtotal)]))
        ]
        start = np.concatenate([p for p, _ in rows])
        length = np.repeat(np.arange(1, len(rows) + 1), [len(p) for p, _ in rows])
        weight = np.concatenate([w for _, w in rows])
        return start, length, weight

    def _child(self, state: np.ndarray, c: np.ndarray) -> np.ndarray:
        """The trie's child of each ``state`` by character ``c`` (``_ROOT`` where there is none):
        an open-addressing hash table probed for all queries at once."""
        key = (state << _BITS) | c
        slot_key, slot_child = self._slot_key, self._slot_child
        mask = len(slot_key) - 1
        h = _hash(key, mask)
        out = np.zeros(len(key), dtype=np.int64)
        todo = np.arange(len(key))
        while todo.size:
            s = h[todo]
            found = slot_key[s]
            hit = found == key[todo]
            out[todo[hit]] = slot_child[s[hit]]
            more = ~hit & (found != _EMPTY)  # occupied by another key: probe the next slot
            todo = todo[more]
            h[todo] = (h[todo] + 1) & mask
        return out

    def _route(
        self,
        n: int,
        start: np.ndarray,
        length: np.ndarray,
        weight: np.ndarray,
        starts: np.ndarray,
        lens: np.ndarray,
    ) -> np.ndarray:
        """jieba's ``calc`` over every block at once: the length of the best route's word at each
        position. Positions are taken by their distance to their block's end, all blocks together;
        within one distance, edges by increasing length, so that ``>=`` keeps the longer word on a
        tie, as ``max`` over jieba's ``(score, j)`` tuples does."""
        route = np.zeros(n + 1)  # 0 past every block (a non-block position), as jieba's route[N]
        route[start] = -np.inf
        best = np.zeros(n, dtype=np.int64)
        block = np.searchsorted(starts, start, side="right") - 1
        dist = starts[block] + lens[block] - start
        dist = dist.astype(np.uint16) if dist.max() < 1 << 16 else dist  # radix sort when it fits
        order = np.argsort(dist, kind="stable")  # (distance, length, start): the edges came by length
        p, L, w = start[order], length[order], weight[order]
        group = dist[order].astype(np.int64) * 64 + L
        cut = np.concatenate([[0], np.flatnonzero(group[1:] != group[:-1]) + 1, [len(group)]]).tolist()
        for a, b in zip(cut[:-1], cut[1:]):
            pg, lg = p[a:b], int(L[a])
            v = w[a:b] + route[pg + lg]
            up = v >= route[pg]
            route[pg[up]] = v[up]
            best[pg[up]] = lg
        return best

    def _walk(self, best: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
        """Start positions of the words on every block's best route, ascending."""
        on = np.zeros(len(best), dtype=bool)
        cur, end = starts, starts + lens
        while cur.size:
            on[cur] = True
            cur = cur + best[cur]
            keep = cur < end
            cur, end = cur[keep], end[keep]
        return np.flatnonzero(on)

    def _unknown_runs(
        self, big: str, codes: np.ndarray, ws: np.ndarray, wl: np.ndarray, starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Tokens (starts, lengths) once every run of >= 2 single-character words of one block is
        replaced by jieba's treatment of its buffer (the HMM, or its characters)."""
        single = wl == 1
        block = np.searchsorted(starts, ws, side="right") - 1
        cont = np.zeros(len(ws), dtype=bool)
        cont[1:] = single[1:] & single[:-1] & (block[1:] == block[:-1])
        first = single & ~cont  # each run's first word
        run = np.cumsum(first) - 1
        run_len = np.bincount(run[single], minlength=int(first.sum()))
        long_runs = np.flatnonzero(run_len >= 2)
        if not long_runs.size:
            return ws, wl
        r_start, r_len = ws[first][long_runs], run_len[long_runs]
        in_long = single & np.isin(run, long_runs)
        bufs = [big[s : s + n] for s, n in zip(r_start.tolist(), r_len.tolist())]
        freq = self._freq
        as_chars = np.fromiter((bool(freq.get(b)) for b in bufs), bool, len(bufs))
        pure = _all_in_span(codes, r_start, r_len, (codes >= _HAN_LO) & (codes <= _HAN_HI))
        vit = pure & ~as_chars & (not self._finalseg.Force_Split_Words)
        cuts = np.zeros(len(codes), dtype=bool)  # a token starts here (within the runs)
        cuts[r_start] = True
        python = ~vit & ~as_chars
        if vit.any():
            idx = np.flatnonzero(vit)
            ok = self._viterbi_cuts(codes, r_start[idx], r_len[idx], cuts)
            python[idx[~ok]] = True  # a label sequence whose words do not tile the run
        chars = np.flatnonzero(as_chars)
        if chars.size:
            cuts[_span_positions(r_start[chars], r_len[chars])] = True
        for i in np.flatnonzero(python).tolist():  # jieba's own HMM for the rest
            at = int(r_start[i])
            for piece in self._finalseg.cut(bufs[i]):
                cuts[at] = True
                at += len(piece)
            if at != r_start[i] + r_len[i]:  # pragma: no cover - finalseg covers its input
                raise RuntimeError(f"jieba's HMM did not cover {bufs[i]!r}")
        span = _span_positions(r_start, r_len)
        p_start = span[cuts[span]]
        run_end = np.repeat(r_start + r_len, r_len)[cuts[span]]
        p_len = np.append(p_start[1:], 0) - p_start  # up to the next piece, or the run's end
        p_len = np.where((p_len <= 0) | (p_start + p_len > run_end), run_end - p_start, p_len)
        tok_start = np.concatenate([ws[~in_long], p_start])
        tok_len = np.concatenate([wl[~in_long], p_len])
        return tok_start, tok_len

    def _viterbi_cuts(
        self, codes: np.ndarray, r_start: np.ndarray, r_len: np.ndarray, cuts: np.ndarray
    ) -> np.ndarray:
        """jieba.finalseg's Viterbi over runs of CJK ideographs at once. Marks in ``cuts`` where
        its words start; returns, per run, whether they tile it (else jieba must cut that run)."""
        order = np.argsort(-r_len, kind="stable")
        starts, lens = r_start[order], r_len[order]
        longest = np.sort(lens)
        n = len(lens)
        em = self._emit[codes[_span_positions(starts, lens)] - _HAN_LO]  # [characters, 4]
        base = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lens, out=base[1:])
        back = np.zeros((len(em), 4), dtype=np.int64)
        final = np.empty((n, 4))
        v = self._start[None, :] + em[base[:-1]]
        trans, live = self._trans, n
        for t in range(1, int(lens.max())):
            k = n - int(np.searchsorted(longest, t + 1))  # runs longer than t
            final[k:live], v, live = v[k:live], v[:k], k  # the others ended at t - 1
            e = em[base[:k] + t]
            new = np.empty_like(v)
            for y, (a, b) in self._prev.items():
                pa = v[:, a] + trans[a, y] + e[:, y]
                pb = v[:, b] + trans[b, y] + e[:, y]
                take_a = pa > pb  # on a tie, b: max over (prob, letter) tuples
                new[:, y] = np.where(take_a, pa, pb)
                back[base[:k] + t, y] = np.where(take_a, a, b)
            v = new
        final[:live] = v
        e_, s_ = _STATES.index("E"), _STATES.index("S")
        state = np.where(final[:, s_] >= final[:, e_], s_, e_)  # max over (V, y) for y in "ES"
        labels = np.zeros(len(em), dtype=np.int64)
        for j in range(int(lens.max())):  # backtrack from every run's end at once
            k = n - int(np.searchsorted(longest, j + 1))
            at = base[:k] + lens[:k] - 1 - j
            state = state[:k]
            labels[at] = state
            state = back[at, state]
        ok_sorted = _tile_cuts(labels, base, starts, lens, cuts)
        ok = np.empty(n, dtype=bool)
        ok[order] = ok_sorted
        return ok


def build_trie(freq: dict[str, int], logtotal: float) -> dict[str, np.ndarray]:
    """jieba's prefix dictionary as arrays. Node ``i + 1`` is ``freq``'s ``i``-th key:
    ``weight[node]`` is ``log(freq) - logtotal`` (NaN for a prefix that is no word), ``root[c]``
    the node of the one-character key ``c``, and the hash table ``slot_key`` -> ``slot_child``
    maps an edge ``parent << 16 | c`` to its child."""
    keys = list(freq)
    last = np.frombuffer("".join(k[-1] for k in keys).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    if max(map(ord, "".join(keys)), default=0) > _BMP:
        raise RuntimeError("jieba's dictionary has a character outside the BMP")
    node = {k: i + 1 for i, k in enumerate(keys)}
    # jieba walks to a key only through its prefixes: a key whose prefix is missing is never
    # reached (parent -1: no edge); one-character keys hang from the root
    parent = np.fromiter((node.get(k[:-1], -1) if len(k) > 1 else _ROOT for k in keys), np.int64, len(keys))
    counts = np.fromiter(freq.values(), np.int64, len(keys))
    weight = np.full(len(keys) + 1, np.nan)
    log = math.log
    words = np.flatnonzero(counts)
    weight[words + 1] = [log(f) - logtotal for f in counts[words].tolist()]  # jieba's own doubles
    ids = np.arange(1, len(keys) + 1, dtype=np.int64)
    top = parent == _ROOT
    root = np.zeros(_BMP + 1, dtype=np.int64)
    root[last[top]] = ids[top]
    inner = parent > 0
    slot_key, slot_child = _hash_table((parent[inner] << _BITS) | last[inner], ids[inner])
    return {"weight": weight, "root": root, "slot_key": slot_key, "slot_child": slot_child}


def _hash(key: np.ndarray, mask: int) -> np.ndarray:
    """Fibonacci hashing of non-negative int64 keys into ``mask + 1`` (a power of two) slots."""
    bits = mask.bit_length()
    with np.errstate(over="ignore"):
        h = (key.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - bits)
    return h.astype(np.int64)


def _hash_table(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An open-addressing (linear probing) table of distinct ``keys`` -> ``values``, at most half
    full; :meth:`BatchCutter._child` reads it."""
    size = 1 << max(2, (2 * len(keys)).bit_length())
    slot_key = np.full(size, _EMPTY, dtype=np.int64)
    slot_val = np.zeros(size, dtype=np.int64)
    h = _hash(keys, size - 1)
    todo = np.arange(len(keys))
    while todo.size:  # each round, every free slot goes to its first claimant; the rest probe on
        s = h[todo]
        free = slot_key[s] == _EMPTY
        slots, first = np.unique(s[free], return_index=True)
        won = todo[free][first]
        slot_key[slots], slot_val[slots] = keys[won], values[won]
        placed = np.zeros(len(keys), dtype=bool)
        placed[won] = True
        todo = todo[~placed[todo]]
        h[todo] = (h[todo] + 1) & (size - 1)
    return slot_key, slot_val


def load_trie(
    freq: dict[str, int], logtotal: float, key: str, cache_dir: str | os.PathLike[str]
) -> dict[str, np.ndarray]:
    """:func:`build_trie`, kept under ``<cache_dir>/jieba/``. An entry carries the sha256 of its
    payload and its full key (``key``, :data:`TRIE_VERSION`, the dictionary's size and total); a
    damaged or mismatched one is reported, rebuilt and rewritten; an unwritable cache only costs
    the build."""
    full = {"v": TRIE_VERSION, "key": key, "keys": len(freq), "logtotal": logtotal, "numpy": np.__version__}
    ident = json.dumps(full, sort_keys=True).encode("utf-8")
    path = Path(cache_dir) / "jieba" / f"trie-{hashlib.sha256(ident).hexdigest()[:24]}.npz"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        data = None
    except OSError as exc:
        log.warning("cannot read the jieba trie cache %s (%s); rebuilding it", path, exc)
        data = None
    if data is not None:
        try:
            return _decode_trie(data, ident, len(freq))
        except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            log.warning("jieba trie cache entry %s is unusable (%s); rebuilding it", path, exc)
    trie = build_trie(freq, logtotal)
    buf = io.BytesIO()
    np.savez(
        buf,
        weight=trie["weight"],
        root=trie["root"],
        slot_key=trie["slot_key"],
        slot_child=trie["slot_child"],
    )
    payload = buf.getvalue()
    try:
        atomic_write_bytes(
            path,
            _TRIE_MAGIC
            + hashlib.sha256(ident + payload).hexdigest().encode()
            + b"\n"
            + ident
            + b"\n"
            + payload,
        )
    except OSError as exc:
        log.warning("could not write the jieba trie cache %s (%s)", path, exc)
    return trie


def _decode_trie(data: bytes, ident: bytes, n_keys: int) -> dict[str, np.ndarray]:
    if not data.startswith(_TRIE_MAGIC):
        raise ValueError("not a trie cache entry")
    digest, stored, payload = data[len(_TRIE_MAGIC) :].split(b"\n", 2)
    if stored != ident:
        raise ValueError("the entry is for another dictionary")
    if hashlib.sha256(ident + payload).hexdigest().encode() != digest:
        raise ValueError("checksum mismatch")
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        trie = {k: z[k] for k in ("weight", "root", "slot_key", "slot_child")}
    size = len(trie["slot_key"])
    if len(trie["weight"]) != n_keys + 1 or len(trie["root"]) != _BMP + 1 or len(trie["slot_child"]) != size:
        raise ValueError("arrays of the wrong size")
    if size < 4 or size & (size - 1):
        raise ValueError("the hash table's size is not a power of two")
    return trie


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Millions of new strings and lists, none in a cycle: the collector's passes would only cost."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _packed(
    big: str, codes: np.ndarray, at: np.ndarray, length: np.ndarray, long_words: dict[str, int]
) -> np.ndarray:
    """One int64 per token naming it exactly: ``length << 48 | c2 << 32 | c1 << 16 | c0`` for a
    token of up to 3 BMP characters, else ``-1 - i`` with ``i`` its index in ``long_words``."""
    n = len(codes)
    c = [np.where(length > j, codes[np.minimum(at + j, n - 1)], 0) for j in range(3)]
    key = (length << 48) | (c[2] << 32) | (c[1] << 16) | c[0]
    bmp_ok = np.ones(len(at), dtype=bool)
    for j in range(3):
        bmp_ok &= c[j] <= _BMP
    slow = np.flatnonzero((length > 3) | ~bmp_ok)
    if slow.size:
        get = long_words.setdefault
        s_at, s_end = at[slow].tolist(), (at[slow] + length[slow]).tolist()
        key[slow] = [-1 - get(big[a:b], len(long_words)) for a, b in zip(s_at, s_end)]
    return key


def _unpack(key: int, long_list: list[str]) -> str:
    if key < 0:
        return long_list[-1 - key]
    return "".join(chr((key >> (16 * j)) & _BMP) for j in range(key >> 48))


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of the runs of True in ``mask``."""
    m = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(m)
    s, e = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return s, e - s


def _span_positions(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Every position of the spans ``[start, start + length)``, span after span."""
    total = int(length.sum())
    off = np.repeat(start - np.concatenate([[0], np.cumsum(length)[:-1]]), length)
    return off + np.arange(total, dtype=np.int64)


def _all_in_span(codes: np.ndarray, start: np.ndarray, length: np.ndarray, ok: np.ndarray) -> np.ndarray:
    csum = np.concatenate([[0], np.cumsum(ok)])
    return csum[start + length] - csum[start] == length


def _tile_cuts(
    labels: np.ndarray, base: np.ndarray, starts: np.ndarray, lens: np.ndarray, cuts: np.ndarray
) -> np.ndarray:
    """jieba.finalseg's ``__cut`` of BMES ``labels`` (run after run from ``base``): a word ends
    after each E (from the last B) and each S (the character alone), the rest is one word. Marks
    the word starts of the runs whose words tile them; returns which runs do."""
    b_, e_, s_ = (_STATES.index(c) for c in "BES")
    n = len(labels)
    i = np.arange(n, dtype=np.int64)
    first = np.zeros(n, dtype=bool)
    first[base[:-1]] = True
    ends_word = (labels == e_) | (labels == s_)
    boundary = first.copy()
    boundary[1:] |= ends_word[:-1] & ~first[1:]
    nexti = np.maximum.accumulate(np.where(boundary, i, 0))  # where the next word would start
    begin = np.maximum.accumulate(np.where(first | (labels == b_), i, 0))  # the last B (or the start)
    bad = ((labels == e_) & (begin != nexti)) | ((labels == s_) & (nexti != i))
    run = np.repeat(np.arange(len(lens)), lens)
    ok = np.bincount(run[bad], minlength=len(lens)) == 0
    good = np.repeat(ok, lens) & boundary
    cuts[np.repeat(starts - base[:-1], lens)[good] + i[good]] = True
    return ok


__all__ = ["CHUNK_CHARS", "SUPPORTED", "TRIE_VERSION", "BatchCutter", "build_trie", "load_trie"]

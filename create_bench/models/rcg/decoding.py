"""Greedy and beam decoding of the copy-generate decoder (no key/value cache: the decoder is small
and texts are short, so each step re-reads the prefix)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from create_bench.models.rcg.model import CopyGenerator, Memory


@dataclass(frozen=True)
class DecodeOptions:
    """How to decode: the task token, [EOS], ids never emitted, and the search settings."""

    task_id: int
    eos_id: int
    banned_ids: tuple[int, ...]
    max_len: int
    beam_size: int = 1
    no_repeat_ngram: int = 3
    length_penalty: float = 1.0


def _ban_ngrams(logp: torch.Tensor, rows: Sequence[Sequence[int]], ngram: int) -> None:
    """Forbid, in each row, the token that would repeat an n-gram of size ``ngram`` already in it."""
    if ngram <= 0:
        return
    for r, seq in enumerate(rows):
        if len(seq) < ngram - 1:
            continue
        prefix = tuple(seq[len(seq) - ngram + 1 :]) if ngram > 1 else ()
        for i in range(len(seq) - ngram + 1):
            if tuple(seq[i : i + ngram - 1]) == prefix:
                logp[r, seq[i + ngram - 1]] = float("-inf")


def _constrain(logp: torch.Tensor, rows: Sequence[Sequence[int]], step: int, opts: DecodeOptions) -> None:
    """Special ids never, [EOS] only after a character and always at ``max_len``, no repeated n-gram."""
    if opts.banned_ids:
        logp[:, list(opts.banned_ids)] = float("-inf")
    _ban_ngrams(logp, rows, opts.no_repeat_ngram)
    if step == 0:
        logp[:, opts.eos_id] = float("-inf")
    if step >= opts.max_len:
        eos = logp[:, opts.eos_id].clone()
        logp.fill_(float("-inf"))
        logp[:, opts.eos_id] = torch.where(torch.isfinite(eos), eos, torch.zeros_like(eos))


def _inputs(rows: Sequence[Sequence[int]], task_id: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([[task_id, *r] for r in rows], dtype=torch.long, device=device)


@torch.no_grad()
def greedy(gen: CopyGenerator, mem: Memory, opts: DecodeOptions) -> list[list[int]]:
    """The most likely character at each step, until [EOS] or ``max_len``."""
    b = mem.states.shape[0]
    rows: list[list[int]] = [[] for _ in range(b)]
    done = [False] * b
    for step in range(opts.max_len + 1):
        live = [i for i in range(b) if not done[i]]
        if not live:
            break
        index = torch.tensor(live, device=mem.states.device)
        logp, _ = gen.next_logp(
            _inputs([rows[i] for i in live], opts.task_id, index.device), mem.select(index)
        )
        _constrain(logp, [rows[i] for i in live], step, opts)
        for i, tok in zip(live, logp.argmax(-1).tolist()):
            if tok == opts.eos_id:
                done[i] = True
            else:
                rows[i].append(int(tok))
    return rows


@torch.no_grad()
def beam_search(gen: CopyGenerator, mem: Memory, opts: DecodeOptions) -> list[list[int]]:
    """Beam search with length-normalised scores (sum of log-probabilities / length^penalty)."""
    b, beam = mem.states.shape[0], opts.beam_size
    rows: list[list[list[int]]] = [[[]] for _ in range(b)]  # live hypotheses per video
    scores: list[list[float]] = [[0.0] for _ in range(b)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(b)]
    for step in range(opts.max_len + 1):
        live = [(i, j) for i in range(b) if len(finished[i]) < beam for j in range(len(rows[i]))]
        if not live:
            break
        index = torch.tensor([i for i, _ in live], device=mem.states.device)
        seqs = [rows[i][j] for i, j in live]
        logp, _ = gen.next_logp(_inputs(seqs, opts.task_id, index.device), mem.select(index))
        _constrain(logp, seqs, step, opts)
        total = logp + torch.tensor([scores[i][j] for i, j in live], device=logp.device)[:, None]
        for i in sorted({i for i, _ in live}):
            _advance(i, live, total, rows, scores, finished, opts)
    out = []
    for i in range(b):
        best = max(finished[i], key=lambda x: x[0]) if finished[i] else (0.0, rows[i][0])
        out.append(best[1])
    return out


def _advance(
    i: int,
    live: list[tuple[int, int]],
    total: torch.Tensor,
    rows: list[list[list[int]]],
    scores: list[list[float]],
    finished: list[list[tuple[float, list[int]]]],
    opts: DecodeOptions,
) -> None:
    """Video ``i``'s next beams from its candidates (``total``: scores of every live row's next token)."""
    mine = [r for r, (v, _) in enumerate(live) if v == i]
    cand = total[mine].flatten()
    vocab = total.shape[1]
    top = torch.topk(cand, min(2 * opts.beam_size, cand.numel()))
    new_rows: list[list[int]] = []
    new_scores: list[float] = []
    for score, flat in zip(top.values.tolist(), top.indices.tolist()):
        if score == float("-inf"):
            break
        src = live[mine[flat // vocab]][1]
        tok = flat % vocab
        seq = rows[i][src]
        if tok == opts.eos_id:
            if len(finished[i]) < opts.beam_size:
                finished[i].append((score / max(1, len(seq)) ** opts.length_penalty, list(seq)))
        elif len(new_rows) < opts.beam_size:
            new_rows.append([*seq, tok])
            new_scores.append(score)
        if len(new_rows) >= opts.beam_size and len(finished[i]) >= opts.beam_size:
            break
    rows[i], scores[i] = new_rows or rows[i][:0], new_scores
    if not new_rows and len(finished[i]) < opts.beam_size:  # nothing left to extend
        finished[i] += [(float("-inf"), [])] * (opts.beam_size - len(finished[i]))


def decode(gen: CopyGenerator, mem: Memory, opts: DecodeOptions) -> list[list[int]]:
    """Greedy with ``beam_size`` 1, beam search otherwise."""
    return greedy(gen, mem, opts) if opts.beam_size <= 1 else beam_search(gen, mem, opts)

"""ALWIG decoding: greedy and beam search with a maximum length and no-repeat n-gram.

:class:`ALWIGDecoding` is a mixin of :class:`~create_bench.models.alwig.model.ALWIGNet` (so
``net.greedy`` and ``net.beam_search`` keep their names); it holds no parameters or modules and
drives the network's GPT-2 generator step by step through the network's prefix, conditioning
and copy hooks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from create_bench.errors import ModelError

if TYPE_CHECKING:
    from create_bench.models.alwig.model import VocabInfo


class ALWIGDecoding:
    """Decoding methods of ALWIGNet; the network provides the attributes and hooks declared here."""

    vocab: VocabInfo
    gpt: Any

    if TYPE_CHECKING:  # implemented by ALWIGNet

        def _cond(self, hidden: torch.Tensor) -> torch.Tensor | None: ...

        def _prefix(self, hidden: torch.Tensor, tag_ids: torch.Tensor | None = None) -> torch.Tensor: ...

        def _copy_source(
            self, prefix: torch.Tensor, tag_chars: torch.Tensor | None
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None: ...

        def _copy_mix(
            self,
            logits: torch.Tensor,
            h: torch.Tensor,
            source: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
            labels: torch.Tensor | None = None,
        ) -> torch.Tensor: ...

    def _banned(self, logp: torch.Tensor, seqs: list[list[int]], step: int, max_len: int, ngram: int) -> None:
        """In place: forbid special tokens, an empty text, running past ``max_len`` and repeated n-grams."""
        v = self.vocab
        banned = [i for i in v.special_ids if i != v.eos_id]
        logp[:, banned] = -math.inf
        if step == 0:
            logp[:, v.eos_id] = -math.inf
        if step >= max_len:
            eos = logp[:, v.eos_id].clone()
            logp.fill_(-math.inf)
            logp[:, v.eos_id] = eos
        if ngram > 0 and step >= ngram - 1:
            for r, seq in enumerate(seqs):
                head = tuple(seq[len(seq) - ngram + 1 :]) if ngram > 1 else ()
                bad = [
                    seq[i + ngram - 1]
                    for i in range(len(seq) - ngram + 1)
                    if tuple(seq[i : i + ngram - 1]) == head
                ]
                if bad:
                    logp[r, bad] = -math.inf

    def _start(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        tag_ids: torch.Tensor | None = None,
        tag_chars: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, Any]:
        if kind not in self.vocab.task_ids:
            raise ModelError(f"unknown generation kind {kind!r} (title, caption)")
        n = hidden.shape[0]
        task = torch.full((n, 1), self.vocab.task_ids[kind], dtype=torch.long, device=hidden.device)
        cond = self._cond(hidden)
        tok = self.gpt.transformer.wte(task)
        if cond is not None:
            tok = tok + cond[:, None, :]
        prefix = self._prefix(hidden, tag_ids)
        source = self._copy_source(prefix, tag_chars)
        emb = torch.cat([prefix, tok], dim=1)
        attn = torch.cat([mask, torch.ones_like(task, dtype=torch.bool)], dim=1).long()
        pos = torch.arange(emb.shape[1], device=emb.device).expand(n, -1)
        out = self.gpt(
            inputs_embeds=emb,
            attention_mask=attn,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=source is not None,
        )
        return self._next_logp(out, source), (out.cache, attn, cond, source)

    def _next_logp(self, out: Any, source: Any) -> torch.Tensor:
        """Log-probabilities [N, V] of the next character from a decoder output (copy mixed in)."""
        logits = out.logits[:, -1:].float()
        if source is None:
            return F.log_softmax(logits[:, 0], dim=-1)
        return self._copy_mix(logits, out.hidden_states[-1][:, -1:].float(), source)[:, 0]

    def _step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        cache, attn, cond, source = state
        n = tokens.shape[0]
        attn = torch.cat([attn, attn.new_ones(n, 1)], dim=1)
        pos = torch.full((n, 1), attn.shape[1] - 1, dtype=torch.long, device=tokens.device)
        emb = self.gpt.transformer.wte(tokens[:, None])
        if cond is not None:
            emb = emb + cond[:, None, :]
        out = self.gpt(
            inputs_embeds=emb,
            cache=cache,
            attention_mask=attn,
            position_ids=pos,
            use_cache=True,
            output_hidden_states=source is not None,
        )
        return self._next_logp(out, source), (out.cache, attn, cond, source)

    @torch.no_grad()
    def greedy(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        max_len: int,
        no_repeat_ngram: int = 0,
        tag_ids: torch.Tensor | None = None,
        tag_chars: torch.Tensor | None = None,
    ) -> list[list[int]]:
        """Greedy decoding: the most likely next character until [EOS] (forced at ``max_len``)."""
        logp, state = self._start(hidden, mask, kind, tag_ids, tag_chars)
        n = hidden.shape[0]
        seqs: list[list[int]] = [[] for _ in range(n)]
        done = [False] * n
        for step in range(max_len + 1):
            self._banned(logp, seqs, step, max_len, no_repeat_ngram)
            nxt = logp.argmax(dim=-1)
            for i, tok in enumerate(nxt.tolist()):
                if not done[i]:
                    if tok == self.vocab.eos_id:
                        done[i] = True
                    else:
                        seqs[i].append(tok)
            if all(done):
                break
            logp, state = self._step(nxt, state)
        return seqs

    @torch.no_grad()
    def beam_search(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor,
        kind: str,
        max_len: int,
        beam_size: int,
        no_repeat_ngram: int = 0,
        length_penalty: float = 1.0,
        tag_ids: torch.Tensor | None = None,
        tag_chars: torch.Tensor | None = None,
    ) -> list[list[int]]:
        """Beam search; a video is done once ``beam_size`` hypotheses ended (so beam 1 == greedy).

        Finished hypotheses are ranked by log-probability / length**length_penalty (length counts
        [EOS]).
        """
        k = beam_size
        n = hidden.shape[0]
        hidden, mask = hidden.repeat_interleave(k, 0), mask.repeat_interleave(k, 0)
        if tag_ids is not None:
            tag_ids = tag_ids.repeat_interleave(k, 0)
        if tag_chars is not None:
            tag_chars = tag_chars.repeat_interleave(k, 0)
        logp, state = self._start(hidden, mask, kind, tag_ids, tag_chars)
        vsize = logp.shape[-1]
        scores = torch.full((n, k), -math.inf, device=hidden.device)
        scores[:, 0] = 0.0  # all beams start equal: keep one so the first step does not pick duplicates
        seqs: list[list[int]] = [[] for _ in range(n * k)]
        finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(n)]
        done = [False] * n
        eos = self.vocab.eos_id
        for step in range(max_len + 1):
            self._banned(logp, seqs, step, max_len, no_repeat_ngram)
            cand = (scores.reshape(-1, 1) + logp).reshape(n, k * vsize)
            top_s, top_i = cand.topk(min(2 * k, k * vsize), dim=1)
            new_scores = torch.full((n, k), -math.inf, device=hidden.device)
            src = torch.arange(n * k, device=hidden.device).reshape(n, k).clone()  # default: keep in place
            new_tok = torch.full((n, k), eos, dtype=torch.long, device=hidden.device)
            new_seqs = [list(s) for s in seqs]
            ts, ti = top_s.tolist(), top_i.tolist()
            for b in range(n):
                if done[b]:
                    continue
                live = 0
                for rank, (s, idx) in enumerate(zip(ts[b], ti[b])):
                    beam, tok = divmod(idx, vsize)
                    row = b * k + beam
                    if tok == eos:
                        if rank < k and s > -math.inf:
                            length = len(seqs[row]) + 1
                            finished[b].append((s / length**length_penalty, list(seqs[row])))
                        continue
                    if live < k:
                        new_scores[b, live] = s
                        src[b, live] = row
                        new_tok[b, live] = tok
                        new_seqs[b * k + live] = [*seqs[row], tok]
                        live += 1
                if len(finished[b]) >= k or live == 0:
                    done[b] = True
            if all(done):
                break
            flat = src.reshape(-1)
            cache, attn, cond, source = state
            state = (
                _reorder(cache, flat),
                attn[flat],
                None if cond is None else cond[flat],
                None if source is None else tuple(x[flat] for x in source),
            )
            scores, seqs = new_scores, new_seqs
            logp, state = self._step(new_tok.reshape(-1), state)
        out = []
        for b in range(n):
            best = max(finished[b], key=lambda x: x[0]) if finished[b] else (0.0, seqs[b * k])
            out.append(best[1])
        return out


def _reorder(cache: Any, index: torch.Tensor) -> Any:
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)  # legacy tuples

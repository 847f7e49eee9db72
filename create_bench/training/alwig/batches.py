"""What each training step sees: which rows (a seeded permutation per epoch), which of their texts
(seeded draws, also per position of a global batch for the streamed path) and the network's input
tensors (:func:`make_batch`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from create_bench.models.alwig.bundle import ALWIG
from create_bench.models.alwig.config import ALWIGConfig
from create_bench.training.alwig.features import SplitData
from create_bench.training.alwig.options import PHASES


def phase_kinds(phase: str) -> tuple[str, ...]:
    return ("title",) if phase == "pretrain" else ("caption", "title")


def row_trainable(phase: str, raw_title: str, titles: Sequence[str], captions: Sequence[str]) -> bool:
    """Whether a video trains in ``phase``: pre-training needs a raw title, fine-tuning a caption and a title."""
    if phase == "pretrain":
        return bool(raw_title.strip())
    return bool(captions) and bool(titles)


def trainable_rows(data: SplitData, phase: str) -> list[int]:
    return [
        i
        for i in range(len(data))
        if row_trainable(phase, data.raw_titles[i], data.titles[i], data.captions[i])
    ]


def epoch_plan(n: int, cfg: ALWIGConfig, phase: str, epoch: int, world_size: int) -> list[np.ndarray]:
    """Global batches (row positions) of one epoch: a seeded permutation cut into batch_size chunks.

    The last chunk is cut to a multiple of the world size (every rank needs an equal share).
    """
    rng = np.random.default_rng([cfg.seed, PHASES.index(phase), epoch])
    perm = rng.permutation(n)
    batches = [perm[i : i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
    out = []
    for b in batches:
        b = b[: len(b) - len(b) % world_size]
        if len(b):
            out.append(b)
    return out


def text_choices(
    data: SplitData, rows: Sequence[int], cfg: ALWIGConfig, phase: str, salt: int
) -> dict[str, list[str]]:
    """The text of each kind each row of a *global* batch trains on (seeded by ``salt``).

    With ``cfg.gen_kinds_per_video == 1`` the result also has ``gen_kind``: the one kind each row
    trains generation on this step (drawn at random, both kinds equally likely); alignment always
    uses both kinds. With ``cfg.tag_dropout > 0`` it has ``tags``: each row's tags, each kept with
    probability ``1 - tag_dropout`` (so the model cannot lean on tags alone).
    """
    if phase == "pretrain":
        return {"title": [data.raw_titles[i] for i in rows]}
    rng = np.random.default_rng([cfg.seed, PHASES.index(phase), salt, 1])
    cap_pick = rng.random(len(rows))
    title_pick = rng.random(len(rows))
    out: dict[str, Any] = {
        "caption": [data.captions[i][int(u * len(data.captions[i]))] for i, u in zip(rows, cap_pick)],
        "title": [data.titles[i][int(u * len(data.titles[i]))] for i, u in zip(rows, title_pick)],
    }
    if cfg.gen_kinds_per_video == 1:
        out["gen_kind"] = ["caption" if u < 0.5 else "title" for u in rng.random(len(rows))]
    if cfg.tag_dropout > 0:
        out["tags"] = [[t for t in data.tags[i] if rng.random() >= cfg.tag_dropout] for i in rows]
    return out


def text_choices_at(
    data: SplitData,
    rows: Sequence[int],
    positions: Sequence[int],
    cfg: ALWIGConfig,
    phase: str,
    salt: int,
    batch_size: int,
) -> dict[str, Any]:
    """:func:`text_choices` for one rank's share of a global batch, independent of the world size.

    Row ``rows[j]`` sits at position ``positions[j]`` of the global batch (``batch_size`` rows) and
    gets that position's draws: every uniform draw is indexed by position (the tag-dropout draws
    of tag ``t`` of position ``p`` at ``t * batch_size + p``, a prefix of one seeded stream), so
    the shares of any number of ranks together make the choices of one process. The streamed path
    uses it (a rank never sees the other ranks' rows); the choices have the distribution of
    :func:`text_choices`, not its exact values.
    """
    if phase == "pretrain":
        return {"title": [data.raw_titles[i] for i in rows]}
    rng = np.random.default_rng([cfg.seed, PHASES.index(phase), salt, 2])
    cap_u, title_u, kind_u = rng.random(3 * batch_size).reshape(3, batch_size)
    pos = np.asarray(positions, dtype=np.int64)
    out: dict[str, Any] = {
        "caption": [data.captions[i][int(u * len(data.captions[i]))] for i, u in zip(rows, cap_u[pos])],
        "title": [data.titles[i][int(u * len(data.titles[i]))] for i, u in zip(rows, title_u[pos])],
    }
    if cfg.gen_kinds_per_video == 1:
        out["gen_kind"] = ["caption" if u < 0.5 else "title" for u in kind_u[pos]]
    if cfg.tag_dropout > 0:
        most = max((len(data.tags[i]) for i in rows), default=0)
        tag_u = rng.random(most * batch_size)
        out["tags"] = [
            [t for j, t in enumerate(data.tags[i]) if tag_u[j * batch_size + p] >= cfg.tag_dropout]
            for i, p in zip(rows, pos)
        ]
    return out


def make_batch(
    bundle: ALWIG, data: SplitData, rows: Sequence[int], texts: dict[str, Sequence[str]]
) -> dict[str, Any]:
    """Tensors of the network's ``forward`` for ``rows`` with the given texts per kind (and the
    ``gen_kind``/``tags`` choices of :func:`text_choices` when present)."""
    idx = torch.as_tensor(list(rows), dtype=torch.long)
    tags = texts.get("tags")
    tag_lists = list(tags) if tags is not None else [data.tags[i] for i in rows]
    batch: dict[str, Any] = {
        "feats": data.feats[idx].to(bundle.device),
        "frame_mask": data.mask[idx].to(bundle.device),
        "tag_ids": bundle.tag_tensor(tag_lists),
    }
    chars = bundle.tag_char_tensor(tag_lists)
    if chars is not None:
        batch["tag_chars"] = chars
    gen_kind = texts.get("gen_kind")
    for kind, items in texts.items():
        if kind in ("gen_kind", "tags"):
            continue
        items = list(items)
        batch[f"{kind}_text"] = bundle.text_tensor(items)
        batch[f"{kind}_key"] = bundle.key_tensor(items)
        if gen_kind is None:
            batch[f"{kind}_seq"] = bundle.seq_tensor(items, kind)
        else:
            pick = [i for i, k in enumerate(gen_kind) if k == kind]
            batch[f"{kind}_seq"] = bundle.seq_tensor([items[i] for i in pick] or [""], kind)[: len(pick)]
            batch[f"{kind}_gen_index"] = torch.tensor(pick, dtype=torch.long, device=bundle.device)
    return batch

"""What each RCG training step sees: the corpus, the data order (a seeded permutation per epoch), the
texts drawn for each video, the retrieved sentences and the network's input tensors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from create_bench.models.alwig.bundle import text_key
from create_bench.models.rcg.bundle import KINDS, RCG, Corpus
from create_bench.training.alwig.features import SplitData

#: Training stages in order (their index seeds each stage's data order).
STAGES = ("retriever", "generator")


def refs(data: SplitData, kind: str) -> list[list[str]]:
    """Each video's references of ``kind`` (titles or captions)."""
    return data.titles if kind == "title" else data.captions


def build_corpus(train: SplitData, pretrain: SplitData | None = None) -> dict[str, Corpus]:
    """The open book: the train split's titles (plus the pre-training split's raw titles when given)
    and captions, each sentence with the videos that own it."""
    titles = [(v, t) for v, ts in zip(train.vids, train.titles) for t in ts]
    if pretrain is not None:
        titles += [(v, t) for v, t in zip(pretrain.vids, pretrain.raw_titles)]
    captions = [(v, c) for v, cs in zip(train.vids, train.captions) for c in cs]
    return {"title": Corpus.build(titles), "caption": Corpus.build(captions)}


def trainable_rows(data: SplitData) -> list[int]:
    """Videos with at least one title and one caption."""
    return [i for i in range(len(data)) if data.titles[i] and data.captions[i]]


def epoch_batches(
    rows: Sequence[int], batch_size: int, seed: int, stage: str, epoch: int, world: int
) -> list[np.ndarray]:
    """Global batches of one epoch: a seeded permutation of ``rows`` cut into ``batch_size`` chunks,
    each cut to a multiple of the world size (every rank takes an equal share)."""
    rng = np.random.default_rng([seed, STAGES.index(stage), epoch])
    perm = np.asarray(rows)[rng.permutation(len(rows))]
    out = []
    for i in range(0, len(perm), batch_size):
        b = perm[i : i + batch_size]
        b = b[: len(b) - len(b) % world]
        if len(b):
            out.append(b)
    return out


def rank_share(rows: np.ndarray, rank: int, world: int) -> np.ndarray:
    """This rank's contiguous share of a global batch."""
    n = len(rows) // world
    return rows[rank * n : (rank + 1) * n]


def _drop_tags(tags: list[list[str]], p: float, rng: np.random.Generator) -> list[list[str]]:
    if p <= 0:
        return tags
    return [[t for t in ts if rng.random() >= p] for ts in tags]


def video_inputs(
    bundle: RCG, data: SplitData, rows: Sequence[int], tag_dropout: float, rng: np.random.Generator
) -> dict[str, Any]:
    """Frame features, mask and tag characters of ``rows``."""
    idx = list(rows)
    tags = _drop_tags([list(data.tags[i]) for i in idx], tag_dropout, rng)
    return {
        "feats": data.feats[idx].to(bundle.device),
        "frame_mask": data.mask[idx].to(bundle.device),
        "tag_chars": bundle.tag_tensor(tags),
    }


def draw_texts(data: SplitData, rows: Sequence[int], kind: str, rng: np.random.Generator) -> list[str]:
    """One reference of ``kind`` per row, drawn with ``rng``."""
    out = []
    for i in rows:
        texts = refs(data, kind)[i]
        out.append(texts[int(rng.integers(len(texts)))])
    return out


def retriever_batch(
    bundle: RCG, data: SplitData, rows: Sequence[int], seed: int, epoch: int, step: int
) -> dict[str, Any]:
    """Inputs of the contrastive loss: the videos and one title and one caption each."""
    rng = np.random.default_rng([seed, 0, epoch, step])
    batch = video_inputs(bundle, data, rows, bundle.cfg.tag_dropout, rng)
    for kind in KINDS:
        texts = draw_texts(data, rows, kind, rng)
        batch[f"{kind}_text"] = bundle.text_tensor(texts)
        batch[f"{kind}_key"] = torch.tensor(
            [text_key(t) for t in texts], dtype=torch.long, device=bundle.device
        )
    return batch


def generator_batch(
    bundle: RCG,
    data: SplitData,
    rows: Sequence[int],
    retrieved: dict[str, list[list[str]]],
    seed: int,
    epoch: int,
    step: int,
) -> dict[str, Any]:
    """Inputs of the generation loss: the videos, their retrieved sentences and one target per kind."""
    rng = np.random.default_rng([seed, 1, epoch, step])
    batch = video_inputs(bundle, data, rows, bundle.cfg.tag_dropout, rng)
    for kind in KINDS:
        batch[f"{kind}_seq"] = bundle.seq_tensor(draw_texts(data, rows, kind, rng), kind)
        batch[f"{kind}_sents"] = bundle.sent_tensor([retrieved[kind][i] for i in rows])
    return batch


@torch.no_grad()
def retrieve_split(bundle: RCG, data: SplitData, k: int, batch_size: int = 256) -> dict[str, list[list[str]]]:
    """Each video's ``k`` nearest corpus sentences per kind, never its own (all tags kept)."""
    out: dict[str, list[list[str]]] = {kind: [] for kind in KINDS}
    if k == 0:
        return {kind: [[] for _ in range(len(data))] for kind in KINDS}
    for i in range(0, len(data), batch_size):
        idx = list(range(i, min(i + batch_size, len(data))))
        video = bundle.video_embed(data.feats[idx], data.mask[idx], [data.tags[j] for j in idx])
        vids = [data.vids[j] for j in idx]
        for kind in KINDS:
            out[kind] += bundle.retrieve(video, kind, k, vids)
    return out

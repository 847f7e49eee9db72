"""RCG (Retrieve-Copy-Generate, open-book titling and captioning) behind the model protocol.

- ``rcg`` (:class:`RCGModel`): retrieval with the retriever's dual encoder (``encode_videos`` /
  ``encode_texts``); generation retrieves the ``k`` nearest training sentences of the asked kind and
  decodes with the copy-generate decoder. ``explain=FILE`` (a model arg) appends, per generated
  text, the retrieved sentences and the mean gate (vocabulary, then each pointer) as JSON lines.
- ``retrieved-title`` (:class:`RetrievedTitleModel`): the copy-only floor: the top-1 retrieved
  title (or caption) of the same checkpoint's retriever, emitted as is.

Both load a checkpoint written by ``create-bench train rcg`` (default
``checkpoints/rcg-<dataset directory name>``, the Makefile's ``RCG_CKPT``). The network is in
:mod:`.model`, decoding in :mod:`.decoding`, checkpoints in :mod:`.bundle`, the config in
:mod:`.config`; training is application code (``training/rcg/``), which this package never imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError, ModelError
from create_bench.models.base import BaseModel, ModelContext, ModelMeta, checkpoint_info

#: Where ``create-bench train rcg`` / ``make eval MODEL=rcg`` put a dataset's checkpoint.
CHECKPOINT_PATTERN = "checkpoints/rcg-{dataset}"
_DESCRIPTION = "RCG: retrieve-copy-generate (dual-encoder retriever + k-pointer copy-generate decoder)"
_FLOOR = "retrieved-title: the top-1 sentence of RCG's retriever from the training corpus, copied"


def default_checkpoint(data_dir: str | Path) -> Path:
    """The checkpoint a dataset's RCG is trained into and evaluated from by default."""
    name = Path(data_dir).name or Path(data_dir).resolve().name
    return Path(CHECKPOINT_PATTERN.format(dataset=name))


def _meta(name: str, description: str, ckpt: Path | None, params: int | None = None) -> ModelMeta:
    """Metadata from the checkpoint's config.json (the defaults' when there is none yet)."""
    from create_bench.models.alwig import frame_meta
    from create_bench.models.rcg.bundle import read_record
    from create_bench.models.rcg.config import RCGConfig

    info = checkpoint_info(ckpt, read_record, params)
    cfg = (
        RCGConfig.from_dict(info.config, source=str(ckpt / "config.json"))
        if info.config is not None and ckpt is not None
        else RCGConfig()
    )
    return frame_meta(cfg.frame_cfg(), info, ckpt, name=name, description=description, k=cfg.k)


class _RCGBase(BaseModel):
    """Checkpoint resolution, loading and per-batch video features shared by both models."""

    _name = "rcg"
    _description = _DESCRIPTION

    def __init__(self, checkpoint: str | None = None, device: str | None = None):
        self.checkpoint: Path | None = Path(checkpoint) if checkpoint is not None else None
        self._explicit = checkpoint is not None
        self.device = device
        self.meta = _meta(self._name, self._description, self.checkpoint)
        self.bundle: Any = None
        self._last: tuple[tuple[str, ...], Any, Any, Any] | None = None

    def bind_dataset(self, data_dir: Path) -> None:
        if not self._explicit:
            self.checkpoint = default_checkpoint(data_dir)
            self.meta = _meta(self._name, self._description, self.checkpoint)

    def setup(self, ctx: ModelContext) -> None:
        import torch

        from create_bench.models.rcg.bundle import RCG, read_record
        from create_bench.models.rcg.config import RCGConfig, check_dataset

        self.bind_dataset(ctx.data_dir)
        assert self.checkpoint is not None
        device = self.device or ctx.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"{self._name}: device {device!r} asked for, but torch sees no CUDA device")
        if not (self.checkpoint / "config.json").is_file():
            raise ModelError(
                f"{self._name}: no RCG checkpoint at {self.checkpoint}; train one with `create-bench train "
                f"rcg --data {ctx.data_dir} --out {self.checkpoint}` (or `make eval MODEL={self._name} "
                "DATA=...`), or pass checkpoint= in --model-args"
            )
        record = read_record(self.checkpoint)
        check_dataset(RCGConfig.from_dict(record["config"], source=str(self.checkpoint)), ctx.data_dir)
        self.bundle = RCG.load(self.checkpoint, device=device)
        params = sum(p.numel() for p in self.bundle.net.parameters())
        self.meta = _meta(self._name, self._description, self.checkpoint, params)
        self._last = None

    def _need(self) -> Any:
        if self.bundle is None:
            raise ModelError(f"{self._name}: setup() must be called before encoding or generating")
        return self.bundle

    def _video(self, batch: dict[str, Any]) -> tuple[Any, Any, Any, list[list[str]]]:
        """Frame features, mask and retriever embedding of a batch (cached for the batch's next call:
        the harness calls ``encode_videos`` and ``generate`` twice on the same batch)."""
        bundle = self._need()
        vids = tuple(str(v) for v in batch["vid"])
        tags = [list(t or []) for t in batch.get("tags") or [[] for _ in vids]]
        if self._last is None or self._last[0] != vids:
            feats, mask = bundle.frame_features(batch)
            self._last = (vids, feats, mask, bundle.video_embed(feats, mask, tags))
        return self._last[1], self._last[2], self._last[3], tags

    def _check_kind(self, kind: str) -> None:
        if kind not in ("title", "caption"):
            raise ModelError(f"{self._name}: unknown generation kind {kind!r} (title, caption)")


class RCGModel(_RCGBase):
    """The RCG baseline for the harness.

    Args:
        checkpoint: written by ``create-bench train rcg``; default ``checkpoints/rcg-<dataset>``.
        device: overrides the harness's device.
        beam_size, max_len, no_repeat_ngram, length_penalty: decoding (default: the checkpoint's config).
        batch_size: texts per forward pass of the text encoder.
        explain: a JSON Lines file to write (replaced at setup): per generated text its ``vid``,
            ``kind``, ``text``, the ``retrieved`` sentences and the mean ``gate`` (``vocab``, ``copy``
            per retrieved sentence).
    """

    meta = ModelMeta(name="rcg", description=_DESCRIPTION)

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str | None = None,
        beam_size: int | None = None,
        max_len: int | None = None,
        no_repeat_ngram: int | None = None,
        length_penalty: float | None = None,
        batch_size: int = 256,
        explain: str | None = None,
    ):
        for name, value in (("beam_size", beam_size), ("max_len", max_len), ("batch_size", batch_size)):
            if value is not None and value < 1:
                raise ConfigError(f"rcg: {name} must be >= 1, got {value}")
        if no_repeat_ngram is not None and no_repeat_ngram < 0:
            raise ConfigError(f"rcg: no_repeat_ngram must be >= 0, got {no_repeat_ngram}")
        super().__init__(checkpoint, device)
        self.decode = {
            "beam_size": beam_size,
            "max_len": max_len,
            "no_repeat_ngram": no_repeat_ngram,
            "length_penalty": length_penalty,
        }
        self.batch_size = batch_size
        self.explain = Path(explain) if explain else None

    def setup(self, ctx: ModelContext) -> None:
        super().setup(ctx)
        if self.explain is not None:
            self.explain.parent.mkdir(parents=True, exist_ok=True)
            self.explain.write_text("", encoding="utf-8")

    def encode_videos(self, batch: dict[str, Any]) -> Any:
        return self._video(batch)[2].float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> Any:
        return self._need().encode_texts(list(texts), batch_size=self.batch_size).numpy()

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        self._check_kind(kind)
        bundle = self._need()
        feats, mask, video, tags = self._video(batch)
        vids = [str(v) for v in batch["vid"]]
        k = bundle.cfg.k
        sents = bundle.retrieve(video, kind, k, vids) if k else [[] for _ in vids]
        texts, gates = bundle.generate(
            feats, mask, tags, kind, sents, bundle.decode_options(kind, **self.decode)
        )
        if self.explain is not None:
            with self.explain.open("a", encoding="utf-8") as f:
                for vid, text, sent, gate in zip(vids, texts, sents, gates):
                    rec = {"vid": vid, "kind": kind, "text": text, "retrieved": sent,
                           "gate": {"vocab": gate[0], "copy": gate[1:]}}  # fmt: skip
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        return [t if t else "[empty]" for t in texts]


class RetrievedTitleModel(_RCGBase):
    """The copy-only floor: the top-1 sentence of the kind asked for that RCG's retriever finds in the
    training corpus (``checkpoint``: an RCG checkpoint, default ``checkpoints/rcg-<dataset>``)."""

    _name = "retrieved-title"
    _description = _FLOOR
    meta = ModelMeta(name="retrieved-title", description=_FLOOR)

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        self._check_kind(kind)
        bundle = self._need()
        _, _, video, _ = self._video(batch)
        vids = [str(v) for v in batch["vid"]]
        return [s[0] if s else "[empty]" for s in bundle.retrieve(video, kind, 1, vids)]


__all__ = ["CHECKPOINT_PATTERN", "RCGModel", "RetrievedTitleModel", "default_checkpoint"]

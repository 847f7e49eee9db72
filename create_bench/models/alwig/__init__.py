"""ALWIG ("ALignment WIth Generation"), CREATE's baseline, behind the model protocol.

``ALWIGModel`` is what ``create-bench eval --model alwig`` builds: it loads a checkpoint written by
``create-bench train alwig`` and implements retrieval (``encode_videos``/``encode_texts``) and
generation (``generate``). The network is in :mod:`.model`, vocabularies in :mod:`.tokenizer`,
frozen frame encoders in :mod:`.encoders`, the config in :mod:`.config`; training lives in
:mod:`.train`, which this package never imports.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from create_bench.errors import ConfigError, ModelError
from create_bench.models.base import BaseModel, ModelContext, ModelMeta, checkpoint_info

#: Where ``create-bench train alwig`` / ``make eval`` put the checkpoint of a dataset directory
#: ``DIR``: ``checkpoints/alwig-<basename of DIR>`` (the Makefile's ``$(notdir $(DATA))``).
CHECKPOINT_PATTERN = "checkpoints/alwig-{dataset}"


def default_checkpoint(data_dir: str | Path) -> Path:
    """The checkpoint a dataset's ALWIG is trained into and evaluated from by default."""
    name = Path(data_dir).resolve().name if not Path(data_dir).name else Path(data_dir).name
    return Path(CHECKPOINT_PATTERN.format(dataset=name))


_DESCRIPTION = "ALWIG: tag-driven video-text alignment + GPT-2 generation (CREATE baseline)"
#: The name of a checkpoint with any extension on (config ``extensions:``): results, caches and the
#: board never show ALWIG plus additions (a lexical retriever, a copy mechanism, ...) as "alwig".
EXTENDED_NAME = "alwig+ext"


def model_name(cfg: Any) -> str:
    """``alwig`` for the paper's architecture, ``alwig+ext`` when any extension is on."""
    return EXTENDED_NAME if cfg.extensions.enabled else "alwig"


def _meta_from_checkpoint(ckpt: Path | None, params: int | None = None) -> ModelMeta:
    """Metadata from the checkpoint's config.json (defaults when there is none yet)."""
    from create_bench.models.alwig.bundle import read_record
    from create_bench.models.alwig.config import ALWIGConfig

    info = checkpoint_info(ckpt, read_record, params)
    cfg = (
        ALWIGConfig.from_dict(info.config, source=str(ckpt / "config.json"))
        if info.config is not None and ckpt is not None
        else ALWIGConfig()
    )
    extended = cfg.extensions.enabled
    return frame_meta(
        cfg,
        info,
        ckpt,
        name=model_name(cfg),
        description=_DESCRIPTION + (f" + extensions ({', '.join(extended)})" if extended else ""),
    )


def frame_meta(
    frame_cfg: Any, info: Any, ckpt: Path | None, *, name: str, description: str, **extra: Any
) -> ModelMeta:
    """The metadata of a model that reads video through an ALWIG config's frame fields
    (``encoder``, ``frames``, ``frame_size``, ``feature_set``): ALWIG's, and RCG's (``extra``
    goes into ``ModelMeta.extra`` after the encoder and the checkpoint)."""
    from create_bench.models.alwig.bundle import GEOMETRY_COLUMNS

    fcfg = frame_cfg
    inputs: Literal["frames", "features"] = "features" if fcfg.encoder == "features" else "frames"
    size = (int(fcfg.frame_size[0]), int(fcfg.frame_size[1])) if fcfg.frame_size else None
    return ModelMeta(
        name=name,
        version=info.version,
        description=description,
        params=info.params,
        training_data=info.training_data,
        license="Apache-2.0",
        inputs=inputs,
        frames=fcfg.frames,
        frame_size=size if inputs == "frames" else None,
        feature_set=fcfg.feature_set if inputs == "features" else None,
        create_configs=info.create_configs,
        # The fixed encoder un-stretches each video's frames to its display aspect ratio.
        columns=GEOMETRY_COLUMNS if fcfg.encoder == "fixed" else (),
        extra={"encoder": fcfg.encoder, "checkpoint": str(ckpt) if ckpt is not None else None, **extra},
    )


class ALWIGModel(BaseModel):
    """The ALWIG baseline for the harness.

    Args:
        checkpoint: checkpoint directory written by ``create-bench train alwig``; default: the
            evaluated dataset's, ``checkpoints/alwig-<dataset directory name>`` (resolved when the
            harness binds the model to its dataset, :meth:`bind_dataset`).
        device: overrides the harness's device (``cpu``, ``cuda``, ``cuda:N``).
        beam_size, max_len, no_repeat_ngram, length_penalty: decoding options (default: the
            checkpoint's config).
        batch_size: texts per forward pass of the text encoder.
    """

    meta = ModelMeta(name="alwig", description=_DESCRIPTION, frame_size=(64, 64))
    _CACHE_SIZE = 8192

    def __init__(
        self,
        checkpoint: str | None = None,
        device: str | None = None,
        beam_size: int | None = None,
        max_len: int | None = None,
        no_repeat_ngram: int | None = None,
        length_penalty: float | None = None,
        batch_size: int = 256,
    ):
        for name, value in (("beam_size", beam_size), ("max_len", max_len), ("batch_size", batch_size)):
            if value is not None and value < 1:
                raise ConfigError(f"alwig: {name} must be >= 1, got {value}")
        if no_repeat_ngram is not None and no_repeat_ngram < 0:
            raise ConfigError(f"alwig: no_repeat_ngram must be >= 0, got {no_repeat_ngram}")
        self.checkpoint: Path | None = Path(checkpoint) if checkpoint is not None else None
        self._explicit = checkpoint is not None
        self.device = device
        self.decode = {
            "beam_size": beam_size,
            "max_len": max_len,
            "no_repeat_ngram": no_repeat_ngram,
            "length_penalty": length_penalty,
        }
        self.batch_size = batch_size
        self.meta = _meta_from_checkpoint(self.checkpoint)
        self.bundle: Any = None
        self._aligned: OrderedDict[tuple, tuple[Any, Any]] = OrderedDict()

    def bind_dataset(self, data_dir: Path) -> None:
        """Resolve the default checkpoint from the dataset the harness evaluates (before it reads
        this model's metadata for caching and inputs)."""
        if not self._explicit:
            self.checkpoint = default_checkpoint(data_dir)
            self.meta = _meta_from_checkpoint(self.checkpoint)

    def setup(self, ctx: ModelContext) -> None:
        import torch

        from create_bench.models.alwig.bundle import ALWIG
        from create_bench.models.alwig.config import check_dataset

        self.bind_dataset(ctx.data_dir)
        assert self.checkpoint is not None  # bound above
        device = self.device or ctx.device
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"alwig: device {device!r} asked for, but torch sees no CUDA device")
        if not (self.checkpoint / "config.json").is_file():
            raise ModelError(
                f"alwig: no checkpoint at {self.checkpoint}; train one with `create-bench train alwig "
                f"--data {ctx.data_dir} --out {self.checkpoint}` (or `make eval MODEL=alwig DATA=...`), "
                "or pass checkpoint= in --model-args"
            )
        check_dataset(_meta_config(self.checkpoint), ctx.data_dir)
        self.bundle = ALWIG.load(self.checkpoint, device=device)
        self.bundle.net.eval()
        params = sum(p.numel() for p in self.bundle.net.parameters())
        self.meta = _meta_from_checkpoint(self.checkpoint, params)
        self._aligned.clear()

    def _need(self) -> Any:
        if self.bundle is None:
            raise ModelError("alwig: setup() must be called before encoding or generating")
        return self.bundle

    def _align(self, batch: dict[str, Any]) -> tuple[Any, Any]:
        """Alignment-module outputs of a batch; cached per video, since the harness calls
        ``encode_videos`` and ``generate`` (twice) on the same batch."""
        import torch

        bundle = self._need()
        vids = [str(v) for v in batch["vid"]]
        tags = _tag_lists(batch, len(vids))
        if len(tags) != len(vids):
            raise ModelError(f"alwig: batch has {len(vids)} vids but {len(tags)} tag lists")
        src = batch.get("frames") if "frames" in batch else batch.get("features")
        sums = (
            torch.as_tensor(src).flatten(1).double().sum(1).tolist() if src is not None else [0.0] * len(vids)
        )
        keys = [(v, tuple(t), s) for v, t, s in zip(vids, tags, sums)]
        if all(k in self._aligned for k in keys):
            hs, ms = zip(*(self._aligned[k] for k in keys))
            return torch.stack(hs).to(bundle.device), torch.stack(ms).to(bundle.device)
        feats, mask = bundle.frame_features(batch)
        hidden, hmask = bundle.align(feats, mask, tags)
        for k, h, m in zip(keys, hidden.cpu(), hmask.cpu()):
            self._aligned[k] = (h, m)
            self._aligned.move_to_end(k)
        while len(self._aligned) > self._CACHE_SIZE:
            self._aligned.popitem(last=False)
        return hidden, hmask

    def encode_videos(self, batch: dict[str, Any]) -> Any:
        import torch

        bundle = self._need()
        hidden, _ = self._align(batch)
        tags = _tag_lists(batch, len(hidden))
        with torch.no_grad():
            return bundle.video_embed(hidden, tags).float().cpu().numpy()

    def encode_texts(self, texts: list[str]) -> Any:
        return self._need().encode_texts(list(texts), batch_size=self.batch_size).numpy()

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        if kind not in ("title", "caption"):
            raise ModelError(f"alwig: unknown generation kind {kind!r} (title, caption)")
        bundle = self._need()
        hidden, mask = self._align(batch)
        tags = _tag_lists(batch, len(hidden))
        texts = bundle.generate(hidden, mask, kind, tags=tags, **self.decode)
        # The harness rejects empty generations; a model that decodes nothing says so visibly.
        return [t if t else "[empty]" for t in texts]


def _meta_config(ckpt: Path) -> Any:
    from create_bench.models.alwig.bundle import read_record
    from create_bench.models.alwig.config import ALWIGConfig

    return ALWIGConfig.from_dict(read_record(ckpt)["config"], source=str(ckpt / "config.json"))


def _tag_lists(batch: dict[str, Any], n: int) -> list[list[str]]:
    """Each video's tags from a model-protocol batch (no ``tags`` column: none)."""
    return [list(t or []) for t in batch.get("tags") or [[] for _ in range(n)]]


__all__ = ["CHECKPOINT_PATTERN", "ALWIGModel", "default_checkpoint"]

"""The model protocol (layer 3): what the runner calls and what a model declares about itself.

A batch handed to a model is a dict:

- ``vid``: list[str]
- ``frames``: uint8 tensor [B, T, H, W, 3] (when ``meta.inputs == "frames"``), or
- ``features``: float tensor [B, T, D] (when ``meta.inputs == "features"``)
- ``tags``: list[list[str]], ``raw_title``: list[str], ``category``: list[int]

Methods (a model implements any subset; the runner runs the tasks it can):

- ``encode_videos(batch) -> float32 [B, D]``
- ``encode_texts(texts: list[str]) -> float32 [N, D]``
- ``generate(batch, kind="title" | "caption") -> list[str]`` (one per video, in batch order)
"""

from __future__ import annotations

import difflib
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from create_bench.errors import ConfigError

TASKS = ("retrieval", "title", "caption")


@dataclass(frozen=True)
class ModelMeta:
    """Declarative model metadata; validated on creation (typos are rejected)."""

    name: str
    version: str = "0"
    description: str = ""
    params: int | None = None
    training_data: tuple[str, ...] = ()
    license: str = "unknown"
    #: What the model consumes from the loader.
    inputs: Literal["frames", "features", "none"] = "frames"
    #: Frame policy the model is evaluated with (the benchmark default unless the model needs another).
    frames: str = "uniform-center@8"
    #: Frame size (H, W) the loader resizes to at decode time, or None for stored size.
    frame_size: tuple[int, int] | None = None
    #: Which feature set (directory under the dataset's ``features/``) when inputs == "features".
    feature_set: str | None = None
    #: CREATE configs used for training or model selection (``()``: none), or None if unknown;
    #: ``create-bench eval`` writes it into the model card a submission needs.
    create_configs: tuple[str, ...] | None = None
    #: Row columns the model needs in its batches besides the protocol's (``vid``, ``tags``,
    #: ``raw_title``, ``category`` and its frames or features), e.g. ``("width", "height",
    #: "rotation")`` for a model that undoes a resize; the runner loads only what is declared.
    columns: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("ModelMeta.name must be a non-empty string")
        if self.inputs not in ("frames", "features", "none"):
            raise ConfigError(f"ModelMeta.inputs must be frames|features|none, got {self.inputs!r}")
        if self.inputs == "features" and not self.feature_set:
            raise ConfigError("ModelMeta.feature_set is required when inputs == 'features'")
        if self.params is not None and (not isinstance(self.params, int) or self.params < 0):
            raise ConfigError(f"ModelMeta.params must be a non-negative int, got {self.params!r}")
        if isinstance(self.columns, str) or not all(isinstance(c, str) and c for c in self.columns):
            raise ConfigError(f"ModelMeta.columns must be a tuple of column names, got {self.columns!r}")
        if self.create_configs is not None:
            from create_bench.types import CREATE_CONFIGS

            bad = [c for c in self.create_configs if c not in CREATE_CONFIGS]
            if bad or isinstance(self.create_configs, str):
                raise ConfigError(
                    f"ModelMeta.create_configs must be a tuple of {', '.join(CREATE_CONFIGS)}, "
                    f"got {self.create_configs!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "params": self.params,
            "training_data": list(self.training_data),
            "license": self.license,
            "inputs": self.inputs,
            "frames": self.frames,
            "frame_size": list(self.frame_size) if self.frame_size else None,
            "feature_set": self.feature_set,
        }
        if self.columns:  # only when declared: other models' cache keys stay what they were
            out["columns"] = list(self.columns)
        return out


def _check_meta_fields(init: Any) -> Any:
    """Wrap the dataclass ``__init__`` of :class:`ModelMeta` so that an unknown field (a typo such as
    ``input=``) or a missing/extra argument is a :class:`ConfigError` naming it, not a bare TypeError."""
    sig = inspect.signature(init)

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        known = [f.name for f in fields(ModelMeta)]
        for key in kwargs:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=2, cutoff=0.5)
                raise ConfigError(
                    f"ModelMeta has no field {key!r}"
                    + (f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else "")
                    + f" (fields: {', '.join(known)})"
                )
        try:
            sig.bind(self, *args, **kwargs)
        except TypeError as exc:
            raise ConfigError(f"ModelMeta: {exc}") from None
        init(self, *args, **kwargs)

    return __init__


ModelMeta.__init__ = _check_meta_fields(ModelMeta.__init__)  # type: ignore[method-assign]


@dataclass(frozen=True)
class CheckpointInfo:
    """What a trained model's checkpoint record says about it (:func:`checkpoint_info`)."""

    #: the record's ``config`` dict; None when there is no checkpoint (yet)
    config: dict[str, Any] | None
    #: ``<record version>-<first 12 hex of the weights' sha256>``, or ``untrained``: the weights'
    #: hash is in the version so the harness's prediction cache notices a retrain
    version: str = "untrained"
    training_data: tuple[str, ...] = ()
    #: trained on train, selected on validation; None (unknown) without a training record
    create_configs: tuple[str, ...] | None = None
    params: int | None = None


def checkpoint_info(
    ckpt: Path | None, read_record: Callable[[Path], dict[str, Any]], params: int | None = None
) -> CheckpointInfo:
    """Provenance of the checkpoint directory ``ckpt`` (``config.json`` read by the model's
    ``read_record``, weights in ``model.safetensors``); an empty :class:`CheckpointInfo` when it
    is None or has no readable record. ``params`` (counted from loaded weights) wins over the
    record's."""
    from create_bench.errors import ModelError
    from create_bench.fsutil import sha256_file

    if ckpt is None:
        return CheckpointInfo(config=None, params=params)
    try:
        record = read_record(ckpt)
    except ModelError:
        return CheckpointInfo(config=None, params=params)
    data = record.get("training", {}).get("data")
    return CheckpointInfo(
        config=record["config"],
        version=f"{record.get('version', 1)}-{sha256_file(ckpt / 'model.safetensors')[:12]}",
        training_data=(str(data),) if data else (),
        create_configs=("train", "validation"),
        params=params if params is not None else record.get("params"),
    )


@dataclass(frozen=True)
class ModelContext:
    """What the runner gives a model before evaluation (``BaseModel.setup``)."""

    data_dir: Path
    split: str
    device: str = "cpu"
    seed: int = 0
    cache_dir: Path | None = None


class BaseModel:
    """Base class for models. Subclasses set ``meta`` and override what they support."""

    meta: ModelMeta

    def bind_dataset(self, data_dir: Path) -> None:
        """Called first, before the harness reads ``meta`` (inputs, cache key): a model whose
        defaults depend on the evaluated dataset (ALWIG's per-dataset checkpoint) resolves them."""

    def setup(self, ctx: ModelContext) -> None:
        """Called once before evaluation: load weights, read training data, move to device."""

    def encode_videos(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def encode_texts(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def generate(self, batch: dict[str, Any], kind: str = "title") -> list[str]:
        raise NotImplementedError

    def supported_tasks(self) -> tuple[str, ...]:
        """Tasks whose methods the subclass overrides."""
        cls = type(self)
        tasks = []
        if (
            cls.encode_videos is not BaseModel.encode_videos
            and cls.encode_texts is not BaseModel.encode_texts
        ):
            tasks.append("retrieval")
        if cls.generate is not BaseModel.generate:
            tasks += ["title", "caption"]
        return tuple(tasks)

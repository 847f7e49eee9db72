"""RCG configuration: one frozen, validated dataclass, loaded from YAML with unknown-key rejection.

The video input is not RCG's own: ``frame_config`` names an ALWIG config (a shipped name or a YAML
path) whose frame fields (``encoder``, ``feature_set``, ``feature_dim``, ``frames``, ``num_frames``,
``frame_size``, ``encode_batch_size``, ``num_workers``) RCG reads, with ``frame_overrides`` on top,
so both models read the same frozen frame features from the one feature store.

Two configs ship (``create_bench/models/rcg/configs/``): ``default.yaml`` (equals
:class:`RCGConfig`'s defaults; the ALWIG paper config's precomputed CLIP features, for a real
release) and ``sample.yaml`` (CREATE-sample: ALWIG's sample frame encoder). As for ALWIG,
:func:`config_for_dataset` picks ``sample`` for CREATE-sample by its manifest, ``default`` otherwise.

>>> RCGConfig(k=5).k
5
>>> RCGConfig(d_model=30, num_heads=4)
Traceback (most recent call last):
...
create_bench.errors.ConfigError: RCG config: d_model (30) must be divisible by num_heads (4)
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"

#: The ALWIG config fields that describe the frozen frame input (read by RCG, not redefined).
FRAME_FIELDS = (
    "encoder",
    "encoder_path",
    "feature_set",
    "feature_dim",
    "frames",
    "num_frames",
    "frame_size",
    "encode_batch_size",
    "num_workers",
)


@dataclass(frozen=True)
class RCGConfig:
    """Every size, schedule and decoding option of Retrieve-Copy-Generate."""

    # -- video input: an ALWIG config's frame fields (see the module docstring) --
    frame_config: str = "paper"
    frame_overrides: dict[str, Any] = field(default_factory=dict)

    # -- shared sizes --
    d_model: int = 256
    num_heads: int = 4
    ffn_size: int = 1024
    dropout: float = 0.1
    #: Characters of a text the encoders read, and the longest generated text (EOS excluded).
    max_text_len: int = 40
    min_char_count: int = 1
    max_vocab: int = 21128
    #: Tags read as extra video tokens (each the mean of its characters' embeddings).
    use_tags: bool = True
    max_tags: int = 8
    max_tag_chars: int = 8
    #: Training only: drop each tag of a video with this probability.
    tag_dropout: float = 0.0

    # -- retriever: a video-text dual encoder trained with InfoNCE --
    video_layers: int = 2
    text_layers: int = 2
    embed_dim: int = 256
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    #: Also put the pre-training split's raw titles in the title corpus (``--pretrain``).
    corpus_raw_titles: bool = False

    # -- generator: copy-generate decoder --
    #: Retrieved sentences per video, one pointer each (0 = no retrieval: generator only).
    k: int = 3
    sentence_layers: int = 1
    decoder_layers: int = 2
    #: Initial bias of each pointer's gate logit (the vocabulary's is 0): > 0 starts the decoder
    #: copying, and lets it learn where to point before the vocabulary takes over.
    copy_bias: float = 0.0

    # -- optimisation (two stages: retriever, then generator with the retriever frozen) --
    seed: int = 0
    retriever_epochs: int = 20
    generator_epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    eval_every: int = 2

    # -- decoding --
    beam_size: int = 1
    no_repeat_ngram: int = 3
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)

    def replace(self, **changes: Any) -> RCGConfig:
        """A copy with ``changes`` applied (validated; unknown names rejected)."""
        return RCGConfig.from_dict({**self.to_dict(), **changes}, source="override")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["frame_overrides"] = dict(self.frame_overrides)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> RCGConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"RCG {source}: expected a mapping, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        for key in data:
            if key not in names:
                hint = difflib.get_close_matches(str(key), names, n=2, cutoff=0.6)
                raise ConfigError(
                    f"RCG {source}: unknown key {key!r}"
                    + (f"; did you mean {' or '.join(repr(h) for h in hint)}?" if hint else "")
                )
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source})") from None

    def frame_cfg(self) -> Any:
        """The ALWIG config whose frame fields describe RCG's input (``frame_config`` +
        ``frame_overrides``); its feature-store key is ALWIG's for the same frames and encoder."""
        from create_bench.models.alwig.config import load_config

        return load_config(self.frame_config, **self.frame_overrides)


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(f"RCG config: {msg}")


def _check_types(cfg: RCGConfig) -> None:
    hints = typing.get_type_hints(RCGConfig)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        want = hints[f.name]
        base = typing.get_origin(want) or want
        if isinstance(value, bool):
            ok = base is bool
        elif base is float and isinstance(value, int):
            object.__setattr__(cfg, f.name, float(value))
            ok = True
        else:
            ok = isinstance(value, base)
        if not ok:
            raise ConfigError(
                f"RCG config: {f.name} must be {getattr(base, '__name__', base)}, got {type(value).__name__} {value!r}"
            )


def _check_values(cfg: RCGConfig) -> None:
    need = _need
    for name in (
        "d_model", "num_heads", "ffn_size", "max_text_len", "min_char_count", "max_vocab", "max_tags",
        "max_tag_chars", "video_layers", "text_layers", "embed_dim", "decoder_layers", "batch_size",
        "eval_every", "beam_size", "sentence_layers",
    ):  # fmt: skip
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in ("k", "seed", "retriever_epochs", "generator_epochs", "no_repeat_ngram"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(
        cfg.d_model % cfg.num_heads == 0,
        f"d_model ({cfg.d_model}) must be divisible by num_heads ({cfg.num_heads})",
    )
    need(0.0 <= cfg.dropout < 1.0, f"dropout must be in [0, 1), got {cfg.dropout}")
    need(0.0 <= cfg.tag_dropout < 1.0, f"tag_dropout must be in [0, 1), got {cfg.tag_dropout}")
    need(0.0 < cfg.init_temperature < 1.0, f"init_temperature must be in (0, 1), got {cfg.init_temperature}")
    need(cfg.max_logit_scale >= 1.0 / cfg.init_temperature, "max_logit_scale must be >= 1 / init_temperature")
    need(cfg.lr > 0, f"lr must be > 0, got {cfg.lr}")
    need(cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}")
    need(0.0 <= cfg.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    need(cfg.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {cfg.grad_clip}")
    need(cfg.length_penalty >= 0, f"length_penalty must be >= 0, got {cfg.length_penalty}")


def load_config(path: str | Path | None = None, **overrides: Any) -> RCGConfig:
    """A YAML config (``None`` = ``configs/default.yaml``; a shipped name such as ``"sample"``),
    with ``overrides`` applied; the frame config it names is loaded and checked too."""
    if path is None:
        path = CONFIG_DIR / "default.yaml"
    elif not Path(path).suffix and (CONFIG_DIR / f"{path}.yaml").is_file():
        path = CONFIG_DIR / f"{path}.yaml"
    p = Path(path)
    if not p.is_file():
        shipped = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"RCG config file not found: {p} (shipped configs: {shipped})")
    import yaml

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse RCG config {p}: {exc}") from exc
    cfg = RCGConfig.from_dict({} if data is None else data, source=str(p))
    cfg = cfg.replace(**overrides) if overrides else cfg
    _check_frame_overrides(cfg)
    cfg.frame_cfg()
    return cfg


def _check_frame_overrides(cfg: RCGConfig) -> None:
    bad = [k for k in cfg.frame_overrides if k not in FRAME_FIELDS]
    if bad:
        raise ConfigError(f"RCG config: frame_overrides may set only {', '.join(FRAME_FIELDS)}, not {bad}")


def default_config_name(data_dir: str | Path) -> str:
    """``sample`` for CREATE-sample (by its manifest), ``default`` for any other dataset."""
    from create_bench.models.alwig.config import default_config_name as alwig_default

    return "sample" if alwig_default(data_dir) == "sample" else "default"


def config_for_dataset(data_dir: str | Path, path: str | Path | None = None, **overrides: Any) -> RCGConfig:
    """The config to train on ``data_dir`` (``path`` or the dataset's default), checked against it."""
    cfg = load_config(path if path is not None else default_config_name(data_dir), **overrides)
    check_dataset(cfg, data_dir)
    return cfg


def check_dataset(cfg: RCGConfig, data_dir: str | Path) -> None:
    """Refuse a config that cannot be right for ``data_dir`` (ALWIG's frame-encoder rule)."""
    from create_bench.models.alwig.config import check_dataset as alwig_check

    alwig_check(cfg.frame_cfg(), data_dir)

"""ALWIG configuration: one frozen, validated dataclass, loaded from YAML with unknown-key rejection.

Two configs ship with the package (``create_bench/models/alwig/configs/``):

- ``sample.yaml``: the CREATE-sample default (tiny model, trains in minutes on 2 CPU cores);
- ``paper.yaml``: a "paper-scale" config (ViT-B CLIP features, 12-layer GPT-2).

>>> cfg = ALWIGConfig(hidden_size=64, num_heads=4)
>>> cfg.replace(epochs=3).epochs
3
>>> ALWIGConfig(hidden_size=30, num_heads=4)
Traceback (most recent call last):
...
create_bench.errors.ConfigError: ALWIG config: hidden_size (30) must be divisible by num_heads (4)
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
ENCODERS = ("fixed", "features", "clip")


@dataclass(frozen=True)
class ALWIGConfig:
    """Every size, loss weight, schedule and decoding option of ALWIG.

    The defaults are the CREATE-sample config (``configs/sample.yaml`` repeats them).
    """

    # -- video input (a frozen encoder applied per sampled frame) --
    #: ``fixed`` (hand-made features, no download), ``features`` (precomputed, from the dataset's
    #: ``features/<feature_set>/``) or ``clip`` (a local CLIP checkpoint directory, ``encoder_path``).
    encoder: str = "fixed"
    encoder_path: str | None = None
    feature_set: str | None = None
    #: Per-frame feature width; required for ``features`` (checked against the data), derived otherwise.
    feature_dim: int | None = None
    #: Frame policy used for training and declared to the harness for evaluation.
    frames: str = "uniform-center@8"
    #: Maximum number of frames per video (frame positions 0..num_frames-1).
    num_frames: int = 8
    #: Frame size (H, W) the loader resizes to; None keeps the stored size (``features`` ignores it).
    frame_size: tuple[int, int] | None = (64, 64)
    #: Project each of the encoder's feature groups (the fixed encoder's colour histograms,
    #: thumbnail, edges, shape crop, frame difference, geometry, motion and shape descriptors)
    #: with its own linear map and LayerNorm, and sum them, instead of one linear map of the whole
    #: vector; a small group (19 shape descriptors beside 526 other dimensions) then counts as much
    #: as a large one. Precomputed and CLIP features are one group.
    frame_groups: bool = False

    # -- tags (token type 0) --
    use_tags: bool = True
    max_tags: int = 8
    min_tag_count: int = 1
    #: Unseen tags hash into this many "unknown tag" ids (1 = a single bucket).
    unk_tag_buckets: int = 1
    #: Training only: drop each tag of a video with this probability (0 = keep all).
    tag_dropout: float = 0.5

    # -- alignment module and text encoder --
    hidden_size: int = 128
    num_heads: int = 4
    ffn_size: int = 512
    align_layers: int = 2
    text_layers: int = 2
    dropout: float = 0.0
    #: Width of the joint video-text embedding space.
    embed_dim: int = 128
    #: Characters of a text the text encoder reads (after [CLS]).
    max_text_len: int = 40
    #: Hash buckets of character-bigram embeddings added to the text encoder's input (0 = off).
    text_bigram_buckets: int = 8192
    #: Add a bag-of-n-grams path (mean of the character + bigram embeddings) to the text embedding.
    text_bow: bool = False
    #: Add the mean of each tag's character (+ bigram) text embeddings to its tag token.
    tag_chars: bool = False
    #: Lexical channel: add to both embeddings one shared projection of the layer-normed mean
    #: character (+ bigram) embedding of the text, and of the video's tags (read from the tag
    #: strings, so a tag unseen in training counts too), so a tag word and the same word in a
    #: query match from the start.
    tag_lexical: bool = False
    #: Characters of each tag the lexical channel and the copy mechanism read.
    max_tag_chars: int = 8
    #: Weight each character in the lexical channel's means by its inverse document frequency in
    #: the training texts (as TF-IDF does), so a rare word (an object's name) counts for more than
    #: the words every template shares.
    lexical_idf: bool = False
    #: Weight w of the exact-match channel (0 = off): a fixed, unlearned IDF-weighted bag of the
    #: characters of the text and of the video's tags (tag strings, as the lexical channel reads
    #: them), hashed into ``exact_match_dims`` buckets and appended to both embeddings, so that the
    #: similarity is (1 - w) x the learned cosine + w x the cosine of the two bags. A rare word
    #: shared by a query and a tag then counts exactly, where the learned channels only come close.
    exact_match: float = 0.0
    exact_match_dims: int = 1024
    init_temperature: float = 0.07
    #: Upper bound of the learned logit scale 1/temperature (as in CLIP).
    max_logit_scale: float = 100.0

    # -- vocabulary (characters, built from the training corpus) --
    min_char_count: int = 1
    max_vocab: int = 8000

    # -- generator (GPT-2 with the alignment outputs as a prefix) --
    #: A local pretrained Chinese GPT-2 directory (BERT-style vocab.txt + GPT-2 weights); None = random init.
    gpt_path: str | None = None
    gpt_layers: int = 3
    gpt_heads: int = 4
    gpt_width: int = 128
    #: Longest generated / trained target, in characters (EOS excluded).
    max_gen_len: int = 32
    #: Also add the projected video embedding ([CLS] output) to every decoder input embedding.
    gen_video_bias: bool = False
    #: Add the mean GPT-2 embedding of each tag's characters to the tag positions of the decoder
    #: prefix, so the decoder can copy tag words (the output layer is tied to those embeddings).
    gen_tag_chars: bool = False
    #: Copy mechanism (pointer-generator): each step mixes the decoder's distribution with an
    #: attention over the characters of the video's tags, so a tag word (the object's name) can be
    #: copied into a title or caption even when too rare to have been learned.
    copy_tags: bool = False
    #: GPT-2 activation (transformers name) of a randomly initialised decoder.
    gpt_activation: str = "gelu_new"

    # -- losses --
    #: Generation targets per video and step: 2 = its title and its caption, 1 = one of the two
    #: at random (half the decoder cost, so a larger batch for the contrastive loss fits).
    gen_kinds_per_video: int = 2
    use_align: bool = True
    align_weight: float = 1.0
    gen_weight: float = 1.0
    title_weight: float = 1.0
    caption_weight: float = 1.0

    # -- optimisation --
    seed: int = 0
    epochs: int = 22
    #: Epochs on the ``pretrain`` split before fine-tuning (only with ``create-bench train --pretrain``).
    pretrain_epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    #: Learning rate of the GPT-2 decoder (pretrained or not); None = ``lr``.
    gpt_lr: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    #: Validate (model selection) every this many epochs, and after the last.
    eval_every: int = 2
    #: Model selection on validation: ``score`` (mean recall@1/5/10 and mean exp(-CE) of the
    #: references, higher is better) or ``loss`` (the training objective, lower is better).
    select_metric: str = "score"
    #: Batch size of the frozen encoder when features are precomputed.
    encode_batch_size: int = 32
    num_workers: int = 0

    # -- decoding --
    beam_size: int = 3
    #: Forbid repeating any n-gram of this size (0 = off).
    no_repeat_ngram: int = 3
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)

    @property
    def uses_char_idf(self) -> bool:
        """Whether the model keeps IDF weights of the characters (computed from the training texts)."""
        return (self.tag_lexical and self.lexical_idf) or self.exact_match > 0

    @property
    def uses_tag_chars(self) -> bool:
        """Whether the model reads the characters of the tag strings (lexical channel, copy
        mechanism, exact-match channel)."""
        return self.tag_lexical or self.copy_tags or self.exact_match > 0

    @property
    def embedding_width(self) -> int:
        """Width of the video and text embeddings (the exact-match bag is appended)."""
        return self.embed_dim + (self.exact_match_dims + 2 if self.exact_match > 0 else 0)

    def replace(self, **changes: Any) -> ALWIGConfig:
        """A copy with ``changes`` applied (validated; unknown names rejected)."""
        _reject_unknown(changes, "override")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["frame_size"] is not None:
            out["frame_size"] = list(out["frame_size"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ALWIGConfig:
        """Build from a mapping; unknown keys and wrong types raise :class:`ConfigError` naming ``source``."""
        if not isinstance(data, dict):
            raise ConfigError(f"ALWIG {source}: expected a mapping, got {type(data).__name__}")
        _reject_unknown(data, source)
        data = dict(data)
        if isinstance(data.get("frame_size"), list):
            data["frame_size"] = tuple(data["frame_size"])
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source})") from None


def field_names() -> list[str]:
    return [f.name for f in fields(ALWIGConfig)]


def _reject_unknown(data: dict[str, Any], source: str) -> None:
    names = field_names()
    for key in data:
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=2, cutoff=0.6)
            msg = f"ALWIG {source}: unknown key {key!r}"
            if hint:
                msg += f"; did you mean {' or '.join(repr(h) for h in hint)}?"
            raise ConfigError(msg)


def _allowed(annotation: Any) -> tuple[type, ...]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        out: tuple[type, ...] = ()
        for arg in typing.get_args(annotation):
            out += _allowed(arg)
        return out
    if annotation is type(None):
        return (type(None),)
    if origin is tuple:
        return (tuple,)
    return (annotation,)


def _check_types(cfg: ALWIGConfig) -> None:
    hints = typing.get_type_hints(ALWIGConfig)
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        allowed = _allowed(hints[f.name])
        if isinstance(value, bool):
            ok = bool in allowed
        elif isinstance(value, int) and float in allowed:
            ok = True
            object.__setattr__(cfg, f.name, float(value))
        else:
            ok = isinstance(value, allowed)
        if not ok:
            want = " | ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise ConfigError(f"ALWIG config: {f.name} must be {want}, got {type(value).__name__} {value!r}")
    if cfg.frame_size is not None and (
        len(cfg.frame_size) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in cfg.frame_size)
    ):
        raise ConfigError(
            f"ALWIG config: frame_size must be [H, W] positive ints or null, got {cfg.frame_size!r}"
        )


def _check_values(cfg: ALWIGConfig) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(f"ALWIG config: {msg}")

    need(
        cfg.select_metric in ("score", "loss"),
        f"select_metric must be score or loss, got {cfg.select_metric!r}",
    )
    need(cfg.encoder in ENCODERS, f"encoder must be one of {', '.join(ENCODERS)}, got {cfg.encoder!r}")
    if cfg.encoder == "features":
        need(bool(cfg.feature_set), "encoder 'features' needs feature_set")
        need(cfg.feature_dim is not None, "encoder 'features' needs feature_dim")
    if cfg.encoder == "clip":
        need(bool(cfg.encoder_path), "encoder 'clip' needs encoder_path (a local CLIP directory)")
    if cfg.feature_dim is not None:
        need(cfg.feature_dim > 0, f"feature_dim must be > 0, got {cfg.feature_dim}")
    for name in (
        "num_frames",
        "max_tags",
        "unk_tag_buckets",
        "hidden_size",
        "num_heads",
        "ffn_size",
        "align_layers",
        "text_layers",
        "embed_dim",
        "max_text_len",
        "gpt_layers",
        "gpt_heads",
        "gpt_width",
        "max_gen_len",
        "batch_size",
        "eval_every",
        "encode_batch_size",
        "beam_size",
        "min_char_count",
        "min_tag_count",
        "max_vocab",
        "max_tag_chars",
        "exact_match_dims",
    ):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "epochs",
        "pretrain_epochs",
        "num_workers",
        "no_repeat_ngram",
        "seed",
        "text_bigram_buckets",
    ):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(
        cfg.hidden_size % cfg.num_heads == 0,
        f"hidden_size ({cfg.hidden_size}) must be divisible by num_heads ({cfg.num_heads})",
    )
    need(0.0 <= cfg.exact_match < 1.0, f"exact_match must be in [0, 1), got {cfg.exact_match}")
    need(
        cfg.gpt_width % cfg.gpt_heads == 0,
        f"gpt_width ({cfg.gpt_width}) must be divisible by gpt_heads ({cfg.gpt_heads})",
    )
    need(0.0 <= cfg.dropout < 1.0, f"dropout must be in [0, 1), got {cfg.dropout}")
    need(0.0 <= cfg.tag_dropout < 1.0, f"tag_dropout must be in [0, 1), got {cfg.tag_dropout}")
    need(0.0 < cfg.init_temperature < 1.0, f"init_temperature must be in (0, 1), got {cfg.init_temperature}")
    need(cfg.max_logit_scale >= 1.0 / cfg.init_temperature, "max_logit_scale must be >= 1 / init_temperature")
    need(cfg.lr > 0, f"lr must be > 0, got {cfg.lr}")
    need(cfg.gpt_lr is None or cfg.gpt_lr > 0, f"gpt_lr must be > 0, got {cfg.gpt_lr}")
    need(cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}")
    need(0.0 <= cfg.warmup_ratio < 1.0, f"warmup_ratio must be in [0, 1), got {cfg.warmup_ratio}")
    need(cfg.grad_clip >= 0, f"grad_clip must be >= 0 (0 = off), got {cfg.grad_clip}")
    for name in ("align_weight", "gen_weight", "title_weight", "caption_weight"):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(cfg.align_weight > 0 or cfg.gen_weight > 0, "align_weight and gen_weight cannot both be 0")
    need(
        cfg.gen_kinds_per_video in (1, 2),
        f"gen_kinds_per_video must be 1 or 2, got {cfg.gen_kinds_per_video}",
    )
    need(cfg.length_penalty >= 0, f"length_penalty must be >= 0, got {cfg.length_penalty}")


def load_config(path: str | Path | None = None, **overrides: Any) -> ALWIGConfig:
    """Load a YAML config (``None`` = the CREATE-sample default) and apply ``overrides``.

    ``path`` may also be the name of a shipped config (``"sample"``, ``"paper"``).

    Raises:
        ConfigError: missing/unparsable file, unknown keys ("did you mean"), wrong types or values.
    """
    if path is None:
        path = CONFIG_DIR / "sample.yaml"
    elif not Path(path).suffix and (CONFIG_DIR / f"{path}.yaml").is_file():
        path = CONFIG_DIR / f"{path}.yaml"
    p = Path(path)
    if not p.is_file():
        shipped = ", ".join(sorted(x.stem for x in CONFIG_DIR.glob("*.yaml")))
        raise ConfigError(f"ALWIG config file not found: {p} (shipped configs: {shipped})")
    import yaml

    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"cannot parse ALWIG config {p}: {exc}") from exc
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"ALWIG config {p} must be a mapping, got {type(data).__name__}")
    _reject_unknown(overrides, "override")
    return ALWIGConfig.from_dict({**data, **overrides}, source=str(p))

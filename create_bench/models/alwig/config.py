"""ALWIG configuration: one frozen, validated dataclass, loaded from YAML with unknown-key rejection.

Two configs ship with the package (``create_bench/models/alwig/configs/``):

- ``paper.yaml``: the paper's model (ViT-B CLIP features, 12-layer GPT-2); it lists every key and
  equals the defaults of :class:`ALWIGConfig`, whose additions (:class:`Extensions`) are all off;
- ``sample.yaml``: the CREATE-sample model (tiny, trains in minutes on 2 CPU cores, ``fixed``
  frame encoder, the extensions of its ``extensions:`` block on).

:func:`config_for_dataset` picks ``sample`` for CREATE-sample and ``paper`` for anything else.

>>> cfg = ALWIGConfig(hidden_size=64, num_heads=4)
>>> cfg.replace(epochs=3).epochs
3
>>> cfg.replace(copy_tags=True).extensions.copy_tags  # flat extension keys go into the block
True
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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError

CONFIG_DIR = Path(__file__).parent / "configs"
ENCODERS = ("fixed", "features", "clip")


@dataclass(frozen=True)
class Extensions:
    """Additions to ALWIG beyond the paper's description, each off by default.

    They were developed on CREATE-sample (``configs/sample.yaml`` switches them on in its
    ``extensions:`` block) and are implemented as modules in :mod:`.extensions`; the package
    README says what each one measured. ``configs/paper.yaml`` lists them all, off.
    """

    #: Project each of the encoder's feature groups (the fixed encoder's colour histograms,
    #: thumbnail, edges, shape crop, frame difference, geometry, motion and shape descriptors)
    #: with its own linear map and LayerNorm, and sum them, instead of one linear map of the whole
    #: vector; a small group (19 shape descriptors beside 526 other dimensions) then counts as much
    #: as a large one. Precomputed and CLIP features are one group.
    frame_groups: bool = False
    #: Hash buckets of character-bigram embeddings added to the text encoder's input (0 = off).
    text_bigram_buckets: int = 0
    #: Add a bag-of-n-grams path (mean of the character + bigram embeddings) to the text embedding.
    text_bow: bool = False
    #: Add the mean of each tag's character (+ bigram) text embeddings to its tag token.
    tag_chars: bool = False
    #: Lexical channel: add to both embeddings one shared projection of the layer-normed mean
    #: character (+ bigram) embedding of the text, and of the video's tags (read from the tag
    #: strings, so a tag unseen in training counts too), so a tag word and the same word in a
    #: query match from the start.
    tag_lexical: bool = False
    #: Characters of each tag the lexical channel, the exact-match channel and the copy mechanism read.
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
    #: Also add the projected video embedding ([CLS] output) to every decoder input embedding.
    gen_video_bias: bool = False
    #: Add the mean GPT-2 embedding of each tag's characters to the tag positions of the decoder
    #: prefix, so the decoder can copy tag words (the output layer is tied to those embeddings).
    gen_tag_chars: bool = False
    #: Copy mechanism (pointer-generator): each step mixes the decoder's distribution with an
    #: attention over the characters of the video's tags, so a tag word (the object's name) can be
    #: copied into a title or caption even when too rare to have been learned.
    copy_tags: bool = False

    def __post_init__(self) -> None:
        _check_types(self)
        need = _need
        for name in ("max_tag_chars", "exact_match_dims"):
            need(getattr(self, name) >= 1, f"extensions.{name} must be >= 1, got {getattr(self, name)}")
        need(
            self.text_bigram_buckets >= 0,
            f"extensions.text_bigram_buckets must be >= 0, got {self.text_bigram_buckets}",
        )
        need(
            0.0 <= self.exact_match < 1.0, f"extensions.exact_match must be in [0, 1), got {self.exact_match}"
        )

    @property
    def enabled(self) -> list[str]:
        """Names of the extensions switched on (sizes such as ``max_tag_chars`` are not counted)."""
        return [
            f.name for f in fields(self) if f.name not in _EXT_SIZES and getattr(self, f.name) != f.default
        ]


#: Extension fields that size an extension rather than switch one on.
_EXT_SIZES = ("max_tag_chars", "exact_match_dims")


@dataclass(frozen=True)
class ALWIGConfig:
    """Every size, loss weight, schedule and decoding option of ALWIG.

    The defaults are the paper's model (``configs/paper.yaml`` repeats every one of them, and a
    test checks it): frozen CLIP ViT-B features precomputed by the release, a Transformer alignment
    module over [tags; frames], a character-level text encoder and a 12-layer GPT-2, with every
    addition of :class:`Extensions` off. ``configs/sample.yaml`` is the small CREATE-sample model.
    """

    # -- video input (a frozen encoder applied per sampled frame) --
    #: ``fixed`` (hand-made features modelled on CREATE-sample, no download; refused on any other
    #: dataset), ``features`` (precomputed, from the dataset's ``features/<feature_set>/``) or
    #: ``clip`` (a local CLIP checkpoint directory, ``encoder_path``).
    encoder: str = "features"
    encoder_path: str | None = None
    feature_set: str | None = "clip"
    #: Per-frame feature width; required for ``features`` (checked against the data), derived otherwise.
    feature_dim: int | None = 512
    #: Frame policy used for training and declared to the harness for evaluation.
    frames: str = "uniform-center@8"
    #: Maximum number of frames per video (frame positions 0..num_frames-1).
    num_frames: int = 16
    #: Frame size (H, W) the loader resizes to; None keeps the stored size (``features`` ignores it).
    frame_size: tuple[int, int] | None = None

    # -- tags (token type 0) --
    use_tags: bool = True
    max_tags: int = 16
    min_tag_count: int = 2
    #: Unseen tags hash into this many "unknown tag" ids (1 = a single bucket).
    unk_tag_buckets: int = 64
    #: Training only: drop each tag of a video with this probability (0 = keep all; not in the paper).
    tag_dropout: float = 0.0

    # -- alignment module and text encoder --
    hidden_size: int = 768
    num_heads: int = 12
    ffn_size: int = 3072
    align_layers: int = 4
    text_layers: int = 4
    dropout: float = 0.1
    #: Width of the joint video-text embedding space.
    embed_dim: int = 512
    #: Characters of a text the text encoder reads (after [CLS]).
    max_text_len: int = 64
    init_temperature: float = 0.07
    #: Upper bound of the learned logit scale 1/temperature (as in CLIP).
    max_logit_scale: float = 100.0

    # -- vocabulary (characters, built from the training corpus) --
    min_char_count: int = 2
    max_vocab: int = 21128

    # -- generator (GPT-2 with the alignment outputs as a prefix) --
    #: A local pretrained Chinese GPT-2 directory (BERT-style vocab.txt + GPT-2 weights); None = random init.
    gpt_path: str | None = None
    gpt_layers: int = 12
    gpt_heads: int = 12
    gpt_width: int = 768
    #: Longest generated / trained target, in characters (EOS excluded).
    max_gen_len: int = 40
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
    epochs: int = 10
    #: Epochs on the ``pretrain`` split before fine-tuning (only with ``create-bench train --pretrain``).
    pretrain_epochs: int = 2
    batch_size: int = 256
    lr: float = 1e-4
    #: Learning rate of the GPT-2 decoder (pretrained or not); None = ``lr``.
    gpt_lr: float | None = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    grad_clip: float = 1.0
    #: Validate (model selection) every this many epochs, and after the last.
    eval_every: int = 1
    #: Model selection on validation: ``score`` (mean recall@1/5/10 and mean exp(-CE) of the
    #: references, higher is better) or ``loss`` (the training objective, lower is better).
    select_metric: str = "score"
    #: Batch size of the frozen encoder when features are precomputed.
    encode_batch_size: int = 64
    num_workers: int = 8

    # -- decoding --
    beam_size: int = 3
    #: Forbid repeating any n-gram of this size (0 = off).
    no_repeat_ngram: int = 3
    length_penalty: float = 1.0

    # -- additions beyond the paper (all off here; see Extensions) --
    extensions: Extensions = field(default_factory=Extensions)

    def __post_init__(self) -> None:
        _check_types(self)
        _check_values(self)

    @property
    def ext(self) -> Extensions:
        """Short for :attr:`extensions`."""
        return self.extensions

    @property
    def uses_char_idf(self) -> bool:
        """Whether the model keeps IDF weights of the characters (computed from the training texts)."""
        e = self.extensions
        return (e.tag_lexical and e.lexical_idf) or e.exact_match > 0

    @property
    def uses_tag_chars(self) -> bool:
        """Whether the model reads the characters of the tag strings (lexical channel, copy
        mechanism, exact-match channel)."""
        e = self.extensions
        return e.tag_lexical or e.copy_tags or e.exact_match > 0

    @property
    def embedding_width(self) -> int:
        """Width of the video and text embeddings (the exact-match bag is appended)."""
        e = self.extensions
        return self.embed_dim + (e.exact_match_dims + 2 if e.exact_match > 0 else 0)

    def replace(self, **changes: Any) -> ALWIGConfig:
        """A copy with ``changes`` applied (validated; unknown names rejected). Extension fields
        may be given flat (``copy_tags=True``) or as ``extensions={...}``."""
        data = self.to_dict()
        block = data.pop("extensions")
        changes = _fold_extensions(changes, "override", base=block)
        return ALWIGConfig.from_dict({**data, **changes}, source="override")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        if out["frame_size"] is not None:
            out["frame_size"] = list(out["frame_size"])
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> ALWIGConfig:
        """Build from a mapping; unknown keys and wrong types raise :class:`ConfigError` naming ``source``.

        Extension fields go in an ``extensions:`` mapping; the flat form of configs and checkpoints
        written before the block existed (``copy_tags: true`` at the top level) is read into it.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"ALWIG {source}: expected a mapping, got {type(data).__name__}")
        data = _fold_extensions(data, source)
        _reject_unknown(data, source)
        if isinstance(data.get("frame_size"), list):
            data["frame_size"] = tuple(data["frame_size"])
        try:
            data["extensions"] = Extensions(**data["extensions"])
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (in {source})") from None


def field_names() -> list[str]:
    """The top-level config keys (``extensions`` included)."""
    return [f.name for f in fields(ALWIGConfig)]


def extension_names() -> list[str]:
    """The keys of the ``extensions:`` block."""
    return [f.name for f in fields(Extensions)]


def _fold_extensions(data: dict[str, Any], source: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """``data`` with its ``extensions`` block (a mapping or :class:`Extensions`) merged over
    ``base`` and any flat extension keys (the pre-block layout) moved into it; a key given both
    ways with different values is an error."""
    data = dict(data)
    block = data.pop("extensions", None)
    if isinstance(block, Extensions):
        block = dataclasses.asdict(block)
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise ConfigError(f"ALWIG {source}: extensions must be a mapping, got {type(block).__name__}")
    _reject_unknown(block, source, extension_names(), "extensions.")
    merged = {**(base or {}), **block}
    for key in extension_names():
        if key in data:
            value = data.pop(key)
            if key in block and block[key] != value:
                raise ConfigError(
                    f"ALWIG {source}: {key} given both flat ({value!r}) and in extensions ({block[key]!r})"
                )
            merged[key] = value
    data["extensions"] = merged
    return data


def _reject_unknown(
    data: dict[str, Any], source: str, names: list[str] | None = None, prefix: str = ""
) -> None:
    names = names if names is not None else field_names() + extension_names()
    for key in data:
        if key not in names:
            hint = difflib.get_close_matches(str(key), names, n=2, cutoff=0.6)
            msg = f"ALWIG {source}: unknown key {(prefix + str(key))!r}"
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


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(f"ALWIG config: {msg}")


def _check_types(cfg: ALWIGConfig | Extensions) -> None:
    hints = typing.get_type_hints(type(cfg))
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
    if (
        isinstance(cfg, ALWIGConfig)
        and cfg.frame_size is not None
        and (
            len(cfg.frame_size) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in cfg.frame_size)
        )
    ):
        raise ConfigError(
            f"ALWIG config: frame_size must be [H, W] positive ints or null, got {cfg.frame_size!r}"
        )


def _check_values(cfg: ALWIGConfig) -> None:
    need = _need
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
    ):
        need(getattr(cfg, name) >= 1, f"{name} must be >= 1, got {getattr(cfg, name)}")
    for name in (
        "epochs",
        "pretrain_epochs",
        "num_workers",
        "no_repeat_ngram",
        "seed",
    ):
        need(getattr(cfg, name) >= 0, f"{name} must be >= 0, got {getattr(cfg, name)}")
    need(
        cfg.hidden_size % cfg.num_heads == 0,
        f"hidden_size ({cfg.hidden_size}) must be divisible by num_heads ({cfg.num_heads})",
    )
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
    """Load a YAML config (``None`` = the paper's model, ``configs/paper.yaml``, which equals
    ``ALWIGConfig()``) and apply ``overrides`` (extension fields flat or as ``extensions=``).

    ``path`` may also be the name of a shipped config (``"sample"``, ``"paper"``). To pick the
    config that belongs to a dataset, see :func:`config_for_dataset`.

    Raises:
        ConfigError: missing/unparsable file, unknown keys ("did you mean"), wrong types or values.
    """
    if path is None:
        path = CONFIG_DIR / "paper.yaml"
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
    base = ALWIGConfig.from_dict(data, source=str(p))
    return base.replace(**overrides) if overrides else base


# ------------------------------------------------------------------------- config <-> dataset
#: The generator name CREATE-sample's manifest carries (``create-bench sample``).
SAMPLE_GENERATOR = "create-sample"


def dataset_generator(data_dir: str | Path) -> str | None:
    """The generator/importer name in a dataset's ``manifest.json`` (None: no readable manifest)."""
    import json

    path = Path(data_dir) / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    gen = manifest.get("generator") if isinstance(manifest, dict) else None
    name = gen.get("name") if isinstance(gen, dict) else None
    return str(name) if name is not None else None


def default_config_name(data_dir: str | Path) -> str:
    """The shipped config a dataset trains with when none is given: ``sample`` for CREATE-sample
    (its manifest's generator is ``create-sample``), ``paper`` for anything else."""
    return "sample" if dataset_generator(data_dir) == SAMPLE_GENERATOR else "paper"


def config_for_dataset(data_dir: str | Path, path: str | Path | None = None, **overrides: Any) -> ALWIGConfig:
    """The config to train on ``data_dir``: ``path`` if given, else :func:`default_config_name`'s;
    checked against the dataset with :func:`check_dataset`."""
    cfg = load_config(path if path is not None else default_config_name(data_dir), **overrides)
    check_dataset(cfg, data_dir)
    return cfg


def check_dataset(cfg: ALWIGConfig, data_dir: str | Path) -> None:
    """Refuse a config that cannot be right for ``data_dir``.

    The ``fixed`` encoder's features (shape descriptors, motion search) are modelled on how the
    CREATE-sample generator draws its objects; on any other dataset (real video) they would
    measure the generator's assumptions, not the video, so it runs on CREATE-sample only.
    """
    if cfg.encoder == "fixed":
        gen = dataset_generator(data_dir)
        if gen != SAMPLE_GENERATOR:
            raise ConfigError(
                f"ALWIG encoder 'fixed' is modelled on CREATE-sample's generator and runs only on "
                f"CREATE-sample, but {data_dir} was made by {gen or 'an unknown generator'!s} "
                "(manifest.json generator.name); use encoder 'features' (the paper config, "
                "--config paper) or 'clip'"
            )

"""The loader's options and its pass report (layer 4): :class:`LoaderOptions` (one frozen object,
checked and normalised on creation), :class:`LoaderConfig` (the options plus split and batch size),
:class:`LoaderReport` / :class:`SkippedVideo`, and the argument handling of
:func:`create_bench.loader.make_loader` (option names vs ``DataLoader`` pass-through arguments).

Split out of :mod:`create_bench.loader`, which re-exports the public names.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from create_bench.errors import ConfigError
from create_bench.video.sampling import FramePolicy, parse_policy

DEFAULT_COLUMNS = ("tags", "raw_title", "category")


TEXT_COLUMNS = ("titles", "captions")


#: Default per-video decode timeout (seconds) of the loader.
DEFAULT_TIMEOUT = 60.0


#: Default frame size ``(H, W)`` of :func:`make_loader` (see "Size" in the module doc).
DEFAULT_SIZE = (224, 224)


@dataclass(frozen=True)
class LoaderOptions:
    """What a loader yields and how it decodes (one frozen object; checked and normalised on
    creation). :func:`make_loader` takes one, or the same names as keyword arguments.

    Attributes:
        frames: the frame policy (``uniform-center@8`` default; see :mod:`create_bench.video.sampling`).
        size: resize at decode time to ``(H, W)`` (int: square); default :data:`DEFAULT_SIZE`
            (224 x 224), so videos of any stored size share a batch. None keeps each video's stored
            size (then a batch of videos of different sizes raises ConfigError: use
            ``batch_size=1``). Ignored with ``features``.
        mean, std: when given (1 or 3 values), frames become normalised ``float32 [B, T, 3, H, W]``.
        columns: row columns to pass through (``vid`` always comes).
        texts: also pass ``titles`` and ``captions``.
        features: a feature set under ``features/``: yields ``features`` instead of decoding frames.
        backend, ctx, num_threads: decoder settings (:func:`create_bench.video.decoding.decode`).
        on_error: ``"skip"`` (count and report) or ``"fail"`` (raise VideoDecodeError naming the vid).
        timeout: seconds per video in a killable decode subprocess; None decodes in-process,
            where a hang cannot be interrupted (see "Hangs" in the module doc).
        shuffle_seed: shuffle the order (by row group, then within) with this seed; None keeps it.
        rank, world_size: this process's share; default from ``torch.distributed`` when initialised.
        progress: show a tqdm bar of videos.
        vids: only these videos (others are passed over before decoding); None: all.
    """

    frames: str = "uniform-center@8"
    #: After creation: ``(H, W)`` or None.
    size: int | Sequence[int] | None = DEFAULT_SIZE
    #: After creation: three floats or None.
    mean: float | Sequence[float] | None = None
    std: float | Sequence[float] | None = None
    #: After creation: a tuple.
    columns: Sequence[str] = DEFAULT_COLUMNS
    texts: bool = False
    features: str | None = None
    backend: str = "decord"
    ctx: str = "cpu"
    num_threads: int = 0
    on_error: str = "skip"
    timeout: float | None = DEFAULT_TIMEOUT
    shuffle_seed: int | None = None
    rank: int | None = None
    world_size: int | None = None
    progress: bool = False
    #: After creation: a frozenset or None.
    vids: Collection[str] | None = None

    def __post_init__(self) -> None:
        from create_bench.video.checks import check_backend, normalize_size, parse_ctx

        if self.on_error not in ("skip", "fail"):
            raise ConfigError(f"on_error must be 'skip' or 'fail', got {self.on_error!r}")
        check_backend(self.backend)
        t = self.timeout
        if t is not None and not (isinstance(t, (int, float)) and t > 0):
            raise ConfigError(f"timeout must be a positive number of seconds or None, got {t!r}")
        if (self.rank is None) != (self.world_size is None):
            raise ConfigError("give both rank and world_size, or neither")
        parse_ctx(self.ctx)
        parse_policy(self.frames)
        columns = (self.columns,) if isinstance(self.columns, str) else self.columns
        normalised = {
            "size": normalize_size(self.size),
            "mean": _triple(self.mean),
            "std": _triple(self.std),
            "columns": tuple(columns),
            "texts": bool(self.texts),
            "num_threads": int(self.num_threads),
            "timeout": None if t is None else float(t),
            "vids": None if self.vids is None else frozenset(str(v) for v in self.vids),
        }
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def policy(self) -> FramePolicy:
        return parse_policy(self.frames)


def _triple(x: Any) -> tuple[float, float, float] | None:
    if x is None:
        return None
    vals = [float(v) for v in (x if isinstance(x, (list, tuple)) else [x])]
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3:
        raise ConfigError(f"mean/std take 1 or 3 values, got {x!r}")
    return (vals[0], vals[1], vals[2])


@dataclass(frozen=True, kw_only=True)
class LoaderConfig(LoaderOptions):
    """Everything that decides what a loader yields: the options, the split and the batch size
    (built by :func:`make_loader`)."""

    data_dir: Path
    split: str
    batch_size: int = 8


@dataclass(frozen=True)
class SkippedVideo:
    vid: str
    reason: str


@dataclass
class LoaderReport:
    """What one pass of a loader did: videos yielded, videos skipped (and why), time taken."""

    split: str
    frames: str
    videos: int = 0
    skipped: list[SkippedVideo] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False

    @property
    def num_skipped(self) -> int:
        return len(self.skipped)

    def summary(self, max_listed: int = 20) -> str:
        state = "" if self.complete else " (pass not finished)"
        head = (
            f"loader {self.split} [{self.frames}]: {self.videos} videos in {self.seconds:.1f} s, "
            f"{self.num_skipped} skipped{state}"
        )
        lines = [head] + [f"  skipped {s.vid}: {s.reason}" for s in self.skipped[:max_listed]]
        if self.num_skipped > max_listed:
            lines.append(f"  ... and {self.num_skipped - max_listed} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.split,
            "frames": self.frames,
            "videos": self.videos,
            "skipped": [{"vid": s.vid, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
        }


def _option_values(opts: LoaderOptions) -> dict[str, Any]:
    return {f.name: getattr(opts, f.name) for f in fields(LoaderOptions)}

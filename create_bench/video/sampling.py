"""Frame-sampling policies (layer 1, pure): which frames of a video a benchmark looks at.

Sampling belongs to the benchmark protocol, not to a model: every policy has a name, a parameter
and a version, and its signature (``uniform-center@8/v1``) goes into the score signature. Indices
are computed from the dataset's stored ``num_frames`` (frames that really decode), never from the
count a container claims.

Policies (``name@param``; an optional ``/vK`` suffix pins the version):

- ``uniform-center@N`` (default for evaluation): the centre frame of each of N equal segments,
  ``floor((2i + 1) * num_frames / (2N))`` for ``i = 0..N-1``.
- ``uniform-ends@N``: N frames evenly spaced from the first to the last frame,
  ``round_half_up(i * (num_frames - 1) / (N - 1))``; ``N = 1`` gives the middle frame
  ``(num_frames - 1) // 2``.
- ``fps@F`` (``fps@F,max=M``): F frames per second of video. Second-windows of length ``1/F`` are
  laid from the start; each full window contributes its centre frame,
  ``floor((k + 0.5) * fps / F)``; a video shorter than one window gives its middle frame. When
  ``F`` exceeds the video's fps, frames collide and are deduplicated (fewer than ``F`` per second).
  The count is capped at ``M`` (default :data:`FPS_DEFAULT_MAX` = 64): a longer video gets
  ``uniform-center@M`` instead, so the cap spreads frames over the whole video rather than
  truncating its end. Needs the video's ``fps``.
- ``random-segment@N`` (training): one frame drawn uniformly inside each of N equal segments
  ``[floor(i * n / N), floor((i + 1) * n / N))``, from ``random.Random(seed)`` (deterministic for a
  given seed; the loader derives the seed from its ``shuffle_seed``, epoch and the vid).

Every result is sorted, unique and in ``[0, num_frames)``.

**Short videos.** A video with fewer than N frames gets *all* its frames, ``[0, num_frames)``
(still sorted and unique, so fewer than N). The loader then pads the frame tensor to N by repeating
the last decoded frame and marks the padding in ``frame_mask`` (see :mod:`create_bench.loader`).

Example::

    >>> sample_indices(100, "uniform-center@4")
    [12, 37, 62, 87]
    >>> sample_indices(100, "uniform-ends@4")
    [0, 33, 66, 99]
    >>> sample_indices(3, "uniform-center@8")
    [0, 1, 2]
    >>> sample_indices(90, "fps@1", fps=30.0)
    [15, 45, 75]
    >>> policy_signature("uniform-center@8")
    'uniform-center@8/v1'
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass

from create_bench.errors import ConfigError

#: The evaluation default.
DEFAULT_POLICY = "uniform-center@8"
#: Cap on the number of frames ``fps@F`` returns when no ``max=`` is given.
FPS_DEFAULT_MAX = 64
#: Current version of each policy's rule. Bump a version whenever its indices change.
POLICY_VERSIONS: dict[str, int] = {
    "uniform-center": 1,
    "uniform-ends": 1,
    "fps": 1,
    "random-segment": 1,
}

_POLICY_RE = re.compile(
    r"^(?P<name>[a-z][a-z-]*)@(?P<param>[0-9]+(?:\.[0-9]+)?)(?:,max=(?P<max>[0-9]+))?(?:/v(?P<version>[0-9]+))?$"
)


@dataclass(frozen=True)
class FramePolicy:
    """A parsed frame policy. Build one with :func:`parse_policy`."""

    name: str
    #: N (frames) for the segment policies, F (frames per second) for ``fps``.
    param: float
    version: int
    #: Frame cap of ``fps@F`` (None for the others).
    max_frames: int | None = None

    @property
    def n(self) -> int:
        return int(self.param)

    @property
    def is_fixed_length(self) -> bool:
        """True when every video long enough gets exactly ``num_output_frames`` frames."""
        return self.name != "fps"

    @property
    def num_output_frames(self) -> int:
        """Frames per video after the loader's padding (the cap for ``fps``)."""
        if self.name == "fps":
            return int(self.max_frames or FPS_DEFAULT_MAX)
        return self.n

    def canonical(self) -> str:
        """The policy string without version, e.g. ``fps@2,max=32``."""
        param = f"{self.param:g}"
        extra = f",max={self.max_frames}" if self.name == "fps" and self.max_frames is not None else ""
        return f"{self.name}@{param}{extra}"

    def signature(self) -> str:
        """The versioned name that goes into the score signature, e.g. ``uniform-center@8/v1``."""
        return f"{self.canonical()}/v{self.version}"

    def __str__(self) -> str:
        return self.canonical()

    def indices(self, num_frames: int, *, fps: float | None = None, seed: int | None = None) -> list[int]:
        """The frame indices for a video of ``num_frames`` decodable frames (see module doc)."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, int):
            raise ConfigError(f"num_frames must be an int, got {num_frames!r}")
        if num_frames < 1:
            raise ConfigError(f"num_frames must be >= 1 to sample frames, got {num_frames}")
        if self.name == "uniform-center":
            return _uniform_center(num_frames, self.n)
        if self.name == "uniform-ends":
            return _uniform_ends(num_frames, self.n)
        if self.name == "random-segment":
            return _random_segment(num_frames, self.n, 0 if seed is None else seed)
        if self.name == "fps":
            return _fps(num_frames, self.param, fps, self.max_frames or FPS_DEFAULT_MAX)
        raise ConfigError(f"unknown frame policy {self.name!r}")  # unreachable: parse_policy checks


def parse_policy(policy: str | FramePolicy) -> FramePolicy:
    """Parse ``"name@param[,max=M][/vK]"``; unknown names, bad parameters and versions raise ConfigError."""
    if isinstance(policy, FramePolicy):
        return policy
    if not isinstance(policy, str):
        raise ConfigError(f"frame policy must be a string like 'uniform-center@8', got {policy!r}")
    m = _POLICY_RE.match(policy.strip())
    if m is None:
        raise ConfigError(
            f"bad frame policy {policy!r}: expected 'name@N' such as 'uniform-center@8', "
            f"'uniform-ends@8', 'fps@1' or 'random-segment@8' (optional ',max=M' for fps, '/v1' version)"
        )
    name = m["name"]
    if name not in POLICY_VERSIONS:
        import difflib

        close = difflib.get_close_matches(name, list(POLICY_VERSIONS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"unknown frame policy {name!r} in {policy!r}{hint} (known: {', '.join(POLICY_VERSIONS)})"
        )
    version = int(m["version"]) if m["version"] else POLICY_VERSIONS[name]
    if version != POLICY_VERSIONS[name]:
        raise ConfigError(
            f"frame policy {policy!r} asks for version {version}, this create-bench implements "
            f"{name} v{POLICY_VERSIONS[name]}"
        )
    param = float(m["param"])
    max_frames = int(m["max"]) if m["max"] else None
    if name == "fps":
        if not param > 0 or not math.isfinite(param):
            raise ConfigError(f"fps policy needs a positive rate, got {policy!r}")
        if max_frames is not None and max_frames < 1:
            raise ConfigError(f"fps policy cap must be >= 1, got {policy!r}")
    else:
        if max_frames is not None:
            raise ConfigError(f"',max=' applies to the fps policy only, got {policy!r}")
        if param != int(param) or param < 1:
            raise ConfigError(f"{name} needs a whole number of frames >= 1, got {policy!r}")
    return FramePolicy(
        name=name, param=param if name == "fps" else float(int(param)), version=version, max_frames=max_frames
    )


def policy_signature(policy: str | FramePolicy) -> str:
    """The versioned policy name for signatures: ``policy_signature("uniform-center@8") == "uniform-center@8/v1"``."""
    return parse_policy(policy).signature()


def sample_indices(
    num_frames: int,
    policy: str | FramePolicy = DEFAULT_POLICY,
    *,
    fps: float | None = None,
    seed: int | None = None,
) -> list[int]:
    """Frame indices a policy picks from a video of ``num_frames`` decodable frames.

    Args:
        num_frames: the stored count of frames that really decode (>= 1).
        policy: a policy string (``uniform-center@8``, ``uniform-ends@8``, ``fps@1``, ``fps@2,max=32``,
            ``random-segment@8``) or a parsed :class:`FramePolicy`.
        fps: the video's frame rate; required by ``fps@F``, ignored by the others.
        seed: seed of ``random-segment``; None means 0 (deterministic), ignored by the others.

    Returns:
        Sorted, unique indices in ``[0, num_frames)``; all frames when the video is shorter than N.

    Raises:
        ConfigError: bad policy, ``num_frames < 1``, or ``fps@F`` without a positive ``fps``.
    """
    return parse_policy(policy).indices(num_frames, fps=fps, seed=seed)


def _uniform_center(num_frames: int, n: int) -> list[int]:
    if num_frames <= n:
        return list(range(num_frames))
    # Integer arithmetic: floor((i + 0.5) * num_frames / n) without float rounding surprises.
    return [((2 * i + 1) * num_frames) // (2 * n) for i in range(n)]


def _uniform_ends(num_frames: int, n: int) -> list[int]:
    if num_frames <= n:
        return list(range(num_frames))
    if n == 1:
        return [(num_frames - 1) // 2]
    span, d = num_frames - 1, n - 1
    # round half up of i * span / d, exactly: floor((2 * i * span + d) / (2 * d))
    return [(2 * i * span + d) // (2 * d) for i in range(n)]


def _random_segment(num_frames: int, n: int, seed: int) -> list[int]:
    if num_frames <= n:
        return list(range(num_frames))
    rng = random.Random(seed)
    out = []
    for i in range(n):
        lo, hi = (i * num_frames) // n, ((i + 1) * num_frames) // n
        out.append(lo + rng.randrange(hi - lo))
    return out


def _fps(num_frames: int, rate: float, fps: float | None, cap: int) -> list[int]:
    if fps is None or not isinstance(fps, (int, float)) or not math.isfinite(fps) or fps <= 0:
        raise ConfigError(f"the fps@{rate:g} policy needs the video's positive fps, got {fps!r}")
    step = fps / rate  # frames per window
    windows = int(num_frames // step) if step > 0 else 0
    if windows < 1:
        return [(num_frames - 1) // 2]
    if windows > cap:
        return _uniform_center(num_frames, cap)
    out: list[int] = []
    for k in range(windows):
        idx = min(int(math.floor((k + 0.5) * step)), num_frames - 1)
        if not out or idx != out[-1]:
            out.append(idx)
    return out

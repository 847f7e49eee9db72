"""Typed errors. The library raises these; only ``cli.py`` turns them into exit codes."""

from __future__ import annotations


class CreateBenchError(Exception):
    """Base class of every error this package raises on purpose."""

    exit_code = 1


class ConfigError(CreateBenchError, ValueError):
    """A bad option, config file or argument value."""

    exit_code = 2


class OutputError(ConfigError):
    """An output path the command refuses to write: it holds what the command did not create, or it
    is inside (or holds) one of the command's inputs."""


class DataError(CreateBenchError):
    """A dataset, shard or annotation problem. Names the file, row and/or vid where known."""

    def __init__(
        self, message: str, *, path: str | None = None, row: int | None = None, vid: str | None = None
    ):
        where = []
        if path is not None:
            where.append(f"file {path}")
        if row is not None:
            where.append(f"row {row}")
        if vid is not None:
            where.append(f"vid {vid!r}")
        super().__init__(f"{message} ({', '.join(where)})" if where else message)
        self.path, self.row, self.vid = path, row, vid


class AnnotationError(DataError):
    """A malformed item in an annotation file."""


class ManifestError(DataError):
    """The manifest does not match the files (hash, rows, missing shard)."""


class VideoDecodeError(CreateBenchError):
    """A video that cannot be decoded: corrupt, truncated, not a video, or out-of-range indices."""

    def __init__(self, message: str, *, vid: str | None = None, source: str | None = None):
        where = ", ".join(
            x for x in (f"vid {vid!r}" if vid else "", f"source {source}" if source else "") if x
        )
        super().__init__(f"{message} ({where})" if where else message)
        self.vid, self.source = vid, source


class DecodeTimeout(VideoDecodeError):
    """Decoding a video took longer than the configured timeout and was killed."""


class BackendUnavailable(CreateBenchError):
    """A requested decode/compute backend (e.g. decord GPU) is not available in this install."""


class MetricInputError(CreateBenchError, ValueError):
    """Invalid input to a metric: shapes, NaN/inf scores, mismatched id sets, empty predictions."""


class PredictionError(CreateBenchError):
    """A predictions directory that is missing parts, malformed, or inconsistent with the references."""


class ModelError(CreateBenchError):
    """A model broke the model protocol (wrong shapes, NaN, missing vids, non-string generations)."""


class RegistryError(CreateBenchError, KeyError):
    """An unknown registry name (the message carries 'did you mean' suggestions)."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0]) if self.args else ""


class SubmissionError(CreateBenchError):
    """A leaderboard submission that fails validation."""

    exit_code = 3

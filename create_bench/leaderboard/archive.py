"""Safe unpacking of a submission ``.tar.gz`` (layer 5).

Archives are read as a stream with a cap on the decompressed bytes and the member count (a gzip
or tar bomb stops at the cap, never after), tar metadata records (PAX headers, GNU long names)
are capped before tarfile reads them whole, and only flat, regular files with known names are
extracted, by this code, never by ``tarfile.extract``: ``../``, absolute paths, links and
devices are rejected.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import tarfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

from create_bench.errors import SubmissionError
from create_bench.leaderboard.limits import ExpectedIds, Limits, _check_name, file_caps
from create_bench.leaderboard.storage import is_storage_error, open_private


class _CappedReader(io.RawIOBase):
    """A read-only stream that raises once more than ``cap`` bytes have been read through it."""

    def __init__(self, inner: Any, cap: int, what: str):
        self.inner, self.cap, self.what, self.count = inner, cap, what, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(len(buffer))
        self.count += len(data)
        if self.count > self.cap:
            raise SubmissionError(self.what)
        buffer[: len(data)] = data
        return len(data)


class _CappedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses tar metadata records (PAX headers, GNU long names) over a cap:
    tarfile reads such a record into memory whole, before any of our checks see the member."""

    max_meta_bytes = 64 << 10

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        meta: tuple[bytes, ...] = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
        meta += (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
        if self.type in meta and self.size > self.max_meta_bytes:
            raise SubmissionError(
                f"archive: a tar extended header (PAX or long name) of {self.size} bytes; "
                f"the limit is {self.max_meta_bytes}"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def _m(name: str) -> str:
    """A member name for a message (an attacker's name can be long)."""
    return repr(name) if len(name) <= 80 else repr(name[:77]) + "..."


_MEMBER_KINDS = (
    ("issym", "a symbolic link"),
    ("islnk", "a hard link"),
    ("ischr", "a character device"),
    ("isblk", "a block device"),
    ("isfifo", "a FIFO"),
)


def _member_path(name: str) -> PurePosixPath:
    """The member's relative path, or a SubmissionError for anything that could escape."""
    if not name or "\x00" in name or "\\" in name:
        raise SubmissionError(f"archive member {_m(name)}: invalid name")
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        raise SubmissionError(f"archive member {_m(name)}: absolute paths are not allowed")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise SubmissionError(f"archive member {_m(name)}: '..' in paths is not allowed")
    if not parts:
        raise SubmissionError(f"archive member {_m(name)}: invalid name")
    return PurePosixPath(*parts)


def is_gzip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == b"\x1f\x8b"


def unpack_archive(
    archive: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    limits: Limits | None = None,
    expected: ExpectedIds | None = None,
) -> Path:
    """Safely extract a submission ``.tar.gz`` into the empty directory ``dest``.

    The archive may hold the files at its top level or inside one top-level directory; they are
    written flat into ``dest`` (the directory's name is never used on disk), which is returned.
    With ``expected`` every file is also capped by :func:`file_caps`. Raises SubmissionError
    (and leaves ``dest`` empty) on anything unsafe or over the limits.
    """
    limits = limits or Limits()
    archive, dest = Path(archive), Path(dest)
    size = archive.stat().st_size
    if size > limits.max_upload_bytes:
        raise SubmissionError(f"archive is {size} bytes; the upload limit is {limits.max_upload_bytes}")
    if not is_gzip(archive):
        raise SubmissionError(f"{archive.name}: not a gzip file (expected a .tar.gz)")
    dest.mkdir(parents=True, exist_ok=True)
    caps = file_caps(expected, limits) if expected is not None else {}
    try:
        _extract(archive, dest, limits, caps)
    except BaseException:
        for child in dest.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
        raise
    return dest


def _extract(archive: Path, dest: Path, limits: Limits, caps: dict[str, int]) -> None:
    unpacked = min(limits.max_unpacked_bytes, sum(caps.values())) if caps else limits.max_unpacked_bytes
    bomb = (
        f"archive expands beyond the limit of {unpacked} bytes "
        "(a decompression bomb, or a submission too large)"
    )
    # Tar headers, padding and capped PAX records come on top of file bytes.
    stream_cap = unpacked + (limits.max_files + 8) * (limits.max_pax_bytes + 2048) + (1 << 20)
    seen: set[PurePosixPath] = set()
    top: str | None = None
    total = 0
    members = 0
    with open(archive, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as gz:
        capped = io.BufferedReader(_CappedReader(gz, stream_cap, bomb), buffer_size=1 << 16)
        try:
            tarinfo = type("TarInfo", (_CappedTarInfo,), {"max_meta_bytes": limits.max_pax_bytes})
            with tarfile.open(fileobj=capped, mode="r|", tarinfo=tarinfo) as tf:
                for member in tf:
                    members += 1
                    if members > limits.max_files:
                        raise SubmissionError(f"archive has more than {limits.max_files} members")
                    path = _member_path(member.name)
                    for attr, what in _MEMBER_KINDS:
                        if getattr(member, attr)():
                            raise SubmissionError(
                                f"archive member {_m(member.name)} is {what}; only files are allowed"
                            )
                    if member.isdir():
                        if len(path.parts) != 1 or (top is not None and top != path.parts[0]):
                            raise SubmissionError(
                                f"archive member {_m(member.name)}: files must be at the top level "
                                "or inside one top-level directory"
                            )
                        top = path.parts[0]
                        continue
                    if not member.isreg():
                        raise SubmissionError(f"archive member {_m(member.name)} is not a regular file")
                    if len(path.parts) == 2:
                        if top is not None and top != path.parts[0]:
                            raise SubmissionError(
                                f"archive member {_m(member.name)}: more than one top-level directory"
                            )
                        top = path.parts[0]
                    elif len(path.parts) > 2 or (len(path.parts) == 1 and top is not None):
                        raise SubmissionError(
                            f"archive member {_m(member.name)}: files must be at the top level "
                            "or inside one top-level directory"
                        )
                    _check_name(path.name, where=f"archive member {_m(member.name)}")
                    if path in seen:
                        raise SubmissionError(f"archive member {_m(member.name)} appears twice")
                    seen.add(path)
                    budget, over = unpacked - total, bomb
                    cap = caps.get(path.name)
                    if cap is not None and cap < budget:
                        budget = cap
                        over = (
                            f"archive member {_m(member.name)} expands beyond {cap} bytes, the most "
                            f"this file can need for the split (a decompression bomb?)"
                        )
                    if member.size > budget:
                        raise SubmissionError(over)
                    total += _copy_member(tf, member, dest / path.name, budget, over)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            if is_storage_error(exc):  # the server's disk, not the archive: never blame the submitter
                raise
            if isinstance(exc, gzip.BadGzipFile) or not isinstance(exc, OSError | EOFError):
                raise SubmissionError(f"{archive.name}: not a valid .tar.gz ({exc})") from None
            raise SubmissionError(f"{archive.name}: truncated or corrupt .tar.gz ({exc})") from None
    if not seen:
        raise SubmissionError(f"{archive.name}: the archive holds no files")


def _copy_member(tf: tarfile.TarFile, member: tarfile.TarInfo, out: Path, budget: int, bomb: str) -> int:
    src = tf.extractfile(member)
    if src is None:  # pragma: no cover - isreg() members always have data
        raise SubmissionError(f"archive member {_m(member.name)} has no data")
    out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    written = 0
    # "xb": never follow or overwrite anything already there; permissions are ours, not the archive's.
    with open_private(out) as fh:
        while block := src.read(1 << 20):
            written += len(block)
            if written > budget:
                raise SubmissionError(bomb)
            fh.write(block)
    return written

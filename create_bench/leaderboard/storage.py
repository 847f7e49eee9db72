"""The server's own storage (layer 5): telling its faults from the submitter's, private modes,
and the unpacking directories that a killed process leaves behind.

A full disk, a read-only or failing file system is the server's fault, never the submitter's:
such an ``OSError`` (:data:`STORAGE_ERRNOS`) is never turned into "corrupt archive". At upload
time it answers 507 (no space) or 503 (read-only, I/O error) "server storage error"; in a worker
it re-queues the job with exponential backoff (:mod:`.worker`).

Everything the server writes is its owner's only: files 0600, directories 0700.

Submissions are unpacked into ``<storage>/work/submission-<pid>@<host>-<random>``; a directory
whose process (on this host) is gone is an orphan and :func:`clean_work_dirs` removes it. It is
called at server and worker start-up and when the supervisor sees a worker die; directories of
live processes and of other hosts are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import time
from pathlib import Path

from create_bench.errors import CreateBenchError

#: errno values that mean "the server's storage failed", not "the upload is bad".
STORAGE_ERRNOS = frozenset(
    e for e in (errno.ENOSPC, errno.EROFS, errno.EIO, getattr(errno, "EDQUOT", None)) if e is not None
)
#: Work directories named without an owner (older code) are removed when older than this.
LEGACY_AGE_S = 3600.0
_WORK_RE = re.compile(r"^submission-(\d+)@(.+)-[a-z0-9_]{8}$")


class StorageFault(CreateBenchError):
    """The server could not store or read a file (full, read-only or failing storage)."""

    def __init__(self, exc: OSError):
        self.errno = exc.errno
        name = errno.errorcode.get(exc.errno or 0, "OSError")
        super().__init__(
            f"server storage error ({name}); nothing was stored and it does not count against "
            "your team: please try again later"
        )

    @property
    def http_status(self) -> int:
        return 507 if self.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)) else 503


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


def private_dir(path: Path) -> Path:
    """Make ``path`` (and missing parents) and give it mode 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with contextlib.suppress(PermissionError):
        os.chmod(path, 0o700)
    return path


def open_private(path: Path, mode: str = "xb"):  # noqa: ANN201 - a binary file object
    """Create a new file with mode 0600 (``x``: never an existing one)."""
    if mode != "xb":
        raise ValueError("only 'xb' is supported")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def work_prefix() -> str:
    """Prefix of this process's unpacking directories (its pid and host name it as the owner)."""
    return f"submission-{os.getpid()}@{socket.gethostname()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def clean_work_dirs(workdir: Path, *, now: float | None = None) -> list[str]:
    """Remove orphaned unpacking directories under ``workdir``; returns their names.

    Orphans: those of processes on this host that are no longer running, and owner-less ones
    (``submission-XXXXXXXX``, older code) untouched for :data:`LEGACY_AGE_S`.
    """
    if not workdir.is_dir():
        return []
    host = socket.gethostname()
    now = time.time() if now is None else now
    removed = []
    for child in workdir.iterdir():
        if not child.name.startswith("submission-") or child.is_symlink() or not child.is_dir():
            continue
        m = _WORK_RE.match(child.name)
        if m:
            pid, owner_host = int(m.group(1)), m.group(2)
            if owner_host != host or pid == os.getpid() or _alive(pid):
                continue
        else:
            try:
                if now - child.stat().st_mtime < LEGACY_AGE_S:
                    continue
            except FileNotFoundError:
                continue
        shutil.rmtree(child, ignore_errors=True)
        removed.append(child.name)
    return removed

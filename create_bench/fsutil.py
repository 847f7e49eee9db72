"""Atomic file writes and hashing (layer 0). Nothing is ever left half-written: write a temp file
in the same directory, fsync, then ``os.replace``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def public_mode(path: str | os.PathLike[str], *, directory: bool = False) -> None:
    """Give a temp file (mkstemp: 0600) or dir (mkdtemp: 0700) the mode a plain open/mkdir would."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        public_mode(tmp_path)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(
    path: str | os.PathLike[str], *, owns: Callable[[Path], bool] | None = None, what: str = "this command"
) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` whole.

    An existing ``path`` is moved aside first and removed only after the new one is in place. It
    is replaced only if every entry in it is one ``owns`` accepts (None: none; then ``path`` must be
    missing or empty), checked before and after the work: see :func:`check_output_dir`.
    """
    owner = owns or (lambda p: False)
    check_output_dir(path, owns=owner, what=what)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    public_mode(tmp, directory=True)
    try:
        check_output_dir(path, owns=owner, what=what)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists():
        old = path.with_name(f".{path.name}.old-{os.getpid()}")
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output_dir(
    path: str | os.PathLike[str],
    *,
    owns: Callable[[Path], bool],
    inputs: Iterable[str | os.PathLike[str]] = (),
    what: str = "this command",
) -> None:
    """Refuse to (re)write the directory ``path`` unless nothing there would be lost.

    ``path`` may be missing, an empty directory, or a directory every entry of which ``owns``
    accepts (a previous output of the same command, which it replaces whole). It may never be, hold
    or lie inside one of ``inputs``. Raises :class:`~create_bench.errors.OutputError` naming the
    path and what is in the way; checks run before any work, so nothing is written on refusal.
    """
    from create_bench.errors import OutputError

    out = Path(path).resolve()
    for inp in inputs:
        src = Path(inp).resolve()
        if _inside(out, src) or _inside(src, out):
            rel = "is" if out == src else ("is inside" if _inside(out, src) else "contains")
            raise OutputError(
                f"refusing to write {path}: it {rel} the input {inp}; choose an --out outside every input"
            )
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir() or out.is_symlink():
        raise OutputError(f"refusing to write {path}: it exists and is not a directory")
    foreign = sorted(p.name + ("/" if p.is_dir() else "") for p in out.iterdir() if not owns(p))
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise OutputError(
            f"refusing to replace {path}: it is not empty and not a previous output of {what} "
            f"(it holds {shown}); choose another --out, or move those away yourself"
        )


def cache_root() -> Path:
    """The project's cache directory: ``$CREATE_BENCH_CACHE``, else ``~/.cache/create-bench``."""
    root = os.environ.get("CREATE_BENCH_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "create-bench"
    )
    return Path(root)

"""A throwaway PostgreSQL cluster for the leaderboard tests (loopback port, temp dir, fsync off).

``pg_cluster`` (session) runs ``initdb`` and ``pg_ctl start`` in a fresh temporary directory,
listening on 127.0.0.1 only, and stops and removes it at the end; ``new_database()`` gives each
test its own empty database. PostgreSQL refuses to run as root, so as root the cluster runs as
the ``postgres`` user (``runuser``).

Without the server binaries the PostgreSQL tests FAIL where they must run (root, as CI runs
``make setup && make test``, and ``make setup`` installs Debian's ``postgresql`` there; or
``CI`` set in the environment), and are skipped with the reason elsewhere.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found: run `make setup` as root, which installs "
    "Debian's `postgresql` (or `apt-get install postgresql`), or set PG_BINDIR to their directory"
)


def pg_bindir() -> Path | None:
    candidates = [os.environ.get("PG_BINDIR")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True
    )
    if shutil.which("pg_ctl"):
        candidates.append(str(Path(shutil.which("pg_ctl")).parent))  # type: ignore[arg-type]
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    return None


def must_run() -> bool:
    """Where missing binaries are a failure, not a skip."""
    return os.geteuid() == 0 or bool(os.environ.get("CI"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="lb-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", opts, "-w",
                  "-t", "60", "start")  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(self.bindir / tool), *args]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.root / "server.log"
            raise RuntimeError(
                f"{tool} failed ({proc.returncode}): {proc.stderr or proc.stdout}"
                + (f"\nserver log:\n{log.read_text()[-2000:]}" if log.exists() else "")
            )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as c:
            c.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    bindir = pg_bindir()
    if bindir is None:
        if must_run():
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        msg = "the PostgreSQL driver is missing: pip install -e '.[server]' (psycopg[binary])"
        if must_run():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    cluster = Cluster(bindir)
    try:
        yield cluster
    finally:
        cluster.stop()


BACKENDS = ("sqlite", "postgresql")


def backend_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of the backend ``request.param``."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'board.db'}"
    return request.getfixturevalue("pg_cluster").new_database()

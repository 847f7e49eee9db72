"""Worker processes for ``create-bench leaderboard serve --workers N`` (layer 5).

Each worker is its own ``create-bench leaderboard worker`` process, so scoring never runs in
the server's request path and a crashing or killed worker is simply restarted (its job comes
back through the lease, see :mod:`.db`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from create_bench.leaderboard.worker import WorkerConfig

log = logging.getLogger(__name__)


def worker_argv(db_url: str, config: WorkerConfig, parent_pid: int | None = None) -> list[str]:
    """The command line of a ``create-bench leaderboard worker`` that runs with ``config`` (the
    one place a :class:`WorkerConfig` is turned into arguments; ``run_worker`` parses them back)."""
    from create_bench.commands._scoring import scoring_argv

    argv = [sys.executable, "-m", "create_bench", "leaderboard", "worker", "--db", db_url]
    argv += ["--data", str(config.scoring.data_dir), "--storage", str(config.storage_dir)]
    argv += ["--split", config.scoring.split, *scoring_argv(config.scoring.options)]
    argv += [
        "--lease",
        str(config.lease_s),
        "--heartbeat",
        str(config.heartbeat_s),
        "--poll",
        str(config.poll_s),
        "--timeout-per-generation",
        str(config.timeout_per_generation_s),
    ]
    argv += [
        "--max-unpacked-mb",
        str(config.limits.max_unpacked_bytes / (1 << 20)),
        "--scorer",
        config.scorer,
    ]
    if parent_pid is not None:
        argv += ["--parent-pid", str(parent_pid)]
    return argv


class WorkerPool:
    """Keeps N worker processes alive until :meth:`stop`."""

    def __init__(self, db_url: str, config: WorkerConfig, n: int, *, restart_delay: float = 1.0):
        config = dataclasses.replace(config, storage_dir=Path(config.storage_dir).resolve())
        self.db_url = db_url
        self.argv = worker_argv(db_url, config, parent_pid=os.getpid())
        self.n = max(0, n)
        self.restart_delay = restart_delay
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-pool", daemon=True)

    def start(self) -> None:
        if self.n == 0:
            return
        from create_bench.leaderboard.db import Database

        Database(self.db_url).migrate()  # workers refuse an unmigrated DB
        self.procs = [self._spawn() for _ in range(self.n)]
        self._thread.start()

    def _spawn(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(self.argv)
        log.info("started scoring worker pid %d", proc.pid)
        return proc

    def _watch(self) -> None:
        while not self._stop.wait(self.restart_delay):
            for i, proc in enumerate(self.procs):
                if proc.poll() is not None and not self._stop.is_set():
                    log.warning("scoring worker pid %d exited with %s; restarting", proc.pid, proc.returncode)
                    self._clean()
                    self.procs[i] = self._spawn()

    def _clean(self) -> None:
        """Remove what a dead worker was unpacking (only dead processes' directories)."""
        from create_bench.leaderboard.storage import clean_work_dirs

        storage = Path(self.argv[self.argv.index("--storage") + 1])
        for name in clean_work_dirs(storage / "work"):
            log.info("removed orphaned work directory %s", name)

    def stop(self, grace: float = 5.0) -> None:
        if self._stop.is_set() and all(p.poll() is not None for p in self.procs):
            return
        self._stop.set()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

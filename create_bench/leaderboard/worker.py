"""The scoring worker (layer 5): takes queued submissions from the database and scores them,
outside the request path, with the same code as ``create-bench score``
(:func:`create_bench.scoring.score_predictions`).

Run it as ``create-bench leaderboard worker --db URL --data DIR`` (``serve --workers N`` starts
N of them). A worker holds a lease on its job and renews it from a heartbeat thread; if the
process dies (even by SIGKILL) the lease runs out and the next claim re-queues the job. Only
the lease holder can move a job to ``finished`` or ``failed`` (see :mod:`.db`), so every
submission finishes exactly once.

With a text encoder in the scoring options (``--text-encoder``: BERTScore-F, ACTEr-r), a worker
loads it and encodes the split's references before it takes its first job
(:meth:`Worker.prepare`), so no submission's deadline pays for them.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from create_bench.errors import CreateBenchError
from create_bench.leaderboard.db import COUNTED_FAILURE, Database, Job
from create_bench.leaderboard.storage import clean_work_dirs, is_storage_error
from create_bench.leaderboard.submission import ExpectedIds, Limits, open_submission
from create_bench.scoring import ScoringOptions

log = logging.getLogger(__name__)

DEFAULT_SCORER = "create_bench.scoring:score_predictions"
Scorer = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class ScoringConfig:
    """How the server scores: fixed for a board, so every entry has one signature.

    ``options`` are given to the scorer as ``scorer(pred_dir, data_dir, split, options=options)``.
    """

    data_dir: Path
    split: str = "test"
    options: ScoringOptions = field(default_factory=ScoringOptions)


@dataclass(frozen=True)
class WorkerConfig:
    storage_dir: Path
    scoring: ScoringConfig
    #: Seconds a claim stays valid without a heartbeat (a dead worker's job waits this long).
    lease_s: float = 60.0
    heartbeat_s: float = 10.0
    poll_s: float = 1.0
    max_attempts: int = 3
    #: A server storage fault (full or read-only disk) re-queues the job after this many seconds,
    #: doubled at each attempt; at ``max_attempts`` it fails as "server storage error" (a failed
    #: run does not count against the team).
    retry_backoff_s: float = 30.0
    scorer: str = DEFAULT_SCORER
    limits: Limits = field(default_factory=Limits)
    #: Scoring time limit: ``timeout_base_s + timeout_per_item_s x (videos + texts of the
    #: split)``; about 11 minutes for the CREATE test split (5,000 videos, 100,000 texts).
    timeout_base_s: float = 120.0
    timeout_per_item_s: float = 0.005
    #: With a text encoder (BERTScore-F/ACTEr-r), each generated text (videos x 2 on a full
    #: submission) adds this much: the references are encoded once at the worker's start (outside
    #: any deadline), the generations in every scoring run. The default leaves room for a
    #: bert-base-sized encoder on a small CPU (``benchmarks/bertscore.py`` measures yours).
    timeout_per_generation_s: float = 0.25


#: Start of the error of a submission whose scoring ran out of time (such a failure counts
#: against the team's daily limit, see :mod:`.db`).
TIMEOUT_ERROR = COUNTED_FAILURE


class ScoringTimeout(BaseException):
    """Raised in the scoring thread when its time is up; a BaseException, so that no
    ``except Exception`` inside a scorer swallows it."""


def scoring_timeout(expected: ExpectedIds, config: WorkerConfig) -> float:
    """Seconds a submission may take to score on this split (see WorkerConfig)."""
    items = len(expected.vids) + sum(len(ids) for ids in expected.text_ids.values())
    limit = config.timeout_base_s + config.timeout_per_item_s * items
    if config.scoring.options.text_encoder is not None:
        limit += config.timeout_per_generation_s * len(expected.vids) * 2  # a title and a caption each
    return limit


def _async_raise(thread_id: int, exc: type[BaseException] | None) -> None:
    import ctypes

    arg = ctypes.py_object(exc) if exc is not None else None  # None: clear a pending one
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), arg)


class Deadline:
    """Raises :class:`ScoringTimeout` in the thread that started it once ``seconds`` pass.

    A watchdog thread sets an asynchronous exception on the scoring thread (it arrives at the
    next Python bytecode: pure-Python scoring stops promptly, one long C call finishes first)
    and sets it again every few seconds should a scorer swallow it. :meth:`cancel` is
    idempotent and clears an exception that is set but not yet raised.
    """

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = False
        self._tid = threading.get_ident()
        self._lock = threading.Lock()
        self._active = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        if self._stop.wait(self.seconds):
            return
        while True:
            with self._lock:
                if not self._active:
                    return
                self.fired = True
                _async_raise(self._tid, ScoringTimeout)
            if self._stop.wait(2.0):
                return

    def cancel(self) -> None:
        with self._lock:
            if self._active:
                self._active = False
                _async_raise(self._tid, None)
        self._stop.set()


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def scrub(obj: Any, secrets: list[str]) -> Any:
    """Replace server-side paths in any string of a JSON-like object (they never leave the server)."""
    if isinstance(obj, str):
        for s in secrets:
            obj = obj.replace(s, "<server>")
        return obj
    if isinstance(obj, dict):
        return {k: scrub(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [scrub(v, secrets) for v in obj]
    return obj


def server_paths(
    data_dir: str | os.PathLike[str], storage: str | os.PathLike[str], *more: str | os.PathLike[str]
) -> list[str]:
    """Every absolute form of the server's data and storage paths (and ``more``, such as a text
    encoder's directory; as given, made absolute, with symbolic links resolved): what
    :func:`.worker.scrub` removes from any answer."""
    forms = set()
    for p in (data_dir, storage, *more):
        forms |= {os.path.abspath(p), str(Path(p).resolve())}
    return sorted(forms, key=len, reverse=True)


def encoder_paths(options: ScoringOptions) -> list[str]:
    """The text encoder's directory when it is a local one (a server path, never published)."""
    from create_bench.scoring import text_metric_options

    text = text_metric_options(options.text_encoder)
    return [text.encoder] if text is not None and os.path.isdir(text.encoder) else []


class Worker:
    """Claims, scores and completes jobs; see the module docstring."""

    def __init__(
        self,
        db: Database,
        config: WorkerConfig,
        *,
        scorer: Scorer | None = None,
        name: str | None = None,
        expected: ExpectedIds | None = None,
    ):
        """``scorer`` and ``expected`` (the split's ids) default to the configured scorer and the
        ids read from the dataset."""
        self.db = db
        self.config = config
        self.name = name or worker_id()
        self._scorer = scorer
        self._expected = expected

    @property
    def scorer(self) -> Scorer:
        if self._scorer is None:
            from create_bench.registry import load_object

            self._scorer = load_object(self.config.scorer)
        return self._scorer

    @property
    def expected(self) -> ExpectedIds:
        if self._expected is None:
            s = self.config.scoring
            self._expected = ExpectedIds.from_dataset(s.data_dir, s.split)
        return self._expected

    def prepare(self) -> dict[str, int] | None:
        """With a text encoder configured: load it and encode the split's references once, before
        any job (so no submission's deadline pays for them). Returns kind -> references encoded."""
        from create_bench.scoring import prepare_text_metrics

        s = self.config.scoring
        if s.options.text_encoder is None:
            return None
        t0 = time.monotonic()
        counts = prepare_text_metrics(s.options, s.data_dir, s.split)
        log.info(
            "worker %s: text encoder ready, %s references encoded in %.1f s",
            self.name,
            counts,
            time.monotonic() - t0,
        )
        return counts

    def run(self, stop: threading.Event | None = None, *, max_jobs: int | None = None) -> int:
        """Poll until ``stop`` is set (or ``max_jobs`` jobs are done); returns the jobs done."""
        stop = stop or threading.Event()
        done = 0
        for name in clean_work_dirs(self.config.storage_dir / "work"):  # left by killed processes
            log.info("worker %s: removed orphaned work directory %s", self.name, name)
        self.prepare()
        log.info("worker %s polling %s", self.name, self.db.url)
        while not stop.is_set() and (max_jobs is None or done < max_jobs):
            try:
                job_id = self.run_once()
            except CreateBenchError:
                raise
            except Exception:  # the database went away for a moment: retry, the lease protects the job
                log.exception("worker %s: database error; retrying", self.name)
                job_id = None
            if job_id is None:
                stop.wait(self.config.poll_s)
            else:
                done += 1
        return done

    def run_once(self) -> int | None:
        """Claim and process one job; returns its id, or None when the queue is empty."""
        job = self.db.claim(self.name, lease_s=self.config.lease_s, max_attempts=self.config.max_attempts)
        if job is None:
            return None
        self.process(job)
        return job.id

    def process(self, job: Job) -> None:
        log.info("worker %s: scoring submission %d (attempt %d)", self.name, job.id, job.attempts)
        lost = threading.Event()
        stop_beat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(job, stop_beat, lost), daemon=True)
        beat.start()
        try:
            outcome, payload = self._score(job)
        finally:
            stop_beat.set()
            beat.join()
        if outcome == "finished":
            ok = self.db.finish(job, payload)
        elif outcome == "retry":
            delay = self.config.retry_backoff_s * 2 ** (job.attempts - 1)
            ok = self.db.requeue(job, delay_s=delay, detail=f"{payload}; retrying in {delay:g} s")
        else:
            ok = self.db.fail(job, payload)
        if not ok:
            log.warning("worker %s: lost the lease on submission %d; result discarded", self.name, job.id)
        else:
            log.info("worker %s: submission %d %s", self.name, job.id, outcome)

    def _heartbeat(self, job: Job, stop: threading.Event, lost: threading.Event) -> None:
        while not stop.wait(self.config.heartbeat_s):
            try:
                if not self.db.heartbeat(job, lease_s=self.config.lease_s):
                    lost.set()
                    return
            except Exception:  # keep beating; a missed beat only shortens the lease
                log.exception("worker %s: heartbeat failed", self.name)

    def _score(self, job: Job) -> tuple[str, Any]:
        cfg = self.config
        # Absolute paths everywhere, so that every path in a message has a form scrub() knows.
        storage = Path(os.path.abspath(cfg.storage_dir))
        data_dir = Path(os.path.abspath(cfg.scoring.data_dir))
        secrets = server_paths(data_dir, storage, *encoder_paths(cfg.scoring.options))
        try:
            limit = scoring_timeout(self.expected, cfg)
            team = self.db.get_submission(job.id)["team"]
            deadline = Deadline(limit)
            try:
                results = self._run_scorer(job, storage, data_dir, team)
            finally:
                deadline.cancel()
            return "finished", scrub(results, secrets)
        except ScoringTimeout:
            deadline.cancel()
            return "failed", (
                f"{TIMEOUT_ERROR} after {limit:.0f} s, the limit for this split ({cfg.timeout_base_s:g} s + "
                f"{cfg.timeout_per_item_s:g} s per video and text); this failure counts against the daily limit"
            )
        except CreateBenchError as exc:
            return "failed", scrub(str(exc), secrets)
        except OSError as exc:
            if not is_storage_error(exc):
                return self._internal(job, exc)
            name = errno.errorcode.get(exc.errno or 0, "OSError")
            log.error("worker %s: storage error scoring submission %d: %s", self.name, job.id, exc)
            if job.attempts < self.config.max_attempts:
                return "retry", f"server storage error ({name})"
            return (
                "failed",
                f"server storage error ({name}) after {job.attempts} attempts; not your submission's "
                "fault and not counted against your team: please resubmit or contact the organisers",
            )
        except Exception as exc:  # a bug, not the submitter's fault: log it, say little
            return self._internal(job, exc)

    def _internal(self, job: Job, exc: BaseException) -> tuple[str, Any]:
        log.error("worker %s: internal error scoring submission %d", self.name, job.id, exc_info=exc)
        return "failed", f"internal error while scoring ({type(exc).__name__}); please contact the organisers"

    def _run_scorer(self, job: Job, storage: Path, data_dir: Path, team: str) -> dict[str, Any]:
        cfg = self.config
        with open_submission(
            storage / job.upload_path, expected=self.expected, limits=cfg.limits, workdir=storage / "work"
        ) as sub:
            s = cfg.scoring
            results = self.scorer(sub.path, data_dir, s.split, options=s.options)
            results = dict(results)
            # The board shows the team the token belongs to, never the card's self-declared one.
            results["model"] = {**sub.card.model_info(), "team": team}
            results["submission"] = {"id": job.id}
        return results


def run_worker(db: Database, config: WorkerConfig, stop: threading.Event | None = None) -> None:
    """Entry point of ``create-bench leaderboard worker``."""
    db.check_schema()
    Worker(db, config).run(stop)


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``pred`` until it is true or ``timeout`` seconds pass (tests and clients use it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()

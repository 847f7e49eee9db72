"""The leaderboard's job queue (layer 5): claims, fair order, leases and retries.

Lifecycle of a submission::

    submitted -> queued -> running -> finished
                             |  ^
                             |  +-- lease expired (worker killed): re-queued, attempts + 1
                             +----> failed

Workers claim a job with a conditional UPDATE and hold a lease they renew with heartbeats.
Every later transition is conditional on the worker still holding the lease, so a job whose
worker died is re-queued and a stale worker cannot finish it a second time: a submission
reaches ``finished`` exactly once. Every transition is also appended to ``events``.

:class:`JobQueue` is the worker side of :class:`~create_bench.leaderboard.db.Database`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from create_bench.leaderboard.tables import events, now, submissions

#: How far back :meth:`Database.claim` looks at a team's started jobs to decide whose turn it is.
FAIR_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Job:
    """A claimed submission, as a worker sees it."""

    id: int
    upload_path: str
    split: str
    attempts: int
    worker: str


class JobQueue:
    """The worker side of :class:`~create_bench.leaderboard.db.Database` (a mixin: it uses the
    database's write transactions and event log)."""

    if TYPE_CHECKING:

        def write(self) -> contextlib.AbstractContextManager[Connection]: ...

        def _event(
            self, conn: Connection, sub_id: int, state: str, worker: str | None, detail: str | None
        ) -> None: ...

    def claim(self, worker: str, *, lease_s: float, max_attempts: int = 3) -> Job | None:
        """Claim a queued job, or a running one whose lease expired (its worker died), fairly
        across teams (see :meth:`_fair_order`).

        A job that already used ``max_attempts`` leases fails instead of being retried forever.
        """
        t = now()
        runnable = sa.or_(
            # A queued job's lease_expires, when set, is the earliest retry (see requeue).
            sa.and_(
                submissions.c.state == "queued",
                sa.or_(submissions.c.lease_expires.is_(None), submissions.c.lease_expires <= t),
            ),
            sa.and_(submissions.c.state == "running", submissions.c.lease_expires < t),
        )
        with self.write() as conn:
            for row in self._fair_order(conn, runnable, t)[:8]:
                if row.state == "running":
                    self._event(conn, row.id, "queued", row.lease_owner, "lease expired; re-queued")
                if row.attempts >= max_attempts:
                    done = conn.execute(
                        submissions.update()
                        .where(submissions.c.id == row.id, runnable)
                        .values(
                            state="failed",
                            error=f"scoring did not complete after {row.attempts} attempts",
                            lease_owner=None,
                            lease_expires=None,
                            updated_at=t,
                        )
                    )
                    if done.rowcount == 1:
                        self._event(conn, row.id, "failed", None, "too many attempts")
                    continue
                won = conn.execute(
                    submissions.update()
                    .where(submissions.c.id == row.id, runnable)
                    .values(
                        state="running",
                        lease_owner=worker,
                        lease_expires=t + lease_s,
                        attempts=submissions.c.attempts + 1,
                        updated_at=t,
                    )
                )
                if won.rowcount != 1:  # another worker was faster (PostgreSQL re-checks the WHERE)
                    continue
                self._event(conn, row.id, "running", worker, f"attempt {row.attempts + 1}")
                job = conn.execute(
                    sa.select(submissions.c.upload_path, submissions.c.split, submissions.c.attempts).where(
                        submissions.c.id == row.id
                    )
                ).one()
                return Job(row.id, job.upload_path, job.split, job.attempts, worker)
        return None

    def _fair_order(self, conn: Connection, runnable: Any, t: float) -> list[Any]:
        """Runnable jobs, fairest first: one team's burst never holds the workers while other
        teams wait. A team's turn comes by (jobs it has running now, jobs of it that workers
        started in the last ``FAIR_WINDOW_S``, its oldest runnable job); within a team, oldest
        first."""
        rows = conn.execute(
            sa.select(
                submissions.c.id,
                submissions.c.team_id,
                submissions.c.state,
                submissions.c.attempts,
                submissions.c.lease_owner,
                submissions.c.created_at,
            )
            .where(runnable)
            .order_by(submissions.c.created_at, submissions.c.id)
        ).all()
        if len({r.team_id for r in rows}) <= 1:
            return list(rows)
        running: dict[int, int] = dict(
            conn.execute(
                sa.select(submissions.c.team_id, sa.func.count())
                .where(submissions.c.state == "running", submissions.c.lease_expires >= t)
                .group_by(submissions.c.team_id)
            ).all()
        )
        recent: dict[int, int] = dict(
            conn.execute(
                sa.select(submissions.c.team_id, sa.func.count())
                .select_from(events.join(submissions, submissions.c.id == events.c.submission_id))
                .where(events.c.state == "running", events.c.at >= t - FAIR_WINDOW_S)
                .group_by(submissions.c.team_id)
            ).all()
        )
        by_team: dict[int, list[Any]] = {}
        for r in rows:
            by_team.setdefault(r.team_id, []).append(r)
        # Round robin: each team's k-th job after every team's (k-1)-th, teams in fairness order.
        teams_order = sorted(
            by_team, key=lambda tid: (running.get(tid, 0), recent.get(tid, 0), by_team[tid][0].created_at)
        )
        depth = max(len(v) for v in by_team.values())
        return [by_team[tid][k] for k in range(depth) for tid in teams_order if k < len(by_team[tid])]

    def heartbeat(self, job: Job, *, lease_s: float) -> bool:
        """Extend the lease; False when the worker no longer holds it (it must stop)."""
        with self.write() as conn:
            res = conn.execute(
                submissions.update().where(*self._held(job)).values(lease_expires=now() + lease_s)
            )
        return res.rowcount == 1

    def _held(self, job: Job) -> tuple[Any, ...]:
        return (
            submissions.c.id == job.id,
            submissions.c.state == "running",
            # Owner, not expiry: a claim by another worker changes the owner atomically, so
            # a late but sole worker may still finish, and a replaced one never can.
            submissions.c.lease_owner == job.worker,
        )

    def finish(self, job: Job, results: dict[str, Any]) -> bool:
        """running -> finished, only while the lease is held. False: the result is discarded."""
        return self._complete(
            job, "finished", results_json=json.dumps(results, ensure_ascii=False), error=None
        )

    def fail(self, job: Job, message: str) -> bool:
        """running -> failed, only while the lease is held."""
        return self._complete(job, "failed", results_json=None, error=message)

    def requeue(self, job: Job, *, delay_s: float, detail: str) -> bool:
        """running -> queued, only while the lease is held, claimable again after ``delay_s``
        (a transient server fault such as a full disk: not the submitter's doing)."""
        t = now()
        with self.write() as conn:
            res = conn.execute(
                submissions.update()
                .where(*self._held(job))
                .values(state="queued", lease_owner=None, lease_expires=t + delay_s, updated_at=t)
            )
            if res.rowcount != 1:
                return False
            self._event(conn, job.id, "queued", job.worker, detail)
        return True

    def _complete(self, job: Job, state: str, *, results_json: str | None, error: str | None) -> bool:
        with self.write() as conn:
            res = conn.execute(
                submissions.update()
                .where(*self._held(job))
                .values(
                    state=state,
                    results_json=results_json,
                    error=error,
                    lease_owner=None,
                    lease_expires=None,
                    updated_at=now(),
                )
            )
            if res.rowcount != 1:
                return False
            self._event(conn, job.id, state, job.worker, error)
        return True

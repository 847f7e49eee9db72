"""The server's board cache (layer 5): board reads without parsing every stored results JSON.

Every state transition appends an event in the same transaction (:mod:`.db`), so the number of
events (:meth:`Database.change_token`, one ``count(*)``) changes exactly when some submission
changed: when it is unchanged, a request is answered from what was built for that token (the
entry list, and pages and JSON built from it). When it changed, (id, updated_at, state) of every
submission is read, and only submissions whose triple changed are read again: a finished
submission's results never change, so each is parsed (and made public,
:func:`.publish.public_results`) once per process. Workers in other processes finish jobs;
the token sees it, so nothing needs to be told.

What is built from the entries (the page, the JSON) is built once per token and key. While one
request rebuilds it after a change, concurrent requests get the previous version (a moment old)
instead of queueing behind the rebuild; a request that comes after the change and finds no
rebuild under way builds the new one itself, so a finished submission shows on the next read.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from create_bench.leaderboard.db import Database
from create_bench.leaderboard.publish import MIN_CATEGORY_VIDEOS, public_results

#: Derived values kept (each page or filtered JSON is one).
MAX_DERIVED = 64


class BoardCache:
    def __init__(self, db: Database, *, min_category_videos: int = MIN_CATEGORY_VIDEOS):
        self.db = db
        self.min_category_videos = min_category_videos
        self._lock = threading.Lock()
        self._token: int | None = None
        self._entries: list[dict[str, Any]] = []
        #: key -> (token, value); at most MAX_DERIVED keys (a query string is a key).
        self._derived: dict[Any, tuple[int, Any]] = {}
        self._building: dict[Any, threading.Lock] = {}
        #: id -> ((updated_at, state), public submission); re-read only when that changes.
        self._rows: dict[int, tuple[tuple[float, str], dict[str, Any]]] = {}
        self._memo: dict[tuple[str, int], tuple[Any, Any]] = {}
        #: Results JSON documents parsed so far (tests read it).
        self.parsed = 0

    def _refresh(self) -> None:
        token = self.db.change_token()  # read first: a change after it only makes us rebuild again
        if token == self._token:
            return
        versions = self.db.versions()
        changed = [i for i, v in versions.items() if self._rows.get(i, (None,))[0] != v]
        if changed:
            rows = self.db.list_submissions(results=False, ids=changed)
            texts = self.db.results_json([r["id"] for r in rows if r["state"] == "finished"])
            for r in rows:
                if r["id"] in texts:
                    self.parsed += 1
                    r["results"] = public_results(
                        json.loads(texts[r["id"]]), min_category_videos=self.min_category_videos
                    )
                self._rows[r["id"]] = (versions[r["id"]], r)
        self._entries = [self._rows[i][1] for i in sorted(versions) if i in self._rows]
        self._token = token

    def per_entry(self, kind: str, entry: dict[str, Any], build: Callable[[dict[str, Any]], Any]) -> Any:
        """``build(entry)``, kept until that submission changes (e.g. its JSON on the board).

        Keyed on the entry object itself: a changed submission is a new object, and a build from
        an older snapshot (a request that began before the change) never stands for a newer one.
        """
        key = (kind, entry["id"])
        hit = self._memo.get(key)
        if hit is not None and hit[0] is entry:
            return hit[1]
        value = build(entry)
        self._memo[key] = (entry, value)
        return value

    def entries(self) -> list[dict[str, Any]]:
        """Every submission as :meth:`Database.list_submissions` gives it, results made public
        (do not modify them: they are shared)."""
        with self._lock:
            self._refresh()
            return self._entries

    def derived(self, key: Any, build: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """``build(entries)``, computed once per change of the board (see the module docstring)."""
        with self._lock:
            self._refresh()
            token, entries = self._token, self._entries
            have = self._derived.get(key)
            if have is not None and have[0] == token:
                return have[1]
            building = self._building.setdefault(key, threading.Lock())
        if not building.acquire(blocking=have is None):
            return have[1]  # type: ignore[index]  # being rebuilt: the previous version
        try:
            with self._lock:
                have = self._derived.get(key)
            if have is not None and have[0] is not None and token is not None and have[0] >= token:
                return have[1]
            value = build(entries)
            with self._lock:
                if len(self._derived) >= MAX_DERIVED and key not in self._derived:
                    oldest = next(iter(self._derived))
                    del self._derived[oldest]
                    lock = self._building.get(oldest)
                    if lock is not None and not lock.locked():
                        del self._building[oldest]
                self._derived[key] = (token, value)  # type: ignore[assignment]
            return value
        finally:
            building.release()

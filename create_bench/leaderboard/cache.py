"""The server's board cache (layer 5): board reads without parsing every stored results JSON.

Every state transition appends an event in the same transaction (:mod:`.db`), so the number of
events (:meth:`Database.change_token`, one ``count(*)``) changes exactly when some submission
changed: when it is unchanged, a request is answered from what was built for that token (the
entry list, and pages and JSON built from it). When it changed, the light columns of every
submission are re-read (no results JSON) and only results not seen before are parsed: a
finished submission's results never change, so each is parsed (and made public,
:func:`.publish.public_results`) once per process. Workers in other processes finish jobs;
the token sees it, so nothing needs to be told.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from create_bench.leaderboard.db import Database
from create_bench.leaderboard.publish import MIN_CATEGORY_VIDEOS, public_results


class BoardCache:
    def __init__(self, db: Database, *, min_category_videos: int = MIN_CATEGORY_VIDEOS):
        self.db = db
        self.min_category_videos = min_category_videos
        self._lock = threading.Lock()
        self._token: int | None = None
        self._entries: list[dict[str, Any]] = []
        self._derived: dict[Any, Any] = {}
        #: id -> (updated_at, public results); a finished row's results never change.
        self._results: dict[int, tuple[str | None, dict[str, Any] | None]] = {}
        #: Results JSON documents parsed so far (tests read it).
        self.parsed = 0

    def _refresh(self) -> None:
        token = self.db.change_token()  # read first: a change after it only makes us rebuild again
        if token == self._token:
            return
        subs = self.db.list_submissions(results=False)
        missing = [
            s["id"]
            for s in subs
            if s["state"] == "finished" and self._results.get(s["id"], (None,))[0] != s["updated_at"]
        ]
        texts = self.db.results_json(missing) if missing else {}
        for s in subs:
            if s["id"] in texts:
                self.parsed += 1
                public = public_results(
                    json.loads(texts[s["id"]]), min_category_videos=self.min_category_videos
                )
                self._results[s["id"]] = (s["updated_at"], public)
            if s["state"] == "finished" and s["id"] in self._results:
                s["results"] = self._results[s["id"]][1]
        self._entries = subs
        self._derived = {}
        self._token = token

    def entries(self) -> list[dict[str, Any]]:
        """Every submission as :meth:`Database.list_submissions` gives it, results made public
        (do not modify them: they are shared)."""
        with self._lock:
            self._refresh()
            return self._entries

    def derived(self, key: Any, build: Callable[[list[dict[str, Any]]], Any]) -> Any:
        """``build(entries)``, computed once per change of the board."""
        with self._lock:
            self._refresh()
            if key not in self._derived:
                self._derived[key] = build(self._entries)
            return self._derived[key]

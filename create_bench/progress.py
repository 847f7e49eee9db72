"""Progress reporting for long work (layer 0: stdlib; tqdm imported lazily).

On a terminal (stderr is a TTY) progress is a tqdm bar on stderr. Anywhere else (logs, CI,
``nohup``, a pipe) it is a plain line on stderr now and then, e.g.
``build: probed 1200/210493 videos (0.6%, 12.3 s, eta 2140 s)``: at most one line per
``min_gap`` seconds, one whenever another 10% is done or ``interval`` seconds have passed,
and always a last line.

The library is quiet by default: progress appears where a caller turns it on, either per call
(``enabled=True``) or for the whole process with :func:`configure` (the CLI does this, and
``create-bench --no-progress`` turns it off).

    >>> import io
    >>> out = io.StringIO()
    >>> sum(track(range(4), desc="demo: counted", unit="items", enabled=True, stream=out, min_gap=0))
    6
    >>> out.getvalue().splitlines()[-1].startswith("demo: counted 4/4 items (100%")
    True
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any, TypeVar

T = TypeVar("T")

#: Process default when a call passes ``enabled=None``: False (quiet), True (show).
_default_enabled = False


def configure(enabled: bool) -> bool:
    """Set the process default for calls that pass ``enabled=None``; returns the previous one."""
    global _default_enabled
    previous, _default_enabled = _default_enabled, bool(enabled)
    return previous


def is_enabled(enabled: bool | None = None) -> bool:
    """``enabled`` itself, or the process default when it is None."""
    return _default_enabled if enabled is None else bool(enabled)


class Progress:
    """Counts units of work done out of ``total`` (None: unknown) and reports them.

    Use as a context manager (or call :meth:`close`); :meth:`update` adds done units. ``eta=False``
    leaves the estimate out of plain lines (for steps of unequal length).
    """

    def __init__(
        self,
        desc: str,
        total: int | None = None,
        *,
        unit: str = "items",
        enabled: bool | None = None,
        stream: IO[str] | None = None,
        interval: float = 10.0,
        min_gap: float = 1.0,
        eta: bool = True,
    ) -> None:
        self.desc, self.total, self.unit = desc, total, unit
        self.n = 0
        self.note = ""
        self.stream = stream if stream is not None else sys.stderr
        self.interval, self.min_gap, self.eta = interval, min_gap, eta
        self._t0 = time.monotonic()
        self._last_t = self._t0
        self._last_decile = 0
        self._reported = -1  # the count of the last plain line
        self._bar: Any = None
        self._on = is_enabled(enabled)
        if self._on and _isatty(self.stream):
            try:
                from tqdm import tqdm
            except ImportError:  # plain lines then
                return
            self._bar = tqdm(total=total, desc=desc, unit=f" {unit}", file=self.stream, dynamic_ncols=True)

    def update(self, n: int = 1, note: str | None = None) -> None:
        """Add ``n`` done units; ``note`` (e.g. the step just finished) goes on the line or bar."""
        if not self._on:
            return
        self.n += n
        if note is not None:
            self.note = note
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            return
        now = time.monotonic()
        since = now - self._last_t
        decile = int(10 * self.n / self.total) if self.total else 0
        if since >= self.interval or (decile > self._last_decile and since >= self.min_gap):
            self._line(now)

    def close(self) -> None:
        if not self._on:
            return
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._reported != self.n:
            self._line(time.monotonic())
        self._on = False

    def _line(self, now: float) -> None:
        elapsed = now - self._t0
        text = f"{self.desc} {self.n}"
        if self.total:
            done = self.n / self.total
            text += f"/{self.total} {self.unit} ({100 * done:.0f}%, {elapsed:.1f} s"
            if self.eta and 0 < done < 1:
                text += f", eta {elapsed * (1 - done) / done:.0f} s"
            text += ")"
            self._last_decile = int(10 * done)
        else:
            text += f" {self.unit} ({elapsed:.1f} s)"
        if self.note:
            text += f": {self.note}"
        print(text, file=self.stream, flush=True)
        self._last_t, self._reported = now, self.n

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    iterable: Iterable[T],
    *,
    desc: str,
    total: int | None = None,
    unit: str = "items",
    enabled: bool | None = None,
    stream: IO[str] | None = None,
    interval: float = 10.0,
    min_gap: float = 1.0,
) -> Iterator[T]:
    """Yield the items of ``iterable``, counting one unit per item (see :class:`Progress`)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(
        desc, total, unit=unit, enabled=enabled, stream=stream, interval=interval, min_gap=min_gap
    ) as p:
        for item in iterable:
            yield item
            p.update()


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False

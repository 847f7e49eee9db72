"""Frame destinations and reader threads shared by the decoding API and its backends (layer 2).

A backend never imports :mod:`create_bench.video.decoding` (the module that dispatches to it); what
both need lives here: the ``out=`` sink protocol of ``decode`` and the helper that runs parallel
readers in threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

#: Where decoded frames go (see ``decode(out=...)``): an array, or a callable that is given the
#: frames' shape once it is known and returns an array of that shape (or None: a new array).
FrameSink = np.ndarray | Callable[[tuple[int, ...]], "np.ndarray | None"]


def in_threads(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Run ``jobs`` concurrently (the first in this thread) and return their results in order;
    the first job's exception (in job order) is raised after all have finished."""
    results: list[Any] = [None] * len(jobs)
    errors: list[BaseException | None] = [None] * len(jobs)

    def run(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except BaseException as e:  # re-raised below, in the caller's thread
            errors[i] = e.with_traceback(None)  # no frames (and their locals) kept alive

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, len(jobs))]
    for th in threads:
        th.start()
    run(0)
    for th in threads:
        th.join()
    first = next((e for e in errors if e is not None), None)
    errors.clear()  # no reference cycle (error -> traceback -> this frame -> errors -> error)
    if first is not None:
        try:
            raise first
        finally:
            first = None
    return results


def once_per_shape(out: FrameSink | None) -> FrameSink | None:
    """``out`` with a callable asked at most once per shape (a backend that wrote into the array
    it got is then recognised by identity, and no frames are copied onto themselves)."""
    if out is None or isinstance(out, np.ndarray):
        return out
    asked: dict[tuple[int, ...], np.ndarray | None] = {}

    def sink(shape: tuple[int, ...]) -> np.ndarray | None:
        if shape not in asked:
            asked[shape] = out(shape)
        return asked[shape]

    return sink


def sink_array(out: FrameSink | None, shape: tuple[int, ...]) -> np.ndarray | None:
    """The array of ``out`` to write frames of ``shape`` into, or None (the caller makes its own)."""
    if out is None:
        return None
    shape = tuple(int(x) for x in shape)
    arr = out if isinstance(out, np.ndarray) else out(shape)
    if (
        not isinstance(arr, np.ndarray)
        or arr.shape != shape
        or arr.dtype != np.uint8
        or not arr.flags.c_contiguous
        or not arr.flags.writeable
    ):
        return None
    return arr

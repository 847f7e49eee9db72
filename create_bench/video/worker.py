"""The killable decode worker (layer 2): a forked process with a shared-memory frame ring.

decord can hang or crash in native code on broken files, so ``decode(..., timeout=s)`` and
``decode_many`` run decodes in a separate worker process that is killed after ``timeout`` seconds
or when it dies. The worker is forked from this process (``os.fork``, not ``multiprocessing``, so it
also works inside daemonic DataLoader workers; a fresh interpreter where fork is unavailable or
this process holds a CUDA context). It is long-lived (one per calling thread), so its start-up
cost is paid once; a timeout or a crash kills it and the next call starts a new one.

Requests go down a pipe (encoded bytes raw, after a small pickled header); frames come back
through a shared-memory ring straight into the caller's array (:class:`_DecodeWorker`). This
module does not know the decoding API: the caller hands it the decode function to serve
(:func:`thread_worker`), so :mod:`create_bench.video.decoding` imports this module and not the
reverse.
"""

from __future__ import annotations

import atexit
import io
import math
import os
import select
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from create_bench.errors import (
    BackendUnavailable,
    ConfigError,
    CreateBenchError,
    DecodeTimeout,
    VideoDecodeError,
)
from create_bench.video.checks import first_line, source_label
from create_bench.video.frames import FrameSink, sink_array

#: The function the worker serves: ``decode(source, indices, out=..., **kwargs) -> frames``.
DecodeFn = Callable[..., np.ndarray]


def _bare_message(e: VideoDecodeError) -> str:
    """The message of a VideoDecodeError without its "(vid ..., source ...)" suffix."""
    text = str(e)
    if e.vid or e.source:
        suffix = str(VideoDecodeError("", vid=e.vid, source=e.source))
        if text.endswith(suffix):
            return text[: -len(suffix)]
    return text


#: Size of the shared ring that carries decoded frames from a forked worker (see _DecodeWorker).
_ARENA_BYTES = 64 << 20


class _DecodeWorker:
    """Parent side of the decode subprocess: length-framed pickles over two pipes.

    Frames come back through a shared-memory ring (``arena``, mapped before the fork, so both
    processes see it): the worker decodes straight into a free region of it and sends only a
    small header; this process copies the frames into their destination (a batch slot) and acks
    the region, which the worker may then reuse. That is one copy on each side, where a pipe
    costs two kernel copies plus the reader's. Frames that find no free region (larger than the
    ring, or the caller is slow to take results) and workers started without fork go through
    the result pipe instead.
    """

    def __init__(self, decode_fn: DecodeFn) -> None:
        self.decode_fn = decode_fn
        self.proc: Any = None
        self.tx: Any = None
        self.rx: Any = None
        self.arena: Any = None
        self.poller: Any = None  # select.poll on the result pipe (Connection.poll builds one per call)
        self.owner = -1
        self.next_id = 0

    def _start(self) -> None:
        from multiprocessing.connection import Connection

        req_r, req_w = os.pipe()
        res_r, res_w = os.pipe()
        for fd in (req_w, res_w):
            _grow_pipe(fd)
        try:
            if (
                hasattr(os, "fork")
                and os.environ.get("CREATE_BENCH_DECODE_WORKER", "fork") == "fork"
                and not _cuda_in_this_process()
            ):
                # Fork: instant start with decord/PyAV already imported. os.fork (not
                # multiprocessing) also works inside daemonic DataLoader workers.
                import mmap

                import av  # noqa: F401  (imported once here, inherited by every forked worker)
                import decord  # noqa: F401

                self.arena = mmap.mmap(-1, _ARENA_BYTES)  # anonymous and MAP_SHARED: the child sees it
                self.proc = _ForkedWorker(req_r, res_w, (req_w, res_r), self.arena, self.decode_fn)
            else:
                import subprocess
                import sys

                code = (
                    "import sys; from create_bench.video.decoding import decode; "
                    "from create_bench.video.worker import worker_main; "
                    "worker_main(int(sys.argv[1]), int(sys.argv[2]), None, decode)"
                )
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", code, str(req_r), str(res_w)],
                    pass_fds=(req_r, res_w),
                    close_fds=True,
                )
        finally:
            os.close(req_r)
            os.close(res_w)
        self.tx = Connection(req_w, readable=False)
        self.rx = Connection(res_r, writable=False)
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(res_r, select.POLLIN)
        self.owner = os.getpid()
        # Wait for the worker's imports, so a per-video timeout never counts the start-up.
        try:
            ready = self.rx.poll(_WORKER_START_TIMEOUT) and self.rx.recv() == "ready"
        except (EOFError, OSError):
            ready = False
        if not ready:
            self._stop()
            raise VideoDecodeError(
                f"the decode worker process did not start within {_WORKER_START_TIMEOUT:g} s"
            )

    def _stop(self) -> None:
        if self.proc is not None and self.owner == os.getpid():
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for conn in (self.tx, self.rx):
                try:
                    conn.close()
                except OSError:
                    pass
        # In a forked child the pipes belong to the parent's worker: just forget them.
        self.proc = self.tx = self.rx = self.arena = self.poller = (
            None  # (no view of the arena outlives a copy)
        )
        self.owner = -1

    def _ensure(self) -> None:
        if self.proc is None or self.owner != os.getpid() or self.proc.poll() is not None:
            self._stop()
            self._start()

    def _submit(self, req: tuple[bytes | str, list[int], dict[str, Any]]) -> int:
        self.next_id += 1
        src, indices, kw = req
        kw = {k: v for k, v in kw.items() if k != "out"}  # the destination stays in this process
        try:
            if isinstance(src, bytes):
                # Encoded bytes follow the request raw (no pickle copies of a large video).
                self.tx.send((self.next_id, len(src), indices, kw))
                _write_all(self.tx.fileno(), src)
            else:
                self.tx.send((self.next_id, src, indices, kw))
        except (BrokenPipeError, OSError):
            pass  # the worker died; receiving this request's result reports it
        return self.next_id

    def map(
        self,
        requests: Iterator[tuple[bytes | str, list[int], dict[str, Any]] | VideoDecodeError],
        timeout: float,
        window: int,
    ) -> Iterator[np.ndarray | CreateBenchError]:
        """Results in request order; at most ``window`` requests in the worker at a time.

        The worker's reader thread queues what it is sent, so submitting never waits for
        decoding. Ids tell this call's results from those of an abandoned earlier call.
        """
        import collections
        import time

        pending: collections.deque[list[Any]] = collections.deque()  # [request, id or None]
        in_flight = 0
        exhausted = False
        last = time.monotonic()  # when the worker could start the oldest request in flight
        while True:
            while not exhausted and in_flight < window:
                try:
                    req = next(requests)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(req, VideoDecodeError):
                    pending.append([req, None])
                    continue
                if in_flight == 0:
                    self._ensure()
                    last = time.monotonic()
                pending.append([req, self._submit(req)])
                in_flight += 1
            if not pending:
                return
            req, rid = pending.popleft()
            if rid is None:
                yield req
                continue
            in_flight -= 1
            src, _, kw = req
            vid = kw.get("vid")
            msg = self._receive(rid, last + timeout, kw.get("out"))
            last = time.monotonic()
            if msg is None or msg == "died":
                code = self.proc.wait() if msg == "died" and self.proc is not None else None
                self._stop()
                if msg is None:
                    yield DecodeTimeout(
                        f"decoding took longer than {timeout:g} s; the decoder was killed",
                        vid=vid,
                        source=source_label(src),
                    )
                else:
                    yield VideoDecodeError(
                        f"the decoder process died (exit code {code})", vid=vid, source=source_label(src)
                    )
                # Hand what the dead worker held to a fresh one, in order.
                if in_flight:
                    self._ensure()
                    last = time.monotonic()
                    for entry in pending:
                        if entry[1] is not None:
                            entry[1] = self._submit(entry[0])
                continue
            status, payload = msg
            if status == "ok":
                yield payload
                continue
            kind, message = payload
            if kind == "BackendUnavailable":
                raise BackendUnavailable(message)
            if kind == "ConfigError":
                raise ConfigError(message)
            yield VideoDecodeError(message, vid=vid, source=source_label(src))

    def _readable(self, timeout: float) -> bool:
        """A result (or EOF: the worker died) can be read within ``timeout`` seconds."""
        if self.poller is None:
            return bool(self.rx.poll(timeout))
        # Milliseconds, rounded up (a 0.4 ms wait must not become a non-blocking check).
        return bool(self.poller.poll(math.ceil(timeout * 1000)))

    def _take_frames(
        self, shape: tuple[int, ...], dtype: str, at: int | None, out: FrameSink | None
    ) -> np.ndarray:
        """The frames of a result whose header arrived: from the ring at offset ``at`` (then acked),
        or read raw from the pipe (``at`` None); into ``out`` when it fits (see ``decode``)."""
        dest = sink_array(out, shape) if out is not None and np.dtype(dtype) == np.uint8 else None
        if dest is None:
            dest = np.empty(shape, dtype=np.dtype(dtype))
        if at is None:
            _read_into(self.rx.fileno(), memoryview(dest).cast("B"))  # type: ignore[arg-type]
            return dest
        n = dest.nbytes
        src = np.frombuffer(self.arena, dtype=np.uint8, count=n, offset=at % len(self.arena))
        dest.reshape(-1).view(np.uint8)[:] = src
        del src  # no view of the ring outlives the copy
        try:
            self.tx.send(("ack", at + n))  # the worker may reuse the region now
        except (BrokenPipeError, OSError):
            pass
        return dest

    def _receive(self, rid: int, deadline: float, out: FrameSink | None = None) -> Any:
        """The result with id ``rid``; None on timeout; "died" if the worker went away. Frames are
        read into ``out`` when it gives an array of their shape (see ``decode``)."""
        import time

        while True:
            try:
                if not self._readable(max(0.0, deadline - time.monotonic())):
                    return None
                got_id, status, payload = self.rx.recv()
                if status == "ok":
                    shape, dtype, at = payload
                    if got_id != rid:  # a result of an abandoned earlier call: drain it, drop it
                        self._take_frames(shape, dtype, at, None)
                        continue
                    return status, self._take_frames(shape, dtype, at, out)
            except (EOFError, OSError):
                return "died"
            if got_id == rid:
                return status, payload
            # An error result of an abandoned earlier call: drop it.


class _ForkedWorker:
    """A forked decode worker with the small part of ``subprocess.Popen``'s API we use."""

    def __init__(
        self, req_fd: int, res_fd: int, close_in_child: tuple[int, ...], arena: Any, decode_fn: DecodeFn
    ):
        pid = os.fork()
        if pid == 0:  # child: serve requests, never return into the parent's code
            code = 0
            try:
                for fd in close_in_child:
                    os.close(fd)
                worker_main(req_fd, res_fd, arena, decode_fn)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        import signal

        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def wait(self) -> int:
        if self.returncode is None:
            try:
                _, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                self.returncode = -1
        return self.returncode


def _write_all(fd: int, data: bytes | memoryview) -> None:
    """Write raw bytes to a pipe (the reader knows their length from the pickled header before)."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _read_into(fd: int, view: memoryview) -> None:
    """Fill ``view`` from a pipe, reading straight into it (``Connection.recv_bytes_into`` would go
    through two intermediate copies)."""
    f = io.FileIO(fd, "rb", closefd=False)
    got, n = 0, len(view)
    while got < n:
        k = f.readinto(view[got:])
        if not k:
            raise EOFError("the decode worker closed the pipe mid-message")
        got += k


def _grow_pipe(fd: int, size: int = 1 << 20) -> None:
    """Linux: a 1 MiB pipe buffer, so a batch of frames crosses in a few writes, not dozens of
    64 KiB ping-pongs between the two processes (costly when the CPUs are busy)."""
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (OSError, ImportError):
        pass


def _die_with_parent() -> None:
    """Linux: have the kernel kill this process when its parent dies (even mid-hang in native code)."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


#: Set once this process decoded on NVDEC itself (``ctx="gpu"`` without a timeout).
_CUDA_USED = False


def mark_cuda_used() -> None:
    """This process may hold a CUDA context now (it decoded on NVDEC): later workers are not forked."""
    global _CUDA_USED
    _CUDA_USED = True


def _cuda_in_this_process() -> bool:
    """True when this process may hold a CUDA context (its own NVDEC decodes, or torch's): a
    forked child could not use CUDA then, so the decode worker starts as a fresh interpreter."""
    if _CUDA_USED:
        return True
    torch = sys.modules.get("torch")
    try:
        return bool(torch is not None and torch.cuda.is_initialized())
    except Exception:  # a stub or partly imported torch
        return False


# One worker per thread: calls from different threads never share a pipe, and the kernel's
# parent-death signal (sent when the *thread* that forked a worker exits) matches that lifetime.
_WORKERS = threading.local()
_ALL_WORKERS: list[_DecodeWorker] = []


def thread_worker(decode_fn: DecodeFn) -> _DecodeWorker:
    """This thread's decode worker (started on first use), which serves requests with ``decode_fn``."""
    w = getattr(_WORKERS, "worker", None)
    if w is None:
        w = _WORKERS.worker = _DecodeWorker(decode_fn)
        _ALL_WORKERS.append(w)
    return w


@atexit.register
def _stop_all_workers() -> None:
    for w in _ALL_WORKERS:
        w._stop()


#: Seconds the decode worker may take to start (import numpy, decord, PyAV).
_WORKER_START_TIMEOUT = 120.0


def worker_pid() -> int | None:
    """The pid of this thread's decode worker, or None when none is running (for tests/diagnostics)."""
    w = getattr(_WORKERS, "worker", None)
    proc = None if w is None else w.proc
    if w is None or proc is None or w.owner != os.getpid() or proc.poll() is not None:
        return None
    return int(proc.pid)


class _Ring:
    """The worker's side of the shared frame ring (see :class:`_DecodeWorker`).

    Regions are handed out in order at increasing positions (``start % size`` in the ring; a
    region never wraps). The parent takes results in the same order and acks the end of each
    region it copied, so everything before ``acked`` is free again.
    """

    def __init__(self, arena: Any):
        self.buf = np.frombuffer(arena, dtype=np.uint8)
        self.size = len(self.buf)
        self.end = 0  # end of the last region used (monotonic)
        self.acked = 0  # the parent copied everything before this (set by the reader thread)
        self.offered: tuple[int, np.ndarray] | None = None

    def sink(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """A free region for frames of ``shape``, or None (they go through the pipe)."""
        n = int(np.prod(shape))
        off = self.end % self.size
        start = self.end if off + n <= self.size else self.end + self.size - off
        if not 0 < n <= self.size or start + n - self.acked > self.size:
            return None
        view = self.buf[start % self.size : start % self.size + n].reshape(shape)
        self.offered = (start, view)
        return view

    def commit(self, frames: np.ndarray) -> int | None:
        """The ring position of ``frames`` when they were decoded into the region offered last."""
        if self.offered is None or frames is not self.offered[1]:
            return None
        start = self.offered[0]
        self.end, self.offered = start + frames.nbytes, None
        return start


def worker_main(req_fd: int, res_fd: int, arena: Any, decode_fn: DecodeFn) -> None:
    """The decode subprocess: serve ``decode_fn`` calls until the parent closes the pipe. With an
    ``arena`` (a shared mapping inherited through fork), frames go back through it."""
    from multiprocessing.connection import Connection

    _die_with_parent()
    rx, tx = Connection(req_fd, writable=False), Connection(res_fd, readable=False)
    import av  # noqa: F401  (import the decoders now: start-up is not part of any timeout)
    import decord  # noqa: F401

    tx.send("ready")
    import queue
    import threading

    # A reader thread drains requests as they come, so the parent can submit a batch at once
    # without either side blocking on a full pipe.
    inbox: queue.Queue[Any] = queue.Queue()
    ring = _Ring(arena) if arena is not None else None

    def read() -> None:
        while True:
            try:
                msg = rx.recv()
                if msg[0] == "ack":  # the parent copied a ring region: it is free again
                    if ring is not None:
                        ring.acked = max(ring.acked, msg[1])
                    continue
                rid, src, indices, kwargs = msg
                if isinstance(src, int):  # the encoded bytes follow raw (see _DecodeWorker._submit)
                    buf = bytearray(src)
                    _read_into(req_fd, memoryview(buf))
                    src = bytes(buf)
                inbox.put((rid, src, indices, kwargs))
            except (EOFError, OSError):
                inbox.put(None)
                return

    # A sender thread writes results, so decoding the next video never waits for the parent to
    # drain the pipe (it may not be scheduled for a while on a busy machine).
    outbox: queue.Queue[Any] = queue.Queue()

    def write() -> None:
        while True:
            item = outbox.get()
            if item is None:
                return
            result, frames = item
            try:
                tx.send(result)
                if frames is not None:  # raw bytes; the header gave their shape
                    _write_all(res_fd, memoryview(frames).cast("B"))  # type: ignore[arg-type]
            except (BrokenPipeError, OSError):
                os._exit(0)  # the parent is gone

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=write, daemon=True).start()
    while True:
        req = inbox.get()
        if req is None:
            outbox.put(None)
            return
        rid, src, indices, kwargs = req
        frames = None
        try:
            frames = decode_fn(src, indices, out=ring.sink if ring is not None else None, **kwargs)
            at = ring.commit(frames) if ring is not None else None
            if at is None:
                frames = np.ascontiguousarray(frames)
            result: tuple[int, str, Any] = (rid, "ok", (frames.shape, frames.dtype.str, at))
            if at is not None:
                frames = None  # already in the ring: only the header goes through the pipe
        except VideoDecodeError as e:
            # The parent re-raises with vid/source, so send the bare message.
            result = (rid, "err", ("VideoDecodeError", _bare_message(e)))
        except (BackendUnavailable, ConfigError) as e:
            result = (rid, "err", (type(e).__name__, str(e)))
        except Exception as e:  # anything else is still a failure to decode this video
            result = (rid, "err", ("VideoDecodeError", f"{type(e).__name__}: {first_line(e)}"))
        outbox.put((result, frames))


__all__ = ["DecodeFn", "mark_cuda_used", "thread_worker", "worker_main", "worker_pid"]

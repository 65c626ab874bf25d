"""A small process pool for whyrst's jobs: many captures, and single captures analysed in parts.

A *job* is a generator that yields lists of :class:`Call` (work for the processes) and receives, for
each list, the same calls with their outcome filled in; what it returns is the job's result. Between
two yields the job runs in the main process (merging what its calls returned). Many jobs run at once:
their calls share the processes, the most urgent first (``Call.priority``, lower first; then in the
order they were made).

Work of the main process's that the job's next calls do not need can be left to run while the
processes run them (:func:`meanwhile`).

A call may name the process it must run in (``Call.worker``): a job whose later calls need what an
earlier call left in a process (:func:`state`) sends them there. Everything else goes to whichever
process is free.

A process that dies (killed, out of memory, a crash in compiled code) fails the call it was running
and the calls waiting for it; a new process takes its place. Interrupting the main process ends the
others at once.

:class:`Inline` runs the same jobs in the calling process, one call after another (``-j 1``, tests).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

Job = Generator[list["Call"], list["Call"], Any]


@dataclass
class Call:
    """``fn(*args)`` in a worker process (``fn`` a module-level function, arguments picklable)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()
    worker: int | None = None  # the process it must run in (None: any)
    weight: int = 0  # bytes of the job's progress this call stands for
    priority: int = 0
    # filled in when done
    ok: bool = False
    value: Any = None
    error: str = ""
    ran_on: int = -1

    def result(self) -> Any:
        if not self.ok:
            raise CallFailed(self.error)
        return self.value


class CallFailed(Exception):
    pass


class Later:
    """``fn(*args)`` in the main process: run while the worker processes are at work (see :func:`meanwhile`),
    or when its result is first asked for."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn, self.args = fn, args
        self.done = False
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.value = self.fn(*self.args)
        except Exception as e:  # raised again where the result is asked for
            self.error = e
        self.fn, self.args = _nothing, ()  # (what it was given may go)

    def result(self) -> Any:
        self.run()
        if self.error is not None:
            raise self.error
        return self.value


def _nothing() -> None:
    pass


_LATER: deque[Later] = deque()


def meanwhile(fn: Callable[..., Any], *args: Any) -> Later:
    """Work of a job's in the main process that its next calls do not need: a :class:`Pool` runs it once
    those calls are handed to the processes, instead of leaving them idle while the job runs it (the job
    reads ``.result()`` when it needs it)."""
    later = Later(fn, args)
    _LATER.append(later)
    return later


def _run_later() -> None:
    while _LATER:
        _LATER.popleft().run()


@dataclass
class _Running:
    job_key: Any
    job: Job
    calls: list[Call]
    left: int
    credited: dict[int, int] = field(default_factory=dict)  # id(call) -> bytes already reported


# -- inside a worker process ---------------------------------------------------------------------------

_STATE: dict[Any, Any] = {}
_CONN: Connection | None = None
_CALL_ID = -1
_LAST_REPORT = 0.0
_PROGRESS_HOOK: Callable[[int], None] | None = None
_TRACE = bool(os.environ.get("WHYRST_TRACE"))  # each call's time on stderr
_EPOCH = time.perf_counter()  # (forked workers inherit it: the trace's times are since the main process began)


def _minor_faults() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def state() -> dict[Any, Any]:
    """A dict that lives as long as the process: where a call leaves what a later call in the same
    process reads (keys should name the job)."""
    return _STATE


def progress(done: int, force: bool = False) -> None:
    """Tell the main process how many bytes of the current call's weight are done (a few times a second
    at most)."""
    global _LAST_REPORT
    if _PROGRESS_HOOK is not None:
        _PROGRESS_HOOK(done)
        return
    if _CONN is None:
        return
    now = time.monotonic()
    if force or now - _LAST_REPORT >= 0.2:
        _LAST_REPORT = now
        with contextlib.suppress(OSError, ValueError):
            _CONN.send(("progress", _CALL_ID, int(done)))


def _worker_main(conn: Connection, initializer: Callable[[], None] | None) -> None:
    global _CONN, _CALL_ID
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    _CONN = conn
    if initializer is not None:
        initializer()
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        call_id, fn, args = msg
        _CALL_ID = call_id
        started, cpu = time.perf_counter(), time.process_time()
        faults = _minor_faults() if _TRACE else 0
        try:
            out = ("done", call_id, True, fn(*args), "")
        except BaseException as e:  # reported to the job, never fatal to the process
            out = ("done", call_id, False, None, _describe(e))
        if _TRACE:
            print(f"whyrst-worker {os.getpid()}: {fn.__name__} at {started - _EPOCH:.3f} s: "
                  f"{time.perf_counter() - started:.3f} s (CPU {time.process_time() - cpu:.3f} s, "
                  f"{_minor_faults() - faults} page faults)", file=sys.stderr, flush=True)
        try:
            conn.send(out)
        except Exception as e:  # a result that does not pickle
            conn.send(("done", call_id, False, None, f"result not sent: {_describe(e)}"))


def _describe(e: BaseException) -> str:
    from whyrst.errors import WhyrstError

    if isinstance(e, WhyrstError):
        return str(e)
    if os.environ.get("WHYRST_DEBUG"):
        return "".join(traceback.format_exception(e))
    return f"{type(e).__name__}: {e}"


# -- the main process ----------------------------------------------------------------------------------


class _Worker:
    def __init__(self, ctx: Any, index: int, initializer: Callable[[], None] | None) -> None:
        self.index = index
        parent, child = ctx.Pipe(duplex=True)
        self.conn = parent
        self.proc = ctx.Process(target=_worker_main, args=(child, initializer), daemon=True,
                                name=f"whyrst-worker-{index}")
        self.proc.start()
        child.close()
        self.call: Call | None = None
        self.call_id = -1
        self.released = False  # told to end (Pool.release)


def _start_method() -> str:
    # fork starts a worker in milliseconds with every module the main process loaded (numba's compiled
    # kernels included); it is only safe while the main process has one thread
    if sys.platform.startswith("linux") and threading.active_count() == 1:
        return "fork"
    return "forkserver" if sys.platform != "win32" else "spawn"


class Pool:
    """``n`` worker processes running the calls of jobs."""

    def __init__(self, n: int, initializer: Callable[[], None] | None = None) -> None:
        self.n = max(1, n)
        self._ctx = mp.get_context(_start_method())
        self._initializer = initializer
        self._workers = [_Worker(self._ctx, i, initializer) for i in range(self.n)]
        self._queue: list[tuple[int, int, Call, _Running]] = []
        self._sticky: list[deque[tuple[Call, _Running]]] = [deque() for _ in range(self.n)]
        self._seq = itertools.count()
        self._ids = itertools.count()
        self._calls: dict[int, tuple[Call, _Running]] = {}

    # -- running jobs -----------------------------------------------------------------------------------
    def run(self, jobs: Iterable[tuple[Any, Job]], progress: Callable[[int], None] | None = None,
            ) -> Iterator[tuple[Any, bool, Any]]:
        """Run every job; yield ``(key, ok, result or error text)`` as each finishes."""
        self._finished: deque[tuple[Any, bool, Any]] = deque()
        self._running = 0
        self._progress = progress
        try:
            yield from self._run(jobs)
        finally:  # left early (the caller stopped reading): processes still at work are replaced
            for w in self._workers:
                if w.call is not None:
                    w.proc.kill()
                    w.proc.join(5)
                    w.conn.close()
                    self._workers[w.index] = _Worker(self._ctx, w.index, self._initializer)
            self._queue.clear()
            for q in self._sticky:
                q.clear()
            self._calls.clear()

    def _run(self, jobs: Iterable[tuple[Any, Job]]) -> Iterator[tuple[Any, bool, Any]]:
        for key, job in jobs:
            self._advance(_Running(key, job, [], 0), None)
        while self._running or self._finished:
            while self._finished:
                yield self._finished.popleft()
            if not self._running:
                break
            self._dispatch()
            _run_later()  # (the main process's work for later, while the processes are at work)
            busy = [w.conn for w in self._workers if w.call is not None]
            if not busy:
                if self._finished:
                    continue
                raise RuntimeError("jobs wait for calls that were never made")
            for conn in wait(busy):
                w = next(x for x in self._workers if x.conn is conn)
                try:
                    msg = conn.recv()
                except (EOFError, OSError):
                    self._died(w)
                    continue
                if msg[0] == "progress":
                    self._progressed(*msg[1:])
                    continue
                _, call_id, ok, value, error = msg
                call, run = self._calls.pop(call_id)
                w.call = None
                call.ok, call.value, call.error, call.ran_on = ok, value, error, w.index
                self._completed(call, run)

    def _progressed(self, call_id: int, done: int) -> None:
        call, run = self._calls.get(call_id, (None, None))
        if call is None or run is None or self._progress is None:
            return
        before = run.credited.get(id(call), 0)
        now = min(done, call.weight)
        if now > before:
            run.credited[id(call)] = now
            self._progress(now - before)

    def _completed(self, call: Call, run: _Running) -> None:
        rest = call.weight - run.credited.pop(id(call), 0)
        if self._progress is not None and rest > 0:
            self._progress(rest)
        run.left -= 1
        if not run.left:
            self._running -= 1
            self._advance(run, run.calls)

    def _advance(self, run: _Running, outcome: list[Call] | None) -> None:
        """Resume a job: it makes its next calls, or finishes."""
        while True:
            try:
                calls = next(run.job) if outcome is None else run.job.send(outcome)
            except StopIteration as stop:
                self._finished.append((run.job_key, True, stop.value))
                return
            except Exception as e:
                self._finished.append((run.job_key, False, _describe(e)))
                return
            if calls:
                break
            outcome = []
        run.calls, run.left = calls, len(calls)
        self._running += 1
        for call in calls:
            if call.worker is not None:
                self._sticky[call.worker % self.n].append((call, run))
            else:
                heapq.heappush(self._queue, (call.priority, next(self._seq), call, run))

    def _dispatch(self) -> None:
        for w in self._workers:
            while w.call is None:
                if self._sticky[w.index]:
                    call, run = self._sticky[w.index].popleft()
                elif self._queue:
                    _, _, call, run = heapq.heappop(self._queue)
                else:
                    break
                call_id = next(self._ids)
                self._calls[call_id] = (call, run)
                w.call, w.call_id = call, call_id
                try:
                    w.conn.send((call_id, call.fn, call.args))
                except Exception as e:  # an argument that does not pickle, or a process already gone
                    self._calls.pop(call_id)
                    w.call = None
                    call.ok, call.error, call.ran_on = False, f"call not sent: {_describe(e)}", w.index
                    self._completed(call, run)

    def _died(self, w: _Worker) -> None:
        """A worker process ended under a call: fail it and what waited for that process; replace it."""
        w.proc.join(1)
        code = w.proc.exitcode
        why = f"the worker process died (exit status {code}{_signal_name(code)})"
        lost: list[tuple[Call, _Running]] = []
        if w.call is not None:
            lost.append(self._calls.pop(w.call_id))
        lost.extend(self._sticky[w.index])
        self._sticky[w.index].clear()
        w.conn.close()
        self._workers[w.index] = _Worker(self._ctx, w.index, self._initializer)
        for call, run in lost:
            call.ok, call.error, call.ran_on = False, why, w.index
            self._completed(call, run)

    # -- ending -----------------------------------------------------------------------------------------
    def release(self) -> None:
        """Tell the idle processes to end, without waiting for them (:meth:`close` does): they end while the
        caller does its last work (writing the report: a process's exit took 8-13 ms after a 2M-packet
        capture). No job may run afterwards."""
        for w in self._workers:
            if w.call is None and not w.released:
                w.released = True
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)

    def close(self, kill: bool | None = None) -> None:
        """End the processes: at once when ``kill`` (by default, when some are still running a call, as
        after an interruption), else once they are done."""
        if kill is None:
            kill = any(w.call is not None for w in self._workers)
        for w in self._workers:
            if kill:
                w.proc.kill()
            elif not w.released:
                with contextlib.suppress(OSError, ValueError):
                    w.conn.send(None)
        for w in self._workers:
            w.proc.join(None if not kill else 5)
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(5)
            w.conn.close()

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(kill=True if exc_type is not None else None)


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f", {signal.Signals(-code).name}"
        except ValueError:
            return ""
    return ""


class Inline:
    """The same interface, every call run in this process in turn."""

    n = 1

    def run(self, jobs: Iterable[tuple[Any, Job]], progress: Callable[[int], None] | None = None,
            ) -> Iterator[tuple[Any, bool, Any]]:
        global _PROGRESS_HOOK
        for key, job in jobs:
            outcome: list[Call] | None = None
            while True:
                try:
                    calls = next(job) if outcome is None else job.send(outcome)
                except StopIteration as stop:
                    yield key, True, stop.value
                    break
                except Exception as e:
                    yield key, False, _describe(e)
                    break
                for call in calls:
                    credited = 0

                    def hook(done: int, call: Call = call) -> None:
                        nonlocal credited
                        now = min(done, call.weight)
                        if progress is not None and now > credited:
                            progress(now - credited)
                        credited = max(credited, now)

                    _PROGRESS_HOOK = hook
                    try:
                        call.value, call.ok, call.ran_on = call.fn(*call.args), True, 0
                    except Exception as e:
                        call.ok, call.error = False, _describe(e)
                    finally:
                        _PROGRESS_HOOK = None
                    if progress is not None and call.weight > credited:
                        progress(call.weight - credited)
                _run_later()
                outcome = calls

    def close(self, kill: bool | None = None) -> None:
        pass

    def __enter__(self) -> Inline:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

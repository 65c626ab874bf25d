"""tracefs without a toolchain: an own trace instance with the TCP reset tracepoints, their formats, and
``trace_pipe`` lines parsed into typed events.

Shared by ``whyrst watch`` and ``whyrst lab``. An :class:`Instance` owns ``instances/whyrst-<purpose>-<pid>``
under the tracefs mount (mounted when needed): its own ring buffer, clock, event switches and filters, so
other tracers on the host (and other whyrst processes) are not disturbed. It is removed by
:meth:`Instance.close`, by ``with``, and at interpreter exit; instances left behind by a whyrst process that
died are removed by :func:`remove_stale`.

``tcp:tcp_send_reset`` carries ``enum sk_rst_reason`` (Linux >= 6.10). Its numbers differ between kernel
versions, so the names come from the event's ``format`` file (:func:`reason_names`), never from a table
here. ``trace_pipe`` prints them by name already; the table is for values printed as numbers (a kernel
newer than its own print format) and for whoever reads raw records.

Events are global: every network namespace's resets land in every instance. Callers filter by address.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import os
import re
import select
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from whyrst.errors import WhyrstError
from whyrst.proc import pid_alive

TRACEFS = "/sys/kernel/tracing"
LEGACY_TRACEFS = "/sys/kernel/debug/tracing"
RESET_EVENTS: tuple[str, ...] = ("tcp/tcp_send_reset", "tcp/tcp_receive_reset")
INSTANCE_PREFIX = "whyrst-"


class TracefsError(WhyrstError):
    """tracefs cannot be used: the message names what is missing and how to get it."""


def ensure_mounted(path: str = TRACEFS) -> str:
    """The tracefs mount point, mounting tracefs there when it is not mounted yet."""
    if os.path.isdir(os.path.join(path, "events")):
        return path
    if path == TRACEFS and os.path.isdir(os.path.join(LEGACY_TRACEFS, "events")):
        return LEGACY_TRACEFS
    if os.geteuid() != 0:
        raise TracefsError(f"tracefs is not mounted at {path} and mounting it needs root")
    try:
        subprocess.run(["mount", "-t", "tracefs", "nodev", path], check=True, capture_output=True, timeout=10)
    except subprocess.CalledProcessError as err:
        detail = (err.stderr or b"").decode(errors="replace").strip()
        raise TracefsError(f"cannot mount tracefs (mount -t tracefs nodev {path}): {detail or err}") from None
    except (OSError, subprocess.SubprocessError) as err:
        raise TracefsError(f"cannot mount tracefs (mount -t tracefs nodev {path}): {err}") from None
    if not os.path.isdir(os.path.join(path, "events")):
        raise TracefsError(f"tracefs at {path} has no events/ (a kernel without CONFIG_FTRACE events?)")
    return path


# -- formats ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    type: str
    name: str
    offset: int
    size: int
    signed: bool


@dataclass(slots=True)
class EventFormat:
    """An event's ``format`` file: its fields and the ``__print_symbolic`` tables of its print format."""

    system: str
    name: str
    id: int
    fields: dict[str, Field]
    print_fmt: str
    symbols: dict[str, dict[int, str]] = field(default_factory=dict)  # field -> value -> name

    def has(self, name: str) -> bool:
        return name in self.fields


_FIELD = re.compile(r"field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d)")
_SYMBOLIC = re.compile(r"__print_symbolic\(\s*REC->(?P<field>\w+)\s*,")
_PAIR = re.compile(r"\{\s*(?P<num>-?(?:0x[0-9a-fA-F]+|\d+))\s*,\s*\"(?P<name>[^\"]*)\"\s*\}")


def _symbolic_body(text: str, start: int) -> str:
    """The argument list of a ``__print_symbolic(`` call that opened just before ``start``."""
    depth = 1
    i = start
    while i < len(text) and depth:
        c = text[i]
        if c == '"':  # names never contain parentheses, but skip strings to be safe
            i = text.find('"', i + 1)
            if i < 0:
                break
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        i += 1
    return text[start:i]


def parse_format(text: str, system: str = "", name: str = "") -> EventFormat:
    """Parse the text of ``events/<system>/<event>/format``."""
    fields: dict[str, Field] = {}
    ev_id = -1
    print_fmt = ""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("name:"):
            name = name or s[5:].strip()
        elif s.startswith("ID:"):
            with contextlib.suppress(ValueError):
                ev_id = int(s[3:].strip())
        elif s.startswith("print fmt:"):
            print_fmt = s[len("print fmt:"):].strip()
        else:
            m = _FIELD.search(s)
            if m:
                decl = m.group("decl").strip()
                fname = re.sub(r"\[.*\]$", "", decl.split()[-1])
                fields[fname] = Field(decl, fname, int(m.group("off")), int(m.group("size")),
                                      m.group("signed") == "1")
    symbols: dict[str, dict[int, str]] = {}
    for m in _SYMBOLIC.finditer(print_fmt):
        body = _symbolic_body(print_fmt, m.end())
        # Tables written with C identifiers ({ TCP_ESTABLISHED, "..." }) have no number to learn from.
        pairs = {int(p.group("num"), 0): p.group("name") for p in _PAIR.finditer(body)}
        if pairs:
            symbols.setdefault(m.group("field"), {}).update(pairs)
    return EventFormat(system, name, ev_id, fields, print_fmt, symbols)


def read_format(system: str, event: str, root: str = TRACEFS) -> EventFormat:
    path = os.path.join(root, "events", system, event, "format")
    try:
        with open(path) as fh:
            return parse_format(fh.read(), system, event)
    except FileNotFoundError:
        raise TracefsError(f"this kernel has no {system}:{event} tracepoint ({path})") from None
    except PermissionError:
        raise TracefsError(f"cannot read {path}: needs root") from None


def reason_names(root: str = TRACEFS) -> dict[int, str]:
    """``enum sk_rst_reason`` value -> name on this kernel; empty before Linux 6.10 (no ``reason`` field)."""
    fmt = read_format("tcp", "tcp_send_reset", root)
    return dict(fmt.symbols.get("reason", {})) if fmt.has("reason") else {}


# -- events -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class TraceEvent:
    """One ``trace_pipe`` line; ``fields`` holds its printed ``key=value`` pairs as text."""

    system: str
    name: str
    ts: float  # seconds on the instance's trace clock
    cpu: int
    pid: int  # the task current when the event fired: a bystander in softirq/hardirq context
    comm: str
    irq_flags: str
    fields: dict[str, str]

    @property
    def softirq(self) -> bool:
        return any(c in self.irq_flags for c in "sH")

    @property
    def hardirq(self) -> bool:
        return any(c in self.irq_flags for c in "hHzZ")


@dataclass(slots=True)
class ResetEvent:
    """``tcp:tcp_send_reset`` (``direction="sent"``) or ``tcp:tcp_receive_reset`` (``"received"``), typed.

    ``local`` is this host's end of the connection and ``remote`` the peer's: a sent RST goes from ``local``
    to ``remote``, a received one came from ``remote``. ``state`` is None when there was no full socket
    (a sent RST for NO_SOCKET prints ``UNKNOWN``)."""

    direction: str
    ts: float
    cpu: int
    pid: int
    comm: str
    in_irq: bool  # softirq or hardirq: ``pid``/``comm`` did not cause it
    local: tuple[str, int]
    remote: tuple[str, int]
    state: str | None
    reason: str | None  # sk_rst_reason name; None for received RSTs and kernels before 6.10
    cookie: int = 0  # socket cookie (received)
    family: str = "AF_INET"
    skaddr: int = 0
    skbaddr: int = 0

    @property
    def src(self) -> tuple[str, int]:
        """The RST packet's source endpoint."""
        return self.local if self.direction == "sent" else self.remote

    @property
    def dst(self) -> tuple[str, int]:
        return self.remote if self.direction == "sent" else self.local

    @property
    def saddr(self) -> str:
        return self.src[0]

    @property
    def sport(self) -> int:
        return self.src[1]

    @property
    def daddr(self) -> str:
        return self.dst[0]

    @property
    def dport(self) -> int:
        return self.dst[1]


@dataclass(slots=True)
class StateChange:
    """``sock:inet_sock_set_state`` for TCP, typed."""

    ts: float
    cpu: int
    pid: int
    comm: str
    in_irq: bool
    local: tuple[str, int]
    remote: tuple[str, int]
    old: str
    new: str


@dataclass(slots=True)
class Lost:
    """``CPU:N [LOST M EVENTS]``: the ring buffer overran before the reader caught up."""

    cpu: int
    count: int


AnyEvent = ResetEvent | StateChange | TraceEvent | Lost

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s\d]\S{3,5})\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?P<event>[\w:]+):\s?(?P<rest>.*)$")
_LOST = re.compile(r"^\s*CPU:(\d+) \[LOST (\d+) EVENTS\]")


def parse_line(line: str) -> TraceEvent | Lost | None:
    """A ``trace_pipe`` line; None for anything else (headers, blank lines)."""
    m = _LINE.match(line)
    if m is None:
        lm = _LOST.match(line)
        return Lost(int(lm.group(1)), int(lm.group(2))) if lm else None
    system, _, name = m.group("event").rpartition(":")
    fields = {}
    for tok in m.group("rest").split():
        k, eq, v = tok.partition("=")
        if eq:
            fields[k] = v
    return TraceEvent(system, name, float(m.group("ts")), int(m.group("cpu")), int(m.group("pid")),
                      m.group("comm").strip(), m.group("flags") or "", fields)


def split_endpoint(text: str) -> tuple[str, int]:
    """``198.18.0.1:80`` or ``[2001:db8::1]:80`` -> (address, port); IPv4-mapped IPv6 as IPv4."""
    if text.startswith("["):
        addr, _, port = text[1:].partition("]:")
    else:
        addr, _, port = text.rpartition(":")
    if addr.startswith("::ffff:") and "." in addr:
        addr = addr[7:]
    try:
        return addr, int(port or 0)
    except ValueError:
        return addr, 0


def _pair(fields: dict[str, str], prefix: str) -> tuple[str, int]:
    """(address, port) from the sport/saddr/saddrv6 style of fields, by family."""
    try:
        port = int(fields.get(prefix[0] + "port", "0"))
    except ValueError:
        port = 0
    if fields.get("family") == "AF_INET6":
        a = fields.get(prefix + "v6", "")
        if a.startswith("::ffff:") and "." in a:
            a = a[7:]
        return a, port
    return fields.get(prefix, ""), port


def _hex(text: str | None) -> int:
    try:
        return int(text or "0", 16)
    except ValueError:
        return 0


def typed(ev: TraceEvent, reasons: dict[int, str] | None = None) -> ResetEvent | StateChange | TraceEvent:
    """The reset and state events as typed records; any other event as it came.

    ``reasons`` (from :func:`reason_names`) names a reason that the kernel printed as a number."""
    f = ev.fields
    irq = ev.softirq or ev.hardirq
    if ev.name == "tcp_send_reset":
        if "src" in f:  # 6.10+: src/dest are the RST's own, from the skb when there is no socket
            local, remote = split_endpoint(f["src"]), split_endpoint(f.get("dest", ":0"))
            family = "AF_INET6" if local[0].count(":") > 1 else "AF_INET"
        else:  # older kernels print the socket's sport/saddr fields
            local, remote = _pair(f, "saddr"), _pair(f, "daddr")
            family = f.get("family", "AF_INET")
        state = f.get("state")
        reason = f.get("reason")
        if reason is not None and reasons and reason.lstrip("-").isdigit():
            reason = reasons.get(int(reason), reason)
        return ResetEvent("sent", ev.ts, ev.cpu, ev.pid, ev.comm, irq, local, remote,
                          None if state in (None, "UNKNOWN") else state, reason, 0, family,
                          _hex(f.get("skaddr")), _hex(f.get("skbaddr")))
    if ev.name == "tcp_receive_reset":
        return ResetEvent("received", ev.ts, ev.cpu, ev.pid, ev.comm, irq, _pair(f, "saddr"), _pair(f, "daddr"),
                          f.get("state"), None, _hex(f.get("sock_cookie")), f.get("family", "AF_INET"),
                          _hex(f.get("skaddr")))
    if ev.name == "inet_sock_set_state":
        return StateChange(ev.ts, ev.cpu, ev.pid, ev.comm, irq, _pair(f, "saddr"), _pair(f, "daddr"),
                           f.get("oldstate", ""), f.get("newstate", ""))
    return ev


# -- the instance -------------------------------------------------------------------------------------


def instance_owner(name: str) -> int | None:
    """The pid in ``whyrst-<purpose>-<pid>[-suffix]``, or None when the name does not carry one."""
    if not name.startswith(INSTANCE_PREFIX):
        return None
    for part in reversed(name.split("-")[2:]):
        if part.isdigit():
            return int(part)
    return None


def remove_instance(path: str, attempts: int = 50) -> bool:
    """Switch an instance's events off and remove it; True when it is gone."""
    events = os.path.join(path, "events")
    with contextlib.suppress(OSError), open(os.path.join(path, "tracing_on"), "w") as fh:
        fh.write("0")
    with contextlib.suppress(OSError), open(os.path.join(events, "enable"), "w") as fh:
        fh.write("0")
    for _ in range(attempts):  # rmdir says EBUSY while a reader still holds trace_pipe open
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError as err:
            if err.errno != errno.EBUSY:
                return False
            time.sleep(0.02)
    return False


def remove_stale(prefix: str = INSTANCE_PREFIX, root: str | None = None, *, only_dead: bool = True) -> list[str]:
    """Remove instances named ``prefix*``; with ``only_dead`` only those whose owner process is gone.
    Returns the names removed."""
    try:
        base = os.path.join(root or ensure_mounted(), "instances")
        names = os.listdir(base)
    except (OSError, TracefsError):
        return []
    gone = []
    for n in names:
        if not n.startswith(prefix):
            continue
        pid = instance_owner(n)
        if only_dead and (pid is None or pid_alive(pid)):
            continue
        if remove_instance(os.path.join(base, n)):
            gone.append(n)
    return gone


class Instance:
    """An own tracefs instance with some events enabled, read through its ``trace_pipe``.

    >>> with Instance("lab") as tr:                 # doctest: +SKIP
    ...     for ev in tr.events(timeout=1.0):
    ...         print(ev)
    """

    def __init__(self, purpose: str, events: tuple[str, ...] = RESET_EVENTS, *,
                 filters: dict[str, str] | None = None, buffer_kb: int = 4096, clock: str = "mono",
                 root: str | None = None) -> None:
        self.root = ensure_mounted(root or TRACEFS)
        self.purpose = purpose
        self.name = f"{INSTANCE_PREFIX}{purpose}-{os.getpid()}"
        self.path = os.path.join(self.root, "instances", self.name)
        self.events_enabled = events
        self.lost = 0  # from the LOST lines seen so far
        self.parsed = 0
        self.clock = "local"
        self.wall_offset = 0.0
        self._fd = -1
        self._partial = b""
        self._closed = False
        self._lock = threading.Lock()
        remove_stale(root=self.root)
        try:
            os.mkdir(self.path)
        except FileExistsError:
            pass
        except OSError as err:
            raise TracefsError(f"cannot create the trace instance {self.path}: {err.strerror}") from None
        atexit.register(self.close)
        try:
            self._write("tracing_on", "0")
            with contextlib.suppress(OSError):
                self._write("buffer_size_kb", str(buffer_kb))
            try:
                self._write("trace_clock", clock)
                self.clock = clock
            except OSError:
                pass
            self.reasons = reason_names(self.root) if "tcp/tcp_send_reset" in events else {}
            for ev in events:
                system, _, event = ev.partition("/")
                if not os.path.isdir(os.path.join(self.path, "events", system, event)):
                    raise TracefsError(f"this kernel has no {system}:{event} tracepoint")
                flt = (filters or {}).get(ev)
                if flt:
                    self._write(f"events/{system}/{event}/filter", flt)
                self._write(f"events/{system}/{event}/enable", "1")
            self._fd = os.open(os.path.join(self.path, "trace_pipe"), os.O_RDONLY | os.O_NONBLOCK)
            self._calibrate()
            self._write("tracing_on", "1")
        except BaseException:
            self.close()
            raise

    def _write(self, rel: str, value: str) -> None:
        with open(os.path.join(self.path, rel), "w") as fh:
            fh.write(value)

    def _calibrate(self) -> None:
        """Offset from the trace clock to the wall clock (pcap timestamps are wall clock)."""
        clocks = {"mono": time.CLOCK_MONOTONIC, "mono_raw": time.CLOCK_MONOTONIC_RAW,
                  "boot": time.CLOCK_BOOTTIME, "tai": getattr(time, "CLOCK_TAI", time.CLOCK_REALTIME)}
        cid = clocks.get(self.clock)
        if cid is not None:
            self.wall_offset = time.time() - time.clock_gettime(cid)

    def format(self, event: str) -> EventFormat:
        system, _, name = event.partition("/")
        return read_format(system, name, self.root)

    @property
    def has_reason(self) -> bool:
        return self.format("tcp/tcp_send_reset").has("reason")

    def fileno(self) -> int:
        return self._fd

    def read_lines(self, max_bytes: int = 1 << 20) -> list[str]:
        """The complete lines available now (non-blocking)."""
        with self._lock:
            if self._fd < 0:
                return []
            chunks = []
            got = 0
            while got < max_bytes:
                try:
                    b = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    break
                except OSError as err:
                    if err.errno == errno.EINTR:
                        continue
                    raise
                if not b:
                    break
                chunks.append(b)
                got += len(b)
            if not chunks:
                return []
            data = self._partial + b"".join(chunks)
            head, sep, self._partial = data.rpartition(b"\n")
            return head.decode(errors="replace").split("\n") if sep else []

    def read(self, max_bytes: int = 1 << 20) -> list[AnyEvent]:
        """The events available now, typed (non-blocking). LOST markers are returned and counted in
        :attr:`lost`."""
        out: list[AnyEvent] = []
        for line in self.read_lines(max_bytes):
            ev = parse_line(line)
            if ev is None:
                continue
            if isinstance(ev, Lost):
                self.lost += ev.count
                out.append(ev)
                continue
            self.parsed += 1
            out.append(typed(ev, self.reasons))
        return out

    def wait(self, timeout: float | None) -> bool:
        """Wait until ``trace_pipe`` is readable; False on timeout."""
        if self._fd < 0:
            return False
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else int(timeout * 1000)))

    def events(self, timeout: float | None = None) -> Iterator[AnyEvent]:
        """Blocking iterator over typed events; ends after ``timeout`` seconds without any."""
        while self._fd >= 0:
            batch = self.read()
            if batch:
                yield from batch
                continue
            if not self.wait(timeout):
                return

    def buffer_stats(self) -> dict[str, int]:
        """The per-CPU ring buffer stats summed over CPUs: ``entries`` (written, not yet read), ``overrun``
        (overwritten before they were read), ``dropped events`` (refused while full), ``read events``."""
        total: dict[str, int] = {}
        base = os.path.join(self.path, "per_cpu")
        try:
            cpus = os.listdir(base)
        except OSError:
            return total
        for cpu in cpus:
            try:
                with open(os.path.join(base, cpu, "stats")) as fh:
                    for line in fh:
                        k, _, v = line.partition(":")
                        with contextlib.suppress(ValueError, IndexError):
                            total[k.strip()] = total.get(k.strip(), 0) + int(v.split()[0])
            except OSError:
                continue
        return total

    def overruns(self) -> int:
        """Events the ring buffer lost so far, from the per-CPU stats (overrun + dropped events)."""
        total = 0
        base = os.path.join(self.path, "per_cpu")
        try:
            cpus = os.listdir(base)
        except OSError:
            return 0
        for cpu in cpus:
            try:
                with open(os.path.join(base, cpu, "stats")) as fh:
                    for line in fh:
                        k, _, v = line.partition(":")
                        if k.strip() in ("overrun", "dropped events"):
                            total += int(v.split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total

    def to_wall(self, ts: float) -> float:
        """A trace timestamp on the wall clock (``time.time()``)."""
        return ts + self.wall_offset if self.clock in ("mono", "mono_raw", "boot", "tai") else time.time()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
        if os.path.isdir(self.path):
            for ev in self.events_enabled:
                with contextlib.suppress(OSError):
                    self._write(f"events/{ev}/enable", "0")
            remove_instance(self.path)
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Collector:
    """Reads an :class:`Instance` in a thread, so events are collected while the caller blocks elsewhere.

    ``keep`` chooses which typed events to keep (e.g. by address); LOST markers are always counted."""

    def __init__(self, instance: Instance, keep: Callable[[AnyEvent], bool] | None = None,
                 poll_interval: float = 0.05) -> None:
        self.instance = instance
        self.keep = keep
        self.poll_interval = poll_interval
        self._events: list[AnyEvent] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"tracefs-{instance.name}", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> Collector:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                batch = self.instance.read()
                if batch:
                    kept = [e for e in batch if isinstance(e, Lost) or self.keep is None or self.keep(e)]
                    with self._lock:
                        self._events.extend(kept)
                    continue
                self.instance.wait(self.poll_interval)
        except BaseException as err:  # the caller sees it through .error; a reader thread must not die silently
            self.error = err

    def drain(self, settle: float = 0.1) -> list[AnyEvent]:
        """The events collected so far (and taken), after waiting ``settle`` seconds for stragglers."""
        if settle > 0:
            time.sleep(settle)
        with self._lock:
            out, self._events = self._events, []
        return out

    def snapshot(self) -> list[AnyEvent]:
        with self._lock:
            return list(self._events)

    @property
    def lost(self) -> int:
        return max(self.instance.lost, self.instance.overruns())

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

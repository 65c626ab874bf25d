"""Who owns a TCP socket: ``/proc/<pid>/net/tcp*`` (one read per network namespace) gives tuple -> inode
and state, ``/proc/<pid>/fd`` gives inode -> process.

The tracepoints carry addresses but no process for the resets the kernel sends from softirq context
(timers, replies to incoming packets). By the time such a reset is reported its socket is often gone,
so the owner must be known *before*: :class:`SocketTable` keeps a cache that :meth:`refresh` updates
cheaply (the tables are re-read, but process fd lists are scanned only when an unknown inode appears,
and at most every ``fd_scan_interval`` seconds) and that remembers departed sockets for a while.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

# Linux TCP states as printed in /proc/net/tcp (include/net/tcp_states.h); stable across versions.
TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
    7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING", 12: "NEW_SYN_RECV",
}

Endpoint = tuple[str, int]


@dataclass
class Owner:
    pid: int
    comm: str


@dataclass
class SockInfo:
    local: Endpoint
    remote: Endpoint
    state: str
    inode: int
    netns: int
    owner: Owner | None = None
    seen: float = 0.0


def _hex_addr(text: str) -> Endpoint:
    addr, port = text.split(":")
    raw = bytes.fromhex(addr)
    if len(raw) == 4:
        ip = ".".join(str(b) for b in raw[::-1])
    else:
        # four host-order 32-bit words
        words = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
        import ipaddress

        a6 = ipaddress.IPv6Address(words)
        ip = str(a6.ipv4_mapped) if a6.ipv4_mapped else str(a6)
    return ip, int(port, 16)


def parse_proc_tcp(text: str, netns: int = 0) -> list[SockInfo]:
    """The sockets listed in one /proc/net/tcp or tcp6 file."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 10:
            continue
        try:
            out.append(SockInfo(_hex_addr(f[1]), _hex_addr(f[2]), TCP_STATES.get(int(f[3], 16), f[3]),
                                int(f[9]), netns))
        except ValueError:
            continue
    return out


NETNS_DIR = "/var/run/netns"


def read_net_files(where: str, names: tuple[str, ...]) -> list[str]:
    """/proc/<pid>/net/<name> for a pid, or read from inside the namespace a path (ip netns) names."""
    if not where.startswith("/"):
        out = []
        for name in names:
            try:
                with open(f"/proc/{where}/net/{name}") as fh:
                    out.append(fh.read())
            except OSError:
                continue
        return out
    return _read_in_netns(where, names)


def _read_in_netns(path: str, names: tuple[str, ...]) -> list[str]:
    """/proc/thread-self/net/<name> read from inside the namespace at ``path`` (this thread only)."""
    from whyrst.live.wire import _setns

    out: list[str] = []
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    except OSError:
        return out
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            for name in names:
                try:
                    with open(f"/proc/thread-self/net/{name}") as fh:
                        out.append(fh.read())
                except OSError:
                    continue
        finally:
            _setns(home)
    except OSError:
        pass
    finally:
        os.close(home)
    return out


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


class SocketTable:
    """tuple -> socket (with owner), for every network namespace on the host."""

    def __init__(self, fd_scan_interval: float = 1.0, keep_gone: float = 120.0, max_gone: int = 200_000) -> None:
        self.fd_scan_interval = fd_scan_interval
        self.keep_gone = keep_gone
        self.max_gone = max_gone
        self.by_tuple: dict[tuple[Endpoint, Endpoint], SockInfo] = {}
        self.listeners: dict[int, SockInfo] = {}  # local port -> a LISTEN socket
        self.gone: dict[tuple[Endpoint, Endpoint], SockInfo] = {}  # departed sockets, oldest first
        self.gone_listeners: dict[int, float] = {}  # port -> when its listener was last seen
        self.owners: dict[int, Owner] = {}  # inode -> owner
        self._last_fd_scan = 0.0
        self._self_netns = self._netns_of("self")

    @staticmethod
    def _netns_of(pid: str) -> int:
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            return 0

    def _namespaces(self) -> dict[int, str]:
        """One pid per network namespace (the first met), to read that namespace's tables through."""
        seen: dict[int, str] = {self._self_netns: "self"}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            ns = self._netns_of(name)
            if ns and ns not in seen:
                seen[ns] = name
        return seen

    def namespaces(self) -> dict[int, str]:
        """Every network namespace a process lives in (-> a pid), and the named ones (ip netns, -> the
        path) that may hold sockets without a process inside."""
        namespaces = self._namespaces()
        try:
            named = [os.path.join(NETNS_DIR, n) for n in os.listdir(NETNS_DIR)]
        except OSError:
            named = []
        for path in named:
            try:
                ns = os.stat(path).st_ino
            except OSError:
                continue
            namespaces.setdefault(ns, path)
        return namespaces

    def _tables(self) -> list[tuple[int, str]]:
        """(namespace, text of /proc/net/tcp or tcp6) for every namespace."""
        out: list[tuple[int, str]] = []
        for ns, where in self.namespaces().items():
            out.extend((ns, text) for text in read_net_files(where, ("tcp", "tcp6")))
        return out

    def refresh(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        current: dict[tuple[Endpoint, Endpoint], SockInfo] = {}
        listeners: dict[int, SockInfo] = {}
        for ns, text in self._tables():
            for s in parse_proc_tcp(text, ns):
                s.seen = now
                if s.state == "LISTEN":
                    listeners[s.local[1]] = s
                    continue
                current[(s.local, s.remote)] = s
        unknown = [s for s in (*current.values(), *listeners.values()) if s.inode and s.inode not in self.owners]
        if unknown and now - self._last_fd_scan >= self.fd_scan_interval:
            self._scan_fds({s.inode for s in unknown})
            self._last_fd_scan = now
        for s in (*current.values(), *listeners.values()):
            s.owner = self.owners.get(s.inode)
            old = self.by_tuple.get((s.local, s.remote))
            if s.owner is None and old is not None and old.inode == s.inode:
                s.owner = old.owner
        for key, s in self.by_tuple.items():
            if key not in current:
                self.gone[key] = s
        for port, s in self.listeners.items():
            if port not in listeners:
                self.gone_listeners[port] = s.seen
        self.by_tuple, self.listeners = current, listeners
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self.gone and (len(self.gone) > self.max_gone
                             or now - next(iter(self.gone.values())).seen > self.keep_gone):
            self.gone.pop(next(iter(self.gone)))
        for port in [p for p, t in self.gone_listeners.items() if now - t > self.keep_gone]:
            del self.gone_listeners[port]
        live = {s.inode for s in self.by_tuple.values()} | {s.inode for s in self.listeners.values()}
        live |= {s.inode for s in self.gone.values()}
        if len(self.owners) > 4 * max(len(live), 1000):
            self.owners = {i: o for i, o in self.owners.items() if i in live}

    def _scan_fds(self, wanted: set[int]) -> None:
        """inode -> owner for the wanted socket inodes, reading fd links until all are found."""
        for name in os.listdir("/proc"):
            if not wanted:
                return
            if not name.isdigit():
                continue
            pid = int(name)
            fd_dir = f"/proc/{pid}/fd"
            try:
                fds = os.listdir(fd_dir)
            except OSError:
                continue
            comm = None
            for fd in fds:
                try:
                    link = os.readlink(f"{fd_dir}/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    if inode in wanted or inode not in self.owners:
                        if comm is None:
                            comm = _comm(pid)
                        self.owners.setdefault(inode, Owner(pid, comm))
                        wanted.discard(inode)

    def lookup(self, local: Endpoint, remote: Endpoint) -> tuple[SockInfo | None, bool]:
        """The socket with this tuple and whether it is still open (False: remembered after it went)."""
        s = self.by_tuple.get((local, remote))
        if s is not None:
            return s, True
        s = self.gone.get((local, remote))
        return s, False

    def listener(self, port: int) -> SockInfo | None:
        return self.listeners.get(port)

    def listener_gone(self, port: int) -> bool:
        return port in self.gone_listeners and port not in self.listeners

"""From kernel events and wire packets to explained resets.

Inputs, in any order and from several sources (:class:`Correlator` feeds):

* :class:`RstEvent` — a ``tcp:tcp_send_reset`` (``sent``) or ``tcp:tcp_receive_reset`` (``received``)
  event, always oriented as the RST travels: ``src`` sent it, ``dst`` received it;
* :class:`StateEvent` — a ``sock:inet_sock_set_state`` transition to CLOSE: which socket went away, from
  which state (the state a received RST found; a SYN_SENT socket closed before its SYN-ACK; a listener
  closed with connections in its queue);
* :class:`~whyrst.live.wire.WirePacket` — RSTs and received SYN-ACKs on the wire.

Every RST is held for ``hold`` seconds (the other sources catch up: a wire RST waits for its kernel
event, a received RST for the state its socket was in), then explained from the kernel's reason *and*
its context, because the reason alone is ambiguous (TCP_STATE is both an SO_LINGER 0 close and a
listener closed with a full queue; NO_SOCKET answers a SYN, a SYN-ACK or data alike).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from whyrst.capture.batch import ACK, RST, SYN
from whyrst.causes.catalog import BY_ID
from whyrst.live.sockets import SocketTable
from whyrst.live.wire import WirePacket, flags_text

Key = tuple[str, int, str, int]  # (sender, sender port, receiver, receiver port) of a RST

CLOSING_STATES = {"FIN_WAIT1", "FIN_WAIT2", "CLOSING", "LAST_ACK", "TIME_WAIT"}


def norm_state(name: str | None) -> str | None:
    """Tracepoint state names (TCP_ESTABLISHED) as ss and /proc print them (ESTABLISHED); None when the
    kernel had no socket."""
    if not name or name == "UNKNOWN":
        return None
    return name[4:] if name.startswith("TCP_") else name


@dataclass(slots=True)
class RstEvent:
    direction: str  # "sent" or "received"
    ts: float  # wall clock
    src: str
    sport: int
    dst: str
    dport: int
    state: str | None = None  # the sending socket's state (sent); None when there was no socket
    reason: str | None = None  # sk_rst_reason name (sent, Linux >= 6.10)
    pid: int = 0  # the task the event fired in
    comm: str = ""
    softirq: bool = False  # fired while handling a packet or a timer: the task is a bystander
    cookie: int = 0
    verdict: LiveReset | None = None  # explained once: explaining consumes counters and claims packets

    @property
    def key(self) -> Key:
        return (self.src, self.sport, self.dst, self.dport)


@dataclass(slots=True)
class StateEvent:
    ts: float
    local: tuple[str, int]
    remote: tuple[str, int]
    old: str
    new: str
    pid: int = 0
    comm: str = ""


@dataclass
class LiveReset:
    """One reset, explained: ``whyrst analyze``'s fields where they apply, plus the kernel's view."""

    ts: float
    direction: str
    src: str
    sport: int
    dst: str
    dport: int
    role: str
    sender: str
    cause: str
    confidence: float
    alternatives: list[tuple[str, float]]
    evidence: list[str]
    fix: list[str]
    confirm: list[str]
    kernel_reason: str | None
    state: str | None
    pid: int | None
    comm: str | None
    flags: str = ""
    seq: int | None = None
    ack: int | None = None
    ttl: int | None = None
    on_wire: bool = False
    netns: str | None = None
    owner_note: str = ""  # why no process is named

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": round(self.ts, 6), "direction": self.direction, "src": self.src, "sport": self.sport,
            "dst": self.dst, "dport": self.dport, "role": self.role, "sender": self.sender, "cause": self.cause,
            "confidence": round(self.confidence, 2),
            "alternatives": [{"cause": c, "confidence": round(p, 2)} for c, p in self.alternatives],
            "evidence": self.evidence, "fix": self.fix, "confirm": self.confirm,
            "kernel_reason": self.kernel_reason, "state": self.state, "pid": self.pid, "comm": self.comm,
            "flags": self.flags, "seq": self.seq, "ack": self.ack, "ttl": self.ttl, "on_wire": self.on_wire,
            "netns": self.netns, "owner_note": self.owner_note,
        }


class TwoAge:
    """key -> items, forgotten after one to two ``keep`` periods (two generations: O(1) expiry)."""

    def __init__(self, keep: float) -> None:
        self.keep = keep
        self.cur: dict[Any, list[Any]] = {}
        self.old: dict[Any, list[Any]] = {}
        self.turned = time.monotonic()

    def add(self, key: Any, item: Any) -> None:
        self.cur.setdefault(key, []).append(item)

    def get(self, key: Any) -> list[Any]:
        a, b = self.old.get(key), self.cur.get(key)
        if a and b:
            return a + b
        return a or b or []

    def tick(self, now: float) -> None:
        if now - self.turned >= self.keep:
            self.old, self.cur = self.cur, {}
            self.turned = now


@dataclass(slots=True)
class _Pending:
    due: float
    item: RstEvent | WirePacket


@dataclass
class Counters:
    """nstat counter deltas not yet attributed to a reset (kernels without reasons)."""

    budget: dict[str, int] = field(default_factory=dict)

    def take(self, *names: str) -> str | None:
        for n in names:
            if self.budget.get(n, 0) > 0:
                self.budget[n] -= 1
                return n
        return None


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            lo, hi = fh.read().split()
            return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


class Correlator:
    """Joins the sources and explains each RST once its hold time has passed."""

    def __init__(self, emit: Callable[[LiveReset], None], *, hold: float = 0.3, wire_hold: float = 0.8,
                 sockets: SocketTable | None = None, wire: bool = False, reasons: bool = True,
                 accept: Callable[[str, str], bool] | None = None) -> None:
        self.emit = emit
        self.hold = hold
        self.wire_hold = wire_hold
        self.sockets = sockets
        self.wire = wire
        self.reasons = reasons
        self.accept = accept or (lambda a, b: True)
        self.pending: deque[_Pending] = deque()  # kernel events
        self.pending_wire: deque[_Pending] = deque()
        self.sent: TwoAge = TwoAge(5.0)  # key -> RstEvent
        self.sent_listen: TwoAge = TwoAge(5.0)  # listener port -> RstEvent with no peer address
        self.claimed: set[int] = set()  # id() of listener events and wire packets already paired
        self.received: TwoAge = TwoAge(5.0)
        self.wire_out: TwoAge = TwoAge(5.0)  # key -> WirePacket leaving
        self.wire_in: TwoAge = TwoAge(5.0)
        self.synacks: TwoAge = TwoAge(90.0)  # (src, sport, dst, dport) of received SYN-ACKs -> ts
        self.closed: TwoAge = TwoAge(120.0)  # (local, remote) -> StateEvent
        self.listen_closed: TwoAge = TwoAge(5.0)  # port -> StateEvent
        self.refusals: TwoAge = TwoAge(10.0)  # remote address -> local ports it was refused on
        self.counters = Counters()
        self.eph_lo, self.eph_hi = _ephemeral_range()
        self.emitted = 0
        self.forwarded = 0

    # -- feeding ---------------------------------------------------------------------------------------

    def add_rst(self, ev: RstEvent, now: float | None = None) -> None:
        if not self.accept(ev.src, ev.dst):
            return
        now = time.monotonic() if now is None else now
        if ev.direction == "sent" and ev.dport == 0 and ev.dst in ("0.0.0.0", "::"):
            # Reset on behalf of a listener (INVALID_SYN): the kernel reports the listener's own
            # addresses, so the peer comes from the wire when it is there.
            self.sent_listen.add(ev.sport, ev)
        else:
            (self.sent if ev.direction == "sent" else self.received).add(ev.key, ev)
        self.pending.append(_Pending(now + self.hold, ev))

    def add_state(self, ev: StateEvent) -> None:
        if ev.old == "LISTEN":
            self.listen_closed.add(ev.local[1], ev)
        elif self.accept(ev.local[0], ev.remote[0]):
            self.closed.add((ev.local, ev.remote), ev)

    def add_wire(self, p: WirePacket, now: float | None = None) -> None:
        if not self.accept(p.src, p.dst):
            return
        now = time.monotonic() if now is None else now
        key = (p.src, p.sport, p.dst, p.dport)
        if not p.flags & RST:
            if p.flags & SYN and p.flags & ACK and not p.outgoing:
                self.synacks.add(key, p.ts)
            return
        (self.wire_out if p.outgoing else self.wire_in).add(key, p)
        self.pending_wire.append(_Pending(now + self.wire_hold, p))

    def add_counters(self, deltas: dict[str, int]) -> None:
        for k, v in deltas.items():
            if v > 0:
                self.counters.budget[k] = self.counters.budget.get(k, 0) + v

    def flush(self, now: float | None = None, everything: bool = False) -> int:
        """Explain and emit what has waited long enough; all of it when ``everything``."""
        now = time.monotonic() if now is None else now
        n = 0
        if len(self.claimed) > 100_000:
            self.claimed.clear()
        for t in (self.sent, self.sent_listen, self.received, self.wire_out, self.wire_in, self.synacks, self.closed,
                  self.listen_closed, self.refusals):
            t.tick(now)
        # Two queues, each in due order (kernel events wait less than wire packets): merge their heads.
        kq, wq = self.pending, self.pending_wire
        while kq or wq:
            q = kq if kq and (not wq or kq[0].due <= wq[0].due) else wq
            if not everything and q[0].due > now:
                break
            r = self._explain(q.popleft().item)
            if r is not None:
                self.emitted += 1
                n += 1
                self.emit(r)
        return n

    # -- joining ------------------------------------------------------------------------------------

    @staticmethod
    def _near(items: list[Any], ts: float, window: float) -> Any:
        best = None
        for it in items:
            if abs(it.ts - ts) <= window and (best is None or abs(it.ts - ts) < abs(best.ts - ts)):
                best = it
        return best

    def _wire_for(self, ev: RstEvent) -> WirePacket | None:
        table = self.wire_out if ev.direction == "sent" else self.wire_in
        return self._near(table.get(ev.key), ev.ts, 2.0)

    def _pair_listener_event(self, ev: RstEvent) -> WirePacket | None:
        """The wire RST a listener's reset event (no peer address) stands for: the nearest unclaimed one
        leaving the listener's port."""
        best = None
        for items in (self.wire_out.old, self.wire_out.cur):
            for (src, sport, _dst, _dport), ws in items.items():
                if sport != ev.sport or (ev.src not in ("0.0.0.0", "::") and src != ev.src):
                    continue
                for w in ws:
                    if id(w) in self.claimed or abs(w.ts - ev.ts) > 1.0:
                        continue
                    if best is None or abs(w.ts - ev.ts) < abs(best.ts - ev.ts):
                        best = w
        if best is not None:
            self.claimed.update((id(best), id(ev)))
        return best

    def _pair_listener_received(self, ev: RstEvent) -> RstEvent | None:
        """Without the wire, the peer of a listener's reset when that peer is on this host too: the RST
        it received from the listener's port at the same moment."""
        for items in (self.received.old, self.received.cur):
            for (src, sport, _dst, _dport), rs in items.items():
                if sport != ev.sport or (ev.src not in ("0.0.0.0", "::") and src != ev.src):
                    continue
                for r in rs:
                    if id(r) not in self.claimed and abs(r.ts - ev.ts) <= 0.05:
                        self.claimed.update((id(r), id(ev)))
                        return r
        return None

    def _pair_wire_listener(self, w: WirePacket) -> RstEvent | None:
        for ev in self.sent_listen.get(w.sport):
            if id(ev) in self.claimed or abs(w.ts - ev.ts) > 1.0:
                continue
            if ev.src in ("0.0.0.0", "::", w.src):
                self.claimed.update((id(w), id(ev)))
                return ev
        return None

    def _closed_before(self, local: tuple[str, int], remote: tuple[str, int], ts: float,
                       window: float = 120.0) -> StateEvent | None:
        best = None
        for s in self.closed.get((local, remote)):
            if ts - window <= s.ts <= ts + 0.001 and (best is None or s.ts > best.ts):
                best = s
        return best

    def _closed_after(self, local: tuple[str, int], remote: tuple[str, int], ts: float) -> StateEvent | None:
        for s in self.closed.get((local, remote)):
            if ts - 0.001 <= s.ts <= ts + 1.0:
                return s
        return None

    def _listener_closed(self, ev: RstEvent) -> StateEvent | None:
        for s in self.listen_closed.get(ev.sport):
            if ev.ts - 2.0 <= s.ts <= ev.ts + 0.001 and s.local[0] in (ev.src, "0.0.0.0", "::"):
                return s
        return None

    # -- explaining ---------------------------------------------------------------------------------

    def _explain(self, item: RstEvent | WirePacket) -> LiveReset | None:
        if isinstance(item, WirePacket):
            return self._explain_wire(item)
        if item.direction == "sent":
            return self._explain_sent(item)
        return self._explain_received(item)

    def _owner(self, ev: RstEvent, local: tuple[str, int],
               remote: tuple[str, int]) -> tuple[int | None, str | None, str]:
        if ev.direction == "sent" and ev.pid and not ev.softirq and ev.state is not None:
            # The event fired in a system call (close, shutdown, setsockopt): that task owned the socket.
            return ev.pid, ev.comm, ""
        if self.sockets is not None:
            s, alive = self.sockets.lookup(local, remote)
            if s is not None and s.owner is not None:
                return s.owner.pid, s.owner.comm, "" if alive else "the socket is closed; its owner as last seen"
            if ev.state == "LISTEN" or ev.reason == "INVALID_SYN":
                lst = self.sockets.listener(local[1])
                if lst is not None and lst.owner is not None:
                    return lst.owner.pid, lst.owner.comm, ""
        if ev.state == "TIME_WAIT":
            return None, None, "no process owns a TIME_WAIT socket: the application had closed it"
        if ev.state is None and ev.direction == "sent":
            return None, None, "no socket: the kernel answered for a connection nobody owns"
        return None, None, ("the socket was gone before its owner could be found (it lived less than the "
                            "socket table's refresh interval)")

    def _role(self, port: int, peer_port: int) -> str:
        mine = self.eph_lo <= port <= self.eph_hi
        theirs = self.eph_lo <= peer_port <= self.eph_hi
        if mine and not theirs:
            return "client"
        if theirs and not mine:
            return "server"
        return "client" if port > peer_port else "server"

    def _result(self, ev: RstEvent, cause: str, conf: float, alts: list[tuple[str, float]],
                evidence: list[str], role: str | None, sender: str | None = None,
                w: WirePacket | None = None) -> LiveReset:
        c = BY_ID[cause]
        local = (ev.src, ev.sport) if ev.direction == "sent" else (ev.dst, ev.dport)
        remote = (ev.dst, ev.dport) if ev.direction == "sent" else (ev.src, ev.sport)
        pid, comm, note = self._owner(ev, local, remote)
        if role is None:
            role = self._role(ev.sport, ev.dport)
        return LiveReset(
            ts=ev.ts, direction=ev.direction, src=ev.src, sport=ev.sport, dst=ev.dst, dport=ev.dport, role=role,
            sender=sender or c.sender, cause=cause, confidence=conf,
            alternatives=[(a, p) for a, p in alts if a != cause], evidence=evidence, fix=list(c.fix),
            confirm=list(c.confirm), kernel_reason=ev.reason, state=ev.state, pid=pid, comm=comm,
            flags=flags_text(w.flags) if w else "", seq=w.seq if w else None, ack=w.ack if w else None,
            ttl=w.ttl if w else None, on_wire=w is not None, netns=w.netns if w else None, owner_note=note,
        )

    def _explain_sent(self, ev: RstEvent) -> LiveReset:
        if ev.verdict is None:
            ev.verdict = self._explain_sent_once(ev)
        return ev.verdict

    def _explain_sent_once(self, ev: RstEvent) -> LiveReset:
        if ev.dport == 0 and ev.dst in ("0.0.0.0", "::"):
            w = self._pair_listener_event(ev)
            peer = w if w is not None else self._pair_listener_received(ev)
            if peer is not None:
                ev.src, ev.dst, ev.dport = peer.src, peer.dst, peer.dport
        else:
            w = self._wire_for(ev)
        reason = ev.reason
        local, remote = (ev.src, ev.sport), (ev.dst, ev.dport)
        ev_text = f"The kernel reset it with reason {reason}" if reason else "The kernel reset it"
        where = f"in state {ev.state}" if ev.state else "with no socket for the segment it answered"
        evidence = [f"{ev_text} {where} (tcp:tcp_send_reset)."]
        if not self.reasons:
            evidence[0] = (f"The kernel reset it {where} (tcp:tcp_send_reset); this kernel gives no reason "
                           "(that needs Linux 6.10), so the cause comes from the state and nstat counters.")
            reason = self._reason_from_counters(ev)
            if reason and reason != "NO_SOCKET":
                evidence.append(f"Inferred {reason} from the nstat counters that moved with it.")
        if reason is None or reason == "NO_SOCKET":
            if reason is None and ev.state is not None:
                return self._by_state(ev, evidence, w)
            return self._no_socket(ev, evidence, w)
        if reason in ("TCP_STATE", "NOT_SPECIFIED"):
            lc = self._listener_closed(ev)
            if lc is not None:
                evidence.append(f"The listening socket on port {ev.sport} closed {max(ev.ts - lc.ts, 0) * 1000:.1f} ms "
                                f"before{' (by ' + lc.comm + ')' if lc.comm else ''}: this connection was waiting "
                                "in its accept queue and was reset with it.")
                return self._result(ev, "listen-close-queued", 0.9, [("abortive-close", 0.1)], evidence, "server",
                                    w=w)
            if reason == "NOT_SPECIFIED":
                return self._result(ev, "unknown", 0.5, [("listen-close-queued", 0.2)], evidence, None, w=w)
            prev = self._closed_before(local, remote, ev.ts, 1.0)
            if prev is not None:
                evidence.append(f"The socket went from {prev.old} to CLOSE by "
                                f"{'the application (' + ev.comm + ')' if ev.comm and not ev.softirq else 'the stack'} "
                                "just before: an abortive close (SO_LINGER {1, 0} then close(), or "
                                "a disconnect), which sends RST instead of FIN.")
            else:
                evidence.append("TCP_STATE is the reason of tcp_disconnect(): an SO_LINGER {1, 0} close or a "
                                "connect(AF_UNSPEC) on a connection that needed a reset.")
            return self._result(ev, "abortive-close", 0.85, [("listen-close-queued", 0.1)], evidence, None, w=w)
        if reason == "TCP_ABORT_ON_CLOSE":
            evidence.append("The application closed the socket with received data it never read: RFC 2525 "
                            "asks for a RST so the peer knows its data was not consumed.")
            return self._result(ev, "unread-data-close", 0.95, [], evidence, None, w=w)
        if reason == "TCP_ABORT_ON_LINGER":
            evidence.append("The socket waited in FIN_WAIT2 with TCP_LINGER2 < 0: the application chose an "
                            "abortive end instead of waiting for the peer's FIN.")
            return self._result(ev, "abortive-close", 0.8, [], evidence, None, w=w)
        if reason == "TCP_DISCONNECT_WITH_DATA":
            evidence.append("The application disconnected a connection that still had data in flight.")
            return self._result(ev, "abortive-close", 0.7, [("unread-data-close", 0.3)], evidence, None, w=w)
        if reason in ("TCP_ABORT_ON_DATA", "TCP_TIMEWAIT_SOCKET"):
            if reason == "TCP_TIMEWAIT_SOCKET":
                evidence.append("The segment reached a TIME_WAIT socket (or an orphaned FIN_WAIT2 kept as one) "
                                "that cannot take data: this side had already closed the connection.")
            else:
                evidence.append("Data arrived on a socket the application had already closed for reading.")
            return self._result(ev, "data-after-close", 0.9, [("half-open", 0.1)], evidence, None, w=w)
        if reason == "TCP_KEEPALIVE_TIMEOUT":
            evidence.append("Keepalive probes went unanswered for TCP_KEEPIDLE + TCP_KEEPCNT x TCP_KEEPINTVL: "
                            "the peer or the path is gone.")
            return self._result(ev, "keepalive-timeout", 0.95, [("idle-timeout", 0.1)], evidence, None, w=w)
        if reason == "INVALID_SYN":
            overflow = self.counters.take("TcpExtListenOverflows")
            if ev.state == "LISTEN" or ev.state is None:
                evidence.append(f"The listener on port {ev.sport} could not queue the connection whose handshake "
                                "just completed (with net.ipv4.tcp_abort_on_overflow=1 it resets instead of "
                                "dropping the final ACK).")
                if overflow:
                    evidence.append("nstat TcpExtListenOverflows rose at the same time.")
                if ev.dport == 0:
                    evidence.append("The kernel reports the listener's address, not the peer's (run with --wire "
                                    "to see whom it reset).")
                return self._result(ev, "accept-queue-overflow", 0.9 if overflow else 0.8, [("unknown", 0.2)],
                                    evidence, "server", w=w)
            return self._result(ev, "unknown", 0.4, [("accept-queue-overflow", 0.3)], evidence, None, w=w)
        if reason == "TCP_INVALID_ACK_SEQUENCE":
            evidence.append("A SYN_SENT socket received an ACK for a different connection (a challenge ACK from "
                            "a server that still holds the old connection on this 4-tuple).")
            return self._result(ev, "syn-existing-tuple", 0.85, [("half-open", 0.2)], evidence, "client", w=w)
        if reason == "TCP_FLAGS":
            evidence.append("A segment with flags that fit no connection (an ACK reaching a listener, or a "
                            "stray segment): the peer believes in a connection this host does not have.")
            return self._result(ev, "half-open", 0.6, [("nat-expired", 0.3), ("time-wait-assassination", 0.2)],
                                evidence, None, w=w)
        if reason in ("TCP_RFC7323_PAWS", "TCP_TOO_OLD_ACK", "TCP_OLD_ACK", "TCP_ACK_UNSENT_DATA"):
            evidence.append(f"{reason}: the segment's ACK or timestamp does not fit the handshake this host is "
                            "in: a stale segment from an earlier connection on the same 4-tuple.")
            return self._result(ev, "half-open", 0.4, [("syn-existing-tuple", 0.3), ("unknown", 0.3)], evidence,
                                None, w=w)
        if reason == "TCP_ABORT_ON_MEMORY":
            evidence.append("Too many orphaned sockets or too little TCP memory: the kernel dropped the "
                            "connection (tcp_max_orphans, tcp_mem).")
            return self._result(ev, "unknown", 0.6, [], evidence, None, w=w)
        if reason.startswith("MPTCP"):
            evidence.append(f"An MPTCP subflow reset ({reason}).")
            return self._result(ev, "unknown", 0.5, [], evidence, None, w=w)
        return self._result(ev, "unknown", 0.3, [], evidence, None, w=w)

    def _no_socket(self, ev: RstEvent, evidence: list[str], w: WirePacket | None) -> LiveReset:
        local, remote = (ev.src, ev.sport), (ev.dst, ev.dport)
        prev = self._closed_before(local, remote, ev.ts)
        # A SYN-ACK that arrived just before, for a tuple this host never had established.
        synack = [t for t in self.synacks.get((ev.dst, ev.dport, ev.src, ev.sport)) if ev.ts - 1.0 <= t <= ev.ts + 0.05]
        if prev is not None and prev.old != "SYN_SENT":
            synack = []
        if w is not None and w.flags & ACK and w.seq == 0:
            evidence.append(f"On the wire: {flags_text(w.flags)} with seq 0, the answer to a SYN for a port where "
                            "nothing listens.")
            return self._refusal(ev, evidence, w, 0.9)
        if synack or (prev is not None and prev.old == "SYN_SENT"):
            if synack:
                evidence.append("It answers the SYN-ACK this host received for a connection it no longer had.")
            if prev is not None and prev.old == "SYN_SENT":
                evidence.append(f"This host's socket for the connection was closed in SYN_SENT "
                                f"{max(ev.ts - prev.ts, 0):.2f} s earlier{' by ' + prev.comm if prev.comm else ''}: "
                                "the application gave up before the handshake completed.")
            return self._result(ev, "connect-then-close", 0.9, [("half-open", 0.1)], evidence, "client", w=w)
        if prev is not None and prev.old in CLOSING_STATES:
            evidence.append(f"This host closed the connection ({prev.old} -> CLOSE, {ev.ts - prev.ts:.2f} s "
                            "earlier) and the peer kept sending.")
            return self._result(ev, "data-after-close", 0.7, [("half-open", 0.3)], evidence, None, w=w)
        if prev is not None:
            evidence.append(f"This host dropped the connection ({prev.old} -> CLOSE, {ev.ts - prev.ts:.2f} s "
                            "earlier) and the peer, unaware, kept sending: a half-open connection.")
            return self._result(ev, "half-open", 0.75, [("data-after-close", 0.2), ("nat-expired", 0.1)], evidence,
                                None, w=w)
        if w is not None:
            evidence.append(f"On the wire: {flags_text(w.flags)} seq {w.seq} without ACK, the answer to a segment "
                            "(data or ACK) for a connection this host does not have.")
            return self._result(ev, "half-open", 0.7,
                                [("nat-expired", 0.3), ("time-wait-assassination", 0.2), ("data-after-close", 0.2)],
                                evidence, None, w=w)
        # Neither the wire nor the history says which segment it answered: the port tells what is likely.
        lst = self.sockets.listener(ev.sport) if self.sockets is not None else None
        if self.eph_lo <= ev.sport <= self.eph_hi and not (self.eph_lo <= ev.dport <= self.eph_hi):
            evidence.append(f"Without --wire the answered segment is unknown; port {ev.sport} is an ephemeral "
                            "(client) port, so it answers a server's SYN-ACK or data.")
            return self._result(ev, "half-open", 0.45, [("connect-then-close", 0.4), ("closed-port", 0.1)],
                                evidence, "client", w=w)
        if lst is not None:
            evidence.append(f"Port {ev.sport} has a listener on another address.")
        evidence.append("Without --wire the answered segment is unknown: a SYN makes this a closed port, data a "
                        "half-open connection.")
        return self._refusal(ev, evidence, w, 0.6)

    def _refusal(self, ev: RstEvent, evidence: list[str], w: WirePacket | None, conf: float) -> LiveReset:
        ports = self.refusals.get(ev.dst)
        if ev.sport not in ports:
            self.refusals.add(ev.dst, ev.sport)
            ports = self.refusals.get(ev.dst)
        if len(set(ports)) >= 5:
            evidence.append(f"{ev.dst} was refused on {len(set(ports))} different ports within seconds: a scan.")
            return self._result(ev, "scan", 0.7, [("closed-port", 0.3)], evidence, "server", w=w)
        alts = [("half-open", 0.3)] if conf < 0.8 else [("firewall-reject", 0.05)]
        return self._result(ev, "closed-port", conf, alts, evidence, "server", w=w)

    def _by_state(self, ev: RstEvent, evidence: list[str], w: WirePacket | None) -> LiveReset:
        """Kernels without reasons: the sending socket's state and the history decide."""
        st = ev.state
        if st == "LISTEN":
            return self._result(ev, "half-open", 0.5, [("accept-queue-overflow", 0.4)], evidence, "server", w=w)
        if st == "TIME_WAIT" or st in CLOSING_STATES:
            return self._result(ev, "data-after-close", 0.7, [("half-open", 0.2)], evidence, None, w=w)
        if st == "SYN_SENT":
            return self._result(ev, "syn-existing-tuple", 0.6, [], evidence, "client", w=w)
        if self._listener_closed(ev) is not None:
            evidence.append(f"The listener on port {ev.sport} closed just before.")
            return self._result(ev, "listen-close-queued", 0.8, [], evidence, "server", w=w)
        if st == "CLOSE":
            return self._result(ev, "abortive-close", 0.5, [("unread-data-close", 0.4)], evidence, None, w=w)
        if ev.softirq:
            return self._result(ev, "keepalive-timeout", 0.4, [("unknown", 0.3)], evidence, None, w=w)
        return self._result(ev, "unknown", 0.3, [], evidence, None, w=w)

    def _reason_from_counters(self, ev: RstEvent) -> str | None:
        st = ev.state
        if st is None:
            return "NO_SOCKET"
        if st == "CLOSE":
            n = self.counters.take("TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnData")
            return {"TcpExtTCPAbortOnClose": "TCP_ABORT_ON_CLOSE", "TcpExtTCPAbortOnData": "TCP_STATE"}.get(n or "")
        if st == "LISTEN" and self.counters.take("TcpExtListenOverflows"):
            return "INVALID_SYN"
        if st in ("FIN_WAIT1", "FIN_WAIT2") and self.counters.take("TcpExtTCPAbortOnData"):
            return "TCP_ABORT_ON_DATA"
        if st == "TIME_WAIT":
            return "TCP_TIMEWAIT_SOCKET"
        if ev.softirq and self.counters.take("TcpExtTCPAbortOnTimeout"):
            return "TCP_KEEPALIVE_TIMEOUT"
        return None

    def _peer_verdict(self, ev: RstEvent) -> LiveReset | None:
        """A received RST whose sender is on this host too (another namespace): the sender's explanation."""
        for s in self.sent.get(ev.key):
            if abs(s.ts - ev.ts) <= 2.0:
                return self._explain_sent(s)
        for s in self.sent_listen.get(ev.sport):
            if abs(s.ts - ev.ts) <= 0.5 and s.src in ("0.0.0.0", "::", ev.src):
                return self._explain_sent(s)
        for w in self.wire_out.get(ev.key):
            if abs(w.ts - ev.ts) <= 2.0 and self._local_origin(w) and not self._has_send_event(w):
                return self._explain_wire(w)
        return None

    def _explain_received(self, ev: RstEvent) -> LiveReset:
        local, remote = (ev.dst, ev.dport), (ev.src, ev.sport)
        after = self._closed_after(local, remote, ev.ts)
        if after is not None:
            ev.state = after.old
        elif self.sockets is not None:
            s, _ = self.sockets.lookup(local, remote)
            if s is not None:
                ev.state = s.state
        w = self._wire_for(ev)
        st = ev.state
        evidence = [f"This host received it{' in state ' + st if st else ''} (tcp:tcp_receive_reset)."]
        peer = self._peer_verdict(ev)
        if peer is not None:
            if peer.sender == "firewall" and peer.kernel_reason is None:
                evidence.append(f"Its sender {ev.src} is on this host too, where it left without a tcp_send_reset "
                                "event: not its TCP stack.")
                evidence.extend(peer.evidence)
            else:
                how = f" with reason {peer.kernel_reason}" if peer.kernel_reason else ""
                evidence.append(f"Its sender {ev.src} is on this host too, and its kernel sent it{how}.")
                evidence.extend(peer.evidence[1:])
            return self._result(ev, peer.cause, peer.confidence, peer.alternatives, evidence, peer.role,
                                peer.sender, w=w)
        if st == "SYN_SENT":
            evidence.append("It answers this host's SYN: the peer refused the connection (ECONNREFUSED).")
            return self._result(ev, "closed-port", 0.6, [("firewall-reject", 0.35)], evidence, "server", w=w)
        if st in ("CLOSE_WAIT", "LAST_ACK"):
            evidence.append("The peer had closed its side (FIN) and this host kept sending: the peer's stack "
                            "reset the data it could no longer deliver.")
            return self._result(ev, "data-after-close", 0.7, [("abortive-close", 0.2)], evidence, None, w=w)
        if st in ("FIN_WAIT1", "FIN_WAIT2", "CLOSING"):
            evidence.append("This host had closed its side; the peer reset instead of closing: it closed with "
                            "unread data or with SO_LINGER 0.")
            return self._result(ev, "unread-data-close", 0.45, [("abortive-close", 0.4)], evidence, None, w=w)
        if w is not None and not w.flags & ACK:
            evidence.append("On the wire it has no ACK flag: the peer's stack had no socket for the "
                            "connection (the answer to this host's data).")
            return self._result(ev, "half-open", 0.6, [("firewall-reject", 0.2), ("nat-expired", 0.2)], evidence,
                                None, w=w)
        if st == "ESTABLISHED":
            evidence.append("The peer aborted an established connection: an SO_LINGER 0 close, a close with "
                            "unread data, an idle timeout on the path, or lost state.")
            return self._result(ev, "abortive-close", 0.4,
                                [("unread-data-close", 0.3), ("idle-timeout", 0.25), ("half-open", 0.25)],
                                evidence, None, w=w)
        return self._result(ev, "unknown", 0.3, [], evidence, None, w=w)

    # -- wire-only resets --------------------------------------------------------------------------

    def _local_origin(self, w: WirePacket) -> bool:
        """Leaving, and not a forwarded copy of a RST that arrived on another interface just before."""
        for i in self.wire_in.get((w.src, w.sport, w.dst, w.dport)):
            if i.netns == w.netns and i.seq == w.seq and 0 <= w.ts - i.ts <= 0.5:
                return False
        return True

    def _has_send_event(self, w: WirePacket) -> bool:
        if any(abs(s.ts - w.ts) <= 2.0 for s in self.sent.get((w.src, w.sport, w.dst, w.dport))):
            return True
        return id(w) in self.claimed or self._pair_wire_listener(w) is not None

    def _explain_wire(self, w: WirePacket) -> LiveReset | None:
        key = (w.src, w.sport, w.dst, w.dport)
        if w.outgoing:
            if not self._local_origin(w):
                self.forwarded += 1
                return None
            if self._has_send_event(w):
                return None  # reported with its kernel event
            ev = RstEvent("sent", w.ts, w.src, w.sport, w.dst, w.dport)
            evidence = [f"Seen leaving {w.netns or 'this host'} ({w.ifname}) with no tcp:tcp_send_reset event: "
                        "the TCP stack did not send it. Netfilter's REJECT (nf_send_reset, iptables or nft "
                        "'reject with tcp reset') builds resets without that tracepoint."]
            if w.flags & ACK and w.seq == 0:
                evidence.append("It answers a SYN, as a closed port would: `iptables -S` / `nft list ruleset` "
                                "on this host show the REJECT rule.")
            return self._result(ev, "firewall-reject", 0.9, [("injected", 0.1)], evidence, "server" if
                                w.flags & ACK and w.seq == 0 else None, "firewall", w=w)
        # A copy of a RST this host sent to itself (loopback) or a RST the stack took: reported elsewhere.
        if any(abs(o.ts - w.ts) <= 0.5 and o.seq == w.seq for o in self.wire_out.get(key)):
            return None
        if any(abs(r.ts - w.ts) <= 2.0 for r in self.received.get(key)):
            return None
        ev = RstEvent("received", w.ts, w.src, w.sport, w.dst, w.dport)
        evidence = [f"Seen arriving on {w.ifname}{' in ' + w.netns if w.netns else ''} but no socket took it "
                    "(no tcp:tcp_receive_reset): it was outside the receive window (answered with a challenge "
                    "ACK), for a connection this host no longer has, or passing through."]
        return self._result(ev, "unknown", 0.4, [("injected", 0.3), ("half-open", 0.2)], evidence, None, w=w)


def group_counts(resets: Iterable[LiveReset]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in resets:
        counts[r.cause] = counts.get(r.cause, 0) + 1
    return counts

"""Connection tracking: every TCP connection, its endpoints, Zeek-compatible state and history.

The tracker consumes :class:`~whyrst.capture.batch.PacketBatch` objects in capture order and keeps
one :class:`Connection` per live 5-tuple. Connections end as Zeek ends them (the close delay after
both sides closed or one reset, the attempt timer, inactivity, a SYN that reuses the tuple), so a
tuple reused after a RST or FIN is a new connection with a new uid. Finished connections are handed
to ``on_finish``; nothing keeps them after that, so memory follows concurrent connections.

For each RST the tracker keeps a :class:`ResetContext`: the packets of its connection before it
(the handshake and a short ring of the latest), the few after it, and both endpoints' state, which
is what the cause catalog scores.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from whyrst.capture.batch import ACK, CWR, ECE, FIN, PSH, RST, SYN, URG, Kind, PacketBatch, address_text, inet_ntoa
from whyrst.tcp.seq import seq_delta, unwrap
from whyrst.tcp.state import (
    CLOSED,
    EP,
    ESTABLISHED,
    HANDSHAKE,
    INACTIVE,
    PARTIAL,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
    conn_state,
    step_for,
)
from whyrst.tcp.zeek import (
    ATTEMPT_DELAY,
    CLOSE_DELAY,
    CONNECTION_LINGER,
    INACTIVITY_HANDSHAKE,
    INACTIVITY_TIMEOUT,
    SESSION_TIMER,
    SYN_TIMEOUT,
    TOO_LARGE_SEQ_DELTA,
    likely_server_port,
)

# BLAKE2 itself: hashlib loads OpenSSL's library for its other algorithms (3 ms of every start)
try:
    from _blake2 import blake2b
except ImportError:  # (not CPython)
    from hashlib import blake2b

NS = 1_000_000_000
# Bounds of the connection table (each tracked connection costs about 2.5 KB of Python objects: measured with
# tracemalloc on a SYN flood, half SYN-only and half SYN + SYN-ACK).
# Half-open connections (only SYN and SYN-ACK seen) are what a spoofed SYN flood brings, one per packet or
# two, and nothing ever completes them: past MAX_HALF_OPEN of them at once the oldest are ended early (about
# 125 MB). Ending a half-open connection early changes nothing in its record (state S0 or S1, the same
# history and counters as when its attempt timer would have ended it) unless its handshake completes later.
# 50,000 handshakes in progress at once is far beyond a real server (Linux's SYN backlog default is at most
# 4096 per listener) and beyond what one capture sees outside a flood (at 10,000 new connections a second
# and a 100 ms round trip there are 1,000).
MAX_HALF_OPEN = 50_000
# All connections at once (established ones included): past this the oldest-idle tenth is evicted. 200,000
# connections are about 500 MB; a capture needs that many open at once only when it is crafted (each
# needs packets beyond the handshake) or from a very large vantage point (raise it with max_connections).
MAX_CONNECTIONS = 200_000
_SYN_TIMEOUT_NS = int(SYN_TIMEOUT * NS)
_LINGER_NS = int(CONNECTION_LINGER * NS)
_SESSION_TIMER_NS = int(SESSION_TIMER * NS)
HEAD_PACKETS = 6  # packets kept from the start of a connection (the handshake)
RING_PACKETS = 24  # latest packets kept for evidence
AFTER_PACKETS = 8  # packets kept after a RST
AFTER_NS = 30 * NS  # ...for at most this long

# History letters and the bit that says "already recorded" (Zeek's HIST_* masks).
H_SYN, H_FIN, H_RST, H_FIN_RST, H_DATA, H_ACK, H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40

FLAG_LETTERS = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (URG, "U"), (ECE, "E"), (CWR, "W"))


def flags_text(flags: int) -> str:
    """tcpdump's notation: S, S., P., R., F., '.' for a bare ACK, 'none' for no flags."""
    text = "".join(letter for bit, letter in FLAG_LETTERS if flags & bit)
    if flags & ACK:
        text += "."
    return text or "none"


@dataclass(slots=True)
class PacketRef:
    """One packet as evidence: enough to name it in a sentence and draw it in a ladder."""

    frame: int
    ts_ns: int
    from_orig: bool
    flags: int
    seq: int  # absolute
    ack: int  # absolute
    rel_seq: int  # relative to the sender's initial sequence number
    rel_ack: int  # relative to the receiver's initial sequence number (0 when no ACK)
    payload_len: int
    win: int
    ttl: int
    ip_id: int
    ts_val: int  # -1 when absent
    ts_ecr: int
    opt_mask: int
    payload: bytes = b""  # kept for RSTs (diagnostic text) and the first bytes of data


class Fingerprint:
    """What an endpoint's own stack looks like on the wire, to tell it from a box on the path.

    Compact, because a SYN flood keeps hundreds of thousands of them: the TTL counts are one (TTL, count)
    pair until a second TTL shows up (``ttls`` reads them as a dict either way), and the last IPv4 IDs are
    a tuple."""

    __slots__ = ("_ttl", "_ttl_n", "_ttls", "ip_ids", "last_ts_val", "mss", "packets", "sack_ok", "syn_opt_mask",
                 "syn_win", "uses_timestamps", "wscale", "zero_ip_ids")

    def __init__(self) -> None:
        self._ttl = -1  # the only TTL seen so far (while _ttls is None), with _ttl_n packets
        self._ttl_n = 0
        self._ttls: dict[int, int] | None = None  # TTL/hop limit -> packets (non-RST), once there are two
        self.ip_ids: tuple[int, ...] = ()  # last few IPv4 IDs (non-RST)
        self.zero_ip_ids = 0
        self.packets = 0
        self.syn_opt_mask = -1
        self.syn_win = -1
        self.mss = -1
        self.wscale = -1
        self.sack_ok = False
        self.uses_timestamps = False
        self.last_ts_val = -1

    @property
    def ttls(self) -> dict[int, int]:
        """TTL/hop limit -> packets (non-RST), in order of first sight (a new dict while there is one TTL)."""
        if self._ttls is not None:
            return self._ttls
        return {self._ttl: self._ttl_n} if self._ttl_n else {}

    def observe(self, ttl: int, ip_id: int, ts_val: int) -> None:
        self.packets += 1
        ttls = self._ttls
        if ttls is None:
            if not self._ttl_n or ttl == self._ttl:
                self._ttl, self._ttl_n = ttl, self._ttl_n + 1
            else:
                self._ttls = {self._ttl: self._ttl_n, ttl: 1}
        elif len(ttls) < 16 or ttl in ttls:
            ttls[ttl] = ttls.get(ttl, 0) + 1
        if ip_id >= 0:
            if ip_id == 0:
                self.zero_ip_ids += 1
            ids = self.ip_ids
            self.ip_ids = (*ids[1:], ip_id) if len(ids) >= 8 else (*ids, ip_id)
        if ts_val >= 0:
            self.uses_timestamps = True
            self.last_ts_val = ts_val

    def usual_ttl(self) -> int:
        if self._ttls is None:
            return self._ttl if self._ttl_n else -1
        return max(self._ttls, key=self._ttls.__getitem__) if self._ttls else -1


class Endpoint:
    """One side of a connection, with Zeek's sequence bookkeeping (64-bit unwrapped)."""

    __slots__ = (
        "_fp",
        "ack64",
        "addr",
        "blocks",
        "chk_cnt",
        "chk_thresh",
        "did_close",
        "fin_cnt",
        "fin_seq",
        "gap_cnt",
        "gap_thresh",
        "hist_last_fin",
        "hist_last_rst",
        "hist_last_syn",
        "ip_bytes",
        "is_orig",
        "last64",
        "last_ns",
        "payload_bytes",
        "pkts",
        "port",
        "prev_state",
        "reassem_upto",
        "rst_cnt",
        "rxmit_cnt",
        "rxmit_thresh",
        "seen_first",
        "start64",
        "state",
        "trim_upto",
        "win0_cnt",
        "win0_thresh",
        "window_scale",
    )

    def __init__(self, addr: bytes, port: int, is_orig: bool) -> None:
        self.addr = addr
        self.port = port
        self.is_orig = is_orig
        self.state = INACTIVE
        self.prev_state = INACTIVE
        self.start64 = self.last64 = self.ack64 = 0
        self.did_close = False
        self.fin_cnt = self.rst_cnt = 0
        self.fin_seq = 0
        self.hist_last_syn = self.hist_last_fin = self.hist_last_rst = 0
        self.rxmit_cnt = self.win0_cnt = self.gap_cnt = self.chk_cnt = 0
        self.rxmit_thresh = self.win0_thresh = self.gap_thresh = self.chk_thresh = 1
        self.seen_first = False
        self.window_scale = 0
        self.pkts = self.ip_bytes = self.payload_bytes = 0
        self.last_ns = 0
        self.reassem_upto = 1  # relative sequence up to which data was seen or declared missing
        self.trim_upto = 1
        # out-of-order data [lo, hi) above reassem_upto: a list once there is some (most endpoints never have any)
        self.blocks: list[tuple[int, int]] | tuple[()] = ()
        self._fp: Fingerprint | None = None  # made on first use: the peer of a spoofed SYN never sends a packet

    @property
    def fp(self) -> Fingerprint:
        fp = self._fp
        if fp is None:
            fp = self._fp = Fingerprint()
        return fp

    def set_state(self, new: EP) -> None:
        if new != self.state:
            self.prev_state = self.state
            self.state = new

    def init_seq(self, start32: int, last32: int) -> None:
        self.start64 = start32 & 0xFFFFFFFF
        self.ack64 = self.start64
        self.last64 = unwrap(last32, self.start64)

    def size(self, peer: Endpoint) -> int:
        """Zeek's endpoint size: bytes of sequence space sent, less SYN and FIN."""
        if (self.prev_state == SYN_SENT and self.state == RESET and peer.state == INACTIVE
                and self.ack64 > self.start64 + 1):
            return 0
        size = max(self.last64, self.ack64) - self.start64
        if size > 0:
            size -= 1
            if self.fin_cnt > 0 and size > 0:
                size -= 1
        return max(size, 0)


def _scaled(counter: int, threshold: int) -> tuple[int, int, bool]:
    """Zeek's scaled history entry: a letter at the 1st, 10th, 100th ... occurrence."""
    counter += 1
    if counter == threshold:
        return counter, threshold * 10, True
    return counter, threshold, False


@dataclass
class ResetContext:
    """A RST and everything around it that the catalog scores."""

    rst: PacketRef
    conn: Connection
    index_in_conn: int  # how many RSTs this connection had before this one
    sender_state: EP  # the RST sender's state before the RST
    peer_state: EP
    before: list[PacketRef]  # packets of the connection before the RST, oldest first (head + ring)
    elided: int  # packets between the head and the ring that are not kept
    after: list[PacketRef] = field(default_factory=list)
    src: str = ""
    dst: str = ""
    sport: int = 0
    dport: int = 0
    sender_is_orig: bool = True
    payload: bytes = b""
    mptcp_subtype: int = -1
    checksum_ok: int = -1


@dataclass(frozen=True, slots=True)
class PriorConnection:
    """What a connection keeps of the one it replaced on the same 4-tuple."""

    uid: str


class Connection:
    """A TCP connection as Zeek sees it."""

    __slots__ = (
        "_uid",
        "after_open",
        "attempt_ns",
        "close_delete_ns",
        "elided",
        "encap",
        "expire_origins",
        "first_frame",
        "flipped",
        "handshake_done",
        "head",
        "hist_seen",
        "history",
        "inactivity_ns",
        "ip_version",
        "is_partial",
        "key",
        "last_ns",
        "n_packets",
        "orig",
        "prev",
        "resets",
        "resp",
        "ring",
        "start_ns",
        "tag",
        "vlan",
    )

    def __init__(self, key: tuple, ip_version: int, orig: Endpoint, resp: Endpoint, ts: int, frame: int) -> None:
        self.key = key
        self.ip_version = ip_version
        self.orig = orig
        self.resp = resp
        self.start_ns = ts
        self.last_ns = ts
        self.first_frame = frame
        # Per-connection memory matters: a SYN flood fills the table with half-open connections. What most
        # connections never need is made on first use: the history is a string (one letter for a bare SYN),
        # the uid is computed when read, the RST lists stay the shared empty tuple until a RST.
        self.history = ""
        self.hist_seen = 0
        self.flipped = False
        self.tag = b""  # the capture's source tag, for the uid
        self._uid = ""
        self.n_packets = 0
        self.head: list[PacketRef] = []
        self.ring: deque[PacketRef] | None = None  # made once the head is full (most connections never need it)
        self.elided = 0
        self.resets: list[ResetContext] | tuple[()] = ()
        self.after_open: list[ResetContext] | tuple[()] = ()  # RSTs still collecting the packets after them
        # the connection this one replaced on the same tuple: only its uid, so that a tuple reused a million
        # times does not keep a chain of a million connections alive
        self.prev: PriorConnection | None = None
        self.attempt_ns = -1
        self.close_delete_ns = -1
        self.expire_origins: tuple[int, ...] = (ts + _SYN_TIMEOUT_NS,)
        self.inactivity_ns = int(INACTIVITY_HANDSHAKE * NS)
        self.handshake_done = False
        self.is_partial = False
        self.encap = 0
        self.vlan = 0

    # -- history -----------------------------------------------------------------------------
    @property
    def uid(self) -> str:
        """A stable Zeek-style uid (computed on first read: most flood connections are never named)."""
        uid = self._uid
        if not uid:
            uid = self._uid = make_uid(self.tag, self.key, self.first_frame)
        return uid

    @uid.setter
    def uid(self, value: str) -> None:
        self._uid = value

    def add_history(self, code: str, is_orig: bool) -> None:
        self.history += code if is_orig else code.lower()

    def check_history(self, mask: int, code: str, is_orig: bool) -> bool:
        """Record the letter the first time; True when it was seen before (Zeek's CheckHistory)."""
        if not is_orig:
            mask <<= 16
        if self.hist_seen & mask:
            return True
        self.hist_seen |= mask
        self.add_history(code, is_orig)
        return False

    @property
    def history_text(self) -> str:
        return self.history

    @property
    def state(self) -> str:
        return conn_state(self.orig.state, self.resp.state, self.orig.size(self.resp),
                          self.resp.size(self.orig), self.history_text)

    def packets(self) -> list[PacketRef]:
        return [*self.head, *self.ring] if self.ring else list(self.head)

    def endpoint_text(self, ep: Endpoint) -> str:
        if self.ip_version == 4:  # what ipaddress prints, several times faster (conns names every endpoint)
            return inet_ntoa(ep.addr[:4].ljust(4, b"\0"))
        return address_text(ep.addr.ljust(16, b"\0"), self.ip_version)

    def zeek_record(self) -> dict[str, object]:
        """The conn.log fields, with Zeek's JSON names."""
        o, r = self.orig, self.resp
        dur = (self.last_ns - self.start_ns) / NS
        return {
            "ts": self.start_ns / NS,
            "uid": self.uid,
            "id.orig_h": self.endpoint_text(o),
            "id.orig_p": o.port,
            "id.resp_h": self.endpoint_text(r),
            "id.resp_p": r.port,
            "proto": "tcp",
            "duration": round(dur, 6),
            "orig_bytes": o.size(r),
            "resp_bytes": r.size(o),
            "conn_state": self.state,
            "missed_bytes": 0,
            "history": self.history_text,
            "orig_pkts": o.pkts,
            "orig_ip_bytes": o.ip_bytes,
            "resp_pkts": r.pkts,
            "resp_ip_bytes": r.ip_bytes,
        }


_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_PAIRS = [lo + hi for hi in _BASE62 for lo in _BASE62]  # two digits, least significant first


def make_uid(source_tag: bytes, key: tuple, frame: int) -> str:
    """A stable Zeek-style uid: 'C' and 17 base62 characters (least significant first), the same on every run."""
    digest = blake2b(repr((source_tag, key, frame)).encode(), digest_size=16).digest()
    n = int.from_bytes(digest, "big")
    pairs = _BASE62_PAIRS
    out = ["C"]
    for _ in range(8):
        n, r = divmod(n, 3844)
        out.append(pairs[r])
    out.append(_BASE62[n % 62])
    return "".join(out)


class Tracker:
    """Feeds packets through the state machine, one connection per live 5-tuple.

    ``on_finish(conn)`` receives each connection when it ends (and all that remain at ``close``).
    """

    def __init__(
        self,
        on_finish: Callable[[Connection], None],
        *,
        source_tag: bytes = b"",
        max_connections: int = MAX_CONNECTIONS,
        max_half_open: int = MAX_HALF_OPEN,
        check_checksums: bool = False,
    ) -> None:
        self.on_finish = on_finish
        self.source_tag = source_tag
        self.max_connections = max_connections
        self.max_half_open = max_half_open
        # connections that so far saw only SYNs and SYN-ACKs, oldest first (a dict keeps insertion order)
        self._half_open: dict[tuple, Connection] = {}
        self.evicted_half_open = 0  # of ``evicted``: half-open connections past max_half_open
        self.check_checksums = check_checksums
        self.conns: dict[tuple, Connection] = {}
        self.evicted = 0
        self.now_ns = 0
        self._next_sweep_ns = 0
        self._since_sweep = 0  # packets since the last sweep: a sweep visits every connection, so it waits
        # for as many packets as a quarter of the table (amortized constant time per packet)
        self.tcp_packets = 0

    # -- public --------------------------------------------------------------------------------
    def feed(self, batch: PacketBatch) -> None:
        c = batch.cols
        tcp_rows = np.flatnonzero(c["kind"] == Kind.TCP)
        if len(tcp_rows) == 0:
            return
        cols = {name: c[name][tcp_rows].tolist() for name in (
            "frame", "ts_ns", "ip_version", "sport", "dport", "seq", "ack", "flags", "win", "payload_len",
            "ttl", "ip_id", "opt_has_ts", "opt_ts_val", "opt_ts_ecr", "opt_mask", "opt_wscale", "opt_mss",
            "opt_sack_ok", "payload_off", "payload_cap", "checksum_ok", "wire_len", "opt_mptcp_subtype",
            "encap", "vlan")}
        src = batch.src[tcp_rows].view("S16").ravel().tolist()
        dst = batch.dst[tcp_rows].view("S16").ravel().tolist()
        data = batch.data
        for i in range(len(tcp_rows)):
            self._packet(cols, i, src[i], dst[i], data)

    def close(self) -> None:
        """End every connection still open (end of capture)."""
        self._half_open.clear()
        for conn in list(self.conns.values()):
            self._finish(conn)
        self.conns.clear()

    # -- internals -------------------------------------------------------------------------------
    def _packet(self, cols: dict[str, list], i: int, src: bytes, dst: bytes, data: bytes | memoryview) -> None:
        ts = cols["ts_ns"][i]
        self.tcp_packets += 1
        if ts > self.now_ns:
            self.now_ns = ts
        self._since_sweep += 1
        if self.now_ns >= self._next_sweep_ns and self._since_sweep >= len(self.conns) >> 2:
            self._sweep()
        sport, dport, flags = cols["sport"][i], cols["dport"][i], cols["flags"][i]
        version = cols["ip_version"][i]
        a, b = (src, sport), (dst, dport)
        key = (version, a, b) if a <= b else (version, b, a)

        if self._half_open and (flags & (SYN | RST | FIN)) != SYN:
            self._half_open.pop(key, None)  # more than a handshake: no longer half-open
        conn = self.conns.get(key)
        if conn is not None and self._expired(conn, ts):
            self._finish(conn)
            del self.conns[key]
            conn = None
        if conn is not None and self._is_reuse(conn, src, sport, flags, cols["seq"][i]):
            old = conn
            self._finish(conn)
            del self.conns[key]
            conn = self._new_conn(key, version, src, sport, dst, dport, flags, ts, cols["frame"][i])
            conn.prev = PriorConnection(old.uid)
        elif conn is None:
            conn = self._new_conn(key, version, src, sport, dst, dport, flags, ts, cols["frame"][i])
        conn.encap = cols["encap"][i]
        conn.vlan = cols["vlan"][i]

        if self.check_checksums and cols["checksum_ok"][i] == 0:
            is_orig = src == conn.orig.addr and sport == conn.orig.port
            ep = conn.orig if is_orig else conn.resp
            # Zeek drops a segment with a bad checksum and only notes it in the history.
            ep.chk_cnt, ep.chk_thresh, hit = _scaled(ep.chk_cnt, ep.chk_thresh)
            if hit:
                conn.add_history("C", is_orig)
            return
        self._process(conn, cols, i, src, sport, data)

    def _new_conn(self, key: tuple, version: int, src: bytes, sport: int, dst: bytes, dport: int,
                  flags: int, ts: int, frame: int) -> Connection:
        if len(self.conns) >= self.max_connections:
            self._evict()
        orig, resp = Endpoint(src, sport, True), Endpoint(dst, dport, False)
        conn = Connection(key, version, orig, resp, ts, frame)
        conn.tag = self.source_tag
        self.conns[key] = conn
        if (flags & (SYN | RST | FIN)) == SYN:
            half_open = self._half_open
            half_open[key] = conn
            if len(half_open) > self.max_half_open:
                self._evict_half_open()
        if not (flags & SYN) or (flags & ACK):
            # A connection that starts without a SYN, or with a SYN-ACK: guess the server by port.
            # (both plausible: flip only for a non-SYN going to the higher port, as Zeek does)
            both = likely_server_port(dport)
            if likely_server_port(sport) and (not both or (not (flags & SYN) and sport < dport)):
                self._flip(conn)
        return conn

    def _flip(self, conn: Connection) -> None:
        conn.orig, conn.resp = conn.resp, conn.orig
        conn.orig.is_orig, conn.resp.is_orig = True, False
        conn.flipped = not conn.flipped
        conn.is_partial = False
        conn.history += "^"

    def _is_reuse(self, conn: Connection, src: bytes, sport: int, flags: int, seq: int) -> bool:
        if not (flags & SYN):
            return False
        conn_orig = conn.orig
        if flags & ACK:
            if conn.orig.state != INACTIVE:
                return False
            conn_orig = conn.resp
        if not (conn.orig.did_close or conn.resp.did_close):
            if seq == (conn_orig.start64 & 0xFFFFFFFF):
                return False
            if (not (flags & ACK) and conn_orig.state == SYN_ACK_SENT and conn.resp.state == INACTIVE
                    and seq == (conn.resp.start64 & 0xFFFFFFFF)):
                return False
        return True

    def _expired(self, conn: Connection, ts: int) -> bool:
        """Whether one of Zeek's timers would have removed the connection before ``ts``."""
        o, r = conn.orig, conn.resp
        if conn.close_delete_ns >= 0 and ts >= conn.close_delete_ns:
            return True
        if (conn.attempt_ns >= 0 and ts >= conn.attempt_ns and o.state in (SYN_SENT, SYN_ACK_SENT)
                and r.state == INACTIVE):
            return True
        if ts - conn.last_ns >= conn.inactivity_ns:
            return True
        linger = conn.last_ns + _LINGER_NS
        if ts <= linger:
            return False
        closable = ((o.did_close or r.did_close) and (
            (o.did_close and r.did_close) or RESET in (o.state, r.state) or INACTIVE in (o.state, r.state)
        )) or (o.state == INACTIVE and r.state == INACTIVE)
        if closable:
            step = _SESSION_TIMER_NS
            for origin in conn.expire_origins:
                # first firing of this timer chain strictly after the linger time
                k = 0 if origin > linger else (linger - origin) // step + 1
                if origin + k * step <= ts:
                    return True
        return False

    def _sweep(self) -> None:
        """End connections whose timers fired, so memory follows live connections."""
        now = self.now_ns
        self._next_sweep_ns = now + NS
        if len(self.conns) < 4096:
            return
        self._since_sweep = 0
        for key in [k for k, c in self.conns.items() if self._expired(c, now)]:
            self._finish(self.conns.pop(key))

    def _evict(self) -> None:
        """Make room in a full table: first end what Zeek's timers ended, then the oldest-idle tenth
        (counted in ``evicted``; the caller reports it as a warning)."""
        self._next_sweep_ns = 0
        self._sweep()
        if len(self.conns) < self.max_connections - self.max_connections // 20:
            return
        conns = list(self.conns.values())
        k = max(1, len(conns) // 10)
        idle = np.fromiter((c.last_ns for c in conns), dtype=np.int64, count=len(conns))
        for j in np.argpartition(idle, k - 1)[:k].tolist() if k < len(conns) else range(len(conns)):
            conn = conns[j]
            self._finish(conn)
            del self.conns[conn.key]
            self.evicted += 1

    def _evict_half_open(self) -> None:
        """End the oldest tenth of the half-open connections (those whose timers already fired end as
        Zeek ends them; the others are counted in ``evicted`` and ``evicted_half_open``)."""
        half_open, conns, now = self._half_open, self.conns, self.now_ns
        k = max(1, self.max_half_open // 10)
        for key, conn in list(itertools.islice(half_open.items(), k)):
            del half_open[key]
            if conns.get(key) is conn:
                del conns[key]
                if not self._expired(conn, now):
                    self.evicted += 1
                    self.evicted_half_open += 1
                self._finish(conn)

    def eviction_note(self) -> str:
        """The warning about evictions ("" when there were none)."""
        if not self.evicted:
            return ""
        parts = []
        if self.evicted_half_open:
            parts.append(f"{self.evicted_half_open} half-open (only SYN/SYN-ACK seen) past {self.max_half_open} "
                         "at once")
        if self.evicted > self.evicted_half_open:
            parts.append(f"{self.evicted - self.evicted_half_open} past {self.max_connections} connections open "
                         "at once")
        return (f"{self.evicted} connections were evicted from the connection table ({'; '.join(parts)}); their "
                "state was cut short")

    def _finish(self, conn: Connection) -> None:
        conn.after_open = ()
        half_open = self._half_open
        if half_open and half_open.get(conn.key) is conn:
            del half_open[conn.key]
        self.on_finish(conn)

    def _process(self, conn: Connection, cols: dict[str, list], i: int, src: bytes, sport: int,
                 data: bytes | memoryview) -> None:
        ts = cols["ts_ns"][i]
        flags = cols["flags"][i]
        seq, ack_no = cols["seq"][i], cols["ack"][i]
        length = cols["payload_len"][i]
        is_orig = src == conn.orig.addr and sport == conn.orig.port
        ep, peer = (conn.orig, conn.resp) if is_orig else (conn.resp, conn.orig)
        syn, fin, rst, ack = bool(flags & SYN), bool(flags & FIN), bool(flags & RST), bool(flags & ACK)

        if not ep.seen_first:
            # Zeek's SetPartialStatus: a connection is partial unless it opened with SYN and SYN-ACK
            if is_orig:
                conn.is_partial = not syn or ack
            elif not conn.is_partial:
                conn.is_partial = not syn
            ep.seen_first = True
        seg_len = length + syn + fin - (length if rst else 0)
        seq_past = (seq + seg_len) & 0xFFFFFFFF
        self._init_endpoint(ep, syn, seq, seq_past)

        rel_seq = unwrap(seq, ep.last64) - ep.start64
        underflow = rel_seq < 0
        self._update_history(conn, ep, syn, fin, rst, ack, rel_seq, length)
        self._update_window(conn, ep, peer, cols["win"][i], rst)
        if not (conn.orig.did_close and conn.resp.did_close):
            conn.last_ns = ts
        if syn:
            wscale = cols["opt_wscale"][i]
            if wscale < 0:
                ep.window_scale = 0
                if ack:
                    peer.window_scale = 0
            else:
                ep.window_scale = min(wscale, 14)
            fp = ep.fp
            fp.syn_opt_mask, fp.syn_win = cols["opt_mask"][i], cols["win"][i]
            fp.mss, fp.wscale, fp.sack_ok = cols["opt_mss"][i], wscale, cols["opt_sack_ok"][i]
        if fin:
            ep.fin_cnt += 1
            ep.fin_seq = rel_seq + seg_len
        if rst:
            ep.rst_cnt += 1

        rel_ack = 0
        if ack:
            if peer.state == INACTIVE:
                rel_ack = 1
                peer.init_seq((ack_no - 1) & 0xFFFFFFFF, (ack_no - 1) & 0xFFFFFFFF)
            else:
                rel_ack = unwrap(ack_no, peer.ack64) - peer.start64
                if rel_ack < 0:
                    rel_ack = 0
                elif not rst:
                    delta = seq_delta(ack_no, peer.ack64 & 0xFFFFFFFF)
                    if not (ack_no == 0 and delta > TOO_LARGE_SEQ_DELTA) and delta > 0:
                        peer.ack64 = unwrap(ack_no, peer.ack64)

        self._update_last_seq(conn, ep, seq_past, syn, fin, rst, length)
        ep.last_ns = ts

        sender_state, peer_state = ep.state, peer.state
        step = step_for(syn, ack, fin, rst, length != 0, is_orig, ep.state, peer.state)
        if step.me != ep.state and step.me not in HANDSHAKE and ep.state in HANDSHAKE and peer.state in HANDSHAKE:
            conn.inactivity_ns = int(INACTIVITY_TIMEOUT * NS)
        if ep.state == INACTIVE and syn and is_orig and conn.attempt_ns < 0:
            conn.attempt_ns = ts + int(ATTEMPT_DELAY * NS)
        if sender_state == INACTIVE and step.me == ESTABLISHED and not syn:
            conn.is_partial = False  # missed only the SYN: Zeek treats it as established
        ep.set_state(step.me)
        if step.revive_peer:
            if peer.state == RESET and peer.prev_state == CLOSED:
                peer.set_state(CLOSED)
        else:
            peer.set_state(step.peer)

        if ack:
            self._ack_received(conn, peer, rel_ack)

        if length > 0 and not rst and not underflow and cols["payload_cap"][i] >= length:
            self._data_sent(ep, rel_seq + 1 if syn else rel_seq, length)

        close = step.close and not (sender_state == CLOSED and ep.did_close)
        if close:
            self._connection_closed(conn, ep, peer)
        if step.flip:
            self._flip(conn)

        # -- bookkeeping for evidence and fingerprints ---------------------------------------------
        ep.pkts += 1
        ep.ip_bytes += cols["wire_len"][i]
        ep.payload_bytes += 0 if rst else length
        ts_val = cols["opt_ts_val"][i] if cols["opt_has_ts"][i] else -1
        if not rst:
            ep.fp.observe(cols["ttl"][i], cols["ip_id"][i], ts_val)
        rel_seq_out = unwrap(seq, ep.start64 + max(rel_seq, 0)) - ep.start64
        pref = PacketRef(
            frame=cols["frame"][i], ts_ns=ts, from_orig=is_orig, flags=flags, seq=seq, ack=ack_no,
            rel_seq=rel_seq_out, rel_ack=rel_ack if ack else 0, payload_len=length, win=cols["win"][i],
            ttl=cols["ttl"][i], ip_id=cols["ip_id"][i], ts_val=ts_val,
            ts_ecr=cols["opt_ts_ecr"][i] if cols["opt_has_ts"][i] else -1, opt_mask=cols["opt_mask"][i],
        )
        cap = min(cols["payload_cap"][i], length)
        if cap and (rst or length):
            off = cols["payload_off"][i]
            pref.payload = bytes(data[off: off + min(cap, 512 if rst else 64)])
        conn.n_packets += 1
        if conn.after_open:
            for ctx in conn.after_open:
                ctx.after.append(pref)
            conn.after_open = [c for c in conn.after_open
                               if len(c.after) < AFTER_PACKETS and ts - c.rst.ts_ns < AFTER_NS] or ()
        if rst:
            before = conn.packets()
            ctx = ResetContext(
                rst=pref, conn=conn, index_in_conn=len(conn.resets), sender_state=sender_state,
                peer_state=peer_state, before=before, elided=conn.elided,
                src=address_text(src.ljust(16, b"\0"), conn.ip_version), sport=sport,
                dst=conn.endpoint_text(peer), dport=peer.port, sender_is_orig=is_orig,
                payload=pref.payload, mptcp_subtype=cols["opt_mptcp_subtype"][i],
                checksum_ok=cols["checksum_ok"][i],
            )
            if conn.resets:
                conn.resets.append(ctx)  # type: ignore[union-attr]
            else:
                conn.resets = [ctx]
            if conn.after_open:
                conn.after_open.append(ctx)  # type: ignore[union-attr]
            else:
                conn.after_open = [ctx]
        if len(conn.head) < HEAD_PACKETS:
            conn.head.append(pref)
        else:
            ring = conn.ring
            if ring is None:
                ring = conn.ring = deque(maxlen=RING_PACKETS)
            if len(ring) == RING_PACKETS:
                conn.elided += 1
            ring.append(pref)

    # -- Zeek's sequence and history rules -----------------------------------------------------------
    @staticmethod
    def _init_endpoint(ep: Endpoint, syn: bool, seq: int, seq_past: int) -> None:
        st = ep.state
        if st == INACTIVE:
            if syn:
                ep.init_seq(seq, seq_past)
            else:
                ep.init_seq((seq - 1) & 0xFFFFFFFF, seq)
        elif st in (SYN_SENT, SYN_ACK_SENT, ESTABLISHED, PARTIAL):
            # A SYN inside a connection restarts its numbering: Zeek guesses the first one failed.
            if syn and (st in (ESTABLISHED, PARTIAL) or seq != (ep.start64 & 0xFFFFFFFF)):
                ep.init_seq(seq, seq_past)
        elif st == RESET and syn and ep.prev_state == INACTIVE:
            ep.init_seq(seq, seq_past)

    @staticmethod
    def _update_history(conn: Connection, ep: Endpoint, syn: bool, fin: bool, rst: bool, ack: bool,
                        rel_seq: int, length: int) -> None:
        bits = syn + fin + rst
        o = ep.is_orig
        if bits > 1:
            if fin and rst:
                conn.check_history(H_FIN_RST, "I", o)
            else:
                conn.check_history(H_MULTI, "Q", o)
        elif bits == 1:
            if syn:
                code = "H" if ack else "S"
                if conn.check_history(H_SYN, code, o) and rel_seq != ep.hist_last_syn:
                    conn.add_history(code, o)
                ep.hist_last_syn = rel_seq
            if fin:
                if conn.check_history(H_FIN, "F", o) and rel_seq + length != ep.hist_last_fin:
                    conn.add_history("F", o)
                ep.hist_last_fin = rel_seq + length
            if rst:
                if conn.check_history(H_RST, "R", o) and rel_seq != ep.hist_last_rst:
                    conn.add_history("R", o)
                ep.hist_last_rst = rel_seq
        elif length:
            conn.check_history(H_DATA, "D", o)
        elif ack:
            conn.check_history(H_ACK, "A", o)

    @staticmethod
    def _update_window(conn: Connection, ep: Endpoint, peer: Endpoint, win: int, rst: bool) -> None:
        if (win << ep.window_scale) == 0 and not rst and peer.state != CLOSED and ep.state != RESET:
            ep.win0_cnt, ep.win0_thresh, hit = _scaled(ep.win0_cnt, ep.win0_thresh)
            if hit:
                conn.add_history("W", ep.is_orig)

    @staticmethod
    def _update_last_seq(conn: Connection, ep: Endpoint, seq_past: int, syn: bool, fin: bool, rst: bool,
                         length: int) -> int:
        delta = seq_delta(seq_past, ep.last64 & 0xFFFFFFFF)
        if (syn or rst) and (delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA):
            pass
        elif fin and ep.last64 == ep.start64 + 1:
            ep.last64 = unwrap(seq_past, ep.last64)
        elif ep.state == RESET:
            pass
        elif delta > 0:
            ep.last64 = unwrap(seq_past, ep.last64)
        elif length > 0:
            ep.rxmit_cnt, ep.rxmit_thresh, hit = _scaled(ep.rxmit_cnt, ep.rxmit_thresh)
            if hit:
                conn.add_history("T", ep.is_orig)
        return delta

    # -- content gaps (Zeek's reassembler, reduced to what the history needs) ------------------------
    @staticmethod
    def _data_sent(ep: Endpoint, rel: int, length: int) -> None:
        acked = ep.ack64 - ep.start64
        lo, hi = rel, rel + length
        if lo < acked:
            if hi <= acked:
                return
            lo = acked
        if lo <= ep.reassem_upto < hi:
            ep.reassem_upto = hi
            Tracker._absorb(ep)
        elif lo > ep.reassem_upto and len(ep.blocks) < 64:
            if ep.blocks:
                ep.blocks.append((lo, hi))  # type: ignore[union-attr]
            else:
                ep.blocks = [(lo, hi)]

    @staticmethod
    def _absorb(ep: Endpoint) -> None:
        if not ep.blocks:
            return
        ep.blocks.sort()  # type: ignore[union-attr]
        keep = []
        for lo, hi in ep.blocks:
            if lo <= ep.reassem_upto:
                ep.reassem_upto = max(ep.reassem_upto, hi)
            else:
                keep.append((lo, hi))
        ep.blocks = keep or ()

    def _ack_received(self, conn: Connection, sender: Endpoint, rel_ack: int) -> None:
        """``sender`` is the endpoint whose data the ACK acknowledges."""
        if sender.fin_cnt > 0 and rel_ack >= sender.fin_seq:
            rel_ack = sender.fin_seq - 1
        if rel_ack <= sender.trim_upto:
            return
        sender.trim_upto = rel_ack
        if rel_ack <= sender.reassem_upto:
            return
        partial_start = rel_ack <= 2 and conn.is_partial
        if not partial_start:
            ep, peer = sender, (conn.resp if sender is conn.orig else conn.orig)
            clean = all(e.state == ESTABLISHED or (e.state == CLOSED and e.prev_state == ESTABLISHED)
                        for e in (ep, peer))
            # every hole below the ACK is a gap; blocks above holes are delivered in between
            if ep.blocks:
                ep.blocks.sort()  # type: ignore[union-attr]
            holes = 0
            upto = ep.reassem_upto
            for lo, hi in ep.blocks:
                if lo >= rel_ack:
                    break
                if lo > upto:
                    holes += 1
                upto = max(upto, hi)
            if upto < rel_ack:
                holes += 1
            if clean:
                for _ in range(holes):
                    ep.gap_cnt, ep.gap_thresh, hit = _scaled(ep.gap_cnt, ep.gap_thresh)
                    if hit:
                        conn.add_history("G", ep.is_orig)
        sender.reassem_upto = max(sender.reassem_upto, rel_ack)
        if sender.blocks:
            sender.blocks = [(lo, hi) for lo, hi in sender.blocks if hi > sender.reassem_upto] or ()
        self._absorb(sender)

    def _connection_closed(self, conn: Connection, ep: Endpoint, peer: Endpoint) -> None:
        if ep.did_close:
            return
        ep.did_close = True
        complete = ep.state == RESET or peer.did_close or peer.state == INACTIVE
        if complete:
            conn.close_delete_ns = conn.last_ns + int(CLOSE_DELAY * NS)
        elif ep.prev_state != INACTIVE:
            conn.expire_origins += (conn.last_ns + _SESSION_TIMER_NS,)


def track(batches: Iterable[PacketBatch], **options: object) -> list[Connection]:
    """Track every connection of a capture and return them in order of first packet (for tests)."""
    done: list[Connection] = []
    tracker = Tracker(done.append, **options)  # type: ignore[arg-type]
    for batch in batches:
        tracker.feed(batch)
    tracker.close()
    done.sort(key=lambda c: (c.start_ns, c.first_frame))
    return done

"""Deterministic synthetic captures: TCP conversations that end the way each cause ends them.

Used for the bundled demo, the tests of the catalog and the benchmark. Packets are built with
``struct`` (correct IPv4/IPv6/TCP checksums, Linux-like options and TTLs), so generating millions
of packets is fast and needs no third-party package.

    python -m whyrst.synth demo demo.pcap
    python -m whyrst.synth bench big.pcap --packets 2000000 --concurrent 2000 [--pcapng] [--seed 1]
    python -m whyrst.synth synflood flood.pcap --packets 5000000 [--rate 1000000] [--rst-share 0.02]
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import struct
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
NS = 1_000_000_000


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def tcp_options(mss: int = 0, wscale: int = -1, sack_ok: bool = False, ts: tuple[int, int] | None = None) -> bytes:
    out = b""
    if mss:
        out += struct.pack("!BBH", 2, 4, mss)
    if sack_ok:
        out += b"\x04\x02"
    if ts is not None:
        out += b"\x01\x01" if not sack_ok and mss else b""
        out += struct.pack("!BBII", 8, 10, ts[0] & 0xFFFFFFFF, ts[1] & 0xFFFFFFFF)
    if wscale >= 0:
        out += b"\x01" + struct.pack("!BBB", 3, 3, wscale)
    out += b"\x00" * (-len(out) % 4)
    return out


def packet(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int, *, payload: bytes = b"",
           win: int = 502, ttl: int = 64, ip_id: int = 0, options: bytes = b"") -> bytes:
    """An Ethernet frame with IPv4 or IPv6 and TCP, checksums filled in."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    off = (20 + len(options)) // 4
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, flags, win, 0, 0)
    tcp += options + payload
    if s.version == 4:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, 6, len(tcp))
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id & 0xFFFF, 0x4000, ttl, 6, 0, s.packed, d.packed)
        ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
        ethertype = b"\x08\x00"
    else:
        pseudo = s.packed + d.packed + struct.pack("!IxxxB", len(tcp), 6)
        tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
        ip = struct.pack("!IHBB16s16s", 0x60000000, len(tcp), 6, ttl, s.packed, d.packed)
        ethertype = b"\x86\xdd"
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01" + ethertype + ip + tcp


@dataclass
class Host:
    addr: str
    ttl: int = 64
    ip_id: int = 1000
    ts: int = 100000
    use_ts: bool = True

    def next_id(self) -> int:
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        return self.ip_id


@dataclass
class Flow:
    """One TCP connection between a client and a server, with Linux-like numbering."""

    cap: Capture
    client: Host
    server: Host
    cport: int
    sport: int
    cseq: int = 0
    sseq: int = 0
    t: float = 0.0

    def __post_init__(self) -> None:
        rng = self.cap.rng
        self.cseq = self.cseq or rng.randrange(1, 2**32)
        self.sseq = self.sseq or rng.randrange(1, 2**32)

    def send(self, from_client: bool, flags: int, payload: bytes = b"", *, dt: float = 0.0001, seq: int | None = None,
             ack: int | None = None, win: int | None = None, ttl: int | None = None, ip_id: int | None = None,
             options: bytes | None = None, advance: bool = True) -> None:
        self.t += dt
        me, peer = (self.client, self.server) if from_client else (self.server, self.client)
        my_seq = self.cseq if from_client else self.sseq
        peer_seq = self.sseq if from_client else self.cseq
        if options is None:
            if flags & SYN:
                options = tcp_options(1460, 7, True, (me.ts, 0 if not flags & ACK else peer.ts) if me.use_ts else None)
            elif me.use_ts and not (flags & RST and not flags & ACK):
                options = tcp_options(ts=(me.ts, peer.ts))
            else:
                options = b""
        me.ts += 1
        pkt = packet(me.addr, peer.addr, self.cport if from_client else self.sport,
                     self.sport if from_client else self.cport, my_seq if seq is None else seq,
                     (peer_seq if ack is None else ack) if flags & ACK else 0, flags, payload=payload,
                     win=(0 if flags & RST and not flags & ACK else 502) if win is None else win,
                     ttl=me.ttl if ttl is None else ttl, ip_id=me.next_id() if ip_id is None else ip_id,
                     options=options)
        self.cap.add(self.t, pkt)
        if advance and not flags & RST:
            used = len(payload) + (1 if flags & (SYN | FIN) else 0)
            if from_client:
                self.cseq = (self.cseq + used) & 0xFFFFFFFF
            else:
                self.sseq = (self.sseq + used) & 0xFFFFFFFF

    def handshake(self) -> None:
        self.send(True, SYN)
        self.send(False, SYN | ACK, dt=0.0003)
        self.send(True, ACK, dt=0.0001)

    def request(self, body: bytes = b"GET / HTTP/1.1\r\nHost: demo\r\n\r\n", dt: float = 0.001) -> None:
        self.send(True, PSH | ACK, body, dt=dt)
        self.send(False, ACK, dt=0.0001)

    def response(self, body: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", dt: float = 0.001) -> None:
        self.send(False, PSH | ACK, body, dt=dt)
        self.send(True, ACK, dt=0.0001)

    def close(self, client_first: bool = True) -> None:
        self.send(client_first, FIN | ACK, dt=0.001)
        self.send(not client_first, FIN | ACK, dt=0.0002)
        self.send(client_first, ACK, dt=0.0001)


@dataclass
class Capture:
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    packets: list[tuple[float, bytes]] = field(default_factory=list)

    def add(self, t: float, pkt: bytes) -> None:
        self.packets.append((t, pkt))

    def write_pcap(self, out: BinaryIO, base: float = 1_700_000_000.0) -> None:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for t, pkt in sorted(self.packets, key=lambda x: x[0]):
            ts = base + t
            sec = int(ts)
            usec = round((ts - sec) * 1e6)
            if usec == 1_000_000:
                sec, usec = sec + 1, 0
            out.write(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)) + pkt)


# -- one scenario per cause: (capture, start time, port) -> the flow whose RST shows the cause -----------

CLIENT, SERVER, OTHER = "198.18.1.2", "198.19.1.2", "198.19.1.3"


def _hosts() -> tuple[Host, Host]:
    return Host(CLIENT, ttl=63, ip_id=20000), Host(SERVER, ttl=63, ip_id=40000, ts=900000)


def closed_port(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 5000, t=t)
    f.send(True, SYN)
    f.send(False, RST | ACK, seq=0, ack=f.cseq, win=0, options=b"", ip_id=0, dt=0.0002)


def abortive_close(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 80, t=t)
    f.handshake()
    f.send(True, PSH | ACK, b"GET / HTTP/1.1\r\n", dt=1.2)  # an incomplete request header
    f.send(False, ACK)
    f.t = t + 5.0  # nginx client_header_timeout 5s with reset_timedout_connection on
    f.send(False, RST | ACK, dt=0.0004)


def unread_data_close(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 5000, t=t)
    f.handshake()
    f.send(True, PSH | ACK, b"ping", dt=2.09)
    f.send(False, ACK)
    f.send(False, RST | ACK, dt=3.03)


def connect_then_close(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 8080, t=t)
    f.send(True, SYN)
    f.send(False, SYN | ACK, dt=0.008)
    f.send(True, RST, ack=0, dt=0.00004)


def listen_close_queued(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    flows = []
    for i in range(3):
        f = Flow(cap, c, s, port + i, 6000, t=t + i * 1.0)
        f.handshake()
        f.send(True, PSH | ACK, b"hello\r\n", dt=0.2)
        f.send(False, ACK)
        flows.append(f)
    for i, f in enumerate(flows):
        f.t = t + 7.5 + i * 0.00002
        f.send(False, RST | ACK, dt=0)
    late = Flow(cap, c, s, port + 3, 6000, t=t + 10)
    late.send(True, SYN)
    late.send(False, RST | ACK, seq=0, ack=late.cseq, win=0, options=b"", ip_id=0)


def syn_existing_tuple(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    old = Flow(cap, c, s, port, 7000, t=t)
    old.handshake()
    old.request()
    old.response()
    new = Flow(cap, c, s, port, 7000, t=old.t + 20)  # the client lost its socket, reuses the port
    new.send(True, SYN)
    new.send(False, ACK, seq=old.sseq, ack=old.cseq, dt=0.0002)  # challenge ACK for the old connection
    new.send(True, RST, seq=old.cseq, ack=0, options=b"", dt=0.00003)
    new.send(True, SYN, seq=(new.cseq - 1) & 0xFFFFFFFF, dt=1.0)
    new.send(False, SYN | ACK, dt=0.0002)
    new.send(True, ACK)
    new.close()


def data_after_close(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 80, t=t)
    f.handshake()
    f.request()
    f.response()
    f.send(False, FIN | ACK, dt=5.0)  # the server's keep-alive timeout closes the connection...
    f.send(True, PSH | ACK, b"GET /next HTTP/1.1\r\n\r\n", dt=0.00005)  # ...as the client sends a request
    f.send(False, RST, seq=f.sseq, options=b"", ip_id=0, dt=0.0001)


def keepalive_timeout(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 9000, t=t)
    f.handshake()
    f.request()
    f.response()
    for _ in range(3):
        f.send(True, ACK, seq=(f.cseq - 1) & 0xFFFFFFFF, dt=2.0)  # probes, unanswered
    f.send(True, RST | ACK, dt=2.0)


def injected(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 443, t=t)
    f.handshake()
    f.request(b"\x16\x03\x01\x00\xa5" + b"\x01" * 40)
    f.send(False, RST | ACK, ttl=s.ttl - 17, ip_id=0x1234, options=b"", dt=0.002)  # forged from the path
    f.send(False, PSH | ACK, b"\x16\x03\x03\x00\x50" + b"\x02" * 40, dt=0.01)  # the real server answers anyway
    f.send(True, RST, options=b"", dt=0.0001)


def firewall_reject(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 22, t=t)
    f.handshake()
    f.request(b"SSH-2.0-OpenSSH_9.2\r\n")
    f.response(b"SSH-2.0-OpenSSH_9.6\r\n")
    # conntrack forgot the flow; the next packet is INVALID and a REJECT rule on the router answers
    f.send(True, PSH | ACK, b"\x00" * 48, dt=1.0)
    f.send(False, RST, seq=f.sseq, ack=0, ttl=64, ip_id=0, options=b"", dt=0.0002)
    f.send(False, PSH | ACK, b"\x00" * 32, dt=0.05)  # the server itself never reset


def normal(cap: Capture, t: float, port: int) -> None:
    c, s = _hosts()
    f = Flow(cap, c, s, port, 80, t=t)
    f.handshake()
    f.request()
    f.response()
    f.close()


SCENARIOS: dict[str, Callable[[Capture, float, int], None]] = {
    "closed-port": closed_port,
    "abortive-close": abortive_close,
    "unread-data-close": unread_data_close,
    "connect-then-close": connect_then_close,
    "listen-close-queued": listen_close_queued,
    "syn-existing-tuple": syn_existing_tuple,
    "data-after-close": data_after_close,
    "keepalive-timeout": keepalive_timeout,
    "injected": injected,
    "firewall-reject": firewall_reject,
}


def demo(seed: int = 1) -> Capture:
    """A small capture with one conversation per scenario, interleaved with normal traffic."""
    cap = Capture(rng=random.Random(seed))
    t = 0.0
    port = 40000
    for name, scenario in SCENARIOS.items():
        normal(cap, t + 0.5, port + 90)
        scenario(cap, t, port)
        t += 40.0
        port += 100
        del name
    return cap


# -- the benchmark generator: streaming, bounded memory ----------------------------------------------------

MIXES = ("bulk", "short")
_BODY = b"r" * 1448
MSS = {4: 1448, 6: 1428}  # a 1500-byte MTU with TCP timestamps


def bench_packets(packets: int, concurrent: int, seed: int = 1, ipv6_share: float = 0.15,
                  reset_share: float = 0.04, mix: str = "bulk") -> Iterator[tuple[int, bytes]]:
    """Yield (ts_ns, frame) for ``packets`` packets with ``concurrent`` connections open at any time.

    Each connection: handshake, one to five request/response exchanges, then FIN, or a RST in one of a few
    ways (abortive close, unread data, closed port, connect-then-close). The mix sets the responses:

    * ``bulk`` (the capture of issue 9: 2 million packets are about 1.8 GB and 37,500 connections): a
      response of up to 29 KB in full-sized segments, the client acknowledging every second one, so a
      connection is ~53 packets and a packet ~900 bytes on average;
    * ``short``: a response of 1-1400 bytes in one segment (~14 packets a connection, ~290 bytes a packet),
      which puts three to four times more connections and resets in the same number of packets."""
    if mix not in MIXES:
        raise ValueError(f"mix: one of {', '.join(MIXES)}")
    rng = random.Random(seed)
    t_ns = 1_700_000_000 * NS
    made = 0
    active: list[Iterator[bytes]] = []
    conn_no = 0

    def conversation(n: int) -> Iterator[bytes]:
        v6 = rng.random() < ipv6_share
        if v6:
            cli, srv = f"2001:db8::{(n % 60000) + 2:x}", f"2001:db8:1::{(n % 50) + 1:x}"
        else:
            cli, srv = f"198.18.{(n >> 8) & 0xFF}.{(n & 0xFF) or 1}", f"198.19.0.{(n % 50) + 1}"
        cport, sport = 1024 + (n * 7919) % 60000, rng.choice((80, 443, 8080, 5432))
        cseq, sseq = rng.randrange(2**32), rng.randrange(2**32)
        ending = "fin"
        if rng.random() < reset_share:
            ending = rng.choice(("closed-port", "abortive-close", "unread-data-close", "connect-then-close"))
        ts_c, ts_s = rng.randrange(2**31), rng.randrange(2**31)
        opt_c, opt_s = tcp_options(ts=(ts_c, ts_s)), tcp_options(ts=(ts_s, ts_c))
        yield packet(cli, srv, cport, sport, cseq, 0, SYN, options=tcp_options(1460, 7, True, (ts_c, 0)), ttl=64)
        if ending == "closed-port":
            yield packet(srv, cli, sport, cport, 0, cseq + 1, RST | ACK, win=0, ttl=64)
            return
        synack_opts = tcp_options(1460, 7, True, (ts_s, ts_c))
        yield packet(srv, cli, sport, cport, sseq, cseq + 1, SYN | ACK, options=synack_opts)
        cseq += 1
        sseq += 1
        if ending == "connect-then-close":
            yield packet(cli, srv, cport, sport, cseq, 0, RST, win=0)
            return
        yield packet(cli, srv, cport, sport, cseq, sseq, ACK, options=opt_c)
        for _ in range(rng.randrange(1, 6)):
            req = rng.randrange(40, 600)
            yield packet(cli, srv, cport, sport, cseq, sseq, PSH | ACK, payload=b"q" * req, options=opt_c)
            cseq += req
            if ending == "unread-data-close":
                yield packet(srv, cli, sport, cport, sseq, cseq, ACK, options=opt_s)
                yield packet(srv, cli, sport, cport, sseq, cseq, RST | ACK, options=opt_s)
                return
            resp = rng.randrange(1, 1400) if mix == "short" else rng.randrange(1, 29_000)
            mss = MSS[6 if v6 else 4]
            for k, at in enumerate(range(0, resp, mss)):
                size = min(mss, resp - at)
                last = at + size == resp
                yield packet(srv, cli, sport, cport, sseq, cseq, (PSH | ACK) if last else ACK,
                             payload=_BODY[:size], options=opt_s)
                sseq += size
                if last or k % 2:
                    yield packet(cli, srv, cport, sport, cseq, sseq, ACK, options=opt_c)
        if ending == "abortive-close":
            yield packet(srv, cli, sport, cport, sseq, cseq, RST | ACK, options=opt_s)
            return
        yield packet(cli, srv, cport, sport, cseq, sseq, FIN | ACK, options=opt_c)
        yield packet(srv, cli, sport, cport, sseq, cseq + 1, FIN | ACK, options=opt_s)
        yield packet(cli, srv, cport, sport, cseq + 1, sseq + 1, ACK, options=opt_c)

    while made < packets:
        while len(active) < concurrent:
            active.append(conversation(conn_no))
            conn_no += 1
        i = rng.randrange(len(active))
        try:
            frame = next(active[i])
        except StopIteration:
            active[i] = active[-1]
            active.pop()
            continue
        t_ns += rng.randrange(1000, 20000)
        made += 1
        yield t_ns, frame


def write_bench(path: str, packets: int, concurrent: int, seed: int, pcapng: bool, ipv6_share: float = 0.15,
                reset_share: float = 0.04, mix: str = "bulk") -> None:
    with open(path, "wb") as out:
        if pcapng:
            shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
            shb_len = struct.pack("<I", 12 + len(shb_body))
            out.write(struct.pack("<I", 0x0A0D0D0A) + shb_len + shb_body + shb_len)
            idb_opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # if_tsresol = 9 (ns)
            idb_body = struct.pack("<HHI", 1, 0, 262144) + idb_opts
            out.write(struct.pack("<II", 1, 12 + len(idb_body)) + idb_body + struct.pack("<I", 12 + len(idb_body)))
        else:
            out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for ts_ns, frame in bench_packets(packets, concurrent, seed, ipv6_share, reset_share, mix):
            if pcapng:
                pad = -len(frame) % 4
                total = 32 + len(frame) + pad
                out.write(struct.pack("<IIIIIII", 6, total, 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(frame), len(frame))
                          + frame + b"\0" * pad + struct.pack("<I", total))
            else:
                out.write(struct.pack("<IIII", ts_ns // NS, ts_ns % NS, len(frame), len(frame)) + frame)


# -- SYN flood: millions of half-open connections, generated in vectorized chunks --------------------------

FLOOD_FRAME = 74  # Ethernet + IPv4 + TCP with 20 bytes of SYN options; a bare RST is padded to the same size
_SYN_OPTS = tcp_options(1460, 7, True, (1, 0))  # MSS, SACK-permitted, timestamps, window scale: 20 bytes


def _put(rows: np.ndarray, col: int, values: np.ndarray, width: int) -> None:
    """Write ``values`` big-endian into ``width`` bytes of every row at ``col``."""
    v = values.astype(np.uint64)
    for k in range(width):
        rows[:, col + k] = (v >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)


def _fold(words: np.ndarray) -> np.ndarray:
    """The Internet checksum of each row of big-endian 16-bit words (already summed or not)."""
    s = words.astype(np.uint64).sum(axis=1) if words.ndim == 2 else words.astype(np.uint64)
    while (s >> np.uint64(16)).any():
        s = (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))
    return ~s & np.uint64(0xFFFF)


def synflood_records(packets: int, *, seed: int = 1, rate: float = 1_000_000.0, synack_share: float = 0.5,
                     rst_share: float = 0.02, server: str = "198.19.0.10", port: int = 80,
                     chunk: int = 1 << 16) -> Iterator[bytes]:
    """Pcap records (nanosecond, little-endian; no file header) of a SYN flood, ``chunk`` events at a time.

    Spoofed sources (random addresses in 10.0.0.0/8, random ports) send a SYN each to ``server:port``
    at ``rate`` packets a second; the server answers a share of them with a SYN-ACK (the rest are dropped:
    its backlog is full), and a share of those reach a real host that answers the unexpected SYN-ACK with a
    RST. No handshake completes: every connection is half-open until Zeek's attempt timer ends it. Memory
    is one chunk; about 25 MB per second of output on one core."""
    rng = np.random.default_rng(seed)
    srv = int(ipaddress.IPv4Address(server))
    step = 1e9 / rate
    t0 = 1_700_000_000 * NS
    made = 0
    opts = np.frombuffer(_SYN_OPTS, dtype=np.uint8)
    while made < packets:
        m = min(chunk, packets - made)  # events; each makes 1-3 packets, cut to ``packets`` below
        src = rng.integers(10 << 24, 11 << 24, m, dtype=np.uint64)
        sport = rng.integers(1024, 65536, m, dtype=np.uint64)
        cseq = rng.integers(0, 1 << 32, m, dtype=np.uint64)
        sseq = rng.integers(0, 1 << 32, m, dtype=np.uint64)
        ttl = 40 + (src % np.uint64(20))  # one TTL per source, as from a host some hops away
        answered = rng.random(m) < synack_share
        reset = answered & (rng.random(m) < rst_share)
        per = 1 + answered.astype(np.int64) + reset.astype(np.int64)
        ev = np.repeat(np.arange(m), per)
        first = np.r_[0, np.cumsum(per)[:-1]]
        kind = np.arange(len(ev)) - first[ev]  # 0 SYN, 1 SYN-ACK, 2 RST
        n = min(len(ev), packets - made)
        ev, kind = ev[:n], kind[:n]
        syn, sa, rs = kind == 0, kind == 1, kind == 2
        rows = np.zeros((n, 16 + FLOOD_FRAME), dtype=np.uint8)
        ts = t0 + ((made + np.arange(n)) * step).astype(np.int64)
        rec = rows[:, :16].view("<u4")
        rec[:, 0] = ts // NS
        rec[:, 1] = ts % NS
        rec[:, 2] = rec[:, 3] = FLOOD_FRAME
        f = rows[:, 16:]
        f[:, 0:6] = (2, 0, 0, 0, 0, 2)
        f[:, 6:12] = (2, 0, 0, 0, 0, 1)
        f[:, 12:14] = (8, 0)
        ip, tcp = f[:, 14:34], f[:, 34:]
        ip[:, 0] = 0x45
        ip_len = np.where(rs, 40, 60).astype(np.uint64)
        _put(ip, 2, ip_len, 2)
        _put(ip, 4, (ev * 7 + made) & 0xFFFF, 2)
        ip[:, 6] = np.where(syn, 0, 0x40)  # hping-style SYNs without DF; the stacks set it
        ip[:, 8] = np.where(sa, 64, ttl[ev])
        ip[:, 9] = 6
        a, b = src[ev], np.full(n, srv, dtype=np.uint64)
        from_srv = sa
        _put(ip, 12, np.where(from_srv, b, a), 4)
        _put(ip, 16, np.where(from_srv, a, b), 4)
        _put(ip, 10, _fold(ip.view(">u2")), 2)
        p_src, p_dst = sport[ev], np.full(n, port, dtype=np.uint64)
        _put(tcp, 0, np.where(from_srv, p_dst, p_src), 2)
        _put(tcp, 2, np.where(from_srv, p_src, p_dst), 2)
        c1 = (cseq[ev] + np.uint64(1)) & np.uint64(0xFFFFFFFF)
        _put(tcp, 4, np.where(sa, sseq[ev], np.where(rs, c1, cseq[ev])), 4)
        _put(tcp, 8, np.where(sa, c1, 0), 4)
        tcp[:, 12] = np.where(rs, 5 << 4, 10 << 4)
        tcp[:, 13] = np.where(syn, SYN, np.where(sa, SYN | ACK, RST))
        _put(tcp, 14, np.where(rs, 0, np.where(sa, 65160, 64240)).astype(np.uint64), 2)
        opt = ~rs
        tcp[opt, 20:40] = opts
        # timestamps option value: the sender's clock in ms
        tsval = (ts // 1_000_000).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        tv = np.zeros((n, 4), dtype=np.uint8)
        _put(tv, 0, tsval, 4)
        tcp[opt, 28:32] = tv[opt]
        seg_len = np.where(rs, 20, 40).astype(np.uint64)
        words = tcp.view(">u2").astype(np.uint64)
        words[rs, 10:] = 0  # padding after a bare RST is not part of the segment
        pseudo = ((a >> np.uint64(16)) + (a & np.uint64(0xFFFF)) + (b >> np.uint64(16)) + (b & np.uint64(0xFFFF))
                  + np.uint64(6) + seg_len)
        _put(tcp, 16, _fold(words.sum(axis=1) + pseudo), 2)
        made += n
        yield rows.tobytes()


def write_synflood(path: str, packets: int, *, seed: int = 1, rate: float = 1_000_000.0,
                   synack_share: float = 0.5, rst_share: float = 0.02) -> None:
    """A nanosecond pcap of :func:`synflood_records`, written as it is generated."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for part in synflood_records(packets, seed=seed, rate=rate, synack_share=synack_share, rst_share=rst_share):
            out.write(part)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m whyrst.synth")
    sub = p.add_subparsers(dest="what", required=True)
    d = sub.add_parser("demo")
    d.add_argument("out")
    d.add_argument("--seed", type=int, default=1)
    b = sub.add_parser("bench")
    b.add_argument("out")
    b.add_argument("--packets", type=int, default=1_000_000)
    b.add_argument("--concurrent", type=int, default=2000)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--pcapng", action="store_true")
    b.add_argument("--ipv6-share", type=float, default=0.15, help="share of connections over IPv6")
    b.add_argument("--reset-share", type=float, default=0.04, help="share of connections that end in a RST")
    b.add_argument("--mix", choices=MIXES, default="bulk",
                   help="bulk: issue 9's capture (~53 packets a connection, ~900 bytes a packet); short: small "
                        "exchanges (~14 packets a connection)")
    f = sub.add_parser("synflood", help="a SYN flood from spoofed sources: millions of half-open connections")
    f.add_argument("out")
    f.add_argument("--packets", type=int, default=5_000_000)
    f.add_argument("--rate", type=float, default=1_000_000.0, help="packets a second (capture time)")
    f.add_argument("--synack-share", type=float, default=0.5, help="share of SYNs the server answers")
    f.add_argument("--rst-share", type=float, default=0.02,
                   help="share of SYN-ACKs a real host at the spoofed address answers with a RST")
    f.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    if args.what == "synflood":
        write_synflood(args.out, args.packets, seed=args.seed, rate=args.rate, synack_share=args.synack_share,
                       rst_share=args.rst_share)
    elif args.what == "demo":
        with open(args.out, "wb") as out:
            demo(args.seed).write_pcap(out)
    else:
        write_bench(args.out, args.packets, args.concurrent, args.seed, args.pcapng, args.ipv6_share,
                    args.reset_share, args.mix)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Deterministic synthetic captures: TCP conversations that end the way each cause ends them.

Used for the bundled demo, the tests of the catalog and the benchmark. Packets are built with
``struct`` (correct IPv4/IPv6/TCP checksums, Linux-like options and TTLs), so generating millions
of packets is fast and needs no third-party package.

    python -m whyrst.synth demo demo.pcap
    python -m whyrst.synth bench big.pcap --packets 2000000 --concurrent 2000 [--pcapng] [--seed 1]
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

def bench_packets(packets: int, concurrent: int, seed: int = 1, ipv6_share: float = 0.15,
                  reset_share: float = 0.04) -> Iterator[tuple[int, bytes]]:
    """Yield (ts_ns, frame) for ``packets`` packets with ``concurrent`` connections open at any time.

    Each connection: handshake, a few request/response exchanges with 1-1400 byte payloads, then FIN, or a
    RST in one of a few ways (abortive close, unread data, closed port, connect-then-close)."""
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
            resp = rng.randrange(1, 1400)
            yield packet(srv, cli, sport, cport, sseq, cseq, PSH | ACK, payload=b"r" * resp, options=opt_s)
            sseq += resp
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
                reset_share: float = 0.04) -> None:
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
        for ts_ns, frame in bench_packets(packets, concurrent, seed, ipv6_share, reset_share):
            if pcapng:
                pad = -len(frame) % 4
                total = 32 + len(frame) + pad
                out.write(struct.pack("<IIIIIII", 6, total, 0, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(frame), len(frame))
                          + frame + b"\0" * pad + struct.pack("<I", total))
            else:
                out.write(struct.pack("<IIII", ts_ns // NS, ts_ns % NS, len(frame), len(frame)) + frame)


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
    args = p.parse_args(argv)
    if args.what == "demo":
        with open(args.out, "wb") as out:
            demo(args.seed).write_pcap(out)
    else:
        write_bench(args.out, args.packets, args.concurrent, args.seed, args.pcapng, args.ipv6_share,
                    args.reset_share)
    return 0


if __name__ == "__main__":
    sys.exit(main())

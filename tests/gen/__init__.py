"""Builders for test captures: packets layer by layer and pcap/pcapng files around them.

Everything is plain bytes built from the header declarations in :mod:`whyrst.capture.headers` (and
``struct`` for the odd field), so tests can make exactly the malformed variants they need::

    from gen import ether, ip4, tcp, pcap_file, Rec
    frame = ether(ip4(tcp(sport=1, dport=2, flags=SYN)))
    data = pcap_file([Rec(frame, ts_ns=10**9)])

``ip4``/``ip6`` fill the TCP checksum of a TCP payload (disable with ``tcp_csum=False``).
"""

from __future__ import annotations

import io
import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from whyrst.capture import headers as hd

FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 0x001, 0x002, 0x004, 0x008, 0x010, 0x020, 0x040, 0x080, 0x100

SRC4, DST4 = "192.0.2.1", "198.51.100.2"
SRC6, DST6 = "2001:db8::1", "2001:db8::2"


def _addr(a: str | bytes) -> bytes:
    return a if isinstance(a, bytes) else ipaddress.ip_address(a).packed


def csum(data: bytes) -> int:
    """The Internet checksum of ``data``."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


# -- transport ------------------------------------------------------------------------------------


def tcp_opts(*, mss: int | None = None, wscale: int | None = None, sack_ok: bool = False,
             sack: Sequence[tuple[int, int]] = (), ts: tuple[int, int] | None = None, mptcp: int | None = None,
             extra: bytes = b"", pad: bool = True) -> bytes:
    """TCP options in the given order: MSS, NOP+WS, SACK-permitted, timestamps, SACK, MPTCP, extra."""
    out = b""
    if mss is not None:
        out += struct.pack("!BBH", 2, 4, mss)
    if wscale is not None:
        out += b"\x01" + struct.pack("!BBB", 3, 3, wscale)
    if sack_ok:
        out += b"\x04\x02"
    if ts is not None:
        out += b"\x01\x01" + struct.pack("!BBII", 8, 10, *ts)
    if sack:
        out += b"\x01\x01" + struct.pack("!BB", 5, 2 + 8 * len(sack)) + b"".join(struct.pack("!II", *b) for b in sack)
    if mptcp is not None:
        out += struct.pack("!BBBB", 30, 4, mptcp << 4, 0)
    out += extra
    if pad:
        out += b"\x00" * (-len(out) % 4)
    return out


def tcp(*, sport: int = 40000, dport: int = 80, seq: int = 1000, ack: int = 0, flags: int = SYN, win: int = 64240,
        options: bytes = b"", payload: bytes = b"", data_offset: int | None = None, urp: int = 0) -> bytes:
    """A TCP header and payload with a zero checksum (``ip4``/``ip6`` fill it)."""
    off = data_offset if data_offset is not None else (20 + len(options)) // 4
    h = hd.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF,
               off_flags=(off << 12) | (flags & 0x0FFF), win=win, sum=0, urp=urp)
    return h.pack() + options + payload


def udp(payload: bytes, *, sport: int = 50000, dport: int = 53) -> bytes:
    return hd.UDP(sport=sport, dport=dport, ulen=8 + len(payload), sum=0).pack() + payload


def _fill_tcp_checksum(seg: bytes, pseudo: bytes) -> bytes:
    if len(seg) < 18:
        return seg
    seg = seg[:16] + b"\0\0" + seg[18:]
    return seg[:16] + struct.pack("!H", csum(pseudo + seg)) + seg[18:]


def with_tcp_checksum(seg: bytes, src: str | bytes = SRC4, dst: str | bytes = DST4) -> bytes:
    """``seg`` with its TCP checksum filled for these addresses (for TCP behind another header)."""
    s, d = _addr(src), _addr(dst)
    if len(s) == 4:
        return _fill_tcp_checksum(seg, s + d + struct.pack("!BBH", 0, 6, len(seg)))
    return _fill_tcp_checksum(seg, s + d + struct.pack("!IxxxB", len(seg), 6))


# -- IP -------------------------------------------------------------------------------------------


def ip4(payload: bytes, *, proto: int = 6, src: str | bytes = SRC4, dst: str | bytes = DST4, ttl: int = 64,
        ident: int = 1, df: bool = True, mf: bool = False, frag: int = 0, tos: int = 0, options: bytes = b"",
        total_len: int | None = None, tcp_csum: bool = True) -> bytes:
    s, d = _addr(src), _addr(dst)
    if proto == 6 and tcp_csum and not mf and not frag:
        payload = _fill_tcp_checksum(payload, s + d + struct.pack("!BBH", 0, 6, len(payload)))
    hl = 20 + len(options)
    off = (0x4000 if df else 0) | (0x2000 if mf else 0) | frag
    h = hd.IPv4(v_hl=0x40 | hl // 4, tos=tos, len=hl + len(payload) if total_len is None else total_len, id=ident,
                off=off, ttl=ttl, p=proto, sum=0, src=s, dst=d)
    head = h.pack() + options
    head = head[:10] + struct.pack("!H", csum(head)) + head[12:]
    return head + payload


def ext6(kind: int, nxt: int, body: bytes = b"") -> bytes:
    """An IPv6 extension header ``kind`` (0, 43, 60: 8-byte units; 51: AH; 44: use frag6)."""
    if kind == 51:
        body = body or bytes(10)
        total = 2 + len(body)
        assert total % 4 == 0
        return struct.pack("!BB", nxt, total // 4 - 2) + body
    body = body or bytes(6)
    total = 2 + len(body)
    assert total % 8 == 0
    return struct.pack("!BB", nxt, total // 8 - 1) + body


def frag6(nxt: int, *, offset: int = 0, more: bool = False, ident: int = 7) -> bytes:
    return hd.IPv6Fragment(nxt=nxt, off=(offset << 3) | int(more), id=ident).pack()


def ip6(payload: bytes, *, nxt: int = 6, src: str | bytes = SRC6, dst: str | bytes = DST6, hlim: int = 64,
        tc: int = 0, ext: Sequence[tuple[int, bytes]] = (), plen: int | None = None, tcp_csum: bool = True) -> bytes:
    """IPv6 with extension headers ``ext``: (header type, header bytes whose first byte is patched)."""
    s, d = _addr(src), _addr(dst)
    if nxt == 6 and tcp_csum:
        payload = _fill_tcp_checksum(payload, s + d + struct.pack("!IxxxB", len(payload), 6))
    chain = b""
    first = nxt
    for kind, raw in reversed(ext):
        chain = bytes([first]) + raw[1:] + chain
        first = kind
    h = hd.IPv6(v_fc_flow=(6 << 28) | (tc << 20), plen=len(chain) + len(payload) if plen is None else plen,
                nxt=first, hlim=hlim, src=s, dst=d)
    return h.pack() + chain + payload


# -- link layers and tunnels ----------------------------------------------------------------------

MAC1, MAC2 = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def ether(payload: bytes, etype: int = 0x0800, *, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """Ethernet II; ``vlans`` are (TPID, VLAN id) from the outside in."""
    tags = b""
    types = [tpid for tpid, _ in vlans] + [etype]
    out_type = types[0]
    for (_, vid), nxt in zip(vlans, types[1:], strict=True):
        tags += hd.VlanTag(tci=vid, type=nxt).pack()
    return hd.Ethernet(dst=MAC2, src=MAC1, type=out_type).pack() + tags + payload


def llc_snap(payload: bytes, etype: int = 0x0800) -> bytes:
    return hd.LLC().pack() + hd.SNAP(type=etype).pack() + payload


def ether_8023(payload: bytes, etype: int = 0x0800) -> bytes:
    body = llc_snap(payload, etype)
    return hd.Ethernet(dst=MAC2, src=MAC1, type=len(body)).pack() + body


def sll(payload: bytes, proto: int = 0x0800, hatype: int = 1) -> bytes:
    return hd.LinuxSLL(pkttype=0, hatype=hatype, halen=6, addr=MAC1 + b"\0\0", type=proto).pack() + payload


def sll2(payload: bytes, proto: int = 0x0800, hatype: int = 1) -> bytes:
    return hd.LinuxSLL2(type=proto, ifindex=2, hatype=hatype, pkttype=0, halen=6, addr=MAC1 + b"\0\0").pack() + payload


def null(payload: bytes, family: int = 2, *, big: bool = False) -> bytes:
    return struct.pack(">I" if big else "<I", family) + payload


def loop(payload: bytes, family: int = 2) -> bytes:
    return struct.pack(">I", family) + payload


def fddi(payload: bytes, etype: int = 0x0800) -> bytes:
    return hd.FDDI(fc=0x50, dst=MAC2, src=MAC1).pack() + llc_snap(payload, etype)


def mpacket(frame: bytes, smd: int = 0xD5) -> bytes:
    return hd.EthernetMPacket(smd=smd).pack() + frame + b"\0\0\0\0"  # and an mCRC


def mpls(payload: bytes, labels: Sequence[int] = (100,)) -> bytes:
    out = b""
    for i, label in enumerate(labels):
        out += hd.MPLSLabel(entry=(label << 12) | (0x100 if i == len(labels) - 1 else 0) | 64).pack()
    return out + payload


def pppoe(payload: bytes, proto: int = 0x0021) -> bytes:
    return hd.PPPoESession(len=len(payload) + 2, proto=proto).pack() + payload


def gre(payload: bytes, proto: int = 0x0800, *, key: int | None = None, seq: int | None = None,
        checksum: bool = False) -> bytes:
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    out = hd.GRE(flags=flags, p=proto).pack()
    if checksum:
        out += b"\0\0\0\0"
    if key is not None:
        out += struct.pack("!I", key)
    if seq is not None:
        out += struct.pack("!I", seq)
    return out + payload


def erspan2(frame: bytes, session: int = 1) -> bytes:
    return gre(hd.ERSPAN2(cos_en_t_session=session).pack() + frame, 0x88BE, seq=5)


def erspan3(frame: bytes, platform: bool = False) -> bytes:
    h = hd.ERSPAN3(p_ft_hwid_d_gra_o=1 if platform else 0).pack()
    return gre(h + (bytes(8) if platform else b"") + frame, 0x22EB, seq=5)


def vxlan(frame: bytes, vni: int = 42) -> bytes:
    return hd.VXLAN(vni_res=vni << 8).pack() + frame


def geneve(payload: bytes, proto: int = 0x6558, options: bytes = b"") -> bytes:
    assert len(options) % 4 == 0
    return hd.Geneve(ver_optlen=len(options) // 4, p=proto, vni_res=7 << 8).pack() + options + payload


def teredo(ipv6_packet: bytes, *, origin: bool = False, auth: bool = False) -> bytes:
    out = b""
    if auth:
        out += hd.TeredoAuth(id_len=2, au_len=3).pack() + b"id" + b"auv" + bytes(8) + b"\0"
    if origin:
        out += hd.TeredoOrigin(port=0xFFFF ^ 40000, addr=b"\xff\xff\xff\xfe").pack()
    return out + ipv6_packet


# -- files ----------------------------------------------------------------------------------------


@dataclass
class Rec:
    """One record: the packet bytes, a timestamp and optionally a shorter captured part."""

    data: bytes
    ts_ns: int = 1_600_000_000_000_000_000
    caplen: int | None = None  # captured length (default: all of data)
    wire_len: int | None = None  # original length (default: len(data))


def pcap_file(records: Iterable[Rec], linktype: int = 1, *, big: bool = False, ns: bool = False,
              snaplen: int = 262144, version: tuple[int, int] = (2, 4)) -> bytes:
    cls = hd.PcapFileHeader if big else hd.PcapFileHeader.swapped()
    rh = hd.PcapRecordHeader if big else hd.PcapRecordHeader.swapped()
    out = [cls(magic=0xA1B23C4D if ns else 0xA1B2C3D4, v_major=version[0], v_minor=version[1], snaplen=snaplen,
               linktype=linktype).pack()]
    for r in records:
        data = r.data[: r.caplen] if r.caplen is not None else r.data
        sec, frac = divmod(r.ts_ns, 1_000_000_000)
        out.append(rh(ts_sec=sec, ts_frac=frac if ns else frac // 1000, caplen=len(data),
                      len=r.wire_len if r.wire_len is not None else len(r.data)).pack())
        out.append(data)
    return b"".join(out)


def _opt(code: int, value: bytes, order: str) -> bytes:
    return struct.pack(order + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def block(btype: int, body: bytes, *, big: bool = False, length: int | None = None,
          trailer: int | None = None) -> bytes:
    """A pcapng block around ``body`` (padded to 4 bytes); ``length``/``trailer`` lie when given."""
    order = ">" if big else "<"
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return (struct.pack(order + "II", btype, total if length is None else length) + body
            + struct.pack(order + "I", total if trailer is None else trailer))


def shb(*, big: bool = False, options: Sequence[tuple[int, bytes]] = (), version: tuple[int, int] = (1, 0)) -> bytes:
    order = ">" if big else "<"
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, version[0], version[1], -1)
    if options:
        body += b"".join(_opt(c, v, order) for c, v in options) + _opt(0, b"", order)
    return block(0x0A0D0D0A, body, big=big)


def idb(linktype: int = 1, *, big: bool = False, snaplen: int = 0, tsresol: int | None = None,
        tsoffset: int | None = None, name: str | None = None) -> bytes:
    order = ">" if big else "<"
    body = struct.pack(order + "HHI", linktype, 0, snaplen)
    opts = b""
    if name is not None:
        opts += _opt(2, name.encode(), order)
    if tsresol is not None:
        opts += _opt(9, bytes([tsresol]), order)
    if tsoffset is not None:
        opts += _opt(14, struct.pack(order + "q", tsoffset), order)
    if opts:
        opts += _opt(0, b"", order)
    return block(1, body + opts, big=big)


def epb(data: bytes, *, iface: int = 0, ts: int = 0, big: bool = False, caplen: int | None = None,
        wire_len: int | None = None, options: Sequence[tuple[int, bytes]] = ()) -> bytes:
    """An Enhanced Packet Block; ``ts`` is in the interface's units."""
    order = ">" if big else "<"
    cap = len(data) if caplen is None else caplen
    body = struct.pack(order + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, cap,
                       len(data) if wire_len is None else wire_len)
    body += data + b"\0" * (-len(data) % 4)
    if options:
        body += b"".join(_opt(c, v, order) for c, v in options) + _opt(0, b"", order)
    return block(6, body, big=big)


def spb(data: bytes, *, big: bool = False, wire_len: int | None = None) -> bytes:
    order = ">" if big else "<"
    return block(3, struct.pack(order + "I", len(data) if wire_len is None else wire_len) + data, big=big)


def pb(data: bytes, *, iface: int = 0, ts: int = 0, big: bool = False) -> bytes:
    order = ">" if big else "<"
    body = struct.pack(order + "HHIIII", iface, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data
    return block(2, body, big=big)


def isb(*, iface: int = 0, big: bool = False) -> bytes:
    order = ">" if big else "<"
    return block(5, struct.pack(order + "III", iface, 0, 0), big=big)


def nrb(*, big: bool = False) -> bytes:
    order = ">" if big else "<"
    rec = struct.pack(order + "HH", 1, 4 + 8) + b"\x0a\x00\x00\x01" + b"host.ex\0"
    return block(4, rec + struct.pack(order + "HH", 0, 0), big=big)


# -- reading back ---------------------------------------------------------------------------------


@dataclass
class Table:
    """Every column of a capture, batches joined; ``src``/``dst`` as (n, 16) arrays."""

    cols: dict[str, np.ndarray]
    src: np.ndarray
    dst: np.ndarray
    payloads: list[bytes]
    warnings: list[str]
    format: str
    packets: int

    @property
    def n(self) -> int:
        return len(self.cols["frame"])

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def row(self, i: int) -> dict[str, object]:
        out: dict[str, object] = {k: v[i].item() for k, v in self.cols.items()}
        out["src"], out["dst"] = bytes(self.src[i]), bytes(self.dst[i])
        out["payload"] = self.payloads[i]
        return out


def read(source: object, *, fast: bool = True, batch_size: int = 65536, engine: str | None = None,
         payloads: bool = True) -> Table:
    """Read a capture (bytes, path or stream) completely with the fast path or (``fast=False``) the
    pure-Python one; ``engine`` picks a decoder ("numba", "numpy", "python") explicitly; ``payloads=False``
    reads the headers only (batches across chunks, every payload empty)."""
    from whyrst.capture.batch import COLUMNS
    from whyrst.capture.open import Capture
    from whyrst.errors import Warnings

    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    w = Warnings()
    parts: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in COLUMNS}
    srcs, dsts, payload_bytes = [], [], []
    if engine is None:
        engine = "auto" if fast else "python"
    with Capture(source, batch_size=batch_size, warnings=w, engine=engine, payloads=payloads) as cap:
        for b in cap:
            assert b.n <= batch_size
            for name in parts:
                parts[name].append(b.cols[name])
            srcs.append(b.src)
            dsts.append(b.dst)
            payload_bytes.extend(b.payload(i) for i in range(b.n))
    cols = {k: np.concatenate(v) if v else np.zeros(0, dtype=dt) for (k, v), (_, dt, _) in zip(parts.items(), COLUMNS,
                                                                                              strict=True)}
    zero = np.zeros((0, 16), dtype=np.uint8)
    return Table(cols, np.concatenate(srcs) if srcs else zero, np.concatenate(dsts) if dsts else zero, payload_bytes,
                 w.all(), cap.format, cap.packets)


def assert_same(a: Table, b: Table, ignore: tuple[str, ...] = ()) -> None:
    """Two readings of a capture give identical columns, addresses and payload bytes."""
    assert a.n == b.n
    for k in a.cols:
        if k in ignore:
            continue
        same = np.array_equal(a.cols[k], b.cols[k])
        if not same:
            i = int(np.flatnonzero(a.cols[k] != b.cols[k])[0])
            raise AssertionError(f"column {k} differs at row {i} (frame {a.cols['frame'][i]}): "
                                 f"{a.cols[k][i]} != {b.cols[k][i]}")
    assert np.array_equal(a.src, b.src) and np.array_equal(a.dst, b.dst)
    if "payloads" not in ignore:
        assert a.payloads == b.payloads

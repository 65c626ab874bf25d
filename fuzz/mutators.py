"""Structure-aware mutations of captures, shared by ``fuzz/run.py`` and ``tests/test_robust.py``.

:func:`fields` finds the fields of a pcap or pcapng file (file and block headers, record and block
lengths, link types, options, and inside each packet the link, IPv4/IPv6 and TCP headers down to each
TCP option's kind and length). :func:`mutate` changes a few of them to values chosen to hurt (zero, all
ones, the sign bit, one past, lengths that point past the end or into the next block), flips bits,
cuts, repeats, drops and splices byte ranges. A gzip file is mutated inside (and recompressed) or as
compressed bytes; tcpdump text has its own line- and number-level mutations.

Everything takes a ``random.Random``-like object, so hypothesis (``st.randoms()``), a seeded
``random.Random`` and atheris (a seed per call) all drive the same code. The parser never raises: on
damage it stops and returns the fields found so far.
"""

from __future__ import annotations

import gzip
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Protocol

PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": ">", b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\x3c\x4d": ">", b"\x4d\x3c\xb2\xa1": "<",
}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
GZIP_MAGIC = b"\x1f\x8b"


class Rng(Protocol):
    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int: ...
    def random(self) -> float: ...
    def getrandbits(self, k: int) -> int: ...


def choice(rng: Rng, seq: list | tuple) -> object:
    return seq[rng.randrange(len(seq))]


@dataclass(frozen=True, slots=True)
class Field:
    off: int
    size: int  # bytes: 1, 2, 4 or 8
    order: str  # ">" big-endian, "<" little-endian
    name: str  # "pcap.snaplen", "record.caplen", "ng.block_len", "ip.vihl", "tcp.doff", "tcp.opt.len", ...


class _Found:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.out: list[Field] = []

    def add(self, off: int, size: int, order: str, name: str) -> None:
        if off >= 0 and off + size <= len(self.data):
            self.out.append(Field(off, size, order, name))

    def u(self, off: int, size: int, order: str) -> int:
        return int.from_bytes(self.data[off : off + size], "big" if order == ">" else "little")


# -- packets: link layer, IP, TCP --------------------------------------------------------------------------

def _tcp(f: _Found, p: int, end: int) -> None:
    if p + 20 > end:
        return
    for off, size, name in ((0, 2, "tcp.sport"), (2, 2, "tcp.dport"), (4, 4, "tcp.seq"), (8, 4, "tcp.ack"),
                            (12, 1, "tcp.doff"), (13, 1, "tcp.flags"), (14, 2, "tcp.win"), (16, 2, "tcp.csum"),
                            (18, 2, "tcp.urg")):
        f.add(p + off, size, ">", name)
    hl = (f.data[p + 12] >> 4) * 4
    q, stop = p + 20, min(p + hl, end)
    while q < stop:
        kind = f.data[q]
        f.add(q, 1, ">", "tcp.opt.kind")
        if kind in (0, 1):
            q += 1
            if kind == 0:
                break
            continue
        if q + 1 >= stop:
            break
        f.add(q + 1, 1, ">", "tcp.opt.len")
        length = f.data[q + 1]
        if kind == 2:
            f.add(q + 2, 2, ">", "tcp.opt.mss")
        elif kind == 3:
            f.add(q + 2, 1, ">", "tcp.opt.wscale")
        elif kind == 8:
            f.add(q + 2, 4, ">", "tcp.opt.tsval")
            f.add(q + 6, 4, ">", "tcp.opt.tsecr")
        elif kind == 30:
            f.add(q + 2, 1, ">", "tcp.opt.mptcp")
        if length < 2:
            break
        q += length


def _ip(f: _Found, p: int, end: int, depth: int = 0) -> None:
    if p >= end or depth > 3:
        return
    version = f.data[p] >> 4
    if version == 4 and p + 20 <= end:
        for off, size, name in ((0, 1, "ip.vihl"), (1, 1, "ip.tos"), (2, 2, "ip.len"), (4, 2, "ip.id"),
                                (6, 2, "ip.frag"), (8, 1, "ip.ttl"), (9, 1, "ip.proto"), (10, 2, "ip.csum"),
                                (12, 4, "ip.src"), (16, 4, "ip.dst")):
            f.add(p + off, size, ">", name)
        ihl = (f.data[p] & 15) * 4
        proto = f.data[p + 9]
        if ihl > 20:
            f.add(p + 20, 1, ">", "ip.opt")
        if proto == 6 and ihl >= 20:
            _tcp(f, p + ihl, end)
        elif proto in (4, 41):
            _ip(f, p + ihl, end, depth + 1)
    elif version == 6 and p + 40 <= end:
        for off, size, name in ((0, 4, "ip6.vtcfl"), (4, 2, "ip6.plen"), (6, 1, "ip6.nh"), (7, 1, "ip6.hlim"),
                                (8, 4, "ip6.src"), (24, 4, "ip6.dst")):
            f.add(p + off, size, ">", name)
        nh, q = f.data[p + 6], p + 40
        for _ in range(8):  # extension headers
            if nh in (0, 43, 60, 51) and q + 2 <= end:
                f.add(q, 1, ">", "ip6.ext.nh")
                f.add(q + 1, 1, ">", "ip6.ext.len")
                nh, q = f.data[q], q + ((f.data[q + 1] + 2) * 4 if nh == 51 else (f.data[q + 1] + 1) * 8)
            elif nh == 44 and q + 8 <= end:
                f.add(q, 1, ">", "ip6.ext.nh")
                f.add(q + 2, 2, ">", "ip6.frag")
                nh, q = f.data[q], q + 8
            else:
                break
        if nh == 6:
            _tcp(f, q, end)
        elif nh in (4, 41):
            _ip(f, q, end, depth + 1)


def _ethertype(f: _Found, p: int, end: int) -> None:
    """An ethertype field at ``p`` followed by its payload (VLAN tags unwrapped)."""
    for _ in range(4):
        if p + 2 > end:
            return
        f.add(p, 2, ">", "eth.type")
        et = f.u(p, 2, ">")
        if et in (0x8100, 0x88A8, 0x9100):
            f.add(p + 2, 2, ">", "vlan.tci")
            p += 4
            continue
        if et in (0x0800, 0x86DD):
            _ip(f, p + 2, end)
        elif et == 0x8847:
            f.add(p + 2, 4, ">", "mpls.label")
        return


def _packet(f: _Found, p: int, caplen: int, linktype: int, order: str) -> None:
    end = min(p + caplen, len(f.data))
    if linktype == 1:
        _ethertype(f, p + 12, end)
    elif linktype == 113:
        f.add(p, 2, ">", "sll.pkttype")
        f.add(p + 2, 2, ">", "sll.hatype")
        _ethertype(f, p + 14, end)
    elif linktype == 276:
        f.add(p, 2, ">", "eth.type")
        f.add(p + 8, 2, ">", "sll2.hatype")
        if f.u(p, 2, ">") in (0x0800, 0x86DD):
            _ip(f, p + 20, end)
    elif linktype in (0, 108):
        f.add(p, 4, order if linktype == 0 else ">", "null.family")
        _ip(f, p + 4, end)
    elif linktype in (12, 14, 101, 228, 229):
        _ip(f, p, end)


# -- files ---------------------------------------------------------------------------------------------

def _pcap(f: _Found) -> None:
    order = PCAP_MAGICS[f.data[:4]]
    for off, size, name in ((0, 4, "pcap.magic"), (4, 2, "pcap.major"), (6, 2, "pcap.minor"), (8, 4, "pcap.zone"),
                            (12, 4, "pcap.sigfigs"), (16, 4, "pcap.snaplen"), (20, 4, "pcap.linktype")):
        f.add(off, size, order, name)
    if len(f.data) < 24:
        return
    linktype = f.u(20, 4, order) & 0xFFFF
    pos = 24
    while pos + 16 <= len(f.data) and len(f.out) < 20000:
        for off, name in ((0, "record.sec"), (4, "record.frac"), (8, "record.caplen"), (12, "record.len")):
            f.add(pos + off, 4, order, name)
        caplen = f.u(pos + 8, 4, order)
        if pos + 16 + caplen > len(f.data):
            return
        _packet(f, pos + 16, caplen, linktype, order)
        pos += 16 + caplen


def _options(f: _Found, p: int, end: int, order: str, what: str) -> None:
    while p + 4 <= end:
        f.add(p, 2, order, f"{what}.opt.code")
        f.add(p + 2, 2, order, f"{what}.opt.len")
        code, length = f.u(p, 2, order), f.u(p + 2, 2, order)
        if code == 0:
            return
        p += 4 + ((length + 3) & ~3)


def _pcapng(f: _Found) -> None:
    pos, order = 0, "<"
    links: list[int] = []
    while pos + 12 <= len(f.data) and len(f.out) < 20000:
        if f.data[pos : pos + 4] == PCAPNG_MAGIC:
            bom = f.data[pos + 8 : pos + 12]
            order = ">" if bom == b"\x1a\x2b\x3c\x4d" else "<"
        btype, blen = f.u(pos, 4, order), f.u(pos + 4, 4, order)
        f.add(pos, 4, order, "ng.block_type")
        f.add(pos + 4, 4, order, "ng.block_len")
        if blen < 12 or pos + blen > len(f.data):
            return
        f.add(pos + blen - 4, 4, order, "ng.trailer")
        end = pos + blen - 4
        if btype == 0x0A0D0D0A:
            f.add(pos + 8, 4, order, "ng.shb.bom")
            f.add(pos + 12, 2, order, "ng.shb.major")
            f.add(pos + 16, 8, order, "ng.shb.section_len")
            _options(f, pos + 24, end, order, "ng.shb")
            links = []
        elif btype == 1:
            f.add(pos + 8, 2, order, "ng.idb.linktype")
            f.add(pos + 12, 4, order, "ng.idb.snaplen")
            _options(f, pos + 16, end, order, "ng.idb")
            links.append(f.u(pos + 8, 2, order))
        elif btype in (2, 6):
            f.add(pos + 8, 4 if btype == 6 else 2, order, "ng.epb.iface")
            f.add(pos + 12, 4, order, "ng.epb.ts_hi")
            f.add(pos + 16, 4, order, "ng.epb.ts_lo")
            f.add(pos + 20, 4, order, "ng.epb.caplen")
            f.add(pos + 24, 4, order, "ng.epb.len")
            iface, caplen = f.u(pos + 8, 4 if btype == 6 else 2, order), f.u(pos + 20, 4, order)
            if iface < len(links) and pos + 28 + caplen <= end:
                _packet(f, pos + 28, caplen, links[iface], order)
                _options(f, pos + 28 + ((caplen + 3) & ~3), end, order, "ng.epb")
        elif btype == 3:
            f.add(pos + 8, 4, order, "ng.spb.len")
            if links:
                _packet(f, pos + 12, blen - 16, links[0], order)
        pos += blen


def fields(data: bytes) -> list[Field]:
    """The fields of a pcap or pcapng capture (none for anything else); stops quietly at damage."""
    f = _Found(data)
    try:
        if data[:4] in PCAP_MAGICS:
            _pcap(f)
        elif data[:4] == PCAPNG_MAGIC:
            _pcapng(f)
    except (IndexError, ValueError, struct.error):  # the file is damaged: keep what was found
        pass
    return f.out


# -- mutations -----------------------------------------------------------------------------------------

def _values(field: Field, old: int, size_left: int, rng: Rng) -> list[int]:
    bits = 8 * field.size
    top = (1 << bits) - 1
    vals = [0, 1, top, top - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1, (old + 1) & top, (old - 1) & top,
            (old * 2) & top, old ^ (1 << rng.randrange(bits)), rng.getrandbits(bits)]
    n = field.name
    if n.endswith(("caplen", "snaplen", ".len", "block_len", "trailer", "section_len")) or n == "record.len":
        vals += [0x7FFFFFFC & top, 0xFFFFFFFC & top, 0x40000000 & top, 262144, 262145, (16 << 20) + 4,
                 size_left, size_left + 4, size_left - 4, 12, 16, 20, 28, 32, 3, 13]
    if n in ("ip.vihl",):
        vals += [0x40 | rng.randrange(16), 0x60 | rng.randrange(16), 0x45, 0x4F, 0x44, 0x40, 0x46]
    if n in ("tcp.doff",):
        vals += [(rng.randrange(16) << 4) | (old & 15), 0x00, 0x40, 0x50, 0xF0, 0x60]
    if n in ("tcp.opt.kind",):
        vals += [0, 1, 2, 3, 4, 5, 8, 19, 28, 29, 30, 34, 253, 254, 255]
    if n in ("tcp.opt.len", "ip6.ext.len"):
        vals += [0, 1, 2, 3, 4, 10, 40, 255]
    if n in ("tcp.flags",):
        vals += [0x04, 0x14, 0x02, 0x12, 0x06, 0x07, 0x3F, 0xFF, 0x01, 0x11]
    if n in ("ip.proto", "ip6.nh", "ip6.ext.nh"):
        vals += [4, 6, 17, 41, 43, 44, 47, 50, 51, 59, 60, 0]
    if n in ("pcap.linktype", "ng.idb.linktype"):
        vals += [0, 1, 9, 10, 12, 14, 101, 105, 108, 113, 127, 228, 229, 274, 276, 0xFFFF, 0x03FF0001]
    if n in ("eth.type",):
        vals += [0x0800, 0x86DD, 0x8100, 0x88A8, 0x8847, 0x8864, 0x6558, 0x88BE, 0x0806]
    if n in ("ip.frag",):
        vals += [0x2000, 0x0001, 0x3FFF, 0x4000, 0x1FFF]
    if n in ("ip.len", "ip6.plen"):
        vals += [0, 20, 39, 40, 41, 60, 0xFFFF]
    if n in ("ng.block_type",):
        vals += [0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 9, 0xBAD, 0x40000BAD, 0x80000001]
    if n in ("ng.epb.iface",):
        vals += [1, 2, 0xFFFF]
    return [v & top for v in vals]


def _set(buf: bytearray, field: Field, value: int) -> None:
    buf[field.off : field.off + field.size] = value.to_bytes(field.size, "big" if field.order == ">" else "little")


def _binary_op(buf: bytearray, fs: list[Field], rng: Rng, other: bytes) -> bytearray:
    op = rng.randrange(100)
    fs = [x for x in fs if x.off + x.size <= len(buf)]  # earlier cuts and drops may have moved the end
    if fs and op < 55:  # a field to a value chosen to hurt
        fld = fs[rng.randrange(len(fs))]
        old = int.from_bytes(buf[fld.off : fld.off + fld.size], "big" if fld.order == ">" else "little")
        vals = _values(fld, old, len(buf) - fld.off, rng)
        _set(buf, fld, vals[rng.randrange(len(vals))])
    elif op < 70:  # bit flips, in a field or anywhere
        for _ in range(1 + rng.randrange(8)):
            if fs and rng.random() < 0.5:
                fld = fs[rng.randrange(len(fs))]
                i = fld.off + rng.randrange(fld.size)
            elif buf:
                i = rng.randrange(len(buf))
            else:
                break
            buf[i] ^= 1 << rng.randrange(8)
    elif op < 78:  # cut, at a field edge or anywhere
        if fs and rng.random() < 0.5:
            fld = fs[rng.randrange(len(fs))]
            cut = fld.off + rng.randrange(fld.size + 1)
        else:
            cut = rng.randrange(len(buf) + 1)
        del buf[cut:]
    elif op < 86 and buf:  # repeat or drop a range (records or blocks that no longer line up)
        a = rng.randrange(len(buf))
        b = min(len(buf), a + 1 + rng.randrange(256))
        if rng.random() < 0.5:
            buf[a:a] = buf[a:b]
        else:
            del buf[a:b]
    elif op < 93:  # random bytes in
        a = rng.randrange(len(buf) + 1)
        buf[a:a] = bytes(rng.getrandbits(8) for _ in range(1 + rng.randrange(64)))
    elif other:  # splice in a piece of another capture
        a, b = rng.randrange(len(buf) + 1), rng.randrange(len(other))
        buf[a:] = other[b : b + rng.randrange(4096)]
    return buf


_NUMBERS = ("0", "1", "65535", "65536", "4294967295", "4294967296", "18446744073709551616", "-1",
            "99999999999999999999999999", "2147483648", "1e9", "00", "0x10")
_SNIPPETS = ("[", "]", "(", ")", ":", ".", ",", " ", "S", "R.", "F.", "::", "IP ", "IP6 ", "\t", "\r", "é", "\x00",
             "length ", "seq ", "ack ", "win ", "options [", "TS val ", "mss ", "wscale ", "sack 1 {", "ttl ",
             "Flags [", "> ", "In ", "Out ", "2024-13-45 ", "25:61:61.", "\u202e")


def mutate_text(text: bytes, rng: Rng) -> bytes:
    """tcpdump-text mutations: numbers to extremes, characters in, lines repeated, dropped, shuffled."""
    s = text.decode("utf-8", "replace")
    lines = s.splitlines()
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(6)
        if op == 0:
            ms = list(re.finditer(r"\d+", s))
            if ms:
                m = ms[rng.randrange(len(ms))]
                s = s[: m.start()] + str(choice(rng, _NUMBERS)) + s[m.end() :]
        elif op == 1:
            a = rng.randrange(len(s) + 1)
            s = s[:a] + str(choice(rng, _SNIPPETS)) + s[a:]
        elif op == 2 and s:
            a = rng.randrange(len(s))
            s = s[:a] + s[a + 1 + rng.randrange(20) :]
        elif op == 3 and lines:
            i = rng.randrange(len(lines))
            lines.insert(rng.randrange(len(lines) + 1), lines[i])
            s = "\n".join(lines)
        elif op == 4 and lines:
            a = rng.randrange(len(lines))
            lines[a], lines[-1] = lines[-1], lines[a]
            s = "\n".join(lines)
        else:
            s = s[: rng.randrange(len(s) + 1)]
        lines = s.splitlines()
    return s.encode("utf-8", "surrogatepass")


def mutate(data: bytes, rng: Rng, *, ops: int = 0, other: bytes = b"") -> bytes:
    """``data`` with 1-4 mutations (``ops`` to fix the number); gzip is mutated inside or outside."""
    n = ops or 1 + rng.randrange(4)
    if data[:2] == GZIP_MAGIC and rng.random() < 0.7:
        try:
            inner = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            inner = b""
        if inner:
            return gzip.compress(mutate(inner, rng, ops=n, other=other), mtime=0)
    binary = data[:4] in PCAP_MAGICS or data[:4] == PCAPNG_MAGIC or data[:2] == GZIP_MAGIC
    if not binary and data and b"\x00" not in data[:512]:
        return mutate_text(data, rng)
    buf = bytearray(data)
    fs = fields(data)
    for _ in range(n):
        buf = _binary_op(buf, fs, rng, other)
    return bytes(buf)

"""libpcap savefiles: microsecond and nanosecond resolution, both byte orders, read in chunks."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator

import numpy as np

from whyrst.capture import headers as hd
from whyrst.capture import records as rec
from whyrst.errors import CaptureError, Warnings

MAGIC_US, MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
MAGICS = {
    struct.pack(">I", MAGIC_US): (">", False),
    struct.pack("<I", MAGIC_US): ("<", False),
    struct.pack(">I", MAGIC_NS): (">", True),
    struct.pack("<I", MAGIC_NS): ("<", True),
}

OK, BAD_CAPLEN = 0, 1

# (buf, pos, max_n, big_endian, nanoseconds, offs, cap, wire, ts) -> (records, new pos, status)
Walker = Callable[[memoryview, int, int, bool, bool, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                  tuple[int, int, int]]


def walk_py(buf: bytes | memoryview, pos: int, max_n: int, big: bool, ns: bool, offs: np.ndarray, cap: np.ndarray,
            wire: np.ndarray, ts: np.ndarray) -> tuple[int, int, int]:
    """Record headers from ``buf[pos:]``, up to ``max_n`` records; stops before an incomplete record."""
    unpack = (hd.PcapRecordHeader if big else hd.PcapRecordHeader.swapped())._struct.unpack_from
    size = hd.PcapRecordHeader.size
    mult = 1 if ns else 1000
    end = len(buf)
    n = 0
    while n < max_n and pos + size <= end:
        sec, frac, caplen, length = unpack(buf, pos)
        if caplen > rec.MAX_CAPLEN:
            return n, pos, BAD_CAPLEN
        if pos + size + caplen > end:
            break
        offs[n] = pos + size
        cap[n] = caplen
        wire[n] = length
        ts[n] = sec * 1_000_000_000 + frac * mult
        n += 1
        pos += size + caplen
    return n, pos, OK


def _walker() -> Walker:
    from whyrst.capture import fast

    return fast.pcap_walker() or walk_py


def read_pcap(stream: rec.ByteStream, source: str, batch_size: int, warnings: Warnings,
              walker: Walker | None = None) -> Iterator[rec.Records]:
    head = stream.read_exact(hd.PcapFileHeader.size)
    order, ns = MAGICS[head[:4]]
    if len(head) < hd.PcapFileHeader.size:
        raise CaptureError(source, len(head), "pcap: the file ends inside its 24-byte file header")
    fh = (hd.PcapFileHeader if order == ">" else hd.PcapFileHeader.swapped()).unpack_from(head)
    assert fh is not None
    if fh.v_major != 2:
        raise CaptureError(source, 4, f"pcap: major version {fh.v_major} unsupported (only version 2 is)")
    if fh.linktype & 0x03FF0000:
        raise CaptureError(source, 20, f"pcap: network type reserved field not zero (0x{fh.linktype:08x})")
    linktype = fh.linktype & 0xFFFF
    walk = walker or _walker()
    big = order == ">"
    base = hd.PcapFileHeader.size  # file offset of buf[0]
    buf = memoryview(b"")
    pos = 0
    eof = False
    packets = 0
    out = rec.RecordArrays(batch_size)
    while True:
        n, new_pos, status = walk(buf, pos, batch_size, big, ns, out.offs, out.cap, out.wire, out.ts)
        if n:
            out.link[:n] = linktype
            out.iface[:n] = 0
            packets += n
            yield out.records(buf, n, base)  # (its arrays are filled again once the consumer asks for more)
            pos = new_pos
        if status == BAD_CAPLEN:
            caplen = struct.unpack_from(order + "I", buf, pos + 8)[0]
            rec.damaged(source, warnings, packets, base + pos,
                        f"pcap: record claims a captured length of {caplen} bytes (more than {rec.MAX_CAPLEN}); "
                        "the rest of the file cannot be read")
            return
        if n == batch_size:
            continue
        if eof:
            if pos < len(buf) and stream.error is None:  # (a decompression error is reported instead)
                left = len(buf) - pos
                what = "record header" if left < hd.PcapRecordHeader.size else "record"
                warnings.warn(f"{source}: offset {base + pos}: the file ends in the middle of a {what} "
                              f"({left} bytes of packet {packets + 1}); read {packets} packets before it")
            return
        left = len(buf) - pos
        base += pos
        buf = stream.refill(buf[pos:], stream.chunk_size)
        pos = 0
        eof = len(buf) == left

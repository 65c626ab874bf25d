"""pcapng: sections in either byte order, interfaces with their own link type and time resolution,
Enhanced, Simple and (obsolete) Packet Blocks; other blocks are skipped. Read in chunks.

Runs of Enhanced Packet Blocks go through a compiled walker when numba is installed; every other
block, and any block the walker does not like, is handled here one at a time.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from whyrst.capture import headers as hd
from whyrst.capture import records as rec
from whyrst.capture.decode import LT_NONE
from whyrst.errors import Warnings

MAGIC = b"\x0a\x0d\x0d\x0a"
BOM = 0x1A2B3C4D
SHB, IDB, PB, SPB, NRB, ISB, EPB, JOURNAL = 0x0A0D0D0A, 1, 2, 3, 4, 5, 6, 9
# Blocks TShark (4.0) turns into frames of their own without a packet: systemd journal entries,
# custom blocks and sysdig events. They count as packets (as frame.number counts them).
NON_PACKET_RECORDS = frozenset((JOURNAL, 0x00000BAD, 0x40000BAD, 0x204, 0x216, 0x221))

OPT_ENDOFOPT, IF_TSRESOL, IF_TSOFFSET = 0, 9, 14
DEFAULT_TSRESOL = 6  # microseconds


def ts_to_ns(t: int, resol: int, offset_s: int) -> int:
    """A pcapng timestamp ``t`` in units of ``resol`` (if_tsresol byte) to int64 ns, plus ``offset_s``.

    Written with integer operations that do not overflow 64 bits before the final sum, so the compiled
    walker (which computes the same thing in uint64) agrees with it exactly.
    """
    if resol & 0x80:
        k = resol & 0x7F
        if k < 64:
            sec = t >> k
            frac = t - (sec << k)
        else:
            sec = 0
            frac = t
        if k <= 30:
            part = (frac * 1_000_000_000) >> k
        elif k - 30 < 64:
            part = ((frac >> (k - 30)) * 1_000_000_000) >> 30
        else:
            part = 0
        ns = sec * 1_000_000_000 + part
    elif resol <= 9:
        ns = t * 10 ** (9 - resol)
    elif resol - 9 <= 19:
        ns = t // 10 ** (resol - 9)
    else:
        ns = 0
    ns = (ns + offset_s * 1_000_000_000) & 0xFFFFFFFFFFFFFFFF
    return ns - (1 << 64) if ns >> 63 else ns


@dataclass
class Interface:
    linktype: int
    snaplen: int
    tsresol: int = DEFAULT_TSRESOL
    tsoffset: int = 0


# (buf, pos, max_n, n0, big, if_link, if_resol, if_offset, if_count, iface_base,
#  offs, cap, wire, ts, link, iface) -> (records added, new pos)
EpbWalker = Callable[..., tuple[int, int]]


class _Reader:
    def __init__(self, stream: rec.ByteStream, source: str, batch_size: int, warnings: Warnings,
                 walker: EpbWalker | None) -> None:
        self.stream, self.source, self.batch_size, self.warnings = stream, source, batch_size, warnings
        self.walker = walker
        self.order = "<"
        self.ifaces: list[Interface] = []
        self.iface_base = 0  # interfaces of earlier sections (iface numbers are global across sections)
        self.packets = 0  # records yielded
        self._if_arrays: tuple[np.ndarray, ...] | None = None

    # -- helpers ---------------------------------------------------------------------------------
    def _u32(self, buf: memoryview, p: int) -> int:
        return int.from_bytes(buf[p : p + 4], "big" if self.order == ">" else "little")

    def _hdr(self, cls: type[hd.H]) -> type[hd.H]:
        return cls if self.order == ">" else cls.swapped()

    def _options(self, buf: memoryview, p: int, end: int, base: int, what: str) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        opt = self._hdr(hd.BlockOption)
        while p + 4 <= end:
            o = opt.unpack_from(buf, p, end)
            assert o is not None
            if o.code == OPT_ENDOFOPT:
                break
            padded = (o.len + 3) & ~3
            if p + 4 + padded > end:
                raise rec.Damage(base + p, f"pcapng: {what}: Not enough data to handle option of length {o.len}")
            found.setdefault(o.code, buf[p + 4 : p + 4 + o.len])
            p += 4 + padded
        return found

    def _interface_arrays(self) -> tuple[np.ndarray, ...]:
        if self._if_arrays is None:
            self._if_arrays = (
                np.array([i.linktype for i in self.ifaces], dtype=np.uint16),
                np.array([i.tsresol for i in self.ifaces], dtype=np.uint8),
                np.array([i.tsoffset for i in self.ifaces], dtype=np.int64),
            )
        return self._if_arrays

    # -- blocks ----------------------------------------------------------------------------------
    def _section(self, buf: memoryview, p: int, blen: int, base: int) -> None:
        if blen < 28:
            raise rec.Damage(base + p, f"pcapng: section header block of {blen} bytes is too short")
        sh = self._hdr(hd.SectionHeader).unpack_from(buf, p + 8)
        assert sh is not None
        if sh.v_major != 1:
            raise rec.Damage(base + p + 12, f"pcapng: unsupported version {sh.v_major}.{sh.v_minor}")
        self._options(buf, p + 24, p + blen - 4, base, "section header block")
        self.iface_base += len(self.ifaces)
        self.ifaces = []
        self._if_arrays = None

    def _interface(self, buf: memoryview, p: int, blen: int, base: int) -> None:
        if blen < 20:
            raise rec.Damage(base + p, f"pcapng: interface description block of {blen} bytes is too short")
        idb = self._hdr(hd.InterfaceDescription).unpack_from(buf, p + 8)
        assert idb is not None
        opts = self._options(buf, p + 16, p + blen - 4, base, "interface description block")
        iface = Interface(idb.linktype, idb.snaplen)
        if len(opts.get(IF_TSRESOL, b"")) >= 1:
            iface.tsresol = opts[IF_TSRESOL][0]
        if len(opts.get(IF_TSOFFSET, b"")) == 8:
            iface.tsoffset = struct.unpack(self.order + "q", opts[IF_TSOFFSET])[0]
        self.ifaces.append(iface)
        self._if_arrays = None

    def _packet(self, buf: memoryview, p: int, btype: int, blen: int, base: int, out: rec.RecordArrays, n: int) -> None:
        """Fill record ``n`` of ``out`` from an EPB, SPB or PB at ``buf[p:p+blen]``."""
        if btype == SPB:
            if blen < 16:
                raise rec.Damage(base + p, f"pcapng: simple packet block of {blen} bytes is too short")
            if not self.ifaces:
                raise rec.Damage(base + p, "pcapng: simple packet block before any interface description block")
            length = self._u32(buf, p + 8)
            iface_no, data, caplen, ts = 0, p + 12, min(length, blen - 16), 0
            snaplen = self.ifaces[0].snaplen
            if snaplen:
                caplen = min(caplen, snaplen)
        else:
            cls = hd.EnhancedPacket if btype == EPB else hd.ObsoletePacket
            if blen < 12 + cls.size:
                raise rec.Damage(base + p, f"pcapng: packet block of {blen} bytes is too short")
            b = self._hdr(cls).unpack_from(buf, p + 8)
            assert b is not None
            iface_no, caplen, length, data = b.iface, b.caplen, b.len, p + 8 + cls.size
            if iface_no >= len(self.ifaces):
                raise rec.Damage(base + p + 8, f"pcapng: packet block refers to interface {iface_no} but the section "
                                               f"describes {len(self.ifaces)}")
            if caplen > rec.MAX_CAPLEN:
                raise rec.Damage(base + p + 8 + cls.size - 8,
                                 f"pcapng: packet block claims a captured length of {caplen} bytes "
                                 f"(more than {rec.MAX_CAPLEN})")
            if data + caplen > p + blen - 4:
                raise rec.Damage(base + p + 8 + cls.size - 8,
                                 f"pcapng: captured length {caplen} runs past the end of its {blen}-byte block")
            i = self.ifaces[iface_no]
            ts = ts_to_ns((b.ts_hi << 32) | b.ts_lo, i.tsresol, i.tsoffset)
        out.offs[n] = data
        out.cap[n] = caplen
        out.wire[n] = length
        out.ts[n] = ts
        out.link[n] = self.ifaces[iface_no].linktype
        out.iface[n] = (self.iface_base + iface_no) & 0xFFFF

    def _other(self, buf: memoryview, p: int, btype: int, blen: int, n: int) -> None:
        """A block that is not a record (name resolution, statistics...), before record ``n`` of the batch:
        skipped here; a subclass that rewrites the file keeps it."""

    # -- main loop -------------------------------------------------------------------------------
    def run(self) -> Iterator[rec.Records]:
        buf, pos, base, eof = memoryview(b""), 0, 0, False
        out, n = rec.RecordArrays(self.batch_size), 0  # (filled again once the consumer asks for more)
        first = True
        while True:
            if self.walker is not None and self.ifaces and n < self.batch_size and len(buf) - pos >= 32:
                link, resol, offset = self._interface_arrays()
                added, pos = self.walker(buf, pos, self.batch_size - n, n, self.order == ">", link, resol, offset,
                                         len(self.ifaces), self.iface_base, out.offs, out.cap, out.wire, out.ts,
                                         out.link, out.iface)
                n += added
            if n == self.batch_size:
                self.packets += n
                yield out.records(buf, n, base)
                n = 0
                continue
            avail = len(buf) - pos
            need = 12
            if avail >= 12:
                btype = self._u32(buf, pos)
                try:
                    if btype == SHB:
                        bom = buf[pos + 8 : pos + 12]
                        if bom == struct.pack(">I", BOM):
                            self.order = ">"
                        elif bom == struct.pack("<I", BOM):
                            self.order = "<"
                        else:
                            raise rec.Damage(base + pos + 8, "pcapng: section header block with an unknown "
                                                             f"byte-order magic 0x{bom.hex()}")
                    elif first:
                        raise rec.Damage(base + pos, "pcapng: the file does not start with a section header block")
                    blen = self._u32(buf, pos + 4)
                    if blen < 12 or blen % 4:
                        raise rec.Damage(base + pos + 4, f"pcapng: block length {blen} is not a multiple of 4 of at "
                                                         "least 12")
                    if blen > rec.MAX_BLOCK:
                        raise rec.Damage(base + pos + 4, f"pcapng: block claims {blen} bytes (more than "
                                                         f"{rec.MAX_BLOCK}); the rest of the file cannot be read")
                    need = blen
                    if avail >= blen:
                        record = False
                        if btype == SHB:
                            self._section(buf, pos, blen, base)
                        elif btype == IDB:
                            self._interface(buf, pos, blen, base)
                        elif btype in (EPB, SPB, PB):
                            self._packet(buf, pos, btype, blen, base, out, n)
                            record = True
                        elif btype in NON_PACKET_RECORDS:
                            out.offs[n], out.cap[n], out.wire[n], out.ts[n] = pos + 8, 0, 0, 0
                            out.link[n], out.iface[n] = LT_NONE, 0
                            record = True
                        else:
                            self._other(buf, pos, btype, blen, n)
                        trailer = self._u32(buf, pos + blen - 4)
                        if trailer != blen:
                            raise rec.Damage(base + pos + blen - 4, f"pcapng: block at offset {base + pos} ends with "
                                                                    f"length {trailer}, not {blen}")
                        n += record
                        first = False
                        pos += blen
                        continue
                except rec.Damage as d:
                    if n:
                        self.packets += n
                        yield out.records(buf, n, base)
                    rec.damaged(self.source, self.warnings, self.packets, d.offset, d.message)
                    return
            # the next block is not all in the buffer
            if eof:
                if n:
                    self.packets += n
                    yield out.records(buf, n, base)
                if avail and self.stream.error is None:  # (a decompression error is reported instead)
                    self.warnings.warn(f"{self.source}: offset {base + pos}: the file ends in the middle of a block "
                                       f"({avail} of {need} bytes); read {self.packets} packets before it")
                return
            if n:
                self.packets += n
                yield out.records(buf, n, base)
                n = 0
            base += pos
            buf = self.stream.refill(buf[pos:], max(self.stream.chunk_size, need - avail))
            pos = 0
            eof = len(buf) == avail


def read_pcapng(stream: rec.ByteStream, source: str, batch_size: int, warnings: Warnings,
                walker: EpbWalker | bool | None = True) -> Iterator[rec.Records]:
    """Records of a pcapng stream; ``walker=True`` uses the compiled EPB walker when numba is there."""
    if walker is True:
        from whyrst.capture import fast

        walker = fast.pcapng_walker()
    return _Reader(stream, source, batch_size, warnings, walker or None).run()

"""Byte ranges of one capture file, each readable on its own: how a large file is split between processes.

:func:`plan_ranges` walks the record layer from the start of the file (pcap record headers, or pcapng
block headers, with the readers' compiled walkers over a memory map) and cuts it at record boundaries
into ranges of about equal size. Each :class:`ByteRange` knows the number of records before it (its
first frame number is ``frames_before + 1``) and the bytes a reader must see first: the pcap file
header, or for pcapng the section header and interface descriptions in force at the cut.

:func:`open_range` opens one range with the ordinary readers (:class:`whyrst.capture.open.Capture`):
the prefix followed by the range's bytes, read as a stream, with frame numbers counted from
``frames_before``. Every record is decoded exactly as in a read of the whole file, so the batches of
the ranges, one after another, equal the batches of the whole file.

Only files the whole-file read would get through without a word are split: a file that is damaged
or truncated anywhere (the whole-file read warns with offsets and counts a range cannot know), gzip
(a deflate stream cannot be entered in the middle), tcpdump text, a pipe, or a link type the decoder
does not know is left whole, and :func:`plan_ranges` says why.
"""

from __future__ import annotations

import io
import itertools
import mmap
import os
import stat
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from whyrst.capture import pcap, pcapng
from whyrst.capture import records as rec
from whyrst.capture.batch import BATCH_ROWS
from whyrst.capture.decode import SUPPORTED_LINKTYPES
from whyrst.capture.open import GZIP_MAGIC, Capture
from whyrst.errors import Warnings

STEP = 8192  # records walked per call of the compiled walkers


@dataclass(frozen=True)
class ByteRange:
    """Records ``[start, end)`` of ``path`` (file offsets at record or block boundaries)."""

    path: str
    format: str  # "pcap" or "pcapng"
    start: int
    end: int
    frames_before: int  # records before ``start`` (-1: not known until the ranges before it are read)
    frames: int  # records in the range (-1: not known)
    prefix: bytes = field(repr=False)  # what the reader sees before the range's bytes
    scan_from: int = -1  # pcapng: blocks from here to ``end`` are checked as they are read (-1: not needed)
    big: bool = False  # pcapng: byte order of the section
    ifaces: int = 0  # pcapng: interfaces the prefix describes

    @property
    def size(self) -> int:
        return self.end - self.start


@dataclass
class Plan:
    """How a file splits: ``ranges`` (empty when it does not) and, when it does not, ``reason``."""

    path: str
    format: str = ""
    size: int = 0
    records: int = 0
    ranges: list[ByteRange] = field(default_factory=list)
    reason: str = ""


def plan_ranges(path: str, parts: int, min_bytes: int = 1 << 20, exact: bool = False) -> Plan:
    """Cut ``path`` into about ``parts`` ranges of at least ``min_bytes`` each (one range when it is
    smaller); ``Plan.reason`` says why a file cannot be split at all.

    By default the cuts are found near the wanted offsets by resynchronising on a chain of plausible
    record (or block) headers, without walking the whole file; the frame numbers of such ranges are
    not known yet (``frames_before`` is -1) and the ranges must be checked as they are read (see
    :meth:`RangeCapture.check`): a range that starts at a record boundary and whose read ends exactly at
    its end proves the next cut is a record boundary too, so the first range (which starts at the
    file's first record) vouches for all of them. ``exact=True`` walks every record header from the
    start of the file instead (slower: memory latency per record) and knows every frame number.
    """
    plan = Plan(path)
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                plan.reason = "not a regular file"
                return plan
            plan.size = st.st_size
            head = fh.read(4)
            if head[:2] == GZIP_MAGIC:
                plan.reason = "gzip input cannot be split (a deflate stream is read from its start)"
                return plan
            if head not in pcap.MAGICS and head != pcapng.MAGIC:
                plan.reason = "only pcap and pcapng files can be split"
                return plan
            if plan.size < 64:
                plan.reason = "too small"
                return plan
            mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            buf = np.frombuffer(mm, dtype=np.uint8)
            walk, resync = (_plan_pcap, _resync_pcap) if head in pcap.MAGICS else (_plan_pcapng, _resync_pcapng)
            plan.format = "pcap" if head in pcap.MAGICS else "pcapng"
            try:
                try:
                    (walk if exact else resync)(plan, buf, parts, min_bytes)
                except _NotClean:
                    if exact:
                        raise
                    plan.ranges = []
                    walk(plan, buf, parts, min_bytes)  # (several sections, say: the walk from the start knows)
            except _NotClean as e:
                plan.reason = str(e)
            del buf  # (the walk's views went with its frames, so the map can close)
            mm.close()
    except OSError as e:
        plan.reason = f"cannot read: {e.strerror or e}"
    if plan.reason:
        plan.ranges = []
    return plan


class _NotClean(Exception):
    pass


def _targets(size: int, start: int, parts: int, min_bytes: int) -> list[int]:
    """File offsets where cuts are wanted (the walk cuts at the first boundary at or after each)."""
    body = size - start
    parts = max(1, min(parts, body // max(min_bytes, 1)))
    return [start + body * k // parts for k in range(1, parts)]


def _plan_pcap(plan: Plan, buf: np.ndarray, parts: int, min_bytes: int) -> None:
    from whyrst.capture import fast

    head = bytes(buf[:24])
    order, ns = pcap.MAGICS[head[:4]]
    if len(head) < 24:
        raise _NotClean("the file ends inside its header")
    major = struct.unpack_from(order + "H", head, 4)[0]
    linktype = struct.unpack_from(order + "I", head, 20)[0]
    if major != 2 or linktype & 0x03FF0000:
        raise _NotClean("the file header is not one the reader accepts without a word")
    if linktype & 0xFFFF not in SUPPORTED_LINKTYPES:
        raise _NotClean(f"link type {linktype & 0xFFFF} is not supported (its packets are only counted)")
    walker = fast.pcap_walker() or pcap.walk_py
    big = order == ">"
    size = len(buf)
    targets = _targets(size, 24, parts, min_bytes)
    offs = np.zeros(STEP, dtype=np.int64)
    cap = np.zeros(STEP, dtype=np.uint32)
    wire = np.zeros(STEP, dtype=np.uint32)
    ts = np.zeros(STEP, dtype=np.int64)
    cuts: list[tuple[int, int]] = [(24, 0)]  # (offset, records before)
    pos, records = 24, 0
    mv = memoryview(buf)  # type: ignore[arg-type]
    while pos < size:
        # walk up to the next target exactly: a call stops at STEP records, so cuts land on the record
        # boundary at or just after each target
        n, new_pos, status = walker(mv, pos, STEP, big, ns, offs, cap, wire, ts)
        if status != pcap.OK:
            raise _NotClean(f"damaged at offset {new_pos} (a record claims more than {rec.MAX_CAPLEN} bytes)")
        if n == 0:
            raise _NotClean(f"the file ends in the middle of a record at offset {pos}")
        if targets and new_pos >= targets[0]:
            # the first record boundary at or after the target, found in this step's offsets
            ends = offs[:n] + cap[:n].astype(np.int64)
            k = int(np.searchsorted(ends, targets[0], side="left"))
            cut = int(ends[k]) if k < n else new_pos
            if cut < size:
                cuts.append((cut, records + min(k, n - 1) + 1))
            while targets and targets[0] <= cut:
                targets.pop(0)
        records += n
        pos = new_pos
    plan.records = records
    bounds = [*cuts, (size, records)]
    plan.ranges = [ByteRange(plan.path, "pcap", a, b, fa, fb - fa, head)
                   for (a, fa), (b, fb) in itertools.pairwise(bounds) if b > a]


def _plan_pcapng(plan: Plan, buf: np.ndarray, parts: int, min_bytes: int) -> None:
    from whyrst.capture import fast

    size = len(buf)
    walker = fast.pcapng_walker()
    targets = _targets(size, 0, parts, min_bytes)
    out = rec.RecordArrays(STEP)
    mv = memoryview(buf)  # type: ignore[arg-type]
    pos, records = 0, 0
    big = False
    # the section in force: its header block, its interface blocks (raw), their link types, and how many
    # interfaces earlier sections described (the global interface number of the section's first one)
    shb = b""
    idbs: list[bytes] = []
    links: list[int] = []
    resol: list[int] = []
    earlier_ifaces = 0
    arrays: tuple[np.ndarray, ...] | None = None
    cuts: list[tuple[int, int, bytes]] = []

    def u32(p: int) -> int:
        return int.from_bytes(mv[p : p + 4], "big" if big else "little")

    def cut_here() -> None:
        cuts.append((pos, records, _pcapng_prefix(shb, idbs, earlier_ifaces, big)))

    first = True
    while pos < size:
        if targets and pos >= targets[0] and not first:
            cut_here()
            while targets and targets[0] <= pos:
                targets.pop(0)
        if walker is not None and links and size - pos >= 32:
            if arrays is None:
                arrays = (np.array(links, dtype=np.uint16), np.array(resol, dtype=np.uint8),
                          np.zeros(len(links), dtype=np.int64))
            limit = STEP if not targets else max(1, min(STEP, (targets[0] - pos) // 64 + 1))
            added, new_pos = walker(mv, pos, limit, 0, big, arrays[0], arrays[1], arrays[2], len(links),
                                    earlier_ifaces, out.offs, out.cap, out.wire, out.ts, out.link, out.iface)
            if added:
                records += added
                pos = new_pos
                continue
        if size - pos < 12:
            raise _NotClean(f"the file ends in the middle of a block at offset {pos}")
        btype = u32(pos)
        if btype == pcapng.SHB:
            bom = bytes(mv[pos + 8 : pos + 12])
            if bom == struct.pack(">I", pcapng.BOM):
                big = True
            elif bom == struct.pack("<I", pcapng.BOM):
                big = False
            else:
                raise _NotClean(f"unknown byte order in the section header at offset {pos}")
        elif first:
            raise _NotClean("the file does not start with a section header block")
        blen = u32(pos + 4)
        if blen < 12 or blen % 4 or blen > rec.MAX_BLOCK:
            raise _NotClean(f"damaged at offset {pos + 4} (block length {blen})")
        if pos + blen > size:
            raise _NotClean(f"the file ends in the middle of a block at offset {pos}")
        if u32(pos + blen - 4) != blen:
            raise _NotClean(f"damaged at offset {pos + blen - 4} (block trailer)")
        if btype == pcapng.SHB:
            earlier_ifaces += len(idbs)
            shb, idbs, links, resol, arrays = bytes(mv[pos : pos + blen]), [], [], [], None
            if blen < 28:
                raise _NotClean(f"section header block at offset {pos} is too short")
        elif btype == pcapng.IDB:
            if blen < 20:
                raise _NotClean(f"interface description block at offset {pos} is too short")
            link = int.from_bytes(mv[pos + 8 : pos + 10], "big" if big else "little")
            if link not in SUPPORTED_LINKTYPES:
                raise _NotClean(f"link type {link} is not supported (its packets are only counted)")
            idbs.append(bytes(mv[pos : pos + blen]))
            links.append(link)
            resol.append(_tsresol(bytes(mv[pos : pos + blen]), big))
            arrays = None
        elif btype in (pcapng.EPB, pcapng.SPB, pcapng.PB):
            if not links:
                raise _NotClean(f"a packet block before any interface description at offset {pos}")
            if btype != pcapng.SPB:
                width = 2 if btype == pcapng.PB else 4
                iface = int.from_bytes(mv[pos + 8 : pos + 8 + width], "big" if big else "little")
                caplen = u32(pos + 20)
                if blen < 32 or iface >= len(links) or caplen > rec.MAX_CAPLEN or 28 + caplen > blen - 4:
                    raise _NotClean(f"damaged packet block at offset {pos}")
            elif blen < 16:
                raise _NotClean(f"damaged packet block at offset {pos}")
            records += 1
        elif btype in pcapng.NON_PACKET_RECORDS:
            records += 1
        first = False
        pos += blen
    plan.records = records
    bounds = [(0, 0, b""), *cuts, (size, records, b"")]
    plan.ranges = [ByteRange(plan.path, "pcapng", a, b, fa, fb - fa, prefix)
                   for (a, fa, prefix), (b, fb, _) in itertools.pairwise(bounds) if b > a]


# -- cuts without walking the whole file ---------------------------------------------------------------

CHAIN = 8  # consecutive plausible headers a resynchronisation point needs
WINDOW = 4 << 20  # bytes searched after each wanted offset
SLICE = 1 << 16  # bytes looked at in one vectorized step


def _u32s(buf: np.ndarray, lo: int, n: int, big: bool) -> np.ndarray:
    """The 32-bit words starting at each of the offsets ``lo .. lo + n - 1`` (unaligned)."""
    w = buf[lo : lo + n + 3].astype(np.uint32)
    b0, b1, b2, b3 = w[:n], w[1 : n + 1], w[2 : n + 2], w[3 : n + 3]
    if big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


def _find_pcap(buf: np.ndarray, lo: int, hi: int, big: bool, frac_max: int, sec_lo: int, sec_hi: int) -> int:
    """The first offset in ``[lo, hi)`` where ``CHAIN`` plausible pcap record headers follow one another
    (or run exactly to the end of the file); -1 when there is none."""
    size = len(buf)
    order = ">" if big else "<"
    p0 = lo
    while p0 < hi:
        n = min(hi, p0 + SLICE, size - 16 + 1) - p0
        if n <= 0:
            return -1
        sec, frac = _u32s(buf, p0, n, big), _u32s(buf, p0 + 4, n, big)
        caplen, wire = _u32s(buf, p0 + 8, n, big), _u32s(buf, p0 + 12, n, big)
        at = np.arange(p0, p0 + n, dtype=np.int64)
        ok = ((frac < frac_max) & (sec >= sec_lo) & (sec <= sec_hi) & (caplen <= rec.MAX_CAPLEN) & (caplen <= wire)
              & (at + 16 + caplen.astype(np.int64) <= size))
        for p in at[ok].tolist():
            q = p
            for _ in range(CHAIN):
                if q == size:
                    break
                if q + 16 > size:
                    q = -1
                    break
                s_, f_, c_, w_ = struct.unpack_from(order + "IIII", buf, q)
                if f_ >= frac_max or not sec_lo <= s_ <= sec_hi or c_ > rec.MAX_CAPLEN or c_ > w_ or q + 16 + c_ > size:
                    q = -1
                    break
                q += 16 + c_
            if q >= 0:
                return p
        p0 += n
    return -1


def _find_pcapng(buf: np.ndarray, lo: int, hi: int, big: bool, n_ifaces: int) -> int:
    """The first 4-aligned offset in ``[lo, hi)`` where a packet block starts a chain of ``CHAIN`` plausible
    blocks of the same section (or blocks running exactly to the end of the file); -1 when none."""
    size = len(buf)
    order = ">" if big else "<"
    words = np.frombuffer(buf.data, dtype=order + "u4", count=size // 4)
    i0 = (lo + 3) // 4
    while i0 * 4 < hi:
        i1 = min((hi + 3) // 4, i0 + SLICE // 4, len(words) - 1)
        if i1 <= i0:
            return -1
        t, blen = words[i0:i1], words[i0 + 1 : i1 + 1].astype(np.int64)
        at = np.arange(i0, i1, dtype=np.int64) * 4
        ok = (((t == pcapng.EPB) | (t == pcapng.SPB) | (t == pcapng.PB)) & (blen >= 16) & (blen % 4 == 0)
              & (blen <= rec.MAX_BLOCK) & (at + blen <= size))
        cand = at[ok]
        trail = words[(cand + blen[ok]) // 4 - 1] if len(cand) else cand
        for p in cand[trail == blen[ok]].tolist():
            q = p
            for _ in range(CHAIN):
                if q == size:
                    break
                if q + 12 > size:
                    q = -1
                    break
                bt, bl = struct.unpack_from(order + "II", buf, q)
                if (bt == pcapng.SHB or bl < 12 or bl % 4 or bl > rec.MAX_BLOCK or q + bl > size
                        or struct.unpack_from(order + "I", buf, q + bl - 4)[0] != bl):
                    q = -1
                    break
                if bt in (pcapng.EPB, pcapng.PB):
                    iface = struct.unpack_from(order + ("I" if bt == pcapng.EPB else "H"), buf, q + 8)[0]
                    caplen = struct.unpack_from(order + "I", buf, q + 20)[0]
                    if bl < 32 or iface >= n_ifaces or caplen > rec.MAX_CAPLEN or 28 + caplen > bl - 4:
                        q = -1
                        break
                q += bl
            if q >= 0:
                return p
        i0 = i1
    return -1


def _resync_pcap(plan: Plan, buf: np.ndarray, parts: int, min_bytes: int) -> None:
    head = bytes(buf[:24])
    order, ns = pcap.MAGICS[head[:4]]
    major = struct.unpack_from(order + "H", head, 4)[0]
    linktype = struct.unpack_from(order + "I", head, 20)[0]
    if major != 2 or linktype & 0x03FF0000:
        raise _NotClean("the file header is not one the reader accepts without a word")
    if linktype & 0xFFFF not in SUPPORTED_LINKTYPES:
        raise _NotClean(f"link type {linktype & 0xFFFF} is not supported (its packets are only counted)")
    big = order == ">"
    size = len(buf)
    if size < 24 + 16:
        raise _NotClean("too small")
    sec0 = struct.unpack_from(order + "I", head + bytes(buf[24:28]), 24)[0]
    year = 366 * 86400
    cuts = [24]
    for target in _targets(size, 24, parts, min_bytes):
        lo = max(target, cuts[-1] + 1)
        cut = _find_pcap(buf, lo, min(size, lo + WINDOW), big, 1_000_000_000 if ns else 1_000_000,
                         max(0, sec0 - 10 * year), sec0 + 10 * year)
        if cuts[-1] < cut < size:
            cuts.append(cut)
    bounds = [*cuts, size]
    plan.ranges = [ByteRange(plan.path, "pcap", a, b, -1 if a > 24 else 0, -1, head)
                   for a, b in itertools.pairwise(bounds)]


def _resync_pcapng(plan: Plan, buf: np.ndarray, parts: int, min_bytes: int) -> None:
    size = len(buf)
    mv = memoryview(buf)  # type: ignore[arg-type]
    bom = bytes(mv[8:12])
    if bom == struct.pack(">I", pcapng.BOM):
        big = True
    elif bom == struct.pack("<I", pcapng.BOM):
        big = False
    else:
        raise _NotClean("unknown byte order in the section header")

    def u32(p: int) -> int:
        return int.from_bytes(mv[p : p + 4], "big" if big else "little")

    # the head: the section header and the blocks before the first record (interfaces, names, ...)
    pos = 0
    shb = b""
    idbs: list[bytes] = []
    while True:
        if pos + 12 > size:
            raise _NotClean("no packet block")
        btype, blen = u32(pos), u32(pos + 4)
        if blen < 12 or blen % 4 or blen > rec.MAX_BLOCK or pos + blen > size or u32(pos + blen - 4) != blen:
            raise _NotClean(f"damaged at offset {pos}")
        if btype == pcapng.SHB:
            if shb:
                raise _NotClean("several sections")  # the exact walk handles them
            shb = bytes(mv[pos : pos + blen])
        elif btype == pcapng.IDB:
            if blen < 20:
                raise _NotClean(f"interface description block at offset {pos} is too short")
            link = int.from_bytes(mv[pos + 8 : pos + 10], "big" if big else "little")
            if link not in SUPPORTED_LINKTYPES:
                raise _NotClean(f"link type {link} is not supported (its packets are only counted)")
            idbs.append(bytes(mv[pos : pos + blen]))
        elif btype in (pcapng.EPB, pcapng.SPB, pcapng.PB) or btype in pcapng.NON_PACKET_RECORDS:
            break
        pos += blen
    head_end = pos
    if not idbs:
        raise _NotClean("no interface description before the first packet")
    prefix = shb + b"".join(idbs)
    cuts = [0]
    for target in _targets(size, head_end, parts, min_bytes):
        lo = max(target, cuts[-1] + 4)
        cut = _find_pcapng(buf, lo, min(size, lo + WINDOW), big, len(idbs))
        if cuts[-1] < cut < size:
            cuts.append(cut)
    bounds = [*cuts, size]
    plan.ranges = [ByteRange(plan.path, "pcapng", a, b, -1 if a else 0, -1, prefix if a else b"",
                             a if a else head_end, big, len(idbs))
                   for a, b in itertools.pairwise(bounds)]


def _tsresol(idb: bytes, big: bool) -> int:
    """The if_tsresol option of an interface description block (6, microseconds, when absent)."""
    order = ">" if big else "<"
    p, end = 16, len(idb) - 4
    while p + 4 <= end:
        code, length = struct.unpack_from(order + "HH", idb, p)
        if code == pcapng.OPT_ENDOFOPT:
            break
        if code == pcapng.IF_TSRESOL and length >= 1 and p + 5 <= end:
            return idb[p + 4]
        p += 4 + ((length + 3) & ~3)
    return pcapng.DEFAULT_TSRESOL


def _pcapng_prefix(shb: bytes, idbs: list[bytes], earlier_ifaces: int, big: bool) -> bytes:
    """The blocks a reader must see before a cut: the section's header and interfaces, after a stand-in
    section with as many interfaces as earlier sections described (interface numbers are global)."""
    parts = []
    if earlier_ifaces:
        parts.append(struct.pack("<IIIHHqI", pcapng.SHB, 28, pcapng.BOM, 1, 0, -1, 28))
        idb = struct.pack("<IIHHII", pcapng.IDB, 20, 1, 0, 0, 20)
        parts.append(idb * earlier_ifaces)
    parts.append(shb)
    parts.extend(idbs)
    return b"".join(parts)


class _RangeStream(io.RawIOBase):
    """``prefix`` followed by bytes ``[start, end)`` of a file, as a readable stream; for pcapng ranges
    whose cuts were not found by a full walk, the block headers are checked as the bytes go by."""

    def __init__(self, r: ByteRange) -> None:
        super().__init__()
        self.name = r.path  # the Capture's source: the same name as for the whole file
        self._prefix = memoryview(r.prefix)
        self._fd = os.open(r.path, os.O_RDONLY)
        self._pos = r.start
        self._end = r.end
        self._big = r.big
        self._next = r.scan_from  # file offset of the next block header to look at (-1: no check)
        self._carry = b""  # the start of a block header cut by the end of the previous read
        self.counts = np.zeros(3, dtype=np.int64)  # section headers, interface descriptions, bad lengths
        self._walker = None
        if self._next >= 0 and r.ifaces:
            from whyrst.capture import fast

            self._walker = fast.pcapng_walker()
            n = r.ifaces
            self._ifaces = (np.ones(n, dtype=np.uint16), np.full(n, pcapng.DEFAULT_TSRESOL, dtype=np.uint8),
                            np.zeros(n, dtype=np.int64), n)
            out = rec.RecordArrays(STEP)
            self._out = (out.offs, out.cap, out.wire, out.ts, out.link, out.iface)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        mv = memoryview(b).cast("B")
        if len(self._prefix):
            n = min(len(mv), len(self._prefix))
            mv[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        want = min(len(mv), self._end - self._pos)
        if want <= 0:
            return 0
        n = os.preadv(self._fd, [mv[:want]], self._pos)
        if self._next >= 0 and n:
            self._scan(np.frombuffer(mv[:n], dtype=np.uint8), self._pos)
        self._pos += n
        return n

    def _scan(self, data: np.ndarray, base: int) -> None:
        end = base + len(data)
        order = ">" if self._big else "<"
        nb = self._next
        if self._carry:  # a header cut in two: put it together
            head = self._carry + data[: 8 - len(self._carry)].tobytes()
            if len(head) < 8:
                self._carry = head
                return
            self._carry = b""
            if not self._count(*struct.unpack(order + "II", head)):
                self._next = end + rec.MAX_BLOCK + 1
                return
            nb += struct.unpack(order + "I", head[4:])[0]
        mv = memoryview(data)  # type: ignore[arg-type]
        walker = self._walker
        while base <= nb and nb + 8 <= end:
            if walker is not None:  # runs of packet blocks, compiled
                added, pos = walker(mv, nb - base, STEP, 0, self._big, *self._ifaces, 0, *self._out)
                nb = base + pos
                if added or nb + 8 > end:
                    continue
            t, blen = struct.unpack_from(order + "II", data, nb - base)
            if not self._count(t, blen):
                nb = end + rec.MAX_BLOCK + 1
                break
            nb += blen
        self._next = nb
        if base <= nb < end:
            self._carry = data[nb - base :].tobytes()

    def _count(self, t: int, blen: int) -> bool:
        if blen < 12 or blen % 4 or blen > rec.MAX_BLOCK:
            self.counts[2] += 1
            return False
        self.counts[0] += t == pcapng.SHB
        self.counts[1] += t == pcapng.IDB
        return True

    def problem(self) -> str:
        """Why the blocks read do not prove the range is a run of whole blocks of the first section ("" if
        they do)."""
        if self._next < 0:
            return ""
        if self.counts[2]:
            return "a block with an impossible length"
        if self.counts[0]:
            return "a section header block after the first"
        if self.counts[1]:
            return "an interface description after the first packet"
        if self._pos != self._end:
            return "the range was not read to its end"
        if self._next != self._end or self._carry:
            return "the blocks do not end at the end of the range"
        return ""

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()


class RangeCapture(Capture):
    """A :class:`~whyrst.capture.open.Capture` of one :class:`ByteRange`: batches whose ``frame`` column
    holds the frame numbers of the whole file (from ``frames_before``, which may be given when the
    range's own is not known yet)."""

    def __init__(self, r: ByteRange, frames_before: int | None = None, **options: Any) -> None:
        self.range = r
        self._range_stream = _RangeStream(r)
        try:
            super().__init__(self._range_stream, **options)
        except BaseException:
            self._range_stream.close()
            raise
        first = r.frames_before if frames_before is None else frames_before
        self._frames = max(first, 0)  # the decoder numbers records from here
        self.file_offset_shift = r.start - len(r.prefix)  # the stream is the prefix, then the range's bytes

    def problem(self) -> str:
        """After reading: why this range may not be a run of whole records of the file ("" when it is,
        as far as its own bytes tell: the caller also checks it gave no warnings)."""
        return self._range_stream.problem()

    def close(self) -> None:
        super().close()
        self._range_stream.close()


def open_range(r: ByteRange, *, frames_before: int | None = None, batch_size: int = BATCH_ROWS,
               warnings: Warnings | None = None, engine: str = "auto", checksums: bool = True,
               select: Any = None, payloads: bool = True) -> RangeCapture:
    """Open one range for reading, with the options of :func:`whyrst.capture.open_capture`; its first
    record is frame ``frames_before + 1`` (default: the range's own ``frames_before``)."""
    return RangeCapture(r, frames_before, batch_size=batch_size, warnings=warnings, engine=engine,
                        checksums=checksums, select=select, payloads=payloads)

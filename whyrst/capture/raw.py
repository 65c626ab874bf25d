"""Raw records for rewriting a capture: the readers' record walking, plus what a writer needs to keep
every record exact (each record's timestamp in its interface's own units, the interface table, and
the blocks that are records without being packets).

The decoder never needs these, so they live here rather than in the readers: :class:`RawCapture`
drives :func:`whyrst.capture.pcap.read_pcap` as it is and the pcapng reader through a small subclass
(the per-block Python path, which sees each packet block's raw timestamp).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np

from whyrst.capture import headers as hd
from whyrst.capture import pcap, pcapng
from whyrst.capture import records as rec
from whyrst.capture.batch import BATCH_ROWS
from whyrst.capture.open import GZIP_MAGIC, SNIFF, _Gunzip, _looks_like_text, _Prefixed
from whyrst.errors import CaptureError, Warnings


@dataclass(frozen=True)
class RawInterface:
    """Where a record's timestamp units come from: ``tsresol`` is the pcapng if_tsresol byte."""

    linktype: int
    snaplen: int
    tsresol: int
    tsoffset: int = 0


@dataclass
class RawBatch:
    records: rec.Records
    units: np.ndarray  # uint64: each record's timestamp in its interface's units (before if_tsoffset)
    block: np.ndarray  # int64: for a pcapng record that is not a packet, where its block starts in buf; else -1
    ifaces: list[RawInterface]  # indexed by records.iface (pcapng's global interface number; [0] for pcap)
    big: bool  # byte order of the section of the non-packet blocks in this batch
    # pcapng blocks kept that are not records (name resolution, decryption secrets): (i, type, body), to
    # be written before record i (i == records.n: after the last)
    others: list[tuple[int, int, bytes]] = field(default_factory=list)


# Blocks kept as they are: name resolution and decryption secrets (their contents name no interface,
# so the renumbered interfaces do not change them). Statistics blocks, which do, are dropped.
KEEP_BLOCKS = frozenset((pcapng.NRB, 0x0000000A))


class _PcapngRaw(pcapng._Reader):
    """The pcapng reader, also keeping every interface ever described and each record's raw timestamp."""

    def __init__(self, stream: rec.ByteStream, source: str, batch_size: int, warnings: Warnings) -> None:
        super().__init__(stream, source, batch_size, warnings, walker=None)
        self.all_ifaces: list[RawInterface] = []
        self.units = np.zeros(batch_size, dtype=np.uint64)
        self.block = np.full(batch_size, -1, dtype=np.int64)
        self.is_packet = np.zeros(batch_size, dtype=bool)
        self.others: list[tuple[int, int, bytes]] = []

    def _other(self, buf: memoryview, p: int, btype: int, blen: int, n: int) -> None:
        if btype in KEEP_BLOCKS and self.order == "<":  # (big-endian bodies would need their fields swapped)
            self.others.append((n, btype, bytes(buf[p + 8 : p + blen - 4])))

    def _interface(self, buf: memoryview, p: int, blen: int, base: int) -> None:
        super()._interface(buf, p, blen, base)
        i = self.ifaces[-1]
        self.all_ifaces.append(RawInterface(i.linktype, i.snaplen, i.tsresol, i.tsoffset))

    def _packet(self, buf: memoryview, p: int, btype: int, blen: int, base: int, out: rec.RecordArrays,
                n: int) -> None:
        super()._packet(buf, p, btype, blen, base, out, n)
        self.is_packet[n] = True
        if btype == pcapng.SPB:
            self.units[n] = 0
        else:
            cls = hd.EnhancedPacket if btype == pcapng.EPB else hd.ObsoletePacket
            b = self._hdr(cls).unpack_from(buf, p + 8)
            assert b is not None
            self.units[n] = (b.ts_hi << 32) | b.ts_lo

    def raw_batches(self) -> Iterator[RawBatch]:
        for r in self.run():
            n = r.n
            block = np.where(self.is_packet[:n], -1, r.offs - 8)
            others, self.others = self.others, []
            yield RawBatch(r, self.units[:n].copy(), block, self.all_ifaces, self.order == ">", others)
            self.is_packet[:] = False
            self.units[:] = 0
        if self.others:  # blocks after the last record
            empty = rec.RecordArrays(0).records(memoryview(b""), 0)
            yield RawBatch(empty, np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.int64), self.all_ifaces,
                           False, [(0, t, b) for _, t, b in self.others])


class RawCapture:
    """A pcap or pcapng file (plain or gzip) opened for its raw records; iterate for :class:`RawBatch`.

    ``format`` is "pcap" or "pcapng" (with "+gzip"); for pcap, ``nanoseconds`` tells the file's time
    unit and ``ifaces[0]`` its link type and snaplen (tsresol 9 or 6).
    """

    def __init__(self, path: str | os.PathLike[str], *, batch_size: int = BATCH_ROWS,
                 warnings: Warnings | None = None) -> None:
        self.source = os.fspath(path)
        self.batch_size = batch_size
        self.warnings = warnings if warnings is not None else Warnings()
        self.format = ""
        self.nanoseconds = False
        try:
            self._fh: Any = open(self.source, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise CaptureError(self.source, None, f"cannot open: {e.strerror or e}") from None
        try:
            self._batches = self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Iterator[RawBatch]:
        raw: Any = self._fh
        suffix = ""
        head = raw.read(4)
        if head[:2] == GZIP_MAGIC:
            raw = _Gunzip(_Prefixed(head, raw))
            suffix = "+gzip"
            probe = rec.ByteStream(raw)
            head = probe.read_exact(4)
            if probe.error is not None:
                raise CaptureError(self.source, 0, f"gzip: {probe.error}")
        if head in pcap.MAGICS:
            self.format = "pcap" + suffix
            order, self.nanoseconds = pcap.MAGICS[head]
            stream = rec.ByteStream(raw, prefix=head)
            header = stream.read_exact(hd.PcapFileHeader.size)
            fh = (hd.PcapFileHeader if order == ">" else hd.PcapFileHeader.swapped()).unpack_from(header)
            if fh is None:
                raise CaptureError(self.source, len(header), "pcap: the file ends inside its 24-byte file header")
            self.stream = rec.ByteStream(raw, prefix=header)
            iface = [RawInterface(fh.linktype & 0xFFFF, fh.snaplen, 9 if self.nanoseconds else 6)]
            return self._pcap(pcap.read_pcap(self.stream, self.source, self.batch_size, self.warnings), iface)
        if head == pcapng.MAGIC:
            self.format = "pcapng" + suffix
            self.stream = rec.ByteStream(raw, prefix=head)
            return _PcapngRaw(self.stream, self.source, self.batch_size, self.warnings).raw_batches()
        sample = head + rec.ByteStream(raw).read_exact(SNIFF - len(head))
        if _looks_like_text(sample):
            raise CaptureError(self.source, 0, "tcpdump text has no raw packet records to rewrite; "
                                               "this needs a pcap or pcapng file")
        raise CaptureError(self.source, 0, f"not a capture: starts with 0x{head.hex()}, which is not pcap, "
                                           "pcapng or gzip")

    def _pcap(self, records: Iterator[rec.Records], ifaces: list[RawInterface]) -> Iterator[RawBatch]:
        for r in records:
            ts = r.ts.astype(np.uint64)
            units = ts if self.nanoseconds else ts // np.uint64(1000)
            yield RawBatch(r, units, np.full(r.n, -1, dtype=np.int64), ifaces, False)

    def __iter__(self) -> Iterator[RawBatch]:
        batches, self._batches = self._batches, iter(())
        return batches

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RawCapture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def block_bytes(buf: memoryview, start: int, big: bool) -> tuple[int, memoryview]:
    """The type and the body (between length fields) of the pcapng block at ``buf[start:]``."""
    btype, blen = struct.unpack_from(">II" if big else "<II", buf, start)
    return btype, buf[start + 8 : start + blen - 4]

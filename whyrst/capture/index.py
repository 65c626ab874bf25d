"""Where each TCP packet of a capture file lies, by flow: the first pass of ``analyze`` writes it, the
second reads back only the packets of the flows that carry a RST.

Without it the second pass reads and walks the whole file again to find a few percent of its packets
(on a capture of 1 GB, more time than everything else the pass does). The index is one row per TCP
packet (its flow hash, frame number, where its bytes start in the file and the record fields the
decoder needs): 44 bytes a packet, kept in a temporary file, so memory does not grow with the capture.
Only a plain file can be indexed (a gzip file's offsets are in the decompressed stream), and the
index is refused if the file changed between the passes.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from typing import IO

import numpy as np

from whyrst.capture import decode as dec
from whyrst.capture import records as rec
from whyrst.capture.batch import Kind, PacketBatch
from whyrst.errors import CaptureError

ROW = np.dtype([("hash", "<u8"), ("frame", "<i8"), ("offset", "<i8"), ("ts", "<i8"), ("cap", "<u4"),
                ("wire", "<u4"), ("link", "<u2"), ("iface", "<u2")])
FLUSH_BYTES = 4 << 20  # rows kept in memory before they go to the temporary file
READ_ROWS = 1 << 18  # rows read back at a time
GAP = 4096  # packets closer than this are read with one system call (the bytes between are dropped)
SPAN = 1 << 20  # ...unless one packet is longer than this


class StaleIndex(Exception):
    """The file changed between the passes: its index no longer says where its packets are."""


def _identity(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class FlowIndex:
    """:meth:`add` every batch of a capture read with ``payloads=False`` and its TCP rows' flow hashes;
    then :meth:`batches` gives back, decoded, only the packets of the wanted flows, in capture order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.identity = _identity(path)
        self.rows = 0
        self.usable = True  # False once a batch came without file offsets
        self._pending: list[np.ndarray] = []
        self._pending_bytes = 0
        self._file: IO[bytes] | None = None

    def add(self, batch: PacketBatch, tcp_hashes: np.ndarray) -> None:
        if not self.usable:
            return
        offsets = batch.extras.get("file_offsets")
        c = batch.cols
        tcp = np.flatnonzero(c["kind"] == Kind.TCP)
        if not isinstance(offsets, np.ndarray) or (len(tcp) and int(offsets[tcp].min()) < 0):
            self.usable = False
            self.close()
            return
        block = np.empty(len(tcp), dtype=ROW)
        block["hash"] = tcp_hashes
        block["frame"] = c["frame"][tcp]
        block["offset"] = offsets[tcp]
        block["ts"] = c["ts_ns"][tcp]
        block["cap"] = c["cap_len"][tcp]
        block["wire"] = c["wire_len"][tcp]
        block["link"] = c["link_type"][tcp]
        block["iface"] = c["iface"][tcp]
        self._pending.append(block)
        self._pending_bytes += block.nbytes
        self.rows += len(block)
        if self._pending_bytes >= FLUSH_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(prefix="whyrst-index-")  # noqa: SIM115 - closed by close()
        for block in self._pending:
            block.tofile(self._file)
        self._pending, self._pending_bytes = [], 0

    def _wanted_rows(self, wanted: np.ndarray) -> Iterator[np.ndarray]:
        """The rows whose flow hash is in ``wanted`` (sorted), a block at a time."""
        def pick(block: np.ndarray) -> np.ndarray:
            at = np.minimum(np.searchsorted(wanted, block["hash"]), len(wanted) - 1)
            return block[wanted[at] == block["hash"]]

        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            while True:
                block = np.fromfile(self._file, dtype=ROW, count=READ_ROWS)
                if not len(block):
                    break
                yield pick(block)
        for block in self._pending:
            yield pick(block)

    def batches(self, wanted: np.ndarray, *, engine: str = "auto", checksums: bool = True,
                batch_size: int = 65536) -> Iterator[PacketBatch]:
        """The packets of the flows in ``wanted`` (sorted flow hashes), decoded, with their frame numbers.
        Raises :class:`StaleIndex` if the file is no longer the one indexed."""
        if not self.usable:
            raise StaleIndex(f"{self.path}: not indexed")
        if engine == "auto":
            from whyrst.capture import fast

            engine = "numba" if fast.available() else "numpy"
        decoder = dec.BatchDecoder(engine, checksums=checksums)
        if not len(wanted):
            return
        with open(self.path, "rb") as fh:
            if _identity(self.path) != self.identity:
                raise StaleIndex(f"{self.path}: the file changed while it was analysed")
            held: list[np.ndarray] = []
            count = 0
            for rows in self._wanted_rows(wanted):
                if len(rows):
                    held.append(rows)
                    count += len(rows)
                if count >= batch_size:
                    yield self._decode(fh.fileno(), np.concatenate(held), decoder)
                    held, count = [], 0
            if count:
                yield self._decode(fh.fileno(), np.concatenate(held), decoder)

    def _decode(self, fd: int, rows: np.ndarray, decoder: dec.BatchDecoder) -> PacketBatch:
        """Read the packets of ``rows`` (in file order) into one buffer and decode them."""
        start = rows["offset"]
        cap = rows["cap"].astype(np.int64)
        end = start + cap
        # packets close together are read with one call (a span), the bytes between them then dropped
        new = np.ones(len(rows), dtype=bool)
        if len(rows) > 1:
            new[1:] = start[1:] - np.maximum.accumulate(end)[:-1] > GAP
            # ...and a span is cut every SPAN bytes, so what is read at once stays small
            first = np.flatnonzero(new)[np.cumsum(new) - 1]
            part = (start - start[first]) // SPAN
            new[1:] |= part[1:] != part[:-1]
        offs = np.zeros(len(rows), dtype=np.int64)
        offs[1:] = np.cumsum(cap)[:-1]
        out = np.empty(int(cap.sum()), dtype=np.uint8)
        bounds = [*np.flatnonzero(new).tolist(), len(rows)]
        for a, b in itertools.pairwise(bounds):
            lo, hi = int(start[a]), int(end[a:b].max())
            data = np.frombuffer(_pread_all(fd, hi - lo, lo), dtype=np.uint8)
            if len(data) != hi - lo:
                raise CaptureError(self.path, lo + len(data), "the file became shorter while it was analysed")
            if b - a == 1:
                out[offs[a] : offs[a] + cap[a]] = data[: cap[a]]
                continue
            # every byte of the span's packets, from where it is in the span to where it goes in ``out``
            o0, o1 = int(offs[a]), int(offs[b - 1] + cap[b - 1])
            shift = np.repeat(start[a:b] - lo - offs[a:b], cap[a:b])
            out[o0:o1] = data[np.arange(o0, o1) + shift]
        records = rec.Records(memoryview(out), len(rows), offs, rows["cap"].copy(), rows["wire"].copy(),
                              rows["ts"].copy(), rows["link"].copy(), rows["iface"].copy())
        batch = PacketBatch.empty(len(rows))
        decoder.decode_into(records, 0, batch)
        batch.cols["frame"][:] = rows["frame"]
        return batch

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._pending = []

    def __enter__(self) -> FlowIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pread_all(fd: int, n: int, offset: int) -> bytes:
    parts = []
    while n > 0:
        piece = os.pread(fd, n, offset)
        if not piece:
            break
        parts.append(piece)
        n -= len(piece)
        offset += len(piece)
    return b"".join(parts)

"""Where each TCP packet of a capture file lies, by flow: the first pass of ``analyze`` writes it, the
second reads back only the packets of the flows that carry a RST.

Without it the second pass reads and walks the whole file again to find a few percent of its packets
(on a capture of 1 GB, more time than everything else the pass does). The index is one row per TCP
packet (its flow hash, frame number, where its bytes start in the file and the record fields the
decoder needs): 44 bytes a packet, in blocks of columns in a temporary file (or files the caller
names, for other processes to read: a range of a file analysed in parts, its rows written by partition
of the flows so that each partition's process reads only its own), so memory does not grow with the
capture. Only a plain file can be indexed (a gzip file's offsets are in the decompressed stream), and the
index is refused if the file changed between the passes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from whyrst.capture import decode as dec
from whyrst.capture import records as rec
from whyrst.capture.batch import BATCH_ROWS, Kind, PacketBatch
from whyrst.errors import CaptureError, WhyrstError

# The columns of a row, in the order a block stores them (each column of a block is contiguous).
COLUMNS = (("hash", "<u8"), ("frame", "<i8"), ("offset", "<i8"), ("ts", "<i8"), ("cap", "<u4"), ("wire", "<u4"),
           ("link", "<u2"), ("iface", "<u2"))
ROW_BYTES = sum(np.dtype(t).itemsize for _, t in COLUMNS)
# rows kept in memory (the block the first pass fills) before they go to the file: a megabyte (the first touch
# of a fresh page costs this VM up to 10 µs once the host has taken freed memory back: 4 MB made 1,800 more
# page faults in an analysis of 1M packets, and no run faster)
BLOCK_ROWS = (1 << 20) // ROW_BYTES
BATCH_BYTES = 32 << 20  # packet bytes read back for one batch, at most (but always one packet)
GAP = 4096  # packets closer than this are read with one system call (the bytes between are read too)
SPAN = 1 << 20  # ...up to this many bytes at a time

Member = Callable[[np.ndarray], np.ndarray]  # flow hashes -> bool mask: which are wanted


def sorted_member(wanted: np.ndarray) -> Member:
    """Membership in ``wanted`` (sorted flow hashes) by binary search."""
    def member(hashes: np.ndarray) -> np.ndarray:
        if not len(wanted):
            return np.zeros(len(hashes), dtype=bool)
        at = np.minimum(np.searchsorted(wanted, hashes), len(wanted) - 1)
        return wanted[at] == hashes

    return member


def partition_of(hashes: np.ndarray, parts: int) -> np.ndarray:
    """The partition of each flow hash among ``parts`` (the index's files and the processes that read
    them agree on it)."""
    return hashes % np.uint64(parts)


@dataclass(frozen=True)
class IndexHandle:
    """A detached :class:`FlowIndex`: what another process needs to read it (it pickles)."""

    path: str
    identity: tuple[int, int, int]
    store: str
    rows: int
    usable: bool
    parts: int = 1  # partitions of the flows (by hash), each in its own file (see FlowIndex.part_store)


class StaleIndex(Exception):
    """The file changed between the passes: its index no longer says where its packets are."""


def _identity(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


class FlowIndex:
    """:meth:`add` every batch of a capture read with ``payloads=False`` and its TCP rows' flow hashes;
    then :meth:`batches` gives back, decoded, only the packets of the wanted flows, in capture order."""

    def __init__(self, path: str, store: str | None = None, parts: int = 1) -> None:
        self.path = path
        self.identity = _identity(path)
        self.rows = 0
        self.usable = True  # False once a batch came without file offsets
        # where the rows go: files of this name (see part_store), or (None) an anonymous temporary file
        self.store = store
        if parts > 1 and store is None:
            raise ValueError("an index in partitions needs a named store")
        self.parts = parts
        if parts > BLOCK_ROWS:
            raise ValueError(f"an index in {parts} partitions needs blocks of more than {BLOCK_ROWS} rows")
        # the rows not yet in the files, by partition: partition q's in rows [q * segment, q * segment +
        # fill[q]) of the block's columns (each partition's in capture order), put there by add() or by the
        # first pass's compiled scan, which writes straight into ``segments`` (the columns, then ``fill``)
        self.block = tuple(np.empty(BLOCK_ROWS, dtype=dtype) for _, dtype in COLUMNS)
        self.segment = BLOCK_ROWS // parts
        self.fill = np.zeros(parts, dtype=np.int64)
        self.segments = (*self.block, self.fill)
        self._files: list[IO[bytes] | None] = [None] * parts
        self._reading = [0]  # the partitions batches() reads

    @staticmethod
    def part_store(store: str, part: int, parts: int) -> str:
        return store if parts == 1 else f"{store}.{part}"

    def detach(self) -> IndexHandle:
        """All the rows in the store files, for :meth:`attach` in other processes (needs a named store)."""
        if self.store is None:
            raise ValueError("only an index with a named store can be attached elsewhere")
        self.flush()
        for part, fh in enumerate(self._files):
            if self.usable and fh is None:  # (no row at all: an empty store)
                fh = open(self.part_store(self.store, part, self.parts), "w+b")  # noqa: SIM115 - closed below
            if fh is not None:
                fh.close()
        self._files = [None] * self.parts
        return IndexHandle(self.path, self.identity, self.store, self.rows, self.usable, self.parts)

    @classmethod
    def attach(cls, handle: IndexHandle, parts: Sequence[int] = (0,)) -> FlowIndex:
        """Partitions ``parts`` of the index a process detached, read as one in capture order (its store
        files are read, not removed: their owner removes them)."""
        index = cls.__new__(cls)
        index.path, index.identity, index.store = handle.path, handle.identity, handle.store
        index.rows, index.usable, index.parts = handle.rows, handle.usable, handle.parts
        index.block, index.segment, index.fill = (), 0, np.zeros(handle.parts, dtype=np.int64)
        index.segments = ()
        index._files = [None] * handle.parts
        index._reading = list(parts)
        if handle.usable:
            for part in parts:
                index._files[part] = open(cls.part_store(handle.store, part, handle.parts), "rb")  # noqa: SIM115
        return index

    def add(self, batch: PacketBatch, tcp_hashes: np.ndarray) -> None:
        """The TCP rows of ``batch`` (read with ``payloads=False``), with their flow hashes in row order."""
        if not self.usable:
            return
        offsets = batch.extras.get("file_offsets")
        c = batch.cols
        is_tcp = c["kind"] == Kind.TCP
        every = bool(is_tcp.all())
        tcp = slice(None) if every else np.flatnonzero(is_tcp)
        if not isinstance(offsets, np.ndarray) or (len(tcp_hashes) and int(offsets[tcp].min()) < 0):
            self.disable()
            return
        cols = {"hash": tcp_hashes, "frame": c["frame"], "offset": offsets, "ts": c["ts_ns"], "cap": c["cap_len"],
                "wire": c["wire_len"], "link": c["link_type"], "iface": c["iface"]}
        rows = [cols[name] if name == "hash" or every else cols[name][tcp] for name, _ in COLUMNS]
        part = partition_of(tcp_hashes, self.parts) if self.parts > 1 else None
        for q in range(self.parts):
            sel = None if part is None else part == np.uint64(q)
            mine = rows if sel is None else [values[sel] for values in rows]
            done, n = 0, len(mine[0])
            while done < n and self.usable:
                at = q * self.segment + int(self.fill[q])
                take = min(n - done, (q + 1) * self.segment - at)
                for column, values in zip(self.block, mine, strict=True):
                    column[at : at + take] = values[done : done + take]
                self.fill[q] += take
                done += take
                if self.fill[q] == self.segment:
                    self.flush()

    def disable(self) -> None:
        """No index after all (a batch without file offsets, a full disk): the second pass reads the capture."""
        self.usable = False
        self.close()

    def flush(self) -> None:
        """The block's rows to the files (an index that cannot be written is disabled)."""
        fill = self.fill.tolist()
        self.fill[:] = 0
        n = sum(fill)
        if not n or not self.usable:
            return
        seg = self.segment
        by_part = [(q, [column[q * seg : q * seg + k] for column in self.block]) for q, k in enumerate(fill) if k]
        try:
            for q, rows in by_part:
                fh = self._files[q]
                if fh is None:
                    fh = self._files[q] = (
                        tempfile.TemporaryFile(prefix="whyrst-index-") if self.store is None  # noqa: SIM115
                        else open(self.part_store(self.store, q, self.parts), "w+b"))  # noqa: SIM115
                # one system call a block: a row count, then each column's bytes (tofile made a stream of its own
                # for each column: 9 calls and 0.024 s for the 44 MB of a 1M-packet capture's index)
                parts = [np.int64(len(rows[0])).tobytes(), *(np.ascontiguousarray(column) for column in rows)]
                if os.writev(fh.fileno(), parts) != sum(memoryview(part).nbytes for part in parts):
                    raise OSError("the index was not written whole")
        except OSError:  # (no room for it: the second pass reads the capture again instead)
            self.disable()
            return
        self.rows += n

    def _blocks(self) -> Iterator[list[np.ndarray]]:
        """The blocks of rows of the partitions read, in capture order: each partition's rows are, so
        they are merged a block at a time (up to the frame where the first of the current blocks ends)."""
        sources = [self._part_blocks(part) for part in self._reading]
        if len(sources) == 1:
            yield from sources[0]
            return
        held: list[list[np.ndarray] | None] = [None] * len(sources)
        while True:
            for q, blocks in enumerate(sources):
                if held[q] is None:
                    held[q] = next(blocks, None)
            live = [block for block in held if block is not None]
            if not live:
                return
            bound = min(int(block[1][-1]) for block in live)  # (column 1: the frame number)
            taken = []
            for q, block in enumerate(held):
                if block is None:
                    continue
                upto = int(np.searchsorted(block[1], bound, "right"))
                taken.append([col[:upto] for col in block])
                held[q] = [col[upto:] for col in block] if upto < len(block[1]) else None
            merged = [np.concatenate(cols) for cols in zip(*taken, strict=True)]
            order = np.argsort(merged[1], kind="stable")
            yield [col[order] for col in merged]

    def _part_blocks(self, part: int) -> Iterator[list[np.ndarray]]:
        """Every block of rows of one partition: from its file, then those still in memory.

        A block read from the file lives in one buffer, read into again for the next block (a fresh buffer
        for each block made 11,000 page faults in the second pass over an 862 MB capture of 1M packets);
        the caller copies what it keeps of a block before it asks for the next."""
        fh = self._files[part]
        if fh is not None:
            fh.flush()
            fh.seek(0)
            buffer = np.empty(0, dtype=np.uint8)
            while True:
                head = fh.read(8)
                if len(head) < 8:
                    break
                n = int(np.frombuffer(head, dtype="<i8")[0])
                if n < 0 or n * ROW_BYTES > (os.fstat(fh.fileno()).st_size - fh.tell()):
                    raise WhyrstError(f"{self.path}: the temporary index of its packets is cut short")
                if len(buffer) < n * ROW_BYTES:
                    buffer = np.empty(n * ROW_BYTES, dtype=np.uint8)  # (writable: the compiled look-up takes no other)
                data = buffer[: n * ROW_BYTES]
                if fh.readinto(memoryview(data)) != len(data):
                    raise WhyrstError(f"{self.path}: the temporary index of its packets is cut short")
                block, at = [], 0
                for _, dtype in COLUMNS:
                    size = n * np.dtype(dtype).itemsize
                    block.append(data[at : at + size].view(dtype))
                    at += size
                yield block

    def batches(self, member: Member, *, engine: str = "auto", checksums: bool | str = True,
                batch_size: int = BATCH_ROWS) -> Iterator[PacketBatch]:
        """The packets of the wanted flows (``member``: which flow hashes are wanted), decoded, with their
        frame numbers. Raises :class:`StaleIndex` if the file is no longer the one indexed."""
        self.flush()
        if not self.usable:
            raise StaleIndex(f"{self.path}: not indexed")
        if engine == "auto":
            from whyrst.capture import fast

            engine = "numba" if fast.available() else "numpy"
        decoder = dec.BatchDecoder(engine, checksums=checksums)
        with open(self.path, "rb") as fh:
            if _identity(self.path) != self.identity:
                raise StaleIndex(f"{self.path}: the file changed while it was analysed")
            held: list[list[np.ndarray]] = []
            count = size = 0
            for block in self._blocks():
                rows = np.flatnonzero(member(block[0]))
                while len(rows):
                    # as many rows as the batch has room for, in rows and in bytes
                    sizes = np.cumsum(block[4][rows[: batch_size - count]], dtype=np.int64)
                    take = int(np.searchsorted(sizes, BATCH_BYTES - size, "right"))
                    if count == 0:
                        take = max(take, 1)  # (a packet larger than a batch goes alone)
                    if take:
                        held.append([col[rows[:take]] for col in block])
                        count, size = count + take, size + int(sizes[take - 1])
                        rows = rows[take:]
                    if len(rows) or count >= batch_size:  # the batch is full
                        yield self._decode(fh.fileno(), held, decoder)
                        held, count, size = [], 0, 0
            if count:
                yield self._decode(fh.fileno(), held, decoder)

    def _decode(self, fd: int, held: list[list[np.ndarray]], decoder: dec.BatchDecoder) -> PacketBatch:
        """Read the packets of the rows in ``held`` (in file order) into one buffer and decode them."""
        _, frame, start, ts, cap32, wire, link, iface = (np.concatenate(col) for col in zip(*held, strict=True))
        n = len(frame)
        cap = cap32.astype(np.int64)
        end = start + cap
        # spans of packets read with one call: a new one where the gap to what is read already is large
        new = np.ones(n, dtype=bool)
        if n > 1:
            reach = np.maximum.accumulate(end)
            new[1:] = start[1:] - reach[:-1] > GAP
            first = np.flatnonzero(new)[np.cumsum(new) - 1]
            part = (start - start[first]) // SPAN  # ...and one every SPAN bytes
            new[1:] |= part[1:] != part[:-1]
        firsts = np.flatnonzero(new)
        lo = start[firsts]
        hi = np.maximum.reduceat(end, firsts)
        base = np.zeros(len(firsts), dtype=np.int64)  # where each span starts in the buffer
        base[1:] = np.cumsum(hi - lo)[:-1]
        offs = start - lo[np.cumsum(new) - 1] + base[np.cumsum(new) - 1]
        # each span read straight into its place in one buffer (the packets of a few flows lie far apart in
        # the file: about one system call a packet, so no bytes object per span and no join after them)
        buffer = np.empty(int(base[-1] + hi[-1] - lo[-1]), dtype=np.uint8)
        view = memoryview(buffer)
        preadv = os.preadv
        for a, z, at in zip(lo.tolist(), hi.tolist(), base.tolist(), strict=True):
            into = view[at : at + z - a]
            got = preadv(fd, [into], a)
            if got != z - a and (got := _pread_into(fd, into, a)) != z - a:  # (a short read: read on)
                raise CaptureError(self.path, a + got, "the file became shorter while it was analysed")
        records = rec.Records(view, n, offs, cap32, wire, ts, link, iface)
        batch = PacketBatch.empty(n)
        decoder.decode_into(records, 0, batch)
        batch.cols["frame"][:] = frame
        return batch

    def close(self) -> None:
        for fh in self._files:
            if fh is not None:
                fh.close()
        self._files = [None] * self.parts
        self.fill[:] = 0

    def __enter__(self) -> FlowIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pread_into(fd: int, into: memoryview, offset: int) -> int:
    """Read ``len(into)`` bytes of ``fd`` from ``offset`` into ``into``; how many there were."""
    got = 0
    while got < len(into):
        n = os.preadv(fd, [into[got:]], offset + got)
        if not n:
            break
        got += n
    return got

"""What the file-format readers hand to the decoder: the records of one batch, in one buffer.

A reader yields :class:`Records`: a ``bytes`` buffer read from the file and, for each record, where
its packet bytes start in that buffer, how many were captured, the length on the wire, the
timestamp, the link type and the interface. The buffer becomes the batch's ``data`` so payload
offsets point into it without copying.
"""

from __future__ import annotations

import select
import sys
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from whyrst.errors import CaptureError, Warnings

# Bytes read from the file at a time (tests make them small to exercise the seams): a chunk is a batch's
# buffer, so that payload offsets point into one buffer. A reader of the headers only (payloads=False: the
# first pass, which walks and scans each chunk once) reads smaller chunks, still in the core's caches when the
# record walk and the scan read them (walking and decoding 1 MB chunks took a third of the time of 8 MB ones),
# but large enough that the Python around each chunk is paid rarely (a 1M-packet capture of 862 MB: 0.45 s
# in 1 MB chunks, 0.42 in 2 MB, 0.43 in 4 MB, 0.53 in 512 KB).
CHUNK_SIZE = 8 << 20
HEADERS_CHUNK_SIZE = 2 << 20
MAX_CAPLEN = 262144  # largest captured length accepted in a record (libpcap's and Wireshark's limit)
MAX_BLOCK = 16 << 20  # largest pcapng block accepted (Wireshark's limit)
POOL_BUFFERS = 4  # chunk buffers a stream keeps for reuse (one is read into while batches use the others)
POOL_SLACK = 256 << 10  # room for a record cut at the end of the previous chunk


@dataclass
class Records:
    """One chunk's records. The arrays belong to the reader, which fills them again when the consumer asks
    for the next chunk: whatever is kept must be copied."""

    buf: memoryview
    n: int
    offs: np.ndarray  # int64: where each record's packet bytes start in buf
    cap: np.ndarray  # uint32 captured length
    wire: np.ndarray  # uint32 original length
    ts: np.ndarray  # int64 ns since the epoch
    link: np.ndarray  # uint16 link type
    iface: np.ndarray  # uint16 interface (pcapng; 0 for pcap)
    base: int = -1  # offset of buf[0] in the (decompressed) stream; -1 unknown


class RecordArrays:
    """Output arrays a reader fills for one batch."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.offs = np.zeros(size, dtype=np.int64)
        self.cap = np.zeros(size, dtype=np.uint32)
        self.wire = np.zeros(size, dtype=np.uint32)
        self.ts = np.zeros(size, dtype=np.int64)
        self.link = np.zeros(size, dtype=np.uint16)
        self.iface = np.zeros(size, dtype=np.uint16)

    def records(self, buf: memoryview, n: int, base: int = -1) -> Records:
        return Records(buf, n, self.offs[:n], self.cap[:n], self.wire[:n], self.ts[:n], self.link[:n],
                       self.iface[:n], base)


def _inflater() -> tuple[object, tuple[type[BaseException], ...]]:
    """The zlib to inflate gzip captures with: zlib-ng's (the same interface, in C, from the ``fast``
    extra) when installed, which inflated a gzip capture of 860 MB in a fifth of zlib's time here."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return zlib, (zlib.error,)
    return zlib_ng, (zlib.error, zlib_ng.error)


INFLATE, _INFLATE_ERRORS = _inflater()
DECOMPRESS_ERRORS = (OSError, EOFError, *_INFLATE_ERRORS)


class ByteStream:
    """The reader's view of its input, read into fresh buffers, counting the bytes handed out.

    On a file a read fills the whole buffer (less only at the end). On a pipe (``live=True``) it
    returns what is available without waiting for more, at least one byte, so the output of a live
    ``tcpdump -w -`` is analysed as it arrives. An empty read means the end. A decompression error
    ends the stream early and is kept in ``error`` for the caller to report.
    """

    def __init__(self, raw: BinaryIO, prefix: bytes = b"", live: bool = False) -> None:
        self.raw = raw
        self.prefix = prefix
        self.offset = 0  # bytes handed out so far (position in the decompressed stream)
        self.error: str | None = None
        self.live = live
        # On a pipe, read1 returns the bytes already buffered without waiting for more (readinto1 may
        # block for a large buffer), so only it is used there.
        self._readinto = None if live else getattr(raw, "readinto", None)
        self._read = (getattr(raw, "read1", None) if live else None) or raw.read
        self._pool: list[np.ndarray] = []
        self.headers_only = False  # set by a reader of headers only: smaller chunks (see HEADERS_CHUNK_SIZE)

    def _more_waiting(self) -> bool:
        try:
            return bool(select.select([self.raw], [], [], 0)[0])
        except (OSError, ValueError, TypeError):
            return False

    def _fill(self, mv: memoryview) -> int:
        """Read into ``mv``; how many bytes arrived."""
        got = 0
        want = len(mv)
        if self.prefix:
            got = min(want, len(self.prefix))
            mv[:got] = self.prefix[:got]
            self.prefix = self.prefix[got:]
        while got < want and self.error is None:
            if got and self.live and not self._more_waiting():
                break
            try:
                if self._readinto is not None:
                    k = self._readinto(mv[got:]) or 0
                else:
                    piece = self._read(want - got) or b""
                    k = len(piece)
                    mv[got : got + k] = piece
            except DECOMPRESS_ERRORS as e:
                self.error = str(e) or type(e).__name__
                break
            if k == 0:
                break
            got += k
        self.offset += got
        return got

    def refill(self, leftover: bytes | memoryview, n: int) -> memoryview:
        """A new buffer: ``leftover`` followed by up to ``n`` bytes read from the stream.

        The buffer is never written to again once returned, so batches may keep views of it.
        """
        keep = len(leftover)
        arr = self._free_buffer(keep + n)
        mv = memoryview(arr)[: keep + n]
        if keep:
            mv[:keep] = leftover
        got = self._fill(mv[keep:])
        return mv[: keep + got]

    @property
    def chunk_size(self) -> int:
        return HEADERS_CHUNK_SIZE if self.headers_only else CHUNK_SIZE

    def _free_buffer(self, size: int) -> np.ndarray:
        """A buffer of at least ``size`` bytes that nothing refers to any more (no batch, no view), or a new
        one. Reusing buffers saves the kernel zeroing and mapping fresh pages for every chunk (a tenth of
        a second per GB), and a buffer used again is still in the CPU's cache."""
        pool = self._pool
        for i in range(len(pool)):
            arr = pool[i]
            # references: the pool, ``arr`` and getrefcount's argument; a view anywhere (a memoryview, a
            # numpy array over it, a batch's data) holds one more
            if len(arr) >= size and sys.getrefcount(arr) <= 3:
                return arr
        arr = np.empty(max(size, self.chunk_size + POOL_SLACK), dtype=np.uint8)
        if len(pool) < POOL_BUFFERS:
            pool.append(arr)
        return arr

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes (at least one unless at the end)."""
        buf = bytearray(n)
        got = self._fill(memoryview(buf))
        return bytes(buf[:got])

    def read_exact(self, n: int) -> bytes:
        """``n`` bytes, fewer only at the end of the stream."""
        parts = []
        got = 0
        while got < n:
            piece = self.read(n - got)
            if not piece:
                break
            parts.append(piece)
            got += len(piece)
        return b"".join(parts)


class Damage(Exception):
    """Raised inside a reader when the file is damaged at ``offset``; the reader decides what to do."""

    def __init__(self, offset: int, message: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message


def damaged(source: str, warnings: Warnings, packets: int, offset: int, message: str) -> None:
    """Damage before any record makes the file unreadable (CaptureError); after, a warning ends it."""
    if packets == 0:
        raise CaptureError(source, offset, message)
    warnings.warn(f"{source}: offset {offset}: {message}; stopped after {packets} packets")

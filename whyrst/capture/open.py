"""``open_capture``: detect the format by content and stream the capture as packet batches."""

from __future__ import annotations

import io
import os
import queue
import stat
import sys
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np

from whyrst.capture import decode as dec
from whyrst.capture import fast as fast_mod
from whyrst.capture import pcap, pcapng
from whyrst.capture import records as rec
from whyrst.capture.batch import BATCH_ROWS, PacketBatch
from whyrst.errors import CaptureError, Warnings

GZIP_MAGIC = b"\x1f\x8b"
# How the common case is decoded: "numba" (compiled), "numpy" (vectorized), "python" (the per-packet
# slow path for every record); "auto" picks numba when it is installed. All give identical columns.
ENGINES = ("auto", "numba", "numpy", "python")
SNIFF = 512  # bytes looked at to decide whether an unknown file is text


class _Prefixed(io.RawIOBase):
    """``prefix`` followed by the rest of ``raw``: the bytes already looked at, handed back."""

    def __init__(self, prefix: bytes, raw: Any) -> None:
        super().__init__()
        self.prefix = prefix
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self.prefix:
            n = min(len(b), len(self.prefix))
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        return n


class _Gunzip(io.RawIOBase):
    """Streaming gzip decompression (several members allowed) that keeps every byte it could recover.

    Unlike ``gzip.GzipFile``, data decompressed before damage is handed out before the error is
    raised, and output per step is bounded however well the input compresses.
    """

    STEP = 1 << 20

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw
        self._read = getattr(raw, "read1", None) or raw.read
        self.d = self._decompressobj()
        self.pending = b""  # inflated bytes, handed out from ``taken`` on
        self.taken = 0
        self.done = False

    def readable(self) -> bool:
        return True

    @staticmethod
    def _decompressobj() -> Any:
        return rec.INFLATE.decompressobj(16 + zlib.MAX_WBITS)  # type: ignore[attr-defined]

    def _step(self) -> None:
        if self.d.unconsumed_tail:
            self.pending = self.d.decompress(self.d.unconsumed_tail, self.STEP)
            return
        if self.d.eof:
            rest = self.d.unused_data
            if not rest:
                rest = self._read(self.STEP)
                if not rest:
                    self.done = True
                    return
            if not rest.strip(b"\0"):  # zero padding after the last member
                self.done = True
                return
            self.d = self._decompressobj()  # another member follows
            self.pending = self.d.decompress(rest, self.STEP)
            return
        data = self._read(self.STEP)
        if not data:
            self.done = True
            raise EOFError("the compressed data ends before the end of the gzip stream")
        self.pending = self.d.decompress(data, self.STEP)

    def readinto(self, b: Any) -> int:
        while self.taken >= len(self.pending) and not self.done:
            self.pending, self.taken = b"", 0
            self._step()
        n = min(len(b), len(self.pending) - self.taken)
        b[:n] = memoryview(self.pending)[self.taken : self.taken + n]  # (one copy, and none of the rest)
        self.taken += n
        return n


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # a character cut at the end of the sample is fine
            return False
    # pasted text may be prose in any language around the packet lines (the seed write-up is Chinese)
    text = head.decode("utf-8", "ignore")
    printable = sum(ch.isprintable() or ch in "\t\r\n" for ch in text)
    return printable >= 0.9 * len(text)


def _is_pipe(raw: Any) -> bool:
    try:
        return not stat.S_ISREG(os.fstat(raw.fileno()).st_mode)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        return False


class Capture:
    """An open capture: iterate it for :class:`PacketBatch` objects (see :mod:`whyrst.capture`)."""

    source: str
    format: str
    packets: int
    warnings: Warnings

    def __init__(self, source: Any, *, batch_size: int = BATCH_ROWS, warnings: Warnings | None = None,
                 engine: str = "auto", prefetch: int = 0, checksums: bool | str = True,
                 select: Callable[[rec.Records], np.ndarray | None] | None = None,
                 payloads: bool = True) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.warnings = warnings if warnings is not None else Warnings()
        self.packets = 0  # records handed out so far
        self._frames = 0  # records decoded so far (ahead of packets when prefetching)
        self.prefetch = prefetch
        self.checksums = checksums
        self.select = select
        self.payloads = payloads
        self.file_offset_shift = 0  # file offset = stream offset + this (a range of a file: see ranges.py)
        self._stop = threading.Event()
        self.format = ""
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        if engine == "auto":
            engine = "numba" if fast_mod.available() else "numpy"
        elif engine == "numba" and not fast_mod.available():
            raise ValueError("engine 'numba' needs numba: pip install 'whyrst[fast]'")
        self.engine = engine
        self._owned: BinaryIO | None = None
        self._unsupported: dict[int, int] = {}
        self._stream: rec.ByteStream | None = None
        self._records: Iterator[rec.Records] | None = None  # a binary format's chunks, before decoding
        self._batches: Iterator[PacketBatch] | None = None
        self._decoder: dec.BatchDecoder | None = None
        raw = self._open(source)
        self._raw = raw
        try:
            self._batches = self._start(raw, _is_pipe(raw))
        except BaseException:
            self.close()
            raise

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, source: Any) -> Any:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.source = "<bytes>"
            return io.BytesIO(bytes(source))
        if isinstance(source, (str, os.PathLike)):
            path = os.fspath(source)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if path == "-":
                self.source = "<stdin>"
                return sys.stdin.buffer
            self.source = path
            try:
                self._owned = open(path, "rb")  # noqa: SIM115 - closed by close()
            except OSError as e:
                raise CaptureError(path, None, f"cannot open: {e.strerror or e}") from None
            return self._owned
        if hasattr(source, "read"):
            name = getattr(source, "name", None)
            self.source = name if isinstance(name, str) else "<stream>"
            return getattr(source, "buffer", source)  # a text-mode stdin: read its bytes
        raise TypeError(f"open_capture: cannot read a capture from {type(source).__name__}")

    def _start(self, raw: Any, live: bool, gzipped: bool = False) -> Iterator[PacketBatch]:
        probe = rec.ByteStream(raw, live=False)
        head = probe.read_exact(4)
        if probe.error is not None:
            raise CaptureError(self.source, 0, f"gzip: {probe.error}")
        if not head:
            what = "the decompressed data is empty" if gzipped else "empty file"
            raise CaptureError(self.source, 0, f"{what}: not a capture")
        if head[:2] == GZIP_MAGIC and not gzipped:
            return self._start(_Gunzip(_Prefixed(head, raw)), False, gzipped=True)
        suffix = "+gzip" if gzipped else ""
        if head in pcap.MAGICS:
            self.format = "pcap" + suffix
            stream = rec.ByteStream(raw, prefix=head, live=live)
            stream.headers_only = not self.payloads
            self._stream = stream
            walker = None if self.engine == "numba" else pcap.walk_py
            self._records = self._primed(pcap.read_pcap(stream, self.source, self.batch_size, self.warnings, walker))
            return self._decoded(self._records)
        if head == pcapng.MAGIC:
            self.format = "pcapng" + suffix
            stream = rec.ByteStream(raw, prefix=head, live=live)
            stream.headers_only = not self.payloads
            self._stream = stream
            self._records = self._primed(pcapng.read_pcapng(stream, self.source, self.batch_size, self.warnings,
                                                            walker=True if self.engine == "numba" else None))
            return self._decoded(self._records)
        sample = head + probe.read_exact(SNIFF - len(head))
        if _looks_like_text(sample):
            try:
                from whyrst.capture.text import parse_text_capture  # type: ignore[attr-defined]
            except ImportError:
                raise CaptureError(self.source, 0, "not a capture: tcpdump text is not supported yet") from None
            self.format = "tcpdump-text" + suffix
            text_stream = io.BufferedReader(_Prefixed(sample, raw))  # type: ignore[arg-type]
            batches: Iterable[PacketBatch] = parse_text_capture(text_stream, self.source, self.batch_size,
                                                                self.warnings)
            return self._counted(iter(batches))
        what = "the decompressed data" if gzipped else "the file"
        raise CaptureError(self.source, 0, f"not a capture: {what} starts with 0x{head.hex()}, which is not pcap, "
                                           "pcapng, gzip or tcpdump text")

    def _primed(self, records: Iterator[rec.Records]) -> Iterator[rec.Records]:
        """Read the first batch now, so that a file whose headers are bad fails in open_capture."""
        held = [next(records, None)]

        def chained() -> Iterator[rec.Records]:
            first = held.pop()  # not kept once handed out: it holds a whole chunk buffer
            if first is not None:
                yield first
                del first
                yield from records

        return chained()

    # -- iterating -------------------------------------------------------------------------------
    def chunks(self) -> Iterator[tuple[rec.Records, int, int]] | None:
        """Instead of the batches: each chunk's records as the reader walked them, not decoded, with the
        number of records before them and where the chunk's buffer starts in the file (-1 when unknown: a
        gzip file), for a reader of the headers only that decodes them itself with the compiled kernels
        (the first pass: ``CompiledPrepass.scan``), and :meth:`decode_rest` for what they leave to the
        slow path. None when the capture is not read that way (text, another decoder, payloads wanted)."""
        if (self._records is None or self.payloads or self.select is not None or self.engine != "numba"
                or self.prefetch):
            return None
        records, self._records, self._batches = self._records, None, None
        return self._chunks(records)

    def _chunks(self, records: Iterator[rec.Records]) -> Iterator[tuple[rec.Records, int, int]]:
        # (records of a link type the compiled decoder does not know all come back through decode_rest,
        # which counts them for the warning)
        for r in records:
            frames = self._frames
            self._frames += r.n
            self.packets += r.n
            yield r, frames, self._file_base(r)
        self._finish()

    def _file_base(self, r: rec.Records) -> int:
        """Where ``r``'s buffer starts in the file (-1: unknown, as in a gzip file's decompressed stream)."""
        return r.base + self.file_offset_shift if r.base >= 0 and "gzip" not in self.format else -1

    def decode_rest(self, r: rec.Records, start: int, frames_before: int) -> PacketBatch:
        """Records ``r[start:]`` of a chunk from :meth:`chunks` (``frames_before`` records before the chunk)
        decoded into a batch of headers, as iterating the capture would have decoded them."""
        part = rec.Records(r.buf, r.n - start, r.offs[start:], r.cap[start:], r.wire[start:], r.ts[start:],
                           r.link[start:], r.iface[start:], r.base)
        self._count_unsupported(part.link)
        batch = PacketBatch.empty(part.n)
        self._batch_decoder().decode_into(part, frames_before + start, batch)
        base = self._file_base(r)
        return self._headers_only(batch, part.offs + base if base >= 0 else np.full(part.n, -1, dtype=np.int64))

    def _batch_decoder(self) -> dec.BatchDecoder:
        if self._decoder is None:
            self._decoder = dec.BatchDecoder(self.engine, checksums=self.checksums)
        return self._decoder

    def _decoded(self, records: Iterator[rec.Records]) -> Iterator[PacketBatch]:
        decoder = self._batch_decoder()
        if not self.payloads and self.select is None:
            yield from self._merged(decoder, records)
            self._finish()
            return
        for r in records:
            rows = self.select(r) if self.select is not None else None
            if rows is None:
                batch = decoder.decode(r, self._frames)
            else:  # only the selected records, with their frame numbers
                sub = rec.Records(r.buf, len(rows), r.offs[rows], r.cap[rows], r.wire[rows], r.ts[rows],
                                  r.link[rows], r.iface[rows])
                batch = decoder.decode(sub, 0)
                batch.cols["frame"][:] = rows + (self._frames + 1)
                batch.extras["records"] = r.n
            self._frames += r.n
            self._count_unsupported(r.link)
            yield batch
        self._finish()

    def _merged(self, decoder: dec.BatchDecoder, records: Iterator[rec.Records]) -> Iterator[PacketBatch]:
        """The records of consecutive chunks decoded into batches of ``batch_size`` rows, for a reader of
        the headers only: a chunk is small (it stays in the CPU's cache while it is walked and decoded), a
        batch is large (whatever the consumer does per batch is done rarely). A batch spans chunks, so it
        has no payload bytes (``data`` is empty, ``payload_cap`` 0); ``extras["file_offsets"]`` holds
        where each record's packet starts in the file (-1 where the reader cannot say: gzip)."""
        size = self.batch_size
        batch: PacketBatch | None = None
        offsets = np.empty(0, dtype=np.int64)
        k = 0
        for r in records:
            self._count_unsupported(r.link)
            pos = 0
            while pos < r.n:
                if batch is None:
                    batch, k = PacketBatch.empty(size), 0
                    offsets = np.empty(size, dtype=np.int64)
                take = min(r.n - pos, size - k)
                part = r if take == r.n else rec.Records(
                    r.buf, take, r.offs[pos : pos + take], r.cap[pos : pos + take], r.wire[pos : pos + take],
                    r.ts[pos : pos + take], r.link[pos : pos + take], r.iface[pos : pos + take], r.base)
                decoder.decode_into(part, self._frames, batch.rows(k, k + take))
                base = self._file_base(r)
                offsets[k : k + take] = part.offs + base if base >= 0 else -1
                self._frames += take
                pos += take
                k += take
                if k == size:
                    yield self._headers_only(batch, offsets)
                    batch = None
        if batch is not None and k:
            yield self._headers_only(batch.rows(0, k), offsets[:k])

    @staticmethod
    def _headers_only(batch: PacketBatch, offsets: np.ndarray) -> PacketBatch:
        batch.cols["payload_cap"][:] = 0
        batch.data = b""
        batch.extras = {"file_offsets": offsets}
        return batch

    def _counted(self, batches: Iterator[PacketBatch]) -> Iterator[PacketBatch]:
        for batch in batches:
            self._frames += batch.n
            yield batch
        self._finish()

    def _count_unsupported(self, link: np.ndarray) -> None:
        lo, hi = int(link.min()), int(link.max())
        if lo == hi:
            if lo not in dec.SUPPORTED_LINKTYPES and lo != dec.LT_NONE:
                self._unsupported[lo] = self._unsupported.get(lo, 0) + len(link)
            return
        values, counts = np.unique(link, return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            if v not in dec.SUPPORTED_LINKTYPES and v != dec.LT_NONE:
                self._unsupported[v] = self._unsupported.get(v, 0) + c

    def _finish(self) -> None:
        stream = self._stream
        if stream is not None and stream.error is not None:
            rec.damaged(self.source, self.warnings, self._frames, stream.offset,
                        f"gzip: {stream.error} (offset in the decompressed data)")
        for link, count in sorted(self._unsupported.items()):
            self.warnings.warn(f"{self.source}: link type {link} is not supported: {count} packets "
                               f"{'was' if count == 1 else 'were'} counted but not decoded")
        self._unsupported.clear()

    def _handed_out(self, batches: Iterator[PacketBatch]) -> Iterator[PacketBatch]:
        for batch in batches:
            self.packets += batch.extras.get("records", batch.n)  # type: ignore[assignment]
            yield batch

    def _prefetched(self, batches: Iterator[PacketBatch]) -> Iterator[PacketBatch]:
        """Read and decode up to ``prefetch`` batches ahead in a thread (the compiled kernels and file
        reads release the GIL, so this overlaps with the consumer's work on another core)."""
        q: queue.Queue[object] = queue.Queue(maxsize=self.prefetch)
        stop = self._stop
        done = object()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    q.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for b in batches:
                    if not put(b):
                        return
            except BaseException as e:  # handed to the consumer, raised there
                put(e)
                return
            put(done)

        thread = threading.Thread(target=produce, name="whyrst-capture-reader", daemon=True)
        self._thread = thread
        thread.start()
        try:
            while True:
                item = q.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, PacketBatch)
                yield item
        finally:
            stop.set()
            thread.join(5)

    def __iter__(self) -> Iterator[PacketBatch]:
        batches, self._batches = self._batches, None  # one pass
        if batches is None:
            return iter(())
        return self._handed_out(self._prefetched(batches) if self.prefetch > 0 else batches)

    @property
    def bytes_read(self) -> int:
        """Bytes taken from the source so far (compressed bytes for a gzip file), for progress."""
        if self._owned is not None:
            try:
                return self._owned.tell()
            except (OSError, ValueError):
                pass
        return self._stream.offset if self._stream is not None else 0

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(5)
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Capture({self.source!r}, format={self.format!r}, packets={self.packets})"


def open_capture(source: Any, *, batch_size: int = BATCH_ROWS, warnings: Warnings | None = None,
                 prefetch: int = 0, engine: str = "auto", checksums: bool | str = True,
                 select: Callable[[rec.Records], np.ndarray | None] | None = None,
                 payloads: bool = True) -> Capture:
    """Open ``source`` (a path, ``-`` for standard input, a binary stream or bytes) for reading.

    Raises :class:`CaptureError` naming the source and the byte offset when it cannot be read at all.
    ``prefetch=N`` reads and decodes up to N batches ahead in a background thread. ``checksums=False``
    skips TCP checksum verification (``checksum_ok`` is -1 everywhere; ``"rst"``: checked for RSTs only).
    ``select(records)`` may return the indexes of the records of a chunk to decode (None: all); the others
    are counted in ``packets`` but not decoded, and the batch's ``frame`` column keeps the true frame
    numbers. ``payloads=False`` (a
    reader of headers only) decodes the file in small chunks into large batches without payload bytes,
    with each record's file offset in ``extras["file_offsets"]``.
    """
    return Capture(source, batch_size=batch_size, warnings=warnings, prefetch=prefetch, engine=engine,
                   checksums=checksums, select=select, payloads=payloads)

"""Capture readers: pcap, pcapng (plain or gzip-compressed) and tcpdump text, into columnar batches.

The one entry point is :func:`open_capture`. It detects the format by content (never by file name),
reads ``-`` as standard input, and yields :class:`~whyrst.capture.batch.PacketBatch` objects of at
most ``batch_size`` records, streaming: memory does not grow with the file.

Contract (used by ``whyrst.tcp`` and the front ends)::

    cap = open_capture(path_or_dash, warnings=Warnings())  # batch_size: BATCH_ROWS records at most
    cap.source      # the name to show users
    cap.format      # "pcap", "pcapng", "tcpdump-text" (plus "+gzip" when compressed)
    for batch in cap: ...
    cap.packets     # records read so far (equals tshark's frame count at the end)
    cap.bytes_read  # bytes taken from the source (compressed bytes for gzip), for progress

Options: ``prefetch=N`` reads and decodes N batches ahead in a thread; ``Capture(...,
engine="numba" | "numpy" | "python")`` picks the decoder (default: numba when installed, else the
vectorized numpy one); all engines give identical columns.

Modules: ``headers`` (every header declared as data), ``pcap``/``pcapng``/``records`` (the record
layer, read in chunks), ``decode`` (the per-packet slow path and batch assembly), ``_kernels``/``fast``
(numba), ``vector`` (numpy), ``open`` (format detection, gzip, sources).

A file that cannot be read at all raises :class:`whyrst.errors.CaptureError` naming the file and
byte offset. Damage after good records adds a warning and ends (or resyncs) the iteration.
"""

from typing import Any

from whyrst.capture.batch import COLUMNS, Kind, PacketBatch, address_text


def __getattr__(name: str) -> Any:
    # The readers load on first use, so importing the batch schema stays cheap.
    if name in ("Capture", "open_capture"):
        from whyrst.capture import open as _open

        return getattr(_open, name)
    raise AttributeError(name)


__all__ = ["COLUMNS", "Capture", "Kind", "PacketBatch", "address_text", "open_capture"]

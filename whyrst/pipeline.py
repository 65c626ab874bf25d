"""One pass over a capture: reader -> tracker, shared by ``conns``, ``analyze`` and the API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from whyrst.capture.batch import BATCH_ROWS
from whyrst.errors import Warnings
from whyrst.tcp.track import MAX_CONNECTIONS, Connection, Tracker


@dataclass
class PassResult:
    source: str
    format: str
    packets: int
    connections: int
    warnings: Warnings = field(default_factory=Warnings)


def track_capture(
    source: Any,
    on_finish: Callable[[Connection], None],
    *,
    batch_size: int = BATCH_ROWS,
    progress: Callable[[int, int], None] | None = None,
    max_connections: int = MAX_CONNECTIONS,
    check_checksums: bool = False,
) -> PassResult:
    """Read ``source`` and hand every finished connection to ``on_finish``, streaming."""
    from whyrst.capture import open_capture

    warnings = Warnings()
    count = 0

    def finished(conn: Connection) -> None:
        nonlocal count
        count += 1
        on_finish(conn)

    with open_capture(source, batch_size=batch_size, warnings=warnings) as cap:
        tag = str(cap.source).encode()
        tracker = Tracker(finished, source_tag=tag, max_connections=max_connections,
                          check_checksums=check_checksums)
        for batch in cap:
            tracker.feed(batch)
            if progress is not None:
                progress(cap.packets, getattr(cap, "bytes_read", 0))
        tracker.close()
        if tracker.evicted:
            warnings.warn(tracker.eviction_note())
        return PassResult(cap.source, cap.format, cap.packets, count, warnings)

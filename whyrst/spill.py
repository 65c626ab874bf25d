"""Rows sorted by one key in bounded memory: sorted runs spill to temporary files and are merged.

``whyrst conns`` prints connections in order of their start, but connections finish in another order
and a capture may hold millions of them (a SYN flood). :class:`SortedRows` keeps at most ``limit``
rows in memory; the result is the same as a stable ``sorted(rows, key=...)``.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any

BLOCK = 2048  # rows pickled together (one pickle per row is several times slower)


def _read_run(fh: IO[bytes]) -> Iterator[Any]:
    fh.seek(0)
    while True:
        try:
            block = pickle.load(fh)  # our own temporary file, written just before
        except EOFError:
            return
        yield from block


class SortedRows:
    """Collect rows with :meth:`add`, then iterate them once, sorted by ``key`` (stable)."""

    # 100,000 rows in memory: a conn.log row (a dict of 17 fields) is about 1 KB, so about 100 MB, and a
    # capture of 100 million connections merges 1,000 runs (one open file each, the usual limit per process).
    def __init__(self, key: Callable[[Any], Any], limit: int = 100_000) -> None:
        self.key = key
        self.limit = max(1, limit)
        self._rows: list[Any] = []
        self._runs: list[IO[bytes]] = []
        self.count = 0

    def add(self, row: Any) -> None:
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.limit:
            self._spill()

    def _spill(self) -> None:
        self._rows.sort(key=self.key)
        fh = tempfile.TemporaryFile(prefix="whyrst-sort-")  # noqa: SIM115 - closed by close()
        for i in range(0, len(self._rows), BLOCK):
            pickle.dump(self._rows[i : i + BLOCK], fh, protocol=pickle.HIGHEST_PROTOCOL)
        fh.flush()
        self._runs.append(fh)
        self._rows = []

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[Any]:
        self._rows.sort(key=self.key)
        if not self._runs:
            rows, self._rows = self._rows, []
            yield from rows
            return
        runs = [_read_run(fh) for fh in self._runs]
        # heapq.merge takes equal keys from the earlier run first: the same order as one stable sort
        try:
            yield from heapq.merge(*runs, iter(self._rows), key=self.key)
        finally:
            self.close()

    def close(self) -> None:
        for fh in self._runs:
            fh.close()
        self._runs = []
        self._rows = []

    def __enter__(self) -> SortedRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

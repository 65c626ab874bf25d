"""The first pass's index of a capture file (whyrst.capture.index): reading back only the packets of the
wanted flows gives exactly the rows a full read would, and a file that changes between the passes is
never read through a stale index."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from whyrst import synth
from whyrst.analysis import analyze
from whyrst.capture import fast, open_capture
from whyrst.capture import index as ix
from whyrst.capture.batch import Kind
from whyrst.errors import CaptureError
from whyrst.tcp.prepass import flow_hashes, new_prepass

ENGINES = ["numpy", *(["numba"] if fast.available() else [])]


def _indexed(path: Path, engine: str = "numpy", parts: int = 1) -> tuple[ix.FlowIndex, np.ndarray]:
    """The index of ``path`` as analyze builds it (numpy: from decoded batches; numba: by the compiled scan of
    raw records), and every TCP flow hash of the file (sorted, distinct). With ``parts``, written in that
    many partitions (as a range of a file analysed in parts) and read back as one."""
    index = ix.FlowIndex(str(path), store=str(path) + ".index" if parts > 1 else None, parts=parts)
    prepass = new_prepass(engine)
    with open_capture(str(path), engine=engine, checksums=False, payloads=False) as cap:
        prepass.read(cap, index)
    if parts > 1:
        handle = index.detach()
        index = ix.FlowIndex.attach(handle, range(parts))
        index.handle = handle  # type: ignore[attr-defined]  # (for a test to read each partition alone)
    seen = []
    with open_capture(str(path), engine="numpy") as cap:
        for batch in cap:
            seen.append(flow_hashes(batch, np.flatnonzero(batch.cols["kind"] == Kind.TCP)))
    return index, np.unique(np.concatenate(seen))


def _full_rows(path: Path, wanted: np.ndarray) -> dict[str, np.ndarray]:
    """Every decoded column of the TCP rows of the wanted flows, reading the whole file."""
    parts: dict[str, list[np.ndarray]] = {}
    with open_capture(str(path), engine="numpy") as cap:
        for batch in cap:
            tcp = np.flatnonzero(batch.cols["kind"] == Kind.TCP)
            rows = tcp[np.isin(flow_hashes(batch, tcp), wanted)]
            for name, col in batch.cols.items():
                if name not in ("payload_off",):  # (an offset into each batch's own buffer)
                    parts.setdefault(name, []).append(col[rows])
            parts.setdefault("src", []).append(batch.src[rows])
            parts.setdefault("payload", []).append(
                np.array([batch.payload(int(i)) for i in rows], dtype=object))
    return {k: np.concatenate(v) for k, v in parts.items()}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
@pytest.mark.parametrize(("small_reads", "parts"), [(False, 1), (True, 1), (False, 3)],
                         ids=["gaps", "one-span", "3-partitions"])
def test_index_reads_back_the_wanted_flows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pcapng: bool,
                                           small_reads: bool, parts: int, engine: str) -> None:
    path = tmp_path / ("x.pcapng" if pcapng else "x.pcap")
    synth.write_bench(str(path), 20_000, 300, 4, pcapng, mix="bulk")
    if small_reads:  # every packet its own read, spans cut short, batches of a few packets' bytes
        monkeypatch.setattr(ix, "GAP", 0)
        monkeypatch.setattr(ix, "SPAN", 1)
        monkeypatch.setattr(ix, "BATCH_BYTES", 3000)
    monkeypatch.setattr(ix, "BLOCK_ROWS", 97)  # most rows in the temporary file, blocks cut anywhere
    index, seen = _indexed(path, engine, parts)
    wanted = np.sort(seen[::7])
    want = _full_rows(path, wanted)
    got: dict[str, list[np.ndarray]] = {}
    sizes = []
    for batch in index.batches(ix.sorted_member(wanted), engine="numpy", batch_size=500):
        sizes.append((batch.n, int(batch.cols["cap_len"].sum())))
        for name, col in batch.cols.items():
            got.setdefault(name, []).append(col)
        got.setdefault("src", []).append(batch.src)
        got.setdefault("payload", []).append(np.array([batch.payload(i) for i in range(batch.n)], dtype=object))
    index.close()
    assert len(want["frame"]) > 1000
    assert all(n <= 500 and (n == 1 or size <= ix.BATCH_BYTES) for n, size in sizes), sizes
    for name, col in want.items():
        assert np.array_equal(np.concatenate(got[name]), col), name
    for q in range(parts if parts > 1 else 0):  # each partition's file holds its own flows' rows, and all of them
        alone = ix.FlowIndex.attach(index.handle, (q,))
        rows = [flow_hashes(b, np.arange(b.n)) for b in alone.batches(lambda h: np.ones(len(h), dtype=bool))]
        alone.close()
        hashes = np.concatenate(rows)
        assert len(hashes) and (ix.partition_of(hashes, parts) == q).all()
        assert np.array_equal(np.unique(hashes), seen[ix.partition_of(seen, parts) == q])


@pytest.mark.parametrize("engine", ENGINES)
def test_index_of_gzip_is_not_usable(tmp_path: Path, engine: str) -> None:
    plain = tmp_path / "x.pcap"
    synth.write_bench(str(plain), 3000, 100, 4, False, mix="short")
    packed = tmp_path / "x.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    index, seen = _indexed(packed, engine)
    assert not index.usable
    with pytest.raises(ix.StaleIndex):
        list(index.batches(ix.sorted_member(seen)))


def test_file_changed_between_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file rewritten after the first pass is read again (the index is stale); one cut short while its
    packets are read back is an error naming the file and offset."""
    path = tmp_path / "x.pcap"
    synth.write_bench(str(path), 20_000, 300, 4, False, mix="short")
    want = analyze(str(path), two_pass=False).to_json()
    real_batches = ix.FlowIndex.batches

    def touched(self: ix.FlowIndex, *args: object, **kw: object) -> object:
        st = os.stat(path)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return real_batches(self, *args, **kw)

    monkeypatch.setattr(ix.FlowIndex, "batches", touched)
    assert analyze(str(path)).to_json() == want

    def cut(self: ix.FlowIndex, *args: object, **kw: object) -> object:
        # cut short after the check of the file's identity, while its packets are read back
        with open(path, "r+b") as fh:
            fh.truncate(os.path.getsize(path) // 2)
        self.identity = ix._identity(str(path))
        return real_batches(self, *args, **kw)

    monkeypatch.setattr(ix.FlowIndex, "batches", cut)
    with pytest.raises(CaptureError, match=r"x\.pcap: offset \d+: the file became shorter"):
        analyze(str(path))


def test_no_room_for_the_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temporary file that cannot be written (a full disk): the second pass reads the capture again."""
    path = tmp_path / "x.pcap"
    synth.write_bench(str(path), 20_000, 300, 4, False, mix="short")
    want = analyze(str(path), two_pass=False).to_json()

    def full(*args: object, **kw: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ix, "BLOCK_ROWS", 1000)
    monkeypatch.setattr(ix.tempfile, "TemporaryFile", full)
    assert analyze(str(path)).to_json() == want

"""The compiled prepass against the numpy one (its reference), and the second pass's record filter
against full decoding: it may keep extra records, never drop one of a wanted flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import manifest

from whyrst.capture import Kind, fast, open_capture
from whyrst.errors import CaptureError
from whyrst.tcp.prepass import CompiledPrepass, NumpyPrepass, flow_hashes

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba is not installed")

ROWS = [r for r in manifest() if r["opens_cleanly"].startswith("yes")]


def _both(path: Path, max_tuples: int = 1_000_000, batch_size: int = 65536) -> tuple[NumpyPrepass, CompiledPrepass]:
    a, b = NumpyPrepass(max_tuples), CompiledPrepass(max_tuples)
    with open_capture(str(path), batch_size=batch_size) as cap:
        for batch in cap:
            a.feed(batch)
            b.feed(batch)
    return a, b


def _assert_same(a: NumpyPrepass, b: CompiledPrepass) -> None:
    assert (b.connections, b.tcp_packets, b.forgotten) == (a.connections, a.tcp_packets, a.forgotten)
    assert np.array_equal(b.rst_hashes(), a.rst_hashes())
    assert b.rst_tuples == a.rst_tuples
    assert sorted(b.ttls) == sorted(a.ttls)
    for addr, counts in a.ttls.items():
        assert b.ttls[addr] == counts, addr
    probed = {k: v for k, v in a.probed.items() if v}
    assert sorted(b.probed) == sorted(probed)
    for addr, pairs in probed.items():
        assert b.probed[addr] == pairs, addr
    assert b.ttls.get("203.0.113.255") is None and b.probed.get("not an address") is None


def _scanned(path: Path, numpy_prepass: NumpyPrepass, batch_size: int = 65536) -> CompiledPrepass:
    """The compiled prepass of a whole capture read as the first pass of ``analyze`` reads it (raw records
    scanned by the compiled decoder), checked against the numpy one fed decoded batches of the same file."""
    b = CompiledPrepass()
    with open_capture(str(path), engine="numba", checksums=False, payloads=False, batch_size=batch_size) as cap:
        b.read(cap)
    _assert_same(numpy_prepass, b)
    a_ports, b_ports = numpy_prepass.answered, b.answered
    assert b_ports.table == a_ports.table
    assert b_ports.last_close.as_dict() == a_ports.last_close.as_dict()
    assert b_ports.refusals == a_ports.refusals
    assert (b.first_ts, b.last_ts, b.ordered) == (numpy_prepass.first_ts, numpy_prepass.last_ts, numpy_prepass.ordered)
    return b


def _bench(tmp_path: Path, packets: int, pcapng: bool = False) -> Path:
    from whyrst import synth

    path = tmp_path / ("bench.pcapng" if pcapng else "bench.pcap")
    synth.write_bench(str(path), packets, 500, 5, pcapng, mix="short")
    return path


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_compiled_prepass_equals_numpy(row: dict[str, str], corpus: Path) -> None:
    try:
        a, b = _both(corpus / "pcaps" / row["file"], batch_size=97)  # many batches: state across them
    except CaptureError:
        pytest.skip("unreadable capture")
    _assert_same(a, b)


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_scanned_records_equal_numpy(row: dict[str, str], corpus: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass's compiled scan of raw records (chunks of 4 KB: records cut at every boundary, tunnels
    and other records left to the slow path) counts what the numpy prepass counts from decoded batches."""
    from whyrst.capture import records

    path = corpus / "pcaps" / row["file"]
    try:
        a, _ = _both(path)
    except CaptureError:
        pytest.skip("unreadable capture")
    monkeypatch.setattr(records, "HEADERS_CHUNK_SIZE", 4096)
    _scanned(path, a, batch_size=50)


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_bench_scanned_records_equal_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pcapng: bool) -> None:
    """Every table starts with 16 slots and grows several times while a chunk is scanned (the scan stops
    and goes on)."""
    from whyrst import synth
    from whyrst.tcp import prepass

    path = tmp_path / "bench"
    synth.write_bench(str(path), 40_000, 500, 5, pcapng, reset_share=0.5, mix="short")
    a, _ = _both(path)
    monkeypatch.setattr(prepass, "MIN_SLOTS", 16)
    b = _scanned(path, a)
    assert len(b.answered.table) > 100 and len(b.answered.refusals) > 100 and len(b.ttls) > 1000


@pytest.mark.parametrize("row", ROWS[::3], ids=[r["file"] for r in ROWS[::3]])
def test_answered_ports_equal_a_packet_walk(row: dict[str, str], corpus: Path) -> None:
    """Each port's SYN-ACKs (first time, last time, count), its latest close, and each refusal's latest SYN-ACK
    and close of its port before it, as one packet at a time finds them (in small batches)."""
    from whyrst.capture.batch import ACK, FIN, RST, SYN
    from whyrst.tcp.prepass import AnsweredPorts, port_keys

    table = AnsweredPorts()
    answers: dict[int, tuple[int, int, int]] = {}
    closes: dict[int, int] = {}
    refusals: dict[tuple[int, int, int], tuple[int, int]] = {}
    try:
        with open_capture(str(corpus / "pcaps" / row["file"]), batch_size=97) as cap:
            for batch in cap:
                table.feed(batch)
                c = batch.cols
                every = np.arange(batch.n)
                ports, peers = port_keys(batch, every).tolist(), port_keys(batch, every, src=False).tolist()
                for i in range(batch.n):
                    if c["kind"][i] != Kind.TCP:
                        continue
                    f = int(c["flags"][i])
                    t = int(c["ts_ns"][i])
                    port, peer = ports[i], peers[i]
                    if f & (SYN | ACK | RST) == SYN | ACK:
                        lo, hi, n = answers.get(port, (t, t, 0))
                        answers[port] = (min(lo, t), max(hi, t), n + 1)
                    elif f & (SYN | ACK | RST) == ACK | RST and int(c["seq"][i]) == 0:
                        refusals[(port, peer, t)] = (answers.get(port, (-1, -1, 0))[1], closes.get(port, -1))
                    elif f & (FIN | RST) and not f & SYN:
                        closes[port] = max(closes.get(port, -1), t)
    except CaptureError:
        pytest.skip("unreadable capture")
    assert table.table == answers
    assert table.last_close.as_dict() == closes
    assert table.refusals == refusals


def test_answered_ports_forget_single_answers_first() -> None:
    from whyrst.tcp.prepass import AnsweredPorts

    table = AnsweredPorts(max_entries=4)
    for port in range(5):
        table.table[port] = (port, port, 1 + (port == 3))
    table._trim()
    assert list(table.table) == [3] and table.forgotten == 4
    assert table.get("not an address", 3) is None


def test_bench_compiled_prepass_equals_numpy(tmp_path: Path) -> None:
    # small batches and tables that start small: every table grows several times
    a, b = _both(_bench(tmp_path, 40_000), batch_size=5000)
    assert len(b.rst_tuples) > 50 and len(b.ttls) > 1000
    _assert_same(a, b)


def test_forgetting_tuples_matches_numpy(tmp_path: Path) -> None:
    a, b = _both(_bench(tmp_path, 20_000), max_tuples=300, batch_size=2000)
    assert a.forgotten > 0
    _assert_same(a, b)


def _check_filter(path: Path, wanted: np.ndarray | None = None) -> int:
    """Every decoded TCP row of a wanted flow survives the record filter; returns the rows checked."""
    full_rows: list[tuple[int, int]] = []
    with open_capture(str(path)) as cap:
        for batch in cap:
            tcp = np.flatnonzero(batch.cols["kind"] == Kind.TCP)
            hashes = flow_hashes(batch, tcp)
            full_rows.extend(zip(batch.cols["frame"][tcp].tolist(), hashes.tolist(), strict=True))
        total = cap.packets
    if not full_rows:
        return 0
    pre = CompiledPrepass()
    if wanted is None:  # every other flow of the capture
        flows = sorted({h for _, h in full_rows})
        wanted = np.array(flows[::2], dtype=np.uint64)
    # load the wanted hashes into the compiled RST table through a fake batch of RST rows
    keys, used = pre._rsts
    while 2 * (len(wanted) + 1) > len(keys):
        keys, used = np.zeros(2 * len(keys), dtype=np.uint64), np.zeros(2 * len(keys), dtype=np.uint8)
    empty = np.empty(0, dtype=np.int64)
    pre._k.insert_keys(wanted, keys, used, empty, empty, empty, empty)
    pre._rsts = (keys, used)
    with open_capture(str(path), select=pre.record_filter()) as cap:
        kept = {int(f) for batch in cap for f in batch.cols["frame"]}
    assert cap.packets == total  # records left out still count
    want_set = set(wanted.tolist())
    needed = [f for f, h in full_rows if h in want_set]
    missing = [f for f in needed if f not in kept]
    assert not missing, missing[:10]
    return len(needed)


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_record_filter_keeps_wanted_flows(row: dict[str, str], corpus: Path) -> None:
    try:
        _check_filter(corpus / "pcaps" / row["file"])
    except CaptureError:
        pytest.skip("unreadable capture")


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_bench_record_filter_keeps_wanted_flows_and_drops_others(tmp_path: Path, pcapng: bool) -> None:
    path = _bench(tmp_path, 20_000, pcapng)
    assert _check_filter(path) > 5000
    # with no flow wanted, plain Ethernet TCP is all dropped
    pre = CompiledPrepass()
    with open_capture(str(path), select=pre.record_filter()) as cap:
        assert sum(b.n for b in cap) == 0
        assert cap.packets == 20_000

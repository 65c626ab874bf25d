"""The record layer: pcap and pcapng in all their variants, gzip, sources (path, -, stream, bytes),
streaming, and damaged files (clear errors, or warnings that keep what came before)."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import threading
import tracemalloc
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gen import (
    ACK,
    SYN,
    Rec,
    assert_same,
    block,
    epb,
    ether,
    idb,
    ip4,
    ip6,
    isb,
    nrb,
    pb,
    pcap_file,
    read,
    shb,
    sll,
    spb,
    tcp,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from whyrst.capture import Kind, PacketBatch, open_capture
from whyrst.capture import fast as fast_mod
from whyrst.capture import records as rec
from whyrst.capture.open import Capture
from whyrst.errors import CaptureError, Warnings

REPO = Path(__file__).resolve().parent.parent
ENGINES = ["numpy", "python"] + (["numba"] if fast_mod.available() else [])
T0 = 1_700_000_000_123_456_789


def frames(n: int, start: int = 0) -> list[bytes]:
    return [ether(ip4(tcp(sport=1000 + i, seq=i, flags=SYN if i % 2 else ACK, payload=b"p" * (i % 5))))
            for i in range(start, start + n)]


def pcap_bytes(n: int = 5, **kw: object) -> bytes:
    return pcap_file([Rec(f, ts_ns=T0 + i * 1001) for i, f in enumerate(frames(n))], **kw)  # type: ignore[arg-type]


def error_of(data: bytes, name: str = "x.pcap", tmp_path: Path | None = None) -> CaptureError:
    with pytest.raises(CaptureError) as ei:
        if tmp_path is not None:
            p = tmp_path / name
            p.write_bytes(data)
            list(open_capture(str(p)))
        else:
            list(open_capture(io.BytesIO(data)))
    err = ei.value
    assert "\n" not in str(err)
    return err


# -- pcap -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("ns", [False, True])
def test_pcap_byte_orders_and_resolutions(big: bool, ns: bool) -> None:
    t = read(pcap_bytes(5, big=big, ns=ns))
    assert t.format == "pcap" and t.packets == 5 and t.warnings == []
    assert list(t["frame"]) == [1, 2, 3, 4, 5]
    expect = [T0 + i * 1001 for i in range(5)]
    if not ns:
        expect = [e // 1000 * 1000 for e in expect]
    assert list(t["ts_ns"]) == expect
    assert list(t["sport"]) == [1000, 1001, 1002, 1003, 1004] and (t["kind"] == Kind.TCP).all()
    assert list(t["cap_len"]) == list(t["wire_len"]) == [len(f) for f in frames(5)]
    assert t["ts_ns"].dtype == np.int64


def test_pcap_major_version_1_rejected(tmp_path: Path) -> None:
    err = error_of(pcap_bytes(2, version=(1, 4)), "v1.pcap", tmp_path)
    assert "v1.pcap" in str(err) and "offset 4" in str(err) and "major version 1" in str(err)


def test_pcap_linktype_reserved_bits_rejected() -> None:
    err = error_of(pcap_bytes(1, linktype=0x00300001))
    assert err.offset == 20 and "reserved" in err.message and "0x00300001" in err.message


def test_pcap_fcs_bits_in_linktype_are_fine() -> None:
    t = read(pcap_bytes(2, linktype=0x24000001))  # FCS length present: 2 x 16 bits
    assert t.n == 2 and (t["kind"] == Kind.TCP).all() and (t["link_type"] == 1).all()


def test_pcap_truncated_mid_record(tmp_path: Path) -> None:
    data = pcap_bytes(4)
    path = tmp_path / "cut.pcap"
    path.write_bytes(data[:-10])
    t = read(str(path))
    assert t.n == 3 and len(t.warnings) == 1
    last_record = len(data) - 16 - len(frames(4)[3])
    assert str(path) in t.warnings[0] and f"offset {last_record}" in t.warnings[0]
    # cut inside the record header
    t = read(data[: last_record + 7])
    assert t.n == 3 and "record header" in t.warnings[0]
    # cut inside the file header: nothing to read at all
    assert "file header" in error_of(data[:20]).message


def test_pcap_huge_caplen() -> None:
    good = pcap_bytes(3)
    huge = b"\0" * 8 + (300_000).to_bytes(4, "little") * 2 + b"\0" * 64
    t = read(good + huge)
    assert t.n == 3 and len(t.warnings) == 1 and "300000" in t.warnings[0]
    assert f"offset {len(good)}" in t.warnings[0]
    err = error_of(pcap_file([]) + huge)  # before any packet: the file cannot be read at all
    assert err.offset == 24 and "300000" in err.message


def test_pcap_header_only_and_empty() -> None:
    t = read(pcap_file([]))
    assert t.n == 0 and t.packets == 0 and t.warnings == []
    assert "empty" in error_of(b"").message


def test_not_a_capture() -> None:
    err = error_of(b"\x7fELF\x02\x01\x01" + bytes(100))
    assert err.offset == 0 and "not a capture" in err.message


def test_text_goes_to_the_text_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def parse_text_capture(stream: io.BufferedIOBase, source: str, batch_size: int,
                           warnings: Warnings) -> Iterator[PacketBatch]:
        calls.append((stream.read(), source, batch_size))
        yield PacketBatch.empty(3)

    fake = types.ModuleType("whyrst.capture.text")
    fake.parse_text_capture = parse_text_capture  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "whyrst.capture.text", fake)
    text = b"12:00:00.000000 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [R], seq 1, win 0, length 0\n" * 20
    with open_capture(io.BytesIO(text), batch_size=77) as cap:
        batches = list(cap)
    assert cap.format == "tcpdump-text" and cap.packets == 3 and len(batches) == 1
    assert calls == [(text, "<stream>", 77)]
    with open_capture(gzip.compress(text)) as cap:
        list(cap)
    assert cap.format == "tcpdump-text+gzip" and calls[-1][0] == text


def test_text_without_text_parser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "whyrst.capture.text", None)  # import fails
    err = error_of(b"12:00:00.000000 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [R]\n")
    assert "not a capture" in err.message


# -- pcapng ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_interfaces_link_types_and_resolutions(big: bool) -> None:
    pkt4, pkt6 = ether(ip4(tcp(sport=1))), sll(ip6(tcp(sport=2)), 0x86DD)
    data = (shb(big=big) + idb(1, big=big) + idb(113, big=big, tsresol=9) + idb(1, big=big, tsresol=0x80 | 10)
            + idb(1, big=big, tsresol=3, tsoffset=100) + idb(1, big=big, tsresol=0x80 | 30, name="eth9")
            + epb(pkt4, iface=0, ts=1_700_000_000_123_456, big=big)
            + epb(pkt6, iface=1, ts=1_700_000_000_123_456_789, big=big)
            + epb(pkt4, iface=2, ts=(1_700_000_000 << 10) | 512, big=big)
            + epb(pkt4, iface=3, ts=5_500, big=big)
            + epb(pkt4, iface=4, ts=(7 << 30) | (1 << 29), big=big)
            + isb(big=big) + nrb(big=big) + block(0x12345678, b"skip me", big=big))
    t = read(data)
    assert t.format == "pcapng" and t.n == 5 and t.warnings == []
    assert list(t["iface"]) == [0, 1, 2, 3, 4]
    assert list(t["link_type"]) == [1, 113, 1, 1, 1]
    assert list(t["ts_ns"]) == [1_700_000_000_123_456_000, 1_700_000_000_123_456_789, 1_700_000_000_500_000_000,
                                105_500_000_000, 7_500_000_000]
    assert list(t["sport"]) == [1, 2, 1, 1, 1] and list(t["ip_version"]) == [4, 6, 4, 4, 4]
    assert_same(t, read(data, fast=False))
    assert_same(t, read(data, engine="numpy"))


def test_pcapng_sections_in_both_byte_orders() -> None:
    pkt = ether(ip4(tcp()))
    data = (shb() + idb(1) + epb(pkt, ts=1)
            + shb(big=True) + idb(113, big=True) + idb(1, big=True) + epb(pkt, iface=1, ts=2, big=True)
            + epb(sll(ip4(tcp())), iface=0, ts=3, big=True)
            + shb(options=[(3, b"Linux")]) + idb(1, tsresol=9) + epb(pkt, ts=4))
    t = read(data)
    assert t.n == 4 and list(t["iface"]) == [0, 2, 1, 3]  # interface numbers run on across sections
    assert list(t["ts_ns"]) == [1000, 2000, 3000, 4] and (t["kind"] == Kind.TCP).all()
    assert_same(t, read(data, fast=False))
    assert_same(t, read(data, engine="numpy"))


def test_pcapng_simple_and_obsolete_packet_blocks() -> None:
    pkt = ether(ip4(tcp(payload=b"x" * 100)))
    data = shb() + idb(1, snaplen=80) + spb(pkt) + pb(pkt, ts=9) + epb(pkt, ts=10) + spb(pkt[:60], wire_len=len(pkt))
    t = read(data)
    assert t.n == 4 and list(t["frame"]) == [1, 2, 3, 4]
    assert list(t["cap_len"]) == [80, len(pkt), len(pkt), 60]  # SPB: min(original, snaplen, block)
    assert list(t["wire_len"]) == [len(pkt)] * 4
    assert list(t["ts_ns"]) == [0, 9000, 10000, 0]
    assert list(t["payload_len"]) == [100] * 4 and list(t["payload_cap"]) == [26, 100, 100, 6]
    assert_same(t, read(data, fast=False))
    assert_same(t, read(data, engine="numpy"))


def test_pcapng_records_without_packets_count_like_tshark() -> None:
    pkt = ether(ip4(tcp()))
    journal = block(9, b"__REALTIME_TIMESTAMP=1\nMESSAGE=x\n\n")
    custom = block(0xBAD, (32473).to_bytes(4, "little") + b"data")
    data = shb() + idb(1) + epb(pkt) + journal + custom + block(0x0A, bytes(12)) + epb(pkt)
    t = read(data)
    assert t.n == 4 and list(t["kind"]) == [Kind.TCP, Kind.OTHER, Kind.OTHER, Kind.TCP]
    assert t.warnings == []  # not an unsupported link type


def test_pcapng_shb_option_too_long() -> None:
    body = (0x1A2B3C4D).to_bytes(4, "little") + b"\x01\x00\x00\x00" + b"\xff" * 8 + b"\x30\x30\x30\x30" + b"\0" * 8
    err = error_of(block(0x0A0D0D0A, body))
    assert err.offset == 24 and "Not enough data to handle option of length 12336" in err.message


def test_pcapng_idb_option_too_long() -> None:
    body = (1).to_bytes(2, "little") + b"\0\0" + b"\0" * 4 + (9).to_bytes(2, "little") + (64).to_bytes(2, "little")
    err = error_of(shb() + block(1, body + b"\0" * 4))
    assert "option of length 64" in err.message


@pytest.mark.parametrize("length", [8, 30, 1 << 31, 0xFFFFFFFC])
def test_pcapng_bad_block_lengths_before_packets(length: int) -> None:
    err = error_of(shb() + idb(1) + block(6, bytes(40), length=length))
    assert err.offset == len(shb() + idb(1)) + 4


def test_pcapng_lying_block_length_after_packets() -> None:
    good = shb() + idb(1) + epb(ether(ip4(tcp())))
    tracemalloc.start()
    try:
        t = read(good + block(6, bytes(40), length=0x7FFFFFF0))  # claims 2 GiB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert t.n == 1 and len(t.warnings) == 1 and "2147483632" in t.warnings[0]
    assert peak < 64 << 20  # never allocates what the file claims


def test_pcapng_trailing_length_mismatch() -> None:
    good = shb() + idb(1) + epb(ether(ip4(tcp())))
    t = read(good + block(6, bytes(40), trailer=44) + epb(ether(ip4(tcp()))))
    assert t.n == 1 and "ends with length 44" in t.warnings[0]
    err = error_of(block(0x0A0D0D0A, shb()[8:-4], trailer=99))
    assert "ends with length 99" in err.message


def test_pcapng_epb_errors() -> None:
    pkt = ether(ip4(tcp()))
    err = error_of(shb() + idb(1) + epb(pkt, iface=3))
    assert "interface 3" in err.message
    err = error_of(shb() + idb(1) + epb(pkt, caplen=len(pkt) + 40))
    assert "runs past" in err.message
    err = error_of(shb() + spb(pkt))
    assert "before any interface" in err.message
    err = error_of(shb(version=(2, 0)) + idb(1))
    assert "version 2.0" in err.message
    err = error_of(b"\x0a\x0d\x0d\x0a" + (28).to_bytes(4, "little") + b"\x01\x02\x03\x04" + bytes(16))
    assert "byte-order magic" in err.message


def test_pcapng_truncated_mid_block(tmp_path: Path) -> None:
    data = shb() + idb(1) + b"".join(epb(f) for f in frames(3))
    path = tmp_path / "cut.pcapng"
    path.write_bytes(data[:-5])
    t = read(str(path))
    assert t.n == 2 and len(t.warnings) == 1 and str(path) in t.warnings[0] and "offset" in t.warnings[0]


# -- gzip, sources, streaming ---------------------------------------------------------------------


def test_gzip_pcap_and_pcapng() -> None:
    plain = pcap_bytes(7)
    t = read(gzip.compress(plain))
    assert t.format == "pcap+gzip" and t.n == 7
    assert_same(t, read(plain))
    ng = shb() + idb(1) + b"".join(epb(f, ts=i) for i, f in enumerate(frames(4)))
    t = read(gzip.compress(ng))
    assert t.format == "pcapng+gzip" and t.n == 4


def test_gzip_with_both_inflaters(monkeypatch: pytest.MonkeyPatch) -> None:
    """zlib-ng (the ``fast`` extra, which the test set-up installs) inflates, and gives what zlib gives."""
    import zlib

    from whyrst.capture import records

    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng") if records.INFLATE is zlib else records.INFLATE
    assert records.INFLATE is zlib_ng  # the faster one is the one in use when it is installed
    packed, plain = gzip.compress(pcap_bytes(300)), read(pcap_bytes(300))
    for inflater in (zlib_ng, zlib):
        monkeypatch.setattr(records, "INFLATE", inflater)
        assert_same(read(packed), plain)


def test_gzip_damage() -> None:
    packed = gzip.compress(pcap_bytes(200))
    t = read(packed[: len(packed) // 2])  # a gzip file cut in half: what came out is kept
    assert 0 < t.n < 200 and len(t.warnings) == 1 and "gzip" in t.warnings[0]
    assert "gzip" in error_of(b"\x1f\x8b\x08\x00" + bytes(6) + b"garbage!").message
    assert "empty" in error_of(gzip.compress(b"")).message


def test_sources_path_pathlike_bytes_stream(tmp_path: Path) -> None:
    data = pcap_bytes(3)
    path = tmp_path / "a.pcap"
    path.write_bytes(data)
    for source in (str(path), path, data, io.BytesIO(data)):
        with open_capture(source) as cap:
            n = sum(b.n for b in cap)
        assert n == 3 and cap.packets == 3
    with open_capture(path) as cap:
        assert cap.source == str(path)
        list(cap)
        assert cap.bytes_read == len(data)
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path / "missing.pcap")
    with pytest.raises(CaptureError, match="cannot open"):
        open_capture(tmp_path)


def test_capture_closes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_bytes(2))
    cap = open_capture(path)
    f = cap._owned
    assert f is not None and not f.closed
    with cap:
        pass
    assert f.closed
    cap.close()  # twice is fine


def test_stdin_dash_subprocess() -> None:
    code = ("from whyrst.capture import open_capture\n"
            "with open_capture('-') as c:\n"
            "    n = sum(b.n for b in c)\n"
            "print(c.source, c.format, c.packets, n)\n")
    out = subprocess.run([sys.executable, "-c", code], input=gzip.compress(pcap_bytes(6)), capture_output=True,
                         timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().split() == ["<stdin>", "pcap+gzip", "6", "6"]


def test_stdin_dash_monkeypatched(monkeypatch: pytest.MonkeyPatch) -> None:
    data = shb() + idb(1) + epb(ether(ip4(tcp())))
    monkeypatch.setattr(sys, "stdin", types.SimpleNamespace(buffer=io.BytesIO(data)))
    t = read("-")
    assert t.n == 1 and t.format == "pcapng"


def test_live_pipe_is_read_as_it_arrives() -> None:
    """A pipe that stays open: the first packets come out before the writer is done."""
    r, w = os.pipe()
    data = pcap_bytes(4)
    go_on = threading.Event()

    def writer() -> None:
        os.write(w, data)
        go_on.wait(20)
        os.write(w, pcap_bytes(3)[24:])
        os.close(w)

    th = threading.Thread(target=writer)
    th.start()
    try:
        with os.fdopen(r, "rb") as f, open_capture(f) as cap:
            it = iter(cap)
            first = next(it)
            assert first.n == 4
            go_on.set()
            rest = sum(b.n for b in it)
        assert rest == 3 and cap.packets == 7
    finally:
        go_on.set()
        th.join()


# -- batches and chunk seams ----------------------------------------------------------------------


def test_batches_and_frame_numbers() -> None:
    data = pcap_bytes(10)
    with open_capture(data, batch_size=3) as cap:
        batches = list(cap)
    assert [b.n for b in batches] == [3, 3, 3, 1]
    assert np.concatenate([b.frame for b in batches]).tolist() == list(range(1, 11))


@pytest.mark.parametrize("chunk", [1, 7, 64, 333])
def test_chunk_seams(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    pcap = pcap_bytes(12)
    ng = (shb() + idb(1) + b"".join(epb(f, ts=i) for i, f in enumerate(frames(6))) + isb()
          + b"".join(epb(f, ts=i) for i, f in enumerate(frames(6, 6))))
    want = [read(pcap), read(ng)]
    monkeypatch.setattr(rec, "CHUNK_SIZE", chunk)
    monkeypatch.setattr(rec, "HEADERS_CHUNK_SIZE", chunk)
    for data, expect in zip((pcap, ng), want, strict=True):
        for engine in ENGINES:
            for batch_size in (5, 65536):
                got = read(data, engine=engine, batch_size=batch_size)
                assert_same(got, expect, ignore=("payload_off",))  # offsets into other buffers
                assert got.warnings == []
                # headers only: batches across chunks, no payload bytes
                headers = read(data, engine=engine, batch_size=batch_size, payloads=False)
                assert_same(headers, expect, ignore=("payload_off", "payload_cap", "payloads"))
                assert all(p == b"" for p in headers.payloads)
                assert headers.warnings == []


def test_payload_offsets_point_into_batch_data() -> None:
    data = pcap_bytes(5)
    with open_capture(data) as cap:
        for b in cap:
            for i in range(b.n):
                assert b.payload(i) == b"p" * (i % 5)


def test_capture_attributes() -> None:
    w = Warnings()
    cap = Capture(pcap_bytes(2), warnings=w)
    assert cap.source == "<bytes>" and cap.format == "pcap" and cap.packets == 0 and cap.warnings is w
    assert sum(b.n for b in cap) == 2 and cap.packets == 2
    assert list(cap) == []  # one pass only
    assert "pcap" in repr(cap)


def test_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    data = pcap_bytes(3)
    assert Capture(data, engine="numpy").engine == "numpy"
    with pytest.raises(ValueError):
        Capture(data, engine="fortran")
    monkeypatch.setattr(fast_mod, "available", lambda: False)  # as without numba
    cap = Capture(data)
    assert cap.engine == "numpy" and sum(b.n for b in cap) == 3
    with pytest.raises(ValueError, match="numba"):
        Capture(data, engine="numba")


# -- fuzzing the file layer: damage gives a CaptureError or warnings, never anything else -------------

_NG = (shb() + idb(1, tsresol=9) + idb(113) + epb(frames(1)[0], ts=5) + spb(frames(1)[0]) + isb()
       + epb(sll(ip6(tcp())), iface=1) + pb(frames(1)[0]) + shb(big=True) + idb(1, big=True)
       + epb(frames(1)[0], big=True))
_PCAP = pcap_bytes(6)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([_NG, _PCAP, gzip.compress(_PCAP)]),
       st.lists(st.tuples(st.integers(0, 800), st.integers(0, 255)), max_size=6), st.integers(0, 900))
def test_fuzz_damaged_files(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for at, value in flips:
        if at < len(data):
            data[at] = value
    data = data[: len(data) - cut % (len(data) + 1)]
    results = []
    for engine in ENGINES:
        try:
            t = read(bytes(data), engine=engine, batch_size=4)
        except CaptureError as e:
            assert "\n" not in str(e)
            results.append(str(e))
            continue
        assert t.n == t.packets and list(t["frame"]) == list(range(1, t.n + 1))
        results.append(t)
    first = results[0]
    for other in results[1:]:
        if isinstance(first, str) or isinstance(other, str):
            assert first == other
        else:
            assert_same(first, other)
            assert first.warnings == other.warnings


def test_prefetch_thread() -> None:
    data = pcap_bytes(50)
    plain = read(data, batch_size=7)
    with open_capture(io.BytesIO(data), batch_size=7, prefetch=2) as cap:
        got = list(cap)
    assert cap.packets == 50 and [b.n for b in got] == [7] * 7 + [1]
    assert np.concatenate([b.seq for b in got]).tolist() == plain["seq"].tolist()
    # an error found by the reader thread reaches the consumer
    huge = b"\0" * 8 + (300_000).to_bytes(4, "little") * 2
    w = Warnings()
    with open_capture(io.BytesIO(data + huge), batch_size=7, prefetch=1, warnings=w) as cap:
        assert sum(b.n for b in cap) == 50
    assert len(w.messages) == 1 and "300000" in w.messages[0]
    # stopping early does not leave the reader thread stuck
    with open_capture(io.BytesIO(data), batch_size=1, prefetch=1) as cap:
        for _ in cap:
            break
    assert not any(t.name == "whyrst-capture-reader" and t.is_alive() for t in threading.enumerate())

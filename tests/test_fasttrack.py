"""The compiled tracker (whyrst.tcp.fasttrack) against the Python Tracker, object for object: every field of
every connection that had a RST (its endpoints, fingerprints, head, ring, history, timers) and of every
reset context (the packets before and after it, both states), on the corpus and on generated captures that
reach the hard cases: sequence numbers across 2^32, missing handshakes, one direction missing, tuple
reuse, expiry by the timers, role flips, out-of-order data, long histories, half-open eviction, the sweep
of a table of thousands, eviction from a full table, batches cut anywhere (the PacketRefs kept from one
batch for the next), every table grown from its smallest size."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import manifest

from whyrst import synth
from whyrst.capture import fast, open_capture
from whyrst.capture.batch import PacketBatch
from whyrst.errors import CaptureError, Warnings
from whyrst.synth import ACK, FIN, PSH, RST, SYN, Capture, Flow, Host
from whyrst.tcp.state import EP, Segment, transition
from whyrst.tcp.track import Connection, Endpoint, Fingerprint, PacketRef, ResetContext, Tracker

pytestmark = pytest.mark.skipif(not fast.available(), reason="numba is not installed")

ROWS = [r for r in manifest() if r["opens_cleanly"].startswith("yes")]


# -- every field ------------------------------------------------------------------------------------------

def _ref(p: PacketRef) -> tuple[Any, ...]:
    return (p.frame, p.ts_ns, p.from_orig, type(p.from_orig), p.flags, p.seq, p.ack, p.rel_seq, p.rel_ack,
            p.payload_len, p.win, p.ttl, p.ip_id, p.ts_val, p.ts_ecr, p.opt_mask, p.payload)


def _fp(f: Fingerprint | None) -> dict[str, Any] | None:
    if f is None:
        return None
    d = {name: getattr(f, name) for name in Fingerprint.__slots__}
    d["ttls"], d["usual"] = list(f.ttls.items()), f.usual_ttl()
    return d


def _ep(e: Endpoint) -> dict[str, Any]:
    d = {name: getattr(e, name) for name in Endpoint.__slots__ if name != "_fp"}
    d["_fp"] = _fp(e._fp)
    d["state"], d["prev_state"] = repr(e.state), repr(e.prev_state)  # (EP members, not bare ints)
    d["blocks"] = repr(e.blocks)
    return d


def _ctx(x: ResetContext) -> dict[str, Any]:
    return {"rst": _ref(x.rst), "index": x.index_in_conn, "states": (repr(x.sender_state), repr(x.peer_state)),
            "before": [_ref(p) for p in x.before], "elided": x.elided, "after": [_ref(p) for p in x.after],
            "names": (x.src, x.sport, x.dst, x.dport, x.sender_is_orig), "payload": x.payload,
            "mptcp": x.mptcp_subtype, "checksum": x.checksum_ok, "conn": x.conn.uid}


def _conn(c: Connection) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for name in Connection.__slots__:
        if name == "_uid":  # (made when first read: compared as uid)
            continue
        v = getattr(c, name)
        if name in ("orig", "resp"):
            v = _ep(v)
        elif name == "head":
            v = [_ref(p) for p in v]
        elif name == "ring":
            v = None if v is None else ([_ref(p) for p in v], v.maxlen)
        elif name == "resets":
            v = [_ctx(x) for x in v]
        elif name == "prev":
            v = None if v is None else v.uid
        d[name] = v
    d["uid"], d["state"], d["record"] = c.uid, c.state, c.zeek_record()
    return d


def _cut(batches: Iterable[PacketBatch], seed: int | None) -> Iterator[PacketBatch]:
    """The batches as they are (None), or cut into pieces of 1 to 40 rows."""
    rng = random.Random(seed)
    for b in batches:
        if seed is None:
            yield b
            continue
        i = 0
        while i < b.n:
            j = min(b.n, i + rng.randint(1, 40))
            yield b.rows(i, j)
            i = j


def _run_python(batches: Iterable[PacketBatch], **limits: int) -> tuple[list[Connection], Tracker]:
    done: list[Connection] = []
    t = Tracker(done.append, source_tag=b"test", **limits)
    for b in batches:
        t.feed(b)
    t.close()
    return [c for c in done if c.resets], t


def _run_compiled(batches: Iterable[PacketBatch], capacity: int = 1024, **limits: int) -> tuple[list[Connection], Any]:
    from whyrst.tcp.fasttrack import CompiledTracker

    done: list[Connection] = []
    t = CompiledTracker(done.append, source_tag=b"test", capacity=capacity, **limits)
    for b in batches:
        t.feed(b)
    t.close()
    return done, t


def same(make: Callable[[], list[PacketBatch]], cuts: tuple[int | None, ...] = (None, 1), **limits: int) -> int:
    """Both trackers on the batches, whole and cut; the number of connections with RSTs compared."""
    want, py = _run_python(make(), **limits)
    expected = [_conn(c) for c in want]
    for seed in cuts:
        for capacity in (1024, 2):
            got, ct = _run_compiled(_cut(make(), seed), capacity=capacity, **limits)
            assert (ct.evicted, ct.evicted_half_open, ct.tcp_packets) == (py.evicted, py.evicted_half_open,
                                                                          py.tcp_packets)
            assert ct.eviction_note() == py.eviction_note()
            assert len(got) == len(want), (seed, capacity)
            for g, w in zip((_conn(c) for c in got), expected, strict=True):
                assert g == w, (seed, capacity, w["uid"], next(k for k in w if g[k] != w[k]))
    return len(want)


def _read(path: Path) -> list[PacketBatch]:
    with open_capture(str(path), warnings=Warnings()) as cap:
        return list(cap)


def _write(cap: Capture, tmp_path: Path, name: str = "t.pcap") -> Path:
    path = tmp_path / name
    with open(path, "wb") as out:
        cap.write_pcap(out)
    return path


# -- the state machine ------------------------------------------------------------------------------------

def test_step_is_the_transition_table() -> None:
    from whyrst.tcp._track_kernels import step

    for bits in range(64):
        syn, ack, fin, rst, payload, is_orig = (bool(bits >> k & 1) for k in range(6))
        for me in EP:
            for peer in EP:
                want = transition(Segment(syn, ack, fin, rst, int(payload), is_orig), me, peer)
                got = step.py_func(syn, ack, fin, rst, payload, is_orig, int(me), int(peer))
                assert got == (want.me, want.peer, want.close, want.flip, want.revive_peer), (bits, me, peer)


# -- captures ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus(row: dict[str, str], corpus: Path) -> None:
    try:
        batches = _read(corpus / "pcaps" / row["file"])
    except CaptureError:
        pytest.skip("does not open")
    same(lambda: batches, cuts=(None, 7))


def _hard_cases() -> Capture:
    cap = Capture(rng=random.Random(7))
    c, s, c6, s6 = Host("198.18.0.2"), Host("198.19.0.2", ttl=57), Host("2001:db8::2"), Host("2001:db8:1::80")
    t = 0.0

    def flow(cport: int, sport: int = 80, client: Host = c, server: Host = s, **kw: int) -> Flow:
        nonlocal t
        t += 0.5
        return Flow(cap, client, server, cport, sport, t=t, **kw)

    # sequence numbers across 2^32, both sides, then a RST from each side
    f = flow(40001, cseq=2**32 - 300, sseq=2**32 - 10)
    f.handshake()
    for _ in range(4):
        f.request(b"x" * 100)
        f.response(b"y" * 100)
    f.send(True, RST | ACK, dt=0.01)
    f.send(False, RST, dt=0.01)
    # no handshake: data, then a RST (partial), and midstream from the server's port (a flip by port)
    f = flow(40002)
    f.request()
    f.response()
    f.send(False, RST | ACK, dt=0.1)
    f = flow(40003)
    f.send(False, PSH | ACK, b"midstream", dt=0.01)
    f.send(True, RST, dt=0.01)
    # one direction only
    f = flow(40004)
    f.send(True, SYN)
    f.sseq = 12345
    f.send(True, ACK, dt=0.001)
    f.send(True, PSH | ACK, b"hello", dt=0.001)
    f.send(True, RST | ACK, dt=0.001)
    # the SYN-ACK first (a flip), then a RST
    f = flow(40005)
    f.send(False, SYN | ACK)
    f.send(True, RST, dt=0.001)
    # roles reversed: a bare SYN answering a SYN-ACK
    f = flow(40006, sport=50000)
    f.send(True, SYN | ACK)
    f.send(False, SYN, dt=0.001)
    f.send(True, RST, dt=0.001)
    # tuple reuse: after a RST, a new SYN with a new number; a SYN retransmitted (the same number: no reuse)
    f = flow(40007)
    f.handshake()
    f.send(True, RST | ACK, dt=0.1)
    f2 = Flow(cap, c, s, 40007, 80, t=f.t + 1.0)
    f2.send(True, SYN)
    f2.send(True, SYN, dt=1.0, seq=f2.cseq - 1)
    f2.send(False, RST | ACK, dt=0.001, ack=f2.cseq)
    f2.cseq = (f2.cseq + 777) & 0xFFFFFFFF
    f2.send(True, SYN, dt=0.5)  # a different number in SYN_SENT: reuse
    f2.send(False, RST | ACK, dt=0.001)
    # expiry: an established connection idle past the inactivity timeout, a SYN past the attempt timer,
    # a closed one past the close delay
    f = flow(40008)
    f.handshake()
    f.send(True, PSH | ACK, b"a", dt=0.01)
    f.send(True, PSH | ACK, b"b", dt=301.0)
    f.send(False, RST, dt=0.01)
    f = flow(40009)
    f.send(True, SYN)
    f.send(False, RST | ACK, dt=6.0)
    f = flow(40010)
    f.handshake()
    f.close()
    f.send(True, RST, dt=6.0)
    f = flow(40011)
    f.handshake()
    f.send(True, FIN | ACK, dt=0.01)
    f.send(False, ACK, dt=0.01)
    f.send(False, PSH | ACK, b"late", dt=7.0)
    f.send(True, RST, dt=0.01)
    # out-of-order data, a hole acknowledged (a gap), retransmissions, zero windows, a RST with a payload
    f = flow(40012)
    f.handshake()
    base = f.cseq
    for k in (3, 1, 5, 0, 7):
        f.send(True, PSH | ACK, b"z" * 10, seq=base + 10 * k, advance=False, dt=0.001)
    f.send(False, ACK, ack=base + 90, dt=0.001)
    f.send(True, PSH | ACK, b"z" * 10, seq=base, advance=False, dt=0.001)
    f.send(False, ACK, win=0, dt=0.001)
    f.send(False, ACK, win=0, dt=0.001)
    f.send(False, RST | ACK, b"connection reset: " + b"!" * 600, dt=0.001)
    # FIN+RST and SYN+FIN (history I and Q), and RSTs with ever new numbers (a long history)
    f = flow(40013)
    f.handshake()
    f.send(True, FIN | RST | ACK, dt=0.01)
    f.send(True, SYN | FIN, dt=0.01)
    for k in range(60):
        f.send(False, RST, seq=f.sseq + 1000 * k, dt=0.001)
    # many packets (the ring, elided packets), RSTs among them, and packets after a RST: eight, then 30 s later
    f = flow(40014, client=c6, server=s6)
    f.handshake()
    for k in range(40):
        f.request(b"q" * (k + 1), dt=0.001)
        if k in (20, 31):
            f.send(False, RST, dt=0.001)
    for _ in range(10):
        f.send(True, ACK, dt=0.001)
    f.send(False, RST, dt=0.001)
    f.send(True, ACK, dt=31.0)
    # IPv6 and IPv4-mapped names
    f = flow(40015, client=Host("::ffff:198.18.0.9"), server=s6)
    f.send(True, SYN)
    f.send(False, RST | ACK, dt=0.001)
    return cap


def test_hard_cases(tmp_path: Path) -> None:
    path = _write(_hard_cases(), tmp_path)
    batches = _read(path)
    assert same(lambda: batches, cuts=(None, 1, 2, 3)) >= 15


@pytest.mark.parametrize(("mix", "packets"), [("short", 30_000), ("bulk", 20_000)])
def test_bench(tmp_path: Path, mix: str, packets: int) -> None:
    path = tmp_path / "b.pcap"
    synth.write_bench(str(path), packets, 800, 5, False, mix=mix)
    batches = _read(path)
    assert same(lambda: batches, cuts=(None, 11)) > 20


def test_flood_sweep_and_half_open_eviction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Thousands open at once over seconds (the table's sweep), past a small half-open bound (eviction)."""
    path = tmp_path / "f.pcap"
    synth.write_synflood(str(path), 60_000, rate=5000.0, rst_share=0.3)
    batches = _read(path)
    assert same(lambda: batches, cuts=(None,)) > 100
    assert same(lambda: batches, cuts=(None,), max_half_open=2000) > 100
    sweeps = []
    real_sweep = Tracker._sweep

    def sweep(self: Tracker) -> None:
        sweeps.append(len(self.conns))
        real_sweep(self)

    monkeypatch.setattr(Tracker, "_sweep", sweep)
    _, py = _run_python(batches, max_half_open=2000)
    assert py.evicted_half_open > 0 and max(sweeps) >= 4096  # (the cases are reached)


def test_full_table_evicts_the_same_connections(tmp_path: Path) -> None:
    """Past max_connections open at once the oldest-idle tenth is evicted: the same ones, batches cut or not."""
    from whyrst.tcp.fasttrack import track_rst_flows

    path = tmp_path / "b.pcap"
    synth.write_bench(str(path), 20_000, 800, 3, False, mix="short")
    batches = _read(path)
    assert same(lambda: batches, cuts=(None, 5), max_connections=100) > 20
    want, py = _run_python(batches, max_connections=100)
    assert py.evicted > 100 and "evicted" in py.eviction_note()
    for compiled in (True, False):
        tracked = track_rst_flows(iter(batches), source_tag=b"test", compiled=compiled, max_connections=100)
        assert tracked.compiled == compiled
        assert [_conn(c) for c in tracked.reset_conns] == [_conn(c) for c in want]
        assert (tracked.evicted, tracked.eviction_note) == (py.evicted, py.eviction_note())


def test_analysis_with_either_tracker(tmp_path: Path) -> None:
    from whyrst.analysis import analyze

    path = tmp_path / "b.pcap"
    synth.write_bench(str(path), 20_000, 800, 4, False, mix="short")
    want = [r.to_json() for r in analyze(str(path), two_pass=True, engine="numba", compiled_tracker=False).resets]
    got = [r.to_json() for r in analyze(str(path), two_pass=True, engine="numba", compiled_tracker=True).resets]
    assert got == want and len(want) > 10


def test_address_text_matches() -> None:
    """The compiled tracker prints IPv6 addresses with inet_ntop: what ipaddress prints."""
    from whyrst.capture.batch import address_text
    from whyrst.tcp.fasttrack import CompiledTracker

    t = CompiledTracker(lambda c: None)
    rng = np.random.default_rng(3)
    for _ in range(20_000):
        words = rng.choice([0, 0, 0, 1, 0xFFFF, int(rng.integers(65536))], size=8)
        raw = b"".join(int(w).to_bytes(2, "big") for w in words)
        assert t._address_text(raw, 6) == address_text(raw, 6)
    assert t._address_text(bytes(10) + b"\xff\xff" + bytes([198, 18, 0, 9]), 6) == "::ffff:c612:9"

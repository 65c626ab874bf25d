"""Sequence-space edge cases through the whole analysis: wrap-around in mid-connection (beyond the tracker
tests in test_track.py), RSTs outside or inside the receiver's window but not exact (blind injection, a RST
the receiver ignores, the RFC 5961 challenge ACK), a tuple reused quickly, and captures that hold nothing
but RSTs."""

from __future__ import annotations

import io

import whyrst
from whyrst.analysis import Report
from whyrst.pipeline import track_capture
from whyrst.synth import ACK, PSH, RST, SYN, Capture, Flow, Host


def analyze(cap: Capture) -> Report:
    buf = io.BytesIO()
    cap.write_pcap(buf)
    return whyrst.analyze(io.BytesIO(buf.getvalue()))


def conn_rows(cap: Capture, tmp_path: object) -> list[dict]:
    path = f"{tmp_path}/c.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    rows: list[dict] = []
    track_capture(path, lambda c: rows.append(c.zeek_record()))
    return sorted(rows, key=lambda r: r["ts"])


def hosts() -> tuple[Host, Host]:
    # IP ID counters far apart, so that no RST copies the peer's ID by accident
    return Host("198.18.0.2", ip_id=20000), Host("198.19.0.2", ip_id=40000)


def talk(f: Flow, rounds: int = 1) -> None:
    for _ in range(rounds):
        f.request(b"x" * 100)
        f.response(b"y" * 100)


def test_abortive_close_after_both_directions_wrapped() -> None:
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40005, 80, cseq=2**32 - 150, sseq=2**32 - 50)
    f.handshake()
    talk(f, 3)  # both sequence spaces cross 2^32
    f.send(False, RST | ACK, dt=0.5)
    (r,) = analyze(cap).resets
    assert (r.seq, r.ack) == (301, 301)
    assert r.cause == "abortive-close" and r.sender == "endpoint"
    assert not any("window" in e for e in r.evidence)


def test_rst_that_wraps_inside_the_window_is_in_window_not_exact() -> None:
    """The receiver expects 2^32 - 10; a RST at 90 (past the wrap, 100 bytes on) is inside the window."""
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40010, 443, sseq=2**32 - 11)
    f.handshake()  # the server's next sequence number is now 2^32 - 10
    f.request()
    f.send(False, RST, seq=90, options=b"", dt=0.01)
    f.send(True, ACK, dt=0.0001)  # the challenge ACK
    f.response(dt=0.05)
    f.request()
    (r,) = analyze(cap).resets
    assert r.cause == "injected"
    text = " ".join(r.evidence)
    assert "inside the receiver's window but +100" in text
    assert "challenge ACK of RFC 5961" in text
    assert "did not end the connection" in text


def test_blind_rst_outside_the_window_is_injected_and_ignored(tmp_path: object) -> None:
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40000, 443)
    f.handshake()
    talk(f)
    f.send(False, RST, seq=(f.sseq + 2**31) & 0xFFFFFFFF, options=b"", dt=0.01)
    talk(f)  # the connection goes on: the receiver dropped the RST
    f.close()
    (r,) = analyze(cap).resets
    assert r.cause == "injected" and r.sender == "injector"
    text = " ".join(r.evidence)
    assert "outside its 64256-byte window" in text  # win 502, window scale 7
    assert "did not end the connection" in text
    (row,) = conn_rows(cap, tmp_path)
    assert row["orig_pkts"] == 8 and row["resp_pkts"] == 7  # one connection to the end, the RST included


def test_rst_ten_megabytes_ahead_outranks_the_endpoint_causes() -> None:
    """An RST,ACK 10 MB past the window looks like an abortive close except for its sequence number."""
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40001, 443)
    f.handshake()
    talk(f)
    f.send(False, RST | ACK, seq=(f.sseq + 10_000_000) & 0xFFFFFFFF, options=b"", dt=0.01)
    talk(f)
    (r,) = analyze(cap).resets
    assert r.cause == "injected"
    assert any("+10000000 from the receiver's next expected one" in e for e in r.evidence)
    alternatives = dict((a.cause, a.confidence) for a in r.alternatives)
    assert alternatives.get("abortive-close", 0) < r.confidence


def test_stale_rst_from_before_the_wrap() -> None:
    """Both sides wrapped; a RST 3 MB behind (before the wrap) is out of the window, not a reset."""
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40006, 80, cseq=2**32 - 150, sseq=2**32 - 50)
    f.handshake()
    talk(f, 3)
    f.send(False, RST, seq=(f.sseq - 3_000_000) & 0xFFFFFFFF, options=b"", dt=0.01)
    talk(f)
    (r,) = analyze(cap).resets
    assert r.cause == "injected"
    assert any("-3000000 from the receiver's next expected one" in e for e in r.evidence)


def test_exact_rst_has_no_window_remark() -> None:
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40020, 80)
    f.handshake()
    talk(f)
    f.send(True, RST | ACK, dt=2.0)
    (r,) = analyze(cap).resets
    assert r.cause != "injected"
    assert not any("window" in e for e in r.evidence)


def test_tuple_reused_half_a_second_after_a_clean_close(tmp_path: object) -> None:
    cap = Capture()
    c, s = hosts()
    first = Flow(cap, c, s, 40007, 80)
    first.handshake()
    talk(first)
    first.close(client_first=False)
    second = Flow(cap, c, s, 40007, 80, t=first.t + 0.5)
    second.handshake()
    talk(second)
    second.send(False, RST | ACK, dt=0.1)
    rows = conn_rows(cap, tmp_path)
    assert [r["conn_state"] for r in rows] == ["SF", "RSTR"]
    assert rows[0]["uid"] != rows[1]["uid"]
    report = analyze(cap)
    assert report.connections == 2
    (r,) = report.resets
    assert r.cause == "abortive-close" and (r.seq, r.ack) == (101, 101)  # numbered from the second SYN


def test_tuple_reused_while_the_old_connection_is_open() -> None:
    """A new SYN on a tuple whose connection never closed: the server answers the old connection's ACK,
    the client resets it (syn-existing-tuple), and the later handshake is a connection of its own."""
    cap = Capture()
    c, s = hosts()
    old = Flow(cap, c, s, 40030, 80)
    old.handshake()
    talk(old)
    new = Flow(cap, c, s, 40030, 80, t=old.t + 30.0)
    new.send(True, SYN)
    new.send(False, ACK, seq=old.sseq, ack=old.cseq, dt=0.0002)  # the old connection's ACK (challenge)
    new.send(True, RST, seq=old.cseq, options=b"", dt=0.0001)
    new.send(True, SYN, dt=1.0)
    new.send(False, SYN | ACK, dt=0.0002)
    report = analyze(cap)
    (r,) = report.resets
    assert r.cause == "syn-existing-tuple"
    assert report.connections >= 2


def test_capture_of_nothing_but_rsts() -> None:
    """Both directions missing except the RSTs: every RST is explained from the RST alone."""
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40003, 80)
    f.send(False, RST | ACK, dt=1)
    f.send(True, RST, dt=1)
    g = Flow(cap, Host("198.18.0.3", ip_id=7), s, 40004, 22, t=5)
    g.send(False, RST, dt=1)
    h = Flow(cap, Host("2001:db8::5", ip_id=9), Host("2001:db8::6"), 50000, 443, t=9)
    h.send(False, RST | ACK | PSH, b"connection reset by policy", dt=1)
    report = analyze(cap)
    assert report.packets == 4 and len(report.resets) == 4 and report.connections == 3
    for r in report.resets:
        assert r.cause in ("unknown", "half-open", "injected", "closed-port", "firewall-reject")
        assert r.evidence and r.fix is not None
    assert "rests on the RST alone" in " ".join(report.resets[0].evidence)
    assert report.resets[3].payload_text


def test_rsts_only_with_sequence_numbers_all_over_the_space() -> None:
    """A burst of bare RSTs with sequence numbers spread over 2^32 (a blind injector sweeping the space)."""
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40040, 443)
    f.handshake()
    talk(f)
    for k in range(8):
        f.send(False, RST, seq=(f.sseq + k * 2**29 + 12345) & 0xFFFFFFFF, options=b"", ttl=40, dt=0.0001)
    talk(f)
    report = analyze(cap)
    assert len(report.resets) == 8
    assert all(r.cause == "injected" for r in report.resets)
    assert any("Several RSTs with different sequence numbers" in e for r in report.resets for e in r.evidence)

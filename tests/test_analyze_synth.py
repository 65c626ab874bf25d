"""The catalog on synthetic conversations made the way each cause makes them (whyrst.synth)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import jsonschema
import pytest

import whyrst
from whyrst import synth
from whyrst.analysis import Report

SCHEMA = json.loads((Path(whyrst.__file__).parent / "report" / "analyze.schema.json").read_text())


def analyze_scenario(name: str, tmp_path: Path) -> Report:
    cap = synth.Capture()
    synth.normal(cap, 0.0, 30000)
    synth.SCENARIOS[name](cap, 1.0, 40000)
    path = tmp_path / f"{name}.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    return whyrst.analyze(str(path))


FIRST = {
    "closed-port": "closed-port",
    "abortive-close": "abortive-close",
    "unread-data-close": "unread-data-close",
    "connect-then-close": "connect-then-close",
    "listen-close-queued": "listen-close-queued",
    "syn-existing-tuple": "syn-existing-tuple",
    "data-after-close": "data-after-close",
    "keepalive-timeout": "keepalive-timeout",
    "injected": "injected",
    "firewall-reject": "firewall-reject",
}


@pytest.mark.parametrize("name", sorted(FIRST))
def test_scenario_first_reset_named(name: str, tmp_path: Path) -> None:
    report = analyze_scenario(name, tmp_path)
    assert report.resets, "no reset found"
    first = report.resets[0]
    assert first.cause == FIRST[name], [(r.frame, r.cause, [a.cause for a in r.alternatives]) for r in report.resets]
    assert first.evidence and f"frame {first.frame}" in first.evidence[0]
    assert 0 < first.confidence <= 1


def test_demo_json_validates_against_schema(tmp_path: Path) -> None:
    path = tmp_path / "demo.pcap"
    with open(path, "wb") as out:
        synth.demo().write_pcap(out)
    doc = whyrst.analyze(str(path)).to_json()
    jsonschema.validate(doc, SCHEMA)
    assert len({r["cause"] for r in doc["resets"]}) >= 8


def test_dataframe_export(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    path = tmp_path / "demo.pcap"
    buf = io.BytesIO()
    synth.demo().write_pcap(buf)
    path.write_bytes(buf.getvalue())
    df = whyrst.analyze(str(path)).to_dataframe()
    assert {"frame", "cause", "confidence", "source"} <= set(df.columns)
    assert len(df) > 5


def _refusal_around_sessions(tmp_path: Path, close_first: bool) -> Report:
    """A client's connection to port 80 is served; a second SYN is refused (RST,ACK seq 0) while the first
    is still open, or after the server closed it; then the port answers a SYN again."""
    from whyrst.capture.batch import ACK, RST, SYN

    cap = synth.Capture()
    c, s = synth._hosts()
    first = synth.Flow(cap, c, s, 41000, 80, t=0.0)
    first.handshake()
    first.request()
    first.response()
    if close_first:
        first.close(client_first=False)
    refused = synth.Flow(cap, c, s, 41001, 80, t=first.t + 0.05)
    refused.send(True, SYN)
    refused.send(False, RST | ACK, seq=0, ack=refused.cseq, win=0, options=b"", ip_id=0, dt=0.0002)
    if not close_first:
        first.t = refused.t + 0.2
        first.close()
    later = synth.Flow(cap, c, s, 41002, 80, t=refused.t + 0.5)
    later.handshake()
    later.close()
    path = tmp_path / "refusal.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    report = whyrst.analyze(str(path))
    assert [r.frame for r in report.resets] == [r.frame for r in report.resets if r.sport == 80]
    assert len(report.resets) == 1
    return report


def test_refusal_while_the_port_serves_is_a_filter(tmp_path: Path) -> None:
    (r,) = _refusal_around_sessions(tmp_path, close_first=False).resets
    assert r.cause == "firewall-reject" and r.alternatives[0].cause == "closed-port", r
    assert any("a socket listens there" in e for e in r.evidence)


def test_refusal_between_sessions_is_a_listener_gone_for_a_moment(tmp_path: Path) -> None:
    (r,) = _refusal_around_sessions(tmp_path, close_first=True).resets
    assert r.cause == "closed-port", r
    assert any("gone for a moment" in e for e in r.evidence)


def test_nat_remapping_is_one_stream_under_two_tuples(tmp_path: Path) -> None:
    """Seen at the server: a NATed client idles 40 s, its NAT forgets the mapping and sends its next request
    from a new port (mid-stream, the old sequence numbers); the server resets the unknown tuple; later the
    server's FIN on the old tuple is reset by the NAT box itself (TTL one hop closer)."""
    from whyrst.capture.batch import ACK, FIN, PSH, RST

    cap = synth.Capture()
    nat, server = synth.Host("198.18.7.1", ttl=63), synth.Host("198.19.7.2", ttl=64)
    synth.normal(cap, 0.0, 30000)
    old = synth.Flow(cap, nat, server, 40000, 8443, t=1.0)
    old.handshake()
    old.request()
    old.response()
    new = synth.Flow(cap, nat, server, 52001, 8443, cseq=old.cseq, sseq=old.sseq, t=old.t + 40.0)
    new.send(True, PSH | ACK, b"next request\n")
    new.send(False, RST, seq=new.sseq, win=0, options=b"", ip_id=0, dt=0.00005)
    old.t = new.t + 0.5
    old.send(False, FIN | ACK)
    old.send(True, RST, seq=old.cseq, win=0, ttl=64, options=b"", ip_id=0, dt=0.00005)
    path = tmp_path / "nat.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    report = whyrst.analyze(str(path))
    assert [(r.sport, r.cause) for r in report.resets] == [(8443, "nat-expired"), (40000, "nat-expired")], [
        (r.frame, r.cause, [a.cause for a in r.alternatives]) for r in report.resets]
    for r in report.resets:
        assert any("one byte stream under two tuples" in e for e in r.evidence), r.evidence
    # the same verdicts from the slow reference path (every packet through the tracker)
    assert [r.to_json() for r in whyrst.analyze(str(path), two_pass=False).resets] == [
        r.to_json() for r in report.resets]

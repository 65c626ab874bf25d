"""Connection tracking on the hard cases: sequence wrap, missing handshake, one direction missing,
5-tuple reuse."""

from __future__ import annotations

from pathlib import Path

from whyrst import synth
from whyrst.pipeline import track_capture
from whyrst.synth import ACK, FIN, PSH, RST, SYN, Capture, Flow, Host


def conns(cap: Capture, tmp_path: Path) -> list[dict]:
    path = tmp_path / "t.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    rows: list[dict] = []
    track_capture(str(path), lambda c: rows.append(c.zeek_record()))
    return sorted(rows, key=lambda r: r["ts"])


def hosts() -> tuple[Host, Host]:
    return Host("198.18.0.2"), Host("198.19.0.2")


def test_sequence_wrap_mid_connection(tmp_path: Path) -> None:
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40000, 80, cseq=2**32 - 300, sseq=2**32 - 10)
    f.handshake()
    for _ in range(5):
        f.request(b"x" * 100)  # crosses the wrap after the third request
        f.response(b"y" * 100)  # the server's space wraps at once
    f.close()
    (row,) = conns(cap, tmp_path)
    assert row["conn_state"] == "SF"
    assert row["history"] == "ShADadFf"  # no retransmission (T) or gap (G) invented by the wrap
    assert row["orig_bytes"] == 500 and row["resp_bytes"] == 500


def test_rst_relative_seq_across_wrap(tmp_path: Path) -> None:
    import whyrst

    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40001, 80, cseq=2**32 - 5, sseq=2**32 - 2)
    f.handshake()
    f.request(b"z" * 50)
    f.send(False, RST | ACK, dt=0.5)
    path = tmp_path / "w.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    (r,) = whyrst.analyze(str(path)).resets
    assert r.seq == 1 and r.ack == 51


def test_missing_handshake_is_partial(tmp_path: Path) -> None:
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40002, 80)
    f.request()
    f.response()
    f.send(False, RST | ACK, dt=0.1)
    (row,) = conns(cap, tmp_path)
    assert row["history"].startswith("Dad") or row["history"].startswith("DA") or "D" in row["history"]
    assert row["conn_state"] in ("RSTR", "RSTRH", "OTH")


def test_one_direction_only(tmp_path: Path) -> None:
    cap = Capture()
    c, s = hosts()
    f = Flow(cap, c, s, 40003, 80)
    f.send(True, SYN)
    f.sseq = 12345
    f.send(True, ACK, dt=0.001)
    f.send(True, PSH | ACK, b"hello", dt=0.001)
    f.send(True, FIN | ACK, dt=0.001)
    (row,) = conns(cap, tmp_path)
    assert row["resp_pkts"] == 0 and row["orig_pkts"] == 4


def test_tuple_reused_after_rst_is_a_new_connection(tmp_path: Path) -> None:
    cap = Capture()
    c, s = hosts()
    first = Flow(cap, c, s, 40004, 80)
    first.handshake()
    first.send(True, RST | ACK, dt=0.1)
    second = Flow(cap, c, s, 40004, 80, t=first.t + 1.0)
    second.handshake()
    second.close()
    rows = conns(cap, tmp_path)
    assert [r["conn_state"] for r in rows] == ["RSTO", "SF"]
    assert rows[0]["uid"] != rows[1]["uid"]


def test_demo_connections_have_distinct_uids(tmp_path: Path) -> None:
    rows = conns(synth.demo(), tmp_path)
    assert len({r["uid"] for r in rows}) == len(rows)

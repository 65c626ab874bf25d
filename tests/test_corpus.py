"""Every corpus capture: packet and RST counts equal tshark's (MANIFEST); bad files exit 2 in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import manifest, run_whyrst

ROWS = manifest()


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_capture(row: dict[str, str], corpus: Path) -> None:
    path = corpus / "pcaps" / row["file"]
    p = run_whyrst("analyze", str(path), "--json")
    out, err = p.stdout.decode(), p.stderr.decode()
    assert "Traceback" not in out + err
    if row["opens_cleanly"].startswith("no"):
        assert p.returncode == 2
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and row["file"] in lines[0] and "offset" in lines[0], err
        return
    assert p.returncode == 0, err
    doc = json.loads(out)
    if row["opens_cleanly"] == "truncated":
        assert doc["packets"] == int(row["packets"])
        assert len(doc["resets"]) == int(row["tcp_rst"])
        assert any("offset" in w for w in doc["warnings"]), doc["warnings"]
        return
    assert doc["packets"] == int(row["packets"])
    assert len(doc["resets"]) == int(row["tcp_rst"])


def test_injected_rst_of_rae_trace(corpus: Path) -> None:
    """The RST+ACK with reserved bits and TTL 46 that races the real SYN-ACK (TTL 49) is forged."""
    doc = json.loads(run_whyrst("analyze", str(corpus / "pcaps" / "zeek_tcp_rst-inject-rae.pcap"), "--json").stdout)
    first = doc["resets"][0]
    assert first["frame"] == 2 and first["cause"] == "injected" and first["sender"] == "injector"


def test_refusal_between_rtsp_sessions_is_a_closed_port(corpus: Path) -> None:
    """ndpi_rtsp.pcapng: the server closes session 52476 (frames 273-288), refuses the client's next SYN
    80 ms later (frames 293-296, four copies of each packet) and answers its retry 0.5 s later: a server
    that re-opens its listener between sessions, not a filter."""
    import whyrst

    report = whyrst.analyze(str(corpus / "pcaps" / "ndpi_rtsp.pcapng"))
    refused = [r for r in report.resets if 293 <= r.frame <= 296]
    assert len(refused) == 4
    for r in refused:
        assert r.cause == "closed-port", (r.frame, r.cause, r.evidence)
        assert any("gone for a moment" in e for e in r.evidence), r.evidence

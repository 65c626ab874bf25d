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

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

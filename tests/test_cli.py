"""The command line: version, catalog, cause pages, errors without tracebacks."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, run_whyrst

from whyrst.causes.catalog import CAUSE_IDS


def test_version():
    p = run_whyrst("--version")
    assert p.returncode == 0 and p.stdout.decode().startswith("whyrst ")


def test_causes_lists_every_id():
    doc = json.loads(run_whyrst("causes", "--json").stdout)
    assert [c["id"] for c in doc] == list(CAUSE_IDS)
    assert {"closed-port", "firewall-reject", "injected", "unknown"} <= set(CAUSE_IDS)


def test_explain_page_has_sections():
    text = run_whyrst("explain", "abortive-close").stdout.decode()
    for section in ("## What it is", "## Wire signature", "## How to confirm it on the host", "## Fix",
                    "## Linux kernel reasons"):
        assert section in text
    assert "TcpExtTCPAbortOnData" in text


def test_explain_unknown_cause_is_a_clean_error():
    p = run_whyrst("explain", "no-such-cause")
    assert p.returncode == 2 and b"Traceback" not in p.stderr


def test_missing_file_is_a_clean_error(tmp_path: Path):
    p = run_whyrst("analyze", str(tmp_path / "nope.pcap"))
    assert p.returncode == 2 and b"Traceback" not in p.stderr and b"nope.pcap" in p.stderr


def test_docs_pages_are_current():
    from whyrst.causes.catalog import CAUSES
    from whyrst.causes.docs import cause_page

    for c in CAUSES:
        page = REPO / "docs" / "causes" / f"{c.id}.md"
        assert page.exists() and page.read_text() == cause_page(c), f"regenerate docs/causes ({c.id})"


def test_conns_zeek_format(tmp_path: Path):
    from whyrst import synth

    path = tmp_path / "d.pcap"
    with open(path, "wb") as out:
        synth.demo().write_pcap(out)
    text = run_whyrst("conns", str(path), "--format", "zeek").stdout.decode()
    assert text.startswith("#separator") and "#fields\tts\tuid" in text
    rows = [ln for ln in text.splitlines() if not ln.startswith("#")]
    assert rows and all(len(r.split("\t")) == 21 for r in rows)


def test_catalog_entries_are_well_formed():
    from whyrst.causes.catalog import CAUSES

    for c in CAUSES:
        for field in (c.confirm, c.fix, c.kernel_reasons):
            assert isinstance(field, tuple) and all(isinstance(x, str) and len(x) > 1 for x in field), c.id
        assert c.title and c.summary and c.signature and c.sender in (
            "endpoint", "firewall", "middlebox", "injector", "unknown")

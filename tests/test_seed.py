"""The seed write-up's tcpdump traces, pasted as text, get the write-up's causes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_whyrst


def ranked(path: Path, stdin: bytes | None = None) -> dict[str, list[str]]:
    p = run_whyrst("analyze", "-" if stdin is not None else str(path), "--json", stdin=stdin)
    assert p.returncode == 0, p.stderr.decode()
    return {str(r["frame"]): [r["cause"]] + [a["cause"] for a in r["alternatives"]]
            for r in json.loads(p.stdout)["resets"]}


def check(got: dict[str, list[str]], want: dict[str, list[str]]) -> None:
    for frame, causes in want.items():
        order = got.get(frame, [])
        if len(causes) == 1:
            assert order[:1] == causes, (frame, order)
        else:  # two causes the wire cannot tell apart: either first, the labelled one within two
            assert order and order[0] in causes and causes[0] in order[:2], (frame, order)


def labels(seed_dir: Path) -> dict[str, dict[str, list[str]]]:
    return json.loads((seed_dir / "labels.json").read_text())


def test_seed_traces(seed_dir: Path) -> None:
    for name, want in labels(seed_dir).items():
        check(ranked(seed_dir / name), want)


def test_seed_traces_pasted_on_stdin_with_noise(seed_dir: Path) -> None:
    for name, want in labels(seed_dir).items():
        text = (seed_dir / name).read_bytes()
        noisy = (b"$ sudo tcpdump -nn -i eth0 port 5000\ntcpdump: verbose output suppressed, use -v or -vv\n"
                 b"listening on eth0, link-type EN10MB (Ethernet), capture size 262144 bytes\n" + text
                 + b"^C\n3 packets captured\n")
        check(ranked(Path("-"), stdin=noisy), want)


@pytest.mark.parametrize("frame,cause", [("2", "closed-port")])
def test_closed_port_evidence_names_packets(seed_dir: Path, frame: str, cause: str) -> None:
    p = run_whyrst("analyze", str(seed_dir / "s1-closed-port.txt"), "--json")
    r = json.loads(p.stdout)["resets"][0]
    assert r["cause"] == cause and str(r["frame"]) == frame
    assert any("frame 2" in e and "[R.]" in e for e in r["evidence"])
    assert any("ss -lnt" in c for c in r["confirm"])


def test_seed_reports_render_in_chromium(seed_dir: Path, tmp_path: Path) -> None:
    """The HTML report of each seed trace (text input) shows the ladder of its first RST, without errors."""
    import re

    import whyrst
    from whyrst.report.html import write_html

    test_html = pytest.importorskip("test_html")
    if test_html.CHROMIUM is None:
        pytest.skip("chromium is not installed")
    for name in json.loads((seed_dir / "labels.json").read_text()):
        report = whyrst.analyze(str(seed_dir / name), keep_ladders=True)
        page = tmp_path / f"{name}.html"
        write_html(report, str(page))
        first = report.resets[0].frame
        dom, console = test_html.run_chromium(page, tmp_path, f"#frame={first}")
        assert console == [], (name, console)
        assert re.search(rf'<svg class="ladder"[^>]*data-frame="{first}"', dom), name

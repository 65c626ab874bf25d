"""The HTML report: self-contained, its data intact, everything from a capture inert; and, in headless
Chromium when it is installed, the page runs without errors, opens a reset's ladder from the URL and runs
nothing a capture carries."""

from __future__ import annotations

import base64
import hashlib
import html
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from whyrst.analysis import Alternative, Report, Reset
from whyrst.report.html import (
    COLUMNS,
    decode_text,
    ladder_rows,
    render_html,
    report_data,
    script_json,
    synthetic_report,
    write_html,
)

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "demo.pcap"
SHARED_XSS = REPO.parent / "shared" / "checks" / "xss_pcap.py"

HOSTILE = [
    "</script><script>document.title='PWNED'</script>",
    '"><img src=x onerror="document.title=\'PWNED\'">',
    "<!--<script>",
    "<svg onload=alert(1)>",
    "&lt;already escaped&gt; & \u2028line\u2029separators",
    "' onmouseover='alert(1)",
    "\x01 a sentence with the template hole 42 in it",
    "javascript:alert(1)",
]


def _data(page: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="whyrst-data">(.*?)</script>', page, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def demo_report() -> Report:
    import whyrst

    return whyrst.analyze(str(DEMO), keep_ladders=True)


def hostile_report() -> Report:
    resets = []
    for i, text in enumerate(HOSTILE):
        resets.append(Reset(
            frame=10 + i, ts=1_700_000_000.5 + i, src=text, sport=80, dst=f"198.18.0.{i + 1}", dport=40000 + i,
            uid=text, role="server", sender=text, cause="unread-data-close" if i % 2 else text, confidence=0.5,
            alternatives=[Alternative(text, 0.25)], evidence=[text, f"frame {i} {text} 10.0.0.1:80"], fix=[text],
            confirm=[text], flags=text, payload_text=text, diagnostic={"reason-description": text},
            evidence_frames=[10 + i]))
    ladders = {10: [{"frame": 9, "t": 0.0, "from_orig": True, "flags": HOSTILE[0], "seq": 0, "ack": 0, "len": 0,
                     "ttl": 64, "rst": False},
                    {"frame": 10, "t": 0.5, "from_orig": False, "flags": "R.", "seq": 1, "ack": 1, "len": 0,
                     "ttl": 64, "rst": True}]}
    return Report(source=HOSTILE[0] + HOSTILE[1], format="pcap", packets=20, connections=8, resets=resets,
                  warnings=HOSTILE[:3], ladders=ladders)


# -- structure, without a browser -----------------------------------------------------------------------

def test_self_contained(demo_report: Report, tmp_path: Path) -> None:
    out = tmp_path / "demo.html"
    write_html(demo_report, str(out))
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # nothing to fetch: no remote or relative src/href, no stylesheet links, no CSS imports or urls
    assert not re.search(r"""\b(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:|//)""", page, re.I)
    assert not re.search(r"<script[^>]*\ssrc\s*=", page, re.I)
    assert not re.search(r"<link\b", page, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:|//)", page, re.I)
    assert "sourceMappingURL" not in page
    # exactly the three script elements the page ships: the data, Chart.js and the report's own
    assert len(re.findall(r"<script\b", page)) == 3
    assert "Chart.js v4" in page  # the charting library is inlined, not fetched


def test_data_round_trip(demo_report: Report, tmp_path: Path) -> None:
    out = tmp_path / "demo.html"
    write_html(demo_report, str(out))
    data = _data(out.read_text(encoding="utf-8"))
    assert data["columns"] == list(COLUMNS)
    assert data["source"] == demo_report.source and data["packets"] == demo_report.packets
    k = {name: i for i, name in enumerate(COLUMNS)}
    assert len(data["resets"]) == len(demo_report.resets) == 14
    causes = data["causes"]
    for row, r in zip(data["resets"], demo_report.resets, strict=True):
        assert row[k["frame"]] == r.frame
        assert abs(data["t0"] + row[k["ts"]] - r.ts) < 1e-6
        assert data["addresses"][row[k["src"]]] == r.src and data["addresses"][row[k["dst"]]] == r.dst
        assert causes[row[k["cause"]]]["id"] == r.cause
        assert [decode_text(data["templates"], e) for e in row[k["evidence"]]] == r.evidence
        assert [decode_text(data["templates"], e) for e in row[k["fix"]]] == r.fix
        assert [decode_text(data["templates"], e) for e in row[k["confirm"]]] == r.confirm
        assert [causes[c]["id"] for c in row[k["alts"]][0::2]] == [a.cause for a in r.alternatives]
        got, want = ladder_rows(data, row), demo_report.ladders[r.frame]
        assert [{**p, "t": round(p["t"], 6)} for p in got] == [{**p, "t": round(p["t"], 6)} for p in want]
    assert {causes[i]["id"]: n for i, n in data["by_cause"]} == demo_report.by_cause()
    assert sum(sum(counts) for _, counts in data["timeline"]["series"]) == 14


def test_hostile_strings_are_inert() -> None:
    report = hostile_report()
    page = render_html(report)
    data_text = re.search(r'id="whyrst-data">(.*?)</script>', page, re.S).group(1)
    # no string in the data can close its element or open a comment or a tag
    assert not re.search(r"[<>&]", data_text)
    assert "\\u003c/script\\u003e" in data_text
    outside = page.replace(data_text, "")
    for text in HOSTILE:
        if re.search(r"[<>\"'&]", text):
            assert text not in outside, text
    assert "<img" not in page and "<svg onload" not in page and "onerror=\"" not in page
    assert len(re.findall(r"<script\b", page)) == 3
    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    assert "&lt;/script&gt;" in title and html.unescape(title).startswith("whyrst: " + HOSTILE[0])
    # and the data still says exactly what the capture said
    data = _data(page)
    k = {name: i for i, name in enumerate(COLUMNS)}
    assert data["source"] == report.source and data["warnings"] == report.warnings
    for row, r in zip(data["resets"], report.resets, strict=True):
        assert data["addresses"][row[k["src"]]] == r.src
        assert row[k["uid"]] == r.uid and row[k["payload"]] == r.payload_text
        assert data["words"][row[k["sender"]]] == r.sender and data["words"][row[k["flags"]]] == r.flags
        assert [decode_text(data["templates"], e) for e in row[k["evidence"]]] == r.evidence
        assert row[k["diag"]] == r.diagnostic
    assert ladder_rows(data, data["resets"][0])[0]["flags"] == HOSTILE[0]


def test_script_json_escapes() -> None:
    text = script_json({"a": "</script><!--&", "b": ["\u2028", 1.5]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!--&", "b": ["\u2028", 1.5]}


def _sha(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def test_content_security_policy(demo_report: Report) -> None:
    page = render_html(demo_report)
    csp = html.unescape(re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page).group(1))
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
    assert directives["default-src"] == "'none'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    # the policy comes before any script or style, and lists exactly the page's own by hash
    assert page.index("Content-Security-Policy") < page.index("<style") < page.index("<script")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    styles = re.findall(r"<style>(.*?)</style>", page, re.S)
    assert len(scripts) == 2 and len(styles) == 1
    assert directives["script-src"].split() == [_sha(s) for s in scripts]
    assert directives["style-src"].split() == [_sha(s) for s in styles]
    assert "require-trusted-types-for" in directives
    assert not re.search(r"\sstyle\s*=", page), "inline style attributes would be blocked by the policy"
    assert not re.search(r"\son[a-z]+\s*=", page), "inline event handlers would be blocked by the policy"


def test_no_resets_and_odd_input(tmp_path: Path) -> None:
    out = tmp_path / "empty.html"
    report = Report(source="empty\udcff.pcap", format="pcap", packets=3, connections=1, resets=[],
                    warnings=["truncated at byte 40"], ladders={})
    write_html(report, str(out))
    page = out.read_text(encoding="utf-8")
    assert "No TCP resets in this capture." in page and "truncated at byte 40" in page
    assert _data(page)["resets"] == []
    # NaN and infinity are not JSON: they become null instead of breaking the page
    nan = hostile_report()
    nan.resets[0].confidence = float("nan")
    nan.resets[1].ts = float("inf")
    data = _data(render_html(nan))
    assert data["resets"][0][COLUMNS.index("conf")] is None and data["resets"][1][COLUMNS.index("ts")] is None


def test_cli_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "cli.html"
    proc = subprocess.run([sys.executable, "-m", "whyrst", "analyze", str(DEMO), "--html", str(out)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    assert len(_data(out.read_text(encoding="utf-8"))["resets"]) == 14


def test_size_scales_linearly() -> None:
    # the benchmark (python -m whyrst.report.html --bench 100000) gives about 400 bytes a reset; this
    # keeps it from growing unnoticed
    report = synthetic_report(5000)
    assert len(report.resets) == 5000
    data = report_data(report)
    assert len(data["templates"]) < 200  # sentences are shared, not copied per reset
    size = len(render_html(report).encode())
    assert size < 5000 * 500, size


# -- in a real browser --------------------------------------------------------------------------------

CHROMIUM = next((p for p in (os.environ.get("WHYRST_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
browser = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
_runs = itertools.count()


def run_chromium(page: Path, tmp_path: Path, fragment: str = "", *extra: str) -> tuple[str, list[str]]:
    """The DOM after the page has loaded and its scripts ran, and the page's console messages (JS
    errors and CSP violations among them)."""
    profile = tmp_path / f"chromium-profile-{next(_runs)}"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *extra,
           "--dump-dom", page.resolve().as_uri() + fragment]
    proc = subprocess.run(cmd, capture_output=True, timeout=90)
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, err[-2000:]
    return proc.stdout.decode("utf-8", "replace"), [line for line in err.splitlines() if ":CONSOLE" in line]


def _title(dom: str) -> str:
    return html.unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))


@browser
def test_browser_demo_opens_the_ladder(demo_report: Report, tmp_path: Path) -> None:
    out = tmp_path / "demo.html"
    write_html(demo_report, str(out))
    dom, console = run_chromium(out, tmp_path, "#frame=28")
    assert console == []
    assert re.search(r'<html[^>]* data-ready-ms="\d+"', dom), "the page's script did not finish"
    assert _title(dom) == f"whyrst: {demo_report.source} (14 resets)"
    assert len(re.findall(r'<tr data-i="\d+"', dom)) == 14
    ladder = re.search(r'<svg class="ladder"[^>]*data-frame="28".*?</svg>', dom, re.S)
    assert ladder, "no ladder for frame 28"
    arrows = re.findall(r'<g class="arrow ([a-z ]+)" data-frame="(\d+)"', ladder.group(0))
    assert [int(f) for _, f in arrows] == [p["frame"] for p in demo_report.ladders[28]]
    assert [kind for kind, f in arrows if f == "28"] == ["rst"]
    assert "frames 16–25 not shown" in ladder.group(0)  # the jump in frame numbers is marked
    detail = dom[dom.index('id="detail-28"'):]
    reset = next(r for r in demo_report.resets if r.frame == 28)
    for text in (*reset.evidence, *reset.confirm, *reset.fix):  # beside the ladder, as text
        assert html.escape(text, quote=False) in detail, text
    for chart in ("chart-causes", "chart-timeline"):  # Chart.js sized (and drew on) both canvases
        assert re.search(rf'<canvas id="{chart}"[^>]*style="[^"]*display: block', dom), chart


def _xss_capture(path: Path) -> None:
    from whyrst.synth import ACK, RST, Capture, Flow, Host

    cap = Capture()
    flow = Flow(cap, Host("198.18.0.1"), Host("198.19.0.1"), 40000, 80)
    flow.handshake()
    flow.request(b"GET /<script>document.title='PWNED'</script> HTTP/1.1\r\n"
                 b"Host: \"><img src=x onerror=\"document.title='PWNED'\">\r\n\r\n")
    flow.send(False, RST | ACK, b"<script>document.title='PWNED'</script>"
              b"<img src=x onerror=\"document.title='PWNED'\"><svg onload=\"document.title='PWNED'\">")
    with open(path, "wb") as fh:
        cap.write_pcap(fh)


@browser
@pytest.mark.parametrize("maker", ["synth", "shared"])
def test_browser_xss_capture_runs_nothing(maker: str, tmp_path: Path) -> None:
    import whyrst

    # the file name is hostile too: it is the page's title and heading
    capture = tmp_path / "\"><img src=x onerror=\"document.title='PWNED'\">.pcap"
    if maker == "shared":
        if not SHARED_XSS.exists():
            pytest.skip(f"{SHARED_XSS} not found")
        subprocess.run([sys.executable, str(SHARED_XSS), str(capture)], check=True, timeout=60)
    else:
        _xss_capture(capture)
    report = whyrst.analyze(str(capture), keep_ladders=True)
    assert len(report.resets) == 1 and "<script>" in report.resets[0].payload_text
    out = tmp_path / "xss.html"
    write_html(report, str(out))
    frame = report.resets[0].frame
    dom, console = run_chromium(out, tmp_path, f"#frame={frame}")
    assert console == []  # not even a blocked attempt: nothing from the capture reached a script sink
    assert _title(dom) == f"whyrst: {capture} (1 reset)"  # a script from the capture would have set 'PWNED'
    assert re.search(r'<html[^>]* data-ready-ms="\d+"', dom)
    # the payload is on the page, as text: no element or attribute from it exists
    assert "&lt;script&gt;document.title='PWNED'&lt;/script&gt;" in dom
    assert "<img" not in dom  # a live element; the payload's own "<img" is "&lt;img" in text
    assert not re.search(r"<(?:img|svg|script|body|iframe)\b[^>]*\son\w+\s*=", dom)
    assert not re.search(r"<script>document", dom)
    assert f'data-frame="{frame}"' in dom  # the detail with the payload was rendered


@browser
def test_browser_many_resets(tmp_path: Path) -> None:
    report = synthetic_report(10_000)
    out = tmp_path / "many.html"
    write_html(report, str(out))
    frame = report.resets[-1].frame
    dom, console = run_chromium(out, tmp_path, f"#frame={frame}")
    assert console == []
    ready = int(re.search(r'data-ready-ms="(\d+)"', dom).group(1))
    assert ready < 15_000, ready
    # one page of the table is in the DOM, not 20,000 rows; the last page holds the chosen reset
    assert len(re.findall(r'<tr data-i="\d+"', dom)) == 100
    assert "page 100 of 100" in dom
    assert re.search(rf'<svg class="ladder"[^>]*data-frame="{frame}"', dom)


@browser
def test_browser_long_connection_is_shortened_with_the_gap_marked(tmp_path: Path) -> None:
    import whyrst
    from whyrst.synth import ACK, RST, Capture, Flow, Host

    cap = Capture()
    flow = Flow(cap, Host("198.18.0.1"), Host("198.19.0.1"), 40000, 443)
    flow.handshake()
    for _ in range(60):
        flow.request(b"x" * 100)
        flow.response(b"y" * 1000)
    flow.send(False, RST | ACK)
    capture = tmp_path / "long.pcap"
    with open(capture, "wb") as fh:
        cap.write_pcap(fh)
    report = whyrst.analyze(str(capture), keep_ladders=True)
    frame = report.resets[0].frame
    kept = [p["frame"] for p in report.ladders[frame]]
    assert len(kept) < 244 and kept[:6] == [1, 2, 3, 4, 5, 6]  # the head, then the latest packets
    out = tmp_path / "long.html"
    write_html(report, str(out))
    dom, console = run_chromium(out, tmp_path, f"#frame={frame}")
    assert console == []
    ladder = re.search(rf'<svg class="ladder"[^>]*data-frame="{frame}".*?</svg>', dom, re.S).group(0)
    assert len(re.findall(r'<g class="arrow', ladder)) == len(kept)
    # one band where the ladder skips, saying what went by in each direction
    first_after = kept[6]
    assert ladder.count('class="gap"') == 1
    assert f"frames 7–{first_after - 1} not shown (client → server seq 101 → " in ladder
    assert "server → client seq 1001 → " in ladder

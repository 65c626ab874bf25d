"""The self-contained HTML report: one file that works offline, with the summary by cause (charts),
a sortable, filterable, paginated table of resets and, on demand, a ladder diagram and the full
explanation of each reset.

Everything taken from a capture is data, never markup: the page template is rendered by Jinja with
autoescaping on, the report data is embedded once as JSON in a ``<script type="application/json">``
whose ``<``, ``>`` and ``&`` are ``\\u`` escapes (so no string in it can close the element), and the
page's script builds the table, the details and the SVG ladders with ``textContent`` and
``createElement`` only. A Content-Security-Policy with the hashes of the shipped script and style
(and Trusted Types, where the browser has them) forbids anything else to run.

Size at scale: text is stored once. Evidence sentences differ between resets mostly in their numbers
and addresses, so each sentence becomes a template (its words, with the numbers cut out, deduplicated
across the report) plus its numbers; addresses are interned; ladders are arrays of integers with
frames relative to the RST. ``python -m whyrst.report.html --bench N`` measures a report of N resets.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
import re
from collections.abc import Iterable
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from whyrst import __version__

if TYPE_CHECKING:
    from whyrst.analysis import Report, Reset

DATA_VERSION = 1
CHART_JS = "chart.umd.js"  # Chart.js 4.6.1, dist/chart.umd.js of the npm package chart.js-4.6.1.tgz (MIT)
TIMELINE_BINS = 60

# One colour per catalog cause, in catalog order, so a cause keeps its colour from report to report.
_PALETTE = (
    "#4e79a7", "#e15759", "#b07aa1", "#f28e2b", "#76b7b2", "#59a14f", "#edc948", "#9c755f", "#ff9da7",
    "#17becf", "#8cd17d", "#b6992d", "#499894", "#86bcb6", "#d37295", "#a0cbe8", "#bab0ac", "#6b6ecf",
)

# A sentence's numbers and addresses (IPv4, IPv6 starting with a digit, ports, times, frames): the parts
# that change from one reset's evidence to the next. Never matches a space, so the numbers of one
# sentence can be joined with spaces.
_NUMBERS = re.compile(r"[0-9][0-9A-Fa-f:.]*")
_HOLE = "\x01"  # stands for one number in a template; a sentence that contains it is stored verbatim

# Reset rows are arrays; the page reads the column names from the data, not from positions.
COLUMNS = ("frame", "ts", "src", "sport", "dst", "dport", "uid", "role", "sender", "cause", "conf", "alts",
           "evidence", "fix", "confirm", "flags", "seq", "ack", "ttl", "payload", "diag", "evframes", "ladder")
# Ladder packets: frame minus the RST's frame, microseconds since the connection started, bits
# (1: from the originator (client), 2: the RST this ladder is about), flags, relative seq and ack, payload
# length, TTL, and optionally how many of the connection's packets before this one were not kept.
LADDER_COLUMNS = ("dframe", "t_us", "bits", "flags", "seq", "ack", "len", "ttl", "elided")


class _Texts:
    """Interns sentences as (template, numbers): the template table grows with the kinds of sentence,
    not with the number of resets."""

    def __init__(self) -> None:
        self.templates: list[str] = []
        self._index: dict[str, int] = {}

    def _template(self, text: str) -> int:
        i = self._index.get(text)
        if i is None:
            i = self._index[text] = len(self.templates)
            self.templates.append(text)
        return i

    def encode(self, text: str) -> int | list[Any]:
        if _HOLE in text:
            return self._template(text)
        numbers = _NUMBERS.findall(text)
        if not numbers:
            return self._template(text)
        return [self._template(_NUMBERS.sub(_HOLE, text)), " ".join(numbers)]

    def encode_all(self, texts: Iterable[str]) -> list[int | list[Any]]:
        return [self.encode(t) for t in texts]


def decode_text(templates: list[str], item: int | list[Any]) -> str:
    """The inverse of :meth:`_Texts.encode` (the page's script does the same)."""
    if isinstance(item, int):
        return templates[item]
    parts = templates[item[0]].split(_HOLE)
    numbers = item[1].split(" ")
    out = [parts[0]]
    for number, part in zip(numbers, parts[1:], strict=True):
        out += [number, part]
    return "".join(out)


def _num(x: float, digits: int = 6) -> float | None:
    # JSON has no NaN or infinity; a value that is not a number is shown as missing
    return round(x, digits) if math.isfinite(x) else None


def _ladder_rows(rows: list[dict[str, Any]], rst_frame: int) -> list[list[Any]]:
    out = []
    for p in rows:
        row = [p["frame"] - rst_frame, round(p["t"] * 1e6) if math.isfinite(p["t"]) else 0,
               (1 if p["from_orig"] else 0) | (2 if p.get("rst") else 0), p["flags"], p["seq"], p["ack"],
               p["len"], p["ttl"]]
        if p.get("elided"):
            row.append(int(p["elided"]))
        out.append(row)
    return out


def _causes_table() -> tuple[list[dict[str, Any]], dict[str, int]]:
    from whyrst.causes.catalog import CAUSES

    table = [{"id": c.id, "title": c.title, "summary": c.summary, "sender": c.sender,
              "fix": c.fix[0] if c.fix else "", "color": _PALETTE[i % len(_PALETTE)]}
             for i, c in enumerate(CAUSES)]
    return table, {c["id"]: i for i, c in enumerate(table)}


def _cause_index(cause: str, causes: list[dict[str, Any]], index: dict[str, int]) -> int:
    # a cause the catalog does not know (a newer engine, a hand-built report) still gets a row
    i = index.get(cause)
    if i is None:
        i = index[cause] = len(causes)
        causes.append({"id": cause, "title": cause, "summary": "", "sender": "", "fix": "",
                       "color": _PALETTE[i % len(_PALETTE)]})
    return i


def _timeline(resets: list[Reset], causes: list[dict[str, Any]], index: dict[str, int],
              order: list[str]) -> dict[str, Any]:
    """Counts of resets per cause over the capture in at most TIMELINE_BINS equal bins."""
    stamps = [r.ts for r in resets if math.isfinite(r.ts)]
    if not stamps:
        return {"t0": 0, "step": 0, "bins": 0, "series": []}
    t0, t1 = min(stamps), max(stamps)
    span = t1 - t0
    bins = TIMELINE_BINS if span > 0 else 1
    step = span / bins if span > 0 else 1.0
    series = {cause: [0] * bins for cause in order}
    for r in resets:
        if math.isfinite(r.ts):
            series[r.cause][min(bins - 1, int((r.ts - t0) / step))] += 1
    return {"t0": t0, "step": step, "bins": bins,
            "series": [[index[cause], counts] for cause, counts in series.items()]}


def report_data(report: Report) -> dict[str, Any]:
    """Everything the page shows, in the compact form it is embedded in."""
    causes, index = _causes_table()
    texts = _Texts()
    addresses: list[str] = []
    address_index: dict[str, int] = {}

    def addr(a: str) -> int:
        i = address_index.get(a)
        if i is None:
            i = address_index[a] = len(addresses)
            addresses.append(a)
        return i

    rows = []
    for r in report.resets:
        ladder = report.ladders.get(r.frame)
        rows.append([
            r.frame, _num(r.ts), addr(r.src), r.sport, addr(r.dst), r.dport, r.uid, r.role, r.sender,
            _cause_index(r.cause, causes, index), _num(r.confidence, 3),
            [[_cause_index(a.cause, causes, index), _num(a.confidence, 3)] for a in r.alternatives],
            texts.encode_all(r.evidence), texts.encode_all(r.fix), texts.encode_all(r.confirm),
            r.flags, r.seq, r.ack, r.ttl, r.payload_text, r.diagnostic or 0, list(r.evidence_frames),
            _ladder_rows(ladder, r.frame) if ladder else 0,
        ])
    counts = report.by_cause()
    for cause in counts:
        _cause_index(cause, causes, index)
    return {
        "version": DATA_VERSION,
        "generator": f"whyrst {__version__}",
        "source": report.source,
        "format": report.format,
        "packets": report.packets,
        "connections": report.connections,
        "warnings": list(report.warnings),
        "columns": list(COLUMNS),
        "ladder_columns": list(LADDER_COLUMNS),
        "causes": causes,
        "by_cause": [[index[cause], n] for cause, n in counts.items()],
        "timeline": _timeline(report.resets, causes, index, list(counts)),
        "addresses": addresses,
        "templates": texts.templates,
        "resets": rows,
    }


def script_json(obj: Any) -> str:
    """JSON that is safe as the text of a ``<script>`` element: ``<``, ``>`` and ``&`` occur in JSON only
    inside strings, where their ``\\u`` escapes mean the same, so ``</script>`` or ``<!--`` in the data
    cannot end or change the element."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


@cache
def _static(name: str) -> str:
    text = (resources.files("whyrst.report") / "static" / name).read_text(encoding="utf-8")
    if name.endswith(".js"):
        # the page never loads the source map; a reference to a file that is not there only adds noise
        text = re.sub(r"\n?//# sourceMappingURL=\S*\s*$", "", text)
    closing = "</style" if name.endswith(".css") else "</script"
    if closing in text.lower():  # an element's text must not end the element early
        raise ValueError(f"{name} contains {closing}")
    return text


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("whyrst.report", "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def content_security_policy(scripts: Iterable[str], styles: Iterable[str]) -> str:
    """Only the page's own scripts and style, by hash; no network; no string-to-DOM sinks."""
    return "; ".join([
        "default-src 'none'",
        "script-src " + " ".join(_sha256(s) for s in scripts),
        "style-src " + " ".join(_sha256(s) for s in styles),
        "img-src data:",
        "base-uri 'none'",
        "form-action 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ])


def _clock(ts: float) -> str:
    if not math.isfinite(ts):
        return "?"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_html(report: Report) -> str:
    """The report page as one string."""
    data = report_data(report)
    chart_js, app_js, css = _static(CHART_JS), _static("report.js"), _static("report.css")
    causes = data["causes"]
    summary = [{"id": causes[i]["id"], "title": causes[i]["title"], "fix": causes[i]["fix"],
                "color": causes[i]["color"], "count": n} for i, n in data["by_cause"]]
    stamps = [r.ts for r in report.resets if math.isfinite(r.ts)]
    return _environment().get_template("report.html.j2").render(
        csp=content_security_policy([chart_js, app_js], [css]),
        css=Markup(css), chart_js=Markup(chart_js), app_js=Markup(app_js),
        data=Markup(script_json(data)),
        report=report, summary=summary, version=__version__,
        first=_clock(min(stamps)) if stamps else "", last=_clock(max(stamps)) if stamps else "",
    )


def write_html(report: Report, path: str) -> None:
    """Write the report of ``report`` to ``path`` as one self-contained HTML file."""
    page = render_html(report)
    # a file name or payload that is not valid UTF-8 arrives as lone surrogates; write them as escapes
    with open(path, "w", encoding="utf-8", errors="backslashreplace", newline="\n") as out:
        out.write(page)


# -- benchmark: a report of many resets, without a capture -------------------------------------------------

def synthetic_report(n: int, seed: int = 1) -> Report:
    """A report of ``n`` resets shaped like the engine's (evidence, confirm, fix and ladders of the demo's
    kinds of reset, with their numbers and addresses varied), for measuring the page at scale."""
    import random

    from whyrst.analysis import Alternative, Report, Reset
    from whyrst.causes.catalog import CAUSES

    rng = random.Random(seed)
    kinds = [c for c in CAUSES if c.id != "unknown"]
    resets, ladders = [], {}
    frame, ts = 0, 1_700_000_000.0
    for k in range(n):
        cause = kinds[rng.randrange(len(kinds))] if rng.random() < 0.5 else kinds[k % 4]
        frame += rng.randrange(2, 40)
        ts += rng.random() * 0.01
        src, dst = f"198.19.{k >> 8 & 255}.{k & 255}", f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        sport, dport = rng.choice((80, 443, 8080, 5432)), 1024 + rng.randrange(60000)
        packets = rng.choice((2, 3, 6, 6, 8, 10, 12, 30))
        seq, ack, t = rng.randrange(1, 5000), rng.randrange(1, 5000), rng.random() * 5
        ttl = rng.choice((63, 64, 52, 128))
        peer = frame - rng.randrange(1, 20)
        evidence = [
            f"The RST is frame {frame} (+{t:.6f} s) {src}:{sport} → {dst}:{dport} [R.] seq {seq} ack {ack} "
            f"len 0 win 502 ttl {ttl} id {rng.randrange(65536)}, sent by the server side.",
            f"It follows the peer's frame {peer} (+{t - 0.2:.6f} s) [P.] seq {ack - 16} ack {seq} len 16 win 502 "
            f"ttl {ttl} id {rng.randrange(65536)} by {rng.random() * 1000:.3f} ms.",
            cause.signature.split(". ")[0] + ".",
            f"Its TTL {ttl} matches the sender's other packets, so the sender's own stack made it.",
        ]
        alts = [Alternative(c.id, round(rng.random() * 0.3, 3)) for c in rng.sample(kinds, 3)]
        resets.append(Reset(
            frame=frame, ts=ts, src=src, sport=sport, dst=dst, dport=dport, uid=f"C{k:017d}", role="server",
            sender=cause.sender, cause=cause.id, confidence=round(0.4 + rng.random() * 0.5, 3), alternatives=alts,
            evidence=evidence, fix=list(cause.fix), confirm=list(cause.confirm), flags="R.", seq=seq, ack=ack,
            ttl=ttl, evidence_frames=[frame, peer]))
        rows = []
        for i in range(packets):
            last = i == packets - 1
            rows.append({"frame": frame - (packets - 1 - i) * 3, "t": t * i / max(1, packets - 1),
                         "from_orig": i % 2 == 0 and not last, "flags": "R." if last else "P.",
                         "seq": seq + i * 10, "ack": ack, "len": 0 if last else 10, "ttl": ttl, "rst": last})
        ladders[frame] = rows
    return Report(source=f"synthetic-{n}.pcap", format="pcap", packets=frame, connections=n, resets=resets,
                  warnings=[], ladders=ladders)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os
    import time

    p = argparse.ArgumentParser(prog="python -m whyrst.report.html",
                                description="write the HTML report of a synthetic report and measure it")
    p.add_argument("--bench", type=int, default=100_000, metavar="N", help="resets (default 100000)")
    p.add_argument("--out", default="whyrst-bench.html")
    args = p.parse_args(argv)
    report = synthetic_report(args.bench)
    start = time.perf_counter()
    write_html(report, args.out)
    took = time.perf_counter() - start
    print(f"{args.bench} resets: {os.path.getsize(args.out) / 1e6:.1f} MB in {took:.2f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

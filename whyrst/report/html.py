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
import gc
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
_NUMBERS = re.compile(r"([0-9][0-9A-Fa-f:.]*)")
_HOLE = "\x01"  # stands for one number in a template; a sentence that contains it is stored verbatim

# Reset rows are arrays; the page reads the column names from the data, not from positions. ``ts`` is
# seconds after the data's ``t0``; ``role``, ``sender`` and ``flags`` index ``words``; ``conf`` and the
# alternatives' confidences are thousandths; ``alts`` is [cause, conf, cause, conf, ...]; ``evframes``
# are relative to the reset's frame.
COLUMNS = ("frame", "ts", "src", "sport", "dst", "dport", "uid", "role", "sender", "cause", "conf", "alts",
           "evidence", "fix", "confirm", "flags", "seq", "ack", "ttl", "payload", "diag", "evframes", "ladder")
# A ladder is one flat list of integers, LADDER_STRIDE per packet: the frame (the first packet's relative
# to the RST's frame, the others' to the packet before), the time in microseconds (the first packet's since
# the connection started, the others' since the packet before), bits (1: sent by the originator, i.e. the
# client; 2: the RST this ladder is about; bits >> 2: packets of the connection before this one that the
# analysis did not keep), flags (index into ``words``), relative seq and ack, payload length, TTL.
LADDER_COLUMNS = ("frame", "t_us", "bits", "flags", "seq", "ack", "len", "ttl")


class _Interner:
    """A table of strings and the index of each."""

    def __init__(self) -> None:
        self.items: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        i = self._index.get(text)
        if i is None:
            i = self._index[text] = len(self.items)
            self.items.append(text)
        return i


class _Texts:
    """Sentences, stored once: a sentence that recurs verbatim (fixes, confirm steps, most evidence) is
    a template index; one that occurs once becomes [template, its numbers], so the template table grows
    with the kinds of sentence and not with the number of resets."""

    def __init__(self, recurring: set[str]) -> None:
        self.templates = _Interner()
        self._recurring = recurring
        self._done: dict[str, int | list[Any]] = {}

    def encode(self, text: str) -> int | list[Any]:
        done = self._done.get(text)
        if done is not None:
            return done
        if text in self._recurring or _HOLE in text:
            item: int | list[Any] = self.templates(text)
            self._done[text] = item  # only recurring ones: the cache must not grow with unique sentences
            return item
        parts = _NUMBERS.split(text)
        if len(parts) == 1:
            return self.templates(text)
        return [self.templates(_HOLE.join(parts[0::2])), " ".join(parts[1::2])]


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


def _milli(x: float) -> int | None:
    return round(x * 1000) if math.isfinite(x) else None


def _ladder(rows: list[dict[str, Any]], rst_frame: int, words: _Interner) -> list[int]:
    out: list[int] = []
    frame, t_us = rst_frame, 0
    for p in rows:
        t = round(p["t"] * 1e6) if math.isfinite(p["t"]) else t_us
        bits = (1 if p["from_orig"] else 0) | (2 if p.get("rst") else 0) | (int(p.get("elided") or 0) << 2)
        out += [p["frame"] - frame, t - t_us, bits, words(p["flags"]), p["seq"], p["ack"], p["len"], p["ttl"]]
        frame, t_us = p["frame"], t
    return out


def ladder_rows(data: dict[str, Any], row: list[Any]) -> list[dict[str, Any]]:
    """One reset's ladder from the embedded data, as report.ladders holds it (for tests and tools)."""
    flat = row[COLUMNS.index("ladder")] or []
    words, out = data["words"], []
    frame, t_us = row[0], 0
    for k in range(0, len(flat), len(LADDER_COLUMNS)):
        dframe, dt, bits, flags, seq, ack, length, ttl = flat[k:k + len(LADDER_COLUMNS)]
        frame, t_us = frame + dframe, t_us + dt
        out.append({"frame": frame, "t": t_us / 1e6, "from_orig": bool(bits & 1), "flags": words[flags],
                    "seq": seq, "ack": ack, "len": length, "ttl": ttl, "rst": bool(bits & 2)})
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


def _timeline(resets: list[Reset], index: dict[str, int], order: list[str]) -> dict[str, Any]:
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
    # Hundreds of thousands of small lists and no cycles: the cyclic collector would walk the growing
    # heap again and again for nothing (it tripled the time on 80,000 resets).
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _report_data(report)
    finally:
        if collecting:
            gc.enable()


def _report_data(report: Report) -> dict[str, Any]:
    causes, index = _causes_table()
    counts = report.by_cause()
    for cause in counts:
        _cause_index(cause, causes, index)
    seen: set[str] = set()
    recurring: set[str] = set()
    for r in report.resets:
        for sentence in r.evidence:
            if sentence in seen:
                recurring.add(sentence)
            else:
                seen.add(sentence)
        recurring.update(r.fix)
        recurring.update(r.confirm)
    del seen
    texts, addr, words = _Texts(recurring), _Interner(), _Interner()
    stamps = [r.ts for r in report.resets if math.isfinite(r.ts)]
    t0 = math.floor(min(stamps)) if stamps else 0
    encode = texts.encode
    rows = []
    for r in report.resets:
        ladder = report.ladders.get(r.frame)
        alts: list[Any] = []
        for a in r.alternatives:
            alts += [_cause_index(a.cause, causes, index), _milli(a.confidence)]
        rows.append([
            r.frame, _num(r.ts - t0), addr(r.src), r.sport, addr(r.dst), r.dport, r.uid, words(r.role),
            words(r.sender), index[r.cause], _milli(r.confidence), alts,
            [encode(e) for e in r.evidence], [encode(e) for e in r.fix], [encode(e) for e in r.confirm],
            words(r.flags), r.seq, r.ack, r.ttl, r.payload_text, r.diagnostic or 0,
            [f - r.frame for f in r.evidence_frames], _ladder(ladder, r.frame, words) if ladder else 0,
        ])
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
        "t0": t0,
        "causes": causes,
        "by_cause": [[index[cause], n] for cause, n in counts.items()],
        "timeline": _timeline(report.resets, index, list(counts)),
        "addresses": addr.items,
        "words": words.items,
        "templates": texts.templates.items,
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

def synthetic_report(n: int) -> Report:
    """A report of ``n`` resets made of copies of the bundled demo's analysis (every cause the demo
    stages, with the engine's own evidence, confirm steps, fixes and ladders), each copy moved to its own
    frames, time and addresses, for measuring the page at scale."""
    import io
    from dataclasses import replace

    from whyrst.analysis import Report, analyze
    from whyrst.synth import demo

    pcap = io.BytesIO()
    demo().write_pcap(pcap)
    pcap.seek(0)
    base = analyze(pcap, keep_ladders=True)
    frames = base.packets
    span = max(r.ts for r in base.resets) - min(r.ts for r in base.resets) + 1.0
    resets, ladders = [], {}
    frame_re = re.compile(r"(?<=frame )(\d+)")
    for k in range(-(-n // len(base.resets))):
        shift = k * frames
        host = f"{k >> 8 & 255}.{k & 255}"

        def move(text: str, shift: int = shift, host: str = host) -> str:
            text = frame_re.sub(lambda m: str(int(m.group(1)) + shift), text)
            return text.replace("198.18.1.", f"10.{host}.").replace("198.19.1.", f"172.{host}.")

        for r in base.resets:
            if len(resets) == n:
                break
            resets.append(replace(
                r, frame=r.frame + shift, ts=r.ts + k * span, src=move(r.src), dst=move(r.dst),
                uid=f"C{k:06d}{r.uid[7:]}", evidence=[move(e) for e in r.evidence],
                evidence_frames=[f + shift for f in r.evidence_frames]))
            ladders[r.frame + shift] = [{**p, "frame": p["frame"] + shift} for p in base.ladders[r.frame]]
    return Report(source=f"demo-x{n}.pcap", format="pcap", packets=frames * -(-n // len(base.resets)),
                  connections=base.connections * -(-n // len(base.resets)), resets=resets, warnings=[],
                  ladders=ladders)


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

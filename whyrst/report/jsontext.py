"""A report as JSON text, written piece by piece: each reset encoded on its own (by the worker process that
explained it, when a file is analysed in parts), the pieces put together as ``json.dumps`` of the whole
report would write them.

``json.dump`` of a whole report runs Python's own encoder (its C encoder serves only ``json.dumps`` without
indentation) and ``json.dumps`` of it builds one string as large as the report: each reset on its own
through the C encoder is several times faster and holds one reset's text at a time.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _str  # (what json.dumps writes a string with: C)
from typing import Any


def encode_resets(resets: list[Any], indent: int | None) -> list[str]:
    """Each reset's object as ``json.dumps(report.to_json(), indent=indent)`` writes it in the report's
    ``resets`` list (where it is two levels deep)."""
    if indent is None:
        return [compact_reset(r) for r in resets]
    encoder = json.JSONEncoder(indent=indent)
    deeper = "\n" + " " * (2 * indent)
    return [encoder.encode(r.to_json()).replace("\n", deeper) for r in resets]  # (strings hold no raw newline)


def compact_reset(r: Any) -> str:
    """``json.dumps(r.to_json())`` of a :class:`~whyrst.analysis.Reset`, written directly: through the dict
    and json's encoder it took four times as long (a reset's fixes and confirm steps, most of its text, are
    the same for every reset of a cause, and encoded once here). A value of a type other than the schema's
    (or a float json writes as NaN or Infinity) goes the long way, to the same text or the same error."""
    ts, confidence, frames = r.ts, r.confidence, r.evidence_frames
    try:
        # (for exactly these types a format of the value is json's text of it)
        if (type(r.frame) is type(r.sport) is type(r.dport) is type(r.seq) is type(r.ack) is type(r.ttl) is int
                and type(ts) is type(confidence) is float and math.isfinite(ts) and math.isfinite(confidence)
                and all(type(x) is int for x in frames)):
            alts = ", ".join([_alternative(a.cause, a.confidence) for a in r.alternatives])
            return (f'{{"frame": {r.frame}, "ts": {ts}, "src": {_str(r.src)}, "sport": {r.sport}, '
                    f'"dst": {_str(r.dst)}, "dport": {r.dport}, "uid": {_str(r.uid)}, "role": {_str(r.role)}, '
                    f'"sender": {_str(r.sender)}, "cause": {_str(r.cause)}, "confidence": {confidence}, '
                    f'"alternatives": [{alts}], "evidence": {_strings(r.evidence)}, "fix": {_recurring(r.fix)}, '
                    f'"confirm": {_recurring(r.confirm)}, "flags": {_str(r.flags)}, "seq": {r.seq}, '
                    f'"ack": {r.ack}, "ttl": {r.ttl}, "payload_text": {_str(r.payload_text)}, '
                    f'"diagnostic": {json.dumps(r.diagnostic) if r.diagnostic else "{}"}, '
                    f'"evidence_frames": [{", ".join(map(str, frames))}]}}')
    except TypeError:
        pass
    return json.dumps(r.to_json())


_ALTERNATIVES: dict[tuple[str, float], str] = {}


def _alternative(cause: str, confidence: float) -> str:
    """An alternative's JSON object, made once for each (cause, confidence) a capture has (a few dozen)."""
    if type(confidence) is not float or not math.isfinite(confidence) or not confidence:
        raise TypeError("not a float that equals only itself")  # (1 == 1.0 and 0.0 == -0.0: not keys for text)
    text = _ALTERNATIVES.get((cause, confidence))
    if text is None:
        if len(_ALTERNATIVES) >= 4096:
            _ALTERNATIVES.clear()
        text = _ALTERNATIVES[(cause, confidence)] = f'{{"cause": {_str(cause)}, "confidence": {confidence}}}'
    return text


def _strings(items: list[str]) -> str:
    return "[" + ", ".join(map(_str, items)) + "]"


_RECURRING: dict[tuple[str, ...], str] = {}


def _recurring(items: list[str]) -> str:
    """:func:`_strings` of a list that recurs from reset to reset, made once."""
    key = tuple(items)
    text = _RECURRING.get(key)
    if text is None:
        if len(_RECURRING) >= 4096:  # (a bound, never reached by the catalog's lists)
            _RECURRING.clear()
        text = _RECURRING[key] = _strings(items)
    return text


@dataclass
class EncodedReport:
    """A :class:`~whyrst.analysis.Report` (without ladders and connections) whose resets the worker processes
    made into JSON text: the main process only puts the texts together and writes them out."""

    source: str
    format: str
    packets: int
    connections: int
    resets: list[str]  # each reset's JSON text (see encode_resets)
    warnings: list[str]
    indent: int | None = None

    def json_text(self) -> str:
        """The text of ``json.dumps(report.to_json(), indent=indent)``."""
        out = io.StringIO()
        self.write(out)
        return out.getvalue()

    def write(self, out: Any) -> None:
        """Write :meth:`json_text` to ``out`` piece by piece (a report of many resets is never one string)."""
        from whyrst.analysis import Report

        empty = Report(self.source, self.format, self.packets, self.connections, [], list(self.warnings))
        text = json.dumps(empty.to_json(), indent=self.indent)
        if not self.resets:
            out.write(text)
            return
        # (the only place where this text occurs: inside a JSON string, every quote is escaped)
        head, found, tail = text.partition('"resets": []')
        if not found:
            raise RuntimeError("no resets key in the report's JSON")
        if self.indent is None:
            first, between, last = "[", ", ", "]"
        else:
            outer = "\n" + " " * self.indent
            inner = outer + " " * self.indent
            first, between, last = "[" + inner, "," + inner, outer + "]"
        out.write(head + '"resets": ' + first)
        for i, item in enumerate(self.resets):
            if i:
                out.write(between)
            out.write(item)
        out.write(last + tail)


def encode_report(report: Any, indent: int | None) -> EncodedReport:
    return EncodedReport(report.source, report.format, report.packets, report.connections,
                         encode_resets(report.resets, indent), list(report.warnings), indent)

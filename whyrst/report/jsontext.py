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
from dataclasses import dataclass
from typing import Any


def encode_resets(resets: list[Any], indent: int | None) -> list[str]:
    """Each reset's object as ``json.dumps(report.to_json(), indent=indent)`` writes it in the report's
    ``resets`` list (where it is two levels deep)."""
    if indent is None:
        return [json.dumps(r.to_json()) for r in resets]
    encoder = json.JSONEncoder(indent=indent)
    deeper = "\n" + " " * (2 * indent)
    return [encoder.encode(r.to_json()).replace("\n", deeper) for r in resets]  # (strings hold no raw newline)


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

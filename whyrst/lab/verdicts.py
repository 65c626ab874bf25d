"""whyrst's verdicts against the lab's labels, per case and vantage, and where they go wrong.

A reset seen at three vantages is three labels: each capture is a separate input to the analyzer (the
client's, the router's and the server's view differ in TTLs, NATed addresses and what was lost), so each
counts. "Within the first two" accepts the analyzer's runner-up: it tells a close call from a blind spot.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from whyrst.lab.truth import Label

NOT_REPORTED = "(not reported)"


def first_two(lab: Label) -> tuple[str, str | None]:
    """whyrst's first cause and its runner-up (the best alternative that is not the first)."""
    first = lab.verdict or NOT_REPORTED
    second = next((str(a.get("cause")) for a in lab.alternatives if str(a.get("cause")) != first), None)
    return first, second


@dataclass
class Rate:
    scored: int = 0
    first: int = 0
    two: int = 0

    def add(self, lab: Label) -> None:
        first, second = first_two(lab)
        self.scored += 1
        self.first += first == lab.cause
        self.two += lab.cause in (first, second)

    def text(self) -> str:
        if not self.scored:
            return "-"
        return f"{self.first}/{self.scored} {self.first / self.scored:.0%} ({self.two / self.scored:.0%})"


def scored(labels: Iterable[Label]) -> list[Label]:
    """Labels with a cause and a verdict: unlabelled strays and runs without the analyzer do not count."""
    return [lab for lab in labels if lab.cause and lab.verdict is not None]


def rates(labels: Iterable[Label]) -> dict[tuple[str, str], Rate]:
    """(case, vantage) -> rate; ("*", vantage) and (case, "*") and ("*", "*") are the totals."""
    out: dict[tuple[str, str], Rate] = {}
    for lab in scored(labels):
        for key in ((lab.case, lab.vantage), (lab.case, "*"), ("*", lab.vantage), ("*", "*")):
            out.setdefault(key, Rate()).add(lab)
    return out


def confusion(labels: Iterable[Label]) -> Counter[tuple[str, str]]:
    """(label cause, whyrst's first cause) -> labelled RSTs (all vantages)."""
    return Counter((str(lab.cause), first_two(lab)[0]) for lab in scored(labels))


def tables(labels: list[Label], cases: list[str], vantages: tuple[str, ...]) -> list[Any]:
    """The per-vantage match table and the confusion table, as rich Tables."""
    from rich.table import Table

    r = rates(labels)
    per = Table(title="whyrst's first cause = label, per vantage: matched/scored rate (within the first two)",
                title_justify="left")
    per.add_column("case")
    for v in (*vantages, "*"):
        per.add_column("all" if v == "*" else v, justify="right")
    for case in (*cases, "*"):
        if not any(r.get((case, v)) for v in (*vantages, "*")):
            continue
        per.add_row("overall" if case == "*" else case,
                    *(r[(case, v)].text() if (case, v) in r else "-" for v in (*vantages, "*")))

    conf = confusion(labels)
    cm = Table(title="confusion: label cause -> whyrst's first cause (RSTs, all vantages)", title_justify="left")
    cm.add_column("label cause")
    cm.add_column("whyrst's first cause")
    cm.add_column("RSTs", justify="right")
    cm.add_column("")
    for (cause, got), n in sorted(conf.items(), key=lambda kv: (kv[0][0], kv[0][0] != kv[0][1], -kv[1])):
        cm.add_row(cause, got, str(n), "" if cause == got else "[red]miss[/]")
    return [per, cm]


def summary(labels: list[Label]) -> dict[str, Any]:
    """The numbers for summary.json."""
    r = rates(labels)
    return {
        "per_vantage": {f"{case}|{v}": {"scored": x.scored, "first": x.first, "first_two": x.two}
                        for (case, v), x in sorted(r.items())},
        "confusion": [{"label": c, "whyrst": g, "count": n} for (c, g), n in sorted(confusion(labels).items())],
    }


__all__ = ["Rate", "confusion", "first_two", "rates", "scored", "summary", "tables"]

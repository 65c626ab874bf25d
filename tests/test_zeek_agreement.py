"""conn_state and history agree with Zeek's own baselines for the corpus (>= 95% per file and overall)."""

from __future__ import annotations

import collections
import os
from pathlib import Path

from whyrst.pipeline import track_capture

RST_BEHAVIOR = ["zeek_tcp_single-rst.pcap", "zeek_tcp_syn-then-rst.pcap",
                "zeek_tcp_syn-then-ack-then-rst.pcap", "zeek_tcp_syn-then-stuff-then-rst.pcap"]


def zeek_rows(ref: Path, pcap: str) -> list[tuple[frozenset | None, str, str]]:
    rows: list[tuple[frozenset | None, str, str]] = []
    for f in sorted(os.listdir(ref / pcap)):
        p = ref / pcap / f
        if f.endswith("conn_state-RST-behavior__out"):
            lines = [ln for ln in p.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
            hist, state = (s.strip() for s in lines[RST_BEHAVIOR.index(pcap)].split(","))
            rows.append((None, state, hist))
        elif "__conn" in f and ".log" in f:
            fields = None
            for line in p.read_text().splitlines():
                if line.startswith("#fields"):
                    fields = line.split("\t")[1:]
                elif not line.startswith("#") and fields:
                    r = dict(zip(fields, line.split("\t"), strict=False))
                    if r.get("proto") == "tcp":
                        key = frozenset([(r["id.orig_h"], r["id.orig_p"]), (r["id.resp_h"], r["id.resp_p"])])
                        rows.append((key, r["conn_state"], r["history"]))
    return rows


def agreement(corpus: Path) -> dict[str, tuple[int, int, list]]:
    ref = corpus / "reference"
    out = {}
    for pcap in sorted(os.listdir(ref)):
        rows = zeek_rows(ref, pcap)
        if not rows:
            continue
        mine: collections.Counter = collections.Counter()
        records: list[dict] = []
        track_capture(str(corpus / "pcaps" / pcap), lambda c, into=records: into.append(c.zeek_record()))
        for c in records:
            key = frozenset([(c["id.orig_h"], str(c["id.orig_p"])), (c["id.resp_h"], str(c["id.resp_p"]))])
            mine[(key, c["conn_state"], c["history"])] += 1
            mine[(None, c["conn_state"], c["history"])] += 1
        ok, misses = 0, []
        for r in rows:
            if mine[r] > 0:
                mine[r] -= 1
                ok += 1
            else:
                misses.append(r)
        out[pcap] = (ok, len(rows), misses)
    return out


def test_zeek_agreement(corpus: Path) -> None:
    result = agreement(corpus)
    assert result, "no Zeek baselines found"
    total_ok = sum(ok for ok, _, _ in result.values())
    total = sum(n for _, n, _ in result.values())
    worst = {p: ok / n for p, (ok, n, _) in result.items()}
    report = "\n".join(f"{p}: {ok}/{n} missing {m[:3]}" for p, (ok, n, m) in result.items() if ok < n)
    assert total_ok / total >= 0.95, report
    assert min(worst.values()) >= 0.95, report


if __name__ == "__main__":  # prints the figures for the issue note
    import sys

    res = agreement(Path(sys.argv[1]))
    for p, (ok, n, m) in res.items():
        print(f"{p}: {ok}/{n}", "" if ok == n else m[:5])
    print("overall", sum(r[0] for r in res.values()), "/", sum(r[1] for r in res.values()))

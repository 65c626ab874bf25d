"""Ground truth: every RST in every capture, joined with the kernel event that sent it, and labelled.

The join: a ``tcp_send_reset`` event names the RST's own 4-tuple (``src`` -> ``dest``), so a RST in a
pcap is paired with the latest unused event of the same 4-tuple that fired before it (the tracepoint
fires just before the packet is handed to the device; every vantage sees the packet after that). Behind
NAT the client-side address and port differ between vantages; such a RST gets the reason of the same RST
seen at another vantage, recognised by its sequence numbers and its server-side endpoint. RSTs from
netfilter's REJECT (``nf_send_reset`` does not fire the tracepoint) and from raw sockets have no event:
their ``kernel_reason`` is null, which is ground truth as well.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from whyrst.lab.capture import Packet, PcapFile
from whyrst.live.tracefs import ResetEvent

# A packet timestamp may lead the event by a little: both clocks are read by the kernel, but the
# trace->wall offset is computed once in user space.
LEAD = 0.005
WINDOW = 3.0  # an event older than this before the packet is not its cause


@dataclass
class Label:
    """One RST at one vantage: a line of labels.jsonl."""

    case: str
    vantage: str
    pcap: str
    frame: int
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    seq: int
    ack: int
    flags: str
    ttl: int
    cause: str | None
    kernel_reason: str | None
    kernel_state: str | None = None
    kernel_match: str = "none"  # exact | relayed (the same RST at another vantage) | none
    verdict: str | None = None
    alternatives: list[dict[str, Any]] = field(default_factory=list)
    wire: tuple[Any, ...] = ()  # identifies the packet across vantages (see wire_key); not written out

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("wire")
        d["ts"] = round(self.ts, 6)
        return d


def flag_text(flags: int) -> str:
    return "".join(c for bit, c in ((0x02, "S"), (0x01, "F"), (0x04, "R"), (0x08, "P"), (0x10, "."))
                   if flags & bit)


def wire_key(rst: Packet, fixed: set[str]) -> tuple[Any, ...]:
    """What identifies a RST at every vantage: its sequence numbers and the endpoint NAT does not rewrite
    (an address in ``fixed``, the server side); without such an endpoint, its whole 4-tuple."""
    ackv = rst.ack if rst.has_ack else None
    if rst.src in fixed:
        return ("from", rst.src, rst.sport, rst.seq, ackv)
    if rst.dst in fixed:
        return ("to", rst.dst, rst.dport, rst.seq, ackv)
    return ("exact", rst.src, rst.sport, rst.dst, rst.dport, rst.seq, ackv)


def _wildcard(ev: ResetEvent) -> bool:
    """A listener's event: the kernel prints the listening socket's addresses, so the peer is 0.0.0.0:0."""
    return ev.remote[1] == 0 and ev.remote[0] in ("0.0.0.0", "::", "")


def join(pcap: PcapFile, events: list[tuple[float, ResetEvent]]) -> dict[int, ResetEvent]:
    """frame -> the sent-RST event behind that RST.

    Candidates are the unused events of the RST's 4-tuple and those of a listener on its source
    endpoint; the one closest before the packet wins: an earlier event of the same tuple may be a RST
    that never reached the wire (dropped by a rule of the scenario)."""
    sent = sorted(((w, ev) for w, ev in events if ev.direction == "sent"), key=lambda x: x[0])
    exact: dict[tuple[str, int, str, int], list[int]] = {}
    listen: dict[int, list[int]] = {}  # by port: a listener bound to 0.0.0.0 names no address
    for i, (_, ev) in enumerate(sent):
        if _wildcard(ev):
            listen.setdefault(ev.local[1], []).append(i)
        else:
            exact.setdefault((*ev.local, *ev.remote), []).append(i)
    used: set[int] = set()
    out: dict[int, ResetEvent] = {}
    for rst in pcap.rsts:
        cands = exact.get((rst.src, rst.sport, rst.dst, rst.dport), []) + [
            i for i in listen.get(rst.sport, []) if sent[i][1].local[0] in (rst.src, "0.0.0.0", "::")]
        best = None
        for i in cands:
            wall = sent[i][0]
            if i in used or not rst.ts - WINDOW <= wall <= rst.ts + LEAD:
                continue
            if best is None or wall > sent[best][0]:
                best = i
        if best is not None:
            used.add(best)
            out[rst.frame] = sent[best][1]
    return out


def label_case(case: str, pcaps: dict[str, PcapFile], events: list[tuple[float, ResetEvent]],
               labeler: Any, ctx: Any, rel: dict[str, str], fixed: set[str]) -> list[Label]:
    """Every RST of a scenario's pcaps, labelled, with its kernel reason."""
    labels: list[Label] = []
    for vantage, pc in pcaps.items():
        matched = join(pc, events)
        for rst in pc.rsts:
            ev = matched.get(rst.frame)
            labels.append(Label(
                case=case, vantage=vantage, pcap=rel[vantage], frame=rst.frame, ts=rst.ts, src=rst.src,
                sport=rst.sport, dst=rst.dst, dport=rst.dport, seq=rst.seq, ack=rst.ack, flags=flag_text(rst.flags),
                ttl=rst.ttl, cause=labeler(rst, pc, ctx), kernel_reason=ev.reason if ev else None,
                kernel_state=ev.state if ev else None, kernel_match="exact" if ev else "none",
                wire=wire_key(rst, fixed)))
    # The same RST at a vantage behind NAT: take the reason from where it matched exactly.
    known: dict[tuple[Any, ...], Label] = {}
    for lab in labels:
        if lab.kernel_match == "exact":
            known.setdefault(lab.wire, lab)
    for lab in labels:
        if lab.kernel_match == "none" and lab.wire in known:
            src = known[lab.wire]
            lab.kernel_reason, lab.kernel_state, lab.kernel_match = src.kernel_reason, src.kernel_state, "relayed"
    return labels


def unique_resets(labels: list[Label]) -> dict[tuple[Any, ...], list[Label]]:
    """The RSTs as packets on the wire (one entry however many vantages saw it)."""
    out: dict[tuple[Any, ...], list[Label]] = {}
    for lab in labels:
        out.setdefault(lab.wire, []).append(lab)
    return out


def reason_counts(labels: list[Label], cause: str | None = None) -> Counter[str | None]:
    """Kernel reasons of the distinct RSTs (with ``cause``, only those labelled so)."""
    c: Counter[str | None] = Counter()
    for group in unique_resets(labels).values():
        if cause is not None and group[0].cause != cause:
            continue
        reasons = {lab.kernel_reason for lab in group if lab.kernel_reason}
        c[min(reasons) if reasons else None] += 1
    return c


def unmatched_events(pcaps: dict[str, PcapFile], events: list[tuple[float, ResetEvent]]) -> list[ResetEvent]:
    """Kernel resets of the lab that reached no capture (dropped by a firewall rule of the scenario, or
    sent toward an address no vantage sees)."""
    matched: set[int] = set()
    for pc in pcaps.values():
        matched.update(id(ev) for ev in join(pc, events).values())
    return [ev for _, ev in events if ev.direction == "sent" and id(ev) not in matched]

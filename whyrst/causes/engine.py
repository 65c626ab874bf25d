"""Score every cause for a RST, rank them, and write the explanation: who, why, evidence, fix."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from whyrst.capture.batch import ACK, RST
from whyrst.causes.catalog import BY_ID, CAUSES, DISTINGUISH, PAYLOAD_HINTS
from whyrst.causes.features import Features, HostView, extract
from whyrst.tcp.track import NS, PacketRef, ResetContext, flags_text

MAX_ALTERNATIVES = 4
# the payload hints compiled once (re.search's cache of compiled patterns is a look-up and a lock each time)
_HINTS = tuple((re.compile(pattern, re.IGNORECASE), cause_id, bonus) for pattern, cause_id, bonus in PAYLOAD_HINTS)
# DISTINGUISH by the pair in either order (a frozenset made for each look-up costs more than the look-up)
_TELLS = {(a, b): text for pair, text in DISTINGUISH.items() for a in pair for b in pair if a != b}
_flags_text = cache(flags_text)  # (a few dozen distinct flag sets: the text of each made once)
_RULES = tuple((c.id, c.score) for c in CAUSES)


def _rank(scored: tuple[float, str]) -> tuple[float, str]:
    """Highest score first, ties by id."""
    return -scored[0], scored[1]


# A score's share of the total, rounded to three places: scores are sums of a few constants, so a capture has
# few distinct shares, and round() to three places costs as much as six dictionary look-ups.
_SHARES: dict[float, float] = {}


def _share(score: float, total: float) -> float:
    q = score / total
    rounded = _SHARES.get(q)
    if rounded is None:
        rounded = round(q, 3)
        if q > 0 and len(_SHARES) < 65536:  # (0.0 == -0.0, so zero is not a key)
            _SHARES[q] = rounded
    return rounded


@dataclass
class Explanation:
    cause: str
    confidence: float
    alternatives: list[tuple[str, float]]
    sender: str  # endpoint | firewall | middlebox | injector | unknown
    role: str  # client | server | unknown: whose address the RST carries
    evidence: list[str]
    fix: list[str]
    confirm: list[str]
    payload_text: str = ""
    diagnostic: dict[str, object] = field(default_factory=dict)
    evidence_frames: list[int] = field(default_factory=list)


def describe(p: PacketRef, start_ns: int, src: str = "", dst: str = "") -> str:
    """A packet in a sentence: frame, time offset, direction, flags, relative seq/ack, length, TTL."""
    flags = p.flags
    where = f"{src} → {dst} " if src and dst else ""
    ack = f" ack {p.rel_ack}" if flags & ACK else ""
    ttl = f" ttl {p.ttl}" if p.ttl else ""
    ip_id = f" id {p.ip_id}" if p.ip_id >= 0 else ""
    return (f"frame {p.frame} (+{(p.ts_ns - start_ns) / NS:.6f} s) {where}[{_flags_text(flags)}] seq {p.rel_seq}"
            f"{ack} len {p.payload_len} win {p.win}{ttl}{ip_id}")


def payload_text(payload: bytes) -> str:
    """A RST's payload as text, the way stacks that explain resets in it mean it to be read."""
    if not payload:
        return ""
    text = payload.decode("utf-8", "replace")
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    if printable >= 0.8 * len(text):
        return text.strip("\x00").strip()
    return payload[:64].hex()


def decode_rst_diagnostic(payload: bytes) -> dict[str, object]:
    """Decode a RST diagnostic payload (draft-boucadair-tcpm-rst-diagnostic-payload, a small CBOR map
    with reason-code 1, private enterprise number 2 and reason-description 3) when the payload is one."""
    for start in (0, 2):
        item = _cbor_map(payload, start)
        if (item and set(item) <= {1, 2, 3} and 1 in item) or (item and 3 in item):
            out: dict[str, object] = {}
            if 1 in item:
                out["reason_code"] = item[1]
            if 2 in item:
                out["pen"] = item[2]
            if 3 in item:
                out["reason_description"] = item[3]
            return out
    return {}


def _cbor_map(data: bytes, pos: int) -> dict[int, object] | None:
    """A tiny CBOR reader for maps of small unsigned keys to unsigned or text values; None otherwise."""

    def head(p: int) -> tuple[int, int, int] | None:
        if p >= len(data):
            return None
        major, info = data[p] >> 5, data[p] & 0x1F
        p += 1
        if info < 24:
            return major, info, p
        size = {24: 1, 25: 2, 26: 4, 27: 8}.get(info)
        if size is None or p + size > len(data):
            return None
        return major, int.from_bytes(data[p:p + size], "big"), p + size

    h = head(pos)
    if h is None or h[0] != 5 or not 0 < h[1] <= 8:
        return None
    count, p = h[1], h[2]
    out: dict[int, object] = {}
    for _ in range(count):
        k = head(p)
        if k is None or k[0] != 0:
            return None
        v = head(k[2])
        if v is None:
            return None
        if v[0] == 0:
            out[k[1]] = v[1]
            p = v[2]
        elif v[0] == 3 and v[2] + v[1] <= len(data):
            out[k[1]] = data[v[2]:v[2] + v[1]].decode("utf-8", "replace")
            p = v[2] + v[1]
        else:
            return None
    return out if p == len(data) else None


def _sender_kind(cause: str, f: Features) -> str:
    if cause == "injected":
        return "injector"
    if cause == "firewall-reject":
        return "firewall"
    if f.ttl_mismatch:
        return "middlebox"
    # (the host's TTL, a look-up, only when it decides)
    return "endpoint" if cause != "unknown" or f.ttl_known > 0 or f.host_ttl > 0 else "unknown"


def explain(ctx: ResetContext, hosts: HostView,
            earlier: tuple[int, Explanation, bool] | None = None) -> Explanation:
    """Explain one RST. ``earlier`` is (frame, explanation, same side) of the first RST of this connection
    before this one. A stack answers every later segment of a connection it reset, and a side that received
    a RST answers the peer's late segments with RST too: those follow-ups share the first one's cause,
    unless they themselves look forged."""
    f = extract(ctx, hosts)
    scored = []
    reasons: dict[str, list[str]] = {}
    for cause_id, rule in _RULES:
        score, why = rule(f)
        if score > 0:
            scored.append((score, cause_id))
            reasons[cause_id] = why
    payload = ctx.payload
    text = payload_text(payload)
    if text:
        for pattern, cause_id, bonus in _HINTS:
            if pattern.search(text):
                old = next((sc for sc, cid in scored if cid == cause_id), 0.0)
                scored = [(sc, cid) for sc, cid in scored if cid != cause_id] + [(old + bonus, cause_id)]
                reasons.setdefault(cause_id, []).insert(0, f"The RST's payload says why: {text[:120]!r}.")
                break
    scored.sort(key=_rank)
    total = sum([s for s, _ in scored]) + 0.15
    ranked = [(cid, _share(s, total)) for s, cid in scored]  # (each cause once: the best is the first)
    best, conf = ranked[0]
    alternatives = ranked[1:MAX_ALTERNATIVES + 1]

    conn = ctx.conn
    start = conn.start_ns
    rst = ctx.rst
    evidence = [f"The RST is {describe(rst, start, f'{ctx.src}:{ctx.sport}', f'{ctx.dst}:{ctx.dport}')}, "
                f"sent by the {f.sender_role} side."]
    frames = [rst.frame]
    if f.trigger is not None and f.trigger.frame != rst.frame:
        evidence.append(f"It follows the peer's {describe(f.trigger, start)} by "
                        f"{f.trigger_gap * 1000:.3f} ms.")
        frames.append(f.trigger.frame)
    evidence.extend(reasons.get(best, []))
    if f.ttl_known > 0 and rst.ttl and not f.ttl_mismatch:
        if BY_ID[best].sender == "endpoint":
            evidence.append(f"Its TTL {rst.ttl} matches the sender's other packets, so the sender's own stack "
                            "made it.")
        else:
            evidence.append(f"Its TTL {rst.ttl} matches the sender's other packets: whatever made it sits on "
                            "the sender's host or the same hop.")
    if payload:
        evidence.append(f"It carries {len(payload)} bytes of payload: {text[:200]!r}.")
    if ctx.mptcp_subtype == 8:
        evidence.append("It carries an MPTCP MP_TCPRST option: the MPTCP layer reset this subflow.")
    if not f.handshake_seen and ctx.index_in_conn == 0 and len(ctx.before) == 0:
        evidence.append("No earlier packet of this connection is in the capture, so the verdict rests on the RST "
                        "alone.")
    if rst.flags & RST and ctx.index_in_conn > 0:
        evidence.append(f"It is RST number {ctx.index_in_conn + 1} of this connection.")

    if earlier is not None and best != "injected" and (earlier[2] is False or earlier[1].cause != "injected"):
        first_frame, first, same_side = earlier
        if same_side:
            evidence.insert(1, f"Frame {first_frame} from the same side already reset this connection; this RST "
                               "answers a segment that arrived for the connection afterwards, so it shares that "
                               f"reset's cause ({first.cause}).")
        else:
            evidence.insert(1, f"The other side's RST in frame {first_frame} ({first.cause}) had already ended "
                               "the connection here; this RST answers the peer's segments that kept coming, so "
                               "it is a consequence of that reset.")
        if best != first.cause:
            alternatives = [(best, conf), *[(c, p) for c, p in alternatives if c != first.cause]][:MAX_ALTERNATIVES]
        best, conf = first.cause, round(first.confidence * 0.95, 3)
    cause = BY_ID[best]
    confirm = list(cause.confirm)
    for alt, _ in alternatives[:2]:
        tell = _TELLS.get((best, alt))
        if tell:
            confirm.insert(0, f"To tell {best} from {alt}: {tell}")
    return Explanation(
        cause=best,
        confidence=conf,
        alternatives=alternatives,
        sender=_sender_kind(best, f),
        role=f.sender_role,
        evidence=evidence,
        fix=list(cause.fix),
        confirm=confirm,
        payload_text=text,
        diagnostic=decode_rst_diagnostic(payload) if payload else {},
        evidence_frames=frames,
    )

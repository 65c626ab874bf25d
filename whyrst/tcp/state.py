"""The TCP endpoint state machine, as a table, and Zeek's ``conn_state`` summary.

One module owns the states and their transitions (in the manner of h11's ``_state.py``). The two
endpoints are symmetric: a transition reads the segment one endpoint sent, that endpoint's state and
its peer's state, and says what both become. It does no I/O and knows nothing of packets beyond the
control bits, so the tracker, the tests and the documentation read the same table.

The semantics follow Zeek's TCP analyzer (``TCPSessionAdapter::UpdateStateMachine``) so that
``conn_state`` and ``history`` agree with Zeek's conn.log, which users already read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum


class EP(IntEnum):
    """An endpoint's state as Zeek tracks it (``TCP_ENDPOINT_*``)."""

    INACTIVE = 0
    SYN_SENT = 1
    SYN_ACK_SENT = 2
    PARTIAL = 3
    ESTABLISHED = 4
    CLOSED = 5
    RESET = 6


# The members as plain names too: on Python 3.11 a member read through its Enum class goes through a
# Python-level descriptor (~120 ns, ten times a global's read), and the tracker reads them for every packet.
INACTIVE, SYN_SENT, SYN_ACK_SENT = EP.INACTIVE, EP.SYN_SENT, EP.SYN_ACK_SENT
PARTIAL, ESTABLISHED, CLOSED, RESET = EP.PARTIAL, EP.ESTABLISHED, EP.CLOSED, EP.RESET

HANDSHAKE = (INACTIVE, SYN_SENT, SYN_ACK_SENT)


@dataclass(frozen=True)
class Segment:
    """What the state machine needs to know about one segment."""

    syn: bool
    ack: bool
    fin: bool
    rst: bool
    payload: int
    is_orig: bool
    seq: int = 0  # absolute 32-bit sequence number
    ack_no: int = 0  # absolute acknowledgement number


@dataclass
class Step:
    """The outcome of one segment: new states and what the tracker must do."""

    me: EP
    peer: EP
    close: bool = False  # the sender closed its side (FIN or RST): Zeek's do_close
    flip: bool = False  # the roles were reversed (SYN/SYN-ACK reversal)
    reject: bool = False  # the RST rejected a connection attempt
    revive_peer: bool = False  # peer's FIN+RST turned out to be a normal close


# A rule: (control bit it reacts to, guard on (segment, me, peer), effect). Rules of a state run in
# order, each seeing the states the previous ones left, exactly as Zeek's handlers do.
Guard = Callable[[Segment, EP, EP], bool]
Effect = Callable[[Segment, Step], None]


def _always(seg: Segment, me: EP, peer: EP) -> bool:
    return True


def _set(me: EP | None = None, peer: EP | None = None, **flags: bool) -> Effect:
    def effect(seg: Segment, step: Step) -> None:
        if me is not None:
            step.me = me
        if peer is not None:
            step.peer = peer
        for name, value in flags.items():
            setattr(step, name, value)

    return effect


def _answer_syn(seg: Segment, step: Step) -> None:
    # The responder's SYN (normally a SYN-ACK) establishes both sides; a bare SYN answering a
    # SYN-ACK sent by the "originator" means the roles were reversed.
    if not seg.ack and step.peer == EP.SYN_ACK_SENT:
        step.flip = True
        step.peer = EP.ESTABLISHED
    if step.peer == EP.SYN_SENT:
        step.peer = EP.ESTABLISHED
    step.me = EP.ESTABLISHED


def _rst_from_inactive(seg: Segment, step: Step) -> None:
    step.me = EP.RESET
    step.close = True
    if seg.is_orig:
        step.reject = step.peer == EP.ESTABLISHED  # a reverse scan: SYN-ACK seen, then our RST
    else:
        step.reject = step.peer in (EP.SYN_SENT, EP.SYN_ACK_SENT)


def _plain_from_inactive(seg: Segment, step: Step) -> None:
    if step.me != EP.INACTIVE:
        return  # a control bit already moved this endpoint
    if not seg.is_orig and seg.payload == 0 and step.peer == EP.SYN_SENT:
        return  # some stacks ACK a SYN before answering it; not a partial connection
    if seg.ack and step.peer == EP.ESTABLISHED:
        step.me = EP.ESTABLISHED  # we missed the SYN but saw the SYN-ACK
    else:
        step.me = EP.PARTIAL


def _fin_established(seg: Segment, step: Step) -> None:
    step.me = EP.CLOSED
    step.close = True
    step.revive_peer = True  # the tracker checks whether the peer's RST followed its own FIN


def _rst_established(seg: Segment, step: Step) -> None:
    step.me = EP.RESET
    step.close = True


def _rst_closed(seg: Segment, step: Step) -> None:
    step.me = EP.RESET
    step.close = True  # the tracker ignores it when this side already reported its close


Rule = tuple[str, Guard, Effect]

TRANSITIONS: dict[EP, tuple[Rule, ...]] = {
    EP.INACTIVE: (
        ("syn", lambda s, me, p: s.is_orig and s.ack, _set(me=EP.SYN_ACK_SENT)),
        ("syn", lambda s, me, p: s.is_orig and not s.ack, _set(me=EP.SYN_SENT)),
        ("syn", lambda s, me, p: not s.is_orig, _answer_syn),
        ("fin", _always, _set(me=EP.CLOSED, close=True)),
        ("rst", _always, _rst_from_inactive),
        ("any", _always, _plain_from_inactive),
    ),
    EP.SYN_SENT: (
        ("fin", _always, _set(me=EP.CLOSED, close=True)),
        ("rst", _always, _set(me=EP.RESET, close=True)),
    ),
    EP.SYN_ACK_SENT: (
        ("fin", _always, _set(me=EP.CLOSED, close=True)),
        ("rst", _always, _set(me=EP.RESET, close=True)),
    ),
    EP.ESTABLISHED: (
        ("fin", lambda s, me, p: not s.rst, _fin_established),
        ("rst", _always, _rst_established),
    ),
    EP.PARTIAL: (
        ("syn", lambda s, me, p: p == EP.INACTIVE and not s.ack, _set(me=EP.SYN_SENT)),
        ("fin", lambda s, me, p: not s.rst, _fin_established),
        ("rst", _always, _rst_established),
    ),
    EP.CLOSED: (("rst", lambda s, me, p: p != EP.CLOSED, _rst_closed),),
    EP.RESET: (),
}


def transition(seg: Segment, me: EP, peer: EP) -> Step:
    """Apply the sender's segment to the (sender, peer) states."""
    step = Step(me=me, peer=peer)
    for bit, guard, effect in TRANSITIONS[me]:
        if (bit == "any" or getattr(seg, bit)) and guard(seg, step.me, step.peer):
            effect(seg, step)
    return step


_STEPS: dict[tuple[bool, bool, bool, bool, bool, bool, int, int], Step] = {}


def step_for(syn: bool, ack: bool, fin: bool, rst: bool, has_payload: bool, is_orig: bool, me: EP, peer: EP
             ) -> Step:
    """:func:`transition`'s outcome, remembered: the rules read only the control bits, whether there is
    payload, the direction and the two states (a few thousand combinations; the tests check every one
    against :func:`transition` with any payload and sequence numbers). The step is shared: read it only."""
    key = (syn, ack, fin, rst, has_payload, is_orig, me, peer)
    step = _STEPS.get(key)
    if step is None:
        step = _STEPS[key] = transition(Segment(syn, ack, fin, rst, 1 if has_payload else 0, is_orig), me, peer)
    return step


# Zeek's conn_state values, with the one-line meaning Zeek documents for each.
CONN_STATES: dict[str, str] = {
    "S0": "Connection attempt seen, no reply.",
    "S1": "Connection established, not terminated.",
    "SF": "Normal establishment and termination.",
    "REJ": "Connection attempt rejected.",
    "S2": "Connection established and close attempt by originator seen (but no reply from responder).",
    "S3": "Connection established and close attempt by responder seen (but no reply from originator).",
    "RSTO": "Connection established, originator aborted (sent a RST).",
    "RSTR": "Responder sent a RST.",
    "RSTOS0": "Originator sent a SYN followed by a RST, we never saw a SYN-ACK from the responder.",
    "RSTRH": "Responder sent a SYN ACK followed by a RST, we never saw a SYN from the (purported) originator.",
    "SH": "Originator sent a SYN followed by a FIN, we never saw a SYN ACK from the responder.",
    "SHR": "Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the originator.",
    "OTH": "No SYN seen, just midstream traffic.",
}


def _rstos0_history(history: str) -> bool:
    # Zeek: /^?S[^HAFGIQ]*R.*/ matched against the whole history
    start = 1 if history.startswith("^") else 0
    if len(history) <= start or history[start] != "S":
        return False
    for ch in history[start + 1 :]:
        if ch == "R":
            return True
        if ch in "HAFGIQ":
            return False
    return False


def conn_state(orig: EP, resp: EP, orig_size: int, resp_size: int, history: str) -> str:
    """Zeek's ``conn_state`` from the two endpoint states (base/protocols/conn/main.zeek)."""
    o_inactive = orig in (EP.INACTIVE, EP.PARTIAL)
    r_inactive = resp in (EP.INACTIVE, EP.PARTIAL)
    if resp == EP.RESET:
        if orig in (EP.SYN_SENT, EP.SYN_ACK_SENT) or (orig == EP.RESET and orig_size == 0 and resp_size == 0):
            return "REJ"
        return "RSTRH" if o_inactive else "RSTR"
    if orig == EP.RESET:
        if r_inactive:
            return "RSTOS0" if _rstos0_history(history) else "OTH"
        return "RSTO"
    if resp == EP.CLOSED and orig == EP.CLOSED:
        return "SF"
    if orig == EP.CLOSED:
        return "SH" if r_inactive else "S2"
    if resp == EP.CLOSED:
        return "SHR" if o_inactive else "S3"
    if orig == EP.SYN_SENT and resp == EP.INACTIVE:
        return "S0"
    if orig == EP.ESTABLISHED and resp == EP.ESTABLISHED:
        return "S1"
    return "OTH"

"""What the wire says about one RST: the facts every cause's scoring rule reads.

Each fact is computed once per RST from its :class:`~whyrst.tcp.track.ResetContext` and from what
the capture showed of the same hosts elsewhere (their usual TTL, the ports a source probed). The
rules in :mod:`whyrst.causes.catalog` only read these facts; they never look at packets themselves.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from whyrst.capture.batch import ACK, FIN, RESERVED, RST, SYN
from whyrst.tcp.seq import seq_delta
from whyrst.tcp.state import EP
from whyrst.tcp.track import NS, PacketRef, ResetContext

# Round timeouts applications and proxies are configured with (seconds).
ROUND_TIMEOUTS = (1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 75.0, 90.0, 120.0, 180.0, 300.0, 350.0, 600.0, 900.0)


@dataclass
class HostView:
    """Cross-connection knowledge gathered over the whole capture."""

    ttls: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    refused_ports: dict[str, set[tuple[str, int]]] = field(default_factory=lambda: defaultdict(set))
    # source address -> how many distinct (destination, port) pairs it sent a bare SYN to
    ports_probed: Mapping[str, int] = field(default_factory=dict)
    # (server addr, port) -> RST timestamps sent by that server to established connections
    server_rst_times: dict[tuple[str, int], list[int]] = field(default_factory=lambda: defaultdict(list))
    capture_start_ns: int = 0
    # server address and port -> (first, last, count) of its SYN-ACKs in the whole capture (the prepass's)
    answered: Any = None
    # endpoint (addr, port) -> (peer addr, peer port, uid, the peer's last sequence numbers, mid-stream start,
    # first frame) for the connections reset by a bare RST: the same numbers from two peers are one stream
    # under two tuples
    streams: dict[tuple[str, int], list[tuple[str, int, str, tuple[int, ...], bool, int]]] = field(
        default_factory=lambda: defaultdict(list))

    def port_answered(self, addr: str, port: int) -> tuple[int, int, int] | None:
        return self.answered.get(addr, port) if self.answered is not None else None

    def port_refusal(self, addr: str, port: int, client: str, client_port: int, ts_ns: int) -> tuple[int, int] | None:
        if self.answered is None:
            return None
        return self.answered.refusal(addr, port, client, client_port, ts_ns)

    def usual_ttl(self, addr: str) -> int:
        c = self.ttls.get(addr)
        return c.most_common(1)[0][0] if c else -1


@dataclass(init=False, slots=True)
class Features:
    """Facts about one RST. Times are seconds, sequence numbers relative.

    :func:`extract` makes one and sets every fact as it works it out (a constructor call with sixty keyword
    arguments cost 5 µs a RST, as much as working out a third of the facts)."""

    ctx: ResetContext
    sender_role: str  # "client" or "server" (who opened the connection), "unknown"
    rst_has_ack: bool
    rst_seq_zero: bool
    rst_payload: bytes
    reserved_bits: bool
    answers_syn: bool  # the RST answers the peer's SYN (acknowledges it), no SYN-ACK from the sender
    answers_synack: bool  # the SYN's sender resets right after the SYN-ACK, before its own ACK
    after_handshake_ack: bool  # handshake completed and the RST is the SYN sender's next packet
    handshake_seen: bool
    established: bool  # both sides reached ESTABLISHED at some point (or data flowed both ways)
    sender_only_syns: bool  # everything the sender sent before the RST was a SYN
    sender_sent_data: bool
    peer_sent_data: bool
    peer_data_unanswered: bool  # the peer's last data was ACKed but never answered before the RST
    sender_fin_before: bool
    peer_fin_before: bool
    both_fin_before: bool
    peer_data_after_sender_fin: bool
    trigger: PacketRef | None  # the peer's packet the RST answers (last packet from the peer)
    trigger_gap: float  # seconds between the trigger and the RST
    idle_before_rst: float  # seconds since the previous packet of the connection
    since_last_sender_pkt: float
    since_peer_data: float  # seconds since the peer's last data (inf when none)
    since_start: float
    # the RST's seq is the sender's next sequence number (or the peer's last ack); None when it is not and the
    # peer never acknowledged anything (the rules count only a definite False against the sender)
    seq_expected: bool | None
    seq_offset: int  # RST seq minus the sender's next sequence number (signed)
    bare_rst_seq_is_peer_ack: bool  # no ACK flag and seq == the peer's last ack
    no_socket_reply: bool  # built from the packet it answers, as a stack with no socket (or REJECT) does
    ttl_known: int  # the sender's usual TTL in this connection (-1 unknown)
    ttl_mismatch: bool
    ip_id_mismatch: bool
    ip_id_copied_from_peer: bool
    timestamps_expected_missing: bool  # the sender uses TCP timestamps but this RST has none
    sender_after_rst: int  # packets the RST's claimed sender sent after it (stack would be silent)
    peer_continues: int  # non-RST packets the peer sent after the RST
    more_rsts_diff_seq: bool  # several RSTs from this side with different sequence numbers
    rst_before_synack: bool  # a RST claiming to be the server arrives before the real SYN-ACK
    sender_keepalive_probes: int  # the sender's zero-length probes with seq = next - 1 before the RST
    refused_ports_from_source: int  # distinct ports of the peer refused across the capture
    window_zero: bool
    new_syn_after: bool  # the peer opened a new connection on the same tuple after the RST
    unknown_tuple_midstream: bool  # the tuple's first packet, well into the capture, is mid-stream: a changed tuple
    synack_after: bool  # the supposed sender answered with a SYN-ACK after the RST (injection race)
    data_after_rst_from_sender: bool
    # where the RST's seq falls in the receiver's window (RFC 5961: only the exact next sequence number resets;
    # one elsewhere in the window gets a challenge ACK, one outside it is dropped): "exact", "in-window",
    # "outside" or "unknown"; the offset from the receiver's next expected number, and its window in bytes
    rst_window: str
    window_offset: int
    receive_window: int
    challenge_ack: bool  # the receiver answered the RST with a bare ACK at once (RFC 5961)
    rst_ignored: bool  # not exact, and both sides went on sending: the RST ended nothing
    # the refusing port's other answers, seconds from the capture's start (-1: none): its latest SYN-ACK and
    # latest close (FIN or RST) before this refusal, its last SYN-ACK of the capture, and its SYN-ACKs
    port_history: tuple[float, float, float, int] | None
    rst_at: float  # seconds from the capture's start

    _lookups: _Lookups = field(repr=False, compare=False)
    # (what the properties below worked out, once read)
    _round_timeout: float | None = field(repr=False, compare=False)
    _simultaneous: int | None = field(repr=False, compare=False)
    _same_stream: Any = field(repr=False, compare=False)

    def __init__(self, ctx: ResetContext, lookups: _Lookups) -> None:
        self.ctx = ctx
        self._lookups = lookups
        self._round_timeout = self._simultaneous = None
        self._same_stream = _UNKNOWN

    # Facts from the prepass's host tables are looked up when a rule reads them: few rules do, for few RSTs,
    # and the first look-up of a host costs tens of µs (most hosts of a capture's resets are asked once).

    @property
    def host_ttl(self) -> int:
        """The sender address's usual TTL across the capture (-1: unknown)."""
        return self._lookups.ttls(self.ctx.src)[0]

    @property
    def probed_ports_from_source(self) -> int:
        """Distinct (destination, port) pairs the client sent a bare SYN to across the capture."""
        ctx = self.ctx
        return self._lookups.ports_probed(ctx.src if self.sender_role == "client" else ctx.dst)

    # Facts that rules read only in some situations (most RSTs never ask) are worked out when read.

    @property
    def idle_before_trigger(self) -> float:
        """Seconds of silence in the connection before the trigger."""
        trigger, before = self.trigger, self.ctx.before
        if trigger is None:
            return INF
        idx = len(before) - 1
        while before[idx] is not trigger:  # (the peer's last packet: at the end, or nearly)
            idx -= 1
        return (trigger.ts_ns - before[idx - 1].ts_ns) / NS if idx > 0 else INF

    @property
    def round_timeout(self) -> float:
        """The trigger-to-RST, start-to-RST or last-data-to-RST delay when it matches a round timeout (0: none)."""
        value = self._round_timeout
        if value is None:
            value = 0.0
            for delay in (self.trigger_gap, self.since_start, self.since_peer_data):
                if delay != INF and delay > 0.5:
                    value = _near_round(delay)
                    if value:
                        break
            self._round_timeout = value
        return value

    @property
    def simultaneous_server_rsts(self) -> int:
        """RSTs the same server port sent to other connections within 50 ms."""
        value = self._simultaneous
        if value is None:
            ctx = self.ctx
            near = 0
            if self.sender_role == "server":
                near = self._lookups.server_rsts_near(ctx.src, ctx.sport, ctx.rst.ts_ns)
            value = self._simultaneous = max(near - 1, 0)
        return value

    @property
    def same_stream(self) -> tuple[str, int, str, int] | None:
        """Another tuple carried the same sequence numbers to the same endpoint: (peer addr, port, uid, frame)."""
        value = self._same_stream
        if value is _UNKNOWN:
            ctx = self.ctx
            value = self._same_stream = same_stream(ctx, self._lookups.hosts) if not ctx.rst.flags & ACK else None
        return value

    # Facts no rule reads (yet) are worked out from the packets when read: unread, they cost nothing.

    @property
    def ack_expected(self) -> bool | None:
        """The RST acknowledges the end of one of the peer's segments (None: it has no ACK flag, or the peer
        sent nothing but RSTs)."""
        ctx = self.ctx
        rst = ctx.rst
        peer = [p for p in ctx.before if p.from_orig != ctx.sender_is_orig and not p.flags & RST]
        if not rst.flags & ACK or not peer:
            return None
        return any(rst.ack == (p.seq + p.payload_len + (1 if p.flags & (SYN | FIN) else 0)) & 0xFFFFFFFF for p in peer)

    @property
    def keepalive_probes(self) -> int:
        """The peer's zero-length probes with seq = next - 1 before the RST."""
        ctx = self.ctx
        peer = [p for p in ctx.before if p.from_orig != ctx.sender_is_orig and not p.flags & RST]
        return _keepalive_probes(ctx.before, not ctx.sender_is_orig, peer)

    @property
    def retransmissions_before(self) -> int:
        """How often the sender retransmitted its last data before the RST (unanswered)."""
        ctx = self.ctx
        data = [p for p in ctx.before if p.from_orig == ctx.sender_is_orig and not p.flags & RST and p.payload_len > 0]
        return sum(1 for p in data if p.rel_seq == data[-1].rel_seq) - 1 if data else 0

    @property
    def zero_window_before(self) -> bool:
        """One of the peer's last four packets (RSTs apart) advertised a zero window."""
        ctx = self.ctx
        theirs = [p for p in ctx.before if p.from_orig != ctx.sender_is_orig]
        return any(p.win == 0 and not p.flags & RST for p in theirs[-4:])


def _fmt_bool(v: bool | None) -> str:
    return "?" if v is None else ("yes" if v else "no")


def _near_round(seconds: float) -> float:
    for t in ROUND_TIMEOUTS:
        slack = max(0.03, t * 0.012)
        if abs(seconds - t) <= slack:
            return t
        if t - slack > seconds:  # (and so are all the later ones: t - slack grows with t)
            break
    return 0.0


INF = float("inf")
_UNKNOWN: Any = object()  # (a fact not worked out yet, where None is one of its values)
_ESTABLISHED = EP.ESTABLISHED  # (an enum member looked up on its class costs more than the comparison)


def _keepalive_probes(before: list[PacketRef], from_orig: bool, sent: list[PacketRef]) -> int:
    """Keepalive probes from one side among the last packets: zero-length segments one byte behind its next
    sequence number. ``sent`` is what that side sent before the RST, RSTs left out."""
    probes = 0
    next_seq = None  # the highest sequence number the side sent, plus one
    for p in before[-12:]:
        if p.from_orig == from_orig and p.payload_len <= 1 and not p.flags & (SYN | FIN | RST) and p.flags & ACK:
            if next_seq is None:
                next_seq = max(q.rel_seq + q.payload_len + (1 if q.flags & (SYN | FIN) else 0) for q in sent)
            if p.rel_seq == next_seq - 1:
                probes += 1
    return probes


def extract(ctx: ResetContext, hosts: HostView) -> Features:
    rst = ctx.rst
    rst_flags = rst.flags
    rst_t = rst.ts_ns
    conn = ctx.conn
    before = ctx.before
    sender_is_orig = ctx.sender_is_orig
    lookups = _lookups(hosts)
    f = Features(ctx, lookups)

    # the client sent the SYN; without one, the tracker's originator (Zeek's port heuristic) is the guess
    first_syn = first_synack = None
    for p in conn.head:
        if p.flags & SYN:
            if not p.flags & ACK:
                first_syn = first_syn or p
            else:
                first_synack = first_synack or p
            if first_syn is not None and first_synack is not None:
                break
    if first_syn is not None:
        client_is_orig = first_syn.from_orig
    elif first_synack is not None:
        client_is_orig = not first_synack.from_orig
    else:
        client_is_orig = True
    f.sender_role = role = "client" if sender_is_orig == client_is_orig else "server"

    # One pass over the packets before the RST, the sender's ("mine") and the peer's ("theirs"), for what the
    # facts below ask of them (about thirty packets at most, two dozen questions: one pass, not one each).
    nonrst_mine: list[PacketRef] = []  # the sender's packets, its own RSTs left out
    last_peer: PacketRef | None = None
    my_rst_seqs: list[int] = []  # the sequence numbers of the sender's RSTs (this one and those after added below)
    my_syn = my_synack = peer_syn = peer_synack = peer_fin = any_fin = False
    my_later = False  # the sender sent a non-RST packet without SYN
    my_not_syn_only = False  # ... or one that is not a bare SYN
    mine_quiet = theirs_quiet = True  # no payload from the sender (outside its RSTs), from the peer
    sender_fin: PacketRef | None = None  # the sender's first FIN
    last_sender_data: PacketRef | None = None
    last_peer_data: PacketRef | None = None  # (not a RST)
    last_peer_plain: PacketRef | None = None  # the peer's last packet without RST or SYN
    peer_ack: int | None = None  # the ack number of the peer's last packet with ACK
    for p in before:
        flags = p.flags
        if p.from_orig == sender_is_orig:
            if flags & SYN:
                if flags & ACK:
                    my_synack = True
                else:
                    my_syn = True
            if flags & FIN:
                any_fin = True
                sender_fin = sender_fin or p
            if flags & RST:
                my_rst_seqs.append(p.seq)
                continue
            nonrst_mine.append(p)
            if not flags & SYN:
                my_later = my_not_syn_only = True
            elif flags & ACK:
                my_not_syn_only = True
            if p.payload_len:
                mine_quiet = False
                if p.payload_len > 0:
                    last_sender_data = p
        else:
            last_peer = p
            if flags & SYN:
                if flags & ACK:
                    peer_synack = True
                else:
                    peer_syn = True
            if flags & FIN:
                any_fin = peer_fin = True
            if flags & ACK:
                peer_ack = p.ack
            if p.payload_len:
                theirs_quiet = False
                if p.payload_len > 0 and not flags & RST:
                    last_peer_data = p
            if not flags & (RST | SYN):
                last_peer_plain = p

    f.answers_syn = answers_syn = bool(
        last_peer is not None and last_peer.flags & SYN and not last_peer.flags & ACK and not my_synack
        and (not rst_flags & ACK or rst.ack == (last_peer.seq + 1) & 0xFFFFFFFF)
    )
    acks_after_synack = my_syn and my_later
    f.answers_synack = bool(my_syn and peer_synack and last_peer is not None and last_peer.flags & SYN
                            and last_peer.flags & ACK and not acks_after_synack)
    f.handshake_seen = handshake_seen = bool((first_syn is not None and first_synack is not None)
                                             or (peer_synack and my_syn) or (peer_syn and my_synack))
    f.after_handshake_ack = bool(my_syn and peer_synack and acks_after_synack and mine_quiet and theirs_quiet
                                 and not any_fin)
    f.established = (conn.orig.prev_state == _ESTABLISHED or conn.orig.state == _ESTABLISHED
                     or (last_sender_data is not None and last_peer_data is not None) or handshake_seen)
    f.sender_only_syns = bool(nonrst_mine) and not my_not_syn_only
    f.sender_sent_data = last_sender_data is not None
    f.peer_sent_data = last_peer_data is not None
    f.sender_fin_before = sender_fin is not None
    f.peer_fin_before = peer_fin
    f.both_fin_before = sender_fin is not None and peer_fin
    f.peer_data_after_sender_fin = bool(sender_fin and any(
        p.from_orig != sender_is_orig and p.payload_len > 0 and p.ts_ns >= sender_fin.ts_ns for p in before))
    # the peer's last data: acknowledged by the sender, and nothing sent back
    peer_data_unanswered = False
    if last_peer_data is not None:
        end = last_peer_data.rel_seq + last_peer_data.payload_len
        data_t = last_peer_data.ts_ns
        acked = replied = False
        for p in nonrst_mine:
            if p.ts_ns >= data_t:
                if p.payload_len > 0 and p.ts_ns > data_t:
                    replied = True
                    break
                if p.flags & ACK and p.rel_ack >= end:
                    acked = True
        peer_data_unanswered = not replied and bool(acked or (rst_flags & ACK and rst.rel_ack >= end))
    f.peer_data_unanswered = peer_data_unanswered

    f.trigger = trigger = last_peer
    f.trigger_gap = (rst_t - trigger.ts_ns) / NS if trigger is not None else INF
    f.idle_before_rst = (rst_t - before[-1].ts_ns) / NS if before else INF
    last_mine = nonrst_mine[-1] if nonrst_mine else None
    f.since_last_sender_pkt = (rst_t - last_mine.ts_ns) / NS if last_mine is not None else INF
    f.since_peer_data = (rst_t - last_peer_data.ts_ns) / NS if last_peer_data is not None else INF
    f.since_start = (rst_t - conn.start_ns) / NS

    # sequence expectations from the sender's own last segment and the peer's ACKs
    seq_expected: bool | None = None
    seq_offset = 0
    expected_next = None
    if last_mine is not None:
        expected_next = (last_mine.seq + last_mine.payload_len + (1 if last_mine.flags & (SYN | FIN) else 0)
                         ) & 0xFFFFFFFF
    elif peer_ack is not None:
        expected_next = peer_ack
    if expected_next is not None:
        seq_offset = seq_delta(rst.seq, expected_next)
        seq_expected = seq_offset == 0 or (rst.seq == peer_ack if peer_ack is not None else None)
    f.seq_expected = seq_expected
    f.seq_offset = seq_offset
    f.bare_rst_seq_is_peer_ack = bare_reply = bool(not rst_flags & ACK and peer_ack is not None
                                                   and rst.seq == peer_ack)
    # RFC 9293: to a segment with ACK, the reply is <SEQ=SEG.ACK><CTL=RST>; to one without, <SEQ=0><ACK=..>
    f.no_socket_reply = bare_reply or bool(
        last_peer is not None and not last_peer.flags & ACK and rst_flags & ACK and rst.seq == 0)

    fp = (conn.orig if sender_is_orig else conn.resp).fp
    f.ttl_known = fp.usual_ttl()
    # a TTL the endpoint never used; a capture on two interfaces of a router sees every packet twice,
    # one hop apart, so any TTL its genuine packets arrived with counts as its own
    own_ttls = fp.ttls or lookups.ttls(ctx.src)[1]
    f.ttl_mismatch = bool(own_ttls) and rst.ttl > 0 and rst.ttl not in own_ttls
    ip_id_mismatch = False
    ip_id_copied = False
    if rst.ip_id > 0 and fp.ip_ids:
        near = [x for x in fp.ip_ids if 0 <= (rst.ip_id - x) % 65536 <= 64]
        ip_id_mismatch = not near and fp.zero_ip_ids < len(fp.ip_ids)
    if (rst.ip_id > 0 and last_peer is not None and rst.ip_id == last_peer.ip_id
            and rst.ip_id not in fp.ip_ids and rst.ip_id not in {p.ip_id for p in nonrst_mine}):
        ip_id_copied = True
    f.ip_id_mismatch = ip_id_mismatch
    f.ip_id_copied_from_peer = ip_id_copied
    f.timestamps_expected_missing = fp.uses_timestamps and rst.ts_val < 0 and bool(rst_flags & ACK)

    # the packets after the RST: the sender's and the peer's (RSTs apart), and the peer's first answer
    sender_after = peer_after = 0
    sender_synack_after = sender_data_after = peer_data_after = peer_syn_after = False
    first_reply: PacketRef | None = None
    if rst.from_orig == sender_is_orig and rst_flags & RST:
        my_rst_seqs.append(rst.seq)
    for p in ctx.after:
        flags = p.flags
        if p.from_orig == sender_is_orig:
            if flags & RST:
                my_rst_seqs.append(p.seq)
                continue
            sender_after += 1
            if flags & SYN and flags & ACK:
                sender_synack_after = True
            if p.payload_len > 0:
                sender_data_after = True
        else:
            first_reply = first_reply or p
            if flags & SYN and not flags & ACK:
                peer_syn_after = True
            if not flags & RST:
                peer_after += 1
                if p.payload_len > 0:
                    peer_data_after = True
    f.sender_after_rst = sender_after
    f.peer_continues = peer_after
    f.more_rsts_diff_seq = len(my_rst_seqs) >= 2 and (
        len(set(my_rst_seqs)) >= 3 or any(abs(seq_delta(seq, rst.seq)) > 65535 for seq in my_rst_seqs))
    f.rst_before_synack = f.synack_after = bool(not my_synack and sender_synack_after)
    f.data_after_rst_from_sender = sender_data_after

    f.sender_keepalive_probes = _keepalive_probes(before, sender_is_orig, nonrst_mine)


    peer_addr = ctx.dst
    source = ctx.src if role == "client" else peer_addr
    f.refused_ports_from_source = lookups.refused_ports(source)
    f.window_zero = rst.win == 0
    f.new_syn_after = bool(conn.n_packets and peer_syn_after)

    # the receiver's window: its last advertised window (scaled), from its last ACK on
    peer_ep = conn.resp if sender_is_orig else conn.orig
    f.receive_window = receive_window = (last_peer_plain.win << peer_ep.window_scale) if last_peer_plain else 65535
    rcv_nxt = peer_ack if peer_ack is not None else expected_next
    rst_window, window_offset = "unknown", 0
    if rcv_nxt is not None:
        window_offset = seq_delta(rst.seq, rcv_nxt)
        if seq_expected or window_offset == 0:
            rst_window = "exact"
        elif 0 < window_offset < max(receive_window, 1):
            rst_window = "in-window"
        else:
            rst_window = "outside"
    f.rst_window = rst_window
    f.window_offset = window_offset
    f.challenge_ack = bool(rst_window == "in-window" and first_reply is not None and first_reply.flags & ACK
                           and not first_reply.flags & (SYN | FIN | RST) and first_reply.payload_len == 0
                           and first_reply.ts_ns - rst.ts_ns < 100_000_000)
    f.rst_ignored = rst_window in ("in-window", "outside") and sender_after > 0 and peer_after > 0 and (
        sender_data_after or peer_data_after)

    port_history = None
    if answers_syn:
        seen = lookups.port_answered(ctx.src, ctx.sport)
        refusal = hosts.port_refusal(ctx.src, ctx.sport, ctx.dst, ctx.dport, rst_t)
        if seen is not None and refusal is not None:
            start = hosts.capture_start_ns

            def rel(t: int) -> float:
                return (t - start) / NS if t >= 0 else -1.0

            port_history = (rel(refusal[0]), rel(refusal[1]), rel(seen[1]), seen[2])
    f.port_history = port_history

    f.rst_has_ack = bool(rst_flags & ACK)
    f.rst_seq_zero = rst.seq == 0
    f.rst_payload = ctx.payload
    f.reserved_bits = bool(rst_flags & RESERVED)
    # (a SYN the RST refuses does not start mid-stream)
    f.unknown_tuple_midstream = bool(not answers_syn and not handshake_seen and before and before[0] is last_peer
                                     and conn.start_ns - hosts.capture_start_ns > NS)
    f.rst_at = (rst_t - hosts.capture_start_ns) / NS
    return f


def _endpoints(ctx: ResetContext) -> tuple[tuple[str, int], tuple[str, int]]:
    """(originator, responder) of the RST's connection, as (address, port)."""
    sender, peer = (ctx.src, ctx.sport), (ctx.dst, ctx.dport)
    return (sender, peer) if ctx.sender_is_orig else (peer, sender)


STREAM_SEQS = 8  # sequence numbers kept per side: a re-mapped stream goes on where the old tuple stopped


def _sent_seqs(contexts: list[ResetContext]) -> tuple[tuple[int, ...], tuple[int, ...], bool, int]:
    """The last distinct absolute sequence numbers each side sent (originator's, responder's) in the
    packets kept around a connection's resets (RSTs left out), whether it started mid-stream, and its
    first kept frame."""
    sent: dict[bool, dict[int, None]] = {True: {}, False: {}}
    midstream = True
    first = -1
    for ctx in contexts:
        for packets in (ctx.before, ctx.after):
            for p in packets:
                if first < 0 or p.frame < first:
                    first = p.frame
                flags = p.flags
                if flags & SYN:
                    midstream = False
                if not flags & RST:
                    side = sent[p.from_orig]
                    side.pop(p.seq, None)
                    side[p.seq] = None
    return (tuple(sent[True])[-STREAM_SEQS:], tuple(sent[False])[-STREAM_SEQS:], midstream, first)


class _Lookups:
    """What the explanation asks of a :class:`HostView` about the hosts of its RSTs, each answered once: a
    capture's resets come from few hosts, asked the same again and again (a Counter's most_common, a miss
    in a prepass table, a scan of every RST time of a server port). Made when the first RST is explained,
    when every connection has been observed (the view does not change after), and kept on the view: a
    cache, not a field, so never merged or sent with it."""

    def __init__(self, hosts: HostView) -> None:
        self.hosts = hosts
        self._ttls: dict[str, tuple[int, Mapping[int, int] | tuple[()]]] = {}
        self._answered: dict[tuple[str, int], tuple[int, int, int] | None] = {}
        self._refused: dict[str, int] = {}
        self._probed: dict[str, int] = {}
        self._rst_times: dict[tuple[str, int], list[int]] = {}  # sorted
        # (endpoint, sequence number) -> the streams observed at that endpoint whose peer sent that number,
        # and the endpoints that have any
        index: dict[tuple[tuple[str, int], int], list[tuple[str, int, str, bool, int]]] = {}
        for here, entries in hosts.streams.items():
            if len(entries) < 2:
                continue
            for addr, port, uid, seqs, midstream, frame in entries:
                for seq in seqs:
                    index.setdefault((here, seq), []).append((addr, port, uid, midstream, frame))
        self.stream_index = index
        self.stream_ends = {here for here, _ in index}

    def ttls(self, addr: str) -> tuple[int, Mapping[int, int] | tuple[()]]:
        """The address's usual TTL (-1: unknown) and its TTLs across the capture (empty: none)."""
        hit = self._ttls.get(addr)
        if hit is None:
            hit = self._ttls[addr] = (self.hosts.usual_ttl(addr), self.hosts.ttls.get(addr, ()))
        return hit

    def port_answered(self, addr: str, port: int) -> tuple[int, int, int] | None:
        key = (addr, port)
        if key in self._answered:
            return self._answered[key]
        hit = self._answered[key] = self.hosts.port_answered(addr, port)
        return hit

    def refused_ports(self, addr: str) -> int:
        hit = self._refused.get(addr)
        if hit is None:
            hit = self._refused[addr] = len(self.hosts.refused_ports.get(addr, ()))
        return hit

    def ports_probed(self, addr: str) -> int:
        hit = self._probed.get(addr)
        if hit is None:
            hit = self._probed[addr] = self.hosts.ports_probed.get(addr, 0)
        return hit

    def server_rsts_near(self, addr: str, port: int, ts_ns: int) -> int:
        """The RSTs ``addr``:``port`` sent to established connections within 50 ms of ``ts_ns``."""
        times = self._rst_times.get((addr, port))
        if times is None:
            times = self._rst_times[(addr, port)] = sorted(self.hosts.server_rst_times.get((addr, port), ()))
        return bisect_right(times, ts_ns + 50_000_000) - bisect_left(times, ts_ns - 50_000_000)


def _lookups(hosts: HostView) -> _Lookups:
    lookups = getattr(hosts, "_lookups", None)
    if lookups is None:
        lookups = hosts._lookups = _Lookups(hosts)  # type: ignore[attr-defined]
    return lookups


def same_stream(ctx: ResetContext, hosts: HostView) -> tuple[str, int, str, int] | None:
    """Another connection (with resets) that carried the same sequence numbers to the same endpoint from
    another address or port: (its peer address, port, uid, first frame). One side of either connection must
    have started mid-stream: a NAT that lost its mapping sends the rest of the stream under a new tuple."""
    if not hosts.streams:
        return None
    lookups = _lookups(hosts)
    orig, resp = _endpoints(ctx)
    if orig not in lookups.stream_ends and resp not in lookups.stream_ends:
        return None  # (most: no other connection reset by a bare RST reached either end)
    index = lookups.stream_index
    mine_orig, mine_resp, midstream, _ = _sent_seqs([ctx])
    me = ctx.conn.uid
    found = [(frame, addr, port, uid)
             for here, peer, peer_seqs in ((resp, orig, mine_orig), (orig, resp, mine_resp))
             for seq in peer_seqs
             for addr, port, uid, other_mid, frame in index.get((here, seq), ())
             if uid != me and (addr, port) != peer and (midstream or other_mid)]
    if not found:
        return None
    frame, addr, port, uid = min(found)  # the earliest: the same answer however the capture was cut
    return addr, port, uid, frame


def observe_hosts(conn_resets: list[ResetContext], hosts: HostView) -> None:
    """Add what one connection's resets say about hosts (called as connections finish)."""
    if any(not ctx.rst.flags & ACK for ctx in conn_resets):
        orig, resp = _endpoints(conn_resets[0])
        by_orig, by_resp, midstream, first = _sent_seqs(conn_resets)
        uid = conn_resets[0].conn.uid
        hosts.streams[resp].append((*orig, uid, by_orig, midstream, first))
        hosts.streams[orig].append((*resp, uid, by_resp, midstream, first))
    for ctx in conn_resets:
        sender_is_orig = ctx.sender_is_orig
        for p in reversed(ctx.before):  # the peer's last packet (at the end, or nearly)
            if p.from_orig != sender_is_orig:
                if p.flags & SYN and not p.flags & ACK:
                    hosts.refused_ports[ctx.dst].add((ctx.src, ctx.sport))
                break
        hosts.server_rst_times[(ctx.src, ctx.sport)].append(ctx.rst.ts_ns)

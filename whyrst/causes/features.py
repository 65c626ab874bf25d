"""What the wire says about one RST: the facts every cause's scoring rule reads.

Each fact is computed once per RST from its :class:`~whyrst.tcp.track.ResetContext` and from what
the capture showed of the same hosts elsewhere (their usual TTL, the ports a source probed). The
rules in :mod:`whyrst.causes.catalog` only read these facts; they never look at packets themselves.
"""

from __future__ import annotations

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


@dataclass
class Features:
    """Facts about one RST. Times are seconds, sequence numbers relative."""

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
    idle_before_trigger: float  # seconds of silence in the connection before the trigger
    idle_before_rst: float  # seconds since the previous packet of the connection
    since_last_sender_pkt: float
    since_peer_data: float  # seconds since the peer's last data (inf when none)
    since_start: float
    seq_expected: bool | None  # the RST's seq is the sender's next sequence number
    seq_offset: int  # RST seq minus the sender's next sequence number (signed)
    ack_expected: bool | None
    bare_rst_seq_is_peer_ack: bool  # no ACK flag and seq == the peer's last ack
    no_socket_reply: bool  # built from the packet it answers, as a stack with no socket (or REJECT) does
    ttl_known: int  # the sender's usual TTL in this connection (-1 unknown)
    host_ttl: int  # the sender address's usual TTL across the capture
    ttl_mismatch: bool
    ip_id_mismatch: bool
    ip_id_copied_from_peer: bool
    timestamps_expected_missing: bool  # the sender uses TCP timestamps but this RST has none
    sender_after_rst: int  # packets the RST's claimed sender sent after it (stack would be silent)
    peer_continues: int  # non-RST packets the peer sent after the RST
    more_rsts_diff_seq: bool  # several RSTs from this side with different sequence numbers
    rst_before_synack: bool  # a RST claiming to be the server arrives before the real SYN-ACK
    keepalive_probes: int  # peer's zero-length probes with seq = next - 1 before the RST
    sender_keepalive_probes: int
    retransmissions_before: int  # sender retransmitted its last data before the RST (unanswered)
    round_timeout: float  # the trigger-to-RST or start-to-RST delay when it matches a round timeout
    refused_ports_from_source: int  # distinct ports of the peer refused across the capture
    probed_ports_from_source: int
    simultaneous_server_rsts: int  # RSTs the same server port sent to other connections within 50 ms
    window_zero: bool
    zero_window_before: bool
    new_syn_after: bool  # the peer opened a new connection on the same tuple after the RST
    unknown_tuple_midstream: bool  # the tuple's first packet, well into the capture, is mid-stream: a changed tuple
    synack_after: bool  # the supposed sender answered with a SYN-ACK after the RST (injection race)
    data_after_rst_from_sender: bool
    # where the RST's seq falls in the receiver's window (RFC 5961: only the exact next sequence number resets;
    # one elsewhere in the window gets a challenge ACK, one outside it is dropped): "exact", "in-window",
    # "outside" or "unknown"; the offset from the receiver's next expected number, and its window in bytes
    rst_window: str = "unknown"
    window_offset: int = 0
    receive_window: int = 0
    challenge_ack: bool = False  # the receiver answered the RST with a bare ACK at once (RFC 5961)
    rst_ignored: bool = False  # not exact, and both sides went on sending: the RST ended nothing
    # the refusing port's other answers, seconds from the capture's start (-1: none): its latest SYN-ACK and
    # latest close (FIN or RST) before this refusal, its last SYN-ACK of the capture, and its SYN-ACKs
    port_history: tuple[float, float, float, int] | None = None
    rst_at: float = 0.0  # seconds from the capture's start
    # another tuple carried the same sequence numbers to the same endpoint: (peer addr, port, uid, frame)
    same_stream: tuple[str, int, str, int] | None = None


def _fmt_bool(v: bool | None) -> str:
    return "?" if v is None else ("yes" if v else "no")


def _near_round(seconds: float) -> float:
    for t in ROUND_TIMEOUTS:
        if abs(seconds - t) <= max(0.03, t * 0.012):
            return t
    return 0.0


def extract(ctx: ResetContext, hosts: HostView) -> Features:
    rst = ctx.rst
    conn = ctx.conn
    before = ctx.before
    sender_is_orig = ctx.sender_is_orig
    mine = [p for p in before if p.from_orig == sender_is_orig]
    theirs = [p for p in before if p.from_orig != sender_is_orig]
    nonrst_mine = [p for p in mine if not p.flags & RST]

    syns = [p for p in conn.head if p.flags & SYN and not p.flags & ACK]
    synacks = [p for p in conn.head if p.flags & SYN and p.flags & ACK]
    # the client sent the SYN; without one, the tracker's originator (Zeek's port heuristic) is the guess
    if syns:
        client_is_orig = syns[0].from_orig
    elif synacks:
        client_is_orig = not synacks[0].from_orig
    else:
        client_is_orig = True
    role = "client" if sender_is_orig == client_is_orig else "server"

    last_peer = theirs[-1] if theirs else None
    last_any = before[-1] if before else None
    peer_syn = [p for p in theirs if p.flags & SYN and not p.flags & ACK]
    my_synack = [p for p in mine if p.flags & SYN and p.flags & ACK]
    my_syn = [p for p in mine if p.flags & SYN and not p.flags & ACK]
    peer_synack = [p for p in theirs if p.flags & SYN and p.flags & ACK]

    answers_syn = bool(
        last_peer and last_peer.flags & SYN and not last_peer.flags & ACK and not my_synack
        and (not rst.flags & ACK or rst.ack == (last_peer.seq + 1) & 0xFFFFFFFF)
    )
    my_acks_after_synack = [p for p in nonrst_mine if not p.flags & SYN and my_syn]
    answers_synack = bool(my_syn and peer_synack and last_peer is not None and last_peer.flags & SYN
                          and last_peer.flags & ACK and not my_acks_after_synack)
    handshake_seen = bool((syns and synacks) or (peer_synack and my_syn) or (peer_syn and my_synack))
    after_handshake_ack = bool(
        my_syn and peer_synack and my_acks_after_synack
        and all(p.payload_len == 0 for p in nonrst_mine)
        and all(p.payload_len == 0 for p in theirs)
        and not any(p.flags & FIN for p in before)
    )
    sender_data = [p for p in nonrst_mine if p.payload_len > 0]
    peer_data = [p for p in theirs if p.payload_len > 0 and not p.flags & RST]
    established = conn.orig.prev_state == EP.ESTABLISHED or conn.orig.state == EP.ESTABLISHED or bool(
        sender_data and peer_data) or handshake_seen

    sender_fin = next((p for p in mine if p.flags & FIN), None)
    peer_fin = next((p for p in theirs if p.flags & FIN), None)
    peer_data_after_fin = bool(sender_fin and any(p.payload_len > 0 and p.ts_ns >= sender_fin.ts_ns
                                                  for p in theirs))
    # the peer's last data: acknowledged by the sender, and nothing sent back
    peer_data_unanswered = False
    if peer_data:
        last_data = peer_data[-1]
        end = last_data.rel_seq + last_data.payload_len
        acked = any(p.flags & ACK and p.rel_ack >= end and p.ts_ns >= last_data.ts_ns for p in nonrst_mine) or (
            rst.flags & ACK and rst.rel_ack >= end)
        replied = any(p.payload_len > 0 and p.ts_ns > last_data.ts_ns for p in nonrst_mine)
        peer_data_unanswered = acked and not replied

    trigger = last_peer
    rst_t = rst.ts_ns
    trigger_gap = (rst_t - trigger.ts_ns) / NS if trigger else float("inf")
    idle_before_trigger = float("inf")
    if trigger is not None:
        idx = next(i for i in range(len(before) - 1, -1, -1) if before[i] is trigger)  # (the peer's last)
        idle_before_trigger = (trigger.ts_ns - before[idx - 1].ts_ns) / NS if idx > 0 else float("inf")
    idle_before_rst = (rst_t - last_any.ts_ns) / NS if last_any else float("inf")
    since_last_sender = (rst_t - nonrst_mine[-1].ts_ns) / NS if nonrst_mine else float("inf")
    since_peer_data = (rst_t - peer_data[-1].ts_ns) / NS if peer_data else float("inf")
    since_start = (rst_t - conn.start_ns) / NS

    # sequence expectations from the sender's own last segment and the peer's ACKs
    seq_expected: bool | None = None
    seq_offset = 0
    expected_next = None
    for p in reversed(nonrst_mine):
        expected_next = (p.seq + p.payload_len + (1 if p.flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        break
    peer_acks = [p.ack for p in theirs if p.flags & ACK]
    if expected_next is None and peer_acks:
        expected_next = peer_acks[-1]
    if expected_next is not None:
        seq_offset = seq_delta(rst.seq, expected_next)
        seq_expected = seq_offset == 0 or (peer_acks and rst.seq == peer_acks[-1])
    ack_expected: bool | None = None
    if rst.flags & ACK and theirs:
        lp = [p for p in theirs if not p.flags & RST]
        if lp:
            q = lp[-1]
            nxt = (q.seq + q.payload_len + (1 if q.flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
            ack_expected = rst.ack == nxt or any(
                rst.ack == (x.seq + x.payload_len + (1 if x.flags & (SYN | FIN) else 0)) & 0xFFFFFFFF for x in lp)
    bare_reply = bool(not rst.flags & ACK and peer_acks and rst.seq == peer_acks[-1])
    # RFC 9293: to a segment with ACK, the reply is <SEQ=SEG.ACK><CTL=RST>; to one without, <SEQ=0><ACK=..>
    no_socket_reply = bare_reply or bool(
        last_peer is not None and not last_peer.flags & ACK and rst.flags & ACK and rst.seq == 0)

    fp = (conn.orig if sender_is_orig else conn.resp).fp
    ttl_known = fp.usual_ttl()
    host_ttl = hosts.usual_ttl(ctx.src)
    # a TTL the endpoint never used; a capture on two interfaces of a router sees every packet twice,
    # one hop apart, so any TTL its genuine packets arrived with counts as its own
    own_ttls = set(fp.ttls) if fp.ttls else set(hosts.ttls.get(ctx.src, ()))
    ttl_mismatch = bool(own_ttls) and rst.ttl > 0 and rst.ttl not in own_ttls
    ip_id_mismatch = False
    ip_id_copied = False
    if rst.ip_id > 0 and fp.ip_ids:
        near = [x for x in fp.ip_ids if 0 <= (rst.ip_id - x) % 65536 <= 64]
        ip_id_mismatch = not near and fp.zero_ip_ids < len(fp.ip_ids)
    if (rst.ip_id > 0 and last_peer is not None and rst.ip_id == last_peer.ip_id
            and rst.ip_id not in fp.ip_ids and rst.ip_id not in {p.ip_id for p in nonrst_mine}):
        ip_id_copied = True
    ts_missing = fp.uses_timestamps and rst.ts_val < 0 and bool(rst.flags & ACK)

    after = ctx.after
    sender_after = [p for p in after if p.from_orig == sender_is_orig and not p.flags & RST]
    peer_after = [p for p in after if p.from_orig != sender_is_orig and not p.flags & RST]
    my_rsts = [p for p in [*mine, rst, *after] if p.from_orig == sender_is_orig and p.flags & RST]
    more_rsts_diff_seq = len({p.seq for p in my_rsts}) >= 3 or (
        len(my_rsts) >= 2 and any(abs(seq_delta(p.seq, rst.seq)) > 65535 for p in my_rsts))
    rst_before_synack = bool(not my_synack and any(p.flags & SYN and p.flags & ACK for p in sender_after))

    # keepalive probes: zero-length segments one byte behind the sender's next sequence number
    probes_by = {True: 0, False: 0}
    next_seq: dict[bool, int] = {}  # per direction: the highest sequence number sent, plus one
    for p in before[-12:]:
        if p.payload_len <= 1 and not p.flags & (SYN | FIN | RST) and p.flags & ACK:
            hi = next_seq.get(p.from_orig)
            if hi is None:
                hi = next_seq[p.from_orig] = max(
                    q.rel_seq + q.payload_len + (1 if q.flags & (SYN | FIN) else 0)
                    for q in before if q.from_orig == p.from_orig and not q.flags & RST)
            if p.rel_seq == hi - 1:
                probes_by[p.from_orig] += 1
    rexmit = 0
    if sender_data:
        last = sender_data[-1]
        rexmit = sum(1 for p in sender_data if p.rel_seq == last.rel_seq) - 1

    round_timeout = 0.0
    for delay in (trigger_gap, since_start, since_peer_data):
        if delay != float("inf") and delay > 0.5:
            round_timeout = _near_round(delay)
            if round_timeout:
                break

    peer_addr = ctx.dst
    sim = 0
    if role == "server":
        times = hosts.server_rst_times.get((ctx.src, ctx.sport), [])
        sim = sum(1 for t in times if abs(t - rst_t) <= 50_000_000) - 1

    later_conn_syn = bool(ctx.conn.n_packets and any(
        p.flags & SYN and not p.flags & ACK and p.from_orig != sender_is_orig for p in after))

    # the receiver's window: its last advertised window (scaled), from its last ACK on
    peer_ep = conn.resp if sender_is_orig else conn.orig
    peer_plain = [p for p in theirs if not p.flags & (RST | SYN)]
    receive_window = (peer_plain[-1].win << peer_ep.window_scale) if peer_plain else 65535
    rcv_nxt = peer_acks[-1] if peer_acks else expected_next
    rst_window, window_offset = "unknown", 0
    if rcv_nxt is not None:
        window_offset = seq_delta(rst.seq, rcv_nxt)
        if seq_expected or window_offset == 0:
            rst_window = "exact"
        elif 0 < window_offset < max(receive_window, 1):
            rst_window = "in-window"
        else:
            rst_window = "outside"
    first_reply = next((p for p in after if p.from_orig != sender_is_orig), None)
    challenge_ack = bool(rst_window == "in-window" and first_reply is not None and first_reply.flags & ACK
                         and not first_reply.flags & (SYN | FIN | RST) and first_reply.payload_len == 0
                         and first_reply.ts_ns - rst.ts_ns < 100_000_000)
    rst_ignored = rst_window in ("in-window", "outside") and bool(sender_after) and bool(peer_after) and any(
        p.payload_len > 0 for p in [*sender_after, *peer_after])

    port_history = None
    if answers_syn:
        seen = hosts.port_answered(ctx.src, ctx.sport)
        before = hosts.port_refusal(ctx.src, ctx.sport, ctx.dst, ctx.dport, rst_t)
        if seen is not None and before is not None:
            start = hosts.capture_start_ns

            def rel(t: int) -> float:
                return (t - start) / NS if t >= 0 else -1.0

            port_history = (rel(before[0]), rel(before[1]), rel(seen[1]), seen[2])

    return Features(
        ctx=ctx,
        sender_role=role,
        rst_has_ack=bool(rst.flags & ACK),
        rst_seq_zero=rst.seq == 0,
        rst_payload=ctx.payload,
        reserved_bits=bool(rst.flags & RESERVED),
        answers_syn=answers_syn,
        answers_synack=answers_synack,
        after_handshake_ack=after_handshake_ack,
        handshake_seen=handshake_seen,
        established=established,
        sender_only_syns=bool(nonrst_mine) and all(p.flags & SYN and not p.flags & ACK for p in nonrst_mine),
        sender_sent_data=bool(sender_data),
        peer_sent_data=bool(peer_data),
        peer_data_unanswered=peer_data_unanswered,
        sender_fin_before=sender_fin is not None,
        peer_fin_before=peer_fin is not None,
        both_fin_before=sender_fin is not None and peer_fin is not None,
        peer_data_after_sender_fin=peer_data_after_fin,
        trigger=trigger,
        trigger_gap=trigger_gap,
        idle_before_trigger=idle_before_trigger,
        idle_before_rst=idle_before_rst,
        since_last_sender_pkt=since_last_sender,
        since_peer_data=since_peer_data,
        since_start=since_start,
        seq_expected=seq_expected,
        seq_offset=seq_offset,
        ack_expected=ack_expected,
        bare_rst_seq_is_peer_ack=bare_reply,
        no_socket_reply=no_socket_reply,
        ttl_known=ttl_known,
        host_ttl=host_ttl,
        ttl_mismatch=ttl_mismatch,
        ip_id_mismatch=ip_id_mismatch,
        ip_id_copied_from_peer=ip_id_copied,
        timestamps_expected_missing=ts_missing,
        sender_after_rst=len(sender_after),
        peer_continues=len(peer_after),
        more_rsts_diff_seq=more_rsts_diff_seq,
        rst_before_synack=rst_before_synack,
        keepalive_probes=probes_by[not sender_is_orig],
        sender_keepalive_probes=probes_by[sender_is_orig],
        retransmissions_before=rexmit,
        round_timeout=round_timeout,
        refused_ports_from_source=len(hosts.refused_ports.get(ctx.src if role == "client" else peer_addr, ())),
        probed_ports_from_source=hosts.ports_probed.get(ctx.src if role == "client" else peer_addr, 0),
        simultaneous_server_rsts=max(sim, 0),
        window_zero=rst.win == 0,
        zero_window_before=any(p.win == 0 and not p.flags & RST for p in theirs[-4:]),
        new_syn_after=later_conn_syn,
        unknown_tuple_midstream=bool(not handshake_seen and before and before[0] is last_peer
                                     and conn.start_ns - hosts.capture_start_ns > NS),
        synack_after=rst_before_synack,
        data_after_rst_from_sender=any(p.payload_len > 0 for p in sender_after),
        rst_window=rst_window,
        window_offset=window_offset,
        receive_window=receive_window,
        challenge_ack=challenge_ack,
        rst_ignored=rst_ignored,
        port_history=port_history,
        rst_at=(rst_t - hosts.capture_start_ns) / NS,
        same_stream=same_stream(ctx, hosts) if not rst.flags & ACK else None,
    )


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
        for p in (*ctx.before, *ctx.after):
            if first < 0 or p.frame < first:
                first = p.frame
            if p.flags & SYN:
                midstream = False
            if not p.flags & RST:
                side = sent[p.from_orig]
                side.pop(p.seq, None)
                side[p.seq] = None
    return (tuple(sent[True])[-STREAM_SEQS:], tuple(sent[False])[-STREAM_SEQS:], midstream, first)


def _stream_index(hosts: HostView) -> dict[tuple[tuple[str, int], int], list[tuple[str, int, str, bool, int]]]:
    """(endpoint, sequence number) -> the streams observed at that endpoint whose peer sent that number
    (built once, when the first RST is explained: every connection has been observed by then)."""
    index = getattr(hosts, "_stream_index", None)
    if index is None:
        index = {}
        for here, entries in hosts.streams.items():
            if len(entries) < 2:
                continue
            for addr, port, uid, seqs, midstream, frame in entries:
                for seq in seqs:
                    index.setdefault((here, seq), []).append((addr, port, uid, midstream, frame))
        hosts._stream_index = index  # type: ignore[attr-defined]  # (a cache, not a field: not merged)
    return index


def same_stream(ctx: ResetContext, hosts: HostView) -> tuple[str, int, str, int] | None:
    """Another connection (with resets) that carried the same sequence numbers to the same endpoint from
    another address or port: (its peer address, port, uid, first frame). One side of either connection must
    have started mid-stream: a NAT that lost its mapping sends the rest of the stream under a new tuple."""
    if not hosts.streams:
        return None
    index = _stream_index(hosts)
    orig, resp = _endpoints(ctx)
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
        rst = ctx.rst
        before = ctx.before
        theirs = [p for p in before if p.from_orig != ctx.sender_is_orig]
        if theirs and theirs[-1].flags & SYN and not theirs[-1].flags & ACK:
            hosts.refused_ports[ctx.dst].add((ctx.src, ctx.sport))
        hosts.server_rst_times[(ctx.src, ctx.sport)].append(rst.ts_ns)

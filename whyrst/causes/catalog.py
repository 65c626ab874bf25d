"""The cause catalog: each cause is data (what, why, signature, confirm, fix, kernel reasons) plus one
small scoring rule that reads :class:`~whyrst.causes.features.Features` and returns a score in [0, 1]
with the reasons, in plain sentences, that raised it. Adding a cause touches this file only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from whyrst.causes.features import Features

Verdict = tuple[float, list[str]]


@dataclass(frozen=True)
class Cause:
    id: str
    title: str
    summary: str  # what it is, one paragraph
    why: str  # why it happens / why it matters
    signature: str  # what it looks like on the wire
    example: str  # a tcpdump -nn trace
    confirm: tuple[str, ...]  # host-side commands that confirm it, each with what to look for
    fix: tuple[str, ...]
    kernel_reasons: tuple[str, ...]  # Linux sk_rst_reason values seen for it (tcp:tcp_send_reset)
    sender: str  # who usually makes the RST: endpoint, firewall, middlebox, injector
    score: Callable[[Features], Verdict]


def _secs(x: float) -> str:
    return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"


# -- scoring rules ---------------------------------------------------------------------------------

def _closed_port(f: Features) -> Verdict:
    if not f.answers_syn:
        return 0.0, []
    why = ["It answers the peer's SYN directly: no SYN-ACK was ever sent, so nothing accepted the connection."]
    s = 0.8
    if f.rst_has_ack and f.rst_seq_zero:
        why.append("RST,ACK with seq 0 acknowledging the SYN is exactly what a Linux/BSD stack sends when no "
                   "socket listens on the port.")
    if f.ttl_mismatch:
        s = 0.3
        why.append(f"But its TTL {f.ctx.rst.ttl} differs from the usual {max(f.ttl_known, f.host_ttl)} of that "
                   "address, which points at a box on the path rather than the host's stack.")
    if f.refused_ports_from_source >= 5:
        s -= 0.2
    if _port_listens_around(f):
        s = min(s, 0.35)
        why.append(_port_listens_text(f) + " This refusal was chosen for this connection, unless the service "
                   "restarted in between.")
    elif _port_restarted(f):
        synack, close, last, _ = f.port_history or (0.0, 0.0, 0.0, 0)
        why.append(f"{f.ctx.src}:{f.ctx.sport} answers SYNs in this capture, but its last SYN-ACK before this "
                   f"refusal ({_secs(f.rst_at - synack)} before it) was followed by a connection it closed "
                   f"({_secs(f.rst_at - close)} before it), and it answers again afterwards (its last SYN-ACK "
                   f"{_secs(last - f.rst_at)} after it): a listener that was gone for a moment, as when a service "
                   "restarts or re-opens its socket between sessions.")
    if f.synack_after:
        s = 0.1
        why.append("But the same address answered the SYN with a SYN-ACK afterwards: the port is open.")
    return s, why


def _port_listens_around(f: Features) -> bool:
    """The refusing port opened a connection after its last close, and answers SYNs again later."""
    h = f.port_history
    return h is not None and h[0] >= 0 and h[0] > h[1] and h[2] > h[0] and h[2] > f.rst_at


def _port_restarted(f: Features) -> bool:
    """The refusing port closed its last connection after its last SYN-ACK, and answers again later."""
    h = f.port_history
    return h is not None and h[0] >= 0 and h[1] > h[0] and h[2] > f.rst_at


def _port_listens_text(f: Features) -> str:
    synack, _, last, n = f.port_history or (0.0, 0.0, 0.0, 0)
    return (f"{f.ctx.src}:{f.ctx.sport} answered {n} SYN(s) with a SYN-ACK in this capture: the last one before "
            f"this refusal {_secs(f.rst_at - synack)} before it, no connection of that port closed since, and "
            f"it answers again afterwards (its last SYN-ACK {_secs(last - f.rst_at)} after it): a socket "
            "listens there.")


def _firewall_reject(f: Features) -> Verdict:
    why = []
    if f.answers_syn:
        if f.ttl_mismatch:
            why.append(f"The refusal's TTL {f.ctx.rst.ttl} differs from the {max(f.ttl_known, f.host_ttl)} the "
                       "server's own packets arrive with: another device generated it on the server's behalf.")
            return 0.75, why
        why.append("A packet filter with REJECT --reject-with tcp-reset answers a SYN exactly like a closed port.")
        if _port_listens_around(f):
            why.append(_port_listens_text(f) + " A rule that rejects some connections to an open port (by "
                       "source address, connection count or rate) answers exactly like this.")
            return 0.6, why
        return 0.3, why
    if (f.established and not f.rst_has_ack and f.bare_rst_seq_is_peer_ack and not f.sender_fin_before
            and not f.answers_synack and not f.sender_only_syns):
        s = 0.3
        why.append("A bare RST (no ACK flag) whose seq is the peer's acknowledgement number is a reply "
                   "synthesised from the offending packet, which is how netfilter's REJECT (and a stack "
                   "with no socket) answer.")
        if f.ttl_mismatch:
            s += 0.4
            why.append(f"Its TTL {f.ctx.rst.ttl} is not the {f.ttl_known} of the endpoint's other packets.")
        if f.sender_after_rst:
            s += 0.3
            why.append("The endpoint it claims to come from kept sending after it, so its own stack did not "
                       "reset the connection.")
        if not f.ttl_mismatch and not f.sender_after_rst:
            s -= 0.05  # on the host itself a REJECT looks like the stack; the stack is the likelier
        if f.same_stream:
            s -= 0.3  # the stream went on under another tuple: a translation changed, see nat-expired
        return max(min(s, 0.9), 0.0), why
    return 0.0, []


def _abortive_close(f: Features) -> Verdict:
    if not (f.established and f.rst_has_ack) or f.answers_syn or f.answers_synack:
        return 0.0, []
    if f.trigger_gap < 0.0005 and f.peer_sent_data and not f.sender_fin_before:
        return 0.1, []
    s, why = 0.45, ["An RST,ACK carrying the sender's next sequence number, sent on its own initiative, is how "
                    "a socket closed with SO_LINGER {on, 0} ends a connection."]
    if f.seq_expected is False:
        s -= 0.25
    if f.peer_data_unanswered:
        s -= 0.1
        why.append("The peer's last request was acknowledged but never answered, which a close with unread "
                   "data also explains.")
    elif f.sender_sent_data or not f.peer_sent_data:
        s += 0.2
        why.append("No received data was left unanswered, so this was not a close with unread data.")
    if f.round_timeout and f.peer_data_unanswered:
        s += 0.25
        why.append(f"It came {f.round_timeout:g} s after the connection started or was last active, while the "
                   "peer's request was still incomplete: a configured timeout (e.g. nginx client_header_timeout "
                   "with reset_timedout_connection on).")
    if f.round_timeout and not f.peer_data_unanswered and f.idle_before_rst >= 0.9 * f.round_timeout:
        s -= 0.1  # a timeout on a quiet connection is an idle timeout first
    if f.sender_fin_before and not f.peer_data_after_sender_fin:
        s += 0.05
    if f.sender_keepalive_probes >= 2:
        s -= 0.3
    if f.simultaneous_server_rsts >= 1 and not f.sender_sent_data:
        s -= 0.2
    if f.ttl_mismatch:
        s -= 0.3
    return max(s, 0.0), why


def _unread_data_close(f: Features) -> Verdict:
    if not (f.established and f.rst_has_ack and f.peer_sent_data) or f.answers_syn:
        return 0.0, []
    if not f.peer_data_unanswered:
        return 0.05, []
    s, why = 0.6, ["The peer's data was acknowledged by the sender's stack but never answered; closing a socket "
                   "with unread bytes in its receive queue makes Linux send RST instead of FIN."]
    if f.round_timeout:
        s -= 0.2
    if f.seq_expected is False:
        s -= 0.2
    if f.simultaneous_server_rsts >= 1 and f.sender_role == "server" and not f.sender_sent_data:
        s -= 0.25
    if f.trigger_gap < 0.0005:
        s -= 0.3
    if f.sender_keepalive_probes >= 2:
        s -= 0.4
    return max(s, 0.0), why


def _syn_existing_tuple(f: Features) -> Verdict:
    # the sender sent only SYNs, and the peer answered the SYN with a bare ACK instead of a SYN-ACK
    last = f.trigger
    if not f.sender_only_syns or last is None or last.flags & (0x02 | 0x04) or not last.flags & 0x10:
        return 0.0, []
    ctx = f.ctx
    syn = next(p for p in reversed(ctx.before) if p.from_orig == ctx.sender_is_orig and not p.flags & 0x04)
    if last.ts_ns < syn.ts_ns:
        return 0.0, []
    if last.ack == (syn.seq + 1) & 0xFFFFFFFF:
        return 0.0, []
    why = [f"The peer answered the SYN of frame {syn.frame} with a bare ACK for another sequence "
           f"(ack {last.ack}, not {(syn.seq + 1) & 0xFFFFFFFF}): a challenge ACK from a socket that still holds "
           "this 4-tuple."]
    s = 0.8
    if not f.rst_has_ack and ctx.rst.seq == last.ack:
        s = 0.92
        why.append("The SYN's sender reset that old connection with seq = the challenge ACK's ack number "
                   "(RFC 5961), as a stack in SYN-SENT does.")
    if ctx.conn.prev is not None:
        why.append(f"An earlier connection on the same 4-tuple ({ctx.conn.prev.uid}) was never closed cleanly.")
    return s, why


def _accept_queue_overflow(f: Features) -> Verdict:
    if f.sender_role != "server" or not f.handshake_seen or f.sender_sent_data or f.answers_syn:
        return 0.0, []
    trig = f.trigger
    if trig is None or f.trigger_gap > 0.05 or f.peer_fin_before:
        return 0.0, []
    peer_after_syn = [p for p in f.ctx.before if p.from_orig != f.ctx.sender_is_orig and not p.flags & 0x02]
    if len(peer_after_syn) != 1:
        return 0.0, []  # only the packet completing the handshake may precede the reset
    s, why = 0.35, [f"The server reset {_secs(f.trigger_gap)} after the client's packet of frame {trig.frame}, "
                    "the one that completed the handshake, having sent nothing but its SYN-ACK: the accept "
                    "queue had no room and net.ipv4.tcp_abort_on_overflow=1 turns that into a RST."]
    if not f.rst_has_ack and f.bare_rst_seq_is_peer_ack:
        s += 0.3
        why.append("The RST is a bare reply to that ACK (seq = its ack number), as the listener sends it.")
    if f.simultaneous_server_rsts >= 1:
        s += 0.2
        why.append(f"{f.simultaneous_server_rsts} other connections to the same listener were reset within 50 ms.")
    return min(s, 0.9), why


def _listen_close_queued(f: Features) -> Verdict:
    if f.sender_role != "server" or not f.handshake_seen or f.sender_sent_data or not f.rst_has_ack:
        return 0.0, []
    if f.trigger_gap < 0.05:
        return 0.0, []
    s, why = 0.3, ["The server completed the handshake but never sent a byte, then reset on its own: the "
                   "connection sat in the accept queue and was aborted when the listening socket closed."]
    if f.simultaneous_server_rsts >= 1:
        s += 0.55
        why.append(f"{f.simultaneous_server_rsts} other queued connections to the same port were reset in the "
                   "same instant, which is what closing a listener with a full queue does.")
    if f.round_timeout:
        s -= 0.15
    return s, why


def _half_open(f: Features) -> Verdict:
    if f.answers_syn or f.answers_synack or f.sender_only_syns or f.trigger is None or f.trigger_gap > 1.0:
        return 0.0, []
    trigger_is_fin = bool(f.trigger.flags & 0x01)
    if f.sender_fin_before and not trigger_is_fin:
        return 0.0, []
    if not f.no_socket_reply:
        return 0.0, []
    s, why = 0.5, ["A reply to the peer's packet that takes its numbers from that packet (no ACK flag, seq = "
                   "its ack) is what a host sends when it has no socket for the connection any more: it lost "
                   "the state (crash, reboot, state timeout) while the peer still thinks it is open."]
    if f.sender_fin_before:
        why.append("The sender had closed first and its socket was gone (FIN-WAIT-2 timeout, or a stack that "
                   "drops orphaned sockets) by the time the peer's FIN arrived.")
    if f.ttl_mismatch:
        s -= 0.2
    if f.sender_after_rst:
        s -= 0.3
    if f.idle_before_trigger >= 30:
        s -= 0.1
    if f.peer_fin_before and not trigger_is_fin:
        s -= 0.2
    if f.unknown_tuple_midstream:
        s -= 0.1
    if f.same_stream:
        s -= 0.3
    return max(s, 0.0), why


def _time_wait_assassination(f: Features) -> Verdict:
    if not f.both_fin_before or f.trigger is None or f.trigger_gap > 1.0:
        return 0.0, []
    if f.rst_has_ack and not f.bare_rst_seq_is_peer_ack:
        return 0.0, []
    fins = [p for p in f.ctx.before if p.flags & 0x01]
    if not fins or f.trigger.ts_ns <= max(p.ts_ns for p in fins) or f.trigger.flags & 0x01:
        return 0.0, []  # the trigger must come after the close completed, not be part of it
    s, why = 0.55, ["Both sides had already exchanged FINs; a late segment then drew an ACK from the TIME-WAIT "
                    "side, and the side that had fully closed answered it with RST, killing the TIME-WAIT "
                    "state early (RFC 1337)."]
    if not f.rst_has_ack:
        s += 0.25
    return s, why


# The shortest idle timeouts NATs and stateful firewalls are configured with for established TCP are about
# this long (a silence shorter than it rarely outlives a mapping; cloud NAT gateways use 240-1200 s).
NAT_IDLE_S = 30.0


def _nat_expired(f: Features) -> Verdict:
    if f.answers_syn or f.sender_fin_before or f.sender_only_syns or f.trigger is None or f.trigger_gap > 1.0:
        return 0.0, []
    if not f.no_socket_reply:
        return 0.0, []
    idle = f.idle_before_trigger
    s, why = 0.0, []
    if f.same_stream:
        addr, port, _, frame = f.same_stream
        s = 0.85
        why.append(f"The same sequence numbers also travel between {addr}:{port} and the same endpoint in another "
                   f"connection (from frame {frame}), which one of the two begins mid-stream: one byte stream "
                   "under two tuples. A NAT that lost the mapping of an idle connection translates its next "
                   "packet to a new port, and the end that no longer matches resets it.")
        if f.ttl_mismatch:
            why.append(f"This RST's TTL {f.ctx.rst.ttl} is not the {f.ttl_known} of the address it carries: the "
                       "NAT box answered for a mapping it had forgotten.")
    elif f.unknown_tuple_midstream:
        s = 0.65
        why.append("The packet that drew the RST is the first of its 4-tuple and arrives mid-stream, long after "
                   "the capture began: the connection reached the server under an address or port it never "
                   "had, as when a NAT mapping expired and the packet went out untranslated or re-mapped.")
    elif idle != float("inf") and idle >= 0.25:
        s = 0.3 + (0.3 if idle >= NAT_IDLE_S else 0.0)
        why.append(f"The connection was idle for {_secs(idle)} before the packet that drew the RST: a NAT or "
                   "conntrack entry that expired meanwhile makes the server see an unknown connection.")
    return s, why


def _connect_then_close(f: Features) -> Verdict:
    if f.sender_only_syns and not f.answers_synack and f.trigger is None:  # (nothing came from the peer)
        return 0.3, ["The client reset its own connection attempt before any answer arrived: the "
                     "application gave up on connect() (some stacks send RST when a SYN-SENT socket closes)."]
    if not f.answers_synack:
        return 0.0, []
    s, why = 0.6, ["The client reset right after receiving the SYN-ACK, before acknowledging it: its socket was "
                   "closed while the connect() was still in progress, so its stack no longer knew the "
                   "connection."]
    if not f.rst_has_ack:
        s += 0.1
    if f.probed_ports_from_source >= 5:
        s -= 0.35
    return s, why


def _data_after_close(f: Features) -> Verdict:
    if not (f.sender_fin_before and f.peer_data_after_sender_fin):
        return 0.0, []
    if f.trigger is None or f.trigger.payload_len == 0 or f.trigger_gap > 1.0:
        return 0.1, []
    return 0.85, ["The sender had already closed (its FIN is earlier) and the peer still sent data; a closed "
                  "socket cannot deliver it, so the stack answers with RST."]


def _keepalive_timeout(f: Features) -> Verdict:
    if f.sender_keepalive_probes < 2 or not f.rst_has_ack:
        return 0.0, []
    return 0.9, [f"The sender sent {f.sender_keepalive_probes} keepalive probes (zero-length segments one byte "
                 "behind its next sequence number) that went unanswered, then gave up with RST."]


def _idle_timeout(f: Features) -> Verdict:
    # a client whose last event was the server's response has nothing outstanding either
    waiting = f.peer_data_unanswered and f.sender_role == "server"
    if not f.established or f.answers_syn or f.trigger_gap < 0.5 or waiting:
        return 0.0, []
    quiet_round = f.round_timeout and f.idle_before_rst >= 0.9 * f.round_timeout
    if f.idle_before_rst < 30 and not quiet_round:
        return 0.0, []
    s, why = 0.45, [f"The connection had been idle for {_secs(f.idle_before_rst)}, with nothing outstanding, when "
                    "the RST came unprompted: an idle timeout (load balancer, proxy, firewall or the application's "
                    "keep-alive timeout) ended it."]
    if quiet_round:
        s += 0.2
        why.append(f"{f.round_timeout:g} s is a configured timeout, not a network event.")
    if f.ttl_mismatch:
        s += 0.2
        why.append("Its TTL differs from the endpoint's own packets, so a box on the path sent it.")
    return s, why


def _scan(f: Features) -> Verdict:
    why = []
    if f.answers_syn and f.refused_ports_from_source >= 5:
        why.append(f"The SYN's source was refused on {f.refused_ports_from_source} ports in this capture: a "
                   "port scan probing closed ports.")
        return 0.75, why
    if ((f.answers_synack or f.after_handshake_ack) and f.probed_ports_from_source >= 5
            and f.refused_ports_from_source >= 3):
        why.append(f"The client probed {f.probed_ports_from_source} ports, {f.refused_ports_from_source} of them "
                   "refused, and dropped this connection as soon as it was answered: a port scanner.")
        return 0.85, why
    if f.answers_synack and f.ctx.before and f.ctx.before[0].opt_mask == 0:
        return 0.3, ["The SYN carried no TCP options, as raw-socket scanners send."]
    if f.after_handshake_ack and f.probed_ports_from_source >= 2:
        return 0.35, ["The client closed right after the handshake without sending anything."]
    return 0.0, []


def _injected(f: Features) -> Verdict:
    s, why = 0.0, []
    if f.ttl_mismatch and f.ttl_known > 0:
        s += 0.6
        why.append(f"TTL {f.ctx.rst.ttl} does not match the {f.ttl_known} of every other packet from that endpoint.")
    if f.ip_id_copied_from_peer:
        s += 0.2
        why.append("Its IP ID copies the ID of the packet it answers, as packet forgers often do.")
    elif f.ip_id_mismatch:
        s += 0.15
        why.append("Its IP ID is out of the endpoint's own IP ID sequence.")
    if f.reserved_bits:
        s += 0.25
        why.append("Reserved TCP header bits are set, which no ordinary stack does.")
    if f.rst_before_synack:
        s += 0.35
        why.append("The real SYN-ACK from that address arrived after it: the RST raced the genuine answer.")
    elif f.data_after_rst_from_sender:
        s += 0.3
        why.append("The endpoint it claims to come from went on sending data after it.")
    if f.more_rsts_diff_seq:
        s += 0.15
        why.append("Several RSTs with different sequence numbers: a blind injector guessing the window.")
    if f.rst_window == "outside" and not f.answers_syn:
        s += 0.2
        why.append(f"Its sequence number is {f.window_offset:+d} from the receiver's next expected one, outside its "
                   f"{f.receive_window}-byte window: a stack resets with its own next sequence number, a blind "
                   "injector guesses, and a receiver drops a RST outside its window (RFC 5961).")
    elif f.rst_window == "in-window" and not f.answers_syn:
        s += 0.1
        why.append(f"Its sequence number is inside the receiver's window but {f.window_offset:+d} from the next "
                   "expected one: a guess that landed in the window. A receiver following RFC 5961 (Linux does) "
                   "answers such a RST with a challenge ACK and does not reset.")
    if f.challenge_ack:
        why.append("The receiver answered at once with a bare ACK: the challenge ACK of RFC 5961.")
    if f.rst_ignored:
        why.append("Both sides went on sending after it: the receiver ignored this RST, so it did not end the "
                   "connection.")
    if s and f.seq_expected is False and not f.answers_syn:
        s += 0.05
    return min(s, 0.97), why


def _unknown(f: Features) -> Verdict:
    return 0.08, []


# -- the catalog -----------------------------------------------------------------------------------

CAUSES: tuple[Cause, ...] = (
    Cause(
        id="closed-port",
        title="Nothing listens on the port",
        summary="The server host is up, but no socket listens on the destination port, so its TCP stack "
                "refuses the SYN with RST. The client sees ECONNREFUSED ('Connection refused').",
        why="The service is down, crashed, restarting (the moment between close and re-bind), bound to another "
            "address (127.0.0.1 instead of 0.0.0.0) or port, or the client uses the wrong port.",
        signature="SYN from the client, answered at once by RST,ACK with seq 0 and ack = SYN seq + 1, window 0; "
                  "no SYN-ACK. The RST's TTL matches the server's other packets.",
        example="23:48:07.432563 IP 192.168.0.181.51796 > 192.168.0.203.5000: Flags [S], seq 3663045003, length 0\n"
                "23:48:07.432851 IP 192.168.0.203.5000 > 192.168.0.181.51796: Flags [R.], seq 0, "
                "ack 3663045004, win 0, length 0",
        confirm=("ss -lnt 'sport = :PORT'   (on the server: no LISTEN socket means the port is closed)",
                 "systemctl status SERVICE / journalctl -u SERVICE   (did the service crash or restart?)",
                 "iptables -S; nft list ruleset   (rule out a REJECT rule answering for the host)"),
        fix=("Start the service, or fix the port or bind address the client or server uses.",
             "For restarts, hand the listening socket over (systemd socket activation, SO_REUSEPORT) so there is "
             "no moment without a listener."),
        kernel_reasons=("NO_SOCKET",),
        sender="endpoint",
        score=_closed_port,
    ),
    Cause(
        id="firewall-reject",
        title="A packet filter rejected the packet with a TCP reset",
        summary="A firewall rule such as `iptables -j REJECT --reject-with tcp-reset` (on the host or on a box "
                "on the path) answered in the name of the destination. It also catches established connections "
                "through the conntrack INVALID trap: a late, out-of-window or untracked packet is not "
                "ESTABLISHED, falls through to the REJECT rule, and the connection is reset mid-stream.",
        why="Policy (the port is blocked for this source), or a ruleset that accepts only "
            "ESTABLISHED,RELATED and NEW SYNs and rejects everything else, so any packet conntrack calls "
            "INVALID (retransmission after the entry expired, window tracking mismatch) is reset.",
        signature="A RST for a SYN that looks like a closed port but has a TTL or IP ID unlike the server's own "
                  "packets, or comes from a port that answers other SYNs with SYN-ACKs before and after it (a "
                  "rule by source, connection count or rate); or, mid-connection, a bare RST (no ACK flag, no TCP options, seq = the ack number of "
                  "the packet it answers) while the server's stack stays alive and may keep sending.",
        example="IP 198.18.1.2.40000 > 198.19.1.2.80: Flags [P.], seq 101:201, ack 1, length 100\n"
                "IP 198.19.1.2.80 > 198.18.1.2.40000: Flags [R], seq 3512843291, win 0, length 0",
        confirm=("iptables -S; iptables -L -v -n | grep -i reject   (REJECT rules and their packet counters)",
                 "nft list ruleset | grep -i reject",
                 "conntrack -S   (the 'invalid' counter rises with the INVALID trap)",
                 "sysctl net.netfilter.nf_conntrack_tcp_be_liberal net.netfilter.nf_conntrack_tcp_loose"),
        fix=("If the reset is wrong, allow the traffic or change REJECT to DROP where silence is wanted.",
             "For the INVALID trap, drop INVALID packets before the REJECT: "
             "`iptables -A FORWARD -m state --state INVALID -j DROP` placed before "
             "`-j REJECT --reject-with tcp-reset`.",
             "Or make conntrack tolerant of out-of-window packets: sysctl -w net.netfilter.nf_conntrack_tcp_be_liberal=1."),
        kernel_reasons=(),
        sender="firewall",
        score=_firewall_reject,
    ),
    Cause(
        id="abortive-close",
        title="The application closed with SO_LINGER 0 (abortive close)",
        summary="The application set SO_LINGER {on, 0} and closed the socket: instead of FIN the stack sends "
                "RST and frees the connection at once. nginx does this with `reset_timedout_connection on` when "
                "a timeout (client_header_timeout, client_body_timeout, send_timeout, keepalive) fires; many "
                "load testers and proxies do it to avoid TIME-WAIT.",
        why="To release memory and avoid TIME-WAIT/FIN-WAIT for connections it gives up on; the peer sees "
            "ECONNRESET ('Connection reset by peer') on its next read or write.",
        signature="An established connection; the RST,ACK comes unprompted (not in reply to a packet) with the "
                  "sender's next sequence number and current ack, often a round number of seconds after the last "
                  "activity (a timeout).",
        example="08:37:09.414037 IP 127.0.0.1.48672 > 127.0.0.1.80: Flags [P.], seq 1:17, ack 1, length 16\n"
                "08:37:09.414085 IP 127.0.0.1.80 > 127.0.0.1.48672: Flags [.], ack 17, length 0\n"
                "08:37:13.190400 IP 127.0.0.1.80 > 127.0.0.1.48672: Flags [R.], seq 1, ack 17, win 342, length 0",
        confirm=("nstat -az TcpExtTCPAbortOnData TcpExtTCPAbortOnClose   (Linux counts an SO_LINGER 0 close "
                 "under TCPAbortOnData, a close with unread data under TCPAbortOnClose)",
                 "grep -R reset_timedout_connection /etc/nginx   (and the *_timeout values)",
                 "strace -f -e trace=setsockopt,close -p PID   (setsockopt SO_LINGER {l_onoff=1, l_linger=0})"),
        fix=("If the timeout is too short for real clients, raise it (client_header_timeout, keepalive_timeout).",
             "Use a graceful close (shutdown, drain, close) where the peer must see a clean end; keep SO_LINGER 0 "
             "only for connections that are already broken."),
        kernel_reasons=("TCP_STATE", "TCP_ABORT_ON_LINGER"),
        sender="endpoint",
        score=_abortive_close,
    ),
    Cause(
        id="unread-data-close",
        title="The application closed with unread data",
        summary="The application called close() while bytes it had received were still unread in the socket's "
                "receive queue. RFC 2525 asks the stack to send RST, not FIN, so the peer learns its data was "
                "not consumed.",
        why="The server stopped reading (it rejected the request early, timed out, hit an error, or exited) "
            "without draining the input, e.g. replying 413 and closing while the client is still uploading.",
        signature="The peer sent data that the sender's stack acknowledged, the sender never replied to it, and "
                  "then the sender's RST,ACK (seq = its next sequence number, ack = the end of the peer's data).",
        example="23:26:43.286533 IP 192.168.0.181.52412 > 192.168.0.203.5000: Flags [P.], seq 1:5, ack 1, length 4\n"
                "23:26:43.286842 IP 192.168.0.203.5000 > 192.168.0.181.52412: Flags [.], ack 5, length 0\n"
                "23:26:46.314911 IP 192.168.0.203.5000 > 192.168.0.181.52412: Flags [R.], seq 1, ack 5, length 0",
        confirm=("nstat -az TcpExtTCPAbortOnClose   (rises with each close with unread data; an SO_LINGER 0 close "
                 "counts under TcpExtTCPAbortOnData instead)",
                 "ss -tnp 'sport = :PORT'   (Recv-Q > 0 on the server socket before it closes)"),
        fix=("Read (drain) the request body before closing, or shutdown(SHUT_WR) and keep reading until EOF.",
             "For HTTP servers, enable lingering close (nginx lingering_close on) so the client receives the "
             "response before the connection ends."),
        kernel_reasons=("TCP_ABORT_ON_CLOSE",),
        sender="endpoint",
        score=_unread_data_close,
    ),
    Cause(
        id="syn-existing-tuple",
        title="A SYN hit a 5-tuple the receiver still holds",
        summary="A client reconnects from the same source port while the server still has the old connection "
                "(the client lost it without telling the server). The server answers the new SYN with a "
                "challenge ACK for the old connection; the client, in SYN-SENT, replies with RST, which kills "
                "the old entry, and its next SYN retransmission succeeds.",
        why="Clients that bind a fixed source port, NAT devices reusing ports quickly, or a client that rebooted.",
        signature="SYN, then a bare ACK from the server whose ack number is not SYN seq + 1 (challenge ACK), then "
                  "a bare RST from the client with seq = that ack number; often a new SYN after it.",
        example="IP 198.18.1.2.40001 > 198.19.1.2.80: Flags [S], seq 1000\n"
                "IP 198.19.1.2.80 > 198.18.1.2.40001: Flags [.], ack 5555, length 0\n"
                "IP 198.18.1.2.40001 > 198.19.1.2.80: Flags [R], seq 5555, length 0",
        confirm=("ss -tn state established '( dport = :PORT )' on the server: the old 4-tuple still listed",
                 "nstat -az TcpExtTCPChallengeACK"),
        fix=("Let the client use ephemeral source ports (do not bind a fixed port).",
             "Make servers notice dead peers sooner (TCP keepalive, application heartbeats)."),
        kernel_reasons=("TCP_INVALID_ACK_SEQUENCE",),
        sender="endpoint",
        score=_syn_existing_tuple,
    ),
    Cause(
        id="accept-queue-overflow",
        title="Accept queue full with tcp_abort_on_overflow=1",
        summary="The listener's accept queue (backlog) was full when the client's final handshake ACK arrived. "
                "With net.ipv4.tcp_abort_on_overflow=1 the server resets the connection instead of dropping the ACK "
                "and letting the client retry.",
        why="The application accepts connections slower than they arrive (blocked event loop, too few workers) "
            "or the backlog (listen(n), somaxconn) is too small.",
        signature="SYN, SYN-ACK, the client's ACK (maybe with data), and at once a RST from the server, which "
                  "never sent data; usually several connections to the same port at the same moment.",
        example="IP client.40000 > server.5000: Flags [.], ack 1, length 0\n"
                "IP server.5000 > client.40000: Flags [R], seq 2331257958, win 0, length 0",
        confirm=("ss -lnt 'sport = :PORT'   (Recv-Q at or above Send-Q means the accept queue is full)",
                 "nstat -az TcpExtListenOverflows TcpExtListenDrops",
                 "sysctl net.ipv4.tcp_abort_on_overflow net.core.somaxconn"),
        fix=("Accept faster (more workers, do not block the accept loop) and raise the backlog "
             "(listen(n) and net.core.somaxconn).",
             "Leave net.ipv4.tcp_abort_on_overflow=0 so bursts are absorbed by client retransmission."),
        kernel_reasons=("INVALID_SYN",),
        sender="endpoint",
        score=_accept_queue_overflow,
    ),
    Cause(
        id="listen-close-queued",
        title="The listening socket closed with connections still queued",
        summary="Connections that completed the handshake were waiting in the accept queue when the server "
                "closed its listening socket (restart, crash, shutdown); the kernel resets each of them.",
        why="A server restart or shutdown without draining, or a program that listens but never accepts.",
        signature="Several connections to one port, each with a complete handshake and no data from the server, "
                  "reset by the server in the same instant with RST,ACK; later SYNs are refused (closed port).",
        example="23:06:33.954768 IP 192.168.0.203.5000 > 192.168.0.181.36052: Flags [R.], seq 1, ack 1, length 0\n"
                "23:06:33.954785 IP 192.168.0.203.5000 > 192.168.0.181.36062: Flags [R.], seq 1, ack 1, length 0",
        confirm=("journalctl / service logs around that time: did the server stop or restart?",
                 "ss -lnt 'sport = :PORT'   (Recv-Q: connections waiting to be accepted)"),
        fix=("Drain the accept queue before closing the listener on shutdown (stop accepting, accept and serve "
             "what is queued, then close).",
             "Use socket handover or SO_REUSEPORT for zero-downtime restarts."),
        kernel_reasons=("TCP_STATE", "NOT_SPECIFIED"),
        sender="endpoint",
        score=_listen_close_queued,
    ),
    Cause(
        id="half-open",
        title="Half-open connection: the peer had lost the connection",
        summary="One side lost the connection's state (crash, reboot, a state timeout) without the other side "
                "hearing of it. When the other side sends again, the host answers from no socket with RST.",
        why="Host or process crash, failover to another host with the same address, a firewall or NAT that "
            "silently dropped the close.",
        signature="After silence, a packet to the host is answered at once by a bare RST whose seq is that "
                  "packet's ack number (no ACK flag): the reply of a stack with no socket for it.",
        example="IP client.40000 > server.80: Flags [P.], seq 1:101, ack 1, length 100\n"
                "IP server.80 > client.40000: Flags [R], seq 1234567, win 0, length 0",
        confirm=("On the resetting host: uptime / journalctl -b -1 (reboot?), service restarts around that time",
                 "nstat -az TcpOutRsts   (RSTs sent from no socket count here)"),
        fix=("Use TCP keepalive or application heartbeats so dead peers are detected before the next request.",
             "Make clients retry idempotent requests on ECONNRESET."),
        kernel_reasons=("NO_SOCKET", "TCP_FLAGS"),
        sender="endpoint",
        score=_half_open,
    ),
    Cause(
        id="time-wait-assassination",
        title="TIME-WAIT assassination",
        summary="After a clean close, a late or duplicate segment reaches the side in TIME-WAIT, which "
                "acknowledges it; the side that already closed completely answers that ACK with RST, and the "
                "RST kills the TIME-WAIT state early (RFC 1337).",
        why="Delayed duplicates in the network, retransmissions crossing the close, or a peer that reuses the "
            "4-tuple too soon.",
        signature="FIN from both sides, then a stray segment or ACK from one side and a bare RST from the other.",
        example="IP a.1000 > b.80: Flags [.], ack 5001, length 0   (after both FINs)\n"
                "IP b.80 > a.1000: Flags [R], seq 5001, length 0",
        confirm=("sysctl net.ipv4.tcp_rfc1337   (1 makes TIME-WAIT ignore RSTs)",
                 "nstat -az TcpExtTWKilled TcpExtTCPTimeWaitOverflow"),
        fix=("Set net.ipv4.tcp_rfc1337=1 so TIME-WAIT sockets ignore RST.",
             "Find where the late segments come from (retransmissions, duplicating middleboxes)."),
        kernel_reasons=("TCP_FLAGS", "NO_SOCKET"),
        sender="endpoint",
        score=_time_wait_assassination,
    ),
    Cause(
        id="nat-expired",
        title="The NAT or conntrack entry expired while the connection idled",
        summary="A NAT or stateful firewall forgot the connection during a long idle period. The next packet is "
                "not translated (or is translated to a new port), so the server sees an unknown connection and "
                "resets it, or the box itself rejects it.",
        why="NAT/conntrack idle timeouts (cloud NAT gateways 350 s, home routers minutes, "
            "nf_conntrack_tcp_timeout_established) shorter than the application's idle time.",
        signature="Minutes of silence (at least the NAT's idle timeout, 30 s and more), then a packet from the "
                  "client answered at once by a bare RST; at the server (or on both sides of the NAT) the packet "
                  "arrives under a new source port with no handshake, carrying the sequence numbers of the old "
                  "tuple: one byte stream under two tuples. The old tuple's late packets are reset by the NAT box "
                  "itself (its own TTL).",
        example="IP client.40000 > server.443: Flags [P.], seq 101:201, ack 1, length 100   (after 10 minutes idle)\n"
                "IP server.443 > client.40000: Flags [R], seq 99991, win 0, length 0",
        confirm=("conntrack -L -p tcp --dport PORT   (is the entry there? what timeout?)",
                 "sysctl net.netfilter.nf_conntrack_tcp_timeout_established",
                 "the NAT gateway's idle timeout in its documentation or console"),
        fix=("Send keepalives more often than the NAT's idle timeout (TCP_KEEPIDLE / application pings).",
             "Raise the NAT or conntrack idle timeout."),
        kernel_reasons=("TCP_FLAGS", "NO_SOCKET"),
        sender="middlebox",
        score=_nat_expired,
    ),
    Cause(
        id="connect-then-close",
        title="The client closed before the handshake finished",
        summary="The client called connect() and closed the socket before the SYN-ACK arrived (a non-blocking "
                "connect abandoned, a timeout, a happy-eyeballs race lost). The SYN-ACK then reaches no socket "
                "and the client's stack answers it with RST.",
        why="Connect timeouts shorter than the network's round trip or the server's SYN-ACK delay, racing "
            "connections (happy eyeballs, connection pools) that close the losers.",
        signature="SYN, SYN-ACK, then at once a bare RST from the client with seq = SYN seq + 1 and no ACK of "
                  "the server's data.",
        example="14:16:18.601202 IP 192.168.0.203.27380 > 121.204.250.223.8080: Flags [S], seq 2056645866\n"
                "14:16:18.609243 IP 121.204.250.223.8080 > 192.168.0.203.27380: Flags [S.], seq 1666115154, "
                "ack 2056645867\n"
                "14:16:18.609284 IP 192.168.0.203.27380 > 121.204.250.223.8080: Flags [R], seq 2056645867, win 0",
        confirm=("The client's logs: connect timeouts or cancelled requests at that time",
                 "strace -f -e trace=connect,close -p PID   (close() right after a non-blocking connect())"),
        fix=("Raise the client's connect timeout above the path's worst round trip; investigate slow SYN-ACKs "
             "(SYN backlog, SYN cookies) on the server.",),
        kernel_reasons=("NO_SOCKET",),
        sender="endpoint",
        score=_connect_then_close,
    ),
    Cause(
        id="data-after-close",
        title="Data arrived after the receiver had closed",
        summary="The receiver had closed its side (sent FIN; its socket is gone or orphaned) and the peer still "
                "sent data. A closed socket cannot deliver it, so the stack answers with RST and the peer's "
                "next read fails with ECONNRESET.",
        why="Protocol confusion over who closes first: an HTTP server closing a keep-alive connection while the "
            "client sends its next request on it (the classic keep-alive race), or a client that half-closes "
            "and keeps writing.",
        signature="FIN from the sender, then data from the peer, then the sender's RST in reply to that data.",
        example="IP server.80 > client.40000: Flags [F.], seq 500, ack 100\n"
                "IP client.40000 > server.80: Flags [P.], seq 100:200, ack 501, length 100\n"
                "IP server.80 > client.40000: Flags [R], seq 501, win 0, length 0",
        confirm=("Compare the server's idle/keepalive timeout with the client's pool idle timeout: the client "
                 "must close idle connections first.",
                 "nstat -az TcpExtTCPAbortOnData"),
        fix=("Make the client's idle timeout shorter than the server's keepalive_timeout, and retry idempotent "
             "requests that fail on a reused connection.",),
        kernel_reasons=("TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA", "NO_SOCKET"),
        sender="endpoint",
        score=_data_after_close,
    ),
    Cause(
        id="keepalive-timeout",
        title="Keepalive probes went unanswered",
        summary="TCP keepalive was on and the peer stopped answering probes; after tcp_keepalive_probes "
                "unanswered probes the stack gives up and resets the connection (ETIMEDOUT locally).",
        why="The peer crashed or vanished, or a network path/firewall now drops the connection's packets.",
        signature="Zero-length probes one byte behind the sender's next sequence number, at tcp_keepalive_intvl "
                  "intervals, with no answer, then the prober's RST,ACK.",
        example="IP a.40000 > b.80: Flags [.], seq 100, ack 1, length 0   (probe, repeated)\n"
                "IP a.40000 > b.80: Flags [R.], seq 101, ack 1, length 0",
        confirm=("ss -tno   (timer:(keepalive,...) on the socket)",
                 "sysctl net.ipv4.tcp_keepalive_time net.ipv4.tcp_keepalive_intvl net.ipv4.tcp_keepalive_probes"),
        fix=("Find why the peer stopped answering (host down, path dropping packets).",
             "Tune the keepalive values to detect this at the speed you need."),
        kernel_reasons=("TCP_KEEPALIVE_TIMEOUT",),
        sender="endpoint",
        score=_keepalive_timeout,
    ),
    Cause(
        id="idle-timeout",
        title="An idle timeout in a load balancer or proxy",
        summary="A load balancer, proxy or the application reset the connection after it was idle for its idle "
                "timeout (AWS NLB 350 s, ALB 60 s, HAProxy timeout client/server, ...).",
        why="Long-lived connections (database pools, websockets, gRPC streams) without traffic longer than the "
            "idle timeout of something on the path.",
        signature="Silence for a round number of seconds, then an unprompted RST; often one toward each side, "
                  "with a TTL unlike the endpoint's own.",
        example="IP lb.443 > client.40000: Flags [R.], seq 5000, ack 300, length 0   (350 s after the last packet)",
        confirm=("The load balancer's or proxy's idle timeout setting",
                 "Whether the RST reaches both client and server at the same time (capture both sides)"),
        fix=("Enable keepalives (TCP or application) more frequent than the idle timeout, or raise the timeout.",),
        kernel_reasons=(),
        sender="middlebox",
        score=_idle_timeout,
    ),
    Cause(
        id="scan",
        title="A port scanner",
        summary="A scanner probed ports: closed ports answer with RST (refusals across many ports), and a SYN "
                "scanner's raw-socket probe is reset by its own stack when the SYN-ACK arrives.",
        why="Security scanning (nmap, masscan, zmap), monitoring checks, or an attacker's reconnaissance.",
        signature="One source reaching many ports or hosts; RST after SYN-ACK from the scanner, or RST,ACK seq 0 "
                  "from many closed ports; SYNs with unusual options (none, window 1024).",
        example="IP scanner.51000 > host.22: Flags [S], seq 1, win 1024, length 0\n"
                "IP host.22 > scanner.51000: Flags [S.], seq 77, ack 2\n"
                "IP scanner.51000 > host.22: Flags [R], seq 2, win 0, length 0",
        confirm=("Who owns the source address (asset inventory, security team's scanners)?",
                 "IDS/firewall logs for the source"),
        fix=("Expected for authorised scanners; otherwise block or rate-limit the source.",),
        kernel_reasons=("NO_SOCKET",),
        sender="endpoint",
        score=_scan,
    ),
    Cause(
        id="injected",
        title="A forged RST from a box on the path",
        summary="Someone other than the endpoints sent a RST with the endpoint's address: a censorship or "
                "intrusion-prevention device, or an attacker. It is told apart by what the real endpoint "
                "does not do: a different TTL or IP ID, reserved bits, a RST that races the real answer, or "
                "several RSTs guessing sequence numbers.",
        why="Censorship (the Great Firewall resets connections by keyword or destination), IPS/IDS reset "
            "actions, or attacks on long-lived connections (BGP sessions).",
        signature="TTL or IP ID inconsistent with the endpoint's other packets, a RST before the real SYN-ACK, "
                  "the claimed sender continuing after its own RST, RSTs with spread sequence numbers "
                  "(Weaver, Sommer and Paxson, NDSS 2009).",
        example="IP 1.2.0.3.6649 > 1.2.0.2.2527: Flags [R.], seq 0, ack 1569339004, ttl 46   (server's TTL is 49)\n"
                "IP 1.2.0.3.6649 > 1.2.0.2.2527: Flags [S.], seq 1616457233, ack 1569339004, ttl 49",
        confirm=("Capture at both ends: a RST that the claimed sender never sent is forged.",
                 "Compare TTL and IP ID of the RST with the endpoint's packets (whyrst -v shows them)."),
        fix=("Use encryption that hides what triggers the injector (TLS with ECH, VPN) or TCP-AO/MD5 for BGP.",
             "For an IPS you own, review the rule that fired."),
        kernel_reasons=(),
        sender="injector",
        score=_injected,
    ),
    Cause(
        id="unknown",
        title="Unknown: no cause in the catalog fits",
        summary="The wire does not match any cause well enough; the evidence says what was seen.",
        why="An uncommon stack behaviour, a capture missing the packets that would tell, or a cause not yet in "
            "the catalog.",
        signature="Anything not matched above.",
        example="",
        confirm=("Capture at the other end too, and on the host run: nstat -az | grep -i -E 'abort|rst|overflow'",),
        fix=("Collect a capture with both directions and the start of the connection; open an issue with it.",),
        kernel_reasons=("NOT_SPECIFIED",),
        sender="unknown",
        score=_unknown,
    ),
)

BY_ID: dict[str, Cause] = {c.id: c for c in CAUSES}

# Some stacks and load balancers say why in the RST's payload (Wireshark's tcp.reset_cause): phrases that
# name a cause, matched case-insensitively, with the score they add to it.
PAYLOAD_HINTS: tuple[tuple[str, str, float], ...] = (
    (r"flow expired|idle timeout|idle-timeout|sweeper|inactivity", "idle-timeout", 0.6),
    (r"no server selected|no pool member|no available|port closed|connection refused|not listening",
     "closed-port", 0.5),
    (r"policy|denied|deny|blocked|reject|firewall|acl", "firewall-reject", 0.5),
    (r"keep-?alive", "keepalive-timeout", 0.4),
    (r"abort|linger", "abortive-close", 0.3),
)
CAUSE_IDS: tuple[str, ...] = tuple(c.id for c in CAUSES)

# What tells two often-confused causes apart on the host, shown when both rank high.
DISTINGUISH: dict[frozenset[str], str] = {
    frozenset({"abortive-close", "unread-data-close"}):
        "nstat -az TcpExtTCPAbortOnData TcpExtTCPAbortOnClose on the resetting host: an SO_LINGER 0 close "
        "counts under TCPAbortOnData, a close with unread data under TCPAbortOnClose.",
    frozenset({"closed-port", "firewall-reject"}):
        "ss -lnt on the server (is anything listening?) and iptables -S / nft list ruleset (a REJECT rule?).",
    frozenset({"half-open", "firewall-reject"}):
        "conntrack -S (invalid counter) and iptables -L -v -n (REJECT counters) on the firewall; uptime and "
        "service restarts on the server.",
    frozenset({"half-open", "nat-expired"}):
        "conntrack -L on the NAT box during the idle period, and the server's uptime: an expired NAT mapping "
        "leaves the server running, a half-open connection means the server lost it.",
    frozenset({"accept-queue-overflow", "listen-close-queued"}):
        "nstat -az TcpExtListenOverflows and ss -lnt (queue full?) versus the service's restart log.",
    frozenset({"connect-then-close", "scan"}):
        "who runs the client: a program with a short connect timeout, or a scanner probing many ports?",
    frozenset({"abortive-close", "idle-timeout"}):
        "the idle timeout of proxies/load balancers on the path versus the application's own timeouts "
        "(TTL of the RST: the endpoint's own, or another box's?).",
}

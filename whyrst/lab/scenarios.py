"""The lab's scenarios: one per cause id, each made to happen the way it happens in production.

A scenario is data: its cause id, the ports its own connections use, the traffic function (which sets up
what it needs through :class:`~whyrst.lab.context.Ctx`, undone afterwards), how the RSTs it produces are
labelled, and the kernel reasons (``sk_rst_reason``) expected for each label, None standing for "no
kernel event" (netfilter's and forged resets). Adding a scenario touches this file only.

Every scenario also runs a few background connections (echo on port 7) that end with FINs, so that a
capture is never only the reset.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

from whyrst.lab.capture import Packet, PcapFile
from whyrst.lab.context import Ctx

Labeler = Callable[[Packet, PcapFile, Ctx], "str | None"]


@dataclass(frozen=True)
class Scenario:
    id: str  # the cause id (whyrst causes)
    title: str
    ports: tuple[int, ...]  # the server-side ports of the scenario's own connections
    traffic: Callable[[Ctx], None]
    reasons: dict[str, frozenset[str | None]]  # label -> kernel reasons expected (None: no kernel event)
    label: Labeler | None = None  # default: every RST on one of ``ports`` is this cause
    post: Callable[[Ctx, dict[str, PcapFile]], None] | None = None  # checks on the captures
    write_up: bool = True  # one of the write-up's 11 causes (else an extra)
    background: bool = True

    def labeler(self) -> Labeler:
        return self.label or by_ports(self.id)


def by_ports(cause: str) -> Labeler:
    def label(rst: Packet, pcap: PcapFile, ctx: Ctx) -> str | None:
        return cause if rst.sport in ctx.ports or rst.dport in ctx.ports else None

    return label


def answers_syn(rst: Packet, pcap: PcapFile) -> bool:
    """The RST refuses a SYN: the flow's previous packet at this vantage is a SYN from the other side."""
    for p in reversed(pcap.packets[: pcap.packets.index(rst)]):
        if (p.src, p.sport, p.dst, p.dport) == (rst.dst, rst.dport, rst.src, rst.sport):
            return p.syn and not p.has_ack
        if (p.src, p.sport, p.dst, p.dport) == (rst.src, rst.sport, rst.dst, rst.dport):
            return False
    return False


def reasons(*names: str | None) -> frozenset[str | None]:
    return frozenset(names)


# -- the scenarios ---------------------------------------------------------------------------------------


def closed_port(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    res = ctx.agent("client", "refused", dst=ctx.S, port=port, count=2, gap=0.2).expect("RESULT", 5)
    ctx.check("refused", all(o == "ECONNREFUSED" for o in res["outcomes"]), f"connect(): {res['outcomes']}")


def firewall_reject(ctx: Ctx) -> None:
    fwd, inp, trap, fixed = ctx.ports
    ctx.agent("server", "echo-server", ready=True, addr=ctx.S, ports=f"{fwd},{inp}")
    held = {p: ctx.agent("server", "hold-server", ready=True, addr=ctx.S, port=p) for p in (trap, fixed)}
    ctx.bg()
    reject = ("-j", "REJECT", "--reject-with", "tcp-reset")

    # 1. A policy rule in the router's FORWARD chain.
    ctx.iptables("router", "-I", "FORWARD", "-p", "tcp", "-d", ctx.S, "--dport", str(fwd), *reject)
    res = ctx.agent("client", "refused", dst=ctx.S, port=fwd).expect("RESULT", 5)
    ctx.check("router FORWARD REJECT", res["outcomes"] == ["ECONNREFUSED"], f"connect(): {res['outcomes']}")

    # 2. On the server host, in its INPUT chain (the write-up's first example rejects one client address).
    # Host rules reject some clients of a service that runs, here by connection count as DoS protection
    # does: a client's second concurrent connection is refused, its first is served, and once that one has
    # ended it may connect again. (A port rejected for everyone is a closed port on the wire.)
    ctx.iptables("server", "-I", "INPUT", "-p", "tcp", "--syn", "--dport", str(inp), "-m", "connlimit",
                 "--connlimit-above", "1", "--connlimit-mask", "32", *reject)
    first = ctx.agent("client", "idle-client", dst=ctx.S, port=inp, timeout=1.0)
    first.expect("EVENT", 5, "idle")
    res = ctx.agent("client", "refused", dst=ctx.S, port=inp).expect("RESULT", 5)
    ctx.check("server INPUT REJECT", res["outcomes"] == ["ECONNREFUSED"],
              f"second concurrent connect(): {res['outcomes']}")
    first.send("send")
    first.expect("RESULT", 5)
    ctx.sleep(0.2)
    res = ctx.agent("client", "bg", dst=ctx.S, port=inp, count=1, interval=0.1).expect("RESULT", 5)
    ctx.check("server INPUT REJECT lets the client in again", res.get("done") == 1,
              f"connections after the first ended: {res.get('done')}")

    # 3. The write-up's ruleset: ESTABLISHED,RELATED accepted, new SYNs accepted, everything else rejected.
    # A packet of an established connection that conntrack no longer knows (entry deleted, as by a flush,
    # a timeout or a failover; no loose pick-up) is INVALID and falls through to the REJECT.
    ctx.sysctl("router", "net.netfilter.nf_conntrack_tcp_loose", "0")
    chain = ctx.chain("router", "WHYRST-TRAP")
    ctx.iptables("router", "-A", chain, "-m", "state", "--state", "ESTABLISHED,RELATED", "-j", "ACCEPT")
    ctx.iptables("router", "-A", chain, "-p", "tcp", "--syn", "-m", "state", "--state", "NEW", "-j", "ACCEPT")
    ctx.iptables("router", "-A", chain, "-p", "tcp", *reject)
    ctx.iptables("router", "-I", "FORWARD", "-p", "tcp", "-m", "multiport", "--ports", f"{trap},{fixed}",
                 "-j", chain)
    cli = ctx.agent("client", "idle-client", dst=ctx.S, port=trap, timeout=1.0)
    cli.expect("EVENT", 5, "idle")
    ctx.sh("router", "conntrack", "-D", "-p", "tcp", "--orig-port-dst", str(trap), check=False)
    cli.send("send")
    res = cli.expect("RESULT", 5)
    ctx.check("INVALID trap resets", res["then"] == "reset", f"client after the conntrack entry was deleted: "
              f"{res['then']}")
    # The server still holds the connection; its FIN is INVALID as well and is rejected toward it.
    held[trap].send("close")
    held[trap].expect("RESULT", 5)

    # 4. The fix: INVALID packets dropped before the REJECT. The same loss of state, no reset.
    ctx.iptables("router", "-I", chain, "2", "-m", "state", "--state", "INVALID", "-j", "DROP")
    cli = ctx.agent("client", "idle-client", dst=ctx.S, port=fixed, timeout=0.8)
    ev = cli.expect("EVENT", 5, "idle")
    ctx.facts["fixed_sport"] = ev["sport"]
    ctx.sh("router", "conntrack", "-D", "-p", "tcp", "--orig-port-dst", str(fixed), check=False)
    cli.send("send")
    cli.expect("EVENT", 5, "no-answer")
    # Lift the firewall for that port so the connection can retransmit and end normally.
    ctx.iptables("router", "-I", "FORWARD", "-p", "tcp", "-m", "multiport", "--ports", str(fixed), "-j", "ACCEPT")
    cli.send("lifted")
    res = cli.expect("RESULT", 8)
    ctx.check("fix: INVALID DROP stops the reset", res["then"] == "late-data",
              f"with '-m state --state INVALID -j DROP' before the REJECT the data was dropped, no RST "
              f"(client: {res['then']})")
    held[fixed].send("close")


def firewall_post(ctx: Ctx, pcaps: dict[str, PcapFile]) -> None:
    fixed = ctx.ports[3]
    n = sum(1 for pc in pcaps.values() for r in pc.rsts if fixed in (r.sport, r.dport))
    ctx.check("fix: no RST on the wire", n == 0, f"RSTs on the wire with the INVALID DROP fix: {n}")
    ctx.note(f"INVALID trap: reset; with the INVALID DROP rule before the REJECT: {n} RSTs (fix effective)"
             if n == 0 else f"with the INVALID DROP fix still {n} RSTs")


NGINX_CONF = """\
worker_processes 1;
master_process off;
pid {prefix}/nginx.pid;
events {{ worker_connections 64; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    reset_timedout_connection on;
    client_header_timeout 1s;
    server {{
        listen {addr}:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""


def start_nginx(ctx: Ctx, port: int) -> bool:
    exe = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if exe is None:
        ctx.check("nginx", False, "nginx is not installed: the nginx half of abortive-close is skipped")
        return False
    prefix = ctx.tempdir("nginx")
    (prefix / "nginx.conf").write_text(NGINX_CONF.format(prefix=prefix, addr=ctx.S, port=port))
    ctx.spawn("server", "nginx", [exe, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                  "-e", str(prefix / "error.log"), "-g", "daemon off;"])
    ctx.wait_listening("server", port)
    return True


def abortive_close(ctx: Ctx) -> None:
    web, app = ctx.ports
    # nginx with reset_timedout_connection: a client that sends an incomplete request header.
    if start_nginx(ctx, web):
        ctx.bg(port=web, http=1)
        res = ctx.agent("client", "http-partial", dst=ctx.S, port=web).expect("RESULT", 8)
        ctx.check("nginx resets the timed-out request", res["then"] == "reset",
                  f"client after an incomplete header: {res['then']} after {res.get('after')} s")
    # An application's own SO_LINGER {1, 0} close after answering.
    ctx.agent("server", "linger-server", ready=True, addr=ctx.S, port=app)
    res = ctx.agent("client", "request", dst=ctx.S, port=app, after=2.0).expect("RESULT", 6)
    ctx.check("SO_LINGER 0 close", res["then"] == "reset", f"client after the reply: {res['then']}")


def unread_data_close(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    ctx.agent("server", "unread-server", ready=True, addr=ctx.S, port=port)
    res = ctx.agent("client", "request", dst=ctx.S, port=port, payload="data the server never reads\n",
                    read=0, after=3.0).expect("RESULT", 6)
    ctx.check("close with unread data", res["then"] == "reset", f"client: {res['then']}")


def data_after_close(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    ctx.agent("server", "fin-first-server", ready=True, addr=ctx.S, port=port)
    res = ctx.agent("client", "keepalive-reuse", dst=ctx.S, port=port).expect("RESULT", 6)
    ctx.check("second request on a closed connection", res["then"] == "reset" or res.get("so_error") in
              ("EPIPE", "ECONNRESET"), f"client: read {res['then']}, socket error {res.get('so_error')}")


def syn_existing_tuple(ctx: Ctx) -> None:
    (port,) = ctx.ports
    sport = 30000 + ctx.rng.randrange(2000)  # below the ephemeral range: nothing else picks it
    ctx.facts["sport"] = sport
    ctx.bg()
    ctx.agent("server", "echo-server", ready=True, addr=ctx.S, ports=str(port))
    cli = ctx.agent("client", "reconnect-same-port", dst=ctx.S, port=port, sport=sport)
    cli.expect("EVENT", 5, "connected")
    # The client host dies: nothing it sends leaves (its kernel's RST included); then it reboots.
    dead = ctx.iptables("client", "-I", "OUTPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP")
    cli.send("crash")
    cli.expect("EVENT", 5, "crashed")
    dead.remove()
    cli.send("go")
    res = cli.expect("RESULT", 8)
    ctx.check("reconnect from the same port", res.get("reconnected") is True,
              f"reconnected={res.get('reconnected')} after {res.get('took')} s (challenge ACK, RST, SYN again)")


def accept_queue_overflow(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.sysctl("server", "net.ipv4.tcp_abort_on_overflow", "1")
    ctx.bg()
    srv = ctx.agent("server", "slow-accept", ready=True, addr=ctx.S, port=port, backlog=4)
    cli = ctx.agent("client", "burst", dst=ctx.S, port=port, first=4, racing=4)
    ev = cli.expect("EVENT", 8, "burst-done")
    srv.send("accept")
    cli.send("served")
    res = cli.expect("RESULT", 8)
    srv.send("stop")
    resets = sum(1 for o in ev["racing"] if o == "ECONNRESET")
    ctx.check("overflow resets", resets > 0, f"racing handshakes: {ev['racing']}")
    ctx.check("write-up's experiment: no RST", ev["late"] == "timeout",
              f"a connect into the full queue: {ev['late']}")
    ctx.note(f"Linux here: a SYN to a full accept queue is dropped (no RST: what the write-up saw on 5.10, "
             f"connect() {ev['late']}); with tcp_abort_on_overflow=1 the RST comes when handshakes complete "
             f"while the queue is full: {resets} of {len(ev['racing'])} racing connections reset, "
             f"{res.get('served')} served later")


def listen_close_queued_label(rst: Packet, pcap: PcapFile, ctx: Ctx) -> str | None:
    if rst.sport not in ctx.ports and rst.dport not in ctx.ports:
        return None
    # After the listener is gone, a late client's SYN retransmission is refused: that is a closed port.
    return "closed-port" if answers_syn(rst, pcap) else "listen-close-queued"


def listen_close_queued(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    srv = ctx.agent("server", "never-accept", ready=True, addr=ctx.S, port=port, backlog=2)
    cli = ctx.agent("client", "queue-up", dst=ctx.S, port=port, connect=3, late=2)
    cli.expect("EVENT", 5, "queued")
    ctx.sleep(0.4)
    srv.send("close")
    srv.expect("RESULT", 3)
    res = cli.expect("RESULT", 8)
    ctx.check("queued connections reset", res["queued"] and all(o == "reset" for o in res["queued"]),
              f"queued: {res['queued']}")
    ctx.check("late SYNs refused", all(o == "ECONNREFUSED" for o in res["late"]),
              f"late clients (queue full, SYN retransmitted after the close): {res['late']}")


def half_open(ctx: Ctx) -> None:
    gone, restarted = ctx.ports
    ctx.bg()
    srv = ctx.agent("server", "crash-server", ready=True, addr=ctx.S, ports=f"{gone},{restarted}",
                    restart=str(restarted))
    clients = []
    for port in (gone, restarted):
        c = ctx.agent("client", "idle-client", dst=ctx.S, port=port, timeout=2.0)
        c.expect("EVENT", 5, "idle")
        clients.append(c)
    srv.expect("EVENT", 5, "serving")
    # The server host loses power: its sockets vanish and nothing it would send leaves.
    dead = ctx.iptables("server", "-I", "OUTPUT", "-p", "tcp", "-m", "multiport", "--sports",
                        f"{gone},{restarted}", "-j", "DROP")
    srv.send("crash")
    srv.expect("EVENT", 5, "crashed")
    dead.remove()
    srv.send("restart")  # one service comes back up; the other stays down
    srv.expect("EVENT", 5, "restarted")
    for c in clients:
        c.send("send")
    for port, c in zip((gone, restarted), clients, strict=True):
        res = c.expect("RESULT", 5)
        ctx.check(f"port {port}", res["then"] == "reset", f"client's next request on port {port} "
                  f"({'no listener' if port == gone else 'listener back'}): {res['then']}")
    srv.send("stop")


def time_wait_assassination(ctx: Ctx) -> None:
    (port,) = ctx.ports
    rep = ctx.agent("router", "replay", ready=20, iface="lan0", server=ctx.S, port=port)
    srv = ctx.agent("server", "tw-server", ready=True, addr=ctx.S, port=port)
    ctx.bg()
    ev = ctx.agent("client", "tw-client", dst=ctx.S, port=port).expect("EVENT", 5, "time-wait")
    filt = f"( dport = :{port} and sport = :{ev['sport']} )"
    before = len(ctx.sh("client", "ss", "-Htan", "state", "time-wait", filt).splitlines())
    # A delayed duplicate of the server's old data segment reaches the client in TIME_WAIT; the client
    # ACKs it, the server (closed) answers the ACK with RST, and the RST ends TIME_WAIT early.
    rep.send("replay")
    res = rep.expect("RESULT", 5)
    ctx.sleep(0.3)
    after = len(ctx.sh("client", "ss", "-Htan", "state", "time-wait", filt).splitlines())
    srv.send("stop")
    ctx.check("duplicate replayed", res.get("replayed") == 1, f"replayed: {res}")
    ctx.check("TIME_WAIT killed", before == 1 and after == 0,
              f"client TIME_WAIT sockets before/after the RST: {before}/{after} (net.ipv4.tcp_rfc1337=0)")


# The router's timeout for established TCP entries in the NAT scenario, and how long the client idles: about
# the shortest idle timeout NATs are configured with (cloud NAT gateways use 240-1200 s), so the lab's wait
# is what production's is, only shorter.
NAT_TIMEOUT_S = 30
NAT_CLIENT_IDLE_S = 32.0


def nat_expired(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    srv = ctx.agent("server", "hold-server", ready=True, addr=ctx.S, port=port)
    # --random-fully: the new mapping after the entry is gone gets another port, as on NAT gateways that
    # randomise (or whose old port was reused meanwhile). With the same port the connection would
    # silently survive (loose pick-up re-creates the entry).
    ctx.iptables("router", "-A", "POSTROUTING", "-o", "wan0", "-p", "tcp", "--dport", str(port), "-j",
                 "MASQUERADE", "--random-fully", table="nat")
    ctx.sysctl("router", "net.netfilter.nf_conntrack_tcp_timeout_established", str(NAT_TIMEOUT_S))
    cli = ctx.agent("client", "idle-client", dst=ctx.S, port=port, timeout=2.0, idle=NAT_CLIENT_IDLE_S + 30)
    cli.expect("EVENT", 5, "idle")
    # The NAT entry times out while the connection idles.
    ctx.sleep(NAT_CLIENT_IDLE_S)
    left = ctx.sh("router", "conntrack", "-L", "-p", "tcp", "--orig-port-dst", str(port), check=False)
    ctx.check("NAT entry timed out", "ESTABLISHED" not in left,
              f"router's conntrack after {NAT_CLIENT_IDLE_S:g} s idle with a {NAT_TIMEOUT_S} s timeout: "
              f"{left.strip() or 'no entry'}")
    cli.send("send")
    res = cli.expect("RESULT", 5)
    ctx.check("reset after the NAT entry expired", res["then"] == "reset", f"client: {res['then']}")
    # The server's side of the old connection ends later against the router, which no longer maps it.
    srv.send("close")
    srv.expect("RESULT", 5)


def nat_post(ctx: Ctx, pcaps: dict[str, PcapFile]) -> None:
    (port,) = ctx.ports
    seen = [r for pc in pcaps.values() for r in pc.rsts if port in (r.sport, r.dport)]
    by_server = any(r.src == ctx.S for r in seen)
    by_router = any(r.src == ctx.RW for r in seen)
    ctx.note("the write-up says the NAT sends the reset; here the server's stack did"
             f"{' (its listener got data from the new, unknown mapping)' if by_server else ' not (no RST seen)'}"
             + (", and the router's own stack reset the server's later FIN to the mapping it had forgotten"
                if by_router else ""))


def connect_then_close(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    ctx.agent("server", "echo-server", ready=True, addr=ctx.S, ports=str(port))
    # The SYN-ACK is late (lost once on the way back); the client's connect timeout is 300 ms.
    lost = ctx.iptables("router", "-I", "FORWARD", "-p", "tcp", "-s", ctx.S, "--sport", str(port),
                        "--tcp-flags", "SYN,ACK", "SYN,ACK", "-j", "DROP")
    ev = ctx.agent("client", "give-up", dst=ctx.S, port=port, timeout=0.3).expect("EVENT", 3)
    lost.remove()
    ctx.check("client gave up", ev.get("what") == "gave-up", f"client: {ev.get('what')}")
    ctx.sleep(1.2)  # the server retransmits the SYN-ACK 1 s after the first; it reaches no socket


def keepalive_timeout(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.bg()
    ctx.agent("server", "echo-server", ready=True, addr=ctx.S, ports=str(port))
    cli = ctx.agent("client", "keepalive", dst=ctx.S, port=port, idle=1, intvl=1, cnt=2)
    cli.expect("EVENT", 5, "idle")
    # The server goes silent: whatever it sends is lost in the router.
    ctx.iptables("router", "-I", "FORWARD", "-p", "tcp", "-s", ctx.S, "--sport", str(port), "-j", "DROP")
    res = cli.expect("RESULT", 10)
    ctx.check("keepalive gave up", res["then"] == "ETIMEDOUT", f"client: {res['then']} after {res.get('after')} s")


def injected(ctx: Ctx) -> None:
    (port,) = ctx.ports
    inj = ctx.agent("router", "inject", ready=20, iface="lan0", server=ctx.S, port=port, ttl=44)
    srv = ctx.agent("server", "pong-server", ready=True, addr=ctx.S, port=port)
    ctx.bg()
    cli = ctx.agent("client", "ping-pong", dst=ctx.S, port=port)
    res = inj.expect("RESULT", 8)
    ctx.check("forged RSTs sent", res.get("injected") == 2, f"injector: {res}")
    c, s = cli.expect("RESULT", 6), srv.expect("RESULT", 6)
    ctx.check("both ends reset", c["then"] == "reset" and s["then"] == "reset",
              f"client: {c['then']}, server: {s['then']} (forged RSTs with TTL 44; the server's own arrive with 63)")


SCAN_BASE = 61000  # above the ephemeral port range: the scanner's source ports are its own


def scan_label(rst: Packet, pcap: PcapFile, ctx: Ctx) -> str | None:
    mine = (rst.src == ctx.C and rst.sport >= SCAN_BASE) or (rst.dst == ctx.C and rst.dport >= SCAN_BASE)
    return "scan" if mine else None


def scan(ctx: Ctx) -> None:
    open_ports = (22, 80)
    ports = [21, 22, 23, 25, 80, 443, 3306, 8080]
    ctx.rng.shuffle(ports)
    ctx.agent("server", "echo-server", ready=True, addr=ctx.S, ports=",".join(map(str, open_ports)))
    ctx.bg()
    sc = ctx.agent("client", "syn-scan", ready=20, dst=ctx.S, ports=",".join(map(str, ports)),
                   sport_base=SCAN_BASE)
    res = sc.expect("RESULT", 10)
    ctx.check("scan result", res["open"] == list(open_ports), f"open {res['open']}, closed {res['closed']}")


def idle_timeout(ctx: Ctx) -> None:
    (port,) = ctx.ports
    ctx.agent("server", "echo-server", ready=True, addr=ctx.S, ports=str(port))
    px = ctx.agent("router", "idle-proxy", ready=True, listen=ctx.R, port=port, upstream=ctx.S, idle=1.0)
    ctx.bg()
    t0 = time.monotonic()
    res = ctx.agent("client", "request", dst=ctx.R, port=port, after=3.0).expect("RESULT", 6)
    px.expect("RESULT", 3)
    ctx.check("proxy reset the idle connection", res["then"] == "reset",
              f"client through the proxy (idle timeout 1 s): {res['then']} after {time.monotonic() - t0:.1f} s")


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("closed-port", "connect to a port nobody listens on", (9,), closed_port,
             {"closed-port": reasons("NO_SOCKET")}),
    Scenario("firewall-reject", "REJECT --reject-with tcp-reset: router FORWARD, server INPUT, the INVALID trap "
             "and its fix", (8101, 8102, 8103, 8104), firewall_reject, {"firewall-reject": reasons(None)},
             post=firewall_post),
    Scenario("abortive-close", "nginx reset_timedout_connection; SO_LINGER {1, 0}", (8201, 8202), abortive_close,
             {"abortive-close": reasons("TCP_STATE", "TCP_ABORT_ON_LINGER")}),
    Scenario("unread-data-close", "close() with unread data", (8301,), unread_data_close,
             {"unread-data-close": reasons("TCP_ABORT_ON_CLOSE")}),
    Scenario("data-after-close", "a keep-alive request on a connection the server closed", (8401,),
             data_after_close, {"data-after-close": reasons("TCP_TIMEWAIT_SOCKET", "TCP_ABORT_ON_DATA")},
             write_up=False),
    Scenario("syn-existing-tuple", "a client that lost its connection reconnects from the same port", (8501,),
             syn_existing_tuple, {"syn-existing-tuple": reasons("TCP_INVALID_ACK_SEQUENCE")}),
    Scenario("accept-queue-overflow", "listen(4), no accept, tcp_abort_on_overflow=1, racing handshakes",
             (8601,), accept_queue_overflow, {"accept-queue-overflow": reasons("INVALID_SYN")}),
    Scenario("listen-close-queued", "the write-up's listen(2) server closes with connections queued", (8701,),
             listen_close_queued, {"listen-close-queued": reasons("TCP_STATE", "NOT_SPECIFIED"),
                                   "closed-port": reasons("NO_SOCKET")}, label=listen_close_queued_label),
    Scenario("half-open", "the server host crashes silently; one service comes back, one does not",
             (8801, 8802), half_open, {"half-open": reasons("NO_SOCKET", "TCP_FLAGS")}),
    Scenario("time-wait-assassination", "a delayed duplicate reaches TIME_WAIT; the closed peer's RST kills it",
             (8901,), time_wait_assassination, {"time-wait-assassination": reasons("TCP_FLAGS", "NO_SOCKET")}),
    Scenario("nat-expired", "MASQUERADE entry times out while the connection idles", (9001,), nat_expired,
             {"nat-expired": reasons("TCP_FLAGS", "NO_SOCKET")}, post=nat_post),
    Scenario("connect-then-close", "the client closes before the (late) SYN-ACK arrives", (9101,),
             connect_then_close, {"connect-then-close": reasons("NO_SOCKET")}),
    Scenario("keepalive-timeout", "keepalive probes unanswered (the server's packets lost)", (9201,),
             keepalive_timeout, {"keepalive-timeout": reasons("TCP_KEEPALIVE_TIMEOUT")}, write_up=False),
    Scenario("injected", "forged RSTs (TTL 44) toward both ends from the router", (9301,), injected,
             {"injected": reasons(None)}, write_up=False),
    Scenario("scan", "a raw-socket SYN scan over open and closed ports", (), scan,
             {"scan": reasons("NO_SOCKET")}, label=scan_label, write_up=False),
    Scenario("idle-timeout", "a proxy in the router resets connections idle for 1 s", (9401,), idle_timeout,
             {"idle-timeout": reasons("TCP_STATE", "TCP_ABORT_ON_LINGER")}, write_up=False),
)

BY_ID: dict[str, Scenario] = {s.id: s for s in SCENARIOS}
WRITE_UP_CAUSES: tuple[str, ...] = (
    "closed-port", "firewall-reject", "abortive-close", "syn-existing-tuple", "accept-queue-overflow",
    "half-open", "listen-close-queued", "time-wait-assassination", "unread-data-close", "nat-expired",
    "connect-then-close",
)

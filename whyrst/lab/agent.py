"""Traffic programs of the lab, run inside a namespace: ``python3 -m whyrst.lab.agent ROLE key=value ...``.

Standard library only (scapy only in the roles that forge or replay packets, imported there), so a role
starts in a few tens of milliseconds. Protocol with the lab: a role prints ``READY {json}`` once it is
listening or connected, ``EVENT {json}`` at the moments the lab waits for, ``RESULT {json}`` at the end,
and reads one-word commands (``go``, ``close``, ...) from stdin where the scenario needs the lab to act
(add a firewall rule, delete a conntrack entry) between two steps.
"""

from __future__ import annotations

import contextlib
import errno
import json
import select
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

ROLES: dict[str, Callable[..., None]] = {}


def role(fn: Callable[..., None]) -> Callable[..., None]:
    ROLES[fn.__name__.replace("_", "-")] = fn
    return fn


def say(kind: str, **info: Any) -> None:
    sys.stdout.write(f"{kind} {json.dumps(info)}\n")
    sys.stdout.flush()


def wait_cmd(expected: str | None = None, timeout: float = 30.0) -> str:
    """The next command line from the lab ('' at EOF or timeout)."""
    r, _, _ = select.select([sys.stdin], [], [], timeout)
    if not r:
        return ""
    line = sys.stdin.readline().strip()
    if expected is not None and line != expected:
        raise SystemExit(f"agent: expected command {expected!r}, got {line!r}")
    return line


def err_name(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno is not None:
        return errno.errorcode.get(err.errno, str(err.errno))
    if isinstance(err, TimeoutError | socket.timeout):
        return "timeout"
    return type(err).__name__


def linger0(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def listener(addr: str, port: int, backlog: int = 16) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(backlog)
    return s


def recv_until_eof(s: socket.socket, timeout: float = 5.0) -> bytes:
    s.settimeout(timeout)
    out = b""
    while True:
        b = s.recv(65536)
        if not b:
            return out
        out += b


def clean_exchange(s: socket.socket, payload: bytes, timeout: float = 5.0) -> bytes:
    """Send, half-close, read the answer to EOF, close: a connection that ends with FINs only."""
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    data = recv_until_eof(s, timeout)
    s.close()
    return data


def wait_reset(s: socket.socket, timeout: float) -> str:
    """What the next read brings: 'reset', 'eof', 'data', 'timeout' or an errno name."""
    s.settimeout(timeout)
    try:
        b = s.recv(65536)
    except OSError as err:
        name = err_name(err)
        return "reset" if name == "ECONNRESET" else name
    return "data" if b else "eof"


def serve_echo(conn: socket.socket, timeout: float = 30.0) -> None:
    """Echo until EOF, then close (the clean end); a reset only ends the thread."""
    try:
        conn.settimeout(timeout)
        while True:
            b = conn.recv(65536)
            if not b:
                break
            conn.sendall(b)
    except OSError:
        pass
    finally:
        conn.close()


def accept_loop(srv: socket.socket, handler: Callable[[socket.socket], None], stop: threading.Event) -> None:
    srv.settimeout(0.1)
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        threading.Thread(target=handler, args=(conn,), daemon=True).start()


# -- servers -------------------------------------------------------------------------------------------


@role
def echo_server(addr: str, ports: str, backlog: int = 64) -> None:
    """Echo servers on some ports until stdin closes or says ``stop``."""
    stop = threading.Event()
    socks = [listener(addr, int(p), backlog) for p in ports.split(",")]
    for s in socks:
        threading.Thread(target=accept_loop, args=(s, serve_echo, stop), daemon=True).start()
    say("READY", ports=ports)
    while True:
        cmd = wait_cmd(timeout=3600)
        if cmd in ("", "stop"):
            break
    stop.set()
    for s in socks:
        s.close()


@role
def linger_server(addr: str, port: int) -> None:
    """Answers one request, then closes with SO_LINGER {1, 0}: the application's abortive close."""
    srv = listener(addr, port)
    say("READY")
    conn, _ = srv.accept()
    conn.settimeout(5)
    req = conn.recv(65536)
    conn.sendall(b"reply to " + req)
    time.sleep(0.2)
    linger0(conn)
    conn.close()
    srv.close()
    say("RESULT", closed="linger0")


@role
def unread_server(addr: str, port: int) -> None:
    """Accepts, lets the request arrive, and closes without reading it (the write-up's server)."""
    srv = listener(addr, port)
    say("READY")
    conn, _ = srv.accept()
    select.select([conn], [], [], 5)
    time.sleep(0.2)
    conn.close()
    srv.close()
    say("RESULT", closed="unread")


@role
def fin_first_server(addr: str, port: int) -> None:
    """Answers one request and closes (FIN) while the keep-alive client still means to reuse it."""
    srv = listener(addr, port)
    say("READY")
    conn, _ = srv.accept()
    conn.settimeout(5)
    req = conn.recv(65536)
    conn.sendall(b"reply to " + req)
    conn.close()
    srv.close()
    say("RESULT", closed="fin")


@role
def never_accept(addr: str, port: int, backlog: int = 2) -> None:
    """The write-up's listen(2) server that never accepts; closes the listener on ``close``."""
    srv = listener(addr, port, backlog)
    say("READY")
    wait_cmd("close")
    srv.close()
    say("RESULT", closed="listener")


@role
def slow_accept(addr: str, port: int, backlog: int = 4) -> None:
    """listen(backlog) and no accept() until ``accept``: then serve what is queued (echo) and leave."""
    srv = listener(addr, port, backlog)
    say("READY")
    wait_cmd("accept")
    stop = threading.Event()
    threading.Thread(target=accept_loop, args=(srv, serve_echo, stop), daemon=True).start()
    wait_cmd("stop", timeout=10)
    stop.set()
    srv.close()


@role
def hold_server(addr: str, port: int) -> None:
    """Echo server whose connections stay open (for idle connections) until ``close``: then every
    connection still open is closed normally."""
    srv = listener(addr, port)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def handler(conn: socket.socket) -> None:
        conns.append(conn)
        try:
            conn.settimeout(None)
            while True:
                b = conn.recv(65536)
                if not b:
                    conns.remove(conn)
                    conn.close()  # the client ended it: end it normally
                    return
                conn.sendall(b)
        except OSError:
            pass

    threading.Thread(target=accept_loop, args=(srv, handler, stop), daemon=True).start()
    say("READY")
    wait_cmd("close", timeout=60)
    stop.set()
    for c in list(conns):
        with contextlib.suppress(OSError):
            c.shutdown(socket.SHUT_RDWR)  # the FIN now; close() alone waits for the reader thread's recv
            c.close()
    srv.close()
    time.sleep(0.3)
    say("RESULT", closed=len(conns))


@role
def crash_server(addr: str, ports: str, restart: str = "") -> None:
    """Echo servers that 'crash' on ``crash``: every socket closed at once with SO_LINGER 0 (the lab drops
    what the dying host sends, so the peers hear nothing). Ports in ``restart`` listen again afterwards,
    as a service that came back up."""
    plist = [int(p) for p in ports.split(",")]
    again = {int(p) for p in restart.split(",") if p}
    srvs = {p: listener(addr, p) for p in plist}
    conns: list[socket.socket] = []
    say("READY")
    for p in plist:
        c, _ = srvs[p].accept()
        c.settimeout(5)
        c.sendall(c.recv(65536))
        conns.append(c)
    say("EVENT", what="serving")
    wait_cmd("crash")
    for c in conns:
        linger0(c)
        c.close()
    for s in srvs.values():
        s.close()
    say("EVENT", what="crashed")
    wait_cmd("restart")
    back = [listener(addr, p) for p in sorted(again)]
    say("EVENT", what="restarted", ports=sorted(again))
    wait_cmd("stop", timeout=10)
    for s in back:
        s.close()


@role
def tw_server(addr: str, port: int) -> None:
    """Answers one request and closes after the client did (the client ends in TIME_WAIT); keeps
    listening, as a server does."""
    srv = listener(addr, port)
    say("READY")
    conn, _ = srv.accept()
    conn.settimeout(5)
    req = conn.recv(65536)
    conn.sendall(b"reply to " + req)
    recv_until_eof(conn)
    conn.close()
    wait_cmd("stop", timeout=20)
    srv.close()


@role
def idle_proxy(listen: str, port: int, upstream: str, idle: float = 1.0) -> None:
    """A load balancer in the router: relays client <-> server and resets both sides (SO_LINGER 0) when a
    connection has been idle for ``idle`` seconds."""
    srv = listener(listen, port)
    say("READY")
    srv.settimeout(10)
    cli, _ = srv.accept()
    up = socket.create_connection((upstream, port), timeout=5)
    last = time.monotonic()
    pair = {cli: up, up: cli}
    while True:
        left = idle - (time.monotonic() - last)
        if left <= 0:
            break
        r, _, _ = select.select(list(pair), [], [], left)
        for s in r:
            b = s.recv(65536)
            if not b:
                left = -1
                break
            pair[s].sendall(b)
            last = time.monotonic()
        if left < 0:
            break
    linger0(cli)
    linger0(up)
    cli.close()
    up.close()
    srv.close()
    say("RESULT", reset="idle")


# -- clients -------------------------------------------------------------------------------------------


@role
def bg(dst: str, port: int, count: int = 3, interval: float = 0.3, http: int = 0) -> None:
    """Background connections that end normally, with FINs."""
    done = 0
    for i in range(count):
        try:
            s = socket.create_connection((dst, port), timeout=3)
            payload = b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n" if http else f"background {i}\n".encode()
            clean_exchange(s, payload)
            done += 1
        except OSError:
            pass
        time.sleep(interval)
    say("RESULT", done=done)


@role
def refused(dst: str, port: int, count: int = 1, gap: float = 0.1) -> None:
    """connect() attempts that are expected to be refused."""
    out = []
    for _ in range(count):
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect((dst, port))
            out.append("connected")
        except OSError as err:
            out.append(err_name(err))
        s.close()
        time.sleep(gap)
    say("RESULT", outcomes=out)


@role
def request(dst: str, port: int, payload: str = "hello\n", after: float = 3.0, read: int = 1) -> None:
    """Send a request, read the reply (``read``), then wait for the connection's end."""
    s = socket.create_connection((dst, port), timeout=3)
    s.sendall(payload.encode())
    reply = ""
    if read:
        s.settimeout(3)
        try:
            reply = s.recv(65536).decode(errors="replace")
        except OSError as err:
            reply = err_name(err)
    say("RESULT", reply=reply, then=wait_reset(s, after), sport=s.getsockname()[1])
    s.close()


@role
def keepalive_reuse(dst: str, port: int) -> None:
    """An HTTP-style keep-alive client: a second request on a connection the server has closed meanwhile."""
    s = socket.create_connection((dst, port), timeout=3)
    s.sendall(b"first request\n")
    s.settimeout(3)
    reply = s.recv(65536)
    time.sleep(0.3)  # the server's FIN arrives now; the client does not read it before writing
    s.sendall(b"second request\n")
    then = wait_reset(s, 2.0)
    # The server's FIN was queued before the RST: the read sees EOF first, the reset shows in SO_ERROR
    # (EPIPE: a reset in CLOSE_WAIT) or on the next write.
    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    say("RESULT", reply=reply.decode(errors="replace"), then=then,
        so_error=errno.errorcode.get(err, str(err)) if err else None)
    s.close()


@role
def idle_client(dst: str, port: int, timeout: float = 3.0, sport: int = 0, idle: float = 30.0) -> None:
    """Connect, one exchange, then idle (up to ``idle`` seconds) until ``send``; send again and report
    what came back."""
    s = socket.socket()
    if sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", sport))
    s.settimeout(3)
    s.connect((dst, port))
    s.sendall(b"first\n")
    s.recv(65536)
    say("EVENT", what="idle", sport=s.getsockname()[1])
    while True:
        cmd = wait_cmd(timeout=idle)
        if cmd == "send":
            break
        if cmd == "":
            return
    s.sendall(b"after the idle time\n")
    outcome = wait_reset(s, timeout)
    if outcome == "timeout":
        say("EVENT", what="no-answer")
        cmd = wait_cmd(timeout=timeout)  # the lab may lift a filter so the retransmission gets through
        if cmd == "lifted":
            outcome = "late-" + wait_reset(s, 5.0)
            if outcome == "late-data":
                with contextlib.suppress(OSError):
                    clean_exchange(s, b"bye\n")
    say("RESULT", then=outcome)
    s.close()


@role
def http_partial(dst: str, port: int, timeout: float = 4.0) -> None:
    """A client that sends an incomplete request header and waits (nginx's client_header_timeout)."""
    s = socket.create_connection((dst, port), timeout=3)
    s.sendall(b"GET / HTTP/1.1\r\n")
    t0 = time.monotonic()
    outcome = wait_reset(s, timeout)
    say("RESULT", then=outcome, after=round(time.monotonic() - t0, 3))
    s.close()


@role
def reconnect_same_port(dst: str, port: int, sport: int) -> None:
    """A client bound to a fixed source port that 'crashes' (the lab drops what it sends, so the server
    never hears of it) and comes back from the same port."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.settimeout(3)
    s.connect((dst, port))
    s.sendall(b"before the crash\n")
    s.recv(65536)
    say("EVENT", what="connected")
    wait_cmd("crash")
    linger0(s)
    s.close()
    say("EVENT", what="crashed")
    wait_cmd("go")
    t0 = time.monotonic()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.settimeout(5)
    try:
        s.connect((dst, port))
        took = time.monotonic() - t0
        data = clean_exchange(s, b"after the crash\n")
        say("RESULT", reconnected=True, took=round(took, 3), echo=len(data))
    except OSError as err:
        say("RESULT", reconnected=False, error=err_name(err))


@role
def burst(dst: str, port: int, first: int = 4, racing: int = 4) -> None:
    """Fill a listener's accept queue, then let several handshakes complete at the same moment.

    ``first`` connections complete one after another and wait in the queue. The ``racing`` ones set
    TCP_DEFER_ACCEPT, which on a connecting socket holds back the handshake's final ACK so that it rides
    on the first data: their SYNs are all in the SYN queue (the accept queue is not full yet) before any
    of them completes, as over a real round trip. The requests then complete the handshakes at once;
    the queue overflows on all but the first.

    Then the write-up's own experiment: one more connect into the full queue (its SYN is dropped, no RST)."""
    early = []
    for _ in range(first):
        s = socket.create_connection((dst, port), timeout=3)
        early.append(s)
    race = []
    for _ in range(racing):
        s = socket.socket()
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((dst, port))
        race.append(s)
    deadline = time.monotonic() + 3
    pending = set(race)
    while pending and time.monotonic() < deadline:
        _, w, _ = select.select([], list(pending), [], 0.1)
        pending -= set(w)
    for s in race:
        with contextlib.suppress(OSError):
            s.send(b"request\n")
    time.sleep(0.3)
    outcomes = []
    for s in race:
        err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        outcomes.append(errno.errorcode.get(err, str(err)) if err else "queued")
    # The write-up's experiment: a connect into the full queue. Its SYN is dropped (no RST): the client
    # would retransmit; it gives up after 300 ms and close() of a SYN_SENT socket sends nothing.
    late = socket.socket()
    late.settimeout(0.3)
    try:
        late.connect((dst, port))
        late_outcome = "connected"
    except OSError as err:
        late_outcome = err_name(err)
    late.close()
    say("EVENT", what="burst-done", racing=outcomes, late=late_outcome)
    wait_cmd("served")
    served = 0
    for s in early + [s for s, o in zip(race, outcomes, strict=True) if o == "queued"]:
        try:
            s.setblocking(True)
            clean_exchange(s, b"finally served\n")
            served += 1
        except OSError:
            s.close()
    for s, o in zip(race, outcomes, strict=True):
        if o != "queued":
            s.close()
    say("RESULT", racing=outcomes, late=late_outcome, served=served)


@role
def queue_up(dst: str, port: int, connect: int = 3, late: int = 2) -> None:
    """The write-up's clients: ``connect`` of them complete the handshake and send a little (they wait in
    the never-accepting server's queue); ``late`` more find the queue full (their SYNs are dropped and
    retransmitted)."""
    done = []
    for i in range(connect):
        s = socket.create_connection((dst, port), timeout=3)
        s.sendall(f"queued {i}\n".encode())
        done.append(s)
        time.sleep(0.05)
    waiting = []
    for _ in range(late):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((dst, port))
        waiting.append(s)
    say("EVENT", what="queued")
    deadline = time.monotonic() + 4
    late_out: dict[int, str] = {}
    while len(late_out) < len(waiting) and time.monotonic() < deadline:
        _, w, _ = select.select([], [s for s in waiting if s.fileno() not in late_out], [], 0.1)
        for s in w:
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            late_out[s.fileno()] = errno.errorcode.get(err, str(err)) if err else "connected"
    queued_out = [wait_reset(s, 0.5) for s in done]
    for s in done + waiting:
        s.close()
    say("RESULT", queued=queued_out, late=list(late_out.values()))


@role
def give_up(dst: str, port: int, timeout: float = 0.3) -> None:
    """A non-blocking connect() abandoned after ``timeout`` (the SYN-ACK is late): close() in SYN_SENT."""
    s = socket.socket()
    s.setblocking(False)
    with contextlib.suppress(BlockingIOError):
        s.connect((dst, port))
    _, w, _ = select.select([], [s], [], timeout)
    state = "connected" if w and not s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) else "gave-up"
    sport = s.getsockname()[1]
    s.close()
    say("EVENT", what=state, sport=sport)
    say("RESULT", outcome=state, sport=sport)


@role
def keepalive(dst: str, port: int, idle: int = 1, intvl: int = 1, cnt: int = 2) -> None:
    """An idle connection with short TCP keepalive timers; the lab makes the peer go silent."""
    s = socket.create_connection((dst, port), timeout=3)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, intvl)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cnt)
    s.sendall(b"hello\n")
    s.settimeout(3)
    s.recv(65536)
    say("EVENT", what="idle", sport=s.getsockname()[1])
    t0 = time.monotonic()
    outcome = wait_reset(s, idle + intvl * (cnt + 2) + 2)
    say("RESULT", then=outcome, after=round(time.monotonic() - t0, 3))
    s.close()


@role
def ping_pong(dst: str, port: int, timeout: float = 4.0) -> None:
    """One exchange, then wait on the idle connection (for a forged RST)."""
    s = socket.create_connection((dst, port), timeout=3)
    s.sendall(b"ping\n")
    s.settimeout(3)
    s.recv(65536)
    say("EVENT", what="idle", sport=s.getsockname()[1])
    say("RESULT", then=wait_reset(s, timeout))
    s.close()


@role
def pong_server(addr: str, port: int, timeout: float = 4.0) -> None:
    srv = listener(addr, port)
    say("READY")
    conn, _ = srv.accept()
    conn.settimeout(3)
    conn.recv(65536)
    conn.sendall(b"pong\n")
    say("RESULT", then=wait_reset(conn, timeout))
    conn.close()
    srv.close()


@role
def tw_client(dst: str, port: int) -> None:
    """Request, reply, close first: this side ends in TIME_WAIT."""
    s = socket.create_connection((dst, port), timeout=3)
    s.sendall(b"request\n")
    s.settimeout(3)
    s.recv(65536)
    s.shutdown(socket.SHUT_WR)
    recv_until_eof(s)
    sport = s.getsockname()[1]
    s.close()
    time.sleep(0.1)
    say("EVENT", what="time-wait", sport=sport)
    say("RESULT", sport=sport)


# -- packet forgers (scapy) -----------------------------------------------------------------------------


def _scapy() -> Any:
    import logging

    logging.getLogger("scapy").setLevel(logging.ERROR)
    import scapy.all as sc

    sc.conf.verb = 0
    # Raw IP sockets: the kernel routes and uses its neighbour table, so scapy sends no ARP of its own
    sc.conf.L3socket = sc.L3RawSocket
    return sc


@role
def inject(iface: str, server: str, port: int, ttl: int = 44, quiet: float = 0.3) -> None:
    """An on-path injector: watches a connection and, once it is quiet, forges a RST toward each end
    with the other end's address, exact in-window sequence numbers, and its own TTL."""
    sc = _scapy()
    seen: list[Any] = []
    sniffer = sc.AsyncSniffer(iface=iface, filter=f"tcp and host {server} and port {port}",
                              prn=lambda p: seen.append(p), store=False)
    sniffer.start()
    time.sleep(0.3)  # the socket filter is attached once start() returns; settle a little anyway
    say("READY")
    deadline = time.monotonic() + 10
    last = None
    while time.monotonic() < deadline:
        time.sleep(0.05)
        data = [p for p in seen if p[sc.IP].src == server and len(p[sc.TCP].payload) > 0]
        if data and time.time() - float(seen[-1].time) > quiet:
            last = data[-1]
            break
    sniffer.stop()
    if last is None:
        say("RESULT", injected=0)
        return
    ip, tcp = last[sc.IP], last[sc.TCP]
    server_nxt = tcp.seq + len(tcp.payload)
    client_nxt = tcp.ack
    to_client = sc.IP(src=ip.src, dst=ip.dst, ttl=ttl) / sc.TCP(sport=tcp.sport, dport=tcp.dport, flags="RA",
                                                                seq=server_nxt, ack=client_nxt, window=0)
    to_server = sc.IP(src=ip.dst, dst=ip.src, ttl=ttl) / sc.TCP(sport=tcp.dport, dport=tcp.sport, flags="RA",
                                                                seq=client_nxt, ack=server_nxt, window=0)
    sc.send(to_client)
    sc.send(to_server)
    say("RESULT", injected=2, seq_client=server_nxt, seq_server=client_nxt)


@role
def replay(iface: str, server: str, port: int) -> None:
    """A network that delivers an old segment twice: keeps the server's first data segment as seen on
    ``iface`` and sends an exact copy of it out again on ``replay``."""
    sc = _scapy()
    seen: list[Any] = []
    sniffer = sc.AsyncSniffer(
        iface=iface, filter=f"tcp and src host {server} and src port {port}",
        lfilter=lambda p: len(p[sc.TCP].payload) > 0, prn=lambda p: seen.append(p), store=False)
    sniffer.start()
    time.sleep(0.3)
    say("READY")
    wait_cmd("replay")
    sniffer.stop()
    if not seen:
        say("RESULT", replayed=0)
        return
    sc.sendp(seen[0], iface=iface)
    say("RESULT", replayed=1, seq=int(seen[0][sc.TCP].seq))


@role
def syn_scan(dst: str, ports: str, sport_base: int = 61000) -> None:
    """A SYN scan with raw packets (nmap -sS style: window 1024, no options). The scanner's own kernel
    resets every SYN-ACK, since no socket of its own asked for it."""
    sc = _scapy()
    plist = [int(p) for p in ports.split(",")]
    say("READY")
    probes = [sc.IP(dst=dst) / sc.TCP(sport=sport_base + i, dport=p, flags="S", seq=1000 + i, window=1024)
              for i, p in enumerate(plist)]
    ans, _ = sc.sr(probes, timeout=1.0, inter=0.02)
    opened = sorted(int(r[sc.TCP].sport) for _, r in ans if r.haslayer(sc.TCP) and r[sc.TCP].flags.S)
    closed = sorted(int(r[sc.TCP].sport) for _, r in ans if r.haslayer(sc.TCP) and r[sc.TCP].flags.R)
    say("RESULT", open=opened, closed=closed)


# -- host helpers ---------------------------------------------------------------------------------------

SIOCETHTOOL = 0x8946
# ethtool "set" commands of the legacy ioctl (linux/ethtool.h): tx checksum, scatter-gather, TSO, GSO, GRO
_OFFLOADS = {"tx": 0x17, "sg": 0x19, "tso": 0x1F, "gso": 0x24, "gro": 0x2C}


@role
def offload_off(ifaces: str) -> None:
    """Switch off checksum and segmentation offloads (no ethtool binary needed): the captures then hold
    what a wire would carry, correct checksums and MTU-sized segments, instead of veth's shortcuts."""
    import ctypes
    import fcntl

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    failed = []
    for ifname in ifaces.split(","):
        for name, cmd in _OFFLOADS.items():
            value = ctypes.create_string_buffer(struct.pack("II", cmd, 0))  # struct ethtool_value
            ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(value))
            try:
                fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
            except OSError:
                failed.append(f"{ifname}:{name}")
    s.close()
    say("RESULT", failed=failed)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] not in ROLES:
        print(f"usage: python -m whyrst.lab.agent ROLE key=value ...   roles: {', '.join(sorted(ROLES))}",
              file=sys.stderr)
        return 2
    fn = ROLES[args[0]]
    kwargs: dict[str, Any] = {}
    ann = fn.__annotations__
    for tok in args[1:]:
        k, _, v = tok.partition("=")
        k = k.replace("-", "_")
        kind = ann.get(k, "str")
        kwargs[k] = int(v) if kind == "int" else float(v) if kind == "float" else v
    try:
        fn(**kwargs)
    except (BrokenPipeError, KeyboardInterrupt):
        return 1
    except OSError as err:
        say("ERROR", error=err_name(err), detail=str(err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``whyrst watch``: live explanations of the resets this host sends and receives, from the kernel's own
reasons (``tcp:tcp_send_reset`` carries ``enum sk_rst_reason`` since Linux 6.10), joined with the socket
state, the sockets' owners and, with ``--wire``, the RSTs on the wire (which tell netfilter's resets
from the stack's). No compiler, no BPF toolchain: tracefs and a classic BPF socket filter.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ipaddress
import json
import os
import select
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from whyrst.errors import WhyrstError

if TYPE_CHECKING:  # the CLI builds every parser at start-up: the engine loads only when watch runs
    from whyrst.live.explain import Correlator, LiveReset


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON lines: one object per reset")
    p.add_argument("--duration", type=float, default=0, metavar="SECONDS", help="stop after this long")
    p.add_argument("--count", type=int, default=0, help="stop after this many resets")
    p.add_argument("--wire", metavar="IFACE",
                   help="also capture RSTs on IFACE (or 'any'): resets with no kernel event are a firewall's")
    p.add_argument("--netns", action="append", default=[], metavar="NAME",
                   help="capture the wire inside this network namespace (repeatable; default: watch's own)")
    p.add_argument("--host", action="append", default=[], metavar="ADDR[/LEN]",
                   help="only resets to or from these addresses (repeatable)")
    p.add_argument("--direction", choices=("sent", "received", "both"), default="both",
                   help="resets this host sends, receives, or both (default)")
    p.add_argument("--prometheus", metavar="ADDR:PORT",
                   help="serve whyrst_resets_total{direction,reason,cause} and whyrst_lost_events_total")
    p.add_argument("--hold", type=float, default=0.3, metavar="SECONDS",
                   help="how long a reset waits for its context before it is explained (default 0.3)")
    p.add_argument("--buffer-kb", type=int, default=4096, help="trace buffer per CPU in KiB (default 4096)")
    p.add_argument("--no-state", action="store_true",
                   help="do not trace socket state changes (less context, less overhead)")
    p.add_argument("--no-reasons", action="store_true", help=argparse.SUPPRESS)  # tests: act as on Linux < 6.10


def _host_filter(specs: list[str]) -> Any:
    if not specs:
        return None
    try:
        nets = [ipaddress.ip_network(s, strict=False) for s in specs]
    except ValueError as err:
        raise WhyrstError(f"--host: {err}") from None
    cache: dict[str, bool] = {}

    def match(addr: str) -> bool:
        hit = cache.get(addr)
        if hit is None:
            try:
                ip = ipaddress.ip_address(addr)
                if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
                    ip = ip.ipv4_mapped
                hit = any(ip in n for n in nets)
            except ValueError:
                hit = False
            if len(cache) > 100_000:
                cache.clear()
            cache[addr] = hit
        return hit

    return lambda a, b: match(a) or match(b)


class Prometheus:
    def __init__(self, spec: str) -> None:
        try:
            from prometheus_client import CollectorRegistry, Counter, start_http_server
        except ImportError:
            raise WhyrstError("--prometheus needs prometheus-client (pip install 'whyrst[live]')") from None
        host, _, port = spec.rpartition(":")
        if not port.isdigit():
            raise WhyrstError(f"--prometheus: expected ADDR:PORT, got {spec!r}")
        self.registry = CollectorRegistry()
        self.resets = Counter("whyrst_resets", "TCP resets seen by whyrst watch", ["direction", "reason", "cause"],
                              registry=self.registry)
        self.lost = Counter("whyrst_lost_events", "Trace events lost to buffer overruns", registry=self.registry)
        self.server: Any = None
        try:
            started = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry)
        except OSError as err:
            raise WhyrstError(f"--prometheus {spec}: {err.strerror or err}") from None
        if isinstance(started, tuple):
            self.server = started[0]
        self._lost = 0

    def add(self, r: LiveReset) -> None:
        self.resets.labels(r.direction, r.kernel_reason or "none", r.cause).inc()

    def set_lost(self, total: int) -> None:
        if total > self._lost:
            self.lost.inc(total - self._lost)
            self._lost = total

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class View:
    """The terminal: a live table on a TTY, one line per reset otherwise."""

    def __init__(self, json_out: bool) -> None:
        self.json = json_out
        self.tty = sys.stdout.isatty() and not json_out
        self.recent: deque[LiveReset] = deque(maxlen=18)
        self.counts: dict[tuple[str, str], int] = {}
        self.live: Any = None
        self.status = ""
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self.console = Console(highlight=False)
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()

    def add(self, r: LiveReset) -> None:
        key = (r.direction, r.cause)
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.json:
            sys.stdout.write(json.dumps(r.to_json()) + "\n")
            sys.stdout.flush()
        elif self.tty:
            self.recent.append(r)
        else:
            print(_line(r), flush=True)

    def refresh(self, status: str) -> None:
        self.status = status
        if self.live is not None:
            self.live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        t = Table(expand=True, box=None, header_style="bold")
        for col in ("time", "dir", "from", "to", "kernel reason", "state", "cause", "process"):
            t.add_column(col, no_wrap=True)
        for r in self.recent:
            t.add_row(time.strftime("%H:%M:%S", time.gmtime(r.ts)) + f".{int(r.ts * 1000) % 1000:03d}",
                      r.direction, f"{r.src}:{r.sport}", f"{r.dst}:{r.dport}", r.kernel_reason or "-",
                      r.state or "-", r.cause, f"{r.comm}[{r.pid}]" if r.pid else "-")
        summary = Table(box=None, header_style="bold")
        summary.add_column("cause")
        summary.add_column("sent", justify="right")
        summary.add_column("received", justify="right")
        for cause in sorted({c for _, c in self.counts}):
            summary.add_row(cause, str(self.counts.get(("sent", cause), 0)),
                            str(self.counts.get(("received", cause), 0)))
        return Group(t, Text(""), summary, Text(self.status, style="dim"))

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _line(r: LiveReset) -> str:
    who = f" {r.comm}[{r.pid}]" if r.pid else ""
    return (f"{time.strftime('%H:%M:%S', time.gmtime(r.ts))} {r.direction:8} {r.src}:{r.sport} > {r.dst}:{r.dport} "
            f"{r.kernel_reason or '-'} {r.state or '-'} -> {r.cause} ({r.confidence:.2f}){who}: {r.evidence[-1]}")


class _Stop(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    from whyrst.live.explain import Correlator
    from whyrst.live.kernel import KernelResets, preflight
    from whyrst.live.nstat import CounterWatch
    from whyrst.live.sockets import SocketTable

    try:
        preflight()
    except WhyrstError as err:
        print(f"whyrst: {err}", file=sys.stderr)
        return 2
    accept = _host_filter(args.host)
    if args.netns and not args.wire:
        raise WhyrstError("--netns selects where --wire captures: give --wire too")
    resources: list[Any] = []

    def cleanup() -> None:
        while resources:
            res = resources.pop()
            # cleanup must go on whatever fails: the tracefs instance must not outlive watch
            with contextlib.suppress(Exception):
                res.close()

    atexit.register(cleanup)
    stop = {"why": ""}
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)

    def on_signal(signum: int, _frame: Any) -> None:
        stop["why"] = signal.Signals(signum).name
        with contextlib.suppress(OSError):
            os.write(wfd, b"x")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        kernel = KernelResets(buffer_kb=args.buffer_kb, state_events=not args.no_state,
                              assume_no_reasons=args.no_reasons)
        resources.append(kernel)
        captures: list[Any] = []
        if args.wire:
            from whyrst.live.wire import WireCapture

            for ns in args.netns or [""]:
                try:
                    cap = WireCapture(args.wire, ns)
                except OSError as err:
                    raise WhyrstError(f"--wire {args.wire}{' in ' + ns if ns else ''}: {err.strerror or err}") \
                        from None
                captures.append(cap)
                resources.append(cap)
        prom = Prometheus(args.prometheus) if args.prometheus else None
        if prom is not None:
            resources.append(prom)
        view = View(args.json)
        resources.append(view)
        if not kernel.reasons:
            print("whyrst: this kernel's tcp:tcp_send_reset has no reason field (that needs Linux 6.10): causes "
                  "come from socket state, addresses and nstat counters", file=sys.stderr)
        sockets = SocketTable()
        sockets.refresh()
        where = f"; wire: {args.wire}" + (f" in {', '.join(args.netns)}" if args.netns else "") if captures else ""
        print(f"whyrst: watching (tracefs instance {kernel.instance.name}; kernel reasons: "
              f"{'yes' if kernel.reasons else 'no'}{where})", file=sys.stderr, flush=True)
        total = {"n": 0}
        wanted = args.direction

        def emit(r: LiveReset) -> None:
            if wanted != "both" and r.direction != wanted:
                return
            total["n"] += 1
            view.add(r)
            if prom is not None:
                prom.add(r)
            if args.count and total["n"] >= args.count:
                raise _Stop

        hold = args.hold if kernel.reasons else max(args.hold, 1.2)  # wait for the next counter reading
        corr = Correlator(emit, hold=hold, wire_hold=hold + 0.5, sockets=sockets,
                          wire=bool(captures), reasons=kernel.reasons, accept=accept)
        counters = CounterWatch()
        namespaces = sockets.namespaces()
        counters.deltas(namespaces)
        nstat_total: dict[str, int] = {}

        def moved(deltas: dict[str, int]) -> dict[str, int]:
            for k, v in deltas.items():
                nstat_total[k] = nstat_total.get(k, 0) + v
            return deltas
        started = time.monotonic()
        deadline = started + args.duration if args.duration > 0 else None
        next_slow = started + 1.0
        poller = select.poll()
        poller.register(kernel.fileno(), select.POLLIN)
        poller.register(rfd, select.POLLIN)
        for cap in captures:
            poller.register(cap.fileno(), select.POLLIN)
        try:
            while not stop["why"]:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                timeout = 0.1 if deadline is None else max(0.0, min(0.1, deadline - now))
                poller.poll(timeout * 1000)
                for ev in kernel.read():
                    kernel.feed(corr, ev)
                for cap in captures:
                    for pkt in cap.read():
                        corr.add_wire(pkt)
                now = time.monotonic()
                if now >= next_slow:
                    # Once a second: who owns which socket, and the counters the kernel keeps.
                    next_slow = now + (1.0 if kernel.reasons else 0.5)
                    sockets.refresh(now)
                    namespaces = sockets.namespaces()
                    corr.add_counters(moved(counters.deltas(namespaces)))
                    kernel.update_lost()
                    if prom is not None:
                        prom.set_lost(kernel.lost)
                    view.refresh(_status(kernel, captures, corr, now - started))
                corr.flush(now)
            # Drain what the kernel already holds (bounded: a flood must not keep watch from
            # exiting; what is left unread counts as lost), then explain everything still waiting.
            drain_end = time.monotonic() + 3.0
            while time.monotonic() < drain_end:
                batch = kernel.read()
                if not batch:
                    break
                for ev in batch:
                    kernel.feed(corr, ev)
            for cap in captures:
                for pkt in cap.read():
                    corr.add_wire(pkt)
            corr.add_counters(moved(counters.deltas(namespaces)))
            corr.flush(everything=True)
        except _Stop:
            stop["why"] = "count"
        # Events still in the buffer at the end were never read: lost, unless --count said stop.
        kernel.update_lost(closing=stop["why"] != "count")
        if prom is not None:
            prom.set_lost(kernel.lost)
        view.refresh(_status(kernel, captures, corr, time.monotonic() - started))
        view.close()
        summary = {"resets": total["n"], "events": kernel.events, "lost": kernel.lost,
                   "seconds": round(time.monotonic() - started, 3), "stopped_by": stop["why"] or "end"}
        if captures:
            summary["wire_drops"] = sum(c.drops for c in captures)
        print("whyrst: watch " + " ".join(f"{k}={v}" for k, v in summary.items()), file=sys.stderr)
        moved_text = " ".join(f"{k}=+{v}" for k, v in nstat_total.items() if v)
        if moved_text:
            # The kernel's own counts over the same time (all namespaces, all addresses): a cross-check.
            print(f"whyrst: nstat {moved_text}", file=sys.stderr)
        if kernel.lost:
            print(f"whyrst: warning: {kernel.lost} trace events were lost (buffer overruns); raise --buffer-kb",
                  file=sys.stderr)
        return 0
    finally:
        cleanup()
        for s, h in old.items():
            signal.signal(s, h)
        os.close(rfd)
        os.close(wfd)


def _status(kernel: Any, captures: list[Any], corr: Correlator, elapsed: float) -> str:
    parts = [f"{elapsed:.0f} s", f"{kernel.events} kernel events", f"{corr.emitted} resets", f"lost {kernel.lost}"]
    if captures:
        parts.append(f"wire drops {sum(c.drops for c in captures)}")
    if not kernel.reasons:
        parts.append("no kernel reasons (Linux < 6.10)")
    return " | ".join(parts)

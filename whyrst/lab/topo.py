"""The lab's network: three namespaces (client, router, server) that whyrst creates, names and removes,
and the processes it runs in them.

Nothing touches the root namespace: the veth pairs are created inside the namespaces (``ip -n NS link
add ... peer ... netns NS2``), routes, sysctls and firewall rules are set inside them, and all traffic stays
between them. Addresses come from 198.18.0.0/15 (RFC 2544 benchmarking space), one /24 on each side of the
router; the third octet comes from the pid so that two labs running at once do not see each other's
kernel reset events (those are global).

    client 198.18.N.2 ── eth0 ═══ lan0 ── router ── wan0 ═══ eth0 ── server 198.19.N.2
                               198.18.N.1      198.19.N.1
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whyrst.errors import WhyrstError
from whyrst.proc import pid_alive

PREFIX = "whyrst-lab-"
ROLES = ("client", "router", "server")


class LabError(WhyrstError):
    """The lab cannot run (not root, no netns, a tool missing) or a step failed."""


def repo_root() -> str:
    """The directory that holds the ``whyrst`` package, for PYTHONPATH of the agents."""
    import whyrst

    return str(Path(whyrst.__file__).resolve().parent.parent)


def preflight() -> None:
    """Fail in one line when the lab cannot run here."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, tracefs, packet capture): run it with sudo")
    for tool in ("ip", "iptables", "tcpdump", "conntrack"):
        if shutil.which(tool) is None:
            raise LabError(f"the lab needs {tool}, which is not installed")
    if not os.path.exists("/proc/self/ns/net"):
        raise LabError("network namespaces are not available: this kernel has no CONFIG_NET_NS")
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        raise LabError(f"network namespaces are not available (ip netns list: {r.stderr.strip()})")


DEBUG = bool(os.environ.get("WHYRST_LAB_DEBUG"))


def debug(text: str) -> None:
    if DEBUG:
        print(f"{time.strftime('%H:%M:%S')}.{int(time.time() * 1e6) % 1000000:06d} {text}", file=sys.stderr,
              flush=True)


def run(cmd: list[str], *, check: bool = True, timeout: float = 20, input: str | None = None
        ) -> subprocess.CompletedProcess[str]:
    debug("$ " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise LabError(f"{' '.join(cmd)}: {(r.stderr or r.stdout).strip() or f'exit status {r.returncode}'}")
    return r


class Proc:
    """A process in a namespace with a line protocol on stdout (READY/EVENT/RESULT) and commands on stdin."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None,
                 stdout_path: Path | None = None) -> None:
        self.name = name
        self.argv = argv
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.log: list[str] = []
        self.result: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        # Own session: a Ctrl-C at the terminal reaches the lab, which then stops its children in order.
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env, start_new_session=True, text=True, bufsize=1)
        self._readers = [threading.Thread(target=self._pump, args=(self.popen.stdout, True), daemon=True),
                         threading.Thread(target=self._pump, args=(self.popen.stderr, False), daemon=True)]
        for t in self._readers:
            t.start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self, stream: Any, protocol: bool) -> None:
        for line in stream:
            line = line.rstrip("\n")
            debug(f"{self.name}: {line}")
            self.log.append(line)
            if protocol:
                self.lines.put(line)
            elif line:
                self.lines.put("STDERR " + line)
        if protocol:
            self.lines.put(None)

    def expect(self, kind: str, timeout: float = 10.0, what: str | None = None) -> dict[str, Any]:
        """Wait for ``KIND {json}`` (and, for EVENT, ``what``); the JSON object."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LabError(f"{self.name}: no {kind}{' ' + what if what else ''} within {timeout:g} s "
                               f"(output: {' | '.join(self.log[-5:]) or 'none'})")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                self.lines.put(None)  # keep the end marker for the next caller
                raise LabError(f"{self.name} ended before {kind}{' ' + what if what else ''} "
                               f"(exit {self.popen.poll()}; output: {' | '.join(self.log[-5:]) or 'none'})")
            head, _, body = line.partition(" ")
            if head == "ERROR":
                raise LabError(f"{self.name}: {body}")
            if head not in ("READY", "EVENT", "RESULT"):
                continue
            try:
                info = json.loads(body) if body else {}
            except ValueError:
                info = {}
            if head == "EVENT":
                self.events.append(info)
            if head == "RESULT":
                self.result = info
            if head == kind and (what is None or info.get("what") == what):
                return info

    def send(self, line: str) -> None:
        debug(f"{self.name} <- {line}")
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def hang_up(self) -> None:
        """EOF on stdin: a role waiting for a command ends on its own, closing its sockets cleanly."""
        with contextlib.suppress(OSError, ValueError):
            if self.popen.stdin is not None:
                self.popen.stdin.close()

    def running(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 1.0) -> int | None:
        """Stop the process (its whole session): ``sig``, then SIGKILL after ``grace`` seconds."""
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(p.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(2)
        for stream in (p.stdin, p.stdout, p.stderr):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        return p.returncode


@dataclass(frozen=True)
class Host:
    role: str
    ns: str
    addr: str
    iface: str  # the interface captures are taken on


class Topology:
    """The three namespaces, created by :meth:`up` and removed by :meth:`down` (idempotent)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid or os.getpid()
        # Another lab running now has its own /24: its pid is in its namespaces' names.
        busy = {77, 78}  # the watch tests use 198.18.77/78
        for ns in list_lab_namespaces():
            m = _NS_PID.match(ns)
            if m and int(m.group(1)) != self.pid:
                busy.add(self._octet_of(int(m.group(1)), {77, 78}))
        self.octet = octet = self._octet_of(self.pid, busy)
        self.tag = f"{PREFIX}{self.pid}-"
        self.client = Host("client", self.tag + "client", f"198.18.{octet}.2", "eth0")
        self.router = Host("router", self.tag + "router", f"198.18.{octet}.1", "lan0")
        self.server = Host("server", self.tag + "server", f"198.19.{octet}.2", "eth0")
        self.router_wan = f"198.19.{octet}.1"
        self.procs: list[Proc] = []
        self.created: list[str] = []
        self.tempdirs: list[Path] = []
        self._env = dict(os.environ, PYTHONPATH=repo_root() + os.pathsep + os.environ.get("PYTHONPATH", ""),
                         PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")

    @staticmethod
    def _octet_of(pid: int, busy: set[int]) -> int:
        octet = 10 + pid % 240
        for _ in range(240):
            if octet not in busy:
                break
            octet = 10 + (octet - 9) % 240
        return octet

    # -- addresses -------------------------------------------------------------------------------------

    def host(self, role: str) -> Host:
        return {"client": self.client, "router": self.router, "server": self.server}[role]

    def addresses(self) -> set[str]:
        return {self.client.addr, self.router.addr, self.router_wan, self.server.addr}

    def is_lab_addr(self, addr: str) -> bool:
        return addr in self.addresses()

    # -- life cycle ------------------------------------------------------------------------------------

    def up(self) -> None:
        c, r, s = self.client.ns, self.router.ns, self.server.ns
        for ns in (c, r, s):
            self.created.append(ns)  # first: a signal during "ip netns add" must not leave it unrecorded
            run(["ip", "netns", "add", ns])
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            # IPv4 only: no IPv6 duplicate address detection or MLD reports in the captures
            for scope in ("all", "default"):
                self.sh_ns(ns, "sysctl", "-qw", f"net.ipv6.conf.{scope}.disable_ipv6=1")
        run(["ip", "-n", c, "link", "add", "eth0", "type", "veth", "peer", "name", "lan0", "netns", r])
        run(["ip", "-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", s])
        o = self.octet
        for ns, dev, cidr in ((c, "eth0", f"198.18.{o}.2/24"), (r, "lan0", f"198.18.{o}.1/24"),
                              (r, "wan0", f"198.19.{o}.1/24"), (s, "eth0", f"198.19.{o}.2/24")):
            run(["ip", "-n", ns, "addr", "add", cidr, "dev", dev])
            run(["ip", "-n", ns, "link", "set", dev, "up"])
        run(["ip", "-n", c, "route", "add", "default", "via", f"198.18.{o}.1"])
        run(["ip", "-n", s, "route", "add", "default", "via", f"198.19.{o}.1"])
        self.sysctl("router", "net.ipv4.ip_forward", "1")
        # Conntrack in the router from the start, so its per-namespace sysctls exist and every connection
        # is tracked from its SYN (NAT and the INVALID trap depend on it).
        self.sh("router", "iptables", "-t", "mangle", "-A", "PREROUTING", "-m", "conntrack", "--ctstate",
                "INVALID,NEW,ESTABLISHED,RELATED,UNTRACKED", "-j", "ACCEPT")
        for role, ifaces in (("client", "eth0"), ("router", "lan0,wan0"), ("server", "eth0")):
            p = self.agent(role, "offload-off", ifaces=ifaces)
            p.expect("RESULT", 10)
            p.stop()
        # The kernel's ARP entries would otherwise be learnt in the first scenario's capture; learning them
        # now keeps each capture to its own story (and neighbour discovery is not what the lab studies).
        self.sh("client", "ip", "neigh", "replace", f"198.18.{o}.1", "lladdr", self._mac("router", "lan0"),
                "dev", "eth0", "nud", "permanent")
        self.sh("router", "ip", "neigh", "replace", f"198.18.{o}.2", "lladdr", self._mac("client", "eth0"),
                "dev", "lan0", "nud", "permanent")
        self.sh("router", "ip", "neigh", "replace", f"198.19.{o}.2", "lladdr", self._mac("server", "eth0"),
                "dev", "wan0", "nud", "permanent")
        self.sh("server", "ip", "neigh", "replace", f"198.19.{o}.1", "lladdr", self._mac("router", "wan0"),
                "dev", "eth0", "nud", "permanent")

    def _mac(self, role: str, dev: str) -> str:
        out = self.sh("router" if role == "router" else role, "cat", f"/sys/class/net/{dev}/address").stdout
        return out.strip()

    def down(self) -> list[str]:
        """Stop every process and remove the namespaces; returns what could not be removed."""
        problems = []
        for p in reversed(self.procs):
            p.stop(signal.SIGTERM, 0.5)
        self.procs.clear()
        for ns in self.created:
            kill_ns_pids(ns)
            r = run(["ip", "netns", "del", ns], check=False)
            if r.returncode != 0 and ns in list_lab_namespaces():
                problems.append(f"namespace {ns}: {r.stderr.strip()}")
        self.created.clear()
        for d in self.tempdirs:
            shutil.rmtree(d, ignore_errors=True)
        self.tempdirs.clear()
        return problems

    def mkdtemp(self, purpose: str) -> Path:
        """A temporary directory named for this lab (so that --cleanup finds it after a SIGKILL), removed
        by :meth:`down` at the latest."""
        d = Path(tempfile.mkdtemp(prefix=f"{self.tag}{purpose}-"))
        self.tempdirs.append(d)
        return d

    # -- commands and processes ------------------------------------------------------------------------

    def sh_ns(self, ns: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", ns, *cmd], check=False)

    def sh(self, role: str, *cmd: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return run(["ip", "netns", "exec", self.host(role).ns, *cmd], check=check, timeout=timeout)

    def sysctl(self, role: str, key: str, value: str) -> str:
        """Set a sysctl inside the namespace; the old value."""
        path = "/proc/sys/" + key.replace(".", "/")
        old = self.sh(role, "cat", path).stdout.strip()
        self.sh(role, "sysctl", "-qw", f"{key}={value}")
        return old

    def spawn(self, role: str, name: str, argv: list[str]) -> Proc:
        p = Proc(f"{role}:{name}", ["ip", "netns", "exec", self.host(role).ns, *argv], env=self._env)
        self.procs.append(p)
        return p

    def agent(self, role: str, agent_role: str, **kw: Any) -> Proc:
        argv = [sys.executable, "-m", "whyrst.lab.agent", agent_role, *(f"{k}={v}" for k, v in kw.items())]
        return self.spawn(role, agent_role, argv)

    def forget(self, p: Proc) -> None:
        with contextlib.suppress(ValueError):
            self.procs.remove(p)


# -- leftovers ---------------------------------------------------------------------------------------------

_NS_PID = re.compile(rf"^{re.escape(PREFIX)}(\d+)-")


def list_lab_namespaces() -> list[str]:
    r = run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(PREFIX)]


def kill_ns_pids(ns: str) -> None:
    """Kill every process still inside a namespace (``ip netns pids``), SIGTERM then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [int(p) for p in run(["ip", "netns", "pids", ns], check=False).stdout.split() if p.isdigit()]
        pids = [p for p in pids if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        for _ in range(20):
            if not any(pid_alive(p) for p in pids):
                break
            time.sleep(0.05)


def owner_alive(ns: str) -> bool:
    m = _NS_PID.match(ns)
    return bool(m) and int(m.group(1)) != os.getpid() and pid_alive(int(m.group(1)))


def cleanup_leftovers(force: bool = False) -> list[str]:
    """Remove what killed lab runs left behind: ``whyrst-lab-*`` namespaces (their processes killed first)
    and ``whyrst-lab-*`` tracefs instances. A lab still running is left alone unless ``force``.
    Returns what was removed."""
    removed = []
    for ns in list_lab_namespaces():
        if not force and owner_alive(ns):
            continue
        kill_ns_pids(ns)
        if run(["ip", "netns", "del", ns], check=False).returncode == 0:
            removed.append(f"netns {ns}")
    base = Path(tempfile.gettempdir())
    for d in base.glob(f"{PREFIX}*"):
        m = _NS_PID.match(d.name)
        if m and d.is_dir() and (force or not pid_alive(int(m.group(1)))) and int(m.group(1)) != os.getpid():
            shutil.rmtree(d, ignore_errors=True)
            removed.append(f"directory {d}")
    try:
        from whyrst.live import tracefs

        gone = tracefs.remove_stale(tracefs.INSTANCE_PREFIX + "lab-", only_dead=not force)
        removed += [f"tracefs instance {n}" for n in gone]
    except WhyrstError:
        pass
    return removed

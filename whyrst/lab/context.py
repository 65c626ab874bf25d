"""What a scenario's traffic function works with: the hosts, agents, firewall rules and sysctls that are
undone when the scenario ends, and the checks and notes that become part of the result."""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from whyrst.lab.topo import LabError, Proc, Topology

BG_PORT = 7  # the background echo service; its connections end with FINs


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


class Rule:
    """A firewall rule added by a scenario; removable early with :meth:`remove`, else at the end."""

    def __init__(self, ctx: Ctx, role: str, table: str, chain: str, spec: tuple[str, ...]) -> None:
        self.ctx, self.role, self.table, self.chain, self.spec = ctx, role, table, chain, spec
        self.active = True

    def remove(self) -> None:
        if self.active:
            self.active = False
            self.ctx.topo.sh(self.role, "iptables", "-t", self.table, "-D", self.chain, *self.spec, check=False)


class Ctx:
    def __init__(self, topo: Topology, case: str, ports: tuple[int, ...], rng: random.Random) -> None:
        self.topo = topo
        self.case = case
        self.ports = ports
        self.rng = rng
        self.C = topo.client.addr
        self.R = topo.router.addr  # the router's client-facing address
        self.RW = topo.router_wan
        self.S = topo.server.addr
        self.checks: list[Check] = []
        self.notes: list[str] = []
        self.facts: dict[str, Any] = {}
        self._undo: list[Callable[[], None]] = []
        self._procs: list[Proc] = []
        self._bg: list[Proc] = []

    # -- processes ---------------------------------------------------------------------------------------

    def agent(self, role: str, name: str, ready: bool | float = False, **kw: Any) -> Proc:
        """Start an agent role in a namespace with ``key=value`` arguments; with ``ready`` (True, or the
        seconds to allow), wait for its READY line."""
        p = self.topo.agent(role, name, **kw)
        self._procs.append(p)
        if ready:
            p.expect("READY", 10.0 if ready is True else float(ready))
        return p

    def spawn(self, role: str, name: str, argv: list[str]) -> Proc:
        p = self.topo.spawn(role, name, argv)
        self._procs.append(p)
        return p

    def bg(self, count: int = 3, port: int = BG_PORT, http: int = 0, dst: str | None = None) -> None:
        """Background connections alongside the scenario's own, ending normally."""
        interval = round(0.2 + self.rng.random() * 0.15, 3)
        self._bg.append(self.agent("client", "bg", dst=dst or self.S, port=port, count=count, interval=interval,
                                   http=http))

    def wait_listening(self, role: str, port: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.topo.sh(role, "ss", "-Hltn", f"sport = :{port}", check=False).stdout
            if out.strip():
                return
            time.sleep(0.05)
        raise LabError(f"nothing listens on port {port} in the {role} namespace after {timeout:g} s")

    # -- host configuration, undone at the end ---------------------------------------------------------

    def sh(self, role: str, *cmd: str, check: bool = True) -> str:
        return self.topo.sh(role, *cmd, check=check).stdout

    def iptables(self, role: str, op: str, chain: str, *spec: str, table: str = "filter") -> Rule:
        """``iptables -t TABLE -A|-I CHAIN [pos] SPEC...`` inside a namespace, removed when the scenario ends."""
        pos: tuple[str, ...] = ()
        if op == "-I" and spec and spec[0].isdigit():
            pos, spec = (spec[0],), spec[1:]
        self.topo.sh(role, "iptables", "-t", table, op, chain, *pos, *spec)
        rule = Rule(self, role, table, chain, tuple(spec))
        self._undo.append(rule.remove)
        return rule

    def chain(self, role: str, name: str, table: str = "filter") -> str:
        """A user chain, flushed and deleted when the scenario ends (after the rules that jump to it)."""
        self.topo.sh(role, "iptables", "-t", table, "-N", name)

        def drop() -> None:
            self.topo.sh(role, "iptables", "-t", table, "-F", name, check=False)
            self.topo.sh(role, "iptables", "-t", table, "-X", name, check=False)

        self._undo.append(drop)
        return name

    def sysctl(self, role: str, key: str, value: str) -> None:
        old = self.topo.sysctl(role, key, value)
        self._undo.append(lambda: self.topo.sysctl(role, key, old))

    def tempdir(self, purpose: str) -> Path:
        d = self.topo.mkdtemp(purpose)
        self._undo.append(lambda: shutil.rmtree(d, ignore_errors=True))
        return d

    def defer(self, fn: Callable[[], None]) -> None:
        self._undo.append(fn)

    # -- results -----------------------------------------------------------------------------------------

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        return bool(ok)

    def note(self, text: str) -> None:
        self.notes.append(text)

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    # -- the end -----------------------------------------------------------------------------------------

    def finish(self) -> None:
        """Let background clients finish, stop every process, undo the configuration (in reverse)."""
        for p in self._bg:
            with contextlib.suppress(LabError):
                res = p.expect("RESULT", 8)
                if res.get("done", 0) < 1:
                    self.note("background connections failed")
        for p in self._procs:
            p.hang_up()
        deadline = time.monotonic() + 0.3
        while any(p.running() for p in self._procs) and time.monotonic() < deadline:
            time.sleep(0.02)
        for p in reversed(self._procs):
            p.stop(grace=1.0)
            self.topo.forget(p)
        self._procs.clear()
        while self._undo:
            fn = self._undo.pop()
            with contextlib.suppress(Exception):
                fn()

"""The kernel side of ``whyrst watch``: a tracefs instance with the reset tracepoints (and the TCP
transitions to CLOSE, for context), its events turned into :mod:`whyrst.live.explain` inputs."""

from __future__ import annotations

import os
from typing import Any

from whyrst.errors import WhyrstError
from whyrst.live import tracefs
from whyrst.live.explain import Correlator, RstEvent, StateEvent, norm_state

STATE_EVENT = "sock/inet_sock_set_state"


def preflight() -> None:
    """Fail early, in one line, naming what is missing."""
    if os.geteuid() != 0:
        raise WhyrstError("watch needs root: tracefs and the tcp tracepoints are for root only "
                          "(run it with sudo)")
    try:
        tracefs.ensure_mounted()
    except WhyrstError as err:
        raise WhyrstError(f"watch needs tracefs: {err}") from None


class KernelResets:
    def __init__(self, buffer_kb: int = 4096, state_events: bool = True, assume_no_reasons: bool = False) -> None:
        events: tuple[str, ...] = tracefs.RESET_EVENTS
        filters: dict[str, str] = {}
        if state_events:
            try:
                fmt = tracefs.read_format("sock", "inet_sock_set_state")
                close = {v: k for k, v in fmt.symbols.get("newstate", {}).items()}.get("TCP_CLOSE", 7)
                # Only TCP sockets going to CLOSE: which socket went away and from which state is all
                # the context needs, and it keeps the event rate near the reset rate.
                filters[STATE_EVENT] = f"protocol == 6 && newstate == {close}"
                events = (*events, STATE_EVENT)
            except WhyrstError:
                pass
        self.instance = tracefs.Instance("watch", events, filters=filters, buffer_kb=buffer_kb)
        self.reasons = self.instance.has_reason and not assume_no_reasons
        self.events = 0
        self._lost = 0

    def fileno(self) -> int:
        return self.instance.fileno()

    def read(self) -> list[Any]:
        return self.instance.read()

    def feed(self, corr: Correlator, ev: Any) -> None:
        inst = self.instance
        if isinstance(ev, tracefs.ResetEvent):
            self.events += 1
            ts = inst.to_wall(ev.ts)
            if ev.direction == "sent":
                corr.add_rst(RstEvent("sent", ts, ev.local[0], ev.local[1], ev.remote[0], ev.remote[1],
                                      norm_state(ev.state), ev.reason if self.reasons else None, ev.pid, ev.comm,
                                      ev.in_irq))
            else:
                corr.add_rst(RstEvent("received", ts, ev.remote[0], ev.remote[1], ev.local[0], ev.local[1],
                                      None, None, ev.pid, ev.comm, ev.in_irq, ev.cookie))
        elif isinstance(ev, tracefs.StateChange):
            self.events += 1
            corr.add_state(StateEvent(inst.to_wall(ev.ts), ev.local, ev.remote, norm_state(ev.old) or "",
                                      norm_state(ev.new) or "", ev.pid, ev.comm))

    def update_lost(self, closing: bool = False) -> None:
        """Lost events from the ring buffer's own counters; when closing, events still unread count too."""
        st = self.instance.buffer_stats()
        lost = st.get("overrun", 0) + st.get("dropped events", 0)
        if closing:
            lost += st.get("entries", 0)
        self._lost = max(self._lost, self.instance.lost, lost)

    @property
    def lost(self) -> int:
        return max(self._lost, self.instance.lost)

    def close(self) -> None:
        self.instance.close()

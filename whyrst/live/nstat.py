"""The TCP counters ``nstat`` shows, read from /proc/<pid>/net/netstat and snmp directly, summed over
every network namespace (the tracepoints are global, the counters are per namespace)."""

from __future__ import annotations

import os

# The counters that move with resets, by the name nstat gives them.
RESET_COUNTERS = (
    "TcpOutRsts", "TcpEstabResets", "TcpAttemptFails",
    "TcpExtTCPAbortOnData", "TcpExtTCPAbortOnClose", "TcpExtTCPAbortOnMemory", "TcpExtTCPAbortOnTimeout",
    "TcpExtTCPAbortOnLinger", "TcpExtTCPAbortFailed", "TcpExtListenOverflows", "TcpExtListenDrops",
)


def parse_pairs(text: str) -> dict[str, int]:
    """/proc/net/netstat and snmp: a header line of names, then a line of values, per protocol."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        names, values = head.split(), vals.split()
        if not names or names[0] != values[0]:
            continue
        proto = names[0].rstrip(":")
        for n, v in zip(names[1:], values[1:], strict=False):
            try:
                out[proto + n] = int(v)
            except ValueError:
                continue
    return out


def read_counters(pids: list[str] | None = None) -> dict[str, int]:
    """The reset counters summed over the namespaces of ``pids`` (or ip netns paths; default: this
    process's)."""
    from whyrst.live.sockets import read_net_files

    total: dict[str, int] = dict.fromkeys(RESET_COUNTERS, 0)
    for pid in pids or ["self"]:
        for text in read_net_files(pid, ("netstat", "snmp")):
            values = parse_pairs(text)
            for k in RESET_COUNTERS:
                total[k] += values.get(k, 0)
    return total


class CounterWatch:
    """Deltas of the reset counters between calls; namespaces that appear or vanish do not count as
    movement."""

    def __init__(self) -> None:
        self.last: dict[str, dict[str, int]] = {}

    def deltas(self, ns_pids: dict[int, str]) -> dict[str, int]:
        out: dict[str, int] = dict.fromkeys(RESET_COUNTERS, 0)
        now: dict[str, dict[str, int]] = {}
        for ns, pid in ns_pids.items():
            vals = read_counters([pid])
            now[str(ns)] = vals
            before = self.last.get(str(ns))
            if before is not None:
                for k in RESET_COUNTERS:
                    out[k] += max(vals[k] - before[k], 0)
        self.last = now
        return out


def self_netns_pids() -> dict[int, str]:
    try:
        return {os.stat("/proc/self/ns/net").st_ino: "self"}
    except OSError:
        return {}

"""Terminal output (rich): the summary by cause, one line per reset, the evidence with -v."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:
    from whyrst.analysis import Report

CAUSE_STYLE = {
    "closed-port": "yellow", "firewall-reject": "red", "injected": "bold red", "unknown": "dim",
    "abortive-close": "magenta", "unread-data-close": "magenta", "scan": "cyan",
}


def _clock(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%H:%M:%S.%f")


def print_report(report: Report, console: Console, verbose: bool = False, limit: int = 0) -> None:
    from whyrst.causes.catalog import BY_ID

    console.print(f"[bold]{escape(report.source)}[/]: {report.packets} packets, {report.connections} TCP "
                  f"connections, {len(report.resets)} resets")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    if not report.resets:
        console.print("No TCP resets in this capture.")
        return
    summary = Table(title="Resets by cause", title_justify="left")
    summary.add_column("cause")
    summary.add_column("count", justify="right")
    summary.add_column("what to do first")
    for cause, n in report.by_cause().items():
        fix = BY_ID[cause].fix[0] if BY_ID[cause].fix else ""
        summary.add_row(f"[{CAUSE_STYLE.get(cause, 'green')}]{cause}[/]", str(n), escape(fix))
    console.print(summary)

    table = Table(title="Resets", title_justify="left")
    for col in ("frame", "time (UTC)", "from", "to", "role", "sender", "cause", "conf", "or else"):
        table.add_column(col, justify="right" if col in ("frame", "conf") else "left")
    shown = report.resets if not limit else report.resets[:limit]
    for r in shown:
        alt = ", ".join(a.cause for a in r.alternatives[:2])
        table.add_row(str(r.frame), _clock(r.ts), escape(f"{r.src}:{r.sport}"), escape(f"{r.dst}:{r.dport}"),
                      r.role, r.sender, f"[{CAUSE_STYLE.get(r.cause, 'green')}]{r.cause}[/]",
                      f"{r.confidence:.2f}", alt)
    console.print(table)
    if limit and len(report.resets) > limit:
        console.print(f"... {len(report.resets) - limit} more (use --limit 0 or --json)")
    if verbose:
        for r in shown:
            console.rule(f"frame {r.frame}: {r.cause} ({r.confidence:.2f})")
            for line in r.evidence:
                console.print(f"  • {escape(line)}")
            if r.payload_text:
                console.print(f"  payload: {escape(r.payload_text)!r}")
            if r.alternatives:
                console.print("  alternatives: " + ", ".join(f"{a.cause} ({a.confidence:.2f})"
                                                            for a in r.alternatives))
            console.print("  [bold]confirm:[/]")
            for c in r.confirm:
                console.print(f"    $ {escape(c)}")
            console.print("  [bold]fix:[/]")
            for fx in r.fix:
                console.print(f"    - {escape(fx)}")


def print_conns(rows: list[dict[str, Any]], console: Console) -> None:
    table = Table(title=f"{len(rows)} TCP connections", title_justify="left")
    for col in ("uid", "start", "orig", "resp", "state", "history", "orig pkts", "resp pkts"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["uid"], f"{r['ts']:.6f}", escape(f"{r['id.orig_h']}:{r['id.orig_p']}"),
                      escape(f"{r['id.resp_h']}:{r['id.resp_p']}"), r["conn_state"], escape(r["history"]),
                      str(r["orig_pkts"]), str(r["resp_pkts"]))
    console.print(table)

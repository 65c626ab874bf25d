"""``whyrst lab``: build the namespaces, run every scenario under capture and the kernel's reset
tracepoint, label each RST with its ground truth, compare with whyrst's verdicts, and remove everything.

Cleanup is layered so that nothing outlives the run: try/finally around the whole run, SIGTERM and
SIGHUP turned into an exception that unwinds through it, an atexit hook as the last resort, and
:func:`~whyrst.lab.topo.cleanup_leftovers` (``whyrst lab --cleanup``, also run at the start of every lab)
for what a SIGKILL left behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from whyrst.lab.capture import VANTAGES, Captures, PcapFile, pcap_text, read_pcap
from whyrst.lab.context import BG_PORT, Ctx
from whyrst.lab.scenarios import BY_ID, SCENARIOS, WRITE_UP_CAUSES, Scenario
from whyrst.lab.topo import PREFIX, LabError, Proc, Topology, cleanup_leftovers, preflight
from whyrst.lab.truth import Label, label_case, reason_counts, unique_resets, unmatched_events
from whyrst.live import tracefs


class LabInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGHUP during a lab run: unwinds like Ctrl-C so that everything is removed."""


@dataclass
class CaseResult:
    id: str
    title: str
    write_up: bool
    reproduced: bool = False
    error: str | None = None
    duration: float = 0.0
    rsts: dict[str, int] = field(default_factory=dict)  # vantage -> RSTs in its pcap
    labelled: dict[str, int] = field(default_factory=dict)  # cause -> distinct RSTs labelled so
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)  # cause -> kernel reason -> distinct RSTs
    expected: dict[str, list[str | None]] = field(default_factory=dict)
    reasons_ok: bool = False
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unmatched_events: list[str] = field(default_factory=list)
    verdicts: dict[str, int] = field(default_factory=dict)  # verdict -> labelled RSTs (all vantages)
    matched: int = 0
    scored: int = 0
    pcaps: dict[str, str] = field(default_factory=dict)

    @property
    def match_rate(self) -> float | None:
        return self.matched / self.scored if self.scored else None


@dataclass
class LabResult:
    cases: list[CaseResult]
    out_dir: Path | None
    duration: float
    kernel: str
    seed: int
    vantages: tuple[str, ...]
    lost_events: int = 0
    verdicts_available: bool = False
    verdict_error: str | None = None
    labels: list[Label] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> list[str]:
        return [c.id for c in self.cases if c.reproduced]

    @property
    def match_rate(self) -> float | None:
        scored = sum(c.scored for c in self.cases)
        return sum(c.matched for c in self.cases) / scored if scored else None

    def to_json(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel, "seed": self.seed, "vantages": list(self.vantages),
            "duration": round(self.duration, 2), "lost_events": self.lost_events,
            "verdicts_available": self.verdicts_available, "verdict_error": self.verdict_error,
            "match_rate": self.match_rate, "leftovers": self.leftovers,
            "cases": [{**{k: v for k, v in c.__dict__.items()}, "match_rate": c.match_rate} for c in self.cases],
            "verdicts": _verdict_summary(self.labels) if self.verdicts_available else None,
        }


def _verdict_summary(labels: list[Label]) -> dict[str, Any]:
    from whyrst.lab.verdicts import summary

    return summary(labels)


def select_cases(cases: list[str] | None) -> list[Scenario]:
    if not cases:
        return list(SCENARIOS)
    unknown = [c for c in cases if c not in BY_ID]
    if unknown:
        raise LabError(f"unknown case(s): {', '.join(unknown)} (known: {', '.join(BY_ID)})")
    return [BY_ID[c] for c in cases]


def _vantages(vantage: str) -> tuple[str, ...]:
    if vantage == "all":
        return VANTAGES
    if vantage not in VANTAGES:
        raise LabError(f"unknown vantage {vantage!r} (client, router, server or all)")
    return (vantage,)


class _Signals:
    """SIGTERM/SIGHUP raise :class:`LabInterrupted` in the main thread while the lab runs."""

    def __init__(self) -> None:
        self.saved: dict[int, Any] = {}

    def _raise(self, signum: int, frame: FrameType | None) -> None:
        raise LabInterrupted(f"signal {signal.Signals(signum).name}")

    def install(self) -> None:
        with contextlib.suppress(ValueError):  # not the main thread: the caller handles signals
            for sig in (signal.SIGTERM, signal.SIGHUP):
                self.saved[sig] = signal.signal(sig, self._raise)

    def shield(self) -> None:
        """Ignore SIGINT/SIGTERM/SIGHUP while cleaning up, so that a second signal cannot cut it short."""
        with contextlib.suppress(ValueError):
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self.saved.setdefault(sig, signal.getsignal(sig))
                signal.signal(sig, signal.SIG_IGN)

    def restore(self) -> None:
        with contextlib.suppress(ValueError):
            for sig, handler in self.saved.items():
                signal.signal(sig, handler)
        self.saved.clear()


class Lab:
    def __init__(self, vantages: tuple[str, ...], out_dir: Path, seed: int, console: Any) -> None:
        self.vantages = vantages
        self.out_dir = out_dir
        self.seed = seed
        self.console = console
        self.topo = Topology()
        self.instance: tracefs.Instance | None = None
        self.collector: tracefs.Collector | None = None
        self.echo: Proc | None = None
        self.labels: list[Label] = []
        self._down = False

    def say(self, text: str) -> None:
        if self.console is not None:
            self.console.print(text, highlight=False)

    def up(self) -> None:
        self.topo.up()
        self.instance = tracefs.Instance("lab", tracefs.RESET_EVENTS, buffer_kb=2048)
        addrs = self.topo.addresses()

        def keep(ev: tracefs.AnyEvent) -> bool:
            # Events are global: only the lab's own addresses (another lab uses another /24)
            return isinstance(ev, tracefs.ResetEvent) and (ev.local[0] in addrs or ev.remote[0] in addrs)

        self.collector = tracefs.Collector(self.instance, keep).start()
        self.echo = self.topo.agent("server", "echo-server", addr=self.topo.server.addr, ports=str(BG_PORT))
        self.echo.expect("READY", 10)

    def down(self) -> list[str]:
        if self._down:
            return []
        self._down = True
        problems = []
        if self.collector is not None:
            self.collector.stop()
        if self.instance is not None:
            self.instance.close()
            if os.path.isdir(self.instance.path):
                problems.append(f"tracefs instance {self.instance.name}")
        problems += self.topo.down()
        return problems

    def events(self) -> list[tuple[float, tracefs.ResetEvent]]:
        assert self.collector is not None and self.instance is not None
        inst = self.instance
        return [(inst.to_wall(e.ts), e) for e in self.collector.drain(0.1) if isinstance(e, tracefs.ResetEvent)]

    def run_case(self, sc: Scenario, rng: random.Random) -> CaseResult:
        res = CaseResult(sc.id, sc.title, sc.write_up, expected={k: sorted(v, key=str) for k, v in sc.reasons.items()})
        ctx = Ctx(self.topo, sc.id, sc.ports, rng)
        caps = Captures(self.topo, self.vantages, self.out_dir, sc.id)
        t0 = time.monotonic()
        self.events()  # what came before belongs to no case
        try:
            caps.start()
            if sc.background:
                ctx.bg()
            sc.traffic(ctx)
        except LabError as err:
            res.error = str(err)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as err:  # one broken scenario must not stop the others
            res.error = f"{type(err).__name__}: {err}"
            if os.environ.get("WHYRST_DEBUG"):
                traceback.print_exc()
        finally:
            ctx.finish()
            paths = caps.stop()
        res.duration = time.monotonic() - t0
        events = self.events()
        pcaps: dict[str, PcapFile] = {}
        for v, path in paths.items():
            if path.exists():
                pcaps[v] = read_pcap(path, v)
                path.with_suffix(".txt").write_text(pcap_text(path))
                res.pcaps[v] = path.name
        if sc.post is not None and res.error is None:
            try:
                sc.post(ctx, pcaps)
            except Exception as err:
                res.error = f"post-check: {type(err).__name__}: {err}"
        labels = label_case(sc.id, pcaps, events, sc.labeler(), ctx, res.pcaps, {self.topo.server.addr})
        self.labels += labels
        res.rsts = {v: len(pc.rsts) for v, pc in pcaps.items()}
        for cause in sorted({lab.cause for lab in labels if lab.cause}):
            res.reasons[cause] = {str(k): n for k, n in reason_counts(labels, cause).most_common()}
        res.labelled = dict(Counter(g[0].cause or "(unlabelled)" for g in unique_resets(labels).values()))
        res.checks = [c.__dict__ for c in ctx.checks]
        stray = [g[0] for g in unique_resets(labels).values() if g[0].cause is None]
        if stray:
            ctx.note(f"{len(stray)} RST(s) outside the scenario's story (cause null in labels.jsonl): "
                     + ", ".join(f"{s.src}:{s.sport} > {s.dst}:{s.dport}" for s in stray[:4]))
        res.notes = ctx.notes
        res.unmatched_events = [f"{ev.reason} {ev.state or '-'} {ev.local[0]}:{ev.local[1]} > "
                                f"{ev.remote[0]}:{ev.remote[1]}" for ev in unmatched_events(pcaps, events)]
        # Reproduced: the cause's RST is on the wire, every RST of each label came with an expected kernel
        # reason (None: no event at all), and the scenario's own checks hold.
        ok = res.error is None and res.labelled.get(sc.id, 0) > 0 and all(c.ok for c in ctx.checks)
        reasons_ok = True
        for cause, seen in res.reasons.items():
            allowed = {str(r) for r in sc.reasons.get(cause, frozenset())}
            if not set(seen) <= allowed:
                reasons_ok = False
        res.reasons_ok = reasons_ok
        res.reproduced = ok and reasons_ok
        return res


def _analyze(labels: list[Label], out_dir: Path) -> tuple[bool, str | None]:
    """Fill in whyrst's verdict for every labelled RST; (available, error)."""
    try:
        import whyrst

        analyze = whyrst.analyze
    except (ImportError, AttributeError) as err:
        return False, f"whyrst.analyze is not available: {err}"
    by_pcap: dict[str, list[Label]] = {}
    for lab in labels:
        by_pcap.setdefault(lab.pcap, []).append(lab)
    errors = []
    done = 0
    for name, labs in by_pcap.items():
        try:
            rep = analyze(str(out_dir / name))
            frames = {int(r.frame): r for r in rep.resets}
        except Exception as err:  # the analyzer under test may fail; the lab reports it
            errors.append(f"{name}: {type(err).__name__}: {err}")
            continue
        done += 1
        for lab in labs:
            r = frames.get(lab.frame)
            if r is None:
                lab.verdict = "(not reported)"
                continue
            lab.verdict = str(r.cause)
            lab.alternatives = [{"cause": str(a.cause), "confidence": round(float(a.confidence), 3)}
                                for a in getattr(r, "alternatives", []) or []]
    if not done and errors:
        return False, errors[0]
    return True, "; ".join(errors[:3]) or None


def run_lab(cases: list[str] | None = None, out_dir: Path | None = None, seed: int = 0, vantage: str = "all",
            console: Any = None) -> LabResult:
    """Run the lab: the chosen cases (all by default) at the chosen vantage points.

    With ``out_dir`` the pcaps, their ``tcpdump -nn -r`` text, ``labels.jsonl`` and ``summary.json`` are
    kept there; without it they live in a temporary directory removed at the end."""
    preflight()
    scenarios = select_cases(cases)
    vantages = _vantages(vantage)
    stale = cleanup_leftovers()
    t0 = time.monotonic()
    keep = out_dir is not None
    # named for this run, so that --cleanup recognises it if the run is killed before removing it
    work = Path(out_dir) if keep else Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-out-"))
    work.mkdir(parents=True, exist_ok=True)
    signals = _Signals()
    lab = Lab(vantages, work, seed, console)
    results: list[CaseResult] = []
    leftovers: list[str] = []

    def teardown() -> None:
        signals.shield()
        try:
            leftovers.extend(lab.down())
        finally:
            signals.restore()

    atexit.register(teardown)
    signals.install()
    result = LabResult([], work if keep else None, 0.0, platform.release(), seed, vantages)
    try:
        _run_cases(lab, scenarios, stale, vantage, result, results, teardown)
        result.cases = results
        result.labels = lab.labels
        result.leftovers = leftovers
        result.verdicts_available, result.verdict_error = _analyze(lab.labels, work)
        for c in results:
            labs = [lab_ for lab_ in lab.labels if lab_.case == c.id and lab_.cause]
            if result.verdicts_available:
                c.verdicts = dict(Counter(lab_.verdict or "(none)" for lab_ in labs))
                c.scored = len(labs)
                c.matched = sum(1 for lab_ in labs if lab_.verdict == lab_.cause)
        result.duration = time.monotonic() - t0
        if keep:
            with open(work / "labels.jsonl", "w") as fh:
                for lab_ in lab.labels:
                    fh.write(json.dumps(lab_.to_json()) + "\n")
            (work / "summary.json").write_text(json.dumps(result.to_json(), indent=1, default=str))
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    return result


def _run_cases(lab: Lab, scenarios: list[Scenario], stale: list[str], vantage: str, result: LabResult,
               results: list[CaseResult], teardown: Any) -> None:
    rng = random.Random(lab.seed)
    try:
        if stale:
            lab.say(f"removed leftovers of an earlier run: {', '.join(stale)}")
        lab.say(f"lab: {len(scenarios)} case(s), vantage {vantage}, kernel {platform.release()}, "
                f"client {lab.topo.client.addr}, server {lab.topo.server.addr}")
        lab.up()
        for sc in scenarios:
            r = lab.run_case(sc, rng)
            results.append(r)
            mark = "ok " if r.reproduced else "NOT"
            lab.say(f"  {mark} {sc.id:<24} {r.duration:4.1f} s  RSTs {r.rsts}"
                    + (f"  error: {r.error}" if r.error else ""))
        assert lab.collector is not None
        result.lost_events = lab.collector.lost
    finally:
        teardown()
        atexit.unregister(teardown)


def render(result: LabResult, console: Any) -> None:
    """The per-case table and the overall line."""
    from rich.table import Table

    t = Table(title=f"whyrst lab on Linux {result.kernel} ({', '.join(result.vantages)})", show_lines=False)
    t.add_column("case")
    t.add_column("reproduced")
    t.add_column("RSTs " + "/".join(v[0] for v in result.vantages), justify="right")
    t.add_column("kernel reasons (distinct RSTs)")
    t.add_column("whyrst verdicts")
    t.add_column("match", justify="right")
    for c in result.cases:
        rep = "[green]yes[/]" if c.reproduced else "[red]no[/]"
        counts = "/".join(str(c.rsts.get(v, 0)) for v in result.vantages)
        reasons = "; ".join(f"{cause}: " + ", ".join(f"{'none' if r == 'None' else r}×{n}" for r, n in rs.items())
                            for cause, rs in c.reasons.items()) or "-"
        if result.verdicts_available:
            verdicts = ", ".join(f"{v}×{n}" for v, n in sorted(c.verdicts.items(), key=lambda x: -x[1])) or "-"
            match = f"{c.match_rate:.0%}" if c.match_rate is not None else "-"
        else:
            verdicts, match = "n/a", "n/a"
        t.add_row(c.id + ("" if c.write_up else " (extra)"), rep, counts, reasons, verdicts, match)
    console.print(t)
    if result.verdicts_available:
        from whyrst.lab.verdicts import tables

        for table in tables(result.labels, [c.id for c in result.cases], result.vantages):
            console.print(table)
    for c in result.cases:
        lines = [f"error: {c.error}"] if c.error else []
        lines += [f"check {'ok' if ch['ok'] else 'FAILED'}: {ch['name']}: {ch['detail']}" for ch in c.checks
                  if not ch["ok"]]
        lines += c.notes
        if not c.reasons_ok:
            lines.append(f"kernel reasons {c.reasons} differ from the expected {c.expected}")
        if c.unmatched_events:
            lines.append(f"kernel resets that reached no capture: {', '.join(c.unmatched_events[:4])}")
        for line in lines:
            console.print(f"  {c.id}: {line}", highlight=False)
    wu = [c for c in result.cases if c.write_up]
    rate = result.match_rate
    console.print(
        f"overall: {len(result.reproduced)}/{len(result.cases)} cases reproduced "
        f"({sum(c.reproduced for c in wu)}/{len(wu)} of the write-up's causes), "
        f"{len(unique_resets(result.labels))} distinct RSTs labelled, "
        + (f"whyrst matched {rate:.1%} of the labelled resets" if rate is not None
           else f"verdicts n/a ({result.verdict_error or 'analyzer unavailable'})")
        + f", lost trace events {result.lost_events}, {result.duration:.1f} s"
        + (f"; LEFT BEHIND: {', '.join(result.leftovers)}" if result.leftovers else ""), highlight=False)
    if result.out_dir is not None:
        console.print(f"pcaps, text and labels.jsonl in {result.out_dir}", highlight=False)


__all__ = ["WRITE_UP_CAUSES", "CaseResult", "LabInterrupted", "LabResult", "render", "run_lab"]

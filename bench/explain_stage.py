#!/usr/bin/env python3
"""The explanation stage on its own: host observations, explanations and JSON of a capture's resets.

    python bench/explain_stage.py CAPTURE [CAPTURE ...] [--repeat 5] [--profile]

The capture is analysed once (``analysis.analyze``) and the tracker's reset connections are kept; then,
``--repeat`` times, ``observe_contexts`` + ``explain_contexts`` (on a fresh :class:`HostView` each time:
observing resets fills it; and with the prepass tables' look-up caches emptied, as a run of the command
line finds them: a first look-up of a host costs tens of µs) and ``encode_report`` of the result are timed.
The minimum of the repetitions is reported, per reset in µs (the VM's speed varies by ±30 %: the minimum
is the least disturbed run). The process is tuned as the command line tunes it (``analysis.tune_process``:
the garbage collector's thresholds above all, which decide how often the tracker's objects are walked
while the stage makes its own).

Not timed: the connections' uids (made on first use, in a run of the command line while the stage reads
them; here by the first analysis).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from whyrst import analysis
from whyrst.causes.features import HostView
from whyrst.report.jsontext import encode_report


def capture_stage(path: str) -> tuple[list[Any], dict[str, Any], analysis.Report]:
    """Analyse ``path`` once; the reset connections and the host view's prepass facts it explained with."""
    kept: dict[str, Any] = {}
    real = analysis.observe_contexts

    def observe(reset_conns: Any, hosts: HostView) -> Any:
        kept["conns"] = list(reset_conns)
        kept["hosts"] = {"ttls": hosts.ttls, "ports_probed": hosts.ports_probed,
                         "capture_start_ns": hosts.capture_start_ns, "answered": hosts.answered}
        return real(kept["conns"], hosts)

    analysis.observe_contexts = observe  # type: ignore[assignment]
    try:
        report = analysis.analyze(path)
    finally:
        analysis.observe_contexts = real  # type: ignore[assignment]
    return kept["conns"], kept["hosts"], report


def forget_lookups(host_facts: dict[str, Any]) -> None:
    """Empty the caches of the prepass's host tables (address text -> what the table holds, made on look-up)."""
    for table in host_facts.values():
        for view in (table, getattr(table, "_sets", None)):
            cache = getattr(view, "_cache", None)
            if isinstance(cache, dict):
                cache.clear()


def run_stage(conns: list[Any], host_facts: dict[str, Any], report: analysis.Report) -> tuple[float, float, int]:
    """One repetition: seconds explaining, seconds encoding, resets."""
    forget_lookups(host_facts)
    t0 = time.perf_counter()
    hosts = HostView(**host_facts)
    resets, _ = analysis.explain_contexts(analysis.observe_contexts(conns, hosts), hosts)
    t1 = time.perf_counter()
    report.resets = resets
    encode_report(report, None)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, len(resets)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("captures", nargs="+")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--profile", action="store_true", help="run the stage once under cProfile instead")
    args = p.parse_args()
    analysis.tune_process()
    for path in args.captures:
        conns, facts, report = capture_stage(path)
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.runcall(run_stage, conns, facts, report)
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
            continue
        runs = [run_stage(conns, facts, report) for _ in range(args.repeat)]
        n = runs[0][2]
        explain_s = min(r[0] for r in runs)
        json_s = min(r[1] for r in runs)
        both_s = min(r[0] + r[1] for r in runs)
        print(f"{path}: {n} resets; explain {explain_s:.4f} s ({explain_s / n * 1e6:.1f} µs/reset), "
              f"JSON {json_s:.4f} s ({json_s / n * 1e6:.1f} µs/reset), both {both_s / n * 1e6:.1f} µs/reset "
              f"(min of {args.repeat})")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""The second pass's tracking alone, in one process: the Python Tracker against the compiled tracker.

    python bench/track.py CAPTURE [CAPTURE ...] [--repeat 7]

The first pass runs once per capture (as ``analyze`` runs it) and the second pass's batches (the packets
of the flows that carry a RST) are decoded once and kept; then each tracker is timed on them, the two
alternating, ``--repeat`` times: from making the tracker to ``close()``, which for the compiled tracker
includes making the Python objects of every connection with a RST (what the analysis reads). The
collector is run before each repetition (the previous one's objects are cycles: freeing them is not the
next one's cost) and is otherwise as the command line sets it (``--collector default`` leaves Python's).
It prints the fastest time of each (CPU time of the process: the machine is shared) and checks that
both give the same connections (every reset context's packets and both states).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def second_pass(path: str) -> list:  # type: ignore[type-arg]
    from whyrst.analysis import _rst_flow_batches
    from whyrst.capture import open_capture
    from whyrst.capture.index import FlowIndex
    from whyrst.errors import Warnings
    from whyrst.tcp.prepass import new_prepass

    prepass = new_prepass("auto")
    index = FlowIndex(path)
    try:
        with open_capture(path, warnings=Warnings(), engine="auto", checksums=False, payloads=False) as cap:
            prepass.read(cap, index, None)
        prepass.finish()
        wanted = prepass.rst_hashes()
        return list(_rst_flow_batches(path, index, wanted, prepass, "auto")) if len(wanted) else []
    finally:
        index.close()


def once(cls: type, batches: list, path: str) -> tuple[float, list]:  # type: ignore[type-arg]
    gc.collect()
    done: list = []  # type: ignore[type-arg]
    t = time.process_time()
    tracker = cls(done.append, source_tag=path.encode())
    for batch in batches:
        tracker.feed(batch)
    tracker.close()
    return time.process_time() - t, [c for c in done if c.resets]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("captures", nargs="+")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--collector", choices=("cli", "default"), default="cli")
    args = p.parse_args()
    from whyrst.tcp.fasttrack import CompiledTracker
    from whyrst.tcp.track import Tracker

    if args.collector == "cli":
        gc.set_threshold(100_000, 50, 50)  # (analysis.tune_process's)
    print(f"{'capture':<28} {'packets':>8} {'resets':>7} {'Python s':>9} {'compiled s':>10} {'speed-up':>8}")
    for path in args.captures:
        batches = second_pass(path)
        once(CompiledTracker, batches, path)  # (loads the kernels)
        best = {Tracker: float("inf"), CompiledTracker: float("inf")}
        got = {}
        for _ in range(args.repeat):
            for cls in (Tracker, CompiledTracker):
                t, conns = once(cls, batches, path)
                best[cls] = min(best[cls], t)
                got[cls] = [(c.uid, c.state, c.history, [(x.rst.frame, x.sender_state, [q.frame for q in x.before],
                                                          [q.frame for q in x.after]) for x in c.resets])
                            for c in conns]
        if got[Tracker] != got[CompiledTracker]:
            print(f"{path}: the trackers differ", file=sys.stderr)
            return 1
        packets = sum(b.n for b in batches)
        resets = sum(len(r) for *_, r in got[Tracker])
        py, ct = best[Tracker], best[CompiledTracker]
        print(f"{os.path.basename(path):<28} {packets:>8} {resets:>7} {py:>9.3f} {ct:>10.3f} {py / ct:>7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())

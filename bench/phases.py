#!/usr/bin/env python3
"""Where the time of one ``whyrst analyze FILE --json -j 1`` goes, phase by phase.

    python bench/phases.py CAPTURE [--repeat 5]

Each repetition runs in a fresh interpreter (imports and exit are real) the same code as the command
line, with timers around the functions that make up each phase:

* start-up: the interpreter to the first line of this script, as ``python -c pass`` takes it;
* imports: the modules ``analyze`` loads (numpy, the kernels built ahead of time, the catalog, ...);
* first pass: reading the file (``read``: the ``read()`` calls), walking its record headers (``walk``),
  decoding and counting every record (``scan``: the compiled kernel; ``count`` for decoded batches) and
  the Python around them (``first pass, rest``);
* second pass: the RST flows' packets read back through the index and decoded;
* tracking: those packets through the connection tracker (the compiled one, or the Python one);
* explaining: every RST's facts, scores and sentences;
* JSON: the report encoded and written;
* exit: from the end of the command's work to the end of the process, beyond a bare interpreter's exit
  (counted in start-up).

It prints, per phase, the fastest and the median time over the repetitions. The timers cost about a
microsecond per call (tens of thousands of calls: a few hundredths of a second in all).
"""

from __future__ import annotations

import time

T_START = time.perf_counter()  # (before this script's own imports: they are not whyrst's)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASES = ("start-up", "imports", "first pass: read", "first pass: walk", "first pass: scan", "first pass: count",
          "first pass: rest", "second pass", "tracking", "explaining", "JSON", "other", "exit")


def child(path: str) -> None:
    t_imports = T_START
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # (as the command line sets it, before numpy loads)
    import whyrst.analysis as analysis
    import whyrst.capture.fast as fast
    import whyrst.capture.index as index
    import whyrst.capture.records as records
    import whyrst.cli as cli
    import whyrst.jobs  # noqa: F401  (imported by the command line too)
    import whyrst.report.jsontext as jsontext
    import whyrst.tcp.fasttrack as fasttrack
    import whyrst.tcp.prepass as prepass

    track = sys.modules["whyrst.tcp.track"]  # (the package's name "track" is its function)

    acc: dict[str, float] = {}
    t_main = time.perf_counter()

    def timed(label: str, f):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return f(*args, **kwargs)
            finally:
                acc[label] = acc.get(label, 0.0) + time.perf_counter() - t
        return wrapper

    def timed_iter(label: str, f):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            it = iter(f(*args, **kwargs))
            while True:
                t = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    acc[label] = acc.get(label, 0.0) + time.perf_counter() - t
                    return
                acc[label] = acc.get(label, 0.0) + time.perf_counter() - t
                yield item
        return wrapper

    records.ByteStream._fill = timed("first pass: read", records.ByteStream._fill)  # type: ignore[method-assign]
    for name in ("pcap_walker", "pcapng_walker"):
        make = getattr(fast, name)
        setattr(fast, name, lambda make=make: (lambda w: w and timed("first pass: walk", w))(make()))
    kernels = prepass._kernel_module()
    kernels.scan = timed("first pass: scan", kernels.scan)
    kernels.count = timed("first pass: count", kernels.count)
    prepass._kernel_module = lambda: kernels  # type: ignore[assignment]
    for cls in (prepass.CompiledPrepass, prepass.NumpyPrepass):
        cls.read = timed("first pass", cls.read)  # type: ignore[method-assign]
    index.FlowIndex.batches = timed_iter("second pass", index.FlowIndex.batches)  # type: ignore[method-assign]
    for cls in (track.Tracker, fasttrack.CompiledTracker):
        cls.feed = timed("tracking", cls.feed)  # type: ignore[method-assign]
        cls.close = timed("tracking", cls.close)  # type: ignore[method-assign]
    analysis.observe_contexts = timed("explaining", analysis.observe_contexts)
    analysis.explain_contexts = timed("explaining", analysis.explain_contexts)
    jsontext.encode_report = timed("JSON", jsontext.encode_report)
    real_exit = os._exit

    def report(status: int) -> None:  # (the command ends the process itself, without the teardown)
        t_end = time.perf_counter()
        acc["imports"] = t_main - t_imports
        acc["main"] = t_end - t_main
        acc["since start"] = t_end - T_START
        acc["status"] = status
        os.write(results, json.dumps(acc).encode())
        real_exit(status)

    os._exit = report  # type: ignore[assignment]
    results = os.dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)  # (the report goes nowhere, as in the benchmark)
    sys.argv = ["whyrst", "analyze", path, "--json", "-j", "1"]
    report(cli.main(exit_quickly=True))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("capture")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.capture)
        return 0
    env = {**os.environ, "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    runs: list[dict[str, float]] = []
    pass_times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        pass_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", args.capture], capture_output=True, text=True,
                              env=env)
        wall = time.perf_counter() - t
        if done.returncode or not done.stdout.strip():
            print(done.stderr, file=sys.stderr)
            return 1
        acc = json.loads(done.stdout.strip().splitlines()[-1])
        startup = min(pass_times)
        first = acc.get("first pass", 0.0)
        acc["first pass: rest"] = first - sum(acc.get(f"first pass: {k}", 0.0) for k in ("read", "walk", "scan",
                                                                                          "count"))
        acc["start-up"] = startup
        acc["other"] = acc["main"] - first - sum(acc.get(k, 0.0) for k in ("second pass", "tracking", "explaining",
                                                                            "JSON"))
        acc["exit"] = wall - acc["since start"] - startup  # (the teardown beyond a bare interpreter's)
        acc["wall"] = wall
        runs.append(acc)
    print(f"{args.capture}: {args.repeat} runs of `whyrst analyze --json -j 1` (seconds)")
    print(f"{'phase':<22} {'fastest':>8} {'median':>8}")
    for phase in (*PHASES, "wall"):
        values = [r.get(phase, 0.0) for r in runs]
        print(f"{phase:<22} {min(values):8.3f} {statistics.median(values):8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

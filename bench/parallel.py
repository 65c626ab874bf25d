#!/usr/bin/env python3
"""whyrst on one core and on several: a directory of captures, and one large capture in parts.

    python bench/parallel.py                          # 50 captures incl. one of 2M packets; -j 1 vs -j 2; 3 rounds
    python bench/parallel.py --repeat 5 --cache /var/tmp/whyrst-par --write bench/RESULTS.md

The captures come from the project's generator (``whyrst.synth``, the benchmark mix) and are written to
``--cache`` (kept and reused) or to a temporary folder (removed at the end): one of ``--packets``
packets (pcap) and ``--captures`` - 1 others of 10,000 to 120,000 packets (pcap, pcapng and gzip), all
of the generator's "short" mix; and the large capture alone in each mix of ``--large-mixes`` (the
"bulk" mix is the capture issue 9 describes: fewer, longer connections of larger packets).

Each case runs ``whyrst analyze ... --json`` as a separate process, ``-j 1`` and ``-j N`` interleaved
(the order alternates between rounds), ``--repeat`` times: the table gives the median wall time (and
the spread), the CPU time of the process and its children, the speed-up of the medians, and whether
every run printed exactly the same JSON (every reset: frame, uid, cause, evidence, ...). The machine
is shared: ``--quiet`` waits (up to ``--wait`` seconds) before each run until the 1-minute load average
is under that value, and the load at each run is recorded.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from run import kernels_state, warm  # (bench/run.py, beside this script)

REPO = Path(__file__).resolve().parent.parent
# the generator mix of the directory's captures: short exchanges (many connections and resets per packet)
MIX = "short"
SECTION_START = "<!-- bench/parallel.py: start -->"
SECTION_END = "<!-- bench/parallel.py: end -->"


@dataclass
class Case:
    name: str
    args: list[str]
    packets: int
    nbytes: int
    files: list[Path] = field(default_factory=list)  # (read before each run: see run.warm)
    walls: dict[int, list[float]] = field(default_factory=dict)
    cpus: dict[int, list[float]] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)
    outputs: set[str] = field(default_factory=set)
    resets: int = 0


def large(folder: Path, packets: int, mix: str) -> Path:
    """The large capture of a mix (made once in ``folder``)."""
    sys.path.insert(0, str(REPO))
    from whyrst.synth import write_bench

    big = folder / "big" / (f"bench-{packets}.pcap" if mix == MIX else f"bench-{packets}-{mix}.pcap")
    big.parent.mkdir(parents=True, exist_ok=True)
    if not big.exists():
        print(f"generating {big} ({packets:,} packets, {mix} mix) ...", file=sys.stderr, flush=True)
        write_bench(str(big) + ".part", packets, 2000, 1, False, mix=mix)
        os.replace(str(big) + ".part", big)
    return big


def generate(folder: Path, big_packets: int, captures: int) -> tuple[Path, list[Path]]:
    """The captures (made once per set of parameters in ``folder``)."""
    sys.path.insert(0, str(REPO))
    from whyrst.synth import write_bench

    folder.mkdir(parents=True, exist_ok=True)
    big = large(folder, big_packets, MIX)
    d = folder / f"dir-{captures}-{big_packets}"
    d.mkdir(exist_ok=True)
    target = d / big.name
    if not target.exists():
        os.link(big, target) if big.stat().st_dev == d.stat().st_dev else shutil.copy(big, target)
    rng = random.Random(7)
    files = [target]
    for i in range(captures - 1):
        packets = rng.randrange(10_000, 120_001)
        # (drawn whether or not the file is there: the next captures' names must not depend on it)
        flows, share = rng.randrange(50, 2000), rng.choice((0.02, 0.04, 0.1))
        kind = ("pcap", "pcapng", "pcap.gz")[i % 3]
        path = d / f"cap-{i:03d}-{packets}.{kind}"
        files.append(path)
        if path.exists():
            continue
        print(f"generating {path.name} ...", file=sys.stderr, flush=True)
        tmp = str(path) + ".part"
        write_bench(tmp, packets, flows, 100 + i, kind == "pcapng", reset_share=share, mix=MIX)
        if kind == "pcap.gz":
            with open(tmp, "rb") as fh:
                data = gzip.compress(fh.read(), 6)
            with open(tmp, "wb") as fh:
                fh.write(data)
        os.replace(tmp, path)
    return target, files


def wait_quiet(limit: float, max_wait: float) -> float:
    """The 1-minute load average, after waiting (up to ``max_wait`` s) for it to fall under ``limit``."""
    start = time.monotonic()
    while True:
        load = os.getloadavg()[0]
        if limit <= 0 or load < limit or time.monotonic() - start > max_wait:
            return load
        time.sleep(5)


def run(case: Case, jobs: int, env: dict[str, str]) -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "whyrst", "analyze", *case.args, "-j", str(jobs), "--json", "--compact"],
                       capture_output=True, cwd=REPO, env=env, timeout=3600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 1):
        raise SystemExit(f"{case.name} -j {jobs}: exit status {p.returncode}: {p.stderr.decode()[-2000:]}")
    case.walls.setdefault(jobs, []).append(wall)
    case.cpus.setdefault(jobs, []).append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    case.outputs.add(hashlib.sha256(p.stdout).hexdigest())
    if not case.resets:
        case.resets = p.stdout.count(b'"frame":')


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=2_000_000, help="packets of the large capture")
    ap.add_argument("--captures", type=int, default=50, help="captures in the directory (the large one included)")
    ap.add_argument("--jobs", type=int, default=2, help="processes compared with one")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache", type=Path, help="keep the generated captures here (default: a temporary folder)")
    ap.add_argument("--quiet", type=float, default=0.0, help="wait for the 1-minute load average to be under this")
    ap.add_argument("--wait", type=float, default=300.0, help="longest wait for --quiet, in seconds")
    ap.add_argument("--write", type=Path, help="replace (or add) this script's section of a results file")
    ap.add_argument("--large-mixes", default="short,bulk",
                    help="comma-separated generator mixes of the large capture analysed alone (short, bulk)")
    args = ap.parse_args(argv)
    if args.captures < 1 or args.jobs < 2:
        ap.error("--captures must be at least 1 and --jobs at least 2")

    tmp = None
    folder = args.cache
    if folder is None:
        tmp = tempfile.mkdtemp(prefix="whyrst-parallel-")
        folder = Path(tmp)
    try:
        big, files = generate(folder, args.packets, args.captures)
        directory = big.parent
        packets_dir = args.packets + sum(int(f.name.split("-")[2].split(".")[0]) for f in files[1:])
        cases = [
            Case(f"directory: {len(files)} captures", [str(directory)], packets_dir,
                 sum(f.stat().st_size for f in files), files),
        ]
        for mix in [m for m in args.large_mixes.split(",") if m]:
            path = big if mix == MIX else large(folder, args.packets, mix)
            cases.append(Case(f"one capture of {args.packets:,} packets ({mix} mix)", [str(path)], args.packets,
                              path.stat().st_size, [path]))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        kernels = kernels_state()
        for c in cases:  # once each, unmeasured: the page cache, numba's cache
            subprocess.run([sys.executable, "-m", "whyrst", "analyze", *c.args, "-j", str(args.jobs), "--json"],
                           capture_output=True, cwd=REPO, env=env, timeout=3600)
        for r in range(args.repeat):
            for c in cases:
                for jobs in ((1, args.jobs) if r % 2 == 0 else (args.jobs, 1)):
                    c.loads.append(wait_quiet(args.quiet, args.wait))
                    warm(*c.files)
                    run(c, jobs, env)
                    print(f"round {r + 1}: {c.name}, -j {jobs}: {c.walls[jobs][-1]:.2f} s "
                          f"(CPU {c.cpus[jobs][-1]:.2f} s, load {c.loads[-1]:.2f})", file=sys.stderr, flush=True)
        table = render(cases, args, kernels)
        print(table)
        if args.write:
            write_section(args.write, table, args)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(len(c.outputs) == 1 for c in cases) else 1


def render(cases: list[Case], args: argparse.Namespace, kernels: str) -> str:
    j = args.jobs
    lines = [f"| case | packets | MB | -j 1 wall (median, spread) | -j {j} wall | speed-up | -j 1 CPU | -j {j} CPU "
             "| resets | identical |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in cases:
        w1, wj = statistics.median(c.walls[1]), statistics.median(c.walls[j])
        spread = (f"{min(c.walls[1]):.2f}-{max(c.walls[1]):.2f}", f"{min(c.walls[j]):.2f}-{max(c.walls[j]):.2f}")
        lines.append(f"| {c.name} | {c.packets:,} | {c.nbytes / 1e6:,.0f} | {w1:.2f} s ({spread[0]}) | {wj:.2f} s "
                     f"({spread[1]}) | {w1 / wj:.2f}x | {statistics.median(c.cpus[1]):.2f} s | "
                     f"{statistics.median(c.cpus[j]):.2f} s | {c.resets:,} | "
                     f"{'yes' if len(c.outputs) == 1 else 'NO (' + str(len(c.outputs)) + ' different outputs)'} |")
    loads = [x for c in cases for x in c.loads]
    lines.append("")
    lines.append(f"{args.repeat} rounds, -j 1 and -j {j} interleaved; 1-minute load average at the runs: "
                 f"{min(loads):.2f}-{max(loads):.2f} (median {statistics.median(loads):.2f}); "
                 f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, Python "
                 f"{platform.python_version()}, whyrst's kernels: {kernels}, {time.strftime('%Y-%m-%d')}.")
    return "\n".join(lines)


def write_section(path: Path, table: str, args: argparse.Namespace) -> None:
    text = path.read_text() if path.exists() else ""
    body = "\n".join([
        SECTION_START,
        "## Many cores: one large capture in parts, and a directory of captures (bench/parallel.py)",
        "",
        f"`python bench/parallel.py --packets {args.packets} --captures {args.captures} --jobs {args.jobs} "
        f"--repeat {args.repeat} --large-mixes {args.large_mixes}`: `whyrst analyze --json` with `-j 1` and "
        f"`-j {args.jobs}`; \"identical\" means every run printed the same bytes (every reset's frame, uid, "
        "cause, confidence, evidence, ...).",
        "",
        table,
        SECTION_END,
    ])
    if SECTION_START in text and SECTION_END in text:
        head, rest = text.split(SECTION_START, 1)
        _, tail = rest.split(SECTION_END, 1)
        text = head + body + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""whyrst against tshark and tcpdump on the same captures: one command.

    python bench/run.py                          # 100k and 1M packets; pcap, pcapng, pcap.gz; 5 rounds
    python bench/run.py --packets 1000000 --formats pcap --repeat 3
    python bench/run.py --write bench/RESULTS.md  # also replace this script's section of RESULTS.md

Captures come from the project's generator (``python -m whyrst.synth bench``) and are kept in
``--cache`` (reused when the same parameters ask for them again). For each capture every tool runs on
the same file, interleaved (whyrst, tcpdump, tshark, whyrst, ...) ``--repeat`` times; the table gives
the median wall time (and the spread), the CPU time, packets/s and MB/s (of the file as stored), the
peak RSS (``ru_maxrss`` of the process; for a pipeline, its largest process), the ratios to whyrst,
and how many resets each tool reported.

What each tool does:

* whyrst: ``whyrst analyze FILE --json -j 1`` (one core; every RST explained, IPv4 and IPv6);
* tcpdump: ``tcpdump -nn -r FILE 'tcp[tcpflags] & tcp-rst != 0'``. That filter only sees IPv4 (BPF's
  ``tcp[]`` is IPv4 only), so tcpdump's count misses every IPv6 reset; the count column also gives what
  an IPv6-aware filter finds (``ip6[6] == 6 and ip6[53] & 4 != 0``: IPv6 without extension headers).
  tcpdump cannot read gzip: the gzip rows time ``zcat FILE | tcpdump -r -``;
* tshark: ``tshark -n -r FILE -Y 'tcp.flags.reset==1'`` (reads gzip itself).

Start-up is measured too: ``whyrst --version`` and ``whyrst analyze`` of a one-packet capture.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import re
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SECTION_START = "<!-- bench/run.py: start -->"
SECTION_END = "<!-- bench/run.py: end -->"
TCPDUMP_FILTER = "tcp[tcpflags] & tcp-rst != 0"
TCPDUMP_FILTER_V6 = "(tcp[tcpflags] & tcp-rst != 0) or (ip6 and ip6[6] == 6 and ip6[53] & 4 != 0)"
TSHARK_FILTER = "tcp.flags.reset==1"


# -- running one command -----------------------------------------------------------------------------

@dataclass
class Run:
    wall: float
    cpu: float
    rss_mb: float
    out: bytes
    code: int


GNU_TIME = "/usr/bin/time"


def run(argv: list[str] | str, *, shell: bool = False, env: dict[str, str] | None = None) -> Run:
    """Run to completion with stdout to a temporary file; wall time, CPU time and peak RSS of the child.

    The command runs under GNU time, whose ``%M`` is the peak RSS of the command alone: a child forked
    straight from this (large) Python process would report at least this process's RSS as its own
    ``ru_maxrss``. A pipeline runs under ``sh -c``: its peak is that of its largest process."""
    cmd = ["sh", "-c", argv] if shell else list(argv)  # type: ignore[list-item]
    have_time = os.access(GNU_TIME, os.X_OK)
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r") as rss:
        if have_time:
            cmd = [GNU_TIME, "-f", "%M", "-o", rss.name, *cmd]
        t0 = time.perf_counter()
        # a session of its own, so that an interrupted benchmark can end the whole command (pipelines too)
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        data = out.read()
        text = rss.read().strip().splitlines()
    peak_kib = int(text[-1]) if have_time and text and text[-1].isdigit() else usage.ru_maxrss
    return Run(wall, usage.ru_utime + usage.ru_stime, peak_kib / 1024, data, proc.returncode)


def warm(*paths: Path | str) -> None:
    """Read the files whole, untimed, so that the run after it finds them in the page cache.

    A file read a minute ago may not be there any more: this machine's host pages out memory it finds
    cold (DAMON's ``pageout`` action on physical memory, page cache included). A 880 MB capture read by
    the warm-up round was a fifth resident five minutes later, so a run that followed a pause read most of
    it from the disk while the next tool found it cached again."""
    buf = bytearray(1 << 20)
    for path in paths:
        with open(path, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def whyrst_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# -- captures --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Spec:
    packets: int
    fmt: str  # pcap, pcapng, pcap.gz, pcapng.gz
    concurrent: int
    ipv6_share: float
    reset_share: float
    seed: int
    mix: str = "bulk"

    @property
    def name(self) -> str:
        return (f"synth-{self.mix}-{self.packets}p-{self.concurrent}c-v6_{self.ipv6_share:g}-rst_{self.reset_share:g}"
                f"-s{self.seed}.{self.fmt}")


def capture(spec: Spec, cache: Path) -> Path:
    path = cache / spec.name
    if path.exists():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    base = spec.fmt.removesuffix(".gz")
    if spec.fmt.endswith(".gz"):
        plain = capture(Spec(spec.packets, base, spec.concurrent, spec.ipv6_share, spec.reset_share, spec.seed,
                             spec.mix), cache)
        tmp = path.with_suffix(".tmp")
        with open(plain, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        tmp.rename(path)
        return path
    tmp = path.with_name(path.name + ".tmp")
    print(f"  generating {path.name} ...", file=sys.stderr, flush=True)
    argv = [sys.executable, "-m", "whyrst.synth", "bench", str(tmp), "--packets", str(spec.packets),
            "--concurrent", str(spec.concurrent), "--seed", str(spec.seed), "--ipv6-share", str(spec.ipv6_share),
            "--reset-share", str(spec.reset_share), "--mix", spec.mix]
    if base == "pcapng":
        argv.append("--pcapng")
    subprocess.run(argv, check=True, env=whyrst_env(), cwd=REPO)
    tmp.rename(path)
    return path


def one_packet(cache: Path) -> Path:
    path = cache / "one-packet.pcap"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        frame = (bytes(12) + b"\x08\x00" + bytes.fromhex("4500002800004000400600000a0000010a000002")
                 + bytes.fromhex("c0000050000000010000000050040000" + "00000000"))
        path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
                         + struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    return path


# -- the tools ----------------------------------------------------------------------------------------

def tool_commands(path: Path, gz: bool) -> dict[str, tuple[list[str] | str, bool]]:
    cmds: dict[str, tuple[list[str] | str, bool]] = {
        "whyrst": ([sys.executable, "-m", "whyrst", "analyze", str(path), "--json", "-j", "1"], False),
    }
    if shutil.which("tcpdump"):
        if gz:
            cmds["tcpdump"] = (f"zcat {sh(path)} | tcpdump -nn -r - {sh(TCPDUMP_FILTER)}", True)
        else:
            cmds["tcpdump"] = (["tcpdump", "-nn", "-r", str(path), TCPDUMP_FILTER], False)
    if shutil.which("tshark"):
        cmds["tshark"] = (["tshark", "-n", "-r", str(path), "-Y", TSHARK_FILTER], False)
    return cmds


def sh(x: object) -> str:
    import shlex

    return shlex.quote(str(x))


def count_resets(tool: str, out: bytes) -> int | None:
    if tool == "whyrst":
        try:
            return len(json.loads(out)["resets"])
        except (ValueError, KeyError):
            return None
    return sum(1 for line in out.splitlines() if line.strip())


def tcpdump_v6_count(path: Path, gz: bool) -> int | None:
    if not shutil.which("tcpdump"):
        return None
    if gz:
        r = run(f"zcat {sh(path)} | tcpdump -nn -r - {sh(TCPDUMP_FILTER_V6)}", shell=True)
    else:
        r = run(["tcpdump", "-nn", "-r", str(path), TCPDUMP_FILTER_V6])
    return count_resets("tcpdump", r.out)


# -- measuring ------------------------------------------------------------------------------------------

@dataclass
class Result:
    spec: Spec
    path: Path
    runs: dict[str, list[Run]] = field(default_factory=dict)
    resets: dict[str, int | None] = field(default_factory=dict)
    tcpdump_v6: int | None = None
    whyrst_packets: int | None = None

    def median(self, tool: str, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs[tool])


def load() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def measure(spec: Spec, cache: Path, repeat: int, tools: list[str]) -> Result:
    path = capture(spec, cache)
    gz = spec.fmt.endswith(".gz")
    cmds = {k: v for k, v in tool_commands(path, gz).items() if k in tools}
    res = Result(spec, path, {k: [] for k in cmds})
    env = whyrst_env()
    # one untimed round warms the page cache (and whyrst's compiled-kernel cache)
    for tool, (argv, shell) in cmds.items():
        r = run(argv, shell=shell, env=env if tool == "whyrst" else None)
        res.resets[tool] = count_resets(tool, r.out)
        if tool == "whyrst" and r.code == 0:
            res.whyrst_packets = json.loads(r.out)["packets"]
    for i in range(repeat):
        order = list(cmds.items()) if i % 2 == 0 else list(cmds.items())[::-1]  # (neither always runs first)
        for tool, (argv, shell) in order:
            warm(path)
            r = run(argv, shell=shell, env=env if tool == "whyrst" else None)
            if r.code != 0:
                raise SystemExit(f"{tool} failed on {path} (exit {r.code})")
            res.runs[tool].append(r)
        print(f"  {spec.name}: round {i + 1}/{repeat} done (load {load()})", file=sys.stderr, flush=True)
    if "tcpdump" in cmds:
        res.tcpdump_v6 = tcpdump_v6_count(path, gz)
    return res


def startup(cache: Path, repeat: int) -> dict[str, list[Run]]:
    env = whyrst_env()
    one = one_packet(cache)
    cmds = {
        "whyrst --version": [sys.executable, "-m", "whyrst", "--version"],
        "whyrst analyze (1 packet) --json": [sys.executable, "-m", "whyrst", "analyze", str(one), "--json"],
        "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
    }
    out: dict[str, list[Run]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, argv in cmds.items():
            out[name].append(run(argv, env=env))
    return out


# -- the machine ------------------------------------------------------------------------------------------

def first_line(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (p.stdout or p.stderr).strip().splitlines()
    return text[0] if text else "?"


def proc_field(path: str, key: str) -> str:
    try:
        with open(path) as fh:
            for line in fh:
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def machine() -> dict[str, str]:
    cpu = proc_field("/proc/cpuinfo", "model name")
    mem = proc_field("/proc/meminfo", "MemTotal")
    versions = subprocess.run(
        [sys.executable, "-c", "import numpy, sys; v = [numpy.__version__]\n"
         "try:\n import numba; v.append(numba.__version__)\nexcept ImportError:\n v.append('not installed')\n"
         "print(*v)"], capture_output=True, text=True).stdout.split()
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": f"{os.cpu_count()} ({affinity} usable)",
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": versions[0] if versions else "?",
        "numba": versions[1] if len(versions) > 1 else "?",
        "tshark": first_line(["tshark", "--version"]),
        "tcpdump": first_line(["tcpdump", "--version"]),
        "whyrst commit": commit or "?",
        "whyrst kernels": kernels_state(),
    }


def kernels_state() -> str:
    """Which kernels whyrst runs with here (``whyrst._aot --state``), warned about on stderr when they are
    not the ahead-of-time build: its figures would be numba's start-up, not whyrst's."""
    state = subprocess.run([sys.executable, "-m", "whyrst._aot", "--state"], capture_output=True, text=True,
                           cwd=REPO, env=whyrst_env()).stdout.strip() or "?"
    if state != "ahead-of-time build":
        print(f"bench: warning: whyrst's kernels: {state}", file=sys.stderr)
    return state


# -- reporting ------------------------------------------------------------------------------------------

def fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def table(results: list[Result]) -> list[str]:
    lines = ["| capture | tool | wall s (median; min-max) | CPU s | packets/s | packets/CPU-s | MB/s | peak RSS MB | "
             "whyrst speed vs tool (wall; CPU) | resets reported |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res in results:
        size_mb = res.path.stat().st_size / 1e6
        packets = res.spec.packets
        w_wall = res.median("whyrst", "wall") if "whyrst" in res.runs else None
        w_cpu = res.median("whyrst", "cpu") if "whyrst" in res.runs else None
        for tool in res.runs:
            walls = [r.wall for r in res.runs[tool]]
            wall = statistics.median(walls)
            cpu = res.median(tool, "cpu")
            ratio = ("1" if tool == "whyrst" or w_wall is None or w_cpu is None
                     else f"{wall / w_wall:.2f}x; {cpu / w_cpu:.2f}x")
            resets = res.resets.get(tool)
            note = "" if resets is not None else "?"
            if tool == "tcpdump" and res.tcpdump_v6 is not None:
                note = f" (IPv4 only; {res.tcpdump_v6} with an IPv6-aware filter)"
            lines.append(
                f"| {res.spec.mix} {res.spec.fmt}, {packets:,} pkts, {size_mb:.0f} MB | {tool} | "
                f"{wall:.3f} ({min(walls):.3f}-"
                f"{max(walls):.3f}) | {cpu:.2f} | {fmt_rate(packets / wall)} | "
                f"{fmt_rate(packets / cpu) if cpu > 0 else 'n/a'} | "
                f"{size_mb / wall:.0f} | {res.median(tool, 'rss_mb'):.0f} | {ratio} | "
                f"{resets if resets is not None else ''}{note} |")
    return lines


def marginal(results: list[Result]) -> list[str]:
    """whyrst's rate between two sizes of the same mix and format: the cost per packet without start-up."""
    lines = []
    by_fmt: dict[str, list[Result]] = {}
    for r in results:
        by_fmt.setdefault(f"{r.spec.mix} {r.spec.fmt}", []).append(r)
    for fmt, rs in by_fmt.items():
        rs = sorted(rs, key=lambda r: r.spec.packets)
        if len(rs) < 2 or "whyrst" not in rs[0].runs:
            continue
        a, b = rs[0], rs[-1]
        dt = b.median("whyrst", "wall") - a.median("whyrst", "wall")
        dc = b.median("whyrst", "cpu") - a.median("whyrst", "cpu")
        dp = b.spec.packets - a.spec.packets
        drss = b.median("whyrst", "rss_mb") - a.median("whyrst", "rss_mb")
        line = (f"- {fmt}: {a.spec.packets:,} -> {b.spec.packets:,} packets: whyrst +{dt:.3f} s wall "
                f"({fmt_rate(dp / dt) if dt > 0 else 'n/a'} packets/s once started), +{dc:.2f} CPU-s "
                f"({fmt_rate(dp / dc) if dc > 0 else 'n/a'} packets/CPU-s), peak RSS {drss:+.0f} MB")
        if "tcpdump" in a.runs and "tcpdump" in b.runs:
            tdt = b.median("tcpdump", "wall") - a.median("tcpdump", "wall")
            tdc = b.median("tcpdump", "cpu") - a.median("tcpdump", "cpu")
            line += (f"; tcpdump +{tdt:.3f} s wall ({fmt_rate(dp / tdt) if tdt > 0 else 'n/a'} packets/s), "
                     f"+{tdc:.2f} CPU-s")
        lines.append(line)
    return lines


def report(results: list[Result], starts: dict[str, list[Run]], info: dict[str, str], args: argparse.Namespace,
           loads: tuple[str, str], elapsed: float) -> str:
    out = [SECTION_START, "## whyrst vs tcpdump vs tshark (bench/run.py)", "",
           f"`{' '.join(['python', 'bench/run.py', *sys.argv[1:]])}` — "
           f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
           f"{args.repeat} interleaved rounds per capture after one warm-up round (the tools' order reversed "
           "every other round), medians; "
           f"load average {loads[0]} before, {loads[1]} after; {elapsed:.0f} s in all.", "",
           "Machine: " + "; ".join(f"{k}: {v}" for k, v in info.items()), "",
           f"Captures: `python -m whyrst.synth bench --mix MIX` (bulk: the capture issue 9 describes, ~53 packets "
           "a connection and ~900 bytes a packet; short: ~14 packets a connection, ~290 bytes a packet, so three "
           f"to four times the connections and resets per packet) with {args.concurrent} concurrent connections, "
           f"{args.ipv6_share:.0%} IPv6, {args.reset_share:.0%} of connections ending in a RST, seed {args.seed}; "
           "MB/s is of the file as stored (compressed for .gz). Each run starts with the file in the page cache (read "
           "whole, untimed, just before).", ""]
    out += table(results)
    out += ["", "whyrst once started (the difference between two sizes of the same capture):", ""]
    out += marginal(results) or ["- (needs two sizes)"]
    out += ["", "Start-up (median of the rounds):", ""]
    for name, runs in starts.items():
        out.append(f"- {name}: {statistics.median(r.wall for r in runs):.3f} s wall, "
                   f"{statistics.median(r.rss_mb for r in runs):.0f} MB peak RSS")
    out += ["", SECTION_END]
    return "\n".join(out) + "\n"


def write_section(path: Path, section: str) -> None:
    """Replace this script's section of ``path`` (between its markers), keeping every other section."""
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    pattern = re.compile(re.escape(SECTION_START) + r".*?" + re.escape(SECTION_END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packets", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--formats", default="pcap,pcapng,pcap.gz", help="comma-separated: pcap, pcapng, pcap.gz, pcapng.gz")
    p.add_argument("--concurrent", type=int, default=2000)
    p.add_argument("--ipv6-share", type=float, default=0.15)
    p.add_argument("--reset-share", type=float, default=0.04)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--mix", default="bulk", help="comma-separated connection mixes of the generator: bulk (the "
                   "capture issue 9 describes: ~53 packets a connection, ~900 bytes a packet), short (~14, ~290)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--tools", default="whyrst,tcpdump,tshark")
    p.add_argument("--skip-tshark-above", type=int, default=0,
                   help="leave tshark out for captures with more packets than this (0: never)")
    p.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "whyrst-bench")
    p.add_argument("--write", type=Path, help="replace this script's section of this Markdown file")
    args = p.parse_args(argv)

    t0 = time.time()
    load_before = load()
    info = machine()
    tools = args.tools.split(",")
    results = []
    for mix in args.mix.split(","):
        for fmt in args.formats.split(","):
            for n in args.packets:
                spec = Spec(n, fmt, args.concurrent, args.ipv6_share, args.reset_share, args.seed, mix)
                use = [t for t in tools
                       if not (t == "tshark" and args.skip_tshark_above and n > args.skip_tshark_above)]
                results.append(measure(spec, args.cache, args.repeat, use))
    starts = startup(args.cache, max(args.repeat, 5))
    text = report(results, starts, info, args, (load_before, load()), time.time() - t0)
    print(text)
    if args.write:
        write_section(args.write, text)
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # end the running command on SIGTERM too
    sys.exit(main())

"""SYN flood at scale: peak RSS and time per million packets of ``whyrst analyze`` and ``whyrst conns``.

    python fuzz/synflood_bench.py                      # 5 million packets (about 450 MB in /tmp)
    python fuzz/synflood_bench.py --packets 1000000,5000000 --rate 1000000 --keep

Generates the flood with ``python -m whyrst.synth synflood`` (spoofed SYNs, half answered with a SYN-ACK,
2 % of those reset by a real host), then runs each command in a child process and reads the child's own
resource usage (``os.wait4``): the peak resident set size and the wall time. Prints one line per command
and size, and the warnings the command gave (the connection table's evictions)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

COMMANDS = (("analyze", ["analyze", "{file}", "--json"]), ("conns", ["conns", "{file}", "--json"]))


def measure(argv: list[str]) -> tuple[float, float, float, int, list[str]]:
    """(wall seconds, CPU seconds, peak RSS in MiB, exit status, warning lines) of one whyrst run, output
    discarded. CPU time (user + system) is what to compare on a shared machine: wall time includes waiting."""
    with tempfile.TemporaryFile() as err, open(os.devnull, "wb") as null:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "whyrst", *argv], stdout=null, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        lines = err.read().decode("utf-8", "replace").splitlines()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, proc.returncode, lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--packets", default="5000000", help="comma-separated flood sizes (default 5000000)")
    p.add_argument("--rate", type=float, default=1_000_000.0, help="flood packets a second (capture time)")
    p.add_argument("--rst-share", type=float, default=0.02)
    p.add_argument("--dir", default=tempfile.gettempdir(), help="where the flood files go")
    p.add_argument("--keep", action="store_true", help="keep the generated files")
    p.add_argument("--only", choices=[name for name, _ in COMMANDS], help="run one command")
    p.add_argument("--max-connections", type=int, help="passed to whyrst conns (default: its own)")
    args = p.parse_args(argv)
    failed = 0
    for packets in (int(x) for x in args.packets.split(",")):
        path = os.path.join(args.dir, f"whyrst-synflood-{packets}-{int(args.rate)}-{args.rst_share}.pcap")
        if not os.path.exists(path):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "whyrst.synth", "synflood", path, "--packets", str(packets),
                            "--rate", str(args.rate), "--rst-share", str(args.rst_share)], check=True)
            print(f"generated {path}: {packets} packets, {os.path.getsize(path) / 2**20:.0f} MiB "
                  f"in {time.perf_counter() - t0:.1f} s", flush=True)
        try:
            for name, template in COMMANDS:
                if args.only and name != args.only:
                    continue
                argv = [a.format(file=path) for a in template]
                if name == "conns" and args.max_connections is not None:
                    argv += ["--max-connections", str(args.max_connections)]
                wall, cpu, rss, status, lines = measure(argv)
                failed += status != 0
                label = name
                if name == "conns" and args.max_connections is not None:
                    label = f"conns --max-connections {args.max_connections}"
                print(f"{label:8s} {packets:>10d} packets  exit {status}  wall {wall:7.1f} s  CPU {cpu:7.1f} s  "
                      f"{cpu / packets * 1e6:6.2f} CPU s per million packets  peak RSS {rss:7.0f} MiB", flush=True)
                for line in lines[:5]:
                    print(f"         {line}")
        finally:
            if not args.keep:
                os.unlink(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

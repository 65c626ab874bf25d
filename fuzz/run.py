"""Fuzz the capture readers and the whole analysis for a set time; save every crashing input.

    python fuzz/run.py --seconds 600                 # atheris (libFuzzer, coverage-guided) when installed
    python fuzz/run.py --seconds 600 --mode random   # seeded structure-aware mutations, no atheris needed

Each input goes through ``whyrst.analyze`` (one pass from a stream, or two passes from a file, with the
numba, numpy or python decoder), is serialized to JSON and rendered as the terminal report. The only
acceptable endings are a report and whyrst's own :class:`~whyrst.errors.WhyrstError`. Anything else --
another exception, a case running past ``--case-seconds``, a MemoryError under the ``--rss-gb``
address-space limit -- is saved as ``fuzz/crashes/<kind>-<signature>-<sha1>`` (one file per distinct
signature: exception type and the innermost whyrst frame). ``tests/test_robust.py`` replays every file
there, so a saved crash is a regression test from then on.

Seeds: the shared corpus (``$WHYRST_CORPUS/pcaps`` or ``../shared/corpus/pcaps``), small generated
captures and tcpdump text, and the saved crashes. The atheris mode mutates with libFuzzer's own
mutator and with :mod:`mutators` (structure-aware: header fields, record and block lengths, link types,
IP/TCP header lengths and options); its growing corpus lives in ``fuzz/work/`` (not committed).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import gzip
import hashlib
import importlib
import io
import json
import os
import random
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CRASHES = HERE / "crashes"
WORK = HERE / "work"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

import mutators  # noqa: E402 - beside this script

ENGINES = ("numba", "numpy", "python")


class Hang(BaseException):
    """A case ran past its time limit (a BaseException, so that nothing in whyrst can swallow it)."""


class Stats:
    def __init__(self) -> None:
        self.inputs = 0
        self.results = {"ok": 0, "warnings": 0, "error": 0}
        self.crashes: dict[str, str] = {}  # signature -> saved file
        self.start = time.monotonic()

    def line(self) -> str:
        rate = self.inputs / max(time.monotonic() - self.start, 1e-9)
        return (f"{self.inputs} inputs ({rate:.0f}/s): {self.results['ok']} ok, {self.results['warnings']} with "
                f"warnings, {self.results['error']} whyrst errors; {len(self.crashes)} crashes saved")


STATS = Stats()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expired(signum: int, frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def signature(exc: BaseException) -> str:
    """The exception type and the innermost frame inside whyrst: one saved file per distinct bug."""
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if "whyrst" in frame.filename and "/fuzz/" not in frame.filename and "/tests/" not in frame.filename:
            where = f"{frame.filename.rsplit('whyrst/', 1)[-1]}:{frame.lineno}"
    kind = "hang" if isinstance(exc, Hang) else type(exc).__name__
    return f"{kind}@{where}"


def save(data: bytes, exc: BaseException) -> None:
    sig = signature(exc)
    if sig in STATS.crashes:
        return
    CRASHES.mkdir(exist_ok=True)
    tag = hashlib.sha1(sig.encode()).hexdigest()[:8]
    kind = "hang" if isinstance(exc, Hang) else "crash"
    sha = hashlib.sha1(data).hexdigest()[:12]
    path = CRASHES / f"{kind}-{tag}-{sha}"
    if not any(CRASHES.glob(f"{kind}-{tag}-*")) and not any(CRASHES.glob(f"*-{sha}")):
        path.write_bytes(data)
    STATS.crashes[sig] = path.name
    detail = "".join(traceback.format_exception(exc)[-6:]) if not isinstance(exc, Hang) else str(exc)
    print(f"\n== {sig}: saved {path}\n{detail}", file=sys.stderr, flush=True)


def run_one(data: bytes, case_seconds: float) -> str:
    """Analyze ``data`` as a user would: 'ok', 'warnings' or 'error'; raises on anything else."""
    import whyrst
    from whyrst.errors import WhyrstError

    digest = hashlib.blake2b(data, digest_size=2).digest()
    engine = ENGINES[digest[0] % 3]
    via_file = digest[1] % 4 == 0
    path = None
    try:
        with time_limit(case_seconds):
            try:
                if via_file:
                    fd, path = tempfile.mkstemp(prefix="whyrst-fuzz-", dir="/dev/shm" if os.path.isdir("/dev/shm")
                                                else None)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    report = whyrst.analyze(path, engine=engine, keep_ladders=True)
                else:
                    report = whyrst.analyze(io.BytesIO(data), engine=engine)
            except WhyrstError:
                return "error"
            json.dumps(report.to_json())
            from rich.console import Console

            from whyrst.report.terminal import print_report

            print_report(report, Console(file=io.StringIO(), width=160), verbose=True, limit=200)
    finally:
        if path is not None:
            os.unlink(path)
    return "warnings" if report.warnings else "ok"


_CURRENT: list[object] = [b"", 0.0]  # the input being analysed and when it started, for the watchdog


def watchdog(case_seconds: float) -> None:
    """A case stuck where SIGALRM cannot reach (inside a compiled kernel): save it and end the process."""
    def watch() -> None:
        while True:
            time.sleep(1.0)
            data, started = _CURRENT
            if started and time.monotonic() - float(started) > 3 * case_seconds:  # type: ignore[arg-type]
                save(bytes(data), Hang(f"stuck for {3 * case_seconds:.0f} s"))  # type: ignore[arg-type]
                finish("watchdog")
                os._exit(3)

    threading.Thread(target=watch, name="fuzz-watchdog", daemon=True).start()


def target(data: bytes, case_seconds: float) -> None:
    STATS.inputs += 1
    _CURRENT[:] = [data, time.monotonic()]
    try:
        STATS.results[run_one(data, case_seconds)] += 1
    except (Exception, Hang) as e:  # every other ending is a finding
        save(data, e)
    finally:
        _CURRENT[:] = [b"", 0.0]


# -- seeds --------------------------------------------------------------------------------------------


def corpus_dir() -> Path | None:
    env = os.environ.get("WHYRST_CORPUS")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "corpus"]:
        if (cand / "pcaps").is_dir():
            return cand / "pcaps"
    return None


def generated_seeds() -> dict[str, bytes]:
    from whyrst import synth

    cap = synth.Capture()
    for i, scenario in enumerate(synth.SCENARIOS.values()):
        scenario(cap, i * 3.0, 40000 + 10 * i)
    buf = io.BytesIO()
    cap.write_pcap(buf)
    flood = b"".join(synth.synflood_records(300, rst_share=0.3))
    seeds = {"scenarios.pcap": buf.getvalue(), "scenarios.pcap.gz": gzip.compress(buf.getvalue(), mtime=0),
             "flood.pcap": struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1) + flood}
    seeds["paste.txt"] = (
        b"23:48:07.432563 IP 192.168.0.181.51796 > 192.168.0.203.5000: Flags [S], seq 3663045003, win 64240, "
        b"options [mss 1460,sackOK,TS val 3514322324 ecr 0,nop,wscale 7], length 0\n"
        b"23:48:07.432851 IP 192.168.0.203.5000 > 192.168.0.181.51796: Flags [R.], seq 0, ack 3663045004, "
        b"win 0, length 0\n")
    return seeds


def text_seeds(pcaps: list[Path]) -> dict[str, bytes]:
    """tcpdump's own text of a few corpus files, in several output styles."""
    if not shutil.which("tcpdump"):
        return {}
    out = {}
    for path in pcaps[:12]:
        for opts in (["-nn"], ["-nn", "-v"], ["-nn", "-e", "-tttt"], ["-nn", "-S", "-tt"]):
            try:
                p = subprocess.run(["tcpdump", *opts, "-c", "60", "-r", str(path)], capture_output=True, timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                continue
            if p.stdout:
                out[f"{path.name}{''.join(opts)}.txt"] = p.stdout
    return out


def seeds() -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    d = corpus_dir()
    pcaps = sorted(d.iterdir()) if d else []
    for p in pcaps:
        found[p.name] = p.read_bytes()
    found.update(generated_seeds())
    found.update(text_seeds([p for p in pcaps if p.stat().st_size < 50_000]))
    if CRASHES.is_dir():
        for p in CRASHES.iterdir():
            if p.is_file() and p.suffix != ".md":
                found[f"crash-{p.name}"] = p.read_bytes()
    return found


# -- the two modes ------------------------------------------------------------------------------------


def run_random(seconds: float, case_seconds: float, seed: int) -> None:
    """Seeded structure-aware mutations of the seeds until the time is up (no atheris needed)."""
    rng = random.Random(seed)
    pool = list(seeds().values())
    for data in pool:  # the seeds themselves first
        target(data, case_seconds)
    deadline = time.monotonic() + seconds
    last = time.monotonic()
    while time.monotonic() < deadline:
        data = pool[rng.randrange(len(pool))]
        other = pool[rng.randrange(len(pool))][:4096]
        target(mutators.mutate(data, rng, other=other), case_seconds)
        if time.monotonic() - last > 10:
            last = time.monotonic()
            print(STATS.line(), flush=True)


def run_atheris(seconds: float, case_seconds: float, seed: int, max_len: int) -> None:
    import atheris

    work = WORK / "corpus"
    work.mkdir(parents=True, exist_ok=True)
    for name, data in seeds().items():
        if len(data) <= max_len:
            (work / name.replace("/", "_")).write_bytes(data)
    CRASHES.mkdir(exist_ok=True)
    with atheris.instrument_imports(exclude=["whyrst.capture._kernels", "whyrst.tcp._prepass_kernels",
                                              "whyrst.capture.fast"]):
        for name in ("whyrst.analysis", "whyrst.capture.open", "whyrst.capture.text", "whyrst.report.terminal"):
            importlib.import_module(name)  # imported here to be instrumented for coverage

    deadline = time.monotonic() + seconds

    def one_input(data: bytes) -> None:
        target(data, case_seconds)
        if time.monotonic() > deadline:  # libFuzzer's own exit would skip the summary
            finish("atheris")
            os._exit(1 if STATS.crashes else 0)

    def custom_mutator(data: bytes, size: int, mseed: int) -> bytes:
        rng = random.Random(mseed)
        out = mutators.mutate(data, rng) if rng.random() < 0.6 else atheris.Mutate(data, size)
        return out[:size]

    argv = [sys.argv[0], str(work), f"-max_total_time={int(seconds) + 60}", f"-timeout={int(case_seconds * 3)}",
            f"-max_len={max_len}", f"-seed={seed}", f"-report_slow_units={int(case_seconds * 3)}",
            f"-artifact_prefix={CRASHES}/libfuzzer-", "-print_final_stats=1"]
    atheris.Setup(argv, one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


_FINISHED: list[bool] = []


def finish(mode: str) -> None:
    """The summary: inputs tried, how they ended, the crashes saved."""
    if _FINISHED:
        return
    _FINISHED.append(True)
    print(f"fuzz ({mode}): {STATS.line()}", flush=True)
    for sig, name in STATS.crashes.items():
        print(f"  {sig}: fuzz/crashes/{name}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="how long to fuzz")
    p.add_argument("--mode", choices=("auto", "atheris", "random"), default="auto",
                   help="atheris (coverage-guided) when it is installed, else random")
    p.add_argument("--case-seconds", type=float, default=20.0, help="a case running longer is a hang")
    p.add_argument("--rss-gb", type=float, default=4.0, help="address-space limit (a larger allocation is a crash)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-len", type=int, default=400_000, help="atheris: largest input")
    args = p.parse_args(argv)
    limit = int(args.rss_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    mode = args.mode
    if mode == "auto":
        try:
            import atheris  # noqa: F401
        except ImportError:
            mode = "random"
        else:
            mode = "atheris"
    atexit.register(finish, mode)
    watchdog(args.case_seconds)
    run: Callable[[], None]
    if mode == "atheris":
        def run() -> None:
            run_atheris(args.seconds, args.case_seconds, args.seed, args.max_len)
    else:
        def run() -> None:
            run_random(args.seconds, args.case_seconds, args.seed)
    run()
    return 1 if STATS.crashes else 0


if __name__ == "__main__":
    sys.exit(main())

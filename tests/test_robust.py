"""Untrusted captures: whatever the bytes, the whole analysis ends in a result (maybe with warnings) or in
whyrst's own error (exit status 2 on the command line) -- never another exception, a hang, a traceback,
or an allocation sized by a field of the file -- and memory stays bounded on a SYN flood.

Inputs: arbitrary bytes (bare and behind each format's magic), arbitrary tcpdump-like text, every
truncation of the small corpus files and of generated ones, structure-aware mutations of every corpus
capture (file headers, record and block lengths, link types, IP/TCP header lengths and options; see
``fuzz/mutators.py``), ``editcap -E`` corruption, a seeded mutation run like the shared ``mutate_eval``
check but larger, the fuzzer's saved crashes (``fuzz/crashes``) and ``tests/data/regress``.
"""

from __future__ import annotations

import contextlib
import gzip
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
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, corpus_dir
from gen import ACK, PSH, RST, SYN, Rec, epb, ether, idb, ip4, pcap_file, shb, tcp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import whyrst
from whyrst import synth
from whyrst.errors import WhyrstError

sys.path.insert(0, str(REPO / "fuzz"))
import mutators  # fuzz/ is not a package

CASE_SECONDS = 20.0  # a hang is a case that takes longer than this
# CI runs the same examples every time (a red CI names a reproducible case); elsewhere hypothesis explores,
# and fuzz/run.py explores for as long as it is given
DERANDOMIZE = bool(os.environ.get("CI"))
TMP = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
ENGINES = ("numba", "numpy", "python")


class Hang(BaseException):
    """Raised into a case that runs past CASE_SECONDS (a BaseException: nothing in whyrst may swallow it)."""


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


def outcome(data: bytes, *, via_file: bool = False, engine: str | None = None, render: bool = False) -> str:
    """'ok', 'warnings' or 'error' (whyrst's own, one line); any other exception or a hang fails the test.

    The report is also serialized as the CLI does (JSON, and the terminal report with ``render``)."""
    path = None
    try:
        with time_limit(CASE_SECONDS):
            try:
                if via_file:
                    fd, path = tempfile.mkstemp(prefix="whyrst-robust-", dir=TMP)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    report = whyrst.analyze(path, engine=engine, keep_ladders=render)
                else:
                    report = whyrst.analyze(io.BytesIO(data), engine=engine, keep_ladders=render)
            except WhyrstError as e:
                text = str(e)
                assert text and "\n" not in text, f"not one line: {text!r}"
                return "error"
            json.dumps(report.to_json())
            if render:
                from rich.console import Console

                from whyrst.report.terminal import print_report

                print_report(report, Console(file=io.StringIO(), width=160), verbose=True, limit=200)
    finally:
        if path is not None:
            os.unlink(path)
    assert report.packets >= 0 and report.connections >= 0
    return "warnings" if report.warnings else "ok"


def corpus_files() -> list[Path]:
    d = corpus_dir()
    return sorted((d / "pcaps").iterdir()) if d is not None and (d / "pcaps").is_dir() else []


def corpus_id(p: Path) -> str:
    return p.name


CORPUS = corpus_files()
needs_corpus = pytest.mark.skipif(not CORPUS, reason="shared corpus not found (set WHYRST_CORPUS)")


def plain(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


# -- generated small captures -------------------------------------------------------------------------


def small_synth() -> bytes:
    """A small pcap: a reset after data, a refused SYN, a forged RST the server talks over."""
    cap = synth.Capture()
    synth.closed_port(cap, 0.0, 40000)
    synth.injected(cap, 1.0, 40100)
    buf = io.BytesIO()
    cap.write_pcap(buf)
    return buf.getvalue()


def small_pcapng() -> bytes:
    frames = [ether(ip4(tcp(flags=SYN, seq=1000))),
              ether(ip4(tcp(sport=80, dport=40000, flags=SYN | ACK, seq=5000, ack=1001), src="198.51.100.2",
                        dst="192.0.2.1")),
              ether(ip4(tcp(flags=ACK | PSH, seq=1001, ack=5001) + b"GET / HTTP/1.1\r\n\r\n")),
              ether(ip4(tcp(sport=80, dport=40000, flags=RST | ACK, seq=5001, ack=1019), src="198.51.100.2",
                        dst="192.0.2.1"))]
    return shb() + idb(1, tsresol=9) + b"".join(epb(f, ts=10**18 + i * 1000) for i, f in enumerate(frames))


def small_text() -> bytes:
    return (b"$ sudo tcpdump -nn -i eth0 port 5000\n"
            b"23:48:07.432563 IP 192.168.0.181.51796 > 192.168.0.203.5000: Flags [S], seq 3663045003, win 64240, "
            b"options [mss 1460,sackOK,TS val 3514322324 ecr 0,nop,wscale 7], length 0\n"
            b"23:48:07.432851 IP 192.168.0.203.5000 > 192.168.0.181.51796: Flags [R.], seq 0, ack 3663045004, "
            b"win 0, length 0\n"
            b"2023-05-03 10:00:00.000001 IP6 2001:db8::1.443 > 2001:db8::2.40000: Flags [R], seq 7, win 0, length 0\n")


GENERATED = {"synth.pcap": small_synth, "gen.pcapng": small_pcapng, "paste.txt": small_text,
             "synth.pcap.gz": lambda: gzip.compress(small_synth(), mtime=0)}


# -- arbitrary input ---------------------------------------------------------------------------------

PREFIXES = [b"", b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00", b"\xa1\xb2\x3c\x4d\x00\x02\x00\x04",
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFFFFFF, 1),
            struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101),
            b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00" + b"\xff" * 8 + b"\x1c\x00\x00\x00",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03"]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=DERANDOMIZE)
@given(st.sampled_from(PREFIXES), st.binary(max_size=3000), st.sampled_from(ENGINES), st.booleans())
def test_arbitrary_bytes(prefix: bytes, body: bytes, engine: str, via_file: bool) -> None:
    outcome(prefix + body, engine=engine, via_file=via_file)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=DERANDOMIZE)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_gzip_compressed(body: bytes) -> None:
    outcome(gzip.compress(body))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=DERANDOMIZE)
@given(st.sampled_from(PREFIXES), st.binary(max_size=3000), st.sampled_from(ENGINES), st.integers(1, 70))
def test_open_capture_on_arbitrary_bytes(prefix: bytes, body: bytes, engine: str, batch_size: int) -> None:
    """The reader alone, in small batches: whyrst's error or batches whose frames count up."""
    from whyrst.capture import open_capture
    from whyrst.errors import CaptureError, Warnings

    warnings = Warnings()
    with time_limit(CASE_SECONDS):
        try:
            with open_capture(prefix + body, engine=engine, batch_size=batch_size, warnings=warnings) as cap:
                last = 0
                for batch in cap:
                    assert batch.n <= batch_size
                    frames = batch.cols["frame"].tolist()
                    assert frames == sorted(frames) and (not frames or frames[0] > last)
                    last = frames[-1] if frames else last
                assert cap.packets >= last
        except CaptureError as e:
            assert "\n" not in str(e)


def _numbers() -> st.SearchStrategy[str]:
    return st.one_of(st.integers(0, 70000), st.integers(0, 2**32 + 5), st.integers(0, 10**30),
                     st.sampled_from([-1, 2**63, 2**64])).map(str)


@st.composite
def tcpdump_text(draw: st.DrawFn) -> bytes:
    """Lines shaped like ``tcpdump -nn`` output with any numbers (huge ones too), times, dates and options."""
    n = _numbers()
    lines = []
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            lines.append(draw(st.text(max_size=80)))
            continue
        clock = draw(st.sampled_from([
            f"{draw(st.integers(0, 99)):02d}:{draw(st.integers(0, 99)):02d}:{draw(st.integers(0, 99)):02d}"
            f".{draw(st.integers(0, 10**9))}",
            f"{draw(n)}.{draw(st.integers(0, 999999))}",
            f"{draw(st.integers(0, 99999)):04d}-{draw(st.integers(0, 99)):02d}-{draw(st.integers(0, 99)):02d} "
            f"{draw(st.integers(0, 30)):02d}:00:00.000001", ""]))
        v6 = draw(st.booleans())
        addr = st.ip_addresses(v=6 if v6 else 4).map(str) | st.sampled_from(["999.1.1.1", "1.2.3", "::", "a:b"])
        flags = draw(st.sampled_from(["S", "S.", "R", "R.", "P.", "F.", ".", "SEWR", "none", "", "U"]))
        parts = [f"Flags [{flags}]"]
        if draw(st.booleans()):
            parts.append(f"seq {draw(n)}" + (f":{draw(n)}" if draw(st.booleans()) else ""))
        if draw(st.booleans()):
            parts.append(f"ack {draw(n)}")
        parts.append(f"win {draw(n)}")
        if draw(st.booleans()):
            opts = draw(st.lists(st.sampled_from(
                [f"mss {draw(n)}", "nop", "sackOK", f"TS val {draw(n)} ecr {draw(n)}", f"wscale {draw(n)}",
                 f"sack 1 {{{draw(n)}:{draw(n)}}}", "eol", "mptcp rst", "unknown-99 0x00", "["]), max_size=6))
            parts.append(f"options [{','.join(opts)}]")
        parts.append(f"length {draw(n)}")
        if draw(st.booleans()):
            lines.append(f"{clock} IP (tos 0x{draw(st.integers(0, 300)):x}, ttl {draw(n)}, id {draw(n)}, offset 0, "
                         f"flags [DF], proto TCP (6), length {draw(n)})")
            lines.append(f"    {draw(addr)}.{draw(n)} > {draw(addr)}.{draw(n)}: {', '.join(parts)}")
        else:
            lines.append(f"{clock} IP{'6' if v6 else ''} {draw(addr)}.{draw(n)} > {draw(addr)}.{draw(n)}: "
                         f"{', '.join(parts)}")
    return "\n".join(lines).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=DERANDOMIZE)
@given(tcpdump_text())
def test_arbitrary_tcpdump_text(text: bytes) -> None:
    outcome(text, render=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=DERANDOMIZE)
@given(st.randoms(use_true_random=False))
def test_mutated_tcpdump_text(rnd: random.Random) -> None:
    outcome(mutators.mutate_text(small_text() * 2, rnd), render=True)


# -- every truncation ----------------------------------------------------------------------------------

SMALL = [p for p in CORPUS if p.stat().st_size < 2048]


def _every_cut(data: bytes) -> dict[str, int]:
    seen: dict[str, int] = {}
    for cut in range(len(data) + 1):
        # rotate the decoders, and read every seventh through a file (the two-pass path)
        result = outcome(data[:cut], engine=ENGINES[cut % 3], via_file=cut % 7 == 0)
        seen[result] = seen.get(result, 0) + 1
    return seen


@needs_corpus
@pytest.mark.parametrize("path", SMALL, ids=corpus_id)
def test_every_truncation_of_small_corpus_files(path: Path) -> None:
    seen = _every_cut(plain(path))
    assert sum(seen.values()) == len(plain(path)) + 1


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_every_truncation_of_generated_files(name: str) -> None:
    data = GENERATED[name]()
    seen = _every_cut(data)
    assert seen.get("ok", 0) + seen.get("warnings", 0) > 0  # the whole file and long prefixes read


# -- structure-aware mutations of every corpus capture ---------------------------------------------------


@needs_corpus
@pytest.mark.parametrize("path", CORPUS, ids=corpus_id)
def test_mutations_of_corpus_capture(path: Path) -> None:
    data = path.read_bytes()
    other = plain(CORPUS[len(path.name) % len(CORPUS)])[:4096]
    big = len(data) > 40_000
    t0 = time.perf_counter()
    outcome(data, via_file=True)
    base = time.perf_counter() - t0
    # about a second of mutations per file (at least 4), all three decoders on the small ones
    examples = max(4, min(30, int(1.0 / max(base, 1e-3))))

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.randoms(use_true_random=False), st.sampled_from(ENGINES[:2] if big else ENGINES), st.booleans())
    def check(rnd: random.Random, engine: str, render: bool) -> None:
        outcome(mutators.mutate(data, rnd, other=other), engine=engine, via_file=big or render, render=render)

    check()


@needs_corpus
def test_mutators_find_the_fields_of_every_corpus_capture() -> None:
    names = set()
    for path in CORPUS:
        fs = mutators.fields(plain(path))
        assert fs, path.name
        names.update(f.name.split(".")[0] for f in fs)
    assert {"pcap", "record", "ng", "eth", "ip", "ip6", "tcp", "sll", "null"} <= names


@needs_corpus
@pytest.mark.skipif(not shutil.which("editcap"), reason="editcap not installed")
@pytest.mark.parametrize("path", CORPUS, ids=corpus_id)
def test_editcap_corrupted(path: Path, tmp_path: Path) -> None:
    seeds = (1, 2) if path.stat().st_size < 20_000 else (1,)
    for seed in seeds:
        out = tmp_path / f"e{seed}"
        p = subprocess.run(["editcap", "-E", "0.05", "--seed", str(seed), str(path), str(out)],
                           capture_output=True, timeout=60)
        if p.returncode != 0 or not out.exists():
            continue  # editcap cannot read the (already damaged) original either
        outcome(out.read_bytes(), via_file=True, render=seed == 1)


# -- a seeded mutation run like shared/checks/mutate_eval.py, larger --------------------------------------


def mutate_eval_style(data: bytearray, rng: random.Random) -> bytearray:
    kind = rng.choice(["flip", "trunc", "len", "zero", "len-anywhere"])
    if kind == "flip":
        for _ in range(rng.randint(1, 20)):
            if data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == "trunc":
        data = data[: rng.randrange(len(data) + 1)]
    elif kind in ("len", "len-anywhere"):
        off = (rng.choice([8, 12, 16, 20, 24, 28, 32, 36, 40]) if kind == "len" else
               rng.randrange(max(1, len(data) - 4)))
        off = off if len(data) > 44 else 0
        data[off:off + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x80", b"\x7f\xff\xff\xff",
                                        b"\x00\x00\x00\x00", b"\xfc\xff\xff\x7f", b"\x00\x00\x01\x00"])
    else:
        a = rng.randrange(len(data) + 1)
        data[a:a + rng.randint(1, 64)] = bytes(rng.randint(1, 64))
    return data


@needs_corpus
def test_seeded_mutations_larger_than_the_shared_check() -> None:
    rng = random.Random(20240607)
    files = [p for p in CORPUS if p.stat().st_size < 400_000]
    blobs = {p: plain(p) for p in files}
    seen: dict[str, int] = {}
    for i in range(400):
        path = rng.choice(files)
        data = bytes(mutate_eval_style(bytearray(blobs[path]), rng))
        try:
            result = outcome(data, via_file=True, engine=ENGINES[i % 3])
        except BaseException as e:
            raise AssertionError(f"case {i} ({path.name}): {type(e).__name__}: {e}") from e
        seen[result] = seen.get(result, 0) + 1
    assert seen.get("error", 0) and seen.get("ok", 0) + seen.get("warnings", 0)


# -- saved crashes ------------------------------------------------------------------------------------------

REGRESSIONS = sorted(p for d in (REPO / "fuzz" / "crashes", REPO / "tests" / "data" / "regress") if d.is_dir()
                     for p in d.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix != ".md")


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_saved_crash_inputs(path: Path) -> None:
    data = path.read_bytes()
    for engine in ENGINES:
        outcome(data, engine=engine, via_file=True, render=True)
        outcome(data, engine=engine)


# -- the command line -----------------------------------------------------------------------------------


def run_cli(*args: str, stdin: bytes | None = None, limit_as: int | None = None,
            timeout: float = 120) -> tuple[int, str, str, float, float]:
    """(exit status, stdout, stderr, CPU seconds, peak RSS in MiB) of ``python -m whyrst ARGS``."""
    def limits() -> None:
        if limit_as is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit_as, limit_as))

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "whyrst", *args], stdin=subprocess.PIPE, stdout=out,
                                stderr=err, cwd=REPO, preexec_fn=limits)
        if stdin is not None:
            proc.stdin.write(stdin)  # type: ignore[union-attr]
        proc.stdin.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise AssertionError(f"whyrst {' '.join(args)}: no result after {timeout} s")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = usage.ru_utime + usage.ru_stime  # CPU time: the machine may be shared
        out.seek(0)
        err.seek(0)
        return (proc.returncode, out.read().decode("utf-8", "replace"), err.read().decode("utf-8", "replace"),
                seconds, usage.ru_maxrss / 1024)


def assert_clean(status: int, stdout: str, stderr: str) -> None:
    assert status in (0, 2), (status, stderr[-2000:])
    assert "Traceback" not in stdout + stderr, stderr[-2000:]
    assert "internal error" not in stderr, stderr[-2000:]
    if status == 2:
        errors = [line for line in stderr.splitlines() if line.startswith("whyrst:") and "warning" not in line]
        assert len(errors) == 1, stderr


@needs_corpus
def test_cli_on_mutated_captures(tmp_path: Path) -> None:
    rng = random.Random(7)
    picks = [p for p in CORPUS if p.stat().st_size < 200_000]
    for i in range(2):
        path = rng.choice(picks)
        data = mutators.mutate(path.read_bytes(), rng)
        f = tmp_path / f"m{i}"
        f.write_bytes(data)
        for args in (("analyze", str(f), "--json"), ("analyze", str(f), "-v"), ("conns", str(f), "--json")):
            assert_clean(*run_cli(*args)[:3])
        assert_clean(*run_cli("analyze", "-", "--json", stdin=data)[:3])


# -- bounded resources ----------------------------------------------------------------------------------

GIB = 1 << 30


def _frames(n: int = 3) -> list[bytes]:
    return [ether(ip4(tcp(flags=SYN, seq=1000 + i))) for i in range(n)]


def _pcap_with(caplen_of_record: int, index: int) -> bytes:
    data = bytearray(pcap_file([Rec(f) for f in _frames()]))
    pos = 24
    for _ in range(index):
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    struct.pack_into("<I", data, pos + 8, caplen_of_record)
    return bytes(data)


def _ng_with_block_len(length: int, after_packets: int) -> bytes:
    blocks = [shb(), idb(1, snaplen=0xFFFFFFFF)] + [epb(f) for f in _frames()[:after_packets]]
    bad = bytearray(epb(_frames()[0]))
    struct.pack_into("<I", bad, 4, length)
    return b"".join(blocks) + bytes(bad) + epb(_frames()[1])


HUGE = {
    "pcap snaplen 4 GiB": (struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFFFFFF, 1)
                           + pcap_file([Rec(f) for f in _frames()])[24:], (0,)),
    "pcap first caplen 4 GiB": (_pcap_with(0xFFFFFFFF, 0), (2,)),
    "pcap second caplen 4 GiB": (_pcap_with(0xFFFFFFF0, 1), (0,)),
    "pcap caplen 2 GiB": (_pcap_with(0x7FFFFFFF, 1), (0,)),
    "pcap wire length 4 GiB": (pcap_file([Rec(f, wire_len=0xFFFFFFFF) for f in _frames()]), (0,)),
    "pcapng block 4 GiB first": (_ng_with_block_len(0xFFFFFFFC, 0), (2,)),
    "pcapng block 2 GiB after packets": (_ng_with_block_len(0x7FFFFFFC, 2), (0,)),
    "pcapng block 15 MiB cut short": (_ng_with_block_len(15 << 20, 1), (0,)),
    "pcapng epb caplen 4 GiB": (shb() + idb(1) + epb(_frames()[0]) + epb(_frames()[1], caplen=0xFFFFFFF0), (0,)),
    "pcapng section length and options huge": (
        shb(options=[(2, b"x" * 60000)]) + idb(1, snaplen=0xFFFFFFFF) + b"".join(epb(f) for f in _frames()), (0,)),
}


@pytest.mark.parametrize("name", sorted(HUGE))
def test_lying_lengths_allocate_nothing_large(name: str, tmp_path: Path) -> None:
    """Run under a 1 GiB address-space limit: a field claiming gigabytes is an error or a warning."""
    data, statuses = HUGE[name]
    f = tmp_path / "huge"
    f.write_bytes(data)
    commands = [("analyze", str(f), "--json")]
    if "4 GiB" in name:
        commands.append(("conns", str(f), "--json"))
    for args in commands:
        status, out, err, _, _ = run_cli(*args, limit_as=GIB)
        assert_clean(status, out, err)
        assert "out of memory" not in err
        if args[0] == "analyze":
            assert status in statuses, (status, err)
            if status == 0 and name != "pcap snaplen 4 GiB" and "section" not in name and "wire" not in name:
                assert "warning" in err, err
            if status == 2:
                assert "offset" in err, err


def test_gzip_bomb_memory_bounded(tmp_path: Path) -> None:
    """64 MiB of zeros after a pcap header in a 64 KiB gzip file: read through in bounded memory."""
    f = tmp_path / "bomb.gz"
    with gzip.open(f, "wb", compresslevel=9) as gz:
        gz.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        zeros = bytes(1 << 20)
        for _ in range(64):
            gz.write(zeros)
    assert f.stat().st_size < 1 << 20
    status, out, err, _, _ = run_cli("analyze", str(f), "--json", limit_as=GIB)
    assert_clean(status, out, err)
    assert status == 0 and json.loads(out)["packets"] == (64 << 20) // 16


def test_one_endless_text_line(tmp_path: Path) -> None:
    f = tmp_path / "line.txt"
    f.write_bytes(b"12:00:00.000001 IP 10.0.0.1.1 > 10.0.0.2.2: Flags [S], seq 1, win 1, length 0\n"
                  + b"A" * (96 << 20) + b"\n")
    status, out, err, _, rss = run_cli("analyze", str(f), "--json", limit_as=GIB)
    assert_clean(status, out, err)
    assert rss < 700, rss


# -- SYN flood ------------------------------------------------------------------------------------------


def _flood(path: Path, packets: int, **options: float) -> Path:
    synth.write_synflood(str(path), packets, **options)  # type: ignore[arg-type]
    return path


def test_synflood_tracker_table_bounded_and_evictions_reported(tmp_path: Path) -> None:
    from whyrst.pipeline import track_capture

    f = _flood(tmp_path / "flood.pcap", 120_000, rate=1_000_000)
    count = 0

    def done(conn: object) -> None:
        nonlocal count
        count += 1

    result = track_capture(str(f), done, max_connections=10_000)
    warning = " ".join(result.warnings.all())
    assert "evicted" in warning
    evicted = int(warning.split(" connections were evicted")[0].split()[-1])
    assert 60_000 < evicted < count  # about 80k connections, at most 10k in the table at once


def test_synflood_unanswered_syns_end_by_the_attempt_timer() -> None:
    """Unanswered SYNs at 4000 a second for 15 s: the attempt timer (5 s) ends them, the table stays near
    20k connections instead of holding all 60k."""
    from whyrst.capture import open_capture
    from whyrst.tcp.track import Tracker

    data = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1) + b"".join(
        synth.synflood_records(60_000, rate=4000, synack_share=0.0))
    ended = 0

    def done(conn: object) -> None:
        nonlocal ended
        ended += 1

    tracker = Tracker(done)
    peak = 0
    for batch in open_capture(data, batch_size=2000):
        tracker.feed(batch)
        peak = max(peak, len(tracker.conns))
    assert ended > 30_000 and peak < 30_000, (ended, peak)
    tracker.close()
    assert tracker.evicted == 0 and ended == 60_000


def test_tuple_reused_many_times_keeps_no_chain() -> None:
    """One 4-tuple, 8000 SYNs with new sequence numbers: each is a new connection, and finished
    connections are freed (no chain of earlier connections kept alive)."""
    import tracemalloc

    from whyrst.capture import open_capture
    from whyrst.tcp.track import Tracker

    recs = [Rec(ether(ip4(tcp(sport=40000, dport=80, flags=SYN, seq=i * 7919))), ts_ns=10**18 + i * 10**6)
            for i in range(8000)]
    data = pcap_file(recs, ns=True)
    batches = list(open_capture(data))
    ended = 0

    def done(conn: object) -> None:
        nonlocal ended
        ended += 1

    tracker = Tracker(done)
    tracemalloc.start()
    try:
        for batch in batches:
            tracker.feed(batch)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(tracker.conns) == 1 and ended == 7999
    assert current < 2 << 20, current  # a chain would hold 8000 connections of about 3 KB


@pytest.mark.slow
def test_synflood_cli_memory_and_time(tmp_path: Path) -> None:
    """The commands on a flood: peak RSS well under a gigabyte, and CPU time per packet no higher at 4x the
    size (linear; start-up weighs more on the small file)."""
    small = _flood(tmp_path / "f50k.pcap", 50_000)
    large = _flood(tmp_path / "f200k.pcap", 200_000)
    per: dict[str, float] = {}
    for f, n in ((small, 50_000), (large, 200_000)):
        status, out, err, seconds, rss = run_cli("analyze", str(f), "--json")
        assert status == 0, err
        assert rss < 700, rss
        per[f"analyze{n}"] = seconds / n
    status, out, err, seconds, rss = run_cli("conns", str(small), "--json")
    assert status == 0 and out.count("\n") > 30_000, err
    assert rss < 700, rss
    # start-up (about half a second) weighs more on the small file, so the large one must not be slower
    assert per["analyze200000"] < 1.5 * per["analyze50000"], per

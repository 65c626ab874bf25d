"""Many captures, many processes, many machines (whyrst.jobs, whyrst.split, whyrst.pool, capture.ranges).

The one rule: the resets of a capture are the same, frame for frame, uid for uid, cause for cause and
word for word, whether it is analysed by one process, by a pool of processes (a large file in parts)
or on a Dask cluster. Checked on the shared corpus (when present) and on generated captures, among them
files large enough to be cut into several ranges, and files made to break the cutting: timestamps that
go backwards, a pcapng interface described after packets, several pcapng sections, a truncated file,
hosts whose TTLs are tied.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, corpus_dir
from gen import Rec, ether, ip4, pcap_file, udp

from whyrst import jobs, split
from whyrst.analysis import analyze
from whyrst.capture import open_capture
from whyrst.capture.ranges import open_range, plan_ranges
from whyrst.jobs import cores, expand_sources, run_dask, run_local, write_parquet
from whyrst.pool import Call, Inline, Pool, meanwhile
from whyrst.report import jsontext
from whyrst.synth import packet, write_bench

NS = 1_000_000_000
SPLIT_ENV = {"WHYRST_SPLIT_MIN_BYTES": str(1 << 20), "WHYRST_SPLIT_RANGE_BYTES": str(1 << 18)}


@pytest.fixture(autouse=True)
def small_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files of a few MB are split into ranges of a quarter MB (the defaults are 48 MB and 16 MB)."""
    monkeypatch.setattr(jobs, "MIN_SPLIT", 1 << 20)
    monkeypatch.setattr(split, "MIN_RANGE", 1 << 18)


# -- generated captures ------------------------------------------------------------------------------------

def _pcap_records(path: Path) -> tuple[bytes, list[tuple[int, int, bytes]]]:
    """(file header, [(sec, frac, frame)]) of a little-endian pcap."""
    data = path.read_bytes()
    head, pos, out = data[:24], 24, []
    while pos + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from("<IIII", data, pos)
        out.append((sec, frac, data[pos + 16 : pos + 16 + caplen]))
        pos += 16 + caplen
    return head, out


def _write_pcap(path: Path, head: bytes, records: list[tuple[int, int, bytes]]) -> Path:
    with open(path, "wb") as fh:
        fh.write(head)
        for sec, frac, frame in records:
            fh.write(struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame)
    return path


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    return struct.pack("<II", btype, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def _shb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(tsresol: int = 9) -> bytes:
    options = struct.pack("<HHB3x", 9, 1, tsresol) + struct.pack("<HH", 0, 0)  # if_tsresol, end of options
    return _block(1, struct.pack("<HHI", 1, 0, 262144) + options)


def _epb(iface: int, ts_ns: int, frame: bytes) -> bytes:
    return _block(6, struct.pack("<IIIII", iface, ts_ns >> 32, ts_ns & 0xFFFFFFFF, len(frame), len(frame)) + frame)


@pytest.fixture(scope="session")
def gen(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated captures: a few MB each (every one is cut into ranges here), and small ones."""
    d = tmp_path_factory.mktemp("jobs")
    files: dict[str, Path] = {}
    files["big.pcap"] = d / "big.pcap"
    write_bench(str(files["big.pcap"]), 30000, 600, 11, False, mix="short")
    files["big.pcapng"] = d / "big.pcapng"
    write_bench(str(files["big.pcapng"]), 24000, 500, 12, True, reset_share=0.1, mix="short")
    head, recs = _pcap_records(files["big.pcap"])
    # timestamps that go backwards now and then (the trackers of partitions would see other sweeps)
    rng = random.Random(5)
    shuffled = [(max(0, s - (rng.random() < 0.01)), f, fr) for s, f, fr in recs]
    files["backwards.pcap"] = _write_pcap(d / "backwards.pcap", head, shuffled)
    # cut in the middle of the last record: the one-process run warns with an offset
    files["truncated.pcap"] = d / "truncated.pcap"
    files["truncated.pcap"].write_bytes(files["big.pcap"].read_bytes()[:-37])
    # pcapng: a second interface described after packets, and used after that
    blocks = [_shb(), _idb()]
    for i, (s, f, fr) in enumerate(recs[:20000]):
        if i == 9000:
            blocks.append(_idb(6))
        late = i > 9000 and i % 3 == 0  # on the second interface, in microseconds
        blocks.append(_epb(1 if late else 0, (s * NS + f) // 1000 if late else s * NS + f, fr))
    files["late-idb.pcapng"] = d / "late-idb.pcapng"
    files["late-idb.pcapng"].write_bytes(b"".join(blocks))
    # pcapng: two sections one after the other (as cat makes them)
    two = [_shb(), _idb()] + [_epb(0, s * NS + f, fr) for s, f, fr in recs[:12000]]
    two += [_shb(), _idb(), _idb()] + [_epb(i % 2, s * NS + f, fr) for i, (s, f, fr) in enumerate(recs[12000:24000])]
    files["sections.pcapng"] = d / "sections.pcapng"
    files["sections.pcapng"].write_bytes(b"".join(two))
    files["ties.pcap"] = _ties(d / "ties.pcap")
    files["big.pcap.gz"] = d / "big.pcap.gz"
    files["big.pcap.gz"].write_bytes(gzip.compress(files["big.pcap"].read_bytes(), 1))
    files["small.pcap"] = d / "small.pcap"
    write_bench(str(files["small.pcap"]), 3000, 100, 13, False, mix="short")
    # no TCP at all: every table the ranges send is empty
    files["udp.pcap"] = d / "udp.pcap"
    files["udp.pcap"].write_bytes(pcap_file(
        Rec(ether(ip4(udp(bytes(160), sport=50000 + i % 1000), proto=17)), ts_ns=1_600_000_000_000_000_000 + i * 1000)
        for i in range(20000)))
    return files


def _ties(path: Path) -> Path:
    """Hosts whose packets come with two or three TTLs in equal numbers, each resetting connections: the
    host's usual TTL (named in the evidence) is the first of the tied ones in the prepass's table."""
    rng = random.Random(9)
    recs = []
    t = 1_700_000_000 * NS
    for n in range(5000):
        cli, srv = f"10.{(n >> 8) & 255}.{n & 255}.7", f"192.0.2.{n % 40 + 1}"
        cport, seq, sseq = 20000 + n % 30000, rng.randrange(2**32), rng.randrange(2**32)
        ttls = rng.sample(range(50, 70), 2)
        frames = [packet(cli, srv, cport, 80, seq, 0, 0x02, ttl=ttls[0]),
                  packet(srv, cli, 80, cport, sseq, seq + 1, 0x12, ttl=64),
                  packet(cli, srv, cport, 80, seq + 1, sseq + 1, 0x10, ttl=ttls[1]),
                  packet(cli, srv, cport, 80, seq + 1, sseq + 1, 0x14, ttl=ttls[rng.randrange(2)] - 9)]
        for fr in frames:
            t += rng.randrange(1000, 400000)
            recs.append((t // NS, t % NS // 1000, fr))
    head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
    return _write_pcap(path, head, recs)


# -- the record layer: ranges read like the whole file ---------------------------------------------------------

KEYS = ("frame", "ts_ns", "kind", "flags", "seq", "sport", "payload_len", "iface", "link_type", "checksum_ok")


def _columns(cap: Any) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
    for b in cap:
        for k in KEYS:
            out[k].append(b.cols[k].copy())
    return {k: np.concatenate(v) if v else np.zeros(0) for k, v in out.items()}


def _ranges_match(path: Path, parts: int, exact: bool) -> str:
    """"split" when the ranges read like the whole file, "whole" when the file is not split, "refused"
    when a range says it cannot be trusted (the analysis then reads the file whole)."""
    plan = plan_ranges(str(path), parts, 256, exact=exact)
    if len(plan.ranges) < 2:
        return "whole"
    with open_capture(str(path)) as cap:
        whole = _columns(cap)
    got, before = [], 0
    for r in plan.ranges:
        try:
            with open_range(r, frames_before=before) as cap:
                cols = _columns(cap)
                if cap.warnings.all() or cap.problem():
                    return "refused"
        except Exception:
            return "refused"
        before += len(cols["frame"])
        got.append(cols)
    for k in KEYS:
        assert np.array_equal(whole[k], np.concatenate([g[k] for g in got])), (path.name, k)
    return "split"


def test_ranges_read_like_the_whole_file(gen: dict[str, Path]) -> None:
    outcomes = {}
    for name in ("big.pcap", "big.pcapng", "late-idb.pcapng", "sections.pcapng", "truncated.pcap"):
        for exact in (False, True):
            outcomes[name, exact] = _ranges_match(gen[name], 5, exact)
    assert outcomes["big.pcap", False] == outcomes["big.pcap", True] == "split"
    assert outcomes["big.pcapng", False] == outcomes["big.pcapng", True] == "split"
    # a late interface or a second section: the walk from the start cuts them right
    assert outcomes["late-idb.pcapng", True] == outcomes["sections.pcapng", True] == "split"
    assert outcomes["sections.pcapng", False] == "refused"  # (the second section header is seen in a range)
    assert outcomes["late-idb.pcapng", False] == "refused"  # (the interface block is seen in a range)
    assert outcomes["truncated.pcap", True] == "whole"  # the walk finds the cut record
    assert outcomes["truncated.pcap", False] == "refused"  # the last range's read warns
    assert plan_ranges(str(gen["big.pcap.gz"]), 4).reason.startswith("gzip input cannot be split")


def test_ranges_on_the_corpus() -> None:
    d = corpus_dir()
    if d is None:
        pytest.skip("shared corpus not found (set WHYRST_CORPUS)")
    seen = set()
    for path in sorted((d / "pcaps").iterdir()):
        for exact in (False, True):
            seen.add(_ranges_match(path, 4, exact))
    assert "split" in seen


# -- one file in parts: the one-process result ------------------------------------------------------------------

def _same(a: Any, b: Any) -> None:
    ja, jb = a.to_json(), b.to_json()
    assert (ja["packets"], ja["connections"], ja["warnings"]) == (jb["packets"], jb["connections"], jb["warnings"])
    assert len(ja["resets"]) == len(jb["resets"])
    for x, y in zip(ja["resets"], jb["resets"], strict=True):
        assert x == y, x["frame"]
    assert a.conns == b.conns


@pytest.fixture(scope="module")
def pool2() -> Any:
    with Pool(2) as p:
        yield p


@pytest.mark.parametrize("name", ["big.pcap", "big.pcapng", "backwards.pcap", "truncated.pcap", "late-idb.pcapng",
                                  "sections.pcapng", "ties.pcap", "big.pcap.gz"])
def test_split_equals_one_process(gen: dict[str, Path], pool2: Any, name: str) -> None:
    path = str(gen[name])
    want = analyze(path)
    notes: list[str] = []
    got = split.analyze_split(path, 2, pool=pool2, notes=notes)
    _same(want, got)
    whole = any("analysed in one process" in n for n in notes)
    if name in ("big.pcap", "big.pcapng", "backwards.pcap", "ties.pcap"):
        assert not whole, notes  # really in parts
    if name in ("big.pcap.gz",):
        assert whole and "gzip" in notes[-1]
    if name == "backwards.pcap":
        assert any("one tracker" in n for n in notes), notes
    if name in ("late-idb.pcapng", "truncated.pcap"):
        assert any("walking every record" in n for n in notes), notes


def test_split_in_process_with_every_connection(gen: dict[str, Path]) -> None:
    """The same with every connection's conn.log record (Parquet's connection table), and in one process
    (the pool's Inline form runs the same calls in turn)."""
    path = str(gen["big.pcapng"])
    _same(analyze(path, collect_conns=True), split.analyze_split(path, 3, with_conns=True, pool=Inline()))
    exact = split.analyze_split(str(gen["big.pcap"]), 2, pool=Inline(), exact=True, keep_ladders=True)
    want = analyze(str(gen["big.pcap"]), keep_ladders=True)
    _same(want, exact)
    assert want.ladders == exact.ladders


def test_tied_ttls_keep_their_order(gen: dict[str, Path]) -> None:
    """The merged TTL table lists every host's TTLs in the order one process's table does: from the
    entries alone when no tie depends on the order of insertion, else replayed in order of first
    appearance (then the very table one process builds, slot for slot)."""
    from whyrst.tcp.prepass import new_prepass

    for name, replayed in (("big.pcap", False), ("ties.pcap", True)):
        path = str(gen[name])
        whole = new_prepass("numba")
        with open_capture(path, checksums=False) as cap:
            for b in cap:
                whole.feed(b)
        used = whole._ttls[4].view(bool)
        slots = [a[used] for a in whole._ttls[:4]]
        whole.finish()
        plan = split.plan(path, 3)
        assert len(plan.ranges) >= 3
        merged = split.merge([split.prepass_range(r) for r in plan.ranges])
        assert (merged.ttl_table is None) == replayed
        if replayed:
            merged.ttl_table = split.replay_ttls(merged.ttl_entries, [split.ttl_order(r) for r in plan.ranges])
            for a, b in zip(slots, merged.ttl_table, strict=True):
                assert np.array_equal(a, b)
        assert merged.answered.table == whole.answered.table
        assert merged.answered.last_close.as_dict() == whole.answered.last_close.as_dict()
        assert merged.answered.refusals == whole.answered.refusals
        parts = split.prepass_from(ttl_table=merged.ttl_table, totals=merged.probe_totals)  # (what round 3 is sent)
        tied = 0
        for h in list(whole.ttls):
            assert list(whole.ttls[h].items()) == list(parts.ttls[h].items()), h
            counts = sorted(whole.ttls[h].values())
            tied += len(counts) > 1 and counts[-1] == counts[-2]
            assert whole.probe_counts.get(h, 0) == parts.probe_counts.get(h, 0) == len(whole.probed.get(h, ()))
        assert sum(whole.probe_counts.values()) == sum(parts.probe_counts.values()) > 0
        assert tied > 1000 if replayed else tied == 0


def _tied_in_one_run(table: tuple[np.ndarray, ...]) -> bool:
    """What the tie check decides, the slow way: the runs of occupied slots (a run that reaches the end goes on
    at the start), each host's top count, and whether one run holds two entries of a host at its top."""
    w0, w1, vt, n, used = (a.tolist() for a in table)
    size = len(used)
    run_of, run = {}, 0
    for j in range(size):
        if used[j]:
            if j == 0 or not used[j - 1]:
                run += 1
            run_of[j] = run
    if used[0] and used[-1]:  # (the last run is the first one)
        last = run_of[size - 1]
        run_of = {j: 1 if r == last else r for j, r in run_of.items()}
    top: dict[tuple[int, int, int], int] = {}
    for j in run_of:
        host = (w0[j], w1[j], vt[j] >> 8)
        top[host] = max(top.get(host, 0), n[j])
    seen: set[tuple[tuple[int, int, int], int]] = set()
    for j in run_of:
        host = (w0[j], w1[j], vt[j] >> 8)
        if n[j] == top[host]:
            if (host, run_of[j]) in seen:
                return True
            seen.add((host, run_of[j]))
    return False


def test_ttl_merge_kernels_against_the_slow_way() -> None:
    """The TTL merge's kernels on small tables full of collisions (runs that wrap around the table's end, ties
    in one run and in different runs): the counts of alike entries summed, the same slots as the prepass's own
    rehash, and the tie check as :func:`_tied_in_one_run` decides it."""
    from whyrst.tcp.prepass import CompiledPrepass

    k = split._kernels()
    rng = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        size = rng.choice((8, 16))
        rows = rng.randint(1, size // 2 * 2)
        w0 = np.array([rng.randint(1, 4) for _ in range(rows)], dtype=np.uint64)
        w1 = np.zeros(rows, dtype=np.uint64)
        vt = np.array([(4 << 8) | rng.randint(60, 63) for _ in range(rows)], dtype=np.uint16)
        cnt = np.array([rng.randint(1, 3) for _ in range(rows)], dtype=np.int64)
        keys = {(int(a), int(c)) for a, c in zip(w0, vt, strict=True)}
        if 2 * len(keys) > size:
            continue
        slots, sums = np.zeros(max(size, split._room(rows)), dtype=np.int32), np.empty(rows, dtype=np.int64)
        assert k.merge_ttls(w0, w1, vt, cnt, slots, sums) == len(keys)
        small = np.zeros(size, dtype=np.int32)
        k.rehash_ttl_rows(w0, w1, vt, slots, small)
        at = np.flatnonzero(small)
        rows_at = small[at] - 1
        totals: dict[tuple[int, int], int] = {}
        for a, c, m in zip(w0.tolist(), vt.tolist(), cnt.tolist(), strict=True):
            totals[a, c] = totals.get((a, c), 0) + m
        assert {(int(w0[r]), int(vt[r])): int(sums[r]) for r in rows_at} == totals
        # the same entries rehashed by the prepass's own kernel land in the same slots
        table = CompiledPrepass._empty_ttls(size)
        k.rehash_ttls(w0[rows_at], w1[rows_at], vt[rows_at], sums[rows_at], np.ones(len(at), dtype=np.uint8), *table)
        assert np.array_equal(np.flatnonzero(table[4]), at)
        tied = k.tied_in_one_run(w0[rows_at], w1[rows_at], vt[rows_at], sums[rows_at], at, size,
                                 np.zeros(split._room(len(at)), dtype=np.int32))
        assert tied == _tied_in_one_run(table)
        outcomes.add((tied, bool(table[4][0] and table[4][-1])))
    assert outcomes == {(False, False), (False, True), (True, False), (True, True)}


def test_probe_merge_against_the_slow_way() -> None:
    """The ranges' bare-SYN probes, alike rows among them, counted per source as sets count them."""
    rng = random.Random(11)
    for _ in range(50):
        tables = []
        for _ in range(rng.randint(1, 4)):
            rows = {(rng.randint(1, 5), 0, rng.randint(1, 3), 0, (4 << 16) | rng.randint(1, 6))
                    for _ in range(rng.randint(0, 40))}
            cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), ()]
            tables.append(tuple(np.array(c, dtype=np.uint32 if j == 4 else np.uint64) for j, c in enumerate(cols)))
        every = {tuple(int(a[i]) for a in t) for t in tables for i in range(len(t[0]))}
        distinct, (s0, s1, version, count) = split.merge_probes(tables)
        assert distinct == len(every)
        want: dict[tuple[int, int, int], int] = {}
        for a, b, _, _, vp in every:
            want[a, b, vp >> 16] = want.get((a, b, vp >> 16), 0) + 1
        got = {(int(a), int(b), int(v)): int(c) for a, b, v, c in zip(s0, s1, version, count, strict=True)}
        assert got == want


@pytest.mark.parametrize("name", ["big.pcap", "ties.pcap", "truncated.pcap", "big.pcap.gz", "udp.pcap"])
def test_json_made_by_the_workers(gen: dict[str, Path], pool2: Any, name: str) -> None:
    """With ``encode`` the workers write each reset's JSON and the main process only joins the texts: the
    bytes of the one-process report's JSON, compact or indented (in parts, with TTLs replayed, cut again,
    and in one process)."""
    path = str(gen[name])
    want = analyze(path).to_json()
    for indent in (None, 1, 2):
        ((_, ok, got),) = list(pool2.run([(path, split.split_job(path, 2, encode=True, indent=indent))]))
        assert ok and isinstance(got, jsontext.EncodedReport), got
        assert got.json_text() == json.dumps(want, indent=indent)
    ((_, ok, got),) = list(Inline().run([(path, split.split_job(path, 3, encode=True))]))
    assert ok and got.json_text() == json.dumps(want)
    for indent in (None, 1):
        empty = jsontext.EncodedReport(path, "pcap", 3, 1, [], ["a warning"], indent)
        assert json.loads(empty.json_text())["resets"] == [] and empty.json_text() == json.dumps(
            {**want, "packets": 3, "connections": 1, "resets": [], "warnings": ["a warning"]}, indent=indent)


# -- many sources: -j 1, every core, Dask ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sources(gen: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    d = tmp_path_factory.mktemp("many")
    for name in ("big.pcap", "big.pcapng", "small.pcap", "big.pcap.gz"):
        shutil.copy(gen[name], d / name)
    (d / "sub").mkdir()
    (d / "sub" / "notes.txt").write_text("not a capture\n\0")
    (d / ".hidden").write_text("skipped")
    corpus = corpus_dir()
    items = [str(d)]
    if corpus is not None:
        items.append(str(corpus / "pcaps"))
    return expand_sources(items)


def _resets(docs: list[dict[str, Any]]) -> list[Any]:
    return [(d["source"], d.get("error"), d["packets"], d["connections"], d["resets"], d["warnings"]) for d in docs]


@pytest.fixture(scope="module")
def one_process(sources: list[str]) -> list[dict[str, Any]]:
    return list(run_local(sources, 1))


def test_many_sources_same_results(sources: list[str], one_process: list[dict[str, Any]]) -> None:
    """-j 1 and every core (a large file among them in parts) find the same resets."""
    assert any(s.endswith("notes.txt") for s in sources) and not any(".hidden" in s for s in sources)
    assert [d["source"] for d in one_process] == sources
    assert any("error" in d for d in one_process) and sum(len(d["resets"]) for d in one_process) > 1000
    notes: list[str] = []
    every = list(run_local(sources, max(2, cores()), note=notes.append))
    assert _resets(every) == _resets(one_process)
    # big.pcap is less than a worker's share of all this: analysed whole by one worker, the others busy
    assert not any("big.pcap:" in n for n in notes), notes
    # ...and more than its share beside a small capture: in parts
    few = [s for s in sources if s.endswith(("big.pcap", "small.pcap"))]
    assert len(few) == 2
    notes.clear()
    assert _resets(list(run_local(few, 2, note=notes.append))) == _resets(list(run_local(few, 1)))
    assert any(n.endswith("ranges") and "big.pcap:" in n for n in notes), notes


def test_dask_local_cluster_same_results(sources: list[str], one_process: list[dict[str, Any]]) -> None:
    pytest.importorskip("dask.distributed")
    notes: list[str] = []
    got = list(run_dask(sources, None, workers=2, note=notes.append))
    assert _resets(got) == _resets(one_process)
    assert "2 workers" in notes[0]


def test_cli_json_lines_and_exit_status(gen: dict[str, Path], tmp_path: Path) -> None:
    d = tmp_path / "caps"
    d.mkdir()
    for name in ("big.pcap", "small.pcap"):
        shutil.copy(gen[name], d / name)
    env = {**os.environ, **SPLIT_ENV}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "whyrst", "analyze", *args], capture_output=True, text=True,
                              cwd=REPO, env=env, timeout=120)

    a, b = run(str(d), "-j", "1", "--json"), run(str(d), "-j", "2", "--json", "-v")
    assert a.returncode == b.returncode == 0, (a.stderr, b.stderr)
    assert a.stdout == b.stdout and len(a.stdout.splitlines()) == 2
    assert "ranges" in b.stderr  # -v: how the large file was run
    one, parts = run(str(d / "big.pcap"), "--json", "-j", "1"), run(str(d / "big.pcap"), "--json", "-j", "2")
    assert one.stdout == parts.stdout and json.loads(one.stdout)["resets"]
    (d / "bad.pcap").write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 3)
    mixed = run(str(d), "-j", "2", "--json")
    assert mixed.returncode == 1 and len(mixed.stdout.splitlines()) == 3
    assert json.loads(mixed.stdout.splitlines()[0])["error"].startswith(str(d / "bad.pcap"))
    assert run(str(d / "bad.pcap"), str(d / "bad.pcap") + "x", "--json").returncode == 2
    assert "no file matches" in run(str(d / "*.nothing")).stderr


# -- outputs ----------------------------------------------------------------------------------------------

def test_parquet_duckdb_and_summary(gen: dict[str, Path], tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    pytest.importorskip("pyarrow")
    d = tmp_path / "caps"
    d.mkdir()
    for name in ("big.pcapng", "small.pcap", "ties.pcap"):
        shutil.copy(gen[name], d / name)
    out = tmp_path / "out"
    env = {**os.environ, **SPLIT_ENV}
    r = subprocess.run([sys.executable, "-m", "whyrst", "analyze", str(d), "-j", "2", "--parquet", str(out), "--json"],
                       capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    want: dict[str, int] = {}
    for doc in docs:
        for x in doc["resets"]:
            want[x["cause"]] = want.get(x["cause"], 0) + 1
    got = dict(duckdb.sql(f"SELECT cause, count(*) FROM '{out}/resets/*.parquet' GROUP BY cause").fetchall())
    assert got == want
    row = duckdb.sql(f"SELECT source, frame, uid, evidence, alternatives, time FROM '{out}/resets/*.parquet' "
                     "ORDER BY source, frame LIMIT 1").fetchall()[0]
    first = min((doc["source"], x["frame"], x) for doc in docs for x in doc["resets"])
    assert row[:4] == (first[0], first[1], first[2]["uid"], first[2]["evidence"])
    n_conns = duckdb.sql(f"SELECT count(*) FROM '{out}/connections/*.parquet'").fetchall()[0][0]
    assert n_conns == sum(doc["connections"] for doc in docs) > 0
    assert duckdb.sql(f"SELECT count(*) FROM '{out}/captures/*.parquet'").fetchall()[0][0] == 3
    s = subprocess.run([sys.executable, "-m", "whyrst", "summary", str(out)], capture_output=True, text=True,
                       cwd=REPO, timeout=60)
    assert s.returncode == 0, s.stderr
    total = sum(want.values())
    assert s.stdout.startswith(f"{total} resets in 3 captures")
    assert "by cause:" in s.stdout and "by server" in s.stdout and "over time" in s.stdout
    assert " of the " in s.stdout and ", starting at " in s.stdout
    # rewriting the dataset replaces it
    assert write_parquet([docs[0]], str(out)) == (len(docs[0]["resets"]), 0)
    assert duckdb.sql(f"SELECT count(*) FROM '{out}/resets/*.parquet'").fetchall()[0][0] == len(docs[0]["resets"])


def test_analyze_many_api(gen: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    import whyrst

    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"nothing here\0")
    with pytest.warns(UserWarning, match="bad.pcap"):
        df = whyrst.analyze_many([str(gen["small.pcap"]), str(gen["ties.pcap"]), str(bad)], jobs=2)
    want = analyze(str(gen["small.pcap"])).to_dataframe()
    mine = df[df["source"] == str(gen["small.pcap"])].reset_index(drop=True)
    assert list(mine["frame"]) == list(want["frame"]) and list(mine["cause"]) == list(want["cause"])
    assert list(mine["evidence"]) == list(want["evidence"])
    assert set(df.attrs["errors"]) == {str(bad)} and len(df.attrs["captures"]) == 3
    empty = whyrst.analyze_many([str(bad)], jobs=1, errors="ignore")
    assert len(empty) == 0 and "cause" in empty.columns
    # importing whyrst loads none of it
    r = subprocess.run([sys.executable, "-c", "import sys, whyrst; print(sorted(m for m in sys.modules "
                        "if m.startswith(('whyrst.', 'pandas', 'numpy', 'pyarrow', 'dask'))))"],
                       capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.stdout.strip() == "[]", r.stdout


# -- the pool ---------------------------------------------------------------------------------------------

def _pid() -> int:
    return os.getpid()


def _job(i: int) -> Any:
    first = yield [Call(pow, (2, i)), Call(_pid)]
    again = yield [Call(_pid, worker=first[1].ran_on)]
    assert again[0].value == first[1].value  # pinned to the process that ran the first call
    return first[0].value


def _dies() -> Any:
    (call,) = yield [Call(os._exit, (3,))]
    return call.ok, call.error


def _later_job() -> Any:
    ran = meanwhile(pow, 3, 2)
    fails = meanwhile(int, "x")
    yield [Call(_pid)]
    assert ran.done and fails.done  # run while the process was at work
    with pytest.raises(ValueError):
        fails.result()
    return ran.result()


def test_pool_meanwhile(pool2: Any) -> None:
    """Work the main process leaves for later runs while the processes run the job's next calls (in turn
    with Inline), its error raised where its result is read."""
    assert list(pool2.run([("m", _later_job())])) == [("m", True, 9)]
    assert list(Inline().run([("m", _later_job())])) == [("m", True, 9)]
    assert meanwhile(pow, 2, 5).result() == 32  # (asked for before any pool ran it)


def test_pool_release_then_close() -> None:
    """Released, the idle processes end without being waited for; close then only waits."""
    pool = Pool(2)
    try:
        assert list(pool.run([("j", _job(3))])) == [("j", True, 8)]
        pool.release()
        for w in pool._workers:
            w.proc.join(10)
            assert w.proc.exitcode == 0
    finally:
        pool.close()


def test_pool_jobs_pins_and_deaths(pool2: Any) -> None:
    got = {k: v for k, ok, v in pool2.run([(i, _job(i)) for i in range(8)])}
    assert [got[i] for i in range(8)] == [2**i for i in range(8)]
    # a process that dies fails its call (and the calls pinned to it), and a new one takes its place
    assert list(pool2.run([("dead", _dies())])) == [("dead", True, (False, "the worker process died (exit status 3)"))]
    assert {k: v for k, ok, v in pool2.run([(i, _job(i)) for i in range(4)])} == {i: 2**i for i in range(4)}


def test_expand_sources(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.pcap").write_bytes(b"")
    (tmp_path / "a" / "y.pcap").write_bytes(b"")
    (tmp_path / "a" / ".z.pcap").write_bytes(b"")
    (tmp_path / "a" / ".git").mkdir()
    (tmp_path / "a" / ".git" / "w.pcap").write_bytes(b"")
    a = str(tmp_path / "a")
    assert expand_sources([a]) == [f"{a}/b/x.pcap", f"{a}/y.pcap"]
    assert expand_sources([f"{a}/**/*.pcap"]) == [f"{a}/b/x.pcap", f"{a}/y.pcap"]
    assert expand_sources([f"{a}/*"]) == [f"{a}/b/x.pcap", f"{a}/y.pcap"]
    assert expand_sources([f"{a}/y.pcap", a, "-", "s3://bucket/c.pcap"]) == [
        f"{a}/y.pcap", f"{a}/b/x.pcap", "-", "s3://bucket/c.pcap"]
    with pytest.raises(Exception, match="no file matches"):
        expand_sources([f"{a}/*.nothing"])


def test_urls(gen: dict[str, Path]) -> None:
    """URLs are read through fsspec; a glob or a folder in a URL is expanded."""
    pytest.importorskip("fsspec")
    from whyrst.jobs import analyze_to_dict

    d = gen["small.pcap"].parent
    urls = expand_sources([f"file://{d}/sma*.pcap", f"file://{d}/"])
    assert urls[0] == f"file://{gen['small.pcap']}" and f"file://{gen['big.pcapng']}" in urls[1:]
    doc = analyze_to_dict(urls[0])
    want = analyze(str(gen["small.pcap"])).to_json()
    assert doc["source"] == urls[0] and doc["packets"] == want["packets"]
    assert [(r["frame"], r["cause"], r["evidence"]) for r in doc["resets"]] == [
        (r["frame"], r["cause"], r["evidence"]) for r in want["resets"]]

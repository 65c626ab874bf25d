"""The fast path (a compiled prepass, then tracking only the tuples that carry a RST, decoding only their
records) against the slow reference path (``two_pass=False``: every packet through the Python tracker):
identical resets, connection and packet counts on every corpus capture and on generated captures.

Small files are decoded with numpy by default, so the fast path is also forced onto the compiled
engine (numba) to cover its prepass and record filter on the same files; that run tracks with the
compiled tracker (whyrst.tcp.fasttrack), the numpy one with the Python tracker.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import manifest

from whyrst.analysis import Report, analyze
from whyrst.capture import fast
from whyrst.errors import CaptureError

ROWS = [r for r in manifest() if r["opens_cleanly"].startswith("yes")]
ENGINES = ["numpy", *(["numba"] if fast.available() else [])]


def _resets(report: Report) -> list[tuple]:
    return [(r.frame, r.cause, r.confidence, [(a.cause, a.confidence) for a in r.alternatives], r.evidence, r.uid,
             r.src, r.sport, r.dst, r.dport, r.role, r.sender) for r in report.resets]


def _same(path: Path) -> None:
    try:
        slow = analyze(str(path), two_pass=False)
    except CaptureError:
        with pytest.raises(CaptureError):
            analyze(str(path), two_pass=True)
        return
    want = _resets(slow)
    for engine in ENGINES:
        # the numpy engine with the Python tracker, the numba one with the compiled tracker
        quick = analyze(str(path), two_pass=True, engine=engine, compiled_tracker=engine == "numba")
        assert quick.packets == slow.packets, engine
        assert quick.connections == slow.connections, engine
        got = _resets(quick)
        assert len(got) == len(want), engine
        for g, w in zip(got, want, strict=True):
            assert g == w, (engine, g[0])
        assert [r.to_json() for r in quick.resets] == [r.to_json() for r in slow.resets], engine


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_fast_equals_slow(row: dict[str, str], corpus: Path) -> None:
    _same(corpus / "pcaps" / row["file"])


def test_demo_fast_equals_slow(tmp_path: Path) -> None:
    from whyrst import synth

    path = tmp_path / "demo.pcap"
    with open(path, "wb") as out:
        synth.demo().write_pcap(out)
    _same(path)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "packets", "mix"), [("bench.pcap", 100_000, "short"),
                                                      ("bench.pcapng", 30_000, "short"),
                                                      ("bulk.pcap", 60_000, "bulk"),
                                                      ("bench.pcap.gz", 30_000, "short")])
def test_bench_capture_fast_equals_slow(tmp_path: Path, name: str, packets: int, mix: str) -> None:
    """Generated captures: the second pass from the first pass's index of the file (pcap, pcapng), and by
    reading the file again (gzip, which has no index)."""
    import gzip

    from whyrst import synth

    path = tmp_path / name.removesuffix(".gz")
    synth.write_bench(str(path), packets, 2000, 3, ".pcapng" in name, mix=mix)
    if name.endswith(".gz"):
        packed = tmp_path / name
        packed.write_bytes(gzip.compress(path.read_bytes(), 1))
        path = packed
    _same(path)

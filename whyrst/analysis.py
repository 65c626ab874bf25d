"""``whyrst.analyze``: every RST in a capture, explained. The engine behind ``whyrst analyze``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from whyrst.capture.batch import Kind, PacketBatch
from whyrst.capture.index import FlowIndex, StaleIndex
from whyrst.causes.engine import explain
from whyrst.causes.features import HostView, observe_hosts
from whyrst.errors import Warnings
from whyrst.tcp.prepass import flow_hashes, new_prepass
from whyrst.tcp.track import NS, Connection, ResetContext, Tracker, flags_text

SCHEMA = "whyrst.analyze/1"
# Files smaller than this are decoded with numpy: loading numba and its compiled kernels costs a few
# tenths of a second, more than the numpy engine takes for a file this size.
SMALL_FILE = 8 << 20
_LEAN_NUMBA = False  # set by tune_process(): load numba without its BLAS probe


def tune_process(role: str = "alone") -> None:
    """Settings for a process that exists to run whyrst (the command line), never for a library's host.

    * glibc's malloc adapts its mmap threshold upwards (to 32 MB) as large blocks are freed, after
      which the large read buffers and index batches of every pass come from the heap and stay in the
      peak RSS; a fixed threshold of 1 MB hands those back to the system when freed, while the batch
      columns (under 1 MB: see capture.batch.BATCH_ROWS), allocated and freed again and again, stay on
      the heap and are reused: at 256 KB every one was a fresh mapping and its first touch a page fault;
      4 MB kept 10 MB more at the peak of a 1M-packet capture of short connections. The heap's free top
      is kept up to 64 MB (not 1 MB): a batch's columns freed at the top went back to the system and the
      next batch's faulted in again (a 2M-packet capture analysed in two parts: 83,000 page faults,
      50,000 with the top kept; the peak, which is reached anyway, did not change). The fixed threshold is
      for a process that analyses one capture ``alone``, whose peak it bounds. The processes of a parallel
      run take every block under 32 MB (the adaptive threshold's ceiling) from the heap at once, and keep
      its free top too: a ``coordinator`` (the main process, which reads no capture but merges the tables
      its workers send) builds tables of a few MB again and again, and a ``worker`` runs call after call
      (each first touch of a fresh page costs this VM up to 10 µs once the host has taken the freed memory
      back). Left adaptive, the threshold rose only as large blocks were freed, and until then, and
      whenever the heap's top was trimmed, every block was fresh memory again: a 2M-packet capture analysed
      in two parts made 43,000 page faults in all; 30,000 with the heap kept (the workers' index rows
      copied out by partition, the coordinator's merges), and a twelfth less CPU.
    * the garbage collector runs less often (see below);
    * numba probes for SciPy's BLAS when it first compiles or loads a kernel, which imports
      ``scipy.linalg`` (a sixth of a second, ~20 MB) when SciPy is installed; whyrst's kernels use
      no linear algebra, so the probe is answered "none" (numba's own np.dot support in this process
      goes with it).
    """
    global _LEAN_NUMBA
    _LEAN_NUMBA = True
    import gc

    # The tracker makes a few objects per connection that live until it ends; the default first-generation
    # threshold (700) walks them again and again (a quarter of the CPU of `whyrst conns` on a SYN flood).
    gc.set_threshold(100_000, 50, 50)
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, (1 << 20) if role == "alone" else (32 << 20))
        libc.mallopt(m_trim_threshold, 64 << 20)
    except (OSError, AttributeError):  # not glibc
        pass


def _is_small(path: Any) -> bool:
    """Whether a file is small enough for the numpy engine (a gzip file counts as ~8 times its size)."""
    size = os.path.getsize(path)
    if size >= SMALL_FILE:
        return False
    try:
        with open(path, "rb") as fh:
            gz = fh.read(2) == b"\x1f\x8b"
    except OSError:
        return True
    return size * 8 < SMALL_FILE if gz else True


def _load_numba_lean() -> None:
    import sys

    if "numba" in sys.modules or "scipy.linalg" in sys.modules or os.environ.get("WHYRST_NO_NUMBA"):
        return
    blas = "scipy.linalg.cython_blas"
    sys.modules[blas] = None  # type: ignore[assignment]  # "import scipy.linalg.cython_blas" fails at once
    try:
        import numba.np.arraymath  # noqa: F401  (where numba probes for BLAS)
    except ImportError:
        pass
    finally:
        if sys.modules.get(blas, 0) is None:
            del sys.modules[blas]


@dataclass
class Alternative:
    cause: str
    confidence: float


@dataclass
class Reset:
    """One RST, explained."""

    frame: int
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    uid: str
    role: str
    sender: str
    cause: str
    confidence: float
    alternatives: list[Alternative]
    evidence: list[str]
    fix: list[str]
    confirm: list[str]
    flags: str = ""
    seq: int = 0
    ack: int = 0
    ttl: int = 0
    payload_text: str = ""
    diagnostic: dict[str, object] = field(default_factory=dict)
    evidence_frames: list[int] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The same as dataclasses.asdict, without its deep copy of every value (the lists are copied: the
        dict is the caller's)."""
        return {
            "frame": self.frame, "ts": self.ts, "src": self.src, "sport": self.sport, "dst": self.dst,
            "dport": self.dport, "uid": self.uid, "role": self.role, "sender": self.sender, "cause": self.cause,
            "confidence": self.confidence,
            "alternatives": [{"cause": a.cause, "confidence": a.confidence} for a in self.alternatives],
            "evidence": list(self.evidence), "fix": list(self.fix), "confirm": list(self.confirm),
            "flags": self.flags, "seq": self.seq, "ack": self.ack, "ttl": self.ttl, "payload_text": self.payload_text,
            "diagnostic": dict(self.diagnostic), "evidence_frames": list(self.evidence_frames),
        }


@dataclass
class Report:
    source: str
    format: str
    packets: int
    connections: int
    resets: list[Reset]
    warnings: list[str]
    conns: list[dict[str, Any]] = field(default_factory=list)
    ladders: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "source": self.source,
            "packets": self.packets,
            "connections": self.connections,
            "resets": [r.to_json() for r in self.resets],
            "warnings": self.warnings,
        }

    def by_cause(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.resets:
            counts[r.cause] = counts.get(r.cause, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def to_dataframe(self) -> Any:
        """The resets as a pandas DataFrame (needs the ``dataframe`` extra)."""
        import pandas as pd

        rows = []
        for r in self.resets:
            row = r.to_json()
            row["alternatives"] = ",".join(a.cause for a in r.alternatives)
            row["evidence"] = " ".join(r.evidence)
            row["fix"] = " ".join(r.fix)
            row["confirm"] = " | ".join(r.confirm)
            row["source"] = self.source
            rows.append(row)
        return pd.DataFrame(rows)


def analyze(
    source: Any,
    *,
    progress: Callable[[int, int], None] | None = None,
    keep_ladders: bool = False,
    two_pass: bool | None = None,
    collect_conns: bool = False,
    engine: str | None = None,
    compiled_tracker: bool | None = None,
) -> Report:
    """Read a capture (a path, ``-``, or a binary stream) and explain every RST in it.

    On a file, a first vectorized pass finds the tuples that carry a RST and the facts about hosts; the
    second pass tracks only those tuples through the state machine. A stream is read once, tracking
    everything. ``two_pass`` forces one or the other (the tests compare both). ``collect_conns`` keeps
    every connection's conn.log record (one pass, every connection tracked). ``engine`` is the capture
    decoder's ("numba", "numpy", "python"); by default numpy for small files and numba otherwise.
    ``compiled_tracker`` says whether the second pass tracks with the compiled tracker
    (:mod:`whyrst.tcp.fasttrack`) or the Python one: by default the compiled one where its kernels load
    without numba (built ahead of time) or numba is loaded anyway (the numba engine); both give the same.

    The first pass of two skips TCP checksums (the prepass does not read them); the second decodes only
    the records that may belong to a RST tuple (a compiled look at the raw records picks them)."""
    from whyrst.capture import open_capture

    is_file = isinstance(source, (str, os.PathLike)) and str(source) != "-" and os.path.isfile(source)
    if collect_conns:
        two_pass = False
    if two_pass is None:
        two_pass = is_file
    if engine is None:
        engine = "numpy" if is_file and _is_small(source) else "auto"
    if _LEAN_NUMBA and engine in ("auto", "numba"):
        from whyrst import _aot

        if _aot.kernels() is None:  # numba itself will be loaded
            _load_numba_lean()
    prepass = new_prepass(engine, expected_bytes=os.path.getsize(source) if is_file else 0)
    reset_conns: list[Connection] = []
    conn_records: list[dict[str, Any]] = []

    def finished(conn: Connection) -> None:
        if conn.resets:
            reset_conns.append(conn)
        if collect_conns:
            conn_records.append(conn.zeek_record())

    warnings = Warnings()
    index = FlowIndex(os.fspath(source)) if two_pass and is_file else None
    try:
        with open_capture(source, warnings=warnings, engine=engine, checksums=not two_pass,
                          payloads=not two_pass) as cap:
            tracker = Tracker(finished, source_tag=str(cap.source).encode())
            tick = (lambda: progress(cap.packets, cap.bytes_read)) if progress is not None else None
            if two_pass:
                prepass.read(cap, index, tick)
            else:
                for batch in cap:
                    prepass.feed(batch)
                    tracker.feed(batch)
                    if tick is not None:
                        tick()
            name, fmt, packets = cap.source, cap.format, cap.packets
        prepass.finish()  # frees its hash tables before the second pass
        wanted = prepass.rst_hashes() if two_pass else None
        eviction_note = ""
        if wanted is not None and len(wanted):
            if compiled_tracker is None:
                from whyrst.tcp import fasttrack

                compiled_tracker = fasttrack.available(engine)
            if compiled_tracker:
                from whyrst.tcp.fasttrack import track_rst_flows

                tracked = track_rst_flows(_rst_flow_batches(source, index, prepass, engine),
                                          source_tag=str(name).encode())
                reset_conns.extend(tracked.reset_conns)
                eviction_note = tracked.eviction_note
            else:
                for batch in _rst_flow_batches(source, index, prepass, engine):
                    tracker.feed(batch)
    finally:
        if index is not None:
            index.close()
    tracker.close()
    if tracker.evicted:
        eviction_note = tracker.eviction_note()
    if eviction_note:
        warnings.warn(eviction_note)
    if prepass.forgotten:
        warnings.warn(f"the connection count is approximate: {prepass.forgotten} idle tuples were forgotten")
    if getattr(prepass, "hosts_forgotten", 0):
        warnings.warn(f"host facts (usual TTLs, probed ports) are approximate: {prepass.hosts_forgotten} entries "
                      f"of hosts seen once were forgotten (more than {prepass.max_hosts} distinct hosts)")

    hosts = host_view(prepass, prepass.first_ts)
    resets, ladders = explain_contexts(observe_contexts(reset_conns, hosts), hosts, keep_ladders)
    return Report(
        source=name, format=fmt, packets=packets, connections=prepass.connections,
        resets=resets, warnings=warnings.all(), ladders=ladders,
        conns=sorted(conn_records, key=lambda r: (r["ts"], r["uid"])),
    )


def _rst_flow_batches(source: Any, index: FlowIndex | None, prepass: Any, engine: str) -> Iterable[PacketBatch]:
    """The second pass: every packet of the flows that carry a RST, decoded, in capture order. From the
    first pass's index of the file when there is one (a few reads), else by reading the capture again
    (gzip), with a compiled look at the raw records first and the decoded rows filtered exactly. Checksums
    are checked for the RSTs (what their contexts keep), not the other segments."""
    from whyrst.capture import open_capture

    member = prepass.rst_member()
    if index is not None and index.usable:
        try:
            yield from index.batches(member, engine=engine, checksums="rst")
            return
        except StaleIndex:
            pass  # (nothing was handed out: the check comes before the first batch)
    with open_capture(source, warnings=Warnings(), engine=engine, checksums="rst",
                      select=prepass.record_filter()) as cap:
        for batch in cap:
            tcp = np.flatnonzero(batch.cols["kind"] == Kind.TCP)
            keep = np.zeros(batch.n, dtype=bool)
            # (the prepass's own look-up; np.isin would import numpy.ma, 16 ms, through np.unique)
            keep[tcp[member(flow_hashes(batch, tcp))]] = True
            if keep.any():
                yield batch.select(keep)


def host_view(prepass: Any, first_ts: int) -> HostView:
    """What the whole capture says about its hosts, from the prepass (before any RST is observed)."""
    return HostView(ttls=prepass.ttls, ports_probed=prepass.probe_counts, capture_start_ns=first_ts,
                    answered=getattr(prepass, "answered", None))


def observe_contexts(reset_conns: Iterable[Connection], hosts: HostView) -> list[ResetContext]:
    """Add what the connections' resets say about hosts to ``hosts``; their contexts in frame order."""
    contexts: list[ResetContext] = []
    for conn in reset_conns:
        observe_hosts(conn.resets, hosts)
        contexts.extend(conn.resets)
    contexts.sort(key=lambda c: c.rst.frame)
    return contexts


def explain_contexts(contexts: Iterable[ResetContext], hosts: HostView,
                     keep_ladders: bool = False) -> tuple[list[Reset], dict[int, list[dict[str, Any]]]]:
    """Each RST explained (contexts in frame order; a connection's RSTs read its earlier ones)."""
    resets = []
    ladders: dict[int, list[dict[str, Any]]] = {}
    first_by_side: dict[tuple[str, bool], tuple[int, Any]] = {}
    for ctx in contexts:
        uid, side = ctx.conn.uid, ctx.sender_is_orig
        mine, theirs = first_by_side.get((uid, side)), first_by_side.get((uid, not side))
        earlier = (*mine, True) if mine else (*theirs, False) if theirs else None
        ex = explain(ctx, hosts, earlier)
        if ex.cause != "injected":  # a forged RST is not the one later replies follow from
            first_by_side.setdefault((uid, side), (ctx.rst.frame, ex))
        rst = ctx.rst
        resets.append(Reset(
            frame=rst.frame, ts=rst.ts_ns / NS, src=ctx.src, sport=ctx.sport, dst=ctx.dst, dport=ctx.dport,
            uid=ctx.conn.uid, role=ex.role, sender=ex.sender, cause=ex.cause, confidence=ex.confidence,
            alternatives=[Alternative(c, p) for c, p in ex.alternatives], evidence=ex.evidence, fix=ex.fix,
            confirm=ex.confirm, flags=_flags_text(rst.flags), seq=rst.rel_seq, ack=rst.rel_ack, ttl=rst.ttl,
            payload_text=ex.payload_text, diagnostic=ex.diagnostic, evidence_frames=ex.evidence_frames,
        ))
        if keep_ladders:
            ladders[rst.frame] = ladder(ctx)
    return resets, ladders


_flags_text = cache(flags_text)  # (a RST has one of a few flag sets: each one's text made once)


def ladder(ctx: ResetContext) -> list[dict[str, Any]]:
    """The packets around a RST, for ladder diagrams: direction is from the client's point of view."""
    rows = []
    start = ctx.conn.start_ns
    seen = set()
    for p in [*ctx.before, ctx.rst, *ctx.after]:
        if p.frame in seen:
            continue
        seen.add(p.frame)
        rows.append({
            "frame": p.frame, "t": (p.ts_ns - start) / NS, "from_orig": p.from_orig, "flags": flags_text(p.flags),
            "seq": p.rel_seq, "ack": p.rel_ack, "len": p.payload_len, "ttl": p.ttl, "rst": p is ctx.rst,
        })
    return rows


def analyze_many(sources: Iterable[str], jobs: int | None = None, **options: Any) -> Any:
    """Many sources (files, directories, globs) analysed in parallel: one pandas DataFrame of resets
    (see :func:`whyrst.jobs.analyze_many`)."""
    from whyrst.jobs import analyze_many as _analyze_many

    return _analyze_many(sources, jobs, **options)

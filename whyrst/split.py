"""One large capture file analysed by several processes, with the result of a one-process run.

``analyze`` reads a file twice: a vectorized prepass over every packet (host facts, the flow hashes
that carry a RST, the connection count), then the rows of those flows only, through the tracker and
the explainer. Here the file is cut into byte ranges at record boundaries
(:mod:`whyrst.capture.ranges`) and the work goes in three rounds of calls (:mod:`whyrst.pool`):

1. each range through the prepass (:class:`~whyrst.tcp.prepass.CompiledPrepass`, from empty tables);
   the main process merges the ranges' tables into the one a pass over the whole file makes:
   RST-carrying flows and probes are unions, TTL counts are sums. Two things need more:

   * the Zeek-style connection count: a range's first packet of a flow, and its first bare SYN,
     count differently when the flow was seen before. The prepass's own table gives each range's
     last time and last SYN per flow; the first packets of the flows a range shares with earlier
     ranges are found in round 2, and the count is corrected then.
   * the order of the TTL table's slots: a host's TTL counter lists its TTLs in slot order, and of
     two equally frequent TTLs the first listed is the host's usual one. Linear probing puts every
     entry in the same run of occupied slots whatever the order of insertion, so the merged table has
     the same runs; only two tied entries of one host in the same run could come out in another
     order, and then the file is analysed by one process.

2. each partition of the flows (by flow hash) in one process: its rows read back range after range
   through the ranges' indexes from round 1 (only the RST-carrying flows' packets; every TCP packet
   when every connection is wanted), decoded with the RSTs' checksums and the frame numbers of the whole file,
   through its own :class:`~whyrst.tcp.track.Tracker`; and of the flows of the partition a range
   shares with earlier ranges, the first packets the connection count needs. Connections never
   share a flow, so a flow's connections come out as from one tracker fed everything, provided that
   nothing global intervened. Two things are: sweeps (they end connections whose timers fired, at
   the latest time seen; a later packet of the same flow would have ended them anyway when time only
   goes forward) and evictions (a full table). So partitions are used only when the file's
   timestamps never go backwards (round 1 says) and the connections stay below the table's size;
   otherwise one partition, which is exactly the one-process tracker. The resets' observations of
   hosts (ports refused, resets a server sent) are collected per partition and merged. (The main
   process merges the host facts, TTLs and probes, while the processes read.) Rows travel between
   processes neither way: a partition's process reads them from the file itself.
3. each partition's resets explained, in the process that tracked them, with the merged host facts;
   when the caller only writes the report as JSON, written as JSON text there too (the main process
   joins the texts: :class:`EncodedReport`).

Whenever a range does not read cleanly (a warning, a damaged block, cuts that were not record
boundaries, an index that could not be written), or the file is past the prepass's table limits
(where the one-process run forgets entries and its counts become approximate), the file is analysed
by one process instead: the result is then the one-process result by construction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import heapq
import itertools
import os
import pickle
import shutil
import tempfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from whyrst.capture.ranges import ByteRange, Plan, open_range, plan_ranges
from whyrst.errors import Warnings
from whyrst.pool import Call, meanwhile, progress, state
from whyrst.report.jsontext import EncodedReport, encode_report, encode_resets
from whyrst.tcp.prepass import distinct, run_starts

if TYPE_CHECKING:
    from whyrst.capture.index import IndexHandle

ROUND_WEIGHTS = (0.55, 0.4, 0.05)  # share of a file's bytes each round stands for, for progress
# ranges are at least this large (the environment may set it lower, for tests; the size of a file worth
# splitting at all is jobs.MIN_SPLIT)
MIN_RANGE = int(os.environ.get("WHYRST_SPLIT_RANGE_BYTES", 16 << 20))


def available() -> bool:
    """Whether files can be analysed in parts here (the compiled prepass and readers are needed)."""
    from whyrst.capture import fast

    return fast.available()


def plan(path: str, workers: int, exact: bool = False) -> Plan:
    """How ``path`` would be cut for ``workers`` processes: one range each. (Two each, meant to let one
    process's slower range be made up for by its second, were slower: each range's tables are built from
    empty, sent whole and merged, each first call of a process touches fresh memory, and each cut adds
    shared flows to round 2; on the 2M-packet bulk capture, 11 interleaved runs on two cores, medians:
    1.18 s against 1.11, and 1.91 CPU-s against 1.75.)"""
    return plan_ranges(path, max(2, workers), MIN_RANGE, exact=exact)


@functools.cache
def _limits() -> tuple[int, int, int]:
    """The one-process run's table limits: prepass tuples, prepass host entries, tracker connections. (Found
    by making a prepass and a tracker: 4.5 ms the first time, which round 1 hides, see _prepass_round.)"""
    from whyrst.tcp.prepass import new_prepass
    from whyrst.tcp.track import Tracker

    p = new_prepass("numba")
    return p.max_tuples, p.max_hosts, Tracker(lambda c: None).max_connections


def _kernels() -> Any:
    from whyrst.tcp.prepass import _kernel_module

    return _kernel_module()


# -- round 1: the prepass over one range -----------------------------------------------------------------

@dataclass
class RangeFacts:
    records: int
    format: str
    first_ts: int  # the range's first record's time (-1 when it has none)
    last_ts: int  # its last record's time (-1 when it has none)
    ordered: bool  # its records' times never go backwards
    problem: str  # why the range cannot be trusted to be whole records of the file ("" when it can)
    tcp: int  # TCP rows
    local: int  # connections the prepass counted in the range on its own
    rst: np.ndarray  # flow hashes that carry a RST (sorted)
    ends: tuple[np.ndarray, ...]  # per flow, sorted by hash: key, last time, last bare-SYN seq (-1: none)
    ttls: tuple[np.ndarray, ...]  # (address, TTL) entries: w0, w1, version << 8 | TTL, packets
    probes: tuple[np.ndarray, ...]  # bare-SYN probes: s0, s1, d0, d1, version << 16 | port
    answered: Any  # AnsweredPorts: when each server port answered SYNs
    index: IndexHandle | None = None  # where the range's TCP packets are, by flow (round 2 reads through it)


def prepass_range(r: ByteRange, store: str | None = None, parts: int = 1) -> RangeFacts:
    """Round 1 (in a worker): the prepass over ``r``, from empty tables; with ``store`` (a file name), also
    the range's index (see :mod:`whyrst.capture.index`) in ``parts`` partitions of the flows, its frame
    numbers counted from the range's start."""
    from whyrst.capture.index import FlowIndex
    from whyrst.tcp.prepass import new_prepass

    pre = new_prepass("numba", expected_bytes=r.end - r.start)
    trimmed = []
    forget = pre._forget_idle

    def forget_idle(now: int) -> None:  # (idle flows leave the table: their last times would be missing)
        trimmed.append(now)
        forget(now)

    pre._forget_idle = forget_idle  # type: ignore[method-assign]
    warnings = Warnings()
    index = FlowIndex(r.path, store, parts) if store is not None else None
    with open_range(r, frames_before=0, warnings=warnings, engine="numba", checksums=False, payloads=False) as cap:
        pre.read(cap, index, lambda: progress(cap.bytes_read))
        records, fmt = cap.packets, cap.format
        problem = cap.problem()
    if warnings.all():
        problem = problem or warnings.all()[0]
    if trimmed or pre.forgotten or getattr(pre, "hosts_forgotten", 0):
        problem = problem or "the prepass's tables reached their limits"
    # the prepass's own tables, read before finish() turns them into lookups
    key, used, ts, syn = pre._conns
    live = used.view(bool)
    order = np.argsort(key[live], kind="stable")
    ends = (key[live][order], ts[live][order], syn[live][order])
    w0, w1, vt, n, tused = pre._ttls
    tlive = tused.view(bool)
    ttls = (w0[tlive], w1[tlive], vt[tlive], n[tlive])
    s0, s1, d0, d1, vp, pused = pre._probes
    plive = pused.view(bool)
    probes = (s0[plive], s1[plive], d0[plive], d1[plive], vp[plive])
    handle = index.detach() if index is not None else None
    facts = RangeFacts(records, fmt, pre.first_ts, pre.last_ts, pre.ordered, problem, pre.tcp_packets,
                       pre.connections, pre.rst_hashes(), ends, ttls, probes, pre.answered,
                       handle if handle is not None and handle.usable else None)
    # (else the kernels' guards would keep the tables alive, and round 2 in this process would take fresh
    # memory where theirs could serve: a fresh page costs this VM about 5 µs)
    pre.drop_tables()
    return facts


# -- the merge -------------------------------------------------------------------------------------------

@dataclass
class Shared:
    """The flows a range shares with the ranges before it (sorted by hash), and their state there."""

    keys: np.ndarray
    last_ts: np.ndarray  # the flow's last time before the range
    last_syn: np.ndarray  # its last bare-SYN sequence number before the range (-1: none)
    has_syn: np.ndarray  # the range has a bare SYN of the flow


@dataclass
class Merged:
    """The whole file's prepass, put together from its ranges (the connection count needs round 2)."""

    packets: int
    format: str
    first_ts: int
    frames_before: list[int]
    local: int  # the ranges' own connection counts, summed
    shared: list[Shared | None]  # per range
    rst: np.ndarray
    ttl_table: tuple[np.ndarray, ...] | None  # live entries of the TTL table in slot order: w0, w1, vt, n
    ttl_entries: tuple[np.ndarray, ...]  # when the table is None: its entries sorted by key (for replay_ttls)
    tcp: int
    answered: Any = None  # AnsweredPorts of the whole file
    # per source of bare SYNs, how many distinct pairs it probed: s0, s1, version, count (what round 3 reads
    # of the probes: an eighth of their bytes to send to each process on a capture of short connections)
    probe_totals: tuple[np.ndarray, ...] = ()


class Fallback(Exception):
    """The file must be analysed by one process (the reason says why)."""


def merge(facts: list[RangeFacts]) -> Merged:
    merged = merge_flows(facts)
    merge_hosts(facts, merged)
    return merged


def merge_flows(facts: list[RangeFacts]) -> Merged:
    """What round 2 needs of the merge (its host facts come from :func:`merge_hosts`)."""
    max_tuples, _, _ = _limits()
    for i, f in enumerate(facts):
        if f.problem:
            raise Fallback(f"range {i + 1}: {f.problem}")
    frames_before = list(itertools.accumulate((f.records for f in facts), initial=0))[:-1]
    first_ts = next((f.first_ts for f in facts if f.records), -1)

    # each flow's state at the start of each range: its last time and last SYN in the ranges before
    keys, last_ts, last_syn = facts[0].ends[0], facts[0].ends[1].copy(), facts[0].ends[2].copy()
    shared: list[Shared | None] = [None]
    for f in facts[1:]:
        b_key, b_ts, b_syn = f.ends
        idx = np.searchsorted(keys, b_key)
        found = idx < len(keys)
        found[found] = keys[idx[found]] == b_key[found]
        at = idx[found]
        shared.append(Shared(b_key[found], last_ts[at].copy(), last_syn[at].copy(), b_syn[found] >= 0))
        last_ts[at] = b_ts[found]
        last_syn[at] = np.where(b_syn[found] >= 0, b_syn[found], last_syn[at])
        if not found.all():
            keys = np.concatenate([keys, b_key[~found]])
            last_ts = np.concatenate([last_ts, b_ts[~found]])
            last_syn = np.concatenate([last_syn, b_syn[~found]])
            order = np.argsort(keys, kind="stable")
            keys, last_ts, last_syn = keys[order], last_ts[order], last_syn[order]
        if len(keys) > max_tuples:
            raise Fallback("more distinct flows than the prepass's table holds")

    empty = (np.empty(0, dtype=np.uint64),)
    return Merged(packets=sum(f.records for f in facts), format=facts[0].format, first_ts=first_ts,
                  frames_before=frames_before, local=sum(f.local for f in facts), shared=shared,
                  rst=distinct(np.concatenate([f.rst for f in facts])), ttl_table=None, ttl_entries=empty,
                  tcp=sum(f.tcp for f in facts))


def merge_hosts(facts: list[RangeFacts], merged: Merged) -> None:
    """The host facts of the merge (probes, TTLs), into ``merged`` (only round 3 reads them)."""
    _, max_hosts, _ = _limits()
    distinct, merged.probe_totals = merge_probes([f.probes for f in facts])
    if distinct > max_hosts:
        raise Fallback("more probe entries than the prepass's table holds")
    merged.ttl_entries, merged.ttl_table = merge_ttls([f.ttls for f in facts], max_hosts)
    answered = facts[0].answered
    for f in facts[1:]:
        answered.merge(f.answered)
    if answered.forgotten:
        raise Fallback("more answering ports than the prepass's table holds")
    merged.answered = answered


def _merge_hosts_into(facts: list[RangeFacts], merged: Merged, hosts_file: str) -> None:
    merge_hosts(facts, merged)
    if merged.ttl_table is not None:  # (else the TTLs' order is found first, then it is written)
        _write_hosts(merged, hosts_file)


def _remove_indexes(stores: str, keep: str) -> None:
    """The ranges' index files, removed while round 3 runs (removing 88 MB of them, a 2M-packet capture's,
    took 6 ms, which the end of the job waited for)."""
    for name in os.listdir(stores):
        path = os.path.join(stores, name)
        if path != keep:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _write_hosts(merged: Merged, hosts_file: str) -> None:
    """What round 3 reads of the merge, in a file each process reads for itself (through the pipes, the
    main process sent them to one process after the other while both waited: 5 MB, a few hundredths of a
    second, on a 2M-packet capture of short connections)."""
    try:
        with open(hosts_file, "wb") as fh:
            pickle.dump((merged.ttl_table, merged.probe_totals, merged.answered, merged.first_ts), fh, protocol=5)
    except OSError as e:
        raise Fallback(f"the merged host facts could not be written: {e}") from e


def _read_hosts(hosts_file: str) -> Any:
    """The host view :func:`_write_hosts` left for round 3 (in a worker; its observations still to come)."""
    from whyrst.analysis import host_view

    with open(hosts_file, "rb") as fh:
        ttl_table, totals, answered, first_ts = pickle.load(fh)  # (written by this job's main process)
    return host_view(prepass_from(ttl_table=ttl_table, totals=totals, answered=answered), first_ts)


class NeedOrder(Exception):
    """The TTL table's slots depend on the order in which entries first appeared (see :func:`ttl_order`)."""


Table = tuple[np.ndarray, ...]


def _room(n: int) -> int:
    """The size of a table with room for ``n`` entries at half full."""
    from whyrst.tcp.prepass import MIN_SLOTS

    size = MIN_SLOTS
    while size < 2 * n:
        size *= 2
    return size


def merge_ttls(ttls: list[Table], max_hosts: int) -> tuple[Table, Table | None]:
    """The prepass's TTL table for the whole file (its live entries in slot order) when it follows from the
    ranges' entries (``ttls``: w0, w1, vt, n of each) alone: the same entries and counts, in slots that give
    every host's counter the order one process would have given it (see the module's description); else
    None, with the distinct (address, TTL) entries and their counts sorted by key (for :func:`replay_ttls`).

    The kernels put the ranges' entries into one table of row numbers and look for ties through another
    (the ranges of a 2M-packet capture of short connections, 133,000 entries: 6-7 ms, where sorting the
    entries, then the table's entries by host, took 25)."""
    k = _kernels()
    w0, w1, vt, n = (np.concatenate([t[j] for t in ttls]) for j in range(4))
    slots = np.zeros(_room(len(w0)), dtype=np.int32)
    sums = np.empty(len(w0), dtype=np.int64)
    total = int(k.merge_ttls(w0, w1, vt, n, slots, sums))
    if total > max_hosts:
        raise Fallback("more (address, TTL) entries than the prepass's table holds")
    # the table one process ends with: doubled whenever an insertion would take it past half full; when the
    # last insertion leaves it exactly half full, the next TCP packet (if any) doubles it again
    size = _room(total)
    if total and 2 * total == size:
        return _ttl_entries(ttls), None
    if size != len(slots):
        fewer = np.zeros(size, dtype=np.int32)
        k.rehash_ttl_rows(w0, w1, vt, slots, fewer)
        slots = fewer
    at = np.flatnonzero(slots)
    rows = slots[at] - 1
    table = (w0[rows], w1[rows], vt[rows], sums[rows])
    if k.tied_in_one_run(*table, at, size, np.zeros(size, dtype=np.int32)):
        return _ttl_entries(ttls), None
    return (), table


def _ttl_entries(ttls: list[Table]) -> Table:
    """The ranges' distinct (address, TTL) entries with their counts summed, sorted by key."""
    w0, w1, vt, n = (np.concatenate([t[j] for t in ttls]) for j in range(4))
    order = np.lexsort((vt, w1, w0))
    w0, w1, vt, n = w0[order], w1[order], vt[order], n[order]
    starts = np.flatnonzero(run_starts(w0, w1, vt))
    n = np.add.reduceat(n, starts) if len(n) else n
    return w0[starts], w1[starts], vt[starts], n


def _ttl_keys(batch: Any, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    src = np.ascontiguousarray(batch.src[rows]).view("<u8")
    vt = (batch.cols["ip_version"][rows].astype(np.uint64) << np.uint64(8)) | batch.cols["ttl"][rows].astype(np.uint64)
    return src[:, 0].copy(), src[:, 1].copy(), vt


def ttl_order(r: ByteRange) -> tuple[tuple[np.ndarray, ...], int]:
    """Round 1b (in a worker, only when needed): the (address, TTL) entries of ``r`` in the order they
    first appear (w0, w1, version << 8 | TTL, TCP row where it first appears), and its TCP rows."""
    from whyrst.capture.batch import RST, Kind
    from whyrst.tcp.prepass import _mix

    seen = np.empty(0, dtype=np.uint64)
    found: list[tuple[np.ndarray, ...]] = []
    tcp_before = 0
    with open_range(r, frames_before=0, engine="numba", checksums=False) as cap:
        for batch in cap:
            tcp = np.flatnonzero(batch.cols["kind"] == Kind.TCP)
            ordinal = np.arange(tcp_before, tcp_before + len(tcp), dtype=np.int64)
            tcp_before += len(tcp)
            keep = (batch.cols["flags"][tcp] & RST) == 0
            w0, w1, vt = _ttl_keys(batch, tcp[keep])
            with np.errstate(over="ignore"):
                h = _mix(_mix(w0 ^ np.uint64(0x9E3779B97F4A7C15)) ^ w1 ^ (vt << np.uint64(40)))
            _, first = np.unique(h, return_index=True)
            first = np.sort(first)
            new = ~np.isin(h[first], seen)
            first = first[new]
            seen = np.union1d(seen, h[first])
            found.append((w0[first], w1[first], vt[first], ordinal[keep][first]))
            progress(cap.bytes_read)
    cols = tuple(np.concatenate([f[j] for f in found]) if found else np.empty(0, dtype=np.uint64) for j in range(4))
    return cols, tcp_before


def replay_ttls(entries: tuple[np.ndarray, ...], orders: list[tuple[tuple[np.ndarray, ...], int]]
                ) -> tuple[np.ndarray, ...]:
    """The prepass's TTL table as one process builds it: the entries inserted in the order they first
    appear in the file, the table doubled (rehashed in slot order) when an insertion would take it past
    half full, and once more when the last insertion left it exactly half full and a TCP row follows."""
    from whyrst.tcp.prepass import MIN_SLOTS, CompiledPrepass

    k = _kernels()
    base = np.cumsum([0] + [tcp for _, tcp in orders[:-1]])
    w0 = np.concatenate([o[0][0] for o in orders])
    w1 = np.concatenate([o[0][1] for o in orders])
    vt = np.concatenate([o[0][2] for o in orders]).astype(np.uint64)
    at = np.concatenate([o[0][3] + b for o, b in zip(orders, base, strict=True)])
    order = np.lexsort((at, vt, w1, w0))
    w0, w1, vt, at = w0[order], w1[order], vt[order], at[order]
    firsts = run_starts(w0, w1, vt)
    w0, w1, vt, at = w0[firsts], w1[firsts], vt[firsts], at[firsts]
    e0, e1, evt, en = entries
    if not (np.array_equal(w0, e0) and np.array_equal(w1, e1) and np.array_equal(vt, evt.astype(np.uint64))):
        raise Fallback("the TTL entries' first appearances do not match their counts")
    seq = np.argsort(at, kind="stable")
    w0, w1, vt, n, at = w0[seq], w1[seq], evt[seq], en[seq], at[seq]
    total = len(w0)
    size = MIN_SLOTS
    table = CompiledPrepass._empty_ttls(size)
    done = 0
    while done < total:
        if done >= size // 2:  # the next insertion would take the table past half full
            new = CompiledPrepass._empty_ttls(2 * size)
            k.rehash_ttls(*table, *new)
            table, size = new, 2 * size
            continue
        upto = min(total, size // 2)
        # (the rehash kernel inserts entries in the order given, probing as the prepass does)
        k.rehash_ttls(w0[done:upto], w1[done:upto], vt[done:upto], n[done:upto],
                      np.ones(upto - done, dtype=np.uint8), *table)
        done = upto
    if total and 2 * total == size and int(at[-1]) < sum(tcp for _, tcp in orders) - 1:
        new = CompiledPrepass._empty_ttls(2 * size)
        k.rehash_ttls(*table, *new)
        table = new
    live = table[4].view(bool)
    return tuple(a[live] for a in table[:4])


def merge_probes(probes: list[Table]) -> tuple[int, Table]:
    """Of the ranges' bare-SYN probes (s0, s1, d0, d1, version << 16 | port: ``probes``, each range's), how
    many are distinct, and how many each source made (s0, s1, version, count): all that round 3 reads of
    them. (A kernel, through tables of row numbers: 8 ms for the 137,000 probes of the ranges of a 2M-packet
    capture of short connections, where their distinct rows sorted out, then counted, took 33.)"""
    s0, s1, d0, d1, vp = (np.concatenate([p[j] for p in probes]) for j in range(5))
    size = _room(len(s0))
    firsts, counts, found = np.empty(len(s0), dtype=np.int64), np.zeros(len(s0), dtype=np.int64), np.zeros(2, np.int64)
    _kernels().probe_totals(s0, s1, d0, d1, vp, np.zeros(size, dtype=np.int32), np.zeros(size, dtype=np.int32),
                            firsts, counts, found)
    firsts = firsts[:found[1]]
    return int(found[0]), (s0[firsts], s1[firsts], vp[firsts] >> np.uint32(16), counts[:found[1]])


def prepass_from(ttl_table: tuple[np.ndarray, ...] | None = None, rst: np.ndarray | None = None, connections: int = 0,
                 tcp: int = 0, answered: Any = None, totals: tuple[np.ndarray, ...] | None = None) -> Any:
    """A finished :class:`~whyrst.tcp.prepass.CompiledPrepass` holding merged tables: its ``ttls``,
    ``probe_counts``, ``rst_hashes()``, ``record_filter()`` and ``connections`` read as after a whole-file pass.
    (Its lookups read the tables' live entries in slot order, so the live entries are enough.)"""
    from whyrst.tcp import _prepass_layout as lay
    from whyrst.tcp.prepass import CompiledPrepass

    pre = CompiledPrepass()
    if ttl_table is not None:
        pre._ttls = (*ttl_table, np.ones(len(ttl_table[0]), dtype=np.uint8))
        pre.stats[lay.ST_TTLS] = len(ttl_table[0])
    if totals is not None:  # (the prepass's probes counted per source: all that is read of them then)
        pre._probe_totals = totals
    if rst is not None:
        pre._rsts = key_table(rst)
        pre.stats[lay.ST_RSTS] = len(rst)
    if answered is not None:
        pre.answered = answered
    pre.stats[lay.ST_CONNECTIONS] = connections
    pre.stats[lay.ST_TCP] = tcp
    pre.finish()
    return pre


def key_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An open-addressing set of flow hashes, as the prepass's record filter reads it."""
    size = _room(len(keys) + 1)
    table, used = np.zeros(size, dtype=np.uint64), np.zeros(size, dtype=np.uint8)
    empty = np.empty(0, dtype=np.int64)
    _kernels().insert_keys(np.ascontiguousarray(keys, dtype=np.uint64), table, used, empty, empty, empty, empty)
    return table, used


# -- round 2: each partition's rows, read from every range's index, through its own tracker -----------------

@dataclass
class PartSource:
    """One range as a partition reads it: where its TCP packets are (its index from round 1), the number of
    frames before it, and the flows of the partition it shares with the ranges before it (None: none)."""

    index: IndexHandle
    frames_before: int
    shared: Shared | None


@dataclass
class Tracked:
    observations: dict[str, dict[Any, Any]]  # what the resets said about hosts (HostView fields)
    finished: int  # connections the tracker made
    evicted: int
    conns: list[dict[str, Any]]  # conn.log records (when wanted)
    resets: int
    count_delta: int  # the correction of the ranges' own connection counts for the partition's shared flows
    problem: str  # why the partition cannot be trusted ("" when it can)


def partition(shared: Shared | None, part: int, parts: int) -> Shared | None:
    """The flows of ``shared`` in partition ``part`` of ``parts`` (flows go to partitions by hash)."""
    if shared is None or parts == 1:
        return shared
    from whyrst.capture.index import partition_of

    sel = partition_of(shared.keys, parts) == np.uint64(part)
    return Shared(shared.keys[sel], shared.last_ts[sel], shared.last_syn[sel], shared.has_syn[sel])


def track_part(job: Any, part: int, parts: int, sources: list[PartSource], wanted: np.ndarray | None,
               source_tag: bytes, with_conns: bool) -> Tracked:
    """Round 2 (in a worker): the TCP rows of the flows of partition ``part`` (those in ``wanted``; every
    flow when None), read range after range through the ranges' indexes, decoded (the RSTs' checksums checked) as the
    one-process second pass decodes them, through one tracker (:mod:`whyrst.tcp.fasttrack`'s); and for the
    partition's shared flows, what the connection count depends on (see :func:`_firsts`). The reset
    contexts stay in this process for :func:`explain_part`."""
    from whyrst.analysis import observe_contexts
    from whyrst.capture.batch import ACK, SYN, Kind, PacketBatch
    from whyrst.capture.index import FlowIndex
    from whyrst.causes.features import HostView
    from whyrst.tcp import fasttrack
    from whyrst.tcp.fasttrack import track_rst_flows
    from whyrst.tcp.prepass import INACTIVITY_NS, flow_hashes, table_member
    from whyrst.tcp.track import Connection, Tracker

    in_wanted = table_member(*key_table(wanted)) if wanted is not None else None

    def mine(hashes: np.ndarray) -> np.ndarray:  # (the partition's index files hold only its flows)
        return in_wanted(hashes) if in_wanted is not None else np.ones(len(hashes), dtype=bool)

    delta, problem = 0, ""

    def batches() -> Iterator[PacketBatch]:
        """The partition's rows, range after range; what the count needs is worked out on the way."""
        nonlocal delta, problem
        for src in sources:
            shared = src.shared
            n_shared = len(shared.keys) if shared is not None else 0
            seen = np.zeros(n_shared, dtype=bool)
            done = np.zeros(n_shared, dtype=bool)
            first_ts, first_sq, later_syn, prev_ts = (np.full(n_shared, -1, dtype=np.int64) for _ in range(4))
            member = _with_shared_firsts(mine, shared) if shared is not None and n_shared else mine
            # one partition of one: every partition of the index, merged in capture order
            if parts != 1 and src.index.parts != parts:
                raise ValueError(f"the index has {src.index.parts} partitions, not {parts}")
            opened = FlowIndex.attach(src.index, range(src.index.parts) if parts == 1 else (part,))
            try:
                for batch in opened.batches(member, engine="numba", checksums="rst"):
                    batch.cols["frame"] += src.frames_before  # (the index numbers the range's records from 1)
                    tcp = np.flatnonzero(batch.cols["kind"] == Kind.TCP)
                    h = flow_hashes(batch, tcp)
                    if n_shared and not done.all():
                        assert shared is not None
                        _firsts(batch, tcp, h, shared, seen, first_ts, first_sq, later_syn, prev_ts, done,
                                INACTIVITY_NS, SYN, ACK)
                        if in_wanted is not None:  # (rows read only for the count)
                            keep = np.zeros(batch.n, dtype=bool)
                            keep[tcp[in_wanted(h)]] = True
                            batch = batch.select(keep)
                    yield batch
            finally:
                opened.close()
            if n_shared:
                assert shared is not None
                if not done.all():
                    problem = problem or "a flow the prepass saw in the range was not found again"
                delta += _count_delta(shared, first_ts, first_sq, later_syn)

    records: list[dict[str, Any]] = []
    if with_conns:  # every connection's record: the Python tracker, which hands over every one
        reset_conns: list[Connection] = []

        def finished(conn: Connection) -> None:
            if conn.resets:
                reset_conns.append(conn)
            records.append(conn.zeek_record())

        tracker = Tracker(finished, source_tag=source_tag)
        for batch in batches():
            tracker.feed(batch)
        tracker.close()
        made, evicted = len(records), tracker.evicted
    else:
        tracked = track_rst_flows(batches(), source_tag=source_tag, compiled=fasttrack.available("numba"))
        reset_conns, made, evicted = tracked.reset_conns, tracked.made, tracked.evicted
    seen_hosts = HostView()
    contexts = observe_contexts(reset_conns, seen_hosts)
    state()[(job, part)] = contexts
    import gc

    gc.freeze()  # (kept until round 3: the collector need not walk them meanwhile)
    return Tracked(_observations(seen_hosts), made, evicted, records, len(contexts), delta, problem)


def _with_shared_firsts(member: Callable[[np.ndarray], np.ndarray], shared: Shared
                        ) -> Callable[[np.ndarray], np.ndarray]:
    """``member`` (the wanted flows) plus what :func:`_firsts` reads of the shared flows: each one's first
    row in the range, and every row of those whose range has a bare SYN (their first bare SYN and the
    row before it). The index is read in order, a block at a time, so "first" is kept across calls.

    Without this, every row of every shared flow would be read and decoded: with long connections, most
    of a range's packets (a range's first packets belong to the flows open when it starts)."""
    from whyrst.tcp.prepass import table_member

    keys, every_row = shared.keys, shared.has_syn
    seen = np.zeros(len(keys), dtype=bool)
    is_shared = table_member(*key_table(keys))  # (compiled look-ups first: few of a block's rows are shared)
    unseen = len(keys)
    every = bool(every_row.any())

    def with_firsts(hashes: np.ndarray) -> np.ndarray:
        nonlocal unseen
        if not unseen and not every:  # (every first row found: the shared flows open a range, mostly in its
            return member(hashes)     # first block; 240 of round 2's 600 look-ups of the 2M bulk capture)
        keep = member(hashes).copy()
        rows = np.flatnonzero(is_shared(hashes))
        k = np.searchsorted(keys, hashes[rows])
        keep[rows[every_row[k]]] = True
        flows, first = np.unique(k, return_index=True)
        new = ~seen[flows]
        keep[rows[first[new]]] = True
        seen[flows] = True
        unseen -= int(np.count_nonzero(new))
        return keep

    return with_firsts


def _firsts(batch: Any, tcp: np.ndarray, h: np.ndarray, shared: Shared, seen: np.ndarray, first_ts: np.ndarray,
            first_sq: np.ndarray, later_syn: np.ndarray, prev_ts: np.ndarray, done: np.ndarray, inactivity: int,
            syn_flag: int, ack_flag: int) -> None:
    """For shared flows not settled yet: the range's first packet (time, bare-SYN seq) and, when that is
    not a bare SYN and the range has one, its first bare SYN (counted as the prepass counts: not when it
    comes after the flow's inactivity timeout, which starts a connection anyway)."""
    idx = np.searchsorted(shared.keys, h)
    ok = idx < len(shared.keys)
    ok[ok] = shared.keys[idx[ok]] == h[ok]
    rows, idx = tcp[ok], idx[ok]
    if not len(rows):
        return
    flags = batch.cols["flags"][rows].astype(np.int64)
    bare = ((flags & syn_flag) != 0) & ((flags & ack_flag) == 0)
    seqs = np.where(bare, batch.cols["seq"][rows].astype(np.int64), -1).tolist()
    times = batch.cols["ts_ns"][rows].astype(np.int64).tolist()
    has_syn = shared.has_syn
    for k, t, sq in zip(idx.tolist(), times, seqs, strict=True):
        if done[k]:
            continue
        if not seen[k]:
            seen[k] = True
            first_ts[k], first_sq[k], prev_ts[k] = t, sq, t
            if sq >= 0 or not has_syn[k]:
                done[k] = True
        elif sq >= 0:
            p = int(prev_ts[k])
            later_syn[k] = sq if not (p < 0 or t - p >= inactivity) else -1
            done[k] = True
        else:
            prev_ts[k] = t


def _count_delta(shared: Shared, b_first_ts: np.ndarray, b_first_sq: np.ndarray, b_later: np.ndarray) -> int:
    """How the shared flows change the ranges' own connection counts: a range's first packet of a flow, or
    its first bare SYN, starts a connection only if it would have in a pass over the whole file."""
    from whyrst.tcp.prepass import INACTIVITY_NS

    a_ts, a_syn = shared.last_ts, shared.last_syn
    new_first = (a_ts < 0) | (b_first_ts - a_ts >= INACTIVITY_NS) | (
        (b_first_sq >= 0) & (a_syn >= 0) & (b_first_sq != a_syn))
    syn_later = (b_later >= 0) & (a_syn >= 0) & (b_later != a_syn)
    return int(np.count_nonzero(new_first)) - len(shared.keys) + int(np.count_nonzero(syn_later))


# -- round 3: explaining, per partition --------------------------------------------------------------------

def _observations(view: Any) -> dict[str, dict[Any, Any]]:
    """The fields of a HostView that observing resets filled (mappings to sets, lists or counters)."""
    from whyrst.causes.features import HostView

    fresh = HostView()
    out = {}
    for f in dataclasses.fields(HostView):
        value = getattr(view, f.name)
        if isinstance(value, dict) and value != getattr(fresh, f.name):
            out[f.name] = dict(value)
    return out


def _merge_observations(parts: list[dict[str, dict[Any, Any]]]) -> dict[str, dict[Any, Any]]:
    from whyrst.causes.features import HostView

    fresh = HostView()
    merged: dict[str, dict[Any, Any]] = {}
    for obs in parts:
        for name, mapping in obs.items():
            into = merged.setdefault(name, getattr(fresh, name))
            for key, value in mapping.items():
                have = into[key] if isinstance(into, defaultdict) else into.setdefault(key, type(value)())
                if isinstance(have, set):
                    have |= value
                elif isinstance(have, list):
                    have.extend(value)
                elif isinstance(have, Counter):
                    have.update(value)
                else:
                    raise TypeError(f"HostView.{name}: cannot merge {type(value).__name__} values")
    return merged


def explain_part(job: Any, part: int, hosts_file: str | None, observations: dict[str, dict[Any, Any]],
                 keep_ladders: bool, encode: bool = False, indent: int | None = None) -> tuple[list[Any], Any]:
    """Round 3 (in the worker that tracked the partition): its resets explained with the whole file's
    host facts (``hosts_file``: where :func:`_write_hosts` left them, named with the first partition of each
    process; the others find them in the process). Returned as the resets and their ladders, or with
    ``encode`` as their frames and their JSON texts (see :class:`EncodedReport`)."""
    import gc

    from whyrst.analysis import explain_contexts

    contexts = state().pop((job, part), None)
    if contexts is None:
        raise RuntimeError("the partition's tracked connections are not in this process")
    view = state().get((job, "hosts"))
    if view is None:
        if hosts_file is None:
            raise RuntimeError("the host facts are not in this process")
        view = _read_hosts(hosts_file)
        for name, mapping in observations.items():
            setattr(view, name, mapping)
        state()[(job, "hosts")] = view
    try:
        resets, ladders = explain_contexts(contexts, view, keep_ladders)
        if encode:
            return [r.frame for r in resets], encode_resets(resets, indent)
        return resets, ladders
    finally:
        if not any(k[0] == job and k[1] != "hosts" for k in state() if isinstance(k, tuple)):
            state().pop((job, "hosts"), None)
            gc.unfreeze()  # the job's last partition here: what it kept may go


def forget_part(job: Any, part: int) -> None:
    state().pop((job, part), None)


# -- one process, for the fallback ------------------------------------------------------------------------

def analyze_whole(path: str, with_conns: bool, keep_ladders: bool, encode: bool = False,
                  indent: int | None = None) -> Any:
    from whyrst.analysis import analyze

    report = analyze(path, collect_conns=with_conns, keep_ladders=keep_ladders,
                     progress=lambda packets, nbytes: progress(nbytes))
    return encode_report(report, indent) if encode else report


# -- the job ---------------------------------------------------------------------------------------------

_JOBS = itertools.count()


def split_job(path: str, workers: int, *, with_conns: bool = False, keep_ladders: bool = False,
              priority: int = 0, note: Callable[[str], None] | None = None,
              first_plan: Plan | None = None, encode: bool = False, indent: int | None = None
              ) -> Iterator[list[Call]]:
    """The analysis of ``path`` in parts, as a :mod:`whyrst.pool` job; its result is a
    :class:`~whyrst.analysis.Report` equal to ``analyze(path)``'s (with ``collect_conns=with_conns``), or
    with ``encode`` an :class:`EncodedReport` of it (its JSON made by the workers, with ``indent``). The
    ranges' indexes live in a temporary folder of the job's, removed when it ends (however it ends)."""
    stores = tempfile.mkdtemp(prefix="whyrst-split-")
    try:
        return (yield from _split_rounds(path, workers, stores, with_conns=with_conns, keep_ladders=keep_ladders,
                                         priority=priority, note=note, first_plan=first_plan, encode=encode,
                                         indent=indent))
    finally:
        shutil.rmtree(stores, ignore_errors=True)


def _split_rounds(path: str, workers: int, stores: str, *, with_conns: bool, keep_ladders: bool, priority: int,
                  note: Callable[[str], None] | None, first_plan: Plan | None, encode: bool, indent: int | None
                  ) -> Iterator[list[Call]]:
    from whyrst.analysis import Report

    note = note or (lambda text: None)
    job = (os.getpid(), next(_JOBS))
    size = os.path.getsize(path)
    weights = [int(size * w) for w in ROUND_WEIGHTS]

    def whole(why: str) -> Iterator[list[Call]]:
        note(f"{path}: analysed in one process: {why}")
        calls = yield [Call(analyze_whole, (path, with_conns, keep_ladders, encode, indent), weight=size,
                            priority=priority)]
        return calls[0].result()

    p = first_plan or plan(path, workers)
    if len(p.ranges) < 2:
        return (yield from whole(p.reason or "too small to split"))
    note(f"{path}: {len(p.ranges)} ranges")

    # round 1
    parts = max(1, workers)  # (partitions of the flows for round 2, one a process: the indexes are written so)
    facts = yield from _prepass_round(p, weights[0], priority, stores, parts)
    if isinstance(facts, str):
        if any(r.frames_before < 0 for r in p.ranges):  # cuts found by resynchronising: walk every record
            note(f"{path}: {facts}; walking every record to cut it again")
            p = plan(path, workers, exact=True)
            if len(p.ranges) < 2:
                return (yield from whole(p.reason or facts))
            facts = yield from _prepass_round(p, 0, priority, stores, parts)
        if isinstance(facts, str):
            return (yield from whole(facts))
    try:
        merged = merge_flows(facts)
    except Fallback as e:
        return (yield from whole(str(e)))
    hosts_file = os.path.join(stores, "hosts")
    hosts_merged = meanwhile(_merge_hosts_into, facts, merged, hosts_file)  # (while the processes read round 2)

    # round 2
    missing = next((i for i, f in enumerate(facts) if f.index is None), None)
    if missing is not None:  # (its store could not be written: a full disk)
        return (yield from whole(f"range {missing + 1}: its index could not be written"))
    wanted = None if with_conns else merged.rst
    with_records = [f for f in facts if f.records]
    ordered = all(f.ordered for f in with_records) and all(
        a.last_ts <= b.first_ts for a, b in itertools.pairwise(with_records))
    if not ordered:
        note(f"{path}: one tracker (time goes backwards)")
        parts = 1
    tag = path.encode()
    calls = yield [Call(track_part, (job, i, parts, [PartSource(f.index, fb, partition(sh, i, parts))
                                                     for f, fb, sh in zip(facts, merged.frames_before,
                                                                          merged.shared, strict=True)],
                                     wanted, tag, with_conns),
                        weight=weights[1] // parts, priority=priority) for i in range(parts)]
    tracked: list[Tracked] = [c.value for c in calls if c.ok]
    failed = next((c.error or c.value.problem for c in calls if not c.ok or c.value.problem), "")
    _, _, max_conns = _limits()
    if not failed and (sum(t.evicted for t in tracked) or sum(t.finished for t in tracked) >= max_conns):
        failed = "the connection table would have filled"
    try:
        if failed:
            raise Fallback(failed)
        hosts_merged.result()
        if merged.ttl_table is None:  # the order in which TTLs first appear decides: find it
            note(f"{path}: tied TTLs: finding the order in which they first appear")
            orders = yield [Call(ttl_order, (r,), priority=priority) for r in p.ranges]
            failed = next((c.error for c in orders if not c.ok), "")
            if failed:
                raise Fallback(failed)
            merged.ttl_table = replay_ttls(merged.ttl_entries, [c.value for c in orders])
            _write_hosts(merged, hosts_file)
    except Fallback as e:
        yield [Call(forget_part, (job, i), worker=c.ran_on) for i, c in enumerate(calls) if c.ok]
        return (yield from whole(str(e)))
    count = merged.local + sum(t.count_delta for t in tracked)
    workers_of = [c.ran_on for c in calls]
    meanwhile(_remove_indexes, stores, hosts_file)  # (no one reads them again)

    # round 3
    observations = _merge_observations([t.observations for t in tracked])
    sent: set[int] = set()
    explain_calls = []
    for i in range(parts):
        first = workers_of[i] not in sent
        sent.add(workers_of[i])
        explain_calls.append(Call(explain_part, (job, i, hosts_file if first else None, observations if first else {},
                                                 keep_ladders, encode, indent),
                                  worker=workers_of[i], weight=weights[2] // parts, priority=priority))
    calls = yield explain_calls
    failed = next((c.error for c in calls if not c.ok), "")
    if failed:
        return (yield from whole(failed))
    if encode:
        texts = [t for _, t in heapq.merge(*(zip(*c.value, strict=True) for c in calls), key=lambda ft: ft[0])]
        return EncodedReport(path, merged.format, merged.packets, count, texts, [], indent)
    resets = list(heapq.merge(*(c.value[0] for c in calls), key=lambda r: r.frame))
    ladders: dict[int, Any] = {}
    for c in calls:
        ladders.update(c.value[1])
    conns = sorted(itertools.chain.from_iterable(t.conns for t in tracked), key=lambda r: (r["ts"], r["uid"]))
    return Report(source=path, format=merged.format, packets=merged.packets, connections=count,
                  resets=resets, warnings=[], ladders=ladders, conns=conns)


def _prepass_round(p: Plan, weight: int, priority: int, stores: str | None, parts: int = 1
                   ) -> Iterator[list[Call]]:
    """Round 1 over a plan's ranges: their facts, or why they cannot be trusted. Their indexes go into the
    folder ``stores`` (None: no index), in ``parts`` partitions."""
    def store(i: int) -> str | None:
        return os.path.join(stores, f"range-{i}.index") if stores is not None else None

    meanwhile(_limits)  # (the merge reads them as soon as the round ends)
    calls = yield [Call(prepass_range, (r, store(i), parts), weight=weight * r.size // max(p.size, 1),
                        priority=priority) for i, r in enumerate(p.ranges)]
    for i, c in enumerate(calls):
        if not c.ok:
            return f"range {i + 1}: {c.error}"
        if c.value.problem:
            return f"range {i + 1}: {c.value.problem}"
    return [c.value for c in calls]


def analyze_split(path: str, workers: int = 2, *, with_conns: bool = False, keep_ladders: bool = False,
                  pool: Any = None, exact: bool = False, notes: list[str] | None = None) -> Any:
    """``analyze(path)`` by ``workers`` processes (a :class:`whyrst.pool.Pool` of them, or ``pool``)."""
    from whyrst.pool import Pool

    own = pool is None
    pool = pool or Pool(workers)
    try:
        note = notes.append if notes is not None else None
        first = plan(path, workers, exact=True) if exact else None
        job = split_job(path, workers, with_conns=with_conns, keep_ladders=keep_ladders, note=note,
                        first_plan=first)
        ((_, ok, value),) = list(pool.run([(path, job)]))
    finally:
        if own:
            pool.close()
    if not ok:
        raise RuntimeError(value)
    return value

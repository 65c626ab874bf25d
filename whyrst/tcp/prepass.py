"""A vectorized look at every TCP packet, batch by batch: the facts about hosts that the catalog reads
(their usual TTL, the ports each source probed), which 4-tuples ever carry a RST, and how many
connections the capture holds.

``analyze`` uses it two ways. On a file it runs this pass first and then tracks, packet by packet, only
the connections of tuples that carry a RST (the rest never need the state machine). On a stream it runs
alongside the full tracker. Either way the host facts come from here, so both give the same answers.

Two implementations give the same results: :class:`CompiledPrepass` (numba kernels over hash tables, in
:mod:`whyrst.tcp._prepass_kernels`; it also filters the second pass's raw records before they are
decoded) and :class:`NumpyPrepass` (numpy and dicts, used without numba, and the reference the tests
compare the compiled one with). :func:`new_prepass` picks one.
"""

from __future__ import annotations

import copy
import ipaddress
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import numpy as np

from whyrst.capture.batch import (
    ACK,
    AF_INET,
    AF_INET6,
    COLUMNS,
    FIN,
    RST,
    SYN,
    Kind,
    PacketBatch,
    address_text,
    inet_pton,
)
from whyrst.capture.index import COLUMNS as INDEX_COLUMNS
from whyrst.capture.index import sorted_member

if TYPE_CHECKING:
    from whyrst.capture.index import FlowIndex
    from whyrst.capture.records import Records

INACTIVITY_NS = 300 * 1_000_000_000  # Zeek's tcp_inactivity_timeout: a longer silence starts a new connection
# Entries each host table may hold ((address, TTL) pairs; (source, destination, port) probes). A spoofed SYN
# flood brings a new source address with every packet: past this, single-packet sources are forgotten (one
# packet says little about a host's usual TTL, and a source needs several probes to look like a scan).
# A quarter of a million hosts is more than any capture of real clients has sent more than one packet
# from, and keeps the tables (open addressing, at most half full, doubled as they grow) near 30 MB each.
MAX_HOSTS = 250_000

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def run_starts(*cols: np.ndarray) -> np.ndarray:
    """Which rows of columns sorted together start a run of equal rows (a mask; empty for no rows)."""
    if not len(cols[0]):
        return np.zeros(0, dtype=bool)
    change = np.zeros(len(cols[0]) - 1, dtype=bool)
    for c in cols:
        change |= c[1:] != c[:-1]
    return np.r_[True, change]


def distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a 1-D array (structured ones included). (numpy's own asks ``np.ma`` whether
    the array is masked, and the first such question imports numpy.ma: 16 ms of a small capture's analysis,
    or of the main process's time between the rounds of a split one.)"""
    values = np.sort(values)
    return values[run_starts(values)]


def is_in(values: np.ndarray, choices: np.ndarray) -> np.ndarray:
    """``np.isin(values, choices)``, by binary search in the sorted choices (numpy's own goes through
    ``np.unique``, which imports numpy.ma, as :func:`distinct` says)."""
    return sorted_member(np.sort(choices))(values)


def _mix(x: np.ndarray) -> np.ndarray:
    # splitmix64 finaliser: spreads every input bit over the 64-bit hash
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def flow_hashes(batch: PacketBatch, rows: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's canonical 5-tuple: the same for both directions of a connection."""
    src = batch.src[rows].view("<u8")
    dst = batch.dst[rows].view("<u8")
    sport = batch.cols["sport"][rows].astype(np.uint64)
    dport = batch.cols["dport"][rows].astype(np.uint64)
    # order the two endpoints so both directions hash alike
    a_first = (src[:, 0] < dst[:, 0]) | ((src[:, 0] == dst[:, 0]) & (
        (src[:, 1] < dst[:, 1]) | ((src[:, 1] == dst[:, 1]) & (sport <= dport))))
    lo_hi = np.where(a_first, src[:, 0], dst[:, 0])
    lo_lo = np.where(a_first, src[:, 1], dst[:, 1])
    hi_hi = np.where(a_first, dst[:, 0], src[:, 0])
    hi_lo = np.where(a_first, dst[:, 1], src[:, 1])
    ports = np.where(a_first, (sport << np.uint64(16)) | dport, (dport << np.uint64(16)) | sport)
    with np.errstate(over="ignore"):
        h = _mix(lo_hi ^ np.uint64(0x9E3779B97F4A7C15))
        for part in (lo_lo, hi_hi, hi_lo, ports | (batch.cols["ip_version"][rows].astype(np.uint64) << np.uint64(40))):
            h = _mix(h ^ part)
    return h


def port_keys(batch: PacketBatch, rows: np.ndarray, src: bool = True) -> np.ndarray:
    """A 64-bit key per row for one end of the connection (address and port; the source end by default)."""
    words = (batch.src if src else batch.dst)[rows].view("<u8")
    port = batch.cols["sport" if src else "dport"][rows].astype(np.uint64)
    with np.errstate(over="ignore"):
        return _mix(_key64(batch.cols["ip_version"][rows], words[:, 0], words[:, 1]) ^ (port << np.uint64(44)))


def port_key(addr: str, port: int) -> int | None:
    """:func:`port_keys` of one address text and port (None: not an address)."""
    parsed = _parse_addr(addr)
    return None if parsed is None else _mix_int(_key64_int(*parsed) ^ (port << 44))


class _LatestTimes:
    """64-bit key -> the latest time seen, in sorted numpy arrays (updated a batch at a time, no Python
    loop per key): new keys wait in a list and are merged in when it grows."""

    def __init__(self) -> None:
        self.keys = np.empty(0, dtype=np.uint64)
        self.times = np.empty(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_rows = 0

    def __getstate__(self) -> dict[str, object]:
        # Sent to another process (a range's facts, for the merge), it goes merged: in the sender, which
        # is one of several, rather than in the one process that merges every range.
        self._flush()
        return self.__dict__

    def __len__(self) -> int:
        self._flush()
        return len(self.keys)

    def longer_than(self, n: int) -> bool:
        """``len(self) > n``, without merging the waiting keys in when they cannot take it past ``n``."""
        return len(self.keys) + self._pending_rows > n and len(self) > n

    def update(self, keys: np.ndarray, times: np.ndarray) -> None:
        """Distinct ``keys`` (sorted) with their latest ``times``."""
        if len(self.keys):
            at = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
            known = self.keys[at] == keys
            np.maximum.at(self.times, at[known], times[known])
            keys, times = keys[~known], times[~known]
        if len(keys):
            self._pending.append((keys, times))
            self._pending_rows += len(keys)
            if self._pending_rows > max(65536, len(self.keys)):
                self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        keys = np.concatenate([self.keys, *(k for k, _ in self._pending)])
        times = np.concatenate([self.times, *(t for _, t in self._pending)])
        self._pending, self._pending_rows = [], 0
        # sorted runs one after another: a stable sort merges them in linear time (a lexsort by key and time
        # took six times as long: 15 ms for the 69,000 keys of a 2M-packet capture's two ranges)
        order = np.argsort(keys, kind="stable")
        keys, times = keys[order], times[order]
        starts = np.flatnonzero(run_starts(keys))
        self.keys, self.times = keys[starts], np.maximum.reduceat(times, starts)

    def get(self, key: int, default: int = -1) -> int:
        best = default
        k = np.uint64(key)
        for keys, times in ((self.keys, self.times), *self._pending):
            i = int(np.searchsorted(keys, k))
            if i < len(keys) and keys[i] == k:
                best = max(best, int(times[i]))
        return best

    def keep(self, wanted: np.ndarray) -> None:
        """Only the keys in ``wanted``."""
        self._flush()
        mask = is_in(self.keys, wanted)
        self.keys, self.times = self.keys[mask], self.times[mask]

    def as_dict(self) -> dict[int, int]:
        self._flush()
        return dict(zip(self.keys.tolist(), self.times.tolist(), strict=True))


class AnsweredPorts:
    """When each server address and port answered SYNs, closed connections and refused SYNs.

    * ``table``: per port, the first and last time it sent a SYN-ACK, and how many;
    * ``last_close``: per port, the latest time it sent a FIN or a RST that was not a refusal;
    * ``refusals``: per refusal (a RST,ACK with seq 0, as a stack or a REJECT rule answers a SYN), the
      latest SYN-ACK and close of that port before it (-1: none).

    A port that opened a connection after its last close, refused one, and answers again later has a
    socket listening all along: the refusal was a filter's choice. A port that closed its last
    connection just before refusing had nothing listening for a moment (a service restarting).

    Ports are 64-bit keys (:func:`port_keys`); the few look-ups (the servers of refused SYNs) compute the
    key from the address text. Times are maxima over the rows so far, so ranges of a file analysed apart
    merge exactly (:meth:`merge`). Bounded like the host tables: past ``max_entries`` ports, those answered
    once are forgotten first; past ``max_closes`` closing ports, those that never answered; past
    ``MAX_REFUSALS`` refusals, later ones are not recorded."""

    MAX_REFUSALS = 100_000

    def __init__(self, max_entries: int = MAX_HOSTS) -> None:
        self.table: dict[int, tuple[int, int, int]] = {}
        self.last_close = _LatestTimes()
        self.refusals: dict[tuple[int, int, int], tuple[int, int]] = {}
        self.max_entries = max_entries
        self.max_closes = max(max_entries // 4, 1024)
        self.forgotten = 0
        self.refusals_dropped = 0

    @staticmethod
    def _latest(keys: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distinct keys with their earliest time, latest time and count."""
        order = np.argsort(keys, kind="stable")
        k, t = keys[order], ts[order]
        starts = np.flatnonzero(run_starts(k))
        counts = np.diff(np.r_[starts, len(k)])
        return k[starts], np.minimum.reduceat(t, starts), np.maximum.reduceat(t, starts), counts

    def feed(self, batch: PacketBatch) -> None:
        c = batch.cols
        tcp = c["kind"] == Kind.TCP
        flags = c["flags"]
        synack = tcp & ((flags & (SYN | ACK | RST)) == (SYN | ACK))
        refusal = tcp & ((flags & (SYN | ACK | RST)) == (ACK | RST)) & (c["seq"] == 0)
        close = tcp & ((flags & (FIN | RST)) != 0) & ~refusal & ((flags & SYN) == 0)
        ts = c["ts_ns"].astype(np.int64)
        rows_a, rows_c, rows_r = np.flatnonzero(synack), np.flatnonzero(close), np.flatnonzero(refusal)
        keys_a, keys_c = port_keys(batch, rows_a), port_keys(batch, rows_c)
        if len(rows_r):
            self._refusals(batch, rows_r, (rows_a, keys_a), (rows_c, keys_c), ts)
        if len(rows_a):
            for key, lo, hi, n in zip(*(a.tolist() for a in self._latest(keys_a, ts[rows_a])), strict=True):
                self._answered(key, lo, hi, n)
        if len(rows_c):
            uniq, _, last, _ = self._latest(keys_c, ts[rows_c])
            self.last_close.update(uniq, last)
            if self.last_close._pending_rows == 0 and len(self.last_close) > self.max_closes:
                self._prune_closes()
        if len(self.table) > self.max_entries:
            self._trim()

    def _answered(self, key: int, first: int, last: int, n: int) -> None:
        have = self.table.get(key)
        self.table[key] = (first, last, n) if have is None else (min(have[0], first), max(have[1], last),
                                                                  have[2] + n)

    def _prune_closes(self) -> None:
        # Closes of ports that have not answered a SYN (clients' ephemeral ports, mostly) go: a close before
        # a port's first SYN-ACK is older than any SYN-ACK a refusal is compared with, so no verdict changes.
        self.last_close.keep(np.fromiter(self.table, dtype=np.uint64, count=len(self.table)))
        if len(self.last_close) > self.max_closes:
            self.forgotten += len(self.last_close)
            self.last_close = _LatestTimes()

    def _refusals(self, batch: PacketBatch, rows: np.ndarray, answers: tuple[np.ndarray, np.ndarray],
                  closes: tuple[np.ndarray, np.ndarray], ts: np.ndarray) -> None:
        """Each refusal's latest SYN-ACK and close of its port before it: the state before the batch, or the
        batch's own earlier rows (per refusing port with events in the batch, prefix maxima by row number)."""
        servers = port_keys(batch, rows)
        clients = port_keys(batch, rows, src=False).tolist()
        in_batch = [is_in(servers, keys) for _, keys in (answers, closes)]
        prefixes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for i, port in enumerate(servers.tolist()):
            if len(self.refusals) >= self.MAX_REFUSALS:
                self.refusals_dropped += len(rows) - i
                return
            before = [self.table.get(port, (-1, -1, 0))[1], self.last_close.get(port, -1)]
            row = rows[i]
            for which, (event_rows, keys) in enumerate((answers, closes)):
                if not in_batch[which][i]:
                    continue
                cached = prefixes.get((which, port))
                if cached is None:
                    sel = event_rows[keys == np.uint64(port)]
                    cached = prefixes[(which, port)] = (sel, np.maximum.accumulate(ts[sel]))
                sel, prefix = cached
                k = int(np.searchsorted(sel, row))  # events on earlier rows
                if k:
                    before[which] = max(before[which], int(prefix[k - 1]))
            self.refusals[(port, clients[i], int(ts[row]))] = (before[0], before[1])

    def merge(self, later: AnsweredPorts) -> None:
        """Add what a later range of the same file saw (ranges merged in file order)."""
        for (port, client, t), (synack, close) in later.refusals.items():
            if len(self.refusals) >= self.MAX_REFUSALS:
                self.refusals_dropped += 1
                continue
            self.refusals[(port, client, t)] = (max(synack, self.table.get(port, (-1, -1, 0))[1]),
                                                max(close, self.last_close.get(port, -1)))
        self.refusals_dropped += later.refusals_dropped
        for key, (lo, hi, n) in later.table.items():
            self._answered(key, lo, hi, n)
        later.last_close._flush()
        self.last_close.update(later.last_close.keys, later.last_close.times)
        self.forgotten += later.forgotten
        if len(self.table) > self.max_entries:
            self._trim()
        if self.last_close.longer_than(self.max_closes):
            self._prune_closes()

    def _trim(self) -> None:
        kept = {k: v for k, v in self.table.items() if v[2] > 1}
        if len(kept) > self.max_entries // 2:
            kept = dict(sorted(kept.items(), key=lambda kv: -kv[1][2])[: self.max_entries // 2])
        self.forgotten += len(self.table) - len(kept)
        self.table = kept
        self.last_close.keep(np.fromiter(kept, dtype=np.uint64, count=len(kept)))

    def get(self, addr: str, port: int) -> tuple[int, int, int] | None:
        """(first time, last time, SYN-ACKs) of ``addr``:``port``, or None when it never answered a SYN."""
        key = port_key(addr, port)
        return None if key is None else self.table.get(key)

    def refusal(self, addr: str, port: int, client: str, client_port: int, ts_ns: int) -> tuple[int, int] | None:
        """(latest SYN-ACK, latest close) of ``addr``:``port`` before its refusal of ``client`` at ``ts_ns``
        (-1: none), or None when that refusal was not recorded."""
        server, peer = port_key(addr, port), port_key(client, client_port)
        if server is None or peer is None:
            return None
        return self.refusals.get((server, peer, ts_ns))


class NumpyPrepass:
    """The prepass in plain numpy and Python (when numba is missing, and the reference the compiled one is
    tested against): host facts as dicts keyed by address text, RST tuples as a set of flow hashes."""

    def __init__(self, max_tuples: int = 1_000_000, max_hosts: int = MAX_HOSTS) -> None:
        self.ttls: dict[str, Counter[int]] = defaultdict(Counter)
        self.probed: dict[str, set[tuple[str, int]]] = defaultdict(set)
        self.answered = AnsweredPorts(max_hosts)
        self.rst_tuples: set[int] = set()
        self.tcp_packets = 0
        self.connections = 0  # Zeek-style: a new SYN on a tuple, or 5 minutes of silence, starts one
        self._last: dict[int, tuple[int, int]] = {}  # tuple hash -> (last ts, last SYN seq or -1)
        self.max_tuples = max_tuples
        self.forgotten = 0
        self.max_hosts = max_hosts
        self.hosts_forgotten = 0  # host table entries dropped to stay within max_hosts
        self._addr_cache: dict[tuple[int, bytes], str] = {}
        self.first_ts = self.last_ts = -1  # the first and latest record's time (-1: none yet)
        self.ordered = True  # the records' times never went backwards

    def read(self, cap: Any, index: FlowIndex | None = None, tick: Callable[[], None] | None = None) -> None:
        """Count every batch of an open capture, adding its TCP rows to ``index`` (as :meth:`CompiledPrepass.read`)."""
        read_batches(self, cap, index, tick)

    def rst_hashes(self) -> np.ndarray:
        """The flow hashes of the tuples that carry a RST (sorted)."""
        return np.sort(np.fromiter(self.rst_tuples, dtype=np.uint64, count=len(self.rst_tuples)))

    def record_filter(self) -> Callable[[Records], np.ndarray | None] | None:
        return None  # the second pass decodes every record and filters the decoded rows

    def rst_member(self) -> Callable[[np.ndarray], np.ndarray]:
        """Flow hashes -> whether each is a RST-bearing flow's."""
        return sorted_member(self.rst_hashes())

    def finish(self) -> None:
        """No more batches (nothing to compact here)."""
        self._last.clear()

    @property
    def probe_counts(self) -> Mapping[str, int]:
        """Source address text -> how many distinct (destination, port) pairs it sent a bare SYN to."""
        return _Sizes(self.probed)

    def _addr(self, version: int, raw: bytes) -> str:
        key = (version, raw)
        text = self._addr_cache.get(key)
        if text is None:
            if len(self._addr_cache) > 200_000:
                self._addr_cache.clear()
            text = self._addr_cache[key] = address_text(raw.ljust(16, b"\0"), version)
        return text

    def feed(self, batch: PacketBatch) -> np.ndarray:
        """Take one batch; returns the TCP rows' flow hashes (row order) for the caller's filtering."""
        c = batch.cols
        if batch.n:
            ts = c["ts_ns"]
            if self.first_ts == -1:
                self.first_ts = int(ts[0])
            elif int(ts[0]) < self.last_ts:
                self.ordered = False
            self.ordered = self.ordered and not bool((ts[1:] < ts[:-1]).any())
            self.last_ts = int(ts[-1])
        rows = np.flatnonzero(c["kind"] == Kind.TCP)
        if len(rows) == 0:
            return np.empty(0, dtype=np.uint64)
        self.tcp_packets += len(rows)
        self.answered.feed(batch)
        flags = c["flags"][rows]
        hashes = flow_hashes(batch, rows)
        is_rst = (flags & RST) != 0
        if is_rst.any():
            self.rst_tuples.update(hashes[is_rst].tolist())
        self._host_ttls(batch, rows[~is_rst])
        self._probes(batch, rows[((flags & SYN) != 0) & ((flags & ACK) == 0)])
        self._count_connections(hashes, c["ts_ns"][rows], flags, c["seq"][rows])
        if len(self.ttls) > self.max_hosts or len(self.probed) > self.max_hosts:
            self._trim_hosts()
        return hashes

    def _trim_hosts(self) -> None:
        """Forget single-packet hosts and single-probe sources; then, if still too many, the least seen."""
        for table, weight in ((self.ttls, lambda v: v.total()), (self.probed, len)):
            if len(table) <= self.max_hosts:
                continue
            kept = {a: v for a, v in table.items() if weight(v) > 1}
            if len(kept) > self.max_hosts // 2:
                top = sorted(kept.items(), key=lambda kv: -weight(kv[1]))[: self.max_hosts // 2]
                kept = dict(top)
            self.hosts_forgotten += len(table) - len(kept)
            table.clear()
            table.update(kept)

    def _host_ttls(self, batch: PacketBatch, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        rec = np.zeros(len(rows), dtype=[("a", "S16"), ("v", "u1"), ("t", "u1")])
        rec["a"] = batch.src[rows].view("S16").ravel()
        rec["v"] = batch.cols["ip_version"][rows]
        rec["t"] = batch.cols["ttl"][rows]
        uniq, counts = np.unique(rec, return_counts=True)
        for (addr, version, ttl), n in zip(uniq.tolist(), counts.tolist(), strict=True):
            self.ttls[self._addr(version, addr)][ttl] += n

    def _probes(self, batch: PacketBatch, rows: np.ndarray) -> None:
        if len(rows) == 0:
            return
        rec = np.zeros(len(rows), dtype=[("s", "S16"), ("d", "S16"), ("v", "u1"), ("p", "u2")])
        rec["s"] = batch.src[rows].view("S16").ravel()
        rec["d"] = batch.dst[rows].view("S16").ravel()
        rec["v"] = batch.cols["ip_version"][rows]
        rec["p"] = batch.cols["dport"][rows]
        for s, d, v, p in distinct(rec).tolist():
            self.probed[self._addr(v, s)].add((self._addr(v, d), p))

    def _count_connections(self, hashes: np.ndarray, ts: np.ndarray, flags: np.ndarray, seq: np.ndarray) -> None:
        """Count connection starts: a tuple's first packet, a SYN with a new sequence number, or a packet
        after five minutes of silence. Per distinct tuple in the batch, not per packet, in Python."""
        n = len(hashes)
        order = np.lexsort((np.arange(n), hashes))
        h, t = hashes[order], ts[order].astype(np.int64)
        syn = ((flags[order] & SYN) != 0) & ((flags[order] & ACK) == 0)
        sq = np.where(syn, seq[order].astype(np.int64), -1)
        first = run_starts(h)
        starts = np.flatnonzero(first)
        group = np.cumsum(first) - 1
        keys = h[starts].tolist()
        state = [self._last.get(k, (-1, -1)) for k in keys]
        stored_ts = np.array([x[0] for x in state], dtype=np.int64)
        stored_syn = np.array([x[1] for x in state], dtype=np.int64)

        prev_ts = np.empty(n, dtype=np.int64)
        prev_ts[1:] = t[:-1]
        prev_ts[first] = stored_ts
        idx = np.where(sq >= 0, np.arange(n), -1)
        last_syn_at = np.maximum.accumulate(idx)
        before = np.r_[-1, last_syn_at[:-1]]
        in_group = before >= starts[group]
        prev_syn = np.where(in_group, sq[np.maximum(before, 0)], stored_syn[group])
        new = (prev_ts < 0) | (t - prev_ts >= INACTIVITY_NS) | ((sq >= 0) & (prev_syn >= 0) & (sq != prev_syn))
        self.connections += int(np.count_nonzero(new))

        ends = np.r_[starts[1:], n] - 1
        end_syn_at = last_syn_at[ends]
        end_syn = np.where(end_syn_at >= starts, sq[np.maximum(end_syn_at, 0)], stored_syn)
        for k, last_t, last_s in zip(keys, t[ends].tolist(), end_syn.tolist(), strict=True):
            self._last[k] = (last_t, last_s)
        if len(self._last) > self.max_tuples:
            self._forget_idle(int(t.max()))

    def _forget_idle(self, now: int) -> None:
        # A tuple silent for the inactivity timeout starts a new connection anyway, so forgetting it
        # changes nothing; only a table still too large after that is cut, and the count becomes approximate.
        self._last = {k: v for k, v in self._last.items() if now - v[0] < INACTIVITY_NS}
        if len(self._last) > self.max_tuples:
            keep = sorted(self._last.items(), key=lambda kv: kv[1][0])[len(self._last) // 2:]
            self.forgotten += len(self._last) - len(keep)
            self._last = dict(keep)


# -- the compiled prepass ----------------------------------------------------------------------------

MIN_SLOTS = 1 << 12


def _key64(version: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> np.ndarray:
    """One 64-bit sort key per (version, address) for lookups by address (collisions are checked)."""
    with np.errstate(over="ignore"):
        return _mix(_mix(w0 ^ np.uint64(0x9E3779B97F4A7C15)) ^ w1 ^ (version.astype(np.uint64) << np.uint64(40)))


_U64 = (1 << 64) - 1


def _mix_int(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _U64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


def _key64_int(version: int, w0: int, w1: int) -> int:
    """:func:`_key64` of one address, in Python integers (a lookup must not pay numpy's call overhead)."""
    return _mix_int(_mix_int(w0 ^ 0x9E3779B97F4A7C15) ^ w1 ^ (version << 40))


def _parse_addr(text: str) -> tuple[int, int, int] | None:
    """(version, w0, w1) of an address as the batches store it (16 bytes, IPv4 in the first 4)."""
    try:  # (the C parser: ipaddress takes 25 µs an address, and every reset names two)
        version, packed = 4, inet_pton(AF_INET, text)
    except (OSError, TypeError):
        try:
            version, packed = 6, inet_pton(AF_INET6, text)
        except (OSError, TypeError):
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                return None
            version, packed = ip.version, ip.packed
    raw = packed.ljust(16, b"\0")
    return version, int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")


def _addr_text(version: int, w0: int, w1: int) -> str:
    return address_text(w0.to_bytes(8, "little") + w1.to_bytes(8, "little"), version)


class _Sizes(Mapping[str, int]):
    """The sizes of a mapping's sets, each taken when it is looked up."""

    def __init__(self, sets: Mapping[str, AbstractSet[Any]]) -> None:
        self._sets = sets

    def __getitem__(self, key: str) -> int:
        if key not in self._sets:  # (never the defaultdict's own lookup: it would add the key)
            raise KeyError(key)
        return len(self._sets[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._sets)

    def __len__(self) -> int:
        return len(self._sets)


class _Pairs(AbstractSet[tuple[str, int]]):
    """The distinct (destination address text, port) pairs one source probed: a set whose size needs
    no address turned into text (the catalog only counts them)."""

    def __init__(self, versions: list[int], w0: list[int], w1: list[int], ports: list[int]) -> None:
        self._raw = list(zip(versions, w0, w1, ports, strict=True))
        self._text: frozenset[tuple[str, int]] | None = None

    def _pairs(self) -> frozenset[tuple[str, int]]:
        if self._text is None:
            self._text = frozenset((_addr_text(v, a, b), p) for v, a, b, p in self._raw)
        return self._text

    def __len__(self) -> int:
        return len(self._raw)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._pairs())

    def __contains__(self, item: object) -> bool:
        return item in self._pairs()


_UNSEEN, _ABSENT = object(), object()


class _ByHost(Mapping[str, Any]):
    """A read-only mapping from address text to what a table holds for that host, built on lookup.

    The tables hold addresses as numbers; converting every one to text would cost more than the whole
    prepass, and the catalog only looks up the hosts of the resets."""

    def __init__(self, version: np.ndarray, w0: np.ndarray, w1: np.ndarray,
                 build: Callable[[np.ndarray], Any]) -> None:
        keys = _key64(version, w0, w1)
        order = np.argsort(keys, kind="stable")
        self._keys, self._v, self._w0, self._w1 = keys[order], version[order], w0[order], w1[order]
        self._order = order
        self._build = build
        self._cache: dict[str, Any] = {}

    def sizes(self) -> _ByHost:
        """How many rows each host has, as a view of the same sorted table (nothing built on look-up)."""
        view = copy.copy(self)
        view._build, view._cache = len, {}
        return view

    def _rows(self, v: int, w0: int, w1: int) -> np.ndarray | tuple[()]:
        keys = self._keys
        k = np.uint64(_key64_int(v, w0, w1))
        lo = int(keys.searchsorted(k, "left"))
        n = len(keys)
        if lo == n or keys[lo] != k:
            return ()  # (most look-ups: a host the table never saw)
        if lo + 1 == n or keys[lo + 1] != k:  # (one row, as most hosts have: no second search, a slice)
            one = int(self._v[lo]) == v and int(self._w0[lo]) == w0 and int(self._w1[lo]) == w1
            return self._order[lo:lo + 1] if one else ()
        hi = int(keys.searchsorted(k, "right"))
        rows = [i for i in range(lo, hi) if int(self._v[i]) == v and int(self._w0[i]) == w0
                and int(self._w1[i]) == w1]
        return self._order[rows]

    def _lookup(self, addr: str) -> Any:
        hit = self._cache.get(addr, _UNSEEN)
        if hit is _UNSEEN:
            parsed = _parse_addr(addr) if isinstance(addr, str) else None
            rows = self._rows(*parsed) if parsed is not None else ()
            if len(self._cache) > 100_000:
                self._cache.clear()
            # (absence is remembered too: the catalog asks of every reset's hosts, most of them never probed)
            hit = self._cache[addr] = self._build(rows) if len(rows) else _ABSENT
        return hit

    def __getitem__(self, addr: str) -> Any:
        hit = self._lookup(addr)
        if hit is _ABSENT:
            raise KeyError(addr)
        return hit

    def get(self, addr: str, default: Any = None) -> Any:
        # (Mapping's get goes through __getitem__ and a KeyError for every absent host: most of them are)
        hit = self._lookup(addr)
        return default if hit is _ABSENT else hit

    def _hosts(self) -> list[str]:
        seen = {}
        for v, a, b in zip(self._v.tolist(), self._w0.tolist(), self._w1.tolist(), strict=True):
            seen.setdefault((v, a, b), None)
        return [_addr_text(v, a, b) for v, a, b in seen]

    def __iter__(self) -> Iterator[str]:
        return iter(self._hosts())

    def __len__(self) -> int:
        if len(self._keys) == 0:
            return 0
        return int(np.count_nonzero(run_starts(self._v, self._w0, self._w1)))


KERNEL_NAMES = ("scan", "count", "insert_keys", "place_keys", "rehash_ttls", "rehash_probes", "select_records",
                "in_set", "merge_ttls", "rehash_ttl_rows", "tied_in_one_run", "probe_totals")


def _kernel_module() -> Any:
    """The prepass kernels and their layout's constants: built ahead of time when they are (no numba
    import), else numba's."""
    import types

    from whyrst import _aot
    from whyrst.tcp import _prepass_layout

    layout = {k: v for k, v in vars(_prepass_layout).items() if k.isupper()}
    aot = _aot.kernels()
    if aot is not None and all(n in aot for n in KERNEL_NAMES):
        return types.SimpleNamespace(**layout, **{n: aot[n] for n in KERNEL_NAMES})
    from whyrst.tcp import _prepass_kernels

    return types.SimpleNamespace(**layout, **{n: getattr(_prepass_kernels, n) for n in KERNEL_NAMES})


class CompiledPrepass:
    """The same facts as :class:`NumpyPrepass`, counted by numba kernels into open-addressing tables.

    Memory follows the distinct tuples and hosts (never the packets); the connection table is trimmed
    like :class:`NumpyPrepass`'s once it holds more than ``max_tuples`` tuples. When and how each server
    port answered SYNs is counted by the same kernels (into tables that :attr:`answered` reads as an
    :class:`AnsweredPorts`). :meth:`read` takes a whole capture: a file's chunks of raw records go
    straight to the compiled decoder and counter (:meth:`scan`), without building batches."""

    def __init__(self, max_tuples: int = 1_000_000, max_hosts: int = MAX_HOSTS, expected_bytes: int = 0) -> None:
        self._k = _kernel_module()
        self.max_tuples = max_tuples
        self.forgotten = 0
        self.max_hosts = max_hosts
        self.hosts_forgotten = 0  # host table entries dropped to stay within max_hosts
        self.stats = np.zeros(self._k.STATS, dtype=np.int64)
        self.stats[self._k.ST_FIRST_TS] = self._k.NO_TIME
        # Tables of a tuple each, or of a connection each, start at the size a capture of ``expected_bytes``
        # needs, not empty and doubled again and again (a 1M-packet capture of 19,000 connections: four
        # rehashes of three tables, 5 ms). The TTL table always starts small: its slots order tied TTLs, and
        # a capture analysed in parts is merged into the table one process grows (see whyrst.split).
        flows = tuple_slots(expected_bytes)
        self._conns = self._empty_conns(flows)
        self._rsts = (np.zeros(MIN_SLOTS, dtype=np.uint64), np.zeros(MIN_SLOTS, dtype=np.uint8))
        self._ttls = self._empty_ttls(MIN_SLOTS)
        self._probes = self._empty_probes(flows)
        self._answers = self._empty_answers(MIN_SLOTS)
        self._closes = self._empty_closes(flows)
        self._refusals = self._empty_refusals(MIN_SLOTS // 16)  # (doubled as refusals come, up to MAX_REFUSALS)
        self._scratch = _columns(0)  # what scan decodes a chunk's records into
        self.max_closes = max(max_hosts // 4, 1024)  # as AnsweredPorts's
        self.ports_forgotten = 0  # answered ports and closes dropped to stay within max_hosts (AnsweredPorts.forgotten)
        self._answered: AnsweredPorts | None = None  # set when finished, or merged from ranges (split.prepass_from)
        self._ttl_view: _ByHost | None = None
        self._probe_view: _ByHost | None = None
        # per source, how many distinct pairs it probed, when the tables were merged from ranges (prepass_from)
        self._probe_totals: tuple[np.ndarray, ...] | None = None
        self._count_view: Mapping[str, int] | None = None
        self._finished = False

    def finish(self) -> None:
        """No more batches: keep the results in compact form and free the hash tables (only the RST
        tuples' table stays, for :meth:`record_filter`)."""
        _ = self.ttls, self.probed
        self._answered = self.answered
        self.drop_tables()

    def drop_tables(self) -> None:
        """Free the hash tables (all but the RST tuples'); the prepass is finished, its tables unread."""
        empty = np.empty(0, dtype=np.uint8)
        self._conns = self._ttls = self._probes = self._answers = self._closes = self._refusals = (empty,)
        self._scratch = _columns(0)
        for kernel in (self._k.scan, self._k.count):  # (an ahead-of-time kernel's guard holds the last tables)
            forget = getattr(kernel, "forget", None)
            if forget is not None:
                forget()
        self._finished = True

    @staticmethod
    def _empty_conns(n: int) -> tuple[np.ndarray, ...]:
        return (np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.int64),
                np.zeros(n, dtype=np.int64))

    @staticmethod
    def _empty_ttls(n: int) -> tuple[np.ndarray, ...]:
        # address words, version << 8 | TTL, count, used
        return (np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint16),
                np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.uint8))

    @staticmethod
    def _empty_probes(n: int) -> tuple[np.ndarray, ...]:
        # source and destination words, version << 16 | port, used
        return (*(np.zeros(n, dtype=np.uint64) for _ in range(4)), np.zeros(n, dtype=np.uint32),
                np.zeros(n, dtype=np.uint8))

    @staticmethod
    def _empty_answers(n: int) -> tuple[np.ndarray, ...]:
        # port key, used, first and last SYN-ACK time, SYN-ACKs
        return (np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.int64),
                np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))

    @staticmethod
    def _empty_closes(n: int) -> tuple[np.ndarray, ...]:
        # port key, used, latest close
        return np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint8), np.zeros(n, dtype=np.int64)

    @staticmethod
    def _empty_refusals(n: int) -> tuple[np.ndarray, ...]:
        # in the order seen: refusing port, refused peer, time, the port's latest SYN-ACK and close before it
        return (np.zeros(n, dtype=np.uint64), np.zeros(n, dtype=np.uint64), *(np.zeros(n, dtype=np.int64)
                                                                                for _ in range(3)))

    def _tables(self) -> tuple[tuple[np.ndarray, ...], ...]:
        return self._conns, self._rsts, self._ttls, self._probes, self._answers, self._closes, self._refusals

    # -- counting --------------------------------------------------------------------------------
    @property
    def connections(self) -> int:
        return int(self.stats[self._k.ST_CONNECTIONS])

    @property
    def tcp_packets(self) -> int:
        return int(self.stats[self._k.ST_TCP])

    @property
    def first_ts(self) -> int:
        """The first record's time (-1 before any record)."""
        t = int(self.stats[self._k.ST_FIRST_TS])
        return -1 if t == self._k.NO_TIME else t

    @property
    def last_ts(self) -> int:
        """The latest record's time (-1 before any record)."""
        return int(self.stats[self._k.ST_LAST_TS]) if self.first_ts != -1 else -1

    @property
    def ordered(self) -> bool:
        """Whether the records' times never went backwards."""
        return not self.stats[self._k.ST_BACKWARDS]

    def read(self, cap: Any, index: FlowIndex | None = None, tick: Callable[[], None] | None = None) -> None:
        """Count every record of an open capture (read with ``payloads=False``), adding its TCP packets to
        ``index``; ``tick()`` after each chunk or batch."""
        chunks = cap.chunks()
        if chunks is None:  # (text, or a decoder that is not the compiled one)
            read_batches(self, cap, index, tick)
            return
        for records, frames_before, file_base in chunks:
            self.scan(records, frames_before, file_base, index, cap)
            if tick is not None:
                tick()

    def scan(self, r: Records, frames_before: int, file_base: int, index: FlowIndex | None, cap: Any) -> None:
        """Count one chunk of raw records (frame numbers from ``frames_before + 1``; ``file_base``: where the
        chunk's buffer starts in the file, -1 when unknown) and add its TCP records to ``index``. A record the
        compiled decoder leaves to the slow path sends the rest of the chunk through ``cap.decode_rest``
        and the batch kernel."""
        if self._finished:
            raise RuntimeError("the prepass was finished")
        k = self._k
        if index is not None and index.usable and file_base < 0:
            index.disable()  # (a gzip file: its offsets are in the decompressed stream)
        b = np.frombuffer(r.buf, dtype=np.uint8)
        records = (r.offs, r.cap, r.wire, r.ts, r.link, r.iface)
        stats = self.stats
        stats[k.ST_MAX_TS] = k.NO_TIME  # the latest time of what is counted now, for _forget_idle
        start = 0
        if len(self._scratch[0]) < r.n:
            self._scratch = _columns(r.n)
        while True:
            indexed = index is not None and index.usable
            start, full = k.scan(b, *records, start, frames_before, file_base if indexed else -1, INACTIVITY_NS,
                                 AnsweredPorts.MAX_REFUSALS, stats, *self._tables(),
                                 index.segments if indexed else _NO_INDEX, self._scratch)  # type: ignore[union-attr]
            if full == k.FULL_NONE:
                break
            if full == k.FULL_INDEX:
                index.flush()  # type: ignore[union-attr]
            elif full == k.SLOW_RECORD:
                batch = cap.decode_rest(r, start, frames_before)
                hashes = self._feed(batch)
                if indexed:
                    index.add(batch, hashes)  # type: ignore[union-attr]
                break
            else:
                self._grow(full)
        self._after_counting()

    def feed(self, batch: PacketBatch) -> np.ndarray:
        """Take one batch; returns the TCP rows' flow hashes (row order), as :meth:`NumpyPrepass.feed`."""
        if self._finished:
            raise RuntimeError("the prepass was finished")
        self.stats[self._k.ST_MAX_TS] = self._k.NO_TIME
        hashes = self._feed(batch)
        self._after_counting()
        return hashes

    def _feed(self, batch: PacketBatch) -> np.ndarray:
        k = self._k
        c = batch.cols
        src = np.ascontiguousarray(batch.src).view("<u8")
        dst = np.ascontiguousarray(batch.dst).view("<u8")
        hashes = np.zeros(batch.n, dtype=np.uint64)
        args = (c["kind"], c["flags"], c["ts_ns"], c["seq"], c["sport"], c["dport"], c["ip_version"], c["ttl"],
                src, dst, hashes)
        start = 0
        while True:
            start, full = k.count(*args, start, batch.n, INACTIVITY_NS, AnsweredPorts.MAX_REFUSALS, self.stats,
                                  *self._tables(), 0, -1, *_NO_RECORDS, _NO_INDEX)
            if full == k.FULL_NONE:
                break
            self._grow(full)
        return hashes[c["kind"] == Kind.TCP]

    def _after_counting(self) -> None:
        """The tables' bounds, checked after each batch or chunk."""
        k = self._k
        self._ttl_view = self._probe_view = self._count_view = None
        if self.stats[k.ST_CONNS] > self.max_tuples:
            self._forget_idle(int(self.stats[k.ST_MAX_TS]))
        if self.stats[k.ST_TTLS] > self.max_hosts:
            self._trim_ttls()
        if self.stats[k.ST_PROBES] > self.max_hosts:
            self._trim_probes()
        if self.stats[k.ST_ANSWERS] > self.max_hosts:
            self._trim_answers()
        if self.stats[k.ST_CLOSES] > self.max_closes:
            self._prune_closes()

    def _trim_ttls(self) -> None:
        """As :meth:`NumpyPrepass._trim_hosts`, per (address, TTL) entry: single packets go first."""
        n, used = self._ttls[3], self._ttls[4]
        keep = used.view(bool) & (n > 1)
        if np.count_nonzero(keep) > self.max_hosts // 2:
            rows = np.flatnonzero(keep)
            keep[:] = False
            keep[rows[np.argsort(-n[rows], kind="stable")[: self.max_hosts // 2]]] = True
        self._rebuild_hosts(self._ttls, keep, self._empty_ttls, self._k.rehash_ttls, self._k.ST_TTLS)

    def _trim_probes(self) -> None:
        """Sources with one probe go first (a scan needs several); then the sources with the fewest."""
        s0, s1, vp, used = self._probes[0], self._probes[1], self._probes[4], self._probes[5]
        live = np.flatnonzero(used)
        src = _key64(vp[live] >> np.uint32(16), s0[live], s1[live])
        _, inverse, counts = np.unique(src, return_inverse=True, return_counts=True)
        per = counts[inverse]
        keep = np.zeros(len(used), dtype=bool)
        keep[live[per > 1]] = True
        if np.count_nonzero(keep) > self.max_hosts // 2:
            order = np.argsort(-per, kind="stable")[: self.max_hosts // 2]
            keep[:] = False
            keep[live[order]] = True
        self._rebuild_hosts(self._probes, keep, self._empty_probes, self._k.rehash_probes, self._k.ST_PROBES)

    def _rebuild_hosts(self, table: tuple[np.ndarray, ...], keep: np.ndarray,
                       empty: Callable[[int], tuple[np.ndarray, ...]], rehash: Callable[..., None], stat: int) -> None:
        kept = int(np.count_nonzero(keep))
        self.hosts_forgotten += int(self.stats[stat]) - kept
        size = MIN_SLOTS
        while size < 4 * (kept + 1):  # room to double before the next growth
            size *= 2
        new = empty(min(size, len(table[0])))
        rehash(*table[:-1], keep.view(np.uint8), *new)
        if table is self._ttls:
            self._ttls = new
        else:
            self._probes = new
        self.stats[stat] = kept

    def _trim_answers(self) -> None:
        """As :meth:`AnsweredPorts._trim`: ports that answered once go first, then those that answered least;
        their closes go with them."""
        key, used, first, last, n = self._answers
        live = np.flatnonzero(used)
        live = live[n[live] > 1]
        if len(live) > self.max_hosts // 2:
            live = live[np.argsort(-n[live], kind="stable")[: self.max_hosts // 2]]
        self.ports_forgotten += int(self.stats[self._k.ST_ANSWERS]) - len(live)
        self._answers = self._keyed_table(key[live], (first[live], last[live], n[live]), self._empty_answers)
        self.stats[self._k.ST_ANSWERS] = len(live)
        self._keep_closes(key[live])

    def _prune_closes(self) -> None:
        """As :meth:`AnsweredPorts._prune_closes`: closes of ports that never answered a SYN go (clients'
        ephemeral ports, mostly); if still too many, all of them."""
        key, used = self._answers[0], self._answers[1]
        self._keep_closes(key[used.view(bool)])
        if self.stats[self._k.ST_CLOSES] > self.max_closes:
            self.ports_forgotten += int(self.stats[self._k.ST_CLOSES])
            self._closes = self._empty_closes(MIN_SLOTS)
            self.stats[self._k.ST_CLOSES] = 0

    def _keep_closes(self, ports: np.ndarray) -> None:
        key, used, last = self._closes
        live = np.flatnonzero(used)
        live = live[is_in(key[live], ports)]
        self._closes = self._keyed_table(key[live], (last[live],), self._empty_closes)
        self.stats[self._k.ST_CLOSES] = len(live)

    def _keyed_table(self, keys: np.ndarray, values: tuple[np.ndarray, ...],
                     empty: Callable[[int], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
        """A table of ``empty``'s layout (key, used, values...) holding ``keys`` with their ``values``, with room
        to double."""
        size = MIN_SLOTS
        while size < 4 * (len(keys) + 1):
            size *= 2
        table = empty(size)
        slots = np.empty(len(keys), dtype=np.int64)
        self._k.place_keys(np.ascontiguousarray(keys, dtype=np.uint64), table[0], table[1], slots)
        for column, value in zip(table[2:], values, strict=True):
            column[slots] = value
        return table

    def _grow(self, which: int) -> None:
        k = self._k
        if which == k.FULL_CONNS:
            key, used, ts, syn = self._conns
            live = used.view(bool)
            self._conns = self._rebuilt_conns(key[live], ts[live], syn[live], 2 * len(key))
        elif which == k.FULL_RSTS:
            key, used = self._rsts
            new = (np.zeros(2 * len(key), dtype=np.uint64), np.zeros(2 * len(key), dtype=np.uint8))
            empty = np.empty(0, dtype=np.int64)
            k.insert_keys(key[used.view(bool)], *new, empty, empty, empty, empty)
            self._rsts = new
        elif which == k.FULL_TTLS:
            new = self._empty_ttls(2 * len(self._ttls[0]))
            k.rehash_ttls(*self._ttls, *new)
            self._ttls = new
        elif which == k.FULL_PROBES:
            new = self._empty_probes(2 * len(self._probes[0]))
            k.rehash_probes(*self._probes, *new)
            self._probes = new
        elif which in (k.FULL_ANSWERS, k.FULL_CLOSES):
            table, empty = ((self._answers, self._empty_answers) if which == k.FULL_ANSWERS
                            else (self._closes, self._empty_closes))
            live = table[1].view(bool)
            new = self._keyed_table(table[0][live], tuple(col[live] for col in table[2:]), empty)
            if which == k.FULL_ANSWERS:
                self._answers = new
            else:
                self._closes = new
        else:  # FULL_REFUSALS: room for twice as many, up to the bound
            size = min(2 * len(self._refusals[0]), AnsweredPorts.MAX_REFUSALS)
            self._refusals = tuple(np.concatenate([col, np.zeros(size - len(col), dtype=col.dtype)])
                                   for col in self._refusals)

    def _rebuilt_conns(self, key: np.ndarray, ts: np.ndarray, syn: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
        size = max(size, MIN_SLOTS)
        while size < 2 * (len(key) + 1):
            size *= 2
        new = self._empty_conns(size)
        self._k.insert_keys(key, new[0], new[1], ts, syn, new[2], new[3])
        self.stats[self._k.ST_CONNS] = len(key)
        return new

    def _forget_idle(self, now: int) -> None:
        # as NumpyPrepass._forget_idle: idle tuples go first, then the older half if still too many
        key, used, ts, syn = self._conns
        live = used.view(bool)
        key, ts, syn = key[live], ts[live], syn[live]
        keep = now - ts < INACTIVITY_NS
        key, ts, syn = key[keep], ts[keep], syn[keep]
        if len(key) > self.max_tuples:
            order = np.argsort(ts, kind="stable")[len(key) // 2:]
            self.forgotten += len(key) - len(order)
            key, ts, syn = key[order], ts[order], syn[order]
        self._conns = self._rebuilt_conns(key, ts, syn, len(self._conns[0]))

    # -- results ---------------------------------------------------------------------------------
    @property
    def answered(self) -> AnsweredPorts:
        """When each server port answered SYNs, closed connections and refused SYNs, as :class:`NumpyPrepass`'s
        :class:`AnsweredPorts` holds it (built from the compiled tables when read)."""
        if self._answered is not None:
            return self._answered
        k = self._k
        out = AnsweredPorts(self.max_hosts)
        key, used, first, last, n = self._answers
        live = used.view(bool)
        out.table = dict(zip(key[live].tolist(), zip(first[live].tolist(), last[live].tolist(), n[live].tolist(),
                                                     strict=True), strict=True))
        key, used, last = self._closes
        live = used.view(bool)
        order = np.argsort(key[live], kind="stable")
        out.last_close.keys, out.last_close.times = key[live][order], last[live][order]
        stored = int(self.stats[k.ST_REFUSALS])
        server, client, ts, synack, close = (col[:stored].tolist() for col in self._refusals)
        out.refusals = dict(zip(zip(server, client, ts, strict=True), zip(synack, close, strict=True), strict=True))
        out.refusals_dropped = int(self.stats[k.ST_REFUSALS_DROPPED])
        out.forgotten = self.ports_forgotten
        return out

    @answered.setter
    def answered(self, value: AnsweredPorts) -> None:
        self._answered = value

    def rst_hashes(self) -> np.ndarray:
        key, used = self._rsts
        return np.sort(key[used.view(bool)])

    @property
    def rst_tuples(self) -> set[int]:
        return set(self.rst_hashes().tolist())

    def rst_member(self) -> Callable[[np.ndarray], np.ndarray]:
        """Flow hashes -> whether each is a RST-bearing flow's (a look-up in the RST tuples' hash table)."""
        return table_member(*self._rsts)

    def record_filter(self) -> Callable[[Records], np.ndarray | None]:
        """For the second pass: the rows of a batch of raw records that may belong to a RST tuple."""
        keys, used = self._rsts
        select = self._k.select_records

        def rows(r: Records) -> np.ndarray:
            keep = np.zeros(r.n, dtype=np.uint8)
            select(np.frombuffer(r.buf, dtype=np.uint8), r.offs, r.cap, r.link, keys, used, keep)
            return np.flatnonzero(keep)

        return rows

    @property
    def ttls(self) -> Mapping[str, Counter[int]]:
        """Address text -> Counter of the TTLs (hop limits) it sent outside RSTs."""
        if self._ttl_view is None:
            w0, w1, vt, n, used = self._ttls
            live = used.view(bool)
            w0, w1, vt, n = w0[live], w1[live], vt[live], n[live]
            ttl = (vt & np.uint64(0xFF)).astype(np.int64)

            def build(rows: np.ndarray) -> Counter[int]:
                return Counter(dict(zip(ttl[rows].tolist(), n[rows].tolist(), strict=True)))

            self._ttl_view = _ByHost(vt >> np.uint64(8), w0, w1, build)
        return self._ttl_view

    @property
    def probe_counts(self) -> Mapping[str, int]:
        """Source address text -> how many distinct (destination, port) pairs it sent a bare SYN to."""
        if self._count_view is None:
            if self._probe_totals is not None:
                s0, s1, version, count = self._probe_totals
                self._count_view = _ByHost(version, s0, s1, lambda rows: int(count[rows].sum()))
            else:
                # (a row per distinct pair: counted, not built into the source's pairs, four arrays indexed
                # and made into lists, which cost 4 µs a source the first time the catalog asked)
                _ = self.probed
                assert self._probe_view is not None
                self._count_view = self._probe_view.sizes()
        return self._count_view

    @property
    def probed(self) -> Mapping[str, AbstractSet[tuple[str, int]]]:
        """Source address text -> the (destination, port) pairs it sent a bare SYN to (a set)."""
        if self._probe_view is None:
            s0, s1, d0, d1, vp, used = self._probes
            live = used.view(bool)
            s0, s1, d0, d1, vp = s0[live], s1[live], d0[live], d1[live], vp[live]
            version = vp >> np.uint64(16)
            port = (vp & np.uint64(0xFFFF)).astype(np.int64)

            def build(rows: np.ndarray) -> _Pairs:
                return _Pairs(version[rows].tolist(), d0[rows].tolist(), d1[rows].tolist(), port[rows].tolist())

            self._probe_view = _ByHost(version, s0, s1, build)
        return self._probe_view


# what the kernels are given for the index's block when there is no index (they write no row then), and for the
# records of rows that are not indexed
_NO_INDEX = (*(np.empty(0, dtype=dtype) for _, dtype in INDEX_COLUMNS), np.empty(0, dtype=np.int64))
_NO_RECORDS = (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint32), np.empty(0, dtype=np.uint32),
               np.empty(0, dtype=np.uint16), np.empty(0, dtype=np.uint16))  # (as Records holds them)


def _columns(n: int) -> tuple[np.ndarray, ...]:
    """The decoded columns scan fills for :func:`count` (the dtypes of a batch's: one compiled count serves
    both): kind, flags, seq, sport, dport, IP version, TTL, source and destination words, flow hashes."""
    dtypes = dict((name, dtype) for name, dtype, _ in COLUMNS)
    names = ("kind", "flags", "seq", "sport", "dport", "ip_version", "ttl")
    return (*(np.zeros(n, dtype=dtypes[name]) for name in names), np.zeros((n, 2), dtype=np.uint64),
            np.zeros((n, 2), dtype=np.uint64), np.zeros(n, dtype=np.uint64))


def read_batches(prepass: Any, cap: Any, index: FlowIndex | None = None,
                 tick: Callable[[], None] | None = None) -> None:
    """Count a capture's decoded batches (a prepass of either kind), adding their TCP rows to ``index``."""
    for batch in cap:
        hashes = prepass.feed(batch)
        if index is not None:
            index.add(batch, hashes)
        if tick is not None:
            tick()


def table_member(keys: np.ndarray, used: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Flow hashes -> whether each is in the open-addressing set ``keys``/``used`` (compiled look-ups)."""
    in_set = _kernel_module().in_set

    def member(hashes: np.ndarray) -> np.ndarray:
        out = np.zeros(len(hashes), dtype=np.uint8)
        in_set(np.ascontiguousarray(hashes, dtype=np.uint64), keys, used, out)
        return out.view(bool)

    return member


def tuple_slots(expected_bytes: int) -> int:
    """The first size of a table with an entry per tuple, for a capture of ``expected_bytes``: room at half full
    for a tuple in every 32 KB (a capture of long connections of large packets has one in 45 KB, one of short
    exchanges one in 4 KB; those grow their tables as before), at most a million slots."""
    slots = MIN_SLOTS
    while slots < min(expected_bytes >> 14, 1 << 20):
        slots *= 2
    return slots


def new_prepass(engine: str = "auto", max_tuples: int = 1_000_000, max_hosts: int = MAX_HOSTS,
                expected_bytes: int = 0) -> NumpyPrepass | CompiledPrepass:
    """The compiled prepass when numba is there (``engine`` "auto" or "numba"), else the numpy one
    (``expected_bytes``: the capture's size, when known, for the compiled one's first table sizes)."""
    if engine in ("auto", "numba"):
        from whyrst.capture import fast

        if fast.available():
            return CompiledPrepass(max_tuples, max_hosts, expected_bytes)
    return NumpyPrepass(max_tuples, max_hosts)


Prepass = NumpyPrepass  # the name older callers used


def warm_up() -> bool:
    """Compile (or load from numba's cache) every kernel the fast path uses, so that the first real
    analysis does not pay seconds of compilation: a small generated capture whose connections and hosts
    outnumber the tables' first size, analysed as pcap and as pcapng. False when numba is missing."""
    import tempfile
    from pathlib import Path

    from whyrst.analysis import analyze
    from whyrst.capture import fast
    from whyrst.synth import write_bench
    from whyrst.tcp import fasttrack

    if not fast.available():
        return False
    import gzip

    with tempfile.TemporaryDirectory(prefix="whyrst-warm-up-") as tmp:
        for name, ng in (("warm.pcap", False), ("warm.pcapng", True)):
            path = Path(tmp) / name
            write_bench(str(path), 6000, 3000, 1, ng, mix="short")
            analyze(str(path), engine="numba", two_pass=True)
            # a gzip file is read twice (its second pass has no index): the record filter's kernel
            packed = path.with_suffix(path.suffix + ".gz")
            packed.write_bytes(gzip.compress(path.read_bytes(), 1))
            analyze(str(packed), engine="numba", two_pass=True)
            analyze(str(path), engine="numba", two_pass=False)  # batches counted one by one, as a stream's
            # the compiled tracker's kernels that a small second pass may not need: its tables grown
            fasttrack.warm_up(str(path))
    from whyrst import split

    # the merge of a file's ranges' host tables (a file analysed in parts), one table's worth of entries in each
    few = np.arange(1, MIN_SLOTS // 2, dtype=np.uint64)
    split.merge_ttls([(few, few, np.full(len(few), 64, dtype=np.uint16), np.ones(len(few), dtype=np.int64))] * 2,
                     MAX_HOSTS)
    split.merge_probes([(few, few, few, few, few.astype(np.uint32))] * 2)
    grown = CompiledPrepass()  # every table's growth, which a capture this small does not reach for all
    k = grown._k
    for full in (k.FULL_CONNS, k.FULL_RSTS, k.FULL_TTLS, k.FULL_PROBES, k.FULL_ANSWERS, k.FULL_CLOSES, k.FULL_REFUSALS):
        grown._grow(full)
    return True


if __name__ == "__main__":  # python -m whyrst.tcp.prepass: warm numba's cache (the install script does)
    import sys

    sys.exit(0 if warm_up() else 1)

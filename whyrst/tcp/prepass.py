"""A vectorized look at every TCP packet, batch by batch: the facts about hosts that the catalog reads
(their usual TTL, the ports each source probed), which 4-tuples ever carry a RST, and how many
connections the capture holds.

``analyze`` uses it two ways. On a file it runs this pass first and then tracks, packet by packet, only
the connections of tuples that carry a RST (the rest never need the state machine). On a stream it runs
alongside the full tracker. Either way the host facts come from here, so both give the same answers.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from whyrst.capture.batch import ACK, RST, SYN, Kind, PacketBatch, address_text

INACTIVITY_NS = 300 * 1_000_000_000  # Zeek's tcp_inactivity_timeout: a longer silence starts a new connection

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


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


class Prepass:
    """Accumulates host facts, RST-bearing tuples and a connection count over all batches."""

    def __init__(self) -> None:
        self.ttls: dict[str, Counter[int]] = defaultdict(Counter)
        self.probed: dict[str, set[tuple[str, int]]] = defaultdict(set)
        self.rst_tuples: set[int] = set()
        self.tcp_packets = 0
        self.connections = 0  # Zeek-style: a new SYN on a tuple, or 5 minutes of silence, starts one
        self._last: dict[int, tuple[int, int]] = {}  # tuple hash -> (last ts, last SYN seq or -1)
        self.max_tuples = 1_000_000
        self.forgotten = 0
        self._addr_cache: dict[tuple[int, bytes], str] = {}

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
        rows = np.flatnonzero(c["kind"] == Kind.TCP)
        if len(rows) == 0:
            return np.empty(0, dtype=np.uint64)
        self.tcp_packets += len(rows)
        flags = c["flags"][rows]
        hashes = flow_hashes(batch, rows)
        is_rst = (flags & RST) != 0
        if is_rst.any():
            self.rst_tuples.update(np.unique(hashes[is_rst]).tolist())
        self._host_ttls(batch, rows[~is_rst])
        self._probes(batch, rows[((flags & SYN) != 0) & ((flags & ACK) == 0)])
        self._count_connections(hashes, c["ts_ns"][rows], flags, c["seq"][rows])
        return hashes

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
        for s, d, v, p in np.unique(rec).tolist():
            self.probed[self._addr(v, s)].add((self._addr(v, d), p))

    def _count_connections(self, hashes: np.ndarray, ts: np.ndarray, flags: np.ndarray, seq: np.ndarray) -> None:
        """Count connection starts: a tuple's first packet, a SYN with a new sequence number, or a packet
        after five minutes of silence. Per distinct tuple in the batch, not per packet, in Python."""
        n = len(hashes)
        order = np.lexsort((np.arange(n), hashes))
        h, t = hashes[order], ts[order].astype(np.int64)
        syn = ((flags[order] & SYN) != 0) & ((flags[order] & ACK) == 0)
        sq = np.where(syn, seq[order].astype(np.int64), -1)
        first = np.r_[True, h[1:] != h[:-1]]
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

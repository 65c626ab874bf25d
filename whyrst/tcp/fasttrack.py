"""The compiled connection tracker of the two-pass fast path: :class:`~whyrst.tcp.track.Tracker`'s results
for the connections that carry a RST, from numba kernels (:mod:`whyrst.tcp._track_kernels`).

The kernels keep every connection's state in numpy tables and run Zeek's rules per packet; Python makes
:class:`Connection`, :class:`Endpoint`, :class:`Fingerprint`, :class:`ResetContext` and :class:`PacketRef`
objects only for what the analysis reads: the connections that had a RST (when they end) and the packets
in their RSTs' context (before, after, head and ring). Those objects are the ones the Python tracker
makes, field for field (the tests compare them).

Memory follows the connections open at once, as the Python tracker's does: per connection a record in the
tables (about 2 KB, the tables grown by doubling as the kernels ask), and the PacketRefs of its head and ring
once a batch has touched it (a RST of a later batch names them); per batch, its rows' outputs and events;
the finished connections with RSTs, which the analysis keeps anyway. Nothing grows with the packets: a
spoofed SYN flood that makes every flow a RST flow costs what the Python tracker's table of it costs, and
the same bounds apply (``max_half_open``, ``max_connections``: the same connections are evicted, the
oldest-idle tenth chosen in Python by the same numpy call, on the same array).
"""

from __future__ import annotations

import gc
import types
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from whyrst.capture.batch import AF_INET6, RST, Kind, PacketBatch, address_text, inet_ntoa
from whyrst.tcp import _track_layout as L
from whyrst.tcp.state import EP
from whyrst.tcp.track import (
    MAX_CONNECTIONS,
    MAX_HALF_OPEN,
    Connection,
    Endpoint,
    Fingerprint,
    PacketRef,
    PriorConnection,
    ResetContext,
    Tracker,
    make_uid,
)
from whyrst.tcp.zeek import LIKELY_SERVER_PORTS

try:  # (the C function: the socket module around it costs milliseconds of start-up; see capture.batch)
    from _socket import inet_ntop
except ImportError:  # (not CPython)
    from socket import inet_ntop

KERNEL_NAMES = ("feed", "close", "carry", "release", "rehash", "evict")
# the batch columns the kernel reads, in its argument order
FEED_COLUMNS = ("frame", "ts_ns", "ip_version", "sport", "dport", "seq", "ack", "flags", "win", "payload_len",
                "ttl", "ip_id", "opt_has_ts", "opt_ts_val", "opt_mask", "opt_wscale", "opt_mss", "opt_sack_ok",
                "payload_cap", "wire_len", "encap", "vlan")
_EPS = tuple(EP)
_M64 = (1 << 64) - 1
_LIKELY = np.zeros(1 << 16, dtype=np.uint8)
_LIKELY[list(LIKELY_SERVER_PORTS)] = 1


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off while the objects of a batch are made: they are many (a PacketRef per
    packet of a RST's connection), all live on (the analysis keeps them), and by default the collector walks
    the young ones every 700 allocations (a third of the time of a capture of short connections)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@cache
def _kernel_module() -> Any:
    from whyrst import _aot

    aot = _aot.kernels()
    if aot is not None and all(f"track_{n}" in aot for n in KERNEL_NAMES):
        return types.SimpleNamespace(**{n: aot[f"track_{n}"] for n in KERNEL_NAMES})
    from whyrst.tcp import _track_kernels

    return types.SimpleNamespace(**{n: getattr(_track_kernels, f"track_{n}") for n in KERNEL_NAMES})


def available(engine: str = "auto") -> bool:
    """Whether the compiled tracker is worth it: its kernels built ahead of time (no numba import), or
    numba loaded anyway for the capture ``engine`` ("auto"/"numba")."""
    from whyrst import _aot
    from whyrst.capture import fast

    aot = _aot.kernels()
    if aot is not None and all(f"track_{n}" in aot for n in KERNEL_NAMES):
        return True
    return engine in ("auto", "numba") and fast._numba() is not None


class CompiledTracker:
    """:class:`~whyrst.tcp.track.Tracker` for the analysis: ``on_finish`` receives only the connections that
    had a RST (when they end), with everything the Python tracker gives them; ``finished`` counts them all.
    ``capacity`` is the first size of the tables (they grow)."""

    def __init__(self, on_finish: Callable[[Connection], None], *, source_tag: bytes = b"",
                 max_connections: int = MAX_CONNECTIONS, max_half_open: int = MAX_HALF_OPEN,
                 capacity: int = 1024) -> None:
        if max_half_open < 1:
            raise ValueError("max_half_open must be at least 1")
        self._k = _kernel_module()
        self.on_finish = on_finish
        self.source_tag = source_tag
        self.max_connections = max_connections
        self.max_half_open = max_half_open
        st = self.st = np.zeros(L.ST_SIZE, dtype=np.int64)
        st[L.ST_MAX_CONNS] = max_connections
        st[L.ST_MAX_HALF] = max_half_open
        n = capacity
        self.tb = np.zeros(2 * n, dtype=np.int64)
        self.R = np.zeros((n, L.R_COLS), dtype=np.int64)
        self.K = np.zeros((n, 4), dtype=np.uint64)
        self.E = np.zeros((2 * n, L.E_COLS), dtype=np.int64)
        self.EA = np.zeros((2 * n, 2), dtype=np.uint64)
        self.HR = np.zeros((n, L.HR_COLS), dtype=np.int64)
        self.HIST = np.zeros((n, 32), dtype=np.uint8)
        self.FTTL = np.zeros((2 * n, L.FP_TTLS), dtype=np.int32)
        self.FTN = np.zeros((2 * n, L.FP_TTLS), dtype=np.int64)
        self.FIPID = np.zeros((2 * n, L.FP_IPIDS), dtype=np.int32)
        self.FREE = np.arange(n - 1, -1, -1, dtype=np.int64)
        st[L.ST_NFREE] = n
        nb = max(1, n // 16)
        self.BLK = np.zeros((nb, L.BLOCKS, 2), dtype=np.int64)
        self.BFREE = np.arange(nb - 1, -1, -1, dtype=np.int64)
        st[L.ST_NBFREE] = nb
        self.fin = np.zeros(n, dtype=np.int64)
        self.drop = np.zeros(n, dtype=np.int64)
        self._ev = np.zeros((64, L.V_COLS), dtype=np.int64)
        self._before = np.zeros(64 * L.HR_COLS, dtype=np.int64)
        self._after = np.zeros((16, L.A_COLS), dtype=np.int64)
        # Python's side: connections with RSTs not finished yet, their contexts still collecting packets
        # after them, and the PacketRefs of live connections' heads and rings from earlier batches
        self._conns: dict[int, Connection] = {}
        self._ctx_ids: dict[int, list[int]] = {}
        self._open: dict[int, ResetContext] = {}
        self._carried: dict[int, dict[int, PacketRef]] = {}
        self._texts: dict[bytes, str] = {}
        self._refs: list[PacketRef | None] = []  # the last batch's, by row id less _base
        self._base = 0
        self._to_carry: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- what the analysis reads, as on Tracker --------------------------------------------------------------
    @property
    def evicted(self) -> int:
        return int(self.st[L.ST_EVICTED])

    @property
    def evicted_half_open(self) -> int:
        return int(self.st[L.ST_EVICTED_HALF])

    @property
    def tcp_packets(self) -> int:
        return int(self.st[L.ST_TCP])

    @property
    def finished(self) -> int:
        """Connections ended so far (with or without RSTs)."""
        return int(self.st[L.ST_FINISHED])

    def eviction_note(self) -> str:
        return Tracker.eviction_note(self)  # type: ignore[arg-type]  # (it reads only the counts and limits)

    # -- growing the tables ------------------------------------------------------------------------------
    def _grow(self, why: int) -> None:
        st = self.st
        if why == L.FULL_TABLE:
            self.tb = np.zeros(2 * len(self.tb), dtype=np.int64)
            self._k.rehash(self.tb, self.R)
        elif why == L.FULL_RECORDS:
            n = len(self.R)
            for name in ("R", "K", "HR", "HIST", "E", "EA", "FTTL", "FTN", "FIPID"):
                old = getattr(self, name)
                new = np.zeros((2 * len(old), *old.shape[1:]), dtype=old.dtype)
                new[: len(old)] = old
                setattr(self, name, new)
            free = np.zeros(2 * n, dtype=np.int64)
            k = int(st[L.ST_NFREE])
            free[:n] = np.arange(2 * n - 1, n - 1, -1)  # (lower indices first)
            free[n: n + k] = self.FREE[:k]
            self.FREE = free
            st[L.ST_NFREE] = n + k
            for name in ("fin", "drop"):
                old = getattr(self, name)
                new = np.zeros(2 * n, dtype=np.int64)
                new[:n] = old
                setattr(self, name, new)
        elif why == L.FULL_BLOCKS:
            nb = len(self.BLK)
            blk = np.zeros((2 * nb, *self.BLK.shape[1:]), dtype=np.int64)
            blk[:nb] = self.BLK
            self.BLK = blk
            free = np.zeros(2 * nb, dtype=np.int64)
            k = int(st[L.ST_NBFREE])
            free[:nb] = np.arange(2 * nb - 1, nb - 1, -1)
            free[nb: nb + k] = self.BFREE[:k]
            self.BFREE = free
            st[L.ST_NBFREE] = nb + k
        elif why == L.FULL_HISTORY:
            hist = np.zeros((len(self.HIST), 2 * self.HIST.shape[1]), dtype=np.uint8)
            hist[:, : self.HIST.shape[1]] = self.HIST
            self.HIST = hist
        elif why == L.FULL_EVENTS:
            self._ev = np.concatenate([self._ev, np.zeros_like(self._ev)])
            self._before = np.concatenate([self._before, np.zeros_like(self._before)])
            self._after = np.concatenate([self._after, np.zeros_like(self._after)])
        else:  # pragma: no cover
            raise AssertionError(why)

    # -- public -------------------------------------------------------------------------------------------
    def feed(self, batch: PacketBatch) -> None:
        with _collector_paused():
            self._feed(batch)

    def close(self) -> None:
        """End every connection still open (end of capture)."""
        with _collector_paused():
            self._close()

    def _feed(self, batch: PacketBatch) -> None:
        c = batch.cols
        tcp = np.flatnonzero(c["kind"] == Kind.TCP)
        n = len(tcp)
        if n == 0:
            return
        self._carry()
        every = n == batch.n
        cols = {name: np.ascontiguousarray(c[name] if every else c[name][tcp]) for name in FEED_COLUMNS}
        src = np.ascontiguousarray(batch.src if every else batch.src[tcp])
        dst = np.ascontiguousarray(batch.dst if every else batch.dst[tcp])
        st = self.st
        base = int(st[L.ST_TCP])
        st[L.ST_BASE] = base
        st[L.ST_EPOCH] += 1
        for k in (L.ST_NTOUCH, L.ST_NEV, L.ST_NBEFORE, L.ST_NAFTER, L.ST_NFIN, L.ST_NDROP):
            st[k] = 0
        o_orig = np.zeros(n, dtype=np.uint8)
        o_rel_seq = np.zeros(n, dtype=np.int64)
        o_rel_ack = np.zeros(n, dtype=np.int64)
        need = np.zeros(n, dtype=np.uint8)
        touched = np.zeros(n, dtype=np.int64)
        n_rst = int(np.count_nonzero(cols["flags"] & RST))
        if len(self._ev) < n_rst:  # (one event per RST; the after events grow when needed)
            self._ev = np.zeros((n_rst, L.V_COLS), dtype=np.int64)
            self._before = np.zeros(n_rst * L.HR_COLS, dtype=np.int64)
            self._after = np.zeros((L.AFTER_SLOTS * n_rst + 16, L.A_COLS), dtype=np.int64)
        args = [cols[name] for name in FEED_COLUMNS]
        i = 0
        while True:
            i, why = self._k.feed(*args, src, dst, _LIKELY, i, st, self.tb, self.R, self.K, self.E, self.EA,
                                  self.HR, self.HIST, self.FTTL, self.FTN, self.FIPID, self.BLK, self.BFREE,
                                  self.FREE, o_orig, o_rel_seq, o_rel_ack, need, self._ev, self._before,
                                  self._after, self.fin, self.drop, touched)
            if why == L.DONE:
                break
            if why == L.EVICT:
                self._evict(need)
            else:
                self._grow(why)
        # The heads and rings of the live connections the batch touched: a RST of a later batch names them.
        # Their PacketRefs are made now (the batch's buffer may be reused); the tables that find them by
        # connection only when another batch comes (_carry): most second passes are one batch.
        nt = int(st[L.ST_NTOUCH])
        c_serial = np.zeros(nt, dtype=np.int64)
        c_ids = np.zeros((nt, L.HR_COLS), dtype=np.int64)
        c_n = np.zeros(nt, dtype=np.int64)
        m = self._k.carry(self.R, self.HR, st, touched, need, c_serial, c_ids, c_n)
        self._refs, self._base = self._packet_refs(batch, tcp, every, cols, o_orig, o_rel_seq, o_rel_ack, need), base
        self._to_carry = (c_serial[:m], c_ids[:m], c_n[:m])
        self._events(batch, tcp, every, cols)
        self._finished()
        carried = self._carried
        for serial in self.drop[: st[L.ST_NDROP]].tolist():
            carried.pop(serial, None)

    def _close(self) -> None:
        st = self.st
        st[L.ST_NFIN] = st[L.ST_NDROP] = 0
        self._k.close(self.R, self.E, self.HR, st, self.BFREE, self.FREE, self.tb, self.fin, self.drop,
                      np.zeros(len(self._refs), dtype=np.uint8))  # (the rows they hold have PacketRefs)
        self._finished()
        self._carried.clear()
        self._open.clear()
        self._refs = []
        self._to_carry = None

    def _evict(self, need: np.ndarray) -> None:
        """Tracker._evict's choice: the oldest-idle tenth of the connections, in the table's (serial) order,
        by numpy's argpartition as there (its order among equally idle ones is its own)."""
        R = self.R
        live = np.flatnonzero(R[:, L.C_LIVE] == L.LIVE)
        live = live[np.argsort(R[live, L.C_SERIAL])]
        k = max(1, len(live) // 10)
        victims = live[np.argpartition(R[live, L.C_LAST_NS], k - 1)[:k]] if k < len(live) else live
        self._k.evict(R, self.E, self.HR, self.st, self.BFREE, self.FREE, self.tb, self.fin, self.drop, need,
                      np.ascontiguousarray(victims, dtype=np.int64))

    def _carry(self) -> None:
        """Before a new batch: the PacketRefs the last one's live connections hold, by connection."""
        if self._to_carry is None:
            return
        carried, refs, base = self._carried, self._refs, self._base
        for serial, ids, k in zip(*(a.tolist() for a in self._to_carry), strict=True):
            old = carried.get(serial)
            carried[serial] = {r: (refs[r - base] if r >= base else old[r]) for r in ids[:k]}  # type: ignore[index]
        self._to_carry = None
        self._refs = []

    def _refs_of(self, ids: list[int], old: dict[int, PacketRef] | None) -> list[PacketRef]:
        """The PacketRefs of row ids (less the last batch's base): of the last batch, or of earlier ones
        (``old``, the connection's; None when all its rows are in the last batch)."""
        refs = self._refs
        if old is None:
            return list(map(refs.__getitem__, ids))  # type: ignore[arg-type]
        base = self._base
        return [refs[i] if i >= 0 else old[i + base] for i in ids]  # type: ignore[misc]

    # -- Python's objects -------------------------------------------------------------------------------------
    def _packet_refs(self, batch: PacketBatch, tcp: np.ndarray, every: bool, cols: dict[str, np.ndarray],
                     o_orig: np.ndarray, o_rel_seq: np.ndarray, o_rel_ack: np.ndarray, need: np.ndarray
                     ) -> list[PacketRef | None]:
        """PacketRefs for the rows some RST's context (or a live head or ring) holds: None for the others."""
        idx = np.flatnonzero(need)
        if not len(idx):
            return [None] * len(need)
        every_row = len(idx) == len(need)  # (then no copies)
        sel = slice(None) if every_row else idx
        c = batch.cols
        rows = idx if every else tcp[idx]
        has_ts = cols["opt_has_ts"][sel]
        ts_val = np.where(has_ts, cols["opt_ts_val"][sel].astype(np.int64), -1).tolist()
        ts_ecr = np.where(has_ts, c["opt_ts_ecr"][rows].astype(np.int64), -1).tolist()
        flags = cols["flags"][sel]
        made = []
        append, new = made.append, object.__new__
        # (straight into the slots, in PacketRef's order: a fifth quicker than calling its __init__)
        for row in zip(cols["frame"][sel].tolist(), cols["ts_ns"][sel].tolist(), o_orig[sel].astype(bool).tolist(),
                       flags.tolist(), cols["seq"][sel].tolist(), cols["ack"][sel].tolist(), o_rel_seq[sel].tolist(),
                       o_rel_ack[sel].tolist(), cols["payload_len"][sel].tolist(), cols["win"][sel].tolist(),
                       cols["ttl"][sel].tolist(), cols["ip_id"][sel].tolist(), ts_val, ts_ecr,
                       cols["opt_mask"][sel].tolist(), strict=True):
            p = new(PacketRef)
            (p.frame, p.ts_ns, p.from_orig, p.flags, p.seq, p.ack, p.rel_seq, p.rel_ack, p.payload_len, p.win, p.ttl,
             p.ip_id, p.ts_val, p.ts_ecr, p.opt_mask) = row
            p.payload = b""
            append(p)
        cap = np.minimum(cols["payload_cap"][sel], cols["payload_len"][sel])
        with_payload = np.flatnonzero(cap)
        if len(with_payload):
            data = batch.data
            limit = np.where(flags[with_payload] & RST, 512, 64)
            off = c["payload_off"][rows[with_payload]]
            for j, start, end in zip(with_payload.tolist(), off.tolist(),
                                     (off + np.minimum(cap[with_payload], limit)).tolist(), strict=True):
                made[j].payload = bytes(data[start:end])
        if every_row:
            return made  # type: ignore[return-value]
        refs: list[PacketRef | None] = [None] * len(need)
        for j, ref in zip(idx.tolist(), made, strict=True):
            refs[j] = ref
        return refs

    def _address_text(self, raw: bytes, version: int) -> str:
        """address_text, remembered (the RSTs of a capture name few hosts, and an IPv6 address takes
        microseconds to print)."""
        cache = self._texts
        text = cache.get(raw)
        if text is None:
            if len(cache) >= 100_000:  # (a flood from spoofed sources names each host once)
                cache.clear()
            if version == 4:
                text = inet_ntoa(raw[:4])
            else:
                # (what ipaddress prints, in C, but for the IPv4-embedding forms that inet_ntop prints dotted)
                text = inet_ntop(AF_INET6, raw) if version == 6 else ""
                if "." in text or version != 6:
                    text = address_text(raw, version)
            cache[raw] = text
        return text

    def _events(self, batch: PacketBatch, tcp: np.ndarray, every: bool, cols: dict[str, np.ndarray]) -> None:
        st = self.st
        refs, base = self._refs, self._base
        nev = int(st[L.ST_NEV])
        if nev:
            ev = self._ev[:nev]
            before = self._before[: st[L.ST_NBEFORE]] - base
            before_refs = list(map(refs.__getitem__, before.tolist())) if before.min(initial=0) >= 0 else None
            idx = ev[:, L.V_ROW] - base
            rows = idx if every else tcp[idx]
            c = batch.cols
            version = cols["ip_version"][idx].tolist()
            src, dst = batch.src[rows].tobytes(), batch.dst[rows].tobytes()
            sport, dport = cols["sport"][idx].tolist(), cols["dport"][idx].tolist()
            mptcp, checksum = c["opt_mptcp_subtype"][rows].tolist(), c["checksum_ok"][rows].tolist()
            conns, carried, ctx_ids, opened = self._conns, self._carried, self._ctx_ids, self._open
            text = self._address_text
            new_conn = Connection.__new__
            for j, (_, serial, row, index, s_state, p_state, elided, b_off, b_n, ctx_id) in enumerate(ev.tolist()):
                conn = conns.get(serial)
                if conn is None:  # its first RST: the object is filled when the connection ends
                    conn = conns[serial] = new_conn(Connection)
                    conn.resets = []
                    ctx_ids[serial] = [ctx_id]
                else:
                    ctx_ids[serial].append(ctx_id)
                pref = refs[row - base]
                v = version[j]
                # (positional: rst, conn, index_in_conn, sender_state, peer_state, before, elided, after, src, dst,
                # sport, dport, sender_is_orig, payload, mptcp_subtype, checksum_ok)
                ctx = opened[ctx_id] = ResetContext(
                    pref, conn, index, _EPS[s_state], _EPS[p_state],  # type: ignore[arg-type]
                    before_refs[b_off: b_off + b_n] if before_refs is not None  # type: ignore[arg-type]
                    else self._refs_of(before[b_off: b_off + b_n].tolist(), carried.get(serial)),
                    elided, [], text(src[16 * j: 16 * j + 16], v), text(dst[16 * j: 16 * j + 16], v), sport[j],
                    dport[j], pref.from_orig, pref.payload, mptcp[j], checksum[j])  # type: ignore[union-attr]
                conn.resets.append(ctx)  # type: ignore[union-attr]
        nafter = int(st[L.ST_NAFTER])
        if nafter:
            opened = self._open
            for ctx_id, row in self._after[:nafter].tolist():
                opened[ctx_id].after.append(refs[row - base])  # type: ignore[arg-type]

    def _finished(self) -> None:
        """Fill the Connection objects of the records that ended with RSTs, in the order they ended; hand
        them to ``on_finish``; free the records."""
        st = self.st
        nfin = int(st[L.ST_NFIN])
        if not nfin:
            return
        recs = self.fin[:nfin]
        eps = np.empty(2 * nfin, dtype=np.int64)
        eps[0::2] = 2 * recs
        eps[1::2] = 2 * recs + 1
        endpoints = self._endpoints(self.E[eps], self.EA[eps], eps)
        hist_width = self.HIST.shape[1]
        hist = self.HIST[recs].tobytes()
        carried, opened, conns, ctx_ids = self._carried, self._open, self._conns, self._ctx_ids
        tag = self.source_tag
        on_finish = self.on_finish
        head_n, ring_n = L.HEAD, L.RING
        R = self.R[recs, : L.C_VLAN + 1]
        # every connection's head and ring row ids in packet order, one after the other, and their PacketRefs
        heads, ring_start, rings = R[:, L.C_HEAD_N], R[:, L.C_RING_START], R[:, L.C_RING_N]
        k = np.arange(L.HR_COLS)
        cols = np.where(k < head_n, k, head_n + (ring_start[:, None] + k - head_n) % ring_n)
        valid = np.where(k < head_n, k < heads[:, None], k - head_n < rings[:, None])
        ids = np.take_along_axis(self.HR[recs], cols, axis=1)[valid] - self._base
        ends = np.cumsum(heads + rings).tolist()
        refs, base = self._refs, self._base
        if ids.min(initial=0) >= 0:  # (all in the last batch)
            packets: list[PacketRef | None] = list(map(refs.__getitem__, ids.tolist()))
        else:
            packets = [refs[i] if i >= 0 else None for i in ids.tolist()]
        for j, r in enumerate(R.tolist()):
            (_, serial, version, _, _, _, flipped, start_ns, last_ns, first_frame, _, hist_seen, hist_len,
             n_packets, head_len, _, _, elided, _, has_prev, prev_first_frame, attempt_ns,
             close_delete_ns, n_origins, o0, o1, o2, inactivity_ns, is_partial, encap, vlan) = r
            conn = conns.pop(serial)
            for ctx_id in ctx_ids.pop(serial):
                opened.pop(ctx_id, None)
            old = carried.pop(serial, None)
            ep0, ep1 = endpoints[2 * j], endpoints[2 * j + 1]
            a, b = (ep0.addr, ep0.port), (ep1.addr, ep1.port)
            key = conn.key = (version, a, b) if a <= b else (version, b, a)
            conn.ip_version = version
            if flipped:
                ep1.is_orig = True
                conn.orig, conn.resp = ep1, ep0
            else:
                ep0.is_orig = True
                conn.orig, conn.resp = ep0, ep1
            conn.start_ns = start_ns
            conn.last_ns = last_ns
            conn.first_frame = first_frame
            conn.history = hist[j * hist_width: j * hist_width + hist_len].decode("ascii")
            conn.hist_seen = hist_seen
            conn.flipped = flipped != 0
            conn.tag = tag
            conn._uid = ""
            conn.n_packets = n_packets
            start = ends[j - 1] if j else 0
            mine = packets[start: ends[j]]
            if old is not None:  # (a connection from an earlier batch)
                mine = [p if p is not None else old[i + base]
                        for p, i in zip(mine, ids[start: ends[j]].tolist(), strict=True)]
            conn.head = mine[:head_len]
            conn.ring = deque(mine[head_len:], maxlen=ring_n) if n_packets > head_n else None
            conn.elided = elided
            conn.after_open = ()
            conn.prev = PriorConnection(make_uid(tag, key, prev_first_frame)) if has_prev else None
            conn.attempt_ns = attempt_ns
            conn.close_delete_ns = close_delete_ns
            conn.expire_origins = (o0, o1, o2)[:n_origins]
            conn.inactivity_ns = inactivity_ns
            conn.handshake_done = False
            conn.is_partial = is_partial != 0
            conn.encap = encap
            conn.vlan = vlan
            on_finish(conn)
        self._k.release(self.R, self.E, st, self.BFREE, self.FREE, self.fin)

    def _endpoints(self, E: np.ndarray, EA: np.ndarray, eps: np.ndarray) -> list[Endpoint]:
        """The Endpoint objects of endpoint rows ``eps`` (``is_orig`` False: the caller sets the originator's)."""
        out = []
        ip_ids = self.FIPID[eps].tolist()
        ttls = counts = None
        if (E[:, L.F_NTTLS] >= 0).any():
            ttls, counts = self.FTTL[eps].tolist(), self.FTN[eps].tolist()
        addrs = EA.byteswap().view("S16").ravel().tolist()  # (the tracker's form: the bytes less trailing zeros)
        new, eps_ = object.__new__, _EPS
        blocks = self.BLK
        for j, (e, addr) in enumerate(zip(E.tolist(), addrs, strict=True)):
            x = new(Endpoint)
            # (the E columns are in this order: see _track_layout; straight into the slots is the quickest)
            (x.port, state, prev_state, x.start64, x.last64, x.ack64, did_close, x.fin_cnt, x.rst_cnt, x.fin_seq,
             x.hist_last_syn, x.hist_last_fin, x.hist_last_rst, x.rxmit_cnt, x.rxmit_thresh, x.win0_cnt,
             x.win0_thresh, x.gap_cnt, x.gap_thresh, x.chk_cnt, x.chk_thresh, seen_first, x.window_scale, x.pkts,
             x.ip_bytes, x.payload_bytes, x.last_ns, x.reassem_upto, x.trim_upto, blk, nblk, f_made) = e[:32]
            x.addr = addr
            x.is_orig = False
            x.state = eps_[state]
            x.prev_state = eps_[prev_state]
            x.did_close = did_close != 0
            x.seen_first = seen_first != 0
            x.blocks = [tuple(b) for b in blocks[blk, :nblk].tolist()] if nblk else ()  # type: ignore[misc]
            if f_made:
                fp = x._fp = new(Fingerprint)
                (fp._ttl, fp._ttl_n, f_nttls, f_nipids, fp.zero_ip_ids, fp.packets, f_mask, f_win, fp.mss,
                 fp.wscale, f_sack, f_ts, fp.last_ts_val) = e[32:]
                fp._ttls = (dict(zip(ttls[j][:f_nttls], counts[j][:f_nttls], strict=True))  # type: ignore[index]
                            if f_nttls >= 0 else None)
                fp.ip_ids = tuple(ip_ids[j][:f_nipids])
                fp.syn_opt_mask = f_mask & _M64 if f_win >= 0 else -1
                fp.syn_win = f_win
                fp.sack_ok = f_sack != 0
                fp.uses_timestamps = f_ts != 0
            else:
                x._fp = None
            out.append(x)
        return out


class Tracked:
    """What the second pass's tracking gives: the connections that had a RST, in the order they ended, and
    the counts the analysis reports."""

    def __init__(self, tracker: Tracker | CompiledTracker, reset_conns: list[Connection], made: int) -> None:
        self.reset_conns = reset_conns
        self.made = made  # connections the tracker made (ended)
        self.evicted = tracker.evicted
        self.eviction_note = tracker.eviction_note()
        self.compiled = isinstance(tracker, CompiledTracker)


def track_rst_flows(batches: Iterable[PacketBatch], *, source_tag: bytes = b"", compiled: bool = True,
                    **limits: int) -> Tracked:
    """Track the second pass's packets (the flows that carry a RST) with the compiled tracker, or with the
    Python one when ``compiled`` is False: the same connections either way."""
    done: list[Connection] = []
    if compiled:
        fast = CompiledTracker(done.append, source_tag=source_tag, **limits)
        for batch in batches:
            fast.feed(batch)
        fast.close()
        return Tracked(fast, done, fast.finished)
    made = 0

    def finished(conn: Connection) -> None:
        nonlocal made
        made += 1
        if conn.resets:
            done.append(conn)

    tracker = Tracker(finished, source_tag=source_tag, **limits)
    for batch in batches:
        tracker.feed(batch)
    tracker.close()
    return Tracked(tracker, done, made)


def warm_up(path: str) -> None:
    """Every kernel called (for whyrst._aot, which learns their argument types so): a capture's TCP packets
    through a tracker whose tables start at their smallest, in batches of a few hundred rows."""
    from whyrst.capture import open_capture
    from whyrst.errors import Warnings

    with open_capture(path, warnings=Warnings(), engine="numba") as cap:
        batches = list(cap)
    for limits in ({}, {"max_connections": 50}):  # (the second: evictions)
        tracker = CompiledTracker(lambda conn: None, capacity=2, **limits)
        for batch in batches:
            for i in range(0, batch.n, 500):
                tracker.feed(batch.rows(i, min(batch.n, i + 500)))
        tracker.close()

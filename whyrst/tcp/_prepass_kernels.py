"""The numba kernels behind :mod:`whyrst.tcp.prepass` (imported only when numba is installed).

Open-addressing hash tables (power-of-two capacity, linear probing, a ``used`` byte per slot) kept
in plain numpy arrays that Python owns and grows: a kernel stops before a table would pass half
full and returns where it stopped, Python doubles that table and calls again from there. Each table
travels as one tuple of its columns (see ``CompiledPrepass``).

* :func:`count` counts decoded rows (a batch, from the slow path, a text capture or a stream): the
  canonical flow hash (the same value as :func:`whyrst.tcp.prepass.flow_hashes`), the RST-bearing flow
  hashes, host TTL counts, bare-SYN probes, the Zeek-style connection count, and when each server port
  answered SYNs, closed connections and refused SYNs (see ``AnsweredPorts``);
* :func:`scan` takes one chunk of raw records as a reader walked them (the first pass of ``analyze``):
  it decodes each record's headers with the decoder's own link, IP and TCP layers
  (:mod:`whyrst.capture._kernels`) and counts them with :func:`count`, which also writes their rows of
  the file's index, without building a batch; it stops at a record only the per-packet slow path can
  decode;
* :func:`in_set` tells which flow hashes are in a table (the RST-bearing flows, for the file's index);
* :func:`merge_ttls`, :func:`rehash_ttl_rows`, :func:`tied_in_one_run` and :func:`probe_totals` put the
  host tables of a file's ranges together (see ``whyrst.split``);
* :func:`select_records` looks at raw records before decoding and keeps those that may belong to a
  wanted flow (any record it does not fully understand is kept: the decoded rows are filtered again
  exactly).
"""

from __future__ import annotations

import numba
import numpy as np

from whyrst.capture._kernels import (
    IP_BAD,
    IP_FRAGMENT,
    IP_SLOW,
    LINK_IP,
    LINK_SLOW,
    be16,
    be32,
    ip_layer,
    link_layer,
    other_is_slow,
    prefetch,
    tcp_header_len,
)
from whyrst.tcp._prepass_layout import (
    FULL_ANSWERS,
    FULL_CLOSES,
    FULL_CONNS,
    FULL_INDEX,
    FULL_NONE,
    FULL_PROBES,
    FULL_REFUSALS,
    FULL_RSTS,
    FULL_TTLS,
    NO_TIME,
    SLOW_RECORD,
    ST_ANSWERS,
    ST_BACKWARDS,
    ST_CLOSES,
    ST_CONNECTIONS,
    ST_CONNS,
    ST_FIRST_TS,
    ST_LAST_TS,
    ST_MAX_TS,
    ST_PROBES,
    ST_REFUSALS,
    ST_REFUSALS_DROPPED,
    ST_RSTS,
    ST_TCP,
    ST_TTLS,
)

jit = numba.njit(cache=True, nogil=True, boundscheck=False)
# A helper that takes arrays, inlined where numba compiles the kernel that calls it: a call of a compiled
# function counts a reference to every array it is given, with atomic operations, per packet.
inline = numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")

M1 = np.uint64(0xBF58476D1CE4E5B9)
M2 = np.uint64(0x94D049BB133111EB)
GOLDEN = np.uint64(0x9E3779B97F4A7C15)
S30, S27, S31, S16, S40, S8, S44 = (np.uint64(k) for k in (30, 27, 31, 16, 40, 8, 44))
KIND_TCP = 1
PREFETCH_RECORDS = 8  # how far ahead scan asks for a record's headers (4 to 16: the same)
FIN, SYN, RST, ACK = 0x001, 0x002, 0x004, 0x010


@jit
def mix(x: np.uint64) -> np.uint64:
    # splitmix64 finaliser
    x = x ^ (x >> S30)
    x = x * M1
    x = x ^ (x >> S27)
    x = x * M2
    return x ^ (x >> S31)


@jit
def flow_hash(s0: np.uint64, s1: np.uint64, d0: np.uint64, d1: np.uint64, sport: np.uint64, dport: np.uint64,
              version: np.uint64) -> np.uint64:
    """Same as ``prepass.flow_hashes`` for one row (addresses as two little-endian 64-bit words)."""
    a_first = (s0 < d0) or (s0 == d0 and ((s1 < d1) or (s1 == d1 and sport <= dport)))
    if a_first:
        lo_hi, lo_lo, hi_hi, hi_lo, ports = s0, s1, d0, d1, (sport << S16) | dport
    else:
        lo_hi, lo_lo, hi_hi, hi_lo, ports = d0, d1, s0, s1, (dport << S16) | sport
    h = mix(lo_hi ^ GOLDEN)
    h = mix(h ^ lo_lo)
    h = mix(h ^ hi_hi)
    h = mix(h ^ hi_lo)
    return mix(h ^ (ports | (version << S40)))


@jit
def host_slot(w0: np.uint64, w1: np.uint64, vt: np.uint64, mask: np.uint64) -> np.uint64:
    """Where the TTL table's entry for (address words, version << 8 | TTL) starts its probe."""
    return mix(mix(w0 ^ GOLDEN) ^ w1 ^ (vt << S40)) & mask


@jit
def partition(h: np.uint64, parts: np.uint64) -> np.uint64:
    """The partition of flow hash ``h`` among ``parts`` (``capture.index.partition_of`` for one hash)."""
    return np.uint64(0) if parts == np.uint64(1) else h % parts  # (a division per packet only when partitioned)


@jit
def port_key(w0: np.uint64, w1: np.uint64, version: np.uint64, port: np.uint64) -> np.uint64:
    """Same as ``prepass.port_keys`` for one end of one row."""
    return mix(mix(mix(w0 ^ GOLDEN) ^ w1 ^ (version << S40)) ^ (port << S44))


@inline
def set_find(keys: np.ndarray, used: np.ndarray, key: np.uint64) -> int:
    """The slot holding ``key``, or -(free slot) - 1."""
    mask = np.uint64(len(keys) - 1)
    j = np.int64(key & mask)
    while used[j]:
        if keys[j] == key:
            return j
        j = np.int64((np.uint64(j) + np.uint64(1)) & mask)
    return -j - 1


@inline
def slot(keys: np.ndarray, used: np.ndarray, key: np.uint64) -> tuple[bool, np.uint64]:
    """(whether ``key`` is in the set, the slot holding it or the free slot where it goes), the slot unsigned
    (see ``capture._kernels.be16``)."""
    mask = np.uint64(len(keys) - 1)
    j = key & mask
    while used[j]:
        if keys[j] == key:
            return True, j
        j = (j + np.uint64(1)) & mask
    return False, j


@inline
def _be16(b: np.ndarray, p: int) -> np.uint64:
    return (np.uint64(b[p]) << S8) | np.uint64(b[p + 1])


@inline
def _le64(b: np.ndarray, p: int, k: int) -> np.uint64:
    """Bytes ``b[p:p+k]`` (k <= 8) as a little-endian word (the rest zero)."""
    w = np.uint64(0)
    for j in range(k):
        w |= np.uint64(b[p + j]) << np.uint64(8 * j)
    return w


@jit
def count(kind: np.ndarray, flags: np.ndarray, ts: np.ndarray, seq: np.ndarray, sport: np.ndarray, dport: np.ndarray,
          version: np.ndarray, ttl: np.ndarray, src: np.ndarray, dst: np.ndarray, hashes: np.ndarray, start: int,
          stop: int, inactivity: int, max_refusals: int, stats: np.ndarray, conns: tuple, rsts: tuple, ttls: tuple,
          probes: tuple, answers: tuple, closes: tuple, refusals: tuple, frames_before: int, file_base: int,
          offs: np.ndarray, caps: np.ndarray, wires: np.ndarray, links: np.ndarray, ifaces: np.ndarray,
          index: tuple) -> tuple[int, int]:
    """Rows ``start:stop`` of decoded columns (addresses as two little-endian words a row): every row's time,
    and each TCP row (``kind`` 1) counted: its flow hash to ``hashes`` (the same value as
    ``prepass.flow_hashes``), the RST-bearing flow hashes, host TTL counts, bare-SYN probes, the Zeek-style
    connection count, when the sending port answered SYNs, closed connections and refused SYNs (see
    ``AnsweredPorts``), and, when ``file_base`` >= 0, its row of the file's index (frame ``frames_before +
    row + 1``, at ``file_base + offs[row]``) appended to its flow's partition's segment of the ``index``
    block: the block's columns, then how many rows each segment holds (as many segments as partitions,
    equal parts of the block).

    Returns (next row, FULL_*): it stops before a row when a table could pass half full with it (a row adds
    at most one entry to each) or its segment of the index block is full. One loop with every table's columns in local
    variables: handing arrays to a compiled function counts references to them, per call."""
    c_key, c_used, c_ts, c_syn = conns
    r_key, r_used = rsts
    t_w0, t_w1, t_vt, t_n, t_used = ttls
    p_s0, p_s1, p_d0, p_d1, p_vp, p_used = probes
    a_key, a_used, a_first, a_last, a_n = answers
    x_key, x_used, x_last = closes
    f_server, f_client, f_ts, f_synack, f_close = refusals
    i_hash, i_frame, i_offset, i_ts, i_cap, i_wire, i_link, i_iface, i_fill = index
    parts = np.uint64(max(len(i_fill), 1))
    segment = np.uint64(len(i_hash)) // parts
    first_ts, last_ts, backwards = stats[ST_FIRST_TS], stats[ST_LAST_TS], stats[ST_BACKWARDS]
    part = np.uint64(0)
    # every row's flow hash first, so that the loop below can ask for the table slots of a row further on
    # before it needs them (the tables are larger than the core's cache, each look-up waited for memory)
    for i in range(start, stop):
        r = np.uint64(i)
        if kind[r] == KIND_TCP:
            hashes[r] = flow_hash(src[r, 0], src[r, 1], dst[r, 0], dst[r, 1], np.uint64(sport[r]), np.uint64(dport[r]),
                                  np.uint64(version[r]))
    c_mask = np.uint64(len(c_key) - 1)
    t_mask = np.uint64(len(t_w0) - 1)
    ahead = np.uint64(PREFETCH_RECORDS)
    status = FULL_NONE
    i = start
    while i < stop:
        r = np.uint64(i)
        t = np.int64(ts[r])
        if r + ahead < np.uint64(stop) and kind[r + ahead] == KIND_TCP:
            a = r + ahead
            u = hashes[a] & c_mask
            prefetch(c_used, u)
            prefetch(c_key, u)
            prefetch(c_ts, u)
            prefetch(c_syn, u)
            u = host_slot(src[a, 0], src[a, 1], (np.uint64(version[a]) << S8) | np.uint64(ttl[a]), t_mask)
            prefetch(t_used, u)
            prefetch(t_w0, u)
            prefetch(t_w1, u)
            prefetch(t_vt, u)
            prefetch(t_n, u)
        if kind[r] == KIND_TCP:
            part = partition(hashes[r], parts)  # (its index row's segment: checked here, written to below)
            if 2 * (stats[ST_CONNS] + 1) > len(c_key):
                status = FULL_CONNS
            elif 2 * (stats[ST_RSTS] + 1) > len(r_key):
                status = FULL_RSTS
            elif 2 * (stats[ST_TTLS] + 1) > len(t_w0):
                status = FULL_TTLS
            elif 2 * (stats[ST_PROBES] + 1) > len(p_s0):
                status = FULL_PROBES
            elif 2 * (stats[ST_ANSWERS] + 1) > len(a_key):
                status = FULL_ANSWERS
            elif 2 * (stats[ST_CLOSES] + 1) > len(x_key):
                status = FULL_CLOSES
            elif stats[ST_REFUSALS] == len(f_server) and len(f_server) < max_refusals:
                status = FULL_REFUSALS
            elif file_base >= 0 and np.uint64(i_fill[part]) == segment:
                status = FULL_INDEX
            if status != FULL_NONE:
                break
        if first_ts == NO_TIME:
            first_ts = t
        elif t < last_ts:
            backwards += 1
        last_ts = t
        if kind[r] != KIND_TCP:
            i += 1
            continue

        stats[ST_TCP] += 1
        f = np.int64(flags[r])
        v = np.uint64(version[r])
        s0, s1, d0, d1 = src[r, 0], src[r, 1], dst[r, 0], dst[r, 1]
        sp, dp = np.uint64(sport[r]), np.uint64(dport[r])
        sq = np.int64(seq[r])
        h = hashes[r]
        if t > stats[ST_MAX_TS]:
            stats[ST_MAX_TS] = t
        is_rst = (f & RST) != 0
        bare_syn = (f & SYN) != 0 and (f & ACK) == 0

        if is_rst:
            found, u = slot(r_key, r_used, h)
            if not found:
                r_used[u] = 1
                r_key[u] = h
                stats[ST_RSTS] += 1
        else:  # the host's own TTL: RSTs are where forged ones show up, so they do not count
            vt = (v << S8) | np.uint64(ttl[r])
            u = host_slot(s0, s1, vt, t_mask)
            while t_used[u] and not (t_w0[u] == s0 and t_w1[u] == s1 and t_vt[u] == vt):
                u = (u + np.uint64(1)) & t_mask
            if not t_used[u]:
                t_used[u] = 1
                t_w0[u], t_w1[u], t_vt[u] = s0, s1, vt
                stats[ST_TTLS] += 1
            t_n[u] += 1

        if bare_syn:
            vp = (v << S16) | dp
            mask = np.uint64(len(p_s0) - 1)
            u = mix(mix(mix(s0 ^ GOLDEN) ^ s1) ^ mix(d0 ^ d1 ^ (vp << S30))) & mask
            while p_used[u] and not (p_s0[u] == s0 and p_s1[u] == s1 and p_d0[u] == d0 and p_d1[u] == d1
                                     and p_vp[u] == vp):
                u = (u + np.uint64(1)) & mask
            if not p_used[u]:
                p_used[u] = 1
                p_s0[u], p_s1[u], p_d0[u], p_d1[u], p_vp[u] = s0, s1, d0, d1, vp
                stats[ST_PROBES] += 1

        # Zeek-style connection count: a tuple's first packet, a SYN with a new sequence number, or a
        # packet after the inactivity timeout starts a connection
        syn_seq = sq if bare_syn else np.int64(-1)
        found, u = slot(c_key, c_used, h)
        if not found:
            c_used[u] = 1
            c_key[u] = h
            c_ts[u] = -1
            c_syn[u] = -1
            stats[ST_CONNS] += 1
        prev_ts, prev_syn = c_ts[u], c_syn[u]
        if prev_ts < 0 or t - prev_ts >= inactivity or (syn_seq >= 0 and prev_syn >= 0 and syn_seq != prev_syn):
            stats[ST_CONNECTIONS] += 1
        c_ts[u] = t
        if syn_seq >= 0:
            c_syn[u] = syn_seq

        # when the sending port answered SYNs, closed connections and refused SYNs (AnsweredPorts)
        handshake = f & (SYN | ACK | RST)
        refusal = handshake == (ACK | RST) and sq == 0
        if handshake == (SYN | ACK) or refusal or ((f & (FIN | RST)) != 0 and (f & SYN) == 0):
            server = port_key(s0, s1, v, sp)
            if handshake == (SYN | ACK):
                found, u = slot(a_key, a_used, server)
                if not found:
                    a_used[u] = 1
                    a_key[u] = server
                    a_first[u], a_last[u], a_n[u] = t, t, 0
                    stats[ST_ANSWERS] += 1
                a_first[u] = min(a_first[u], t)
                a_last[u] = max(a_last[u], t)
                a_n[u] += 1
            elif refusal:
                k = stats[ST_REFUSALS]
                if k < len(f_server):
                    found, u = slot(a_key, a_used, server)
                    f_synack[k] = a_last[u] if found else -1
                    found, u = slot(x_key, x_used, server)
                    f_close[k] = x_last[u] if found else -1
                    f_server[k], f_client[k], f_ts[k] = server, port_key(d0, d1, v, dp), t
                    stats[ST_REFUSALS] = k + 1
                else:
                    stats[ST_REFUSALS_DROPPED] += 1
            else:
                found, u = slot(x_key, x_used, server)
                if not found:
                    x_used[u] = 1
                    x_key[u] = server
                    x_last[u] = t
                    stats[ST_CLOSES] += 1
                x_last[u] = max(x_last[u], t)

        if file_base >= 0:
            k = part * segment + np.uint64(i_fill[part])
            i_hash[k] = h
            i_frame[k] = frames_before + i + 1
            i_offset[k] = file_base + np.int64(offs[r])
            i_ts[k] = t
            i_cap[k] = caps[r]
            i_wire[k] = wires[r]
            i_link[k] = links[r]
            i_iface[k] = ifaces[r]
            i_fill[part] += 1
        i += 1
    stats[ST_FIRST_TS], stats[ST_LAST_TS], stats[ST_BACKWARDS] = first_ts, last_ts, backwards
    return i, status


@jit
def scan(b: np.ndarray, offs: np.ndarray, caps: np.ndarray, wires: np.ndarray, times: np.ndarray,
         links: np.ndarray, ifaces: np.ndarray, start: int, frames_before: int, file_base: int, inactivity: int,
         max_refusals: int, stats: np.ndarray, conns: tuple, rsts: tuple, ttls: tuple, probes: tuple,
         answers: tuple, closes: tuple, refusals: tuple, index: tuple, scratch: tuple) -> tuple[int, int]:
    """A chunk's raw records from ``start`` (the first pass): each record's headers decoded by the
    decoder's own layers (:mod:`whyrst.capture._kernels`) into the ``scratch`` columns, up to the first
    record only the slow path decodes, then counted by :func:`count` (with their index rows when
    ``file_base`` >= 0: where ``b[0]`` lies in the file). Returns (next record, FULL_*): what :func:`count`
    stopped for, or SLOW_RECORD at a record left to the slow path (nothing of it counted)."""
    kind, flags, seq, sport, dport, version, ttl, src, dst, hashes = scratch
    stop = len(offs)
    slow = False
    ahead = np.uint64(PREFETCH_RECORDS)
    for i in range(start, len(offs)):
        r = np.uint64(i)
        if r + ahead < np.uint64(len(offs)):  # (the headers of a record further on: two lines, for IPv6's)
            at = np.uint64(offs[r + ahead])
            prefetch(b, at)
            prefetch(b, at + np.uint64(63))
        kind[r] = 0
        p = np.int64(offs[r])
        end = p + np.int64(caps[r])
        link, v, q, _ = link_layer(b, p, end, np.int64(links[r]))
        if link != LINK_IP:
            if link == LINK_SLOW:
                stop, slow = i, True
                break
            continue
        status, hop, _, _, _, proto, s, cend, length, _ = ip_layer(b, q, end, v)
        if status == IP_SLOW:
            stop, slow = i, True
            break
        if status in (IP_BAD, IP_FRAGMENT):
            continue
        if proto != 6:
            if other_is_slow(b, proto, s, cend, length):
                stop, slow = i, True
                break
            continue
        if tcp_header_len(b, s, cend) < 0:
            stop, slow = i, True
            break
        kind[r] = KIND_TCP
        flags[r] = be16(b, s + 12) & 0x0FFF
        version[r] = v
        ttl[r] = hop
        sport[r] = be16(b, s)
        dport[r] = be16(b, s + 2)
        seq[r] = be32(b, s + 4)
        if v == 4:
            src[r, 0], src[r, 1], dst[r, 0], dst[r, 1] = _le64(b, q + 12, 4), 0, _le64(b, q + 16, 4), 0
        else:
            src[r, 0], src[r, 1] = _le64(b, q + 8, 8), _le64(b, q + 16, 8)
            dst[r, 0], dst[r, 1] = _le64(b, q + 24, 8), _le64(b, q + 32, 8)
    done, full = count(kind, flags, times, seq, sport, dport, version, ttl, src, dst, hashes, start, stop, inactivity,
                       max_refusals, stats, conns, rsts, ttls, probes, answers, closes, refusals, frames_before,
                       file_base, offs, caps, wires, links, ifaces, index)
    if full != FULL_NONE:
        return done, full
    return stop, SLOW_RECORD if slow else FULL_NONE


@jit
def insert_keys(keys: np.ndarray, new_keys: np.ndarray, new_used: np.ndarray, ts: np.ndarray, syn: np.ndarray,
                new_ts: np.ndarray, new_syn: np.ndarray) -> None:
    """Insert distinct ``keys`` into an empty table; ``ts``/``syn`` (connection table) follow when not empty."""
    with_vals = len(ts) > 0
    for k in range(len(keys)):
        key = keys[k]
        _, m = slot(new_keys, new_used, key)
        new_used[m] = 1
        new_keys[m] = key
        if with_vals:
            new_ts[m] = ts[k]
            new_syn[m] = syn[k]


@jit
def place_keys(keys: np.ndarray, new_keys: np.ndarray, new_used: np.ndarray, slots: np.ndarray) -> None:
    """Insert distinct ``keys`` into an empty table; ``slots[k]`` is where ``keys[k]`` went (for its values)."""
    for k in range(len(keys)):
        key = keys[k]
        _, m = slot(new_keys, new_used, key)
        new_used[m] = 1
        new_keys[m] = key
        slots[k] = m


@jit
def rehash_ttls(w0: np.ndarray, w1: np.ndarray, vt: np.ndarray, cnt: np.ndarray, used: np.ndarray,
                n_w0: np.ndarray, n_w1: np.ndarray, n_vt: np.ndarray, n_cnt: np.ndarray, n_used: np.ndarray) -> None:
    mask = np.uint64(len(n_w0) - 1)
    for j in range(len(w0)):
        if not used[j]:
            continue
        m = np.int64(host_slot(w0[j], w1[j], np.uint64(vt[j]), mask))
        while n_used[m]:
            m = np.int64((np.uint64(m) + np.uint64(1)) & mask)
        n_used[m] = 1
        n_w0[m], n_w1[m], n_vt[m], n_cnt[m] = w0[j], w1[j], vt[j], cnt[j]


@jit
def rehash_probes(s0: np.ndarray, s1: np.ndarray, d0: np.ndarray, d1: np.ndarray, vp: np.ndarray, used: np.ndarray,
                  n_s0: np.ndarray, n_s1: np.ndarray, n_d0: np.ndarray, n_d1: np.ndarray, n_vp: np.ndarray,
                  n_used: np.ndarray) -> None:
    mask = np.uint64(len(n_s0) - 1)
    for j in range(len(s0)):
        if not used[j]:
            continue
        m = np.int64(mix(mix(mix(s0[j] ^ GOLDEN) ^ s1[j]) ^ mix(d0[j] ^ d1[j] ^ (np.uint64(vp[j]) << S30))) & mask)
        while n_used[m]:
            m = np.int64((np.uint64(m) + np.uint64(1)) & mask)
        n_used[m] = 1
        n_s0[m], n_s1[m], n_d0[m], n_d1[m], n_vp[m] = s0[j], s1[j], d0[j], d1[j], vp[j]


# The merge of a file's ranges' host tables (whyrst.split): tables of row numbers (1 + the row of the entry's
# first copy, 0 for a free slot) over the ranges' entries put one after the other. A few MB of fresh memory,
# where tables holding the entries themselves took 40 (each fresh page costs this VM 5 µs).


@jit
def merge_ttls(w0: np.ndarray, w1: np.ndarray, vt: np.ndarray, cnt: np.ndarray, slots: np.ndarray,
               sums: np.ndarray) -> int:
    """Put (address words, version << 8 | TTL) entries, some alike, into an empty TTL table of row numbers
    with room for all of them at half full, probing as the prepass does; ``sums[row]``: the counts of the
    entries alike to the first copy ``row``. Returns the distinct entries."""
    mask = np.uint64(len(slots) - 1)
    distinct = 0
    for j in range(len(w0)):
        m = np.int64(host_slot(w0[j], w1[j], np.uint64(vt[j]), mask))
        while slots[m]:
            r = slots[m] - 1
            if w0[r] == w0[j] and w1[r] == w1[j] and vt[r] == vt[j]:
                break
            m = np.int64((np.uint64(m) + np.uint64(1)) & mask)
        if slots[m]:
            sums[slots[m] - 1] += cnt[j]
        else:
            slots[m] = j + 1
            sums[j] = cnt[j]
            distinct += 1
    return distinct


@jit
def rehash_ttl_rows(w0: np.ndarray, w1: np.ndarray, vt: np.ndarray, slots: np.ndarray, new_slots: np.ndarray) -> None:
    """:func:`rehash_ttls` for a table of row numbers: its entries, in slot order, into an empty one."""
    mask = np.uint64(len(new_slots) - 1)
    for i in range(len(slots)):
        if not slots[i]:
            continue
        r = slots[i] - 1
        m = np.int64(host_slot(w0[r], w1[r], np.uint64(vt[r]), mask))
        while new_slots[m]:
            m = np.int64((np.uint64(m) + np.uint64(1)) & mask)
        new_slots[m] = slots[i]


@jit
def tied_in_one_run(w0: np.ndarray, w1: np.ndarray, vt: np.ndarray, cnt: np.ndarray, at: np.ndarray,
                    size: int, hosts: np.ndarray) -> bool:
    """Whether a host's most frequent TTLs are tied and two of them lie in the same run of occupied slots of
    a TTL table of ``size`` slots, whose live entries (in slot order) are ``w0``..``cnt`` at slots ``at``:
    their order in the table then depends on the order of insertion (a run that reaches the table's end goes
    on at its start). ``hosts``: an empty table of row numbers with room for every entry at half full."""
    n = len(w0)
    mask = np.uint64(len(hosts) - 1)
    host_of = np.empty(n, dtype=np.int64)
    top = np.zeros(n, dtype=np.int64)
    at_top = np.zeros(n, dtype=np.int64)
    for j in range(n):
        v = np.uint64(vt[j]) >> S8
        m = np.int64(host_slot(w0[j], w1[j], v, mask))
        while hosts[m]:
            r = hosts[m] - 1
            if w0[r] == w0[j] and w1[r] == w1[j] and (np.uint64(vt[r]) >> S8) == v:
                break
            m = np.int64((np.uint64(m) + np.uint64(1)) & mask)
        if not hosts[m]:
            hosts[m] = j + 1
        h = hosts[m] - 1
        host_of[j] = h
        if cnt[j] > top[h]:
            top[h], at_top[h] = cnt[j], 1
        elif cnt[j] == top[h]:
            at_top[h] += 1
    # the tied entries by (host, run); a run is known by the slot it starts at
    last_start = -1
    if n and at[0] == 0 and at[n - 1] == size - 1:
        last_start = n - 1
        while last_start > 0 and at[last_start - 1] == at[last_start] - 1:
            last_start -= 1
    pairs = np.empty(n, dtype=np.uint64)
    k = 0
    run = np.int64(0)
    for j in range(n):
        if j == 0 or at[j - 1] != at[j] - 1:
            run = at[last_start] if j == 0 and last_start >= 0 else at[j]
        h = host_of[j]
        if at_top[h] > 1 and cnt[j] == top[h]:
            pairs[k] = (np.uint64(h) << np.uint64(32)) | np.uint64(run)
            k += 1
    tied = np.sort(pairs[:k])
    return k > 1 and bool((tied[1:] == tied[:-1]).any())


@jit
def probe_totals(s0: np.ndarray, s1: np.ndarray, d0: np.ndarray, d1: np.ndarray, vp: np.ndarray,
                 pairs: np.ndarray, sources: np.ndarray, firsts: np.ndarray, counts: np.ndarray,
                 found: np.ndarray) -> None:
    """The distinct probes among (s0, s1, d0, d1, version << 16 | port) rows, some alike, counted per source
    (s0, s1, version): ``pairs`` and ``sources`` are empty tables of row numbers with room for every row at
    half full; the ``found[1]`` sources found are ``firsts[i]`` (a row of each), which made ``counts[i]``
    distinct probes; ``found[0]``: the distinct probes."""
    p_mask = np.uint64(len(pairs) - 1)
    t_mask = np.uint64(len(sources) - 1)
    distinct, n_sources = 0, 0
    for j in range(len(s0)):
        m = np.int64(mix(mix(mix(s0[j] ^ GOLDEN) ^ s1[j]) ^ mix(d0[j] ^ d1[j] ^ (np.uint64(vp[j]) << S30))) & p_mask)
        while pairs[m]:
            r = pairs[m] - 1
            if s0[r] == s0[j] and s1[r] == s1[j] and d0[r] == d0[j] and d1[r] == d1[j] and vp[r] == vp[j]:
                break
            m = np.int64((np.uint64(m) + np.uint64(1)) & p_mask)
        if pairs[m]:
            continue
        pairs[m] = j + 1
        distinct += 1
        v = np.uint64(vp[j]) >> S16
        t = np.int64(host_slot(s0[j], s1[j], v, t_mask))
        while sources[t]:
            r = firsts[sources[t] - 1]
            if s0[r] == s0[j] and s1[r] == s1[j] and (np.uint64(vp[r]) >> S16) == v:
                break
            t = np.int64((np.uint64(t) + np.uint64(1)) & t_mask)
        if not sources[t]:
            firsts[n_sources] = j
            n_sources += 1
            sources[t] = n_sources
        counts[sources[t] - 1] += 1
    found[0], found[1] = distinct, n_sources


@jit
def in_set(values: np.ndarray, keys: np.ndarray, used: np.ndarray, out: np.ndarray) -> None:
    """``out[i]``: whether ``values[i]`` is in the set (``keys``/``used``)."""
    for i in range(len(values)):
        out[i] = set_find(keys, used, values[i]) >= 0


# -- the second pass: which raw records may belong to a wanted flow ----------------------------------


@jit
def select_records(b: np.ndarray, offs: np.ndarray, caps: np.ndarray, links: np.ndarray, keys: np.ndarray,
                   used: np.ndarray, keep: np.ndarray) -> int:
    """Mark in ``keep`` the records that are plain Ethernet/raw-IP TCP of a flow whose hash is in the set
    (``keys``/``used``), and every record this quick look does not fully understand; returns how many.

    Only records that certainly decode to TCP of an unwanted flow, or to no TCP at all (ICMP, ...),
    are left out, so nothing the tracker needs is lost."""
    kept = 0
    for i in range(len(offs)):
        p = np.int64(offs[i])
        end = p + np.int64(caps[i])
        lt = np.int64(links[i])
        q = p
        v = 0
        if lt == 1:  # Ethernet with any 802.1Q/802.1ad tags
            if end - p < 14:
                keep[i] = 1
                kept += 1
                continue
            etype = _be16(b, p + 12)
            q = p + 14
            while (etype == 0x8100 or etype == 0x88A8 or etype == 0x9100) and q + 4 <= end:
                etype = _be16(b, q + 2)
                q += 4
            if etype == 0x0800:
                v = 4
            elif etype == 0x86DD:
                v = 6
        elif (lt == 101 or lt == 12 or lt == 14 or lt == 228 or lt == 229) and p < end:  # raw IP
            v = np.int64(b[p]) >> 4
        s = np.int64(0)
        cend = np.int64(0)
        if v == 4 and q + 20 <= end and np.int64(b[q]) >> 4 == 4 and (lt != 229):
            hl = (np.int64(b[q]) & 0x0F) * 4
            tlen = np.int64(_be16(b, q + 2))
            frag = np.int64(_be16(b, q + 6)) & 0x1FFF
            if hl >= 20 and q + hl <= end and frag == 0 and b[q + 9] == 6 and (tlen == 0 or tlen >= hl):
                total = end - q if tlen == 0 else tlen
                s = q + hl
                cend = min(end, q + total)
                if cend - s >= 20:
                    sp, dp = _be16(b, s), _be16(b, s + 2)
                    h = flow_hash(_le64(b, q + 12, 4), np.uint64(0), _le64(b, q + 16, 4), np.uint64(0), sp, dp,
                                  np.uint64(4))
                    if set_find(keys, used, h) < 0:
                        continue
        elif v == 6 and q + 40 <= end and np.int64(b[q]) >> 4 == 6 and (lt != 228):
            s = q + 40
            if b[q + 6] == 6 and end - s >= 20:
                sp, dp = _be16(b, s), _be16(b, s + 2)
                h = flow_hash(_le64(b, q + 8, 8), _le64(b, q + 16, 8), _le64(b, q + 24, 8), _le64(b, q + 32, 8),
                              sp, dp, np.uint64(6))
                if set_find(keys, used, h) < 0:
                    continue
        keep[i] = 1
        kept += 1
    return kept

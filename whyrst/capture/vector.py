"""The common-case decoder in plain numpy, for when numba is not installed.

It does what :func:`whyrst.capture._kernels.decode_all` does, a whole batch at a time: each step
gathers one field for every row still in play, and rows that need the slow path are flagged for it.
Results are identical to the compiled kernel and to the slow path (the tests compare all three).
"""

from __future__ import annotations

import numpy as np

from whyrst.capture.batch import Kind, PacketBatch

I64 = np.int64


class _Gather:
    """Bounds-safe reads from a buffer at many offsets at once (rows out of range read 0 and are masked)."""

    def __init__(self, buf: np.ndarray) -> None:
        self.b = buf
        self.empty = len(buf) == 0

    def u8(self, idx: np.ndarray) -> np.ndarray:
        if self.empty:
            return np.zeros(len(idx), dtype=I64)
        return self.b.take(idx, mode="clip").astype(I64)

    def be16(self, idx: np.ndarray) -> np.ndarray:
        return (self.u8(idx) << 8) | self.u8(idx + 1)

    def be32(self, idx: np.ndarray) -> np.ndarray:
        return (self.be16(idx) << 16) | self.be16(idx + 2)

    def le32(self, idx: np.ndarray) -> np.ndarray:
        return (self.u8(idx + 3) << 24) | (self.u8(idx + 2) << 16) | (self.u8(idx + 1) << 8) | self.u8(idx)


def _any_of(values: np.ndarray, choices: tuple[int, ...]) -> np.ndarray:
    """Whether each value is one of a few ``choices`` (np.isin would sort them, through np.unique, which
    imports numpy.ma the first time: 16 ms of a one-packet capture's analysis)."""
    found = values == choices[0]
    for c in choices[1:]:
        found |= values == c
    return found


def _word_sums(b: np.ndarray, start: np.ndarray, nwords: np.ndarray) -> np.ndarray:
    """Sums of ``nwords`` big-endian 16-bit words from each ``start`` (any alignment).

    The segments are disjoint and in buffer order (they are the TCP segments of a batch)."""
    out = np.zeros(len(start), dtype=np.uint64)
    for parity in (0, 1):
        rows = np.flatnonzero(((start & 1) == parity) & (nwords > 0))
        if not len(rows):
            continue
        first = (start[rows] - parity) // 2
        stop = first + nwords[rows]
        lo, hi = int(first[0]), int(stop[-1])
        # native 64-bit words of just the region the segments cover (reduceat is slow on big-endian)
        words = b[parity + 2 * lo : parity + 2 * hi].view(">u2").astype(np.uint64)
        idx = np.empty(2 * len(rows), dtype=np.int64)
        idx[0::2] = first - lo
        idx[1::2] = stop - lo
        out[rows] = np.add.reduceat(words, idx[:-1])[0::2]  # the last segment runs to the region's end
    return out


def decode_numpy(buf: memoryview | bytes, offs: np.ndarray, batch: PacketBatch, check: bool = True) -> np.ndarray:
    """Decode the common case of every row into ``batch``; return the rows the slow path must take."""
    b = np.frombuffer(buf, dtype=np.uint8)
    g = _Gather(b)
    c = batch.cols
    n = batch.n
    p = offs.astype(I64)
    end = p + c["cap_len"].astype(I64)
    lt = c["link_type"].astype(I64)
    slow = np.zeros(n, dtype=bool)
    alive = np.ones(n, dtype=bool)  # rows still being decoded here
    etype = np.full(n, -1, dtype=I64)
    q = p.copy()
    v = np.zeros(n, dtype=I64)

    # -- link layer
    eth = lt == 1
    ok = end - p >= 14
    alive &= ~(eth & ~ok)
    m = eth & ok
    etype[m] = g.be16(p[m] + 12)
    q[m] = p[m] + 14
    for link, size, type_at, hatype_at in ((113, 16, 14, 2), (276, 20, 0, 8)):
        is_link = lt == link
        ok = end - p >= size
        alive &= ~(is_link & ~ok)
        m = is_link & ok
        rows = np.flatnonzero(m)
        hatype = g.be16(p[rows] + hatype_at)
        et = g.be16(p[rows] + type_at)
        q[rows] = p[rows] + size
        netlink = hatype == 824
        llc = ~netlink & (et == 4)
        low = ~netlink & ~llc & (et < 0x0600)
        slow[rows[llc]] = True
        alive[rows[netlink | llc | low]] = False
        keep = rows[~(netlink | llc | low)]
        etype[keep] = et[~(netlink | llc | low)]
    raw = (lt == 101) | (lt == 12) | (lt == 14)
    ok = p < end
    alive &= ~(raw & ~ok)
    rows = np.flatnonzero(raw & ok)
    ver = g.u8(p[rows]) >> 4
    v[rows] = ver
    alive[rows[(ver != 4) & (ver != 6)]] = False
    nl = (lt == 0) | (lt == 108)
    ok = end - p >= 4
    alive &= ~(nl & ~ok)
    rows = np.flatnonzero(nl & ok)
    fam = g.be32(p[rows])
    host = np.where(lt[rows] == 0, g.le32(p[rows]), -1)
    is4 = (fam == 2) | (host == 2)
    is6 = ~is4 & (_any_of(fam, (24, 28, 30)) | _any_of(host, (24, 28, 30)))
    v[rows[is4]] = 4
    v[rows[is6]] = 6
    alive[rows[~is4 & ~is6]] = False
    q[rows] = p[rows] + 4
    v[lt == 228] = 4
    v[lt == 229] = 6
    other = ~(eth | (lt == 113) | (lt == 276) | raw | nl | (lt == 228) | (lt == 229))
    slow |= other & alive
    alive &= ~other

    # -- ethertypes and VLAN tags
    seen = np.zeros(n, dtype=bool)
    while True:
        tagged = np.flatnonzero(alive & ((etype == 0x8100) | (etype == 0x88A8) | (etype == 0x9100)))
        if not len(tagged):
            break
        short = q[tagged] + 4 > end[tagged]
        alive[tagged[short]] = False
        tagged = tagged[~short]
        first = tagged[~seen[tagged]]
        c["vlan"][first] = g.be16(q[first]) & 0x0FFF
        seen[first] = True
        etype[tagged] = g.be16(q[tagged] + 2)
        q[tagged] += 4
    typed = alive & (etype >= 0)
    v[typed & (etype == 0x0800)] = 4
    v[typed & (etype == 0x86DD)] = 6
    to_slow = typed & ((etype <= 1500) | (etype == 0x8847) | (etype == 0x8848) | (etype == 0x8864))
    slow |= to_slow
    alive &= ~(typed & (etype != 0x0800) & (etype != 0x86DD))

    # -- IP
    s = np.zeros(n, dtype=I64)
    cend = np.zeros(n, dtype=I64)
    length = np.zeros(n, dtype=I64)
    proto = np.full(n, -1, dtype=I64)
    complete = np.zeros(n, dtype=bool)
    v6 = np.zeros(n, dtype=bool)

    r4 = np.flatnonzero(alive & (v == 4))
    qq, ee = q[r4], end[r4]
    vhl = g.u8(qq)
    hl = (vhl & 0x0F) * 4
    tlen = g.be16(qq + 2)
    tso = tlen == 0
    ok = (qq + 20 <= ee) & (vhl >> 4 == 4) & (hl >= 20) & (qq + hl <= ee) & (tso | (tlen >= hl))
    alive[r4[~ok]] = False
    r4, qq, ee, hl, tlen, tso = r4[ok], qq[ok], ee[ok], hl[ok], tlen[ok], tso[ok]
    total = np.where(tso, ee - qq, tlen)
    off = g.be16(qq + 6)
    c["ip_version"][r4] = 4
    c["ttl"][r4] = g.u8(qq + 8)
    c["ip_id"][r4] = g.be16(qq + 4)
    c["ip_df"][r4] = (off & 0x4000) != 0
    c["tos"][r4] = g.u8(qq + 1)
    for j in range(4):
        batch.src[r4, j] = g.u8(qq + 12 + j)
        batch.dst[r4, j] = g.u8(qq + 16 + j)
    frag = (off & 0x1FFF) != 0
    c["kind"][r4] = np.where(frag, Kind.FRAGMENT, Kind.IP_OTHER)
    alive[r4[frag]] = False
    complete[r4] = ~tso & ((off & 0x2000) == 0) & (qq + total <= ee)
    proto[r4] = g.u8(qq + 9)
    s[r4] = qq + hl
    cend[r4] = np.minimum(ee, qq + total)
    length[r4] = total - hl

    r6 = np.flatnonzero(alive & (v == 6))
    qq, ee = q[r6], end[r6]
    ok = (qq + 40 <= ee) & (g.u8(qq) >> 4 == 6)
    alive[r6[~ok]] = False
    r6, qq, ee = r6[ok], qq[ok], ee[ok]
    c["ip_version"][r6] = 6
    c["ttl"][r6] = g.u8(qq + 7)
    c["ip_id"][r6] = -1
    c["tos"][r6] = (g.be32(qq) >> 20) & 0xFF
    for j in range(16):
        batch.src[r6, j] = g.u8(qq + 8 + j)
        batch.dst[r6, j] = g.u8(qq + 24 + j)
    c["kind"][r6] = Kind.IP_OTHER
    start = qq + 40
    plen = g.be16(qq + 4)
    tso = plen == 0
    plen = np.where(tso, ee - start, plen)
    nxt = g.u8(qq + 6)
    s[r6] = start
    cend[r6] = np.minimum(ee, start + plen)
    complete[r6] = ~tso & (start + plen <= ee)
    proto[r6] = nxt
    length[r6] = plen
    v6[r6] = True
    ext = _any_of(nxt, (0, 43, 44, 51, 60))
    slow[r6[ext]] = True
    alive[r6[ext]] = False

    # -- TCP
    rt = np.flatnonzero(alive & (proto == 6))
    ss, ce = s[rt], cend[rt]
    avail = ce - ss
    off_flags = g.be16(ss + 12)
    thl = (off_flags >> 12) * 4
    ok = (avail >= 20) & (thl >= 20) & (thl <= avail)
    slow[rt[~ok]] = True
    rt, ss, ce, off_flags, thl = rt[ok], ss[ok], ce[ok], off_flags[ok], thl[ok]
    ln = length[rt]
    c["kind"][rt] = Kind.TCP
    c["sport"][rt] = g.be16(ss)
    c["dport"][rt] = g.be16(ss + 2)
    c["seq"][rt] = g.be32(ss + 4)
    c["ack"][rt] = g.be32(ss + 8)
    c["flags"][rt] = off_flags & 0x0FFF
    c["win"][rt] = g.be16(ss + 14)
    c["tcp_hdr_len"][rt] = thl
    c["payload_len"][rt] = np.maximum(0, ln - thl)
    c["payload_off"][rt] = ss + thl
    c["payload_cap"][rt] = ce - (ss + thl)
    _options(g, c, rt[thl > 20], ss[thl > 20] + 20, ss[thl > 20] + thl[thl > 20])
    if check:
        ck = complete[rt] & (ln >= thl)
        _checksums(g, b, c, rt[ck], ss[ck], ln[ck], q[rt[ck]], v6[rt[ck]])

    # -- what else the slow path must see
    tunnel = alive & ((proto == 4) | (proto == 41) | (proto == 47) | (proto == 51))
    slow |= tunnel
    ru = np.flatnonzero(alive & (proto == 17) & (cend - s >= 8))
    ss = s[ru]
    sp, dp = g.be16(ss), g.be16(ss + 2)
    ports = _any_of(sp, (4789, 6081, 3544)) | _any_of(dp, (4789, 6081, 3544))
    u = ss + 8
    size = length[ru] - 8
    first = g.u8(u)
    second = g.u8(u + 1)
    teredo = (size >= 40) & (cend[ru] - u >= 2) & ((first >> 4 == 6) | ((first == 0) & ((second == 0) | (second == 1))))
    slow[ru[ports | teredo]] = True
    return np.flatnonzero(slow)


def _options(g: _Gather, c: dict[str, np.ndarray], rows: np.ndarray, op: np.ndarray, oend: np.ndarray) -> None:
    mask = np.zeros(len(rows), dtype=np.uint64)
    live = op < oend
    op = op.copy()
    while live.any():
        i = np.flatnonzero(live)
        k = g.u8(op[i])
        eol = k == 0
        mask[i[eol]] |= np.uint64(1)
        live[i[eol]] = False
        nop = k == 1
        mask[i[nop]] |= np.uint64(2)
        op[i[nop]] += 1
        rest = ~eol & ~nop
        i, k = i[rest], k[rest]
        olen = g.u8(op[i] + 1)
        bad = (op[i] + 1 >= oend[i]) | (olen < 2) | (op[i] + olen > oend[i])
        live[i[bad]] = False
        i, k, olen = i[~bad], k[~bad], olen[~bad]
        small = k < 64
        mask[i[small]] |= np.left_shift(np.uint64(1), k[small].astype(np.uint64))
        at = op[i]
        r = rows[i]
        sel = (k == 2) & (olen == 4)
        c["opt_mss"][r[sel]] = g.be16(at[sel] + 2)
        sel = (k == 3) & (olen == 3)
        c["opt_wscale"][r[sel]] = g.u8(at[sel] + 2)
        sel = (k == 4) & (olen == 2)
        c["opt_sack_ok"][r[sel]] = True
        sel = k == 5
        c["opt_sack_blocks"][r[sel]] = (olen[sel] - 2) // 8
        sel = (k == 8) & (olen == 10)
        c["opt_has_ts"][r[sel]] = True
        c["opt_ts_val"][r[sel]] = g.be32(at[sel] + 2)
        c["opt_ts_ecr"][r[sel]] = g.be32(at[sel] + 6)
        sel = (k == 30) & (olen >= 3)
        c["opt_mptcp_subtype"][r[sel]] = g.u8(at[sel] + 2) >> 4
        op[i] += olen
        live &= op < oend
    c["opt_mask"][rows] = mask


def _checksums(g: _Gather, b: np.ndarray, c: dict[str, np.ndarray], rows: np.ndarray, s: np.ndarray,
               length: np.ndarray, ip: np.ndarray, v6: np.ndarray) -> None:
    if not len(rows):
        return
    total = (6 + length).astype(np.uint64)
    for j in range(4):
        total += np.where(v6, 0, g.be16(ip + 12 + 2 * j)).astype(np.uint64)
    for j in range(16):
        total += np.where(v6, g.be16(ip + 8 + 2 * j), 0).astype(np.uint64)
    total += _word_sums(b, s, length // 2)
    odd = (length & 1) == 1
    total[odd] += (g.u8(s[odd] + length[odd] - 1) << 8).astype(np.uint64)
    ok = (total % np.uint64(0xFFFF) == 0) & (total != 0)
    c["checksum_ok"][rows] = ok.astype(np.int8)

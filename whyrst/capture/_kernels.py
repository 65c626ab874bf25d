"""The numba kernels behind :mod:`whyrst.capture.fast` (imported only when numba is installed).

Plain functions over a ``uint8`` buffer; :mod:`whyrst.capture.fast` compiles them. Their results
must equal those of the pure-Python readers and of the slow-path decoder in
:mod:`whyrst.capture.decode` (tests compare them); any case they do not handle exactly like the slow
path is left to it.
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True, boundscheck=False)

# Values repeated from decode.py: numba compiles module-level integers in as constants.
KIND_TCP, KIND_IP_OTHER, KIND_FRAGMENT = 1, 2, 3
U64_1E9 = np.uint64(1_000_000_000)


@jit
def be16(b: np.ndarray, p: int) -> int:
    return (np.int64(b[p]) << 8) | np.int64(b[p + 1])


@jit
def be32(b: np.ndarray, p: int) -> int:
    return (np.int64(b[p]) << 24) | (np.int64(b[p + 1]) << 16) | (np.int64(b[p + 2]) << 8) | np.int64(b[p + 3])


@jit
def u32(b: np.ndarray, p: int, big: bool) -> int:
    if big:
        return be32(b, p)
    return (np.int64(b[p + 3]) << 24) | (np.int64(b[p + 2]) << 16) | (np.int64(b[p + 1]) << 8) | np.int64(b[p])


# -- record layer ---------------------------------------------------------------------------------


@jit
def ts_to_ns(t: np.uint64, resol: int, offset_s: int) -> np.int64:
    """Same as ``pcapng.ts_to_ns``, in wrapping uint64 arithmetic."""
    ns = np.uint64(0)
    if resol & 0x80:
        k = resol & 0x7F
        if k < 64:
            sec = t >> np.uint64(k)
            frac = t - (sec << np.uint64(k))
        else:
            sec = np.uint64(0)
            frac = t
        if k <= 30:
            part = (frac * U64_1E9) >> np.uint64(k)
        elif k - 30 < 64:
            part = ((frac >> np.uint64(k - 30)) * U64_1E9) >> np.uint64(30)
        else:
            part = np.uint64(0)
        ns = sec * U64_1E9 + part
    elif resol <= 9:
        mult = np.uint64(1)
        for _ in range(9 - resol):
            mult = mult * np.uint64(10)
        ns = t * mult
    elif resol - 9 <= 19:
        div = np.uint64(1)
        for _ in range(resol - 9):
            div = div * np.uint64(10)
        ns = t // div
    ns = ns + np.uint64(offset_s) * U64_1E9
    return np.int64(ns)


@jit
def walk_pcap(b: np.ndarray, pos: int, max_n: int, big: bool, ns: bool, offs: np.ndarray, cap: np.ndarray,
              wire: np.ndarray, ts: np.ndarray) -> tuple[int, int, int]:
    end = len(b)
    n = 0
    mult = 1 if ns else 1000
    while n < max_n and pos + 16 <= end:
        caplen = u32(b, pos + 8, big)
        if caplen > 262144:
            return n, pos, 1
        if pos + 16 + caplen > end:
            break
        offs[n] = pos + 16
        cap[n] = caplen
        wire[n] = u32(b, pos + 12, big)
        ts[n] = u32(b, pos, big) * 1_000_000_000 + u32(b, pos + 4, big) * mult
        n += 1
        pos += 16 + caplen
    return n, pos, 0


@jit
def walk_epb(b: np.ndarray, pos: int, max_n: int, n0: int, big: bool, if_link: np.ndarray, if_resol: np.ndarray,
             if_offset: np.ndarray, n_if: int, iface_base: int, max_caplen: int, max_block: int, offs: np.ndarray,
             cap: np.ndarray, wire: np.ndarray, ts: np.ndarray, link: np.ndarray, iface: np.ndarray) -> tuple[int, int]:
    """Well-formed Enhanced Packet Blocks from ``pos``; stops at anything else for Python to handle."""
    end = len(b)
    k = 0
    while k < max_n and pos + 32 <= end:
        if u32(b, pos, big) != 6:
            break
        blen = u32(b, pos + 4, big)
        if blen < 32 or blen % 4 != 0 or blen > max_block or pos + blen > end:
            break
        if u32(b, pos + blen - 4, big) != blen:
            break
        ifn = u32(b, pos + 8, big)
        caplen = u32(b, pos + 20, big)
        if ifn >= n_if or caplen > max_caplen or 28 + caplen > blen - 4:
            break
        t = (np.uint64(u32(b, pos + 12, big)) << np.uint64(32)) | np.uint64(u32(b, pos + 16, big))
        i = n0 + k
        offs[i] = pos + 28
        cap[i] = caplen
        wire[i] = u32(b, pos + 24, big)
        ts[i] = ts_to_ns(t, np.int64(if_resol[ifn]), np.int64(if_offset[ifn]))
        link[i] = if_link[ifn]
        iface[i] = (iface_base + ifn) & 0xFFFF
        k += 1
        pos += blen
    return k, pos


# -- decoding -------------------------------------------------------------------------------------


@jit
def checksum(b: np.ndarray, w0: np.ndarray, w1: np.ndarray, s: int, length: int, ip: int, v6: bool) -> int:
    """1 when the TCP segment ``b[s:s+length]`` with the pseudo-header of the IP header at ``ip`` sums right.

    The segment is summed as native little-endian 16-bit words (``w0``: the buffer from an even offset,
    ``w1``: from an odd one), a loop the compiler vectorizes; the Internet checksum does not depend on
    byte order (RFC 1071), so the folded sum only needs its two bytes swapped back.
    """
    acc = np.int64(6) + length
    if v6:
        for j in range(ip + 8, ip + 40, 2):
            acc += be16(b, j)
    else:
        for j in range(ip + 12, ip + 20, 2):
            acc += be16(b, j)
    nw = length // 2
    words = np.uint64(0)
    if s & 1 == 0:
        base = s // 2
        for k in range(base, base + nw):
            words += np.uint64(w0[k])
    else:
        base = (s - 1) // 2
        for k in range(base, base + nw):
            words += np.uint64(w1[k])
    while words >> np.uint64(16):
        words = (words & np.uint64(0xFFFF)) + (words >> np.uint64(16))
    folded = np.int64(words)
    acc += ((folded & 0xFF) << 8) | (folded >> 8)
    if length & 1:
        acc += np.int64(b[s + length - 1]) << 8
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return 1 if acc == 0xFFFF else 0


@jit
def decode_all(b: np.ndarray, w0: np.ndarray, w1: np.ndarray, offs: np.ndarray, caps: np.ndarray, links: np.ndarray,
               slow: np.ndarray,
               kind: np.ndarray, ip_version: np.ndarray, sport: np.ndarray, dport: np.ndarray, seq: np.ndarray,
               ack: np.ndarray, flags: np.ndarray, win: np.ndarray, tcp_hdr_len: np.ndarray, payload_len: np.ndarray,
               ttl: np.ndarray, ip_id: np.ndarray, ip_df: np.ndarray, tos: np.ndarray, opt_mask: np.ndarray,
               opt_mss: np.ndarray, opt_wscale: np.ndarray, opt_sack_ok: np.ndarray, opt_sack_blocks: np.ndarray,
               opt_has_ts: np.ndarray, opt_ts_val: np.ndarray, opt_ts_ecr: np.ndarray,
               opt_mptcp_subtype: np.ndarray, payload_off: np.ndarray, payload_cap: np.ndarray,
               checksum_ok: np.ndarray, vlan: np.ndarray, src: np.ndarray, dst: np.ndarray, check: bool) -> None:
    for i in range(len(offs)):
        p = np.int64(offs[i])
        end = p + np.int64(caps[i])
        lt = np.int64(links[i])
        etype = -1
        q = p
        v = 0
        if lt == 1:  # Ethernet
            if end - p < 14:
                continue
            etype = be16(b, p + 12)
            q = p + 14
        elif lt == 113 or lt == 276:  # Linux cooked v1 / v2
            if lt == 113:
                if end - p < 16:
                    continue
                hatype = be16(b, p + 2)
                etype = be16(b, p + 14)
                q = p + 16
            else:
                if end - p < 20:
                    continue
                etype = be16(b, p)
                hatype = be16(b, p + 8)
                q = p + 20
            if hatype == 824:
                continue
            if etype == 4:
                slow[i] = 1
                continue
            if etype < 0x0600:
                continue
        elif lt == 101 or lt == 12 or lt == 14:  # raw IP
            if p >= end:
                continue
            v = np.int64(b[p]) >> 4
            if v != 4 and v != 6:
                continue
        elif lt == 0 or lt == 108:  # NULL / LOOP: address family
            if end - p < 4:
                continue
            fam = be32(b, p)
            fam_host = u32(b, p, False) if lt == 0 else -1
            if fam == 2 or fam_host == 2:
                v = 4
            elif fam == 24 or fam == 28 or fam == 30 or fam_host == 24 or fam_host == 28 or fam_host == 30:
                v = 6
            else:
                continue
            q = p + 4
        elif lt == 228:
            v = 4
        elif lt == 229:
            v = 6
        else:
            slow[i] = 1
            continue
        if etype >= 0:
            seen = False
            ok = True
            while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
                if q + 4 > end:
                    ok = False
                    break
                if not seen:
                    vlan[i] = be16(b, q) & 0x0FFF
                    seen = True
                etype = be16(b, q + 2)
                q += 4
            if not ok:
                continue
            if etype == 0x0800:
                v = 4
            elif etype == 0x86DD:
                v = 6
            elif etype <= 1500 or etype == 0x8847 or etype == 0x8848 or etype == 0x8864:
                slow[i] = 1
                continue
            else:
                continue
        if v == 4:
            if q + 20 > end:
                continue
            vhl = np.int64(b[q])
            if vhl >> 4 != 4:
                continue
            hl = (vhl & 0x0F) * 4
            if hl < 20 or q + hl > end:
                continue
            tlen = be16(b, q + 2)
            tso = tlen == 0
            if tso:
                total = end - q
            elif tlen < hl:
                continue
            else:
                total = tlen
            off = be16(b, q + 6)
            ip_version[i] = 4
            ttl[i] = b[q + 8]
            ip_id[i] = be16(b, q + 4)
            ip_df[i] = (off & 0x4000) != 0
            tos[i] = b[q + 1]
            for j in range(4):
                src[i, j] = b[q + 12 + j]
                dst[i, j] = b[q + 16 + j]
            if off & 0x1FFF:
                kind[i] = KIND_FRAGMENT
                continue
            kind[i] = KIND_IP_OTHER
            complete = (not tso) and (off & 0x2000) == 0 and q + total <= end
            proto = np.int64(b[q + 9])
            s = q + hl
            cend = min(end, q + total)
            length = total - hl
            v6 = False
        else:
            if q + 40 > end:
                continue
            if np.int64(b[q]) >> 4 != 6:
                continue
            ip_version[i] = 6
            ttl[i] = b[q + 7]
            ip_id[i] = -1
            tos[i] = (be32(b, q) >> 20) & 0xFF
            for j in range(16):
                src[i, j] = b[q + 8 + j]
                dst[i, j] = b[q + 24 + j]
            kind[i] = KIND_IP_OTHER
            s = q + 40
            plen = be16(b, q + 4)
            tso = plen == 0
            if tso:
                plen = end - s
            cend = min(end, s + plen)
            complete = (not tso) and s + plen <= end
            proto = np.int64(b[q + 6])
            if proto == 0 or proto == 43 or proto == 44 or proto == 51 or proto == 60:
                slow[i] = 1
                continue
            length = plen
            v6 = True
        if proto == 6:
            avail = cend - s
            if avail < 20:
                slow[i] = 1
                continue
            off_flags = be16(b, s + 12)
            thl = (off_flags >> 12) * 4
            if thl < 20 or thl > avail:
                slow[i] = 1
                continue
            kind[i] = KIND_TCP
            sport[i] = be16(b, s)
            dport[i] = be16(b, s + 2)
            seq[i] = be32(b, s + 4)
            ack[i] = be32(b, s + 8)
            flags[i] = off_flags & 0x0FFF
            win[i] = be16(b, s + 14)
            tcp_hdr_len[i] = thl
            payload_len[i] = max(0, length - thl)
            payload_off[i] = s + thl
            payload_cap[i] = cend - (s + thl)
            if thl > 20:
                mask = np.uint64(0)
                op = s + 20
                oend = s + thl
                while op < oend:
                    okind = np.int64(b[op])
                    if okind == 0:
                        mask |= np.uint64(1)
                        break
                    if okind == 1:
                        mask |= np.uint64(2)
                        op += 1
                        continue
                    if op + 1 >= oend:
                        break
                    olen = np.int64(b[op + 1])
                    if olen < 2 or op + olen > oend:
                        break
                    if okind < 64:
                        mask |= np.uint64(1) << np.uint64(okind)
                    if okind == 2 and olen == 4:
                        opt_mss[i] = be16(b, op + 2)
                    elif okind == 3 and olen == 3:
                        opt_wscale[i] = b[op + 2]
                    elif okind == 4 and olen == 2:
                        opt_sack_ok[i] = True
                    elif okind == 5:
                        opt_sack_blocks[i] = (olen - 2) // 8
                    elif okind == 8 and olen == 10:
                        opt_has_ts[i] = True
                        opt_ts_val[i] = be32(b, op + 2)
                        opt_ts_ecr[i] = be32(b, op + 6)
                    elif okind == 30 and olen >= 3:
                        opt_mptcp_subtype[i] = np.int64(b[op + 2]) >> 4
                    op += olen
                opt_mask[i] = mask
            if check and complete and length >= thl:
                checksum_ok[i] = checksum(b, w0, w1, s, length, q, v6)
            continue
        if proto == 4 or proto == 41 or proto == 47 or proto == 51:
            slow[i] = 1
            continue
        if proto == 17:
            if cend - s < 8:
                continue
            sp = be16(b, s)
            dp = be16(b, s + 2)
            if sp == 4789 or dp == 4789 or sp == 6081 or dp == 6081 or sp == 3544 or dp == 3544:
                slow[i] = 1
                continue
            u = s + 8
            size = length - 8
            if size >= 40 and cend - u >= 2:
                first = np.int64(b[u])
                if first >> 4 == 6 or (first == 0 and (b[u + 1] == 0 or b[u + 1] == 1)):
                    slow[i] = 1  # may be Teredo on another port: the slow path decides
                    continue
        continue

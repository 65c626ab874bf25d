"""The numba kernels behind :mod:`whyrst.capture.fast` (imported only when numba is installed).

Plain functions over a ``uint8`` buffer; :mod:`whyrst.capture.fast` compiles them. Their results
must equal those of the pure-Python readers and of the slow-path decoder in
:mod:`whyrst.capture.decode` (tests compare them); any case they do not handle exactly like the slow
path is left to it.
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils
from numba.extending import intrinsic

jit = numba.njit(cache=True, nogil=True, boundscheck=False)
# The layers a record is decoded through and the byte readers, inlined into the kernels that call them for every
# record (a call that returns a tuple of ten values went through memory, and kept the compiler from simplifying
# across it; a compiled call given an array counts a reference to it, two atomic operations a call, which LLVM's
# inlining leaves in: 2% of an analysis of 1M packets)
layer = numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")

# Values repeated from decode.py: numba compiles module-level integers in as constants.
KIND_TCP, KIND_IP_OTHER, KIND_FRAGMENT = 1, 2, 3
U64_1E9 = np.uint64(1_000_000_000)


# Positions in a buffer are never negative: read at an unsigned index, the compiler leaves out the code that
# makes a negative index count from the end (several instructions at every read of every header byte; the
# hottest loops index their arrays the same way).
@layer
def be16(b: np.ndarray, p: int) -> int:
    u = np.uint64(p)
    return (np.int64(b[u]) << 8) | np.int64(b[u + np.uint64(1)])


@layer
def be32(b: np.ndarray, p: int) -> int:
    u = np.uint64(p)
    return ((np.int64(b[u]) << 24) | (np.int64(b[u + np.uint64(1)]) << 16) | (np.int64(b[u + np.uint64(2)]) << 8)
            | np.int64(b[u + np.uint64(3)]))


@layer
def u32(b: np.ndarray, p: int, big: bool) -> int:
    if big:
        return be32(b, p)
    u = np.uint64(p)
    return ((np.int64(b[u + np.uint64(3)]) << 24) | (np.int64(b[u + np.uint64(2)]) << 16)
            | (np.int64(b[u + np.uint64(1)]) << 8) | np.int64(b[u]))


@intrinsic
def prefetch(typingctx: object, arr: numba.types.Array, at: numba.types.Integer) -> tuple[object, object]:
    """Ask the CPU to bring the cache line of ``arr[at]`` in (a hint: no fault, no result) while the kernel works
    on what it already has: a chunk's packet headers are each on a line of their own, and the first read of
    each waited for memory (half of the first pass's decoding time)."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        data = context.make_array(signature.args[0])(context, builder, args[0]).data
        byte = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        hint = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]),
                                              "llvm.prefetch.p0i8")
        # (a read, kept in every cache level, of data)
        builder.call(hint, [builder.bitcast(builder.gep(data, [args[1]]), byte), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return numba.types.void(arr, at), codegen


STREAM_AHEAD = 4096  # how far ahead of a walker the stream's lines are asked for (a 1M-packet file, out of cache:
# its record walk 0.103 -> 0.046 s; 2 KB ahead did as well, 4 KB is a page)


@layer
def prefetch_ahead(b: np.ndarray, start: int, stop: int) -> None:
    """Ask for the cache lines of ``b[start:stop]`` moved ``STREAM_AHEAD`` bytes on: called with each record a
    walker steps over, every line of the stream is asked for once, before the walk gets there (the hardware
    prefetcher does not follow records of varying sizes, and each record's position depends on the one before)."""
    line = np.uint64(start + STREAM_AHEAD) & ~np.uint64(63)
    while line < np.uint64(stop + STREAM_AHEAD):
        prefetch(b, line)
        line += np.uint64(64)


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
        prefetch_ahead(b, pos, pos + 16 + caplen)
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
        prefetch_ahead(b, pos, pos + blen)
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


# What the link layer makes of a record: no IP this decoder reads (the row stays OTHER), an IP header at an
# offset, or a case for the per-packet slow path (tunnels, MPLS, PPPoE, LLC/SNAP, unknown link types).
LINK_SKIP, LINK_IP, LINK_SLOW = 0, 1, 2
# What the IP layer makes of it: a bad header (the row stays OTHER), a non-first fragment, a header whose
# payload starts at ``s``, or IPv6 extension headers (the slow path).
IP_BAD, IP_FRAGMENT, IP_OK, IP_SLOW = 0, 1, 2, 3


@layer
def link_layer(b: np.ndarray, p: int, end: int, lt: int) -> tuple[int, int, int, int]:
    """(LINK_*, IP version, where the IP header starts, outermost VLAN id or -1) of the record ``b[p:end]``.

    The VLAN id is the first tag's even when the record turns out not to hold IP (the batch keeps it)."""
    etype = -1
    q = p
    v = 0
    if lt == 1:  # Ethernet
        if end - p < 14:
            return LINK_SKIP, 0, q, -1
        etype = be16(b, p + 12)
        q = p + 14
    elif lt == 113 or lt == 276:  # Linux cooked v1 / v2
        if lt == 113:
            if end - p < 16:
                return LINK_SKIP, 0, q, -1
            hatype = be16(b, p + 2)
            etype = be16(b, p + 14)
            q = p + 16
        else:
            if end - p < 20:
                return LINK_SKIP, 0, q, -1
            etype = be16(b, p)
            hatype = be16(b, p + 8)
            q = p + 20
        if hatype == 824:
            return LINK_SKIP, 0, q, -1
        if etype == 4:
            return LINK_SLOW, 0, q, -1
        if etype < 0x0600:
            return LINK_SKIP, 0, q, -1
    elif lt == 101 or lt == 12 or lt == 14:  # raw IP
        if p >= end:
            return LINK_SKIP, 0, q, -1
        v = np.int64(b[p]) >> 4
        if v != 4 and v != 6:
            return LINK_SKIP, 0, q, -1
        return LINK_IP, v, q, -1
    elif lt == 0 or lt == 108:  # NULL / LOOP: address family
        if end - p < 4:
            return LINK_SKIP, 0, q, -1
        fam = be32(b, p)
        fam_host = u32(b, p, False) if lt == 0 else -1
        if fam == 2 or fam_host == 2:
            v = 4
        elif fam == 24 or fam == 28 or fam == 30 or fam_host == 24 or fam_host == 28 or fam_host == 30:
            v = 6
        else:
            return LINK_SKIP, 0, q, -1
        return LINK_IP, v, p + 4, -1
    elif lt == 228:
        return LINK_IP, 4, q, -1
    elif lt == 229:
        return LINK_IP, 6, q, -1
    else:
        return LINK_SLOW, 0, q, -1
    vlan = -1
    while etype == 0x8100 or etype == 0x88A8 or etype == 0x9100:
        if q + 4 > end:
            return LINK_SKIP, 0, q, vlan
        if vlan < 0:
            vlan = be16(b, q) & 0x0FFF
        etype = be16(b, q + 2)
        q += 4
    if etype == 0x0800:
        return LINK_IP, 4, q, vlan
    if etype == 0x86DD:
        return LINK_IP, 6, q, vlan
    if etype <= 1500 or etype == 0x8847 or etype == 0x8848 or etype == 0x8864:
        return LINK_SLOW, 0, q, vlan
    return LINK_SKIP, 0, q, vlan


@layer
def ip_layer(b: np.ndarray, q: int, end: int, v: int) -> tuple[int, int, int, int, int, int, int, int, int, bool]:
    """(IP_*, TTL, IP ID (-1 for IPv6), DF, TOS, protocol, payload start, end of the captured payload,
    payload length (TSO-aware), whether the datagram is whole) of the IP header at ``b[q:end]``."""
    if v == 4:
        if q + 20 > end:
            return IP_BAD, 0, 0, 0, 0, 0, 0, 0, 0, False
        vhl = np.int64(b[q])
        if vhl >> 4 != 4:
            return IP_BAD, 0, 0, 0, 0, 0, 0, 0, 0, False
        hl = (vhl & 0x0F) * 4
        if hl < 20 or q + hl > end:
            return IP_BAD, 0, 0, 0, 0, 0, 0, 0, 0, False
        tlen = be16(b, q + 2)
        tso = tlen == 0
        if tso:
            total = end - q
        elif tlen < hl:
            return IP_BAD, 0, 0, 0, 0, 0, 0, 0, 0, False
        else:
            total = tlen
        off = be16(b, q + 6)
        status = IP_FRAGMENT if off & 0x1FFF else IP_OK
        complete = (not tso) and (off & 0x2000) == 0 and q + total <= end
        return (status, np.int64(b[q + 8]), be16(b, q + 4), (off >> 14) & 1, np.int64(b[q + 1]),
                np.int64(b[q + 9]), q + hl, min(end, q + total), total - hl, complete)
    if q + 40 > end or np.int64(b[q]) >> 4 != 6:
        return IP_BAD, 0, 0, 0, 0, 0, 0, 0, 0, False
    s = q + 40
    plen = be16(b, q + 4)
    tso = plen == 0
    if tso:
        plen = end - s
    proto = np.int64(b[q + 6])
    status = IP_SLOW if proto == 0 or proto == 43 or proto == 44 or proto == 51 or proto == 60 else IP_OK
    return (status, np.int64(b[q + 7]), -1, 0, (be32(b, q) >> 20) & 0xFF, proto, s, min(end, s + plen), plen,
            (not tso) and s + plen <= end)


@layer
def tcp_header_len(b: np.ndarray, s: int, cend: int) -> int:
    """The TCP header length of the segment at ``b[s:cend]``, or -1 when the header is cut or impossible
    (the slow path then tells a header cut by the snap length from garbage)."""
    if cend - s < 20:
        return -1
    thl = (be16(b, s + 12) >> 12) * 4
    if thl < 20 or thl > cend - s:
        return -1
    return thl


@layer
def other_is_slow(b: np.ndarray, proto: int, s: int, cend: int, length: int) -> bool:
    """Whether an IP payload other than TCP may carry TCP in a tunnel (the slow path decodes those)."""
    if proto == 4 or proto == 41 or proto == 47 or proto == 51:
        return True
    if proto == 17 and cend - s >= 8:
        sp = be16(b, s)
        dp = be16(b, s + 2)
        if sp == 4789 or dp == 4789 or sp == 6081 or dp == 6081 or sp == 3544 or dp == 3544:
            return True
        u = s + 8
        if length - 8 >= 40 and cend - u >= 2:
            first = np.int64(b[u])
            if first >> 4 == 6 or (first == 0 and (b[u + 1] == 0 or b[u + 1] == 1)):
                return True  # may be Teredo on another port: the slow path decides
    return False


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
        link, v, q, tag = link_layer(b, p, end, np.int64(links[i]))
        if tag >= 0:
            vlan[i] = tag
        if link != LINK_IP:
            if link == LINK_SLOW:
                slow[i] = 1
            continue
        status, hop, ident, df, tclass, proto, s, cend, length, complete = ip_layer(b, q, end, v)
        if status == IP_BAD:
            continue
        if status == IP_SLOW:
            slow[i] = 1
            continue
        ip_version[i] = v
        ttl[i] = hop
        ip_id[i] = ident
        ip_df[i] = df != 0
        tos[i] = tclass
        if v == 4:
            for j in range(4):
                src[i, j] = b[q + 12 + j]
                dst[i, j] = b[q + 16 + j]
        else:
            for j in range(16):
                src[i, j] = b[q + 8 + j]
                dst[i, j] = b[q + 24 + j]
        if status == IP_FRAGMENT:
            kind[i] = KIND_FRAGMENT
            continue
        kind[i] = KIND_IP_OTHER
        if proto == 6:
            thl = tcp_header_len(b, s, cend)
            if thl < 0:
                slow[i] = 1
                continue
            off_flags = be16(b, s + 12)
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
                checksum_ok[i] = checksum(b, w0, w1, s, length, q, v == 6)
            continue
        if other_is_slow(b, proto, s, cend, length):
            slow[i] = 1

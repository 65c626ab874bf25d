"""The numba kernels behind :mod:`whyrst.tcp.fasttrack` (imported only when numba is installed).

They are :class:`whyrst.tcp.track.Tracker`'s per-packet logic, rule for rule and in the same order (the
tests compare every field of every connection with the Python tracker's), on plain numpy tables that
Python owns and grows:

* a connection record is a row of ``R`` (int64 columns, see :mod:`whyrst.tcp._track_layout`), its two
  endpoints rows ``2 * rec`` and ``2 * rec + 1`` of ``E``, their TTL counts, IPv4 IDs and out-of-order
  blocks in side tables, its history letters a row of ``HIST``, its head and ring of packets a row of
  row ids in ``HR`` (a row id numbers the tracker's TCP packets from 0);
* the live connections are found by their canonical tuple in an open-addressing table (linear probing,
  deletion by backward shift) whose slots hold ``rec + 1``; dictionary order, which decides the order in
  which the Python tracker ends connections, is the order of the records' serial numbers;
* per packet the kernel writes the direction and the relative numbers a :class:`PacketRef` holds; per RST
  an event (and the row ids of the packets before it); per packet after a RST an ``after`` event; the
  records of finished connections that had a RST stay PENDING until Python has read them.

A kernel checks at each packet, before changing anything, that every table has room for what the packet
may add, and otherwise returns where it stopped: Python grows the table and calls again from there.
"""

from __future__ import annotations

import numba
import numpy as np

from whyrst.tcp._prepass_kernels import flow_hash
from whyrst.tcp._track_layout import (
    A_CTX,
    A_ROW,
    AFTER_SLOTS,
    BLOCKS,
    C_AFTER_CNT,
    C_AFTER_CTX,
    C_AFTER_N,
    C_AFTER_TS,
    C_ATTEMPT_NS,
    C_CLOSE_DELETE_NS,
    C_ELIDED,
    C_ENCAP,
    C_FIRST_FRAME,
    C_FIRST_ROW,
    C_FLIPPED,
    C_HALF_OPEN,
    C_HAS_PREV,
    C_HASH,
    C_HEAD_N,
    C_HIPORT,
    C_HIST_LEN,
    C_HIST_SEEN,
    C_INACTIVITY_NS,
    C_IS_PARTIAL,
    C_LAST_NS,
    C_LIVE,
    C_LOPORT,
    C_N_ORIGINS,
    C_N_PACKETS,
    C_NRESETS,
    C_ORIGIN0,
    C_PREV_FIRST_FRAME,
    C_RING_N,
    C_RING_START,
    C_SERIAL,
    C_START_NS,
    C_TOUCHED,
    C_VERSION,
    C_VLAN,
    DONE,
    E_ACK64,
    E_BLK,
    E_CHK_TH,
    E_DID_CLOSE,
    E_FIN_CNT,
    E_FIN_SEQ,
    E_GAP_CNT,
    E_GAP_TH,
    E_HLF,
    E_HLR,
    E_HLS,
    E_IP_BYTES,
    E_LAST64,
    E_LAST_NS,
    E_NBLK,
    E_PAYLOAD_BYTES,
    E_PKTS,
    E_PORT,
    E_PREV_STATE,
    E_REASSEM,
    E_RST_CNT,
    E_RXMIT_CNT,
    E_RXMIT_TH,
    E_SEEN_FIRST,
    E_START64,
    E_STATE,
    E_TRIM,
    E_WIN0_CNT,
    E_WIN0_TH,
    E_WSCALE,
    EVICT,
    F_LAST_TS_VAL,
    F_MADE,
    F_MSS,
    F_NIPIDS,
    F_NTTLS,
    F_PACKETS,
    F_SACK_OK,
    F_SYN_OPT_MASK,
    F_SYN_WIN,
    F_TTL,
    F_TTL_N,
    F_USES_TS,
    F_WSCALE,
    F_ZERO_IPIDS,
    FP_IPIDS,
    FP_TTLS,
    FREE,
    FULL_BLOCKS,
    FULL_EVENTS,
    FULL_HISTORY,
    FULL_RECORDS,
    FULL_TABLE,
    HEAD,
    HISTORY_PER_PACKET,
    HR_COLS,
    LIVE,
    PENDING,
    RING,
    ST_BASE,
    ST_CTX,
    ST_EPOCH,
    ST_EVICTED,
    ST_EVICTED_HALF,
    ST_FINISHED,
    ST_MAX_CONNS,
    ST_MAX_HALF,
    ST_NAFTER,
    ST_NBEFORE,
    ST_NBFREE,
    ST_NCONNS,
    ST_NDROP,
    ST_NEV,
    ST_NEXT_SWEEP,
    ST_NFIN,
    ST_NFREE,
    ST_NHALF,
    ST_NOW,
    ST_NTOUCH,
    ST_PREV_FF,
    ST_RESUME,
    ST_SERIAL,
    ST_SINCE_SWEEP,
    ST_TCP,
    V_BEFORE_N,
    V_BEFORE_OFF,
    V_CTX,
    V_ELIDED,
    V_INDEX,
    V_PEER_STATE,
    V_REC,
    V_ROW,
    V_SENDER_STATE,
    V_SERIAL,
)
from whyrst.tcp.state import EP, step_for

jit = numba.njit(cache=True, nogil=True, boundscheck=False)

NS = 1_000_000_000
M32 = 0xFFFFFFFF
MOD32 = 1 << 32
HALF32 = 1 << 31
TOO_LARGE_SEQ_DELTA = 1_048_576
SYN_TIMEOUT_NS = 5 * NS
SESSION_TIMER_NS = 6 * NS
LINGER_NS = 5 * NS
CLOSE_DELAY_NS = 5 * NS
ATTEMPT_DELAY_NS = 5 * NS
INACTIVITY_HANDSHAKE_NS = 60 * NS
INACTIVITY_TIMEOUT_NS = 300 * NS
AFTER_PACKETS = 8
AFTER_NS = 30 * NS
SWEEP_MIN = 4096
FIN, SYN, RST, ACK = 0x001, 0x002, 0x004, 0x010
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = (int(state) for state in EP)
H_SYN, H_FIN, H_RST, H_FIN_RST, H_DATA, H_ACK, H_MULTI = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20, 0x40
CH_S, CH_H, CH_F, CH_R, CH_I, CH_Q, CH_D, CH_A = 83, 72, 70, 82, 73, 81, 68, 65
CH_W, CH_T, CH_G, CH_FLIP = 87, 84, 71, 94

@jit
def _seq_delta(a: int, b: int) -> int:
    d = (a - b) & M32
    return d - MOD32 if d >= HALF32 else d


@jit
def _unwrap(value32: int, near64: int) -> int:
    return near64 + _seq_delta(value32, near64 & M32)


@jit
def _words(addr: np.ndarray, i: int) -> tuple[np.uint64, np.uint64]:
    """An address's 16 bytes as two big-endian words: they compare as the bytes do."""
    w0 = np.uint64(0)
    w1 = np.uint64(0)
    for k in range(8):
        w0 = (w0 << np.uint64(8)) | np.uint64(addr[i, k])
        w1 = (w1 << np.uint64(8)) | np.uint64(addr[i, 8 + k])
    return w0, w1


# -- the endpoint state machine: whyrst.tcp.state's own table ----------------------------------------------

def _step_table() -> np.ndarray:
    """Every outcome of :func:`whyrst.tcp.state.step_for`, by (control bits, payload or not, direction) and the
    two states: the kernels read the Python state machine's transitions (numba compiles a module's array in as
    a constant; the build ahead of time counts ``tcp/state.py`` among its sources) instead of a copy of its rules."""
    table = np.zeros((64, len(EP), len(EP), 5), dtype=np.int8)
    for bits in range(64):
        syn, ack, fin, rst, payload, is_orig = (bool(bits >> k & 1) for k in range(6))
        for me in EP:
            for peer in EP:
                out = step_for(syn, ack, fin, rst, payload, is_orig, me, peer)
                table[bits, me, peer] = (out.me, out.peer, out.close, out.flip, out.revive_peer)
    return table


STEPS = _step_table()


@jit
def step(syn: bool, ack: bool, fin: bool, rst: bool, payload: bool, is_orig: bool, me0: int, peer0: int
         ) -> tuple[int, int, bool, bool, bool]:
    """(me, peer, close, flip, revive_peer) after the sender's segment."""
    bits = (np.int64(syn) | (np.int64(ack) << 1) | (np.int64(fin) << 2) | (np.int64(rst) << 3)
            | (np.int64(payload) << 4) | (np.int64(is_orig) << 5))
    out = STEPS[bits, me0, peer0]
    return np.int64(out[0]), np.int64(out[1]), out[2] != 0, out[3] != 0, out[4] != 0


# -- the connection table ---------------------------------------------------------------------------------

@jit
def _find(tb: np.ndarray, R: np.ndarray, K: np.ndarray, h: np.uint64, version: int, lo0: np.uint64,
          lo1: np.uint64, lop: int, hi0: np.uint64, hi1: np.uint64, hip: int) -> int:
    mask = len(tb) - 1
    j = np.int64(h & np.uint64(mask))
    while tb[j] != 0:
        rec = tb[j] - 1
        if (R[rec, C_HASH] == np.int64(h) and R[rec, C_VERSION] == version and K[rec, 0] == lo0
                and K[rec, 1] == lo1 and K[rec, 2] == hi0 and K[rec, 3] == hi1 and R[rec, C_LOPORT] == lop
                and R[rec, C_HIPORT] == hip):
            return rec
        j = (j + 1) & mask
    return -1


@jit
def _insert(tb: np.ndarray, R: np.ndarray, rec: int) -> None:
    mask = len(tb) - 1
    j = R[rec, C_HASH] & mask
    while tb[j] != 0:
        j = (j + 1) & mask
    tb[j] = rec + 1


@jit
def _delete(tb: np.ndarray, R: np.ndarray, rec: int) -> None:
    mask = len(tb) - 1
    i = R[rec, C_HASH] & mask
    while tb[i] != rec + 1:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        if tb[j] == 0:
            break
        k = R[tb[j] - 1, C_HASH] & mask  # where the entry at j would like to be
        if (i < k <= j) if i <= j else (i < k or k <= j):
            continue
        tb[i] = tb[j]
        i = j
    tb[i] = 0


@jit
def track_rehash(tb: np.ndarray, R: np.ndarray) -> None:
    """Put every live record in ``tb`` (empty, larger)."""
    for rec in range(R.shape[0]):
        if R[rec, C_LIVE] == LIVE:
            _insert(tb, R, rec)


# -- history ----------------------------------------------------------------------------------------------

@jit
def _add_history(R: np.ndarray, HIST: np.ndarray, rec: int, code: int, is_orig: bool) -> None:
    n = R[rec, C_HIST_LEN]
    HIST[rec, n] = code if is_orig else code + 32
    R[rec, C_HIST_LEN] = n + 1


@jit
def _check_history(R: np.ndarray, HIST: np.ndarray, rec: int, mask: int, code: int, is_orig: bool) -> bool:
    if not is_orig:
        mask <<= 16
    if R[rec, C_HIST_SEEN] & mask:
        return True
    R[rec, C_HIST_SEEN] |= mask
    _add_history(R, HIST, rec, code, is_orig)
    return False


@jit
def _scaled(E: np.ndarray, ep: int, cnt: int, th: int) -> bool:
    E[ep, cnt] += 1
    if E[ep, cnt] == E[ep, th]:
        E[ep, th] *= 10
        return True
    return False


@jit
def _flip(R: np.ndarray, HIST: np.ndarray, rec: int) -> None:
    R[rec, C_FLIPPED] ^= 1
    R[rec, C_IS_PARTIAL] = 0
    n = R[rec, C_HIST_LEN]
    HIST[rec, n] = CH_FLIP
    R[rec, C_HIST_LEN] = n + 1


# -- endpoints --------------------------------------------------------------------------------------------

@jit
def _set_state(E: np.ndarray, ep: int, new: int) -> None:
    if new != E[ep, E_STATE]:
        E[ep, E_PREV_STATE] = E[ep, E_STATE]
        E[ep, E_STATE] = new


@jit
def _init_seq(E: np.ndarray, ep: int, start32: int, last32: int) -> None:
    s = start32 & M32
    E[ep, E_START64] = s
    E[ep, E_ACK64] = s
    E[ep, E_LAST64] = _unwrap(last32, s)


@jit
def _init_endpoint(E: np.ndarray, ep: int, syn: bool, seq: int, seq_past: int) -> None:
    st = E[ep, E_STATE]
    if st == INACTIVE:
        if syn:
            _init_seq(E, ep, seq, seq_past)
        else:
            _init_seq(E, ep, (seq - 1) & M32, seq)
    elif st in (SYN_SENT, SYN_ACK_SENT, ESTABLISHED, PARTIAL):
        if syn and (st in (ESTABLISHED, PARTIAL) or seq != (E[ep, E_START64] & M32)):
            _init_seq(E, ep, seq, seq_past)
    elif st == RESET and syn and E[ep, E_PREV_STATE] == INACTIVE:
        _init_seq(E, ep, seq, seq_past)


@jit
def _init_endpoint_row(E: np.ndarray, ep: int, port: int) -> None:
    E[ep, :] = 0
    E[ep, E_PORT] = port
    E[ep, E_RXMIT_TH] = E[ep, E_WIN0_TH] = E[ep, E_GAP_TH] = E[ep, E_CHK_TH] = 1
    E[ep, E_REASSEM] = 1
    E[ep, E_TRIM] = 1
    E[ep, E_BLK] = -1
    E[ep, F_TTL] = -1
    E[ep, F_NTTLS] = -1
    E[ep, F_SYN_OPT_MASK] = -1
    E[ep, F_SYN_WIN] = -1
    E[ep, F_MSS] = -1
    E[ep, F_WSCALE] = -1
    E[ep, F_LAST_TS_VAL] = -1


@jit
def _observe(E: np.ndarray, FTTL: np.ndarray, FTN: np.ndarray, FIPID: np.ndarray, ep: int, ttl: int,
             ip_id: int, ts_val: int) -> None:
    """Fingerprint.observe."""
    E[ep, F_MADE] = 1
    E[ep, F_PACKETS] += 1
    nt = E[ep, F_NTTLS]
    if nt < 0:
        if E[ep, F_TTL_N] == 0 or ttl == E[ep, F_TTL]:
            E[ep, F_TTL] = ttl
            E[ep, F_TTL_N] += 1
        else:
            FTTL[ep, 0] = E[ep, F_TTL]
            FTN[ep, 0] = E[ep, F_TTL_N]
            FTTL[ep, 1] = ttl
            FTN[ep, 1] = 1
            E[ep, F_NTTLS] = 2
    else:
        found = -1
        for k in range(nt):
            if FTTL[ep, k] == ttl:
                found = k
                break
        if found >= 0:
            FTN[ep, found] += 1
        elif nt < FP_TTLS:
            FTTL[ep, nt] = ttl
            FTN[ep, nt] = 1
            E[ep, F_NTTLS] = nt + 1
    if ip_id >= 0:
        if ip_id == 0:
            E[ep, F_ZERO_IPIDS] += 1
        n = E[ep, F_NIPIDS]
        if n >= FP_IPIDS:
            for k in range(FP_IPIDS - 1):
                FIPID[ep, k] = FIPID[ep, k + 1]
            FIPID[ep, FP_IPIDS - 1] = ip_id
        else:
            FIPID[ep, n] = ip_id
            E[ep, F_NIPIDS] = n + 1
    if ts_val >= 0:
        E[ep, F_USES_TS] = 1
        E[ep, F_LAST_TS_VAL] = ts_val


# -- out-of-order blocks (a chunk of BLK per endpoint that has any, in the order the Python list has) -------

@jit
def _blocks_sort(BLK: np.ndarray, c: int, n: int) -> None:
    for a in range(1, n):
        lo, hi = BLK[c, a, 0], BLK[c, a, 1]
        b = a - 1
        while b >= 0 and (BLK[c, b, 0] > lo or (BLK[c, b, 0] == lo and BLK[c, b, 1] > hi)):
            BLK[c, b + 1, 0] = BLK[c, b, 0]
            BLK[c, b + 1, 1] = BLK[c, b, 1]
            b -= 1
        BLK[c, b + 1, 0] = lo
        BLK[c, b + 1, 1] = hi


@jit
def _blocks_free(E: np.ndarray, st: np.ndarray, BFREE: np.ndarray, ep: int) -> None:
    c = E[ep, E_BLK]
    if c >= 0:
        BFREE[st[ST_NBFREE]] = c
        st[ST_NBFREE] += 1
        E[ep, E_BLK] = -1
        E[ep, E_NBLK] = 0


@jit
def _absorb(E: np.ndarray, st: np.ndarray, BLK: np.ndarray, BFREE: np.ndarray, ep: int) -> None:
    n = E[ep, E_NBLK]
    if n == 0:
        return
    c = E[ep, E_BLK]
    _blocks_sort(BLK, c, n)
    keep = 0
    for a in range(n):
        lo, hi = BLK[c, a, 0], BLK[c, a, 1]
        if lo <= E[ep, E_REASSEM]:
            E[ep, E_REASSEM] = max(E[ep, E_REASSEM], hi)
        else:
            BLK[c, keep, 0] = lo
            BLK[c, keep, 1] = hi
            keep += 1
    E[ep, E_NBLK] = keep
    if keep == 0:
        _blocks_free(E, st, BFREE, ep)


@jit
def _data_sent(E: np.ndarray, st: np.ndarray, BLK: np.ndarray, BFREE: np.ndarray, ep: int, rel: int,
               length: int) -> None:
    acked = E[ep, E_ACK64] - E[ep, E_START64]
    lo, hi = rel, rel + length
    if lo < acked:
        if hi <= acked:
            return
        lo = acked
    up = E[ep, E_REASSEM]
    if lo <= up < hi:
        E[ep, E_REASSEM] = hi
        _absorb(E, st, BLK, BFREE, ep)
    elif lo > up and E[ep, E_NBLK] < BLOCKS:
        c = E[ep, E_BLK]
        if c < 0:
            st[ST_NBFREE] -= 1
            c = BFREE[st[ST_NBFREE]]
            E[ep, E_BLK] = c
        n = E[ep, E_NBLK]
        BLK[c, n, 0] = lo
        BLK[c, n, 1] = hi
        E[ep, E_NBLK] = n + 1


@jit
def _ack_received(R: np.ndarray, E: np.ndarray, HIST: np.ndarray, st: np.ndarray, BLK: np.ndarray,
                  BFREE: np.ndarray, rec: int, sender: int, other: int, sender_is_orig: bool, rel_ack: int) -> None:
    """``sender`` is the endpoint whose data the ACK acknowledges."""
    if E[sender, E_FIN_CNT] > 0 and rel_ack >= E[sender, E_FIN_SEQ]:
        rel_ack = E[sender, E_FIN_SEQ] - 1
    if rel_ack <= E[sender, E_TRIM]:
        return
    E[sender, E_TRIM] = rel_ack
    if rel_ack <= E[sender, E_REASSEM]:
        return
    partial_start = rel_ack <= 2 and R[rec, C_IS_PARTIAL] != 0
    if not partial_start:
        s1, p1 = E[sender, E_STATE], E[sender, E_PREV_STATE]
        s2, p2 = E[other, E_STATE], E[other, E_PREV_STATE]
        clean = ((s1 == ESTABLISHED or (s1 == CLOSED and p1 == ESTABLISHED))
                 and (s2 == ESTABLISHED or (s2 == CLOSED and p2 == ESTABLISHED)))
        n = E[sender, E_NBLK]
        c = E[sender, E_BLK]
        if n:
            _blocks_sort(BLK, c, n)
        holes = 0
        upto = E[sender, E_REASSEM]
        for a in range(n):
            lo, hi = BLK[c, a, 0], BLK[c, a, 1]
            if lo >= rel_ack:
                break
            if lo > upto:
                holes += 1
            upto = max(upto, hi)
        if upto < rel_ack:
            holes += 1
        if clean:
            for _ in range(holes):
                if _scaled(E, sender, E_GAP_CNT, E_GAP_TH):
                    _add_history(R, HIST, rec, CH_G, sender_is_orig)
    E[sender, E_REASSEM] = max(E[sender, E_REASSEM], rel_ack)
    n = E[sender, E_NBLK]
    if n:
        c = E[sender, E_BLK]
        keep = 0
        for a in range(n):
            if BLK[c, a, 1] > E[sender, E_REASSEM]:
                BLK[c, keep, 0] = BLK[c, a, 0]
                BLK[c, keep, 1] = BLK[c, a, 1]
                keep += 1
        E[sender, E_NBLK] = keep
        if keep == 0:
            _blocks_free(E, st, BFREE, sender)
    _absorb(E, st, BLK, BFREE, sender)


# -- connections --------------------------------------------------------------------------------------------

@jit
def _expired(R: np.ndarray, E: np.ndarray, rec: int, ts: int) -> bool:
    """Tracker._expired."""
    cd = R[rec, C_CLOSE_DELETE_NS]
    if cd >= 0 and ts >= cd:
        return True
    o = 2 * rec + R[rec, C_FLIPPED]
    r = 2 * rec + 1 - R[rec, C_FLIPPED]
    os_, rs = E[o, E_STATE], E[r, E_STATE]
    at = R[rec, C_ATTEMPT_NS]
    if at >= 0 and ts >= at and os_ in (SYN_SENT, SYN_ACK_SENT) and rs == INACTIVE:
        return True
    last = R[rec, C_LAST_NS]
    if ts - last >= R[rec, C_INACTIVITY_NS]:
        return True
    linger = last + LINGER_NS
    if ts <= linger:
        return False
    od, rd = E[o, E_DID_CLOSE] != 0, E[r, E_DID_CLOSE] != 0
    closable = ((od or rd) and ((od and rd) or os_ in (RESET, INACTIVE) or rs in (RESET, INACTIVE))) or (
        os_ == INACTIVE and rs == INACTIVE)
    if closable:
        for k in range(R[rec, C_N_ORIGINS]):
            origin = R[rec, C_ORIGIN0 + k]
            m = 0 if origin > linger else (linger - origin) // SESSION_TIMER_NS + 1
            if origin + m * SESSION_TIMER_NS <= ts:
                return True
    return False


@jit
def _is_reuse(R: np.ndarray, E: np.ndarray, rec: int, flags: int, seq: int) -> bool:
    """Tracker._is_reuse: a SYN that starts a new connection on the tuple."""
    if not (flags & SYN):
        return False
    o = 2 * rec + R[rec, C_FLIPPED]
    r = 2 * rec + 1 - R[rec, C_FLIPPED]
    conn_orig = o
    if flags & ACK:
        if E[o, E_STATE] != INACTIVE:
            return False
        conn_orig = r
    if not (E[o, E_DID_CLOSE] or E[r, E_DID_CLOSE]):
        if seq == (E[conn_orig, E_START64] & M32):
            return False
        if (not (flags & ACK) and E[conn_orig, E_STATE] == SYN_ACK_SENT and E[r, E_STATE] == INACTIVE
                and seq == (E[r, E_START64] & M32)):
            return False
    return True


@jit
def _mark_rows(R: np.ndarray, HR: np.ndarray, rec: int, need: np.ndarray, base: int) -> None:
    """Flag the rows of the current batch among the record's head and ring (Python makes their PacketRefs)."""
    for k in range(R[rec, C_HEAD_N]):
        r = HR[rec, k] - base
        if r >= 0:
            need[r] = 1
    for k in range(R[rec, C_RING_N]):
        r = HR[rec, HEAD + (R[rec, C_RING_START] + k) % RING] - base
        if r >= 0:
            need[r] = 1


@jit
def _finish(R: np.ndarray, E: np.ndarray, HR: np.ndarray, st: np.ndarray, BFREE: np.ndarray, FREE_: np.ndarray,
            tb: np.ndarray, fin: np.ndarray, drop: np.ndarray, need: np.ndarray, rec: int) -> None:
    """Tracker._finish and the removal from the table: a record with RSTs waits for Python (PENDING)."""
    R[rec, C_AFTER_N] = 0
    if R[rec, C_HALF_OPEN]:
        R[rec, C_HALF_OPEN] = 0
        st[ST_NHALF] -= 1
    _delete(tb, R, rec)
    st[ST_NCONNS] -= 1
    st[ST_FINISHED] += 1
    if R[rec, C_NRESETS] > 0:
        R[rec, C_LIVE] = PENDING
        fin[st[ST_NFIN]] = rec
        st[ST_NFIN] += 1
        _mark_rows(R, HR, rec, need, st[ST_BASE])
    else:
        if R[rec, C_FIRST_ROW] < st[ST_BASE]:  # Python may keep PacketRefs of it from earlier batches
            drop[st[ST_NDROP]] = R[rec, C_SERIAL]
            st[ST_NDROP] += 1
        _free_record(R, E, st, BFREE, FREE_, rec)


@jit
def _free_record(R: np.ndarray, E: np.ndarray, st: np.ndarray, BFREE: np.ndarray, FREE_: np.ndarray,
                 rec: int) -> None:
    R[rec, C_LIVE] = FREE
    _blocks_free(E, st, BFREE, 2 * rec)
    _blocks_free(E, st, BFREE, 2 * rec + 1)
    FREE_[st[ST_NFREE]] = rec
    st[ST_NFREE] += 1


@jit
def track_release(R: np.ndarray, E: np.ndarray, st: np.ndarray, BFREE: np.ndarray, FREE_: np.ndarray, fin: np.ndarray
            ) -> None:
    """Free the PENDING records Python has read (``fin[:st[ST_NFIN]]``)."""
    for k in range(st[ST_NFIN]):
        _free_record(R, E, st, BFREE, FREE_, fin[k])
    st[ST_NFIN] = 0


@jit
def _sweep(R: np.ndarray, E: np.ndarray, HR: np.ndarray, st: np.ndarray, BFREE: np.ndarray, FREE_: np.ndarray,
           tb: np.ndarray, fin: np.ndarray, drop: np.ndarray, need: np.ndarray) -> None:
    """Tracker._sweep: the expired connections end in the order they were made."""
    now = st[ST_NOW]
    st[ST_NEXT_SWEEP] = now + NS
    if st[ST_NCONNS] < SWEEP_MIN:
        return
    st[ST_SINCE_SWEEP] = 0
    n = R.shape[0]
    recs = np.empty(st[ST_NCONNS], dtype=np.int64)
    k = 0
    for rec in range(n):
        if R[rec, C_LIVE] == LIVE and _expired(R, E, rec, now):
            recs[k] = rec
            k += 1
    _finish_in_order(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, recs[:k])


@jit
def _finish_in_order(R: np.ndarray, E: np.ndarray, HR: np.ndarray, st: np.ndarray, BFREE: np.ndarray,
                     FREE_: np.ndarray, tb: np.ndarray, fin: np.ndarray, drop: np.ndarray, need: np.ndarray,
                     recs: np.ndarray) -> None:
    serials = np.empty(len(recs), dtype=np.int64)
    for k in range(len(recs)):
        serials[k] = R[recs[k], C_SERIAL]
    for k in np.argsort(serials):
        _finish(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, recs[k])


@jit
def _evict_half_open(R: np.ndarray, E: np.ndarray, HR: np.ndarray, st: np.ndarray, BFREE: np.ndarray,
                     FREE_: np.ndarray, tb: np.ndarray, fin: np.ndarray, drop: np.ndarray, need: np.ndarray) -> None:
    """Tracker._evict_half_open: the oldest tenth of the half-open connections."""
    k = max(1, st[ST_MAX_HALF] // 10)
    recs = np.empty(st[ST_NHALF], dtype=np.int64)
    serials = np.empty(st[ST_NHALF], dtype=np.int64)
    n = 0
    for rec in range(R.shape[0]):
        if R[rec, C_LIVE] == LIVE and R[rec, C_HALF_OPEN]:
            recs[n] = rec
            serials[n] = R[rec, C_SERIAL]
            n += 1
    order = np.argsort(serials[:n])
    now = st[ST_NOW]
    for j in range(min(k, n)):
        rec = recs[order[j]]
        R[rec, C_HALF_OPEN] = 0
        st[ST_NHALF] -= 1
        if not _expired(R, E, rec, now):
            st[ST_EVICTED] += 1
            st[ST_EVICTED_HALF] += 1
        _finish(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, rec)


@jit
def track_evict(R: np.ndarray, E: np.ndarray, HR: np.ndarray, st: np.ndarray, BFREE: np.ndarray, FREE_: np.ndarray,
                tb: np.ndarray, fin: np.ndarray, drop: np.ndarray, need: np.ndarray, victims: np.ndarray) -> None:
    """The end of Tracker._evict: the records Python picked end, in its order, counted as evicted."""
    for k in range(len(victims)):
        _finish(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, victims[k])
        st[ST_EVICTED] += 1


@jit
def track_close(R: np.ndarray, E: np.ndarray, HR: np.ndarray, st: np.ndarray, BFREE: np.ndarray, FREE_: np.ndarray,
          tb: np.ndarray, fin: np.ndarray, drop: np.ndarray, need: np.ndarray) -> None:
    """Tracker.close: every connection still open ends, in the order they were made."""
    for rec in range(R.shape[0]):
        R[rec, C_HALF_OPEN] = 0
    st[ST_NHALF] = 0
    recs = np.empty(st[ST_NCONNS], dtype=np.int64)
    k = 0
    for rec in range(R.shape[0]):
        if R[rec, C_LIVE] == LIVE:
            recs[k] = rec
            k += 1
    _finish_in_order(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, recs[:k])


@jit
def track_carry(R: np.ndarray, HR: np.ndarray, st: np.ndarray, touched: np.ndarray, need: np.ndarray,
          out_serial: np.ndarray, out_ids: np.ndarray, out_n: np.ndarray) -> int:
    """The head and ring of every live connection the last batch touched (Python keeps their PacketRefs for
    the RSTs of later batches); returns how many. Flags those rows in ``need``."""
    epoch = st[ST_EPOCH]
    base = st[ST_BASE]
    m = 0
    for t in range(st[ST_NTOUCH]):
        rec = touched[t]
        if R[rec, C_LIVE] != LIVE or R[rec, C_TOUCHED] != epoch:
            continue
        R[rec, C_TOUCHED] = -2  # (once: a record can be listed twice)
        out_serial[m] = R[rec, C_SERIAL]
        n = 0
        for k in range(R[rec, C_HEAD_N]):
            out_ids[m, n] = HR[rec, k]
            n += 1
        for k in range(R[rec, C_RING_N]):
            out_ids[m, n] = HR[rec, HEAD + (R[rec, C_RING_START] + k) % RING]
            n += 1
        out_n[m] = n
        _mark_rows(R, HR, rec, need, base)
        m += 1
    return m


@jit
def track_feed(frame: np.ndarray, ts_ns: np.ndarray, version: np.ndarray, sport: np.ndarray, dport: np.ndarray,
         seq_: np.ndarray, ack_: np.ndarray, flags_: np.ndarray, win_: np.ndarray, payload_len: np.ndarray,
         ttl_: np.ndarray, ip_id_: np.ndarray, has_ts: np.ndarray, ts_val_: np.ndarray, opt_mask: np.ndarray,
         wscale_: np.ndarray, mss_: np.ndarray, sack_ok: np.ndarray, payload_cap: np.ndarray, wire_len: np.ndarray,
         encap: np.ndarray, vlan: np.ndarray, src: np.ndarray, dst: np.ndarray, likely: np.ndarray, start: int,
         st: np.ndarray, tb: np.ndarray, R: np.ndarray, K: np.ndarray, E: np.ndarray, EA: np.ndarray,
         HR: np.ndarray, HIST: np.ndarray, FTTL: np.ndarray, FTN: np.ndarray, FIPID: np.ndarray, BLK: np.ndarray,
         BFREE: np.ndarray, FREE_: np.ndarray, o_orig: np.ndarray, o_rel_seq: np.ndarray, o_rel_ack: np.ndarray,
         need: np.ndarray, ev: np.ndarray, before: np.ndarray, after: np.ndarray, fin: np.ndarray,
         drop: np.ndarray, touched: np.ndarray) -> tuple[int, int]:
    """The TCP rows of one batch from ``start``: returns (next row, DONE or what must grow)."""
    n = len(ts_ns)
    base = st[ST_BASE]
    epoch = st[ST_EPOCH]
    for i in range(start, n):
        # room for everything this packet may add (nothing has changed yet: Python grows and calls again)
        if 2 * (st[ST_NCONNS] + 1) > len(tb):
            return i, FULL_TABLE
        if st[ST_NFREE] < 1:
            return i, FULL_RECORDS
        if st[ST_NBFREE] < 1:
            return i, FULL_BLOCKS
        if (st[ST_NEV] + 1 > len(ev) or st[ST_NBEFORE] + HR_COLS > len(before)
                or st[ST_NAFTER] + AFTER_SLOTS > len(after)):
            return i, FULL_EVENTS
        ts = np.int64(ts_ns[i])
        flags = np.int64(flags_[i])
        v = np.int64(version[i])
        sp, dp = np.int64(sport[i]), np.int64(dport[i])
        s0, s1 = _words(src, i)
        d0, d1 = _words(dst, i)
        a_first = (s0 < d0) or (s0 == d0 and ((s1 < d1) or (s1 == d1 and sp <= dp)))
        if a_first:
            lo0, lo1, lop, hi0, hi1, hip = s0, s1, sp, d0, d1, dp
        else:
            lo0, lo1, lop, hi0, hi1, hip = d0, d1, dp, s0, s1, sp
        h = flow_hash(s0, s1, d0, d1, np.uint64(sp), np.uint64(dp), np.uint64(v))  # (the prepass's: the same flows)
        rec = _find(tb, R, K, h, v, lo0, lo1, lop, hi0, hi1, hip)
        if rec >= 0 and R[rec, C_HIST_LEN] + HISTORY_PER_PACKET > HIST.shape[1]:
            return i, FULL_HISTORY

        # -- Tracker._packet ------------------------------------------------------------------------
        seq = np.int64(seq_[i])
        prev_ff = -1
        resume = st[ST_RESUME] != 0  # (the packet stopped for an eviction: it goes on at the new connection)
        if resume:
            st[ST_RESUME] = 0
            prev_ff = st[ST_PREV_FF]
            rec = -1
        else:
            st[ST_TCP] += 1
            if ts > st[ST_NOW]:
                st[ST_NOW] = ts
            st[ST_SINCE_SWEEP] += 1
            if st[ST_NOW] >= st[ST_NEXT_SWEEP] and st[ST_SINCE_SWEEP] >= st[ST_NCONNS] >> 2:
                _sweep(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need)
                rec = _find(tb, R, K, h, v, lo0, lo1, lop, hi0, hi1, hip)
            if st[ST_NHALF] > 0 and (flags & (SYN | RST | FIN)) != SYN and rec >= 0 and R[rec, C_HALF_OPEN]:
                R[rec, C_HALF_OPEN] = 0
                st[ST_NHALF] -= 1
            if rec >= 0 and _expired(R, E, rec, ts):
                _finish(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, rec)
                rec = -1
            if rec >= 0 and _is_reuse(R, E, rec, flags, seq):
                prev_ff = R[rec, C_FIRST_FRAME]
                _finish(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need, rec)
                rec = -1
            if rec < 0 and st[ST_NCONNS] >= st[ST_MAX_CONNS]:
                # Tracker._evict: first what the timers ended, then (Python) the oldest-idle tenth
                st[ST_NEXT_SWEEP] = 0
                _sweep(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need)
                mc = st[ST_MAX_CONNS]
                if st[ST_NCONNS] >= mc - mc // 20:
                    st[ST_RESUME] = 1
                    st[ST_PREV_FF] = prev_ff
                    return i, EVICT
        if rec < 0:
            # Tracker._new_conn
            st[ST_NFREE] -= 1
            rec = FREE_[st[ST_NFREE]]
            R[rec, :] = 0
            R[rec, C_LIVE] = LIVE
            R[rec, C_SERIAL] = st[ST_SERIAL]
            st[ST_SERIAL] += 1
            R[rec, C_VERSION] = v
            R[rec, C_LOPORT] = lop
            R[rec, C_HIPORT] = hip
            R[rec, C_HASH] = np.int64(h)
            K[rec, 0], K[rec, 1], K[rec, 2], K[rec, 3] = lo0, lo1, hi0, hi1
            R[rec, C_START_NS] = ts
            R[rec, C_LAST_NS] = ts
            R[rec, C_FIRST_FRAME] = frame[i]
            R[rec, C_FIRST_ROW] = base + i
            R[rec, C_ATTEMPT_NS] = -1
            R[rec, C_CLOSE_DELETE_NS] = -1
            R[rec, C_N_ORIGINS] = 1
            R[rec, C_ORIGIN0] = ts + SYN_TIMEOUT_NS
            R[rec, C_INACTIVITY_NS] = INACTIVITY_HANDSHAKE_NS
            R[rec, C_TOUCHED] = -1
            if prev_ff >= 0:
                R[rec, C_HAS_PREV] = 1
                R[rec, C_PREV_FIRST_FRAME] = prev_ff
            _init_endpoint_row(E, 2 * rec, sp)
            _init_endpoint_row(E, 2 * rec + 1, dp)
            EA[2 * rec, 0], EA[2 * rec, 1] = s0, s1
            EA[2 * rec + 1, 0], EA[2 * rec + 1, 1] = d0, d1
            _insert(tb, R, rec)
            st[ST_NCONNS] += 1
            if (flags & (SYN | RST | FIN)) == SYN:
                R[rec, C_HALF_OPEN] = 1
                st[ST_NHALF] += 1
                if st[ST_NHALF] > st[ST_MAX_HALF]:
                    _evict_half_open(R, E, HR, st, BFREE, FREE_, tb, fin, drop, need)
            if not (flags & SYN) or (flags & ACK):
                both = likely[dp] != 0
                if likely[sp] and (not both or (not (flags & SYN) and sp < dp)):
                    _flip(R, HIST, rec)
        R[rec, C_ENCAP] = encap[i]
        R[rec, C_VLAN] = vlan[i]
        if R[rec, C_TOUCHED] != epoch:
            R[rec, C_TOUCHED] = epoch
            touched[st[ST_NTOUCH]] = rec
            st[ST_NTOUCH] += 1

        # -- Tracker._process -------------------------------------------------------------------------
        length = np.int64(payload_len[i])
        ack_no = np.int64(ack_[i])
        win = np.int64(win_[i])
        fl = R[rec, C_FLIPPED]
        oe = 2 * rec + fl
        is_orig = s0 == EA[oe, 0] and s1 == EA[oe, 1] and sp == E[oe, E_PORT]
        ep = oe if is_orig else 2 * rec + 1 - fl
        peer = 2 * rec + 1 - fl if is_orig else oe
        syn, fin_, rst, ack = (flags & SYN) != 0, (flags & FIN) != 0, (flags & RST) != 0, (flags & ACK) != 0
        if not E[ep, E_SEEN_FIRST]:
            if is_orig:
                R[rec, C_IS_PARTIAL] = 1 if (not syn or ack) else 0
            elif not R[rec, C_IS_PARTIAL]:
                R[rec, C_IS_PARTIAL] = 0 if syn else 1
            E[ep, E_SEEN_FIRST] = 1
        seg_len = length + (1 if syn else 0) + (1 if fin_ else 0) - (length if rst else 0)
        seq_past = (seq + seg_len) & M32
        _init_endpoint(E, ep, syn, seq, seq_past)
        rel_seq = _unwrap(seq, E[ep, E_LAST64]) - E[ep, E_START64]
        underflow = rel_seq < 0

        # Tracker._update_history
        bits = (1 if syn else 0) + (1 if fin_ else 0) + (1 if rst else 0)
        if bits > 1:
            if fin_ and rst:
                _check_history(R, HIST, rec, H_FIN_RST, CH_I, is_orig)
            else:
                _check_history(R, HIST, rec, H_MULTI, CH_Q, is_orig)
        elif bits == 1:
            if syn:
                code = CH_H if ack else CH_S
                if _check_history(R, HIST, rec, H_SYN, code, is_orig) and rel_seq != E[ep, E_HLS]:
                    _add_history(R, HIST, rec, code, is_orig)
                E[ep, E_HLS] = rel_seq
            if fin_:
                if _check_history(R, HIST, rec, H_FIN, CH_F, is_orig) and rel_seq + length != E[ep, E_HLF]:
                    _add_history(R, HIST, rec, CH_F, is_orig)
                E[ep, E_HLF] = rel_seq + length
            if rst:
                if _check_history(R, HIST, rec, H_RST, CH_R, is_orig) and rel_seq != E[ep, E_HLR]:
                    _add_history(R, HIST, rec, CH_R, is_orig)
                E[ep, E_HLR] = rel_seq
        elif length:
            _check_history(R, HIST, rec, H_DATA, CH_D, is_orig)
        elif ack:
            _check_history(R, HIST, rec, H_ACK, CH_A, is_orig)

        # Tracker._update_window
        if ((win << E[ep, E_WSCALE]) == 0 and not rst and E[peer, E_STATE] != CLOSED
                and E[ep, E_STATE] != RESET and _scaled(E, ep, E_WIN0_CNT, E_WIN0_TH)):
            _add_history(R, HIST, rec, CH_W, is_orig)
        if not (E[2 * rec, E_DID_CLOSE] and E[2 * rec + 1, E_DID_CLOSE]):
            R[rec, C_LAST_NS] = ts
        if syn:
            wscale = np.int64(wscale_[i])
            if wscale < 0:
                E[ep, E_WSCALE] = 0
                if ack:
                    E[peer, E_WSCALE] = 0
            else:
                E[ep, E_WSCALE] = min(wscale, 14)
            E[ep, F_MADE] = 1
            E[ep, F_SYN_OPT_MASK] = np.int64(opt_mask[i])
            E[ep, F_SYN_WIN] = win
            E[ep, F_MSS] = mss_[i]
            E[ep, F_WSCALE] = wscale
            E[ep, F_SACK_OK] = 1 if sack_ok[i] else 0
        if fin_:
            E[ep, E_FIN_CNT] += 1
            E[ep, E_FIN_SEQ] = rel_seq + seg_len
        if rst:
            E[ep, E_RST_CNT] += 1

        rel_ack = 0
        if ack:
            if E[peer, E_STATE] == INACTIVE:
                rel_ack = 1
                _init_seq(E, peer, (ack_no - 1) & M32, (ack_no - 1) & M32)
            else:
                rel_ack = _unwrap(ack_no, E[peer, E_ACK64]) - E[peer, E_START64]
                if rel_ack < 0:
                    rel_ack = 0
                elif not rst:
                    delta = _seq_delta(ack_no, E[peer, E_ACK64] & M32)
                    if not (ack_no == 0 and delta > TOO_LARGE_SEQ_DELTA) and delta > 0:
                        E[peer, E_ACK64] = _unwrap(ack_no, E[peer, E_ACK64])

        # Tracker._update_last_seq
        last = E[ep, E_LAST64]
        delta = _seq_delta(seq_past, last & M32)
        if (syn or rst) and (delta > TOO_LARGE_SEQ_DELTA or delta < -TOO_LARGE_SEQ_DELTA):
            pass
        elif fin_ and last == E[ep, E_START64] + 1:
            E[ep, E_LAST64] = _unwrap(seq_past, last)
        elif E[ep, E_STATE] == RESET:
            pass
        elif delta > 0:
            E[ep, E_LAST64] = _unwrap(seq_past, last)
        elif length > 0 and _scaled(E, ep, E_RXMIT_CNT, E_RXMIT_TH):
            _add_history(R, HIST, rec, CH_T, is_orig)
        E[ep, E_LAST_NS] = ts

        sender_state, peer_state = E[ep, E_STATE], E[peer, E_STATE]
        me, pe, do_close, do_flip, revive = step(syn, ack, fin_, rst, length != 0, is_orig, sender_state,
                                                 peer_state)
        hs_me = sender_state in (INACTIVE, SYN_SENT, SYN_ACK_SENT)
        hs_peer = peer_state in (INACTIVE, SYN_SENT, SYN_ACK_SENT)
        if me != sender_state and me not in (INACTIVE, SYN_SENT, SYN_ACK_SENT) and hs_me and hs_peer:
            R[rec, C_INACTIVITY_NS] = INACTIVITY_TIMEOUT_NS
        if sender_state == INACTIVE and syn and is_orig and R[rec, C_ATTEMPT_NS] < 0:
            R[rec, C_ATTEMPT_NS] = ts + ATTEMPT_DELAY_NS
        if sender_state == INACTIVE and me == ESTABLISHED and not syn:
            R[rec, C_IS_PARTIAL] = 0
        _set_state(E, ep, me)
        if revive:
            if E[peer, E_STATE] == RESET and E[peer, E_PREV_STATE] == CLOSED:
                _set_state(E, peer, CLOSED)
        else:
            _set_state(E, peer, pe)

        if ack:
            _ack_received(R, E, HIST, st, BLK, BFREE, rec, peer, ep, not is_orig, rel_ack)
        if length > 0 and not rst and not underflow and np.int64(payload_cap[i]) >= length:
            _data_sent(E, st, BLK, BFREE, ep, rel_seq + 1 if syn else rel_seq, length)

        # Tracker._connection_closed (which does nothing for a side that already closed)
        if do_close and not E[ep, E_DID_CLOSE]:
            E[ep, E_DID_CLOSE] = 1
            if E[ep, E_STATE] == RESET or E[peer, E_DID_CLOSE] or E[peer, E_STATE] == INACTIVE:
                R[rec, C_CLOSE_DELETE_NS] = R[rec, C_LAST_NS] + CLOSE_DELAY_NS
            elif E[ep, E_PREV_STATE] != INACTIVE:
                no = R[rec, C_N_ORIGINS]
                R[rec, C_ORIGIN0 + no] = R[rec, C_LAST_NS] + SESSION_TIMER_NS
                R[rec, C_N_ORIGINS] = no + 1
        if do_flip:
            _flip(R, HIST, rec)

        # -- evidence and fingerprints --------------------------------------------------------------------
        E[ep, E_PKTS] += 1
        E[ep, E_IP_BYTES] += np.int64(wire_len[i])
        if not rst:
            E[ep, E_PAYLOAD_BYTES] += length
        ts_val = np.int64(ts_val_[i]) if has_ts[i] else -1
        if not rst:
            _observe(E, FTTL, FTN, FIPID, ep, np.int64(ttl_[i]), np.int64(ip_id_[i]), ts_val)
        start64 = E[ep, E_START64]
        o_orig[i] = 1 if is_orig else 0
        o_rel_seq[i] = _unwrap(seq, start64 + max(rel_seq, 0)) - start64
        o_rel_ack[i] = rel_ack if ack else 0
        row = base + i
        R[rec, C_N_PACKETS] += 1
        na = R[rec, C_AFTER_N]
        if na:
            keep = 0
            for k in range(na):
                c = R[rec, C_AFTER_CTX + k]
                a = st[ST_NAFTER]
                after[a, A_CTX] = c
                after[a, A_ROW] = row
                st[ST_NAFTER] = a + 1
                cnt = R[rec, C_AFTER_CNT + k] + 1
                rts = R[rec, C_AFTER_TS + k]
                if cnt < AFTER_PACKETS and ts - rts < AFTER_NS:
                    R[rec, C_AFTER_CTX + keep] = c
                    R[rec, C_AFTER_CNT + keep] = cnt
                    R[rec, C_AFTER_TS + keep] = rts
                    keep += 1
            R[rec, C_AFTER_N] = keep
            need[i] = 1
        if rst:
            e = st[ST_NEV]
            ev[e, V_REC] = rec
            ev[e, V_SERIAL] = R[rec, C_SERIAL]
            ev[e, V_ROW] = row
            ev[e, V_INDEX] = R[rec, C_NRESETS]
            ev[e, V_SENDER_STATE] = sender_state
            ev[e, V_PEER_STATE] = peer_state
            ev[e, V_ELIDED] = R[rec, C_ELIDED]
            b = st[ST_NBEFORE]
            ev[e, V_BEFORE_OFF] = b
            for k in range(R[rec, C_HEAD_N]):
                before[b] = HR[rec, k]
                b += 1
            for k in range(R[rec, C_RING_N]):
                before[b] = HR[rec, HEAD + (R[rec, C_RING_START] + k) % RING]
                b += 1
            ev[e, V_BEFORE_N] = b - st[ST_NBEFORE]
            st[ST_NBEFORE] = b
            ctx = st[ST_CTX]
            st[ST_CTX] += 1
            ev[e, V_CTX] = ctx
            st[ST_NEV] = e + 1
            _mark_rows(R, HR, rec, need, base)
            need[i] = 1
            R[rec, C_NRESETS] += 1
            na = R[rec, C_AFTER_N]
            R[rec, C_AFTER_CTX + na] = ctx
            R[rec, C_AFTER_CNT + na] = 0
            R[rec, C_AFTER_TS + na] = ts
            R[rec, C_AFTER_N] = na + 1
        hn = R[rec, C_HEAD_N]
        if hn < HEAD:
            HR[rec, hn] = row
            R[rec, C_HEAD_N] = hn + 1
        else:
            rn = R[rec, C_RING_N]
            rs = R[rec, C_RING_START]
            if rn == RING:
                R[rec, C_ELIDED] += 1
                HR[rec, HEAD + rs] = row
                R[rec, C_RING_START] = (rs + 1) % RING
            else:
                HR[rec, HEAD + (rs + rn) % RING] = row
                R[rec, C_RING_N] = rn + 1
    return n, DONE


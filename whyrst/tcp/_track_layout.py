"""Constants shared by :mod:`whyrst.tcp.fasttrack` and its kernels (kept apart so that using the
ahead-of-time compiled kernels imports no numba): the columns of the connection (``R``) and endpoint
(``E``) tables, the ``st`` slots, the event layouts and what a kernel reports when it stops."""

# -- st: the tracker's scalars (one int64 array, kept between calls) ----------------------------------------
(ST_NOW, ST_TCP, ST_NEXT_SWEEP, ST_SINCE_SWEEP, ST_NCONNS, ST_NHALF, ST_SERIAL, ST_CTX, ST_EVICTED,
 ST_EVICTED_HALF, ST_NFREE, ST_NBFREE, ST_FINISHED, ST_NEV, ST_NBEFORE, ST_NAFTER, ST_NFIN, ST_NDROP, ST_NTOUCH,
 ST_EPOCH, ST_MAX_CONNS, ST_MAX_HALF, ST_BASE, ST_RESUME, ST_PREV_FF) = range(25)
ST_SIZE = 26

# -- R: one row per connection record ----------------------------------------------------------------------
AFTER_SLOTS = 9  # RSTs of one connection still collecting the packets after them (at most 8 plus a new one)
(C_LIVE, C_SERIAL, C_VERSION, C_LOPORT, C_HIPORT, C_HASH, C_FLIPPED, C_START_NS, C_LAST_NS, C_FIRST_FRAME,
 C_FIRST_ROW, C_HIST_SEEN, C_HIST_LEN, C_N_PACKETS, C_HEAD_N, C_RING_START, C_RING_N, C_ELIDED, C_NRESETS,
 C_HAS_PREV, C_PREV_FIRST_FRAME, C_ATTEMPT_NS, C_CLOSE_DELETE_NS, C_N_ORIGINS, C_ORIGIN0, C_ORIGIN1, C_ORIGIN2,
 C_INACTIVITY_NS, C_IS_PARTIAL, C_ENCAP, C_VLAN, C_HALF_OPEN, C_TOUCHED, C_AFTER_N) = range(34)
C_AFTER_CTX = 34  # AFTER_SLOTS context ids
C_AFTER_CNT = C_AFTER_CTX + AFTER_SLOTS  # packets each has collected
C_AFTER_TS = C_AFTER_CNT + AFTER_SLOTS  # the time of each one's RST
R_COLS = C_AFTER_TS + AFTER_SLOTS
# C_LIVE values
FREE, LIVE, PENDING = 0, 1, 2  # PENDING: finished with RSTs, kept until Python has read it

# -- E: two rows per record (2 * rec + e; e = 0 is the side that sent the connection's first packet) ---------
# (fasttrack unpacks a row in this order: change both together)
(E_PORT, E_STATE, E_PREV_STATE, E_START64, E_LAST64, E_ACK64, E_DID_CLOSE, E_FIN_CNT, E_RST_CNT, E_FIN_SEQ,
 E_HLS, E_HLF, E_HLR, E_RXMIT_CNT, E_RXMIT_TH, E_WIN0_CNT, E_WIN0_TH, E_GAP_CNT, E_GAP_TH, E_CHK_CNT, E_CHK_TH,
 E_SEEN_FIRST, E_WSCALE, E_PKTS, E_IP_BYTES, E_PAYLOAD_BYTES, E_LAST_NS, E_REASSEM, E_TRIM, E_BLK, E_NBLK,
 F_MADE, F_TTL, F_TTL_N, F_NTTLS, F_NIPIDS, F_ZERO_IPIDS, F_PACKETS, F_SYN_OPT_MASK, F_SYN_WIN, F_MSS, F_WSCALE,
 F_SACK_OK, F_USES_TS, F_LAST_TS_VAL) = range(45)
E_COLS = 45
FP_TTLS = 16  # distinct TTLs a fingerprint counts
FP_IPIDS = 8  # last IPv4 IDs it keeps
BLOCKS = 64  # out-of-order blocks an endpoint keeps

# head and ring of each record (row ids): HEAD_PACKETS then RING_PACKETS columns
HEAD, RING = 6, 24
HR_COLS = HEAD + RING

# -- events, per batch ---------------------------------------------------------------------------------------
(V_REC, V_SERIAL, V_ROW, V_INDEX, V_SENDER_STATE, V_PEER_STATE, V_ELIDED, V_BEFORE_OFF, V_BEFORE_N,
 V_CTX) = range(10)  # a RST
V_COLS = 10
A_CTX, A_ROW = 0, 1  # a packet after a RST
A_COLS = 2

# -- why a kernel stopped before the end -------------------------------------------------------------------
# EVICT: the table is full; Python picks the oldest-idle tenth (as Tracker._evict does, with numpy's
# argpartition), track_evict ends them, and the same packet is fed again (it resumes where it stopped)
DONE, FULL_TABLE, FULL_RECORDS, FULL_BLOCKS, FULL_HISTORY, FULL_EVENTS, EVICT = range(7)
# the most history letters one packet adds (two for its flags, W, T, three G, ^ twice, and spare)
HISTORY_PER_PACKET = 12

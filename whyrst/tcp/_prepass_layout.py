"""Constants shared by :mod:`whyrst.tcp.prepass` and its kernels (kept apart so that using the
ahead-of-time compiled kernels imports no numba)."""

# indexes into the ``stats`` array
ST_CONNS, ST_RSTS, ST_TTLS, ST_PROBES, ST_CONNECTIONS, ST_TCP, ST_MAX_TS = 0, 1, 2, 3, 4, 5, 6
# the answered ports' tables: entries of the SYN-ACK and close tables, refusals kept and dropped
ST_ANSWERS, ST_CLOSES, ST_REFUSALS, ST_REFUSALS_DROPPED = 7, 8, 9, 10
# every record's time (TCP or not): the first, the latest, how many went back in time
ST_FIRST_TS, ST_LAST_TS, ST_BACKWARDS = 11, 12, 13
STATS = 16
NO_TIME = -(1 << 63)  # ST_FIRST_TS and ST_MAX_TS before any record
# what a kernel reports when it stops early: the table that needs to grow, the index segment that is full, or a
# record the compiled decoder leaves to the per-packet slow path
FULL_NONE, FULL_CONNS, FULL_RSTS, FULL_TTLS, FULL_PROBES = 0, 1, 2, 3, 4
FULL_ANSWERS, FULL_CLOSES, FULL_REFUSALS, FULL_INDEX, SLOW_RECORD = 5, 6, 7, 8, 9

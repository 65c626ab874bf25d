"""Constants shared by :mod:`whyrst.tcp.prepass` and its kernels (kept apart so that using the
ahead-of-time compiled kernels imports no numba)."""

# indexes into the ``stats`` array
ST_CONNS, ST_RSTS, ST_TTLS, ST_PROBES, ST_CONNECTIONS, ST_TCP, ST_MAX_TS = 0, 1, 2, 3, 4, 5, 6
# what ``feed`` reports when it stops early: the table that needs to grow
FULL_NONE, FULL_CONNS, FULL_RSTS, FULL_TTLS, FULL_PROBES = 0, 1, 2, 3, 4

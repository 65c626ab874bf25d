"""Compiled kernels for the common case (numba; optional: ``pip install whyrst[fast]``).

* :func:`pcap_walker` walks pcap record headers through a chunk;
* :func:`pcapng_walker` walks runs of Enhanced Packet Blocks;
* :func:`decoder` decodes Ethernet/VLAN, SLL, SLL2, raw IP, NULL/LOOP, IPV4/IPV6 link layers, IPv4
  (with options) and IPv6 without extension headers, and TCP (options, checksum) straight into the
  batch columns. Anything else (tunnels, MPLS, LLC/SNAP, IPv6 extension headers, truncated TCP
  headers, other link types) is flagged for the per-packet slow path in :mod:`whyrst.capture.decode`,
  whose results are the reference: the tests check both give identical columns.

Each function returns None when numba is not installed (or ``WHYRST_NO_NUMBA=1``); the readers then
use their pure-Python equivalents and :mod:`whyrst.capture.vector` (numpy), which give the same
results, more slowly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from whyrst.capture.batch import PacketBatch


@cache
def _numba() -> Any:
    if os.environ.get("WHYRST_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba


def _aot() -> dict[str, Any] | None:
    from whyrst import _aot

    return _aot.kernels()


def available() -> bool:
    """Whether the compiled kernels can be used (built ahead of time, or numba installed; not disabled)."""
    return _aot() is not None or _numba() is not None


@cache
def _kernels() -> dict[str, Any] | None:
    aot = _aot()  # ahead-of-time compiled: no numba import (see whyrst._aot)
    if aot is not None and all(name in aot for name in ("walk_pcap", "walk_epb", "decode_all")):
        return {name: aot[name] for name in ("walk_pcap", "walk_epb", "decode_all")}
    if _numba() is None:
        return None
    from whyrst.capture import _kernels as k

    return {"walk_pcap": k.walk_pcap, "walk_epb": k.walk_epb, "decode_all": k.decode_all}


def pcap_walker() -> Callable[..., tuple[int, int, int]] | None:
    ks = _kernels()
    if ks is None:
        return None
    walk = ks["walk_pcap"]

    def walker(buf: memoryview, pos: int, max_n: int, big: bool, ns: bool, offs: np.ndarray, cap: np.ndarray,
               wire: np.ndarray, ts: np.ndarray) -> tuple[int, int, int]:
        n, new_pos, status = walk(np.frombuffer(buf, dtype=np.uint8), pos, max_n, big, ns, offs, cap, wire, ts)
        return int(n), int(new_pos), int(status)

    return walker


def pcapng_walker() -> Callable[..., tuple[int, int]] | None:
    ks = _kernels()
    if ks is None:
        return None
    walk = ks["walk_epb"]
    from whyrst.capture.records import MAX_BLOCK, MAX_CAPLEN

    def walker(buf: memoryview, pos: int, max_n: int, n0: int, big: bool, if_link: np.ndarray, if_resol: np.ndarray,
               if_offset: np.ndarray, n_if: int, iface_base: int, offs: np.ndarray, cap: np.ndarray,
               wire: np.ndarray, ts: np.ndarray, link: np.ndarray, iface: np.ndarray) -> tuple[int, int]:
        added, new_pos = walk(np.frombuffer(buf, dtype=np.uint8), pos, max_n, n0, big, if_link, if_resol, if_offset,
                              n_if, iface_base, MAX_CAPLEN, MAX_BLOCK, offs, cap, wire, ts, link, iface)
        return int(added), int(new_pos)

    return walker


def decoder() -> Callable[[bytes, np.ndarray, PacketBatch], np.ndarray] | None:
    ks = _kernels()
    if ks is None:
        return None
    decode_all = ks["decode_all"]

    def decode(buf: memoryview, offs: np.ndarray, batch: PacketBatch, check: bool = True) -> np.ndarray:
        c = batch.cols
        slow = np.zeros(batch.n, dtype=np.uint8)
        b = np.frombuffer(buf, dtype=np.uint8)
        size = len(b)
        w0 = b[: size - size % 2].view(np.uint16)  # native 16-bit words from even and from odd offsets
        w1 = b[1 : 1 + (size - 1) // 2 * 2].view(np.uint16) if size > 1 else w0[:0]
        decode_all(b, w0, w1, offs, c["cap_len"], c["link_type"], slow,
                   c["kind"], c["ip_version"], c["sport"], c["dport"], c["seq"], c["ack"], c["flags"], c["win"],
                   c["tcp_hdr_len"], c["payload_len"], c["ttl"], c["ip_id"], c["ip_df"], c["tos"], c["opt_mask"],
                   c["opt_mss"], c["opt_wscale"], c["opt_sack_ok"], c["opt_sack_blocks"], c["opt_has_ts"],
                   c["opt_ts_val"], c["opt_ts_ecr"], c["opt_mptcp_subtype"], c["payload_off"], c["payload_cap"],
                   c["checksum_ok"], c["vlan"], batch.src, batch.dst, check)
        return np.flatnonzero(slow)

    return decode


def warm_up() -> bool:
    """Compile (or load from the cache) every kernel now; False when numba is not available."""
    from whyrst.capture import open as _open

    if _kernels() is None:
        return False
    import io
    import struct

    frame = bytes(12) + b"\x08\x00" + bytes.fromhex("4500002800004000400600000a0000010a000002") + bytes(20)
    pcap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + struct.pack("<IIII", 0, 0, 54, 54) + frame
    for _ in _open.open_capture(io.BytesIO(pcap)):
        pass
    return True

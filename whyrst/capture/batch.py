"""The columnar packet batch: what every reader (pcap, pcapng, tcpdump text, live) produces.

One row per captured record, in capture order, including records that are not TCP (they count as
packets, as in tshark's ``frame.number``). Each column is a numpy array; the schema is declared once
here as data so readers, the tracker and the tests agree on names and types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

# The C functions themselves: the socket module around them also loads selectors and makes an enum of every
# constant (3 ms of every start-up).
try:
    from _socket import AF_INET as AF_INET
    from _socket import AF_INET6 as AF_INET6
    from _socket import inet_ntoa as inet_ntoa
    from _socket import inet_pton as inet_pton
except ImportError:  # (not CPython)
    from socket import AF_INET as AF_INET  # type: ignore[assignment]
    from socket import AF_INET6 as AF_INET6  # type: ignore[assignment]
    from socket import inet_ntoa as inet_ntoa
    from socket import inet_pton as inet_pton


class Kind(IntEnum):
    """What the decoder made of a record."""

    OTHER = 0  # not IP, unsupported link type, or undecodable
    TCP = 1  # a TCP segment with a complete TCP header
    IP_OTHER = 2  # IP but not TCP (UDP, ICMP, ...)
    FRAGMENT = 3  # a non-first IP fragment: counted and skipped
    TCP_TRUNCATED = 4  # TCP whose header was cut by the snap length


# TCP flag bits as they sit in the 12 low bits of header bytes 12-13 (reserved bits included).
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR, NS = 0x001, 0x002, 0x004, 0x008, 0x010, 0x020, 0x040, 0x080, 0x100
RESERVED = 0xE00

# (column, dtype, fill value for rows that do not have it)
COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("frame", "i8", 0),  # 1-based record number in the capture (tshark's frame.number)
    ("ts_ns", "i8", 0),  # capture timestamp, nanoseconds since the epoch
    ("wire_len", "u4", 0),  # original length on the wire
    ("cap_len", "u4", 0),  # captured length
    ("kind", "u1", Kind.OTHER),
    ("ip_version", "u1", 0),  # 4 or 6; 0 when not IP
    ("sport", "u2", 0),
    ("dport", "u2", 0),
    ("seq", "u4", 0),
    ("ack", "u4", 0),
    ("flags", "u2", 0),  # FIN..NS plus the three reserved bits (RESERVED)
    ("win", "u2", 0),  # raw window field, not scaled
    ("tcp_hdr_len", "u1", 0),  # data offset * 4
    ("payload_len", "u4", 0),  # TCP payload length from the IP length (TSO-aware), not the captured part
    ("ttl", "u1", 0),  # IPv4 TTL or IPv6 hop limit
    ("ip_id", "i4", -1),  # IPv4 identification; -1 for IPv6 or unknown
    ("ip_df", "b1", False),  # IPv4 don't-fragment bit
    ("tos", "u1", 0),  # IPv4 TOS / IPv6 traffic class (DSCP and ECN)
    ("opt_mask", "u8", 0),  # bit k set when TCP option kind k (k < 64) is present
    ("opt_mss", "i4", -1),
    ("opt_wscale", "i2", -1),
    ("opt_sack_ok", "b1", False),
    ("opt_sack_blocks", "u1", 0),  # number of SACK blocks
    ("opt_has_ts", "b1", False),
    ("opt_ts_val", "u4", 0),
    ("opt_ts_ecr", "u4", 0),
    ("opt_mptcp_subtype", "i2", -1),  # MPTCP (kind 30) subtype, e.g. 8 = MP_TCPRST; -1 when absent
    ("payload_off", "u4", 0),  # offset of the captured TCP payload in ``data``
    ("payload_cap", "u4", 0),  # captured payload bytes available at payload_off (<= payload_len)
    ("checksum_ok", "i1", -1),  # 1 valid, 0 invalid, -1 not checked (payload not fully captured, text input)
    ("link_type", "u2", 0),  # link type of the record (per interface for pcapng)
    ("iface", "u2", 0),  # pcapng interface index (0 for pcap)
    ("encap", "u1", 0),  # 0 plain; otherwise the outermost tunnel: see ENCAPSULATIONS
    ("vlan", "u2", 0),  # outermost 802.1Q/802.1ad VLAN id, 0 when untagged
)

ENCAPSULATIONS = {0: "", 1: "gre", 2: "vxlan", 3: "geneve", 4: "ip-in-ip", 5: "teredo", 6: "mpls"}

ADDRESS_BYTES = 16  # IPv4 addresses sit in the first 4 bytes, the rest zero; ip_version tells which
# Rows of a batch: its two address columns (16 bytes a row) stay just under the 1 MB from which glibc's
# malloc maps a block anew (see analysis.tune_process), so every batch reuses the heap's memory instead of
# mapping two fresh megabytes and faulting in each of their pages (a quarter of a 1M-packet file's page
# faults at 65,536 rows).
BATCH_ROWS = ((1 << 20) - (4 << 10)) // ADDRESS_BYTES


@dataclass
class PacketBatch:
    """A batch of records decoded into columns.

    ``src`` and ``dst`` are ``(n, 16)`` uint8 arrays. ``data`` holds the bytes that ``payload_off``
    points into (the raw records of the batch, or the payload bytes a text parser could recover).
    """

    n: int
    cols: dict[str, np.ndarray]
    src: np.ndarray
    dst: np.ndarray
    data: bytes | memoryview = b""
    extras: dict[str, object] = field(default_factory=dict)

    @classmethod
    def empty(cls, n: int) -> PacketBatch:
        cols = {}
        for name, dtype, fill in COLUMNS:
            arr = np.empty(n, dtype=dtype)
            arr.fill(fill)
            cols[name] = arr
        zeros = np.zeros((n, ADDRESS_BYTES), dtype=np.uint8)
        return cls(n=n, cols=cols, src=zeros, dst=zeros.copy())

    def __getattr__(self, name: str) -> np.ndarray:
        # Columns read as attributes: batch.seq, batch.flags, ...
        cols = self.__dict__.get("cols")
        if cols is not None and name in cols:
            return cols[name]
        raise AttributeError(name)

    def payload(self, i: int) -> bytes:
        off = int(self.cols["payload_off"][i])
        return bytes(self.data[off : off + int(self.cols["payload_cap"][i])])

    def rows(self, start: int, stop: int) -> PacketBatch:
        """Rows ``start:stop`` as a batch whose columns are views of this one's (writes go through)."""
        return PacketBatch(stop - start, {k: v[start:stop] for k, v in self.cols.items()}, self.src[start:stop],
                           self.dst[start:stop], self.data, self.extras)

    def select(self, mask: np.ndarray) -> PacketBatch:
        """The rows where ``mask`` is true, sharing ``data``."""
        cols = {k: v[mask] for k, v in self.cols.items()}
        return PacketBatch(int(np.count_nonzero(mask)) if mask.dtype == bool else len(mask), cols,
                           self.src[mask], self.dst[mask], self.data, dict(self.extras))


def address_text(raw: np.ndarray | bytes, version: int) -> str:
    """The printable form of an address stored as 16 bytes."""
    import ipaddress

    b = bytes(raw)
    if version == 4:
        return inet_ntoa(b[:4])  # (what ipaddress prints, in C)
    if version == 6:
        return str(ipaddress.IPv6Address(b[:16]))
    return ""

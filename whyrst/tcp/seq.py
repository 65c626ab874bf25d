"""Sequence-number arithmetic in the 2^32 space (RFC 1982 serial numbers)."""

from __future__ import annotations

MOD = 1 << 32
HALF = 1 << 31


def seq_delta(a: int, b: int) -> int:
    """a - b as a signed 32-bit difference: positive when a is after b, across a wrap."""
    d = (a - b) & 0xFFFFFFFF
    return d - MOD if d >= HALF else d


def unwrap(value32: int, near64: int) -> int:
    """The 64-bit position of a 32-bit sequence number that lies closest to ``near64``."""
    return near64 + seq_delta(value32, near64 & 0xFFFFFFFF)


def in_window(seq: int, left: int, size: int) -> bool:
    """Whether ``seq`` lies in [left, left + size) modulo 2^32."""
    return 0 <= ((seq - left) & 0xFFFFFFFF) < max(size, 1)

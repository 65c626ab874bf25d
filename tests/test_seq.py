"""Sequence arithmetic across the 2^32 wrap."""

from whyrst.tcp.seq import in_window, seq_delta, unwrap


def test_seq_delta_wraps():
    assert seq_delta(5, 0xFFFFFFF0) == 21
    assert seq_delta(0xFFFFFFF0, 5) == -21
    assert seq_delta(100, 100) == 0


def test_unwrap_follows_the_wrap():
    near = 0xFFFFFF00
    assert unwrap(0x10, near) == 0x1_0000_0010
    assert unwrap(0xFFFFFE00, 0x1_0000_0010) == 0xFFFFFE00


def test_in_window_across_wrap():
    assert in_window(3, 0xFFFFFFFE, 10)
    assert not in_window(20, 0xFFFFFFFE, 10)

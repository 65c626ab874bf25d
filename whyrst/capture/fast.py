"""Compiled kernels (numba, optional: ``pip install whyrst[fast]``). Filled in below."""

from __future__ import annotations

from typing import Any


def pcap_walker() -> Any:
    return None


def pcapng_walker() -> Any:
    return None


def decoder() -> Any:
    return None

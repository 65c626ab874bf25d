"""TCP connection tracking: state machine, Zeek-compatible conn_state/history, evidence for resets."""

from whyrst.tcp.state import CONN_STATES, EP, conn_state
from whyrst.tcp.track import Connection, PacketRef, ResetContext, Tracker, flags_text, track

__all__ = [
    "CONN_STATES",
    "EP",
    "Connection",
    "PacketRef",
    "ResetContext",
    "Tracker",
    "conn_state",
    "flags_text",
    "track",
]

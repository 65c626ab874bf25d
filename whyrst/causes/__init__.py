"""The cause catalog and the engine that explains each RST with it."""

from whyrst.causes.catalog import BY_ID, CAUSE_IDS, CAUSES, Cause

__all__ = ["BY_ID", "CAUSES", "CAUSE_IDS", "Cause"]

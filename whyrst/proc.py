"""Process helpers shared by the live and lab front ends."""

from __future__ import annotations

import contextlib
import os


def pid_alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie (a zombie is gone for our purposes)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        if fh.read().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True

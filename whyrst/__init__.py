"""whyrst: why did this TCP connection get reset?"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from whyrst.analysis import Report


def analyze(source: Any, **options: Any) -> Report:
    """Analyze a capture (path, ``-``, bytes of tcpdump text, or several of them): every RST explained."""
    from whyrst.analysis import analyze as _analyze

    return _analyze(source, **options)


__all__ = ["__version__", "analyze"]

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


def analyze_many(sources: Any, jobs: int | None = None, **options: Any) -> Any:
    """Many captures (files, directories, globs, URLs) analysed in parallel: one pandas DataFrame of their
    resets, with a ``source`` column (see :func:`whyrst.jobs.analyze_many`)."""
    from whyrst.jobs import analyze_many as _analyze_many

    return _analyze_many(sources, jobs, **options)


__all__ = ["__version__", "analyze", "analyze_many"]

"""``whyrst lab``: every cause of the catalog reproduced on real kernel stacks in network namespaces, captured
at three vantage points, each RST labelled with its ground truth and the kernel's own reason, and whyrst's
verdicts checked against it.

Kept light: the agents (``python -m whyrst.lab.agent``) import this package too, and they start often.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from whyrst.lab.runner import LabResult


def run_lab(cases: list[str] | None = None, out_dir: Path | None = None, seed: int = 0, vantage: str = "all",
            console: Any = None) -> LabResult:
    """Run the lab (see :func:`whyrst.lab.runner.run_lab`)."""
    from whyrst.lab.runner import run_lab as _run

    return _run(cases, out_dir, seed, vantage, console)


def cleanup_leftovers(force: bool = False) -> list[str]:
    """Remove the namespaces and trace instances that killed lab runs left behind."""
    from whyrst.lab.topo import cleanup_leftovers as _cleanup

    return _cleanup(force)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cases", metavar="ID,...", help="only these cause ids (default: all)")
    parser.add_argument("--out", metavar="DIR", type=Path,
                        help="keep the pcaps, their tcpdump text, labels.jsonl and summary.json here")
    parser.add_argument("--seed", type=int, default=0, help="seed for the scenarios' random choices")
    parser.add_argument("--vantage", choices=("client", "router", "server", "all"), default="all",
                        help="where to capture (default: all three)")
    parser.add_argument("--cleanup", action="store_true",
                        help="only remove what a killed lab run left behind (namespaces, trace instances)")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """The ``whyrst lab`` command: 0 when every case was reproduced, 1 when some was not, 2 on errors."""
    from whyrst.errors import WhyrstError

    if getattr(args, "list", False):
        from whyrst.lab.scenarios import SCENARIOS

        for sc in SCENARIOS:
            print(f"{sc.id:<26}{'' if sc.write_up else '(extra) '}{sc.title}")
        return 0
    if args.cleanup:
        from whyrst.lab.topo import preflight

        preflight()
        removed = cleanup_leftovers(force=False)
        print("\n".join(f"removed {r}" for r in removed) or "nothing to clean up")
        return 0
    from whyrst.lab.topo import preflight

    preflight()  # before anything else: without root the answer is one line, not a traceback
    from rich.console import Console

    from whyrst.lab.runner import render

    stream = sys.stderr if args.json else sys.stdout
    # Not a terminal (a log, a test): a wide table rather than rich's 80 columns.
    console = Console(stderr=bool(args.json), width=None if stream.isatty() else 200)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()] if args.cases else None
    try:
        result = run_lab(cases, args.out, args.seed, args.vantage, console)
    except WhyrstError:
        raise
    if args.json:
        import json

        print(json.dumps(result.to_json(), indent=1, default=str))
    else:
        render(result, console)
    if result.leftovers:
        return 2
    return 0 if len(result.reproduced) == len(result.cases) else 1


def main(argv: list[str] | None = None) -> int:
    from whyrst.errors import WhyrstError

    parser = argparse.ArgumentParser(prog="whyrst lab", description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except WhyrstError as err:
        print(f"whyrst lab: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("whyrst lab: interrupted (everything it created was removed)", file=sys.stderr)
        return 130


__all__ = ["add_arguments", "cleanup_leftovers", "main", "run", "run_lab"]

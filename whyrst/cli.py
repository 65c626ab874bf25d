"""The ``whyrst`` command: thin front ends over one engine."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any, TextIO

from whyrst import __version__
from whyrst.errors import WhyrstError


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _progress_for(path: str) -> tuple[Any, Any]:
    """A progress bar on a TTY for files large enough to wait for; (None, None) otherwise."""
    if not sys.stderr.isatty() or path == "-":
        return None, None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None, None
    if size < 20_000_000:
        return None, None
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[pkts]} packets"),
                   TimeRemainingColumn(), console=_console(stderr=True), transient=True)
    task = bar.add_task(os.path.basename(path), total=size, pkts=0)

    def update(packets: int, nbytes: int) -> None:
        bar.update(task, completed=nbytes, pkts=packets)

    return bar, update


def cmd_analyze(args: argparse.Namespace) -> int:
    from whyrst.jobs import expand_sources

    if args.jobs < 0:
        raise WhyrstError("-j/--jobs must be 0 (every core) or more")
    if args.scheduler:
        args.engine = "dask"
    sources = expand_sources(args.capture)
    if not sources:
        raise WhyrstError("no capture to read")
    many = len(sources) > 1 or any(os.path.isdir(c) for c in args.capture) or args.parquet
    if not many and args.engine == "local":
        return _analyze_one(args, sources[0])
    return _analyze_many(args, sources)


def _notes(args: argparse.Namespace) -> Any:
    """Where the job says how it ran (split or not, and why): standard error with -v, else nowhere."""
    if not args.verbose and not os.environ.get("WHYRST_DEBUG"):
        return None
    return lambda text: print(f"whyrst: {text}", file=sys.stderr)


@contextlib.contextmanager
def _buffered_stdout() -> Iterator[TextIO]:
    """Standard output with a buffer of its own: json.dump writes a report in tens of thousands of small
    pieces, each a system call when Python's output is unbuffered (PYTHONUNBUFFERED, python -u)."""
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # (not a file: a test's capture, an IDE's console)
        yield sys.stdout
        return
    with open(fd, "w", buffering=1 << 20, encoding="utf-8", closefd=False) as out:
        yield out


def _json_indent(args: argparse.Namespace) -> int | None:
    """Indented JSON for a person at a terminal, one line for a program or a file (json's encoder in C
    writes it several times faster: seconds on a report of 100,000 resets)."""
    if args.pretty or (not args.compact and sys.stdout.isatty()):
        return 1
    return None


def _analyze_one(args: argparse.Namespace, source: str) -> int:
    from whyrst.analysis import tune_process
    from whyrst.jobs import JobProgress, analyze_file, cores, new_pool, source_size, wants_split

    jobs = args.jobs or cores()
    size = source_size(source)
    split = wants_split(source, size, jobs)
    tune_process("coordinator" if split else "alone")
    # the pool's processes start before the progress bar's thread (they are forked)
    pool = new_pool(jobs) if split else None
    try:
        with JobProgress(size if size >= 20_000_000 else 0, 1) as bar:
            report = analyze_file(source, jobs, keep_ladders=bool(args.html), progress=bar.advance,
                                  note=_notes(args), pool=pool, as_json=args.json and not args.html,
                                  indent=_json_indent(args))
        if pool is not None:
            pool.release()  # (the processes end while the report is written)
        _write_report(args, report)
    finally:
        if pool is not None:
            pool.close()
    return 0


def _write_report(args: argparse.Namespace, report: Any) -> None:
    if args.html:
        from whyrst.report.html import write_html

        write_html(report, args.html)
    if args.json:
        from whyrst.report.jsontext import EncodedReport, encode_report

        if not isinstance(report, EncodedReport):  # (an EncodedReport: the workers made the JSON)
            report = encode_report(report, _json_indent(args))
        with _buffered_stdout() as out:
            report.write(out)
            out.write("\n")
        for w in report.warnings:  # the terminal report shows them inline
            print(f"whyrst: warning: {w}", file=sys.stderr)
    else:
        from whyrst.report.terminal import print_report

        print_report(report, _console(), verbose=args.verbose, limit=args.limit)


def _analyze_many(args: argparse.Namespace, sources: list[str]) -> int:
    """One JSON line (or one line of text) per source, in their order; exit status 0 when every source
    was read, 1 when some could not be, 2 when none could."""
    from whyrst.analysis import tune_process
    from whyrst.jobs import JobProgress, ParquetDataset, cores, new_pool, run_dask, run_local, source_size

    jobs = args.jobs or cores()
    tune_process("coordinator" if jobs > 1 or args.engine == "dask" else "alone")
    with_conns = bool(args.parquet)
    dataset = ParquetDataset(args.parquet) if args.parquet else None
    note = _notes(args)
    if args.html:
        print("whyrst: --html is for one capture; not written", file=sys.stderr)
    pool = new_pool(jobs) if args.engine == "local" else None
    failed = 0
    try:
        with JobProgress(sum(source_size(s) for s in sources), len(sources)) as bar:
            if args.engine == "dask":
                docs = run_dask(sources, args.scheduler, with_conns=with_conns, workers=jobs, progress=bar.advance,
                                note=note)
            else:  # (with --json alone, the worker processes write the JSON lines)
                docs = run_local(sources, jobs, with_conns=with_conns, progress=bar.advance, note=note, pool=pool,
                                 encode=args.json and dataset is None)
            console = _console()
            for doc in docs:
                bar.finished()
                failed += "error" in doc
                if dataset is not None:
                    dataset.add(doc)
                if args.json:
                    line = doc["json"] if "json" in doc else json.dumps({k: v for k, v in doc.items() if k != "conns"})
                    sys.stdout.write(line + "\n")
                    sys.stdout.flush()
                elif "error" in doc:
                    print(f"whyrst: {doc['error']}", file=sys.stderr)
                else:
                    counts: dict[str, int] = {}
                    for r in doc["resets"]:
                        counts[r["cause"]] = counts.get(r["cause"], 0) + 1
                    top = ", ".join(f"{c} {n}" for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
                    console.print(f"{doc['source']}: {doc['packets']} packets, {len(doc['resets'])} resets"
                                  + (f" ({top})" if top else ""), highlight=False, markup=False)
                if args.json and doc.get("warnings"):
                    for w in doc["warnings"]:
                        print(f"whyrst: warning: {w}", file=sys.stderr)
    finally:
        if pool is not None:
            pool.close()
    if dataset is not None:
        counts = dataset.close()
        print(f"whyrst: wrote {counts['resets']} resets and {counts['connections']} connections of "
              f"{counts['captures']} captures to {args.parquet}", file=sys.stderr)
    return 2 if failed == len(sources) else 1 if failed else 0


def cmd_summary(args: argparse.Namespace) -> int:
    from whyrst.jobs import summarize

    for line in summarize(args.dataset, top=args.top):
        print(line)
    return 0


def cmd_conns(args: argparse.Namespace) -> int:
    from whyrst.analysis import tune_process
    from whyrst.pipeline import track_capture
    from whyrst.spill import SortedRows

    tune_process()

    # sorted by start time in bounded memory: a SYN flood has millions of connections
    rows: SortedRows = SortedRows(key=lambda r: r["ts"])
    limit = {"max_connections": args.max_connections} if args.max_connections else {}
    result = track_capture(args.capture, lambda c: rows.add(c.zeek_record()), **limit)
    if args.json:
        with _buffered_stdout() as out:
            for r in rows:
                out.write(json.dumps(r) + "\n")
    elif args.format == "zeek":
        from whyrst.report.zeeklog import write_conn_log

        with _buffered_stdout() as out:
            write_conn_log(rows, out)
    else:
        from whyrst.report.terminal import print_conns

        print_conns(list(rows), _console())
    for w in result.warnings.all():
        print(f"whyrst: warning: {w}", file=sys.stderr)
    return 0


def cmd_causes(args: argparse.Namespace) -> int:
    from whyrst.causes.catalog import CAUSES

    if args.json:
        print(json.dumps([{"id": c.id, "title": c.title, "kernel_reasons": list(c.kernel_reasons),
                           "sender": c.sender} for c in CAUSES], indent=1))
        return 0
    from rich.table import Table

    table = Table(title="whyrst cause catalog", title_justify="left")
    table.add_column("id")
    table.add_column("title")
    table.add_column("kernel reasons")
    for c in CAUSES:
        table.add_row(c.id, c.title, ", ".join(c.kernel_reasons) or "-")
    _console().print(table)
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from whyrst.causes.catalog import BY_ID
    from whyrst.causes.docs import cause_page

    if args.cause not in BY_ID:
        raise WhyrstError(f"unknown cause {args.cause!r}; see 'whyrst causes'")
    from rich.markdown import Markdown

    text = cause_page(BY_ID[args.cause])
    if sys.stdout.isatty():
        _console().print(Markdown(text))
    else:
        sys.stdout.write(text)
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from whyrst.analysis import tune_process
    from whyrst.report.annotate import annotate

    tune_process()
    done = annotate(args.capture[0], args.output)
    print(f"whyrst: wrote {args.output}: {done.packets} packets, {done.resets} RSTs explained, "
          f"{done.comments} packet comments", file=sys.stderr)
    return 0


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser (``argv``: the arguments it will parse, None for the process's own)."""
    p = argparse.ArgumentParser(prog="whyrst", description="Why did this TCP connection get reset?")
    p.add_argument("--version", action="version", version=f"whyrst {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    a = sub.add_parser("analyze", help="explain every RST in a capture (pcap, pcapng, gzip, tcpdump -nn text)")
    a.add_argument("capture", nargs="+", help="capture files, directories (recursive), globs, or - for stdin")
    a.add_argument("--json", action="store_true", help="one JSON object (schema whyrst.analyze/1)")
    a.add_argument("--compact", action="store_true", help="JSON on one line (the default off a terminal)")
    a.add_argument("--pretty", action="store_true", help="JSON indented (the default on a terminal)")
    a.add_argument("-v", "--verbose", action="store_true", help="show the evidence, confirm steps and fixes")
    a.add_argument("--html", metavar="FILE", help="also write a self-contained HTML report")
    a.add_argument("--limit", type=int, default=200, help="resets listed in the terminal (0: all)")
    a.add_argument("-j", "--jobs", type=int, default=0,
                   help="processes (default: every core; 1: one process); a large file is analysed in parts by all")
    a.add_argument("--engine", choices=("local", "dask"), default="local",
                   help="where the work runs: processes here, or a Dask cluster (pip install 'whyrst[dask]')")
    a.add_argument("--scheduler", metavar="ADDR",
                   help="Dask scheduler (tcp://HOST:8786; implies --engine dask); default a LocalCluster of -j workers")
    a.add_argument("--parquet", metavar="DIR",
                   help="write resets, connections and captures as a Parquet dataset (see whyrst summary)")
    a.set_defaults(func=cmd_analyze)

    sm = sub.add_parser("summary", help="causes across a Parquet dataset written by analyze --parquet")
    sm.add_argument("dataset", help="the DIR given to analyze --parquet")
    sm.add_argument("--top", type=int, default=20, help="servers listed (most resets first)")
    sm.set_defaults(func=cmd_summary)

    c = sub.add_parser("conns", help="the TCP connection table (Zeek conn.log compatible)")
    c.add_argument("capture")
    c.add_argument("--json", action="store_true", help="JSON lines with Zeek's field names")
    c.add_argument("--format", choices=("table", "zeek"), default="table", help="zeek: a conn.log (TSV)")
    c.add_argument("--max-connections", type=int, default=None, metavar="N",
                   help="connections tracked at once (default: the tracker's, 200000); past it the longest idle "
                        "are ended early, with a warning (memory: about 3 KB each)")
    c.set_defaults(func=cmd_conns)

    k = sub.add_parser("causes", help="list the cause catalog")
    k.add_argument("--json", action="store_true")
    k.set_defaults(func=cmd_causes)

    e = sub.add_parser("explain", help="a cause's page: what, why, wire signature, confirm, fix")
    e.add_argument("cause")
    e.set_defaults(func=cmd_explain)

    an = sub.add_parser("annotate", help="write the capture as pcapng with a comment on every RST and its evidence")
    an.add_argument("capture", nargs=1, help="pcap or pcapng file (plain or gzip)")  # a list, as main() expects
    an.add_argument("output", help="the pcapng file to write")
    an.set_defaults(func=cmd_annotate)

    import importlib

    # The live and lab front ends plug in with add_arguments(parser) and run(args) -> exit status. Their modules
    # load only when their command is the one asked for (signal handling, tracefs, ...: 6 ms of every start).
    asked = next((a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")), None)
    for name, module, text in (
        ("lab", "whyrst.lab", "reproduce every cause on real kernel stacks and check the verdicts (root)"),
        ("watch", "whyrst.live.watch", "live reset explanations from the kernel's own reasons (root)"),
    ):
        if name != asked:
            sub.add_parser(name, help=text)
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            raise WhyrstError(f"whyrst {name} cannot start: {err}") from err
        sp = sub.add_parser(name, help=text)
        mod.add_arguments(sp)
        sp.set_defaults(func=mod.run)
    return p


def main(argv: Sequence[str] | None = None, *, exit_quickly: bool = False) -> int:
    """The command line. ``exit_quickly`` (the ``whyrst`` command itself, never a caller in the same process):
    once analyze or conns has written its output, the process ends at once, without the interpreter's
    teardown (freeing every module and object one by one: ~15 ms)."""
    # whyrst does no linear algebra: numpy's OpenBLAS need not start a thread per core at import
    # (tens of milliseconds of CPU on every run, more on a busy machine); set before numpy loads
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # the imports to come allocate thousands of objects: the cyclic collector need not walk them again and again
    gc.set_threshold(100_000, 50, 50)
    try:
        parser = build_parser(argv)
    except WhyrstError as err:
        print(f"whyrst: {err}", file=sys.stderr)
        return err.exit_status
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        status = int(args.func(args) or 0)
        if args.command in ("analyze", "conns"):
            # what the run made is left to the process's end: the cyclic collector's last pass over it
            # would take tens of milliseconds (its files and pools are closed already)
            gc.freeze()
            if exit_quickly:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        return status
    except WhyrstError as err:
        print(f"whyrst: {err}", file=sys.stderr)
        return err.exit_status
    except KeyboardInterrupt:
        print("whyrst: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except MemoryError:
        print("whyrst: out of memory", file=sys.stderr)
        return 2
    except Exception as err:
        if os.environ.get("WHYRST_DEBUG"):
            raise
        where = " ".join(getattr(args, "capture", None) or [])
        print(f"whyrst: internal error{' on ' + where if where else ''}: {type(err).__name__}: {err} "
              "(set WHYRST_DEBUG=1 for details and please report it)", file=sys.stderr)
        return 2


def run() -> None:
    """The ``whyrst`` command."""
    sys.exit(main(exit_quickly=True))


if __name__ == "__main__":
    run()

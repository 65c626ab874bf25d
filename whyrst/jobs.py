"""Many captures at once: sources expanded from files, directories and globs, analysed by a pool of
processes (or on a Dask cluster), results as JSON lines, a DataFrame, or a Parquet dataset.

Each source's result is the one ``whyrst analyze FILE`` gives, reset for reset, whatever the number of
processes: small files are analysed whole, one per process at a time (largest first, so that a big
file does not start last); a large pcap or pcapng file is analysed in parts by every process
(:mod:`whyrst.split`), with the same result. Results come out in the order of the sources.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from whyrst.errors import WhyrstError

if TYPE_CHECKING:  # (the pool, and multiprocessing with it, load only when processes are used)
    from whyrst.pool import Call

# files smaller than this are analysed whole, by one process (the environment may set it lower, for tests);
# decided before whyrst.split (and multiprocessing) is imported: a small file's run does not load them
MIN_SPLIT = int(os.environ.get("WHYRST_SPLIT_MIN_BYTES", 48 << 20))
REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "abfss://", "http://", "https://", "file://")
Note = Callable[[str], None]


def cores() -> int:
    """The processors this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def is_remote(source: str) -> bool:
    return source.startswith(REMOTE_PREFIXES)


def expand_sources(items: Iterable[str]) -> list[str]:
    """Files as given, directories walked recursively (sorted; hidden files and folders skipped), globs
    expanded (``**`` too; matched directories walked); ``-`` and URLs pass through. A source named twice
    is analysed once."""
    out: list[str] = []

    def walk(d: str) -> None:
        found = []
        for root, dirs, files in os.walk(d):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            found.extend(os.path.join(root, f) for f in files if not f.startswith("."))
        out.extend(sorted(found))

    for item in items:
        if is_remote(item):
            out.extend(_expand_url(item))
        elif item == "-":
            out.append(item)
        elif os.path.isdir(item):
            walk(item)
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise WhyrstError(f"{item}: no file matches")
            for m in matches:
                if os.path.isdir(m):
                    walk(m)
                else:
                    out.append(m)
        else:
            out.append(item)
    return list(dict.fromkeys(out))


def _expand_url(url: str) -> list[str]:
    """A URL as given, or (with fsspec) the files a glob in it matches, or the files under it when it
    names a folder (``s3://bucket/captures/``)."""
    wild = any(ch in url.split("://", 1)[1] for ch in "*?[")
    if not wild and not url.endswith("/"):
        return [url]
    try:
        import fsspec
    except ImportError as err:
        raise WhyrstError(f"{url}: expanding URLs needs fsspec: pip install 'whyrst[dask]'") from err
    try:
        fs, path = fsspec.core.url_to_fs(url)
        found = fs.glob(path) if wild else fs.find(path)
        found = [p for p in found if not fs.isdir(p)] if wild else found
    except Exception as e:  # (each filesystem raises its own kinds)
        raise WhyrstError(f"{url}: cannot list: {e}") from None
    if not found:
        raise WhyrstError(f"{url}: no file matches")
    return [fs.unstrip_protocol(p) for p in sorted(found)]


def source_size(source: str) -> int:
    """Bytes to read (0 when not known: standard input, URLs, missing files)."""
    if source == "-" or is_remote(source):
        return 0
    try:
        return os.path.getsize(source)
    except OSError:
        return 0


# -- one source ------------------------------------------------------------------------------------------

def error_doc(source: str, error: str) -> dict[str, Any]:
    from whyrst.analysis import SCHEMA

    return {"schema": SCHEMA, "source": source, "packets": 0, "connections": 0, "resets": [], "warnings": [],
            "error": error}


def report_doc(report: Any, with_conns: bool, encode: bool = False) -> dict[str, Any]:
    doc = report.to_json()
    if with_conns:
        doc["conns"] = report.conns
    return encoded(doc) if encode else doc


def encoded(doc: dict[str, Any]) -> dict[str, Any]:
    """A result as its JSON line (``json``) with the few fields a caller looks at: made where the result
    is (a worker process), so that the main process only writes it out."""
    short = {k: doc[k] for k in ("source", "packets", "connections", "warnings", "error") if k in doc}
    short["json"] = json.dumps({k: v for k, v in doc.items() if k != "conns"})
    short["n_resets"] = len(doc.get("resets", ()))
    return short


def analyze_to_dict(source: str, with_conns: bool = False, encode: bool = False) -> dict[str, Any]:
    """One source's result in the JSON schema, or the schema's fields plus ``error``: never raises for a
    bad capture (or a bug), so one damaged file does not stop a job over thousands. ``encode``: as
    :func:`encoded` makes it."""
    doc = _analyze_to_dict(source, with_conns)
    return encoded(doc) if encode else doc


def _analyze_to_dict(source: str, with_conns: bool) -> dict[str, Any]:
    from whyrst import pool
    from whyrst.analysis import analyze

    def progress(packets: int, nbytes: int) -> None:
        pool.progress(nbytes)

    try:
        if is_remote(source):
            try:
                import fsspec
            except ImportError:
                return error_doc(source, f"{source}: reading URLs needs fsspec: pip install 'whyrst[dask]'")
            with fsspec.open(source, "rb") as fh:
                report = analyze(fh, collect_conns=with_conns, progress=progress)
            report.source = source
        else:
            report = analyze(source, collect_conns=with_conns, progress=progress)
    except WhyrstError as err:
        return error_doc(source, str(err))
    except MemoryError:
        return error_doc(source, f"{source}: out of memory")
    except Exception as err:  # a bug: reported with the source, the job goes on
        if os.environ.get("WHYRST_DEBUG"):
            import traceback

            traceback.print_exc()
        return error_doc(source, f"{source}: internal error: {type(err).__name__}: {err}")
    return report_doc(report, with_conns)


def _file_job(source: str, with_conns: bool, size: int, encode: bool = False) -> Iterator[list[Call]]:
    from whyrst.pool import Call

    (call,) = yield [Call(analyze_to_dict, (source, with_conns, encode), weight=size, priority=-size)]
    if call.ok:
        return call.value
    doc = error_doc(source, f"{source}: {call.error}")
    return encoded(doc) if encode else doc


def _split_file_job(source: str, workers: int, with_conns: bool, size: int, note: Note | None,
                    keep_ladders: bool = False, as_report: bool = False, encode: bool = False,
                    indent: int | None = None) -> Iterator[list[Call]]:
    from whyrst import split

    # (encode: the workers make the JSON text of the resets, the main process only joins it; as_report: the
    # result is then an EncodedReport, written with indent)
    try:
        report = yield from split.split_job(source, workers, with_conns=with_conns, keep_ladders=keep_ladders,
                                            priority=-size, note=note, encode=encode, indent=indent)
    except Exception as err:
        if as_report:
            return err
        doc = error_doc(source, f"{source}: {err}")
        return encoded(doc) if encode else doc
    if as_report:
        return report
    if encode:
        short = {"source": report.source, "packets": report.packets, "connections": report.connections,
                 "warnings": report.warnings}
        return {**short, "json": report.json_text(), "n_resets": len(report.resets)}
    return report_doc(report, with_conns)


def wants_split(source: str, size: int, workers: int) -> bool:
    """Whether a source is worth analysing in parts by ``workers`` processes (a large local file, when
    the compiled readers are there; whether it can be is only known once it is opened)."""
    if workers <= 1 or size < MIN_SPLIT or is_remote(source) or source == "-":
        return False
    from whyrst import split

    return split.available()


# -- many sources, here --------------------------------------------------------------------------------

def _worker_init() -> None:
    from whyrst.analysis import tune_process

    tune_process("worker")


def _warm() -> None:
    """Load what the workers' calls use before they are started (forked workers then share it)."""
    import whyrst.analysis  # noqa: F401
    from whyrst.capture import fast

    if fast.available():
        from whyrst.tcp.prepass import new_prepass

        fast.decoder()
        new_prepass("numba")


def new_pool(jobs: int) -> Any:
    """A pool of ``jobs`` processes (started now: before any thread, e.g. a progress bar's)."""
    from whyrst.pool import Inline, Pool

    if jobs <= 1:
        return Inline()
    _warm()
    return Pool(jobs, initializer=_worker_init)


def run_local(sources: list[str], jobs: int, progress: Callable[[int], None] | None = None,
              with_conns: bool = False, note: Note | None = None, pool: Any = None,
              encode: bool = False) -> Iterator[dict[str, Any]]:
    """Results in source order, computed by ``jobs`` processes (1: in this process). ``progress(n)`` is
    told of every ``n`` bytes read (see :func:`source_size` for the total); ``encode``: results as their
    JSON lines (see :func:`encoded`)."""
    own = pool is None
    pool = pool if pool is not None else new_pool(jobs)
    try:
        workers = getattr(pool, "n", 1)
        sizes = [source_size(s) for s in sources]
        total = sum(sizes)
        job_list = []
        for i, (s, size) in enumerate(zip(sources, sizes, strict=True)):
            # a file is cut into parts only when it is more than a worker's share of the whole job: a smaller
            # one keeps one worker busy while the others take the rest (splitting costs a third more CPU)
            if wants_split(s, size, workers) and size * workers > total:
                job_list.append((i, _split_file_job(s, workers, with_conns, size, note, encode=encode)))
            else:
                job_list.append((i, _file_job(s, with_conns, size, encode)))
        # calls are made in source order but run largest first; results are handed out in source order
        done: dict[int, dict[str, Any]] = {}
        nxt = 0
        for key, ok, value in pool.run(job_list, progress=progress):
            if not ok:
                value = error_doc(sources[key], f"{sources[key]}: {value}")
                value = encoded(value) if encode else value
            done[key] = value
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1
    finally:
        if own:
            pool.close()


def analyze_file(path: str, jobs: int, *, keep_ladders: bool = False, progress: Callable[[int], None] | None = None,
                 note: Note | None = None, pool: Any = None, as_json: bool = False, indent: int | None = None
                 ) -> Any:
    """One capture's :class:`~whyrst.analysis.Report`: in parts by ``jobs`` processes when it is large
    enough (the same result), else in this process. ``as_json`` (the caller only writes the report as
    JSON, with ``indent``): a file analysed in parts comes as a :class:`~whyrst.report.jsontext.EncodedReport`, its
    JSON made by the worker processes."""
    from whyrst.analysis import analyze

    size = source_size(path)
    if not wants_split(path, size, jobs):
        if note and jobs > 1:
            from whyrst import split

            if size >= MIN_SPLIT and split.available() and path != "-":
                note(f"{path}: analysed in one process")
        last = [0]

        def step(packets: int, nbytes: int) -> None:
            if progress is not None and nbytes > last[0]:
                progress(nbytes - last[0])
                last[0] = nbytes

        return analyze(path, keep_ladders=keep_ladders, progress=step if progress else None)
    own = pool is None
    pool = pool if pool is not None else new_pool(jobs)
    try:
        job = _split_file_job(path, pool.n, False, size, note, keep_ladders=keep_ladders, as_report=True,
                              encode=as_json, indent=indent)
        ((_, ok, value),) = list(pool.run([(path, job)], progress=progress))
    finally:
        if own:
            pool.close()
    if not ok:
        raise WhyrstError(f"{path}: {value}")
    if isinstance(value, BaseException):
        raise value
    return value


# -- many sources, on a Dask cluster ---------------------------------------------------------------------

def run_dask(sources: list[str], scheduler: str | None, with_conns: bool = False, workers: int = 2,
             progress: Callable[[int], None] | None = None, note: Note | None = None) -> Iterator[dict[str, Any]]:
    """The same results from a Dask cluster: ``scheduler`` (``tcp://HOST:8786``) or, when None, a
    ``LocalCluster`` of ``workers`` processes. Each source is read by the worker that analyses it: a path
    it can reach (the same name on every machine) or an ``s3://``, ``gs://``, ... URL (fsspec)."""
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as err:
        raise WhyrstError("the dask engine needs the extra: pip install 'whyrst[dask]'") from err
    cluster = None
    try:
        if scheduler:
            client = Client(scheduler, timeout=30)
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                   silence_logs=50)
            client = Client(cluster)
    except (OSError, TimeoutError) as err:
        if cluster is not None:
            cluster.close()
        raise WhyrstError(f"cannot reach the Dask scheduler {scheduler or '(local)'}: {err}") from err
    try:
        if note:
            info = client.scheduler_info()
            note(f"dask: {len(info.get('workers', {}))} workers at {info.get('address', scheduler)}")
        sizes = [source_size(s) for s in sources]
        # one task per source, the largest first (priority: higher runs earlier)
        futures = [client.submit(analyze_to_dict, s, with_conns, pure=False, priority=size >> 20)
                   for s, size in zip(sources, sizes, strict=True)]
        index = {f.key: i for i, f in enumerate(futures)}
        done: dict[int, dict[str, Any]] = {}
        nxt = 0
        for fut in as_completed(futures):
            i = index[fut.key]
            try:
                done[i] = fut.result()
            except Exception as err:  # the task or its worker died (a killed worker is retried first)
                done[i] = error_doc(sources[i], f"{sources[i]}: {type(err).__name__}: {err}")
            if progress is not None and sizes[i]:
                progress(sizes[i])
            fut.release()
            while nxt in done:
                yield done.pop(nxt)
                nxt += 1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -- the Python API ---------------------------------------------------------------------------------------

def analyze_many(sources: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], jobs: int | None = None, *,
                 engine: str = "local", scheduler: str | None = None, errors: str = "warn") -> Any:
    """Many captures (files, directories, globs, URLs) analysed in parallel: one pandas DataFrame with a
    row per reset, the columns of :meth:`whyrst.analysis.Report.to_dataframe` plus ``source``.

    ``jobs`` processes here (default every core), or ``engine="dask"`` on the cluster at ``scheduler``
    (default a local one). A source that cannot be read is reported as ``errors`` says: "warn" (a
    Python warning), "raise" (:class:`whyrst.errors.WhyrstError`) or "ignore"; either way
    ``df.attrs["errors"]`` maps it to the message, and ``df.attrs["captures"]`` holds every source's
    packets, connections and warnings."""
    import warnings as pywarnings

    import pandas as pd

    from whyrst.analysis import Reset

    if errors not in ("warn", "raise", "ignore"):
        raise ValueError("errors must be 'warn', 'raise' or 'ignore'")
    items = [os.fspath(sources)] if isinstance(sources, (str, os.PathLike)) else [os.fspath(s) for s in sources]
    expanded = expand_sources(items)
    n = jobs or cores()
    if engine == "dask":
        docs: Iterable[dict[str, Any]] = run_dask(expanded, scheduler, workers=n)
    elif engine == "local":
        docs = run_local(expanded, n)
    else:
        raise ValueError("engine must be 'local' or 'dask'")
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}
    captures: list[dict[str, Any]] = []
    for doc in docs:
        captures.append({k: doc.get(k) for k in ("source", "packets", "connections", "warnings", "error")})
        if "error" in doc:
            failed[doc["source"]] = doc["error"]
            if errors == "raise":
                raise WhyrstError(doc["error"])
            if errors == "warn":
                pywarnings.warn(doc["error"], stacklevel=2)
            continue
        for r in doc["resets"]:
            rows.append(flat_reset(r, doc["source"]))
    columns = ["source", *Reset.__dataclass_fields__]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["errors"] = failed
    df.attrs["captures"] = captures
    return df


def flat_reset(r: dict[str, Any], source: str) -> dict[str, Any]:
    """A reset's JSON as a table row, as :meth:`~whyrst.analysis.Report.to_dataframe` flattens it."""
    row = {"source": source, **r}
    row["alternatives"] = ",".join(a["cause"] for a in r.get("alternatives", []))
    row["evidence"] = " ".join(r.get("evidence", []))
    row["fix"] = " ".join(r.get("fix", []))
    row["confirm"] = " | ".join(r.get("confirm", []))
    return row


# -- Parquet ---------------------------------------------------------------------------------------------

CONN_FIELDS = (("ts", "f8"), ("uid", "s"), ("id.orig_h", "s"), ("id.orig_p", "i4"), ("id.resp_h", "s"),
               ("id.resp_p", "i4"), ("proto", "s"), ("duration", "f8"), ("orig_bytes", "i8"), ("resp_bytes", "i8"),
               ("conn_state", "s"), ("missed_bytes", "i8"), ("history", "s"), ("orig_pkts", "i8"),
               ("orig_ip_bytes", "i8"), ("resp_pkts", "i8"), ("resp_ip_bytes", "i8"))
PART_ROWS = 200_000  # rows buffered before a part file is written


def _schemas() -> dict[str, Any]:
    import pyarrow as pa

    kinds = {"s": pa.string(), "f8": pa.float64(), "i4": pa.int32(), "i8": pa.int64()}
    time = pa.timestamp("us", tz="UTC")  # microseconds: what Spark reads as TIMESTAMP
    resets = pa.schema([
        ("source", pa.string()), ("frame", pa.int64()), ("ts", pa.float64()), ("time", time),
        ("src", pa.string()), ("sport", pa.int32()), ("dst", pa.string()), ("dport", pa.int32()),
        ("uid", pa.string()), ("role", pa.string()), ("sender", pa.string()), ("cause", pa.string()),
        ("confidence", pa.float64()),
        ("alternatives", pa.list_(pa.struct([("cause", pa.string()), ("confidence", pa.float64())]))),
        ("evidence", pa.list_(pa.string())), ("fix", pa.list_(pa.string())), ("confirm", pa.list_(pa.string())),
        ("flags", pa.string()), ("seq", pa.int64()), ("ack", pa.int64()), ("ttl", pa.int32()),
        ("payload_text", pa.string()), ("diagnostic", pa.string()), ("evidence_frames", pa.list_(pa.int64())),
    ])
    conns = pa.schema([("source", pa.string()), ("time", time),
                       *((name, kinds[kind]) for name, kind in CONN_FIELDS)])
    captures = pa.schema([("source", pa.string()), ("packets", pa.int64()), ("connections", pa.int64()),
                          ("resets", pa.int64()), ("warnings", pa.list_(pa.string())), ("error", pa.string())])
    return {"resets": resets, "connections": conns, "captures": captures}


class ParquetDataset:
    """``OUT/resets``, ``OUT/connections`` and ``OUT/captures``: Parquet part files written as results come
    in (memory stays bounded however many captures). Columns are those of the JSON output (``diagnostic``
    as JSON text) and of Zeek's conn.log, plus ``source`` and a ``time`` timestamp; readable by DuckDB
    (``SELECT cause, count(*) FROM 'OUT/resets/*.parquet' GROUP BY cause``), polars, pandas and Spark."""

    def __init__(self, out_dir: str) -> None:
        try:
            import pyarrow.parquet  # noqa: F401
        except ImportError as err:
            raise WhyrstError("--parquet needs pyarrow: pip install 'whyrst[parquet]'") from err
        self.out = Path(out_dir)
        self.schemas = _schemas()
        for table in self.schemas:
            d = self.out / table
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise WhyrstError(f"{d}: cannot create: {e.strerror or e}") from None
            for old in d.glob("part-*.parquet"):  # a dataset written before, replaced
                old.unlink()
        self.rows: dict[str, list[dict[str, Any]]] = {t: [] for t in self.schemas}
        self.parts = dict.fromkeys(self.schemas, 0)
        self.counts = dict.fromkeys(self.schemas, 0)

    def add(self, doc: dict[str, Any]) -> None:
        import datetime as dt

        source = doc["source"]
        utc = dt.UTC

        def when(ts: float) -> Any:
            return dt.datetime.fromtimestamp(ts, utc) if ts is not None else None

        for r in doc.get("resets", []):
            row = {**r, "source": source, "time": when(r.get("ts"))}
            diag = r.get("diagnostic")
            row["diagnostic"] = json.dumps(diag, sort_keys=True) if diag else None
            self.rows["resets"].append(row)
        for c in doc.get("conns", []):
            self.rows["connections"].append({**c, "source": source, "time": when(c.get("ts"))})
        self.rows["captures"].append({"source": source, "packets": doc.get("packets", 0),
                                      "connections": doc.get("connections", 0),
                                      "resets": len(doc.get("resets", [])), "warnings": doc.get("warnings", []),
                                      "error": doc.get("error")})
        for table, rows in self.rows.items():
            if len(rows) >= PART_ROWS:
                self._flush(table)

    def _flush(self, table: str) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = self.rows[table]
        if not rows and self.parts[table]:
            return
        schema = self.schemas[table]
        data = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
        path = self.out / table / f"part-{self.parts[table]:05d}.parquet"
        tmp = path.with_name("." + path.name)
        pq.write_table(data, tmp)
        tmp.replace(path)
        self.parts[table] += 1
        self.counts[table] += len(rows)
        self.rows[table] = []

    def close(self) -> dict[str, int]:
        """Write what is buffered (every table gets at least one part, even empty); the row counts."""
        for table in self.schemas:
            self._flush(table)
        return dict(self.counts)


def write_parquet(docs: Iterable[dict[str, Any]], out_dir: str) -> tuple[int, int]:
    """Write the dataset of :class:`ParquetDataset`; returns the numbers of resets and connections."""
    ds = ParquetDataset(out_dir)
    for doc in docs:
        ds.add(doc)
    counts = ds.close()
    return counts["resets"], counts["connections"]


# -- summary ---------------------------------------------------------------------------------------------

_BUCKETS = ((60, "minute"), (300, "5 minutes"), (900, "15 minutes"), (3600, "hour"), (6 * 3600, "6 hours"),
            (86400, "day"), (7 * 86400, "week"), (30 * 86400, "30 days"), (365 * 86400, "365 days"))


def summarize(out_dir: str, top: int = 20) -> list[str]:
    """Plain sentences over a dataset written by :class:`ParquetDataset`: resets by cause, by server
    (address and port: its most common cause and when that began), and over time."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as err:
        raise WhyrstError("summary needs pyarrow: pip install 'whyrst[parquet]'") from err
    import datetime as dt

    base = Path(out_dir)
    if not (base / "resets").is_dir():
        raise WhyrstError(f"{out_dir}: not a whyrst Parquet dataset (no resets/ folder)")
    try:
        t = pq.read_table(base / "resets", columns=["source", "ts", "src", "sport", "dst", "dport", "role", "cause"])
        caps = pq.read_table(base / "captures", columns=["source", "error"]) if (base / "captures").is_dir() else None
    except (OSError, pa.ArrowInvalid) as e:
        raise WhyrstError(f"{out_dir}: cannot read the dataset: {e}") from None
    n = t.num_rows
    if caps is not None:
        failed = caps.num_rows - int(pc.sum(pc.is_null(caps["error"])).as_py() or 0)
        head = f"{n} resets in {caps.num_rows} captures" + (f" ({failed} could not be read)" if failed else "")
    else:
        head = f"{n} resets in {len(pc.unique(t['source']))} captures"
    lines = [head]
    if not n:
        return lines

    def when(ts: float, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)

    lines.append("by cause:")
    by_cause = t.group_by("cause").aggregate([("cause", "count")]).sort_by([("cause_count", "descending"),
                                                                           ("cause", "ascending")])
    for cause, count in zip(by_cause["cause"].to_pylist(), by_cause["cause_count"].to_pylist(), strict=True):
        lines.append(f"  {cause:24} {count:9d}  {100 * count / n:5.1f}%")

    # the server of each reset: its sender when the sender is the server, else the peer it was sent to
    is_server = pc.equal(t["role"], "server")
    host = pc.if_else(is_server, t["src"], t["dst"])
    port = pc.if_else(is_server, t["sport"], t["dport"]).cast(pa.string())
    sep = pc.if_else(pc.match_substring(host, ":"), "]:", ":")
    opening = pc.if_else(pc.match_substring(host, ":"), "[", "")
    server = pc.binary_join_element_wise(opening, host, sep, port, "")
    t = t.append_column("server", server)
    per = t.group_by(["server", "cause"]).aggregate([("ts", "count"), ("ts", "min")])
    totals = t.group_by("server").aggregate([("server", "count")])
    total_of = dict(zip(totals["server"].to_pylist(), totals["server_count"].to_pylist(), strict=True))
    best: dict[str, tuple[int, str, float]] = {}
    for srv, cause, count, first in zip(per["server"].to_pylist(), per["cause"].to_pylist(),
                                        per["ts_count"].to_pylist(), per["ts_min"].to_pylist(), strict=True):
        cur = best.get(srv)
        if cur is None or count > cur[0] or (count == cur[0] and cause < cur[1]):
            best[srv] = (count, cause, first)
    servers = sorted(total_of, key=lambda s: (-total_of[s], s))
    lines.append(f"by server ({min(top, len(servers))} of {len(servers)}, most resets first):")
    for srv in servers[:top]:
        count, cause, first = best[srv]
        lines.append(f"  {100 * count / total_of[srv]:.0f}% of the {total_of[srv]} resets on {srv} are {cause}, "
                     f"starting at {when(first)}")

    # over time: the smallest bucket that gives at most 48 rows
    lo, hi = pc.min_max(t["ts"]).values()
    span = (hi.as_py() or 0) - (lo.as_py() or 0)
    width, name = next(((w, nm) for w, nm in _BUCKETS if span / w <= 48), _BUCKETS[-1])
    bucket = pc.multiply(pc.floor(pc.divide(t["ts"], float(width))), float(width))
    tb = pa.table({"bucket": bucket, "cause": t["cause"]})
    counts = tb.group_by(["bucket", "cause"]).aggregate([("cause", "count")])
    per_bucket: dict[float, dict[str, int]] = {}
    for b, cause, count in zip(counts["bucket"].to_pylist(), counts["cause"].to_pylist(),
                               counts["cause_count"].to_pylist(), strict=True):
        per_bucket.setdefault(b, {})[cause] = count
    peak = max(sum(c.values()) for c in per_bucket.values())
    fmt = "%Y-%m-%d %H:%M" if width < 86400 else "%Y-%m-%d"
    lines.append(f"over time (resets per {name}, most common cause):")
    for b in sorted(per_bucket):
        c = per_bucket[b]
        total = sum(c.values())
        cause, k = min(c.items(), key=lambda kv: (-kv[1], kv[0]))
        bar = "#" * max(1, round(30 * total / peak))
        lines.append(f"  {when(b, fmt)}  {total:8d} {bar:30}  {cause} {100 * k / total:.0f}%")
    return lines


def write_json_line(doc: dict[str, Any], out: Any = None) -> None:
    (out or sys.stdout).write(json.dumps({k: v for k, v in doc.items() if k != "conns"}) + "\n")


# -- progress --------------------------------------------------------------------------------------------

class JobProgress:
    """One progress bar for a whole job, by bytes read, on standard error when it is a terminal (a
    context manager; ``advance(n)`` for bytes, ``finished()`` for each source done)."""

    def __init__(self, total_bytes: int, sources: int, *, enabled: bool | None = None, label: str = "") -> None:
        self.total = total_bytes
        self.sources = sources
        self.done = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> JobProgress:
        if not self.enabled or self.total <= 0:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                   TimeRemainingColumn()]
        self._bar = Progress(*columns, console=Console(stderr=True), transient=True,
                             redirect_stdout=sys.stdout.isatty(), redirect_stderr=True)
        self._bar.__enter__()
        self._task = self._bar.add_task(self._description(), total=self.total)
        return self

    def _description(self) -> str:
        if self.label:
            return self.label
        return f"{self.done}/{self.sources} captures" if self.sources > 1 else "reading"

    def advance(self, n: int) -> None:
        if self._bar is not None and n > 0:
            self._bar.update(self._task, advance=n)

    def finished(self) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, description=self._description())

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
            self._bar = None

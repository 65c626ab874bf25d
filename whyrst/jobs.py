"""Many captures at once: sources expanded from files, directories and globs, analysed in a process
pool (or on a Dask cluster), results as JSON lines, a DataFrame, or a Parquet dataset.

Each source is analysed exactly as ``whyrst analyze FILE`` would, so results are identical, reset for
reset, whatever the number of processes.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from whyrst.errors import WhyrstError

REMOTE_PREFIXES = ("s3://", "gs://", "gcs://", "az://", "abfs://", "http://", "https://", "file://")


def expand_sources(items: Iterable[str]) -> list[str]:
    """Files as given, directories walked recursively (sorted), globs expanded; '-' passes through."""
    out: list[str] = []
    for item in items:
        if item == "-" or item.startswith(REMOTE_PREFIXES):
            out.append(item)
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
        elif any(ch in item for ch in "*?[") and not os.path.exists(item):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise WhyrstError(f"{item}: no file matches")
            out.extend(m for m in matches if os.path.isfile(m))
        else:
            out.append(item)
    return out


def analyze_to_dict(source: str, with_conns: bool = False) -> dict[str, Any]:
    """One source's result in the JSON schema, or the schema's fields plus an error: never raises for a
    bad capture, so one damaged file does not stop a job over thousands."""
    from whyrst.analysis import SCHEMA, analyze

    try:
        if source.startswith(REMOTE_PREFIXES):
            import fsspec

            with fsspec.open(source, "rb") as fh:
                report = analyze(fh, collect_conns=with_conns)
            report.source = source
        else:
            report = analyze(source, collect_conns=with_conns)
    except WhyrstError as err:
        return {"schema": SCHEMA, "source": source, "packets": 0, "connections": 0, "resets": [],
                "warnings": [], "error": str(err)}
    doc = report.to_json()
    if with_conns:
        doc["conns"] = report.conns
    return doc


def run_local(sources: list[str], jobs: int, progress: Callable[[int], None] | None = None,
              with_conns: bool = False) -> Iterator[dict[str, Any]]:
    """Results in source order, computed by ``jobs`` processes (1: in this process)."""
    if jobs <= 1 or len(sources) <= 1:
        for s in sources:
            doc = analyze_to_dict(s, with_conns)
            if progress:
                progress(1)
            yield doc
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(analyze_to_dict, s, with_conns) for s in sources]
        for f in futures:
            doc = f.result()
            if progress:
                progress(1)
            yield doc


def run_dask(sources: list[str], scheduler: str | None, with_conns: bool = False,
             workers: int = 2) -> Iterator[dict[str, Any]]:
    """The same work on a Dask cluster: ``scheduler`` (tcp://HOST:8786) or a LocalCluster."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError as err:
        raise WhyrstError("the dask engine needs the extra: pip install 'whyrst[dask]'") from err
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        futures = client.map(analyze_to_dict, sources, with_conns=with_conns, pure=False)
        for f in futures:
            yield f.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# -- Parquet ---------------------------------------------------------------------------------------------

RESET_COLUMNS = ("source", "frame", "ts", "src", "sport", "dst", "dport", "uid", "role", "sender", "cause",
                 "confidence", "alternatives", "evidence", "fix", "confirm", "flags", "seq", "ack", "ttl",
                 "payload_text")
CONN_COLUMNS = ("source", "ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "duration",
                "orig_bytes", "resp_bytes", "conn_state", "history", "orig_pkts", "resp_pkts")


def write_parquet(docs: Iterable[dict[str, Any]], out_dir: str) -> tuple[int, int]:
    """Write ``OUT/resets/part-N.parquet`` and ``OUT/connections/part-N.parquet``; returns the row counts."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as err:
        raise WhyrstError("--parquet needs pyarrow: pip install 'whyrst[parquet]'") from err
    out = Path(out_dir)
    (out / "resets").mkdir(parents=True, exist_ok=True)
    (out / "connections").mkdir(parents=True, exist_ok=True)
    reset_schema = pa.schema([
        ("source", pa.string()), ("frame", pa.int64()), ("ts", pa.float64()), ("src", pa.string()),
        ("sport", pa.int32()), ("dst", pa.string()), ("dport", pa.int32()), ("uid", pa.string()),
        ("role", pa.string()), ("sender", pa.string()), ("cause", pa.string()), ("confidence", pa.float64()),
        ("alternatives", pa.list_(pa.struct([("cause", pa.string()), ("confidence", pa.float64())]))),
        ("evidence", pa.list_(pa.string())), ("fix", pa.list_(pa.string())), ("confirm", pa.list_(pa.string())),
        ("flags", pa.string()), ("seq", pa.int64()), ("ack", pa.int64()), ("ttl", pa.int32()),
        ("payload_text", pa.string()),
    ])
    conn_schema = pa.schema([
        ("source", pa.string()), ("ts", pa.float64()), ("uid", pa.string()), ("id.orig_h", pa.string()),
        ("id.orig_p", pa.int32()), ("id.resp_h", pa.string()), ("id.resp_p", pa.int32()), ("proto", pa.string()),
        ("duration", pa.float64()), ("orig_bytes", pa.int64()), ("resp_bytes", pa.int64()),
        ("conn_state", pa.string()), ("history", pa.string()), ("orig_pkts", pa.int64()), ("resp_pkts", pa.int64()),
    ])
    n_resets = n_conns = 0
    for part, doc in enumerate(docs):
        rows = [{**{k: r.get(k) for k in RESET_COLUMNS if k != "source"}, "source": doc["source"]}
                for r in doc.get("resets", [])]
        pq.write_table(pa.Table.from_pylist(rows, schema=reset_schema), out / "resets" / f"part-{part:05d}.parquet")
        conns = [{**{k: c.get(k) for k in CONN_COLUMNS if k != "source"}, "source": doc["source"]}
                 for c in doc.get("conns", [])]
        pq.write_table(pa.Table.from_pylist(conns, schema=conn_schema),
                       out / "connections" / f"part-{part:05d}.parquet")
        n_resets += len(rows)
        n_conns += len(conns)
    return n_resets, n_conns


def summarize(out_dir: str) -> list[str]:
    """Plain sentences over a Parquet dataset: counts by cause, by server, and when each began."""
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise WhyrstError("summary needs pyarrow: pip install 'whyrst[parquet]'") from err
    path = Path(out_dir) / "resets"
    if not path.is_dir():
        raise WhyrstError(f"{out_dir}: not a whyrst Parquet dataset (no resets/ folder)")
    table = pq.read_table(path, columns=["source", "ts", "src", "sport", "dst", "dport", "role", "cause"])
    rows = table.to_pylist()
    lines = [f"{len(rows)} resets in {len({r['source'] for r in rows})} captures"]
    by_cause: dict[str, int] = {}
    for r in rows:
        by_cause[r["cause"]] = by_cause.get(r["cause"], 0) + 1
    for cause, n in sorted(by_cause.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {cause:24} {n:8d}  {100 * n / max(len(rows), 1):5.1f}%")
    by_server: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        server = f"{r['src']}:{r['sport']}" if r["role"] == "server" else f"{r['dst']}:{r['dport']}"
        by_server.setdefault(server, []).append(r)
    lines.append("by server:")
    import datetime as dt

    for server, rs in sorted(by_server.items(), key=lambda kv: -len(kv[1]))[:20]:
        counts: dict[str, int] = {}
        for r in rs:
            counts[r["cause"]] = counts.get(r["cause"], 0) + 1
        top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        first = min(r["ts"] for r in rs if r["cause"] == top)
        when = dt.datetime.fromtimestamp(first, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        lines.append(f"  {100 * n / len(rs):.0f}% of the {len(rs)} resets on {server} are {top}, starting at {when}")
    minutes: dict[str, int] = {}
    for r in rows:
        m = dt.datetime.fromtimestamp(r["ts"], dt.UTC).strftime("%Y-%m-%d %H:%M")
        minutes[m] = minutes.get(m, 0) + 1
    lines.append("over time (resets per minute):")
    peak = max(minutes.values(), default=1)
    for m in sorted(minutes)[:120]:
        lines.append(f"  {m}  {minutes[m]:7d} {'#' * max(1, round(40 * minutes[m] / peak))}")
    return lines

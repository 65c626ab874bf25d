"""A Zeek TSV conn.log, readable by zeek-cut."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, TextIO

FIELDS = ("ts", "uid", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto", "service", "duration",
          "orig_bytes", "resp_bytes", "conn_state", "local_orig", "local_resp", "missed_bytes", "history",
          "orig_pkts", "orig_ip_bytes", "resp_pkts", "resp_ip_bytes", "tunnel_parents")
TYPES = ("time", "string", "addr", "port", "addr", "port", "enum", "string", "interval", "count", "count",
         "string", "bool", "bool", "count", "string", "count", "count", "count", "count", "set[string]")


def _value(name: str, v: Any) -> str:
    if v is None or v == "":
        return "-"
    if name in ("ts", "duration"):
        return f"{v:.6f}"
    return str(v)


def write_conn_log(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    out.write("#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\tconn\n")
    out.write(f"#open\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n")
    out.write("#fields\t" + "\t".join(FIELDS) + "\n")
    out.write("#types\t" + "\t".join(TYPES) + "\n")
    for r in rows:
        out.write("\t".join(_value(f, r.get(f)) for f in FIELDS) + "\n")
    out.write(f"#close\t{time.strftime('%Y-%m-%d-%H-%M-%S')}\n")

"""The capture layer on the shared corpus: packet counts equal tshark's, the bad files fail in one
line, the cut file keeps its packets, the fast path equals the slow path, and the decoded TCP fields
equal tshark's."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gen import assert_same, read

from whyrst.capture import Kind, open_capture
from whyrst.errors import CaptureError

REPO = Path(__file__).resolve().parent.parent


def _corpus() -> Path | None:
    env = os.environ.get("WHYRST_CORPUS")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "corpus"]:
        if (cand / "MANIFEST.tsv").exists():
            return cand
    return None


CORPUS = _corpus()
ROWS: list[dict[str, str]] = []
if CORPUS is not None:
    with open(CORPUS / "MANIFEST.tsv", newline="") as fh:
        ROWS = list(csv.DictReader(fh, delimiter="\t"))

pytestmark = pytest.mark.skipif(CORPUS is None, reason="shared corpus not found (set WHYRST_CORPUS)")


def path(name: str) -> Path:
    assert CORPUS is not None
    return CORPUS / "pcaps" / name


GOOD = [r for r in ROWS if r["opens_cleanly"] == "yes"]
BAD = [r for r in ROWS if r["opens_cleanly"].startswith("no")]
CUT = [r for r in ROWS if r["opens_cleanly"] == "truncated"]


@pytest.mark.parametrize("row", GOOD, ids=[r["file"] for r in GOOD])
def test_packet_count_and_paths_agree(row: dict[str, str]) -> None:
    fast = read(str(path(row["file"])))
    assert fast.packets == fast.n == int(row["packets"])
    assert list(fast["frame"]) == list(range(1, fast.n + 1))
    assert fast.warnings == []
    slow = read(str(path(row["file"])), fast=False)
    assert_same(fast, slow)
    assert_same(read(str(path(row["file"])), engine="numpy"), slow)


@pytest.mark.parametrize("row", BAD, ids=[r["file"] for r in BAD])
def test_bad_files_raise_one_line(row: dict[str, str]) -> None:
    with pytest.raises(CaptureError) as ei, open_capture(str(path(row["file"]))) as cap:
        list(cap)
    msg = str(ei.value)
    assert "\n" not in msg and row["file"] in msg and "offset" in msg and ei.value.offset is not None
    reason = row["opens_cleanly"].split(": ", 1)[-1].rstrip(")")
    key = {"pcap: major version 1 unsupported": "major version 1",
           "pcapng: Not enough data to handle option of length 12336": "option of length 12336"}.get(reason, reason)
    assert key.split(" (")[0].removeprefix("pcap: ") in msg


@pytest.mark.parametrize("row", CUT, ids=[r["file"] for r in CUT])
def test_cut_file_keeps_its_packets(row: dict[str, str]) -> None:
    t = read(str(path(row["file"])))
    assert t.n == int(row["packets"]) == 8
    assert int(np.count_nonzero((t["kind"] == Kind.TCP) & (t["flags"] & 0x4 != 0))) == int(row["tcp_rst"])
    assert len(t.warnings) == 1 and row["file"] in t.warnings[0] and "offset" in t.warnings[0]


def test_gzip_corpus_file_is_gzip() -> None:
    with open_capture(str(path("zeek_smb_smb_many_open_files_500.pcap.gz"))) as cap:
        assert sum(b.n for b in cap) == 500
    assert cap.format == "pcap+gzip"


# -- TCP fields against tshark --------------------------------------------------------------------

TSHARK_FILES = [
    "zeek_tcp_rst-inject-rae.pcap",  # Ethernet, RST with reserved bits
    "ndpi_rtsp.pcapng",  # pcapng, Linux cooked
    "sv_tls-duplicate-hello.pcap",  # NULL
    "tcpdump_mptcp-tcprst.pcap",  # RAW, MPTCP
    "zeek_llc.pcap",  # FDDI with LLC/SNAP
    "zeek_tunnels_Teredo.pcap",  # Teredo
    "zeek_krb_kerberos_tso.pcapng",  # TSO (IP length 0)
    "zeek_ldap_gap-data-missing.pcapng",  # many interfaces, VLAN, IPv6
    "zeek_tcp_truncated-header.pcap",  # TCP headers cut by the snap length
    "sv_issue-3341-urgent11.pcap",  # odd TCP options
]
FIELDS = ["frame.number", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags",
          "tcp.window_size_value", "tcp.hdr_len", "tcp.len", "tcp.options.mss_val", "tcp.options.wscale.shift",
          "tcp.options.timestamp.tsval", "tcp.options.mptcp.subtype", "vlan.id",
          "tcp.checksum.status", "ip.ttl", "ipv6.hlim"]


def _last(value: str) -> str:
    return value.split(",")[-1]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", TSHARK_FILES)
def test_tcp_fields_match_tshark(name: str) -> None:
    cmd = ["tshark", "-n", "-r", str(path(name)), "-Y", "tcp && !icmp && !icmpv6", "-T", "fields",
           "-o", "tcp.analyze_sequence_numbers:FALSE", "-o", "tcp.check_checksum:TRUE"]
    for f in FIELDS:
        cmd += ["-e", f]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    t = read(str(path(name)))
    seen = 0
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split("\t"), strict=True))
        i = int(v["frame.number"]) - 1
        if not v["tcp.hdr_len"] or int(_last(v["tcp.hdr_len"])) > int(t["cap_len"][i]):
            continue
        row = t.row(i)
        where = f"{name} frame {i + 1}"
        if row["kind"] == Kind.TCP_TRUNCATED:
            assert int(_last(v["tcp.srcport"])) == row["sport"], where
            continue
        assert row["kind"] == Kind.TCP, where
        seen += 1
        assert int(_last(v["tcp.srcport"])) == row["sport"], where
        assert int(_last(v["tcp.dstport"])) == row["dport"], where
        assert int(_last(v["tcp.seq_raw"])) == row["seq"], where
        assert int(_last(v["tcp.ack_raw"])) == row["ack"], where
        assert int(_last(v["tcp.flags"]), 16) == row["flags"], where
        assert int(_last(v["tcp.window_size_value"])) == row["win"], where
        assert int(_last(v["tcp.hdr_len"])) == row["tcp_hdr_len"], where
        assert int(_last(v["tcp.len"])) == row["payload_len"], where
        if v["tcp.options.mss_val"]:
            assert int(_last(v["tcp.options.mss_val"])) == row["opt_mss"], where
        if v["tcp.options.wscale.shift"]:
            assert int(_last(v["tcp.options.wscale.shift"])) == row["opt_wscale"], where
        if v["tcp.options.timestamp.tsval"]:
            assert int(_last(v["tcp.options.timestamp.tsval"])) == row["opt_ts_val"], where
        if v["tcp.options.mptcp.subtype"]:
            assert int(_last(v["tcp.options.mptcp.subtype"]), 0) == row["opt_mptcp_subtype"], where
        if row["checksum_ok"] != -1:  # (we leave unchecked what was not captured whole, and TSO)
            assert {"1": 1, "0": 0}[_last(v["tcp.checksum.status"])] == row["checksum_ok"], where
        ttl = v["ip.ttl"] if row["ip_version"] == 4 else v["ipv6.hlim"]
        assert int(_last(ttl)) == row["ttl"], where
        if v["vlan.id"]:
            assert int(v["vlan.id"].split(",")[0]) == row["vlan"], where
    assert seen > 0

"""``whyrst annotate``: the pcapng it writes has a comment naming whyrst's cause on every RST and keeps
every packet, its length and its timestamp exactly (checked with tshark)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from whyrst.cli import main

REPO = Path(__file__).resolve().parent.parent
TSHARK = shutil.which("tshark")


def _pcaps() -> Path | None:
    env = os.environ.get("WHYRST_CORPUS")
    for cand in ([Path(env) / "pcaps"] if env else []) + [REPO.parent / "shared" / "corpus" / "pcaps"]:
        if cand.is_dir():
            return cand
    return None


PCAPS = _pcaps()
CORPUS_FILES = [
    "zeek_tcp_rst-inject-rae.pcap",  # pcap, microseconds
    "tcpdump_mptcp-tcprst.pcap",
    "zeek_http_get-to-ssh-server.pcap",  # pcap, nanoseconds
    "zeek_ldap_gap-data-missing.pcapng",  # pcapng, several interfaces
    "ndpi_rtsp.pcapng",
    "zeek_smb_smb_many_open_files_500.pcap.gz",  # gzip
]


def _tshark(*args: str | Path) -> list[list[str]]:
    out = subprocess.run([TSHARK, *map(str, args)], capture_output=True, text=True, check=True, timeout=60,
                         env={**os.environ, "LC_ALL": "C"}).stdout
    return [line.split("\t") for line in out.splitlines()]


def _cases() -> list[Path]:
    cases = [REPO / "examples" / "demo.pcap"]
    if PCAPS is not None:
        cases += [PCAPS / n for n in CORPUS_FILES if (PCAPS / n).exists()]
    return cases


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
@pytest.mark.parametrize("src", _cases(), ids=lambda p: p.name)
def test_annotate_against_tshark(src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.pcapng"
    code, _, err = _run(capsys, "annotate", str(src), str(out))
    assert code == 0, err
    code, stdout, err = _run(capsys, "analyze", "--json", str(src))
    assert code == 0, err
    resets = json.loads(stdout)["resets"]

    # same packets, lengths and timestamps (to the nanosecond) as the input: one tshark run per file
    fields = ("-T", "fields", "-e", "frame.number", "-e", "frame.time_epoch", "-e", "frame.len",
              "-e", "frame.cap_len")
    before = _tshark("-r", src, *fields)
    rows = _tshark("-r", out, *fields, "-e", "tcp.flags.reset", "-e", "frame.comment")
    after = [row[:4] for row in rows]
    assert len(after) == len(before)
    assert after == before

    # a comment on every RST (tcp.flags.reset==1) naming the cause analyze gives it
    causes = {r["frame"]: r["cause"] for r in resets}
    rsts = [row for row in rows if len(row) > 4 and row[4] in ("1", "True")]
    assert rsts, "the capture has RSTs"
    for row in rsts:
        frame, comment = int(row[0]), row[5] if len(row) > 5 else ""
        assert frame in causes, f"frame {frame}: a RST whyrst did not explain"
        assert f"whyrst: {causes[frame]} (" in comment, f"frame {frame}: {comment!r}"

    # and on the evidence frames, pointing at their RST
    commented = {int(row[0]): row[5] for row in rows if len(row) > 5 and row[5]}
    for r in resets:
        for f in r["evidence_frames"][1:]:
            if f != r["frame"]:
                assert f"whyrst: evidence for the RST in frame {r['frame']} ({r['cause']})" in commented[f]
    assert set(commented) == {r["frame"] for r in resets} | {f for r in resets for f in r["evidence_frames"]}


@pytest.mark.skipif(PCAPS is None or not (PCAPS / "zeek_ldap_gap-data-missing.pcapng").exists(),
                    reason="shared corpus not found (set WHYRST_CORPUS)")
def test_pcapng_interfaces_keep_their_units(tmp_path: Path) -> None:
    from whyrst.capture.raw import RawCapture

    src = PCAPS / "zeek_ldap_gap-data-missing.pcapng"  # type: ignore[operator]
    out = tmp_path / "out.pcapng"
    from whyrst.report.annotate import annotate

    annotate(str(src), str(out))

    def table(path: Path) -> list[tuple[int, int, int, int, bytes]]:
        rows = []
        with RawCapture(path) as cap:
            for rb in cap:
                r = rb.records
                for i in range(r.n):
                    iface = rb.ifaces[int(r.iface[i])]
                    o, c = int(r.offs[i]), int(r.cap[i])
                    rows.append((int(r.ts[i]), int(rb.units[i]), iface.tsresol, int(r.wire[i]),
                                 bytes(r.buf[o : o + c])))
        return rows

    assert table(out) == table(src)


def test_demo_comment_text(tmp_path: Path) -> None:
    from whyrst.analysis import analyze
    from whyrst.report.annotate import comments_for

    report = analyze(str(REPO / "examples" / "demo.pcap"))
    notes = comments_for(report.resets)
    for r in report.resets:
        first = notes[r.frame][0]
        assert first.startswith(f"whyrst: {r.cause} ({r.confidence}): ")
        assert "The RST is frame" not in first and "\n" not in first


def test_text_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "rst.txt"
    text.write_text("12:00:00.000000 IP 10.0.0.1.80 > 10.0.0.2.40000: Flags [R.], seq 1, ack 1, win 0, length 0\n")
    code, _, err = _run(capsys, "annotate", str(text), str(tmp_path / "out.pcapng"))
    assert code == 2
    assert "tcpdump text" in err and "pcap or pcapng" in err
    assert not (tmp_path / "out.pcapng").exists()


def test_stdin_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "annotate", "-", str(tmp_path / "out.pcapng"))
    assert code == 2
    assert "standard input" in err


def test_name_resolution_blocks_are_kept(tmp_path: Path) -> None:
    import struct

    from whyrst.report.annotate import _block, annotate

    base = tmp_path / "demo.pcapng"
    annotate(str(REPO / "examples" / "demo.pcap"), str(base))
    data = base.read_bytes()
    shb_len = struct.unpack_from("<I", data, 4)[0]
    record = struct.pack("<HH", 1, 4 + 15) + bytes([198, 19, 1, 2]) + b"server.example\x00" + b"\x00"
    nrb = _block(4, record + b"\x00\x00\x00\x00")
    src = tmp_path / "with-nrb.pcapng"
    src.write_bytes(data[:shb_len] + nrb + data[shb_len:] + nrb)
    out = tmp_path / "out.pcapng"
    done = annotate(str(src), str(out))
    assert done.packets == 192
    assert out.read_bytes().count(nrb) == 2

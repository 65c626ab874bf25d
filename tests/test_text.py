"""Pasted tcpdump text: packet lines found among noise, absolute sequence numbers recovered, fields
equal to tshark's for the same capture."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whyrst.capture import open_capture
from whyrst.capture.batch import Kind
from whyrst.errors import CaptureError, Warnings

SEED_S2 = b"""08:37:08.186174 IP 127.0.0.1.48672 > 127.0.0.1.80: Flags [S], seq 3753585494, win 43690, options [mss 65495,sackOK,TS val 3691146521 ecr 0,nop,wscale 7], length 0
08:37:08.186229 IP 127.0.0.1.80 > 127.0.0.1.48672: Flags [S.], seq 4147526100, ack 3753585495, win 43690, options [mss 65495,sackOK,TS val 3691146521 ecr 3691146521,nop,wscale 7], length 0
08:37:08.186276 IP 127.0.0.1.48672 > 127.0.0.1.80: Flags [.], ack 1, win 342, options [nop,nop,TS val 3691146521 ecr 3691146521], length 0
08:37:09.414037 IP 127.0.0.1.48672 > 127.0.0.1.80: Flags [P.], seq 1:17, ack 1, win 342, options [nop,nop,TS val 3691147749 ecr 3691146521], length 16: HTTP: GET / HTTP/1.1
08:37:09.414085 IP 127.0.0.1.80 > 127.0.0.1.48672: Flags [.], ack 17, win 342, options [nop,nop,TS val 3691147749 ecr 3691147749], length 0
08:37:13.190400 IP 127.0.0.1.80 > 127.0.0.1.48672: Flags [R.], seq 1, ack 17, win 342, options [nop,nop,TS val 3691151525 ecr 3691147749], length 0
"""


def read(text: bytes) -> list:
    with open_capture(io.BytesIO(text), warnings=Warnings()) as cap:
        return list(cap)


def test_relative_numbers_become_absolute() -> None:
    (b,) = read(SEED_S2)
    assert b.n == 6
    server_isn, client_isn = 4147526100, 3753585494
    assert int(b.seq[5]) == server_isn + 1 and int(b.ack[5]) == client_isn + 17
    assert int(b.seq[3]) == client_isn + 1 and int(b.payload_len[3]) == 16
    assert int(b.opt_mss[0]) == 65495 and int(b.opt_wscale[0]) == 7 and bool(b.opt_sack_ok[0])
    assert int(b.opt_ts_val[5]) == 3691151525


def test_noise_is_skipped_and_frames_count_packet_lines() -> None:
    noisy = (b"$ sudo tcpdump -nn -i lo port 80\ntcpdump: verbose output suppressed\n```shell\n" + SEED_S2
             + b"```\n^C\n6 packets captured\n")
    (b,) = read(noisy)
    assert b.n == 6 and b.frame.tolist() == [1, 2, 3, 4, 5, 6]


def test_any_interface_columns_and_verbose_lines() -> None:
    text = (b"14:16:18.601202 enp1s0 Out IP 192.168.0.203.27380 > 121.204.250.223.8080: Flags [S], seq 2056645866, "
            b"win 64240, length 0\n"
            b"14:16:18.609243 IP (tos 0x0, ttl 52, id 0, offset 0, flags [DF], proto TCP (6), length 60)\n"
            b"    121.204.250.223.8080 > 192.168.0.203.27380: Flags [S.], cksum 0x1c2e (correct), seq 1666115154, "
            b"ack 2056645867, win 28960, length 0\n")
    (b,) = read(text)
    assert b.n == 2 and int(b.ttl[1]) == 52 and int(b.ip_id[1]) == 0 and bool(b.ip_df[1])
    assert int(b.seq[1]) == 1666115154 and int(b.ack[1]) == 2056645867


def test_not_text_at_all() -> None:
    with pytest.raises(CaptureError):
        read(b"hello world\nthis is prose, no packets\n")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600) | st.text(max_size=600).map(str.encode))
def test_arbitrary_input_never_raises_anything_else(data: bytes) -> None:
    try:
        read(data)
    except CaptureError:
        pass


CORPUS = ["zeek_ssh_ssh.pcap", "zeek_tcp_rst-inject-rae.pcap", "zeek_http_get-to-ssh-server.pcap",
          "zeek_pop3_pop3.pcap", "zeek_http_http-desync-request-response-5.pcap", "sv_smb2-09-trunc-file-logging.pcap"]


@pytest.mark.skipif(not shutil.which("tcpdump") or not shutil.which("tshark"), reason="tcpdump/tshark missing")
@pytest.mark.parametrize("name", CORPUS)
@pytest.mark.parametrize("opts", [["-nn"], ["-nn", "-v"], ["-nn", "-e"], ["-nn", "-tttt"], ["-nn", "-S"]])
def test_tcpdump_text_matches_tshark(name: str, opts: list[str], corpus: Path) -> None:
    path = corpus / "pcaps" / name
    text = subprocess.run(["tcpdump", *opts, "-r", str(path)], capture_output=True, check=True).stdout
    fields = subprocess.run(["tshark", "-r", str(path), "-Y", "tcp", "-T", "fields", "-e", "frame.number",
                             "-e", "tcp.srcport", "-e", "tcp.seq_raw", "-e", "tcp.ack_raw", "-e", "tcp.flags",
                             "-e", "tcp.len", "-e", "ip.ttl"], capture_output=True, check=True).stdout.decode()
    batches = read(text)
    cols = {k: np.concatenate([b.cols[k] for b in batches]) for k in ("frame", "kind", "sport", "seq", "ack",
                                                                        "flags", "payload_len", "ttl")}
    by_frame = {int(f): i for i, f in enumerate(cols["frame"])}
    checked = 0
    for line in fields.splitlines():
        frame, sport, seq, ack, flags, length, ttl = (line.split("\t") + [""] * 7)[:7]
        i = by_frame.get(int(frame))
        if i is None or cols["kind"][i] != Kind.TCP or "," in sport:
            continue  # tunnelled or non-TCP in tcpdump's eyes
        assert int(cols["sport"][i]) == int(sport)
        assert int(cols["seq"][i]) == int(seq), (frame, opts)
        if int(flags, 16) & 0x10:
            assert int(cols["ack"][i]) == int(ack), (frame, opts)
        assert int(cols["flags"][i]) & 0xFF == int(flags, 16) & 0xFF
        assert int(cols["payload_len"][i]) == int(length)
        if "-v" in opts and ttl and "," not in ttl:
            assert int(cols["ttl"][i]) == int(ttl)
        checked += 1
    assert checked > 0

"""Packet capture at the lab's vantage points, and the RSTs read back from the pcaps.

Vantage points (one tcpdump each, one pcap per scenario):

- ``client``: the client's eth0, what the client host itself would capture;
- ``router``: the router's client-facing lan0. That is where a capture on a gateway is usually taken, and it
  is the one place that sees the client's real (pre-NAT) address together with everything the router
  itself sends toward the client: netfilter's REJECT resets, the injector's forged ones, the proxy's, and
  the server's packets after one hop (TTL 63), so forged TTLs stand out against them;
- ``server``: the server's eth0 (post-NAT addresses, the server's view).

The RSTs are read with a small pcap reader of our own, independent of the analyzer the lab checks.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from whyrst.lab.topo import LabError, Topology

VANTAGES = ("client", "router", "server")


class Tcpdump:
    """tcpdump in a namespace writing one pcap; :meth:`start` returns once it is really capturing."""

    def __init__(self, topo: Topology, vantage: str, path: Path) -> None:
        self.topo = topo
        self.vantage = vantage
        self.path = path
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: list[str] = []
        self._listening = threading.Event()

    def start(self) -> None:
        host = self.topo.host(self.vantage)
        # -U and --immediate-mode: every packet is written as it comes, so the file is complete when
        # tcpdump stops; -Z root: keep the rights to write into the output directory; -s 0: whole packets.
        argv = ["ip", "netns", "exec", host.ns, "tcpdump", "-i", host.iface, "-n", "-s", "0", "-U",
                "--immediate-mode", "-Z", "root", "-w", str(self.path)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            self.stderr.append(line)
            # "listening on eth0, ..." is printed after pcap_activate(): the socket is bound and filtering
            if "listening on" in line:
                self._listening.set()
        self._listening.set()

    def wait_listening(self, timeout: float = 5.0) -> None:
        if not self._listening.wait(timeout) or (self.proc is not None and self.proc.poll() is not None):
            raise LabError(f"tcpdump on {self.vantage} did not start: {' | '.join(self.stderr[-3:])}")

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGINT)  # tcpdump flushes and closes the file on SIGINT
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(2)
        with contextlib.suppress(Exception):
            if p.stderr is not None:
                p.stderr.close()
        self.proc = None


class Captures:
    """The tcpdumps of one scenario."""

    def __init__(self, topo: Topology, vantages: tuple[str, ...], out_dir: Path, case: str) -> None:
        self.dumps = {v: Tcpdump(topo, v, out_dir / f"{case}.{v}.pcap") for v in vantages}

    def start(self) -> None:
        for d in self.dumps.values():
            d.start()
        for d in self.dumps.values():
            d.wait_listening()
        time.sleep(0.05)  # libpcap's ring is mapped and the filter attached; let the first block settle

    def stop(self) -> dict[str, Path]:
        time.sleep(0.15)  # the last packets are still in flight between the namespaces
        for d in self.dumps.values():
            d.stop()
        return {v: d.path for v, d in self.dumps.items()}


def pcap_text(path: Path) -> str:
    """``tcpdump -nn -r`` of a pcap."""
    r = subprocess.run(["tcpdump", "-nn", "-r", str(path)], capture_output=True, text=True, timeout=30)
    return r.stdout


# -- reading RSTs back ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Packet:
    frame: int  # 1-based, as tshark's frame.number
    ts: float
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    ttl: int
    ipid: int
    win: int
    payload: int

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def has_ack(self) -> bool:
        return bool(self.flags & 0x10)


@dataclass
class PcapFile:
    path: Path
    vantage: str
    packets: list[Packet] = field(default_factory=list)
    count: int = 0  # all records, TCP or not

    @property
    def rsts(self) -> list[Packet]:
        return [p for p in self.packets if p.rst]


def read_pcap(path: Path, vantage: str = "") -> PcapFile:
    """The TCP/IPv4 packets of a classic pcap (Ethernet or Linux cooked), numbered like tshark."""
    out = PcapFile(path, vantage)
    data = path.read_bytes()
    if len(data) < 24:
        return out
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise LabError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack(end + "I", data[20:24])[0] & 0x0FFFFFFF
    off = 24
    frame = 0
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack(end + "IIII", data[off:off + 16])
        off += 16
        rec = data[off:off + incl]
        off += incl
        frame += 1
        ts = sec + frac / (1e9 if nano else 1e6)
        pkt = _decode(rec, linktype, frame, ts)
        if pkt is not None:
            out.packets.append(pkt)
    out.count = frame
    return out


def _decode(rec: bytes, linktype: int, frame: int, ts: float) -> Packet | None:
    if linktype == 1:  # Ethernet, with VLAN tags skipped
        off, etype = 14, struct.unpack("!H", rec[12:14])[0] if len(rec) >= 14 else 0
        while etype in (0x8100, 0x88A8) and len(rec) >= off + 4:
            etype = struct.unpack("!H", rec[off + 2:off + 4])[0]
            off += 4
    elif linktype == 113:  # Linux cooked v1
        off, etype = 16, struct.unpack("!H", rec[14:16])[0] if len(rec) >= 16 else 0
    elif linktype == 101:  # raw IP
        off, etype = 0, 0x0800
    else:
        return None
    if etype != 0x0800 or len(rec) < off + 20:
        return None
    ip = rec[off:]
    ihl = (ip[0] & 0x0F) * 4
    if ip[0] >> 4 != 4 or ip[9] != 6 or len(ip) < ihl + 20:
        return None
    total = struct.unpack("!H", ip[2:4])[0]
    tcp = ip[ihl:]
    sport, dport, seq, ack, doff_flags, win = struct.unpack("!HHIIHH", tcp[:16])
    doff = (doff_flags >> 12) * 4
    return Packet(frame, ts, socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport,
                  doff_flags & 0x1FF, seq, ack, ip[8], struct.unpack("!H", ip[4:6])[0], win,
                  max(0, min(total, len(ip)) - ihl - doff))

"""RST segments on the wire: AF_PACKET sockets with a classic BPF filter, so the kernel hands over only
the few packets whyrst needs (every RST, and SYN-ACKs this host receives) instead of all traffic.

The filter is written here as data (:func:`rst_filter`) for two layouts: frames that start with an
untagged Ethernet header (SOCK_RAW on an Ethernet or loopback device), and the cooked layout that
``any`` uses (SOCK_DGRAM, the packet starts at the network header and the EtherType is read from the
skb through the ``SKF_AD_PROTOCOL`` ancillary load, as libpcap's Linux cooked mode does). IPv4 (any
header length, first fragments only) and IPv6 (TCP as the first next header) are handled. Packets are
decoded with the project's decoder (:func:`whyrst.capture.decode.decode_link`).

Sockets can be opened inside other network namespaces (``netns``): the socket keeps the namespace
it was created in, so one process can watch several.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import socket
import struct
import time
from dataclasses import dataclass

from whyrst.capture import decode as dec
from whyrst.capture.batch import ACK, FIN, PSH, RST, SYN

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
PACKET_OUTGOING = 4
ARPHRD_ETHER, ARPHRD_LOOPBACK = 1, 772
CLONE_NEWNET = 0x40000000

# classic BPF opcodes (linux/filter.h, linux/bpf_common.h)
LD, LDX, ALU, JMP, RET = 0x00, 0x01, 0x04, 0x05, 0x06
W, H, B = 0x00, 0x08, 0x10
ABS, IND, MSH = 0x20, 0x40, 0xA0
JEQ, JSET = 0x10, 0x40
AND = 0x50
K = 0x00
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL, SKF_AD_PKTTYPE = 0, 4

SNAPLEN = 256  # link + IPv6 + TCP with options + the start of a RST payload that names its reason

# One instruction: (opcode, k, label if true, label if false); a label None means "next".
Insn = tuple[int, int, str | None, str | None]


def assemble(program: list[Insn | str]) -> list[tuple[int, int, int, int]]:
    """Resolve labels (strings in the list mark positions) into classic BPF's relative jump offsets."""
    labels: dict[str, int] = {}
    code: list[Insn] = []
    for item in program:
        if isinstance(item, str):
            labels[item] = len(code)
        else:
            code.append(item)
    out = []
    for pc, (op, k, jt, jf) in enumerate(code):
        def rel(label: str | None, pc: int = pc) -> int:
            if label is None:
                return 0
            off = labels[label] - pc - 1
            if not 0 <= off <= 255:
                raise ValueError(f"jump to {label} out of range")
            return off
        out.append((op, k & 0xFFFFFFFF, rel(jt), rel(jf)))
    return out


def rst_filter(link: str) -> list[tuple[int, int, int, int]]:
    """Accept TCP segments with RST, and SYN-ACKs not sent by this host; ``link`` is "ether" or "cooked"."""
    off = 14 if link == "ether" else 0
    if link == "ether":
        ethertype: list[Insn | str] = [(LD | H | ABS, 12, None, None)]
    elif link == "cooked":
        ethertype = [(LD | W | ABS, SKF_AD_OFF + SKF_AD_PROTOCOL, None, None)]
    else:
        raise ValueError(link)
    return assemble([
        *ethertype,
        (JMP | JEQ | K, 0x0800, "v4", None),
        (JMP | JEQ | K, 0x86DD, "v6", "drop"),
        "v4",
        (LD | B | ABS, off + 9, None, None),             # protocol
        (JMP | JEQ | K, 6, None, "drop"),
        (LD | H | ABS, off + 6, None, None),             # fragment offset: only the first fragment has TCP
        (JMP | JSET | K, 0x1FFF, "drop", None),
        (LDX | B | MSH, off, None, None),                # X = IPv4 header length
        (LD | B | IND, off + 13, None, None),            # TCP flags
        (JMP | JSET | K, RST, "accept", "synack?"),
        "v6",
        (LD | B | ABS, off + 6, None, None),             # next header (extension headers not followed)
        (JMP | JEQ | K, 6, None, "drop"),
        (LD | B | ABS, off + 40 + 13, None, None),
        (JMP | JSET | K, RST, "accept", "synack?"),
        "synack?",
        (ALU | AND | K, SYN | ACK, None, None),
        (JMP | JEQ | K, SYN | ACK, None, "drop"),
        (LD | W | ABS, SKF_AD_OFF + SKF_AD_PKTTYPE, None, None),
        (JMP | JEQ | K, PACKET_OUTGOING, "drop", "accept"),
        "accept",
        (RET | K, SNAPLEN, None, None),
        "drop",
        (RET | K, 0, None, None),
    ])


def run_filter(prog: list[tuple[int, int, int, int]], pkt: bytes, protocol: int = 0, pkttype: int = 0) -> int:
    """A small interpreter for the instructions :func:`rst_filter` uses: the tests check the program
    against crafted packets without a kernel."""
    a = x = pc = 0

    def load(off: int, size: int) -> int | None:
        if off >= 0x100000000 + SKF_AD_OFF:
            anc = off - (0x100000000 + SKF_AD_OFF)
            return protocol if anc == SKF_AD_PROTOCOL else pkttype if anc == SKF_AD_PKTTYPE else 0
        if off + size > len(pkt):
            return None
        return int.from_bytes(pkt[off:off + size], "big")

    while True:
        op, k, jt, jf = prog[pc]
        cls = op & 0x07
        if cls == LD:
            size = {W: 4, H: 2, B: 1}[op & 0x18]
            v = load(k if op & 0xE0 == ABS else x + k, size)
            if v is None:
                return 0
            a = v
        elif cls == LDX:
            if k >= len(pkt):
                return 0
            x = (pkt[k] & 0x0F) * 4
        elif cls == ALU:
            a &= k
        elif cls == JMP:
            taken = a == k if op & 0xF0 == JEQ else bool(a & k)
            pc += jt if taken else jf
        elif cls == RET:
            return k
        pc += 1


def _attach(sock: socket.socket, prog: list[tuple[int, int, int, int]]) -> None:
    raw = b"".join(struct.pack("HBBI", op, jt, jf, k) for op, k, jt, jf in prog)
    buf = ctypes.create_string_buffer(raw)
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@dataclass
class WirePacket:
    ts: float  # wall clock (CLOCK_REALTIME)
    netns: str
    ifname: str
    outgoing: bool
    version: int
    src: str
    sport: int
    dst: str
    dport: int
    flags: int
    seq: int
    ack: int
    ttl: int
    ip_id: int
    payload_len: int
    win: int


def flags_text(flags: int) -> str:
    names = ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"))
    text = "".join(c for bit, c in names if flags & bit)
    return text + ("." if flags & ACK else "")


_libc = None


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _bind_all(sock: socket.socket) -> None:
    """bind to ifindex 0 (every interface): Python's AF_PACKET address needs an interface name."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    # struct sockaddr_ll: family, protocol (network order), ifindex, hatype, pkttype, halen, addr[8]
    sll = struct.pack("=HHiHBB8s", socket.AF_PACKET, socket.htons(ETH_P_ALL), 0, 0, 0, 0, b"")
    if _libc.bind(sock.fileno(), ctypes.c_char_p(sll), len(sll)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def netns_path(name: str) -> str:
    if "/" in name:
        return name
    return f"/var/run/netns/{name}"


class WireCapture:
    """One AF_PACKET socket (``iface`` or ``any``), optionally inside the network namespace ``netns``."""

    def __init__(self, iface: str = "any", netns: str = "", rcvbuf: int = 8 << 20) -> None:
        self.iface = iface
        self.netns = netns
        self.link = "cooked"
        self.sock: socket.socket | None = None
        home = None
        if netns:
            try:
                target = os.open(netns_path(netns), os.O_RDONLY)
            except FileNotFoundError:
                raise OSError(2, f"no network namespace {netns} ({netns_path(netns)})") from None
            home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                _setns(target)
            except OSError:
                os.close(home)
                raise
            finally:
                os.close(target)
        try:
            self.sock = self._open(rcvbuf)
        finally:
            if home is not None:
                _setns(home)
                os.close(home)
        self._drops = 0

    def _open(self, rcvbuf: int) -> socket.socket:
        # Protocol 0 until the filter is attached, so no unfiltered packet is queued in between.
        if self.iface != "any":
            s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
            try:
                s.bind((self.iface, 0))
                hatype = s.getsockname()[3]
                if hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
                    self.link = "ether"
                else:
                    s.close()
            except OSError:
                s.close()
                raise
            if self.link != "ether":
                s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        else:
            s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, 0)
        try:
            _attach(s, rst_filter(self.link))
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            if self.iface == "any":
                _bind_all(s)
            else:
                s.bind((self.iface, ETH_P_ALL))  # Python applies htons itself
            s.setblocking(False)
        except OSError:
            s.close()
            raise
        return s

    def fileno(self) -> int:
        return self.sock.fileno() if self.sock else -1

    def read(self, limit: int = 4096) -> list[WirePacket]:
        """The packets queued now (non-blocking)."""
        out: list[WirePacket] = []
        if self.sock is None:
            return out
        lt = dec.LT_EN10MB if self.link == "ether" else dec.LT_RAW
        for _ in range(limit):
            try:
                data, anc, _flags, addr = self.sock.recvmsg(SNAPLEN, 64)
            except (BlockingIOError, InterruptedError):
                break
            ts = time.time()
            for level, typ, val in anc:
                if level == socket.SOL_SOCKET and typ == SCM_TIMESTAMPNS and len(val) >= 16:
                    sec, nsec = struct.unpack("qq", val[:16])
                    ts = sec + nsec / 1e9
            r = dec.Row()
            dec.decode_link(data, 0, len(data), lt, r)
            if r.kind != 1:  # Kind.TCP
                continue
            v = r.ip_version
            src = str(ipaddress.ip_address(bytes(r.src)))
            dst = str(ipaddress.ip_address(bytes(r.dst)))
            out.append(WirePacket(ts, self.netns, addr[0], addr[2] == PACKET_OUTGOING, v, src, r.sport, dst,
                                  r.dport, r.flags, r.seq, r.ack, r.ttl, r.ip_id, r.payload_len, r.win))
        return out

    def stats(self) -> tuple[int, int]:
        """(packets, drops) since the last call (the kernel resets the counters on read)."""
        if self.sock is None:
            return 0, 0
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("II", raw)
        self._drops += drops
        return packets, drops

    @property
    def drops(self) -> int:
        """Packets the filter accepted but the socket's buffer could not hold, since it was opened."""
        self.stats()
        return self._drops

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

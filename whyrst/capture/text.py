"""Pasted ``tcpdump`` text output as a capture.

Each packet line (with its continuation lines: the ``-v`` address line, protocol detail lines, hex
dumps, the inner packet of a tunnel) becomes one row of a :class:`PacketBatch`; ``frame`` is the n-th
packet line, 1-based, in the order they appear. Lines that are not packets (banners, shell prompts,
``^C``, prose, code fences, ``N packets captured``) are skipped silently; a line that looks like a
packet but cannot be read adds a warning with its line number and never raises (a packet line whose
numbers do not fit the columns keeps its row, without those numbers).

A packet line starts with a tcpdump time stamp (6 or 9 fractional digits) followed by something
tcpdump prints there, or, without a time stamp (``-t``), with ``IP``/``IP6``/``ARP``/a MAC address
pair. A line after a packet line that is indented deeper, or not a packet line itself, continues it.

Formats, detected line by line (mixtures allowed):

* time stamps: time of day (``tcpdump``; a date of 1970-01-01 is assumed, and a step back of more
  than a minute is taken as midnight or a later paste: a day is added so time keeps increasing),
  ``-tttt`` date and time (taken as UTC), ``-tt`` epoch seconds, ``-ttt``/``-ttttt`` deltas (a first
  stamp of ``00:00:00.000000``: read as time since the first packet until a stamp goes back, then as
  time since the previous one), micro- or nanosecond precision, ``-t`` none (1 µs apart), ``-#``
  packet numbers;
* ``-i any`` interface and direction columns, ``-e`` link headers (Ethernet, 802.1Q/QinQ, Linux
  cooked v1/v2, BSD loopback, raw IP; the outermost VLAN id and the frame length are kept);
* IPv4 and IPv6; ``-v``/``-vv`` IP header fields (TTL or hop limit, IP id, DF, TOS/traffic class;
  the IPv4 header on its own line and the packet on the next), TCP checksum verdicts, RST payload
  text (``[RST ...]``) and text protocols (``HTTP: GET / HTTP/1.1``) as payload bytes, ``-x``/``-X``
  hex dumps (exact header fields and payload);
* TCP flags (``[S.]``, ``[none]``, ECN ``E``/``W``, AE ``e``), ``seq a:b``, ``ack``, ``win``, ``urg``,
  options (mss, wscale, sackOK, sack blocks, TS, mptcp subtype, tfo, md5, unknown-N, ...), ``length``;
  ``-q`` (``tcp N``) and cut headers (``[|tcp]``) as TCP_TRUNCATED; UDP, ICMP, ARP and the rest as
  IP_OTHER/OTHER rows; GRE, IP-in-IP and VXLAN/Geneve inner TCP packets with ``encap`` set.

Columns that text cannot give: without ``-v`` the TTL is 0 and the IP id -1, and the row's
``extras["ip_fields"]`` entry is False (``extras["has_ip_fields"]`` is True only when every IP row of
the batch has them). ``tcp_hdr_len`` comes from the IP length with ``-v`` and is otherwise computed
from the printed options; ``wire_len``/``cap_len`` are the ``-e`` frame length, else the IP length
(printed or computed). ``link_type`` is the DLT when ``-e`` shows it, else 0; ``iface`` numbers the
``-i any`` interface names in order of appearance.

Sequence numbers. Unless ``-S`` is given, tcpdump prints the seq/ack of the first ACK-bearing packet
of a conversation (and of every SYN+ACK) as they are and keeps them (print-tcp.c, ``tcp_seq_hash``:
keyed by the address/port pair in a canonical order, the lower port first, with a ``rev`` flag); later
ACK-bearing packets print ``seq - base[sender]`` and ``ack - base[receiver]``. :class:`SeqBook` runs
that bookkeeping backwards, so the ``seq``/``ack`` columns hold absolute 32-bit values.

``-S`` output (and a new tcpdump run pasted after an old one without its banner) is recognised per
packet, where a number could be read either way: the reading that lands next to where that side's
sequence numbers are (known from its earlier segments) wins when the other lands at least 8 times
farther (and 64 beyond); without such a reference, a number within 2**24 of its base but far from
zero is absolute and one near zero but far from the base relative. Packets that cannot tell follow the
conversation's (else the capture's) last verdict, at first relative. Absolute numbers restart the
conversation there, as a new tcpdump would. Near zero (an ISN within 64 KiB of 0) the two can be
confused. tcpdump banners (``listening on``, ``reading from file``) start a new run: the bookkeeping
and the time-stamp format detection restart.

tcpdump leaves out the seq of a segment without data, SYN, FIN or RST (unless ``-vv``): it is
estimated as the sender's next sequence number (from its own segments or the peer's acks). When the
first ACK-bearing packet of a conversation has no printed seq (a capture that starts mid-stream with a
pure ACK), that side's base cannot be known: its numbers stay tcpdump's relative ones (base 0).

Per row, in ``extras`` (numpy arrays): ``seq_exact``/``ack_exact`` (the column is the value on the
wire: printed, or recovered exactly), ``seq_relative`` (seq or ack left relative to an unknown base),
``ip_fields`` (the row has -v IP header fields), ``line`` (line number of the packet line). Per batch:
``seq_absolute`` (no row has ``seq_relative``), ``has_ip_fields``, ``format`` (``"tcpdump-text"``).
"""

from __future__ import annotations

import calendar
import io
import ipaddress
import re
import socket
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import numpy as np

from whyrst.capture.batch import (
    ACK,
    ADDRESS_BYTES,
    COLUMNS,
    CWR,
    ECE,
    FIN,
    NS,
    PSH,
    RST,
    SYN,
    URG,
    Kind,
    PacketBatch,
)
from whyrst.errors import CaptureError, Warnings

__all__ = ["SeqBook", "TextParser", "looks_like_tcpdump_text", "parse_text", "parse_text_capture"]

MAX_LINE = 65536  # longer lines are not tcpdump output; they are skipped in pieces so memory stays bounded
SNIFF_LINES = 400
M32 = 0xFFFFFFFF
NO_PACKETS = "no packets found: not a pcap, pcapng or tcpdump text capture"
# what each integer column can hold: a pasted number past it ("length 4294967296", a date in year 1) is a
# line that cannot be read, not an OverflowError when the batch is built
_RANGES = {name: (int(np.iinfo(dtype).min), int(np.iinfo(dtype).max)) for name, dtype, _ in COLUMNS
           if np.dtype(dtype).kind in "iu"}
_FILL = {name: int(fill) for name, _, fill in COLUMNS}

# -- line layout -------------------------------------------------------------------------------------

_FRAC = r"\.(?:\d{9}|\d{6})(?!\d)"
_LEAD = re.compile(
    r"(?P<indent>[ \t]*)"
    r"(?:(?P<num>\d{1,10})[ \t]+(?=[\d(A-Za-z?\[]))?"  # tcpdump -# packet numbers
    r"(?:(?P<date>\d{4}-\d\d-\d\d)[ T](?P<dtime>\d\d:\d\d:\d\d" + _FRAC + r")"
    r"|(?P<hms>-?\d{2,9}:\d\d:\d\d" + _FRAC + r")"  # -ttt deltas can be negative
    r"|(?P<epoch>\d{1,12}" + _FRAC + r"))?"
    r"[ \t]*(?P<rest>.*)$",
    re.S,
)
_LOG_WORDS = re.compile(r"(?:INFO|DEBUG|WARN|WARNING|ERROR|TRACE|FATAL|CRITICAL|NOTICE)\b")
_MAC = r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}"
_DIR = r"(?:In|Out|B|M|P|\?)"
# What tcpdump prints first after the time stamp (link header, interface column or protocol).
_TCPDUMPISH = re.compile(
    r"(?:\S+[ \t]+" + _DIR + r"[ \t]|" + _DIR + r"[ \t]+(?:" + _MAC + r"|ethertype)|IP6?\b|ARP\b|RARP\b|"
    + _MAC + r"\b|AF IPv|ip: |\[\|\w+\]|ethertype\b|vlan\b|[A-Z][A-Z0-9/.+-]*(?:v\d+)?(?:,|\s|\(|$))"
)
# A packet line without a time stamp (-t) must be unmistakable.
_UNTIMED = re.compile(
    r"(?:\S+[ \t]+" + _DIR + r"[ \t]+(?:ifindex \d+ )?)?(?:" + _DIR + r"[ \t]+)?"
    r"(?:IP6? |ARP, (?:Request|Reply|Reverse)|" + _MAC + r" > " + _MAC + r", |" + _MAC + r" ethertype |"
    r"AF IPv[46] |ip: )"
)
_BANNER = re.compile(r"(?:listening on |reading from file |tcpdump: (?:verbose output suppressed|listening))")
# Lines around pasted output that end the packet before them (never indented: tcpdump indents its own lines).
_NOISE = re.compile(r"(?:tcpdump: |\^C|\d+ packets? (?:captured|received by filter|dropped by)|```|~~~|"
                    r"\S*[$#%>] |\[sudo\] )")
_IP_WORD = re.compile(r"(?:\S+\s+" + _DIR + r"\s+)?IP6? ")

# -- network layer -----------------------------------------------------------------------------------

_A4 = r"\d{1,3}(?:\.\d{1,3}){3}"
_A6 = r"[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}(?:(?<=:)\d{1,3}(?:\.\d{1,3}){3})?"
_PORT = r"(?:\d{1,5}|[A-Za-z][\w-]{0,30})"
_PAIR_BODY = (
    r"(?P<src>" + _A4 + "|" + _A6 + r")(?:\.(?P<sport>" + _PORT + r"))? > "
    r"(?P<dst>" + _A4 + "|" + _A6 + r")(?:\.(?P<dport>" + _PORT + r"))?:(?= |$)"
)
_NET = re.compile(r"(?P<v4h>\(tos 0x[0-9a-fA-F]+)|(?P<v6h>IP6 \(|\((?=(?:class 0x|flowlabel 0x|hlim \d)))|"
                  r"(?:IP6? )?" + _PAIR_BODY)
_PAIR = re.compile(r"(?:IP6? )?" + _PAIR_BODY)
_TCP_PAIR = re.compile(r"(?:IP6? )?" + _PAIR_BODY + r" (?=Flags \[)")
_PORTS_ONLY = re.compile(r"(?P<sport>\d{1,5}) > (?P<dport>\d{1,5}): (?=Flags \[|tcp \d)")
_V4F = re.compile(r"tos 0x([0-9a-fA-F]+)|\bttl (\d+)|\bid (\d+)|\boffset (\d+)|\bflags \[([^\]]*)\]|"
                  r"\bproto [^(,]*\((\d+)\)|\blength (\d+)")
_V6F = re.compile(r"\bclass 0x([0-9a-fA-F]+)|\bhlim (\d+)|\bnext-header [^(,]*\((\d+)\)|\bpayload length: (\d+)")
_LINKLEN = re.compile(r"\blength (\d+):")
_VLAN = re.compile(r"\bvlan (\d+)\b")
_IFACE = re.compile(r"(\S+)[ \t]+" + _DIR + r"[ \t]")
_TUNNEL_NEXT_LINE = re.compile(r"(?:VXLAN(?:-GPE)?|Geneve|OTV)\b.*\bvni \d+\s*$")

# -- TCP ---------------------------------------------------------------------------------------------

_FLAGS = re.compile(r"Flags \[(?P<f>[^\]]{0,16})\]")
_ITEM = re.compile(
    r", (?:cksum 0x[0-9a-fA-F]+ \((?P<ck>correct|incorrect)[^)]*\)|seq (?P<seq>\d+)(?::(?P<end>\d+))?|"
    r"ack (?P<ack>\d+)|win (?P<win>\d+)|urg (?P<urg>\d+)|(?P<opt>options \[)|length (?P<len>\d+))"
)
_QUIET = re.compile(r"\s*tcp (\d+)")
_RSTDATA = re.compile(r" \[RST(\+?) (.*)\]$", re.S)
_TXTPROTO = re.compile(r": ([A-Z][A-Z0-9-]{1,15})(?:: (.*)|, length: \d+)$", re.S)
_HEX = re.compile(r"\s*0x[0-9a-fA-F]{4,}:\s+([0-9a-fA-F]{2,4}(?: [0-9a-fA-F]{2,4})*)")

FLAG_BITS = {"F": FIN, "S": SYN, "R": RST, "P": PSH, ".": ACK, "U": URG, "E": ECE, "W": CWR, "e": NS}
OPTION_KINDS = {"eol": 0, "nop": 1, "mss": 2, "wscale": 3, "sackOK": 4, "sack": 5, "echo": 6, "echoreply": 7,
                "TS": 8, "cc": 11, "ccnew": 12, "ccecho": 13, "md5": 19, "md5:": 19, "scps": 20, "uto": 28,
                "tcp-ao": 29, "mptcp": 30, "tfo": 34, "exp": 254, "exp-tfo": 254}
OPTION_SIZES = {"eol": 1, "nop": 1, "mss": 4, "wscale": 3, "sackOK": 2, "echo": 6, "echoreply": 6, "TS": 10,
                "cc": 6, "ccnew": 6, "ccecho": 6, "md5": 18, "md5:": 18, "uto": 4, "scps": 4}
MPTCP_SUBTYPES = {"capable": 0, "join": 1, "dss": 2, "add-addr": 3, "remove-addr": 4, "rem-addr": 4, "prio": 5,
                  "fail": 6, "fast-close": 7, "tcprst": 8}
ENC_GRE, ENC_VXLAN, ENC_GENEVE, ENC_IPIP, ENC_MPLS = 1, 2, 3, 4, 6

_SERVICES = {"ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "http": 80,
             "pop3": 110, "sunrpc": 111, "imap": 143, "bgp": 179, "ldap": 389, "https": 443, "microsoft-ds": 445,
             "submission": 587, "imaps": 993, "pop3s": 995, "mysql": 3306, "postgresql": 5432, "http-alt": 8080,
             "netbios-ssn": 139, "rtsp": 554, "socks": 1080, "openflow": 6653, "redis": 6379}

# -- small helpers -----------------------------------------------------------------------------------

_ADDR_CACHE: dict[str, tuple[int, bytes] | None] = {}


def _addr(text: str) -> tuple[int, bytes] | None:
    hit = _ADDR_CACHE.get(text, False)
    if hit is not False:
        return hit  # type: ignore[return-value]
    try:
        ip = ipaddress.ip_address(text)
        value: tuple[int, bytes] | None = (ip.version, ip.packed)
    except ValueError:
        value = None
    if len(_ADDR_CACHE) > 65536:
        _ADDR_CACHE.clear()
    _ADDR_CACHE[text] = value
    return value


_PORT_CACHE: dict[str, int | None] = {}


def _port(text: str | None) -> int | None:
    if text is None:
        return None
    if text.isdigit():
        n = int(text)
        return n if n <= 0xFFFF else None
    if text in _PORT_CACHE:
        return _PORT_CACHE[text]
    value = _SERVICES.get(text)
    if value is None:
        try:
            value = socket.getservbyname(text, "tcp")
        except (OSError, UnicodeError, ValueError):
            value = None
    _PORT_CACHE[text] = value
    return value


def _close_paren(s: str, i: int) -> int:
    """Index just past the parenthesis that closes the one at ``s[i]``; -1 when it never closes."""
    depth = 0
    for j in range(i, min(len(s), i + 4096)):
        c = s[j]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


def _close_bracket(s: str, i: int) -> int:
    """Index of the ``]`` that closes the ``[`` at ``s[i]``; -1 when it never closes."""
    depth = 0
    for j in range(i, len(s)):
        c = s[j]
        if c == "[":
            depth += 1
        elif c == "]":
            depth -= 1
            if depth == 0:
                return j
    return -1


def _unvis(s: str) -> bytes:
    """Bytes from tcpdump's printable rendering (``fn_print_char``: ``M-`` for the high bit, ``^X`` for
    control characters)."""
    if "^" not in s and "M-" not in s:
        return s.encode("utf-8", "replace")
    out = bytearray()
    i, n = 0, len(s)
    while i < n:
        hi = 0
        if s.startswith("M-", i) and i + 2 < n:
            hi, i = 0x80, i + 2
        c = s[i]
        if c == "^" and i + 1 < n and ("@" <= s[i + 1] <= "_" or s[i + 1] == "?"):
            out.append((ord(s[i + 1]) ^ 0x40) | hi)
            i += 2
            continue
        o = ord(c)
        if o < 0x80:
            out.append(o | hi)
        else:
            out += c.encode("utf-8", "replace")
        i += 1
    return bytes(out)


def _sd(x: int) -> int:
    """Distance of a 32-bit value from zero, either way round."""
    x &= M32
    return min(x, (1 << 32) - x)


def _between(x: int, lo: int, hi: int) -> bool:
    """Whether ``x`` lies from ``lo`` up to ``hi`` (mod 2**32)."""
    return (x - lo) & M32 <= (hi - lo) & M32


def _later(a: int | None, b: int | None) -> int | None:
    """The later of two sequence numbers (mod 2**32); when they are far apart (a stray or damaged
    segment, a new connection), the newer one, ``b``."""
    if a is None:
        return b
    if b is None:
        return a
    d = (b - a) & M32
    return a if d > (1 << 32) - FAR else b


FAR = 1 << 20  # sequence numbers this far apart do not belong to the same stretch of a stream


# -- time stamps -------------------------------------------------------------------------------------

NS_S = 1_000_000_000
DAY = 86_400 * NS_S
TS_LIMIT = (1 << 62)  # nanoseconds: some 146 years either side of 1970, well inside the int64 column
STEP_BACK = 60 * NS_S  # a time of day that goes back further than this has passed midnight (or is a new paste)


class _Clock:
    """Nanosecond time stamps from whatever time column tcpdump printed."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.day = 0
        self.delta: str | None = None  # None: time of day; "first": -ttttt; "prev": -ttt
        self.decided = False
        self.prev_raw = 0
        self.base = 0

    def new_run(self) -> None:
        self.decided = False
        self.delta = None

    def stamp(self, date: str | None, dtime: str | None, hms: str | None, epoch: str | None) -> int:
        if epoch is not None:
            sec, _, frac = epoch.partition(".")
            value = int(sec) * NS_S + int(frac.ljust(9, "0")[:9])
        elif date is not None and dtime is not None:
            try:
                y, mo, d = (int(x) for x in date.split("-"))
                value = calendar.timegm((y, mo, d, 0, 0, 0, 0, 0, 0)) * NS_S + _hms_ns(dtime)
            except (ValueError, OverflowError):
                value = _hms_ns(dtime)
        elif hms is not None:
            raw = _hms_ns(hms)
            if not self.decided:
                self.decided = True
                self.delta = "first" if raw <= 0 else None
                self.prev_raw = 0
                if self.delta is not None:
                    self.base = self.last + 1000 if self.last is not None else 0
            if self.delta is not None:
                if self.delta == "first" and raw < self.prev_raw:
                    self.delta = "prev"  # a delta went back: deltas are since the previous packet
                self.prev_raw = raw
                prev = self.last if self.last is not None else 0
                value = self.base + raw if self.delta == "first" else prev + raw
            elif raw < 0:  # a negative delta in what looked like times of day
                value = (self.last if self.last is not None else 0) + raw
            else:
                value = self.day + raw
                if self.last is not None and value < self.last - STEP_BACK:
                    self.day += DAY * (1 + (self.last - value) // DAY)
                    value = self.day + raw
        else:
            value = self.last + 1000 if self.last is not None else 0
        if not -TS_LIMIT <= value <= TS_LIMIT:  # a date in year 1 or 9999: not a time stamp we can keep
            value = self.last + 1000 if self.last is not None else 0
        self.last = value
        return value


def _hms_ns(text: str) -> int:
    sign = -1 if text.startswith("-") else 1
    hms, _, frac = text.lstrip("-").partition(".")
    h, m, s = hms.split(":")
    return sign * ((int(h) * 3600 + int(m) * 60 + int(s)) * NS_S + int(frac.ljust(9, "0")[:9]))


# -- tcpdump's relative sequence numbers, backwards ------------------------------------------------

EXACT, ESTIMATED, UNKNOWN = 2, 1, 0
REL, ABS = 1, 2
NEAR = 1 << 24  # relative numbers are near zero; absolute ones near the base they would be relative to


class _Conv:
    __slots__ = ("base", "entry", "mode", "own_nxt", "peer_ack", "state")

    def __init__(self) -> None:
        self.entry = False  # tcpdump has an entry for this conversation
        self.base = [0, 0]  # per side: what tcpdump subtracts from that side's sequence numbers
        self.state = [UNKNOWN, UNKNOWN]  # how well each base is known
        self.own_nxt: list[int | None] = [None, None]  # next sequence number of a side, from its segments
        self.peer_ack: list[int | None] = [None, None]  # latest ack the peer sent for that side
        self.mode = 0  # REL or ABS once a packet of this conversation said so


class SeqBook:
    """tcpdump's ``tcp_seq_hash`` run backwards: printed seq/ack in, absolute values out.

    :meth:`step` takes one TCP packet in capture order and returns ``(seq, ack, seq_exact,
    ack_exact)``. ``seq``/``ack`` given as None were not printed. ``exact_seq``/``exact_ack`` (from a
    hex dump) override the printed values and calibrate the conversation.
    """

    def __init__(self) -> None:
        self.convs: dict[tuple[int, bytes, int, bytes, int], _Conv] = {}
        self.mode = 0  # the last decision of any conversation, for packets that cannot tell
        self.relative = False  # the last step left a number relative: its base was never printed

    def step(self, version: int, src: bytes, sport: int, dst: bytes, dport: int, flags: int,
             seq: int | None, ack: int | None, length: int,
             exact_seq: int | None = None, exact_ack: int | None = None) -> tuple[int, int, bool, bool]:
        rev = sport > dport or (sport == dport and src > dst)
        key = (version, dst, dport, src, sport) if rev else (version, src, sport, dst, dport)
        c = self.convs.get(key)
        if c is None:
            c = self.convs[key] = _Conv()
        s = 1 if rev else 0
        r = 1 - s
        self.relative = False
        seq_abs: int | None
        ack_abs: int | None
        if exact_seq is not None:
            seq_abs, ack_abs = exact_seq & M32, (exact_ack or 0) & M32
            seq_ok = True
            ack_ok = bool(flags & ACK)
            if flags & ACK:
                if not c.entry or flags & SYN:
                    c.entry = True
                    c.base[s], c.state[s] = seq_abs, EXACT
                    c.base[r], c.state[r] = (ack_abs - 1) & M32, EXACT
                elif c.mode != ABS and self.mode != ABS:
                    if seq is not None and c.state[s] != EXACT:
                        c.base[s], c.state[s] = (seq_abs - seq) & M32, EXACT
                    if ack is not None and c.state[r] != EXACT:
                        c.base[r], c.state[r] = (ack_abs - ack) & M32, EXACT
        elif not flags & ACK:
            seq_abs, seq_ok = (seq & M32, True) if seq is not None else (self._estimate(c, s), False)
            ack_abs, ack_ok = 0, False
        elif not c.entry or flags & SYN:
            seq_abs, ack_abs, seq_ok, ack_ok = self._create(c, s, r, seq, ack)
        else:
            mode = self._looks(c, s, r, seq, ack)
            if mode:
                c.mode = self.mode = mode
            else:
                mode = c.mode or self.mode or REL
            if mode == ABS:
                seq_abs, ack_abs, seq_ok, ack_ok = self._create(c, s, r, seq, ack)
            else:
                if seq is not None:
                    seq_abs = (seq + c.base[s]) & M32
                    seq_ok = c.state[s] == EXACT
                    if c.state[s] == UNKNOWN:
                        self.relative = True
                else:
                    seq_abs, seq_ok = self._estimate(c, s), False
                    if c.state[s] == UNKNOWN:
                        self.relative = True
                if ack is not None:
                    ack_abs = (ack + c.base[r]) & M32
                    ack_ok = c.state[r] == EXACT
                    if c.state[r] == UNKNOWN:
                        self.relative = True
                else:
                    ack_abs, ack_ok = 0, False
        self._advance(c, s, r, flags, seq_abs, ack_abs, length, seq is not None or exact_seq is not None)
        return (seq_abs or 0) & M32, (ack_abs or 0) & M32, seq_ok, ack_ok

    def _create(self, c: _Conv, s: int, r: int, seq: int | None,
                ack: int | None) -> tuple[int | None, int | None, bool, bool]:
        """tcpdump creates (or, on SYN, resets) the entry: the printed numbers are absolute."""
        c.entry = True
        if seq is not None:
            c.base[s], c.state[s] = seq & M32, EXACT
            seq_abs: int | None = seq & M32
        else:
            est = self._estimate(c, s)
            c.base[s], c.state[s] = (est, ESTIMATED) if est is not None else (0, UNKNOWN)
            seq_abs = est
            if est is None:
                self.relative = True  # tcpdump keeps this number as the side's base but did not print it
        if ack is not None:
            c.base[r], c.state[r] = (ack - 1) & M32, EXACT
        else:
            c.base[r], c.state[r] = 0, UNKNOWN
        return seq_abs, (ack & M32 if ack is not None else None), seq is not None, ack is not None

    @staticmethod
    def _looks(c: _Conv, s: int, r: int, seq: int | None, ack: int | None) -> int:
        """REL or ABS when the printed numbers say which they are, else 0.

        Where the number a side should be at is known (its next sequence number, from its own earlier
        segments), the reading that lands closer to it wins; otherwise a relative number is near zero
        and an absolute one near its base (this cannot tell when the base itself is near zero).
        """
        votes: list[tuple[int, int]] = []  # (distance of the winning reading, REL or ABS)
        for v, side, expect in ((ack, r, c.own_nxt[r]), (seq, s, _later(c.own_nxt[s], c.peer_ack[s]))):
            if v is None or c.state[side] != EXACT:
                continue
            base = c.base[side]
            if expect is not None and base:
                d_rel, d_abs = _sd(v + base - expect), _sd(v - expect)
                if d_rel < NEAR or d_abs < NEAR:
                    # the readings differ by the base; one must land much closer than the other, and -S
                    # is not taken from a number that, read as relative, resends what the side already
                    # sent (a side whose numbers cross zero: from 100 before zero, its first 100 bytes
                    # sent again print "seq 0:100", as -S prints the 100 bytes after them)
                    if 8 * d_abs + 64 <= d_rel and not _between(v + base, base, expect):
                        votes.append((d_abs, ABS))
                    elif 8 * d_rel + 64 <= d_abs:
                        votes.append((d_rel, REL))
                    continue
            near_zero, near_base = _sd(v), _sd(v - base)
            if near_base < NEAR <= near_zero:
                votes.append((near_base, ABS))
            elif near_zero < NEAR <= near_base:
                votes.append((near_zero, REL))
        if not votes:
            return 0
        votes.sort()
        best = votes[0]
        for d, vote in votes[1:]:
            if vote != best[1] and d < 16 * best[0] + 16:
                return 0  # the numbers disagree: cannot tell
        return best[1]

    @staticmethod
    def _estimate(c: _Conv, s: int) -> int | None:
        own, acked = c.own_nxt[s], c.peer_ack[s]
        if own is not None and acked is not None and _sd(own - acked) >= FAR:
            return acked  # the side's own numbers jumped away from what the peer acknowledges
        return _later(own, acked)

    @staticmethod
    def _advance(c: _Conv, s: int, r: int, flags: int, seq: int | None, ack: int | None, length: int,
                 printed: bool) -> None:
        if seq is not None and printed and not flags & RST:
            end = (seq + length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)) & M32
            if flags & SYN:
                c.own_nxt[s], c.peer_ack[s] = end, None
            else:
                c.own_nxt[s] = _later(c.own_nxt[s], end)
        if flags & ACK and ack is not None:
            c.peer_ack[r] = ack if flags & SYN else _later(c.peer_ack[r], ack)


# -- one packet being read ----------------------------------------------------------------------------


class _Tcp:
    __slots__ = (
        "ack",
        "complete",
        "end",
        "flags",
        "length",
        "opt_bytes",
        "payload",
        "quiet",
        "seq",
        "text_proto",
        "truncated",
    )

    def __init__(self) -> None:
        self.flags = 0
        self.seq: int | None = None
        self.end: int | None = None
        self.ack: int | None = None
        self.length: int | None = None
        self.complete = False  # "win" was printed: the fixed header was there
        self.truncated = False  # [|tcp] before the length: the header was cut
        self.opt_bytes = 0
        self.payload = b""
        self.text_proto = False  # a text protocol whose -v lines follow
        self.quiet = False


class _Pkt:
    """A packet line and its continuation lines, until the next packet line."""

    __slots__ = (
        "dst",
        "expect_addr",
        "expect_inner",
        "hdr_lineno",
        "hex_payload",
        "hexbuf",
        "indent",
        "inner_hdr",
        "ip6_plen",
        "ip_fields",
        "ip_hl",
        "ip_len",
        "line",
        "link_len",
        "no_inner",
        "row",
        "src",
        "tcp",
        "text_lines",
        "timestamped",
        "tunnel",
    )

    def __init__(self, row: dict[str, int], line: int, indent: int, timestamped: bool) -> None:
        self.row = row
        self.src = b""
        self.dst = b""
        self.line = line
        self.indent = indent
        self.timestamped = timestamped
        self.expect_addr = False  # a -v IPv4 header waits for its address line
        self.expect_inner = False  # a tunnel header (VXLAN) waits for the inner packet on the next line
        self.no_inner = False  # ICMP: packets quoted in it are not this packet
        self.tcp: _Tcp | None = None
        self.hexbuf: bytearray | None = None
        self.hex_payload: bytes | None = None  # the TCP payload from a hex dump
        self.text_lines: list[str] | None = None
        self.ip_fields = False
        self.ip_len = -1  # IPv4 total length from -v
        self.ip_hl = 20  # IPv4 header length: -1 when -v shows IP options (their size is not printed)
        self.ip6_plen = -1  # IPv6 payload length from -v
        self.link_len = -1  # frame length from -e
        self.hdr_lineno = line
        self.tunnel = 0  # the encapsulation the outer packet announced (GRE, VXLAN, IP in IP, ...)
        self.inner_hdr: _Pkt | None = None  # an inner -v IP header waiting for its address line


class _Builder:
    """Rows collected into a PacketBatch."""

    def __init__(self) -> None:
        self.rows: list[dict[str, int]] = []
        self.srcs: list[bytes] = []
        self.dsts: list[bytes] = []
        self.lines: list[int] = []
        self.seq_exact: list[bool] = []
        self.ack_exact: list[bool] = []
        self.ip_fields: list[bool] = []
        self.relative: list[bool] = []
        self.data = bytearray()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: dict[str, int], src: bytes, dst: bytes, line: int, seq_exact: bool, ack_exact: bool,
            ip_fields: bool, payload: bytes, relative: bool) -> None:
        if payload:
            row["payload_off"] = len(self.data)
            row["payload_cap"] = len(payload)
            self.data += payload
        self.rows.append(row)
        self.srcs.append(src)
        self.dsts.append(dst)
        self.lines.append(line)
        self.seq_exact.append(seq_exact)
        self.ack_exact.append(ack_exact)
        self.ip_fields.append(ip_fields)
        self.relative.append(relative)

    def build(self) -> PacketBatch:
        n = len(self.rows)
        batch = PacketBatch.empty(n)
        cols = batch.cols
        for i, row in enumerate(self.rows):
            for k, v in row.items():
                cols[k][i] = v
        for i, (s, d) in enumerate(zip(self.srcs, self.dsts, strict=True)):
            if s:
                batch.src[i, : len(s)] = np.frombuffer(s, dtype=np.uint8)
            if d:
                batch.dst[i, : len(d)] = np.frombuffer(d, dtype=np.uint8)
        batch.data = bytes(self.data)
        ip_fields = np.array(self.ip_fields, dtype=bool)
        is_ip = cols["ip_version"] != 0
        batch.extras.update({
            "format": "tcpdump-text",
            "line": np.array(self.lines, dtype=np.int64),
            "seq_exact": np.array(self.seq_exact, dtype=bool),
            "ack_exact": np.array(self.ack_exact, dtype=bool),
            "ip_fields": ip_fields,
            "has_ip_fields": bool(n) and bool(np.all(ip_fields[is_ip])) and bool(is_ip.any()),
            "seq_relative": np.array(self.relative, dtype=bool),
            "seq_absolute": not any(self.relative),
        })
        self.__init__()  # type: ignore[misc]
        return batch


class TextParser:
    """Feed tcpdump text line by line; finished rows come out as PacketBatch objects.

    >>> p = TextParser()
    >>> p.feed_text(open("trace.txt").read())   # doctest: +SKIP
    >>> batch = p.finish()                          # doctest: +SKIP
    """

    def __init__(self, source: str = "<text>", warnings: Warnings | None = None) -> None:
        self.source = source
        self.warnings = warnings if warnings is not None else Warnings()
        self.frames = 0
        self.lineno = 0
        self.book = SeqBook()
        self.clock = _Clock()
        self.out = _Builder()
        self.cur: _Pkt | None = None
        self.ifaces: dict[str, int] = {}

    # -- driving ------------------------------------------------------------------------------------

    def feed_text(self, text: str) -> None:
        for line in text.splitlines():
            self.feed(line)

    def feed(self, line: str) -> None:
        """One line of text (without its line ending)."""
        self.lineno += 1
        if len(line) > MAX_LINE:
            return
        try:
            self._line(line)
        except Exception as e:  # pasted text must never end in a traceback
            self._warn(f"cannot read this line ({type(e).__name__})")

    def pending(self) -> int:
        return len(self.out)

    def take(self) -> PacketBatch:
        """The rows finished so far (the packet still open stays open)."""
        return self.out.build()

    def finish(self) -> PacketBatch:
        """Close the last packet and return every row not taken yet."""
        self._close()
        return self.take()

    def _warn(self, message: str, line: int | None = None) -> None:
        self.warnings.warn(f"{self.source}: line {line or self.lineno}: {message}")

    # -- lines -------------------------------------------------------------------------------------

    def _line(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if not line.strip():
            if self.cur is not None and self.cur.text_lines is not None and line.startswith("\t"):
                self.cur.text_lines.append("")  # the empty line that ends a header block
            return
        if not line[:1].isspace() and (_BANNER.match(line) or _NOISE.match(line)):
            self._other_line(line)
            return
        m = _LEAD.match(line)
        if m is None:  # pragma: no cover - the pattern matches every string
            return
        rest = m.group("rest").rstrip()
        indent = len(m.group("indent").expandtabs(8))
        timed = m.group("hms") or m.group("epoch") or m.group("dtime")
        if timed:
            if rest and (_TCPDUMPISH.match(rest) or _NET.search(rest)) and not _LOG_WORDS.match(rest):
                self._close()
                self._start(m, rest, indent, True)
                return
            if rest or m.group("epoch"):
                self._other_line(line)
                return
        cur = self.cur
        stripped = line.strip()
        if cur is not None:
            strict = bool(_UNTIMED.match(rest)) and not timed
            if cur.expect_addr or cur.expect_inner or indent > cur.indent or not strict:
                self._continue(cur, line, stripped)
                return
        if not timed and _UNTIMED.match(rest):
            self._close()
            self._start(m, rest, indent, False)
            return
        self._other_line(line)

    def _other_line(self, line: str) -> None:
        """A line that is not part of a packet: closes the open packet; banners start a new run."""
        self._close()
        if _BANNER.match(line):
            self.book = SeqBook()
            self.clock.new_run()

    def _start(self, m: re.Match[str], rest: str, indent: int, timestamped: bool) -> None:
        self.frames += 1
        ts = self.clock.stamp(m.group("date"), m.group("dtime"), m.group("hms"), m.group("epoch"))
        row: dict[str, int] = {"frame": self.frames, "ts_ns": ts}
        pkt = _Pkt(row, self.lineno, indent, timestamped)
        self.cur = pkt
        net = _NET.search(rest)
        while net is not None and net.group("src") and not self._pair_ok(net):
            net = _NET.search(rest, net.start() + 1)
        prefix = rest[: net.start()] if net is not None else rest
        self._link(pkt, prefix)
        if prefix.startswith("MPLS ("):
            row["encap"] = ENC_MPLS
        if net is None:
            row["kind"] = Kind.OTHER
            if _IP_WORD.match(prefix) and "bad-len" not in prefix:
                self._warn("a packet line whose addresses cannot be read (tcpdump without -nn?)")
            return
        self._network(pkt, rest, net)

    def _link(self, pkt: _Pkt, prefix: str) -> None:
        if not prefix:
            return
        row = pkt.row
        ll = _LINKLEN.search(prefix)
        if ll:
            pkt.link_len = int(ll.group(1))
        vl = _VLAN.search(prefix)
        if vl:
            row["vlan"] = int(vl.group(1)) & 0xFFF
        im = _IFACE.match(prefix)
        if im and not re.fullmatch(_MAC, im.group(1)):
            name = im.group(1)
            idx = self.ifaces.get(name)
            if idx is None:
                idx = self.ifaces[name] = len(self.ifaces)
            row["iface"] = idx
        if "ifindex " in prefix:
            row["link_type"] = 276
        elif re.search(_MAC + r" > " + _MAC + r", (?:ethertype|802\.3|llc)", prefix):
            row["link_type"] = 1
        elif re.match(r"\s*" + _DIR + r"\s+" + _MAC + r" ethertype", prefix) or re.match(
                r"\s*" + _DIR + r"\s+ethertype", prefix):
            row["link_type"] = 113
        elif prefix.startswith("AF IPv"):
            row["link_type"] = 0
        elif prefix.startswith("ip: "):
            row["link_type"] = 101

    @staticmethod
    def _pair_ok(m: re.Match[str]) -> bool:
        s, d = _addr(m.group("src")), _addr(m.group("dst"))
        if s is None or d is None or s[0] != d[0]:
            return False
        if (m.group("sport") is None) != (m.group("dport") is None):
            return False
        return m.group("sport") is None or (_port(m.group("sport")) is not None and _port(m.group("dport")) is not None)

    # -- network layer -------------------------------------------------------------------------------

    def _network(self, pkt: _Pkt, text: str, net: re.Match[str]) -> None:
        row = pkt.row
        if net.group("v4h"):
            start = net.start()
            end = _close_paren(text, start)
            fields = text[start + 1: end - 1] if end > 0 else text[start + 1:]
            self._ipv4_fields(pkt, fields)
            after = text[end:].strip() if end > 0 else ""
            if after:
                pair = _PAIR.match(after)
                if pair is not None and self._pair_ok(pair):
                    self._pair(pkt, after, pair)
                    return
                self._inner_or_other(pkt, after)
                return
            pkt.expect_addr = True
            pkt.hdr_lineno = self.lineno
            return
        if net.group("v6h"):
            start = net.end() - 1 if net.group("v6h").endswith("(") else net.start()
            end = _close_paren(text, start)
            fields = text[start + 1: end - 1] if end > 0 else text[start + 1:]
            self._ipv6_fields(pkt, fields)
            after = text[end:].strip() if end > 0 else ""
            pair = _PAIR.match(after)
            if pair is not None and self._pair_ok(pair):
                self._pair(pkt, after, pair)
            elif after:
                row["kind"] = Kind.IP_OTHER
                self._warn("an IPv6 packet whose addresses cannot be read")
            else:
                pkt.expect_addr = True
            return
        self._pair(pkt, text, _PAIR.match(text, net.start()) or net)

    def _ipv4_fields(self, pkt: _Pkt, fields: str) -> None:
        row = pkt.row
        pkt.ip_fields = True
        row["ip_version"] = 4
        offset = 0
        proto = -1
        for m in _V4F.finditer(fields):
            tos, ttl, ident, off, flags, pr, length = m.groups()
            if tos is not None:
                row["tos"] = int(tos, 16) & 0xFF
            elif ttl is not None:
                row["ttl"] = int(ttl) & 0xFF
            elif ident is not None:
                row["ip_id"] = int(ident) & 0xFFFF
            elif off is not None:
                offset = int(off)
            elif flags is not None:
                row["ip_df"] = int("DF" in flags)
            elif pr is not None and proto < 0:
                proto = int(pr)
            elif length is not None and pkt.ip_len < 0:
                pkt.ip_len = int(length)
        if "options (" in fields:
            pkt.ip_hl = -1
        row["kind"] = Kind.FRAGMENT if offset else (Kind.TCP_TRUNCATED if proto == 6 else Kind.IP_OTHER)

    def _ipv6_fields(self, pkt: _Pkt, fields: str) -> None:
        row = pkt.row
        pkt.ip_fields = True
        row["ip_version"] = 6
        row["ip_id"] = -1
        for m in _V6F.finditer(fields):
            cls, hlim, _nh, plen = m.groups()
            if cls is not None:
                row["tos"] = int(cls, 16) & 0xFF
            elif hlim is not None:
                row["ttl"] = int(hlim) & 0xFF
            elif plen is not None and pkt.ip6_plen < 0:
                pkt.ip6_plen = int(plen)
        row["kind"] = Kind.IP_OTHER

    def _pair(self, pkt: _Pkt, text: str, pair: re.Match[str]) -> None:
        row = pkt.row
        s, d = _addr(pair.group("src")), _addr(pair.group("dst"))
        if s is None or d is None:
            return
        pkt.src, pkt.dst = s[1], d[1]
        row["ip_version"] = s[0]
        if s[0] == 6:
            row["ip_id"] = -1
        l4 = text[pair.end():]
        body = l4[1:] if l4.startswith(" ") else l4
        if row.get("kind") == Kind.FRAGMENT:
            return
        sport, dport = _port(pair.group("sport")), _port(pair.group("dport"))
        if body.startswith("Flags [") or _QUIET.match(body) or body.startswith("[|tcp]"):
            if sport is None or dport is None:
                row["kind"] = Kind.TCP_TRUNCATED
                return
            row["sport"], row["dport"] = sport, dport
            self._tcp(pkt, body)
            return
        ports = _PORTS_ONLY.search(body)  # IPv6 extension headers, IPsec AH: ports without addresses
        if ports is not None and sport is None and not body.startswith("ICMP"):
            row["sport"], row["dport"] = int(ports.group("sport")), int(ports.group("dport"))
            self._tcp(pkt, body[ports.end():])
            return
        row["kind"] = Kind.IP_OTHER
        if body.startswith(("ICMP", "ICMP6")):
            pkt.no_inner = True
            return
        pkt.tunnel = pkt.tunnel or _tunnel_kind(body)
        if _TUNNEL_NEXT_LINE.search(body):
            pkt.expect_inner = True
            return
        self._inner_or_other(pkt, body)

    def _inner_or_other(self, pkt: _Pkt, text: str) -> None:
        """A tunnelled packet (GRE, IP in IP, VXLAN, MPLS...): take the inner TCP packet when there is one.

        The inner packet may follow on the same line or, with -v, its IP header and its address line
        on lines of their own."""
        m = _TCP_PAIR.search(text)
        while m is not None and not self._pair_ok(m):
            m = _TCP_PAIR.search(text, m.start() + 1)
        before = text[: m.start()] if m is not None else text
        hdr = _inner_header(before)
        if hdr is not None:
            pkt.inner_hdr = _Pkt({}, self.lineno, 0, False)
            self._ipv4_fields(pkt.inner_hdr, hdr)
        if m is None:
            return
        enc = pkt.tunnel or _tunnel_kind(before) or ENC_IPIP
        self._take_inner(pkt, text[m.start():], enc)

    def _take_inner(self, pkt: _Pkt, text: str, enc: int) -> None:
        inner = pkt.inner_hdr or _Pkt({}, self.lineno, 0, False)
        pkt.inner_hdr = None
        net = _NET.search(text)
        while net is not None and net.group("src") and not self._pair_ok(net):
            net = _NET.search(text, net.start() + 1)
        if net is None:
            return
        self._network(inner, text, net)
        if inner.row.get("kind") not in (Kind.TCP, Kind.TCP_TRUNCATED) or inner.tcp is None:
            return
        keep = {k: pkt.row[k] for k in ("frame", "ts_ns", "vlan", "iface", "link_type") if k in pkt.row}
        if not inner.ip_fields:
            for k in ("ttl", "ip_id", "ip_df", "tos"):
                inner.row.pop(k, None)
        pkt.row = {**inner.row, **keep, "encap": enc}
        pkt.src, pkt.dst, pkt.tcp = inner.src, inner.dst, inner.tcp
        pkt.ip_fields = inner.ip_fields
        pkt.ip_len, pkt.ip6_plen, pkt.ip_hl = inner.ip_len, inner.ip6_plen, inner.ip_hl
        pkt.expect_inner = False

    # -- TCP ------------------------------------------------------------------------------------------

    def _tcp(self, pkt: _Pkt, text: str) -> None:
        row = pkt.row
        t = pkt.tcp = _Tcp()
        q = _QUIET.match(text)
        if q is not None:
            t.quiet = True
            t.length = int(q.group(1))
            row["kind"] = Kind.TCP_TRUNCATED
            return
        fm = _FLAGS.match(text)
        if fm is None:
            t.truncated = True
            row["kind"] = Kind.TCP_TRUNCATED
            return
        flags = 0
        letters = fm.group("f")
        if letters != "none":
            for ch in letters:
                bit = FLAG_BITS.get(ch)
                if bit is None:
                    self._warn(f"unknown TCP flag letter {ch!r}")
                    continue
                flags |= bit
        t.flags = flags
        pos = fm.end()
        mask = 0
        while True:
            m = _ITEM.match(text, pos)
            if m is None:
                break
            pos = m.end()
            if m.group("ck"):
                row["checksum_ok"] = 1 if m.group("ck") == "correct" else 0
            elif m.group("seq") is not None:
                t.seq = int(m.group("seq")) & M32
                if m.group("end") is not None:
                    t.end = int(m.group("end")) & M32
            elif m.group("ack") is not None:
                t.ack = int(m.group("ack")) & M32
            elif m.group("win") is not None:
                row["win"] = int(m.group("win")) & 0xFFFF
                t.complete = True
            elif m.group("urg") is not None:
                pass  # the urgent pointer has no column
            elif m.group("opt"):
                close = _close_bracket(text, m.end() - 1)
                body = text[m.end(): close] if close >= 0 else text[m.end():]
                mask = self._options(row, t, body)
                if close < 0:
                    pos = len(text)
                    break
                pos = close + 1
            else:
                t.length = int(m.group("len"))
                break
        row["opt_mask"] = mask
        trailer = text[pos:]
        cut = "[|tcp]" in trailer
        bad_opt = "[bad opt]" in text
        if t.length is None:
            cut = cut or "[|tcp]" in text
            t.truncated = cut or not (t.complete or bad_opt)
            if not cut and not bad_opt:
                self._warn("the TCP part of this packet line is cut short")
            if t.seq is not None and t.end is not None:
                t.length = (t.end - t.seq) & M32
        else:
            if cut:
                trailer = trailer.replace(" [|tcp]", "").replace("[|tcp]", "")
            self._trailer(pkt, t, trailer)
        row["kind"] = Kind.TCP_TRUNCATED if t.truncated else Kind.TCP

    @staticmethod
    def _options(row: dict[str, int], t: _Tcp, body: str) -> int:
        mask = 0
        size = 0
        for part in body.split(","):
            part = part.strip()
            if not part:
                continue
            words = part.split()
            name = words[0]
            kind = OPTION_KINDS.get(name)
            if kind is None and name.startswith("unknown-"):
                try:
                    kind = int(name[8:])
                except ValueError:
                    kind = None
            if kind is None:
                continue  # "[bad opt]", a piece of an option's own text, ...
            if kind < 64:
                mask |= 1 << kind
            try:
                if name == "mss" and len(words) > 1:
                    row["opt_mss"] = int(words[1]) & 0xFFFF
                elif name == "wscale" and len(words) > 1:
                    row["opt_wscale"] = int(words[1]) & 0xFF
                elif name == "sackOK":
                    row["opt_sack_ok"] = 1
                elif name == "sack":
                    blocks = part.count("{")
                    if not blocks and len(words) > 1 and words[1].isdigit():
                        blocks = int(words[1])
                    row["opt_sack_blocks"] = min(blocks, 255)
                    size += 2 + 8 * blocks
                elif name == "TS" and len(words) >= 5 and words[1] == "val" and words[3] == "ecr":
                    row["opt_has_ts"] = 1
                    row["opt_ts_val"] = int(words[2]) & M32
                    row["opt_ts_ecr"] = int(words[4]) & M32
                elif name == "mptcp":
                    olen = int(words[1]) if len(words) > 1 and words[1].isdigit() else 0
                    size += olen or 4
                    for w in words[1:]:
                        if w in MPTCP_SUBTYPES:
                            row["opt_mptcp_subtype"] = MPTCP_SUBTYPES[w]
                            break
                    else:
                        if "unknown" in words and olen == 4:
                            row["opt_mptcp_subtype"] = 8  # only MP_TCPRST (8) is 4 bytes and unknown to tcpdump 4.99
                elif name in ("tfo", "exp-tfo", "exp") or name.startswith("unknown-"):
                    hexes = [w for w in words[1:] if re.fullmatch(r"(?:0x)?[0-9a-fA-F]+", w) and len(w) > 1]
                    data = len(hexes[-1].removeprefix("0x")) // 2 if hexes else 0
                    size += 2 + data + (2 if name.startswith("exp") else 0)
            except ValueError:
                pass
            if name in OPTION_SIZES:
                size += OPTION_SIZES[name]
            elif name == "tcp-ao":
                mac = re.search(r"\bmac 0x([0-9a-fA-F]+)", part)
                size += 2 if "invalid" in part else 4 + (len(mac.group(1)) // 2 if mac else 0)
        t.opt_bytes = size
        return mask

    def _trailer(self, pkt: _Pkt, t: _Tcp, trailer: str) -> None:
        if not trailer or t.length is None or t.length <= 0:
            return
        rst = _RSTDATA.search(trailer)
        if rst is not None and t.flags & RST:
            t.payload = _unvis(rst.group(2))[: t.length]
            return
        txt = _TXTPROTO.match(trailer)
        if txt is not None:
            if txt.group(2) is not None:
                first = _unvis(txt.group(2))
                if len(first) + 2 <= t.length:
                    first += b"\r\n"
                t.payload = first[: t.length]
            else:
                t.text_proto = True
                pkt.text_lines = []

    # -- continuation lines -------------------------------------------------------------------------

    def _continue(self, pkt: _Pkt, line: str, stripped: str) -> None:
        hx = _HEX.match(line)
        if hx is not None and line[:1].isspace():
            try:
                data = bytes.fromhex(hx.group(1).replace(" ", ""))
            except ValueError:
                return
            if pkt.hexbuf is None:
                pkt.hexbuf = bytearray()
            pkt.hexbuf += data
            return
        if pkt.expect_addr:
            pkt.expect_addr = False
            pair = _PAIR.match(stripped)
            if pair is not None and self._pair_ok(pair):
                self._pair(pkt, stripped, pair)
                return
            self._warn("an IP header line without the line of its packet", pkt.hdr_lineno)
        if pkt.text_lines is not None and line.startswith("\t"):
            if len(pkt.text_lines) < 256:
                pkt.text_lines.append(line[1:])
            return
        if not pkt.row.get("ip_version") and pkt.row.get("kind", Kind.OTHER) == Kind.OTHER:
            net = _NET.search(stripped)  # the IP part under a link or MPLS line of its own (-v)
            while net is not None and net.group("src") and not self._pair_ok(net):
                net = _NET.search(stripped, net.start() + 1)
            if net is not None:
                self._network(pkt, stripped, net)
            return
        if pkt.no_inner or pkt.tcp is not None or pkt.row.get("kind") not in (Kind.IP_OTHER, Kind.OTHER):
            return
        if pkt.expect_inner or pkt.tunnel or pkt.inner_hdr is not None or "Flags [" in stripped:
            pkt.expect_inner = False
            self._inner_or_other(pkt, stripped)

    # -- finishing a packet ------------------------------------------------------------------------------

    def _close(self) -> None:
        pkt = self.cur
        if pkt is None:
            return
        self.cur = None
        row = pkt.row
        if pkt.expect_addr:
            self._warn("an IP header line without the line of its packet", pkt.hdr_lineno)
        kind = row.setdefault("kind", Kind.OTHER)
        t = pkt.tcp
        seq_ok = ack_ok = relative = False
        payload = b""
        version = row.get("ip_version", 0)
        ip_hdr = 20 if version == 4 else 40
        if t is not None and kind in (Kind.TCP, Kind.TCP_TRUNCATED):
            exact = self._hex(pkt, t) if pkt.hexbuf else None
            length = t.length or 0
            row["payload_len"] = length
            if t.quiet:
                seq_ok = ack_ok = False
            else:
                row["flags"] = t.flags
                e_seq = e_ack = None
                if exact is not None:
                    e_seq, e_ack = exact
                seq, ack, seq_ok, ack_ok = self.book.step(
                    version, pkt.src, row.get("sport", 0), pkt.dst, row.get("dport", 0), t.flags, t.seq, t.ack,
                    length, e_seq, e_ack)
                row["seq"], row["ack"] = seq, ack
                relative = self.book.relative
            if "tcp_hdr_len" not in row and kind == Kind.TCP:
                hl = -1
                if pkt.ip_len >= 0 and pkt.ip_hl > 0 and t.length is not None:
                    hl = pkt.ip_len - pkt.ip_hl - t.length
                elif pkt.ip6_plen >= 0 and t.length is not None:
                    hl = pkt.ip6_plen - t.length
                if not (20 <= hl <= 60 and hl % 4 == 0):
                    hl = min(60, 20 + (t.opt_bytes + 3) // 4 * 4)
                row["tcp_hdr_len"] = hl
            payload = t.payload
            if pkt.text_lines:
                payload = _text_payload(pkt.text_lines)[:length]
            if pkt.hex_payload is not None:
                payload = pkt.hex_payload
        if "wire_len" not in row:
            if pkt.link_len >= 0:
                wire = pkt.link_len
            elif pkt.ip_len >= 0:
                wire = pkt.ip_len
            elif pkt.ip6_plen >= 0:
                wire = pkt.ip6_plen + 40
            elif t is not None and version:
                wire = ip_hdr + row.get("tcp_hdr_len", 20) + (t.length or 0)
            else:
                wire = 0
            row["wire_len"] = wire & M32
            row["cap_len"] = wire & M32
        wild = [k for k, v in row.items() if k in _RANGES and not _RANGES[k][0] <= v <= _RANGES[k][1]]
        if wild:  # "length 4294967296", a date in year 1: the row stays (frames keep counting lines)
            self._warn(f"a number too large for a packet ({', '.join(wild)}): left out", pkt.line)
            for k in wild:
                row[k] = _FILL[k]
            if "payload_len" in wild:
                payload = b""
        self.out.add(row, pkt.src, pkt.dst, pkt.line, seq_ok, ack_ok, pkt.ip_fields, payload, relative)

    def _hex(self, pkt: _Pkt, t: _Tcp) -> tuple[int, int] | None:
        """Exact fields from a -x/-X hex dump whose IP header matches the packet line."""
        raw = bytes(pkt.hexbuf or b"")
        row = pkt.row
        version = row.get("ip_version", 0)
        for off in (0, 14, 18, 22, 16, 20, 4, 2):
            if version == 4 and len(raw) >= off + 20 and raw[off] >> 4 == 4 \
                    and raw[off + 12: off + 16] == pkt.src and raw[off + 16: off + 20] == pkt.dst:
                ihl = (raw[off] & 15) * 4
                if ihl < 20 or raw[off + 9] != 6:
                    return None
                total = int.from_bytes(raw[off + 2: off + 4], "big")
                row["tos"], row["ttl"] = raw[off + 1], raw[off + 8]
                row["ip_id"] = int.from_bytes(raw[off + 4: off + 6], "big")
                row["ip_df"] = int(bool(raw[off + 6] & 0x40))
                pkt.ip_fields = True
                tcp = off + ihl
                end = off + total if total else len(raw)
            elif version == 6 and len(raw) >= off + 40 and raw[off] >> 4 == 6 \
                    and raw[off + 8: off + 24] == pkt.src and raw[off + 24: off + 40] == pkt.dst:
                if raw[off + 6] != 6:
                    return None
                row["tos"] = ((raw[off] & 15) << 4) | (raw[off + 1] >> 4)
                row["ttl"] = raw[off + 7]
                pkt.ip_fields = True
                tcp = off + 40
                plen = int.from_bytes(raw[off + 4: off + 6], "big")
                end = tcp + plen if plen else len(raw)
            else:
                continue
            if len(raw) < tcp + 20:
                return None
            if int.from_bytes(raw[tcp: tcp + 2], "big") != row.get("sport") or \
                    int.from_bytes(raw[tcp + 2: tcp + 4], "big") != row.get("dport"):
                return None
            hl = (raw[tcp + 12] >> 4) * 4
            if hl >= 20:
                row["tcp_hdr_len"] = hl
                data = raw[tcp + hl: min(end, len(raw))]
                if data and t.length:
                    pkt.hex_payload = data[: t.length]
            return int.from_bytes(raw[tcp + 4: tcp + 8], "big"), int.from_bytes(raw[tcp + 8: tcp + 12], "big")
        return None


_CUT_MARK = re.compile(r" ?\[\|\w+\]$")
_INNER_V4 = re.compile(r"\(tos 0x")


def _tunnel_kind(text: str) -> int:
    """The encapsulation tcpdump names before an inner packet."""
    if "GRE" in text:
        return ENC_GRE
    if "VXLAN" in text:
        return ENC_VXLAN
    if "Geneve" in text:
        return ENC_GENEVE
    if "MPLS" in text:
        return ENC_MPLS
    if text.startswith(("IP ", "IP6 ", "(tos ")):
        return ENC_IPIP
    return 0


def _inner_header(text: str) -> str | None:
    """The fields of the last -v IPv4 header in ``text`` (an inner packet's)."""
    at = -1
    for m in _INNER_V4.finditer(text):
        at = m.start()
    if at < 0:
        return None
    end = _close_paren(text, at)
    return text[at + 1: end - 1] if end > 0 else text[at + 1:]


def _text_payload(lines: list[str]) -> bytes:
    """The payload of a text protocol from its -v lines: each line ended by CRLF, except a last line
    that tcpdump marked as cut (``[|http]``)."""
    out = bytearray()
    for i, line in enumerate(lines):
        cut = _CUT_MARK.search(line) if i == len(lines) - 1 else None
        if cut is not None:
            out += _unvis(line[: cut.start()])
            break
        out += _unvis(line) + b"\r\n"
    return bytes(out)


# -- public entry points --------------------------------------------------------------------------------


def looks_like_tcpdump_text(head: bytes) -> bool:
    """Whether the first bytes of a file hold at least one tcpdump packet line."""
    text = head.decode("utf-8", "replace")
    for i, line in enumerate(text.splitlines()):
        if i >= SNIFF_LINES:
            break
        m = _LEAD.match(line)
        if m is None:  # pragma: no cover
            continue
        rest = m.group("rest").rstrip()
        if not rest:
            continue
        if m.group("hms") or m.group("epoch") or m.group("dtime"):
            if (_TCPDUMPISH.match(rest) or _NET.search(rest)) and not _LOG_WORDS.match(rest):
                return True
        elif _UNTIMED.match(rest) and _NET.search(rest):
            return True
    return False


def _lines(stream: BinaryIO) -> Iterator[str]:
    while True:
        raw = stream.readline(MAX_LINE)
        if not raw:
            return
        if len(raw) >= MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # far too long for tcpdump: skip it in pieces
                raw = stream.readline(MAX_LINE)
            yield ""
            continue
        yield raw.decode("utf-8", "replace")


def parse_text_capture(stream: BinaryIO, source: str, batch_size: int, warnings: Warnings) -> Iterator[PacketBatch]:
    """Stream the packets of tcpdump text as batches of at most ``batch_size`` rows.

    Raises :class:`CaptureError` when the text holds no packet line at all (after reading it).
    """
    parser = TextParser(source, warnings)
    batch_size = max(1, batch_size)
    try:
        for line in _lines(stream):
            parser.feed(line)
            if parser.pending() >= batch_size:
                yield parser.take()
    except OSError as e:
        warnings.warn(f"{source}: reading stopped: {e}")
    last = parser.finish()
    if parser.frames == 0:
        raise CaptureError(source, None, NO_PACKETS)
    if last.n:
        yield last


def parse_text(text: str | bytes, source: str = "<text>", warnings: Warnings | None = None) -> PacketBatch:
    """All the packets of a tcpdump text in one batch (for tests and small pastes)."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    batches = list(parse_text_capture(io.BytesIO(raw), source, 1 << 30, warnings or Warnings()))
    return concat(batches)


def concat(batches: Iterable[PacketBatch]) -> PacketBatch:
    """One batch from several (payload offsets rebased)."""
    items = list(batches)
    if len(items) == 1:
        return items[0]
    if not items:
        return PacketBatch.empty(0)
    cols = {name: np.concatenate([b.cols[name] for b in items]) for name, _, _ in COLUMNS}
    offs = []
    data = bytearray()
    for b in items:
        offs.append(b.cols["payload_off"].astype(np.int64) + len(data))
        data += bytes(b.data)
    cols["payload_off"] = np.concatenate(offs).astype(np.uint32)
    extras: dict[str, object] = {"format": "tcpdump-text"}
    for key in ("line", "seq_exact", "ack_exact", "ip_fields", "seq_relative"):
        extras[key] = np.concatenate([b.extras[key] for b in items])  # type: ignore[misc]
    extras["has_ip_fields"] = all(bool(b.extras["has_ip_fields"]) for b in items)
    extras["seq_absolute"] = all(bool(b.extras["seq_absolute"]) for b in items)
    src = np.concatenate([b.src for b in items]).reshape(-1, ADDRESS_BYTES)
    dst = np.concatenate([b.dst for b in items]).reshape(-1, ADDRESS_BYTES)
    return PacketBatch(sum(b.n for b in items), cols, src, dst, bytes(data), extras)

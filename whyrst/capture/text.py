"""Pasted ``tcpdump -nn`` text as a capture.

Each packet line (or ``-v`` two-line packet) becomes one row of a :class:`PacketBatch`; ``frame`` is the
n-th packet line. Understands the default output and ``-v``/``-vv`` (IP header fields), ``-e`` (link
header), ``-tttt``/``-tt``/``-t`` timestamps, ``-i any`` interface columns, IPv4 and IPv6. Lines that are
not packets (prompts, banners, prose, code fences) are skipped; a line that looks like a packet but
cannot be read adds a warning.

tcpdump prints sequence numbers relative to the first it saw of a conversation unless ``-S`` is given;
the reader undoes that with tcpdump's own bookkeeping (print-tcp.c, ``tcp_seq_hash``) so the columns
hold absolute 32-bit numbers, as a pcap would.
"""

from __future__ import annotations

import calendar
import ipaddress
import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np

from whyrst.capture.batch import ACK, COLUMNS, CWR, ECE, FIN, PSH, RST, SYN, URG, Kind, PacketBatch
from whyrst.errors import CaptureError, Warnings

MAX_LINE = 65536  # longer lines are not tcpdump output; read in pieces so memory stays bounded

_TIME = r"(?:(?P<date>\d{4}-\d\d-\d\d) )?(?P<time>\d\d:\d\d:\d\d(?:\.\d{1,9})?|\d{9,11}\.\d{1,9})"
_HEAD = re.compile(
    r"^\s*(?:\d+\s+)?" + _TIME + r"?\s*"  # "1  " frame numbers of tcpdump's test outputs, then the time
    r"(?:(?P<iface>[\w.@:-]+)\s+(?P<dir>In|Out|M|B|P)\s+)?"
    r"(?:(?P<macs>[0-9a-f]{2}(?::[0-9a-f]{2}){5} > [0-9a-f]{2}(?::[0-9a-f]{2}){5}|"
    r"[0-9a-f]{2}(?::[0-9a-f]{2}){5} > [\w:.-]+),[^:]*?length \d+: )?"
    r"(?P<rest>.*)$"
)
_ADDRS = re.compile(r"^(?:(?P<proto>IP6?) )?(?P<src>[0-9a-fA-F:.]+)\.(?P<sport>\d+) > "
                    r"(?P<dst>[0-9a-fA-F:.]+)\.(?P<dport>\d+): (?P<tcp>.*)$")
_ADDRS_NOPORT = re.compile(r"^(?:IP6?) (?P<src>[0-9a-fA-F:.]+) > (?P<dst>[0-9a-fA-F:.]+): (?P<other>.*)$")
_FLAGS = re.compile(r"^Flags \[(?P<flags>[^\]]*)\](?P<rest>.*)$")
_SEQ = re.compile(r"\bseq (?P<a>\d+)(?::(?P<b>\d+))?")
_ACKF = re.compile(r"\back (?P<ack>\d+)")
_WIN = re.compile(r"\bwin (?P<win>\d+)")
_LEN = re.compile(r"\blength (?P<len>\d+)")
_OPTS = re.compile(r"\boptions \[(?P<opts>[^\]]*(?:\][^\]]*)*?)\]")
_TTL = re.compile(r"\bttl (\d+)")
_HLIM = re.compile(r"\bhlim (\d+)")
_ID = re.compile(r"\bid (\d+)")
_TOS = re.compile(r"\btos 0x([0-9a-f]+)")
_PROTO = re.compile(r"\bproto (\w+) \((\d+)\)|next-header (\w+) \((\d+)\)")
_IPLEN = re.compile(r"\blength (\d+)\)?$")

FLAG_BITS = {"S": SYN, "F": FIN, "R": RST, "P": PSH, "U": URG, "E": ECE, "W": CWR, ".": ACK}
OPTION_KINDS = {"nop": 1, "eol": 0, "mss": 2, "wscale": 3, "sackOK": 4, "sack": 5, "TS": 8, "md5": 19,
                "mptcp": 30, "tfo": 34, "exp": 254, "utoopt": 28, "tcp-ao": 29}


def looks_like_tcpdump_text(head: bytes) -> bool:
    text = head.decode("utf-8", "replace")
    return any(_parse_head(line) is not None for line in text.splitlines()[:200])


def _parse_head(line: str) -> re.Match[str] | None:
    m = _HEAD.match(line)
    if m is None:
        return None
    rest = m.group("rest")
    if rest.startswith(("IP ", "IP6 ", "ARP", "(tos")) or (m.group("macs") and rest):
        return m
    if m.group("time") and _ADDRS.match(rest):
        return m
    return None


class _SeqBook:
    """tcpdump's relative-sequence bookkeeping, run backwards to recover absolute numbers."""

    def __init__(self) -> None:
        self.conv: dict[tuple, list[int]] = {}  # canonical tuple -> [seq base, ack base] for its orientation
        self.next_seq: dict[tuple, int] = {}  # (canonical tuple, reversed) -> the sender's next sequence number

    def fill_missing_seq(self, key: tuple, rev: bool, seq: int | None, flags: int, length: int) -> int | None:
        """tcpdump omits seq on segments that carry no data; the sender's next sequence number is it."""
        if seq is None:
            seq = self.next_seq.get((key, rev))
        if seq is not None:
            used = length + (1 if flags & SYN else 0) + (1 if flags & FIN else 0)
            self.next_seq[(key, rev)] = (seq + used) & 0xFFFFFFFF
        return seq

    def absolute(self, key_fwd: tuple, rev: bool, flags: int, seq: int | None, seq_end: int | None,
                 ack: int | None) -> tuple[int | None, int | None, bool]:
        """Returns absolute (seq, ack) and whether they were printed relative."""
        if not flags & ACK:
            return seq, ack, False
        entry = self.conv.get(key_fwd)
        if entry is None or flags & SYN:
            if seq is not None and ack is not None:
                base = [seq, (ack - 1) & 0xFFFFFFFF] if not rev else [(ack - 1) & 0xFFFFFFFF, seq]
                self.conv[key_fwd] = base
            return seq, ack, False
        my_base, peer_base = (entry[1], entry[0]) if rev else (entry[0], entry[1])
        if len(entry) > 2 or (seq is not None and _looks_absolute(seq, my_base)) or (
                ack is not None and _looks_absolute(ack, peer_base)):
            if len(entry) == 2:
                entry.append(1)  # -S output: numbers were never made relative; remember it
            return seq, ack, False
        out_seq = (seq + my_base) & 0xFFFFFFFF if seq is not None else None
        out_ack = (ack + peer_base) & 0xFFFFFFFF if ack is not None else None
        return out_seq, out_ack, True


def _looks_absolute(printed: int, base: int) -> bool:
    # Relative numbers are small offsets; an absolute one (tcpdump -S) sits just above the base.
    return base >= (1 << 24) and 0 <= ((printed - base) & 0xFFFFFFFF) < (1 << 24) and printed >= (1 << 24)


def _ip_header(rest: str) -> tuple[bool, str, str] | None:
    """The -v IP header '(tos ..., ttl 64, ...)' or IPv6 '(... hlim 64 ...)': (is IPv4, fields, the rest of
    the line). Parentheses nest ('proto TCP (6)'), so they are matched by depth, not by a pattern."""
    if rest.startswith("IP ("):
        start, v4 = 3, True
    elif rest.startswith("IP6 ("):
        start, v4 = 4, False
    elif rest.startswith("(tos "):
        start, v4 = 0, True
    else:
        return None
    depth = 0
    for i in range(start, len(rest)):
        if rest[i] == "(":
            depth += 1
        elif rest[i] == ")":
            depth -= 1
            if depth == 0:
                fields = rest[start + 1:i]
                if not (_TTL.search(fields) or _HLIM.search(fields)):
                    return None
                return v4, fields, rest[i + 1:].strip()
    return None


def _addr(text: str) -> tuple[int, bytes] | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.version, ip.packed


def _options(text: str, row: dict[str, int]) -> None:
    mask = 0
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name = part.split(" ", 1)[0]
        kind = OPTION_KINDS.get(name)
        if kind is None and name.startswith("unknown-"):
            try:
                kind = int(name.split("-", 1)[1])
            except ValueError:
                kind = None
        if kind is not None and kind < 64:
            mask |= 1 << kind
        try:
            if name == "mss":
                row["opt_mss"] = int(part.split()[1])
            elif name == "wscale":
                row["opt_wscale"] = int(part.split()[1])
            elif name == "sackOK":
                row["opt_sack_ok"] = 1
            elif name == "sack":
                row["opt_sack_blocks"] = max(1, part.count("{"))
            elif name == "TS":
                m = re.search(r"val (\d+) ecr (\d+)", part)
                if m:
                    row["opt_has_ts"] = 1
                    row["opt_ts_val"] = int(m.group(1)) & 0xFFFFFFFF
                    row["opt_ts_ecr"] = int(m.group(2)) & 0xFFFFFFFF
            elif name == "mptcp":
                sub = {"capable": 0, "join": 1, "dss": 2, "add-addr": 3, "remove-addr": 4, "prio": 5,
                       "fail": 6, "fast-close": 7, "tcprst": 8}
                words = part.split()
                for w in words[1:]:
                    if w in sub:
                        row["opt_mptcp_subtype"] = sub[w]
                        break
        except (IndexError, ValueError):
            continue
    row["opt_mask"] = mask


class _Clock:
    """Timestamps from tcpdump's time column: full dates, epoch seconds, or a time of day that may
    roll over midnight; lines without a time get a synthetic one that keeps the order."""

    def __init__(self) -> None:
        self.day = 0
        self.last = -1

    def ns(self, date: str | None, time: str | None) -> int:
        if time is None:
            self.last = self.last + 1_000 if self.last >= 0 else 0
            return self.last
        if ":" not in time:
            sec, _, frac = time.partition(".")
            value = int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])
        else:
            hms, _, frac = time.partition(".")
            h, m, s = (int(x) for x in hms.split(":"))
            of_day = (h * 3600 + m * 60 + s) * 1_000_000_000 + int(frac.ljust(9, "0")[:9] or 0)
            if date:
                y, mo, d = (int(x) for x in date.split("-"))
                value = calendar.timegm((y, mo, d, 0, 0, 0)) * 1_000_000_000 + of_day
            else:
                value = self.day + of_day
                if self.last >= 0 and value < self.last - 43_200 * 1_000_000_000:
                    self.day += 86_400 * 1_000_000_000  # the time of day went back: past midnight
                    value += 86_400 * 1_000_000_000
        self.last = value
        return value


def _empty_row() -> dict[str, int]:
    return {name: int(fill) for name, _, fill in COLUMNS}


def _lines(stream: BinaryIO) -> Iterator[tuple[int, str]]:
    n = 0
    while True:
        raw = stream.readline(MAX_LINE)
        if not raw:
            return
        n += 1
        if len(raw) == MAX_LINE and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):
                raw = stream.readline(MAX_LINE)
            continue  # far too long to be a packet line
        yield n, raw.decode("utf-8", "replace").rstrip("\r\n")


def parse_text_capture(stream: BinaryIO, source: str, batch_size: int, warnings: Warnings) -> Iterator[PacketBatch]:
    """Yield batches of the packets in ``stream``; raises CaptureError when there is none at all."""
    rows: list[dict[str, int]] = []
    addrs: list[tuple[bytes, bytes]] = []
    seqbook = _SeqBook()
    clock = _Clock()
    frame = 0
    pending: dict[str, int] | None = None  # the row of a -v IP header line awaiting its TCP line
    relative_seen = False

    def emit(row: dict[str, int], src: bytes, dst: bytes) -> None:
        rows.append(row)
        addrs.append((src, dst))

    def flush() -> PacketBatch:
        batch = PacketBatch.empty(len(rows))
        for name, dtype, _ in COLUMNS:
            batch.cols[name][:] = np.array([r[name] for r in rows], dtype=np.int64).astype(dtype, casting="unsafe")
        for i, (s, d) in enumerate(addrs):
            batch.src[i, : len(s)] = np.frombuffer(s, dtype=np.uint8)
            batch.dst[i, : len(d)] = np.frombuffer(d, dtype=np.uint8)
        batch.extras["has_ip_fields"] = any(r["ttl"] for r in rows)
        batch.extras["seq_absolute"] = True
        batch.extras["seq_was_relative"] = relative_seen
        rows.clear()
        addrs.clear()
        return batch

    for lineno, line in _lines(stream):
        if not line.strip():
            continue
        if pending is not None and line[:1] in (" ", "\t"):
            row, pending = pending, None
            if _packet(line.strip(), row, seqbook, warnings, source, lineno, emit):
                relative_seen |= bool(row.pop("_relative", 0))
            continue
        if pending is not None:  # an IP header line whose packet line never came
            row, pending = pending, None
            row["kind"] = Kind.OTHER
            emit(row, b"", b"")
        m = _parse_head(line)
        if m is None:
            continue
        frame += 1
        row = _empty_row()
        row["frame"] = frame
        row["ts_ns"] = clock.ns(m.group("date"), m.group("time"))
        rest = m.group("rest")
        header = _ip_header(rest)
        if header is not None:
            v4, fields, tail = header
            ttl = _TTL.search(fields) or _HLIM.search(fields)
            row["ttl"] = int(ttl.group(1)) & 0xFF if ttl else 0
            ident = _ID.search(fields)
            if v4 and ident:
                row["ip_id"] = int(ident.group(1)) & 0xFFFF
            tos = _TOS.search(fields)
            if tos:
                row["tos"] = int(tos.group(1), 16) & 0xFF
            row["ip_df"] = int("[DF]" in fields)
            if tail:
                if _packet(tail, row, seqbook, warnings, source, lineno, emit):
                    relative_seen |= bool(row.pop("_relative", 0))
            else:
                pending = row
            continue
        if not _packet(rest, row, seqbook, warnings, source, lineno, emit):
            row["kind"] = Kind.OTHER
            emit(row, b"", b"")
        else:
            relative_seen |= bool(row.pop("_relative", 0))
        if len(rows) >= batch_size:
            yield flush()
    if pending is not None:
        pending["kind"] = Kind.OTHER
        emit(pending, b"", b"")
    if frame == 0:
        raise CaptureError(source, None, "no packets found: not a pcap, pcapng or tcpdump text capture")
    if rows:
        yield flush()


def _packet(text: str, row: dict[str, int], seqbook: _SeqBook, warnings: Warnings, source: str, lineno: int,
            emit: object) -> bool:
    """Fill ``row`` from 'src.port > dst.port: Flags [...] ...' and emit it; False if not an IP packet."""
    m = _ADDRS.match(text)
    if m is None:
        m2 = _ADDRS_NOPORT.match(text)
        if m2 is None:
            return False
        s, d = _addr(m2.group("src")), _addr(m2.group("dst"))
        if s is None or d is None:
            return False
        row["kind"] = Kind.IP_OTHER
        row["ip_version"] = s[0]
        emit(row, s[1], d[1])  # type: ignore[operator]
        return True
    s, d = _addr(m.group("src")), _addr(m.group("dst"))
    if s is None or d is None or s[0] != d[0]:
        warnings.warn(f"{source}: line {lineno}: cannot read the addresses of {text[:80]!r}")
        return False
    row["ip_version"] = s[0]
    sport, dport = int(m.group("sport")) & 0xFFFF, int(m.group("dport")) & 0xFFFF
    row["sport"], row["dport"] = sport, dport
    tcp = m.group("tcp")
    fm = _FLAGS.match(tcp)
    if fm is None:
        row["kind"] = Kind.IP_OTHER  # UDP and friends
        emit(row, s[1], d[1])  # type: ignore[operator]
        return True
    flags = 0
    letters = fm.group("flags")
    if letters != "none":
        for ch in letters:
            flags |= FLAG_BITS.get(ch, 0)
    rest = fm.group("rest")
    sm, am = _SEQ.search(rest), _ACKF.search(rest)
    seq = int(sm.group("a")) & 0xFFFFFFFF if sm else None
    seq_end = int(sm.group("b")) & 0xFFFFFFFF if sm and sm.group("b") else None
    ack = int(am.group("ack")) & 0xFFFFFFFF if am else None
    fwd = (s[1], sport) <= (d[1], dport)
    key = (s[0], s[1], sport, d[1], dport) if fwd else (s[0], d[1], dport, s[1], sport)
    abs_seq, abs_ack, relative = seqbook.absolute(key, not fwd, flags, seq, seq_end, ack)
    lengths = _LEN.findall(rest)
    payload = int(lengths[-1]) if lengths else (
        (seq_end - seq) & 0xFFFFFFFF if seq is not None and seq_end is not None else 0)
    if not flags & RST:
        abs_seq = seqbook.fill_missing_seq(key, not fwd, abs_seq, flags, payload)
    if abs_ack is not None and flags & ACK:
        # what this side acknowledges is where the other side stands, if nothing better is known
        seqbook.next_seq.setdefault((key, fwd), abs_ack)
    row["_relative"] = int(relative)
    row["kind"] = Kind.TCP
    row["flags"] = flags
    row["seq"] = abs_seq or 0
    row["ack"] = abs_ack or 0
    wm = _WIN.search(rest)
    row["win"] = int(wm.group("win")) & 0xFFFF if wm else 0
    row["payload_len"] = payload
    om = _OPTS.search(rest)
    if om:
        _options(om.group("opts"), row)
    row["tcp_hdr_len"] = 20  # tcpdump does not print the header length; options are decoded above
    row["wire_len"] = row["payload_len"] + 40
    row["cap_len"] = row["wire_len"]
    emit(row, s[1], d[1])  # type: ignore[operator]
    return True

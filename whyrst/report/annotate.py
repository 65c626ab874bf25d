"""``whyrst annotate IN OUT.pcapng``: the capture written back as pcapng with a packet comment on every
RST (its cause, confidence and why) and on the packets cited as its evidence, for reading in Wireshark.

Every record keeps its bytes, lengths and timestamp exactly: each output interface carries the input
interface's link type, snaplen, if_tsresol and if_tsoffset, and each timestamp is copied in those
units. The analysis reads the file once, then a second pass streams the records into the output batch
by batch (so the input must be a regular file, not standard input).
"""

from __future__ import annotations

import contextlib
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from whyrst.analysis import Report, Reset
from whyrst.capture.raw import RawCapture, RawInterface, block_bytes
from whyrst.causes.catalog import BY_ID
from whyrst.errors import WhyrstError

SHB, IDB, EPB = 0x0A0D0D0A, 1, 6
OPT_COMMENT, IF_TSRESOL, IF_TSOFFSET = 1, 9, 14
PREFIX = "whyrst: "
# the evidence sentences that describe packets rather than say why (see whyrst.causes.engine)
DESCRIPTIONS = ("The RST is ", "It follows the peer's ")


@dataclass
class Annotated:
    packets: int  # records written
    resets: int  # RSTs commented
    comments: int  # comments written (RSTs and evidence)
    format: str


def _one_line(text: str) -> str:
    return " ".join(text.split())


def why(reset: Reset) -> str:
    """The one-line reason: the first evidence sentence that does not just describe a packet."""
    for sentence in reset.evidence:
        if not sentence.startswith(DESCRIPTIONS):
            return _one_line(sentence)
    cause = BY_ID.get(reset.cause)
    return cause.title if cause is not None else reset.cause


def comments_for(resets: Iterable[Reset]) -> dict[int, list[str]]:
    """Frame number → the comments to put on it."""
    out: dict[int, list[str]] = {}
    for r in resets:
        out.setdefault(r.frame, []).insert(0, f"{PREFIX}{r.cause} ({round(r.confidence, 3)}): {why(r)}")
    for r in resets:
        for f in r.evidence_frames:
            if f != r.frame:
                out.setdefault(f, []).append(f"{PREFIX}evidence for the RST in frame {r.frame} ({r.cause})")
    return out


def _pad(b: bytes | memoryview) -> bytes:
    return b"\0" * (-len(b) % 4)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + _pad(value)


def _block(btype: int, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _shb() -> bytes:
    return _block(SHB, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))


def _idb(i: RawInterface) -> bytes:
    opts = _option(IF_TSRESOL, bytes([i.tsresol]))
    if i.tsoffset:
        opts += _option(IF_TSOFFSET, struct.pack("<q", i.tsoffset))
    return _block(IDB, struct.pack("<HHI", i.linktype, 0, i.snaplen) + opts + _option(0, b""))


def check_source(source: str) -> None:
    if str(source) == "-":
        raise WhyrstError("annotate reads the capture twice (analysis, then rewrite), so it needs a file, "
                          "not standard input: save it to a file first")
    if not os.path.isfile(source):
        if os.path.exists(source):
            raise WhyrstError(f"{source}: annotate reads the capture twice and needs a regular file "
                              "(not a pipe or device)")
        raise WhyrstError(f"{source}: cannot open: no such file")


def annotate(source: str, output: str, report: Report | None = None) -> Annotated:
    """Write ``source`` to ``output`` as pcapng with whyrst's comments (analysing it unless ``report``)."""
    check_source(source)
    if os.path.exists(output) and os.path.samefile(source, output):
        raise WhyrstError(f"{output}: the output would overwrite the input")
    with RawCapture(source):  # fails now, before the analysis, on text or an unreadable file
        pass
    if report is None:
        from whyrst.analysis import analyze

        report = analyze(source)
    notes = comments_for(report.resets)
    tmp = f"{output}.whyrst-tmp"
    try:
        with RawCapture(source) as cap, open(tmp, "wb") as out:
            result = _write(cap, out, notes)
        os.replace(tmp, output)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    result.resets = len(report.resets)
    return result


def _write(cap: RawCapture, out: object, notes: dict[int, list[str]]) -> Annotated:
    write = out.write  # type: ignore[attr-defined]
    write(_shb())
    out_ids: dict[RawInterface, int] = {}
    frame = 0
    comments = 0
    epb_head = struct.Struct("<IIIIIII")
    for rb in cap:
        r = rb.records
        buf = r.buf
        parts: list[bytes | memoryview] = []
        offs, caps, wires, units, ifs, blocks = (a.tolist() for a in (r.offs, r.cap, r.wire, rb.units, r.iface,
                                                                      rb.block))
        others = rb.others
        k = 0
        for i in range(r.n + 1):
            while k < len(others) and others[k][0] <= i:  # kept blocks that come before record i
                parts.append(_block(others[k][1], others[k][2]))
                k += 1
            if i == r.n:
                break
            frame += 1
            if blocks[i] >= 0:  # a record that is not a packet (systemd journal entry, custom block): as it was
                btype, body = block_bytes(buf, blocks[i], rb.big)
                n = 12 + len(body)
                parts += (struct.pack("<II", btype, n), body, struct.pack("<I", n))
                continue
            iface = rb.ifaces[ifs[i]]
            oid = out_ids.get(iface)
            if oid is None:
                oid = out_ids[iface] = len(out_ids)
                parts.append(_idb(iface))
            o, c = offs[i], caps[i]
            opts = b""
            for text in notes.get(frame, ()):
                opts += _option(OPT_COMMENT, text.encode("utf-8")[:65000])
                comments += 1
            if opts:
                opts += _option(0, b"")
            pad = -c % 4
            n = 32 + c + pad + len(opts)
            t = units[i]
            parts.append(epb_head.pack(EPB, n, oid, t >> 32, t & 0xFFFFFFFF, c, wires[i]))
            parts.append(buf[o : o + c])
            parts.append(b"\0" * pad + opts + struct.pack("<I", n))
        write(b"".join(parts))
    return Annotated(frame, 0, comments, cap.format)

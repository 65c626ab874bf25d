"""Every header whyrst reads, declared as data: (field name, struct format, default).

In the manner of dpkt, a header class lists its fields in ``__hdr__``; the struct layout, the size,
parsing (:meth:`Header.unpack_from`) and building (:meth:`Header.pack`) all follow from that
declaration. The per-packet slow path of the decoder, the file-format readers and the test capture
generator use these classes, so a field's offset is written down exactly once.

Headers are big-endian unless they say otherwise; :meth:`Header.swapped` gives the same declaration
in the other byte order (pcap and pcapng headers come in both).
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, TypeVar

H = TypeVar("H", bound="Header")


class Header:
    """A fixed-size header declared by ``__hdr__``; fields become attributes."""

    __hdr__: ClassVar[tuple[tuple[str, str, Any], ...]] = ()
    __byte_order__: ClassVar[str] = ">"
    _struct: ClassVar[struct.Struct]
    _names: ClassVar[tuple[str, ...]]
    _defaults: ClassVar[tuple[Any, ...]]
    size: ClassVar[int]
    _swapped: ClassVar[dict[type, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._struct = struct.Struct(cls.__byte_order__ + "".join(fmt for _, fmt, _ in cls.__hdr__))
        cls._names = tuple(name for name, _, _ in cls.__hdr__)
        cls._defaults = tuple(default for _, _, default in cls.__hdr__)
        cls.size = cls._struct.size

    def __init__(self, **fields: Any) -> None:
        for name, default in zip(self._names, self._defaults, strict=True):
            setattr(self, name, fields.pop(name, default))
        if fields:
            raise TypeError(f"{type(self).__name__} has no field {next(iter(fields))!r}")

    @classmethod
    def unpack_from(cls: type[H], buf: bytes | bytearray | memoryview, off: int = 0,
                    end: int | None = None) -> H | None:
        """The header at ``buf[off:]``, or None when fewer than ``size`` bytes remain before ``end``."""
        limit = len(buf) if end is None else min(end, len(buf))
        if off < 0 or off + cls.size > limit:
            return None
        obj = cls.__new__(cls)
        for name, value in zip(cls._names, cls._struct.unpack_from(buf, off), strict=True):
            setattr(obj, name, value)
        return obj

    def pack(self) -> bytes:
        return self._struct.pack(*(getattr(self, name) for name in self._names))

    def __bytes__(self) -> bytes:
        return self.pack()

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names)
        return f"{type(self).__name__}({inner})"

    @classmethod
    def swapped(cls: type[H]) -> type[H]:
        """The same declaration in the other byte order."""
        other = Header._swapped.get(cls)
        if other is None:
            order = "<" if cls.__byte_order__ in (">", "!") else ">"
            other = type(cls.__name__ + ("LE" if order == "<" else "BE"), (cls,), {"__byte_order__": order})
            Header._swapped[cls] = other
            Header._swapped[other] = cls
        return other  # type: ignore[return-value]


# -- capture file formats -------------------------------------------------------------------------


class PcapFileHeader(Header):
    """libpcap savefile header (magic read separately to pick the byte order)."""

    __hdr__ = (
        ("magic", "I", 0xA1B2C3D4),
        ("v_major", "H", 2),
        ("v_minor", "H", 4),
        ("thiszone", "i", 0),
        ("sigfigs", "I", 0),
        ("snaplen", "I", 262144),
        ("linktype", "I", 1),
    )


class PcapRecordHeader(Header):
    __hdr__ = (("ts_sec", "I", 0), ("ts_frac", "I", 0), ("caplen", "I", 0), ("len", "I", 0))


class BlockHeader(Header):
    """pcapng: every block starts with its type and total length (and ends with the length again)."""

    __hdr__ = (("type", "I", 0), ("len", "I", 12))


class SectionHeader(Header):
    """pcapng Section Header Block body, after the block header."""

    __hdr__ = (("magic", "I", 0x1A2B3C4D), ("v_major", "H", 1), ("v_minor", "H", 0), ("section_len", "q", -1))


class InterfaceDescription(Header):
    __hdr__ = (("linktype", "H", 1), ("reserved", "H", 0), ("snaplen", "I", 0))


class EnhancedPacket(Header):
    __hdr__ = (("iface", "I", 0), ("ts_hi", "I", 0), ("ts_lo", "I", 0), ("caplen", "I", 0), ("len", "I", 0))


class SimplePacket(Header):
    __hdr__ = (("len", "I", 0),)


class ObsoletePacket(Header):
    """pcapng Packet Block (type 2), superseded by the Enhanced Packet Block."""

    __hdr__ = (("iface", "H", 0), ("drops", "H", 0), ("ts_hi", "I", 0), ("ts_lo", "I", 0), ("caplen", "I", 0),
               ("len", "I", 0))


class BlockOption(Header):
    __hdr__ = (("code", "H", 0), ("len", "H", 0))


# -- link layers ----------------------------------------------------------------------------------


class Ethernet(Header):
    __hdr__ = (("dst", "6s", b"\x00\x00\x00\x00\x00\x02"), ("src", "6s", b"\x00\x00\x00\x00\x00\x01"),
               ("type", "H", 0x0800))


class VlanTag(Header):
    """802.1Q / 802.1ad tag after its TPID: tag control (PCP, DEI, VLAN id) and the next type."""

    __hdr__ = (("tci", "H", 0), ("type", "H", 0x0800))


class LLC(Header):
    __hdr__ = (("dsap", "B", 0xAA), ("ssap", "B", 0xAA), ("ctrl", "B", 3))


class SNAP(Header):
    __hdr__ = (("oui", "3s", b"\x00\x00\x00"), ("type", "H", 0x0800))


class FDDI(Header):
    __hdr__ = (("fc", "B", 0x50), ("dst", "6s", b"\x00" * 6), ("src", "6s", b"\x00" * 6))


class LinuxSLL(Header):
    __hdr__ = (("pkttype", "H", 0), ("hatype", "H", 1), ("halen", "H", 6), ("addr", "8s", b"\x00" * 8),
               ("type", "H", 0x0800))


class LinuxSLL2(Header):
    __hdr__ = (("type", "H", 0x0800), ("reserved", "H", 0), ("ifindex", "I", 1), ("hatype", "H", 1),
               ("pkttype", "B", 0), ("halen", "B", 6), ("addr", "8s", b"\x00" * 8))


class NullLoopback(Header):
    """DLT_NULL / DLT_LOOP: the address family, host order for NULL and network order for LOOP."""

    __hdr__ = (("family", "I", 2),)


class PPPoESession(Header):
    __hdr__ = (("v_type", "B", 0x11), ("code", "B", 0), ("session", "H", 1), ("len", "H", 0), ("proto", "H", 0x0021))


class MPLSLabel(Header):
    __hdr__ = (("entry", "I", 0x100FF),)  # label(20) TC(3) S(1) TTL(8)


class EthernetMPacket(Header):
    """802.3br mPacket (LINKTYPE_ETHERNET_MPACKET, 274): preamble and start mPacket delimiter."""

    __hdr__ = (("preamble", "7s", b"\x55" * 7), ("smd", "B", 0xD5))


# -- network and transport ------------------------------------------------------------------------


class IPv4(Header):
    __hdr__ = (
        ("v_hl", "B", 0x45),
        ("tos", "B", 0),
        ("len", "H", 20),
        ("id", "H", 0),
        ("off", "H", 0),  # flags (3 bits: reserved, DF, MF) and fragment offset in 8-byte units
        ("ttl", "B", 64),
        ("p", "B", 6),
        ("sum", "H", 0),
        ("src", "4s", b"\x0a\x00\x00\x01"),
        ("dst", "4s", b"\x0a\x00\x00\x02"),
    )


class IPv6(Header):
    __hdr__ = (
        ("v_fc_flow", "I", 0x60000000),  # version(4) traffic class(8) flow label(20)
        ("plen", "H", 0),
        ("nxt", "B", 6),
        ("hlim", "B", 64),
        ("src", "16s", b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01"),
        ("dst", "16s", b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x02"),
    )


class IPv6Ext(Header):
    """Hop-by-hop, routing, destination options (length in 8-byte units beyond the first 8)."""

    __hdr__ = (("nxt", "B", 6), ("len", "B", 0))


class IPv6Routing(Header):
    __hdr__ = (("nxt", "B", 6), ("len", "B", 0), ("type", "B", 0), ("segs_left", "B", 0))


class IPv6Fragment(Header):
    __hdr__ = (("nxt", "B", 6), ("reserved", "B", 0), ("off", "H", 0), ("id", "I", 0))  # off: offset<<3 | M


class AuthHeader(Header):
    """IPsec AH (IPv4 or IPv6): length in 4-byte units minus 2."""

    __hdr__ = (("nxt", "B", 6), ("len", "B", 4), ("reserved", "H", 0), ("spi", "I", 0), ("seq", "I", 0))


class TCP(Header):
    __hdr__ = (
        ("sport", "H", 1024),
        ("dport", "H", 80),
        ("seq", "I", 0),
        ("ack", "I", 0),
        ("off_flags", "H", 0x5000),  # data offset(4) and the 12 flag bits (3 reserved, NS ... FIN)
        ("win", "H", 65535),
        ("sum", "H", 0),
        ("urp", "H", 0),
    )


class UDP(Header):
    __hdr__ = (("sport", "H", 1024), ("dport", "H", 53), ("ulen", "H", 8), ("sum", "H", 0))


# -- tunnels --------------------------------------------------------------------------------------


class GRE(Header):
    """GRE base header; checksum, key and sequence words follow when their flag bits are set."""

    __hdr__ = (("flags", "H", 0), ("p", "H", 0x0800))


class ERSPAN2(Header):
    __hdr__ = (("ver_vlan", "H", 0x1000), ("cos_en_t_session", "H", 0), ("reserved_index", "I", 0))


class ERSPAN3(Header):
    __hdr__ = (("ver_vlan", "H", 0x2000), ("cos_bso_t_session", "H", 0), ("timestamp", "I", 0), ("sgt", "H", 0),
               ("p_ft_hwid_d_gra_o", "H", 0))


class VXLAN(Header):
    __hdr__ = (("flags", "B", 0x08), ("reserved", "3s", b"\x00" * 3), ("vni_res", "I", 0))


class Geneve(Header):
    __hdr__ = (("ver_optlen", "B", 0), ("flags", "B", 0), ("p", "H", 0x6558), ("vni_res", "I", 0))


class TeredoOrigin(Header):
    __hdr__ = (("indicator", "H", 0x0000), ("port", "H", 0), ("addr", "4s", b"\x00" * 4))


class TeredoAuth(Header):
    """Followed by the client id and authentication value, then nonce (8) and confirmation (1)."""

    __hdr__ = (("indicator", "H", 0x0001), ("id_len", "B", 0), ("au_len", "B", 0))


class PPP(Header):
    __hdr__ = (("addr_ctrl", "H", 0xFF03), ("proto", "H", 0x0021))

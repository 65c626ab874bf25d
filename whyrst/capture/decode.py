"""Decoding captured records into the columns of a :class:`PacketBatch`.

Two paths fill the same columns:

* the fast path (:mod:`whyrst.capture.fast`, compiled with numba when it is installed) decodes the
  common case in bulk: Ethernet/VLAN, Linux cooked (SLL, SLL2), raw IP, NULL/LOOP, then IPv4 (with
  options) or IPv6 without extension headers, then TCP;
* the slow path here decodes one record at a time, written from the header declarations in
  :mod:`whyrst.capture.headers`. It handles everything the fast path does plus the rare cases:
  tunnels (GRE, ERSPAN, VXLAN, Geneve, IP-in-IP, Teredo), MPLS, PPPoE, LLC/SNAP, FDDI, 802.3br
  mPackets, IPv6 extension headers and truncated TCP headers.

The fast path hands a record to the slow path whenever it meets something it does not know, and
the tests check on the corpus that decoding every record with the slow path gives identical
columns.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable

import numpy as np

from whyrst.capture import headers as hd
from whyrst.capture.batch import COLUMNS, RST, Kind, PacketBatch
from whyrst.capture.records import Records

# Link types (LINKTYPE_* values as found in pcap and pcapng files).
LT_NULL, LT_EN10MB, LT_FDDI, LT_RAW12, LT_RAW14, LT_RAW, LT_LOOP = 0, 1, 10, 12, 14, 101, 108
LT_LINUX_SLL, LT_IPV4, LT_IPV6, LT_ETHERNET_MPACKET, LT_LINUX_SLL2 = 113, 228, 229, 274, 276
LT_NONE = 0xFFFF  # records that are not packets (pcapng systemd journal, sysdig events)

LINK_NAMES = {
    LT_NULL: "NULL", LT_EN10MB: "EN10MB", LT_FDDI: "FDDI", LT_RAW12: "RAW", LT_RAW14: "RAW", LT_RAW: "RAW",
    LT_LOOP: "LOOP", LT_LINUX_SLL: "LINUX_SLL", LT_IPV4: "IPV4", LT_IPV6: "IPV6",
    LT_ETHERNET_MPACKET: "ETHERNET_MPACKET", LT_LINUX_SLL2: "LINUX_SLL2",
}
SUPPORTED_LINKTYPES = frozenset(LINK_NAMES)

# Link types the fast path knows (the others always take the slow path).
FAST_LINKTYPES = (LT_NULL, LT_EN10MB, LT_RAW12, LT_RAW14, LT_RAW, LT_LOOP, LT_LINUX_SLL, LT_IPV4, LT_IPV6,
                  LT_LINUX_SLL2)

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD = 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100
ETH_MPLS_UC, ETH_MPLS_MC, ETH_PPPOE_SESSION, ETH_TEB, ETH_ERSPAN2, ETH_ERSPAN3 = 0x8847, 0x8848, 0x8864, 0x6558, \
    0x88BE, 0x22EB
VLAN_TPIDS = (ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD)

# Address families seen in NULL/LOOP headers: IPv4 everywhere, IPv6 per BSD flavour.
AF_INET = 2
AF_INET6 = (24, 28, 30)

IPPROTO_IPIP, IPPROTO_TCP, IPPROTO_UDP, IPPROTO_IPV6, IPPROTO_GRE = 4, 6, 17, 41, 47
IPV6_EXT_HOPOPTS, IPV6_EXT_ROUTING, IPV6_EXT_FRAGMENT, IPV6_EXT_AH, IPV6_EXT_DSTOPTS = 0, 43, 44, 51, 60

UDP_VXLAN, UDP_GENEVE, UDP_TEREDO = 4789, 6081, 3544
TUNNEL_UDP_PORTS = (UDP_VXLAN, UDP_GENEVE, UDP_TEREDO)
TEREDO_PREFIX = b"\x20\x01\x00\x00"

# ``encap`` values (see batch.ENCAPSULATIONS)
ENC_NONE, ENC_GRE, ENC_VXLAN, ENC_GENEVE, ENC_IPIP, ENC_TEREDO, ENC_MPLS = 0, 1, 2, 3, 4, 5, 6

TCPOPT_EOL, TCPOPT_NOP, TCPOPT_MSS, TCPOPT_WSCALE, TCPOPT_SACK_OK, TCPOPT_SACK, TCPOPT_TS = 0, 1, 2, 3, 4, 5, 8
TCPOPT_MPTCP = 30

MAX_DEPTH = 8  # nested tunnels / label stacks followed before giving up

# Columns the decoder owns (the record layer fills frame, ts_ns, wire_len, cap_len, link_type, iface).
RECORD_COLUMNS = ("frame", "ts_ns", "wire_len", "cap_len", "link_type", "iface")
DECODED_COLUMNS = tuple((name, fill) for name, _, fill in COLUMNS if name not in RECORD_COLUMNS)

Buf = bytes | bytearray | memoryview


class Row:
    """What the slow path learns about one record; attribute names are column names."""

    __slots__ = (*(name for name, _ in DECODED_COLUMNS), "src", "dst", "vlan_seen", "csum_ok_possible")

    def __init__(self) -> None:
        for name, fill in DECODED_COLUMNS:
            setattr(self, name, fill)
        self.src = b""
        self.dst = b""
        self.vlan_seen = False
        self.csum_ok_possible = True

    def inner(self) -> Row:
        """A fresh row for a tunnel's inner packet (the outer VLAN is kept)."""
        r = Row()
        r.vlan, r.vlan_seen = self.vlan, self.vlan_seen
        return r

    def take(self, other: Row) -> None:
        for name in self.__slots__:
            setattr(self, name, getattr(other, name))


# -- link layers ----------------------------------------------------------------------------------


def decode_link(b: Buf, p: int, end: int, linktype: int, r: Row) -> None:
    """Decode one record of ``linktype`` found at ``b[p:end]`` into ``r``."""
    if linktype == LT_EN10MB:
        _ethernet(b, p, end, r, 0)
    elif linktype == LT_LINUX_SLL:
        h = hd.LinuxSLL.unpack_from(b, p, end)
        if h is not None:
            _sll_protocol(b, p + hd.LinuxSLL.size, end, h.hatype, h.type, r)
    elif linktype == LT_LINUX_SLL2:
        h2 = hd.LinuxSLL2.unpack_from(b, p, end)
        if h2 is not None:
            _sll_protocol(b, p + hd.LinuxSLL2.size, end, h2.hatype, h2.type, r)
    elif linktype in (LT_RAW, LT_RAW12, LT_RAW14):
        if p < end:
            version = b[p] >> 4
            if version == 4:
                _ipv4(b, p, end, r, 0)
            elif version == 6:
                _ipv6(b, p, end, r, 0)
    elif linktype in (LT_NULL, LT_LOOP):
        fam = hd.NullLoopback.unpack_from(b, p, end)
        if fam is not None:
            families = [fam.family]
            if linktype == LT_NULL:  # host byte order of the machine that captured: try both
                swapped = hd.NullLoopback.swapped().unpack_from(b, p, end)
                families.append(swapped.family if swapped is not None else -1)
            if AF_INET in families:
                _ipv4(b, p + 4, end, r, 0)
            elif any(f in AF_INET6 for f in families):
                _ipv6(b, p + 4, end, r, 0)
    elif linktype == LT_IPV4:
        _ipv4(b, p, end, r, 0)
    elif linktype == LT_IPV6:
        _ipv6(b, p, end, r, 0)
    elif linktype == LT_FDDI:
        if hd.FDDI.unpack_from(b, p, end) is not None:
            _llc(b, p + hd.FDDI.size, end, r, 0)
    elif linktype == LT_ETHERNET_MPACKET:
        m = hd.EthernetMPacket.unpack_from(b, p, end)
        # express frames (SMD-E) and the first fragment of preemptable ones (SMD-S) start a frame
        if m is not None and m.smd in (0xD5, 0xE6, 0x4C, 0x7F, 0xB3):
            _ethernet(b, p + hd.EthernetMPacket.size, end, r, 0)


def _sll_protocol(b: Buf, p: int, end: int, hatype: int, proto: int, r: Row) -> None:
    if hatype == 824:  # ARPHRD_NETLINK: the protocol field is a netlink family
        return
    if proto == 0x0004:  # LINUX_SLL_P_802_2: an 802.2 LLC frame follows
        _llc(b, p, end, r, 0)
    elif proto >= 0x0600:
        _ethertype(b, p, end, proto, r, 0)


def _ethernet(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    eth = hd.Ethernet.unpack_from(b, p, end)
    if eth is None:
        return False
    return _ethertype(b, p + hd.Ethernet.size, end, eth.type, r, depth)


def _ethertype(b: Buf, p: int, end: int, etype: int, r: Row, depth: int) -> bool:
    """Follow ``etype`` at ``b[p:end]``; True when an IP header was decoded into ``r``."""
    while etype in VLAN_TPIDS:
        tag = hd.VlanTag.unpack_from(b, p, end)
        if tag is None:
            return False
        if not r.vlan_seen:
            r.vlan, r.vlan_seen = tag.tci & 0x0FFF, True
        p += hd.VlanTag.size
        etype = tag.type
    if etype == ETH_IPV4:
        return _ipv4(b, p, end, r, depth)
    if etype == ETH_IPV6:
        return _ipv6(b, p, end, r, depth)
    if etype <= 1500:  # an 802.3 length: LLC (and SNAP) follows
        return _llc(b, p, end, r, depth)
    if depth >= MAX_DEPTH:
        return False
    if etype in (ETH_MPLS_UC, ETH_MPLS_MC):
        return _mpls(b, p, end, r, depth + 1)
    if etype == ETH_PPPOE_SESSION:
        s = hd.PPPoESession.unpack_from(b, p, end)
        if s is None:
            return False
        return _ppp_protocol(b, p + hd.PPPoESession.size, end, s.proto, r, depth + 1)
    return False


def _llc(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    llc = hd.LLC.unpack_from(b, p, end)
    if llc is None or not (llc.dsap == 0xAA and llc.ssap == 0xAA and llc.ctrl == 0x03):
        return False
    snap = hd.SNAP.unpack_from(b, p + hd.LLC.size, end)
    if snap is None or snap.type <= 1500:
        return False
    return _ethertype(b, p + hd.LLC.size + hd.SNAP.size, end, snap.type, r, depth)


def _ppp_protocol(b: Buf, p: int, end: int, proto: int, r: Row, depth: int) -> bool:
    if proto == 0x0021:
        return _ipv4(b, p, end, r, depth)
    if proto == 0x0057:
        return _ipv6(b, p, end, r, depth)
    return False


def _mpls(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    """Pop the label stack, then guess IPv4 or IPv6 from the first nibble (as Wireshark does)."""
    while True:
        label = hd.MPLSLabel.unpack_from(b, p, end)
        if label is None:
            return False
        p += hd.MPLSLabel.size
        if label.entry & 0x100:  # bottom of stack
            break
    inner = r.inner()
    if p >= end:
        return False
    version = b[p] >> 4
    ok = _ipv4(b, p, end, inner, depth) if version == 4 else _ipv6(b, p, end, inner, depth) if version == 6 else False
    if ok:
        r.take(inner)
        r.encap = ENC_MPLS
    return ok


# -- IP ---------------------------------------------------------------------------------------------


def _ipv4(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    ip = hd.IPv4.unpack_from(b, p, end)
    if ip is None or ip.v_hl >> 4 != 4:
        return False
    hl = (ip.v_hl & 0x0F) * 4
    if hl < 20 or p + hl > end:
        return False
    tso = ip.len == 0
    if tso:
        total = end - p
    elif ip.len < hl:
        return False
    else:
        total = ip.len
    r.ip_version, r.ttl, r.ip_id, r.ip_df, r.tos = 4, ip.ttl, ip.id, bool(ip.off & 0x4000), ip.tos
    r.src, r.dst = ip.src, ip.dst
    if ip.off & 0x1FFF:
        r.kind = Kind.FRAGMENT
        return True
    r.kind = Kind.IP_OTHER
    complete = not tso and not (ip.off & 0x2000) and p + total <= end
    pseudo = ip.src + ip.dst
    _protocol(b, p + hl, min(end, p + total), total - hl, ip.p, r, depth, pseudo, complete)
    return True


def _ipv6(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    ip = hd.IPv6.unpack_from(b, p, end)
    if ip is None or ip.v_fc_flow >> 28 != 6:
        return False
    r.ip_version, r.ttl, r.ip_id, r.ip_df, r.tos = 6, ip.hlim, -1, False, (ip.v_fc_flow >> 20) & 0xFF
    r.src, r.dst = ip.src, ip.dst
    r.kind = Kind.IP_OTHER
    start = p + hd.IPv6.size
    tso = ip.plen == 0  # a jumbogram or a TSO/GSO segment: the captured length is all we know
    plen = end - start if tso else ip.plen
    cend = min(end, start + plen)
    complete = not tso and start + plen <= end
    nxt, q = ip.nxt, start
    for _ in range(16):
        if nxt in (IPV6_EXT_HOPOPTS, IPV6_EXT_DSTOPTS, IPV6_EXT_ROUTING):
            ext = hd.IPv6Routing.unpack_from(b, q, cend) if nxt == IPV6_EXT_ROUTING else hd.IPv6Ext.unpack_from(
                b, q, cend)
            if ext is None:
                return True
            if isinstance(ext, hd.IPv6Routing) and ext.segs_left:
                complete = False  # the checksum uses the final destination, which we do not dig out
            nxt, q = ext.nxt, q + (ext.len + 1) * 8
        elif nxt == IPV6_EXT_FRAGMENT:
            frag = hd.IPv6Fragment.unpack_from(b, q, cend)
            if frag is None:
                return True
            if frag.off >> 3:
                r.kind = Kind.FRAGMENT
                return True
            if frag.off & 1:
                complete = False
            nxt, q = frag.nxt, q + hd.IPv6Fragment.size
        elif nxt == IPV6_EXT_AH:
            ah = hd.IPv6Ext.unpack_from(b, q, cend)
            if ah is None:
                return True
            nxt, q = ah.nxt, q + (ah.len + 2) * 4
        else:
            break
    else:
        return True
    if q > start + plen:
        return True
    pseudo = ip.src + ip.dst
    _protocol(b, q, cend, plen - (q - start), nxt, r, depth, pseudo, complete)
    return True


def _protocol(b: Buf, s: int, cend: int, length: int, proto: int, r: Row, depth: int, pseudo: bytes,
              complete: bool) -> None:
    """The IP payload ``b[s:cend]`` (``length`` bytes on the wire) of protocol ``proto``."""
    if proto == IPPROTO_TCP:
        _tcp(b, s, cend, length, r, pseudo, complete)
        return
    if depth >= MAX_DEPTH:
        return
    if proto == IPV6_EXT_AH:  # IPsec AH over IPv4 (over IPv6 it is one of the extension headers)
        ah = hd.IPv6Ext.unpack_from(b, s, cend)
        skip = (ah.len + 2) * 4 if ah is not None else 0
        if ah is not None and skip <= length:
            _protocol(b, s + skip, cend, length - skip, ah.nxt, r, depth + 1, pseudo, complete)
        return
    tunnel: Callable[[Row], bool] | None = None
    enc = ENC_NONE
    if proto == IPPROTO_IPIP:
        tunnel, enc = (lambda t: _ipv4(b, s, cend, t, depth + 1)), ENC_IPIP
    elif proto == IPPROTO_IPV6:
        tunnel, enc = (lambda t: _ipv6(b, s, cend, t, depth + 1)), ENC_IPIP
    elif proto == IPPROTO_GRE:
        tunnel, enc = (lambda t: _gre(b, s, cend, t, depth + 1)), ENC_GRE
    elif proto == IPPROTO_UDP:
        udp = hd.UDP.unpack_from(b, s, cend)
        if udp is None:
            return
        u = s + hd.UDP.size
        ports = (udp.sport, udp.dport)
        if UDP_VXLAN in ports:
            tunnel, enc = (lambda t: _vxlan(b, u, cend, t, depth + 1)), ENC_VXLAN
        elif UDP_GENEVE in ports:
            tunnel, enc = (lambda t: _geneve(b, u, cend, t, depth + 1)), ENC_GENEVE
        else:
            size = length - hd.UDP.size
            if UDP_TEREDO in ports or teredo_candidate(b, u, cend, size):
                tunnel, enc = (lambda t: _teredo(b, u, cend, t, depth + 1, size, UDP_TEREDO in ports)), ENC_TEREDO
    if tunnel is None:
        return
    inner = r.inner()
    if tunnel(inner):
        r.take(inner)
        r.encap = enc


def _gre(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    gre = hd.GRE.unpack_from(b, p, end)
    if gre is None:
        return False
    version = gre.flags & 0x7
    q = p + hd.GRE.size
    if version == 0:
        if gre.flags & 0x4000:  # routing present (RFC 1701): not followed
            return False
        q += 4 * (bool(gre.flags & 0x8000) + bool(gre.flags & 0x2000) + bool(gre.flags & 0x1000))
    elif version == 1:  # enhanced GRE (PPTP): key always, sequence and acknowledgment optional, PPP inside
        q += 4 + 4 * bool(gre.flags & 0x1000) + 4 * bool(gre.flags & 0x0080)
        if gre.p != 0x880B:
            return False
        ppp = hd.PPP.unpack_from(b, q, end)
        if ppp is None:
            return False
        if ppp.addr_ctrl == 0xFF03:
            return _ppp_protocol(b, q + hd.PPP.size, end, ppp.proto, r, depth)
        proto = struct.unpack_from(">H", b, q)[0]
        return _ppp_protocol(b, q + 2, end, proto, r, depth)
    else:
        return False
    if q > end:
        return False
    if gre.p == ETH_TEB:
        return _ethernet(b, q, end, r, depth)
    if gre.p == ETH_ERSPAN2:
        if gre.flags & 0x1000:  # type II carries a sequence number and an 8-byte ERSPAN header
            return _ethernet(b, q + hd.ERSPAN2.size, end, r, depth)
        return _ethernet(b, q, end, r, depth)  # type I: the mirrored frame directly
    if gre.p == ETH_ERSPAN3:
        e3 = hd.ERSPAN3.unpack_from(b, q, end)
        if e3 is None:
            return False
        q += hd.ERSPAN3.size + (8 if e3.p_ft_hwid_d_gra_o & 1 else 0)
        return _ethernet(b, q, end, r, depth)
    return _ethertype(b, q, end, gre.p, r, depth)


def _vxlan(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    if hd.VXLAN.unpack_from(b, p, end) is None:
        return False
    return _ethernet(b, p + hd.VXLAN.size, end, r, depth)


def _geneve(b: Buf, p: int, end: int, r: Row, depth: int) -> bool:
    g = hd.Geneve.unpack_from(b, p, end)
    if g is None or g.ver_optlen >> 6 != 0:
        return False
    q = p + hd.Geneve.size + (g.ver_optlen & 0x3F) * 4
    if g.p == ETH_TEB:
        return _ethernet(b, q, end, r, depth)
    return _ethertype(b, q, end, g.p, r, depth)


def teredo_candidate(b: Buf, p: int, end: int, size: int) -> bool:
    """Whether a UDP payload on another port may be Teredo (the fast test Zeek's detection starts with)."""
    if size < 40 or end - p < 2:
        return False
    return b[p] >> 4 == 6 or (b[p] == 0 and b[p + 1] in (0, 1))


def _teredo(b: Buf, p: int, end: int, r: Row, depth: int, size: int, on_port: bool) -> bool:
    """IPv6 in UDP (RFC 4380) after an optional authentication and an optional origin indication.

    On port 3544 any IPv6 header is taken. On other ports, as Zeek's protocol detection does, the
    IPv6 packet must fill the UDP payload exactly and either carry a Teredo address (2001:0::/32)
    or follow an indication header.
    """
    start = p
    indicated = False
    auth = hd.TeredoAuth.unpack_from(b, p, end)
    if auth is not None and auth.indicator == 0x0001:
        p += hd.TeredoAuth.size + auth.id_len + auth.au_len + 9
        indicated = True
    origin = hd.TeredoOrigin.unpack_from(b, p, end)
    if origin is not None and origin.indicator == 0x0000:
        p += hd.TeredoOrigin.size
        indicated = True
    ip = hd.IPv6.unpack_from(b, p, end)
    if ip is None or ip.v_fc_flow >> 28 != 6:
        return False
    left = size - (p - start)
    if on_port:
        if ip.plen + hd.IPv6.size > left:
            return False
    elif ip.plen + hd.IPv6.size != left or not (
            indicated or ip.src[:4] == TEREDO_PREFIX or ip.dst[:4] == TEREDO_PREFIX):
        return False
    return _ipv6(b, p, end, r, depth)


# -- TCP --------------------------------------------------------------------------------------------

_TCP_PARTIAL = (("sport", 2, ">H", 0), ("dport", 4, ">H", 2), ("seq", 8, ">I", 4), ("ack", 12, ">I", 8),
                ("off_flags", 14, ">H", 12), ("win", 16, ">H", 14))


def _tcp(b: Buf, s: int, cend: int, length: int, r: Row, pseudo: bytes, complete: bool) -> None:
    avail = cend - s
    t = hd.TCP.unpack_from(b, s, cend)
    hl = t.off_flags >> 12 << 2 if t is not None else 0
    if t is None or hl < 20 or hl > avail:
        # A header cut by the snap length (or with a bogus data offset): keep whatever fields are there.
        r.kind = Kind.TCP_TRUNCATED
        for name, need, fmt, at in _TCP_PARTIAL:
            if avail < need:
                break
            value = struct.unpack_from(fmt, b, s + at)[0]
            if name == "off_flags":
                r.flags, r.tcp_hdr_len = value & 0x0FFF, value >> 12 << 2
                r.payload_len = max(0, length - r.tcp_hdr_len)
            else:
                setattr(r, name, value)
        return
    r.kind = Kind.TCP
    r.sport, r.dport, r.seq, r.ack, r.win = t.sport, t.dport, t.seq, t.ack, t.win
    r.flags, r.tcp_hdr_len = t.off_flags & 0x0FFF, hl
    r.payload_len = max(0, length - hl)
    r.payload_off = s + hl
    r.payload_cap = cend - (s + hl)
    _tcp_options(b, s + 20, s + hl, r)
    if complete and length >= hl:
        r.checksum_ok = 1 if tcp_checksum_ok(b, s, length, pseudo) else 0


def _tcp_options(b: Buf, p: int, end: int, r: Row) -> None:
    mask = 0
    while p < end:
        kind = b[p]
        if kind == TCPOPT_EOL:
            mask |= 1
            break
        if kind == TCPOPT_NOP:
            mask |= 2
            p += 1
            continue
        if p + 1 >= end:
            break
        olen = b[p + 1]
        if olen < 2 or p + olen > end:
            break  # malformed: stop reading options
        if kind < 64:
            mask |= 1 << kind
        if kind == TCPOPT_MSS and olen == 4:
            r.opt_mss = (b[p + 2] << 8) | b[p + 3]
        elif kind == TCPOPT_WSCALE and olen == 3:
            r.opt_wscale = b[p + 2]
        elif kind == TCPOPT_SACK_OK and olen == 2:
            r.opt_sack_ok = True
        elif kind == TCPOPT_SACK:
            r.opt_sack_blocks = (olen - 2) // 8
        elif kind == TCPOPT_TS and olen == 10:
            r.opt_has_ts = True
            r.opt_ts_val, r.opt_ts_ecr = struct.unpack_from(">II", b, p + 2)
        elif kind == TCPOPT_MPTCP and olen >= 3:
            r.opt_mptcp_subtype = b[p + 2] >> 4
        p += olen
    r.opt_mask = mask


def tcp_checksum_ok(b: Buf, s: int, length: int, pseudo: bytes) -> bool:
    """Whether the TCP segment ``b[s:s+length]`` sums (with its pseudo-header) to 0xFFFF."""
    if len(pseudo) == 8:
        head = pseudo + struct.pack(">BBH", 0, IPPROTO_TCP, length)
    else:
        head = pseudo + struct.pack(">IxxxB", length, IPPROTO_TCP)
    seg = bytes(b[s : s + length])
    if length & 1:
        seg += b"\0"
    total = int(np.frombuffer(head, dtype=">u2").sum(dtype=np.uint64)) + int(
        np.frombuffer(seg, dtype=">u2").sum(dtype=np.uint64))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


# -- batch ------------------------------------------------------------------------------------------


def decode_slow_into(batch: PacketBatch, rows: np.ndarray, buf: Buf, offs: np.ndarray) -> None:
    """Decode ``rows`` of ``batch`` (records at ``buf[offs[i]:offs[i]+cap_len[i]]``) with the slow path."""
    cols = batch.cols
    caps, links = cols["cap_len"], cols["link_type"]
    targets = [(name, cols[name]) for name, _ in DECODED_COLUMNS]
    for i in rows.tolist():
        off = int(offs[i])
        r = Row()
        decode_link(buf, off, off + int(caps[i]), int(links[i]), r)
        for name, arr in targets:
            arr[i] = getattr(r, name)
        if r.ip_version:
            n = len(r.src)
            batch.src[i, :n] = np.frombuffer(r.src, dtype=np.uint8)
            batch.dst[i, :n] = np.frombuffer(r.dst, dtype=np.uint8)
            batch.src[i, n:] = 0
            batch.dst[i, n:] = 0
        else:
            batch.src[i] = 0
            batch.dst[i] = 0


class BatchDecoder:
    """Turns the :class:`~whyrst.capture.records.Records` of a reader into packet batches."""

    def __init__(self, engine: str = "numba", checksums: bool | str = True) -> None:
        from whyrst.capture import fast as fast_mod

        # False: checksum_ok is -1 (not checked) everywhere, and cheaper; "rst": checked for the RSTs only (what a
        # RST's context keeps: the tracker reads no other segment's)
        self.checksums = checksums
        self.kernel: Callable[[memoryview, np.ndarray, PacketBatch], np.ndarray] | None = None
        self._rst_checker: BatchDecoder | None = BatchDecoder(engine) if checksums == "rst" else None
        check = checksums is True
        if engine == "numba":
            compiled = fast_mod.decoder()
            if compiled is not None:
                self.kernel = compiled if check else functools.partial(compiled, check=False)
        if engine == "numpy" or (engine == "numba" and self.kernel is None):
            from whyrst.capture.vector import decode_numpy

            self.kernel = decode_numpy if check else functools.partial(decode_numpy, check=False)

    def decode(self, r: Records, frames_before: int) -> PacketBatch:
        batch = PacketBatch.empty(r.n)
        self.decode_into(r, frames_before, batch)
        return batch

    def decode_into(self, r: Records, frames_before: int, batch: PacketBatch) -> None:
        """Decode ``r`` into ``batch`` (``r.n`` rows as :meth:`PacketBatch.empty` made them; possibly
        :meth:`PacketBatch.rows` of a larger batch)."""
        n = r.n
        c = batch.cols
        c["frame"][:] = np.arange(frames_before + 1, frames_before + n + 1, dtype=np.int64)
        c["ts_ns"][:] = r.ts
        c["wire_len"][:] = r.wire
        c["cap_len"][:] = r.cap
        c["link_type"][:] = r.link
        c["iface"][:] = r.iface
        batch.data = r.buf
        slow = self.kernel(r.buf, r.offs, batch) if self.kernel is not None else np.arange(n)
        if len(slow):
            decode_slow_into(batch, slow, r.buf, r.offs)
        if self.checksums is not True:
            c["checksum_ok"][:] = -1
        if self._rst_checker is not None:
            rst = np.flatnonzero((c["kind"] == Kind.TCP) & ((c["flags"] & RST) != 0))
            if len(rst):  # (decoded again, with their checksums)
                sub = Records(r.buf, len(rst), r.offs[rst], r.cap[rst], r.wire[rst], r.ts[rst], r.link[rst],
                              r.iface[rst])
                c["checksum_ok"][rst] = self._rst_checker.decode(sub, 0).cols["checksum_ok"]

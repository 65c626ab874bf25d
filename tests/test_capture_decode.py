"""Decoding: every link type and encapsulation, IP and TCP details, and the fast path (numba)
agreeing with the per-packet slow path on generated and fuzzed packets."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from gen import (
    ACK,
    DST4,
    DST6,
    FIN,
    PSH,
    RST,
    SRC4,
    SRC6,
    SYN,
    Rec,
    assert_same,
    epb,
    erspan2,
    erspan3,
    ether,
    ether_8023,
    ext6,
    fddi,
    frag6,
    geneve,
    gre,
    idb,
    ip4,
    ip6,
    loop,
    mpacket,
    mpls,
    null,
    pcap_file,
    pppoe,
    read,
    shb,
    sll,
    sll2,
    tcp,
    tcp_opts,
    teredo,
    udp,
    vxlan,
    with_tcp_checksum,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whyrst.capture import Kind, address_text
from whyrst.capture import decode as dec
from whyrst.capture.fast import decoder as fast_decoder


def one(frame: bytes, linktype: int = 1, **rec: int) -> dict[str, object]:
    """Decode a single record with both paths; they must agree. Returns the row."""
    data = pcap_file([Rec(frame, **rec)], linktype)
    fast, slow = read(data), read(data, fast=False)
    assert_same(fast, slow)
    assert_same(read(data, engine="numpy"), slow)
    assert fast.n == 1
    return fast.row(0)


def is_tcp(row: dict[str, object], sport: int, encap: int = 0, version: int = 4) -> None:
    assert row["kind"] == Kind.TCP, row
    assert row["sport"] == sport and row["encap"] == encap and row["ip_version"] == version, row
    assert row["checksum_ok"] == 1, row
    src, dst = (SRC4, DST4) if version == 4 else (SRC6, DST6)
    assert address_text(np.frombuffer(row["src"], np.uint8), version) == src  # type: ignore[arg-type]
    assert address_text(np.frombuffer(row["dst"], np.uint8), version) == dst  # type: ignore[arg-type]


SEG = tcp(sport=1234, dport=80, seq=7, ack=9, flags=PSH | ACK, payload=b"hello")

# (name, link type, frame, expected sport, encap, ip version, vlan)
CASES: list[tuple[str, int, bytes, int, int, int, int]] = [
    ("ethernet", 1, ether(ip4(SEG)), 1234, 0, 4, 0),
    ("ethernet-ipv6", 1, ether(ip6(SEG), 0x86DD), 1234, 0, 6, 0),
    ("vlan", 1, ether(ip4(SEG), vlans=[(0x8100, 10)]), 1234, 0, 4, 10),
    ("qinq", 1, ether(ip4(SEG), vlans=[(0x88A8, 100), (0x8100, 200)]), 1234, 0, 4, 100),
    ("qinq-9100", 1, ether(ip6(SEG), 0x86DD, vlans=[(0x9100, 300), (0x8100, 7)]), 1234, 0, 6, 300),
    ("802.3-llc-snap", 1, ether_8023(ip4(SEG)), 1234, 0, 4, 0),
    ("mpls", 1, ether(mpls(ip4(SEG), [16, 17, 18]), 0x8847), 1234, 6, 4, 0),
    ("mpls-multicast-v6", 1, ether(mpls(ip6(SEG)), 0x8848), 1234, 6, 6, 0),
    ("pppoe", 1, ether(pppoe(ip4(SEG)), 0x8864), 1234, 0, 4, 0),
    ("sll", 113, sll(ip4(SEG)), 1234, 0, 4, 0),
    ("sll-vlan", 113, sll(b"\x00\x05\x08\x00" + ip4(SEG), 0x8100), 1234, 0, 4, 5),
    ("sll-llc", 113, sll(b"\xaa\xaa\x03\x00\x00\x00\x08\x00" + ip4(SEG), 0x0004), 1234, 0, 4, 0),
    ("sll2", 276, sll2(ip6(SEG), 0x86DD), 1234, 0, 6, 0),
    ("raw-101", 101, ip4(SEG), 1234, 0, 4, 0),
    ("raw-12", 12, ip6(SEG), 1234, 0, 6, 0),
    ("raw-14", 14, ip4(SEG), 1234, 0, 4, 0),
    ("null-le-v4", 0, null(ip4(SEG), 2), 1234, 0, 4, 0),
    ("null-be-v4", 0, null(ip4(SEG), 2, big=True), 1234, 0, 4, 0),
    ("null-v6-24", 0, null(ip6(SEG), 24), 1234, 0, 6, 0),
    ("null-v6-28-be", 0, null(ip6(SEG), 28, big=True), 1234, 0, 6, 0),
    ("null-v6-30", 0, null(ip6(SEG), 30), 1234, 0, 6, 0),
    ("loop", 108, loop(ip4(SEG), 2), 1234, 0, 4, 0),
    ("loop-v6", 108, loop(ip6(SEG), 30), 1234, 0, 6, 0),
    ("ipv4-linktype", 228, ip4(SEG), 1234, 0, 4, 0),
    ("ipv6-linktype", 229, ip6(SEG), 1234, 0, 6, 0),
    ("fddi", 10, fddi(ip4(SEG)), 1234, 0, 4, 0),
    ("mpacket", 274, mpacket(ether(ip4(SEG))), 1234, 0, 4, 0),
    ("gre", 1, ether(ip4(gre(ip4(SEG)), proto=47, src="10.9.9.1")), 1234, 1, 4, 0),
    ("gre-key-seq-csum", 1, ether(ip4(gre(ip6(SEG), 0x86DD, key=9, seq=1, checksum=True), proto=47)), 1234, 1, 6, 0),
    ("gre-teb", 1, ether(ip4(gre(ether(ip4(SEG), vlans=[(0x8100, 44)]), 0x6558), proto=47)), 1234, 1, 4, 44),
    ("erspan2", 1, ether(ip4(erspan2(ether(ip4(SEG))), proto=47)), 1234, 1, 4, 0),
    ("erspan3", 1, ether(ip4(erspan3(ether(ip4(SEG))), proto=47)), 1234, 1, 4, 0),
    ("erspan3-platform", 1, ether(ip4(erspan3(ether(ip4(SEG)), platform=True), proto=47)), 1234, 1, 4, 0),
    ("gre-over-ipv6", 1, ether(ip6(gre(ip4(SEG)), nxt=47), 0x86DD), 1234, 1, 4, 0),
    ("vxlan", 1, ether(ip4(udp(vxlan(ether(ip4(SEG))), dport=4789), proto=17)), 1234, 2, 4, 0),
    ("vxlan-v6-inner", 1, ether(ip4(udp(vxlan(ether(ip6(SEG), 0x86DD)), dport=4789), proto=17)), 1234, 2, 6, 0),
    ("geneve", 1, ether(ip4(udp(geneve(ether(ip4(SEG))), dport=6081), proto=17)), 1234, 3, 4, 0),
    ("geneve-opts-ip", 1, ether(ip4(udp(geneve(ip6(SEG), 0x86DD, bytes(8)), dport=6081), proto=17)), 1234, 3, 6, 0),
    ("ipip", 1, ether(ip4(ip4(SEG), proto=4)), 1234, 4, 4, 0),
    ("6in4", 1, ether(ip4(ip6(SEG), proto=41)), 1234, 4, 6, 0),
    ("6in6", 1, ether(ip6(ip6(SEG), nxt=41), 0x86DD), 1234, 4, 6, 0),
    ("4in6", 1, ether(ip6(ip4(SEG), nxt=4), 0x86DD), 1234, 4, 4, 0),
    ("teredo", 1, ether(ip4(udp(teredo(ip6(SEG)), sport=3544, dport=40001), proto=17)), 1234, 5, 6, 0),
    ("teredo-origin", 1, ether(ip4(udp(teredo(ip6(SEG), origin=True), dport=3544), proto=17)), 1234, 5, 6, 0),
    ("teredo-auth-origin", 1, ether(ip4(udp(teredo(ip6(SEG), origin=True, auth=True), dport=3544), proto=17)),
     1234, 5, 6, 0),
    ("teredo-other-port", 1, ether(ip4(udp(teredo(ip6(SEG, src="2001:0:4136:e378::1")), sport=40000, dport=32900),
                                       proto=17)), 1234, 5, 6, 0),
    ("ipv6-ext", 1, ether(ip6(SEG, ext=[(0, ext6(0, 0)), (43, ext6(43, 0)), (60, ext6(60, 0))]), 0x86DD),
     1234, 0, 6, 0),
    ("ipv6-ah", 1, ether(ip6(SEG, ext=[(51, ext6(51, 0))]), 0x86DD), 1234, 0, 6, 0),
    ("ipv6-atomic-frag", 1, ether(ip6(SEG, ext=[(44, frag6(0))]), 0x86DD), 1234, 0, 6, 0),
    ("ipv4-ah", 1, ether(ip4(ext6(51, 6) + with_tcp_checksum(SEG), proto=51)), 1234, 0, 4, 0),
    ("ipv4-options", 1, ether(ip4(SEG, options=b"\x01\x01\x01\x00")), 1234, 0, 4, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_link_types_and_encapsulations(case: tuple[str, int, bytes, int, int, int, int]) -> None:
    name, linktype, frame, sport, encap, version, vlan = case
    if name == "teredo-other-port":  # on another port the Teredo address marks it (Zeek's detection)
        inner = ip6(SEG, src="2001:0:4136:e378::1")
        row = one(ether(ip4(udp(teredo(inner), sport=40000, dport=32900), proto=17)), linktype)
        assert row["kind"] == Kind.TCP and row["encap"] == 5 and row["sport"] == 1234
        return
    row = one(frame, linktype)
    is_tcp(row, sport, encap, version)
    assert row["vlan"] == vlan
    assert row["payload_len"] == 5 and row["payload"] == b"hello"
    assert row["seq"] == 7 and row["ack"] == 9 and row["flags"] == PSH | ACK and row["dport"] == 80
    assert row["link_type"] == linktype


def test_not_tunnels_stay_outer() -> None:
    # UDP to an ordinary port, GRE carrying something that is not IP, VXLAN with garbage inside
    for frame in (
        ether(ip4(udp(b"x" * 60, dport=53), proto=17)),
        ether(ip4(gre(b"\x00" * 40, 0x880B), proto=47)),
        ether(ip4(udp(b"\x08" + bytes(7) + b"\x00" * 10, dport=4789), proto=17)),
        ether(ip4(udp(ip6(SEG), dport=40000, sport=40001), proto=17)),  # IPv6 in UDP, not a Teredo address
    ):
        row = one(frame)
        assert row["kind"] == Kind.IP_OTHER and row["encap"] == 0 and row["ip_version"] == 4
        assert address_text(np.frombuffer(row["src"], np.uint8), 4) == SRC4  # type: ignore[arg-type]


def test_non_ip_and_damaged_link_layers() -> None:
    assert one(ether(b"\x00" * 28, 0x0806))["kind"] == Kind.OTHER  # ARP
    assert one(ether(b"", 0x0800))["kind"] == Kind.OTHER  # nothing after the Ethernet header
    assert one(b"\x00" * 10)["kind"] == Kind.OTHER  # shorter than an Ethernet header
    r = one(ether(b"\x00", 0x8100))  # a VLAN tag cut short
    assert r["kind"] == Kind.OTHER and r["vlan"] == 0
    r = one(ether(b"\x00" * 28, 0x0806, vlans=[(0x8100, 9)]))  # ARP in a VLAN
    assert r["kind"] == Kind.OTHER and r["vlan"] == 9
    assert one(null(ip4(SEG), 99), 0)["kind"] == Kind.OTHER
    assert one(loop(ip4(SEG), 0x02000000), 108)["kind"] == Kind.OTHER  # LOOP is network order only
    assert one(sll(ip4(SEG), 0x0800, hatype=824), 113)["kind"] == Kind.OTHER  # netlink
    assert one(mpls(b"\x00" * 30), 1)["kind"] == Kind.OTHER
    assert one(ip4(SEG)[:12], 101)["kind"] == Kind.OTHER  # IPv4 header cut
    assert one(b"\x50" + bytes(30), 101)["kind"] == Kind.OTHER  # IP version 5
    assert one(mpacket(ether(ip4(SEG)), smd=0x61), 274)["kind"] == Kind.OTHER  # a continuation fragment


def test_unsupported_link_type_one_warning() -> None:
    frames = [Rec(b"\x00" * 40, ts_ns=i) for i in range(3)]
    t = read(pcap_file(frames, 147))  # LINKTYPE_USER0
    assert t.n == 3 and (t["kind"] == Kind.OTHER).all()
    assert len(t.warnings) == 1 and "link type 147" in t.warnings[0] and "3 packets" in t.warnings[0]
    # per interface in pcapng: one warning per unsupported link type, counting only its packets
    data = shb() + idb(1) + idb(147) + idb(148) + b"".join(
        epb(ether(ip4(SEG)) if i % 3 == 0 else b"\x00" * 20, iface=i % 3) for i in range(9))
    t = read(data)
    assert t.n == 9 and list(t["kind"][::3]) == [Kind.TCP] * 3
    assert len(t.warnings) == 2 and "147" in t.warnings[0] and "3 packets" in t.warnings[0]


# -- IP ---------------------------------------------------------------------------------------------


def test_ipv4_fields() -> None:
    r = one(ether(ip4(SEG, ttl=47, ident=4242, df=False, tos=0xB8)))
    assert (r["ttl"], r["ip_id"], r["ip_df"], r["tos"]) == (47, 4242, False, 0xB8)
    r = one(ether(ip6(SEG, hlim=250, tc=0x2E), 0x86DD))
    assert (r["ttl"], r["ip_id"], r["ip_df"], r["tos"]) == (250, -1, False, 0x2E)


def test_fragments() -> None:
    seg = tcp(payload=b"a" * 40)
    r = one(ether(ip4(seg[8:], frag=3, mf=False)))  # a non-first fragment
    assert r["kind"] == Kind.FRAGMENT and r["ip_version"] == 4 and r["sport"] == 0
    first = ip4(seg[:40], mf=True, tcp_csum=False)  # first fragment: the TCP header is there
    r = one(ether(first))
    assert r["kind"] == Kind.TCP and r["sport"] == 40000 and r["checksum_ok"] == -1 and r["payload_len"] == 20
    r = one(ether(ip6(seg[16:], nxt=44, tcp_csum=False)[:40] + frag6(6, offset=2) + seg[16:], 0x86DD))
    assert r["kind"] == Kind.FRAGMENT and r["ip_version"] == 6
    r = one(ether(ip6(seg, ext=[(44, frag6(0, more=True))], tcp_csum=False), 0x86DD))
    assert r["kind"] == Kind.TCP and r["checksum_ok"] == -1


def test_payload_length_from_ip_not_capture() -> None:
    frame = ether(ip4(tcp(payload=b"z" * 1000, flags=ACK)))
    r = one(frame, caplen=14 + 20 + 20 + 100)  # snaplen cut the payload
    assert r["kind"] == Kind.TCP and r["payload_len"] == 1000 and r["payload_cap"] == 100
    assert r["checksum_ok"] == -1 and r["wire_len"] == len(frame) and r["cap_len"] == 154
    # Ethernet padding after a short IP packet is not payload
    r = one(ether(ip4(tcp(flags=ACK))) + b"\x00" * 6)
    assert r["payload_len"] == 0 and r["payload_cap"] == 0 and r["checksum_ok"] == 1


def test_tso_zero_length_uses_captured_bytes() -> None:
    r = one(ether(ip4(tcp(payload=b"q" * 3000, flags=ACK), total_len=0)))
    assert r["kind"] == Kind.TCP and r["payload_len"] == 3000 and r["checksum_ok"] == -1
    r = one(ether(ip6(tcp(payload=b"q" * 3000, flags=ACK), plen=0), 0x86DD))
    assert r["kind"] == Kind.TCP and r["payload_len"] == 3000 and r["checksum_ok"] == -1


def test_bogus_ip_lengths() -> None:
    assert one(ether(ip4(SEG, total_len=10)))["kind"] == Kind.OTHER  # shorter than its own header
    r = one(ether(ip4(tcp(options=tcp_opts(mss=1)), total_len=30)))  # TCP header longer than the datagram
    assert r["kind"] == Kind.TCP_TRUNCATED and r["sport"] == 40000
    # IPv6 extension header cut by the capture: TCP follows, but none of it was captured
    r = one(ether(ip6(SEG, ext=[(0, ext6(0, 0, bytes(14)))]), 0x86DD), caplen=14 + 40 + 4)
    assert r["kind"] == Kind.TCP_TRUNCATED and r["ip_version"] == 6 and r["sport"] == 0
    r = one(ether(ip6(SEG, ext=[(0, ext6(0, 0, bytes(14)))]), 0x86DD), caplen=14 + 40 + 1)
    assert r["kind"] == Kind.IP_OTHER and r["ip_version"] == 6


# -- TCP --------------------------------------------------------------------------------------------


def test_tcp_options_all_decoded() -> None:
    opts = tcp_opts(mss=1380, wscale=14, sack_ok=True, ts=(0xDEADBEEF, 17), mptcp=8, extra=b"\x00")
    r = one(ether(ip4(tcp(flags=SYN | ACK, options=opts))))
    assert r["opt_mss"] == 1380 and r["opt_wscale"] == 14 and r["opt_sack_ok"]
    assert r["opt_has_ts"] and r["opt_ts_val"] == 0xDEADBEEF and r["opt_ts_ecr"] == 17
    assert r["opt_sack_blocks"] == 0 and r["opt_mptcp_subtype"] == 8
    mask = r["opt_mask"]
    assert isinstance(mask, int)
    assert {k for k in range(64) if mask >> k & 1} == {0, 1, 2, 3, 4, 8, 30}
    assert r["tcp_hdr_len"] == 20 + len(opts)
    r = one(ether(ip4(tcp(flags=ACK, options=tcp_opts(ts=(5, 6), sack=[(1, 2), (3, 4)])))))
    assert r["opt_sack_blocks"] == 2 and r["opt_has_ts"] and r["opt_mask"] == (1 << 1) | (1 << 5) | (1 << 8)


def test_tcp_no_options_defaults() -> None:
    r = one(ether(ip4(tcp())))
    assert (r["opt_mask"], r["opt_mss"], r["opt_wscale"], r["opt_sack_ok"], r["opt_has_ts"]) == (0, -1, -1, False,
                                                                                                   False)
    assert r["opt_mptcp_subtype"] == -1 and r["tcp_hdr_len"] == 20


@pytest.mark.parametrize("raw", [
    b"\x02\x06\x05",  # MSS running past the header
    b"\x02\x00\x05\xb4",  # length 0
    b"\x02\x01\x05\xb4",  # length 1
    b"\x03",  # kind without a length byte
    b"\x08\x28" + bytes(6),  # timestamp claiming 40 bytes
])
def test_malformed_options_stop_quietly(raw: bytes) -> None:
    opts = tcp_opts(mss=1460, extra=raw, pad=False)
    opts += b"\x01" * (-len(opts) % 4)
    r = one(ether(ip4(tcp(options=opts))))
    assert r["kind"] == Kind.TCP and r["opt_mss"] == 1460 and r["checksum_ok"] == 1


def test_option_with_wrong_length_keeps_going() -> None:
    opts = b"\x02\x06\x05\xb4\x00\x00" + b"\x03\x03\x07" + b"\x00\x00\x00"  # MSS of length 6, then WS
    r = one(ether(ip4(tcp(options=opts))))
    assert r["opt_mss"] == -1 and r["opt_wscale"] == 7 and r["opt_mask"] & 0b1100 == 0b1100


def test_flags_and_reserved_bits() -> None:
    r = one(ether(ip4(tcp(flags=0xFFF))))
    assert r["flags"] == 0xFFF
    r = one(ether(ip4(tcp(flags=RST | ACK | 0x800))))
    assert r["flags"] == RST | ACK | 0x800


def test_checksum_bad_and_odd_length() -> None:
    frame = bytearray(ether(ip4(tcp(payload=b"abc", flags=PSH | ACK))))
    assert one(bytes(frame))["checksum_ok"] == 1
    frame[-1] ^= 0xFF
    assert one(bytes(frame))["checksum_ok"] == 0
    frame6 = bytearray(ether(ip6(tcp(payload=b"abcde")), 0x86DD))
    assert one(bytes(frame6))["checksum_ok"] == 1
    frame6[-2] ^= 1
    assert one(bytes(frame6))["checksum_ok"] == 0


@pytest.mark.parametrize("cut", [1, 3, 4, 7, 8, 12, 13, 14, 16, 19])
def test_truncated_tcp_header(cut: int) -> None:
    seg = tcp(sport=0x1111, dport=0x2222, seq=0x33333333, ack=0x44444444, flags=RST | ACK, win=0x5555)
    r = one(ether(ip4(seg)), caplen=14 + 20 + cut)
    assert r["kind"] == Kind.TCP_TRUNCATED and r["ip_version"] == 4
    assert r["sport"] == (0x1111 if cut >= 2 else 0)
    assert r["dport"] == (0x2222 if cut >= 4 else 0)
    assert r["seq"] == (0x33333333 if cut >= 8 else 0)
    assert r["ack"] == (0x44444444 if cut >= 12 else 0)
    assert r["flags"] == (RST | ACK if cut >= 14 else 0)
    assert r["win"] == (0x5555 if cut >= 16 else 0)
    assert r["checksum_ok"] == -1 and r["payload_cap"] == 0


def test_tcp_header_with_options_cut() -> None:
    seg = tcp(flags=SYN, options=tcp_opts(mss=1460, ts=(1, 2)))
    r = one(ether(ip4(seg)), caplen=14 + 20 + 24)
    assert r["kind"] == Kind.TCP_TRUNCATED and r["flags"] == SYN and r["tcp_hdr_len"] == 20 + 16
    assert r["opt_mss"] == -1


def test_data_offset_below_five() -> None:
    r = one(ether(ip4(tcp(data_offset=4, flags=FIN | ACK))))
    assert r["kind"] == Kind.TCP_TRUNCATED and r["flags"] == FIN | ACK and r["sport"] == 40000


def test_many_packets_fast_and_slow_agree() -> None:
    """Interleaved fast-path and slow-path rows in one batch land in the right rows."""
    frames = []
    for i in range(300):
        seg = tcp(sport=i, flags=[SYN, ACK, RST, PSH | ACK][i % 4], payload=bytes([i % 256]) * (i % 7),
                  options=tcp_opts(ts=(i, i + 1)) if i % 3 else b"")
        variants = [ether(ip4(seg)), ether(ip4(gre(ip6(seg), 0x86DD), proto=47)),
                    ether(ip6(seg, ext=[(0, ext6(0, 0))]), 0x86DD)]
        frames.append(variants[i % 3])
    data = pcap_file([Rec(f, ts_ns=i * 1000) for i, f in enumerate(frames)])
    fast, slow = read(data, batch_size=64), read(data, fast=False, batch_size=64)
    assert_same(fast, slow)
    assert_same(read(data, engine="numpy", batch_size=64), slow)
    assert (fast["kind"] == Kind.TCP).all() and list(fast["sport"]) == list(range(300))
    assert list(fast["encap"][:3]) == [0, 1, 0]


# -- fuzzing: the two paths agree on anything -------------------------------------------------------

LINKS = [1, 113, 276, 101, 12, 0, 108, 228, 229, 10, 274, 999]
BASES = [c[2] for c in CASES] + [ether(ip4(tcp(options=tcp_opts(mss=1, sack=[(1, 2)], ts=(3, 4)))))]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(LINKS), st.integers(0, len(BASES) - 1),
                          st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=4),
                          st.integers(0, 400)), min_size=1, max_size=12))
def test_fuzz_fast_equals_slow(records: list[tuple[int, int, list[tuple[int, int]], int]]) -> None:
    data = shb() + b"".join(idb(lt) for lt in LINKS)
    for link, base, flips, cut in records:
        frame = bytearray(BASES[base])
        for at, value in flips:
            if at < len(frame):
                frame[at] = value
        data += epb(bytes(frame[: max(0, len(frame) - cut // 4)]), iface=LINKS.index(link))
    slow = read(data, fast=False)
    assert_same(read(data, engine="numpy"), slow)
    if fast_decoder() is not None:
        assert_same(read(data, engine="numba"), slow)


# -- tshark agrees on a generated capture with every link type -----------------------------------


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_generated_capture_matches_tshark(tmp_path: Path) -> None:
    skip = {"mpacket", "teredo-other-port"}  # tshark does not decode TCP inside these
    cases = [c for c in CASES if c[0] not in skip]
    links = sorted({c[1] for c in cases})
    data = shb() + b"".join(idb(lt) for lt in links)
    data += b"".join(epb(c[2], iface=links.index(c[1]), ts=i) for i, c in enumerate(cases))
    path = tmp_path / "all.pcapng"
    path.write_bytes(data)
    out = subprocess.run(["tshark", "-n", "-r", str(path), "-T", "fields", "-e", "frame.number", "-e", "tcp.srcport",
                          "-e", "tcp.seq_raw", "-e", "tcp.flags", "-e", "tcp.len"],
                         capture_output=True, text=True, timeout=60).stdout
    t = read(data)
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == t.n == len(cases)
    for i, (frame, sport, seq, flags, length) in enumerate(rows):
        assert int(frame) == t["frame"][i]
        assert t["kind"][i] == Kind.TCP, cases[i][0]
        assert (int(sport.split(",")[-1]), int(seq.split(",")[-1]), int(flags.split(",")[-1], 16),
                int(length.split(",")[-1])) == (t["sport"][i], t["seq"][i], t["flags"][i], t["payload_len"][i]), \
            cases[i][0]


def test_slow_path_alone_on_header_declarations() -> None:
    """The slow path is usable by itself (one record, any buffer offset)."""
    frame = ether(ip4(SEG))
    buf = b"\xff" * 5 + frame
    r = dec.Row()
    dec.decode_link(buf, 5, 5 + len(frame), 1, r)
    assert r.kind == Kind.TCP and r.sport == 1234 and r.payload_off == 5 + 14 + 20 + 20


@pytest.mark.parametrize("engine", ["numba", "numpy", "python"])
def test_checksums_of_rsts_only(engine: str) -> None:
    """The second pass of ``analyze`` checks the RSTs' checksums only (what a reset's context keeps): a RST's
    verdict is the one a full check gives, every other segment is left unchecked (-1)."""
    from whyrst.capture import fast, open_capture

    if engine == "numba" and not fast.available():
        pytest.skip("numba is not installed")
    good = ether(ip4(tcp(payload=b"abc", flags=PSH | ACK)))
    rst = ether(ip4(tcp(flags=RST | ACK)))
    bad_rst, bad_data = bytearray(rst), bytearray(good)
    bad_rst[-1] ^= 0xFF
    bad_data[-1] ^= 0xFF
    frames = [good, rst, bytes(bad_data), bytes(bad_rst), ether(ip4(udp(b"x")))]
    data = pcap_file([Rec(f, ts_ns=(i + 1) * 10**9) for i, f in enumerate(frames)])

    def checks(mode: bool | str) -> list[int]:
        with open_capture(data, engine=engine, checksums=mode) as cap:
            return [int(x) for batch in cap for x in batch.cols["checksum_ok"]]

    full, rst_only = checks(True), checks("rst")
    assert full == [1, 1, 0, 0, -1]
    assert rst_only == [-1, 1, -1, 0, -1]

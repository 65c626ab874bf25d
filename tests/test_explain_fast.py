"""The explanation stage's short cuts say what the long way says: a reset's JSON text written directly, the
dict of Reset.to_json written by hand, the facts of Features set one by one, host look-ups made once."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

import whyrst
from whyrst import synth
from whyrst.analysis import Alternative, Reset, explain_contexts, observe_contexts
from whyrst.causes import features
from whyrst.causes.features import Features, HostView, extract
from whyrst.report.jsontext import compact_reset, encode_resets

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "demo.pcap"


def _reset(**changes: Any) -> Reset:
    base: dict[str, Any] = dict(
        frame=1308, ts=1700000000.0133839, src="198.19.0.8", sport=443, dst="2001:db8::1", dport=31157,
        uid="CByNFq7QNE1QvN7Qyh", role="server", sender="firewall", cause="firewall-reject", confidence=0.508,
        alternatives=[Alternative("closed-port", 0.297), Alternative("unknown", 0.068)],
        evidence=['frame 1 198.19.0.8:443 → 198.18.5.27:31157 "quoted" \\ \x00\x1f é \u2028 \ud800'],
        fix=["Allow the traffic."], confirm=["iptables -S", "nft list ruleset"], flags="R.", seq=1, ack=1, ttl=64,
        payload_text="policy\r\n", diagnostic={"reason_code": 5, "reason_description": "blocked"},
        evidence_frames=[1308, 783])
    return Reset(**{**base, **changes})


@pytest.mark.parametrize("changes", [
    {}, {"diagnostic": {}}, {"alternatives": []}, {"evidence_frames": []}, {"evidence": ("a tuple",)},
    {"seq": -5, "ack": 2**40}, {"confidence": 1e-7}, {"ts": 1e22}, {"ts": 0.1 + 0.2},
    # values of other types or that json writes its own way: the long way, to the same text or error
    {"ts": float("nan")}, {"confidence": float("inf")}, {"confidence": 1}, {"frame": True}, {"ttl": 3.0},
    {"evidence_frames": [True]}, {"evidence_frames": [1.0]}, {"src": 5}, {"uid": None},
    {"alternatives": [Alternative("x", 0.0)]}, {"alternatives": [Alternative("x", -0.0)]},
    {"alternatives": [Alternative("x", 1)]}, {"alternatives": [Alternative("x", float("nan"))]},
    {"alternatives": [Alternative("x", True)]}, {"alternatives": [Alternative(["x"], 0.5)]},
])
def test_compact_reset_is_json_dumps(changes: dict[str, Any]) -> None:
    r = _reset(**changes)
    try:
        want: Any = json.dumps(r.to_json())
    except (TypeError, ValueError) as e:
        want = type(e)
    try:
        got: Any = compact_reset(r)
    except (TypeError, ValueError) as e:
        got = type(e)
    assert got == want
    # (a second time: the recurring lists and the alternatives come from their caches)
    if isinstance(want, str):
        assert compact_reset(r) == want


def test_compact_reset_does_not_mix_up_equal_numbers() -> None:
    """1 == 1.0 and 0.0 == -0.0, but json writes them apart: never one's text for the other."""
    for first, second in ((1.0, 1), (0.0, -0.0), (0.5, 0.5)):
        for value in (first, second):
            r = _reset(alternatives=[Alternative("closed-port", value)])  # type: ignore[arg-type]
            assert compact_reset(r) == json.dumps(r.to_json())


def test_to_json_has_every_field_in_order() -> None:
    r = _reset()
    assert list(r.to_json()) == [f.name for f in dataclasses.fields(Reset)]
    assert r.to_json() == {**dataclasses.asdict(r)}
    d = r.to_json()
    d["evidence"].append("x")
    d["diagnostic"]["x"] = 1
    assert r.evidence[-1] != "x" and "x" not in r.diagnostic  # (the caller's copies)


def _contexts(path: Path) -> tuple[list[Any], HostView]:
    kept: dict[str, Any] = {}
    import whyrst.analysis as analysis

    real = analysis.observe_contexts

    def observe(conns: Any, hosts: HostView) -> Any:
        kept["hosts"] = hosts
        kept["contexts"] = real(conns, hosts)
        return kept["contexts"]

    analysis.observe_contexts = observe  # type: ignore[assignment]
    try:
        whyrst.analyze(str(path))
    finally:
        analysis.observe_contexts = real  # type: ignore[assignment]
    return kept["contexts"], kept["hosts"]


@pytest.fixture(scope="module")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cap = synth.Capture()
    synth.normal(cap, 0.0, 30000)
    for i, make in enumerate(synth.SCENARIOS.values()):
        make(cap, 1.0 + i, 40000 + i)
    path = tmp_path_factory.mktemp("explain") / "scenarios.pcap"
    with open(path, "wb") as out:
        cap.write_pcap(out)
    return path


@pytest.mark.parametrize("which", ["demo", "scenarios"])
def test_extract_sets_every_fact(which: str, scenarios: Path) -> None:
    contexts, hosts = _contexts(EXAMPLE if which == "demo" else scenarios)
    assert contexts
    names = [f.name for f in dataclasses.fields(Features)]
    properties = [n for n, v in vars(Features).items() if isinstance(v, property)]
    for ctx in contexts:
        f = extract(ctx, hosts)
        for name in names + properties:
            getattr(f, name)  # (an unset slot raises AttributeError)
        repr(f)


def test_json_of_a_capture_is_json_dumps(scenarios: Path) -> None:
    for path in (EXAMPLE, scenarios):
        report = whyrst.analyze(str(path))
        assert report.resets
        assert encode_resets(report.resets, None) == [json.dumps(r.to_json()) for r in report.resets]


def test_host_lookups_answer_as_the_view(scenarios: Path) -> None:
    """The look-ups made once per host answer what the HostView answers, and RST times near a reset are
    counted as a scan of all of them counts."""
    contexts, hosts = _contexts(scenarios)
    lookups = features._lookups(hosts)
    assert features._lookups(hosts) is lookups
    for ctx in contexts:
        for addr in (ctx.src, ctx.dst):
            assert lookups.ttls(addr)[0] == hosts.usual_ttl(addr)
            assert lookups.ports_probed(addr) == hosts.ports_probed.get(addr, 0)
            assert lookups.refused_ports(addr) == len(hosts.refused_ports.get(addr, ()))
        times = hosts.server_rst_times.get((ctx.src, ctx.sport), [])
        for t in (ctx.rst.ts_ns, ctx.rst.ts_ns + 50_000_000, ctx.rst.ts_ns - 50_000_001):
            assert lookups.server_rsts_near(ctx.src, ctx.sport, t) == sum(1 for x in times if abs(x - t) <= 50_000_000)


def test_explanations_repeat(scenarios: Path) -> None:
    """Explaining the same contexts again (caches warm) gives the same resets."""
    contexts, hosts = _contexts(scenarios)
    first, _ = explain_contexts(contexts, hosts)
    again, _ = explain_contexts(contexts, hosts)
    assert [r.to_json() for r in first] == [r.to_json() for r in again]
    fresh = HostView(ttls=hosts.ttls, ports_probed=hosts.ports_probed, capture_start_ns=hosts.capture_start_ns,
                     answered=hosts.answered)
    by_conn: dict[str, Any] = {}
    for ctx in contexts:
        by_conn.setdefault(ctx.conn.uid, ctx.conn)
    third, _ = explain_contexts(observe_contexts(by_conn.values(), fresh), fresh)
    assert [r.to_json() for r in third] == [r.to_json() for r in first]
    assert all(math.isfinite(r.confidence) for r in first)

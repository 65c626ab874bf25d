"""The kernels compiled ahead of time (whyrst._aot) against numba's JIT kernels: the same analysis, the
module ignored when its sources changed, and arguments of other types sent to the JIT instead."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from whyrst import _aot
from whyrst.analysis import analyze
from whyrst.capture import fast

pytestmark = pytest.mark.skipif(_aot.kernels() is None, reason="kernels not compiled ahead of time "
                                "(python -m whyrst._aot)")


@pytest.fixture
def jit_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WHYRST_NO_AOT", "1")
    _aot.kernels.cache_clear()
    fast._kernels.cache_clear()
    yield
    monkeypatch.delenv("WHYRST_NO_AOT")
    _aot.kernels.cache_clear()
    fast._kernels.cache_clear()


def _bench(tmp_path: Path, pcapng: bool) -> Path:
    from whyrst import synth

    path = tmp_path / ("b.pcapng" if pcapng else "b.pcap")
    synth.write_bench(str(path), 30_000, 3000, 7, pcapng, mix="short")
    return path


def _doc(path: Path) -> list[dict]:
    r = analyze(str(path), engine="numba", two_pass=True)
    return [r.packets, r.connections, [x.to_json() for x in r.resets]]  # type: ignore[list-item]


@pytest.mark.parametrize("pcapng", [False, True], ids=["pcap", "pcapng"])
def test_aot_equals_jit(tmp_path: Path, pcapng: bool, request: pytest.FixtureRequest) -> None:
    path = _bench(tmp_path, pcapng)
    aot = _doc(path)
    request.getfixturevalue("jit_only")
    assert fast._kernels()["decode_all"].__module__ != _aot.__name__  # really the JIT now
    assert _doc(path) == aot


def test_analysis_with_aot_imports_no_numba(tmp_path: Path) -> None:
    path = _bench(tmp_path, False)
    code = ("import sys; from whyrst.analysis import analyze; r = analyze(sys.argv[1], engine='numba'); "
            "print(len(r.resets), 'numba' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    n, numba_loaded = out.stdout.split()
    assert int(n) > 0 and numba_loaded == "False", out.stderr


def test_other_argument_types_go_to_the_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    walk = _aot.kernels()["walk_pcap"]
    used_jit = []
    real_jit = _aot._jit
    monkeypatch.setattr(_aot, "_jit", lambda name: used_jit.append(name) or real_jit(name))
    rec = np.frombuffer(b"\0" * 8 + (4).to_bytes(4, "little") * 2 + b"abcd", dtype=np.uint8)

    def outputs(offs_dtype: type) -> tuple[np.ndarray, ...]:
        return (np.zeros(4, dtype=offs_dtype), np.zeros(4, dtype=np.uint32), np.zeros(4, dtype=np.uint32),
                np.zeros(4, dtype=np.int64))

    offs, cap, wire, ts = outputs(np.int64)
    assert walk(rec, 0, 4, False, True, offs, cap, wire, ts) == (1, 20, 0) and cap[0] == 4 and offs[0] == 16
    assert used_jit == []  # the compiled types: ahead-of-time code
    offs, cap, wire, ts = outputs(np.int32)  # not the compiled types: the ahead-of-time code would misread them
    assert walk(rec, 0, 4, False, True, offs, cap, wire, ts) == (1, 20, 0) and cap[0] == 4 and offs[0] == 16
    assert used_jit == ["walk_pcap"]


@pytest.mark.parametrize(("stamps", "hashed", "used"),
                         [(False, True, True), (False, False, False), (True, False, True)],
                         ids=["touched", "changed", "same-stamps"])
def test_stale_module_is_ignored(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stamps: bool, hashed: bool,
                                 used: bool) -> None:
    """The build is used while its sources' sizes and times are the build's (nothing read), or when they changed
    and the sources still hash to the build's (a file touched); not when they changed and hash otherwise."""
    meta = json.loads(_aot.META.read_text())
    if not stamps:
        meta["stamps"] = [[-1, -1]]
    if not hashed:
        meta["hash"] = "0" * 32
    fake = tmp_path / "meta.json"
    fake.write_text(json.dumps(meta))
    monkeypatch.setattr(_aot, "META", fake)
    _aot.kernels.cache_clear()
    try:
        assert (_aot.kernels() is not None) == used
    finally:
        monkeypatch.undo()
        _aot.kernels.cache_clear()
        fast._kernels.cache_clear()
    assert _aot.kernels() is not None

"""Ahead-of-time compiled kernels: the numba kernels as a plain extension module, so that a run loads
them in a millisecond without importing numba (importing numba and loading its cached kernels costs
~0.3 s on every run, more than the kernels then spend on a 100,000-packet capture).

``python -m whyrst._aot`` (the install script runs it; ``--state`` says whether the build in place
matches the sources) compiles every kernel the fast path uses with
numba's JIT on small generated captures, which records the exact argument types each one is called
with, then compiles those same functions ahead of time (``numba.pycc``, for this machine's CPU) into
``whyrst/_kernels_aot*.so`` next to a ``_kernels_aot.json`` that records the argument types and a hash
of the sources the kernels and their callers come from.

:func:`kernels` loads the module only when that hash matches the sources in place (otherwise the JIT
kernels are used until the next build). An ahead-of-time function does not check the types of its
arguments, so each is wrapped: arrays of another dtype, shape or layout than recorded go to the JIT
kernel instead (numba is then imported). ``WHYRST_NO_AOT=1`` turns the module off.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = Path(__file__).resolve().parent
MODULE = "_kernels_aot"
META = PACKAGE / f"{MODULE}.json"
# name -> module holding the numba dispatcher
KERNELS = {
    "walk_pcap": "whyrst.capture._kernels",
    "walk_epb": "whyrst.capture._kernels",
    "decode_all": "whyrst.capture._kernels",
    "scan": "whyrst.tcp._prepass_kernels",
    "count": "whyrst.tcp._prepass_kernels",
    "insert_keys": "whyrst.tcp._prepass_kernels",
    "place_keys": "whyrst.tcp._prepass_kernels",
    "rehash_ttls": "whyrst.tcp._prepass_kernels",
    "rehash_probes": "whyrst.tcp._prepass_kernels",
    "select_records": "whyrst.tcp._prepass_kernels",
    "in_set": "whyrst.tcp._prepass_kernels",
    "merge_ttls": "whyrst.tcp._prepass_kernels",
    "rehash_ttl_rows": "whyrst.tcp._prepass_kernels",
    "tied_in_one_run": "whyrst.tcp._prepass_kernels",
    "probe_totals": "whyrst.tcp._prepass_kernels",
    "track_feed": "whyrst.tcp._track_kernels",
    "track_carry": "whyrst.tcp._track_kernels",
    "track_close": "whyrst.tcp._track_kernels",
    "track_release": "whyrst.tcp._track_kernels",
    "track_rehash": "whyrst.tcp._track_kernels",
    "track_evict": "whyrst.tcp._track_kernels",
}
# what the compiled code and the types of its arguments depend on
SOURCES = ("capture/_kernels.py", "capture/fast.py", "capture/batch.py", "capture/records.py", "capture/pcap.py",
           "capture/pcapng.py", "capture/decode.py", "tcp/_prepass_kernels.py", "tcp/_prepass_layout.py",
           "tcp/prepass.py", "tcp/_track_kernels.py", "tcp/_track_layout.py", "tcp/fasttrack.py", "tcp/state.py",
           "_aot.py")


def source_hash() -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=16)
    for rel in SOURCES:
        try:
            h.update((PACKAGE / rel).read_bytes())
        except OSError:
            h.update(b"missing " + rel.encode())
    h.update(f"{sys.version_info[:2]} numpy {np.__version__}".encode())
    return h.hexdigest()


def source_stamps() -> list[Any]:
    """The versions of Python and numpy, and each source's size and time of last change: while they are those
    of the build, the sources are the build's without reading and hashing them (hashlib, the files: 5 ms of
    every start)."""
    stamps: list[Any] = [f"{sys.version_info[:2]} numpy {np.__version__}"]
    for rel in SOURCES:
        try:
            st = os.stat(PACKAGE / rel)
        except OSError:
            stamps.append([-1, -1])
        else:
            stamps.append([st.st_size, st.st_mtime_ns])
    return stamps


def _jit(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(KERNELS[name]), name)


# -- loading -------------------------------------------------------------------------------------------


Spec = list[Any] | dict[str, list[Any]] | None  # an array's (see _spec), a tuple of arrays', or nothing to check


class _Guarded:
    """``fn`` when every array argument, and every array in a tuple argument, has the recorded dtype,
    dimensions, layout and writability (what numba's own dispatch looks at: not alignment); the JIT kernel
    otherwise. A tuple of arrays (a hash table's columns, passed again and again, a chunk at a time) is
    checked once and then known by its identity: the guard holds the tuples it last found right, until
    :meth:`forget` (their owner calls it when done with them, so that they are not kept alive)."""

    def __init__(self, name: str, fn: Callable[..., Any], specs: list[Spec]) -> None:
        self.__name__ = name
        self.fn = fn
        self.arrays = [(i, *_check(s)) for i, s in enumerate(specs) if isinstance(s, list)]
        self.tuples = [(i, [_check(e) for e in s["tuple"]]) for i, s in enumerate(specs) if isinstance(s, dict)]
        self.n_args = len(specs)
        self.known: dict[int, tuple[np.ndarray, ...]] = {}  # argument position -> the tuple last found right

    @staticmethod
    def _right(a: Any, dtype: np.dtype[Any], ndim: int, contiguous: bool, writable: bool) -> bool:
        if not isinstance(a, np.ndarray) or a.ndim != ndim or (a.dtype is not dtype and a.dtype != dtype):
            return False
        if contiguous or writable:  # (one flags object: each ``a.flags`` makes a new one)
            flags = a.flags
            return (not contiguous or flags.c_contiguous) and (not writable or flags.writeable)
        return True

    def __call__(self, *args: Any) -> Any:
        # (a plain loop, not all() over a generator: the scan is called for every 2 MB of a capture, with
        # twenty-odd arrays; its checks took 11 µs a call that way, 6 µs this way)
        if len(args) == self.n_args:
            right = self._right
            for i, dtype, ndim, contiguous, writable in self.arrays:
                if not right(args[i], dtype, ndim, contiguous, writable):
                    return _jit(self.__name__)(*args)
            known = self.known
            for i, checks in self.tuples:
                t = args[i]
                if known.get(i) is t:
                    continue
                if not (isinstance(t, tuple) and len(t) == len(checks)
                        and all(right(a, *c) for a, c in zip(t, checks, strict=True))):
                    return _jit(self.__name__)(*args)
                known[i] = t
            return self.fn(*args)
        return _jit(self.__name__)(*args)

    def forget(self) -> None:
        """Forget the tuples found right (the arrays in them are no longer this guard's to keep alive)."""
        self.known.clear()


def _check(spec: list[Any]) -> tuple[np.dtype[Any], int, bool, bool]:
    dtype, ndim, contiguous, _aligned, writable = spec
    return np.dtype(dtype), ndim, contiguous, writable


@cache
def kernels() -> dict[str, Callable[..., Any]] | None:
    """The ahead-of-time kernels by name, or None (not built, built from other sources, turned off)."""
    if os.environ.get("WHYRST_NO_AOT") or os.environ.get("WHYRST_NO_NUMBA"):
        return None
    try:
        meta = json.loads(META.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("stamps") != source_stamps() and meta.get("hash") != source_hash():
        return None
    try:
        import importlib

        mod = importlib.import_module(f"whyrst.{MODULE}")
    except ImportError:
        return None
    out = {}
    for name, specs in meta.get("kernels", {}).items():
        fn = getattr(mod, name, None)
        if fn is not None:
            out[name] = _Guarded(name, fn, specs)
    return out


# -- building --------------------------------------------------------------------------------------------


def _spec(ty: Any) -> Spec:
    from numba import types
    from numba.np.numpy_support import as_dtype

    if isinstance(ty, types.Array):
        return [str(as_dtype(ty.dtype)), ty.ndim, ty.layout == "C", bool(ty.aligned), bool(ty.mutable)]
    if isinstance(ty, types.BaseTuple) and len(ty) and all(isinstance(t, types.Array) for t in ty):
        return {"tuple": [_spec(t) for t in ty]}
    return None


def _one_signature(sigs: list[Any]) -> Any:
    """The signature serving every call seen: the only one, or the one whose arrays are read-only
    wherever any call passed a read-only array (a kernel compiled for a read-only array reads a
    writable one just as well); None when calls differ otherwise."""
    from numba import types

    if len(sigs) == 1:
        return sigs[0]
    if not sigs:
        return None

    def erased(sig: Any) -> tuple[Any, ...]:
        return tuple(t.copy(readonly=False) if isinstance(t, types.Array) else t for t in sig.args)

    if len({erased(s) for s in sigs}) != 1 or len({s.return_type for s in sigs}) != 1:
        return None
    args = []
    for i, t in enumerate(sigs[0].args):
        if isinstance(t, types.Array) and any(not s.args[i].mutable for s in sigs):
            t = t.copy(readonly=True)
        args.append(t)
    return sigs[0].return_type(*args)


def build(out_dir: Path = PACKAGE) -> dict[str, Any]:
    """Compile the kernels ahead of time (see the module's description); returns the metadata written."""
    import logging
    import time
    import warnings

    os.environ["WHYRST_NO_AOT"] = "1"  # learn the types from the JIT kernels
    kernels.cache_clear()
    from whyrst.tcp.prepass import warm_up

    if not warm_up():
        raise SystemExit("whyrst: numba is not installed: nothing to compile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from numba.pycc import CC

        cc = CC(MODULE)
    cc.output_dir = str(out_dir)
    cc.target_cpu = "host"  # built where it runs (the install script), so use this CPU's instructions
    cc.verbose = False
    meta: dict[str, Any] = {"hash": source_hash(), "stamps": source_stamps(), "kernels": {}}
    for name in KERNELS:
        disp = _jit(name)
        sig = _one_signature(disp.nopython_signatures)
        if sig is None:  # called with several type combinations: left to the JIT
            print(f"whyrst: {name}: {len(disp.nopython_signatures)} signatures, left to the JIT", file=sys.stderr)
            continue
        cc.export(name, sig)(disp.py_func)
        meta["kernels"][name] = [_spec(t) for t in sig.args]
    t0 = time.time()
    logging.getLogger("numba").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cc.compile()
    (out_dir / f"{MODULE}.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"whyrst: compiled {len(meta['kernels'])} kernels ahead of time in {time.time() - t0:.1f} s",
          file=sys.stderr)
    return meta


def state() -> str:
    """Which kernels a run here uses, in words (the benchmarks record it: a stale build is a slower run)."""
    if kernels() is not None:
        return "ahead-of-time build"
    if os.environ.get("WHYRST_NO_AOT") or os.environ.get("WHYRST_NO_NUMBA"):
        return "numba's JIT (the ahead-of-time build is turned off)"
    return f"numba's JIT (no ahead-of-time build of these sources: python -m {__spec__.name} makes one)"


if __name__ == "__main__":
    if sys.argv[1:] == ["--state"]:
        print(state())
    else:
        build()

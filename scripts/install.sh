#!/usr/bin/env bash
# Installs everything whyrst and its test suite need on a fresh Debian machine (run as root):
# the system tools the tests compare with or drive, then whyrst itself with its extras.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  need=()
  for tool in tcpdump tshark editcap ip iptables nft conntrack nginx chromium; do
    command -v "$tool" >/dev/null || need+=("$tool")
  done
  if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
      tcpdump tshark iproute2 iptables nftables conntrack nginx-light procps kmod chromium >/dev/null
  fi
fi

# compat: the checkout goes on sys.path through a plain .pth line, instead of an import hook that every Python
# process then loads at start-up (importlib.util, pathlib, fnmatch, re: ~15 ms before any code runs)
python3 -m pip install -q --disable-pip-version-check -e '.[test,lab,live,fast,dataframe,parquet,dask]' \
  --config-settings editable_mode=compat

# Byte-code now, so that no run compiles whyrst's modules again (with PYTHONDONTWRITEBYTECODE set, every run would).
python3 -m compileall -q whyrst >/dev/null || true

# Compile the numba kernels now: into numba's cache (so no analysis pays for compiling them), then ahead of
# time into an extension module (so an analysis does not even import numba: whyrst/_aot.py).
python3 -m whyrst._aot || echo "whyrst: kernels not compiled ahead of time (numba or a C compiler missing?)" >&2

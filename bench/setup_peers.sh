#!/bin/bash
# setup_peers.sh - install the benchmark peers (idempotent; run as root).
#
#   bench/setup_peers.sh [VENV]
#
# * tshark + editcap/mergecap/capinfos (Debian: tshark, wireshark-common)
# * ndpiReader (Debian: libndpi-bin)
# * /usr/bin/time for peak RSS (Debian: time)
# * tcpreplay for bench/bench_live.py (Debian: tcpreplay)
# * NFStream in its own venv (default /work/peers-venv) so that the project venv stays clean.
set -euo pipefail
VENV=${1:-/work/peers-venv}
PY=${PYTHON:-python3}

missing=()
for pair in tshark:tshark capinfos:wireshark-common ndpiReader:libndpi-bin /usr/bin/time:time tcpreplay:tcpreplay; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -c 'import nfstream' 2>/dev/null || "$VENV/bin/pip" install -q nfstream

tshark --version | head -1
ndpiReader -h 2>&1 | grep -m1 -i 'ndpi' || true
"$VENV/bin/python" -c 'import nfstream; print("nfstream", nfstream.__version__)'

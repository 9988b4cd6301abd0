#!/usr/bin/env bash
# One command to set medsentry up on a fresh Debian machine with Python >= 3.11:
# system libraries (libpcap for live capture), a virtualenv in .venv, the package with its test tools.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}

if ! { [ -e /usr/include/pcap.h ] || [ -e /usr/include/pcap/pcap.h ]; }; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends libpcap-dev gcc python3-dev python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Modules an earlier run compiled (setup.py) would shadow a MEDSENTRY_PURE_PYTHON=1 install's sources.
find src/medsentry -name '*.so' ! -name '_fastpath.*' -delete
rm -f src/medsentry__mypyc.*.so
.venv/bin/python -m pip install -q -e '.[dev,live]'
# An editable install leaves byte-compiling to the first import, which PYTHONDONTWRITEBYTECODE forbids.
.venv/bin/python -m compileall -q src/medsentry >/dev/null
echo "medsentry is set up: .venv/bin/medsentry --help"

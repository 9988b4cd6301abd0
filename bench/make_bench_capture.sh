#!/bin/bash
# make_bench_capture.sh - build the ~2M-packet benchmark capture with the testbed's make_big.sh.
#
#   bench/make_bench_capture.sh [OUT.pcap] [N_COPIES]
#
# OUT defaults to /work/bench-data/big.pcap (keep it outside the repo: ~2.2 GB), N_COPIES to 75:
# 75 re-addressed wards of general-hospital-normal-60s.pcap + general-hospital-60s.pcap (attacks)
# = 75 * 27,246 + 33,780 = 2,077,230 packets.  Idempotent: does nothing when OUT already holds the
# expected number of packets.  Needs editcap/mergecap/capinfos (wireshark-common) and python3.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-/work/bench-data/big.pcap}
N=${2:-75}
SHARED=${SHARED:-$(cd "$HERE/../.." && pwd)/shared}
[ -d "$SHARED/testbed" ] || SHARED=/work/shared
NORMAL=$SHARED/data/captures/virtual-hospital/general-hospital-normal-60s.pcap
ATTACK=$SHARED/data/captures/virtual-hospital/general-hospital-60s.pcap

for tool in editcap mergecap capinfos python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install -y wireshark-common)" >&2; exit 1; }
done

count() { capinfos -T -r -c "$1" | cut -f2; }
expected=$(( N * $(count "$NORMAL") + $(count "$ATTACK") ))

if [ -f "$OUT" ] && [ "$(count "$OUT")" = "$expected" ]; then
  echo "$OUT already has $expected packets; nothing to do"
  exit 0
fi

mkdir -p "$(dirname "$OUT")"
# make_big.sh only reads next to itself (ward_clone.py) and writes its temp dir next to OUT,
# so it runs in place from the read-only shared folder.  Build to a temp name so that an
# interrupted run never leaves a truncated OUT that looks finished.
bash "$SHARED/testbed/make_big.sh" "$NORMAL" "$ATTACK" "$N" "$OUT.part" 57
mv "$OUT.part" "$OUT"
got=$(count "$OUT")
[ "$got" = "$expected" ] || { echo "$OUT has $got packets, expected $expected" >&2; exit 1; }
echo "$OUT: $got packets"

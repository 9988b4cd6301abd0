#!/bin/bash
# Alternating runs of `medsentry analyze` with 1 and 2 workers, with and without detection, so that a noisy
# shared machine hits both sides alike. Prints: workers, mode, wall s, user s, sys s, max RSS KB, load.
#   bench/ab_workers.sh [CAPTURE] [ROUNDS]
cap=${1:-/work/bench-data/big.pcap}
rounds=${2:-4}
cd "$(dirname "$0")/.." || exit 1
for _ in $(seq "$rounds"); do
  for w in 1 2; do
    for d in "" "--no-detect"; do
      r=$(/usr/bin/time -f "%e %U %S %M" .venv/bin/python bench/run_medsentry.py "$cap" --workers $w $d 2>&1 | tail -1)
      echo "w$w ${d:-detect} $r $(cut -d' ' -f1 /proc/loadavg)"
    done
  done
done

#!/bin/sh
# run_trace.sh — the timeline device call (run 25): GPU tests, `spqr-cuda-lab --trace` (cuBLAS, v5, v9 and the floors
# at n <= 2, and for SpQR w3 the timeline of one product of each inside its timing graph), and Nsight Compute
# (4096 x 4096, n = 1) on v9. NO_TEST, NO_LAB, NO_NCU skip theirs.
# Built here and carried xz-compressed in build/dev/vtrace, as run_v10.sh says (build/dev/v10 -> build/dev/vtrace).
# Writes under $OUT: vtrace.log (summary), test.log, lab.log (with the timelines), lab.csv, ncu-v9.txt.
set -u
. bench/cuda/device.sh
device_start trace
V9=_Z7k_fusedILi3ELb1ELi1ELb1ELb1EEv5fargs

run_tests "act8" 4

run_lab --trace "v5-|v9-|floor-"
grep -A5 "^trace" "$OUT/lab.log" >> "$L"

ncu_kernels "--quick --trace" v9:$V9
stamp done
cat "$L"
exit 0

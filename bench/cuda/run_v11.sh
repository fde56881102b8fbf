#!/bin/sh
# run_v11.sh — the v11 device call (run 26): GPU tests; the lab's --v11 rows (cuBLAS, v7 and v11, the wide
# blocks that share x, v11-pipe, x copied in pieces, v11-patch, the outliers in the fragments; n = 1 … 64) into lab11.*; the lab's --trace rows (v5, v9 and
# v9's variants v9-sz, v9-flag, v9-szflag at n <= 2, with the timelines) into trace.log; Nsight Compute on v11-patch and
# v7 (SpQR w3, 64 activations, 4096 x 4096) and on v9-szflag (n = 1). NO_TEST, NO_LAB, NO_TRACE, NO_NCU skip theirs.
# Built here and carried xz-compressed in build/dev/v11, as run_v10.sh says (build/dev/v10 -> build/dev/v11).
# Writes under $OUT: v11.log (summary), test.log, lab11.log, lab11.csv, trace.log, ncu-v11patch.txt, ncu-v7n64.txt,
# ncu-v9szflag.txt (the device tool brings back 8 files).
set -u
. bench/cuda/device.sh
device_start 11
V11P=_Z10k_mma_wideILi3ELb1ELi8ELb1EEv8mma_args   # v11-patch, SpQR w3, 64 activations
V9SZFLAG=_Z7k_fusedILi3ELb1ELi1ELb1ELb1ELi3EEv5fargs
V7=_Z5k_mmaILi3ELb1ELi8EEv8mma_args   # v7 at 64 activations: SpQR took 122 us at 4096^2 in run 24, GPTQ 49, cuBLAS 15

run_tests "mma-wide|mma-pipe|mma-patch|act8" 10

if [ "${NO_LAB:-0}" = 0 ]; then
    stamp lab11
    timeout ${LAB_TIMEOUT:-240} $B/spqr-cuda-lab --v11 ${LAB_ARGS:-} --csv "$OUT/lab11.csv" > "$OUT/lab11.log" 2>&1; echo "lab11 rc=$?" >> "$L"
    grep -E "roofline|device|FAIL" "$OUT/lab11.log" >> "$L"
    grep -E "cublas16|v7-mma|v11-" "$OUT/lab11.log" | grep -E "spqr-w3-b16-16|dense|gptq" >> "$L"
fi
if [ "${NO_TRACE:-0}" = 0 ]; then
    stamp trace
    timeout ${LAB_TIMEOUT:-240} $B/spqr-cuda-lab --trace > "$OUT/trace.log" 2>&1; echo "trace rc=$?" >> "$L"
    grep -E "cublas16|v9-" "$OUT/trace.log" | grep -E "spqr-w3-b16-16|dense" | grep -E " [12] " >> "$L"
    grep -A5 "^trace" "$OUT/trace.log" >> "$L"
fi

NCU_TIMEOUT=${NCU_TIMEOUT:-150} ncu_kernels "--quick --v11" v11patch:$V11P v7n64:$V7
ncu_kernels "--quick --trace" v9szflag:$V9SZFLAG
stamp done
cat "$L"
exit 0

#!/bin/sh
# run_v11.sh — the v11 device call (run 27; run 26 ran its first version, with the variants since removed): GPU
# tests; the lab's --v11 rows (cuBLAS, v7, v11 on blocks of 4 row tiles sharing x, and v4 — dequantize + cuBLAS,
# AUTO's choice above 16 — at n >= 8) into lab11.*; the SASS of v7 and v11 (SpQR w3, 8 n-tiles) with opcode
# histograms; Nsight Compute on v11 and v7 at 64 activations (4096 x 4096). NO_TEST, NO_LAB, NO_NCU skip theirs.
# Built here and carried xz-compressed in build/dev/v11, as run_v10.sh says (build/dev/v10 -> build/dev/v11).
# Writes under $OUT: v11.log (summary), test.log, lab11.log, lab11.csv, sass-v7n64.txt, sass-v11n64.txt, ncu-v11n64.txt,
# ncu-v7n64.txt (the device tool brings back 8 files).
set -u
. bench/cuda/device.sh
device_start 11
V11=_Z10k_mma_wideILi3ELb1ELi8EEv8mma_args   # v11, SpQR w3, 64 activations
V7=_Z5k_mmaILi3ELb1ELi8EEv8mma_args           # v7 at 64 activations

run_tests "mma|act8" 10

if [ "${NO_LAB:-0}" = 0 ]; then
    stamp lab11
    timeout ${LAB_TIMEOUT:-240} $B/spqr-cuda-lab --v11 ${LAB_ARGS:-} --csv "$OUT/lab11.csv" > "$OUT/lab11.log" 2>&1; echo "lab11 rc=$?" >> "$L"
    grep -E "roofline|device|FAIL" "$OUT/lab11.log" >> "$L"
    grep -E "cublas16|v7-mma|v11-|v4-" "$OUT/lab11.log" | grep -E "spqr-w3-b16-16|dense|gptq" >> "$L"
fi
sass_hist v7n64:$V7 v11n64:$V11
NCU_TIMEOUT=${NCU_TIMEOUT:-150} ncu_kernels "--quick --v11" v11n64:$V11 v7n64:$V7
stamp done
cat "$L"
exit 0

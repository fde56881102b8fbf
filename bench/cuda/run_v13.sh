#!/bin/sh
# run_v13.sh — the 7B-shaped whole-model benchmark (bench/cuda/decode_bench.cu: fp16 against SpQR w3, w3 with 8-bit
# activations, SpQR w4 and GPTQ w4, prefill of 512 tokens and decode of 128), then run_v12.sh's checks of the
# changes since run 28: GPU tests (v12's parallel outlier step in `mma-deq`), the lab's --v11 rows, and the GPU
# model on evalmodel (w3h4.spqr and its --dense16), whose decode now follows a v12 prefill (the graph re-capture);
# and `spqr-cuda-lab --noprep` (v9 at n = 1 without k_prep_x: lab-noprep.log).
# NO_DECODE, NO_TEST, NO_LAB, NO_MODEL skip theirs.
# Built here and carried xz-compressed in build/dev/v13, as run_v9.sh says with v9 -> v13, plus
# build/gpu/cuda/spqr-cuda-decode-bench (make ... build/gpu/cuda/spqr-cuda-decode-bench, the same CUDA_HOST_LIBS),
# and w3h4.spqr and wikitext2-test.txt as run_v12.sh says.
# Writes under $OUT: v13.log (summary), decode.log, test.log, lab.log, lab.csv, lab-noprep.log, model.log.
set -u
. bench/cuda/device.sh
device_start 13
cp "$D"/*.spqr "$D"/wikitext2-test.txt "$B"/ 2>/dev/null

if [ "${NO_DECODE:-0}" = 0 ]; then
    stamp decode
    timeout ${DECODE_TIMEOUT:-240} $B/spqr-cuda-decode-bench --threads 16 --json ${DECODE_ARGS:-} > "$OUT/decode.log" 2>&1
    echo "decode rc=$?" >> "$L"
    grep -vE '^\{' "$OUT/decode.log" >> "$L"
fi

run_tests "mma|act8" 12

: "${LAB_TIMEOUT:=240}"
run_lab --v11 "v4-|v7-|v11-|v12-"

if [ "${NO_LAB:-0}" = 0 ]; then # v9 without k_prep_x (the bound for x prepared by its producer)
    stamp lab-noprep
    timeout ${NOPREP_TIMEOUT:-90} $B/spqr-cuda-lab --noprep > "$OUT/lab-noprep.log" 2>&1; echo "lab --noprep rc=$?" >> "$L"
    grep -E "cublas16|v9-|floor-read" "$OUT/lab-noprep.log" | grep -E " 1 " >> "$L"
fi

[ "${NO_MODEL:-0}" = 0 ] && MODEL_SPECS="w3h4.spqr: w3h4.spqr:--dense16" run_models
stamp done
cat "$L"
exit 0

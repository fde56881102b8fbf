#!/bin/sh
# run_v12.sh — the v12 device call (run 28, before v12's parallel outlier step and the model's graph re-capture, which
# the next call of it measures): GPU tests; the lab's --v11 rows (cuBLAS, v7, v11, v4 and v12 — the
# weights dequantized from v7's layout into cuBLAS, SPQR_CUDA_MMA's path above 16 activations) into lab.*; the
# GPU model against the CPU on evalmodel (w3h4.spqr: SpQR w3 + 4-bit head; with --dense16, its fp16
# dequantization, the 16-bit baseline): perplexity over 4 chunks of 2048 (prefill now runs v12) and decode.
# NO_TEST, NO_LAB, NO_MODEL skip theirs.
# Built here and carried xz-compressed in build/dev/v12 (the device tool carries 64 MiB), as run_v9.sh says
# with v9 -> v12 (spqr-cuda-test, spqr-cuda-lab, spqr-cuda-model-test with static host libraries), plus
#   build/spqr quantize ../shared/models/evalmodel -o build/dev/v12/w3h4.spqr --wbits 3 --head-bits 4 --nsamples 32 \
#       --calib ../shared/text/c4-train-sample.txt
#   cp ../shared/text/wikitext2-test.txt build/dev/v12/
# Writes under $OUT: v12.log (summary), test.log, lab.log, lab.csv, model.log.
set -u
. bench/cuda/device.sh
device_start 12
cp "$D"/*.spqr "$D"/wikitext2-test.txt "$B"/ 2>/dev/null

run_tests "mma|act8" 12

: "${LAB_TIMEOUT:=240}"
run_lab --v11 "v4-|v7-|v11-|v12-"

[ "${NO_MODEL:-0}" = 0 ] && MODEL_SPECS="w3h4.spqr: w3h4.spqr:--dense16" run_models
stamp done
cat "$L"
exit 0

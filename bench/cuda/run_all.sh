#!/bin/sh
# run_all.sh — one device call: build (unless carried binaries exist), GPU tests, then the lab.
# Writes test.log, lab.log and lab.csv under $OUT (default build/cuda/out).
set -u
OUT=${OUT:-build/cuda/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv | tee "$OUT/gpu.txt"
if [ ! -x build/cuda/spqr-cuda-test ] || [ ! -x build/cuda/spqr-cuda-lab ]; then
    make -j16 cuda 2>&1 | tail -5
fi
build/cuda/spqr-cuda-test 2>&1 | tee "$OUT/test.log" | tail -40
build/cuda/spqr-cuda-lab ${LAB_ARGS:-} --csv "$OUT/lab.csv" 2>&1 | tee "$OUT/lab.log"

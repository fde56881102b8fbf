#!/bin/sh
# run_device.sh — one device call of the GPU work, on binaries built here (nvcc 13.0, sm_90) and
# carried xz-compressed in build/dev/bin (the device tool carries 64 MiB: see bench/cuda/README.md).
#   MODE=kernels (default): GPU tests, the model tests, the lab (--fast), Nsight Compute on k_fused
#   MODE=model:             the model tests only
# MODELS="model:text:ctx ..." — each model against the CPU (tests/cuda/test_model.cu), quantized
# weights and --dense16. MODEL_ARGS: extra arguments. Writes under $OUT: gpu.txt, test.log, model.log,
# lab.log, lab.csv, ncu.txt.
set -u
OUT=${OUT:-build/cuda/out}
B=${B:-build/gpu/cuda}
mkdir -p "$OUT" "$B"
unxz_to() { if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else python3 -c "import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$1" "$2"; fi; }
for f in build/dev/bin/*.xz; do [ -f "$f" ] && unxz_to "$f" "$B/$(basename "$f" .xz)" && chmod +x "$B/$(basename "$f" .xz)"; done
for f in build/dev/*.spqr.xz; do [ -f "$f" ] && unxz_to "$f" "${f%.xz}"; done
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv > "$OUT/gpu.txt" 2>&1
nproc >> "$OUT/gpu.txt"
if [ "${MODE:-kernels}" = kernels ]; then
    timeout 150 $B/spqr-cuda-test > "$OUT/test.log" 2>&1; echo "test rc=$?"; grep -E "FAIL|fused|f32 " "$OUT/test.log" | head -30; tail -1 "$OUT/test.log"
fi
for spec in ${MODELS:-}; do
    M=${spec%%:*}; rest=${spec#*:}; T=${rest%%:*}; C=${rest#*:}
    for D in "" --dense16; do
        echo "=== $M $D (ctx $C, $T)" >> "$OUT/model.log"
        timeout ${MODEL_TIMEOUT:-150} $B/spqr-cuda-model-test "$M" "$T" --ctx "$C" $D ${MODEL_ARGS:-} >> "$OUT/model.log" 2>&1
        echo "rc=$?" >> "$OUT/model.log"
    done
done
[ -f "$OUT/model.log" ] && grep -E "===|PASS|FAIL|ppl|decode|upload|rc=" "$OUT/model.log"
if [ "${MODE:-kernels}" = kernels ]; then
    timeout ${LAB_TIMEOUT:-200} $B/spqr-cuda-lab --fast ${LAB_ARGS:-} --csv "$OUT/lab.csv" > "$OUT/lab.log" 2>&1
    echo "lab rc=$?"; grep -E "roofline|fused|cublas16|tiled " "$OUT/lab.log" | grep -E "roofline| (1|4) " | head -40
    NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    if [ -x "$NCU" ]; then
        timeout 120 $NCU --kernel-name regex:k_fused --launch-count 2 --section SpeedOfLight --section Occupancy --section LaunchStats \
            --section WarpStateStats --section MemoryWorkloadAnalysis $B/spqr-cuda-lab --quick --fast > "$OUT/ncu.txt" 2>&1
        grep -E "Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Stall|Compute \(SM\)" "$OUT/ncu.txt" | head -30
    else echo "no ncu"; fi
fi
exit 0

#!/bin/sh
# run_v6.sh — the v6 device call: GPU tests, the lab restricted to cuBLAS / v5 / v6 (--v56), and Nsight
# Compute on v6 at 4096², on binaries built here and carried xz-compressed in build/dev/v6:
#   nice -n 19 make -j1 BUILD=build/gpu CUDA_ARCH="-gencode arch=compute_90,code=sm_90" build/gpu/cuda/spqr-cuda-{test,lab}
#   mkdir -p build/dev/v6 && for b in spqr-cuda-test spqr-cuda-lab; do strip -o /tmp/$b build/gpu/cuda/$b; xz -9 -c /tmp/$b > build/dev/v6/$b.xz; done
# then (device tool, carry build/dev/v6): OUT=$OUT sh bench/cuda/run_v6.sh. Writes $OUT/v6.log (everything) and $OUT/lab.csv.
set -u
OUT=${OUT:-build/cuda/out}
B=${B:-build/gpu/cuda}
mkdir -p "$OUT" "$B"
L="$OUT/v6.log"
. bench/cuda/device.sh
unpack_carried build/dev/v6 "$B"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,memory.total --format=csv > "$L" 2>&1
echo "=== test" >> "$L"
timeout ${TEST_TIMEOUT:-150} $B/spqr-cuda-test >> "$L" 2>&1; echo "test rc=$?" | tee -a "$L"
grep -E "FAIL" "$L" | head -20; grep -E "v6-w|passed" "$L" | tail -8
echo "=== lab" >> "$L"
timeout ${LAB_TIMEOUT:-240} $B/spqr-cuda-lab --v56 ${LAB_ARGS:-} --csv "$OUT/lab.csv" >> "$L" 2>&1; echo "lab rc=$?" | tee -a "$L"
grep -E "roofline|fused|v6-|cublas16" "$L" | grep -E "roofline| (1|2|4) " | head -60
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if [ -x "$NCU" ] && [ "${NO_NCU:-0}" = 0 ]; then
    echo "=== ncu" >> "$L"
    timeout ${NCU_TIMEOUT:-100} $NCU --kernel-name regex:k_v6 --launch-count 2 --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats $B/spqr-cuda-lab --quick --v56 >> "$L" 2>&1
    sed -n '/=== ncu/,$p' "$L" | grep -E "k_v6|k_fused|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\)" | head -40
fi
exit 0

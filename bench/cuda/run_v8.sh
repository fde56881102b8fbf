#!/bin/sh
# run_v8.sh — the v8 (group-sum) device call: GPU tests, the lab restricted to cuBLAS / v5 / v7 / v8
# (--v8), the GPU model against the CPU on the evalmodel .spqr files carried along (MODEL_SPECS), and
# Nsight Compute on NCU_KERNEL (default k_fused; 4096 x 4096, n = 1).
# Built here and carried xz-compressed in build/dev/v8 (the device tool carries 64 MiB):
#   make -j2 BUILD=build/gpu CUDA_ARCH="-gencode arch=compute_90,code=sm_90" CUDA_HOST_LIBS="<static LAPACKE, OpenBLAS,
#        gfortran, quadmath, nettle, zlib> -lpthread" build/gpu/cuda/spqr-cuda-{test,lab,model-test}
#   for b in spqr-cuda-test spqr-cuda-lab spqr-cuda-model-test; do strip -o /tmp/$b build/gpu/cuda/$b; xz -6 -c /tmp/$b > build/dev/v8/$b.xz; done
#   xz -c w3h4.spqr > build/dev/v8/w3h4.spqr.xz (evalmodel files: w3h4, w4h4), xz -c ../shared/text/wikitext2-test.txt > build/dev/v8/wikitext2-test.txt.xz
# then (device tool, carry build/dev/v8): OUT=$OUT sh bench/cuda/run_v8.sh
# Writes under $OUT: v8.log (summary), test.log, lab.log, lab.csv, model.log, ncu.txt. LAB_ARGS: extra lab flags.
set -u
. bench/cuda/device.sh
device_start 8

if [ "${NO_TEST:-0}" = 0 ]; then
    stamp test
    timeout ${TEST_TIMEOUT:-150} $B/spqr-cuda-test > "$OUT/test.log" 2>&1; echo "test rc=$?" >> "$L"
    grep -E "FAIL" "$OUT/test.log" | head -20 >> "$L"; grep -E "  gsum|passed" "$OUT/test.log" | tail -12 >> "$L"
fi

stamp lab
timeout ${LAB_TIMEOUT:-250} $B/spqr-cuda-lab --v8 ${LAB_ARGS:-} --csv "$OUT/lab.csv" > "$OUT/lab.log" 2>&1; echo "lab rc=$?" >> "$L"
grep -E "roofline|device" "$OUT/lab.log" >> "$L"
grep -E "cublas16|v5-|v7-mma|v8-" "$OUT/lab.log" | grep -E "spqr-w3-b16-16|dense" >> "$L"

run_models

stamp ncu
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if [ -x "$NCU" ] && [ "${NO_NCU:-0}" = 0 ]; then
    timeout ${NCU_TIMEOUT:-90} $NCU --clock-control none --kernel-name regex:${NCU_KERNEL:-k_fused} --launch-count 1 --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis --section SchedulerStats $B/spqr-cuda-lab --quick --v8 > "$OUT/ncu.txt" 2>&1
    grep -E "k_fused|k_gsum|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\)|Stall|Issued Warp|No Eligible|Active Warps" "$OUT/ncu.txt" | head -30 >> "$L"
fi
stamp done
cat "$L"
exit 0

#!/bin/sh
# run_v7.sh — the v7 (tensor-core) device call: GPU tests, the lab restricted to cuBLAS / v5 / v7
# (--v7), the GPU model against the CPU on evalmodel .spqr files, and Nsight Compute on k_mma.
# Built here and carried xz-compressed in build/dev/v7 (the device tool carries 64 MiB):
#   make -j2 BUILD=build/gpu CUDA_ARCH="-gencode arch=compute_90,code=sm_90" CUDA_HOST_LIBS="<static BLAS, LAPACKE,
#        gfortran, quadmath, nettle, zlib> -lpthread" build/gpu/cuda/spqr-cuda-{test,lab,model-test}
#   for b in spqr-cuda-test spqr-cuda-lab spqr-cuda-model-test; do strip -o /tmp/$b build/gpu/cuda/$b; xz -9 -c /tmp/$b > build/dev/v7/$b.xz; done
#   xz -c FILE.spqr > build/dev/v7/NAME.spqr.xz (evalmodel files), cp ../shared/text/wikitext2-test.txt build/dev/v7/
# then (device tool, carry build/dev/v7): OUT=$OUT sh bench/cuda/run_v7.sh
# Writes under $OUT: v7.log (summary), test.log, lab.log, lab.csv, model.log, ncu.txt.
set -u
. bench/cuda/device.sh
device_start 7
nproc >> "$L"

stamp test
timeout ${TEST_TIMEOUT:-120} $B/spqr-cuda-test > "$OUT/test.log" 2>&1; echo "test rc=$?" >> "$L"
grep -E "FAIL" "$OUT/test.log" | head -20 >> "$L"; grep -E "  mma|passed" "$OUT/test.log" | tail -12 >> "$L"

stamp lab
timeout ${LAB_TIMEOUT:-200} $B/spqr-cuda-lab --v7 --csv "$OUT/lab.csv" > "$OUT/lab.log" 2>&1; echo "lab rc=$?" >> "$L"
grep -E "roofline|device" "$OUT/lab.log" >> "$L"
grep -E "cublas16|v5-fused|v7-" "$OUT/lab.log" | grep -E "spqr-w3|dense" >> "$L"

MODEL_TIMEOUT=${MODEL_TIMEOUT:-50} run_models

stamp ncu
NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
if [ -x "$NCU" ] && [ "${NO_NCU:-0}" = 0 ]; then
    timeout ${NCU_TIMEOUT:-45} $NCU --clock-control none --kernel-name regex:k_mma --launch-count 1 --section SpeedOfLight --section Occupancy \
        --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis $B/spqr-cuda-lab --quick --v7 > "$OUT/ncu.txt" 2>&1
    grep -E "k_mma|Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\)|Stall" "$OUT/ncu.txt" | head -30 >> "$L"
fi
stamp done
cat "$L"
exit 0

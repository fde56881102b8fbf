#!/bin/sh
# run_v9.sh — the v9 (8-bit activations) device call: GPU tests, the lab restricted to cuBLAS / v5 / v9 /
# the floors / v7 (--v9), the GPU model against the CPU on the evalmodel .spqr files carried along
# (MODEL_SPECS; NO_MODEL=1 skips it; NO_TEST, NO_LAB, NO_NCU skip theirs), the SASS opcode histograms of v5 and v9 (W = 3, q = 3, n = 1,
# half tiles) and Nsight Compute on both (4096 x 4096, n = 1).
# Built here and carried xz-compressed in build/dev/v9 (the device tool carries 64 MiB), as run_v8.sh
# says with v8 -> v9:
#   make -j2 BUILD=build/gpu CUDA_ARCH="-gencode arch=compute_90,code=sm_90" CUDA_HOST_LIBS="<static LAPACKE, OpenBLAS,
#        gfortran, quadmath, nettle, zlib> -lpthread" build/gpu/cuda/spqr-cuda-{test,lab,model-test}
#   for b in spqr-cuda-test spqr-cuda-lab spqr-cuda-model-test; do strip -o /tmp/$b build/gpu/cuda/$b; xz -6 -c /tmp/$b > build/dev/v9/$b.xz; done
# then (device tool, carry build/dev/v9): OUT=$OUT sh bench/cuda/run_v9.sh
# Writes under $OUT: v9.log (summary), test.log, lab.log, lab.csv, model.log, sass-v5.txt, sass-v9.txt, ncu-v5.txt, ncu-v9.txt.
set -u
. bench/cuda/device.sh
device_start 9
V5=_Z7k_fusedILi3ELb1ELi1ELb1ELb0EEv5fargs
V9=_Z7k_fusedILi3ELb1ELi1ELb1ELb1EEv5fargs

if [ "${NO_TEST:-0}" = 0 ]; then
    stamp test
    timeout ${TEST_TIMEOUT:-200} $B/spqr-cuda-test > "$OUT/test.log" 2>&1; echo "test rc=$?" >> "$L"
    grep -E "FAIL" "$OUT/test.log" | head -20 >> "$L"; grep -E "  act8|passed" "$OUT/test.log" | tail -14 >> "$L"
fi

sass_hist v5:$V5 v9:$V9

if [ "${NO_LAB:-0}" = 0 ]; then
stamp lab
timeout ${LAB_TIMEOUT:-250} $B/spqr-cuda-lab --v9 ${LAB_ARGS:-} --csv "$OUT/lab.csv" > "$OUT/lab.log" 2>&1; echo "lab rc=$?" >> "$L"
grep -E "roofline|device" "$OUT/lab.log" >> "$L"
grep -E "cublas16|v5-|v7-|v9-|floor-" "$OUT/lab.log" | grep -E "spqr-w3-b16-16|dense" >> "$L"
fi

[ "${NO_MODEL:-0}" = 0 ] && run_models

ncu_kernels "--quick --v9" v5:$V5 v9:$V9
stamp done
cat "$L"
exit 0

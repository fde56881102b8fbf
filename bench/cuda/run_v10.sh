#!/bin/sh
# run_v10.sh — the v10 (streaming GEMV) device call: GPU tests, the SASS opcode histograms of v10 and v9
# (W = 3, q = 3, n = 1), the lab restricted to cuBLAS / v5 / v9 / the floors / v7 / v10 (--v10; LAB_ARGS
# adds flags, e.g. --quick), the GPU model against the CPU on the .spqr files carried along (MODEL_SPECS,
# see device.sh), and Nsight Compute on v10 and v9 (4096 x 4096, n = 1). NO_TEST, NO_LAB, NO_MODEL,
# NO_NCU skip theirs.
# Built here and carried xz-compressed in build/dev/v10 (the device tool carries 64 MiB), as run_v8.sh says:
#   make -j2 BUILD=build/gpu CUDA_ARCH="-gencode arch=compute_90,code=sm_90" build/gpu/cuda/spqr-cuda-{test,lab}
#   (and spqr-cuda-model-test with CUDA_HOST_LIBS="<static LAPACKE, OpenBLAS, gfortran, quadmath, nettle, zlib> -lpthread")
#   for b in spqr-cuda-test spqr-cuda-lab [spqr-cuda-model-test]; do strip -o /tmp/$b build/gpu/cuda/$b; xz -6 -c /tmp/$b > build/dev/v10/$b.xz; done
# then (device tool, carry build/dev/v10): OUT=$OUT sh bench/cuda/run_v10.sh
# Writes under $OUT: v10.log (summary), test.log, lab.log, lab.csv, model.log, sass-v10.txt, sass-v9.txt, ncu-v10.txt, ncu-v9.txt.
set -u
. bench/cuda/device.sh
device_start 10
V10=_Z8k_streamILi3ELi1ELi24EEv7st_args
V9=_Z7k_fusedILi3ELb1ELi1ELb1ELb1EEv5fargs

if [ "${NO_TEST:-0}" = 0 ]; then
    stamp test
    timeout ${TEST_TIMEOUT:-200} $B/spqr-cuda-test > "$OUT/test.log" 2>&1; echo "test rc=$?" >> "$L"
    grep -E "FAIL" "$OUT/test.log" | head -20 >> "$L"; grep -E "  stream|passed" "$OUT/test.log" | tail -16 >> "$L"
fi

SASS_TOP=24 sass_hist v10:$V10 v9:$V9

if [ "${NO_LAB:-0}" = 0 ]; then
    stamp lab
    timeout ${LAB_TIMEOUT:-300} $B/spqr-cuda-lab --v10 ${LAB_ARGS:-} --csv "$OUT/lab.csv" > "$OUT/lab.log" 2>&1; echo "lab rc=$?" >> "$L"
    grep -E "roofline|device|FAIL" "$OUT/lab.log" >> "$L"
    grep -E "cublas16|v5-|v7-|v9-|v10-|floor-" "$OUT/lab.log" | grep -E "spqr-w3-b16-16|dense" >> "$L"
fi

[ "${NO_MODEL:-0}" = 0 ] && run_models

ncu_kernels "--quick --v10" v10:$V10 v9:$V9
stamp done
cat "$L"
exit 0

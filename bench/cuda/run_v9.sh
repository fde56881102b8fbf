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

run_tests "  act8" 14

sass_hist v5:$V5 v9:$V9

: "${LAB_TIMEOUT:=250}"
run_lab --v9 "v5-|v7-|v9-|floor-"

[ "${NO_MODEL:-0}" = 0 ] && run_models

ncu_kernels "--quick --v9" v5:$V5 v9:$V9
stamp done
cat "$L"
exit 0

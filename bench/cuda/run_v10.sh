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

run_tests "  stream" 16

SASS_TOP=24 sass_hist v10:$V10 v9:$V9

run_lab --v10 "v5-|v7-|v9-|v10-|floor-"

[ "${NO_MODEL:-0}" = 0 ] && run_models

ncu_kernels "--quick --v10" v10:$V10 v9:$V9
stamp done
cat "$L"
exit 0

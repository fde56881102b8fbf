# cuda.mk — the optional CUDA kernels (src/cuda), their lab (bench/cuda) and tests (tests/cuda).
# Included by the Makefile; nothing here runs nvcc unless a CUDA target is asked for.
#   make CUDA=1        also builds the lab and the GPU test program (needs nvcc)
#   make cuda          the same, explicitly
#   make cuda-check    compiles every .cu file (no GPU needed): what CI runs
#   make cuda-test     builds and runs the GPU tests (SKIPPED, exit 0, without a GPU)
#   make cuda-lab      builds and runs the kernel lab (timings; needs a GPU)
#   make cuda-model-test   builds the GPU-vs-CPU model test (links $(BUILD)/libspqr.a and BLAS):
#                      $(CUDA_BUILD)/spqr-cuda-model-test MODEL TEXT [...] (see tests/cuda/test_model.cu)
#   make cuda-decode-bench builds $(CUDA_BUILD)/spqr-cuda-decode-bench (bench/cuda/decode_bench.cu: the GPU model
#                      at Llama-2-7B's shapes, fp16 against SpQR/GPTQ; links libspqr.a like the model test)

NVCC      ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc),nvcc)
CUDA_ARCH ?= -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
NVFLAGS   ?= -O3 -std=c++17 $(CUDA_ARCH) --threads 2 -Xcompiler -Wall,-Wno-unused-function -Iinclude -Isrc -Ibench/cuda
CUDA_LIBS ?= -lcublas
CUDA_BUILD := $(BUILD)/cuda
CUDA_HOST_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -Iinclude -Isrc -Ibench/cuda

CU_SRC      := $(sort $(wildcard src/cuda/*.cu))
CU_HDR      := $(wildcard src/cuda/*.h src/cuda/*.cuh bench/cuda/*.h) src/format/qmatrix.h src/format/format.h src/core/core.h include/spqr.h src/model/model_internal.h
CU_LIB_OBJ  := $(CU_SRC:%.cu=$(CUDA_BUILD)/%.o)
# host C code the lab and tests need: the reference decoder, the tile layout (the act8 reference), core helpers,
# the synthetic matrices (no BLAS)
CU_HOST_SRC := src/format/qmatrix.c src/core/core.c src/cuda/mma_layout.c src/cuda/stream_layout.c src/kernels/qtiles.c bench/cuda/synth.c
CU_HOST_OBJ := $(CU_HOST_SRC:%.c=$(CUDA_BUILD)/host/%.o)
CU_ALL_SRC  := $(CU_SRC) $(sort $(wildcard bench/cuda/*.cu tests/cuda/*.cu))
# host libraries of the model test (libspqr.a's needs); override with static archives to run the
# binary on a machine without them, e.g. CUDA_HOST_LIBS="/usr/lib/x86_64-linux-gnu/liblapacke.a ..."
CUDA_HOST_LIBS ?= -llapacke -lopenblas -lnettle -lz -lpthread

.PHONY: cuda cuda-check cuda-test cuda-lab cuda-model-test cuda-decode-bench
ifeq ($(CUDA),1)
all: cuda
endif

cuda: $(CUDA_BUILD)/spqr-cuda-lab $(CUDA_BUILD)/spqr-cuda-test

$(CUDA_BUILD)/%.o: %.cu $(CU_HDR)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVFLAGS) -c $< -o $@

$(CUDA_BUILD)/host/%.o: %.c $(CU_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CUDA_HOST_CFLAGS) -c $< -o $@

$(CUDA_BUILD)/spqr-cuda-lab: $(CUDA_BUILD)/bench/cuda/lab.o $(CU_LIB_OBJ) $(CU_HOST_OBJ)
	$(NVCC) $(CUDA_ARCH) $^ -o $@ $(CUDA_LIBS) -lm

$(CUDA_BUILD)/spqr-cuda-test: $(CUDA_BUILD)/tests/cuda/test_cuda.o $(CU_LIB_OBJ) $(CU_HOST_OBJ)
	$(NVCC) $(CUDA_ARCH) $^ -o $@ $(CUDA_LIBS) -lm

$(CUDA_BUILD)/spqr-cuda-model-test: $(CUDA_BUILD)/tests/cuda/test_model.o $(CU_LIB_OBJ) $(BUILD)/libspqr.a
	$(NVCC) $(CUDA_ARCH) $^ -o $@ $(CUDA_LIBS) $(CUDA_HOST_LIBS) -lm

cuda-model-test: $(CUDA_BUILD)/spqr-cuda-model-test

# The whole model at Llama-2-7B's shapes, fp16 against SpQR/GPTQ (synthetic weights): prefill and decode speed
$(CUDA_BUILD)/spqr-cuda-decode-bench: $(CUDA_BUILD)/bench/cuda/decode_bench.o $(CU_LIB_OBJ) $(CUDA_BUILD)/host/bench/cuda/synth.o $(BUILD)/libspqr.a
	$(NVCC) $(CUDA_ARCH) $^ -o $@ $(CUDA_LIBS) $(CUDA_HOST_LIBS) -lm

cuda-decode-bench: $(CUDA_BUILD)/spqr-cuda-decode-bench

# Every .cu compiles (objects only: no GPU and no link needed).
cuda-check: $(CU_ALL_SRC:%.cu=$(CUDA_BUILD)/%.o)
	@echo "cuda-check: $(words $(CU_ALL_SRC)) CUDA sources compile"

cuda-test: $(CUDA_BUILD)/spqr-cuda-test
	$(CUDA_BUILD)/spqr-cuda-test

cuda-lab: $(CUDA_BUILD)/spqr-cuda-lab
	$(CUDA_BUILD)/spqr-cuda-lab --csv $(CUDA_BUILD)/lab.csv

# ---- GPU quantization (src/cuda/quant_cuda.*): cuSOLVER; its test against the CPU quantizer and its benchmark ----
#   make cuda-quant        builds build/cuda/spqr-quant-test and build/cuda/spqr-quant-bench (static BLAS/LAPACK: they run
#                          where only the CUDA libraries are installed)
#   make cuda-quant-test   runs the test (SKIPPED, exit 0, without a GPU)
# quant_cuda.cu is picked up by CU_SRC, so every CUDA binary links cuSOLVER; it is compiled without FMA contraction so
# that its float arithmetic rounds as gptq.c's does.
CUDA_LIBS += -lcusolver
$(CUDA_BUILD)/src/cuda/quant_cuda.o: NVFLAGS += -fmad=false
$(CUDA_BUILD)/tests/cuda/test_quant_cuda.o $(CUDA_BUILD)/bench/cuda/quant_bench.o: NVFLAGS += -I/usr/include/x86_64-linux-gnu/openblas-pthread
QC_LIBSPQR ?= $(BUILD)/libspqr.a
QC_STATIC_LIBS ?= /usr/lib/x86_64-linux-gnu/liblapacke.a /usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.a \
  $(shell $(CC) -print-file-name=libgfortran.a) $(shell $(CC) -print-file-name=libquadmath.a) \
  /usr/lib/x86_64-linux-gnu/libnettle.a /usr/lib/x86_64-linux-gnu/libz.a
.PHONY: cuda-quant cuda-quant-test
cuda-quant: $(CUDA_BUILD)/spqr-quant-test $(CUDA_BUILD)/spqr-quant-bench

$(CUDA_BUILD)/spqr-quant-test: $(CUDA_BUILD)/tests/cuda/test_quant_cuda.o $(CUDA_BUILD)/src/cuda/quant_cuda.o $(QC_LIBSPQR)
	$(NVCC) $(CUDA_ARCH) $^ -o $@ -lcublas -lcusolver $(QC_STATIC_LIBS) -lm -lpthread

$(CUDA_BUILD)/spqr-quant-bench: $(CUDA_BUILD)/bench/cuda/quant_bench.o $(CUDA_BUILD)/src/cuda/quant_cuda.o $(QC_LIBSPQR)
	$(NVCC) $(CUDA_ARCH) $^ -o $@ -lcublas -lcusolver $(QC_STATIC_LIBS) -lm -lpthread

cuda-quant-test: $(CUDA_BUILD)/spqr-quant-test
	$(CUDA_BUILD)/spqr-quant-test

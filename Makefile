# spqr — build with `make`; `make test` runs the test suite normally and under ASan/UBSan.
# Debian packages needed: libopenblas-dev liblapacke-dev zlib1g-dev nettle-dev clang (scripts/deps.sh installs them).

CC      ?= cc
ifeq ($(CUDA),1)
BUILD   ?= build-cuda
endif
BUILD   ?= build
ifeq ($(shell uname -m),x86_64)
OPT     ?= -O2 -march=x86-64-v2
else
OPT     ?= -O2
endif
CFLAGS  ?= $(OPT) -g
WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
CPPFLAGS += -Iinclude -Isrc -I/usr/include/x86_64-linux-gnu/openblas-pthread
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) -pthread
LDLIBS  = -llapacke -lopenblas -lnettle -lz -lm -pthread
# make CUDA=1: the same library and tools with the GPU paths (--gpu) compiled in, into build-cuda/
ifeq ($(CUDA),1)
CUDA_HOME ?= /usr/local/cuda
CPPFLAGS += -DSPQR_CUDA
LDLIBS  += -L$(CUDA_HOME)/lib64 -lcublas -lcusolver -lcudart -lstdc++
endif

LIB_SRC  := $(shell find src -name '*.c' | sort)
ifneq ($(shell uname -m),x86_64)
LIB_SRC  := $(filter-out src/kernels/x86/%,$(LIB_SRC))
endif
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

.PHONY: all deps test test-fast test-asan test-neon test-cuda-build demo clean
all: deps $(BUILD)/spqr $(BUILD)/spqr-test

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c $(wildcard include/*.h) $(shell find src tests -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) $(ISA) -c $< -o $@

# Per-ISA kernels: each file gets its own target flags; the dispatcher checks the CPU at run time.
$(BUILD)/src/kernels/x86/qgemv_avx2.o: ISA = -mavx2 -mfma -mf16c
$(BUILD)/src/kernels/x86/qgemv_avx512.o: ISA = -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vbmi -mavx512vnni
# The fixed-order products (kernels/ordered.h): fma only where the code says so (contraction off).
$(BUILD)/src/kernels/generic/ordered.o: ISA = -ffp-contract=off
$(BUILD)/src/kernels/x86/ordered_avx2.o: ISA = -mavx2 -mfma -ffp-contract=off
$(BUILD)/src/kernels/x86/ordered_avx512.o: ISA = -mavx2 -mavx512f -ffp-contract=off

$(BUILD)/libspqr.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/spqr: $(BUILD)/tools/spqr.o $(BUILD)/libspqr.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

# The decode kernels alone on a .spqr file's matrices (bench/kernel_bench.c).
$(BUILD)/kernel-bench: $(BUILD)/bench/kernel_bench.o $(BUILD)/libspqr.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/spqr-test: $(TEST_OBJ) $(BUILD)/libspqr.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

# The whole suite: the NEON kernels cross-compiled for AArch64 and checked under qemu-user, every
# test under AddressSanitizer + UBSan, then every test in the normal build (its closing line last).
test: all
	$(MAKE) --no-print-directory test-neon
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-cuda-build
	$(BUILD)/spqr-test

# The CUDA sources compile wherever nvcc is (CI has it, no GPU): cuda-check (cuda.mk) builds them
# without linking; the GPU tests themselves run with `make CUDA=1 cuda-test` on a GPU machine.
test-cuda-build:
	@if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then $(MAKE) --no-print-directory cuda-check; \
	 else echo "nvcc not found: the CUDA sources were not compiled"; fi

test-fast: all
	$(BUILD)/spqr-test

test-asan:
	$(MAKE) --no-print-directory BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/spqr-test build-asan/spqr
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/spqr-test

# NEON: the kernels and their random-matrix suite only (no BLAS for AArch64 needed), static.
NEON_SRC := src/core/core.c src/format/qmatrix.c src/kernels/cpu.c src/kernels/generic/qgemv.c src/kernels/qtiles.c \
            src/kernels/arm/qgemv_neon.c src/kernels/generic/ordered.c src/core/pool.c src/cuda/mma_layout.c src/cuda/stream_layout.c tests/test_kernels_random.c tests/main.c
test-neon: deps
	@mkdir -p $(BUILD)
	aarch64-linux-gnu-gcc -std=c11 -D_GNU_SOURCE -DSPQR_TESTS_KERNELS_ONLY $(WARN) -O2 -static -Iinclude -Isrc $(NEON_SRC) \
	  -o $(BUILD)/spqr-test-neon -lm -pthread
	qemu-aarch64 $(BUILD)/spqr-test-neon

# The main job on the default inputs (see README): compress evalmodel with SpQR (a short calibration,
# 16 x 2048 tokens) and compare its WikiText-2 perplexity with fp32 on the first 8 chunks; then
# generate from stories260K quantized the same way.
DEMO ?= /tmp/spqr-demo
CALIB := ../shared/text/c4-train-sample.txt,../shared/text/wikipedia-sample.txt
demo: all
	@mkdir -p $(DEMO)
	$(BUILD)/spqr quantize ../shared/models/evalmodel -o $(DEMO)/evalmodel-spqr-w4.spqr --calib $(CALIB) --nsamples 16
	$(BUILD)/spqr ppl ../shared/models/evalmodel --text ../shared/text/wikitext2-test.txt --max-chunks 8
	$(BUILD)/spqr ppl $(DEMO)/evalmodel-spqr-w4.spqr --text ../shared/text/wikitext2-test.txt --max-chunks 8
	$(BUILD)/spqr quantize ../shared/models/stories260K/stories260K.bin -o $(DEMO)/stories260K-spqr-w4.spqr --calib $(CALIB) --nsamples 32 --seqlen 256
	$(BUILD)/spqr run $(DEMO)/stories260K-spqr-w4.spqr -p "Once upon a time" -n 64 --seed 1

clean:
	rm -rf build build-asan build-cuda

-include cuda.mk
ifeq ($(CUDA),1)
$(BUILD)/spqr $(BUILD)/spqr-test: $(CU_LIB_OBJ)
endif

# spqr — build with `make`; `make test` runs the test suite normally and under ASan/UBSan.
# Debian packages needed: libopenblas-dev liblapacke-dev zlib1g-dev clang (scripts/deps.sh installs them).

CC      ?= cc
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

LIB_SRC  := $(shell find src -name '*.c' | sort)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(sort $(wildcard tests/*.c))
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)

.PHONY: all deps test test-fast test-asan demo clean
all: deps $(BUILD)/spqr $(BUILD)/spqr-test

deps:
	@scripts/deps.sh

$(BUILD)/%.o: %.c $(wildcard include/*.h) $(shell find src tests -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libspqr.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/spqr: $(BUILD)/tools/spqr.o $(BUILD)/libspqr.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/spqr-test: $(TEST_OBJ) $(BUILD)/libspqr.a
	$(CC) $(ALL_CFLAGS) $^ -o $@ $(LDLIBS)

# The whole suite: a normal build, then the same tests under AddressSanitizer + UBSan.
test: all
	$(BUILD)/spqr-test
	$(MAKE) --no-print-directory test-asan

test-fast: all
	$(BUILD)/spqr-test

test-asan:
	$(MAKE) --no-print-directory BUILD=build-asan CC=clang \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  build-asan/spqr-test build-asan/spqr
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 build-asan/spqr-test

# The main job on the default inputs (see README).
demo: all
	$(BUILD)/spqr run ../shared/models/stories260K/stories260K.bin -p "Once upon a time" -n 64 --seed 1
	$(BUILD)/spqr ppl ../shared/models/evalmodel --text ../shared/text/wikitext2-test.txt --ctx 2048 --max-chunks 8

clean:
	rm -rf build build-asan

#!/bin/sh
# run_quant3.sh STEP — GPU quantization with the fixed-order Hessians and block update (kernels/ordered.h,
# k_ordered): the GPU quantizer's test, the 7B-shaped benchmark, and evalmodel's whole pipeline with --gpu
# against the CPU pipeline on the same machine (same binary, same host kernels for the calibration passes).
# evalmodel's two shards (96 MB) exceed one call's 64 MiB, so three calls on one warm machine:
#   1: carry build/dev/q1 = spqr (make CUDA=1, host libraries static), spqr-quant-test and spqr-quant-bench
#      (make build/…/cuda/spqr-quant-{test,bench}), each stripped and xz-compressed, evalmodel's json files
#      and first shard; unpacks into /tmp/q, runs the test and `spqr-quant-bench 7b` with the host's and
#      with cuSOLVER's Cholesky (quant-test.log, quant-7b.log, quant-7b-devchol.log).
#   2: carry build/dev/q2 = the second shard, tokenizer.json, c4-train-sample.txt, wikipedia-sample.txt,
#      wikitext2-test.txt; quantizes with --gpu (q-gpu.log, the file's SHA-256) and measures its
#      perplexity on the GPU (ppl-gpu.log).
#   3: quantizes on the CPU (q-cpu.log, SHA-256), compares the two files byte for byte. (On a fresh machine:
#      step 1 with NO_TEST=1, then step 3 carrying build/dev/q2.)
# Quantization: SpQR w3 β1 = β2 = 16, τ = 0.3, 4-bit head, 128 × 2048 calibration tokens (NSAMPLES=n: n × 2048;
# steps 2 and 3 take ~7 min each at 128 on a 16-core host, most of it the calibration passes), seed 0, 16 threads.
set -u
OUT=${OUT:-build/cuda/out}
Q=/tmp/q
mkdir -p "$OUT" "$Q/em"
L="$OUT/q$1.log"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,memory.total --format=csv > "$L" 2>&1
QARGS="--calib $Q/c4-train-sample.txt,$Q/wikipedia-sample.txt --nsamples ${NSAMPLES:-128} --seqlen 2048 --seed 0 --method spqr --wbits 3 --outlier-threshold 0.3 --head-bits 4 -t 16 --json"
timed() { name=$1; shift; t0=$(date +%s.%N); "$@" > "$OUT/$name.log" 2> "$OUT/$name.err"; rc=$?; t1=$(date +%s.%N)
  echo "== $name rc=$rc wall=$(awk "BEGIN{print $t1 - $t0}")s: $*" >> "$L"; tail -2 "$OUT/$name.err" >> "$L"; tail -c 1500 "$OUT/$name.log" >> "$L"; echo >> "$L"; }
case "$1" in
1)
    D=build/dev/q1
    for f in "$D"/*.xz; do xz -dc "$f" > "$Q/$(basename "$f" .xz)"; done
    chmod +x "$Q"/spqr "$Q"/spqr-quant-*
    cp "$D"/*.json "$D"/*.safetensors "$Q/em/"
    [ "${NO_TEST:-0}" = 1 ] && { cat "$L"; exit 0; } # unpack only (a fresh machine before step 3)
    timed quant-test timeout 240 "$Q/spqr-quant-test"
    grep -E "passed|FAIL|identical|DIFFERENT|hessian" "$OUT/quant-test.log" >> "$L"
    timed quant-7b timeout 280 "$Q/spqr-quant-bench" 7b
    timed quant-7b-devchol timeout 180 "$Q/spqr-quant-bench" 7b --device-chol
    ;;
2)
    cp build/dev/q2/*.safetensors build/dev/q2/tokenizer.json "$Q/em/"
    cp build/dev/q2/*.txt "$Q"/
    timed q-gpu timeout 420 "$Q/spqr" quantize "$Q/em" -o "$Q/gpu.spqr" --gpu $QARGS
    sha256sum "$Q/gpu.spqr" >> "$L"
    timed ppl-gpu timeout 150 "$Q/spqr" ppl "$Q/gpu.spqr" --text "$Q/wikitext2-test.txt" --gpu --json
    ;;
3)
    [ -d build/dev/q2 ] && cp build/dev/q2/*.safetensors build/dev/q2/tokenizer.json "$Q/em/" && cp build/dev/q2/*.txt "$Q"/
    timed q-cpu timeout 560 "$Q/spqr" quantize "$Q/em" -o "$Q/cpu.spqr" $QARGS
    sha256sum "$Q/cpu.spqr" "$Q/gpu.spqr" >> "$L"
    cmp "$Q/cpu.spqr" "$Q/gpu.spqr" >> "$L" 2>&1 && echo "files identical" >> "$L"
    ;;
esac
cat "$L"

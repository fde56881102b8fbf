#!/bin/sh
# The whole-model GPU run of docs/RESULTS.md: GPU perplexity and speed of evalmodel in fp16 and of
# SpQR files quantized on the GPU, from the command line (`spqr ... --gpu`).
# It needs two device calls, because one carries at most 64 MiB:
#   1. carry .dev/g/c1 = an xz-compressed `spqr` built with `make CUDA=1` (host libraries linked
#      statically), the three text files and evalmodel's json/tokenizer files and first shard, and run
#      `cp -r .dev/g/c1 /tmp/g1` (outside the tree, so it survives the next call);
#   2. carry .dev/g/c2 = the second shard and this script, and run `sh .dev/g/c2/run.sh`.
set -u
G=/tmp/g1
C2=$PWD/.dev/g/c2
cd /tmp
xz -d -c $G/spqr.xz > /tmp/spqr && chmod +x /tmp/spqr
mkdir -p em && ln -sf $G/*.json $G/model-00001-of-00002.safetensors $C2/model-00002-of-00002.safetensors em/
LOG=$OUT/log.txt
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv >> $LOG
CAL=$G/c4-train-sample.txt,$G/wikipedia-sample.txt
W=$G/wikitext2-test.txt
run() { name=$1; shift; t0=$(date +%s.%N); "$@" > /tmp/$name.out 2> /tmp/$name.err; rc=$?; t1=$(date +%s.%N);
  echo "== $name rc=$rc wall=$(awk "BEGIN{print $t1 - $t0}")s: $*" >> $LOG; tail -3 /tmp/$name.err >> $LOG; tail -1 /tmp/$name.out | cut -c1-1500 >> $LOG; }
run ppl_f16_gpu /tmp/spqr ppl em --text $W --gpu --json
run ppl8_f16_gpu /tmp/spqr ppl em --text $W --gpu --max-chunks 8 --json
run ppl8_f16_cpu /tmp/spqr ppl em --text $W --max-chunks 8 --json -t 16
run q_w3h4_gpu /tmp/spqr quantize em -o w3h4.spqr --gpu --calib $CAL --nsamples 128 --seqlen 2048 --seed 0 --wbits 3 --outlier-threshold 0.3 --head-bits 4 -t 16
run ppl_w3h4_gpu /tmp/spqr ppl w3h4.spqr --text $W --gpu --json
run ppl8_w3h4_gpu /tmp/spqr ppl w3h4.spqr --text $W --gpu --max-chunks 8 --json
run ppl8_w3h4_cpu /tmp/spqr ppl w3h4.spqr --text $W --max-chunks 8 --json -t 16
run q_w4_gpu /tmp/spqr quantize em -o w4.spqr --gpu --calib $CAL --nsamples 16 --seqlen 2048 --seed 0 -t 16
run bench_f16 /tmp/spqr bench em --gpu -p 512 -n 128 -r 5 --json
run bench_w3h4 /tmp/spqr bench w3h4.spqr --gpu -p 512 -n 128 -r 5 --json
run bench_w4 /tmp/spqr bench w4.spqr --gpu -p 512 -n 128 -r 5 --json
run bench_w3h4_f16 /tmp/spqr bench w3h4.spqr --gpu-f16 -p 512 -n 128 -r 5 --json
cp /tmp/q_w3h4_gpu.err $OUT/q_w3h4_gpu.err
cat $LOG

#!/bin/sh
# Side-by-side decode/prefill speed of spqr and llama.cpp on evalmodel, same machine, same threads.
#
#   bench/llamacpp/compare.sh LLAMA_CPP_DIR THREADS SPQR_FILE...
#
# LLAMA_CPP_DIR: a llama.cpp checkout built beside the project (never committed), e.g.
#   cmake -S $D -B $D/build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF
#   cmake --build $D/build -j --target llama-bench llama-quantize
# evalmodel is written as an F32 GGUF by hf_to_gguf.py (needs python3-numpy, python3-sentencepiece)
# and quantized by llama-quantize to F16, Q4_K_M and Q3_K_M under $WORK (default /tmp/spqr-llamacpp).
# Every model then runs llama-bench and `spqr bench` with -p 512 -n 128 -r 3; one line per model.
# SPQR_FLAGS adds options to `spqr bench` (e.g. SPQR_FLAGS=--act8); REPS sets -r (default 3).
set -eu
LL=$1 T=$2
shift 2
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SPQR_SHARED:-$ROOT/../shared}
WORK=${WORK:-/tmp/spqr-llamacpp}
mkdir -p "$WORK"
[ -f "$WORK/evalmodel-f32.gguf" ] ||
    /usr/bin/python3 "$HERE/hf_to_gguf.py" "$SHARED/models/evalmodel" "$WORK/evalmodel-f32.gguf" \
        --gguf-py "$LL/gguf-py" --vocab "$SHARED/models/llama2-tokenizer/vocab-only.gguf"
for q in F16 Q4_K_M Q3_K_M; do
    [ -f "$WORK/evalmodel-$q.gguf" ] || "$LL/build/bin/llama-quantize" "$WORK/evalmodel-f32.gguf" "$WORK/evalmodel-$q.gguf" $q >/dev/null 2>&1
done
echo "tool      model                                  threads  prefill512 tok/s   decode128 tok/s"
for q in F16 Q4_K_M Q3_K_M; do
    "$LL/build/bin/llama-bench" -m "$WORK/evalmodel-$q.gguf" -t "$T" -p 512 -n 128 -r "${REPS:-3}" -o jsonl 2>/dev/null |
        /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
pp = next(r for r in rows if r["n_prompt"] > 0); tg = next(r for r in rows if r["n_gen"] > 0)
print("llama.cpp %-38s %7d  %8.1f ± %-6.1f  %8.1f ± %.1f" % (sys.argv[1], tg["n_threads"], pp["avg_ts"], pp["stddev_ts"], tg["avg_ts"], tg["stddev_ts"]))
' "$q ($(du -m "$WORK/evalmodel-$q.gguf" | cut -f1) MB)"
done
for f in "$@"; do
    # shellcheck disable=SC2086
    "$ROOT/build/spqr" bench "$f" -t "$T" -p 512 -n 128 -r "${REPS:-3}" ${SPQR_FLAGS:-} --json | tail -1 |
        /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("spqr      %-38s %7d  %8.1f ± %-6.1f  %8.1f ± %.1f   (%.1f MB/token, roofline %.2f, %s)" % (sys.argv[1][-38:], r["threads"], r["prefill_tok_s"], r["prefill_tok_s_std"], r["decode_tok_s"], r["decode_tok_s_std"], r["weight_bytes_per_token"] / 1e6, r["roofline_fraction"], r["kernels"]))
' "$f"
done

#!/bin/sh
# Interleaved side-by-side speed of llama.cpp and spqr on a noisy machine: ROUNDS times, one
# llama-bench run per GGUF then one `spqr bench` run per .spqr (each -p 512 -n 128 -r REPS), in turn,
# so slow and fast phases of the machine hit every model alike; prints each model's median over the
# rounds of the per-run means (prefill and decode tok/s) and the spread.
#
#   bench/llamacpp/interleave.sh LLAMA_CPP_DIR THREADS "GGUF..." "SPQR_FILE[:FLAGS]..."
#
# GGUF files as compare.sh writes them ($WORK/evalmodel-Q4_K_M.gguf, ...). A .spqr entry may carry
# spqr bench flags after a colon: /tmp/m.spqr:--act8. ROUNDS (default 7), REPS (default 3).
set -eu
LL=$1 T=$2 GGUFS=$3 SPQRS=$4
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
R=${ROUNDS:-7}
LOG=$(mktemp)
i=0
while [ $i -lt "$R" ]; do
    for g in $GGUFS; do
        "$LL/build/bin/llama-bench" -m "$g" -t "$T" -p 512 -n 128 -r "${REPS:-3}" -o jsonl 2>/dev/null | /usr/bin/python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
pp = next(r for r in rows if r["n_prompt"] > 0); tg = next(r for r in rows if r["n_gen"] > 0)
print("llama.cpp:%s %.2f %.2f" % (sys.argv[1], pp["avg_ts"], tg["avg_ts"]))' "$(basename "$g")" >> "$LOG"
    done
    for s in $SPQRS; do
        f=${s%%:*}; fl=""; [ "$f" != "$s" ] && fl=${s#*:}
        # shellcheck disable=SC2086
        "$ROOT/build/spqr" bench "$f" -t "$T" -p 512 -n 128 -r "${REPS:-3}" $fl --json | tail -1 | /usr/bin/python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
print("spqr:%s%s %.2f %.2f" % (sys.argv[1], sys.argv[2], r["prefill_tok_s"], r["decode_tok_s"]))' "$(basename "$f")" "${fl:+($fl)}" >> "$LOG"
    done
    i=$((i + 1))
done
/usr/bin/python3 - "$LOG" "$T" "$R" <<'EOF'
import statistics as st, sys
d = {}
for l in open(sys.argv[1]):
    k, p, t = l.rsplit(None, 2)
    d.setdefault(k, ([], []))[0].append(float(p)); d[k][1].append(float(t))
print("threads %s, %s rounds; median of per-run means (min..max)" % (sys.argv[2], sys.argv[3]))
print("%-48s %24s %24s" % ("model", "prefill512 tok/s", "decode128 tok/s"))
for k, (p, t) in d.items():
    print("%-48s %8.1f (%6.1f..%6.1f) %8.1f (%6.1f..%6.1f)" % (k, st.median(p), min(p), max(p), st.median(t), min(t), max(t)))
EOF
rm -f "$LOG"

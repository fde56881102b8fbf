# device.sh — sourced by the device scripts (run_v6.sh … run_v9.sh).
#
# unpack_carried D B   decompresses every D/*.xz carried to the device machine into B (xz, or Python's
#                      lzma where the machine has no xz) and makes the spqr-cuda-* programs among them
#                      executable.
# device_start NAME    for run_vNAME.sh: D=build/dev/vNAME (the carried folder), B=/tmp/vNAME (unpacked),
#                      L=$OUT/vNAME.log (the summary, started with the GPU's name, driver and clocks),
#                      creates $OUT and B, unpacks D into B, and defines `stamp WHAT` (a timed line in L).
# run_models           the GPU model against the CPU for each MODEL_SPECS entry "FILE:ARGS" (FILE in B;
#                      missing ones skipped) on wikitext2-test.txt (from B, else D): model.log, its
#                      verdicts appended to L. MODEL_TIMEOUT per model (default 60 s).
# run_tests PATTERN N  the GPU tests (TEST_TIMEOUT, default 200 s; NO_TEST=1 skips): test.log, its FAIL lines
#                      and its last N lines matching PATTERN or "passed" appended to L.
# run_lab FLAG KERNELS the lab with FLAG and LAB_ARGS (LAB_TIMEOUT, default 300 s; NO_LAB=1 skips): lab.log,
#                      lab.csv, its SpQR w3 β16/16 and cuBLAS rows of the KERNELS pattern appended to L.
# sass_hist NAME:SYM…  the SASS of each kernel SYM (mangled) of $B/spqr-cuda-lab into sass-NAME.txt, its
#                      instruction count and top opcodes appended to L.
# ncu_kernels FLAGS NAME:SYM…  Nsight Compute (clocks left alone) on the first launch of each kernel SYM in
#                      `spqr-cuda-lab FLAGS`: ncu-NAME.txt, its headline metrics appended to L (NO_NCU=1 skips;
#                      NCU_TIMEOUT per kernel, default 90 s).
unpack_carried() {
    for f in "$1"/*.xz; do
        [ -f "$f" ] || continue
        o="$2/$(basename "$f" .xz)"
        if command -v xz >/dev/null; then xz -dc "$f" > "$o"
        else python3 -c "import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "$o"; fi
    done
    chmod +x "$2"/spqr-cuda-* 2>/dev/null || true
}

device_start() {
    OUT=${OUT:-build/cuda/out}
    D=build/dev/v$1
    B=/tmp/v$1
    mkdir -p "$OUT" "$B"
    L="$OUT/v$1.log"
    unpack_carried "$D" "$B"
    nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,memory.total --format=csv > "$L" 2>&1
    t0=$(date +%s)
    stamp() { echo "--- $1 at +$(( $(date +%s) - t0 ))s" >> "$L"; }
}

run_models() {
    stamp model
    for spec in ${MODEL_SPECS:-"w3h4.spqr:" "w3h4.spqr:--dense16" "w4h4.spqr:"}; do
        M=$B/${spec%%:*}; A=${spec#*:}
        [ -f "$M" ] || continue
        echo "=== $M $A" >> "$OUT/model.log"
        T=$B/wikitext2-test.txt; [ -f "$T" ] || T=$D/wikitext2-test.txt
        timeout ${MODEL_TIMEOUT:-60} $B/spqr-cuda-model-test "$M" "$T" --ctx 2048 --chunks 4 --decode 256 --threads 16 $A >> "$OUT/model.log" 2>&1
        echo "rc=$?" >> "$OUT/model.log"
    done
    [ -f "$OUT/model.log" ] && grep -E "===|PASS|FAIL|decode|rc=" "$OUT/model.log" >> "$L"
}

sass_hist() {
    stamp sass
    OBJ=$(command -v cuobjdump || echo /usr/local/cuda/bin/cuobjdump)
    for k in "$@"; do
        $OBJ -sass -fun "${k#*:}" $B/spqr-cuda-lab > "$OUT/sass-${k%%:*}.txt" 2>&1
        echo "sass ${k%%:*}: $(grep -cE '^\s+/\*[0-9a-f]{4}\*/' "$OUT/sass-${k%%:*}.txt") instructions; top opcodes:" >> "$L"
        grep -E '^\s+/\*[0-9a-f]{4}\*/' "$OUT/sass-${k%%:*}.txt" | sed -E 's/^\s+\/\*[0-9a-f]+\*\/\s+(@!?U?P[0-9T] )?//; s/[ ;].*//' | sort | uniq -c | sort -rn | head -${SASS_TOP:-16} | tr '\n' ' ' >> "$L"
        echo >> "$L"
    done
}

ncu_kernels() {
    stamp ncu
    flags=$1; shift
    NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
    [ -x "$NCU" ] && [ "${NO_NCU:-0}" = 0 ] || return 0
    for k in "$@"; do
        timeout ${NCU_TIMEOUT:-90} $NCU --clock-control none --kernel-name-base mangled --kernel-name "${k#*:}" --launch-count 1 --section SpeedOfLight \
            --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats --section InstructionStats \
            --metrics smsp__inst_executed.sum,smsp__sass_inst_executed_op_shared_ld.sum \
            $B/spqr-cuda-lab $flags > "$OUT/ncu-${k%%:*}.txt" 2>&1
        echo "ncu ${k%%:*}:" >> "$L"
        grep -E "Duration|DRAM Throughput|Registers Per|Achieved Occupancy|Compute \(SM\)|Issued Warp|No Eligible|inst_executed|Executed Ipc|SM Active|Stall" "$OUT/ncu-${k%%:*}.txt" | head -20 >> "$L"
    done
}

run_tests() {
    [ "${NO_TEST:-0}" = 0 ] || return 0
    stamp test
    timeout ${TEST_TIMEOUT:-200} $B/spqr-cuda-test > "$OUT/test.log" 2>&1; echo "test rc=$?" >> "$L"
    grep -E "FAIL" "$OUT/test.log" | head -20 >> "$L"; grep -E "$1|passed" "$OUT/test.log" | tail -$2 >> "$L"
}

run_lab() {
    [ "${NO_LAB:-0}" = 0 ] || return 0
    stamp lab
    timeout ${LAB_TIMEOUT:-300} $B/spqr-cuda-lab $1 ${LAB_ARGS:-} --csv "$OUT/lab.csv" > "$OUT/lab.log" 2>&1; echo "lab rc=$?" >> "$L"
    grep -E "roofline|device|FAIL" "$OUT/lab.log" >> "$L"
    grep -E "cublas16|$2" "$OUT/lab.log" | grep -E "spqr-w3-b16-16|dense" >> "$L"
}

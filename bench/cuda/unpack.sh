# unpack.sh — sourced by the device scripts (run_v6.sh, run_v7.sh, run_v8.sh): unpack_carried D B
# decompresses every D/*.xz carried to the device machine into B (xz, or Python's lzma where the
# machine has no xz) and makes the spqr-cuda-* programs among them executable.
unpack_carried() {
    for f in "$1"/*.xz; do
        [ -f "$f" ] || continue
        o="$2/$(basename "$f" .xz)"
        if command -v xz >/dev/null; then xz -dc "$f" > "$o"
        else python3 -c "import lzma,sys,shutil; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2],'wb'))" "$f" "$o"; fi
    done
    chmod +x "$2"/spqr-cuda-* 2>/dev/null || true
}

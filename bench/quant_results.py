#!/usr/bin/env python3
"""Runs the quantization configurations of docs/RESULTS.md and prints its table.

    bench/quant_results.py --spqr build/spqr --model ../shared/models/evalmodel \
        --text ../shared/text --out /tmp/results --jobs 4 --threads 4 [--only NAME,...]

Each configuration is quantized with `spqr quantize ... --json` (calibration: c4-train-sample +
wikipedia-sample, 128 x 2048 tokens, seed 0), then evaluated with `spqr ppl OUT.spqr` on the whole
WikiText-2 test file (ctx 2048, gptq protocol). Configurations run `--jobs` at a time with
`--threads` threads each. Results go to OUT/<name>.{quant,ppl}.json and the table to stdout.
"""
import argparse, concurrent.futures as cf, json, os, subprocess, sys, time

CONFIGS = [  # name, label, quantize options (None: the fp32 model itself)
    ("fp32", "fp32", None),
    ("rtn_w4_g128", "RTN w4 g128", ["--method", "rtn", "--wbits", "4", "--groupsize", "128"]),
    ("gptq_w4_g128_ao", "GPTQ w4 g128 act-order", ["--method", "gptq", "--wbits", "4", "--groupsize", "128", "--act-order"]),
    ("rtn_w3_g128", "RTN w3 g128", ["--method", "rtn", "--wbits", "3", "--groupsize", "128"]),
    ("gptq_w3_g128", "GPTQ w3 g128", ["--method", "gptq", "--wbits", "3", "--groupsize", "128"]),
    ("spqr_w4", "SpQR w4 β1=β2=16 τ=0.2", ["--method", "spqr", "--wbits", "4"]),
    ("spqr_w3_tau", "SpQR w3 β1=β2=16 τ tuned to ~3.9 bits", None),  # τ filled in by --tau3
    ("spqr_w3_noout", "SpQR w3 β1=β2=16 no outliers", ["--method", "spqr", "--wbits", "3", "--outlier-threshold", "inf"]),
    ("spqr_w2", "SpQR w2 β1=β2=16 τ=0.2", ["--method", "spqr", "--wbits", "2"]),
    ("spqr_w2_noout", "SpQR w2 β1=β2=16 no outliers", ["--method", "spqr", "--wbits", "2", "--outlier-threshold", "inf"]),
]


def run(cmd, out_json):
    t = time.time()
    with open(out_json, "w") as f, open(out_json + ".log", "w") as log:
        r = subprocess.run(cmd, stdout=f, stderr=log)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}); see {out_json}.log")
    return time.time() - t


def load(path):
    """A finished result file, or None (absent, or still being written)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def job(a, name, opts):
    text = os.path.join(a.text, "wikitext2-test.txt")
    calib = ",".join(os.path.join(a.text, f) for f in ("c4-train-sample.txt", "wikipedia-sample.txt"))
    q = None
    model = a.model
    if opts is not None:
        model = os.path.join(a.out, name + ".spqr")
        q = [a.spqr, "quantize", a.model, "-o", model, "--calib", calib, "--nsamples", "128", "--seqlen", "2048",
             "--seed", "0", "-t", str(a.threads), "--json"] + opts
        run(q, os.path.join(a.out, name + ".quant.json"))
    p = [a.spqr, "ppl", model, "--text", text, "--ctx", "2048", "-t", str(a.threads), "--json"]
    run(p, os.path.join(a.out, name + ".ppl.json"))
    return name, q, p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spqr", default="build/spqr")
    ap.add_argument("--model", default="../shared/models/evalmodel")
    ap.add_argument("--text", default="../shared/text")
    ap.add_argument("--out", default="/tmp/spqr-results")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tau3", default="0.05", help="comma-separated τ values for the ~3.9-bit SpQR w3 row")
    ap.add_argument("--only", default="")
    ap.add_argument("--table-only", action="store_true", help="only print the table from existing results")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    configs = []
    for name, label, opts in CONFIGS:
        if name == "spqr_w3_tau":
            for tau in a.tau3.split(","):
                configs.append((f"spqr_w3_tau{tau}", f"SpQR w3 β1=β2=16 τ={tau}", ["--method", "spqr", "--wbits", "3", "--outlier-threshold", tau]))
        else:
            configs.append((name, label, opts))
    if a.only:
        keep = set(a.only.split(","))
        configs = [c for c in configs if c[0] in keep]
    cmds = {}
    if not a.table_only:
        with cf.ThreadPoolExecutor(a.jobs) as ex:
            futs = [ex.submit(job, a, n, o) for n, _, o in configs]
            for f in cf.as_completed(futs):
                name, q, p = f.result()
                cmds[name] = (q, p)
                print(f"done: {name}", file=sys.stderr, flush=True)
    fp = load(os.path.join(a.out, "fp32.ppl.json"))
    base = fp["ppl"] if fp else None
    print("| configuration | bits (paper) | bits (file) | file MB | ppl | ppl / fp32 | outliers | quant. s | threads |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, label, _ in configs:
        p = load(os.path.join(a.out, name + ".ppl.json"))
        if not p:
            continue
        q = load(os.path.join(a.out, name + ".quant.json"))
        if q:
            row = [f"{q['bits_paper']:.3f}", f"{q['bits_file']:.3f}", f"{q['file_bytes'] / 1e6:.1f}", f"{p['ppl']:.4f}",
                   f"{p['ppl'] / base:.4f}" if base else "-", f"{100 * q['outlier_share']:.3f}%", f"{q['seconds']:.0f}", str(q["threads"])]
        else:
            row = ["32", "32", "-", f"{p['ppl']:.4f}", "1.0000", "-", "-", "-"]
        print(f"| {label} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

/*
 * test_cuda.cu — the CUDA kernels (src/cuda) against the CPU reference decoder on random synthetic
 * matrices, ragged shapes included (rows / cols not multiples of the warp, packet or quad sizes).
 *   repack:  spqr_cuda_dequant_f16 (tiled layout when supported) vs spqr_qview_dequant_rows, per
 *            element within fp16 rounding (2^-10 relative + 1e-4 of the row's largest weight)
 *   matmul:  every algorithm at n in {1, 2, 3, 5, 8, 13, 64} vs W_ref · x in double, by
 *            ‖y − ref‖ / ‖ref‖: GENERIC (fp32 throughout) 1e-5; TILED (fp32 math, outliers as fp16
 *            deltas) 5e-4; DEQUANT and AUTO (fp16 weights into cuBLAS, fp32 accumulation) 1e-3.
 *            y is poisoned with NaN first: every element must be written.
 *   mma:     v7 (tensor cores; fp16 weights and activations, fp32 accumulation) 1e-3, each n twice
 *            (the K-slice counters must have been reset), and in whole passes of 24, 40 and 64
 *            (spqr_cuda_mma_matmul; spqr_cuda_matmul splits MMA calls into 16), the same on v11's blocks of 4 row tiles
 *            ("mma-wide", ctx->mma_wide; ragged row-tile groups included), by v12 at every n ("mma-deq",
 *            ctx->mma_deq = 1: dequantized to fp16 from the same layout, then cuBLAS; AUTO and "mma" use it
 *            above 16), and with fp32 x through spqr_cuda_matmul_f32
 *            on an upload of the MMA layout alone (2e-3: x is rounded to fp16 there, not in ref).
 *   fused:   v5 as dispatched (half tiles for n <= 2, programmatic dependent launch where a block
 *            fills its SM), on whole tiles ("fused-whole"), without PDL ("fused-nopdl") and with x
 *            prepared once per product by k_prep_x ("fused-prep"), 2e-4.
 *   gsum:    v8 (exact codes times fp16 x on the tensor cores, fp32 statistics; the reference uses the
 *            same fp16 x) 3e-4 (the fp16 outlier deltas), each n twice (the counters).
 *   act8:    v9 (8-bit activations) against the CPU's 8-bit-activation product (spqr_act8_quantize +
 *            spqr_qtiles_gemv_act8_ref on the same permuted x): equal up to summation order, 1e-5, at
 *            every n, fp16 x through spqr_cuda_matmul and fp32 x through spqr_cuda_matmul_f32 with
 *            spqr_cuda_ctx_set_act8 (n = 1; n = 2, 3, 5 must keep exact activations: 2e-4 against
 *            W·x, 2e-3 for n = 3, 5 on MMA), fp16 x also with x prepared by k_prep_x (ctx->xprep); and
 *            against W·x within 2e-2 (it is that product, with rounded activations).
 *   stream:  v10 (records streamed into shared memory, exact codes on the tensor cores, fp32 statistics;
 *            the reference uses the same fp16 x) 3e-4 (the fp16 outlier deltas), each n twice (the
 *            counters), also on 1 block (the stage ring wraps, outliers past the shared-memory capacity)
 *            and on 7 blocks (row tiles split between blocks), without PDL, with 8 and 16 consumer warps
 *            (16: one activation a pass), bit-identical on repeated
 *            calls, and with fp32 x (2e-3 against W·x: x is rounded to fp16).
 *   v6:      the split-K kernel (spqr_cuda_v6.cu) on the fused layout, 1, 4 and 8 warps per block, at every n
 *            above (fp16 x) and n in {1, 3, 5} (fp32 x), called twice per n (its chunk counters must reset),
 *            tolerance 2e-4 as FUSED.
 * Without a CUDA device it says SKIPPED on its first line and exits 0.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/spqr_cuda.h"
#include "cuda/spqr_cuda_internal.cuh"
#include "cuda/spqr_cuda_v6.cuh"
extern "C" {
#include "kernels/qtiles.h"
#include "synth.h"
}

static int n_pass, n_fail;

static void report(bool ok, const char *fmt, const char *what, double v, double tol) {
    if (ok) n_pass++;
    else n_fail++;
    if (!ok) printf("FAIL %s: %s = %.3e (tolerance %.1e)\n", fmt, what, v, tol);
}

/* ‖y − ref‖ / ‖ref‖ over n values in double; INFINITY when not finite (a NaN poison left in y). */
template <class T>
static double rel_l2(const float *y, const T *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        const double d = (double)y[i] - (double)ref[i];
        num += d * d;
        den += (double)ref[i] * (double)ref[i];
    }
    const double e = sqrt(num / (den > 0 ? den : 1));
    return isfinite(e) ? e : INFINITY;
}

static double as_double(float v) { return v; }
static double as_double(__half v) { return __half2float(v); }

/* W·x in double for n activations: W [rows][cols] row-major, x [n][cols]; result [n][rows]. */
template <class T>
static std::vector<double> w_times_x(const std::vector<float> &W, const T *x, int n, uint32_t rows, uint32_t cols) {
    std::vector<double> y((size_t)n * rows);
    for (int b = 0; b < n; b++)
        for (uint32_t r = 0; r < rows; r++) {
            double s = 0;
            for (uint32_t j = 0; j < cols; j++) s += (double)W[(size_t)r * cols + j] * as_double(x[(size_t)b * cols + j]);
            y[(size_t)b * rows + r] = s;
        }
    return y;
}

#define CUDA_OK(x)                                                                                          \
    do {                                                                                                    \
        cudaError_t e_ = (x);                                                                               \
        if (e_ != cudaSuccess) { printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); n_fail++; return; } \
    } while (0)

struct tcase { uint32_t kind, rows, cols, wbits, gs, qq_bits, qq_gs; double out; int perm; };

static void run_case(spqr_cuda_ctx *ctx, const tcase &tc, uint64_t seed) {
    char name[160];
    snprintf(name, sizeof name, "%s %ux%u w%u g%u q%u/%u out%.3f perm%d", tc.kind == SPQR_TK_SPQR ? "spqr" : "gptq", tc.rows, tc.cols,
             tc.wbits, tc.gs, tc.qq_bits, tc.qq_gs, tc.out, tc.perm);
    synth_params sp = {tc.kind, tc.rows, tc.cols, tc.wbits, tc.gs, tc.qq_bits, tc.qq_gs, tc.out, tc.perm, seed};
    synth_matrix sm;
    spqr_error er;
    if (synth_build(&sp, &sm, &er)) { printf("FAIL %s: synth: %s\n", name, er.msg); n_fail++; return; }
    const uint32_t rows = tc.rows, cols = tc.cols;
    std::vector<float> Wref((size_t)rows * cols), Wst((size_t)rows * cols);
    spqr_qview_dequant_rows(&sm.view, 0, rows, 1, Wref.data());
    spqr_qview_dequant_rows(&sm.view, 0, rows, 0, Wst.data());
    spqr_cuda_qmatrix *m;
    if (spqr_cuda_upload(&sm.view, &m, &er)) { printf("FAIL %s: upload: %s\n", name, er.msg); n_fail++; synth_free(&sm); return; }
    const int tiled = spqr_cuda_supports(m, SPQR_CUDA_TILED);
    printf("%s: tiled %s, %llu outliers\n", name, tiled ? "yes" : "no", (unsigned long long)sm.view.n_outliers);

    /* repack / dequantization check */
    {
        const int ld = spqr_cuda_dequant_ld(m);
        __half *wd;
        CUDA_OK(cudaMalloc(&wd, (size_t)rows * ld * 2));
        if (spqr_cuda_dequant_f16(ctx, m, wd, ld, &er)) { printf("FAIL %s: dequant: %s\n", name, er.msg); n_fail++; }
        CUDA_OK(cudaDeviceSynchronize());
        std::vector<__half> wh((size_t)rows * ld);
        CUDA_OK(cudaMemcpy(wh.data(), wd, wh.size() * 2, cudaMemcpyDeviceToHost));
        CUDA_OK(cudaFree(wd));
        double worst = 0;
        for (uint32_t r = 0; r < rows; r++) {
            double rmax = 0;
            for (uint32_t j = 0; j < cols; j++) rmax = fmax(rmax, fabs(Wst[(size_t)r * cols + j]));
            for (uint32_t j = 0; j < cols; j++) {
                double ref = Wst[(size_t)r * cols + j], got = __half2float(wh[(size_t)r * ld + j]);
                double ex = fabs(got - ref) / (ldexp(fabs(ref), -10) + 1e-4 * rmax + 1e-30);
                if (!(ex <= 1)) ex = isfinite(ex) ? ex : 1e30;
                worst = fmax(worst, ex);
            }
        }
        report(worst <= 1, name, "dequant error / tolerance", worst, 1);
    }
    /* products */
    const int ns[] = {1, 2, 3, 5, 8, 13, 64};
    const int NMAX = 64;
    std::vector<__half> xh((size_t)NMAX * cols);
    uint64_t rng = seed * 7 + 3;
    for (auto &v : xh) v = __float2half((float)(2 * synth_uniform(&rng) - 1));
    const std::vector<double> ref = w_times_x(Wref, xh.data(), NMAX, rows, cols);
    __half *xd;
    float *yd;
    CUDA_OK(cudaMalloc(&xd, xh.size() * 2));
    CUDA_OK(cudaMemcpy(xd, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
    CUDA_OK(cudaMalloc(&yd, (size_t)NMAX * rows * 4));
    std::vector<float> yh((size_t)NMAX * rows);
    const spqr_cuda_algo FUSED_WHOLE = (spqr_cuda_algo)104; /* test-local: FUSED with ctx->fused_mode = 1 */
    const spqr_cuda_algo FUSED_NOPDL = (spqr_cuda_algo)105; /* test-local: FUSED with ctx->pdl = 0 */
    const spqr_cuda_algo FUSED_PREP = (spqr_cuda_algo)106;  /* test-local: FUSED with ctx->xprep = 1 */
    /* test-local: STREAM on 1 block (a ring that wraps, every shared tile, outliers past the shared-memory
     * capacity read from global memory), on 7 blocks (tiles split between blocks), without PDL */
    const spqr_cuda_algo STREAM_G1 = (spqr_cuda_algo)107, STREAM_G7 = (spqr_cuda_algo)108, STREAM_NOPDL = (spqr_cuda_algo)109;
    const spqr_cuda_algo MMA_WIDE = (spqr_cuda_algo)112; /* test-local: MMA with ctx->mma_wide = 1 (v11) */
    const spqr_cuda_algo MMA_DEQ = (spqr_cuda_algo)113;  /* test-local: MMA with ctx->mma_deq = 1 (v12 at every n) */
    const spqr_cuda_algo STREAM_W8 = (spqr_cuda_algo)110, STREAM_W16 = (spqr_cuda_algo)111; /* 8 consumer warps (two blocks per SM), 16 (n = 1) */
    const struct { spqr_cuda_algo a; const char *name; double tol; } algs[] = {
        {SPQR_CUDA_TILED, "tiled", 5e-4}, {SPQR_CUDA_GENERIC, "generic", 1e-5}, {SPQR_CUDA_DEQUANT, "dequant", 1e-3}, {SPQR_CUDA_AUTO, "auto", 1e-3},
        {SPQR_CUDA_FUSED, "fused", 2e-4}, {FUSED_WHOLE, "fused-whole", 2e-4}, {FUSED_NOPDL, "fused-nopdl", 2e-4}, {FUSED_PREP, "fused-prep", 2e-4},
        {SPQR_CUDA_MMA, "mma", 1e-3}, {MMA_WIDE, "mma-wide", 1e-3}, {MMA_DEQ, "mma-deq", 1e-3},
        {SPQR_CUDA_GSUM, "gsum", 3e-4},
        {SPQR_CUDA_STREAM, "stream", 3e-4}, {STREAM_G1, "stream-g1", 3e-4}, {STREAM_G7, "stream-g7", 3e-4}, {STREAM_NOPDL, "stream-nopdl", 3e-4},
        {STREAM_W8, "stream-w8", 3e-4}, {STREAM_W16, "stream-w16", 3e-4}};
    const int fused = spqr_cuda_supports(m, SPQR_CUDA_FUSED), mma = spqr_cuda_supports(m, SPQR_CUDA_MMA), gsum = spqr_cuda_supports(m, SPQR_CUDA_GSUM);
    const int stream = spqr_cuda_supports(m, SPQR_CUDA_STREAM);
    printf("  layouts: fused %d, mma %d, gsum %d, stream %d\n", fused, mma, gsum, stream);
    for (const auto &al : algs) {
        if (al.a == SPQR_CUDA_TILED && !tiled) continue;
        if ((al.a == SPQR_CUDA_FUSED || al.a == FUSED_WHOLE || al.a == FUSED_NOPDL || al.a == FUSED_PREP) && !fused) continue;
        ctx->fused_mode = al.a == FUSED_WHOLE ? 1 : 0; /* v5 on whole column tiles instead of half tiles */
        const bool st_var = al.a == STREAM_G1 || al.a == STREAM_G7 || al.a == STREAM_NOPDL || al.a == STREAM_W8 || al.a == STREAM_W16;
        if ((al.a == SPQR_CUDA_STREAM || st_var) && !stream) continue;
        ctx->pdl = al.a != FUSED_NOPDL && al.a != STREAM_NOPDL; /* programmatic dependent launch (the default) or not */
        ctx->xprep = al.a == FUSED_PREP ? 1 : -1;      /* x prepared once per product by k_prep_x, or as dispatched */
        ctx->stream_grid = al.a == STREAM_G1 ? 1 : al.a == STREAM_G7 ? 7 : 0;
        ctx->stream_nw = al.a == STREAM_W8 ? 8 : al.a == STREAM_W16 ? 16 : 0;
        ctx->mma_wide = al.a == MMA_WIDE;
        ctx->mma_deq = al.a == MMA_DEQ ? 1 : -1;
        const spqr_cuda_algo algo = al.a == FUSED_WHOLE || al.a == FUSED_NOPDL || al.a == FUSED_PREP ? SPQR_CUDA_FUSED : st_var ? SPQR_CUDA_STREAM
                                    : al.a == MMA_WIDE || al.a == MMA_DEQ ? SPQR_CUDA_MMA : al.a;
        if (algo == SPQR_CUDA_MMA && !mma) continue;
        if (al.a == SPQR_CUDA_GSUM && !gsum) continue;
        double worst = 0;
        /* y poisoned, one call (spqr_cuda_matmul, or a whole MMA pass), checked against W·x */
        auto check = [&](int n, bool pass) {
            CUDA_OK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
            const spqr_status st = pass ? spqr_cuda_mma_matmul(ctx, m->mma, xd, 0, n, yd, &er) : spqr_cuda_matmul(ctx, m, algo, xd, n, yd, &er);
            if (st) { printf("FAIL %s %s%s n=%d: %s\n", name, al.name, pass ? " pass" : "", n, er.msg); n_fail++; return; }
            CUDA_OK(cudaDeviceSynchronize());
            CUDA_OK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
            const double e = rel_l2(yh.data(), ref.data(), (size_t)n * rows);
            char what[64];
            snprintf(what, sizeof what, "%s%s n=%d rel err", al.name, pass ? " pass" : "", n);
            report(e <= al.tol, name, what, e, al.tol);
            worst = fmax(worst, e);
        };
        for (int rep = 0; rep < (algo == SPQR_CUDA_MMA || al.a == SPQR_CUDA_GSUM || algo == SPQR_CUDA_STREAM ? 2 : 1); rep++)
            for (int n : ns) check(n, false);
        if (algo == SPQR_CUDA_MMA && al.a != MMA_DEQ) /* whole passes of 24, 40, 64 (spqr_cuda_matmul gives v7 16 at a time) */
            for (int n : {24, 40, 64}) check(n, true);
        printf("  %-8s max rel err %.2e (tol %.0e)\n", al.name, worst, al.tol);
    }
    ctx->fused_mode = 0;
    ctx->pdl = 1;
    ctx->xprep = -1;
    ctx->stream_grid = 0;
    ctx->stream_nw = 0;
    ctx->mma_wide = 0;
    ctx->mma_deq = -1;
    /* v10: bit-identical results from call to call (the shared tiles' pieces are added in block order);
     * fp32 x (rounded to fp16 in the kernel: 2e-3 against W·x) */
    if (stream) {
        std::vector<float> y1((size_t)8 * rows);
        bool same = true;
        for (int n : {1, 3, 8}) {
            for (int rep = 0; rep < 2; rep++) {
                if (spqr_cuda_matmul(ctx, m, SPQR_CUDA_STREAM, xd, n, yd, &er)) { printf("FAIL %s stream repeat: %s\n", name, er.msg); n_fail++; break; }
                CUDA_OK(cudaDeviceSynchronize());
                CUDA_OK(cudaMemcpy(rep ? yh.data() : y1.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
            }
            same = same && !memcmp(y1.data(), yh.data(), (size_t)n * rows * 4);
        }
        report(same, name, "stream repeated calls differ (bits)", same ? 0 : 1, 0);
        std::vector<float> xf((size_t)8 * cols);
        uint64_t rngs = seed * 19 + 1;
        for (auto &v : xf) v = (float)(2 * synth_uniform(&rngs) - 1);
        float *xfd;
        CUDA_OK(cudaMalloc(&xfd, xf.size() * 4));
        CUDA_OK(cudaMemcpy(xfd, xf.data(), xf.size() * 4, cudaMemcpyHostToDevice));
        double worst = 0;
        for (int n : {1, 3, 8}) {
            const std::vector<double> rf = w_times_x(Wref, xf.data(), n, rows, cols);
            CUDA_OK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
            if (spqr_cuda_stream_matmul(ctx, m->stream, xfd, 1, n, yd, &er)) { printf("FAIL %s stream f32 n=%d: %s\n", name, n, er.msg); n_fail++; continue; }
            CUDA_OK(cudaDeviceSynchronize());
            CUDA_OK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
            const double e = rel_l2(yh.data(), rf.data(), (size_t)n * rows);
            char what[64];
            snprintf(what, sizeof what, "stream f32 n=%d rel err", n);
            report(e <= 2e-3, name, what, e, 2e-3);
            worst = fmax(worst, e);
        }
        printf("  %-8s max rel err %.2e (tol 2e-3), repeated calls %s\n", "stream32", worst, same ? "bit-identical" : "DIFFER");
        cudaFree(xfd);
    }
    /* v9: 8-bit activations, against the CPU's act8 product of the same x (fp16 x, then fp32 x) */
    if (spqr_cuda_supports(m, SPQR_CUDA_ACT8)) {
        spqr_qtiles *qt = spqr_qtiles_build(&sm.view);
        std::vector<float> xf((size_t)NMAX * cols);
        uint64_t rng8 = seed * 17 + 9;
        for (auto &v : xf) v = (float)(2 * synth_uniform(&rng8) - 1) * (synth_uniform(&rng8) < 0.02 ? 20.f : 1.f); /* a few large ones */
        float *xfd;
        CUDA_OK(cudaMalloc(&xfd, xf.size() * 4));
        CUDA_OK(cudaMemcpy(xfd, xf.data(), xf.size() * 4, cudaMemcpyHostToDevice));
        std::vector<float> xs(cols), dx(cols / 16 + 1), gq(cols / 16 + 1), ya((size_t)NMAX * rows);
        std::vector<int8_t> xq(cols);
        const std::vector<double> rexact = w_times_x(Wref, xf.data(), 5, rows, cols); /* the exact-activation checks */
        double worst[2] = {0, 0}, worst_exact = 0;
        /* 0: fp16 x gathered per block, 1: fp16 x with k_prep_x, 2: fp32 x as dispatched */
        for (int mode = 0; mode < 3 && qt; mode++) {
            const int f32 = mode == 2;
            ctx->xprep = mode == 0 ? 0 : mode == 1 ? 1 : -1;
            for (int b = 0; b < NMAX && (mode == 0 || f32); b++) { /* mode 1 has mode 0's x and so its reference */
                for (uint32_t j = 0; j < cols; j++) {
                    const size_t src = (size_t)b * cols + (sm.view.perm ? sm.view.perm[j] : (int32_t)j);
                    xs[j] = f32 ? xf[src] : __half2float(xh[src]);
                }
                spqr_act8_quantize(xs.data(), cols, 16, xq.data(), dx.data(), gq.data());
                spqr_qtiles_gemv_act8_ref(qt, 0, rows, xq.data(), dx.data(), gq.data(), xs.data(), ya.data() + (size_t)b * rows);
            }
            spqr_cuda_ctx_set_act8(ctx, 1);
            for (int n : ns) {
                if (f32 && n > 5) break;
                CUDA_OK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
                spqr_status st = f32 ? spqr_cuda_matmul_f32(ctx, m, xfd, n, yd, &er) : spqr_cuda_matmul(ctx, m, SPQR_CUDA_ACT8, xd, n, yd, &er);
                if (st) { printf("FAIL %s act8 n=%d: %s\n", name, n, er.msg); n_fail++; continue; }
                CUDA_OK(cudaDeviceSynchronize());
                CUDA_OK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
                const double e = rel_l2(yh.data(), ya.data(), (size_t)n * rows), ex = f32 ? 0 : rel_l2(yh.data(), ref.data(), (size_t)n * rows);
                char what[64];
                if (f32 && n > 1) { /* past one token the f32 path must not round the activations: the exact fused kernel */
                    const double en = rel_l2(yh.data(), rexact.data(), (size_t)n * rows);
                    const double tn = n > 2 && spqr_cuda_supports(m, SPQR_CUDA_MMA) ? 2e-3 : 2e-4; /* MMA above 2: x rounded to fp16 */
                    snprintf(what, sizeof what, "act8 ctx f32 n=%d (exact activations) rel err", n);
                    report(en <= tn, name, what, en, tn);
                    continue;
                }
                snprintf(what, sizeof what, "act8 %s n=%d rel err vs CPU act8", f32 ? "f32" : mode ? "f16 prep" : "f16", n);
                report(e <= 1e-5, name, what, e, 1e-5);
                worst[f32] = fmax(worst[f32], e);
                if (!f32) {
                    snprintf(what, sizeof what, "act8 n=%d rel err vs W.x", n);
                    report(ex <= 2e-2, name, what, ex, 2e-2);
                    worst_exact = fmax(worst_exact, ex);
                }
            }
            spqr_cuda_ctx_set_act8(ctx, 0);
            ctx->xprep = -1;
        }
        if (!qt) { printf("FAIL %s: qtiles_build\n", name); n_fail++; }
        printf("  act8     max rel err vs the CPU act8 product %.2e (f16 x) %.2e (f32 x) (tol 1e-5), vs W.x %.2e (tol 2e-2)\n", worst[0], worst[1],
               worst_exact);
        spqr_qtiles_free(qt);
        cudaFree(xfd);
    }
    /* v6 split-K on the fused layout: fp16 x at every n (twice: the counters must have been reset), fp32 x at n = 1, 3, 5 */
    if (spqr_cuda_v6_supported(m)) {
        std::vector<float> xf((size_t)8 * cols);
        uint64_t rng6 = seed * 13 + 5;
        for (auto &v : xf) v = (float)(2 * synth_uniform(&rng6) - 1);
        const std::vector<double> reff = w_times_x(Wref, xf.data(), 8, rows, cols);
        float *xfd;
        CUDA_OK(cudaMalloc(&xfd, xf.size() * 4));
        CUDA_OK(cudaMemcpy(xfd, xf.data(), xf.size() * 4, cudaMemcpyHostToDevice));
        for (int wpb : {4, 1, 8}) {
            spqr_cuda_v6 *p6;
            if (spqr_cuda_v6_new(m, wpb, &p6, &er)) { printf("FAIL %s: v6_new: %s\n", name, er.msg); n_fail++; continue; }
            double worst = 0;
            for (int f32 = 0; f32 < 2; f32++)
                for (int n : ns) {
                    if (f32 && n != 1 && n != 3 && n != 5) continue;
                    for (int rep = 0; rep < 2; rep++) {
                        CUDA_OK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
                        if (spqr_cuda_v6_matmul(ctx, p6, f32 ? (const void *)xfd : (const void *)xd, f32, n, yd, &er)) {
                            printf("FAIL %s v6 n=%d: %s\n", name, n, er.msg); n_fail++; continue;
                        }
                        CUDA_OK(cudaDeviceSynchronize());
                        CUDA_OK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
                        const double e = rel_l2(yh.data(), f32 ? reff.data() : ref.data(), (size_t)n * rows);
                        char what[64];
                        snprintf(what, sizeof what, "v6 w%d %s n=%d rep %d rel err", p6->wpb, f32 ? "f32" : "f16", n, rep);
                        report(e <= 2e-4, name, what, e, 2e-4);
                        worst = fmax(worst, e);
                    }
                }
            printf("  v6-w%d    max rel err %.2e (tol 2e-4), %d chunks\n", p6->wpb, worst, p6->nchunk);
            spqr_cuda_v6_free(p6);
        }
        cudaFree(xfd);
    }
    /* fp32 activations (not fp16-representable) through spqr_cuda_matmul_f32, on an upload of the
     * fused layout alone when the matrix has it (else the full upload: GENERIC) */
    {
        std::vector<float> xf((size_t)NMAX * cols);
        for (auto &v : xf) v = (float)(2 * synth_uniform(&rng) - 1);
        const std::vector<double> reff = w_times_x(Wref, xf.data(), NMAX, rows, cols);
        float *xfd;
        CUDA_OK(cudaMalloc(&xfd, xf.size() * 4));
        CUDA_OK(cudaMemcpy(xfd, xf.data(), xf.size() * 4, cudaMemcpyHostToDevice));
        for (int lay = 0; lay < 2; lay++) { /* 0: the fused layout alone (else the full upload: MMA or GENERIC); 1: MMA alone */
        if (lay == 1 && !mma) break;
        spqr_cuda_qmatrix *mf = m;
        const unsigned want = lay ? SPQR_CUDA_LAYOUT_MMA : SPQR_CUDA_LAYOUT_FUSED;
        if ((lay || fused) && spqr_cuda_upload_ex(&sm.view, want, &mf, &er)) { printf("FAIL %s: upload_ex: %s\n", name, er.msg); n_fail++; mf = m; }
        const double tol = spqr_cuda_supports(mf, SPQR_CUDA_MMA) ? 2e-3 : spqr_cuda_supports(mf, SPQR_CUDA_FUSED) ? 2e-4 : 1e-5;
        double worst = 0;
        for (int n : ns) {
            CUDA_OK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
            if (spqr_cuda_matmul_f32(ctx, mf, xfd, n, yd, &er)) { printf("FAIL %s f32 n=%d: %s\n", name, n, er.msg); n_fail++; continue; }
            CUDA_OK(cudaDeviceSynchronize());
            CUDA_OK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
            const double e = rel_l2(yh.data(), reff.data(), (size_t)n * rows);
            char what[64];
            snprintf(what, sizeof what, "f32 n=%d rel err", n);
            report(e <= tol, name, what, e, tol);
            worst = fmax(worst, e);
        }
        printf("  %-8s max rel err %.2e (tol %.0e)%s\n", "f32", worst, tol, mf == m ? "" : lay ? " (mma layout alone)" : " (fused layout alone)");
        if (mf != m) spqr_cuda_qmatrix_free(mf);
        }
        cudaFree(xfd);
    }
    cudaFree(xd);
    cudaFree(yd);
    spqr_cuda_qmatrix_free(m);
    synth_free(&sm);
}

/* spqr_cuda_ctx_reuse_x: a product declared to read the previous product's x reuses its prepared
 * image (FUSED and ACT8, n = 1, a matrix large enough to prepare x once per product) only when the
 * permutation, the x pointer and the width agree and nothing else ran in between. The reuse itself is
 * made visible by changing x behind the library's back (what a caller must not do): a reused image
 * still gives the old product. */
static void reuse_case(spqr_cuda_ctx *ctx) {
    const uint32_t rows = 2048, cols = 4096;
    synth_params pa = {SPQR_TK_SPQR, rows, cols, 3, 16, 3, 16, 0.01, 1, 11}, pb = pa;
    pb.seed = 12; /* another matrix, another permutation */
    synth_matrix sa, sb;
    spqr_error er;
    if (synth_build(&pa, &sa, &er) || synth_build(&pb, &sb, &er)) { printf("FAIL reuse: synth: %s\n", er.msg); n_fail++; return; }
    spqr_cuda_qmatrix *ma, *ma2, *mb;
    const unsigned lay = SPQR_CUDA_LAYOUT_FUSED | SPQR_CUDA_LAYOUT_ACT8 | SPQR_CUDA_LAYOUT_MMA;
    if (spqr_cuda_upload_ex(&sa.view, lay, &ma, &er) || spqr_cuda_upload_ex(&sa.view, lay, &ma2, &er) || spqr_cuda_upload_ex(&sb.view, lay, &mb, &er)) {
        printf("FAIL reuse: upload: %s\n", er.msg);
        n_fail++;
        return;
    }
    std::vector<__half> x1(cols), x2(cols);
    uint64_t rng = 5;
    for (uint32_t j = 0; j < cols; j++) { x1[j] = __float2half((float)(2 * synth_uniform(&rng) - 1)); x2[j] = __float2half((float)(2 * synth_uniform(&rng) - 1)); }
    __half *xd, *x2d;
    float *yd;
    CUDA_OK(cudaMalloc(&xd, cols * 2));
    CUDA_OK(cudaMalloc(&x2d, cols * 2));
    CUDA_OK(cudaMalloc(&yd, rows * 4));
    CUDA_OK(cudaMemcpy(x2d, x2.data(), cols * 2, cudaMemcpyHostToDevice));
    for (spqr_cuda_algo al : {SPQR_CUDA_FUSED, SPQR_CUDA_ACT8}) {
        const char *an = al == SPQR_CUDA_FUSED ? "fused" : "act8";
        auto prod = [&](const spqr_cuda_qmatrix *m, const __half *x, bool reuse, spqr_cuda_algo a) {
            std::vector<float> y(rows, NAN);
            if (reuse) spqr_cuda_ctx_reuse_x(ctx);
            if (spqr_cuda_matmul(ctx, m, a, x, 1, yd, &er)) { printf("FAIL reuse %s: %s\n", an, er.msg); n_fail++; return y; }
            if (cudaMemcpy(y.data(), yd, rows * 4, cudaMemcpyDeviceToHost) != cudaSuccess) n_fail++;
            return y;
        };
        auto same = [](const std::vector<float> &a, const std::vector<float> &b) { return memcmp(a.data(), b.data(), a.size() * 4) == 0; };
        auto chk = [&](bool ok, const char *what) {
            char name[96];
            snprintf(name, sizeof name, "reuse of x (%s)", an);
            report(ok, name, what, ok ? 0 : 1, 0);
        };
        CUDA_OK(cudaMemcpy(xd, x1.data(), cols * 2, cudaMemcpyHostToDevice));
        const std::vector<float> a1 = prod(ma, xd, false, al), a2ref = prod(ma, x2d, false, al), b2ref = prod(mb, x2d, false, al);
        const std::vector<float> y0 = prod(ma, xd, false, al); /* prepares x1 */
        const std::vector<float> y1 = prod(ma2, xd, true, al);  /* equal permutation: reuses */
        chk(same(y0, a1) && same(y1, a1), "an equal permutation reuses: the same product, bit for bit");
        CUDA_OK(cudaMemcpy(xd, x2.data(), cols * 2, cudaMemcpyHostToDevice)); /* x changed behind the library's back */
        const std::vector<float> y2 = prod(ma2, xd, true, al);
        chk(same(y2, a1) && !same(y2, a2ref), "the image was reused (the old x's product)");
        const std::vector<float> y3 = prod(mb, xd, true, al); /* another permutation: prepared again */
        chk(same(y3, b2ref), "another permutation prepares x");
        (void)prod(ma, xd, false, al);                               /* prepares x2 */
        CUDA_OK(cudaMemcpy(xd, x1.data(), cols * 2, cudaMemcpyHostToDevice));
        (void)prod(ma, x2d, false, SPQR_CUDA_MMA);                   /* another algorithm in between */
        const std::vector<float> y4 = prod(ma2, xd, true, al);
        chk(same(y4, a1), "a product in between invalidates the image");
        const std::vector<float> y5 = prod(ma2, x2d, true, al);      /* another x pointer */
        chk(same(y5, a2ref), "another x pointer prepares x");
    }
    cudaFree(xd); cudaFree(x2d); cudaFree(yd);
    spqr_cuda_qmatrix_free(ma); spqr_cuda_qmatrix_free(ma2); spqr_cuda_qmatrix_free(mb);
    synth_free(&sa); synth_free(&sb);
    printf("reuse of the prepared x: checked\n");
}

int main(void) {
    if (spqr_cuda_device_count() <= 0) {
        printf("SKIPPED: no CUDA device: the CUDA kernel tests did not run\n");
        printf("0 passed, 0 failed\n");
        return 0;
    }
    spqr_cuda_ctx *ctx;
    spqr_error er;
    if (spqr_cuda_ctx_new(NULL, &ctx, &er)) { printf("FAIL ctx: %s\n0 passed, 1 failed\n", er.msg); return 1; }
    const tcase cases[] = {
        {SPQR_TK_SPQR, 37, 50, 3, 16, 3, 16, 0.02, 1},
        {SPQR_TK_SPQR, 100, 130, 2, 8, 3, 32, 0.01, 0},
        {SPQR_TK_SPQR, 257, 1000, 4, 32, 3, 64, 0.01, 1},
        {SPQR_TK_SPQR, 64, 4096, 3, 16, 3, 16, 0.01, 1},
        {SPQR_TK_SPQR, 300, 333, 3, 64, 3, 16, 0.01, 1},
        {SPQR_TK_SPQR, 20, 77, 3, 16, 3, 12, 0.01, 0},
        {SPQR_TK_SPQR, 33, 100, 5, 16, 3, 16, 0.01, 1},
        {SPQR_TK_SPQR, 45, 96, 3, 20, 3, 10, 0.01, 0},
        {SPQR_TK_SPQR, 16, 40, 3, 8, 3, 16, 0.0, 1},
        {SPQR_TK_SPQR, 9, 8, 2, 8, 2, 1, 0.05, 1},
        {SPQR_TK_SPQR, 130, 264, 4, 8, 4, 64, 0.01, 1},
        {SPQR_TK_SPQR, 66, 300, 2, 16, 3, 32, 0.01, 1},
        {SPQR_TK_SPQR, 45, 700, 3, 16, 4, 32, 0.01, 1},
        {SPQR_TK_SPQR, 70, 3000, 4, 16, 3, 16, 0.02, 1},
        {SPQR_TK_SPQR, 70, 6000, 2, 16, 4, 64, 0.01, 0},
        {SPQR_TK_SPQR, 96, 512, 3, 16, 3, 16, 0.01, 1},
        {SPQR_TK_SPQR, 77, 2500, 3, 16, 3, 16, 0.02, 1},
        {SPQR_TK_SPQR, 200, 4096, 3, 16, 3, 16, 0.01, 1},
        {SPQR_TK_GPTQ, 129, 256, 4, 128, 0, 0, 0, 0},
        {SPQR_TK_GPTQ, 70, 300, 3, 32, 0, 0, 0, 1},
        {SPQR_TK_GPTQ, 50, 200, 4, 16, 0, 0, 0, 0},
        {SPQR_TK_GPTQ, 31, 1100, 2, 64, 0, 0, 0, 1},
        /* MMA: several K-slices (4096 / 11008 columns), β1 32 / 64, β2 48, a 32000-row head shape */
        {SPQR_TK_SPQR, 100, 11008, 3, 16, 3, 16, 0.01, 1},
        {SPQR_TK_SPQR, 64, 4096, 4, 32, 3, 48, 0.01, 1},
        {SPQR_TK_SPQR, 40, 2048, 2, 64, 2, 32, 0.01, 0},
        {SPQR_TK_SPQR, 32000, 512, 4, 16, 3, 16, 0.005, 1},
        {SPQR_TK_GPTQ, 90, 4096, 4, 128, 0, 0, 0, 1},
    };
    uint64_t seed = 1;
    for (const tcase &tc : cases) run_case(ctx, tc, seed++);
    reuse_case(ctx);
    spqr_cuda_ctx_free(ctx);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

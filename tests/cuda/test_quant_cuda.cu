/*
 * test_quant_cuda.cu — the GPU quantizer (src/cuda/quant_cuda.h) against the CPU one
 * (spqr_quantize_matrix, linked from build/libspqr.a) on random layers with random SPD Hessians.
 *
 * Per case: both succeed (or fail alike); the same entry (kind, shape, flags, bits, groups,
 * percdamp_used); the GPU blob passes spqr_qview_init, its CRC is right and it decodes bit for bit to
 * the GPU's deq; the GPU's blob is the CPU's, byte for byte, and so is its deq (the block update runs
 * in kernels/ordered.h's fixed order on both, and the GPU takes U from the CPU's own LAPACK call);
 * rel_err within 1e-3 relative (its products are cuBLAS's and OpenBLAS's). The evalmodel shapes and an
 * indefinite H again with cuSOLVER's U (spqr_cuda_qctx_set_device_cholesky): within the tolerances
 * (≥ 99.9% equal codes, outliers within 0.1% + 2), identical bits or not printed. Plus: the Hessian
 * accumulator bit for bit against the CPU's (spqr_ordered_gemm) and against a float64 reference,
 * determinism, argument errors. Prints "N passed, N failed"; "SKIPPED" and exit 0 without a GPU.
 *   --cpu-only   runs the CPU side of each case only (outlier fractions; for choosing τ without a GPU)
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/quant_cuda.h"

extern "C" {
#include "core/core.h"
#include "kernels/ordered.h"
}

static int g_pass, g_fail, g_cpu_only;

#define CHECK(cond, ...)                                                                                                                   \
    do {                                                                                                                                   \
        if (cond) g_pass++;                                                                                                                \
        else { g_fail++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); }                                \
    } while (0)

/* ---- random data ---- */
static uint64_t rng_state;
static uint64_t rnd(void) {
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static double uni(void) { return ((rnd() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double gauss(void) { return sqrt(-2 * log(uni())) * cos(6.283185307179586 * uni()); }

/* W: N(0, 0.02²) with 0.5% heavy-tailed (Student-t-like, ×4) weights. */
static float *make_w(int rows, int cols) {
    float *W = (float *)malloc((size_t)rows * cols * 4);
    for (size_t i = 0; i < (size_t)rows * cols; i++) {
        double g = gauss() * 0.02;
        if (uni() < 0.005) g = 4 * 0.02 * gauss() / sqrt(fmax(uni(), 1e-3));
        W[i] = (float)g;
    }
    return W;
}
/* H = 2/n XᵀX, X [n][cols] with log-normal channel scales and a few strong channels; dead columns
 * are zero channels. sub: subtract sub·mean(diag) from the diagonal (an indefinite H). */
static float *make_h(int cols, int n, int n_dead, double sub, int plain) {
    float *X = (float *)malloc((size_t)n * cols * 4), *H = (float *)malloc((size_t)cols * cols * 4);
    double *sc = (double *)malloc((size_t)cols * 8);
    for (int j = 0; j < cols; j++) sc[j] = plain ? 1.0 : exp(0.6 * gauss()) * (uni() < 0.01 ? 8 : 1);
    for (int k = 0; k < n_dead; k++) sc[(int)(rnd() % (uint64_t)cols)] = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < cols; j++) X[(size_t)i * cols + j] = (float)(gauss() * sc[j]);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, cols, n, 2.0f / n, X, cols, X, cols, 0.0f, H, cols);
    for (int i = 0; i < cols; i++)
        for (int k = 0; k < i; k++) H[(size_t)i * cols + k] = H[(size_t)k * cols + i];
    if (sub > 0) {
        double m = 0;
        for (int i = 0; i < cols; i++) m += H[(size_t)i * cols + i];
        m /= cols;
        for (int i = 0; i < cols; i++)
            if (H[(size_t)i * cols + i] != 0) H[(size_t)i * cols + i] -= (float)(sub * m);
    }
    free(X);
    free(sc);
    return H;
}

static float bf16r(float x) { /* round to bf16 (nearest even): the checkpoints' weights */
    uint32_t u;
    memcpy(&u, &x, 4);
    u = (u + 0x7fff + ((u >> 16) & 1)) & 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static spqr_qparams P(spqr_qmethod m, int w, int gs, int q, int qg, double tau, int act, double damp) {
    spqr_qparams p;
    memset(&p, 0, sizeof p);
    p.method = m;
    p.wbits = w;
    p.groupsize = gs;
    p.qq_bits = q;
    p.qq_groupsize = qg;
    p.outlier_threshold = tau;
    p.act_order = act;
    p.percdamp = damp;
    return p;
}

static spqr_cuda_qctx *g_ctx;
static int g_device_chol; /* the context factors on the device: U may differ in float's last bit, so codes may too */

static void run_case(const char *name, const float *W, int rows, int cols, const float *H, const spqr_qparams *p) {
    spqr_qresult rc, rg;
    spqr_error e1, e2;
    memset(&e1, 0, sizeof e1);
    memset(&e2, 0, sizeof e2);
    double t0 = spqr_now();
    spqr_status s1 = spqr_quantize_matrix(W, rows, cols, H, p, &rc, &e1);
    double tc = spqr_now() - t0;
    if (g_cpu_only) {
        printf("%-34s cpu: st %d outliers %llu (%.3f%%) rel_err %.5f damp %g  %.2fs\n", name, (int)s1, (unsigned long long)rc.entry.n_outliers,
               100.0 * rc.entry.n_outliers / ((double)rows * cols), rc.rel_err, rc.percdamp_used, tc);
        spqr_qresult_free(&rc);
        return;
    }
    t0 = spqr_now();
    spqr_status s2 = spqr_cuda_quantize_matrix(g_ctx, W, rows, cols, H, p, &rg, &e2);
    double tg = spqr_now() - t0;
    CHECK(s1 == s2, "%s: status cpu %d (%s) gpu %d (%s)", name, (int)s1, s1 ? e1.msg : "", (int)s2, s2 ? e2.msg : "");
    if (s1 || s2) {
        printf("%-34s both failed as expected? cpu %d gpu %d: %s\n", name, (int)s1, (int)s2, s2 ? e2.msg : "");
        spqr_qresult_free(&rc);
        spqr_qresult_free(&rg);
        return;
    }
    const spqr_file_tensor *a = &rc.entry, *b = &rg.entry;
    CHECK(a->kind == b->kind && a->flags == b->flags && a->wbits == b->wbits && a->groupsize == b->groupsize && a->qq_bits == b->qq_bits &&
              a->qq_groupsize == b->qq_groupsize && a->shape[0] == b->shape[0] && a->shape[1] == b->shape[1],
          "%s: entries differ", name);
    CHECK(rc.percdamp_used == rg.percdamp_used, "%s: percdamp_used cpu %g gpu %g", name, rc.percdamp_used, rg.percdamp_used);
    CHECK(spqr_crc32(rg.blob, b->data_size) == b->data_crc, "%s: GPU blob CRC", name);
    spqr_qview vc, vg;
    spqr_error e3;
    spqr_status s3 = spqr_qview_init(&vg, b, rg.blob, b->data_size, "gpu", &e3);
    CHECK(s3 == SPQR_OK, "%s: GPU blob invalid: %s", name, s3 ? e3.msg : "");
    spqr_status s4 = spqr_qview_init(&vc, a, rc.blob, a->data_size, "cpu", &e3);
    if (s3 || s4) { spqr_qresult_free(&rc); spqr_qresult_free(&rg); return; }
    /* the GPU's deq is what its blob decodes to */
    float *dec = (float *)malloc((size_t)rows * cols * 4);
    spqr_qview_dequant_rows(&vg, 0, (uint32_t)rows, 1, dec);
    CHECK(memcmp(dec, rg.deq, (size_t)rows * cols * 4) == 0, "%s: GPU deq differs from its blob's decoding", name);
    free(dec);
    /* same permutation, codes */
    int same_perm = (vc.perm == NULL) == (vg.perm == NULL) && (!vc.perm || memcmp(vc.perm, vg.perm, (size_t)cols * 4) == 0);
    CHECK(same_perm, "%s: permutations differ", name);
    uint64_t same = 0;
    for (int r = 0; r < rows; r++) {
        const uint8_t *ca = vc.codes + (size_t)r * vc.lay.code_stride, *cb = vg.codes + (size_t)r * vg.lay.code_stride;
        for (int j = 0; j < cols; j++) same += spqr_bits_get(ca, j, vc.wbits) == spqr_bits_get(cb, j, vg.wbits);
    }
    double frac = (double)same / ((double)rows * cols);
    double dq = 0; /* max |deq difference| relative to max |W| */
    float wmax = 0;
    for (size_t i = 0; i < (size_t)rows * cols; i++) { dq = fmax(dq, fabs(rc.deq[i] - rg.deq[i])); wmax = fmaxf(wmax, fabsf(W[i])); }
    CHECK(frac >= 0.999, "%s: only %.4f%% of codes equal", name, 100 * frac);
    const int same_bits = a->data_size == b->data_size && memcmp(rc.blob, rg.blob, a->data_size) == 0 &&
                          memcmp(rc.deq, rg.deq, (size_t)rows * cols * 4) == 0;
    if (!g_device_chol) CHECK(same_bits, "%s: the GPU's blob or deq differs from the CPU's (codes %.4f%% equal)", name, 100 * frac);
    double no_c = (double)a->n_outliers, no_g = (double)b->n_outliers;
    CHECK(fabs(no_c - no_g) <= 0.001 * no_c + 2, "%s: outliers cpu %.0f gpu %.0f", name, no_c, no_g);
    if (H) CHECK(fabs(rc.rel_err - rg.rel_err) <= 1e-3 * rc.rel_err + 1e-12, "%s: rel_err cpu %.6g gpu %.6g", name, rc.rel_err, rg.rel_err);
    else CHECK(isnan(rg.rel_err), "%s: rel_err should be NaN without H", name);
    printf("%-34s %s codes=%.4f%% outl cpu %llu gpu %llu (%.3f%%) rel_err cpu %.6f gpu %.6f damp %g  cpu %.3fs gpu %.3fs\n", name,
           same_bits ? "identical" : "DIFFERENT", 100 * frac,
           (unsigned long long)a->n_outliers, (unsigned long long)b->n_outliers, 100.0 * no_g / ((double)rows * cols), rc.rel_err, rg.rel_err,
           rg.percdamp_used, tc, tg);
    spqr_qresult_free(&rc);
    spqr_qresult_free(&rg);
}

static void test_hessian(void) {
    const int n = 3000, cols = 300;
    float *X = (float *)malloc((size_t)n * cols * 4), *H = (float *)malloc((size_t)cols * cols * 4);
    float *Hc = (float *)calloc((size_t)cols * cols, 4); /* the CPU's: the same two calls */
    for (size_t i = 0; i < (size_t)n * cols; i++) X[i] = (float)gauss();
    const spqr_ordered_args g1 = {cols, cols, 1000, 2.0f / n, X, 1, cols, X, cols, Hc, cols, 1};
    const spqr_ordered_args g2 = {cols, cols, n - 1000, 2.0f / n, X + (size_t)1000 * cols, 1, cols, X + (size_t)1000 * cols, cols, Hc, cols, 1};
    spqr_ordered_gemm(NULL, &g1);
    spqr_ordered_gemm(NULL, &g2);
    for (int tf32 = 0; tf32 < 2; tf32++) {
        spqr_error e;
        float *Hd = (float *)spqr_cuda_malloc((size_t)cols * cols * 4, &e);
        spqr_cuda_memset0(Hd, (size_t)cols * cols * 4, &e);
        spqr_cuda_qctx_set_hessian_tf32(g_ctx, tf32);
        spqr_status s = spqr_cuda_hessian_add_host(g_ctx, X, 1000, cols, 2.0f / n, Hd, &e);
        if (!s) s = spqr_cuda_hessian_add_host(g_ctx, X + (size_t)1000 * cols, n - 1000, cols, 2.0f / n, Hd, &e);
        if (!s) s = spqr_cuda_hessian_symmetrize(g_ctx, Hd, cols, &e);
        if (!s) s = spqr_cuda_qctx_sync(g_ctx, &e);
        if (!s) s = spqr_cuda_d2h(H, Hd, (size_t)cols * cols * 4, &e);
        CHECK(s == SPQR_OK, "hessian: %s", s ? e.msg : "");
        if (!tf32) {
            long diff = 0;
            for (int i = 0; i < cols; i++)
                for (int k = i; k < cols; k++) diff += memcmp(&H[(size_t)i * cols + k], &Hc[(size_t)i * cols + k], 4) != 0;
            CHECK(diff == 0, "hessian: %ld entries of the upper triangle differ from the CPU's", diff);
            printf("hessian accumulator (fp32): %ld of %d entries differ from the CPU's\n", diff, cols * (cols + 1) / 2);
        }
        double num = 0, den = 0, asym = 0;
        for (int i = 0; i < cols; i += 7)
            for (int k = 0; k < cols; k++) {
                double ref = 0;
                for (int t = 0; t < n; t++) ref += (double)X[(size_t)t * cols + i] * X[(size_t)t * cols + k];
                ref *= 2.0 / n;
                num += (H[(size_t)i * cols + k] - ref) * (H[(size_t)i * cols + k] - ref);
                den += ref * ref;
                asym = fmax(asym, fabs(H[(size_t)i * cols + k] - H[(size_t)k * cols + i]));
            }
        double rel = sqrt(num / den);
        CHECK(rel < (tf32 ? 5e-3 : 1e-5), "hessian%s: rel err %.3g", tf32 ? " tf32" : "", rel);
        CHECK(asym == 0, "hessian: not symmetric (%g)", asym);
        printf("hessian accumulator%s: rel err vs float64 %.3g\n", tf32 ? " (tf32)" : " (fp32)", rel);
        spqr_cuda_free(Hd);
    }
    spqr_cuda_qctx_set_hessian_tf32(g_ctx, 0);
    free(X);
    free(H);
    free(Hc);
}

static void test_misc(void) {
    const int rows = 64, cols = 128;
    float *W = make_w(rows, cols), *H = make_h(cols, 512, 0, 0, 0);
    spqr_qparams p = P(SPQR_QM_SPQR, 3, 16, 3, 16, 0.2, 1, 1.0);
    spqr_qresult r1, r2;
    spqr_error e;
    /* determinism, and the device-pointer variant without deq */
    spqr_status s = spqr_cuda_quantize_matrix(g_ctx, W, rows, cols, H, &p, &r1, &e);
    CHECK(s == SPQR_OK, "misc: %s", s ? e.msg : "");
    float *Wd = (float *)spqr_cuda_malloc((size_t)rows * cols * 4, &e), *Hd = (float *)spqr_cuda_malloc((size_t)cols * cols * 4, &e);
    spqr_cuda_h2d(Wd, W, (size_t)rows * cols * 4, &e);
    spqr_cuda_h2d(Hd, H, (size_t)cols * cols * 4, &e);
    s = spqr_cuda_quantize_matrix_dev(g_ctx, Wd, rows, cols, Hd, &p, 0, &r2, &e);
    CHECK(s == SPQR_OK && r2.deq == NULL, "misc dev: %s", s ? e.msg : "");
    if (!s)
        CHECK(r1.entry.data_size == r2.entry.data_size && memcmp(r1.blob, r2.blob, r1.entry.data_size) == 0 && r1.rel_err == r2.rel_err,
              "misc: not deterministic");
    spqr_cuda_qresult_free(&r1);
    spqr_cuda_qresult_free(&r2);
    /* errors */
    W[77] = NAN;
    s = spqr_cuda_quantize_matrix(g_ctx, W, rows, cols, H, &p, &r1, &e);
    CHECK(s == SPQR_E_ARG && r1.blob == NULL, "misc: NaN weight accepted (%d)", (int)s);
    W[77] = 0;
    H[5] = INFINITY;
    s = spqr_cuda_quantize_matrix(g_ctx, W, rows, cols, H, &p, &r1, &e);
    CHECK(s == SPQR_E_ARG, "misc: Inf in H accepted (%d)", (int)s);
    s = spqr_cuda_quantize_matrix(g_ctx, W, rows, cols, NULL, &p, &r1, &e);
    CHECK(s == SPQR_E_ARG, "misc: SpQR without H accepted (%d)", (int)s);
    p.wbits = 9;
    s = spqr_cuda_quantize_matrix(g_ctx, W, rows, cols, H, &p, &r1, &e);
    CHECK(s == SPQR_E_ARG, "misc: wbits 9 accepted (%d)", (int)s);
    spqr_cuda_free(Wd);
    spqr_cuda_free(Hd);
    free(W);
    free(H);
}

static const double TAU = 0.2; /* ~1% outliers on these layers (see --cpu-only) */

/* evalmodel's seven shapes (q, k, v, o, gate, up, down): SpQR w3 β1 = β2 = 16, q3, act order. */
static void evalmodel_shapes(const char *suffix, const float *H512, const float *H1536) {
    static const struct { const char *name; int rows, cols; } shp[] = {{"q 512x512", 512, 512},     {"k 256x512", 256, 512},
                                                                       {"v 256x512", 256, 512},     {"o 512x512", 512, 512},
                                                                       {"gate 1536x512", 1536, 512}, {"up 1536x512", 1536, 512},
                                                                       {"down 512x1536", 512, 1536}};
    for (int i = 0; i < 7; i++) {
        float *W = make_w(shp[i].rows, shp[i].cols);
        spqr_qparams p = P(SPQR_QM_SPQR, 3, 16, 3, 16, TAU, 1, 1.0);
        char nm[64];
        snprintf(nm, sizeof nm, "spqr w3 %s%s", shp[i].name, suffix);
        run_case(nm, W, shp[i].rows, shp[i].cols, shp[i].cols == 512 ? H512 : H1536, &p);
        free(W);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--cpu-only")) g_cpu_only = 1;
    spqr_error err;
    if (!g_cpu_only && spqr_cuda_qctx_new(NULL, &g_ctx, &err) != SPQR_OK) {
        printf("SKIPPED: no CUDA device (%s)\n", err.msg);
        return 0;
    }
    rng_state = 1234;
    if (!g_cpu_only) {
        test_hessian();
        test_misc();
    }
    float *H512 = make_h(512, 4096, 0, 0, 0), *H1536 = make_h(1536, 4096, 0, 0, 0);
    evalmodel_shapes("", H512, H1536);
    {
        float *W = make_w(512, 512);
        spqr_qparams p;
        p = P(SPQR_QM_SPQR, 4, 16, 3, 16, TAU, 1, 1.0);
        run_case("spqr w4 512x512", W, 512, 512, H512, &p);
        p = P(SPQR_QM_SPQR, 3, 16, 3, 16, TAU, 1, 1.0);
        p.simplified_outliers = 1;
        run_case("spqr w3 simplified outliers", W, 512, 512, H512, &p);
        p = P(SPQR_QM_SPQR, 3, 16, 3, 16, INFINITY, 1, 1.0);
        run_case("spqr w3 no outliers", W, 512, 512, H512, &p);
        p = P(SPQR_QM_SPQR, 2, 32, 2, 32, TAU, 0, 1.0);
        run_case("spqr w2 b32/32 q2 no act order", W, 512, 512, H512, &p);
        p = P(SPQR_QM_GPTQ, 4, 128, 0, 0, INFINITY, 1, 0.01);
        run_case("gptq w4 g128 act order", W, 512, 512, H512, &p);
        p = P(SPQR_QM_GPTQ, 4, 128, 0, 0, INFINITY, 0, 0.01);
        run_case("gptq w4 g128", W, 512, 512, H512, &p);
        p = P(SPQR_QM_GPTQ, 3, 0, 0, 0, INFINITY, 0, 0.01);
        run_case("gptq w3 row groups", W, 512, 512, H512, &p);
        p = P(SPQR_QM_RTN, 4, 128, 0, 0, INFINITY, 0, 0.01);
        run_case("rtn w4 g128", W, 512, 512, H512, &p);
        run_case("rtn w4 g128 no H", W, 512, 512, NULL, &p);
        p = P(SPQR_QM_SPQR, 3, 0, 3, 16, TAU, 1, 1.0);
        run_case("spqr w3 whole-row group (LOO 512)", W, 128, 512, H512, &p);
        free(W);
    }
    {
        float *W = make_w(1536, 512);
        spqr_qparams p = P(SPQR_QM_GPTQ, 4, 128, 0, 0, INFINITY, 1, 0.01);
        run_case("gptq w4 g128 act order 1536x512", W, 1536, 512, H512, &p);
        free(W);
    }
    { /* dead columns */
        float *W = make_w(256, 512), *Hd = make_h(512, 2048, 9, 0, 0);
        spqr_qparams p = P(SPQR_QM_SPQR, 4, 16, 3, 16, TAU, 0, 1.0);
        run_case("spqr w4 dead columns", W, 256, 512, Hd, &p);
        p.act_order = 1;
        run_case("spqr w4 dead columns act order", W, 256, 512, Hd, &p);
        p = P(SPQR_QM_GPTQ, 4, 128, 0, 0, INFINITY, 1, 0.01);
        run_case("gptq w4 dead columns act order", W, 256, 512, Hd, &p);
        free(W);
        free(Hd);
    }
    { /* ragged shapes: short last group, block and row block */
        float *W = make_w(100, 300), *Hr = make_h(300, 1200, 2, 0, 0);
        spqr_qparams p = P(SPQR_QM_SPQR, 3, 16, 3, 16, TAU, 1, 1.0);
        run_case("spqr w3 100x300", W, 100, 300, Hr, &p);
        p = P(SPQR_QM_SPQR, 3, 16, 3, 16, TAU, 1, 1.0);
        p.blocksize = 64;
        run_case("spqr w3 100x300 blocksize 64", W, 100, 300, Hr, &p);
        p = P(SPQR_QM_GPTQ, 4, 128, 0, 0, INFINITY, 1, 0.01);
        run_case("gptq w4 100x300", W, 100, 300, Hr, &p);
        free(W);
        free(Hr);
    }
    { /* indefinite H: damping retries (0.01 -> 0.1 -> 1) */
        float *W = make_w(256, 256), *Hi = make_h(256, 1024, 0, 0.6, 1);
        spqr_qparams p = P(SPQR_QM_GPTQ, 4, 128, 0, 0, INFINITY, 0, 0.01);
        run_case("gptq w4 indefinite H (retries)", W, 256, 256, Hi, &p);
        p = P(SPQR_QM_SPQR, 3, 16, 3, 16, TAU, 1, 0.01);
        run_case("spqr w3 indefinite H (retries)", W, 256, 256, Hi, &p);
        free(W);
        free(Hi);
    }
    { /* the output head with --head-bits 4: 32000 rows (4000 thread blocks of the fit and column kernels,
       * 2000 β2 row blocks), bf16 weights, and columns large in half the rows, whose outliers fill whole groups */
        const int rows = 32000, cols = 512;
        float *W = make_w(rows, cols);
        for (size_t i = 0; i < (size_t)rows * cols; i++) {
            if (i % cols % 64 == 5 && uni() < 0.5) W[i] += (float)(0.15 * (1 + 0.2 * gauss()));
            W[i] = bf16r(W[i]);
        }
        spqr_qparams p = P(SPQR_QM_SPQR, 4, 16, 3, 16, 0.3, 1, 1.0);
        run_case("spqr w4 head 32000x512", W, rows, cols, H512, &p);
        free(W);
    }
    if (g_ctx) { /* the cuSOLVER factorization: the same results up to float rounding (identical or not: printed) */
        g_device_chol = 1;
        spqr_cuda_qctx_set_device_cholesky(g_ctx, 1);
        evalmodel_shapes(", cuSOLVER", H512, H1536);
        float *W = make_w(256, 256), *Hi = make_h(256, 1024, 0, 0.6, 1);
        spqr_qparams p = P(SPQR_QM_SPQR, 3, 16, 3, 16, TAU, 1, 0.01);
        run_case("spqr w3 indefinite H, cuSOLVER", W, 256, 256, Hi, &p);
        free(W);
        free(Hi);
        spqr_cuda_qctx_set_device_cholesky(g_ctx, 0);
        g_device_chol = 0;
    }
    free(H512);
    free(H1536);
    if (g_ctx) spqr_cuda_qctx_free(g_ctx);
    printf("%d passed, %d failed\n", g_pass, g_fail);
    return g_fail ? 1 : 0;
}

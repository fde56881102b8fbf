/*
 * test_kernels_random.c — every CPU kernel of this build against the generic one on random packed
 * matrices built directly (random codes, statistics, permutation and outliers): no quantizer, no
 * BLAS, so this suite also cross-compiles and runs under qemu-user for other ISAs
 * (`make test-neon`). Shapes: 1..8 bits (GPTQ layout), 1..4 bits with 1..4-bit statistics (SpQR
 * layout), groups of 8..128 and ragged ones, row blocks of 1..64 rows, ragged rows and columns;
 * the tile layout (qtiles.h) of each, decoded and multiplied by every tile kernel, with fp32 and
 * with 8-bit activations; the GPU layouts' packing and decoding (mma_layout.h, act8_layout.h).
 */
#include "harness.h"

#include "format/qmatrix.h"
#include "kernels/cpu.h"
#include "kernels/ordered.h"
#include "core/pool.h"
#include "kernels/qtiles.h"
#include "cuda/act8_layout.h"
#include "cuda/mma_layout.h"
#include "cuda/stream_layout.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rs = 7;
static uint32_t rnd(void) {
    rs = rs * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rs >> 33);
}
static float frnd(void) { return (float)rnd() / 2147483648.0f - 1.0f; }

/* A random valid blob for entry *t (shape and parameters set by the caller); n_outliers is chosen here. */
static uint8_t *random_blob(spqr_file_tensor *t) {
    const uint32_t rows = (uint32_t)t->shape[0], cols = (uint32_t)t->shape[1];
    /* about 1 in 37 weights an outlier, at most `cols` per row */
    const uint32_t per = (rows * cols / 37) / rows, extra = (rows * cols / 37) % rows;
    t->n_outliers = 0;
    if (t->kind == SPQR_TK_SPQR)
        for (uint32_t r = 0; r < rows; r++) t->n_outliers += per + (r < extra) < cols ? per + (r < extra) : cols;
    spqr_qlayout lay;
    char why[160];
    if (!spqr_qlayout_compute(t, &lay, why, sizeof why)) return NULL;
    uint8_t *b = spqr_aligned_alloc(lay.size, 1);
    t->data_size = lay.size;
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t j = 0; j < cols; j++) spqr_bits_put(b + lay.codes + r * lay.code_stride, j, t->wbits, rnd());
    if (lay.perm != UINT64_MAX) {
        int32_t *p = (int32_t *)(b + lay.perm);
        for (uint32_t j = 0; j < cols; j++) p[j] = (int32_t)j;
        for (uint32_t j = cols - 1; j > 0; j--) { uint32_t k = rnd() % (j + 1); int32_t x = p[j]; p[j] = p[k]; p[k] = x; }
    }
    if (t->kind == SPQR_TK_SPQR) {
        for (uint32_t r = 0; r < rows; r++)
            for (uint64_t g = 0; g < 2 * lay.groups; g++) spqr_bits_put(b + lay.stats + r * lay.stat_stride, g, t->qq_bits, rnd());
        spqr_qq_stats *q = (spqr_qq_stats *)(b + lay.qq);
        for (uint64_t i = 0; i < lay.row_blocks * lay.groups; i++)
            q[i] = (spqr_qq_stats){spqr_f32_to_f16(0.001f + 0.01f * (float)(rnd() % 100) / 100), spqr_f32_to_f16(-2.0f * frnd()),
                                   spqr_f32_to_f16(0.5f + (float)(rnd() % 100) / 50), spqr_f32_to_f16(2.0f * frnd())};
        uint32_t *rp = (uint32_t *)(b + lay.row_ptr);
        uint16_t *oc = (uint16_t *)(b + lay.ocol), *ov = (uint16_t *)(b + lay.oval);
        uint64_t k = 0;
        for (uint32_t r = 0; r < rows; r++) {
            rp[r] = (uint32_t)k;
            uint32_t here = per + (r < extra) < cols ? per + (r < extra) : cols;
            for (uint32_t i = 0; i < here; i++) { oc[k] = (uint16_t)((uint64_t)i * cols / here); ov[k++] = spqr_f32_to_f16(frnd()); }
        }
        rp[rows] = (uint32_t)k;
    } else {
        uint16_t *sc = (uint16_t *)(b + lay.scales);
        for (uint64_t i = 0; i < rows * lay.groups; i++) sc[i] = spqr_f32_to_f16(0.001f + 0.01f * (float)(rnd() % 100) / 100);
        for (uint32_t r = 0; r < rows; r++)
            for (uint64_t g = 0; g < lay.groups; g++) spqr_bits_put(b + lay.zeros + r * lay.zero_stride, g, t->wbits, rnd());
    }
    return b;
}

/* A random blob for *t and its validated view; NULL (a failure recorded) if either fails. */
static uint8_t *random_view(spqr_file_tensor *t, spqr_qview *v, const char *what) {
    uint8_t *blob = random_blob(t);
    spqr_error err;
    if (!blob || spqr_qview_init(v, t, blob, t->data_size, what, &err) != SPQR_OK) {
        th_fail(__FILE__, __LINE__, "%s: %s", what, blob ? err.msg : "bad layout");
        spqr_aligned_free(blob);
        return NULL;
    }
    return blob;
}

static int check_all(spqr_file_tensor *t, const char *what) {
    spqr_qview v;
    uint8_t *blob = random_view(t, &v, what);
    if (!blob) return 0;
    const uint32_t rows = v.rows, cols = v.cols;
    float *xs = malloc(cols * sizeof *xs), *gsum = calloc(v.lay.groups, sizeof *gsum), *scr = malloc(spqr_qgemv_scratch(&v) * sizeof *scr);
    float *yg = malloc(rows * sizeof *yg), *y = malloc(rows * sizeof *y);
    float *ref = malloc((size_t)rows * cols * sizeof *ref), *got = malloc((size_t)rows * cols * sizeof *got);
    for (uint32_t c = 0; c < cols; c++) { xs[c] = frnd(); gsum[c / v.groupsize] += xs[c]; }
    spqr_cpu_kernels_generic()->qgemv(&v, 0, rows, xs, gsum, scr, yg);
    spqr_qview_dequant_rows(&v, 0, rows, 0, ref);
    for (uint32_t r = 0; r < rows; r++) { /* the generic kernel against the dequantized matrix */
        double d = 0, mag = 0;
        for (uint32_t c = 0; c < cols; c++) { d += (double)ref[(size_t)r * cols + c] * xs[c]; mag += fabs((double)ref[(size_t)r * cols + c] * xs[c]); }
        CHECKF(fabs(yg[r] - d) <= 1e-4 * mag + 1e-6, "%s: generic row %u: %g vs %g", what, r, yg[r], d);
    }
    const spqr_cpu_kernels *ks[] = {spqr_cpu_kernels_avx2(), spqr_cpu_kernels_avx512(), spqr_cpu_kernels_neon()};
    int n = 0;
    for (int k = 0; k < 3; k++) {
        if (!ks[k]) continue;
        n++;
        ks[k]->qgemv(&v, 0, rows / 2, xs, gsum, scr, y);
        ks[k]->qgemv(&v, rows / 2, rows, xs, gsum, scr, y + rows / 2);
        for (uint32_t r = 0; r < rows; r++) {
            double mag = 0;
            for (uint32_t c = 0; c < cols; c++) mag += fabs((double)ref[(size_t)r * cols + c] * xs[c]);
            if (fabs(y[r] - yg[r]) > 1e-5 * (mag + fabs(yg[r])) + 1e-6) {
                th_fail(__FILE__, __LINE__, "%s: %s row %u: %.8g vs generic %.8g", what, ks[k]->name, r, y[r], yg[r]);
                break;
            }
        }
        ks[k]->qdequant(&v, 0, rows, scr, got);
        CHECKF(!memcmp(got, ref, (size_t)rows * cols * sizeof *ref), "%s: %s dequantization differs from the reference", what, ks[k]->name);
    }
    /* the tile layout: decodes bit-identically, and every tile kernel equals the generic product */
    if (v.kind == SPQR_TK_SPQR && v.qq_groupsize % SPQR_TILE_ROWS) {
        CHECKF(!spqr_qtiles_supported(&v) && !spqr_qtiles_build(&v), "%s: tiles built across second-level blocks", what);
    } else {
        spqr_qtiles *tl = spqr_qtiles_build(&v);
        CHECKF(tl != NULL, "%s: no tiles", what);
        if (tl) {
            memset(got, 0, (size_t)rows * cols * sizeof *got);
            spqr_qtiles_dequant_rows(tl, 0, rows, got);
            CHECKF(!memcmp(got, ref, (size_t)rows * cols * sizeof *ref), "%s: tiles decode differently from the reference", what);
            const uint32_t half = rows / 2 / SPQR_TILE_ROWS * SPQR_TILE_ROWS; /* a split on a tile boundary */
            const spqr_cpu_kernels *tk[] = {NULL, spqr_cpu_kernels_avx2(), spqr_cpu_kernels_avx512(), spqr_cpu_kernels_neon()};
            for (int k = 0; k < 4; k++) {
                if (k && (!tk[k] || !tk[k]->qgemv_tiles)) continue;
                const char *name = k ? tk[k]->name : "tiles reference";
                for (uint32_t r = 0; r < rows; r++) y[r] = NAN;
                if (k) {
                    tk[k]->qgemv_tiles(tl, 0, half, xs, gsum, y);
                    tk[k]->qgemv_tiles(tl, half, rows, xs, gsum, y + half);
                    n++;
                } else {
                    spqr_qtiles_gemv_ref(tl, 0, half, xs, gsum, y);
                    spqr_qtiles_gemv_ref(tl, half, rows, xs, gsum, y + half);
                }
                for (uint32_t r = 0; r < rows; r++) {
                    double mag = 0;
                    for (uint32_t c = 0; c < cols; c++) mag += fabs((double)ref[(size_t)r * cols + c] * xs[c]);
                    if (!(fabs(y[r] - yg[r]) <= 1e-5 * (mag + fabs(yg[r])) + 1e-6)) {
                        th_fail(__FILE__, __LINE__, "%s: %s row %u: %.8g vs generic %.8g", what, name, r, y[r], yg[r]);
                        break;
                    }
                }
            }
            /* 8-bit activations: every ISA kernel equals the reference; the reference is within the
               rounding of x of the fp32 product: |Σ_j w_j (x̃_j − x_j)| ≤ Σ_j |w_j| dx_g / 2 */
            int8_t *xq = malloc(cols);
            float *dx = malloc(v.lay.groups * sizeof *dx), *gq = malloc(v.lay.groups * sizeof *gq), *y8 = malloc(rows * sizeof *y8);
            spqr_act8_quantize(xs, cols, v.groupsize, xq, dx, gq);
            spqr_qtiles_gemv_act8_ref(tl, 0, rows, xq, dx, gq, xs, y8);
            for (uint32_t r = 0; r < rows; r++) {
                double bound = 0, mag = 0;
                for (uint32_t c = 0; c < cols; c++) {
                    double wv = ref[(size_t)r * cols + c];
                    mag += fabs(wv * xs[c]);
                    bound += fabs(wv) * dx[c / v.groupsize] / 2;
                }
                if (tl->o_ptr)
                    for (uint32_t k = tl->o_ptr[r]; k < tl->o_ptr[r + 1]; k++) bound += fabs(tl->o_delta[k]) * dx[tl->o_col[k] / v.groupsize] / 2;
                if (!(fabs(y8[r] - yg[r]) <= bound * 1.0001 + 1e-5 * mag + 1e-6)) {
                    th_fail(__FILE__, __LINE__, "%s: act8 reference row %u: %.8g vs fp32 %.8g (bound %.3g)", what, r, y8[r], yg[r], bound);
                    break;
                }
            }
            for (int k = 1; k < 4; k++) {
                if (!tk[k] || !tk[k]->qgemv_tiles_act8) continue;
                for (uint32_t r = 0; r < rows; r++) y[r] = NAN;
                tk[k]->qgemv_tiles_act8(tl, 0, half, xq, dx, gq, xs, y);
                tk[k]->qgemv_tiles_act8(tl, half, rows, xq, dx, gq, xs, y + half);
                n++;
                for (uint32_t r = 0; r < rows; r++) {
                    double mag = 0;
                    for (uint32_t c = 0; c < cols; c++) mag += fabs((double)ref[(size_t)r * cols + c] * xs[c]);
                    if (!(fabs(y[r] - y8[r]) <= 1e-5 * (mag + fabs(y8[r])) + 1e-6)) {
                        th_fail(__FILE__, __LINE__, "%s: %s act8 row %u: %.8g vs reference %.8g", what, tk[k]->name, r, y[r], y8[r]);
                        break;
                    }
                }
            }
            free(xq); free(dx); free(gq); free(y8);
            spqr_qtiles_free(tl);
        }
    }
    free(xs); free(gsum); free(scr); free(yg); free(y); free(ref); free(got);
    spqr_aligned_free(blob);
    return n;
}

static void test_random_blobs(void) {
    const uint32_t shapes[][2] = {{33, 128}, {16, 200}, {7, 72}, {40, 8}};
    const uint32_t gss[] = {8, 16, 32, 64, 128, 24, 12};
    int cases = 0, isa = 0;
    for (size_t s = 0; s < 4; s++)
        for (size_t gi = 0; gi < 7; gi++) {
            if (gss[gi] > shapes[s][1]) continue;
            for (uint32_t w = 1; w <= 8; w++) {
                spqr_file_tensor t = {0};
                char what[96];
                t.kind = SPQR_TK_GPTQ; t.n_dims = 2; t.shape[0] = shapes[s][0]; t.shape[1] = shapes[s][1];
                t.wbits = w; t.groupsize = gss[gi]; t.flags = (w & 1) ? SPQR_TF_PERM : 0;
                snprintf(what, sizeof what, "GPTQ %ux%u w%u g%u", shapes[s][0], shapes[s][1], w, gss[gi]);
                isa += check_all(&t, what);
                cases++;
                if (w > 4) continue;
                const uint32_t qqs[] = {1, 5, 16, 64, 32};
                for (int qi = 0; qi < 5; qi++) {
                    if (qqs[qi] > shapes[s][0]) continue;
                    t.kind = SPQR_TK_SPQR; t.qq_bits = 1 + (w + qi) % 4; t.qq_groupsize = qqs[qi]; t.flags = qi & 1 ? SPQR_TF_PERM : 0;
                    snprintf(what, sizeof what, "SpQR %ux%u w%u b1 %u q%u b2 %u", shapes[s][0], shapes[s][1], w, gss[gi], t.qq_bits, qqs[qi]);
                    isa += check_all(&t, what);
                    cases++;
                }
            }
        }
    CHECK(cases > 300);
    printf("    %d random matrices, %d ISA-kernel checks\n", cases, isa);
}

/* ---- the GPU tensor-core kernel's layout (cuda/mma_layout.h), its arithmetic emulated ---------- */

static float f16r(float f) { return spqr_f16_to_f32(spqr_f32_to_f16(f)); }

/* x [n][cols] (original column order) as the MMA kernels multiply it: fp16-rounded, in stored
 * column order, zero past cols, rows of nku·128. The caller frees it. */
static float *mma_emulate_x16(const spqr_mma_layout *L, const float *x, int n) {
    const uint32_t ld = L->nku * 128;
    float *x16 = malloc((size_t)n * ld * sizeof *x16);
    for (int b = 0; b < n; b++)
        for (uint32_t j = 0; j < ld; j++) x16[(size_t)b * ld + j] = j < L->cols ? f16r(x[(size_t)b * L->cols + (L->perm ? (uint32_t)L->perm[j] : j)]) : 0.f;
    return x16;
}

/* y += the outlier segments' δ·x16 (the MMA kernels' outlier step). */
static void mma_emulate_outliers(const spqr_mma_layout *L, const float *x16, int n, double *y) {
    const uint32_t ld = L->nku * 128;
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t ks = 0; ks < L->S; ks++)
            for (uint32_t r = 0; r < 32; r++) {
                const uint64_t seg = ((uint64_t)rt * L->S + ks) * 32 + r;
                for (uint32_t k = L->optr[seg]; k < L->optr[seg + 1]; k++)
                    for (int b = 0; b < n; b++)
                        y[(size_t)b * L->rows + rt * 32 + r] += (double)spqr_f16_to_f32(L->odelta[k]) * x16[(size_t)b * ld + L->ocol[k]];
            }
}

/* A lane's unit as the MMA kernels decode it (mma_unit_decode): its 4W code words and, per field
 * f = (kc·2 + mt)·2 + h, the fp16 constants K1, HS, HK (weight = ((1024 + c) − K1)·HS + HK in fp16). */
static void mma_emulate_lane(const spqr_mma_layout *L, uint32_t rt, uint32_t u, unsigned lane, uint32_t w[16], float K1[8], float HS[8], float HK[8]) {
    const unsigned W = L->wbits, gl = lane >> 2, t = lane & 3;
    const uint64_t unit = (uint64_t)rt * L->nku + u;
    for (unsigned k = 0; k < 4 * W; k++) w[k] = L->codes[((unit * W + k / 4) * 32 + lane) * 4 + k % 4];
    for (unsigned fi = 0; fi < 8; fi++) {
        const unsigned kc = fi >> 2, mt = (fi >> 1) & 1, h = fi & 1;
        const uint32_t g = (u * 128 + kc * 64 + 16 * t) / L->gs, row = rt * 32 + mt * 16 + h * 8 + gl;
        float s, z;
        if (L->kind == SPQR_TK_SPQR) {
            const uint32_t byte = (L->fields[unit * 64 + lane * 2 + (fi >> 2)] >> (8 * (fi & 3))) & 0xffu;
            const uint16_t *q = L->qq + ((uint64_t)((rt * 32 + mt * 16) / L->qq_gs) * L->gpad + g) * 4;
            const float ss = spqr_f16_to_f32(q[0]), sz = spqr_f16_to_f32(q[1]), zs = spqr_f16_to_f32(q[2]), zz = spqr_f16_to_f32(q[3]);
            s = fmaf((float)(byte & 15u), ss, -ss * sz);
            z = fmaf((float)(byte >> 4), zs, -zs * zz);
        } else {
            const uint32_t f = L->fields[(uint64_t)row * L->gpad + g];
            s = spqr_f16_to_f32((uint16_t)(f & 0xffffu));
            z = (float)(f >> 16);
        }
        const float zr = fminf(fmaxf(rintf(z), -512.f), 512.f);
        K1[fi] = 1024.f + zr;
        HS[fi] = f16r(s);
        HK[fi] = f16r(-s * (z - zr));
    }
}

/* Half e of pair q of a lane's words, dequantized as the kernels do (HSUB2 exact, HFMA2 rounded). */
static float mma_emulate_weight(const uint32_t *w, unsigned W, unsigned q, unsigned e, const float *K1, const float *HS, const float *HK, unsigned f) {
    const float c = spqr_f16_to_f32((uint16_t)(spqr_mma_pair(w, W, q) >> (16 * e))) - K1[f]; /* exact */
    return f16r((float)((double)c * HS[f] + HK[f]));
}

/* y[b][r] (double) of the MMA kernel (spqr_cuda_mma.cu), emulated lane by lane from the layout: the
 * kernel's fp16 weights, fp16 activations, every (row, k) element of every fragment placed by the PTX
 * fragment layout of mma.m16n8k16, then the outlier segments. x [n][cols] in the original column order. */
static void mma_emulate(const spqr_mma_layout *L, const float *x, int n, double *y) {
    const unsigned W = L->wbits;
    memset(y, 0, (size_t)n * L->rows * sizeof *y);
    float *x16 = mma_emulate_x16(L, x, n);
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t u = 0; u < L->nku; u++)
            for (unsigned lane = 0; lane < 32; lane++) {
                const unsigned gl = lane >> 2, t = lane & 3;
                uint32_t w[16];
                float K1[8], HS[8], HK[8];
                mma_emulate_lane(L, rt, u, lane, w, K1, HS, HK);
                for (unsigned kc = 0; kc < 2; kc++)
                    for (unsigned s = 0; s < 4; s++)
                        for (unsigned mt = 0; mt < 2; mt++)
                            for (unsigned i = 0; i < 4; i++) { /* register i of the A fragment, as the kernel builds it */
                                const unsigned h = i & 1, p = 2 * s + (i >> 1), f = (kc * 2 + mt) * 2 + h;
                                for (unsigned e = 0; e < 2; e++) {
                                    const float wv = mma_emulate_weight(w, W, f * 8 + p, e, K1, HS, HK, f);
                                    /* PTX m16n8k16 A: reg i holds row gl + 8 (i & 1), k = 2t + e + 8 (i >> 1) */
                                    const uint32_t row = rt * 32 + mt * 16 + gl + 8 * (i & 1);
                                    const uint32_t j = u * 128 + spqr_mma_kcol(kc, s, 2 * t + e + 8 * (i >> 1));
                                    if (row >= L->rows) continue;
                                    for (int b = 0; b < n; b++) y[(size_t)b * L->rows + row] += (double)wv * x16[(size_t)b * L->nku * 128 + j];
                                }
                            }
            }
    if (L->kind == SPQR_TK_SPQR) mma_emulate_outliers(L, x16, n, y);
    free(x16);
}

/* v12's fp16 weights w16 [rows][nku·128] (spqr_cuda_mma.cu), emulated with its kernels' index
 * arithmetic: k_mma_dequant's lane (gl, t) writes pairs p of field f = (kc·2 + mt)·2 + h at row
 * 32 rt + 16 mt + 8 h + gl, columns 128 u + 64 kc + 16 t + 2p + e; then k_mma_outliers gives entry k of
 * the 32-segment group of (rt, ks) the row of the last segment starting at or before it (its binary
 * search over the 33 starts) and adds the fp16 delta in fp32, rounded to fp16. */
static void v12_emulate_w16(const spqr_mma_layout *L, float *w16) {
    const unsigned W = L->wbits;
    const uint32_t ld = L->nku * 128;
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t u = 0; u < L->nku; u++)
            for (unsigned lane = 0; lane < 32; lane++) {
                const unsigned gl = lane >> 2, t = lane & 3;
                uint32_t w[16];
                float K1[8], HS[8], HK[8];
                mma_emulate_lane(L, rt, u, lane, w, K1, HS, HK);
                for (unsigned f = 0; f < 8; f++) {
                    const unsigned kc = f >> 2, mt = (f >> 1) & 1, h = f & 1;
                    const uint32_t row = rt * 32 + mt * 16 + h * 8 + gl;
                    if (row >= L->rows) continue;
                    for (unsigned p = 0; p < 8; p++)
                        for (unsigned e = 0; e < 2; e++)
                            w16[(size_t)row * ld + u * 128 + kc * 64 + 16 * t + 2 * p + e] = mma_emulate_weight(w, W, f * 8 + p, e, K1, HS, HK, f);
                }
            }
    if (L->kind != SPQR_TK_SPQR) return;
    for (uint64_t grp = 0; grp < (uint64_t)L->nrt * L->S; grp++) {
        const uint32_t *sp = L->optr + grp * 32, rt0 = (uint32_t)(grp / L->S) * 32;
        for (uint32_t k = sp[0]; k < sp[32]; k++) {
            unsigned lo = 0;
            for (unsigned step = 16; step; step >>= 1) lo += sp[lo + step] <= k ? step : 0;
            if (rt0 + lo >= L->rows) continue;
            float *pw = w16 + (size_t)(rt0 + lo) * ld + L->ocol[k];
            *pw = f16r(*pw + spqr_f16_to_f32(L->odelta[k]));
        }
    }
}

/* Stored column, within the group, of MMA index k in the group-sum layout (lane t's k = 2t, 2t + 1,
 * 2t + 8, 2t + 9 are the group's columns 4t .. 4t + 3). */
static unsigned gsum_kcol(unsigned k) { return 4 * ((k & 7) >> 1) + 2 * (k >> 3) + (k & 1); }

/* y[b][r] (double) of the group-sum kernel (v8, spqr_cuda_mma.cu) with NB-wide column sets, b < n <=
 * NB: the A matrix of every (m-tile, group) MMA rebuilt from the 32 lanes' registers by the PTX
 * m16n8k16 fragment layout, B as the kernel loads it (zero outside the group's columns), the
 * accumulators of each set, then the kernel's fp32 epilogue per (lane, m-tile, row, column). */
static void gsum_emulate(const spqr_mma_layout *L, const float *x, int n, int NB, double *y) {
    const unsigned W = L->wbits, GPS = 8 / NB;
    memset(y, 0, (size_t)n * L->rows * sizeof *y);
    const uint32_t ld = L->nku * 128;
    float *x16 = mma_emulate_x16(L, x, n);
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t u = 0; u < L->nku; u++) {
            const uint64_t unit = (uint64_t)rt * L->nku + u;
            static float A[2][8][16][16];
            for (unsigned lane = 0; lane < 32; lane++) {
                const unsigned gl = lane >> 2, t = lane & 3;
                uint32_t w[16];
                for (unsigned k = 0; k < 4 * W; k++) w[k] = L->codes[((unit * W + k / 4) * 32 + lane) * 4 + k % 4];
                for (unsigned mt = 0; mt < 2; mt++)
                    for (unsigned G = 0; G < 8; G++)
                        for (unsigned i = 0; i < 4; i++) {
                            const uint32_t m = spqr_gsum_pair(w + mt * 2 * W, W, G, i, 0x64006400u);
                            for (unsigned e = 0; e < 2; e++) /* reg i: row gl + 8 (i & 1), k = 2t + e + 8 (i >> 1) */
                                A[mt][G][gl + 8 * (i & 1)][2 * t + e + 8 * (i >> 1)] = spqr_f16_to_f32((uint16_t)(m >> (16 * e)));
                        }
            }
            float X[8][8]; /* [activation][group] sums of the fp16 x */
            for (int b = 0; b < n; b++)
                for (unsigned G = 0; G < 8; G++) {
                    float sx = 0.f;
                    for (unsigned c = 0; c < 16; c++) sx += x16[(size_t)b * ld + u * 128 + 16 * G + c];
                    X[b][G] = sx;
                }
            for (unsigned mt = 0; mt < 2; mt++)
                for (int s = 0; s < NB; s++) {
                    double C[16][8] = {{0}};
                    for (unsigned gi = 0; gi < GPS; gi++) {
                        const unsigned G = s * GPS + gi;
                        for (unsigned c = 0; c < 8; c++) {
                            const int b = (int)(c % NB);
                            if (c / NB != gi || b >= n) continue; /* B column c of this MMA is zero */
                            for (unsigned r = 0; r < 16; r++)
                                for (unsigned k = 0; k < 16; k++)
                                    C[r][c] += (double)A[mt][G][r][k] * x16[(size_t)b * ld + u * 128 + 16 * G + gsum_kcol(k)];
                        }
                    }
                    for (unsigned lane = 0; lane < 32; lane++) {
                        const unsigned gl = lane >> 2, t = lane & 3;
                        for (unsigned h = 0; h < 2; h++)
                            for (unsigned e = 0; e < 2; e++) {
                                const unsigned c = 2 * t + e, G = s * GPS + c / NB;
                                const int b = (int)(c % NB);
                                const uint32_t row = rt * 32 + mt * 16 + gl + 8 * h;
                                if (b >= n || row >= L->rows) continue;
                                const uint32_t byte = (L->fields[unit * 64 + (row % 32) * 2 + (G >> 2)] >> (8 * (G & 3))) & 0xffu;
                                const uint16_t *q = L->qq + ((uint64_t)((rt * 32 + mt * 16) / L->qq_gs) * L->gpad + u * 8 + G) * 4;
                                const float F = (float)(1u << spqr_gsum_o(W, G));
                                const float ss = spqr_f16_to_f32(q[0]), sz = spqr_f16_to_f32(q[1]), zs = spqr_f16_to_f32(q[2]), zz = spqr_f16_to_f32(q[3]);
                                const float ssF = ss / F, nsszF = -(ss * sz) / F, zsF = zs * F, kz0 = 1024.f - zs * zz * F;
                                const float s1 = fmaf((float)(byte & 15u), ssF, nsszF), kz = fmaf((float)(byte >> 4), zsF, kz0);
                                y[(size_t)b * L->rows + row] += (double)s1 * fmaf(-kz, X[b][G], (float)C[gl + 8 * h][c]);
                            }
                    }
                }
        }
    mma_emulate_outliers(L, x16, n, y);
    free(x16);
}

/* ‖y − W·x‖ / ‖W·x‖ over n activations, W = ref [rows][cols] (original column order), in double. */
static double emulated_rel_err(const float *ref, const float *x, const double *y, int n, uint32_t rows, uint32_t cols) {
    double num = 0, den = 0;
    for (int b = 0; b < n; b++)
        for (uint32_t r = 0; r < rows; r++) {
            double d = 0;
            for (uint32_t c = 0; c < cols; c++) d += (double)ref[(size_t)r * cols + c] * x[(size_t)b * cols + c];
            num += (y[(size_t)b * rows + r] - d) * (y[(size_t)b * rows + r] - d);
            den += d * d;
        }
    return sqrt(num / (den > 0 ? den : 1));
}

/* The layout's bookkeeping (outlier segments in range, in their slice, columns ascending) and the
 * emulated kernel against W·x in double: fp16 weights and activations, so 2e-3 relative. */
static void check_mma(spqr_file_tensor *t, uint32_t S, int gsum, const char *what) {
    spqr_qview v;
    spqr_error err;
    uint8_t *blob = random_view(t, &v, what);
    if (!blob) return;
    spqr_mma_layout L;
    if ((gsum ? spqr_gsum_build(&v, S, &L, &err) : spqr_mma_build(&v, S, &L, &err)) != SPQR_OK) {
        th_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
        spqr_aligned_free(blob);
        return;
    }
    const uint32_t rows = v.rows, cols = v.cols;
    CHECKF(L.S >= 1 && L.S * L.ups >= L.nku && (L.S - 1) * L.ups < L.nku, "%s: slices %u x %u units for %u", what, L.S, L.ups, L.nku);
    const uint64_t nseg = (uint64_t)L.nrt * L.S * 32;
    CHECKF(L.optr[0] == 0 && L.optr[nseg] == L.n_out, "%s: outlier segments cover %u of %llu", what, L.optr[nseg], (unsigned long long)L.n_out);
    for (uint64_t sg = 0; sg < nseg; sg++) {
        const uint32_t ks = (uint32_t)((sg / 32) % L.S);
        for (uint32_t k = L.optr[sg]; k < L.optr[sg + 1]; k++) {
            const uint32_t c = L.ocol[k];
            if (c / (L.ups * 128) != ks || (k > L.optr[sg] && c <= L.ocol[k - 1])) {
                th_fail(__FILE__, __LINE__, "%s: outlier %u (column %u) misplaced in segment %llu", what, k, c, (unsigned long long)sg);
                sg = nseg;
                break;
            }
        }
    }
    /* v7: n = 3 against the fp32 x (its fp16 weights and activations: 2e-3); v8: n = 1, 3, 8 (column
     * sets of 1, 4, 8) against W·x16, the fp16-rounded x the kernel multiplies (fp32 arithmetic; the
     * fp16 outlier deltas leave up to ~1e-4 on the q1 case: 2.5e-4) */
    const int ns[3] = {3, 1, 8}, NBs[3] = {0, 1, 8};
    float *x = malloc((size_t)8 * cols * sizeof *x), *ref = malloc((size_t)rows * cols * sizeof *ref);
    double *y = malloc((size_t)8 * rows * sizeof *y);
    spqr_qview_dequant_rows(&v, 0, rows, 1, ref);
    for (int ci = 0; ci < (gsum ? 3 : 1); ci++) {
        const int n = ns[ci], NB = gsum ? (ci == 0 ? 4 : NBs[ci]) : 0;
        for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = gsum ? f16r(frnd()) : frnd();
        if (gsum) gsum_emulate(&L, x, n, NB, y);
        else mma_emulate(&L, x, n, y);
        const double rel = emulated_rel_err(ref, x, y, n, rows, cols), tol = gsum ? 2.5e-4 : 2e-3;
        CHECKF(rel <= tol, "%s (S %u, %s n %d): emulated kernel rel. error %.3e", what, L.S, gsum ? "gsum" : "mma", n, rel);
    }
    if (!gsum) { /* v12: its fp16 weights times x16 (fp64 here, as cuBLAS accumulates in fp32) */
        const uint32_t ld = L.nku * 128;
        float *w16 = calloc((size_t)rows * ld, sizeof *w16);
        const int n = 3;
        for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = frnd();
        float *x16 = mma_emulate_x16(&L, x, n);
        v12_emulate_w16(&L, w16);
        for (int b = 0; b < n; b++)
            for (uint32_t r = 0; r < rows; r++) {
                double a = 0;
                for (uint32_t j = 0; j < ld; j++) a += (double)w16[(size_t)r * ld + j] * x16[(size_t)b * ld + j];
                y[(size_t)b * rows + r] = a;
            }
        const double rel = emulated_rel_err(ref, x, y, n, rows, cols);
        CHECKF(rel <= 2e-3, "%s (S %u, v12 n %d): emulated dequantization rel. error %.3e", what, L.S, n, rel);
        free(x16); free(w16);
    }
    free(x); free(ref); free(y);
    spqr_mma_free(&L);
    spqr_aligned_free(blob);
}

static void test_mma_layout(void) {
    const struct { uint32_t kind, rows, cols, w, gs, q, qq_gs, S; } cs[] = {
        {SPQR_TK_SPQR, 64, 256, 3, 16, 3, 16, 1},   {SPQR_TK_SPQR, 70, 300, 3, 16, 3, 16, 2},  {SPQR_TK_SPQR, 33, 640, 2, 16, 3, 32, 3},
        {SPQR_TK_SPQR, 100, 1000, 4, 16, 4, 16, 0}, {SPQR_TK_SPQR, 48, 520, 3, 32, 2, 48, 2},  {SPQR_TK_SPQR, 16, 130, 4, 64, 3, 16, 1},
        {SPQR_TK_SPQR, 96, 384, 2, 16, 1, 64, 3},   {SPQR_TK_SPQR, 20, 40, 3, 16, 3, 16, 1},   {SPQR_TK_GPTQ, 65, 512, 4, 128, 0, 0, 2},
        {SPQR_TK_GPTQ, 40, 200, 3, 16, 0, 0, 1},    {SPQR_TK_GPTQ, 33, 700, 2, 64, 0, 0, 4},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        spqr_file_tensor t = {0};
        char what[96];
        t.kind = cs[i].kind; t.n_dims = 2; t.shape[0] = cs[i].rows; t.shape[1] = cs[i].cols;
        t.wbits = cs[i].w; t.groupsize = cs[i].gs; t.qq_bits = cs[i].q; t.qq_groupsize = cs[i].qq_gs; t.flags = i & 1 ? SPQR_TF_PERM : 0;
        snprintf(what, sizeof what, "%s %ux%u w%u g%u q%u/%u", cs[i].kind == SPQR_TK_SPQR ? "SpQR" : "GPTQ", cs[i].rows, cs[i].cols, cs[i].w,
                 cs[i].gs, cs[i].q, cs[i].qq_gs);
        check_mma(&t, cs[i].S, 0, what);
        if (cs[i].kind == SPQR_TK_SPQR && cs[i].gs == 16) check_mma(&t, cs[i].S, 1, what);
    }
    /* what the kernel does not take */
    spqr_qview v = {.kind = SPQR_TK_SPQR, .wbits = 3, .groupsize = 8, .qq_bits = 3, .qq_groupsize = 16, .cols = 64};
    CHECK(!spqr_mma_supported(&v));
    v.groupsize = 16; v.qq_groupsize = 8;
    CHECK(!spqr_mma_supported(&v));
    v.qq_groupsize = 16; v.wbits = 5;
    CHECK(!spqr_mma_supported(&v));
    v.wbits = 3; v.groupsize = 48;
    CHECK(!spqr_mma_supported(&v));
    v.groupsize = 16;
    CHECK(spqr_mma_supported(&v));
    CHECK(spqr_gsum_supported(&v));
    v.groupsize = 32;
    CHECK(!spqr_gsum_supported(&v));
}

/* ---- the streaming GEMV's layout (cuda/stream_layout.h), its arithmetic emulated -------------- */

/* y[b][r] (double) of the streaming kernel (v10, spqr_cuda_stream.cu), b < n: per SA and atom the A
 * matrix of every group's MMA rebuilt from the 32 lanes' code words by the PTX m16n8k16 fragment layout
 * (register i of lane 4 gl + t: row gl + 8 (i & 1), k = 2t + e + 8 (i >> 1) = stored column
 * 4t + 2 (i >> 1) + e of the group), the accumulator 1024 Σx + 2^o Σ c x in double, then the kernel's
 * fp32 epilogue with the statistics read as the kernel reads them (a lane's own record for the NB = 1
 * pass, spqr_stream_field for wider ones: both are checked to agree), then the outlier entries. */
static void stream_emulate(const spqr_stream_layout *L, const float *x, int n, double *y) {
    const unsigned W = L->wbits, q = L->qq_bits, qm = (1u << q) - 1;
    const uint32_t ld = L->nk * 256;
    memset(y, 0, (size_t)n * L->rows * sizeof *y);
    float *x16 = malloc((size_t)n * ld * sizeof *x16);
    for (int b = 0; b < n; b++) {
        for (uint32_t j = 0; j < ld; j++) x16[(size_t)b * ld + j] = 0.f;
        for (uint32_t i = 0; i < L->cols; i++) x16[(size_t)b * ld + (L->iperm ? L->iperm[i] : i)] = f16r(x[(size_t)b * L->cols + i]);
    }
    int bad_fields = 0;
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t kc = 0; kc < L->nk; kc++) {
            const uint8_t *rec = L->recs + ((uint64_t)rt * L->nk + kc) * L->rec_bytes;
            const uint8_t *fp = rec + spqr_stream_code_bytes(W);
            const uint16_t *qq = (const uint16_t *)(fp + 128 + spqr_stream_fieldb_bytes(q));
            for (unsigned a = 0; a < 2; a++) {
                static float A[8][16][16];
                for (unsigned lane = 0; lane < 32; lane++) {
                    const unsigned gl = lane >> 2, t = lane & 3;
                    uint32_t w[16];
                    for (unsigned k = 0; k < 4 * W; k++) w[k] = ((const uint32_t *)rec)[((k / 4) * 32 + lane) * 4 + k % 4];
                    for (unsigned G = 0; G < 8; G++)
                        for (unsigned i = 0; i < 4; i++) {
                            const uint32_t m = spqr_gsum_pair(w + 2 * W * a, W, G, i, 0x64006400u);
                            for (unsigned e = 0; e < 2; e++) A[G][gl + 8 * (i & 1)][2 * t + e + 8 * (i >> 1)] = spqr_f16_to_f32((uint16_t)(m >> (16 * e)));
                        }
                    /* the lane's own record (NB = 1) against the general accessor (NB >= 2) */
                    const uint64_t fr = spqr_stream_lane_fields(fp, q, lane);
                    for (unsigned f = 0; f < 4; f++) {
                        const uint32_t own = (uint32_t)(fr >> (8 * q * a + 2 * q * f)) & ((1u << 2 * q) - 1);
                        bad_fields += own != spqr_stream_field(fp, q, gl + 8 * (f >> 1), 8 * a + 2 * t + (f & 1));
                    }
                }
                for (unsigned G = 0; G < 8; G++) {
                    const unsigned g16 = 8 * a + G;
                    const float F = (float)(1u << spqr_gsum_o(W, G));
                    const float ss = spqr_f16_to_f32(qq[4 * g16]), sz = spqr_f16_to_f32(qq[4 * g16 + 1]);
                    const float zs = spqr_f16_to_f32(qq[4 * g16 + 2]), zz = spqr_f16_to_f32(qq[4 * g16 + 3]);
                    const float ssO = ss / F, nszO = -ssO * sz, zsO = zs * F, kz0 = fmaf(-zsO, zz, 1024.f);
                    for (unsigned r = 0; r < 16; r++) {
                        const uint32_t row = rt * 16 + r;
                        if (row >= L->rows) continue;
                        const uint32_t fld = spqr_stream_field(fp, q, r, g16);
                        const float s1 = fmaf((float)(fld & qm), ssO, nszO), kz = fmaf((float)(fld >> q), zsO, kz0);
                        for (int b = 0; b < n; b++) {
                            const float *xg = x16 + (size_t)b * ld + kc * 256 + 16 * g16;
                            double C = 0;
                            float X = 0.f;
                            for (unsigned k = 0; k < 16; k++) C += (double)A[G][r][k] * xg[gsum_kcol(k)];
                            for (unsigned c = 0; c < 16; c++) X += xg[c];
                            y[(size_t)b * L->rows + row] += (double)s1 * fmaf(-kz, X, (float)C);
                        }
                    }
                }
            }
            for (uint32_t k = L->osa[(uint64_t)rt * L->nk + kc]; k < L->osa[(uint64_t)rt * L->nk + kc + 1]; k++) {
                const uint32_t e = L->oent[k], row = rt * 16 + ((e >> 8) & 15), col = kc * 256 + (e & 255);
                for (int b = 0; b < n; b++) y[(size_t)b * L->rows + row] += (double)spqr_f16_to_f32((uint16_t)(e >> 16)) * x16[(size_t)b * ld + col];
            }
        }
    CHECKF(bad_fields == 0, "stream layout: %d fields differ between a lane's record and spqr_stream_field", bad_fields);
    free(x16);
}

/* The layout's bookkeeping (outlier entries sorted and in range, every outlier once; the block partition)
 * and the emulated kernel against W·x16 in double (fp32 statistics, fp16 outlier deltas: 2.5e-4). */
static void check_stream(spqr_file_tensor *t, const char *what) {
    spqr_qview v;
    spqr_error err;
    uint8_t *blob = random_view(t, &v, what);
    if (!blob) return;
    spqr_stream_layout L;
    if (spqr_stream_build(&v, &L, &err) != SPQR_OK) {
        th_fail(__FILE__, __LINE__, "%s: %s", what, err.msg);
        spqr_aligned_free(blob);
        return;
    }
    const uint32_t rows = v.rows, cols = v.cols;
    CHECKF(L.osa[0] == 0 && L.osa[L.nsa] == L.n_out && L.n_out == v.n_outliers, "%s: outlier entries cover %u of %llu", what, L.osa[L.nsa],
           (unsigned long long)v.n_outliers);
    int unsorted = 0;
    for (uint64_t s = 0; s < L.nsa; s++)
        for (uint32_t k = L.osa[s] + 1; k < L.osa[s + 1]; k++) unsorted += (L.oent[k] & 0xfffu) <= (L.oent[k - 1] & 0xfffu); /* row << 8 | col */
    CHECKF(unsorted == 0, "%s: %d outlier entries out of (row, column) order", what, unsorted);
    /* the partition: every SA in exactly one block, block_of the inverse of block_start */
    for (uint32_t G = 1; G <= 29; G += 4) {
        if (G > L.nsa) break;
        int badp = 0;
        for (uint32_t b = 0; b < G; b++)
            for (uint64_t s = spqr_stream_block_start(L.nsa, G, b); s < spqr_stream_block_start(L.nsa, G, b + 1); s++) badp += spqr_stream_block_of(L.nsa, G, s) != b;
        CHECKF(badp == 0 && spqr_stream_block_start(L.nsa, G, G) == L.nsa, "%s: block partition (G = %u) wrong for %d SAs", what, G, badp);
        uint32_t pieces = 1; /* the most blocks a row tile is split between: within the workspace stride */
        for (uint64_t rt = 0; rt < L.nrt; rt++) {
            uint32_t first, last;
            spqr_stream_tile_blocks(L.nsa, G, L.nk, rt, &first, &last);
            if (last - first + 1 > pieces) pieces = last - first + 1;
        }
        CHECKF(pieces <= spqr_stream_pieces_max(L.nsa, G, L.nk), "%s: %u pieces a tile, bound %u (G = %u)", what, pieces,
               spqr_stream_pieces_max(L.nsa, G, L.nk), G);
    }
    const int n = 3;
    float *x = malloc((size_t)n * cols * sizeof *x), *ref = malloc((size_t)rows * cols * sizeof *ref);
    double *y = malloc((size_t)n * rows * sizeof *y);
    spqr_qview_dequant_rows(&v, 0, rows, 1, ref);
    for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = f16r(frnd());
    stream_emulate(&L, x, n, y);
    const double rel = emulated_rel_err(ref, x, y, n, rows, cols);
    CHECKF(rel <= 2.5e-4, "%s: emulated streaming kernel rel. error %.3e", what, rel);
    free(x); free(ref); free(y);
    spqr_stream_free(&L);
    spqr_aligned_free(blob);
}

static void test_stream_layout(void) {
    const struct { uint32_t rows, cols, w, q, qq_gs; } cs[] = {
        {64, 256, 3, 3, 16}, {70, 300, 3, 3, 16}, {33, 640, 2, 3, 32}, {100, 1000, 4, 4, 16}, {48, 520, 3, 2, 48},
        {96, 384, 2, 1, 64}, {20, 40, 3, 3, 16},  {37, 777, 4, 3, 32}, {128, 512, 3, 4, 64},
    };
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        spqr_file_tensor t = {0};
        char what[96];
        t.kind = SPQR_TK_SPQR; t.n_dims = 2; t.shape[0] = cs[i].rows; t.shape[1] = cs[i].cols;
        t.wbits = cs[i].w; t.groupsize = 16; t.qq_bits = cs[i].q; t.qq_groupsize = cs[i].qq_gs; t.flags = i & 1 ? 0 : SPQR_TF_PERM;
        snprintf(what, sizeof what, "stream SpQR %ux%u w%u q%u/%u", cs[i].rows, cs[i].cols, cs[i].w, cs[i].q, cs[i].qq_gs);
        check_stream(&t, what);
    }
    spqr_qview v = {.kind = SPQR_TK_SPQR, .wbits = 3, .groupsize = 16, .qq_bits = 3, .qq_groupsize = 16, .cols = 4096};
    CHECK(spqr_stream_supported(&v));
    v.groupsize = 32;
    CHECK(!spqr_stream_supported(&v));
    v.groupsize = 16; v.qq_groupsize = 8;
    CHECK(!spqr_stream_supported(&v));
    v.qq_groupsize = 16; v.qq_bits = 5;
    CHECK(!spqr_stream_supported(&v));
    v.qq_bits = 3; v.kind = SPQR_TK_GPTQ;
    CHECK(!spqr_stream_supported(&v));
}

/* v9's code words (act8_layout.h): every code of random tiles comes back from spqr_a8_quad in the
 * byte of its column, and an IDP4A-style dot of each quad with random int8 activations equals the
 * direct sum of the tile's codes times them. */
static void test_act8_layout(void) {
    for (unsigned W = 2; W <= 4; W++)
        for (int rep = 0; rep < 50; rep++) {
            uint8_t c[256];
            int8_t xq[256];
            uint32_t words[32];
            for (int j = 0; j < 256; j++) {
                c[j] = (uint8_t)(rep == 0 ? (1u << W) - 1 : rep == 1 ? j % (1u << W) : rnd() % (1u << W));
                xq[j] = (int8_t)((int)(rnd() % 255) - 127);
            }
            spqr_a8_pack_tile(c, W, words);
            if (rep == 0) { /* all codes at their maximum: exactly the 8W words' bits, none outside */
                uint32_t ones = 0;
                for (unsigned i = 0; i < 8 * W; i++) ones += (uint32_t)__builtin_popcount(words[i]);
                CHECK(ones == 256 * W);
            }
            int bad = 0;
            for (unsigned u = 0; u < 2; u++)
                for (unsigned i = 0; i < 8; i++) {
                    int32_t dot = 0, ref = 0;
                    for (unsigned k = 0; k < 4; k++) {
                        const uint32_t qd = spqr_a8_quad(words + u * 4 * W, W, i, k);
                        for (unsigned b = 0; b < 4; b++) {
                            const unsigned j = u * 128 + 16 * i + 4 * k + b;
                            bad += ((qd >> (8 * b)) & 255u) != c[j];
                            dot += (int32_t)((qd >> (8 * b)) & 255u) * xq[j];
                            ref += (int32_t)c[j] * xq[j];
                        }
                    }
                    bad += dot != ref;
                }
            CHECK(bad == 0);
        }
}

/* ---- fixed-order products (kernels/ordered.h) --------------------------------------------------- */

/* The definition, element by element, written out here independently of the library. */
static void ordered_ref(const spqr_ordered_args *g, int reversed) {
    for (int i = 0; i < g->M; i++)
        for (int j = g->upper ? i : 0; j < g->N; j++)
            for (int k0 = 0; k0 < g->K; k0 += SPQR_ORDERED_CHUNK) {
                const int k1 = k0 + SPQR_ORDERED_CHUNK < g->K ? k0 + SPQR_ORDERED_CHUNK : g->K;
                float acc = 0.0f;
                for (int t = k0; t < k1; t++) {
                    const int k = reversed ? k1 - 1 - (t - k0) : t;
                    acc = fmaf(g->A[i * g->a_si + k * g->a_sk], g->B[k * g->ldb + j], acc);
                }
                const float a = g->alpha * acc;
                g->C[i * g->ldc + j] = g->C[i * g->ldc + j] + a;
            }
}

static float wide_rnd(void) { return ldexpf(frnd(), (int)(rnd() % 13) - 6); } /* magnitudes 2^-6 .. 2^6 */

/* The number of defined entries where C and R differ in any bit. */
static long ordered_diff(const spqr_ordered_args *g, const float *C, const float *R) {
    long bad = 0;
    for (int i = 0; i < g->M; i++)
        for (int j = g->upper ? i : 0; j < g->N; j++) bad += memcmp(&C[i * g->ldc + j], &R[i * g->ldc + j], sizeof(float)) != 0;
    return bad;
}

static void test_ordered(void) {
    /* {M, N, K, upper, A as X[k][i] (Hessian) or E[i][k] (block update)} */
    static const int shapes[][5] = {{150, 150, 1100, 1, 1}, {33, 33, 512, 1, 1}, {37, 53, 1100, 0, 0}, {96, 300, 128, 0, 0}, {5, 17, 3, 0, 1}};
    const spqr_cpu_kernels *ks[] = {spqr_cpu_kernels_generic(), spqr_cpu_kernels_avx2(), spqr_cpu_kernels_avx512(), spqr_cpu_kernels_neon()};
    spqr_pool *pool = spqr_pool_new(3);
    CHECK(pool != NULL);
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2], upper = shapes[s][3], hess = shapes[s][4];
        const int lda = hess ? M + 3 : K + 1, ldb = N + 5, ldc = N + 2;
        float *A = malloc(sizeof(float) * (size_t)(hess ? K * lda : M * lda)), *B = malloc(sizeof(float) * (size_t)K * ldb);
        float *C0 = malloc(sizeof(float) * (size_t)M * ldc), *R = malloc(sizeof(float) * (size_t)M * ldc), *C = malloc(sizeof(float) * (size_t)M * ldc);
        for (int i = 0; i < (hess ? K * lda : M * lda); i++) A[i] = wide_rnd();
        for (int i = 0; i < K * ldb; i++) B[i] = wide_rnd();
        for (int i = 0; i < M * ldc; i++) C0[i] = wide_rnd();
        spqr_ordered_args g = {M, N, K, s % 2 ? -1.0f : 2.0f / 128, A, hess ? 1 : lda, hess ? lda : 1, B, ldb, NULL, ldc, upper};
        memcpy(R, C0, sizeof(float) * (size_t)M * ldc);
        g.C = R;
        ordered_ref(&g, 0);
        for (size_t f = 0; f < sizeof ks / sizeof ks[0]; f++) {
            if (!ks[f]) continue;
            memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
            g.C = C;
            ks[f]->ordered(&g, 0, 1);
            long bad = ordered_diff(&g, C, R);
            CHECKF(bad == 0, "ordered %s %dx%dx%d upper %d: %ld entries differ from the definition", ks[f]->name, M, N, K, upper, bad);
            memcpy(C, C0, sizeof(float) * (size_t)M * ldc); /* rows split three ways: the same bits */
            for (int t = 0; t < 3; t++) ks[f]->ordered(&g, t, 3);
            CHECKF(ordered_diff(&g, C, R) == 0, "ordered %s %dx%dx%d: rows split 3 ways differ", ks[f]->name, M, N, K);
        }
        memcpy(C, C0, sizeof(float) * (size_t)M * ldc); /* the threaded driver */
        g.C = C;
        spqr_ordered_gemm(pool, &g);
        CHECKF(ordered_diff(&g, C, R) == 0, "ordered on 3 threads %dx%dx%d differs", M, N, K);
        if (K > SPQR_ORDERED_CHUNK) { /* K split at a chunk boundary: the same bits */
            memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
            spqr_ordered_args g1 = g, g2 = g;
            g1.K = SPQR_ORDERED_CHUNK;
            g2.K = K - SPQR_ORDERED_CHUNK;
            g2.A = A + (ptrdiff_t)SPQR_ORDERED_CHUNK * g.a_sk;
            g2.B = B + (ptrdiff_t)SPQR_ORDERED_CHUNK * ldb;
            spqr_ordered_gemm(NULL, &g1);
            spqr_ordered_gemm(NULL, &g2);
            CHECKF(ordered_diff(&g, C, R) == 0, "ordered %dx%dx%d split at the chunk differs", M, N, K);
        }
        if (K >= 128) { /* the comparison sees order: reversed sums differ somewhere */
            memcpy(C, C0, sizeof(float) * (size_t)M * ldc);
            g.C = C;
            ordered_ref(&g, 1);
            CHECKF(ordered_diff(&g, C, R) > 0, "ordered %dx%dx%d: the reversed order gave the same bits", M, N, K);
        }
        free(A);
        free(B);
        free(C0);
        free(R);
        free(C);
    }
    spqr_pool_free(pool);
}

const th_test suite_kernels_random[] = {
    {"kernels_act8_layout_w234", test_act8_layout},
    {"kernels_random_blobs_all_isas", test_random_blobs},
    {"kernels_mma_layout_emulated", test_mma_layout},
    {"kernels_stream_layout_emulated", test_stream_layout},
    {"kernels_ordered_products_all_isas", test_ordered},
    {NULL, NULL},
};

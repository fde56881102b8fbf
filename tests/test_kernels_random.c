/*
 * test_kernels_random.c — every CPU kernel of this build against the generic one on random packed
 * matrices built directly (random codes, statistics, permutation and outliers): no quantizer, no
 * BLAS, so this suite also cross-compiles and runs under qemu-user for other ISAs
 * (`make test-neon`). Shapes: 1..8 bits (GPTQ layout), 1..4 bits with 1..4-bit statistics (SpQR
 * layout), groups of 8..128 and ragged ones, row blocks of 1..64 rows, ragged rows and columns;
 * the tile layout (qtiles.h) of each, decoded and multiplied by every tile kernel, with fp32 and
 * with 8-bit activations.
 */
#include "harness.h"

#include "format/qmatrix.h"
#include "kernels/cpu.h"
#include "kernels/qtiles.h"

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

static int check_all(spqr_file_tensor *t, const char *what) {
    uint8_t *blob = random_blob(t);
    spqr_qview v;
    spqr_error err;
    if (!blob || spqr_qview_init(&v, t, blob, t->data_size, what, &err) != SPQR_OK) {
        th_fail(__FILE__, __LINE__, "%s: %s", what, blob ? err.msg : "bad layout");
        spqr_aligned_free(blob);
        return 0;
    }
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

const th_test suite_kernels_random[] = {
    {"kernels_random_blobs_all_isas", test_random_blobs},
    {NULL, NULL},
};

/*
 * test_kernels.c — every CPU kernel this machine supports against the generic one and against a
 * double-precision dot product of the dequantized matrix, on random layers of every supported shape:
 * 1..8 bits, groups of 8..128 columns and ragged last groups, any row-block size, act-order
 * permutations and outliers.
 */
#include "harness.h"

#include "core/core.h"
#include "kernels/cpu.h"
#include "kernels/matmul.h"
#include "quant/quantize.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t seed = 99;
static float frand(void) {
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((seed >> 40) / 16777216.0 * 2 - 1);
}

/* Checks every kernel on one quantized matrix. */
static void check_matrix(const spqr_qresult *r, const char *what) {
    spqr_qview v;
    spqr_error err;
    if (spqr_qview_init(&v, &r->entry, r->blob, r->entry.data_size, what, &err) != SPQR_OK) { th_fail(__FILE__, __LINE__, "%s", err.msg); return; }
    const uint32_t rows = v.rows, cols = v.cols;
    float *x = malloc(cols * sizeof *x), *xs = malloc(cols * sizeof *xs), *gsum = malloc(v.lay.groups * sizeof *gsum);
    float *scratch = malloc(spqr_qgemv_scratch(&v) * sizeof *scratch), *y = malloc(rows * sizeof *y), *yg = malloc(rows * sizeof *yg);
    for (uint32_t c = 0; c < cols; c++) x[c] = frand();
    for (uint32_t c = 0; c < cols; c++) xs[c] = x[v.perm ? (uint32_t)v.perm[c] : c];
    for (uint64_t g = 0; g < v.lay.groups; g++) {
        gsum[g] = 0;
        for (uint64_t c = g * v.groupsize; c < (g + 1) * v.groupsize && c < cols; c++) gsum[g] += xs[c];
    }
    const spqr_cpu_kernels *ks[] = {spqr_cpu_kernels_generic(), spqr_cpu_kernels_avx2(), spqr_cpu_kernels_avx512()};
    spqr_cpu_kernels_generic()->qgemv(&v, 0, rows, xs, gsum, scratch, yg);
    for (int k = 0; k < 3; k++) {
        if (!ks[k]) continue;
        /* rows in two uneven slices, as threads would split them */
        uint32_t mid = rows / 3;
        ks[k]->qgemv(&v, 0, mid, xs, gsum, scratch, y);
        ks[k]->qgemv(&v, mid, rows, xs, gsum, scratch, y + mid);
        for (uint32_t row = 0; row < rows; row++) {
            /* the kernels compute Σ_g s_g (Σ q x − z_g Σ x): their rounding scales with
               Σ |s_g| (|q| + |z_g|) |x|, which exceeds Σ |w x| when a zero lies far from the codes */
            double ref = 0, mag = 0;
            for (uint32_t c = 0; c < cols; c++) ref += (double)r->deq[(size_t)row * cols + c] * x[c];
            for (uint32_t j = 0; j < cols; j++) {
                float sc, z;
                spqr_qview_stats(&v, row, j / v.groupsize, &sc, &z);
                unsigned q = spqr_bits_get(v.codes + (uint64_t)row * v.lay.code_stride, j, v.wbits);
                mag += fabs((double)sc) * ((double)q + fabs((double)z)) * fabs((double)xs[j]) + fabs((double)r->deq[(size_t)row * cols + j] * x[j]);
            }
            double tol = 1e-5 * mag + 1e-7;
            if (fabs(y[row] - ref) > tol || fabs(y[row] - yg[row]) > tol) {
                th_fail(__FILE__, __LINE__, "%s, %s kernel, row %u: %.7g, generic %.7g, reference %.7g", what, ks[k]->name, row, y[row], yg[row], ref);
                break;
            }
        }
    }
    /* dequantization kernels (prefill panels): bit-identical to the reference decoder */
    float *ref = malloc((size_t)rows * cols * sizeof *ref), *got = malloc((size_t)rows * cols * sizeof *got);
    spqr_qview_dequant_rows(&v, 0, rows, 0, ref);
    for (int k = 0; k < 3; k++) {
        if (!ks[k]) continue;
        uint32_t mid = rows / 2 + 1 < rows ? rows / 2 + 1 : rows;
        ks[k]->qdequant(&v, 0, mid, scratch, got);
        ks[k]->qdequant(&v, mid, rows, scratch, got + (size_t)mid * cols);
        CHECKF(!memcmp(ref, got, (size_t)rows * cols * sizeof *ref), "%s, %s dequant kernel differs from the reference decoder", what, ks[k]->name);
    }
    free(ref); free(got);
    free(x); free(xs); free(gsum); free(scratch); free(y); free(yg);
}

/* The 16-bit GEMV kernels against the generic one, bf16 and half, with tails. */
static void test_gemv16(void) {
    const uint32_t rows = 13, cols = 77;
    uint16_t *W = malloc(rows * cols * sizeof *W);
    float x[77], yg[13], y[13];
    for (uint32_t c = 0; c < cols; c++) x[c] = frand();
    const spqr_cpu_kernels *ks[] = {spqr_cpu_kernels_avx2(), spqr_cpu_kernels_avx512()};
    for (int bf16 = 0; bf16 < 2; bf16++) {
        for (uint32_t i = 0; i < rows * cols; i++) {
            float f = frand();
            uint32_t u;
            memcpy(&u, &f, 4);
            W[i] = bf16 ? (uint16_t)(u >> 16) : spqr_f32_to_f16(f);
        }
        spqr_cpu_kernels_generic()->gemv16(W, bf16, cols, 0, rows, x, yg);
        for (uint32_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (uint32_t c = 0; c < cols; c++) {
                double w = bf16 ? spqr_bf16_to_f32(W[r * cols + c]) : spqr_f16_to_f32(W[r * cols + c]);
                ref += w * x[c];
                mag += fabs(w * x[c]);
            }
            CHECKF(fabs(yg[r] - ref) <= 1e-5 * mag, "generic gemv16 row %u", r);
        }
        for (int k = 0; k < 2; k++) {
            if (!ks[k]) continue;
            ks[k]->gemv16(W, bf16, cols, 3, rows, x, y + 3);
            for (uint32_t r = 3; r < rows; r++) CHECKF(fabs(y[r] - yg[r]) <= 1e-5 * (fabs(yg[r]) + 1), "%s gemv16 %s row %u", ks[k]->name, bf16 ? "bf16" : "f16", r);
        }
    }
    free(W);
}

static void test_qgemv_all_shapes(void) {
    const int shapes[][2] = {{37, 128}, {70, 200}, {16, 50}, {5, 8}};
    spqr_error err;
    int checked = 0;
    for (size_t sh = 0; sh < sizeof shapes / sizeof shapes[0]; sh++) {
        const int rows = shapes[sh][0], cols = shapes[sh][1];
        float *W = malloc((size_t)rows * cols * sizeof *W), *H = calloc((size_t)cols * cols, sizeof *H);
        for (int i = 0; i < rows * cols; i++) W[i] = 0.05f * frand() + (i % 97 == 0 ? 0.5f : 0); /* a few outliers */
        for (int i = 0; i < cols; i++) H[i * cols + i] = 1.0f + (float)(i % 5); /* diagonal H: act order permutes */
        const int gss[] = {8, 16, 32, 64, 128, 12};
        for (size_t gi = 0; gi < sizeof gss / sizeof gss[0]; gi++) {
            for (int w = 1; w <= 8; w++) { /* GPTQ/RTN layout, every width */
                spqr_qparams p = {SPQR_QM_GPTQ, w, gss[gi], 0, 0, INFINITY, (int)(gi & 1), 0.01, 0, 128};
                spqr_qresult r;
                char what[96];
                snprintf(what, sizeof what, "GPTQ %dx%d w%d g%d", rows, cols, w, gss[gi]);
                if (spqr_quantize_matrix(W, rows, cols, H, &p, &r, &err) != SPQR_OK) { th_fail(__FILE__, __LINE__, "%s: %s", what, err.msg); continue; }
                check_matrix(&r, what);
                spqr_qresult_free(&r);
                checked++;
            }
            const int qqs[] = {1, 7, 16, 64};
            for (int w = 2; w <= 4; w++)
                for (size_t qi = 0; qi < 4; qi++) { /* SpQR layout: 2..4 bits, row blocks of any size */
                    spqr_qparams p = {SPQR_QM_SPQR, w, gss[gi], 3, qqs[qi], 0.05, 1, 1.0, 0, 128};
                    spqr_qresult r;
                    char what[96];
                    snprintf(what, sizeof what, "SpQR %dx%d w%d b1 %d b2 %d", rows, cols, w, gss[gi], qqs[qi]);
                    if (spqr_quantize_matrix(W, rows, cols, H, &p, &r, &err) != SPQR_OK) { th_fail(__FILE__, __LINE__, "%s: %s", what, err.msg); continue; }
                    if (w == 3 && qi == 2) CHECKF(r.entry.n_outliers > 0, "%s: expected outliers", what);
                    check_matrix(&r, what);
                    spqr_qresult_free(&r);
                    checked++;
                }
        }
        free(W);
        free(H);
    }
    CHECK(checked == 4 * 6 * (8 + 12));
    printf("    kernels: generic%s%s\n", spqr_cpu_kernels_avx2() ? ", avx2" : "", spqr_cpu_kernels_avx512() ? ", avx512" : "");
}

static void test_cpu_select(void) {
    const spqr_cpu_kernels *best = spqr_cpu_select();
    CHECK(best && best->qgemv);
    setenv("SPQR_CPU", "generic", 1);
    CHECK(!strcmp(spqr_cpu_select()->name, "generic"));
    setenv("SPQR_CPU", "no-such-isa", 1);
    CHECK(spqr_cpu_select() == best);
    unsetenv("SPQR_CPU");
}

const th_test suite_kernels[] = {
    {"kernels_qgemv_vs_generic_and_reference", test_qgemv_all_shapes},
    {"kernels_gemv16_bf16_f16", test_gemv16},
    {"kernels_cpu_select", test_cpu_select},
    {NULL, NULL},
};

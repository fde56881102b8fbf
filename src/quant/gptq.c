/*
 * gptq.c — the GPTQ sweep (Frantar et al. 2022) with SpQR's statistics and outliers (Dettmers et al.
 * 2023), and RTN as the sweep without error feedback.
 *
 * With H⁻¹ = UᵀU (U upper Cholesky factor of the damped inverse Hessian) and d_j = U_jj, columns
 * are quantized left to right in the (optionally act-order permuted) order; after column j, the
 * scaled error e = (w_j − ŵ_j) / d_j is pushed onto the remaining columns: W[:, k] −= e · U_jk.
 * Updates inside a block of 128 columns are applied at once per column; the block's accumulated
 * errors reach later columns through one fixed-order product (kernels/ordered.h: the same bits on
 * every CPU and on the GPU).
 *
 * Statistics are fitted at each group start on the current (already updated) columns of the group.
 *  GPTQ/RTN: per row, the range widened to include 0, s = (max − min)/(2^b − 1), z = round(−min/s);
 *            s stored as fp16.
 *  SpQR:     per row min–max without 0 (all zero → [−1, 1]; a nonzero range narrower than 1/256 of
 *            the magnitude is widened to that, so that z stays finite in fp16),
 *            s = (max − min)/(2^b − 1), z = −min/s (not rounded); then s and z are each quantized to q bits over β2 consecutive rows with
 *            the same asymmetric min–max rule and fp16 second-level scale/zero (bilevel).
 *            Outliers: τ_abs = τ · mean_j(Var_rows(W[:, j]) / d_j²). At a group start, a weight whose
 *            removal lowers its row's group error Σ((w − q(w))/d)² by more than τ_abs (quantizer refitted
 *            without it: leave-one-out) is replaced by its row's mean of the other weights before the
 *            statistics are fitted. During the sweep, a weight with ((w − ŵ)/d_j)² > τ_abs becomes an
 *            outlier: kept in fp16, its (tiny) rounding error still propagated.
 * Quantized value: q = clamp(round(w/s + z), 0, 2^b − 1), ŵ = s (q − z), round half to even.
 */
#include "quant/quantize.h"

#include "kernels/ordered.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define QEPS 1e-9f

static float f16r(float x) { return spqr_f16_to_f32(spqr_f32_to_f16(x)); }

static unsigned qcode(float w, float s, float z, unsigned maxq) {
    float q = rintf(w / fmaxf(s, QEPS) + z);
    return q < 0 ? 0 : q > (float)maxq ? maxq : (unsigned)q;
}

/* GPTQ/RTN statistics of n values: fp16 scale, integer zero. */
static void fit_gptq(const float *x, int n, unsigned maxq, float *s, unsigned *z) {
    float lo = 0, hi = 0;
    for (int i = 0; i < n; i++) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    if (lo == 0 && hi == 0) { lo = -1; hi = 1; }
    float sc = (hi - lo) / (float)maxq;
    float zr = rintf(-lo / sc);
    *z = zr < 0 ? 0 : zr > (float)maxq ? maxq : (unsigned)zr;
    float s16 = f16r(sc);
    *s = s16 > 0 ? s16 : 5.96046448e-8f; /* smallest fp16 subnormal */
}

/* SpQR first-level statistics of n values (min–max, zero not rounded). Skips index `skip` if >= 0. */
static void fit_minmax(const float *x, int n, int skip, unsigned maxq, float *s, float *z) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != skip) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    const float mag = fmaxf(fabsf(lo), fabsf(hi)), minrange = mag * (1.0f / 256);
    if (mag == 0) { lo = -1; hi = 1; }               /* all zero: as the reference */
    else if (hi - lo < minrange) {                   /* (nearly) constant: keep z = −lo/s bounded */
        float c = 0.5f * (lo + hi);
        lo = c - 0.5f * minrange;
        hi = c + 0.5f * minrange;
    }
    *s = (hi - lo) / (float)maxq;
    *z = -lo / *s;
}

/* Second-level statistics over n first-level values v: fp16 scale/zero such that every value
 * quantizes to a code in [0, maxq2]; falls back to a zero-anchored range when the min–max pair is
 * not representable in fp16. */
static void fit_qq(const float *v, int n, unsigned maxq2, uint16_t *hs, uint16_t *hz) {
    float lo = INFINITY, hi = -INFINITY, amax = 0;
    for (int i = 0; i < n; i++) { lo = fminf(lo, v[i]); hi = fmaxf(hi, v[i]); amax = fmaxf(amax, fabsf(v[i])); }
    if (lo == hi) { lo = -1; hi = 1; }
    float s = (hi - lo) / (float)maxq2, z = -lo / s;
    *hs = spqr_f32_to_f16(s);
    *hz = spqr_f32_to_f16(z);
    float s16 = spqr_f16_to_f32(*hs), z16 = spqr_f16_to_f32(*hz);
    if (!(s16 > 0) || !isfinite(s16) || !isfinite(z16)) { /* degenerate: range [-amax, amax] */
        float a = amax > 0 ? fminf(amax, 60000.0f * (float)maxq2 / 2) : 1;
        *hs = spqr_f32_to_f16(fmaxf(2 * a / (float)maxq2, 5.96046448e-8f));
        *hz = spqr_f32_to_f16((float)maxq2 / 2);
    }
}

typedef struct {
    const spqr_qparams *p;
    int rows, cols, gs, bs, groups, row_blocks;
    unsigned maxq, maxq2;
    float *W;          /* [rows][cols] working copy, stored order */
    float *U;          /* [cols][cols] upper Cholesky factor of H⁻¹ (NULL for RTN) */
    float tau_abs;
    /* outputs, stored order */
    uint8_t *codes;    /* [rows][cols] */
    float *what;       /* [rows][cols] dequantized values as the decoder will see them */
    uint8_t *is_out;   /* [rows][cols] outlier flags */
    uint8_t *scode, *zcode;  /* SpQR [rows][groups] */
    spqr_qq_stats *qq;       /* SpQR [row_blocks][groups] */
    uint16_t *scale16; /* GPTQ [rows][groups] */
    uint8_t *zero;     /* GPTQ [rows][groups] */
    float *gs_s, *gs_z;/* current group's per-row scale and zero (dequantized) */
    float *tmp2;       /* scratch [max(rows, gs)] */
    float *E;          /* [rows][bs] scaled errors of the current block */
} sweep;

/* Leave-one-out: replaces, in x[0..n), every weight whose exclusion lowers the row's group error by
 * more than tau_abs with the mean of the other weights. d: the group's d_j. */
static void loo_clean(sweep *S, float *x, int n, const float *d) {
    if (n < 3) return;
    float s, z, base = 0;
    fit_minmax(x, n, -1, S->maxq, &s, &z);
    for (int m = 0; m < n; m++) {
        float e = (spqr_deq(s, z, qcode(x[m], s, z, S->maxq)) - x[m]) / d[m];
        base += e * e;
    }
    uint8_t cand[n];
    int nc = 0;
    for (int k = 0; k < n; k++) {
        float sk, zk, e2 = 0;
        fit_minmax(x, n, k, S->maxq, &sk, &zk);
        for (int m = 0; m < n; m++) {
            if (m == k) continue;
            float e = (spqr_deq(sk, zk, qcode(x[m], sk, zk, S->maxq)) - x[m]) / d[m];
            e2 += e * e;
        }
        cand[k] = base - e2 > S->tau_abs;
        nc += cand[k];
    }
    if (!nc) return;
    float sum = 0;
    for (int k = 0; k < n; k++)
        if (!cand[k]) sum += x[k];
    float mean = sum / (float)(n - nc > 0 ? n - nc : 1);
    for (int k = 0; k < n; k++)
        if (cand[k]) x[k] = mean;
}

/* Fits the statistics of group g (columns j0..j0+n) from the current W. */
static void fit_group(sweep *S, int g, int j0, int n, const float *dcol) {
    const spqr_qparams *p = S->p;
    float *x = S->tmp2;
    for (int r = 0; r < S->rows; r++) {
        memcpy(x, S->W + (size_t)r * S->cols + j0, (size_t)n * sizeof *x);
        if (p->method != SPQR_QM_SPQR) {
            unsigned z;
            fit_gptq(x, n, S->maxq, &S->gs_s[r], &z);
            S->gs_z[r] = (float)z;
            S->scale16[(size_t)r * S->groups + g] = spqr_f32_to_f16(S->gs_s[r]);
            S->zero[(size_t)r * S->groups + g] = (uint8_t)z;
            continue;
        }
        if (isfinite(S->tau_abs) && !p->simplified_outliers) loo_clean(S, x, n, dcol + j0);
        fit_minmax(x, n, -1, S->maxq, &S->gs_s[r], &S->gs_z[r]);
    }
    if (p->method != SPQR_QM_SPQR) return;
    /* bilevel: quantize the scales and zeros of every β2 rows */
    for (int b = 0; b < S->row_blocks; b++) {
        int r0 = b * p->qq_groupsize, r1 = r0 + p->qq_groupsize < S->rows ? r0 + p->qq_groupsize : S->rows;
        spqr_qq_stats *q = &S->qq[(size_t)b * S->groups + g];
        fit_qq(S->gs_s + r0, r1 - r0, S->maxq2, &q->s_scale, &q->s_zero);
        fit_qq(S->gs_z + r0, r1 - r0, S->maxq2, &q->z_scale, &q->z_zero);
        const float ss = spqr_f16_to_f32(q->s_scale), sz = spqr_f16_to_f32(q->s_zero);
        const float zs = spqr_f16_to_f32(q->z_scale), zz = spqr_f16_to_f32(q->z_zero);
        for (int r = r0; r < r1; r++) {
            unsigned sc = qcode(S->gs_s[r], ss, sz, S->maxq2), zc = qcode(S->gs_z[r], zs, zz, S->maxq2);
            S->scode[(size_t)r * S->groups + g] = (uint8_t)sc;
            S->zcode[(size_t)r * S->groups + g] = (uint8_t)zc;
            S->gs_s[r] = spqr_deq(ss, sz, sc); /* exactly what spqr_qview_stats will compute */
            S->gs_z[r] = spqr_deq(zs, zz, zc);
        }
    }
}

/* The sweep over all columns. dcol: d_j (1 for RTN). */
static void run_sweep(sweep *S, const float *dcol) {
    const int rows = S->rows, cols = S->cols, bs = S->bs;
    const bool spqr = S->p->method == SPQR_QM_SPQR, feedback = S->U != NULL;
    float *E = S->E;
    for (int b0 = 0; b0 < cols; b0 += bs) {
        const int b1 = b0 + bs < cols ? b0 + bs : cols;
        for (int j = b0; j < b1; j++) {
            if (j % S->gs == 0) {
                int n = j + S->gs < cols ? S->gs : cols - j;
                fit_group(S, j / S->gs, j, n, dcol);
            }
            for (int r = 0; r < rows; r++) {
                float *wr = S->W + (size_t)r * cols;
                const float w = wr[j];
                unsigned c = qcode(w, S->gs_s[r], S->gs_z[r], S->maxq);
                float wq = spqr_deq(S->gs_s[r], S->gs_z[r], c);
                float e = (w - wq) / dcol[j];
                if (spqr && e * e > S->tau_abs) { /* outlier: kept in fp16 */
                    S->is_out[(size_t)r * cols + j] = 1;
                    c = qcode(0.0f, S->gs_s[r], S->gs_z[r], S->maxq);
                    wq = f16r(w);
                    e = (w - wq) / dcol[j];
                }
                S->codes[(size_t)r * cols + j] = (uint8_t)c;
                S->what[(size_t)r * cols + j] = wq;
                if (!feedback) continue;
                E[(size_t)r * bs + (j - b0)] = e;
                const float *u = S->U + (size_t)j * cols;
                for (int k = j + 1; k < b1; k++) wr[k] -= e * u[k];
            }
        }
        if (feedback && b1 < cols) { /* W[:, b1:] -= E · U[b0:b1, b1:], in the fixed order the GPU follows too */
            const spqr_ordered_args g = {rows, cols - b1, b1 - b0, -1.0f, E, bs, 1, S->U + (size_t)b0 * cols + b1, cols, S->W + b1, cols, 0};
            spqr_ordered_gemm(NULL, &g);
        }
    }
}

/* Damped H⁻¹'s upper Cholesky factor U (float, [n][n]) from H (permuted, double; not modified).
 * On a non-positive-definite H the damping grows ×10 up to 5 times; *damp reports the final one.
 * The GPU quantizer calls this too (quantize.h), so that both sweeps get the same U. */
spqr_status spqr_chol_inverse(const double *H, int n, const spqr_qparams *p, const uint8_t *dead, float *U, double *damp, spqr_error *err) {
    double *A = malloc((size_t)n * n * sizeof *A);
    if (!A) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    double mean = 0;
    for (int i = 0; i < n; i++) mean += fabs(H[(size_t)i * n + i]);
    mean /= n;
    double pd = p->percdamp;
    for (int attempt = 0; attempt < 6; attempt++, pd = pd > 0 ? pd * 10 : 1e-2) {
        memcpy(A, H, (size_t)n * n * sizeof *A);
        for (int i = 0; i < n; i++) {
            A[(size_t)i * n + i] += pd * mean;
            if (dead[i]) A[(size_t)i * n + i] = p->method == SPQR_QM_SPQR ? 1.0 : 1.0 + pd * mean;
        }
        /* Row-major upper triangle == column-major lower: potrf/potri on 'L' col-major = 'U' row-major. */
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', n, A, n) != 0) continue;
        if (LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', n, A, n) != 0) continue; /* upper triangle of H⁻¹ */
        if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', n, A, n) != 0) continue; /* H⁻¹ = UᵀU */
        bool ok = true;
        for (int i = 0; i < n && ok; i++)
            for (int k = 0; k < n; k++) {
                double v = k >= i ? A[(size_t)i * n + k] : 0.0;
                if (!isfinite(v) || (k == i && !(v > 0))) { ok = false; break; }
                U[(size_t)i * n + k] = (float)v;
            }
        if (!ok) continue;
        *damp = pd;
        free(A);
        return SPQR_OK;
    }
    free(A);
    return spqr_set_err(err, SPQR_E_RANGE, "Hessian is not positive definite even with damping %g", pd / 10);
}

static int cmp_diag_desc(const void *a, const void *b, void *ctx) {
    const double *dg = ctx;
    int i = *(const int32_t *)a, k = *(const int32_t *)b;
    if (dg[i] != dg[k]) return dg[i] > dg[k] ? -1 : 1;
    return i < k ? -1 : i > k;
}

/* Packs the sweep's outputs into the blob of `t`, then decodes it into out->deq. */
static spqr_status pack(sweep *S, const int32_t *perm, spqr_qresult *out, spqr_error *err) {
    spqr_file_tensor *t = &out->entry;
    uint64_t n_out = 0;
    for (size_t i = 0; i < (size_t)S->rows * S->cols; i++) n_out += S->is_out[i];
    t->n_outliers = n_out;
    spqr_qlayout lay;
    char why[160];
    if (!spqr_qlayout_compute(t, &lay, why, sizeof why)) return spqr_set_err(err, SPQR_E_ARG, "quantize: %s", why);
    uint8_t *blob = spqr_aligned_alloc(lay.size, 1);
    if (!blob) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    if (perm) memcpy(blob + lay.perm, perm, (size_t)S->cols * 4);
    for (int r = 0; r < S->rows; r++) {
        uint8_t *crow = blob + lay.codes + (size_t)r * lay.code_stride;
        for (int j = 0; j < S->cols; j++) spqr_bits_put(crow, (uint64_t)j, S->p->wbits, S->codes[(size_t)r * S->cols + j]);
    }
    if (t->kind == SPQR_TK_SPQR) {
        for (int r = 0; r < S->rows; r++) {
            uint8_t *srow = blob + lay.stats + (size_t)r * lay.stat_stride;
            for (int g = 0; g < S->groups; g++) {
                spqr_bits_put(srow, 2ull * g, S->p->qq_bits, S->scode[(size_t)r * S->groups + g]);
                spqr_bits_put(srow, 2ull * g + 1, S->p->qq_bits, S->zcode[(size_t)r * S->groups + g]);
            }
        }
        memcpy(blob + lay.qq, S->qq, (size_t)S->row_blocks * S->groups * sizeof *S->qq);
        uint32_t *rp = (uint32_t *)(blob + lay.row_ptr);
        uint16_t *oc = (uint16_t *)(blob + lay.ocol), *ov = (uint16_t *)(blob + lay.oval);
        uint32_t k = 0;
        for (int r = 0; r < S->rows; r++) {
            rp[r] = k;
            for (int j = 0; j < S->cols; j++)
                if (S->is_out[(size_t)r * S->cols + j]) {
                    oc[k] = (uint16_t)j;
                    ov[k++] = spqr_f32_to_f16(S->what[(size_t)r * S->cols + j]);
                }
        }
        rp[S->rows] = k;
    } else {
        memcpy(blob + lay.scales, S->scale16, (size_t)S->rows * S->groups * 2);
        for (int r = 0; r < S->rows; r++) {
            uint8_t *zrow = blob + lay.zeros + (size_t)r * lay.zero_stride;
            for (int g = 0; g < S->groups; g++) spqr_bits_put(zrow, (uint64_t)g, S->p->wbits, S->zero[(size_t)r * S->groups + g]);
        }
    }
    t->data_size = lay.size;
    t->data_crc = spqr_crc32(blob, lay.size);
    out->blob = blob;
    spqr_qview v;
    spqr_status st = spqr_qview_init(&v, t, blob, lay.size, "quantize", err);
    if (st) return st;
    out->deq = spqr_aligned_alloc((size_t)S->rows * S->cols, sizeof(float));
    if (!out->deq) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    spqr_qview_dequant_rows(&v, 0, (uint32_t)S->rows, 1, out->deq);
    /* the decoder must reproduce the sweep's values exactly */
    float *stored = malloc((size_t)S->cols * sizeof *stored);
    for (int r = 0; r < S->rows && stored; r++) {
        spqr_qview_dequant_rows(&v, (uint32_t)r, (uint32_t)r + 1, 0, stored);
        if (memcmp(stored, S->what + (size_t)r * S->cols, (size_t)S->cols * sizeof *stored) != 0) {
            free(stored);
            return spqr_set_err(err, SPQR_E_FORMAT, "quantize: internal error: decoded row %d differs from the encoder's", r);
        }
    }
    free(stored);
    return SPQR_OK;
}

/* ‖(W − Ŵ)X‖ / ‖WX‖ = sqrt(tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)). */
static double rel_output_error(const float *W, const float *Q, const float *H, int rows, int cols) {
    float *D = malloc((size_t)rows * cols * sizeof *D), *DH = malloc((size_t)rows * cols * sizeof *DH);
    if (!D || !DH) { free(D); free(DH); return NAN; }
    double num = 0, den = 0;
    for (size_t i = 0; i < (size_t)rows * cols; i++) D[i] = W[i] - Q[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f, D, cols, H, cols, 0.0f, DH, cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) num += (double)DH[i] * D[i];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f, W, cols, H, cols, 0.0f, DH, cols);
    for (size_t i = 0; i < (size_t)rows * cols; i++) den += (double)DH[i] * W[i];
    free(D);
    free(DH);
    return den > 0 ? sqrt(fmax(num, 0) / den) : (num > 0 ? INFINITY : 0);
}

spqr_status spqr_quantize_matrix(const float *W, int rows, int cols, const float *H, const spqr_qparams *p, spqr_qresult *out,
                                 spqr_error *err) {
    memset(out, 0, sizeof *out);
    if (rows < 1 || cols < 1 || cols > 65536 || rows > (1 << 24)) return spqr_set_err(err, SPQR_E_ARG, "quantize: shape [%d, %d]", rows, cols);
    if (p->wbits < 1 || p->wbits > 8) return spqr_set_err(err, SPQR_E_ARG, "quantize: wbits %d (1..8)", p->wbits);
    if (p->method == SPQR_QM_SPQR && (p->qq_bits < 1 || p->qq_bits > 8 || p->qq_groupsize < 1))
        return spqr_set_err(err, SPQR_E_ARG, "quantize: qq_bits %d (1..8), qq_groupsize %d", p->qq_bits, p->qq_groupsize);
    if (!H && p->method != SPQR_QM_RTN) return spqr_set_err(err, SPQR_E_ARG, "quantize: GPTQ and SpQR need a Hessian");
    if (p->percdamp < 0 || !isfinite(p->percdamp) || isnan(p->outlier_threshold) || p->outlier_threshold < 0)
        return spqr_set_err(err, SPQR_E_ARG, "quantize: percdamp and the outlier threshold must be non-negative");
    for (size_t i = 0; i < (size_t)rows * cols; i++)
        if (!isfinite(W[i])) return spqr_set_err(err, SPQR_E_ARG, "quantize: weight %zu is not finite", i);
    if (H)
        for (size_t i = 0; i < (size_t)cols * cols; i++)
            if (!isfinite(H[i])) return spqr_set_err(err, SPQR_E_ARG, "quantize: Hessian entry %zu is not finite", i);

    sweep S = {0};
    S.p = p;
    S.rows = rows;
    S.cols = cols;
    S.gs = p->groupsize > 0 && p->groupsize < cols ? p->groupsize : cols;
    S.bs = p->blocksize > 0 ? p->blocksize : 128;
    S.groups = (cols + S.gs - 1) / S.gs;
    const int qqg = p->qq_groupsize < rows ? p->qq_groupsize : rows;
    S.row_blocks = p->method == SPQR_QM_SPQR ? (rows + qqg - 1) / qqg : 0;
    S.maxq = (1u << p->wbits) - 1;
    S.maxq2 = p->method == SPQR_QM_SPQR ? (1u << p->qq_bits) - 1 : 0;
    S.tau_abs = INFINITY;
    const bool use_perm = p->act_order && p->method != SPQR_QM_RTN && H;
    const size_t rc = (size_t)rows * cols;
    S.W = malloc(rc * sizeof *S.W);
    S.codes = calloc(rc, 1);
    S.what = malloc(rc * sizeof *S.what);
    S.is_out = calloc(rc, 1);
    S.gs_s = malloc((size_t)rows * sizeof(float));
    S.gs_z = malloc((size_t)rows * sizeof(float));
    S.tmp2 = malloc((size_t)(S.gs > rows ? S.gs : rows) * sizeof(float));
    S.E = malloc((size_t)rows * S.bs * sizeof(float));
    S.scode = calloc((size_t)rows * S.groups, 1);
    S.zcode = calloc((size_t)rows * S.groups, 1);
    S.qq = calloc((size_t)(S.row_blocks ? S.row_blocks : 1) * S.groups, sizeof *S.qq);
    S.scale16 = calloc((size_t)rows * S.groups, 2);
    S.zero = calloc((size_t)rows * S.groups, 1);
    int32_t *perm = use_perm ? malloc((size_t)cols * sizeof *perm) : NULL;
    float *dcol = malloc((size_t)cols * sizeof *dcol);
    double *Hd = H ? malloc((size_t)cols * cols * sizeof *Hd) : NULL;
    uint8_t *dead = calloc((size_t)cols, 1);
    spqr_status st = SPQR_OK;
    if (!S.W || !S.codes || !S.what || !S.is_out || !S.gs_s || !S.gs_z || !S.tmp2 || !S.E || !S.scode || !S.zcode || !S.qq || !S.scale16 || !S.zero ||
        (use_perm && !perm) || !dcol || (H && !Hd) || !dead) {
        st = spqr_set_err(err, SPQR_E_NOMEM, "quantize: out of memory for a [%d, %d] layer", rows, cols);
        goto done;
    }
    /* permutation (act order: decreasing diag(H)) */
    if (use_perm) {
        double *dg = malloc((size_t)cols * sizeof *dg);
        if (!dg) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
        for (int j = 0; j < cols; j++) { perm[j] = j; dg[j] = H[(size_t)j * cols + j]; }
        qsort_r(perm, (size_t)cols, sizeof *perm, cmp_diag_desc, dg);
        free(dg);
    }
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < cols; j++) S.W[(size_t)r * cols + j] = W[(size_t)r * cols + (perm ? perm[j] : j)];
    for (int j = 0; j < cols; j++) dcol[j] = 1.0f;
    out->percdamp_used = p->percdamp;
    if (H && p->method != SPQR_QM_RTN) {
        for (int i = 0; i < cols; i++)
            for (int k = 0; k < cols; k++) Hd[(size_t)i * cols + k] = H[(size_t)(perm ? perm[i] : i) * cols + (perm ? perm[k] : k)];
        for (int j = 0; j < cols; j++) {
            dead[j] = Hd[(size_t)j * cols + j] == 0;
            if (dead[j])
                for (int r = 0; r < rows; r++) S.W[(size_t)r * cols + j] = 0;
        }
        S.U = spqr_aligned_alloc((size_t)cols * cols, sizeof(float));
        if (!S.U) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
        if ((st = spqr_chol_inverse(Hd, cols, p, dead, S.U, &out->percdamp_used, err))) goto done;
        for (int j = 0; j < cols; j++) dcol[j] = S.U[(size_t)j * cols + j];
        if (p->method == SPQR_QM_SPQR && isfinite(p->outlier_threshold) && rows > 1) {
            double acc = 0;
            for (int j = 0; j < cols; j++) {
                double m = 0, v = 0;
                for (int r = 0; r < rows; r++) m += S.W[(size_t)r * cols + j];
                m /= rows;
                for (int r = 0; r < rows; r++) v += (S.W[(size_t)r * cols + j] - m) * (S.W[(size_t)r * cols + j] - m);
                acc += v / (rows - 1) / ((double)dcol[j] * dcol[j]);
            }
            S.tau_abs = (float)(p->outlier_threshold * acc / cols);
        }
    }
    run_sweep(&S, dcol);

    spqr_file_tensor *t = &out->entry;
    t->kind = p->method == SPQR_QM_SPQR ? SPQR_TK_SPQR : SPQR_TK_GPTQ;
    t->n_dims = 2;
    t->shape[0] = (uint64_t)rows;
    t->shape[1] = (uint64_t)cols;
    t->flags = perm ? SPQR_TF_PERM : 0;
    t->wbits = (uint32_t)p->wbits;
    t->groupsize = (uint32_t)S.gs;
    t->qq_bits = p->method == SPQR_QM_SPQR ? (uint32_t)p->qq_bits : 0;
    t->qq_groupsize = p->method == SPQR_QM_SPQR ? (uint32_t)qqg : 0;
    if ((st = pack(&S, perm, out, err))) goto done;
    out->rel_err = H ? rel_output_error(W, out->deq, H, rows, cols) : NAN;
done:
    if (st) spqr_qresult_free(out);
    free(S.W); free(S.codes); free(S.what); free(S.is_out); free(S.gs_s); free(S.gs_z); free(S.tmp2); free(S.E);
    free(S.scode); free(S.zcode); free(S.qq); free(S.scale16); free(S.zero);
    spqr_aligned_free(S.U);
    free(perm); free(dcol); free(Hd); free(dead);
    return st;
}

void spqr_qresult_free(spqr_qresult *r) {
    if (!r) return;
    spqr_aligned_free(r->blob);
    spqr_aligned_free(r->deq);
    r->blob = NULL;
    r->deq = NULL;
}

double spqr_bits_paper(const spqr_file_tensor *t) {
    const double n = (double)t->shape[0] * (double)t->shape[1], g = t->groupsize;
    if (t->kind == SPQR_TK_SPQR)
        return t->wbits + 2.0 * t->qq_bits / g + 2.0 * 32 / (g * t->qq_groupsize) + 32.0 * (double)t->n_outliers / n;
    if (t->kind == SPQR_TK_GPTQ) return t->wbits + (16.0 + t->wbits) / g;
    return t->kind == SPQR_TK_F32 ? 32 : 16;
}

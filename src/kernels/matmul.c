/* matmul.c — see matmul.h. */
#include "kernels/matmul.h"

#include "kernels/qtiles.h"

#include <cblas.h>
#include <math.h>
#include <stddef.h>

typedef struct {
    const spqr_mm *mm;
    const spqr_linear *lin;
    const float *X, *bias;
    float *Y;
    int n;
} mm_job;

/* Thread ith's share of one product: its rows of Y (spqr_split, multiples of 16). */
static void mm_rows(const mm_job *j, int ith, int nth) {
    const spqr_linear *L = j->lin;
    const int in = L->cols, out = L->rows;
    int lo, hi;
    spqr_split(out, ith, nth, 16, &lo, &hi);
    if (lo >= hi) return;
    float *scr = j->mm->scratch + (size_t)ith * j->mm->per_thread;
    if (L->w) {
        const float *W = L->w + (size_t)lo * in;
        if (j->n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, in, 1.0f, W, in, j->X, 1, 0.0f, j->Y + lo, 1);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, hi - lo, in, 1.0f, j->X, in, W, in, 0.0f, j->Y + lo, out);
    } else if (L->h && j->n == 1) {
        j->mm->k->gemv16(L->h, L->h_bf16, (uint32_t)in, (uint32_t)lo, (uint32_t)hi, j->X, j->Y + lo);
    } else if (L->h) {
        for (int r0 = lo; r0 < hi; r0 += SPQR_PANEL_ROWS) {
            int r1 = r0 + SPQR_PANEL_ROWS < hi ? r0 + SPQR_PANEL_ROWS : hi;
            const uint16_t *src = L->h + (size_t)r0 * in;
            for (size_t e = 0; e < (size_t)(r1 - r0) * in; e++) scr[e] = L->h_bf16 ? spqr_bf16_to_f32(src[e]) : spqr_f16_to_f32(src[e]);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, in, 1.0f, j->X, in, scr, in, 0.0f, j->Y + r0, out);
        }
    } else if (j->n == 1) {
        const spqr_qview *q = L->q;
        float *xs = scr, *gsum = scr + in; /* [cols] x in stored order, [groups] its group sums */
        for (int c = 0; c < in; c++) xs[c] = j->X[q->perm ? q->perm[c] : c];
        for (uint32_t g = 0, c0 = 0; c0 < (uint32_t)in; g++, c0 += q->groupsize) {
            uint32_t c1 = c0 + q->groupsize < (uint32_t)in ? c0 + q->groupsize : (uint32_t)in;
            float s = 0;
            for (uint32_t c = c0; c < c1; c++) s += xs[c];
            gsum[g] = s;
        }
        if (L->qt && j->mm->act8 && j->mm->k->qgemv_tiles_act8) { /* scratch: xs, gsum, then dx, gq, xq */
            float *dx = gsum + q->lay.groups, *gq = dx + q->lay.groups;
            int8_t *xq = (int8_t *)(gq + q->lay.groups);
            spqr_act8_quantize(xs, (uint32_t)in, q->groupsize, xq, dx, gq);
            j->mm->k->qgemv_tiles_act8(L->qt, (uint32_t)lo, (uint32_t)hi, xq, dx, gq, xs, j->Y + lo);
        } else if (L->qt && j->mm->k->qgemv_tiles) {
            j->mm->k->qgemv_tiles(L->qt, (uint32_t)lo, (uint32_t)hi, xs, gsum, j->Y + lo);
        } else {
            j->mm->k->qgemv(q, (uint32_t)lo, (uint32_t)hi, xs, gsum, gsum + q->lay.groups, j->Y + lo);
        }
    } else {
        const float *X = L->q->perm ? j->mm->xbuf : j->X; /* permuted by perm_task */
        float *panel = scr + 8 * (size_t)L->q->lay.groups + 16;
        for (int r0 = lo; r0 < hi; r0 += SPQR_PANEL_ROWS) {
            int r1 = r0 + SPQR_PANEL_ROWS < hi ? r0 + SPQR_PANEL_ROWS : hi;
            j->mm->k->qdequant(L->q, (uint32_t)r0, (uint32_t)r1, scr, panel);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, in, 1.0f, X, in, panel, in, 0.0f, j->Y + r0, out);
        }
    }
    if (j->bias)
        for (int r = 0; r < j->n; r++)
            for (int o = lo; o < hi; o++) j->Y[(size_t)r * out + o] += j->bias[o];
}

static void mm_task(void *arg, int ith, int nth) { mm_rows(arg, ith, nth); }

typedef struct {
    mm_job jobs[SPQR_MAX_FUSED];
    int n_jobs, swiglu;
} mm_multi;

/* Several products on one input in one pool run; with swiglu, Y0 = silu(Y0) ⊙ Y1 on each thread's
 * own rows (both products split their equal row counts the same way). */
static void multi_task(void *arg, int ith, int nth) {
    const mm_multi *m = arg;
    for (int i = 0; i < m->n_jobs; i++) mm_rows(&m->jobs[i], ith, nth);
    if (m->swiglu) {
        int lo, hi;
        spqr_split(m->jobs[0].lin->rows, ith, nth, 16, &lo, &hi);
        float *g = m->jobs[0].Y;
        const float *u = m->jobs[1].Y;
        for (int o = lo; o < hi; o++) g[o] = g[o] / (1.0f + expf(-g[o])) * u[o];
    }
}

/* xbuf[t][c] = X[t][perm[c]], tokens split over threads. */
static void perm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const int in = j->lin->cols;
    const int32_t *perm = j->lin->q->perm;
    int lo, hi;
    spqr_split(j->n, ith, nth, 1, &lo, &hi);
    for (int t = lo; t < hi; t++)
        for (int c = 0; c < in; c++) j->mm->xbuf[(size_t)t * in + c] = j->X[(size_t)t * in + perm[c]];
}

void spqr_linear_forward(const spqr_mm *mm, const spqr_linear *lin, const float *X, int n, const float *bias, float *Y) {
    mm_job j = {mm, lin, X, bias, Y, n};
    if (lin->q && lin->q->perm && n > 1) spqr_pool_run(mm->pool, perm_task, &j);
    spqr_pool_run(mm->pool, mm_task, &j);
}

void spqr_linear_forward_decode(const spqr_mm *mm, const spqr_linear *const *lins, int n_lin, const float *x, const float *const *bias,
                                float *const *Y, int swiglu) {
    mm_multi m = {.n_jobs = n_lin, .swiglu = swiglu};
    for (int i = 0; i < n_lin; i++) m.jobs[i] = (mm_job){mm, lins[i], x, bias ? bias[i] : NULL, Y[i], 1};
    spqr_pool_run(mm->pool, multi_task, &m);
}

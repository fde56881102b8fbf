/* matmul.c — see matmul.h. */
#include "kernels/matmul.h"

#include <cblas.h>
#include <stddef.h>

typedef struct {
    const spqr_linear *lin;
    const float *X, *bias;
    float *Y, *scratch;
    size_t per_thread;
    int n;
} mm_job;

static void mm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const spqr_linear *L = j->lin;
    const int in = L->cols, out = L->rows;
    int lo, hi;
    spqr_split(out, ith, nth, 16, &lo, &hi);
    if (lo >= hi) return;
    float *scr = j->scratch + (size_t)ith * j->per_thread;
    if (L->w) {
        const float *W = L->w + (size_t)lo * in;
        if (j->n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, in, 1.0f, W, in, j->X, 1, 0.0f, j->Y + lo, 1);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, hi - lo, in, 1.0f, j->X, in, W, in, 0.0f, j->Y + lo, out);
    } else if (j->n == 1) {
        const float *xs = j->X;
        if (L->q->perm) { /* x in stored column order */
            for (int c = 0; c < in; c++) scr[c] = j->X[L->q->perm[c]];
            xs = scr;
        }
        spqr_qview_gemv_rows(L->q, (uint32_t)lo, (uint32_t)hi, xs, j->Y + lo);
    } else {
        for (int r0 = lo; r0 < hi; r0 += SPQR_PANEL_ROWS) {
            int r1 = r0 + SPQR_PANEL_ROWS < hi ? r0 + SPQR_PANEL_ROWS : hi;
            spqr_qview_dequant_rows(L->q, (uint32_t)r0, (uint32_t)r1, 1, scr);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, r1 - r0, in, 1.0f, j->X, in, scr, in, 0.0f, j->Y + r0, out);
        }
    }
    if (j->bias)
        for (int r = 0; r < j->n; r++)
            for (int o = lo; o < hi; o++) j->Y[(size_t)r * out + o] += j->bias[o];
}

void spqr_linear_forward(spqr_pool *pool, const spqr_linear *lin, const float *X, int n, const float *bias, float *Y, float *scratch,
                         size_t per_thread) {
    mm_job j = {lin, X, bias, Y, scratch, per_thread, n};
    spqr_pool_run(pool, mm_task, &j);
}

/* matmul.c — see matmul.h. */
#include "kernels/matmul.h"

#include <cblas.h>
#include <stddef.h>

typedef struct {
    const float *X, *W, *bias;
    float *Y;
    int n, in, out;
} mm_job;

static void mm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    int lo, hi;
    spqr_split(j->out, ith, nth, 16, &lo, &hi);
    if (lo >= hi) return;
    const float *W = j->W + (size_t)lo * j->in;
    if (j->n == 1) {
        cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, j->in, 1.0f, W, j->in, j->X, 1, 0.0f, j->Y + lo, 1);
    } else {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, hi - lo, j->in, 1.0f, j->X, j->in, W, j->in, 0.0f, j->Y + lo, j->out);
    }
    if (j->bias)
        for (int r = 0; r < j->n; r++)
            for (int o = lo; o < hi; o++) j->Y[(size_t)r * j->out + o] += j->bias[o];
}

void spqr_matmul_f32(spqr_pool *pool, const float *X, int n, int in, const float *W, int out, const float *bias, float *Y) {
    mm_job j = {X, W, bias, Y, n, in, out};
    spqr_pool_run(pool, mm_task, &j);
}

/* ordered.c (generic) — fixed-order products (kernels/ordered.h) for the build's base ISA and the
 * threaded driver, which runs the variant of spqr_cpu_select's kernel table. */
#include "kernels/ordered.h"

#include "core/pool.h"
#include "kernels/cpu.h"

#include <math.h>
#include <string.h>

typedef struct { float v[16]; } ord_acc;
typedef ord_acc ord_b;
#define ORD_ZERO(acc) memset(&(acc), 0, sizeof(acc))
#define ORD_LOADB(bv, p) memcpy((bv).v, (p), sizeof(bv))
#define ORD_FMA(acc, a, bv) for (int l_ = 0; l_ < 16; l_++) (acc).v[l_] = fmaf((a), (bv).v[l_], (acc).v[l_])
#define ORD_UPDATE(c, alpha, acc) for (int l_ = 0; l_ < 16; l_++) { const float t_ = (alpha) * (acc).v[l_]; (c)[l_] = (c)[l_] + t_; }
#define ORD_NAME spqr_ordered_rows_generic
#define ORD_MR 4
#include "kernels/ordered_body.h"

typedef struct {
    const spqr_ordered_args *g;
    spqr_ordered_rows_fn fn;
} ord_job;

static void ord_task(void *arg, int ith, int nth) {
    const ord_job *j = arg;
    j->fn(j->g, ith, nth);
}

void spqr_ordered_gemm(spqr_pool *pool, const spqr_ordered_args *g) {
    if (g->M < 1 || g->N < 1 || g->K < 1) return;
    ord_job j = {g, spqr_cpu_select()->ordered};
    if (pool && spqr_pool_size(pool) > 1 && g->M > SPQR_ORDERED_ROWS) spqr_pool_run(pool, ord_task, &j);
    else j.fn(g, 0, 1);
}

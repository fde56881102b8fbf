/* ordered.c (generic) — fixed-order products (kernels/ordered.h) for the build's base ISA, the
 * run-time choice among the variants, and the threaded driver. */
#include "kernels/ordered.h"

#include "core/pool.h"

#include <stdlib.h>
#include <string.h>

#include <math.h>

typedef struct { float v[16]; } ord_acc;
typedef ord_acc ord_b;
#define ORD_ZERO(acc) memset(&(acc), 0, sizeof(acc))
#define ORD_LOADB(bv, p) memcpy((bv).v, (p), sizeof(bv))
#define ORD_FMA(acc, a, bv) for (int l_ = 0; l_ < 16; l_++) (acc).v[l_] = fmaf((a), (bv).v[l_], (acc).v[l_])
#define ORD_UPDATE(c, alpha, acc) for (int l_ = 0; l_ < 16; l_++) { const float t_ = (alpha) * (acc).v[l_]; (c)[l_] = (c)[l_] + t_; }
#define ORD_NAME spqr_ordered_rows_generic
#define ORD_MR 4
#include "kernels/ordered_body.h"

#if !defined(__x86_64__)
void spqr_ordered_rows_avx2(const spqr_ordered_args *g, int ith, int nth) { spqr_ordered_rows_generic(g, ith, nth); }
void spqr_ordered_rows_avx512(const spqr_ordered_args *g, int ith, int nth) { spqr_ordered_rows_generic(g, ith, nth); }
#endif

spqr_ordered_rows_fn spqr_ordered_select(void) {
    const char *want = getenv("SPQR_CPU");
#if defined(__x86_64__)
    __builtin_cpu_init();
    const int has512 = __builtin_cpu_supports("avx512f"), has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (want && !strcmp(want, "generic")) return spqr_ordered_rows_generic;
    if (want && !strcmp(want, "avx2") && has2) return spqr_ordered_rows_avx2;
    if (has512) return spqr_ordered_rows_avx512;
    if (has2) return spqr_ordered_rows_avx2;
#else
    (void)want;
#endif
    return spqr_ordered_rows_generic;
}

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
    ord_job j = {g, spqr_ordered_select()};
    if (pool && spqr_pool_size(pool) > 1 && g->M > SPQR_ORDERED_ROWS) spqr_pool_run(pool, ord_task, &j);
    else j.fn(g, 0, 1);
}

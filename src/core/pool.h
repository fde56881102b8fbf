/*
 * pool.h — a persistent pool of worker threads. spqr_pool_run(fn) runs fn(arg, i, n) on every thread
 * i of n (the caller is thread 0) and returns when all are done. Workers spin briefly, then sleep
 * on a condition variable, so back-to-back calls in a token loop cost microseconds, not a wake-up.
 */
#ifndef SPQR_POOL_H
#define SPQR_POOL_H

typedef struct spqr_pool spqr_pool;
typedef void (*spqr_task_fn)(void *arg, int ith, int nth);

/* n_threads >= 1 (total, the caller included). NULL on failure. */
spqr_pool *spqr_pool_new(int n_threads);
void spqr_pool_free(spqr_pool *p);
int spqr_pool_size(const spqr_pool *p);
void spqr_pool_run(spqr_pool *p, spqr_task_fn fn, void *arg);

/* Splits [0, n) into nth near-equal ranges, each a multiple of `align` except the last. */
static inline void spqr_split(int n, int ith, int nth, int align, int *lo, int *hi) {
    int blocks = (n + align - 1) / align;
    int b0 = (int)((long long)blocks * ith / nth), b1 = (int)((long long)blocks * (ith + 1) / nth);
    *lo = b0 * align < n ? b0 * align : n;
    *hi = b1 * align < n ? b1 * align : n;
}

#endif

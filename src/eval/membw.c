/*
 * membw.c — a STREAM-like read-bandwidth measurement: n threads each sum their slice of one buffer
 * (AVX2/AVX-512 unrolled sums from the compiler's auto-vectorisation are not needed: 4 independent
 * 64-bit accumulators per thread saturate a core's load ports). The buffer should be well above the
 * last-level cache to measure DRAM.
 */
#include "core/core.h"
#include "core/pool.h"

#include <stdlib.h>

typedef struct { const uint64_t *buf; size_t n; uint64_t *out; } bw_job;

static void bw_task(void *arg, int ith, int nth) {
    const bw_job *j = arg;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) { a += j->buf[i]; b ^= j->buf[i + 1]; c += j->buf[i + 2]; d ^= j->buf[i + 3]; }
    for (; i < hi; i++) a += j->buf[i];
    j->out[ith * 8] = a + b + c + d; /* one cache line per thread */
}

spqr_status spqr_measure_read_bandwidth(size_t bytes, int n_threads, double *gbs, spqr_error *err) {
    *gbs = 0;
    if (bytes < (1u << 20) || n_threads < 1) return spqr_set_err(err, SPQR_E_ARG, "bandwidth: buffer of at least 1 MiB and a thread");
    size_t n = bytes / 8;
    uint64_t *buf = spqr_aligned_alloc(n, 8), *out = spqr_aligned_alloc((size_t)n_threads * 8, 8);
    spqr_pool *pool = spqr_pool_new(n_threads);
    if (!buf || !out || !pool) {
        spqr_aligned_free(buf);
        spqr_aligned_free(out);
        spqr_pool_free(pool);
        return spqr_set_err(err, SPQR_E_NOMEM, "bandwidth: cannot allocate %zu bytes", bytes);
    }
    for (size_t i = 0; i < n; i++) buf[i] = i; /* touch every page */
    bw_job j = {buf, n, out};
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = spqr_now();
        spqr_pool_run(pool, bw_task, &j);
        double t = spqr_now() - t0;
        if (t > 0 && (double)(n * 8) / t > best) best = (double)(n * 8) / t;
    }
    *gbs = best / 1e9;
    spqr_aligned_free(buf);
    spqr_aligned_free(out);
    spqr_pool_free(pool);
    return SPQR_OK;
}

/*
 * spqr_cuda_v6.cuh — v6: split-K fused GEMV on the fused device layout (spqr_cuda_internal.cuh), for
 * batch-1 decoding. CUDA C++ only (the kernel lab and the GPU tests use it; the C API is unchanged).
 *
 * Layout: the FUSED upload (SPQR_CUDA_LAYOUT_FUSED) plus, per v6 state, the outliers' columns in the
 * ORIGINAL input order (ocolx = perm[focol], uint16; replaces focol, same bytes), so that an outlier's
 * x is one load away from its column. Grid: one block per (32-row tile, chunk of wpb column tiles of 256
 * stored columns), one warp per column tile (rows in the lanes, as v5). Each block gathers only its
 * chunk's permuted x and per-group sums into shared memory; the code/statistics loads of its tile are
 * issued before the gather. The blocks of a row tile combine through fp32 partial sums: the last block
 * to arrive (an atomic counter per row tile, reset by that block) adds them in chunk order
 * (deterministic) and writes y. One kernel launch per pass of up to 4 activations.
 * The partial sums and counters belong to the state: one state must not run on two streams at once.
 */
#ifndef SPQR_CUDA_V6_CUH
#define SPQR_CUDA_V6_CUH

#include "cuda/spqr_cuda_internal.cuh"

struct spqr_cuda_v6 {
    const spqr_cuda_qmatrix *m; /* not owned */
    int wpb;                    /* warps (= column tiles) per block */
    int nchunk;                 /* ceil(nct / wpb) column chunks per row tile */
    uint16_t *ocolx;            /* [n_out] outlier columns in the original input order */
    float *part;                /* [nchunk][4][nrt * 32] partial sums */
    unsigned *cnt;              /* [nrt] arrival counters, zero between calls */
    uint64_t bytes;             /* device bytes of the matrix one call reads (as bytes_fused) */
};

/* Whether v6 can run m: m has the fused layout (SpQR, β1 = 16, q <= 4, β2 % 16 == 0, wbits 2..4). */
int spqr_cuda_v6_supported(const spqr_cuda_qmatrix *m);
/* Builds the v6 state of an uploaded matrix (m must outlive it); wpb 0: the default (4). Synchronous. */
spqr_status spqr_cuda_v6_new(const spqr_cuda_qmatrix *m, int wpb, spqr_cuda_v6 **out, spqr_error *err);
void spqr_cuda_v6_free(spqr_cuda_v6 *p);
/* Y = X Wᵀ: x fp16 (or fp32 when xf32) [n][cols] in the original column order, y fp32 [n][rows];
 * device pointers, enqueued on the context's stream. */
spqr_status spqr_cuda_v6_matmul(spqr_cuda_ctx *c, spqr_cuda_v6 *p, const void *x, int xf32, int n, float *y, spqr_error *err);

#endif

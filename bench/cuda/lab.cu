/*
 * lab.cu — the CUDA kernel lab: every kernel version checked against the CPU reference decoder
 * (spqr_qview_dequant_rows) on synthetic .spqr matrices, then timed on the device.
 *
 *   v1 naive    one thread per row, storage layout, per-element statistics (lab only)
 *   v2 generic  one warp per row, storage layout            (SPQR_CUDA_GENERIC, src/cuda)
 *   v3 tiled    repacked layout, 16-byte loads, fp16-magic decode, fp32 math, fused outliers
 *                                                           (SPQR_CUDA_TILED, src/cuda)
 *   v4 deq+gemm dequantize to fp16 + cuBLAS GemmEx          (SPQR_CUDA_DEQUANT, src/cuda)
 *   v5 fused    rows in lanes, in-block x gather, one launch (SPQR_CUDA_FUSED, src/cuda): v5-fused
 *               (half tiles for n <= 2, programmatic dependent launch), v5-whole (whole tiles), v5-nopdl
 *   v6 split-K  v5's layout, one block per (32 rows, chunk of 4 or 8 column tiles), in-kernel chunk
 *               reduction (spqr_cuda_v6.cu): v6-w4, v6-w8 (warps = column tiles per block)
 *   v7 mma      tensor cores (mma.sync m16n8k16), weights dequantized to fp16 in registers, K split
 *               over S blocks per row tile (spqr_cuda_mma.cu, SPQR_CUDA_MMA): v7-mma (S for this
 *               device), v7-S<k> (S forced; n = 1 only)
 *   v8 gsum     tensor cores on exact codes: group sums Σ c·x per (row, group of 16) in the MMA
 *               accumulators, statistics in fp32 (spqr_cuda_mma.cu, SPQR_CUDA_GSUM): v8-gsum (S for
 *               this device), v8-S<k> (S forced; n = 1 only); SpQR β1 = 16, n <= 8
 *   v7-ingather (--v9) v7 with x gathered in the kernel for n <= 8 (the default before run 18; now
 *               pre-gathered by a kernel on large matrices at every n)
 *   v9 act8     v5 with 8-bit activations (x rounded to int8 per group of 16 in the kernel, exact IDP4A
 *               group sums; spqr_cuda_fused.cu, SPQR_CUDA_ACT8): v9-act8. Its rel_err column is
 *               against the CPU's 8-bit-activation reference (spqr_qtiles_gemv_act8_ref), which it
 *               must equal up to summation order; "vs exact" in the log is against W·x16.
 *               v5 and v9 as dispatched prepare x once per product by a small kernel where the blocks'
 *               own gathers add up (k_prep_x: the permuted x and its group sums, or its int8 rounding;
 *               every block copies it): v5-gather, v9-gather are the same kernels with each block
 *               gathering x itself; v9-w4 … v9-w32: v9 at n = 1 with that many warps per block;
 *               v9-noprep (--noprep): v9 reusing the previous product's prepared x
 *               (spqr_cuda_ctx_reuse_x; no k_prep_x), as k, v and up do in the GPU model
 *   v11 wide    v7's unit arithmetic on blocks of 4 row tiles x 2 warps that share one copy of the K-slice's
 *               x (spqr_cuda_mma.cu, ctx->mma_wide): v11-wide; for batches > 8, where v7's 32-row blocks
 *               each copy x
 *   v12 deq     v7's layout dequantized to fp16 (the weights v7 multiplies) + cuBLAS GemmEx
 *               (spqr_cuda_mma_dequant_matmul; SPQR_CUDA_MMA above 16): v12-deq
 *   v10 stream  records of 16 x 256 super-atoms streamed into shared memory by a producer warp (bulk
 *               copies, a ring of stages; with PDL the next product's weights are in flight while this
 *               one computes), exact codes on the tensor cores with fp32 statistics (as v8), stream-K
 *               (spqr_cuda_stream.cu, SPQR_CUDA_STREAM): v10-stream (24 consumer warps, one block per SM),
 *               v10-nopdl, v10-w8 (8 warps, two blocks per SM), v10-w16 (16 warps), v10-w16g264 (the same, 264 blocks)
 *   floors      what any kernel reading the fused layout's bytes pays in these graphs: floor-empty (an
 *               empty kernel in v5's grid, with PDL), floor-v5grid (the code and statistic arrays read
 *               once with uint4 loads in v5's grid, PDL), floor-read (the same bytes, 8 blocks of 512
 *               threads per SM)
 *   cublas16    cuBLAS fp16 GemmEx on the dense fp16 weights (the reference)
 *
 * Timing: each op is captured NC times in a CUDA graph, over NC distinct copies of the weights
 * (NC * bytes >= 150 MB, so the weights come from HBM, not the 50 MB L2); the graph is replayed
 * (2 warm-up, 15 timed with events), the median replay / NC is the op's time. Bytes counted:
 * the matrix arrays the op reads + x (fp16) + y (fp32; fp16 for cuBLAS).
 *
 * Usage: spqr-cuda-lab [--quick] [--fast] [--v56] [--v7] [--v8] [--v9] [--v10] [--v11] [--trace] [--noprep] [--csv FILE]
 *   --quick  4096 x 4096 only, fewer configurations (a smoke run)
 *   --fast   no v1, v2, rows-per-warp variants or β sweep
 *   --v56    only cuBLAS, v5 and v6, n <= 4 (implies --fast)
 *   --v7     only cuBLAS, v5 (n <= 8) and v7 (implies --fast)
 *   --v8     only cuBLAS, v5 (n <= 8), v7 (default S) and v8 (implies --fast)
 *   --v9     only cuBLAS, v5 (n <= 8), v9, the floors and v7 (default S; no v8) (implies --fast)
 *   --v10    only cuBLAS, v5 and v9 (n <= 2), the floors, v7 (n >= 4) and v10 (implies --fast)
 *   --v11    only cuBLAS, v7, v11 (n >= 2), v4 and v12 (n >= 8) (implies --fast)
 *   --trace  only cuBLAS, v5, v9 and its variants (n <= 2) and the floors, and for SpQR w3 the timeline
 *            of one product of each at n = 1 inside its timing graph (trace_fused)
 *   --noprep only cuBLAS, v9, v9-noprep and floor-read, SpQR w3 β1 = β2 = 16, n = 1
 */
#include <algorithm>
#include <string>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vector>

#include "cuda/mma_layout.h"
#include "cuda/spqr_cuda_internal.cuh"
#include "cuda/stream_layout.h"
extern "C" {
#include "kernels/qtiles.h"
}
#include "cuda/spqr_cuda_v6.cuh"
extern "C" {
#include "synth.h"
}

#define CHECK(x)                                                                                     \
    do {                                                                                             \
        cudaError_t e_ = (x);                                                                        \
        if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); exit(1); } \
    } while (0)
#define OKE(x, er_)                                                                 \
    do {                                                                            \
        if ((x) != SPQR_OK) { fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, (er_).msg); exit(1); } \
    } while (0)

/* ---- v1: naive, one thread per row (lab only) ---- */
__global__ void k_v1_naive(const spqr_cuda_qmatrix m, const float2 *xp, int B, float *y) {
    const uint32_t r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= m.rows) return;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (uint32_t j = 0; j < m.cols; j++) {
        const float w = raw_weight(m, m.blob, r, j);
        for (int b = 0; b < B; b++) acc[b] = fmaf(w, xp_at(xp, B, j, b), acc[b]);
    }
    if (m.kind == SPQR_TK_SPQR) {
        const uint32_t *rp = (const uint32_t *)(m.blob + m.lay.row_ptr);
        const uint16_t *oc = (const uint16_t *)(m.blob + m.lay.ocol), *ov = (const uint16_t *)(m.blob + m.lay.oval);
        for (uint32_t k = rp[r]; k < rp[r + 1]; k++) {
            const float d = __half2float(__ushort_as_half(ov[k])) - raw_weight(m, m.blob, r, oc[k]);
            for (int b = 0; b < B; b++) acc[b] = fmaf(d, xp_at(xp, B, oc[k], b), acc[b]);
        }
    }
    for (int b = 0; b < B; b++) y[(size_t)b * m.rows + r] = acc[b];
}

static void run_v1(const spqr_cuda_qmatrix *m, const __half *x, int n, float *y, float2 *xp, cudaStream_t st) {
    const uint32_t npairs = (m->cols + 1) / 2;
    CHECK(spqr_cuda_gather_x(x, n, 0, n, m->cols, m->perm, npairs, xp, st));
    k_v1_naive<<<(m->rows + 127) / 128, 128, 0, st>>>(*m, xp, n, y);
    CHECK(cudaGetLastError());
}

/* A device copy of an uploaded matrix (same contents, new buffers), for L2 rotation. */
static spqr_cuda_qmatrix *clone(const spqr_cuda_qmatrix *m, const spqr_qview *v) {
    spqr_cuda_qmatrix *c = (spqr_cuda_qmatrix *)malloc(sizeof *c);
    *c = *m;
    c->mma = c->gsum = NULL; /* v7 and v8 have their own copies (run_mma_kernel) */
    c->stream = NULL;        /* v10 too (run_stream_kernel) */
    CHECK(cudaMalloc(&c->blob, m->lay.size));
    CHECK(cudaMemcpy(c->blob, m->blob, m->lay.size, cudaMemcpyDeviceToDevice));
    c->perm = m->perm ? (const int32_t *)(c->blob + m->lay.perm) : NULL;
    if (m->kind == SPQR_TK_SPQR) { c->orp = (uint32_t *)(c->blob + m->lay.row_ptr); c->ocol = (uint16_t *)(c->blob + m->lay.ocol); }
    if (m->tiled) {
        size_t ncw = (size_t)m->rows * m->wbits * m->npq * 4, nst = (size_t)m->rows * m->gpad * (m->kind == SPQR_TK_SPQR ? 1 : 4) + 16;
        size_t nqq = (m->kind == SPQR_TK_SPQR ? (size_t)m->row_blocks * m->gpad : 0) + 1;
        CHECK(cudaMalloc(&c->tcodes, ncw)); CHECK(cudaMemcpy(c->tcodes, m->tcodes, ncw, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->tstat, nst)); CHECK(cudaMemcpy(c->tstat, m->tstat, nst, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->tqq, nqq * 8)); CHECK(cudaMemcpy(c->tqq, m->tqq, nqq * 8, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->odelta, (m->n_out + 1) * 2)); CHECK(cudaMemcpy(c->odelta, m->odelta, (m->n_out + 1) * 2, cudaMemcpyDeviceToDevice));
    }
    if (m->fused) {
        const int NS = m->f_q3 ? 3 : 4;
        size_t ncw = (size_t)m->nrt * m->nct * 2 * m->wbits * 32 * 16, nsw = (size_t)m->nrt * m->nct * NS * 32 * 4;
        size_t nqq = (size_t)m->row_blocks * m->nct * 16 * 8;
        CHECK(cudaMalloc(&c->fcodes, ncw)); CHECK(cudaMemcpy(c->fcodes, m->fcodes, ncw, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->fstat, nsw)); CHECK(cudaMemcpy(c->fstat, m->fstat, nsw, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->fqq, nqq)); CHECK(cudaMemcpy(c->fqq, m->fqq, nqq, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->forp, (m->rows + 1) * 4)); CHECK(cudaMemcpy(c->forp, m->forp, (m->rows + 1) * 4, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->focol, m->n_out * 2 + 16)); CHECK(cudaMemcpy(c->focol, m->focol, m->n_out * 2, cudaMemcpyDeviceToDevice));
        CHECK(cudaMalloc(&c->fodelta, m->n_out * 4 + 16)); CHECK(cudaMemcpy(c->fodelta, m->fodelta, m->n_out * 4, cudaMemcpyDeviceToDevice));
        if (m->fperm) { CHECK(cudaMalloc(&c->fperm, m->cols * 4)); CHECK(cudaMemcpy(c->fperm, m->fperm, m->cols * 4, cudaMemcpyDeviceToDevice)); }
        if (m->a8codes) { CHECK(cudaMalloc(&c->a8codes, ncw)); CHECK(cudaMemcpy(c->a8codes, m->a8codes, ncw, cudaMemcpyDeviceToDevice)); }
    }
    (void)v;
    return c;
}

/* op(0) .. op(NC - 1) captured on st into *g, instantiated; the caller destroys both. */
template <class F>
static cudaGraphExec_t capture_ops(int NC, cudaStream_t st, F op, cudaGraph_t *g) {
    cudaGraphExec_t ge;
    CHECK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < NC; i++) op(i);
    CHECK(cudaStreamEndCapture(st, g));
    CHECK(cudaGraphInstantiate(&ge, *g, 0));
    return ge;
}

/* Median time (µs) of one op over NC copies: graph of NC ops, 2 warm-up + 15 timed replays. */
template <class F>
static double time_op(int NC, cudaStream_t st, F op) {
    for (int i = 0; i < NC; i++) op(i); /* warm-up outside capture: grows workspaces */
    CHECK(cudaStreamSynchronize(st));
    cudaGraph_t g;
    const cudaGraphExec_t ge = capture_ops(NC, st, op, &g);
    cudaEvent_t a, b;
    CHECK(cudaEventCreate(&a)); CHECK(cudaEventCreate(&b));
    for (int i = 0; i < 2; i++) CHECK(cudaGraphLaunch(ge, st));
    std::vector<float> ts;
    for (int i = 0; i < 15; i++) {
        CHECK(cudaEventRecord(a, st));
        CHECK(cudaGraphLaunch(ge, st));
        CHECK(cudaEventRecord(b, st));
        CHECK(cudaEventSynchronize(b));
        float ms;
        CHECK(cudaEventElapsedTime(&ms, a, b));
        ts.push_back(ms);
    }
    std::sort(ts.begin(), ts.end());
    CHECK(cudaGraphExecDestroy(ge)); CHECK(cudaGraphDestroy(g));
    CHECK(cudaEventDestroy(a)); CHECK(cudaEventDestroy(b));
    return ts[ts.size() / 2] * 1000.0 / NC;
}

__global__ void k_read(const uint4 *p, size_t n, unsigned *out) {
    unsigned s = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        uint4 v = __ldg(p + i);
        s ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (s == 0x12345678u) out[0] = s; /* keeps the loads */
}

/* The floors: nothing (read = 0) or a read of arrays a and b (uint4 counts na, nb), grid-stride, with
 * v5's programmatic-dependent-launch handshake. */
__global__ void k_floor(const uint4 *a, size_t na, const uint4 *b, size_t nb, unsigned *out, int read) {
    pdl_launch_dependents();
    pdl_wait();
    if (!read) return;
    unsigned s = 0;
    const size_t st = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < na + nb; i += st) {
        const uint4 v = __ldg(i < na ? a + i : b + (i - na));
        s ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (s == 0x12345678u) out[0] = s; /* keeps the loads */
}

static void launch_floor(const spqr_cuda_qmatrix *m, int grid, int threads, int read, unsigned *out, cudaStream_t st) {
    const int NS = m->f_q3 ? 3 : 4;
    const size_t na = (size_t)m->nrt * m->nct * 2 * m->wbits * 32, nb = (size_t)m->nrt * m->nct * NS * 32 / 4;
    const spqr_launch l(dim3((unsigned)grid), dim3((unsigned)threads), 0, st, 1);
    CHECK(cudaLaunchKernelEx(&l.cfg, k_floor, (const uint4 *)m->fcodes, na, (const uint4 *)m->fstat, nb, out, read));
}

/* Achievable bandwidth: D2D copy (read + write bytes) and a read-only kernel, 1 GiB, best of 10. */
static void roofline(cudaStream_t st, double *copy_gbs, double *read_gbs) {
    const size_t bytes = 1ull << 30;
    void *a, *b;
    CHECK(cudaMalloc(&a, bytes)); CHECK(cudaMalloc(&b, bytes));
    CHECK(cudaMemset(a, 1, bytes)); CHECK(cudaMemset(b, 2, bytes));
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0)); CHECK(cudaEventCreate(&e1));
    float best = 1e30f, bestr = 1e30f, ms;
    int dev, sms;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    for (int i = 0; i < 11; i++) {
        CHECK(cudaEventRecord(e0, st));
        CHECK(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
        CHECK(cudaEventRecord(e1, st));
        CHECK(cudaEventSynchronize(e1));
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (i) best = std::min(best, ms);
        CHECK(cudaEventRecord(e0, st));
        k_read<<<sms * 8, 512, 0, st>>>((const uint4 *)a, bytes / 16, (unsigned *)b);
        CHECK(cudaEventRecord(e1, st));
        CHECK(cudaEventSynchronize(e1));
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (i) bestr = std::min(bestr, ms);
    }
    *copy_gbs = 2.0 * bytes / (best * 1e-3) / 1e9;
    *read_gbs = bytes / (bestr * 1e-3) / 1e9;
    CHECK(cudaFree(a)); CHECK(cudaFree(b));
}

/* ‖y − ref‖ / ‖ref‖ over n x rows, ref = W_ref · x16 in double (W_ref from the reference decoder). */
static double rel_err(const float *Wref, int rows, int cols, const __half *xh, int n, const float *y) {
    double num = 0, den = 0;
    for (int b = 0; b < n; b++)
        for (int r = 0; r < rows; r++) {
            double ref = 0;
            const float *w = Wref + (size_t)r * cols;
            const __half *x = xh + (size_t)b * cols;
            for (int j = 0; j < cols; j++) ref += (double)w[j] * (double)__half2float(x[j]);
            double d = (double)y[(size_t)b * rows + r] - ref;
            num += d * d;
            den += ref * ref;
        }
    return sqrt(num / (den > 0 ? den : 1));
}

struct cfg { uint32_t kind, wbits, gs, qq_gs; double out; int perm; const char *name; int full; };

static void print_row(FILE *csv, const char *shape, uint32_t rows, uint32_t cols, const char *mat, const char *alg, int n, double us, double bytes,
                      double read_gbs, double cub, double e) {
    printf("%-12s %-16s %-10s %3d %9.2f %8.0f %6.1f%% %8.2fx %9.2e%s\n", shape, mat, alg, n, us, bytes / us / 1e3, 100 * bytes / us / 1e3 / read_gbs,
           cub / us, e, e < 2e-3 ? "" : "  <-- CHECK FAILED");
    if (csv) fprintf(csv, "%u,%u,%s,%s,%d,%.3f,%.1f,%.4f,%.3f,%.3e,%.0f\n", rows, cols, mat, alg, n, us, bytes / us / 1e3, bytes / us / 1e3 / read_gbs,
                     cub / us, e, bytes);
    fflush(stdout);
}

/* One op at batch n on NC device copies: checked (y poisoned first; against W·x16 for the first 4
 * activations, every output finite), then timed; prints its row (bytes: what one op reads and writes). */
template <class F>
static void check_and_time(FILE *csv, const char *shape, const char *mat, const char *alg, uint32_t rows, uint32_t cols, int n, int NC,
                           cudaStream_t st, F op, float *yd, const float *Wref, const std::vector<__half> &xh, double bytes, double read_gbs,
                           double cub) {
    std::vector<float> yh((size_t)n * rows);
    CHECK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
    op(NC - 1);
    CHECK(cudaStreamSynchronize(st));
    CHECK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
    double e = rel_err(Wref, rows, cols, xh.data(), n < 4 ? n : 4, yh.data());
    for (size_t i = 0; i < yh.size(); i++) if (!isfinite(yh[i])) { e = INFINITY; break; }
    print_row(csv, shape, rows, cols, mat, alg, n, time_op(NC, st, op), bytes, read_gbs, cub, e);
}

/* v7, or v8 when alg starts with "v8" (the group-sum layout), on NC device copies of one host layout
 * with S K-slices (0: this device's default): checked (y poisoned first), then timed, at every n of ns. */
static void run_mma_kernel(FILE *csv, const char *shape, const cfg &cf, const spqr_qview *v, uint32_t S, const char *alg, const std::vector<int> &ns,
                           spqr_cuda_ctx *ctx, cudaStream_t st, const __half *xd, const std::vector<__half> &xh, float *yd, const float *Wref,
                           const std::vector<double> &cub_us, double read_gbs, int sms) {
    spqr_error er;
    spqr_mma_layout L;
    const bool gsum = !strncmp(alg, "v8", 2), deq = !strcmp(alg, "v12-deq");
    const uint32_t S1 = S ? S : spqr_mma_default_slices(v->rows, v->cols, sms);
    OKE(gsum ? spqr_gsum_build(v, S1, &L, &er) : spqr_mma_build(v, S1, &L, &er), er);
    const double wb = (double)spqr_mma_bytes(&L);
    const int NC = std::max(2, (int)ceil(150e6 / wb));
    std::vector<spqr_cuda_mma *> ds(NC);
    for (int i = 0; i < NC; i++) OKE(spqr_cuda_mma_upload(&L, &ds[i], &er), er);
    char name[32];
    snprintf(name, sizeof name, "%s", alg);
    if (!strcmp(alg, "v7-mma") || !strcmp(alg, "v8-gsum") || !strcmp(alg, "v11-wide")) snprintf(name, sizeof name, "%s-S%u", alg, L.S);
    for (int n : ns) {
        auto op = [&](int i) {
            if (deq) OKE(spqr_cuda_mma_dequant_matmul(ctx, ds[i], xd, 0, n, yd, &er), er);
            else OKE(spqr_cuda_mma_matmul(ctx, ds[i], xd, 0, n, yd, &er), er);
        };
        check_and_time(csv, shape, cf.name, name, v->rows, v->cols, n, NC, st, op, yd, Wref, xh, wb + 2.0 * n * v->cols + 4.0 * n * v->rows,
                       read_gbs, cub_us[n]);
    }
    for (auto d : ds) spqr_cuda_mma_free(d);
    spqr_mma_free(&L);
}

/* v10 on NC device copies of one host layout: checked (y poisoned first), then timed, at every n of ns;
 * grid: blocks per product (0: the default), pdl: programmatic dependent launch. */
static void run_stream_kernel(FILE *csv, const char *shape, const cfg &cf, const spqr_stream_layout *L, const char *alg, const std::vector<int> &ns,
                              int grid, int pdl, int nw, spqr_cuda_ctx *ctx, cudaStream_t st, const __half *xd, const std::vector<__half> &xh, float *yd,
                              const float *Wref, const std::vector<double> &cub_us, double read_gbs) {
    spqr_error er;
    const double wb = (double)spqr_stream_bytes(L);
    const int NC = std::max(2, (int)ceil(150e6 / wb));
    std::vector<spqr_cuda_stream *> ds(NC);
    for (int i = 0; i < NC; i++) OKE(spqr_cuda_stream_upload(L, &ds[i], &er), er);
    ctx->stream_grid = grid;
    ctx->stream_nw = nw;
    ctx->pdl = pdl;
    for (int n : ns) {
        auto op = [&](int i) { OKE(spqr_cuda_stream_matmul(ctx, ds[i], xd, 0, n, yd, &er), er); };
        check_and_time(csv, shape, cf.name, alg, L->rows, L->cols, n, NC, st, op, yd, Wref, xh,
                       wb * ((n + 7) / 8) + 2.0 * n * L->cols + 4.0 * n * L->rows, read_gbs, cub_us[n]);
    }
    ctx->stream_grid = 0;
    ctx->stream_nw = 0;
    ctx->pdl = 1;
    for (auto d : ds) spqr_cuda_stream_free(d);
}

/* min / median / max of v (µs: ns / 1000) as "a / b / c". */
static std::string qstat(std::vector<double> v) {
    char b[64];
    if (v.empty()) return "-";
    std::sort(v.begin(), v.end());
    snprintf(b, sizeof b, "%.2f / %.2f / %.2f", v.front() / 1e3, v[v.size() / 2] / 1e3, v.back() / 1e3);
    return b;
}

/* --trace: the timeline of one v5/v9 product (n = 1) inside the timing graph of NC products (ctx->trace;
 * records as SPQR_TRACE_REC says): for the middle product, the global timer at each event relative to
 * its first block's start (min / median / max over blocks; over warps for the tile loop's end), the
 * next product's first start, and per block the SM clock's median phase lengths. */
static void trace_fused(const char *shape, const char *alg, spqr_cuda_ctx *ctx, const std::vector<spqr_cuda_qmatrix *> &ms, spqr_cuda_algo id,
                        const __half *xd, float *yd, cudaStream_t st) {
    const int NC = (int)ms.size(), nb = (int)ms[0]->nrt;
    if (NC < 3 || nb > SPQR_TRACE_BLOCKS) { printf("trace %s %s: needs 3 products and at most %d blocks\n", shape, alg, SPQR_TRACE_BLOCKS); return; }
    const size_t per = (size_t)(SPQR_TRACE_BLOCKS + 64) * SPQR_TRACE_REC;
    unsigned long long *td;
    CHECK(cudaMalloc(&td, per * NC * 8));
    CHECK(cudaMemset(td, 0, per * NC * 8));
    spqr_error er;
    cudaGraph_t g;
    const cudaGraphExec_t ge = capture_ops(NC, st, [&](int i) {
        ctx->trace = td + i * per;
        OKE(spqr_cuda_matmul(ctx, ms[i], id, xd, 1, yd, &er), er);
    }, &g);
    ctx->trace = NULL;
    for (int i = 0; i < 3; i++) CHECK(cudaGraphLaunch(ge, st));
    CHECK(cudaStreamSynchronize(st));
    std::vector<unsigned long long> h(per * NC);
    CHECK(cudaMemcpy(h.data(), td, h.size() * 8, cudaMemcpyDeviceToHost));
    CHECK(cudaGraphExecDestroy(ge)); CHECK(cudaGraphDestroy(g)); CHECK(cudaFree(td));
    const int i = NC / 2;
    auto rec = [&](int op, int b) { return &h[op * per + (size_t)b * SPQR_TRACE_REC]; };
    auto t0_of = [&](int op) { unsigned long long t = ~0ull; for (int b = 0; b < nb; b++) t = std::min(t, rec(op, b)[0]); return (double)t; };
    const double t0 = t0_of(i);
    std::vector<double> ev[4], loop, pr[3], c_wait, c_x, c_loop, c_loopmax, c_tail;
    for (int b = 0; b < nb; b++) {
        const unsigned long long *r = rec(i, b);
        for (int k = 0; k < 4; k++) ev[k].push_back((double)r[2 * k] - t0);
        double lm = 0;
        std::vector<double> cl;
        for (int w = 0; w < 32; w++) {
            if (!r[2 * (4 + w)]) continue;
            loop.push_back((double)r[2 * (4 + w)] - t0);
            cl.push_back((double)(r[2 * (4 + w) + 1] - r[5]));
            lm = std::max(lm, (double)r[2 * (4 + w) + 1]);
        }
        std::sort(cl.begin(), cl.end());
        c_wait.push_back((double)(r[3] - r[1]));
        c_x.push_back((double)(r[5] - r[3]));
        if (!cl.empty()) { c_loop.push_back(cl[cl.size() / 2]); c_loopmax.push_back(cl.back()); c_tail.push_back((double)r[7] - lm); }
    }
    for (int b = 0; b < 64; b++) {
        const unsigned long long *r = rec(i, SPQR_TRACE_BLOCKS + b);
        if (!r[0]) continue;
        for (int k = 0; k < 3; k++) pr[k].push_back((double)r[2 * k] - t0);
    }
    double prev_end = 0;
    for (int b = 0; b < nb; b++) prev_end = std::max(prev_end, (double)rec(i - 1, b)[6] - t0);
    auto med = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v.empty() ? 0.0 : v[v.size() / 2]; };
    printf("trace %s %s, product %d of %d (µs from its first block's start; min / median / max):\n", shape, alg, i, NC);
    if (!pr[0].empty())
        printf("  k_prep_x (%zu blocks): start %s | past the wait %s | end %s\n", pr[0].size(), qstat(pr[0]).c_str(), qstat(pr[1]).c_str(),
               qstat(pr[2]).c_str());
    printf("  blocks (%d): start %s | past the wait %s | x ready %s | tile loop done (warps) %s | end %s\n", nb, qstat(ev[0]).c_str(),
           qstat(ev[1]).c_str(), qstat(ev[2]).c_str(), qstat(loop).c_str(), qstat(ev[3]).c_str());
    printf("  previous product's last block end %.2f, next product's first block start %.2f\n", prev_end / 1e3, (t0_of(i + 1) - t0) / 1e3);
    printf("  SM cycles per block (median): start to past the wait %.0f, x %.0f, tile loop %.0f (its last warp %.0f), last warp to end %.0f\n",
           med(c_wait), med(c_x), med(c_loop), med(c_loopmax), med(c_tail));
    fflush(stdout);
}

int main(int argc, char **argv) {
    int quick = 0, fast = 0, v56 = 0, v7 = 0, v8 = 0, v9 = 0, v10 = 0, v11 = 0, trace = 0, noprep = 0;
    const char *csv_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--fast")) fast = 1;
        else if (!strcmp(argv[i], "--v56")) fast = v56 = 1;
        else if (!strcmp(argv[i], "--v7")) fast = v7 = 1;
        else if (!strcmp(argv[i], "--v8")) fast = v7 = v8 = 1;
        else if (!strcmp(argv[i], "--v9")) fast = v7 = v8 = v9 = 1;
        else if (!strcmp(argv[i], "--v10")) fast = v7 = v8 = v9 = v10 = 1;
        else if (!strcmp(argv[i], "--v11")) fast = v7 = v11 = 1;
        else if (!strcmp(argv[i], "--trace")) fast = v7 = v8 = v9 = trace = 1;
        else if (!strcmp(argv[i], "--noprep")) fast = v7 = v8 = v9 = noprep = 1;
        else if (!strcmp(argv[i], "--csv") && i + 1 < argc) csv_path = argv[++i];
        else { fprintf(stderr, "usage: %s [--quick] [--fast] [--v56|--v7|--v8|--v9|--v10|--v11|--trace|--noprep] [--csv FILE]\n", argv[0]); return 2; }
    }
    if (spqr_cuda_device_count() <= 0) { printf("SKIPPED: no CUDA device\n"); return 0; }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
    cudaStream_t st;
    CHECK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    spqr_error er;
    spqr_cuda_ctx *ctx;
    OKE(spqr_cuda_ctx_new(st, &ctx, &er), er);
    double copy_gbs, read_gbs;
    roofline(st, &copy_gbs, &read_gbs);
    printf("roofline: D2D copy %.0f GB/s (read+write), read kernel %.0f GB/s\n", copy_gbs, read_gbs);
    FILE *csv = csv_path ? fopen(csv_path, "w") : NULL;
    if (csv) fprintf(csv, "rows,cols,matrix,algo,n,us,GBps,frac_read_roofline,speedup_vs_cublas,rel_err,bytes\n");

    const uint32_t shapes[3][2] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
    std::vector<cfg> cfgs = {
        {SPQR_TK_SPQR, 3, 16, 16, 0.01, 1, "spqr-w3-b16-16", 1},
        {SPQR_TK_SPQR, 4, 16, 16, 0.01, 1, "spqr-w4-b16-16", 0},
        {SPQR_TK_SPQR, 2, 16, 16, 0.01, 1, "spqr-w2-b16-16", 0},
        {SPQR_TK_GPTQ, 4, 128, 0, 0, 0, "gptq-w4-g128", 0},
        {SPQR_TK_SPQR, 3, 8, 16, 0.01, 1, "spqr-w3-b8-16", 2},
        {SPQR_TK_SPQR, 3, 32, 16, 0.01, 1, "spqr-w3-b32-16", 2},
        {SPQR_TK_SPQR, 3, 16, 32, 0.01, 1, "spqr-w3-b16-32", 2},
        {SPQR_TK_SPQR, 3, 16, 64, 0.01, 1, "spqr-w3-b16-64", 2},
        {SPQR_TK_SPQR, 3, 8, 64, 0.01, 1, "spqr-w3-b8-64", 2},
        {SPQR_TK_SPQR, 3, 32, 32, 0.01, 1, "spqr-w3-b32-32", 2},
    };
    const int ns_full[] = {1, 2, 4, 8, 16, 64}, ns_short[] = {1, 4, 16, 64};
    const double L2_ROT = 150e6;
    std::vector<std::vector<double>> cub_us(3, std::vector<double>(65, 0));

    printf("\n%-12s %-16s %-10s %3s %9s %8s %7s %8s %9s\n", "shape", "matrix", "algo", "n", "us", "GB/s", "%read", "vs_cuBLAS", "rel_err");
    for (int si = 0; si < 3; si++) {
        if (quick && si) break;
        const uint32_t rows = shapes[si][0], cols = shapes[si][1];
        char shape[32];
        snprintf(shape, sizeof shape, "%ux%u", rows, cols);
        /* activations for the largest n, random fp16 in [-1, 1] */
        const int NMAX = 64;
        std::vector<__half> xh((size_t)NMAX * cols);
        uint64_t rng = 1234 + si;
        for (auto &v : xh) v = __float2half((float)(2 * synth_uniform(&rng) - 1));
        __half *xd;
        float *yd;
        __half *y16d;
        CHECK(cudaMalloc(&xd, xh.size() * 2));
        CHECK(cudaMemcpy(xd, xh.data(), xh.size() * 2, cudaMemcpyHostToDevice));
        CHECK(cudaMalloc(&yd, (size_t)NMAX * rows * 4));
        CHECK(cudaMalloc(&y16d, (size_t)NMAX * rows * 2));
        std::vector<float> yh((size_t)NMAX * rows);
        bool cublas_done = false;
        for (const cfg &cf : cfgs) {
            if (cf.full == 2 && si) continue; /* β sweep at 4096 x 4096 only */
            if (fast && cf.full == 2) continue;
            if (quick && cf.full == 2 && cf.gs != 8) continue;
            synth_params sp = {cf.kind, rows, cols, cf.wbits, cf.gs, 3, cf.qq_gs, cf.out, cf.perm, (uint64_t)(42 + si)};
            synth_matrix sm;
            OKE(synth_build(&sp, &sm, &er), er);
            std::vector<float> Wref((size_t)rows * cols);
            spqr_qview_dequant_rows(&sm.view, 0, rows, 1, Wref.data());
            spqr_cuda_qmatrix *m0;
            OKE(spqr_cuda_upload(&sm.view, &m0, &er), er);
            /* cuBLAS fp16 reference (once per shape, on the first matrix's weights) */
            if (!cublas_done) {
                cublas_done = true;
                std::vector<__half> w16((size_t)rows * cols);
                for (size_t i = 0; i < w16.size(); i++) w16[i] = __float2half(Wref[i]);
                const double wb = 2.0 * rows * cols;
                const int NC = std::max(2, (int)ceil(L2_ROT / wb));
                std::vector<__half *> wd(NC);
                for (int i = 0; i < NC; i++) { CHECK(cudaMalloc(&wd[i], (size_t)wb)); CHECK(cudaMemcpy(wd[i], w16.data(), (size_t)wb, cudaMemcpyHostToDevice)); }
                for (int n : ns_full) {
                    double us = time_op(NC, st, [&](int i) { OKE(spqr_cuda_gemm_f16(ctx, wd[i], rows, cols, xd, n, y16d, &er), er); });
                    cub_us[si][n] = us;
                    const double bytes = wb + 2.0 * n * cols + 2.0 * n * rows;
                    std::vector<__half> yo((size_t)n * rows);
                    CHECK(cudaMemcpy(yo.data(), y16d, yo.size() * 2, cudaMemcpyDeviceToHost));
                    std::vector<float> yf(yo.size());
                    for (size_t i = 0; i < yo.size(); i++) yf[i] = __half2float(yo[i]);
                    double e = n <= 4 ? rel_err(Wref.data(), rows, cols, xh.data(), n, yf.data()) : NAN;
                    printf("%-12s %-16s %-10s %3d %9.2f %8.0f %6.1f%% %8.2fx %9.2e\n", shape, "dense-fp16", "cublas16", n, us, bytes / us / 1e3,
                           100 * bytes / us / 1e3 / read_gbs, 1.0, e);
                    if (csv) fprintf(csv, "%u,%u,dense-fp16,cublas16,%d,%.3f,%.1f,%.4f,1,%.3e,%.0f\n", rows, cols, n, us, bytes / us / 1e3, bytes / us / 1e3 / read_gbs, e, bytes);
                }
                for (auto p : wd) CHECK(cudaFree(p));
            }
            /* the CPU's 8-bit-activation product of the first 4 activations (v9's reference) */
            std::vector<float> yact8;
            if (spqr_cuda_supports(m0, SPQR_CUDA_ACT8)) {
                spqr_qtiles *qt = spqr_qtiles_build(&sm.view);
                if (!qt) { fprintf(stderr, "qtiles_build failed\n"); exit(1); }
                std::vector<float> xs(cols), dx(cols / 16 + 1), gq(cols / 16 + 1);
                std::vector<int8_t> xq(cols);
                yact8.resize((size_t)4 * rows);
                for (int b = 0; b < 4; b++) {
                    for (uint32_t j = 0; j < cols; j++) xs[j] = __half2float(xh[(size_t)b * cols + (sm.view.perm ? sm.view.perm[j] : (int32_t)j)]);
                    spqr_act8_quantize(xs.data(), cols, 16, xq.data(), dx.data(), gq.data());
                    spqr_qtiles_gemv_act8_ref(qt, 0, rows, xq.data(), dx.data(), gq.data(), xs.data(), yact8.data() + (size_t)b * rows);
                }
                spqr_qtiles_free(qt);
            }
            struct alg { const char *name; int id; };
            const alg algs[] = {{"v1-naive", 0}, {"v2-generic", SPQR_CUDA_GENERIC}, {"v3-tiled", SPQR_CUDA_TILED}, {"v3-tiled-r2", 102},
                                {"v3-tiled-r4", 104}, {"v4-deq+gemm", SPQR_CUDA_DEQUANT}, {"v5-fused", SPQR_CUDA_FUSED}, {"v5-whole", 301}, {"v5-nopdl", 302},
                                {"v6-w4", 204}, {"v6-w8", 208}, {"v9-act8", SPQR_CUDA_ACT8}, {"v5-gather", 303}, {"v9-gather", 304}, {"v9-noprep", 305},
                                {"v9-w4", 314}, {"v9-w8", 318}, {"v9-w16", 326}, {"v9-w32", 342},
                                {"floor-empty", 401}, {"floor-v5grid", 402}, {"floor-read", 403}};
            for (const alg &al : algs) {
                if (v11 && al.id != SPQR_CUDA_DEQUANT) continue; /* --v11: v4 (AUTO's choice above 16) for comparison */
                const bool isv6 = al.id > 200 && al.id < 300, whole = al.id == 301, nopdl = al.id == 302, isfloor = al.id > 400;
                const bool gather = al.id == 303 || al.id == 304, wsweep = al.id > 310 && al.id < 350, np = al.id == 305;
                const bool a8 = al.id == SPQR_CUDA_ACT8 || al.id == 304 || wsweep || np;
                if (np != (noprep && al.id != SPQR_CUDA_ACT8 && al.id != 403) || (noprep && cf.full != 1)) continue; /* --noprep: v9, v9-noprep, floor-read */
                if ((isfloor || a8 || gather) && (!v9 || !m0->a8codes)) continue;
                if (v56 && !isv6 && al.id != SPQR_CUDA_FUSED) continue;
                if (v7 && !v11 && al.id != SPQR_CUDA_FUSED && !whole && !nopdl && !isfloor && !a8 && !gather) continue;
                if (v9 && (whole || nopdl)) continue;
                if ((v10 || trace || noprep) && (gather || wsweep)) continue;
                if (isv6 && !spqr_cuda_v6_supported(m0)) continue;
                const int id = a8 ? SPQR_CUDA_ACT8 : isv6 || whole || nopdl || isfloor || gather ? SPQR_CUDA_FUSED : al.id > 100 ? SPQR_CUDA_TILED : al.id;
                ctx->tiled_rpw = al.id > 100 && al.id < 200 ? al.id - 100 : 0; /* rows-per-warp variants of v3 */
                ctx->fused_mode = whole ? 1 : 0; /* v5 on whole column tiles (16 warps) instead of half tiles */
                ctx->pdl = !nopdl;               /* v5-nopdl: without programmatic dependent launch */
                ctx->xprep = gather ? 0 : -1;    /* v5-gather, v9-gather: each block gathers x (no k_prep_x) */
                ctx->fused_nw = wsweep ? al.id - 310 : 0; /* v9-w<k>: k warps per block (n = 1, half tiles) */
                if ((id == SPQR_CUDA_TILED || id == SPQR_CUDA_FUSED) && !spqr_cuda_supports(m0, (spqr_cuda_algo)id)) continue;
                if (al.id > 100 && al.id < 200 && cf.full != 1) continue;
                if (fast && (al.id == 0 || al.id == SPQR_CUDA_GENERIC || (al.id > 100 && al.id < 200))) continue; /* --fast: v3 (default rows per warp), v4, v5 */
                if (cf.full != 1 && (al.id == 0 || al.id == SPQR_CUDA_GENERIC)) continue;
                const double wb = (double)spqr_cuda_weight_bytes(m0, id ? (spqr_cuda_algo)id : SPQR_CUDA_GENERIC);
                const int NC = std::max(2, (int)ceil(L2_ROT / wb));
                std::vector<spqr_cuda_qmatrix *> ms(NC);
                ms[0] = m0;
                for (int i = 1; i < NC; i++) ms[i] = clone(m0, &sm.view);
                std::vector<spqr_cuda_v6 *> v6s(isv6 ? NC : 0);
                for (size_t i = 0; i < v6s.size(); i++) OKE(spqr_cuda_v6_new(ms[i], al.id - 200, &v6s[i], &er), er);
                float2 *xp1;
                CHECK(cudaMalloc(&xp1, (size_t)cols * 8 * sizeof(float2)));
                for (int n : (cf.full == 1 ? std::vector<int>(ns_full, ns_full + 6) : cf.full == 2 ? std::vector<int>{1} : std::vector<int>(ns_short, ns_short + 4))) {
                    if (al.id == 0 && n > 1) continue;
                    if (id == SPQR_CUDA_GENERIC && n > 8) continue;
                    if (al.id > 100 && al.id < 200 && n > 8) continue;
                    if (v56 && n > 4) continue;
                    if (v7 && !v11 && n > 8) continue;
                    if (v11 && n < 8) continue;
                    if (id == SPQR_CUDA_DEQUANT && n < 4) continue;
                    if ((id == SPQR_CUDA_FUSED || id == SPQR_CUDA_ACT8) && n > 8) continue;
                    if ((isfloor || wsweep) && n > 1) continue;
                    if ((v10 || trace) && (id == SPQR_CUDA_FUSED || id == SPQR_CUDA_ACT8) && n > 2) continue;
                    if (noprep && n > 1) continue;
                    /* v5's grid for the floors: its row tiles, its warps per block at n = 1 */
                    int fw = 32;
                    while (fw > 4 && ((uint64_t)m0->nrt * fw > (uint64_t)prop.multiProcessorCount * 32 || fw > 2 * (int)m0->nct)) fw /= 2;
                    auto op = [&](int i) {
                        if (isfloor) {
                            if (al.id == 403) launch_floor(ms[i], prop.multiProcessorCount * 8, 512, 1, (unsigned *)yd, st);
                            else launch_floor(ms[i], (int)ms[i]->nrt, fw * 32, al.id == 402, (unsigned *)yd, st);
                            return;
                        }
                        if (al.id == 0) run_v1(ms[i], xd, n, yd, xp1, st);
                        else if (isv6) OKE(spqr_cuda_v6_matmul(ctx, v6s[i], xd, 0, n, yd, &er), er);
                        else {
                            if (np) spqr_cuda_ctx_reuse_x(ctx); /* the same x and permutation as the previous product */
                            OKE(spqr_cuda_matmul(ctx, ms[i], (spqr_cuda_algo)id, xd, n, yd, &er), er);
                        }
                    };
                    if (np) op(NC - 1); /* v9-noprep: this product prepares x, the checked and timed ones reuse it */
                    CHECK(cudaMemset(yd, 0xff, (size_t)n * rows * 4));
                    op(NC - 1);
                    CHECK(cudaStreamSynchronize(st));
                    CHECK(cudaMemcpy(yh.data(), yd, (size_t)n * rows * 4, cudaMemcpyDeviceToHost));
                    const int nchk = n < 4 ? n : 4; /* check the first 4 activations (CPU time) */
                    double e = isfloor ? 0 : rel_err(Wref.data(), rows, cols, xh.data(), nchk, yh.data());
                    if (id == SPQR_CUDA_ACT8) { /* against the CPU's act8 product; the error against W·x16 goes to the log */
                        double num = 0, den = 0;
                        for (size_t i = 0; i < (size_t)nchk * rows; i++) { double d = (double)yh[i] - yact8[i]; num += d * d; den += (double)yact8[i] * yact8[i]; }
                        printf("%-12s %-16s %-10s %3d   (vs exact W.x16: %.2e)\n", shape, cf.name, al.name, n, e);
                        e = sqrt(num / (den > 0 ? den : 1));
                    }
                    if (!isfloor)
                        for (size_t i = 0; i < (size_t)n * rows; i++) if (!isfinite(yh[i])) { e = INFINITY; break; }
                    double us = time_op(NC, st, op);
                    /* v6: + the partial sums read back (nchunk x n x rows fp32, L2) */
                    const double bytes = wb + 2.0 * n * cols + 4.0 * n * rows + (isv6 && v6s[0]->nchunk > 1 ? 4.0 * n * rows * v6s[0]->nchunk : 0);
                    const double sp_ = cub_us[si][n] / us;
                    printf("%-12s %-16s %-10s %3d %9.2f %8.0f %6.1f%% %8.2fx %9.2e%s\n", shape, cf.name, al.name, n, us, bytes / us / 1e3,
                           100 * bytes / us / 1e3 / read_gbs, sp_, e, e < 2e-3 ? "" : "  <-- CHECK FAILED");
                    if (csv) fprintf(csv, "%u,%u,%s,%s,%d,%.3f,%.1f,%.4f,%.3f,%.3e,%.0f\n", rows, cols, cf.name, al.name, n, us, bytes / us / 1e3, bytes / us / 1e3 / read_gbs, sp_, e, bytes);
                    fflush(stdout);
                    if (trace && n == 1 && cf.full == 1 && (id == SPQR_CUDA_FUSED || id == SPQR_CUDA_ACT8) && !isfloor && !isv6)
                        trace_fused(shape, al.name, ctx, ms, (spqr_cuda_algo)id, xd, yd, st);
                }
                ctx->fused_mode = 0;
                ctx->pdl = 1;
                ctx->xprep = -1;
                ctx->fused_nw = 0;
                CHECK(cudaFree(xp1));
                for (auto p : v6s) spqr_cuda_v6_free(p);
                for (int i = 1; i < NC; i++) {
                    spqr_cuda_qmatrix *c = ms[i];
                    c->perm = NULL; c->orp = NULL; c->ocol = NULL; /* inside blob */
                    spqr_cuda_qmatrix_free(c);
                }
            }
            if (v10 && spqr_stream_supported(&sm.view)) {
                const std::vector<int> nv = cf.full == 1 ? std::vector<int>(ns_full, ns_full + 6)
                                          : cf.full == 2 ? std::vector<int>{1} : std::vector<int>(ns_short, ns_short + 4);
                spqr_stream_layout L;
                OKE(spqr_stream_build(&sm.view, &L, &er), er);
                run_stream_kernel(csv, shape, cf, &L, "v10-stream", nv, 0, 1, 0, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs);
                if (cf.full == 1) {
                    const std::vector<int> n1{1};
                    run_stream_kernel(csv, shape, cf, &L, "v10-nopdl", n1, 0, 0, 0, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs);
                    run_stream_kernel(csv, shape, cf, &L, "v10-w8", std::vector<int>{1, 4}, 0, 1, 8, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs);
                    run_stream_kernel(csv, shape, cf, &L, "v10-w16", n1, 0, 1, 16, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs);
                    run_stream_kernel(csv, shape, cf, &L, "v10-w16g264", n1, 2 * prop.multiProcessorCount, 1, 16, ctx, st, xd, xh, yd, Wref.data(), cub_us[si],
                                      read_gbs);
                }
                spqr_stream_free(&L);
            }
            if (spqr_mma_supported(&sm.view) && !v56 && !trace && !noprep) {
                std::vector<int> nv = cf.full == 1 ? std::vector<int>(ns_full, ns_full + 6)
                                    : cf.full == 2 ? std::vector<int>{1} : std::vector<int>(ns_short, ns_short + 4);
                if (v10 && cf.kind == SPQR_TK_SPQR) { /* v7 where v10 does not run (n > 8) and at 4, 8 for comparison */
                    std::vector<int> k;
                    for (int n : nv) if (n >= 4) k.push_back(n);
                    nv = k;
                }
                run_mma_kernel(csv, shape, cf, &sm.view, 0, "v7-mma", nv, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs, prop.multiProcessorCount);
                if (v11) { /* v11 at n >= 2 */
                    std::vector<int> k;
                    for (int n : nv) if (n >= 2) k.push_back(n);
                    ctx->mma_wide = 1;
                    run_mma_kernel(csv, shape, cf, &sm.view, 0, "v11-wide", k, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs, prop.multiProcessorCount);
                    ctx->mma_wide = 0;
                    k.clear();
                    for (int n : nv) if (n >= 8) k.push_back(n);
                    run_mma_kernel(csv, shape, cf, &sm.view, 0, "v12-deq", k, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs, prop.multiProcessorCount);
                }
                if (v9 && !v10 && cf.full == 1) { /* v7 with x gathered in the kernel where it fits (n <= 8; before run 18 the default) */
                    ctx->mma_pregather = 0;
                    run_mma_kernel(csv, shape, cf, &sm.view, 0, "v7-ingather", std::vector<int>{1, 2, 4, 8}, ctx, st, xd, xh, yd, Wref.data(), cub_us[si],
                                   read_gbs, prop.multiProcessorCount);
                    ctx->mma_pregather = -1;
                }
                if (spqr_gsum_supported(&sm.view) && !v9 && !v11) {
                    const std::vector<int> n8 = cf.full == 2 ? std::vector<int>{1} : std::vector<int>{1, 2, 4, 8};
                    run_mma_kernel(csv, shape, cf, &sm.view, 0, "v8-gsum", n8, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs, prop.multiProcessorCount);
                    if (cf.full == 1)
                        for (uint32_t S : {1u, 2u, 4u, 8u, 16u}) {
                            char an[16];
                            snprintf(an, sizeof an, "v8-S%u", S);
                            run_mma_kernel(csv, shape, cf, &sm.view, S, an, std::vector<int>{1}, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs,
                                   prop.multiProcessorCount);
                        }
                }
                if (cf.full == 1 && !v8 && !v11)
                    for (uint32_t S : {1u, 2u, 4u, 16u}) {
                        char an[16];
                        snprintf(an, sizeof an, "v7-S%u", S);
                        run_mma_kernel(csv, shape, cf, &sm.view, S, an, std::vector<int>{1}, ctx, st, xd, xh, yd, Wref.data(), cub_us[si], read_gbs,
                               prop.multiProcessorCount);
                    }
            }
            spqr_cuda_qmatrix_free(m0);
            synth_free(&sm);
        }
        CHECK(cudaFree(xd)); CHECK(cudaFree(yd)); CHECK(cudaFree(y16d));
    }
    if (csv) fclose(csv);
    spqr_cuda_ctx_free(ctx);
    CHECK(cudaStreamDestroy(st));
    printf("lab done\n");
    return 0;
}

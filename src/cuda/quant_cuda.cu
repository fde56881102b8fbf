/*
 * quant_cuda.cu — GPU quantization: see quant_cuda.h. Compiled with -fmad=false (cuda.mk) so that
 * every float expression rounds as gptq.c's (built without FMA contraction) does.
 *
 * Device data, stored (act-order) column order:
 *   Wp    float [rows][cols]   working copy (updated by the sweep)
 *   U     float [cols][cols]   upper Cholesky factor of the damped H⁻¹ (zero below the diagonal)
 *   what  float [rows][cols]   the values the decoder will produce
 *   codes u8    [rows][cols], isout u8 [rows][cols]
 *   SpQR: st u8 [rows][2·groups] (scale code, zero code), qq [row_blocks][groups]
 *   GPTQ: sc16 u16 [rows][groups], zr u8 [rows][groups]
 *   gs_s, gs_z float [rows]: the current group's dequantized statistics
 *   E     float [rows][bs]: the current block's scaled errors
 * The sweep over a column block [b0, b1): for each segment [j, j') between group starts, a fit
 * kernel (warp per row: leave-one-out + min–max, or GPTQ's fit) and for SpQR a bilevel kernel (thread
 * per row block and statistic), then the column kernel (warp per row; lane L holds the block columns
 * b0 + L + 32 i in registers; columns of the segment in sequence); after the block,
 * W[:, b1:] -= E · U[b0:b1, b1:] in kernels/ordered.h's fixed order (k_ordered), as is the Hessian:
 * both are then the CPU's bits, not cuBLAS's.
 */
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/quant_cuda.h"

#define QEPS 1e-9f
#define LOO_MAX 256 /* group sizes up to this clean their outliers in shared memory; larger: global scratch */
#define FIT_WARPS 8
#define COL_WARPS 8

/* ---- context ----------------------------------------------------------------------------------- */

struct dbuf {
    void *p;
    size_t n;
};

enum {
    B_WIN, B_HIN, B_WP, B_U, B_HD, B_A, B_WHAT, B_CODES, B_ISOUT, B_E, B_DCOL, B_COLACC, B_PERM, B_GSS, B_GSZ, B_ST, B_QQ, B_SC16,
    B_ZR, B_PCODES, B_PST, B_PZR, B_CNT, B_RP, B_OCOL, B_OVAL, B_DEQ, B_DH, B_FLAG, B_INFO, B_WORK, B_PART, B_SCR, B_SCRC, B_X,
    B_COUNT
};

#define STAGE_BYTES (32u << 20)

struct spqr_cuda_qctx {
    void *pin[2];      /* pinned staging buffers for large downloads (lazy) */
    cudaEvent_t ev[2];
    cudaStream_t stream;
    cublasHandle_t blas;
    cusolverDnHandle_t sol;
    int hess_tf32;
    int device_chol; /* 1: cuSOLVER (faster on large matrices; U may differ from the CPU's in float's last bit) */
    dbuf b[B_COUNT];
    spqr_cuda_qtimes t;
};

static spqr_status cuerr(spqr_error *err, cudaError_t e, const char *what, int line) {
    return spqr_set_err(err, e == cudaErrorMemoryAllocation ? SPQR_E_NOMEM : SPQR_E_UNSUPPORTED, "cuda quantize: %s (line %d): %s", what,
                        line, cudaGetErrorString(e));
}
#define CK(x)                                                                                                                              \
    do {                                                                                                                                   \
        cudaError_t e_ = (x);                                                                                                              \
        if (e_ != cudaSuccess) { st = cuerr(err, e_, #x, __LINE__); goto fail; }                                                          \
    } while (0)
#define CKB(x)                                                                                                                             \
    do {                                                                                                                                   \
        cublasStatus_t e_ = (x);                                                                                                           \
        if (e_ != CUBLAS_STATUS_SUCCESS) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda quantize: %s: cuBLAS status %d", #x, (int)e_); goto fail; } \
    } while (0)
#define CKS(x)                                                                                                                             \
    do {                                                                                                                                   \
        cusolverStatus_t e_ = (x);                                                                                                         \
        if (e_ != CUSOLVER_STATUS_SUCCESS) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda quantize: %s: cuSOLVER status %d", #x, (int)e_); goto fail; } \
    } while (0)
#define CKL() CK(cudaGetLastError())

/* Grows buffer i to at least n bytes (contents lost on growth). */
static cudaError_t ensure(spqr_cuda_qctx *c, int i, size_t n) {
    if (c->b[i].n >= n && c->b[i].p) return cudaSuccess;
    if (c->b[i].p) cudaFree(c->b[i].p);
    c->b[i].p = NULL;
    c->b[i].n = 0;
    size_t want = n < 256 ? 256 : n;
    cudaError_t e = cudaMalloc(&c->b[i].p, want);
    if (e == cudaSuccess) c->b[i].n = want;
    return e;
}
template <class T> static T *B(spqr_cuda_qctx *c, int i) { return (T *)c->b[i].p; }

extern "C" spqr_status spqr_cuda_qctx_new(void *stream, spqr_cuda_qctx **out, spqr_error *err) {
    *out = NULL;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "no CUDA device");
    }
    spqr_cuda_qctx *c = (spqr_cuda_qctx *)calloc(1, sizeof *c);
    if (!c) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    c->stream = (cudaStream_t)stream;
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS) { free(c); return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cublasCreate failed"); }
    if (cusolverDnCreate(&c->sol) != CUSOLVER_STATUS_SUCCESS) {
        cublasDestroy(c->blas);
        free(c);
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cusolverDnCreate failed");
    }
    cublasSetStream(c->blas, c->stream);
    cusolverDnSetStream(c->sol, c->stream);
    cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH); /* plain fp32 sgemm: no TF32 */
    *out = c;
    return SPQR_OK;
}

extern "C" void spqr_cuda_qctx_free(spqr_cuda_qctx *c) {
    if (!c) return;
    for (int i = 0; i < B_COUNT; i++)
        if (c->b[i].p) cudaFree(c->b[i].p);
    for (int i = 0; i < 2; i++) {
        if (c->pin[i]) cudaFreeHost(c->pin[i]);
        if (c->ev[i]) cudaEventDestroy(c->ev[i]);
    }
    cublasDestroy(c->blas);
    cusolverDnDestroy(c->sol);
    free(c);
}
extern "C" void spqr_cuda_qctx_times(const spqr_cuda_qctx *c, spqr_cuda_qtimes *t) { *t = c->t; }
extern "C" void spqr_cuda_qctx_reset_times(spqr_cuda_qctx *c) { memset(&c->t, 0, sizeof c->t); }
extern "C" void spqr_cuda_qctx_set_hessian_tf32(spqr_cuda_qctx *c, int on) { c->hess_tf32 = on; }
extern "C" void spqr_cuda_qctx_set_device_cholesky(spqr_cuda_qctx *c, int on) { c->device_chol = on; }

extern "C" void *spqr_cuda_malloc(size_t bytes, spqr_error *err) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) { cuerr(err, e, "cudaMalloc", __LINE__); return NULL; }
    return p;
}
extern "C" void spqr_cuda_free(void *p) { if (p) cudaFree(p); }
extern "C" spqr_status spqr_cuda_memset0(void *p, size_t n, spqr_error *err) {
    cudaError_t e = cudaMemset(p, 0, n);
    return e == cudaSuccess ? SPQR_OK : cuerr(err, e, "cudaMemset", __LINE__);
}
extern "C" spqr_status spqr_cuda_h2d(void *d, const void *h, size_t n, spqr_error *err) {
    cudaError_t e = cudaMemcpy(d, h, n, cudaMemcpyHostToDevice);
    return e == cudaSuccess ? SPQR_OK : cuerr(err, e, "cudaMemcpy H2D", __LINE__);
}
extern "C" spqr_status spqr_cuda_d2h(void *h, const void *d, size_t n, spqr_error *err) {
    cudaError_t e = cudaMemcpy(h, d, n, cudaMemcpyDeviceToHost);
    return e == cudaSuccess ? SPQR_OK : cuerr(err, e, "cudaMemcpy D2H", __LINE__);
}
extern "C" spqr_status spqr_cuda_qctx_sync(spqr_cuda_qctx *c, spqr_error *err) {
    cudaError_t e = cudaStreamSynchronize(c->stream);
    return e == cudaSuccess ? SPQR_OK : cuerr(err, e, "cudaStreamSynchronize", __LINE__);
}

/* ---- fixed-order products (kernels/ordered.h's definition, bit for bit) -------------------------- */

/* C[i][j] = C[i][j] + fl(alpha · acc) per chunk of ORD_CHUNK k's, acc = fma(A(i,k), B(k,j), acc) in k
 * order: exactly spqr_ordered_gemm's operations, so the Hessians and the block update are the CPU's
 * bits. Block = 64 × 64 outputs, 256 threads; thread (tx, ty) owns rows 4ty..4ty+3 and columns
 * 4tx..4tx+3 (one float4 of A's and one of B's tile per k step, 16 fma); k in tiles of 16 through
 * shared memory. upper: only blocks reaching j ≥ i. */
#define ORD_CHUNK 512
#define ORD_T 64
#define ORD_KT 16
__global__ void __launch_bounds__(256) k_ordered(int M, int N, int K, float alpha, const float *__restrict__ A, long long a_si, long long a_sk,
                                                 const float *__restrict__ Bm, long long ldb, float *C, long long ldc, int upper) {
    const int i0 = blockIdx.x * ORD_T, j0 = blockIdx.y * ORD_T; /* rows on x: up to 2^31 - 1 tiles (rows ≤ 2^24), columns ≤ 65536 on y */
    if (upper && j0 + ORD_T <= i0) return;
    __shared__ __align__(16) float As[ORD_KT][ORD_T];
    __shared__ __align__(16) float Bs[ORD_KT][ORD_T];
    const int t = threadIdx.x, tx = t % 16, ty = t / 16;
    float acc[4][4], cv[4][4];
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int i = i0 + 4 * ty + r, j = j0 + 4 * tx + c;
            cv[r][c] = i < M && j < N ? C[i * ldc + j] : 0.0f;
            acc[r][c] = 0.0f;
        }
    for (int k0 = 0; k0 < K; k0 += ORD_KT) {
        __syncthreads();
#pragma unroll
        for (int q = 0; q < 4; q++) { /* A tile: consecutive threads on A's unit stride */
            int ii, kk;
            if (a_si == 1) { ii = t % 64; kk = t / 64 + 4 * q; }
            else { ii = t / 16 + 16 * q; kk = t % 16; }
            const int i = i0 + ii, k = k0 + kk;
            As[kk][ii] = i < M && k < K ? A[i * a_si + k * a_sk] : 0.0f;
            const int jj = t % 64, kb = t / 64 + 4 * q, j = j0 + jj, kB = k0 + kb;
            Bs[kb][jj] = j < N && kB < K ? Bm[kB * ldb + j] : 0.0f;
        }
        __syncthreads();
        const int kn = K - k0 < ORD_KT ? K - k0 : ORD_KT; /* no padded terms: the CPU adds none */
#pragma unroll 4
        for (int kk = 0; kk < kn; kk++) {
            const float4 a = *reinterpret_cast<const float4 *>(&As[kk][4 * ty]), b = *reinterpret_cast<const float4 *>(&Bs[kk][4 * tx]);
            const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int c = 0; c < 4; c++) acc[r][c] = __fmaf_rn(av[r], bv[c], acc[r][c]);
        }
        if ((k0 + ORD_KT) % ORD_CHUNK == 0 || k0 + ORD_KT >= K) /* a chunk ends: C += alpha · acc */
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    cv[r][c] = __fadd_rn(cv[r][c], __fmul_rn(alpha, acc[r][c]));
                    acc[r][c] = 0.0f;
                }
    }
#pragma unroll
    for (int r = 0; r < 4; r++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int i = i0 + 4 * ty + r, j = j0 + 4 * tx + c;
            if (i < M && j < N) C[i * ldc + j] = cv[r][c];
        }
}

static spqr_status ordered(spqr_cuda_qctx *c, int M, int N, int K, float alpha, const float *A, long long a_si, long long a_sk, const float *Bm, long long ldb,
                           float *C, long long ldc, int upper, spqr_error *err) {
    spqr_status st = SPQR_OK;
    if (M < 1 || N < 1 || K < 1) return SPQR_OK;
    dim3 grid((unsigned)((M + ORD_T - 1) / ORD_T), (unsigned)((N + ORD_T - 1) / ORD_T));
    k_ordered<<<grid, 256, 0, c->stream>>>(M, N, K, alpha, A, a_si, a_sk, Bm, ldb, C, ldc, upper);
    CKL();
    return SPQR_OK;
fail:
    return st;
}

/* ---- Hessian ----------------------------------------------------------------------------------- */

extern "C" spqr_status spqr_cuda_hessian_add(spqr_cuda_qctx *c, const float *X, int n, int cols, float alpha, float *H, spqr_error *err) {
    if (n < 1 || cols < 1) return spqr_set_err(err, SPQR_E_ARG, "hessian: n %d, cols %d", n, cols);
    if (!c->hess_tf32) /* row-major upper triangle of H += α XᵀX, in the CPU's fixed order */
        return ordered(c, cols, cols, n, alpha, X, 1, cols, X, cols, H, cols, 1, err);
    /* TF32 (opt-in, not the CPU's bits): row-major X [n][cols] is column-major Xᵀ [cols][n]; the full
     * product through GemmEx (syrk takes no tensor-core path) */
    const float one = 1.0f;
    cublasStatus_t s = cublasSetMathMode(c->blas, CUBLAS_TF32_TENSOR_OP_MATH);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasGemmEx(c->blas, CUBLAS_OP_N, CUBLAS_OP_T, cols, cols, n, &alpha, X, CUDA_R_32F, cols, X, CUDA_R_32F, cols, &one, H,
                                    CUDA_R_32F, cols, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
    cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "hessian: cuBLAS status %d", (int)s);
    return SPQR_OK;
}

extern "C" spqr_status spqr_cuda_hessian_add_host(spqr_cuda_qctx *c, const float *X, int n, int cols, float alpha, float *H, spqr_error *err) {
    spqr_status st = SPQR_OK;
    int slice = (int)((64u << 20) / ((size_t)cols * 4));
    if (slice >= ORD_CHUNK) slice -= slice % ORD_CHUNK; /* slices end on chunk boundaries: the same bits as one call */
    if (slice < 1) slice = 1;
    if (slice > n) slice = n;
    CK(ensure(c, B_X, (size_t)slice * cols * 4));
    for (int r0 = 0; r0 < n; r0 += slice) {
        int k = r0 + slice < n ? slice : n - r0;
        CK(cudaMemcpyAsync(B<float>(c, B_X), X + (size_t)r0 * cols, (size_t)k * cols * 4, cudaMemcpyHostToDevice, c->stream));
        if ((st = spqr_cuda_hessian_add(c, B<float>(c, B_X), k, cols, alpha, H, err))) return st;
        CK(cudaStreamSynchronize(c->stream));
    }
    return SPQR_OK;
fail:
    return st;
}

__global__ void k_symmetrize(float *H, int n) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * n) return;
    int i = (int)(idx / n), k = (int)(idx % n);
    if (k < i) H[idx] = H[(size_t)k * n + i];
}

extern "C" spqr_status spqr_cuda_hessian_symmetrize(spqr_cuda_qctx *c, float *H, int cols, spqr_error *err) {
    spqr_status st = SPQR_OK;
    size_t nn = (size_t)cols * cols;
    k_symmetrize<<<(unsigned)((nn + 255) / 256), 256, 0, c->stream>>>(H, cols);
    CKL();
    return SPQR_OK;
fail:
    return st;
}

/* ---- device helpers (gptq.c's, operation by operation) ---------------------------------------- */

__device__ __forceinline__ float f16r(float x) { return __half2float(__float2half_rn(x)); }
__device__ __forceinline__ unsigned short f2h(float x) { return __half_as_ushort(__float2half_rn(x)); }
__device__ __forceinline__ float h2f(unsigned short h) { return __half2float(__ushort_as_half(h)); }
__device__ __forceinline__ unsigned qcode(float w, float s, float z, unsigned maxq) {
    float q = rintf(w / fmaxf(s, QEPS) + z);
    return q < 0 ? 0 : q > (float)maxq ? maxq : (unsigned)q;
}
__device__ __forceinline__ float deqf(float s, float z, unsigned c) { return s * ((float)c - z); }

/* SpQR first-level min–max fit from the range [lo, hi] (fit_minmax after its loop). */
__device__ __forceinline__ void fit_lohi(float lo, float hi, unsigned maxq, float *s, float *z) {
    const float mag = fmaxf(fabsf(lo), fabsf(hi)), minrange = mag * (1.0f / 256);
    if (mag == 0) { lo = -1; hi = 1; }
    else if (hi - lo < minrange) {
        float c = 0.5f * (lo + hi);
        lo = c - 0.5f * minrange;
        hi = c + 0.5f * minrange;
    }
    *s = (hi - lo) / (float)maxq;
    *z = -lo / *s;
}

__device__ __forceinline__ float wmin(float v) {
    for (int o = 16; o; o >>= 1) v = fminf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float wmax(float v) {
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ int wmini(int v) {
    for (int o = 16; o; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* ---- prep kernels ------------------------------------------------------------------------------ */

__global__ void k_nonfinite(const float *x, size_t n, int *first) { /* first: min index of a non-finite value */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        if (!isfinite(x[i])) atomicMin(first, (int)(i > 0x7ffffffe ? 0x7ffffffe : i));
}

/* Wp[r][j] = W[r][perm[j]]; dead stored columns zeroed. */
__global__ void k_gather_w(const float *W, float *Wp, int rows, int cols, const int *perm, const unsigned char *dead) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * cols) return;
    int j = (int)(idx % cols);
    size_t r = idx / cols;
    float v = W[r * cols + (perm ? perm[j] : j)];
    Wp[idx] = dead && dead[j] ? 0.0f : v;
}
/* Hd[i][k] = H[perm[i]][perm[k]] in double. */
__global__ void k_gather_h(const float *H, double *Hd, int n, const int *perm) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * n) return;
    int i = (int)(idx / n), k = (int)(idx % n);
    Hd[idx] = (double)H[(size_t)(perm ? perm[i] : i) * n + (perm ? perm[k] : k)];
}
__global__ void k_damp(double *A, int n, double add, const unsigned char *dead, double dead_val) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    A[(size_t)i * n + i] += add;
    if (dead[i]) A[(size_t)i * n + i] = dead_val;
}
/* U = row-major upper triangle of A (column-major lower after potrf 'L'), float; flag on non-finite
 * or a non-positive diagonal. */
__global__ void k_extract_u(const double *A, float *U, float *dcol, int n, int *bad) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)n * n) return;
    int i = (int)(idx / n), k = (int)(idx % n);
    double v = k >= i ? A[idx] : 0.0;
    if (!isfinite(v) || (k == i && !(v > 0))) *bad = 1;
    U[idx] = (float)v;
    if (k == i) dcol[i] = (float)v;
}
/* d_j = U_jj (U uploaded from the host's factorization). */
__global__ void k_diag_u(const float *U, float *dcol, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dcol[i] = U[(size_t)i * n + i];
}
/* Per column: Var_rows(W[:, j]) / d_j², the CPU's order of summation (double). */
__global__ void k_colvar(const float *W, const float *dcol, int rows, int cols, double *out) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    double m = 0, v = 0;
    for (int r = 0; r < rows; r++) m += W[(size_t)r * cols + j];
    m /= rows;
    for (int r = 0; r < rows; r++) v += (W[(size_t)r * cols + j] - m) * (W[(size_t)r * cols + j] - m);
    out[j] = v / (rows - 1) / ((double)dcol[j] * dcol[j]);
}
__global__ void k_fill_f(float *x, int n, float v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] = v;
}

/* ---- the sweep --------------------------------------------------------------------------------- */

struct SweepArgs {
    float *W;
    const float *U;
    const float *dcol;
    int rows, cols, gs, bs, groups;
    unsigned maxq, maxq2;
    int spqr, loo, feedback;
    float tau;
    float *gs_s, *gs_z;
    unsigned char *st;       /* SpQR [rows][2 groups] */
    unsigned short *sc16;    /* GPTQ [rows][groups] */
    unsigned char *zr;       /* GPTQ [rows][groups] */
    unsigned char *codes, *isout;
    float *what, *E;
    float *scr;              /* LOO scratch for groups > LOO_MAX: [rows][gs] */
    unsigned char *scrc;     /* [rows][gs] */
    int qqg, row_blocks;
    spqr_qq_stats *qq;
};

/* Group fit, columns j0..j0+n, group g: warp per row. */
__global__ void __launch_bounds__(FIT_WARPS * 32) k_fit(SweepArgs a, int g, int j0, int n) {
    __shared__ float shx[FIT_WARPS][LOO_MAX];
    __shared__ unsigned char shc[FIT_WARPS][LOO_MAX];
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    const int r = blockIdx.x * FIT_WARPS + wi;
    if (r >= a.rows) return;
    const float *wr = a.W + (size_t)r * a.cols + j0;
    if (!a.spqr) { /* fit_gptq */
        float lo = 0, hi = 0;
        for (int i = lane; i < n; i += 32) { lo = fminf(lo, wr[i]); hi = fmaxf(hi, wr[i]); }
        lo = wmin(lo);
        hi = wmax(hi);
        if (lane == 0) {
            if (lo == 0 && hi == 0) { lo = -1; hi = 1; }
            float sc = (hi - lo) / (float)a.maxq;
            float zr = rintf(-lo / sc);
            unsigned z = zr < 0 ? 0 : zr > (float)a.maxq ? a.maxq : (unsigned)zr;
            float s16 = f16r(sc);
            float s = s16 > 0 ? s16 : 5.96046448e-8f;
            a.gs_s[r] = s;
            a.gs_z[r] = (float)z;
            a.sc16[(size_t)r * a.groups + g] = f2h(s);
            a.zr[(size_t)r * a.groups + g] = (unsigned char)z;
        }
        return;
    }
    float lo = INFINITY, hi = -INFINITY;
    if (a.loo && n >= 3) {
        float *x = n <= LOO_MAX ? shx[wi] : a.scr + (size_t)r * a.gs;
        unsigned char *cand = n <= LOO_MAX ? shc[wi] : a.scrc + (size_t)r * a.gs;
        const float *d = a.dcol + j0;
        for (int i = lane; i < n; i += 32) x[i] = wr[i];
        __syncwarp();
        /* min and max with their first indices, then the second ones (the range without that index) */
        float lo1 = INFINITY, hi1 = -INFINITY;
        for (int i = lane; i < n; i += 32) { lo1 = fminf(lo1, x[i]); hi1 = fmaxf(hi1, x[i]); }
        lo1 = wmin(lo1);
        hi1 = wmax(hi1);
        int ilo = 0x7fffffff, ihi = 0x7fffffff;
        for (int i = lane; i < n; i += 32) {
            if (x[i] == lo1 && i < ilo) ilo = i;
            if (x[i] == hi1 && i < ihi) ihi = i;
        }
        ilo = wmini(ilo);
        ihi = wmini(ihi);
        float lo2 = INFINITY, hi2 = -INFINITY;
        for (int i = lane; i < n; i += 32) {
            if (i != ilo) lo2 = fminf(lo2, x[i]);
            if (i != ihi) hi2 = fmaxf(hi2, x[i]);
        }
        lo2 = wmin(lo2);
        hi2 = wmax(hi2);
        float s, z, base = 0;
        fit_lohi(lo1, hi1, a.maxq, &s, &z);
        for (int m = 0; m < n; m++) {
            float e = (deqf(s, z, qcode(x[m], s, z, a.maxq)) - x[m]) / d[m];
            base += e * e;
        }
        int nc = 0;
        for (int k = lane; k < n; k += 32) {
            float sk, zk, e2 = 0;
            fit_lohi(k == ilo ? lo2 : lo1, k == ihi ? hi2 : hi1, a.maxq, &sk, &zk);
            for (int m = 0; m < n; m++) {
                if (m == k) continue;
                float e = (deqf(sk, zk, qcode(x[m], sk, zk, a.maxq)) - x[m]) / d[m];
                e2 += e * e;
            }
            int c = base - e2 > a.tau;
            cand[k] = (unsigned char)c;
            nc += c;
        }
        for (int o = 16; o; o >>= 1) nc += __shfl_xor_sync(0xffffffffu, nc, o);
        __syncwarp();
        if (nc) {
            if (lane == 0) {
                float sum = 0;
                for (int k = 0; k < n; k++)
                    if (!cand[k]) sum += x[k];
                float mean = sum / (float)(n - nc > 0 ? n - nc : 1);
                for (int k = 0; k < n; k++)
                    if (cand[k]) x[k] = mean;
            }
            __syncwarp();
        }
        for (int i = lane; i < n; i += 32) { lo = fminf(lo, x[i]); hi = fmaxf(hi, x[i]); }
    } else {
        for (int i = lane; i < n; i += 32) { lo = fminf(lo, wr[i]); hi = fmaxf(hi, wr[i]); }
    }
    lo = wmin(lo);
    hi = wmax(hi);
    if (lane == 0) {
        float s, z;
        fit_lohi(lo, hi, a.maxq, &s, &z);
        a.gs_s[r] = s;
        a.gs_z[r] = z;
    }
}

/* fit_qq over n values (one thread). */
__device__ void fit_qq_dev(const float *v, int n, unsigned maxq2, unsigned short *hs, unsigned short *hz) {
    float lo = INFINITY, hi = -INFINITY, amax = 0;
    for (int i = 0; i < n; i++) { lo = fminf(lo, v[i]); hi = fmaxf(hi, v[i]); amax = fmaxf(amax, fabsf(v[i])); }
    if (lo == hi) { lo = -1; hi = 1; }
    float s = (hi - lo) / (float)maxq2, z = -lo / s;
    *hs = f2h(s);
    *hz = f2h(z);
    float s16 = h2f(*hs), z16 = h2f(*hz);
    if (!(s16 > 0) || !isfinite(s16) || !isfinite(z16)) {
        float aa = amax > 0 ? fminf(amax, 60000.0f * (float)maxq2 / 2) : 1;
        *hs = f2h(fmaxf(2 * aa / (float)maxq2, 5.96046448e-8f));
        *hz = f2h((float)maxq2 / 2);
    }
}

/* Bilevel statistics of group g: thread t = (row block t/2, scale (even) or zero (odd)). */
__global__ void k_bilevel(SweepArgs a, int g) {
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= 2 * a.row_blocks) return;
    const int b = t >> 1, which = t & 1;
    const int r0 = b * a.qqg, r1 = r0 + a.qqg < a.rows ? r0 + a.qqg : a.rows;
    float *v = which ? a.gs_z : a.gs_s;
    spqr_qq_stats *q = &a.qq[(size_t)b * a.groups + g];
    unsigned short hs, hz;
    fit_qq_dev(v + r0, r1 - r0, a.maxq2, &hs, &hz);
    if (which) { q->z_scale = hs; q->z_zero = hz; }
    else { q->s_scale = hs; q->s_zero = hz; }
    const float ss = h2f(hs), sz = h2f(hz);
    for (int r = r0; r < r1; r++) {
        unsigned c = qcode(v[r], ss, sz, a.maxq2);
        a.st[(size_t)r * 2 * a.groups + 2 * g + which] = (unsigned char)c;
        v[r] = deqf(ss, sz, c);
    }
}

/* Columns j0..j1 of block [b0, b1): warp per row, lane L holds block columns b0 + L + 32 i. */
template <int NPL> __global__ void __launch_bounds__(COL_WARPS * 32) k_cols(SweepArgs a, int b0, int b1, int j0, int j1) {
    const int lane = threadIdx.x & 31;
    const int r = blockIdx.x * COL_WARPS + (threadIdx.x >> 5);
    if (r >= a.rows) return;
    float *wr = a.W + (size_t)r * a.cols;
    float w[NPL];
#pragma unroll
    for (int i = 0; i < NPL; i++) {
        int k = b0 + lane + 32 * i;
        w[i] = k < b1 ? wr[k] : 0.0f;
    }
    const float s = a.gs_s[r], z = a.gs_z[r];
    const size_t ro = (size_t)r * a.cols;
    for (int j = j0; j < j1; j++) {
        const int jj = j - b0, owner = jj & 31, slot = jj >> 5;
        float mine = 0;
#pragma unroll
        for (int i = 0; i < NPL; i++)
            if (i == slot) mine = w[i];
        const float wj = __shfl_sync(0xffffffffu, mine, owner);
        const float dj = a.dcol[j];
        unsigned c = qcode(wj, s, z, a.maxq);
        float wq = deqf(s, z, c);
        float e = (wj - wq) / dj;
        unsigned char out = 0;
        if (a.spqr && e * e > a.tau) {
            out = 1;
            c = qcode(0.0f, s, z, a.maxq);
            wq = f16r(wj);
            e = (wj - wq) / dj;
        }
        if (lane == 0) {
            a.codes[ro + j] = (unsigned char)c;
            a.what[ro + j] = wq;
            a.isout[ro + j] = out;
            if (a.feedback) a.E[(size_t)r * a.bs + jj] = e;
        }
        if (a.feedback) {
            const float *u = a.U + (size_t)j * a.cols;
#pragma unroll
            for (int i = 0; i < NPL; i++) {
                int k = b0 + lane + 32 * i;
                if (k > j && k < b1) w[i] -= e * u[k];
            }
        }
    }
    if (a.feedback)
#pragma unroll
        for (int i = 0; i < NPL; i++) {
            int k = b0 + lane + 32 * i;
            if (k < b1) wr[k] = w[i];
        }
}

/* ---- packing ----------------------------------------------------------------------------------- */

/* out[r][q] = 64-bit word q of row r's LSB-first stream of w-bit fields in[r][0..n). */
__global__ void k_pack(const unsigned char *in, int rows, int n, int ldin, unsigned w, unsigned long long *out, int words) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * words) return;
    size_t r = idx / words;
    long long q = (long long)(idx % words), bit0 = 64 * q;
    long long i0 = bit0 / w, i1 = (bit0 + 63) / w + 1;
    if (i1 > n) i1 = n;
    const unsigned long long mask = (1ull << w) - 1;
    unsigned long long acc = 0;
    for (long long i = i0; i < i1; i++) {
        unsigned long long v = in[r * ldin + i] & mask;
        long long off = i * (long long)w - bit0;
        acc |= off >= 0 ? v << off : v >> (-off);
    }
    out[idx] = acc;
}

__global__ void k_rowcount(const unsigned char *isout, int rows, int cols, unsigned *cnt) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (r >= rows) return;
    unsigned c = 0;
    for (int j = lane; j < cols; j += 32) c += isout[(size_t)r * cols + j];
    for (int o = 16; o; o >>= 1) c += __shfl_xor_sync(0xffffffffu, c, o);
    if (lane == 0) cnt[r] = c;
}
__global__ void k_csr(const unsigned char *isout, const float *what, int rows, int cols, const unsigned *rp, unsigned short *oc,
                      unsigned short *ov) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (r >= rows) return;
    unsigned k = rp[r];
    for (int j0 = 0; j0 < cols; j0 += 32) {
        int j = j0 + lane;
        int f = j < cols && isout[(size_t)r * cols + j];
        unsigned m = __ballot_sync(0xffffffffu, f);
        if (f) {
            unsigned pos = k + __popc(m & ((1u << lane) - 1));
            oc[pos] = (unsigned short)j;
            ov[pos] = f2h(what[(size_t)r * cols + j]);
        }
        k += __popc(m);
    }
}
/* deq[r][perm[j]] = what[r][j] */
__global__ void k_unperm(const float *what, float *deq, int rows, int cols, const int *perm) {
    size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (idx >= (size_t)rows * cols) return;
    size_t r = idx / cols;
    int j = (int)(idx % cols);
    deq[r * cols + perm[j]] = what[idx];
}
__global__ void k_sub(const float *a, const float *b, float *d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) d[i] = a[i] - b[i];
}
/* part[block] = Σ x·y (double) */
__global__ void k_dot(const float *x, const float *y, size_t n, double *part) {
    __shared__ double sh[256];
    double acc = 0;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) acc += (double)x[i] * y[i];
    sh[threadIdx.x] = acc;
    __syncthreads();
    for (int s = 128; s; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

/* ---- host: CRC-32 (zlib's), so that the CUDA objects need no zlib ------------------------------ */

static uint32_t crc_tab[8][256];
static void crc_init(void) {
    if (crc_tab[0][1]) return;
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
        crc_tab[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}
static uint32_t crc32_buf(const uint8_t *p, uint64_t n) {
    crc_init();
    uint32_t c = 0xffffffffu;
    while (n && ((uintptr_t)p & 7)) { c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^ crc_tab[4][lo >> 24] ^ crc_tab[3][hi & 0xff] ^
            crc_tab[2][(hi >> 8) & 0xff] ^ crc_tab[1][(hi >> 16) & 0xff] ^ crc_tab[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffffu;
}

/* ---- the driver ---------------------------------------------------------------------------------- */

static unsigned nblk(size_t n, unsigned t) { return (unsigned)((n + t - 1) / t); }

static const double *g_sort_dg;
static int cmp_diag_desc(const void *pa, const void *pb) {
    const double *dg = g_sort_dg;
    int i = *(const int32_t *)pa, k = *(const int32_t *)pb;
    if (dg[i] != dg[k]) return dg[i] > dg[k] ? -1 : 1;
    return i < k ? -1 : i > k;
}

extern "C" void spqr_cuda_qresult_free(spqr_qresult *r) {
    if (!r) return;
    spqr_aligned_free(r->blob);
    spqr_aligned_free(r->deq);
    r->blob = NULL;
    r->deq = NULL;
}


/* U and d_j = U_jj into B_U and B_DCOL from the permuted float64 H in B_HD, by the CPU quantizer's own
 * spqr_chol_inverse on the host: the CPU's U, bit for bit. *damp: the damping used. */
static spqr_status host_cholesky(spqr_cuda_qctx *c, int cols, const spqr_qparams *p, const uint8_t *dead, double *damp, spqr_error *err) {
    spqr_status st = SPQR_OK;
    const size_t cc = (size_t)cols * cols;
    double *hd = (double *)malloc(cc * sizeof *hd);
    float *hu = (float *)malloc(cc * sizeof *hu);
    if (!hd || !hu) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory for a %d x %d host Cholesky", cols, cols); goto fail; }
    CK(cudaMemcpyAsync(hd, B<double>(c, B_HD), cc * 8, cudaMemcpyDeviceToHost, c->stream));
    CK(cudaStreamSynchronize(c->stream));
    if ((st = spqr_chol_inverse(hd, cols, p, dead, hu, damp, err))) goto fail;
    CK(cudaMemcpyAsync(B<float>(c, B_U), hu, cc * 4, cudaMemcpyHostToDevice, c->stream));
    k_diag_u<<<nblk(cols, 256), 256, 0, c->stream>>>(B<float>(c, B_U), B<float>(c, B_DCOL), cols);
    CKL();
    CK(cudaStreamSynchronize(c->stream)); /* before hu is freed */
fail:
    free(hd);
    free(hu);
    return st;
}

/* The same with cuSOLVER (float64 potrf, potri, potrf on B_A; fill LOWER on the row-major buffer =
 * LAPACK row-major 'U'), the damping pd·mean on the diagonal (dead columns: the mask after the
 * permutation in B_PERM) growing ×10 up to 5 times, as spqr_chol_inverse does. */
static spqr_status device_cholesky(spqr_cuda_qctx *c, int cols, const spqr_qparams *p, double mean, double *damp, spqr_error *err) {
    spqr_status st = SPQR_OK;
    const size_t cc = (size_t)cols * cols;
    const bool spqr = p->method == SPQR_QM_SPQR;
    int lw1 = 0, lw2 = 0, info = 0, bad = 0;
    CK(ensure(c, B_A, cc * 8));
    CK(ensure(c, B_INFO, 64));
    CKS(cusolverDnDpotrf_bufferSize(c->sol, CUBLAS_FILL_MODE_LOWER, cols, B<double>(c, B_A), cols, &lw1));
    CKS(cusolverDnDpotri_bufferSize(c->sol, CUBLAS_FILL_MODE_LOWER, cols, B<double>(c, B_A), cols, &lw2));
    {
        const int lw = lw1 > lw2 ? lw1 : lw2;
        CK(ensure(c, B_WORK, (size_t)lw * 8));
        double *A = B<double>(c, B_A), *work = B<double>(c, B_WORK);
        int *dinfo = B<int>(c, B_INFO);
        double pd = p->percdamp;
        for (int attempt = 0; attempt < 6; attempt++, pd = pd > 0 ? pd * 10 : 1e-2) {
            CK(cudaMemcpyAsync(A, B<double>(c, B_HD), cc * 8, cudaMemcpyDeviceToDevice, c->stream));
            k_damp<<<nblk(cols, 256), 256, 0, c->stream>>>(A, cols, pd * mean, B<unsigned char>(c, B_PERM) + (size_t)cols * 4,
                                                           spqr ? 1.0 : 1.0 + pd * mean);
            CKL();
            CKS(cusolverDnDpotrf(c->sol, CUBLAS_FILL_MODE_LOWER, cols, A, cols, work, lw, dinfo));
            CK(cudaMemcpyAsync(&info, dinfo, 4, cudaMemcpyDeviceToHost, c->stream));
            CK(cudaStreamSynchronize(c->stream));
            if (info != 0) continue;
            CKS(cusolverDnDpotri(c->sol, CUBLAS_FILL_MODE_LOWER, cols, A, cols, work, lw, dinfo));
            CK(cudaMemcpyAsync(&info, dinfo, 4, cudaMemcpyDeviceToHost, c->stream));
            CK(cudaStreamSynchronize(c->stream));
            if (info != 0) continue;
            CKS(cusolverDnDpotrf(c->sol, CUBLAS_FILL_MODE_LOWER, cols, A, cols, work, lw, dinfo));
            CK(cudaMemcpyAsync(&info, dinfo, 4, cudaMemcpyDeviceToHost, c->stream));
            CK(cudaStreamSynchronize(c->stream));
            if (info != 0) continue;
            bad = 0;
            CK(cudaMemcpyAsync(B<int>(c, B_FLAG), &bad, 4, cudaMemcpyHostToDevice, c->stream));
            k_extract_u<<<nblk(cc, 256), 256, 0, c->stream>>>(A, B<float>(c, B_U), B<float>(c, B_DCOL), cols, B<int>(c, B_FLAG));
            CKL();
            CK(cudaMemcpyAsync(&bad, B<int>(c, B_FLAG), 4, cudaMemcpyDeviceToHost, c->stream));
            CK(cudaStreamSynchronize(c->stream));
            if (bad) continue;
            *damp = pd;
            return SPQR_OK;
        }
        return spqr_set_err(err, SPQR_E_RANGE, "Hessian is not positive definite even with damping %g", pd / 10);
    }
fail:
    return st;
}
/* Device-to-host copy of a large buffer into pageable memory: chunks through two pinned buffers, the
 * host memcpy of one chunk overlapping the transfer of the next (a plain pageable cudaMemcpy into
 * freshly allocated memory ran at ~1.4 GB/s). Synchronous. */
static cudaError_t d2h_staged(spqr_cuda_qctx *c, void *dst, const void *src, size_t n) {
    cudaError_t e;
    if (n < (1u << 20)) {
        if ((e = cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream))) return e;
        return cudaStreamSynchronize(c->stream);
    }
    for (int i = 0; i < 2; i++) {
        if (!c->pin[i] && (e = cudaMallocHost(&c->pin[i], STAGE_BYTES))) return e;
        if (!c->ev[i] && (e = cudaEventCreateWithFlags(&c->ev[i], cudaEventDisableTiming))) return e;
    }
    size_t nch = (n + STAGE_BYTES - 1) / STAGE_BYTES;
    for (size_t k = 0; k <= nch; k++) {
        if (k < nch) {
            size_t off = k * STAGE_BYTES, len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
            if ((e = cudaMemcpyAsync(c->pin[k & 1], (const char *)src + off, len, cudaMemcpyDeviceToHost, c->stream))) return e;
            if ((e = cudaEventRecord(c->ev[k & 1], c->stream))) return e;
        }
        if (k > 0) {
            size_t off = (k - 1) * STAGE_BYTES, len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
            if ((e = cudaEventSynchronize(c->ev[(k - 1) & 1]))) return e;
            memcpy((char *)dst + off, c->pin[(k - 1) & 1], len);
        }
    }
    return cudaSuccess;
}

static double now_sync(spqr_cuda_qctx *c) {
    cudaStreamSynchronize(c->stream);
    return spqr_now();
}

extern "C" spqr_status spqr_cuda_quantize_matrix_dev(spqr_cuda_qctx *c, const float *W, int rows, int cols, const float *H,
                                                     const spqr_qparams *p, int want_deq, spqr_qresult *out, spqr_error *err) {
    memset(out, 0, sizeof *out);
    if (rows < 1 || cols < 1 || cols > 65536 || rows > (1 << 24)) return spqr_set_err(err, SPQR_E_ARG, "quantize: shape [%d, %d]", rows, cols);
    if (p->wbits < 1 || p->wbits > 8) return spqr_set_err(err, SPQR_E_ARG, "quantize: wbits %d (1..8)", p->wbits);
    if (p->method == SPQR_QM_SPQR && (p->qq_bits < 1 || p->qq_bits > 8 || p->qq_groupsize < 1))
        return spqr_set_err(err, SPQR_E_ARG, "quantize: qq_bits %d (1..8), qq_groupsize %d", p->qq_bits, p->qq_groupsize);
    if (!H && p->method != SPQR_QM_RTN) return spqr_set_err(err, SPQR_E_ARG, "quantize: GPTQ and SpQR need a Hessian");
    if (p->percdamp < 0 || !isfinite(p->percdamp) || isnan(p->outlier_threshold) || p->outlier_threshold < 0)
        return spqr_set_err(err, SPQR_E_ARG, "quantize: percdamp and the outlier threshold must be non-negative");
    const int bs = p->blocksize > 0 ? p->blocksize : 128;
    if (bs > 256) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda quantize: blocksize %d (at most 256 on the GPU)", bs);

    spqr_status st = SPQR_OK;
    const double t_start = now_sync(c);
    double t0 = t_start;
    const size_t rc = (size_t)rows * cols, cc = (size_t)cols * cols;
    const int gs = p->groupsize > 0 && p->groupsize < cols ? p->groupsize : cols;
    const int groups = (cols + gs - 1) / gs;
    const bool spqr = p->method == SPQR_QM_SPQR;
    const int qqg = p->qq_groupsize < rows ? p->qq_groupsize : rows;
    const int row_blocks = spqr ? (rows + qqg - 1) / qqg : 0;
    const unsigned maxq = (1u << p->wbits) - 1, maxq2 = spqr ? (1u << p->qq_bits) - 1 : 0;
    const bool use_perm = p->act_order && p->method != SPQR_QM_RTN && H;
    const bool feedback = H && p->method != SPQR_QM_RTN;
    float *dg = NULL;
    double *dgd = NULL, *colacc = NULL, *part = NULL;
    int32_t *perm = NULL;
    uint8_t *dead = NULL;
    unsigned *cnt = NULL;
    uint8_t *blob = NULL;
    int first = 0x7fffffff;
    float tau_abs = INFINITY;
    spqr_qlayout lay;
    char why[160];
    spqr_file_tensor *t = &out->entry;
    SweepArgs a;
    memset(&a, 0, sizeof a);
    uint64_t n_out = 0;

    /* ---- prep ---- */
    CK(ensure(c, B_FLAG, 64));
    CK(cudaMemcpyAsync(B<int>(c, B_FLAG), &first, 4, cudaMemcpyHostToDevice, c->stream));
    k_nonfinite<<<1024, 256, 0, c->stream>>>(W, rc, B<int>(c, B_FLAG));
    CKL();
    CK(cudaMemcpyAsync(&first, B<int>(c, B_FLAG), 4, cudaMemcpyDeviceToHost, c->stream));
    CK(cudaStreamSynchronize(c->stream));
    if (first != 0x7fffffff) { st = spqr_set_err(err, SPQR_E_ARG, "quantize: weight %d is not finite", first); goto fail; }
    if (H) {
        CK(cudaMemcpyAsync(B<int>(c, B_FLAG), &first, 4, cudaMemcpyHostToDevice, c->stream));
        k_nonfinite<<<1024, 256, 0, c->stream>>>(H, cc, B<int>(c, B_FLAG));
        CKL();
        CK(cudaMemcpyAsync(&first, B<int>(c, B_FLAG), 4, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaStreamSynchronize(c->stream));
        if (first != 0x7fffffff) { st = spqr_set_err(err, SPQR_E_ARG, "quantize: Hessian entry %d is not finite", first); goto fail; }
    }
    dg = (float *)malloc((size_t)cols * sizeof *dg);
    dgd = (double *)malloc((size_t)cols * sizeof *dgd);
    colacc = (double *)malloc((size_t)cols * sizeof *colacc);
    perm = (int32_t *)malloc((size_t)cols * sizeof *perm);
    dead = (uint8_t *)calloc((size_t)cols, 1);
    cnt = (unsigned *)malloc(((size_t)rows + 1) * sizeof *cnt);
    part = (double *)malloc(1024 * sizeof *part);
    if (!dg || !dgd || !colacc || !perm || !dead || !cnt || !part) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto fail; }
    for (int j = 0; j < cols; j++) perm[j] = j;
    if (feedback) {
        CK(cudaMemcpy2DAsync(dg, sizeof(float), H, (size_t)(cols + 1) * sizeof(float), sizeof(float), (size_t)cols, cudaMemcpyDeviceToHost,
                             c->stream));
        CK(cudaStreamSynchronize(c->stream));
        if (use_perm) {
            for (int j = 0; j < cols; j++) dgd[j] = dg[j];
            g_sort_dg = dgd; /* not reentrant across threads: calls on one context are serial anyway */
            qsort(perm, (size_t)cols, sizeof *perm, cmp_diag_desc);
        }
        for (int j = 0; j < cols; j++) dead[j] = dg[perm[j]] == 0;
    }
    CK(ensure(c, B_PERM, (size_t)cols * 4 + (size_t)cols));
    CK(cudaMemcpyAsync(B<int>(c, B_PERM), perm, (size_t)cols * 4, cudaMemcpyHostToDevice, c->stream));
    CK(cudaMemcpyAsync(B<char>(c, B_PERM) + (size_t)cols * 4, dead, (size_t)cols, cudaMemcpyHostToDevice, c->stream));
    CK(ensure(c, B_WP, rc * 4));
    k_gather_w<<<nblk(rc, 256), 256, 0, c->stream>>>(W, B<float>(c, B_WP), rows, cols, use_perm ? B<int>(c, B_PERM) : NULL,
                                                      feedback ? B<unsigned char>(c, B_PERM) + (size_t)cols * 4 : NULL);
    CKL();
    CK(ensure(c, B_DCOL, (size_t)cols * 4));
    k_fill_f<<<nblk(cols, 256), 256, 0, c->stream>>>(B<float>(c, B_DCOL), cols, 1.0f);
    CKL();
    out->percdamp_used = p->percdamp;
    {
        double tn = now_sync(c);
        c->t.prep += tn - t0;
        t0 = tn;
    }

    /* ---- damped Cholesky inverse, U, τ ---- */
    if (feedback) {
        CK(ensure(c, B_HD, cc * 8));
        CK(ensure(c, B_U, cc * 4));
        k_gather_h<<<nblk(cc, 256), 256, 0, c->stream>>>(H, B<double>(c, B_HD), cols, use_perm ? B<int>(c, B_PERM) : NULL);
        CKL();
        double mean = 0;
        for (int i = 0; i < cols; i++) mean += fabs((double)dg[perm[i]]);
        mean /= cols;
        st = c->device_chol ? device_cholesky(c, cols, p, mean, &out->percdamp_used, err) : host_cholesky(c, cols, p, dead, &out->percdamp_used, err);
        if (st) goto fail;
        if (spqr && isfinite(p->outlier_threshold) && rows > 1) {
            CK(ensure(c, B_COLACC, (size_t)cols * 8));
            k_colvar<<<nblk(cols, 128), 128, 0, c->stream>>>(B<float>(c, B_WP), B<float>(c, B_DCOL), rows, cols, B<double>(c, B_COLACC));
            CKL();
            CK(cudaMemcpyAsync(colacc, B<double>(c, B_COLACC), (size_t)cols * 8, cudaMemcpyDeviceToHost, c->stream));
            CK(cudaStreamSynchronize(c->stream));
            double acc = 0;
            for (int j = 0; j < cols; j++) acc += colacc[j];
            tau_abs = (float)(p->outlier_threshold * acc / cols);
        }
        double tn = now_sync(c);
        c->t.chol += tn - t0;
        t0 = tn;
    }

    /* ---- the sweep ---- */
    CK(ensure(c, B_WHAT, rc * 4));
    CK(ensure(c, B_CODES, rc));
    CK(ensure(c, B_ISOUT, rc));
    CK(ensure(c, B_E, (size_t)rows * bs * 4));
    CK(ensure(c, B_GSS, (size_t)rows * 4));
    CK(ensure(c, B_GSZ, (size_t)rows * 4));
    CK(ensure(c, B_ST, (size_t)rows * 2 * groups));
    CK(ensure(c, B_QQ, (size_t)(row_blocks ? row_blocks : 1) * groups * 8));
    CK(ensure(c, B_SC16, (size_t)rows * groups * 2));
    CK(ensure(c, B_ZR, (size_t)rows * groups));
    CK(cudaMemsetAsync(B<char>(c, B_ST), 0, (size_t)rows * 2 * groups, c->stream));
    a.W = B<float>(c, B_WP);
    a.U = feedback ? B<float>(c, B_U) : NULL;
    a.dcol = B<float>(c, B_DCOL);
    a.rows = rows;
    a.cols = cols;
    a.gs = gs;
    a.bs = bs;
    a.groups = groups;
    a.maxq = maxq;
    a.maxq2 = maxq2;
    a.spqr = spqr;
    a.loo = spqr && isfinite(tau_abs) && !p->simplified_outliers;
    a.feedback = feedback;
    a.tau = tau_abs;
    a.gs_s = B<float>(c, B_GSS);
    a.gs_z = B<float>(c, B_GSZ);
    a.st = B<unsigned char>(c, B_ST);
    a.sc16 = B<unsigned short>(c, B_SC16);
    a.zr = B<unsigned char>(c, B_ZR);
    a.codes = B<unsigned char>(c, B_CODES);
    a.isout = B<unsigned char>(c, B_ISOUT);
    a.what = B<float>(c, B_WHAT);
    a.E = B<float>(c, B_E);
    a.qqg = qqg;
    a.row_blocks = row_blocks;
    a.qq = B<spqr_qq_stats>(c, B_QQ);
    if (a.loo && gs > LOO_MAX) {
        CK(ensure(c, B_SCR, (size_t)rows * gs * 4));
        CK(ensure(c, B_SCRC, (size_t)rows * gs));
        a.scr = B<float>(c, B_SCR);
        a.scrc = B<unsigned char>(c, B_SCRC);
    }
    for (int b0 = 0; b0 < cols; b0 += bs) {
        const int b1 = b0 + bs < cols ? b0 + bs : cols;
        for (int j = b0; j < b1;) {
            if (j % gs == 0) {
                const int n = j + gs < cols ? gs : cols - j;
                k_fit<<<nblk(rows, FIT_WARPS), FIT_WARPS * 32, 0, c->stream>>>(a, j / gs, j, n);
                CKL();
                if (spqr) {
                    k_bilevel<<<nblk(2 * row_blocks, 128), 128, 0, c->stream>>>(a, j / gs);
                    CKL();
                }
            }
            int je = (j / gs + 1) * gs;
            if (je > b1) je = b1;
            if (bs <= 128) k_cols<4><<<nblk(rows, COL_WARPS), COL_WARPS * 32, 0, c->stream>>>(a, b0, b1, j, je);
            else k_cols<8><<<nblk(rows, COL_WARPS), COL_WARPS * 32, 0, c->stream>>>(a, b0, b1, j, je);
            CKL();
            j = je;
        }
        if (feedback && b1 < cols) { /* W[:, b1:] -= E · U[b0:b1, b1:], gptq.c's fixed-order product */
            if ((st = ordered(c, rows, cols - b1, b1 - b0, -1.0f, a.E, bs, 1, a.U + (size_t)b0 * cols + b1, cols, a.W + b1, cols, 0, err))) goto fail;
        }
    }
    {
        double tn = now_sync(c);
        CK(cudaGetLastError());
        c->t.sweep += tn - t0;
        t0 = tn;
    }

    /* ---- packing ---- */
    CK(ensure(c, B_CNT, ((size_t)rows + 1) * 4));
    CK(ensure(c, B_RP, ((size_t)rows + 1) * 4));
    if (spqr) {
        k_rowcount<<<nblk(rows, 8), 256, 0, c->stream>>>(a.isout, rows, cols, B<unsigned>(c, B_CNT));
        CKL();
        CK(cudaMemcpyAsync(cnt, B<unsigned>(c, B_CNT), (size_t)rows * 4, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaStreamSynchronize(c->stream));
        for (int r = 0; r < rows; r++) n_out += cnt[r];
    }
    t->kind = spqr ? SPQR_TK_SPQR : SPQR_TK_GPTQ;
    t->n_dims = 2;
    t->shape[0] = (uint64_t)rows;
    t->shape[1] = (uint64_t)cols;
    t->flags = use_perm ? SPQR_TF_PERM : 0;
    t->wbits = (uint32_t)p->wbits;
    t->groupsize = (uint32_t)gs;
    t->qq_bits = spqr ? (uint32_t)p->qq_bits : 0;
    t->qq_groupsize = spqr ? (uint32_t)qqg : 0;
    t->n_outliers = n_out;
    if (!spqr_qlayout_compute(t, &lay, why, sizeof why)) { st = spqr_set_err(err, SPQR_E_ARG, "quantize: %s", why); goto fail; }
    blob = (uint8_t *)spqr_aligned_alloc(lay.size, 1);
    if (!blob) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto fail; }
    if (use_perm) memcpy(blob + lay.perm, perm, (size_t)cols * 4);
    {
        const int words = (int)(lay.code_stride / 8);
        CK(ensure(c, B_PCODES, (size_t)rows * lay.code_stride));
        k_pack<<<nblk((size_t)rows * words, 256), 256, 0, c->stream>>>(a.codes, rows, cols, cols, (unsigned)p->wbits,
                                                                        B<unsigned long long>(c, B_PCODES), words);
        CKL();
        CK(d2h_staged(c, blob + lay.codes, B<char>(c, B_PCODES), (size_t)rows * lay.code_stride));
    }
    if (spqr) {
        const int words = (int)(lay.stat_stride / 8);
        CK(ensure(c, B_PST, (size_t)rows * lay.stat_stride));
        k_pack<<<nblk((size_t)rows * words, 256), 256, 0, c->stream>>>(a.st, rows, 2 * groups, 2 * groups, (unsigned)p->qq_bits,
                                                                        B<unsigned long long>(c, B_PST), words);
        CKL();
        CK(cudaMemcpyAsync(blob + lay.stats, B<char>(c, B_PST), (size_t)rows * lay.stat_stride, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaMemcpyAsync(blob + lay.qq, a.qq, (size_t)row_blocks * groups * 8, cudaMemcpyDeviceToHost, c->stream));
        uint32_t *rp = (uint32_t *)(blob + lay.row_ptr);
        uint32_t k = 0;
        for (int r = 0; r < rows; r++) { rp[r] = k; k += cnt[r]; }
        rp[rows] = k;
        if (n_out) {
            CK(ensure(c, B_OCOL, n_out * 2));
            CK(ensure(c, B_OVAL, n_out * 2));
            CK(cudaMemcpyAsync(B<char>(c, B_RP), rp, ((size_t)rows + 1) * 4, cudaMemcpyHostToDevice, c->stream));
            k_csr<<<nblk(rows, 8), 256, 0, c->stream>>>(a.isout, a.what, rows, cols, B<unsigned>(c, B_RP), B<unsigned short>(c, B_OCOL),
                                                        B<unsigned short>(c, B_OVAL));
            CKL();
            CK(cudaMemcpyAsync(blob + lay.ocol, B<char>(c, B_OCOL), n_out * 2, cudaMemcpyDeviceToHost, c->stream));
            CK(cudaMemcpyAsync(blob + lay.oval, B<char>(c, B_OVAL), n_out * 2, cudaMemcpyDeviceToHost, c->stream));
        }
    } else {
        CK(cudaMemcpyAsync(blob + lay.scales, a.sc16, (size_t)rows * groups * 2, cudaMemcpyDeviceToHost, c->stream));
        const int words = (int)(lay.zero_stride / 8);
        CK(ensure(c, B_PZR, (size_t)rows * lay.zero_stride));
        k_pack<<<nblk((size_t)rows * words, 256), 256, 0, c->stream>>>(a.zr, rows, groups, groups, (unsigned)p->wbits,
                                                                        B<unsigned long long>(c, B_PZR), words);
        CKL();
        CK(cudaMemcpyAsync(blob + lay.zeros, B<char>(c, B_PZR), (size_t)rows * lay.zero_stride, cudaMemcpyDeviceToHost, c->stream));
    }
    CK(cudaStreamSynchronize(c->stream));
    t->data_size = lay.size;
    t->data_crc = crc32_buf(blob, lay.size);
    out->blob = blob;
    blob = NULL;
    {
        double tn = spqr_now();
        c->t.pack += tn - t0;
        t0 = tn;
    }

    /* ---- dequantized weights (original column order) ---- */
    CK(ensure(c, B_DEQ, rc * 4));
    if (use_perm) {
        k_unperm<<<nblk(rc, 256), 256, 0, c->stream>>>(a.what, B<float>(c, B_DEQ), rows, cols, B<int>(c, B_PERM));
        CKL();
    } else {
        CK(cudaMemcpyAsync(B<float>(c, B_DEQ), a.what, rc * 4, cudaMemcpyDeviceToDevice, c->stream));
    }
    if (want_deq) {
        out->deq = (float *)spqr_aligned_alloc(rc, sizeof(float));
        if (!out->deq) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto fail; }
        CK(d2h_staged(c, out->deq, B<float>(c, B_DEQ), rc * 4));
    }
    {
        double tn = now_sync(c);
        c->t.deq += tn - t0;
        t0 = tn;
    }

    /* ---- ‖(W − Ŵ)X‖ / ‖WX‖ = sqrt(tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)) ---- */
    out->rel_err = NAN;
    if (H) {
        CK(ensure(c, B_DH, rc * 4));
        CK(ensure(c, B_PART, 1024 * 8));
        float *D = B<float>(c, B_WP), *DH = B<float>(c, B_DH); /* the working copy is free now */
        const float one = 1.0f, zero = 0.0f;
        double num = 0, den = 0;
        k_sub<<<1024, 256, 0, c->stream>>>(W, B<float>(c, B_DEQ), D, rc);
        CKL();
        CKB(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, cols, rows, cols, &one, H, cols, D, cols, &zero, DH, cols));
        k_dot<<<1024, 256, 0, c->stream>>>(DH, D, rc, B<double>(c, B_PART));
        CKL();
        CK(cudaMemcpyAsync(part, B<double>(c, B_PART), 1024 * 8, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaStreamSynchronize(c->stream));
        for (int i = 0; i < 1024; i++) num += part[i];
        CKB(cublasSgemm(c->blas, CUBLAS_OP_N, CUBLAS_OP_N, cols, rows, cols, &one, H, cols, W, cols, &zero, DH, cols));
        k_dot<<<1024, 256, 0, c->stream>>>(DH, W, rc, B<double>(c, B_PART));
        CKL();
        CK(cudaMemcpyAsync(part, B<double>(c, B_PART), 1024 * 8, cudaMemcpyDeviceToHost, c->stream));
        CK(cudaStreamSynchronize(c->stream));
        for (int i = 0; i < 1024; i++) den += part[i];
        out->rel_err = den > 0 ? sqrt(fmax(num, 0) / den) : (num > 0 ? INFINITY : 0);
        double tn = spqr_now();
        c->t.relerr += tn - t0;
        t0 = tn;
    }
    c->t.total += spqr_now() - t_start;
    c->t.calls++;
    goto done;
fail:
    cudaStreamSynchronize(c->stream);
    cudaGetLastError();
    spqr_aligned_free(blob);
    spqr_cuda_qresult_free(out);
done:
    free(dg);
    free(dgd);
    free(colacc);
    free(perm);
    free(dead);
    free(cnt);
    free(part);
    return st;
}

extern "C" spqr_status spqr_cuda_quantize_matrix(spqr_cuda_qctx *c, const float *W, int rows, int cols, const float *H, const spqr_qparams *p,
                                                 spqr_qresult *out, spqr_error *err) {
    memset(out, 0, sizeof *out);
    if (rows < 1 || cols < 1 || cols > 65536 || rows > (1 << 24)) return spqr_set_err(err, SPQR_E_ARG, "quantize: shape [%d, %d]", rows, cols);
    spqr_status st = SPQR_OK;
    const size_t rc = (size_t)rows * cols, cc = (size_t)cols * cols;
    double t0 = spqr_now();
    CK(ensure(c, B_WIN, rc * 4));
    CK(cudaMemcpyAsync(B<float>(c, B_WIN), W, rc * 4, cudaMemcpyHostToDevice, c->stream));
    if (H) {
        CK(ensure(c, B_HIN, cc * 4));
        CK(cudaMemcpyAsync(B<float>(c, B_HIN), H, cc * 4, cudaMemcpyHostToDevice, c->stream));
    }
    CK(cudaStreamSynchronize(c->stream));
    c->t.upload += spqr_now() - t0;
    c->t.total += spqr_now() - t0;
    return spqr_cuda_quantize_matrix_dev(c, B<float>(c, B_WIN), rows, cols, H ? B<float>(c, B_HIN) : NULL, p, 1, out, err);
fail:
    return st;
}

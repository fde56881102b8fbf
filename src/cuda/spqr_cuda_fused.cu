/* spqr_cuda_fused.cu — the fused GEMV (v5, SPQR_CUDA_FUSED) on the fused layout (spqr_cuda_internal.cuh). */
#include "cuda/spqr_cuda_internal.cuh"

#define CK(call, what)                                                                                        \
    do {                                                                                                      \
        cudaError_t e_ = (call);                                                                              \
        if (e_ != cudaSuccess) return spqr_set_err(err, SPQR_E_IO, "cuda: %s: %s", what, cudaGetErrorString(e_)); \
    } while (0)

/* ---------------------------------------------------------------------------------------------- */
/* Fused GEMV (v5): rows in the lanes, x gathered per block into shared memory, one launch        */
/* ---------------------------------------------------------------------------------------------- */

struct fargs {
    const uint4 *codes;
    const uint32_t *stat;
    const uint2 *qq;
    const int32_t *perm;
    const uint32_t *orp;
    const uint16_t *ocol;
    const float *od;
    const void *x;
    float *y;
    int rows, cols, nct, n, b0, qq_gs, row_blocks, xf32;
};

#define V5_MAXW 16 /* warps per block at most */

__device__ __forceinline__ uint32_t word_of(const uint4 *cw, int wi) {
    const uint4 &v = cw[wi >> 2];
    return (wi & 3) == 0 ? v.x : (wi & 3) == 1 ? v.y : (wi & 3) == 2 ? v.z : v.w;
}

/* (1024 + c0, 1024 + c1) of pair t of packet p, as two floats. */
template <int W>
__device__ __forceinline__ float2 fpair(const uint4 *cw, int p, int t) {
    constexpr int F = 16 / W;
    uint32_t b;
    if (W == 3 && t == 15) {
        b = ((word_of(cw, p * 3) >> 15) & 0x10001u) | ((word_of(cw, p * 3 + 1) >> 14) & 0x20002u) | ((word_of(cw, p * 3 + 2) >> 13) & 0x40004u) |
            0x64006400u;
    } else {
        b = ((word_of(cw, p * W + t / F) >> (W * (t % F))) & (((1u << W) - 1) * 0x10001u)) | 0x64006400u;
    }
    return __half22float2(*reinterpret_cast<__half2 *>(&b));
}

__device__ __forceinline__ float ldx(const fargs &a, int b, int j) {
    if (a.xf32) return __ldg((const float *)a.x + (size_t)(a.b0 + b) * a.cols + j);
    return __half2float(__ldg((const __half *)a.x + (size_t)(a.b0 + b) * a.cols + j));
}

/* y[b0 + b][r] for the block's 32 rows, b < B. Shared memory: xs [cpad][B] fp32, xg [cpad/16][B]
 * (group sums), red [warps][32][B]. */
template <int W, bool Q3, int B>
__global__ void __launch_bounds__(512, W == 4 ? 1 : 2) k_fused(fargs a) {
    constexpr int NU = 2 * W, NS = Q3 ? 3 : 4;
    extern __shared__ float4 smem4[];
    const int cpad = a.nct * 256;
    float *xs = (float *)smem4, *xg = xs + (size_t)cpad * B, *red = xg + (size_t)(cpad / 16) * B;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int rt = blockIdx.x, r = rt * 32 + lane;
    /* qq row block of this half-warp's rows (lanes 0-15 and 16-31 each lie in one β2 block) */
    int rq = rt * 32 + (lane & 16);
    rq = rq < a.rows ? rq : a.rows - 1;
    const size_t qrow = (size_t)(rq / a.qq_gs) * (a.nct * 16);

    uint4 cw[NU];
    uint32_t sw[NS];
    uint2 qv;
    int ct = w;
    auto load = [&](int c) {
        const uint4 *cp = a.codes + ((size_t)rt * a.nct + c) * NU * 32 + lane;
#pragma unroll
        for (int i = 0; i < NU; i++) cw[i] = __ldg(cp + i * 32);
        const uint32_t *sp = a.stat + ((size_t)rt * a.nct + c) * NS * 32 + lane;
#pragma unroll
        for (int k = 0; k < NS; k++) sw[k] = __ldg(sp + k * 32);
        qv = __ldg(a.qq + qrow + c * 16 + (lane & 15));
    };
    if (ct < a.nct) load(ct);

    /* gather x (stored order) and the per-group sums; 16 consecutive j lie in 16 aligned lanes.
     * U columns per thread at a time: all their perm loads, then all their x loads, in flight. */
    constexpr int U = B == 4 ? 4 : 8;
    for (int j0 = threadIdx.x; j0 < cpad; j0 += U * blockDim.x) {
        int pj[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + u * blockDim.x;
            pj[u] = j < a.cols ? (a.perm ? __ldg(a.perm + j) : j) : -1;
        }
        float v[U][B];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int b = 0; b < B; b++) v[u][b] = (pj[u] >= 0 && a.b0 + b < a.n) ? ldx(a, b, pj[u]) : 0.f;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + u * blockDim.x;
            if (j >= cpad) break; /* warp-uniform: cpad and blockDim are multiples of 32 */
#pragma unroll
            for (int b = 0; b < B; b++) {
                float t = v[u][b];
                xs[(size_t)j * B + b] = t;
                t += __shfl_xor_sync(0xffffffffu, t, 8);
                t += __shfl_xor_sync(0xffffffffu, t, 4);
                t += __shfl_xor_sync(0xffffffffu, t, 2);
                t += __shfl_xor_sync(0xffffffffu, t, 1);
                if ((lane & 15) == 0) xg[(size_t)(j >> 4) * B + b] = t;
            }
        }
    }
    __syncthreads();

    float acc[B];
#pragma unroll
    for (int b = 0; b < B; b++) acc[b] = 0.f;
    while (ct < a.nct) {
        const float q_ss = __half2float(__ushort_as_half((unsigned short)(qv.x & 0xffff)));
        const float q_nsz = -q_ss * __half2float(__ushort_as_half((unsigned short)(qv.x >> 16))); /* exact: 11 x 11 bits */
        const float q_zs = __half2float(__ushort_as_half((unsigned short)(qv.y & 0xffff)));
        const float q_nzz = -q_zs * __half2float(__ushort_as_half((unsigned short)(qv.y >> 16)));
        const float4 *x4 = (const float4 *)(xs + (size_t)ct * 256 * B);
        const float *xgt = xg + (size_t)ct * 16 * B;
#pragma unroll
        for (int i = 0; i < 16; i++) { /* group i of the tile = packet i/2, pairs 8*(i&1) .. +7 */
            const int src = (lane & 16) | i;
            const float ss = __shfl_sync(0xffffffffu, q_ss, src), nsz = __shfl_sync(0xffffffffu, q_nsz, src);
            const float zs = __shfl_sync(0xffffffffu, q_zs, src), nzz = __shfl_sync(0xffffffffu, q_nzz, src);
            uint32_t sc, zc;
            if (Q3) {
                uint32_t f;
                if (i < 15) f = (sw[i / 5] >> (6 * (i % 5))) & 63u;
                else f = (sw[0] >> 30) | ((sw[1] >> 28) & 12u) | ((sw[2] >> 26) & 48u);
                sc = f & 7u; zc = f >> 3;
            } else {
                const uint32_t f = (sw[i / 4] >> (8 * (i % 4))) & 255u;
                sc = f & 15u; zc = f >> 4;
            }
            const float s = fmaf((float)sc, ss, nsz), z = fmaf((float)zc, zs, nzz);
            const float kz = z + 1024.f; /* the codes below are 1024 + c */
            float A[B];
#pragma unroll
            for (int b = 0; b < B; b++) A[b] = 0.f;
#pragma unroll
            for (int tt = 0; tt < 8; tt++) {
                const int t = 8 * (i & 1) + tt;
                const float2 f = fpair<W>(cw, i >> 1, t);
                if (B == 1) {
                    const float4 xv = x4[(i * 16 + 2 * tt) / 4]; /* columns 16 i + 2 tt, +1 (and +2, +3) */
                    if (tt & 1) A[0] = fmaf(f.y, xv.w, fmaf(f.x, xv.z, A[0]));
                    else A[0] = fmaf(f.y, xv.y, fmaf(f.x, xv.x, A[0]));
                } else if (B == 2) {
                    const float4 xv = x4[i * 8 + tt]; /* (col0: b0 b1, col1: b0 b1) */
                    A[0] = fmaf(f.y, xv.z, fmaf(f.x, xv.x, A[0]));
                    A[1 % B] = fmaf(f.y, xv.w, fmaf(f.x, xv.y, A[1 % B]));
                } else {
                    const float4 x0 = x4[(i * 16 + 2 * tt)], x1 = x4[(i * 16 + 2 * tt + 1)];
                    A[0] = fmaf(f.y, x1.x, fmaf(f.x, x0.x, A[0]));
                    A[1 % B] = fmaf(f.y, x1.y, fmaf(f.x, x0.y, A[1 % B]));
                    A[2 % B] = fmaf(f.y, x1.z, fmaf(f.x, x0.z, A[2 % B]));
                    A[3 % B] = fmaf(f.y, x1.w, fmaf(f.x, x0.w, A[3 % B]));
                }
            }
            /* Σ s (c − z) x = s (Σ (1024 + c) x − (1024 + z) Σ x) */
#pragma unroll
            for (int b = 0; b < B; b++) acc[b] = fmaf(s, fmaf(-kz, xgt[i * B + b], A[b]), acc[b]);
        }
        ct += nw;
        if (ct < a.nct) load(ct);
    }
    /* outliers of this lane's row: warp w takes every nw-th */
    if (r < a.rows) {
        const uint32_t e = __ldg(a.orp + r + 1);
        for (uint32_t kk = __ldg(a.orp + r) + w; kk < e; kk += nw) {
            const uint32_t c = __ldg(a.ocol + kk);
            const float d = __ldg(a.od + kk);
#pragma unroll
            for (int b = 0; b < B; b++) acc[b] = fmaf(d, xs[(size_t)c * B + b], acc[b]);
        }
    }
#pragma unroll
    for (int b = 0; b < B; b++) red[((size_t)w * 32 + lane) * B + b] = acc[b];
    __syncthreads();
    if (w == 0 && r < a.rows) {
#pragma unroll
        for (int b = 0; b < B; b++) {
            float v = 0.f;
            for (int k = 0; k < nw; k++) v += red[((size_t)k * 32 + lane) * B + b];
            if (a.b0 + b < a.n) a.y[(size_t)(a.b0 + b) * a.rows + r] = v;
        }
    }
}

static size_t fused_smem(const spqr_cuda_qmatrix *m, int B, int nw) {
    const size_t cpad = (size_t)m->nct * 256;
    return (cpad * B + cpad / 16 * B + (size_t)nw * 32 * B) * sizeof(float);
}

template <int W, bool Q3, int B>
static cudaError_t launch_fused_b(const fargs &a, int nw, size_t smem, cudaStream_t st) {
    static int attr_set = 0;
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(k_fused<W, Q3, B>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        if (e != cudaSuccess) return e;
        attr_set = 1;
    }
    k_fused<W, Q3, B><<<(unsigned)((a.rows + 31) / 32), nw * 32, smem, st>>>(a);
    return cudaGetLastError();
}

template <int W, bool Q3>
static cudaError_t launch_fused_q(const fargs &a, int B, int nw, size_t smem, cudaStream_t st) {
    return B == 1 ? launch_fused_b<W, Q3, 1>(a, nw, smem, st) : B == 2 ? launch_fused_b<W, Q3, 2>(a, nw, smem, st)
                                                                       : launch_fused_b<W, Q3, 4>(a, nw, smem, st);
}

static cudaError_t launch_fused(const spqr_cuda_qmatrix *m, const fargs &a, int B, int nw, size_t smem, cudaStream_t st) {
    switch (m->wbits * 2 + m->f_q3) {
    case 2 * 2 + 1: return launch_fused_q<2, true>(a, B, nw, smem, st);
    case 2 * 2: return launch_fused_q<2, false>(a, B, nw, smem, st);
    case 3 * 2 + 1: return launch_fused_q<3, true>(a, B, nw, smem, st);
    case 3 * 2: return launch_fused_q<3, false>(a, B, nw, smem, st);
    case 4 * 2 + 1: return launch_fused_q<4, true>(a, B, nw, smem, st);
    default: return launch_fused_q<4, false>(a, B, nw, smem, st);
    }
}

/* x: fp16 or fp32 (xf32) [n][cols]. Passes of up to 4 activations (fewer when shared memory is short). */
spqr_status spqr_cuda_run_fused(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const void *x, int xf32, int n, float *y, spqr_error *err) {
    const int nw = m->nct < V5_MAXW ? (int)m->nct : V5_MAXW;
    int Bmax = 4;
    while (Bmax > 1 && fused_smem(m, Bmax, nw) > 227 * 1024) Bmax /= 2;
    if (fused_smem(m, Bmax, nw) > 227 * 1024) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: %u columns exceed the fused kernel's shared memory", m->cols);
    for (int b0 = 0; b0 < n; b0 += Bmax) {
        const int nb = n - b0 < Bmax ? n - b0 : Bmax, B = nb > 2 ? 4 : nb;
        fargs a = {m->fcodes, m->fstat, m->fqq, m->fperm, m->forp, m->focol, m->fodelta, x, y,
                   (int)m->rows, (int)m->cols, (int)m->nct, n, b0, (int)m->qq_gs, (int)m->row_blocks, xf32};
        const size_t smem = fused_smem(m, B, nw);
        cudaError_t e = launch_fused(m, a, B > Bmax ? Bmax : B, nw, smem, c->stream);
        CK(e, "fused kernel");
    }
    return SPQR_OK;
}


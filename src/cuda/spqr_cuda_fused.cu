/* spqr_cuda_fused.cu — the fused GEMV (v5, SPQR_CUDA_FUSED) on the fused layout (spqr_cuda_internal.cuh). */
#include "cuda/spqr_cuda_internal.cuh"

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

/* The 6-bit (q = 3) or 8-bit scale | zero code field of group i (0..15) of a lane's tile. */
template <bool Q3>
__device__ __forceinline__ uint32_t stat_field(const uint32_t *sw, int i) {
    if (Q3) return i < 15 ? (sw[i / 5] >> (6 * (i % 5))) & 63u : (sw[0] >> 30) | ((sw[1] >> 28) & 12u) | ((sw[2] >> 26) & 48u);
    return (sw[i / 4] >> (8 * (i % 4))) & 255u;
}

/* y[b0 + b][r] for the block's 32 rows, b < B. Shared memory: xs [cpad][B] fp32, xg [cpad/16][B]
 * (group sums), red [warps][32][B]. HALF: a warp's work unit is half a column tile (128 columns,
 * 8 groups: packets 4h .. 4h + 3), so that twice as many warps share a row tile. */
template <int W, bool Q3, int B, bool HALF>
__global__ void __launch_bounds__(HALF ? 1024 : 512, HALF ? 1 : W == 4 ? 1 : 2) k_fused(fargs a) {
    constexpr int NU = HALF ? W : 2 * W, NS = Q3 ? 3 : 4, GPU = HALF ? 8 : 16; /* uint4 and groups per work unit */
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
    const int nunits = HALF ? 2 * a.nct : a.nct;
    int un = w; /* work unit: column tile (un), or half tile (tile un / 2, half un % 2) */
    auto load = [&](int c) {
        const int tile = HALF ? c >> 1 : c;
        const uint4 *cp = a.codes + ((size_t)rt * a.nct + tile) * 2 * W * 32 + (HALF ? (c & 1) * W * 32 : 0) + lane;
#pragma unroll
        for (int i = 0; i < NU; i++) cw[i] = __ldg(cp + i * 32);
        const uint32_t *sp = a.stat + ((size_t)rt * a.nct + tile) * NS * 32 + lane;
#pragma unroll
        for (int k = 0; k < NS; k++) sw[k] = __ldg(sp + k * 32);
        qv = __ldg(a.qq + qrow + tile * 16 + (lane & 15));
    };
    if (un < nunits) load(un);
    /* Programmatic dependent launch (sm_90): let the next kernel's blocks be scheduled now, and wait
     * for the previous kernel (which may write x) only after this block's first weight loads are
     * in flight. Both are no-ops when the launch did not ask for it. */
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif

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
    while (un < nunits) {
        const int ct = HALF ? un >> 1 : un, hh = HALF ? un & 1 : 0, g0 = 8 * hh; /* first group of the unit in its tile */
        const float q_ss = __half2float(__ushort_as_half((unsigned short)(qv.x & 0xffff)));
        const float q_nsz = -q_ss * __half2float(__ushort_as_half((unsigned short)(qv.x >> 16))); /* exact: 11 x 11 bits */
        const float q_zs = __half2float(__ushort_as_half((unsigned short)(qv.y & 0xffff)));
        const float q_nzz = -q_zs * __half2float(__ushort_as_half((unsigned short)(qv.y >> 16)));
        const float4 *x4 = (const float4 *)(xs + ((size_t)ct * 256 + 16 * g0) * B);
        const float *xgt = xg + ((size_t)ct * 16 + g0) * B;
#pragma unroll
        for (int i = 0; i < GPU; i++) { /* group g0 + i of the tile = packet i/2 of cw, pairs 8*(i&1) .. +7 */
            const int src = (lane & 16) | (g0 + i);
            const float ss = __shfl_sync(0xffffffffu, q_ss, src), nsz = __shfl_sync(0xffffffffu, q_nsz, src);
            const float zs = __shfl_sync(0xffffffffu, q_zs, src), nzz = __shfl_sync(0xffffffffu, q_nzz, src);
            const uint32_t f = HALF ? (hh ? stat_field<Q3>(sw, i + 8) : stat_field<Q3>(sw, i)) : stat_field<Q3>(sw, i);
            const uint32_t sc = Q3 ? f & 7u : f & 15u, zc = Q3 ? f >> 3 : f >> 4;
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
        un += nw;
        if (un < nunits) load(un);
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

template <int W, bool Q3, int B, bool HALF>
static cudaError_t launch_fused_b(const fargs &a, int nw, size_t smem, cudaStream_t st, int pdl) {
    static int attr_set = 0;
    if (!attr_set) {
        cudaError_t e = cudaFuncSetAttribute(k_fused<W, Q3, B, HALF>, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
        if (e != cudaSuccess) return e;
        attr_set = 1;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((a.rows + 31) / 32));
    cfg.blockDim = dim3((unsigned)nw * 32);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k_fused<W, Q3, B, HALF>, a);
}

template <int W, bool Q3, bool HALF>
static cudaError_t launch_fused_q(const fargs &a, int B, int nw, size_t smem, cudaStream_t st, int pdl) {
    return B == 1 ? launch_fused_b<W, Q3, 1, HALF>(a, nw, smem, st, pdl) : B == 2 ? launch_fused_b<W, Q3, 2, HALF>(a, nw, smem, st, pdl)
                                                                                  : launch_fused_b<W, Q3, 4, HALF>(a, nw, smem, st, pdl);
}

template <bool HALF>
static cudaError_t launch_fused_h(const spqr_cuda_qmatrix *m, const fargs &a, int B, int nw, size_t smem, cudaStream_t st, int pdl) {
    switch (m->wbits * 2 + m->f_q3) {
    case 2 * 2 + 1: return launch_fused_q<2, true, HALF>(a, B, nw, smem, st, pdl);
    case 2 * 2: return launch_fused_q<2, false, HALF>(a, B, nw, smem, st, pdl);
    case 3 * 2 + 1: return launch_fused_q<3, true, HALF>(a, B, nw, smem, st, pdl);
    case 3 * 2: return launch_fused_q<3, false, HALF>(a, B, nw, smem, st, pdl);
    case 4 * 2 + 1: return launch_fused_q<4, true, HALF>(a, B, nw, smem, st, pdl);
    default: return launch_fused_q<4, false, HALF>(a, B, nw, smem, st, pdl);
    }
}

/* Warps per block and work-unit size for a matrix and pass width B: the whole-tile kernel with
 * min(16, tiles) warps (c->fused_mode 1), or half tiles (mode 2) with the most warps, 32 down to 4,
 * that keeps every block resident in one wave on `sms` multiprocessors (64 registers: 32 warps per
 * SM) and gives every warp at least one half tile. Mode 0 (default): half tiles for B <= 2, whole
 * tiles for B = 4 (lab run 9: half tiles 6-23% faster at n = 1, up to 20% slower at n = 4). */
static void fused_shape(const spqr_cuda_qmatrix *m, int mode, int B, int sms, int *nw, int *half) {
    if (mode == 1 || (mode == 0 && B > 2)) {
        *half = 0;
        *nw = m->nct < 16 ? (int)m->nct : 16;
        return;
    }
    *half = 1;
    int w = 32;
    while (w > 4 && ((uint64_t)m->nrt * w > (uint64_t)sms * 32 || w > 2 * (int)m->nct)) w /= 2;
    *nw = w;
}

/* x: fp16 or fp32 (xf32) [n][cols]. Passes of up to 4 activations (fewer when shared memory is short). */
spqr_status spqr_cuda_run_fused(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const void *x, int xf32, int n, float *y, spqr_error *err) {
    const int sms = c->sms > 0 ? c->sms : 132;
    int nw, half, Bmax = 4;
    auto shape = [&](int B) { fused_shape(m, c->fused_mode, B, sms, &nw, &half); return fused_smem(m, B, nw); };
    while (Bmax > 1 && shape(Bmax) > 227 * 1024) Bmax /= 2;
    if (shape(Bmax) > 227 * 1024) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: %u columns exceed the fused kernel's shared memory", m->cols);
    for (int b0 = 0; b0 < n; b0 += Bmax) {
        const int nb = n - b0 < Bmax ? n - b0 : Bmax, B = nb > 2 ? 4 : nb;
        fargs a = {m->fcodes, m->fstat, m->fqq, m->fperm, m->forp, m->focol, m->fodelta, x, y,
                   (int)m->rows, (int)m->cols, (int)m->nct, n, b0, (int)m->qq_gs, (int)m->row_blocks, xf32};
        const size_t smem = shape(B); /* sets nw, half for this pass width */
        /* PDL only when a block fills its SM (32 warps): the next kernel's blocks then start as this
         * one's finish; with co-resident blocks it was measured slower, whether the next kernel was let
         * in at the start or after the tile loop (bench/cuda/README.md, runs 10-11) */
        const int pdl = c->pdl && nw == 32;
        cudaError_t e = half ? launch_fused_h<true>(m, a, B, nw, smem, c->stream, pdl) : launch_fused_h<false>(m, a, B, nw, smem, c->stream, pdl);
        CK(e, "fused kernel");
    }
    return SPQR_OK;
}


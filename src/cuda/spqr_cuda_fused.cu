/* spqr_cuda_fused.cu — the fused GEMV (v5, SPQR_CUDA_FUSED) on the fused layout (spqr_cuda_internal.cuh),
 * and its 8-bit-activation twin (v9, SPQR_CUDA_ACT8) on the same layout with act8_layout.h's code words. */
#include "cuda/act8_layout.h"
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
    const uint4 *xprep; /* NULL: each block gathers x itself; else k_prep_x's image of the shared x arrays */
    int rows, cols, nct, n, b0, qq_gs, row_blocks, xf32, prep_n; /* prep_n: uint4 of that image */
    unsigned long long *trace; /* the lab's timeline (ctx->trace), NULL: off */
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

/* Column j (stored order) of activation b, value t, into the x arrays (shared memory, or k_prep_x's
 * global image of them): xs[j][B] and the group sum xg[j / 16][B], or with A8 xs, the int8 xq[b][j]
 * and dxg[b][j / 16] = (dx, gq) as spqr_act8_quantize computes them. The 16 columns of a group lie in
 * 16 aligned lanes of a full warp. */
template <int B, bool A8>
__device__ __forceinline__ void put_column(float t, int j, int b, int cpad, float *xs, float *xg, int8_t *xq, float2 *dxg) {
    const int lane = threadIdx.x & 31;
    xs[(size_t)j * B + b] = t;
    if (A8) { /* spqr_act8_quantize over the 16 lanes of this group, in its float operations */
        float mx = fabsf(t);
#pragma unroll
        for (int o = 8; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
        const float inv = mx > 0 ? __fdiv_rn(127.0f, mx) : 0.0f;
        int qv8 = (int)rintf(__fmul_rn(t, inv)), qs = qv8;
        xq[(size_t)b * cpad + j] = (int8_t)qv8;
#pragma unroll
        for (int o = 8; o; o >>= 1) qs += __shfl_xor_sync(0xffffffffu, qs, o);
        const float dx = __fdiv_rn(mx, 127.0f);
        if ((lane & 15) == 0) dxg[(size_t)b * (cpad / 16) + (j >> 4)] = make_float2(dx, __fmul_rn(dx, (float)qs));
    } else {
#pragma unroll
        for (int o = 8; o; o >>= 1) t += __shfl_xor_sync(0xffffffffu, t, o);
        if ((lane & 15) == 0) xg[(size_t)(j >> 4) * B + b] = t;
    }
}

/* The x arrays of one pass as an image of the kernel's shared memory (its first fused_smem − red
 * bytes), written once per product instead of by every block: grid cpad / 256, 256 threads. Waits
 * for the previous kernel (the producer of x) with programmatic dependent launch. */
template <int B, bool A8>
__global__ void __launch_bounds__(256) k_prep_x(fargs a, float *img) {
    unsigned long long *tr = a.trace && threadIdx.x == 0 ? a.trace + (size_t)(SPQR_TRACE_BLOCKS + blockIdx.x) * SPQR_TRACE_REC : NULL;
    if (tr) trace_stamp(tr, 0);
    pdl_launch_dependents();
    const int cpad = a.nct * 256, j = blockIdx.x * 256 + threadIdx.x;
    const int pj = j < a.cols ? (a.perm ? __ldg(a.perm + j) : j) : -1;
    pdl_wait();
    if (tr) trace_stamp(tr, 1);
    float *xg = img + (size_t)cpad * B;
    int8_t *xq = (int8_t *)xg;
    float2 *dxg = (float2 *)(xq + (size_t)cpad * B);
    float v[B];
#pragma unroll
    for (int b = 0; b < B; b++) v[b] = (pj >= 0 && a.b0 + b < a.n) ? ldx(a, b, pj) : 0.f;
#pragma unroll
    for (int b = 0; b < B; b++) put_column<B, A8>(v[b], j, b, cpad, img, xg, xq, dxg);
    if (tr) trace_stamp(tr, 2, v[0]);
}

/* y[b0 + b][r] for the block's 32 rows, b < B. Shared memory: xs [cpad][B] fp32, xg [cpad/16][B]
 * (group sums), red [32][warps + 1][B]; the x arrays are copied from a.xprep (k_prep_x) or gathered
 * by the block. HALF: a warp's work unit is half a column tile (128 columns, 8 groups: packets
 * 4h .. 4h + 3), so that twice as many warps share a row tile.
 * A8 (v9; a.codes then holds act8_layout.h's words): x rounded to int8 per group of 16 as
 * spqr_act8_quantize does (dx = max|x| / 127, xq = rint(x / dx), gq = dx · Σ xq), so that per
 * (row, group) Σ c · xq is four exact IDP4A, and y += s · (dx · Σ − z · gq) as
 * spqr_qtiles_gemv_act8_ref; outliers use the fp32 x. Shared memory then: xs, xq int8 [B][cpad],
 * dxg float2 [B][cpad/16] (dx, gq), red. */
template <int W, bool Q3, int B, bool HALF, bool A8>
__global__ void __launch_bounds__(HALF ? 1024 : 512, HALF ? 1 : W == 4 ? 1 : 2) k_fused(fargs a) {
    constexpr int NU = HALF ? W : 2 * W, NS = Q3 ? 3 : 4, GPU = HALF ? 8 : 16; /* uint4 and groups per work unit */
    extern __shared__ float4 smem4[];
    const int cpad = a.nct * 256;
    float *xs = (float *)smem4, *xg = xs + (size_t)cpad * B, *red = xg + (size_t)(cpad / 16) * B;
    int8_t *xq = (int8_t *)xg;                          /* A8: [B][cpad] */
    float2 *dxg = (float2 *)(xq + (size_t)cpad * B);    /* A8: [B][cpad / 16] */
    if (A8) red = (float *)(dxg + (size_t)(cpad / 16) * B);
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    unsigned long long *rec = a.trace ? a.trace + (size_t)blockIdx.x * SPQR_TRACE_REC : NULL, *tr = threadIdx.x == 0 ? rec : NULL;
    if (tr) trace_stamp(tr, 0);
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
    /* this lane's qq (its half-warp's β2 block, group lane & 15 of the tile) as (ss, −ss·sz, zs, −zs·zz) */
    auto qdec = [&]() {
        const float ss = h2f_lo(qv.x), zs = h2f_lo(qv.y);
        return make_float4(ss, -ss * h2f_hi(qv.x), zs, -zs * h2f_hi(qv.y)); /* exact: 11 x 11 bits */
    };
    /* s, z of group 8 hh + i (HALF) or i of the tile: q from lane (half-warp | group), the codes from sw */
    auto stats = [&](const float4 &q, int i, int hh, float &s, float &z) {
        const int src = (lane & 16) | (8 * hh + i);
        const float ss = __shfl_sync(0xffffffffu, q.x, src), nsz = __shfl_sync(0xffffffffu, q.y, src);
        const float zs = __shfl_sync(0xffffffffu, q.z, src), nzz = __shfl_sync(0xffffffffu, q.w, src);
        const uint32_t f = HALF ? (hh ? stat_field<Q3>(sw, i + 8) : stat_field<Q3>(sw, i)) : stat_field<Q3>(sw, i);
        const uint32_t sc = Q3 ? f & 7u : f & 15u, zc = Q3 ? f >> 3 : f >> 4;
        s = fmaf((float)sc, ss, nsz), z = fmaf((float)zc, zs, nzz);
    };
    uint32_t ob = 0, oe = 0; /* this row's outlier segment (weights: loaded before the wait too) */
    if (r < a.rows) { ob = __ldg(a.orp + r); oe = __ldg(a.orp + r + 1); }
    /* Programmatic dependent launch (sm_90): let the next kernel's blocks be scheduled now, and wait
     * for the previous kernel (which may write x) only after this block's first weight loads are
     * in flight. Both are no-ops when the launch did not ask for it. */
    pdl_launch_dependents();
    pdl_wait();
    if (tr) trace_stamp(tr, 1);

    if (a.xprep) { /* the x arrays from k_prep_x: a copy */
        auto ldimg = [&](int i) { return __ldg(a.xprep + i); };
        uint4 t[2];
        const int i0 = threadIdx.x, i1 = threadIdx.x + blockDim.x;
        if (i0 < a.prep_n) t[0] = ldimg(i0);
        if (i1 < a.prep_n) t[1] = ldimg(i1);
#pragma unroll 4
        for (int i = i1 + blockDim.x; i < a.prep_n; i += blockDim.x) ((uint4 *)smem4)[i] = ldimg(i);
        if (i0 < a.prep_n) ((uint4 *)smem4)[i0] = t[0];
        if (i1 < a.prep_n) ((uint4 *)smem4)[i1] = t[1];
    } else {
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
            for (int b = 0; b < B; b++) put_column<B, A8>(v[u][b], j, b, cpad, xs, xg, xq, dxg);
        }
    }
    }
    /* the first two outliers of this warp's share of the row, loaded while the block synchronizes */
    const uint32_t k0 = ob + w;
    uint32_t oc0 = 0, oc1 = 0;
    float od0 = 0.f, od1 = 0.f;
    if (k0 < oe) { oc0 = __ldg(a.ocol + k0); od0 = __ldg(a.od + k0); }
    if (k0 + nw < oe) { oc1 = __ldg(a.ocol + k0 + nw); od1 = __ldg(a.od + k0 + nw); }
    __syncthreads();
    if (tr) trace_stamp(tr, 2);

    float acc[B];
#pragma unroll
    for (int b = 0; b < B; b++) acc[b] = 0.f;
    while (un < nunits) {
        const int ct = HALF ? un >> 1 : un, hh = HALF ? un & 1 : 0, g0 = 8 * hh; /* first group of the unit in its tile */
        const float4 q = qdec();
        const float4 *x4 = (const float4 *)(xs + ((size_t)ct * 256 + 16 * g0) * B);
        const float *xgt = xg + ((size_t)ct * 16 + g0) * B;
        uint32_t uw[A8 ? 4 * NU : 1]; /* A8: the unit's words (registers once unrolled) */
        if (A8)
#pragma unroll
            for (int k = 0; k < 4 * NU; k++) uw[k] = word_of(cw, k);
#pragma unroll
        for (int i = 0; i < GPU; i++) { /* group g0 + i of the tile = packet i/2 of cw, pairs 8*(i&1) .. +7 */
            float s, z;
            stats(q, i, hh, s, z);
            if (A8) {
                const uint32_t *gw = uw + (i >> 3) * 4 * W; /* whole tiles: groups 8-15 are the second unit's words */
#pragma unroll
                for (int b = 0; b < B; b++) {
                    const int4 xw = *(const int4 *)(xq + (size_t)b * cpad + (size_t)ct * 256 + 16 * (g0 + i));
                    int is = __dp4a((int)spqr_a8_quad(gw, W, i & 7, 0), xw.x, 0);
                    is = __dp4a((int)spqr_a8_quad(gw, W, i & 7, 1), xw.y, is);
                    is = __dp4a((int)spqr_a8_quad(gw, W, i & 7, 2), xw.z, is);
                    is = __dp4a((int)spqr_a8_quad(gw, W, i & 7, 3), xw.w, is);
                    const float2 dg = dxg[(size_t)b * (cpad / 16) + (size_t)ct * 16 + g0 + i];
                    acc[b] = fmaf(s, fmaf(-z, dg.y, (float)is * dg.x), acc[b]);
                }
                continue;
            }
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
    if (rec && lane == 0) trace_stamp(rec, 4 + w, acc[0]);
    /* outliers of this lane's row: warp w takes every nw-th (the first two prefetched; od = 0 past the end) */
#pragma unroll
    for (int b = 0; b < B; b++) acc[b] = fmaf(od1, xs[(size_t)oc1 * B + b], fmaf(od0, xs[(size_t)oc0 * B + b], acc[b]));
    for (uint32_t kk = k0 + 2 * nw; kk < oe; kk += nw) {
        const uint32_t c = __ldg(a.ocol + kk);
        const float d = __ldg(a.od + kk);
#pragma unroll
        for (int b = 0; b < B; b++) acc[b] = fmaf(d, xs[(size_t)c * B + b], acc[b]);
    }
    /* block reduction: red[row lane][warp] (rows padded to nw + 1: conflict-free both ways), then warp w
     * sums rows w, w + nw, ... across its lanes (lane k: warp k's partial) */
#pragma unroll
    for (int b = 0; b < B; b++) red[((size_t)lane * (nw + 1) + w) * B + b] = acc[b];
    __syncthreads();
    for (int q = w; q < 32; q += nw) {
        const int rr = rt * 32 + q;
#pragma unroll
        for (int b = 0; b < B; b++) {
            float v = lane < nw ? red[((size_t)q * (nw + 1) + lane) * B + b] : 0.f;
#pragma unroll
            for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
            if (lane == 0 && rr < a.rows && a.b0 + b < a.n) a.y[(size_t)(a.b0 + b) * a.rows + rr] = v;
        }
    }
    if (tr) trace_stamp(tr, 3);
}

/* Shared memory of a block: the x arrays (k_prep_x's image: fused_img bytes), then red [32][nw + 1][B]. */
static size_t fused_img(const spqr_cuda_qmatrix *m, int B, bool a8) {
    const size_t cpad = (size_t)m->nct * 256;
    return a8 ? cpad * B * 4 + cpad * B + cpad / 16 * B * 8 : (cpad * B + cpad / 16 * B) * sizeof(float);
}
static size_t fused_smem(const spqr_cuda_qmatrix *m, int B, int nw, bool a8) { return fused_img(m, B, a8) + (size_t)32 * (nw + 1) * B * 4; }

template <int W, bool Q3, int B, bool HALF, bool A8>
static cudaError_t launch_fused_b(const fargs &a, int nw, size_t smem, spqr_cuda_ctx *c, int pdl) {
    const cudaError_t e = spqr_cuda_smem_optin(c, (const void *)k_fused<W, Q3, B, HALF, A8>, 227 * 1024);
    if (e != cudaSuccess) return e;
    const spqr_launch l(dim3((unsigned)((a.rows + 31) / 32)), dim3((unsigned)nw * 32), smem, c->stream, pdl);
    return cudaLaunchKernelEx(&l.cfg, k_fused<W, Q3, B, HALF, A8>, a);
}

/* v5: B = 1, 2, 4 on half or whole tiles; v9 (A8): half tiles for B <= 2, whole tiles for B = 4 (v5's
 * default shapes; fewer template instances) */
template <int W, bool Q3, bool HALF, bool A8>
static cudaError_t launch_fused_q(const fargs &a, int B, int nw, size_t smem, spqr_cuda_ctx *c, int pdl) {
    if (A8) {
        if (HALF) return B == 1 ? launch_fused_b<W, Q3, 1, true, true>(a, nw, smem, c, pdl) : launch_fused_b<W, Q3, 2, true, true>(a, nw, smem, c, pdl);
        return launch_fused_b<W, Q3, 4, false, true>(a, nw, smem, c, pdl);
    }
    return B == 1 ? launch_fused_b<W, Q3, 1, HALF, false>(a, nw, smem, c, pdl) : B == 2 ? launch_fused_b<W, Q3, 2, HALF, false>(a, nw, smem, c, pdl)
                                                                                         : launch_fused_b<W, Q3, 4, HALF, false>(a, nw, smem, c, pdl);
}

template <bool HALF, bool A8>
static cudaError_t launch_fused_h(const spqr_cuda_qmatrix *m, const fargs &a, int B, int nw, size_t smem, spqr_cuda_ctx *c, int pdl) {
    switch (m->wbits * 2 + m->f_q3) {
    case 2 * 2 + 1: return launch_fused_q<2, true, HALF, A8>(a, B, nw, smem, c, pdl);
    case 2 * 2: return launch_fused_q<2, false, HALF, A8>(a, B, nw, smem, c, pdl);
    case 3 * 2 + 1: return launch_fused_q<3, true, HALF, A8>(a, B, nw, smem, c, pdl);
    case 3 * 2: return launch_fused_q<3, false, HALF, A8>(a, B, nw, smem, c, pdl);
    case 4 * 2 + 1: return launch_fused_q<4, true, HALF, A8>(a, B, nw, smem, c, pdl);
    default: return launch_fused_q<4, false, HALF, A8>(a, B, nw, smem, c, pdl);
    }
}

/* Warps per block and work-unit size for a matrix and pass width B: the whole-tile kernel with
 * min(16, tiles) warps (c->fused_mode 1), or half tiles (mode 2) with the most warps, 32 down to 4,
 * that keeps every block resident in one wave on `sms` multiprocessors (64 registers: 32 warps per
 * SM) and gives every warp at least one half tile (force_nw > 0: that width, a lab knob; run 17 found
 * the default best). Mode 0 (default): half tiles for B <= 2, whole tiles for B = 4 (lab run 9: half
 * tiles 6-23% faster at n = 1, up to 20% slower at n = 4). */
static void fused_shape(const spqr_cuda_qmatrix *m, int mode, int B, int sms, int force_nw, int *nw, int *half) {
    if (mode == 1 || (mode == 0 && B > 2)) {
        *half = 0;
        *nw = m->nct < 16 ? (int)m->nct : 16;
        return;
    }
    *half = 1;
    int w = 32;
    while (w > 4 && ((uint64_t)m->nrt * w > (uint64_t)sms * 32 || w > 2 * (int)m->nct)) w /= 2;
    *nw = force_nw > 0 && force_nw <= 32 && force_nw <= 2 * (int)m->nct ? force_nw : w;
}

static cudaError_t launch_prep(const fargs &a, int B, bool a8, float *img, cudaStream_t st, int pdl) {
    const spqr_launch l(dim3((unsigned)a.nct), dim3(256), 0, st, pdl);
    const cudaLaunchConfig_t *cfg = &l.cfg;
    if (a8) return B == 1 ? cudaLaunchKernelEx(cfg, k_prep_x<1, true>, a, img) : B == 2 ? cudaLaunchKernelEx(cfg, k_prep_x<2, true>, a, img)
                                                                                : cudaLaunchKernelEx(cfg, k_prep_x<4, true>, a, img);
    return B == 1 ? cudaLaunchKernelEx(cfg, k_prep_x<1, false>, a, img) : B == 2 ? cudaLaunchKernelEx(cfg, k_prep_x<2, false>, a, img)
                                                                         : cudaLaunchKernelEx(cfg, k_prep_x<4, false>, a, img);
}

/* x: fp16 or fp32 (xf32) [n][cols]. Passes of up to 4 activations (fewer when shared memory is short).
 * a8: v9 on the act8 code words (m->a8codes), in v5's default shapes. prep: the x arrays of each
 * pass by one k_prep_x launch into the workspace, copied by every block (else gathered by each). */
spqr_status spqr_cuda_run_fused(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const void *x, int xf32, int n, float *y, int a8, spqr_error *err) {
    const int sms = c->sms > 0 ? c->sms : 132, mode = a8 ? 0 : c->fused_mode;
    int nw, half, Bmax = 4;
    auto shape = [&](int B) { fused_shape(m, mode, B, sms, c->fused_nw, &nw, &half); return fused_smem(m, B, nw, a8 != 0); };
    while (Bmax > 1 && shape(Bmax) > 227 * 1024) Bmax /= 2;
    if (shape(Bmax) > 227 * 1024) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: %u columns exceed the fused kernel's shared memory", m->cols);
    /* x prepared once per product (k_prep_x) where the blocks' own gathers would add up to more: by
     * default (xprep < 0) when row tiles x columns >= 2^18 (the 7B shapes; not evalmodel's layers) */
    const int prep = c->xprep < 0 ? (uint64_t)m->nrt * m->cols >= (1u << 18) : c->xprep;
    /* spqr_cuda_ctx_reuse_x: the image in xbuf serves again when it was prepared from this x for the
     * same permutation and one pass of the same width */
    const int reuse = c->reuse_next && prep && n <= Bmax && c->xlast.valid && c->xlast.x == x && c->xlast.perm_key == m->perm_key &&
                      c->xlast.cols == m->cols && c->xlast.n == n && c->xlast.a8 == (a8 != 0) && c->xlast.xf32 == xf32;
    c->reuse_next = 0;
    c->xlast_kept = reuse;
    if (prep && !reuse) {
        c->xlast.valid = 0;
        spqr_status st = spqr_cuda_buf_reserve(c, &c->xbuf, &c->xbuf_size, fused_img(m, Bmax, a8 != 0), err);
        if (st) return st;
    }
    for (int b0 = 0; b0 < n; b0 += Bmax) {
        const int nb = n - b0 < Bmax ? n - b0 : Bmax, B = nb > 2 ? 4 : nb;
        fargs a = {a8 ? m->a8codes : m->fcodes, m->fstat, m->fqq, m->fperm, m->forp, m->focol, m->fodelta, x, y, NULL,
                   (int)m->rows, (int)m->cols, (int)m->nct, n, b0, (int)m->qq_gs, (int)m->row_blocks, xf32, 0, c->trace};
        const size_t smem = shape(B); /* sets nw, half for this pass width */
        /* PDL only when a block fills its SM (32 warps): the next kernel's blocks then start as this
         * one's finish; with co-resident blocks it was measured slower, whether the next kernel was let
         * in at the start or after the tile loop (bench/cuda/README.md, runs 10-11) */
        const int pdl = c->pdl && nw == 32;
        if (prep) {
            a.xprep = (const uint4 *)c->xbuf;
            a.prep_n = (int)(fused_img(m, B, a8 != 0) / 16);
            if (!reuse) {
                CK(launch_prep(a, B, a8 != 0, (float *)c->xbuf, c->stream, c->pdl), "x prep kernel");
                if (n <= Bmax) { /* one pass: its image stays in xbuf */
                    c->xlast.x = x; c->xlast.perm_key = m->perm_key; c->xlast.cols = m->cols; c->xlast.n = n;
                    c->xlast.a8 = a8 != 0; c->xlast.xf32 = xf32; c->xlast.valid = c->xlast_kept = 1;
                }
            }
        }
        cudaError_t e = a8 ? (half ? launch_fused_h<true, true>(m, a, B, nw, smem, c, pdl) : launch_fused_h<false, true>(m, a, B, nw, smem, c, pdl))
                           : half ? launch_fused_h<true, false>(m, a, B, nw, smem, c, pdl) : launch_fused_h<false, false>(m, a, B, nw, smem, c, pdl);
        CK(e, "fused kernel");
    }
    return SPQR_OK;
}

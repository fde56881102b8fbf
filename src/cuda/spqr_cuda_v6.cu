/* spqr_cuda_v6.cu — v6: the split-K fused GEMV (spqr_cuda_v6.cuh) on the fused device layout. */
#include "cuda/spqr_cuda_v6.cuh"

#include <stdlib.h>

#define V6_MAXW 8 /* warps per block at most */

struct v6args {
    const uint4 *codes;
    const uint32_t *stat;
    const uint2 *qq;
    const int32_t *perm;
    const uint32_t *orp;
    const uint16_t *ocolx;
    const float *od;
    const void *x;
    float *y, *part;
    unsigned *cnt;
    int rows, cols, nct, n, b0, qq_gs, xf32, nchunk, prow;
};

__device__ __forceinline__ uint32_t v6_word(const uint4 *cw, int wi) {
    const uint4 &v = cw[wi >> 2];
    return (wi & 3) == 0 ? v.x : (wi & 3) == 1 ? v.y : (wi & 3) == 2 ? v.z : v.w;
}

/* (1024 + c0, 1024 + c1) of pair t of packet p, as two floats (the v5 packet format). */
template <int W>
__device__ __forceinline__ float2 v6_pair(const uint4 *cw, int p, int t) {
    constexpr int F = 16 / W;
    uint32_t b;
    if (W == 3 && t == 15) {
        b = ((v6_word(cw, p * 3) >> 15) & 0x10001u) | ((v6_word(cw, p * 3 + 1) >> 14) & 0x20002u) |
            ((v6_word(cw, p * 3 + 2) >> 13) & 0x40004u) | 0x64006400u;
    } else {
        b = ((v6_word(cw, p * W + t / F) >> (W * (t % F))) & (((1u << W) - 1) * 0x10001u)) | 0x64006400u;
    }
    return __half22float2(*reinterpret_cast<__half2 *>(&b));
}

__device__ __forceinline__ float v6_ldx(const v6args &a, int b, int j) {
    if (a.xf32) return __ldg((const float *)a.x + (size_t)(a.b0 + b) * a.cols + j);
    return __half2float(__ldg((const __half *)a.x + (size_t)(a.b0 + b) * a.cols + j));
}

/* small integer k (< 2^23) to float without I2F: one LOP3 + one FADD */
__device__ __forceinline__ float v6_i2f(uint32_t k) { return __int_as_float(0x4B000000u | k) - 8388608.f; }

/* Block (cz, rt): rows 32 rt .. +31 (lane = row), column tiles cz*nw .. +nw-1 (warp w = tile cz*nw + w).
 * Shared memory: xs [nw*256][B] (the chunk's permuted x), xg [nw*16][B] (group sums),
 * qs [nw][32] float4 (per warp: (ss, -ss*sz, zs, -zs*zz) of group lane&15 for half-warp lane>>4),
 * red [nw][B][32]. */
template <int W, bool Q3, int B>
__global__ void __launch_bounds__(256, (W == 4 || B > 1) ? 3 : 4) k_v6(v6args a) {
    constexpr int NU = 2 * W, NS = Q3 ? 3 : 4;
    extern __shared__ float4 smem4[];
    const int nw = blockDim.x >> 5, lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int cz = blockIdx.x, rt = blockIdx.y, r = rt * 32 + lane;
    const int ccols = nw * 256, c0 = cz * ccols;
    float *xs = (float *)smem4, *xg = xs + (size_t)ccols * B;
    float4 *qs = (float4 *)(xg + (size_t)(ccols / 16) * B);
    float *red = (float *)(qs + nw * 32);
    const int ct = cz * nw + w;
    const bool act = ct < a.nct;

    /* 1. the tile's code, statistics and qq loads, and this row's outlier range, before anything else */
    uint4 cw[NU];
    uint32_t sw[NS];
    uint2 qv = make_uint2(0u, 0u);
    if (act) {
        const uint4 *cp = a.codes + ((size_t)rt * a.nct + ct) * NU * 32 + lane;
#pragma unroll
        for (int i = 0; i < NU; i++) cw[i] = __ldg(cp + i * 32);
        const uint32_t *sp = a.stat + ((size_t)rt * a.nct + ct) * NS * 32 + lane;
#pragma unroll
        for (int k = 0; k < NS; k++) sw[k] = __ldg(sp + k * 32);
        int rq = rt * 32 + (lane & 16);
        rq = rq < a.rows ? rq : a.rows - 1;
        qv = __ldg(a.qq + (size_t)(rq / a.qq_gs) * (a.nct * 16) + ct * 16 + (lane & 15));
    } else {
#pragma unroll
        for (int i = 0; i < NU; i++) cw[i] = make_uint4(0u, 0u, 0u, 0u);
#pragma unroll
        for (int k = 0; k < NS; k++) sw[k] = 0u;
    }
    uint32_t ob = 0, oe = 0;
    if (r < a.rows) {
        ob = __ldg(a.orp + r);
        oe = __ldg(a.orp + r + 1);
    }

    /* 2. gather the chunk's x (stored order) and its per-group sums; 16 consecutive j in 16 aligned lanes */
    constexpr int U = B == 4 ? 4 : 8;
    for (int j0 = threadIdx.x; j0 < ccols; j0 += U * blockDim.x) {
        int pj[U];
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + u * blockDim.x, jg = c0 + j;
            pj[u] = (j < ccols && jg < a.cols) ? (a.perm ? __ldg(a.perm + jg) : jg) : -1;
        }
        float v[U][B];
#pragma unroll
        for (int u = 0; u < U; u++)
#pragma unroll
            for (int b = 0; b < B; b++) v[u][b] = (pj[u] >= 0 && a.b0 + b < a.n) ? v6_ldx(a, b, pj[u]) : 0.f;
#pragma unroll
        for (int u = 0; u < U; u++) {
            const int j = j0 + u * blockDim.x;
            if (j >= ccols) break; /* warp-uniform */
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
    /* second-level statistics of group lane&15 of this half-warp's row block */
    {
        const float ss = __half2float(__ushort_as_half((unsigned short)(qv.x & 0xffff)));
        const float nsz = -ss * __half2float(__ushort_as_half((unsigned short)(qv.x >> 16))); /* exact: 11 x 11 bits */
        const float zs = __half2float(__ushort_as_half((unsigned short)(qv.y & 0xffff)));
        const float nzz = -zs * __half2float(__ushort_as_half((unsigned short)(qv.y >> 16)));
        qs[w * 32 + lane] = make_float4(ss, nsz, zs, nzz);
    }
    /* first outlier of this (row, warp): its column and delta in flight during the tile */
    const uint32_t ostep = (uint32_t)(a.nchunk * nw);
    uint32_t kk = ob + (uint32_t)(cz * nw + w);
    int oc0 = -1;
    float od0 = 0.f;
    if (kk < oe) {
        oc0 = __ldg(a.ocolx + kk);
        od0 = __ldg(a.od + kk);
    }
    __syncthreads();

    /* 3. the tile: per (row, group) A = Σ (1024 + c) x, then acc += s (A − (1024 + z) Σx) */
    float acc[B], xo[B];
#pragma unroll
    for (int b = 0; b < B; b++) acc[b] = 0.f, xo[b] = 0.f;
    if (act) {
        const float4 *x4 = (const float4 *)(xs + (size_t)w * 256 * B);
        const float *xgt = xg + (size_t)w * 16 * B;
        const float4 *qw = qs + w * 32 + (lane & 16);
#pragma unroll
        for (int i = 0; i < 16; i++) { /* group i = packet i/2, pairs 8*(i&1) .. +7 */
            if (i == 8 && oc0 >= 0) {
#pragma unroll
                for (int b = 0; b < B; b++) xo[b] = (a.b0 + b < a.n) ? v6_ldx(a, b, oc0) : 0.f;
            }
            const float4 q = qw[i];
            uint32_t sc, zc;
            if (Q3) {
                uint32_t f;
                if (i < 15) f = (sw[i / 5] >> (6 * (i % 5))) & 63u;
                else f = (sw[0] >> 30) | ((sw[1] >> 28) & 12u) | ((sw[2] >> 26) & 48u);
                sc = f & 7u;
                zc = f >> 3;
            } else {
                const uint32_t f = (sw[i / 4] >> (8 * (i % 4))) & 255u;
                sc = f & 15u;
                zc = f >> 4;
            }
            const float s = fmaf(v6_i2f(sc), q.x, q.y), z = fmaf(v6_i2f(zc), q.z, q.w);
            const float kz = z + 1024.f;
            float A[B];
#pragma unroll
            for (int b = 0; b < B; b++) A[b] = 0.f;
#pragma unroll
            for (int tt = 0; tt < 8; tt++) {
                const int t = 8 * (i & 1) + tt;
                const float2 f = v6_pair<W>(cw, i >> 1, t);
                if (B == 1) {
                    const float4 xv = x4[(i * 16 + 2 * tt) / 4];
                    if (tt & 1) A[0] = fmaf(f.y, xv.w, fmaf(f.x, xv.z, A[0]));
                    else A[0] = fmaf(f.y, xv.y, fmaf(f.x, xv.x, A[0]));
                } else if (B == 2) {
                    const float4 xv = x4[i * 8 + tt];
                    A[0] = fmaf(f.y, xv.z, fmaf(f.x, xv.x, A[0]));
                    A[1 % B] = fmaf(f.y, xv.w, fmaf(f.x, xv.y, A[1 % B]));
                } else {
                    const float4 x0 = x4[i * 16 + 2 * tt], x1 = x4[i * 16 + 2 * tt + 1];
                    A[0] = fmaf(f.y, x1.x, fmaf(f.x, x0.x, A[0]));
                    A[1 % B] = fmaf(f.y, x1.y, fmaf(f.x, x0.y, A[1 % B]));
                    A[2 % B] = fmaf(f.y, x1.z, fmaf(f.x, x0.z, A[2 % B]));
                    A[3 % B] = fmaf(f.y, x1.w, fmaf(f.x, x0.w, A[3 % B]));
                }
            }
#pragma unroll
            for (int b = 0; b < B; b++) acc[b] = fmaf(s, fmaf(-kz, xgt[i * B + b], A[b]), acc[b]);
        }
    } else if (oc0 >= 0) {
#pragma unroll
        for (int b = 0; b < B; b++) xo[b] = (a.b0 + b < a.n) ? v6_ldx(a, b, oc0) : 0.f;
    }

    /* 4. outliers: this (row, warp)'s entries ob + cz*nw + w, + nchunk*nw, ...; x from global (L1/L2) */
    if (oc0 >= 0) {
#pragma unroll
        for (int b = 0; b < B; b++) acc[b] = fmaf(od0, xo[b], acc[b]);
        for (kk += ostep; kk < oe; kk += ostep) {
            const int c = __ldg(a.ocolx + kk);
            const float d = __ldg(a.od + kk);
#pragma unroll
            for (int b = 0; b < B; b++) acc[b] = fmaf(d, (a.b0 + b < a.n) ? v6_ldx(a, b, c) : 0.f, acc[b]);
        }
    }

    /* 5. the block's sum over its warps, then across the row tile's chunks */
#pragma unroll
    for (int b = 0; b < B; b++) red[(w * B + b) * 32 + lane] = acc[b];
    __syncthreads();
    if (w != 0) return;
    float v[B];
#pragma unroll
    for (int b = 0; b < B; b++) {
        float t = 0.f;
        for (int k = 0; k < nw; k++) t += red[(k * B + b) * 32 + lane];
        v[b] = t;
    }
    if (a.nchunk == 1) {
#pragma unroll
        for (int b = 0; b < B; b++)
            if (r < a.rows && a.b0 + b < a.n) a.y[(size_t)(a.b0 + b) * a.rows + r] = v[b];
        return;
    }
#pragma unroll
    for (int b = 0; b < B; b++) __stcg(a.part + ((size_t)cz * 4 + b) * a.prow + r, v[b]);
    __threadfence();
    __syncwarp();
    unsigned old = 0;
    if (lane == 0) old = atomicAdd(a.cnt + rt, 1u);
    old = __shfl_sync(0xffffffffu, old, 0);
    if (old != (unsigned)a.nchunk - 1) return;
    __threadfence();
#pragma unroll
    for (int b = 0; b < B; b++) {
        float t = 0.f;
        for (int k = 0; k < a.nchunk; k++) t += __ldcg(a.part + ((size_t)k * 4 + b) * a.prow + r);
        if (r < a.rows && a.b0 + b < a.n) a.y[(size_t)(a.b0 + b) * a.rows + r] = t;
    }
    if (lane == 0) a.cnt[rt] = 0u; /* ready for the next launch */
}

__global__ void k_v6_ocolx(const uint16_t *focol, const int32_t *perm, uint64_t n, uint16_t *out) {
    for (uint64_t k = blockIdx.x * (uint64_t)blockDim.x + threadIdx.x; k < n; k += (uint64_t)gridDim.x * blockDim.x)
        out[k] = perm ? (uint16_t)perm[focol[k]] : focol[k];
}

int spqr_cuda_v6_supported(const spqr_cuda_qmatrix *m) { return m && m->fused && m->cols <= 65536; }

spqr_status spqr_cuda_v6_new(const spqr_cuda_qmatrix *m, int wpb, spqr_cuda_v6 **out, spqr_error *err) {
    *out = NULL;
    if (!spqr_cuda_v6_supported(m)) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: v6 needs the fused layout");
    spqr_cuda_v6 *p = (spqr_cuda_v6 *)calloc(1, sizeof *p);
    if (!p) return spqr_set_err(err, SPQR_E_NOMEM, "cuda: v6 state");
    p->m = m;
    p->wpb = wpb > 0 ? (wpb < V6_MAXW ? wpb : V6_MAXW) : 4;
    if ((uint32_t)p->wpb > m->nct) p->wpb = (int)m->nct;
    p->nchunk = (int)((m->nct + p->wpb - 1) / p->wpb);
    p->bytes = m->bytes_fused;
    cudaError_t e = cudaMalloc(&p->ocolx, m->n_out * 2 + 16);
    if (e == cudaSuccess) e = cudaMalloc(&p->part, (size_t)p->nchunk * 4 * m->nrt * 32 * sizeof(float));
    if (e == cudaSuccess) e = cudaMalloc(&p->cnt, (size_t)m->nrt * sizeof(unsigned));
    if (e == cudaSuccess) e = cudaMemset(p->cnt, 0, (size_t)m->nrt * sizeof(unsigned));
    if (e == cudaSuccess && m->n_out) {
        k_v6_ocolx<<<(unsigned)((m->n_out + 255) / 256 < 4096 ? (m->n_out + 255) / 256 : 4096), 256>>>(m->focol, m->fperm, m->n_out, p->ocolx);
        e = cudaGetLastError();
    }
    if (e == cudaSuccess) e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        spqr_cuda_v6_free(p);
        return spqr_set_err(err, SPQR_E_IO, "cuda: v6 state: %s", cudaGetErrorString(e));
    }
    *out = p;
    return SPQR_OK;
}

void spqr_cuda_v6_free(spqr_cuda_v6 *p) {
    if (!p) return;
    cudaFree(p->ocolx);
    cudaFree(p->part);
    cudaFree(p->cnt);
    free(p);
}

static size_t v6_smem(int nw, int B) { return ((size_t)nw * 256 * B + (size_t)nw * 16 * B + (size_t)nw * 32 * 4 + (size_t)nw * B * 32) * sizeof(float); }

template <int W, bool Q3, int B>
static cudaError_t v6_launch_b(const v6args &a, int nw, int nrt, spqr_cuda_ctx *c) {
    const cudaError_t e = spqr_cuda_smem_optin(c, (const void *)k_v6<W, Q3, B>, (int)v6_smem(V6_MAXW, 4));
    if (e != cudaSuccess) return e;
    k_v6<W, Q3, B><<<dim3((unsigned)a.nchunk, (unsigned)nrt), nw * 32, v6_smem(nw, B), c->stream>>>(a);
    return cudaGetLastError();
}

template <int W, bool Q3>
static cudaError_t v6_launch_q(const v6args &a, int B, int nw, int nrt, spqr_cuda_ctx *c) {
    return B == 1 ? v6_launch_b<W, Q3, 1>(a, nw, nrt, c) : B == 2 ? v6_launch_b<W, Q3, 2>(a, nw, nrt, c) : v6_launch_b<W, Q3, 4>(a, nw, nrt, c);
}

spqr_status spqr_cuda_v6_matmul(spqr_cuda_ctx *c, spqr_cuda_v6 *p, const void *x, int xf32, int n, float *y, spqr_error *err) {
    const spqr_cuda_qmatrix *m = p->m;
    if (n < 1) return spqr_set_err(err, SPQR_E_RANGE, "cuda: n = %d", n);
    if (m->nrt > 65535) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: v6: %u rows", m->rows);
    for (int b0 = 0; b0 < n; b0 += 4) {
        const int nb = n - b0 < 4 ? n - b0 : 4, B = nb > 2 ? 4 : nb;
        v6args a = {m->fcodes, m->fstat, m->fqq, m->fperm, m->forp, p->ocolx, m->fodelta, x, y, p->part, p->cnt,
                    (int)m->rows, (int)m->cols, (int)m->nct, n, b0, (int)m->qq_gs, xf32, p->nchunk, (int)(m->nrt * 32)};
        cudaError_t e;
        switch (m->wbits * 2 + m->f_q3) {
        case 2 * 2 + 1: e = v6_launch_q<2, true>(a, B, p->wpb, (int)m->nrt, c); break;
        case 2 * 2: e = v6_launch_q<2, false>(a, B, p->wpb, (int)m->nrt, c); break;
        case 3 * 2 + 1: e = v6_launch_q<3, true>(a, B, p->wpb, (int)m->nrt, c); break;
        case 3 * 2: e = v6_launch_q<3, false>(a, B, p->wpb, (int)m->nrt, c); break;
        case 4 * 2 + 1: e = v6_launch_q<4, true>(a, B, p->wpb, (int)m->nrt, c); break;
        default: e = v6_launch_q<4, false>(a, B, p->wpb, (int)m->nrt, c); break;
        }
        CK(e, "v6 kernel");
    }
    return SPQR_OK;
}

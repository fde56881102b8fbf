/*
 * spqr_cuda_mma.cu — v7 (SPQR_CUDA_MMA): quantized GEMV/GEMM on the tensor cores, over the layout of
 * cuda/mma_layout.h (which describes the fragments, the k permutation and the dequantization).
 *
 * Grid (nrt, S), 128 threads. Block (rt, ks): rows 32 rt .. +31, column units [ks·ups, +ups).
 *   1. each warp issues the loads of its first unit (codes, fields, qq), then the block fills
 *      xs[b][j] (fp16, this pass's nb ≤ 64 activations, stored column order): gathered through the
 *      act-order permutation from x (nb ≤ 8, small matrices) or copied from a pre-gathered fp16
 *      buffer (nb > 8, or rows/32 · cols ≥ 2^18);
 *   2. warp w walks units w, w + 4, ... (the next unit's loads in flight during the current one):
 *      per field (chunk, m-tile, row) the reference decoder's s and z, turned into fp16 (k1, hs, hk);
 *      per k-step: B fragments (LDS.64 per n-tile), four A registers per m-tile (one LOP3/shift,
 *      HSUB2, HFMA2 per pair), one mma.sync m16n8k16 per (m-tile, n-tile); fp32 accumulators;
 *   3. threads (row = tid % 32, batch columns ≡ tid / 32 mod 4) add the row's outliers of the
 *      sub-slice, δ·xs[b][col], in column order;
 *   4. the warps' fragments are summed in warp order through shared memory; with S = 1 the block
 *      writes y, else its partial sums, and the last block of the row tile to finish (a counter per
 *      row tile, reset by that block) adds the S partials in slice order and writes y.
 * When the activations of a pass do not fit in shared memory at once, steps 1–3 repeat over
 * sub-slices of `su` units; the accumulators carry over.
 * Also here: v11 (k_mma_wide, blocks of 4 row tiles sharing x; a lab variant), v12 (the layout
 * dequantized to fp16 for cuBLAS: batches above 16) and v8 (k_gsum, the group-sum layout).
 */
#include "cuda/mma_layout.h"
#include "cuda/spqr_cuda_internal.cuh"

#define MMA_XS_MAX (96 * 1024) /* shared memory for activations per block */

struct mma_args {
    const uint4 *codes;
    const uint32_t *fields;
    const uint2 *qq;
    const uint32_t *optr;
    const uint16_t *ocol;
    const __half *odelta;
    const int32_t *perm;
    const void *x;     /* [n][cols] original order (gather mode), fp16 or fp32 */
    const __half *xg;  /* [nb][ldg] stored order, this pass's rows (copy mode), or NULL */
    float *y, *part;
    unsigned *cnt;
    int rows, cols, nrt, nku, S, ups, su, gpad, gshift, rb0_div, n, b0, nb, rs, ldg, xf32;
};

/* One unit's loads for one lane. */
template <int W, bool SP>
struct mma_unit {
    uint4 c[W];
    uint2 f;        /* SpQR fields */
    uint2 q[2][2];  /* SpQR qq [kc][mt] */
    uint32_t g[8];  /* GPTQ (scale | zero << 16) per field */
};

template <int W, bool SP>
__device__ __forceinline__ void mma_load(const mma_args &a, int rt, int u, int lane, const int rb[2], mma_unit<W, SP> &d) {
    const size_t unit = (size_t)rt * a.nku + u;
    const int t = lane & 3, gl = lane >> 2;
#pragma unroll
    for (int i = 0; i < W; i++) d.c[i] = __ldg(a.codes + (unit * W + i) * 32 + lane);
    if (SP) {
        d.f = __ldg((const uint2 *)a.fields + unit * 32 + lane);
#pragma unroll
        for (int kc = 0; kc < 2; kc++)
#pragma unroll
            for (int mt = 0; mt < 2; mt++) d.q[kc][mt] = __ldg(a.qq + (size_t)rb[mt] * a.gpad + ((u * 128 + kc * 64 + 16 * t) >> a.gshift));
    } else {
#pragma unroll
        for (int fi = 0; fi < 8; fi++) {
            const int kc = fi >> 2, mt = (fi >> 1) & 1, h = fi & 1, row = rt * 32 + mt * 16 + h * 8 + gl;
            d.g[fi] = __ldg(a.fields + (size_t)row * a.gpad + ((u * 128 + kc * 64 + 16 * t) >> a.gshift));
        }
    }
}

__device__ __forceinline__ uint32_t h2u(__half2 h) { return *reinterpret_cast<uint32_t *>(&h); }
__device__ __forceinline__ __half2 u2h(uint32_t u) { return *reinterpret_cast<__half2 *>(&u); }


/* The lane's B-operand rows in xs: activation nt·8 + gl of n-tile nt, clamped to the pass's last one
 * (an MMA's output columns are independent, and those past nb are never stored), with the lane's k
 * offset 16 t: fixed for the kernel, so each B load is one LDS at a constant offset from it. */
template <int NT>
__device__ __forceinline__ void mma_x_rows(const mma_args &a, int lane, int (&xo)[NT]) {
#pragma unroll
    for (int nt = 0; nt < NT; nt++) xo[nt] = min(nt * 8 + (lane >> 2), a.nb - 1) * a.rs + 16 * (lane & 3);
}

/* A lane's unit ready to dequantize: its 4W code words, and its 8 segment statistics as the fp16
 * constants of cuda/mma_layout.h, weight = ((1024 + c) − K1[f])·HS[f] + HK[f] for field
 * f = (kc·2 + mt)·2 + h. */
template <int W, bool SP>
__device__ __forceinline__ void mma_unit_decode(const mma_unit<W, SP> &d, uint32_t (&w)[4 * W], __half2 (&K1)[8], __half2 (&HS)[8], __half2 (&HK)[8]) {
#pragma unroll
    for (int i = 0; i < W; i++) { w[4 * i] = d.c[i].x; w[4 * i + 1] = d.c[i].y; w[4 * i + 2] = d.c[i].z; w[4 * i + 3] = d.c[i].w; }
#pragma unroll
    for (int fi = 0; fi < 8; fi++) {
        float s, z;
        if (SP) {
            const uint32_t byte = ((fi < 4 ? d.f.x : d.f.y) >> (8 * (fi & 3))) & 0xffu;
            const uint2 q = d.q[fi >> 2][(fi >> 1) & 1];
            const float ss = h2f_lo(q.x), sz = h2f_hi(q.x), zs = h2f_lo(q.y), zz = h2f_hi(q.y);
            /* codes to float by the 2^23 magic; s = ss (sc − sz), z = zs (zc − zz) as the reference decoder */
            const float sc = __uint_as_float(0x4B000000u | (byte & 15u)) - 8388608.f, zc = __uint_as_float(0x4B000000u | (byte >> 4)) - 8388608.f;
            s = fmaf(sc, ss, -ss * sz);
            z = fmaf(zc, zs, -zs * zz);
        } else {
            s = h2f_lo(d.g[fi]);
            z = (float)(d.g[fi] >> 16);
        }
        const float zr = fminf(fmaxf((z + 12582912.f) - 12582912.f, -512.f), 512.f); /* rint(z) for |z| < 2^22 */
        K1[fi] = __float2half2_rn(1024.f + zr);
        HS[fi] = __float2half2_rn(s);
        HK[fi] = __float2half2_rn(-s * (z - zr));
    }
}

/* The unit's product into acc. xs: this sub-slice's activations, the unit at column xoff; xo: mma_x_rows. */
template <int W, bool SP, int NT>
__device__ __forceinline__ void mma_unit_compute(const mma_args &a, const mma_unit<W, SP> &d, const __half *xs, const int (&xo)[NT], int xoff,
                                                 float (&acc)[2][NT][4]) {
    uint32_t w[4 * W];
    __half2 K1[8], HS[8], HK[8];
    mma_unit_decode<W, SP>(d, w, K1, HS, HK);
#pragma unroll
    for (int kc = 0; kc < 2; kc++)
#pragma unroll
        for (int s = 0; s < 4; s++) {
            uint32_t B[NT][2];
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const uint2 v = *reinterpret_cast<const uint2 *>(xs + xoff + xo[nt] + kc * 64 + 4 * s);
                B[nt][0] = v.x;
                B[nt][1] = v.y;
            }
#pragma unroll
            for (int mt = 0; mt < 2; mt++) {
                const int f0 = (kc * 2 + mt) * 2, q0 = f0 * 8; /* field and first pair of row gl; row gl + 8: +1, +8 */
                uint32_t A[4];
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    const int h = i & 1, p = 2 * s + (i >> 1), f = f0 + h;
                    const __half2 m = u2h(spqr_mma_pair(w, W, q0 + h * 8 + p));
                    A[i] = h2u(__hfma2(__hsub2(m, K1[f]), HS[f], HK[f]));
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) mma16816(acc[mt][nt], A[0], A[1], A[2], A[3], B[nt][0], B[nt][1]);
            }
        }
}

template <int NT>
__device__ __forceinline__ void mma_acc_zero(float (&acc)[2][NT][4]) {
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) acc[mt][nt][e] = 0.f;
}

/* A warp's accumulators into (ADD: added to) tile[b][row of the row tile], b < nb: fragment element e
 * of (mt, nt) is row mt·16 + gl + 8 (e >> 1), activation nt·8 + 2t + (e & 1). */
template <int NT, bool ADD>
__device__ __forceinline__ void mma_acc_store(const float (&acc)[2][NT][4], int lane, int nb, float *tile) {
    const int t = lane & 3, gl = lane >> 2;
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                const int b = nt * 8 + 2 * t + (e & 1), r = mt * 16 + gl + 8 * (e >> 1);
                if (b < nb) {
                    if (ADD) tile[b * 32 + r] += acc[mt][nt][e];
                    else tile[b * 32 + r] = acc[mt][nt][e];
                }
            }
}

/* Unit u of the sub-slice starting at unit su0 (held in cur) into acc, with the loads of the warp's next
 * unit, u + stride, issued first (into cur afterwards) when it is before su1. */
template <int W, bool SP, int NT>
__device__ __forceinline__ void mma_step(const mma_args &a, int rt, int u, int su0, int su1, int stride, int lane, const int (&rb)[2], const __half *xs,
                                         const int (&xo)[NT], mma_unit<W, SP> &cur, float (&acc)[2][NT][4]) {
    mma_unit<W, SP> nxt;
    const bool more = u + stride < su1;
    if (more) mma_load<W, SP>(a, rt, u + stride, lane, rb, nxt);
    mma_unit_compute<W, SP, NT>(a, cur, xs, xo, (u - su0) * 128, acc);
    if (more) cur = nxt;
}

/* xs[b][0 .. scols) for the pass's nb rows: stored columns c0 .. c0 + scols, zero past cols; with
 * xsum (v8), also xsum[b·(8 su) + g] = Σ of the 16 fp16 values of group g (fp32). Every load of
 * a thread is issued before its first store (cp.async in copy mode). */
__device__ __forceinline__ void mma_fill_x(const mma_args &a, __half *xs, int c0, int scols, float *xsum = nullptr) {
    if (a.xg) { /* pre-gathered: 8-byte asynchronous copies (rows of xs are 8-byte aligned) */
        const int nv = scols / 4;
        for (int b = 0; b < a.nb; b++)
            for (int i = threadIdx.x; i < nv; i += blockDim.x) {
                const unsigned dst = (unsigned)__cvta_generic_to_shared(xs + (size_t)b * a.rs + 4 * i);
                asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(a.xg + (size_t)b * a.ldg + c0 + 4 * i));
            }
        asm volatile("cp.async.wait_all;\n" ::);
        if (xsum) {
            __syncthreads();
            const int ng = scols / 16;
            for (int i = threadIdx.x; i < a.nb * ng; i += blockDim.x) {
                const __half *p = xs + (size_t)(i / ng) * a.rs + 16 * (i % ng);
                float sx = 0.f;
#pragma unroll
                for (int c = 0; c < 16; c++) sx += __half2float(p[c]);
                xsum[(size_t)(i / ng) * (a.su * 8) + i % ng] = sx;
            }
        }
        return;
    }
    constexpr int U = 4; /* columns per thread and round; gather mode has nb <= 8 */
    const float *xf = (const float *)a.x;
    const __half *xh = (const __half *)a.x;
    for (int base = 0; base < scols; base += U * 128) {
        int src[U];
#pragma unroll
        for (int e = 0; e < U; e++) {
            const int jl = base + e * 128 + threadIdx.x, j = c0 + jl;
            src[e] = jl < scols && j < a.cols ? (a.perm ? __ldg(a.perm + j) : j) : -1;
        }
        float v[8][U];
#pragma unroll
        for (int b = 0; b < 8; b++)
            if (b < a.nb) {
                const size_t ro = (size_t)(a.b0 + b) * a.cols;
#pragma unroll
                for (int e = 0; e < U; e++) v[b][e] = src[e] < 0 ? 0.f : a.xf32 ? __ldg(xf + ro + src[e]) : __half2float(__ldg(xh + ro + src[e]));
            }
#pragma unroll
        for (int b = 0; b < 8; b++)
            if (b < a.nb)
#pragma unroll
                for (int e = 0; e < U; e++) {
                    const int jl = base + e * 128 + threadIdx.x;
                    if (jl >= scols) continue; /* warp-uniform: scols is a multiple of 128 */
                    const __half h = __float2half_rn(v[b][e]);
                    xs[(size_t)b * a.rs + jl] = h;
                    if (xsum) { /* 16 consecutive threads = one group */
                        float sx = __half2float(h);
                        sx += __shfl_xor_sync(0xffffffffu, sx, 8);
                        sx += __shfl_xor_sync(0xffffffffu, sx, 4);
                        sx += __shfl_xor_sync(0xffffffffu, sx, 2);
                        sx += __shfl_xor_sync(0xffffffffu, sx, 1);
                        if ((threadIdx.x & 15) == 0) xsum[(size_t)b * (a.su * 8) + jl / 16] = sx;
                    }
                }
    }
}

/* Thread (row = tid % 32, batch columns opart + 4 i, opart = tid / 32) adds the outliers of its row's
 * segment that lie in the current sub-slice, stored columns [c0, climit), δ·x with x from xs, in
 * column order (the segment's columns ascend), 4 loads in flight; k: the thread's cursor into the
 * segment, advanced past them. Called once per sub-slice while xs holds it, so x never comes from
 * global memory (runs 6-7 read the pre-gathered x per outlier and activation: SpQR n = 64 at 4x
 * GPTQ's time). */
template <int OB>
__device__ __forceinline__ void mma_outliers(const mma_args &a, const __half *xs, uint32_t &k, uint32_t oend, int c0, int climit, float (&oacc)[OB]) {
    const int opart = threadIdx.x >> 5;
    while (k < oend) {
        uint32_t col[4];
        float dl[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const bool in = k + e < oend;
            col[e] = in ? __ldg(a.ocol + k + e) : (uint32_t)climit;
            dl[e] = in ? __half2float(a.odelta[k + e]) : 0.f;
        }
        uint32_t done = 0;
#pragma unroll
        for (int e = 0; e < 4; e++) {
            if (col[e] >= (uint32_t)climit) continue; /* and every later one (ascending) */
            done++;
#pragma unroll
            for (int i = 0; i < OB; i++) {
                const int b = opart + 4 * i;
                if (b < a.nb) oacc[i] = fmaf(dl[e], __half2float(xs[(size_t)b * a.rs + col[e] - c0]), oacc[i]);
            }
        }
        k += done;
        if (done < 4) break;
    }
}

/* The sum of the S K-slices' partial sums of (activation b of the pass, row), in slice order (4 loads in
 * flight), by the last block of a row tile (or v11's row-tile group) to finish. */
__device__ __forceinline__ float mma_sum_slices(const mma_args &a, int b, int row) {
    const size_t step = (size_t)a.nb * a.nrt * 32;
    const float *pp = a.part + (size_t)b * a.nrt * 32 + row;
    float v = 0.f;
    int k = 0;
    for (; k + 4 <= a.S; k += 4) {
        const float p0 = __ldcg(pp + k * step), p1 = __ldcg(pp + (k + 1) * step), p2 = __ldcg(pp + (k + 2) * step), p3 = __ldcg(pp + (k + 3) * step);
        v += p0; v += p1; v += p2; v += p3;
    }
    for (; k < a.S; k++) v += __ldcg(pp + k * step);
    return v;
}

/* After red[warp][b][row] holds every warp's sums (and a __syncthreads): thread (row, opart) adds
 * the 4 warps' values and its outliers in warp order; with S = 1 it writes y, else the block's
 * partial sums, and the last block of the row tile to arrive (a counter per row tile, reset by that
 * block) adds the S partials in slice order and writes y. */
template <int OB>
__device__ __forceinline__ void mma_finish(const mma_args &a, const float *red, const float (&oacc)[OB], int &s_last) {
    const int rt = blockIdx.x, ks = blockIdx.y;
    const int orow = threadIdx.x & 31, opart = threadIdx.x >> 5;
    const int row = rt * 32 + orow, rpad = a.nrt * 32;
    float out[OB];
#pragma unroll
    for (int i = 0; i < OB; i++) {
        const int b = opart + 4 * i;
        out[i] = 0.f;
        if (b < a.nb) {
            float v = red[b * 32 + orow];
#pragma unroll
            for (int w = 1; w < SPQR_MMA_WARPS; w++) v += red[(w * a.nb + b) * 32 + orow];
            out[i] = v + oacc[i];
        }
    }
    if (a.S == 1) {
        if (row < a.rows)
#pragma unroll
            for (int i = 0; i < OB; i++)
                if (opart + 4 * i < a.nb) a.y[(size_t)(a.b0 + opart + 4 * i) * a.rows + row] = out[i];
        return;
    }
#pragma unroll
    for (int i = 0; i < OB; i++)
        if (opart + 4 * i < a.nb) a.part[((size_t)ks * a.nb + opart + 4 * i) * rpad + row] = out[i];
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) s_last = atomicAdd(a.cnt + rt, 1u) == (unsigned)(a.S - 1);
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    if (row < a.rows)
#pragma unroll
        for (int i = 0; i < OB; i++) {
            const int b = opart + 4 * i;
            if (b < a.nb) a.y[(size_t)(a.b0 + b) * a.rows + row] = mma_sum_slices(a, b, row);
        }
    if (threadIdx.x == 0) a.cnt[rt] = 0u;
}

template <int W, bool SP, int NT>
__global__ void __launch_bounds__(128, NT <= 2 ? 4 : 2) k_mma(const mma_args a) {
    extern __shared__ float4 smem4[];
    __half *xs = reinterpret_cast<__half *>(smem4);
    __shared__ int s_last;
    const int rt = blockIdx.x, ks = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int u0 = ks * a.ups, u1 = min(u0 + a.ups, a.nku);
    const int rb[2] = {(rt * 32) / a.rb0_div, (rt * 32 + 16) / a.rb0_div};
    float acc[2][NT][4];
    mma_acc_zero<NT>(acc);
    int xo[NT];
    mma_x_rows<NT>(a, lane, xo);
    constexpr int OB = 2 * NT; /* batch columns per thread in the outlier and output steps */
    const int orow = threadIdx.x & 31;
    float oacc[OB];
#pragma unroll
    for (int i = 0; i < OB; i++) oacc[i] = 0.f;
    uint32_t ok = 0, oend = 0;
    if (SP) {
        const size_t seg = ((size_t)rt * a.S + ks) * 32 + orow;
        ok = __ldg(a.optr + seg);
        oend = __ldg(a.optr + seg + 1);
    }
    for (int su0 = u0; su0 < u1; su0 += a.su) {
        const int su1 = min(su0 + a.su, u1), c0 = su0 * 128, scols = (su1 - su0) * 128;
        mma_unit<W, SP> cur;
        int u = su0 + warp;
        if (u < su1) mma_load<W, SP>(a, rt, u, lane, rb, cur);
        mma_fill_x(a, xs, c0, scols);
        __syncthreads();
        for (; u < su1; u += SPQR_MMA_WARPS) mma_step<W, SP, NT>(a, rt, u, su0, su1, SPQR_MMA_WARPS, lane, rb, xs, xo, cur, acc);
        if (SP) mma_outliers<OB>(a, xs, ok, oend, c0, c0 + scols, oacc);
        __syncthreads();
    }
    float *red = reinterpret_cast<float *>(smem4);
    mma_acc_store<NT, false>(acc, lane, a.nb, red + (size_t)warp * a.nb * 32); /* red[warp][b][row of the tile] */
    __syncthreads();
    mma_finish<OB>(a, red, oacc, s_last);
}

/* ---------------------------------------------------------------------------------------------- */
/* v11: v7's arithmetic on blocks of WIDE_RT row tiles that share one copy of x (batches > 8)      */
/* ---------------------------------------------------------------------------------------------- */
/*
 * v7 gives each 32-row tile its own block, so every block copies the activations of its K-slice:
 * at 64 activations the blocks read 64 MB of x from L2 per 4096 x 4096 product against 6 MB of
 * weights. Here a block of WIDE_RT · WIDE_KW warps takes WIDE_RT row tiles (128 rows) of one K-slice:
 *   warp w: row tile rt = WIDE_RT · blockIdx.x + w % WIDE_RT, units su0 + w / WIDE_RT, + WIDE_KW, ...
 *   of each sub-slice (the next unit's loads in flight), v7's unit product (mma_unit_compute);
 *   red[r][b][32] (fp32, shared): lane = row of tile r, zeroed first; per sub-slice, while xs holds it,
 *   the warps (r, kh) add their row's outliers for activations b ≡ kh (mod WIDE_KW), in column order;
 *   after the K loop the warps add their fragments, kh = 0 first (deterministic), then the block writes
 *   y, or with S > 1 its partial sums, the last block of the row-tile group (counter cnt[blockIdx.x],
 *   reset by it) adding the S partials in slice order.
 * x always comes pre-gathered (fp16, stored order) and the block's x is copied once per sub-slice;
 * a block holds up to 226 KB of shared memory (one block per SM at 64 activations).
 */
#define WIDE_RT 4
#define WIDE_KW 2
#define WIDE_SMEM_MAX (226 * 1024) /* of the 227 KB a block may opt in to; s_last is static */

template <int W, bool SP, int NT>
__global__ void __launch_bounds__(WIDE_RT * WIDE_KW * 32, 1) k_mma_wide(const mma_args a) {
    extern __shared__ float4 smem4[];
    __half *xs = reinterpret_cast<__half *>(smem4);
    float *red = reinterpret_cast<float *>(smem4) + ((size_t)a.nb * a.rs * 2 + 15) / 16 * 4; /* [WIDE_RT][nb][32] */
    __shared__ int s_last;
    const int ks = blockIdx.y, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = warp % WIDE_RT, kh = warp / WIDE_RT, rt = blockIdx.x * WIDE_RT + r;
    const bool live = rt < a.nrt;
    const int u0 = ks * a.ups, u1 = min(u0 + a.ups, a.nku);
    const int rb[2] = {(rt * 32) / a.rb0_div, (rt * 32 + 16) / a.rb0_div};
    for (int i = threadIdx.x; i < WIDE_RT * a.nb * 32; i += blockDim.x) red[i] = 0.f;
    float acc[2][NT][4];
    mma_acc_zero<NT>(acc);
    int xo[NT];
    mma_x_rows<NT>(a, lane, xo);
    uint32_t ok = 0, oend = 0;
    if (SP && live) {
        const size_t seg = ((size_t)rt * a.S + ks) * 32 + lane;
        ok = __ldg(a.optr + seg);
        oend = __ldg(a.optr + seg + 1);
    }
    float *rrow = red + (size_t)r * a.nb * 32 + lane; /* red[r][b][lane] at rrow[32 b] */
    for (int su0 = u0; su0 < u1; su0 += a.su) {
        const int su1 = min(su0 + a.su, u1), c0 = su0 * 128, scols = (su1 - su0) * 128;
        mma_unit<W, SP> cur;
        int u = su0 + kh;
        if (live && u < su1) mma_load<W, SP>(a, rt, u, lane, rb, cur);
        mma_fill_x(a, xs, c0, scols);
        __syncthreads();
        if (live) {
            for (; u < su1; u += WIDE_KW) mma_step<W, SP, NT>(a, rt, u, su0, su1, WIDE_KW, lane, rb, xs, xo, cur, acc);
            /* this sub-slice's outliers of row (rt, lane), activations b = kh, kh + WIDE_KW, ... */
            while (SP && ok < oend) { /* 4 loads in flight; the segment's columns ascend */
                uint32_t col[4];
                float dl[4];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const bool in = ok + e < oend;
                    col[e] = in ? __ldg(a.ocol + ok + e) : (uint32_t)(c0 + scols);
                    dl[e] = in ? __half2float(a.odelta[ok + e]) : 0.f;
                }
                uint32_t done = 0;
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    if (col[e] >= (uint32_t)(c0 + scols)) break;
                    done++;
                    const __half *xc = xs + col[e] - c0;
                    for (int b = kh; b < a.nb; b += WIDE_KW) rrow[32 * b] = fmaf(dl[e], __half2float(xc[(size_t)b * a.rs]), rrow[32 * b]);
                }
                ok += done;
                if (done < 4) break;
            }
        }
        __syncthreads();
    }
    for (int k = 0; k < WIDE_KW; k++) { /* the fragments, kh = 0 first */
        if (k == kh && live) mma_acc_store<NT, true>(acc, lane, a.nb, red + (size_t)r * a.nb * 32);
        __syncthreads();
    }
    const int nel = WIDE_RT * a.nb * 32, rpad = a.nrt * 32;
    /* element i of red: tile i / (32 nb), activation (i / 32) % nb, row i % 32 of the tile */
    auto red_row = [&](int i) { return (blockIdx.x * WIDE_RT + i / (32 * a.nb)) * 32 + (i & 31); };
    if (a.S == 1) {
        for (int i = threadIdx.x; i < nel; i += blockDim.x) {
            const int row = red_row(i), b = (i >> 5) % a.nb;
            if (row < a.rows) a.y[(size_t)(a.b0 + b) * a.rows + row] = red[i];
        }
        return;
    }
    for (int i = threadIdx.x; i < nel; i += blockDim.x) {
        const int row = red_row(i), b = (i >> 5) % a.nb;
        if (row < rpad) a.part[((size_t)ks * a.nb + b) * rpad + row] = red[i];
    }
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) s_last = atomicAdd(a.cnt + blockIdx.x, 1u) == (unsigned)(a.S - 1);
    __syncthreads();
    if (!s_last) return;
    __threadfence();
    for (int i = threadIdx.x; i < nel; i += blockDim.x) {
        const int row = red_row(i), b = (i >> 5) % a.nb;
        if (row < a.rows) a.y[(size_t)(a.b0 + b) * a.rows + row] = mma_sum_slices(a, b, row);
    }
    if (threadIdx.x == 0) a.cnt[blockIdx.x] = 0u;
}

/* ---------------------------------------------------------------------------------------------- */
/* v8: group sums on the tensor cores (the gsum layout of cuda/mma_layout.h), n <= 8 per pass      */
/* ---------------------------------------------------------------------------------------------- */
/*
 * Per unit and m-tile the 8 groups' MMAs multiply the codes as exact fp16 numbers 1024 + 2^o c (one
 * LOP3, or a shift and a LOP3, per register) by the fp16 x; with NB activations the accumulator's
 * 8 columns hold (group, activation) pairs, NB sets per m-tile. Each accumulator value C of
 * (row, group G, activation b) then gets the reference decoder's statistics in fp32:
 *     y += s/F · (C − (1024 + F z)·X),  X = Σ x over the group, F = 2^o,
 * i.e. s·(Σ c x − z Σ x) = Σ s (c − z) x, with s and z computed as spqr_qview_stats does (the
 * power-of-two F folded into the qq constants, exactly). Instructions per weight and lane: about
 * 0.75 for the codes, 1/8 MMA, and per (row, group) ~11 for the statistics, shared by the NB
 * activations (v7: ~2.4 in all).
 */

/* Lane-constant description of the lane's groups: the lane's accumulator columns 2t, 2t + 1 of set
 * s hold group G = s·(8/NB) + (2t + e)/NB; per m-tile it needs QN distinct groups, qi = e (NB = 1)
 * or s (NB >= 2). */
template <int NB>
__device__ __forceinline__ int gs_group(int t, int qi) {
    return NB == 1 ? 2 * t + qi : qi * (8 / NB) + (2 * t) / NB;
}

template <int W, int NB>
struct gs_unit {
    static constexpr int QN = NB == 1 ? 2 : NB;
    static constexpr int FN = NB == 1 ? 1 : 2; /* field words per row: NB = 1 keeps the word of its groups 2t, 2t + 1 */
    uint4 c[W];
    uint32_t f[4][FN];  /* fields of rows 16 mt + gl + 8 h, [2 mt + h] */
    uint2 q[2][QN];     /* qq of (m-tile, the lane's group qi) */
};

template <int W, int NB>
__device__ __forceinline__ void gs_load(const mma_args &a, int rt, int u, int lane, const int rb[2], gs_unit<W, NB> &d) {
    const size_t unit = (size_t)rt * a.nku + u;
    const int t = lane & 3, gl = lane >> 2;
#pragma unroll
    for (int i = 0; i < W; i++) d.c[i] = __ldg(a.codes + (unit * W + i) * 32 + lane);
    const uint2 *fp = (const uint2 *)a.fields + unit * 32;
#pragma unroll
    for (int mh = 0; mh < 4; mh++) {
        const uint2 f = __ldg(fp + 16 * (mh >> 1) + 8 * (mh & 1) + gl);
        if (NB == 1) d.f[mh][0] = t < 2 ? f.x : f.y;
        else { d.f[mh][0] = f.x; d.f[mh][gs_unit<W, NB>::FN - 1] = f.y; }
    }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int qi = 0; qi < gs_unit<W, NB>::QN; qi++) d.q[mt][qi] = __ldg(a.qq + (size_t)rb[mt] * a.gpad + u * 8 + gs_group<NB>(t, qi));
}

/* The unit's products into yacc[mt][h][e] (row 16 mt + gl + 8 h, accumulator column 2t + e).
 * xs: the sub-slice's fp16 activations, xsum their group sums, the unit at column xoff. iF, F:
 * 2^-o and 2^o of the lane's groups qi. */
template <int W, int NB>
__device__ __forceinline__ void gs_compute(const mma_args &a, const gs_unit<W, NB> &d, const __half *xs, const float *xsum, int xoff, int lane,
                                           const float (&iF)[gs_unit<W, NB>::QN], const float (&F)[gs_unit<W, NB>::QN],
                                           const int (&fsh)[gs_unit<W, NB>::QN], float (&yacc)[2][2][2]) {
    constexpr int GPS = 8 / NB, QN = gs_unit<W, NB>::QN;
    const int t = lane & 3, gl = lane >> 2;
    const int xsr = a.su * 8; /* groups per row of xsum */
    uint32_t w[4 * W];
#pragma unroll
    for (int i = 0; i < W; i++) { w[4 * i] = d.c[i].x; w[4 * i + 1] = d.c[i].y; w[4 * i + 2] = d.c[i].z; w[4 * i + 3] = d.c[i].w; }
    /* this lane's B operand per set: activation gl % NB, group s·GPS + gl / NB, columns 4t .. 4t + 3 */
    const int bl = gl % NB;
    uint2 xq[NB];
#pragma unroll
    for (int s = 0; s < NB; s++)
        xq[s] = bl < a.nb ? *reinterpret_cast<const uint2 *>(xs + (size_t)bl * a.rs + xoff + 16 * (s * GPS + gl / NB) + 4 * t) : make_uint2(0u, 0u);
#pragma unroll
    for (int mt = 0; mt < 2; mt++) {
        /* the qq constants of the lane's groups: s/F = fma(sc, ss/F, −ss·sz/F), 1024 + F z = fma(zc, zs·F, 1024 − zs·zz·F) */
        float ssF[QN], nsszF[QN], zsF[QN], kz0[QN];
#pragma unroll
        for (int qi = 0; qi < QN; qi++) {
            const uint2 q = d.q[mt][qi];
            const float ss = h2f_lo(q.x), sz = h2f_hi(q.x), zs = h2f_lo(q.y), zz = h2f_hi(q.y);
            ssF[qi] = ss * iF[qi];
            nsszF[qi] = -(ss * sz) * iF[qi];
            zsF[qi] = zs * F[qi];
            kz0[qi] = fmaf(-(zs * zz), F[qi], 1024.f);
        }
#pragma unroll
        for (int s = 0; s < NB; s++) {
            /* two accumulators (even and odd groups of the set; each is zero in the other's columns), so
             * the dependent MMA chains are half as long */
            float acc[4] = {0.f, 0.f, 0.f, 0.f}, acc2[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int gi = 0; gi < GPS; gi++) {
                const int G = s * GPS + gi;
                const bool mine = GPS == 1 || gl / NB == gi;
                const uint32_t b0 = mine ? xq[s].x : 0u, b1 = mine ? xq[s].y : 0u;
                mma16816(gi & 1 ? acc2 : acc, spqr_gsum_pair(w + mt * 2 * W, W, G, 0, 0x64006400u), spqr_gsum_pair(w + mt * 2 * W, W, G, 1, 0x64006400u),
                         spqr_gsum_pair(w + mt * 2 * W, W, G, 2, 0x64006400u), spqr_gsum_pair(w + mt * 2 * W, W, G, 3, 0x64006400u), b0, b1);
            }
            if (GPS > 1)
#pragma unroll
                for (int e = 0; e < 4; e++) acc[e] += acc2[e];
            /* epilogue: columns 2t + e of set s */
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int qi = NB == 1 ? e : s, c = 2 * t + e, b = c % NB, G = gs_group<NB>(t, qi);
                if (b >= a.nb) continue;
                const float X = xsum[(size_t)b * xsr + xoff / 16 + G];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint32_t fw = NB == 1 ? d.f[2 * mt + h][0] : G < 4 ? d.f[2 * mt + h][0] : d.f[2 * mt + h][gs_unit<W, NB>::FN - 1];
                    const uint32_t byte = (fw >> fsh[qi]) & 0xffu;
                    const float sc = __uint_as_float(0x4B000000u | (byte & 15u)) - 8388608.f, zc = __uint_as_float(0x4B000000u | (byte >> 4)) - 8388608.f;
                    const float s1 = fmaf(sc, ssF[qi], nsszF[qi]), kz = fmaf(zc, zsF[qi], kz0[qi]);
                    yacc[mt][h][e] = fmaf(s1, fmaf(-kz, X, acc[2 * h + e]), yacc[mt][h][e]);
                }
            }
        }
    }
}

template <int W, int NB>
__global__ void __launch_bounds__(128, NB == 8 ? 2 : 3) k_gsum(const mma_args a) {
    constexpr int QN = gs_unit<W, NB>::QN, OB = 2;
    extern __shared__ float4 smem4[];
    __half *xs = reinterpret_cast<__half *>(smem4);
    float *xsum = reinterpret_cast<float *>(smem4) + ((size_t)a.nb * a.rs * 2 + 15) / 16 * 4;
    __shared__ int s_last;
    const int rt = blockIdx.x, ks = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, t = lane & 3, gl = lane >> 2;
    const int u0 = ks * a.ups, u1 = min(u0 + a.ups, a.nku);
    const int rb[2] = {(rt * 32) / a.rb0_div, (rt * 32 + 16) / a.rb0_div};
    float iF[QN], F[QN];
    int fsh[QN];
#pragma unroll
    for (int qi = 0; qi < QN; qi++) {
        const int G = gs_group<NB>(t, qi), o = (int)spqr_gsum_o(W, (unsigned)G);
        F[qi] = __uint_as_float((uint32_t)(127 + o) << 23);
        iF[qi] = __uint_as_float((uint32_t)(127 - o) << 23);
        fsh[qi] = 8 * (G & 3);
    }
    float yacc[2][2][2];
#pragma unroll
    for (int i = 0; i < 8; i++) (&yacc[0][0][0])[i] = 0.f;
    const int orow = threadIdx.x & 31;
    float oacc[OB] = {0.f, 0.f};
    const size_t seg = ((size_t)rt * a.S + ks) * 32 + orow;
    uint32_t ok = __ldg(a.optr + seg);
    const uint32_t oend = __ldg(a.optr + seg + 1);
    for (int su0 = u0; su0 < u1; su0 += a.su) {
        const int su1 = min(su0 + a.su, u1), c0 = su0 * 128, scols = (su1 - su0) * 128;
        gs_unit<W, NB> cur;
        int u = su0 + warp;
        if (u < su1) gs_load<W, NB>(a, rt, u, lane, rb, cur);
        mma_fill_x(a, xs, c0, scols, xsum);
        __syncthreads();
        for (; u < su1; u += SPQR_MMA_WARPS) {
            gs_unit<W, NB> nxt;
            const bool more = u + SPQR_MMA_WARPS < su1;
            if (more) gs_load<W, NB>(a, rt, u + SPQR_MMA_WARPS, lane, rb, nxt);
            gs_compute<W, NB>(a, cur, xs, xsum, (u - su0) * 128, lane, iF, F, fsh, yacc);
            if (more) cur = nxt;
        }
        mma_outliers<OB>(a, xs, ok, oend, c0, c0 + scols, oacc);
        __syncthreads();
    }
    float *red = reinterpret_cast<float *>(smem4);
    /* the lanes' row sums: activation b = (2t + e) % NB; add the lanes of the quad with the same b */
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int h = 0; h < 2; h++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                if (NB == 1 && e == 1) continue;
                float v = yacc[mt][h][e];
                if (NB == 1) v += yacc[mt][h][1]; /* both columns are activation 0 */
                if (NB <= 2) v += __shfl_xor_sync(0xffffffffu, v, 1);
                if (NB <= 4) v += __shfl_xor_sync(0xffffffffu, v, 2);
                const int b = (2 * t + e) % NB, r = mt * 16 + gl + 8 * h;
                const bool writer = NB <= 2 ? t == 0 : NB == 4 ? t < 2 : true;
                if (writer && b < a.nb) red[(warp * a.nb + b) * 32 + r] = v;
            }
    __syncthreads();
    mma_finish<OB>(a, red, oacc, s_last);
}

/* ---------------------------------------------------------------------------------------------- */
/* v12: batches above 16 — the weights dequantized to fp16 from v7's layout, then cuBLAS           */
/* ---------------------------------------------------------------------------------------------- */
/*
 * One warp per unit (32 rows × 128 stored columns): the lane decodes its 8 segments exactly as v7
 * builds its A fragments (mma_unit_decode, spqr_mma_pair, HSUB2 + HFMA2), so the fp16 weights are the
 * ones v7 multiplies. Segment (kc, mt, h) of lane (gl, t) is row 32 rt + 16 mt + 8 h + gl, stored
 * columns 128 u + 64 kc + 16 t .. + 15, pairs p = 0..7 in column order: two 16-byte stores.
 * w16 [rows][ld] row-major (ld = nku·128; columns past cols get weight 0). Then k_mma_outliers adds
 * each outlier's fp16 delta to its weight (one thread per outlier segment: no two threads touch one
 * element), and cuBLAS multiplies: y = W16 · x16 with x gathered into stored order in fp16.
 */
template <int W, bool SP>
__global__ void __launch_bounds__(256) k_mma_dequant(const mma_args a, __half *__restrict__ w16, int ld) {
    const int lane = threadIdx.x & 31, t = lane & 3, gl = lane >> 2;
    const size_t unit = (size_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (unit >= (size_t)a.nrt * a.nku) return;
    const int rt = (int)(unit / a.nku), u = (int)(unit % a.nku);
    const int rb[2] = {(rt * 32) / a.rb0_div, (rt * 32 + 16) / a.rb0_div};
    mma_unit<W, SP> d;
    mma_load<W, SP>(a, rt, u, lane, rb, d);
    uint32_t w[4 * W];
    __half2 K1[8], HS[8], HK[8];
    mma_unit_decode<W, SP>(d, w, K1, HS, HK);
#pragma unroll
    for (int f = 0; f < 8; f++) { /* f = (kc·2 + mt)·2 + h */
        const int kc = f >> 2, mt = (f >> 1) & 1, h = f & 1, row = rt * 32 + mt * 16 + h * 8 + gl;
        uint32_t v[8];
#pragma unroll
        for (int p = 0; p < 8; p++) v[p] = h2u(__hfma2(__hsub2(u2h(spqr_mma_pair(w, W, f * 8 + p)), K1[f]), HS[f], HK[f]));
        if (row < a.rows) {
            uint4 *o = reinterpret_cast<uint4 *>(w16 + (size_t)row * ld + u * 128 + kc * 64 + 16 * t);
            o[0] = make_uint4(v[0], v[1], v[2], v[3]);
            o[1] = make_uint4(v[4], v[5], v[6], v[7]);
        }
    }
}

/* w16[row][col] += δ for every outlier. Warp = one (row tile, K-slice) group of 32 CSR segments, whose
 * entries are contiguous: lane takes entries k0 + lane, + 32, ... (4 in flight: loads, then stores), its
 * row the last segment of the group starting at or before the entry (binary search over the 33 starts). */
__global__ void __launch_bounds__(256) k_mma_outliers(const mma_args a, __half *__restrict__ w16, int ld) {
    __shared__ uint32_t sp[8][33];
    const int lane = threadIdx.x & 31, wi = threadIdx.x >> 5;
    const size_t grp = (size_t)blockIdx.x * 8 + wi;
    if (grp >= (size_t)a.nrt * a.S) return; /* warp-uniform; no block barrier below */
    const uint32_t *op = a.optr + grp * 32;
    sp[wi][lane] = __ldg(op + lane);
    if (lane == 0) sp[wi][32] = __ldg(op + 32);
    __syncwarp();
    const uint32_t k0 = sp[wi][0], k1 = sp[wi][32];
    const int rt0 = (int)(grp / a.S) * 32;
    for (uint32_t kb = k0; kb < k1; kb += 128) {
        size_t at[4];
        float dl[4], wv[4];
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const uint32_t k = kb + 32 * e + lane;
            int lo = 0;
#pragma unroll
            for (int step = 16; step; step >>= 1) lo += sp[wi][lo + step] <= k ? step : 0;
            const bool in = k < k1 && rt0 + lo < a.rows;
            at[e] = in ? (size_t)(rt0 + lo) * ld + __ldg(a.ocol + k) : ~(size_t)0;
            dl[e] = in ? __half2float(a.odelta[k]) : 0.f;
        }
#pragma unroll
        for (int e = 0; e < 4; e++) wv[e] = at[e] != ~(size_t)0 ? __half2float(w16[at[e]]) : 0.f;
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (at[e] != ~(size_t)0) w16[at[e]] = __float2half_rn(wv[e] + dl[e]);
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Upload and launch                                                                              */
/* ---------------------------------------------------------------------------------------------- */

extern "C" void spqr_cuda_mma_free(spqr_cuda_mma *d) {
    if (!d) return;
    cudaFree(d->codes); cudaFree(d->fields); cudaFree(d->qq); cudaFree(d->optr); cudaFree(d->ocol); cudaFree(d->odelta);
    cudaFree(d->perm); cudaFree(d->cnt);
    free(d);
}

template <class T>
static cudaError_t up_copy(T **d, const void *h, size_t n) {
    cudaError_t e = cudaMalloc((void **)d, n ? n : 16);
    if (e == cudaSuccess && n && h) e = cudaMemcpy(*d, h, n, cudaMemcpyHostToDevice);
    return e;
}

extern "C" spqr_status spqr_cuda_mma_upload(const spqr_mma_layout *L, spqr_cuda_mma **out, spqr_error *err) {
    *out = NULL;
    if (L->S > 65535) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: mma: %u K-slices", L->S);
    spqr_cuda_mma *d = (spqr_cuda_mma *)calloc(1, sizeof *d);
    if (!d) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    d->kind = L->kind; d->rows = L->rows; d->cols = L->cols; d->wbits = L->wbits; d->gs = L->gs; d->qq_gs = L->qq_gs;
    d->nrt = L->nrt; d->nku = L->nku; d->S = L->S; d->ups = L->ups; d->gpad = L->gpad; d->n_out = L->n_out; d->gsum = L->gsum;
    d->bytes = spqr_mma_bytes(L);
    const int sp = L->kind == SPQR_TK_SPQR;
    const uint64_t units = (uint64_t)L->nrt * L->nku;
    cudaError_t e = up_copy(&d->codes, L->codes, units * L->wbits * 512);
    if (e == cudaSuccess) e = up_copy(&d->fields, L->fields, (sp ? units * 64 : (uint64_t)L->nrt * 32 * L->gpad) * 4);
    if (e == cudaSuccess && sp) e = up_copy(&d->qq, L->qq, (uint64_t)L->rb_pad * L->gpad * 8);
    if (e == cudaSuccess) e = up_copy(&d->optr, L->optr, ((uint64_t)L->nrt * L->S * 32 + 1) * 4);
    if (e == cudaSuccess) e = up_copy(&d->ocol, L->ocol, (L->n_out + 1) * 2);
    if (e == cudaSuccess) e = up_copy(&d->odelta, L->odelta, (L->n_out + 1) * 2);
    if (e == cudaSuccess && L->perm) e = up_copy(&d->perm, L->perm, (size_t)L->cols * 4);
    if (e == cudaSuccess) e = up_copy(&d->cnt, NULL, (size_t)L->nrt * 4);
    if (e == cudaSuccess) e = cudaMemset(d->cnt, 0, (size_t)L->nrt * 4);
    if (e != cudaSuccess) { spqr_cuda_mma_free(d); return spqr_set_err(err, SPQR_E_IO, "cuda: mma upload: %s", cudaGetErrorString(e)); }
    *out = d;
    return SPQR_OK;
}

/* v7 (k_mma), or v11 (k_mma_wide) when WIDE, for codes of W bits, SpQR (SP) or GPTQ, NT n-tiles */
template <int W, bool SP, int NT, bool WIDE>
static cudaError_t launch_mma_t(const mma_args &a, size_t smem, spqr_cuda_ctx *c) {
    const void *k;
    if constexpr (WIDE) k = (const void *)k_mma_wide<W, SP, NT>;
    else k = (const void *)k_mma<W, SP, NT>;
    const cudaError_t e = spqr_cuda_smem_optin(c, k, WIDE ? WIDE_SMEM_MAX : MMA_XS_MAX + 1024);
    if (e != cudaSuccess) return e;
    if constexpr (WIDE) k_mma_wide<W, SP, NT><<<dim3((unsigned)((a.nrt + WIDE_RT - 1) / WIDE_RT), (unsigned)a.S), WIDE_RT * WIDE_KW * 32, smem, c->stream>>>(a);
    else k_mma<W, SP, NT><<<dim3((unsigned)a.nrt, (unsigned)a.S), SPQR_MMA_WARPS * 32, smem, c->stream>>>(a);
    return cudaGetLastError();
}

template <int W, bool SP, bool WIDE>
static cudaError_t launch_mma_n(const mma_args &a, int NT, size_t smem, spqr_cuda_ctx *c) {
    switch (NT) {
    case 1: return launch_mma_t<W, SP, 1, WIDE>(a, smem, c);
    case 2: return launch_mma_t<W, SP, 2, WIDE>(a, smem, c);
    case 4: return launch_mma_t<W, SP, 4, WIDE>(a, smem, c);
    default: return launch_mma_t<W, SP, 8, WIDE>(a, smem, c);
    }
}

template <bool WIDE>
static cudaError_t launch_mma(const mma_args &a, int W, bool sp, int NT, size_t smem, spqr_cuda_ctx *c) {
    if (W == 2) return sp ? launch_mma_n<2, true, WIDE>(a, NT, smem, c) : launch_mma_n<2, false, WIDE>(a, NT, smem, c);
    if (W == 3) return sp ? launch_mma_n<3, true, WIDE>(a, NT, smem, c) : launch_mma_n<3, false, WIDE>(a, NT, smem, c);
    return sp ? launch_mma_n<4, true, WIDE>(a, NT, smem, c) : launch_mma_n<4, false, WIDE>(a, NT, smem, c);
}

template <int W, int NB>
static cudaError_t launch_gsum_t(const mma_args &a, size_t smem, spqr_cuda_ctx *c) {
    const cudaError_t e = spqr_cuda_smem_optin(c, (const void *)k_gsum<W, NB>, MMA_XS_MAX + 16 * 1024);
    if (e != cudaSuccess) return e;
    k_gsum<W, NB><<<dim3((unsigned)a.nrt, (unsigned)a.S), SPQR_MMA_WARPS * 32, smem, c->stream>>>(a);
    return cudaGetLastError();
}

template <int W>
static cudaError_t launch_gsum_w(const mma_args &a, int NB, size_t smem, spqr_cuda_ctx *c) {
    switch (NB) {
    case 1: return launch_gsum_t<W, 1>(a, smem, c);
    case 2: return launch_gsum_t<W, 2>(a, smem, c);
    case 4: return launch_gsum_t<W, 4>(a, smem, c);
    default: return launch_gsum_t<W, 8>(a, smem, c);
    }
}

extern "C" spqr_status spqr_cuda_mma_matmul(spqr_cuda_ctx *c, const spqr_cuda_mma *d, const void *x, int xf32, int n, float *y, spqr_error *err) {
    if (n < 1 || n > 65536) return spqr_set_err(err, SPQR_E_ARG, "cuda: batch %d outside 1..65536", n);
    const int sp = d->kind == SPQR_TK_SPQR, W = (int)d->wbits;
    const int PASS = d->gsum ? 8 : 64; /* activations per pass */
    const int nbmax = n < PASS ? n : PASS, ldg = (int)d->nku * 128, rpad = (int)d->nrt * 32;
    /* units per sub-slice: all of the slice if its activations fit, else a multiple of 4; the x gather
     * runs in the kernel (from x, through perm) for passes of <= 8 that fit on small matrices, else a
     * pre-gather kernel writes xg (fp16, stored order) and blocks copy from it */
    const int su_max = (MMA_XS_MAX / (2 * nbmax) - 4) / 128;
    /* run 18: pre-gathering by a kernel is faster at every n on the 7B shapes (n = 8: 26 -> 19 us at 4096^2,
     * 62 -> 35 at 11008 x 4096); by default (mma_pregather < 0) where the blocks' gathers add up, as v5 */
    const int want_pg = c->mma_pregather < 0 ? (uint64_t)d->nrt * d->cols >= (1u << 18) : c->mma_pregather;
    const int wide = !d->gsum && c->mma_wide > 0; /* v11 (always pre-gathered) */
    const int pregather = nbmax > 8 || su_max < (int)d->ups || want_pg || wide;
    const size_t xg_bytes = pregather ? ((size_t)nbmax * ldg * 2 + 255) / 256 * 256 : 0;
    const size_t part_bytes = d->S > 1 ? (size_t)d->S * nbmax * rpad * 4 : 0;
    spqr_status st = spqr_cuda_ws_reserve(c, xg_bytes + part_bytes + 16, err);
    if (st) return st;
    __half *xg = (__half *)c->ws;
    float *part = (float *)((char *)c->ws + xg_bytes);
    int gshift = 0;
    while ((1u << gshift) < d->gs) gshift++;
    for (int b0 = 0; b0 < n; b0 += PASS) {
        const int nb = n - b0 < PASS ? n - b0 : PASS, NT = nb <= 8 ? 1 : nb <= 16 ? 2 : nb <= 32 ? 4 : 8;
        if (wide) { /* v11: x and red[WIDE_RT][nb][32] in up to WIDE_SMEM_MAX bytes */
            const size_t red = (size_t)WIDE_RT * nb * 32 * 4;
            int su = (int)(((WIDE_SMEM_MAX - red - 16) / (2 * nb) - 4) / 128);
            if (su > (int)d->ups) su = (int)d->ups;
            if (su < 1) su = 1;
            const int rs = su * 128 + 4;
            const size_t smem = ((size_t)nb * rs * 2 + 15) / 16 * 16 + red;
            CK(spqr_cuda_gather_x16(x, xf32, b0, nb, d->cols, d->perm, ldg, xg, c->stream), "mma gather");
            mma_args a = {d->codes, d->fields, d->qq, d->optr, d->ocol, d->odelta, d->perm, x, xg, y, part, d->cnt,
                          (int)d->rows, (int)d->cols, (int)d->nrt, (int)d->nku, (int)d->S, (int)d->ups, su, (int)d->gpad, gshift,
                          sp ? (int)d->qq_gs : 1, n, b0, nb, rs, ldg, xf32};
            CK(launch_mma<true>(a, W, sp, NT, smem, c), "mma wide kernel");
            continue;
        }
        int su = (int)d->ups;
        const int fit = (MMA_XS_MAX / (2 * nb) - 4) / 128;
        if (su > fit) su = fit >= 4 ? fit / 4 * 4 : fit < 1 ? 1 : fit;
        const int pg = nb > 8 || su < (int)d->ups || want_pg;
        const int rs = su * 128 + 4; /* rows of xs 8 bytes past a 128-byte multiple: conflict-free B loads */
        size_t smem = (size_t)nb * rs * 2;
        if (d->gsum) smem = (smem + 15) / 16 * 16 + (size_t)nb * su * 8 * 4; /* + the group sums of x */
        if (smem < (size_t)SPQR_MMA_WARPS * nb * 32 * 4) smem = (size_t)SPQR_MMA_WARPS * nb * 32 * 4;
        if (pg) CK(spqr_cuda_gather_x16(x, xf32, b0, nb, d->cols, d->perm, ldg, xg, c->stream), "mma gather");
        mma_args a = {d->codes, d->fields, d->qq, d->optr, d->ocol, d->odelta, d->perm, x, pg ? xg : NULL, y, part, d->cnt,
                      (int)d->rows, (int)d->cols, (int)d->nrt, (int)d->nku, (int)d->S, (int)d->ups, su, (int)d->gpad, gshift,
                      sp ? (int)d->qq_gs : 1, n, b0, nb, rs, ldg, xf32};
        if (d->gsum) {
            const int NB = nb == 1 ? 1 : nb == 2 ? 2 : nb <= 4 ? 4 : 8;
            cudaError_t e = W == 2 ? launch_gsum_w<2>(a, NB, smem, c) : W == 3 ? launch_gsum_w<3>(a, NB, smem, c)
                                                                              : launch_gsum_w<4>(a, NB, smem, c);
            CK(e, "gsum kernel");
            continue;
        }
        CK(launch_mma<false>(a, W, sp, NT, smem, c), "mma kernel");
    }
    return SPQR_OK;
}

template <int W>
static cudaError_t launch_dequant_w(const mma_args &a, bool sp, __half *w16, int ld, cudaStream_t st) {
    const unsigned blocks = (unsigned)(((size_t)a.nrt * a.nku + 7) / 8);
    if (sp) k_mma_dequant<W, true><<<blocks, 256, 0, st>>>(a, w16, ld);
    else k_mma_dequant<W, false><<<blocks, 256, 0, st>>>(a, w16, ld);
    return cudaGetLastError();
}

/* w16 [rows][nku·128] = the fp16 weights of v7's layout, outliers included (v12's first step). */
static spqr_status mma_dequant_f16(spqr_cuda_ctx *c, const spqr_cuda_mma *d, __half *w16, spqr_error *err) {
    if (d->gsum) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: dequantization needs the MMA layout, not the group-sum one");
    const int sp = d->kind == SPQR_TK_SPQR, W = (int)d->wbits, ld = (int)d->nku * 128;
    int gshift = 0;
    while ((1u << gshift) < d->gs) gshift++;
    mma_args a = {d->codes, d->fields, d->qq, d->optr, d->ocol, d->odelta, d->perm, NULL, NULL, NULL, NULL, d->cnt,
                  (int)d->rows, (int)d->cols, (int)d->nrt, (int)d->nku, (int)d->S, (int)d->ups, 0, (int)d->gpad, gshift,
                  sp ? (int)d->qq_gs : 1, 0, 0, 0, 0, ld, 0};
    CK(W == 2 ? launch_dequant_w<2>(a, sp, w16, ld, c->stream) : W == 3 ? launch_dequant_w<3>(a, sp, w16, ld, c->stream)
                                                                       : launch_dequant_w<4>(a, sp, w16, ld, c->stream), "mma dequant kernel");
    if (sp && d->n_out) {
        k_mma_outliers<<<(unsigned)(((size_t)d->nrt * d->S + 7) / 8), 256, 0, c->stream>>>(a, w16, ld);
        CK(cudaGetLastError(), "mma outlier kernel");
    }
    return SPQR_OK;
}

extern "C" spqr_status spqr_cuda_mma_dequant_matmul(spqr_cuda_ctx *c, const spqr_cuda_mma *d, const void *x, int xf32, int n, float *y,
                                                    spqr_error *err) {
    if (n < 1 || n > 65536) return spqr_set_err(err, SPQR_E_ARG, "cuda: batch %d outside 1..65536", n);
    const int ld = (int)d->nku * 128;
    const size_t wbytes = ((size_t)d->rows * ld * 2 + 255) / 256 * 256;
    spqr_status st = spqr_cuda_buf_reserve(c, &c->dws, &c->dws_size, wbytes + (size_t)n * ld * 2, err);
    if (st) return st;
    __half *w16 = (__half *)c->dws, *x16 = (__half *)((char *)c->dws + wbytes);
    st = mma_dequant_f16(c, d, w16, err);
    if (st) return st;
    return spqr_cuda_gemm_w16(c, w16, (int)d->rows, ld, x, xf32, n, d->cols, d->perm, x16, y, err);
}

/*
 * spqr_cuda_stream.cu — v10 (SPQR_CUDA_STREAM): the streaming GEMV for SpQR β1 = 16 on the layout of
 * cuda/stream_layout.h (which describes the records, the fragments and the epilogue).
 *
 * Grid: G blocks of NW consumer warps + 1 producer warp; block b takes SAs [⌊bT/G⌋, ⌊(b+1)T/G⌋).
 *   producer (one lane): copies the block's outlier offsets and entries into shared memory, then its
 *     SA records, NW per stage, through a ring of NS stages (cp.async.bulk completing on an mbarrier
 *     per stage; a stage is refilled once its NW consumers have arrived on its "empty" mbarrier). The
 *     weights do not depend on the previous kernel, so the producer never waits for it: with
 *     programmatic dependent launch a block streams its first stages as soon as it is resident (with
 *     NW = 8 two blocks fit on an SM, so while the previous product still computes), and the weights
 *     are in shared memory when x arrives. NW = 24 (one block per SM) is the default: measured faster.
 *   consumers: wait for the previous kernel (griddepcontrol.wait), scatter x[i] → x16[iperm[i]] (fp16,
 *     stored column order) and sum each group of 16 (X, fp32); then per stage warp w takes SA w of the
 *     stage: its codes into registers, the 16 groups' second-level statistics decoded once per SA by
 *     the warp (two lanes a group) into a shared scratch, per atom and MMA set the mma.sync m16n8k16 on
 *     the exact codes, the fp32 epilogue y += (s/2^o)·(C − (1024 + 2^o z)·X), then the SA's outliers
 *     (32 entries a round, a segmented sum over the lanes of each row, added to a per-warp row sum in
 *     shared memory). A warp's sums are kept in
 *     registers while its SAs stay in one row tile and written to red[tile][warp] when it changes.
 *   end: red summed over warps in warp order; a row tile inside the block is written to y, a tile
 *     shared with other blocks is written to the partial-sum workspace, and the last of its blocks to
 *     arrive (a counter per row tile) adds the pieces in block order and writes y.
 * Measured (bench/cuda/README.md, runs 21-24, H100): correct, bit-identical from call to call, but
 * slower than v5 and v9 at n = 1 (twice v9's instructions); not dispatched by AUTO.
 */
#include "cuda/spqr_cuda_internal.cuh"
#include "cuda/stream_layout.h"

/* Consumer warps per block NW: 8 with two blocks per SM (112 KB of shared memory each), or 16 / 24 with
 * one block per SM (226 KB: the static shared memory counts against the 227 KB limit too). */
#define ST_SMEM(NW) ((NW) == 8 ? 112 * 1024 : 226 * 1024)
#define ST_TILES 16    /* most row tiles a block touches (its red buffer) */

struct spqr_cuda_stream { /* declared in spqr_cuda_internal.cuh */
    uint32_t rows, cols, wbits, qq_bits, nrt, nk, rec_bytes;
    uint64_t nsa, n_out, bytes;
    uint8_t *recs;
    uint32_t *osa, *oent;
    uint16_t *iperm;
    unsigned *cnt; /* [nrt] arrival counters of shared row tiles, zero between calls */
};

struct st_args {
    const uint8_t *recs;
    const uint32_t *osa, *oent;
    const uint16_t *iperm;
    const void *x;
    float *y, *part;
    unsigned *cnt;
    unsigned long long T;
    int rows, cols, nk, G, n, b0, xf32, xvec, q, rb, ns, ocap, pmax;
    unsigned off_x16, off_X, off_ring, off_oent, off_osa, off_qs, off_rs, off_red, off_bar, red_tiles;
};

/* ---- PTX wrappers: mbarriers, bulk copies, programmatic dependent launch ---------------------- */

__device__ __forceinline__ unsigned smem_u32(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void mbar_init(uint64_t *b, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint64_t *b, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(b)), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *b) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(b)) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, unsigned parity) {
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "WAIT_%=:\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1, 10000000;\n"
                 "@!p bra WAIT_%=;\n"
                 "}\n" ::"r"(smem_u32(b)),
                 "r"(parity)
                 : "memory");
}
/* bytes (a multiple of 16, both addresses 16-byte aligned) from global src to shared dst, completing on b */
__device__ __forceinline__ void bulk_copy(void *dst, const void *src, unsigned bytes, uint64_t *b) {
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(bytes), "r"(smem_u32(b))
                 : "memory");
}
/* the NW consumer warps' barrier (named barrier 1; the producer warp never joins it) */
template <int NW>
__device__ __forceinline__ void consumers_sync() { asm volatile("bar.sync 1, %0;\n" ::"n"(NW * 32) : "memory"); }

/* (a & b) | c in one LOP3 (with constant b and c the compiler emits two, one immediate each) */
__device__ __forceinline__ uint32_t lop_and_or(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
}

/* A register i of group G from an atom's words: spqr_gsum_pair with the mask and the magic in one LOP3 */
template <int W>
__device__ __forceinline__ uint32_t st_pair(const uint32_t *w, int G, int i) {
    unsigned k, b;
    spqr_gsum_reg(W, G, i, &k, &b);
    if (b == 15) return spqr_gsum_pair(w, W, G, i, 0x64006400u);
    const uint32_t mask = ((1u << W) - 1) * 0x10001u;
    if (b + W <= 10) return lop_and_or(w[k], mask << b, 0x64006400u);
    const unsigned sh = spqr_gsum_sh(W);
    return lop_and_or(w[k] >> sh, mask << (b - sh), 0x64006400u);
}

/* an exact small integer (< 2^23) as float: one LOP3 and one FADD */
__device__ __forceinline__ float u2f(uint32_t c) { return __uint_as_float(0x4B000000u | c) - 8388608.f; }

/* ---- the kernel ----------------------------------------------------------------------------------- */

/* One SA (record rec, column chunk kc) of this warp: its products into acc, its outliers into rs.
 * NB = 1: acc[h][0] is row gl + 8h; NB >= 2: acc[h][e] is (row gl + 8h, activation (2t + e) % NB). */
template <int W, int NB>
__device__ __forceinline__ void st_sa(const st_args &a, const uint8_t *rec, int kc, const __half *x16, const float *X, float4 *qs,
                                      float (&acc)[2][2], int lane) {
    const int Q = a.q;
    const uint32_t QM = (1u << Q) - 1, FM = (1u << 2 * Q) - 1;
    const int gl = lane >> 2, t = lane & 3, Kpad = a.nk * 256;
    uint32_t wd[4 * W];
#pragma unroll
    for (int i = 0; i < W; i++) {
        const uint4 v = ((const uint4 *)rec)[i * 32 + lane];
        wd[4 * i] = v.x; wd[4 * i + 1] = v.y; wd[4 * i + 2] = v.z; wd[4 * i + 3] = v.w;
    }
    const uint8_t *fp = rec + spqr_stream_code_bytes(W);
    /* the 16 groups' statistics constants, two lanes a group: (ss/F, −ss·sz/F) and (zs·F, 1024 − zs·zz·F) */
    {
        const int g16 = lane >> 1, part = lane & 1;
        const uint32_t hv = ((const uint32_t *)(fp + 128 + spqr_stream_fieldb_bytes(Q)))[2 * g16 + part];
        const int o = (int)spqr_gsum_o(W, g16 & 7);
        const float f0 = h2f_lo(hv), f1 = h2f_hi(hv), F = __int_as_float((127 + o) << 23), iF = __int_as_float((127 - o) << 23); /* 2^o, 2^-o */
        float2 c;
        if (part == 0) { c.x = f0 * iF; c.y = -c.x * f1; }
        else { c.x = f0 * F; c.y = fmaf(-c.x, f1, 1024.f); }
        ((float2 *)qs)[2 * g16 + part] = c;
    }
    __syncwarp();
    const uint64_t fr = NB == 1 ? spqr_stream_lane_fields(fp, Q, lane) : 0;
#pragma unroll
    for (int at = 0; at < 2; at++) {
        const uint32_t *w = wd + 2 * W * at;
        const int cbase = kc * 256 + at * 128; /* stored column of the atom */
        if (NB == 1) {
            const uint2 xv = *(const uint2 *)(x16 + cbase + 16 * gl + 4 * t);
            float Dlo[4] = {0.f, 0.f, 0.f, 0.f}, Dhi[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int G = 0; G < 8; G++) {
                const bool on = gl == G;
                const uint32_t b0 = on ? xv.x : 0u, b1 = on ? xv.y : 0u;
                const uint32_t a0 = st_pair<W>(w, G, 0), a1 = st_pair<W>(w, G, 1), a2 = st_pair<W>(w, G, 2), a3 = st_pair<W>(w, G, 3);
                if (G < 4) mma16816(Dlo, a0, a1, a2, a3, b0, b1);
                else mma16816(Dhi, a0, a1, a2, a3, b0, b1);
            }
            const float2 Xv = *(const float2 *)(X + kc * 16 + at * 8 + 2 * t);
            const uint32_t fa = (uint32_t)(fr >> (8 * Q * at));
#pragma unroll
            for (int f = 0; f < 4; f++) {
                const int h = f >> 1, e = f & 1;
                const float4 C = qs[at * 8 + 2 * t + e];
                const uint32_t fld = (fa >> (2 * Q * f)) & FM;
                const float s1 = fmaf(u2f(fld & QM), C.x, C.y), kz = fmaf(u2f(fld >> Q), C.z, C.w);
                acc[h][0] = fmaf(s1, fmaf(-kz, e ? Xv.y : Xv.x, Dlo[f] + Dhi[f]), acc[h][0]);
            }
        } else {
            constexpr int GPS = 8 / NB;
            const int act_l = gl % NB, gi_l = gl / NB; /* the B column this lane supplies */
#pragma unroll
            for (int sg = 0; sg < NB; sg++) {
                const uint2 xv = *(const uint2 *)(x16 + (size_t)act_l * Kpad + cbase + 16 * (sg * GPS + gi_l) + 4 * t);
                float D[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
                for (int gi = 0; gi < GPS; gi++) {
                    const int G = sg * GPS + gi;
                    const bool on = GPS == 1 || gi_l == gi;
                    mma16816(D, st_pair<W>(w, G, 0), st_pair<W>(w, G, 1), st_pair<W>(w, G, 2), st_pair<W>(w, G, 3), on ? xv.x : 0u, on ? xv.y : 0u);
                }
                const int g16 = at * 8 + sg * GPS + (2 * t) / NB; /* the group of this lane's columns */
                const float4 C = qs[g16];
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    const uint32_t fld = spqr_stream_field(fp, Q, gl + 8 * h, g16);
                    const float s1 = fmaf(u2f(fld & QM), C.x, C.y), kz = fmaf(u2f(fld >> Q), C.z, C.w);
#pragma unroll
                    for (int e = 0; e < 2; e++) {
                        const int be = (2 * t + e) % NB;
                        acc[h][e] = fmaf(s1, fmaf(-kz, X[(size_t)be * (Kpad / 16) + kc * 16 + g16], D[2 * h + e]), acc[h][e]);
                    }
                }
            }
        }
    }
    __syncwarp(); /* qs is rewritten by the next SA */
}

/* The warp's sums of row tile tl (of the block) into red[tl][warp][16][NB], with its outlier row sums
 * rs[16][NB] (then zeroed), and acc zeroed. */
template <int NB, int NW>
__device__ __forceinline__ void st_flush(float *red, int tl, int warp, float (&acc)[2][2], float *rs, int lane) {
    const int gl = lane >> 2, t = lane & 3;
    __syncwarp(); /* rs complete */
#pragma unroll
    for (int h = 0; h < 2; h++)
#pragma unroll
        for (int e = 0; e < (NB == 1 ? 1 : 2); e++) {
            float v = acc[h][e];
            if (NB <= 2) { v += __shfl_xor_sync(0xffffffffu, v, 1); v += __shfl_xor_sync(0xffffffffu, v, 2); }
            else if (NB == 4) v += __shfl_xor_sync(0xffffffffu, v, 2);
            acc[h][e] = 0.f;
            /* the lanes that now hold (row gl + 8h, activation be) */
            const bool holder = NB <= 2 ? t == 0 : NB == 4 ? t < 2 : true;
            const int be = NB == 1 ? 0 : (2 * t + e) % NB, row = gl + 8 * h;
            if (holder) {
                float *o = rs + row * NB + be;
                red[(((size_t)tl * NW + warp) * 16 + row) * NB + be] = v + *o;
                *o = 0.f;
            }
        }
    __syncwarp();
}

template <int W, int NB, int NW>
__global__ void __launch_bounds__((NW + 1) * 32, NW == 8 ? 2 : 1) k_stream(const st_args a) {
    extern __shared__ __align__(128) uint8_t sm[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const uint32_t b = blockIdx.x;
    const uint64_t s0 = spqr_stream_block_start(a.T, a.G, b), s1 = spqr_stream_block_start(a.T, a.G, b + 1);
    const int nsa = (int)(s1 - s0), nst = (nsa + NW - 1) / NW;
    const int RB = a.rb;
    uint64_t *full = (uint64_t *)(sm + a.off_bar), *empty = full + a.ns, *obar = empty + a.ns; /* obar[0]: osa, [1]: entries */
    uint8_t *ring = sm + a.off_ring;
    uint32_t *osa_s = (uint32_t *)(sm + a.off_osa), *oent_s = (uint32_t *)(sm + a.off_oent);
    const uint64_t oa0 = s0 & ~3ull; /* osa copy: [oa0, oa0 + on) */
    if (threadIdx.x == 0) {
        for (int i = 0; i < a.ns; i++) { mbar_init(full + i, 1); mbar_init(empty + i, NW); }
        mbar_init(obar, 1);
        mbar_init(obar + 1, 1);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    pdl_launch_dependents();

    if (warp == NW) { /* ---- producer ---- */
        if (lane != 0) return;
        const unsigned on = (unsigned)(((s1 + 1 + 3) & ~3ull) - oa0);
        mbar_expect_tx(obar, on * 4);
        bulk_copy(osa_s, a.osa + oa0, on * 4, obar);
        const uint32_t o0 = __ldg(a.osa + s0), o1 = __ldg(a.osa + s1);
        for (int st = 0; st <= nst; st++) {
            if (st == min(nst, a.ns)) { /* the outlier entries, once the first stages are on their way */
                const uint32_t ea = o0 & ~3u, eb = (o1 + 3) & ~3u;
                if (eb > ea && (int)(eb - ea) <= a.ocap) { mbar_expect_tx(obar + 1, (eb - ea) * 4); bulk_copy(oent_s, a.oent + ea, (eb - ea) * 4, obar + 1); }
            }
            if (st == nst) break;
            const int buf = st % a.ns;
            if (st >= a.ns) mbar_wait(empty + buf, ((st / a.ns) - 1) & 1);
            const int cnt = min(NW, nsa - st * NW);
            mbar_expect_tx(full + buf, (unsigned)(cnt * RB));
            bulk_copy(ring + (size_t)buf * NW * RB, a.recs + (s0 + (uint64_t)st * NW) * RB, (unsigned)(cnt * RB), full + buf);
        }
        return;
    }

    /* ---- consumers ---- */
    const int tid = threadIdx.x, nthr = NW * 32, Kpad = a.nk * 256;
    __half *x16 = (__half *)(sm + a.off_x16);
    float *X = (float *)(sm + a.off_X), *red = (float *)(sm + a.off_red), *rs = (float *)(sm + a.off_rs) + warp * 16 * NB;
    float4 *qs = (float4 *)(sm + a.off_qs) + warp * 16;
    for (unsigned i = tid; i < a.red_tiles * NW * 16 * NB; i += nthr) red[i] = 0.f;
    for (int i = lane; i < 16 * NB; i += 32) rs[i] = 0.f;
    pdl_wait(); /* x is the previous kernel's output */

    /* x16[bb][iperm[i]] = x[b0 + bb][i] (fp16), zero past cols and for activations past n */
    for (int bb = 0; bb < NB; bb++) {
        const bool live = a.b0 + bb < a.n;
        for (int j = (live ? a.cols : 0) + tid; j < Kpad; j += nthr) x16[(size_t)bb * Kpad + j] = __float2half(0.f);
    }
    for (int i0 = tid * 8; i0 < a.cols; i0 += nthr * 8) { /* 8 consecutive columns a thread: 16-byte loads where aligned */
        const bool vec = a.xvec && i0 + 8 <= a.cols;
        uint32_t ip[8];
        if (vec && a.iperm) {
            const uint4 u = __ldg((const uint4 *)(a.iperm + i0));
            const uint32_t uw[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
            for (int k = 0; k < 8; k++) ip[k] = (uw[k >> 1] >> (16 * (k & 1))) & 0xffffu;
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) ip[k] = i0 + k < a.cols ? (a.iperm ? __ldg(a.iperm + i0 + k) : (uint32_t)(i0 + k)) : 0xffffffffu;
        }
#pragma unroll
        for (int bb = 0; bb < NB; bb++) {
            if (a.b0 + bb >= a.n) break;
            const size_t xo = (size_t)(a.b0 + bb) * a.cols + i0;
            float v[8];
            if (vec && a.xf32) {
                const float4 p = __ldg((const float4 *)((const float *)a.x + xo)), q = __ldg((const float4 *)((const float *)a.x + xo) + 1);
                v[0] = p.x; v[1] = p.y; v[2] = p.z; v[3] = p.w; v[4] = q.x; v[5] = q.y; v[6] = q.z; v[7] = q.w;
            } else if (vec) {
                const uint4 u = __ldg((const uint4 *)((const __half *)a.x + xo));
                const uint32_t uw[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
                for (int k = 0; k < 8; k++) v[k] = h2f_lo(uw[k >> 1] >> (16 * (k & 1)));
            } else {
#pragma unroll
                for (int k = 0; k < 8; k++)
                    v[k] = ip[k] == 0xffffffffu ? 0.f : a.xf32 ? __ldg((const float *)a.x + xo + k) : __half2float(__ldg((const __half *)a.x + xo + k));
            }
#pragma unroll
            for (int k = 0; k < 8; k++)
                if (ip[k] != 0xffffffffu) x16[(size_t)bb * Kpad + ip[k]] = __float2half_rn(v[k]);
        }
    }
    consumers_sync<NW>();
    for (int i = tid; i < NB * (Kpad / 16); i += nthr) {
        const uint4 *p = (const uint4 *)(x16 + (size_t)i * 16);
        const uint4 u0 = p[0], u1 = p[1];
        const uint32_t hw[8] = {u0.x, u0.y, u0.z, u0.w, u1.x, u1.y, u1.z, u1.w};
        float sx = 0.f;
#pragma unroll
        for (int k = 0; k < 8; k++) { sx += h2f_lo(hw[k]); sx += h2f_hi(hw[k]); }
        X[i] = sx;
    }
    consumers_sync<NW>();

    /* the block's outlier offsets, then (if they fit) its entries */
    mbar_wait(obar, 0);
    const uint32_t o0 = osa_s[s0 - oa0], o1 = osa_s[s1 - oa0], ea = o0 & ~3u, eb = (o1 + 3) & ~3u;
    const bool ofit = (int)(eb - ea) <= a.ocap;
    const uint32_t *ent = ofit ? oent_s - ea : a.oent;
    if (ofit && eb > ea) mbar_wait(obar + 1, 0);

    const uint64_t rt0 = s0 / a.nk;
    float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
    int tile = -1;
    /* this warp's SA s = s0 + st·NW + warp as (row tile rt, column chunk kc), advanced by NW a stage */
    int rt = (int)((s0 + warp) / a.nk), kc = (int)((s0 + warp) % a.nk);
    for (int st = 0; st < nst; st++) {
        const int buf = st % a.ns;
        mbar_wait(full + buf, (st / a.ns) & 1);
        const uint64_t s = s0 + (uint64_t)st * NW + warp;
        if (st) {
            kc += NW;
            while (kc >= a.nk) { kc -= a.nk; rt++; }
        }
        if (s < s1) {
            if (rt != tile) {
                if (tile >= 0) st_flush<NB, NW>(red, tile - (int)rt0, warp, acc, rs, lane);
                tile = rt;
            }
            st_sa<W, NB>(a, ring + ((size_t)buf * NW + warp) * RB, kc, x16, X, qs, acc, lane);
            /* the SA's outliers, 32 entries a round (sorted by row): δ·x16 per lane, a segmented sum over the
             * lanes of each row (Hillis-Steele, the rows non-decreasing across lanes), the last lane of a
             * row adds it to the warp's row sum: deterministic */
            const uint32_t e0 = osa_s[s - oa0], e1 = osa_s[s + 1 - oa0];
            for (uint32_t k0 = e0; k0 < e1; k0 += 32) {
                const uint32_t k = k0 + lane;
                const uint32_t e = k < e1 ? ent[k] : 0u;
                const int row = k < e1 ? (int)((e >> 8) & 15u) : 16, col = kc * 256 + (int)(e & 255u);
                const float d = h2f_hi(e);
                float v[NB];
#pragma unroll
                for (int bb = 0; bb < NB; bb++) v[bb] = d * __half2float(x16[(size_t)bb * Kpad + col]);
#pragma unroll
                for (int dd = 1; dd < 32; dd *= 2) {
                    const int rp = __shfl_up_sync(0xffffffffu, row, dd);
                    const bool same = lane >= dd && rp == row;
#pragma unroll
                    for (int bb = 0; bb < NB; bb++) {
                        const float vp = __shfl_up_sync(0xffffffffu, v[bb], dd);
                        if (same) v[bb] += vp;
                    }
                }
                const int rn = __shfl_down_sync(0xffffffffu, row, 1);
                if (row < 16 && (lane == 31 || rn != row))
#pragma unroll
                    for (int bb = 0; bb < NB; bb++) rs[row * NB + bb] += v[bb];
                __syncwarp();
            }
        }
        __syncwarp();
        if (lane == 0) mbar_arrive(empty + buf);
    }
    if (tile >= 0) st_flush<NB, NW>(red, tile - (int)rt0, warp, acc, rs, lane);
    consumers_sync<NW>();

    /* ---- the block's row tiles: y, or a piece of a shared tile ---- */
    const int ntl = nsa > 0 ? (int)((s1 - 1) / a.nk - rt0 + 1) : 0;
    __shared__ int s_last[2];
    for (int i = tid; i < ntl * 16 * NB; i += nthr) {
        const int tl = i / (16 * NB), row = (i / NB) % 16, bb = i % NB;
        const uint64_t rt = rt0 + tl;
        float v = 0.f;
#pragma unroll
        for (int w = 0; w < NW; w++) v += red[(((size_t)tl * NW + w) * 16 + row) * NB + bb];
        uint32_t first, last;
        spqr_stream_tile_blocks(a.T, a.G, a.nk, rt, &first, &last);
        if (first == last) {
            const int r = (int)rt * 16 + row;
            if (r < a.rows && a.b0 + bb < a.n) a.y[(size_t)(a.b0 + bb) * a.rows + r] = v;
        } else {
            a.part[((rt * a.pmax + (b - first)) * 16 + row) * NB + bb] = v;
            __threadfence();
        }
    }
    consumers_sync<NW>();
    if (tid < 2 && ntl > 0) { /* the first and the last tile may be shared */
        const uint64_t rt = tid == 0 ? rt0 : rt0 + ntl - 1;
        uint32_t first, last;
        spqr_stream_tile_blocks(a.T, a.G, a.nk, rt, &first, &last);
        s_last[tid] = 0;
        if (first != last && (tid == 0 || ntl > 1)) s_last[tid] = atomicAdd(a.cnt + rt, 1u) == last - first;
    }
    consumers_sync<NW>();
    for (int k = 0; k < 2; k++) {
        if (!s_last[k] || ntl == 0) continue;
        const uint64_t rt = k == 0 ? rt0 : rt0 + ntl - 1;
        uint32_t first, last;
        spqr_stream_tile_blocks(a.T, a.G, a.nk, rt, &first, &last);
        __threadfence();
        for (int i = tid; i < 16 * NB; i += nthr) {
            const int row = i / NB, bb = i % NB, r = (int)rt * 16 + row;
            float v = 0.f;
            for (uint32_t p = 0; p <= last - first; p++) v += __ldcg(a.part + ((rt * a.pmax + p) * 16 + row) * NB + bb);
            if (r < a.rows && a.b0 + bb < a.n) a.y[(size_t)(a.b0 + bb) * a.rows + r] = v;
        }
        if (tid == 0) a.cnt[rt] = 0u;
    }
}

/* ---- host side ------------------------------------------------------------------------------------ */

extern "C" spqr_status spqr_cuda_stream_upload(const spqr_stream_layout *L, spqr_cuda_stream **out, spqr_error *err) {
    spqr_cuda_stream *d = (spqr_cuda_stream *)calloc(1, sizeof *d);
    if (!d) return spqr_set_err(err, SPQR_E_NOMEM, "cuda: out of memory");
    d->rows = L->rows; d->cols = L->cols; d->wbits = L->wbits; d->qq_bits = L->qq_bits; d->nrt = L->nrt; d->nk = L->nk;
    d->rec_bytes = L->rec_bytes; d->nsa = L->nsa; d->n_out = L->n_out; d->bytes = spqr_stream_bytes(L);
    *out = d;
    const size_t nosa = ((L->nsa + 1 + 3) & ~3ull) + 4, nent = spqr_stream_oent_len(L->n_out);
    CK(cudaMalloc(&d->recs, L->nsa * L->rec_bytes), "stream upload");
    CK(cudaMemcpy(d->recs, L->recs, L->nsa * L->rec_bytes, cudaMemcpyHostToDevice), "stream upload");
    CK(cudaMalloc(&d->osa, nosa * 4), "stream upload");
    CK(cudaMemset(d->osa, 0, nosa * 4), "stream upload");
    CK(cudaMemcpy(d->osa, L->osa, (L->nsa + 1) * 4, cudaMemcpyHostToDevice), "stream upload");
    CK(cudaMalloc(&d->oent, nent * 4), "stream upload");
    CK(cudaMemcpy(d->oent, L->oent, nent * 4, cudaMemcpyHostToDevice), "stream upload");
    if (L->iperm) {
        CK(cudaMalloc(&d->iperm, (size_t)L->cols * 2), "stream upload");
        CK(cudaMemcpy(d->iperm, L->iperm, (size_t)L->cols * 2, cudaMemcpyHostToDevice), "stream upload");
    }
    CK(cudaMalloc(&d->cnt, (size_t)L->nrt * 4), "stream upload");
    CK(cudaMemset(d->cnt, 0, (size_t)L->nrt * 4), "stream upload");
    return SPQR_OK;
}

extern "C" void spqr_cuda_stream_free(spqr_cuda_stream *d) {
    if (!d) return;
    cudaFree(d->recs); cudaFree(d->osa); cudaFree(d->oent); cudaFree(d->iperm); cudaFree(d->cnt);
    free(d);
}

extern "C" uint64_t spqr_cuda_stream_bytes(const spqr_cuda_stream *d) { return d->bytes; }

/* Shared memory of a launch with NW consumer warps (offsets into a), or 0 when it exceeds ST_SMEM(NW). */
static size_t st_plan(const spqr_cuda_stream *d, int NB, int NW, uint32_t G, int ns, int ocap, st_args *a) {
    const uint64_t T = d->nsa, per = (T + G - 1) / G;
    const size_t Kpad = (size_t)d->nk * 256;
    size_t o = 0;
    auto take = [&](size_t bytes, size_t align) { o = (o + align - 1) / align * align; size_t r = o; o += bytes; return (unsigned)r; };
    a->ns = ns;
    a->ocap = ocap;
    a->red_tiles = (unsigned)(per / d->nk + 2);
    a->off_ring = take((size_t)ns * NW * d->rec_bytes, 128);
    a->off_x16 = take(Kpad * 2 * NB, 16);
    a->off_X = take(Kpad / 16 * 4 * NB, 16);
    a->off_oent = take((size_t)ocap * 4, 16);
    a->off_osa = take((size_t)(per + 12) * 4, 16); /* the block's SA offsets, copied from a 16-byte boundary */
    a->off_qs = take((size_t)NW * 16 * 16, 16);
    a->off_rs = take((size_t)NW * 16 * NB * 4, 16);
    a->off_red = take((size_t)a->red_tiles * NW * 16 * NB * 4, 16);
    a->off_bar = take((2 * ns + 2) * 8, 8);
    return o <= (size_t)ST_SMEM(NW) ? o : 0;
}

template <int W, int NB, int NW>
static cudaError_t st_launch_k(const st_args &a, size_t smem, spqr_cuda_ctx *c, int pdl) {
    const cudaError_t e = spqr_cuda_smem_optin(c, (const void *)k_stream<W, NB, NW>, (int)ST_SMEM(NW));
    if (e != cudaSuccess) return e;
    const spqr_launch l(dim3((unsigned)a.G), dim3((NW + 1) * 32), smem, c->stream, pdl);
    return cudaLaunchKernelEx(&l.cfg, k_stream<W, NB, NW>, a);
}

/* NW = 16 only for one activation (a lab variant) */
template <int W>
static cudaError_t st_launch_w(const st_args &a, int NB, int NW, size_t smem, spqr_cuda_ctx *c, int pdl) {
    if (NW == 8) {
        switch (NB) {
        case 1: return st_launch_k<W, 1, 8>(a, smem, c, pdl);
        case 2: return st_launch_k<W, 2, 8>(a, smem, c, pdl);
        case 4: return st_launch_k<W, 4, 8>(a, smem, c, pdl);
        default: return st_launch_k<W, 8, 8>(a, smem, c, pdl);
        }
    }
    if (NW == 16) return st_launch_k<W, 1, 16>(a, smem, c, pdl);
    switch (NB) {
    case 1: return st_launch_k<W, 1, 24>(a, smem, c, pdl);
    case 2: return st_launch_k<W, 2, 24>(a, smem, c, pdl);
    case 4: return st_launch_k<W, 4, 24>(a, smem, c, pdl);
    default: return st_launch_k<W, 8, 24>(a, smem, c, pdl);
    }
}

static cudaError_t st_launch(const spqr_cuda_stream *d, const st_args &a, int NB, int NW, size_t smem, spqr_cuda_ctx *c, int pdl) {
    return d->wbits == 2 ? st_launch_w<2>(a, NB, NW, smem, c, pdl) : d->wbits == 3 ? st_launch_w<3>(a, NB, NW, smem, c, pdl)
                                                                                  : st_launch_w<4>(a, NB, NW, smem, c, pdl);
}

/* Blocks for T SAs: one per SM (with NW = 8 the next product's blocks take the second slot), fewer on
 * small matrices so that every warp has an SA. */
static uint32_t st_grid(const spqr_cuda_ctx *c, uint64_t T, int NW) {
    const uint64_t sms = c->sms > 0 ? (uint64_t)c->sms : 132, g = T / NW;
    return (uint32_t)(g < 1 ? 1 : g < sms ? g : sms);
}

extern "C" spqr_status spqr_cuda_stream_matmul(spqr_cuda_ctx *c, const spqr_cuda_stream *d, const void *x, int xf32, int n, float *y,
                                               spqr_error *err) {
    const uint64_t T = d->nsa;
    int NW = c->stream_nw == 8 || c->stream_nw == 16 || c->stream_nw == 24 ? c->stream_nw : 24;
    if (NW == 16 && n > 1) NW = 24;
    uint32_t G = c->stream_grid > 0 ? (uint32_t)c->stream_grid : st_grid(c, T, NW);
    if (G > T) G = (uint32_t)T;
    const uint32_t gmin = (d->nrt + ST_TILES - 3) / (ST_TILES - 2); /* at most ST_TILES row tiles a block (red) */
    if (G < gmin) G = gmin;
    /* passes of up to NBmax activations: the widest whose x fits beside a ring of 2 stages or more */
    st_args a = {};
    const int ocap = NW == 8 ? 4096 : 8192;
    int NBmax = NW == 16 ? 1 : 8;
    while (NBmax > 1 && !st_plan(d, NBmax, NW, G, 2, ocap, &a)) NBmax /= 2;
    if (!st_plan(d, NBmax, NW, G, 2, ocap, &a)) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "cuda: %u columns exceed the streaming kernel's shared memory", d->cols);
    const uint32_t pmax = spqr_stream_pieces_max(T, G, d->nk); /* the partial-sum workspace's stride */
    spqr_status st = spqr_cuda_ws_reserve(c, (size_t)d->nrt * pmax * 16 * NBmax * 4, err);
    if (st) return st;
    a.recs = d->recs; a.osa = d->osa; a.oent = d->oent; a.iperm = d->iperm; a.x = x; a.y = y; a.part = (float *)c->ws; a.cnt = d->cnt;
    a.T = T; a.rows = (int)d->rows; a.cols = (int)d->cols; a.nk = (int)d->nk; a.G = (int)G; a.n = n; a.xf32 = xf32; a.pmax = (int)pmax;
    a.q = (int)d->qq_bits; a.rb = (int)d->rec_bytes;
    a.xvec = d->cols % 8 == 0 && (uintptr_t)x % 16 == 0;
    for (int b0 = 0; b0 < n; b0 += NBmax) {
        const int nb = n - b0 < NBmax ? n - b0 : NBmax;
        int B = 1;
        while (B < nb) B *= 2;
        st_args ap = a;
        ap.b0 = b0;
        size_t sm = 0; /* the deepest ring that fits (up to 4 stages; with NW = 24, 6) */
        for (int ns = NW == 8 ? 4 : 6; ns >= 2 && !sm; ns--) sm = st_plan(d, B, NW, G, ns, ocap, &ap);
        CK(st_launch(d, ap, B, NW, sm, c, c->pdl), "stream kernel");
    }
    return SPQR_OK;
}

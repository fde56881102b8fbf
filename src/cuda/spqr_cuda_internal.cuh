/*
 * spqr_cuda_internal.cuh — the uploaded matrix's device arrays and device helpers for the file's
 * storage layout, shared by spqr_cuda.cu and the kernel lab (bench/cuda). CUDA C++ only.
 *
 * Tiled device layout (built by spqr_cuda_upload from the storage layout):
 *   packet  = 32 consecutive stored columns of one row; npq = ceil(cols/32) rounded up to a
 *             multiple of 4 (a "quad" of packets = 128 columns = one 16-byte load per code word)
 *   codes   uint32[rows][W][npq]: word k of packet P of row r at (r*W + k)*npq + P. Within a packet,
 *           pair t (stored columns 2t, 2t+1) sits in word t/F, slot t%F (F = 16/W): the two codes at
 *           bits [W*slot, +W) and [16 + W*slot, +W), so (word >> W*slot) & mask | 0x64006400 is the
 *           fp16 pair (1024 + c0, 1024 + c1). W = 3: pairs 0..14 in slots, pair 15 in the spare bits
 *           15 and 31 of words 0, 1, 2 (bit b of c0 at bit 15 of word b, of c1 at bit 31).
 *           Columns >= cols hold code 0.
 *   SpQR stat  uint8[rows][gpad]: scale code | zero code << 4 (qq_bits <= 4)
 *   GPTQ stat  uint32[rows][gpad]: fp16 scale | integer zero << 16
 *   qq      uint2[row_blocks][gpad]: the file's 4 fp16 second-level statistics
 *           gpad = groups padded to whole quads (β1 <= 32: npq*32/β1; else ceil(npq*32/β1))
 *   outliers row_ptr uint32[rows+1], col uint16[n] (stored order), delta fp16[n] = val − dense
 *           weight (the dense kernels add delta·x)
 *   x workspace for the tiled kernels, lane-interleaved so that the 32 lanes of a warp (lane L
 *           owns quad q = 32*it + L) read consecutive float2 at each (packet p, pair t):
 *           pair jp = (q*4 + p)*16 + t of permuted x for activation b sits at
 *           ((((q/32)*4 + p)*16 + t)*32 + q%32)*B + b; zero past cols and past n.
 *           The generic kernels use the linear layout jp*B + b.
 */
#ifndef SPQR_CUDA_INTERNAL_CUH
#define SPQR_CUDA_INTERNAL_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda/spqr_cuda.h"

struct spqr_cuda_ctx {
    cudaStream_t stream;
    int tiled_rpw;   /* rows per warp of the tiled kernels, 0: default (a tuning knob for the lab) */
    cublasHandle_t blas;
    void *ws;        /* device workspace */
    size_t ws_size;
};

struct spqr_cuda_qmatrix {
    uint32_t kind, rows, cols, wbits, gs, qq_bits, qq_gs;
    uint64_t n_out, groups, row_blocks;
    spqr_qlayout lay;
    /* storage layout: the blob as in the file */
    uint8_t *blob;
    const int32_t *perm; /* into blob, NULL: identity */
    /* tiled layout (tiled == 0: not built) */
    int tiled;
    int gp;              /* groups per packet: 1, 2, 4 for β1 = 32, 16, 8; 0: β1 a multiple of 32 above 32, or GPTQ */
    uint32_t npq, nq, gpad;
    uint32_t *tcodes;
    void *tstat;
    uint2 *tqq;
    uint32_t *orp;
    uint16_t *ocol;
    __half *odelta;
    uint64_t bytes_tiled, bytes_raw;
};

/* w-bit field i of an LSB-first bit stream starting 4-byte aligned (8 readable bytes past it). */
__device__ __forceinline__ unsigned raw_bits(const uint8_t *row, uint64_t i, unsigned w) {
    uint64_t bit = i * w;
    const uint32_t *p = (const uint32_t *)row + (bit >> 5);
    return __funnelshift_r(__ldg(p), __ldg(p + 1), (unsigned)(bit & 31)) & ((1u << w) - 1);
}

/* Scale and zero of (row r, group g) from the storage layout, in float32 exactly as the reference
 * decoder (spqr_qview_stats). */
__device__ __forceinline__ void raw_stats(const spqr_cuda_qmatrix &m, const uint8_t *blob, uint32_t r, uint32_t g, float *s, float *z) {
    if (m.kind == SPQR_TK_SPQR) {
        const uint16_t *q = (const uint16_t *)(blob + m.lay.qq) + 4 * ((uint64_t)(r / m.qq_gs) * m.groups + g);
        const uint8_t *srow = blob + m.lay.stats + (uint64_t)r * m.lay.stat_stride;
        unsigned sc = raw_bits(srow, 2ull * g, m.qq_bits), zc = raw_bits(srow, 2ull * g + 1, m.qq_bits);
        float ss = __half2float(__ushort_as_half(q[0])), sz = __half2float(__ushort_as_half(q[1]));
        float zs = __half2float(__ushort_as_half(q[2])), zz = __half2float(__ushort_as_half(q[3]));
        *s = __fmul_rn(ss, __fsub_rn((float)sc, sz));
        *z = __fmul_rn(zs, __fsub_rn((float)zc, zz));
    } else {
        *s = __half2float(__ushort_as_half(((const uint16_t *)(blob + m.lay.scales))[(uint64_t)r * m.groups + g]));
        *z = (float)raw_bits(blob + m.lay.zeros + (uint64_t)r * m.lay.zero_stride, g, m.wbits);
    }
}

/* The dense (pre-outlier) weight at (r, stored column j), as the reference decoder computes it. */
__device__ __forceinline__ float raw_weight(const spqr_cuda_qmatrix &m, const uint8_t *blob, uint32_t r, uint32_t j) {
    float s, z;
    raw_stats(m, blob, r, j / m.gs, &s, &z);
    unsigned c = raw_bits(blob + m.lay.codes + (uint64_t)r * m.lay.code_stride, j, m.wbits);
    return __fmul_rn(s, __fsub_rn((float)c, z));
}

/* Index of pair jp in the lane-interleaved x layout (without the activation factor). */
__host__ __device__ __forceinline__ uint32_t xp_inter(uint32_t jp) {
    const uint32_t q = jp >> 6, p = (jp >> 4) & 3, t = jp & 15;
    return ((((q >> 5) * 4 + p) * 16 + t) << 5) + (q & 31);
}

/* Element (stored column c, activation b) of an x workspace with B activations per pair. */
__device__ __forceinline__ float xp_at(const float2 *xp, int B, uint32_t c, int b, bool inter = false) {
    const uint32_t jp = inter ? xp_inter(c >> 1) : (c >> 1);
    return ((const float *)xp)[((size_t)jp * B + b) * 2 + (c & 1)];
}

/* Launches the x gather: pair jp = (x[b0+b][perm[2jp]], x[b0+b][perm[2jp+1]]) as floats at
 * jp*B + b (inter = 0) or xp_inter(jp)*B + b (inter = 1; npairs then a multiple of 2048), zero
 * past cols or past n; npairs pairs. */
cudaError_t spqr_cuda_gather_x(const __half *x, int n, int b0, int B, uint32_t cols, const int32_t *perm, uint32_t npairs, float2 *xp,
                               cudaStream_t st, int inter = 0);

#endif

/*
 * mma_layout.h — the device layout of the tensor-core GEMV/GEMM kernel (v7, SPQR_CUDA_MMA), built on
 * the host from a validated spqr_qview. Plain C: the builder (mma_layout.c) is in every build, so
 * the CPU tests check this layout, and the kernel's decoding of it, with no GPU (an emulator of the
 * kernel's fragment arithmetic, tests/test_kernels_random.c). The index helpers below are the ones
 * the CUDA kernel (spqr_cuda_mma.cu) uses.
 *
 * The kernel computes Y = X Wᵀ with mma.sync m16n8k16 (fp16 A = weights, fp16 B = activations, fp32
 * accumulation). A warp owns a ROW TILE of 32 rows (two m16 tiles, mt = 0, 1) and walks its COLUMN
 * UNITS of 128 stored columns (two 64-column chunks, kc = 0, 1). Inside a chunk the k dimension is
 * permuted so that each lane's fragment elements come from ONE group of 16 columns:
 *
 *   lane = 4·gl + t (gl = lane >> 2, t = lane & 3).  At k-step s (0..3) of chunk kc, MMA index k
 *   (0..15) is stored column  64·kc + 16·((k & 7) >> 1) + 4·s + (((k >> 3) << 1) | (k & 1))  of the unit.
 *   So lane t's A and B elements are columns [16t, 16t + 16) of the chunk: one (row, 16-column)
 *   "segment" per row, whose statistics the lane decodes once (no replication across the quad).
 *
 *   A registers at step s (m-tile mt; rows gl and gl + 8 of it; segment columns 2p, 2p + 1):
 *     a0 = (row gl,     p = 2s)   a1 = (row gl + 8, p = 2s)
 *     a2 = (row gl,     p = 2s+1) a3 = (row gl + 8, p = 2s+1)
 *   B registers: x_b at segment columns (4s, 4s+1) and (4s+2, 4s+3), b = 8·nt + gl.
 *
 * Per lane and unit, 64 code pairs, pair q = ((kc·2 + mt)·2 + h)·8 + p (h: row gl or gl + 8), in
 * 4W 32-bit words ("fp16-magic" order: the two codes of a pair at bit offsets o and 16 + o, so
 * (word >> o) & mask | 0x64006400 is the fp16 pair (1024 + c0, 1024 + c1)):
 *     W = 2: pair q in word q / 8 at o = 2 (q % 8);   W = 4: word q / 4, o = 4 (q % 4)
 *     W = 3: q < 60: word q / 5, o = 3 (q % 5);  q = 60 + i: bit b of c0 at bit 15 and of c1 at
 *            bit 31 of word 3i + b (the spare bits), so w3 stays exactly 3 bits
 *   codes   uint32 [nrt][nku][W][32 lanes][4]: word k of a lane at ((unit·W + k/4)·32 + lane)·4 + k%4,
 *           i.e. W coalesced 16-byte loads per lane and unit
 *   fields  SpQR: uint32 [nrt][nku][32][2]: byte f = (kc·2 + mt)·2 + h of a lane is
 *           sc | zc << 4 (q <= 4) of its segment's (row, group); GPTQ: uint32 [nrt·32][gpad]:
 *           fp16 scale | zero << 16 per (row, group), row-major
 *   qq      SpQR: uint16 [rb_pad][gpad][4]: the file's fp16 (ss, sz, zs, zz), zero past the end
 *   outliers per (row tile, K-slice, row of the tile) segments: optr [nrt·S·32 + 1], ocol uint16
 *           (stored column), odelta fp16 = value − the exact dense weight there
 * Rows past `rows` and columns past `cols` hold code 0 and zero statistics (weight 0).
 *
 * Dequantization in the kernel (per segment, from the reference decoder's fp32 s and z):
 *   zr = rint(z) (clamped to ±512), k1 = 1024 + zr, hs = fp16(s), hk = fp16(−s·(z − zr));
 *   w = fma(((1024 + c) − k1), hs, hk) in fp16 (the subtraction is exact: c − zr is a small integer)
 * so the weight is within fp16 rounding of s·(c − z). GPTQ: zr = z (integer), hk = 0.
 *
 * K-slices: the grid is (nrt, S); block (rt, ks) takes units [ks·ups, ks·ups + ups), its 4 warps
 * units ks·ups + w, + 4, ...; with S > 1 the blocks of a row tile add their partial sums in slice
 * order (deterministic). S is fixed at build time (the outlier segments depend on it).
 */
#ifndef SPQR_MMA_LAYOUT_H
#define SPQR_MMA_LAYOUT_H

#ifdef __cplusplus
extern "C" {
#endif

#include "format/qmatrix.h"

#ifdef __CUDACC__
#define SPQR_HD __host__ __device__ __forceinline__
#else
#define SPQR_HD static inline
#endif

#define SPQR_MMA_ROWS 32   /* rows per row tile */
#define SPQR_MMA_UCOLS 128 /* stored columns per unit */
#define SPQR_MMA_WARPS 4   /* warps per block */

typedef struct spqr_mma_layout {
    uint32_t kind, rows, cols, wbits, gs, qq_bits, qq_gs;
    uint32_t nrt, nku, S, ups, gpad, rb_pad;
    uint64_t n_out;
    uint32_t *codes;   /* nrt·nku·W·128 words */
    uint32_t *fields;  /* SpQR: nrt·nku·64 words; GPTQ: nrt·32·gpad words */
    uint16_t *qq;      /* SpQR: rb_pad·gpad·4; NULL for GPTQ */
    uint32_t *optr;    /* nrt·S·32 + 1 */
    uint16_t *ocol;    /* n_out (at least one element) */
    uint16_t *odelta;  /* n_out fp16 */
    int32_t *perm;     /* cols, or NULL (identity) */
} spqr_mma_layout;

/* Whether the kernel takes v: wbits 2..4, groups (β1) a power of two >= 16, at most 65535 columns;
 * SpQR with qq_bits <= 4 and β2 a multiple of 16. */
bool spqr_mma_supported(const spqr_qview *v);

/* K-slices for a matrix on a device with `sms` multiprocessors: about 8 blocks per SM in all, at
 * least 8 units (2 per warp) per slice. */
uint32_t spqr_mma_default_slices(uint32_t rows, uint32_t cols, int sms);

/* Builds the layout of v with S K-slices (0: spqr_mma_default_slices for 132 SMs; clamped to the
 * number of units). SPQR_E_UNSUPPORTED if !spqr_mma_supported(v), SPQR_E_NOMEM. */
spqr_status spqr_mma_build(const spqr_qview *v, uint32_t S, spqr_mma_layout *out, spqr_error *err);
void spqr_mma_free(spqr_mma_layout *L);

/* Bytes of the arrays one product reads (codes, fields, qq, outliers, perm). */
uint64_t spqr_mma_bytes(const spqr_mma_layout *L);

/* ---- index helpers shared with the kernel ------------------------------------------------------ */

/* The fp16-magic word (1024 + c0) | (1024 + c1) << 16 of pair q from a lane's 4W words. */
SPQR_HD uint32_t spqr_mma_pair(const uint32_t *w, unsigned W, unsigned q) {
    if (W == 3 && q >= 60) {
        const unsigned i = 3 * (q - 60);
        return ((w[i] >> 15) & 0x10001u) | ((w[i + 1] >> 14) & 0x20002u) | ((w[i + 2] >> 13) & 0x40004u) | 0x64006400u;
    }
    const unsigned per = W == 2 ? 8 : W == 3 ? 5 : 4;
    return ((w[q / per] >> (W * (q % per))) & (((1u << W) - 1) * 0x10001u)) | 0x64006400u;
}

/* Stored column (within the unit) of MMA index k at k-step s of chunk kc. */
SPQR_HD unsigned spqr_mma_kcol(unsigned kc, unsigned s, unsigned k) {
    return 64 * kc + 16 * ((k & 7) >> 1) + 4 * s + (((k >> 3) << 1) | (k & 1));
}

#ifdef __cplusplus
}
#endif
#endif

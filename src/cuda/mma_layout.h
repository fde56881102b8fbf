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
 *
 * ---- The group-sum variant (v8, SPQR_CUDA_GSUM; gsum = 1): SpQR with β1 = 16, n <= 8 -----------
 * Same row tiles, units, K-slices, qq, outliers and perm; only codes and fields differ. Each MMA
 * (m-tile mt, group G = 0..7 of the unit, k = that group's 16 columns) multiplies the codes as EXACT
 * fp16 numbers by x and accumulates in fp32, so the accumulator holds group sums Σ code·x; the
 * statistics are applied in fp32 afterwards, y += s·(Σ c x − z Σ x), as the reference decoder.
 * With n activations the 8 accumulator columns are (group, activation) pairs: column 2t + e of set
 * s (s < n, 8/n groups per set) is group s·(8/n) + (2t + e)/n, activation (2t + e) % n, and the B
 * operand of group G's MMA is zero except in the columns of G (lanes gl with gl / n == G % (8/n)).
 *   A registers of group G (lane 4 gl + t), in the order of the m16n8k16 fragment, each the pair of
 *   stored columns (16 G + 4 t + 2 (i >> 1), + 1) of row 16 mt + gl + 8 (i & 1) (so B is one
 *   8-byte load, columns 16 G + 4 t .. + 3):  i = 0..3.
 *   A code sits in the low 10 bits (the mantissa) of a 16-bit half at bit b, with the same b in both
 *   halves of a word; the register is (word [>> SH]) & (mask << o) | MAGIC, o = the offset in the
 *   mantissa after the optional shift SH. MAGIC = 0x64006400 gives the fp16 number 1024 + 2^o c
 *   (exact); the kernel removes 1024·Σx and the 2^o in the epilogue. Every register of one group's
 *   MMA has the same o (spqr_gsum_o), so the accumulator of that group is 1024 Σx + 2^o Σ c x.
 *     W = 3, SH = 6, 6 words per m-tile: o = 0: the 6 words at b = 0 and two "spare" registers
 *       (bit j of c0 / c1 at bits 15 / 31 of word 3 k + j); o = 3: b = 3 and b = 9 (shifted);
 *       o = 6: b = 6 and b = 12 (shifted). Groups 0-1: o = 0, 2-4: o = 3, 5-7: o = 6.
 *     W = 4, SH = 8, 8 words: groups 0-3: b = 0 / 8 (o = 0); groups 4-7: b = 4 / 12 (o = 4).
 *     W = 2, SH = 10, 4 words: groups 2c, 2c + 1 (c < 3): b = 2c / 10 + 2c (o = 2c); 6: b = 6; 7: b = 8.
 *   (spqr_gsum_reg gives word and b for (W, G, i); list index 4·(G − first group of its o) + i.)
 *   codes   uint32 [nrt][nku][W][32 lanes][4] as above; m-tile mt's words are the lane's words
 *           2W·mt .. 2W·mt + 2W − 1
 *   fields  uint32 [nrt][nku][32 rows][2]: byte G of the row's pair = sc | zc << 4 of (row, group G)
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
    uint32_t gsum;     /* 1: the group-sum (v8) codes and fields */
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

/* Whether the group-sum kernel (v8) takes v: SpQR, β1 = 16, qq_bits <= 4, β2 % 16 == 0, wbits 2..4,
 * at most 65535 columns. */
bool spqr_gsum_supported(const spqr_qview *v);

/* Builds the layout of v with S K-slices (0: spqr_mma_default_slices for 132 SMs; clamped to the
 * number of units); gsum = 1: the group-sum variant. SPQR_E_UNSUPPORTED if the kernel does not take
 * v, SPQR_E_NOMEM. */
spqr_status spqr_mma_build(const spqr_qview *v, uint32_t S, spqr_mma_layout *out, spqr_error *err);
spqr_status spqr_gsum_build(const spqr_qview *v, uint32_t S, spqr_mma_layout *out, spqr_error *err);
void spqr_mma_free(spqr_mma_layout *L);

/* Bytes of the arrays one product reads (codes, fields, qq, outliers, perm). */
uint64_t spqr_mma_bytes(const spqr_mma_layout *L);

/* For the layout builders (mma_layout.c, stream_layout.c): the code of (row, stored column), 0 outside
 * the matrix; and the inverse of spqr_gsum_pair, putting codes c0, c1 of group-sum register (G, i) into
 * an m-tile's (v8) or an atom's (v10) words. */
unsigned spqr_layout_code(const spqr_qview *v, uint32_t r, uint32_t j);
void spqr_gsum_put(uint32_t *w, unsigned W, unsigned G, unsigned i, unsigned c0, unsigned c1);

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

/* Group-sum layout: word k (of the m-tile's 2W) and bit b (in the half) of A register i of group G;
 * b = 15: a w3 spare register (words k, k + 1, k + 2 give code bits 0, 1, 2). */
SPQR_HD void spqr_gsum_reg(unsigned W, unsigned G, unsigned i, unsigned *k, unsigned *b) {
    if (W == 3) {
        const unsigned first = G < 2 ? 0 : G < 5 ? 2 : 5, idx = 4 * (G - first) + i;
        if (first == 0) { *k = idx < 6 ? idx : 3 * (idx - 6); *b = idx < 6 ? 0 : 15; }
        else { *k = idx % 6; *b = (first == 2 ? 3 : 6) + (idx < 6 ? 0 : 6); }
    } else if (W == 4) {
        const unsigned idx = 4 * (G & 3) + i;
        *k = idx & 7; *b = (G < 4 ? 0 : 4) + (idx < 8 ? 0 : 8);
    } else {
        if (G >= 6) { *k = i; *b = G == 6 ? 6 : 8; return; }
        const unsigned idx = 4 * (G & 1) + i;
        *k = idx & 3; *b = 2 * (G >> 1) + (idx < 4 ? 0 : 10);
    }
}

/* The shift applied to a word before the mask (W = 2, 3, 4: 10, 6, 8). */
SPQR_HD unsigned spqr_gsum_sh(unsigned W) { return W == 2 ? 10 : W == 3 ? 6 : 8; }

/* The mantissa offset o of group G's registers (the accumulator holds 1024 Σx + 2^o Σ c x). */
SPQR_HD unsigned spqr_gsum_o(unsigned W, unsigned G) {
    if (W == 3) return G < 2 ? 0 : G < 5 ? 3 : 6;
    if (W == 4) return G < 4 ? 0 : 4;
    return G == 7 ? 8 : 2 * (G >> 1);
}

/* A register i of group G from the m-tile's words w[0 .. 2W): (1024 + 2^o c0) | (1024 + 2^o c1) << 16
 * as fp16 bits when magic, else the bare field bits. */
SPQR_HD uint32_t spqr_gsum_pair(const uint32_t *w, unsigned W, unsigned G, unsigned i, uint32_t magic) {
    unsigned k, b;
    spqr_gsum_reg(W, G, i, &k, &b);
    if (b == 15) return ((w[k] >> 15) & 0x10001u) | ((w[k + 1] >> 14) & 0x20002u) | ((w[k + 2] >> 13) & 0x40004u) | magic;
    const uint32_t mask = ((1u << W) - 1) * 0x10001u;
    if (b + W <= 10) return (w[k] & (mask << b)) | magic;
    const unsigned sh = spqr_gsum_sh(W);
    return ((w[k] >> sh) & (mask << (b - sh))) | magic;
}

#ifdef __cplusplus
}
#endif
#endif

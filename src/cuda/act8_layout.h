/*
 * act8_layout.h — the code words of the 8-bit-activation GEMV (v9, SPQR_CUDA_ACT8): v5's fused
 * layout (spqr_cuda_internal.cuh) with the bits of each lane's words rearranged so that one
 * IDP4A (four int8 products summed into an int32) takes four codes straight from a mask, or a
 * shift and a mask, of one word. Plain C: the packer runs on the host at upload, and the CPU tests
 * (tests/test_kernels_random.c) check that the extraction below, the one the kernel runs, gives back
 * every code. Everything else of the fused layout (statistics, qq, outliers, perm) is shared.
 *
 * A lane (one row) holds 8W 32-bit words per column tile of 256 stored columns = 16 groups of 16;
 * words [0, 4W) are groups 0-7 (half tile 0, a v5 work unit), [4W, 8W) groups 8-15. In a unit's
 * 4W words `uw`, QUAD k (0..3) of group i (0..7) is the 32-bit word whose byte b is the code of
 * column 16 i + 4 k + b (stored order), so that dp4a(quad, xq[16 i + 4 k .. + 3]) is exact:
 *
 *   W = 4: group i in words 2i, 2i+1; word 2i + h: low nibble of byte b = column 8h + b, high
 *          nibble = column 8h + 4 + b.  quad 2h   = w & 0x0F0F0F0F
 *                                        quad 2h+1 = (w >> 4) & 0x0F0F0F0F
 *   W = 2: group i in word i, bits [2k, 2k+2) of byte b = column 4k + b.
 *                                        quad k = (w >> 2k) & 0x03030303
 *   W = 3: groups 2P, 2P+1 in words a = 3P, b = 3P+1, c = 3P+2 (32 codes, 96 bits, none spare):
 *
 *          byte of a:  [7 6 | 5 4 3 | 2 1 0]     A(w) = w & 0x07070707
 *                       D lo   B(a)    A(a)       B(w) = (w >> 3) & 0x07070707
 *          byte of b:  [7 6 | 5 4 3 | 2 1 0]     D = (a >> 6) & 0x03030303 | (c >> 4) & 0x04040404
 *                       E lo   B(b)    A(b)       E = (b >> 6) & 0x03030303 | (c >> 5) & 0x04040404
 *          byte of c:  [7 | 6 | 5 4 3 | 2 1 0]
 *                       E2  D2   B(c)    A(c)     (D2, E2: bit 2 of the D and E codes)
 *
 *          group 2P:   quads A(a), B(a), A(b), D      group 2P+1: quads B(b), A(c), B(c), E
 *
 * Extraction costs per 16 codes: W = 4: 3 integer ops, W = 2: 7, W = 3: 12.5, then 4 IDP4A.
 * Columns past the matrix hold code 0 (their activations are 0 too).
 */
#ifndef SPQR_CUDA_ACT8_LAYOUT_H
#define SPQR_CUDA_ACT8_LAYOUT_H

#include <stdint.h>

#ifdef __CUDACC__
#define SPQR_A8_HD __host__ __device__ __forceinline__
#else
#define SPQR_A8_HD static inline
#endif

/* Quad k of group i of a unit (uw: the unit's 4W words). */
SPQR_A8_HD uint32_t spqr_a8_quad(const uint32_t *uw, unsigned W, unsigned i, unsigned k) {
    if (W == 4) {
        const uint32_t w = uw[2 * i + (k >> 1)];
        return (k & 1) ? (w >> 4) & 0x0F0F0F0Fu : w & 0x0F0F0F0Fu;
    }
    if (W == 2) return (uw[i] >> (2 * k)) & 0x03030303u;
    const uint32_t *p = uw + 3 * (i >> 1);
    const uint32_t a = p[0], b = p[1], c = p[2];
    if ((i & 1) == 0) {
        if (k == 0) return a & 0x07070707u;
        if (k == 1) return (a >> 3) & 0x07070707u;
        if (k == 2) return b & 0x07070707u;
        return ((a >> 6) & 0x03030303u) | ((c >> 4) & 0x04040404u);
    }
    if (k == 0) return (b >> 3) & 0x07070707u;
    if (k == 1) return c & 0x07070707u;
    if (k == 2) return (c >> 3) & 0x07070707u;
    return ((b >> 6) & 0x03030303u) | ((c >> 5) & 0x04040404u);
}

/* Packs one lane's column tile: codes[16 g + j] (g < 16, j < 16; stored columns of the tile, W bits
 * each) into its 8W words. The inverse of spqr_a8_quad over both units. Host code. */
static inline void spqr_a8_pack_tile(const uint8_t *codes, unsigned W, uint32_t *words) {
    for (unsigned i = 0; i < 8 * W; i++) words[i] = 0;
    for (unsigned u = 0; u < 2; u++) {
        uint32_t *uw = words + u * 4 * W;
        const uint8_t *c = codes + u * 128;
        for (unsigned i = 0; i < 8; i++)
            for (unsigned k = 0; k < 4; k++)
                for (unsigned b = 0; b < 4; b++) {
                    const uint32_t v = c[16 * i + 4 * k + b], sh = 8 * b;
                    if (W == 4) uw[2 * i + (k >> 1)] |= v << (sh + 4 * (k & 1));
                    else if (W == 2) uw[i] |= v << (sh + 2 * k);
                    else {
                        uint32_t *p = uw + 3 * (i >> 1);
                        static const unsigned wk[2][3] = {{0, 0, 1}, {1, 2, 2}}, ok[2][3] = {{0, 3, 0}, {3, 0, 3}};
                        const unsigned h = i & 1;
                        if (k < 3) p[wk[h][k]] |= v << (sh + ok[h][k]);
                        else {
                            p[h] |= (v & 3u) << (sh + 6);               /* D in a, E in b: bits 6-7 */
                            p[2] |= (v >> 2) << (sh + 6 + h);           /* bit 2: bit 6 (D) or 7 (E) of c */
                        }
                    }
                }
    }
}

#endif

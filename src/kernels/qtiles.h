/*
 * qtiles.h — the in-memory "tile" layout of a quantized matrix, built once at load time from the
 * file's row-major layout (format/qmatrix.h) for the decode kernels. The file stays the storage
 * format; this is the compute format (as llama.cpp repacks Q4_0 for its CPU kernels).
 *
 * Rows are cut into tiles of 16 (one AVX-512 register of fp32 lanes: lane i = row 16t + i). Inside a
 * tile, the 16 codes of a stored column j form a "lane vector": a w·16-bit LSB-first bit stream,
 * lane i at bits [w·i, w·i + w) (for w ≤ 4 one 64-bit word, which one VPMULTISHIFTQB spreads into
 * the 16 lanes). Per (tile, group) the statistics follow, as lane vectors too:
 *
 *   tile t (tile_stride u16):  codes[cols][w u16]  |  stats[groups][S u16]  | pad to 32 u16 (64 bytes)
 *     SpQR: S = 2q + 8:  scale codes (q u16), zero codes (q u16), (ss, sz, zs, zz) as fp32 (the file's
 *           fp16 values widened, 4-byte but not necessarily 8-byte aligned: the kernels broadcast
 *           each straight from memory instead of shuffling a vector of four)
 *           (needs β2 % 16 == 0, so a tile lies inside one second-level row block)
 *     GPTQ: S = 16 + w:  fp16 scale per lane[16], zero codes (w u16)
 *   lanes past the last row are zero codes with zero statistics; 64 zero bytes follow the last tile.
 *
 * A tile's product with x is then, per column, one broadcast load, one shift-select, a mask and a
 * conversion: 16 codes as floats, multiplied into the lanes' accumulators with x_j. Bytes per weight:
 * the file's, plus 8 bytes per (16 rows, group) for the widened second-level statistics (SpQR; +0.25
 * bit per weight at β1 = 16).
 *
 * Outliers are kept per row (CSR) as (column, δ = value − dense weight): the kernel adds δ·x[col].
 *
 *   y[r] = Σ_g s_g(r) · (Σ_{j∈g} q_j(r) x_j − z_g(r) · Σ_{j∈g} x_j) + Σ_outliers δ x_col
 *
 * with s, z decoded by exactly the float operations of the reference decoder, so tile kernels agree
 * with the row kernels up to summation order.
 */
#ifndef SPQR_QTILES_H
#define SPQR_QTILES_H

#include "format/qmatrix.h"

#define SPQR_TILE_ROWS 16

typedef struct spqr_qtiles {
    uint32_t kind, rows, cols, wbits, groupsize, qq_bits, groups, n_tiles;
    uint32_t stat_u16;     /* S: u16 of statistics per (tile, group) */
    uint64_t tile_stride;  /* u16 per tile */
    uint16_t *data;        /* n_tiles * tile_stride, 64-byte aligned (owned) */
    uint32_t *o_ptr;       /* SpQR: CSR row pointers [rows + 1] (owned; NULL for GPTQ) */
    uint16_t *o_col;       /* stored column of each outlier */
    uint8_t *o_lane;       /* its row's lane in the tile (row % 16) */
    float *o_delta;        /* outlier value − the dense weight it replaces (read by the kernels) */
    float *o_val;          /* the outlier value (read when decoding weights) */
} spqr_qtiles;

/* Whether v can be tiled (SpQR needs qq_groupsize % 16 == 0 and qq_bits ≤ 8; GPTQ always). */
bool spqr_qtiles_supported(const spqr_qview *v);

/* Builds the tiles of a validated view. Returns NULL if unsupported or out of memory. */
spqr_qtiles *spqr_qtiles_build(const spqr_qview *v);
void spqr_qtiles_free(spqr_qtiles *t);

/* Bytes the decode kernel reads per product (tiles + outliers). */
uint64_t spqr_qtiles_bytes(const spqr_qtiles *t);

/* The reference tile product: y[r - r0] for rows [r0, r1), r0 a multiple of 16; x_s in stored column
 * order, gsum[g] = Σ_{j∈g} x_s[j]. Plain C, lane by lane. */
void spqr_qtiles_gemv_ref(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *y);

/* 8-bit activations (decode with spqr_ctx_opts.act8): per group g of `gs` entries of x (stored
 * order), dx[g] = max|x|/127, xq = round(x / dx[g]) in [-127, 127], gq[g] = dx[g] · Σ xq
 * (the group sum of the rounded activations). */
void spqr_act8_quantize(const float *x, uint32_t cols, uint32_t gs, int8_t *xq, float *dx, float *gq);

/* The reference tile product with 8-bit activations: per lane and group the exact integer
 * Σ q_j · xq_j, then y += s · (dx·Σ − z · gq) (both by fma); outliers use the fp32 x_s. Rows
 * [r0, r1), r0 a multiple of 16. */
void spqr_qtiles_gemv_act8_ref(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const int8_t *xq, const float *dx, const float *gq,
                               const float *x_s, float *y);

/* Decodes rows [r0, r1) (stored column order) from the tiles, outliers included: must equal
 * spqr_qview_dequant_rows bit for bit (the repacking test). */
void spqr_qtiles_dequant_rows(const spqr_qtiles *t, uint32_t r0, uint32_t r1, float *out);

/* The four fp32 second-level statistics (ss, sz, zs, zz) of a SpQR stats block `st`, q-bit codes. */
static inline void spqr_qtiles_qq(const uint16_t *st, unsigned q, float qq[4]) { memcpy(qq, st + 2 * q, 4 * sizeof(float)); }

/* Tile `tile`'s data (column j's lane vector at + j·w), and the statistics of (tile, group g). */
static inline const uint16_t *spqr_qtiles_tile(const spqr_qtiles *t, uint32_t tile) { return t->data + (uint64_t)tile * t->tile_stride; }
static inline const uint16_t *spqr_qtiles_stats(const spqr_qtiles *t, const uint16_t *tl, uint32_t g) {
    return tl + (uint64_t)t->cols * t->wbits + (uint64_t)g * t->stat_u16;
}

#endif

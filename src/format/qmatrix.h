/*
 * qmatrix.h — a quantized matrix as stored in a .spqr blob (see format.h): its layout, a validated
 * view over the bytes, and the reference (scalar) dequantization. The encoder builds the blob, then
 * dequantizes it with these same functions, so what a file decodes to is bit-identical to what the
 * encoder reported.
 */
#ifndef SPQR_QMATRIX_H
#define SPQR_QMATRIX_H

#include "core/core.h"
#include "format/format.h"

/* Byte offsets of the sections of a quantized blob, relative to its start. */
typedef struct spqr_qlayout {
    uint64_t groups, row_blocks;
    uint64_t code_stride, stat_stride, zero_stride; /* bytes per row */
    uint64_t perm, codes, stats, qq, scales, zeros, row_ptr, ocol, oval; /* offsets; perm = UINT64_MAX if none */
    uint64_t size;                                   /* total blob bytes */
} spqr_qlayout;

/* Validated pointers into a blob. Columns are in stored order (perm[j] = original column). */
typedef struct spqr_qview {
    uint32_t kind, rows, cols, wbits, groupsize, qq_bits, qq_groupsize;
    uint64_t n_outliers;
    spqr_qlayout lay;
    const int32_t *perm; /* NULL: identity */
    const uint8_t *codes, *stats, *zeros;
    const spqr_qq_stats *qq;
    const uint16_t *scales;
    const uint32_t *row_ptr;
    const uint16_t *ocol, *oval;
} spqr_qview;

/* Computes the layout from a tensor entry (kind, shape, flags, bits, group sizes, n_outliers).
 * Checks the parameters' ranges; false (with *why) if invalid or overflowing. */
bool spqr_qlayout_compute(const spqr_file_tensor *t, spqr_qlayout *lay, char *why, size_t cap);

/* Builds a view over `blob` (size bytes, 8-byte aligned) and checks everything a decoder relies on:
 * the size, perm being a permutation, second-level statistics finite, row_ptr monotone and ending at
 * n_outliers, outlier columns in range and ascending per row, outlier values finite. */
spqr_status spqr_qview_init(spqr_qview *v, const spqr_file_tensor *t, const uint8_t *blob, uint64_t size, const char *what,
                            spqr_error *err);

/* Reads w-bit field `i` of a bit stream (LSB first). The stream must have 8 readable bytes after the
 * byte holding bit i*w (the layout pads every section for this). */
static inline unsigned spqr_bits_get(const uint8_t *row, uint64_t i, unsigned w) {
    uint64_t bit = i * w, word;
    memcpy(&word, row + (bit >> 3), 8);
    return (unsigned)((word >> (bit & 7)) & ((1u << w) - 1));
}

static inline void spqr_bits_put(uint8_t *row, uint64_t i, unsigned w, unsigned val) {
    uint64_t bit = i * w, word;
    memcpy(&word, row + (bit >> 3), 8);
    word |= (uint64_t)(val & ((1u << w) - 1)) << (bit & 7);
    memcpy(row + (bit >> 3), &word, 8);
}

/* value = scale * (code - zero), the one dequantization formula of the format (float32). */
static inline float spqr_deq(float scale, float zero, unsigned code) { return scale * ((float)code - zero); }

/* Scale and zero of (row r, group g), as floats. */
void spqr_qview_stats(const spqr_qview *v, uint32_t r, uint32_t g, float *scale, float *zero);

/* The dense weight at (row r, stored column j): what the code and statistics decode to, before an
 * outlier replaces it (the layouts that add outliers as value − dense weight start from this). */
float spqr_qview_dense_weight(const spqr_qview *v, uint32_t r, uint32_t j);

/* Dequantizes rows [r0, r1) into out[(r - r0) * cols + c]: columns in ORIGINAL order when
 * `unpermute`, else in stored order. Outliers included. */
void spqr_qview_dequant_rows(const spqr_qview *v, uint32_t r0, uint32_t r1, int unpermute, float *out);

/* fp16 <-> float (round to nearest even; overflow to Inf). */
uint16_t spqr_f32_to_f16(float f);

#endif

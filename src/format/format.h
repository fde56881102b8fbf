/*
 * format.h — the .spqr container: every on-disk struct, with its size pinned by static_assert.
 * docs/FORMAT.md is the specification; this header is its C form. All integers little-endian.
 *
 *   offset 0          spqr_file_header (128 bytes)
 *   meta_off          JSON metadata: model config, quantization method and every hyper-parameter,
 *                     calibration files (name, bytes, SHA-256), sample count, tool version, bits
 *   tok_off           the tokenizer file, byte for byte (tokenizer.json or llama2.c tokenizer.bin)
 *   dir_off           spqr_file_tensor[n_tensors] (256 bytes each)
 *   data              one blob per tensor at data_off, every blob 64-byte aligned
 *
 * Blob of a kept tensor (F32/F16/BF16): the elements, row-major.
 * Blob of a quantized [rows][cols] matrix: sections in this order, each starting 64-byte aligned
 * relative to the blob (sizes follow from the tensor entry alone, see spqr_qlayout):
 *   perm      int32[cols]                       only if SPQR_TF_PERM: stored column j is input perm[j]
 *   codes     rows x row_bytes(cols * wbits)    w-bit codes, LSB-first bit stream per row
 *   SpQR:  stats  rows x row_bytes(groups * 2q)  per (row, group): scale code (low q bits), zero code
 *          qq     spqr_qq_stats[row_blocks][groups]   second-level fp16 statistics
 *   GPTQ/RTN: scales fp16[rows][groups]; zeros rows x row_bytes(groups * wbits)
 *   outliers  uint32 row_ptr[rows + 1]; uint16 col[n]; fp16 val[n]   (CSR; SpQR only; columns in
 *             stored order, ascending within a row; val replaces the dense weight)
 * row_bytes(bits) = ceil(bits / 64) * 8: every row starts on a 64-bit word.
 * groups = ceil(cols / groupsize); row_blocks = ceil(rows / qq_groupsize); the last group / block
 * may be short.
 *
 * Dequantization (stored column j of row r, group g = j / groupsize, row block b = r / qq_groupsize):
 *   SpQR:  s = ss * (scode - sz),  z = zs * (zcode - zz)   with (ss, sz, zs, zz) = qq[b][g] as floats
 *          w = s * (code - z), or the outlier value if (r, j) is in the CSR
 *   GPTQ:  w = scale[r][g] * (code - zero[r][g])
 * computed in float32 exactly in this order (see spqr_dequant_*).
 */
#ifndef SPQR_FORMAT_H
#define SPQR_FORMAT_H

#include <assert.h>
#include <stdint.h>

#define SPQR_FILE_MAGIC "SPQRMODL"
#define SPQR_FORMAT_VERSION 1u
#define SPQR_ALIGN 64u

typedef struct spqr_file_header {
    char magic[8];        /* "SPQRMODL" */
    uint32_t version;     /* SPQR_FORMAT_VERSION */
    uint32_t n_tensors;
    uint64_t file_size;   /* the whole file; a shorter or longer file is rejected */
    uint64_t meta_off, meta_size;
    uint64_t tok_off, tok_size;
    uint64_t dir_off;
    uint32_t meta_crc, tok_crc, dir_crc; /* CRC-32 (zlib) of each section */
    uint8_t reserved[48];                /* zero */
    uint32_t header_crc;                 /* CRC-32 of bytes [0, 124) */
} spqr_file_header;
static_assert(sizeof(spqr_file_header) == 128, "file header is 128 bytes");

enum spqr_tensor_kind {
    SPQR_TK_F32 = 0,
    SPQR_TK_F16 = 1,
    SPQR_TK_BF16 = 2,
    SPQR_TK_SPQR = 16, /* bilevel-statistics codes + fp16 outliers */
    SPQR_TK_GPTQ = 17, /* codes + fp16 scale + integer zero per (row, group): GPTQ and RTN */
};

enum spqr_tensor_flags {
    SPQR_TF_PERM = 1u, /* columns stored in a permuted (act-order) order */
};

typedef struct spqr_file_tensor {
    char name[96];        /* NUL-terminated, NUL-padded */
    uint32_t kind;        /* enum spqr_tensor_kind */
    uint32_t n_dims;      /* 1 or 2 (quantized: 2) */
    uint64_t shape[2];    /* [rows][cols]; 1-D: shape[0] elements, shape[1] = 1 */
    uint32_t flags;       /* enum spqr_tensor_flags */
    uint32_t wbits;       /* quantized: bits per code, 1..8 */
    uint32_t groupsize;   /* quantized: input columns per statistics group (β1) */
    uint32_t qq_bits;     /* SpQR: bits of the scale and zero codes */
    uint32_t qq_groupsize;/* SpQR: output rows per second-level group (β2) */
    uint32_t data_crc;    /* CRC-32 of the blob */
    uint64_t n_outliers;  /* SpQR */
    uint64_t data_off, data_size;
    uint8_t reserved[88]; /* zero */
} spqr_file_tensor;
static_assert(sizeof(spqr_file_tensor) == 256, "tensor entry is 256 bytes");

/* Second-level statistics of one (row block, group) tile: fp16 bit patterns. */
typedef struct spqr_qq_stats {
    uint16_t s_scale, s_zero; /* dequantize the scale codes: s = s_scale * (code - s_zero) */
    uint16_t z_scale, z_zero; /* dequantize the zero codes:  z = z_scale * (code - z_zero) */
} spqr_qq_stats;
static_assert(sizeof(spqr_qq_stats) == 8, "qq stats are 4 halves");

#endif

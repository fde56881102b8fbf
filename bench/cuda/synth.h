/*
 * synth.h — synthetic quantized matrices for the CUDA lab and tests: valid .spqr blobs built
 * directly (no calibration sweep), with the semantics of src/quant/gptq.c's packing.
 *
 * SpQR: Gaussian bulk weights with ~1% heavy-tailed (Student-t, scaled up) weights; per (row, β1
 * group) min–max statistics over the group; scales and zeros quantized to q bits over β2 rows with
 * fp16 second-level statistics (min–max); codes; then the `outlier_frac` weights of largest
 * |w − ŵ| kept as fp16 CSR outliers. GPTQ/RTN: fp16 scale + integer zero per (row, group), round to
 * nearest. Optional random act-order permutation (stored column j holds input column perm[j]).
 */
#ifndef SPQR_BENCH_SYNTH_H
#define SPQR_BENCH_SYNTH_H

#include "format/qmatrix.h"

typedef struct synth_params {
    uint32_t kind;          /* SPQR_TK_SPQR or SPQR_TK_GPTQ */
    uint32_t rows, cols, wbits, groupsize, qq_bits, qq_groupsize;
    double outlier_frac;    /* SpQR: share of weights kept as outliers (0: none) */
    int perm;               /* 1: random act-order permutation */
    uint64_t seed;
} synth_params;

typedef struct synth_matrix {
    spqr_file_tensor entry; /* kind, shape, flags, bits, n_outliers, data_size */
    uint8_t *blob;          /* entry.data_size bytes, 64-byte aligned; spqr_aligned_free */
    spqr_qview view;        /* validated by spqr_qview_init */
} synth_matrix;

/* Builds a blob as described above and validates it with spqr_qview_init.
 * Errors: SPQR_E_ARG (parameters), SPQR_E_NOMEM, SPQR_E_FORMAT (the blob failed validation). */
spqr_status synth_build(const synth_params *p, synth_matrix *out, spqr_error *err);
void synth_free(synth_matrix *m);

/* splitmix64-based uniform in [0, 1) and standard normal; state advanced in place. */
double synth_uniform(uint64_t *s);
double synth_normal(uint64_t *s);

#endif

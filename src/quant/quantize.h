/*
 * quantize.h — quantizing one linear layer W [rows = out][cols = in] given its Hessian
 * H = (2/n) Σ x xᵀ over calibration inputs: RTN, GPTQ and SpQR share one GPTQ sweep.
 */
#ifndef SPQR_QUANTIZE_H
#define SPQR_QUANTIZE_H

#include "core/core.h"
#include "format/qmatrix.h"

typedef enum spqr_qmethod { SPQR_QM_RTN = 0, SPQR_QM_GPTQ = 1, SPQR_QM_SPQR = 2 } spqr_qmethod;

typedef struct spqr_qparams {
    spqr_qmethod method;
    int wbits;                /* 1..8 */
    int groupsize;            /* input columns per statistics group (β1); 0: the whole row */
    int qq_bits;              /* SpQR: bits of the quantized scales and zeros */
    int qq_groupsize;         /* SpQR: output rows per second-level group (β2) */
    double outlier_threshold; /* SpQR τ, relative (see gptq.c); INFINITY: no outliers */
    int act_order;            /* GPTQ/SpQR: columns in order of decreasing diag(H) */
    double percdamp;          /* damping, relative to the mean diagonal of H */
    int simplified_outliers;  /* SpQR: skip the leave-one-out refit */
    int blocksize;            /* GPTQ lazy-update block; 0: 128 */
} spqr_qparams;

typedef struct spqr_qresult {
    spqr_file_tensor entry; /* kind, shape, flags, bits, group sizes, n_outliers, data_size, data_crc (name empty) */
    uint8_t *blob;          /* entry.data_size bytes, exactly as written to the file (64-byte aligned alloc) */
    float *deq;             /* [rows][cols], original column order: what the blob decodes to */
    double rel_err;         /* ‖(W − Ŵ)X‖ / ‖WX‖, through H */
    double percdamp_used;   /* > requested when H needed more damping to be positive definite */
} spqr_qresult;

/* Quantizes W. H ([cols][cols], symmetric) may be NULL only for RTN (then rel_err is NaN).
 * Never writes NaN/Inf: non-finite input is rejected. Deterministic. */
spqr_status spqr_quantize_matrix(const float *W, int rows, int cols, const float *H, const spqr_qparams *p, spqr_qresult *out,
                                 spqr_error *err);
void spqr_qresult_free(spqr_qresult *r);

/* The upper Cholesky factor U (float [n][n], zero below the diagonal) of the damped inverse of H
 * (double [n][n], act-order permuted; dead[j] marks zero columns): LAPACK dpotrf, dpotri, dpotrf with
 * percdamp · mean|diag H| added to the diagonal, ×10 up to 5 times while H is not positive definite
 * (*damp: the damping used). SPQR_E_RANGE if it never is. OpenBLAS's LAPACK rounds differently on
 * different thread counts; the pipeline pins it to one thread (spqr_ctx_new), so CPU and --gpu runs
 * get the same U. */
spqr_status spqr_chol_inverse(const double *H, int n, const spqr_qparams *p, const uint8_t *dead, float *U, double *damp, spqr_error *err);

/* Bits per weight by the SpQR paper's accounting: wbits + 2·qq_bits/β1 + 2·32/(β1·β2) + 32·outliers/weights
 * for SpQR; wbits + (16 + wbits)/groupsize for GPTQ/RTN. */
double spqr_bits_paper(const spqr_file_tensor *t);

#endif

/*
 * matmul.h — products with a linear layer's weight W [rows = out][cols = in], fp32 or quantized,
 * split by output rows over a pool. Each thread calls single-threaded OpenBLAS on its slice.
 *
 *   fp32:       n == 1: sgemv;  n > 1: sgemm
 *   quantized:  n == 1: fused dequantize-dot on the stored layout (activation permuted once per
 *               thread into stored column order);  n > 1: panels of SPQR_PANEL_ROWS rows dequantized
 *               into per-thread scratch, each feeding an sgemm
 */
#ifndef SPQR_MATMUL_H
#define SPQR_MATMUL_H

#include "core/pool.h"
#include "format/qmatrix.h"

#define SPQR_PANEL_ROWS 64

typedef struct spqr_linear {
    int rows, cols;
    const float *w;      /* fp32 [rows][cols], or NULL */
    const spqr_qview *q; /* quantized, or NULL */
} spqr_linear;

/* Per-thread scratch floats that spqr_linear_forward needs for layers of at most `max_cols` inputs. */
static inline size_t spqr_linear_scratch(int max_cols) { return (size_t)(SPQR_PANEL_ROWS + 1) * (size_t)max_cols; }

/* Y[n][rows] = X[n][cols] · Wᵀ (+ bias[rows] if not NULL). `scratch` holds n_threads blocks of
 * `per_thread` floats (>= spqr_linear_scratch(cols)). */
void spqr_linear_forward(spqr_pool *pool, const spqr_linear *lin, const float *X, int n, const float *bias, float *Y, float *scratch,
                         size_t per_thread);

#endif

/*
 * matmul.h — dense fp32 products used by the forward pass, split by output rows over a pool.
 * Each thread calls single-threaded OpenBLAS on its slice.
 */
#ifndef SPQR_MATMUL_H
#define SPQR_MATMUL_H

#include "core/pool.h"

/* Y[n][out] = X[n][in] · W[out][in]ᵀ  (+ bias[out] if not NULL). n == 1 uses sgemv. */
void spqr_matmul_f32(spqr_pool *pool, const float *X, int n, int in, const float *W, int out, const float *bias, float *Y);

#endif

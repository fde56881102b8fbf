/*
 * ordered.h — fixed-order fp32 matrix products for the quantizer: the same bits on every ISA, every
 * thread count and the GPU (its twin is k_ordered in src/cuda/quant_cuda.cu).
 *
 * The Hessians H += α·XᵀX and GPTQ's block update W[:, b1:] −= E·U[b0:b1, b1:] are the quantizer's only
 * long float sums. Any BLAS orders them its own way (per ISA, per tiling, cuBLAS another), and a
 * last-bit difference in H or W can flip an act-order tie, an outlier or a code, which then changes
 * every later block (bench/cuda/QUANT.md). Defined here instead, for i in [0, M), j in [0, N):
 *
 *   for each chunk [k0, k0 + SPQR_ORDERED_CHUNK) ∩ [0, K), in order:
 *       acc = +0
 *       for k = k0, k0 + 1, …:  acc = fma(A(i,k), B(k,j), acc)       fused: one IEEE fp32 rounding
 *       C[i][j] = C[i][j] + fl(alpha · acc)                        two roundings (mul, then add)
 *
 * with A(i,k) = A[i·a_si + k·a_sk], B(k,j) = B[k·ldb + j], C[i][j] = C[i·ldc + j]. Any code that
 * performs exactly these operations (vectorized across j, tiled over i and j, threads over rows, a
 * CUDA block per tile) gets exactly these bits: the generic code calls fmaf (a hardware instruction
 * on AArch64 and wherever the compiler targets FMA; glibc's correctly rounded routine elsewhere). Chunks bound the sequential sum's rounding error and
 * let a caller split K at multiples of the chunk without changing a bit.
 * upper != 0: only C[i][j] with j ≥ i is defined; entries below the diagonal may be overwritten
 * with unspecified values (callers symmetrize afterwards).
 */
#ifndef SPQR_ORDERED_H
#define SPQR_ORDERED_H

#include <stddef.h>

#define SPQR_ORDERED_CHUNK 512

typedef struct spqr_pool spqr_pool;

typedef struct spqr_ordered_args {
    int M, N, K;
    float alpha;
    const float *A;
    ptrdiff_t a_si, a_sk;
    const float *B;
    ptrdiff_t ldb;
    float *C;
    ptrdiff_t ldc;
    int upper;
} spqr_ordered_args;

/* Rows are handed out in groups of SPQR_ORDERED_ROWS (a multiple of every ISA's register tile). */
#define SPQR_ORDERED_ROWS 48

/* Computes the row groups ith, ith + nth, ith + 2·nth, … of the product (0 ≤ ith < nth). */
typedef void (*spqr_ordered_rows_fn)(const spqr_ordered_args *g, int ith, int nth);

void spqr_ordered_rows_generic(const spqr_ordered_args *g, int ith, int nth);
void spqr_ordered_rows_avx2(const spqr_ordered_args *g, int ith, int nth);   /* AVX2 + FMA; x86-64 builds only */
void spqr_ordered_rows_avx512(const spqr_ordered_args *g, int ith, int nth); /* AVX-512F; x86-64 builds only */

/* The whole product with spqr_cpu_select()'s variant (kernels/cpu.h; SPQR_CPU forces one), its row
 * groups split over the pool's threads (pool NULL: this thread). */
void spqr_ordered_gemm(spqr_pool *pool, const spqr_ordered_args *g);

#endif

/*
 * matmul.h — products with a linear layer's weight W [rows = out][cols = in], fp32 or quantized,
 * split by output rows over a pool. Each thread calls single-threaded OpenBLAS on its slice. With
 * n > 1 tokens each thread takes an equal share of the rows; one token's rows go in chunks of 64
 * from an atomic counter (a thread slowed down by the machine does not hold the others up).
 *
 *   fp32:       n == 1: sgemv;  n > 1: sgemm
 *   quantized:  n == 1: the fused dequantize-dot kernel of this CPU (cpu.h) on the tile layout
 *               (qtiles.h) if the CPU has one and the model built it, else on the file's layout;
 *               the activation permuted once per thread into stored column order (once per
 *               input when products share the permutation);
 *               n > 1: the activations permuted once into stored column order (act order), then
 *               panels of SPQR_PANEL_ROWS rows dequantized by the CPU's kernel into per-thread
 *               scratch, each feeding an sgemm
 *   16-bit:     n == 1: the CPU's bf16/f16 GEMV kernel; n > 1: converted panels + sgemm
 */
#ifndef SPQR_MATMUL_H
#define SPQR_MATMUL_H

#include "core/pool.h"
#include "kernels/cpu.h"

#define SPQR_PANEL_ROWS 64

typedef struct spqr_linear {
    int rows, cols;
    const float *w;      /* fp32 [rows][cols], or NULL */
    const spqr_qview *q; /* quantized, or NULL */
    const struct spqr_qtiles *qt; /* q in the tile layout for the decode kernels, or NULL */
    const uint16_t *h;   /* 16-bit [rows][cols] (kept tensors of .spqr files), or NULL */
    int h_bf16;          /* h is bf16 (else IEEE half) */
} spqr_linear;

/* What a product needs besides its operands: threads, kernels, per-thread scratch. */
typedef struct spqr_mm {
    spqr_pool *pool;
    const spqr_cpu_kernels *k;
    float *scratch;    /* n_threads blocks of per_thread floats */
    size_t per_thread; /* >= spqr_linear_scratch(widest layer's cols) */
    float *xbuf;       /* n_batch x widest cols: activations permuted into a layer's stored column order */
    int act8;          /* decode with 8-bit activations where the kernels have it (spqr_ctx_opts.act8) */
} spqr_mm;

/* Per-thread scratch floats for layers of at most `max_cols` inputs. */
static inline size_t spqr_linear_scratch(int max_cols) { return (size_t)(SPQR_PANEL_ROWS + 16) * (size_t)max_cols + 64; }

/* Y[n][rows] = X[n][cols] · Wᵀ (+ bias[rows] if not NULL). */
void spqr_linear_forward(const spqr_mm *mm, const spqr_linear *lin, const float *X, int n, const float *bias, float *Y);

#define SPQR_MAX_FUSED 3

/* One token through n_lin ≤ SPQR_MAX_FUSED layers that share the input x (q/k/v; gate/up) in one
 * pool run: Y[i] = W_i x (+ bias[i]; bias may be NULL). swiglu (n_lin == 2, equal rows): then
 * Y[0] = silu(Y[0]) ⊙ Y[1]. Saves the pool's wake-ups, which matter at decode speed. */
void spqr_linear_forward_decode(const spqr_mm *mm, const spqr_linear *const *lins, int n_lin, const float *x, const float *const *bias,
                                float *const *Y, int swiglu);

#endif

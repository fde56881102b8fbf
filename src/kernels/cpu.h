/*
 * cpu.h — per-ISA kernels for quantized matrix-vector products, chosen at run time.
 *
 * qgemv computes y[r - r0] = Σ_j W[r][j] · x_s[j] for rows [r0, r1) of a quantized matrix, with x_s
 * in STORED column order (x_s[j] = x[perm[j]]) and gsum[g] = Σ_{j ∈ group g} x_s[j]. With per-row
 * group statistics (s_g, z_g):  Σ_j s_g (q_j − z_g) x_j = Σ_g s_g · (Σ_{j∈g} q_j x_j) − Σ_g s_g z_g gsum_g,
 * then outliers add (value − dense weight) · x_s[col]. `scratch` holds spqr_qgemv_scratch(v) floats.
 * Every kernel equals the generic one up to float summation order (tests: 1e-5 relative).
 */
#ifndef SPQR_CPU_H
#define SPQR_CPU_H

#include "format/qmatrix.h"
#include "kernels/ordered.h"

struct spqr_qtiles;

typedef void (*spqr_qgemv_fn)(const spqr_qview *v, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *scratch,
                              float *y);

/* y[r - r0] = Σ_j W[r][j] x[j] for rows [r0, r1) of a 16-bit matrix W [rows][cols] (bf16 when
 * `bf16`, else IEEE half), accumulated in fp32. */
typedef void (*spqr_gemv16_fn)(const uint16_t *W, int bf16, uint32_t cols, uint32_t r0, uint32_t r1, const float *x, float *y);

/* out[(r - r0) * cols + j] = W[r][j] for rows [r0, r1), columns in STORED order, outliers included:
 * bit-identical to spqr_qview_dequant_rows(v, r0, r1, 0, out) (the same float operations). */
typedef void (*spqr_qdequant_fn)(const spqr_qview *v, uint32_t r0, uint32_t r1, float *scratch, float *out);

/* The same product over the tile layout (qtiles.h): y[r - r0] for rows [r0, r1), r0 a multiple of 16. */
typedef void (*spqr_qgemv_tiles_fn)(const struct spqr_qtiles *t, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *y);

/* The same over tiles with 8-bit activations (see spqr_act8_quantize / spqr_qtiles_gemv_act8_ref). */
typedef void (*spqr_qgemv_tiles_act8_fn)(const struct spqr_qtiles *t, uint32_t r0, uint32_t r1, const int8_t *xq, const float *dx, const float *gq,
                                         const float *x_s, float *y);

typedef struct spqr_cpu_kernels {
    const char *name; /* "generic", "avx2", "avx512", "neon" */
    spqr_qgemv_fn qgemv;
    spqr_gemv16_fn gemv16;
    spqr_qdequant_fn qdequant;
    spqr_qgemv_tiles_fn qgemv_tiles; /* NULL: this ISA decodes from the file layout (qgemv) */
    spqr_qgemv_tiles_act8_fn qgemv_tiles_act8; /* NULL: no integer kernel (act8 then uses fp32) */
    spqr_ordered_rows_fn ordered; /* the quantizer's fixed-order products (ordered.h): the same bits on every ISA */
} spqr_cpu_kernels;

/* Floats of scratch qgemv needs for v. */
static inline size_t spqr_qgemv_scratch(const spqr_qview *v) { return 6 * (size_t)v->lay.groups + 16; }

/* The kernels of one ISA, or NULL if this build or this CPU/OS lacks it. */
const spqr_cpu_kernels *spqr_cpu_kernels_generic(void);
const spqr_cpu_kernels *spqr_cpu_kernels_avx2(void);
const spqr_cpu_kernels *spqr_cpu_kernels_avx512(void);
const spqr_cpu_kernels *spqr_cpu_kernels_neon(void);

/* The best kernels this CPU and OS support; the environment variable SPQR_CPU=generic|avx2|avx512|neon
 * forces one (falling back to the best supported if it is not). Cheap: call it once per context. */
const spqr_cpu_kernels *spqr_cpu_select(void);

#endif

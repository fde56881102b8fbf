/* qgemv.c — the reference (portable C) quantized matrix-vector product; see cpu.h. */
#include "kernels/cpu.h"
#include "kernels/qgemv_common.h"

/* Σ_g s[g] Σ_{j∈g} q_j x_j for one row, one code at a time. */
static float dense_generic(const spqr_qview *v, const uint8_t *crow, const float *s, const float *x) {
    const uint32_t cols = v->cols, gs = v->groupsize;
    float acc = 0;
    for (uint32_t j0 = 0, g = 0; j0 < cols; j0 += gs, g++) {
        uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        float qx = 0;
        for (uint32_t j = j0; j < j1; j++) qx += (float)spqr_bits_get(crow, j, v->wbits) * x[j];
        acc += s[g] * qx;
    }
    return acc;
}

static void qgemv_generic(const spqr_qview *v, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *scratch, float *y) {
#define DENSE(crow, s, x) dense_generic(v, crow, s, x)
    QK_ROWS(v, r0, r1, x_s, gsum, scratch, y, DENSE, qk_row_stats, qk_zterm);
#undef DENSE
}

static void gemv16_generic(const uint16_t *W, int bf16, uint32_t cols, uint32_t r0, uint32_t r1, const float *x, float *y) {
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *w = W + (uint64_t)r * cols;
        float acc = 0;
        for (uint32_t j = 0; j < cols; j++) acc += (bf16 ? spqr_bf16_to_f32(w[j]) : spqr_f16_to_f32(w[j])) * x[j];
        y[r - r0] = acc;
    }
}

/* The reference decoder itself: the ISA kernels must equal it bit for bit. */
static void qdequant_generic(const spqr_qview *v, uint32_t r0, uint32_t r1, float *scratch, float *out) {
    (void)scratch;
    spqr_qview_dequant_rows(v, r0, r1, 0, out);
}

static const spqr_cpu_kernels generic = {"generic", qgemv_generic, gemv16_generic, qdequant_generic, NULL, NULL, spqr_ordered_rows_generic};

const spqr_cpu_kernels *spqr_cpu_kernels_generic(void) { return &generic; }

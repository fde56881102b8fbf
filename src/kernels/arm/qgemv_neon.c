/*
 * qgemv_neon.c — AArch64 ASIMD (NEON) kernels: quantized matrix-vector product, dequantization and
 * 16-bit matrix-vector product. As in the AVX2 kernels, groups of a multiple of 8 codes start on a
 * byte boundary, so 8 codes are one unaligned 64-bit load: two 4-lane vectors take the low 32 bits and
 * the bits from 4w up, a per-lane right shift (0, w, 2w, 3w) and a mask leave one code per lane.
 */
#if defined(__aarch64__)
#include <arm_neon.h>

#include "kernels/cpu.h"
#include "kernels/qgemv_common.h"

/* Codes [j, j + 8) (j a multiple of 8) as two float vectors. */
static inline void codes8(const uint8_t *crow, uint32_t j, unsigned w, int32x4_t nshift, uint32x4_t mask, float32x4_t *lo, float32x4_t *hi) {
    uint64_t word;
    memcpy(&word, crow + ((uint64_t)j * w >> 3), 8);
    uint32x4_t a = vandq_u32(vshlq_u32(vdupq_n_u32((uint32_t)word), nshift), mask);
    uint32x4_t b = vandq_u32(vshlq_u32(vdupq_n_u32((uint32_t)(word >> (4 * w))), nshift), mask);
    *lo = vcvtq_f32_u32(a);
    *hi = vcvtq_f32_u32(b);
}

static float dense_neon(const spqr_qview *v, const uint8_t *crow, const float *s, const float *x) {
    const unsigned w = v->wbits;
    const uint32_t cols = v->cols, gs = v->groupsize;
    const int32_t sh[4] = {0, -(int32_t)w, -(int32_t)(2 * w), -(int32_t)(3 * w)}; /* negative: right shifts */
    const int32x4_t nshift = vld1q_s32(sh);
    const uint32x4_t mask = vdupq_n_u32((1u << w) - 1);
    const bool simd = (gs & 7) == 0;
    float32x4_t acc = vdupq_n_f32(0);
    float tail = 0;
    for (uint32_t j0 = 0, g = 0; j0 < cols; j0 += gs, g++) {
        const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        uint32_t j = j0;
        float32x4_t qx = vdupq_n_f32(0);
        if (simd)
            for (; j + 8 <= j1; j += 8) {
                float32x4_t lo, hi;
                codes8(crow, j, w, nshift, mask, &lo, &hi);
                qx = vfmaq_f32(qx, lo, vld1q_f32(x + j));
                qx = vfmaq_f32(qx, hi, vld1q_f32(x + j + 4));
            }
        float t = 0;
        for (; j < j1; j++) t += (float)spqr_bits_get(crow, j, w) * x[j];
        acc = vfmaq_n_f32(acc, qx, s[g]);
        tail += s[g] * t;
    }
    return vaddvq_f32(acc) + tail;
}

static float zterm_neon(const float *s, const float *z, const float *gsum, uint64_t G) {
    float32x4_t acc = vdupq_n_f32(0);
    uint64_t g = 0;
    for (; g + 4 <= G; g += 4) acc = vfmaq_f32(acc, vmulq_f32(vld1q_f32(s + g), vld1q_f32(z + g)), vld1q_f32(gsum + g));
    float t = vaddvq_f32(acc);
    for (; g < G; g++) t += s[g] * z[g] * gsum[g];
    return t;
}

static void qgemv_neon(const spqr_qview *v, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *scratch, float *y) {
#define DENSE(crow, s, x) dense_neon(v, crow, s, x)
    QK_ROWS(v, r0, r1, x_s, gsum, scratch, y, DENSE, qk_row_stats, zterm_neon);
#undef DENSE
}

/* One row's dense weights s·(q − z) in stored order (the same float operations as spqr_deq). */
static void deq_row_neon(const spqr_qview *v, const uint8_t *crow, const float *s, const float *z, float *o) {
    const unsigned w = v->wbits;
    const uint32_t cols = v->cols, gs = v->groupsize;
    const int32_t sh[4] = {0, -(int32_t)w, -(int32_t)(2 * w), -(int32_t)(3 * w)};
    const int32x4_t nshift = vld1q_s32(sh);
    const uint32x4_t mask = vdupq_n_u32((1u << w) - 1);
    const bool simd = (gs & 7) == 0;
    for (uint32_t j0 = 0, g = 0; j0 < cols; j0 += gs, g++) {
        const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        const float32x4_t zg = vdupq_n_f32(z[g]);
        uint32_t j = j0;
        if (simd)
            for (; j + 8 <= j1; j += 8) {
                float32x4_t lo, hi;
                codes8(crow, j, w, nshift, mask, &lo, &hi);
                vst1q_f32(o + j, vmulq_n_f32(vsubq_f32(lo, zg), s[g]));
                vst1q_f32(o + j + 4, vmulq_n_f32(vsubq_f32(hi, zg), s[g]));
            }
        for (; j < j1; j++) o[j] = spqr_deq(s[g], z[g], spqr_bits_get(crow, j, w));
    }
}

static void qdequant_neon(const spqr_qview *v, uint32_t r0, uint32_t r1, float *scratch, float *out) {
#define DEQ(crow, s, z, o) deq_row_neon(v, crow, s, z, o)
    QK_DEQUANT(v, r0, r1, scratch, out, DEQ, qk_row_stats);
#undef DEQ
}

static void gemv16_neon(const uint16_t *W, int bf16, uint32_t cols, uint32_t r0, uint32_t r1, const float *x, float *y) {
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *wr = W + (uint64_t)r * cols;
        float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
        uint32_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            uint16x8_t h = vld1q_u16(wr + j);
            float32x4_t f0, f1;
            if (bf16) {
                f0 = vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16));
                f1 = vreinterpretq_f32_u32(vshll_n_u16(vget_high_u16(h), 16));
            } else {
                f0 = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h)));
                f1 = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h)));
            }
            a0 = vfmaq_f32(a0, f0, vld1q_f32(x + j));
            a1 = vfmaq_f32(a1, f1, vld1q_f32(x + j + 4));
        }
        float t = vaddvq_f32(vaddq_f32(a0, a1));
        for (; j < cols; j++) t += (bf16 ? spqr_bf16_to_f32(wr[j]) : spqr_f16_to_f32(wr[j])) * x[j];
        y[r - r0] = t;
    }
}

static const spqr_cpu_kernels neon = {"neon", qgemv_neon, gemv16_neon, qdequant_neon, NULL, NULL, spqr_ordered_rows_generic}; /* fmaf: one instruction here */

const spqr_cpu_kernels *spqr_cpu_kernels_neon(void) { return &neon; } /* ASIMD is part of AArch64 */
#endif

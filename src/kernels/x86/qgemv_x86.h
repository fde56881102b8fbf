/*
 * qgemv_x86.h — the 8-wide AVX2 dense loop, shared by the AVX2 and AVX-512 kernel files (each
 * compiled with its own target flags).
 *
 * Groups whose size is a multiple of 8 start on a byte boundary (8 codes of w bits are w bytes), so
 * 8 codes are one unaligned 64-bit load: lanes 0–3 take the low 32 bits, lanes 4–7 the bits from 4w
 * up; a per-lane variable shift (0, w, 2w, 3w) and a mask leave one code per lane (any w ≤ 8).
 * Codes past the last multiple of 8 of a group are done one at a time.
 */
#ifndef SPQR_QGEMV_X86_H
#define SPQR_QGEMV_X86_H

#include <cpuid.h>
#include <immintrin.h>

#include "format/qmatrix.h"

/* F16C (half <-> float): CPUID leaf 1, ECX bit 29 (not every compiler's __builtin_cpu_supports knows it). */
static inline bool cpu_has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Σ_g s[g] z[g] gsum[g], 8 groups at a time. */
static inline float zterm_avx2(const float *s, const float *z, const float *gsum, uint64_t G) {
    __m256 acc = _mm256_setzero_ps();
    uint64_t g = 0;
    for (; g + 8 <= G; g += 8) acc = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_loadu_ps(s + g), _mm256_loadu_ps(z + g)), _mm256_loadu_ps(gsum + g), acc);
    float t = hsum256(acc);
    for (; g < G; g++) t += s[g] * z[g] * gsum[g];
    return t;
}

/* q_j · x_j summed over codes [j, j + 8) into qx; j a multiple of 8. */
static inline __m256 qdot8(const uint8_t *crow, uint32_t j, unsigned w, __m256i shifts, __m256i mask, const float *x, __m256 qx) {
    uint64_t word;
    memcpy(&word, crow + ((uint64_t)j * w >> 3), 8);
    __m256i both = _mm256_blend_epi32(_mm256_set1_epi32((int)(uint32_t)word), _mm256_set1_epi32((int)(uint32_t)(word >> (4 * w))), 0xF0);
    __m256i q = _mm256_and_si256(_mm256_srlv_epi32(both, shifts), mask);
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(q), _mm256_loadu_ps(x + j), qx);
}

/* Σ_g s[g] Σ_{j∈g} q_j x_j of one row, 8 codes at a time. */
static inline float dense_avx2(const spqr_qview *v, const uint8_t *crow, const float *s, const float *x) {
    const unsigned w = v->wbits;
    const uint32_t cols = v->cols, gs = v->groupsize;
    const __m256i shifts = _mm256_setr_epi32(0, (int)w, (int)(2 * w), (int)(3 * w), 0, (int)w, (int)(2 * w), (int)(3 * w));
    const __m256i mask = _mm256_set1_epi32((1 << w) - 1);
    const bool simd = (gs & 7) == 0;
    __m256 acc = _mm256_setzero_ps();
    float tail = 0;
    for (uint32_t j0 = 0, g = 0; j0 < cols; j0 += gs, g++) {
        const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        uint32_t j = j0;
        __m256 qx = _mm256_setzero_ps();
        if (simd)
            for (; j + 8 <= j1; j += 8) qx = qdot8(crow, j, w, shifts, mask, x, qx);
        float t = 0;
        for (; j < j1; j++) t += (float)spqr_bits_get(crow, j, w) * x[j];
        acc = _mm256_fmadd_ps(_mm256_set1_ps(s[g]), qx, acc);
        tail += s[g] * t;
    }
    return hsum256(acc) + tail;
}

/* One row's dense weights s·(q − z) in stored order, 8 codes at a time (same operations as spqr_deq). */
static inline void deq_row_avx2(const spqr_qview *v, const uint8_t *crow, const float *s, const float *z, float *o) {
    const unsigned w = v->wbits;
    const uint32_t cols = v->cols, gs = v->groupsize;
    const __m256i shifts = _mm256_setr_epi32(0, (int)w, (int)(2 * w), (int)(3 * w), 0, (int)w, (int)(2 * w), (int)(3 * w));
    const __m256i mask = _mm256_set1_epi32((1 << w) - 1);
    const bool simd = (gs & 7) == 0;
    for (uint32_t j0 = 0, g = 0; j0 < cols; j0 += gs, g++) {
        const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        const __m256 sg = _mm256_set1_ps(s[g]), zg = _mm256_set1_ps(z[g]);
        uint32_t j = j0;
        if (simd)
            for (; j + 8 <= j1; j += 8) {
                uint64_t word;
                memcpy(&word, crow + ((uint64_t)j * w >> 3), 8);
                __m256i both = _mm256_blend_epi32(_mm256_set1_epi32((int)(uint32_t)word), _mm256_set1_epi32((int)(uint32_t)(word >> (4 * w))), 0xF0);
                __m256 q = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(both, shifts), mask));
                _mm256_storeu_ps(o + j, _mm256_mul_ps(sg, _mm256_sub_ps(q, zg)));
            }
        for (; j < j1; j++) o[j] = spqr_deq(s[g], z[g], spqr_bits_get(crow, j, w));
    }
}

/* 16-bit matrix-vector product, 8 columns at a time (bf16: shift into the high half; half: F16C). */
static inline void gemv16_avx2_rows(const uint16_t *W, int bf16, uint32_t cols, uint32_t r0, uint32_t r1, const float *x, float *y) {
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *w = W + (uint64_t)r * cols;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        uint32_t j = 0;
        for (; j + 16 <= cols; j += 16) {
            __m128i h0 = _mm_loadu_si128((const __m128i *)(w + j)), h1 = _mm_loadu_si128((const __m128i *)(w + j + 8));
            __m256 f0 = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h0), 16)) : _mm256_cvtph_ps(h0);
            __m256 f1 = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h1), 16)) : _mm256_cvtph_ps(h1);
            a0 = _mm256_fmadd_ps(f0, _mm256_loadu_ps(x + j), a0);
            a1 = _mm256_fmadd_ps(f1, _mm256_loadu_ps(x + j + 8), a1);
        }
        float t = hsum256(_mm256_add_ps(a0, a1));
        for (; j < cols; j++) t += (bf16 ? spqr_bf16_to_f32(w[j]) : spqr_f16_to_f32(w[j])) * x[j];
        y[r - r0] = t;
    }
}

#endif

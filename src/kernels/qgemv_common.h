/*
 * qgemv_common.h — scalar pieces every qgemv kernel shares: decoding a row's group statistics and
 * the outlier correction. Included by each ISA's kernel file (static inline: compiled per ISA).
 */
#ifndef SPQR_QGEMV_COMMON_H
#define SPQR_QGEMV_COMMON_H

#include "format/qmatrix.h"

/* Second-level statistics of row block b as floats: qqf[4g..4g+3] = (ss, sz, zs, zz) of group g. */
static inline void qk_block_qq(const spqr_qview *v, uint32_t b, float *qqf) {
    const spqr_qq_stats *q = v->qq + (uint64_t)b * v->lay.groups;
    for (uint64_t g = 0; g < v->lay.groups; g++) {
        qqf[4 * g + 0] = spqr_f16_to_f32(q[g].s_scale);
        qqf[4 * g + 1] = spqr_f16_to_f32(q[g].s_zero);
        qqf[4 * g + 2] = spqr_f16_to_f32(q[g].z_scale);
        qqf[4 * g + 3] = spqr_f16_to_f32(q[g].z_zero);
    }
}

/* Row r's scale s[g] and zero z[g] for every group, exactly as spqr_qview_stats computes them.
 * SpQR needs qqf of r's row block (qk_block_qq); GPTQ ignores it. */
static inline void qk_row_stats(const spqr_qview *v, uint32_t r, const float *qqf, float *s, float *z) {
    const uint64_t G = v->lay.groups;
    if (v->kind == SPQR_TK_SPQR) {
        const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
        for (uint64_t g = 0; g < G; g++) {
            s[g] = spqr_deq(qqf[4 * g], qqf[4 * g + 1], spqr_bits_get(srow, 2 * g, v->qq_bits));
            z[g] = spqr_deq(qqf[4 * g + 2], qqf[4 * g + 3], spqr_bits_get(srow, 2 * g + 1, v->qq_bits));
        }
    } else {
        const uint16_t *sc = v->scales + (uint64_t)r * G;
        const uint8_t *zrow = v->zeros + (uint64_t)r * v->lay.zero_stride;
        for (uint64_t g = 0; g < G; g++) {
            s[g] = spqr_f16_to_f32(sc[g]);
            z[g] = (float)spqr_bits_get(zrow, g, v->wbits);
        }
    }
}

/* Σ over row r's outliers of (value − dense weight) · x_s[col]. */
static inline float qk_outliers(const spqr_qview *v, uint32_t r, const float *s, const float *z, const float *x_s) {
    if (v->kind != SPQR_TK_SPQR) return 0;
    const uint8_t *crow = v->codes + (uint64_t)r * v->lay.code_stride;
    float acc = 0;
    for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
        uint32_t j = v->ocol[k], g = j / v->groupsize;
        float dense = spqr_deq(s[g], z[g], spqr_bits_get(crow, j, v->wbits));
        acc += (spqr_f16_to_f32(v->oval[k]) - dense) * x_s[j];
    }
    return acc;
}

typedef void (*qk_rowstats_fn)(const spqr_qview *v, uint32_t r, const float *qqf, float *s, float *z);

/* Row r's statistics through `rowstats`, re-decoding the second level (into qqf) only when the row
 * block changes; *blk is the block qqf holds (UINT32_MAX: none yet). */
static inline void qk_stats(const spqr_qview *v, uint32_t r, uint32_t *blk, float *qqf, float *s, float *z, qk_rowstats_fn rowstats) {
    if (v->kind == SPQR_TK_SPQR && r / v->qq_groupsize != *blk) {
        *blk = r / v->qq_groupsize;
        qk_block_qq(v, *blk, qqf);
    }
    rowstats(v, r, qqf, s, z);
}

/* Σ_g s[g] z[g] gsum[g], the zero term of a row, in order. */
static inline float qk_zterm(const float *s, const float *z, const float *gsum, uint64_t G) {
    float t = 0;
    for (uint64_t g = 0; g < G; g++) t += s[g] * z[g] * gsum[g];
    return t;
}

/* Drives a kernel's per-row dense loop: decodes statistics with ROWSTATS (same signature as
 * qk_row_stats; re-decoding the second level when the row block changes) and adds the zero term
 * (ZTERM, like qk_zterm) and the outliers. DENSE(crow, s, x_s) must return
 * Σ_g s[g] · Σ_{j∈g} q_j x_s[j]. */
#define QK_ROWS(v, r0, r1, x_s, gsum, scratch, y, DENSE, ROWSTATS, ZTERM)                       \
    do {                                                                                         \
        const uint64_t G_ = (v)->lay.groups;                                                     \
        float *s_ = (scratch), *z_ = s_ + G_, *qqf_ = z_ + G_;                                   \
        uint32_t blk_ = UINT32_MAX;                                                              \
        for (uint32_t r_ = (r0); r_ < (r1); r_++) {                                              \
            qk_stats((v), r_, &blk_, qqf_, s_, z_, ROWSTATS);                                    \
            const float zt_ = ZTERM(s_, z_, (gsum), G_);                                         \
            const uint8_t *crow_ = (v)->codes + (uint64_t)r_ * (v)->lay.code_stride;             \
            (y)[r_ - (r0)] = DENSE(crow_, s_, (x_s)) - zt_ + qk_outliers((v), r_, s_, z_, (x_s)); \
        }                                                                                        \
    } while (0)

/* Drives a dequantization kernel: DEQ(crow, s, z, out_row) writes one row's dense weights; then
 * outliers overwrite theirs. Statistics as in QK_ROWS. */
#define QK_DEQUANT(v, r0, r1, scratch, out, DEQ, ROWSTATS)                                        \
    do {                                                                                         \
        const uint64_t G_ = (v)->lay.groups;                                                     \
        float *s_ = (scratch), *z_ = s_ + G_, *qqf_ = z_ + G_;                                   \
        uint32_t blk_ = UINT32_MAX;                                                              \
        for (uint32_t r_ = (r0); r_ < (r1); r_++) {                                              \
            qk_stats((v), r_, &blk_, qqf_, s_, z_, ROWSTATS);                                    \
            float *o_ = (out) + (uint64_t)(r_ - (r0)) * (v)->cols;                               \
            DEQ((v)->codes + (uint64_t)r_ * (v)->lay.code_stride, s_, z_, o_);                   \
            if ((v)->kind == SPQR_TK_SPQR)                                                       \
                for (uint32_t k_ = (v)->row_ptr[r_]; k_ < (v)->row_ptr[r_ + 1]; k_++)            \
                    o_[(v)->ocol[k_]] = spqr_f16_to_f32((v)->oval[k_]);                          \
        }                                                                                        \
    } while (0)

#endif

/* qmatrix.c — see qmatrix.h. */
#include "format/qmatrix.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

uint16_t spqr_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, ax = x & 0x7fffffff;
    if (ax >= 0x7f800000) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000 ? 0x200 : 0)); /* Inf / NaN */
    if (ax >= 0x477ff000) return (uint16_t)(sign | 0x7c00);                                   /* rounds past 65504 */
    if (ax < 0x38800000) {                                                                     /* subnormal or zero */
        if (ax < 0x33000000) return (uint16_t)sign;                                            /* < 2^-25: rounds to 0 */
        uint32_t m = (ax & 0x7fffff) | 0x800000, e = ax >> 23;
        uint32_t shift = 126 - e;        /* 14..24 */
        uint32_t h = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1))) h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax - 0x38000000) >> 13), rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

static uint64_t align_up(uint64_t x) { return (x + SPQR_ALIGN - 1) & ~(uint64_t)(SPQR_ALIGN - 1); }
static uint64_t row_bytes(uint64_t bits) { return (bits + 63) / 64 * 8; }

bool spqr_qlayout_compute(const spqr_file_tensor *t, spqr_qlayout *lay, char *why, size_t cap) {
    memset(lay, 0, sizeof *lay);
    const uint64_t rows = t->shape[0], cols = t->shape[1];
    const bool spqr = t->kind == SPQR_TK_SPQR;
    if (t->kind != SPQR_TK_SPQR && t->kind != SPQR_TK_GPTQ) { snprintf(why, cap, "kind %u is not a quantized kind", t->kind); return false; }
    if (t->n_dims != 2 || rows == 0 || cols == 0 || rows > (1u << 24) || cols > 65536) {
        snprintf(why, cap, "quantized shape [%llu, %llu] is outside 1..2^24 rows, 1..65536 columns", (unsigned long long)rows, (unsigned long long)cols);
        return false;
    }
    if (t->wbits < 1 || t->wbits > 8 || t->groupsize < 1 || t->groupsize > cols) { snprintf(why, cap, "wbits %u / groupsize %u out of range", t->wbits, t->groupsize); return false; }
    if (spqr && (t->qq_bits < 1 || t->qq_bits > 8 || t->qq_groupsize < 1 || t->qq_groupsize > rows)) {
        snprintf(why, cap, "qq_bits %u / qq_groupsize %u out of range", t->qq_bits, t->qq_groupsize);
        return false;
    }
    if (t->n_outliers > rows * cols || (!spqr && t->n_outliers)) { snprintf(why, cap, "%llu outliers is impossible here", (unsigned long long)t->n_outliers); return false; }
    if (t->flags & ~(uint32_t)SPQR_TF_PERM) { snprintf(why, cap, "unknown flags 0x%x", t->flags); return false; }
    /* bounds above keep every product below 2^50: no overflow checks needed past this point */
    lay->groups = (cols + t->groupsize - 1) / t->groupsize;
    lay->row_blocks = spqr ? (rows + t->qq_groupsize - 1) / t->qq_groupsize : 0;
    lay->code_stride = row_bytes(cols * t->wbits);
    uint64_t off = 0;
    lay->perm = UINT64_MAX;
    if (t->flags & SPQR_TF_PERM) { lay->perm = off; off = align_up(off + 4 * cols); }
    lay->codes = off;
    off = align_up(off + rows * lay->code_stride + 8); /* +8: spqr_bits_get reads a whole word */
    if (spqr) {
        lay->stat_stride = row_bytes(lay->groups * 2 * t->qq_bits);
        lay->stats = off;
        off = align_up(off + rows * lay->stat_stride + 8);
        lay->qq = off;
        off = align_up(off + lay->row_blocks * lay->groups * sizeof(spqr_qq_stats));
        lay->row_ptr = off;
        off = align_up(off + 4 * (rows + 1));
        lay->ocol = off;
        off = align_up(off + 2 * t->n_outliers);
        lay->oval = off;
        off = align_up(off + 2 * t->n_outliers);
    } else {
        lay->scales = off;
        off = align_up(off + 2 * rows * lay->groups);
        lay->zero_stride = row_bytes(lay->groups * t->wbits);
        lay->zeros = off;
        off = align_up(off + rows * lay->zero_stride + 8);
    }
    lay->size = off;
    return true;
}

spqr_status spqr_qview_init(spqr_qview *v, const spqr_file_tensor *t, const uint8_t *blob, uint64_t size, const char *what,
                            spqr_error *err) {
    memset(v, 0, sizeof *v);
    char why[160];
    if (!spqr_qlayout_compute(t, &v->lay, why, sizeof why)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s", what, why);
    if (size != v->lay.size)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: blob is %llu bytes, its parameters need %llu", what, (unsigned long long)size,
                            (unsigned long long)v->lay.size);
    if ((uintptr_t)blob & 7) return spqr_set_err(err, SPQR_E_FORMAT, "%s: blob is not 8-byte aligned", what);
    v->kind = t->kind;
    v->rows = (uint32_t)t->shape[0];
    v->cols = (uint32_t)t->shape[1];
    v->wbits = t->wbits;
    v->groupsize = t->groupsize;
    v->qq_bits = t->qq_bits;
    v->qq_groupsize = t->qq_groupsize;
    v->n_outliers = t->n_outliers;
    v->codes = blob + v->lay.codes;
    if (v->lay.perm != UINT64_MAX) {
        v->perm = (const int32_t *)(blob + v->lay.perm);
        uint8_t *seen = calloc(v->cols, 1);
        if (!seen) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
        for (uint32_t j = 0; j < v->cols; j++) {
            int32_t p = v->perm[j];
            if (p < 0 || (uint32_t)p >= v->cols || seen[p]) {
                free(seen);
                return spqr_set_err(err, SPQR_E_FORMAT, "%s: column permutation is not a permutation (entry %u = %d)", what, j, p);
            }
            seen[p] = 1;
        }
        free(seen);
    }
    if (v->kind == SPQR_TK_SPQR) {
        v->stats = blob + v->lay.stats;
        v->qq = (const spqr_qq_stats *)(blob + v->lay.qq);
        for (uint64_t i = 0; i < v->lay.row_blocks * v->lay.groups; i++) {
            const spqr_qq_stats *q = &v->qq[i];
            if (!isfinite(spqr_f16_to_f32(q->s_scale)) || !isfinite(spqr_f16_to_f32(q->s_zero)) || !isfinite(spqr_f16_to_f32(q->z_scale)) ||
                !isfinite(spqr_f16_to_f32(q->z_zero)))
                return spqr_set_err(err, SPQR_E_FORMAT, "%s: second-level statistics %llu are not finite", what, (unsigned long long)i);
        }
        v->row_ptr = (const uint32_t *)(blob + v->lay.row_ptr);
        v->ocol = (const uint16_t *)(blob + v->lay.ocol);
        v->oval = (const uint16_t *)(blob + v->lay.oval);
        if (v->row_ptr[0] != 0 || v->row_ptr[v->rows] != v->n_outliers)
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: outlier row pointers do not span the %llu outliers", what, (unsigned long long)v->n_outliers);
        for (uint32_t r = 0; r < v->rows; r++) {
            uint32_t a = v->row_ptr[r], b = v->row_ptr[r + 1];
            if (b < a || b > v->n_outliers) return spqr_set_err(err, SPQR_E_FORMAT, "%s: outlier row pointer %u is not monotone", what, r + 1);
            for (uint32_t k = a; k < b; k++) {
                if (v->ocol[k] >= v->cols || (k > a && v->ocol[k] <= v->ocol[k - 1]))
                    return spqr_set_err(err, SPQR_E_FORMAT, "%s: outlier %u of row %u has column %u (out of range or not ascending)", what, k, r, v->ocol[k]);
                if (!isfinite(spqr_f16_to_f32(v->oval[k]))) return spqr_set_err(err, SPQR_E_FORMAT, "%s: outlier %u is not finite", what, k);
            }
        }
    } else {
        v->scales = (const uint16_t *)(blob + v->lay.scales);
        v->zeros = blob + v->lay.zeros;
        for (uint64_t i = 0; i < (uint64_t)v->rows * v->lay.groups; i++)
            if (!isfinite(spqr_f16_to_f32(v->scales[i]))) return spqr_set_err(err, SPQR_E_FORMAT, "%s: scale %llu is not finite", what, (unsigned long long)i);
    }
    return SPQR_OK;
}

void spqr_qview_stats(const spqr_qview *v, uint32_t r, uint32_t g, float *scale, float *zero) {
    if (v->kind == SPQR_TK_SPQR) {
        const spqr_qq_stats *q = &v->qq[(uint64_t)(r / v->qq_groupsize) * v->lay.groups + g];
        const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
        unsigned sc = spqr_bits_get(srow, 2ull * g, v->qq_bits), zc = spqr_bits_get(srow, 2ull * g + 1, v->qq_bits);
        *scale = spqr_deq(spqr_f16_to_f32(q->s_scale), spqr_f16_to_f32(q->s_zero), sc);
        *zero = spqr_deq(spqr_f16_to_f32(q->z_scale), spqr_f16_to_f32(q->z_zero), zc);
    } else {
        *scale = spqr_f16_to_f32(v->scales[(uint64_t)r * v->lay.groups + g]);
        *zero = (float)spqr_bits_get(v->zeros + (uint64_t)r * v->lay.zero_stride, g, v->wbits);
    }
}

float spqr_qview_dense_weight(const spqr_qview *v, uint32_t r, uint32_t j) {
    float s, z;
    spqr_qview_stats(v, r, j / v->groupsize, &s, &z);
    return spqr_deq(s, z, spqr_bits_get(v->codes + (uint64_t)r * v->lay.code_stride, j, v->wbits));
}

void spqr_qview_dequant_rows(const spqr_qview *v, uint32_t r0, uint32_t r1, int unpermute, float *out) {
    const uint32_t cols = v->cols, gs = v->groupsize;
    for (uint32_t r = r0; r < r1; r++) {
        float *o = out + (uint64_t)(r - r0) * cols;
        const uint8_t *crow = v->codes + (uint64_t)r * v->lay.code_stride;
        for (uint32_t g = 0; g * gs < cols; g++) {
            float s, z;
            spqr_qview_stats(v, r, g, &s, &z);
            uint32_t j1 = (g + 1) * gs < cols ? (g + 1) * gs : cols;
            for (uint32_t j = g * gs; j < j1; j++) {
                float w = spqr_deq(s, z, spqr_bits_get(crow, j, v->wbits));
                o[unpermute && v->perm ? (uint32_t)v->perm[j] : j] = w;
            }
        }
        if (v->kind == SPQR_TK_SPQR)
            for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
                uint32_t j = v->ocol[k];
                o[unpermute && v->perm ? (uint32_t)v->perm[j] : j] = spqr_f16_to_f32(v->oval[k]);
            }
    }
}

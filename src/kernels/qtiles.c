/* qtiles.c — see qtiles.h. */
#include "kernels/qtiles.h"

#include <math.h>
#include <stdlib.h>

bool spqr_qtiles_supported(const spqr_qview *v) {
    if (v->kind == SPQR_TK_SPQR) return v->qq_groupsize % SPQR_TILE_ROWS == 0 && v->qq_bits <= 8;
    return v->kind == SPQR_TK_GPTQ;
}

void spqr_qtiles_free(spqr_qtiles *t) {
    if (!t) return;
    free(t->data);
    free(t->o_ptr);
    free(t->o_col);
    free(t->o_lane);
    free(t->o_delta);
    free(t->o_val);
    free(t);
}

/* A lane vector: 16 codes of `bits` bits, lane i at bits [bits·i, bits·i + bits), LSB first (the
 * same bit stream as the file's rows, 16 codes long); `bits` u16 in all. */
static void put_lane(uint16_t *vec, unsigned bits, unsigned lane, unsigned code) { spqr_bits_put((uint8_t *)vec, lane, bits, code); }

static unsigned get_lane(const uint16_t *vec, unsigned bits, unsigned lane) { return spqr_bits_get((const uint8_t *)vec, lane, bits); }

spqr_qtiles *spqr_qtiles_build(const spqr_qview *v) {
    if (!spqr_qtiles_supported(v)) return NULL;
    spqr_qtiles *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    const bool spqr = v->kind == SPQR_TK_SPQR;
    t->kind = v->kind;
    t->rows = v->rows;
    t->cols = v->cols;
    t->wbits = v->wbits;
    t->groupsize = v->groupsize;
    t->qq_bits = v->qq_bits;
    t->groups = (uint32_t)v->lay.groups;
    t->n_tiles = (v->rows + SPQR_TILE_ROWS - 1) / SPQR_TILE_ROWS;
    t->stat_u16 = spqr ? 2 * v->qq_bits + 8 : 16 + v->wbits;
    t->tile_stride = ((uint64_t)v->cols * v->wbits + (uint64_t)t->groups * t->stat_u16 + 31) / 32 * 32;
    const uint64_t n = t->tile_stride * t->n_tiles;
    t->data = aligned_alloc(64, n * sizeof(uint16_t) + 64); /* + 64: kernels read whole words at any lane vector */
    if (!t->data) goto fail;
    memset(t->data, 0, n * sizeof(uint16_t) + 64);
    for (uint32_t tile = 0; tile < t->n_tiles; tile++) {
        uint16_t *tl = t->data + (uint64_t)tile * t->tile_stride;
        for (unsigned lane = 0; lane < SPQR_TILE_ROWS; lane++) {
            const uint32_t r = tile * SPQR_TILE_ROWS + lane;
            if (r >= v->rows) break;
            const uint8_t *crow = v->codes + (uint64_t)r * v->lay.code_stride;
            for (uint32_t j = 0; j < v->cols; j++) put_lane(tl + (uint64_t)j * v->wbits, v->wbits, lane, spqr_bits_get(crow, j, v->wbits));
            for (uint32_t g = 0; g < t->groups; g++) {
                uint16_t *st = (uint16_t *)spqr_qtiles_stats(t, tl, g);
                if (spqr) {
                    const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
                    put_lane(st, v->qq_bits, lane, spqr_bits_get(srow, 2ull * g, v->qq_bits));
                    put_lane(st + v->qq_bits, v->qq_bits, lane, spqr_bits_get(srow, 2ull * g + 1, v->qq_bits));
                    const spqr_qq_stats *q = &v->qq[(uint64_t)(r / v->qq_groupsize) * t->groups + g];
                    const float f[4] = {spqr_f16_to_f32(q->s_scale), spqr_f16_to_f32(q->s_zero), spqr_f16_to_f32(q->z_scale), spqr_f16_to_f32(q->z_zero)};
                    memcpy(st + 2 * v->qq_bits, f, sizeof f);
                } else {
                    st[lane] = v->scales[(uint64_t)r * t->groups + g];
                    put_lane(st + 16, v->wbits, lane, spqr_bits_get(v->zeros + (uint64_t)r * v->lay.zero_stride, g, v->wbits));
                }
            }
        }
    }
    if (spqr) {
        const uint64_t no = v->n_outliers;
        t->o_ptr = malloc(((uint64_t)v->rows + 1) * sizeof *t->o_ptr);
        t->o_col = malloc((no ? no : 1) * sizeof *t->o_col);
        t->o_lane = malloc(no ? no : 1);
        t->o_delta = malloc((no ? no : 1) * sizeof *t->o_delta);
        t->o_val = malloc((no ? no : 1) * sizeof *t->o_val);
        if (!t->o_ptr || !t->o_col || !t->o_lane || !t->o_delta || !t->o_val) goto fail;
        memcpy(t->o_ptr, v->row_ptr, ((uint64_t)v->rows + 1) * sizeof *t->o_ptr);
        for (uint32_t r = 0; r < v->rows; r++)
            for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
                const uint32_t j = v->ocol[k];
                const float dense = spqr_qview_dense_weight(v, r, j);
                t->o_col[k] = (uint16_t)j;
                t->o_lane[k] = (uint8_t)(r % SPQR_TILE_ROWS);
                t->o_val[k] = spqr_f16_to_f32(v->oval[k]);
                t->o_delta[k] = t->o_val[k] - dense;
            }
    }
    return t;
fail:
    spqr_qtiles_free(t);
    return NULL;
}

uint64_t spqr_qtiles_bytes(const spqr_qtiles *t) {
    uint64_t b = t->tile_stride * t->n_tiles * sizeof(uint16_t);
    if (t->o_ptr) b += ((uint64_t)t->rows + 1) * 4 + (uint64_t)t->o_ptr[t->rows] * 7;
    return b;
}

/* Scale and zero of (lane, group) from the tile's statistics: the reference decoder's float ops. */
static void lane_stats(const spqr_qtiles *t, const uint16_t *st, unsigned lane, float *s, float *z) {
    if (t->kind == SPQR_TK_SPQR) {
        const unsigned q = t->qq_bits;
        float qq[4];
        spqr_qtiles_qq(st, q, qq);
        *s = spqr_deq(qq[0], qq[1], get_lane(st, q, lane));
        *z = spqr_deq(qq[2], qq[3], get_lane(st + q, q, lane));
    } else {
        *s = spqr_f16_to_f32(st[lane]);
        *z = (float)get_lane(st + 16, t->wbits, lane);
    }
}

void spqr_qtiles_gemv_ref(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const float *x_s, const float *gsum, float *y) {
    const unsigned w = t->wbits;
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *tl = spqr_qtiles_tile(t, r / SPQR_TILE_ROWS);
        const unsigned lane = r % SPQR_TILE_ROWS;
        float acc = 0;
        for (uint32_t g = 0, j0 = 0; g < t->groups; g++, j0 += t->groupsize) {
            const uint32_t j1 = j0 + t->groupsize < t->cols ? j0 + t->groupsize : t->cols;
            float s, z, qx = 0;
            lane_stats(t, spqr_qtiles_stats(t, tl, g), lane, &s, &z);
            for (uint32_t j = j0; j < j1; j++) qx += (float)get_lane(tl + (uint64_t)j * w, w, lane) * x_s[j];
            acc += s * (qx - z * gsum[g]);
        }
        if (t->o_ptr)
            for (uint32_t k = t->o_ptr[r]; k < t->o_ptr[r + 1]; k++) acc += t->o_delta[k] * x_s[t->o_col[k]];
        y[r - r0] = acc;
    }
}

void spqr_qtiles_dequant_rows(const spqr_qtiles *t, uint32_t r0, uint32_t r1, float *out) {
    const unsigned w = t->wbits;
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *tl = spqr_qtiles_tile(t, r / SPQR_TILE_ROWS);
        const unsigned lane = r % SPQR_TILE_ROWS;
        float *o = out + (uint64_t)(r - r0) * t->cols;
        for (uint32_t g = 0, j0 = 0; g < t->groups; g++, j0 += t->groupsize) {
            const uint32_t j1 = j0 + t->groupsize < t->cols ? j0 + t->groupsize : t->cols;
            float s, z;
            lane_stats(t, spqr_qtiles_stats(t, tl, g), lane, &s, &z);
            for (uint32_t j = j0; j < j1; j++) o[j] = spqr_deq(s, z, get_lane(tl + (uint64_t)j * w, w, lane));
        }
        if (t->o_ptr)
            for (uint32_t k = t->o_ptr[r]; k < t->o_ptr[r + 1]; k++) o[t->o_col[k]] = t->o_val[k];
    }
}

void spqr_act8_quantize(const float *x, uint32_t cols, uint32_t gs, int8_t *xq, float *dx, float *gq) {
    for (uint32_t g = 0, j0 = 0; j0 < cols; g++, j0 += gs) {
        const uint32_t j1 = j0 + gs < cols ? j0 + gs : cols;
        float m = 0;
        for (uint32_t j = j0; j < j1; j++) {
            const float a = fabsf(x[j]);
            m = a > m ? a : m; /* x is finite: no libm call for fmaxf */
        }
        const float inv = m > 0 ? 127.0f / m : 0.0f;
        int sum = 0;
        for (uint32_t j = j0; j < j1; j++) {
            const int v = (int)nearbyintf(x[j] * inv);
            xq[j] = (int8_t)v;
            sum += v;
        }
        dx[g] = m / 127.0f;
        gq[g] = dx[g] * (float)sum;
    }
}

void spqr_qtiles_gemv_act8_ref(const spqr_qtiles *t, uint32_t r0, uint32_t r1, const int8_t *xq, const float *dx, const float *gq,
                               const float *x_s, float *y) {
    const unsigned w = t->wbits;
    for (uint32_t r = r0; r < r1; r++) {
        const uint16_t *tl = spqr_qtiles_tile(t, r / SPQR_TILE_ROWS);
        const unsigned lane = r % SPQR_TILE_ROWS;
        float acc = 0;
        for (uint32_t g = 0, j0 = 0; g < t->groups; g++, j0 += t->groupsize) {
            const uint32_t j1 = j0 + t->groupsize < t->cols ? j0 + t->groupsize : t->cols;
            float s, z;
            int32_t isum = 0;
            lane_stats(t, spqr_qtiles_stats(t, tl, g), lane, &s, &z);
            for (uint32_t j = j0; j < j1; j++) isum += (int32_t)get_lane(tl + (uint64_t)j * w, w, lane) * xq[j];
            acc = fmaf(s, fmaf(-z, gq[g], (float)isum * dx[g]), acc);
        }
        if (t->o_ptr)
            for (uint32_t k = t->o_ptr[r]; k < t->o_ptr[r + 1]; k++) acc += t->o_delta[k] * x_s[t->o_col[k]];
        y[r - r0] = acc;
    }
}

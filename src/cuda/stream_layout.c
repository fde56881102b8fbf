/* stream_layout.c — see stream_layout.h. */
#include "cuda/stream_layout.h"

#include <stdlib.h>
#include <string.h>

bool spqr_stream_supported(const spqr_qview *v) {
    return v->kind == SPQR_TK_SPQR && v->wbits >= 2 && v->wbits <= 4 && v->groupsize == 16 && v->qq_bits >= 1 && v->qq_bits <= 4 &&
           v->qq_groupsize % 16 == 0 && v->cols <= 65535;
}

void spqr_stream_free(spqr_stream_layout *L) {
    if (!L) return;
    free(L->recs);
    free(L->osa);
    free(L->oent);
    free(L->iperm);
    memset(L, 0, sizeof *L);
}

uint64_t spqr_stream_bytes(const spqr_stream_layout *L) {
    return L->nsa * L->rec_bytes + 4 * (L->n_out + L->nsa + 1) + (L->iperm ? 2ull * L->cols : 0);
}

/* sc | zc << q of (row, group), 0 outside the matrix. */
static uint32_t field_at(const spqr_qview *v, uint32_t r, uint64_t g) {
    if (r >= v->rows || g >= v->lay.groups) return 0;
    const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
    return spqr_bits_get(srow, 2 * g, v->qq_bits) | spqr_bits_get(srow, 2 * g + 1, v->qq_bits) << v->qq_bits;
}

/* The record of SA (rt, kc). */
static void fill_record(const spqr_qview *v, const spqr_stream_layout *L, uint32_t rt, uint32_t kc, uint8_t *rec) {
    const unsigned W = v->wbits, q = v->qq_bits;
    uint32_t *codes = (uint32_t *)rec;
    uint8_t *fields = rec + spqr_stream_code_bytes(W);
    uint16_t *qq = (uint16_t *)(fields + 128 + spqr_stream_fieldb_bytes(q));
    for (unsigned lane = 0; lane < 32; lane++) {
        const unsigned gl = lane >> 2, t = lane & 3;
        uint32_t w[16] = {0};
        uint64_t fr = 0;
        for (unsigned a = 0; a < 2; a++) {
            for (unsigned G = 0; G < 8; G++)
                for (unsigned i = 0; i < 4; i++) {
                    const uint32_t r = rt * 16 + gl + 8 * (i & 1), j = kc * 256 + a * 128 + 16 * G + 4 * t + 2 * (i >> 1);
                    spqr_gsum_put(w + 2 * W * a, W, G, i, spqr_layout_code(v, r, j), spqr_layout_code(v, r, j + 1));
                }
            for (unsigned f = 0; f < 4; f++) {
                const unsigned h = f >> 1, e = f & 1;
                const uint64_t g = (uint64_t)kc * 16 + 8 * a + 2 * t + e;
                fr |= (uint64_t)field_at(v, rt * 16 + gl + 8 * h, g) << (8 * q * a + 2 * q * f);
            }
        }
        for (unsigned k = 0; k < 4 * W; k++) codes[((k / 4) * 32 + lane) * 4 + k % 4] = w[k];
        ((uint32_t *)fields)[lane] = (uint32_t)fr;
        if (q == 3) ((uint16_t *)(fields + 128))[lane] = (uint16_t)(fr >> 32);
        else if (q == 4) ((uint32_t *)(fields + 128))[lane] = (uint32_t)(fr >> 32);
    }
    /* qq of the β2 block of these rows (rows past the matrix: the last block's, their codes are 0) */
    uint32_t r0 = rt * 16 < v->rows ? rt * 16 : v->rows - 1;
    const uint64_t rb = r0 / v->qq_groupsize;
    for (unsigned G = 0; G < 16; G++) {
        const uint64_t g = (uint64_t)kc * 16 + G;
        if (g >= v->lay.groups) continue;
        const spqr_qq_stats *s = v->qq + rb * v->lay.groups + g;
        qq[4 * G] = s->s_scale; qq[4 * G + 1] = s->s_zero; qq[4 * G + 2] = s->z_scale; qq[4 * G + 3] = s->z_zero;
    }
}

spqr_status spqr_stream_build(const spqr_qview *v, spqr_stream_layout *L, spqr_error *err) {
    memset(L, 0, sizeof *L);
    if (!spqr_stream_supported(v))
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "stream layout: unsupported matrix (w%u g%u q%u/%u)", v->wbits, v->groupsize, v->qq_bits,
                            v->qq_groupsize);
    L->rows = v->rows; L->cols = v->cols; L->wbits = v->wbits; L->qq_bits = v->qq_bits; L->qq_gs = v->qq_groupsize;
    L->nrt = (v->rows + 15) / 16;
    L->nk = (v->cols + 255) / 256;
    L->rec_bytes = spqr_stream_rec_bytes(v->wbits, v->qq_bits);
    L->nsa = (uint64_t)L->nrt * L->nk;
    L->n_out = v->n_outliers;
    L->recs = calloc(L->nsa, L->rec_bytes);
    L->osa = calloc(L->nsa + 1, 4);
    L->oent = calloc(spqr_stream_oent_len(L->n_out), 4);
    L->iperm = v->perm ? malloc((size_t)v->cols * 2) : NULL;
    if (!L->recs || !L->osa || !L->oent || (v->perm && !L->iperm)) {
        spqr_stream_free(L);
        return spqr_set_err(err, SPQR_E_NOMEM, "stream layout: out of memory");
    }
    if (v->perm)
        for (uint32_t j = 0; j < v->cols; j++) L->iperm[v->perm[j]] = (uint16_t)j;
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t kc = 0; kc < L->nk; kc++) fill_record(v, L, rt, kc, L->recs + ((uint64_t)rt * L->nk + kc) * L->rec_bytes);
    /* outliers by (SA, row, column): count per SA, prefix, then fill row by row (each row's columns
     * ascend, and rows are visited in order, so every SA's entries end up sorted) */
    for (uint32_t r = 0; r < v->rows; r++)
        for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) L->osa[(uint64_t)(r / 16) * L->nk + v->ocol[k] / 256 + 1]++;
    for (uint64_t s = 0; s < L->nsa; s++) L->osa[s + 1] += L->osa[s];
    uint32_t *fill = malloc((L->nsa + 1) * 4);
    if (!fill) {
        spqr_stream_free(L);
        return spqr_set_err(err, SPQR_E_NOMEM, "stream layout: out of memory");
    }
    memcpy(fill, L->osa, (L->nsa + 1) * 4);
    for (uint32_t r = 0; r < v->rows; r++)
        for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
            const uint32_t j = v->ocol[k];
            const uint64_t s = (uint64_t)(r / 16) * L->nk + j / 256;
            const uint16_t d = spqr_f32_to_f16(spqr_f16_to_f32(v->oval[k]) - spqr_qview_dense_weight(v, r, j));
            L->oent[fill[s]++] = (j % 256) | (r % 16) << 8 | (uint32_t)d << 16;
        }
    free(fill);
    return SPQR_OK;
}

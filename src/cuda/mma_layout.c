/* mma_layout.c — see mma_layout.h. */
#include "cuda/mma_layout.h"

#include <stdlib.h>
#include <string.h>

bool spqr_mma_supported(const spqr_qview *v) {
    if (v->wbits < 2 || v->wbits > 4 || v->groupsize < 16 || (v->groupsize & (v->groupsize - 1)) || v->cols > 65535) return false;
    if (v->kind == SPQR_TK_SPQR) return v->qq_bits <= 4 && v->qq_groupsize % 16 == 0;
    return v->kind == SPQR_TK_GPTQ;
}

bool spqr_gsum_supported(const spqr_qview *v) {
    return v->kind == SPQR_TK_SPQR && v->wbits >= 2 && v->wbits <= 4 && v->groupsize == 16 && v->qq_bits <= 4 && v->qq_groupsize % 16 == 0 &&
           v->cols <= 65535;
}

uint32_t spqr_mma_default_slices(uint32_t rows, uint32_t cols, int sms) {
    const uint32_t nrt = (rows + SPQR_MMA_ROWS - 1) / SPQR_MMA_ROWS, nku = (cols + SPQR_MMA_UCOLS - 1) / SPQR_MMA_UCOLS;
    /* about 8 blocks per SM, but at least 2 units per warp (8 per slice): each block's gather,
     * reduction and outliers cost about as much as one unit */
    uint32_t S = (uint32_t)((8.0 * (sms > 0 ? sms : 132)) / nrt + 0.5), cap = nku / 8;
    if (S > cap) S = cap;
    return S < 1 ? 1 : S;
}

void spqr_mma_free(spqr_mma_layout *L) {
    if (!L) return;
    free(L->codes);
    free(L->fields);
    free(L->qq);
    free(L->optr);
    free(L->ocol);
    free(L->odelta);
    free(L->perm);
    memset(L, 0, sizeof *L);
}

uint64_t spqr_mma_bytes(const spqr_mma_layout *L) {
    const uint64_t units = (uint64_t)L->nrt * L->nku, sp = L->kind == SPQR_TK_SPQR;
    uint64_t b = units * L->wbits * 512;
    if (sp) {
        /* per unit, the fields; per (row tile, unit): the 2 m-tiles' qq of its groups */
        const uint64_t gpu = (SPQR_MMA_UCOLS + L->gs - 1) / L->gs;
        b += units * 256 + units * 2 * gpu * 8;
    } else {
        b += (uint64_t)L->nrt * 32 * L->gpad * 4;
    }
    b += 4ull * ((uint64_t)L->nrt * L->S * 32 + 1) + 4ull * L->n_out;
    if (L->perm) b += 4ull * L->cols;
    return b;
}

unsigned spqr_layout_code(const spqr_qview *v, uint32_t r, uint32_t j) {
    return r < v->rows && j < v->cols ? spqr_bits_get(v->codes + (uint64_t)r * v->lay.code_stride, j, v->wbits) : 0;
}

/* Puts the codes of pair q into a lane's words (the inverse of spqr_mma_pair). */
static void put_pair(uint32_t *w, unsigned W, unsigned q, unsigned c0, unsigned c1) {
    if (W == 3 && q >= 60) {
        const unsigned i = 3 * (q - 60);
        for (unsigned b = 0; b < 3; b++) w[i + b] |= ((c0 >> b) & 1u) << 15 | ((c1 >> b) & 1u) << 31;
        return;
    }
    const unsigned per = W == 2 ? 8 : W == 3 ? 5 : 4, o = W * (q % per);
    w[q / per] |= c0 << o | c1 << (16 + o);
}

void spqr_gsum_put(uint32_t *w, unsigned W, unsigned G, unsigned i, unsigned c0, unsigned c1) {
    unsigned k, b;
    spqr_gsum_reg(W, G, i, &k, &b);
    if (b == 15) {
        for (unsigned j = 0; j < 3; j++) w[k + j] |= ((c0 >> j) & 1u) << 15 | ((c1 >> j) & 1u) << 31;
        return;
    }
    w[k] |= c0 << b | c1 << (16 + b);
}

/* The group-sum codes and fields of one (row tile, unit, lane). */
static void fill_gsum(const spqr_qview *v, spqr_mma_layout *L, uint32_t rt, uint32_t u, unsigned lane) {
    const unsigned W = v->wbits, gl = lane >> 2, t = lane & 3;
    const uint64_t unit = (uint64_t)rt * L->nku + u;
    uint32_t w[16] = {0};
    for (unsigned mt = 0; mt < 2; mt++)
        for (unsigned G = 0; G < 8; G++)
            for (unsigned i = 0; i < 4; i++) {
                const uint32_t r = rt * 32 + mt * 16 + gl + 8 * (i & 1), j = u * 128 + 16 * G + 4 * t + 2 * (i >> 1);
                spqr_gsum_put(w + mt * 2 * W, W, G, i, spqr_layout_code(v, r, j), spqr_layout_code(v, r, j + 1));
            }
    for (unsigned k = 0; k < 4 * W; k++) L->codes[((unit * W + k / 4) * 32 + lane) * 4 + k % 4] = w[k];
    /* lane L's fields: row L of the tile, its 8 groups */
    const uint32_t r = rt * 32 + lane;
    uint32_t f[2] = {0, 0};
    for (unsigned G = 0; G < 8 && r < v->rows; G++) {
        const uint64_t g = (uint64_t)u * 8 + G;
        if (g >= v->lay.groups) break;
        const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
        f[G >> 2] |= (spqr_bits_get(srow, 2 * g, v->qq_bits) | spqr_bits_get(srow, 2 * g + 1, v->qq_bits) << 4) << (8 * (G & 3));
    }
    L->fields[unit * 64 + lane * 2] = f[0];
    L->fields[unit * 64 + lane * 2 + 1] = f[1];
}

static spqr_status build(const spqr_qview *v, uint32_t S, int gsum, spqr_mma_layout *L, spqr_error *err);

spqr_status spqr_mma_build(const spqr_qview *v, uint32_t S, spqr_mma_layout *L, spqr_error *err) { return build(v, S, 0, L, err); }
spqr_status spqr_gsum_build(const spqr_qview *v, uint32_t S, spqr_mma_layout *L, spqr_error *err) { return build(v, S, 1, L, err); }

static spqr_status build(const spqr_qview *v, uint32_t S, int gsum, spqr_mma_layout *L, spqr_error *err) {
    memset(L, 0, sizeof *L);
    if (gsum ? !spqr_gsum_supported(v) : !spqr_mma_supported(v))
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s layout: unsupported matrix (w%u g%u)", gsum ? "gsum" : "mma", v->wbits, v->groupsize);
    L->gsum = (uint32_t)gsum;
    const unsigned W = v->wbits;
    const int sp = v->kind == SPQR_TK_SPQR;
    L->kind = v->kind; L->rows = v->rows; L->cols = v->cols; L->wbits = W; L->gs = v->groupsize;
    L->qq_bits = v->qq_bits; L->qq_gs = v->qq_groupsize; L->n_out = sp ? v->n_outliers : 0;
    L->nrt = (v->rows + SPQR_MMA_ROWS - 1) / SPQR_MMA_ROWS;
    L->nku = (v->cols + SPQR_MMA_UCOLS - 1) / SPQR_MMA_UCOLS;
    if (S == 0) S = spqr_mma_default_slices(v->rows, v->cols, 132);
    if (S > L->nku) S = L->nku;
    L->ups = (L->nku + S - 1) / S;
    L->S = (L->nku + L->ups - 1) / L->ups;
    L->gpad = (uint32_t)(((uint64_t)L->nku * SPQR_MMA_UCOLS + L->gs - 1) / L->gs);
    L->rb_pad = sp ? (L->nrt * SPQR_MMA_ROWS + L->qq_gs - 1) / L->qq_gs : 0;
    const uint64_t units = (uint64_t)L->nrt * L->nku, nseg = (uint64_t)L->nrt * L->S * 32;
    L->codes = calloc(units * W * 128, 4);
    L->fields = calloc(sp ? units * 64 : (uint64_t)L->nrt * 32 * L->gpad, 4);
    L->qq = sp ? calloc((uint64_t)L->rb_pad * L->gpad * 4, 2) : NULL;
    L->optr = calloc(nseg + 1, 4);
    L->ocol = calloc(L->n_out + 1, 2);
    L->odelta = calloc(L->n_out + 1, 2);
    L->perm = v->perm ? malloc((size_t)v->cols * 4) : NULL;
    if (!L->codes || !L->fields || (sp && !L->qq) || !L->optr || !L->ocol || !L->odelta || (v->perm && !L->perm)) {
        spqr_mma_free(L);
        return spqr_set_err(err, SPQR_E_NOMEM, "mma layout: out of memory");
    }
    if (v->perm) memcpy(L->perm, v->perm, (size_t)v->cols * 4);
    const uint64_t G = v->lay.groups;
    for (uint32_t rt = 0; rt < L->nrt; rt++)
        for (uint32_t u = 0; u < L->nku; u++) {
            const uint64_t unit = (uint64_t)rt * L->nku + u;
            for (unsigned lane = 0; lane < 32; lane++) {
                if (gsum) {
                    fill_gsum(v, L, rt, u, lane);
                    continue;
                }
                const unsigned gl = lane >> 2, t = lane & 3;
                uint32_t w[16] = {0};
                for (unsigned q = 0; q < 64; q++) {
                    const unsigned kc = q >> 5, mt = (q >> 4) & 1, h = (q >> 3) & 1, p = q & 7;
                    const uint32_t r = rt * 32 + mt * 16 + h * 8 + gl, j = u * 128 + kc * 64 + 16 * t + 2 * p;
                    put_pair(w, W, q, spqr_layout_code(v, r, j), spqr_layout_code(v, r, j + 1));
                }
                for (unsigned k = 0; k < 4 * W; k++) L->codes[((unit * W + k / 4) * 32 + lane) * 4 + k % 4] = w[k];
                if (!sp) continue;
                uint32_t f[2] = {0, 0};
                for (unsigned fi = 0; fi < 8; fi++) {
                    const unsigned kc = fi >> 2, mt = (fi >> 1) & 1, h = fi & 1;
                    const uint32_t r = rt * 32 + mt * 16 + h * 8 + gl;
                    const uint64_t g = ((uint64_t)u * 128 + kc * 64 + 16 * t) / v->groupsize;
                    if (r >= v->rows || g >= G) continue;
                    const uint8_t *srow = v->stats + (uint64_t)r * v->lay.stat_stride;
                    const uint32_t byte = spqr_bits_get(srow, 2 * g, v->qq_bits) | spqr_bits_get(srow, 2 * g + 1, v->qq_bits) << 4;
                    f[fi >> 2] |= byte << (8 * (fi & 3));
                }
                L->fields[unit * 64 + lane * 2] = f[0];
                L->fields[unit * 64 + lane * 2 + 1] = f[1];
            }
        }
    if (sp) {
        for (uint64_t b = 0; b < v->lay.row_blocks; b++) memcpy(L->qq + b * L->gpad * 4, v->qq + b * G, G * 8);
    } else {
        for (uint32_t r = 0; r < v->rows; r++)
            for (uint64_t g = 0; g < G; g++)
                L->fields[(uint64_t)r * L->gpad + g] =
                    v->scales[(uint64_t)r * G + g] | spqr_bits_get(v->zeros + (uint64_t)r * v->lay.zero_stride, g, W) << 16;
    }
    if (sp) { /* outliers by (row tile, slice, row): count, prefix, fill (columns stay ascending) */
        const uint32_t slice_cols = L->ups * SPQR_MMA_UCOLS;
        for (uint32_t r = 0; r < v->rows; r++)
            for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++)
                L->optr[((uint64_t)(r / 32) * L->S + v->ocol[k] / slice_cols) * 32 + r % 32 + 1]++;
        for (uint64_t i = 0; i < nseg; i++) L->optr[i + 1] += L->optr[i];
        uint32_t *fill = malloc(nseg * 4);
        if (!fill) { spqr_mma_free(L); return spqr_set_err(err, SPQR_E_NOMEM, "mma layout: out of memory"); }
        memcpy(fill, L->optr, nseg * 4);
        for (uint32_t r = 0; r < v->rows; r++)
            for (uint32_t k = v->row_ptr[r]; k < v->row_ptr[r + 1]; k++) {
                const uint32_t j = v->ocol[k];
                const uint64_t seg = ((uint64_t)(r / 32) * L->S + j / slice_cols) * 32 + r % 32;
                L->ocol[fill[seg]] = (uint16_t)j;
                L->odelta[fill[seg]++] = spqr_f32_to_f16(spqr_f16_to_f32(v->oval[k]) - spqr_qview_dense_weight(v, r, j));
            }
        free(fill);
    }
    return SPQR_OK;
}

/* synth.c — see synth.h. */
#include "synth.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
double synth_uniform(uint64_t *s) { return (double)(splitmix(s) >> 11) * (1.0 / 9007199254740992.0); }
double synth_normal(uint64_t *s) {
    double u = synth_uniform(s), v = synth_uniform(s);
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static float f16r(float x) { return spqr_f16_to_f32(spqr_f32_to_f16(x)); }
static unsigned clampq(float q, unsigned maxq) { return q < 0 ? 0 : q > (float)maxq ? maxq : (unsigned)q; }

/* fp16 second-level statistics of n values (as gptq.c's fit_qq: min–max, zero not rounded). */
static void fit_qq(const float *v, int n, unsigned maxq2, uint16_t *hs, uint16_t *hz) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < n; i++) { lo = fminf(lo, v[i]); hi = fmaxf(hi, v[i]); }
    if (!(hi > lo)) { lo -= 1e-3f + fabsf(lo) * 1e-2f; hi += 1e-3f + fabsf(hi) * 1e-2f; }
    float s = (hi - lo) / (float)maxq2;
    *hs = spqr_f32_to_f16(s);
    *hz = spqr_f32_to_f16(-lo / spqr_f16_to_f32(*hs));
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

spqr_status synth_build(const synth_params *p, synth_matrix *out, spqr_error *err) {
    memset(out, 0, sizeof *out);
    const int spqr = p->kind == SPQR_TK_SPQR;
    spqr_file_tensor *t = &out->entry;
    t->kind = p->kind;
    t->n_dims = 2;
    t->shape[0] = p->rows;
    t->shape[1] = p->cols;
    t->flags = p->perm ? SPQR_TF_PERM : 0;
    t->wbits = p->wbits;
    t->groupsize = p->groupsize;
    t->qq_bits = spqr ? p->qq_bits : 0;
    t->qq_groupsize = spqr ? p->qq_groupsize : 0;
    spqr_qlayout lay;
    char why[160];
    if (!spqr_qlayout_compute(t, &lay, why, sizeof why)) return spqr_set_err(err, SPQR_E_ARG, "synth: %s", why);
    const uint32_t rows = p->rows, cols = p->cols, gs = p->groupsize, G = (uint32_t)lay.groups;
    const unsigned maxq = (1u << p->wbits) - 1, maxq2 = spqr ? (1u << p->qq_bits) - 1 : 0;
    const size_t n = (size_t)rows * cols;
    uint64_t rng = p->seed * 0x2545f4914f6cdd1dull + 1;
    float *W = malloc(n * sizeof *W), *S = malloc((size_t)rows * G * sizeof *S), *Z = malloc((size_t)rows * G * sizeof *Z);
    float *E = malloc(n * sizeof *E);
    uint8_t *code = malloc(n), *heavy = calloc(n, 1), *sc = calloc((size_t)rows * G, 1), *zc = calloc((size_t)rows * G, 1);
    uint16_t *s16 = malloc((size_t)rows * G * 2);
    spqr_qq_stats *qq = spqr ? calloc(lay.row_blocks * G + 1, sizeof *qq) : NULL;
    if (!W || !S || !Z || !E || !code || !heavy || !sc || !zc || !s16 || (spqr && !qq)) {
        free(W); free(S); free(Z); free(E); free(code); free(heavy); free(sc); free(zc); free(s16); free(qq);
        return spqr_set_err(err, SPQR_E_NOMEM, "synth: out of memory");
    }
    /* bulk N(0, 0.02); half of the outlier budget planted as heavy-tailed weights (Student-t, ν = 3, x4) */
    for (size_t i = 0; i < n; i++) {
        W[i] = (float)(0.02 * synth_normal(&rng));
        if (spqr && synth_uniform(&rng) < 0.5 * p->outlier_frac) {
            double c = 0;
            for (int k = 0; k < 3; k++) { double g = synth_normal(&rng); c += g * g; }
            W[i] = (float)(0.08 * synth_normal(&rng) / sqrt(c / 3 + 1e-12));
            heavy[i] = 1;
        }
    }
    /* first-level statistics per (row, group), planted weights excluded */
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t g = 0; g < G; g++) {
            uint32_t j0 = g * gs, j1 = j0 + gs < cols ? j0 + gs : cols;
            const float *w = W + (size_t)r * cols;
            float lo = spqr ? INFINITY : 0, hi = spqr ? -INFINITY : 0;
            for (uint32_t j = j0; j < j1; j++)
                if (!heavy[(size_t)r * cols + j]) { lo = fminf(lo, w[j]); hi = fmaxf(hi, w[j]); }
            if (!(hi > lo)) { lo = -0.02f; hi = 0.02f; }
            float s = (hi - lo) / (float)maxq;
            size_t k = (size_t)r * G + g;
            if (spqr) { S[k] = s; Z[k] = -lo / s; }
            else {
                unsigned z = clampq(rintf(-lo / s), maxq);
                s16[k] = spqr_f32_to_f16(s);
                S[k] = f16r(s);
                Z[k] = (float)z;
                zc[k] = (uint8_t)z;
            }
        }
    /* SpQR: second level over β2 rows; replace S, Z by what the decoder sees */
    if (spqr) {
        float *tmp = malloc(2 * (size_t)p->qq_groupsize * sizeof *tmp);
        if (!tmp) { free(W); free(S); free(Z); free(E); free(code); free(heavy); free(sc); free(zc); free(s16); free(qq); return spqr_set_err(err, SPQR_E_NOMEM, "synth: out of memory"); }
        for (uint32_t b = 0; b < lay.row_blocks; b++) {
            uint32_t r0 = b * p->qq_groupsize, r1 = r0 + p->qq_groupsize < rows ? r0 + p->qq_groupsize : rows, nr = r1 - r0;
            for (uint32_t g = 0; g < G; g++) {
                for (uint32_t i = 0; i < nr; i++) { tmp[i] = S[(size_t)(r0 + i) * G + g]; tmp[nr + i] = Z[(size_t)(r0 + i) * G + g]; }
                spqr_qq_stats *q = &qq[(size_t)b * G + g];
                fit_qq(tmp, (int)nr, maxq2, &q->s_scale, &q->s_zero);
                fit_qq(tmp + nr, (int)nr, maxq2, &q->z_scale, &q->z_zero);
                float ss = spqr_f16_to_f32(q->s_scale), sz = spqr_f16_to_f32(q->s_zero), zs = spqr_f16_to_f32(q->z_scale), zz = spqr_f16_to_f32(q->z_zero);
                for (uint32_t i = 0; i < nr; i++) {
                    size_t k = (size_t)(r0 + i) * G + g;
                    sc[k] = (uint8_t)clampq(rintf(S[k] / ss + sz), maxq2);
                    zc[k] = (uint8_t)clampq(rintf(Z[k] / zs + zz), maxq2);
                    S[k] = spqr_deq(ss, sz, sc[k]);
                    Z[k] = spqr_deq(zs, zz, zc[k]);
                }
            }
        }
        free(tmp);
    }
    /* codes and errors */
    for (uint32_t r = 0; r < rows; r++)
        for (uint32_t j = 0; j < cols; j++) {
            size_t i = (size_t)r * cols + j, k = (size_t)r * G + j / gs;
            float s = S[k], z = Z[k];
            code[i] = (uint8_t)clampq(rintf(W[i] / fmaxf(fabsf(s), 1e-9f) * (s < 0 ? -1.f : 1.f) + z), maxq);
            E[i] = fabsf(W[i] - spqr_deq(s, z, code[i]));
        }
    /* outliers: the outlier_frac largest errors (threshold from a sample) */
    float thr = INFINITY;
    if (spqr && p->outlier_frac > 0) {
        size_t ns = n < 200000 ? n : 200000;
        float *smp = malloc(ns * sizeof *smp);
        if (!smp) { free(W); free(S); free(Z); free(E); free(code); free(heavy); free(sc); free(zc); free(s16); free(qq); return spqr_set_err(err, SPQR_E_NOMEM, "synth: out of memory"); }
        for (size_t i = 0; i < ns; i++) smp[i] = E[ns == n ? i : (size_t)(synth_uniform(&rng) * (double)n)];
        qsort(smp, ns, sizeof *smp, cmp_float);
        size_t at = (size_t)((1.0 - p->outlier_frac) * (double)ns);
        thr = at >= ns ? INFINITY : smp[at];
        free(smp);
    }
    uint64_t n_out = 0;
    for (size_t i = 0; i < n; i++) n_out += E[i] > thr;
    t->n_outliers = n_out;
    spqr_status st = SPQR_OK;
    if (!spqr_qlayout_compute(t, &lay, why, sizeof why)) { st = spqr_set_err(err, SPQR_E_ARG, "synth: %s", why); goto done; }
    uint8_t *blob = spqr_aligned_alloc(lay.size, 1);
    if (!blob) { st = spqr_set_err(err, SPQR_E_NOMEM, "synth: out of memory"); goto done; }
    if (p->perm) {
        int32_t *pm = (int32_t *)(blob + lay.perm);
        for (uint32_t j = 0; j < cols; j++) pm[j] = (int32_t)j;
        for (uint32_t j = cols - 1; j > 0; j--) {
            uint32_t k = (uint32_t)(synth_uniform(&rng) * (j + 1));
            int32_t x = pm[j]; pm[j] = pm[k]; pm[k] = x;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        uint8_t *crow = blob + lay.codes + (size_t)r * lay.code_stride;
        for (uint32_t j = 0; j < cols; j++) spqr_bits_put(crow, j, p->wbits, code[(size_t)r * cols + j]);
    }
    if (spqr) {
        for (uint32_t r = 0; r < rows; r++) {
            uint8_t *srow = blob + lay.stats + (size_t)r * lay.stat_stride;
            for (uint32_t g = 0; g < G; g++) {
                spqr_bits_put(srow, 2ull * g, p->qq_bits, sc[(size_t)r * G + g]);
                spqr_bits_put(srow, 2ull * g + 1, p->qq_bits, zc[(size_t)r * G + g]);
            }
        }
        memcpy(blob + lay.qq, qq, lay.row_blocks * G * sizeof *qq);
        uint32_t *rp = (uint32_t *)(blob + lay.row_ptr);
        uint16_t *oc = (uint16_t *)(blob + lay.ocol), *ov = (uint16_t *)(blob + lay.oval);
        uint32_t k = 0;
        for (uint32_t r = 0; r < rows; r++) {
            rp[r] = k;
            for (uint32_t j = 0; j < cols; j++)
                if (E[(size_t)r * cols + j] > thr) { oc[k] = (uint16_t)j; ov[k++] = spqr_f32_to_f16(W[(size_t)r * cols + j]); }
        }
        rp[rows] = k;
    } else {
        memcpy(blob + lay.scales, s16, (size_t)rows * G * 2);
        for (uint32_t r = 0; r < rows; r++) {
            uint8_t *zrow = blob + lay.zeros + (size_t)r * lay.zero_stride;
            for (uint32_t g = 0; g < G; g++) spqr_bits_put(zrow, g, p->wbits, zc[(size_t)r * G + g]);
        }
    }
    t->data_size = lay.size;
    out->blob = blob;
    st = spqr_qview_init(&out->view, t, blob, lay.size, "synth", err);
    if (st) { spqr_aligned_free(blob); out->blob = NULL; }
done:
    free(W); free(S); free(Z); free(E); free(code); free(heavy); free(sc); free(zc); free(s16); free(qq);
    return st;
}

void synth_free(synth_matrix *m) {
    if (m && m->blob) spqr_aligned_free(m->blob);
    if (m) memset(m, 0, sizeof *m);
}

/* matmul.c — see matmul.h. */
#include "kernels/matmul.h"

#include "kernels/qtiles.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

char *openblas_get_corename(void);

const char *spqr_blas_core(void) { return openblas_get_corename(); }

const char *spqr_blas_core_advice(void) {
#if defined(__x86_64__)
    const char *core = openblas_get_corename();
    if (!core || strcmp(core, "Prescott") != 0) return NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
    return NULL;
}

typedef struct {
    const spqr_mm *mm;
    const spqr_linear *lin;
    const float *X, *bias;
    float *Y;
    int n;
} mm_job;

/* Thread ith's share of a product with n > 1 tokens. Every BLAS call covers a fixed tile, never a
 * function of the thread count (some OpenBLAS kernels, Haswell's and the generic ones, round an element
 * differently when the shape of its call changes, and neither the quantizer's files nor the logits may
 * depend on -t): fp32 weights in tiles of MM_TOKENS tokens × SPQR_PANEL_ROWS rows, 16-bit and quantized
 * weights (converted panel by panel) in panels of SPQR_PANEL_ROWS rows × all tokens; items ith, ith + nth, … */
#define MM_TOKENS 256
static void mm_rows(const mm_job *j, int ith, int nth) {
    const spqr_linear *L = j->lin;
    const int in = L->cols, out = L->rows, P = SPQR_PANEL_ROWS, np = (out + P - 1) / P;
    float *scr = j->mm->scratch + (size_t)ith * j->mm->per_thread;
    const int nt = L->w ? (j->n + MM_TOKENS - 1) / MM_TOKENS : 1;
    for (int it = ith; it < np * nt; it += nth) {
        const int lo = it % np * P, hi = lo + P < out ? lo + P : out; /* consecutive items: one token block, next rows */
        const int t0 = L->w ? it / np * MM_TOKENS : 0, t1 = L->w && t0 + MM_TOKENS < j->n ? t0 + MM_TOKENS : j->n;
        if (L->w) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, t1 - t0, hi - lo, in, 1.0f, j->X + (size_t)t0 * in, in, L->w + (size_t)lo * in, in, 0.0f,
                        j->Y + (size_t)t0 * out + lo, out);
        } else if (L->h) {
            const uint16_t *src = L->h + (size_t)lo * in;
            for (size_t e = 0; e < (size_t)(hi - lo) * in; e++) scr[e] = L->h_bf16 ? spqr_bf16_to_f32(src[e]) : spqr_f16_to_f32(src[e]);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, hi - lo, in, 1.0f, j->X, in, scr, in, 0.0f, j->Y + lo, out);
        } else {
            const float *X = L->q->perm ? j->mm->xbuf : j->X; /* permuted by perm_task */
            float *panel = scr + 8 * (size_t)L->q->lay.groups + 16;
            j->mm->k->qdequant(L->q, (uint32_t)lo, (uint32_t)hi, scr, panel);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n, hi - lo, in, 1.0f, X, in, panel, in, 0.0f, j->Y + lo, out);
        }
        if (j->bias)
            for (int r = t0; r < t1; r++)
                for (int o = lo; o < hi; o++) j->Y[(size_t)r * out + o] += j->bias[o];
    }
}

static void mm_task(void *arg, int ith, int nth) { mm_rows(arg, ith, nth); }

/* ---- decode: one token, rows handed out in chunks ----------------------------------------------- */

/* Rows per work item: threads take chunks from an atomic counter, so one slowed down (by another
 * process, by the hypervisor) does not hold the others up at the end of every product. At least 64
 * rows, and about 8 chunks per thread (a kernel call has a fixed cost: its control vectors). */
static int decode_chunk(int rows, int nth) {
    const int c = (rows / (8 * nth) + 15) / 16 * 16;
    return c > 64 ? c : 64;
}

typedef struct {
    mm_job jobs[SPQR_MAX_FUSED];
    int n_jobs, swiglu;
    uint32_t first[SPQR_MAX_FUSED + 1]; /* work items of job i: [first[i], first[i + 1]) */
    int chunk[SPQR_MAX_FUSED];          /* rows per work item of job i */
    atomic_uint next;
} mm_multi;

/* A quantized job's activation in stored column order, in the thread's scratch: x_s, group sums,
 * then either the row kernels' scratch or the 8-bit quantization (xq, dx, gq). */
typedef struct { float *xs, *gsum, *kscr, *dx, *gq; int8_t *xq; } prep_t;

/* Floats of one job's slot: xs (cols), gsum (G ≤ cols), then max(6G + 16, 2G + cols/4 + 1). */
static size_t slot_floats(int cols) { return ((size_t)cols * 9 + 64 + 15) / 16 * 16; }

static void prep_x(const mm_job *j, float *slot, prep_t *p) {
    const spqr_qview *q = j->lin->q;
    const uint32_t in = q->cols, G = (uint32_t)q->lay.groups;
    p->xs = slot;
    p->gsum = slot + in;
    p->kscr = p->dx = p->gsum + G;
    p->gq = p->dx + G;
    p->xq = (int8_t *)(p->gq + G);
    for (uint32_t c = 0; c < in; c++) p->xs[c] = j->X[q->perm ? q->perm[c] : (int32_t)c];
    for (uint32_t g = 0, c0 = 0; c0 < in; g++, c0 += q->groupsize) {
        const uint32_t c1 = c0 + q->groupsize < in ? c0 + q->groupsize : in;
        float sum = 0;
        for (uint32_t c = c0; c < c1; c++) sum += p->xs[c];
        p->gsum[g] = sum;
    }
    if (j->lin->qt && j->mm->act8 && j->mm->k->qgemv_tiles_act8) spqr_act8_quantize(p->xs, in, q->groupsize, p->xq, p->dx, p->gq);
}

/* y[lo, hi) of one job for one token (lo a multiple of 16). */
static void decode_rows(const mm_job *j, const prep_t *p, int lo, int hi) {
    const spqr_linear *L = j->lin;
    const spqr_cpu_kernels *k = j->mm->k;
    if (L->w) cblas_sgemv(CblasRowMajor, CblasNoTrans, hi - lo, L->cols, 1.0f, L->w + (size_t)lo * L->cols, L->cols, j->X, 1, 0.0f, j->Y + lo, 1);
    else if (L->h) k->gemv16(L->h, L->h_bf16, (uint32_t)L->cols, (uint32_t)lo, (uint32_t)hi, j->X, j->Y + lo);
    else if (L->qt && j->mm->act8 && k->qgemv_tiles_act8) k->qgemv_tiles_act8(L->qt, (uint32_t)lo, (uint32_t)hi, p->xq, p->dx, p->gq, p->xs, j->Y + lo);
    else if (L->qt && k->qgemv_tiles) k->qgemv_tiles(L->qt, (uint32_t)lo, (uint32_t)hi, p->xs, p->gsum, j->Y + lo);
    else k->qgemv(L->q, (uint32_t)lo, (uint32_t)hi, p->xs, p->gsum, p->kscr, j->Y + lo);
    if (j->bias)
        for (int o = lo; o < hi; o++) j->Y[o] += j->bias[o];
}

/* Each thread prepares a quantized job's activation the first time it takes one of its chunks; jobs
 * with the same permutation and groups (q/k/v and gate/up of act-order models: spqr_model_bind
 * shares their permutations when equal) reuse one preparation. */
static const prep_t *job_prep(const mm_multi *m, int i, float *scr, prep_t *preps, int *have) {
    if (have[i] || !m->jobs[i].lin->q) return &preps[i];
    const spqr_qview *q = m->jobs[i].lin->q;
    for (int k = 0; k < m->n_jobs; k++) {
        const spqr_qview *o = m->jobs[k].lin->q;
        if (k != i && have[k] && o && o->perm == q->perm && o->groupsize == q->groupsize && o->cols == q->cols) {
            preps[i] = preps[k];
            have[i] = 1;
            return &preps[i];
        }
    }
    prep_x(&m->jobs[i], scr + (size_t)i * slot_floats(q->cols), &preps[i]);
    have[i] = 1;
    return &preps[i];
}

static void decode_task(void *arg, int ith, int nth) {
    mm_multi *m = arg;
    float *scr = m->jobs[0].mm->scratch + (size_t)ith * m->jobs[0].mm->per_thread;
    prep_t preps[SPQR_MAX_FUSED];
    int have[SPQR_MAX_FUSED] = {0};
    (void)nth;
    for (;;) {
        const uint32_t it = atomic_fetch_add_explicit(&m->next, 1, memory_order_relaxed);
        if (it >= m->first[m->n_jobs]) break;
        int i = 0;
        while (it >= m->first[i + 1]) i++;
        const mm_job *j = &m->jobs[i];
        const int ch = m->chunk[i], lo = (int)(it - m->first[i]) * ch, hi = lo + ch < j->lin->rows ? lo + ch : j->lin->rows;
        decode_rows(j, job_prep(m, i, scr, preps, have), lo, hi);
        if (m->swiglu) { /* the items cover job 0 (gate): the same rows of job 1 (up), then silu(g) ⊙ u */
            decode_rows(&m->jobs[1], job_prep(m, 1, scr, preps, have), lo, hi);
            float *g = m->jobs[0].Y;
            const float *u = m->jobs[1].Y;
            for (int o = lo; o < hi; o++) g[o] = g[o] / (1.0f + expf(-g[o])) * u[o];
        }
    }
}

static void decode_run(const spqr_mm *mm, mm_multi *m) {
    m->first[0] = 0;
    const int nth = spqr_pool_size(mm->pool);
    for (int i = 0; i < m->n_jobs; i++) {
        const int rows = m->jobs[i].lin->rows;
        m->chunk[i] = decode_chunk(m->swiglu ? m->jobs[0].lin->rows : rows, nth);
        m->first[i + 1] = m->first[i] + (!m->swiglu || i == 0 ? (uint32_t)((rows + m->chunk[i] - 1) / m->chunk[i]) : 0);
    }
    atomic_init(&m->next, 0);
    spqr_pool_run(mm->pool, decode_task, m);
}

/* xbuf[t][c] = X[t][perm[c]], tokens split over threads. */
static void perm_task(void *arg, int ith, int nth) {
    const mm_job *j = arg;
    const int in = j->lin->cols;
    const int32_t *perm = j->lin->q->perm;
    int lo, hi;
    spqr_split(j->n, ith, nth, 1, &lo, &hi);
    for (int t = lo; t < hi; t++)
        for (int c = 0; c < in; c++) j->mm->xbuf[(size_t)t * in + c] = j->X[(size_t)t * in + perm[c]];
}

void spqr_linear_forward(const spqr_mm *mm, const spqr_linear *lin, const float *X, int n, const float *bias, float *Y) {
    if (n == 1) {
        mm_multi m = {.n_jobs = 1, .jobs = {{mm, lin, X, bias, Y, 1}}};
        decode_run(mm, &m);
        return;
    }
    mm_job j = {mm, lin, X, bias, Y, n};
    if (lin->q && lin->q->perm && n > 1) spqr_pool_run(mm->pool, perm_task, &j);
    spqr_pool_run(mm->pool, mm_task, &j);
}

void spqr_linear_forward_decode(const spqr_mm *mm, const spqr_linear *const *lins, int n_lin, const float *x, const float *const *bias,
                                float *const *Y, int swiglu) {
    mm_multi m = {.n_jobs = n_lin, .swiglu = swiglu};
    for (int i = 0; i < n_lin; i++) m.jobs[i] = (mm_job){mm, lins[i], x, bias ? bias[i] : NULL, Y[i], 1};
    decode_run(mm, &m);
}

/*
 * forward.c — the fp32 transformer forward pass over a KV cache (Llama family).
 *
 * Per block, for a batch of n tokens at positions p0..p0+n-1 (x: [n][dim]):
 *   h = rmsnorm(x) * w_attn;  q = h Wqᵀ (+bq), k = h Wkᵀ (+bk), v = h Wvᵀ (+bv)
 *   q, k rotated by RoPE (rotate-half for HF checkpoints, interleaved pairs for llama2.c)
 *   k, v appended to the cache; per head: softmax(q Kᵀ / sqrt(hd), causal) V      (GQA: head h
 *   reads kv head h / (n_heads / n_kv_heads))
 *   x += attn Woᵀ (+bo);  h = rmsnorm(x) * w_ffn;  x += (silu(h Wgᵀ) ⊙ h Wuᵀ) Wdᵀ
 * then logits = rmsnorm(x) * w_final · Woutᵀ.
 * Every buffer is allocated in spqr_ctx_new; the token loop allocates nothing.
 */
#include "core/pool.h"
#include "model/forward.h"
#ifdef SPQR_CUDA
#include "cuda/spqr_cuda.h"
#endif

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void openblas_set_num_threads(int num_threads);

struct spqr_ctx {
    const spqr_model *m;
    int n_ctx, n_batch, n_threads;
    char kernels[32];       /* the kernels' name, "+act8" when decode uses 8-bit activations */
    void *gpu;              /* spqr_cuda_model when the forward pass runs on a CUDA device (SPQR_CUDA builds) */
    spqr_pool *pool;
    float *x, *xb;          /* [n_batch][dim]: residual stream, normed input */
    float *q, *att;         /* [n_batch][n_heads*hd] */
    float *k, *v;           /* [n_batch][n_kv*hd]: this batch's keys/values before caching */
    float *hb, *hb2;        /* [n_batch][hidden] */
    float *scores;          /* [n_threads][scores_rows][n_ctx] attention scores */
    int scores_rows;        /* max(n_batch, query heads per KV head) */
    float *kcache, *vcache; /* [n_layers][n_kv][n_ctx][hd] */
    float *rope_cos, *rope_sin; /* [n_ctx][hd/2] */
    float *logits;          /* [n_batch][vocab] */
    spqr_mm mm;             /* pool, kernels and per-thread scratch of the matrix products */
};

/* ---- RoPE tables ------------------------------------------------------------------------------- */

/* Inverse frequencies as transformers computes them (float32), with linear or llama3 scaling. */
static void rope_inv_freq(const spqr_config *c, float *inv) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / powf(c->rope_theta, e);
    }
    if (c->rope_scaling == SPQR_ROPE_SCALING_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] /= c->rope_factor;
    } else if (c->rope_scaling == SPQR_ROPE_SCALING_LLAMA3) {
        const double old = c->rope_orig_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor, f = c->rope_factor;
        const double low_wavelen = old / lo, high_wavelen = old / hi;
        for (int i = 0; i < half; i++) {
            double wavelen = 2 * M_PI / inv[i];
            if (wavelen < high_wavelen) continue;                        /* high frequency: kept */
            if (wavelen > low_wavelen) { inv[i] = (float)(inv[i] / f); continue; } /* low: scaled */
            double smooth = (old / wavelen - lo) / (hi - lo);              /* in between: blended */
            inv[i] = (float)((1 - smooth) * inv[i] / f + smooth * inv[i]);
        }
    }
}

static void rope_tables(spqr_ctx *c) {
    const spqr_config *cfg = &c->m->cfg;
    const int half = cfg->head_dim / 2;
    float inv[half];
    rope_inv_freq(cfg, inv);
    for (int p = 0; p < c->n_ctx; p++)
        for (int i = 0; i < half; i++) {
            float a = (float)p * inv[i]; /* float32 product, like the reference */
            c->rope_cos[(size_t)p * half + i] = (float)cos((double)a);
            c->rope_sin[(size_t)p * half + i] = (float)sin((double)a);
        }
}

/* Rotates n_heads heads of one token's vector x at position pos. */
static void rope_apply(const spqr_ctx *c, float *x, int n_heads, int pos) {
    const spqr_config *cfg = &c->m->cfg;
    const int hd = cfg->head_dim, half = hd / 2;
    const float *cs = c->rope_cos + (size_t)pos * half, *sn = c->rope_sin + (size_t)pos * half;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * hd;
        if (cfg->rope_style == SPQR_ROPE_HALF) {
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        } else {
            for (int i = 0; i < half; i++) {
                float a = v[2 * i], b = v[2 * i + 1];
                v[2 * i] = a * cs[i] - b * sn[i];
                v[2 * i + 1] = a * sn[i] + b * cs[i];
            }
        }
    }
}

/* ---- elementwise ------------------------------------------------------------------------------- */

static void rmsnorm(float *out, const float *x, const float *w, int dim, float eps) {
    double ss = 0;
    for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
    float r = (float)(1.0 / sqrt(ss / dim + eps));
    for (int i = 0; i < dim; i++) out[i] = w[i] * (x[i] * r);
}

typedef struct { float *g; const float *u; size_t n; } swiglu_job;

static void swiglu_task(void *arg, int ith, int nth) {
    const swiglu_job *j = arg;
    size_t lo = j->n * (size_t)ith / (size_t)nth, hi = j->n * (size_t)(ith + 1) / (size_t)nth;
    for (size_t i = lo; i < hi; i++) {
        float g = j->g[i];
        j->g[i] = g / (1.0f + expf(-g)) * j->u[i];
    }
}

/* ---- attention --------------------------------------------------------------------------------- */

typedef struct {
    spqr_ctx *c;
    int layer, n, p0;
} attn_job;

/* One thread handles a slice of the query heads: S = q Kᵀ·scale, causal softmax, O = S V. */
static void attn_task(void *arg, int ith, int nth) {
    const attn_job *j = arg;
    spqr_ctx *c = j->c;
    const spqr_config *cfg = &c->m->cfg;
    const int hd = cfg->head_dim, qd = cfg->n_heads * hd, group = cfg->n_heads / cfg->n_kv_heads;
    const int n = j->n, p0 = j->p0, T = p0 + n, window = c->m->sliding_window;
    const float scale = 1.0f / sqrtf((float)hd);
    float *S = c->scores + (size_t)ith * c->scores_rows * c->n_ctx; /* [n][T] (decode: [group][T]), row stride T */
    int h0, h1;
    if (n == 1) { /* decode: the query heads of one KV head together, so K and V are read once per group */
        spqr_split(cfg->n_kv_heads, ith, nth, 1, &h0, &h1);
        for (int kvh = h0; kvh < h1; kvh++) {
            const size_t cache_off = ((size_t)j->layer * cfg->n_kv_heads + kvh) * c->n_ctx * hd;
            const float *K = c->kcache + cache_off, *V = c->vcache + cache_off; /* [T][hd] */
            const float *Q = c->q + (size_t)kvh * group * hd;                    /* [group][hd] */
            float *O = c->att + (size_t)kvh * group * hd;
            const int first = window > 0 && T - window > 0 ? T - window : 0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, group, T - first, hd, scale, Q, hd, K + (size_t)first * hd, hd, 0.0f, S, T);
            for (int g = 0; g < group; g++) {
                float *sr = S + (size_t)g * T, mx = -INFINITY, sum = 0;
                for (int t = 0; t < T - first; t++) mx = sr[t] > mx ? sr[t] : mx;
                for (int t = 0; t < T - first; t++) { sr[t] = expf(sr[t] - mx); sum += sr[t]; }
                const float inv = 1.0f / sum;
                for (int t = 0; t < T - first; t++) sr[t] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, group, hd, T - first, 1.0f, S, T, V + (size_t)first * hd, hd, 0.0f, O, hd);
        }
        return;
    }
    spqr_split(cfg->n_heads, ith, nth, 1, &h0, &h1);
    for (int h = h0; h < h1; h++) {
        const int kvh = h / group;
        const size_t cache_off = ((size_t)j->layer * cfg->n_kv_heads + kvh) * c->n_ctx * hd;
        const float *K = c->kcache + cache_off, *V = c->vcache + cache_off; /* [T][hd] */
        const float *Q = c->q + (size_t)h * hd;                              /* rows stride qd */
        float *O = c->att + (size_t)h * hd;
        if (n == 1) cblas_sgemv(CblasRowMajor, CblasNoTrans, T, hd, scale, K, hd, Q, 1, 0.0f, S, 1);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, T, hd, scale, Q, qd, K, hd, 0.0f, S, T);
        for (int i = 0; i < n; i++) {
            float *s = S + (size_t)i * T;
            const int last = p0 + i;                           /* causal: keys 0..last */
            const int first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
            float mx = -INFINITY;
            for (int t = first; t <= last; t++) mx = s[t] > mx ? s[t] : mx;
            float sum = 0;
            for (int t = first; t <= last; t++) { s[t] = expf(s[t] - mx); sum += s[t]; }
            const float inv = 1.0f / sum;
            for (int t = 0; t < first; t++) s[t] = 0;
            for (int t = first; t <= last; t++) s[t] *= inv;
            for (int t = last + 1; t < T; t++) s[t] = 0;
        }
        if (n == 1) cblas_sgemv(CblasRowMajor, CblasTrans, T, hd, 1.0f, V, hd, S, 1, 0.0f, O, 1);
        else cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, hd, T, 1.0f, S, T, V, hd, 0.0f, O, qd);
    }
}

/* ---- the pass ---------------------------------------------------------------------------------- */

static void linear(spqr_ctx *c, const spqr_linear *lin, const float *X, int n, const float *bias, float *Y) {
    spqr_linear_forward(&c->mm, lin, X, n, bias, Y);
}

/* Block l on c->x[0..n) (tokens at positions pos..pos+n-1), in place. `cap`, if not NULL, sees the
 * inputs of the block's linear layers: 0 = q/k/v, 1 = o, 2 = gate/up, 3 = down. */
static void layer_forward(spqr_ctx *c, int l, int n, int pos, spqr_capture_fn cap, void *user) {
    const spqr_model *m = c->m;
    const spqr_config *cfg = &m->cfg;
    const spqr_layer *ly = &m->layers[l];
    const int dim = cfg->dim, hd = cfg->head_dim, qd = cfg->n_heads * hd, kvd = cfg->n_kv_heads * hd, hid = cfg->hidden_dim;
    for (int i = 0; i < n; i++) rmsnorm(c->xb + (size_t)i * dim, c->x + (size_t)i * dim, ly->attn_norm, dim, cfg->norm_eps);
    if (cap) cap(user, 0, c->xb, n, dim);
    if (n == 1) { /* decode: q, k and v in one pool run */
        const spqr_linear *lins[3] = {&ly->wq, &ly->wk, &ly->wv};
        const float *bias[3] = {ly->bq, ly->bk, ly->bv};
        float *ys[3] = {c->q, c->k, c->v};
        spqr_linear_forward_decode(&c->mm, lins, 3, c->xb, bias, ys, 0);
    } else {
        linear(c, &ly->wq, c->xb, n, ly->bq, c->q);
        linear(c, &ly->wk, c->xb, n, ly->bk, c->k);
        linear(c, &ly->wv, c->xb, n, ly->bv, c->v);
    }
    for (int i = 0; i < n; i++) {
        rope_apply(c, c->q + (size_t)i * qd, cfg->n_heads, pos + i);
        rope_apply(c, c->k + (size_t)i * kvd, cfg->n_kv_heads, pos + i);
        for (int kh = 0; kh < cfg->n_kv_heads; kh++) {
            size_t off = (((size_t)l * cfg->n_kv_heads + kh) * c->n_ctx + (size_t)(pos + i)) * hd;
            memcpy(c->kcache + off, c->k + (size_t)i * kvd + (size_t)kh * hd, (size_t)hd * sizeof(float));
            memcpy(c->vcache + off, c->v + (size_t)i * kvd + (size_t)kh * hd, (size_t)hd * sizeof(float));
        }
    }
    attn_job aj = {c, l, n, pos};
    spqr_pool_run(c->pool, attn_task, &aj);
    if (cap) cap(user, 1, c->att, n, qd);
    linear(c, &ly->wo, c->att, n, ly->bo, c->xb);
    for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->xb[i];

    for (int i = 0; i < n; i++) rmsnorm(c->xb + (size_t)i * dim, c->x + (size_t)i * dim, ly->ffn_norm, dim, cfg->norm_eps);
    if (cap) cap(user, 2, c->xb, n, dim);
    if (n == 1) { /* decode: gate, up and SwiGLU in one pool run */
        const spqr_linear *lins[2] = {&ly->w_gate, &ly->w_up};
        float *ys[2] = {c->hb, c->hb2};
        spqr_linear_forward_decode(&c->mm, lins, 2, c->xb, NULL, ys, 1);
    } else {
        linear(c, &ly->w_gate, c->xb, n, NULL, c->hb);
        linear(c, &ly->w_up, c->xb, n, NULL, c->hb2);
        swiglu_job sj = {c->hb, c->hb2, (size_t)n * hid};
        spqr_pool_run(c->pool, swiglu_task, &sj);
    }
    if (cap) cap(user, 3, c->hb, n, hid);
    linear(c, &ly->w_down, c->hb, n, NULL, c->xb);
    for (size_t i = 0; i < (size_t)n * dim; i++) c->x[i] += c->xb[i];
}

static spqr_status check_batch(const spqr_ctx *c, int n, int pos, spqr_error *err) {
    if (n < 1 || n > c->n_batch) return spqr_set_err(err, SPQR_E_ARG, "forward: %d tokens, the context takes 1 to %d per call", n, c->n_batch);
    if (pos < 0 || pos + n > c->n_ctx) return spqr_set_err(err, SPQR_E_RANGE, "forward: positions %d..%d exceed the context of %d", pos, pos + n - 1, c->n_ctx);
    return SPQR_OK;
}

spqr_status spqr_ctx_forward(spqr_ctx *c, const int32_t *ids, int n, int pos, int all_logits, spqr_error *err) {
    const spqr_model *m = c->m;
    const spqr_config *cfg = &m->cfg;
    spqr_status st = check_batch(c, n, pos, err);
    if (st) return st;
    if (!c->logits) return spqr_set_err(err, SPQR_E_ARG, "forward: this context was made without logits");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= cfg->vocab_size) return spqr_set_err(err, SPQR_E_ARG, "forward: token id %d is outside the vocabulary (%d)", ids[i], cfg->vocab_size);
#ifdef SPQR_CUDA
    if (c->gpu) return spqr_cuda_forward(c->gpu, ids, n, pos, all_logits, c->logits, err);
#endif
    const int dim = cfg->dim;
    for (int i = 0; i < n; i++) spqr_model_embed_row(m, ids[i], c->x + (size_t)i * dim);
    for (int l = 0; l < cfg->n_layers; l++) layer_forward(c, l, n, pos, NULL, NULL);
    const int first = all_logits ? 0 : n - 1, rows = n - first;
    for (int i = first; i < n; i++) rmsnorm(c->xb + (size_t)(i - first) * dim, c->x + (size_t)i * dim, m->final_norm, dim, cfg->norm_eps);
    linear(c, &m->output, c->xb, rows, NULL, c->logits);
    return SPQR_OK;
}

spqr_status spqr_ctx_block(spqr_ctx *c, int layer, const float *in, float *out, int n, int pos, spqr_capture_fn cap, void *user,
                           spqr_error *err) {
    spqr_status st = check_batch(c, n, pos, err);
    if (st) return st;
    if (layer < 0 || layer >= c->m->cfg.n_layers) return spqr_set_err(err, SPQR_E_ARG, "block: layer %d", layer);
    const size_t bytes = (size_t)n * c->m->cfg.dim * sizeof(float);
    memcpy(c->x, in, bytes);
    layer_forward(c, layer, n, pos, cap, user);
    if (out) memcpy(out, c->x, bytes);
    return SPQR_OK;
}

void spqr_ctx_embed(const spqr_ctx *c, const int32_t *ids, int n, float *out) {
    const int dim = c->m->cfg.dim;
    for (int i = 0; i < n; i++) spqr_model_embed_row(c->m, ids[i], out + (size_t)i * dim);
}

const float *spqr_ctx_logits(const spqr_ctx *c) { return c->logits; }

/* ---- construction ------------------------------------------------------------------------------ */

spqr_status spqr_ctx_new(const spqr_model *m, const spqr_ctx_opts *opts, spqr_ctx **out, spqr_error *err) {
    return spqr_ctx_new_ex(m, opts, 1, out, err);
}

spqr_status spqr_ctx_new_ex(const spqr_model *m, const spqr_ctx_opts *opts, int with_logits, spqr_ctx **out, spqr_error *err) {
    *out = NULL;
    const spqr_config *cfg = &m->cfg;
    spqr_ctx_opts o = {0};
    if (opts) o = *opts;
    if (o.n_ctx < 0 || o.n_batch < 0 || o.n_threads < 0) return spqr_set_err(err, SPQR_E_ARG, "context: negative size");
    if (o.n_ctx == 0) o.n_ctx = cfg->max_seq_len;
    if (o.n_ctx > SPQR_MAX_DIM) return spqr_set_err(err, SPQR_E_RANGE, "context: n_ctx %d is too large", o.n_ctx);
    if (o.n_batch == 0) o.n_batch = o.n_ctx < 512 ? o.n_ctx : 512;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    if (o.n_threads == 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        o.n_threads = nc > 0 ? (int)nc : 1;
    }
    if (o.n_threads > 512) o.n_threads = 512;
    spqr_ctx *c = calloc(1, sizeof *c);
    if (!c) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    c->m = m;
    c->n_ctx = o.n_ctx;
    c->n_batch = o.n_batch;
    c->n_threads = o.n_threads;
    const size_t B = (size_t)o.n_batch, hd = (size_t)cfg->head_dim;
    const size_t qd = (size_t)cfg->n_heads * hd, kvd = (size_t)cfg->n_kv_heads * hd;
    const size_t cache = (size_t)cfg->n_layers * kvd * (size_t)o.n_ctx;
    c->x = spqr_aligned_alloc(B * cfg->dim, sizeof(float));
    c->xb = spqr_aligned_alloc(B * (qd > (size_t)cfg->dim ? qd : (size_t)cfg->dim), sizeof(float));
    c->q = spqr_aligned_alloc(B * qd, sizeof(float));
    c->att = spqr_aligned_alloc(B * qd, sizeof(float));
    c->k = spqr_aligned_alloc(B * kvd, sizeof(float));
    c->v = spqr_aligned_alloc(B * kvd, sizeof(float));
    c->hb = spqr_aligned_alloc(B * cfg->hidden_dim, sizeof(float));
    c->hb2 = spqr_aligned_alloc(B * cfg->hidden_dim, sizeof(float));
    c->scores_rows = o.n_batch > cfg->n_heads / cfg->n_kv_heads ? o.n_batch : cfg->n_heads / cfg->n_kv_heads;
    c->scores = spqr_aligned_alloc((size_t)o.n_threads * c->scores_rows * o.n_ctx, sizeof(float));
    c->kcache = spqr_aligned_alloc(cache, sizeof(float));
    c->vcache = spqr_aligned_alloc(cache, sizeof(float));
    c->rope_cos = spqr_aligned_alloc((size_t)o.n_ctx * hd / 2, sizeof(float));
    c->rope_sin = spqr_aligned_alloc((size_t)o.n_ctx * hd / 2, sizeof(float));
    c->logits = with_logits ? spqr_aligned_alloc(B * cfg->vocab_size, sizeof(float)) : NULL;
    int max_cols = cfg->dim > cfg->hidden_dim ? cfg->dim : cfg->hidden_dim;
    if ((int)qd > max_cols) max_cols = (int)qd;
    c->mm.per_thread = spqr_linear_scratch(max_cols);
    c->mm.scratch = spqr_aligned_alloc((size_t)o.n_threads * c->mm.per_thread, sizeof(float));
    c->mm.k = spqr_cpu_select();
    c->mm.act8 = o.act8 && c->mm.k->qgemv_tiles_act8;
    snprintf(c->kernels, sizeof c->kernels, "%s%s", c->mm.k->name, c->mm.act8 ? "+act8" : "");
    c->mm.xbuf = spqr_aligned_alloc(B * (size_t)max_cols, sizeof(float));
    if (!c->x || !c->xb || !c->q || !c->att || !c->k || !c->v || !c->hb || !c->hb2 || !c->scores || !c->kcache || !c->vcache ||
        !c->rope_cos || !c->rope_sin || (with_logits && !c->logits) || !c->mm.scratch || !c->mm.xbuf) {
        spqr_ctx_free(c);
        return spqr_set_err(err, SPQR_E_NOMEM, "context: out of memory for n_ctx %d, n_batch %d", o.n_ctx, o.n_batch);
    }
    rope_tables(c);
    openblas_set_num_threads(1); /* each pool thread calls BLAS on its own slice */
    c->pool = spqr_pool_new(o.n_threads);
    c->mm.pool = c->pool;
    if (!c->pool) {
        spqr_ctx_free(c);
        return spqr_set_err(err, SPQR_E_NOMEM, "context: cannot start %d threads", o.n_threads);
    }
    if (o.gpu) {
#ifdef SPQR_CUDA
        spqr_cuda_model_opts go = {o.n_ctx, o.n_batch, o.gpu == 2, 0, o.act8, o.n_threads};
        spqr_cuda_model *g = NULL;
        spqr_status st = spqr_cuda_model_new(m, &go, &g, err);
        if (st) {
            spqr_ctx_free(c);
            return st;
        }
        c->gpu = g;
        snprintf(c->kernels, sizeof c->kernels, "cuda%s", o.gpu == 2 ? "+fp16" : "");
#else
        spqr_ctx_free(c);
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "context: this build has no CUDA support (build with make CUDA=1)");
#endif
    }
    *out = c;
    return SPQR_OK;
}

void spqr_ctx_free(spqr_ctx *c) {
    if (!c) return;
#ifdef SPQR_CUDA
    spqr_cuda_model_free(c->gpu);
#endif
    spqr_pool_free(c->pool);
    float *bufs[] = {c->x, c->xb, c->q, c->att, c->k, c->v, c->hb, c->hb2, c->scores, c->kcache, c->vcache, c->rope_cos, c->rope_sin, c->logits, c->mm.scratch, c->mm.xbuf};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) spqr_aligned_free(bufs[i]);
    free(c);
}

int spqr_ctx_n_ctx(const spqr_ctx *c) { return c->n_ctx; }
int spqr_ctx_n_batch(const spqr_ctx *c) { return c->n_batch; }
int spqr_ctx_n_threads(const spqr_ctx *c) { return c->n_threads; }
const char *spqr_ctx_kernels(const spqr_ctx *c) { return c->kernels; }

spqr_pool *spqr_ctx_pool(spqr_ctx *c) { return c->pool; }
const spqr_model *spqr_ctx_model(const spqr_ctx *c) { return c->m; }

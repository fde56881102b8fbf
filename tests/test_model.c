/*
 * test_model.c — the forward pass and perplexity against references:
 *  - evalmodel logits vs the HF transformers fp32 dump;
 *  - the BLAS/KV-cache path vs a plain scalar re-implementation written here (no shared code but
 *    the weights), on stories260K and on variants exercising biases, RoPE scaling, sliding windows;
 *  - decode (sgemv) vs prefill (sgemm), batch splits, thread counts;
 *  - perplexity: evalmodel chunk NLLs vs reference_ppl.json; stories260K vs llama.cpp's 4.1576.
 */
#include "harness.h"

#include "core/json.h"
#include "model/model_internal.h"
#include "spqr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* max |a - b| / max |b| over n floats */
static double rel_err(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static spqr_model *load(const char *rel, int no_tok) {
    spqr_model *m = NULL;
    spqr_error err;
    spqr_load_opts o = {NULL, no_tok};
    spqr_status st = spqr_model_load(th_asset(rel), &o, &m, &err);
    CHECKF(st == SPQR_OK, "load %s: %s", rel, err.msg);
    return st == SPQR_OK ? m : NULL;
}

/* Logits of all n positions through a context with the given batch size and threads. */
static float *run_logits(const spqr_model *m, const int32_t *ids, int n, int n_batch, int threads) {
    spqr_ctx *c;
    spqr_error err;
    spqr_ctx_opts o = {.n_ctx = n, .n_batch = n_batch, .n_threads = threads};
    if (spqr_ctx_new(m, &o, &c, &err) != SPQR_OK) { th_fail(__FILE__, __LINE__, "ctx: %s", err.msg); return NULL; }
    const int V = spqr_model_config(m)->vocab_size;
    float *out = malloc((size_t)n * V * sizeof(float));
    for (int p = 0; p < n; p += n_batch) {
        int k = n - p < n_batch ? n - p : n_batch;
        if (spqr_ctx_forward(c, ids + p, k, p, 1, &err) != SPQR_OK) { th_fail(__FILE__, __LINE__, "forward: %s", err.msg); break; }
        memcpy(out + (size_t)p * V, spqr_ctx_logits(c), (size_t)k * V * sizeof(float));
    }
    spqr_ctx_free(c);
    return out;
}

/* ---- scalar reference forward (double accumulation, RoPE from the formula) ---------------------- */

static void ref_matvec(double *y, const float *W, const float *b, const double *x, int out, int in) {
    for (int o = 0; o < out; o++) {
        double s = b ? b[o] : 0;
        for (int i = 0; i < in; i++) s += (double)W[(size_t)o * in + i] * x[i];
        y[o] = s;
    }
}

static void ref_rmsnorm(double *y, const double *x, const float *w, int n, double eps) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += x[i] * x[i];
    double r = 1 / sqrt(ss / n + eps);
    for (int i = 0; i < n; i++) y[i] = x[i] * r * w[i];
}

static double ref_inv_freq(const spqr_config *c, int i) {
    double f = 1.0 / pow(c->rope_theta, 2.0 * i / c->head_dim);
    if (c->rope_scaling == SPQR_ROPE_SCALING_LINEAR) return f / c->rope_factor;
    if (c->rope_scaling == SPQR_ROPE_SCALING_LLAMA3) {
        double wl = 2 * M_PI / f, lo = c->rope_orig_max_pos / c->rope_low_freq_factor, hi = c->rope_orig_max_pos / c->rope_high_freq_factor;
        if (wl < hi) return f;
        if (wl > lo) return f / c->rope_factor;
        double s = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) / (c->rope_high_freq_factor - c->rope_low_freq_factor);
        return (1 - s) * f / c->rope_factor + s * f;
    }
    return f;
}

static void ref_rope(const spqr_config *c, double *v, int heads, int pos) {
    int hd = c->head_dim, half = hd / 2;
    for (int h = 0; h < heads; h++) {
        double *x = v + (size_t)h * hd;
        for (int i = 0; i < half; i++) {
            double a = pos * ref_inv_freq(c, i), cs = cos(a), sn = sin(a);
            int i0 = c->rope_style == SPQR_ROPE_HALF ? i : 2 * i, i1 = c->rope_style == SPQR_ROPE_HALF ? i + half : 2 * i + 1;
            double x0 = x[i0], x1 = x[i1];
            x[i0] = x0 * cs - x1 * sn;
            x[i1] = x1 * cs + x0 * sn;
        }
    }
}

/* Logits [n][vocab] computed token by token with a naive KV cache. */
static float *ref_forward(const spqr_model *m, const int32_t *ids, int n) {
    const spqr_config *c = &m->cfg;
    const int D = c->dim, hd = c->head_dim, H = c->n_heads, KV = c->n_kv_heads, F = c->hidden_dim, V = c->vocab_size;
    const int qd = H * hd, kvd = KV * hd;
    double *x = calloc(D, sizeof *x), *h = calloc(D, sizeof *h), *q = calloc(qd, sizeof *q), *o = calloc(qd, sizeof *o);
    double *g = calloc(F, sizeof *g), *u = calloc(F, sizeof *u), *t = calloc(D > qd ? D : qd, sizeof *t), *lg = calloc(V, sizeof *lg);
    double *K = calloc((size_t)c->n_layers * n * kvd, sizeof *K), *Vc = calloc((size_t)c->n_layers * n * kvd, sizeof *Vc);
    double *att = calloc(n, sizeof *att);
    float *out = malloc((size_t)n * V * sizeof *out);
    for (int p = 0; p < n; p++) {
        for (int i = 0; i < D; i++) x[i] = m->embed[(size_t)ids[p] * D + i];
        for (int l = 0; l < c->n_layers; l++) {
            const spqr_layer *L = &m->layers[l];
            double *Kl = K + (size_t)l * n * kvd, *Vl = Vc + (size_t)l * n * kvd;
            ref_rmsnorm(h, x, L->attn_norm, D, c->norm_eps);
            ref_matvec(q, L->wq.w, L->bq, h, qd, D);
            ref_matvec(Kl + (size_t)p * kvd, L->wk.w, L->bk, h, kvd, D);
            ref_matvec(Vl + (size_t)p * kvd, L->wv.w, L->bv, h, kvd, D);
            ref_rope(c, q, H, p);
            ref_rope(c, Kl + (size_t)p * kvd, KV, p);
            for (int hh = 0; hh < H; hh++) {
                int kh = hh / (H / KV), first = m->sliding_window > 0 && p - m->sliding_window + 1 > 0 ? p - m->sliding_window + 1 : 0;
                double mx = -INFINITY, sum = 0;
                for (int s = first; s <= p; s++) {
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += q[hh * hd + i] * Kl[(size_t)s * kvd + kh * hd + i];
                    att[s] = d / sqrt((double)hd);
                    mx = fmax(mx, att[s]);
                }
                for (int s = first; s <= p; s++) sum += (att[s] = exp(att[s] - mx));
                for (int i = 0; i < hd; i++) {
                    double acc = 0;
                    for (int s = first; s <= p; s++) acc += att[s] / sum * Vl[(size_t)s * kvd + kh * hd + i];
                    o[hh * hd + i] = acc;
                }
            }
            ref_matvec(t, L->wo.w, L->bo, o, D, qd);
            for (int i = 0; i < D; i++) x[i] += t[i];
            ref_rmsnorm(h, x, L->ffn_norm, D, c->norm_eps);
            ref_matvec(g, L->w_gate.w, NULL, h, F, D);
            ref_matvec(u, L->w_up.w, NULL, h, F, D);
            for (int i = 0; i < F; i++) g[i] = g[i] / (1 + exp(-g[i])) * u[i];
            ref_matvec(t, L->w_down.w, NULL, g, D, F);
            for (int i = 0; i < D; i++) x[i] += t[i];
        }
        ref_rmsnorm(h, x, m->final_norm, D, c->norm_eps);
        ref_matvec(lg, m->output.w, NULL, h, V, D);
        for (int v = 0; v < V; v++) out[(size_t)p * V + v] = (float)lg[v];
    }
    free(x); free(h); free(q); free(o); free(g); free(u); free(t); free(lg); free(K); free(Vc); free(att);
    return out;
}

static const int32_t story_ids[] = {1, 403, 407, 261, 378, 429, 271, 400, 305, 263, 402, 262, 491, 281, 411, 370, 13, 264, 477, 279, 300, 260, 268, 312, 288, 275, 401, 258, 380, 456, 333, 290, 44, 7, 500, 321, 299, 338, 269, 290};
#define N_STORY ((int)(sizeof story_ids / sizeof story_ids[0]))

static void check_against_ref(const spqr_model *m, const char *what) {
    float *ref = ref_forward(m, story_ids, N_STORY);
    float *fast = run_logits(m, story_ids, N_STORY, 16, 2);
    double e = rel_err(fast, ref, (size_t)N_STORY * m->cfg.vocab_size);
    CHECKF(e < 1e-5, "%s: fast vs scalar reference: rel err %.3g", what, e);
    free(ref);
    free(fast);
}

static void test_forward_vs_scalar_reference(void) {
    NEED_SHARED();
    spqr_model *m = load("models/stories260K/stories260K.bin", 1);
    if (!m) return;
    check_against_ref(m, "stories260K (interleaved RoPE, GQA)");
    /* the same weights under every other option the forward pass has */
    spqr_config saved = m->cfg;
    m->cfg.rope_style = SPQR_ROPE_HALF;
    check_against_ref(m, "rotate-half RoPE");
    m->cfg.rope_scaling = SPQR_ROPE_SCALING_LINEAR;
    m->cfg.rope_factor = 4;
    check_against_ref(m, "linear RoPE scaling");
    m->cfg.rope_scaling = SPQR_ROPE_SCALING_LLAMA3;
    m->cfg.rope_factor = 8;
    m->cfg.rope_low_freq_factor = 1;
    m->cfg.rope_high_freq_factor = 4;
    m->cfg.rope_orig_max_pos = 64;
    m->cfg.rope_theta = 500000;
    check_against_ref(m, "llama3 RoPE scaling");
    m->cfg = saved;
    m->sliding_window = 5;
    check_against_ref(m, "sliding window 5");
    m->sliding_window = 0;
    /* Qwen2/Llama-style biases: reuse the norm weights as bias vectors of the right sizes */
    float *bias = calloc(4096, sizeof *bias);
    for (int i = 0; i < 4096; i++) bias[i] = 0.01f * (float)((i * 37) % 23 - 11);
    for (int l = 0; l < m->cfg.n_layers; l++) m->layers[l].bq = m->layers[l].bk = m->layers[l].bv = m->layers[l].bo = bias;
    check_against_ref(m, "q/k/v/o biases");
    for (int l = 0; l < m->cfg.n_layers; l++) m->layers[l].bq = m->layers[l].bk = m->layers[l].bv = m->layers[l].bo = NULL;
    free(bias);
    spqr_model_free(m);
}

/* ---- evalmodel against transformers ------------------------------------------------------------ */

/* Reads reference/logits_wikitext2_first32.{json,f32}: ids and [32][32000] logits. */
static bool read_ref_logits(int32_t *ids, float **logits) {
    char *text;
    size_t len;
    spqr_error err;
    if (spqr_read_file(th_asset("models/evalmodel/reference/logits_wikitext2_first32.json"), 1 << 20, &text, &len, &err)) return false;
    spqr_json *j = spqr_json_parse(text, len, NULL, 0);
    free(text);
    const spqr_json *a = spqr_json_get(j, "ids");
    bool ok = a && a->type == SPQR_JSON_ARRAY && a->n == 32;
    for (size_t i = 0; ok && i < 32; i++) {
        int64_t v;
        ok = spqr_json_i64(&a->items[i], &v);
        ids[i] = (int32_t)v;
    }
    spqr_json_free(j);
    if (!ok) return false;
    char *raw;
    if (spqr_read_file(th_asset("models/evalmodel/reference/logits_wikitext2_first32.f32"), 8 << 20, &raw, &len, &err) || len != 32 * 32000 * 4) return false;
    *logits = (float *)raw;
    return true;
}

static void test_evalmodel_logits(void) {
    NEED_SHARED();
    int32_t ids[32];
    float *ref = NULL;
    CHECK(read_ref_logits(ids, &ref));
    spqr_model *m = load("models/evalmodel", 1);
    if (!m || !ref) { free(ref); spqr_model_free(m); return; }
    float *batch = run_logits(m, ids, 32, 32, 2);
    double e = rel_err(batch, ref, 32 * 32000);
    CHECKF(e < 1e-4, "prefill logits vs transformers: rel err %.3g", e);
    float *tok = run_logits(m, ids, 32, 1, 2); /* one token at a time: the sgemv decode path */
    e = rel_err(tok, ref, 32 * 32000);
    CHECKF(e < 1e-4, "decode logits vs transformers: rel err %.3g", e);
    float *split = run_logits(m, ids, 32, 7, 1); /* batches of 7 over the KV cache, one thread */
    e = rel_err(split, batch, 32 * 32000);
    CHECKF(e < 1e-5, "batches of 7 vs one batch: rel err %.3g", e);
    free(batch);
    free(tok);
    free(split);
    free(ref);
    spqr_model_free(m);
}

static void test_forward_errors(void) {
    NEED_SHARED();
    spqr_model *m = load("models/stories260K/stories260K.bin", 1);
    if (!m) return;
    spqr_ctx *c;
    spqr_error err;
    spqr_ctx_opts o = {.n_ctx = 16, .n_batch = 8, .n_threads = 1};
    CHECK_OK(spqr_ctx_new(m, &o, &c, &err), &err);
    int32_t ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(spqr_ctx_forward(c, ids, 9, 0, 0, &err) == SPQR_E_ARG);  /* more than n_batch */
    CHECK(spqr_ctx_forward(c, ids, 0, 0, 0, &err) == SPQR_E_ARG);
    CHECK(spqr_ctx_forward(c, ids, 8, 9, 0, &err) == SPQR_E_RANGE); /* past n_ctx */
    ids[3] = 512;
    CHECK(spqr_ctx_forward(c, ids, 4, 0, 0, &err) == SPQR_E_ARG);  /* id outside the vocabulary */
    CHECK(strstr(err.msg, "512") != NULL);
    spqr_ctx_free(c);
    spqr_model_free(m);
}

static void test_sampler(void) {
    float logits[10] = {0.1f, 2.0f, -1.0f, 5.0f, 0.0f, 1.0f, 4.9f, -3.0f, 0.5f, 0.2f};
    spqr_sampler *s, *s2;
    spqr_error err;
    CHECK_OK(spqr_sampler_new(10, 0.0f, 1.0f, 1, &s, &err), &err);
    CHECK(spqr_sampler_sample(s, logits) == 3);
    spqr_sampler_free(s);
    CHECK_OK(spqr_sampler_new(10, 1.0f, 0.01f, 7, &s, &err), &err); /* tiny nucleus: the top token only */
    for (int i = 0; i < 20; i++) CHECK(spqr_sampler_sample(s, logits) == 3);
    spqr_sampler_free(s);
    CHECK_OK(spqr_sampler_new(10, 1.0f, 0.9f, 123, &s, &err), &err);
    CHECK_OK(spqr_sampler_new(10, 1.0f, 0.9f, 123, &s2, &err), &err);
    int seen[10] = {0};
    for (int i = 0; i < 200; i++) {
        int a = spqr_sampler_sample(s, logits), b = spqr_sampler_sample(s2, logits);
        CHECK(a == b);
        seen[a]++;
    }
    CHECK(seen[3] > 0 && seen[6] > 0);        /* both top tokens are drawn */
    CHECK(seen[7] == 0 && seen[2] == 0);      /* far outside the 0.9 nucleus */
    spqr_sampler_free(s);
    spqr_sampler_free(s2);
    CHECK(spqr_sampler_new(10, 1.0f, 0.0f, 1, &s, &err) == SPQR_E_ARG);
}

/* ---- perplexity ------------------------------------------------------------------------------- */

static bool read_text(const char *rel, size_t max, char **buf, size_t *len) {
    spqr_error err;
    if (spqr_read_file(th_asset(rel), 64 << 20, buf, len, &err)) return false;
    if (*len > max) *len = max;
    return true;
}

static void test_ppl_evalmodel_chunks(void) {
    NEED_SHARED();
    char *text = NULL, *rj = NULL;
    size_t len, rl;
    spqr_error err;
    CHECK(read_text("text/wikitext2-test.txt", SIZE_MAX, &text, &len));
    CHECK(spqr_read_file(th_asset("models/evalmodel/reference/reference_ppl.json"), 1 << 20, &rj, &rl, &err) == SPQR_OK);
    spqr_json *ref = rj ? spqr_json_parse(rj, rl, NULL, 0) : NULL;
    const spqr_json *w = spqr_json_get(ref, "wikitext2-test"), *cn = spqr_json_get(w, "chunk_nll");
    CHECK(cn && cn->n == 166);
    spqr_model *m = load("models/evalmodel", 0);
    if (!m || !text || !cn) goto done;
    int32_t *ids;
    size_t n;
    CHECK_OK(spqr_tokenizer_encode(spqr_model_tokenizer(m), text, len, 1, &ids, &n, &err), &err);
    int64_t ntok;
    CHECK(spqr_json_i64(spqr_json_get(w, "n_tokens_hf"), &ntok) && (size_t)ntok == n);
    spqr_ctx *c;
    spqr_ctx_opts co = {.n_ctx = 2048, .n_batch = 512, .n_threads = 0};
    CHECK_OK(spqr_ctx_new(m, &co, &c, &err), &err);
    spqr_ppl_opts po = {2048, SPQR_PPL_GPTQ, 2, NULL, NULL};
    spqr_ppl_result r;
    CHECK_OK(spqr_ppl_eval(c, ids, n, &po, &r, &err), &err);
    CHECK(r.chunks == 2 && r.scored == 2 * 2047);
    for (int i = 0; i < r.chunks; i++) {
        double want;
        spqr_json_num(&cn->items[i], &want);
        CHECKF(fabs(r.chunk_nll[i] - want) / want < 5e-5, "chunk %d: nll %.6f, reference %.6f", i, r.chunk_nll[i], want);
    }
    spqr_free(r.chunk_nll);
    spqr_ctx_free(c);
    spqr_free(ids);
done:
    spqr_model_free(m);
    spqr_json_free(ref);
    free(rj);
    free(text);
}

static void test_ppl_stories_llamacpp(void) {
    NEED_SHARED();
    char *text = NULL;
    size_t len;
    spqr_error err;
    CHECK(read_text("text/tinystories-valid-head.txt", 200000, &text, &len));
    spqr_model *m = load("models/stories260K/stories260K.bin", 0);
    if (!m || !text) { free(text); spqr_model_free(m); return; }
    CHECK(spqr_model_tokenizer(m) != NULL); /* tok512.bin found next to the checkpoint */
    int32_t *ids;
    size_t n;
    CHECK_OK(spqr_tokenizer_encode(spqr_model_tokenizer(m), text, len, 1, &ids, &n, &err), &err);
    spqr_ctx *c;
    spqr_ctx_opts co = {.n_ctx = 256, .n_batch = 256, .n_threads = 2};
    CHECK_OK(spqr_ctx_new(m, &co, &c, &err), &err);
    spqr_ppl_opts po = {256, SPQR_PPL_LLAMACPP, 0, NULL, NULL};
    spqr_ppl_result r;
    CHECK_OK(spqr_ppl_eval(c, ids, n, &po, &r, &err), &err);
    CHECKF(fabs(r.ppl - 4.1576) < 5e-5, "stories260K llamacpp ppl %.6f, llama.cpp gives 4.1576", r.ppl);
    CHECK(r.scored == (int64_t)r.chunks * 127);
    /* the gptq protocol on the same tokens scores every position and differs */
    po.protocol = SPQR_PPL_GPTQ;
    spqr_ppl_result g;
    CHECK_OK(spqr_ppl_eval(c, ids, n, &po, &g, &err), &err);
    CHECK(g.scored == (int64_t)g.chunks * 255 && fabs(g.ppl - r.ppl) > 1e-3);
    spqr_free(g.chunk_nll);
    spqr_free(r.chunk_nll);
    spqr_ctx_free(c);
    spqr_free(ids);
    free(text);
    spqr_model_free(m);
}

const th_test suite_model[] = {
    {"model_forward_vs_scalar_reference", test_forward_vs_scalar_reference},
    {"model_evalmodel_logits_vs_transformers", test_evalmodel_logits},
    {"model_forward_errors", test_forward_errors},
    {"model_sampler", test_sampler},
    {"ppl_evalmodel_chunks_vs_reference", test_ppl_evalmodel_chunks},
    {"ppl_stories260K_llamacpp_4.1576", test_ppl_stories_llamacpp},
    {NULL, NULL},
};

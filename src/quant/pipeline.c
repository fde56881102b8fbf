/*
 * pipeline.c — spqr_quantize: layer-by-layer quantization of a whole model on calibration data.
 *
 * X = embeddings of nsamples calibration windows ([nsamples][seqlen][dim], fp32). For each block:
 *   1. run the (still fp32) block on X, accumulating H = (2/nsamples) Σ x xᵀ over every token for the
 *      inputs of q/k/v (one H), o, gate/up (one H) and down;
 *   2. quantize the block's seven matrices (in parallel, one per thread);
 *   3. swap the quantized (dequantized) weights in, and run the block again on X: its outputs are
 *      the next block's X.
 * With head_bits, the last block's outputs through the final norm give the head's H, and the head
 * (the embedding when tied) is quantized last.
 * Memory: 2 x nsamples x seqlen x dim floats for X and the outputs, plus the Hessians
 * (3 x dim² + hidden² floats) and the quantized blobs.
 */
#include "format/writer.h"
#include "kernels/ordered.h"
#include "model/forward.h"
#include "quant/calib.h"
#include "quant/quantize.h"
#ifdef SPQR_CUDA
#include "cuda/quant_cuda.h"
#endif

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#define N_MODULES 7
static const char *const module_name[N_MODULES] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                                   "mlp.gate_proj",    "mlp.up_proj",      "mlp.down_proj"};
static const int module_hess[N_MODULES] = {0, 0, 0, 1, 2, 2, 3}; /* which captured input feeds each */

spqr_quant_opts spqr_quant_defaults(spqr_method method) {
    spqr_quant_opts o;
    memset(&o, 0, sizeof o);
    o.method = method;
    o.wbits = 4;
    o.nsamples = 128;
    o.seqlen = 2048;
    o.outlier_threshold = INFINITY;
    if (method == SPQR_METHOD_SPQR) {
        o.groupsize = 16;
        o.qq_bits = 3;
        o.qq_groupsize = 16;
        o.outlier_threshold = 0.2;
        o.act_order = 1;
        o.percdamp = 1.0;
    } else {
        o.groupsize = 128;
        o.percdamp = 0.01;
    }
    return o;
}

static const char *method_name(spqr_method m) { return m == SPQR_METHOD_SPQR ? "spqr" : m == SPQR_METHOD_GPTQ ? "gptq" : "rtn"; }

/* ---- Hessian accumulation: H += alpha · XᵀX, upper triangle, 64-row panels round-robin ---------- */

typedef struct {
    float *H[4];
    float alpha;
    spqr_pool *pool;
    void *gpu;       /* spqr_cuda_qctx: accumulate on the device into Hdev instead (SPQR_CUDA builds) */
    float *Hdev[4];
    spqr_status st;  /* the first device error */
    spqr_error err;
} hess_acc;

static void capture(void *user, int which, const float *X, int n, int cols) {
    hess_acc *a = user;
#ifdef SPQR_CUDA
    if (a->gpu) {
        if (!a->st) a->st = spqr_cuda_hessian_add_host(a->gpu, X, n, cols, a->alpha, a->Hdev[which], &a->err);
        return;
    }
#endif
    /* upper triangle of H += α XᵀX in the fixed order of kernels/ordered.h (the GPU's bits too) */
    const spqr_ordered_args g = {cols, cols, n, a->alpha, X, 1, cols, X, cols, a->H[which], cols, 1};
    spqr_ordered_gemm(a->pool, &g);
}

static void symmetrize(float *H, int n) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < i; k++) H[(size_t)i * n + k] = H[(size_t)k * n + i];
}

/* ---- parallel quantization of a block's matrices ----------------------------------------------- */

typedef struct {
    const spqr_linear *lin;
    const float *H;
    spqr_qresult res;
    double seconds;
    spqr_status st;
    spqr_error err;
} qjob;

typedef struct { qjob *jobs; int n; const spqr_qparams *p; atomic_int next; } qjobs;

static void quant_task(void *arg, int ith, int nth) {
    (void)ith;
    (void)nth;
    qjobs *q = arg;
    for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->n;) { /* biggest first: jobs are sorted */
        qjob *j = &q->jobs[i];
        double t0 = spqr_now();
        j->st = spqr_quantize_matrix(j->lin->w, j->lin->rows, j->lin->cols, j->H, q->p, &j->res, &j->err);
        j->seconds = spqr_now() - t0;
    }
}

static spqr_linear *module_linear(spqr_layer *ly, int k) {
    spqr_linear *all[N_MODULES] = {&ly->wq, &ly->wk, &ly->wv, &ly->wo, &ly->w_gate, &ly->w_up, &ly->w_down};
    return all[k];
}

/* ---- the run ----------------------------------------------------------------------------------- */

typedef struct {
    spqr_qresult *res; /* [n_layers][N_MODULES]: blobs for the file */
    float *X, *Y;      /* calibration activations */
    int32_t *tokens;
    float *H[4];
    void *tok_bytes;
    float **conv;      /* F32 -> F16 conversions of kept tensors */
    int n_conv;
    spqr_wtensor *wt;
    spqr_sb meta, calib_meta;
    spqr_ctx *ctx;
    void *gpu;      /* spqr_cuda_qctx (opts.gpu, SPQR_CUDA builds) */
    float *Hdev[4]; /* the Hessians on the device */
} run_state;

static void run_free(run_state *r, int n_res) {
    for (int i = 0; r->res && i < n_res; i++) spqr_qresult_free(&r->res[i]);
    free(r->res);
    spqr_aligned_free(r->X);
    spqr_aligned_free(r->Y);
    free(r->tokens);
    for (int i = 0; i < 4; i++) spqr_aligned_free(r->H[i]);
    free(r->tok_bytes);
    for (int i = 0; i < r->n_conv; i++) free(r->conv[i]);
    free(r->conv);
    free(r->wt);
    spqr_sb_free(&r->meta);
    spqr_sb_free(&r->calib_meta);
    spqr_ctx_free(r->ctx);
#ifdef SPQR_CUDA
    for (int i = 0; i < 4; i++) spqr_cuda_free(r->Hdev[i]);
    spqr_cuda_qctx_free(r->gpu);
#endif
}

/* Quantizes jobs[0..n): on the pool's threads (one matrix each), or one after another on the GPU. */
static void run_jobs(run_state *r, qjob *jobs, int n, const spqr_qparams *p) {
#ifdef SPQR_CUDA
    if (r->gpu) {
        for (int i = 0; i < n; i++) {
            double t0 = spqr_now();
            jobs[i].st = spqr_cuda_quantize_matrix(r->gpu, jobs[i].lin->w, jobs[i].lin->rows, jobs[i].lin->cols, jobs[i].H, p, &jobs[i].res, &jobs[i].err);
            jobs[i].seconds = spqr_now() - t0;
        }
        return;
    }
#endif
    qjobs q = {jobs, n, p, 0};
    spqr_pool_run(spqr_ctx_pool(r->ctx), quant_task, &q);
}

/* Zeroes the Hessians before a block's calibration pass (host or device). */
static spqr_status hess_clear(run_state *r, const int *hd, spqr_error *err) {
    for (int i = 0; i < 4; i++) {
#ifdef SPQR_CUDA
        if (r->gpu) {
            spqr_status st = spqr_cuda_memset0(r->Hdev[i], (size_t)hd[i] * hd[i] * sizeof(float), err);
            if (st) return st;
            continue;
        }
#endif
        memset(r->H[i], 0, (size_t)hd[i] * hd[i] * sizeof(float));
    }
    return SPQR_OK;
}

/* After the pass: the full symmetric Hessians in r->H (from the device if accumulated there). */
static spqr_status hess_finish(run_state *r, const int *hd, hess_acc *acc, spqr_error *err) {
    for (int i = 0; i < 4; i++) {
#ifdef SPQR_CUDA
        if (r->gpu) {
            if (acc->st) return spqr_set_err(err, acc->st, "Hessian on the GPU: %s", acc->err.msg);
            spqr_status st = spqr_cuda_hessian_symmetrize(r->gpu, r->Hdev[i], hd[i], err);
            if (!st) st = spqr_cuda_d2h(r->H[i], r->Hdev[i], (size_t)hd[i] * hd[i] * sizeof(float), err);
            if (st) return st;
            continue;
        }
#endif
        symmetrize(r->H[i], hd[i]);
    }
    (void)acc;
    (void)err;
    return SPQR_OK;
}

/* diag(H_i) *= 1 + u, u uniform in ±amp (splitmix64 from seed): the size of a last-bit difference in
 * the Hessians (another summation order, cuBLAS instead of OpenBLAS) when amp is ~1e-6. */
static void jitter_diag(float *const *H, const int *hd, double amp, uint64_t seed) {
    for (int i = 0; i < 4; i++)
        for (int d = 0; d < hd[i]; d++) {
            uint64_t z = (seed += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            const double u = ((double)(z >> 11) / 9007199254740992.0 * 2 - 1) * amp;
            H[i][(size_t)d * hd[i] + d] *= (float)(1 + u);
        }
}

static spqr_status check_opts(const spqr_model *m, const spqr_quant_opts *o, spqr_error *err) {
    if (o->method != SPQR_METHOD_SPQR && o->method != SPQR_METHOD_GPTQ && o->method != SPQR_METHOD_RTN) return spqr_set_err(err, SPQR_E_ARG, "quantize: unknown method");
    if (o->wbits < 1 || o->wbits > 8) return spqr_set_err(err, SPQR_E_ARG, "quantize: --wbits %d is outside 1..8", o->wbits);
    if (o->groupsize < 0) return spqr_set_err(err, SPQR_E_ARG, "quantize: --groupsize %d", o->groupsize);
    if (o->method == SPQR_METHOD_SPQR && (o->qq_bits < 1 || o->qq_bits > 8 || o->qq_groupsize < 1))
        return spqr_set_err(err, SPQR_E_ARG, "quantize: --qq-bits %d must be in 1..8 and --qq-groupsize %d positive", o->qq_bits, o->qq_groupsize);
    if (!(o->percdamp >= 0) || !isfinite(o->percdamp) || isnan(o->outlier_threshold) || o->outlier_threshold < 0)
        return spqr_set_err(err, SPQR_E_ARG, "quantize: --percdamp and --outlier-threshold must be non-negative");
    if (o->method != SPQR_METHOD_RTN && (o->nsamples < 1 || o->seqlen < 2 || o->seqlen > m->cfg.max_seq_len))
        return spqr_set_err(err, SPQR_E_ARG, "quantize: --nsamples %d must be positive and --seqlen %d in 2..%d", o->nsamples, o->seqlen, m->cfg.max_seq_len);
    if (o->head_bits && (o->head_bits < 2 || o->head_bits > 8)) return spqr_set_err(err, SPQR_E_ARG, "quantize: --head-bits %d is outside 2..8", o->head_bits);
    if (m->meta) return spqr_set_err(err, SPQR_E_ARG, "quantize: %s is already quantized", m->path);
    if (!m->tok || !m->tok_path) return spqr_set_err(err, SPQR_E_ARG, "quantize: %s: the model needs its tokenizer file (calibration, and the .spqr carries it)", m->path);
    if (m->cfg.dim > 65536 || m->cfg.hidden_dim > 65536 || m->cfg.n_heads * m->cfg.head_dim > 65536)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "quantize: layers wider than 65536 inputs are not supported");
    return SPQR_OK;
}

/* The output head [vocab][dim] (the embedding when tied), at head_bits with the layers' method and
 * groups; H from the final norm of the last block's outputs (r->X). Stored as res[slot]; the model
 * then runs (and embeds with) the dequantized head. */
static spqr_status quantize_head(spqr_model *m, const spqr_quant_opts *o, const spqr_qparams *qp, run_state *r, int slot, spqr_quant_summary *sum,
                                 double t0, spqr_error *err) {
    const spqr_config *cfg = &m->cfg;
    const int dim = cfg->dim;
    spqr_linear *head = &m->output;
    if (!head->w) return spqr_set_err(err, SPQR_E_ARG, "quantize: the output head is not fp32");
    float *H = NULL;
    if (o->method != SPQR_METHOD_RTN) {
        H = r->H[0]; /* dim x dim */
        memset(H, 0, (size_t)dim * dim * sizeof(float));
        const size_t n_tok = (size_t)o->nsamples * o->seqlen;
        for (size_t i = 0; i < n_tok; i++) { /* final RMSNorm in place (X is not needed after this) */
            float *x = r->X + i * dim, ss = 0;
            for (int d = 0; d < dim; d++) ss += x[d] * x[d];
            const float inv = 1.0f / sqrtf(ss / (float)dim + cfg->norm_eps);
            for (int d = 0; d < dim; d++) x[d] = x[d] * inv * m->final_norm[d];
        }
        hess_acc acc = {{H, NULL, NULL, NULL}, 2.0f / (float)o->nsamples, spqr_ctx_pool(r->ctx), NULL, {NULL}, SPQR_OK, {0}}; /* on the CPU: one dim x dim */
        for (size_t i = 0; i < n_tok; i += 512) capture(&acc, 0, r->X + i * dim, (int)(n_tok - i < 512 ? n_tok - i : 512), dim);
        symmetrize(H, dim);
    }
    spqr_qparams hp = *qp;
    hp.wbits = o->head_bits;
    qjob j;
    memset(&j, 0, sizeof j);
    j.lin = head;
    j.H = H;
    run_jobs(r, &j, 1, &hp); /* one job (on the CPU: the sweep's BLAS calls are single-threaded) */
    if (j.st) return spqr_set_err(err, j.st, "output head: %s", j.err.msg);
    void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
    if (!owned) { spqr_qresult_free(&j.res); return spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); }
    m->owned = owned;
    m->owned[m->n_owned++] = j.res.deq;
    const float *old = head->w;
    head->w = j.res.deq;
    if (m->embed == old) m->embed = j.res.deq; /* tied: the embedding is the quantized head */
    j.res.deq = NULL;
    r->res[slot] = j.res;
    snprintf(r->res[slot].entry.name, sizeof r->res[0].entry.name, "%s", cfg->tied_embeddings ? "model.embed_tokens.weight" : "lm_head.weight");
    sum->quantized_weights += (int64_t)head->rows * head->cols;
    sum->n_outliers += (int64_t)j.res.entry.n_outliers;
    if (o->progress) {
        spqr_quant_module pm = {0};
        pm.block = cfg->n_layers;
        pm.n_blocks = cfg->n_layers;
        pm.module = "lm_head";
        pm.rows = head->rows;
        pm.cols = head->cols;
        pm.outlier_share = (double)j.res.entry.n_outliers / ((double)head->rows * head->cols);
        pm.rel_err = j.res.rel_err;
        pm.percdamp_used = j.res.percdamp_used;
        pm.bits_paper = spqr_bits_paper(&j.res.entry);
        pm.bits_file = 8.0 * (double)j.res.entry.data_size / ((double)head->rows * head->cols);
        pm.seconds = j.seconds;
        pm.elapsed = spqr_now() - t0;
        o->progress(&pm, o->progress_user);
    }
    return SPQR_OK;
}

spqr_status spqr_quantize(spqr_model *m, const char *out_path, const spqr_quant_opts *opts, spqr_quant_summary *sum, spqr_error *err) {
    const spqr_quant_opts o = *opts;
    memset(sum, 0, sizeof *sum);
    spqr_status st = check_opts(m, &o, err);
    if (st) return st;
    const double t0 = spqr_now();
    const spqr_config *cfg = &m->cfg;
    const int L = cfg->n_layers, dim = cfg->dim, hid = cfg->hidden_dim, qd = cfg->n_heads * cfg->head_dim;
    const bool calibrate = o.method != SPQR_METHOD_RTN;
    spqr_qparams qp = {o.method == SPQR_METHOD_SPQR ? SPQR_QM_SPQR : o.method == SPQR_METHOD_GPTQ ? SPQR_QM_GPTQ : SPQR_QM_RTN,
                       o.wbits, o.groupsize, o.qq_bits, o.qq_groupsize, o.method == SPQR_METHOD_SPQR ? o.outlier_threshold : INFINITY,
                       o.act_order, o.percdamp, o.simplified_outliers, 128};
    run_state r;
    memset(&r, 0, sizeof r);
    const int n_res = L * N_MODULES + (o.head_bits ? 1 : 0); /* the head last */
    r.res = calloc((size_t)n_res, sizeof *r.res);
    if (!r.res) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    if (o.gpu) {
#ifdef SPQR_CUDA
        const int hd[4] = {dim, qd, dim, hid};
        if ((st = spqr_cuda_qctx_new(NULL, (spqr_cuda_qctx **)&r.gpu, err))) goto done;
        spqr_cuda_qctx_set_device_cholesky(r.gpu, o.gpu_device_cholesky);
        for (int i = 0; i < 4 && calibrate; i++)
            if (!(r.Hdev[i] = spqr_cuda_malloc((size_t)hd[i] * hd[i] * sizeof(float), err))) { st = err->code; goto done; }
#else
        st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "quantize --gpu: this build has no CUDA support (build with make CUDA=1)");
        goto done;
#endif
    }
    for (int l = 0; l < L; l++) /* every weight must be fp32 here */
        for (int k = 0; k < N_MODULES; k++)
            if (!module_linear(&m->layers[l], k)->w) { st = spqr_set_err(err, SPQR_E_ARG, "quantize: layer %d %s is not fp32", l, module_name[k]); goto done; }

    const int nb = o.seqlen < 512 ? o.seqlen : 512;
    spqr_ctx_opts co = {.n_ctx = calibrate ? o.seqlen : 1, .n_batch = calibrate ? nb : 1, .n_threads = o.n_threads};
    if ((st = spqr_ctx_new_ex(m, &co, 0, &r.ctx, err))) goto done;
    sum->threads = spqr_ctx_n_threads(r.ctx);
    const size_t act = calibrate ? (size_t)o.nsamples * o.seqlen * dim : 0;
    if (calibrate) {
        r.tokens = malloc((size_t)o.nsamples * o.seqlen * sizeof *r.tokens);
        r.X = spqr_aligned_alloc(act, sizeof(float));
        r.Y = spqr_aligned_alloc(act, sizeof(float));
        const int hd[4] = {dim, qd, dim, hid};
        for (int i = 0; i < 4; i++) r.H[i] = spqr_aligned_alloc((size_t)hd[i] * hd[i], sizeof(float));
        if (!r.tokens || !r.X || !r.Y || !r.H[0] || !r.H[1] || !r.H[2] || !r.H[3]) {
            st = spqr_set_err(err, SPQR_E_NOMEM, "quantize: out of memory for %d x %d calibration activations (%.1f GiB)", o.nsamples, o.seqlen,
                              2.0 * act * 4 / 1073741824.0);
            goto done;
        }
        if ((st = spqr_calib_sample(m->tok, o.calib_files, o.n_calib_files, o.nsamples, o.seqlen, o.seed, r.tokens, &r.calib_meta, err))) goto done;
        spqr_ctx_embed(r.ctx, r.tokens, o.nsamples * o.seqlen, r.X);
        sum->calib_seconds = spqr_now() - t0;
    }

    /* jobs of one block, biggest matrices first */
    static const int order[N_MODULES] = {6, 4, 5, 0, 3, 1, 2};
    for (int l = 0; l < L && !st; l++) {
        spqr_layer *ly = &m->layers[l];
        if (calibrate) {
            const int hd[4] = {dim, qd, dim, hid};
            if ((st = hess_clear(&r, hd, err))) break;
            hess_acc acc = {{r.H[0], r.H[1], r.H[2], r.H[3]}, 2.0f / (float)o.nsamples, spqr_ctx_pool(r.ctx), r.gpu,
                            {r.Hdev[0], r.Hdev[1], r.Hdev[2], r.Hdev[3]}, SPQR_OK, {0}};
            for (int s = 0; s < o.nsamples && !st; s++)
                for (int p = 0; p < o.seqlen && !st; p += nb) {
                    int n = o.seqlen - p < nb ? o.seqlen - p : nb;
                    st = spqr_ctx_block(r.ctx, l, r.X + ((size_t)s * o.seqlen + p) * dim, NULL, n, p, capture, &acc, err);
                }
            if (st || (st = hess_finish(&r, hd, &acc, err))) break;
            if (l == 0 && o.hessian_jitter > 0) jitter_diag(r.H, hd, o.hessian_jitter, o.jitter_seed);
        }
        qjob jobs[N_MODULES];
        memset(jobs, 0, sizeof jobs);
        for (int i = 0; i < N_MODULES; i++) {
            int k = order[i];
            jobs[i].lin = module_linear(ly, k);
            jobs[i].H = calibrate ? r.H[module_hess[k]] : NULL;
        }
        run_jobs(&r, jobs, N_MODULES, &qp);
        for (int i = 0; i < N_MODULES && !st; i++)
            if (jobs[i].st) {
                st = spqr_set_err(err, jobs[i].st, "block %d %s: %s", l, module_name[order[i]], jobs[i].err.msg);
            }
        if (st) {
            for (int i = 0; i < N_MODULES; i++) spqr_qresult_free(&jobs[i].res);
            break;
        }
        for (int k = 0; k < N_MODULES; k++) { /* in module order: report, swap the weights in */
            int i = 0;
            while (order[i] != k) i++;
            qjob *j = &jobs[i];
            spqr_linear *lin = module_linear(ly, k);
            void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
            if (!owned) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); break; }
            m->owned = owned;
            m->owned[m->n_owned++] = j->res.deq; /* the model now owns the dequantized weights */
            lin->w = j->res.deq;
            j->res.deq = NULL;
            r.res[l * N_MODULES + k] = j->res;
            snprintf(r.res[l * N_MODULES + k].entry.name, sizeof r.res[0].entry.name, "model.layers.%d.%s.weight", l, module_name[k]);
            sum->quantized_weights += (int64_t)lin->rows * lin->cols;
            sum->n_outliers += (int64_t)j->res.entry.n_outliers;
            if (o.progress) {
                spqr_quant_module pm;
                pm.block = l + 1;
                pm.n_blocks = L;
                pm.module = module_name[k];
                pm.rows = lin->rows;
                pm.cols = lin->cols;
                pm.outlier_share = (double)j->res.entry.n_outliers / ((double)lin->rows * lin->cols);
                pm.rel_err = j->res.rel_err;
                pm.percdamp_used = j->res.percdamp_used;
                pm.bits_paper = spqr_bits_paper(&j->res.entry);
                pm.bits_file = 8.0 * (double)j->res.entry.data_size / ((double)lin->rows * lin->cols);
                pm.seconds = j->seconds;
                pm.elapsed = spqr_now() - t0;
                double done = l + (k + 1.0) / N_MODULES;
                pm.eta = pm.elapsed / done * (L - done);
                o.progress(&pm, o.progress_user);
            }
        }
        if (st) break;
        if (calibrate && (l + 1 < L || o.head_bits)) { /* the quantized block's outputs feed the next block (or the head) */
            for (int s = 0; s < o.nsamples && !st; s++)
                for (int p = 0; p < o.seqlen && !st; p += nb) {
                    int n = o.seqlen - p < nb ? o.seqlen - p : nb;
                    size_t off = ((size_t)s * o.seqlen + p) * dim;
                    st = spqr_ctx_block(r.ctx, l, r.X + off, r.Y + off, n, p, NULL, NULL, err);
                }
            float *t = r.X;
            r.X = r.Y;
            r.Y = t;
        }
    }
    if (st) goto done;
    if (o.head_bits && (st = quantize_head(m, &o, &qp, &r, n_res - 1, sum, t0, err))) goto done;

    /* bits */
    double paper = 0, blob_bytes = 0;
    for (int i = 0; i < n_res; i++) {
        const spqr_file_tensor *e = &r.res[i].entry;
        paper += spqr_bits_paper(e) * (double)e->shape[0] * (double)e->shape[1];
        blob_bytes += (double)e->data_size;
    }
    sum->bits_paper = paper / (double)sum->quantized_weights;
    sum->bits_file = blob_bytes * 8 / (double)sum->quantized_weights;

    /* the tensors of the file: the source's, in its order, quantized ones replaced by their blobs */
    r.wt = calloc((size_t)m->n_tensors, sizeof *r.wt);
    r.conv = calloc((size_t)m->n_tensors, sizeof *r.conv);
    if (!r.wt || !r.conv) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
    uint32_t nw = 0;
    spqr_sb kept = {0};
    for (int i = 0; i < m->n_tensors; i++) {
        const spqr_tensor *t = &m->tensors[i];
        spqr_wtensor *w = &r.wt[nw++];
        const spqr_qresult *qr = NULL;
        for (int k = 0; k < n_res && !qr; k++)
            if (!strcmp(r.res[k].entry.name, t->name)) qr = &r.res[k];
        if (qr) {
            w->entry = qr->entry;
            w->data = qr->blob;
            continue;
        }
        if (strlen(t->name) >= sizeof w->entry.name || t->n_dims < 1 || t->n_dims > 2) {
            st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "quantize: tensor %s cannot be stored (name over 95 bytes or not 1-D/2-D)", t->name);
            break;
        }
        snprintf(w->entry.name, sizeof w->entry.name, "%s", t->name);
        w->entry.n_dims = (uint32_t)t->n_dims;
        w->entry.shape[0] = (uint64_t)t->shape[0];
        w->entry.shape[1] = t->n_dims == 2 ? (uint64_t)t->shape[1] : 1;
        if (t->dtype == SPQR_DTYPE_F32 && t->n_dims == 2) { /* matrices stay 16-bit: F16, or BF16 past F16's range */
            float *h = malloc(t->n_elem * 2);
            if (!h) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); break; }
            r.conv[r.n_conv++] = h;
            uint16_t *hh = (uint16_t *)h;
            bool fits = true;
            for (uint64_t e = 0; e < t->n_elem && fits; e++) {
                float f;
                memcpy(&f, t->data + 4 * e, 4);
                fits = fabsf(f) <= 65504.0f;
            }
            for (uint64_t e = 0; e < t->n_elem; e++) {
                float f;
                uint32_t u;
                memcpy(&f, t->data + 4 * e, 4);
                memcpy(&u, &f, 4);
                hh[e] = fits ? spqr_f32_to_f16(f) : (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16); /* round to nearest even */
            }
            w->entry.kind = fits ? SPQR_TK_F16 : SPQR_TK_BF16;
            w->entry.data_size = t->n_elem * 2;
            w->data = h;
        } else {
            w->entry.kind = (uint32_t)t->dtype;
            w->entry.data_size = t->nbytes;
            w->data = t->data;
        }
        sum->kept_bytes += w->entry.data_size;
        spqr_sb_printf(&kept, "%s", kept.n ? "," : "");
        spqr_sb_json_str(&kept, t->name);
    }
    if (st) { spqr_sb_free(&kept); goto done; }

    size_t tok_size = 0;
    if ((st = spqr_read_file(m->tok_path, 1u << 30, (char **)&r.tok_bytes, &tok_size, err))) { spqr_sb_free(&kept); goto done; }

    spqr_sb *b = &r.meta;
    /* nothing time-dependent: the same inputs, options and thread count give the same file */
    spqr_sb_printf(b, "{\"format\":\"spqr\",\"format_version\":%u,\"tool\":\"spqr %s\",\"source_model\":", SPQR_FORMAT_VERSION, SPQR_VERSION);
    spqr_sb_json_str(b, m->path);
    spqr_sb_printf(b, ",\"config\":");
    spqr_config_json(b, cfg, m->sliding_window);
    spqr_sb_printf(b, ",\"tokenizer\":{\"source\":");
    spqr_sb_json_str(b, m->tok_path);
    spqr_sb_printf(b, ",\"bytes\":%zu},\"quantization\":{\"method\":\"%s\",\"wbits\":%d,\"groupsize\":%d", tok_size, method_name(o.method), o.wbits,
                   o.groupsize);
    if (o.method == SPQR_METHOD_SPQR) {
        spqr_sb_printf(b, ",\"qq_bits\":%d,\"qq_groupsize\":%d,\"outlier_threshold\":", o.qq_bits, o.qq_groupsize);
        if (isfinite(o.outlier_threshold)) spqr_sb_printf(b, "%.9g", o.outlier_threshold);
        else spqr_sb_printf(b, "\"inf\"");
        spqr_sb_printf(b, ",\"simplified_outliers\":%s", o.simplified_outliers ? "true" : "false");
    }
    if (calibrate) {
        spqr_sb_printf(b, ",\"perm\":\"%s\",\"percdamp\":%.9g,\"blocksize\":128,\"calibration\":{\"files\":%s,\"nsamples\":%d,\"seqlen\":%d,\"seed\":%llu}",
                       o.act_order ? "act_order" : "identity", o.percdamp, r.calib_meta.s ? r.calib_meta.s : "[]", o.nsamples, o.seqlen,
                       (unsigned long long)o.seed);
    }
    spqr_sb_printf(b, ",\"head_bits\":%d", o.head_bits);
    if (o.hessian_jitter > 0) spqr_sb_printf(b, ",\"hessian_jitter\":%.9g,\"jitter_seed\":%llu", o.hessian_jitter, (unsigned long long)o.jitter_seed);
    spqr_sb_printf(b, ",\"quantized_weights\":%lld,\"outliers\":%lld,\"bits_paper\":%.6f,\"bits_file\":%.6f,\"kept\":[%s]}}",
                   (long long)sum->quantized_weights, (long long)sum->n_outliers, sum->bits_paper, sum->bits_file, kept.s ? kept.s : "");
    spqr_sb_free(&kept);
    if (b->oom) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
    st = spqr_file_write(out_path, b->s, r.tok_bytes, tok_size, r.wt, nw, &sum->file_bytes, err);
    sum->seconds = spqr_now() - t0;
done:
    run_free(&r, n_res);
    return st;
}

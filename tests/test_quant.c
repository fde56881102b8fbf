/*
 * test_quant.c — the quantizers on small random layers with known Hessians, the packed layout and
 * its kernels, and the .spqr container: round trip and hostile files.
 */
#include "harness.h"

#include "core/core.h"
#include "format/format.h"
#include "format/qmatrix.h"
#include "model/model_internal.h"
#include "quant/quantize.h"
#include "spqr.h"

#include <cblas.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static uint64_t rng_state = 0x1234567;
static double urand(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}
static float gauss(void) { return (float)(sqrt(-2 * log(urand() + 1e-300)) * cos(2 * M_PI * urand())); }

/* X [n][cols] correlated inputs (a random mix of a few latent directions plus noise), and
 * H = (2/n) XᵀX. */
static void make_inputs(int n, int cols, float *X, float *H) {
    const int k = 8;
    float *A = malloc((size_t)k * cols * sizeof *A);
    for (int i = 0; i < k * cols; i++) A[i] = gauss();
    for (int t = 0; t < n; t++) {
        float z[8];
        for (int i = 0; i < k; i++) z[i] = gauss();
        for (int c = 0; c < cols; c++) {
            float v = 0.3f * gauss() * (1 + (c % 7)); /* unequal column scales */
            for (int i = 0; i < k; i++) v += z[i] * A[i * cols + c];
            X[(size_t)t * cols + c] = v;
        }
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, cols, cols, n, 2.0f / n, X, cols, X, cols, 0.0f, H, cols);
    free(A);
}

/* ‖(W − Q) Xᵀ‖_F */
static double out_err(const float *W, const float *Q, const float *X, int rows, int cols, int n) {
    double s = 0;
    for (int r = 0; r < rows; r++)
        for (int t = 0; t < n; t++) {
            double d = 0;
            for (int c = 0; c < cols; c++) d += ((double)W[(size_t)r * cols + c] - Q[(size_t)r * cols + c]) * X[(size_t)t * cols + c];
            s += d * d;
        }
    return sqrt(s);
}

static spqr_qparams params(spqr_qmethod m, int wbits, int gs) {
    spqr_qparams p = {m, wbits, gs, 3, 16, INFINITY, 0, 0.01, 0, 128};
    if (m == SPQR_QM_SPQR) { p.percdamp = 1.0; p.act_order = 1; p.outlier_threshold = 0.2; }
    return p;
}

static void test_gptq_beats_rtn(void) {
    const int rows = 48, cols = 96, n = 400;
    float *W = malloc(rows * cols * sizeof *W), *X = malloc((size_t)n * cols * sizeof *X), *H = malloc(cols * cols * sizeof *H);
    for (int i = 0; i < rows * cols; i++) W[i] = 0.05f * gauss();
    make_inputs(n, cols, X, H);
    spqr_error err;
    for (int bits = 2; bits <= 4; bits++) {
        spqr_qresult rtn, gptq, gptq_ao, spqr;
        spqr_qparams p = params(SPQR_QM_RTN, bits, 32);
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &rtn, &err), &err);
        p.method = SPQR_QM_GPTQ;
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &gptq, &err), &err);
        p.act_order = 1;
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &gptq_ao, &err), &err);
        spqr_qparams sp = params(SPQR_QM_SPQR, bits, 16);
        sp.outlier_threshold = INFINITY;
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &sp, &spqr, &err), &err);
        if (!rtn.deq || !gptq.deq || !gptq_ao.deq || !spqr.deq) return;
        double e_rtn = out_err(W, rtn.deq, X, rows, cols, n), e_gptq = out_err(W, gptq.deq, X, rows, cols, n);
        double e_ao = out_err(W, gptq_ao.deq, X, rows, cols, n), e_spqr = out_err(W, spqr.deq, X, rows, cols, n);
        CHECKF(e_gptq < 0.9 * e_rtn, "w%d: GPTQ error %.4g is not below RTN's %.4g", bits, e_gptq, e_rtn);
        CHECKF(e_ao < 0.9 * e_rtn, "w%d: GPTQ act-order error %.4g vs RTN %.4g", bits, e_ao, e_rtn);
        CHECKF(e_spqr < e_gptq, "w%d: SpQR (β1 16, bilevel) error %.4g not below GPTQ g32's %.4g", bits, e_spqr, e_gptq);
        /* rel_err reported through H agrees with the direct measurement */
        double wx = 0;
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < n; t++) {
                double d = 0;
                for (int c = 0; c < cols; c++) d += (double)W[(size_t)r * cols + c] * X[(size_t)t * cols + c];
                wx += d * d;
            }
        CHECKF(fabs(gptq.rel_err - e_gptq / sqrt(wx)) < 1e-3 * gptq.rel_err + 1e-6, "rel_err %.6g vs direct %.6g", gptq.rel_err, e_gptq / sqrt(wx));
        spqr_qresult_free(&rtn);
        spqr_qresult_free(&gptq);
        spqr_qresult_free(&gptq_ao);
        spqr_qresult_free(&spqr);
    }
    free(W); free(X); free(H);
}

/* Outlier positions (original row, column) of a SpQR result. */
static int outlier_set(const spqr_qresult *r, uint8_t *mask) {
    spqr_qview v;
    spqr_error err;
    if (spqr_qview_init(&v, &r->entry, r->blob, r->entry.data_size, "test", &err) != SPQR_OK) return -1;
    memset(mask, 0, (size_t)v.rows * v.cols);
    for (uint32_t row = 0; row < v.rows; row++)
        for (uint32_t k = v.row_ptr[row]; k < v.row_ptr[row + 1]; k++) {
            uint32_t c = v.perm ? (uint32_t)v.perm[v.ocol[k]] : v.ocol[k];
            mask[(size_t)row * v.cols + c] = 1;
        }
    return (int)v.n_outliers;
}

static void test_spqr_outliers(void) {
    const int rows = 64, cols = 64, n = 300;
    float *W = malloc(rows * cols * sizeof *W), *X = malloc((size_t)n * cols * sizeof *X), *H = malloc(cols * cols * sizeof *H);
    for (int i = 0; i < rows * cols; i++) W[i] = 0.02f * gauss();
    int planted[12];
    for (int i = 0; i < 12; i++) {
        planted[i] = (int)(urand() * rows * cols);
        W[planted[i]] = (i % 2 ? 1 : -1) * 0.4f; /* 20 sigma */
    }
    make_inputs(n, cols, X, H);
    spqr_error err;
    uint8_t *mask = malloc(rows * cols);
    const double taus[] = {0.02, 0.1, 0.2, 1.0, 5.0, INFINITY};
    int counts[6];
    for (int t = 0; t < 6; t++) {
        spqr_qparams p = params(SPQR_QM_SPQR, 3, 16);
        p.outlier_threshold = taus[t];
        spqr_qresult r;
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &r, &err), &err);
        counts[t] = outlier_set(&r, mask);
        if (taus[t] == 0.2)
            for (int i = 0; i < 12; i++) CHECKF(mask[planted[i]], "planted outlier %d (index %d) not found at tau 0.2", i, planted[i]);
        spqr_qresult_free(&r);
    }
    for (int t = 1; t < 6; t++) CHECKF(counts[t] <= counts[t - 1], "outliers rise from %d to %d as tau goes %g -> %g", counts[t - 1], counts[t], taus[t - 1], taus[t]);
    CHECKF(counts[0] > counts[4], "outlier count %d at tau 0.02 should exceed %d at tau 5", counts[0], counts[4]);
    CHECK(counts[2] >= 12 && counts[5] == 0);
    /* without leave-one-out, a planted outlier sets its group's range, is quantized well and not
       flagged, while its 15 neighbours lose precision: the refit exists to prevent exactly this */
    spqr_qparams p = params(SPQR_QM_SPQR, 3, 16), ps = p;
    ps.simplified_outliers = 1;
    spqr_qresult loo, simple;
    CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &loo, &err), &err);
    CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &ps, &simple, &err), &err);
    int found = 0;
    outlier_set(&simple, mask);
    for (int i = 0; i < 12; i++) found += mask[planted[i]];
    CHECKF(found < 12, "the simplified detector flagged all planted outliers (%d)", found);
    CHECKF(loo.rel_err < simple.rel_err, "leave-one-out error %g is not below the simplified detector's %g", loo.rel_err, simple.rel_err);
    spqr_qresult_free(&loo);
    spqr_qresult_free(&simple);
    free(mask); free(W); free(X); free(H);
}

static void test_dead_columns_and_not_pd(void) {
    const int rows = 32, cols = 48, n = 200;
    float *W = malloc(rows * cols * sizeof *W), *X = malloc((size_t)n * cols * sizeof *X), *H = malloc(cols * cols * sizeof *H);
    for (int i = 0; i < rows * cols; i++) W[i] = 0.05f * gauss();
    make_inputs(n, cols, X, H);
    for (int c = 5; c < 9; c++) /* inputs 5..8 are always zero */
        for (int k = 0; k < cols; k++) H[c * cols + k] = H[k * cols + c] = 0;
    spqr_error err;
    for (int m = 0; m < 3; m++) {
        spqr_qparams p = params((spqr_qmethod)m, 3, 16);
        spqr_qresult r;
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &r, &err), &err);
        if (!r.deq) continue;
        for (int i = 0; i < rows * cols; i++) CHECK(isfinite(r.deq[i]));
        if (m != SPQR_QM_RTN) {
            CHECK(isfinite(r.rel_err) && r.rel_err < 0.5);
            for (int row = 0; row < rows; row++) CHECKF(fabsf(r.deq[row * cols + 6]) < 0.05f, "dead column weight %g", r.deq[row * cols + 6]);
        }
        spqr_qresult_free(&r);
    }
    /* an indefinite H: damping must grow until Cholesky succeeds, and say so */
    memset(H, 0, cols * cols * sizeof *H);
    for (int c = 0; c < cols; c++) H[c * cols + c] = c == 3 ? -20.0f : 1.0f;
    spqr_qparams p = params(SPQR_QM_GPTQ, 4, 16);
    p.percdamp = 0;
    spqr_qresult r;
    CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &r, &err), &err);
    CHECKF(r.percdamp_used > 1.0, "damping used %g", r.percdamp_used);
    spqr_qresult_free(&r);
    /* a nearly constant nonzero row with a tiny threshold (most weights become outliers): the
       statistics stay finite instead of overflowing fp16 */
    for (int c = 0; c < cols; c++) W[2 * cols + c] = 0.01f + 1e-9f * (float)(c % 3);
    make_inputs(n, cols, X, H);
    spqr_qparams sp = params(SPQR_QM_SPQR, 3, 16);
    sp.outlier_threshold = 1e-4;
    CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &sp, &r, &err), &err);
    for (int i = 0; r.deq && i < rows * cols; i++) CHECK(isfinite(r.deq[i]));
    spqr_qresult_free(&r);
    /* NaN input is refused */
    W[7] = NAN;
    CHECK(spqr_quantize_matrix(W, rows, cols, H, &p, &r, &err) == SPQR_E_ARG);
    free(W); free(X); free(H);
}

static void test_deterministic_ragged_and_bits(void) { /* and w1..w8 GPTQ layouts */
    const int rows = 37, cols = 50, n = 120; /* nothing divides: ragged groups and row blocks */
    float *W = malloc(rows * cols * sizeof *W), *X = malloc((size_t)n * cols * sizeof *X), *H = malloc(cols * cols * sizeof *H);
    for (int i = 0; i < rows * cols; i++) W[i] = 0.05f * gauss();
    make_inputs(n, cols, X, H);
    spqr_error err;
    spqr_qparams p = params(SPQR_QM_SPQR, 3, 16);
    spqr_qresult a, b;
    CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &a, &err), &err);
    CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &p, &b, &err), &err);
    CHECK(a.entry.data_size == b.entry.data_size && !memcmp(a.blob, b.blob, a.entry.data_size));
    CHECK(a.entry.groupsize == 16 && a.entry.qq_groupsize == 16);
    /* paper accounting: 3 + 6/16 + 64/256 = 3.625 plus 32 bits per outlier */
    spqr_file_tensor t = a.entry;
    t.n_outliers = 0;
    CHECK(fabs(spqr_bits_paper(&t) - 3.625) < 1e-12);
    t.n_outliers = rows * cols / 100;
    CHECK(fabs(spqr_bits_paper(&t) - (3.625 + 32.0 * (rows * cols / 100) / (rows * cols))) < 1e-12);
    spqr_qresult_free(&a);
    spqr_qresult_free(&b);
    /* GPTQ layout with w2..w8 all round-trip (the encoder verifies decode == its own values) */
    for (int bits = 1; bits <= 8; bits++) {
        spqr_qparams g = params(SPQR_QM_GPTQ, bits, 16);
        CHECK_OK(spqr_quantize_matrix(W, rows, cols, H, &g, &a, &err), &err);
        spqr_qresult_free(&a);
    }
    free(W); free(X); free(H);
}

/* ---- file round trip and hostile files ---------------------------------------------------------- */

static char qpath[512];

/* Quantizes stories260K with `method` (small calibration; head_bits > 0 quantizes the tied
 * embedding/head too) to qpath; returns the in-memory model. */
static spqr_model *quantize_stories_threads(spqr_method method, int head_bits, int n_threads) {
    spqr_model *m;
    spqr_error err;
    if (spqr_model_load(th_asset("models/stories260K/stories260K.bin"), NULL, &m, &err) != SPQR_OK) {
        th_fail(__FILE__, __LINE__, "%s", err.msg);
        return NULL;
    }
    spqr_quant_opts o = spqr_quant_defaults(method);
    const char *calib[] = {th_asset("text/tiny-shakespeare.txt")};
    char c0[1024];
    snprintf(c0, sizeof c0, "%s", calib[0]);
    const char *files[] = {c0};
    o.calib_files = files;
    o.n_calib_files = 1;
    o.nsamples = 8;
    o.seqlen = 128;
    o.n_threads = n_threads;
    o.wbits = 3;
    o.outlier_threshold = 0.1;
    o.head_bits = head_bits;
    snprintf(qpath, sizeof qpath, "%s/stories-%d-%d.spqr", th_tmpdir(), (int)method, head_bits);
    spqr_quant_summary s;
    if (spqr_quantize(m, qpath, &o, &s, &err) != SPQR_OK) {
        th_fail(__FILE__, __LINE__, "%s", err.msg);
        spqr_model_free(m);
        return NULL;
    }
    CHECK(s.quantized_weights == 5 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 172 * 64) + (head_bits ? 512 * 64 : 0));
    CHECK(s.file_bytes > 0 && s.bits_file > s.bits_paper - 1e-9);
    return m;
}

static spqr_model *quantize_stories_head(spqr_method method, int head_bits) { return quantize_stories_threads(method, head_bits, 2); }
static spqr_model *quantize_stories(spqr_method method) { return quantize_stories_head(method, 0); }

/* log softmax(logits)[id], in double. */
static double log_softmax_at(const float *logits, int n, int id) {
    double mx = logits[0], sum = 0;
    for (int i = 1; i < n; i++) mx = fmax(mx, logits[i]);
    for (int i = 0; i < n; i++) sum += exp(logits[i] - mx);
    return logits[id] - mx - log(sum);
}

static void test_file_roundtrip(void) {
    NEED_SHARED();
    for (int method = 0; method < 4; method++) { /* RTN, GPTQ, SpQR, SpQR with a 4-bit head */
        const int head = method == 3 ? 4 : 0;
        spqr_model *mem = quantize_stories_head(method == 3 ? SPQR_METHOD_SPQR : (spqr_method)method, head);
        if (!mem) return;
        spqr_model *f;
        spqr_error err;
        CHECK_OK(spqr_model_load(qpath, NULL, &f, &err), &err);
        if (!f) { spqr_model_free(mem); return; }
        CHECK(spqr_model_tokenizer(f) && spqr_tokenizer_vocab_size(spqr_model_tokenizer(f)) == 512);
        CHECK(spqr_model_meta(f) && strstr(spqr_model_meta(f), "\"quantization\""));
        CHECK(f->cfg.dim == 64 && f->cfg.rope_style == SPQR_ROPE_INTERLEAVED && f->cfg.tied_embeddings);
        /* every quantized layer decodes bit-identically to what the encoder produced */
        int nq = 0;
        for (int l = 0; l < f->cfg.n_layers; l++) {
            const spqr_linear *a[7] = {&f->layers[l].wq, &f->layers[l].wk, &f->layers[l].wv, &f->layers[l].wo, &f->layers[l].w_gate, &f->layers[l].w_up, &f->layers[l].w_down};
            const spqr_linear *b[7] = {&mem->layers[l].wq, &mem->layers[l].wk, &mem->layers[l].wv, &mem->layers[l].wo, &mem->layers[l].w_gate, &mem->layers[l].w_up, &mem->layers[l].w_down};
            for (int k = 0; k < 7; k++) {
                CHECK(a[k]->q && !a[k]->w && b[k]->w);
                if (!a[k]->q || !b[k]->w) continue;
                float *d = malloc((size_t)a[k]->rows * a[k]->cols * sizeof *d);
                spqr_qview_dequant_rows(a[k]->q, 0, (uint32_t)a[k]->rows, 1, d);
                CHECKF(!memcmp(d, b[k]->w, (size_t)a[k]->rows * a[k]->cols * sizeof *d), "layer %d module %d differs after the round trip", l, k);
                free(d);
                nq++;
            }
        }
        CHECK(nq == 35);
        if (head) { /* the quantized tied head decodes to the encoder's, and so does each embedding row */
            CHECK(f->output.q && f->embed_q == f->output.q && !f->embed && !f->embed16 && mem->output.w == mem->embed);
            if (f->output.q && mem->embed) {
                float *d = malloc(512 * 64 * sizeof *d), row[64];
                spqr_qview_dequant_rows(f->output.q, 0, 512, 1, d);
                CHECK(!memcmp(d, mem->output.w, 512 * 64 * sizeof *d));
                spqr_model_embed_row(f, 407, row);
                CHECK(!memcmp(row, mem->embed + 407 * 64, sizeof row));
                free(d);
            }
        } else {
            CHECK(!f->output.q && f->output.h);
        }
        /* the loaded file runs: prefill (panel dequantization + sgemm) and decode (fused gemv on the
           tile or packed layout) agree. With a quantized head the logits also equal those of the
           in-memory model (without, the file keeps the llama2.c fp32 embedding in fp16). */
        const int32_t ids[] = {1, 403, 407, 261, 378, 429, 271, 400};
        float *pre = malloc(8 * 512 * sizeof *pre);
        spqr_ctx *c1, *c2;
        spqr_ctx_opts o8 = {.n_ctx = 8, .n_batch = 8, .n_threads = 2}, o1 = {.n_ctx = 8, .n_batch = 1, .n_threads = 2};
        CHECK_OK(spqr_ctx_new(f, &o8, &c1, &err), &err);
        CHECK_OK(spqr_ctx_new(f, &o1, &c2, &err), &err);
        CHECK_OK(spqr_ctx_forward(c1, ids, 8, 0, 1, &err), &err);
        memcpy(pre, spqr_ctx_logits(c1), 8 * 512 * sizeof *pre);
        double dmax = 0, mmax = 0;
        for (int p = 0; p < 8; p++) {
            CHECK_OK(spqr_ctx_forward(c2, ids + p, 1, p, 0, &err), &err);
            for (int v = 0; v < 512; v++) {
                dmax = fmax(dmax, fabs(spqr_ctx_logits(c2)[v] - pre[p * 512 + v]));
                mmax = fmax(mmax, fabs(pre[p * 512 + v]));
            }
        }
        CHECKF(dmax <= 1e-5 * mmax, "decode vs prefill logits of the .spqr differ by %g (max %g)", dmax, mmax);
        { /* the decode kernels of this CPU (tiles where built) against the generic reference: the
             log-likelihood of the 8 ids, one token at a time, within 1e-4 relative */
            setenv("SPQR_CPU", "generic", 1);
            spqr_model *g;
            CHECK_OK(spqr_model_load(qpath, NULL, &g, &err), &err);
            spqr_ctx *cg = NULL;
            if (g) CHECK_OK(spqr_ctx_new(g, &o1, &cg, &err), &err);
            unsetenv("SPQR_CPU");
            if (g && cg) {
                CHECK(strcmp(spqr_ctx_kernels(cg), "generic") == 0 && (!g->layers[0].wq.q || !g->layers[0].wq.qt));
                double nll_g = 0, nll_f = 0;
                for (int p = 0; p + 1 < 8; p++) {
                    CHECK_OK(spqr_ctx_forward(cg, ids + p, 1, p, 0, &err), &err);
                    CHECK_OK(spqr_ctx_forward(c2, ids + p, 1, p, 0, &err), &err);
                    nll_g -= log_softmax_at(spqr_ctx_logits(cg), 512, ids[p + 1]);
                    nll_f -= log_softmax_at(spqr_ctx_logits(c2), 512, ids[p + 1]);
                }
                CHECKF(fabs(nll_g - nll_f) <= 1e-4 * fabs(nll_g), "decode NLL %.9g (fast) vs %.9g (generic)", nll_f, nll_g);
                spqr_ctx_free(cg);
                spqr_model_free(g);
            }
        }
        if (head) {
            spqr_ctx *c3;
            CHECK_OK(spqr_ctx_new(mem, &o8, &c3, &err), &err);
            CHECK_OK(spqr_ctx_forward(c3, ids, 8, 0, 1, &err), &err);
            double d3 = 0;
            for (int e = 0; e < 8 * 512; e++) d3 = fmax(d3, fabs(spqr_ctx_logits(c3)[e] - pre[e]));
            CHECKF(d3 <= 1e-5 * mmax, "file vs in-memory logits differ by %g (max %g)", d3, mmax);
            spqr_ctx_free(c3);
        }
        free(pre);
        spqr_ctx_free(c1);
        spqr_ctx_free(c2);
        spqr_model_free(f);
        spqr_model_free(mem);
    }
}

static void test_file_deterministic(void) {
    NEED_SHARED();
    spqr_model *a = quantize_stories(SPQR_METHOD_SPQR);
    char p1[600];
    snprintf(p1, sizeof p1, "%s.first", qpath);
    CHECK(rename(qpath, p1) == 0);
    /* again on 3 threads with the generic fixed-order kernels (kernels/ordered.h) instead of this CPU's widest */
    setenv("SPQR_CPU", "generic", 1);
    spqr_model *b = quantize_stories_threads(SPQR_METHOD_SPQR, 0, 3);
    unsetenv("SPQR_CPU");
    char *x = NULL, *y = NULL;
    size_t nx = 0, ny = 0;
    spqr_error err;
    CHECK(spqr_read_file(p1, 1 << 26, &x, &nx, &err) == SPQR_OK && spqr_read_file(qpath, 1 << 26, &y, &ny, &err) == SPQR_OK);
    /* byte for byte: nothing in the file depends on the time of the run, the thread count or the ISA */
    CHECK(nx == ny && nx > 0 && !memcmp(x, y, nx));
    free(x); free(y);
    spqr_model_free(a);
    spqr_model_free(b);
}

/* Writes `len` bytes of `data` to path. */
static void put_file(const char *path, const void *data, size_t len) {
    FILE *fp = fopen(path, "wb");
    CHECK(fp && fwrite(data, 1, len, fp) == len);
    if (fp) fclose(fp);
}

static void expect_load_error(const char *path, const char *what) {
    spqr_model *m = NULL;
    spqr_error err = {0};
    spqr_status st = spqr_model_load(path, NULL, &m, &err);
    CHECKF(st != SPQR_OK && err.msg[0] && strstr(err.msg, path), "%s: load gave %s (%s)", what, spqr_status_str(st), err.msg);
    spqr_model_free(m);
}

/* Recomputes the directory's and the header's checksums after an edit; the directory is where the
 * unedited file `orig` has it, so that hostile header values are not trusted here. */
static void fix_crcs(uint8_t *d, const spqr_file_header *orig) {
    spqr_file_header h;
    memcpy(&h, d, sizeof h);
    h.dir_crc = (uint32_t)crc32(0, d + orig->dir_off, orig->n_tensors * (uInt)sizeof(spqr_file_tensor));
    memcpy(d, &h, sizeof h);
    h.header_crc = (uint32_t)crc32(0, d, offsetof(spqr_file_header, header_crc));
    memcpy(d, &h, sizeof h);
}

static void test_file_hostile(void) {
    NEED_SHARED();
    spqr_model *m = quantize_stories(SPQR_METHOD_SPQR);
    spqr_model_free(m);
    char *good;
    size_t n;
    spqr_error err;
    if (spqr_read_file(qpath, 1 << 26, &good, &n, &err) != SPQR_OK) { th_fail(__FILE__, __LINE__, "%s", err.msg); return; }
    char bad[600];
    snprintf(bad, sizeof bad, "%s/hostile.spqr", th_tmpdir());
    uint8_t *d = malloc(n);
    /* truncations */
    for (size_t cut = 0; cut < n; cut += cut < 256 ? 1 : 997) {
        put_file(bad, good, cut);
        expect_load_error(bad, "truncated");
    }
    /* one flipped byte anywhere: some checksum catches it */
    for (size_t pos = 0; pos < n; pos += 389) {
        memcpy(d, good, n);
        d[pos] ^= 0x5a;
        put_file(bad, d, n);
        expect_load_error(bad, "bit flip");
    }
    /* consistent checksums but hostile fields */
    spqr_file_header h;
    memcpy(&h, good, sizeof h);
    spqr_file_tensor t0;
    memcpy(&t0, good + h.dir_off, sizeof t0);
    struct { const char *what; size_t off; uint64_t val; int size; } edits[] = {
        {"version", offsetof(spqr_file_header, version), 99, 4},
        {"n_tensors huge", offsetof(spqr_file_header, n_tensors), 0xffffffffu, 4},
        {"meta past end", offsetof(spqr_file_header, meta_size), 1ull << 62, 8},
        {"dir past end", offsetof(spqr_file_header, dir_off), (uint64_t)n, 8},
        {"tensor data_off misaligned", h.dir_off + offsetof(spqr_file_tensor, data_off), t0.data_off + 4, 8},
        {"tensor data_off past end", h.dir_off + offsetof(spqr_file_tensor, data_off), UINT64_MAX - 63, 8},
        {"tensor size overflow", h.dir_off + offsetof(spqr_file_tensor, data_size), UINT64_MAX, 8},
        {"tensor kind unknown", h.dir_off + offsetof(spqr_file_tensor, kind), 77, 4},
        {"tensor shape huge", h.dir_off + offsetof(spqr_file_tensor, shape), 1ull << 62, 8},
        {"tensor unterminated name", h.dir_off + 95, 'x', 1},
        {"tensor empty name", h.dir_off, 0, 1},
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        memcpy(d, good, n);
        memcpy(d + edits[i].off, &edits[i].val, (size_t)edits[i].size);
        fix_crcs(d, &h);
        put_file(bad, d, n);
        expect_load_error(bad, edits[i].what);
    }
    /* a quantized blob whose contents lie (checksum recomputed): outlier pointers, permutation, qq stats */
    for (uint32_t i = 0; i < h.n_tensors; i++) {
        spqr_file_tensor t;
        memcpy(&t, good + h.dir_off + i * sizeof t, sizeof t);
        if (t.kind != SPQR_TK_SPQR) continue;
        spqr_qlayout lay;
        char why[160];
        CHECK(spqr_qlayout_compute(&t, &lay, why, sizeof why));
        const uint64_t targets[] = {lay.row_ptr + 4, lay.row_ptr + 4ull * t.shape[0], lay.perm, lay.qq + 2, lay.ocol};
        const uint32_t values[] = {0xffffffffu, 12345678u, 0x7fffffffu, 0x7c00u, 0xffffu};
        for (int e = 0; e < 5; e++) {
            if (targets[e] == UINT64_MAX || (e == 4 && !t.n_outliers)) continue;
            memcpy(d, good, n);
            memcpy(d + t.data_off + targets[e], &values[e], e == 3 || e == 4 ? 2 : 4);
            spqr_file_tensor tt = t;
            tt.data_crc = (uint32_t)crc32(0, d + t.data_off, (uInt)t.data_size);
            memcpy(d + h.dir_off + i * sizeof t, &tt, sizeof tt);
            fix_crcs(d, &h);
            put_file(bad, d, n);
            expect_load_error(bad, "lying blob");
        }
        break;
    }
    free(d);
    free(good);
}

const th_test suite_quant[] = {
    {"quant_gptq_beats_rtn_spqr_beats_gptq", test_gptq_beats_rtn},
    {"quant_spqr_planted_outliers_and_tau", test_spqr_outliers},
    {"quant_dead_columns_indefinite_h_nan", test_dead_columns_and_not_pd},
    {"quant_deterministic_ragged_bits", test_deterministic_ragged_and_bits},
    {"quant_file_roundtrip_bit_identical", test_file_roundtrip},
    {"quant_file_deterministic", test_file_deterministic},
    {"quant_file_hostile", test_file_hostile},
    {NULL, NULL},
};

/*
 * test_loaders.c — the model loaders: Hugging Face directories (config.json + single or sharded
 * safetensors in F32/F16/BF16), llama2.c checkpoints, recognition by content (suite_loaders), and
 * hostile files: every malformed, truncated, inconsistent or absurd input must fail cleanly with a
 * one-line message naming the file (suite_hostile; run under ASan/UBSan by `make test`).
 *
 * All synthetic inputs are written into th_tmpdir() by tests/testutil.c; they carry no tokenizer.
 * SPQR_TEST_SHOW_ERRORS=1 prints every expected error message (to review their wording).
 */
#include "harness.h"
#include "testutil.h"

#include "spqr.h"

#include <dirent.h>
#include <stddef.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ANY (-1) /* any status but SPQR_OK */

/* A non-NULL model pointer that spqr_model_load must overwrite with NULL on failure. */
static _Alignas(max_align_t) char junk_storage[64];
#define JUNK_MODEL ((spqr_model *)(void *)junk_storage)

static const spqr_load_opts NO_TOK = {.tokenizer_path = NULL, .no_tokenizer = 1};

/* ---- helpers ----------------------------------------------------------------------------------- */

static spqr_model *load_ok_at(const char *file, int line, const char *path) {
    spqr_model *m = NULL;
    spqr_error err = {0};
    spqr_status st = spqr_model_load(path, &NO_TOK, &m, &err);
    if (st != SPQR_OK || !m) {
        th_fail(file, line, "loading %s: %s: %s", path, spqr_status_str(st), err.msg);
        spqr_model_free(m);
        return NULL;
    }
    if (err.msg[0]) th_fail(file, line, "loading %s succeeded but left a message: %s", path, err.msg);
    return m;
}
#define LOAD_OK(path) load_ok_at(__FILE__, __LINE__, (path))

/* Loads `path` expecting failure. Returns NULL if it failed properly: status not OK (== want unless
 * want is ANY), *out NULL, err.code equal to the status, a non-empty one-line message holding every
 * needle. Otherwise a description of the problem. */
static const char *bad_failure(const char *path, int want, const char *const *needles, spqr_error *err) {
    static char why[1024];
    spqr_model *m = JUNK_MODEL; /* must be overwritten with NULL */
    memset(err, 0, sizeof *err);
    spqr_status st = spqr_model_load(path, &NO_TOK, &m, err);
    if (getenv("SPQR_TEST_SHOW_ERRORS")) printf("      [%s] %s\n", spqr_status_str(st), err->msg);
    if (st == SPQR_OK) {
        spqr_model_free(m);
        return "loaded, but should have failed";
    }
    if (m != NULL) return "failed but *out is not NULL";
    if (err->code != st) return "err.code differs from the returned status";
    if (want != ANY && st != (spqr_status)want) {
        snprintf(why, sizeof why, "status %s, expected %s", spqr_status_str(st), spqr_status_str((spqr_status)want));
        return why;
    }
    if (!err->msg[0]) return "empty error message";
    if (strchr(err->msg, '\n')) return "message has a newline";
    for (const char *const *n = needles; *n; n++)
        if (!strstr(err->msg, *n)) {
            snprintf(why, sizeof why, "message lacks \"%s\"", *n);
            return why;
        }
    return NULL;
}

static bool expect_fail_at(const char *file, int line, const char *path, int want, const char *const *needles) {
    spqr_error err;
    const char *why = bad_failure(path, want, needles, &err);
    if (why) th_fail(file, line, "%s: %s [%s: %s]", path, why, spqr_status_str(err.code), err.msg);
    return why == NULL;
}
/* EXPECT_FAIL(path, status or ANY, needle, ...): at least one needle (the file the message names). */
#define EXPECT_FAIL(path, want, ...) expect_fail_at(__FILE__, __LINE__, (path), (want), (const char *const[]){__VA_ARGS__, NULL})

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Copies file src to dst. */
static void copy_file(const char *src, const char *dst) {
    size_t n;
    unsigned char *d = tu_read_file(src, &n);
    CHECKF(d && tu_write_file(dst, d, n) == 0, "copy %s -> %s", src, dst);
    free(d);
}

/* Writes a spec's model into a fresh directory; returns the directory. */
static const char *make_hf(const char *tag, const tu_spec *s) {
    const char *dir = tu_newdir(tag);
    CHECKF(tu_write_hf(dir, s) == 0, "writing %s", dir);
    return dir;
}

/* The tiny model of the hostile tests: dim 8, hidden 8, 1 layer, 2 heads, 1 kv head, vocab 8, tied. */
static void tiny_spec(tu_spec *s) {
    tu_spec_default(s);
    s->dim = 8;
    s->hidden = 8;
    s->layers = 1;
    s->heads = 2;
    s->kv_heads = 1;
    s->vocab = 8;
    s->tied = 1;
}

static const int32_t TOKENS[6] = {1, 7, 3, 0, 5, 2};
#define N_TOKENS 6

/* Runs TOKENS as one batch (sgemm path), then one more token at position N_TOKENS (matvec path), on
 * one thread. Writes (N_TOKENS + 1) rows of vocab logits into a malloc'ed array (NULL on failure). */
static float *logits_of(const char *path, int *vocab_out) {
    spqr_model *m = LOAD_OK(path);
    if (!m) return NULL;
    const int V = spqr_model_config(m)->vocab_size;
    spqr_ctx_opts co = {.n_ctx = 16, .n_batch = 8, .n_threads = 1};
    spqr_ctx *c = NULL;
    spqr_error err = {0};
    float *out = NULL;
    CHECK_OK(spqr_ctx_new(m, &co, &c, &err), &err);
    if (c) {
        out = malloc(sizeof(float) * (size_t)V * (N_TOKENS + 1));
        CHECK_OK(spqr_ctx_forward(c, TOKENS, N_TOKENS, 0, 1, &err), &err);
        memcpy(out, spqr_ctx_logits(c), sizeof(float) * (size_t)V * N_TOKENS);
        const int32_t next = 4;
        CHECK_OK(spqr_ctx_forward(c, &next, 1, N_TOKENS, 0, &err), &err);
        memcpy(out + (size_t)V * N_TOKENS, spqr_ctx_logits(c), sizeof(float) * (size_t)V);
        int bad = 0;
        for (size_t i = 0; i < (size_t)V * (N_TOKENS + 1); i++) bad += !isfinite(out[i]);
        CHECKF(bad == 0, "%s: %d non-finite logits", path, bad);
    }
    spqr_ctx_free(c);
    spqr_model_free(m);
    *vocab_out = V;
    return out;
}

/* Checks that two models give bitwise identical logits. */
static void check_same_logits_at(const char *file, int line, const char *a, const char *b) {
    int va = 0, vb = 0;
    float *la = logits_of(a, &va), *lb = logits_of(b, &vb);
    if (la && lb) {
        if (va != vb) th_fail(file, line, "vocab %d vs %d", va, vb);
        else if (memcmp(la, lb, sizeof(float) * (size_t)va * (N_TOKENS + 1)) != 0)
            th_fail(file, line, "logits of %s and %s differ", a, b);
    } else {
        th_fail(file, line, "no logits for %s or %s", a, b);
    }
    free(la);
    free(lb);
}
#define CHECK_SAME_LOGITS(a, b) check_same_logits_at(__FILE__, __LINE__, (a), (b))

/* Checks the tensor table against the spec: names, order, dtype, shapes, byte counts, files. */
static void check_tensors(const spqr_model *m, const tu_spec *s) {
    tu_tensor ts[256];
    int n = tu_tensor_list(s, ts, 256);
    CHECKF(spqr_model_n_tensors(m) == n, "%d tensors, expected %d", spqr_model_n_tensors(m), n);
    int64_t params = 0;
    uint64_t esz = s->dtype == SPQR_DTYPE_F32 ? 4 : 2;
    for (int i = 0; i < n && i < spqr_model_n_tensors(m); i++) {
        spqr_tensor_info ti;
        CHECK(spqr_model_tensor_info(m, i, &ti) == SPQR_OK);
        CHECKF(!strcmp(ti.name, ts[i].name), "tensor %d is %s, expected %s", i, ti.name, ts[i].name);
        CHECKF(ti.dtype == s->dtype, "%s: dtype %s", ti.name, spqr_dtype_name(ti.dtype));
        CHECKF(ti.n_dims == ts[i].n_dims, "%s: %d dims", ti.name, ti.n_dims);
        for (int d = 0; d < ts[i].n_dims; d++)
            CHECKF(ti.shape[d] == ts[i].shape[d], "%s: dim %d is %lld, expected %lld", ti.name, d, (long long)ti.shape[d],
                   (long long)ts[i].shape[d]);
        CHECKF(ti.nbytes == (uint64_t)tu_tensor_numel(&ts[i]) * esz, "%s: %llu bytes", ti.name, (unsigned long long)ti.nbytes);
        CHECKF(ti.file && ends_with(ti.file, ".safetensors"), "%s: file %s", ti.name, ti.file ? ti.file : "(null)");
        params += tu_tensor_numel(&ts[i]);
    }
    CHECKF(spqr_model_n_params(m) == params, "n_params %lld, expected %lld", (long long)spqr_model_n_params(m), (long long)params);
}

/* Writes a spec, loads it and returns the model (NULL on failure). */
static spqr_model *spec_model(const char *tag, const tu_spec *s, const char **dir_out) {
    const char *dir = make_hf(tag, s);
    if (dir_out) *dir_out = dir;
    return LOAD_OK(dir);
}

/* ==== suite_loaders ============================================================================== */

static void test_hf_f32_untied(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *dir;
    spqr_model *m = spec_model("f32", &s, &dir);
    if (!m) return;
    const spqr_config *c = spqr_model_config(m);
    CHECK(!strcmp(c->arch, "LlamaForCausalLM"));
    CHECK(c->source == SPQR_SOURCE_HF);
    CHECK(c->dim == 16 && c->hidden_dim == 40 && c->n_layers == 2 && c->n_heads == 4 && c->n_kv_heads == 2);
    CHECK(c->head_dim == 4 && c->vocab_size == 48 && c->max_seq_len == 64);
    CHECK(c->norm_eps == 1e-5f);
    CHECK(c->rope_theta == 10000.0f); /* absent: the transformers default */
    CHECK(c->rope_style == SPQR_ROPE_HALF && c->rope_scaling == SPQR_ROPE_SCALING_NONE);
    CHECK(c->tied_embeddings == 0 && c->attn_bias == 0);
    CHECK(c->bos_id == -1 && c->eos_id == -1);
    CHECK(spqr_model_tokenizer(m) == NULL);
    CHECK(!strcmp(spqr_model_path(m), dir));
    check_tensors(m, &s);
    spqr_tensor_info ti;
    CHECK(spqr_model_tensor_info(m, 0, &ti) == SPQR_OK && !strcmp(ti.file, tu_cat(dir, "model.safetensors")));
    CHECK(spqr_model_tensor_info(m, -1, &ti) == SPQR_E_ARG);
    CHECK(spqr_model_tensor_info(m, spqr_model_n_tensors(m), &ti) == SPQR_E_ARG);
    spqr_model_free(m);
    int V;
    float *l = logits_of(dir, &V);
    CHECK(l != NULL);
    free(l);
}

static void test_hf_tied(void) {
    tu_spec s;
    tu_spec_default(&s);
    s.tied = 1;
    spqr_model *m = spec_model("tied", &s, NULL);
    if (!m) return;
    CHECK(spqr_model_config(m)->tied_embeddings == 1);
    check_tensors(m, &s); /* no lm_head.weight */
    for (int i = 0; i < spqr_model_n_tensors(m); i++) {
        spqr_tensor_info ti;
        spqr_model_tensor_info(m, i, &ti);
        CHECK(strcmp(ti.name, "lm_head.weight") != 0);
    }
    spqr_model_free(m);
}

/* F16 and BF16 hold exactly the F32 values: the fp32 views, hence the logits, are bitwise equal. */
static void test_hf_dtypes(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *f32 = make_hf("dt-f32", &s);
    spqr_dtype dts[2] = {SPQR_DTYPE_F16, SPQR_DTYPE_BF16};
    for (int k = 0; k < 2; k++) {
        s.dtype = dts[k];
        const char *dir;
        spqr_model *m = spec_model(k ? "dt-bf16" : "dt-f16", &s, &dir);
        if (!m) continue;
        check_tensors(m, &s);
        spqr_model_free(m);
        CHECK_SAME_LOGITS(f32, dir);
    }
}

/* A header length that is not a multiple of 4 leaves F32 data misaligned: it gets copied. */
static void test_hf_misaligned_f32(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *a = make_hf("aligned", &s);
    s.misalign = 1;
    const char *b = make_hf("misaligned", &s);
    CHECK_SAME_LOGITS(a, b);
}

static void test_hf_sharded(void) {
    for (int variant = 0; variant < 2; variant++) {
        tu_spec s;
        tu_spec_default(&s);
        if (variant) { s.tied = 1; s.dtype = SPQR_DTYPE_BF16; }
        const char *single = make_hf("single", &s);
        s.shards = 2;
        const char *sharded;
        spqr_model *m = spec_model("sharded", &s, &sharded);
        if (!m) continue;
        check_tensors(m, &s);
        int in1 = 0, in2 = 0;
        for (int i = 0; i < spqr_model_n_tensors(m); i++) {
            spqr_tensor_info ti;
            spqr_model_tensor_info(m, i, &ti);
            in1 += ends_with(ti.file, "/model-00001-of-00002.safetensors");
            in2 += ends_with(ti.file, "/model-00002-of-00002.safetensors");
        }
        CHECKF(in1 > 0 && in2 > 0 && in1 + in2 == spqr_model_n_tensors(m), "shard files: %d + %d", in1, in2);
        spqr_model_free(m);
        CHECK_SAME_LOGITS(single, sharded);
    }
}

static void test_open_paths(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *dir = make_hf("paths", &s);
    char buf[1024];
    const char *paths[4];
    paths[0] = dir;
    snprintf(buf, sizeof buf, "%s/", dir);
    paths[1] = buf;
    char cfg[1024], st[1024];
    snprintf(cfg, sizeof cfg, "%s", tu_cat(dir, "config.json"));
    snprintf(st, sizeof st, "%s", tu_cat(dir, "model.safetensors"));
    paths[2] = cfg;
    paths[3] = st;
    for (int i = 0; i < 4; i++) {
        spqr_model *m = LOAD_OK(paths[i]);
        if (!m) continue;
        CHECKF(spqr_model_n_tensors(m) == tu_tensor_list(&s, NULL, 0), "%s", paths[i]);
        CHECK(!strcmp(spqr_model_path(m), paths[i]));
        CHECK(spqr_model_config(m)->dim == 16);
        spqr_model_free(m);
    }
    /* sharded: by one of the shards and by the index */
    s.shards = 2;
    const char *sh = make_hf("paths-sharded", &s);
    const char *more[2] = {tu_cat(sh, "model-00002-of-00002.safetensors"), tu_cat(sh, "model.safetensors.index.json")};
    for (int i = 0; i < 2; i++) {
        spqr_model *m = LOAD_OK(more[i]);
        if (m) CHECK(spqr_model_n_tensors(m) == tu_tensor_list(&s, NULL, 0));
        spqr_model_free(m);
    }
    /* a relative path */
    char cwd[1024];
    if (getcwd(cwd, sizeof cwd) && chdir(dir) == 0) {
        spqr_model *m = LOAD_OK("model.safetensors");
        spqr_model_free(m);
        m = LOAD_OK(".");
        spqr_model_free(m);
        CHECK(chdir(cwd) == 0);
    }
}

static spqr_model *with_extra(const char *tag, const char *extra) {
    tu_spec s;
    tu_spec_default(&s);
    s.extra = extra;
    return spec_model(tag, &s, NULL);
}

static void test_rope_forms(void) {
    spqr_model *m = with_extra("rope-params", "\"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"default\"}");
    if (m) {
        const spqr_config *c = spqr_model_config(m);
        CHECK(c->rope_theta == 500000.0f && c->rope_scaling == SPQR_ROPE_SCALING_NONE && c->rope_factor == 1.0f);
    }
    spqr_model_free(m);
    m = with_extra("rope-top", "\"rope_theta\": 250000.0, \"rope_scaling\": null");
    if (m) {
        const spqr_config *c = spqr_model_config(m);
        CHECK(c->rope_theta == 250000.0f && c->rope_scaling == SPQR_ROPE_SCALING_NONE);
    }
    spqr_model_free(m);
    /* rope_parameters wins over a stale top-level rope_theta */
    m = with_extra("rope-both", "\"rope_theta\": 1.0, \"rope_parameters\": {\"rope_theta\": 20000.0}");
    if (m) CHECK(spqr_model_config(m)->rope_theta == 20000.0f);
    spqr_model_free(m);
}

static void test_rope_linear(void) {
    spqr_model *m = with_extra("lin-top", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 4.0}");
    if (m) {
        const spqr_config *c = spqr_model_config(m);
        CHECK(c->rope_scaling == SPQR_ROPE_SCALING_LINEAR && c->rope_factor == 4.0f && c->rope_theta == 10000.0f);
    }
    spqr_model_free(m);
    m = with_extra("lin-params", "\"rope_parameters\": {\"rope_type\": \"linear\", \"factor\": 2.0, \"rope_theta\": 40000.0}");
    if (m) {
        const spqr_config *c = spqr_model_config(m);
        CHECK(c->rope_scaling == SPQR_ROPE_SCALING_LINEAR && c->rope_factor == 2.0f && c->rope_theta == 40000.0f);
    }
    spqr_model_free(m);
}

static void check_llama3(const spqr_model *m) {
    const spqr_config *c = spqr_model_config(m);
    CHECK(c->rope_scaling == SPQR_ROPE_SCALING_LLAMA3);
    CHECK(c->rope_theta == 500000.0f && c->rope_factor == 8.0f);
    CHECK(c->rope_low_freq_factor == 1.0f && c->rope_high_freq_factor == 4.0f && c->rope_orig_max_pos == 8192);
}

static void test_rope_llama3(void) {
    spqr_model *m = with_extra("l3-top", "\"rope_theta\": 500000.0, \"rope_scaling\": {\"factor\": 8.0, \"low_freq_factor\": 1.0, "
                                         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}");
    if (m) check_llama3(m);
    spqr_model_free(m);
    tu_spec s;
    tu_spec_default(&s);
    s.extra = "\"rope_parameters\": {\"rope_theta\": 500000.0, \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
              "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}";
    const char *dir;
    m = spec_model("l3-params", &s, &dir);
    if (m) check_llama3(m);
    spqr_model_free(m);
    int V;
    float *l = logits_of(dir, &V); /* the scaled RoPE tables work */
    CHECK(l != NULL);
    free(l);
}

static void test_head_dim(void) {
    /* head_dim given and equal to dim / heads: same model as without it */
    tu_spec s;
    tu_spec_default(&s);
    const char *a = make_hf("hd-absent", &s);
    s.head_dim_in_config = 1;
    const char *b = make_hf("hd-present", &s);
    spqr_model *m = LOAD_OK(b);
    if (m) CHECK(spqr_model_config(m)->head_dim == 4);
    spqr_model_free(m);
    CHECK_SAME_LOGITS(a, b);
    /* head_dim different from dim / heads: q_proj is [heads*hd, dim] */
    tu_spec_default(&s);
    s.head_dim = 8;
    s.head_dim_in_config = 1;
    const char *dir;
    m = spec_model("hd-8", &s, &dir);
    if (m) {
        CHECK(spqr_model_config(m)->head_dim == 8);
        check_tensors(m, &s);
    }
    spqr_model_free(m);
    int V;
    float *l = logits_of(dir, &V);
    CHECK(l != NULL);
    free(l);
    /* hidden_size not a multiple of the heads is fine when head_dim is given */
    tu_spec_default(&s);
    s.dim = 20;
    s.heads = 3;
    s.kv_heads = 1;
    s.head_dim = 6;
    s.head_dim_in_config = 1;
    m = spec_model("hd-6", &s, &dir);
    if (m) {
        CHECK(spqr_model_config(m)->head_dim == 6 && spqr_model_config(m)->n_heads == 3);
        check_tensors(m, &s);
    }
    spqr_model_free(m);
    l = logits_of(dir, &V);
    CHECK(l != NULL);
    free(l);
}

static void test_qwen2(void) {
    tu_spec s;
    tu_spec_default(&s);
    s.arch = "Qwen2ForCausalLM";
    s.bias = 1;
    s.tied = 1;
    s.extra = "\"rope_theta\": 1000000.0, \"use_sliding_window\": false, \"sliding_window\": 32, \"bos_token_id\": 3, \"eos_token_id\": 4";
    const char *dir;
    spqr_model *m = spec_model("qwen2", &s, &dir);
    if (!m) return;
    const spqr_config *c = spqr_model_config(m);
    CHECK(!strcmp(c->arch, "Qwen2ForCausalLM"));
    CHECK(c->attn_bias == 1 && c->tied_embeddings == 1 && c->rope_theta == 1000000.0f);
    CHECK(c->bos_id == 3 && c->eos_id == 4);
    check_tensors(m, &s); /* q/k/v biases, no o_proj bias */
    spqr_model_free(m);
    int V;
    float *l = logits_of(dir, &V);
    CHECK(l != NULL);
    free(l);
    /* the biases matter: zeroing them out (a different model) changes the logits */
    tu_spec s2 = s;
    s2.bias = 0;
    s2.arch = NULL;
    const char *nob = make_hf("qwen2-nobias", &s2);
    int V2;
    float *l2 = logits_of(nob, &V2), *l1 = logits_of(dir, &V);
    if (l1 && l2) CHECK(memcmp(l1, l2, sizeof(float) * (size_t)V * (N_TOKENS + 1)) != 0);
    free(l1);
    free(l2);
}

static void test_llama_attention_bias(void) {
    tu_spec s;
    tu_spec_default(&s);
    s.bias = 1;
    s.extra = "\"attention_bias\": true";
    spqr_model *m = spec_model("llama-bias", &s, NULL);
    if (m) CHECK(spqr_model_config(m)->attn_bias == 1 && !strcmp(spqr_model_config(m)->arch, "LlamaForCausalLM"));
    spqr_model_free(m);
}

static void test_mistral(void) {
    tu_spec s;
    tu_spec_default(&s);
    s.arch = "MistralForCausalLM";
    s.extra = "\"rope_theta\": 1000000.0, \"sliding_window\": 4096, \"bos_token_id\": 1, \"eos_token_id\": [2, 5]";
    const char *dir;
    spqr_model *m = spec_model("mistral", &s, &dir);
    if (!m) return;
    const spqr_config *c = spqr_model_config(m);
    CHECK(!strcmp(c->arch, "MistralForCausalLM"));
    CHECK(c->rope_theta == 1000000.0f && c->attn_bias == 0 && c->tied_embeddings == 0);
    CHECK(c->bos_id == 1 && c->eos_id == 2);
    check_tensors(m, &s);
    spqr_model_free(m);
    /* sliding_window null (Mistral v0.2+) */
    s.extra = "\"sliding_window\": null";
    m = spec_model("mistral-nowin", &s, &dir);
    spqr_model_free(m);
    int V;
    float *l = logits_of(dir, &V);
    CHECK(l != NULL);
    free(l);
}

/* model_type alone (no architectures) names the architecture too. */
static void test_model_type_only(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *dir = make_hf("mtype", &s);
    size_t n;
    char *cfg = (char *)tu_read_file(tu_cat(dir, "config.json"), &n);
    if (!cfg) { CHECK(cfg != NULL); return; }
    char *c2 = tu_replace(cfg, "\"architectures\": [\"LlamaForCausalLM\"],", "");
    char *c3 = tu_replace(c2, "\"llama\"", "\"mistral\"");
    CHECK(tu_write_text(tu_cat(dir, "config.json"), c3) == 0);
    spqr_model *m = LOAD_OK(dir);
    if (m) CHECK(!strcmp(spqr_model_config(m)->arch, "MistralForCausalLM"));
    spqr_model_free(m);
    free(cfg);
    free(c2);
    free(c3);
}

/* Tensors the model does not use (rotary inv_freq buffers, ...) are listed but harmless. */
static void test_extra_tensor(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *dir = make_hf("extra", &s);
    tu_tensor ts[64];
    int n = tu_tensor_list(&s, ts, 64);
    float inv[2] = {1.0f, 0.01f};
    CHECK(tu_write_safetensors_ex(tu_cat(dir, "model.safetensors"), &s, ts, n,
                                  "\"model.rotary_emb.inv_freq\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", inv, 8) == 0);
    spqr_model *m = LOAD_OK(dir);
    if (m) {
        CHECK(spqr_model_n_tensors(m) == n + 1);
        spqr_tensor_info ti;
        CHECK(spqr_model_tensor_info(m, 0, &ti) == SPQR_OK && !strcmp(ti.name, "model.rotary_emb.inv_freq") && ti.nbytes == 8);
    }
    spqr_model_free(m);
}

static void test_stories260k(void) {
    NEED_SHARED();
    const char *path = th_asset("models/stories260K/stories260K.bin");
    char p[1024];
    snprintf(p, sizeof p, "%s", path);
    spqr_model *m = LOAD_OK(p);
    if (!m) return;
    const spqr_config *c = spqr_model_config(m);
    CHECK(!strcmp(c->arch, "llama2.c") && c->source == SPQR_SOURCE_LLAMA2C);
    CHECK(c->dim == 64 && c->hidden_dim == 172 && c->n_layers == 5 && c->n_heads == 8 && c->n_kv_heads == 4);
    CHECK(c->head_dim == 8 && c->vocab_size == 512 && c->max_seq_len == 512);
    CHECK(c->tied_embeddings == 1 && c->attn_bias == 0);
    CHECK(c->rope_style == SPQR_ROPE_INTERLEAVED && c->rope_theta == 10000.0f && c->rope_scaling == SPQR_ROPE_SCALING_NONE);
    CHECK(c->norm_eps == 1e-5f);
    CHECK(spqr_model_n_tensors(m) == 1 + 5 * 9 + 1);
    CHECKF(spqr_model_n_params(m) == 260032, "n_params %lld", (long long)spqr_model_n_params(m));
    spqr_tensor_info ti;
    CHECK(spqr_model_tensor_info(m, 0, &ti) == SPQR_OK && !strcmp(ti.name, "model.embed_tokens.weight") && ti.shape[0] == 512 &&
          ti.shape[1] == 64 && ti.dtype == SPQR_DTYPE_F32 && ti.nbytes == 512 * 64 * 4 && !strcmp(ti.file, p));
    bool has_wk = false, has_lm = false;
    for (int i = 0; i < spqr_model_n_tensors(m); i++) {
        spqr_model_tensor_info(m, i, &ti);
        if (!strcmp(ti.name, "model.layers.4.self_attn.k_proj.weight")) has_wk = ti.n_dims == 2 && ti.shape[0] == 32 && ti.shape[1] == 64;
        has_lm |= !strcmp(ti.name, "lm_head.weight");
    }
    CHECK(has_wk && !has_lm);
    spqr_model_free(m);
    int V;
    float *l = logits_of(p, &V);
    CHECK(l != NULL && V == 512);
    free(l);
}

static void test_llama2c_synthetic(void) {
    const char *dir = tu_newdir("l2c");
    tu_l2c h = {.dim = 16, .hidden = 24, .layers = 2, .heads = 4, .kv_heads = 2, .vocab = -32, .seq_len = 8};
    char untied[1024], tied[1024];
    snprintf(untied, sizeof untied, "%s", tu_cat(dir, "untied.bin"));
    snprintf(tied, sizeof tied, "%s", tu_cat(dir, "tied.bin"));
    CHECK(tu_write_llama2c(untied, &h, -1, 0) == 0);
    h.vocab = 32;
    CHECK(tu_write_llama2c(tied, &h, -1, 0) == 0);
    /* NULL opts: no tokenizer beside the checkpoint is not an error */
    spqr_model *m = NULL;
    spqr_error err = {0};
    CHECK_OK(spqr_model_load(untied, NULL, &m, &err), &err);
    if (m) {
        const spqr_config *c = spqr_model_config(m);
        CHECK(c->vocab_size == 32 && c->tied_embeddings == 0 && c->dim == 16 && c->head_dim == 4 && c->max_seq_len == 8);
        CHECK(spqr_model_tokenizer(m) == NULL);
        int n = spqr_model_n_tensors(m);
        CHECK(n == 1 + 2 * 9 + 1 + 1);
        spqr_tensor_info ti;
        CHECK(spqr_model_tensor_info(m, n - 1, &ti) == SPQR_OK && !strcmp(ti.name, "lm_head.weight") && ti.n_dims == 2 &&
              ti.shape[0] == 32 && ti.shape[1] == 16 && ti.nbytes == 32 * 16 * 4);
        /* embed + 2 x (2 norms + q 16x16 + k,v 8x16 + o 16x16 + 3 x 24x16) + final norm + lm_head */
        CHECK(spqr_model_n_params(m) == 512 + 2 * (32 + 256 + 256 + 256 + 1152) + 16 + 512);
    }
    spqr_model_free(m);
    m = LOAD_OK(tied);
    if (m) {
        CHECK(spqr_model_config(m)->tied_embeddings == 1);
        CHECK(spqr_model_n_tensors(m) == 1 + 2 * 9 + 1);
    }
    spqr_model_free(m);
    int V;
    float *l = logits_of(untied, &V);
    CHECK(l != NULL && V == 32);
    free(l);
}

static void test_evalmodel(void) {
    NEED_SHARED();
    char p[1024];
    snprintf(p, sizeof p, "%s", th_asset("models/evalmodel"));
    spqr_model *m = LOAD_OK(p);
    if (!m) return;
    const spqr_config *c = spqr_model_config(m);
    CHECK(!strcmp(c->arch, "LlamaForCausalLM") && c->source == SPQR_SOURCE_HF);
    CHECK(c->dim == 512 && c->hidden_dim == 1536 && c->n_layers == 10 && c->n_heads == 8 && c->n_kv_heads == 4);
    CHECK(c->head_dim == 64 && c->vocab_size == 32000 && c->max_seq_len == 2048);
    CHECK(c->rope_theta == 10000.0f && c->rope_scaling == SPQR_ROPE_SCALING_NONE && c->rope_style == SPQR_ROPE_HALF);
    CHECK(c->norm_eps == 1e-5f && c->tied_embeddings == 1 && c->attn_bias == 0);
    CHECK(c->bos_id == 1 && c->eos_id == 2);
    CHECKF(spqr_model_n_params(m) == 47852032, "n_params %lld", (long long)spqr_model_n_params(m));
    CHECK(spqr_model_n_tensors(m) == 1 + 10 * 9 + 1);
    for (int i = 0; i < spqr_model_n_tensors(m); i++) {
        spqr_tensor_info ti;
        spqr_model_tensor_info(m, i, &ti);
        CHECKF(ti.dtype == SPQR_DTYPE_BF16, "%s is %s", ti.name, spqr_dtype_name(ti.dtype));
    }
    spqr_model_free(m);
}

static void test_gguf(void) {
    NEED_SHARED();
    char p[1024];
    snprintf(p, sizeof p, "%s", th_asset("models/llama2-tokenizer/vocab-only.gguf"));
    EXPECT_FAIL(p, SPQR_E_UNSUPPORTED, p, "GGUF");
}

static void test_not_a_model(void) {
    const char *dir = tu_newdir("nocfg");
    EXPECT_FAIL(dir, ANY, dir, "config.json");
    /* a directory with only a PyTorch checkpoint */
    tu_spec s;
    tu_spec_default(&s);
    const char *pt = tu_newdir("pt-dir");
    CHECK(tu_write_config(pt, &s) == 0);
    CHECK(tu_write_text(tu_cat(pt, "pytorch_model.bin"), "PK\003\004") == 0);
    EXPECT_FAIL(pt, ANY, pt, "safetensors");
    /* PyTorch files themselves: a zip archive, a bare pickle */
    char zip[1024], pkl[1024];
    snprintf(zip, sizeof zip, "%s", tu_cat(dir, "pytorch_model.bin"));
    snprintf(pkl, sizeof pkl, "%s", tu_cat(dir, "consolidated.00.pth"));
    static const char zipdata[] = "PK\003\004\024\000\000\000\000\000archive/data.pkl";
    static const char pkldata[] = "\200\002}q\000(X\004\000\000\000testq\001.";
    CHECK(tu_write_file(zip, zipdata, sizeof zipdata - 1) == 0);
    CHECK(tu_write_file(pkl, pkldata, sizeof pkldata - 1) == 0);
    EXPECT_FAIL(zip, SPQR_E_UNSUPPORTED, zip, "PyTorch");
    EXPECT_FAIL(pkl, SPQR_E_UNSUPPORTED, pkl, "pickle");
    /* llama2.c export versions 1/2 */
    char ak[1024];
    snprintf(ak, sizeof ak, "%s", tu_cat(dir, "v1.bin"));
    unsigned char v1[256] = {'4', '2', 'k', 'a', 1, 0, 0, 0};
    CHECK(tu_write_file(ak, v1, sizeof v1) == 0);
    EXPECT_FAIL(ak, SPQR_E_UNSUPPORTED, ak, "ak42");
    /* text, an empty file, a missing file, a device */
    char txt[1024], empty[1024], missing[1024];
    snprintf(txt, sizeof txt, "%s", tu_cat(dir, "notes.txt"));
    snprintf(empty, sizeof empty, "%s", tu_cat(dir, "empty.bin"));
    snprintf(missing, sizeof missing, "%s", tu_cat(dir, "missing.bin"));
    CHECK(tu_write_text(txt, "Once upon a time there was a model file that was not a model file.\n") == 0);
    CHECK(tu_write_file(empty, "", 0) == 0);
    EXPECT_FAIL(txt, SPQR_E_UNSUPPORTED, txt);
    EXPECT_FAIL(empty, ANY, empty);
    EXPECT_FAIL(missing, SPQR_E_IO, missing);
    EXPECT_FAIL("/dev/null", ANY, "/dev/null");
    /* a safetensors file or a JSON file whose directory has no config.json */
    tu_spec t;
    tu_spec_default(&t);
    const char *hf = make_hf("lone", &t);
    char lone[1024], lonejson[1024];
    snprintf(lone, sizeof lone, "%s", tu_cat(dir, "lone.safetensors"));
    snprintf(lonejson, sizeof lonejson, "%s", tu_cat(dir, "lone.json"));
    copy_file(tu_cat(hf, "model.safetensors"), lone);
    copy_file(tu_cat(hf, "config.json"), lonejson);
    EXPECT_FAIL(lone, SPQR_E_UNSUPPORTED, lone, "config.json");
    EXPECT_FAIL(lonejson, SPQR_E_UNSUPPORTED, lonejson, "config.json");
    /* arguments */
    spqr_model *m = JUNK_MODEL;
    spqr_error err = {0};
    CHECK(spqr_model_load(NULL, NULL, &m, &err) == SPQR_E_ARG && m == NULL && err.msg[0]);
    CHECK(spqr_model_load(dir, NULL, &m, NULL) != SPQR_OK && m == NULL); /* err may be NULL */
    spqr_model_free(NULL);
}

static void test_unsupported_arch(void) {
    tu_spec s;
    tu_spec_default(&s);
    s.arch = "GPT2LMHeadModel";
    s.model_type = "gpt2";
    const char *dir = make_hf("gpt2", &s);
    EXPECT_FAIL(dir, SPQR_E_UNSUPPORTED, tu_cat(dir, "config.json"), "GPT2LMHeadModel");
    /* no architectures, unknown model_type */
    size_t n;
    char *cfg = (char *)tu_read_file(tu_cat(dir, "config.json"), &n);
    if (!cfg) { CHECK(cfg != NULL); return; }
    char *c2 = tu_replace(cfg, "\"architectures\": [\"GPT2LMHeadModel\"],", "");
    CHECK(tu_write_text(tu_cat(dir, "config.json"), c2) == 0);
    EXPECT_FAIL(dir, SPQR_E_UNSUPPORTED, tu_cat(dir, "config.json"), "gpt2");
    free(cfg);
    free(c2);
}

static void test_unsupported_rope(void) {
    const char *types[3] = {"yarn", "dynamic", "longrope"};
    for (int k = 0; k < 3; k++) {
        char extra[256];
        snprintf(extra, sizeof extra, "\"rope_scaling\": {\"rope_type\": \"%s\", \"factor\": 4.0, \"original_max_position_embeddings\": 32}", types[k]);
        tu_spec s;
        tu_spec_default(&s);
        s.extra = extra;
        const char *dir = make_hf("rope-unsup", &s);
        EXPECT_FAIL(dir, SPQR_E_UNSUPPORTED, tu_cat(dir, "config.json"), types[k]);
    }
    tu_spec s;
    tu_spec_default(&s);
    s.extra = "\"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 4.0, \"rope_theta\": 10000.0}";
    const char *dir = make_hf("rope-unsup-p", &s);
    EXPECT_FAIL(dir, SPQR_E_UNSUPPORTED, tu_cat(dir, "config.json"), "yarn");
}

/* The tokenizer next to the model: tokenizer.json in HF directories, tokenizer.bin or tok<vocab>.bin
 * beside llama2.c checkpoints, or opts->tokenizer_path. */
static void test_tokenizer_discovery(void) {
    NEED_SHARED();
    char stories[1024], tok512[1024], evalm[1024];
    snprintf(stories, sizeof stories, "%s", th_asset("models/stories260K/stories260K.bin"));
    snprintf(tok512, sizeof tok512, "%s", th_asset("models/stories260K/tok512.bin"));
    snprintf(evalm, sizeof evalm, "%s", th_asset("models/evalmodel"));
    spqr_model *m = NULL;
    spqr_error err = {0};
    CHECK_OK(spqr_model_load(stories, NULL, &m, &err), &err); /* finds tok512.bin */
    if (m) {
        CHECK(spqr_model_tokenizer(m) != NULL && spqr_tokenizer_vocab_size(spqr_model_tokenizer(m)) == 512);
        CHECK(spqr_model_config(m)->bos_id == 1 && spqr_model_config(m)->eos_id == 2);
    }
    spqr_model_free(m);
    m = NULL;
    CHECK_OK(spqr_model_load(evalm, NULL, &m, &err), &err); /* finds tokenizer.json */
    if (m) CHECK(spqr_model_tokenizer(m) != NULL && spqr_tokenizer_vocab_size(spqr_model_tokenizer(m)) == 32000);
    spqr_model_free(m);
    /* a synthetic llama2.c model with an explicit tokenizer, and with tokenizer.bin beside it */
    const char *dir = tu_newdir("tokdisc");
    char small[1024], big[1024];
    snprintf(small, sizeof small, "%s", tu_cat(dir, "small.bin"));
    snprintf(big, sizeof big, "%s", tu_cat(dir, "big.bin"));
    tu_l2c h = {.dim = 8, .hidden = 16, .layers = 1, .heads = 2, .kv_heads = 2, .vocab = 512, .seq_len = 4};
    CHECK(tu_write_llama2c(big, &h, -1, 0) == 0);
    h.vocab = 32;
    CHECK(tu_write_llama2c(small, &h, -1, 0) == 0);
    spqr_load_opts o = {.tokenizer_path = tok512};
    m = NULL;
    CHECK_OK(spqr_model_load(big, &o, &m, &err), &err);
    if (m) CHECK(spqr_model_tokenizer(m) != NULL);
    spqr_model_free(m);
    m = LOAD_OK(big); /* no_tokenizer: none loaded */
    if (m) CHECK(spqr_model_tokenizer(m) == NULL);
    spqr_model_free(m);
    /* a tokenizer larger than the model's vocabulary is an error naming the tokenizer */
    m = JUNK_MODEL;
    CHECK(spqr_model_load(small, &o, &m, &err) == SPQR_E_FORMAT && m == NULL);
    CHECKF(strstr(err.msg, tok512) && strstr(err.msg, "512") && strstr(err.msg, "32"), "%s", err.msg);
    copy_file(tok512, tu_cat(dir, "tokenizer.bin"));
    CHECK(spqr_model_load(small, NULL, &m, &err) == SPQR_E_FORMAT && m == NULL);
    CHECKF(strstr(err.msg, "tokenizer.bin"), "%s", err.msg);
    /* an explicit tokenizer that does not exist */
    char missing[1024];
    snprintf(missing, sizeof missing, "%s", tu_cat(dir, "no-such-tokenizer.bin"));
    o.tokenizer_path = missing;
    CHECK(spqr_model_load(big, &o, &m, &err) != SPQR_OK && m == NULL);
    CHECKF(strstr(err.msg, missing), "%s", err.msg);
}

/* A JSON file that is not config.json or the index is refused, and a tokenizer.json says so. */
static void test_json_not_a_model(void) {
    NEED_SHARED();
    spqr_model *m = NULL;
    spqr_error err;
    CHECK(spqr_model_load(th_asset("models/evalmodel/tokenizer.json"), NULL, &m, &err) == SPQR_E_UNSUPPORTED);
    CHECK(strstr(err.msg, "tokenizer") && strstr(err.msg, "tokenizer.json"));
    spqr_model_free(m);
    CHECK_OK(spqr_model_load(th_asset("models/evalmodel/config.json"), &(spqr_load_opts){NULL, 1}, &m, &err), &err);
    spqr_model_free(m);
}

const th_test suite_loaders[] = {
    {"loaders_json_not_a_model", test_json_not_a_model},
    {"loaders_hf_f32_untied", test_hf_f32_untied},
    {"loaders_hf_tied", test_hf_tied},
    {"loaders_hf_f16_bf16_exact", test_hf_dtypes},
    {"loaders_hf_misaligned_f32", test_hf_misaligned_f32},
    {"loaders_hf_sharded_equals_single", test_hf_sharded},
    {"loaders_open_by_dir_config_or_safetensors", test_open_paths},
    {"loaders_rope_parameters_and_top_level", test_rope_forms},
    {"loaders_rope_linear", test_rope_linear},
    {"loaders_rope_llama3", test_rope_llama3},
    {"loaders_head_dim", test_head_dim},
    {"loaders_qwen2_biases", test_qwen2},
    {"loaders_llama_attention_bias", test_llama_attention_bias},
    {"loaders_mistral", test_mistral},
    {"loaders_model_type_only", test_model_type_only},
    {"loaders_extra_tensor_ignored", test_extra_tensor},
    {"loaders_llama2c_stories260k", test_stories260k},
    {"loaders_llama2c_synthetic", test_llama2c_synthetic},
    {"loaders_evalmodel", test_evalmodel},
    {"loaders_gguf_unsupported", test_gguf},
    {"loaders_not_a_model", test_not_a_model},
    {"loaders_unsupported_arch", test_unsupported_arch},
    {"loaders_unsupported_rope", test_unsupported_rope},
    {"loaders_tokenizer_discovery", test_tokenizer_discovery},
    {NULL, NULL},
};

/* ==== suite_hostile ============================================================================== */

/* A directory holding the tiny model's config.json (and its weights unless bare). */
static const char *tiny_dir(const char *tag, bool with_weights) {
    tu_spec s;
    tiny_spec(&s);
    const char *dir = tu_newdir(tag);
    CHECK((with_weights ? tu_write_hf(dir, &s) : tu_write_config(dir, &s)) == 0);
    return dir;
}

/* Writes the tiny model's safetensors with `extra` entries (and extra data first) into dir. */
static void tiny_st_extra(const char *dir, const char *extra, const void *data, size_t n) {
    tu_spec s;
    tiny_spec(&s);
    tu_tensor ts[32];
    int nt = tu_tensor_list(&s, ts, 32);
    CHECK(tu_write_safetensors_ex(tu_cat(dir, "model.safetensors"), &s, ts, nt, extra, data, n) == 0);
}

static void test_st_truncated(void) {
    const char *good = tiny_dir("trunc-good", true);
    spqr_model *m = LOAD_OK(good);
    spqr_model_free(m);
    size_t n;
    unsigned char *full = tu_read_file(tu_cat(good, "model.safetensors"), &n);
    if (!full) { CHECK(full != NULL); return; }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | full[i];
    CHECK(hl + 8 < n);
    const char *dir = tiny_dir("trunc", false);
    char st[1024];
    snprintf(st, sizeof st, "%s", tu_cat(dir, "model.safetensors"));
    int tried = 0, bad = 0;
    for (size_t cut = 0; cut < n; cut = cut < hl + 8 ? cut + 1 : cut + 7) {
        CHECK(tu_write_file(st, full, cut) == 0);
        spqr_error err;
        const char *why = bad_failure(dir, SPQR_E_FORMAT, (const char *const[]){st, NULL}, &err);
        if (why && bad++ < 5) th_fail(__FILE__, __LINE__, "cut at %zu of %zu: %s [%s]", cut, n, why, err.msg);
        tried++;
    }
    /* the last byte, and by the file's own path */
    CHECK(tu_write_file(st, full, n - 1) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st);
    EXPECT_FAIL(st, ANY, st);
    CHECKF(tried > 800, "only %d cuts", tried);
    free(full);
}

static void test_st_header_length(void) {
    const char *dir = tiny_dir("hlen", false);
    char st[1024];
    snprintf(st, sizeof st, "%s", tu_cat(dir, "model.safetensors"));
    const char *hdr = "{\"__metadata__\":{}}";
    uint64_t lens[6] = {strlen(hdr) + 1, 1000, (uint64_t)1 << 63, UINT64_MAX, UINT64_MAX - 7, 0};
    for (int i = 0; i < 6; i++) {
        CHECK(tu_write_st_raw_len(st, lens[i], hdr, NULL, 0) == 0);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, st);
    }
    /* a length shorter than the JSON: cut JSON */
    CHECK(tu_write_st_raw_len(st, 5, hdr, NULL, 0) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "JSON");
    /* a header over the 100 MiB limit, in a (sparse) file long enough to hold it */
    const uint64_t big = (100u << 20) + 8;
    CHECK(tu_write_st_raw_len(st, big, "{", NULL, 0) == 0);
    CHECK(truncate(st, (off_t)(big + 8)) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "100 MiB");
    CHECK(truncate(st, 0) == 0);
}

static void test_st_header_json(void) {
    const char *dir = tiny_dir("hjson", false);
    char st[1024];
    snprintf(st, sizeof st, "%s", tu_cat(dir, "model.safetensors"));
    static const char *const bad[] = {
        "not json at all", "{", "{\"a\":", "{\"a\":{\"dtype\":\"F32\"", "{} {}", "{\"a\":1,}", "{'a':1}",
        "{\"a\":\"\\x\"}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\001\"}", "{\"a\":01}", "{\"a\":1e}", "{\"a\":tru}", "\xef\xbb\xbf{}",
        "{\"a\":\"\xff\xfe\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(tu_write_st_raw(st, bad[i], NULL, 0) == 0);
        spqr_error err;
        const char *why = bad_failure(dir, SPQR_E_FORMAT, (const char *const[]){st, NULL}, &err);
        CHECKF(!why, "header %zu (%s): %s [%s]", i, bad[i], why, err.msg);
    }
    /* not an object */
    static const char *const notobj[] = {"[]", "[{\"dtype\":\"F32\"}]", "\"x\"", "42", "null", "true"};
    for (size_t i = 0; i < sizeof notobj / sizeof notobj[0]; i++) {
        CHECK(tu_write_st_raw(st, notobj[i], NULL, 0) == 0);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "object");
    }
    /* entries that are not tensor objects */
    static const char *const entries[] = {
        "\"t\":1", "\"t\":[]", "\"t\":{}", "\"t\":{\"dtype\":\"F32\"}", "\"t\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}",
        "\"t\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}", "\"t\":{\"dtype\":\"F32\",\"shape\":[1]}",
        "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":4}", "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}",
        "\"t\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}", "\"t\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}",
        "\"t\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}", "\"t\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]}",
        "\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
        "\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
    };
    const float four[1] = {1.0f};
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++) {
        tiny_st_extra(dir, entries[i], four, 4);
        spqr_error err;
        const char *why = bad_failure(dir, SPQR_E_FORMAT, (const char *const[]){st, NULL}, &err);
        CHECKF(!why, "entry %zu (%s): %s [%s]", i, entries[i], why, err.msg);
    }
    /* deep nesting must not blow the stack */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 16);
    if (deep) {
        size_t k = 0;
        deep[k++] = '{';
        memcpy(deep + k, "\"a\":", 4);
        k += 4;
        for (size_t i = 0; i < depth; i++) deep[k++] = '[';
        for (size_t i = 0; i < depth; i++) deep[k++] = ']';
        deep[k++] = '}';
        deep[k] = 0;
        CHECK(tu_write_st_raw(st, deep, NULL, 0) == 0);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, st);
        free(deep);
    }
    /* a page-sized file whose header JSON never closes: the parser must stop at the header's end */
    char *page = malloc(4096 - 8 + 1);
    if (page) {
        memset(page, ' ', 4096 - 8);
        memcpy(page, "{\"a\":\"", 6);
        page[4096 - 8] = 0;
        CHECK(tu_write_st_raw(st, page, NULL, 0) == 0);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, st);
        memset(page, '[', 4096 - 8);
        CHECK(tu_write_st_raw(st, page, NULL, 0) == 0);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, st);
        memset(page, ' ', 4096 - 8);
        memcpy(page, "{\"a\":12345", 10);
        CHECK(tu_write_st_raw(st, page, NULL, 0) == 0);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, st);
        free(page);
    }
}

/* Each hostile entry is added to an otherwise valid tiny model, so that wrongly accepting it would
 * make the load succeed. data: 32 bytes of 1.0f in front of the model's own data. */
typedef struct { const char *entry; int want; const char *needle; } hostile_entry;

static void run_entries(const char *tag, const hostile_entry *cases, size_t n) {
    const char *dir = tiny_dir(tag, false);
    char st[1024];
    snprintf(st, sizeof st, "%s", tu_cat(dir, "model.safetensors"));
    tiny_st_extra(dir, NULL, NULL, 0);
    spqr_model *m = LOAD_OK(dir); /* the baseline loads */
    spqr_model_free(m);
    float data[8];
    for (int i = 0; i < 8; i++) data[i] = 1.0f;
    for (size_t i = 0; i < n; i++) {
        tiny_st_extra(dir, cases[i].entry, data, sizeof data);
        spqr_error err;
        const char *why = bad_failure(dir, cases[i].want, (const char *const[]){st, cases[i].needle, NULL}, &err);
        CHECKF(!why, "case %zu (%s): %s [%s: %s]", i, cases[i].entry, why, spqr_status_str(err.code), err.msg);
    }
}

static void test_st_offsets(void) {
    static const hostile_entry cases[] = {
        /* the data section is 32 extra bytes + 472 floats of the model */
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[1000000,1000008]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[1912,1928]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0.0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8e0]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"0\",\"8\"]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[null,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,-8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551608,18446744073709551616]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551616]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551615,7]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[18446744073709551612,18446744073709551615]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e300]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999999999999999999999]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"data_offsets\":[0,99999]}", SPQR_E_FORMAT, "evil.x"},
    };
    run_entries("offsets", cases, sizeof cases / sizeof cases[0]);
}

static void test_st_shapes(void) {
    static const hostile_entry cases[] = {
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[-2,-1],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[-9223372036854775808],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[1099511627776,1099511627776],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2147483648,2147483648],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824,4],\"data_offsets\":[0,0]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,0]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[9223372036854775808],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[1073741824,1073741824],\"data_offsets\":[0,8]}", SPQR_E_FORMAT, "evil.x"},
        /* size from shape and dtype vs the offsets */
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,16]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0,4]}", SPQR_E_FORMAT, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}", SPQR_E_FORMAT, "evil.x"},
        /* dtypes */
        {"\"evil.x\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}", SPQR_E_UNSUPPORTED, "I8"},
        {"\"evil.x\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}", SPQR_E_UNSUPPORTED, "F64"},
        {"\"evil.x\":{\"dtype\":\"F8_E4M3\",\"shape\":[4],\"data_offsets\":[0,4]}", SPQR_E_UNSUPPORTED, "F8_E4M3"},
        {"\"evil.x\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}", SPQR_E_UNSUPPORTED, "f32"},
        {"\"evil.x\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}", ANY, "evil.x"},
        /* more than 4 dimensions */
        /* names and dtypes with line breaks must not break the one-line message */
        {"\"evil.x\\nsecond line\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}", SPQR_E_UNSUPPORTED, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"I8\\r\\n\",\"shape\":[4],\"data_offsets\":[0,4]}", SPQR_E_UNSUPPORTED, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,2],\"data_offsets\":[0,8]}", SPQR_E_UNSUPPORTED, "evil.x"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}",
         SPQR_E_UNSUPPORTED, "evil.x"},
    };
    run_entries("shapes", cases, sizeof cases / sizeof cases[0]);
}

static void test_st_overlap_duplicate(void) {
    static const hostile_entry cases[] = {
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"evil.y\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[8,24]}",
         SPQR_E_FORMAT, "overlap"},
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"evil.y\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}",
         SPQR_E_FORMAT, "overlap"},
        /* reaching into the model's first tensor */
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}", SPQR_E_FORMAT, "overlap"},
        /* a tensor inside another */
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},\"evil.y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}",
         SPQR_E_FORMAT, "overlap"},
        /* the same name twice in one header (JSON allows it; safetensors must not) */
        {"\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},\"evil.x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[16,32]}",
         SPQR_E_FORMAT, "evil.x"},
        {"\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}", SPQR_E_FORMAT, "model.norm.weight"},
    };
    run_entries("overlap", cases, sizeof cases / sizeof cases[0]);

    /* the same tensor in two shards */
    tu_spec s;
    tiny_spec(&s);
    s.shards = 2;
    const char *dir = tu_newdir("dup-shards");
    CHECK(tu_write_hf(dir, &s) == 0);
    spqr_model *m = LOAD_OK(dir);
    spqr_model_free(m);
    tu_tensor ts[32];
    int n = tu_tensor_list(&s, ts, 32), half = n / 2;
    float emb[64] = {0};
    char shard2[1024];
    snprintf(shard2, sizeof shard2, "%s", tu_cat(dir, "model-00002-of-00002.safetensors"));
    CHECK(tu_write_safetensors_ex(shard2, &s, ts + half, n - half,
                                  "\"model.embed_tokens.weight\":{\"dtype\":\"F32\",\"shape\":[8,8],\"data_offsets\":[0,256]}", emb, sizeof emb) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, shard2, "model.embed_tokens.weight");
}

static void test_nan_inf(void) {
    struct { spqr_dtype dt; const char *tensor; float v; const char *word; int tied; } cases[] = {
        {SPQR_DTYPE_F32, "model.layers.1.mlp.down_proj.weight", NAN, "NaN", 0},
        {SPQR_DTYPE_BF16, "model.layers.0.self_attn.k_proj.weight", NAN, "NaN", 0},
        {SPQR_DTYPE_F16, "model.embed_tokens.weight", NAN, "NaN", 1},
        {SPQR_DTYPE_F32, "lm_head.weight", INFINITY, "Inf", 0},
        {SPQR_DTYPE_BF16, "model.norm.weight", -INFINITY, "Inf", 0},
        {SPQR_DTYPE_F16, "model.layers.1.post_attention_layernorm.weight", INFINITY, "Inf", 0},
        {SPQR_DTYPE_F32, "model.layers.0.self_attn.q_proj.bias", -NAN, "NaN", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tu_spec s;
        tu_spec_default(&s);
        s.dtype = cases[i].dt;
        s.tied = cases[i].tied;
        s.poison = cases[i].tensor;
        s.poison_value = cases[i].v;
        s.poison_index = (int)(7 * i + 1) % 16;
        if (strstr(cases[i].tensor, "bias")) {
            s.bias = 1;
            s.arch = "Qwen2ForCausalLM";
        }
        s.shards = (int)(i % 2) + 1;
        const char *dir = make_hf("nan", &s);
        const char *file = tu_cat(dir, s.shards == 2 ? "model-0000" : "model.safetensors");
        EXPECT_FAIL(dir, SPQR_E_FORMAT, file, cases[i].tensor, cases[i].word);
    }
}

/* config.json variants of the tiny model: each replaces one fragment of the generated text. */
static void test_config(void) {
    const char *dir = tiny_dir("cfg", true);
    char cfgp[1024];
    snprintf(cfgp, sizeof cfgp, "%s", tu_cat(dir, "config.json"));
    size_t n;
    char *good = (char *)tu_read_file(cfgp, &n);
    if (!good) { CHECK(good != NULL); return; }
    spqr_model *m = LOAD_OK(dir);
    spqr_model_free(m);
    static const struct { const char *from, *to, *needle; } cases[] = {
        {"\"hidden_size\": 8,", "", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 0,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": -8,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 1000000000000,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 1e12,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 8.5,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": \"8\",", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": null,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 18446744073709551624,", "hidden_size"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 4294967304,", "hidden_size"},
        {"\"intermediate_size\": 8,", "\"intermediate_size\": 0,", "intermediate_size"},
        {"\"intermediate_size\": 8,", "\"intermediate_size\": 2147483648,", "intermediate_size"},
        {"\"num_hidden_layers\": 1,", "\"num_hidden_layers\": 0,", "num_hidden_layers"},
        {"\"num_hidden_layers\": 1,", "\"num_hidden_layers\": -1,", "num_hidden_layers"},
        {"\"num_hidden_layers\": 1,", "\"num_hidden_layers\": 1000000000000,", "num_hidden_layers"},
        {"\"num_attention_heads\": 2,", "\"num_attention_heads\": 0,", "num_attention_heads"},
        {"\"num_attention_heads\": 2,", "\"num_attention_heads\": -2,", "num_attention_heads"},
        {"\"num_key_value_heads\": 1,", "\"num_key_value_heads\": 0,", "num_key_value_heads"},
        {"\"vocab_size\": 8,", "\"vocab_size\": -8,", "vocab_size"},
        {"\"vocab_size\": 8,", "\"vocab_size\": 1e12,", "vocab_size"},
        {"\"max_position_embeddings\": 64,", "\"max_position_embeddings\": 0,", "max_position_embeddings"},
        {"\"max_position_embeddings\": 64,", "\"max_position_embeddings\": 1000000000000,", "max_position_embeddings"},
        {"\"rms_norm_eps\": 1e-05,", "\"rms_norm_eps\": -1e-05,", "rms_norm_eps"},
        {"\"rms_norm_eps\": 1e-05,", "\"rms_norm_eps\": 0,", "rms_norm_eps"},
        {"\"rms_norm_eps\": 1e-05,", "\"rms_norm_eps\": \"small\",", "rms_norm_eps"},
        {"\"rms_norm_eps\": 1e-05,", "\"rms_norm_eps\": 1e999,", "config.json"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_theta\": 0,", "rope_theta"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_theta\": -10000.0,", "rope_theta"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_theta\": 1e400,", "config.json"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_theta\": \"10000\",", "rope_theta"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_parameters\": 10000,", "rope_parameters"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_scaling\": \"linear\",", "rope_scaling"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_scaling\": {\"type\": \"linear\"},", "factor"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": 0},", "factor"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_scaling\": {\"type\": \"linear\", \"factor\": -2},", "factor"},
        {"\"rms_norm_eps\": 1e-05,",
         "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4},",
         "original_max_position_embeddings"},
        {"\"rms_norm_eps\": 1e-05,",
         "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4, "
         "\"original_max_position_embeddings\": 32},",
         "high_freq_factor"},
        {"\"rms_norm_eps\": 1e-05,",
         "\"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4, "
         "\"original_max_position_embeddings\": -32},",
         "original_max_position_embeddings"},
        /* heads */
        {"\"num_key_value_heads\": 1,", "\"num_key_value_heads\": 3,", "multiple"},
        {"\"num_attention_heads\": 2,", "\"num_attention_heads\": 3,", "num_attention_heads"},
        {"\"num_attention_heads\": 2,", "\"num_attention_heads\": 8,", "odd"},
        {"\"hidden_act\": \"silu\",", "\"head_dim\": 3,", "head_dim"},
        {"\"hidden_act\": \"silu\",", "\"head_dim\": 0,", "head_dim"},
        {"\"hidden_act\": \"silu\",", "\"head_dim\": -4,", "head_dim"},
        {"\"hidden_act\": \"silu\",", "\"head_dim\": 16777216,", "config.json"},
        /* unsupported features */
        {"\"hidden_act\": \"silu\",", "\"hidden_act\": \"gelu\",", "gelu"},
        {"\"hidden_act\": \"silu\",", "\"mlp_bias\": true,", "mlp_bias"},
        {"[\"LlamaForCausalLM\"]", "[\"LlamaForSequenceClassification\"]", "LlamaForSequenceClassification"},
        {"[\"LlamaForCausalLM\"]", "[\"Evil\\nForCausalLM\"]", "Evil"},
        {"\"hidden_act\": \"silu\",", "\"hidden_act\": \"ge\\nlu\",", "hidden_act"},
        {"\"rms_norm_eps\": 1e-05,", "\"rope_scaling\": {\"type\": \"ya\\rrn\", \"factor\": 2},", "ya"},
        /* not JSON / not an object */
        {"{", "", "JSON"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 8", "JSON"},
        {"\"hidden_size\": 8,", "\"hidden_size\": 08,", "JSON"},
        {"\"tie_word_embeddings\": true\n}", "\"tie_word_embeddings\": true\n}}", "JSON"},
        {"\"tie_word_embeddings\": true\n}", "\"tie_word_embeddings\": true\n},", "JSON"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = tu_replace(good, cases[i].from, cases[i].to);
        CHECK(tu_write_text(cfgp, text) == 0);
        spqr_error err;
        const char *why = bad_failure(dir, ANY, (const char *const[]){cfgp, cases[i].needle, NULL}, &err);
        CHECKF(!why, "config case %zu (%s): %s [%s: %s]", i, cases[i].to, why, spqr_status_str(err.code), err.msg);
        free(text);
    }
    /* whole-file cases */
    static const char *const whole[] = {"", "   ", "[]", "[{\"hidden_size\": 8}]", "null", "42", "\"config\"", "{}",
                                        "{\"architectures\": [\"LlamaForCausalLM\"]}"};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        CHECK(tu_write_text(cfgp, whole[i]) == 0);
        spqr_error err;
        const char *why = bad_failure(dir, ANY, (const char *const[]){cfgp, NULL}, &err);
        CHECKF(!why, "config \"%s\": %s [%s: %s]", whole[i], why, spqr_status_str(err.code), err.msg);
    }
    /* a config over the size limit (a huge JSON string) */
    size_t big = (2u << 20);
    char *huge = malloc(big + 64);
    if (huge) {
        memset(huge, 'a', big + 64);
        memcpy(huge, "{\"x\": \"", 7);
        memcpy(huge + big + 60, "\"}\n", 4);
        CHECK(tu_write_text(cfgp, huge) == 0);
        EXPECT_FAIL(dir, ANY, cfgp);
        free(huge);
    }
    /* config.json that is a directory (the model dir then has "no config.json" of use) */
    CHECK(remove(cfgp) == 0);
    CHECK(mkdir(cfgp, 0700) == 0);
    EXPECT_FAIL(dir, ANY, dir);
    CHECK(rmdir(cfgp) == 0);
    free(good);
}

static void test_shape_mismatch(void) {
    tu_spec s;
    tu_spec_default(&s);
    const char *dir = make_hf("shape", &s);
    /* intermediate 40 in the files, 48 in the config */
    tu_spec c = s;
    c.hidden = 48;
    CHECK(tu_write_config(dir, &c) == 0);
    char st[1024];
    snprintf(st, sizeof st, "%s", tu_cat(dir, "model.safetensors"));
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "model.layers.0.mlp.gate_proj.weight", "[40, 16]", "[48, 16]");
    /* vocab */
    c = s;
    c.vocab = 50;
    CHECK(tu_write_config(dir, &c) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "model.embed_tokens.weight", "[48, 16]", "[50, 16]");
    /* key/value heads */
    c = s;
    c.kv_heads = 4;
    CHECK(tu_write_config(dir, &c) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "model.layers.0.self_attn.k_proj.weight", "[8, 16]", "[16, 16]");
    /* head_dim */
    c = s;
    c.head_dim = 8;
    c.head_dim_in_config = 1;
    CHECK(tu_write_config(dir, &c) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, st, "model.layers.0.self_attn.q_proj.weight", "[16, 16]", "[32, 16]");
    /* more layers than the files hold */
    c = s;
    c.layers = 3;
    CHECK(tu_write_config(dir, &c) == 0);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, dir, "model.layers.2.", "missing");
    /* a 1-D tensor where a matrix is needed and the other way round, via a raw extra tensor */
    const char *d2 = tiny_dir("shape-dims", false);
    tu_spec t;
    tiny_spec(&t);
    tu_tensor ts[32];
    int n = tu_tensor_list(&t, ts, 32);
    for (int i = 0; i < n; i++)
        if (!strcmp(ts[i].name, "model.norm.weight")) { ts[i].n_dims = 2; ts[i].shape[0] = 8; ts[i].shape[1] = 1; }
    char st2[1024];
    snprintf(st2, sizeof st2, "%s", tu_cat(d2, "model.safetensors"));
    CHECK(tu_write_safetensors(st2, &t, ts, n) == 0);
    EXPECT_FAIL(d2, SPQR_E_FORMAT, st2, "model.norm.weight", "[8, 1]", "[8]");
    tu_tensor_list(&t, ts, 32);
    for (int i = 0; i < n; i++)
        if (!strcmp(ts[i].name, "model.layers.0.mlp.up_proj.weight")) { ts[i].n_dims = 1; ts[i].shape[0] = 64; ts[i].shape[1] = 0; }
    CHECK(tu_write_safetensors(st2, &t, ts, n) == 0);
    EXPECT_FAIL(d2, SPQR_E_FORMAT, st2, "model.layers.0.mlp.up_proj.weight", "[64]", "[8, 8]");
}

static void test_missing_tensor(void) {
    static const char *const omit[] = {"model.layers.1.self_attn.v_proj.weight", "lm_head.weight", "model.embed_tokens.weight",
                                       "model.norm.weight", "model.layers.0.input_layernorm.weight"};
    for (size_t i = 0; i < sizeof omit / sizeof omit[0]; i++) {
        tu_spec s;
        tu_spec_default(&s);
        s.omit = omit[i];
        s.shards = (int)(i % 2) + 1;
        const char *dir = make_hf("missing", &s);
        EXPECT_FAIL(dir, SPQR_E_FORMAT, dir, omit[i], "missing");
    }
    /* Qwen2 needs q/k/v biases */
    tu_spec s;
    tu_spec_default(&s);
    s.arch = "Qwen2ForCausalLM";
    const char *dir = make_hf("qwen-nobias", &s);
    EXPECT_FAIL(dir, SPQR_E_FORMAT, dir, "model.layers.0.self_attn.q_proj.bias");
    /* a directory with config.json but no weights */
    const char *bare = tiny_dir("noweights", false);
    EXPECT_FAIL(bare, ANY, bare, "model.safetensors");
}

static void test_index(void) {
    tu_spec s;
    tiny_spec(&s);
    s.shards = 2;
    const char *dir = tu_newdir("index");
    CHECK(tu_write_hf(dir, &s) == 0);
    spqr_model *m = LOAD_OK(dir);
    spqr_model_free(m);
    char ip[1024], sh1[1024];
    snprintf(ip, sizeof ip, "%s", tu_cat(dir, "model.safetensors.index.json"));
    snprintf(sh1, sizeof sh1, "%s", tu_cat(dir, "model-00001-of-00002.safetensors"));
    size_t n;
    char *good = (char *)tu_read_file(ip, &n);
    if (!good) { CHECK(good != NULL); return; }
    static const struct { const char *from, *to, *needle; } cases[] = {
        {"{", "", "JSON"},
        {"\"weight_map\"", "\"weights\"", "weight_map"},
        {"\"weight_map\": {", "\"weight_map\": [{", "JSON"},
        {"\"weight_map\": {", "\"weight_map\": 5, \"wm\": {", "weight_map"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
         "\"model.embed_tokens.weight\": \"../model-00001-of-00002.safetensors\"", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
         "\"model.embed_tokens.weight\": \"sub/model-00001-of-00002.safetensors\"", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed_tokens.weight\": \"..\"", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed_tokens.weight\": \".\"", "same directory"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed_tokens.weight\": \"/etc/passwd\"", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed_tokens.weight\": \"\"", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed_tokens.weight\": 1", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed_tokens.weight\": null", "model.embed_tokens.weight"},
        /* a shard that does not exist */
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
         "\"model.embed_tokens.weight\": \"model-00003-of-00002.safetensors\"", "model-00003-of-00002.safetensors"},
        /* a tensor listed but absent from its shard, or listed in the wrong shard */
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
         "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\", \"model.extra.weight\": \"model-00001-of-00002.safetensors\"",
         "model.extra.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
         "\"model.embed_tokens.weight\": \"model-00002-of-00002.safetensors\"", "model.embed_tokens.weight"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"",
         "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\", \"evil\\nname\": \"model-00001-of-00002.safetensors\"",
         "evil"},
        {"\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\"", "\"model.embed\\n\": \"a/b\"", "model.embed"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = tu_replace(good, cases[i].from, cases[i].to);
        CHECK(tu_write_text(ip, text) == 0);
        spqr_error err;
        const char *needle_file = strstr(cases[i].needle, "00003") ? dir : ip;
        const char *why = bad_failure(dir, ANY, (const char *const[]){needle_file, cases[i].needle, NULL}, &err);
        CHECKF(!why, "index case %zu (%s): %s [%s: %s]", i, cases[i].to, why, spqr_status_str(err.code), err.msg);
        free(text);
    }
    static const char *const whole[] = {"", "[]", "{}", "{\"weight_map\": {}}", "{\"weight_map\": null}", "null"};
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
        CHECK(tu_write_text(ip, whole[i]) == 0);
        spqr_error err;
        const char *why = bad_failure(dir, ANY, (const char *const[]){ip, NULL}, &err);
        CHECKF(!why, "index \"%s\": %s [%s: %s]", whole[i], why, spqr_status_str(err.code), err.msg);
    }
    /* a shard missing from the disk */
    CHECK(tu_write_text(ip, good) == 0);
    CHECK(remove(sh1) == 0);
    EXPECT_FAIL(dir, SPQR_E_IO, sh1);
    /* a shard that is a directory */
    CHECK(mkdir(sh1, 0700) == 0);
    EXPECT_FAIL(dir, ANY, sh1);
    CHECK(rmdir(sh1) == 0);
    free(good);
}

/* The tiny llama2.c checkpoint of the hostile tests. */
static const tu_l2c TINY_L2C = {.dim = 8, .hidden = 16, .layers = 1, .heads = 2, .kv_heads = 2, .vocab = 8, .seq_len = 4};

static void test_l2c_truncated(void) {
    const char *dir = tu_newdir("l2c-trunc");
    char good[1024], p[1024];
    snprintf(good, sizeof good, "%s", tu_cat(dir, "good.bin"));
    snprintf(p, sizeof p, "%s", tu_cat(dir, "cut.bin"));
    CHECK(tu_write_llama2c(good, &TINY_L2C, -1, 0) == 0);
    spqr_model *m = LOAD_OK(good);
    spqr_model_free(m);
    size_t n;
    unsigned char *full = tu_read_file(good, &n);
    if (!full) { CHECK(full != NULL); return; }
    CHECK(n == tu_l2c_size(&TINY_L2C));
    int bad = 0, tried = 0;
    for (size_t cut = 0; cut < n; cut = cut < 64 ? cut + 1 : cut + 5) {
        CHECK(tu_write_file(p, full, cut) == 0);
        spqr_error err;
        const char *why = bad_failure(p, ANY, (const char *const[]){p, NULL}, &err);
        if (why && bad++ < 5) th_fail(__FILE__, __LINE__, "cut at %zu of %zu: %s [%s]", cut, n, why, err.msg);
        tried++;
    }
    CHECK(tu_write_file(p, full, n - 1) == 0);
    EXPECT_FAIL(p, SPQR_E_FORMAT, p);
    /* one byte too many, and a whole extra float */
    unsigned char *more = calloc(1, n + 4);
    if (more) {
        memcpy(more, full, n);
        CHECK(tu_write_file(p, more, n + 1) == 0);
        EXPECT_FAIL(p, SPQR_E_FORMAT, p);
        CHECK(tu_write_file(p, more, n + 4) == 0);
        EXPECT_FAIL(p, SPQR_E_FORMAT, p);
        free(more);
    }
    CHECKF(tried > 100, "only %d cuts", tried);
    free(full);
}

static void test_l2c_header(void) {
    const char *dir = tu_newdir("l2c-hdr");
    char p[1024];
    snprintf(p, sizeof p, "%s", tu_cat(dir, "h.bin"));
    const int32_t base[7] = {TINY_L2C.dim, TINY_L2C.hidden, TINY_L2C.layers, TINY_L2C.heads, TINY_L2C.kv_heads, TINY_L2C.vocab, TINY_L2C.seq_len};
    const size_t payload = (size_t)tu_l2c_size(&TINY_L2C) - 28;
    /* each field zero, negative, absurd */
    const int32_t bad_vals[6] = {0, -1, -8, INT32_MIN, INT32_MAX, (1 << 24) + 2};
    for (int f = 0; f < 7; f++)
        for (int k = 0; k < 6; k++) {
            if (f == 5 && k == 2) continue; /* vocab -8: a valid untied header (then the size is wrong) */
            int32_t h[7];
            memcpy(h, base, sizeof h);
            h[f] = bad_vals[k];
            CHECK(tu_write_l2c_header(p, h, payload) == 0);
            spqr_error err;
            const char *why = bad_failure(p, ANY, (const char *const[]){p, NULL}, &err);
            CHECKF(!why, "field %d = %d: %s [%s]", f, h[f], why, err.msg);
        }
    /* products that overflow 32 bits (and would overflow 64 bits unchecked), with a small file */
    static const int32_t big[][7] = {
        {65536, 65536, 1024, 8, 8, 65536, 65536},
        {1 << 24, 1 << 24, 1024, 1 << 20, 1 << 20, 1 << 24, 1 << 24},
        {1 << 24, 1 << 24, 1024, 2, 2, -(1 << 24), 1 << 24},
        {46342, 92684, 3, 2, 1, 46342, 46342},
        {1 << 16, 1 << 16, 1, 1 << 15, 1 << 15, 1, 1},
    };
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        CHECK(tu_write_l2c_header(p, big[i], 4096) == 0);
        EXPECT_FAIL(p, ANY, p);
    }
    /* head structure */
    static const int32_t heads[][7] = {
        {10, 16, 1, 4, 4, 8, 4}, /* heads do not divide dim */
        {8, 16, 1, 2, 3, 8, 4},  /* kv heads > heads */
        {8, 16, 1, 4, 3, 8, 4},  /* kv heads do not divide heads */
        {6, 16, 1, 2, 2, 8, 4},  /* odd head size */
        {8, 16, 1, 16, 16, 8, 4}, /* more heads than dims */
    };
    for (size_t i = 0; i < sizeof heads / sizeof heads[0]; i++) {
        tu_l2c h = {heads[i][0], heads[i][1], heads[i][2], heads[i][3], heads[i][4], heads[i][5], heads[i][6]};
        uint64_t want = tu_l2c_size(&h);
        CHECK(tu_write_l2c_header(p, heads[i], want > 28 ? (size_t)want - 28 : 64) == 0);
        EXPECT_FAIL(p, ANY, p);
    }
}

static void test_l2c_nan(void) {
    const char *dir = tu_newdir("l2c-nan");
    char p[1024];
    snprintf(p, sizeof p, "%s", tu_cat(dir, "nan.bin"));
    /* float 0: the embedding; 64 + 8 = 72: wq of layer 0; the final norm sits just before freq_cis */
    const int dim = TINY_L2C.dim, V = TINY_L2C.vocab, hid = TINY_L2C.hidden;
    const int64_t final_norm = (int64_t)V * dim + dim + 4 * dim * dim + dim + 3 * hid * dim;
    struct { int64_t at; float v; const char *tensor, *word; } cases[] = {
        {0, NAN, "model.embed_tokens.weight", "NaN"},
        {(int64_t)V * dim + dim, NAN, "model.layers.0.self_attn.q_proj.weight", "NaN"},
        {(int64_t)V * dim + dim + 4 * dim * dim + dim + 5, INFINITY, "model.layers.0.mlp.gate_proj.weight", "Inf"},
        {final_norm + dim - 1, -INFINITY, "model.norm.weight", "Inf"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(tu_write_llama2c(p, &TINY_L2C, cases[i].at, cases[i].v) == 0);
        EXPECT_FAIL(p, SPQR_E_FORMAT, p, cases[i].tensor, cases[i].word);
    }
    /* in the untied classifier (the last tensor) */
    tu_l2c u = TINY_L2C;
    u.vocab = -V;
    const int64_t last = (int64_t)((tu_l2c_size(&u) - 28) / 4) - 1;
    CHECK(tu_write_llama2c(p, &u, last, NAN) == 0);
    EXPECT_FAIL(p, SPQR_E_FORMAT, p, "lm_head.weight", "NaN");
    /* the unused freq_cis tables are not weights: garbage there is harmless */
    CHECK(tu_write_llama2c(p, &TINY_L2C, final_norm + dim, NAN) == 0);
    spqr_model *m = LOAD_OK(p);
    spqr_model_free(m);
}

/* Failed loads leave no file descriptor and no mapping behind (ASan sees neither). */
static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

static int count_maps(const char *under) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) n += strstr(line, under) != NULL;
    fclose(f);
    return n;
}

static void test_no_leaked_fds_or_maps(void) {
    if (count_fds() < 0 || count_maps("x") < 0) SKIP("no /proc");
    const char *root = th_tmpdir();
    /* cases that fail after files were opened and mapped: a bad second shard, a NaN, a shape */
    tu_spec s;
    tiny_spec(&s);
    s.shards = 2;
    const char *d1 = tu_newdir("leak-shard");
    CHECK(tu_write_hf(d1, &s) == 0);
    CHECK(tu_write_st_raw(tu_cat(d1, "model-00002-of-00002.safetensors"), "{\"x\":", NULL, 0) == 0);
    tiny_spec(&s);
    s.poison = "model.norm.weight";
    s.poison_value = NAN;
    const char *d2 = tu_newdir("leak-nan");
    CHECK(tu_write_hf(d2, &s) == 0);
    const char *d3 = tu_newdir("leak-l2c");
    char l2c[1024];
    snprintf(l2c, sizeof l2c, "%s", tu_cat(d3, "x.bin"));
    CHECK(tu_write_llama2c(l2c, &TINY_L2C, 3, NAN) == 0);
    const char *d4 = tiny_dir("leak-ok", true);
    char paths[4][1024];
    snprintf(paths[0], sizeof paths[0], "%s", d1);
    snprintf(paths[1], sizeof paths[1], "%s", d2);
    snprintf(paths[2], sizeof paths[2], "%s", l2c);
    snprintf(paths[3], sizeof paths[3], "%s", d4);
    const int fds0 = count_fds(), maps0 = count_maps(root);
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < 4; i++) {
            spqr_model *m = NULL;
            spqr_error err;
            spqr_status st = spqr_model_load(paths[i], &NO_TOK, &m, &err);
            CHECKF((st == SPQR_OK) == (i == 3), "%s: %s", paths[i], err.msg);
            if (i == 3 && m) CHECK(count_maps(root) > maps0); /* the good model is mapped while loaded */
            spqr_model_free(m);
        }
    CHECKF(count_fds() == fds0, "%d open fds, %d before", count_fds(), fds0);
    CHECKF(count_maps(root) == maps0, "%d mappings under %s, %d before", count_maps(root), root, maps0);
}

const th_test suite_hostile[] = {
    {"hostile_safetensors_truncated", test_st_truncated},
    {"hostile_safetensors_header_length", test_st_header_length},
    {"hostile_safetensors_header_json", test_st_header_json},
    {"hostile_safetensors_data_offsets", test_st_offsets},
    {"hostile_safetensors_shapes_dtypes", test_st_shapes},
    {"hostile_safetensors_overlap_duplicate", test_st_overlap_duplicate},
    {"hostile_nan_inf_weights", test_nan_inf},
    {"hostile_config_json", test_config},
    {"hostile_shape_mismatch", test_shape_mismatch},
    {"hostile_missing_tensor", test_missing_tensor},
    {"hostile_index_json", test_index},
    {"hostile_llama2c_truncated", test_l2c_truncated},
    {"hostile_llama2c_header", test_l2c_header},
    {"hostile_llama2c_nan", test_l2c_nan},
    {"hostile_no_leaked_fds_or_maps", test_no_leaked_fds_or_maps},
    {NULL, NULL},
};

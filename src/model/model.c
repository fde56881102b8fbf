/*
 * model.c — spqr_model_load: recognises the input by content, runs the matching loader, binds the
 * fp32 weight views and finds the tokenizer. Also the tensor table and the public getters.
 */
#include "core/json.h"
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

bool spqr_llama2c_sniff(const uint8_t *data, uint64_t size, uint64_t *want, char *why, size_t cap);

const char *spqr_dtype_name(spqr_dtype t) {
    switch (t) {
    case SPQR_DTYPE_F32: return "F32";
    case SPQR_DTYPE_F16: return "F16";
    case SPQR_DTYPE_BF16: return "BF16";
    case SPQR_DTYPE_SPQR: return "SPQR";
    case SPQR_DTYPE_GPTQ: return "GPTQ";
    }
    return "?";
}

uint64_t spqr_dtype_size(spqr_dtype t) { return t == SPQR_DTYPE_F32 ? 4 : 2; } /* dense dtypes only */

/* ---- tensor table ------------------------------------------------------------------------------ */

static uint32_t name_hash(const char *s) { /* FNV-1a */
    uint32_t h = 2166136261u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static void index_insert(spqr_model *m, int32_t i) {
    uint32_t h = name_hash(m->tensors[i].name) & (m->index_cap - 1);
    while (m->index[h] >= 0) h = (h + 1) & (m->index_cap - 1);
    m->index[h] = i;
}

/* Doubles the hash index (at least 128 slots) and re-inserts every tensor. */
static bool index_grow(spqr_model *m) {
    uint32_t cap = m->index_cap ? 2 * m->index_cap : 128;
    int32_t *ix = malloc((size_t)cap * sizeof *ix);
    if (!ix) return false;
    memset(ix, 0xff, (size_t)cap * sizeof *ix);
    free(m->index);
    m->index = ix;
    m->index_cap = cap;
    for (int32_t i = 0; i < m->n_tensors; i++) index_insert(m, i);
    return true;
}

spqr_status spqr_model_add_map(spqr_model *m, const char *path, int *idx, spqr_error *err) {
    spqr_map *maps = realloc(m->maps, (size_t)(m->n_maps + 1) * sizeof *maps);
    if (!maps) return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path);
    m->maps = maps;
    spqr_status st = spqr_map_open(&maps[m->n_maps], path, err);
    if (st) return st;
    *idx = m->n_maps++;
    return SPQR_OK;
}

spqr_status spqr_model_add_tensor(spqr_model *m, const char *name, spqr_dtype dt, int n_dims, const int64_t *shape, int file,
                                  uint64_t offset, spqr_error *err) {
    const spqr_map *map = &m->maps[file];
    if (spqr_model_find(m, name)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s appears twice", map->path, name);
    if (n_dims < 0 || n_dims > SPQR_MAX_DIMS) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: tensor %s: %d dimensions", map->path, name, n_dims);
    uint64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (shape[d] < 0 || !spqr_mul_ok(n, (uint64_t)shape[d], &n) || n > (UINT64_MAX >> 3))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: shape overflows", map->path, name);
    }
    const bool dense = dt == SPQR_DTYPE_F32 || dt == SPQR_DTYPE_F16 || dt == SPQR_DTYPE_BF16;
    uint64_t nbytes = dense ? n * spqr_dtype_size(dt) : 0, end; /* quantized: set by the caller */
    if (!spqr_add_ok(offset, nbytes, &end) || end > map->size)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: %llu bytes at offset %llu run past the end of the file (%llu bytes)", map->path,
                            name, (unsigned long long)nbytes, (unsigned long long)offset, (unsigned long long)map->size);
    if (m->n_tensors >= SPQR_MAX_TENSORS) return spqr_set_err(err, SPQR_E_FORMAT, "%s: more than %d tensors", map->path, SPQR_MAX_TENSORS);
    if (m->n_tensors == m->cap_tensors) {
        int nc = m->cap_tensors ? 2 * m->cap_tensors : 64;
        spqr_tensor *t = realloc(m->tensors, (size_t)nc * sizeof *t);
        if (!t) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
        m->tensors = t;
        m->cap_tensors = nc;
    }
    if (2 * (uint32_t)(m->n_tensors + 1) > m->index_cap && !index_grow(m)) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    spqr_tensor *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    t->name = spqr_strdup(name);
    if (!t->name) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    t->dtype = dt;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->n_elem = n;
    t->nbytes = nbytes;
    t->data = map->data + offset;
    t->file = file;
    index_insert(m, m->n_tensors);
    m->n_tensors++;
    return SPQR_OK;
}

spqr_status spqr_model_add_qtensor(spqr_model *m, const spqr_file_tensor *t, int file, uint64_t offset, spqr_error *err) {
    const spqr_map *map = &m->maps[file];
    char what[200];
    snprintf(what, sizeof what, "%s: tensor %.96s", map->path, t->name);
    uint64_t end;
    if (!spqr_add_ok(offset, t->data_size, &end) || end > map->size)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: data runs past the end of the file", what);
    spqr_qview *q = calloc(1, sizeof *q);
    if (!q) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    spqr_status st = spqr_qview_init(q, t, map->data + offset, t->data_size, what, err);
    int64_t shape[2] = {(int64_t)t->shape[0], (int64_t)t->shape[1]};
    if (!st) st = spqr_model_add_tensor(m, t->name, (spqr_dtype)t->kind, 2, shape, file, offset, err);
    if (st) { free(q); return st; }
    spqr_tensor *tt = &m->tensors[m->n_tensors - 1];
    tt->nbytes = t->data_size;
    tt->q = q;
    return SPQR_OK;
}

const spqr_tensor *spqr_model_find(const spqr_model *m, const char *name) {
    if (!m->index_cap) return NULL;
    for (uint32_t h = name_hash(name) & (m->index_cap - 1);; h = (h + 1) & (m->index_cap - 1)) {
        int32_t i = m->index[h];
        if (i < 0) return NULL;
        if (!strcmp(m->tensors[i].name, name)) return &m->tensors[i];
    }
}

spqr_status spqr_config_check(const spqr_config *c, const char *path, spqr_error *err) {
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 || c->head_dim <= 0 ||
        c->vocab_size <= 0 || c->max_seq_len <= 0)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: config has a non-positive dimension", path);
    if (c->n_heads % c->n_kv_heads != 0)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: %d attention heads are not a multiple of %d key/value heads", path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2) return spqr_set_err(err, SPQR_E_FORMAT, "%s: head_dim %d is odd (RoPE needs pairs)", path, c->head_dim);
    if ((int64_t)c->n_heads * c->head_dim > SPQR_MAX_DIM) return spqr_set_err(err, SPQR_E_FORMAT, "%s: heads x head_dim is too large", path);
    if (!(c->norm_eps > 0) || !isfinite(c->rope_theta) || !(c->rope_theta > 0))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: rms_norm_eps and rope_theta must be positive", path);
    return SPQR_OK;
}

/* ---- fp32 views -------------------------------------------------------------------------------- */

/* Finds `name`, checks its shape is [d0] (d1 == 0) or [d0][d1], and returns an fp32 view: the mapped
 * data itself for aligned F32, else an owned converted copy. Rejects NaN/Inf. */
static spqr_status view_f32(spqr_model *m, const char *name, int64_t d0, int64_t d1, bool optional, const float **out, spqr_error *err) {
    *out = NULL;
    const spqr_tensor *t = spqr_model_find(m, name);
    if (!t) {
        if (optional) return SPQR_OK;
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s is missing", m->path, name);
    }
    const char *file = m->maps[t->file].path;
    if (t->q) return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s is quantized where a 16/32-bit tensor is needed", file, name);
    int want_dims = d1 ? 2 : 1;
    if (t->n_dims != want_dims || t->shape[0] != d0 || (d1 && t->shape[1] != d1)) {
        char got[96] = "", want[64];
        for (int d = 0; d < t->n_dims; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (d1) snprintf(want, sizeof want, "%lld, %lld", (long long)d0, (long long)d1);
        else snprintf(want, sizeof want, "%lld", (long long)d0);
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s has shape [%s], the config needs [%s]", file, name, got, want);
    }
    const uint64_t n = t->n_elem;
    const float *f;
    if (t->dtype == SPQR_DTYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        f = (const float *)t->data;
    } else {
        void **owned = realloc(m->owned, (size_t)(m->n_owned + 1) * sizeof *owned);
        if (!owned) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
        m->owned = owned;
        float *buf = spqr_aligned_alloc((size_t)n, sizeof(float));
        if (!buf) return spqr_set_err(err, SPQR_E_NOMEM, "%s: tensor %s: out of memory for %llu floats", file, name, (unsigned long long)n);
        m->owned[m->n_owned++] = buf;
        const uint8_t *src = t->data;
        if (t->dtype == SPQR_DTYPE_F32) {
            memcpy(buf, src, (size_t)n * 4);
        } else {
            for (uint64_t i = 0; i < n; i++) {
                uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
                buf[i] = t->dtype == SPQR_DTYPE_BF16 ? spqr_bf16_to_f32(h) : spqr_f16_to_f32(h);
            }
        }
        f = buf;
    }
    for (uint64_t i = 0; i < n; i++)
        if (!isfinite(f[i]))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: element %llu is %s", file, name, (unsigned long long)i, isnan(f[i]) ? "NaN" : "Inf");
    *out = f;
    return SPQR_OK;
}

/* A 16-bit 2-D tensor [d0][d1] used as it is (kept16 models): shape and NaN/Inf checked. Returns
 * false (not an error) when the tensor is not 16-bit or not 2-byte aligned. */
static bool view16(spqr_model *m, const spqr_tensor *t, int64_t d0, int64_t d1, const uint16_t **out, int *bf16, spqr_status *st, spqr_error *err) {
    if (!m->keep16 || !t || t->q || (t->dtype != SPQR_DTYPE_F16 && t->dtype != SPQR_DTYPE_BF16) || ((uintptr_t)t->data & 1)) return false;
    const char *file = m->maps[t->file].path;
    if (t->n_dims != 2 || t->shape[0] != d0 || t->shape[1] != d1) {
        *st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s has the wrong shape for [%lld, %lld]", file, t->name, (long long)d0, (long long)d1);
        return true;
    }
    const uint16_t *h = (const uint16_t *)t->data, expo = t->dtype == SPQR_DTYPE_BF16 ? 0x7f80 : 0x7c00;
    for (uint64_t i = 0; i < t->n_elem; i++)
        if ((h[i] & expo) == expo) {
            *st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: element %llu is NaN or Inf", file, t->name, (unsigned long long)i);
            return true;
        }
    *out = h;
    *bf16 = t->dtype == SPQR_DTYPE_BF16;
    *st = SPQR_OK;
    return true;
}

void spqr_model_embed_row(const spqr_model *m, int id, float *out) {
    const int dim = m->cfg.dim;
    if (m->embed) {
        memcpy(out, m->embed + (size_t)id * dim, (size_t)dim * sizeof(float));
        return;
    }
    if (m->embed_q) { /* a quantized (tied) embedding: decode the one row, in the original column order */
        spqr_qview_dequant_rows(m->embed_q, (uint32_t)id, (uint32_t)id + 1, 1, out);
        return;
    }
    const uint16_t *h = m->embed16 + (size_t)id * dim;
    for (int i = 0; i < dim; i++) out[i] = m->embed16_bf16 ? spqr_bf16_to_f32(h[i]) : spqr_f16_to_f32(h[i]);
}

/* A linear layer's weight [rows][cols]: quantized view, 16-bit view (kept16) or fp32 view. */
/* Layers that read the same input with equal act-order permutations (q/k/v and gate/up share a
 * Hessian, so their permutations are equal) point at one copy, so that one-token products prepare
 * the permuted activation once (matmul.c). The views are the model's own. */
static void share_perm(const spqr_linear *a, spqr_linear *b) {
    if (!a->q || !b->q || !a->q->perm || !b->q->perm || a->q->cols != b->q->cols) return;
    if (a->q->perm != b->q->perm && !memcmp(a->q->perm, b->q->perm, (size_t)a->q->cols * sizeof *a->q->perm))
        ((spqr_qview *)b->q)->perm = a->q->perm;
}

static spqr_status bind_linear(spqr_model *m, const char *name, int64_t rows, int64_t cols, spqr_linear *lin, spqr_error *err) {
    const spqr_tensor *t = spqr_model_find(m, name);
    memset(lin, 0, sizeof *lin);
    lin->rows = (int)rows;
    lin->cols = (int)cols;
    spqr_status st;
    if (view16(m, t, rows, cols, &lin->h, &lin->h_bf16, &st, err)) return st;
    if (t && t->q) {
        if ((int64_t)t->q->rows != rows || (int64_t)t->q->cols != cols)
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s has shape [%u, %u], the config needs [%lld, %lld]", m->maps[t->file].path,
                                name, t->q->rows, t->q->cols, (long long)rows, (long long)cols);
        lin->q = t->q;
        if (m->tiles && spqr_qtiles_supported(t->q)) {
            spqr_tensor *mt = &m->tensors[t - m->tensors];
            if (!mt->qt && !(mt->qt = spqr_qtiles_build(t->q))) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
            lin->qt = mt->qt;
        }
        return SPQR_OK;
    }
    return view_f32(m, name, rows, cols, false, &lin->w, err);
}

spqr_status spqr_model_bind(spqr_model *m, spqr_error *err) {
    const spqr_config *c = &m->cfg;
    m->tiles = spqr_cpu_select()->qgemv_tiles != NULL;
    const int64_t dim = c->dim, hid = c->hidden_dim, V = c->vocab_size;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    spqr_status st = SPQR_OK;
    const spqr_tensor *et = spqr_model_find(m, "model.embed_tokens.weight");
    spqr_linear embed_q;
    if (et && et->q) { /* quantized with the head (spqr quantize --head-bits) */
        if (!c->tied_embeddings) return spqr_set_err(err, SPQR_E_FORMAT, "%s: a quantized embedding needs tied embeddings", m->maps[et->file].path);
        if ((st = bind_linear(m, "model.embed_tokens.weight", V, dim, &embed_q, err))) return st;
        m->embed_q = embed_q.q;
    } else if (!view16(m, et, V, dim, &m->embed16, &m->embed16_bf16, &st, err) &&
               (st = view_f32(m, "model.embed_tokens.weight", V, dim, false, &m->embed, err))) {
        return st;
    }
    if (st || (st = view_f32(m, "model.norm.weight", dim, 0, false, &m->final_norm, err))) return st;
    if (m->embed_q) {
        m->output = embed_q;
    } else if (c->tied_embeddings) {
        m->output = (spqr_linear){.rows = (int)V, .cols = (int)dim, .w = m->embed, .h = m->embed16, .h_bf16 = m->embed16_bf16};
    } else if ((st = bind_linear(m, "lm_head.weight", V, dim, &m->output, err))) {
        return st;
    }
    m->layers = spqr_calloc_array((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    char name[160];
    for (int l = 0; l < c->n_layers; l++) {
        spqr_layer *ly = &m->layers[l];
#define VIEW(field, suffix, d0, d1, opt)                                              \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                 \
        if ((st = view_f32(m, name, d0, d1, opt, &ly->field, err))) return st;
#define LINEAR(field, suffix, d0, d1)                                                 \
        snprintf(name, sizeof name, "model.layers.%d.%s", l, suffix);                 \
        if ((st = bind_linear(m, name, d0, d1, &ly->field, err))) return st;
        VIEW(attn_norm, "input_layernorm.weight", dim, 0, false);
        VIEW(ffn_norm, "post_attention_layernorm.weight", dim, 0, false);
        LINEAR(wq, "self_attn.q_proj.weight", qd, dim);
        LINEAR(wk, "self_attn.k_proj.weight", kvd, dim);
        LINEAR(wv, "self_attn.v_proj.weight", kvd, dim);
        LINEAR(wo, "self_attn.o_proj.weight", dim, qd);
        LINEAR(w_gate, "mlp.gate_proj.weight", hid, dim);
        LINEAR(w_up, "mlp.up_proj.weight", hid, dim);
        LINEAR(w_down, "mlp.down_proj.weight", dim, hid);
        share_perm(&ly->wq, &ly->wk);
        share_perm(&ly->wq, &ly->wv);
        share_perm(&ly->w_gate, &ly->w_up);
        if (c->attn_bias) {
            VIEW(bq, "self_attn.q_proj.bias", qd, 0, false);
            VIEW(bk, "self_attn.k_proj.bias", kvd, 0, false);
            VIEW(bv, "self_attn.v_proj.bias", kvd, 0, false);
            VIEW(bo, "self_attn.o_proj.bias", dim, 0, true); /* Llama attention_bias has it, Qwen2 not */
        }
#undef VIEW
#undef LINEAR
    }
    return SPQR_OK;
}

/* ---- recognising the input --------------------------------------------------------------------- */

typedef enum { KIND_HF_DIR, KIND_LLAMA2C, KIND_SPQR } model_kind;

/* Decides what `path` is from its content. For HF inputs *dir gets the model directory (heap). */
static spqr_status sniff(const char *path, model_kind *kind, char **dir, spqr_error *err) {
    *dir = NULL;
    if (spqr_path_is_dir(path)) {
        char *cfg = spqr_path_join(path, "config.json");
        bool ok = cfg && spqr_path_exists(cfg);
        free(cfg);
        if (!ok) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: directory has no config.json (not a Hugging Face model directory)", path);
        *kind = KIND_HF_DIR;
        *dir = spqr_strdup(path);
        return *dir ? SPQR_OK : spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    }
    spqr_map map;
    spqr_status st = spqr_map_open(&map, path, err);
    if (st) return st;
    const uint8_t *d = map.data;
    const uint64_t n = map.size;
    uint64_t want = 0;
    char why[160] = "";
    const char *what = NULL; /* recognised but unsupported */
    bool hf_file = false, is_json = false;
    size_t k = 0;
    while (k < n && k < 4096 && (d[k] == ' ' || d[k] == '\n' || d[k] == '\r' || d[k] == '\t')) k++;
    bool spqr_file = spqr_file_sniff(d, n);
    if (n >= 4 && !memcmp(d, "GGUF", 4)) what = "GGUF is not supported yet";
    else if (n >= 4 && !memcmp(d, "PK\x03\x04", 4)) what = "a zip archive (PyTorch .pt/.bin checkpoint?) is not supported; use safetensors";
    else if (n >= 2 && d[0] == 0x80 && d[1] <= 5) what = "a Python pickle (PyTorch checkpoint?) is not supported; use safetensors";
    else if (n >= 4 && !memcmp(d, "42ka", 4)) what = "llama2.c export versions 1/2 (\"ak42\" magic) are not supported yet; use the legacy format";
    else if (k < n && d[k] == '{') hf_file = is_json = true; /* config.json or the index: the model is the directory */
    else if (n >= 9) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = (hl << 8) | d[i];
        if (hl >= 2 && hl <= n - 8 && d[8] == '{') hf_file = true; /* a safetensors file of a HF directory */
    }
    bool l2c = !what && !hf_file && !spqr_file && spqr_llama2c_sniff(d, n, &want, why, sizeof why);
    spqr_map_close(&map);
    if (spqr_file) { *kind = KIND_SPQR; return SPQR_OK; }
    if (what) return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: %s", path, what);
    if (is_json) { /* JSON: only config.json or the safetensors index stand for their directory */
        spqr_json *j;
        spqr_status js = spqr_json_read_file(path, 64u << 20, &j, err);
        if (js) return js;
        bool cfg_or_index = spqr_json_get(j, "architectures") || spqr_json_get(j, "model_type") || spqr_json_get(j, "weight_map");
        bool tokenizer = spqr_json_get(j, "model") && spqr_json_get(j, "added_tokens");
        spqr_json_free(j);
        if (!cfg_or_index)
            return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: %s", path,
                                tokenizer ? "this is a tokenizer (tokenizer.json), not a model; pass the model's directory"
                                          : "a JSON file that is neither a model config.json nor a safetensors index");
    }
    if (hf_file) {
        *dir = spqr_path_dir(path);
        char *cfg = *dir ? spqr_path_join(*dir, "config.json") : NULL;
        bool ok = cfg && spqr_path_exists(cfg);
        free(cfg);
        if (!ok) {
            free(*dir);
            *dir = NULL;
            return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: looks like JSON or safetensors, but its directory has no config.json", path);
        }
        *kind = KIND_HF_DIR;
        return SPQR_OK;
    }
    if (l2c) { *kind = KIND_LLAMA2C; return SPQR_OK; }
    return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: unrecognised model format (not a Hugging Face directory, safetensors, or llama2.c checkpoint: %s)", path, why);
}

/* The llama2.c tokenizer: explicit path, else tokenizer.bin, else tok<vocab>.bin beside the model. */
static char *find_llama2c_tokenizer(const char *model_path, int vocab) {
    char *dir = spqr_path_dir(model_path);
    if (!dir) return NULL;
    char name[64];
    char *p = spqr_path_join(dir, "tokenizer.bin");
    if (p && !spqr_path_exists(p)) {
        free(p);
        snprintf(name, sizeof name, "tok%d.bin", vocab);
        p = spqr_path_join(dir, name);
        if (p && !spqr_path_exists(p)) { free(p); p = NULL; }
    }
    free(dir);
    return p;
}

spqr_status spqr_model_load(const char *path, const spqr_load_opts *opts, spqr_model **out, spqr_error *err) {
    *out = NULL;
    if (!path) return spqr_set_err(err, SPQR_E_ARG, "no model path");
    spqr_load_opts o = {0};
    if (opts) o = *opts;
    spqr_model *m = calloc(1, sizeof *m);
    if (!m) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    m->path = spqr_strdup(path);
    model_kind kind = KIND_HF_DIR;
    char *dir = NULL, *tok_path = NULL;
    spqr_status st = m->path ? sniff(path, &kind, &dir, err) : spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    if (st) goto fail;
    st = kind == KIND_HF_DIR ? spqr_load_hf_dir(m, dir, err) : kind == KIND_LLAMA2C ? spqr_load_llama2c(m, path, err) : spqr_load_spqr_file(m, path, err);
    if (st) goto fail;
    if ((st = spqr_model_bind(m, err))) goto fail;
    if (o.no_tokenizer) {
        spqr_tokenizer_free(m->tok); /* a .spqr file carries its own */
        m->tok = NULL;
    } else if (kind != KIND_SPQR || o.tokenizer_path) {
        spqr_tokenizer_free(m->tok);
        m->tok = NULL;
        if (o.tokenizer_path) tok_path = spqr_strdup(o.tokenizer_path);
        else if (kind == KIND_HF_DIR) {
            tok_path = spqr_path_join(dir, "tokenizer.json");
            if (tok_path && !spqr_path_exists(tok_path)) { free(tok_path); tok_path = NULL; }
        } else tok_path = find_llama2c_tokenizer(path, m->cfg.vocab_size);
        if (tok_path) {
            if ((st = spqr_tokenizer_load(tok_path, &m->tok, err))) goto fail;
            if (spqr_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
                st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tokenizer has %d pieces but the model's vocabulary is %d", tok_path,
                                  spqr_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
                goto fail;
            }
            m->tok_path = tok_path;
            tok_path = NULL;
        }
    }
    if (m->tok) {
        if (m->cfg.bos_id < 0) m->cfg.bos_id = spqr_tokenizer_bos(m->tok);
        if (m->cfg.eos_id < 0) m->cfg.eos_id = spqr_tokenizer_eos(m->tok);
    }
    free(dir);
    free(tok_path);
    *out = m;
    return SPQR_OK;
fail:
    free(dir);
    free(tok_path);
    spqr_model_free(m);
    return st;
}

void spqr_model_free(spqr_model *m) {
    if (!m) return;
    spqr_tokenizer_free(m->tok);
    for (int i = 0; i < m->n_owned; i++) spqr_aligned_free(m->owned[i]);
    free(m->owned);
    for (int i = 0; i < m->n_tensors; i++) {
        free(m->tensors[i].name);
        free(m->tensors[i].q);
        spqr_qtiles_free(m->tensors[i].qt);
    }
    free(m->tensors);
    free(m->index);
    for (int i = 0; i < m->n_maps; i++) spqr_map_close(&m->maps[i]);
    free(m->maps);
    free(m->layers);
    free(m->path);
    free(m->tok_path);
    free(m->meta);
    free(m);
}

const spqr_config *spqr_model_config(const spqr_model *m) { return &m->cfg; }
const spqr_tokenizer *spqr_model_tokenizer(const spqr_model *m) { return m->tok; }
const char *spqr_model_meta(const spqr_model *m) { return m->meta; }

spqr_status spqr_model_quant_info(const spqr_model *m, spqr_quant_info *info) {
    if (!m->meta) return SPQR_E_ARG;
    *info = m->qinfo;
    return SPQR_OK;
}
const char *spqr_model_path(const spqr_model *m) { return m->path; }
int spqr_model_n_tensors(const spqr_model *m) { return m->n_tensors; }

spqr_status spqr_model_tensor_info(const spqr_model *m, int i, spqr_tensor_info *info) {
    if (i < 0 || i >= m->n_tensors) return SPQR_E_ARG;
    const spqr_tensor *t = &m->tensors[i];
    memset(info, 0, sizeof *info);
    info->name = t->name;
    info->dtype = t->dtype;
    info->n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims; d++) info->shape[d] = t->shape[d];
    info->nbytes = t->nbytes;
    info->file = m->maps[t->file].path;
    return SPQR_OK;
}

static int64_t linear_bytes(const spqr_linear *l) {
    if (l->qt) return (int64_t)spqr_qtiles_bytes(l->qt);
    if (l->q) return (int64_t)l->q->lay.size;
    return (int64_t)l->rows * l->cols * (l->h ? 2 : 4);
}

int64_t spqr_model_decode_bytes(const spqr_model *m) {
    int64_t b = linear_bytes(&m->output) + (int64_t)m->cfg.dim * (m->embed ? 4 : 2);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const spqr_layer *y = &m->layers[l];
        b += linear_bytes(&y->wq) + linear_bytes(&y->wk) + linear_bytes(&y->wv) + linear_bytes(&y->wo) + linear_bytes(&y->w_gate) +
             linear_bytes(&y->w_up) + linear_bytes(&y->w_down);
    }
    return b;
}

int64_t spqr_model_n_params(const spqr_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += (int64_t)m->tensors[i].n_elem;
    return n;
}

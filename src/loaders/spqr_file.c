/*
 * spqr_file.c — loads a .spqr container (format.h, docs/FORMAT.md), memory-mapped.
 * Checked before use: magic, version, the header's CRC, the file size, every section inside the
 * file with its CRC, the metadata as strict JSON with a complete config, every directory entry
 * (NUL-terminated unique names, known kinds, zero reserved bytes, 64-byte aligned blobs inside the
 * data area, blob CRC) and every quantized blob's internal consistency (spqr_qview_init).
 */
#include "core/json.h"
#include "format/format.h"
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define META_MAX (16u << 20)

bool spqr_file_sniff(const uint8_t *d, uint64_t n) { return n >= 8 && !memcmp(d, SPQR_FILE_MAGIC, 8); }

static bool all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i]) return false;
    return true;
}

/* Reads config member `key` as an int in [lo, hi]. */
static bool cfg_int(const spqr_json *c, const char *key, int lo, int hi, int *out) {
    int64_t v;
    if (!spqr_json_i64(spqr_json_get(c, key), &v) || v < lo || v > hi) return false;
    *out = (int)v;
    return true;
}

static bool cfg_float(const spqr_json *c, const char *key, float *out) {
    double v;
    if (!spqr_json_num(spqr_json_get(c, key), &v) || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

static bool cfg_bool(const spqr_json *c, const char *key, int *out) {
    const spqr_json *v = spqr_json_get(c, key);
    if (!v || v->type != SPQR_JSON_BOOL) return false;
    *out = v->boolean;
    return true;
}

static spqr_status parse_config(spqr_model *m, const spqr_json *c, const char *path, spqr_error *err) {
    spqr_config *k = &m->cfg;
    const char *arch = spqr_json_str(spqr_json_get(c, "arch")), *src = spqr_json_str(spqr_json_get(c, "source"));
    const char *style = spqr_json_str(spqr_json_get(c, "rope_style")), *scal = spqr_json_str(spqr_json_get(c, "rope_scaling"));
    const char *bad = NULL;
    if (!arch || strlen(arch) >= sizeof k->arch) bad = "arch";
    else if (!src || (strcmp(src, "hf") && strcmp(src, "llama2c"))) bad = "source";
    else if (!style || (strcmp(style, "half") && strcmp(style, "interleaved"))) bad = "rope_style";
    else if (!scal || (strcmp(scal, "none") && strcmp(scal, "linear") && strcmp(scal, "llama3"))) bad = "rope_scaling";
    else if (!cfg_int(c, "dim", 1, SPQR_MAX_DIM, &k->dim)) bad = "dim";
    else if (!cfg_int(c, "hidden_dim", 1, SPQR_MAX_DIM, &k->hidden_dim)) bad = "hidden_dim";
    else if (!cfg_int(c, "n_layers", 1, 1024, &k->n_layers)) bad = "n_layers";
    else if (!cfg_int(c, "n_heads", 1, 4096, &k->n_heads)) bad = "n_heads";
    else if (!cfg_int(c, "n_kv_heads", 1, 4096, &k->n_kv_heads)) bad = "n_kv_heads";
    else if (!cfg_int(c, "head_dim", 2, 65536, &k->head_dim)) bad = "head_dim";
    else if (!cfg_int(c, "vocab_size", 1, SPQR_MAX_DIM, &k->vocab_size)) bad = "vocab_size";
    else if (!cfg_int(c, "max_seq_len", 1, SPQR_MAX_DIM, &k->max_seq_len)) bad = "max_seq_len";
    else if (!cfg_float(c, "norm_eps", &k->norm_eps)) bad = "norm_eps";
    else if (!cfg_float(c, "rope_theta", &k->rope_theta)) bad = "rope_theta";
    else if (!cfg_float(c, "rope_factor", &k->rope_factor)) bad = "rope_factor";
    else if (!cfg_float(c, "rope_low_freq_factor", &k->rope_low_freq_factor)) bad = "rope_low_freq_factor";
    else if (!cfg_float(c, "rope_high_freq_factor", &k->rope_high_freq_factor)) bad = "rope_high_freq_factor";
    else if (!cfg_int(c, "rope_orig_max_pos", 0, SPQR_MAX_DIM, &k->rope_orig_max_pos)) bad = "rope_orig_max_pos";
    else if (!cfg_bool(c, "tied_embeddings", &k->tied_embeddings)) bad = "tied_embeddings";
    else if (!cfg_bool(c, "attn_bias", &k->attn_bias)) bad = "attn_bias";
    else if (!cfg_int(c, "bos_id", -1, SPQR_MAX_DIM, &k->bos_id)) bad = "bos_id";
    else if (!cfg_int(c, "eos_id", -1, SPQR_MAX_DIM, &k->eos_id)) bad = "eos_id";
    else if (!cfg_int(c, "sliding_window", 0, SPQR_MAX_DIM, &m->sliding_window)) bad = "sliding_window";
    if (bad) return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata config: %s is missing or invalid", path, bad);
    snprintf(k->arch, sizeof k->arch, "%s", arch);
    k->source = !strcmp(src, "llama2c") ? SPQR_SOURCE_LLAMA2C : SPQR_SOURCE_HF;
    k->rope_style = !strcmp(style, "interleaved") ? SPQR_ROPE_INTERLEAVED : SPQR_ROPE_HALF;
    k->rope_scaling = !strcmp(scal, "linear") ? SPQR_ROPE_SCALING_LINEAR : !strcmp(scal, "llama3") ? SPQR_ROPE_SCALING_LLAMA3 : SPQR_ROPE_SCALING_NONE;
    if (k->rope_scaling != SPQR_ROPE_SCALING_NONE && !(k->rope_factor > 0))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata config: rope_factor must be positive", path);
    if (k->rope_scaling == SPQR_ROPE_SCALING_LLAMA3 && (!(k->rope_high_freq_factor > k->rope_low_freq_factor) || k->rope_orig_max_pos < 1))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata config: llama3 RoPE parameters are inconsistent", path);
    if (k->bos_id >= k->vocab_size || k->eos_id >= k->vocab_size) return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata config: bos/eos id outside the vocabulary", path);
    return spqr_config_check(k, path, err);
}

/* The "quantization" object: method and hyper-parameters (informational; the tensors carry what
 * decoding needs). */
static spqr_status parse_quant(spqr_model *m, const spqr_json *q, const char *path, spqr_error *err) {
    spqr_quant_info *i = &m->qinfo;
    memset(i, 0, sizeof *i);
    const char *method = spqr_json_str(spqr_json_get(q, "method"));
    if (!method || strlen(method) >= sizeof i->method) return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata has no quantization method", path);
    snprintf(i->method, sizeof i->method, "%s", method);
    double v;
    if (!cfg_int(q, "wbits", 1, 8, &i->wbits)) i->wbits = 0;
    if (!cfg_int(q, "groupsize", 0, 1 << 24, &i->groupsize)) i->groupsize = 0;
    if (!cfg_int(q, "qq_bits", 0, 8, &i->qq_bits)) i->qq_bits = 0;
    if (!cfg_int(q, "qq_groupsize", 0, 1 << 24, &i->qq_groupsize)) i->qq_groupsize = 0;
    i->outlier_threshold = spqr_json_num(spqr_json_get(q, "outlier_threshold"), &v) ? v : INFINITY;
    const char *perm = spqr_json_str(spqr_json_get(q, "perm"));
    i->act_order = perm && !strcmp(perm, "act_order");
    i->percdamp = spqr_json_num(spqr_json_get(q, "percdamp"), &v) ? v : 0;
    const spqr_json *cal = spqr_json_get(q, "calibration");
    if (!cfg_int(cal, "nsamples", 0, 1 << 30, &i->nsamples)) i->nsamples = 0;
    if (!cfg_int(cal, "seqlen", 0, 1 << 30, &i->seqlen)) i->seqlen = 0;
    int64_t k;
    i->quantized_weights = spqr_json_i64(spqr_json_get(q, "quantized_weights"), &k) ? k : 0;
    i->n_outliers = spqr_json_i64(spqr_json_get(q, "outliers"), &k) ? k : 0;
    i->bits_paper = spqr_json_num(spqr_json_get(q, "bits_paper"), &v) ? v : 0;
    i->bits_file = spqr_json_num(spqr_json_get(q, "bits_file"), &v) ? v : 0;
    return SPQR_OK;
}

/* Checks [off, off + size) lies inside the file. */
static bool inside(uint64_t off, uint64_t size, uint64_t file) {
    uint64_t end;
    return spqr_add_ok(off, size, &end) && end <= file;
}

spqr_status spqr_load_spqr_file(spqr_model *m, const char *path, spqr_error *err) {
    int fi;
    spqr_status st = spqr_model_add_map(m, path, &fi, err);
    if (st) return st;
    const uint8_t *d = m->maps[fi].data;
    const uint64_t n = m->maps[fi].size;
    spqr_file_header h;
    if (n < sizeof h) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %llu bytes, shorter than a .spqr header", path, (unsigned long long)n);
    memcpy(&h, d, sizeof h);
    if (h.version != SPQR_FORMAT_VERSION)
        return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: .spqr format version %u; this build reads version %u", path, h.version, SPQR_FORMAT_VERSION);
    if (spqr_crc32(d, offsetof(spqr_file_header, header_crc)) != h.header_crc) return spqr_set_err(err, SPQR_E_FORMAT, "%s: header checksum mismatch", path);
    if (h.file_size != n)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: the header says %llu bytes, the file has %llu (truncated or extended)", path,
                            (unsigned long long)h.file_size, (unsigned long long)n);
    if (!all_zero(h.reserved, sizeof h.reserved)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: reserved header bytes are not zero", path);
    if (h.n_tensors > SPQR_MAX_TENSORS) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %u tensors", path, h.n_tensors);
    const uint64_t dir_size = (uint64_t)h.n_tensors * sizeof(spqr_file_tensor);
    if (h.meta_off < sizeof h || !inside(h.meta_off, h.meta_size, n) || h.meta_size > META_MAX || !inside(h.tok_off, h.tok_size, n) ||
        !inside(h.dir_off, dir_size, n) || h.dir_off % SPQR_ALIGN)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: a section (metadata, tokenizer or directory) lies outside the file", path);
    if (spqr_crc32(d + h.meta_off, h.meta_size) != h.meta_crc) return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata checksum mismatch", path);
    if (spqr_crc32(d + h.tok_off, h.tok_size) != h.tok_crc) return spqr_set_err(err, SPQR_E_FORMAT, "%s: tokenizer checksum mismatch", path);
    if (spqr_crc32(d + h.dir_off, dir_size) != h.dir_crc) return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor directory checksum mismatch", path);

    char jmsg[256];
    spqr_json *meta = spqr_json_parse((const char *)d + h.meta_off, (size_t)h.meta_size, jmsg, sizeof jmsg);
    if (!meta) return spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata is not valid JSON: %s", path, jmsg);
    const spqr_json *cfg = spqr_json_get(meta, "config");
    st = cfg && cfg->type == SPQR_JSON_OBJECT ? parse_config(m, cfg, path, err) : spqr_set_err(err, SPQR_E_FORMAT, "%s: metadata has no config object", path);
    if (!st) st = parse_quant(m, spqr_json_get(meta, "quantization"), path, err);
    spqr_json_free(meta);
    if (st) return st;
    m->meta = malloc((size_t)h.meta_size + 1);
    if (!m->meta) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    memcpy(m->meta, d + h.meta_off, (size_t)h.meta_size);
    m->meta[h.meta_size] = 0;
    if (h.tok_size) {
        char name[600];
        snprintf(name, sizeof name, "%s: embedded tokenizer", path);
        if ((st = spqr_tokenizer_load_memory(d + h.tok_off, (size_t)h.tok_size, name, &m->tok, err))) return st;
    }

    m->keep16 = 1; /* the 16-bit embedding and head run as they are stored */
    const uint64_t data_start = h.dir_off + dir_size;
    for (uint32_t i = 0; i < h.n_tensors; i++) {
        spqr_file_tensor t;
        memcpy(&t, d + h.dir_off + (uint64_t)i * sizeof t, sizeof t);
        if (!memchr(t.name, 0, sizeof t.name) || !t.name[0] || !all_zero((const uint8_t *)t.name + strlen(t.name), sizeof t.name - strlen(t.name)))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor #%u has an empty, unterminated or unpadded name", path, i);
        if (!all_zero(t.reserved, sizeof t.reserved)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: reserved bytes are not zero", path, t.name);
        if (t.data_off % SPQR_ALIGN || t.data_off < data_start || !inside(t.data_off, t.data_size, n))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: data [%llu, +%llu) is misaligned or outside the data area", path, t.name,
                                (unsigned long long)t.data_off, (unsigned long long)t.data_size);
        if (spqr_crc32(d + t.data_off, t.data_size) != t.data_crc) return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: checksum mismatch", path, t.name);
        if (t.kind == SPQR_TK_SPQR || t.kind == SPQR_TK_GPTQ) {
            if ((st = spqr_model_add_qtensor(m, &t, fi, t.data_off, err))) return st;
        } else if (t.kind == SPQR_TK_F32 || t.kind == SPQR_TK_F16 || t.kind == SPQR_TK_BF16) {
            if (t.n_dims < 1 || t.n_dims > 2 || t.shape[0] > (uint64_t)INT64_MAX || t.shape[1] > (uint64_t)INT64_MAX || (t.n_dims == 1 && t.shape[1] != 1))
                return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: bad dimensions", path, t.name);
            int64_t shape[2] = {(int64_t)t.shape[0], (int64_t)t.shape[1]};
            if ((st = spqr_model_add_tensor(m, t.name, (spqr_dtype)t.kind, (int)t.n_dims, shape, fi, t.data_off, err))) return st;
            if (m->tensors[m->n_tensors - 1].nbytes != t.data_size)
                return spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: %llu data bytes for a shape needing %llu", path, t.name,
                                    (unsigned long long)t.data_size, (unsigned long long)m->tensors[m->n_tensors - 1].nbytes);
        } else {
            return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: tensor %s: kind %u is not supported by this build", path, t.name, t.kind);
        }
    }
    return SPQR_OK;
}

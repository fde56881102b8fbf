/*
 * llama2.c.c — Karpathy's llama2.c legacy checkpoints (run.c's format), fp32, memory-mapped.
 *
 *   int32 dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len   (28 bytes)
 *   float token_embedding[vocab][dim]
 *   float rms_att[L][dim]
 *   float wq[L][n_heads*hs][dim], wk[L][n_kv*hs][dim], wv[L][n_kv*hs][dim], wo[L][dim][n_heads*hs]
 *   float rms_ffn[L][dim]
 *   float w1[L][hidden][dim], w2[L][dim][hidden], w3[L][hidden][dim]
 *   float rms_final[dim]
 *   float freq_cis_real[seq_len][hs/2], freq_cis_imag[seq_len][hs/2]   (unused: RoPE is computed)
 *   float wcls[vocab][dim]                                              (only if vocab_size < 0)
 *
 * hs = dim / n_heads. A negative vocab_size means the classifier is not shared with the embedding.
 * RoPE rotates adjacent pairs (2i, 2i+1). Tensors get the Hugging Face names so that one binder
 * serves both formats: w1 = gate_proj, w2 = down_proj, w3 = up_proj.
 */
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>

typedef struct { int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len; } l2c_header;

/* Checks the header's numbers for plausibility; fills *why on failure. */
static bool header_plausible(const l2c_header *h, char *why, size_t cap) {
    if (h->dim <= 0 || h->hidden <= 0 || h->layers <= 0 || h->heads <= 0 || h->kv_heads <= 0 || h->vocab == 0 || h->seq_len <= 0 ||
        h->vocab == INT32_MIN) {
        snprintf(why, cap, "header has a non-positive dimension");
        return false;
    }
    int32_t vocab = h->vocab < 0 ? -h->vocab : h->vocab; /* after the INT32_MIN check: no overflow */
    if (h->dim > SPQR_MAX_DIM || h->hidden > SPQR_MAX_DIM || h->layers > 1024 || vocab > SPQR_MAX_DIM || h->seq_len > SPQR_MAX_DIM) {
        snprintf(why, cap, "header dimensions are implausibly large");
        return false;
    }
    if (h->heads > h->dim || h->dim % h->heads != 0 || h->kv_heads > h->heads || h->heads % h->kv_heads != 0 || (h->dim / h->heads) % 2) {
        snprintf(why, cap, "heads (%d) and kv heads (%d) do not divide dim %d into even head sizes", h->heads, h->kv_heads, h->dim);
        return false;
    }
    return true;
}

/* Size in bytes the checkpoint must have; 0 on overflow (impossible under the bounds above). */
static uint64_t expected_size(const l2c_header *h) {
    uint64_t dim = (uint64_t)h->dim, hid = (uint64_t)h->hidden, L = (uint64_t)h->layers;
    uint64_t hs = dim / (uint64_t)h->heads, kv = hs * (uint64_t)h->kv_heads;
    uint64_t vocab = (uint64_t)(h->vocab < 0 ? -(int64_t)h->vocab : h->vocab);
    uint64_t floats = vocab * dim + L * dim + L * dim * dim + 2 * L * dim * kv + L * dim * dim + L * dim + 3 * L * dim * hid + dim +
                      (uint64_t)h->seq_len * hs;
    if (h->vocab < 0) floats += vocab * dim;
    return 28 + 4 * floats;
}

bool spqr_llama2c_sniff(const uint8_t *data, uint64_t size, uint64_t *want, char *why, size_t cap);
bool spqr_llama2c_sniff(const uint8_t *data, uint64_t size, uint64_t *want, char *why, size_t cap) {
    if (size < 28) { snprintf(why, cap, "too short"); return false; }
    l2c_header h;
    memcpy(&h, data, sizeof h);
    if (!header_plausible(&h, why, cap)) return false;
    *want = expected_size(&h);
    return true;
}

spqr_status spqr_load_llama2c(spqr_model *m, const char *path, spqr_error *err) {
    int fi;
    spqr_status st = spqr_model_add_map(m, path, &fi, err);
    if (st) return st;
    const spqr_map *map = &m->maps[fi];
    char why[160];
    uint64_t want;
    if (!spqr_llama2c_sniff(map->data, map->size, &want, why, sizeof why))
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: not a llama2.c checkpoint: %s", path, why);
    if (map->size != want)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama2.c header needs a file of %llu bytes, the file has %llu (truncated or not this format)",
                            path, (unsigned long long)want, (unsigned long long)map->size);
    l2c_header h;
    memcpy(&h, map->data, sizeof h);
    spqr_config *c = &m->cfg;
    snprintf(c->arch, sizeof c->arch, "llama2.c");
    c->source = SPQR_SOURCE_LLAMA2C;
    c->dim = h.dim;
    c->hidden_dim = h.hidden;
    c->n_layers = h.layers;
    c->n_heads = h.heads;
    c->n_kv_heads = h.kv_heads;
    c->head_dim = h.dim / h.heads;
    c->vocab_size = h.vocab < 0 ? -h.vocab : h.vocab;
    c->max_seq_len = h.seq_len;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->rope_style = SPQR_ROPE_INTERLEAVED;
    c->rope_scaling = SPQR_ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    c->tied_embeddings = h.vocab > 0;
    c->bos_id = 1;
    c->eos_id = 2;
    if ((st = spqr_config_check(c, path, err))) return st;

    const int64_t dim = h.dim, hid = h.hidden, L = h.layers, V = c->vocab_size;
    const int64_t qd = (int64_t)h.heads * c->head_dim, kvd = (int64_t)h.kv_heads * c->head_dim;
    uint64_t off = 28;
    char name[128];
    /* adds `count` consecutive tensors (one per layer when fmt has %d) of the given shape */
#define ADD(fmt, count, nd, d0, d1)                                                           \
    for (int64_t i_ = 0; i_ < (count); i_++) {                                                \
        int64_t shp_[2] = {(d0), (d1)};                                                       \
        snprintf(name, sizeof name, fmt, (int)i_);                                            \
        if ((st = spqr_model_add_tensor(m, name, SPQR_DTYPE_F32, nd, shp_, fi, off, err))) return st; \
        off += m->tensors[m->n_tensors - 1].nbytes;                                           \
    }
    ADD("model.embed_tokens.weight%.0d", 1, 2, V, dim);
    ADD("model.layers.%d.input_layernorm.weight", L, 1, dim, 0);
    ADD("model.layers.%d.self_attn.q_proj.weight", L, 2, qd, dim);
    ADD("model.layers.%d.self_attn.k_proj.weight", L, 2, kvd, dim);
    ADD("model.layers.%d.self_attn.v_proj.weight", L, 2, kvd, dim);
    ADD("model.layers.%d.self_attn.o_proj.weight", L, 2, dim, qd);
    ADD("model.layers.%d.post_attention_layernorm.weight", L, 1, dim, 0);
    ADD("model.layers.%d.mlp.gate_proj.weight", L, 2, hid, dim);
    ADD("model.layers.%d.mlp.down_proj.weight", L, 2, dim, hid);
    ADD("model.layers.%d.mlp.up_proj.weight", L, 2, hid, dim);
    ADD("model.norm.weight%.0d", 1, 1, dim, 0);
    off += 4 * (uint64_t)h.seq_len * (uint64_t)c->head_dim; /* freq_cis_real + freq_cis_imag */
    if (h.vocab < 0) ADD("lm_head.weight%.0d", 1, 2, V, dim);
#undef ADD
    if (off != map->size) return spqr_set_err(err, SPQR_E_FORMAT, "%s: internal layout mismatch (%llu of %llu bytes)", path, (unsigned long long)off, (unsigned long long)map->size);
    return SPQR_OK;
}

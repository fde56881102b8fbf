/*
 * hf.c — Hugging Face model directories: config.json plus model.safetensors or the shards listed in
 * model.safetensors.index.json.
 *
 * Accepted architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM. RoPE comes either
 * as top-level rope_theta/rope_scaling (older transformers) or as rope_parameters (newer).
 */
#include "core/json.h"
#include "model/model_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define CONFIG_MAX_BYTES (1u << 20)
#define INDEX_MAX_BYTES (64u << 20)

/* Reads an integer member into *out (must be in [lo, hi]); absent → def (if def_ok) else error. */
static spqr_status get_int(const spqr_json *cfg, const char *key, int def, bool required, int lo, int hi, int *out,
                           const char *path, spqr_error *err) {
    const spqr_json *v = spqr_json_get(cfg, key);
    if (!v || v->type == SPQR_JSON_NULL) {
        if (required) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s is missing", path, key);
        *out = def;
        return SPQR_OK;
    }
    int64_t x;
    if (!spqr_json_i64(v, &x)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s is not an integer", path, key);
    if (x < lo || x > hi) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s = %lld is outside [%d, %d]", path, key, (long long)x, lo, hi);
    *out = (int)x;
    return SPQR_OK;
}

static spqr_status get_float(const spqr_json *cfg, const char *key, double def, double lo, double hi, float *out,
                             const char *path, spqr_error *err) {
    const spqr_json *v = spqr_json_get(cfg, key);
    double x = def;
    if ((!v || v->type == SPQR_JSON_NULL) && isnan(def)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s is missing", path, key);
    if (v && v->type != SPQR_JSON_NULL && !spqr_json_num(v, &x)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s is not a number", path, key);
    if (!(x >= lo && x <= hi)) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %s = %g is outside [%g, %g]", path, key, x, lo, hi);
    *out = (float)x;
    return SPQR_OK;
}

static bool get_bool(const spqr_json *cfg, const char *key, bool def) {
    const spqr_json *v = spqr_json_get(cfg, key);
    return (v && v->type == SPQR_JSON_BOOL) ? v->boolean : def;
}

/* RoPE settings from either rope_parameters (newer transformers) or rope_theta + rope_scaling. */
static spqr_status parse_rope(const spqr_json *j, spqr_config *c, const char *path, spqr_error *err) {
    const spqr_json *params = spqr_json_get(j, "rope_parameters");
    if (params && params->type != SPQR_JSON_OBJECT && params->type != SPQR_JSON_NULL)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: rope_parameters is not an object", path);
    const spqr_json *scaling = NULL;
    spqr_status st;
    if (params && params->type == SPQR_JSON_OBJECT) {
        st = get_float(params, "rope_theta", 10000.0, 1e-3, 1e12, &c->rope_theta, path, err);
        if (st) return st;
        scaling = params;
    } else {
        st = get_float(j, "rope_theta", 10000.0, 1e-3, 1e12, &c->rope_theta, path, err);
        if (st) return st;
        scaling = spqr_json_get(j, "rope_scaling");
        if (scaling && scaling->type == SPQR_JSON_NULL) scaling = NULL;
        if (scaling && scaling->type != SPQR_JSON_OBJECT) return spqr_set_err(err, SPQR_E_FORMAT, "%s: rope_scaling is not an object", path);
    }
    c->rope_scaling = SPQR_ROPE_SCALING_NONE;
    c->rope_factor = 1.0f;
    if (!scaling) return SPQR_OK;
    const char *type = spqr_json_str(spqr_json_get(scaling, "rope_type"));
    if (!type) type = spqr_json_str(spqr_json_get(scaling, "type"));
    if (!type || !strcmp(type, "default")) return SPQR_OK;
    if (!strcmp(type, "linear")) {
        c->rope_scaling = SPQR_ROPE_SCALING_LINEAR;
        return get_float(scaling, "factor", NAN, 1e-6, 1e6, &c->rope_factor, path, err);
    }
    if (!strcmp(type, "llama3")) {
        c->rope_scaling = SPQR_ROPE_SCALING_LLAMA3;
        if ((st = get_float(scaling, "factor", NAN, 1e-6, 1e6, &c->rope_factor, path, err)) ||
            (st = get_float(scaling, "low_freq_factor", NAN, 1e-6, 1e6, &c->rope_low_freq_factor, path, err)) ||
            (st = get_float(scaling, "high_freq_factor", NAN, 1e-6, 1e6, &c->rope_high_freq_factor, path, err)) ||
            (st = get_int(scaling, "original_max_position_embeddings", 0, true, 1, SPQR_MAX_DIM, &c->rope_orig_max_pos, path, err)))
            return st;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor))
            return spqr_set_err(err, SPQR_E_FORMAT, "%s: llama3 rope needs high_freq_factor > low_freq_factor", path);
        return SPQR_OK;
    }
    return spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: RoPE scaling type \"%s\" is not supported (linear, llama3)", path, type);
}

/* Fills m->cfg from config.json. */
static spqr_status parse_config(spqr_model *m, const char *path, spqr_error *err) {
    spqr_json *j;
    spqr_status st = spqr_json_read_file(path, CONFIG_MAX_BYTES, &j, err);
    if (st) return st;
    spqr_config *c = &m->cfg;
    st = SPQR_OK;
    if (j->type != SPQR_JSON_OBJECT) { st = spqr_set_err(err, SPQR_E_FORMAT, "%s: not a JSON object", path); goto done; }

    const spqr_json *archs = spqr_json_get(j, "architectures");
    const char *arch = (archs && archs->type == SPQR_JSON_ARRAY && archs->n > 0) ? spqr_json_str(&archs->items[0]) : NULL;
    const char *mtype = spqr_json_str(spqr_json_get(j, "model_type"));
    if (!arch && mtype) {
        if (!strcmp(mtype, "llama")) arch = "LlamaForCausalLM";
        else if (!strcmp(mtype, "mistral")) arch = "MistralForCausalLM";
        else if (!strcmp(mtype, "qwen2")) arch = "Qwen2ForCausalLM";
    }
    if (!arch) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: no architectures entry and model_type \"%s\" is not supported", path, mtype ? mtype : "(none)"); goto done; }
    bool is_qwen2 = !strcmp(arch, "Qwen2ForCausalLM"), is_mistral = !strcmp(arch, "MistralForCausalLM");
    if (!is_qwen2 && !is_mistral && strcmp(arch, "LlamaForCausalLM") != 0) {
        st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: architecture %s is not supported (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)", path, arch);
        goto done;
    }
    snprintf(c->arch, sizeof c->arch, "%s", arch);
    c->source = SPQR_SOURCE_HF;
    c->rope_style = SPQR_ROPE_HALF;
    const char *act = spqr_json_str(spqr_json_get(j, "hidden_act"));
    if (act && strcmp(act, "silu") != 0) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: hidden_act %s is not supported (silu)", path, act); goto done; }
    if (get_bool(j, "mlp_bias", false)) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: mlp_bias is not supported", path); goto done; }

    if ((st = get_int(j, "hidden_size", 0, true, 1, SPQR_MAX_DIM, &c->dim, path, err)) ||
        (st = get_int(j, "intermediate_size", 0, true, 1, SPQR_MAX_DIM, &c->hidden_dim, path, err)) ||
        (st = get_int(j, "num_hidden_layers", 0, true, 1, 1024, &c->n_layers, path, err)) ||
        (st = get_int(j, "num_attention_heads", 0, true, 1, 4096, &c->n_heads, path, err)) ||
        (st = get_int(j, "num_key_value_heads", c->n_heads, false, 1, 4096, &c->n_kv_heads, path, err)) ||
        (st = get_int(j, "vocab_size", 0, true, 1, SPQR_MAX_DIM, &c->vocab_size, path, err)) ||
        (st = get_int(j, "max_position_embeddings", 2048, false, 1, SPQR_MAX_DIM, &c->max_seq_len, path, err)))
        goto done;
    if (c->dim % c->n_heads != 0 && !spqr_json_get(j, "head_dim")) {
        st = spqr_set_err(err, SPQR_E_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path, c->dim, c->n_heads);
        goto done;
    }
    if ((st = get_int(j, "head_dim", c->dim / c->n_heads, false, 2, 65536, &c->head_dim, path, err)) ||
        (st = get_float(j, "rms_norm_eps", 1e-6, 0.0, 1.0, &c->norm_eps, path, err)) ||
        (st = parse_rope(j, c, path, err)))
        goto done;
    c->tied_embeddings = get_bool(j, "tie_word_embeddings", false);
    c->attn_bias = is_qwen2 ? 1 : get_bool(j, "attention_bias", false);
    m->sliding_window = 0;
    if (is_mistral || (is_qwen2 && get_bool(j, "use_sliding_window", false))) {
        int sw;
        if ((st = get_int(j, "sliding_window", 0, false, 0, SPQR_MAX_DIM, &sw, path, err))) goto done;
        m->sliding_window = sw;
    }
    const spqr_json *bos = spqr_json_get(j, "bos_token_id"), *eos = spqr_json_get(j, "eos_token_id");
    int64_t v;
    c->bos_id = spqr_json_i64(bos, &v) && v >= 0 && v < c->vocab_size ? (int)v : -1;
    if (eos && eos->type == SPQR_JSON_ARRAY && eos->n > 0) eos = &eos->items[0];
    c->eos_id = spqr_json_i64(eos, &v) && v >= 0 && v < c->vocab_size ? (int)v : -1;
    st = spqr_config_check(c, path, err);
done:
    spqr_json_free(j);
    return st;
}

/* Loads the shards named in model.safetensors.index.json, then checks that every tensor of its
 * weight_map was found in the shard it names. */
static spqr_status load_index(spqr_model *m, const char *dir, const char *index_path, spqr_error *err) {
    spqr_json *j;
    spqr_status st = spqr_json_read_file(index_path, INDEX_MAX_BYTES, &j, err);
    if (st) return st;
    const spqr_json *wm = spqr_json_get(j, "weight_map");
    if (!wm || wm->type != SPQR_JSON_OBJECT || wm->n == 0) {
        spqr_json_free(j);
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: weight_map is missing, empty or not an object", index_path);
    }
    /* load each distinct shard once, in order of first mention */
    for (size_t i = 0; i < wm->n && !st; i++) {
        const char *shard = spqr_json_str(&wm->items[i]);
        if (!shard || !*shard || strchr(shard, '/') || !strcmp(shard, "..") || !strcmp(shard, ".")) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: weight_map entry %s must name a file in the same directory", index_path, wm->keys[i].str);
            break;
        }
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++) seen = !strcmp(spqr_json_str(&wm->items[k]), shard);
        if (seen) continue;
        char *p = spqr_path_join(dir, shard);
        if (!p) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); break; }
        st = spqr_load_safetensors(m, p, err);
        free(p);
    }
    for (size_t i = 0; i < wm->n && !st; i++) {
        const spqr_tensor *t = spqr_model_find(m, wm->keys[i].str);
        const char *shard = spqr_json_str(&wm->items[i]);
        const char *file = t ? m->maps[t->file].path : NULL;
        const char *base = file ? strrchr(file, '/') : NULL;
        base = base ? base + 1 : file;
        if (!t || strcmp(base, shard) != 0)
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s is listed in %s but not found there", index_path, wm->keys[i].str, shard);
    }
    spqr_json_free(j);
    return st;
}

spqr_status spqr_load_hf_dir(spqr_model *m, const char *dir, spqr_error *err) {
    char *cfg = spqr_path_join(dir, "config.json");
    char *index = spqr_path_join(dir, "model.safetensors.index.json");
    char *single = spqr_path_join(dir, "model.safetensors");
    spqr_status st;
    if (!cfg || !index || !single) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto done; }
    if ((st = parse_config(m, cfg, err))) goto done;
    if (spqr_path_exists(index)) st = load_index(m, dir, index, err);
    else if (spqr_path_exists(single)) st = spqr_load_safetensors(m, single, err);
    else st = spqr_set_err(err, SPQR_E_IO, "%s: no model.safetensors or model.safetensors.index.json (PyTorch .bin checkpoints are not supported)", dir);
done:
    free(cfg);
    free(index);
    free(single);
    return st;
}

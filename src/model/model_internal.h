/*
 * model_internal.h — the loaded model: mapped files, the tensor table (as stored), and fp32 views of
 * the weights the forward pass uses. Loaders fill `maps` and `tensors`; spqr_model_bind() checks
 * shapes and builds the fp32 views.
 */
#ifndef SPQR_MODEL_INTERNAL_H
#define SPQR_MODEL_INTERNAL_H

#include "core/core.h"
#include "kernels/matmul.h"
#include "kernels/qtiles.h"

#define SPQR_MAX_DIMS 4
/* Upper bound on any model dimension read from a file: keeps every product well inside 64 bits. */
#define SPQR_MAX_DIM (1 << 24)
/* Most tensors one model may have (Llama-3 405B has 1,138). */
#define SPQR_MAX_TENSORS (1 << 20)

typedef struct spqr_tensor {
    char *name;
    spqr_dtype dtype;             /* F32/F16/BF16, or SPQR/GPTQ for quantized matrices */
    int n_dims;
    int64_t shape[SPQR_MAX_DIMS]; /* outermost first */
    uint64_t n_elem;
    uint64_t nbytes;
    const uint8_t *data;          /* inside maps[file] */
    int file;
    spqr_qview *q;                /* quantized: the validated view (owned) */
    spqr_qtiles *qt;              /* quantized: the decode kernels' tile layout, or NULL (owned) */
} spqr_tensor;

/* One transformer block. Matrices are [out][in], fp32 or quantized; biases may be NULL. */
typedef struct spqr_layer {
    const float *attn_norm, *ffn_norm; /* [dim] */
    spqr_linear wq, wk, wv, wo;        /* [n_heads*hd][dim], [n_kv*hd][dim] x2, [dim][n_heads*hd] */
    const float *bq, *bk, *bv, *bo;
    spqr_linear w_gate, w_up;          /* [hidden][dim] */
    spqr_linear w_down;                /* [dim][hidden] */
} spqr_layer;

struct spqr_model {
    spqr_config cfg;
    int sliding_window;  /* 0: none (Mistral's sliding-window attention otherwise) */
    char *path;
    spqr_map *maps;
    int n_maps;
    spqr_tensor *tensors;
    int n_tensors, cap_tensors;
    int32_t *index;          /* open-addressing hash of tensor names: slot -> tensor index, -1 empty */
    uint32_t index_cap;      /* power of two, >= 2 * n_tensors */
    /* fp32 views */
    const float *embed;      /* [vocab][dim] fp32, or NULL when embed16 is used */
    const uint16_t *embed16; /* [vocab][dim] 16-bit (kept16 models), else NULL */
    int embed16_bf16;
    const spqr_qview *embed_q; /* [vocab][dim] quantized (tied with the quantized head), else NULL */
    int keep16;              /* run 16-bit tensors as they are (.spqr files) instead of converting to fp32 */
    int tiles;               /* build the tile layout of quantized matrices (this CPU's kernels use it) */
    const float *final_norm; /* [dim] */
    spqr_linear output;      /* [vocab][dim]; the embedding when tied */
    spqr_layer *layers;
    void **owned;            /* fp32 copies of F16/BF16 (or misaligned F32) tensors */
    int n_owned;
    spqr_tokenizer *tok;
    char *tok_path;          /* where the tokenizer came from (NULL: none, or embedded in a .spqr) */
    char *meta;              /* .spqr: the JSON metadata (NUL-terminated), else NULL */
    spqr_quant_info qinfo;   /* .spqr: parsed from meta */
};

/* Maps `path` and appends it to m->maps; *idx receives its index. */
spqr_status spqr_model_add_map(spqr_model *m, const char *path, int *idx, spqr_error *err);
/* Appends a tensor (name copied). Checks dims, element count overflow and that
 * [data, data + nbytes) lies inside its mapping. */
spqr_status spqr_model_add_tensor(spqr_model *m, const char *name, spqr_dtype dt, int n_dims, const int64_t *shape,
                                  int file, uint64_t offset, spqr_error *err);
const spqr_tensor *spqr_model_find(const spqr_model *m, const char *name);
/* Checks the config's invariants (positive dims, heads divide, ...). */
spqr_status spqr_config_check(const spqr_config *c, const char *path, spqr_error *err);
/* Builds the fp32 views from the tensor table, checking every shape and rejecting NaN/Inf. Names
 * are Hugging Face's ("model.layers.0.self_attn.q_proj.weight"); llama2.c tensors get those names. */
spqr_status spqr_model_bind(spqr_model *m, spqr_error *err);

/* Appends a quantized matrix described by `t` whose blob is [offset, offset + t->data_size) of
 * maps[file]; validates it (spqr_qview_init). */
spqr_status spqr_model_add_qtensor(spqr_model *m, const spqr_file_tensor *t, int file, uint64_t offset, spqr_error *err);

/* Row `id` of the embedding as fp32 into out[dim]. */
void spqr_model_embed_row(const spqr_model *m, int id, float *out);

/* Loaders (src/loaders). */
spqr_status spqr_load_safetensors(spqr_model *m, const char *path, spqr_error *err);
spqr_status spqr_load_hf_dir(spqr_model *m, const char *dir, spqr_error *err);
spqr_status spqr_load_llama2c(spqr_model *m, const char *path, spqr_error *err);
/* A .spqr file: config, tokenizer (into m->tok) and tensors. */
spqr_status spqr_load_spqr_file(spqr_model *m, const char *path, spqr_error *err);
/* True if the first bytes are the .spqr magic. */
bool spqr_file_sniff(const uint8_t *d, uint64_t n);

uint64_t spqr_dtype_size(spqr_dtype t);

#endif

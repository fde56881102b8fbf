/*
 * testutil.h — helpers shared by the test suites: scratch paths and files, and writers of tiny
 * synthetic models (a Hugging Face directory: config.json + model.safetensors, optionally sharded
 * with model.safetensors.index.json, in F32/F16/BF16; and a llama2.c legacy checkpoint).
 *
 * Weights are small multiples of 1/256 (norm weights multiples of 1/128 near 1), exactly
 * representable in F32, F16 and BF16, so the same spec gives bitwise identical fp32 weights in every
 * dtype and in every shard layout. Values depend only on (seed, tensor name, element index).
 */
#ifndef SPQR_TESTUTIL_H
#define SPQR_TESTUTIL_H

#include "spqr.h"

#include <stddef.h>
#include <stdint.h>

/* ---- paths and files --------------------------------------------------------------------------- */

/* A fresh, empty directory under th_tmpdir() whose name starts with `tag`; the string stays valid
 * for the whole run (at most 1024 directories per run). */
const char *tu_newdir(const char *tag);
/* dir + "/" + name, in a ring of 16 static buffers (valid for the next 15 calls). */
const char *tu_cat(const char *dir, const char *name);
/* Writes n bytes (creates or truncates). 0 on success. */
int tu_write_file(const char *path, const void *data, size_t n);
int tu_write_text(const char *path, const char *text);
/* Reads a whole file into a malloc'ed buffer (NUL-terminated; *n excludes the NUL). NULL on error. */
unsigned char *tu_read_file(const char *path, size_t *n);
/* Writes a safetensors file: u64 little-endian length of `header`, the header, then n data bytes. */
int tu_write_st_raw(const char *path, const char *header, const void *data, size_t n);
/* Same, with an explicit (possibly lying) header length. */
int tu_write_st_raw_len(const char *path, uint64_t header_len, const char *header, const void *data, size_t n);

/* A malloc'ed copy of text with the first occurrence of `from` replaced by `to` (aborts if absent). */
char *tu_replace(const char *text, const char *from, const char *to);

/* IEEE half and bfloat16 encodings, round-to-nearest-even; NaN stays NaN, Inf stays Inf. */
uint16_t tu_f32_to_f16(float f);
uint16_t tu_f32_to_bf16(float f);

/* ---- synthetic Hugging Face models ------------------------------------------------------------- */

typedef struct tu_spec {
    int dim, hidden, layers, heads, kv_heads, vocab;
    int head_dim;           /* 0: dim / heads */
    int head_dim_in_config; /* 1: write "head_dim" into config.json */
    int max_pos;            /* max_position_embeddings; 0: 64 */
    int tied;               /* tie_word_embeddings (no lm_head.weight) */
    int bias;               /* q/k/v biases (Qwen2, or Llama attention_bias) */
    spqr_dtype dtype;
    int shards;             /* 0 or 1: model.safetensors; 2: two shards + model.safetensors.index.json */
    const char *arch;       /* NULL: LlamaForCausalLM */
    const char *model_type; /* NULL: derived from arch */
    const char *extra;      /* raw JSON members appended to config.json (no leading comma), or NULL */
    const char *omit;       /* a tensor left out of the files (and of the index), or NULL */
    const char *poison;     /* a tensor whose element `poison_index` is set to poison_value, or NULL */
    float poison_value;
    int poison_index;
    int misalign;           /* 1: header length is 8k+2, so data is not 4-byte aligned */
    uint32_t seed;
} tu_spec;

/* dim 16, hidden 40, 2 layers, 4 heads, 2 kv heads, vocab 48, untied, F32, one file, seed 1. */
void tu_spec_default(tu_spec *s);

typedef struct tu_tensor {
    char name[96];
    int n_dims;
    int64_t shape[2];
} tu_tensor;

/* The tensors a spec's files hold, in file order (the omitted one included). Returns the count
 * (at most cap are written). */
int tu_tensor_list(const tu_spec *s, tu_tensor *out, int cap);
/* Element count of a tensor. */
int64_t tu_tensor_numel(const tu_tensor *t);
/* The value a spec stores at element i of tensor `name` (before dtype encoding; exact in all). */
float tu_value(const tu_spec *s, const char *name, int64_t i);

/* Writes config.json for the spec into dir. 0 on success. */
int tu_write_config(const char *dir, const tu_spec *s);
/* Writes config.json and the safetensors file(s) (and index) into dir (which must exist). */
int tu_write_hf(const char *dir, const tu_spec *s);
/* Writes one safetensors file holding tensors[0..n) of the spec. */
int tu_write_safetensors(const char *path, const tu_spec *s, const tu_tensor *tensors, int n);
/* Same, with `extra_members` (raw JSON, no leading comma; NULL for none) inserted into the header
 * before the spec's tensors, and extra_n bytes of extra_data placed at the start of the data section
 * (the spec's tensors follow them), so extra entries can use data_offsets within [0, extra_n]. */
int tu_write_safetensors_ex(const char *path, const tu_spec *s, const tu_tensor *tensors, int n, const char *extra_members,
                            const void *extra_data, size_t extra_n);

/* ---- synthetic llama2.c checkpoints ------------------------------------------------------------ */

typedef struct tu_l2c {
    int32_t dim, hidden, layers, heads, kv_heads, vocab, seq_len; /* vocab < 0: untied classifier */
} tu_l2c;

/* File size the header implies (0 if any dimension is not positive). */
uint64_t tu_l2c_size(const tu_l2c *h);
/* Writes a llama2.c checkpoint; if poison_float >= 0, the float at that index (counted from the
 * first weight after the header) becomes poison_value. 0 on success. */
int tu_write_llama2c(const char *path, const tu_l2c *h, int64_t poison_float, float poison_value);
/* Writes just the 28-byte header followed by `payload` zero bytes. */
int tu_write_l2c_header(const char *path, const int32_t hdr[7], size_t payload);

#endif

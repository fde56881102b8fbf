/*
 * spqr.h — the one public header of libspqr.
 *
 * libspqr loads Llama-family checkpoints (Hugging Face safetensors directories and llama2.c
 * checkpoints), tokenizes exactly like the reference tokenizers, runs the model in fp32, measures
 * perplexity with the GPTQ/SpQR and llama.cpp protocols, quantizes it with SpQR, GPTQ or RTN into a
 * .spqr file, and runs that file.
 *
 * Conventions
 *  - Every fallible function returns an spqr_status and, when `err` is not NULL, fills it with the
 *    same code and a one-line message naming the file, the object and the reason.
 *  - Handles are opaque. Every constructor (`*_load`, `*_new`) has a matching `*_free`, which
 *    accepts NULL. Objects handed out by a getter are owned by the object they came from and live as
 *    long as it does.
 *  - Arrays the library allocates for the caller say so, and are released with spqr_free().
 *  - The library has no global mutable state except OpenBLAS's thread count, which a context pins
 *    to 1 because the context splits work across its own threads (see spqr_ctx_new).
 */
#ifndef SPQR_H
#define SPQR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SPQR_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------- */
/* Status codes and errors                                                                        */
/* ---------------------------------------------------------------------------------------------- */

typedef enum spqr_status {
    SPQR_OK = 0,
    SPQR_E_IO,          /* a file could not be opened, read, mapped or written */
    SPQR_E_FORMAT,      /* a file is malformed, truncated, inconsistent or hostile */
    SPQR_E_UNSUPPORTED, /* well-formed input of a kind this version does not handle (GGUF, ...) */
    SPQR_E_NOMEM,       /* an allocation failed */
    SPQR_E_ARG,         /* the caller passed an invalid argument */
    SPQR_E_RANGE,       /* a value is outside what the object supports (context length, ...) */
} spqr_status;

typedef struct spqr_error {
    spqr_status code;
    char msg[512]; /* one line, no trailing newline; "" when code == SPQR_OK */
} spqr_error;

/* Static name of a status ("ok", "io error", ...). Never NULL. */
const char *spqr_status_str(spqr_status s);

/* Releases an array the library allocated for the caller (token ids, per-chunk NLLs). NULL is ok. */
void spqr_free(void *p);

/* ---------------------------------------------------------------------------------------------- */
/* Tokenizer                                                                                      */
/* ---------------------------------------------------------------------------------------------- */

typedef struct spqr_tokenizer spqr_tokenizer;

/*
 * Loads a tokenizer, recognised by content:
 *  - a Hugging Face tokenizer.json whose model is BPE of the SentencePiece kind (Llama-2 style:
 *    Prepend/Replace "▁" normalizer, byte fallback, BOS template); added tokens are matched in the
 *    input text like HF does;
 *  - a llama2.c tokenizer.bin (max_token_length, then score/length/bytes per piece); merges follow
 *    the piece scores like SentencePiece and llama.cpp. Special-token text is not parsed.
 * Anything else fails with SPQR_E_UNSUPPORTED or SPQR_E_FORMAT naming the file.
 */
spqr_status spqr_tokenizer_load(const char *path, spqr_tokenizer **out, spqr_error *err);
/* The same from n bytes in memory (not retained); `name` is used in messages. */
spqr_status spqr_tokenizer_load_memory(const void *data, size_t n, const char *name, spqr_tokenizer **out, spqr_error *err);
void spqr_tokenizer_free(spqr_tokenizer *tok);

int spqr_tokenizer_vocab_size(const spqr_tokenizer *tok);
int spqr_tokenizer_bos(const spqr_tokenizer *tok); /* -1 when the vocabulary has none */
int spqr_tokenizer_eos(const spqr_tokenizer *tok); /* -1 when the vocabulary has none */

/* The vocabulary entry of `id` as stored ("▁the", "<0x0A>", "<s>"); NULL if id is out of range. */
const char *spqr_tokenizer_piece(const spqr_tokenizer *tok, int id);

/*
 * Encodes `len` bytes of `text` (UTF-8; invalid bytes go through byte fallback). With add_bos, the
 * BOS id is put first. On success *ids is an array of *n_ids ids that the caller releases with
 * spqr_free().
 */
spqr_status spqr_tokenizer_encode(const spqr_tokenizer *tok, const char *text, size_t len, int add_bos,
                                  int32_t **ids, size_t *n_ids, spqr_error *err);

/*
 * Writes the text of token `id` for streaming output, given the token before it (`prev`, -1 at the
 * start): "▁" becomes a space, a byte token becomes its raw byte, the space the tokenizer prepended
 * is dropped after BOS, and control tokens produce nothing. Returns the number of bytes the text
 * needs; writes at most cap-1 of them plus a NUL (like snprintf).
 */
size_t spqr_tokenizer_token_text(const spqr_tokenizer *tok, int prev, int id, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------------- */
/* Model                                                                                          */
/* ---------------------------------------------------------------------------------------------- */

typedef enum spqr_rope_style {
    SPQR_ROPE_HALF = 0,        /* rotate-half pairs (i, i + d/2): Hugging Face checkpoints */
    SPQR_ROPE_INTERLEAVED = 1, /* adjacent pairs (2i, 2i + 1): llama2.c checkpoints, GGML "norm" */
} spqr_rope_style;

typedef enum spqr_rope_scaling {
    SPQR_ROPE_SCALING_NONE = 0,
    SPQR_ROPE_SCALING_LINEAR = 1, /* positions divided by `factor` */
    SPQR_ROPE_SCALING_LLAMA3 = 2, /* Llama-3.1 frequency-dependent scaling */
} spqr_rope_scaling;

typedef enum spqr_source {
    SPQR_SOURCE_HF = 0,      /* Hugging Face directory: config.json + safetensors */
    SPQR_SOURCE_LLAMA2C = 1, /* llama2.c legacy .bin checkpoint */
} spqr_source;

typedef struct spqr_config {
    char arch[48];      /* "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "llama2.c" */
    spqr_source source;
    int dim;            /* hidden size */
    int hidden_dim;     /* MLP intermediate size */
    int n_layers;
    int n_heads;
    int n_kv_heads;     /* < n_heads: grouped-query attention */
    int head_dim;
    int vocab_size;
    int max_seq_len;    /* max_position_embeddings / llama2.c seq_len */
    float norm_eps;
    float rope_theta;
    spqr_rope_style rope_style;
    spqr_rope_scaling rope_scaling;
    float rope_factor;           /* linear and llama3 */
    float rope_low_freq_factor;  /* llama3 */
    float rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;       /* llama3: original_max_position_embeddings */
    int tied_embeddings;         /* output head shares the embedding matrix */
    int attn_bias;               /* q/k/v projections have biases (Qwen2) */
    int bos_id, eos_id;          /* -1 when unknown */
} spqr_config;

typedef enum spqr_dtype {
    SPQR_DTYPE_F32 = 0,
    SPQR_DTYPE_F16 = 1,
    SPQR_DTYPE_BF16 = 2,
    SPQR_DTYPE_SPQR = 16, /* quantized: SpQR codes, bilevel statistics, fp16 outliers */
    SPQR_DTYPE_GPTQ = 17, /* quantized: codes, fp16 scale and integer zero per group (GPTQ, RTN) */
} spqr_dtype;

/* Static name of a dtype ("F32", "F16", "BF16", "SPQR", "GPTQ"). */
const char *spqr_dtype_name(spqr_dtype t);

typedef struct spqr_tensor_info {
    const char *name;  /* as stored in the file; owned by the model */
    spqr_dtype dtype;  /* as stored in the file */
    int n_dims;
    int64_t shape[4];  /* outermost first, as in the file */
    uint64_t nbytes;   /* bytes in the file */
    const char *file;  /* the file it lives in; owned by the model */
} spqr_tensor_info;

typedef struct spqr_model spqr_model;

typedef struct spqr_load_opts {
    const char *tokenizer_path; /* NULL: found next to the model (see spqr_model_load) */
    int no_tokenizer;           /* 1: do not look for a tokenizer */
} spqr_load_opts;

/*
 * Loads a model, recognised by content, not by name:
 *  - a Hugging Face directory (or its config.json, or one of its .safetensors files): config.json
 *    for LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM and single-file or sharded
 *    safetensors in F32, F16 or BF16, memory-mapped; the tokenizer is the directory's
 *    tokenizer.json;
 *  - a llama2.c legacy checkpoint (7 x int32 header, fp32); the tokenizer is opts->tokenizer_path,
 *    else tokenizer.bin, else tok<vocab_size>.bin in the checkpoint's directory;
 *  - a .spqr file written by spqr_quantize (docs/FORMAT.md): quantized layers and the 16-bit
 *    embedding/head stay memory-mapped and are decoded on the fly; the tokenizer is the one embedded
 *    in the file (opts->tokenizer_path overrides it).
 * Every size, offset, count and dimension is checked against the file; NaN or Inf weights are an
 * error naming the tensor. Checkpoint weights are converted to fp32 (F32 data stays memory-mapped).
 * `opts` may be NULL. A missing tokenizer is not an error: spqr_model_tokenizer() then returns NULL.
 */
spqr_status spqr_model_load(const char *path, const spqr_load_opts *opts, spqr_model **out, spqr_error *err);
void spqr_model_free(spqr_model *m);

const spqr_config *spqr_model_config(const spqr_model *m);
const spqr_tokenizer *spqr_model_tokenizer(const spqr_model *m); /* owned by the model; may be NULL */
/* A .spqr file's JSON metadata (method, hyper-parameters, calibration, bits); NULL for other inputs. */
const char *spqr_model_meta(const spqr_model *m);

typedef struct spqr_quant_info {
    char method[8];             /* "spqr", "gptq", "rtn" */
    int wbits, groupsize, qq_bits, qq_groupsize;
    double outlier_threshold;   /* INFINITY: none */
    int act_order;
    double percdamp;
    int nsamples, seqlen;       /* 0 for RTN */
    int64_t quantized_weights, n_outliers;
    double bits_paper, bits_file;
} spqr_quant_info;

/* Fills *info from a .spqr file's metadata; SPQR_E_ARG if the model is not a quantized file. */
spqr_status spqr_model_quant_info(const spqr_model *m, spqr_quant_info *info);
const char *spqr_model_path(const spqr_model *m);
int spqr_model_n_tensors(const spqr_model *m);
/* Fills *info for tensor i (0 <= i < n_tensors) in file order; returns SPQR_E_ARG if out of range. */
spqr_status spqr_model_tensor_info(const spqr_model *m, int i, spqr_tensor_info *info);
/* Number of parameters (elements of all tensors). */
int64_t spqr_model_n_params(const spqr_model *m);
/* Bytes of weights one decoded token reads: every linear layer and the output head as they are
 * held in memory (fp32, 16-bit or quantized blobs) plus one embedding row. */
int64_t spqr_model_decode_bytes(const spqr_model *m);

/* Measures read bandwidth (GB/s, best of 5) by summing a buffer of `bytes` with n_threads threads.
 * Use a buffer well above the last-level cache to measure DRAM. */
spqr_status spqr_measure_read_bandwidth(size_t bytes, int n_threads, double *gbs, spqr_error *err);

/* The OpenBLAS kernels in use ("SkylakeX", "Haswell", "Prescott", ...; static string). */
const char *spqr_blas_core(void);
/* When OpenBLAS fell back to its generic SSE3 kernels on a CPU with AVX2 or AVX-512 (a CPU newer
 * than the OpenBLAS release: sgemm several times slower), the OPENBLAS_CORETYPE value that selects
 * the right ones ("SkylakeX", "Haswell"); else NULL. OpenBLAS reads that variable only when it is
 * loaded, so a program sets it and re-executes itself (the spqr CLI and test program do). */
const char *spqr_blas_core_advice(void);

/* ---------------------------------------------------------------------------------------------- */
/* Inference context: KV cache, scratch buffers, worker threads                                   */
/* ---------------------------------------------------------------------------------------------- */

typedef struct spqr_ctx spqr_ctx;

typedef struct spqr_ctx_opts {
    int n_ctx;     /* KV cache length in tokens; 0: the model's max_seq_len */
    int n_batch;   /* most tokens one spqr_ctx_forward call takes; 0: min(512, n_ctx) */
    int n_threads; /* 0: all online cores */
    int act8;      /* decode (one token at a time) with 8-bit activations: each layer input is rounded
                      to int8 per group of β1 inputs (scale max|x|/127) and multiplied with integer dot
                      products (AVX-512 VNNI) where this CPU has them, or on the GPU (with gpu = 1)
                      by its IDP4A kernel; faster, slightly less exact.
                      0: fp32 activations (default). Prefill is never affected. */
    int gpu;       /* 1: run the whole forward pass on the first CUDA device (builds made with
                      `make CUDA=1`; otherwise SPQR_E_UNSUPPORTED); 2: the same with every quantized
                      matrix dequantized to fp16 on upload (the 16-bit baseline of the same weights) */
} spqr_ctx_opts;

/*
 * Creates an inference context for `m`, which must outlive it. All memory the forward pass needs
 * (KV cache, activations, logits for n_batch rows) is allocated here; spqr_ctx_forward allocates
 * nothing. Starts n_threads - 1 worker threads and pins OpenBLAS to one thread per call.
 */
spqr_status spqr_ctx_new(const spqr_model *m, const spqr_ctx_opts *opts, spqr_ctx **out, spqr_error *err);
void spqr_ctx_free(spqr_ctx *c);

int spqr_ctx_n_ctx(const spqr_ctx *c);
int spqr_ctx_n_batch(const spqr_ctx *c);
int spqr_ctx_n_threads(const spqr_ctx *c);
/* Name of the CPU kernels the context chose at creation ("avx512", "avx2", "generic"): the best this
 * CPU and OS support, or the one the environment variable SPQR_CPU names. */
const char *spqr_ctx_kernels(const spqr_ctx *c);

/*
 * Runs tokens ids[0..n) at positions pos..pos+n-1, attending to the KV cache entries 0..pos-1
 * written by earlier calls (pos = 0 starts a new sequence), and stores their K/V. Needs
 * 1 <= n <= n_batch and pos + n <= n_ctx. Batches of n > 1 go through sgemm, n = 1 through
 * matrix-vector kernels.
 * all_logits = 1 keeps the logits of every position, 0 only of the last (cheaper: one output row).
 */
spqr_status spqr_ctx_forward(spqr_ctx *c, const int32_t *ids, int n, int pos, int all_logits, spqr_error *err);

/* Logits of the last forward: n rows of vocab_size floats (1 row if all_logits was 0). Owned by c,
 * valid until the next forward. */
const float *spqr_ctx_logits(const spqr_ctx *c);

/* ---------------------------------------------------------------------------------------------- */
/* Perplexity                                                                                     */
/* ---------------------------------------------------------------------------------------------- */

typedef enum spqr_ppl_protocol {
    /* GPTQ/SpQR papers: the token stream (BOS + text) cut into floor(N/ctx) chunks; every position
     * but the last of a chunk predicts the next token; ppl = exp(mean NLL). */
    SPQR_PPL_GPTQ = 0,
    /* llama.cpp llama-perplexity: chunks of ctx tokens, each chunk's first token replaced by BOS,
     * only the second half of each chunk scored. */
    SPQR_PPL_LLAMACPP = 1,
} spqr_ppl_protocol;

typedef struct spqr_ppl_progress {
    int chunk, n_chunks;  /* chunks done so far, of n_chunks */
    double ppl;           /* running perplexity */
    double seconds;       /* elapsed */
    double eta_seconds;   /* estimated time left */
} spqr_ppl_progress;

typedef struct spqr_ppl_opts {
    int n_ctx;                  /* chunk length; 0: 2048 capped to the context's n_ctx */
    spqr_ppl_protocol protocol;
    int max_chunks;             /* 0: all */
    /* Called after every chunk; may be NULL. */
    void (*progress)(const spqr_ppl_progress *p, void *user);
    void *progress_user;
} spqr_ppl_opts;

typedef struct spqr_ppl_result {
    double ppl;            /* exp(nll) */
    double nll;            /* mean negative log-likelihood over scored tokens (nats) */
    int chunks;
    int64_t tokens;        /* tokens processed (chunks x ctx) */
    int64_t scored;        /* tokens whose NLL was counted */
    double seconds;
    double *chunk_nll;     /* mean NLL of each chunk; release with spqr_free() */
} spqr_ppl_result;

/* Measures perplexity of `tokens` (already tokenized, BOS first) with context `c`. */
spqr_status spqr_ppl_eval(spqr_ctx *c, const int32_t *tokens, size_t n_tokens, const spqr_ppl_opts *opts,
                          spqr_ppl_result *out, spqr_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Quantization: SpQR, GPTQ, RTN                                                                  */
/* ---------------------------------------------------------------------------------------------- */

typedef enum spqr_method { SPQR_METHOD_SPQR = 0, SPQR_METHOD_GPTQ = 1, SPQR_METHOD_RTN = 2 } spqr_method;

typedef struct spqr_quant_module {
    int block, n_blocks;      /* 1-based block index */
    const char *module;       /* "self_attn.q_proj", ... */
    int rows, cols;
    double outlier_share;     /* SpQR: outliers / weights */
    double rel_err;           /* ‖(W − Ŵ)X‖ / ‖WX‖ on the calibration inputs (NaN for RTN) */
    double percdamp_used;     /* damping that made H positive definite (> requested: retried) */
    double bits_paper;        /* this module, by the SpQR paper's accounting */
    double bits_file;         /* this module: blob bytes x 8 / weights */
    double seconds;           /* this module */
    double elapsed, eta;      /* whole run so far, and estimated time left */
} spqr_quant_module;

typedef struct spqr_quant_opts {
    spqr_method method;
    int wbits;                  /* bits per weight code */
    int groupsize;              /* β1: input columns per statistics group; 0 = whole row */
    int qq_bits;                /* SpQR: bits of the group scales and zeros (bilevel) */
    int qq_groupsize;           /* SpQR: β2, output rows per second-level group */
    double outlier_threshold;   /* SpQR: τ (relative); INFINITY disables outliers */
    int act_order;              /* GPTQ/SpQR: permute columns by decreasing diag(H) */
    double percdamp;            /* damping relative to mean(diag H) */
    int simplified_outliers;    /* SpQR: skip the leave-one-out refit */
    int gpu;                    /* quantize on the first CUDA device (make CUDA=1 builds): Hessians and the
                                   sweep on the device in the CPU's fixed order, the Cholesky factor by the
                                   CPU's own LAPACK call: meant to write the CPU run's file byte for byte */
    int gpu_device_cholesky;    /* with gpu: the Cholesky factors with cuSOLVER instead. The host's LAPACK
                                   runs on one thread here (calls on more threads round differently), which
                                   dominates at 4096+ columns; cuSOLVER is faster, but the file can then
                                   differ from a CPU run's (last-bit differences grow through the blocks) */
    int head_bits;              /* 0: keep the output head (and a tied embedding) in 16 bits; 2..8: quantize
                                   it with the same method and groups at this many bits, calibrated on
                                   the final norm's outputs */
    const char *const *calib_files; /* GPTQ/SpQR: calibration text files */
    int n_calib_files;
    int nsamples, seqlen;       /* calibration windows of seqlen tokens */
    uint64_t seed;
    double hessian_jitter;      /* 0 normally. An experiment on the result's sensitivity to float rounding:
                                   diag(H) of the first block's Hessians multiplied by 1 + u, u uniform in
                                   ±hessian_jitter (drawn from jitter_seed); recorded in the metadata */
    uint64_t jitter_seed;
    int n_threads;              /* 0: all cores */
    void (*progress)(const spqr_quant_module *mod, void *user); /* one call per quantized module; may be NULL */
    void *progress_user;
} spqr_quant_opts;

/* The defaults of a method: SpQR = the paper's near-lossless config (w4, β1 = β2 = 16, q = 3,
 * τ = 0.2, act order, percdamp 1.0); GPTQ = w4 g128, percdamp 0.01; RTN = w4 g128.
 * Calibration 128 x 2048 tokens, seed 0. */
spqr_quant_opts spqr_quant_defaults(spqr_method method);

typedef struct spqr_quant_summary {
    int64_t quantized_weights;  /* weights in quantized layers */
    int64_t n_outliers;
    double bits_paper;          /* the SpQR paper's accounting, over quantized layers */
    double bits_file;           /* bytes of the quantized layers' blobs x 8 / quantized weights */
    uint64_t file_bytes;        /* the whole .spqr file */
    uint64_t kept_bytes;        /* 16/32-bit tensors kept as they are (embeddings, head, norms) */
    double calib_seconds;       /* sampling + tokenizing the calibration data */
    double seconds;             /* whole run */
    int threads;
} spqr_quant_summary;

/*
 * Quantizes every linear layer of the transformer blocks of `m`, layer by layer on calibration data
 * (GPTQ/SpQR; RTN needs none), and writes a .spqr file to out_path atomically. Embeddings, output
 * head and norms are kept in 16 bits (32-bit norms stay 32-bit), unless head_bits quantizes the head
 * (a tied embedding then is the quantized head). On success `m` itself runs the
 * quantized weights (dequantized to fp32), so it can be evaluated at once; the model must have a
 * tokenizer. On failure `m` may be partly quantized: free it. Same inputs and seed, same file.
 */
spqr_status spqr_quantize(spqr_model *m, const char *out_path, const spqr_quant_opts *opts, spqr_quant_summary *summary,
                          spqr_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Sampling                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

typedef struct spqr_sampler spqr_sampler;

/* temp <= 0: greedy (argmax). 0 < top_p < 1: nucleus sampling. Same seed, same tokens. */
spqr_status spqr_sampler_new(int vocab_size, float temp, float top_p, uint64_t seed, spqr_sampler **out,
                             spqr_error *err);
void spqr_sampler_free(spqr_sampler *s);
/* Picks a token from one row of logits (vocab_size floats). Allocates nothing. */
int spqr_sampler_sample(spqr_sampler *s, const float *logits);

#ifdef __cplusplus
}
#endif
#endif /* SPQR_H */

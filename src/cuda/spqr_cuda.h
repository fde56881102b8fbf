/*
 * spqr_cuda.h — CUDA products with .spqr quantized matrices (C-callable; built only with
 * `make CUDA=1`, see cuda.mk). Host code includes this without the CUDA headers: streams are void *.
 *
 * A validated spqr_qview (format/qmatrix.h) is uploaded once. The upload repacks the file's storage
 * layout (per-row LSB-first bit streams) into a device layout the kernels read with coalesced 16-byte
 * loads (spqr_cuda.cu describes it), and also keeps the storage layout for the generic kernels.
 *
 * Products: Y[n][rows] = X[n][cols] · Wᵀ, i.e. y_b = W x_b for each of n activation rows.
 * X is fp16 (row-major, n x cols, columns in the ORIGINAL input order), Y is fp32 (n x rows).
 * The act-order permutation is applied to X once per call (a gather into a workspace).
 *
 * Algorithms:
 *   SPQR_CUDA_TILED    repacked layout; fp16 "magic number" code extraction, fp32 dequantization
 *                      and accumulation; SpQR outliers fused as fp16 deltas (val − dense weight);
 *                      wbits 2..4, β1 in {8, 16, 32} or a multiple of 32, SpQR qq_bits <= 4,
 *                      β2 % 4 == 0; n <= 8 per pass (larger n: passes of 8)
 *   SPQR_CUDA_GENERIC  storage layout as in the file, one warp per row, fp32, any valid matrix
 *   SPQR_CUDA_DEQUANT  dequantize to fp16 (stored column order, outliers exact), then cuBLAS
 *                      GemmEx (fp16 inputs, fp32 accumulation) with the permuted X: the prefill path
 *   SPQR_CUDA_FUSED    (v5) one kernel per product (two on large matrices): rows in the lanes
 *                      (32 rows x 256 columns per tile; for n <= 2 a warp's unit is half a tile and
 *                      up to 32 warps share a row tile), the permuted x and its per-group sums in
 *                      shared memory (prepared once per product by a small kernel into the workspace
 *                      on large matrices, else gathered by each block), fp32 math, outliers as fp32
 *                      deltas; SpQR with β1 = 16, qq_bits <= 4, β2 % 16 == 0, wbits 2..4; n <= 4 per
 *                      pass (larger n: passes).
 *                      Launched with programmatic dependent launch where a block fills its SM: its
 *                      weight loads start before it waits for the previous kernel in the stream.
 *   SPQR_CUDA_MMA      (v7) tensor cores: mma.sync m16n8k16 with the weights dequantized to fp16 in
 *                      registers (A) and the activations as fp16 (B), fp32 accumulation, K split
 *                      over blocks with a deterministic reduction, outliers fused; one launch per
 *                      pass of up to 64 activations (x gathered in-kernel for n <= 8 on small
 *                      matrices, else by a pre-gather kernel); SpQR with
 *                      β1 in {16, 32, 64, ...} (powers of two), q <= 4, β2 % 16 == 0, and GPTQ with
 *                      power-of-two groups >= 16, wbits 2..4 (cuda/mma_layout.h)
 *                      Through spqr_cuda_matmul it runs in calls of at most 16 activations.
 *   SPQR_CUDA_GSUM     (v8) tensor cores on the exact codes: per (row, 16-column group) the MMA
 *                      accumulators hold Σ code·x (the codes as exact fp16 numbers, x fp16, fp32
 *                      accumulation), the statistics are applied in fp32 as the reference decoder
 *                      does; K split as v7; passes of up to 8 activations; SpQR with β1 = 16,
 *                      q <= 4, β2 % 16 == 0, wbits 2..4 (cuda/mma_layout.h, "group-sum variant")
 *   SPQR_CUDA_ACT8     (v9) v5 with 8-bit activations, as the CPU's --act8: each block rounds the permuted
 *                      x to int8 per group of 16 (spqr_act8_quantize's float operations), the group
 *                      sums Σ code·xq are exact (four IDP4A per row and group, on code words laid out
 *                      for it: cuda/act8_layout.h), then y += s·(dx·Σ − z·gq) in fp32; outliers with
 *                      the fp32 x. Equals spqr_qtiles_gemv_act8_ref up to summation order. The matrices
 *                      of FUSED; needs SPQR_CUDA_LAYOUT_ACT8. Never picked by AUTO (other numerics).
 *   SPQR_CUDA_STREAM   (v10) the streaming GEMV (cuda/stream_layout.h): each block's weights are records
 *                      streamed into shared memory by the copy engine (cp.async.bulk) through a ring
 *                      of stages, from a producer warp that never waits for the previous kernel
 *                      (programmatic dependent launch: the next product's weights are in flight
 *                      while this one computes); consumer warps run mma.sync on the exact codes
 *                      (group sums Σ code·x in fp32 accumulators, fp16 x) and apply the statistics
 *                      in fp32 as the reference decoder; outliers as fp16 deltas; stream-K over
 *                      16 x 256 super-atoms with a deterministic reduction of shared row tiles;
 *                      passes of up to 8 activations; SpQR with β1 = 16, q <= 4, β2 % 16 == 0,
 *                      wbits 2..4. Measured slower than FUSED and ACT8 at n = 1 (bench/cuda/README.md,
 *                      runs 21-24): the lab and the tests run it, AUTO never picks it
 *   SPQR_CUDA_AUTO     n <= 2: FUSED when built (faster than MMA there on the H200); MMA when built
 *                      for 2 < n <= 16 (any n without the storage layout); else n <= 8: FUSED, else
 *                      TILED, else GENERIC; n > 8: DEQUANT
 */
#ifndef SPQR_CUDA_H
#define SPQR_CUDA_H

#ifdef __cplusplus
#include <string.h>
extern "C" {
#endif

#include "format/qmatrix.h"

typedef enum spqr_cuda_algo {
    SPQR_CUDA_AUTO = 0,
    SPQR_CUDA_TILED = 1,
    SPQR_CUDA_GENERIC = 2,
    SPQR_CUDA_DEQUANT = 3,
    SPQR_CUDA_FUSED = 4,
    SPQR_CUDA_MMA = 5,
    SPQR_CUDA_GSUM = 6,
    SPQR_CUDA_ACT8 = 7,
    SPQR_CUDA_STREAM = 8,
} spqr_cuda_algo;

/* Device layouts an upload builds (spqr_cuda_upload_ex). RAW: the file's blob (GENERIC, and what
 * TILED and DEQUANT read besides their arrays); TILED: TILED and DEQUANT; FUSED: FUSED alone;
 * MMA: MMA alone; GSUM: GSUM alone; ACT8: FUSED and ACT8 (FUSED's arrays plus ACT8's code words);
 * STREAM: STREAM alone. */
enum {
    SPQR_CUDA_LAYOUT_RAW = 1, SPQR_CUDA_LAYOUT_TILED = 2, SPQR_CUDA_LAYOUT_FUSED = 4, SPQR_CUDA_LAYOUT_MMA = 8, SPQR_CUDA_LAYOUT_GSUM = 16,
    SPQR_CUDA_LAYOUT_ACT8 = 32, SPQR_CUDA_LAYOUT_STREAM = 64, SPQR_CUDA_LAYOUT_ALL = 127
};

typedef struct spqr_cuda_ctx spqr_cuda_ctx;         /* stream, cuBLAS handle, workspace */
typedef struct spqr_cuda_qmatrix spqr_cuda_qmatrix; /* one uploaded matrix */

/* Number of CUDA devices (0 when there is no driver or no device; never fails). */
int spqr_cuda_device_count(void);

/* Creates a context on the current device that enqueues on `stream` (NULL: the default stream).
 * Allocates the cuBLAS handle; the workspace grows on demand. SPQR_E_UNSUPPORTED without a device. */
spqr_status spqr_cuda_ctx_new(void *stream, spqr_cuda_ctx **out, spqr_error *err);
void spqr_cuda_ctx_free(spqr_cuda_ctx *c);
/* on = 1: spqr_cuda_matmul_f32 runs ACT8 (8-bit activations) for n = 1 (decode, as the CPU's act8)
 * on uploads that have it; 0 (the default): exact fp32 activations. */
void spqr_cuda_ctx_set_act8(spqr_cuda_ctx *c, int on);
/* Declares that the next product on this context reads the same x (device memory) as the previous
 * one, unchanged since: FUSED/ACT8 then skip preparing x (k_prep_x) when the previous product prepared
 * it for an equal act-order permutation, the same columns and one pass of the same width (q/k/v and
 * gate/up share their input and their permutation). Otherwise x is prepared as usual. One-shot:
 * applies to the next product only. Stream-ordered like the products themselves. */
void spqr_cuda_ctx_reuse_x(spqr_cuda_ctx *c);

/* Uploads `v` (validated by spqr_qview_init; not retained). Synchronous. Builds every layout the
 * matrix supports (spqr_cuda_upload_ex with SPQR_CUDA_LAYOUT_ALL). */
spqr_status spqr_cuda_upload(const spqr_qview *v, spqr_cuda_qmatrix **out, spqr_error *err);
/* The same with a set of layouts: those the matrix does not support are skipped; when that leaves
 * none of them, RAW is uploaded instead (every matrix can run GENERIC). */
spqr_status spqr_cuda_upload_ex(const spqr_qview *v, unsigned layouts, spqr_cuda_qmatrix **out, spqr_error *err);
void spqr_cuda_qmatrix_free(spqr_cuda_qmatrix *m);

/* Whether `algo` can run this matrix (AUTO: always 1). */
int spqr_cuda_supports(const spqr_cuda_qmatrix *m, spqr_cuda_algo algo);

/* Device bytes one product with `algo` reads from the matrix's arrays (codes, statistics,
 * outliers, permutation), not counting X, Y or the DEQUANT path's fp16 intermediate. */
uint64_t spqr_cuda_weight_bytes(const spqr_cuda_qmatrix *m, spqr_cuda_algo algo);

/* Y = X Wᵀ as described above: x_dev fp16 [n][cols], y_dev fp32 [n][rows], both device pointers,
 * enqueued on the context's stream (asynchronous; call errors are reported, kernel faults surface
 * at the next synchronization). 1 <= n <= 65536. May grow the workspace (a synchronizing
 * cudaMalloc) the first time a larger n or matrix is seen: warm up before timing or capturing. */
spqr_status spqr_cuda_matmul(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, spqr_cuda_algo algo, const void *x_dev, int n,
                             float *y_dev, spqr_error *err);

/* Y = X Wᵀ with fp32 X (x_dev fp32 [n][cols], original column order), any n >= 1: ACT8 for n = 1
 * when the context asks for it (spqr_cuda_ctx_set_act8) and the upload has it, else FUSED (fp32 math)
 * for n <= 2 or without the MMA layout, else MMA (X rounded to fp16), else GENERIC (X rounded to fp16).
 * Asynchronous like spqr_cuda_matmul. */
spqr_status spqr_cuda_matmul_f32(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, const float *x_dev, int n, float *y_dev, spqr_error *err);

/* Dequantizes the whole matrix to fp16 W16[rows][ld] (device), columns in STORED order, outliers
 * included (exact fp16 values), columns >= cols finite garbage times a zero activation: ld must be
 * >= spqr_cuda_dequant_ld(m). Uses the tiled layout when supported, else the storage layout. */
spqr_status spqr_cuda_dequant_f16(spqr_cuda_ctx *c, const spqr_cuda_qmatrix *m, void *w16_dev, int ld, spqr_error *err);
int spqr_cuda_dequant_ld(const spqr_cuda_qmatrix *m);

/* Dense fp16 reference through cuBLAS: Y16[n][rows] = X16[n][cols] · W16ᵀ with W16 row-major
 * [rows][cols] (fp32 accumulation, fp16 output). All device pointers. */
spqr_status spqr_cuda_gemm_f16(spqr_cuda_ctx *c, const void *w16_dev, int rows, int cols, const void *x_dev, int n,
                               void *y16_dev, spqr_error *err);

/* ---------------------------------------------------------------------------------------------- */
/* Model: whole-model inference on the GPU (spqr_cuda_model.cu)                                   */
/* ---------------------------------------------------------------------------------------------- */
/*
 * Contract (for `spqr run/ppl/bench --gpu`):
 *   spqr_cuda_model_new(m, &opts, &g, &err)  uploads a loaded model (spqr_model_load; any source the
 *       CPU runs: .spqr, safetensors, llama2.c) to the current CUDA device. Nothing of `m` is
 *       retained: it may be freed once this returns. Synchronous.
 *       Errors: SPQR_E_UNSUPPORTED (no CUDA device), SPQR_E_IO (a CUDA call failed, e.g. out of
 *       device memory), SPQR_E_NOMEM, SPQR_E_RANGE (n_ctx too large).
 *   spqr_cuda_forward(g, ids, n, pos, all_logits, logits, &err)  the same contract as
 *       spqr_ctx_forward: n tokens (1 <= n <= opts.n_batch) at positions pos .. pos+n-1
 *       (pos + n <= opts.n_ctx) appended to the device KV cache; writes the logits of the last token
 *       (all_logits = 0: logits[vocab]) or of every token (logits[n][vocab]) to HOST memory
 *       `logits`. Synchronous (returns when the logits are on the host). Re-running a position
 *       overwrites its cache entries, so a new sequence just starts again at pos = 0.
 *   spqr_cuda_model_free(g).
 * Numerics: fp32 activations, fp32 accumulation. Quantized layers decode exactly as the reference
 * decoder (fp32), outliers as fp32 deltas (with opts.act8, one-token products round their
 * activations to int8 per group of 16 first, as the CPU's --act8 does); 16-bit/fp32 weights are held as fp16. Products with
 * n > 8 on fp16 weights go through cuBLAS with activations rounded to fp16.
 * Not thread-safe: one host thread per spqr_cuda_model.
 */
typedef struct spqr_cuda_model spqr_cuda_model;

typedef struct spqr_cuda_model_opts {
    int n_ctx;    /* KV cache length in tokens; 0: the model's max_seq_len, at most 4096 */
    int n_batch;  /* most tokens per forward call; 0: min(n_ctx, 512) */
    int dense16;  /* 1: quantized matrices dequantized on the host and held as fp16 (the fp16 baseline) */
    int no_graph; /* 1: decode without the CUDA graph (every kernel launched each call) */
    int act8;     /* 1: quantized products of one token (decode) with 8-bit activations (SPQR_CUDA_ACT8,
                   * as the CPU's --act8) where the matrix allows it */
    int n_threads; /* host threads packing the weight layouts at upload; 0: all cores */
} spqr_cuda_model_opts;

spqr_status spqr_cuda_model_new(const spqr_model *m, const spqr_cuda_model_opts *opts, spqr_cuda_model **out, spqr_error *err);
spqr_status spqr_cuda_forward(spqr_cuda_model *g, const int32_t *ids, int n, int pos, int all_logits, float *logits, spqr_error *err);
void spqr_cuda_model_free(spqr_cuda_model *g);
/* Bytes of weights one decoded token reads on the device (all linear layers and the head). */
uint64_t spqr_cuda_model_weight_bytes(const spqr_cuda_model *g);

#ifdef __cplusplus
}
#endif
#endif

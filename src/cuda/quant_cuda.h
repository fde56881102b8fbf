/*
 * quant_cuda.h — GPU quantization (built only with `make CUDA=1`, see cuda.mk): the Hessian
 * accumulator, the damped Cholesky inverse and the GPTQ/SpQR sweep on the device. C-callable;
 * includes no CUDA header (streams are void *).
 *
 * spqr_cuda_quantize_matrix has the contract of spqr_quantize_matrix (quant/quantize.h): same
 * parameters, same spqr_qresult (the blob byte-compatible with the .spqr layout, deq, rel_err,
 * percdamp_used), same validation and errors. The arithmetic follows gptq.c operation by operation
 * (statistics at group starts on the updated columns, fp16 rounding of the statistics, SpQR bilevel
 * statistics over β2 rows, the leave-one-out outlier refit, in-sweep outliers, act order, the damping
 * retries), and the long sums are ordered as the CPU orders them: the Hessians and the lazy block update
 * in kernels/ordered.h's fixed order (k_ordered), the Cholesky factor by the CPU's own LAPACK call on
 * the host (unless spqr_cuda_qctx_set_device_cholesky). So the blob and deq are the CPU's, bit for bit;
 * only rel_err (a diagnostic, through cuBLAS) differs in its last digits. deq is bit-identical to what
 * the blob decodes to (spqr_qview_dequant_rows). The result is freed with spqr_qresult_free (or
 * spqr_cuda_qresult_free, the same thing without linking gptq.c).
 *
 * Work on the device: permutation gathers, the column sweep (one warp per row, the 128-column block
 * in registers, columns in sequence), the block update, code/statistics bit packing, the outlier CSR,
 * the unpermuted dequantized weights and the relative error through H (sgemm). On the host: the
 * act-order sort of diag(H), the Cholesky factor (by default), the CRC-32 of the blob.
 */
#ifndef SPQR_QUANT_CUDA_H
#define SPQR_QUANT_CUDA_H

#ifdef __cplusplus
#include <string.h>
extern "C" {
#endif

#include "quant/quantize.h"

typedef struct spqr_cuda_qctx spqr_cuda_qctx; /* stream, cuBLAS and cuSOLVER handles, cached device buffers */

/* Stages of spqr_cuda_quantize_matrix*, in seconds, summed over calls (host clock around
 * synchronized stages). */
typedef struct spqr_cuda_qtimes {
    double upload;  /* host variant only: W and H to the device */
    double prep;    /* validation, act-order sort, permuted W and float64 H, dead columns */
    double chol;    /* damping + potrf + potri + potrf (+ retries), U to float, τ */
    double sweep;   /* the GPTQ/SpQR sweep and its block sgemm updates */
    double pack;    /* bit packing, outlier CSR, blob download, CRC */
    double deq;     /* unpermuted dequantized weights to the host */
    double relerr;  /* ‖ΔW X‖/‖W X‖ through H */
    double total;
    long calls;
} spqr_cuda_qtimes;

/* Context on the current device, enqueuing on `stream` (NULL: the default stream).
 * SPQR_E_UNSUPPORTED without a device. */
spqr_status spqr_cuda_qctx_new(void *stream, spqr_cuda_qctx **out, spqr_error *err);
void spqr_cuda_qctx_free(spqr_cuda_qctx *c);
/* Accumulated stage times (*t zeroed by reset). */
void spqr_cuda_qctx_times(const spqr_cuda_qctx *c, spqr_cuda_qtimes *t);
void spqr_cuda_qctx_reset_times(spqr_cuda_qctx *c);
/* Hessian accumulation math: 0 (default) fp32 in kernels/ordered.h's fixed order, upper triangle: the
 * CPU pipeline's bits; 1: the full XᵀX through cublasGemmEx with TF32 tensor cores
 * (CUBLAS_COMPUTE_32F_FAST_TF32): faster, not the CPU's values. */
void spqr_cuda_qctx_set_hessian_tf32(spqr_cuda_qctx *c, int on);
/* The damped inverse's Cholesky factor U: 0 (default) on the host by the CPU quantizer's own
 * spqr_chol_inverse (LAPACK) from the device's permuted float64 H, so that U, and with the fixed-order
 * block update every code and outlier, are the CPU's; 1: cuSOLVER on the device (faster for large
 * matrices: 4096² and up), whose float64 rounding can flip U's last float bit against LAPACK's. */
void spqr_cuda_qctx_set_device_cholesky(spqr_cuda_qctx *c, int on);

/* Device memory helpers, so that C callers need no CUDA header. */
void *spqr_cuda_malloc(size_t bytes, spqr_error *err);          /* NULL on failure (err set) */
void spqr_cuda_free(void *dev);
spqr_status spqr_cuda_memset0(void *dev, size_t bytes, spqr_error *err);
spqr_status spqr_cuda_h2d(void *dev, const void *host, size_t bytes, spqr_error *err); /* synchronous */
spqr_status spqr_cuda_d2h(void *host, const void *dev, size_t bytes, spqr_error *err); /* synchronous */
spqr_status spqr_cuda_qctx_sync(spqr_cuda_qctx *c, spqr_error *err);

/* H_dev += alpha · XᵀX for X_dev [n][cols] row-major (device), H_dev [cols][cols] row-major
 * (device): the UPPER triangle of the row-major H (k >= i), in spqr_ordered_gemm's order: bit for bit
 * the CPU pipeline's for the same calls (a call's rows are summed in chunks of SPQR_ORDERED_CHUNK);
 * call spqr_cuda_hessian_symmetrize once all batches are in. Asynchronous on the context's stream. */
spqr_status spqr_cuda_hessian_add(spqr_cuda_qctx *c, const float *X_dev, int n, int cols, float alpha, float *H_dev, spqr_error *err);
/* The same with X in host memory (copied through a device workspace in slices of rows). Synchronous. */
spqr_status spqr_cuda_hessian_add_host(spqr_cuda_qctx *c, const float *X_host, int n, int cols, float alpha, float *H_dev, spqr_error *err);
/* Lower triangle := upper triangle (row-major). Asynchronous. */
spqr_status spqr_cuda_hessian_symmetrize(spqr_cuda_qctx *c, float *H_dev, int cols, spqr_error *err);

/* spqr_quantize_matrix on the GPU: W [rows][cols] and H [cols][cols] (may be NULL only for RTN) in
 * HOST memory. Synchronous; fills *out exactly as the CPU function does. */
spqr_status spqr_cuda_quantize_matrix(spqr_cuda_qctx *c, const float *W, int rows, int cols, const float *H, const spqr_qparams *p,
                                      spqr_qresult *out, spqr_error *err);
/* The same with W_dev and H_dev in DEVICE memory (not modified). want_deq = 0 leaves out->deq NULL
 * (saves the rows·cols·4-byte download; rel_err is still computed on the device). */
spqr_status spqr_cuda_quantize_matrix_dev(spqr_cuda_qctx *c, const float *W_dev, int rows, int cols, const float *H_dev,
                                          const spqr_qparams *p, int want_deq, spqr_qresult *out, spqr_error *err);
void spqr_cuda_qresult_free(spqr_qresult *r);

#ifdef __cplusplus
}
#endif
#endif

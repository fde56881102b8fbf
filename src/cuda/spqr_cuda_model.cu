/*
 * spqr_cuda_model.cu — whole-model inference on the GPU (see spqr_cuda.h, "Model"). The math follows
 * src/model/forward.c step by step, in fp32 with fp32 accumulation:
 *   x = embed(ids); per block: h = rmsnorm(x) w_attn; q, k, v = h W{q,k,v}ᵀ (+b); RoPE (rotate-half
 *   or interleaved, the CPU's cos/sin tables); k, v into the device KV cache [layer][kv head][pos][hd];
 *   per (head, token): causal softmax(q Kᵀ / sqrt(hd)) V (GQA, sliding window); x += att Woᵀ (+bo);
 *   h = rmsnorm(x) w_ffn; x += (silu(h Wgᵀ) ⊙ h Wuᵀ) Wdᵀ; logits = rmsnorm(x) w_final Woutᵀ.
 * Linear layers: quantized matrices (spqr_cuda_matmul_f32) run the fused kernel (v5, fp32; v9 with
 * 8-bit activations for one token when opts.act8) for up to 2 tokens and the tensor-core kernel (v7,
 * activations rounded to fp16, fp32 accumulation) for more,
 * each where the matrix's layout allows it, else the generic one; 16-bit and fp32 matrices are held as fp16 and run a
 * GEMV (fp32 activations, n <= 8) or cuBLAS GemmEx (activations rounded to fp16, fp32 accumulation).
 * With dense16, quantized matrices are dequantized on the host and held as fp16 too (the baseline).
 * Decoding one token (n = 1) replays a CUDA graph captured at the second such call: the position and
 * the token id are read from device memory, so one graph serves every step.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <thread>
#include <vector>

#include "cuda/spqr_cuda_internal.cuh"
extern "C" {
#include "model/model_internal.h"
}

struct glin {
    int rows, cols;
    __half *w16;            /* fp16 [rows][cols] (original column order), or NULL */
    spqr_cuda_qmatrix *q;   /* quantized, or NULL */
    uint64_t bytes;         /* bytes one product reads */
};

struct glayer {
    float *attn_norm, *ffn_norm, *bq, *bk, *bv, *bo;
    glin wq, wk, wv, wo, gate, up, down;
};

struct spqr_cuda_model {
    spqr_config cfg;
    int sliding_window, n_ctx, n_batch, dense16, use_graph;
    spqr_cuda_ctx *ctx;
    cudaStream_t st;
    float *embed;          /* [vocab][dim] fp32 */
    float *final_norm;
    glayer *layers;
    glin out;
    float *rope_cos, *rope_sin; /* [n_ctx][hd/2] */
    float *kc, *vc;             /* [layers][n_kv][n_ctx][hd] */
    float *x, *xn, *xb, *q, *k, *v, *att, *hb, *hb2, *logits;
    float *att_part;            /* one-token attention's chunk partials [n_heads][att_nsplit][hd + 2] */
    int att_nsplit;
    __half *x16;                /* activations rounded for cuBLAS: [n_batch][widest cols] */
    int *d_ids, *d_pos;         /* device: [n_batch] ids, [1] position */
    int *h_ids, *h_pos;         /* pinned host mirrors */
    float *h_logits;            /* pinned [vocab] for the decode graph */
    int decode_calls;
    cudaGraphExec_t graph;
    unsigned graph_gen;         /* the context's buffer generation when the graph was captured */
    uint64_t weight_bytes;
};

/* ---------------------------------------------------------------------------------------------- */
/* Kernels                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

__global__ void k_embed(const float *__restrict__ E, const int *__restrict__ ids, int dim, float *__restrict__ x) {
    const int i = blockIdx.x;
    const float *e = E + (size_t)ids[i] * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) x[(size_t)i * dim + j] = e[j];
}

/* One block per token: optionally x += d, then out = w ⊙ (x · 1/sqrt(mean(x²) + eps)) (sum in double,
 * as the CPU). Rows [0, n) of out map to rows [first, first + n) of x. */
__global__ void k_add_rmsnorm(float *__restrict__ x, const float *__restrict__ d, const float *__restrict__ w, float *__restrict__ out, int dim,
                              float eps, int first) {
    const int i = blockIdx.x + first;
    float *xr = x + (size_t)i * dim;
    const float *dr = d ? d + (size_t)i * dim : NULL;
    double ss = 0;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) {
        float v = xr[j];
        if (dr) { v += dr[j]; xr[j] = v; }
        ss += (double)v * v;
    }
    __shared__ double red[32];
    for (int o = 16; o > 0; o >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    if (threadIdx.x < 32) {
        double v = threadIdx.x < (blockDim.x >> 5) ? red[threadIdx.x] : 0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    if (!w) return;
    const float r = (float)(1.0 / sqrt(red[0] / dim + eps));
    float *orow = out + (size_t)blockIdx.x * dim;
    for (int j = threadIdx.x; j < dim; j += blockDim.x) orow[j] = w[j] * (xr[j] * r);
}

__global__ void k_add(float *__restrict__ x, const float *__restrict__ d, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) x[i] += d[i];
}

__global__ void k_bias(float *__restrict__ y, const float *__restrict__ b, int rows, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) y[i] += b[i % rows];
}

__global__ void k_swiglu(float *__restrict__ g, const float *__restrict__ u, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = g[i];
        g[i] = v / (1.0f + expf(-v)) * u[i];
    }
}

__global__ void k_to_f16(const float *__restrict__ x, __half *__restrict__ y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) y[i] = __float2half_rn(x[i]);
}

/* RoPE on q and k of token blockIdx.x (position *pos + i), then k and v into the cache. */
__global__ void k_rope_cache(float *__restrict__ q, float *__restrict__ k, const float *__restrict__ v, const float *__restrict__ cs,
                             const float *__restrict__ sn, const int *__restrict__ pos_p, int n_heads, int n_kv, int hd, int half_style,
                             float *__restrict__ kc, float *__restrict__ vc, int layer, int n_ctx) {
    const int i = blockIdx.x, p = *pos_p + i, half = hd / 2;
    const int qd = n_heads * hd, kvd = n_kv * hd;
    const float *c = cs + (size_t)p * half, *s = sn + (size_t)p * half;
    for (int t = threadIdx.x; t < (n_heads + n_kv) * half; t += blockDim.x) {
        const int h = t / half, j = t % half;
        float *vec = h < n_heads ? q + (size_t)i * qd + (size_t)h * hd : k + (size_t)i * kvd + (size_t)(h - n_heads) * hd;
        if (half_style) {
            const float a = vec[j], b = vec[j + half];
            vec[j] = a * c[j] - b * s[j];
            vec[j + half] = b * c[j] + a * s[j];
        } else {
            const float a = vec[2 * j], b = vec[2 * j + 1];
            vec[2 * j] = a * c[j] - b * s[j];
            vec[2 * j + 1] = a * s[j] + b * c[j];
        }
    }
    __syncthreads();
    for (int t = threadIdx.x; t < kvd; t += blockDim.x) {
        const int kh = t / hd, d = t % hd;
        const size_t off = (((size_t)layer * n_kv + kh) * n_ctx + p) * hd + d;
        kc[off] = k[(size_t)i * kvd + t];
        vc[off] = v[(size_t)i * kvd + t];
    }
}

/* Attention of query token blockIdx.y, head blockIdx.x: scores in shared memory ([n_ctx] floats). */
__global__ void k_attn(const float *__restrict__ q, const float *__restrict__ kc, const float *__restrict__ vc, float *__restrict__ out,
                       const int *__restrict__ pos_p, int n_heads, int n_kv, int hd, int n_ctx, int layer, int window, float scale) {
    extern __shared__ float sh[];
    float *qs = sh, *S = sh + hd;
    __shared__ float red[32];
    const int h = blockIdx.x, i = blockIdx.y, kvh = h / (n_heads / n_kv);
    const int last = *pos_p + i, first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
    const int qd = n_heads * hd, lane = threadIdx.x & 31, wp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const size_t base = ((size_t)layer * n_kv + kvh) * n_ctx * hd;
    const float *K = kc + base, *V = vc + base;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) qs[d] = q[(size_t)i * qd + (size_t)h * hd + d];
    __syncthreads();
    float mx = -INFINITY;
    for (int t = first + wp; t <= last; t += nw) {
        const float *kr = K + (size_t)t * hd;
        float s = 0;
        for (int d = lane; d < hd; d += 32) s = fmaf(qs[d], kr[d], s);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        s *= scale;
        if (lane == 0) S[t] = s;
        mx = fmaxf(mx, s);
    }
    if (lane == 0) red[wp] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int k = 0; k < nw; k++) mx = fmaxf(mx, red[k]);
    __syncthreads();
    float sum = 0;
    for (int t = first + threadIdx.x; t <= last; t += blockDim.x) {
        const float e = expf(S[t] - mx);
        S[t] = e;
        sum += e;
    }
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) red[wp] = sum;
    __syncthreads();
    sum = 0;
    for (int k = 0; k < nw; k++) sum += red[k];
    const float inv = 1.0f / sum;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0;
        for (int t = first; t <= last; t++) o = fmaf(S[t] * inv, V[(size_t)t * hd + d], o);
        out[(size_t)i * qd + (size_t)h * hd + d] = o;
    }
}

/* Attention of one token (decode), split over positions as flash-decoding does: block (head h, chunk c)
 * takes positions [first + c·ATT_CH, first + (c+1)·ATT_CH) ∩ [first, last] and writes its partial
 * (Σ_t e_t·V[t][hd], then m = max score, l = Σ_t e_t, with e_t = exp(score_t − m)) to part[h][c];
 * k_attn_combine merges the chunks. The grid holds every chunk the context can need (the position is
 * read on the device, so one captured graph serves every step); chunks past the last position exit.
 * k_attn (one block per (head, token), its positions in sequence) left the SMs idle on long contexts:
 * 32 blocks walking ~600 positions took ~150 µs per layer at Llama-7B's shape. 128 threads. */
#define ATT_CH 64
__global__ void __launch_bounds__(128) k_attn_split(const float *__restrict__ q, const float *__restrict__ kc, const float *__restrict__ vc,
                                                    float *__restrict__ part, const int *__restrict__ pos_p, int n_heads, int n_kv, int hd, int n_ctx,
                                                    int layer, int window, float scale, int nsplit) {
    extern __shared__ float sh[];
    float *qs = sh, *S = sh + hd, *ored = S + ATT_CH; /* ored: [128] partial o of the position groups */
    const int h = blockIdx.x, c = blockIdx.y, kvh = h / (n_heads / n_kv), tid = threadIdx.x, lane = tid & 31, wp = tid >> 5;
    const int last = *pos_p, first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0, t0 = first + c * ATT_CH;
    if (t0 > last) return; /* block-uniform */
    const int len = min(ATT_CH, last + 1 - t0);
    const size_t base = ((size_t)layer * n_kv + kvh) * n_ctx * hd;
    const float *K = kc + base + (size_t)t0 * hd, *V = vc + base + (size_t)t0 * hd;
    for (int d = tid; d < hd; d += 128) qs[d] = q[(size_t)h * hd + d];
    __syncthreads();
#pragma unroll 2
    for (int k = wp; k < len; k += 4) { /* a warp per position, its lanes over d */
        const float *kr = K + (size_t)k * hd;
        float s = 0;
        for (int d = lane; d < hd; d += 32) s = fmaf(qs[d], kr[d], s);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (lane == 0) S[k] = s * scale;
    }
    __syncthreads();
    float m = -INFINITY;
    for (int k = 0; k < len; k++) m = fmaxf(m, S[k]);
    __syncthreads(); /* every thread has read S before it is overwritten */
    if (tid < len) S[tid] = expf(S[tid] - m);
    __syncthreads();
    /* o: thread = (dim d, position group p of P = 128 / hd groups, at least 1) */
    const int P = hd < 128 ? 128 / hd : 1, p = tid / hd < P ? tid / hd : -1;
    for (int d0 = 0; d0 < hd; d0 += 128) {
        const int d = d0 + tid % (hd < 128 ? hd : 128);
        float o0 = 0, o1 = 0;
        if (p >= 0 && d < hd) {
            int k = p;
            for (; k + P < len; k += 2 * P) { o0 = fmaf(S[k], V[(size_t)k * hd + d], o0); o1 = fmaf(S[k + P], V[(size_t)(k + P) * hd + d], o1); }
            if (k < len) o0 = fmaf(S[k], V[(size_t)k * hd + d], o0);
        }
        float o = o0 + o1;
        float *pr = part + ((size_t)h * nsplit + c) * (hd + 2);
        if (P > 1) { /* sum the position groups (hd < 128: one pass) */
            ored[tid] = o;
            __syncthreads();
            if (tid < hd) {
                o = 0;
                for (int g = 0; g < P; g++) o += ored[g * hd + tid];
                pr[tid] = o;
            }
        } else if (p >= 0 && d < hd) pr[d] = o;
    }
    if (tid == 0) {
        float l = 0;
        for (int k = 0; k < len; k++) l += S[k];
        float *pr = part + ((size_t)h * nsplit + c) * (hd + 2);
        pr[hd] = m;
        pr[hd + 1] = l;
    }
}

/* out[h][d] = Σ_c w_c·o_c[d] / Σ_c w_c·l_c with w_c = exp(m_c − max_c m_c), over the chunks that hold
 * positions (k_attn_split). Block h, 128 threads over d. */
__global__ void __launch_bounds__(128) k_attn_combine(const float *__restrict__ part, float *__restrict__ out, const int *__restrict__ pos_p, int hd,
                                                      int window, int nsplit) {
    const int h = blockIdx.x, last = *pos_p, first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
    const int nc = (last - first) / ATT_CH + 1;
    const float *pr = part + (size_t)h * nsplit * (hd + 2);
    float M = -INFINITY;
    for (int c = 0; c < nc; c++) M = fmaxf(M, pr[(size_t)c * (hd + 2) + hd]);
    float L = 0;
    for (int c = 0; c < nc; c++) L += expf(pr[(size_t)c * (hd + 2) + hd] - M) * pr[(size_t)c * (hd + 2) + hd + 1];
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float o = 0;
        for (int c = 0; c < nc; c++) o = fmaf(expf(pr[(size_t)c * (hd + 2) + hd] - M), pr[(size_t)c * (hd + 2) + d], o);
        out[(size_t)h * hd + d] = o / L;
    }
}

/* fp16 weights, fp32 activations: y[b][r] = Σ_j W[r][j] x[b][j], one warp per row, B <= 8
 * activations; cols % 8 == 0 (16-byte loads), else the scalar loop. */
template <int B>
__global__ void __launch_bounds__(256) k_gemv16(const __half *__restrict__ W, int rows, int cols, const float *__restrict__ x, int n,
                                                float *__restrict__ y) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * 8 + (threadIdx.x >> 5);
    if (r >= rows) return;
    const __half *wr = W + (size_t)r * cols;
    float acc[B];
#pragma unroll
    for (int b = 0; b < B; b++) acc[b] = 0.f;
    if ((cols & 7) == 0) {
        for (int j = lane * 8; j < cols; j += 256) {
            const uint4 u = __ldg((const uint4 *)(wr + j));
            const __half2 *h2 = (const __half2 *)&u;
            float wf[8];
#pragma unroll
            for (int e = 0; e < 4; e++) { const float2 f = __half22float2(h2[e]); wf[2 * e] = f.x; wf[2 * e + 1] = f.y; }
#pragma unroll
            for (int b = 0; b < B; b++) {
                if (b >= n) break;
                const float4 x0 = __ldg((const float4 *)(x + (size_t)b * cols + j)), x1 = __ldg((const float4 *)(x + (size_t)b * cols + j + 4));
                acc[b] = fmaf(wf[0], x0.x, fmaf(wf[1], x0.y, fmaf(wf[2], x0.z, fmaf(wf[3], x0.w, acc[b]))));
                acc[b] = fmaf(wf[4], x1.x, fmaf(wf[5], x1.y, fmaf(wf[6], x1.z, fmaf(wf[7], x1.w, acc[b]))));
            }
        }
    } else {
        for (int j = lane; j < cols; j += 32) {
            const float wv = __half2float(wr[j]);
#pragma unroll
            for (int b = 0; b < B; b++)
                if (b < n) acc[b] = fmaf(wv, x[(size_t)b * cols + j], acc[b]);
        }
    }
#pragma unroll
    for (int b = 0; b < B; b++) {
        float v = acc[b];
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        if (lane == 0 && b < n) y[(size_t)b * rows + r] = v;
    }
}

static unsigned grid_for(size_t n) { size_t b = (n + 255) / 256; return (unsigned)(b < 4096 ? (b ? b : 1) : 4096); }

/* ---------------------------------------------------------------------------------------------- */
/* Linear layers                                                                                  */
/* ---------------------------------------------------------------------------------------------- */

/* reuse: x is the previous product's x, unchanged (spqr_cuda_ctx_reuse_x) */
static spqr_status lin_forward(spqr_cuda_model *g, const glin *L, const float *x, int n, float *y, spqr_error *err, int reuse = 0) {
    if (L->q) {
        if (reuse) spqr_cuda_ctx_reuse_x(g->ctx);
        return spqr_cuda_matmul_f32(g->ctx, L->q, x, n, y, err);
    }
    if (n <= 8) {
        const unsigned blocks = (unsigned)((L->rows + 7) / 8);
        if (n == 1) k_gemv16<1><<<blocks, 256, 0, g->st>>>(L->w16, L->rows, L->cols, x, n, y);
        else if (n <= 2) k_gemv16<2><<<blocks, 256, 0, g->st>>>(L->w16, L->rows, L->cols, x, n, y);
        else if (n <= 4) k_gemv16<4><<<blocks, 256, 0, g->st>>>(L->w16, L->rows, L->cols, x, n, y);
        else k_gemv16<8><<<blocks, 256, 0, g->st>>>(L->w16, L->rows, L->cols, x, n, y);
        CK(cudaGetLastError(), "gemv16");
        return SPQR_OK;
    }
    const size_t nx = (size_t)n * L->cols;
    k_to_f16<<<grid_for(nx), 256, 0, g->st>>>(x, g->x16, nx);
    CK(cudaGetLastError(), "to f16");
    const float one = 1.f, zero = 0.f;
    cublasStatus_t bs = cublasGemmEx(g->ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->rows, n, L->cols, &one, L->w16, CUDA_R_16F, L->cols, g->x16,
                                     CUDA_R_16F, L->cols, &zero, y, CUDA_R_32F, L->rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (bs != CUBLAS_STATUS_SUCCESS) return spqr_set_err(err, SPQR_E_IO, "cuda: cublasGemmEx failed (%d)", (int)bs);
    return SPQR_OK;
}

static spqr_status upload_f32(const float *h, size_t n, float **d, spqr_error *err) {
    *d = NULL;
    if (!h) return SPQR_OK;
    CK(cudaMalloc(d, n * sizeof(float)), "alloc");
    CK(cudaMemcpy(*d, h, n * sizeof(float), cudaMemcpyHostToDevice), "upload");
    return SPQR_OK;
}

static spqr_status upload_f16(const uint16_t *h, size_t n, __half **d, spqr_error *err) {
    CK(cudaMalloc(d, n * 2), "alloc");
    CK(cudaMemcpy(*d, h, n * 2, cudaMemcpyHostToDevice), "upload");
    return SPQR_OK;
}

/* A linear layer as fp16 (w fp32 / 16-bit / dequantized) or quantized. */
static spqr_status lin_upload(const spqr_linear *s, int dense16, int act8, glin *L, spqr_error *err) {
    memset(L, 0, sizeof *L);
    L->rows = s->rows;
    L->cols = s->cols;
    const size_t n = (size_t)s->rows * s->cols;
    if (s->q && !dense16) {
        spqr_status st = spqr_cuda_upload_ex(s->q, SPQR_CUDA_LAYOUT_FUSED | SPQR_CUDA_LAYOUT_MMA | (act8 ? SPQR_CUDA_LAYOUT_ACT8 : 0), &L->q, err);
        if (st) return st;
        L->bytes = spqr_cuda_weight_bytes(L->q, L->q->fused ? SPQR_CUDA_FUSED : L->q->mma ? SPQR_CUDA_MMA : SPQR_CUDA_GENERIC);
        return SPQR_OK;
    }
    uint16_t *h = (uint16_t *)malloc(n * 2);
    if (!h) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    if (s->h && !s->h_bf16) memcpy(h, s->h, n * 2);
    else if (s->h) for (size_t i = 0; i < n; i++) h[i] = spqr_f32_to_f16(spqr_bf16_to_f32(s->h[i]));
    else if (s->w) for (size_t i = 0; i < n; i++) h[i] = spqr_f32_to_f16(s->w[i]);
    else if (s->q) {
        float *row = (float *)malloc((size_t)s->cols * sizeof(float));
        if (!row) { free(h); return spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); }
        for (int r = 0; r < s->rows; r++) {
            spqr_qview_dequant_rows(s->q, (uint32_t)r, (uint32_t)r + 1, 1, row);
            for (int j = 0; j < s->cols; j++) h[(size_t)r * s->cols + j] = spqr_f32_to_f16(row[j]);
        }
        free(row);
    } else {
        free(h);
        return spqr_set_err(err, SPQR_E_ARG, "cuda model: a linear layer has no weights");
    }
    spqr_status st = upload_f16(h, n, &L->w16, err);
    free(h);
    L->bytes = n * 2;
    return st;
}

static void lin_free(glin *L) {
    cudaFree(L->w16);
    spqr_cuda_qmatrix_free(L->q);
}

/* Every linear layer of the model (7 per block, then the head) through lin_upload, on up to
 * opts.n_threads host threads (0: all cores): the layouts are packed on the host, which for a
 * 7B-sized model takes minutes on one thread. Workers take matrices in order from a shared counter
 * and run on the caller's device. Returns the first failure in model order. */
static spqr_status upload_linears(const spqr_model *m, spqr_cuda_model *g, const spqr_cuda_model_opts &o, spqr_error *err) {
    const int nl = m->cfg.n_layers, total = 7 * nl + 1;
    std::vector<const spqr_linear *> src(total);
    std::vector<glin *> dst(total);
    for (int l = 0; l < nl; l++) {
        const spqr_layer *s = &m->layers[l];
        glayer *L = &g->layers[l];
        const spqr_linear *S[7] = {&s->wq, &s->wk, &s->wv, &s->wo, &s->w_gate, &s->w_up, &s->w_down};
        glin *D[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
        for (int k = 0; k < 7; k++) { src[7 * l + k] = S[k]; dst[7 * l + k] = D[k]; }
    }
    src[total - 1] = &m->output;
    dst[total - 1] = &g->out;
    std::vector<spqr_status> sts(total, SPQR_OK);
    std::vector<spqr_error> errs(total);
    int dev = 0;
    cudaGetDevice(&dev);
    std::atomic<int> next(0);
    auto work = [&]() {
        cudaSetDevice(dev);
        for (int i; (i = next.fetch_add(1)) < total;) {
            sts[i] = lin_upload(src[i], o.dense16, o.act8, dst[i], &errs[i]);
            if (sts[i]) next.store(total); /* stop handing out work */
        }
    };
    int nt = o.n_threads > 0 ? o.n_threads : (int)std::thread::hardware_concurrency();
    nt = nt < 1 ? 1 : nt > total ? total : nt;
    std::vector<std::thread> th;
    for (int t = 1; t < nt; t++) th.emplace_back(work);
    work();
    for (auto &t : th) t.join();
    for (int i = 0; i < total; i++) {
        if (sts[i]) { *err = errs[i]; return sts[i]; }
        g->weight_bytes += dst[i]->bytes;
    }
    return SPQR_OK;
}

/* ---------------------------------------------------------------------------------------------- */
/* RoPE tables: the CPU's (forward.c), computed the same way on the host                          */
/* ---------------------------------------------------------------------------------------------- */

static void rope_inv_freq(const spqr_config *c, float *inv) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float e = (float)(2 * i) / (float)c->head_dim;
        inv[i] = 1.0f / powf(c->rope_theta, e);
    }
    if (c->rope_scaling == SPQR_ROPE_SCALING_LINEAR) {
        for (int i = 0; i < half; i++) inv[i] /= c->rope_factor;
    } else if (c->rope_scaling == SPQR_ROPE_SCALING_LLAMA3) {
        const double old = c->rope_orig_max_pos, lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor, f = c->rope_factor;
        const double low_wavelen = old / lo, high_wavelen = old / hi;
        for (int i = 0; i < half; i++) {
            double wavelen = 2 * M_PI / inv[i];
            if (wavelen < high_wavelen) continue;
            if (wavelen > low_wavelen) { inv[i] = (float)(inv[i] / f); continue; }
            double smooth = (old / wavelen - lo) / (hi - lo);
            inv[i] = (float)((1 - smooth) * inv[i] / f + smooth * inv[i]);
        }
    }
}

/* ---------------------------------------------------------------------------------------------- */
/* Construction                                                                                   */
/* ---------------------------------------------------------------------------------------------- */

extern "C" spqr_status spqr_cuda_model_new(const spqr_model *m, const spqr_cuda_model_opts *opts, spqr_cuda_model **out, spqr_error *err) {
    *out = NULL;
    spqr_cuda_model_opts o;
    memset(&o, 0, sizeof o);
    if (opts) o = *opts;
    const spqr_config *cfg = &m->cfg;
    if (o.n_ctx < 0 || o.n_batch < 0) return spqr_set_err(err, SPQR_E_ARG, "cuda model: negative size");
    if (o.n_ctx == 0) o.n_ctx = cfg->max_seq_len < 4096 ? cfg->max_seq_len : 4096;
    if (o.n_batch == 0) o.n_batch = o.n_ctx < 512 ? o.n_ctx : 512;
    if (o.n_batch > o.n_ctx) o.n_batch = o.n_ctx;
    if ((size_t)(o.n_ctx + cfg->head_dim) * 4 > 200 * 1024) return spqr_set_err(err, SPQR_E_RANGE, "cuda model: n_ctx %d is too large for the attention kernel", o.n_ctx);
    spqr_cuda_model *g = (spqr_cuda_model *)calloc(1, sizeof *g);
    if (!g) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    g->cfg = *cfg;
    g->sliding_window = m->sliding_window;
    g->n_ctx = o.n_ctx;
    g->n_batch = o.n_batch;
    g->dense16 = o.dense16;
    g->use_graph = !o.no_graph;
    spqr_status st = SPQR_OK;
#define TRY(x)                         \
    do {                               \
        if ((st = (x))) goto fail;     \
    } while (0)
#define TRYC(x, what)                                                                                              \
    do {                                                                                                           \
        cudaError_t e_ = (x);                                                                                      \
        if (e_ != cudaSuccess) { st = spqr_set_err(err, SPQR_E_IO, "cuda: %s: %s", what, cudaGetErrorString(e_)); goto fail; } \
    } while (0)
    {
        TRYC(cudaStreamCreateWithFlags(&g->st, cudaStreamNonBlocking), "stream");
        TRY(spqr_cuda_ctx_new(g->st, &g->ctx, err));
        spqr_cuda_ctx_set_act8(g->ctx, o.act8);
        const int dim = cfg->dim, hd = cfg->head_dim, qd = cfg->n_heads * hd, kvd = cfg->n_kv_heads * hd, hid = cfg->hidden_dim, V = cfg->vocab_size;
        const size_t B = (size_t)o.n_batch;
        /* embedding rows as fp32, decoded on the host exactly as the CPU does */
        {
            float *he = (float *)malloc((size_t)V * dim * sizeof(float));
            if (!he) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto fail; }
            for (int id = 0; id < V; id++) {
                float *row = he + (size_t)id * dim;
                if (m->embed) memcpy(row, m->embed + (size_t)id * dim, (size_t)dim * sizeof(float));
                else if (m->embed_q) spqr_qview_dequant_rows(m->embed_q, (uint32_t)id, (uint32_t)id + 1, 1, row);
                else {
                    const uint16_t *h = m->embed16 + (size_t)id * dim;
                    for (int i = 0; i < dim; i++) row[i] = m->embed16_bf16 ? spqr_bf16_to_f32(h[i]) : spqr_f16_to_f32(h[i]);
                }
            }
            st = upload_f32(he, (size_t)V * dim, &g->embed, err);
            free(he);
            if (st) goto fail;
        }
        TRY(upload_f32(m->final_norm, dim, &g->final_norm, err));
        g->layers = (glayer *)calloc(cfg->n_layers, sizeof(glayer));
        if (!g->layers) { st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto fail; }
        for (int l = 0; l < cfg->n_layers; l++) {
            const spqr_layer *s = &m->layers[l];
            glayer *L = &g->layers[l];
            TRY(upload_f32(s->attn_norm, dim, &L->attn_norm, err));
            TRY(upload_f32(s->ffn_norm, dim, &L->ffn_norm, err));
            TRY(upload_f32(s->bq, qd, &L->bq, err));
            TRY(upload_f32(s->bk, kvd, &L->bk, err));
            TRY(upload_f32(s->bv, kvd, &L->bv, err));
            TRY(upload_f32(s->bo, dim, &L->bo, err));
        }
        TRY(upload_linears(m, g, o, err));
        /* RoPE tables */
        {
            const int half = hd / 2;
            float *inv = (float *)malloc(half * sizeof(float));
            float *hc = (float *)malloc((size_t)o.n_ctx * half * sizeof(float)), *hs = (float *)malloc((size_t)o.n_ctx * half * sizeof(float));
            if (!inv || !hc || !hs) { free(inv); free(hc); free(hs); st = spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); goto fail; }
            rope_inv_freq(cfg, inv);
            for (int p = 0; p < o.n_ctx; p++)
                for (int i = 0; i < half; i++) {
                    float a = (float)p * inv[i];
                    hc[(size_t)p * half + i] = (float)cos((double)a);
                    hs[(size_t)p * half + i] = (float)sin((double)a);
                }
            st = upload_f32(hc, (size_t)o.n_ctx * half, &g->rope_cos, err);
            if (!st) st = upload_f32(hs, (size_t)o.n_ctx * half, &g->rope_sin, err);
            free(inv); free(hc); free(hs);
            if (st) goto fail;
        }
        const size_t cache = (size_t)cfg->n_layers * kvd * o.n_ctx;
        int maxc = dim > hid ? dim : hid;
        if (qd > maxc) maxc = qd;
        TRYC(cudaMalloc(&g->kc, cache * 4), "kv cache");
        TRYC(cudaMalloc(&g->vc, cache * 4), "kv cache");
        TRYC(cudaMemset(g->kc, 0, cache * 4), "kv cache");
        TRYC(cudaMemset(g->vc, 0, cache * 4), "kv cache");
        TRYC(cudaMalloc(&g->x, B * dim * 4), "buffers");
        TRYC(cudaMalloc(&g->xn, B * dim * 4), "buffers");
        TRYC(cudaMalloc(&g->xb, B * dim * 4), "buffers");
        TRYC(cudaMalloc(&g->q, B * qd * 4), "buffers");
        TRYC(cudaMalloc(&g->att, B * qd * 4), "buffers");
        TRYC(cudaMalloc(&g->k, B * kvd * 4), "buffers");
        TRYC(cudaMalloc(&g->v, B * kvd * 4), "buffers");
        TRYC(cudaMalloc(&g->hb, B * hid * 4), "buffers");
        TRYC(cudaMalloc(&g->hb2, B * hid * 4), "buffers");
        TRYC(cudaMalloc(&g->logits, B * V * 4), "buffers");
        TRYC(cudaMalloc(&g->x16, B * maxc * 2), "buffers");
        TRYC(cudaMalloc(&g->d_ids, B * 4), "buffers");
        TRYC(cudaMalloc(&g->d_pos, 4), "buffers");
        TRYC(cudaMallocHost(&g->h_ids, B * 4), "pinned");
        TRYC(cudaMallocHost(&g->h_pos, 4), "pinned");
        TRYC(cudaMallocHost(&g->h_logits, (size_t)V * 4), "pinned");
        TRYC(cudaFuncSetAttribute(k_attn, cudaFuncAttributeMaxDynamicSharedMemorySize, (o.n_ctx + hd) * 4), "attention smem");
        {
            const int span = m->sliding_window > 0 && m->sliding_window < o.n_ctx ? m->sliding_window : o.n_ctx;
            g->att_nsplit = (span + ATT_CH - 1) / ATT_CH;
            TRYC(cudaMalloc(&g->att_part, (size_t)cfg->n_heads * g->att_nsplit * (hd + 2) * 4), "buffers");
        }
    }
    *out = g;
    return SPQR_OK;
fail:
    spqr_cuda_model_free(g);
    return st;
#undef TRY
#undef TRYC
}

extern "C" void spqr_cuda_model_free(spqr_cuda_model *g) {
    if (!g) return;
    if (g->st) cudaStreamSynchronize(g->st);
    if (g->graph) cudaGraphExecDestroy(g->graph);
    if (g->layers)
        for (int l = 0; l < g->cfg.n_layers; l++) {
            glayer *L = &g->layers[l];
            cudaFree(L->attn_norm); cudaFree(L->ffn_norm); cudaFree(L->bq); cudaFree(L->bk); cudaFree(L->bv); cudaFree(L->bo);
            lin_free(&L->wq); lin_free(&L->wk); lin_free(&L->wv); lin_free(&L->wo); lin_free(&L->gate); lin_free(&L->up); lin_free(&L->down);
        }
    free(g->layers);
    lin_free(&g->out);
    void *bufs[] = {g->embed, g->final_norm, g->rope_cos, g->rope_sin, g->kc, g->vc, g->x, g->xn, g->xb, g->q, g->k, g->v, g->att, g->hb, g->hb2,
                    g->logits, g->x16, g->d_ids, g->d_pos, g->att_part};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) cudaFree(bufs[i]);
    cudaFreeHost(g->h_ids); cudaFreeHost(g->h_pos); cudaFreeHost(g->h_logits);
    spqr_cuda_ctx_free(g->ctx);
    if (g->st) cudaStreamDestroy(g->st);
    free(g);
}

extern "C" uint64_t spqr_cuda_model_weight_bytes(const spqr_cuda_model *g) { return g->weight_bytes; }

/* ---------------------------------------------------------------------------------------------- */
/* Forward                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* Everything after the ids and position are on the device: n tokens, logits of rows [first, n). */
static spqr_status enqueue_forward(spqr_cuda_model *g, int n, int first, spqr_error *err) {
    const spqr_config *c = &g->cfg;
    const int dim = c->dim, hd = c->head_dim, qd = c->n_heads * hd, kvd = c->n_kv_heads * hd, hid = c->hidden_dim;
    const float scale = 1.0f / sqrtf((float)hd);
    cudaStream_t st = g->st;
    spqr_status s;
    k_embed<<<n, 128, 0, st>>>(g->embed, g->d_ids, dim, g->x);
    CK(cudaGetLastError(), "embed");
    for (int l = 0; l < c->n_layers; l++) {
        const glayer *L = &g->layers[l];
        /* x += (previous block's down output, in xb), then the attention norm */
        k_add_rmsnorm<<<n, 256, 0, st>>>(g->x, l ? g->xb : NULL, L->attn_norm, g->xn, dim, c->norm_eps, 0);
        CK(cudaGetLastError(), "rmsnorm");
        if ((s = lin_forward(g, &L->wq, g->xn, n, g->q, err))) return s;
        /* k and v read q's x: q's prepared image serves them where their permutations agree (gate/up too) */
        if ((s = lin_forward(g, &L->wk, g->xn, n, g->k, err, 1))) return s;
        if ((s = lin_forward(g, &L->wv, g->xn, n, g->v, err, 1))) return s;
        if (L->bq) k_bias<<<grid_for((size_t)n * qd), 256, 0, st>>>(g->q, L->bq, qd, (size_t)n * qd);
        if (L->bk) k_bias<<<grid_for((size_t)n * kvd), 256, 0, st>>>(g->k, L->bk, kvd, (size_t)n * kvd);
        if (L->bv) k_bias<<<grid_for((size_t)n * kvd), 256, 0, st>>>(g->v, L->bv, kvd, (size_t)n * kvd);
        k_rope_cache<<<n, 256, 0, st>>>(g->q, g->k, g->v, g->rope_cos, g->rope_sin, g->d_pos, c->n_heads, c->n_kv_heads, hd,
                                        c->rope_style == SPQR_ROPE_HALF, g->kc, g->vc, l, g->n_ctx);
        CK(cudaGetLastError(), "rope");
        if (n == 1) {
            k_attn_split<<<dim3(c->n_heads, g->att_nsplit), 128, (hd + ATT_CH + 128) * 4, st>>>(
                g->q, g->kc, g->vc, g->att_part, g->d_pos, c->n_heads, c->n_kv_heads, hd, g->n_ctx, l, g->sliding_window, scale, g->att_nsplit);
            k_attn_combine<<<c->n_heads, 128, 0, st>>>(g->att_part, g->att, g->d_pos, hd, g->sliding_window, g->att_nsplit);
        } else
            k_attn<<<dim3(c->n_heads, n), 128, (g->n_ctx + hd) * 4, st>>>(g->q, g->kc, g->vc, g->att, g->d_pos, c->n_heads, c->n_kv_heads, hd,
                                                                          g->n_ctx, l, g->sliding_window, scale);
        CK(cudaGetLastError(), "attention");
        if ((s = lin_forward(g, &L->wo, g->att, n, g->xb, err))) return s;
        if (L->bo) k_bias<<<grid_for((size_t)n * dim), 256, 0, st>>>(g->xb, L->bo, dim, (size_t)n * dim);
        k_add_rmsnorm<<<n, 256, 0, st>>>(g->x, g->xb, L->ffn_norm, g->xn, dim, c->norm_eps, 0);
        CK(cudaGetLastError(), "rmsnorm");
        if ((s = lin_forward(g, &L->gate, g->xn, n, g->hb, err))) return s;
        if ((s = lin_forward(g, &L->up, g->xn, n, g->hb2, err, 1))) return s;
        k_swiglu<<<grid_for((size_t)n * hid), 256, 0, st>>>(g->hb, g->hb2, (size_t)n * hid);
        CK(cudaGetLastError(), "swiglu");
        if ((s = lin_forward(g, &L->down, g->hb, n, g->xb, err))) return s;
    }
    /* the last block's residual and the final norm, rows [first, n) only */
    k_add_rmsnorm<<<n - first, 256, 0, st>>>(g->x, g->xb, g->final_norm, g->xn, dim, c->norm_eps, first);
    CK(cudaGetLastError(), "final norm");
    return lin_forward(g, &g->out, g->xn, n - first, g->logits, err);
}

extern "C" spqr_status spqr_cuda_forward(spqr_cuda_model *g, const int32_t *ids, int n, int pos, int all_logits, float *logits, spqr_error *err) {
    const spqr_config *c = &g->cfg;
    if (n < 1 || n > g->n_batch) return spqr_set_err(err, SPQR_E_ARG, "cuda forward: %d tokens, the model takes 1 to %d per call", n, g->n_batch);
    if (pos < 0 || pos + n > g->n_ctx) return spqr_set_err(err, SPQR_E_RANGE, "cuda forward: positions %d..%d exceed the context of %d", pos, pos + n - 1, g->n_ctx);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size) return spqr_set_err(err, SPQR_E_ARG, "cuda forward: token id %d is outside the vocabulary (%d)", ids[i], c->vocab_size);
    const int first = all_logits ? 0 : n - 1, rows = n - first;
    const size_t lbytes = (size_t)rows * c->vocab_size * sizeof(float);
    memcpy(g->h_ids, ids, (size_t)n * sizeof(int32_t));
    *g->h_pos = pos;
    spqr_status s;
    if (n == 1 && g->use_graph) {
        /* decode: the first call runs eagerly (workspaces settle), the second captures the graph; a product
         * since then that grew one of the context's buffers moved it, so the graph is captured again */
        if (g->graph && g->graph_gen != g->ctx->buf_gen) {
            cudaGraphExecDestroy(g->graph);
            g->graph = NULL;
            g->decode_calls = 0;
        }
        if (!g->graph && g->decode_calls >= 1) {
            cudaGraph_t gr;
            CK(cudaStreamBeginCapture(g->st, cudaStreamCaptureModeThreadLocal), "capture");
            cudaMemcpyAsync(g->d_ids, g->h_ids, 4, cudaMemcpyHostToDevice, g->st);
            cudaMemcpyAsync(g->d_pos, g->h_pos, 4, cudaMemcpyHostToDevice, g->st);
            s = enqueue_forward(g, 1, 0, err);
            cudaMemcpyAsync(g->h_logits, g->logits, (size_t)c->vocab_size * 4, cudaMemcpyDeviceToHost, g->st);
            cudaError_t e = cudaStreamEndCapture(g->st, &gr);
            if (s) { if (e == cudaSuccess) cudaGraphDestroy(gr); return s; }
            CK(e, "capture");
            e = cudaGraphInstantiate(&g->graph, gr, 0);
            cudaGraphDestroy(gr);
            CK(e, "graph instantiate");
            g->graph_gen = g->ctx->buf_gen;
        }
        g->decode_calls++;
        if (g->graph) {
            CK(cudaGraphLaunch(g->graph, g->st), "graph launch");
            CK(cudaStreamSynchronize(g->st), "forward");
            memcpy(logits, g->h_logits, lbytes);
            return SPQR_OK;
        }
    }
    CK(cudaMemcpyAsync(g->d_ids, g->h_ids, (size_t)n * 4, cudaMemcpyHostToDevice, g->st), "ids");
    CK(cudaMemcpyAsync(g->d_pos, g->h_pos, 4, cudaMemcpyHostToDevice, g->st), "pos");
    if ((s = enqueue_forward(g, n, first, err))) return s;
    CK(cudaMemcpyAsync(logits, g->logits, lbytes, cudaMemcpyDeviceToHost, g->st), "logits");
    CK(cudaStreamSynchronize(g->st), "forward");
    return SPQR_OK;
}
